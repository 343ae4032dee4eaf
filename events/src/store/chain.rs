//! The tamper-evident log: a SHA-256 hash chain over `sl_events` in global
//! order, written by a [`Sealer`] that follows the log, and checked by
//! [`verify`].
//!
//! # What is hashed
//!
//! Every column of an `sl_events` row, in this order: `global_position`,
//! `stream_name`, `stream_revision`, `event_id`, `event_type`,
//! `schema_version`, `data`, `metadata`, `recorded_at`. Each field is
//! written as an 8-byte big-endian length and its bytes (a SQL `NULL`, which
//! the table's constraints forbid, as the length `u64::MAX` and no bytes), so
//! the encoding is unambiguous. The bytes of a field: integers are big-endian
//! two's complement of their SQL width (`bigint` 8, `integer` 4), the UUID
//! its 16 bytes, text its UTF-8, `jsonb` the text PostgreSQL prints for it
//! (`jsonb` is stored normalized, keys sorted and de-duplicated, so equal
//! values print equal text, and numbers keep every digit), `timestamptz` its
//! binary wire form (`timestamptz_send`: microseconds since 2000-01-01 UTC,
//! 8 bytes, independent of the session's time zone and date style).
//!
//! ```text
//! event_hash(n) = SHA-256(0x00 || field("shareledger.event.v1") || fields of row n)
//! chain_hash(n) = SHA-256(0x01 || chain_hash(n-1) || event_hash(n))
//! chain_hash(0) = 32 zero bytes (genesis)
//! ```
//!
//! The leading byte separates the two kinds of hash (as RFC 6962's leaf and
//! node hashes are). `sl_events` rows never change legitimately: soft delete
//! and tombstone change `sl_streams` and *append* lifecycle events, so the
//! hash covers the whole row and a deleted stream's events still verify.
//!
//! # Why a sealer
//!
//! Hashing inside `sl_append` would make every append wait for the previous
//! hash, and it would change the append path. Instead, as Certificate
//! Transparency logs integrate entries after sequencing, the [`Sealer`]
//! follows the log after commit: it reads the events after the last seal (up
//! to `sl_log_head`, the committed head; positions commit in order, so no
//! lower position can still appear), hashes them and writes their seals in
//! one transaction. Two sealers take turns on the row of `sl_seal_head`
//! (`SELECT … FOR UPDATE`), so the chain never forks; appends never touch
//! that row. The events not sealed yet are the sealer's lag
//! (`head - sealed`), which [`Sealer::progress`] and [`Sealer::status`]
//! report.
//!
//! # What verify reports
//!
//! [`verify`] walks events and seals together in global order, in one
//! read-only snapshot, and reports how far the chain holds and the first
//! problem ([`ChainProblem`]). What a chain does not catch: a rewrite of the
//! events *and* every seal after them (the hashes are keyless); keep a
//! [`ChainAnchor`] of the chain head outside the database and pass it in
//! [`VerifyOptions::anchor`] to catch that. Events not sealed yet are
//! protected by the density of positions and the head counter: removing
//! one, or adding one without moving `sl_log_head`, is detected; changing
//! one is not.

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use serde::Serialize;
use sha2::{Digest, Sha256};
use sqlx::postgres::{PgListener, PgRow};
use sqlx::Row;
use tokio::sync::watch;
use uuid::Uuid;

use super::subscription::CHANNEL;
use super::supervise::{sqlx_is_transient, Fault, PartHealth};
use super::PgEventStore;

/// A SHA-256 hash.
pub type Hash = [u8; 32];

/// The chain hash before the first event.
pub const GENESIS: Hash = [0; 32];

/// The version tag at the start of every event's encoding.
const ENCODING_TAG: &[u8] = b"shareledger.event.v1";

/// The columns of `sl_events` as they are hashed (see the module docs).
const HASHED_COLUMNS: &str = "global_position, stream_name, stream_revision, event_id, \
     event_type, schema_version, data::text AS data, metadata::text AS metadata, \
     timestamptz_send(recorded_at) AS recorded_at";

/// The column names of `sl_events` the hash covers, in order.
pub const HASHED_COLUMN_NAMES: [&str; 9] = [
    "global_position",
    "stream_name",
    "stream_revision",
    "event_id",
    "event_type",
    "schema_version",
    "data",
    "metadata",
    "recorded_at",
];

