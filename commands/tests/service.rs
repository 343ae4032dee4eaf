//! The command service against real PostgreSQL: idempotency keys, rejected
//! commands leaving the log unchanged, and the invariants that must hold
//! under concurrent writers (unique site codes, unique usernames, seat
//! limits, mutual connection requests).

use shareledger_commands::{CommandError, Issued, Service};
use shareledger_core::catalog::{
    Directions, Name, Role, SeatLimit, SiteCode, SiteId, UserId, Username,
};
use shareledger_core::site::{AddUser, RegisterSite};
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

fn as_user(site: SiteId, user: UserId) -> Issued {
    Issued {
        actor: Actor::User {
            user_id: user.0,
            site_id: site.0,
        },
        key: Uuid::new_v4(),
    }
}

async fn register(service: &Service, code: &str, seats: u32) -> SiteId {
    let site_id = SiteId::new();
    service
        .execute(
            &operator(),
            RegisterSite {
                site_id,
                code: SiteCode::parse(code).unwrap(),
                name: Name::parse(code).unwrap(),
                seat_limit: SeatLimit::new(seats).unwrap(),
                parent: None,
            },
        )
        .await
        .unwrap();
    site_id
}

/// Adds a user called `name` to `site_id`.
fn add_user(site_id: SiteId, name: &str, role: Role) -> AddUser {
    AddUser {
        site_id,
        user_id: UserId::new(),
        username: Username::parse(&format!("{name}@example.org")).unwrap(),
        name: Name::parse(name).unwrap(),
        role,
        email: None,
    }
}

fn domain(result: Result<shareledger_commands::Outcome, CommandError>) -> DomainError {
    match result {
        Err(CommandError::Domain(e)) => e,
        other => panic!("expected a domain error, got {other:?}"),
    }
}

#[tokio::test]
async fn a_resent_idempotency_key_returns_the_first_result_and_writes_nothing() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let site = register(&service, "ACME", 5).await;
    let issued = operator();
    let command = add_user(site, "ann", Role::DataEntry);
    let first = service.execute(&issued, command.clone()).await.unwrap();
    assert!(!first.replayed);
    // The user, and nothing else.
    let types: Vec<&str> = first.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["UserAdded"]);
    let before = db.log_snapshot().await;
    // The same key again, even with a command that would now be refused.
    let again = service.execute(&issued, command).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.events, first.events);
    assert_eq!(again.last_position, first.last_position);
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn every_event_records_actor_and_correlation() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let site = register(&service, "ACME", 5).await;
    let issued = operator();
    let outcome = service
        .execute(&issued, add_user(site, "ann", Role::DataEntry))
        .await
        .unwrap();
    let stored = db
        .store()
        .read_events_by_id(&[outcome.events[0].event_id])
        .await
        .unwrap();
    let meta = stored[0].typed_metadata().unwrap();
    assert_eq!(meta.actor, issued.actor);
    assert_eq!(meta.correlation_id, issued.key);
}

