//! Dynamic consistency boundaries on the log (`docs/event-store.md`):
//! events carry tags, and an append may carry a condition, "no event
//! matching this query after these positions", checked atomically with it.
//! One test per semantic, then concurrency: 32 writers at once on one
//! boundary (one wins, the others get a typed error naming the conflict,
//! nothing else is written) and on 32 different boundaries (all win).

use serde_json::json;
use shareledger_events::store::{LogError, PgEventStore, StreamAppend};
use shareledger_events::{AppendCondition, ExpectedRevision, NewEvent, Query, Tag};
use shareledger_tests::fixtures::{event, event_with_id, metadata, stream};
use shareledger_tests::TestDb;
use uuid::Uuid;

fn tag(raw: &str) -> Tag {
    Tag::parse(raw).expect("a valid tag in a test")
}

fn tagged(event_type: &str, tags: &[&str]) -> NewEvent {
    event(event_type, json!({}))
        .with_tags(tags.iter().map(|t| tag(t)).collect())
        .expect("few tags")
}

fn condition(items: &[(&str, &[&str], u64)]) -> AppendCondition {
    let mut query = Query::new();
    for (t, types, after) in items {
        query.push(tag(t), types, *after);
    }
    AppendCondition::new(query)
}

async fn append_if(
    store: &PgEventStore,
    stream_name: &str,
    events: Vec<NewEvent>,
    condition: &AppendCondition,
) -> Result<u64, LogError> {
    let results = store
        .append_conditioned(
            vec![StreamAppend {
                stream: stream(stream_name),
                expected: ExpectedRevision::Any,
                events,
            }],
            &[],
            Some(condition),
        )
        .await?;
    Ok(results[0].last_position())
}

#[tokio::test]
async fn an_events_tags_are_stored_with_it_and_with_its_type() {
    let db = TestDb::new().await;
    let store = db.store();
    let written = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectCreated", &["object:o1", "site:s1"])],
        &AppendCondition::default(),
    )
    .await
    .unwrap();
    let rows: Vec<(String, i64, String)> =
        sqlx::query_as("SELECT tag, global_position, event_type FROM sl_event_tags ORDER BY tag")
            .fetch_all(db.pool())
            .await
            .unwrap();
    assert_eq!(
        rows,
        vec![
            ("object:o1".into(), written as i64, "ObjectCreated".into()),
            ("site:s1".into(), written as i64, "ObjectCreated".into()),
        ]
    );
}

#[tokio::test]
async fn events_are_read_by_tag_and_type_in_log_order_and_only_while_visible() {
    // Given events tagged object:o1 of two types on two streams, and one
    // tagged otherwise.
    let db = TestDb::new().await;
    let store = db.store();
    let cond = AppendCondition::default();
    let first = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectCreated", &["object:o1"])],
        &cond,
    )
    .await
    .unwrap();
    let edited = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectFieldEdited", &["object:o1"])],
        &cond,
    )
    .await
    .unwrap();
    append_if(
        &store,
        "content-2",
        vec![tagged("ObjectCreated", &["object:o2"])],
        &cond,
    )
    .await
    .unwrap();
    let linked = append_if(
        &store,
        "content-3",
        vec![tagged("SharedObjectLinked", &["object:o1"])],
        &cond,
    )
    .await
    .unwrap();
    let positions = |events: Vec<shareledger_events::RecordedEvent>| {
        events.iter().map(|e| e.global_position).collect::<Vec<_>>()
    };
    // When read by the tag and types, then exactly those, in log order.
    let o1 = tag("object:o1");
    assert_eq!(
        positions(
            store
                .read_tagged(&o1, &["ObjectCreated"], 10)
                .await
                .unwrap()
        ),
        vec![first]
    );
    assert_eq!(
        positions(
            store
                .read_tagged(
                    &o1,
                    &["SharedObjectLinked", "ObjectFieldEdited", "ObjectCreated"],
                    10
                )
                .await
                .unwrap()
        ),
        vec![first, edited, linked]
    );
    assert_eq!(
        positions(
            store
                .read_tagged(
                    &o1,
                    &["ObjectCreated", "ObjectFieldEdited", "SharedObjectLinked"],
                    2
                )
                .await
                .unwrap()
        ),
        vec![first, edited]
    );
    // And a soft-deleted stream's events are not read any more.
    store
        .delete_stream(&stream("content-1"), ExpectedRevision::Any, metadata())
        .await
        .unwrap();
    assert_eq!(
        positions(
            store
                .read_tagged(
                    &o1,
                    &["ObjectCreated", "ObjectFieldEdited", "SharedObjectLinked"],
                    10
                )
                .await
                .unwrap()
        ),
        vec![linked]
    );
}

