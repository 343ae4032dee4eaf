//! The test harness: every test gets a fresh, migrated PostgreSQL database of
//! its own, dropped when the test ends.
//!
//! Which server: `DATABASE_URL` when set (any database on the server; tests
//! create their own next to it); otherwise a server on 127.0.0.1:5432 as user
//! `postgres` if one answers; otherwise a private cluster started from the
//! installed binaries in a temporary directory and stopped, and its directory
//! removed, when the test process exits. `SHARELEDGER_TEST_PG=private` skips
//! the first two (CI uses it to prove the fresh-machine path). When none of
//! these is possible the first test fails with one message saying what to
//! install.
//!
//! Fresh databases are cheap: the migrations run once into a template
//! database (named after a hash of the migrations), and each test clones it
//! with `CREATE DATABASE … TEMPLATE`.

pub mod faults;
pub mod nats;

use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use shareledger_events::store::local_pg::LocalCluster;
use shareledger_events::store::{PgEventStore, MIGRATOR};
use sqlx::postgres::PgConnectOptions;
use sqlx::{ConnectOptions, Connection, PgPool};
use uuid::Uuid;

/// The server every test of this process uses.
struct Server {
    /// Connect options for a maintenance database on the server.
    admin: PgConnectOptions,
}

static SERVER: OnceLock<Result<Server, String>> = OnceLock::new();
static PRIVATE_CLUSTER: Mutex<Option<LocalCluster>> = Mutex::new(None);

extern "C" fn stop_private_cluster() {
    if let Ok(mut guard) = PRIVATE_CLUSTER.lock() {
        if let Some(cluster) = guard.take() {
            let _ = cluster.stop();
            let _ = std::fs::remove_dir_all(cluster.data_dir());
        }
    }
}

fn server() -> &'static Server {
    let server = SERVER.get_or_init(|| {
        std::thread::spawn(find_server)
            .join()
            .unwrap_or_else(|_| Err("finding a PostgreSQL server panicked".into()))
    });
    match server {
        Ok(server) => server,
        Err(message) => panic!("{message}"),
    }
}

fn find_server() -> Result<Server, String> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())?;
    let private_only = std::env::var("SHARELEDGER_TEST_PG").is_ok_and(|v| v == "private");
    if private_only {
        return start_private_cluster();
    }
    if let Ok(url) = std::env::var("DATABASE_URL") {
        let admin: PgConnectOptions = url
            .parse()
            .map_err(|e| format!("DATABASE_URL is not a PostgreSQL URL: {e}"))?;
        runtime
            .block_on(admin.connect())
            .map_err(|e| format!("cannot connect to DATABASE_URL: {e}"))?;
        return Ok(Server { admin });
    }
    let local: PgConnectOptions = "postgres://postgres@127.0.0.1:5432/postgres"
        .parse()
        .expect("a valid URL");
    let reachable = runtime.block_on(async {
        tokio::time::timeout(Duration::from_secs(3), local.connect())
            .await
            .is_ok_and(|c| c.is_ok())
    });
    if reachable {
        return Ok(Server { admin: local });
    }
    start_private_cluster()
}

fn start_private_cluster() -> Result<Server, String> {
    let dir = std::env::temp_dir().join(format!("shareledger-test-pg-{}", std::process::id()));
    let cluster = LocalCluster::start(&dir, None).map_err(|e| e.to_string())?;
    let admin: PgConnectOptions = cluster.url("postgres").parse().expect("a valid URL");
    *PRIVATE_CLUSTER.lock().expect("not poisoned") = Some(cluster);
    // SAFETY: registers a plain extern "C" function to run at process exit.
    unsafe { libc_atexit(stop_private_cluster) };
    Ok(Server { admin })
}

extern "C" {
    #[link_name = "atexit"]
    fn libc_atexit(f: extern "C" fn()) -> i32;
}

/// A hash of every migration, so that a template is rebuilt when they change.
fn migrations_hash() -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for m in MIGRATOR.iter() {
        for b in m.checksum.iter().chain(m.version.to_le_bytes().iter()) {
            h ^= u64::from(*b);
            h = h.wrapping_mul(0x0100_0000_01b3);
        }
    }
    format!("{h:016x}")
}

async fn ensure_template(admin: &PgConnectOptions) -> String {
    let name = format!("sl_template_{}", migrations_hash());
    let mut conn = admin
        .connect()
        .await
        .expect("connect to the admin database");
    // One process at a time builds the template.
    sqlx::query("SELECT pg_advisory_lock(727071)")
        .execute(&mut conn)
        .await
        .expect("advisory lock");
    let exists: bool =
        sqlx::query_scalar("SELECT EXISTS (SELECT 1 FROM pg_database WHERE datname = $1)")
            .bind(&name)
            .fetch_one(&mut conn)
            .await
            .expect("query pg_database");
    if !exists {
        let building = format!("{name}_building");
        sqlx::query(&format!("DROP DATABASE IF EXISTS {building} WITH (FORCE)"))
            .execute(&mut conn)
            .await
            .expect("drop a half-built template");
        sqlx::query(&format!("CREATE DATABASE {building}"))
            .execute(&mut conn)
            .await
            .expect("create the template database");
        let mut tmpl = admin
            .clone()
            .database(&building)
            .connect()
            .await
            .expect("connect to the template");
        MIGRATOR
            .run(&mut tmpl)
            .await
            .expect("migrate the template database");
        tmpl.close().await.expect("close the template connection");
        sqlx::query(&format!("ALTER DATABASE {building} RENAME TO {name}"))
            .execute(&mut conn)
            .await
            .expect("publish the template");
    }
    sqlx::query("SELECT pg_advisory_unlock(727071)")
        .execute(&mut conn)
        .await
        .expect("advisory unlock");
    conn.close().await.ok();
    name
}

