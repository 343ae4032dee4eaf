//! The in-memory access index: normalized facts with their provenance,
//! kept current event by event, and the questions answered from
//! them by the rules of `docs/access-model.md` (the level by
//! `shareledger_core::access_rule::level`, given the facts gathered here).
//!
//! Nothing per (user, target) is materialized: 100,000 users times 1,000,000
//! placements would not fit. Instead the index keeps what the rules read, in
//! hash maps keyed by id, and precomputes the one derived relation that is
//! expensive to walk: *shows on* (object → scorecards it shows on, directly
//! or through containers, and scorecard → every object that shows on it).
//! A check then costs a handful of hash lookups: the user, the target, the
//! scorecards it shows on, the user's assignments, and for a partner's
//! content the link and its shared scorecards.
//!
//! For Q-2 each site also keeps its targets ordered by id (Q-2's order),
//! with each object's "shows on some scorecard" bit, and the *shows* sets
//! are ordered by id too and carry each object's kind. A page then reads
//! only from the cursor on, as far as it fills: a walk of the site's
//! targets for a user who sees a whole site, else a merge of the shows sets
//! the user sees through; no returned item is looked up again.
//!
//! Files, by concern:
//!
//! * this one: what the index holds ([`AccessIndex`] and the facts in its
//!   maps, each with the event it came from) and Q-2's order
//!   ([`TargetKey`]);
//! * `apply.rs`: applying the log, event by event (the facts, *shows on*
//!   kept both ways, each site's ordered targets);
//! * `check.rs`: Q-1, a user's level on a target, and what else reads the
//!   same facts (whether a site sees a target, whether a relationship
//!   gives access);
//! * `lookup.rs`: Q-2, a page of what a user sees; `merge.rs`, the k-way
//!   merge of ordered sources a page reads; `cursor.rs`, its opaque cursors;
//! * `viewers.rs`: Q-3, every user with a level on a target;
//! * `pieces.rs`: the index cut into pieces a snapshot encodes and decodes
//!   in parallel.
//!
//! Q-4 (`explain.rs`, beside this module) walks the same facts.

mod apply;
mod check;
mod cursor;
mod lookup;
mod merge;
mod pieces;
mod viewers;

pub(in crate::access) use pieces::Piece;

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use shareledger_core::access_rule as rule;
use shareledger_core::catalog::{
    AccessLevel, Link, Name, ObjectId, ObjectKind, PermissionFlag, Permissions, RelationshipId,
    ScorecardId, SiteCode, SiteId, UserId, Username,
};
use smallvec::SmallVec;

use super::{Target, TargetKind};
use crate::decode::EventRef;

/// The scorecards an object shows on (one inline, more on the heap: the
/// same 24 bytes as a `Vec`).
pub(super) type ShowsOn = SmallVec<[ScorecardId; 1]>;

/// An index into [`AccessIndex::events`]: the event that established a fact.
pub(super) type Prov = u32;

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct SiteInfo {
    pub code: SiteCode,
    pub name: Name,
    pub users: Vec<UserId>,
    /// The site's scorecards and objects in Q-2's order (by id), with their
    /// kind and whether an object shows on a scorecard: a page of a user who
    /// sees the whole site walks it from the cursor and stops when the page
    /// is full, without looking any item up.
    pub targets: BTreeMap<TargetKey, TargetInfo>,
    /// Sites with an active link *to* this site (they share with it).
    pub sharing_with_me: FxHashSet<SiteId>,
    /// Sites this site shares with over an active link.
    pub sharing_to: FxHashSet<SiteId>,
    /// This site's relationships to partners' objects, by object.
    pub relationships_by_object: FxHashMap<ObjectId, Vec<RelationshipId>>,
    /// The same with each relationship's facts, read by checks (one lookup
    /// fewer per relationship).
    pub relationship_infos: FxHashMap<ObjectId, Vec<(RelationshipId, RelInfo)>>,
}

/// A target in its site's `targets`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) struct TargetInfo {
    pub kind: TargetKind,
    /// For an object: whether it shows on a scorecard (its `shows_on` is
    /// not empty). Always false for a scorecard.
    pub shown: bool,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct UserInfo {
    pub site: SiteId,
    pub username: Username,
    pub name: Name,
    pub active: bool,
    /// The event that added or last reactivated or deactivated the user.
    pub active_prov: Prov,
    pub flags: Permissions,
    /// `flags` as a bit set (bit `flag as u32`), read by every check.
    pub flag_bits: u64,
    /// The event that last set the user's flags.
    pub flags_prov: Prov,
    pub assigned: FxHashMap<ScorecardId, (AccessLevel, Prov)>,
    /// How many of `assigned` are known scorecards of the user's own site
    /// (`browse_all` asks whether there is any).
    pub own_assigned: u32,
}

