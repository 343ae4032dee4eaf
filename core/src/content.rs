//! A site's content: scorecards, objects (Results and Programs contain other
//! objects), which objects show on which scorecards, and the site's
//! relationships to partners' shared objects. The state folded from a
//! `content-<site>` stream, what of it a partner can see, who may change what
//! (R-USER-3, R-USER-4, R-SHARE-2 to R-SHARE-6), and the relationships a site
//! loses when it loses access (R-CONN-4, R-SHARE-4).

use std::collections::{BTreeMap, BTreeSet};

use shareledger_events::catalog::{
    content_stream, site_stream, AccessLevel, ContentEvent, Name, ObjectField, ObjectId,
    ObjectKind, PermissionFlag, RelationshipId, RemovalReason, ScorecardId, SiteId, UserId,
};
use shareledger_events::Actor;

use crate::access_rule::{self, TargetFacts, UserFacts};
use crate::boundary::BoundaryItem;
use crate::decision::{Context, Decided, Decision, Facts, Read, Write};
use crate::error::DomainError;
use crate::site::{authorize, SiteState, UserState};

/// An object of the site.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ObjectState {
    pub kind: ObjectKind,
    pub name: Name,
    pub container: Option<ObjectId>,
    pub fields: BTreeMap<ObjectField, String>,
}

/// Where a relationship puts a partner's object.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationshipTarget {
    /// On one of this site's scorecards.
    Scorecard(ScorecardId),
    /// In one of this site's aggregations (an own Indicator or Performance Measure).
    Aggregation(ObjectId),
}

/// A relationship to a partner's shared object (R-SHARE-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Relationship {
    pub target: RelationshipTarget,
    pub origin_site: SiteId,
    pub object_id: ObjectId,
}

/// A site's content, folded from its stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ContentState {
    pub site: SiteId,
    pub scorecards: BTreeMap<ScorecardId, Name>,
    pub objects: BTreeMap<ObjectId, ObjectState>,
    /// The objects placed directly on each scorecard.
    pub placements: BTreeMap<ScorecardId, BTreeSet<ObjectId>>,
    pub relationships: BTreeMap<RelationshipId, Relationship>,
    /// Scorecards and objects archived: gone from `scorecards`, `objects`
    /// and `placements`, their ids never used again.
    pub archived_scorecards: BTreeSet<ScorecardId>,
    pub archived_objects: BTreeSet<ObjectId>,
}

impl ContentState {
    /// The content of a site with nothing yet.
    pub fn empty(site: SiteId) -> Self {
        Self {
            site,
            scorecards: BTreeMap::new(),
            objects: BTreeMap::new(),
            placements: BTreeMap::new(),
            relationships: BTreeMap::new(),
            archived_scorecards: BTreeSet::new(),
            archived_objects: BTreeSet::new(),
        }
    }

