//! How appends reach PostgreSQL: laid out as the arrays `sl_append` takes,
//! and, when several arrive at once in one process, sent by a writer task
//! as one `sl_append_batch` call: one transaction, one commit, one WAL flush
//! for all of them (group commit, as EventStoreDB's single writer does).
//!
//! The writer never waits to fill a batch: it takes the first queued append
//! and whatever else is queued at that moment, so a lone append goes out at
//! once and a busy process sends bigger batches. `sl_append_batch` decides
//! the batch's appends in the order they were queued, each against the
//! state the ones before it left, exactly as if each ran alone one after
//! the other; an append whose expectation fails gets its own typed error
//! and the others are written. A retry (event ids in the log already) is
//! run alone afterwards, with `sl_append`, for its exact answer.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::PgPool;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::error::{is_transient, typed};
use super::supervise::sqlx_is_transient;
use super::{encode_expected, to_i64, LogError, StreamAppend, WrittenEvent};
use crate::dcb::AppendCondition;
use crate::envelope::{ExpectedRevision, InvalidInput, StreamName, MAX_EVENTS_PER_APPEND};

/// Most appends merged into one batch.
const MAX_BATCH_APPENDS: usize = 128;
/// Most events in one batch.
const MAX_BATCH_EVENTS: usize = 4 * MAX_EVENTS_PER_APPEND;

/// An append laid out as the SQL functions take it.
#[derive(Debug, Clone)]
pub(crate) struct AppendRequest {
    /// For each part, the append of the batch it belongs to (1-based; all
    /// 1 until batches are merged).
    part_append: Vec<i32>,
    streams: Vec<String>,
    expected: Vec<i64>,
    counts: Vec<i32>,
    event_part: Vec<i32>,
    event_ids: Vec<Uuid>,
    types: Vec<String>,
    versions: Vec<i32>,
    data: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
    /// Each tag's event (1-based, in `event_ids`), and the tags.
    tag_event: Vec<i32>,
    tags: Vec<String>,
    /// The condition's rows: append number (in a batch), tag, type (`None`:
    /// any), after.
    cond_append: Vec<i32>,
    cond_tags: Vec<String>,
    cond_types: Vec<Option<String>>,
    cond_after: Vec<i64>,
}

impl AppendRequest {
    /// Checks and lays out an append. `guards` are streams whose expectation
    /// must hold, without events written to them.
    pub(crate) fn build(
        appends: &[StreamAppend],
        guards: &[(StreamName, ExpectedRevision)],
        condition: Option<&AppendCondition>,
    ) -> Result<Self, InvalidInput> {
        let total: usize = appends.iter().map(|a| a.events.len()).sum();
        if appends.is_empty() || appends.iter().any(|a| a.events.is_empty()) {
            return Err(InvalidInput::NoEvents);
        }
        if total > MAX_EVENTS_PER_APPEND {
            return Err(InvalidInput::TooManyEvents { count: total });
        }
        let parts = appends.len() + guards.len();
        let mut seen_streams = HashSet::new();
        let mut seen_ids = HashSet::new();
        let mut request = AppendRequest {
            part_append: vec![1; parts],
            streams: Vec::with_capacity(parts),
            expected: Vec::with_capacity(parts),
            counts: Vec::with_capacity(parts),
            event_part: Vec::with_capacity(total),
            event_ids: Vec::with_capacity(total),
            types: Vec::with_capacity(total),
            versions: Vec::with_capacity(total),
            data: Vec::with_capacity(total),
            metadata: Vec::with_capacity(total),
            tag_event: Vec::new(),
            tags: Vec::new(),
            cond_append: Vec::new(),
            cond_tags: Vec::new(),
            cond_types: Vec::new(),
            cond_after: Vec::new(),
        };
        for (part, append) in appends.iter().enumerate() {
            if !seen_streams.insert(append.stream.as_str()) {
                return Err(InvalidInput::DuplicateStream(append.stream.to_string()));
            }
            request.streams.push(append.stream.to_string());
            request.expected.push(encode_expected(append.expected));
            request.counts.push(append.events.len() as i32);
            for event in &append.events {
                if !seen_ids.insert(event.id()) {
                    return Err(InvalidInput::DuplicateEventId(event.id()));
                }
                request.event_part.push(part as i32 + 1);
                request.event_ids.push(event.id());
                request.types.push(event.event_type().to_string());
                request.versions.push(event.schema_version() as i32);
                request.data.push(event.data().clone());
                request.metadata.push(event.metadata_json().clone());
                let number = request.event_ids.len() as i32;
                for tag in event.tags() {
                    request.tag_event.push(number);
                    request.tags.push(tag.to_string());
                }
            }
        }
        for (stream, expected) in guards {
            if !seen_streams.insert(stream.as_str()) {
                return Err(InvalidInput::DuplicateStream(stream.to_string()));
            }
            request.streams.push(stream.to_string());
            request.expected.push(encode_expected(*expected));
            request.counts.push(0);
        }
        if let Some(condition) = condition {
            condition.check()?;
            for item in condition.query.items() {
                let after = to_i64(item.after);
                if item.types.is_empty() {
                    request.push_condition(item.tag.as_str(), None, after);
                }
                for event_type in &item.types {
                    request.push_condition(item.tag.as_str(), Some(event_type.as_str()), after);
                }
            }
        }
        Ok(request)
    }

