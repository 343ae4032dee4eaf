//! Partner onboarding through the command service against real PostgreSQL
//! (R-ONB-1, R-ONB-2, R-ONB-3): a group's Instance Admin creates child sites
//! and turns on self-registration with a model user; a partner registers
//! itself and its first manager is a copy of the model user; the hierarchy
//! never gets a cycle, even under concurrent moves; site codes stay unique
//! under concurrent self-registrations.

mod common;

use common::{by, code, name, operator, username};

use std::time::Duration;

use shareledger_commands::{CommandError, Issued, Outcome, Service};
use shareledger_core::catalog::DomainEvent as _;
use shareledger_core::catalog::{
    site_code_stream, site_stream, AccessLevel, PermissionFlag, Role, ScorecardId, SeatLimit,
    SiteEvent, SiteId, UserId, UserOrigin,
};
use shareledger_core::content::CreateScorecard;
use shareledger_core::site::{
    AddUser, ConfigureSelfRegistration, GrantScorecardAccess, HideOrganizationSettings,
    RegisterSite, RequireTwoFactor, SelfRegisterPartner, SetParentSite, SetPermissionFlags,
    SiteState,
};
use shareledger_core::DomainError;
use shareledger_events::store::RevisionFrom;
use shareledger_events::{Direction, ExpectedRevision, StreamName};
use shareledger_tests::{fixtures, TestDb};

fn domain(result: Result<Outcome, CommandError>) -> DomainError {
    match result {
        Err(CommandError::Domain(e)) => e,
        other => panic!("expected a domain error, got {other:?}"),
    }
}

fn stream(name: &str) -> StreamName {
    StreamName::parse(name).unwrap()
}

/// A site's state as its stream holds it now.
async fn site_state(db: &TestDb, site: SiteId) -> Option<SiteState> {
    let recorded = db
        .store()
        .read_stream(
            &stream(&site_stream(site)),
            Direction::Forwards,
            RevisionFrom::At(0),
            1_000,
        )
        .await
        .unwrap_or_default();
    let events: Vec<SiteEvent> = recorded
        .iter()
        .map(|e| SiteEvent::decode(&e.event_type, e.schema_version, &e.data).unwrap())
        .collect();
    SiteState::from_events(events.iter())
}

async fn register(
    service: &Service,
    issued: &Issued,
    raw_code: &str,
    parent: Option<SiteId>,
) -> SiteId {
    let site_id = SiteId::new();
    service
        .execute(
            issued,
            RegisterSite {
                site_id,
                code: code(raw_code),
                name: name(raw_code),
                seat_limit: SeatLimit::new(10).unwrap(),
                parent,
            },
        )
        .await
        .unwrap();
    site_id
}

async fn add(service: &Service, issued: &Issued, site: SiteId, login: &str, role: Role) -> UserId {
    let user_id = UserId::new();
    service
        .execute(
            issued,
            AddUser {
                site_id: site,
                user_id,
                username: username(login),
                name: name(login),
                role,
                email: None,
            },
        )
        .await
        .unwrap();
    user_id
}

fn partner(
    group: SiteId,
    raw_code: &str,
    login: &str,
    child_of_group: bool,
) -> SelfRegisterPartner {
    SelfRegisterPartner {
        group_site: group,
        site_id: SiteId::new(),
        code: code(raw_code),
        name: name(&format!("{raw_code} Org")),
        seat_limit: SeatLimit::new(3).unwrap(),
        manager_id: UserId::new(),
        manager_username: username(login),
        manager_name: name("First Manager"),
        child_of_group,
        manager_email: None,
        via_link: None,
    }
}

/// A group with its Instance Admin, a child site the admin created by hand
/// as the model site, and on it a model user: Data Entry with Manage Users
/// and All Scorecards added and Add To-Do's removed, Editor on one
/// scorecard and Browser on another, organisation settings hidden.
struct Group {
    service: Service,
    group: SiteId,
    admin: UserId,
    model_site: SiteId,
    model_user: UserId,
}

