//! `http`: the gateway under load on loopback, against the HTTP stack's own
//! limit in the same run.
//!
//! The server (`shareledger_gateway::server::Server`, the real service with
//! its access index, read models and consequence worker) and the load
//! generator (tasks sharing one `reqwest` client: keep-alive connections,
//! one request in flight per task) run in this process, on the machine's
//! cores: the figures are of the pair, which is why every comparison is a
//! ratio measured side by side.
//!
//! The world, built through the command service before timing: `SITES`
//! sites in a ring of active links both ways, each with an admin, `USERS`
//! users granted Browser on some of its scorecards, `SCORECARDS` scorecards
//! of `OBJECTS` objects each, every site sharing half its scorecards with
//! the next. Every user gets a token.
//!
//! * `http_trivial_c{N}`: `GET /health` with the same token and query string
//!   as a check (both ignored): the stack's limit for the same requests.
//! * `http_check_c{N}`: `GET /v1/access/check` by a random user's token on a
//!   random target of its site or of the previous one (shared or not):
//!   `ratio` = checks/s over trivial/s. Goal: at least 0.8. The two are
//!   measured in alternating rounds (`ROUNDS`), reads before any command,
//!   on a settled server (nothing that follows the log has work left).
//! * `http_commands_c{N}`: `POST /v1/commands/ChangeObjectField` by site
//!   admins on their own objects, against the same command through the
//!   in-process command service: `ratio` = accepted HTTP/in-process commands
//!   per second. Each side works on its own half of the sites, so neither
//!   finds the other's longer streams. Tasks share sites, so some commands
//!   exhaust their retries
//!   (409 `contended`, `Contended` in process): counted, not fatal.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context as _;
use rand::{Rng as _, SeedableRng as _};
use shareledger_commands::{CommandError, Issued, Service};
use shareledger_core::catalog::{
    AccessLevel, Directions, Name, ObjectField, ObjectId, ObjectKind, Role, ScorecardId, SeatLimit,
    SiteCode, SiteId, UserId, Username,
};
use shareledger_core::connection::{ApproveConnection, RequestConnection, ShareScorecard};
use shareledger_core::content::{
    ChangeObjectField, CreateObject, CreateScorecard, PlaceObjectOnScorecard,
};
use shareledger_core::site::{AddUser, GrantScorecardAccess, RegisterSite};
use shareledger_events::store::{Sealer, SealerOptions};
use shareledger_events::Actor;
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use shareledger_gateway::server::Server;
use shareledger_gateway::GatewayOptions;
use shareledger_tests::TestDb;
use uuid::Uuid;

use crate::report::{progress, run_timed, Line, Measured, Timing};
use crate::CommonArgs;

pub(crate) struct Size {
    sites: usize,
    users: usize,
    scorecards: usize,
    objects: usize,
    pub(crate) timing: Timing,
}

impl Size {
    pub(crate) fn new(quick: bool) -> Self {
        if quick {
            Self {
                sites: 6,
                users: 10,
                scorecards: 4,
                objects: 5,
                timing: Timing {
                    warmup: Duration::from_secs(1),
                    window: Duration::from_secs(3),
                },
            }
        } else {
            Self {
                sites: 20,
                users: 40,
                scorecards: 10,
                objects: 10,
                timing: Timing {
                    warmup: Duration::from_secs(2),
                    window: Duration::from_secs(10),
                },
            }
        }
    }
}

pub(crate) struct SiteWorld {
    pub(crate) id: SiteId,
    admin: UserId,
    pub(crate) admin_token: String,
    users: Vec<(UserId, String)>,
    scorecards: Vec<ScorecardId>,
    pub(crate) objects: Vec<ObjectId>,
}

pub(crate) fn operator() -> Issued {
    Issued {
        actor: Actor::Operator {
            name: "bench".into(),
        },
        key: Uuid::new_v4(),
    }
}

pub(crate) fn by(site: SiteId, user: UserId) -> Issued {
    Issued {
        actor: Actor::User {
            user_id: user.0,
            site_id: site.0,
        },
        key: Uuid::new_v4(),
    }
}

