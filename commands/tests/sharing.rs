//! Sharing through the command service against real PostgreSQL: shares
//! over active links, relationships to shared objects, and the consequences
//! of revoking and unsharing, recorded as system events caused by the
//! command's event.

use shareledger_commands::{
    CommandError, ConnectionCommand, ContentCommand, Issued, RelateCommand, Service, ShareChange,
};
use shareledger_core::catalog::DomainEvent as _;
use shareledger_core::catalog::{
    AccessLevel, ContentEvent, Directions, Link, Name, ObjectField, ObjectId, ObjectKind, Role,
    ScorecardId, SeatLimit, SiteCode, SiteId, UserId, Username,
};
use shareledger_core::content::{
    ChangeObjectField, CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
};
use shareledger_core::site::{AddUser, GrantScorecardAccess, RegisterSite};
use shareledger_core::DomainError;
use shareledger_events::Actor;
use shareledger_tests::TestDb;
use uuid::Uuid;

fn operator() -> Issued {
    Issued {
        actor: Actor::Operator {
            name: "tests".into(),
        },
        key: Uuid::new_v4(),
    }
}

fn by(site: SiteId, user: UserId) -> Issued {
    Issued {
        actor: Actor::User {
            user_id: user.0,
            site_id: site.0,
        },
        key: Uuid::new_v4(),
    }
}

struct Partners {
    service: Service,
    a: SiteId,
    b: SiteId,
    admin_a: UserId,
    admin_b: UserId,
    viewer_b: UserId,
    scorecard: ScorecardId,
    object: ObjectId,
    b_scorecard: ScorecardId,
}

impl Partners {
    fn link(&self) -> Link {
        Link {
            from: self.a,
            to: self.b,
        }
    }
}

async fn site(service: &Service, code: &str) -> (SiteId, UserId) {
    let site_id = SiteId::new();
    service
        .register_site(
            &operator(),
            RegisterSite {
                site_id,
                code: SiteCode::parse(code).unwrap(),
                name: Name::parse(code).unwrap(),
                seat_limit: SeatLimit::new(10).unwrap(),
                parent: None,
            },
        )
        .await
        .unwrap();
    let admin = UserId::new();
    service
        .on_site(
            &operator(),
            site_id,
            AddUser {
                user_id: admin,
                username: Username::parse(&format!("admin@{code}.org")).unwrap(),
                name: Name::parse("Admin").unwrap(),
                role: Role::Administration,
            },
        )
        .await
        .unwrap();
    (site_id, admin)
}

/// A grant maker A sharing a scorecard with an Indicator on it with B, over
/// an active link A→B; B has a scorecard of its own and a Presenter.
async fn partners(db: &TestDb) -> Partners {
    let service = Service::new(db.store());
    let (a, admin_a) = site(&service, "GRANTS").await;
    let (b, admin_b) = site(&service, "FUNDED").await;
    let viewer_b = UserId::new();
    service
        .on_site(
            &operator(),
            b,
            AddUser {
                user_id: viewer_b,
                username: Username::parse("viewer@funded.org").unwrap(),
                name: Name::parse("Viewer").unwrap(),
                role: Role::Presenter,
            },
        )
        .await
        .unwrap();
    service
        .request_connection(
            &by(a, admin_a),
            a,
            SiteCode::parse("FUNDED").unwrap(),
            Directions::Offer,
        )
        .await
        .unwrap();
    service
        .on_connection(&by(b, admin_b), b, a, ConnectionCommand::Approve)
        .await
        .unwrap();
    let scorecard = ScorecardId::new();
    let object = ObjectId::new();
    let b_scorecard = ScorecardId::new();
    for (site_id, admin, command) in [
        (
            a,
            admin_a,
            ContentCommand::CreateScorecard(CreateScorecard {
                scorecard_id: scorecard,
                name: Name::parse("Shared measures").unwrap(),
            }),
        ),
        (
            a,
            admin_a,
            ContentCommand::CreateObject(CreateObject {
                object_id: object,
                kind: ObjectKind::Indicator,
                name: Name::parse("Literacy rate").unwrap(),
                container: None,
            }),
        ),
        (
            a,
            admin_a,
            ContentCommand::PlaceObjectOnScorecard(PlaceObjectOnScorecard {
                object_id: object,
                scorecard_id: scorecard,
            }),
        ),
        (
            b,
            admin_b,
            ContentCommand::CreateScorecard(CreateScorecard {
                scorecard_id: b_scorecard,
                name: Name::parse("Our results").unwrap(),
            }),
        ),
    ] {
        service
            .on_content(&by(site_id, admin), site_id, command)
            .await
            .unwrap();
    }
    Partners {
        service,
        a,
        b,
        admin_a,
        admin_b,
        viewer_b,
        scorecard,
        object,
        b_scorecard,
    }
}

