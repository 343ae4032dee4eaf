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
//! The property test `projections/tests/access_oracle.rs` holds the result
//! equal, event by event, to the difference of the oracle's Q-3 answers
//! before and after the event.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{
    AccessLevel, ConnectionEvent, ContentEvent, Name, SiteEvent, SiteId, UserId, Username,
};
use shareledger_events::RecordedEvent;

use super::{AccessIndex, LookupQuery, Target, MAX_PAGE};
use crate::decode::{decode, Decoded};
use crate::ProjectionError;

/// One user's access to one target, changed by one event.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessChange {
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

/// What kind of change an [`AccessChange`] is.
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

impl AccessChange {
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
    ) -> Result<Vec<AccessChange>, ProjectionError> {
        let concerned = decode(event)
            .ok()
            .flatten()
            .map(|decoded| self.concerned(&decoded))
            .unwrap_or_default();
        let before: Vec<(UserId, Seen)> = concerned
            .iter()
            .map(|user| (*user, self.seen_by(*user)))
            .collect();
        self.apply(event)?;
        let mut changes = Vec::new();
        for (user, before) in before {
            // A user the event added has no site before it: take it after.
            let Some((user_site, username)) =
                self.users.get(&user).map(|u| (u.site, u.username.clone()))
            else {
                continue;
            };
            let after = self.seen_by(user);
            let targets: BTreeSet<&Target> = before.keys().chain(after.keys()).collect();
            for target in targets {
                let was = before.get(target);
                let is = after.get(target);
                let level = |seen: Option<&(SiteId, AccessLevel, Name)>| seen.map(|s| s.1);
                if level(was) != level(is) {
                    let Some((target_site, _, target_name)) = is.or(was) else {
                        continue;
                    };
                    changes.push(AccessChange {
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