/// A point of the chain: the chain hash after the event at `position`
/// (position 0 and [`GENESIS`] before the first). Kept outside the
/// database, it lets [`verify`] catch a rewrite of the whole chain after it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChainAnchor {
    pub position: u64,
    #[serde(serialize_with = "serialize_hex")]
    #[cfg_attr(feature = "openapi", schema(value_type = String))]
    pub chain_hash: Hash,
}

impl ChainAnchor {
    /// The chain before the first event.
    pub const GENESIS: ChainAnchor = ChainAnchor {
        position: 0,
        chain_hash: GENESIS,
    };
}

impl std::fmt::Display for ChainAnchor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}:{}", self.position, hex::encode(self.chain_hash))
    }
}

/// The first thing [`verify`] found wrong, in global order.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, thiserror::Error)]
#[serde(tag = "problem", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChainProblem {
    /// The event at `position` differs from what its seal hashed: a column of
    /// its row was changed (`event_id` is the id the row has now).
    #[error("event {event_id} at position {position} differs from its seal: it has been altered")]
    Altered { position: u64, event_id: Uuid },
    /// There is no event at `position` although the log had one: its seal
    /// remains, later positions exist, or the head counter is past it.
    #[error("the event at position {position} has been removed")]
    Removed { position: u64 },
    /// The event at `position` was not written by an append: it has no seal
    /// although a later position has one, it lies beyond the log's head
    /// counter, or its position is below 1 (reported as 0).
    #[error("the event at position {position} has been inserted")]
    Inserted { position: u64 },
    /// The seal at `position` does not chain from the seal before it, or the
    /// sealer's head does not match the last seal.
    #[error("the seal at position {position} does not chain from the one before it")]
    SealBroken { position: u64 },
    /// The chain does not pass through the anchor given to [`verify`]: the
    /// chain up to `position` has been rewritten (or truncated).
    #[error("the chain at position {position} does not match the trusted anchor")]
    AnchorMismatch { position: u64 },
}

impl ChainProblem {
    /// The position the problem is at.
    pub fn position(&self) -> u64 {
        match *self {
            ChainProblem::Altered { position, .. }
            | ChainProblem::Removed { position }
            | ChainProblem::Inserted { position }
            | ChainProblem::SealBroken { position }
            | ChainProblem::AnchorMismatch { position } => position,
        }
    }
}

/// What can stop sealing or verifying (a problem *found* by [`verify`] is
/// not an error: it is in [`VerifyReport::problem`]).
#[derive(Debug, thiserror::Error)]
pub enum ChainError {
    /// The sealer found a hole in the positions after its last seal: the log
    /// has been altered; nothing was sealed. Run [`verify`].
    #[error("the log skipped from position {after} to {found}: refusing to seal over a hole")]
    Gap { after: u64, found: u64 },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

impl Fault for ChainError {
    /// A hole in the log is permanent; the database being away is not.
    fn is_transient(&self) -> bool {
        match self {
            ChainError::Gap { .. } => false,
            ChainError::Database(e) => sqlx_is_transient(e),
        }
    }
}

/// How a [`Sealer`] works.
#[derive(Debug, Clone, Copy)]
pub struct SealerOptions {
    /// Most events sealed in one transaction by [`Sealer::run`].
    pub batch_size: usize,
    /// While idle, how long [`Sealer::run`] waits for a notification before
    /// looking anyway (a safety net for a notification lost with a dropped
    /// connection).
    pub idle_recheck: Duration,
    /// [`Sealer::run`] logs a warning when its lag after catching up
    /// exceeds this many events.
    pub lag_warning: u64,
}

impl Default for SealerOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            idle_recheck: Duration::from_secs(1),
            lag_warning: 10_000,
        }
    }
}

/// How far the chain has got behind the log.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct SealProgress {
    /// The last sealed position.
    pub sealed: u64,
    /// The log's head when it was last looked at.
    pub head: u64,
    /// `head - sealed`: events committed and not sealed yet.
    pub lag: u64,
}

/// Follows the log in global order and seals every committed event.
///
/// Clones share their [`SealProgress`]. Any number of sealers, in any number
/// of processes, may run at once: they take turns.
#[derive(Debug, Clone)]
pub struct Sealer {
    store: PgEventStore,
    options: SealerOptions,
    progress: Arc<watch::Sender<SealProgress>>,
    health: Option<PartHealth>,
}

