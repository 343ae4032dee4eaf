//! The event log's conformance suite: one test per semantic of
//! `docs/event-store.md`, each against a fresh PostgreSQL database.

use serde_json::json;
use shareledger_events::store::{
    LogError, PgEventStore, PositionFrom, RevisionFrom, StreamAppend, WrittenEvent,
};
use shareledger_events::{Category, Direction, EventType, ExpectedRevision, StreamState};
use shareledger_tests::fixtures::{event, event_with_id, events, metadata, stream};
use shareledger_tests::TestDb;
use uuid::Uuid;

/// What an append wrote, without whether it was a retry: (id, revision,
/// position) per event.
fn places(events: &[WrittenEvent]) -> Vec<(Uuid, u64, u64)> {
    events
        .iter()
        .map(|e| (e.event_id, e.stream_revision, e.global_position))
        .collect()
}

/// Runs `n` calls at once, each in its own task with its own handle on the
/// store (`call(i, store)`), and returns their answers in order of `i`.
async fn at_once<T, Fut>(
    store: &PgEventStore,
    n: usize,
    call: impl Fn(usize, PgEventStore) -> Fut,
) -> Vec<T>
where
    Fut: std::future::Future<Output = T> + Send + 'static,
    T: Send + 'static,
{
    let tasks: Vec<_> = (0..n)
        .map(|i| tokio::spawn(call(i, store.clone())))
        .collect();
    let mut answers = Vec::with_capacity(n);
    for task in tasks {
        answers.push(task.await.expect("the task ran to its end"));
    }
    answers
}

#[tokio::test]
async fn append_to_a_new_stream_returns_its_revisions_and_global_positions() {
    let db = TestDb::new().await;
    let store = db.store();
    let result = store
        .append(&stream("site-1"), ExpectedRevision::NoStream, events(3))
        .await
        .unwrap();
    assert_eq!(result.next_expected, 2);
    let revisions: Vec<u64> = result.events.iter().map(|e| e.stream_revision).collect();
    let positions: Vec<u64> = result.events.iter().map(|e| e.global_position).collect();
    assert_eq!(revisions, vec![0, 1, 2]);
    assert_eq!(positions, vec![1, 2, 3]);
    assert_eq!(result.last_position(), 3);
}

#[tokio::test]
async fn exact_expected_revision_continues_the_stream() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("site-1");
    let first = store
        .append(&s, ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    let second = store
        .append(&s, ExpectedRevision::Exact(first.next_expected), events(1))
        .await
        .unwrap();
    assert_eq!(second.next_expected, 2);
    assert_eq!(second.events[0].global_position, 3);
}

#[tokio::test]
async fn wrong_expected_revision_is_a_typed_error_carrying_the_actual_revision_and_writes_nothing()
{
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("site-1");
    store
        .append(&s, ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    let cases = [
        (ExpectedRevision::NoStream, StreamState::At(1)),
        (ExpectedRevision::Exact(0), StreamState::At(1)),
        (ExpectedRevision::Exact(7), StreamState::At(1)),
    ];
    for (expected, actual_state) in cases {
        match store.append(&s, expected, events(1)).await {
            Err(LogError::WrongExpectedRevision {
                stream,
                expected: e,
                actual,
            }) => {
                assert_eq!(stream, "site-1");
                assert_eq!(e, expected);
                assert_eq!(actual, actual_state);
            }
            other => panic!("expected WrongExpectedRevision for {expected:?}, got {other:?}"),
        }
    }
    match store
        .append(&stream("site-2"), ExpectedRevision::StreamExists, events(1))
        .await
    {
        Err(LogError::WrongExpectedRevision { actual, .. }) => {
            assert_eq!(actual, StreamState::NoStream)
        }
        other => panic!("expected WrongExpectedRevision, got {other:?}"),
    }
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn any_expected_revision_appends_whatever_the_stream_state() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("site-1");
    let a = store
        .append(&s, ExpectedRevision::Any, events(1))
        .await
        .unwrap();
    let b = store
        .append(&s, ExpectedRevision::Any, events(1))
        .await
        .unwrap();
    assert_eq!((a.next_expected, b.next_expected), (0, 1));
}

#[tokio::test]
async fn stream_exists_expectation_requires_an_existing_stream() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("site-1");
    assert!(matches!(
        store
            .append(&s, ExpectedRevision::StreamExists, events(1))
            .await,
        Err(LogError::WrongExpectedRevision { .. })
    ));
    store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let r = store
        .append(&s, ExpectedRevision::StreamExists, events(1))
        .await
        .unwrap();
    assert_eq!(r.next_expected, 1);
}

