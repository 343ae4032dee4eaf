//! `console`: the console's pages against the API calls they are built on,
//! in the same run, on the same server.
//!
//! Two worlds, each built through the command service before timing: the
//! `demo` size (a hub site with 3 users and 4 partners, as `shareledger
//! demo`) and the `large` size (10,000 users and 1,000 partners; `--quick`
//! makes it 2,000 and 200). The hub has 10 scorecards of 5 objects; every
//! partner is connected both ways and is shared one of them.
//!
//! For each page, three requests alternate, one at a time, on keep-alive
//! connections, over loopback (the same HTTP cost on every side):
//!
//! * the page (`page_p50_ms`, p99);
//! * the API call it is built on, the one that grows with the world, asked
//!   for what the console shows (200 links, 50 users, …): `api_p50_ms`,
//!   and `one_call_ratio` = API ÷ page;
//! * every API call the page makes, with the same parameters, sent at once
//!   as a client building the page itself would (Partner Connect: the
//!   site, connections, pending requests, shares, scorecards and the
//!   directory): `answers_p50_ms`, and `ratio` = answers ÷ page. The goal
//!   is at least 0.5: rendering costs at most as much as the answers it
//!   renders.

use std::time::{Duration, Instant};

use anyhow::Context as _;
use shareledger_commands::Service;
use shareledger_core::catalog::{
    Directions, Name, ObjectId, ObjectKind, Role, ScorecardId, SeatLimit, SiteCode, SiteId, UserId,
    Username,
};
use shareledger_core::connection::{ApproveConnection, RequestConnection, ShareScorecard};
use shareledger_core::content::{CreateObject, CreateScorecard, PlaceObjectOnScorecard};
use shareledger_core::site::{AddUser, ImportUsers, RegisterSite};
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use shareledger_gateway::server::Server;
use shareledger_gateway::GatewayOptions;
use shareledger_tests::TestDb;

use crate::http::{by, operator};
use crate::report::{progress, Line};
use crate::CommonArgs;

/// Rows per `ImportUsers` (the command's own limit is 500).
const IMPORT_BATCH: usize = 500;

struct World {
    hub: SiteId,
    admin: UserId,
    admin_token: String,
    auditor_token: String,
}

async fn site(service: &Service, code: &str, seats: u32) -> anyhow::Result<(SiteId, UserId)> {
    let id = SiteId::new();
    service
        .execute(
            &operator(),
            RegisterSite {
                site_id: id,
                code: SiteCode::parse(code)?,
                name: Name::parse(&format!("{code} site"))?,
                seat_limit: SeatLimit::new(seats)?,
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
                username: Username::parse(&format!("admin@{}.org", code.to_lowercase()))?,
                name: Name::parse("Admin")?,
                role: Role::Administration,
                email: None,
            },
        )
        .await?;
    Ok((id, admin))
}

