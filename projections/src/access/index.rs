//! The in-memory access index: normalized facts with their provenance,
//! kept current event by event, and the questions answered from
//! them by the rules of `docs/access-model.md`.
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

use std::collections::binary_heap::PeekMut;
use std::collections::{btree_map, BTreeMap, BTreeSet, BinaryHeap};
use std::ops::Bound;

use rustc_hash::{FxHashMap, FxHashSet};
use shareledger_core::catalog::{
    AccessLevel, Action, ConnectionEvent, ContentEvent, Link, ObjectId, ObjectKind, PermissionFlag,
    Permissions, RelationshipId, ScorecardId, SiteCode, SiteCodeEvent, SiteEvent, SiteId, UserId,
};
use shareledger_events::RecordedEvent;
use smallvec::SmallVec;

use super::{AccessError, LookupPage, LookupQuery, Target, TargetKind, Viewer, Visible};
use super::{DEFAULT_PAGE, MAX_PAGE};
use crate::decode::{decode, Decoded, EventRef};
use crate::ProjectionError;

/// The scorecards an object shows on (one inline, more on the heap: the
/// same 24 bytes as a `Vec`).
pub(super) type ShowsOn = SmallVec<[ScorecardId; 1]>;

/// An index into [`AccessIndex::events`]: the event that established a fact.
pub(super) type Prov = u32;

#[derive(Debug, Clone)]
pub(super) struct SiteInfo {
    pub code: SiteCode,
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
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct TargetInfo {
    pub kind: TargetKind,
    /// For an object: whether it shows on a scorecard (its `shows_on` is
    /// not empty). Always false for a scorecard.
    pub shown: bool,
}

/// Records in the site's `targets` whether an object shows on a scorecard.
fn set_shown(sites: &mut FxHashMap<SiteId, SiteInfo>, site: SiteId, object: ObjectId, shown: bool) {
    if let Some(target) = sites
        .get_mut(&site)
        .and_then(|info| info.targets.get_mut(&target_key(Target::Object(object))))
    {
        target.shown = shown;
    }
}

#[derive(Debug, Clone)]
pub(super) struct UserInfo {
    pub site: SiteId,
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
}

fn flag_bit(flag: PermissionFlag) -> u64 {
    1u64 << (flag as u32)
}

fn flag_bits(flags: &Permissions) -> u64 {
    flags.iter().fold(0, |bits, flag| bits | flag_bit(*flag))
}

#[derive(Debug, Clone)]
pub(super) struct ScorecardInfo {
    pub site: SiteId,
    /// Objects placed directly on the scorecard, with the placing event.
    pub placed: FxHashMap<ObjectId, Prov>,
    /// Every object that shows on it (placed, or inside a container that
    /// shows), with its kind (Q-2 returns it without looking the object up),
    /// ordered by id: a lookup page seeks it to the cursor and reads on
    /// only as far as the page needs.
    pub shows: BTreeMap<ObjectId, ObjectKind>,
}

#[derive(Debug, Clone)]
pub(super) struct ObjectInfo {
    pub site: SiteId,
    pub kind: ObjectKind,
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

#[derive(Debug, Clone, Default)]
pub(super) struct LinkInfo {
    pub active: bool,
    /// The event that activated (or last changed) the link.
    pub prov: Prov,
    /// Scorecards shared over the link while it is active.
    pub shared: FxHashMap<ScorecardId, Prov>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum RelTarget {
    Scorecard(ScorecardId),
    Aggregation(ObjectId),
}

#[derive(Debug, Clone, Copy)]
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
#[derive(Debug, Clone, Default)]
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

    /// Applies the next event of the log. Events must come in global order;
    /// events of categories the model does not read are skipped.
    pub fn apply(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        if event.global_position <= self.position {
            return Err(ProjectionError::OutOfOrder {
                position: event.global_position,
                applied: self.position,
            });
        }
        let decoded = decode(event)?;
        self.position = event.global_position;
        let Some(decoded) = decoded else {
            return Ok(());
        };
        if !matters(&decoded) {
            return Ok(());
        }
        self.events.push(EventRef::of(event));
        self.apply_fact(&decoded);
        Ok(())
    }

    /// Whether [`AccessIndex::apply`] does anything with this event: events
    /// it does not use may be left out of a replay.
    pub fn uses(decoded: &Decoded) -> bool {
        matters(decoded)
    }

    /// [`AccessIndex::apply`] for an event decoded already: `provenance`
    /// names it (its position must follow the last one applied).
    pub fn apply_decoded(
        &mut self,
        provenance: &EventRef,
        decoded: &Decoded,
    ) -> Result<(), ProjectionError> {
        if provenance.position <= self.position {
            return Err(ProjectionError::OutOfOrder {
                position: provenance.position,
                applied: self.position,
            });
        }
        self.position = provenance.position;
        if !matters(decoded) {
            return Ok(());
        }
        self.events.push(provenance.clone());
        self.apply_fact(decoded);
        Ok(())
    }

    /// Applies an event that matters, its provenance pushed last.
    fn apply_fact(&mut self, decoded: &Decoded) {
        let prov = (self.events.len() - 1) as Prov;
        match decoded {
            Decoded::Site { site, event } => self.apply_site(*site, event, prov),
            Decoded::SiteCode(SiteCodeEvent::SiteCodeClaimed { .. }) => {}
            Decoded::Content { site, event } => self.apply_content(*site, event, prov),
            Decoded::Connection(event) => self.apply_connection(event, prov),
        }
    }