impl Sealer {
    pub fn new(store: PgEventStore, options: SealerOptions) -> Self {
        Self {
            store,
            options: SealerOptions {
                batch_size: options.batch_size.max(1),
                ..options
            },
            progress: Arc::new(watch::channel(SealProgress::default()).0),
            health: None,
        }
    }

    /// Reports this sealer's contact with the log and its sealed position
    /// to `health` (for `/ready`; see [`super::supervise`]).
    pub fn reporting_to(mut self, health: PartHealth) -> Self {
        self.health = Some(health);
        self
    }

    /// The progress this sealer (or a clone) saw at its last batch, and its
    /// changes: wait on it with `wait_for`.
    pub fn progress(&self) -> watch::Receiver<SealProgress> {
        self.progress.subscribe()
    }

    /// The progress of the chain now, whoever sealed it.
    pub async fn status(&self) -> Result<SealProgress, ChainError> {
        let row = sqlx::query(
            "SELECT (SELECT last_position FROM sl_seal_head) AS sealed, \
                    (SELECT last_position FROM sl_log_head) AS head",
        )
        .fetch_one(self.store.pool())
        .await?;
        Ok(progress_of(row.try_get("sealed")?, row.try_get("head")?))
    }

    /// The last seal: publish it (or store it elsewhere) to anchor later
    /// verifications.
    pub async fn chain_head(&self) -> Result<ChainAnchor, ChainError> {
        let row = sqlx::query("SELECT last_position, chain_hash FROM sl_seal_head")
            .fetch_one(self.store.pool())
            .await?;
        Ok(ChainAnchor {
            position: to_u64(row.try_get("last_position")?),
            chain_hash: to_hash(&row.try_get::<Vec<u8>, _>("chain_hash")?).unwrap_or(GENESIS),
        })
    }

    /// Seals up to `limit` committed events after the last seal, in one
    /// transaction, and returns how many it sealed (0: the chain is at the
    /// head). Waits while another sealer holds the chain's head.
    pub async fn seal_pending(&self, limit: usize) -> Result<u64, ChainError> {
        let limit = i64::try_from(limit.max(1)).unwrap_or(i64::MAX);
        let mut tx = self.store.pool().begin().await?;
        // The chain's head, held to commit: other sealers wait here.
        let head_row = sqlx::query("SELECT last_position, chain_hash FROM sl_seal_head FOR UPDATE")
            .fetch_one(&mut *tx)
            .await?;
        let sealed: i64 = head_row.try_get("last_position")?;
        let mut prev = to_hash(&head_row.try_get::<Vec<u8>, _>("chain_hash")?).unwrap_or(GENESIS);
        // The committed head first: every position up to it has committed
        // (positions commit in order), so the read below sees all of them,
        // and a row beyond it was not written by an append.
        let log_head: i64 = sqlx::query_scalar("SELECT last_position FROM sl_log_head")
            .fetch_one(&mut *tx)
            .await?;
        let rows = sqlx::query(&format!(
            "SELECT {HASHED_COLUMNS} FROM sl_events \
             WHERE global_position > $1 AND global_position <= $2 \
             ORDER BY global_position LIMIT $3"
        ))
        .bind(sealed)
        .bind(log_head)
        .bind(limit)
        .fetch_all(&mut *tx)
        .await?;
        if rows.is_empty() {
            tx.rollback().await?;
            self.publish(sealed, log_head);
            return Ok(0);
        }
        let count = rows.len();
        let mut positions = Vec::with_capacity(count);
        let mut event_hashes = Vec::with_capacity(count);
        let mut chain_hashes = Vec::with_capacity(count);
        for (expected, row) in (sealed + 1..).zip(&rows) {
            let event = EventRow::from_row(row)?;
            if event.position != expected {
                return Err(ChainError::Gap {
                    after: to_u64(expected - 1),
                    found: to_u64(event.position),
                });
            }
            let event_hash = event.hash();
            prev = chain_hash(&prev, &event_hash);
            positions.push(event.position);
            event_hashes.push(event_hash.to_vec());
            chain_hashes.push(prev.to_vec());
        }
        let last = *positions.last().expect("rows is not empty");
        sqlx::query(
            "INSERT INTO sl_seals (global_position, event_hash, chain_hash) \
             SELECT * FROM unnest($1::bigint[], $2::bytea[], $3::bytea[])",
        )
        .bind(&positions)
        .bind(&event_hashes)
        .bind(&chain_hashes)
        .execute(&mut *tx)
        .await?;
        sqlx::query("UPDATE sl_seal_head SET last_position = $1, chain_hash = $2 WHERE singleton")
            .bind(last)
            .bind(prev.to_vec())
            .execute(&mut *tx)
            .await?;
        tx.commit().await?;
        tracing::debug!(from = sealed + 1, to = last, "events sealed");
        self.publish(last, log_head);
        Ok(count as u64)
    }

