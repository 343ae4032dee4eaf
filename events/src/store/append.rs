//! How appends reach PostgreSQL: laid out as the arrays `sl_append` takes,
//! and, when several arrive at once in one process, merged by a writer task
//! into one `sl_append` call: one transaction, one commit, one WAL flush for
//! all of them (group commit, as EventStoreDB's single writer does).
//!
//! The writer never waits to fill a batch: it takes the first queued append
//! and whatever else is queued at that moment, so a lone append goes out at
//! once and a busy process sends bigger batches. Appends merge only when they
//! touch disjoint streams, so each one's expectations are checked against the
//! same state as if it ran alone. If a merged call fails (one append's wrong
//! expectation fails the whole call), each of its appends is run alone, so
//! every append gets its own answer and a failure never spills over.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::PgPool;
use sqlx::Row;
use tokio::sync::{mpsc, oneshot};
use uuid::Uuid;

use super::{encode_expected, StreamAppend, WrittenEvent};
use crate::envelope::{ExpectedRevision, InvalidInput, StreamName, MAX_EVENTS_PER_APPEND};

/// Most appends merged into one batch.
const MAX_BATCH_APPENDS: usize = 128;
/// Most events in one batch.
const MAX_BATCH_EVENTS: usize = 4 * MAX_EVENTS_PER_APPEND;
/// Most streams whose last written revision the writer remembers; past it,
/// it starts over.
const KNOWN_STREAMS_LIMIT: usize = 100_000;

/// An append laid out as the SQL functions take it.
#[derive(Debug, Clone)]
pub(crate) struct AppendRequest {
    streams: Vec<String>,
    expected: Vec<i64>,
    counts: Vec<i32>,
    event_part: Vec<i32>,
    event_ids: Vec<Uuid>,
    types: Vec<String>,
    versions: Vec<i32>,
    data: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
}

impl AppendRequest {
    /// Checks and lays out an append. `guards` are streams whose expectation
    /// must hold, without events written to them.
    pub(crate) fn build(
        appends: &[StreamAppend],
        guards: &[(StreamName, ExpectedRevision)],
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
            streams: Vec::with_capacity(parts),
            expected: Vec::with_capacity(parts),
            counts: Vec::with_capacity(parts),
            event_part: Vec::with_capacity(total),
            event_ids: Vec::with_capacity(total),
            types: Vec::with_capacity(total),
            versions: Vec::with_capacity(total),
            data: Vec::with_capacity(total),
            metadata: Vec::with_capacity(total),
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
        Ok(request)
    }

    fn events(&self) -> usize {
        self.event_ids.len()
    }

    /// Runs this append alone with `sl_append`, on any executor (a pool, or
    /// the caller's transaction).
    pub(crate) async fn execute<'c>(
        &self,
        executor: impl sqlx::PgExecutor<'c>,
    ) -> Result<Vec<WrittenEvent>, sqlx::Error> {
        let rows = sqlx::query(
            "SELECT event_id, stream_revision, global_position \
             FROM sl_append($1, $2, $3, $4, $5, $6, $7, $8, $9)",
        )
        .bind(&self.streams)
        .bind(&self.expected)
        .bind(&self.counts)
        .bind(&self.event_part)
        .bind(&self.event_ids)
        .bind(&self.types)
        .bind(&self.versions)
        .bind(&self.data)
        .bind(&self.metadata)
        .fetch_all(executor)
        .await?;
        rows.iter()
            .map(|row| {
                Ok(WrittenEvent {
                    event_id: row.try_get("event_id")?,
                    stream_revision: row.try_get::<i64, _>("stream_revision")? as u64,
                    global_position: row.try_get::<i64, _>("global_position")? as u64,
                })
            })
            .collect()
    }
}

impl AppendRequest {
    /// Whether one of this append's exact expectations is below a revision
    /// the stream is known to have reached: it cannot hold any more
    /// (revisions only grow; a soft delete makes the state "no stream",
    /// which no exact expectation matches either).
    fn expects_less_than(&self, known: &HashMap<String, i64>) -> bool {
        self.streams
            .iter()
            .zip(&self.expected)
            .any(|(stream, expected)| {
                *expected >= 0 && known.get(stream).is_some_and(|at| at > expected)
            })
    }

    /// Records in `known` the revisions this append reached (`rows`: its
    /// written events).
    fn note_written(&self, rows: &[WrittenEvent], known: &mut HashMap<String, i64>) {
        if known.len() >= KNOWN_STREAMS_LIMIT {
            known.clear();
        }
        let revisions: HashMap<Uuid, u64> = rows
            .iter()
            .map(|w| (w.event_id, w.stream_revision))
            .collect();
        for (id, part) in self.event_ids.iter().zip(&self.event_part) {
            if let Some(revision) = revisions.get(id) {
                let at = known
                    .entry(self.streams[*part as usize - 1].clone())
                    .or_insert(-1);
                *at = (*at).max(*revision as i64);
            }
        }
    }

