//! Consistency boundaries narrower than a site (issue 15): an object's edit
//! depends on that object and the acting user only, so edits of different
//! objects of one site never collide; and what it does depend on is never
//! missed under concurrency: an edit racing the change that takes the
//! editor's level away (the object leaving the scorecard, the user being
//! deactivated) is decided after it, never on the state before it.

mod common;

use std::collections::BTreeMap;

use common::{by, operator, site};
use shareledger_commands::{CommandError, Service};
use shareledger_core::catalog::{
    content_stream, site_stream, AccessLevel, Name, ObjectField, ObjectId, ObjectKind, Role,
    ScorecardId, SiteId, UserId, Username,
};
use shareledger_core::content::{
    ChangeObjectField, CreateObject, CreateScorecard, PlaceObjectOnScorecard,
    RemoveObjectFromScorecard,
};
use shareledger_core::site::{AddUser, DeactivateUser, GrantScorecardAccess, ReactivateUser};
use shareledger_core::{Decision, DomainError};
use shareledger_events::store::RevisionFrom;
use shareledger_events::{Direction, StreamName};
use shareledger_tests::TestDb;

/// Runs a content command of `site` (the command names the site), issued
/// by `admin` of `site`.
async fn content<C: Decision>(service: &Service, site: SiteId, admin: UserId, command: C) {
    service
        .execute(&by(site, admin), command)
        .await
        .expect("the admin's content command");
}

/// A site with a scorecard and `objects` Indicators on it.
async fn site_with_objects(
    service: &Service,
    code: &str,
    objects: usize,
) -> (SiteId, UserId, ScorecardId, Vec<ObjectId>) {
    let (site_id, admin) = site(service, code).await;
    let scorecard = ScorecardId::new();
    content(
        service,
        site_id,
        admin,
        CreateScorecard {
            site_id,
            scorecard_id: scorecard,
            name: Name::parse("Outcomes").unwrap(),
        },
    )
    .await;
    let mut ids = Vec::new();
    for n in 0..objects {
        let object_id = ObjectId::new();
        content(
            service,
            site_id,
            admin,
            CreateObject {
                site_id,
                object_id,
                kind: ObjectKind::Indicator,
                name: Name::parse(&format!("Indicator {n}")).unwrap(),
                container: None,
            },
        )
        .await;
        content(
            service,
            site_id,
            admin,
            PlaceObjectOnScorecard {
                site_id,
                object_id,
                scorecard_id: scorecard,
            },
        )
        .await;
        ids.push(object_id);
    }
    (site_id, admin, scorecard, ids)
}

