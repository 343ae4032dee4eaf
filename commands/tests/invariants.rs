//! Property test: random command sequences by random actors over three
//! sites, through the command service and real PostgreSQL. After every step
//! (and after the consequence worker has caught up) the domain's invariants
//! hold:
//! * no site has more active users than its seat limit (R-USER-7);
//! * no scorecard is shared over a link that is not active (R-SHARE-1);
//! * no site keeps a relationship to an object it cannot see (R-SHARE-4);
//! * no command by an inactive user is accepted (R-USER-6).

mod common;

use std::collections::BTreeSet;

use common::{by, site};
use proptest::prelude::*;
use shareledger_commands::{CommandError, ConsequenceWorker, Service};
use shareledger_core::catalog::{
    connection_stream, content_stream, site_stream, ConnectionEvent, ContentEvent, Directions,
    DomainEvent, Link, Name, ObjectId, ObjectKind, RelationshipId, Role, ScorecardId, SiteEvent,
    SiteId, UserId, Username,
};
use shareledger_core::connection::{ConnectionState, ShareScorecard, UnshareScorecard};
use shareledger_core::content::{
    ContentState, CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
    RemoveObjectFromScorecard,
};
use shareledger_core::site::{AddUser, DeactivateUser, ReactivateUser, SiteState};
use shareledger_events::store::{PgEventStore, RevisionFrom};
use shareledger_events::{Direction, StreamName};
use shareledger_tests::TestDb;

const SITES: usize = 3;

