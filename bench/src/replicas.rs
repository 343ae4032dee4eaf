//! `replicas`: several `shareledger serve` processes (the real release
//! binary, started by the bench) on one database.
//!
//! * `replicas_load`: a mixed load (checks, and one command in five) from
//!   the same number of client tasks, against one process and then against
//!   three, each task talking to one process. `ratio` = requests/s with
//!   three processes over requests/s with one. On two cores three
//!   processes cannot be faster: the figure is the cost of coordination
//!   (leases, standbys reading their holders' checkpoints, three indexes
//!   following the log). Goal: at least 0.8.
//! * `replicas_failover`: three processes; partners' relationships to a
//!   shared scorecard's objects, and a load that removes the objects from
//!   the scorecard (each removal makes the consequence worker remove one
//!   relationship), sent to every process, a failed send going to the next
//!   process with the same idempotency key. The process holding the
//!   consequence worker's lease is killed with SIGKILL a third of the way
//!   in. `failover_s`: until the survivors hold every lease the killed
//!   process held (`/ready`); `lost`: acknowledged removals whose
//!   relationship was never removed; `doubled`: relationships removed more
//!   than once; `chain`: the integrity chain verified and sealed to the
//!   head. `ratio` = `failover_s` over its goal (10 s): at most 1 meets it.
//!
//! * `replicas_snapshot`: the access bench's generated world (about 2.1
//!   million events; `--quick`: about 100,000) appended and sealed; the
//!   access index started by replaying the whole log (`LiveAccess::start`)
//!   against started from a snapshot of it (`LiveAccess::start_from_snapshot`:
//!   the row read, checked against the chain, decoded, then the log after
//!   it, here none). `ratio` = replay time over snapshot start time. Goal:
//!   at least 5.
//!
//! * `replicas_replica_reads`: `crate::replica_reads`.
//!
//! `--only load|failover|snapshot|replica` runs one part.

use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use shareledger_commands::Service;
use shareledger_core::catalog::{
    Directions, Name, ObjectId, ObjectKind, RelationshipId, Role, ScorecardId, SeatLimit, SiteCode,
    SiteId, UserId, Username,
};
use shareledger_core::connection::{ApproveConnection, RequestConnection, ShareScorecard};
use shareledger_core::content::{
    CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
};
use shareledger_core::site::{AddUser, RegisterSite};
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use shareledger_tests::TestDb;
use tokio::process::Child;
use uuid::Uuid;

use crate::http::{build, by, operator, question, Size};
use crate::report::{progress, run_timed, Line};
use crate::CommonArgs;

/// A `shareledger serve` child process.
pub(crate) struct Process {
    child: Child,
    pub(crate) url: String,
}

impl Process {
    async fn start(binary: &PathBuf, db: &TestDb) -> anyhow::Result<Self> {
        Self::start_on(binary, &db.url(), &[]).await
    }

