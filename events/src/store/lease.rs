//! Leases: work that must run once, among any number of processes on one
//! log, runs in the one process that holds its lease.
//!
//! A lease is a PostgreSQL session advisory lock (`pg_try_advisory_lock`)
//! named after the part (`consequences`, `sealer`, …). Each process keeps
//! one dedicated connection, its *lease session*, outside the pool, and
//! every lease it holds is a lock of that session. The database releases a
//! session's locks when the session ends, so:
//!
//! * **The holder is killed** (kill -9, a crash): the kernel closes its
//!   socket, the server ends the session at once, and a standby takes the
//!   lease at its next try ([`LeaseOptions::poll`]).
//! * **The holder's machine or network goes silent**: the server's TCP
//!   keepalives on the lease session (set per session:
//!   [`LeaseOptions::keepalive_idle`], then three probes a second apart)
//!   end the session, and a standby takes the lease. Failover within
//!   `keepalive_idle + 3 s + poll` (6.5 s with the defaults).
//! * **The holder stops first.** It pings its lease session every
//!   [`LeaseOptions::heartbeat`], bounded by the same time; a ping that
//!   fails or does not answer ends the session on its side and stops every
//!   part it held (the part's future is dropped, its open transaction rolls
//!   back) within `2 × heartbeat` (2 s), before the server can have ended
//!   the session (at least `keepalive_idle + 3 s`): two holders never work
//!   at once as long as the holder's timers run (a process paused for
//!   longer, e.g. stopped with SIGSTOP, can still meet its successor; every
//!   leased part's effects are idempotent or checked against their
//!   checkpoint in the database, so that meeting does nothing twice).
//!
//! [`lead`] runs a part under its lease: while another process holds it the
//! part is a *standby* ([`super::supervise::PartState::Standby`]) that
//! follows the holder's checkpoint in the database, so `/ready`, `/metrics`
//! and the answers that wait on the part see where the part is, whoever
//! runs it; when the lease is free it takes it and runs the part from the
//! checkpoint, under [`supervise`].

use std::collections::BTreeSet;
use std::fmt::Display;
use std::future::Future;
use std::sync::{Arc, Weak};
use std::time::Duration;

use sha2::{Digest, Sha256};
use sqlx::postgres::{PgConnectOptions, PgConnection};
use sqlx::{Connection, PgPool};
use tokio::sync::{watch, Mutex};
use tokio::time::Instant;

use super::supervise::{backoff, supervise, Fault, PartHealth};

/// The first key of every ShareLedger lease (`pg_try_advisory_lock(int, int)`:
/// "SLEA").
const LEASE_CLASS: i32 = 0x534C_4541;

/// The longest a lease session may take to connect.
const CONNECT_BOUND: Duration = Duration::from_secs(10);

/// How leases are taken, kept and noticed lost.
#[derive(Debug, Clone, Copy)]
pub struct LeaseOptions {
    /// How often a standby tries to take a free lease (and reads where the
    /// holder is).
    pub poll: Duration,
    /// How often the holder pings its lease session; a ping unanswered for
    /// this long ends the session and stops the parts it held.
    pub heartbeat: Duration,
    /// How long the server lets a silent lease session be before probing it
    /// (then three probes one second apart end it).
    pub keepalive_idle: Duration,
    /// While someone in this process waits for a standby part to reach a
    /// position its holder has not ([`PartHealth::want`]), how often the
    /// standby reads the holder's position again.
    pub catch_up: Duration,
    /// Whether this process takes leases at all. A process reading from a
    /// streaming replica does not: it stands by for every part, reading
    /// the holders' positions, and never runs one (the parts write to the
    /// primary, and its answers would wait for the replica anyway).
    pub take: bool,
}

impl Default for LeaseOptions {
    fn default() -> Self {
        Self {
            poll: Duration::from_millis(500),
            heartbeat: Duration::from_secs(1),
            keepalive_idle: Duration::from_secs(3),
            catch_up: Duration::from_millis(5),
            take: true,
        }
    }
}

/// Why a lease could not be tried or kept.
#[derive(Debug, thiserror::Error)]
pub enum LeaseError {
    #[error("the lease session: {0}")]
    Database(#[from] sqlx::Error),
    #[error("the lease session did not answer within {0} ms")]
    Timeout(u128),
}

impl Fault for LeaseError {
    fn is_transient(&self) -> bool {
        true
    }
}

/// This process's lease session: one connection holding every lease the
/// process holds. Clones share it.
#[derive(Clone)]
pub struct Leases {
    inner: Arc<Inner>,
}

struct Inner {
    connect: PgConnectOptions,
    options: LeaseOptions,
    session: Mutex<Session>,
    /// The number of the last session that ended (a holder of a lease of
    /// session N lost it once this reaches N).
    ended: watch::Sender<u64>,
}

#[derive(Default)]
struct Session {
    connection: Option<PgConnection>,
    /// Numbered from 1; the current (or next) session's number.
    number: u64,
    held: BTreeSet<i32>,
}

impl std::fmt::Debug for Leases {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Leases")
            .field("options", &self.inner.options)
            .finish_non_exhaustive()
    }
}