    /// Seals every committed event, then follows the log (woken by each
    /// append's notification) until `shutdown` resolves. A batch in flight
    /// when it does rolls back; the next run seals it.
    pub async fn run(&self, shutdown: impl Future<Output = ()>) -> Result<(), ChainError> {
        tokio::pin!(shutdown);
        tokio::select! {
            biased;
            () = &mut shutdown => Ok(()),
            result = self.follow() => result,
        }
    }

    /// Seals every committed event, then follows the log until an error
    /// (it never ends well): what [`Sealer::run`] runs, for callers that
    /// stop it themselves (a [`super::supervise::supervise`]d part).
    pub async fn follow(&self) -> Result<(), ChainError> {
        // Listen before the first catch-up, so that nothing committed
        // between the catch-up and the wait is missed.
        let mut listener = PgListener::connect_with(self.store.pool()).await?;
        listener.listen(CHANNEL).await?;
        loop {
            while self.seal_pending(self.options.batch_size).await?
                == self.options.batch_size as u64
            {}
            let progress = *self.progress.borrow();
            if progress.lag > self.options.lag_warning {
                tracing::warn!(
                    sealed = progress.sealed,
                    head = progress.head,
                    lag = progress.lag,
                    "the sealer is behind the log"
                );
            }
            match tokio::time::timeout(self.options.idle_recheck, listener.recv()).await {
                Ok(Ok(_)) | Err(_) => {}
                // Sealing again below fails (ending this run) if the
                // database is away; the listener reconnects on its next call.
                Ok(Err(e)) => tracing::warn!(error = %e, "sealer listener lost"),
            }
        }
    }

    fn publish(&self, sealed: i64, head: i64) {
        let progress = progress_of(sealed, head);
        self.store.observe_head(progress.head);
        if let Some(health) = &self.health {
            health.advanced(progress.sealed);
        }
        self.progress.send_if_modified(|p| {
            // Another clone may have published a later state already.
            if progress.sealed >= p.sealed && *p != progress {
                *p = progress;
                true
            } else {
                false
            }
        });
    }
}

fn progress_of(sealed: i64, head: i64) -> SealProgress {
    let (sealed, head) = (to_u64(sealed), to_u64(head));
    SealProgress {
        sealed,
        head,
        lag: head.saturating_sub(sealed),
    }
}

/// How [`verify`] reads.
#[derive(Debug, Clone, Copy)]
pub struct VerifyOptions {
    /// Events (and seals) read per query.
    pub batch_size: usize,
    /// A chain head recorded earlier and kept outside the database: the
    /// chain must still pass through it.
    pub anchor: Option<ChainAnchor>,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            batch_size: 1000,
            anchor: None,
        }
    }
}

/// What [`verify`] found. When it found a problem, the figures are those up
/// to the problem.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct VerifyReport {
    /// Events checked against their seals.
    pub checked: u64,
    /// The chain's last seal checked (position 0: nothing sealed).
    pub sealed_up_to: ChainAnchor,
    /// The log's head counter (`sl_log_head`) in the snapshot verified.
    pub log_head: u64,
    /// Events after the last seal: not sealed yet.
    pub unsealed: u64,
    /// The first problem in global order; `None`: the log is intact.
    pub problem: Option<ChainProblem>,
}

impl VerifyReport {
    /// Whether the log and its chain are intact (unsealed events are not a
    /// problem).
    pub fn is_intact(&self) -> bool {
        self.problem.is_none()
    }
}

/// Walks the log and its seals in global order, in one read-only snapshot,
/// recomputing the chain, and reports how far it holds and the first problem.
pub async fn verify(
    store: &PgEventStore,
    options: VerifyOptions,
) -> Result<VerifyReport, ChainError> {
    verify_with_progress(store, options, |_, _| {}).await
}