#[derive(Debug, Clone)]
enum Op {
    AddUser {
        site: usize,
        actor: usize,
        admin_role: bool,
    },
    Deactivate {
        site: usize,
        actor: usize,
        user: usize,
    },
    Reactivate {
        site: usize,
        actor: usize,
        user: usize,
    },
    Request {
        from: usize,
        to: usize,
        actor: usize,
        both: bool,
    },
    Approve {
        site: usize,
        partner: usize,
        actor: usize,
    },
    Revoke {
        site: usize,
        from: usize,
        to: usize,
        actor: usize,
    },
    Share {
        from: usize,
        to: usize,
        actor: usize,
        scorecard: usize,
        unshare: bool,
    },
    Link {
        site: usize,
        origin: usize,
        actor: usize,
        object: usize,
    },
    Move {
        site: usize,
        actor: usize,
        object: usize,
        scorecard: usize,
        remove: bool,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let s = 0..SITES;
    // Mostly the site's first user (an admin), sometimes another user, who
    // may lack permissions or be deactivated.
    let a = prop_oneof![3 => Just(0usize), 1 => 1usize..4];
    prop_oneof![
        (s.clone(), a.clone(), any::<bool>()).prop_map(|(site, actor, admin_role)| Op::AddUser {
            site,
            actor,
            admin_role
        }),
        (s.clone(), a.clone(), 0usize..4).prop_map(|(site, actor, user)| Op::Deactivate {
            site,
            actor,
            user
        }),
        (s.clone(), a.clone(), 0usize..4).prop_map(|(site, actor, user)| Op::Reactivate {
            site,
            actor,
            user
        }),
        (s.clone(), s.clone(), a.clone(), any::<bool>()).prop_map(|(from, to, actor, both)| {
            Op::Request {
                from,
                to,
                actor,
                both,
            }
        }),
        (s.clone(), s.clone(), a.clone()).prop_map(|(site, partner, actor)| Op::Approve {
            site,
            partner,
            actor
        }),
        (s.clone(), s.clone(), s.clone(), a.clone()).prop_map(|(site, from, to, actor)| {
            Op::Revoke {
                site,
                from,
                to,
                actor,
            }
        }),
        (s.clone(), s.clone(), a.clone(), 0usize..2, any::<bool>()).prop_map(
            |(from, to, actor, scorecard, unshare)| Op::Share {
                from,
                to,
                actor,
                scorecard,
                unshare
            }
        ),
        (s.clone(), s.clone(), a.clone(), 0usize..3).prop_map(|(site, origin, actor, object)| {
            Op::Link {
                site,
                origin,
                actor,
                object,
            }
        }),
        (s.clone(), a.clone(), 0usize..3, 0usize..2, any::<bool>()).prop_map(
            |(site, actor, object, scorecard, remove)| Op::Move {
                site,
                actor,
                object,
                scorecard,
                remove
            }
        ),
    ]
}

struct World {
    service: Service,
    sites: Vec<SiteId>,
    /// Per site: its users in creation order (the first is an admin).
    users: Vec<Vec<UserId>>,
    scorecards: Vec<Vec<ScorecardId>>,
    objects: Vec<Vec<ObjectId>>,
    next_user: usize,
}

async fn load<E: DomainEvent>(store: &PgEventStore, stream: &str) -> Vec<E> {
    store
        .read_stream(
            &StreamName::parse(stream).unwrap(),
            Direction::Forwards,
            RevisionFrom::Edge,
            100_000,
        )
        .await
        .map(|events| {
            events
                .iter()
                .map(|e| E::decode(&e.event_type, e.schema_version, &e.data).unwrap())
                .collect()
        })
        .unwrap_or_default()
}

impl World {
    async fn new(db: &TestDb) -> World {
        let service = Service::new(db.store());
        let mut world = World {
            service,
            sites: Vec::new(),
            users: Vec::new(),
            scorecards: Vec::new(),
            objects: Vec::new(),
            next_user: 0,
        };
        for i in 0..SITES {
            let (site_id, admin) = site(&world.service, &format!("SITE{i}")).await;
            let scorecards = vec![ScorecardId::new(), ScorecardId::new()];
            let objects = vec![ObjectId::new(), ObjectId::new(), ObjectId::new()];
            let issued = || by(site_id, admin);
            for (n, s) in scorecards.iter().enumerate() {
                world
                    .service
                    .execute(
                        &issued(),
                        CreateScorecard {
                            site_id,
                            scorecard_id: *s,
                            name: Name::parse(&format!("Scorecard {n}")).unwrap(),
                        },
                    )
                    .await
                    .unwrap();
            }
            // A Result containing an Indicator, and a Performance Measure.
            for (object_id, kind, name, container) in [
                (objects[0], ObjectKind::Result, "Result", None),
                (
                    objects[1],
                    ObjectKind::Indicator,
                    "Indicator",
                    Some(objects[0]),
                ),
                (objects[2], ObjectKind::PerformanceMeasure, "Measure", None),
            ] {
                world
                    .service
                    .execute(
                        &issued(),
                        CreateObject {
                            site_id,
                            object_id,
                            kind,
                            name: Name::parse(name).unwrap(),
                            container,
                        },
                    )
                    .await
                    .unwrap();
            }
            world
                .service
                .execute(
                    &issued(),
                    PlaceObjectOnScorecard {
                        site_id,
                        object_id: objects[0],
                        scorecard_id: scorecards[0],
                    },
                )
                .await
                .unwrap();
            world.sites.push(site_id);
            world.users.push(vec![admin]);
            world.scorecards.push(scorecards);
            world.objects.push(objects);
        }
        world
    }

    fn actor(&self, site: usize, n: usize) -> UserId {
        self.users[site][n % self.users[site].len()]
    }

    async fn site_state(&self, site: usize) -> SiteState {
        let events: Vec<SiteEvent> =
            load(self.service.store(), &site_stream(self.sites[site])).await;
        SiteState::from_events(events.iter()).unwrap()
    }