    /// `serve` on the database at `url`, with more arguments; returns once
    /// `/ready` says yes.
    pub(crate) async fn start_on(
        binary: &PathBuf,
        url: &str,
        args: &[&str],
    ) -> anyhow::Result<Self> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let child = tokio::process::Command::new(binary)
            .env("DATABASE_URL", url)
            .env("RUST_LOG", "warn")
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", binary.display()))?;
        let process = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = reqwest::Client::new();
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(120) {
            if let Ok(r) = client.get(format!("{}/ready", process.url)).send().await {
                if r.status().is_success() {
                    return Ok(process);
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        bail!("serve was not ready within 120 s")
    }

    pub(crate) async fn kill_9(mut self) -> anyhow::Result<()> {
        self.child.start_kill()?;
        self.child.wait().await?;
        Ok(())
    }

    /// The leased parts this process holds, as its `/ready` says.
    async fn leases(&self, client: &reqwest::Client) -> BTreeSet<String> {
        let Ok(answer) = client.get(format!("{}/ready", self.url)).send().await else {
            return BTreeSet::new();
        };
        let ready: Value = answer.json().await.unwrap_or(Value::Null);
        ready["parts"]
            .as_array()
            .into_iter()
            .flatten()
            .filter(|p| p["lease"] == json!("holder") && p["state"] == json!("following"))
            .filter_map(|p| p["name"].as_str().map(str::to_owned))
            .collect()
    }
}

/// The `shareledger` binary to run: `SHARELEDGER_BIN` when set, else the
/// release binary beside this one, built first with the cargo that runs the
/// bench (`cargo run` sets `CARGO`).
pub(crate) async fn binary() -> anyhow::Result<PathBuf> {
    if let Ok(path) = std::env::var("SHARELEDGER_BIN") {
        return Ok(PathBuf::from(path));
    }
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    progress("replicas: building the release binary (cargo build --release -p shareledger)");
    let built = tokio::process::Command::new(cargo)
        .args([
            "build",
            "--release",
            "-p",
            "shareledger",
            "--bin",
            "shareledger",
        ])
        .status()
        .await?;
    anyhow::ensure!(
        built.success(),
        "cargo build --release -p shareledger failed"
    );
    let binary = std::env::current_exe()?
        .parent()
        .context("the bench's directory")?
        .join("shareledger");
    anyhow::ensure!(binary.exists(), "{} is missing", binary.display());
    Ok(binary)
}

/// The `replicas` benchmark's options.
#[derive(Debug, Clone, Copy, clap::Args)]
pub struct ReplicasArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Run only this part (default: all three).
    #[arg(long, value_enum)]
    pub only: Option<Part>,
}

/// A part of the `replicas` benchmark.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Part {
    Load,
    Failover,
    Snapshot,
    /// Reads through a streaming replica (`crate::replica_reads`).
    Replica,
}

pub async fn run(args: ReplicasArgs) -> anyhow::Result<()> {
    let runs = |part| args.only.is_none_or(|only| only == part);
    let common = args.common;
    if runs(Part::Load) || runs(Part::Failover) || runs(Part::Replica) {
        let binary = binary().await?;
        if runs(Part::Load) {
            load(&binary, common).await?;
        }
        if runs(Part::Failover) {
            failover(&binary, common).await?;
        }
        if runs(Part::Replica) {
            crate::replica_reads::run(&binary, common).await?;
        }
    }
    if runs(Part::Snapshot) {
        snapshot_start(common).await?;
    }
    Ok(())
}

/// `replicas_snapshot`.
async fn snapshot_start(args: CommonArgs) -> anyhow::Result<()> {
    use crate::access::{load, world};
    use shareledger_events::store::{Sealer, SealerOptions};
    use shareledger_projections::access::{snapshot, LiveAccess, LiveOptions};
    let sizes = world::Sizes::new(args.quick);
    progress("replicas_snapshot: generating the access bench's world");
    let (world, phases) = world::generate(&sizes, world::SEED);
    let world = Arc::new(world);
    let db = TestDb::with_pool_size(12).await;
    let store = db.store();
    let written = load::append_phases(&store, &world, phases).await?;
    progress(&format!(
        "replicas_snapshot: sealing {} events",
        written.events
    ));
    let sealer = Sealer::new(store.clone(), SealerOptions::default());
    while sealer.seal_pending(20_000).await? > 0 {}
    crate::report::quiesce(db.pool()).await;

    progress("replicas_snapshot: starting the index by replaying the log");
    let started = Instant::now();
    let (live, task) = LiveAccess::start(store.clone(), LiveOptions::default()).await?;
    let replay = started.elapsed();
    let head = live.position();
    let started = Instant::now();
    let saved = snapshot::save(&store, live.copy()).await?;
    let write = started.elapsed();
    anyhow::ensure!(
        saved == Some(head),
        "the snapshot was not written at {head}"
    );
    live.stop();
    task.await??;
    drop(live);
    let bytes: i32 = sqlx::query_scalar("SELECT octet_length(data) FROM sl_index_snapshots")
        .fetch_one(db.pool())
        .await?;

    progress("replicas_snapshot: starting the index from the snapshot");
    let started = Instant::now();
    let (live, task) =
        LiveAccess::start_from_snapshot(store.clone(), LiveOptions::default()).await?;
    let from_snapshot = started.elapsed();
    anyhow::ensure!(
        live.started_from() == head && live.position() == head,
        "the index did not start from the snapshot"
    );
    anyhow::ensure!(
        live.read().sizes().placements == world.placements(),
        "the index from the snapshot holds other placements than the world"
    );
    live.stop();
    task.await??;
    Line::new("replicas_snapshot")
        .text("events", head)
        .text("snapshot_bytes", bytes)
        .ms("replay_s", replay.as_secs_f64())
        .ms("snapshot_start_s", from_snapshot.as_secs_f64())
        .ms("snapshot_write_s", write.as_secs_f64())
        .ratio(replay.as_secs_f64(), from_snapshot.as_secs_f64());
    Ok(())
}

