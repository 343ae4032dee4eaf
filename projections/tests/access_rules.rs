//! The access model's visibility rules, one scenario per rule
//! (`docs/access-model.md`, DOMAIN.md's R-USER-3/4/6, R-CONN-4/7 and
//! R-SHARE-1 to 6), and the shape of the questions: given a world
//! built through the real command service on PostgreSQL, when a command
//! changes it, then the access index (fed the log event by event) answers
//! as the rule says. Each test is named after the rule it proves.

use std::collections::BTreeSet;

use shareledger_commands::{CommandError, ConsequenceWorker, Issued, Outcome, Service};
use shareledger_core::catalog::{
    AccessLevel, Action, Directions, Link, Name, ObjectField, ObjectId, ObjectKind, PermissionFlag,
    RelationshipId, Role, ScorecardId, SeatLimit, SiteCode, SiteId, UserId, Username,
};
use shareledger_core::content::{
    ChangeObjectField, CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
    RemoveObjectFromScorecard, UseSharedMeasureInAggregation,
};
use shareledger_core::site::{
    AddUser, DeactivateUser, GrantScorecardAccess, ReactivateUser, RegisterSite,
    RevokeScorecardAccess, SetPermissionFlags,
};
use shareledger_core::{Decision, DomainError};
use shareledger_events::store::PositionFrom;
use shareledger_events::{Actor, Direction};
use shareledger_projections::access::{
    AccessError, AccessIndex, Fact, LookupQuery, Missing, Target, TargetKind, Viewer, Visible,
};
use shareledger_tests::TestDb;
use uuid::Uuid;

use AccessLevel::{Browser, Editor, ScorecardAdmin, Updater};

// ---------------------------------------------------------------------------
// The scene: a database, the command service, and an index fed from the log
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy)]
struct Site {
    id: SiteId,
    admin: UserId,
    code: &'static str,
}

struct Scene {
    _db: TestDb,
    service: Service,
    index: AccessIndex,
    applied: u64,
}

fn operator() -> Issued {
    Issued {
        actor: Actor::Operator {
            name: "access-rules".into(),
        },
        key: Uuid::new_v4(),
    }
}

fn by(site: Site, user: UserId) -> Issued {
    Issued {
        actor: Actor::User {
            user_id: user.0,
            site_id: site.id.0,
        },
        key: Uuid::new_v4(),
    }
}

fn sc(id: ScorecardId) -> Target {
    Target::Scorecard(id)
}

fn ob(id: ObjectId) -> Target {
    Target::Object(id)
}

fn link(from: Site, to: Site) -> Link {
    Link {
        from: from.id,
        to: to.id,
    }
}

/// Q-2's order: (owner site id, target id).
fn key(item: &Visible) -> (SiteId, Uuid) {
    let id = match item.target {
        Target::Scorecard(s) => s.0,
        Target::Object(o) => o.0,
    };
    (item.site, id)
}

fn all_of(limit: usize) -> LookupQuery {
    LookupQuery {
        limit,
        ..LookupQuery::default()
    }
}

impl Scene {
    async fn new() -> Scene {
        let db = TestDb::new().await;
        let service = Service::new(db.store());
        Scene {
            _db: db,
            service,
            index: AccessIndex::new(),
            applied: 0,
        }
    }

    /// The index, after applying every event the log has now.
    async fn at(&mut self) -> &AccessIndex {
        let store = self.service.store().clone();
        loop {
            let page = store
                .read_all(
                    Direction::Forwards,
                    PositionFrom::At(self.applied + 1),
                    1_000,
                )
                .await
                .unwrap();
            if page.is_empty() {
                break;
            }
            for event in &page {
                self.index.apply(event).unwrap();
                self.applied = event.global_position;
            }
        }
        assert_eq!(self.index.position(), self.applied);
        &self.index
    }

    async fn level(&mut self, user: UserId, target: Target) -> Option<AccessLevel> {
        self.at().await.level(user, target).unwrap()
    }

    async fn can(&mut self, user: UserId, target: Target, action: Action) -> bool {
        self.at().await.check(user, target, action).unwrap()
    }

    /// Everything `user` sees, in one page.
    async fn seen(&mut self, user: UserId) -> Vec<Target> {
        let page = self.at().await.lookup(user, &all_of(10_000)).unwrap();
        assert!(page.next.is_none());
        page.items.into_iter().map(|v| v.target).collect()
    }

    /// A site with an Administration user.
    async fn site(&self, code: &'static str) -> Site {
        let id = SiteId::new();
        self.service
            .execute(
                &operator(),
                RegisterSite {
                    site_id: id,
                    code: SiteCode::parse(code).unwrap(),
                    name: Name::parse(code).unwrap(),
                    seat_limit: SeatLimit::new(20).unwrap(),
                    parent: None,
                },
            )
            .await
            .unwrap();
        let site = Site {
            id,
            admin: UserId::new(),
            code,
        };
        self.add_user(site, site.admin, "admin", Role::Administration)
            .await;
        site
    }

    async fn add_user(&self, site: Site, user_id: UserId, name: &str, role: Role) {
        self.service
            .execute(
                &operator(),
                AddUser {
                    site_id: site.id,
                    user_id,
                    username: Username::parse(&format!("{name}@{}.org", site.id.stream_suffix()))
                        .unwrap(),
                    name: Name::parse(name).unwrap(),
                    role,
                    email: None,
                },
            )
            .await
            .unwrap();
    }

    /// A Presenter (no scorecard flags) with `flags` switched on.
    async fn user(&self, site: Site, name: &str, flags: &[PermissionFlag]) -> UserId {
        let user_id = UserId::new();
        self.add_user(site, user_id, name, Role::Presenter).await;
        if !flags.is_empty() {
            self.flags(site, user_id, flags, &[]).await;
        }
        user_id
    }

    async fn flags(&self, site: Site, user: UserId, on: &[PermissionFlag], off: &[PermissionFlag]) {
        self.service
            .execute(
                &by(site, site.admin),
                SetPermissionFlags {
                    site_id: site.id,
                    user_id: user,
                    enable: on.iter().copied().collect(),
                    disable: off.iter().copied().collect(),
                },
            )
            .await
            .unwrap();
    }

    /// A content command of `site`, by its admin.
    async fn content(&self, site: Site, command: impl Decision) -> Outcome {
        self.service
            .execute(&by(site, site.admin), command)
            .await
            .unwrap()
    }

    async fn scorecard(&self, site: Site) -> ScorecardId {
        let scorecard_id = ScorecardId::new();
        self.content(
            site,
            CreateScorecard {
                site_id: site.id,
                scorecard_id,
                name: Name::parse("Scorecard").unwrap(),
            },
        )
        .await;
        scorecard_id
    }

