//! The event log on PostgreSQL.
//!
//! Every write goes through one of two server-side functions created by the
//! migrations (`sl_append`, `sl_delete_stream`), so an append is one round
//! trip and one transaction. The functions lock the streams they touch, check
//! idempotency and expectations, and take the head of the log last, holding it
//! until commit: global positions are dense (1, 2, 3, …) and commit in order,
//! which makes subscriptions gap-safe without a high-water mark. The design,
//! the options weighed and the guarantees are in `docs/event-store.md`.
//!
//! The integrity chain (`chain.rs`: [`Sealer`], [`verify`]) follows the log
//! after commit and hashes every event into a SHA-256 chain; it does not
//! touch the append path.
//!
//! **API boundary:** [`PgEventStore`] and [`LogError`]; everything else here
//! is plumbing.

mod append;
mod chain;
mod error;
mod history;
pub mod lease;
pub mod local_pg;
mod subscription;
pub mod supervise;
mod tags;

use std::collections::HashMap;
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use chrono::{DateTime, Utc};
use serde::Serialize;
use sqlx::postgres::{PgPool, PgRow};
use sqlx::Row;
use tokio::sync::watch;
use uuid::Uuid;

use crate::dcb::AppendCondition;
use crate::envelope::{
    Category, Direction, EventMetadata, EventType, ExpectedRevision, InvalidInput, NewEvent,
    RecordedEvent, StreamName, StreamState,
};
use append::{AppendRequest, Writer};

pub use chain::{
    verify, verify_with_progress, ChainAnchor, ChainError, ChainProblem, Hash, SealProgress,
    Sealer, SealerOptions, VerifyOptions, VerifyReport, GENESIS, HASHED_COLUMN_NAMES,
};
pub use error::LogError;
pub use subscription::{Subscription, SubscriptionOptions, CHANNEL as LOG_CHANNEL};

/// The schema migrations (the `migrations/` folder at the workspace root),
/// embedded at compile time.
pub static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("../migrations");

/// How many times an append is re-run after a transient conflict inside
/// PostgreSQL (deadlock, serialization failure, a concurrent duplicate id).
const TRANSIENT_RETRIES: usize = 5;

const EVENT_COLUMNS: &str = "global_position, stream_name, stream_revision, event_id, \
     event_type, schema_version, data, metadata, recorded_at";
/// The same columns of a row aliased `e`.
const E_EVENT_COLUMNS: &str = "e.global_position, e.stream_name, e.stream_revision, e.event_id, \
     e.event_type, e.schema_version, e.data, e.metadata, e.recorded_at";

/// One stream's part of an append: the stream, what it must be before, and
/// its new events in order.
#[derive(Debug, Clone)]
pub struct StreamAppend {
    pub stream: StreamName,
    pub expected: ExpectedRevision,
    pub events: Vec<NewEvent>,
}

/// Where one appended event landed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct WrittenEvent {
    pub event_id: Uuid,
    pub stream_revision: u64,
    pub global_position: u64,
    /// True when the event had been written by an earlier send of the same
    /// append (an idempotent retry): nothing was written now.
    pub replayed: bool,
}

/// The outcome of one stream's append.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct AppendResult {
    pub stream: StreamName,
    /// The revision of the stream's last event after the append: pass it as
    /// `ExpectedRevision::Exact` to append next.
    pub next_expected: u64,
    /// Each event of the append, in the order given.
    pub events: Vec<WrittenEvent>,
}

impl AppendResult {
    /// The global position of the append's last event (a consistency token).
    pub fn last_position(&self) -> u64 {
        self.events.last().map_or(0, |e| e.global_position)
    }
}

/// Where a stream read starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RevisionFrom {
    /// The first revision (forwards) or the last (backwards).
    Edge,
    /// This revision, included.
    At(u64),
}

/// Where a read of the whole log (or of a category or event type) starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PositionFrom {
    /// Position 1 (forwards) or the head (backwards).
    Edge,
    /// This position, included.
    At(u64),
}

