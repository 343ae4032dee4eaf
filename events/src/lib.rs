//! ShareLedger's event catalog and event log.
//!
//! * [`envelope`] is pure data: stream names, event types, expected revisions,
//!   metadata and recorded events. It is always compiled and does no IO, so the
//!   decision crate (`shareledger-core`) depends on it alone.
//! * [`dcb`] is pure data too: tags, queries and append conditions
//!   (dynamic consistency boundaries).
//! * [`store`] (cargo feature `store`, on by default) is the log itself on
//!   PostgreSQL: append with expected revisions, idempotent and multi-stream
//!   appends, reads, gap-safe subscriptions and the stream lifecycle. See
//!   `docs/event-store.md` for the design and its guarantees.

pub mod catalog;
pub mod dcb;
pub mod envelope;
#[cfg(feature = "store")]
pub mod store;

pub use dcb::{AppendCondition, Query, QueryItem, Tag};
pub use envelope::{
    Actor, Category, Direction, EventMetadata, EventType, ExpectedRevision, InvalidInput, NewEvent,
    RecordedEvent, StreamName, StreamState,
};