    async fn object(&self, site: Site, kind: ObjectKind, container: Option<ObjectId>) -> ObjectId {
        let object_id = ObjectId::new();
        self.content(
            site,
            CreateObject {
                site_id: site.id,
                object_id,
                kind,
                name: Name::parse("Object").unwrap(),
                container,
            },
        )
        .await;
        object_id
    }

    async fn place(&self, site: Site, object_id: ObjectId, scorecard_id: ScorecardId) {
        self.content(
            site,
            PlaceObjectOnScorecard {
                site_id: site.id,
                object_id,
                scorecard_id,
            },
        )
        .await;
    }

    async fn remove(&self, site: Site, object_id: ObjectId, scorecard_id: ScorecardId) -> Outcome {
        self.content(
            site,
            RemoveObjectFromScorecard {
                site_id: site.id,
                object_id,
                scorecard_id,
            },
        )
        .await
    }

    /// `from` requests, `to` approves: the requested links are active.
    async fn connect(&self, from: Site, to: Site, directions: Directions) {
        let code = SiteCode::parse(to.code).unwrap();
        self.service
            .execute(
                &by(from, from.admin),
                shareledger_core::connection::RequestConnection {
                    site_id: from.id,
                    partner_code: code,
                    directions,
                },
            )
            .await
            .unwrap();
        self.service
            .execute(
                &by(to, to.admin),
                shareledger_core::connection::ApproveConnection {
                    site_id: to.id,
                    partner: from.id,
                },
            )
            .await
            .unwrap();
    }

    async fn share(&self, from: Site, to: Site, scorecard: ScorecardId) -> Outcome {
        self.service
            .execute(
                &by(from, from.admin),
                shareledger_core::connection::ShareScorecard {
                    site_id: link(from, to).from,
                    partner: link(from, to).to,
                    scorecard_id: scorecard,
                },
            )
            .await
            .unwrap()
    }

    async fn unshare(&self, from: Site, to: Site, scorecard: ScorecardId) -> Outcome {
        self.service
            .execute(
                &by(from, from.admin),
                shareledger_core::connection::UnshareScorecard {
                    site_id: link(from, to).from,
                    partner: link(from, to).to,
                    scorecard_id: scorecard,
                },
            )
            .await
            .unwrap()
    }

    async fn grant(
        &self,
        site: Site,
        owner: Site,
        user_id: UserId,
        scorecard_id: ScorecardId,
        level: AccessLevel,
    ) -> Result<Outcome, CommandError> {
        self.service
            .execute(
                &by(site, site.admin),
                GrantScorecardAccess {
                    site_id: site.id,
                    user_id,
                    scorecard_id,
                    level,
                    owner_site: Some(owner.id),
                },
            )
            .await
    }

    /// `site` places `origin`'s shared object on its own scorecard.
    async fn link_object(
        &self,
        site: Site,
        scorecard_id: ScorecardId,
        origin: Site,
        object_id: ObjectId,
    ) -> RelationshipId {
        let relationship_id = RelationshipId::new();
        self.service
            .execute(
                &by(site, site.admin),
                LinkSharedObject {
                    site_id: site.id,
                    relationship_id,
                    scorecard_id,
                    origin_site: origin.id,
                    object_id,
                },
            )
            .await
            .unwrap();
        relationship_id
    }

    /// `site` uses `origin`'s shared measure in its own `into` measure.
    async fn aggregate(
        &self,
        site: Site,
        into_object: ObjectId,
        origin: Site,
        object_id: ObjectId,
    ) -> RelationshipId {
        let relationship_id = RelationshipId::new();
        self.service
            .execute(
                &by(site, site.admin),
                UseSharedMeasureInAggregation {
                    site_id: site.id,
                    relationship_id,
                    into_object,
                    origin_site: origin.id,
                    object_id,
                },
            )
            .await
            .unwrap();
        relationship_id
    }

    /// How many `RelationshipRemoved` events the log holds.
    async fn relationships_removed(&self) -> usize {
        self.service
            .store()
            .read_all(Direction::Forwards, PositionFrom::Edge, 100_000)
            .await
            .unwrap()
            .iter()
            .filter(|e| e.event_type == "RelationshipRemoved")
            .count()
    }
}

// ---------------------------------------------------------------------------
// Users (R-USER-3, R-USER-4, R-USER-6)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn r_user_3_levels_per_scorecard() {
    let mut s = Scene::new().await;
    let acme = s.site("ACME").await;
    let (s1, s2, s3) = (
        s.scorecard(acme).await,
        s.scorecard(acme).await,
        s.scorecard(acme).await,
    );
    let on_s1 = s.object(acme, ObjectKind::Indicator, None).await;
    let on_s2 = s.object(acme, ObjectKind::Indicator, None).await;
    let on_both = s.object(acme, ObjectKind::PerformanceMeasure, None).await;
    s.place(acme, on_s1, s1).await;
    s.place(acme, on_s2, s2).await;
    s.place(acme, on_both, s1).await;
    s.place(acme, on_both, s2).await;
    let ann = s.user(acme, "ann", &[]).await;

    // Given no assignment, a plain user sees nothing.
    assert!(s.seen(ann).await.is_empty());

    // When she is Updater on one scorecard and Editor on another,
    s.grant(acme, acme, ann, s1, Updater).await.unwrap();
    s.grant(acme, acme, ann, s2, Editor).await.unwrap();

    // then each scorecard and what shows on it has its own level,
    assert_eq!(s.level(ann, sc(s1)).await, Some(Updater));
    assert_eq!(s.level(ann, sc(s2)).await, Some(Editor));
    assert_eq!(s.level(ann, sc(s3)).await, None);
    assert_eq!(s.level(ann, ob(on_s1)).await, Some(Updater));
    assert_eq!(s.level(ann, ob(on_s2)).await, Some(Editor));
    // an object on both gets the higher one,
    assert_eq!(s.level(ann, ob(on_both)).await, Some(Editor));
    // and the actions follow the levels' order.
    assert!(s.can(ann, ob(on_s1), Action::View).await);
    assert!(s.can(ann, ob(on_s1), Action::Update).await);
    assert!(!s.can(ann, ob(on_s1), Action::Edit).await);
    assert!(s.can(ann, ob(on_s2), Action::Edit).await);
    assert!(!s.can(ann, ob(on_s2), Action::Admin).await);
    assert!(!s.can(ann, sc(s3), Action::View).await);

    // Scorecard Admin allows everything; a revoke takes the level away.
    s.grant(acme, acme, ann, s3, ScorecardAdmin).await.unwrap();
    assert!(s.can(ann, sc(s3), Action::Admin).await);
    s.service
        .execute(
            &by(acme, acme.admin),
            RevokeScorecardAccess {
                site_id: acme.id,
                user_id: ann,
                scorecard_id: s2,
            },
        )
        .await
        .unwrap();
    assert_eq!(s.level(ann, ob(on_s2)).await, None);
    assert_eq!(s.level(ann, ob(on_both)).await, Some(Updater));
    assert_eq!(s.level(ann, sc(s2)).await, None);
}

