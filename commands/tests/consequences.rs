//! The consequence worker (R-SHARE-4): an object that leaves the scorecards
//! shared with a partner takes the partner's relationships to it along,
//! once, even when the worker is stopped abruptly again and again.

mod common;

use common::{by, partners, share_and_link};
use rand::{Rng, SeedableRng};
use shareledger_commands::{ConsequenceWorker, Service};
use shareledger_core::catalog::{
    content_stream, ContentEvent, DomainEvent as _, Name, ObjectId, ObjectKind, RelationshipId,
    RemovalReason, ScorecardId,
};
use shareledger_core::content::{
    CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
    RemoveObjectFromScorecard,
};
use shareledger_events::store::RevisionFrom;
use shareledger_events::{Actor, Direction, StreamName};
use shareledger_tests::TestDb;

async fn partner_content_events(
    db: &TestDb,
    p: &common::Partners,
) -> Vec<(ContentEvent, shareledger_events::RecordedEvent)> {
    db.store()
        .read_stream(
            &StreamName::parse(content_stream(p.b)).unwrap(),
            Direction::Forwards,
            RevisionFrom::Edge,
            10_000,
        )
        .await
        .unwrap()
        .into_iter()
        .map(|e| {
            (
                ContentEvent::decode(&e.event_type, e.schema_version, &e.data).unwrap(),
                e,
            )
        })
        .collect()
}