#[tokio::test]
async fn retried_append_succeeds_and_writes_nothing_whatever_the_expected_revision() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("site-1");
    let batch = events(3);
    let original = store
        .append(&s, ExpectedRevision::NoStream, batch.clone())
        .await
        .unwrap();
    store
        .append(&s, ExpectedRevision::Exact(2), events(1))
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    for expected in [
        ExpectedRevision::NoStream,
        ExpectedRevision::Exact(0),
        ExpectedRevision::Exact(99),
        ExpectedRevision::Any,
        ExpectedRevision::StreamExists,
    ] {
        let retried = store.append(&s, expected, batch.clone()).await.unwrap();
        assert_eq!(
            places(&retried.events),
            places(&original.events),
            "retry with {expected:?}"
        );
        assert_eq!(retried.next_expected, original.next_expected);
        assert!(
            retried.events.iter().all(|e| e.replayed)
                && original.events.iter().all(|e| !e.replayed),
            "a retry says so"
        );
    }
    // A retry of a prefix of the original append is a retry too.
    let prefix = store
        .append(&s, ExpectedRevision::NoStream, batch[..2].to_vec())
        .await
        .unwrap();
    assert_eq!(places(&prefix.events), places(&original.events[..2]));
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn retry_that_overlaps_only_partly_is_a_typed_error_and_writes_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("site-1");
    let batch = events(2);
    store
        .append(&s, ExpectedRevision::NoStream, batch.clone())
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    let fresh = event("Happened", json!({}));
    let mut overlapping = batch.clone();
    overlapping.push(fresh.clone());
    match store.append(&s, ExpectedRevision::Any, overlapping).await {
        Err(LogError::PartialDuplicate {
            written,
            not_written,
        }) => {
            assert_eq!(written, vec![batch[0].id(), batch[1].id()]);
            assert_eq!(not_written, vec![fresh.id()]);
        }
        other => panic!("expected PartialDuplicate, got {other:?}"),
    }
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn event_ids_written_to_another_stream_or_order_are_rejected() {
    let db = TestDb::new().await;
    let store = db.store();
    let batch = events(2);
    store
        .append(&stream("site-1"), ExpectedRevision::NoStream, batch.clone())
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    assert!(matches!(
        store
            .append(&stream("site-2"), ExpectedRevision::Any, batch.clone())
            .await,
        Err(LogError::EventIdsTaken { .. })
    ));
    let reversed = vec![batch[1].clone(), batch[0].clone()];
    assert!(matches!(
        store
            .append(&stream("site-1"), ExpectedRevision::Any, reversed)
            .await,
        Err(LogError::EventIdsTaken { .. })
    ));
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn multi_stream_append_writes_every_stream_with_its_own_expectation() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("b-1"), ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    let results = store
        .append_multi(vec![
            StreamAppend {
                stream: stream("a-1"),
                expected: ExpectedRevision::NoStream,
                events: events(2),
            },
            StreamAppend {
                stream: stream("b-1"),
                expected: ExpectedRevision::Exact(1),
                events: events(1),
            },
        ])
        .await
        .unwrap();
    assert_eq!(results[0].stream, stream("a-1"));
    assert_eq!(results[0].next_expected, 1);
    assert_eq!(results[1].next_expected, 2);
    let positions: Vec<u64> = results
        .iter()
        .flat_map(|r| r.events.iter().map(|e| e.global_position))
        .collect();
    assert_eq!(positions, vec![3, 4, 5]);
}

