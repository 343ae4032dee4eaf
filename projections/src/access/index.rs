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

use std::collections::BTreeSet;

use rustc_hash::{FxHashMap, FxHashSet};
use shareledger_core::catalog::{
    AccessLevel, Action, ConnectionEvent, ContentEvent, Link, ObjectId, ObjectKind, PermissionFlag,
    Permissions, RelationshipId, ScorecardId, SiteCode, SiteCodeEvent, SiteEvent, SiteId, UserId,
};
use shareledger_events::RecordedEvent;

use super::{AccessError, LookupPage, LookupQuery, Target, TargetKind, Viewer, Visible};
use super::{DEFAULT_PAGE, MAX_PAGE};
use crate::decode::{decode, Decoded, EventRef};
use crate::ProjectionError;

/// An index into [`AccessIndex::events`]: the event that established a fact.
pub(super) type Prov = u32;

#[derive(Debug, Clone)]
pub(super) struct SiteInfo {
    pub code: SiteCode,
    pub users: Vec<UserId>,
    pub scorecards: Vec<ScorecardId>,
    pub objects: Vec<ObjectId>,
    /// Sites with an active link *to* this site (they share with it).
    pub sharing_with_me: FxHashSet<SiteId>,
    /// Sites this site shares with over an active link.
    pub sharing_to: FxHashSet<SiteId>,
    /// This site's relationships to partners' objects, by object.
    pub relationships_by_object: FxHashMap<ObjectId, Vec<RelationshipId>>,
}

#[derive(Debug, Clone)]
pub(super) struct UserInfo {
    pub site: SiteId,
    pub active: bool,
    /// The event that added or last reactivated or deactivated the user.
    pub active_prov: Prov,
    pub flags: Permissions,
    /// The event that last set the user's flags.
    pub flags_prov: Prov,
    pub assigned: FxHashMap<ScorecardId, (AccessLevel, Prov)>,
}

impl UserInfo {
    pub fn has(&self, flag: PermissionFlag) -> bool {
        self.flags.contains(&flag)
    }
}

#[derive(Debug, Clone)]
pub(super) struct ScorecardInfo {
    pub site: SiteId,
    /// Objects placed directly on the scorecard, with the placing event.
    pub placed: FxHashMap<ObjectId, Prov>,
    /// Every object that shows on it (placed, or inside a container that shows).
    pub shows: FxHashSet<ObjectId>,
}

#[derive(Debug, Clone)]
pub(super) struct ObjectInfo {
    pub site: SiteId,
    pub kind: ObjectKind,
    pub container: Option<ObjectId>,
    pub prov: Prov,
    pub children: Vec<ObjectId>,
    /// The scorecards the object shows on.
    pub shows_on: Vec<ScorecardId>,
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
}

impl AccessIndex {
    /// An index of an empty log.
    pub fn new() -> Self {
        Self::default()
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
        let prov = (self.events.len() - 1) as Prov;
        match decoded {
            Decoded::Site { site, event } => self.apply_site(site, event, prov),
            Decoded::SiteCode(SiteCodeEvent::SiteCodeClaimed { .. }) => {}
            Decoded::Content { site, event } => self.apply_content(site, event, prov),
            Decoded::Connection(event) => self.apply_connection(event, prov),
        }
        Ok(())
    }