#[tokio::test]
async fn r_user_4_all_scorecards_sees_loose_objects() {
    let mut s = Scene::new().await;
    let acme = s.site("ACME").await;
    let (s1, s2) = (s.scorecard(acme).await, s.scorecard(acme).await);
    let result = s.object(acme, ObjectKind::Result, None).await;
    let inside = s.object(acme, ObjectKind::Indicator, Some(result)).await;
    let on_s2 = s.object(acme, ObjectKind::Program, None).await;
    let loose = s.object(acme, ObjectKind::Indicator, None).await;
    s.place(acme, result, s1).await;
    s.place(acme, on_s2, s2).await;
    let all = s.user(acme, "all", &[PermissionFlag::AllScorecards]).await;
    let plain = s.user(acme, "plain", &[]).await;
    let admin_only = s.user(acme, "ia", &[PermissionFlag::InstanceAdmin]).await;
    s.grant(acme, acme, plain, s1, Editor).await.unwrap();

    // All Scorecards: every scorecard and object, the loose one included.
    for target in [sc(s1), sc(s2), ob(result), ob(inside), ob(on_s2), ob(loose)] {
        assert_eq!(s.level(all, target).await, Some(Browser), "{target:?}");
    }
    // Without it: only what shows on assigned scorecards (containers'
    // contents included), never the loose object.
    assert_eq!(s.level(plain, ob(result)).await, Some(Editor));
    assert_eq!(s.level(plain, ob(inside)).await, Some(Editor));
    assert_eq!(s.level(plain, ob(on_s2)).await, None);
    assert_eq!(s.level(plain, sc(s2)).await, None);
    assert_eq!(s.level(plain, ob(loose)).await, None);
    // Instance Admin without All Scorecards: every scorecard and what shows
    // on one, as Scorecard Admin, but not the loose object.
    assert_eq!(s.level(admin_only, sc(s2)).await, Some(ScorecardAdmin));
    assert_eq!(s.level(admin_only, ob(inside)).await, Some(ScorecardAdmin));
    assert_eq!(s.level(admin_only, ob(loose)).await, None);
    // The site's admin (Instance Admin and All Scorecards) administers it.
    assert_eq!(s.level(acme.admin, ob(loose)).await, Some(ScorecardAdmin));

    // Once placed, the loose object is seen through the scorecard.
    s.place(acme, loose, s1).await;
    assert_eq!(s.level(plain, ob(loose)).await, Some(Editor));
    assert_eq!(s.level(admin_only, ob(loose)).await, Some(ScorecardAdmin));
}

#[tokio::test]
async fn r_user_4_add_edit_without_assigned_scorecards_sees_every_scorecard() {
    let mut s = Scene::new().await;
    let acme = s.site("ACME").await;
    let partner = s.site("PARTNER").await;
    let (s1, s2) = (s.scorecard(acme).await, s.scorecard(acme).await);
    let on_s2 = s.object(acme, ObjectKind::Indicator, None).await;
    let loose = s.object(acme, ObjectKind::Indicator, None).await;
    s.place(acme, on_s2, s2).await;
    let author = s
        .user(acme, "author", &[PermissionFlag::AddEditScorecardObjects])
        .await;

    // Given Add/Edit Scorecard Objects and no scorecard assigned: every
    // scorecard and what shows on one, at Browser; not the loose object.
    assert_eq!(s.level(author, sc(s1)).await, Some(Browser));
    assert_eq!(s.level(author, sc(s2)).await, Some(Browser));
    assert_eq!(s.level(author, ob(on_s2)).await, Some(Browser));
    assert_eq!(s.level(author, ob(loose)).await, None);

    // A partner's shared scorecard assigned to the author does not count
    // as "a scorecard assigned".
    let theirs = s.scorecard(partner).await;
    s.connect(partner, acme, Directions::Offer).await;
    s.share(partner, acme, theirs).await;
    s.grant(acme, partner, author, theirs, Browser)
        .await
        .unwrap();
    assert_eq!(s.level(author, sc(theirs)).await, Some(Browser));
    assert_eq!(s.level(author, sc(s2)).await, Some(Browser));

    // When one of the site's own scorecards is assigned, the note no longer
    // applies: only that scorecard.
    s.grant(acme, acme, author, s1, Updater).await.unwrap();
    assert_eq!(s.level(author, sc(s1)).await, Some(Updater));
    assert_eq!(s.level(author, sc(s2)).await, None);
    assert_eq!(s.level(author, ob(on_s2)).await, None);
    assert_eq!(s.level(author, sc(theirs)).await, Some(Browser));
}

#[tokio::test]
async fn r_user_6_deactivated_user_sees_nothing_and_reactivation_restores() {
    let mut s = Scene::new().await;
    let acme = s.site("ACME").await;
    let partner = s.site("PARTNER").await;
    let own = s.scorecard(acme).await;
    let object = s.object(acme, ObjectKind::Indicator, None).await;
    s.place(acme, object, own).await;
    let theirs = s.scorecard(partner).await;
    let their_object = s.object(partner, ObjectKind::Indicator, None).await;
    s.place(partner, their_object, theirs).await;
    s.connect(partner, acme, Directions::Offer).await;
    s.share(partner, acme, theirs).await;
    let ann = s.user(acme, "ann", &[PermissionFlag::AllScorecards]).await;
    s.grant(acme, acme, ann, own, Editor).await.unwrap();
    s.grant(acme, partner, ann, theirs, Browser).await.unwrap();
    let before = s.at().await.lookup(ann, &all_of(1_000)).unwrap();
    assert_eq!(before.items.len(), 4, "own and shared scorecard and object");

    // When she is deactivated,
    let deactivated = s
        .service
        .execute(
            &by(acme, acme.admin),
            DeactivateUser {
                site_id: acme.id,
                user_id: ann,
            },
        )
        .await
        .unwrap();

    // then at once she has no level anywhere, sees nothing and is no viewer,
    for target in [sc(own), ob(object), sc(theirs), ob(their_object)] {
        assert_eq!(s.level(ann, target).await, None, "{target:?}");
        let viewers = s.at().await.viewers(target).unwrap();
        assert!(viewers.iter().all(|v| v.user != ann), "{target:?}");
    }
    assert!(s.seen(ann).await.is_empty());
    // and the explanation says why, naming the deactivation.
    let why = s.at().await.explain(ann, ob(object)).unwrap();
    assert_eq!(why.level, None);
    assert!(why.paths.is_empty());
    assert!(
        why.missing.iter().any(|m| matches!(
            m,
            Missing::UserActive { deactivated_by } if deactivated_by.event_id == deactivated.events[0].event_id
        )),
        "{:?}",
        why.missing
    );

    // When she is reactivated, everything she had is back.
    s.service
        .execute(
            &by(acme, acme.admin),
            ReactivateUser {
                site_id: acme.id,
                user_id: ann,
            },
        )
        .await
        .unwrap();
    let after = s.at().await.lookup(ann, &all_of(1_000)).unwrap();
    assert_eq!(after, before);
    assert_eq!(s.level(ann, ob(object)).await, Some(Editor));
}

