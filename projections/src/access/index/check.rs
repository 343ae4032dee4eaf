//! a user's level on a target, and what else reads the same facts:
//! the owner of a target, the scorecards shared over a link, whether a site
//! sees a target, whether a relationship of the user's site gives access.
//!
//! The level is `shareledger_core::access_rule::level`, the one definition
//! the command side uses too; this file gathers the facts it reads from the
//! index's maps.

use rustc_hash::FxHashMap;
use shareledger_core::access_rule::{self as rule, TargetFacts};
use shareledger_core::catalog::{
    AccessLevel, Action, Link, ObjectId, RelationshipId, ScorecardId, SiteId, UserId,
};

use super::{AccessIndex, ObjectInfo, Prov, RelInfo, RelTarget, UserInfo, MAX_CONTAINER_DEPTH};
use crate::access::{AccessError, Target};

impl AccessIndex {
    pub(in crate::access) fn user(&self, user: UserId) -> Result<&UserInfo, AccessError> {
        self.users.get(&user).ok_or(AccessError::UnknownUser(user))
    }

    /// The owner site of a target.
    pub(in crate::access) fn owner(&self, target: Target) -> Result<SiteId, AccessError> {
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

    /// Q-1 for a known user and target: the facts the access rule reads,
    /// gathered from the maps, and [`rule::level`]'s answer.
    pub(super) fn level_of(
        &self,
        user: &UserInfo,
        owner: SiteId,
        target: Target,
    ) -> Option<AccessLevel> {
        match (owner == user.site, target) {
            (true, Target::Scorecard(s)) => self.own_scorecard_level(user, s),
            (true, Target::Object(o)) => self.own_object_level(user, o),
            (false, Target::Scorecard(s)) => {
                let shared = self
                    .shared(owner, user.site)
                    .is_some_and(|shared| shared.contains_key(&s));
                let assigned = user.assigned.contains_key(&s);
                rule::level(
                    &user.facts(),
                    TargetFacts::PartnerScorecard { shared, assigned },
                )
            }
            (false, Target::Object(o)) => self.foreign_object_level(user, owner, o),
        }
    }

    /// Whether any of the user's own site's scorecards is assigned to them.
    pub(in crate::access) fn has_own_assignment(&self, user: &UserInfo) -> bool {
        user.own_assigned > 0
    }

    /// The user's level on a scorecard of its own site.
    pub(in crate::access) fn own_scorecard_level(
        &self,
        user: &UserInfo,
        scorecard: ScorecardId,
    ) -> Option<AccessLevel> {
        let assigned = user.assigned.get(&scorecard).map(|(level, _)| *level);
        rule::level(&user.facts(), TargetFacts::OwnScorecard { assigned })
    }

    /// The user's level on an object of its own site (`None` for an
    /// unknown object).
    pub(in crate::access) fn own_object_level(
        &self,
        user: &UserInfo,
        object: ObjectId,
    ) -> Option<AccessLevel> {
        let on = &self.objects.get(&object)?.shows_on;
        let assigned = on
            .iter()
            .filter_map(|s| user.assigned.get(s).map(|(level, _)| *level))
            .max();
        let shown = !on.is_empty();
        rule::level(&user.facts(), TargetFacts::OwnObject { shown, assigned })
    }

    /// The scorecards shared over the link `from → to` if it is active.
    pub(in crate::access) fn shared(
        &self,
        from: SiteId,
        to: SiteId,
    ) -> Option<&FxHashMap<ScorecardId, Prov>> {
        self.links
            .get(&Link { from, to })
            .filter(|l| l.active)
            .map(|l| &l.shared)
    }

    /// The user's level on an object of another site: seen when it shows
    /// on a scorecard shared with the user's site, assigned when one of
    /// those is assigned to the user; the relationships are walked only if
    /// the rule asks.
    fn foreign_object_level(
        &self,
        user: &UserInfo,
        owner: SiteId,
        object: ObjectId,
    ) -> Option<AccessLevel> {
        // No active link from the owner, or no such object: not seen.
        let shared = self.shared(owner, user.site)?;
        let info = self.objects.get(&object)?;
        let (mut seen, mut assigned) = (false, false);
        for s in &info.shows_on {
            if shared.contains_key(s) {
                seen = true;
                if user.assigned.contains_key(s) {
                    assigned = true;
                    break;
                }
            }
        }
        let related = || self.relationship_gives(user, object, info, shared);
        rule::level(
            &user.facts(),
            TargetFacts::PartnerObject {
                seen,
                assigned,
                related: &related,
            },
        )
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
    pub(in crate::access) fn relationship_visible_to(
        &self,
        user: &UserInfo,
        rel: RelationshipId,
    ) -> bool {
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

    /// Whether the user has a level on the relationship's target (none on
    /// an archived one: between an archive and the relationship's removal,
    /// written in the same append, it gives nothing).
    fn relation_target_level(&self, user: &UserInfo, info: &RelInfo) -> bool {
        match info.target {
            RelTarget::Scorecard(s) => {
                self.scorecards.contains_key(&s) && self.own_scorecard_level(user, s).is_some()
            }
            RelTarget::Aggregation(o) => self.own_object_level(user, o).is_some(),
        }
    }

    /// Whether `site` sees `owner`'s target through the scorecards shared with it.
    pub(in crate::access) fn site_sees(&self, site: SiteId, owner: SiteId, target: Target) -> bool {
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