    fn push_condition(&mut self, tag: &str, event_type: Option<&str>, after: i64) {
        self.cond_append.push(1);
        self.cond_tags.push(tag.to_owned());
        self.cond_types.push(event_type.map(str::to_owned));
        self.cond_after.push(after);
    }

    fn events(&self) -> usize {
        self.event_ids.len()
    }

    /// Binds, as `$1` to `$14`, the arrays `sl_append` and `sl_append_batch`
    /// both take: parts (streams, expectations, counts), events, tags, and
    /// the condition's rows (tag, type, after).
    fn bind_parts<'q>(
        &'q self,
        query: sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments>,
    ) -> sqlx::query::Query<'q, sqlx::Postgres, sqlx::postgres::PgArguments> {
        query
            .bind(&self.streams)
            .bind(&self.expected)
            .bind(&self.counts)
            .bind(&self.event_part)
            .bind(&self.event_ids)
            .bind(&self.types)
            .bind(&self.versions)
            .bind(&self.data)
            .bind(&self.metadata)
            .bind(&self.tag_event)
            .bind(&self.tags)
            .bind(&self.cond_tags)
            .bind(&self.cond_types)
            .bind(&self.cond_after)
    }

    /// Runs this append alone with `sl_append`, on any executor (a pool, or
    /// the caller's transaction).
    pub(crate) async fn execute<'c>(
        &self,
        executor: impl sqlx::PgExecutor<'c>,
    ) -> Result<Vec<WrittenEvent>, sqlx::Error> {
        let query = sqlx::query(
            "SELECT event_id, stream_revision, global_position, replayed \
             FROM sl_append($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14)",
        );
        let rows = self.bind_parts(query).fetch_all(executor).await?;
        rows.iter()
            .map(|row| {
                Ok(WrittenEvent {
                    event_id: row.try_get("event_id")?,
                    stream_revision: row.try_get::<i64, _>("stream_revision")? as u64,
                    global_position: row.try_get::<i64, _>("global_position")? as u64,
                    replayed: row.try_get("replayed")?,
                })
            })
            .collect()
    }
}

impl AppendRequest {
    /// Appends `other` (one append) after this batch's appends.
    fn absorb(&mut self, other: &AppendRequest) {
        let offset = self.streams.len() as i32;
        let appends = self.part_append.last().copied().unwrap_or(0);
        let events = self.event_ids.len() as i32;
        self.tag_event
            .extend(other.tag_event.iter().map(|e| e + events));
        self.tags.extend_from_slice(&other.tags);
        self.cond_append
            .extend(other.cond_append.iter().map(|a| a + appends));
        self.cond_tags.extend_from_slice(&other.cond_tags);
        self.cond_types.extend_from_slice(&other.cond_types);
        self.cond_after.extend_from_slice(&other.cond_after);
        self.part_append
            .extend(other.part_append.iter().map(|a| a + appends));
        self.streams.extend_from_slice(&other.streams);
        self.expected.extend_from_slice(&other.expected);
        self.counts.extend_from_slice(&other.counts);
        self.event_part
            .extend(other.event_part.iter().map(|p| p + offset));
        self.event_ids.extend_from_slice(&other.event_ids);
        self.types.extend_from_slice(&other.types);
        self.versions.extend_from_slice(&other.versions);
        self.data.extend_from_slice(&other.data);
        self.metadata.extend_from_slice(&other.metadata);
    }