// ---------------------------------------------------------------------------
// Connections (R-CONN-4, R-CONN-7)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn r_conn_4_revoke_removes_access_at_once() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let shared = s.scorecard(grants).await;
    let result = s.object(grants, ObjectKind::Result, None).await;
    let indicator = s.object(grants, ObjectKind::Indicator, Some(result)).await;
    s.place(grants, result, shared).await;
    let ours = s.scorecard(funded).await;
    s.connect(grants, funded, Directions::Both).await;
    s.share(grants, funded, shared).await;
    let their_side = s.scorecard(funded).await;
    s.share(funded, grants, their_side).await;
    let all = s
        .user(funded, "all", &[PermissionFlag::AllScorecards])
        .await;
    let viewer = s.user(funded, "viewer", &[]).await;
    s.grant(funded, funded, viewer, ours, Browser)
        .await
        .unwrap();
    s.link_object(funded, ours, grants, result).await;
    for target in [sc(shared), ob(result), ob(indicator)] {
        assert_eq!(s.level(all, target).await, Some(Browser));
    }
    assert_eq!(s.level(viewer, ob(indicator)).await, Some(Browser));
    let grants_all = s
        .user(grants, "all", &[PermissionFlag::AllScorecards])
        .await;
    assert_eq!(s.level(grants_all, sc(their_side)).await, Some(Browser));

    // When FUNDED revokes GRANTS→FUNDED (no worker runs),
    s.service
        .execute(
            &by(funded, funded.admin),
            shareledger_core::connection::RevokeSharing {
                site_id: funded.id,
                from: link(grants, funded).from,
                to: link(grants, funded).to,
            },
        )
        .await
        .unwrap();

    // then nobody of FUNDED sees anything of GRANTS, at once,
    for user in [all, viewer, funded.admin] {
        for target in [sc(shared), ob(result), ob(indicator)] {
            assert_eq!(s.level(user, target).await, None, "{target:?}");
        }
    }
    let page = s
        .at()
        .await
        .lookup(
            all,
            &LookupQuery {
                site: Some(grants.id),
                ..all_of(100)
            },
        )
        .unwrap();
    assert!(page.items.is_empty());
    // the relationship is gone, recorded as an event,
    assert_eq!(s.relationships_removed().await, 1);
    // and the other direction is as it was.
    assert_eq!(s.level(grants_all, sc(their_side)).await, Some(Browser));

    // A new request starts from nothing shared.
    s.connect(grants, funded, Directions::Offer).await;
    for target in [sc(shared), ob(result), ob(indicator)] {
        assert_eq!(s.level(all, target).await, None, "{target:?}");
    }
}

#[tokio::test]
async fn r_conn_7_active_link_alone_shares_nothing() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let scorecard = s.scorecard(grants).await;
    let object = s.object(grants, ObjectKind::Indicator, None).await;
    s.place(grants, object, scorecard).await;
    let all = s
        .user(funded, "all", &[PermissionFlag::AllScorecards])
        .await;

    // Given active links both ways and nothing shared,
    s.connect(grants, funded, Directions::Both).await;

    // then FUNDED's users see nothing of GRANTS, not even its admin,
    for user in [all, funded.admin] {
        assert_eq!(s.level(user, sc(scorecard)).await, None);
        assert_eq!(s.level(user, ob(object)).await, None);
        let theirs = s
            .at()
            .await
            .lookup(
                user,
                &LookupQuery {
                    site: Some(grants.id),
                    ..all_of(100)
                },
            )
            .unwrap();
        assert!(theirs.items.is_empty());
    }
    // and only GRANTS's own users view GRANTS's scorecard.
    let viewers = s.at().await.viewers(sc(scorecard)).unwrap();
    assert!(viewers.iter().all(|v| v.site == grants.id), "{viewers:?}");
    // The explanation names what is missing: a shared scorecard.
    let why = s.at().await.explain(all, ob(object)).unwrap();
    assert_eq!(why.level, None);
    assert!(
        why.missing.iter().any(
            |m| matches!(m, Missing::SharedScorecard { link: l, .. } if *l == link(grants, funded))
        ),
        "{:?}",
        why.missing
    );
}

// ---------------------------------------------------------------------------
// Sharing (R-SHARE-1 to R-SHARE-6)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn r_share_1_partners_see_only_chosen_scorecards() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let north = s.site("NORTH").await;
    let south = s.site("SOUTH").await;
    let (for_north, for_south, private) = (
        s.scorecard(grants).await,
        s.scorecard(grants).await,
        s.scorecard(grants).await,
    );
    s.connect(grants, north, Directions::Offer).await;
    s.connect(grants, south, Directions::Offer).await;
    s.share(grants, north, for_north).await;
    s.share(grants, south, for_south).await;
    let n = s.user(north, "all", &[PermissionFlag::AllScorecards]).await;
    let so = s.user(south, "all", &[PermissionFlag::AllScorecards]).await;

    // Each partner sees the scorecards chosen for it, no other.
    assert_eq!(s.level(n, sc(for_north)).await, Some(Browser));
    assert_eq!(s.level(n, sc(for_south)).await, None);
    assert_eq!(s.level(n, sc(private)).await, None);
    assert_eq!(s.level(so, sc(for_south)).await, Some(Browser));
    assert_eq!(s.level(so, sc(for_north)).await, None);

    // "Edit Scorecards" moves scorecards between the two lists.
    s.service
        .execute(
            &by(grants, grants.admin),
            shareledger_core::connection::SetSharedScorecards {
                site_id: link(grants, north).from,
                partner: link(grants, north).to,
                scorecards: BTreeSet::from([private]),
            },
        )
        .await
        .unwrap();
    assert_eq!(s.level(n, sc(for_north)).await, None);
    assert_eq!(s.level(n, sc(private)).await, Some(Browser));
    assert_eq!(s.level(so, sc(private)).await, None);
    let viewers = s.at().await.viewers(sc(private)).unwrap();
    assert!(viewers.iter().any(|v| v.user == n));
    assert!(viewers.iter().all(|v| v.site != south.id));
}