    /// Applies one event.
    pub fn evolve(mut self, event: &ContentEvent) -> Self {
        match event {
            ContentEvent::ScorecardCreated { scorecard_id, name } => {
                self.scorecards.insert(*scorecard_id, name.clone());
            }
            ContentEvent::ObjectCreated {
                object_id,
                kind,
                name,
                container,
            } => {
                self.objects.insert(
                    *object_id,
                    ObjectState {
                        kind: *kind,
                        name: name.clone(),
                        container: *container,
                        fields: BTreeMap::new(),
                    },
                );
            }
            ContentEvent::ScorecardRenamed { scorecard_id, name } => {
                if let Some(current) = self.scorecards.get_mut(scorecard_id) {
                    *current = name.clone();
                }
            }
            ContentEvent::ObjectRenamed { object_id, name } => {
                if let Some(object) = self.objects.get_mut(object_id) {
                    object.name = name.clone();
                }
            }
            ContentEvent::ScorecardArchived { scorecard_id } => {
                self.scorecards.remove(scorecard_id);
                self.placements.remove(scorecard_id);
                self.archived_scorecards.insert(*scorecard_id);
            }
            ContentEvent::ObjectArchived { object_id } => {
                self.objects.remove(object_id);
                for placed in self.placements.values_mut() {
                    placed.remove(object_id);
                }
                self.archived_objects.insert(*object_id);
            }
            ContentEvent::ObjectPlacedOnScorecard {
                object_id,
                scorecard_id,
            } => {
                self.placements
                    .entry(*scorecard_id)
                    .or_default()
                    .insert(*object_id);
            }
            ContentEvent::ObjectRemovedFromScorecard {
                object_id,
                scorecard_id,
            } => {
                if let Some(placed) = self.placements.get_mut(scorecard_id) {
                    placed.remove(object_id);
                }
            }
            ContentEvent::ObjectFieldUpdated {
                object_id,
                field,
                value,
            }
            | ContentEvent::ObjectFieldEdited {
                object_id,
                field,
                value,
            } => {
                if let Some(object) = self.objects.get_mut(object_id) {
                    object.fields.insert(*field, value.clone());
                }
            }
            ContentEvent::SharedObjectLinked {
                relationship_id,
                scorecard_id,
                origin_site,
                object_id,
            } => {
                self.relationships.insert(
                    *relationship_id,
                    Relationship {
                        target: RelationshipTarget::Scorecard(*scorecard_id),
                        origin_site: *origin_site,
                        object_id: *object_id,
                    },
                );
            }
            ContentEvent::SharedMeasureAggregated {
                relationship_id,
                into_object,
                origin_site,
                object_id,
            } => {
                self.relationships.insert(
                    *relationship_id,
                    Relationship {
                        target: RelationshipTarget::Aggregation(*into_object),
                        origin_site: *origin_site,
                        object_id: *object_id,
                    },
                );
            }
            ContentEvent::RelationshipRemoved {
                relationship_id, ..
            } => {
                self.relationships.remove(relationship_id);
            }
        }
        self
    }

    /// Folds a whole stream.
    pub fn from_events<'a>(
        site: SiteId,
        events: impl IntoIterator<Item = &'a ContentEvent>,
    ) -> Self {
        events.into_iter().fold(Self::empty(site), Self::evolve)
    }

    /// Every object that shows on a scorecard: those placed on it and,
    /// transitively, the objects inside containers that show on it (R-SHARE-2).
    pub fn objects_on(&self, scorecard: ScorecardId) -> BTreeSet<ObjectId> {
        let mut shown: BTreeSet<ObjectId> =
            self.placements.get(&scorecard).cloned().unwrap_or_default();
        loop {
            let inside: Vec<ObjectId> = self
                .objects
                .iter()
                .filter(|(id, o)| {
                    !shown.contains(id) && o.container.is_some_and(|c| shown.contains(&c))
                })
                .map(|(id, _)| *id)
                .collect();
            if inside.is_empty() {
                return shown;
            }
            shown.extend(inside);
        }
    }

    /// The scorecards an object shows on.
    pub fn scorecards_showing(&self, object: ObjectId) -> BTreeSet<ScorecardId> {
        self.scorecards
            .keys()
            .filter(|s| self.objects_on(**s).contains(&object))
            .copied()
            .collect()
    }

    /// What a partner sees of this site's content through the scorecards
    /// shared with it (R-SHARE-2): those scorecards' objects.
    pub fn visible_through(&self, shared: &BTreeSet<ScorecardId>) -> BTreeSet<ObjectId> {
        shared
            .iter()
            .filter(|s| self.scorecards.contains_key(s))
            .flat_map(|s| self.objects_on(*s))
            .collect()
    }

    /// The relationships to `origin`'s objects that no longer have an object
    /// to show, given what of `origin`'s content is still visible to this
    /// site: each becomes a `RelationshipRemoved` (R-CONN-4, R-SHARE-4).
    pub fn relationships_lost(
        &self,
        origin: SiteId,
        still_visible: &BTreeSet<ObjectId>,
        reason: RemovalReason,
    ) -> Vec<ContentEvent> {
        self.relationships
            .iter()
            .filter(|(_, r)| r.origin_site == origin && !still_visible.contains(&r.object_id))
            .map(|(id, _)| ContentEvent::RelationshipRemoved {
                relationship_id: *id,
                reason,
            })
            .collect()
    }
}

