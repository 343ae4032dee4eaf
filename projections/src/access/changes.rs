//! Access changes: who gained, lost or changed access to what, event by
//! event, computed by the access index as it applies the log.
//!
//! [`AccessIndex::apply_tracked`] applies one event like
//! [`AccessIndex::apply`] and answers the changes that event made to the
//! answers of Q-3 (who can see each target, at what level): for every user
//! the event may concern, everything the user could see before it is
//! compared with everything they can see after it. The users an event may
//! concern are found from the event alone ([`AccessIndex::concerned`]):
//!
//! * an event about one user (added, role, flags, scorecard access,
//!   deactivated, reactivated): that user;
//! * an event of a site's content (placements, containment, relationships,
//!   archives): the site's users and the users of every site it has a link
//!   to, in any state (their access to its content goes through the link);
//! * an event of a connection (links activated or revoked, shares): the
//!   users of both sites;
//! * anything else (renames, the site's settings, requests, code claims):
//!   no one, since the rule does not read it.
//!
//! For the commonest content events the targets whose level can change
//! are known from the event too ([`AccessIndex::candidates`]), and only
//! those are compared, target by target, instead of everything each
//! user sees: a scorecard or object created (itself); an object placed on
//! or removed from a scorecard (the object and everything inside it, and
//! the partners' objects the site's aggregations into those bring, with
//! everything inside them); a relationship made or removed (its partner
//! object and everything inside it). Other events compare whole views.
//!
//! The property test `projections/tests/access_oracle.rs` holds the result
//! equal, event by event, to the difference of the oracle's Q-3 answers
//! before and after the event.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{
    AccessLevel, ConnectionEvent, ContentEvent, Name, ObjectId, SiteEvent, SiteId, UserId, Username,
};
use shareledger_events::RecordedEvent;

use super::index::RelTarget;
use super::{AccessIndex, LookupQuery, Target, MAX_PAGE};
use crate::decode::{decode, Decoded};
use crate::ProjectionError;

/// One user's access to one target, changed by one event (the audit's
/// `history::AccessChange` is one that changed between two moments).
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventAccessChange {
    /// The user's site.
    pub user_site: SiteId,
    pub user: UserId,
    /// The user's username.
    pub username: Username,
    /// The target's owner site.
    pub target_site: SiteId,
    pub target: Target,
    /// The target's name (as it was, for one the event archived).
    pub target_name: Name,
    /// The level before the event; none: no access.
    pub before: Option<AccessLevel>,
    /// The level after the event; none: no access.
    pub after: Option<AccessLevel>,
}

/// What kind of change an [`EventAccessChange`] is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ChangeKind {
    /// No access before, access after.
    Gained,
    /// Access before, none after.
    Lost,
    /// Access before and after, at another level.
    Changed,
}

impl EventAccessChange {
    /// Gained, lost or changed.
    pub fn kind(&self) -> ChangeKind {
        match (self.before, self.after) {
            (None, _) => ChangeKind::Gained,
            (_, None) => ChangeKind::Lost,
            _ => ChangeKind::Changed,
        }
    }
}

/// What one user can see: target → (owner site, level, name).
type Seen = BTreeMap<Target, (SiteId, AccessLevel, Name)>;

impl AccessIndex {
    /// Applies the next event (as [`AccessIndex::apply`]) and answers the
    /// access it changed, ordered by (user's site, user, target).
    pub fn apply_tracked(
        &mut self,
        event: &RecordedEvent,
    ) -> Result<Vec<EventAccessChange>, ProjectionError> {
        let decoded = decode(event)?;
        self.apply_tracked_decoded(event, decoded.as_ref())
    }

    /// [`AccessIndex::apply_tracked`] for an event its caller decoded
    /// already (`decoded` is what `decode` gave for it).
    pub fn apply_tracked_decoded(
        &mut self,
        event: &RecordedEvent,
        decoded: Option<&Decoded>,
    ) -> Result<Vec<EventAccessChange>, ProjectionError> {
        let concerned = decoded.map(|d| self.concerned(d)).unwrap_or_default();
        let candidates = decoded.and_then(|d| self.candidates(d));
        let view = |index: &Self, user: UserId| match &candidates {
            Some(targets) => index.seen_of(user, targets),
            None => index.seen_by(user),
        };
        let before: Vec<(UserId, Seen)> = concerned
            .iter()
            .map(|user| (*user, view(self, *user)))
            .collect();
        self.apply_known(event, decoded)?;
        let mut changes = Vec::new();
        for (user, before) in before {
            // A user the event added has no site before it: take it after.
            let Some((user_site, username)) =
                self.users.get(&user).map(|u| (u.site, u.username.clone()))
            else {
                continue;
            };
            let after = view(self, user);
            let targets: BTreeSet<&Target> = before.keys().chain(after.keys()).collect();
            for target in targets {
                let was = before.get(target);
                let is = after.get(target);
                let level = |seen: Option<&(SiteId, AccessLevel, Name)>| seen.map(|s| s.1);
                if level(was) != level(is) {
                    let Some((target_site, _, target_name)) = is.or(was) else {
                        continue;
                    };
                    changes.push(EventAccessChange {
                        user_site,
                        user,
                        username: username.clone(),
                        target_site: *target_site,
                        target: *target,
                        target_name: target_name.clone(),
                        before: level(was),
                        after: level(is),
                    });
                }
            }
        }
        changes.sort();
        Ok(changes)
    }