async fn share_and_link(p: &Partners) -> shareledger_core::catalog::RelationshipId {
    p.service
        .change_sharing(
            &by(p.a, p.admin_a),
            p.link(),
            ShareChange::Share(p.scorecard),
        )
        .await
        .unwrap();
    let relationship_id = shareledger_core::catalog::RelationshipId::new();
    p.service
        .relate(
            &by(p.b, p.admin_b),
            p.b,
            RelateCommand::Link(LinkSharedObject {
                relationship_id,
                scorecard_id: p.b_scorecard,
                origin_site: p.a,
                object_id: p.object,
            }),
        )
        .await
        .unwrap();
    relationship_id
}

fn domain(result: Result<shareledger_commands::Outcome, CommandError>) -> DomainError {
    match result {
        Err(CommandError::Domain(e)) => e,
        other => panic!("expected a domain error, got {other:?}"),
    }
}

#[tokio::test]
async fn r_share_4_a_partner_links_only_objects_it_can_see() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    let before = db.log_snapshot().await;
    let err = domain(
        p.service
            .relate(
                &by(p.b, p.admin_b),
                p.b,
                RelateCommand::Link(LinkSharedObject {
                    relationship_id: shareledger_core::catalog::RelationshipId::new(),
                    scorecard_id: p.b_scorecard,
                    origin_site: p.a,
                    object_id: p.object,
                }),
            )
            .await,
    );
    assert_eq!(err, DomainError::ObjectNotShared(p.object));
    assert_eq!(db.log_snapshot().await, before);
    share_and_link(&p).await;
}

#[tokio::test]
async fn r_conn_4_revoke_removes_relationships_as_system_events_caused_by_the_revoke() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    let relationship_id = share_and_link(&p).await;
    let outcome = p
        .service
        .on_connection(
            &by(p.b, p.admin_b),
            p.b,
            p.a,
            ConnectionCommand::Revoke(p.link()),
        )
        .await
        .unwrap();
    let types: Vec<&str> = outcome
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(
        types,
        vec!["LinkRevoked", "ScorecardUnshared", "RelationshipRemoved"]
    );
    let stored = db
        .store()
        .read_events_by_id(
            &outcome
                .events
                .iter()
                .map(|e| e.event_id)
                .collect::<Vec<_>>(),
        )
        .await
        .unwrap();
    let revoked_id = stored[0].event_id;
    for consequence in &stored[1..] {
        let meta = consequence.typed_metadata().unwrap();
        assert_eq!(meta.actor, Actor::System);
        assert_eq!(meta.causation_id, Some(revoked_id));
    }
    assert_eq!(
        ContentEvent::decode(&stored[2].event_type, 1, &stored[2].data).unwrap(),
        ContentEvent::RelationshipRemoved {
            relationship_id,
            reason: shareledger_core::catalog::RemovalReason::LinkRevoked
        }
    );
    // Revoked for good: sharing over it is refused; a new request starts
    // from nothing shared.
    assert!(matches!(
        domain(
            p.service
                .change_sharing(
                    &by(p.a, p.admin_a),
                    p.link(),
                    ShareChange::Share(p.scorecard)
                )
                .await
        ),
        DomainError::LinkNotActive { .. }
    ));
}