/// A user's level on one of its own site's objects (R-USER-3, R-USER-4):
/// [`access_rule::level`] given the scorecards showing the object and the
/// user's levels on them (objects on no scorecard need All Scorecards; a
/// user with no scorecards assigned but with Add/Edit Scorecard Objects
/// sees every scorecard, seed 001's note).
pub fn level_on_object(
    user: &UserState,
    content: &ContentState,
    object: ObjectId,
) -> Option<AccessLevel> {
    if !content.objects.contains_key(&object) {
        return None;
    }
    let showing = content.scorecards_showing(object);
    let assigned = showing
        .iter()
        .filter_map(|s| user.scorecard_access.get(s).copied())
        .max();
    // "No scorecards assigned" counts this site's scorecards only: a
    // partner's shared scorecard assigned to the user (R-SHARE-5) does not
    // hide the user's own site.
    let own_assigned = user
        .scorecard_access
        .keys()
        .any(|s| content.scorecards.contains_key(s));
    let shown = !showing.is_empty();
    access_rule::level(
        &UserFacts::of(user, own_assigned),
        TargetFacts::OwnObject { shown, assigned },
    )
}

/// A user's level on one of its own site's scorecards (R-USER-3), by the
/// access rule; `None` when `scorecard` is not one of `content`'s.
pub fn level_on_scorecard(
    user: &UserState,
    content: &ContentState,
    scorecard: ScorecardId,
) -> Option<AccessLevel> {
    if !content.scorecards.contains_key(&scorecard) {
        return None;
    }
    let own_assigned = user
        .scorecard_access
        .keys()
        .any(|s| content.scorecards.contains_key(s));
    access_rule::level(
        &UserFacts::of(user, own_assigned),
        TargetFacts::OwnScorecard {
            assigned: user.scorecard_access.get(&scorecard).copied(),
        },
    )
}

/// Content changes need Add/Edit Scorecard Objects (seed 001).
pub(crate) const AUTHOR: [PermissionFlag; 1] = [PermissionFlag::AddEditScorecardObjects];

pub(crate) fn authorize_author(
    actor: &Actor,
    site: &SiteState,
    content: &ContentState,
) -> Result<(), DomainError> {
    authorize(actor, site, &AUTHOR)?;
    if site.id != content.site {
        // The acting user's site is not the content's owner (R-USER-9;
        // shared content is read-only, R-SHARE-3).
        return Err(DomainError::CrossSite {
            actor_site: site.id,
            target_site: content.site,
        });
    }
    Ok(())
}

/// CreateScorecard.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateScorecard {
    pub site_id: SiteId,
    pub scorecard_id: ScorecardId,
    pub name: Name,
}

impl CreateScorecard {
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        authorize_author(actor, site, content)?;
        if content.scorecards.contains_key(&self.scorecard_id)
            || content.archived_scorecards.contains(&self.scorecard_id)
        {
            return Err(DomainError::ScorecardExists(self.scorecard_id));
        }
        Ok(vec![ContentEvent::ScorecardCreated {
            scorecard_id: self.scorecard_id,
            name: self.name.clone(),
        }])
    }
}

/// CreateObject: a Result, Indicator, Program or Performance Measure,
/// optionally inside a container (a Result or Program) of the same site.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct CreateObject {
    pub site_id: SiteId,
    pub object_id: ObjectId,
    pub kind: ObjectKind,
    pub name: Name,
    #[serde(default)]
    pub container: Option<ObjectId>,
}