#[tokio::test]
async fn r_share_4_an_object_leaving_the_shared_scorecards_loses_its_relationships() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    let only_here = share_and_link(&p).await;
    // A second object, on the shared scorecard and on another shared one.
    let (other, second_card) = (ObjectId::new(), ScorecardId::new());
    p.service
        .execute(
            &by(p.a, p.admin_a),
            CreateObject {
                site_id: p.a,
                object_id: other,
                kind: ObjectKind::Indicator,
                name: Name::parse("Attendance").unwrap(),
                container: None,
            },
        )
        .await
        .unwrap();
    p.service
        .execute(
            &by(p.a, p.admin_a),
            CreateScorecard {
                site_id: p.a,
                scorecard_id: second_card,
                name: Name::parse("Also shared").unwrap(),
            },
        )
        .await
        .unwrap();
    for scorecard_id in [p.scorecard, second_card] {
        p.service
            .execute(
                &by(p.a, p.admin_a),
                PlaceObjectOnScorecard {
                    site_id: p.a,
                    object_id: other,
                    scorecard_id,
                },
            )
            .await
            .unwrap();
    }
    p.service
        .execute(
            &by(p.a, p.admin_a),
            shareledger_core::connection::ShareScorecard {
                site_id: p.link().from,
                partner: p.link().to,
                scorecard_id: second_card,
            },
        )
        .await
        .unwrap();
    let still_there = RelationshipId::new();
    p.service
        .execute(
            &by(p.b, p.admin_b),
            LinkSharedObject {
                site_id: p.b,
                relationship_id: still_there,
                scorecard_id: p.b_scorecard,
                origin_site: p.a,
                object_id: other,
            },
        )
        .await
        .unwrap();
    // A takes both objects off the first scorecard.
    let mut triggers = Vec::new();
    for object_id in [p.object, other] {
        let outcome = p
            .service
            .execute(
                &by(p.a, p.admin_a),
                RemoveObjectFromScorecard {
                    site_id: p.a,
                    object_id,
                    scorecard_id: p.scorecard,
                },
            )
            .await
            .unwrap();
        triggers.push(outcome.events[0].event_id);
    }
    let head = db.store().head_position().await.unwrap();
    let worker = ConsequenceWorker::new(p.service.clone());
    worker.run(Some(head)).await.unwrap();
    assert_eq!(worker.checkpoint().await.unwrap(), head);

    let removed: Vec<_> = partner_content_events(&db, &p)
        .await
        .into_iter()
        .filter(|(e, _)| matches!(e, ContentEvent::RelationshipRemoved { .. }))
        .collect();
    assert_eq!(
        removed.len(),
        1,
        "only the relationship that lost its object"
    );
    assert_eq!(
        removed[0].0,
        ContentEvent::RelationshipRemoved {
            relationship_id: only_here,
            reason: RemovalReason::ObjectNoLongerShared
        }
    );
    let meta = removed[0].1.typed_metadata().unwrap();
    assert_eq!(meta.actor, Actor::System);
    assert_eq!(meta.causation_id, Some(triggers[0]));
    // Running again changes nothing.
    let before = db.log_snapshot().await;
    worker.run(Some(head)).await.unwrap();
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn a_worker_with_a_stale_cache_still_removes_the_relationship() {
    // Given B's relationship on A's shared object, and a service whose
    // cache of A's content still shows the object on the shared scorecard
    // (another process, or this one before its cache is refreshed, removed it)
    let db = TestDb::new().await;
    let p = partners(&db).await;
    share_and_link(&p).await;
    let stale = Service::new(db.store());
    stale
        .execute(
            &by(p.a, p.admin_a),
            CreateObject {
                site_id: p.a,
                object_id: ObjectId::new(),
                kind: ObjectKind::Indicator,
                name: Name::parse("warms the cache").unwrap(),
                container: None,
            },
        )
        .await
        .unwrap();
    p.service
        .execute(
            &by(p.a, p.admin_a),
            RemoveObjectFromScorecard {
                site_id: p.a,
                object_id: p.object,
                scorecard_id: p.scorecard,
            },
        )
        .await
        .unwrap();
    // When the worker decides on the stale cache
    let head = db.store().head_position().await.unwrap();
    ConsequenceWorker::new(stale).run(Some(head)).await.unwrap();
    // Then the relationship is removed all the same
    let removed = partner_content_events(&db, &p)
        .await
        .into_iter()
        .filter(|(e, _)| matches!(e, ContentEvent::RelationshipRemoved { .. }))
        .count();
    assert_eq!(removed, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_consequence_worker_applies_each_consequence_once_across_abrupt_stops() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    p.service
        .execute(
            &by(p.a, p.admin_a),
            shareledger_core::connection::ShareScorecard {
                site_id: p.link().from,
                partner: p.link().to,
                scorecard_id: p.scorecard,
            },
        )
        .await
        .unwrap();
    // 12 objects on the shared scorecard, each linked by B, then removed by A.
    let mut relationships = Vec::new();
    let mut objects = Vec::new();
    for i in 0..12 {
        let object_id = ObjectId::new();
        p.service
            .execute(
                &by(p.a, p.admin_a),
                CreateObject {
                    site_id: p.a,
                    object_id,
                    kind: ObjectKind::PerformanceMeasure,
                    name: Name::parse(&format!("Measure {i}")).unwrap(),
                    container: None,
                },
            )
            .await
            .unwrap();
        p.service
            .execute(
                &by(p.a, p.admin_a),
                PlaceObjectOnScorecard {
                    site_id: p.a,
                    object_id,
                    scorecard_id: p.scorecard,
                },
            )
            .await
            .unwrap();
        let relationship_id = RelationshipId::new();
        p.service
            .execute(
                &by(p.b, p.admin_b),
                LinkSharedObject {
                    site_id: p.b,
                    relationship_id,
                    scorecard_id: p.b_scorecard,
                    origin_site: p.a,
                    object_id,
                },
            )
            .await
            .unwrap();
        relationships.push(relationship_id);
        objects.push(object_id);
    }
    for object_id in &objects {
        p.service
            .execute(
                &by(p.a, p.admin_a),
                RemoveObjectFromScorecard {
                    site_id: p.a,
                    object_id: *object_id,
                    scorecard_id: p.scorecard,
                },
            )
            .await
            .unwrap();
    }
    let head = db.store().head_position().await.unwrap();

    // A worker that stopped halfway (after its checkpoint), then one started
    // and stopped abruptly, over and over, at random points
    // (the delays choose the crash points; correctness does not depend on
    // them), until it has caught up.
    let mut rng = rand::rngs::StdRng::seed_from_u64(7);
    let worker = ConsequenceWorker::new(p.service.clone());
    worker
        .run(Some(head - objects.len() as u64 / 2))
        .await
        .unwrap();
    let mut stops = 0;
    while worker.checkpoint().await.unwrap() < head && stops < 200 {
        let running = {
            let worker = worker.clone();
            tokio::spawn(async move { worker.run(Some(head)).await })
        };
        tokio::time::sleep(std::time::Duration::from_micros(rng.gen_range(0..4_000))).await;
        running.abort();
        let _ = running.await;
        stops += 1;
    }
    worker.run(Some(head)).await.unwrap();

    // Each consequence is decided on the state when it runs: the first
    // trigger's run may already remove the relationships of later removals.
    // What matters is that each relationship is removed exactly once.
    let mut removed: Vec<RelationshipId> = partner_content_events(&db, &p)
        .await
        .into_iter()
        .filter_map(|(e, _)| match e {
            ContentEvent::RelationshipRemoved {
                relationship_id,
                reason: RemovalReason::ObjectNoLongerShared,
            } => Some(relationship_id),
            _ => None,
        })
        .collect();
    removed.sort();
    relationships.sort();
    assert_eq!(
        removed, relationships,
        "each relationship removed exactly once"
    );
}