impl UserInfo {
    pub fn has(&self, flag: PermissionFlag) -> bool {
        self.flag_bits & flag_bit(flag) != 0
    }

    /// What the access rule ([`rule::level`]) reads of the user.
    pub fn facts(&self) -> rule::UserFacts {
        rule::UserFacts {
            active: self.active,
            instance_admin: self.has(PermissionFlag::InstanceAdmin),
            all_scorecards: self.has(PermissionFlag::AllScorecards),
            add_edit_scorecard_objects: self.has(PermissionFlag::AddEditScorecardObjects),
            own_assigned: self.own_assigned > 0,
        }
    }
}

fn flag_bit(flag: PermissionFlag) -> u64 {
    1u64 << (flag as u32)
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct ScorecardInfo {
    pub site: SiteId,
    pub name: Name,
    /// Objects placed directly on the scorecard, with the placing event.
    pub placed: FxHashMap<ObjectId, Prov>,
    /// Every object that shows on it (placed, or inside a container that
    /// shows), with its kind (Q-2 returns it without looking the object up),
    /// ordered by id: a lookup page seeks it to the cursor and reads on
    /// only as far as the page needs.
    pub shows: BTreeMap<ObjectId, ObjectKind>,
}

#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(super) struct ObjectInfo {
    pub site: SiteId,
    pub kind: ObjectKind,
    pub name: Name,
    pub container: Option<ObjectId>,
    pub prov: Prov,
    pub children: Vec<ObjectId>,
    /// The scorecards the object shows on: held inline when it is one
    /// (most objects), so a check reads it without another memory access.
    pub shows_on: ShowsOn,
    /// Whether a relationship ever named the object (never cleared): a
    /// check skips the relationship maps for objects no relationship names.
    pub ever_related: bool,
}

#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub(super) struct LinkInfo {
    pub active: bool,
    /// The event that activated (or last changed) the link.
    pub prov: Prov,
    /// Scorecards shared over the link while it is active.
    pub shared: FxHashMap<ScorecardId, Prov>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub(super) enum RelTarget {
    Scorecard(ScorecardId),
    Aggregation(ObjectId),
}

#[derive(Debug, Clone, Copy, serde::Serialize, serde::Deserialize)]
pub(super) struct RelInfo {
    pub site: SiteId,
    pub object: ObjectId,
    pub target: RelTarget,
    pub prov: Prov,
    /// The owner of `object` and of the target, when known at the
    /// relationship's event (owners never change; looked up otherwise).
    pub object_site: Option<SiteId>,
    pub target_site: Option<SiteId>,
}

/// Who can see what, answered from memory. Feed it the log with
/// [`AccessIndex::apply`]; ask with [`AccessIndex::level`],
/// [`AccessIndex::lookup`], [`AccessIndex::viewers`] and
/// [`AccessIndex::explain`].
#[derive(Debug, Clone, Default, serde::Serialize, serde::Deserialize)]
pub struct AccessIndex {
    position: u64,
    pub(super) events: Vec<EventRef>,
    pub(super) sites: FxHashMap<SiteId, SiteInfo>,
    pub(super) users: FxHashMap<UserId, UserInfo>,
    pub(super) scorecards: FxHashMap<ScorecardId, ScorecardInfo>,
    pub(super) objects: FxHashMap<ObjectId, ObjectInfo>,
    pub(super) links: FxHashMap<Link, LinkInfo>,
    pub(super) relationships: FxHashMap<RelationshipId, RelInfo>,
    /// Users assigned a scorecard the index did not know yet: when it is
    /// created, their `own_assigned` counts it if it is of their site.
    pending_assigned: FxHashMap<ScorecardId, Vec<UserId>>,
    /// Objects a relationship named before they were known: they get
    /// `ever_related` when created.
    pending_related: FxHashSet<ObjectId>,
    /// Whether a relationship id was ever added twice (not by the command
    /// service; see `add_relationship`).
    relationship_ids_reused: bool,
}

impl AccessIndex {
    /// An index of an empty log.
    pub fn new() -> Self {
        Self::default()
    }

    /// A copy laid out afresh. An index loaded from a long log grew its
    /// maps while events were being decoded, so its entries sit scattered
    /// among freed JSON; a copy allocates each map and its entries together,
    /// which makes the pointer-chasing of a check cheaper (measured in
    /// `docs/BENCHMARKS.md`). Answers are the same. [`LiveAccess`] does this
    /// once, after its first catch-up.
    ///
    /// [`LiveAccess`]: super::LiveAccess
    pub fn compacted(&self) -> Self {
        self.clone()
    }