#[tokio::test]
async fn an_append_whose_boundary_did_not_move_is_written() {
    let db = TestDb::new().await;
    let store = db.store();
    let first = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectCreated", &["object:o1"])],
        &AppendCondition::default(),
    )
    .await
    .unwrap();
    // Read at `first`: nothing about o1 since.
    let second = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectFieldUpdated", &["object:o1"])],
        &condition(&[("object:o1", &[], first)]),
    )
    .await
    .unwrap();
    assert_eq!(second, first + 1);
}

#[tokio::test]
async fn an_append_whose_boundary_moved_fails_naming_the_event_and_writes_nothing() {
    let db = TestDb::new().await;
    let store = db.store();
    let read_at = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectCreated", &["object:o1"])],
        &AppendCondition::default(),
    )
    .await
    .unwrap();
    let moved = append_if(
        &store,
        "content-1",
        vec![tagged(
            "ObjectPlacedOnScorecard",
            &["object:o1", "scorecard:c1"],
        )],
        &AppendCondition::default(),
    )
    .await
    .unwrap();
    let before = db.log_snapshot().await;
    let refused = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectFieldUpdated", &["object:o1"])],
        &condition(&[("object:o1", &["ObjectPlacedOnScorecard"], read_at)]),
    )
    .await;
    match refused {
        Err(LogError::ConditionFailed {
            tag,
            event_type,
            position,
        }) => {
            assert_eq!(
                (tag.as_str(), event_type.as_str(), position),
                ("object:o1", "ObjectPlacedOnScorecard", moved)
            );
        }
        other => panic!("expected ConditionFailed, got {other:?}"),
    }
    assert_eq!(db.log_snapshot().await, before, "a failed condition wrote");
}

#[tokio::test]
async fn events_outside_the_boundary_do_not_count() {
    let db = TestDb::new().await;
    let store = db.store();
    let read_at = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectCreated", &["object:o1"])],
        &AppendCondition::default(),
    )
    .await
    .unwrap();
    // After the read: another object, and o1 with a type the item does not name.
    for (event_type, tags) in [
        ("ObjectCreated", &["object:o2"][..]),
        ("ObjectFieldUpdated", &["object:o1"][..]),
    ] {
        append_if(
            &store,
            "content-1",
            vec![tagged(event_type, tags)],
            &AppendCondition::default(),
        )
        .await
        .unwrap();
    }
    append_if(
        &store,
        "content-1",
        vec![tagged("ObjectFieldEdited", &["object:o1"])],
        &condition(&[(
            "object:o1",
            &["ObjectCreated", "ObjectPlacedOnScorecard"],
            read_at,
        )]),
    )
    .await
    .expect("nothing inside the boundary moved");
}

#[tokio::test]
async fn each_item_counts_only_what_came_after_its_own_position() {
    let db = TestDb::new().await;
    let store = db.store();
    let user = append_if(
        &store,
        "site-1",
        vec![tagged("UserAdded", &["user:u1"])],
        &AppendCondition::default(),
    )
    .await
    .unwrap();
    let object = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectCreated", &["object:o1"])],
        &AppendCondition::default(),
    )
    .await
    .unwrap();
    // The object was read after its creation, the user after theirs: the
    // object's creation (after the user's position) is not a conflict.
    append_if(
        &store,
        "content-1",
        vec![tagged("ObjectFieldUpdated", &["object:o1"])],
        &condition(&[("user:u1", &[], user), ("object:o1", &[], object)]),
    )
    .await
    .expect("each item after its own read");
    // The same condition with the object read before its creation fails.
    let failed = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectFieldUpdated", &["object:o1"])],
        &condition(&[("user:u1", &[], user), ("object:o1", &[], user)]),
    )
    .await;
    assert!(
        matches!(&failed, Err(LogError::ConditionFailed { position, .. }) if *position == object),
        "{failed:?}"
    );
}