    fn apply_site(&mut self, site: SiteId, event: SiteEvent, prov: Prov) {
        match event {
            SiteEvent::SiteRegistered { code, .. } => {
                self.sites.insert(
                    site,
                    SiteInfo {
                        code,
                        users: Vec::new(),
                        scorecards: Vec::new(),
                        objects: Vec::new(),
                        sharing_with_me: FxHashSet::default(),
                        sharing_to: FxHashSet::default(),
                        relationships_by_object: FxHashMap::default(),
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
                self.users.insert(
                    user.user_id,
                    UserInfo {
                        site,
                        active: true,
                        active_prov: prov,
                        flags: user.permissions,
                        flags_prov: prov,
                        assigned: scorecard_access
                            .into_iter()
                            .map(|(s, level)| (s, (level, prov)))
                            .collect(),
                    },
                );
            }
            SiteEvent::UserRoleChanged {
                user_id,
                permissions,
                ..
            }
            | SiteEvent::UserPermissionsSet {
                user_id,
                permissions,
            } => {
                if let Some(user) = self.users.get_mut(&user_id) {
                    user.flags = permissions;
                    user.flags_prov = prov;
                }
            }
            SiteEvent::ScorecardAccessGranted {
                user_id,
                scorecard_id,
                level,
            } => {
                if let Some(user) = self.users.get_mut(&user_id) {
                    user.assigned.insert(scorecard_id, (level, prov));
                }
            }
            SiteEvent::ScorecardAccessRevoked {
                user_id,
                scorecard_id,
            } => {
                if let Some(user) = self.users.get_mut(&user_id) {
                    user.assigned.remove(&scorecard_id);
                }
            }
            SiteEvent::UserDeactivated { user_id } | SiteEvent::UserReactivated { user_id } => {
                let active = matches!(event, SiteEvent::UserReactivated { .. });
                if let Some(user) = self.users.get_mut(&user_id) {
                    user.active = active;
                    user.active_prov = prov;
                }
            }
            _ => {}
        }
    }

    fn apply_content(&mut self, site: SiteId, event: ContentEvent, prov: Prov) {
        match event {
            ContentEvent::ScorecardCreated { scorecard_id, .. } => {
                self.scorecards.insert(
                    scorecard_id,
                    ScorecardInfo {
                        site,
                        placed: FxHashMap::default(),
                        shows: FxHashSet::default(),
                    },
                );
                if let Some(info) = self.sites.get_mut(&site) {
                    info.scorecards.push(scorecard_id);
                }
            }
            ContentEvent::ObjectCreated {
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
                    None => Vec::new(),
                };
                for scorecard in &shows_on {
                    if let Some(s) = self.scorecards.get_mut(scorecard) {
                        s.shows.insert(object_id);
                    }
                }
                self.objects.insert(
                    object_id,
                    ObjectInfo {
                        site,
                        kind,
                        container,
                        prov,
                        children: Vec::new(),
                        shows_on,
                    },
                );
                if let Some(info) = self.sites.get_mut(&site) {
                    info.objects.push(object_id);
                }
            }
            ContentEvent::ObjectPlacedOnScorecard {
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
                    if scorecard.shows.insert(id) {
                        object.shows_on.push(scorecard_id);
                    }
                    stack.extend(object.children.iter().copied());
                }
            }
            ContentEvent::ObjectRemovedFromScorecard {
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
                let mut shows = FxHashSet::default();
                let mut stack: Vec<ObjectId> = scorecard.placed.keys().copied().collect();
                while let Some(id) = stack.pop() {
                    if shows.insert(id) {
                        if let Some(object) = self.objects.get(&id) {
                            stack.extend(object.children.iter().copied());
                        }
                    }
                }
                let old = std::mem::replace(&mut scorecard.shows, shows);
                for gone in old.iter().filter(|o| !scorecard.shows.contains(o)) {
                    if let Some(object) = self.objects.get_mut(gone) {
                        object.shows_on.retain(|s| *s != scorecard_id);
                    }
                }
            }
            ContentEvent::SharedObjectLinked {
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
            ContentEvent::SharedMeasureAggregated {
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
            ContentEvent::RelationshipRemoved {
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
                    }
                }
            }
            ContentEvent::ObjectFieldUpdated { .. } | ContentEvent::ObjectFieldEdited { .. } => {}
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
        self.relationships.insert(
            id,
            RelInfo {
                site,
                object,
                target,
                prov,
            },
        );
        if let Some(info) = self.sites.get_mut(&site) {
            info.relationships_by_object
                .entry(object)
                .or_default()
                .push(id);
        }
    }

    fn apply_connection(&mut self, event: ConnectionEvent, prov: Prov) {
        match event {
            ConnectionEvent::LinksActivated { links, .. } => {
                for link in links {
                    let info = self.links.entry(link).or_default();
                    info.active = true;
                    info.prov = prov;
                    info.shared.clear();
                    self.set_link_index(link, true);
                }
            }
            ConnectionEvent::LinkRevoked { link, .. } => {
                let info = self.links.entry(link).or_default();
                info.active = false;
                info.prov = prov;
                info.shared.clear();
                self.set_link_index(link, false);
            }
            ConnectionEvent::ScorecardShared { link, scorecard_id } => {
                let info = self.links.entry(link).or_default();
                info.shared.insert(scorecard_id, prov);
            }
            ConnectionEvent::ScorecardUnshared {
                link, scorecard_id, ..
            } => {
                if let Some(info) = self.links.get_mut(&link) {
                    info.shared.remove(&scorecard_id);
                }
            }
            // Requests, denials and cancellations change no access.
            ConnectionEvent::ConnectionRequested { .. }
            | ConnectionEvent::ConnectionDenied { .. }
            | ConnectionEvent::ConnectionRequestCancelled { .. } => {}
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
        user.assigned
            .keys()
            .any(|s| self.scorecards.get(s).is_some_and(|s| s.site == user.site))
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
        let mut site_sees = false;
        for s in &info.shows_on {
            if shared.contains_key(s) {
                site_sees = true;
                if user.assigned.contains_key(s) {
                    return true;
                }
            }
        }
        if !site_sees {
            return false;
        }
        if user.has(PermissionFlag::AllScorecards) {
            return true;
        }
        self.relationship_gives(user, object)
    }

    /// Whether a relationship of the user's site to the object or one of its
    /// containers sits where the user can see it.
    fn relationship_gives(&self, user: &UserInfo, object: ObjectId) -> bool {
        let Some(site) = self.sites.get(&user.site) else {
            return false;
        };
        if site.relationships_by_object.is_empty() {
            return false;
        }
        let mut current = Some(object);
        let mut depth = 0;
        while let Some(id) = current {
            if let Some(rels) = site.relationships_by_object.get(&id) {
                if rels.iter().any(|r| self.relationship_visible_to(user, *r)) {
                    return true;
                }
            }
            current = self.objects.get(&id).and_then(|o| o.container);
            depth += 1;
            if depth > MAX_CONTAINER_DEPTH {
                break;
            }
        }
        false
    }

    /// Whether the user has a level on where a relationship of their site sits.
    /// The relationship's own object must still be seen by the site: one
    /// whose object left the shared scorecards gives nothing, even before
    /// the consequence worker removes it (R-SHARE-4).
    pub(super) fn relationship_visible_to(&self, user: &UserInfo, rel: RelationshipId) -> bool {
        let Some(info) = self.relationships.get(&rel) else {
            return false;
        };
        let Some(owner) = self.objects.get(&info.object).map(|o| o.site) else {
            return false;
        };
        if !self.site_sees(user.site, owner, Target::Object(info.object)) {
            return false;
        }
        match info.target {
            RelTarget::Scorecard(s) => {
                self.scorecards
                    .get(&s)
                    .is_some_and(|sc| sc.site == user.site)
                    && self.own_scorecard_level(user, s).is_some()
            }
            RelTarget::Aggregation(o) => {
                self.objects.get(&o).is_some_and(|ob| ob.site == user.site)
                    && self.own_object_level(user, o).is_some()
            }
        }
    }

    // ---- Q-2 -------------------------------------------------------------

    /// everything the user can see, filtered, one page at a time,
    /// ordered by (owner site, target id).
    pub fn lookup(&self, user_id: UserId, query: &LookupQuery) -> Result<LookupPage, AccessError> {
        let user = self.user(user_id)?;
        let after = query.after.as_deref().map(parse_cursor).transpose()?;
        let limit = match query.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        };
        let mut found: Vec<(SiteId, Target, AccessLevel)> = Vec::new();
        if user.active {
            let wants_site = |site: SiteId| query.site.is_none_or(|s| s == site);
            if wants_site(user.site) {
                self.own_visible(user, query.kind, &mut found);
            }
            if let Some(site) = self.sites.get(&user.site) {
                for owner in &site.sharing_with_me {
                    if wants_site(*owner) {
                        self.foreign_visible(user, *owner, query.kind, &mut found);
                    }
                }
            }
        }
        let key = |(site, target, _): &(SiteId, Target, AccessLevel)| (*site, target_key(*target));
        if let Some(after) = after {
            found.retain(|item| key(item) > after);
        }
        found.sort_unstable_by_key(key);
        let more = found.len() > limit;
        found.truncate(limit);
        let next = if more {
            found.last().map(|item| format_cursor(key(item)))
        } else {
            None
        };
        let items = found
            .into_iter()
            .map(|(site, target, level)| Visible {
                target,
                kind: self.kind_of(target),
                site,
                origin_code: self
                    .sites
                    .get(&site)
                    .map(|s| s.code.clone())
                    .unwrap_or_else(|| SiteCode::parse("unknown").expect("a valid code")),
                level,
            })
            .collect();
        Ok(LookupPage { items, next })
    }

    pub(super) fn kind_of(&self, target: Target) -> TargetKind {
        match target {
            Target::Scorecard(_) => TargetKind::Scorecard,
            Target::Object(o) => self
                .objects
                .get(&o)
                .map(|o| TargetKind::Object(o.kind))
                .unwrap_or(TargetKind::Scorecard),
        }
    }

    fn own_visible(
        &self,
        user: &UserInfo,
        kind: Option<TargetKind>,
        out: &mut Vec<(SiteId, Target, AccessLevel)>,
    ) {
        let Some(site) = self.sites.get(&user.site) else {
            return;
        };
        let site_id = user.site;
        if kind.is_none_or(|k| k == TargetKind::Scorecard) {
            for s in &site.scorecards {
                if let Some(level) = self.own_scorecard_level(user, *s) {
                    out.push((site_id, Target::Scorecard(*s), level));
                }
            }
        }
        if kind == Some(TargetKind::Scorecard) {
            return;
        }
        let wants = |o: &ObjectId| {
            kind.is_none_or(|k| self.objects.get(o).map(|i| TargetKind::Object(i.kind)) == Some(k))
        };
        let broad = user.has(PermissionFlag::InstanceAdmin) || self.browses_all(user);
        if broad {
            for o in site.objects.iter().filter(|o| wants(o)) {
                if let Some(level) = self.own_object_level(user, *o) {
                    out.push((site_id, Target::Object(*o), level));
                }
            }
        } else {
            let mut seen: FxHashSet<ObjectId> = FxHashSet::default();
            for s in user.assigned.keys() {
                let Some(scorecard) = self.scorecards.get(s).filter(|s| s.site == site_id) else {
                    continue;
                };
                for o in &scorecard.shows {
                    if wants(o) && seen.insert(*o) {
                        if let Some(level) = self.own_object_level(user, *o) {
                            out.push((site_id, Target::Object(*o), level));
                        }
                    }
                }
            }
        }
    }

    fn foreign_visible(
        &self,
        user: &UserInfo,
        owner: SiteId,
        kind: Option<TargetKind>,
        out: &mut Vec<(SiteId, Target, AccessLevel)>,
    ) {
        let Some(shared) = self.shared(owner, user.site) else {
            return;
        };
        let all = user.has(PermissionFlag::AllScorecards);
        if kind.is_none_or(|k| k == TargetKind::Scorecard) {
            for s in shared.keys() {
                if all || user.assigned.contains_key(s) {
                    out.push((owner, Target::Scorecard(*s), AccessLevel::Browser));
                }
            }
        }
        if kind == Some(TargetKind::Scorecard) {
            return;
        }
        let wants = |o: &ObjectId| {
            kind.is_none_or(|k| self.objects.get(o).map(|i| TargetKind::Object(i.kind)) == Some(k))
        };
        let mut seen: FxHashSet<ObjectId> = FxHashSet::default();
        for s in shared.keys() {
            if !(all || user.assigned.contains_key(s)) {
                continue;
            }
            if let Some(scorecard) = self.scorecards.get(s) {
                seen.extend(scorecard.shows.iter().copied().filter(|o| wants(o)));
            }
        }
        if !all {
            // Through relationships: the related object and what it contains,
            // as far as the site sees it.
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
                        if wants(&id) && info.shows_on.iter().any(|s| shared.contains_key(s)) {
                            seen.insert(id);
                        }
                        stack.extend(info.children.iter().copied());
                    }
                }
            }
        }
        out.extend(
            seen.into_iter()
                .map(|o| (owner, Target::Object(o), AccessLevel::Browser)),
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
type TargetKey = (uuid::Uuid, u8);

fn target_key(target: Target) -> TargetKey {
    match target {
        Target::Scorecard(s) => (s.0, 0),
        Target::Object(o) => (o.0, 1),
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