    fn apply_site(&mut self, site: SiteId, event: &SiteEvent, prov: Prov) {
        match event {
            SiteEvent::SiteRegistered { code, .. } => {
                self.sites.insert(
                    site,
                    SiteInfo {
                        code: code.clone(),
                        users: Vec::new(),
                        targets: BTreeMap::new(),
                        sharing_with_me: FxHashSet::default(),
                        sharing_to: FxHashSet::default(),
                        relationships_by_object: FxHashMap::default(),
                        relationship_infos: FxHashMap::default(),
                    },
                );
            }
            SiteEvent::UserAdded {
                user,
                scorecard_access,
                ..
            } => {
                if let Some(info) = self.sites.get_mut(&site) {
                    info.users.push(user.user_id);
                }
                let assigned: FxHashMap<ScorecardId, (AccessLevel, Prov)> = scorecard_access
                    .iter()
                    .map(|(s, level)| (*s, (*level, prov)))
                    .collect();
                let mut own_assigned = 0;
                for s in assigned.keys() {
                    own_assigned += u32::from(self.note_assignment(user.user_id, site, *s));
                }
                self.users.insert(
                    user.user_id,
                    UserInfo {
                        site,
                        active: true,
                        active_prov: prov,
                        flag_bits: flag_bits(&user.permissions),
                        flags: user.permissions.clone(),
                        flags_prov: prov,
                        assigned,
                        own_assigned,
                    },
                );
            }
            &SiteEvent::UserRoleChanged {
                user_id,
                ref permissions,
                ..
            }
            | &SiteEvent::UserPermissionsSet {
                user_id,
                ref permissions,
            } => {
                if let Some(user) = self.users.get_mut(&user_id) {
                    user.flag_bits = flag_bits(permissions);
                    user.flags = permissions.clone();
                    user.flags_prov = prov;
                }
            }
            &SiteEvent::ScorecardAccessGranted {
                user_id,
                scorecard_id,
                level,
            } => {
                let Some(site) = self.users.get(&user_id).map(|u| u.site) else {
                    return;
                };
                let own = self.scorecard_site(scorecard_id) == Some(site);
                let user = self.users.get_mut(&user_id).expect("looked up above");
                if user.assigned.insert(scorecard_id, (level, prov)).is_none() {
                    user.own_assigned += u32::from(own);
                    self.note_assignment(user_id, site, scorecard_id);
                }
            }
            &SiteEvent::ScorecardAccessRevoked {
                user_id,
                scorecard_id,
            } => {
                let site = self.scorecard_site(scorecard_id);
                if let Some(user) = self.users.get_mut(&user_id) {
                    if user.assigned.remove(&scorecard_id).is_some() && site == Some(user.site) {
                        user.own_assigned -= 1;
                    }
                }
            }
            &SiteEvent::UserDeactivated { user_id } | &SiteEvent::UserReactivated { user_id } => {
                let active = matches!(event, SiteEvent::UserReactivated { .. });
                if let Some(user) = self.users.get_mut(&user_id) {
                    user.active = active;
                    user.active_prov = prov;
                }
            }
            _ => {}
        }
    }

