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
         ARRAY[gen_random_uuid()], ARRAY[$2], ARRAY[1], ARRAY[$3::jsonb], ARRAY['{}'::jsonb], \
         '{}'::integer[], '{}'::text[], '{}'::text[], '{}'::text[], '{}'::bigint[])",
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

// ---------------------------------------------------------------------------
// The SQL functions' own checks of their arrays (SL006, SL007, SL008)
// ---------------------------------------------------------------------------

/// The arrays `sl_append` takes, laid out by hand (so that they can be
/// laid out wrong): parts, then events.
#[derive(Clone)]
struct RawAppend {
    part_append: Option<Vec<i32>>,
    streams: Vec<Option<String>>,
    expected: Vec<i64>,
    counts: Vec<i32>,
    event_part: Vec<i32>,
    event_ids: Vec<Uuid>,
    types: Vec<String>,
    versions: Vec<i32>,
    data: Vec<serde_json::Value>,
    metadata: Vec<serde_json::Value>,
}

impl RawAppend {
    /// A well-formed append: one part per stream, `per_part` events each.
    fn new(streams: &[&str], per_part: usize) -> Self {
        let n = streams.len() * per_part;
        Self {
            part_append: None,
            streams: streams.iter().map(|s| Some(s.to_string())).collect(),
            expected: vec![-1; streams.len()],
            counts: vec![per_part as i32; streams.len()],
            event_part: (1..=streams.len() as i32)
                .flat_map(|p| std::iter::repeat_n(p, per_part))
                .collect(),
            event_ids: (0..n).map(|_| Uuid::new_v4()).collect(),
            types: vec!["Happened".into(); n],
            versions: vec![1; n],
            data: vec![json!({}); n],
            metadata: vec![json!({}); n],
        }
    }

    /// The same arrays as a batch of appends numbered `part_append`.
    fn batch(mut self, part_append: &[i32]) -> Self {
        self.part_append = Some(part_append.to_vec());
        self
    }

    /// Calls `sl_append` (or `sl_append_batch` for a batch) with these
    /// arrays, straight through SQL: its typed error, or how many rows it
    /// answered.
    async fn call(&self, db: &TestDb) -> Result<usize, LogError> {
        let sql = if self.part_append.is_some() {
            "SELECT 1 FROM sl_append_batch($10, $1, $2, $3, $4, $5, $6, $7, $8, $9, \
             '{}'::integer[], '{}'::text[], '{}'::integer[], '{}'::text[], '{}'::text[], \
             '{}'::bigint[])"
        } else {
            "SELECT 1 FROM sl_append($1, $2, $3, $4, $5, $6, $7, $8, $9, \
             '{}'::integer[], '{}'::text[], '{}'::text[], '{}'::text[], '{}'::bigint[])"
        };
        let mut query = sqlx::query(sql)
            .bind(&self.streams)
            .bind(&self.expected)
            .bind(&self.counts)
            .bind(&self.event_part)
            .bind(&self.event_ids)
            .bind(&self.types)
            .bind(&self.versions)
            .bind(&self.data)
            .bind(&self.metadata);
        if let Some(part_append) = &self.part_append {
            query = query.bind(part_append);
        }
        query
            .fetch_all(db.pool())
            .await
            .map(|rows| rows.len())
            .map_err(LogError::from_db)
    }
}

/// Asserts that every case is refused as `SL006` with its reason, and that
/// the log is exactly as it was.
async fn refused_as_malformed(db: &TestDb, cases: Vec<(&str, RawAppend, &str)>) {
    let before = db.log_snapshot().await;
    for (what, append, reason) in cases {
        match append.call(db).await {
            Err(LogError::MalformedAppend { reason: r }) => {
                assert!(
                    r.contains(reason),
                    "{what}: the reason {r:?} lacks {reason:?}"
                )
            }
            other => panic!("{what}: expected MalformedAppend, got {other:?}"),
        }
        assert_eq!(db.log_snapshot().await, before, "{what} changed the log");
    }
}

#[tokio::test]
async fn sl_append_refuses_arrays_of_unequal_length_as_sl006_and_writes_nothing() {
    let db = seeded().await;
    let ok = RawAppend::new(&["site-1"], 1);
    // The case found by the black-box test: counts say 3 events, 1 comes;
    // the stream's revision moved past the events written.
    let mut counts_past = ok.clone();
    counts_past.counts = vec![3];
    let mut short_types = RawAppend::new(&["site-1"], 2);
    short_types.types.pop();
    let mut short_data = RawAppend::new(&["site-1"], 2);
    short_data.data.pop();
    let mut short_expected = RawAppend::new(&["site-1", "site-2"], 1);
    short_expected.expected.pop();
    let mut long_parts = ok.clone();
    long_parts.event_part = vec![1, 1];
    let mut wrong_part = RawAppend::new(&["site-1", "site-2"], 1);
    wrong_part.event_part = vec![2, 1];
    let mut negative = RawAppend::new(&["site-1", "site-2"], 1);
    negative.counts = vec![2, -1];
    negative.event_part = vec![1, 1];
    let mut null_stream = RawAppend::new(&["site-1", "site-2"], 1);
    null_stream.streams[1] = None;
    let mut unknown_expectation = ok.clone();
    unknown_expectation.expected = vec![-9];
    refused_as_malformed(
        &db,
        vec![
            ("counts past the events", counts_past, "p_counts"),
            ("one type short", short_types, "event arrays differ"),
            ("one data short", short_data, "event arrays differ"),
            (
                "one expectation short",
                short_expected,
                "part arrays differ",
            ),
            ("an event part too many", long_parts, "event arrays differ"),
            ("events in the other part", wrong_part, "part 1"),
            ("a negative count", negative, "negative"),
            ("a NULL stream", null_stream, "p_streams has a NULL element"),
            ("an unknown expectation", unknown_expectation, "-9"),
        ],
    )
    .await;
    // The well-formed arrays are written, and the stream's revision follows
    // the events.
    assert_eq!(ok.call(&db).await.expect("a well-formed append"), 1);
    let revision: i64 =
        sqlx::query_scalar("SELECT last_revision FROM sl_streams WHERE stream_name = 'site-1'")
            .fetch_one(db.pool())
            .await
            .unwrap();
    assert_eq!(revision, 2, "seeded with two events, then one");
}

