//! Sharing through the command service against real PostgreSQL: shares
//! over active links, relationships to shared objects, and the consequences
//! of revoking and unsharing, recorded as system events caused by the
//! command's event.

mod common;

use common::{by, domain, partners, share_and_link};
use shareledger_core::catalog::DomainEvent as _;
use shareledger_core::catalog::{AccessLevel, ContentEvent, Link, ObjectField};
use shareledger_core::content::{ChangeObjectField, LinkSharedObject};
use shareledger_core::site::GrantScorecardAccess;
use shareledger_core::DomainError;
use shareledger_events::Actor;
use shareledger_tests::TestDb;

#[tokio::test]
async fn r_share_4_a_partner_links_only_objects_it_can_see() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    let before = db.log_snapshot().await;
    let err = domain(
        p.service
            .execute(
                &by(p.b, p.admin_b),
                LinkSharedObject {
                    site_id: p.b,
                    relationship_id: shareledger_core::catalog::RelationshipId::new(),
                    scorecard_id: p.b_scorecard,
                    origin_site: p.a,
                    object_id: p.object,
                },
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
        .execute(
            &by(p.b, p.admin_b),
            shareledger_core::connection::RevokeSharing {
                site_id: p.b,
                from: p.link().from,
                to: p.link().to,
            },
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
                .execute(
                    &by(p.a, p.admin_a),
                    shareledger_core::connection::ShareScorecard {
                        site_id: p.link().from,
                        partner: p.link().to,
                        scorecard_id: p.scorecard
                    }
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
        .execute(
            &by(p.a, p.admin_a),
            shareledger_core::connection::UnshareScorecard {
                site_id: p.link().from,
                partner: p.link().to,
                scorecard_id: p.scorecard,
            },
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
            .execute(
                &by(p.b, p.admin_b),
                ChangeObjectField {
                    site_id: p.a,
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
        .execute(
            &by(p.a, p.admin_a),
            ChangeObjectField {
                site_id: p.a,
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
    // B's viewer on A's scorecard (the owner is not the granting site).
    let grant = |level| GrantScorecardAccess {
        site_id: p.b,
        user_id: p.viewer_b,
        scorecard_id: p.scorecard,
        level,
        owner_site: Some(p.a),
    };
    // Not shared yet: not a scorecard B can grant.
    assert_eq!(
        domain(
            p.service
                .execute(&by(p.b, p.admin_b), grant(AccessLevel::Browser))
                .await
        ),
        DomainError::ScorecardNotFound(p.scorecard)
    );
    share_and_link(&p).await;
    let before = db.log_snapshot().await;
    assert_eq!(
        domain(
            p.service
                .execute(&by(p.b, p.admin_b), grant(AccessLevel::Updater))
                .await
        ),
        DomainError::SharedContentReadOnly
    );
    assert_eq!(db.log_snapshot().await, before);
    p.service
        .execute(&by(p.b, p.admin_b), grant(AccessLevel::Browser))
        .await
        .unwrap();
}

#[tokio::test]
async fn r_conn_4_a_revoke_ends_the_partner_users_assignments_for_good() {
    // Given A shares its scorecard with B, and B's admin assigned it to B's
    // viewer.
    let db = TestDb::new().await;
    let p = partners(&db).await;
    share_and_link(&p).await;
    p.service
        .execute(
            &by(p.b, p.admin_b),
            GrantScorecardAccess {
                site_id: p.b,
                user_id: p.viewer_b,
                scorecard_id: p.scorecard,
                level: AccessLevel::Browser,
                owner_site: Some(p.a),
            },
        )
        .await
        .unwrap();
    // When A revokes A→B.
    let revoke = p
        .service
        .execute(
            &by(p.a, p.admin_a),
            shareledger_core::connection::RevokeSharing {
                site_id: p.a,
                from: p.a,
                to: p.b,
            },
        )
        .await
        .unwrap();
    // Then the assignment ends in the same append, as the system's,
    // caused by the revocation.
    let ended: Vec<_> = revoke
        .events
        .iter()
        .filter(|e| e.event_type == "ScorecardAccessRevoked")
        .collect();
    assert_eq!(ended.len(), 1, "{:?}", revoke.events);
    assert_eq!(ended[0].stream, shareledger_core::catalog::site_stream(p.b));
    let stored = db
        .store()
        .read_events_by_id(&[revoke.events[0].event_id, ended[0].event_id])
        .await
        .unwrap();
    let meta = stored[1].typed_metadata().unwrap();
    assert_eq!(meta.actor, Actor::System);
    assert_eq!(meta.causation_id, Some(stored[0].event_id));
    // And a new request, its approval and the same scorecard shared again
    // bring nothing back: the viewer holds no assignment to revoke.
    p.service
        .execute(
            &by(p.a, p.admin_a),
            shareledger_core::connection::RequestConnection {
                site_id: p.a,
                partner_code: shareledger_core::catalog::SiteCode::parse("FUNDED").unwrap(),
                directions: shareledger_core::catalog::Directions::Offer,
            },
        )
        .await
        .unwrap();
    p.service
        .execute(
            &by(p.b, p.admin_b),
            shareledger_core::connection::ApproveConnection {
                site_id: p.b,
                partner: p.a,
            },
        )
        .await
        .unwrap();
    p.service
        .execute(
            &by(p.a, p.admin_a),
            shareledger_core::connection::ShareScorecard {
                site_id: p.a,
                partner: p.b,
                scorecard_id: p.scorecard,
            },
        )
        .await
        .unwrap();
    assert_eq!(
        domain(
            p.service
                .execute(
                    &by(p.b, p.admin_b),
                    shareledger_core::site::RevokeScorecardAccess {
                        site_id: p.b,
                        user_id: p.viewer_b,
                        scorecard_id: p.scorecard,
                    },
                )
                .await
        ),
        DomainError::ScorecardNotFound(p.scorecard)
    );
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
                .execute(
                    &by(p.b, p.admin_b),
                    shareledger_core::connection::ShareScorecard {
                        site_id: reverse.from,
                        partner: reverse.to,
                        scorecard_id: p.b_scorecard
                    }
                )
                .await
        ),
        DomainError::LinkNotActive { .. }
    ));
    // A cannot share B's scorecard.
    assert_eq!(
        domain(
            p.service
                .execute(
                    &by(p.a, p.admin_a),
                    shareledger_core::connection::ShareScorecard {
                        site_id: p.link().from,
                        partner: p.link().to,
                        scorecard_id: p.b_scorecard
                    }
                )
                .await
        ),
        DomainError::ScorecardNotFound(p.b_scorecard)
    );
}

#[tokio::test]
async fn r_share_3_a_partners_edit_naming_its_own_site_is_read_only_and_writes_nothing() {
    // Given A shares the scorecard showing its object with B.
    let db = TestDb::new().await;
    let p = partners(&db).await;
    share_and_link(&p).await;
    let before = db.log_snapshot().await;
    // When B's admin changes A's object naming B (its own site).
    let result = p
        .service
        .execute(
            &by(p.b, p.admin_b),
            shareledger_core::content::ChangeObjectField {
                site_id: p.b,
                object_id: p.object,
                field: shareledger_core::catalog::ObjectField::Description,
                value: "ours now".into(),
            },
        )
        .await;
    // Then: read-only (the owner found by the object's tag), nothing written.
    assert_eq!(domain(result), DomainError::SharedContentReadOnly);
    assert_eq!(db.log_snapshot().await, before);
}