/// [`verify`], telling `progress` after each page how far the walk has
/// come and where it ends: `(position, log_head)`.
pub async fn verify_with_progress(
    store: &PgEventStore,
    options: VerifyOptions,
    mut progress: impl FnMut(u64, u64),
) -> Result<VerifyReport, ChainError> {
    let batch = i64::try_from(options.batch_size.max(1)).unwrap_or(i64::MAX);
    let mut tx = store.pool().begin().await?;
    // One snapshot for the whole walk: a sealer or an append committing
    // meanwhile cannot make events and seals disagree.
    sqlx::query("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        .execute(&mut *tx)
        .await?;
    let heads = sqlx::query(
        "SELECT (SELECT last_position FROM sl_log_head) AS log_head, \
                (SELECT last_position FROM sl_seal_head) AS seal_position, \
                (SELECT chain_hash FROM sl_seal_head) AS seal_hash",
    )
    .fetch_one(&mut *tx)
    .await?;
    let log_head: i64 = heads.try_get("log_head")?;
    let seal_head = ChainAnchor {
        position: to_u64(heads.try_get("seal_position")?),
        chain_hash: to_hash(&heads.try_get::<Vec<u8>, _>("seal_hash")?).unwrap_or(GENESIS),
    };
    let mut walk = Walk::new(log_head, options.anchor);
    // From the lowest bigint: a forged row below position 1 is found too.
    let mut from = i64::MIN;
    let problem = loop {
        let events: Vec<EventRow> = sqlx::query(&format!(
            "SELECT {HASHED_COLUMNS} FROM sl_events WHERE global_position >= $1 \
             ORDER BY global_position LIMIT $2"
        ))
        .bind(from)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(EventRow::from_row)
        .collect::<Result<_, _>>()?;
        let seals: Vec<SealRow> = sqlx::query(
            "SELECT global_position, event_hash, chain_hash FROM sl_seals \
             WHERE global_position >= $1 ORDER BY global_position LIMIT $2",
        )
        .bind(from)
        .bind(batch)
        .fetch_all(&mut *tx)
        .await?
        .iter()
        .map(SealRow::from_row)
        .collect::<Result<_, _>>()?;
        // A full page may stop short of what the other table has: walk only
        // up to the lower of the two pages' ends.
        let end = |len: usize, last: Option<i64>| match last {
            Some(last) if len as i64 == batch => last,
            _ => i64::MAX,
        };
        let bound = end(events.len(), events.last().map(|e| e.position))
            .min(end(seals.len(), seals.last().map(|s| s.position)));
        if let Some(problem) = walk_merged(&mut walk, &events, &seals, bound) {
            break Some(problem);
        }
        progress(to_u64(bound.min(log_head)), to_u64(log_head));
        match bound.checked_add(1) {
            Some(next) if bound != i64::MAX => from = next,
            _ => break walk.finish(seal_head),
        }
    };
    tx.rollback().await?;
    Ok(walk.report(problem))
}

/// Feeds the positions up to `bound` of both pages to the walk, merged.
fn walk_merged(
    walk: &mut Walk,
    events: &[EventRow],
    seals: &[SealRow],
    bound: i64,
) -> Option<ChainProblem> {
    let mut events = events.iter().filter(|e| e.position <= bound).peekable();
    let mut seals = seals.iter().filter(|s| s.position <= bound).peekable();
    loop {
        let position = match (events.peek(), seals.peek()) {
            (None, None) => return None,
            (Some(e), None) => e.position,
            (None, Some(s)) => s.position,
            (Some(e), Some(s)) => e.position.min(s.position),
        };
        let event = events.next_if(|e| e.position == position);
        let seal = seals.next_if(|s| s.position == position);
        if let Some(problem) = walk.step(position, event, seal) {
            return Some(problem);
        }
    }
}

/// The state of a walk over the log and its seals in global order.
#[derive(Debug)]
struct Walk {
    log_head: i64,
    anchor: Option<ChainAnchor>,
    /// The next position expected.
    next: i64,
    /// The last seal checked.
    sealed: ChainAnchor,
    checked: u64,
    /// The first event after the last seal, and how many follow it.
    first_unsealed: Option<i64>,
    unsealed: u64,
}

impl Walk {
    fn new(log_head: i64, anchor: Option<ChainAnchor>) -> Self {
        Self {
            log_head,
            anchor,
            next: 1,
            sealed: ChainAnchor::GENESIS,
            checked: 0,
            first_unsealed: None,
            unsealed: 0,
        }
    }

    fn step(
        &mut self,
        position: i64,
        event: Option<&EventRow>,
        seal: Option<&SealRow>,
    ) -> Option<ChainProblem> {
        if position < 1 {
            return Some(ChainProblem::Inserted { position: 0 });
        }
        let at = to_u64(position);
        if position > self.next {
            return Some(ChainProblem::Removed {
                position: to_u64(self.next),
            });
        }
        self.next = position + 1;
        match (event, seal) {
            (Some(_), _) if position > self.log_head => {
                Some(ChainProblem::Inserted { position: at })
            }
            (_, Some(_)) if self.first_unsealed.is_some() => Some(ChainProblem::Inserted {
                position: to_u64(self.first_unsealed.unwrap_or(position)),
            }),
            (None, Some(_)) => Some(ChainProblem::Removed { position: at }),
            (Some(event), Some(seal)) => {
                let (Some(event_hash), Some(sealed_chain)) = (seal.event_hash, seal.chain_hash)
                else {
                    return Some(ChainProblem::SealBroken { position: at });
                };
                if chain_hash(&self.sealed.chain_hash, &event_hash) != sealed_chain {
                    return Some(ChainProblem::SealBroken { position: at });
                }
                if event.hash() != event_hash {
                    return Some(ChainProblem::Altered {
                        position: at,
                        event_id: event.event_id.unwrap_or(Uuid::nil()),
                    });
                }
                self.sealed = ChainAnchor {
                    position: at,
                    chain_hash: sealed_chain,
                };
                self.checked += 1;
                match self.anchor {
                    Some(anchor) if anchor.position == at && anchor != self.sealed => {
                        Some(ChainProblem::AnchorMismatch { position: at })
                    }
                    _ => None,
                }
            }
            (Some(_), None) => {
                self.first_unsealed.get_or_insert(position);
                self.unsealed += 1;
                None
            }
            (None, None) => None,
        }
    }

    /// The checks after the last position: the tail of the log, the
    /// sealer's head, the anchor. The lowest position wins.
    fn finish(&self, seal_head: ChainAnchor) -> Option<ChainProblem> {
        let mut found = Vec::new();
        if self.next <= self.log_head {
            found.push(ChainProblem::Removed {
                position: to_u64(self.next),
            });
        }
        if seal_head != self.sealed {
            let position = if seal_head.position == self.sealed.position {
                seal_head.position
            } else {
                seal_head.position.min(self.sealed.position) + 1
            };
            found.push(ChainProblem::SealBroken { position });
        }
        if let Some(anchor) = self.anchor {
            if anchor.position > self.sealed.position
                || (anchor.position == 0 && anchor != ChainAnchor::GENESIS)
            {
                found.push(ChainProblem::AnchorMismatch {
                    position: anchor.position,
                });
            }
        }
        found.into_iter().min_by_key(ChainProblem::position)
    }

    fn report(&self, problem: Option<ChainProblem>) -> VerifyReport {
        VerifyReport {
            checked: self.checked,
            sealed_up_to: self.sealed,
            log_head: to_u64(self.log_head),
            unsealed: self.unsealed,
            problem,
        }
    }
}

/// One `sl_events` row, as it is hashed. Every column but the position is
/// optional only so that a row whose constraints were dropped and broken
/// still hashes (to something else) instead of failing to decode.
#[derive(Debug, Clone, PartialEq, Eq)]
struct EventRow {
    position: i64,
    stream_name: Option<String>,
    stream_revision: Option<i64>,
    event_id: Option<Uuid>,
    event_type: Option<String>,
    schema_version: Option<i32>,
    /// The jsonb's text as PostgreSQL prints it.
    data: Option<String>,
    metadata: Option<String>,
    /// `timestamptz_send(recorded_at)`.
    recorded_at: Option<Vec<u8>>,
}

impl EventRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        Ok(Self {
            position: row.try_get("global_position")?,
            stream_name: row.try_get("stream_name")?,
            stream_revision: row.try_get("stream_revision")?,
            event_id: row.try_get("event_id")?,
            event_type: row.try_get("event_type")?,
            schema_version: row.try_get("schema_version")?,
            data: row.try_get("data")?,
            metadata: row.try_get("metadata")?,
            recorded_at: row.try_get("recorded_at")?,
        })
    }

    /// `event_hash` of the module docs.
    fn hash(&self) -> Hash {
        let mut h = Sha256::new();
        h.update([0x00]);
        let mut field = |bytes: Option<&[u8]>| match bytes {
            Some(bytes) => {
                h.update((bytes.len() as u64).to_be_bytes());
                h.update(bytes);
            }
            None => h.update(u64::MAX.to_be_bytes()),
        };
        field(Some(ENCODING_TAG));
        field(Some(&self.position.to_be_bytes()));
        field(self.stream_name.as_deref().map(str::as_bytes));
        field(
            self.stream_revision
                .map(i64::to_be_bytes)
                .as_ref()
                .map(|b| &b[..]),
        );
        field(self.event_id.as_ref().map(|id| &id.as_bytes()[..]));
        field(self.event_type.as_deref().map(str::as_bytes));
        field(
            self.schema_version
                .map(i32::to_be_bytes)
                .as_ref()
                .map(|b| &b[..]),
        );
        field(self.data.as_deref().map(str::as_bytes));
        field(self.metadata.as_deref().map(str::as_bytes));
        field(self.recorded_at.as_deref());
        h.finalize().into()
    }
}