/// `replicas_load`.
async fn load(binary: &PathBuf, args: CommonArgs) -> anyhow::Result<()> {
    let size = Size::new(args.quick);
    let db = TestDb::with_pool_size(8).await;
    let sites = Arc::new(build(&db, &size).await?);
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    const TASKS: usize = 16;
    let mut processes = vec![Process::start(binary, &db).await?];
    let mut rates = Vec::new();
    for count in [1, 3] {
        while processes.len() < count {
            processes.push(Process::start(binary, &db).await?);
        }
        progress(&format!("replicas_load: {count} process(es)"));
        let urls: Arc<Vec<String>> = Arc::new(processes.iter().map(|p| p.url.clone()).collect());
        let (client, sites) = (client.clone(), Arc::clone(&sites));
        let measured = run_timed("replicas load", TASKS, size.timing, move |task| {
            let (client, sites, urls) = (client.clone(), Arc::clone(&sites), Arc::clone(&urls));
            async move {
                let base = &urls[task % urls.len()];
                if rand::random::<u8>() % 5 == 0 {
                    let site = &sites[rand::random::<usize>() % sites.len()];
                    let object = site.objects[rand::random::<usize>() % site.objects.len()];
                    let response = client
                        .post(format!("{base}/v1/commands/ChangeObjectField"))
                        .bearer_auth(&site.admin_token)
                        .header("Idempotency-Key", Uuid::new_v4().to_string())
                        .json(&json!({"site_id": site.id, "object_id": object, "field": "analysis", "value": format!("analysis {}", rand::random::<u32>())}))
                        .send()
                        .await?;
                    let status = response.status();
                    let body = response.text().await?;
                    if status == reqwest::StatusCode::CONFLICT && body.contains("\"contended\"") {
                        return Ok(0);
                    }
                    anyhow::ensure!(status.is_success(), "command {status}: {body}");
                    Ok(1)
                } else {
                    let (token, query) = question(&sites, task);
                    let response = client
                        .get(format!("{base}/v1/access/check?{query}"))
                        .bearer_auth(token)
                        .send()
                        .await?;
                    let status = response.status();
                    anyhow::ensure!(
                        status.is_success() || status == reqwest::StatusCode::NOT_FOUND,
                        "check {status}"
                    );
                    response.bytes().await?;
                    Ok(0)
                }
            }
        })
        .await?;
        let window = measured.window.as_secs_f64();
        rates.push((
            measured.ops as f64 / window,
            (measured.ops - measured.events) as f64 / window,
            measured.events as f64 / window,
            measured.latency_ms(0.99),
        ));
    }
    let (one, three) = (rates[0], rates[1]);
    Line::new("replicas_load")
        .count("requests_per_s", three.0)
        .count("checks_per_s", three.1)
        .count("commands_per_s", three.2)
        .ms("p99_ms", three.3)
        .count("one_process_requests_per_s", one.0)
        .count("one_process_checks_per_s", one.1)
        .count("one_process_commands_per_s", one.2)
        .ms("one_process_p99_ms", one.3)
        .text("processes", 3)
        .ratio(three.0, one.0);
    for process in processes {
        process.kill_9().await?;
    }
    Ok(())
}

/// The failover drill's world: two partners, a shared scorecard of
/// `objects` objects, each linked by the partner.
struct Shared {
    owner: SiteId,
    owner_token: String,
    scorecard: ScorecardId,
    links: Vec<(ObjectId, RelationshipId)>,
}

