//! Concurrency stress: 20 writers race on a few shared streams, some through
//! the store's own append, some inside transactions they hold open for random
//! short times before and after appending (and sometimes roll back), while a
//! subscriber follows the log live. At the end the subscriber has seen every
//! committed event exactly once, in global order, with no gaps; no two
//! writers won the same stream revision; and the log holds exactly what the
//! writers were told was committed.

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use rand::{Rng, SeedableRng};
use shareledger_events::store::{LogError, PgEventStore, StreamAppend};
use shareledger_events::{ExpectedRevision, RecordedEvent, StreamState};
use shareledger_tests::fixtures::{event, stream};
use shareledger_tests::TestDb;
use uuid::Uuid;

const WRITERS: usize = 20;
const ROUNDS: usize = 30;
const STREAMS: usize = 6;

/// An event a writer was told is committed.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
struct Won {
    position: u64,
    stream: String,
    revision: u64,
    event_id: Uuid,
}

async fn writer(store: PgEventStore, seed: u64) -> Vec<Won> {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    let mut won = Vec::new();
    for _ in 0..ROUNDS {
        let name = format!("hot-{}", rng.gen_range(0..STREAMS));
        let s = stream(&name);
        let expected = match store.stream_info(&s).await.unwrap().state {
            StreamState::NoStream => ExpectedRevision::NoStream,
            StreamState::At(r) if rng.gen_bool(0.8) => ExpectedRevision::Exact(r),
            StreamState::At(_) => ExpectedRevision::Any,
        };
        let count = rng.gen_range(1..=3);
        let events: Vec<_> = (0..count)
            .map(|i| event("Raced", serde_json::json!({ "seed": seed, "i": i })))
            .collect();
        let append = StreamAppend {
            stream: s.clone(),
            expected,
            events,
        };
        let outcome = if rng.gen_bool(0.5) {
            store.append_multi(vec![append]).await.map(Some)
        } else {
            // Hold a transaction open around the append, as a command
            // handler doing other work in the same transaction would.
            let before_ms = rng.gen_range(0..15);
            let after_ms = rng.gen_range(0..8);
            let rollback = rng.gen_bool(0.15);
            let mut tx = store.pool().begin().await.unwrap();
            sqlx::query("SELECT pg_sleep($1)")
                .bind(before_ms as f64 / 1000.0)
                .execute(&mut *tx)
                .await
                .unwrap();
            match PgEventStore::append_multi_in(&mut tx, vec![append]).await {
                Ok(results) => {
                    sqlx::query("SELECT pg_sleep($1)")
                        .bind(after_ms as f64 / 1000.0)
                        .execute(&mut *tx)
                        .await
                        .unwrap();
                    if rollback {
                        tx.rollback().await.unwrap();
                        Ok(None)
                    } else {
                        tx.commit().await.unwrap();
                        Ok(Some(results))
                    }
                }
                Err(e) => {
                    tx.rollback().await.unwrap();
                    Err(e)
                }
            }
        };
        match outcome {
            Ok(Some(results)) => {
                for r in results {
                    for e in r.events {
                        won.push(Won {
                            position: e.global_position,
                            stream: r.stream.to_string(),
                            revision: e.stream_revision,
                            event_id: e.event_id,
                        });
                    }
                }
            }
            Ok(None) => {}
            Err(LogError::WrongExpectedRevision { .. }) => {}
            Err(other) => panic!("writer {seed}: unexpected error {other}"),
        }
    }
    won
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_never_share_a_revision_and_the_subscriber_sees_every_commit_once_in_order(
) {
    let db = TestDb::with_pool_size(WRITERS as u32 + 8).await;
    let store = db.store();

    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<RecordedEvent>();
    let mut subscription = store
        .subscribe_to_all(None, Default::default())
        .await
        .unwrap();
    let subscriber = tokio::spawn(async move {
        loop {
            let event = subscription.next().await.expect("the subscription runs");
            if tx.send(event).is_err() {
                return;
            }
        }
    });

    let writers: Vec<_> = (0..WRITERS)
        .map(|i| tokio::spawn(writer(store.clone(), i as u64)))
        .collect();
    let mut won: Vec<Won> = Vec::new();
    for w in writers {
        won.extend(w.await.unwrap());
    }
    won.sort();
    assert!(!won.is_empty());

    // No two writers won the same stream revision, or the same position.
    let revisions: HashSet<(String, u64)> =
        won.iter().map(|w| (w.stream.clone(), w.revision)).collect();
    assert_eq!(
        revisions.len(),
        won.len(),
        "a stream revision was won twice"
    );
    let positions: Vec<u64> = won.iter().map(|w| w.position).collect();
    let expected_positions: Vec<u64> = (1..=won.len() as u64).collect();
    assert_eq!(
        positions, expected_positions,
        "committed positions are exactly 1..=N (rolled-back and rejected appends leave no gaps)"
    );
    // Each stream's revisions are 0..n without holes.
    let mut per_stream: BTreeMap<String, Vec<u64>> = BTreeMap::new();
    for w in &won {
        per_stream
            .entry(w.stream.clone())
            .or_default()
            .push(w.revision);
    }
    for (name, mut revs) in per_stream {
        revs.sort();
        assert_eq!(revs, (0..revs.len() as u64).collect::<Vec<_>>(), "{name}");
    }

    // The subscriber saw exactly the committed events, once each, in order.
    let head = store.head_position().await.unwrap();
    assert_eq!(head, won.len() as u64);
    let mut seen = Vec::new();
    while seen.len() < won.len() {
        let event = tokio::time::timeout(Duration::from_secs(60), rx.recv())
            .await
            .expect("the subscriber delivers every committed event")
            .expect("the subscriber is running");
        seen.push(Won {
            position: event.global_position,
            stream: event.stream,
            revision: event.stream_revision,
            event_id: event.event_id,
        });
    }
    subscriber.abort();
    assert_eq!(seen, won);
}
