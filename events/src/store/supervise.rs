//! Background parts that survive transient faults.
//!
//! Every long-running part of the service (the access index's follower, the
//! history archive, each SQL projection, the consequence worker, the
//! sealer) follows the log from a checkpoint. A database that goes away for
//! a while, a connection cut mid-query, a statement timeout: these are
//! *transient* faults, after which running the part again from its
//! checkpoint loses nothing and does nothing twice. A broken integrity
//! chain, an event that does not decode, a gap in the log: these are
//! *permanent*, and running again would only repeat them.
//!
//! * [`Fault`] says which an error is ([`sqlx_is_transient`] for the
//!   database's own errors).
//! * [`PartHealth`] is a part's state as everyone may read it, without
//!   touching the database: following, retrying (and why), failed, stopped;
//!   the position it has reached; when it last heard from the log. `/ready`,
//!   `/metrics` and every access answer read it.
//! * [`supervise`] runs a part, and after a transient fault runs it again
//!   after a capped, jittered exponential backoff; a permanent fault stops it
//!   and is logged as an error.

use std::fmt::Display;
use std::future::Future;
use std::sync::Arc;
use std::time::{Duration, Instant};

use backon::{BackoffBuilder, ExponentialBuilder};
use serde::Serialize;
use tokio::sync::watch;

use super::LogError;

/// The shortest wait before a part runs again after a transient fault.
pub const RETRY_MIN: Duration = Duration::from_millis(50);
/// The longest wait between two runs of a part (so that it is following
/// again at most about this long after the database is back).
pub const RETRY_MAX: Duration = Duration::from_secs(1);

/// Whether an error is worth running the part again for.
pub trait Fault {
    /// True when running again from the checkpoint may succeed (the
    /// database was away, a connection was cut, a statement timed out).
    fn is_transient(&self) -> bool;
}

/// Whether a database error is a fault of the connection or the server's
/// availability rather than of the statement: I/O errors, a pool that could
/// not hand out a connection in time, a connection the server closed (the
/// server shutting down or restarting, SQLSTATE classes 08 and 57P0x),
/// too many connections (53300), a statement cancelled by its timeout
/// (57014), deadlocks and serialization failures (40P01, 40001).
pub fn sqlx_is_transient(error: &sqlx::Error) -> bool {
    match error {
        sqlx::Error::Io(_)
        | sqlx::Error::Tls(_)
        | sqlx::Error::PoolTimedOut
        | sqlx::Error::WorkerCrashed => true,
        sqlx::Error::Database(db) => db.code().is_some_and(|code| transient_sqlstate(&code)),
        _ => false,
    }
}

fn transient_sqlstate(code: &str) -> bool {
    code.starts_with("08")
        || code.starts_with("53")
        || matches!(
            code,
            "57P01" | "57P02" | "57P03" | "57014" | "40001" | "40P01" | "55P03"
        )
}

impl Fault for sqlx::Error {
    fn is_transient(&self) -> bool {
        sqlx_is_transient(self)
    }
}

impl Fault for LogError {
    fn is_transient(&self) -> bool {
        match self {
            LogError::Database(e) => sqlx_is_transient(e),
            _ => false,
        }
    }
}

/// What a part is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum PartState {
    /// Not yet in touch with the log.
    Starting,
    /// Reading the log and applying it.
    Following,
    /// Stopped by a transient fault; it will run again from its checkpoint.
    Retrying,
    /// Stopped by a permanent fault; it will not run again in this process.
    Failed,
    /// Stopped as asked (the process is shutting down).
    Stopped,
    /// Another process holds the part's lease and runs it; this one follows
    /// the holder's checkpoint in the database (see `store::lease`).
    Standby,
}

/// A leased part's place in this process: it runs here, or it watches the
/// process that does.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum LeaseRole {
    /// This process holds the lease: the part runs here.
    Holder,
    /// Another process holds it (or none does yet): this one waits to take
    /// it over.
    Standby,
}

/// A part's state, position and last fault, as of now.
#[derive(Debug, Clone)]
pub struct PartStatus {
    pub state: PartState,
    /// The position of the last event the part has applied (its checkpoint).
    pub position: u64,
    /// The fault that stopped the last run, if any (kept after recovery).
    pub last_error: Option<String>,
    /// How many times the part ran again after a transient fault.
    pub restarts: u64,
    /// When `state` last changed.
    pub since: Instant,
    /// When the part last read the log (or was told of a new event), or,
    /// for a standby, last read its holder's checkpoint.
    pub last_contact: Option<Instant>,
    /// For a part that runs under a lease: whether this process holds it.
    pub lease: Option<LeaseRole>,
}