impl CreateObject {
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        authorize_author(actor, site, content)?;
        if content.objects.contains_key(&self.object_id)
            || content.archived_objects.contains(&self.object_id)
        {
            return Err(DomainError::ObjectExists(self.object_id));
        }
        if let Some(container) = self.container {
            let parent = content
                .objects
                .get(&container)
                .ok_or(DomainError::ObjectNotFound(container))?;
            if !parent.kind.is_container() {
                return Err(DomainError::NotAContainer(container));
            }
        }
        Ok(vec![ContentEvent::ObjectCreated {
            object_id: self.object_id,
            kind: self.kind,
            name: self.name.clone(),
            container: self.container,
        }])
    }
}

fn own_object_and_scorecard(
    content: &ContentState,
    object: ObjectId,
    scorecard: ScorecardId,
) -> Result<(), DomainError> {
    if !content.objects.contains_key(&object) {
        return Err(DomainError::ObjectNotFound(object));
    }
    if !content.scorecards.contains_key(&scorecard) {
        return Err(DomainError::ScorecardNotFound(scorecard));
    }
    Ok(())
}

/// PlaceObjectOnScorecard. Partners the scorecard is shared with see the
/// object from then on (R-SHARE-2).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PlaceObjectOnScorecard {
    pub site_id: SiteId,
    pub object_id: ObjectId,
    pub scorecard_id: ScorecardId,
}

impl PlaceObjectOnScorecard {
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        authorize_author(actor, site, content)?;
        own_object_and_scorecard(content, self.object_id, self.scorecard_id)?;
        if content
            .placements
            .get(&self.scorecard_id)
            .is_some_and(|p| p.contains(&self.object_id))
        {
            return Err(DomainError::AlreadyPlaced {
                object: self.object_id,
                scorecard: self.scorecard_id,
            });
        }
        Ok(vec![ContentEvent::ObjectPlacedOnScorecard {
            object_id: self.object_id,
            scorecard_id: self.scorecard_id,
        }])
    }
}

/// RemoveObjectFromScorecard. Partners stop seeing the object unless it is
/// still on another scorecard shared with them (R-SHARE-2); their
/// relationships that lost their only path are removed by the command
/// service with [`ContentState::relationships_lost`] (R-SHARE-4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RemoveObjectFromScorecard {
    pub site_id: SiteId,
    pub object_id: ObjectId,
    pub scorecard_id: ScorecardId,
}

impl RemoveObjectFromScorecard {
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        authorize_author(actor, site, content)?;
        own_object_and_scorecard(content, self.object_id, self.scorecard_id)?;
        if !content
            .placements
            .get(&self.scorecard_id)
            .is_some_and(|p| p.contains(&self.object_id))
        {
            return Err(DomainError::NotPlaced {
                object: self.object_id,
                scorecard: self.scorecard_id,
            });
        }
        Ok(vec![ContentEvent::ObjectRemovedFromScorecard {
            object_id: self.object_id,
            scorecard_id: self.scorecard_id,
        }])
    }
}

/// ChangeObjectField: an update-field (needs Updater) or an edit-field
/// (needs Editor) of an object (R-USER-3). A partner's user is refused:
/// shared content is read-only (R-SHARE-3).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChangeObjectField {
    pub site_id: SiteId,
    pub object_id: ObjectId,
    pub field: ObjectField,
    #[cfg_attr(feature = "openapi", schema(pattern = r"^[^\x00]*$"))]
    pub value: String,
}

impl ChangeObjectField {
    /// `content` is the object's owner's; `actor_site` the acting user's
    /// site; `shared_with_actor` whether the object is visible to the actor's
    /// site through shared scorecards.
    pub fn decide(
        &self,
        actor: &Actor,
        actor_site: &SiteState,
        content: &ContentState,
        shared_with_actor: bool,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        let user = authorize(actor, actor_site, &[])?;
        if actor_site.id != content.site {
            return Err(if shared_with_actor {
                DomainError::SharedContentReadOnly
            } else {
                DomainError::CrossSite {
                    actor_site: actor_site.id,
                    target_site: content.site,
                }
            });
        }
        if !content.objects.contains_key(&self.object_id) {
            return Err(DomainError::ObjectNotFound(self.object_id));
        }
        let needed = self.field.required_level();
        if let Some(user) = user {
            let level = level_on_object(user, content, self.object_id);
            if level.is_none_or(|l| l < needed) {
                return Err(DomainError::AccessLevelTooLow { needed });
            }
        }
        let (object_id, field, value) = (self.object_id, self.field, self.value.clone());
        Ok(vec![if needed == AccessLevel::Updater {
            ContentEvent::ObjectFieldUpdated {
                object_id,
                field,
                value,
            }
        } else {
            ContentEvent::ObjectFieldEdited {
                object_id,
                field,
                value,
            }
        }])
    }
}