/// An edit of `object_id`'s analysis, on `site_id`'s content.
fn edit(site_id: SiteId, object_id: ObjectId, value: String) -> ChangeObjectField {
    ChangeObjectField {
        site_id,
        object_id,
        field: ObjectField::Analysis,
        value,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r_user_3_edits_of_different_objects_of_one_site_by_32_editors_never_collide() {
    let db = TestDb::with_pool_size(40).await;
    // Two services: two processes on one database, caches of their own.
    let services = [Service::new(db.store()), Service::new(db.store())];
    let (site_id, admin, _, objects) = site_with_objects(&services[0], "HOTSITE", 32).await;
    let tasks: Vec<_> = objects
        .iter()
        .enumerate()
        .map(|(i, object)| {
            let service = services[i % 2].clone();
            let object = *object;
            tokio::spawn(async move {
                for round in 0..5 {
                    service
                        .execute(
                            &by(site_id, admin),
                            edit(site_id, object, format!("{i}-{round}")),
                        )
                        .await?;
                }
                Ok::<_, CommandError>(())
            })
        })
        .collect();
    for task in tasks {
        task.await
            .unwrap()
            .expect("no edit collides with an edit of another object");
    }
    let stream = StreamName::parse(content_stream(site_id)).unwrap();
    let edits = db
        .store()
        .read_stream(&stream, Direction::Forwards, RevisionFrom::At(0), 10_000)
        .await
        .unwrap()
        .iter()
        .filter(|e| e.event_type == "ObjectFieldUpdated")
        .count();
    assert_eq!(edits, 32 * 5);
}

/// Whether the events of `stream` show an `ObjectFieldUpdated` by `user`
/// after the first event of `after_type` at or past position `from`.
async fn edits_after(
    db: &TestDb,
    streams: &[String],
    user: UserId,
    after_type: &str,
    from: u64,
) -> (Option<u64>, Vec<u64>) {
    let mut all = Vec::new();
    for stream in streams {
        let name = StreamName::parse(stream.as_str()).unwrap();
        all.extend(
            db.store()
                .read_stream(&name, Direction::Forwards, RevisionFrom::At(0), 100_000)
                .await
                .unwrap(),
        );
    }
    all.sort_by_key(|e| e.global_position);
    let cut = all
        .iter()
        .find(|e| e.global_position >= from && e.event_type == after_type)
        .map(|e| e.global_position);
    let edits = all
        .iter()
        .filter(|e| e.global_position >= from && e.event_type == "ObjectFieldUpdated")
        .filter(|e| {
            e.metadata["actor"]["user_id"]
                .as_str()
                .is_some_and(|u| u == user.0.to_string())
        })
        .map(|e| e.global_position)
        .collect();
    (cut, edits)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r_user_3_an_edit_racing_the_removal_that_takes_the_editors_level_away_is_refused_after_it()
{
    let db = TestDb::with_pool_size(40).await;
    let setup = Service::new(db.store());
    let (site_id, admin, scorecard, objects) = site_with_objects(&setup, "RACING", 1).await;
    let object = objects[0];
    // An Updater through the scorecard alone (a Presenter browses nothing
    // without it).
    let editor = UserId::new();
    setup
        .execute(
            &operator(),
            AddUser {
                site_id,
                user_id: editor,
                username: Username::parse("editor@racing.org").unwrap(),
                name: Name::parse("Editor").unwrap(),
                role: Role::Presenter,
                email: None,
            },
        )
        .await
        .unwrap();
    setup
        .execute(
            &by(site_id, admin),
            GrantScorecardAccess {
                site_id,
                user_id: editor,
                scorecard_id: scorecard,
                level: AccessLevel::Updater,
                owner_site: None,
            },
        )
        .await
        .unwrap();
    let streams = [content_stream(site_id)];
    for round in 0..10 {
        let from = db.store().head_position().await.unwrap() + 1;
        // Editors on two processes, the admin on a third.
        let editors = [Service::new(db.store()), Service::new(db.store())];
        let remover = Service::new(db.store());
        let mut tasks = Vec::new();
        for i in 0..8 {
            let service = editors[i % 2].clone();
            tasks.push(tokio::spawn(async move {
                service
                    .execute(
                        &by(site_id, editor),
                        edit(site_id, object, format!("{round}-{i}")),
                    )
                    .await
                    .map(|_| ())
            }));
        }
        let removal = tokio::spawn(async move {
            remover
                .execute(
                    &by(site_id, admin),
                    RemoveObjectFromScorecard {
                        site_id,
                        object_id: object,
                        scorecard_id: scorecard,
                    },
                )
                .await
        });
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) | Err(CommandError::Domain(DomainError::AccessLevelTooLow { .. })) => {}
                Err(other) => panic!("round {round}: {other}"),
            }
        }
        removal.await.unwrap().expect("the removal");
        let (cut, edits) =
            edits_after(&db, &streams, editor, "ObjectRemovedFromScorecard", from).await;
        let cut = cut.expect("the removal is in the log");
        assert!(
            edits.iter().all(|p| *p < cut),
            "round {round}: an edit at {edits:?} was written after the removal at {cut}"
        );
        // Back on the scorecard for the next round.
        setup
            .execute(
                &by(site_id, admin),
                PlaceObjectOnScorecard {
                    site_id,
                    object_id: object,
                    scorecard_id: scorecard,
                },
            )
            .await
            .unwrap();
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r_user_6_an_edit_racing_the_editors_deactivation_is_refused_after_it() {
    let db = TestDb::with_pool_size(40).await;
    let setup = Service::new(db.store());
    let (site_id, admin, _, objects) = site_with_objects(&setup, "DEACT", 4).await;
    let streams = [content_stream(site_id), site_stream(site_id)];
    let mut seen = BTreeMap::new();
    for round in 0..10 {
        let from = db.store().head_position().await.unwrap() + 1;
        let editors = [Service::new(db.store()), Service::new(db.store())];
        let deactivator = Service::new(db.store());
        let mut tasks = Vec::new();
        for (i, object) in objects.iter().copied().enumerate() {
            for n in 0..2 {
                let service = editors[(i + n) % 2].clone();
                tasks.push(tokio::spawn(async move {
                    // The admin edits, as an Instance Admin: deactivated, they
                    // may not.
                    service
                        .execute(
                            &by(site_id, admin),
                            edit(site_id, object, format!("{round}-{i}-{n}")),
                        )
                        .await
                        .map(|_| ())
                }));
            }
        }
        let deactivation = tokio::spawn(async move {
            deactivator
                .execute(
                    &operator(),
                    DeactivateUser {
                        site_id,
                        user_id: admin,
                    },
                )
                .await
        });
        for task in tasks {
            match task.await.unwrap() {
                Ok(()) => *seen.entry("written").or_insert(0) += 1,
                Err(CommandError::Domain(DomainError::ActorInactive)) => {
                    *seen.entry("refused").or_insert(0) += 1
                }
                Err(other) => panic!("round {round}: {other}"),
            }
        }
        deactivation.await.unwrap().expect("the deactivation");
        let (cut, edits) = edits_after(&db, &streams, admin, "UserDeactivated", from).await;
        let cut = cut.expect("the deactivation is in the log");
        assert!(
            edits.iter().all(|p| *p < cut),
            "round {round}: an edit at {edits:?} was written after the deactivation at {cut}"
        );
        setup
            .execute(
                &operator(),
                ReactivateUser {
                    site_id,
                    user_id: admin,
                },
            )
            .await
            .unwrap();
    }
    assert!(
        seen.contains_key("refused"),
        "no edit raced the deactivation: {seen:?}"
    );
}

#[tokio::test]
async fn a_stale_cache_of_another_object_is_harmless_and_a_stale_cache_of_this_one_is_caught() {
    let db = TestDb::new().await;
    let (a, b) = (Service::new(db.store()), Service::new(db.store()));
    let (site_id, admin, scorecard, objects) = site_with_objects(&a, "STALE", 2).await;
    // A Presenter who is an Updater through the scorecard alone.
    let presenter = UserId::new();
    a.execute(
        &operator(),
        AddUser {
            site_id,
            user_id: presenter,
            username: Username::parse("presenter@stale.org").unwrap(),
            name: Name::parse("Presenter").unwrap(),
            role: Role::Presenter,
            email: None,
        },
    )
    .await
    .unwrap();
    a.execute(
        &by(site_id, admin),
        GrantScorecardAccess {
            site_id,
            user_id: presenter,
            scorecard_id: scorecard,
            level: AccessLevel::Updater,
            owner_site: None,
        },
    )
    .await
    .unwrap();
    // Both processes have the site and its content cached.
    for service in [&a, &b] {
        service
            .execute(
                &by(site_id, presenter),
                edit(site_id, objects[1], "warm".into()),
            )
            .await
            .unwrap();
    }
    // Process A removes object 1 from the scorecard; B's cache does not know.
    a.execute(
        &by(site_id, admin),
        RemoveObjectFromScorecard {
            site_id,
            object_id: objects[1],
            scorecard_id: scorecard,
        },
    )
    .await
    .unwrap();
    // B edits object 0 on its stale cache: outside the change, written.
    b.execute(
        &by(site_id, presenter),
        edit(site_id, objects[0], "b".into()),
    )
    .await
    .unwrap();
    // B edits object 1: its cache says it shows on the scorecard (an
    // Updater may), the log says it left. The boundary catches it; decided
    // again on fresh reads, it is refused.
    let before = db.log_snapshot().await;
    let refused = b
        .execute(
            &by(site_id, presenter),
            edit(site_id, objects[1], "stale".into()),
        )
        .await;
    assert!(
        matches!(
            refused,
            Err(CommandError::Domain(DomainError::AccessLevelTooLow { .. }))
        ),
        "{refused:?}"
    );
    assert_eq!(db.log_snapshot().await, before, "the refusal wrote nothing");
}

/// Edits never conflict with one another (bounded), so a steady stream of
/// them must not starve a command that needs the whole content stream
/// unchanged (placing and removing objects): once that command has met
/// contention twice it takes the stream's turn, and bounded edits yield to
/// it too. Every placement change is accepted, none gives up as
/// `contended`, while 16 editors keep the stream busy.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn edits_of_a_busy_site_starve_no_placement_change() {
    let db = TestDb::with_pool_size(40).await;
    let service = Service::new(db.store());
    let (site_id, admin, scorecard, objects) = site_with_objects(&service, "BUSYEDITS", 17).await;
    let stop = std::sync::Arc::new(std::sync::atomic::AtomicBool::new(false));
    let editors: Vec<_> = objects[1..]
        .iter()
        .enumerate()
        .map(|(n, object)| {
            let (service, stop, object) = (service.clone(), stop.clone(), *object);
            tokio::spawn(async move {
                let mut i = 0;
                while !stop.load(std::sync::atomic::Ordering::SeqCst) {
                    i += 1;
                    match service
                        .execute(
                            &by(site_id, admin),
                            edit(site_id, object, format!("{n}-{i}")),
                        )
                        .await
                    {
                        Ok(_) | Err(CommandError::Contended { .. }) => {}
                        Err(other) => panic!("an edit failed: {other}"),
                    }
                }
                i
            })
        })
        .collect();
    // Meanwhile: the first object taken off its scorecard and put back,
    // ten times, each command on its own.
    let moved = objects[0];
    for _ in 0..10 {
        service
            .execute(
                &by(site_id, admin),
                RemoveObjectFromScorecard {
                    site_id,
                    object_id: moved,
                    scorecard_id: scorecard,
                },
            )
            .await
            .expect("the removal is accepted, not starved");
        service
            .execute(
                &by(site_id, admin),
                PlaceObjectOnScorecard {
                    site_id,
                    object_id: moved,
                    scorecard_id: scorecard,
                },
            )
            .await
            .expect("the placement is accepted, not starved");
    }
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    let mut edits = 0;
    for editor in editors {
        edits += editor.await.unwrap();
    }
    // The editors did keep the stream busy meanwhile.
    assert!(edits > 40, "only {edits} edits ran alongside");
}
