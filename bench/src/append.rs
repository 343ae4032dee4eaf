//! `append`: what the event log costs over plain PostgreSQL, on writes and on
//! reading `$all`, and against postgres-es.
//!
//! Comparisons, each side on a fresh database of its own:
//!
//! * `append_single_c{1,8,32}`: one event (~200 bytes of JSON data) to a new
//!   stream with `ExpectedRevision::NoStream`, vs one autocommit single-row
//!   `INSERT` into `raw_events`, a copy of `sl_events` (`LIKE … INCLUDING ALL`:
//!   same columns, constraints and indexes) whose `global_position` comes
//!   from a sequence.
//! * `append_batch100_c{1,8}`: 100 events to a new stream per call, vs one
//!   100-row `INSERT … SELECT FROM UNNEST(arrays)` per transaction.
//! * `read_all`: N events read to the client in pages of 1,000 through
//!   `read_all`, vs the same `SELECT` paged the same way and decoded into
//!   plain Rust values through sqlx.
//! * `vs_postgres_es_c{1,8,32}`: see [`crate::vs_postgres_es`].
//! * `sealing_single_c8`, `sealing_batch100_c8`: our appends with a
//!   [`Sealer`] following the log (the integrity chain) against our appends
//!   alone, and the sealer's lag when the window ends.
//!
//! Rates count what completes inside the measured window, after a warm-up
//! (see [`crate::report::run_timed`]); every run checks afterwards that the
//! table holds at least the rows it counted.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use chrono::{DateTime, Utc};
use serde_json::json;
use shareledger_events::store::{PgEventStore, PositionFrom, Sealer, SealerOptions, StreamAppend};
use shareledger_events::{
    Actor, Direction, EventMetadata, EventType, ExpectedRevision, NewEvent, StreamName,
};
use shareledger_tests::TestDb;
use sqlx::PgPool;
use uuid::Uuid;

use crate::report::{self, progress, run_timed, Line, Measured, Timing};
use crate::CommonArgs;

/// Events per call in the batched comparison.
const BATCH: usize = 100;
/// Page size of the `$all` reads.
const PAGE: usize = 1_000;

/// The sizes of one run of the `append` benchmark.
#[derive(Debug, Clone, Copy)]
pub struct Settings {
    pub timing: Timing,
    /// Events in the database the `$all` read comparison reads.
    pub read_events: u64,
    /// Times each side reads all of them (alternating which goes first).
    pub read_rounds: u32,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                timing: Timing {
                    warmup: Duration::from_millis(500),
                    window: Duration::from_millis(1_500),
                },
                read_events: 30_000,
                read_rounds: 4,
            }
        } else {
            Self {
                timing: Timing {
                    warmup: Duration::from_secs(1),
                    window: Duration::from_secs(5),
                },
                read_events: 200_000,
                read_rounds: 4,
            }
        }
    }
}

/// Runs every comparison of the `append` benchmark.
pub async fn run(args: CommonArgs) -> anyhow::Result<()> {
    let settings = Settings::new(args.quick);
    let workload = Arc::new(Workload::new());
    progress(&format!(
        "event data {} bytes, metadata {} bytes of JSON",
        workload.data.to_string().len(),
        workload.metadata().to_string().len()
    ));
    for concurrency in [1, 8, 32] {
        compare_single(concurrency, settings.timing, &workload).await?;
    }
    for concurrency in [1, 8] {
        compare_batch(concurrency, settings.timing, &workload).await?;
    }
    compare_read_all(&settings, &workload).await?;
    compare_sealing(1, settings.timing, &workload).await?;
    compare_sealing(BATCH, settings.timing, &workload).await?;
    crate::vs_postgres_es::run(settings.timing, &workload).await
}

/// What every benchmark event looks like: its type and data, the same on
/// every side of every comparison.
#[derive(Debug)]
pub struct Workload {
    pub event_type: EventType,
    /// About 200 bytes of JSON object.
    pub data: serde_json::Value,
}

