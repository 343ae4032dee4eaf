//! `feed`: how soon the changes feed delivers a committed event to its
//! clients, with `CLIENTS` clients connected at once, by Server-Sent Events
//! against the same clients long-polling (`GET /v1/changes?wait=5`), in
//! one run.
//!
//! The server (the real service) and the clients run in this process on
//! loopback. An operator's clients follow the whole feed. A writer sends
//! `COMMANDS` commands over HTTP one after another, `PACE` apart, and notes
//! when each command's answer (its commit) arrived and the position it
//! returned; every client notes when the event of that position reached it.
//! Latency = arrival at a client − the command's answer (0 when the event
//! arrived first: the feed can beat the answer home), over every (client,
//! command) pair.
//!
//! * `feed_latency`: SSE p50 and p99 with `CLIENTS` connected clients;
//!   `ratio` = long-poll p99 ÷ SSE p99 (above 1: SSE delivers sooner);
//!   `missed` counts (client, command) pairs never delivered within 10 s
//!   (must be 0).

use std::time::{Duration, Instant};

use anyhow::Context as _;
use shareledger_commands::{Issued, Service};
use shareledger_core::catalog::{Name, Role, SeatLimit, SiteCode, SiteId, UserId, Username};
use shareledger_core::site::{AddUser, RegisterSite};
use shareledger_events::Actor;
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use shareledger_gateway::server::Server;
use shareledger_gateway::GatewayOptions;
use shareledger_tests::TestDb;
use tokio::sync::watch;
use uuid::Uuid;

use crate::report::{progress, Line};
use crate::CommonArgs;

/// Clients connected at once.
const CLIENTS: usize = 100;
/// The time between two commands.
const PACE: Duration = Duration::from_millis(20);

/// Each position that reached one client, and how long after it was
/// recorded.
type Arrivals = Vec<(u64, Duration)>;

/// How long ago an event of the feed (JSON) was recorded.
fn age(event: &serde_json::Value) -> anyhow::Result<Duration> {
    let recorded: chrono::DateTime<chrono::Utc> = event["recorded_at"]
        .as_str()
        .context("recorded_at")?
        .parse()?;
    Ok((chrono::Utc::now() - recorded).to_std().unwrap_or_default())
}

/// When a client stops: once it has `last`, or at `deadline`.
#[derive(Debug, Clone, Copy)]
struct Stop {
    last: u64,
    deadline: Instant,
}

/// Whether a client that has seen up to `seen` stops now.
fn stops(stop: &watch::Receiver<Option<Stop>>, seen: u64) -> bool {
    stop.borrow()
        .is_some_and(|s| seen >= s.last || Instant::now() >= s.deadline)
}

/// A tick to look at the deadline while nothing arrives.
const TICK: Duration = Duration::from_millis(100);

/// Runs `feed_latency`.
pub async fn run(args: CommonArgs) -> anyhow::Result<()> {
    let commands = if args.quick { 50 } else { 300 };
    let db = TestDb::with_pool_size(24).await;
    let server = Server::start(
        db.pool().clone(),
        "127.0.0.1:0".parse()?,
        GatewayOptions::default(),
    )
    .await?;
    let base = server.url();
    let (site, admin_token, operator_token) = world(&db).await?;
    let client = reqwest::Client::builder()
        .pool_max_idle_per_host(256)
        .build()?;
    let mut results = Vec::new();
    for sse in [true, false] {
        let kind = if sse { "SSE" } else { "long poll" };
        progress(&format!("feed: {CLIENTS} {kind} clients"));
        let head = head(&client, &base, &operator_token).await?;
        let (stop_tx, stop) = watch::channel(None);
        let mut clients = Vec::new();
        let (ready_tx, mut ready) = tokio::sync::mpsc::channel::<()>(CLIENTS);
        for _ in 0..CLIENTS {
            let (client, base, token) = (client.clone(), base.clone(), operator_token.clone());
            let (stop, ready) = (stop.clone(), ready_tx.clone());
            clients.push(tokio::spawn(async move {
                if sse {
                    follow_sse(&client, &base, &token, head, stop, ready).await
                } else {
                    follow_long_poll(&client, &base, &token, head, stop, ready).await
                }
            }));
        }
        for _ in 0..CLIENTS {
            ready.recv().await.context("a client started")?;
        }
        // The writer.
        let mut answered: Vec<u64> = Vec::with_capacity(commands);
        for n in 0..commands {
            let started = Instant::now();
            let response = client
                .post(format!("{base}/v1/commands/RequireTwoFactor"))
                .bearer_auth(&admin_token)
                .header("Idempotency-Key", Uuid::new_v4().to_string())
                .json(&serde_json::json!({"site_id": site, "required": n % 2 == 0}))
                .send()
                .await?;
            let status = response.status();
            let body: serde_json::Value = response.json().await?;
            anyhow::ensure!(status.is_success(), "command {status}: {body}");
            let position = body["position"].as_u64().context("the answer's position")?;
            answered.push(position);
            tokio::time::sleep(PACE.saturating_sub(started.elapsed())).await;
        }
        let last = answered.last().copied().unwrap_or(0);
        // Every client stops once it has the last event, or after 10 s.
        let _ = stop_tx.send(Some(Stop {
            last,
            deadline: Instant::now() + Duration::from_secs(10),
        }));
        let mut arrivals: Vec<Arrivals> = Vec::new();
        for handle in clients {
            arrivals.push(handle.await??);
        }
        let mut latencies: Vec<Duration> = Vec::new();
        let mut missed = 0u64;
        for got in &arrivals {
            let at: std::collections::HashMap<u64, Duration> = got.iter().copied().collect();
            for position in &answered {
                match at.get(position) {
                    Some(latency) => latencies.push(*latency),
                    None => missed += 1,
                }
            }
        }
        latencies.sort_unstable();
        let quantile = |q: f64| -> f64 {
            latencies
                .get(((latencies.len() as f64 - 1.0) * q).round() as usize)
                .map_or(f64::NAN, |d| d.as_secs_f64() * 1_000.0)
        };
        results.push((quantile(0.5), quantile(0.99), missed, last));
    }
    let (sse_p50, sse_p99, sse_missed, _) = results[0];
    let (poll_p50, poll_p99, poll_missed, _) = results[1];
    Line::new("feed_latency")
        .count("clients", CLIENTS as f64)
        .count("commands", commands as f64)
        .ms("p50_ms", sse_p50)
        .ms("p99_ms", sse_p99)
        .count("missed", sse_missed as f64)
        .ms("long_poll_p50_ms", poll_p50)
        .ms("long_poll_p99_ms", poll_p99)
        .count("long_poll_missed", poll_missed as f64)
        .ratio(poll_p99, sse_p99);
    server.shutdown().await?;
    Ok(())
}