async fn build(db: &TestDb, users: usize, partners: usize) -> anyhow::Result<World> {
    let service = Service::new(db.store());
    let (hub, admin) = site(&service, "HUB", 100_000).await?;
    let mut scorecards = Vec::new();
    for c in 0..10 {
        let sc = ScorecardId::new();
        service
            .execute(
                &by(hub, admin),
                CreateScorecard {
                    site_id: hub,
                    scorecard_id: sc,
                    name: Name::parse(&format!("Scorecard {c}"))?,
                },
            )
            .await?;
        for o in 0..5 {
            let object = ObjectId::new();
            service
                .execute(
                    &by(hub, admin),
                    CreateObject {
                        site_id: hub,
                        object_id: object,
                        kind: ObjectKind::Indicator,
                        name: Name::parse(&format!("Indicator {c}.{o}"))?,
                        container: None,
                    },
                )
                .await?;
            service
                .execute(
                    &by(hub, admin),
                    PlaceObjectOnScorecard {
                        site_id: hub,
                        object_id: object,
                        scorecard_id: sc,
                    },
                )
                .await?;
        }
        scorecards.push(sc);
    }
    let others = users.saturating_sub(1);
    for batch in (0..others).collect::<Vec<_>>().chunks(IMPORT_BATCH) {
        let mut csv = String::from("username,name,role,email\n");
        for u in batch {
            csv.push_str(&format!(
                "user{u}@hub.org,Person {u},presenter,user{u}@hub.org\n"
            ));
        }
        service
            .execute(&by(hub, admin), ImportUsers { site_id: hub, csv })
            .await?;
    }
    for p in 0..partners {
        if p % 100 == 0 && partners > 100 {
            progress(&format!("partner {p} of {partners}"));
        }
        let code = format!("P{p}");
        let (partner, partner_admin) = site(&service, &code, 10).await?;
        service
            .execute(
                &by(hub, admin),
                RequestConnection {
                    site_id: hub,
                    partner_code: SiteCode::parse(&code)?,
                    directions: Directions::Both,
                },
            )
            .await?;
        service
            .execute(
                &by(partner, partner_admin),
                ApproveConnection {
                    site_id: partner,
                    partner: hub,
                },
            )
            .await?;
        service
            .execute(
                &by(hub, admin),
                ShareScorecard {
                    site_id: hub,
                    partner,
                    scorecard_id: scorecards[p % scorecards.len()],
                },
            )
            .await?;
    }
    let lifetime = Duration::from_secs(86_400);
    let admin_token = auth::issue(
        db.pool(),
        TokenRequest {
            kind: TokenKind::User,
            site: Some(hub),
            user: Some(admin),
            name: "bench".into(),
            lifetime,
        },
    )
    .await?
    .token;
    let auditor_token = auth::issue(
        db.pool(),
        TokenRequest {
            kind: TokenKind::Auditor,
            site: Some(hub),
            user: None,
            name: "bench auditor".into(),
            lifetime,
        },
    )
    .await?
    .token;
    Ok(World {
        hub,
        admin,
        admin_token,
        auditor_token,
    })
}

/// A page measured: its name, its address, whose session asks it
/// (`admin` or `auditor`), the API call that grows with the world and that
/// call's name, and every API call the page makes.
type Case<'a> = (&'a str, &'a str, &'a str, String, &'a str, Vec<String>);

