//! `vs_postgres_es_c{1,8,32}`: ShareLedger against postgres-es (the
//! PostgreSQL event repository of cqrs-es) on the same single-event workload:
//! a new aggregate (stream) per command, one ~200-byte event each.
//!
//! postgres-es is measured two ways, each on a fresh database of its own:
//!
//! * `pes_persist`: `PostgresEventRepository::persist` of one serialized
//!   event: its storage alone (`BEGIN`, `INSERT`, `COMMIT`), the same work as
//!   our one append. `ratio` is ours / this.
//! * `pes_cqrs`: `CqrsFramework::execute_with_metadata`, the documented way to
//!   use it: load the aggregate (a `SELECT` finding nothing), handle the
//!   command, persist the event. `ratio_cqrs` is ours / this.
//!
//! Its `events` table is created with the schema postgres-es ships in its
//! crate (`db/init.sql` of postgres-es 0.4.12), copied verbatim below.

use std::collections::HashMap;
use std::sync::Arc;

use anyhow::Context as _;
use async_trait::async_trait;
use cqrs_es::persist::{PersistedEventRepository, SerializedEvent};
use cqrs_es::{Aggregate, DomainEvent};
use postgres_es::{postgres_cqrs, PostgresEventRepository};
use serde::{Deserialize, Serialize};
use shareledger_tests::TestDb;
use uuid::Uuid;

use crate::append::{measure_ours, Workload};
use crate::report::{self, progress, run_timed, Line, Measured, Timing};

/// The `events` table from postgres-es 0.4.12 `db/init.sql`, verbatim.
const EVENTS_TABLE: &str = "
CREATE TABLE events
(
    aggregate_type text                         NOT NULL,
    aggregate_id   text                         NOT NULL,
    sequence       bigint CHECK (sequence >= 0) NOT NULL,
    event_type     text                         NOT NULL,
    event_version  text                         NOT NULL,
    payload        json                         NOT NULL,
    metadata       json                         NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, sequence)
)";

/// The `snapshots` table from the same file (unused by this workload, created
/// so the database is as postgres-es documents it).
const SNAPSHOTS_TABLE: &str = "
CREATE TABLE snapshots
(
    aggregate_type   text                                 NOT NULL,
    aggregate_id     text                                 NOT NULL,
    last_sequence    bigint CHECK (last_sequence >= 0)    NOT NULL,
    current_snapshot bigint CHECK (current_snapshot >= 0) NOT NULL,
    payload          json                                 NOT NULL,
    PRIMARY KEY (aggregate_type, aggregate_id, last_sequence)
)";

const AGGREGATE_TYPE: &str = "bench";

/// An aggregate that can be created once: one event.
#[derive(Debug, Default, Serialize, Deserialize)]
struct BenchAggregate {
    created: bool,
}

#[derive(Debug)]
struct BenchCommand {
    data: serde_json::Value,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
enum BenchEvent {
    Happened { data: serde_json::Value },
}

impl DomainEvent for BenchEvent {
    fn event_type(&self) -> String {
        "BenchEventHappened".into()
    }
    fn event_version(&self) -> String {
        "1.0".into()
    }
}

#[derive(Debug)]
struct AlreadyCreated;

impl std::fmt::Display for AlreadyCreated {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("aggregate already created")
    }
}

impl std::error::Error for AlreadyCreated {}

#[async_trait]
impl Aggregate for BenchAggregate {
    type Command = BenchCommand;
    type Event = BenchEvent;
    type Error = AlreadyCreated;
    type Services = ();

    fn aggregate_type() -> String {
        AGGREGATE_TYPE.into()
    }

    async fn handle(
        &self,
        command: BenchCommand,
        _services: &(),
    ) -> Result<Vec<BenchEvent>, AlreadyCreated> {
        if self.created {
            return Err(AlreadyCreated);
        }
        Ok(vec![BenchEvent::Happened { data: command.data }])
    }

    fn apply(&mut self, _event: BenchEvent) {
        self.created = true;
    }
}

/// Metadata like ours in content and size: who, and a correlation id.
fn metadata() -> HashMap<String, String> {
    HashMap::from([
        ("actor".to_string(), "operator:bench".to_string()),
        ("correlation_id".to_string(), Uuid::new_v4().to_string()),
    ])
}

