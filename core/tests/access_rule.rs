//! The shared table of cases (`access_cases/mod.rs`) against the command
//! side: each case's log folded by the command side's own states
//! (`SiteState`, `ContentState`, `ConnectionState`), the facts gathered from
//! them by brute force, and the level asked of
//! `shareledger_core::access_rule::level`; for objects of the user's own
//! site also `content::level_on_object` (what the command service
//! authorizes with) and `ChangeObjectField`'s decision (an update-field
//! needs Updater, an edit-field Editor; partners' content is read-only).

mod access_cases;

use std::collections::{BTreeMap, BTreeSet};

use access_cases::{Event, Ob, On, World, CASES};
use shareledger_core::access_rule::{self, TargetFacts, UserFacts};
use shareledger_core::catalog::{AccessLevel, Link, ObjectField, ScorecardId, SiteId};
use shareledger_core::connection::ConnectionState;
use shareledger_core::content::{
    level_on_object, ChangeObjectField, ContentState, RelationshipTarget,
};
use shareledger_core::site::{SiteState, UserState};
use shareledger_events::Actor;

/// A case's log folded by the command side.
struct Folded {
    sites: BTreeMap<SiteId, SiteState>,
    contents: BTreeMap<SiteId, ContentState>,
    connection: ConnectionState,
}

fn fold(world: &World) -> Folded {
    let mut folded = Folded {
        sites: BTreeMap::new(),
        contents: [world.a, world.b]
            .into_iter()
            .map(|s| (s, ContentState::empty(s)))
            .collect(),
        connection: ConnectionState::new(world.a.min(world.b), world.a.max(world.b)),
    };
    for event in &world.events {
        match event {
            Event::Site(site, event) => {
                let before = folded.sites.remove(site);
                let after = SiteState::evolve(before, event).expect("a registered site");
                folded.sites.insert(*site, after);
            }
            Event::Content(site, event) => {
                let before = folded.contents.remove(site).expect("a site's content");
                folded.contents.insert(*site, before.evolve(event));
            }
            Event::Connection(event) => {
                assert!(
                    folded.connection.can_apply(event),
                    "the cases' logs follow the links' state machine: {event:?}"
                );
                folded.connection = ConnectionState::evolve(folded.connection.clone(), event);
            }
        }
    }
    folded
}

impl Folded {
    fn user(&self, world: &World) -> &UserState {
        &self.sites[&world.user_site].users[&world.user]
    }

    /// `shared(from → to)`: empty unless the link is active.
    fn shared(&self, from: SiteId, to: SiteId) -> BTreeSet<ScorecardId> {
        let link = Link { from, to };
        if self.connection.link_state(link).is_active() {
            self.connection.shared(link).clone()
        } else {
            BTreeSet::new()
        }
    }

    /// The facts of the user, for the rule.
    fn user_facts(&self, world: &World) -> UserFacts {
        let user = self.user(world);
        let own = &self.contents[&world.user_site];
        let own_assigned = user
            .scorecard_access
            .keys()
            .any(|s| own.scorecards.contains_key(s));
        UserFacts::of(user, own_assigned)
    }

    /// The level, from facts gathered here and `access_rule::level`.
    fn level(&self, world: &World, on: On) -> Option<AccessLevel> {
        let user = self.user(world);
        let facts = self.user_facts(world);
        let owner = world.owner(on);
        let origin = &self.contents[&owner];
        if owner == world.user_site {
            return match on {
                On::Scorecard(s) => access_rule::level(
                    &facts,
                    TargetFacts::OwnScorecard {
                        assigned: user.scorecard_access.get(&world.scorecard(s)).copied(),
                    },
                ),
                On::Object(o) => {
                    let showing = origin.scorecards_showing(world.object(o));
                    access_rule::level(
                        &facts,
                        TargetFacts::OwnObject {
                            shown: !showing.is_empty(),
                            assigned: showing
                                .iter()
                                .filter_map(|s| user.scorecard_access.get(s).copied())
                                .max(),
                        },
                    )
                }
            };
        }
        let shared = self.shared(owner, world.user_site);
        match on {
            On::Scorecard(s) => {
                let s = world.scorecard(s);
                access_rule::level(
                    &facts,
                    TargetFacts::PartnerScorecard {
                        shared: shared.contains(&s),
                        assigned: user.scorecard_access.contains_key(&s),
                    },
                )
            }
            On::Object(o) => {
                let x = world.object(o);
                let visible = origin.visible_through(&shared);
                let assigned = shared.iter().any(|s| {
                    user.scorecard_access.contains_key(s) && origin.objects_on(*s).contains(&x)
                });
                let mut chain = vec![x];
                while let Some(c) = origin.objects[chain.last().expect("x")].container {
                    chain.push(c);
                }
                let own = &self.contents[&world.user_site];
                let related = || {
                    own.relationships.values().any(|r| {
                        r.origin_site == owner
                            && chain.contains(&r.object_id)
                            && visible.contains(&r.object_id)
                            && match r.target {
                                RelationshipTarget::Scorecard(s) => access_rule::level(
                                    &facts,
                                    TargetFacts::OwnScorecard {
                                        assigned: user.scorecard_access.get(&s).copied(),
                                    },
                                )
                                .is_some(),
                                RelationshipTarget::Aggregation(m) => {
                                    level_on_object(user, own, m).is_some()
                                }
                            }
                    })
                };
                access_rule::level(
                    &facts,
                    TargetFacts::PartnerObject {
                        seen: visible.contains(&x),
                        assigned,
                        related: &related,
                    },
                )
            }
        }
    }