#[tokio::test]
async fn a_resent_append_returns_its_first_result_whatever_its_condition_says() {
    let db = TestDb::new().await;
    let store = db.store();
    let id = Uuid::new_v4();
    let event = || {
        event_with_id(id, "ObjectFieldUpdated", json!({}))
            .with_tags(vec![tag("object:o1")])
            .unwrap()
    };
    let cond = condition(&[("object:o1", &[], 0)]);
    let first = store
        .append_conditioned(
            vec![StreamAppend {
                stream: stream("content-1"),
                expected: ExpectedRevision::Any,
                events: vec![event()],
            }],
            &[],
            Some(&cond),
        )
        .await
        .unwrap();
    assert!(!first[0].events[0].replayed);
    // Its own event now matches its condition: the retry still succeeds.
    let again = store
        .append_conditioned(
            vec![StreamAppend {
                stream: stream("content-1"),
                expected: ExpectedRevision::Any,
                events: vec![event()],
            }],
            &[],
            Some(&cond),
        )
        .await
        .unwrap();
    assert!(again[0].events[0].replayed);
    assert_eq!(
        again[0].events[0].global_position,
        first[0].events[0].global_position
    );
}

#[tokio::test]
async fn a_condition_before_old_events_have_their_tags_is_refused() {
    let db = TestDb::new().await;
    let store = db.store();
    sqlx::query("UPDATE sl_event_tags_backfill SET until = 5, done_to = 0")
        .execute(db.pool())
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    let refused = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectCreated", &["object:o1"])],
        &condition(&[("object:o1", &[], 0)]),
    )
    .await;
    assert!(
        matches!(refused, Err(LogError::TagsNotDerived)),
        "{refused:?}"
    );
    assert_eq!(db.log_snapshot().await, before);
    // Without a condition, appends go on.
    append_if(
        &store,
        "content-1",
        vec![tagged("ObjectCreated", &["object:o1"])],
        &AppendCondition::default(),
    )
    .await
    .unwrap();
}

/// 32 writers at once, each having read the same object at the same
/// position, each appending an event about it with the condition "nothing
/// about it since": exactly one is written; every other is refused with a
/// typed error naming the winner's event; nothing else is written. Several
/// rounds, so that the conflicts fall inside batches and across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn of_32_concurrent_writers_on_one_boundary_exactly_one_wins_each_round() {
    let db = TestDb::with_pool_size(40).await;
    let store = db.store();
    let mut read_at = append_if(
        &store,
        "content-1",
        vec![tagged("ObjectCreated", &["object:o1"])],
        &AppendCondition::default(),
    )
    .await
    .unwrap();
    for round in 0..5 {
        let tasks: Vec<_> = (0..32)
            .map(|i| {
                let store = store.clone();
                tokio::spawn(async move {
                    append_if(
                        &store,
                        "content-1",
                        vec![tagged("ObjectPlacedOnScorecard", &["object:o1"])
                            .with_tags(vec![tag("object:o1"), tag(&format!("writer:w{i}"))])
                            .unwrap()],
                        &condition(&[("object:o1", &[], read_at)]),
                    )
                    .await
                })
            })
            .collect();
        let mut won = Vec::new();
        let mut refused = Vec::new();
        for task in tasks {
            match task.await.unwrap() {
                Ok(position) => won.push(position),
                Err(LogError::ConditionFailed {
                    tag,
                    event_type,
                    position,
                }) => refused.push((tag, event_type, position)),
                Err(other) => panic!("round {round}: {other}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}: {won:?}");
        assert_eq!(refused.len(), 31, "round {round}");
        for (tag, event_type, position) in &refused {
            assert_eq!(
                (tag.as_str(), event_type.as_str(), *position),
                ("object:o1", "ObjectPlacedOnScorecard", won[0]),
                "round {round}: a refusal names the winner"
            );
        }
        let events: i64 = sqlx::query_scalar("SELECT count(*) FROM sl_events")
            .fetch_one(db.pool())
            .await
            .unwrap();
        assert_eq!(
            events,
            2 + round,
            "round {round}: only the winner was written"
        );
        read_at = won[0];
    }
}

/// 32 writers at once, each on its own object: all are written.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_writers_on_different_boundaries_never_collide() {
    let db = TestDb::with_pool_size(40).await;
    let store = db.store();
    let tasks: Vec<_> = (0..32)
        .map(|i| {
            let store = store.clone();
            tokio::spawn(async move {
                let object = format!("object:o{i}");
                let mut read_at = 0;
                for _ in 0..5 {
                    read_at = append_if(
                        &store,
                        "content-1",
                        vec![tagged("ObjectFieldUpdated", &[&object])],
                        &condition(&[(&object, &[], read_at)]),
                    )
                    .await?;
                }
                Ok::<_, LogError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("no boundary was shared");
    }
    let events: i64 = sqlx::query_scalar("SELECT count(*) FROM sl_events")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(events, 32 * 5);
}
