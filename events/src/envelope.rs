//! The envelope every event travels in: stream names, event types, expected
//! revisions, metadata and the recorded form read back from the log.
//!
//! Everything here is pure data. Values that have rules (a stream name, an
//! event type, the data of a new event) can only be built through their
//! parsers, so an invalid one cannot exist; the rules and their limits are
//! listed once, as constants, below.

use std::fmt;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Longest stream name, in bytes.
pub const MAX_STREAM_NAME_LEN: usize = 200;
/// Longest event type name, in bytes.
pub const MAX_EVENT_TYPE_LEN: usize = 128;
/// Largest event: its data and metadata serialized as JSON, together, in bytes.
///
/// Sharing events are small (ids, codes, a few names); 64 KiB leaves room for
/// any of them by two orders of magnitude while keeping one append bounded.
pub const MAX_EVENT_BYTES: usize = 64 * 1024;
/// Most events in one append call (all streams of a multi-stream append together).
pub const MAX_EVENTS_PER_APPEND: usize = 1_000;

/// Why a value given to the log is not acceptable. Nothing is written when
/// one of these is returned.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidInput {
    #[error("stream name is empty")]
    EmptyStreamName,
    #[error("stream name is {len} bytes long; the limit is {MAX_STREAM_NAME_LEN}")]
    StreamNameTooLong { len: usize },
    #[error("stream name {name:?} has a character other than ASCII letters, digits and - _ . : @ at byte {at}")]
    StreamNameCharacter { name: String, at: usize },
    #[error("stream name {name:?} must start with an ASCII letter or digit")]
    StreamNameStart { name: String },
    #[error("event type is empty")]
    EmptyEventType,
    #[error("event type {name:?} must be an ASCII letter followed by letters, digits, '_' or '.', at most {MAX_EVENT_TYPE_LEN} bytes")]
    EventTypeFormat { name: String },
    #[error("schema version must be 1 or more")]
    SchemaVersionZero,
    #[error("event data must be a JSON object, got {found}")]
    DataNotObject { found: &'static str },
    #[error("event is {size} bytes of data and metadata; the limit is {MAX_EVENT_BYTES}")]
    EventTooLarge { size: usize },
    #[error("an append needs at least one event")]
    NoEvents,
    #[error("an append has {count} events; the limit is {MAX_EVENTS_PER_APPEND}")]
    TooManyEvents { count: usize },
    #[error("event id {0} appears twice in one append")]
    DuplicateEventId(Uuid),
    #[error("stream {0} appears twice in one multi-stream append")]
    DuplicateStream(String),
    #[error("a read limit must be at least 1")]
    ZeroLimit,
    #[error("tag {tag:?}: {reason}")]
    TagFormat { tag: String, reason: &'static str },
    #[error(
        "an event has {count} tags; the limit is {}",
        crate::dcb::MAX_TAGS_PER_EVENT
    )]
    TooManyTags { count: usize },
    #[error(
        "an append condition has {count} items; the limit is {}",
        crate::dcb::MAX_CONDITION_ITEMS
    )]
    TooManyConditionItems { count: usize },
    /// PostgreSQL stores no NUL character (U+0000) in text or JSON: the
    /// path is a JSON Pointer (RFC 6901) to the string or member name that
    /// holds one, the NUL shown as `\u0000`.
    #[error("{} holds a NUL character (\\u0000), which cannot be stored", shown_pointer(.path))]
    UnstorableText { path: String },
}

/// A JSON Pointer as the messages show it (the empty pointer is the whole
/// value).
fn shown_pointer(path: &str) -> String {
    if path.is_empty() {
        "the value".to_owned()
    } else {
        format!("the text at {path}")
    }
}

