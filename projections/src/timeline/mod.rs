//! The sharing history (Q-6, the timeline part): who requested, approved,
//! denied, cancelled and revoked which links, what was shared and
//! unshared, which relationships were built and removed, which users were
//! added, changed, given scorecards, deactivated and reactivated; each
//! entry with its time, actor, command and the consequences it caused.
//!
//! * [`Timeline`] (projection `timeline`, built by [`timeline()`]) keeps
//!   one row per event and *involved site* in `timeline_entries`: a link
//!   event is in both sites' timelines, each row naming the other site as
//!   its `partner`. `entries` (in this module) decides which events are
//!   entries and what each says (command, summary, subjects); the
//!   projection writes them.
//! * [`queries`] answers a site's, a link's and a scorecard's timeline from
//!   the live views `rm.timeline_*`, filtered by time and partner, one page
//!   at a time, each entry carrying its consequences nested under it.
//!
//! Which events are entries: every connection event; every site event
//! (registration, settings, users, roles, flags, scorecard access,
//! deactivation and reactivation); of content, scorecards created, objects
//! placed on and removed from scorecards (what partners see through a
//! shared scorecard), relationships built and removed. Not: objects
//! created, field changes (`ObjectFieldUpdated`, `ObjectFieldEdited`), and
//! `SiteCodeClaimed` (the same fact as its `SiteRegistered`).
//!
//! Who is involved: the site of the event's stream; for connection events
//! both sites of the pair; for relationships also the origin site (the one
//! whose object is used); for scorecard access on a partner's shared
//! scorecard also the scorecard's owner.
//!
//! `docs/read-models.md` describes the tables and the queries.

mod entries;
mod projection;
pub mod queries;

use std::sync::Arc;

pub use projection::Timeline;
pub use queries::{
    link_timeline, scorecard_timeline, site_timeline, TimelineEntry, TimelinePage, TimelineQuery,
    DEFAULT_TIMELINE_PAGE, MAX_TIMELINE_PAGE,
};

use crate::projection::SqlProjection;

/// The `timeline` read model, for the runtime.
pub fn timeline() -> Arc<dyn SqlProjection> {
    Arc::new(Timeline)
}

/// `schema` as a quoted SQL identifier.
fn quoted(schema: &str) -> String {
    format!("\"{}\"", schema.replace('"', "\"\""))
}

/// A stored value that does not parse back (the tables were altered).
fn corrupt(reason: impl Into<String>) -> crate::ProjectionError {
    let reason: String = reason.into();
    crate::ProjectionError::Database(sqlx::Error::Decode(reason.into()))
}