impl PartStatus {
    /// Whether the part is following (or, as a standby, watching its
    /// holder) and has heard from the log within `max_silence` (a part that
    /// has not may be cut off without knowing).
    pub fn is_following(&self, max_silence: Duration) -> bool {
        matches!(self.state, PartState::Following | PartState::Standby)
            && self
                .last_contact
                .is_some_and(|at| at.elapsed() <= max_silence)
    }

    /// A short description for answers and logs: the state, and the fault
    /// when it is not following.
    pub fn describe(&self) -> String {
        let state = match self.state {
            PartState::Starting => "starting",
            PartState::Following => "following",
            PartState::Retrying => "retrying",
            PartState::Failed => "failed",
            PartState::Stopped => "stopped",
            PartState::Standby => "standby (another process runs it)",
        };
        match (&self.last_error, self.state) {
            (Some(e), PartState::Retrying | PartState::Failed) => format!("{state}: {e}"),
            _ => state.to_owned(),
        }
    }
}

/// One part's health, shared by the part (which writes it) and whoever
/// reads it. Clones share it.
#[derive(Debug, Clone)]
pub struct PartHealth {
    name: Arc<str>,
    status: Arc<watch::Sender<PartStatus>>,
    /// The highest position someone is waiting for the part to reach (a
    /// standby reads its holder's position promptly only while this is
    /// ahead of it: see `store::lease`).
    demand: Arc<watch::Sender<u64>>,
}

impl PartHealth {
    /// A part named `name`, starting at `position`.
    pub fn new(name: impl Into<String>, position: u64) -> Self {
        let (status, _) = watch::channel(PartStatus {
            state: PartState::Starting,
            position,
            last_error: None,
            restarts: 0,
            since: Instant::now(),
            last_contact: None,
            lease: None,
        });
        Self {
            name: Arc::from(name.into()),
            status: Arc::new(status),
            demand: Arc::new(watch::channel(0).0),
        }
    }

    /// Someone waits for the part to reach `position`.
    pub fn want(&self, position: u64) {
        self.demand.send_if_modified(|wanted| {
            let more = position > *wanted;
            if more {
                *wanted = position;
            }
            more
        });
    }

    /// Changes of the highest position waited for.
    pub fn demand(&self) -> watch::Receiver<u64> {
        self.demand.subscribe()
    }

    /// The part's name, as `/ready` and `/metrics` show it.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The status as of now.
    pub fn status(&self) -> PartStatus {
        self.status.borrow().clone()
    }

    /// The position of the last event applied.
    pub fn position(&self) -> u64 {
        self.status.borrow().position
    }

    /// Changes of the status (state and position; contact alone does not
    /// wake watchers).
    pub fn subscribe(&self) -> watch::Receiver<PartStatus> {
        self.status.subscribe()
    }

    /// The part read the log successfully: it is following.
    pub fn contact(&self) {
        self.status.send_if_modified(|s| {
            s.last_contact = Some(Instant::now());
            if s.state == PartState::Following {
                return false;
            }
            s.state = PartState::Following;
            s.since = Instant::now();
            true
        });
    }

    /// The part has applied everything up to `position` (which only moves
    /// forward). Counts as contact.
    pub fn advanced(&self, position: u64) {
        self.status.send_if_modified(|s| {
            s.last_contact = Some(Instant::now());
            let mut changed = false;
            if position > s.position {
                s.position = position;
                changed = true;
            }
            if s.state != PartState::Following {
                s.state = PartState::Following;
                s.since = Instant::now();
                changed = true;
            }
            changed
        });
    }

    fn set(&self, state: PartState, error: Option<String>) {
        self.status.send_modify(|s| {
            if state == PartState::Retrying {
                s.restarts += 1;
            }
            if error.is_some() {
                s.last_error = error;
            }
            s.state = state;
            s.since = Instant::now();
        });
    }

    /// A transient fault stopped the part; it will run again.
    pub fn retrying(&self, error: &dyn Display) {
        self.set(PartState::Retrying, Some(error.to_string()));
    }

    /// A permanent fault stopped the part for good.
    pub fn failed(&self, error: &dyn Display) {
        self.set(PartState::Failed, Some(error.to_string()));
    }

    /// The part stopped as asked.
    pub fn stopped(&self) {
        self.set(PartState::Stopped, None);
    }

    /// This process took the part's lease: it runs here from now on.
    pub fn took_lease(&self) {
        self.status.send_modify(|s| {
            s.lease = Some(LeaseRole::Holder);
            s.state = PartState::Starting;
            s.since = Instant::now();
        });
    }