impl ChangeObjectField {
    /// What the outcome depends on (R-USER-3: the actor's level on the
    /// object): the acting user (their role, flags, per-scorecard levels,
    /// active or not), the object's and its containers' creation and
    /// placements (where it shows), and the existence of the scorecards the
    /// user is assigned to. Other objects, other users and field values are
    /// outside it: edits of different objects never collide.
    pub fn boundary(
        &self,
        actor: &Actor,
        actor_site: &SiteState,
        content: &ContentState,
    ) -> Vec<BoundaryItem> {
        use crate::boundary::{ANY, OBJECT_STRUCTURE, SCORECARD_EXISTENCE};
        let content_stream = content_stream(content.site);
        let mut items = Vec::new();
        let mut next = Some(self.object_id);
        let mut seen = BTreeSet::new();
        while let Some(object) = next.filter(|o| seen.insert(*o)) {
            items.push(BoundaryItem {
                stream: content_stream.clone(),
                tag: object.tag(),
                types: OBJECT_STRUCTURE,
            });
            next = content.objects.get(&object).and_then(|o| o.container);
        }
        if let Actor::User { user_id, .. } = actor {
            let user = UserId(*user_id);
            let site_stream = site_stream(actor_site.id);
            items.push(BoundaryItem {
                stream: site_stream,
                tag: user.tag(),
                types: ANY,
            });
            if let Some(state) = actor_site.users.get(&user) {
                for scorecard in state.scorecard_access.keys() {
                    items.push(BoundaryItem {
                        stream: content_stream.clone(),
                        tag: scorecard.tag(),
                        types: SCORECARD_EXISTENCE,
                    });
                }
            }
        }
        items
    }
}

/// LinkSharedObject: place a partner's shared object on one of this site's
/// scorecards (R-SHARE-4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct LinkSharedObject {
    pub site_id: SiteId,
    pub relationship_id: RelationshipId,
    pub scorecard_id: ScorecardId,
    pub origin_site: SiteId,
    pub object_id: ObjectId,
}

impl LinkSharedObject {
    /// `visible` is what of `origin_site`'s content this site sees now.
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
        visible: &BTreeSet<ObjectId>,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        authorize_author(actor, site, content)?;
        if !content.scorecards.contains_key(&self.scorecard_id) {
            return Err(DomainError::ScorecardNotFound(self.scorecard_id));
        }
        if !visible.contains(&self.object_id) {
            return Err(DomainError::ObjectNotShared(self.object_id));
        }
        let exists = content.relationships.values().any(|r| {
            r.object_id == self.object_id
                && r.target == RelationshipTarget::Scorecard(self.scorecard_id)
        });
        if exists || content.relationships.contains_key(&self.relationship_id) {
            return Err(DomainError::RelationshipExists);
        }
        Ok(vec![ContentEvent::SharedObjectLinked {
            relationship_id: self.relationship_id,
            scorecard_id: self.scorecard_id,
            origin_site: self.origin_site,
            object_id: self.object_id,
        }])
    }
}

/// UseSharedMeasureInAggregation: use a partner's shared Indicator or
/// Performance Measure in one of this site's own (R-SHARE-4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UseSharedMeasureInAggregation {
    pub site_id: SiteId,
    pub relationship_id: RelationshipId,
    pub into_object: ObjectId,
    pub origin_site: SiteId,
    pub object_id: ObjectId,
}