/// Signs in to the console and returns the session cookie.
async fn sign_in(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<String> {
    let answer = client
        .post(format!("{base}/sign-in"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&next=%2F"))
        .send()
        .await?;
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sl_session="))
        .and_then(|v| v.split(';').next())
        .map(str::to_owned)
        .context("the sign-in sets a session cookie")
}

/// The round trip of one GET, checked for success.
async fn timed(
    client: &reqwest::Client,
    url: &str,
    header: (&str, &str),
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let answer = client.get(url).header(header.0, header.1).send().await?;
    let status = answer.status();
    let body = answer.bytes().await?;
    let elapsed = started.elapsed();
    anyhow::ensure!(
        status.is_success(),
        "GET {url}: {status}: {}",
        String::from_utf8_lossy(&body)
    );
    anyhow::ensure!(!body.is_empty(), "GET {url}: an empty answer");
    Ok(elapsed)
}

fn quantile(samples: &mut [Duration], q: f64) -> f64 {
    samples.sort_unstable();
    let i = ((samples.len() as f64 - 1.0) * q).round() as usize;
    samples[i].as_secs_f64() * 1000.0
}

pub async fn run(args: CommonArgs) -> anyhow::Result<()> {
    let (large_users, large_partners) = if args.quick {
        (2_000, 200)
    } else {
        (10_000, 1_000)
    };
    let rounds = if args.quick { 40 } else { 200 };
    for (label, users, partners) in [("demo", 3, 4), ("large", large_users, large_partners)] {
        progress(&format!(
            "building the {label} world: {users} users, {partners} partners"
        ));
        let db = TestDb::with_pool_size(16).await;
        let world = build(&db, users, partners).await?;
        let server = Server::start(
            db.pool().clone(),
            "127.0.0.1:0".parse()?,
            GatewayOptions::default(),
        )
        .await?;
        crate::http::settle(&server).await?;
        let base = server.url();
        // Redirects are not followed: the sign-in's answer carries the cookie.
        let client = reqwest::Client::builder()
            .redirect(reqwest::redirect::Policy::none())
            .build()?;
        let admin_cookie = sign_in(&client, &base, &world.admin_token).await?;
        let auditor_cookie = sign_in(&client, &base, &world.auditor_token).await?;
        let admin_bearer = format!("Bearer {}", world.admin_token);
        let auditor_bearer = format!("Bearer {}", world.auditor_token);
        let hub = world.hub;
        let site = format!("/v1/sites/{hub}");
        // Each page: its address, whose, the API call that grows with the
        // world (named), and every call the page makes.
        let pairs: [Case; 5] = [
            (
                "partners",
                "/partners",
                "admin",
                format!("{site}/connections?limit=200"),
                "connections",
                vec![
                    site.clone(),
                    format!("{site}/connections?limit=200"),
                    format!("{site}/pending-requests"),
                    format!("{site}/shared-scorecards"),
                    format!("{site}/scorecards?limit=1000"),
                    "/v1/directory?limit=20".to_owned(),
                ],
            ),
            (
                "users",
                "/users",
                "admin",
                format!("{site}/users?limit=50"),
                "users",
                vec![site.clone(), format!("{site}/users?limit=50")],
            ),
            (
                "scorecards",
                "/scorecards",
                "admin",
                format!("{site}/scorecards?limit=1000"),
                "scorecards",
                vec![
                    format!("{site}/scorecards?limit=1000"),
                    format!("{site}/shared-scorecards"),
                    format!("{site}/shared-with?limit=1000"),
                    format!("{site}/objects?limit=1000"),
                    format!("{site}/relationships?limit=1000"),
                ],
            ),
            (
                "access",
                "/access",
                "admin",
                format!("/v1/access/lookup?user_id={}&limit=500", world.admin),
                "lookup",
                vec![format!(
                    "/v1/access/lookup?user_id={}&limit=500",
                    world.admin
                )],
            ),
            (
                "audit",
                "/audit",
                "auditor",
                format!("/v1/audit/timeline/sites/{hub}?limit=50"),
                "site_timeline",
                vec![format!("/v1/audit/timeline/sites/{hub}?limit=50")],
            ),
        ];
        for (name, page, who, api, api_name, all) in pairs {
            let (cookie, bearer) = if who == "admin" {
                (&admin_cookie, &admin_bearer)
            } else {
                (&auditor_cookie, &auditor_bearer)
            };
            let page_url = format!("{base}{page}");
            let api_url = format!("{base}{api}");
            let all_urls: Vec<String> = all.iter().map(|a| format!("{base}{a}")).collect();
            let answers = || async {
                let started = Instant::now();
                futures::future::try_join_all(
                    all_urls
                        .iter()
                        .map(|url| timed(&client, url, ("authorization", bearer))),
                )
                .await?;
                Ok::<_, anyhow::Error>(started.elapsed())
            };
            // One of each first: connections opened, caches warm.
            timed(&client, &page_url, ("cookie", cookie)).await?;
            timed(&client, &api_url, ("authorization", bearer)).await?;
            answers().await?;
            let (mut pages, mut apis, mut alls) = (Vec::new(), Vec::new(), Vec::new());
            for _ in 0..rounds {
                pages.push(timed(&client, &page_url, ("cookie", cookie)).await?);
                apis.push(timed(&client, &api_url, ("authorization", bearer)).await?);
                alls.push(answers().await?);
            }
            let (page_p50, page_p99) = (quantile(&mut pages, 0.5), quantile(&mut pages, 0.99));
            let (api_p50, api_p99) = (quantile(&mut apis, 0.5), quantile(&mut apis, 0.99));
            let (all_p50, all_p99) = (quantile(&mut alls, 0.5), quantile(&mut alls, 0.99));
            Line::new(&format!("console_{name}_{label}"))
                .count("users", users as f64)
                .count("partners", partners as f64)
                .ms("page_p50_ms", page_p50)
                .ms("page_p99_ms", page_p99)
                .ms("api_p50_ms", api_p50)
                .ms("api_p99_ms", api_p99)
                .text("api", api_name)
                .ratio_as("one_call_ratio", api_p50, page_p50)
                .count("answers", all.len() as f64)
                .ms("answers_p50_ms", all_p50)
                .ms("answers_p99_ms", all_p99)
                .ratio(all_p50, page_p50);
        }
        server.shutdown().await?;
    }
    Ok(())
}