async fn shared_world(db: &TestDb, objects: usize) -> anyhow::Result<Shared> {
    let service = Service::new(db.store());
    let (a, b) = (SiteId::new(), SiteId::new());
    let (admin_a, admin_b) = (UserId::new(), UserId::new());
    for (site, admin, code) in [(a, admin_a, "OWNER"), (b, admin_b, "PARTNER")] {
        service
            .execute(
                &operator(),
                RegisterSite {
                    site_id: site,
                    code: SiteCode::parse(code)?,
                    name: Name::parse(code)?,
                    seat_limit: SeatLimit::new(10)?,
                    parent: None,
                },
            )
            .await?;
        service
            .execute(
                &operator(),
                AddUser {
                    site_id: site,
                    user_id: admin,
                    username: Username::parse(&format!("admin@{code}.bench"))?,
                    name: Name::parse("Admin")?,
                    role: Role::Administration,
                    email: None,
                },
            )
            .await?;
    }
    service
        .execute(
            &by(a, admin_a),
            RequestConnection {
                site_id: a,
                partner_code: SiteCode::parse("PARTNER")?,
                directions: Directions::Both,
            },
        )
        .await?;
    service
        .execute(
            &by(b, admin_b),
            ApproveConnection {
                site_id: b,
                partner: a,
            },
        )
        .await?;
    let (scorecard, theirs) = (ScorecardId::new(), ScorecardId::new());
    for (site, admin, id) in [(a, admin_a, scorecard), (b, admin_b, theirs)] {
        service
            .execute(
                &by(site, admin),
                CreateScorecard {
                    site_id: site,
                    scorecard_id: id,
                    name: Name::parse("Shared")?,
                },
            )
            .await?;
    }
    service
        .execute(
            &by(a, admin_a),
            ShareScorecard {
                site_id: a,
                partner: b,
                scorecard_id: scorecard,
            },
        )
        .await?;
    let mut links = Vec::with_capacity(objects);
    for n in 0..objects {
        let (object, relationship) = (ObjectId::new(), RelationshipId::new());
        service
            .execute(
                &by(a, admin_a),
                CreateObject {
                    site_id: a,
                    object_id: object,
                    kind: ObjectKind::Indicator,
                    name: Name::parse(&format!("Measure {n}"))?,
                    container: None,
                },
            )
            .await?;
        service
            .execute(
                &by(a, admin_a),
                PlaceObjectOnScorecard {
                    site_id: a,
                    object_id: object,
                    scorecard_id: scorecard,
                },
            )
            .await?;
        service
            .execute(
                &by(b, admin_b),
                LinkSharedObject {
                    site_id: b,
                    relationship_id: relationship,
                    scorecard_id: theirs,
                    origin_site: a,
                    object_id: object,
                },
            )
            .await?;
        links.push((object, relationship));
        if n % 100 == 99 {
            progress(&format!("replicas_failover world: {}/{objects}", n + 1));
        }
    }
    let owner_token = auth::issue(
        db.pool(),
        TokenRequest {
            kind: TokenKind::User,
            site: Some(a),
            user: Some(admin_a),
            name: "bench failover".into(),
            lifetime: Duration::from_secs(86_400),
        },
    )
    .await?
    .token;
    Ok(Shared {
        owner: a,
        owner_token,
        scorecard,
        links,
    })
}