#[tokio::test]
async fn multi_stream_append_is_all_or_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("b-1"), ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    let err = store
        .append_multi(vec![
            StreamAppend {
                stream: stream("a-1"),
                expected: ExpectedRevision::NoStream,
                events: events(2),
            },
            StreamAppend {
                stream: stream("b-1"),
                expected: ExpectedRevision::Exact(5),
                events: events(1),
            },
        ])
        .await
        .unwrap_err();
    assert!(matches!(err, LogError::WrongExpectedRevision { ref stream, .. } if stream == "b-1"));
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn retried_multi_stream_append_is_idempotent() {
    let db = TestDb::new().await;
    let store = db.store();
    let appends = vec![
        StreamAppend {
            stream: stream("a-1"),
            expected: ExpectedRevision::NoStream,
            events: events(2),
        },
        StreamAppend {
            stream: stream("b-1"),
            expected: ExpectedRevision::NoStream,
            events: events(1),
        },
    ];
    let first = store.append_multi(appends.clone()).await.unwrap();
    let before = db.log_snapshot().await;
    let again = store.append_multi(appends).await.unwrap();
    for (first, again) in first.iter().zip(&again) {
        assert_eq!(places(&first.events), places(&again.events));
        assert!(again.events.iter().all(|e| e.replayed));
    }
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn read_stream_forwards_and_backwards_from_a_revision_with_a_limit() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("site-1");
    store
        .append(&s, ExpectedRevision::NoStream, events(5))
        .await
        .unwrap();
    store
        .append(&stream("other-1"), ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    let revs = |events: Vec<shareledger_events::RecordedEvent>| -> Vec<u64> {
        events.iter().map(|e| e.stream_revision).collect()
    };
    let all = store
        .read_stream(&s, Direction::Forwards, RevisionFrom::Edge, 100)
        .await
        .unwrap();
    assert_eq!(revs(all), vec![0, 1, 2, 3, 4]);
    let mid = store
        .read_stream(&s, Direction::Forwards, RevisionFrom::At(2), 2)
        .await
        .unwrap();
    assert_eq!(revs(mid), vec![2, 3]);
    let back = store
        .read_stream(&s, Direction::Backwards, RevisionFrom::Edge, 2)
        .await
        .unwrap();
    assert_eq!(revs(back), vec![4, 3]);
    let back_from = store
        .read_stream(&s, Direction::Backwards, RevisionFrom::At(1), 10)
        .await
        .unwrap();
    assert_eq!(revs(back_from), vec![1, 0]);
    assert!(matches!(
        store
            .read_stream(
                &stream("missing-1"),
                Direction::Forwards,
                RevisionFrom::Edge,
                1
            )
            .await,
        Err(LogError::StreamNotFound { .. })
    ));
}

#[tokio::test]
async fn read_all_forwards_and_backwards_from_a_global_position() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("a-1"), ExpectedRevision::NoStream, events(3))
        .await
        .unwrap();
    store
        .append(&stream("b-1"), ExpectedRevision::NoStream, events(3))
        .await
        .unwrap();
    let pos = |events: Vec<shareledger_events::RecordedEvent>| -> Vec<u64> {
        events.iter().map(|e| e.global_position).collect()
    };
    let all = store
        .read_all(Direction::Forwards, PositionFrom::Edge, 100)
        .await
        .unwrap();
    assert_eq!(pos(all), vec![1, 2, 3, 4, 5, 6]);
    let from = store
        .read_all(Direction::Forwards, PositionFrom::At(3), 2)
        .await
        .unwrap();
    assert_eq!(pos(from), vec![3, 4]);
    let back = store
        .read_all(Direction::Backwards, PositionFrom::Edge, 4)
        .await
        .unwrap();
    assert_eq!(pos(back), vec![6, 5, 4, 3]);
    let back_from = store
        .read_all(Direction::Backwards, PositionFrom::At(2), 4)
        .await
        .unwrap();
    assert_eq!(pos(back_from), vec![2, 1]);
}