async fn fresh_db(concurrency: usize) -> anyhow::Result<TestDb> {
    let db = TestDb::with_pool_size(concurrency as u32).await;
    for statement in [EVENTS_TABLE, SNAPSHOTS_TABLE] {
        sqlx::query(statement)
            .execute(db.pool())
            .await
            .context("creating the postgres-es tables")?;
    }
    report::quiesce(db.pool()).await;
    Ok(db)
}

async fn check_events(db: &TestDb, counted: u64) -> anyhow::Result<()> {
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM events")
        .fetch_one(db.pool())
        .await
        .context("counting postgres-es events")?;
    anyhow::ensure!(
        rows as u64 >= counted,
        "postgres-es events holds {rows} rows but the run counted {counted}"
    );
    Ok(())
}

/// postgres-es storage alone: one `persist` of one event per new aggregate.
async fn measure_persist(
    label: &str,
    concurrency: usize,
    timing: Timing,
    workload: &Arc<Workload>,
) -> anyhow::Result<Measured> {
    let db = fresh_db(concurrency).await?;
    progress(&format!(
        "{label}: postgres-es PostgresEventRepository::persist"
    ));
    let repo = Arc::new(PostgresEventRepository::new(db.pool().clone()));
    let workload = Arc::clone(workload);
    let measured = run_timed(label, concurrency, timing, move |_| {
        let repo = Arc::clone(&repo);
        let workload = Arc::clone(&workload);
        async move {
            let event = BenchEvent::Happened {
                data: workload.data.clone(),
            };
            let serialized = SerializedEvent::new(
                Uuid::new_v4().simple().to_string(),
                1,
                AGGREGATE_TYPE.into(),
                event.event_type(),
                event.event_version(),
                serde_json::to_value(&event)?,
                serde_json::to_value(metadata())?,
            );
            repo.persist::<BenchAggregate>(&[serialized], None)
                .await
                .map_err(|e| anyhow::anyhow!("postgres-es persist: {e}"))?;
            Ok(1)
        }
    })
    .await?;
    check_events(&db, measured.events).await?;
    Ok(measured)
}

/// postgres-es through its framework: load, handle, persist.
async fn measure_cqrs(
    label: &str,
    concurrency: usize,
    timing: Timing,
    workload: &Arc<Workload>,
) -> anyhow::Result<Measured> {
    let db = fresh_db(concurrency).await?;
    progress(&format!("{label}: postgres-es CqrsFramework::execute"));
    let cqrs = Arc::new(postgres_cqrs::<BenchAggregate>(
        db.pool().clone(),
        vec![],
        (),
    ));
    let workload = Arc::clone(workload);
    let measured = run_timed(label, concurrency, timing, move |_| {
        let cqrs = Arc::clone(&cqrs);
        let workload = Arc::clone(&workload);
        async move {
            let id = Uuid::new_v4().simple().to_string();
            let command = BenchCommand {
                data: workload.data.clone(),
            };
            cqrs.execute_with_metadata(&id, command, metadata())
                .await
                .map_err(|e| anyhow::anyhow!("postgres-es execute on {id}: {e}"))?;
            Ok(1)
        }
    })
    .await?;
    check_events(&db, measured.events).await?;
    Ok(measured)
}

/// Runs the comparison at concurrency 1, 8 and 32.
pub async fn run(timing: Timing, workload: &Arc<Workload>) -> anyhow::Result<()> {
    for concurrency in [1, 8, 32] {
        let name = format!("vs_postgres_es_c{concurrency}");
        let ours = measure_ours(&name, concurrency, 1, timing, workload).await?;
        let persist = measure_persist(&name, concurrency, timing, workload).await?;
        let cqrs = measure_cqrs(&name, concurrency, timing, workload).await?;
        Line::new(&name)
            .count("ours_per_s", ours.events_per_s())
            .count("pes_persist_per_s", persist.events_per_s())
            .count("pes_cqrs_per_s", cqrs.events_per_s())
            .ms("ours_p99_ms", ours.latency_ms(0.99))
            .ms("pes_persist_p99_ms", persist.latency_ms(0.99))
            .ms("pes_cqrs_p99_ms", cqrs.latency_ms(0.99))
            .ratio_as("ratio_cqrs", ours.events_per_s(), cqrs.events_per_s())
            .ratio(ours.events_per_s(), persist.events_per_s());
    }
    Ok(())
}