impl UseSharedMeasureInAggregation {
    /// `origin` is the partner's content; `visible` what of it this site sees.
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
        origin: &ContentState,
        visible: &BTreeSet<ObjectId>,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        authorize_author(actor, site, content)?;
        let into = content
            .objects
            .get(&self.into_object)
            .ok_or(DomainError::ObjectNotFound(self.into_object))?;
        if !into.kind.is_measure() {
            return Err(DomainError::NotAMeasure(self.into_object));
        }
        if !visible.contains(&self.object_id) {
            return Err(DomainError::ObjectNotShared(self.object_id));
        }
        let measure = origin
            .objects
            .get(&self.object_id)
            .ok_or(DomainError::ObjectNotShared(self.object_id))?;
        if !measure.kind.is_measure() {
            return Err(DomainError::NotAMeasure(self.object_id));
        }
        let exists = content.relationships.values().any(|r| {
            r.object_id == self.object_id
                && r.target == RelationshipTarget::Aggregation(self.into_object)
        });
        if exists || content.relationships.contains_key(&self.relationship_id) {
            return Err(DomainError::RelationshipExists);
        }
        Ok(vec![ContentEvent::SharedMeasureAggregated {
            relationship_id: self.relationship_id,
            into_object: self.into_object,
            origin_site: self.origin_site,
            object_id: self.object_id,
        }])
    }
}

/// UnlinkSharedObject: take a partner's object off one of this site's
/// scorecards, undoing a `LinkSharedObject` (R-SHARE-4). The object stays
/// the partner's, shared as it was; only this site's relationship goes.
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct UnlinkSharedObject {
    pub site_id: SiteId,
    /// The relationship `LinkSharedObject` recorded.
    pub relationship_id: RelationshipId,
}

impl UnlinkSharedObject {
    /// * Not one of this site's links → [`DomainError::RelationshipNotFound`]
    ///   (an aggregation is undone by [`StopUsingSharedMeasure`]).
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        authorize_author(actor, site, content)?;
        remove_relationship(content, self.relationship_id, |target| {
            matches!(target, RelationshipTarget::Scorecard(_))
        })
    }
}

/// StopUsingSharedMeasure: stop using a partner's shared Indicator or
/// Performance Measure in one of this site's aggregations, undoing a
/// `UseSharedMeasureInAggregation` (R-SHARE-4).
#[derive(Debug, Clone, PartialEq, Eq, serde::Deserialize)]
#[serde(deny_unknown_fields)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StopUsingSharedMeasure {
    pub site_id: SiteId,
    /// The relationship `UseSharedMeasureInAggregation` recorded.
    pub relationship_id: RelationshipId,
}

impl StopUsingSharedMeasure {
    /// * Not one of this site's aggregations →
    ///   [`DomainError::RelationshipNotFound`] (a link is undone by
    ///   `UnlinkSharedObject`).
    pub fn decide(
        &self,
        actor: &Actor,
        site: &SiteState,
        content: &ContentState,
    ) -> Result<Vec<ContentEvent>, DomainError> {
        authorize_author(actor, site, content)?;
        remove_relationship(content, self.relationship_id, |target| {
            matches!(target, RelationshipTarget::Aggregation(_))
        })
    }
}

/// The removal of one of the site's relationships whose target is of the
/// kind `is_kind` accepts.
fn remove_relationship(
    content: &ContentState,
    relationship_id: RelationshipId,
    is_kind: impl Fn(&RelationshipTarget) -> bool,
) -> Result<Vec<ContentEvent>, DomainError> {
    match content.relationships.get(&relationship_id) {
        Some(r) if is_kind(&r.target) => Ok(vec![ContentEvent::RelationshipRemoved {
            relationship_id,
            reason: RemovalReason::RemovedBySite,
        }]),
        _ => Err(DomainError::RelationshipNotFound(relationship_id)),
    }
}