/// One site with an admin; the admin's and an operator's tokens.
async fn world(db: &TestDb) -> anyhow::Result<(SiteId, String, String)> {
    let service = Service::new(db.store());
    let operator = || Issued {
        actor: Actor::Operator {
            name: "bench".into(),
        },
        key: Uuid::new_v4(),
    };
    let site = SiteId::new();
    let admin = UserId::new();
    service
        .execute(
            &operator(),
            RegisterSite {
                site_id: site,
                code: SiteCode::parse("FEED")?,
                name: Name::parse("Feed")?,
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
                username: Username::parse("admin@feed.org")?,
                name: Name::parse("Admin")?,
                role: Role::Administration,
                email: None,
            },
        )
        .await?;
    let lifetime = Duration::from_secs(86_400);
    let token = |kind, site, user, name: &str| TokenRequest {
        kind,
        site,
        user,
        name: name.into(),
        lifetime,
    };
    let admin_token = auth::issue(
        db.pool(),
        token(TokenKind::User, Some(site), Some(admin), "feed admin"),
    )
    .await?
    .token;
    let operator_token = auth::issue(db.pool(), token(TokenKind::Operator, None, None, "feed"))
        .await?
        .token;
    Ok((site, admin_token, operator_token))
}

async fn head(client: &reqwest::Client, base: &str, token: &str) -> anyhow::Result<u64> {
    let status: serde_json::Value = client
        .get(format!("{base}/v1/log/status"))
        .bearer_auth(token)
        .send()
        .await?
        .json()
        .await?;
    status["head_position"]
        .as_u64()
        .context("the log's head position")
}

/// A client following the feed by Server-Sent Events from `after`: when
/// each position arrived, until `stop`.
async fn follow_sse(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    after: u64,
    stop: watch::Receiver<Option<Stop>>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<Arrivals> {
    let mut seen = after;
    let mut response = client
        .get(format!("{base}/v1/changes?after={after}"))
        .bearer_auth(token)
        .header("accept", "text/event-stream")
        .send()
        .await?;
    anyhow::ensure!(response.status().is_success(), "SSE {}", response.status());
    ready.send(()).await?;
    let mut arrivals = Arrivals::new();
    let mut buffer = String::new();
    loop {
        if stops(&stop, seen) {
            return Ok(arrivals);
        }
        let Ok(chunk) = tokio::time::timeout(TICK, response.chunk()).await else {
            continue;
        };
        let Some(chunk) = chunk? else {
            return Ok(arrivals);
        };
        buffer.push_str(std::str::from_utf8(&chunk)?);
        while let Some(end) = buffer.find("\n\n") {
            let block: String = buffer.drain(..end + 2).collect();
            let field = |name: &str| {
                block
                    .lines()
                    .find_map(|line| line.strip_prefix(name))
                    .map(str::trim)
            };
            if let (Some(id), Some(data)) = (field("id:"), field("data:")) {
                let id: u64 = id.parse()?;
                arrivals.push((id, age(&serde_json::from_str(data)?)?));
                seen = seen.max(id);
            }
        }
    }
}

/// A client following the feed by long polls from `after`: when each
/// position arrived, until `stop`.
async fn follow_long_poll(
    client: &reqwest::Client,
    base: &str,
    token: &str,
    mut after: u64,
    stop: watch::Receiver<Option<Stop>>,
    ready: tokio::sync::mpsc::Sender<()>,
) -> anyhow::Result<Arrivals> {
    ready.send(()).await?;
    let mut arrivals = Arrivals::new();
    loop {
        if stops(&stop, after) {
            return Ok(arrivals);
        }
        // A poll waits at most 1 s here, so the deadline is looked at.
        let response = client
            .get(format!("{base}/v1/changes?after={after}&wait=1&limit=1000"))
            .bearer_auth(token)
            .send()
            .await?;
        let page: serde_json::Value = response.json().await?;
        for event in page["events"].as_array().context("a page")? {
            arrivals.push((
                event["position"].as_u64().context("a position")?,
                age(event)?,
            ));
        }
        after = page["next"].as_u64().context("next")?;
    }
}