/// A stream's lifecycle and revisions, as the log sees it now.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct StreamInfo {
    pub state: StreamState,
    /// The revision of the last event ever appended, deleted or not.
    pub last_revision: Option<u64>,
    /// Revisions below this one are hidden (a soft delete moves it past the
    /// end); 0 for a stream never deleted.
    pub visible_from: u64,
    pub tombstoned: bool,
}

impl StreamInfo {
    fn from_row(row: Option<&sqlx::postgres::PgRow>) -> Result<Self, sqlx::Error> {
        let Some(row) = row else {
            return Ok(StreamInfo {
                state: StreamState::NoStream,
                last_revision: None,
                visible_from: 0,
                tombstoned: false,
            });
        };
        let last: i64 = row.try_get("last_revision")?;
        let visible_from: i64 = row.try_get("visible_from")?;
        Ok(StreamInfo {
            state: if last < visible_from {
                StreamState::NoStream
            } else {
                StreamState::At(last as u64)
            },
            last_revision: u64::try_from(last).ok(),
            visible_from: u64::try_from(visible_from).unwrap_or(0),
            tombstoned: row.try_get("tombstoned")?,
        })
    }

    /// Whether a reader that read the stream whole from revision 0 and
    /// stopped at `read` (`NoStream`: found nothing) would read the same now:
    /// nothing appended, deleted or tombstoned since.
    pub fn unchanged_since(&self, read: ExpectedRevision) -> bool {
        if self.tombstoned || self.visible_from > 0 {
            return false;
        }
        match read {
            ExpectedRevision::NoStream => self.last_revision.is_none(),
            ExpectedRevision::Exact(r) => self.last_revision == Some(r),
            _ => false,
        }
    }
}

/// Figures about the whole log, for `shareledger status`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct LogStatus {
    pub head_position: u64,
    pub streams: u64,
    pub last_recorded_at: Option<DateTime<Utc>>,
}

/// The event log, over a PostgreSQL connection pool whose database has been
/// migrated with [`MIGRATOR`].
///
/// Clones share one writer task, which merges appends that arrive at the
/// same time into one transaction (see `store/append.rs`).
#[derive(Debug, Clone)]
pub struct PgEventStore {
    pool: PgPool,
    /// Where reads of events and streams go: `pool`, or a streaming
    /// replica of its database ([`PgEventStore::reading_from`]).
    reads: PgPool,
    replica: bool,
    writer: Arc<OnceLock<Writer>>,
    /// The highest position this process knows to be committed.
    head: Arc<watch::Sender<u64>>,
}

/// How long a pooled connection may sit idle before it is checked again
/// when handed out ([`PgEventStore::pool_options`]).
pub const PING_AFTER_IDLE: Duration = Duration::from_secs(30);

impl PgEventStore {
    /// Wraps a pool. The database must be migrated (see [`PgEventStore::migrate`]).
    pub fn new(pool: PgPool) -> Self {
        Self {
            reads: pool.clone(),
            replica: false,
            pool,
            writer: Arc::new(OnceLock::new()),
            head: Arc::new(watch::channel(0).0),
        }
    }

    /// The highest global position this process knows to be committed,
    /// without asking the database: the last event of every append made
    /// through this store (or a clone), of every page of `$all` read, of
    /// every [`PgEventStore::head_position`], and of every notification a
    /// subscription received. A read model at least this far has applied
    /// every write this process has acknowledged, so answering only then
    /// reads the process's own writes (see `LiveAccess::fresh`).
    pub fn known_head(&self) -> u64 {
        *self.head.borrow()
    }

    /// Changes of [`PgEventStore::known_head`].
    pub fn watch_known_head(&self) -> watch::Receiver<u64> {
        self.head.subscribe()
    }

    /// Records that the log has reached at least `position`.
    pub(crate) fn observe_head(&self, position: u64) {
        self.head.send_if_modified(|head| {
            if position > *head {
                *head = position;
                true
            } else {
                false
            }
        });
    }

