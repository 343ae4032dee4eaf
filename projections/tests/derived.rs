//! The derived feeds (issue 17, parts 2 and 4), written by
//! `DerivedFeeds` to PostgreSQL: access changes naming the event that
//! caused them, and notifications addressed to the people who must know.
//! (That each event's access changes equal the diff of Q-3 before and
//! after it is the oracle proptest's, `access_oracle.rs`.)

#[path = "../../commands/tests/common/mod.rs"]
mod common;

use common::{by, operator};
use shareledger_core::catalog::{AccessLevel, Email, Name, Role, UserId, Username};
use shareledger_core::connection::{RevokeSharing, ShareScorecard};
use shareledger_core::site::{AddUser, ChangeUserDetails, DeactivateUser};
use shareledger_projections::access::{ChangeKind, Target};
use shareledger_projections::derived::rows::{self, FeedPoint};
use shareledger_projections::derived::DerivedFeeds;
use shareledger_tests::TestDb;

#[tokio::test]
async fn r_conn_revoke_given_four_partner_users_seeing_a_shared_scorecard_when_revoked_then_each_loses_it_naming_the_revoke(
) {
    let db = TestDb::new().await;
    let p = common::partners(&db).await;
    let store = p.service.store().clone();
    for n in 0..3 {
        p.service
            .execute(
                &operator(),
                AddUser {
                    site_id: p.b,
                    user_id: UserId::new(),
                    username: Username::parse(&format!("builder{n}@funded.org")).unwrap(),
                    name: Name::parse(&format!("Builder {n}")).unwrap(),
                    role: Role::ScorecardBuilder,
                    email: None,
                },
            )
            .await
            .unwrap();
    }
    let shared = p
        .service
        .execute(
            &by(p.a, p.admin_a),
            ShareScorecard {
                site_id: p.a,
                partner: p.b,
                scorecard_id: p.scorecard,
            },
        )
        .await
        .unwrap();
    let revoked = p
        .service
        .execute(
            &by(p.a, p.admin_a),
            RevokeSharing {
                site_id: p.a,
                from: p.a,
                to: p.b,
            },
        )
        .await
        .unwrap();
    let feeds = DerivedFeeds::new(store.clone());
    let head = store.head_position().await.unwrap();
    assert_eq!(feeds.run(Some(head)).await.unwrap(), head);

    let (all, checkpoint) = rows::access_changes(&store, FeedPoint::default(), None, None, 1_000)
        .await
        .unwrap();
    assert_eq!(checkpoint, head);
    let gained: Vec<_> = all
        .iter()
        .filter(|e| e.position == shared.last_position)
        .collect();
    let lost: Vec<_> = all
        .iter()
        .filter(|e| e.event_type == "LinkRevoked")
        .collect();
    // The admin and three builders of B (All Scorecards) see the scorecard
    // and the object on it; the Presenter sees nothing of A's.
    assert_eq!(gained.len(), 8, "{gained:#?}");
    assert!(gained
        .iter()
        .all(|e| e.kind == ChangeKind::Gained && e.change.after == Some(AccessLevel::Browser)));
    assert_eq!(lost.len(), 8, "{lost:#?}");
    assert!(lost.iter().all(|e| e.kind == ChangeKind::Lost
        && e.change.user_site == p.b
        && e.change.target_site == p.a
        && e.position <= revoked.last_position));
    let users: std::collections::BTreeSet<UserId> = lost.iter().map(|e| e.change.user).collect();
    assert_eq!(users.len(), 4);
    assert!(!users.contains(&p.viewer_b));
    assert_eq!(
        lost.iter()
            .filter(|e| e.change.target == Target::Scorecard(p.scorecard))
            .map(|e| e.change.target_name.as_str())
            .collect::<Vec<_>>(),
        vec!["Shared measures"; 4]
    );

    // Scoped to a site: B sees its users' changes, A its content's; a third
    // site sees none of them.
    let (of_b, _) = rows::access_changes(&store, FeedPoint::default(), Some(p.b), None, 1_000)
        .await
        .unwrap();
    assert!(of_b
        .iter()
        .all(|e| e.change.user_site == p.b || e.change.target_site == p.b));
    let (of_other, _) = rows::access_changes(
        &store,
        FeedPoint::default(),
        Some(shareledger_core::catalog::SiteId::new()),
        None,
        1_000,
    )
    .await
    .unwrap();
    assert!(of_other.is_empty());

    // Paged by (position, seq): the pages are the whole feed, in order.
    let mut paged = Vec::new();
    let mut from = FeedPoint::default();
    loop {
        let (page, _) = rows::access_changes(&store, from, None, None, 3)
            .await
            .unwrap();
        let Some(last) = page.last() else { break };
        from = FeedPoint {
            position: last.position,
            seq: Some(last.seq),
        };
        paged.extend(page);
    }
    assert_eq!(paged, all);
}

#[tokio::test]
async fn notifications_given_a_connection_lifecycle_then_each_step_is_addressed_to_who_must_know() {
    let db = TestDb::new().await;
    let p = common::partners(&db).await;
    let store = p.service.store().clone();
    p.service
        .execute(
            &operator(),
            ChangeUserDetails {
                site_id: p.b,
                user_id: p.admin_b,
                name: Name::parse("Admin of B").unwrap(),
                email: Some(Email::parse("admin@funded.org").unwrap()),
            },
        )
        .await
        .unwrap();
    for command in [ShareScorecard {
        site_id: p.a,
        partner: p.b,
        scorecard_id: p.scorecard,
    }] {
        p.service
            .execute(&by(p.a, p.admin_a), command)
            .await
            .unwrap();
    }
    p.service
        .execute(
            &by(p.b, p.admin_b),
            DeactivateUser {
                site_id: p.b,
                user_id: p.viewer_b,
            },
        )
        .await
        .unwrap();
    p.service
        .execute(
            &by(p.b, p.admin_b),
            RevokeSharing {
                site_id: p.b,
                from: p.a,
                to: p.b,
            },
        )
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    // Written in two runs, as after a restart: nothing is made twice.
    let half = head / 2;
    DerivedFeeds::new(store.clone())
        .run(Some(half))
        .await
        .unwrap();
    DerivedFeeds::new(store.clone())
        .run(Some(head))
        .await
        .unwrap();
    let (notes, _) = rows::notifications(&store, FeedPoint::default(), 100)
        .await
        .unwrap();
    let summary: Vec<(String, Vec<String>)> = notes
        .iter()
        .map(|n| {
            let to = n.body["recipients"]
                .as_array()
                .unwrap()
                .iter()
                .map(|r| r["username"].as_str().unwrap().to_owned())
                .collect();
            (n.kind.clone(), to)
        })
        .collect();
    let b_admin = vec!["admin@funded.org".to_owned()];
    let a_admin = vec!["admin@grants.org".to_owned()];
    assert_eq!(
        summary,
        vec![
            ("connection_requested".into(), b_admin.clone()),
            ("connection_approved".into(), a_admin.clone()),
            ("scorecard_shared".into(), b_admin.clone()),
            ("user_deactivated".into(), vec!["viewer@funded.org".into()]),
            ("link_revoked".into(), a_admin),
        ],
        "{notes:#?}"
    );
    let shared = &notes[2].body;
    assert_eq!(shared["scorecard"], "Shared measures");
    assert_eq!(shared["recipients"][0]["email"], "admin@funded.org");
    assert_eq!(shared["partner"]["code"], "GRANTS");
    assert_eq!(
        shared["text"],
        "GRANTS (GRANTS) shared the scorecard Shared measures with your site."
    );
    assert_eq!(shared["event_type"], "ScorecardShared");
}