/// `replicas_failover`.
async fn failover(binary: &PathBuf, args: CommonArgs) -> anyhow::Result<()> {
    let objects = if args.quick { 150 } else { 600 };
    const TASKS: usize = 6;
    let db = TestDb::with_pool_size(8).await;
    let world = Arc::new(shared_world(&db, objects).await?);
    let mut processes = Vec::new();
    for _ in 0..3 {
        processes.push(Process::start(binary, &db).await?);
    }
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let mut held = Vec::new();
    for process in &processes {
        held.push(process.leases(&client).await);
    }
    let victim = held
        .iter()
        .position(|h| h.contains("consequences"))
        .context("no process holds the consequence worker's lease")?;
    let victim_held = held[victim].clone();
    progress(&format!(
        "replicas_failover: process {victim} holds {victim_held:?}"
    ));

    // The load: each task removes its share of the objects, one at a time.
    let urls: Arc<Vec<String>> = Arc::new(processes.iter().map(|p| p.url.clone()).collect());
    let acknowledged: Arc<Mutex<Vec<RelationshipId>>> = Arc::default();
    let mut tasks = tokio::task::JoinSet::new();
    for task in 0..TASKS {
        let (client, urls, world, acknowledged) = (
            client.clone(),
            Arc::clone(&urls),
            Arc::clone(&world),
            Arc::clone(&acknowledged),
        );
        tasks.spawn(async move {
            for (n, (object, relationship)) in world.links.iter().enumerate() {
                if n % TASKS != task {
                    continue;
                }
                let key = Uuid::new_v4();
                let body = json!({"site_id": world.owner, "object_id": object, "scorecard_id": world.scorecard});
                let mut attempt = n;
                let started = Instant::now();
                loop {
                    let base = &urls[attempt % urls.len()];
                    attempt += 1;
                    let sent = client
                        .post(format!("{base}/v1/commands/RemoveObjectFromScorecard"))
                        .bearer_auth(&world.owner_token)
                        .header("Idempotency-Key", key.to_string())
                        .json(&body)
                        .send()
                        .await;
                    let status = sent.as_ref().map(|r| r.status().as_u16()).unwrap_or(0);
                    if status == 200 || status == 201 {
                        acknowledged.lock().unwrap().push(*relationship);
                        break;
                    }
                    // No answer (the process died), 503, or the key still
                    // claimed by the dead process (409 in flight): the next
                    // process, the same key.
                    anyhow::ensure!(
                        started.elapsed() < Duration::from_secs(120),
                        "a removal was not acknowledged within 120 s (last status {status})"
                    );
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while acknowledged.lock().unwrap().len() < objects / 3 {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let killed = Instant::now();
    processes.remove(victim).kill_9().await?;
    progress("replicas_failover: SIGKILL sent to the lease holder");
    let failover_s = loop {
        let mut now_held = BTreeSet::new();
        for process in &processes {
            now_held.extend(process.leases(&client).await);
        }
        if victim_held.is_subset(&now_held) {
            break killed.elapsed().as_secs_f64();
        }
        if killed.elapsed() > Duration::from_secs(60) {
            bail!("the survivors did not take the leases over within 60 s: {now_held:?}");
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    while let Some(done) = tasks.join_next().await {
        done??;
    }
    let acknowledged = std::mem::take(&mut *acknowledged.lock().unwrap());

    // Every acknowledged removal's consequence, once.
    let wanted: BTreeSet<String> = acknowledged.iter().map(|r| r.0.to_string()).collect();
    let started = Instant::now();
    let removed: BTreeMap<String, i64> = loop {
        let rows: Vec<(String, i64)> = sqlx::query_as(
            "SELECT data->>'relationship_id', count(*) FROM sl_events \
             WHERE event_type = 'RelationshipRemoved' GROUP BY 1",
        )
        .fetch_all(db.pool())
        .await?;
        let removed: BTreeMap<String, i64> = rows.into_iter().collect();
        if wanted.iter().all(|r| removed.contains_key(r))
            || started.elapsed() > Duration::from_secs(60)
        {
            break removed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let lost = wanted.iter().filter(|r| !removed.contains_key(*r)).count();
    let doubled = removed.values().filter(|n| **n > 1).count();

    // The chain, through a survivor.
    let operator_token = auth::issue(
        db.pool(),
        TokenRequest {
            kind: TokenKind::Operator,
            site: None,
            user: None,
            name: "bench failover".into(),
            lifetime: Duration::from_secs(3_600),
        },
    )
    .await?
    .token;
    let started = Instant::now();
    let chain = loop {
        let verified: Value = client
            .get(format!("{}/v1/audit/verify", processes[0].url))
            .bearer_auth(&operator_token)
            .send()
            .await?
            .json()
            .await?;
        if verified["problem"] != Value::Null {
            break "broken";
        }
        if verified["unsealed"] == json!(0) {
            break "ok";
        }
        if started.elapsed() > Duration::from_secs(60) {
            break "unsealed";
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    Line::new("replicas_failover")
        .ms("failover_s", failover_s)
        .text("lost", lost)
        .text("doubled", doubled)
        .text("acknowledged", acknowledged.len())
        .text(
            "killed_held",
            victim_held.into_iter().collect::<Vec<_>>().join(","),
        )
        .text("chain", chain)
        .ratio(failover_s, 10.0);
    for process in processes {
        process.kill_9().await?;
    }
    Ok(())
}