    fn apply_content(&mut self, site: SiteId, event: &ContentEvent, prov: Prov) {
        match event {
            &ContentEvent::ScorecardCreated { scorecard_id, .. } => {
                self.scorecards.insert(
                    scorecard_id,
                    ScorecardInfo {
                        site,
                        placed: FxHashMap::default(),
                        shows: BTreeMap::new(),
                    },
                );
                if let Some(info) = self.sites.get_mut(&site) {
                    info.targets.insert(
                        target_key(Target::Scorecard(scorecard_id)),
                        TargetInfo {
                            kind: TargetKind::Scorecard,
                            shown: false,
                        },
                    );
                }
                // Users assigned it before it existed: now it counts as
                // their own site's if it is.
                if let Some(mut waiting) = self.pending_assigned.remove(&scorecard_id) {
                    waiting.sort_unstable();
                    waiting.dedup();
                    for user_id in waiting {
                        if let Some(user) = self.users.get_mut(&user_id) {
                            if user.site == site && user.assigned.contains_key(&scorecard_id) {
                                user.own_assigned += 1;
                            }
                        }
                    }
                }
            }
            &ContentEvent::ObjectCreated {
                object_id,
                kind,
                container,
                ..
            } => {
                let shows_on = match container.and_then(|c| self.objects.get_mut(&c)) {
                    Some(parent) => {
                        parent.children.push(object_id);
                        parent.shows_on.clone()
                    }
                    None => ShowsOn::new(),
                };
                for scorecard in &shows_on {
                    if let Some(s) = self.scorecards.get_mut(scorecard) {
                        s.shows.insert(object_id, kind);
                    }
                }
                let shown = !shows_on.is_empty();
                self.objects.insert(
                    object_id,
                    ObjectInfo {
                        site,
                        kind,
                        container,
                        prov,
                        children: Vec::new(),
                        shows_on,
                        ever_related: self.pending_related.remove(&object_id),
                    },
                );
                if let Some(info) = self.sites.get_mut(&site) {
                    info.targets.insert(
                        target_key(Target::Object(object_id)),
                        TargetInfo {
                            kind: TargetKind::Object(kind),
                            shown,
                        },
                    );
                }
            }
            &ContentEvent::ObjectPlacedOnScorecard {
                object_id,
                scorecard_id,
            } => {
                let Some(scorecard) = self.scorecards.get_mut(&scorecard_id) else {
                    return;
                };
                scorecard.placed.insert(object_id, prov);
                let mut stack = vec![object_id];
                while let Some(id) = stack.pop() {
                    let Some(object) = self.objects.get_mut(&id) else {
                        continue;
                    };
                    if scorecard.shows.insert(id, object.kind).is_none() {
                        if object.shows_on.is_empty() {
                            set_shown(&mut self.sites, object.site, id, true);
                        }
                        object.shows_on.push(scorecard_id);
                    }
                    stack.extend(object.children.iter().copied());
                }
            }
            &ContentEvent::ObjectRemovedFromScorecard {
                object_id,
                scorecard_id,
            } => {
                let Some(scorecard) = self.scorecards.get_mut(&scorecard_id) else {
                    return;
                };
                if scorecard.placed.remove(&object_id).is_none() {
                    return;
                }
                // Recompute what shows on the scorecard from what is placed.
                // Only known objects show (as when placing).
                let mut shows = BTreeMap::new();
                let mut stack: Vec<ObjectId> = scorecard.placed.keys().copied().collect();
                while let Some(id) = stack.pop() {
                    if let Some(object) = self.objects.get(&id) {
                        if shows.insert(id, object.kind).is_none() {
                            stack.extend(object.children.iter().copied());
                        }
                    }
                }
                let old = std::mem::replace(&mut scorecard.shows, shows);
                for gone in old.keys().filter(|o| !scorecard.shows.contains_key(o)) {
                    if let Some(object) = self.objects.get_mut(gone) {
                        object.shows_on.retain(|s| *s != scorecard_id);
                        if object.shows_on.is_empty() {
                            set_shown(&mut self.sites, object.site, *gone, false);
                        }
                    }
                }
            }
            &ContentEvent::SharedObjectLinked {
                relationship_id,
                scorecard_id,
                object_id,
                ..
            } => self.add_relationship(
                site,
                relationship_id,
                object_id,
                RelTarget::Scorecard(scorecard_id),
                prov,
            ),
            &ContentEvent::SharedMeasureAggregated {
                relationship_id,
                into_object,
                object_id,
                ..
            } => self.add_relationship(
                site,
                relationship_id,
                object_id,
                RelTarget::Aggregation(into_object),
                prov,
            ),
            &ContentEvent::RelationshipRemoved {
                relationship_id, ..
            } => {
                if let Some(rel) = self.relationships.remove(&relationship_id) {
                    if let Some(info) = self.sites.get_mut(&rel.site) {
                        if let Some(list) = info.relationships_by_object.get_mut(&rel.object) {
                            list.retain(|r| *r != relationship_id);
                            if list.is_empty() {
                                info.relationships_by_object.remove(&rel.object);
                            }
                        }
                        if let Some(list) = info.relationship_infos.get_mut(&rel.object) {
                            list.retain(|(r, _)| *r != relationship_id);
                            if list.is_empty() {
                                info.relationship_infos.remove(&rel.object);
                            }
                        }
                    }
                }
            }
            &ContentEvent::ObjectFieldUpdated { .. } | &ContentEvent::ObjectFieldEdited { .. } => {}
        }
    }

    fn add_relationship(
        &mut self,
        site: SiteId,
        id: RelationshipId,
        object: ObjectId,
        target: RelTarget,
        prov: Prov,
    ) {
        let object_site = match self.objects.get_mut(&object) {
            Some(info) => {
                info.ever_related = true;
                Some(info.site)
            }
            None => {
                self.pending_related.insert(object);
                None
            }
        };
        let target_site = match target {
            RelTarget::Scorecard(s) => self.scorecard_site(s),
            RelTarget::Aggregation(o) => self.objects.get(&o).map(|o| o.site),
        };
        let rel = RelInfo {
            site,
            object,
            target,
            prov,
            object_site,
            target_site,
        };
        if self.relationships.insert(id, rel).is_some() {
            // An id used twice: `relationship_infos` may no longer mirror
            // `relationships`, so checks go through `relationships`.
            self.relationship_ids_reused = true;
        }
        if let Some(info) = self.sites.get_mut(&site) {
            info.relationships_by_object
                .entry(object)
                .or_default()
                .push(id);
            info.relationship_infos
                .entry(object)
                .or_default()
                .push((id, rel));
        }
    }

    fn scorecard_site(&self, scorecard: ScorecardId) -> Option<SiteId> {
        self.scorecards.get(&scorecard).map(|s| s.site)
    }

    /// Remembers an assignment of a scorecard not known yet; returns whether
    /// the scorecard is a known one of `site`.
    fn note_assignment(&mut self, user: UserId, site: SiteId, scorecard: ScorecardId) -> bool {
        match self.scorecard_site(scorecard) {
            Some(owner) => owner == site,
            None => {
                self.pending_assigned
                    .entry(scorecard)
                    .or_default()
                    .push(user);
                false
            }
        }
    }