async fn group(db: &TestDb) -> Group {
    let service = Service::new(db.store());
    let group = register(&service, &operator(), "GROUP", None).await;
    let admin = add(
        &service,
        &operator(),
        group,
        "admin@group.org",
        Role::Administration,
    )
    .await;
    // R-ONB-1: the group's Instance Admin creates a child site by hand.
    let model_site = register(&service, &by(group, admin), "TEMPLATE", Some(group)).await;
    // Its first user comes from an operator: a user of the group cannot act
    // on the child's own data (R-USER-9).
    let model_admin = add(
        &service,
        &operator(),
        model_site,
        "admin@template.org",
        Role::Administration,
    )
    .await;
    let as_model_admin = || by(model_site, model_admin);
    let (s1, s2) = (ScorecardId::new(), ScorecardId::new());
    for (scorecard_id, title) in [(s1, "Outcomes"), (s2, "Finance")] {
        service
            .execute(
                &as_model_admin(),
                CreateScorecard {
                    site_id: model_site,
                    scorecard_id,
                    name: name(title),
                },
            )
            .await
            .unwrap();
    }
    let model_user = add(
        &service,
        &as_model_admin(),
        model_site,
        "model@template.org",
        Role::DataEntry,
    )
    .await;
    service
        .execute(
            &as_model_admin(),
            SetPermissionFlags {
                site_id: model_site,
                user_id: model_user,
                enable: [PermissionFlag::ManageUsers, PermissionFlag::AllScorecards]
                    .into_iter()
                    .collect(),
                disable: [PermissionFlag::AddToDos].into_iter().collect(),
            },
        )
        .await
        .unwrap();
    for (scorecard_id, level) in [(s1, AccessLevel::Editor), (s2, AccessLevel::Browser)] {
        service
            .execute(
                &as_model_admin(),
                GrantScorecardAccess {
                    site_id: model_site,
                    user_id: model_user,
                    scorecard_id,
                    level,
                    owner_site: None,
                },
            )
            .await
            .unwrap();
    }
    service
        .execute(
            &as_model_admin(),
            HideOrganizationSettings {
                site_id: model_site,
                user_id: model_user,
                hidden: true,
            },
        )
        .await
        .unwrap();
    Group {
        service,
        group,
        admin,
        model_site,
        model_user,
    }
}

async fn turn_on_self_registration(g: &Group) {
    g.service
        .execute(
            &by(g.group, g.admin),
            ConfigureSelfRegistration {
                site_id: g.group,
                enabled: true,
                model_site: Some(g.model_site),
                model_user: Some(g.model_user),
            },
        )
        .await
        .unwrap();
}

#[tokio::test]
async fn r_onb_1_a_groups_instance_admin_creates_child_sites_by_hand() {
    let db = TestDb::new().await;
    let g = group(&db).await;
    let child = site_state(&db, g.model_site).await.unwrap();
    assert_eq!(child.parent, Some(g.group));
    assert_eq!(child.code, code("TEMPLATE"));
    // A user of the group without Instance Admin may not.
    let presenter = add(
        &g.service,
        &operator(),
        g.group,
        "presenter@group.org",
        Role::Presenter,
    )
    .await;
    let before = db.log_snapshot().await;
    let refused = g
        .service
        .execute(
            &by(g.group, presenter),
            RegisterSite {
                site_id: SiteId::new(),
                code: code("CHILD2"),
                name: name("Child 2"),
                seat_limit: SeatLimit::new(1).unwrap(),
                parent: Some(g.group),
            },
        )
        .await;
    assert_eq!(
        domain(refused),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin
        }
    );
    assert_eq!(db.log_snapshot().await, before);
    // An existing site can be moved under the group by its own admin, and
    // back to the top.
    let other = register(&g.service, &operator(), "OTHER", None).await;
    let other_admin = add(
        &g.service,
        &operator(),
        other,
        "admin@other.org",
        Role::Administration,
    )
    .await;
    g.service
        .execute(
            &by(other, other_admin),
            SetParentSite {
                site_id: other,
                parent: Some(g.group),
            },
        )
        .await
        .unwrap();
    assert_eq!(site_state(&db, other).await.unwrap().parent, Some(g.group));
    g.service
        .execute(
            &by(other, other_admin),
            SetParentSite {
                site_id: other,
                parent: None,
            },
        )
        .await
        .unwrap();
    assert_eq!(site_state(&db, other).await.unwrap().parent, None);
}