pub(crate) async fn build(db: &TestDb, size: &Size) -> anyhow::Result<Vec<SiteWorld>> {
    let service = Service::new(db.store());
    let lifetime = Duration::from_secs(86_400);
    let mut sites = Vec::new();
    for s in 0..size.sites {
        let id = SiteId::new();
        service
            .execute(
                &operator(),
                RegisterSite {
                    site_id: id,
                    code: SiteCode::parse(&format!("HTTP{s}"))?,
                    name: Name::parse(&format!("Site {s}"))?,
                    seat_limit: SeatLimit::new(10_000)?,
                    parent: None,
                },
            )
            .await?;
        let admin = UserId::new();
        service
            .execute(
                &operator(),
                AddUser {
                    site_id: id,
                    user_id: admin,
                    username: Username::parse(&format!("admin{s}@bench"))?,
                    name: Name::parse("Admin")?,
                    role: Role::Administration,
                    email: None,
                },
            )
            .await?;
        let mut scorecards = Vec::new();
        let mut objects = Vec::new();
        for c in 0..size.scorecards {
            let sc = ScorecardId::new();
            service
                .execute(
                    &by(id, admin),
                    CreateScorecard {
                        site_id: id,
                        scorecard_id: sc,
                        name: Name::parse(&format!("Scorecard {c}"))?,
                    },
                )
                .await?;
            for o in 0..size.objects {
                let object = ObjectId::new();
                service
                    .execute(
                        &by(id, admin),
                        CreateObject {
                            site_id: id,
                            object_id: object,
                            kind: ObjectKind::Indicator,
                            name: Name::parse(&format!("Indicator {c}.{o}"))?,
                            container: None,
                        },
                    )
                    .await?;
                service
                    .execute(
                        &by(id, admin),
                        PlaceObjectOnScorecard {
                            site_id: id,
                            object_id: object,
                            scorecard_id: sc,
                        },
                    )
                    .await?;
                objects.push(object);
            }
            scorecards.push(sc);
        }
        let mut users = Vec::new();
        for u in 0..size.users {
            let user = UserId::new();
            service
                .execute(
                    &by(id, admin),
                    AddUser {
                        site_id: id,
                        user_id: user,
                        username: Username::parse(&format!("user{u}@site{s}"))?,
                        name: Name::parse("User")?,
                        role: Role::Presenter,
                        email: None,
                    },
                )
                .await?;
            service
                .execute(
                    &by(id, admin),
                    GrantScorecardAccess {
                        site_id: id,
                        user_id: user,
                        scorecard_id: scorecards[u % scorecards.len()],
                        level: AccessLevel::Browser,
                        owner_site: None,
                    },
                )
                .await?;
            let token = auth::issue(
                db.pool(),
                TokenRequest {
                    kind: TokenKind::User,
                    site: Some(id),
                    user: Some(user),
                    name: format!("bench {s}.{u}"),
                    lifetime,
                },
            )
            .await?;
            users.push((user, token.token));
        }
        let admin_token = auth::issue(
            db.pool(),
            TokenRequest {
                kind: TokenKind::User,
                site: Some(id),
                user: Some(admin),
                name: format!("bench admin {s}"),
                lifetime,
            },
        )
        .await?
        .token;
        sites.push(SiteWorld {
            id,
            admin,
            admin_token,
            users,
            scorecards,
            objects,
        });
        progress(&format!("http world: site {}/{}", s + 1, size.sites));
    }
    // A ring of links, both ways; each site shares half its scorecards.
    for s in 0..sites.len() {
        let (a, b) = (&sites[s], &sites[(s + 1) % sites.len()]);
        let code = SiteCode::parse(&format!("HTTP{}", (s + 1) % sites.len()))?;
        service
            .execute(
                &by(a.id, a.admin),
                RequestConnection {
                    site_id: a.id,
                    partner_code: code,
                    directions: Directions::Both,
                },
            )
            .await?;
        service
            .execute(
                &by(b.id, b.admin),
                ApproveConnection {
                    site_id: b.id,
                    partner: a.id,
                },
            )
            .await?;
        for sc in a.scorecards.iter().step_by(2) {
            service
                .execute(
                    &by(a.id, a.admin),
                    ShareScorecard {
                        site_id: a.id,
                        partner: b.id,
                        scorecard_id: *sc,
                    },
                )
                .await?;
        }
    }
    Ok(sites)
}

