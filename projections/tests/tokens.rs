//! Consistency tokens: a query made with the position a command returned
//! sees that command's effect (no new-enemy problem), a position the index
//! cannot reach in time is a clear error, and a stopped index says so.

#[path = "../../commands/tests/common/mod.rs"]
mod common;

use std::time::Duration;

use common::{by, partners, share_and_link};
use shareledger_core::catalog::{Action, Directions};
use shareledger_projections::access::{AccessError, LiveAccess, LiveOptions, Target};
use shareledger_tests::TestDb;

const WAIT: Duration = Duration::from_secs(30);

#[tokio::test]
async fn a_check_with_the_token_of_a_change_sees_the_change() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    share_and_link(&p).await;
    let (live, _task) = LiveAccess::start(db.store(), LiveOptions::default())
        .await
        .unwrap();
    let target = Target::Object(p.object);
    for round in 0..10 {
        // Unshare, then ask at once with the unshare's token: the partner's
        // admin must not see the object any more.
        let unshared = p
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
        let sees = live
            .fresh(Some(unshared.last_position), WAIT)
            .await
            .unwrap()
            .check(p.admin_b, target, Action::View)
            .unwrap();
        assert!(
            !sees,
            "round {round}: the unshare's token still sees the object"
        );
        let shared = p
            .service
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
        let sees = live
            .fresh(Some(shared.last_position), WAIT)
            .await
            .unwrap()
            .check(p.admin_b, target, Action::View)
            .unwrap();
        assert!(
            sees,
            "round {round}: the share's token does not see the object"
        );
    }
}

#[tokio::test]
async fn a_check_with_the_token_of_a_revoke_never_sees_the_revoked_access() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    share_and_link(&p).await;
    let (live, _task) = LiveAccess::start(db.store(), LiveOptions::default())
        .await
        .unwrap();
    assert!(live
        .read()
        .check(p.admin_b, Target::Object(p.object), Action::View)
        .unwrap());
    let revoked = p
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
    let levels = {
        let index = live.fresh(Some(revoked.last_position), WAIT).await.unwrap();
        (
            index.level(p.admin_b, Target::Object(p.object)).unwrap(),
            index
                .level(p.admin_b, Target::Scorecard(p.scorecard))
                .unwrap(),
        )
    };
    assert_eq!(levels, (None, None));
    // A new request starts from nothing shared (R-CONN-4).
    p.service
        .execute(
            &by(p.a, p.admin_a),
            shareledger_core::connection::RequestConnection {
                site_id: p.a,
                partner_code: common::code("FUNDED"),
                directions: Directions::Offer,
            },
        )
        .await
        .unwrap();
    let approved = p
        .service
        .execute(
            &by(p.b, p.admin_b),
            shareledger_core::connection::ApproveConnection {
                site_id: p.b,
                partner: p.a,
            },
        )
        .await
        .unwrap();
    let index = live
        .fresh(Some(approved.last_position), WAIT)
        .await
        .unwrap();
    assert!(!index
        .check(p.admin_b, Target::Object(p.object), Action::View)
        .unwrap());
}

#[tokio::test]
async fn a_position_not_reached_in_time_is_not_fresh_enough() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    let (live, _task) = LiveAccess::start(db.store(), LiveOptions::default())
        .await
        .unwrap();
    let head = db.store().head_position().await.unwrap();
    assert_eq!(live.position(), head);
    let error = live
        .fresh(Some(head + 1_000), Duration::from_millis(50))
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(error, AccessError::NotFreshEnough { wanted, reached, .. } if wanted == head + 1_000 && reached == head),
        "{error:?}"
    );
    assert_eq!(error.code(), "not_fresh_enough");
    // Positions already reached answer at once, with no token at all too.
    drop(live.fresh(Some(head), Duration::ZERO).await.unwrap());
    drop(live.fresh(None, Duration::ZERO).await.unwrap());
    drop(p);
}

#[tokio::test]
async fn a_stopped_index_answers_nothing_not_even_positions_it_had_reached() {
    let db = TestDb::new().await;
    let p = partners(&db).await;
    let (live, task) = LiveAccess::start(db.store(), LiveOptions::default())
        .await
        .unwrap();
    let head = live.position();
    live.stop();
    task.await.unwrap().unwrap();
    let later = p
        .service
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
    let error = live
        .fresh(Some(later.last_position), WAIT)
        .await
        .map(|_| ())
        .unwrap_err();
    assert!(
        matches!(error, AccessError::Stale { reached, .. } if reached == head),
        "{error:?}"
    );
    // Fail closed: a stopped index may be behind the log, so it does not
    // answer even for positions it had reached.
    let error = live.fresh(Some(head), WAIT).await.map(|_| ()).unwrap_err();
    assert!(matches!(error, AccessError::Stale { .. }), "{error:?}");
    let error = live.fresh(None, WAIT).await.map(|_| ()).unwrap_err();
    assert_eq!(error.code(), "read_model_stale");
}
