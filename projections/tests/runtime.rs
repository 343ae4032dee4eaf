//! The projection runtime against real PostgreSQL.
//!
//! The projection under test, [`Counts`], counts the events of each stream
//! (every event of the log, the log's own `$$` events included) in one
//! table, so that after applying the log up to position P its counts sum
//! to P and equal, stream by stream, a count taken from the log itself. It
//! fails (or panics) on an event of type `Poison` (`Panic`), after writing
//! the events before it in the same batch; and it can hold its batches at a
//! [`Gate`] until the test opens it, so that tests see the runtime in a
//! chosen state without sleeping.
//!
//! Tests: checkpoint and writes commit together; a restart resumes from the
//! checkpoint; several projections in one runtime; a rebuild beside the
//! live tables and the switch while events keep coming, with the `rm` view
//! answering (and never going back) throughout; a rebuild cut short by a
//! crash resumes; a version bump at start;
//! status and lag; `wait_for`; errors and panics reported; two runtimes on
//! one database.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use shareledger_events::store::{PgEventStore, PositionFrom};
use shareledger_events::{Direction, ExpectedRevision, RecordedEvent};
use shareledger_projections::projection::SqlProjection;
use shareledger_projections::runtime::{
    ProjectionRuntime, ProjectionState, RebuildStatus, RuntimeOptions,
};
use shareledger_projections::ProjectionError;
use shareledger_tests::{fixtures, TestDb};
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, Semaphore, TryAcquireError};

/// A failure guard only: every wait below ends on a condition.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The test projection
// ---------------------------------------------------------------------------

/// Holds a projection's batches until opened (closing the semaphore opens
/// it: every waiting and later `acquire` returns at once). Each permit lets
/// one batch through.
#[derive(Clone)]
struct Gate {
    /// Only batches applied to this schema wait; `None`: every batch.
    schema: Option<&'static str>,
    semaphore: Arc<Semaphore>,
    /// Signalled when a batch finds no permit and waits.
    holding: Arc<Notify>,
}

impl Gate {
    fn closed(schema: Option<&'static str>) -> Self {
        Self::after(schema, 0)
    }

    /// Lets `batches` batches through, then holds.
    fn after(schema: Option<&'static str>, batches: usize) -> Self {
        Self {
            schema,
            semaphore: Arc::new(Semaphore::new(batches)),
            holding: Arc::new(Notify::new()),
        }
    }

    fn open(&self) {
        self.semaphore.close();
    }

    async fn pass(&self, schema: &str) {
        if self.schema.is_some_and(|s| s != schema) {
            return;
        }
        let permit = match self.semaphore.try_acquire() {
            Ok(permit) => Ok(permit),
            Err(TryAcquireError::Closed) => return,
            Err(TryAcquireError::NoPermits) => {
                self.holding.notify_one();
                self.semaphore.acquire().await
            }
        };
        // Err means closed, that is open: go on.
        if let Ok(permit) = permit {
            permit.forget();
        }
    }
}

/// Counts the events of each stream in table `<table>`: `stream`, `events`,
/// `last_position` (and from version 2, `first_position`).
#[derive(Clone)]
struct Counts {
    name: &'static str,
    table: &'static str,
    version: u32,
    gate: Option<Gate>,
    /// Whether `Poison` and `Panic` events make it fail.
    poisonable: bool,
}

fn counts(name: &'static str, table: &'static str) -> Counts {
    Counts {
        name,
        table,
        version: 1,
        gate: None,
        poisonable: true,
    }
}

impl Counts {
    fn version(self, version: u32) -> Self {
        Self { version, ..self }
    }

    fn gated(self, gate: &Gate) -> Self {
        Self {
            gate: Some(gate.clone()),
            ..self
        }
    }

    fn unpoisoned(self) -> Self {
        Self {
            poisonable: false,
            ..self
        }
    }

    fn boxed(self) -> Arc<dyn SqlProjection> {
        Arc::new(self)
    }