#[tokio::test]
async fn sl_append_refuses_a_stream_or_an_event_id_named_twice_with_typed_errors_and_writes_nothing(
) {
    let db = seeded().await;
    let before = db.log_snapshot().await;
    // Named twice as a new stream, and as one that exists.
    for stream in ["site-2", "site-1"] {
        let twice = RawAppend::new(&[stream, stream], 1);
        assert!(
            matches!(
                twice.call(&db).await,
                Err(LogError::Invalid(InvalidInput::DuplicateStream(ref s))) if s == stream
            ),
            "{stream} twice"
        );
    }
    // Twice as a guard (a part without events) after a written part.
    let mut guarded_twice = RawAppend::new(&["site-2", "site-3"], 1);
    guarded_twice.streams.push(Some("site-3".into()));
    guarded_twice.expected.push(-1);
    guarded_twice.counts.push(0);
    assert!(matches!(
        guarded_twice.call(&db).await,
        Err(LogError::Invalid(InvalidInput::DuplicateStream(ref s))) if s == "site-3"
    ));
    let mut id_twice = RawAppend::new(&["site-2"], 3);
    id_twice.event_ids[2] = id_twice.event_ids[0];
    let id = id_twice.event_ids[0];
    assert!(matches!(
        id_twice.call(&db).await,
        Err(LogError::Invalid(InvalidInput::DuplicateEventId(d))) if d == id
    ));
    let mut id_in_two_streams = RawAppend::new(&["site-2", "site-3"], 1);
    id_in_two_streams.event_ids[1] = id_in_two_streams.event_ids[0];
    assert!(matches!(
        id_in_two_streams.call(&db).await,
        Err(LogError::Invalid(InvalidInput::DuplicateEventId(_)))
    ));
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn sl_append_batch_refuses_malformed_arrays_and_names_twice_within_an_append_and_writes_nothing(
) {
    let db = seeded().await;
    let before = db.log_snapshot().await;
    let two = |streams: &[&str]| RawAppend::new(streams, 1);
    let mut counts_past = two(&["site-2", "site-3"]).batch(&[1, 2]);
    counts_past.counts = vec![1, 4];
    let mut short_numbers = two(&["site-2", "site-3"]).batch(&[1]);
    short_numbers.part_append = Some(vec![1]);
    refused_as_malformed(
        &db,
        vec![
            ("counts past the events", counts_past, "p_counts"),
            ("a part without a number", short_numbers, "append number"),
            (
                "appends not numbered from 1",
                two(&["site-2", "site-3"]).batch(&[2, 3]),
                "p_part_append",
            ),
            (
                "a gap in the numbers",
                two(&["site-2", "site-3"]).batch(&[1, 3]),
                "p_part_append",
            ),
        ],
    )
    .await;
    // A stream named twice within one append of the batch.
    assert!(matches!(
        two(&["site-2", "site-2"]).batch(&[1, 1]).call(&db).await,
        Err(LogError::Invalid(InvalidInput::DuplicateStream(ref s))) if s == "site-2"
    ));
    // An event id named twice within one append of the batch.
    let mut id_twice = two(&["site-2", "site-3", "site-4"]).batch(&[1, 1, 2]);
    id_twice.event_ids[1] = id_twice.event_ids[0];
    let id = id_twice.event_ids[0];
    assert!(matches!(
        id_twice.call(&db).await,
        Err(LogError::Invalid(InvalidInput::DuplicateEventId(d))) if d == id
    ));
    assert_eq!(db.log_snapshot().await, before);
    // Appends of one batch may name the same stream: each is decided after
    // the ones before it, and both are written.
    let rows = two(&["site-2", "site-2"])
        .batch(&[1, 2])
        .call(&db)
        .await
        .expect("two appends to one stream in one batch");
    assert_eq!(rows, 2);
    let revisions: Vec<i64> = sqlx::query_scalar(
        "SELECT stream_revision FROM sl_events WHERE stream_name = 'site-2' ORDER BY 1",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(revisions, vec![0, 1]);
}