    async fn apply(&mut self, op: &Op) -> (UserId, usize, Result<(), CommandError>) {
        let s = |i: usize| self.sites[i];
        let (site, actor) = match op {
            Op::AddUser { site, actor, .. }
            | Op::Deactivate { site, actor, .. }
            | Op::Reactivate { site, actor, .. }
            | Op::Approve { site, actor, .. }
            | Op::Revoke { site, actor, .. }
            | Op::Link { site, actor, .. }
            | Op::Move { site, actor, .. } => (*site, *actor),
            Op::Request { from, actor, .. } | Op::Share { from, actor, .. } => (*from, *actor),
        };
        let actor_id = self.actor(site, actor);
        let issued = by(s(site), actor_id);
        let result = match op.clone() {
            Op::AddUser { admin_role, .. } => {
                self.next_user += 1;
                let user_id = UserId::new();
                let r = self
                    .service
                    .execute(
                        &issued,
                        AddUser {
                            site_id: s(site),
                            user_id,
                            username: Username::parse(&format!("u{}@x.org", self.next_user))
                                .unwrap(),
                            name: Name::parse("User").unwrap(),
                            role: if admin_role {
                                Role::Administration
                            } else {
                                Role::Presenter
                            },
                            email: None,
                        },
                    )
                    .await;
                if r.is_ok() {
                    self.users[site].push(user_id);
                }
                r
            }
            Op::Deactivate { user, .. } => {
                let user_id = self.actor(site, user);
                self.service
                    .execute(
                        &issued,
                        DeactivateUser {
                            site_id: s(site),
                            user_id,
                        },
                    )
                    .await
            }
            Op::Reactivate { user, .. } => {
                let user_id = self.actor(site, user);
                self.service
                    .execute(
                        &issued,
                        ReactivateUser {
                            site_id: s(site),
                            user_id,
                        },
                    )
                    .await
            }
            Op::Request { to, both, .. } => {
                let code = self.site_state(to).await.code;
                let directions = if both {
                    Directions::Both
                } else {
                    Directions::Offer
                };
                self.service
                    .execute(
                        &issued,
                        shareledger_core::connection::RequestConnection {
                            site_id: s(site),
                            partner_code: code,
                            directions,
                        },
                    )
                    .await
            }
            Op::Approve { partner, .. } => {
                self.service
                    .execute(
                        &issued,
                        shareledger_core::connection::ApproveConnection {
                            site_id: s(site),
                            partner: s(partner),
                        },
                    )
                    .await
            }
            Op::Revoke { from, to, .. } => {
                self.service
                    .execute(
                        &issued,
                        shareledger_core::connection::RevokeSharing {
                            site_id: s(site),
                            from: s(from),
                            to: s(to),
                        },
                    )
                    .await
            }
            Op::Share {
                to,
                scorecard,
                unshare,
                ..
            } => {
                let id = self.scorecards[site][scorecard];
                if unshare {
                    self.service
                        .execute(
                            &issued,
                            UnshareScorecard {
                                site_id: s(site),
                                partner: s(to),
                                scorecard_id: id,
                            },
                        )
                        .await
                } else {
                    self.service
                        .execute(
                            &issued,
                            ShareScorecard {
                                site_id: s(site),
                                partner: s(to),
                                scorecard_id: id,
                            },
                        )
                        .await
                }
            }
            Op::Link { origin, object, .. } => {
                self.service
                    .execute(
                        &issued,
                        LinkSharedObject {
                            site_id: s(site),
                            relationship_id: RelationshipId::new(),
                            scorecard_id: self.scorecards[site][0],
                            origin_site: s(origin),
                            object_id: self.objects[origin][object],
                        },
                    )
                    .await
            }
            Op::Move {
                object,
                scorecard,
                remove,
                ..
            } => {
                let (object_id, scorecard_id) =
                    (self.objects[site][object], self.scorecards[site][scorecard]);
                if remove {
                    self.service
                        .execute(
                            &issued,
                            RemoveObjectFromScorecard {
                                site_id: s(site),
                                object_id,
                                scorecard_id,
                            },
                        )
                        .await
                } else {
                    self.service
                        .execute(
                            &issued,
                            PlaceObjectOnScorecard {
                                site_id: s(site),
                                object_id,
                                scorecard_id,
                            },
                        )
                        .await
                }
            }
        };
        (actor_id, site, result.map(|_| ()))
    }