#[tokio::test]
async fn read_category_returns_every_stream_of_the_category_in_global_order() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("site-1"), ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    store
        .append(&stream("user-1"), ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    store
        .append(&stream("site-2"), ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    store
        .append(&stream("sites-3"), ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let site = Category::parse("site").unwrap();
    let got = store
        .read_category(&site, Direction::Forwards, PositionFrom::Edge, 100)
        .await
        .unwrap();
    let seen: Vec<(String, u64)> = got
        .iter()
        .map(|e| (e.stream.clone(), e.global_position))
        .collect();
    assert_eq!(
        seen,
        vec![
            ("site-1".to_string(), 1),
            ("site-1".to_string(), 2),
            ("site-2".to_string(), 4)
        ]
    );
    let back = store
        .read_category(&site, Direction::Backwards, PositionFrom::At(3), 100)
        .await
        .unwrap();
    assert_eq!(back.len(), 2);
}

#[tokio::test]
async fn read_event_type_returns_events_of_that_type_in_global_order() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(
            &stream("a-1"),
            ExpectedRevision::NoStream,
            vec![event("Requested", json!({})), event("Approved", json!({}))],
        )
        .await
        .unwrap();
    store
        .append(
            &stream("b-1"),
            ExpectedRevision::NoStream,
            vec![event("Requested", json!({"x": 1}))],
        )
        .await
        .unwrap();
    let got = store
        .read_event_type(
            &EventType::parse("Requested").unwrap(),
            Direction::Forwards,
            PositionFrom::Edge,
            10,
        )
        .await
        .unwrap();
    let positions: Vec<u64> = got.iter().map(|e| e.global_position).collect();
    assert_eq!(positions, vec![1, 3]);
}

#[tokio::test]
async fn every_stored_event_records_all_its_fields() {
    let db = TestDb::new().await;
    let store = db.store();
    let id = Uuid::new_v4();
    let new = event_with_id(id, "ConnectionRequested", json!({"from": "ACME"}));
    let before = chrono::Utc::now() - chrono::Duration::seconds(5);
    store
        .append(
            &stream("link-1"),
            ExpectedRevision::NoStream,
            vec![new.clone()],
        )
        .await
        .unwrap();
    let got = store
        .read_all(Direction::Forwards, PositionFrom::Edge, 1)
        .await
        .unwrap()
        .remove(0);
    assert_eq!(got.global_position, 1);
    assert_eq!(got.stream, "link-1");
    assert_eq!(got.stream_revision, 0);
    assert_eq!(got.event_id, id);
    assert_eq!(got.event_type, "ConnectionRequested");
    assert_eq!(got.schema_version, 1);
    assert_eq!(got.data, json!({"from": "ACME"}));
    assert_eq!(got.typed_metadata().unwrap(), *new.metadata());
    assert!(got.recorded_at > before && got.recorded_at <= chrono::Utc::now());
}

#[tokio::test]
async fn global_positions_are_dense_even_after_rejected_and_rolled_back_appends() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("a-1");
    store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let _ = store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await;
    {
        let mut tx = db.pool().begin().await.unwrap();
        shareledger_events::store::PgEventStore::append_multi_in(
            &mut tx,
            vec![StreamAppend {
                stream: s.clone(),
                expected: ExpectedRevision::Any,
                events: events(3),
            }],
        )
        .await
        .unwrap();
        tx.rollback().await.unwrap();
    }
    let r = store
        .append(&s, ExpectedRevision::Exact(0), events(1))
        .await
        .unwrap();
    assert_eq!(r.events[0].global_position, 2);
    assert_eq!(store.head_position().await.unwrap(), 2);
}

#[tokio::test]
async fn soft_deleted_stream_is_hidden_and_appending_again_continues_its_revisions() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("site-1");
    store
        .append(&s, ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    store
        .delete_stream(&s, ExpectedRevision::Exact(1), metadata())
        .await
        .unwrap();
    assert!(matches!(
        store
            .read_stream(&s, Direction::Forwards, RevisionFrom::Edge, 10)
            .await,
        Err(LogError::StreamNotFound { .. })
    ));
    let info = store.stream_info(&s).await.unwrap();
    assert_eq!(info.state, StreamState::NoStream);
    assert_eq!(info.last_revision, Some(1));
    let site = Category::parse("site").unwrap();
    assert!(store
        .read_category(&site, Direction::Forwards, PositionFrom::Edge, 10)
        .await
        .unwrap()
        .is_empty());
    // The deleted events stay in $all, followed by the lifecycle event.
    let all = store
        .read_all(Direction::Forwards, PositionFrom::Edge, 10)
        .await
        .unwrap();
    assert_eq!(all.len(), 3);
    assert_eq!(all[2].stream, "$$site-1");
    assert_eq!(all[2].event_type, "$StreamDeleted");

    let again = store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    assert_eq!(again.next_expected, 2);
    let visible = store
        .read_stream(&s, Direction::Forwards, RevisionFrom::Edge, 10)
        .await
        .unwrap();
    assert_eq!(
        visible
            .iter()
            .map(|e| e.stream_revision)
            .collect::<Vec<_>>(),
        vec![2]
    );
}