/// One `sl_seals` row; a hash of the wrong length is `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
struct SealRow {
    position: i64,
    event_hash: Option<Hash>,
    chain_hash: Option<Hash>,
}

impl SealRow {
    fn from_row(row: &PgRow) -> Result<Self, sqlx::Error> {
        let hash = |name: &str| -> Result<Option<Hash>, sqlx::Error> {
            Ok(row
                .try_get::<Option<Vec<u8>>, _>(name)?
                .as_deref()
                .and_then(to_hash))
        };
        Ok(Self {
            position: row.try_get("global_position")?,
            event_hash: hash("event_hash")?,
            chain_hash: hash("chain_hash")?,
        })
    }
}

/// `chain_hash` of the module docs.
fn chain_hash(prev: &Hash, event_hash: &Hash) -> Hash {
    let mut h = Sha256::new();
    h.update([0x01]);
    h.update(prev);
    h.update(event_hash);
    h.finalize().into()
}

fn to_hash(bytes: &[u8]) -> Option<Hash> {
    bytes.try_into().ok()
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn serialize_hex<S: serde::Serializer>(hash: &Hash, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&hex::encode(hash))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(position: i64) -> EventRow {
        EventRow {
            position,
            stream_name: Some("site-1".into()),
            stream_revision: Some(position - 1),
            event_id: Some(Uuid::from_u128(position as u128)),
            event_type: Some("Happened".into()),
            schema_version: Some(1),
            data: Some(format!(r#"{{"n": {position}}}"#)),
            metadata: Some("{}".into()),
            recorded_at: Some(vec![0, 0, 0, 0, 0, 0, 0, 1]),
        }
    }

    #[test]
    fn anchors_print_as_position_and_lowercase_hex() {
        let mut chain_hash = [0u8; 32];
        chain_hash[0] = 0xAB;
        chain_hash[31] = 0x0F;
        let anchor = ChainAnchor {
            position: 42,
            chain_hash,
        };
        let printed = format!("42:ab{}0f", "00".repeat(30));
        assert_eq!(anchor.to_string(), printed);
        assert_eq!(
            serde_json::to_value(anchor).unwrap()["chain_hash"],
            serde_json::json!(printed[3..])
        );
    }

    /// Seals for `rows`, chained from genesis.
    fn seals(rows: &[EventRow]) -> Vec<SealRow> {
        let mut prev = GENESIS;
        rows.iter()
            .map(|r| {
                let event_hash = r.hash();
                prev = chain_hash(&prev, &event_hash);
                SealRow {
                    position: r.position,
                    event_hash: Some(event_hash),
                    chain_hash: Some(prev),
                }
            })
            .collect()
    }

    fn walk(events: &[EventRow], seals: &[SealRow], log_head: i64) -> (Walk, Option<ChainProblem>) {
        let mut walk = Walk::new(log_head, None);
        let problem = walk_merged(&mut walk, events, seals, i64::MAX);
        (walk, problem)
    }

    #[test]
    fn the_encoding_is_unambiguous() {
        let a = EventRow {
            stream_name: Some("ab".into()),
            event_type: Some("c".into()),
            ..row(1)
        };
        let b = EventRow {
            stream_name: Some("a".into()),
            event_type: Some("bc".into()),
            ..row(1)
        };
        assert_ne!(a.hash(), b.hash());
        let empty = EventRow {
            stream_name: Some(String::new()),
            ..row(1)
        };
        let null = EventRow {
            stream_name: None,
            ..row(1)
        };
        assert_ne!(empty.hash(), null.hash());
        assert_eq!(row(1).hash(), row(1).hash());
    }

    #[test]
    fn every_field_changes_the_hash() {
        let base = row(3);
        let variants = [
            EventRow {
                position: 4,
                ..base.clone()
            },
            EventRow {
                stream_name: Some("site-2".into()),
                ..base.clone()
            },
            EventRow {
                stream_revision: Some(7),
                ..base.clone()
            },
            EventRow {
                event_id: Some(Uuid::nil()),
                ..base.clone()
            },
            EventRow {
                event_type: Some("Other".into()),
                ..base.clone()
            },
            EventRow {
                schema_version: Some(2),
                ..base.clone()
            },
            EventRow {
                data: Some(r#"{"n": 3.0}"#.into()),
                ..base.clone()
            },
            EventRow {
                metadata: Some(r#"{"a": 1}"#.into()),
                ..base.clone()
            },
            EventRow {
                recorded_at: Some(vec![0, 0, 0, 0, 0, 0, 0, 2]),
                ..base.clone()
            },
        ];
        for variant in variants {
            assert_ne!(variant.hash(), base.hash(), "{variant:?}");
        }
    }

    #[test]
    fn a_clean_chain_with_an_unsealed_tail() {
        let events: Vec<_> = (1..=5).map(row).collect();
        let seals = seals(&events[..3]);
        let (walk, problem) = walk(&events, &seals, 5);
        assert_eq!(problem, None);
        assert_eq!(walk.finish(ChainAnchor { ..walk.sealed }), None);
        let report = walk.report(None);
        assert_eq!(
            (
                report.checked,
                report.sealed_up_to.position,
                report.unsealed
            ),
            (3, 3, 2)
        );
    }

    #[test]
    fn problems_are_typed_and_first() {
        let events: Vec<_> = (1..=5).map(row).collect();
        let sealed = seals(&events);

        let mut altered = events.clone();
        altered[2].data = Some(r#"{"n": 99}"#.into());
        altered[3].data = Some(r#"{"n": 99}"#.into());
        assert_eq!(
            walk(&altered, &sealed, 5).1,
            Some(ChainProblem::Altered {
                position: 3,
                event_id: Uuid::from_u128(3)
            })
        );

        let mut removed = events.clone();
        removed.remove(1);
        assert_eq!(
            walk(&removed, &sealed, 5).1,
            Some(ChainProblem::Removed { position: 2 })
        );

        let mut broken = sealed.clone();
        broken[3].chain_hash = Some([7; 32]);
        assert_eq!(
            walk(&events, &broken, 5).1,
            Some(ChainProblem::SealBroken { position: 4 })
        );

        let mut unsealed_between = sealed.clone();
        unsealed_between.remove(2);
        assert_eq!(
            walk(&events, &unsealed_between, 5).1,
            Some(ChainProblem::Inserted { position: 3 })
        );

        let mut beyond = events.clone();
        beyond.push(row(6));
        assert_eq!(
            walk(&beyond, &sealed, 5).1,
            Some(ChainProblem::Inserted { position: 6 })
        );

        let (w, problem) = walk(&events[..4], &sealed[..4], 5);
        assert_eq!(problem, None);
        assert_eq!(
            w.finish(w.sealed),
            Some(ChainProblem::Removed { position: 5 })
        );
    }

    #[test]
    fn an_anchor_catches_a_rewritten_chain() {
        let events: Vec<_> = (1..=4).map(row).collect();
        let sealed = seals(&events);
        let anchor = ChainAnchor {
            position: 2,
            chain_hash: sealed[1].chain_hash.unwrap(),
        };
        let mut rewritten = events.clone();
        rewritten[0].data = Some(r#"{"forged": true}"#.into());
        let resealed = seals(&rewritten);
        let mut w = Walk::new(4, Some(anchor));
        assert_eq!(walk_merged(&mut w, &events, &sealed, i64::MAX), None);
        let mut w = Walk::new(4, Some(anchor));
        assert_eq!(
            walk_merged(&mut w, &rewritten, &resealed, i64::MAX),
            Some(ChainProblem::AnchorMismatch { position: 2 })
        );
        let mut w = Walk::new(
            4,
            Some(ChainAnchor {
                position: 9,
                ..anchor
            }),
        );
        assert_eq!(walk_merged(&mut w, &events, &sealed, i64::MAX), None);
        assert_eq!(
            w.finish(w.sealed),
            Some(ChainProblem::AnchorMismatch { position: 9 })
        );
    }
}
