//! why a user can or cannot see a target. Every path that gives a
//! level, each step naming the fact and the event (id, position, time,
//! actor) that established it; for a denial, what is missing.
//!
//! The paths follow the rules of `docs/access-model.md` one by one, and
//! each path's level is the access rule (`shareledger_core::access_rule`)
//! given that path's facts alone: the flags, assignments, placements and
//! links it names, and nothing else (a fact it does not name is taken to
//! give nothing). A candidate path whose facts give nothing is not a path.
//! So no path claims more than its facts give, and the highest level among
//! the paths is the answer of Q-1 (tested, with the shared table of cases).

use serde::{Deserialize, Serialize};
use shareledger_core::access_rule::{self as rule, TargetFacts};
use shareledger_core::catalog::{
    AccessLevel, Link, Name, ObjectId, PermissionFlag, RelationshipId, ScorecardId, SiteCode,
    SiteId, UserId, Username,
};

use super::index::{AccessIndex, Prov, RelTarget, UserInfo, MAX_CONTAINER_DEPTH};
use super::{AccessError, Target};
use crate::decode::EventRef;

/// The answer to Q-4.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Explanation {
    pub user: UserId,
    /// The user's username.
    pub username: Username,
    pub target: Target,
    /// The target's name.
    pub target_name: Name,
    /// The site that owns the target, with its code and name (R-SHARE-6).
    pub owner: SiteId,
    pub owner_code: SiteCode,
    pub owner_name: Name,
    /// Every user who acted in an event of the paths (or of what is
    /// missing), named: so that no step's actor is a bare id.
    pub actors: Vec<ActorName>,
    /// The user's level (Q-1's answer): the highest level of `paths`.
    pub level: Option<AccessLevel>,
    /// Every way the user gets a level.
    pub paths: Vec<Path>,
    /// For a denial: the facts that would each have given access.
    pub missing: Vec<Missing>,
}

/// A user who acted in an event the explanation names.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ActorName {
    pub user: UserId,
    pub site: SiteId,
    pub site_code: SiteCode,
    pub username: Username,
}

/// One way a user gets a level on a target.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Path {
    pub level: AccessLevel,
    pub steps: Vec<Step>,
}

/// One fact of a path and the event that established it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Step {
    pub fact: Fact,
    pub event: EventRef,
}

/// A fact a path rests on.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "fact", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Fact {
    /// The user is active (added, or last reactivated, by the event).
    UserActive {
        user: UserId,
        site: SiteId,
    },
    /// The user holds a permission flag (set by the event).
    FlagHeld {
        user: UserId,
        flag: PermissionFlag,
    },
    /// Add/Edit Scorecard Objects with none of the site's scorecards
    /// assigned: every scorecard at Browser (seed 001's note).
    NoScorecardAssigned {
        user: UserId,
    },
    ScorecardAssigned {
        user: UserId,
        scorecard: ScorecardId,
        level: AccessLevel,
    },
    PlacedOnScorecard {
        object: ObjectId,
        scorecard: ScorecardId,
    },
    InsideContainer {
        object: ObjectId,
        container: ObjectId,
    },
    LinkActive {
        link: Link,
    },
    ScorecardShared {
        link: Link,
        scorecard: ScorecardId,
    },
    /// The user's site placed the partner's object on its own scorecard.
    PartnerObjectOnScorecard {
        relationship: RelationshipId,
        object: ObjectId,
        scorecard: ScorecardId,
    },
    /// The user's site used the partner's measure in its own aggregation.
    PartnerMeasureAggregated {
        relationship: RelationshipId,
        object: ObjectId,
        into_object: ObjectId,
    },
}

/// What a denied user lacks.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "missing", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum Missing {
    /// The user is deactivated (by the event); nothing is visible (R-USER-6).
    UserActive { deactivated_by: EventRef },
    /// No active link from the owner to the user's site (R-CONN-7, R-CONN-4).
    ActiveLink { link: Link },
    /// None of these scorecards, which show the target, is shared over the link (R-SHARE-1).
    SharedScorecard {
        link: Link,
        showing: Vec<ScorecardId>,
    },
    /// The object shows on no scorecard: only All Scorecards sees it (R-USER-4).
    OnAScorecard { object: ObjectId },
    /// None of these scorecards is assigned to the user.
    AssignedScorecard { any_of: Vec<ScorecardId> },
    /// A flag that would give access on its own.
    Flag { flag: PermissionFlag },
    /// No relationship of the user's site puts the object where the user sees it (R-SHARE-5).
    VisibleRelationship { object: ObjectId },
}