#[tokio::test]
async fn r_onb_2_a_self_registered_partner_is_a_child_of_the_group_with_a_copy_of_the_model_user() {
    let db = TestDb::new().await;
    let g = group(&db).await;
    turn_on_self_registration(&g).await;
    // R-ONB-3: a site-wide setting, recorded.
    g.service
        .execute(
            &by(g.group, g.admin),
            RequireTwoFactor {
                site_id: g.group,
                required: true,
            },
        )
        .await
        .unwrap();
    assert!(site_state(&db, g.group).await.unwrap().two_factor_required);

    let command = partner(g.group, "acme", "Boss@Acme.org", true);
    let outcome = g
        .service
        .execute(&operator(), command.clone())
        .await
        .unwrap();
    let types: Vec<&str> = outcome
        .events
        .iter()
        .map(|e| e.event_type.as_str())
        .collect();
    // The model site's two scorecards the model user has a level on are
    // shared with the new site over a link active at once.
    assert_eq!(
        types,
        vec![
            "SiteRegistered",
            "UserAdded",
            "SiteCodeClaimed",
            "ConnectionRequested",
            "LinksActivated",
            "ScorecardShared",
            "ScorecardShared",
        ]
    );
    assert_eq!(outcome.events[2].stream, site_code_stream(&code("ACME")));

    let site = site_state(&db, command.site_id).await.unwrap();
    assert_eq!(site.parent, Some(g.group));
    assert_eq!(site.code, code("ACME"));
    let model = site_state(&db, g.model_site).await.unwrap().users[&g.model_user].clone();
    let manager = &site.users[&command.manager_id];
    assert_eq!(manager.username, username("boss@acme.org"));
    assert_eq!(manager.role, model.role);
    assert_eq!(manager.permissions, model.permissions);
    assert!(manager.has(PermissionFlag::ManageUsers));
    assert!(!manager.has(PermissionFlag::AddToDos));
    // Each as a Browser (a partner's scorecard, R-SHARE-5).
    assert_eq!(
        manager.scorecard_access,
        model
            .scorecard_access
            .keys()
            .map(|s| (*s, AccessLevel::Browser))
            .collect()
    );
    assert_eq!(manager.scorecard_access.len(), 2);
    assert!(manager.hide_organization_settings);
    assert!(manager.active);
    // The origin names the model it was copied from.
    let stored = db
        .store()
        .read_events_by_id(&[outcome.events[1].event_id])
        .await
        .unwrap();
    match SiteEvent::decode(&stored[0].event_type, 1, &stored[0].data).unwrap() {
        SiteEvent::UserAdded { origin, .. } => assert_eq!(
            origin,
            UserOrigin::SelfRegistered {
                model_site: g.model_site,
                model_user: g.model_user
            }
        ),
        other => panic!("unexpected {other:?}"),
    }

    // The first manager manages its own site's users (a copied flag) ...
    add(
        &g.service,
        &by(command.site_id, command.manager_id),
        command.site_id,
        "staff@acme.org",
        Role::Presenter,
    )
    .await;
    // ... and nothing of the group's.
    assert_eq!(
        domain(
            g.service
                .execute(
                    &by(command.site_id, command.manager_id),
                    AddUser {
                        site_id: g.group,
                        user_id: UserId::new(),
                        username: username("intruder@acme.org"),
                        name: name("Intruder"),
                        role: Role::Presenter,
                        email: None,
                    }
                )
                .await
        ),
        DomainError::CrossSite {
            actor_site: command.site_id,
            target_site: g.group
        }
    );

    // A link that does not name the group makes a top-level site.
    let loose = partner(g.group, "LOOSE", "boss@loose.org", false);
    g.service.execute(&operator(), loose.clone()).await.unwrap();
    assert_eq!(site_state(&db, loose.site_id).await.unwrap().parent, None);

    // Re-sending a registration's key returns its first result.
    let issued = operator();
    let third = partner(g.group, "THIRD", "boss@third.org", true);
    let first = g.service.execute(&issued, third.clone()).await.unwrap();
    let before = db.log_snapshot().await;
    let again = g.service.execute(&issued, third).await.unwrap();
    assert!(again.replayed);
    assert_eq!(again.events, first.events);
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn r_onb_2_self_registration_without_a_model_user_is_refused() {
    let db = TestDb::new().await;
    let g = group(&db).await;
    let before = db.log_snapshot().await;
    // Never configured.
    assert_eq!(
        domain(
            g.service
                .execute(&operator(), partner(g.group, "ACME", "boss@acme.org", true))
                .await
        ),
        DomainError::SelfRegistrationNotConfigured
    );
    // Turning it on without a model user is refused.
    assert_eq!(
        domain(
            g.service
                .execute(
                    &by(g.group, g.admin),
                    ConfigureSelfRegistration {
                        site_id: g.group,
                        enabled: true,
                        model_site: Some(g.model_site),
                        model_user: None,
                    }
                )
                .await
        ),
        DomainError::SelfRegistrationNotConfigured
    );
    assert_eq!(db.log_snapshot().await, before);
    // Turned on, then off: refused again.
    turn_on_self_registration(&g).await;
    g.service
        .execute(
            &by(g.group, g.admin),
            ConfigureSelfRegistration {
                site_id: g.group,
                enabled: false,
                model_site: None,
                model_user: None,
            },
        )
        .await
        .unwrap();
    let before = db.log_snapshot().await;
    assert_eq!(
        domain(
            g.service
                .execute(&operator(), partner(g.group, "ACME", "boss@acme.org", true))
                .await
        ),
        DomainError::SelfRegistrationNotConfigured
    );
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r_onb_2_concurrent_self_registrations_with_one_code_exactly_one_wins() {
    let db = TestDb::with_pool_size(20).await;
    let g = group(&db).await;
    turn_on_self_registration(&g).await;
    for round in 0..3 {
        let raw = format!("SAME{round}");
        let commands: Vec<SelfRegisterPartner> = (0..8)
            .map(|i| {
                // The same code in either case.
                let raw = if i % 2 == 0 {
                    raw.clone()
                } else {
                    raw.to_lowercase()
                };
                partner(g.group, &raw, &format!("boss{i}@same.org"), true)
            })
            .collect();
        let tasks: Vec<_> = commands
            .iter()
            .cloned()
            .map(|command| {
                let service = g.service.clone();
                tokio::spawn(async move { service.execute(&operator(), command).await })
            })
            .collect();
        let mut won = Vec::new();
        for (task, command) in tasks.into_iter().zip(&commands) {
            match task.await.unwrap() {
                Ok(_) => won.push(command.site_id),
                Err(CommandError::Domain(DomainError::SiteCodeTaken(taken))) => {
                    assert_eq!(taken, code(&raw))
                }
                Err(other) => panic!("unexpected: {other}"),
            }
        }
        assert_eq!(won.len(), 1, "round {round}");
        // Only the winner's site exists, and the code names it.
        for command in &commands {
            assert_eq!(
                site_state(&db, command.site_id).await.is_some(),
                command.site_id == won[0]
            );
        }
        let claims = db
            .store()
            .read_stream(
                &stream(&site_code_stream(&code(&raw))),
                Direction::Forwards,
                RevisionFrom::At(0),
                100,
            )
            .await
            .unwrap();
        assert_eq!(claims.len(), 1);
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn r_onb_1_concurrent_moves_cannot_form_a_parent_cycle() {
    let db = TestDb::with_pool_size(20).await;
    let service = Service::new(db.store());
    for round in 0..5 {
        let x = register(&service, &operator(), &format!("X{round}"), None).await;
        let y = register(&service, &operator(), &format!("Y{round}"), None).await;
        let (s1, s2) = (service.clone(), service.clone());
        let x_under_y = tokio::spawn(async move {
            s1.execute(
                &operator(),
                SetParentSite {
                    site_id: x,
                    parent: Some(y),
                },
            )
            .await
        });
        let y_under_x = tokio::spawn(async move {
            s2.execute(
                &operator(),
                SetParentSite {
                    site_id: y,
                    parent: Some(x),
                },
            )
            .await
        });
        let results = [x_under_y.await.unwrap(), y_under_x.await.unwrap()];
        let won = results.iter().filter(|r| r.is_ok()).count();
        assert_eq!(won, 1, "round {round}: {results:?}");
        for result in results {
            if let Err(e) = result {
                assert!(matches!(e, CommandError::Domain(DomainError::ParentCycle)));
            }
        }
        let parents = (
            site_state(&db, x).await.unwrap().parent,
            site_state(&db, y).await.unwrap().parent,
        );
        assert!(
            parents == (Some(y), None) || parents == (None, Some(x)),
            "{parents:?}"
        );
    }
}

#[tokio::test]
async fn r_onb_1_a_cycle_already_in_the_log_is_followed_once_not_forever() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let x = register(&service, &operator(), "XX", None).await;
    let y = register(&service, &operator(), "YY", None).await;
    let s = register(&service, &operator(), "SS", None).await;
    // Data written around the service: X under Y and Y under X.
    for (site, parent) in [(x, y), (y, x)] {
        let event = SiteEvent::ParentSiteSet {
            parent: Some(parent),
        };
        db.store()
            .append(
                &stream(&site_stream(site)),
                ExpectedRevision::Any,
                vec![fixtures::event(event.event_type(), event.data())],
            )
            .await
            .unwrap();
    }
    // Moving S under that loop terminates; S itself is not in it.
    let moved = tokio::time::timeout(
        Duration::from_secs(30),
        service.execute(
            &operator(),
            SetParentSite {
                site_id: s,
                parent: Some(x),
            },
        ),
    )
    .await
    .expect("set_parent_site must not loop");
    moved.unwrap();
    assert_eq!(site_state(&db, s).await.unwrap().parent, Some(x));
    // Moving X under S would close a loop through S: refused.
    let before = db.log_snapshot().await;
    let refused = tokio::time::timeout(
        Duration::from_secs(30),
        service.execute(
            &operator(),
            SetParentSite {
                site_id: x,
                parent: Some(s),
            },
        ),
    )
    .await
    .expect("set_parent_site must not loop");
    assert_eq!(domain(refused), DomainError::ParentCycle);
    assert_eq!(db.log_snapshot().await, before);
}

#[tokio::test]
async fn r_onb_1_a_hierarchy_deeper_than_the_bound_is_refused() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    // A chain of MAX_HIERARCHY_DEPTH + 2 sites: c[0] at the top.
    let mut chain: Vec<SiteId> = Vec::new();
    for i in 0..shareledger_core::site::MAX_HIERARCHY_DEPTH + 2 {
        let parent = chain.last().copied();
        chain.push(register(&service, &operator(), &format!("L{i}"), parent).await);
    }
    let s = register(&service, &operator(), "LEAF", None).await;
    let deepest = chain[chain.len() - 1];
    let before = db.log_snapshot().await;
    // Under the deepest: its parent has MAX_HIERARCHY_DEPTH + 1 ancestors.
    assert_eq!(
        domain(
            service
                .execute(
                    &operator(),
                    SetParentSite {
                        site_id: s,
                        parent: Some(deepest)
                    }
                )
                .await
        ),
        DomainError::ParentCycle
    );
    assert_eq!(db.log_snapshot().await, before);
    // One level up is within the bound.
    let within = chain[chain.len() - 2];
    service
        .execute(
            &operator(),
            SetParentSite {
                site_id: s,
                parent: Some(within),
            },
        )
        .await
        .unwrap();
    assert_eq!(site_state(&db, s).await.unwrap().parent, Some(within));
}
