//! The kill -9 crash test: `shareledger serve` (the real binary) killed with
//! SIGKILL in the middle of a burst of concurrent commands, then started
//! again on the same database.
//!
//! What must hold: every command acknowledged before the kill is in the
//! log; every command sent again afterwards with its own key is applied at
//! most once (the log holds exactly one event per key, whether or not the
//! first send had committed); the restarted service becomes ready, its
//! access index knows every user added, and the integrity chain is sealed
//! to the head with nothing altered.

use std::collections::BTreeMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use common::service::{client, send, token, Service};
use serde_json::{json, Value};
use shareledger_gateway::auth::TokenKind;
use shareledger_tests::TestDb;
use uuid::Uuid;

mod common;

/// Every command sent, by key: its body, and its position once acknowledged.
type Sent = BTreeMap<Uuid, (Value, Option<u64>)>;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn kill_9_mid_burst_loses_no_acknowledged_command_and_applies_none_twice() {
    let db = TestDb::new().await;
    let service = Service::start(&db).await;
    let client = client();
    let operator = token(&db, TokenKind::Operator, None, None).await;
    // One site per caller: the burst measures crash safety, not contention
    // on one site's stream.
    let sites: Vec<Uuid> = (0..8).map(|_| Uuid::new_v4()).collect();
    for (n, site) in sites.iter().enumerate() {
        let body = json!({"site_id": site, "code": format!("CRASH{n}"), "name": format!("Crash site {n}"), "seat_limit": 10000});
        let (status, reply) = send(
            &client,
            &service.url,
            &operator,
            "RegisterSite",
            &body,
            Uuid::new_v4(),
        )
        .await
        .expect("an answer");
        assert_eq!(status, 201, "RegisterSite: {reply}");
    }

    // A burst of AddUser commands from 8 callers, one per site; the kill
    // comes once 150 have been acknowledged, with more in flight.
    let sent: Arc<Mutex<Sent>> = Arc::default();
    let mut callers = tokio::task::JoinSet::new();
    for (caller, site) in sites.iter().copied().enumerate() {
        let (client, url, operator, sent) = (
            client.clone(),
            service.url.clone(),
            operator.clone(),
            Arc::clone(&sent),
        );
        callers.spawn(async move {
            for n in 0.. {
                let key = Uuid::new_v4();
                let user = Uuid::new_v4();
                let body = json!({"site_id": site, "user_id": user, "username": format!("u{caller}-{n}@crash.example"), "name": format!("User {caller}-{n}"), "role": "presenter"});
                sent.lock().unwrap().insert(key, (body.clone(), None));
                match send(&client, &url, &operator, "AddUser", &body, key).await {
                    Some((201, reply)) => {
                        let position = reply["position"].as_u64().expect("a position");
                        sent.lock().unwrap().insert(key, (body, Some(position)));
                    }
                    Some((status, reply)) => panic!("AddUser answered {status}: {reply}"),
                    None => return,
                }
            }
        });
    }
    loop {
        let acknowledged = sent
            .lock()
            .unwrap()
            .values()
            .filter(|(_, p)| p.is_some())
            .count();
        if acknowledged >= 150 {
            break;
        }
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    service.kill_9().await;
    while let Some(done) = callers.join_next().await {
        done.expect("a caller ended without panicking");
    }
    let sent = std::mem::take(&mut *sent.lock().unwrap());
    let acknowledged: Vec<u64> = sent.values().filter_map(|(_, p)| *p).collect();
    let in_flight = sent.values().filter(|(_, p)| p.is_none()).count();
    assert!(
        in_flight > 0,
        "the kill came between bursts: nothing was in flight"
    );

    // Every acknowledged command is in the log.
    let positions: Vec<i64> = acknowledged.iter().map(|p| *p as i64).collect();
    // A command's position is its last event's (the claim of the new
    // user's id, after the UserAdded it claims for).
    let found: i64 =
        sqlx::query_scalar("SELECT count(*) FROM sl_events WHERE global_position = ANY($1)")
            .bind(&positions)
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(
        found as usize,
        acknowledged.len(),
        "acknowledged commands lost"
    );

    // Started again, every command sent again with its key: each applied once.
    let service = Service::start(&db).await;
    // A key the killed process was running stays claimed until its lease
    // lapses (`gateway/src/idempotency.rs`): 409 with Retry-After until then.
    let lease_lapsed = tokio::time::Instant::now()
        + shareledger_gateway::idempotency::LEASE
        + Duration::from_secs(10);
    for (key, (body, _)) in &sent {
        let (status, reply) = loop {
            let (status, reply) = send(&client, &service.url, &operator, "AddUser", body, *key)
                .await
                .expect("an answer");
            if status == 409
                && reply["code"] == json!("idempotency_key_in_flight")
                && tokio::time::Instant::now() < lease_lapsed
            {
                tokio::time::sleep(Duration::from_millis(500)).await;
                continue;
            }
            break (status, reply);
        };
        assert!(status == 200 || status == 201, "{status}: {reply}");
        if status == 200 {
            assert_eq!(reply["replayed"], json!(true), "{reply}");
        }
    }
    let users: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sl_events WHERE stream_name LIKE 'site-%' AND event_type = 'UserAdded'",
    )
    .fetch_one(db.pool())
    .await
    .unwrap();
    assert_eq!(users as usize, sent.len(), "one UserAdded per key");

    // The restarted service is ready, knows every user, and seals the chain.
    service.wait_ready(&client).await;
    let last_user = sent.values().last().expect("commands").0["user_id"]
        .as_str()
        .expect("a user id")
        .to_owned();
    let check = client
        .get(format!(
            "{}/v1/access/lookup?user_id={last_user}",
            service.url
        ))
        .bearer_auth(&operator)
        .send()
        .await
        .unwrap();
    assert_eq!(check.status().as_u16(), 200, "{:?}", check.text().await);
    service.assert_sealed(&client, &operator).await;
    service.kill_9().await;
}