impl AccessIndex {
    /// every path by which the user sees the target, or what is missing.
    pub fn explain(&self, user_id: UserId, target: Target) -> Result<Explanation, AccessError> {
        let user = self.user(user_id)?;
        let owner = self.owner(target)?;
        let (owner_code, owner_name) = self.site_code_and_name(owner);
        let mut explanation = Explanation {
            user: user_id,
            username: user.username.clone(),
            target,
            target_name: self.target_name(target),
            owner,
            owner_code,
            owner_name,
            actors: Vec::new(),
            level: self.level(user_id, target)?,
            paths: Vec::new(),
            missing: Vec::new(),
        };
        if !user.active {
            explanation.missing.push(Missing::UserActive {
                deactivated_by: self.event(user.active_prov),
            });
            explanation.actors = self.actor_names(&explanation);
            return Ok(explanation);
        }
        let active = self.step(
            Fact::UserActive {
                user: user_id,
                site: user.site,
            },
            user.active_prov,
        );
        let (paths, missing) = if owner == user.site {
            match target {
                Target::Scorecard(s) => self.own_scorecard_paths(user_id, user, s),
                Target::Object(o) => self.own_object_paths(user_id, user, o),
            }
        } else {
            self.foreign_paths(user_id, user, owner, target)
        };
        explanation.paths = paths
            .into_iter()
            .map(|mut path| {
                path.steps.insert(0, active.clone());
                path
            })
            .collect();
        if explanation.paths.is_empty() {
            explanation.missing = missing;
        }
        explanation.actors = self.actor_names(&explanation);
        Ok(explanation)
    }

    /// The users who acted in the events `explanation` names, each once.
    /// Names the explanation's actors this index knows and it does not
    /// yet: an index replayed as of the past holds only the streams one
    /// question needs, so the users of the other site of a path (who shared
    /// the scorecard) may be unknown to it; usernames never change, so the
    /// live index names them as they were.
    pub fn name_actors(&self, explanation: &mut Explanation) {
        let mut actors: std::collections::BTreeSet<ActorName> =
            explanation.actors.drain(..).collect();
        actors.extend(self.actor_names(explanation));
        explanation.actors = actors.into_iter().collect();
    }

    fn actor_names(&self, explanation: &Explanation) -> Vec<ActorName> {
        let steps = explanation
            .paths
            .iter()
            .flat_map(|p| &p.steps)
            .map(|step| &step.event);
        let missing = explanation.missing.iter().filter_map(|m| match m {
            Missing::UserActive { deactivated_by } => Some(deactivated_by),
            _ => None,
        });
        steps
            .chain(missing)
            .filter_map(|event| match event.actor {
                Some(shareledger_events::Actor::User { user_id, site_id }) => {
                    let info = self.users.get(&UserId(user_id))?;
                    Some(ActorName {
                        user: UserId(user_id),
                        site: SiteId(site_id),
                        site_code: self.site_code_and_name(SiteId(site_id)).0,
                        username: info.username.clone(),
                    })
                }
                _ => None,
            })
            .collect::<std::collections::BTreeSet<_>>()
            .into_iter()
            .collect()
    }

    fn event(&self, prov: Prov) -> EventRef {
        self.events[prov as usize].clone()
    }

    fn step(&self, fact: Fact, prov: Prov) -> Step {
        Step {
            fact,
            event: self.event(prov),
        }
    }

    fn flag_step(&self, user_id: UserId, user: &UserInfo, flag: PermissionFlag) -> Step {
        self.step(
            Fact::FlagHeld {
                user: user_id,
                flag,
            },
            user.flags_prov,
        )
    }

    /// Appends a candidate path: `steps` and the level the access rule
    /// gives `user` (the path's facts alone) on `target`, if any.
    fn candidate(
        paths: &mut Vec<Path>,
        user: &rule::UserFacts,
        target: TargetFacts<'_>,
        steps: Vec<Step>,
    ) {
        if let Some(level) = rule::level(user, target) {
            paths.push(Path { level, steps });
        }
    }

