//! Bad input to the log: every case is a typed error and leaves the log
//! exactly as it was. Where the Rust types make the bad value impossible to
//! build, the same value is also sent straight to the SQL function, to show
//! that the database refuses it too.

use serde_json::json;
use shareledger_events::envelope::{MAX_EVENTS_PER_APPEND, MAX_EVENT_BYTES};
use shareledger_events::store::{LogError, PositionFrom, StreamAppend};
use shareledger_events::{
    Direction, EventType, ExpectedRevision, InvalidInput, NewEvent, StreamName,
};
use shareledger_tests::fixtures::{event_with_id, events, metadata, stream};
use shareledger_tests::TestDb;
use uuid::Uuid;

/// Calls `sl_append` directly with one event, bypassing the Rust checks.
async fn raw_append(
    db: &TestDb,
    stream: &str,
    event_type: &str,
    data: serde_json::Value,
) -> String {
    let err = sqlx::query(
        "SELECT * FROM sl_append(ARRAY[$1], ARRAY[-1::bigint], ARRAY[1], ARRAY[1], \
         ARRAY[gen_random_uuid()], ARRAY[$2], ARRAY[1], ARRAY[$3::jsonb], ARRAY['{}'::jsonb])",
    )
    .bind(stream)
    .bind(event_type)
    .bind(data)
    .execute(db.pool())
    .await
    .expect_err("the database refuses it");
    err.as_database_error()
        .and_then(|e| e.code())
        .map(|c| c.into_owned())
        .unwrap_or_default()
}

async fn seeded() -> TestDb {
    let db = TestDb::new().await;
    db.store()
        .append(&stream("site-1"), ExpectedRevision::NoStream, events(2))
        .await
        .unwrap();
    db
}

#[tokio::test]
async fn empty_or_malformed_stream_names_are_typed_errors_and_the_log_is_unchanged() {
    let db = seeded().await;
    let before = db.log_snapshot().await;
    assert_eq!(StreamName::parse(""), Err(InvalidInput::EmptyStreamName));
    for bad in ["site 1", "site/1", "$$site-1", "-site", "sïte", "a\u{0}b"] {
        assert!(StreamName::parse(bad).is_err(), "{bad:?} parsed");
    }
    assert!(matches!(
        StreamName::parse("s".repeat(201)),
        Err(InvalidInput::StreamNameTooLong { len: 201 })
    ));
    let long = "s".repeat(201);
    let long_lifecycle = format!("$${}", "s".repeat(201));
    for bad in ["", "site 1", "-site", "$$", &long, &long_lifecycle] {
        assert_eq!(
            raw_append(&db, bad, "Happened", json!({})).await,
            "23514",
            "{bad:?}"
        );
    }
    assert_eq!(db.log_snapshot().await, before);
    // The longest names are accepted, by the parser and by the database.
    db.store()
        .append(
            &stream(&"s".repeat(200)),
            ExpectedRevision::NoStream,
            events(1),
        )
        .await
        .expect("a 200-character stream name is valid");
}