    /// Another process holds the part's lease and has applied the log up to
    /// `position` (which only moves forward here). Counts as contact.
    pub fn standby(&self, position: u64) {
        self.status.send_if_modified(|s| {
            s.last_contact = Some(Instant::now());
            let mut changed = s.lease != Some(LeaseRole::Standby);
            s.lease = Some(LeaseRole::Standby);
            if position > s.position {
                s.position = position;
                changed = true;
            }
            if s.state != PartState::Standby {
                s.state = PartState::Standby;
                s.since = Instant::now();
                changed = true;
            }
            changed
        });
    }
}

/// How fresh a part must be to answer from.
#[derive(Debug, Clone, Copy)]
pub struct Freshness {
    /// How many events behind the log's known head the part may still
    /// answer without waiting (0: it must have applied every event the
    /// process knows to be committed).
    pub max_lag: u64,
    /// How long since the part last heard from the log it still counts as
    /// following.
    pub max_silence: Duration,
}

impl Default for Freshness {
    fn default() -> Self {
        Self {
            max_lag: 0,
            max_silence: Duration::from_secs(5),
        }
    }
}

/// Why a part may not answer now.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotFresh {
    /// Not following (retrying, failed, stopped, or silent for too long),
    /// or still behind the known head when the wait ended.
    Stale {
        reached: u64,
        head: u64,
        state: String,
    },
    /// Following, but the consistency token asked for was not reached in
    /// time.
    Behind {
        wanted: u64,
        reached: u64,
        waited_ms: u64,
    },
}

impl PartHealth {
    /// Waits, at most `timeout`, until the part may answer: it is following
    /// (in touch with the log within `bounds.max_silence`) and has applied
    /// `min_position` and `known_head` less `bounds.max_lag`. Returns the
    /// position it had reached. A part that is not following is refused at
    /// once: waiting for it would only make the refusal slower.
    pub async fn fresh(
        &self,
        mut known_head: watch::Receiver<u64>,
        min_position: Option<u64>,
        bounds: Freshness,
        timeout: Duration,
    ) -> Result<u64, NotFresh> {
        let started = Instant::now();
        let deadline = tokio::time::Instant::now() + timeout;
        let mut status = self.subscribe();
        loop {
            let wanted = {
                let now = status.borrow_and_update();
                let head = *known_head.borrow_and_update();
                if !now.is_following(bounds.max_silence) {
                    return Err(self.stale(&now, head, bounds));
                }
                let wanted = min_position
                    .unwrap_or(0)
                    .max(head.saturating_sub(bounds.max_lag));
                if now.position >= wanted {
                    return Ok(now.position);
                }
                self.want(wanted);
                wanted
            };
            let woken = tokio::select! {
                changed = status.changed() => changed.is_ok(),
                changed = known_head.changed() => changed.is_ok(),
                () = tokio::time::sleep_until(deadline) => false,
            };
            if woken {
                continue;
            }
            let now = self.status();
            let head = (*known_head.borrow()).max(wanted);
            if !now.is_following(bounds.max_silence) {
                return Err(self.stale(&now, head, bounds));
            }
            return Err(match min_position {
                Some(token) if now.position < token => NotFresh::Behind {
                    wanted: token,
                    reached: now.position,
                    waited_ms: started.elapsed().as_millis() as u64,
                },
                _ => NotFresh::Stale {
                    reached: now.position,
                    head,
                    state: format!(
                        "following, but did not catch up within {} ms",
                        timeout.as_millis()
                    ),
                },
            });
        }
    }

    fn stale(&self, status: &PartStatus, head: u64, bounds: Freshness) -> NotFresh {
        let state = if status.state == PartState::Following {
            format!(
                "following, but not heard from the log for over {} ms",
                bounds.max_silence.as_millis()
            )
        } else {
            status.describe()
        };
        NotFresh::Stale {
            reached: status.position,
            head: head.max(status.position),
            state,
        }
    }
}

/// The waits between runs: exponential from [`RETRY_MIN`] to [`RETRY_MAX`],
/// with jitter so that parts (and processes) do not retry in step.
pub fn backoff() -> impl Iterator<Item = Duration> {
    ExponentialBuilder::default()
        .with_min_delay(RETRY_MIN)
        .with_max_delay(RETRY_MAX)
        .with_jitter()
        .without_max_times()
        .build()
}

