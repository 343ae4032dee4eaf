//! How appends reach PostgreSQL: laid out as the arrays `sl_append` takes,
//! and, when several arrive at once in one process, merged by a writer task
//! into one `sl_append_batch` call: one transaction, one commit, one WAL
//! flush for all of them (group commit, as EventStoreDB's single writer does).
//!
//! The writer never waits to fill a batch: it takes the first queued append
//! and whatever else is queued at that moment, so a lone append goes out at
//! once and a busy process sends bigger batches. Each append in a batch runs
//! in its own subtransaction, so one append's failure fails only that append.

use std::collections::HashSet;

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

/// A failure of one append as PostgreSQL reported it.
#[derive(Debug)]
pub(crate) enum Failure {
    /// Reported per append by `sl_append_batch` (SQLSTATE, detail, constraint).
    Sql {
        code: String,
        detail: String,
        constraint: Option<String>,
    },
    /// The call itself failed.
    Db(sqlx::Error),
}

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

/// Runs several appends in one transaction with `sl_append_batch`; one
/// outcome per append, in order.
async fn execute_batch(
    pool: &PgPool,
    requests: &[&AppendRequest],
) -> Result<Vec<Result<Vec<WrittenEvent>, Failure>>, sqlx::Error> {
    let mut append_parts = Vec::with_capacity(requests.len());
    let mut all = AppendRequest {
        streams: Vec::new(),
        expected: Vec::new(),
        counts: Vec::new(),
        event_part: Vec::new(),
        event_ids: Vec::new(),
        types: Vec::new(),
        versions: Vec::new(),
        data: Vec::new(),
        metadata: Vec::new(),
    };
    for r in requests {
        append_parts.push(r.streams.len() as i32);
        all.streams.extend_from_slice(&r.streams);
        all.expected.extend_from_slice(&r.expected);
        all.counts.extend_from_slice(&r.counts);
        all.event_part.extend_from_slice(&r.event_part);
        all.event_ids.extend_from_slice(&r.event_ids);
        all.types.extend_from_slice(&r.types);
        all.versions.extend_from_slice(&r.versions);
        all.data.extend_from_slice(&r.data);
        all.metadata.extend_from_slice(&r.metadata);
    }
    let rows = sqlx::query(
        "SELECT append_no, event_id, stream_revision, global_position, \
                error_code, error_detail, error_constraint \
         FROM sl_append_batch($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)",
    )
    .bind(&append_parts)
    .bind(&all.streams)
    .bind(&all.expected)
    .bind(&all.counts)
    .bind(&all.event_part)
    .bind(&all.event_ids)
    .bind(&all.types)
    .bind(&all.versions)
    .bind(&all.data)
    .bind(&all.metadata)
    .fetch_all(pool)
    .await?;
    let mut outcomes: Vec<Result<Vec<WrittenEvent>, Failure>> =
        (0..requests.len()).map(|_| Ok(Vec::new())).collect();
    for row in rows {
        let index = row.try_get::<i32, _>("append_no")? as usize - 1;
        if let Some(code) = row.try_get::<Option<String>, _>("error_code")? {
            outcomes[index] = Err(Failure::Sql {
                code,
                detail: row
                    .try_get::<Option<String>, _>("error_detail")?
                    .unwrap_or_default(),
                constraint: row
                    .try_get::<Option<String>, _>("error_constraint")?
                    .filter(|c| !c.is_empty()),
            });
        } else if let Ok(events) = &mut outcomes[index] {
            events.push(WrittenEvent {
                event_id: row.try_get("event_id")?,
                stream_revision: row.try_get::<i64, _>("stream_revision")? as u64,
                global_position: row.try_get::<i64, _>("global_position")? as u64,
            });
        }
    }
    Ok(outcomes)
}

struct Job {
    request: AppendRequest,
    reply: oneshot::Sender<Result<Vec<WrittenEvent>, Failure>>,
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
    ) -> Option<Result<Vec<WrittenEvent>, Failure>> {
        let (reply, answer) = oneshot::channel();
        self.jobs.send(Job { request, reply }).ok()?;
        answer.await.ok()
    }
}

async fn run(pool: PgPool, mut queue: mpsc::UnboundedReceiver<Job>) {
    while let Some(first) = queue.recv().await {
        let mut events = first.request.events();
        let mut jobs = vec![first];
        while jobs.len() < MAX_BATCH_APPENDS && events < MAX_BATCH_EVENTS {
            match queue.try_recv() {
                Ok(job) => {
                    events += job.request.events();
                    jobs.push(job);
                }
                Err(_) => break,
            }
        }
        if jobs.len() == 1 {
            let job = jobs.pop().expect("one job");
            let outcome = job.request.execute(&pool).await.map_err(Failure::Db);
            let _ = job.reply.send(outcome);
            continue;
        }
        let requests: Vec<&AppendRequest> = jobs.iter().map(|j| &j.request).collect();
        match execute_batch(&pool, &requests).await {
            Ok(outcomes) => {
                for (job, outcome) in jobs.into_iter().zip(outcomes) {
                    let _ = job.reply.send(outcome);
                }
            }
            Err(e) => {
                // The batch call itself failed, so nothing of it committed:
                // run each append alone, so that each gets its own answer.
                tracing::warn!(error = %e, appends = jobs.len(), "append batch failed; running its appends one by one");
                for job in jobs {
                    let outcome = job.request.execute(&pool).await.map_err(Failure::Db);
                    let _ = job.reply.send(outcome);
                }
            }
        }
    }
}