#[tokio::test]
async fn r_share_2_objects_added_later_become_visible_and_removed_ones_not() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let (first, second) = (s.scorecard(grants).await, s.scorecard(grants).await);
    let program = s.object(grants, ObjectKind::Program, None).await;
    s.place(grants, program, first).await;
    s.connect(grants, funded, Directions::Offer).await;
    s.share(grants, funded, first).await;
    let all = s
        .user(funded, "all", &[PermissionFlag::AllScorecards])
        .await;
    assert_eq!(s.level(all, ob(program)).await, Some(Browser));

    // An object placed later, and one created later inside a container
    // that shows on the shared scorecard, become visible.
    let later = s.object(grants, ObjectKind::Indicator, None).await;
    assert_eq!(s.level(all, ob(later)).await, None);
    s.place(grants, later, first).await;
    assert_eq!(s.level(all, ob(later)).await, Some(Browser));
    let nested = s.object(grants, ObjectKind::Result, Some(program)).await;
    let deeper = s
        .object(grants, ObjectKind::PerformanceMeasure, Some(nested))
        .await;
    assert_eq!(s.level(all, ob(nested)).await, Some(Browser));
    assert_eq!(s.level(all, ob(deeper)).await, Some(Browser));

    // A removed one stops being visible, with its contents,
    s.remove(grants, program, first).await;
    assert_eq!(s.level(all, ob(program)).await, None);
    assert_eq!(s.level(all, ob(deeper)).await, None);
    assert_eq!(s.level(all, ob(later)).await, Some(Browser));
    // unless it is still on another scorecard shared with the partner.
    s.share(grants, funded, second).await;
    s.place(grants, later, second).await;
    s.remove(grants, later, first).await;
    assert_eq!(s.level(all, ob(later)).await, Some(Browser));
    // A scorecard not shared does not count.
    let not_shared = s.scorecard(grants).await;
    s.place(grants, program, not_shared).await;
    assert_eq!(s.level(all, ob(program)).await, None);
}

#[tokio::test]
async fn r_share_3_partner_level_is_browser_at_most() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let shared = s.scorecard(grants).await;
    let object = s.object(grants, ObjectKind::Indicator, None).await;
    s.place(grants, object, shared).await;
    s.connect(grants, funded, Directions::Offer).await;
    s.share(grants, funded, shared).await;
    let ours = s.scorecard(funded).await;
    s.link_object(funded, ours, grants, object).await;
    let boss = s.user(funded, "boss", &[]).await;
    s.grant(funded, funded, boss, ours, ScorecardAdmin)
        .await
        .unwrap();

    // FUNDED's admin (every flag) and a Scorecard Admin of the scorecard
    // showing the object both get Browser, no more.
    for user in [funded.admin, boss] {
        assert_eq!(s.level(user, ob(object)).await, Some(Browser));
        assert!(s.can(user, ob(object), Action::View).await);
        for action in [Action::Update, Action::Edit, Action::Admin] {
            assert!(!s.can(user, ob(object), action).await, "{action:?}");
        }
    }
    assert_eq!(s.level(funded.admin, sc(shared)).await, Some(Browser));
    assert_eq!(s.level(boss, ob(object)).await, Some(Browser));
    assert_eq!(s.level(boss, sc(ours)).await, Some(ScorecardAdmin));

    // More than Browser on a partner's scorecard cannot even be granted,
    let refused = s.grant(funded, grants, boss, shared, Editor).await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Domain(DomainError::SharedContentReadOnly))
        ),
        "{refused:?}"
    );
    s.grant(funded, grants, boss, shared, Browser)
        .await
        .unwrap();
    assert_eq!(s.level(boss, sc(shared)).await, Some(Browser));
    // and the partner's changes to shared content are refused.
    let change = s
        .service
        .execute(
            &by(funded, funded.admin),
            ChangeObjectField {
                site_id: grants.id,
                object_id: object,
                field: ObjectField::Analysis,
                value: "ours now".into(),
            },
        )
        .await;
    assert!(
        matches!(
            change,
            Err(CommandError::Domain(DomainError::SharedContentReadOnly))
        ),
        "{change:?}"
    );
}

#[tokio::test]
async fn r_share_4_relationships_give_access_until_lost() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let shared = s.scorecard(grants).await;
    let result = s.object(grants, ObjectKind::Result, None).await;
    let indicator = s.object(grants, ObjectKind::Indicator, Some(result)).await;
    let measure = s.object(grants, ObjectKind::PerformanceMeasure, None).await;
    s.place(grants, result, shared).await;
    s.place(grants, measure, shared).await;
    s.connect(grants, funded, Directions::Offer).await;
    s.share(grants, funded, shared).await;
    let ours = s.scorecard(funded).await;
    let our_measure = s.object(funded, ObjectKind::Indicator, None).await;
    let elsewhere = s.scorecard(funded).await;
    s.place(funded, our_measure, elsewhere).await;
    let on_ours = s.user(funded, "ours", &[]).await;
    let on_elsewhere = s.user(funded, "elsewhere", &[]).await;
    s.grant(funded, funded, on_ours, ours, Updater)
        .await
        .unwrap();
    s.grant(funded, funded, on_elsewhere, elsewhere, Browser)
        .await
        .unwrap();

    // Given no relationship, neither user sees GRANTS's objects.
    for user in [on_ours, on_elsewhere] {
        for target in [ob(result), ob(indicator), ob(measure)] {
            assert_eq!(s.level(user, target).await, None);
        }
    }

    // When FUNDED places the Result on its scorecard and aggregates the
    // measure into its own Indicator,
    s.link_object(funded, ours, grants, result).await;
    s.aggregate(funded, our_measure, grants, measure).await;

    // then whoever sees where they sit sees them (and the Result's
    // contents), at Browser; the shared scorecard itself is not theirs.
    assert_eq!(s.level(on_ours, ob(result)).await, Some(Browser));
    assert_eq!(s.level(on_ours, ob(indicator)).await, Some(Browser));
    assert_eq!(s.level(on_ours, ob(measure)).await, None);
    assert_eq!(s.level(on_elsewhere, ob(measure)).await, Some(Browser));
    assert_eq!(s.level(on_elsewhere, ob(result)).await, None);
    assert_eq!(s.level(on_ours, sc(shared)).await, None);
    // say the same.
    let seen: BTreeSet<Target> = s.seen(on_ours).await.into_iter().collect();
    assert_eq!(seen, BTreeSet::from([sc(ours), ob(result), ob(indicator)]));
    let seen: BTreeSet<Target> = s.seen(on_elsewhere).await.into_iter().collect();
    assert_eq!(
        seen,
        BTreeSet::from([sc(elsewhere), ob(our_measure), ob(measure)])
    );
    let viewers = s.at().await.viewers(ob(indicator)).unwrap();
    assert!(viewers
        .iter()
        .any(|v| v.user == on_ours && v.level == Browser));
    assert!(viewers.iter().all(|v| v.user != on_elsewhere));

    // When the Result leaves the shared scorecard, access goes at once,
    // before the consequence worker records the removal,
    s.remove(grants, result, shared).await;
    assert_eq!(s.level(on_ours, ob(result)).await, None);
    assert_eq!(s.level(on_ours, ob(indicator)).await, None);
    assert_eq!(s.relationships_removed().await, 0);
    // and the worker then records it as an event.
    let worker = ConsequenceWorker::new(s.service.clone());
    let head = s.service.store().head_position().await.unwrap();
    worker.run(Some(head)).await.unwrap();
    assert_eq!(s.relationships_removed().await, 1);
    assert_eq!(s.level(on_ours, ob(result)).await, None);
    // A later placement does not bring the removed relationship back.
    s.place(grants, result, shared).await;
    assert_eq!(s.level(on_ours, ob(result)).await, None);

    // Unsharing removes the aggregation's access (and relationship) at once.
    assert_eq!(s.level(on_elsewhere, ob(measure)).await, Some(Browser));
    s.unshare(grants, funded, shared).await;
    assert_eq!(s.level(on_elsewhere, ob(measure)).await, None);
    assert_eq!(s.relationships_removed().await, 2);
}