/// Runs `run` until it ends well, `stop` is set, or it fails permanently.
///
/// After a transient fault the part is marked retrying, waits (backoff,
/// reset whenever a run got back in touch with the log) and runs again; it
/// must then resume from its checkpoint, which `run` reads afresh each
/// time. A permanent fault marks it failed and is returned. When `run` ends
/// well or `stop` is set it returns `Ok`, leaving the health to the caller
/// (a part may end one run without stopping: see the projection runtime).
pub async fn supervise<E, F, Fut>(
    health: &PartHealth,
    mut stop: watch::Receiver<bool>,
    mut run: F,
) -> Result<(), E>
where
    E: Fault + Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
{
    let mut delays = backoff();
    loop {
        let ran = tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => None,
            result = run() => Some(result),
        };
        let error = match ran {
            None | Some(Ok(())) => return Ok(()),
            Some(Err(e)) => e,
        };
        if !error.is_transient() {
            tracing::error!(part = health.name(), error = %error, "stopped by a permanent fault");
            health.failed(&error);
            return Err(error);
        }
        if health.status().state == PartState::Following {
            delays = backoff();
        }
        health.retrying(&error);
        let delay = delays.next().unwrap_or(RETRY_MAX);
        tracing::warn!(
            part = health.name(),
            error = %error,
            retry_in_ms = delay.as_millis() as u64,
            "transient fault; running again from the checkpoint"
        );
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return Ok(()),
            () = tokio::time::sleep(delay) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicUsize, Ordering};

    #[derive(Debug)]
    struct TestFault(bool);
    impl Display for TestFault {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            write!(f, "fault (transient: {})", self.0)
        }
    }
    impl Fault for TestFault {
        fn is_transient(&self) -> bool {
            self.0
        }
    }

    #[tokio::test]
    async fn a_part_runs_again_after_transient_faults_and_stops_at_a_permanent_one() {
        let health = PartHealth::new("test", 0);
        let (_stop, stopped) = watch::channel(false);
        let runs = AtomicUsize::new(0);
        let result = supervise(&health, stopped, || {
            let n = runs.fetch_add(1, Ordering::SeqCst);
            let health = health.clone();
            async move {
                health.advanced(n as u64 + 1);
                Err(TestFault(n < 3))
            }
        })
        .await;
        assert!(matches!(result, Err(TestFault(false))));
        assert_eq!(runs.load(Ordering::SeqCst), 4);
        let status = health.status();
        assert_eq!(status.state, PartState::Failed);
        assert_eq!(status.restarts, 3);
        assert_eq!(status.position, 4);
        assert_eq!(
            status.last_error.as_deref(),
            Some("fault (transient: false)")
        );
    }

    #[tokio::test]
    async fn a_retrying_part_stops_when_asked_without_running_again() {
        let health = PartHealth::new("test", 7);
        let (stop, stopped) = watch::channel(false);
        let runs = AtomicUsize::new(0);
        let stop = &stop;
        let result: Result<(), TestFault> = supervise(&health, stopped, || {
            runs.fetch_add(1, Ordering::SeqCst);
            stop.send_replace(true);
            async { Err(TestFault(true)) }
        })
        .await;
        assert!(result.is_ok());
        assert_eq!(runs.load(Ordering::SeqCst), 1);
        assert_eq!(health.status().state, PartState::Starting);
        assert_eq!(health.position(), 7);
    }

    #[test]
    fn following_means_in_touch_with_the_log_recently() {
        let health = PartHealth::new("test", 0);
        assert!(!health.status().is_following(Duration::from_secs(60)));
        health.contact();
        assert!(health.status().is_following(Duration::from_secs(60)));
        assert!(!health.status().is_following(Duration::ZERO));
        health.retrying(&"connection refused");
        let status = health.status();
        assert!(!status.is_following(Duration::from_secs(60)));
        assert_eq!(status.describe(), "retrying: connection refused");
    }

    #[test]
    fn connection_faults_are_transient_and_statement_faults_are_not() {
        assert!(sqlx_is_transient(&sqlx::Error::PoolTimedOut));
        assert!(sqlx_is_transient(&sqlx::Error::Io(std::io::Error::from(
            std::io::ErrorKind::ConnectionRefused
        ))));
        assert!(!sqlx_is_transient(&sqlx::Error::RowNotFound));
        assert!(!sqlx_is_transient(&sqlx::Error::PoolClosed));
        // A message PostgreSQL's protocol does not allow is a bug, not a
        // passing fault: running again would only repeat it.
        assert!(!sqlx_is_transient(&sqlx::Error::Protocol(
            "unexpected".into()
        )));
        for code in ["08006", "57P01", "57P03", "53300", "57014", "40001"] {
            assert!(transient_sqlstate(code), "{code}");
        }
        for code in ["22P05", "23505", "42P01", "SL001"] {
            assert!(!transient_sqlstate(code), "{code}");
        }
    }
}