    /// How an object shows on a scorecard: the containers up to the one
    /// placed on it, then the placement.
    fn shows_route(&self, object: ObjectId, scorecard: ScorecardId) -> Vec<Step> {
        let mut steps = Vec::new();
        let Some(placed) = self.scorecards.get(&scorecard).map(|s| &s.placed) else {
            return steps;
        };
        let mut current = object;
        for _ in 0..=MAX_CONTAINER_DEPTH {
            if let Some(prov) = placed.get(&current) {
                steps.push(self.step(
                    Fact::PlacedOnScorecard {
                        object: current,
                        scorecard,
                    },
                    *prov,
                ));
                return steps;
            }
            let Some(info) = self.objects.get(&current) else {
                break;
            };
            let Some(container) = info.container else {
                break;
            };
            steps.push(self.step(
                Fact::InsideContainer {
                    object: current,
                    container,
                },
                info.prov,
            ));
            current = container;
        }
        steps
    }

    fn own_scorecard_paths(
        &self,
        user_id: UserId,
        user: &UserInfo,
        scorecard: ScorecardId,
    ) -> (Vec<Path>, Vec<Missing>) {
        let mut paths = Vec::new();
        let unassigned = TargetFacts::OwnScorecard { assigned: None };
        if user.has(PermissionFlag::InstanceAdmin) {
            Self::candidate(
                &mut paths,
                &holding(&[PermissionFlag::InstanceAdmin]),
                unassigned,
                vec![self.flag_step(user_id, user, PermissionFlag::InstanceAdmin)],
            );
        }
        if let Some((level, prov)) = user.assigned.get(&scorecard) {
            Self::candidate(
                &mut paths,
                &holding(&[]),
                TargetFacts::OwnScorecard {
                    assigned: Some(*level),
                },
                vec![self.step(
                    Fact::ScorecardAssigned {
                        user: user_id,
                        scorecard,
                        level: *level,
                    },
                    *prov,
                )],
            );
        }
        for (facts, steps) in self.browse_all_ways(user_id, user) {
            Self::candidate(&mut paths, &facts, unassigned, steps);
        }
        let missing = vec![
            Missing::AssignedScorecard {
                any_of: vec![scorecard],
            },
            Missing::Flag {
                flag: PermissionFlag::AllScorecards,
            },
            Missing::Flag {
                flag: PermissionFlag::InstanceAdmin,
            },
        ];
        (paths, missing)
    }

    /// The ways the user may browse all of its site, each with its facts
    /// and steps: All Scorecards; Add/Edit Scorecard Objects with none of
    /// the site's scorecards assigned.
    fn browse_all_ways(
        &self,
        user_id: UserId,
        user: &UserInfo,
    ) -> Vec<(rule::UserFacts, Vec<Step>)> {
        let mut ways = Vec::new();
        if user.has(PermissionFlag::AllScorecards) {
            ways.push((
                holding(&[PermissionFlag::AllScorecards]),
                vec![self.flag_step(user_id, user, PermissionFlag::AllScorecards)],
            ));
        }
        if user.has(PermissionFlag::AddEditScorecardObjects) && !self.has_own_assignment(user) {
            ways.push((
                rule::UserFacts {
                    own_assigned: false,
                    ..holding(&[PermissionFlag::AddEditScorecardObjects])
                },
                vec![
                    self.flag_step(user_id, user, PermissionFlag::AddEditScorecardObjects),
                    self.step(Fact::NoScorecardAssigned { user: user_id }, user.flags_prov),
                ],
            ));
        }
        ways
    }