/// What a command on an object of `site_id` reads: the acting site, the
/// named site's content, and, for a partner's user, whether the owner
/// shares the object with them (to refuse as read-only, R-SHARE-3, rather
/// than as another site's), whatever site the user named: when the named
/// site does not hold the object, whose it is ([`Read::ObjectOwner`]).
pub(crate) fn object_command_reads(
    ctx: &Context,
    facts: &Facts,
    site_id: SiteId,
    object_id: ObjectId,
) -> Vec<Read> {
    let acting = acting_site(ctx, site_id);
    let mut reads = vec![Read::Site(acting), Read::Content(site_id)];
    if acting != site_id {
        reads.push(Read::Connection(site_id, acting));
    }
    let named = Read::Content(site_id);
    if ctx.actor_site().is_some()
        && facts.has(&named)
        && !facts.content(site_id).objects.contains_key(&object_id)
    {
        let owner = Read::ObjectOwner(object_id);
        if facts.has(&owner) {
            if let Some(owner) = facts.object_owner(object_id).filter(|o| *o != acting) {
                reads.push(Read::Content(owner));
                reads.push(Read::Connection(owner, acting));
            }
        }
        reads.push(owner);
    }
    reads
}

/// Whether the object is not of the site the command names (`site_id`)
/// but of another, which shares it with the acting user's site (read by
/// [`object_command_reads`]).
pub(crate) fn shared_elsewhere(
    ctx: &Context,
    facts: &Facts,
    acting: SiteId,
    site_id: SiteId,
    object_id: ObjectId,
) -> bool {
    let named = Read::ObjectOwner(object_id);
    if !facts.has(&named) {
        return false;
    }
    facts
        .object_owner(object_id)
        .filter(|owner| *owner != acting && *owner != site_id)
        .is_some_and(|owner| {
            ctx.actor_site().is_some() && facts.visible_to(owner, acting).contains(&object_id)
        })
}

/// The site a command acts for: the acting user's, else (operators) the
/// site the command names.
pub(crate) fn acting_site(ctx: &Context, site_id: SiteId) -> SiteId {
    ctx.actor_site().unwrap_or(site_id)
}

/// Commands decided on the site's own content and the acting site.
macro_rules! decided_on_own_content {
    ($($command:ident $([creates $($field:literal),+])?: $summary:literal),* $(,)?) => {$(
        impl Decision for $command {
            const NAME: &'static str = stringify!($command);
            const SUMMARY: &'static str = $summary;
            $(const CREATES: &'static [&'static str] = &[$($field),+];)?
            fn reads(&self, ctx: &Context, _: &Facts) -> Vec<Read> {
                vec![Read::Site(acting_site(ctx, self.site_id)), Read::Content(self.site_id)]
            }
            fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
                let site = facts.existing_site(acting_site(ctx, self.site_id))?;
                let events = self.decide(&ctx.actor, site, facts.content(self.site_id))?;
                Ok(Decided::content(self.site_id, events))
            }
        }
    )*};
}

decided_on_own_content!(
    CreateScorecard [creates "scorecard_id"]: "Creates a scorecard on the site.",
    CreateObject [creates "object_id"]: "Creates a Result, Indicator, Program or Performance Measure, optionally inside a container.",
    PlaceObjectOnScorecard: "Places an object on one of the site's scorecards.",
    RemoveObjectFromScorecard: "Removes an object from a scorecard; partners' relationships that lose their only path go too (R-SHARE-4).",
    UnlinkSharedObject: "Takes a partner's object off the site's scorecard: undoes a LinkSharedObject (R-SHARE-4).",
    StopUsingSharedMeasure: "Stops using a partner's measure in the site's aggregation: undoes a UseSharedMeasureInAggregation (R-SHARE-4).",
);

impl Decision for ChangeObjectField {
    const NAME: &'static str = "ChangeObjectField";
    const SUMMARY: &'static str = "Changes one field of an object of `site_id` (update-fields need Updater, edit-fields Editor; R-USER-3, R-SHARE-3).";