    /// Pool options for a store: sqlx's defaults, except that a connection
    /// handed out of the pool is checked (pinged) only after it sat idle for
    /// [`PING_AFTER_IDLE`]. sqlx pings on every acquire by default: one more
    /// round trip to the server per query, which under load cost the command
    /// service about a fifth of its CPU. A connection that died while busy
    /// fails its query with an I/O error and is dropped by the pool.
    pub fn pool_options() -> sqlx::postgres::PgPoolOptions {
        sqlx::postgres::PgPoolOptions::new()
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_AFTER_IDLE {
                        sqlx::Connection::ping(conn).await?;
                    }
                    Ok(true)
                })
            })
    }

    /// Runs the pending migrations on the pool's database.
    ///
    /// Then derives the tags of events stored before the log kept tags (a
    /// one-time step after migration `20261207000001`; see `store/tags.rs`).
    pub async fn migrate(pool: &PgPool) -> Result<(), sqlx::migrate::MigrateError> {
        MIGRATOR.run(pool).await?;
        tags::derive_old_tags(pool)
            .await
            .map_err(sqlx::migrate::MigrateError::Execute)?;
        Ok(())
    }

    /// The pool this store writes through (the primary).
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// A store sharing this one's writer and known head whose reads of
    /// events and streams (pages of `$all`, categories, streams, tags,
    /// events by id, stream state) go to `replica`, a streaming replica of this store's
    /// database; appends, the log's head ([`PgEventStore::head_position`],
    /// [`PgEventStore::status`]), the history's reads (`store/history.rs`)
    /// and subscriptions' notifications stay on the primary. A replica
    /// may lag: a reader that must see a write waits for its position
    /// (subscriptions do, see `store/subscription.rs`). Decisions must
    /// not read through such a store: give the command service the
    /// primary's.
    pub fn reading_from(&self, replica: PgPool) -> Self {
        Self {
            reads: replica,
            replica: true,
            ..self.clone()
        }
    }

    /// The pool reads go to: the replica's for a store made by
    /// [`PgEventStore::reading_from`], else [`PgEventStore::pool`].
    pub fn reads(&self) -> &PgPool {
        &self.reads
    }

    /// Whether reads go to a replica.
    pub fn reads_from_replica(&self) -> bool {
        self.replica
    }

    /// Appends `events` to `stream` if it is as `expected`.
    ///
    /// Re-sending an append whose events were all written already returns the
    /// original result and writes nothing, whatever `expected` says.
    pub async fn append(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        events: Vec<NewEvent>,
    ) -> Result<AppendResult, LogError> {
        let mut results = self
            .append_multi(vec![StreamAppend {
                stream: stream.clone(),
                expected,
                events,
            }])
            .await?;
        Ok(results.remove(0))
    }

    /// Appends to several streams at once, each with its own expectation:
    /// all are written, or none.
    pub async fn append_multi(
        &self,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, LogError> {
        self.append_guarded(appends, &[]).await
    }

    /// Like [`PgEventStore::append_multi`], and also requires each of
    /// `guards` to be as expected, without writing to it: a decision that
    /// read other streams appends only if they did not change meanwhile.
    pub async fn append_guarded(
        &self,
        appends: Vec<StreamAppend>,
        guards: &[(StreamName, ExpectedRevision)],
    ) -> Result<Vec<AppendResult>, LogError> {
        self.append_conditioned(appends, guards, None).await
    }

    /// Like [`PgEventStore::append_guarded`], and also requires `condition`
    /// (when given) to hold: no event matching its query was appended after
    /// its items' positions (a dynamic consistency boundary, see
    /// [`crate::dcb`]). Checked atomically with the append; a failed
    /// condition writes nothing and is [`LogError::ConditionFailed`], naming
    /// the first conflicting event. A re-sent append whose events were all
    /// written already returns the original result, whatever the condition.
    pub async fn append_conditioned(
        &self,
        appends: Vec<StreamAppend>,
        guards: &[(StreamName, ExpectedRevision)],
        condition: Option<&AppendCondition>,
    ) -> Result<Vec<AppendResult>, LogError> {
        let request = AppendRequest::build(&appends, guards, condition)?;
        let writer = self.writer.get_or_init(|| Writer::start(self.pool.clone()));
        let mut attempt = 0;
        let rows = loop {
            let outcome = match writer.append(request.clone()).await {
                Some(outcome) => outcome,
                None => request.execute(&self.pool).await.map_err(LogError::from_db),
            };
            match outcome {
                Ok(rows) => {
                    if let Some(last) = rows.iter().map(|w| w.global_position).max() {
                        self.observe_head(last);
                    }
                    break rows;
                }
                Err(LogError::Database(e))
                    if attempt < TRANSIENT_RETRIES && error::is_transient(&e) =>
                {
                    attempt += 1;
                    tracing::debug!(attempt, error = %e, "append retried after a transient conflict");
                    tokio::time::sleep(Duration::from_millis(1 << attempt)).await;
                }
                Err(e) => return Err(e),
            }
        };
        Ok(results_in_order(appends, rows))
    }

    /// Appends inside a transaction the caller owns, on its connection: the
    /// events commit (and get their place in the global order) with the
    /// caller's other writes, or not at all. No retry: a transient conflict
    /// surfaces as [`LogError::Database`]. While the caller's transaction is
    /// open after this call, no other append can commit, so keep it short.
    pub async fn append_multi_in(
        conn: &mut sqlx::PgConnection,
        appends: Vec<StreamAppend>,
    ) -> Result<Vec<AppendResult>, LogError> {
        let request = AppendRequest::build(&appends, &[], None)?;
        let rows = request.execute(conn).await.map_err(LogError::from_db)?;
        Ok(results_in_order(appends, rows))
    }

    /// Reads up to `limit` events of a stream from `from`, in `direction`.
    /// A stream with nothing visible (never written, or soft-deleted) is
    /// [`LogError::StreamNotFound`]; a tombstoned one [`LogError::StreamTombstoned`].
    pub async fn read_stream(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: RevisionFrom,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        match self
            .read_stream_inner(stream, direction, from, limit)
            .await?
        {
            (Some(events), _) => Ok(events),
            (None, _) => Err(LogError::StreamNotFound {
                stream: stream.to_string(),
            }),
        }
    }

    /// Like [`PgEventStore::read_stream`], with the log's committed head as
    /// of the read: every event of the stream up to that position is in the
    /// answer (unless `limit` cut it short), which is what a decision needs
    /// to say "nothing after what I read" (see [`crate::dcb`]). A stream
    /// never written reads as empty; a deleted or tombstoned one is an error
    /// as with `read_stream`.
    pub async fn read_stream_with_head(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: RevisionFrom,
        limit: usize,
    ) -> Result<(Vec<RecordedEvent>, u64), LogError> {
        let (events, head) = self
            .read_stream_inner(stream, direction, from, limit)
            .await?;
        Ok((events.unwrap_or_default(), head))
    }

    /// A stream's events (`None`: never written) and the committed head, in
    /// one statement (one snapshot).
    async fn read_stream_inner(
        &self,
        stream: &StreamName,
        direction: Direction,
        from: RevisionFrom,
        limit: usize,
    ) -> Result<(Option<Vec<RecordedEvent>>, u64), LogError> {
        let limit = check_limit(limit)?;
        let (cmp, order, start) = match (direction, from) {
            (Direction::Forwards, RevisionFrom::Edge) => (">=", "ASC", 0),
            (Direction::Forwards, RevisionFrom::At(r)) => (">=", "ASC", to_i64(r)),
            (Direction::Backwards, RevisionFrom::Edge) => ("<=", "DESC", i64::MAX),
            (Direction::Backwards, RevisionFrom::At(r)) => ("<=", "DESC", to_i64(r)),
        };
        // One statement, one snapshot: the head, the stream's state and its
        // events (one row with no stream when it was never written).
        let sql = format!(
            "SELECT s.stream_name IS NOT NULL AS found, coalesce(s.tombstoned, false) AS tombstoned, \
                    coalesce(s.last_revision < s.visible_from, false) AS hidden, \
                    h.last_position AS head, {E_EVENT_COLUMNS} \
             FROM sl_log_head h \
             LEFT JOIN sl_streams s ON s.stream_name = $1 \
             LEFT JOIN LATERAL ( \
                 SELECT {EVENT_COLUMNS} FROM sl_events e \
                 WHERE e.stream_name = s.stream_name AND e.stream_revision {cmp} $2 \
                   AND e.stream_revision >= s.visible_from \
                 ORDER BY e.stream_revision {order} LIMIT $3) e ON s.stream_name IS NOT NULL"
        );
        use futures::TryStreamExt;
        let mut rows = sqlx::query(&sql)
            .bind(stream.as_str())
            .bind(start)
            .bind(limit)
            .fetch(&self.reads);
        let mut events = Vec::with_capacity(limit.clamp(0, 1024) as usize);
        let mut first = true;
        let mut head = 0;
        while let Some(row) = rows.try_next().await? {
            if first {
                first = false;
                head = row.try_get::<i64, _>("head")?.max(0) as u64;
                self.observe_head(head);
                if !row.try_get::<bool, _>("found")? {
                    return Ok((None, head));
                }
                if row.try_get::<bool, _>("tombstoned")? {
                    return Err(LogError::StreamTombstoned {
                        stream: stream.to_string(),
                    });
                }
                if row.try_get::<bool, _>("hidden")? {
                    return Err(LogError::StreamNotFound {
                        stream: stream.to_string(),
                    });
                }
            }
            if row.try_get::<Option<i64>, _>("global_position")?.is_some() {
                events.push(recorded_event(&row)?);
            }
        }
        Ok((Some(events), head))
    }

    /// Reads up to `limit` events of the whole log (`$all`) from `from`, in
    /// `direction`. `$all` is the log as written: it includes events of
    /// deleted streams and the log's own lifecycle events.
    pub async fn read_all(
        &self,
        direction: Direction,
        from: PositionFrom,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let events = self
            .read_filtered(Filter::All, direction, from, limit)
            .await?;
        if let Some(last) = events.iter().map(|e| e.global_position).max() {
            self.observe_head(last);
        }
        Ok(events)
    }

    /// Reads up to `limit` visible events of every stream in `category`, in
    /// global order.
    pub async fn read_category(
        &self,
        category: &Category,
        direction: Direction,
        from: PositionFrom,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.read_filtered(Filter::Category(category.as_str()), direction, from, limit)
            .await
    }

    /// Reads up to `limit` visible events of type `event_type`, in global order.
    pub async fn read_event_type(
        &self,
        event_type: &EventType,
        direction: Direction,
        from: PositionFrom,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        self.read_filtered(
            Filter::EventType(event_type.as_str()),
            direction,
            from,
            limit,
        )
        .await
    }

    async fn read_filtered(
        &self,
        filter: Filter<'_>,
        direction: Direction,
        from: PositionFrom,
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let limit = check_limit(limit)?;
        let (cmp, order, start) = match (direction, from) {
            (Direction::Forwards, PositionFrom::Edge) => (">=", "ASC", 1),
            (Direction::Forwards, PositionFrom::At(p)) => (">=", "ASC", to_i64(p)),
            (Direction::Backwards, PositionFrom::Edge) => ("<=", "DESC", i64::MAX),
            (Direction::Backwards, PositionFrom::At(p)) => ("<=", "DESC", to_i64(p)),
        };
        let (condition, key) = match filter {
            Filter::All => ("true", ""),
            Filter::Category(c) => ("split_part(e.stream_name, '-', 1) = $3", c),
            Filter::EventType(t) => ("e.event_type = $3", t),
        };
        let visible = match filter {
            Filter::All => "",
            _ => {
                " AND e.stream_revision >= (SELECT s.visible_from FROM sl_streams s \
                     WHERE s.stream_name = e.stream_name)"
            }
        };
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM sl_events e \
             WHERE e.global_position {cmp} $1 AND {condition}{visible} \
             ORDER BY e.global_position {order} LIMIT $2"
        );
        let mut query = sqlx::query(&sql).bind(start).bind(limit);
        if !key.is_empty() {
            query = query.bind(key);
        }
        decode_rows(query, &self.reads, limit).await
    }

    /// The visible events tagged `tag` whose type is one of `types`, in
    /// global order, at most `limit` (a DCB read by query: one range of the
    /// tags' primary key).
    pub async fn read_tagged(
        &self,
        tag: &crate::Tag,
        types: &[&str],
        limit: usize,
    ) -> Result<Vec<RecordedEvent>, LogError> {
        let limit = check_limit(limit)?;
        let sql = format!(
            "SELECT {EVENT_COLUMNS} FROM sl_events e \
             WHERE e.global_position IN (SELECT t.global_position FROM sl_event_tags t \
                 WHERE t.tag = $1 AND t.event_type = ANY($2)) \
             AND e.stream_revision >= (SELECT s.visible_from FROM sl_streams s \
                 WHERE s.stream_name = e.stream_name) \
             ORDER BY e.global_position LIMIT $3"
        );
        let query = sqlx::query(&sql).bind(tag.as_str()).bind(types).bind(limit);
        decode_rows(query, &self.reads, limit).await
    }

    /// The events with these ids that exist, in global order.
    pub async fn read_events_by_id(&self, ids: &[Uuid]) -> Result<Vec<RecordedEvent>, LogError> {
        // No ORDER BY … LIMIT here: with one, the planner may walk the
        // position index looking for the ids instead of probing the id index.
        let sql = format!("SELECT {EVENT_COLUMNS} FROM sl_events e WHERE e.event_id = ANY($1)");
        let limit = i64::try_from(ids.len()).unwrap_or(i64::MAX);
        let mut events = decode_rows(sqlx::query(&sql).bind(ids), &self.reads, limit).await?;
        events.sort_by_key(|e| e.global_position);
        Ok(events)
    }

    /// What the log knows of a stream now.
    pub async fn stream_info(&self, stream: &StreamName) -> Result<StreamInfo, LogError> {
        let row = sqlx::query(
            "SELECT last_revision, visible_from, tombstoned FROM sl_streams WHERE stream_name = $1",
        )
        .bind(stream.as_str())
        .fetch_optional(&self.reads)
        .await?;
        Ok(StreamInfo::from_row(row.as_ref())?)
    }

    /// What the log knows of each of `streams` now, in their order: one
    /// query for all of them.
    pub async fn stream_infos(&self, streams: &[StreamName]) -> Result<Vec<StreamInfo>, LogError> {
        let names: Vec<&str> = streams.iter().map(StreamName::as_str).collect();
        let rows = sqlx::query(
            "SELECT u.ord, s.last_revision, s.visible_from, s.tombstoned \
             FROM unnest($1::text[]) WITH ORDINALITY AS u(name, ord) \
             LEFT JOIN sl_streams s ON s.stream_name = u.name ORDER BY u.ord",
        )
        .bind(&names)
        .fetch_all(&self.reads)
        .await?;
        rows.iter()
            .map(|row| {
                let found: Option<i64> = row.try_get("last_revision")?;
                StreamInfo::from_row(found.map(|_| row))
            })
            .collect::<Result<_, sqlx::Error>>()
            .map_err(LogError::from)
    }

    /// Soft-deletes a stream: its events are hidden from stream, category and
    /// event-type reads (not from `$all`), and appending again continues its
    /// revisions. Returns the global position of the `$StreamDeleted` event.
    pub async fn delete_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: EventMetadata,
    ) -> Result<u64, LogError> {
        self.end_stream(stream, expected, false, metadata).await
    }

    /// Tombstones a stream: hidden, and never writable again. Returns the
    /// global position of the `$StreamTombstoned` event.
    pub async fn tombstone_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        metadata: EventMetadata,
    ) -> Result<u64, LogError> {
        self.end_stream(stream, expected, true, metadata).await
    }

    async fn end_stream(
        &self,
        stream: &StreamName,
        expected: ExpectedRevision,
        tombstone: bool,
        metadata: EventMetadata,
    ) -> Result<u64, LogError> {
        let metadata = serde_json::to_value(&metadata).expect("metadata serializes");
        let position: i64 = sqlx::query_scalar("SELECT sl_delete_stream($1, $2, $3, $4, $5)")
            .bind(stream.as_str())
            .bind(encode_expected(expected))
            .bind(tombstone)
            .bind(Uuid::now_v7())
            .bind(metadata)
            .fetch_one(&self.pool)
            .await
            .map_err(LogError::from_db)?;
        self.observe_head(position as u64);
        Ok(position as u64)
    }

    /// The global position of the last committed event (0 for an empty
    /// log), on the primary: a replica's head may lag it.
    pub async fn head_position(&self) -> Result<u64, LogError> {
        let head: i64 =
            sqlx::query_scalar("SELECT coalesce(max(global_position), 0)::bigint FROM sl_events")
                .fetch_one(&self.pool)
                .await?;
        self.observe_head(head as u64);
        Ok(head as u64)
    }

    /// Figures about the log.
    pub async fn status(&self) -> Result<LogStatus, LogError> {
        let row = sqlx::query(
            "SELECT (SELECT coalesce(max(global_position), 0) FROM sl_events)::bigint AS head, \
                    (SELECT count(*) FROM sl_streams WHERE stream_name NOT LIKE '$$%' AND last_revision >= 0)::bigint AS streams, \
                    (SELECT recorded_at FROM sl_events ORDER BY global_position DESC LIMIT 1) AS last_at",
        )
        .fetch_one(&self.pool)
        .await?;
        Ok(LogStatus {
            head_position: row.try_get::<i64, _>("head")? as u64,
            streams: row.try_get::<i64, _>("streams")? as u64,
            last_recorded_at: row.try_get("last_at")?,
        })
    }

    /// Subscribes to the whole log: first every event after `checkpoint`
    /// (`None`: from the start), then live events as they commit, each exactly
    /// once and in global order.
    pub async fn subscribe_to_all(
        &self,
        checkpoint: Option<u64>,
        options: SubscriptionOptions,
    ) -> Result<Subscription, LogError> {
        Subscription::start(self.clone(), checkpoint.unwrap_or(0), options).await
    }
}

