//! A decision's consistency boundary: the events its outcome depends on,
//! as tags and event types (a dynamic consistency boundary, dcb.events), and
//! the stream each of those events is read from.
//!
//! The command service appends a decision's events only if no event inside
//! its boundary was appended after the decision read it (the log checks
//! that atomically, `PgEventStore::append_conditioned`). Events outside the
//! boundary may come and go meanwhile: a decision that declares a narrow
//! boundary never collides with work on other things. A decision that
//! declares none is guarded, as before, by the revisions of every stream it
//! read.
//!
//! The stream says which stream's read the item is about, so that each item
//! asks "nothing after the position that stream was read at", never after
//! an older one: events the decision has already seen never count as
//! conflicts.

use shareledger_events::Tag;

/// Events tagged `tag` (of `types`; any type when empty), which the
/// decision read from `stream`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BoundaryItem {
    pub stream: String,
    pub tag: Tag,
    pub types: &'static [&'static str],
}

/// What an object is, where it shows and what it is inside of: the events
/// that create, place, remove and archive it (field changes and renames are
/// not part of it).
pub const OBJECT_STRUCTURE: &[&str] = &[
    "ObjectCreated",
    "ObjectPlacedOnScorecard",
    "ObjectRemovedFromScorecard",
    "ObjectArchived",
];

/// That a scorecard exists (created, not archived).
pub const SCORECARD_EXISTENCE: &[&str] = &["ScorecardCreated", "ScorecardArchived"];

/// Everything about a user (any event tagged with the user).
pub const ANY: &[&str] = &[];