impl Workload {
    pub(crate) fn new() -> Self {
        Self {
            event_type: EventType::parse("BenchEventHappened").expect("a valid event type"),
            data: json!({
                "site_id": Uuid::new_v4(),
                "resource_id": Uuid::new_v4(),
                "requested_by": Uuid::new_v4(),
                "quantity": 3,
                "note": "benchmark event",
            }),
        }
    }

    /// Metadata of one command (a new correlation id each time).
    pub fn event_metadata(&self) -> EventMetadata {
        EventMetadata::new(
            Actor::Operator {
                name: "bench".into(),
            },
            Uuid::new_v4(),
        )
    }

    /// The same metadata as JSON, as the log stores it.
    pub fn metadata(&self) -> serde_json::Value {
        serde_json::to_value(self.event_metadata()).expect("metadata serializes")
    }

    /// A stream name nobody used before.
    pub fn new_stream_name(&self) -> String {
        format!("bench-{}", Uuid::new_v4().simple())
    }

    /// `n` new events of one command.
    fn new_events(&self, n: usize) -> anyhow::Result<Vec<NewEvent>> {
        let metadata = self.event_metadata();
        (0..n)
            .map(|_| {
                NewEvent::new(
                    Uuid::new_v4(),
                    self.event_type.clone(),
                    1,
                    self.data.clone(),
                    metadata.clone(),
                )
                .context("building a benchmark event")
            })
            .collect()
    }
}

/// Our side of the write comparisons: `events_per_append` events to a new
/// stream per call, on a fresh database with a pool of `concurrency`.
pub async fn measure_ours(
    label: &str,
    concurrency: usize,
    events_per_append: usize,
    timing: Timing,
    workload: &Arc<Workload>,
) -> anyhow::Result<Measured> {
    Ok(measure_ours_with(
        label,
        concurrency,
        events_per_append,
        timing,
        workload,
        false,
    )
    .await?
    .0)
}

/// [`measure_ours`], with a [`Sealer`] following the log if `sealing`
/// (on two connections of its own); also returns the sealer's lag when the
/// window ended (0 without one).
async fn measure_ours_with(
    label: &str,
    concurrency: usize,
    events_per_append: usize,
    timing: Timing,
    workload: &Arc<Workload>,
    sealing: bool,
) -> anyhow::Result<(Measured, u64)> {
    let extra = if sealing { 2 } else { 0 };
    let db = TestDb::with_pool_size(concurrency as u32 + extra).await;
    report::quiesce(db.pool()).await;
    progress(&format!(
        "{label}: ShareLedger append, {events_per_append} event(s) per call{}",
        if sealing { ", sealer running" } else { "" }
    ));
    let store = db.store();
    let sealer = Sealer::new(store.clone(), SealerOptions::default());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = sealing.then(|| {
        let sealer = sealer.clone();
        tokio::spawn(async move {
            sealer
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        })
    });
    let workload = Arc::clone(workload);
    let measured = run_timed(label, concurrency, timing, {
        let store = store.clone();
        move |_| {
            let store = store.clone();
            let workload = Arc::clone(&workload);
            async move {
                let stream = StreamName::parse(workload.new_stream_name())?;
                let events = workload.new_events(events_per_append)?;
                let result = store
                    .append(&stream, ExpectedRevision::NoStream, events)
                    .await
                    .with_context(|| format!("append to {stream}"))?;
                anyhow::ensure!(
                    result.events.len() == events_per_append,
                    "append to {stream} wrote {} events, expected {events_per_append}",
                    result.events.len()
                );
                Ok(events_per_append as u64)
            }
        }
    })
    .await?;
    let lag = if let Some(running) = running {
        let lag = sealer.status().await?.lag;
        let _ = stop.send(());
        running.await??;
        lag
    } else {
        0
    };
    check_rows(db.pool(), "sl_events", measured.events).await?;
    Ok((measured, lag))
}