enum Filter<'a> {
    All,
    Category(&'a str),
    EventType(&'a str),
}

/// Lays the written rows out per stream append, in the order given.
fn results_in_order(appends: Vec<StreamAppend>, rows: Vec<WrittenEvent>) -> Vec<AppendResult> {
    let written: HashMap<Uuid, WrittenEvent> = rows.into_iter().map(|w| (w.event_id, w)).collect();
    appends
        .into_iter()
        .map(|a| {
            let events: Vec<WrittenEvent> = a.events.iter().map(|e| written[&e.id()]).collect();
            AppendResult {
                stream: a.stream,
                next_expected: events.last().map_or(0, |e| e.stream_revision),
                events,
            }
        })
        .collect()
}

fn check_limit(limit: usize) -> Result<i64, LogError> {
    if limit == 0 {
        return Err(InvalidInput::ZeroLimit.into());
    }
    Ok(i64::try_from(limit).unwrap_or(i64::MAX))
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

/// The bigint encoding of an expectation used by the SQL functions.
pub(crate) fn encode_expected(expected: ExpectedRevision) -> i64 {
    match expected {
        ExpectedRevision::Any => -1,
        ExpectedRevision::NoStream => -2,
        ExpectedRevision::StreamExists => -3,
        ExpectedRevision::Exact(n) => to_i64(n),
    }
}

/// Runs a read and decodes each row as it arrives.
async fn decode_rows<'q>(
    query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    pool: &PgPool,
    limit: i64,
) -> Result<Vec<RecordedEvent>, LogError> {
    use futures::TryStreamExt;
    let mut rows = query.fetch(pool);
    let mut events = Vec::with_capacity(limit.clamp(0, 1024) as usize);
    while let Some(row) = rows.try_next().await? {
        events.push(recorded_event(&row)?);
    }
    Ok(events)
}

fn recorded_event(row: &PgRow) -> Result<RecordedEvent, LogError> {
    Ok(RecordedEvent {
        global_position: row.try_get::<i64, _>("global_position")? as u64,
        stream: row.try_get("stream_name")?,
        stream_revision: row.try_get::<i64, _>("stream_revision")? as u64,
        event_id: row.try_get("event_id")?,
        event_type: row.try_get("event_type")?,
        schema_version: row.try_get::<i32, _>("schema_version")? as u32,
        data: row.try_get("data")?,
        metadata: row.try_get("metadata")?,
        recorded_at: row.try_get("recorded_at")?,
    })
}
