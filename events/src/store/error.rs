//! The one error type of the log's boundary, and how PostgreSQL's answers
//! (custom SQLSTATEs raised by `sl_append`, `sl_append_batch` and
//! `sl_delete_stream`) become it.

use serde::Deserialize;
use uuid::Uuid;

use crate::envelope::{ExpectedRevision, InvalidInput, StreamState};

/// Everything that can go wrong talking to the log. Every variant but
/// [`LogError::Database`] and [`LogError::Gap`] means nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum LogError {
    #[error(transparent)]
    Invalid(#[from] InvalidInput),
    #[error("stream {stream}: expected {expected}, but it is at {actual}")]
    WrongExpectedRevision {
        stream: String,
        expected: ExpectedRevision,
        actual: StreamState,
    },
    #[error("stream {stream} is tombstoned: it can never be written or read again")]
    StreamTombstoned { stream: String },
    #[error("stream {stream} not found")]
    StreamNotFound { stream: String },
    #[error("a retried append overlaps only partly: {} event(s) written already, {} not", written.len(), not_written.len())]
    PartialDuplicate {
        written: Vec<Uuid>,
        not_written: Vec<Uuid>,
    },
    #[error("event ids {event_ids:?} were written already, to other streams or in another order")]
    EventIdsTaken { event_ids: Vec<Uuid> },
    /// The arrays given to `sl_append` or `sl_append_batch` do not describe
    /// an append (SQLSTATE `SL006`; only a direct database caller can send
    /// them, the store lays them out right).
    #[error("the arrays given to the log do not describe an append: {reason}")]
    MalformedAppend { reason: String },
    /// An append condition failed (SQLSTATE `SL009`): the event at
    /// `position`, of `event_type`, tagged `tag`, was appended after the
    /// position the condition allowed. Nothing was written.
    #[error("the append's consistency boundary moved: event {position} ({event_type}) tagged {tag} was appended since it was read")]
    ConditionFailed {
        tag: String,
        event_type: String,
        position: u64,
    },
    /// An append with a condition before the tags of the events stored
    /// earlier were derived (SQLSTATE `SL010`; `PgEventStore::migrate`
    /// derives them). Nothing was written.
    #[error(
        "the tags of the events stored before tags existed are not derived yet: run the migrations"
    )]
    TagsNotDerived,
    #[error("the log skipped from position {after} to {found}: the log has been altered")]
    Gap { after: u64, found: u64 },
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
}

#[derive(Deserialize)]
struct ExpectationDetail {
    stream: String,
    expected: i64,
    actual: i64,
}

#[derive(Deserialize)]
struct ConflictDetail {
    tag: String,
    event_type: String,
    position: u64,
}

#[derive(Deserialize)]
struct StreamDetail {
    stream: String,
}

#[derive(Deserialize)]
struct PartialDetail {
    written: Vec<Uuid>,
    not_written: Vec<Uuid>,
}

#[derive(Deserialize)]
struct ReasonDetail {
    reason: String,
}

#[derive(Deserialize)]
struct EventIdDetail {
    event_id: Uuid,
}

#[derive(Deserialize)]
struct IdsDetail {
    event_ids: Vec<Uuid>,
}

fn decode_expected(n: i64) -> ExpectedRevision {
    match n {
        -1 => ExpectedRevision::Any,
        -2 => ExpectedRevision::NoStream,
        -3 => ExpectedRevision::StreamExists,
        n => ExpectedRevision::Exact(n as u64),
    }
}

fn decode_state(n: i64) -> StreamState {
    if n < 0 {
        StreamState::NoStream
    } else {
        StreamState::At(n as u64)
    }
}

impl LogError {
    /// Turns an error from the SQL functions into its typed form (public
    /// for callers of the functions outside the store: tests, tools).
    pub fn from_db(error: sqlx::Error) -> Self {
        let Some(db) = error.as_database_error() else {
            return LogError::Database(error);
        };
        let detail = db
            .try_downcast_ref::<sqlx::postgres::PgDatabaseError>()
            .and_then(|p| p.detail())
            .unwrap_or("{}");
        match db.code().as_deref().and_then(|code| typed(code, detail)) {
            Some(typed) => typed,
            None => LogError::Database(error),
        }
    }
}

/// The typed error for one of the SQL functions' own SQLSTATEs.
pub(crate) fn typed(code: &str, detail: &str) -> Option<LogError> {
    match code {
        "SL001" => serde_json::from_str::<ExpectationDetail>(detail)
            .ok()
            .map(|d| LogError::WrongExpectedRevision {
                stream: d.stream,
                expected: decode_expected(d.expected),
                actual: decode_state(d.actual),
            }),
        "SL002" => serde_json::from_str::<StreamDetail>(detail)
            .ok()
            .map(|d| LogError::StreamTombstoned { stream: d.stream }),
        "SL003" => {
            serde_json::from_str::<PartialDetail>(detail)
                .ok()
                .map(|d| LogError::PartialDuplicate {
                    written: d.written,
                    not_written: d.not_written,
                })
        }
        "SL004" => {
            serde_json::from_str::<IdsDetail>(detail)
                .ok()
                .map(|d| LogError::EventIdsTaken {
                    event_ids: d.event_ids,
                })
        }
        "SL005" => serde_json::from_str::<StreamDetail>(detail)
            .ok()
            .map(|d| LogError::StreamNotFound { stream: d.stream }),
        "SL006" => serde_json::from_str::<ReasonDetail>(detail)
            .ok()
            .map(|d| LogError::MalformedAppend { reason: d.reason }),
        // A stream or an event id named twice in one append: the same typed
        // errors the store's own checks give before calling.
        "SL007" => serde_json::from_str::<StreamDetail>(detail)
            .ok()
            .map(|d| LogError::Invalid(InvalidInput::DuplicateStream(d.stream))),
        "SL008" => serde_json::from_str::<EventIdDetail>(detail)
            .ok()
            .map(|d| LogError::Invalid(InvalidInput::DuplicateEventId(d.event_id))),
        "SL009" => serde_json::from_str::<ConflictDetail>(detail)
            .ok()
            .map(|d| LogError::ConditionFailed {
                tag: d.tag,
                event_type: d.event_type,
                position: d.position,
            }),
        "SL010" => Some(LogError::TagsNotDerived),
        _ => None,
    }
}

fn transient_code(code: &str, constraint: Option<&str>) -> bool {
    match code {
        "40P01" | "40001" => true,
        "23505" => constraint == Some("sl_events_event_id_key"),
        _ => false,
    }
}

/// Whether re-running the same append may succeed: a deadlock or a
/// serialization failure, or a unique violation on an event id written by a
/// concurrent append that has committed since (the re-run then finds it).
pub(crate) fn is_transient(error: &sqlx::Error) -> bool {
    let Some(db) = error.as_database_error() else {
        return false;
    };
    db.code()
        .as_deref()
        .is_some_and(|code| transient_code(code, db.constraint()))
}