    /// Runs this batch with `sl_append_batch`: the events written, and the
    /// appends not written (by number) with their failure code and detail.
    async fn execute_batch(&self, pool: &PgPool) -> Result<BatchRows, sqlx::Error> {
        let query = sqlx::query(
            "SELECT batch_append, written_id, written_revision, written_position, \
                    failure_code, failure_detail \
             FROM sl_append_batch($15, $1, $2, $3, $4, $5, $6, $7, $8, $9, \
                                  $10, $11, $16, $12, $13, $14)",
        );
        let rows = self
            .bind_parts(query)
            .bind(&self.part_append)
            .bind(&self.cond_append)
            .fetch_all(pool)
            .await?;
        let mut out = BatchRows::default();
        for row in rows {
            match row.try_get::<Option<i32>, _>("batch_append")? {
                Some(append) => {
                    out.failed.insert(
                        append as usize,
                        (row.try_get("failure_code")?, row.try_get("failure_detail")?),
                    );
                }
                None => {
                    let event_id: Uuid = row.try_get("written_id")?;
                    out.written.insert(
                        event_id,
                        WrittenEvent {
                            event_id,
                            stream_revision: row.try_get::<i64, _>("written_revision")? as u64,
                            global_position: row.try_get::<i64, _>("written_position")? as u64,
                            replayed: false,
                        },
                    );
                }
            }
        }
        Ok(out)
    }
}

/// What `sl_append_batch` answered.
#[derive(Default)]
struct BatchRows {
    written: HashMap<Uuid, WrittenEvent>,
    /// By append number (1-based): failure code and detail.
    failed: HashMap<usize, (String, Option<String>)>,
}

/// What the writer answers an append.
pub(crate) type Answer = Result<Vec<WrittenEvent>, LogError>;

/// Runs a batch of appends as one `sl_append_batch` call and answers each.
/// A retry, and every append of a call that failed as a whole, runs alone.
/// Returns the fault when the database was found away.
async fn execute_batch(pool: &PgPool, mut jobs: Vec<Job>) -> Option<Fault> {
    if jobs.len() == 1 {
        return match jobs.pop() {
            Some(job) => execute_alone(pool, job).await,
            None => None,
        };
    }
    let mut merged = jobs[0].request.clone();
    for job in &jobs[1..] {
        merged.absorb(&job.request);
    }
    let mut rows = match merged.execute_batch(pool).await {
        Ok(rows) => rows,
        Err(e) => {
            if matches!(e, sqlx::Error::PoolTimedOut) {
                // No connection was had: nothing was sent, nothing written.
                let fault = Fault::of(&e);
                for job in jobs {
                    let _ = job.reply.send(Err(LogError::Database(fault.again())));
                }
                return Some(fault);
            }
            tracing::debug!(error = %e, appends = jobs.len(), "batched append failed; running its appends one by one");
            let mut jobs = jobs.into_iter();
            for job in jobs.by_ref() {
                if let Some(fault) = execute_alone(pool, job).await {
                    // The database is away: the others would only wait for
                    // it one after the other. They fail the same way, at
                    // once (nothing of theirs was written unless this call
                    // committed before the fault, which a retry with the
                    // same event ids finds).
                    for job in jobs {
                        let _ = job.reply.send(Err(LogError::Database(fault.again())));
                    }
                    return Some(fault);
                }
            }
            return None;
        }
    };
    let mut retries = Vec::new();
    for (number, job) in (1..).zip(jobs) {
        match rows.failed.remove(&number) {
            Some((code, _)) if code == "retry" => retries.push(job),
            Some((code, detail)) => {
                let detail = detail.unwrap_or_default();
                let error = typed(&code, &detail).unwrap_or_else(|| {
                    LogError::Database(sqlx::Error::Protocol(format!(
                        "sl_append_batch answered {code} with detail {detail}"
                    )))
                });
                let _ = job.reply.send(Err(error));
            }
            None => {
                let mine: Vec<WrittenEvent> = job
                    .request
                    .event_ids
                    .iter()
                    .filter_map(|id| rows.written.get(id).copied())
                    .collect();
                let _ = job.reply.send(Ok(mine));
            }
        }
    }
    for job in retries {
        if let Some(fault) = execute_alone(pool, job).await {
            return Some(fault);
        }
    }
    None
}