#[tokio::test]
async fn soft_delete_of_a_stream_with_nothing_visible_is_not_found_and_writes_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    let before = db.log_snapshot().await;
    assert!(matches!(
        store
            .delete_stream(&stream("nothing-1"), ExpectedRevision::Any, metadata())
            .await,
        Err(LogError::StreamNotFound { .. })
    ));
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn delete_checks_the_expected_revision() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("site-1");
    store
        .append(&s, ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    assert!(matches!(
        store
            .delete_stream(&s, ExpectedRevision::Exact(0), metadata())
            .await,
        Err(LogError::WrongExpectedRevision {
            actual: StreamState::At(1),
            ..
        })
    ));
    assert!(matches!(
        store
            .tombstone_stream(&s, ExpectedRevision::NoStream, metadata())
            .await,
        Err(LogError::WrongExpectedRevision { .. })
    ));
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn tombstoned_stream_can_never_be_written_or_read_again() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("site-1");
    store
        .append(&s, ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    store
        .tombstone_stream(&s, ExpectedRevision::Any, metadata())
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    for expected in [
        ExpectedRevision::Any,
        ExpectedRevision::NoStream,
        ExpectedRevision::Exact(0),
    ] {
        assert!(matches!(
            store.append(&s, expected, events(1)).await,
            Err(LogError::StreamTombstoned { .. })
        ));
    }
    assert!(matches!(
        store
            .append_multi(vec![
                StreamAppend {
                    stream: stream("other-1"),
                    expected: ExpectedRevision::Any,
                    events: events(1),
                },
                StreamAppend {
                    stream: s.clone(),
                    expected: ExpectedRevision::Any,
                    events: events(1),
                },
            ])
            .await,
        Err(LogError::StreamTombstoned { .. })
    ));
    assert!(matches!(
        store
            .read_stream(&s, Direction::Forwards, RevisionFrom::Edge, 1)
            .await,
        Err(LogError::StreamTombstoned { .. })
    ));
    assert!(matches!(
        store
            .delete_stream(&s, ExpectedRevision::Any, metadata())
            .await,
        Err(LogError::StreamTombstoned { .. })
    ));
    assert!(matches!(
        store
            .tombstone_stream(&s, ExpectedRevision::Any, metadata())
            .await,
        Err(LogError::StreamTombstoned { .. })
    ));
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn tombstoning_a_never_written_stream_reserves_the_name_forever() {
    let db = TestDb::new().await;
    let store = db.store();
    let s = stream("reserved-1");
    store
        .tombstone_stream(&s, ExpectedRevision::NoStream, metadata())
        .await
        .unwrap();
    assert!(matches!(
        store
            .append(&s, ExpectedRevision::NoStream, events(1))
            .await,
        Err(LogError::StreamTombstoned { .. })
    ));
}

#[tokio::test]
async fn the_log_rejects_updates_deletes_and_truncation_of_events() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("a-1"), ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    for sql in [
        "UPDATE sl_events SET data = '{\"forged\": true}' WHERE global_position = 1",
        "DELETE FROM sl_events WHERE global_position = 2",
        "TRUNCATE sl_events",
    ] {
        let err = sqlx::query(sql).execute(db.pool()).await.unwrap_err();
        let code = err.as_database_error().and_then(|e| e.code()).unwrap();
        assert_eq!(code, "SL900", "{sql}");
    }
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn subscription_catches_up_from_a_checkpoint_then_delivers_live_events_in_order() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("a-1"), ExpectedRevision::NoStream, events(5))
        .await
        .unwrap();
    let mut sub = store
        .subscribe_to_all(Some(2), Default::default())
        .await
        .unwrap();
    for expected in 3..=5 {
        assert_eq!(sub.next().await.unwrap().global_position, expected);
    }
    let writer = {
        let store = store.clone();
        tokio::spawn(async move {
            for _ in 0..3 {
                store
                    .append(&stream("b-1"), ExpectedRevision::Any, events(2))
                    .await
                    .unwrap();
            }
        })
    };
    for expected in 6..=11 {
        let e = tokio::time::timeout(std::time::Duration::from_secs(30), sub.next())
            .await
            .expect("a live event arrives")
            .unwrap();
        assert_eq!(e.global_position, expected);
        assert_eq!(e.stream, "b-1");
    }
    writer.await.unwrap();
    assert_eq!(sub.position(), 11);
}

#[tokio::test]
async fn subscription_from_no_checkpoint_starts_at_the_first_event() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("a-1"), ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    let mut sub = store
        .subscribe_to_all(None, Default::default())
        .await
        .unwrap();
    assert_eq!(sub.next().await.unwrap().global_position, 1);
    assert_eq!(sub.next().await.unwrap().global_position, 2);
}

#[tokio::test]
async fn subscription_refuses_to_skip_a_missing_position() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("a-1"), ExpectedRevision::NoStream, events(3))
        .await
        .unwrap();
    // Tamper with the log as a superuser would: remove position 2.
    let mut conn = db.pool().acquire().await.unwrap();
    sqlx::query("ALTER TABLE sl_events DISABLE TRIGGER sl_events_append_only_rows")
        .execute(&mut *conn)
        .await
        .unwrap();
    sqlx::query("DELETE FROM sl_events WHERE global_position = 2")
        .execute(&mut *conn)
        .await
        .unwrap();
    let mut sub = store
        .subscribe_to_all(None, Default::default())
        .await
        .unwrap();
    assert_eq!(sub.next().await.unwrap().global_position, 1);
    assert!(matches!(
        sub.next().await,
        Err(LogError::Gap { after: 1, found: 3 })
    ));
}