impl Leases {
    /// A lease session on the database of `pool` (connected when first
    /// needed; pinged every [`LeaseOptions::heartbeat`] while it holds a
    /// lease). Must be called within a tokio runtime.
    pub fn new(pool: &PgPool, options: LeaseOptions) -> Self {
        let keepalive = options.keepalive_idle.as_secs().max(1).to_string();
        let connect = (*pool.connect_options())
            .clone()
            .application_name("shareledger lease session")
            .options([
                ("tcp_keepalives_idle", keepalive.as_str()),
                ("tcp_keepalives_interval", "1"),
                ("tcp_keepalives_count", "3"),
            ]);
        let inner = Arc::new(Inner {
            connect,
            options,
            session: Mutex::new(Session {
                number: 1,
                ..Session::default()
            }),
            ended: watch::channel(0).0,
        });
        tokio::spawn(heartbeat(Arc::downgrade(&inner)));
        Self { inner }
    }

    /// The options the session runs with.
    pub fn options(&self) -> LeaseOptions {
        self.inner.options
    }

    /// Takes lease `name` if no session holds it. `None`: another process
    /// holds it (or another part of this one).
    pub async fn try_take(&self, name: &str) -> Result<Option<Held>, LeaseError> {
        let key = lease_key(name);
        let mut session = self.inner.session.lock().await;
        if session.held.contains(&key) {
            return Ok(None);
        }
        let bound = self.inner.options.heartbeat;
        if session.connection.is_none() {
            let connected = tokio::time::timeout(
                CONNECT_BOUND,
                PgConnection::connect_with(&self.inner.connect),
            )
            .await
            .map_err(|_| LeaseError::Timeout(CONNECT_BOUND.as_millis()))?;
            session.connection = Some(connected?);
        }
        let taken = tokio::time::timeout(bound, async {
            let connection = session.connection.as_mut().expect("connected above");
            sqlx::query_scalar::<_, bool>("SELECT pg_try_advisory_lock($1, $2)")
                .bind(LEASE_CLASS)
                .bind(key)
                .fetch_one(connection)
                .await
        })
        .await;
        let taken = match taken {
            Ok(Ok(taken)) => taken,
            Ok(Err(e)) => {
                self.inner.end(&mut session);
                return Err(e.into());
            }
            Err(_) => {
                self.inner.end(&mut session);
                return Err(LeaseError::Timeout(bound.as_millis()));
            }
        };
        if !taken {
            return Ok(None);
        }
        session.held.insert(key);
        Ok(Some(Held {
            inner: Arc::clone(&self.inner),
            key,
            session: session.number,
        }))
    }
}

impl Inner {
    /// Ends the current session (its connection is dropped: the server
    /// releases its locks) and tells its holders.
    fn end(&self, session: &mut Session) {
        let had_connection = session.connection.take().is_some();
        let number = session.number;
        session.held.clear();
        session.number += 1;
        if had_connection {
            self.ended.send_if_modified(|ended| {
                let changed = *ended < number;
                *ended = number.max(*ended);
                changed
            });
        }
    }
}

/// Pings the lease session while it holds leases; ends it when a ping fails.
async fn heartbeat(inner: Weak<Inner>) {
    loop {
        let period = match inner.upgrade() {
            Some(inner) => inner.options.heartbeat,
            None => return,
        };
        tokio::time::sleep(period).await;
        let Some(inner) = inner.upgrade() else { return };
        let mut session = inner.session.lock().await;
        if session.held.is_empty() {
            continue;
        }
        let Some(connection) = session.connection.as_mut() else {
            continue;
        };
        let ping = tokio::time::timeout(period, connection.ping()).await;
        if !matches!(ping, Ok(Ok(()))) {
            tracing::warn!("the lease session stopped answering; every lease it held is lost");
            inner.end(&mut session);
        }
    }
}

/// A lease this process holds, until [`Held::release`] or its session ends.
pub struct Held {
    inner: Arc<Inner>,
    key: i32,
    session: u64,
}

impl Held {
    /// Resolves when the lease is lost (its session ended).
    pub async fn lost(&self) {
        let mut ended = self.inner.ended.subscribe();
        let _ = ended.wait_for(|ended| *ended >= self.session).await;
    }

    /// Gives the lease back (a standby may take it at once).
    pub async fn release(self) {
        let mut session = self.inner.session.lock().await;
        if session.number != self.session || !session.held.remove(&self.key) {
            return;
        }
        let bound = self.inner.options.heartbeat;
        let Some(connection) = session.connection.as_mut() else {
            return;
        };
        let unlocked = tokio::time::timeout(
            bound,
            sqlx::query("SELECT pg_advisory_unlock($1, $2)")
                .bind(LEASE_CLASS)
                .bind(self.key)
                .execute(connection),
        )
        .await;
        if !matches!(unlocked, Ok(Ok(_))) {
            self.inner.end(&mut session);
        }
    }
}