#[tokio::test]
async fn r_share_4_a_relationship_whose_object_is_no_longer_seen_gives_nothing() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let shared = s.scorecard(grants).await;
    let result = s.object(grants, ObjectKind::Result, None).await;
    let indicator = s.object(grants, ObjectKind::Indicator, Some(result)).await;
    // The Indicator shows on the shared scorecard twice: inside the
    // Result, and placed there itself.
    s.place(grants, result, shared).await;
    s.place(grants, indicator, shared).await;
    s.connect(grants, funded, Directions::Offer).await;
    s.share(grants, funded, shared).await;
    let ours = s.scorecard(funded).await;
    s.link_object(funded, ours, grants, result).await;
    let reader = s.user(funded, "reader", &[]).await;
    s.grant(funded, funded, reader, ours, Browser)
        .await
        .unwrap();
    assert_eq!(s.level(reader, ob(indicator)).await, Some(Browser));

    // When the Result leaves the shared scorecard (the worker has not yet
    // removed the relationship), FUNDED still sees the Indicator, but no
    // longer the relationship's object: the relationship gives nothing
    // ("not a relationship whose object B no longer sees").
    s.remove(grants, result, shared).await;
    assert_eq!(s.relationships_removed().await, 0);
    assert_eq!(s.level(funded.admin, ob(indicator)).await, Some(Browser));
    assert_eq!(s.level(reader, ob(result)).await, None);
    assert_eq!(s.level(reader, ob(indicator)).await, None);
    assert!(!s.seen(reader).await.contains(&ob(indicator)));
}

#[tokio::test]
async fn r_share_5_which_partner_users_see_shared_content() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let (assigned, linked) = (s.scorecard(grants).await, s.scorecard(grants).await);
    let on_assigned = s.object(grants, ObjectKind::Indicator, None).await;
    let on_linked = s.object(grants, ObjectKind::Indicator, None).await;
    s.place(grants, on_assigned, assigned).await;
    s.place(grants, on_linked, linked).await;
    s.connect(grants, funded, Directions::Offer).await;
    s.share(grants, funded, assigned).await;
    s.share(grants, funded, linked).await;
    let ours = s.scorecard(funded).await;
    s.link_object(funded, ours, grants, on_linked).await;

    let all = s
        .user(funded, "all", &[PermissionFlag::AllScorecards])
        .await;
    let given = s.user(funded, "given", &[]).await;
    let nobody = s.user(funded, "nobody", &[]).await;
    let instance_admin = s.user(funded, "ia", &[PermissionFlag::InstanceAdmin]).await;
    let author = s
        .user(funded, "author", &[PermissionFlag::AddEditScorecardObjects])
        .await;
    let reader = s.user(funded, "reader", &[]).await;
    s.grant(funded, grants, given, assigned, Browser)
        .await
        .unwrap();
    s.grant(funded, funded, reader, ours, Browser)
        .await
        .unwrap();

    let everything = [sc(assigned), sc(linked), ob(on_assigned), ob(on_linked)];
    // All Scorecards: all of it.
    for target in everything {
        assert_eq!(s.level(all, target).await, Some(Browser), "{target:?}");
    }
    // An assigned shared scorecard: it and what shows on it.
    assert_eq!(s.level(given, sc(assigned)).await, Some(Browser));
    assert_eq!(s.level(given, ob(on_assigned)).await, Some(Browser));
    assert_eq!(s.level(given, sc(linked)).await, None);
    assert_eq!(s.level(given, ob(on_linked)).await, None);
    // An own scorecard with a partner's object on it: that object only.
    for user in [reader, instance_admin, author] {
        assert_eq!(
            s.level(user, ob(on_linked)).await,
            Some(Browser),
            "{user:?}"
        );
        assert_eq!(s.level(user, sc(linked)).await, None);
        assert_eq!(s.level(user, ob(on_assigned)).await, None);
        assert_eq!(s.level(user, sc(assigned)).await, None);
    }
    // Nothing assigned, no flag: nothing.
    for target in everything {
        assert_eq!(s.level(nobody, target).await, None, "{target:?}");
    }
    // Q-2 lists the same.
    let seen: BTreeSet<Target> = s.seen(reader).await.into_iter().collect();
    assert_eq!(seen, BTreeSet::from([sc(ours), ob(on_linked)]));
    let seen: BTreeSet<Target> = s.seen(given).await.into_iter().collect();
    assert_eq!(seen, BTreeSet::from([sc(assigned), ob(on_assigned)]));
    assert!(s.seen(nobody).await.is_empty());
    // The partner's scorecard stays assigned but gives nothing once unshared.
    s.unshare(grants, funded, assigned).await;
    assert_eq!(s.level(given, sc(assigned)).await, None);
    assert_eq!(s.level(given, ob(on_assigned)).await, None);
    s.share(grants, funded, assigned).await;
    assert_eq!(s.level(given, sc(assigned)).await, Some(Browser));
}

