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
        "event_type=NoSuchType",
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
        metrics
            .text
            .contains("shareledger_part_lag_events{part=\"relay\"}"),
        "the relay's lag in /metrics: {}",
        metrics.text
    );
    assert!(
        metrics
            .text
            .contains("shareledger_part_position{part=\"relay\"}"),
        "the relay's position (its rate: throughput) in /metrics"
    );
    // The derived feeds are written by the service and delivered too: B's
    // admin gained access to the shared scorecard (an access change) and
    // was told of the share (a notification).
    let client = async_nats::connect(shareledger_tests::nats::nats_url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    for (lane, subject) in [
        (
            "ACCESS",
            format!(
                "slserve{tag}.access.{}.{}",
                w.b.id.simple(),
                w.a.id.simple()
            ),
        ),
        (
            "NOTIFICATIONS",
            format!(
                "slserve{tag}.notifications.scorecard_shared.{}",
                w.b.id.simple()
            ),
        ),
    ] {
        let name = format!("SLSERVE_{tag}_{lane}");
        h.eventually(
            &format!("{lane} delivered"),
            Duration::from_secs(30),
            || {
                let (js, name, subject) = (js.clone(), name.clone(), subject.clone());
                async move {
                    match js.get_stream(&name).await {
                        Ok(stream) => stream
                            .get_last_raw_message_by_subject(&subject)
                            .await
                            .is_ok(),
                        Err(_) => false,
                    }
                }
            },
        )
        .await;
        let _ = js.delete_stream(&name).await;
    }
    let _ = js.delete_stream(format!("SLSERVE_{tag}")).await;
    harness.shutdown().await;
}

/// The messages of `stream` until one of `position` (or `within` passes).
async fn read_until(
    stream: &mut common::SseStream,
    position: u64,
    within: Duration,
) -> Vec<common::SseMessage> {
    let mut out = Vec::new();
    while let Some(message) = stream.next(within).await {
        let at = message.id.as_deref().and_then(|id| id.parse::<u64>().ok());
        out.push(message);
        if at.is_some_and(|p| p >= position) {
            break;
        }
    }
    out
}

#[tokio::test]
async fn server_sent_events_deliver_the_feed_in_order_live_and_resume_from_last_event_id() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let operator = [("authorization", format!("Bearer {}", h.operator))];
    let mut stream = common::SseStream::open(h, "/v1/changes?after=0", &operator)
        .await
        .expect("a stream");
    // First the log as it is, every event once, in order.
    let history = read_until(&mut stream, w.last, Duration::from_secs(10)).await;
    let ids: Vec<u64> = history
        .iter()
        .map(|m| m.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (1..=w.last).collect::<Vec<_>>());
    assert!(history.iter().all(|m| m.event == "change"));
    assert_eq!(history[0].data["position"], json!(1));
    // Then live: a command written now arrives.
    let written = h
        .must(
            &w.a.admin_token,
            "RequireTwoFactor",
            json!({"site_id": w.a.id, "required": true}),
        )
        .await;
    let live = read_until(&mut stream, written, Duration::from_secs(10)).await;
    let last = live.last().expect("the new event");
    assert_eq!(last.id.as_deref(), Some(written.to_string().as_str()));
    assert_eq!(last.data["event_type"], json!("TwoFactorRequirementSet"));
    drop(stream);

    // A reconnecting client resumes after its Last-Event-ID, with no gap.
    let resume_from = w.last - 2;
    let mut resumed = common::SseStream::open(
        h,
        "/v1/changes?after=0",
        &[
            operator[0].clone(),
            ("last-event-id", resume_from.to_string()),
        ],
    )
    .await
    .expect("a stream");
    let again = read_until(&mut resumed, written, Duration::from_secs(10)).await;
    let ids: Vec<u64> = again
        .iter()
        .map(|m| m.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(ids, (resume_from + 1..=written).collect::<Vec<_>>());

    // A's admin, filtered to connections: only the links it is one site of.
    let mut a_links = common::SseStream::open(
        h,
        "/v1/changes?category=connection",
        &[("authorization", format!("Bearer {}", w.a.admin_token))],
    )
    .await
    .expect("a stream");
    let first = a_links
        .next(Duration::from_secs(10))
        .await
        .expect("a link event");
    assert_eq!(first.data["category"], json!("connection"));
    assert!(first.data["stream"]
        .as_str()
        .unwrap()
        .contains(&w.a.id.simple().to_string()));

    // Who may not read the feed gets a problem, not a stream.
    let refused = common::SseStream::open(
        h,
        "/v1/changes",
        &[("authorization", format!("Bearer {}", w.plain_token))],
    )
    .await
    .err()
    .expect("refused");
    refused.assert_problem(403, "forbidden");
    let bad = common::SseStream::open(
        h,
        "/v1/changes",
        &[operator[0].clone(), ("last-event-id", "yesterday".into())],
    )
    .await
    .err()
    .expect("refused");
    bad.assert_problem(400, "invalid_query");
    // A place beyond the head names no event yet: 409, not a silent skip.
    let beyond = written + 1_000;
    h.get(&h.operator, &format!("/v1/changes?after={beyond}"))
        .await
        .assert_problem(409, "future_position");
    common::SseStream::open(
        h,
        "/v1/changes",
        &[operator[0].clone(), ("last-event-id", beyond.to_string())],
    )
    .await
    .err()
    .expect("refused")
    .assert_problem(409, "future_position");
    harness.shutdown().await;
}