#[tokio::test]
async fn malformed_event_types_are_typed_errors_and_the_log_is_unchanged() {
    let db = seeded().await;
    let before = db.log_snapshot().await;
    assert_eq!(EventType::parse(""), Err(InvalidInput::EmptyEventType));
    // `$` types are the log's own (lifecycle events): not parseable by users.
    assert!(EventType::parse("$StreamDeleted").is_err());
    for bad in ["1st", "has space", "dash-ed", "", &"T".repeat(129)] {
        assert!(EventType::parse(bad).is_err(), "{bad:?} parsed");
        assert_eq!(
            raw_append(&db, "site-1", bad, json!({})).await,
            "23514",
            "{bad:?}"
        );
    }
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn an_event_over_the_size_limit_is_a_typed_error_and_the_log_is_unchanged() {
    let db = seeded().await;
    let before = db.log_snapshot().await;
    let t = EventType::parse("Happened").unwrap();
    let too_big = json!({ "blob": "x".repeat(MAX_EVENT_BYTES) });
    match NewEvent::new(Uuid::new_v4(), t.clone(), 1, too_big, metadata()) {
        Err(InvalidInput::EventTooLarge { size }) => assert!(size > MAX_EVENT_BYTES),
        other => panic!("expected EventTooLarge, got {other:?}"),
    }
    assert_eq!(db.log_snapshot().await, before);
    // Just under the limit is accepted.
    let meta_len = serde_json::to_string(&metadata()).unwrap().len();
    let room = MAX_EVENT_BYTES - meta_len - r#"{"blob":""}"#.len();
    let fits = NewEvent::new(
        Uuid::new_v4(),
        t,
        1,
        json!({ "blob": "x".repeat(room) }),
        metadata(),
    )
    .expect("an event exactly at the limit");
    db.store()
        .append(&stream("site-1"), ExpectedRevision::Any, vec![fits])
        .await
        .unwrap();
}

#[tokio::test]
async fn data_that_is_not_a_json_object_is_a_typed_error_and_the_log_is_unchanged() {
    let db = seeded().await;
    let before = db.log_snapshot().await;
    let t = EventType::parse("Happened").unwrap();
    for (data, kind) in [
        (json!([1, 2]), "an array"),
        (json!("text"), "a string"),
        (json!(3), "a number"),
        (json!(null), "null"),
        (json!(true), "a boolean"),
    ] {
        assert_eq!(
            NewEvent::new(Uuid::new_v4(), t.clone(), 1, data.clone(), metadata()),
            Err(InvalidInput::DataNotObject { found: kind })
        );
        assert_eq!(raw_append(&db, "site-1", "Happened", data).await, "23514");
    }
    assert_eq!(
        NewEvent::new(Uuid::new_v4(), t, 0, json!({}), metadata()),
        Err(InvalidInput::SchemaVersionZero)
    );
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn an_append_without_events_or_with_too_many_is_a_typed_error_and_the_log_is_unchanged() {
    let db = seeded().await;
    let store = db.store();
    let before = db.log_snapshot().await;
    assert!(matches!(
        store
            .append(&stream("site-1"), ExpectedRevision::Any, vec![])
            .await,
        Err(LogError::Invalid(InvalidInput::NoEvents))
    ));
    assert!(matches!(
        store.append_multi(vec![]).await,
        Err(LogError::Invalid(InvalidInput::NoEvents))
    ));
    assert!(matches!(
        store
            .append(
                &stream("site-2"),
                ExpectedRevision::Any,
                events(MAX_EVENTS_PER_APPEND + 1)
            )
            .await,
        Err(LogError::Invalid(InvalidInput::TooManyEvents { count })) if count == MAX_EVENTS_PER_APPEND + 1
    ));
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn a_repeated_event_id_or_stream_within_one_append_is_a_typed_error_and_the_log_is_unchanged()
{
    let db = seeded().await;
    let store = db.store();
    let before = db.log_snapshot().await;
    let id = Uuid::new_v4();
    let twice = vec![
        event_with_id(id, "Happened", json!({})),
        event_with_id(id, "Happened", json!({})),
    ];
    assert!(matches!(
        store.append(&stream("site-2"), ExpectedRevision::Any, twice).await,
        Err(LogError::Invalid(InvalidInput::DuplicateEventId(d))) if d == id
    ));
    let part = |events| StreamAppend {
        stream: stream("site-2"),
        expected: ExpectedRevision::Any,
        events,
    };
    assert!(matches!(
        store.append_multi(vec![part(events(1)), part(events(1))]).await,
        Err(LogError::Invalid(InvalidInput::DuplicateStream(s))) if s == "site-2"
    ));
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn a_zero_read_limit_is_a_typed_error() {
    let db = seeded().await;
    assert!(matches!(
        db.store()
            .read_all(Direction::Forwards, PositionFrom::Edge, 0)
            .await,
        Err(LogError::Invalid(InvalidInput::ZeroLimit))
    ));
}