#[tokio::test]
async fn r_share_6_every_shared_item_carries_its_origin_code() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let shared = s.scorecard(grants).await;
    let object = s.object(grants, ObjectKind::Indicator, None).await;
    s.place(grants, object, shared).await;
    s.connect(grants, funded, Directions::Offer).await;
    s.share(grants, funded, shared).await;
    let ours = s.scorecard(funded).await;
    let all = s
        .user(funded, "all", &[PermissionFlag::AllScorecards])
        .await;

    let items = s.at().await.lookup(all, &all_of(100)).unwrap().items;
    let code = |raw: &str| SiteCode::parse(raw).unwrap();
    let expected = [
        (sc(shared), grants.id, code("GRANTS"), TargetKind::Scorecard),
        (
            ob(object),
            grants.id,
            code("GRANTS"),
            TargetKind::Object(ObjectKind::Indicator),
        ),
        (sc(ours), funded.id, code("FUNDED"), TargetKind::Scorecard),
    ];
    assert_eq!(items.len(), expected.len(), "{items:?}");
    for (target, site, origin_code, kind) in expected {
        let item = items
            .iter()
            .find(|v| v.target == target)
            .unwrap_or_else(|| panic!("{target:?} in {items:?}"));
        // Each item is named, with its owner's code and name (R-SHARE-6).
        let name = match target {
            Target::Scorecard(_) => "Scorecard",
            Target::Object(_) => "Object",
        };
        assert_eq!(
            item,
            &Visible {
                target,
                kind,
                name: Name::parse(name).unwrap(),
                site,
                origin_name: Name::parse(origin_code.as_str()).unwrap(),
                origin_code,
                level: Browser,
            }
        );
    }
}

// ---------------------------------------------------------------------------
// The questions' shape (Q-2, Q-3, Q-4, errors)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn q_2_pages_concatenate_to_the_whole_answer() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let all = s
        .user(funded, "all", &[PermissionFlag::AllScorecards])
        .await;
    for site in [grants, funded] {
        for _ in 0..3 {
            let scorecard = s.scorecard(site).await;
            for kind in [ObjectKind::Result, ObjectKind::Indicator] {
                let object = s.object(site, kind, None).await;
                s.place(site, object, scorecard).await;
            }
        }
    }
    s.connect(grants, funded, Directions::Offer).await;
    let shared = s.scorecard(grants).await;
    s.share(grants, funded, shared).await;
    for _ in 0..4 {
        let object = s.object(grants, ObjectKind::Program, None).await;
        s.place(grants, object, shared).await;
    }
    let whole = s.at().await.lookup(all, &all_of(1_000)).unwrap();
    assert!(whole.next.is_none());
    assert_eq!(
        whole.items.len(),
        9 + 1 + 4,
        "FUNDED's 9, the shared scorecard and its 4"
    );
    let keys: Vec<(SiteId, Uuid)> = whole.items.iter().map(key).collect();
    let mut sorted = keys.clone();
    sorted.sort();
    assert_eq!(keys, sorted, "ordered by (owner site id, target id)");

    for limit in [1, 3, 5, 13, 14] {
        let mut pages = Vec::new();
        let mut after = None;
        loop {
            let page = s
                .index
                .lookup(
                    all,
                    &LookupQuery {
                        after: after.clone(),
                        ..all_of(limit)
                    },
                )
                .unwrap();
            assert!(page.items.len() <= limit);
            pages.extend(page.items);
            match page.next {
                Some(cursor) => after = Some(cursor),
                None => break,
            }
            assert!(pages.len() <= whole.items.len(), "no page repeats items");
        }
        assert_eq!(pages, whole.items, "limit {limit}");
    }

    // A cursor stays valid while the index moves on: the next page holds
    // exactly what now follows the cursor's item, so nothing repeats.
    let first = s.at().await.lookup(all, &all_of(4)).unwrap();
    let cursor = first.next.clone().unwrap();
    let last = key(first.items.last().unwrap());
    for kind in [
        ObjectKind::Indicator,
        ObjectKind::Result,
        ObjectKind::Program,
    ] {
        let added = s.object(grants, kind, None).await;
        s.place(grants, added, shared).await;
    }
    let rest = s
        .at()
        .await
        .lookup(
            all,
            &LookupQuery {
                after: Some(cursor),
                ..all_of(1_000)
            },
        )
        .unwrap();
    let now = s.at().await.lookup(all, &all_of(1_000)).unwrap().items;
    let after_cursor: Vec<Visible> = now.into_iter().filter(|v| key(v) > last).collect();
    assert_eq!(rest.items, after_cursor);

    // Filters by site and by kind.
    let only_grants = s
        .index
        .lookup(
            all,
            &LookupQuery {
                site: Some(grants.id),
                ..all_of(1_000)
            },
        )
        .unwrap();
    assert_eq!(only_grants.items.len(), 8);
    assert!(only_grants.items.iter().all(|v| v.site == grants.id));
    let programs = s
        .index
        .lookup(
            all,
            &LookupQuery {
                kind: Some(TargetKind::Object(ObjectKind::Program)),
                ..all_of(1_000)
            },
        )
        .unwrap();
    assert_eq!(programs.items.len(), 5);

    // A cursor the index did not give out is refused.
    let bad = "not-a-cursor".to_string();
    assert_eq!(
        s.index.lookup(
            all,
            &LookupQuery {
                after: Some(bad.clone()),
                ..all_of(10)
            }
        ),
        Err(AccessError::BadCursor(bad))
    );
}

#[tokio::test]
async fn q_3_viewers_are_every_user_with_a_level_ordered_by_site_and_user() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let other = s.site("OTHER").await;
    let shared = s.scorecard(grants).await;
    let object = s.object(grants, ObjectKind::Indicator, None).await;
    s.place(grants, object, shared).await;
    s.connect(grants, funded, Directions::Offer).await;
    s.connect(grants, other, Directions::Offer).await;
    s.share(grants, funded, shared).await;
    let editor = s.user(grants, "editor", &[]).await;
    s.grant(grants, grants, editor, shared, Editor)
        .await
        .unwrap();
    let _plain = s.user(grants, "plain", &[]).await;
    let partner_all = s
        .user(funded, "all", &[PermissionFlag::AllScorecards])
        .await;
    let _outsider = s.user(other, "all", &[PermissionFlag::AllScorecards]).await;

    // Each viewer is named: username, name, site code.
    let viewer = |site: Site, user, name: &str, level| Viewer {
        site: site.id,
        user,
        level,
        username: Username::parse(&format!("{name}@{}.org", site.id.stream_suffix())).unwrap(),
        name: Name::parse(name).unwrap(),
        site_code: SiteCode::parse(site.code).unwrap(),
    };
    let mut expected = vec![
        viewer(grants, grants.admin, "admin", ScorecardAdmin),
        viewer(grants, editor, "editor", Editor),
        viewer(funded, funded.admin, "admin", Browser),
        viewer(funded, partner_all, "all", Browser),
    ];
    expected.sort_by_key(|v| (v.site, v.user));
    assert_eq!(s.at().await.viewers(ob(object)).unwrap(), expected);
}