    fn apply_connection(&mut self, event: &ConnectionEvent, prov: Prov) {
        match event {
            ConnectionEvent::LinksActivated { links, .. } => {
                for &link in links {
                    let info = self.links.entry(link).or_default();
                    info.active = true;
                    info.prov = prov;
                    info.shared.clear();
                    self.set_link_index(link, true);
                }
            }
            &ConnectionEvent::LinkRevoked { link, .. } => {
                let info = self.links.entry(link).or_default();
                info.active = false;
                info.prov = prov;
                info.shared.clear();
                self.set_link_index(link, false);
            }
            &ConnectionEvent::ScorecardShared { link, scorecard_id } => {
                let info = self.links.entry(link).or_default();
                info.shared.insert(scorecard_id, prov);
            }
            &ConnectionEvent::ScorecardUnshared {
                link, scorecard_id, ..
            } => {
                if let Some(info) = self.links.get_mut(&link) {
                    info.shared.remove(&scorecard_id);
                }
            }
            // Requests, denials and cancellations change no access.
            &ConnectionEvent::ConnectionRequested { .. }
            | &ConnectionEvent::ConnectionDenied { .. }
            | &ConnectionEvent::ConnectionRequestCancelled { .. } => {}
        }
    }

    fn set_link_index(&mut self, link: Link, active: bool) {
        if let Some(from) = self.sites.get_mut(&link.from) {
            if active {
                from.sharing_to.insert(link.to);
            } else {
                from.sharing_to.remove(&link.to);
            }
        }
        if let Some(to) = self.sites.get_mut(&link.to) {
            if active {
                to.sharing_with_me.insert(link.from);
            } else {
                to.sharing_with_me.remove(&link.from);
            }
        }
    }

    // ---- Q-1 -------------------------------------------------------------

    pub(super) fn user(&self, user: UserId) -> Result<&UserInfo, AccessError> {
        self.users.get(&user).ok_or(AccessError::UnknownUser(user))
    }

    /// The owner site of a target.
    pub(super) fn owner(&self, target: Target) -> Result<SiteId, AccessError> {
        match target {
            Target::Scorecard(id) => self.scorecards.get(&id).map(|s| s.site),
            Target::Object(id) => self.objects.get(&id).map(|o| o.site),
        }
        .ok_or(AccessError::UnknownTarget(target))
    }

    /// the user's level on the target, `None` for no access.
    pub fn level(&self, user: UserId, target: Target) -> Result<Option<AccessLevel>, AccessError> {
        let info = self.user(user)?;
        let owner = self.owner(target)?;
        Ok(self.level_of(info, owner, target))
    }

    /// whether the user may do `action` on the target.
    pub fn check(&self, user: UserId, target: Target, action: Action) -> Result<bool, AccessError> {
        Ok(self
            .level(user, target)?
            .is_some_and(|level| level >= action.required_level()))
    }

    fn level_of(&self, user: &UserInfo, owner: SiteId, target: Target) -> Option<AccessLevel> {
        if !user.active {
            return None;
        }
        if owner == user.site {
            match target {
                Target::Scorecard(s) => self.own_scorecard_level(user, s),
                Target::Object(o) => self.own_object_level(user, o),
            }
        } else {
            let seen = match target {
                Target::Scorecard(s) => self.foreign_scorecard_visible(user, owner, s),
                Target::Object(o) => self.foreign_object_visible(user, owner, o),
            };
            seen.then_some(AccessLevel::Browser)
        }
    }

    /// Whether any of the user's own site's scorecards is assigned to them.
    pub(super) fn has_own_assignment(&self, user: &UserInfo) -> bool {
        user.own_assigned > 0
    }

    /// All Scorecards, or Add/Edit Scorecard Objects with none of the own
    /// site's scorecards assigned (seed 001's note).
    pub(super) fn browses_all(&self, user: &UserInfo) -> bool {
        user.has(PermissionFlag::AllScorecards)
            || (user.has(PermissionFlag::AddEditScorecardObjects) && !self.has_own_assignment(user))
    }

    pub(super) fn own_scorecard_level(
        &self,
        user: &UserInfo,
        scorecard: ScorecardId,
    ) -> Option<AccessLevel> {
        if user.has(PermissionFlag::InstanceAdmin) {
            return Some(AccessLevel::ScorecardAdmin);
        }
        if let Some((level, _)) = user.assigned.get(&scorecard) {
            return Some(*level);
        }
        self.browses_all(user).then_some(AccessLevel::Browser)
    }

    pub(super) fn own_object_level(
        &self,
        user: &UserInfo,
        object: ObjectId,
    ) -> Option<AccessLevel> {
        let on = &self.objects.get(&object)?.shows_on;
        let all = user.has(PermissionFlag::AllScorecards);
        if user.has(PermissionFlag::InstanceAdmin) && (!on.is_empty() || all) {
            return Some(AccessLevel::ScorecardAdmin);
        }
        let assigned = on
            .iter()
            .filter_map(|s| user.assigned.get(s).map(|(level, _)| *level))
            .max();
        if assigned.is_some() {
            return assigned;
        }
        (all || (!on.is_empty() && self.browses_all(user))).then_some(AccessLevel::Browser)
    }

    /// The scorecards shared over the link `from → to` if it is active.
    pub(super) fn shared(&self, from: SiteId, to: SiteId) -> Option<&FxHashMap<ScorecardId, Prov>> {
        self.links
            .get(&Link { from, to })
            .filter(|l| l.active)
            .map(|l| &l.shared)
    }

    fn foreign_scorecard_visible(
        &self,
        user: &UserInfo,
        owner: SiteId,
        scorecard: ScorecardId,
    ) -> bool {
        self.shared(owner, user.site)
            .is_some_and(|shared| shared.contains_key(&scorecard))
            && (user.has(PermissionFlag::AllScorecards) || user.assigned.contains_key(&scorecard))
    }