#[tokio::test]
async fn r_share_4_unsharing_removes_the_relationships_that_lost_their_object() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    let relationship_id = share_and_link(&p).await;
    let outcome = p
        .service
        .change_sharing(
            &by(p.a, p.admin_a),
            p.link(),
            ShareChange::Unshare(p.scorecard),
        )
        .await
        .unwrap();
    let types: Vec<&str> = outcome
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    assert_eq!(types, vec!["ScorecardUnshared", "RelationshipRemoved"]);
    let stored = db
        .store()
        .read_events_by_id(&[outcome.events[1].event_id])
        .await
        .unwrap();
    assert_eq!(
        ContentEvent::decode(&stored[0].event_type, 1, &stored[0].data).unwrap(),
        ContentEvent::RelationshipRemoved {
            relationship_id,
            reason: shareledger_core::catalog::RemovalReason::ScorecardUnshared
        }
    );
}

#[tokio::test]
async fn r_share_3_a_partners_user_cannot_change_shared_content() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    share_and_link(&p).await;
    let before = db.log_snapshot().await;
    let err = domain(
        p.service
            .change_object_field(
                &by(p.b, p.admin_b),
                p.a,
                ChangeObjectField {
                    object_id: p.object,
                    field: ObjectField::Analysis,
                    value: "edited by the partner".into(),
                },
            )
            .await,
    );
    assert_eq!(err, DomainError::SharedContentReadOnly);
    assert_eq!(db.log_snapshot().await, before);
    // The owner's admin can.
    p.service
        .change_object_field(
            &by(p.a, p.admin_a),
            p.a,
            ChangeObjectField {
                object_id: p.object,
                field: ObjectField::Analysis,
                value: "on track".into(),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn r_share_5_a_partners_scorecard_is_granted_at_most_browser() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    let grant = |level| GrantScorecardAccess {
        user_id: p.viewer_b,
        scorecard_id: p.scorecard,
        level,
    };
    // Not shared yet: not a scorecard B can grant.
    assert_eq!(
        domain(
            p.service
                .grant_scorecard_access(&by(p.b, p.admin_b), p.b, p.a, grant(AccessLevel::Browser))
                .await
        ),
        DomainError::ScorecardNotFound(p.scorecard)
    );
    share_and_link(&p).await;
    let before = db.log_snapshot().await;
    assert_eq!(
        domain(
            p.service
                .grant_scorecard_access(&by(p.b, p.admin_b), p.b, p.a, grant(AccessLevel::Updater))
                .await
        ),
        DomainError::SharedContentReadOnly
    );
    assert_eq!(db.log_snapshot().await, before);
    p.service
        .grant_scorecard_access(&by(p.b, p.admin_b), p.b, p.a, grant(AccessLevel::Browser))
        .await
        .unwrap();
}

#[tokio::test]
async fn r_share_1_sharing_needs_an_active_link_and_an_own_scorecard() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    // B→A was never requested (A offered only A→B).
    let reverse = Link { from: p.b, to: p.a };
    assert!(matches!(
        domain(
            p.service
                .change_sharing(
                    &by(p.b, p.admin_b),
                    reverse,
                    ShareChange::Share(p.b_scorecard)
                )
                .await
        ),
        DomainError::LinkNotActive { .. }
    ));
    // A cannot share B's scorecard.
    assert_eq!(
        domain(
            p.service
                .change_sharing(
                    &by(p.a, p.admin_a),
                    p.link(),
                    ShareChange::Share(p.b_scorecard)
                )
                .await
        ),
        DomainError::ScorecardNotFound(p.b_scorecard)
    );
}
