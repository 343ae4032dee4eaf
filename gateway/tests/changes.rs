//! The changes feed (`GET /v1/changes`), end to end through a real server
//! over real PostgreSQL: operators see the whole log in order, a page at a
//! time, each event once; a site's administrators see their site's events
//! and their links', never another site's own (tenancy); filters narrow
//! it; a long poll answers as soon as a new event is written.

mod common;

use std::time::{Duration, Instant};

use common::Harness;
use serde_json::{json, Value};

/// Every page of the feed for `token` with `query`, `limit` at a time.
async fn every_page(h: &Harness, token: &str, query: &str, limit: u32) -> Vec<Value> {
    let mut events = Vec::new();
    let mut after = 0;
    loop {
        let page = h
            .get(
                token,
                &format!("/v1/changes?after={after}&limit={limit}{query}"),
            )
            .await;
        let page = page.ok().clone();
        let got = page["events"].as_array().unwrap().clone();
        let next = page["next"].as_u64().unwrap();
        let head = page["head"].as_u64().unwrap();
        assert!(got.len() <= limit as usize);
        events.extend(got);
        if next >= head {
            return events;
        }
        assert!(next > after, "the feed moves on");
        after = next;
    }
}

fn positions(events: &[Value]) -> Vec<u64> {
    events
        .iter()
        .map(|e| e["position"].as_u64().unwrap())
        .collect()
}

#[tokio::test]
async fn the_feed_pages_the_log_in_order_and_each_site_sees_only_its_own_and_its_links() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    // An operator: the whole log, gapless, in order, each event once,
    // whatever the page size.
    let all = every_page(h, &h.operator, "", 1000).await;
    let all_positions = positions(&all);
    assert_eq!(
        all_positions,
        (1..=all_positions.len() as u64).collect::<Vec<_>>()
    );
    assert!(*all_positions.last().unwrap() >= w.last);
    assert_eq!(
        positions(&every_page(h, &h.operator, "", 3).await),
        all_positions
    );

    // B's admin: B's own streams and the links it is one site of; nothing
    // of A's own (its users, its content).
    let (a, b) = (w.a.id.simple().to_string(), w.b.id.simple().to_string());
    let seen = every_page(h, &w.b.admin_token, "", 2).await;
    assert!(!seen.is_empty());
    for event in &seen {
        let stream = event["stream"].as_str().unwrap();
        let mine = stream == format!("site-{b}")
            || stream == format!("content-{b}")
            || (stream.starts_with("connection-") && stream.contains(&b));
        assert!(mine, "B sees {stream}: {event:#}");
        assert!(
            stream != format!("site-{a}") && stream != format!("content-{a}"),
            "{stream}"
        );
    }
    assert!(seen
        .iter()
        .any(|e| e["event_type"] == json!("ScorecardShared")));
    // Exactly the operator's events of those streams, in the same order.
    let expected: Vec<u64> = all
        .iter()
        .filter(|e| {
            let stream = e["stream"].as_str().unwrap();
            stream == format!("site-{b}")
                || stream == format!("content-{b}")
                || (stream.starts_with("connection-") && stream.contains(&b))
        })
        .map(|e| e["position"].as_u64().unwrap())
        .collect();
    assert_eq!(positions(&seen), expected);

    // Filters.
    let links = every_page(h, &w.a.admin_token, "&category=connection", 50).await;
    assert!(!links.is_empty());
    assert!(links.iter().all(|e| e["category"] == json!("connection")));
    let shares = every_page(h, &w.a.admin_token, "&event_type=ScorecardShared", 50).await;
    assert!(!shares.is_empty());
    assert!(shares
        .iter()
        .all(|e| e["event_type"] == json!("ScorecardShared")));

    // A user who administers nothing, and bad questions.
    h.get(&w.plain_token, "/v1/changes")
        .await
        .assert_problem(403, "forbidden");
    for bad in [
        "limit=0",
        "limit=1001",
        "wait=6",
        "category=users",
        "event_type=Not-A-Type",
        "after=-1",
        "since=3",
    ] {
        h.get(&h.operator, &format!("/v1/changes?{bad}"))
            .await
            .assert_problem(400, "invalid_query");
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn a_long_poll_answers_as_soon_as_a_new_event_is_written() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let head = h.get(&h.operator, "/v1/log/status").await;
    let head = head.ok()["head_position"].as_u64().unwrap();
    let started = Instant::now();
    let path = format!("/v1/changes?after={head}&wait=5");
    let poll = h.get(&w.a.admin_token, &path);
    let write = async {
        // Written while (or before) the poll waits: either way the poll
        // answers with it.
        tokio::time::sleep(Duration::from_millis(300)).await;
        h.must(
            &w.a.admin_token,
            "RequireTwoFactor",
            json!({"site_id": w.a.id, "required": true}),
        )
        .await
    };
    let (page, written) = tokio::join!(poll, write);
    let page = page.ok().clone();
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "answered at once"
    );
    let events = page["events"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{page:#}");
    assert_eq!(events[0]["position"], json!(written));
    assert_eq!(events[0]["event_type"], json!("TwoFactorRequirementSet"));
    // Nothing new: a poll without wait answers at once, empty, at the head.
    let empty = h
        .get(&w.a.admin_token, &format!("/v1/changes?after={written}"))
        .await;
    assert_eq!(empty.ok()["events"], json!([]));
    assert_eq!(empty.json["next"], json!(written));
    harness.shutdown().await;
}

#[tokio::test]
async fn serve_with_a_relay_reports_it_in_ready_and_metrics_as_it_delivers_the_log() {
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let harness = Harness::start_with(shareledger_gateway::GatewayOptions {
        relay: Some(shareledger_projections::relay::RelayConfig {
            nats_url: shareledger_tests::nats::nats_url(),
            stream: format!("SLSERVE_{tag}"),
            prefix: format!("slserve{tag}"),
            ..Default::default()
        }),
        ..shareledger_gateway::GatewayOptions::default()
    })
    .await;
    let h = &harness;
    let w = h.world().await;
    // The relay is a part of the service: ready once it has delivered the
    // log to the head, and its lag is in /metrics.
    h.eventually(
        "the relay delivers the log",
        Duration::from_secs(30),
        || async {
            let ready = h.get_with("/ready", &[]).await;
            ready.json["parts"].as_array().is_some_and(|parts| {
                parts.iter().any(|p| {
                    p["name"] == json!("relay")
                        && p["ready"] == json!(true)
                        && p["position"].as_u64().is_some_and(|at| at >= w.last)
                })
            })
        },
    )
    .await;
    let metrics = h.get(&h.operator, "/metrics").await;
    assert!(
        metrics.text.contains("part=\"relay\""),
        "the relay's lag in /metrics"
    );
    harness.shutdown().await;
}
