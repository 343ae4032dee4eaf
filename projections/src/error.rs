//! The projections' error type: one enum for everything that stops a read
//! model from following the log.

use shareledger_core::catalog::DecodeError;
use shareledger_events::store::LogError;

/// Why a projection could not apply the log or answer.
#[derive(Debug, thiserror::Error)]
pub enum ProjectionError {
    /// The log could not be read.
    #[error(transparent)]
    Log(#[from] LogError),
    /// A read model's tables could not be written or read.
    #[error("read model database error: {0}")]
    Database(#[from] sqlx::Error),
    /// A stored event does not decode into the catalog.
    #[error("event at position {position} does not decode: {source}")]
    Decode {
        position: u64,
        #[source]
        source: DecodeError,
    },
    /// An event's stream name does not name the site it belongs to.
    #[error("event at position {position} is in stream {stream}, which names no site")]
    BadStream { position: u64, stream: String },
    /// Events were applied out of global order.
    #[error("event at position {position} applied after position {applied}")]
    OutOfOrder { position: u64, applied: u64 },
    /// An index snapshot could not be encoded or decoded.
    #[error("index snapshot: {0}")]
    Snapshot(String),
    /// The access index did not load the log in time.
    #[error("the access index did not load: {0}")]
    NotLoaded(String),
    /// A projection with this name is not registered.
    #[error("no projection is named {0}")]
    UnknownProjection(String),
    /// A users-list cursor that this service did not give out, or one of
    /// another sort or direction.
    #[error("the cursor {0:?} is not one this query gave out")]
    BadCursor(String),
    /// An access question about a user the access tables do not know.
    #[error("no user {0} is known")]
    UnknownUser(shareledger_core::catalog::UserId),
    /// An access question about a scorecard or object the access tables do
    /// not know.
    #[error("no {0} is known")]
    UnknownTarget(crate::access::Target),
    /// A projection handed to the runtime has a bad name or version, or the
    /// same name as another one.
    #[error("projection {name}: {reason}")]
    InvalidProjection { name: String, reason: &'static str },
    /// A generation's checkpoint is behind the events the runtime holds:
    /// something moved it back, and the runtime will not guess.
    #[error("checkpoint {checkpoint} is at {stored}, behind {expected}: it was moved back")]
    CheckpointMovedBack {
        checkpoint: String,
        stored: u64,
        expected: u64,
    },
    /// A projection's task stopped with an error (shown by the runtime's
    /// status, returned by its shutdown and waits).
    #[error("projection {name} failed: {source}")]
    Failed {
        name: String,
        #[source]
        source: std::sync::Arc<ProjectionError>,
    },
    /// A projection's code panicked; its task ended.
    #[error("projection {name} panicked: {message}")]
    Panicked { name: String, message: String },
    /// A projection's task has been stopped and answers nothing more.
    #[error("projection {0} is stopped")]
    Stopped(String),
    /// A projection may be behind the log: it is not following (retrying
    /// after a fault, failed, or silent), or did not catch up with the
    /// log's known head in time. Never answered from.
    #[error("read model {name} is at position {reached} and the log at {head} or beyond; it is {state}: not answering from a possibly stale model")]
    Stale {
        name: String,
        reached: u64,
        head: u64,
        state: String,
    },
    /// Waiting for projections to reach a position took longer than allowed.
    #[error("projections {} did not reach position {position} within {} ms", behind.join(", "), waited.as_millis())]
    Timeout {
        position: u64,
        waited: std::time::Duration,
        behind: Vec<String>,
    },
}