#[tokio::test]
async fn a_server_sent_events_client_that_falls_behind_is_dropped_with_a_reason_and_resumes() {
    // A buffer of 2 events: a burst of more than that (an import of 8
    // users, read by the broadcast in one page) leaves the client behind.
    let harness = Harness::start_with(shareledger_gateway::GatewayOptions {
        feed_buffer: 2,
        ..Default::default()
    })
    .await;
    let h = &harness;
    let w = h.world().await;
    let operator = [("authorization", format!("Bearer {}", h.operator))];
    let path = format!("/v1/changes?after={}", w.last);
    let mut stream = common::SseStream::open(h, &path, &operator)
        .await
        .expect("a stream");
    let mut fast = common::SseStream::open(h, &path, &operator)
        .await
        .expect("a stream");
    let csv: String = std::iter::once("username,name,role\n".to_owned())
        .chain((0..8).map(|i| format!("burst{i}@beta.org,Burst {i},presenter\n")))
        .collect();
    let written = h
        .must(
            &w.b.admin_token,
            "ImportUsers",
            json!({"site_id": w.b.id, "csv": csv}),
        )
        .await;
    let messages = read_until(&mut stream, written, Duration::from_secs(10)).await;
    let dropped = messages
        .iter()
        .find(|m| m.event == "dropped")
        .expect("the client is dropped");
    assert_eq!(dropped.data["code"], json!("slow_consumer"));
    let resume_after = dropped.data["resume_after"].as_u64().unwrap();
    assert!(resume_after < written);
    // The stream ends after it.
    assert!(stream.next(Duration::from_secs(2)).await.is_none());
    // Every change before the drop was in order and gapless.
    let delivered: Vec<u64> = messages
        .iter()
        .filter(|m| m.event == "change")
        .map(|m| m.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(delivered, (w.last + 1..=resume_after).collect::<Vec<_>>());
    // Reconnecting with the position given resumes with no gap.
    let mut again = common::SseStream::open(
        h,
        "/v1/changes",
        &[
            operator[0].clone(),
            ("last-event-id", resume_after.to_string()),
        ],
    )
    .await
    .expect("a stream");
    let rest: Vec<u64> = read_until(&mut again, written, Duration::from_secs(10))
        .await
        .iter()
        .map(|m| m.id.as_deref().unwrap().parse().unwrap())
        .collect();
    assert_eq!(rest, (resume_after + 1..=written).collect::<Vec<_>>());
    drop(fast.next(Duration::from_millis(1)).await);
    harness.shutdown().await;
}

#[tokio::test]
async fn fail_closed_a_stream_whose_user_is_deactivated_ends_with_closed() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let (second, token) = h.user(&w.a, "second@alpha.org", "administration").await;
    let mut stream = common::SseStream::open(
        h,
        &format!("/v1/changes?after={}", w.last),
        &[("authorization", format!("Bearer {token}"))],
    )
    .await
    .expect("a stream");
    h.must(
        &h.operator,
        "DeactivateUser",
        json!({"site_id": w.a.id, "user_id": second}),
    )
    .await;
    // Within one re-authorization period (5 s) the stream says why it ends.
    let mut closed = None;
    while let Some(message) = stream.next(Duration::from_secs(8)).await {
        if message.event == "closed" {
            closed = Some(message);
            break;
        }
    }
    let closed = closed.expect("the stream is closed");
    assert_eq!(closed.data["status"], json!(403), "{closed:?}");
    assert!(stream.next(Duration::from_secs(1)).await.is_none());
    harness.shutdown().await;
}

#[tokio::test]
async fn an_idle_service_with_a_relay_and_the_derived_feeds_stays_ready() {
    // Parts count as following while in touch with the log within
    // max_silence; a quiet log must not make the relay or the derived feeds
    // look stalled.
    let tag = uuid::Uuid::new_v4().simple().to_string();
    let harness = Harness::start_with(shareledger_gateway::GatewayOptions {
        relay: Some(shareledger_projections::relay::RelayConfig {
            nats_url: shareledger_tests::nats::nats_url(),
            stream: format!("SLIDLE_{tag}"),
            prefix: format!("slidle{tag}"),
            ..Default::default()
        }),
        freshness: shareledger_events::store::supervise::Freshness {
            max_silence: Duration::from_millis(1_500),
            ..Default::default()
        },
        ..shareledger_gateway::GatewayOptions::default()
    })
    .await;
    let h = &harness;
    h.world().await;
    h.eventually("ready", Duration::from_secs(30), || async {
        h.get_with("/ready", &[]).await.status == 200
    })
    .await;
    // Quiet for twice the allowed silence.
    tokio::time::sleep(Duration::from_secs(3)).await;
    let ready = h.get_with("/ready", &[]).await;
    assert_eq!(ready.status, 200, "{:#}", ready.json);
    for part in ["relay", "derived_feeds"] {
        assert!(
            ready.json["parts"]
                .as_array()
                .unwrap()
                .iter()
                .any(|p| p["name"] == json!(part) && p["ready"] == json!(true)),
            "{part}: {:#}",
            ready.json
        );
    }
    let client = async_nats::connect(shareledger_tests::nats::nats_url())
        .await
        .unwrap();
    let js = async_nats::jetstream::new(client);
    for name in [
        format!("SLIDLE_{tag}"),
        format!("SLIDLE_{tag}_ACCESS"),
        format!("SLIDLE_{tag}_NOTIFICATIONS"),
    ] {
        let _ = js.delete_stream(&name).await;
    }
    harness.shutdown().await;
}
