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
    /// A projection with this name is not registered.
    #[error("no projection is named {0}")]
    UnknownProjection(String),
}
