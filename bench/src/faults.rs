//! Fault drills: the service under a steady load of checks and commands
//! while its database goes away, measured from the outside (HTTP only).
//!
//! * [`Drill::Outage`]: PostgreSQL (a cluster of the drill's own) is
//!   stopped for a while, then started again.
//! * [`Drill::CutConnections`]: every connection between the service and
//!   PostgreSQL is cut, several times, mid-query and mid-transaction, by a
//!   TCP proxy in between.
//!
//! Right after the fault, a user is deactivated and their access checked at
//! once; a partner's relationship is made to lose its only path (a
//! consequence for the worker). The [`Report`] says what a careful operator
//! wants to know: how many answers were 5xx other than 503, how long the
//! slowest 503 took, how long after the database came back every part was
//! following again (`/ready`), whether any check allowed a user deactivated
//! before it began, whether any acknowledged command is missing from the
//! log, and whether the consequence and the integrity chain caught up.
//!
//! The same drills run as tests (`bench/tests/faults.rs`, with bounds) and
//! as the `faults` benchmark (figures).

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use serde_json::{json, Value};
use shareledger_core::catalog::{SiteId, UserId};
use shareledger_events::store::PgEventStore;
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use shareledger_gateway::server::Server;
use shareledger_gateway::GatewayOptions;
use shareledger_tests::faults::{ChaosProxy, OwnCluster};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{ConnectOptions, PgPool};
use tokio::task::JoinSet;
use uuid::Uuid;

/// Which fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Drill {
    /// PostgreSQL stopped for this long, then started again.
    Outage(Duration),
    /// Every connection cut this many times, half a second apart.
    CutConnections(usize),
}

/// How the drill loads the service.
#[derive(Debug, Clone, Copy)]
pub struct Load {
    /// Tasks checking access in a loop.
    pub checkers: usize,
    /// Tasks issuing commands in a loop.
    pub commanders: usize,
    /// Users of the site checked.
    pub users: usize,
    /// Load before the fault.
    pub before: Duration,
    /// Load after recovery.
    pub after: Duration,
}

impl Default for Load {
    fn default() -> Self {
        Self {
            checkers: 4,
            commanders: 2,
            users: 20,
            before: Duration::from_secs(2),
            after: Duration::from_secs(3),
        }
    }
}

/// What a drill measured.
#[derive(Debug, Clone, Default)]
pub struct Report {
    /// Requests answered (any status) during the load.
    pub requests: u64,
    /// 5xx answers other than 503.
    pub five_xx: u64,
    /// 503 answers, by problem code.
    pub unavailable: std::collections::BTreeMap<String, u64>,
    /// The slowest 503 answer.
    pub slowest_503: Duration,
    /// The slowest answer of any kind.
    pub slowest: Duration,
    /// Requests that got no answer (the client's own 15 s bound, or a
    /// refused connection).
    pub unanswered: u64,
    /// From the database back (or the last cut) to `/ready` answering
    /// ready (every part following).
    pub recovery: Duration,
    /// Checks that allowed the deactivated user and began after the
    /// deactivation was acknowledged.
    pub stale_allows: u64,
    /// Checks of the deactivated user after the deactivation, of any outcome.
    pub checks_after_deactivation: u64,
    /// The first check's answer after the deactivation (status, allowed).
    pub first_check_after: String,
    /// Commands acknowledged (201) whose events are not in the log.
    pub lost: u64,
    /// Commands acknowledged.
    pub acknowledged: u64,
    /// Commands answered 409 `contended` (sent again with the same key).
    pub contended: u64,
    /// Sends answered 409 `idempotency_key_in_flight` (sent again).
    pub in_flight: u64,
    /// Whether the partner's relationship was removed (the consequence).
    pub consequence_applied: bool,
    /// Whether the integrity chain was sealed to the head.
    pub sealed_to_head: bool,
    /// Whether the derived feed of access changes reached the head and
    /// equals the one derived afresh from the log: every event's changes
    /// once, whatever the fault cut.
    pub derived_exact: bool,
    /// How many times background parts ran again after faults.
    pub restarts: u64,
}

