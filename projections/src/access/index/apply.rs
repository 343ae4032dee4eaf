//! Applying the log to the index, event by event: the facts the rules read,
//! with the event each came from, and the derived *shows on* relation kept
//! both ways (and as each site's "shown" bit) as placements, removals and
//! new objects change it.

use std::collections::BTreeMap;

use rustc_hash::{FxHashMap, FxHashSet};
use shareledger_core::catalog::{
    AccessLevel, ConnectionEvent, ContentEvent, Link, ObjectId, Permissions, RelationshipId,
    ScorecardId, SiteCodeEvent, SiteEvent, SiteId, UserId,
};
use shareledger_events::RecordedEvent;

use super::{
    flag_bit, target_key, AccessIndex, ObjectInfo, Prov, RelInfo, RelTarget, ScorecardInfo,
    ShowsOn, SiteInfo, TargetInfo, UserInfo,
};
use crate::access::{Target, TargetKind};
use crate::decode::{decode, Decoded, EventRef};
use crate::ProjectionError;

/// Records in the site's `targets` whether an object shows on a scorecard.
fn set_shown(sites: &mut FxHashMap<SiteId, SiteInfo>, site: SiteId, object: ObjectId, shown: bool) {
    if let Some(target) = sites
        .get_mut(&site)
        .and_then(|info| info.targets.get_mut(&target_key(Target::Object(object))))
    {
        target.shown = shown;
    }
}

fn flag_bits(flags: &Permissions) -> u64 {
    flags.iter().fold(0, |bits, flag| bits | flag_bit(*flag))
}

impl AccessIndex {
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
        self.apply_known(event, decoded.as_ref())
    }

    /// [`AccessIndex::apply`] for an event its caller decoded already
    /// (`decoded` is what `decode` gave for it).
    pub(in crate::access) fn apply_known(
        &mut self,
        event: &RecordedEvent,
        decoded: Option<&Decoded>,
    ) -> Result<(), ProjectionError> {
        if event.global_position <= self.position {
            return Err(ProjectionError::OutOfOrder {
                position: event.global_position,
                applied: self.position,
            });
        }
        self.position = event.global_position;
        let Some(decoded) = decoded else {
            return Ok(());
        };
        if !matters(decoded) {
            return Ok(());
        }
        self.events.push(EventRef::of(event));
        self.apply_fact(decoded);
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
            SiteEvent::SiteRegistered { code, name, .. } => {
                self.sites.insert(
                    site,
                    SiteInfo {
                        code: code.clone(),
                        name: name.clone(),
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
                        username: user.username.clone(),
                        name: user.name.clone(),
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
            SiteEvent::UserDetailsChanged { user_id, name, .. } => {
                if let Some(user) = self.users.get_mut(user_id) {
                    user.name = name.clone();
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
            &ContentEvent::ScorecardCreated {
                scorecard_id,
                ref name,
            } => {
                self.scorecards.insert(
                    scorecard_id,
                    ScorecardInfo {
                        site,
                        name: name.clone(),
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
                ref name,
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
                        name: name.clone(),
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
            } => self.remove_placement(object_id, scorecard_id),
            &ContentEvent::ScorecardRenamed {
                scorecard_id,
                ref name,
            } => {
                if let Some(scorecard) = self.scorecards.get_mut(&scorecard_id) {
                    scorecard.name = name.clone();
                }
            }
            &ContentEvent::ObjectRenamed {
                object_id,
                ref name,
            } => {
                if let Some(object) = self.objects.get_mut(&object_id) {
                    object.name = name.clone();
                }
            }
            &ContentEvent::ScorecardArchived { scorecard_id } => {
                self.archive_scorecard(site, scorecard_id)
            }
            &ContentEvent::ObjectArchived { object_id } => self.archive_object(site, object_id),
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

    /// An object leaves a scorecard it was placed on: what shows on the
    /// scorecard is recomputed from what is still placed.
    fn remove_placement(&mut self, object_id: ObjectId, scorecard_id: ScorecardId) {
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

    /// A scorecard is archived: its placements go, then the scorecard from
    /// every map (its site's targets, the links sharing it, its own site's
    /// users' assignments, which no longer count as own).
    fn archive_scorecard(&mut self, site: SiteId, scorecard_id: ScorecardId) {
        let placed: Vec<ObjectId> = self
            .scorecards
            .get(&scorecard_id)
            .map(|s| s.placed.keys().copied().collect())
            .unwrap_or_default();
        for object_id in placed {
            self.remove_placement(object_id, scorecard_id);
        }
        if self.scorecards.remove(&scorecard_id).is_none() {
            return;
        }
        for link in self.links.values_mut() {
            link.shared.remove(&scorecard_id);
        }
        let Some(info) = self.sites.get_mut(&site) else {
            return;
        };
        info.targets
            .remove(&target_key(Target::Scorecard(scorecard_id)));
        for user_id in &info.users {
            if let Some(user) = self.users.get_mut(user_id) {
                if user.assigned.remove(&scorecard_id).is_some() {
                    user.own_assigned = user.own_assigned.saturating_sub(1);
                }
            }
        }
    }

    /// An object is archived: its placements go, then it leaves the
    /// scorecards it showed on through its container, its container's
    /// children and its site's targets. (The command side archives no
    /// object that still contains objects.)
    fn archive_object(&mut self, site: SiteId, object_id: ObjectId) {
        let Some(showing) = self.objects.get(&object_id).map(|o| o.shows_on.clone()) else {
            return;
        };
        for scorecard_id in showing {
            let placed = self
                .scorecards
                .get(&scorecard_id)
                .is_some_and(|s| s.placed.contains_key(&object_id));
            if placed {
                self.remove_placement(object_id, scorecard_id);
            }
        }
        let Some(object) = self.objects.remove(&object_id) else {
            return;
        };
        for scorecard_id in &object.shows_on {
            if let Some(scorecard) = self.scorecards.get_mut(scorecard_id) {
                scorecard.shows.remove(&object_id);
            }
        }
        if let Some(parent) = object.container.and_then(|c| self.objects.get_mut(&c)) {
            parent.children.retain(|c| *c != object_id);
        }
        if let Some(info) = self.sites.get_mut(&site) {
            info.targets.remove(&target_key(Target::Object(object_id)));
        }
    }

    pub(super) fn scorecard_site(&self, scorecard: ScorecardId) -> Option<SiteId> {
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
}

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
                | SiteEvent::DirectoryListingSet { .. }
                | SiteEvent::SelfRegistrationLinkSet { .. }
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