    fn foreign_object_visible(&self, user: &UserInfo, owner: SiteId, object: ObjectId) -> bool {
        let Some(shared) = self.shared(owner, user.site) else {
            return false;
        };
        let Some(info) = self.objects.get(&object) else {
            return false;
        };
        let all = user.has(PermissionFlag::AllScorecards);
        let mut site_sees = false;
        for s in &info.shows_on {
            if shared.contains_key(s) {
                if all || user.assigned.contains_key(s) {
                    return true;
                }
                site_sees = true;
            }
        }
        site_sees && self.relationship_gives(user, object, info, shared)
    }

    /// Whether a relationship of the user's site to the object (which the
    /// site sees over the link whose shared scorecards are `shared`) or to
    /// one of its containers sits where the user can see it.
    fn relationship_gives(
        &self,
        user: &UserInfo,
        object: ObjectId,
        info: &ObjectInfo,
        shared: &FxHashMap<ScorecardId, Prov>,
    ) -> bool {
        let first_site = info.site;
        let mut current = (object, info);
        let mut site = None;
        for depth in 0..=MAX_CONTAINER_DEPTH {
            let (id, info) = current;
            if info.ever_related {
                let Some(site) = *site.get_or_insert_with(|| self.sites.get(&user.site)) else {
                    return false;
                };
                if self.relationship_ids_reused {
                    if let Some(rels) = site.relationships_by_object.get(&id) {
                        if rels.iter().any(|r| self.relationship_visible_to(user, *r)) {
                            return true;
                        }
                    }
                } else if let Some(rels) = site.relationship_infos.get(&id) {
                    // The object itself is seen by the site (the caller
                    // checked); a container of the same site when it shows
                    // on a shared scorecard; any other, the long way.
                    let visible = |rel: &RelInfo| {
                        if depth == 0 {
                            self.relation_visible_seen(user, rel, true)
                        } else if info.site == first_site {
                            let seen = info.shows_on.iter().any(|s| shared.contains_key(s));
                            self.relation_visible_seen(user, rel, seen)
                        } else {
                            self.relation_visible_to(user, rel)
                        }
                    };
                    if rels.iter().any(|(_, rel)| visible(rel)) {
                        return true;
                    }
                }
            }
            let Some(next) = info
                .container
                .and_then(|c| self.objects.get(&c).map(|o| (c, o)))
            else {
                break;
            };
            current = next;
        }
        false
    }

    /// Whether the user has a level on where a relationship of their site sits.
    /// The relationship's own object must still be seen by the site: one
    /// whose object left the shared scorecards gives nothing, even before
    /// the consequence worker removes it (R-SHARE-4).
    pub(super) fn relationship_visible_to(&self, user: &UserInfo, rel: RelationshipId) -> bool {
        self.relationships
            .get(&rel)
            .is_some_and(|info| self.relation_visible_to(user, info))
    }

    /// [`Self::relationship_visible_to`] with the relationship's facts at hand.
    fn relation_visible_to(&self, user: &UserInfo, info: &RelInfo) -> bool {
        let Some(owner) = info
            .object_site
            .or_else(|| self.objects.get(&info.object).map(|o| o.site))
        else {
            return false;
        };
        self.relation_target_is_users_site(user, info)
            && self.site_sees(user.site, owner, Target::Object(info.object))
            && self.relation_target_level(user, info)
    }

    /// [`Self::relation_visible_to`] when whether the user's site sees the
    /// relationship's object is known already (`seen`).
    fn relation_visible_seen(&self, user: &UserInfo, info: &RelInfo, seen: bool) -> bool {
        seen && self.relation_target_is_users_site(user, info)
            && self.relation_target_level(user, info)
    }

    /// Whether the relationship's target (an own scorecard or aggregation)
    /// belongs to the user's site.
    fn relation_target_is_users_site(&self, user: &UserInfo, info: &RelInfo) -> bool {
        let target_site = info.target_site.or_else(|| match info.target {
            RelTarget::Scorecard(s) => self.scorecard_site(s),
            RelTarget::Aggregation(o) => self.objects.get(&o).map(|o| o.site),
        });
        target_site == Some(user.site)
    }

    /// Whether the user has a level on the relationship's target.
    fn relation_target_level(&self, user: &UserInfo, info: &RelInfo) -> bool {
        match info.target {
            RelTarget::Scorecard(s) => self.own_scorecard_level(user, s).is_some(),
            RelTarget::Aggregation(o) => self.own_object_level(user, o).is_some(),
        }
    }

    // ---- Q-2 -------------------------------------------------------------