/// Runs `http_trivial`, `http_check` and `http_commands` at each concurrency.
pub async fn run(args: CommonArgs) -> anyhow::Result<()> {
    let size = Size::new(args.quick);
    let db = TestDb::with_pool_size(24).await;
    let sites = Arc::new(build(&db, &size).await?);
    let server = Server::start(
        db.pool().clone(),
        "127.0.0.1:0".parse()?,
        GatewayOptions::default(),
    )
    .await?;
    let base = Arc::new(server.url());
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    // Reads first, on a settled server: the read models, the consequence
    // worker and the sealer have caught up with the world (and later with
    // the commands), so no background work lands in one side's window only.
    settle(&server).await?;
    for concurrency in [8, 32] {
        let (trivial, check) = reads(&client, &base, &sites, concurrency, size.timing).await?;
        let trivial_rate = trivial.ops as f64 / trivial.window.as_secs_f64();
        Line::new(&format!("http_trivial_c{concurrency}"))
            .count("requests_per_s", trivial_rate)
            .ms("p50_ms", trivial.latency_ms(0.5))
            .ms("p99_ms", trivial.latency_ms(0.99))
            .ratio(trivial_rate, trivial_rate);
        let check_rate = check.ops as f64 / check.window.as_secs_f64();
        Line::new(&format!("http_check_c{concurrency}"))
            .count("requests_per_s", check_rate)
            .ms("p50_ms", check.latency_ms(0.5))
            .ms("p99_ms", check.latency_ms(0.99))
            .count("trivial_per_s", trivial_rate)
            .ms("trivial_p99_ms", trivial.latency_ms(0.99))
            .ratio(check_rate, trivial_rate);
    }
    for concurrency in [8, 32] {
        // Commands: over HTTP, then in process, each on a settled server.
        settle(&server).await?;
        let over_http = {
            let (client, base, sites) = (client.clone(), Arc::clone(&base), Arc::clone(&sites));
            run_timed("http commands", concurrency, size.timing, move |task| {
                let (client, base, sites) = (client.clone(), Arc::clone(&base), Arc::clone(&sites));
                async move {
                    // The first half of the sites: the in-process side gets
                    // the other half, streams of the same sizes.
                    let half = sites.len() / 2;
                    let site = &sites[task % half];
                    let object = site.objects[rand::random::<usize>() % site.objects.len()];
                    let response = client
                        .post(format!("{base}/v1/commands/ChangeObjectField"))
                        .bearer_auth(&site.admin_token)
                        .header("Idempotency-Key", Uuid::new_v4().to_string())
                        .json(&serde_json::json!({
                            "site_id": site.id,
                            "object_id": object,
                            "field": "analysis",
                            "value": format!("analysis {}", rand::random::<u32>()),
                        }))
                        .send()
                        .await?;
                    let status = response.status();
                    let body = response.text().await?;
                    // 409 `contended`: the retries could not get through
                    // (tasks share sites); counted, not fatal.
                    if status == reqwest::StatusCode::CONFLICT && body.contains("\"contended\"") {
                        return Ok(0);
                    }
                    anyhow::ensure!(status.is_success(), "command {status}: {body}");
                    Ok(1)
                }
            })
            .await?
        };
        settle(&server).await?;
        let service = Service::new(db.store());
        let in_process = {
            let sites = Arc::clone(&sites);
            run_timed(
                "in-process commands",
                concurrency,
                size.timing,
                move |task| {
                    let (service, sites) = (service.clone(), Arc::clone(&sites));
                    async move {
                        let half = sites.len() / 2;
                        let site = &sites[half + task % (sites.len() - half)];
                        let object = site.objects[rand::random::<usize>() % site.objects.len()];
                        let result = service
                            .execute(
                                &by(site.id, site.admin),
                                ChangeObjectField {
                                    site_id: site.id,
                                    object_id: object,
                                    field: ObjectField::Analysis,
                                    value: format!("analysis {}", rand::random::<u32>()),
                                },
                            )
                            .await;
                        match result {
                            Ok(_) => Ok(1),
                            Err(CommandError::Contended { .. }) => Ok(0),
                            Err(e) => Err(e).context("in-process command"),
                        }
                    }
                },
            )
            .await?
        };
        // Accepted commands per second (a contended one wrote nothing).
        let http_rate = over_http.events as f64 / over_http.window.as_secs_f64();
        let inproc_rate = in_process.events as f64 / in_process.window.as_secs_f64();
        Line::new(&format!("http_commands_c{concurrency}"))
            .count("requests_per_s", http_rate)
            .ms("p50_ms", over_http.latency_ms(0.5))
            .ms("p99_ms", over_http.latency_ms(0.99))
            .text("contended", over_http.ops - over_http.events)
            .count("in_process_per_s", inproc_rate)
            .ms("in_process_p99_ms", in_process.latency_ms(0.99))
            .text("in_process_contended", in_process.ops - in_process.events)
            .ratio(http_rate, inproc_rate);
    }
    server.shutdown().await?;
    Ok(())
}