    /// The streams this append locks (its parts and guards).
    fn touches(&self) -> impl Iterator<Item = &str> {
        self.streams.iter().map(String::as_str)
    }

    /// Appends `other`'s parts and events after this one's.
    fn absorb(&mut self, other: &AppendRequest) {
        let offset = self.streams.len() as i32;
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
}

/// Runs a group of appends on disjoint streams as one merged append. When
/// the merged call fails because one stream is not as expected (or is
/// tombstoned), the append that names that stream runs alone, to get its own
/// answer, and the rest are merged again; any other failure runs every
/// append alone. So a failure costs its own append one extra call, not the
/// whole group.
async fn execute_group(pool: &PgPool, mut group: Vec<Job>, known: &mut HashMap<String, i64>) {
    while group.len() > 1 {
        let mut merged = group[0].request.clone();
        for job in &group[1..] {
            merged.absorb(&job.request);
        }
        match merged.execute(pool).await {
            Ok(rows) => {
                let by_id: std::collections::HashMap<Uuid, WrittenEvent> =
                    rows.into_iter().map(|w| (w.event_id, w)).collect();
                for job in group {
                    let mine: Vec<WrittenEvent> = job
                        .request
                        .event_ids
                        .iter()
                        .filter_map(|id| by_id.get(id).copied())
                        .collect();
                    job.request.note_written(&mine, known);
                    let _ = job.reply.send(Ok(mine));
                }
                return;
            }
            Err(e) => {
                let culprit = failing_stream(&e).and_then(|stream| {
                    group
                        .iter()
                        .position(|j| j.request.touches().any(|s| s == stream))
                });
                match culprit {
                    Some(index) => execute_alone(pool, group.remove(index), known).await,
                    None => {
                        tracing::debug!(error = %e, appends = group.len(), "merged append failed; running its appends one by one");
                        for job in group {
                            execute_alone(pool, job, known).await;
                        }
                        return;
                    }
                }
            }
        }
    }
    if let Some(job) = group.pop() {
        execute_alone(pool, job, known).await;
    }
}

/// Runs one append on its own and answers it.
async fn execute_alone(pool: &PgPool, job: Job, known: &mut HashMap<String, i64>) {
    let outcome = job.request.execute(pool).await;
    if let Ok(rows) = &outcome {
        job.request.note_written(rows, known);
    }
    let _ = job.reply.send(outcome);
}

/// The stream named by a wrong-expectation or tombstone error of `sl_append`.
fn failing_stream(error: &sqlx::Error) -> Option<String> {
    let db = error.as_database_error()?;
    if !matches!(db.code().as_deref(), Some("SL001") | Some("SL002")) {
        return None;
    }
    let detail = db
        .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()?
        .detail()?;
    let value: serde_json::Value = serde_json::from_str(detail).ok()?;
    value.get("stream")?.as_str().map(str::to_owned)
}

struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Result<Vec<WrittenEvent>, sqlx::Error>>,
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
    pub(crate) async fn append(
        &self,
        request: AppendRequest,
    ) -> Option<Result<Vec<WrittenEvent>, sqlx::Error>> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { request, reply }).ok()?;
        answer.await.ok()
    }
}

async fn run(pool: PgPool, mut queue: mpsc::UnboundedReceiver<Job>) {
    let mut last_batch = 1;
    // The last revision this writer wrote to each stream: an append that
    // expects less can only fail, and merged it would fail its whole call.
    let mut known: HashMap<String, i64> = HashMap::new();
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
        // Split into groups of appends on disjoint streams, keeping order
        // within each stream: an append that shares a stream with the
        // current group waits for the next group.
        while !jobs.is_empty() {
            // Appends bound to fail (decided on a revision this writer has
            // written past since, in an earlier call or group) run on their
            // own, for their exact error, instead of failing a merged call
            // and costing the others another call.
            let (doomed, rest): (Vec<Job>, Vec<Job>) = jobs
                .into_iter()
                .partition(|job| job.request.expects_less_than(&known));
            for job in doomed {
                execute_alone(&pool, job, &mut known).await;
            }
            jobs = rest;
            let mut group = Vec::new();
            let mut later = Vec::new();
            let mut streams: HashSet<String> = HashSet::new();
            let mut blocked: HashSet<String> = HashSet::new();
            for job in jobs {
                let touched: Vec<&str> = job.request.touches().collect();
                let free = touched
                    .iter()
                    .all(|s| !streams.contains(*s) && !blocked.contains(*s));
                if free && group.len() < MAX_BATCH_APPENDS {
                    streams.extend(touched.iter().map(|s| s.to_string()));
                    group.push(job);
                } else {
                    blocked.extend(touched.iter().map(|s| s.to_string()));
                    later.push(job);
                }
            }
            execute_group(&pool, group, &mut known).await;
            jobs = later;
        }
    }
}