    async fn write(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // Per stream: (events, first position, last position).
        let mut per_stream: BTreeMap<&str, (i64, i64, i64)> = BTreeMap::new();
        for event in events {
            let position = event.global_position as i64;
            let entry = per_stream
                .entry(event.stream.as_str())
                .or_insert((0, position, position));
            entry.0 += 1;
            entry.2 = position;
        }
        if per_stream.is_empty() {
            return Ok(());
        }
        let streams: Vec<&str> = per_stream.keys().copied().collect();
        let numbers: Vec<i64> = per_stream.values().map(|v| v.0).collect();
        let firsts: Vec<i64> = per_stream.values().map(|v| v.1).collect();
        let lasts: Vec<i64> = per_stream.values().map(|v| v.2).collect();
        let table = format!("\"{schema}\".{}", self.table);
        let sql = if self.version >= 2 {
            format!(
                "INSERT INTO {table} AS t (stream, events, last_position, first_position) \
                 SELECT * FROM unnest($1::text[], $2::bigint[], $4::bigint[], $3::bigint[]) \
                 ON CONFLICT (stream) DO UPDATE SET events = t.events + excluded.events, \
                     last_position = excluded.last_position"
            )
        } else {
            format!(
                "INSERT INTO {table} AS t (stream, events, last_position) \
                 SELECT s, n, l FROM unnest($1::text[], $2::bigint[], $3::bigint[], $4::bigint[]) \
                     AS u(s, n, f, l) \
                 ON CONFLICT (stream) DO UPDATE SET events = t.events + excluded.events, \
                     last_position = excluded.last_position"
            )
        };
        sqlx::query(&sql)
            .bind(&streams)
            .bind(&numbers)
            .bind(&firsts)
            .bind(&lasts)
            .execute(&mut *conn)
            .await?;
        Ok(())
    }
}