    fn own_object_paths(
        &self,
        user_id: UserId,
        user: &UserInfo,
        object: ObjectId,
    ) -> (Vec<Path>, Vec<Missing>) {
        let on = self
            .objects
            .get(&object)
            .map(|o| o.shows_on.to_vec())
            .unwrap_or_default();
        let mut paths = Vec::new();
        let shown = TargetFacts::OwnObject {
            shown: true,
            assigned: None,
        };
        let loose = TargetFacts::OwnObject {
            shown: false,
            assigned: None,
        };
        if user.has(PermissionFlag::InstanceAdmin) {
            let admin = self.flag_step(user_id, user, PermissionFlag::InstanceAdmin);
            for s in &on {
                let mut steps = vec![admin.clone()];
                steps.extend(self.shows_route(object, *s));
                Self::candidate(
                    &mut paths,
                    &holding(&[PermissionFlag::InstanceAdmin]),
                    shown,
                    steps,
                );
            }
            if on.is_empty() && user.has(PermissionFlag::AllScorecards) {
                Self::candidate(
                    &mut paths,
                    &holding(&[PermissionFlag::InstanceAdmin, PermissionFlag::AllScorecards]),
                    loose,
                    vec![
                        admin,
                        self.flag_step(user_id, user, PermissionFlag::AllScorecards),
                    ],
                );
            }
        }
        for s in &on {
            if let Some((level, prov)) = user.assigned.get(s) {
                let mut steps = vec![self.step(
                    Fact::ScorecardAssigned {
                        user: user_id,
                        scorecard: *s,
                        level: *level,
                    },
                    *prov,
                )];
                steps.extend(self.shows_route(object, *s));
                let assigned = TargetFacts::OwnObject {
                    shown: true,
                    assigned: Some(*level),
                };
                Self::candidate(&mut paths, &holding(&[]), assigned, steps);
            }
        }
        for (facts, mut steps) in self.browse_all_ways(user_id, user) {
            // Through the first scorecard it shows on; a loose object is
            // seen by All Scorecards alone (the rule says which).
            let target = match on.first() {
                Some(s) => {
                    steps.extend(self.shows_route(object, *s));
                    shown
                }
                None => loose,
            };
            Self::candidate(&mut paths, &facts, target, steps);
        }
        let missing = if on.is_empty() {
            vec![Missing::OnAScorecard { object }]
        } else {
            vec![
                Missing::AssignedScorecard { any_of: on },
                Missing::Flag {
                    flag: PermissionFlag::AllScorecards,
                },
                Missing::Flag {
                    flag: PermissionFlag::InstanceAdmin,
                },
            ]
        };
        (paths, missing)
    }

    fn foreign_paths(
        &self,
        user_id: UserId,
        user: &UserInfo,
        owner: SiteId,
        target: Target,
    ) -> (Vec<Path>, Vec<Missing>) {
        let link = Link {
            from: owner,
            to: user.site,
        };
        let Some(info) = self.links.get(&link).filter(|l| l.active) else {
            return (Vec::new(), vec![Missing::ActiveLink { link }]);
        };
        let link_step = self.step(Fact::LinkActive { link }, info.prov);
        let shared_step = |s: ScorecardId, prov: Prov| {
            self.step(Fact::ScorecardShared { link, scorecard: s }, prov)
        };
        let all = user.has(PermissionFlag::AllScorecards);
        let assigned_step = |s: ScorecardId| {
            user.assigned.get(&s).map(|(level, prov)| {
                self.step(
                    Fact::ScorecardAssigned {
                        user: user_id,
                        scorecard: s,
                        level: *level,
                    },
                    *prov,
                )
            })
        };
        let mut paths = Vec::new();
        let through_all = holding(&[PermissionFlag::AllScorecards]);
        let no_flag = holding(&[]);
        match target {
            Target::Scorecard(s) => {
                let Some(prov) = info.shared.get(&s) else {
                    return (
                        paths,
                        vec![Missing::SharedScorecard {
                            link,
                            showing: vec![s],
                        }],
                    );
                };
                let base = vec![link_step, shared_step(s, *prov)];
                let shared = |assigned| TargetFacts::PartnerScorecard {
                    shared: true,
                    assigned,
                };
                if all {
                    let mut steps = base.clone();
                    steps.push(self.flag_step(user_id, user, PermissionFlag::AllScorecards));
                    Self::candidate(&mut paths, &through_all, shared(false), steps);
                }
                if let Some(step) = assigned_step(s) {
                    let mut steps = base;
                    steps.push(step);
                    Self::candidate(&mut paths, &no_flag, shared(true), steps);
                }
                let missing = vec![
                    Missing::AssignedScorecard { any_of: vec![s] },
                    Missing::Flag {
                        flag: PermissionFlag::AllScorecards,
                    },
                ];
                (paths, missing)
            }
            Target::Object(object) => {
                let on = self
                    .objects
                    .get(&object)
                    .map(|o| o.shows_on.to_vec())
                    .unwrap_or_default();
                let shared_on: Vec<(ScorecardId, Prov)> = on
                    .iter()
                    .filter_map(|s| info.shared.get(s).map(|p| (*s, *p)))
                    .collect();
                if shared_on.is_empty() {
                    return (paths, vec![Missing::SharedScorecard { link, showing: on }]);
                }
                let seen_through = |s: ScorecardId, prov: Prov| {
                    let mut steps = vec![link_step.clone(), shared_step(s, prov)];
                    steps.extend(self.shows_route(object, s));
                    steps
                };
                for (s, prov) in &shared_on {
                    if all {
                        let mut steps = seen_through(*s, *prov);
                        steps.push(self.flag_step(user_id, user, PermissionFlag::AllScorecards));
                        Self::candidate(
                            &mut paths,
                            &through_all,
                            seen_by_site(false, false),
                            steps,
                        );
                    }
                    if let Some(step) = assigned_step(*s) {
                        let mut steps = seen_through(*s, *prov);
                        steps.push(step);
                        Self::candidate(&mut paths, &no_flag, seen_by_site(true, false), steps);
                    }
                }
                let (first, first_prov) = shared_on[0];
                for steps in self.relationship_paths(user_id, user, object) {
                    let mut full = seen_through(first, first_prov);
                    full.extend(steps);
                    Self::candidate(&mut paths, &no_flag, seen_by_site(false, true), full);
                }
                let missing = vec![
                    Missing::AssignedScorecard {
                        any_of: shared_on.iter().map(|(s, _)| *s).collect(),
                    },
                    Missing::Flag {
                        flag: PermissionFlag::AllScorecards,
                    },
                    Missing::VisibleRelationship { object },
                ];
                (paths, missing)
            }
        }
    }