    /// The acting site, the owner's content, and, for a partner's user,
    /// whether the owner shares the object with them (to refuse as
    /// read-only rather than as another site's).
    fn reads(&self, ctx: &Context, facts: &Facts) -> Vec<Read> {
        object_command_reads(ctx, facts, self.site_id, self.object_id)
    }

    /// Consistent with the object and the acting user alone
    /// ([`ChangeObjectField::boundary`]): edits of different objects of one
    /// site never collide.
    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let acting = acting_site(ctx, self.site_id);
        let site = facts.existing_site(acting)?;
        let content = facts.content(self.site_id);
        if shared_elsewhere(ctx, facts, acting, self.site_id, self.object_id) {
            // R-SHARE-3, whatever site the user named: shared content is
            // read-only (after the user's own standing is checked).
            authorize(&ctx.actor, site, &[])?;
            return Err(DomainError::SharedContentReadOnly);
        }
        let shared_with_actor = acting != self.site_id
            && facts
                .visible_to(self.site_id, acting)
                .contains(&self.object_id);
        let events = self.decide(&ctx.actor, site, content, shared_with_actor)?;
        Ok(Decided::content(self.site_id, events)
            .bounded_by(self.boundary(&ctx.actor, site, content)))
    }
}

/// What a relationship command reads: the site, its content, and what the
/// origin shares with it, which must stay so until the relationship is
/// recorded (R-SHARE-4).
fn relationship_reads(site: SiteId, origin: SiteId) -> Vec<Read> {
    vec![
        Read::Site(site),
        Read::Content(site),
        Read::Content(origin),
        Read::Connection(origin, site),
    ]
}

impl Decision for LinkSharedObject {
    const NAME: &'static str = "LinkSharedObject";
    const CREATES: &'static [&'static str] = &["relationship_id"];
    const SUMMARY: &'static str =
        "Links a partner's shared object onto one of the site's scorecards (R-SHARE-4).";

    fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
        relationship_reads(self.site_id, self.origin_site)
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let site = facts.existing_site(self.site_id)?;
        let visible = facts.visible_to(self.origin_site, self.site_id);
        let events = self.decide(&ctx.actor, site, facts.content(self.site_id), &visible)?;
        Ok(Decided::content(self.site_id, events))
    }
}

impl Decision for UseSharedMeasureInAggregation {
    const NAME: &'static str = "UseSharedMeasureInAggregation";
    const CREATES: &'static [&'static str] = &["relationship_id"];
    const SUMMARY: &'static str = "Uses a partner's shared Indicator or Performance Measure in an aggregation of the site's own object (R-SHARE-4).";

    fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
        relationship_reads(self.site_id, self.origin_site)
    }

    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let site = facts.existing_site(self.site_id)?;
        let visible = facts.visible_to(self.origin_site, self.site_id);
        let events = self.decide(
            &ctx.actor,
            site,
            facts.content(self.site_id),
            facts.content(self.origin_site),
            &visible,
        )?;
        Ok(Decided::content(self.site_id, events))
    }
}

/// The consequence worker's decision (R-SHARE-4's third case): after an
/// object of `owner` left a scorecard, `partner` loses the relationships
/// whose object it no longer sees through any scorecard shared with it.
/// Not a command anyone issues: the system decides it, caused by the
/// removal.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RemoveRelationshipsNoLongerShared {
    pub owner: SiteId,
    pub partner: SiteId,
}

impl Decision for RemoveRelationshipsNoLongerShared {
    const NAME: &'static str = "RemoveRelationshipsNoLongerShared";
    const SUMMARY: &'static str =
        "Removes a partner's relationships to objects it no longer sees (R-SHARE-4).";

    fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
        vec![
            Read::Content(self.owner),
            Read::Content(self.partner),
            Read::Connection(self.owner, self.partner),
        ]
    }

    fn decide_on(&self, _: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        let lost = facts.content(self.partner).relationships_lost(
            self.owner,
            &facts.visible_to(self.owner, self.partner),
            RemovalReason::ObjectNoLongerShared,
        );
        Ok(Decided::write(Write::ContentConsequences(
            self.partner,
            lost,
        )))
    }
}