/// Where the first NUL character (U+0000) of a JSON value is, in a string
/// or in a member name: a JSON Pointer (RFC 6901; `~` and `/` of member
/// names escaped as `~0` and `~1`, the NUL itself shown as `\u0000`), or
/// `None` when there is none. PostgreSQL can store no NUL in `text` or
/// `jsonb`, so such a value must be refused before it reaches the log.
pub fn nul_pointer(value: &serde_json::Value) -> Option<String> {
    fn segment(name: &str) -> String {
        name.replace('~', "~0")
            .replace('/', "~1")
            .replace('\0', "\\u0000")
    }
    fn walk(value: &serde_json::Value, path: &mut Vec<String>) -> bool {
        match value {
            serde_json::Value::String(s) => s.contains('\0'),
            serde_json::Value::Array(items) => items.iter().enumerate().any(|(i, item)| {
                path.push(i.to_string());
                let found = walk(item, path);
                if !found {
                    path.pop();
                }
                found
            }),
            serde_json::Value::Object(members) => members.iter().any(|(name, member)| {
                path.push(segment(name));
                let found = name.contains('\0') || walk(member, path);
                if !found {
                    path.pop();
                }
                found
            }),
            _ => false,
        }
    }
    let mut path = Vec::new();
    walk(value, &mut path).then(|| path.iter().map(|s| format!("/{s}")).collect())
}

fn json_kind(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "a boolean",
        serde_json::Value::Number(_) => "a number",
        serde_json::Value::String(_) => "a string",
        serde_json::Value::Array(_) => "an array",
        serde_json::Value::Object(_) => "an object",
    }
}

/// The name of a stream: 1 to 200 ASCII letters, digits and `- _ . : @`,
/// starting with a letter or digit. The part before the first `-` is the
/// stream's [`Category`] (`site-7f3a…` is in category `site`).
///
/// Names starting with `$` belong to the log itself (a stream's lifecycle
/// stream is `$$<name>`) and cannot be parsed from user input.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize)]
#[serde(transparent)]
pub struct StreamName(String);

impl StreamName {
    /// Parses a user stream name.
    pub fn parse(name: impl Into<String>) -> Result<Self, InvalidInput> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidInput::EmptyStreamName);
        }
        if name.len() > MAX_STREAM_NAME_LEN {
            return Err(InvalidInput::StreamNameTooLong { len: name.len() });
        }
        if let Some(at) = name
            .bytes()
            .position(|b| !(b.is_ascii_alphanumeric() || b"-_.:@".contains(&b)))
        {
            return Err(InvalidInput::StreamNameCharacter { name, at });
        }
        if !name.as_bytes()[0].is_ascii_alphanumeric() {
            return Err(InvalidInput::StreamNameStart { name });
        }
        Ok(Self(name))
    }

    /// The name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The category: the part before the first `-` (the whole name when it has none).
    pub fn category(&self) -> Category {
        Category(self.0.split('-').next().unwrap_or(&self.0).to_owned())
    }

    /// The log's own stream that records this stream's lifecycle (deletes).
    pub fn lifecycle_stream(&self) -> String {
        format!("$${}", self.0)
    }
}