    /// For each relationship of the user's site to the object or one of its
    /// containers that sits where the user sees it: the containment steps,
    /// the relationship, and how the user sees where it sits.
    fn relationship_paths(
        &self,
        user_id: UserId,
        user: &UserInfo,
        object: ObjectId,
    ) -> Vec<Vec<Step>> {
        let mut found = Vec::new();
        let Some(site) = self.sites.get(&user.site) else {
            return found;
        };
        let mut containment: Vec<Step> = Vec::new();
        let mut current = Some(object);
        for _ in 0..=MAX_CONTAINER_DEPTH {
            let Some(id) = current else { break };
            for rel_id in site.relationships_by_object.get(&id).into_iter().flatten() {
                if !self.relationship_visible_to(user, *rel_id) {
                    continue;
                }
                let rel = self.relationships[rel_id];
                let (fact, own_paths) = match rel.target {
                    RelTarget::Scorecard(s) => (
                        Fact::PartnerObjectOnScorecard {
                            relationship: *rel_id,
                            object: id,
                            scorecard: s,
                        },
                        self.own_scorecard_paths(user_id, user, s).0,
                    ),
                    RelTarget::Aggregation(o) => (
                        Fact::PartnerMeasureAggregated {
                            relationship: *rel_id,
                            object: id,
                            into_object: o,
                        },
                        self.own_object_paths(user_id, user, o).0,
                    ),
                };
                let mut steps = containment.clone();
                steps.push(self.step(fact, rel.prov));
                if let Some(best) = own_paths.into_iter().max_by_key(|p| p.level) {
                    steps.extend(best.steps);
                }
                found.push(steps);
            }
            let Some(info) = self.objects.get(&id) else {
                break;
            };
            if let Some(container) = info.container {
                containment.push(self.step(
                    Fact::InsideContainer {
                        object: id,
                        container,
                    },
                    info.prov,
                ));
            }
            current = info.container;
        }
        found
    }
}

/// The facts of a path that names these flags: an active user holding
/// them, with a scorecard of its own site assigned (so that Add/Edit
/// Scorecard Objects alone browses nothing: the path that relies on none
/// being assigned says so, see `browse_all_ways`).
fn holding(flags: &[PermissionFlag]) -> rule::UserFacts {
    rule::UserFacts {
        active: true,
        instance_admin: flags.contains(&PermissionFlag::InstanceAdmin),
        all_scorecards: flags.contains(&PermissionFlag::AllScorecards),
        add_edit_scorecard_objects: flags.contains(&PermissionFlag::AddEditScorecardObjects),
        own_assigned: true,
    }
}

/// A partner's object the user's site sees, as a path names it: through
/// an assigned shared scorecard, or a relationship, or neither.
fn seen_by_site(assigned: bool, related: bool) -> TargetFacts<'static> {
    fn yes() -> bool {
        true
    }
    fn no() -> bool {
        false
    }
    let related: &'static dyn Fn() -> bool = if related { &yes } else { &no };
    TargetFacts::PartnerObject {
        seen: true,
        assigned,
        related,
    }
}