    /// everything the user can see, filtered, one page at a time,
    /// ordered by (owner site, target id).
    ///
    /// A page walks the candidate owner sites (the user's own and those
    /// sharing with it) in order from the cursor's site, takes from each
    /// what the user sees after the cursor, in order, and stops as soon as
    /// the page is full (one item more tells whether more follow). For the
    /// user's own site, when the user sees all of it (Instance Admin, browse
    /// all), that is a walk of the site's ordered targets from the cursor;
    /// otherwise, and for partners' sites, a k-way merge of the ordered
    /// shows sets the user sees through, each sought to the cursor (plus,
    /// on a partner's site, the objects under the site's visible
    /// relationships, gathered and sorted). A page costs about what it
    /// reads, not the site's whole visible set.
    pub fn lookup(&self, user_id: UserId, query: &LookupQuery) -> Result<LookupPage, AccessError> {
        let user = self.user(user_id)?;
        let after = query.after.as_deref().map(parse_cursor).transpose()?;
        let limit = match query.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let mut items: Vec<Visible> = Vec::new();
        if user.active {
            items.reserve(limit + 1);
            let mut owners: Vec<SiteId> = vec![user.site];
            if let Some(site) = self.sites.get(&user.site) {
                owners.extend(site.sharing_with_me.iter().copied());
            }
            owners.retain(|owner| {
                query.site.is_none_or(|s| s == *owner)
                    && after.is_none_or(|(site, _)| *owner >= site)
            });
            owners.sort_unstable();
            owners.dedup();
            let mut found: Vec<Item> = Vec::new();
            for owner in owners {
                let from = after.filter(|(site, _)| *site == owner).map(|(_, key)| key);
                let need = limit + 1 - items.len();
                found.clear();
                if owner == user.site {
                    self.own_page(user, query.kind, from, need, &mut found);
                } else {
                    self.foreign_page(user, owner, query.kind, from, need, &mut found);
                }
                if found.is_empty() {
                    continue;
                }
                let code = self
                    .sites
                    .get(&owner)
                    .map(|s| s.code.clone())
                    .unwrap_or_else(|| SiteCode::parse("unknown").expect("a valid code"));
                items.extend(found.drain(..).map(|(key, kind, level)| Visible {
                    target: key_target(key),
                    kind,
                    site: owner,
                    origin_code: code.clone(),
                    level,
                }));
                if items.len() > limit {
                    break;
                }
            }
        }
        let more = items.len() > limit;
        items.truncate(limit);
        let next = if more {
            items
                .last()
                .map(|v| format_cursor((v.site, target_key(v.target))))
        } else {
            None
        };
        Ok(LookupPage { items, next })
    }

    /// The user's own site: up to `need` targets after `from`, in order.
    fn own_page(
        &self,
        user: &UserInfo,
        kind: Option<TargetKind>,
        from: Option<TargetKey>,
        need: usize,
        out: &mut Vec<Item>,
    ) {
        let Some(site) = self.sites.get(&user.site) else {
            return;
        };
        let wants = |k: TargetKind| kind.is_none_or(|w| w == k);
        let after = |key: &TargetKey| from.is_none_or(|f| *key > f);
        let admin = user.has(PermissionFlag::InstanceAdmin);
        let all = user.has(PermissionFlag::AllScorecards);
        if admin || self.browses_all(user) {
            // Every scorecard has a level, and every object that shows on a
            // scorecard (every object for All Scorecards): walk the site in
            // order from the cursor. Instance Admin: Scorecard Admin.
            // Otherwise an object's level is the highest assigned on a
            // scorecard it shows on, else Browser: the assigned scorecards'
            // shows, merged from the cursor, are read along with the walk.
            let mut assigned = (!admin && !user.assigned.is_empty()).then(|| {
                Merge::new(user.assigned.iter().filter_map(|(s, (level, _))| {
                    let shows = &self.scorecards.get(s)?.shows;
                    Some(Source::shows(shows, from, *level))
                }))
            });
            let range = match from {
                Some(key) => (Bound::Excluded(key), Bound::Unbounded),
                None => (Bound::Unbounded, Bound::Unbounded),
            };
            for (key, target) in site.targets.range(range) {
                if out.len() >= need {
                    break;
                }
                if !wants(target.kind) {
                    continue;
                }
                let seen = all || target.shown;
                let level = match key_target(*key) {
                    Target::Scorecard(s) => self.own_scorecard_level(user, s),
                    Target::Object(_) if admin => seen.then_some(AccessLevel::ScorecardAdmin),
                    Target::Object(_) => assigned
                        .as_mut()
                        .and_then(|assigned| assigned.level_at(*key))
                        .or(seen.then_some(AccessLevel::Browser)),
                };
                if let Some(level) = level {
                    out.push((*key, target.kind, level));
                }
            }
            return;
        }
        // Otherwise only the assigned scorecards of the site and what they
        // show, at the highest level assigned on a scorecard it shows on:
        // their shows sets merged from the cursor, as far as the page needs.
        let objects = kind != Some(TargetKind::Scorecard);
        let mut scorecards: Vec<Item> = Vec::new();
        let mut others: Vec<(&ScorecardInfo, AccessLevel)> = Vec::new();
        let mut sources: Vec<Source<'_>> = Vec::new();
        for (s, (level, _)) in &user.assigned {
            let Some(scorecard) = self.scorecards.get(s) else {
                continue;
            };
            if scorecard.site != user.site {
                others.push((scorecard, *level));
                continue;
            }
            let key = target_key(Target::Scorecard(*s));
            if wants(TargetKind::Scorecard) && after(&key) {
                scorecards.push((key, TargetKind::Scorecard, *level));
            }
            if objects {
                sources.push(Source::shows(&scorecard.shows, from, *level));
            }
        }
        scorecards.sort_unstable_by_key(|item| item.0);
        sources.push(Source::List(scorecards.iter()));
        let start = out.len();
        out.extend(
            Merge::new(sources)
                .filter(|(key, k, _)| wants(*k) && after(key))
                .take(need),
        );
        // Another site's scorecard assigned to the user counts too if one
        // of these objects shows on it.
        for (scorecard, level) in &others {
            for item in &mut out[start..] {
                if let (Target::Object(o), true) = (key_target(item.0), item.2 < *level) {
                    if scorecard.shows.contains_key(&o) {
                        item.2 = *level;
                    }
                }
            }
        }
    }