impl<'de> Deserialize<'de> for StreamName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        StreamName::parse(raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for StreamName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A stream category: the part of a stream name before its first `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct Category(String);

impl Category {
    /// Parses a category: a valid stream name without `-`.
    pub fn parse(name: impl Into<String>) -> Result<Self, InvalidInput> {
        let name = name.into();
        let as_stream = StreamName::parse(name.clone())?;
        if name.contains('-') {
            return Err(InvalidInput::StreamNameCharacter {
                at: name.find('-').unwrap_or(0),
                name,
            });
        }
        Ok(as_stream.category())
    }

    /// The category as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Category {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The type of an event, such as `ConnectionRequested`: an ASCII letter then
/// letters, digits, `_` or `.`, at most 128 bytes.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(transparent)]
pub struct EventType(String);

impl EventType {
    /// Parses an event type name.
    pub fn parse(name: impl Into<String>) -> Result<Self, InvalidInput> {
        let name = name.into();
        if name.is_empty() {
            return Err(InvalidInput::EmptyEventType);
        }
        let ok = name.len() <= MAX_EVENT_TYPE_LEN
            && name.as_bytes()[0].is_ascii_alphabetic()
            && name
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'.');
        if !ok {
            return Err(InvalidInput::EventTypeFormat { name });
        }
        Ok(Self(name))
    }

    /// The type name as stored.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl<'de> Deserialize<'de> for EventType {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        EventType::parse(raw).map_err(serde::de::Error::custom)
    }
}

impl fmt::Display for EventType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// Who caused an event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Actor {
    /// A user acting on a site.
    User { user_id: Uuid, site_id: Uuid },
    /// ShareLedger itself, applying a consequence of another event.
    System,
    /// An operator or tool acting outside any site (migrations, benchmarks, tests).
    Operator { name: String },
}

/// What every event records besides its data: who caused it and within which
/// command (correlation) as a result of which event or command (causation).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct EventMetadata {
    pub actor: Actor,
    pub correlation_id: Uuid,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub causation_id: Option<Uuid>,
}

impl EventMetadata {
    /// Metadata for an event caused directly by a command with the given correlation id.
    pub fn new(actor: Actor, correlation_id: Uuid) -> Self {
        Self {
            actor,
            correlation_id,
            causation_id: None,
        }
    }

    /// The same metadata, marked as caused by `causation_id`.
    pub fn caused_by(mut self, causation_id: Uuid) -> Self {
        self.causation_id = Some(causation_id);
        self
    }
}

/// An event ready to be appended: its id (the idempotency key of the append),
/// type, schema version, JSON object data and metadata, checked against the
/// limits above.
#[derive(Debug, Clone, PartialEq)]
pub struct NewEvent {
    id: Uuid,
    event_type: EventType,
    schema_version: u32,
    data: serde_json::Value,
    metadata: EventMetadata,
    metadata_json: serde_json::Value,
    tags: Vec<crate::dcb::Tag>,
}

impl NewEvent {
    /// Builds and checks a new event.
    pub fn new(
        id: Uuid,
        event_type: EventType,
        schema_version: u32,
        data: serde_json::Value,
        metadata: EventMetadata,
    ) -> Result<Self, InvalidInput> {
        if schema_version == 0 {
            return Err(InvalidInput::SchemaVersionZero);
        }
        if !data.is_object() {
            return Err(InvalidInput::DataNotObject {
                found: json_kind(&data),
            });
        }
        let metadata_json =
            serde_json::to_value(&metadata).expect("metadata always serializes to JSON");
        if let Some(path) = nul_pointer(&data) {
            return Err(InvalidInput::UnstorableText { path });
        }
        if let Some(path) = nul_pointer(&metadata_json) {
            return Err(InvalidInput::UnstorableText {
                path: format!("/metadata{path}"),
            });
        }
        let size = data.to_string().len() + metadata_json.to_string().len();
        if size > MAX_EVENT_BYTES {
            return Err(InvalidInput::EventTooLarge { size });
        }
        Ok(Self {
            id,
            event_type,
            schema_version,
            data,
            metadata,
            metadata_json,
            tags: Vec::new(),
        })
    }

    /// The event with these tags (what it is about, for append conditions;
    /// see [`crate::dcb`]), each kept once.
    pub fn with_tags(mut self, tags: Vec<crate::dcb::Tag>) -> Result<Self, InvalidInput> {
        let mut tags = tags;
        tags.sort();
        tags.dedup();
        if tags.len() > crate::dcb::MAX_TAGS_PER_EVENT {
            return Err(InvalidInput::TooManyTags { count: tags.len() });
        }
        self.tags = tags;
        Ok(self)
    }

    /// The event's tags.
    pub fn tags(&self) -> &[crate::dcb::Tag] {
        &self.tags
    }

    pub fn id(&self) -> Uuid {
        self.id
    }
    pub fn event_type(&self) -> &EventType {
        &self.event_type
    }
    pub fn schema_version(&self) -> u32 {
        self.schema_version
    }
    pub fn data(&self) -> &serde_json::Value {
        &self.data
    }
    pub fn metadata(&self) -> &EventMetadata {
        &self.metadata
    }
    /// The metadata as the JSON object that is stored.
    pub fn metadata_json(&self) -> &serde_json::Value {
        &self.metadata_json
    }
}

/// What the writer expects of a stream before its append, as in EventStoreDB.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "revision", rename_all = "snake_case")]
pub enum ExpectedRevision {
    /// No check.
    Any,
    /// The stream must not exist (never written, or soft-deleted).
    NoStream,
    /// The stream must exist.
    StreamExists,
    /// The stream's last revision must be exactly this.
    Exact(u64),
}

/// What a stream is, as far as an expected-revision check is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "kind", content = "revision", rename_all = "snake_case")]
pub enum StreamState {
    /// Never written, or soft-deleted with nothing appended since.
    NoStream,
    /// Exists; its last event has this revision.
    At(u64),
}

impl fmt::Display for StreamState {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StreamState::NoStream => f.write_str("no stream"),
            StreamState::At(r) => write!(f, "revision {r}"),
        }
    }
}

impl ExpectedRevision {
    /// Whether a stream in `state` satisfies this expectation.
    pub fn is_met_by(self, state: StreamState) -> bool {
        match (self, state) {
            (ExpectedRevision::Any, _) => true,
            (ExpectedRevision::NoStream, StreamState::NoStream) => true,
            (ExpectedRevision::StreamExists, StreamState::At(_)) => true,
            (ExpectedRevision::Exact(e), StreamState::At(a)) => e == a,
            _ => false,
        }
    }
}

impl fmt::Display for ExpectedRevision {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ExpectedRevision::Any => f.write_str("any"),
            ExpectedRevision::NoStream => f.write_str("no stream"),
            ExpectedRevision::StreamExists => f.write_str("stream exists"),
            ExpectedRevision::Exact(r) => write!(f, "revision {r}"),
        }
    }
}

/// An event as stored in the log.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct RecordedEvent {
    /// Position in the whole log: 1, 2, 3, … without gaps, in commit order.
    pub global_position: u64,
    /// The stream the event belongs to (`$$…` for the log's lifecycle events).
    pub stream: String,
    /// Revision within its stream: 0, 1, 2, …
    pub stream_revision: u64,
    pub event_id: Uuid,
    pub event_type: String,
    pub schema_version: u32,
    pub data: serde_json::Value,
    pub metadata: serde_json::Value,
    pub recorded_at: DateTime<Utc>,
}

impl RecordedEvent {
    /// The metadata parsed into its typed form, if it has that form.
    pub fn typed_metadata(&self) -> Result<EventMetadata, serde_json::Error> {
        serde_json::from_value(self.metadata.clone())
    }
}

/// The direction of a read.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Direction {
    Forwards,
    Backwards,
}

/// Event types the log writes itself, into a stream's lifecycle stream `$$<name>`.
pub mod lifecycle {
    /// A stream was soft-deleted: hidden, writable again later.
    pub const STREAM_DELETED: &str = "$StreamDeleted";
    /// A stream was tombstoned: hidden and never writable again.
    pub const STREAM_TOMBSTONED: &str = "$StreamTombstoned";
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn meta() -> EventMetadata {
        EventMetadata::new(Actor::System, Uuid::nil())
    }

    #[test]
    fn stream_name_rejects_empty_long_and_odd_characters() {
        assert_eq!(StreamName::parse(""), Err(InvalidInput::EmptyStreamName));
        assert!(matches!(
            StreamName::parse("a".repeat(201)),
            Err(InvalidInput::StreamNameTooLong { len: 201 })
        ));
        assert!(matches!(
            StreamName::parse("site 1"),
            Err(InvalidInput::StreamNameCharacter { at: 4, .. })
        ));
        assert!(matches!(
            StreamName::parse("$$site-1"),
            Err(InvalidInput::StreamNameCharacter { at: 0, .. })
        ));
        assert!(matches!(
            StreamName::parse("-site"),
            Err(InvalidInput::StreamNameStart { .. })
        ));
        assert!(StreamName::parse("a".repeat(200)).is_ok());
    }

    #[test]
    fn category_is_the_part_before_the_first_dash() {
        let s = StreamName::parse("site-1-2").unwrap();
        assert_eq!(s.category().as_str(), "site");
        assert_eq!(
            StreamName::parse("plain").unwrap().category().as_str(),
            "plain"
        );
        assert!(Category::parse("si-te").is_err());
        assert_eq!(Category::parse("site").unwrap().as_str(), "site");
    }

    #[test]
    fn event_type_format() {
        assert!(EventType::parse("ConnectionRequested").is_ok());
        assert!(EventType::parse("v2.Thing_done").is_ok());
        assert_eq!(EventType::parse(""), Err(InvalidInput::EmptyEventType));
        assert!(EventType::parse("1Thing").is_err());
        assert!(EventType::parse("$StreamDeleted").is_err());
        assert!(EventType::parse("a".repeat(129)).is_err());
    }

    #[test]
    fn new_event_requires_object_data_within_the_size_limit() {
        let t = EventType::parse("Happened").unwrap();
        let err = NewEvent::new(Uuid::new_v4(), t.clone(), 1, json!([1]), meta()).unwrap_err();
        assert_eq!(err, InvalidInput::DataNotObject { found: "an array" });
        let err = NewEvent::new(Uuid::new_v4(), t.clone(), 0, json!({}), meta()).unwrap_err();
        assert_eq!(err, InvalidInput::SchemaVersionZero);
        let big = json!({ "x": "y".repeat(MAX_EVENT_BYTES) });
        assert!(matches!(
            NewEvent::new(Uuid::new_v4(), t.clone(), 1, big, meta()),
            Err(InvalidInput::EventTooLarge { .. })
        ));
        assert!(NewEvent::new(Uuid::new_v4(), t, 1, json!({"a": 1}), meta()).is_ok());
    }

    #[test]
    fn new_event_refuses_a_nul_in_any_string_or_member_name_naming_where() {
        let t = EventType::parse("Happened").unwrap();
        let new = |data| NewEvent::new(Uuid::new_v4(), t.clone(), 1, data, meta());
        for (data, path) in [
            (json!({"value": "a\u{0}b"}), "/value"),
            (
                json!({"rows": [{"ok": "x"}, {"name": "\u{0}"}]}),
                "/rows/1/name",
            ),
            (json!({"a\u{0}b": 1}), "/a\\u0000b"),
            (json!({"a/b~c": ["\u{0}"]}), "/a~1b~0c/0"),
        ] {
            assert_eq!(
                new(data.clone()),
                Err(InvalidInput::UnstorableText { path: path.into() }),
                "{data}"
            );
        }
        let operator = EventMetadata::new(
            Actor::Operator {
                name: "ops\u{0}".into(),
            },
            Uuid::nil(),
        );
        assert_eq!(
            NewEvent::new(Uuid::new_v4(), t.clone(), 1, json!({}), operator),
            Err(InvalidInput::UnstorableText {
                path: "/metadata/actor/name".into()
            })
        );
        let message = InvalidInput::UnstorableText {
            path: "/value".into(),
        }
        .to_string();
        assert_eq!(
            message,
            "the text at /value holds a NUL character (\\u0000), which cannot be stored"
        );
        assert!(
            new(json!({"value": "a\\u0000b", "n": 0})).is_ok(),
            "an escaped backslash is no NUL"
        );
    }

    #[test]
    fn expected_revision_rules() {
        use ExpectedRevision::*;
        assert!(Any.is_met_by(StreamState::NoStream));
        assert!(NoStream.is_met_by(StreamState::NoStream));
        assert!(!NoStream.is_met_by(StreamState::At(0)));
        assert!(StreamExists.is_met_by(StreamState::At(3)));
        assert!(!StreamExists.is_met_by(StreamState::NoStream));
        assert!(Exact(3).is_met_by(StreamState::At(3)));
        assert!(!Exact(3).is_met_by(StreamState::At(2)));
        assert!(!Exact(0).is_met_by(StreamState::NoStream));
    }

    #[test]
    fn metadata_round_trips_through_json() {
        let m = EventMetadata::new(
            Actor::User {
                user_id: Uuid::new_v4(),
                site_id: Uuid::new_v4(),
            },
            Uuid::new_v4(),
        )
        .caused_by(Uuid::new_v4());
        let v = serde_json::to_value(&m).unwrap();
        assert_eq!(serde_json::from_value::<EventMetadata>(v).unwrap(), m);
    }

    #[test]
    fn stream_name_deserialization_parses() {
        assert!(serde_json::from_value::<StreamName>(json!("ok-1")).is_ok());
        assert!(serde_json::from_value::<StreamName>(json!("not ok")).is_err());
    }
}