    /// The global position of the last event applied (0: none).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// How many users, scorecards, objects and links the index holds.
    pub fn sizes(&self) -> IndexSizes {
        IndexSizes {
            sites: self.sites.len(),
            users: self.users.len(),
            scorecards: self.scorecards.len(),
            objects: self.objects.len(),
            placements: self.scorecards.values().map(|s| s.placed.len()).sum(),
            active_links: self.links.values().filter(|l| l.active).count(),
            relationships: self.relationships.len(),
            events_referenced: self.events.len(),
        }
    }
}

impl AccessIndex {
    /// A site's code and name (placeholders for a site the log never
    /// registered: events of a site are only ever written after it is).
    pub(super) fn site_code_and_name(&self, site: SiteId) -> (SiteCode, Name) {
        match self.sites.get(&site) {
            Some(info) => (info.code.clone(), info.name.clone()),
            None => (
                SiteCode::parse("unknown").expect("a valid code"),
                Name::parse("unknown").expect("a valid name"),
            ),
        }
    }

    /// What people call the site, user, scorecard or object with this id:
    /// a site's code, a user's username, a scorecard's or object's name in
    /// quotes; `None` for an id the index does not hold (problem details
    /// name things this way, `gateway/src/names.rs`).
    pub fn label(&self, id: uuid::Uuid) -> Option<String> {
        let name = self.plain_name(id)?;
        let is_target = self.scorecards.contains_key(&ScorecardId(id))
            || self.objects.contains_key(&ObjectId(id));
        Some(if is_target {
            format!("“{name}”")
        } else {
            name
        })
    }

    /// [`AccessIndex::label`] as a caller of `viewer` may be told it (`None`:
    /// an operator, told everything): sites by their codes; users,
    /// scorecards and objects only of the viewer's own site, any other is
    /// `None` (left as the id its caller sent, so a refusal names nothing
    /// of another site's).
    pub fn label_for(&self, id: uuid::Uuid, viewer: Option<SiteId>) -> Option<String> {
        let Some(viewer) = viewer else {
            return self.label(id);
        };
        let owner = if self.sites.contains_key(&SiteId(id)) {
            viewer
        } else if let Some(user) = self.users.get(&UserId(id)) {
            user.site
        } else if let Some(scorecard) = self.scorecards.get(&ScorecardId(id)) {
            scorecard.site
        } else {
            self.objects.get(&ObjectId(id))?.site
        };
        (owner == viewer).then(|| self.label(id)).flatten()
    }

    /// [`AccessIndex::label`] without quotes.
    pub fn plain_name(&self, id: uuid::Uuid) -> Option<String> {
        if let Some(site) = self.sites.get(&SiteId(id)) {
            return Some(site.code.as_str().to_owned());
        }
        if let Some(user) = self.users.get(&UserId(id)) {
            return Some(user.username.as_str().to_owned());
        }
        if let Some(scorecard) = self.scorecards.get(&ScorecardId(id)) {
            return Some(scorecard.name.as_str().to_owned());
        }
        self.objects
            .get(&ObjectId(id))
            .map(|object| object.name.as_str().to_owned())
    }

    /// A known target's name (a placeholder for one the index does not hold).
    pub(super) fn target_name(&self, target: Target) -> Name {
        let name = match target {
            Target::Scorecard(id) => self.scorecards.get(&id).map(|s| &s.name),
            Target::Object(id) => self.objects.get(&id).map(|o| &o.name),
        };
        name.cloned()
            .unwrap_or_else(|| Name::parse("unknown").expect("a valid name"))
    }
}

/// Containers nest; core forbids cycles, this bounds the walk regardless.
pub(super) const MAX_CONTAINER_DEPTH: usize = 64;

/// Sizes of what the index holds.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct IndexSizes {
    pub sites: usize,
    pub users: usize,
    pub scorecards: usize,
    pub objects: usize,
    pub placements: usize,
    pub active_links: usize,
    pub relationships: usize,
    pub events_referenced: usize,
}

/// A target's sort key within its site: its id, scorecards before objects
/// on the (practically impossible) tie.
pub(super) type TargetKey = (uuid::Uuid, u8);

fn key_target((id, tag): TargetKey) -> Target {
    if tag == 0 {
        Target::Scorecard(ScorecardId(id))
    } else {
        Target::Object(ObjectId(id))
    }
}

fn target_key(target: Target) -> TargetKey {
    match target {
        Target::Scorecard(s) => (s.0, 0),
        Target::Object(o) => (o.0, 1),
    }
}