/// The raw side: `rows_per_insert` rows per autocommit `INSERT` into a copy
/// of `sl_events`, on a fresh database with a pool of `concurrency`.
pub(crate) async fn measure_raw(
    label: &str,
    concurrency: usize,
    rows_per_insert: usize,
    timing: Timing,
    workload: &Arc<Workload>,
) -> anyhow::Result<Measured> {
    let db = TestDb::with_pool_size(concurrency as u32).await;
    create_raw_table(db.pool()).await?;
    report::quiesce(db.pool()).await;
    progress(&format!(
        "{label}: raw INSERT, {rows_per_insert} row(s) per statement"
    ));
    let pool = db.pool().clone();
    let workload = Arc::clone(workload);
    let measured = run_timed(label, concurrency, timing, move |_| {
        let pool = pool.clone();
        let workload = Arc::clone(&workload);
        async move {
            let stream = workload.new_stream_name();
            let metadata = workload.metadata();
            let written = if rows_per_insert == 1 {
                sqlx::query(
                    "INSERT INTO raw_events (stream_name, stream_revision, event_id, \
                     event_type, schema_version, data, metadata) \
                     VALUES ($1, 0, $2, $3, 1, $4, $5)",
                )
                .bind(&stream)
                .bind(Uuid::new_v4())
                .bind(workload.event_type.as_str())
                .bind(&workload.data)
                .bind(&metadata)
                .execute(&pool)
                .await
            } else {
                let n = rows_per_insert;
                sqlx::query(
                    "INSERT INTO raw_events (stream_name, stream_revision, event_id, \
                     event_type, schema_version, data, metadata) \
                     SELECT * FROM UNNEST($1::text[], $2::bigint[], $3::uuid[], $4::text[], \
                                          $5::integer[], $6::jsonb[], $7::jsonb[])",
                )
                .bind(vec![stream.clone(); n])
                .bind((0..n as i64).collect::<Vec<i64>>())
                .bind((0..n).map(|_| Uuid::new_v4()).collect::<Vec<Uuid>>())
                .bind(vec![workload.event_type.to_string(); n])
                .bind(vec![1i32; n])
                .bind(vec![workload.data.clone(); n])
                .bind(vec![metadata; n])
                .execute(&pool)
                .await
            }
            .with_context(|| format!("raw insert for {stream}"))?
            .rows_affected();
            anyhow::ensure!(
                written == rows_per_insert as u64,
                "raw insert for {stream} wrote {written} rows, expected {rows_per_insert}"
            );
            Ok(written)
        }
    })
    .await?;
    check_rows(db.pool(), "raw_events", measured.events).await?;
    Ok(measured)
}

/// `raw_events`: `sl_events`' columns, constraints and indexes, with
/// `global_position` from a sequence.
async fn create_raw_table(pool: &PgPool) -> anyhow::Result<()> {
    for statement in [
        "CREATE TABLE raw_events (LIKE sl_events INCLUDING ALL)",
        "CREATE SEQUENCE raw_events_global_position_seq OWNED BY raw_events.global_position",
        "ALTER TABLE raw_events ALTER COLUMN global_position \
         SET DEFAULT nextval('raw_events_global_position_seq')",
    ] {
        sqlx::query(statement)
            .execute(pool)
            .await
            .with_context(|| format!("creating raw_events: {statement}"))?;
    }
    Ok(())
}

/// Fails unless `table` holds at least the `counted` rows the run counted.
async fn check_rows(pool: &PgPool, table: &str, counted: u64) -> anyhow::Result<()> {
    let rows: i64 = sqlx::query_scalar(&format!("SELECT count(*) FROM {table}"))
        .fetch_one(pool)
        .await
        .with_context(|| format!("counting {table}"))?;
    anyhow::ensure!(
        rows as u64 >= counted,
        "{table} holds {rows} rows but the run counted {counted} written"
    );
    Ok(())
}