/// Runs `drill` under `load` on a cluster of its own and reports.
pub async fn run(drill: Drill, load: Load) -> anyhow::Result<Report> {
    let mut cluster = OwnCluster::start().context("starting a private PostgreSQL cluster")?;
    let admin: PgConnectOptions = cluster.url("postgres").parse()?;
    let mut conn = admin.connect().await?;
    sqlx::query("CREATE DATABASE shareledger")
        .execute(&mut conn)
        .await?;
    drop(conn);
    let proxy = match drill {
        Drill::CutConnections(_) => Some(ChaosProxy::start(cluster.addr()).await?),
        Drill::Outage(_) => None,
    };
    let port = proxy
        .as_ref()
        .map_or(cluster.addr().port(), |p| p.addr().port());
    let connect: PgConnectOptions = cluster.url_via(port, "shareledger").parse()?;
    let pool = PgEventStore::pool_options()
        .max_connections(16)
        .acquire_timeout(Duration::from_millis(1_000))
        .connect_with(connect.options([("statement_timeout", "30000")]))
        .await?;
    // The drill's own view of the database, straight to the cluster.
    let direct = PgPoolOptions::new()
        .max_connections(2)
        .acquire_timeout(Duration::from_secs(2))
        .connect_lazy(&cluster.url("shareledger"))?;
    let server = Server::start(
        pool.clone(),
        "127.0.0.1:0".parse()?,
        GatewayOptions::default(),
    )
    .await?;
    let api = Api::new(server.url());
    let world = World::build(&api, &pool, load.users).await?;

    let log = Arc::new(Mutex::new(Log::default()));
    let stop = Arc::new(AtomicBool::new(false));
    let mut tasks = JoinSet::new();
    for n in 0..load.checkers {
        tasks.spawn(check_loop(
            api.clone(),
            world.clone(),
            n,
            Arc::clone(&log),
            Arc::clone(&stop),
        ));
    }
    for n in 0..load.commanders {
        tasks.spawn(command_loop(
            api.clone(),
            world.clone(),
            n,
            Arc::clone(&log),
            Arc::clone(&stop),
        ));
    }
    tokio::time::sleep(load.before).await;

    let back = match drill {
        Drill::Outage(outage) => {
            eprintln!("faults: stopping PostgreSQL for {} s", outage.as_secs());
            cluster.stop()?;
            tokio::time::sleep(outage).await;
            cluster.restart()?;
            eprintln!("faults: PostgreSQL is back");
            Instant::now()
        }
        Drill::CutConnections(times) => {
            let proxy = proxy.as_ref().expect("a proxy for cuts");
            for _ in 0..times {
                let cut = proxy.cut();
                eprintln!("faults: cut {cut} connections");
                tokio::time::sleep(Duration::from_millis(500)).await;
            }
            Instant::now()
        }
    };

    // Right after: deactivate the victim, then check them at once.
    let deactivation = Uuid::new_v4();
    let deactivated = loop {
        let reply = api
            .command(
                &world.admin_token,
                "DeactivateUser",
                json!({"site_id": world.site, "user_id": world.victim}),
                deactivation,
            )
            .await;
        match reply {
            Some(r) if r.status == 201 || r.status == 200 => break Instant::now(),
            Some(r) if r.status == 503 => {}
            Some(r) => bail!("DeactivateUser answered {} {}", r.status, r.body),
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    log.lock().expect("not poisoned").deactivated_at = Some(deactivated);
    let first = api
        .get(&world.admin_token, &world.check_path(world.victim))
        .await;
    let first_check_after = match &first {
        Some(r) => format!("{} allowed={}", r.status, r.body["allowed"]),
        None => "no answer".into(),
    };
    let own = api
        .get(&world.victim_token, &world.check_path(world.victim))
        .await;
    {
        let mut log = log.lock().expect("not poisoned");
        for reply in [&first, &own].into_iter().flatten() {
            log.victim_checks
                .push((deactivated, reply.status, allowed(reply)));
        }
    }

    // The consequence: the object leaves the shared scorecard.
    let removal = Uuid::new_v4();
    loop {
        let reply = api
            .command(
                &world.admin_token,
                "RemoveObjectFromScorecard",
                json!({"site_id": world.site, "object_id": world.linked_object, "scorecard_id": world.scorecard}),
                removal,
            )
            .await;
        match reply {
            Some(r) if r.status == 201 || r.status == 200 => break,
            Some(r) if r.status == 503 => {}
            Some(r) => bail!("RemoveObjectFromScorecard answered {} {}", r.status, r.body),
            None => {}
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }

    let mut last_ready = None;
    let recovery = loop {
        if let Some(r) = api.get_anonymous("/ready").await {
            if r.status == 200 && r.body["ready"] == json!(true) {
                break back.elapsed();
            }
            last_ready = Some(r.body);
        }
        if back.elapsed() > Duration::from_secs(120) {
            bail!(
                "the service was not ready 120 s after the fault; /ready last said {}",
                last_ready.map_or_else(|| "nothing".to_owned(), |body| body.to_string())
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    tokio::time::sleep(load.after).await;
    stop.store(true, Ordering::SeqCst);
    while let Some(done) = tasks.join_next().await {
        done??;
    }

    let consequence_applied = eventually(Duration::from_secs(30), || async {
        relationship_removed(&direct, world.partner_site).await
    })
    .await;
    let sealed_to_head = eventually(Duration::from_secs(30), || async {
        sealed_to_head(&direct).await
    })
    .await;
    let derived_exact = eventually(Duration::from_secs(30), || async {
        derived_at_head(&direct).await
    })
    .await
        && derived_equal_afresh(&direct).await?;
    let ready = api
        .get_anonymous("/ready")
        .await
        .context("/ready after the drill")?;
    let restarts = ready.body["parts"]
        .as_array()
        .map(|parts| parts.iter().filter_map(|p| p["restarts"].as_u64()).sum())
        .unwrap_or(0);

    let log = std::mem::take(&mut *log.lock().expect("not poisoned"));
    let positions: Vec<i64> = log.acknowledged.iter().map(|p| *p as i64).collect();
    let found: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sl_events WHERE global_position = ANY($1)")
            .bind(&positions)
            .fetch_one(&direct)
            .await?;
    let after = log.deactivated_at.unwrap_or(deactivated);
    let victim_after: Vec<_> = log
        .victim_checks
        .iter()
        .filter(|(began, _, _)| *began >= after)
        .collect();
    let report = Report {
        requests: log.requests,
        five_xx: log.five_xx,
        unavailable: log.unavailable,
        slowest_503: log.slowest_503,
        slowest: log.slowest,
        unanswered: log.unanswered,
        recovery,
        stale_allows: victim_after
            .iter()
            .filter(|(_, status, allowed)| *status == 200 && *allowed)
            .count() as u64,
        checks_after_deactivation: victim_after.len() as u64,
        first_check_after,
        lost: positions.len() as u64 - found as u64,
        acknowledged: positions.len() as u64,
        contended: log.contended,
        in_flight: log.in_flight,
        consequence_applied,
        sealed_to_head,
        derived_exact,
        restarts,
    };
    server.shutdown().await?;
    drop(proxy);
    drop(cluster);
    Ok(report)
}

/// What the load saw.
#[derive(Debug, Default)]
struct Log {
    requests: u64,
    five_xx: u64,
    unavailable: std::collections::BTreeMap<String, u64>,
    slowest_503: Duration,
    slowest: Duration,
    unanswered: u64,
    contended: u64,
    in_flight: u64,
    /// Positions of acknowledged commands.
    acknowledged: BTreeSet<u64>,
    /// Checks of the victim: when they began, status, allowed.
    victim_checks: Vec<(Instant, u16, bool)>,
    deactivated_at: Option<Instant>,
}

impl Log {
    fn record(&mut self, reply: Option<&Reply>, took: Duration) {
        let Some(reply) = reply else {
            self.unanswered += 1;
            return;
        };
        self.requests += 1;
        self.slowest = self.slowest.max(took);
        if reply.status == 503 {
            self.slowest_503 = self.slowest_503.max(took);
            let code = reply.body["code"].as_str().unwrap_or("").to_owned();
            *self.unavailable.entry(code).or_default() += 1;
        } else if reply.status >= 500 {
            self.five_xx += 1;
            eprintln!("faults: a {} answer: {}", reply.status, reply.body);
        }
    }
}

fn allowed(reply: &Reply) -> bool {
    reply.body["allowed"] == json!(true)
}

async fn check_loop(
    api: Api,
    world: World,
    n: usize,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let mut i = n;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        // Every third check is of the victim.
        let user = if i % 3 == 0 {
            world.victim
        } else {
            world.users[i % world.users.len()]
        };
        let began = Instant::now();
        let reply = api.get(&world.admin_token, &world.check_path(user)).await;
        {
            let mut log = log.lock().expect("not poisoned");
            log.record(reply.as_ref(), began.elapsed());
            if let (true, Some(reply)) = (user == world.victim, &reply) {
                log.victim_checks
                    .push((began, reply.status, allowed(reply)));
            }
        }
        if let Some(r) = &reply {
            if r.status != 200 && r.status != 503 {
                bail!("a check answered {} {}", r.status, r.body);
            }
        }
        if reply.as_ref().is_none_or(|r| r.status == 503) {
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

async fn command_loop(
    api: Api,
    world: World,
    n: usize,
    log: Arc<Mutex<Log>>,
    stop: Arc<AtomicBool>,
) -> anyhow::Result<()> {
    let object = world.objects[n % world.objects.len()];
    let mut i = 0u64;
    while !stop.load(Ordering::SeqCst) {
        i += 1;
        let key = Uuid::new_v4();
        let body = json!({"site_id": world.site, "object_id": object, "field": "analysis", "value": format!("analysis {n}-{i}")});
        // The same command with the same key until it is acknowledged or
        // the drill ends: an unacknowledged send may have committed, and
        // the key makes the retry return that result.
        loop {
            let began = Instant::now();
            let reply = api
                .command(&world.admin_token, "ChangeObjectField", body.clone(), key)
                .await;
            log.lock()
                .expect("not poisoned")
                .record(reply.as_ref(), began.elapsed());
            match reply {
                // 200: the same key's earlier send had been written.
                Some(r) if r.status == 201 || r.status == 200 => {
                    let position = r.body["position"].as_u64().context("a position")?;
                    log.lock()
                        .expect("not poisoned")
                        .acknowledged
                        .insert(position);
                    break;
                }
                Some(r) if r.status >= 500 => {}
                // The same key while an earlier send of it still holds it
                // (its run, or a claim not yet given back after a fault):
                // sent again, as Retry-After says.
                Some(r) if r.status == 409 && r.body["code"] == "idempotency_key_in_flight" => {
                    log.lock().expect("not poisoned").in_flight += 1;
                }
                // Two writers of one site's content stream can starve one
                // another (issue 15); the same key is sent again.
                Some(r) if r.status == 409 && r.body["code"] == "contended" => {
                    log.lock().expect("not poisoned").contended += 1;
                }
                Some(r) => bail!("ChangeObjectField answered {} {}", r.status, r.body),
                None => {}
            }
            if stop.load(Ordering::SeqCst) {
                return Ok(());
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
    Ok(())
}

async fn eventually<F, Fut>(within: Duration, mut condition: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let until = Instant::now() + within;
    loop {
        if condition().await {
            return true;
        }
        if Instant::now() > until {
            return false;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn relationship_removed(pool: &PgPool, partner: Uuid) -> bool {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM sl_events WHERE stream_name = $1 AND event_type = 'RelationshipRemoved'",
    )
    .bind(shareledger_core::catalog::content_stream(SiteId(partner)))
    .fetch_one(pool)
    .await
    .is_ok_and(|n| n > 0)
}

/// Whether the derived feeds' checkpoint is the log's head.
async fn derived_at_head(pool: &PgPool) -> bool {
    let store = PgEventStore::new(pool.clone());
    match (
        store.head_position().await,
        shareledger_projections::derived::rows::checkpoint(&store).await,
    ) {
        (Ok(head), Ok(at)) => head == at,
        _ => false,
    }
}

/// Whether the stored access changes equal those derived afresh from the
/// log, event by event, up to the feeds' checkpoint.
async fn derived_equal_afresh(pool: &PgPool) -> anyhow::Result<bool> {
    use shareledger_events::store::PositionFrom;
    use shareledger_events::Direction;
    use shareledger_projections::derived::rows::{self, FeedPoint};
    let store = PgEventStore::new(pool.clone());
    let (stored, head) = rows::access_changes(&store, FeedPoint::default(), None, None, 10_000_000)
        .await
        .context("the stored access changes")?;
    let stored: Vec<_> = stored
        .into_iter()
        .map(|e| (e.position, e.seq, e.change))
        .collect();
    let mut index = shareledger_projections::access::AccessIndex::new();
    let mut afresh = Vec::new();
    let mut at = 0;
    while at < head {
        let page = store
            .read_all(Direction::Forwards, PositionFrom::At(at + 1), 2_000)
            .await
            .context("reading the log")?;
        let Some(last) = page.last().map(|e| e.global_position) else {
            break;
        };
        for event in page.iter().filter(|e| e.global_position <= head) {
            let changes = index.apply_tracked(event)?;
            afresh.extend(
                changes
                    .into_iter()
                    .enumerate()
                    .map(|(seq, c)| (event.global_position, seq as u32, c)),
            );
        }
        at = last;
    }
    if stored != afresh {
        eprintln!(
            "the derived feed differs from a fresh derivation: {} stored, {} afresh",
            stored.len(),
            afresh.len()
        );
    }
    Ok(stored == afresh)
}

async fn sealed_to_head(pool: &PgPool) -> bool {
    sqlx::query_scalar::<_, bool>(
        "SELECT (SELECT last_position FROM sl_seal_head) = \
                (SELECT coalesce(max(global_position), 0) FROM sl_events)",
    )
    .fetch_one(pool)
    .await
    .unwrap_or(false)
}

/// One answer.
#[derive(Debug, Clone)]
struct Reply {
    status: u16,
    body: Value,
}

/// The service's HTTP API, as a client sees it.
#[derive(Clone)]
struct Api {
    client: reqwest::Client,
    url: String,
}

impl Api {
    fn new(url: String) -> Self {
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(15))
            .build()
            .expect("an HTTP client");
        Self { client, url }
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> Option<Reply> {
        let response = request.send().await.ok()?;
        let status = response.status().as_u16();
        let body = response.json().await.unwrap_or(Value::Null);
        Some(Reply { status, body })
    }

    async fn get(&self, token: &str, path: &str) -> Option<Reply> {
        self.send(
            self.client
                .get(format!("{}{path}", self.url))
                .bearer_auth(token),
        )
        .await
    }

    async fn get_anonymous(&self, path: &str) -> Option<Reply> {
        self.send(self.client.get(format!("{}{path}", self.url)))
            .await
    }

    async fn command(&self, token: &str, name: &str, body: Value, key: Uuid) -> Option<Reply> {
        self.send(
            self.client
                .post(format!("{}/v1/commands/{name}", self.url))
                .bearer_auth(token)
                .header("idempotency-key", key.to_string())
                .json(&body),
        )
        .await
    }

    /// A command that must succeed during setup.
    async fn must(&self, token: &str, name: &str, body: Value) -> anyhow::Result<u64> {
        let reply = self
            .command(token, name, body.clone(), Uuid::new_v4())
            .await
            .with_context(|| format!("{name}: no answer"))?;
        if reply.status != 201 {
            bail!("{name} {body}: {} {}", reply.status, reply.body);
        }
        reply.body["position"].as_u64().context("a position")
    }
}

/// Two sites: the checked one (users with access to a scorecard, objects
/// edited by the load) and a partner that linked one of its objects.
#[derive(Debug, Clone)]
struct World {
    site: Uuid,
    admin_token: String,
    scorecard: Uuid,
    objects: Vec<Uuid>,
    linked_object: Uuid,
    users: Vec<Uuid>,
    victim: Uuid,
    victim_token: String,
    partner_site: Uuid,
}

impl World {
    fn check_path(&self, user: Uuid) -> String {
        format!(
            "/v1/access/check?user_id={user}&target_type=scorecard&target_id={}&action=view",
            self.scorecard
        )
    }

    async fn build(api: &Api, pool: &PgPool, users: usize) -> anyhow::Result<Self> {
        let operator = token(pool, TokenKind::Operator, None, None).await?;
        let (site, admin_token) = Self::site(api, pool, &operator, "FAULTS").await?;
        let (partner_site, partner_token) = Self::site(api, pool, &operator, "PARTNER").await?;
        let t = admin_token.as_str();
        let scorecard = Uuid::new_v4();
        api.must(
            t,
            "CreateScorecard",
            json!({"site_id": site, "scorecard_id": scorecard, "name": "Outcomes"}),
        )
        .await?;
        let mut objects = Vec::new();
        for n in 0..4 {
            let object = Uuid::new_v4();
            api.must(t, "CreateObject", json!({"site_id": site, "object_id": object, "kind": "indicator", "name": format!("Indicator {n}")})).await?;
            api.must(
                t,
                "PlaceObjectOnScorecard",
                json!({"site_id": site, "object_id": object, "scorecard_id": scorecard}),
            )
            .await?;
            objects.push(object);
        }
        let linked_object = objects.pop().expect("four objects");
        api.must(
            t,
            "RequestConnection",
            json!({"site_id": site, "partner_code": "PARTNER", "directions": "offer"}),
        )
        .await?;
        api.must(
            &partner_token,
            "ApproveConnection",
            json!({"site_id": partner_site, "partner": site}),
        )
        .await?;
        api.must(
            t,
            "ShareScorecard",
            json!({"site_id": site, "partner": partner_site, "scorecard_id": scorecard}),
        )
        .await?;
        let partner_scorecard = Uuid::new_v4();
        api.must(
            &partner_token,
            "CreateScorecard",
            json!({"site_id": partner_site, "scorecard_id": partner_scorecard, "name": "Ours"}),
        )
        .await?;
        api.must(&partner_token, "LinkSharedObject", json!({"site_id": partner_site, "relationship_id": Uuid::new_v4(), "scorecard_id": partner_scorecard, "origin_site": site, "object_id": linked_object})).await?;
        let mut ids = Vec::new();
        for n in 0..users.max(1) {
            let user = Uuid::new_v4();
            api.must(t, "AddUser", json!({"site_id": site, "user_id": user, "username": format!("user{n}@faults.example"), "name": format!("User {n}"), "role": "presenter"})).await?;
            api.must(t, "GrantScorecardAccess", json!({"site_id": site, "user_id": user, "scorecard_id": scorecard, "level": "browser"})).await?;
            ids.push(user);
        }
        let victim = ids.pop().expect("at least one user");
        let victim_token = token(pool, TokenKind::User, Some(site), Some(victim)).await?;
        if ids.is_empty() {
            ids.push(victim);
        }
        Ok(Self {
            site,
            admin_token,
            scorecard,
            objects,
            linked_object,
            users: ids,
            victim,
            victim_token,
            partner_site,
        })
    }

    /// A site with an Administration user, and that user's token.
    async fn site(
        api: &Api,
        pool: &PgPool,
        operator: &str,
        code: &str,
    ) -> anyhow::Result<(Uuid, String)> {
        let site = Uuid::new_v4();
        let admin = Uuid::new_v4();
        api.must(operator, "RegisterSite", json!({"site_id": site, "code": code, "name": format!("{code} site"), "seat_limit": 100})).await?;
        api.must(operator, "AddUser", json!({"site_id": site, "user_id": admin, "username": format!("admin@{}.example", code.to_lowercase()), "name": "Admin", "role": "administration"})).await?;
        let token = token(pool, TokenKind::User, Some(site), Some(admin)).await?;
        Ok((site, token))
    }
}

async fn token(
    pool: &PgPool,
    kind: TokenKind,
    site: Option<Uuid>,
    user: Option<Uuid>,
) -> anyhow::Result<String> {
    Ok(auth::issue(
        pool,
        TokenRequest {
            kind,
            site: site.map(SiteId),
            user: user.map(UserId),
            name: "faults drill".into(),
            lifetime: Duration::from_secs(3_600),
        },
    )
    .await?
    .token)
}
