//! The relay's kill -9 test: `shareledger relay` (the real binary) killed
//! with SIGKILL while it delivers a log of thousands of events to the real
//! NATS JetStream, then started again, as often as it takes to deliver the
//! whole log. What must hold: the stream holds every event of the log
//! exactly once, in log order, with no gap (lost=0, duplicated=0), however
//! the kills fell between a batch's acknowledgement and its checkpoint.
//! The same for the derived feeds' lane of access changes, delivered by the
//! same process beside the events (rows written into its table here, three
//! per position, as the service's derived feeds part writes them).

use std::collections::BTreeSet;
use std::process::Stdio;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use shareledger_events::store::PositionFrom;
use shareledger_events::{Direction, ExpectedRevision};
use shareledger_tests::fixtures::{events, stream};
use shareledger_tests::nats::nats_url;
use shareledger_tests::TestDb;
use uuid::Uuid;

mod common;

/// How many events the stream holds, and the last one's position.
async fn progress(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

#[tokio::test]
async fn a_relay_killed_with_sigkill_again_and_again_delivers_every_event_once_in_order() {
    let db = TestDb::new().await;
    let store = db.store();
    for batch in 0..40 {
        store
            .append(
                &stream(&format!("relaytest-{batch}")),
                ExpectedRevision::Any,
                events(100),
            )
            .await
            .unwrap();
    }
    let head = store.head_position().await.unwrap();
    sqlx::query(
        "INSERT INTO sl_access_changes SELECT p, s, gen_random_uuid(), 'Test', now(), \
         gen_random_uuid(), gen_random_uuid(), 'user@test.org', gen_random_uuid(), 'scorecard', \
         gen_random_uuid(), 'Scorecard', NULL, 'browser' \
         FROM generate_series(1, $1::bigint) p, generate_series(0, 2) s",
    )
    .bind(head as i64)
    .execute(db.pool())
    .await
    .unwrap();
    sqlx::query("INSERT INTO sl_checkpoints (name, position) VALUES ('derived', $1)")
        .bind(head as i64)
        .execute(db.pool())
        .await
        .unwrap();
    let tag = Uuid::new_v4().simple().to_string();
    let (name, prefix) = (format!("SLCRASH_{tag}"), format!("slcrash{tag}"));
    let url = nats_url();
    let js = jetstream::new(async_nats::connect(&url).await.unwrap());

    // Kill it three times at growing marks, then let it finish.
    let mut kills = 0;
    for mark in [head / 5, head / 2, (head * 4) / 5, u64::MAX] {
        let mut relay = common::command(Some(&db.url()))
            .args(["relay", "--stream", &name, "--prefix", &prefix])
            .env("NATS_URL", &url)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("relay starts");
        let deadline = Instant::now() + Duration::from_secs(120);
        let lane = format!("{name}_ACCESS");
        loop {
            let delivered = progress(&js, &name).await;
            // The last run goes on until the access changes' lane is
            // delivered too; the kills fall wherever that lane is then.
            let lane_done = mark != u64::MAX || progress(&js, &lane).await >= 3 * head;
            if delivered >= head.min(mark) && lane_done {
                break;
            }
            assert!(
                Instant::now() < deadline,
                "the relay stalled at {delivered}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        relay.start_kill().expect("SIGKILL sent");
        relay.wait().await.expect("the relay ended");
        if mark != u64::MAX {
            kills += 1;
        }
    }
    assert_eq!(kills, 3);

    // Every event once, in log order, with its id.
    let mut s = js.get_stream(&name).await.unwrap();
    let last = s.info().await.unwrap().state.last_sequence;
    let mut positions = Vec::new();
    let mut ids = Vec::new();
    for sequence in 1..=last {
        let m = s.get_raw_message(sequence).await.unwrap();
        positions.push(
            m.headers
                .get("ShareLedger-Position")
                .unwrap()
                .as_str()
                .parse::<u64>()
                .unwrap(),
        );
        ids.push(
            m.headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .unwrap()
                .as_str()
                .to_owned(),
        );
    }
    let log: Vec<String> = store
        .read_all(Direction::Forwards, PositionFrom::At(1), 100_000)
        .await
        .unwrap()
        .iter()
        .map(|e| e.event_id.to_string())
        .collect();
    let unique: BTreeSet<&String> = ids.iter().collect();
    let duplicated = ids.len() - unique.len();
    let lost = log.len() - unique.len();
    assert_eq!((lost, duplicated), (0, 0));
    assert_eq!(positions, (1..=head).collect::<Vec<_>>());
    assert_eq!(ids, log);

    // The access changes' lane: every row once, in (position, seq) order.
    let lane = format!("{name}_ACCESS");
    let mut s = js.get_stream(&lane).await.unwrap();
    let last = s.info().await.unwrap().state.last_sequence;
    let mut delivered: Vec<(u64, u64)> = Vec::new();
    let mut lane_ids = BTreeSet::new();
    for sequence in 1..=last {
        let m = s.get_raw_message(sequence).await.unwrap();
        let header = |name: &str| -> u64 { m.headers.get(name).unwrap().as_str().parse().unwrap() };
        delivered.push((header("ShareLedger-Position"), header("ShareLedger-Seq")));
        lane_ids.insert(
            m.headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .unwrap()
                .as_str()
                .to_owned(),
        );
    }
    let expected: Vec<(u64, u64)> = (1..=head)
        .flat_map(|p| (0..3).map(move |s| (p, s)))
        .collect();
    assert_eq!(lane_ids.len(), delivered.len(), "no access change twice");
    let first_difference = delivered
        .iter()
        .zip(&expected)
        .position(|(got, want)| got != want);
    assert_eq!(
        (delivered.len(), first_difference),
        (expected.len(), None),
        "every access change once, in order"
    );
    for stream in [name.clone(), lane, format!("{name}_NOTIFICATIONS")] {
        let _ = js.delete_stream(&stream).await;
    }
}
