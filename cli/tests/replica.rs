//! Reading from a PostgreSQL streaming replica (issue 19, item 3), with the
//! real binary on a real replica: a private primary cluster and a hot
//! standby made from it by `pg_basebackup`, on two ports of this machine.
//!
//! One `serve` runs on the primary (it holds the leased parts); another is
//! told `--replica-url`: it follows the log and reads the read models on
//! the replica and sends commands to the primary. Its answers equal the
//! primary process's at the same position, and while the replica does not
//! replay (paused), it never answers from before a write it was told of:
//! a check of a user deactivated on the primary is refused with 503, not
//! allowed, until the replica has replayed the deactivation.

use common::service::{client, must, token_on, Service};
use serde_json::{json, Value};
use shareledger_events::store::PgEventStore;
use shareledger_gateway::auth::TokenKind;
use shareledger_tests::faults::OwnCluster;
use sqlx::PgPool;
use uuid::Uuid;

mod common;

/// `GET path`: status and body, with the body's own `position` (the
/// position the answering process had reached) left out.
async fn get(client: &reqwest::Client, service: &Service, token: &str, path: &str) -> (u16, Value) {
    let answer = client
        .get(format!("{}{path}", service.url))
        .bearer_auth(token)
        .send()
        .await
        .expect("an answer");
    let status = answer.status().as_u16();
    let mut body: Value = answer.json().await.unwrap_or(Value::Null);
    if let Some(fields) = body.as_object_mut() {
        fields.remove("position");
    }
    (status, body)
}

async fn pool(url: &str) -> PgPool {
    PgEventStore::pool_options()
        .max_connections(2)
        .connect(url)
        .await
        .expect("connect")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_process_reading_a_streaming_replica_answers_as_the_primary_does_and_never_before_a_known_write(
) {
    let primary = OwnCluster::start().expect("a private primary cluster");
    let replica = OwnCluster::start_replica(&primary).expect("a streaming replica of it");
    let (primary_url, replica_url) = (primary.url("postgres"), replica.url("postgres"));
    let client = client();

    let writer = Service::start_on(&primary_url, &[]).await;
    writer.wait_ready(&client).await;
    let reader = Service::start_on(&primary_url, &["--replica-url", &replica_url]).await;
    let ready = reader.wait_ready(&client).await;
    // The replica's process runs no leased part: it stands by for each.
    for part in ready["parts"].as_array().expect("parts") {
        assert_ne!(part["lease"], json!("holder"), "{ready:#}");
    }
    let parts_standing_by = ready["parts"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|p| p["lease"] == json!("standby"))
        .count();
    assert!(parts_standing_by >= 7, "{ready:#}");

    let primary_pool = pool(&primary_url).await;
    let replica_pool = pool(&replica_url).await;
    let in_recovery: bool = sqlx::query_scalar("SELECT pg_is_in_recovery()")
        .fetch_one(&replica_pool)
        .await
        .unwrap();
    assert!(in_recovery, "the replica is a hot standby");
    let operator = token_on(&primary_pool, TokenKind::Operator, None, None).await;

    // Commands sent to the replica's process land on the primary.
    let site = Uuid::new_v4();
    let scorecard = Uuid::new_v4();
    must(
        &client,
        &reader,
        &operator,
        "RegisterSite",
        json!({"site_id": site, "code": "REPL", "name": "Replicated", "seat_limit": 100}),
    )
    .await;
    must(
        &client,
        &reader,
        &operator,
        "CreateScorecard",
        json!({"site_id": site, "scorecard_id": scorecard, "name": "Outcomes"}),
    )
    .await;
    let mut users = Vec::new();
    let mut position = 0;
    for n in 0..6 {
        let user = Uuid::new_v4();
        let service = if n % 2 == 0 { &reader } else { &writer };
        must(&client, service, &operator, "AddUser",
            json!({"site_id": site, "user_id": user, "username": format!("u{n}@repl.example"), "name": format!("User {n}"), "role": "presenter"})).await;
        position = must(&client, service, &operator, "GrantScorecardAccess",
            json!({"site_id": site, "user_id": user, "scorecard_id": scorecard, "level": "browser"})).await;
        users.push(user);
    }

    // The same questions, with the last write's position, answer the same
    // on both processes: the access index and the SQL read models.
    let check = |user: Uuid, position: Option<u64>| {
        let token = position.map_or(String::new(), |p| format!("&min_position={p}"));
        format!(
            "/v1/access/check?user_id={user}&target_type=scorecard&target_id={scorecard}&action=view{token}"
        )
    };
    let mut paths = vec![
        format!("/v1/sites/{site}?min_position={position}"),
        format!("/v1/sites/{site}/scorecards?min_position={position}"),
        format!("/v1/access/viewers?target_type=scorecard&target_id={scorecard}&min_position={position}"),
        format!("/v1/directory?min_position={position}"),
    ];
    for user in &users {
        paths.push(check(*user, Some(position)));
        paths.push(format!(
            "/v1/access/lookup?user_id={user}&min_position={position}"
        ));
        paths.push(format!(
            "/v1/sites/{site}/users/{user}?min_position={position}"
        ));
    }
    for path in &paths {
        let on_primary = get(&client, &writer, &operator, path).await;
        let on_replica = get(&client, &reader, &operator, path).await;
        assert_eq!(on_primary.0, 200, "{path}: {:#}", on_primary.1);
        assert_eq!(on_replica, on_primary, "{path}");
    }

    // The replica stops replaying. A user is deactivated on the primary,
    // through the primary's process.
    sqlx::query("SELECT pg_wal_replay_pause()")
        .execute(&replica_pool)
        .await
        .unwrap();
    let victim = users[0];
    let deactivated = must(
        &client,
        &writer,
        &operator,
        "DeactivateUser",
        json!({"site_id": site, "user_id": victim}),
    )
    .await;
    let (status, body) = get(
        &client,
        &writer,
        &operator,
        &check(victim, Some(deactivated)),
    )
    .await;
    assert_eq!((status, &body["allowed"]), (200, &json!(false)), "{body:#}");
    // The replica's process never answers from before the write: given
    // the write's position, it waits, then answers 503. By then it has
    // heard of the write from the primary (its known head is the
    // primary's), so without a position too: a 503, not an allowed.
    let (status, body) = get(
        &client,
        &reader,
        &operator,
        &check(victim, Some(deactivated)),
    )
    .await;
    assert_eq!(status, 503, "{body:#}");
    let (status, body) = get(&client, &reader, &operator, &check(victim, None)).await;
    assert_eq!(status, 503, "{body:#}");
    let path = format!("/v1/sites/{site}/users/{victim}?min_position={deactivated}");
    let (status, body) = get(&client, &reader, &operator, &path).await;
    assert_eq!(status, 503, "{body:#}");

    // Replay resumes: the same questions answer as on the primary.
    sqlx::query("SELECT pg_wal_replay_resume()")
        .execute(&replica_pool)
        .await
        .unwrap();
    for path in [check(victim, Some(deactivated)), path] {
        let on_primary = get(&client, &writer, &operator, &path).await;
        let on_replica = get(&client, &reader, &operator, &path).await;
        assert_eq!(on_replica, on_primary, "{path}");
    }
    let status = reader.log_status(&client, &operator).await;
    assert_eq!(status["reads_from"], json!("replica"), "{status:#}");

    reader.kill_9().await;
    writer.kill_9().await;
    primary_pool.close().await;
    replica_pool.close().await;
    drop(replica);
    drop(primary);
}
