//! Several `shareledger serve` processes (the real binary) on one database
//! (issue 19): each answers from its own index and accepts commands; the
//! parts that must run once (the consequence worker, the sealer, the
//! derived feeds, the read models' writers) run in the one process holding
//! each part's lease; a
//! command's position given to another process as `min_position` reads
//! the write there; and when the holder is killed with SIGKILL another
//! process takes its parts over, within the bound, with every consequence
//! applied exactly once and the chain sealed to the head.

use std::collections::BTreeMap;
use std::time::{Duration, Instant};

use common::service::{client, must, token, Service};
use serde_json::{json, Value};
use shareledger_gateway::auth::TokenKind;
use shareledger_tests::TestDb;
use uuid::Uuid;

mod common;

/// One test at a time: three processes of 17 connections each (their pool
/// and the lease session) per test, on a server that may allow only 100.
static ONE_AT_A_TIME: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// The parts that hold a lease in a default `serve`: the consequence
/// worker, the sealer, the derived feeds and the SQL read models' writers.
const LEASED: [&str; 7] = [
    "consequences",
    "sealer",
    "derived_feeds",
    "dashboards",
    "access_tables",
    "site_contents",
    "timeline",
];

/// Which process (by index) holds each leased part, as their `/ready` say;
/// a part no process holds is absent.
async fn holders(client: &reqwest::Client, services: &[&Service]) -> BTreeMap<String, Vec<usize>> {
    let mut holders: BTreeMap<String, Vec<usize>> = BTreeMap::new();
    for (n, service) in services.iter().enumerate() {
        let ready = service.ready(client).await;
        for part in ready["parts"].as_array().expect("parts") {
            if part["lease"] == json!("holder") && part["state"] != json!("retrying") {
                let name = part["name"].as_str().expect("a name").to_owned();
                holders.entry(name).or_default().push(n);
            }
        }
    }
    holders
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn three_processes_run_each_leased_part_once_and_read_each_others_writes() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let client = client();
    let services = [
        Service::start(&db).await,
        Service::start(&db).await,
        Service::start(&db).await,
    ];
    for service in &services {
        let ready = service.wait_ready(&client).await;
        for part in LEASED {
            let role = ready["parts"]
                .as_array()
                .unwrap()
                .iter()
                .find(|p| p["name"] == json!(part))
                .map(|p| p["lease"].clone());
            assert!(
                matches!(role, Some(Value::String(ref r)) if r == "holder" || r == "standby"),
                "{part} in {ready:#}"
            );
        }
    }
    let all: Vec<&Service> = services.iter().collect();
    let held = holders(&client, &all).await;
    for part in LEASED {
        assert_eq!(
            held.get(part).map(Vec::len),
            Some(1),
            "{part} runs in exactly one process: {held:?}"
        );
    }

    // Read your writes: a command on one process, read on the next with
    // its position, from the access index and from a SQL read model.
    let operator = token(&db, TokenKind::Operator, None, None).await;
    let site = Uuid::new_v4();
    must(
        &client,
        &services[0],
        &operator,
        "RegisterSite",
        json!({"site_id": site, "code": "MANY", "name": "Many processes", "seat_limit": 1000}),
    )
    .await;
    for n in 0..30 {
        let (writer, reader) = (&services[n % 3], &services[(n + 1) % 3]);
        let user = Uuid::new_v4();
        let position = must(&client, writer, &operator, "AddUser",
            json!({"site_id": site, "user_id": user, "username": format!("u{n}@many.example"), "name": format!("User {n}"), "role": "administration"})).await;
        for path in [
            format!("/v1/access/lookup?user_id={user}&min_position={position}"),
            format!("/v1/sites/{site}/users/{user}?min_position={position}"),
        ] {
            reader.assert_reads(&client, &operator, &path).await;
        }
    }
    for service in services {
        service.kill_9().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_new_process_starts_from_the_index_snapshot_another_wrote_and_reads_the_rest() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let client = client();
    let every = ["--index-snapshot-every", "20"];
    let first = Service::start_with(&db, &every).await;
    first.wait_ready(&client).await;
    let operator = token(&db, TokenKind::Operator, None, None).await;
    let site = Uuid::new_v4();
    must(
        &client,
        &first,
        &operator,
        "RegisterSite",
        json!({"site_id": site, "code": "SNAP", "name": "Snapshots", "seat_limit": 1000}),
    )
    .await;
    let mut users = Vec::new();
    for n in 0..30 {
        let user = Uuid::new_v4();
        must(&client, &first, &operator, "AddUser",
            json!({"site_id": site, "user_id": user, "username": format!("u{n}@snap.example"), "name": format!("User {n}"), "role": "presenter"})).await;
        users.push(user);
    }
    // The snapshot, once the sealer has sealed that far (written every 5 s
    // at most).
    let started = Instant::now();
    let stored = loop {
        let stored: Option<i64> = sqlx::query_scalar("SELECT position FROM sl_index_snapshots")
            .fetch_optional(db.pool())
            .await
            .unwrap();
        if let Some(stored) = stored {
            break stored as u64;
        }
        assert!(
            started.elapsed() < Duration::from_secs(30),
            "no snapshot written"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    // More writes after it, then a new process.
    let last = Uuid::new_v4();
    let position = must(&client, &first, &operator, "AddUser",
        json!({"site_id": site, "user_id": last, "username": "last@snap.example", "name": "Last", "role": "presenter"})).await;
    users.push(last);
    let second = Service::start_with(&db, &every).await;
    second.wait_ready(&client).await;
    let status = second.log_status(&client, &operator).await;
    let from = status["access_started_from"].as_u64().expect("a position");
    assert!(
        from >= stored && from > 0,
        "started from {from}, stored {stored}: {status}"
    );
    for user in users {
        let path = format!("/v1/access/lookup?user_id={user}&min_position={position}");
        second.assert_reads(&client, &operator, &path).await;
    }
    first.kill_9().await;
    second.kill_9().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_of_the_lease_holder_hands_its_parts_over_and_applies_each_consequence_once() {
    let _turn = ONE_AT_A_TIME.lock().await;
    let db = TestDb::new().await;
    let client = client();
    let mut services = vec![
        Service::start(&db).await,
        Service::start(&db).await,
        Service::start(&db).await,
    ];
    for service in &services {
        service.wait_ready(&client).await;
    }
    let operator = token(&db, TokenKind::Operator, None, None).await;
    let (a, b) = (Uuid::new_v4(), Uuid::new_v4());
    let (sc, bsc) = (Uuid::new_v4(), Uuid::new_v4());
    let p = |n: usize| n % 3;
    let (admin_a, admin_b) = (Uuid::new_v4(), Uuid::new_v4());
    let sites = [
        (
            "RegisterSite",
            json!({"site_id": a, "code": "ALPHA", "name": "Alpha", "seat_limit": 10}),
        ),
        (
            "RegisterSite",
            json!({"site_id": b, "code": "BETA", "name": "Beta", "seat_limit": 10}),
        ),
        (
            "AddUser",
            json!({"site_id": a, "user_id": admin_a, "username": "admin@alpha.example", "name": "Admin A", "role": "administration"}),
        ),
        (
            "AddUser",
            json!({"site_id": b, "user_id": admin_b, "username": "admin@beta.example", "name": "Admin B", "role": "administration"}),
        ),
    ];
    for (n, (name, body)) in sites.into_iter().enumerate() {
        must(&client, &services[p(n)], &operator, name, body).await;
    }
    let ta = token(&db, TokenKind::User, Some(a), Some(admin_a)).await;
    let tb = token(&db, TokenKind::User, Some(b), Some(admin_b)).await;
    let setup = [
        (
            &ta,
            "RequestConnection",
            json!({"site_id": a, "partner_code": "BETA", "directions": "both"}),
        ),
        (
            &tb,
            "ApproveConnection",
            json!({"site_id": b, "partner": a}),
        ),
        (
            &ta,
            "CreateScorecard",
            json!({"site_id": a, "scorecard_id": sc, "name": "Shared"}),
        ),
        (
            &ta,
            "ShareScorecard",
            json!({"site_id": a, "partner": b, "scorecard_id": sc}),
        ),
        (
            &tb,
            "CreateScorecard",
            json!({"site_id": b, "scorecard_id": bsc, "name": "Ours"}),
        ),
    ];
    for (n, (token, name, body)) in setup.into_iter().enumerate() {
        must(&client, &services[p(n)], token, name, body).await;
    }
    // Objects on the shared scorecard, each linked by the partner.
    const OBJECTS: usize = 40;
    let mut objects = Vec::new();
    for n in 0..OBJECTS {
        let (object, relationship) = (Uuid::new_v4(), Uuid::new_v4());
        let service = &services[p(n)];
        must(&client, service, &ta, "CreateObject",
            json!({"site_id": a, "object_id": object, "kind": "indicator", "name": format!("Measure {n}")})).await;
        must(
            &client,
            service,
            &ta,
            "PlaceObjectOnScorecard",
            json!({"site_id": a, "object_id": object, "scorecard_id": sc}),
        )
        .await;
        must(&client, service, &tb, "LinkSharedObject",
            json!({"site_id": b, "relationship_id": relationship, "scorecard_id": bsc, "origin_site": a, "object_id": object})).await;
        objects.push(object);
    }

    // The process holding the consequence worker's lease.
    let all: Vec<&Service> = services.iter().collect();
    let held = holders(&client, &all).await;
    let holder = held["consequences"][0];
    let others: Vec<usize> = (0..3).filter(|n| *n != holder).collect();

    // Each removal of an object from the shared scorecard makes the worker
    // remove the partner's relationship. Half of them, then the kill.
    let remove = |object: Uuid| json!({"site_id": a, "object_id": object, "scorecard_id": sc});
    for (n, object) in objects[..OBJECTS / 2].iter().enumerate() {
        must(
            &client,
            &services[others[n % 2]],
            &ta,
            "RemoveObjectFromScorecard",
            remove(*object),
        )
        .await;
    }
    let killed = Instant::now();
    services.remove(holder).kill_9().await;
    for (n, object) in objects[OBJECTS / 2..].iter().enumerate() {
        must(
            &client,
            &services[n % 2],
            &ta,
            "RemoveObjectFromScorecard",
            remove(*object),
        )
        .await;
    }

    // Another process holds every leased part within the bound.
    let survivors: Vec<&Service> = services.iter().collect();
    let failover = loop {
        let held = holders(&client, &survivors).await;
        if LEASED
            .iter()
            .all(|part| held.get(*part).map(Vec::len) == Some(1))
        {
            break killed.elapsed();
        }
        assert!(
            killed.elapsed() < Duration::from_secs(10),
            "no process took every part over within 10 s: {held:?}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    };
    eprintln!("failover_s={:.2}", failover.as_secs_f64());

    // Every relationship removed, each exactly once.
    let removed = loop {
        let removed: Vec<(String, i64)> = sqlx::query_as(
            "SELECT data->>'relationship_id', count(*) FROM sl_events \
             WHERE event_type = 'RelationshipRemoved' GROUP BY 1",
        )
        .fetch_all(db.pool())
        .await
        .unwrap();
        if removed.len() == OBJECTS || killed.elapsed() > Duration::from_secs(30) {
            break removed;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(removed.len(), OBJECTS, "lost consequences: {removed:?}");
    assert!(
        removed.iter().all(|(_, count)| *count == 1),
        "a consequence applied twice: {removed:?}"
    );

    // The chain is sealed to the head, with nothing altered.
    services[0].assert_sealed(&client, &operator).await;
    for service in services {
        service.kill_9().await;
    }
}