#[async_trait]
impl SqlProjection for Counts {
    fn name(&self) -> &'static str {
        self.name
    }

    fn version(&self) -> u32 {
        self.version
    }

    async fn create_tables(
        &self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> Result<(), ProjectionError> {
        let extra = if self.version >= 2 {
            ", first_position bigint NOT NULL"
        } else {
            ""
        };
        sqlx::query(&format!(
            "CREATE TABLE \"{schema}\".{} (stream text PRIMARY KEY, events bigint NOT NULL, \
             last_position bigint NOT NULL{extra})",
            self.table
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        if let Some(gate) = &self.gate {
            gate.pass(schema).await;
        }
        let poisoned = events
            .iter()
            .position(|e| self.poisonable && (e.event_type == "Poison" || e.event_type == "Panic"));
        let Some(at) = poisoned else {
            return self.write(conn, schema, events).await;
        };
        // Write what comes before, in this transaction, then fail: the
        // runtime must roll those writes back with the checkpoint.
        self.write(conn, schema, &events[..at]).await?;
        let event = &events[at];
        if event.event_type == "Panic" {
            panic!("Panic event at position {}", event.global_position);
        }
        Err(ProjectionError::BadStream {
            position: event.global_position,
            stream: event.stream.clone(),
        })
    }
}

// ---------------------------------------------------------------------------
// Helpers
// ---------------------------------------------------------------------------

fn options(batch_size: usize) -> RuntimeOptions {
    RuntimeOptions {
        batch_size,
        ..RuntimeOptions::default()
    }
}

async fn start(
    store: &PgEventStore,
    projections: Vec<Arc<dyn SqlProjection>>,
    batch_size: usize,
) -> ProjectionRuntime {
    ProjectionRuntime::start(store.clone(), projections, options(batch_size))
        .await
        .expect("the runtime starts")
}

/// Appends `n` events of type `Happened` to `stream`; returns the last position.
async fn append(store: &PgEventStore, stream: &str, n: usize) -> u64 {
    store
        .append(
            &fixtures::stream(stream),
            ExpectedRevision::Any,
            fixtures::events(n),
        )
        .await
        .expect("append")
        .last_position()
}

/// Appends one event of type `event_type`; returns its position.
async fn append_one(store: &PgEventStore, stream: &str, event_type: &str) -> u64 {
    store
        .append(
            &fixtures::stream(stream),
            ExpectedRevision::Any,
            vec![fixtures::event(event_type, serde_json::json!({}))],
        )
        .await
        .expect("append")
        .last_position()
}

/// Events per stream in the log up to `until`.
async fn log_counts(store: &PgEventStore, until: u64) -> BTreeMap<String, i64> {
    let mut counts = BTreeMap::new();
    let mut from = 1;
    while from <= until {
        let page = store
            .read_all(Direction::Forwards, PositionFrom::At(from), 1000)
            .await
            .expect("read the log");
        if page.is_empty() {
            break;
        }
        for event in page.iter().filter(|e| e.global_position <= until) {
            *counts.entry(event.stream.clone()).or_insert(0) += 1;
        }
        from = page.last().map_or(until, |e| e.global_position) + 1;
    }
    counts
}

/// Events per stream as a relation (`rm.<table>` or `<schema>.<table>`) holds them.
async fn table_counts(pool: &PgPool, relation: &str) -> BTreeMap<String, i64> {
    sqlx::query_as::<_, (String, i64)>(&format!("SELECT stream, events FROM {relation}"))
        .fetch_all(pool)
        .await
        .expect("read the counts")
        .into_iter()
        .collect()
}

async fn checkpoint(pool: &PgPool, name: &str) -> Option<i64> {
    sqlx::query_scalar("SELECT position FROM sl_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(pool)
        .await
        .expect("read a checkpoint")
}

/// `(live_generation, live_version, building_generation)` of a projection.
async fn registry(pool: &PgPool, name: &str) -> (i32, i32, Option<i32>) {
    sqlx::query_as(
        "SELECT live_generation, live_version, building_generation \
         FROM sl_projections WHERE name = $1",
    )
    .bind(name)
    .fetch_one(pool)
    .await
    .expect("read the registry")
}

async fn schema_exists(pool: &PgPool, schema: &str) -> bool {
    sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_namespace WHERE nspname = $1)")
        .bind(schema)
        .fetch_one(pool)
        .await
        .expect("read the catalog")
}

/// The projection's counts equal the log's, up to the head, through its view.
async fn assert_counts_match_log(db: &TestDb, table: &str) {
    let head = db.store().head_position().await.unwrap();
    assert_eq!(
        table_counts(db.pool(), &format!("rm.{table}")).await,
        log_counts(&db.store(), head).await,
        "rm.{table} counts every event of the log exactly once"
    );
}

/// A second pool on the test's database, as another process would have.
async fn other_process_store(db: &TestDb) -> PgEventStore {
    let pool = PgPoolOptions::new()
        .max_connections(8)
        .connect_with(db.connect_options())
        .await
        .expect("a second pool");
    PgEventStore::new(pool)
}

// ---------------------------------------------------------------------------
// Tests
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn batch_writes_and_checkpoint_commit_together() {
    let db = TestDb::new().await;
    let store = db.store();
    for i in 0..10 {
        append(&store, &format!("orders-{}", i % 4), 9).await;
    }
    let runtime = start(&store, vec![counts("counts", "counts").boxed()], 7).await;
    runtime.wait_for(90, WAIT).await.unwrap();
    assert_eq!(
        checkpoint(db.pool(), "projection:counts:g1").await,
        Some(90)
    );
    assert_counts_match_log(&db, "counts").await;

    // A batch that fails after writing part of itself leaves nothing: the
    // tables hold exactly the events up to the checkpoint.
    append(&store, "orders-0", 3).await;
    let poison = append_one(&store, "orders-1", "Poison").await;
    append(&store, "orders-2", 3).await;
    let failed = runtime.wait_for(poison, WAIT).await;
    assert!(
        matches!(&failed, Err(ProjectionError::Failed { name, source })
            if name == "counts" && matches!(**source, ProjectionError::BadStream { position, .. } if position == poison)),
        "{failed:?}"
    );
    let stored = checkpoint(db.pool(), "projection:counts:g1").await.unwrap();
    assert!(stored >= 90 && (stored as u64) < poison, "{stored}");
    let counted: i64 = table_counts(db.pool(), "rm.counts").await.values().sum();
    assert_eq!(counted, stored, "writes and checkpoint moved together");
    assert_eq!(
        table_counts(db.pool(), "rm.counts").await,
        log_counts(&store, stored as u64).await
    );
    let status = runtime.status().await.unwrap();
    assert!(
        matches!(&status[0].state, ProjectionState::Failed(message) if message.contains("names no site")),
        "{status:?}"
    );
    let stopped = runtime.shutdown().await;
    assert!(
        matches!(&stopped, Err(ProjectionError::Failed { name, .. }) if name == "counts"),
        "{stopped:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn restart_resumes_from_the_checkpoint_without_counting_twice() {
    let db = TestDb::new().await;
    let store = db.store();
    let head = append(&store, "a-1", 40).await;
    let runtime = start(&store, vec![counts("counts", "counts").boxed()], 16).await;
    runtime.wait_for(head, WAIT).await.unwrap();
    runtime.shutdown().await.unwrap();
    assert_eq!(
        checkpoint(db.pool(), "projection:counts:g1").await,
        Some(head as i64)
    );

    append(&store, "a-1", 10).await;
    let head = append(&store, "a-2", 25).await;
    // Nothing applies while stopped.
    assert_eq!(table_counts(db.pool(), "rm.counts").await["a-1"], 40);

    let runtime = start(&store, vec![counts("counts", "counts").boxed()], 16).await;
    runtime.wait_for(head, WAIT).await.unwrap();
    assert_counts_match_log(&db, "counts").await;
    assert_eq!(table_counts(db.pool(), "rm.counts").await["a-1"], 50);
    assert_eq!(registry(db.pool(), "counts").await, (1, 1, None));

    // A runtime dropped without shutdown stops as abruptly as a crash; the
    // next one resumes all the same.
    drop(runtime);
    let head = append(&store, "a-3", 5).await;
    let runtime = start(&store, vec![counts("counts", "counts").boxed()], 16).await;
    runtime.wait_for(head, WAIT).await.unwrap();
    assert_counts_match_log(&db, "counts").await;
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_projections_run_in_one_runtime() {
    let db = TestDb::new().await;
    let store = db.store();
    for i in 0..6 {
        append(&store, &format!("s-{i}"), 10 + i).await;
    }
    let runtime = start(
        &store,
        vec![
            counts("first", "first_counts").boxed(),
            counts("second", "second_counts").boxed(),
            counts("third", "third_counts").boxed(),
        ],
        5,
    )
    .await;
    assert_eq!(runtime.names(), vec!["first", "second", "third"]);
    let head = append(&store, "s-9", 4).await;
    runtime.wait_for(head, WAIT).await.unwrap();
    for table in ["first_counts", "second_counts", "third_counts"] {
        assert_counts_match_log(&db, table).await;
    }
    for name in ["first", "second", "third"] {
        assert_eq!(
            checkpoint(db.pool(), &format!("projection:{name}:g1")).await,
            Some(head as i64)
        );
        assert!(schema_exists(db.pool(), &format!("rm_{name}_g1")).await);
    }
    let status = runtime.status().await.unwrap();
    assert_eq!(status.len(), 3);
    assert!(status
        .iter()
        .all(|s| s.position == head && s.lag == 0 && s.state == ProjectionState::Running));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn rebuild_is_built_beside_the_live_tables_and_switched_to_while_events_keep_coming() {
    let db = TestDb::with_pool_size(16).await;
    let store = db.store();
    for i in 0..30 {
        append(&store, &format!("s-{}", i % 7), 40).await;
    }
    // The rebuild's batches wait at the gate until the test has seen the
    // live generation keep following beside it.
    let gate = Gate::closed(Some("rm_counts_g2"));
    let runtime = start(
        &store,
        vec![counts("counts", "counts").gated(&gate).boxed()],
        64,
    )
    .await;
    runtime
        .wait_for(store.head_position().await.unwrap(), WAIT)
        .await
        .unwrap();

    let done = Arc::new(AtomicBool::new(false));
    let appender = tokio::spawn({
        let (store, done) = (store.clone(), done.clone());
        async move {
            let mut n = 0usize;
            while !done.load(Ordering::Relaxed) {
                append(&store, &format!("s-{}", n % 5), 1 + n % 4).await;
                n += 1;
            }
            n
        }
    });
    let reader = tokio::spawn({
        let (pool, done) = (db.pool().clone(), done.clone());
        async move {
            let (mut reads, mut last) = (0u64, 0i64);
            while !done.load(Ordering::Relaxed) {
                let total: i64 =
                    sqlx::query_scalar("SELECT coalesce(sum(events), 0)::bigint FROM rm.counts")
                        .fetch_one(&pool)
                        .await
                        .expect("rm.counts answers throughout the rebuild and the switch");
                assert!(total >= last, "rm.counts went back from {last} to {total}");
                last = total;
                reads += 1;
            }
            reads
        }
    });

    assert_eq!(runtime.rebuild("counts").await.unwrap(), 2);
    assert_eq!(registry(db.pool(), "counts").await, (1, 1, Some(2)));
    assert!(schema_exists(db.pool(), "rm_counts_g2").await);
    let status = &runtime.status().await.unwrap()[0];
    assert_eq!(status.live_generation, 1);
    assert!(
        matches!(
            status.rebuild,
            Some(RebuildStatus {
                generation: 2,
                version: 1,
                position: 0,
                lag,
            }) if lag == status.head
        ),
        "{status:?}"
    );
    // Asking again joins the rebuild in progress.
    assert_eq!(runtime.rebuild("counts").await.unwrap(), 2);
    // The live generation keeps following while the rebuild is held.
    let head = store.head_position().await.unwrap();
    runtime.wait_for(head, WAIT).await.unwrap();
    assert_eq!(registry(db.pool(), "counts").await, (1, 1, Some(2)));

    gate.open();
    runtime
        .wait_for_generation("counts", 2, WAIT)
        .await
        .unwrap();
    // Keep appending a little after the switch, then stop and catch up.
    let after = append(&store, "s-0", 1).await;
    runtime.wait_for(after, WAIT).await.unwrap();
    done.store(true, Ordering::Relaxed);
    let appended = appender.await.unwrap();
    let reads = reader.await.unwrap();
    assert!(
        appended > 0 && reads > 0,
        "{appended} appends, {reads} reads"
    );
    runtime
        .wait_for(store.head_position().await.unwrap(), WAIT)
        .await
        .unwrap();

    assert_counts_match_log(&db, "counts").await;
    assert_eq!(registry(db.pool(), "counts").await, (2, 1, None));
    assert!(!schema_exists(db.pool(), "rm_counts_g1").await);
    assert_eq!(checkpoint(db.pool(), "projection:counts:g1").await, None);
    let status = &runtime.status().await.unwrap()[0];
    assert_eq!((status.live_generation, status.rebuild.clone()), (2, None));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_version_at_start_is_rebuilt_beside_the_old_one_and_switched_to() {
    let db = TestDb::new().await;
    let store = db.store();
    for i in 0..8 {
        append(&store, &format!("s-{}", i % 3), 25).await;
    }
    let runtime = start(&store, vec![counts("counts", "counts").boxed()], 32).await;
    let head = store.head_position().await.unwrap();
    runtime.wait_for(head, WAIT).await.unwrap();
    runtime.shutdown().await.unwrap();

    // Version 2 adds a column: the view changes shape at the switch.
    let gate = Gate::closed(Some("rm_counts_g2"));
    let v2 = counts("counts", "counts").version(2).gated(&gate).boxed();
    let runtime = start(&store, vec![v2], 32).await;
    assert_eq!(registry(db.pool(), "counts").await, (1, 1, Some(2)));
    let status = &runtime.status().await.unwrap()[0];
    assert_eq!((status.version, status.live_version), (2, 1));
    assert!(
        matches!(
            status.rebuild,
            Some(RebuildStatus {
                generation: 2,
                version: 2,
                ..
            })
        ),
        "{status:?}"
    );
    // The old version's tables keep serving (this process does not write
    // them: they belong to version 1).
    assert_counts_match_log(&db, "counts").await;
    let failed = sqlx::query("SELECT first_position FROM rm.counts")
        .fetch_all(db.pool())
        .await;
    assert!(failed.is_err(), "version 1 has no first_position");

    let head = append(&store, "s-0", 5).await;
    gate.open();
    // `wait_for` waits for the live generation: the switch.
    runtime.wait_for(head, WAIT).await.unwrap();
    assert_eq!(registry(db.pool(), "counts").await, (2, 2, None));
    assert!(!schema_exists(db.pool(), "rm_counts_g1").await);
    assert_counts_match_log(&db, "counts").await;
    let firsts: Vec<i64> = sqlx::query_scalar("SELECT first_position FROM rm.counts")
        .fetch_all(db.pool())
        .await
        .unwrap();
    assert!(!firsts.is_empty());
    runtime.shutdown().await.unwrap();

    // Starting version 2 again rebuilds nothing; an older version leaves
    // the newer tables alone.
    let runtime = start(
        &store,
        vec![counts("counts", "counts").version(2).boxed()],
        32,
    )
    .await;
    assert_eq!(registry(db.pool(), "counts").await, (2, 2, None));
    runtime.shutdown().await.unwrap();
    let runtime = start(&store, vec![counts("counts", "counts").boxed()], 32).await;
    assert_eq!(registry(db.pool(), "counts").await, (2, 2, None));
    let status = &runtime.status().await.unwrap()[0];
    assert_eq!(status.state, ProjectionState::Superseded);
    runtime.wait_for(u64::MAX, WAIT).await.unwrap();
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn status_reports_positions_lag_and_rebuilds() {
    let db = TestDb::new().await;
    let store = db.store();
    let head = append(&store, "s-1", 20).await;
    let runtime = start(&store, vec![counts("counts", "counts").boxed()], 8).await;
    runtime.wait_for(head, WAIT).await.unwrap();
    let status = runtime.status().await.unwrap();
    assert_eq!(status.len(), 1);
    let s = &status[0];
    assert_eq!(
        (
            s.name.as_str(),
            s.version,
            s.live_generation,
            s.live_version
        ),
        ("counts", 1, 1, 1)
    );
    assert_eq!((s.position, s.head, s.lag), (20, 20, 0));
    assert_eq!(
        (s.rebuild.clone(), s.state.clone()),
        (None, ProjectionState::Running)
    );
    runtime.shutdown().await.unwrap();

    // Five more events while stopped, and a runtime held at the gate.
    let head = append(&store, "s-2", 5).await;
    let gate = Gate::closed(None);
    let runtime = start(
        &store,
        vec![counts("counts", "counts").gated(&gate).boxed()],
        8,
    )
    .await;
    let s = &runtime.status().await.unwrap()[0];
    assert_eq!((s.position, s.head, s.lag), (20, head, 5));
    assert_eq!(runtime.rebuild("counts").await.unwrap(), 2);
    let s = &runtime.status().await.unwrap()[0];
    assert_eq!(
        s.rebuild,
        Some(RebuildStatus {
            generation: 2,
            version: 1,
            position: 0,
            lag: head,
        })
    );
    gate.open();
    runtime
        .wait_for_generation("counts", 2, WAIT)
        .await
        .unwrap();
    runtime.wait_for(head, WAIT).await.unwrap();
    let s = &runtime.status().await.unwrap()[0];
    assert_eq!(
        (
            s.live_generation,
            s.position,
            s.head,
            s.lag,
            s.rebuild.clone()
        ),
        (2, head, head, 0, None)
    );
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wait_for_waits_for_every_projection_and_times_out_otherwise() {
    let db = TestDb::new().await;
    let store = db.store();
    let gate = Gate::closed(Some("rm_held_g1"));
    let runtime = Arc::new(
        start(
            &store,
            vec![
                counts("free", "free_counts").boxed(),
                counts("held", "held_counts").gated(&gate).boxed(),
            ],
            4,
        )
        .await,
    );
    // Nothing to wait for at position 0.
    runtime.wait_for(0, WAIT).await.unwrap();

    // A waiter started before the events exist.
    let waiter = tokio::spawn({
        let runtime = runtime.clone();
        async move { runtime.wait_for(10, WAIT).await }
    });
    let head = append(&store, "s-1", 10).await;
    assert_eq!(head, 10);
    let timed_out = runtime.wait_for(head, Duration::from_millis(300)).await;
    assert!(
        matches!(&timed_out, Err(ProjectionError::Timeout { position: 10, behind, .. })
            if behind == &vec!["held".to_string()]),
        "{timed_out:?}"
    );
    assert!(!waiter.is_finished());
    gate.open();
    waiter.await.unwrap().unwrap();
    runtime.wait_for(head, WAIT).await.unwrap();
    assert_counts_match_log(&db, "free_counts").await;
    assert_counts_match_log(&db, "held_counts").await;
    Arc::into_inner(runtime)
        .expect("the waiter is done")
        .shutdown()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panicking_projection_is_reported_and_the_others_keep_running() {
    let db = TestDb::new().await;
    let store = db.store();
    let runtime = start(
        &store,
        vec![
            counts("steady", "steady_counts").unpoisoned().boxed(),
            counts("fragile", "fragile_counts").boxed(),
        ],
        4,
    )
    .await;
    append(&store, "s-1", 6).await;
    let boom = append_one(&store, "s-1", "Panic").await;
    let failed = runtime.wait_for(boom, WAIT).await;
    assert!(
        matches!(&failed, Err(ProjectionError::Failed { name, source })
            if name == "fragile" && matches!(&**source, ProjectionError::Panicked { message, .. } if message.contains("Panic event"))),
        "{failed:?}"
    );
    let head = append(&store, "s-2", 3).await;
    let status = runtime.status().await.unwrap();
    assert_eq!(status[1].name, "fragile");
    assert!(matches!(status[1].state, ProjectionState::Failed(_)));
    assert!(status[1].position < boom);
    // The other projection keeps following.
    runtime
        .wait_for_projection("steady", head, WAIT)
        .await
        .unwrap();
    let failed = runtime.wait_for_projection("fragile", head, WAIT).await;
    assert!(
        matches!(&failed, Err(ProjectionError::Failed { name, .. }) if name == "fragile"),
        "{failed:?}"
    );
    assert_counts_match_log(&db, "steady_counts").await;
    assert!(matches!(
        runtime.shutdown().await,
        Err(ProjectionError::Failed { name, .. }) if name == "fragile"
    ));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rebuild_cut_short_by_a_crash_resumes_from_its_checkpoint() {
    let db = TestDb::new().await;
    let store = db.store();
    for i in 0..20 {
        append(&store, &format!("s-{}", i % 3), 10).await;
    }
    let head = store.head_position().await.unwrap();
    // The rebuild commits three batches of 10, then waits in the fourth.
    let gate = Gate::after(Some("rm_counts_g2"), 3);
    let runtime = start(
        &store,
        vec![counts("counts", "counts").gated(&gate).boxed()],
        10,
    )
    .await;
    runtime.wait_for(head, WAIT).await.unwrap();
    assert_eq!(runtime.rebuild("counts").await.unwrap(), 2);
    tokio::time::timeout(WAIT, gate.holding.notified())
        .await
        .expect("the rebuild reaches its fourth batch");
    let status = &runtime.status().await.unwrap()[0];
    assert_eq!(status.rebuild.as_ref().map(|r| r.position), Some(30));
    // A crash: the fourth batch never commits.
    drop(runtime);

    // The next runtime resumes the rebuild at 30, not from scratch.
    let gate = Gate::closed(Some("rm_counts_g2"));
    let runtime = start(
        &store,
        vec![counts("counts", "counts").gated(&gate).boxed()],
        10,
    )
    .await;
    tokio::time::timeout(WAIT, gate.holding.notified())
        .await
        .expect("the rebuild resumes");
    assert_eq!(registry(db.pool(), "counts").await, (1, 1, Some(2)));
    let status = &runtime.status().await.unwrap()[0];
    assert_eq!(status.rebuild.as_ref().map(|r| r.position), Some(30));
    gate.open();
    runtime
        .wait_for_generation("counts", 2, WAIT)
        .await
        .unwrap();
    runtime.wait_for(head, WAIT).await.unwrap();
    assert_counts_match_log(&db, "counts").await;
    assert_eq!(registry(db.pool(), "counts").await, (2, 1, None));
    runtime.shutdown().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn two_runtimes_on_one_database_apply_each_event_once_and_agree_on_switches() {
    let db = TestDb::new().await;
    let store = db.store();
    let other = other_process_store(&db).await;
    append(&store, "s-0", 30).await;
    let one = start(&store, vec![counts("counts", "counts").boxed()], 8).await;
    let two = start(&other, vec![counts("counts", "counts").boxed()], 8).await;

    let appender = tokio::spawn({
        let store = store.clone();
        async move {
            let mut last = 0;
            for n in 0..200 {
                last = append(&store, &format!("s-{}", n % 6), 1 + n % 3).await;
            }
            last
        }
    });
    let head = appender.await.unwrap();
    one.wait_for(head, WAIT).await.unwrap();
    two.wait_for(head, WAIT).await.unwrap();
    assert_counts_match_log(&db, "counts").await;

    // One of them rebuilds and switches; the other notices at its next
    // batch and follows the new generation.
    assert_eq!(one.rebuild("counts").await.unwrap(), 2);
    one.wait_for_generation("counts", 2, WAIT).await.unwrap();
    let head = append(&store, "s-1", 3).await;
    two.wait_for_generation("counts", 2, WAIT).await.unwrap();
    one.wait_for(head, WAIT).await.unwrap();
    two.wait_for(head, WAIT).await.unwrap();
    assert_counts_match_log(&db, "counts").await;
    assert_eq!(registry(db.pool(), "counts").await, (2, 1, None));

    // Both ask for a rebuild at once: one generation is built, once.
    let (a, b) = tokio::join!(one.rebuild("counts"), two.rebuild("counts"));
    assert_eq!((a.unwrap(), b.unwrap()), (3, 3));
    let head = append(&store, "s-2", 2).await;
    one.wait_for_generation("counts", 3, WAIT).await.unwrap();
    one.wait_for(head, WAIT).await.unwrap();
    let head = append(&store, "s-3", 2).await;
    two.wait_for_generation("counts", 3, WAIT).await.unwrap();
    two.wait_for(head, WAIT).await.unwrap();
    one.wait_for(head, WAIT).await.unwrap();
    assert_counts_match_log(&db, "counts").await;
    assert_eq!(registry(db.pool(), "counts").await, (3, 1, None));
    one.shutdown().await.unwrap();
    two.shutdown().await.unwrap();
}

#[tokio::test]
async fn bad_names_and_clashing_tables_are_refused() {
    let db = TestDb::new().await;
    let store = db.store();
    for name in [
        "Counts",
        "9lives",
        "",
        "has-dash",
        "a_name_much_longer_than_forty_characters_x",
    ] {
        let name: &'static str = Box::leak(name.to_string().into_boxed_str());
        let refused =
            ProjectionRuntime::start(store.clone(), vec![counts(name, "t").boxed()], options(4))
                .await;
        assert!(
            matches!(refused, Err(ProjectionError::InvalidProjection { .. })),
            "{name}: {refused:?}"
        );
    }
    let twice = ProjectionRuntime::start(
        store.clone(),
        vec![counts("same", "t1").boxed(), counts("same", "t2").boxed()],
        options(4),
    )
    .await;
    assert!(matches!(
        twice,
        Err(ProjectionError::InvalidProjection { .. })
    ));
    // Two projections may not show a table of the same name in `rm`.
    let clash = ProjectionRuntime::start(
        store.clone(),
        vec![
            counts("one", "shared").boxed(),
            counts("two", "shared").boxed(),
        ],
        options(4),
    )
    .await;
    assert!(
        matches!(clash, Err(ProjectionError::Database(_))),
        "{clash:?}"
    );
    assert!(matches!(
        ProjectionRuntime::start(store.clone(), vec![], options(4))
            .await
            .unwrap()
            .rebuild("nothing")
            .await,
        Err(ProjectionError::UnknownProjection(_))
    ));
}