async fn compare_single(
    concurrency: usize,
    timing: Timing,
    workload: &Arc<Workload>,
) -> anyhow::Result<()> {
    let name = format!("append_single_c{concurrency}");
    let ours = measure_ours(&name, concurrency, 1, timing, workload).await?;
    let raw = measure_raw(&name, concurrency, 1, timing, workload).await?;
    Line::new(&name)
        .count("ours_per_s", ours.events_per_s())
        .count("raw_per_s", raw.events_per_s())
        .ms("ours_p50_ms", ours.latency_ms(0.50))
        .ms("ours_p99_ms", ours.latency_ms(0.99))
        .ms("raw_p50_ms", raw.latency_ms(0.50))
        .ms("raw_p99_ms", raw.latency_ms(0.99))
        .ratio(ours.events_per_s(), raw.events_per_s());
    Ok(())
}

async fn compare_batch(
    concurrency: usize,
    timing: Timing,
    workload: &Arc<Workload>,
) -> anyhow::Result<()> {
    let name = format!("append_batch{BATCH}_c{concurrency}");
    let ours = measure_ours(&name, concurrency, BATCH, timing, workload).await?;
    let raw = measure_raw(&name, concurrency, BATCH, timing, workload).await?;
    Line::new(&name)
        .count("ours_events_per_s", ours.events_per_s())
        .count("raw_events_per_s", raw.events_per_s())
        .ms("ours_p50_ms", ours.latency_ms(0.50))
        .ms("ours_p99_ms", ours.latency_ms(0.99))
        .ms("raw_p50_ms", raw.latency_ms(0.50))
        .ms("raw_p99_ms", raw.latency_ms(0.99))
        .ratio(ours.events_per_s(), raw.events_per_s());
    Ok(())
}

/// `sealing_single_c8` on its own (the `audit` benchmark's last line).
pub async fn compare_sealing_single(args: CommonArgs) -> anyhow::Result<()> {
    let settings = Settings::new(args.quick);
    let workload = Arc::new(Workload::new());
    compare_sealing(1, settings.timing, &workload).await
}

/// Our appends with a sealer following the log against our appends alone,
/// at 8 concurrent appenders.
async fn compare_sealing(
    events_per_append: usize,
    timing: Timing,
    workload: &Arc<Workload>,
) -> anyhow::Result<()> {
    let name = if events_per_append == 1 {
        "sealing_single_c8".to_string()
    } else {
        format!("sealing_batch{events_per_append}_c8")
    };
    let (alone, _) =
        measure_ours_with(&name, 8, events_per_append, timing, workload, false).await?;
    let (sealed, lag) =
        measure_ours_with(&name, 8, events_per_append, timing, workload, true).await?;
    Line::new(&name)
        .count("sealing_events_per_s", sealed.events_per_s())
        .count("alone_events_per_s", alone.events_per_s())
        .ms("sealing_p50_ms", sealed.latency_ms(0.50))
        .ms("sealing_p99_ms", sealed.latency_ms(0.99))
        .ms("alone_p50_ms", alone.latency_ms(0.50))
        .ms("alone_p99_ms", alone.latency_ms(0.99))
        .count("lag_at_end", lag as f64)
        .ratio(sealed.events_per_s(), alone.events_per_s());
    Ok(())
}

/// A row of `sl_events` decoded by plain sqlx, the raw side of `read_all`.
type RawRow = (
    i64,
    String,
    i64,
    Uuid,
    String,
    i32,
    serde_json::Value,
    serde_json::Value,
    DateTime<Utc>,
);