    /// A partner's site: up to `need` targets after `from`, in order: the
    /// shared scorecards' shows sets merged from the cursor (All Scorecards,
    /// assignments) and the objects under the site's visible relationships,
    /// as far as the page needs.
    fn foreign_page(
        &self,
        user: &UserInfo,
        owner: SiteId,
        kind: Option<TargetKind>,
        from: Option<TargetKey>,
        need: usize,
        out: &mut Vec<Item>,
    ) {
        let Some(shared) = self.shared(owner, user.site) else {
            return;
        };
        let wants = |k: TargetKind| kind.is_none_or(|w| w == k);
        let after = |key: &TargetKey| from.is_none_or(|f| *key > f);
        let all = user.has(PermissionFlag::AllScorecards);
        let objects = kind != Some(TargetKind::Scorecard);
        let mut scorecards: Vec<Item> = Vec::new();
        let mut related: Vec<Item> = Vec::new();
        let mut sources: Vec<Source<'_>> = Vec::new();
        for s in shared.keys() {
            if !(all || user.assigned.contains_key(s)) {
                continue;
            }
            let key = target_key(Target::Scorecard(*s));
            if wants(TargetKind::Scorecard) && after(&key) {
                scorecards.push((key, TargetKind::Scorecard, AccessLevel::Browser));
            }
            if !objects {
                continue;
            }
            if let Some(scorecard) = self.scorecards.get(s) {
                sources.push(Source::shows(&scorecard.shows, from, AccessLevel::Browser));
            }
        }
        if !all && objects {
            // Through relationships: the related object and what it contains,
            // as far as the site sees it. Gathered whole (it is not ordered)
            // and sorted.
            if let Some(site) = self.sites.get(&user.site) {
                for (object, rels) in &site.relationships_by_object {
                    if self.objects.get(object).is_none_or(|o| o.site != owner) {
                        continue;
                    }
                    if !rels.iter().any(|r| self.relationship_visible_to(user, *r)) {
                        continue;
                    }
                    let mut stack = vec![*object];
                    while let Some(id) = stack.pop() {
                        let Some(info) = self.objects.get(&id) else {
                            continue;
                        };
                        let key = target_key(Target::Object(id));
                        let k = TargetKind::Object(info.kind);
                        if wants(k)
                            && after(&key)
                            && info.shows_on.iter().any(|s| shared.contains_key(s))
                        {
                            related.push((key, k, AccessLevel::Browser));
                        }
                        stack.extend(info.children.iter().copied());
                    }
                }
            }
            related.sort_unstable_by_key(|item| item.0);
            related.dedup_by_key(|item| item.0);
        }
        scorecards.sort_unstable_by_key(|item| item.0);
        sources.push(Source::List(scorecards.iter()));
        sources.push(Source::List(related.iter()));
        out.extend(
            Merge::new(sources)
                .filter(|(key, k, _)| wants(*k) && after(key))
                .take(need),
        );
    }

    // ---- Q-3 -------------------------------------------------------------

    /// every user of every site with a level on the target, ordered by
    /// (site, user).
    pub fn viewers(&self, target: Target) -> Result<Vec<Viewer>, AccessError> {
        let owner = self.owner(target)?;
        let mut sites: BTreeSet<SiteId> = BTreeSet::from([owner]);
        if let Some(info) = self.sites.get(&owner) {
            for partner in &info.sharing_to {
                if self.site_sees(*partner, owner, target) {
                    sites.insert(*partner);
                }
            }
        }
        let mut viewers = Vec::new();
        for site in sites {
            let Some(info) = self.sites.get(&site) else {
                continue;
            };
            for user_id in &info.users {
                let Some(user) = self.users.get(user_id) else {
                    continue;
                };
                if let Some(level) = self.level_of(user, owner, target) {
                    viewers.push(Viewer {
                        site,
                        user: *user_id,
                        level,
                    });
                }
            }
        }
        viewers.sort_unstable();
        Ok(viewers)
    }