/// The second key of lease `name`: the first four bytes of its SHA-256.
fn lease_key(name: &str) -> i32 {
    let digest = Sha256::digest(name.as_bytes());
    i32::from_be_bytes([digest[0], digest[1], digest[2], digest[3]])
}

/// What a standby learns from the database about its part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Watched {
    /// The holder's checkpoint: the part has applied the log up to here.
    At(u64),
    /// The part is gone (e.g. a read model's generation was dropped): stop.
    Gone,
}

/// Runs a part under lease `name` until `stop` is set, the part ends well,
/// or it fails for good (see [`supervise`]).
///
/// While another process holds the lease, `watch` reads the part's position
/// in the database (the holder's checkpoint) and the part's health shows it
/// as a standby there: every [`LeaseOptions::poll`], and every
/// [`LeaseOptions::catch_up`] while someone waits for a position the holder
/// has not reached ([`PartHealth::want`]: freshness checks and consistency
/// tokens do), so that a standby costs a query per poll when nobody asks.
/// When the lease is free (and [`LeaseOptions::take`] allows), this
/// process takes it and runs `run` from the
/// checkpoint under [`supervise`]; if the lease is lost
/// (the lease session ended), the run is dropped at once and the part is a
/// standby again. Faults of the lease session are transient: they show in
/// the health as retrying, and the part tries again after a backoff.
pub async fn lead<E, F, Fut, W, WFut>(
    leases: &Leases,
    name: &str,
    health: &PartHealth,
    mut stop: watch::Receiver<bool>,
    mut run: F,
    mut watch: W,
) -> Result<(), E>
where
    E: Fault + Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<(), E>>,
    W: FnMut() -> WFut,
    WFut: Future<Output = Result<Watched, E>>,
{
    let options = leases.options();
    let mut demand = health.demand();
    let mut delays = backoff();
    let mut next_try = Instant::now();
    loop {
        if *stop.borrow() {
            return Ok(());
        }
        if options.take && Instant::now() >= next_try {
            next_try = Instant::now() + options.poll;
            match leases.try_take(name).await {
                Ok(Some(held)) => {
                    delays = backoff();
                    health.took_lease();
                    tracing::info!(part = health.name(), "took the lease: running here");
                    let ran = tokio::select! {
                        biased;
                        () = held.lost() => None,
                        ran = supervise(health, stop.clone(), &mut run) => Some(ran),
                    };
                    match ran {
                        Some(ran) => {
                            held.release().await;
                            return ran;
                        }
                        None => {
                            tracing::warn!(
                                part = health.name(),
                                "lost the lease (its session ended): stopped here"
                            );
                            health.retrying(&"lost the lease: the session that held it ended");
                            continue;
                        }
                    }
                }
                Ok(None) => {}
                Err(e) => {
                    health.retrying(&e);
                    let delay = delays.next().unwrap_or(options.poll);
                    next_try = Instant::now() + delay;
                    if wait(&mut stop, delay).await {
                        return Ok(());
                    }
                    continue;
                }
            }
        }
        if !options.take && Instant::now() >= next_try {
            next_try = Instant::now() + options.poll;
        }
        // A standby: where is the holder?
        let wanted = match watch().await {
            Ok(Watched::At(position)) => {
                health.standby(position);
                *demand.borrow_and_update() > position
            }
            Ok(Watched::Gone) => return Ok(()),
            Err(e) => {
                health.retrying(&e);
                false
            }
        };
        let until_try = next_try.saturating_duration_since(Instant::now());
        let pause = if wanted {
            options.catch_up.min(until_try)
        } else {
            until_try
        };
        tokio::select! {
            biased;
            _ = stop.wait_for(|s| *s) => return Ok(()),
            // Someone waits for a new position: read where the holder is
            // (without trying the lease).
            _ = demand.changed(), if !wanted => {}
            () = tokio::time::sleep(pause) => {}
        }
    }
}

/// Waits `delay`; true when `stop` was set meanwhile.
async fn wait(stop: &mut watch::Receiver<bool>, delay: Duration) -> bool {
    tokio::select! {
        biased;
        _ = stop.wait_for(|s| *s) => true,
        () = tokio::time::sleep(delay) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lease_keys_are_stable_and_distinct() {
        let names = ["consequences", "sealer", "relay", "derived_feeds"];
        let keys: BTreeSet<i32> = names.iter().map(|n| lease_key(n)).collect();
        assert_eq!(keys.len(), names.len());
        assert_eq!(lease_key("sealer"), lease_key("sealer"));
    }
}