/// How many alternating rounds of trivial requests and checks a
/// concurrency level is measured in: drift (the machine, the allocator,
/// the connection pool) falls on both sides alike.
const ROUNDS: u32 = 6;

/// Trivial requests and checks at `concurrency`, measured in alternating
/// rounds that add up to `timing.window` each. Both sides send the same
/// requests (a random user's token, a random check's query string); only
/// the path differs: `/health` ignores the token and the query, so the
/// difference is the check's own work on the server (the token, the
/// parameters, the index, the JSON answer).
async fn reads(
    client: &reqwest::Client,
    base: &Arc<String>,
    sites: &Arc<Vec<SiteWorld>>,
    concurrency: usize,
    timing: Timing,
) -> anyhow::Result<(Measured, Measured)> {
    let round = Timing {
        warmup: timing.warmup / ROUNDS,
        window: timing.window / ROUNDS,
    };
    let mut trivial: Option<Measured> = None;
    let mut check: Option<Measured> = None;
    for r in 0..ROUNDS {
        // Alternate who goes first, so neither always follows the other.
        for path in if r % 2 == 0 {
            ["/health", "/v1/access/check"]
        } else {
            ["/v1/access/check", "/health"]
        } {
            let (client, base, sites) = (client.clone(), Arc::clone(base), Arc::clone(sites));
            let label = if path == "/health" {
                "http trivial"
            } else {
                "http check"
            };
            let measured = run_timed(label, concurrency, round, move |task| {
                let (client, base, sites) = (client.clone(), Arc::clone(&base), Arc::clone(&sites));
                async move {
                    let (token, query) = question(&sites, task);
                    let response = client
                        .get(format!("{base}{path}?{query}"))
                        .bearer_auth(token)
                        .send()
                        .await?;
                    let status = response.status();
                    // 404 is the answer for a partner's unshared target.
                    anyhow::ensure!(
                        status.is_success() || status == reqwest::StatusCode::NOT_FOUND,
                        "{path} {status}"
                    );
                    response.bytes().await?;
                    Ok(1)
                }
            })
            .await?;
            let side = if path == "/health" {
                &mut trivial
            } else {
                &mut check
            };
            match side {
                Some(total) => total.add(measured),
                None => *side = Some(measured),
            }
        }
    }
    Ok((
        trivial.context("no trivial round ran")?,
        check.context("no check round ran")?,
    ))
}

/// A random check by a random user: on a target of the user's site or of
/// the previous one (shared with it or not). The token and the query string.
pub(crate) fn question(sites: &[SiteWorld], task: usize) -> (&str, String) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(task as u64 ^ rand::random::<u64>());
    let s = rng.gen_range(0..sites.len());
    let site = &sites[s];
    let (_, token) = &site.users[rng.gen_range(0..site.users.len())];
    let owner = if rng.gen_bool(0.5) {
        site
    } else {
        &sites[(s + sites.len() - 1) % sites.len()]
    };
    let query = if rng.gen_bool(0.3) {
        let id = owner.scorecards[rng.gen_range(0..owner.scorecards.len())].0;
        format!("target_type=scorecard&target_id={id}&action=view")
    } else {
        let id = owner.objects[rng.gen_range(0..owner.objects.len())].0;
        format!("target_type=object&target_id={id}&action=view")
    };
    (token, query)
}

/// Waits until everything that follows the log in the server (the access
/// index, the read models, the consequence worker, the sealer) has reached
/// its head.
pub(crate) async fn settle(server: &Server) -> anyhow::Result<()> {
    let state = server.state();
    let sealer = Sealer::new(state.store().clone(), SealerOptions::default());
    let limit = Duration::from_secs(600);
    let started = std::time::Instant::now();
    loop {
        let head = state.store().head_position().await?;
        state.access().wait_for(head, limit).await?;
        state.runtime().wait_for(head, limit).await?;
        let sealed = sealer.status().await?;
        // The worker may have appended consequences meanwhile: done when
        // nothing moved.
        if sealed.sealed >= head && state.store().head_position().await? == head {
            return Ok(());
        }
        anyhow::ensure!(started.elapsed() < limit, "the server did not settle");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
}