    /// Whether `site` sees `owner`'s target through the scorecards shared with it.
    pub(super) fn site_sees(&self, site: SiteId, owner: SiteId, target: Target) -> bool {
        let Some(shared) = self.shared(owner, site) else {
            return false;
        };
        match target {
            Target::Scorecard(s) => shared.contains_key(&s),
            Target::Object(o) => self
                .objects
                .get(&o)
                .is_some_and(|o| o.shows_on.iter().any(|s| shared.contains_key(s))),
        }
    }
}

/// Containers nest; core forbids cycles, this bounds the walk regardless.
pub(super) const MAX_CONTAINER_DEPTH: usize = 64;

/// Whether an event can change an access answer or an explanation.
fn matters(decoded: &Decoded) -> bool {
    !matches!(
        decoded,
        Decoded::Content {
            event: ContentEvent::ObjectFieldUpdated { .. } | ContentEvent::ObjectFieldEdited { .. },
            ..
        } | Decoded::Site {
            event: SiteEvent::SeatLimitSet { .. }
                | SiteEvent::ParentSiteSet { .. }
                | SiteEvent::SelfRegistrationConfigured { .. }
                | SiteEvent::TwoFactorRequirementSet { .. }
                | SiteEvent::OrganizationSettingsHiddenSet { .. },
            ..
        } | Decoded::SiteCode(_)
            | Decoded::Connection(
                ConnectionEvent::ConnectionRequested { .. }
                    | ConnectionEvent::ConnectionDenied { .. }
                    | ConnectionEvent::ConnectionRequestCancelled { .. }
            )
    )
}

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

/// One item of a lookup page: the target's key, its kind, the level.
type Item = (TargetKey, TargetKind, AccessLevel);

/// An ordered source of a lookup page's items: a scorecard's `shows` from
/// the cursor on (its objects, at one level), or a list sorted by key.
enum Source<'a> {
    Shows {
        objects: btree_map::Range<'a, ObjectId, ObjectKind>,
        level: AccessLevel,
    },
    List(std::slice::Iter<'a, Item>),
}

impl<'a> Source<'a> {
    /// The objects of `shows` whose keys may follow `from` (at most the
    /// first is not after it: the tie of a scorecard's and an object's id).
    fn shows(
        shows: &'a BTreeMap<ObjectId, ObjectKind>,
        from: Option<TargetKey>,
        level: AccessLevel,
    ) -> Self {
        let start = match from {
            Some((id, _)) => Bound::Included(ObjectId(id)),
            None => Bound::Unbounded,
        };
        Source::Shows {
            objects: shows.range((start, Bound::Unbounded)),
            level,
        }
    }
}

impl Iterator for Source<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        match self {
            Source::Shows { objects, level } => objects.next().map(|(o, k)| {
                (
                    target_key(Target::Object(*o)),
                    TargetKind::Object(*k),
                    *level,
                )
            }),
            Source::List(items) => items.next().copied(),
        }
    }
}

/// The head of one source in a [`Merge`]: ordered by key (the smallest
/// first out of the max-heap), then by source.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Head {
    key: TargetKey,
    source: usize,
    kind: TargetKind,
    level: AccessLevel,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.key, other.source).cmp(&(self.key, self.source))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A k-way merge of ordered sources: every key once, in order, at the
/// highest level any source gives it. Each step costs a heap operation
/// (logarithmic in the number of sources) per source item read; nothing is
/// read beyond what is asked.
struct Merge<'a> {
    sources: Vec<Source<'a>>,
    heads: BinaryHeap<Head>,
}

impl<'a> Merge<'a> {
    fn new(sources: impl IntoIterator<Item = Source<'a>>) -> Self {
        let mut sources: Vec<Source<'a>> = sources.into_iter().collect();
        let mut heads = BinaryHeap::with_capacity(sources.len());
        for (source, items) in sources.iter_mut().enumerate() {
            if let Some((key, kind, level)) = items.next() {
                heads.push(Head {
                    key,
                    source,
                    kind,
                    level,
                });
            }
        }
        Self { sources, heads }
    }

    /// Takes the smallest head and puts its source's next item in its place.
    fn pop(&mut self) -> Option<Head> {
        let mut top = self.heads.peek_mut()?;
        let head = *top;
        match self.sources[head.source].next() {
            Some((key, kind, level)) => {
                *top = Head {
                    key,
                    source: head.source,
                    kind,
                    level,
                }
            }
            None => {
                PeekMut::pop(top);
            }
        }
        Some(head)
    }

    /// The highest level the sources give `key`, skipping every smaller key
    /// (keys must be asked in increasing order).
    fn level_at(&mut self, key: TargetKey) -> Option<AccessLevel> {
        let mut level = None;
        while self.heads.peek().is_some_and(|head| head.key <= key) {
            let head = self.pop().expect("peeked");
            if head.key == key {
                level = level.max(Some(head.level));
            }
        }
        level
    }
}

impl Iterator for Merge<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        let head = self.pop()?;
        let mut level = head.level;
        while self.heads.peek().is_some_and(|next| next.key == head.key) {
            level = level.max(self.pop().expect("peeked").level);
        }
        Some((head.key, head.kind, level))
    }
}

fn format_cursor((site, (id, tag)): (SiteId, TargetKey)) -> String {
    format!("{}.{}.{}", site.0.simple(), tag, id.simple())
}

fn parse_cursor(raw: &str) -> Result<(SiteId, TargetKey), AccessError> {
    let bad = || AccessError::BadCursor(raw.to_owned());
    let mut parts = raw.split('.');
    let (Some(site), Some(tag), Some(id), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(bad());
    };
    let site = uuid::Uuid::try_parse(site).map_err(|_| bad())?;
    let tag: u8 = match tag {
        "0" => 0,
        "1" => 1,
        _ => return Err(bad()),
    };
    let id = uuid::Uuid::try_parse(id).map_err(|_| bad())?;
    Ok((SiteId(site), (id, tag)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_and_garbage_is_refused() {
        let key = (SiteId::new(), (uuid::Uuid::new_v4(), 1));
        assert_eq!(parse_cursor(&format_cursor(key)).unwrap(), key);
        for bad in ["", "x", "a.b.c", "a.1.b.c"] {
            assert!(matches!(parse_cursor(bad), Err(AccessError::BadCursor(_))));
        }
        let mut tampered = format_cursor(key);
        tampered.replace_range(33..34, "7");
        assert!(parse_cursor(&tampered).is_err());
    }
}
