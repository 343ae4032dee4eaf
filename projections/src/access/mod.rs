//! The access model: who can see what, and why.
//!
//! `docs/access-model.md` is the definition; [`AccessIndex`] implements it
//! over in-memory structures kept current event by event (the level itself
//! is `shareledger_core::access_rule::level`, asked with the facts the
//! index keeps, as the command side asks it), and
//! [`LiveAccess`] keeps one index following the log in the serving process
//! and lets queries demand "at least as fresh as position P" (consistency
//! tokens).

mod changes;
mod explain;
mod facts;
mod index;
mod live;
pub mod snapshot;

pub use changes::{ChangeKind, EventAccessChange};
pub use explain::{Explanation, Fact, Missing, Path, Step};
pub use facts::{Person, UserFacts};
pub use index::{AccessIndex, IndexSizes};
pub use live::{LiveAccess, LiveOptions};

use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{
    AccessLevel, Name, ObjectId, ObjectKind, ScorecardId, SiteCode, SiteId, UserId, Username,
};

/// What a question is about: a scorecard or an object.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(tag = "type", content = "id", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Target {
    Scorecard(ScorecardId),
    Object(ObjectId),
}

/// "scorecard <id>" or "object <id>".
impl std::fmt::Display for Target {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Target::Scorecard(id) => write!(f, "scorecard {id}"),
            Target::Object(id) => write!(f, "object {id}"),
        }
    }
}

/// The kind of a target, for Q-2's filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum TargetKind {
    Scorecard,
    Object(ObjectKind),
}

/// Q-2's question: what a user can see, filtered, one page at a time.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct LookupQuery {
    /// Only targets owned by this site.
    pub site: Option<SiteId>,
    /// Only targets of this kind.
    pub kind: Option<TargetKind>,
    /// The cursor of the previous page (`LookupPage::next`).
    pub after: Option<String>,
    /// Page size, clamped to `1..=MAX_PAGE` (0 means `DEFAULT_PAGE`).
    pub limit: usize,
}

/// The largest page a lookup returns.
pub const MAX_PAGE: usize = 10_000;
/// The page size when none is asked for.
pub const DEFAULT_PAGE: usize = 100;

/// One target a user can see.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Visible {
    pub target: Target,
    pub kind: TargetKind,
    /// The scorecard's or object's name.
    pub name: Name,
    /// The owner site.
    pub site: SiteId,
    /// The owner site's code and name, shown with every shared item
    /// (R-SHARE-6).
    pub origin_code: SiteCode,
    pub origin_name: Name,
    pub level: AccessLevel,
}

/// One page of a lookup. `next` is set when more items follow.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LookupPage {
    pub items: Vec<Visible>,
    pub next: Option<String>,
}

/// One user who can see a target.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Viewer {
    pub site: SiteId,
    pub user: UserId,
    pub level: AccessLevel,
    /// The user's username and name on their site.
    pub username: Username,
    pub name: Name,
    /// The user's site's code.
    pub site_code: SiteCode,
}

/// Why an access question has no answer.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AccessError {
    #[error("no user {0} is known")]
    UnknownUser(UserId),
    #[error("no {0} is known")]
    UnknownTarget(Target),
    #[error("after: {0:?} is not a cursor this service gave out for this list (a cursor names a place in one list; the API document states each list's pattern)")]
    BadCursor(String),
    #[error("the access model reached position {reached}, not {wanted}, within {waited_ms} ms")]
    NotFreshEnough {
        wanted: u64,
        reached: u64,
        waited_ms: u64,
    },
    /// The index may be behind the log: its follower is not following
    /// (retrying after a fault, failed, or silent), or it did not catch up
    /// with the log's known head in time. Never answered from.
    #[error("the access model is at position {reached} and the log at {head} or beyond; it is {state}: not answering from a possibly stale model")]
    Stale {
        reached: u64,
        head: u64,
        state: String,
    },
}

impl AccessError {
    /// A stable code per variant, for the HTTP edge.
    pub fn code(&self) -> &'static str {
        match self {
            AccessError::UnknownUser(_) => "unknown_user",
            AccessError::UnknownTarget(_) => "unknown_target",
            AccessError::BadCursor(_) => "bad_cursor",
            AccessError::NotFreshEnough { .. } => "not_fresh_enough",
            AccessError::Stale { .. } => "read_model_stale",
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An unknown target is named as the domain names it, not as Rust
    /// debug text (`Object(ObjectId(…))`).
    #[test]
    fn an_unknown_target_is_named_in_the_domains_words() {
        let object = ObjectId::new();
        let scorecard = ScorecardId::new();
        assert_eq!(
            AccessError::UnknownTarget(Target::Object(object)).to_string(),
            format!("no object {object} is known")
        );
        assert_eq!(
            AccessError::UnknownTarget(Target::Scorecard(scorecard)).to_string(),
            format!("no scorecard {scorecard} is known")
        );
    }
}