    /// The users whose access the event may change (see the module's
    /// documentation), in id order.
    pub fn concerned(&self, decoded: &Decoded) -> BTreeSet<UserId> {
        let mut users = BTreeSet::new();
        match decoded {
            Decoded::Site { event, .. } => {
                let one = match event {
                    SiteEvent::UserAdded { user, .. } => Some(user.user_id),
                    SiteEvent::UserRoleChanged { user_id, .. }
                    | SiteEvent::UserPermissionsSet { user_id, .. }
                    | SiteEvent::ScorecardAccessGranted { user_id, .. }
                    | SiteEvent::ScorecardAccessRevoked { user_id, .. }
                    | SiteEvent::UserDeactivated { user_id }
                    | SiteEvent::UserReactivated { user_id } => Some(*user_id),
                    _ => None,
                };
                users.extend(one);
            }
            Decoded::Content { site, event } => {
                if !matches!(
                    event,
                    ContentEvent::ScorecardRenamed { .. }
                        | ContentEvent::ObjectRenamed { .. }
                        | ContentEvent::ObjectFieldUpdated { .. }
                        | ContentEvent::ObjectFieldEdited { .. }
                ) {
                    let mut sites = vec![*site];
                    sites.extend(
                        self.links
                            .keys()
                            .filter(|link| link.from == *site)
                            .map(|link| link.to),
                    );
                    for site in sites {
                        users.extend(self.users_of(site));
                    }
                }
            }
            Decoded::Connection(event) => {
                let links = match event {
                    ConnectionEvent::LinksActivated { links, .. } => links.clone(),
                    ConnectionEvent::LinkRevoked { link, .. }
                    | ConnectionEvent::ScorecardShared { link, .. }
                    | ConnectionEvent::ScorecardUnshared { link, .. } => vec![*link],
                    _ => Vec::new(),
                };
                for link in links {
                    users.extend(self.users_of(link.from));
                    users.extend(self.users_of(link.to));
                }
            }
            Decoded::SiteCode(_) => {}
        }
        users
    }

    /// The targets whose level the event can change, when the event alone
    /// tells (see the module's documentation); `None`: any.
    pub fn candidates(&self, decoded: &Decoded) -> Option<Vec<Target>> {
        let Decoded::Content { site, event } = decoded else {
            return None;
        };
        let mut targets = Vec::new();
        match event {
            ContentEvent::ScorecardCreated { scorecard_id, .. } => {
                targets.push(Target::Scorecard(*scorecard_id));
            }
            ContentEvent::ObjectCreated { object_id, .. } => {
                targets.push(Target::Object(*object_id));
            }
            ContentEvent::ObjectPlacedOnScorecard { object_id, .. }
            | ContentEvent::ObjectRemovedFromScorecard { object_id, .. } => {
                let inside = self.subtree(*object_id);
                // The site's users' level on these objects may change, and
                // with it what the site's aggregations into them bring.
                let brought: Vec<ObjectId> = self
                    .relationships
                    .values()
                    .filter(|rel| {
                        rel.site == *site
                            && matches!(rel.target, RelTarget::Aggregation(into) if inside.contains(&into))
                    })
                    .map(|rel| rel.object)
                    .collect();
                targets.extend(inside.iter().map(|o| Target::Object(*o)));
                for object in brought {
                    targets.extend(self.subtree(object).into_iter().map(Target::Object));
                }
            }
            ContentEvent::SharedObjectLinked { object_id, .. }
            | ContentEvent::SharedMeasureAggregated { object_id, .. } => {
                targets.extend(self.subtree(*object_id).into_iter().map(Target::Object));
            }
            ContentEvent::RelationshipRemoved {
                relationship_id, ..
            } => {
                let rel = self.relationships.get(relationship_id)?;
                targets.extend(self.subtree(rel.object).into_iter().map(Target::Object));
            }
            _ => return None,
        }
        targets.sort_unstable();
        targets.dedup();
        Some(targets)
    }

    /// The object and every object inside it (transitively).
    fn subtree(&self, object: ObjectId) -> BTreeSet<ObjectId> {
        let mut found = BTreeSet::new();
        let mut todo = vec![object];
        while let Some(next) = todo.pop() {
            if found.insert(next) {
                if let Some(info) = self.objects.get(&next) {
                    todo.extend(info.children.iter().copied());
                }
            }
        }
        found
    }

    /// The user's level on each of `targets` the user can see.
    fn seen_of(&self, user: UserId, targets: &[Target]) -> Seen {
        targets
            .iter()
            .filter_map(|target| {
                let level = self.level(user, *target).ok().flatten()?;
                let site = self.owner(*target).ok()?;
                Some((*target, (site, level, self.target_name(*target))))
            })
            .collect()
    }

    /// Everything the user can see now (Q-2, every page); nothing for a
    /// user the index does not know.
    fn seen_by(&self, user: UserId) -> Seen {
        let mut seen = Seen::new();
        let mut query = LookupQuery {
            limit: MAX_PAGE,
            ..LookupQuery::default()
        };
        while let Ok(page) = self.lookup(user, &query) {
            seen.extend(
                page.items
                    .into_iter()
                    .map(|v| (v.target, (v.site, v.level, v.name))),
            );
            match page.next {
                Some(next) => query.after = Some(next),
                None => break,
            }
        }
        seen
    }
}