#[tokio::test]
async fn guarded_append_writes_only_if_the_guarded_streams_are_as_expected() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("site-1"), ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    let part = || StreamAppend {
        stream: stream("content-1"),
        expected: ExpectedRevision::Any,
        events: events(1),
    };
    let err = store
        .append_guarded(
            vec![part()],
            &[(stream("site-1"), ExpectedRevision::Exact(0))],
        )
        .await
        .unwrap_err();
    assert!(matches!(
        err,
        LogError::WrongExpectedRevision { ref stream, actual: StreamState::At(1), .. } if stream == "site-1"
    ));
    assert_eq!(db.log_snapshot().await, before);
    let written = store
        .append_guarded(
            vec![part()],
            &[(stream("site-1"), ExpectedRevision::Exact(1))],
        )
        .await
        .unwrap();
    assert_eq!(written.len(), 1);
    assert_eq!(written[0].events[0].global_position, 3);
    // The guarded stream is unchanged.
    let info = store.stream_info(&stream("site-1")).await.unwrap();
    assert_eq!(info.state, StreamState::At(1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_appends_each_get_their_own_answer() {
    let db = TestDb::with_pool_size(16).await;
    let store = db.store();
    store
        .append(&stream("shared-1"), ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    // 40 appends at once: to fresh streams (succeed), and with a wrong
    // expectation on a shared stream (fail). Whatever batches the writer
    // forms, each append gets its own result.
    let answers = at_once(&store, 40, |i, store| async move {
        if i % 4 == 0 {
            store
                .append(&stream("shared-1"), ExpectedRevision::Exact(99), events(1))
                .await
        } else {
            store
                .append(
                    &stream(&format!("fresh-{i}")),
                    ExpectedRevision::NoStream,
                    events(2),
                )
                .await
        }
    })
    .await;
    let mut positions = Vec::new();
    for (i, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(r) => {
                assert_ne!(i % 4, 0);
                assert_eq!(r.next_expected, 1);
                positions.extend(r.events.iter().map(|e| e.global_position));
            }
            Err(LogError::WrongExpectedRevision { actual, .. }) => {
                assert_eq!(i % 4, 0);
                assert_eq!(actual, StreamState::At(0));
            }
            Err(other) => panic!("append {i}: {other}"),
        }
    }
    positions.sort();
    assert_eq!(positions, (2..=61).collect::<Vec<u64>>());
    assert_eq!(store.head_position().await.unwrap(), 61);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_decided_on_a_revision_written_past_fail_with_their_own_answer() {
    let db = TestDb::with_pool_size(16).await;
    let store = db.store();
    store
        .append(&stream("hot-1"), ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    // A first round moves hot-1 on to revision 1; then a second round of
    // appends still expecting revision 0 (decided before the first round)
    // races fresh appends. The stale ones can only fail, each with the
    // stream's actual state; the fresh ones batched with them are written.
    let first = events(1);
    store
        .append(&stream("hot-1"), ExpectedRevision::Exact(0), first.clone())
        .await
        .unwrap();
    let answers = at_once(&store, 40, |i, store| async move {
        if i % 2 == 0 {
            store
                .append(&stream("hot-1"), ExpectedRevision::Exact(0), events(1))
                .await
        } else {
            store
                .append(
                    &stream(&format!("cold-{i}")),
                    ExpectedRevision::NoStream,
                    events(1),
                )
                .await
        }
    })
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(r) => {
                assert_eq!(i % 2, 1, "append {i} succeeded");
                assert_eq!(r.next_expected, 0);
            }
            Err(LogError::WrongExpectedRevision {
                actual, expected, ..
            }) => {
                assert_eq!(i % 2, 0, "append {i} failed");
                assert_eq!(expected, ExpectedRevision::Exact(0));
                assert_eq!(actual, StreamState::At(1));
            }
            Err(other) => panic!("append {i}: {other}"),
        }
    }
    // The append that moved hot-1 on, sent again with the same events and
    // the same (now stale) expectation, is still an idempotent retry.
    let again = store
        .append(&stream("hot-1"), ExpectedRevision::Exact(0), first)
        .await
        .expect("a retry of a written append returns it");
    assert_eq!(again.events.len(), 1);
    assert_eq!(again.events[0].stream_revision, 1);
    assert_eq!(store.head_position().await.unwrap(), 2 + 20);
}

/// Appends that arrive together go out as one batch (`sl_append_batch`),
/// decided in order, each against what the ones before it left: on one
/// stream, `Any` appends all land, one after the other, and of the
/// `NoStream` appends racing them at most the first can.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn appends_to_one_stream_arriving_together_are_decided_one_after_the_other() {
    let db = TestDb::with_pool_size(16).await;
    let store = db.store();
    let answers = at_once(&store, 48, |i, store| async move {
        let expected = if i % 3 == 0 {
            ExpectedRevision::NoStream
        } else {
            ExpectedRevision::Any
        };
        (
            expected,
            store
                .append(&stream("together-1"), expected, events(2))
                .await,
        )
    })
    .await;
    let mut revisions = Vec::new();
    let mut new_stream_wins = 0;
    for answer in answers {
        match answer {
            (expected, Ok(r)) => {
                if expected == ExpectedRevision::NoStream {
                    new_stream_wins += 1;
                    assert_eq!(r.events[0].stream_revision, 0);
                }
                assert_eq!(r.events.len(), 2);
                assert_eq!(r.events[1].stream_revision, r.events[0].stream_revision + 1);
                assert_eq!(r.events[1].global_position, r.events[0].global_position + 1);
                revisions.extend(r.events.iter().map(|e| e.stream_revision));
            }
            (ExpectedRevision::NoStream, Err(LogError::WrongExpectedRevision { actual, .. })) => {
                assert!(matches!(actual, StreamState::At(_)), "{actual:?}");
            }
            (expected, Err(other)) => panic!("{expected:?}: {other}"),
        }
    }
    assert!(new_stream_wins <= 1);
    revisions.sort_unstable();
    let written = revisions.len() as u64;
    assert_eq!(revisions, (0..written).collect::<Vec<u64>>());
    assert_eq!(written, 2 * (32 + new_stream_wins));
    assert_eq!(store.head_position().await.unwrap(), written);
}

/// The same append sent many times at once (a client retrying before the
/// first answer came back): every send gets the events written once, the
/// later sends of a batch as retries of the first.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_same_append_sent_many_times_at_once_is_written_once_and_every_send_gets_it() {
    let db = TestDb::with_pool_size(16).await;
    let store = db.store();
    store
        .append(&stream("other-1"), ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let same = events(3);
    let sends = at_once(&store, 40, |i, store| {
        let same = same.clone();
        async move {
            if i % 2 == 0 {
                store
                    .append(&stream("again-1"), ExpectedRevision::NoStream, same)
                    .await
                    .map(|r| Some(r.events))
            } else {
                store
                    .append(&stream("other-1"), ExpectedRevision::Any, events(1))
                    .await
                    .map(|_| None)
            }
        }
    })
    .await;
    let mut answers = Vec::new();
    for send in sends {
        if let Some(written) = send.expect("every send succeeds") {
            answers.push(written);
        }
    }
    assert_eq!(answers.len(), 20);
    assert!(answers.iter().all(|a| places(a) == places(&answers[0])));
    assert_eq!(
        answers
            .iter()
            .filter(|a| a.iter().all(|e| !e.replayed))
            .count(),
        1,
        "exactly one send wrote"
    );
    let revisions: Vec<u64> = answers[0].iter().map(|e| e.stream_revision).collect();
    assert_eq!(revisions, vec![0, 1, 2]);
    // Written once: 1 + 20 events on other-1, 3 on again-1.
    assert_eq!(store.head_position().await.unwrap(), 1 + 20 + 3);
}

/// In a batch, an append naming a tombstoned stream gets its own typed
/// error; the appends beside it are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_append_to_a_tombstoned_stream_fails_alone_in_its_batch() {
    let db = TestDb::with_pool_size(16).await;
    let store = db.store();
    let gone = stream("gone-1");
    store
        .tombstone_stream(&gone, ExpectedRevision::NoStream, metadata())
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    let answers = at_once(&store, 30, |i, store| {
        let gone = gone.clone();
        async move {
            if i % 3 == 0 {
                store
                    .append_multi(vec![
                        StreamAppend {
                            stream: stream(&format!("beside-{i}")),
                            expected: ExpectedRevision::NoStream,
                            events: events(1),
                        },
                        StreamAppend {
                            stream: gone,
                            expected: ExpectedRevision::Any,
                            events: events(1),
                        },
                    ])
                    .await
                    .map(|_| ())
            } else {
                store
                    .append(
                        &stream(&format!("fine-{i}")),
                        ExpectedRevision::NoStream,
                        events(1),
                    )
                    .await
                    .map(|_| ())
            }
        }
    })
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(()) => assert_ne!(i % 3, 0, "append {i} was written"),
            Err(LogError::StreamTombstoned { stream }) => {
                assert_eq!(i % 3, 0);
                assert_eq!(stream, "gone-1");
            }
            Err(other) => panic!("append {i}: {other}"),
        }
    }
    assert_eq!(store.head_position().await.unwrap(), head + 20);
    // All or nothing per append: the tombstoned appends' other streams
    // were not written.
    assert!(matches!(
        store
            .read_stream(
                &stream("beside-0"),
                Direction::Forwards,
                RevisionFrom::Edge,
                1
            )
            .await,
        Err(LogError::StreamNotFound { .. })
    ));
}