#[tokio::test]
async fn q_4_explain_names_the_events_of_each_path_and_what_a_denial_lacks() {
    let mut s = Scene::new().await;
    let grants = s.site("GRANTS").await;
    let funded = s.site("FUNDED").await;
    let shared = s.scorecard(grants).await;
    let object = s.object(grants, ObjectKind::Indicator, None).await;
    s.place(grants, object, shared).await;
    let ours = s.scorecard(funded).await;
    let all = s
        .user(funded, "all", &[PermissionFlag::AllScorecards])
        .await;
    let plain = s.user(funded, "plain", &[]).await;

    // A denial without any link says the link is missing.
    let why = s.at().await.explain(all, ob(object)).unwrap();
    assert_eq!(why.level, None);
    assert!(why.paths.is_empty());
    assert!(
        why.missing
            .iter()
            .any(|m| matches!(m, Missing::ActiveLink { link: l } if *l == link(grants, funded))),
        "{:?}",
        why.missing
    );

    s.connect(grants, funded, Directions::Offer).await;
    s.share(grants, funded, shared).await;
    s.grant(funded, funded, plain, ours, Browser).await.unwrap();
    s.link_object(funded, ours, grants, object).await;

    // Granted: every path's steps name events that are in the log; the
    // paths include the All Scorecards one and the relationship one.
    for (user, expect_fact) in [(all, "flag"), (plain, "relationship")] {
        let why = s.at().await.explain(user, ob(object)).unwrap();
        assert_eq!(why.level, Some(Browser));
        assert_eq!(why.owner, grants.id);
        assert!(why.missing.is_empty(), "{:?}", why.missing);
        assert!(!why.paths.is_empty());
        assert_eq!(
            why.paths.iter().map(|p| p.level).max(),
            why.level,
            "the level is the best path's"
        );
        let ids: Vec<Uuid> = why
            .paths
            .iter()
            .flat_map(|p| p.steps.iter().map(|step| step.event.event_id))
            .collect();
        assert!(!ids.is_empty());
        let found = s.service.store().read_events_by_id(&ids).await.unwrap();
        let found_ids: BTreeSet<Uuid> = found.iter().map(|e| e.event_id).collect();
        for path in &why.paths {
            assert!(!path.steps.is_empty());
            for step in &path.steps {
                assert!(
                    found_ids.contains(&step.event.event_id),
                    "{:?} names an event not in the log",
                    step.fact
                );
                let recorded = found
                    .iter()
                    .find(|e| e.event_id == step.event.event_id)
                    .unwrap();
                assert_eq!(recorded.global_position, step.event.position);
                assert!(step.event.actor.is_some());
                // Every user who acted in a step is named.
                if let Some(Actor::User { user_id, .. }) = step.event.actor {
                    assert!(
                        why.actors
                            .iter()
                            .any(|a| a.user.0 == user_id
                                && a.username.as_str().starts_with("admin@")),
                        "{:?} not named in {:?}",
                        step.event.actor,
                        why.actors
                    );
                }
            }
        }
        // The answer names the user, the target and its owner (R-SHARE-6).
        assert_eq!(why.target_name.as_str(), "Object");
        assert_eq!(why.owner_code.as_str(), "GRANTS");
        assert_eq!(why.owner_name.as_str(), "GRANTS");
        assert!(why
            .username
            .as_str()
            .starts_with(if user == all { "all@" } else { "plain@" }));
        assert!(!why.actors.is_empty());
        let facts: Vec<&Fact> = why
            .paths
            .iter()
            .flat_map(|p| p.steps.iter().map(|step| &step.fact))
            .collect();
        let has = match expect_fact {
            "flag" => facts.iter().any(|f| {
                matches!(f, Fact::FlagHeld { flag: PermissionFlag::AllScorecards, user: u } if *u == user)
            }),
            _ => facts.iter().any(|f| {
                matches!(f, Fact::PartnerObjectOnScorecard { object: o, scorecard: c, .. } if *o == object && *c == ours)
            }),
        };
        assert!(has, "{facts:?}");
        assert!(facts
            .iter()
            .any(|f| matches!(f, Fact::ScorecardShared { scorecard: c, .. } if *c == shared)));
    }

    // A denial on own content: an object on no scorecard lacks a scorecard
    // (only All Scorecards would see it).
    let loose = s.object(funded, ObjectKind::Indicator, None).await;
    let why = s.at().await.explain(plain, ob(loose)).unwrap();
    assert_eq!(why.level, None);
    assert!(!why.missing.is_empty());
    assert!(
        why.missing.iter().any(|m| matches!(
            m,
            Missing::OnAScorecard { object: o } if *o == loose
        ) || matches!(
            m,
            Missing::Flag {
                flag: PermissionFlag::AllScorecards
            }
        )),
        "{:?}",
        why.missing
    );
}

#[tokio::test]
async fn unknown_users_and_targets_are_errors_not_denials() {
    let mut s = Scene::new().await;
    let acme = s.site("ACME").await;
    let scorecard = s.scorecard(acme).await;
    let stranger = UserId::new();
    let nothing = ob(ObjectId::new());
    let no_scorecard = sc(ScorecardId::new());
    let index = s.at().await;

    assert_eq!(
        index.level(stranger, sc(scorecard)),
        Err(AccessError::UnknownUser(stranger))
    );
    assert_eq!(
        index.check(stranger, sc(scorecard), Action::View),
        Err(AccessError::UnknownUser(stranger))
    );
    assert_eq!(
        index.lookup(stranger, &all_of(10)),
        Err(AccessError::UnknownUser(stranger))
    );
    assert_eq!(
        index.explain(stranger, sc(scorecard)).map(|e| e.level),
        Err(AccessError::UnknownUser(stranger))
    );
    for target in [nothing, no_scorecard] {
        assert_eq!(
            index.level(acme.admin, target),
            Err(AccessError::UnknownTarget(target))
        );
        assert_eq!(
            index.check(acme.admin, target, Action::View),
            Err(AccessError::UnknownTarget(target))
        );
        assert_eq!(
            index.viewers(target),
            Err(AccessError::UnknownTarget(target))
        );
        assert_eq!(
            index.explain(acme.admin, target).map(|e| e.level),
            Err(AccessError::UnknownTarget(target))
        );
    }
    assert_eq!(
        index.level(acme.admin, sc(scorecard)),
        Ok(Some(ScorecardAdmin))
    );
}