/// Runs one append on its own with `sl_append` and answers it. Returns the
/// fault when it failed because the database is away.
async fn execute_alone(pool: &PgPool, job: Job) -> Option<Fault> {
    let outcome = job.request.execute(pool).await.map_err(LogError::from_db);
    let fault = match &outcome {
        Err(LogError::Database(e)) if sqlx_is_transient(e) && !is_transient(e) => {
            Some(Fault::of(e))
        }
        _ => None,
    };
    let _ = job.reply.send(outcome);
    fault
}

/// A connection fault, to be answered to several appends (sqlx's errors
/// cannot be cloned).
struct Fault {
    timed_out: bool,
    kind: std::io::ErrorKind,
    message: String,
}

impl Fault {
    fn of(e: &sqlx::Error) -> Self {
        Self {
            timed_out: matches!(e, sqlx::Error::PoolTimedOut),
            kind: match e {
                sqlx::Error::Io(io) => io.kind(),
                _ => std::io::ErrorKind::Other,
            },
            message: e.to_string(),
        }
    }

    fn again(&self) -> sqlx::Error {
        if self.timed_out {
            sqlx::Error::PoolTimedOut
        } else {
            sqlx::Error::Io(std::io::Error::new(self.kind, self.message.clone()))
        }
    }
}

struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Answer>,
}

/// The handle on a process's writer task.
#[derive(Debug, Clone)]
pub(crate) struct Writer {
    jobs: mpsc::UnboundedSender<Job>,
}

impl Writer {
    /// Starts the writer task on the current tokio runtime.
    pub(crate) fn start(pool: PgPool) -> Self {
        let (jobs, queue) = mpsc::unbounded_channel();
        tokio::spawn(run(pool, queue));
        Self { jobs }
    }

    /// Sends an append through the writer. `None` if the writer is gone
    /// (its runtime shut down); the caller then runs the append itself.
    pub(crate) async fn append(&self, request: AppendRequest) -> Option<Answer> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { request, reply }).ok()?;
        answer.await.ok()
    }
}

async fn run(pool: PgPool, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut last_batch = 1;
    while let Some(first) = queue.recv().await {
        let mut events = first.request.events();
        let mut jobs = vec![first];
        // Take what is queued. When the last batch had company, give the
        // writers just answered a few turns of the scheduler to send their
        // next appends (no timer: a lone writer is never delayed).
        let mut turns = if last_batch > 1 { 3 } else { 0 };
        while jobs.len() < MAX_BATCH_APPENDS && events < MAX_BATCH_EVENTS {
            match queue.try_recv() {
                Ok(job) => {
                    events += job.request.events();
                    jobs.push(job);
                }
                Err(_) if turns > 0 && jobs.len() < last_batch => {
                    turns -= 1;
                    tokio::task::yield_now().await;
                }
                Err(_) => break,
            }
        }
        last_batch = jobs.len();
        if let Some(fault) = execute_batch(&pool, jobs).await {
            // The appends that queued up meanwhile would each wait for the
            // database in turn: they fail the same way now, and their
            // callers retry (their keys make a retry safe).
            while let Ok(job) = queue.try_recv() {
                let _ = job.reply.send(Err(LogError::Database(fault.again())));
            }
        }
    }
}