/// In a batch as alone, an append whose expectations fail on several
/// streams is refused naming the first of them by name.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_batched_append_failing_on_several_streams_names_the_first_by_name() {
    let db = TestDb::with_pool_size(16).await;
    let store = db.store();
    let answers = at_once(&store, 30, |i, store| async move {
        if i % 2 == 0 {
            let part = |name: &str| StreamAppend {
                stream: stream(&format!("{name}-{i}")),
                expected: ExpectedRevision::Exact(3),
                events: events(1),
            };
            store
                .append_multi(vec![part("zulu"), part("alpha"), part("mike")])
                .await
                .map(|_| ())
        } else {
            store
                .append(
                    &stream(&format!("fine-{i}")),
                    ExpectedRevision::Any,
                    events(1),
                )
                .await
                .map(|_| ())
        }
    })
    .await;
    for (i, answer) in answers.into_iter().enumerate() {
        match answer {
            Ok(()) => assert_eq!(i % 2, 1),
            Err(LogError::WrongExpectedRevision { stream, actual, .. }) => {
                assert_eq!(i % 2, 0);
                assert_eq!(stream, format!("alpha-{i}"));
                assert_eq!(actual, StreamState::NoStream);
            }
            Err(other) => panic!("append {i}: {other}"),
        }
    }
    assert_eq!(store.head_position().await.unwrap(), 15);
}