    /// `ChangeObjectField` of `field` on `object`, by the case's user.
    fn change(&self, world: &World, o: Ob, field: ObjectField) -> bool {
        let object = world.object(o);
        let owner = world.owner(On::Object(o));
        let shared = self.shared(owner, world.user_site);
        let content = &self.contents[&owner];
        let actor = Actor::User {
            user_id: world.user.0,
            site_id: world.user_site.0,
        };
        ChangeObjectField {
            site_id: owner,
            object_id: object,
            field,
            value: "a value".into(),
        }
        .decide(
            &actor,
            &self.sites[&world.user_site],
            content,
            content.visible_through(&shared).contains(&object),
        )
        .is_ok()
    }
}

#[test]
fn the_command_side_answers_the_shared_table_of_cases() {
    let mut wrong = Vec::new();
    for (n, case) in CASES.iter().enumerate() {
        let world = case.world(n);
        let folded = fold(&world);
        let mut answer = |implementation: &str, got: Option<AccessLevel>| {
            if got != case.expected {
                wrong.push(format!(
                    "{}: {implementation} says {got:?}, the table {:?}",
                    case.name, case.expected
                ));
            }
        };
        answer("access_rule::level", folded.level(&world, case.on));
        let On::Object(o) = case.on else { continue };
        if world.owner(case.on) != world.user_site {
            // Partners' content is read-only (R-SHARE-3), whatever the level.
            for field in [ObjectField::SeriesData, ObjectField::Description] {
                if folded.change(&world, o, field) {
                    wrong.push(format!("{}: a partner's user changed {field:?}", case.name));
                }
            }
            continue;
        }
        let object = world.object(o);
        let user = folded.user(&world);
        answer(
            "level_on_object",
            level_on_object(user, &folded.contents[&world.user_site], object),
        );
        // ChangeObjectField: allowed exactly when the level reaches the field's.
        for field in [ObjectField::SeriesData, ObjectField::Description] {
            let allowed = folded.change(&world, o, field);
            let expected = case
                .expected
                .is_some_and(|level| level >= field.required_level());
            if allowed != expected {
                wrong.push(format!(
                    "{}: ChangeObjectField({field:?}) {} for the table's {:?}",
                    case.name,
                    if allowed { "allowed" } else { "refused" },
                    case.expected
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} disagreement(s) with the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}

#[test]
fn the_table_covers_every_kind_of_target_and_user() {
    let count = |user, own: bool, scorecard: bool| {
        CASES
            .iter()
            .filter(|c| {
                let owner_is_a = !matches!(
                    c.on,
                    On::Scorecard(access_cases::Sc::T) | On::Object(access_cases::Ob::M)
                );
                c.user == user
                    && (owner_is_a == (user == access_cases::Site::A)) == own
                    && matches!(c.on, On::Scorecard(_)) == scorecard
            })
            .count()
    };
    use access_cases::Site::{A, B};
    for (user, own, scorecard) in [
        (A, true, true),
        (A, true, false),
        (B, false, true),
        (B, false, false),
    ] {
        assert!(
            count(user, own, scorecard) >= 10,
            "{user:?} own={own} scorecard={scorecard}"
        );
    }
    for level in [
        None,
        Some(AccessLevel::Browser),
        Some(AccessLevel::Updater),
        Some(AccessLevel::Editor),
        Some(AccessLevel::ScorecardAdmin),
    ] {
        assert!(CASES.iter().any(|c| c.expected == level), "{level:?}");
    }
}
