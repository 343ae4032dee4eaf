//! Snapshots of the access index on real PostgreSQL (issue 19): a process
//! starting from a stored snapshot reads only the log after it and answers
//! as a full replay does; a snapshot the integrity chain does not vouch for
//! is not used; a position not sealed yet is not written.

#[path = "../../commands/tests/common/mod.rs"]
mod common;

use common::{by, operator};
use shareledger_commands::Service;
use shareledger_core::catalog::{Name, Role, SeatLimit, SiteCode, SiteId, UserId, Username};
use shareledger_core::site::{AddUser, RegisterSite};
use shareledger_events::store::{Sealer, SealerOptions};
use shareledger_projections::access::{snapshot, LiveAccess, LiveOptions, LookupQuery};
use shareledger_tests::TestDb;

/// Registers a site with `users` users; returns them.
async fn site(service: &Service, code: &str, users: usize) -> (SiteId, Vec<UserId>) {
    let site = SiteId::new();
    service
        .execute(
            &operator(),
            RegisterSite {
                site_id: site,
                code: SiteCode::parse(code).unwrap(),
                name: Name::parse(code).unwrap(),
                seat_limit: SeatLimit::new(100).unwrap(),
                parent: None,
            },
        )
        .await
        .unwrap();
    let admin = UserId::new();
    let mut all = vec![admin];
    service
        .execute(
            &operator(),
            AddUser {
                site_id: site,
                user_id: admin,
                username: Username::parse(&format!("admin@{code}.test")).unwrap(),
                name: Name::parse("Admin").unwrap(),
                role: Role::Administration,
                email: None,
            },
        )
        .await
        .unwrap();
    for n in 1..users {
        let user = UserId::new();
        service
            .execute(
                &by(site, admin),
                AddUser {
                    site_id: site,
                    user_id: user,
                    username: Username::parse(&format!("u{n}@{code}.test")).unwrap(),
                    name: Name::parse("User").unwrap(),
                    role: Role::Presenter,
                    email: None,
                },
            )
            .await
            .unwrap();
        all.push(user);
    }
    (site, all)
}

async fn seal(db: &TestDb) {
    let sealer = Sealer::new(db.store(), SealerOptions::default());
    while sealer.seal_pending(1_000).await.unwrap() > 0 {}
}

#[tokio::test]
async fn a_process_started_from_a_snapshot_reads_only_the_log_after_it_and_answers_as_a_replay() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let (_, first) = site(&service, "FIRST", 5).await;
    seal(&db).await;
    let (live, task) = LiveAccess::start(db.store(), LiveOptions::default())
        .await
        .unwrap();
    let at = live.position();
    assert_eq!(
        snapshot::save(&db.store(), live.copy()).await.unwrap(),
        Some(at)
    );
    assert_eq!(snapshot::stored_position(&db.store()).await.unwrap(), at);
    // Saving the same position again writes nothing.
    assert_eq!(
        snapshot::save(&db.store(), live.copy()).await.unwrap(),
        None
    );
    live.stop();
    task.await.unwrap().unwrap();

    // The log goes on after the snapshot.
    let (_, second) = site(&service, "SECOND", 4).await;
    let head = db.store().head_position().await.unwrap();
    assert!(head > at);

    let (from_snapshot, t1) = LiveAccess::start_from_snapshot(db.store(), LiveOptions::default())
        .await
        .unwrap();
    let (replayed, t2) = LiveAccess::start(db.store(), LiveOptions::default())
        .await
        .unwrap();
    assert_eq!(from_snapshot.position(), head);
    assert_eq!(from_snapshot.read().sizes(), replayed.read().sizes());
    for user in first.iter().chain(&second) {
        let query = LookupQuery::default();
        assert_eq!(
            from_snapshot.read().lookup(*user, &query).unwrap(),
            replayed.read().lookup(*user, &query).unwrap()
        );
    }
    for live in [from_snapshot, replayed] {
        live.stop();
    }
    t1.await.unwrap().unwrap();
    t2.await.unwrap().unwrap();
}

#[tokio::test]
async fn a_snapshot_the_chain_does_not_vouch_for_is_not_used_and_an_unsealed_position_is_not_written(
) {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    site(&service, "ONLY", 3).await;
    let (live, task) = LiveAccess::start(db.store(), LiveOptions::default())
        .await
        .unwrap();
    // Nothing sealed yet: nothing written.
    assert_eq!(
        snapshot::save(&db.store(), live.copy()).await.unwrap(),
        None
    );
    seal(&db).await;
    let at = live.position();
    assert_eq!(
        snapshot::save(&db.store(), live.copy()).await.unwrap(),
        Some(at)
    );
    assert!(snapshot::load(&db.store()).await.unwrap().is_some());
    // Another chain hash at that position (a snapshot of another log, or of
    // a log restored differently): not used.
    sqlx::query("UPDATE sl_index_snapshots SET chain_hash = '\\x00'::bytea")
        .execute(db.pool())
        .await
        .unwrap();
    assert!(snapshot::load(&db.store()).await.unwrap().is_none());
    // Bytes that do not decode: not used either.
    seal(&db).await;
    sqlx::query(
        "UPDATE sl_index_snapshots SET chain_hash = \
         (SELECT chain_hash FROM sl_seals WHERE global_position = sl_index_snapshots.position), \
         data = '\\x01020304'::bytea",
    )
    .execute(db.pool())
    .await
    .unwrap();
    assert!(snapshot::load(&db.store()).await.unwrap().is_none());
    live.stop();
    task.await.unwrap().unwrap();
}