#[tokio::test]
async fn a_refused_command_leaves_the_log_unchanged() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let site = register(&service, "ACME", 5).await;
    let presenter = add_user(site, "pat", Role::Presenter);
    let presenter_id = presenter.user_id;
    service.execute(&operator(), presenter).await.unwrap();
    let before = db.log_snapshot().await;
    let err = domain(
        service
            .execute(
                &as_user(site, presenter_id),
                add_user(site, "eve", Role::Administration),
            )
            .await,
    );
    assert_eq!(
        err,
        DomainError::NotPermitted {
            needed: shareledger_core::catalog::PermissionFlag::ManageUsers
        }
    );
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn site_codes_stay_unique_when_registrations_race() {
    let db = TestDb::with_pool_size(20).await;
    let service = Service::new(db.store());
    let tasks: Vec<_> = (0..10)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                service
                    .execute(
                        &operator(),
                        RegisterSite {
                            site_id: SiteId::new(),
                            code: SiteCode::parse("same").unwrap(),
                            name: Name::parse("Same").unwrap(),
                            seat_limit: SeatLimit::new(3).unwrap(),
                            parent: None,
                        },
                    )
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(CommandError::Domain(DomainError::SiteCodeTaken(code))) => {
                assert_eq!(code.as_str(), "SAME")
            }
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r_user_7_two_adds_racing_for_the_last_seat_exactly_one_wins() {
    let db = TestDb::with_pool_size(20).await;
    let service = Service::new(db.store());
    for round in 0..5 {
        let site = register(&service, &format!("SEAT{round}"), 2).await;
        service
            .execute(&operator(), add_user(site, "first", Role::Presenter))
            .await
            .unwrap();
        let tasks: Vec<_> = (0..6)
            .map(|i| {
                let service = service.clone();
                tokio::spawn(async move {
                    service
                        .execute(
                            &operator(),
                            add_user(site, &format!("racer{i}"), Role::Presenter),
                        )
                        .await
                })
            })
            .collect();
        let mut won = 0;
        for task in tasks {
            match task.await.unwrap() {
                Ok(_) => won += 1,
                Err(CommandError::Domain(DomainError::SeatLimitReached { limit: 2 })) => {}
                Err(other) => panic!("unexpected: {other}"),
            }
        }
        assert_eq!(won, 1, "round {round}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn usernames_stay_unique_per_site_when_adds_race() {
    let db = TestDb::with_pool_size(20).await;
    let service = Service::new(db.store());
    let site = register(&service, "ACME", 50).await;
    let tasks: Vec<_> = (0..8)
        .map(|_| {
            let service = service.clone();
            tokio::spawn(async move {
                service
                    .execute(&operator(), add_user(site, "same", Role::Presenter))
                    .await
            })
        })
        .collect();
    let mut won = 0;
    for task in tasks {
        match task.await.unwrap() {
            Ok(_) => won += 1,
            Err(CommandError::Domain(DomainError::UsernameTaken(_))) => {}
            Err(other) => panic!("unexpected: {other}"),
        }
    }
    assert_eq!(won, 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r_conn_5_mutual_requests_at_the_same_moment_link_at_once() {
    let db = TestDb::with_pool_size(20).await;
    let service = Service::new(db.store());
    for round in 0..5 {
        let a = register(&service, &format!("A{round}"), 5).await;
        let b = register(&service, &format!("B{round}"), 5).await;
        let admin_a = add_user(a, "admin-a", Role::Administration);
        let admin_b = add_user(b, "admin-b", Role::Administration);
        let (ua, ub) = (admin_a.user_id, admin_b.user_id);
        service.execute(&operator(), admin_a).await.unwrap();
        service.execute(&operator(), admin_b).await.unwrap();
        let code_a = SiteCode::parse(&format!("A{round}")).unwrap();
        let code_b = SiteCode::parse(&format!("B{round}")).unwrap();
        let (s1, s2) = (service.clone(), service.clone());
        let from_a = tokio::spawn(async move {
            s1.execute(
                &as_user(a, ua),
                shareledger_core::connection::RequestConnection {
                    site_id: a,
                    partner_code: code_b,
                    directions: Directions::Both,
                },
            )
            .await
        });
        let from_b = tokio::spawn(async move {
            s2.execute(
                &as_user(b, ub),
                shareledger_core::connection::RequestConnection {
                    site_id: b,
                    partner_code: code_a,
                    directions: Directions::Both,
                },
            )
            .await
        });
        from_a.await.unwrap().unwrap();
        from_b.await.unwrap().unwrap();
        // Whichever came second found the first pending and linked at once:
        // nothing awaits approval, both directions are active.
        let approve = service
            .execute(
                &as_user(b, ub),
                shareledger_core::connection::ApproveConnection {
                    site_id: b,
                    partner: a,
                },
            )
            .await;
        assert!(matches!(
            approve,
            Err(CommandError::Domain(DomainError::NothingToApprove))
        ));
        let approve = service
            .execute(
                &as_user(a, ua),
                shareledger_core::connection::ApproveConnection {
                    site_id: a,
                    partner: b,
                },
            )
            .await;
        assert!(matches!(
            approve,
            Err(CommandError::Domain(DomainError::NothingToApprove))
        ));
        // Revoking each direction works only on an active link.
        service
            .execute(
                &as_user(a, ua),
                shareledger_core::connection::RevokeSharing {
                    site_id: a,
                    from: a,
                    to: b,
                },
            )
            .await
            .unwrap();
        service
            .execute(
                &as_user(a, ua),
                shareledger_core::connection::RevokeSharing {
                    site_id: a,
                    from: b,
                    to: a,
                },
            )
            .await
            .unwrap();
    }
}

#[tokio::test]
async fn a_stale_cache_in_another_process_never_decides_wrongly() {
    // Two services over one database stand for two processes, each with its
    // own cache of the streams it has read.
    let db = TestDb::new().await;
    let here = Service::new(db.store());
    let there = Service::new(db.store());
    let site = register(&here, "ACME", 5).await;
    let admin = add_user(site, "admin", Role::Administration);
    let admin_id = admin.user_id;
    here.execute(&operator(), admin).await.unwrap();
    let worker = add_user(site, "worker", Role::Presenter);
    let worker_id = worker.user_id;
    // `here` caches the site with the admin active.
    here.execute(&as_user(site, admin_id), worker)
        .await
        .unwrap();
    // `there` deactivates the admin.
    there
        .execute(
            &operator(),
            shareledger_core::site::DeactivateUser {
                site_id: site,
                user_id: admin_id,
            },
        )
        .await
        .unwrap();
    // `here` must not accept the admin's command on its stale cache.
    let before = db.log_snapshot().await;
    let err = domain(
        here.execute(
            &as_user(site, admin_id),
            add_user(site, "eve", Role::Presenter),
        )
        .await,
    );
    assert_eq!(err, DomainError::ActorInactive);
    assert_eq!(db.log_snapshot().await, before);
    // `there` reactivates the admin: `here`, whose cache may say inactive,
    // must not refuse.
    there
        .execute(
            &operator(),
            shareledger_core::site::ReactivateUser {
                site_id: site,
                user_id: admin_id,
            },
        )
        .await
        .unwrap();
    here.execute(
        &as_user(site, admin_id),
        shareledger_core::site::DeactivateUser {
            site_id: site,
            user_id: worker_id,
        },
    )
    .await
    .unwrap();
}

#[tokio::test]
async fn a_resent_key_whose_decision_is_the_same_gets_the_original_events_back() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let site = register(&service, "ACME", 5).await;
    let issued = operator();
    let command = shareledger_core::site::SetSeatLimit {
        site_id: site,
        seat_limit: SeatLimit::new(9).unwrap(),
    };
    let first = service.execute(&issued, command.clone()).await.unwrap();
    assert!(!first.replayed);
    let before = db.log_snapshot().await;
    // Decided again, it is allowed and writes the same event (same derived
    // id): the log answers with the stored one and writes nothing.
    let again = service.execute(&issued, command).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.events, first.events);
    assert_eq!(db.log_snapshot().await, before);
}

/// A stream one writer keeps busy does not starve the others: sixteen
/// tasks add users to one site as fast as they can, each command deciding
/// on the site's stream with its exact revision. A command that met
/// contention twice takes the stream's turn, the others wait for it:
/// every command is accepted, none gives up as `contended`.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn a_busy_stream_starves_no_writer() {
    let db = TestDb::with_pool_size(24).await;
    let service = Service::new(db.store());
    let site = register(&service, "BUSY", 10_000).await;
    let tasks: Vec<_> = (0..16)
        .map(|task| {
            let service = service.clone();
            tokio::spawn(async move {
                for n in 0..12 {
                    service
                        .execute(
                            &operator(),
                            add_user(site, &format!("user-{task}-{n}"), Role::Presenter),
                        )
                        .await?;
                }
                Ok::<_, CommandError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await.unwrap().expect("every command is accepted");
    }
    let users = db
        .store()
        .read_stream(
            &shareledger_events::StreamName::parse(shareledger_core::catalog::site_stream(site))
                .unwrap(),
            shareledger_events::Direction::Forwards,
            shareledger_events::store::RevisionFrom::At(0),
            1_000,
        )
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "UserAdded")
        .count();
    assert_eq!(users, 16 * 12);
}