/// `stream_infos` answers for many streams in one query, in their order,
/// as `stream_info` does for each; `unchanged_since` tells whether a reader
/// of the whole stream would read the same as at a revision.
#[tokio::test]
async fn stream_infos_tell_each_stream_as_stream_info_does() {
    let db = TestDb::new().await;
    let store = db.store();
    let (written, deleted, gone, never) = (
        stream("written-1"),
        stream("deleted-1"),
        stream("gone-1"),
        stream("never-1"),
    );
    for s in [&written, &deleted, &gone] {
        store
            .append(s, ExpectedRevision::NoStream, events(2))
            .await
            .unwrap();
    }
    store
        .delete_stream(&deleted, ExpectedRevision::Exact(1), metadata())
        .await
        .unwrap();
    store
        .tombstone_stream(&gone, ExpectedRevision::Exact(1), metadata())
        .await
        .unwrap();
    let names = [
        never.clone(),
        gone.clone(),
        written.clone(),
        deleted.clone(),
    ];
    let infos = store.stream_infos(&names).await.unwrap();
    assert_eq!(infos.len(), 4);
    for (name, info) in names.iter().zip(&infos) {
        assert_eq!(*info, store.stream_info(name).await.unwrap(), "{name}");
    }
    let [never_info, gone_info, written_info, deleted_info] = infos[..] else {
        panic!("four answers")
    };
    assert!(never_info.unchanged_since(ExpectedRevision::NoStream));
    assert!(!never_info.unchanged_since(ExpectedRevision::Exact(0)));
    assert!(written_info.unchanged_since(ExpectedRevision::Exact(1)));
    assert!(!written_info.unchanged_since(ExpectedRevision::Exact(0)));
    assert!(!written_info.unchanged_since(ExpectedRevision::NoStream));
    assert!(!written_info.unchanged_since(ExpectedRevision::Any));
    // Deleted or tombstoned since it was read whole: not the same.
    assert!(!deleted_info.unchanged_since(ExpectedRevision::Exact(1)));
    assert!(!gone_info.unchanged_since(ExpectedRevision::Exact(1)));
    assert_eq!(deleted_info.visible_from, 2);
}