async fn compare_read_all(settings: &Settings, workload: &Arc<Workload>) -> anyhow::Result<()> {
    let n = settings.read_events;
    let db = TestDb::with_pool_size(4).await;
    let store = db.store();
    progress(&format!("read_all: writing {n} events"));
    let filled = Instant::now();
    fill(&store, n, workload).await?;
    progress(&format!(
        "read_all: wrote {n} events in {:.1} s",
        filled.elapsed().as_secs_f64()
    ));
    sqlx::query("VACUUM (ANALYZE) sl_events")
        .execute(db.pool())
        .await
        .context("VACUUM sl_events")?;
    report::quiesce(db.pool()).await;
    // One untimed pass each: caches warm, hint bits set, statements prepared.
    read_all_ours(&store, n).await?;
    read_all_raw(db.pool(), n).await?;
    let mut ours = Measured::of_work(0, 0, Duration::ZERO);
    let mut raw = Measured::of_work(0, 0, Duration::ZERO);
    // Alternate which side goes first, so neither always reads right after
    // the other has warmed (or cooled) something.
    for round in 1..=settings.read_rounds {
        progress(&format!("read_all: round {round}, {n} events per side"));
        if round % 2 == 1 {
            ours.add(read_all_ours(&store, n).await?);
            raw.add(read_all_raw(db.pool(), n).await?);
        } else {
            raw.add(read_all_raw(db.pool(), n).await?);
            ours.add(read_all_ours(&store, n).await?);
        }
    }
    Line::new("read_all")
        .text("events", n)
        .text("page", PAGE)
        .text("rounds", settings.read_rounds)
        .count("ours_events_per_s", ours.events_per_s())
        .count("raw_events_per_s", raw.events_per_s())
        .ratio(ours.events_per_s(), raw.events_per_s());
    Ok(())
}

/// Writes `n` events: appends of 100 new streams with 10 events each, from
/// two tasks.
async fn fill(store: &PgEventStore, n: u64, workload: &Arc<Workload>) -> anyhow::Result<()> {
    const STREAMS: usize = 100;
    const PER_STREAM: usize = 10;
    const PER_CALL: u64 = (STREAMS * PER_STREAM) as u64;
    anyhow::ensure!(
        n % PER_CALL == 0,
        "read_events must be a multiple of {PER_CALL}"
    );
    let calls = n / PER_CALL;
    let writers = 2;
    let mut tasks = tokio::task::JoinSet::new();
    for writer in 0..writers {
        let store = store.clone();
        let workload = Arc::clone(workload);
        tasks.spawn(async move {
            for _ in (writer..calls).step_by(writers as usize) {
                let appends = (0..STREAMS)
                    .map(|_| {
                        Ok(StreamAppend {
                            stream: StreamName::parse(workload.new_stream_name())?,
                            expected: ExpectedRevision::NoStream,
                            events: workload.new_events(PER_STREAM)?,
                        })
                    })
                    .collect::<anyhow::Result<Vec<_>>>()?;
                store
                    .append_multi(appends)
                    .await
                    .context("filling the log for read_all")?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a fill task panicked")??;
    }
    Ok(())
}

async fn read_all_ours(store: &PgEventStore, n: u64) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let (mut next, mut read, mut pages) = (1u64, 0u64, 0u64);
    loop {
        let page = store
            .read_all(Direction::Forwards, PositionFrom::At(next), PAGE)
            .await
            .with_context(|| format!("read_all from {next}"))?;
        pages += 1;
        let Some(last) = page.last() else { break };
        next = last.global_position + 1;
        read += page.len() as u64;
        std::hint::black_box(&page);
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(read == n, "read_all read {read} events, the log holds {n}");
    Ok(Measured::of_work(pages, read, elapsed))
}

async fn read_all_raw(pool: &PgPool, n: u64) -> anyhow::Result<Measured> {
    let started = Instant::now();
    let (mut next, mut read, mut pages) = (1i64, 0u64, 0u64);
    loop {
        let page: Vec<RawRow> = sqlx::query_as(
            "SELECT global_position, stream_name, stream_revision, event_id, event_type, \
             schema_version, data, metadata, recorded_at FROM sl_events \
             WHERE global_position >= $1 ORDER BY global_position LIMIT 1000",
        )
        .bind(next)
        .fetch_all(pool)
        .await
        .with_context(|| format!("raw SELECT from {next}"))?;
        pages += 1;
        let Some(last) = page.last() else { break };
        next = last.0 + 1;
        read += page.len() as u64;
        std::hint::black_box(&page);
    }
    let elapsed = started.elapsed();
    anyhow::ensure!(read == n, "raw read {read} events, the table holds {n}");
    Ok(Measured::of_work(pages, read, elapsed))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn event_data_is_about_200_bytes() {
        let size = Workload::new().data.to_string().len();
        assert!((190..=210).contains(&size), "event data is {size} bytes");
    }
}