    /// Checks the invariants; says whether any relationship exists.
    async fn check(&self) -> Result<bool, TestCaseError> {
        let store = self.service.store();
        let mut contents = Vec::new();
        for i in 0..SITES {
            let site = self.site_state(i).await;
            prop_assert!(
                site.active_users() <= site.seat_limit.get() as usize,
                "site {} over its seat limit",
                i
            );
            let events: Vec<ContentEvent> = load(store, &content_stream(self.sites[i])).await;
            contents.push(ContentState::from_events(self.sites[i], events.iter()));
        }
        let any_relationship = contents.iter().any(|c| !c.relationships.is_empty());
        for a in 0..SITES {
            for b in 0..SITES {
                if a == b {
                    continue;
                }
                let events: Vec<ConnectionEvent> =
                    load(store, &connection_stream(self.sites[a], self.sites[b])).await;
                let state =
                    ConnectionState::from_events(self.sites[a], self.sites[b], events.iter());
                let link = Link {
                    from: self.sites[a],
                    to: self.sites[b],
                };
                let shared = state.shared(link);
                prop_assert!(
                    shared.is_empty() || state.link_state(link).is_active(),
                    "scorecards shared over a link that is not active"
                );
                let visible = if state.link_state(link).is_active() {
                    contents[a].visible_through(shared)
                } else {
                    BTreeSet::new()
                };
                for r in contents[b]
                    .relationships
                    .values()
                    .filter(|r| r.origin_site == self.sites[a])
                {
                    prop_assert!(
                        visible.contains(&r.object_id),
                        "site {} keeps a relationship to an object of site {} it cannot see",
                        b,
                        a
                    );
                }
            }
        }
        Ok(any_relationship)
    }
}

/// Links and relationships to start from, so that random revokes, unshares
/// and removals have something to take away.
fn prologue() -> Vec<Op> {
    vec![
        Op::Request {
            from: 0,
            to: 1,
            actor: 0,
            both: true,
        },
        Op::Approve {
            site: 1,
            partner: 0,
            actor: 0,
        },
        Op::Share {
            from: 0,
            to: 1,
            actor: 0,
            scorecard: 0,
            unshare: false,
        },
        Op::Link {
            site: 1,
            origin: 0,
            actor: 0,
            object: 1,
        },
        Op::Link {
            site: 1,
            origin: 0,
            actor: 0,
            object: 0,
        },
        Op::Request {
            from: 2,
            to: 0,
            actor: 0,
            both: false,
        },
        Op::Approve {
            site: 0,
            partner: 2,
            actor: 0,
        },
        Op::Move {
            site: 2,
            actor: 0,
            object: 2,
            scorecard: 1,
            remove: false,
        },
        Op::Share {
            from: 2,
            to: 0,
            actor: 0,
            scorecard: 1,
            unshare: false,
        },
        Op::Link {
            site: 0,
            origin: 2,
            actor: 0,
            object: 2,
        },
    ]
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let db = TestDb::with_pool_size(6).await;
    let mut world = World::new(&db).await;
    let worker = ConsequenceWorker::new(world.service.clone());
    let mut relationships_seen = false;
    for op in prologue().iter().chain(&ops) {
        let site = match op {
            Op::Request { from, .. } | Op::Share { from, .. } => *from,
            Op::AddUser { site, .. }
            | Op::Deactivate { site, .. }
            | Op::Reactivate { site, .. }
            | Op::Approve { site, .. }
            | Op::Revoke { site, .. }
            | Op::Link { site, .. }
            | Op::Move { site, .. } => *site,
        };
        let before = world.site_state(site).await;
        let (actor, _, result) = world.apply(op).await;
        match &result {
            Ok(()) => prop_assert!(
                before.users.get(&actor).is_some_and(|u| u.active),
                "an inactive user's command was accepted: {:?}",
                op
            ),
            Err(CommandError::Domain(_)) => {}
            Err(other) => return Err(TestCaseError::fail(format!("{op:?}: {other}"))),
        }
        let head = world.service.store().head_position().await.unwrap();
        worker
            .run(Some(head))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        relationships_seen |= world.check().await?;
    }
    prop_assert!(relationships_seen, "the prologue creates relationships");
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 12, max_shrink_iters: 50, ..ProptestConfig::default() })]

    #[test]
    fn random_commands_keep_the_domain_invariants(ops in prop::collection::vec(op(), 1..30)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops))?;
    }
}