static TEMPLATE: tokio::sync::OnceCell<String> = tokio::sync::OnceCell::const_new();

/// A fresh, migrated database for one test, dropped when this value is.
pub struct TestDb {
    name: String,
    pool: PgPool,
    options: PgConnectOptions,
}

impl TestDb {
    /// A new database with a pool of up to 10 connections.
    pub async fn new() -> Self {
        Self::with_pool_size(10).await
    }

    /// A new database with a pool of up to `max_connections` connections.
    pub async fn with_pool_size(max_connections: u32) -> Self {
        let server = server();
        let template = TEMPLATE
            .get_or_init(|| ensure_template(&server.admin))
            .await
            .clone();
        Self::create(&format!("TEMPLATE {template}"), max_connections).await
    }

    /// A new, empty database: no schema at all (to test migrations).
    pub async fn empty() -> Self {
        Self::create("", 4).await
    }

    async fn create(clause: &str, max_connections: u32) -> Self {
        let server = server();
        let name = format!("sl_test_{}", Uuid::new_v4().simple());
        let mut conn = server
            .admin
            .connect()
            .await
            .expect("connect to the admin database");
        sqlx::query(&format!("CREATE DATABASE {name} {clause}"))
            .execute(&mut conn)
            .await
            .expect("create the test database");
        conn.close().await.ok();
        let options = server.admin.clone().database(&name);
        let pool = PgEventStore::pool_options()
            .max_connections(max_connections)
            .acquire_timeout(Duration::from_secs(60))
            .connect_with(options.clone())
            .await
            .expect("connect to the test database");
        Self {
            name,
            pool,
            options,
        }
    }

    /// The pool on this test's database.
    pub fn pool(&self) -> &PgPool {
        &self.pool
    }

    /// Connect options for this test's database (for extra pools or listeners).
    pub fn connect_options(&self) -> PgConnectOptions {
        self.options.clone()
    }

    /// A URL for this test's database (for the CLI under test).
    pub fn url(&self) -> String {
        let o = &self.options;
        format!(
            "postgres://{}@{}:{}/{}",
            o.get_username(),
            o.get_host(),
            o.get_port(),
            self.name
        )
    }

    /// The event store on this test's database.
    pub fn store(&self) -> PgEventStore {
        PgEventStore::new(self.pool.clone())
    }

    /// Everything the log holds, row by row: to assert that a rejected
    /// command changed nothing.
    pub async fn log_snapshot(&self) -> LogSnapshot {
        let rows = |sql: &'static str| {
            let pool = self.pool.clone();
            async move {
                sqlx::query_scalar::<_, serde_json::Value>(sql)
                    .fetch_all(&pool)
                    .await
                    .expect("snapshot query")
            }
        };
        LogSnapshot {
            events: rows("SELECT to_jsonb(e) FROM sl_events e ORDER BY global_position").await,
            streams: rows("SELECT to_jsonb(s) FROM sl_streams s ORDER BY stream_name").await,
            head: rows("SELECT to_jsonb(h) FROM sl_log_head h").await,
            tags: rows("SELECT to_jsonb(t) FROM sl_event_tags t ORDER BY global_position, tag")
                .await,
        }
    }
}

/// The full contents of the log's tables at one moment.
#[derive(Debug, Clone, PartialEq)]
pub struct LogSnapshot {
    pub events: Vec<serde_json::Value>,
    pub streams: Vec<serde_json::Value>,
    pub head: Vec<serde_json::Value>,
    pub tags: Vec<serde_json::Value>,
}

impl Drop for TestDb {
    fn drop(&mut self) {
        let name = self.name.clone();
        let admin = server().admin.clone();
        // Drop runs inside the test's runtime, which is blocked meanwhile: use
        // a thread with its own runtime, and let FORCE close this test's
        // connections from the server side (closing the pool from here would
        // wait on tasks of the blocked runtime).
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            runtime.block_on(async move {
                let mut conn = admin.connect().await?;
                sqlx::query(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut conn)
                    .await?;
                Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
            })?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("could not drop test database {}: {e}", self.name);
        }
    }
}

/// Small builders for tests.
pub mod fixtures {
    use shareledger_events::{Actor, EventMetadata, EventType, NewEvent, StreamName};
    use uuid::Uuid;

    /// Metadata of an operator named `tests`.
    pub fn metadata() -> EventMetadata {
        EventMetadata::new(
            Actor::Operator {
                name: "tests".into(),
            },
            Uuid::new_v4(),
        )
    }

    /// A stream name that must parse.
    pub fn stream(name: &str) -> StreamName {
        StreamName::parse(name).expect("a valid stream name in a test")
    }

    /// A new event of `event_type` with a fresh id and `data`.
    pub fn event(event_type: &str, data: serde_json::Value) -> NewEvent {
        event_with_id(Uuid::new_v4(), event_type, data)
    }

    /// A new event with the given id.
    pub fn event_with_id(id: Uuid, event_type: &str, data: serde_json::Value) -> NewEvent {
        NewEvent::new(
            id,
            EventType::parse(event_type).expect("a valid event type in a test"),
            1,
            data,
            metadata(),
        )
        .expect("a valid event in a test")
    }

    /// `n` events of type `Happened` with data `{"n": i}`.
    pub fn events(n: usize) -> Vec<NewEvent> {
        (0..n)
            .map(|i| event("Happened", serde_json::json!({ "n": i })))
            .collect()
    }
}
