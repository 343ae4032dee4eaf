//! `replicas_replica_reads`: reading your writes through a PostgreSQL
//! streaming replica, against reading them on the primary, in one run.
//!
//! A private primary cluster and a hot standby made from it with
//! `pg_basebackup` (both on this machine); one `serve` on the primary (it
//! holds the leased parts) and one with `--replica-url`. Each round sends
//! `AddUser` to the primary's process and then reads the new user, with
//! the command's position as `min_position`, from one of the two processes
//! (alternately): from the access index (`/v1/access/lookup`) and from a
//! SQL read model (`/v1/sites/{site}/users/{user}`). The figure is the
//! time from the command's answer until the read's answer: what a caller
//! waits to read its own write. Through the replica that includes the
//! replica replaying the WAL (and, for the read model, the primary's
//! process writing it first). `ratio` = the read model's p50 on the
//! primary over its p50 through the replica (1: the replica costs nothing;
//! below 1: the replica's reads wait longer).

use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::{ensure, Context as _};
use serde_json::json;
use shareledger_events::store::PgEventStore;
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use shareledger_tests::faults::OwnCluster;
use uuid::Uuid;

use crate::replicas::Process;
use crate::report::{progress, Line};
use crate::CommonArgs;

/// Times from a command's answer to its read's answer, per reader.
#[derive(Default)]
struct Waits {
    index: Vec<Duration>,
    model: Vec<Duration>,
}

pub(crate) async fn run(binary: &PathBuf, args: CommonArgs) -> anyhow::Result<()> {
    let rounds = if args.quick { 60 } else { 400 };
    progress("replicas_replica_reads: a private primary and a streaming replica of it");
    let primary = OwnCluster::start().context("a private primary cluster")?;
    let replica = primary
        .start_replica()
        .context("a streaming replica (pg_basebackup)")?;
    let (primary_url, replica_url) = (primary.url("postgres"), replica.url("postgres"));
    let writer = Process::start_on(binary, &primary_url, &[]).await?;
    let reader = Process::start_on(binary, &primary_url, &["--replica-url", &replica_url]).await?;
    let pool = PgEventStore::pool_options()
        .max_connections(2)
        .connect(&primary_url)
        .await?;
    let operator = auth::issue(
        &pool,
        TokenRequest {
            kind: TokenKind::Operator,
            site: None,
            user: None,
            name: "replica bench".into(),
            lifetime: Duration::from_secs(3_600),
        },
    )
    .await?
    .token;
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()?;
    let site = Uuid::new_v4();
    let command = |name: &'static str, body: serde_json::Value| {
        let (client, url, token) = (client.clone(), writer.url.clone(), operator.clone());
        async move {
            let answer = client
                .post(format!("{url}/v1/commands/{name}"))
                .bearer_auth(&token)
                .header("idempotency-key", Uuid::new_v4().to_string())
                .json(&body)
                .send()
                .await?;
            let status = answer.status();
            let body: serde_json::Value = answer.json().await?;
            ensure!(status.is_success(), "{name}: {status} {body}");
            body["position"].as_u64().context("a position")
        }
    };
    command(
        "RegisterSite",
        json!({"site_id": site, "code": "REPLBENCH", "name": "Replica bench", "seat_limit": 100_000}),
    )
    .await?;
    let read = |url: String, path: String| {
        let (client, token) = (client.clone(), operator.clone());
        async move {
            let started = Instant::now();
            let answer = client
                .get(format!("{url}{path}"))
                .bearer_auth(&token)
                .send()
                .await?;
            ensure!(answer.status().is_success(), "{path}: {}", answer.status());
            answer.bytes().await?;
            Ok::<_, anyhow::Error>(started.elapsed())
        }
    };
    progress(&format!(
        "replicas_replica_reads: {rounds} writes, each read back"
    ));
    let (mut on_primary, mut on_replica) = (Waits::default(), Waits::default());
    for n in 0..rounds {
        let user = Uuid::new_v4();
        let position = command(
            "AddUser",
            json!({"site_id": site, "user_id": user, "username": format!("u{n}@replica.example"), "name": format!("User {n}"), "role": "presenter"}),
        )
        .await?;
        let (url, waits) = if n % 2 == 0 {
            (&reader.url, &mut on_replica)
        } else {
            (&writer.url, &mut on_primary)
        };
        // One read kind first each round, alternately: the second read
        // would find the first's wait already done.
        let index = format!("/v1/access/lookup?user_id={user}&min_position={position}");
        let model = format!("/v1/sites/{site}/users/{user}?min_position={position}");
        if n % 4 < 2 {
            waits.index.push(read(url.clone(), index).await?);
        } else {
            waits.model.push(read(url.clone(), model).await?);
        }
    }
    let p = |waits: &mut Vec<Duration>, q: f64| {
        waits.sort_unstable();
        let rank = ((waits.len() as f64 * q).ceil() as usize).clamp(1, waits.len());
        waits[rank - 1].as_secs_f64() * 1000.0
    };
    let model_primary = p(&mut on_primary.model, 0.5);
    let model_replica = p(&mut on_replica.model, 0.5);
    Line::new("replicas_replica_reads")
        .text("rounds", rounds)
        .ms("index_p50_ms", p(&mut on_replica.index, 0.5))
        .ms("index_p99_ms", p(&mut on_replica.index, 0.99))
        .ms("model_p50_ms", model_replica)
        .ms("model_p99_ms", p(&mut on_replica.model, 0.99))
        .ms("primary_index_p50_ms", p(&mut on_primary.index, 0.5))
        .ms("primary_index_p99_ms", p(&mut on_primary.index, 0.99))
        .ms("primary_model_p50_ms", model_primary)
        .ms("primary_model_p99_ms", p(&mut on_primary.model, 0.99))
        .ratio(model_primary, model_replica);
    reader.kill_9().await?;
    writer.kill_9().await?;
    pool.close().await;
    drop(replica);
    drop(primary);
    Ok(())
}
