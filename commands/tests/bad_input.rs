//! Every public command method of the service refuses bad input with its
//! exact typed domain error, and a refused command leaves the log exactly as
//! it was (`TestDb::log_snapshot` before == after). One test per refusal,
//! named `<method>_rejects_<what>_and_leaves_the_log_unchanged`.
//!
//! Malformed values (a site code `x`, a username with a space) are refused
//! before any command can be built: see
//! `malformed_values_are_refused_before_a_command_can_be_built`.

mod common;

use common::{by, code, name, operator, username};

use std::collections::BTreeSet;
use std::future::Future;

use shareledger_commands::{CommandError, Issued, Outcome, Service};
use shareledger_core::catalog::{
    AccessLevel, Directions, InvalidValue, Link, Name, ObjectField, ObjectId, ObjectKind,
    PermissionFlag, RelationshipId, Role, ScorecardId, SeatLimit, SiteCode, SiteId, UserId,
    Username,
};
use shareledger_core::content::{
    ChangeObjectField, CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
    RemoveObjectFromScorecard, UnlinkSharedObject, UseSharedMeasureInAggregation,
};
use shareledger_core::csv_import::imported_user_id;
use shareledger_core::site::{
    AddExistingUser, AddUser, ChangeUserRole, ConfigureSelfRegistration, DeactivateUser,
    GrantScorecardAccess, HideOrganizationSettings, ImportUsers, ReactivateUser, RegisterSite,
    RequireTwoFactor, RevokeScorecardAccess, SelfRegisterPartner, SetParentSite,
    SetPermissionFlags, SetSeatLimit,
};
use shareledger_core::{Decision, DomainError, RowError};
use shareledger_events::store::LogError;
use shareledger_events::{Actor, InvalidInput};
use shareledger_tests::TestDb;
use uuid::Uuid;

fn flags(list: &[PermissionFlag]) -> BTreeSet<PermissionFlag> {
    list.iter().copied().collect()
}

/// Runs `attempt` and asserts it is refused with exactly `expected`, and
/// that the log did not change.
async fn refused(
    db: &TestDb,
    attempt: impl Future<Output = Result<Outcome, CommandError>>,
    expected: DomainError,
) {
    let before = db.log_snapshot().await;
    match attempt.await {
        Err(CommandError::Domain(e)) => assert_eq!(e, expected),
        other => panic!("expected {expected:?}, got {other:?}"),
    }
    assert_eq!(db.log_snapshot().await, before, "a refused command wrote");
}

/// Two sites with an active link A→B over which one scorecard of A is shared.
///
/// * A (`GRANTS`): an admin; a user manager (Presenter + Manage Users); a
///   presenter; a deactivated presenter; a deactivated admin. Scorecards
///   `sc_a` (shared with B, with Indicator `obj_a` on it) and `sc_a2` (not
///   shared, with Indicator `hidden_a` on it).
/// * B (`FUNDED`): an admin; a scorecard `sc_b` and a Result `result_b`.
struct World {
    db: TestDb,
    service: Service,
    a: SiteId,
    b: SiteId,
    admin_a: UserId,
    manager_a: UserId,
    presenter_a: UserId,
    gone_a: UserId,
    gone_admin_a: UserId,
    admin_b: UserId,
    sc_a: ScorecardId,
    sc_a2: ScorecardId,
    obj_a: ObjectId,
    hidden_a: ObjectId,
    sc_b: ScorecardId,
    result_b: ObjectId,
}

impl World {
    fn a_to_b(&self) -> Link {
        Link {
            from: self.a,
            to: self.b,
        }
    }

    fn b_to_a(&self) -> Link {
        Link {
            from: self.b,
            to: self.a,
        }
    }
}

async fn register(service: &Service, raw_code: &str) -> SiteId {
    let site_id = SiteId::new();
    service
        .execute(
            &operator(),
            RegisterSite {
                site_id,
                code: code(raw_code),
                name: name(raw_code),
                seat_limit: SeatLimit::new(10).unwrap(),
                parent: None,
            },
        )
        .await
        .unwrap();
    site_id
}

async fn add(service: &Service, site: SiteId, login: &str, role: Role) -> UserId {
    let user_id = UserId::new();
    service
        .execute(
            &operator(),
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

/// Runs a content command of `site` (the command names the site), issued
/// by `admin` of `site`.
async fn content<C: Decision>(service: &Service, site: SiteId, admin: UserId, command: C) {
    service.execute(&by(site, admin), command).await.unwrap();
}

async fn world() -> World {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let a = register(&service, "GRANTS").await;
    let b = register(&service, "FUNDED").await;
    let admin_a = add(&service, a, "admin@grants.org", Role::Administration).await;
    let manager_a = add(&service, a, "manager@grants.org", Role::Presenter).await;
    service
        .execute(
            &operator(),
            SetPermissionFlags {
                site_id: a,
                user_id: manager_a,
                // A user manager who may also import (seed 001: Import/Export).
                enable: flags(&[PermissionFlag::ManageUsers, PermissionFlag::ImportExport]),
                disable: BTreeSet::new(),
            },
        )
        .await
        .unwrap();
    let presenter_a = add(&service, a, "presenter@grants.org", Role::Presenter).await;
    let gone_a = add(&service, a, "gone@grants.org", Role::Presenter).await;
    let gone_admin_a = add(&service, a, "gone-admin@grants.org", Role::Administration).await;
    for user_id in [gone_a, gone_admin_a] {
        service
            .execute(
                &operator(),
                DeactivateUser {
                    site_id: a,
                    user_id,
                },
            )
            .await
            .unwrap();
    }
    let admin_b = add(&service, b, "admin@funded.org", Role::Administration).await;
    service
        .execute(
            &by(a, admin_a),
            shareledger_core::connection::RequestConnection {
                site_id: a,
                partner_code: code("FUNDED"),
                directions: Directions::Offer,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &by(b, admin_b),
            shareledger_core::connection::ApproveConnection {
                site_id: b,
                partner: a,
            },
        )
        .await
        .unwrap();
    let (sc_a, sc_a2, obj_a, hidden_a) = (
        ScorecardId::new(),
        ScorecardId::new(),
        ObjectId::new(),
        ObjectId::new(),
    );
    content(
        &service,
        a,
        admin_a,
        CreateScorecard {
            site_id: a,
            scorecard_id: sc_a,
            name: name("Shared measures"),
        },
    )
    .await;
    content(
        &service,
        a,
        admin_a,
        CreateScorecard {
            site_id: a,
            scorecard_id: sc_a2,
            name: name("Internal"),
        },
    )
    .await;
    content(
        &service,
        a,
        admin_a,
        CreateObject {
            site_id: a,
            object_id: obj_a,
            kind: ObjectKind::Indicator,
            name: name("Literacy rate"),
            container: None,
        },
    )
    .await;
    content(
        &service,
        a,
        admin_a,
        CreateObject {
            site_id: a,
            object_id: hidden_a,
            kind: ObjectKind::Indicator,
            name: name("Budget"),
            container: None,
        },
    )
    .await;
    content(
        &service,
        a,
        admin_a,
        PlaceObjectOnScorecard {
            site_id: a,
            object_id: obj_a,
            scorecard_id: sc_a,
        },
    )
    .await;
    content(
        &service,
        a,
        admin_a,
        PlaceObjectOnScorecard {
            site_id: a,
            object_id: hidden_a,
            scorecard_id: sc_a2,
        },
    )
    .await;
    let (sc_b, result_b) = (ScorecardId::new(), ObjectId::new());
    content(
        &service,
        b,
        admin_b,
        CreateScorecard {
            site_id: b,
            scorecard_id: sc_b,
            name: name("Our results"),
        },
    )
    .await;
    content(
        &service,
        b,
        admin_b,
        CreateObject {
            site_id: b,
            object_id: result_b,
            kind: ObjectKind::Result,
            name: name("Children read"),
            container: None,
        },
    )
    .await;
    service
        .execute(
            &by(a, admin_a),
            shareledger_core::connection::ShareScorecard {
                site_id: a,
                partner: b,
                scorecard_id: sc_a,
            },
        )
        .await
        .unwrap();
    World {
        db,
        service,
        a,
        b,
        admin_a,
        manager_a,
        presenter_a,
        gone_a,
        gone_admin_a,
        admin_b,
        sc_a,
        sc_a2,
        obj_a,
        hidden_a,
        sc_b,
        result_b,
    }
}

/// A's self-registration link, with A's presenter as the model user.
async fn configure_a(w: &World) {
    w.service
        .execute(
            &by(w.a, w.admin_a),
            ConfigureSelfRegistration {
                site_id: w.a,
                enabled: true,
                model_site: Some(w.a),
                model_user: Some(w.presenter_a),
            },
        )
        .await
        .unwrap();
}

/// A partner registering itself with `group`'s self-registration link.
fn partner_site(group: SiteId, raw_code: &str) -> SelfRegisterPartner {
    SelfRegisterPartner {
        group_site: group,
        site_id: SiteId::new(),
        code: code(raw_code),
        name: name("Partner Org"),
        seat_limit: SeatLimit::new(3).unwrap(),
        manager_id: UserId::new(),
        manager_username: username("boss@partner.org"),
        manager_name: name("Pat Boss"),
        child_of_group: true,
        manager_email: None,
        via_link: None,
    }
}

// ---------------------------------------------------------------------------
// register_site
// ---------------------------------------------------------------------------

#[tokio::test]
async fn register_site_rejects_a_taken_code_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &operator(),
            RegisterSite {
                site_id: SiteId::new(),
                code: code("grants"),
                name: name("Another"),
                seat_limit: SeatLimit::new(1).unwrap(),
                parent: None,
            },
        ),
        DomainError::SiteCodeTaken(code("GRANTS")),
    )
    .await;
}

#[tokio::test]
async fn register_site_rejects_a_user_registering_a_top_level_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            RegisterSite {
                site_id: SiteId::new(),
                code: code("NEWTOP"),
                name: name("New top"),
                seat_limit: SeatLimit::new(1).unwrap(),
                parent: None,
            },
        ),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    )
    .await;
}

#[tokio::test]
async fn register_site_rejects_an_unknown_parent_and_leaves_the_log_unchanged() {
    let w = world().await;
    let nowhere = SiteId::new();
    refused(
        &w.db,
        w.service.execute(
            &operator(),
            RegisterSite {
                site_id: SiteId::new(),
                code: code("ORPHAN"),
                name: name("Orphan"),
                seat_limit: SeatLimit::new(1).unwrap(),
                parent: Some(nowhere),
            },
        ),
        DomainError::SiteNotFound(nowhere),
    )
    .await;
}

#[tokio::test]
async fn register_site_rejects_an_existing_site_id_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &operator(),
            RegisterSite {
                site_id: w.b,
                code: code("FRESH"),
                name: name("Fresh"),
                seat_limit: SeatLimit::new(1).unwrap(),
                parent: None,
            },
        ),
        DomainError::SiteExists(w.b),
    )
    .await;
}

// ---------------------------------------------------------------------------
// on_site, one test per SiteCommand
// ---------------------------------------------------------------------------

#[tokio::test]
async fn on_site_set_seat_limit_rejects_a_user_manager_without_instance_admin_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            SetSeatLimit {
                site_id: w.a,
                seat_limit: SeatLimit::new(50).unwrap(),
            },
        ),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    )
    .await;
}

#[tokio::test]
async fn on_site_require_two_factor_rejects_an_unknown_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    let nowhere = SiteId::new();
    refused(
        &w.db,
        w.service.execute(
            &operator(),
            RequireTwoFactor {
                site_id: nowhere,
                required: true,
            },
        ),
        DomainError::SiteNotFound(nowhere),
    )
    .await;
}

#[tokio::test]
async fn on_site_add_user_rejects_a_taken_username_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            AddUser {
                site_id: w.a,
                user_id: UserId::new(),
                username: username("ADMIN@Grants.org"),
                name: name("Someone else"),
                role: Role::Presenter,
                email: None,
            },
        ),
        DomainError::UsernameTaken(username("admin@grants.org")),
    )
    .await;
}

#[tokio::test]
async fn on_site_add_user_rejects_an_actor_unknown_on_the_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, UserId::new()),
            AddUser {
                site_id: w.a,
                user_id: UserId::new(),
                username: username("new@grants.org"),
                name: name("New"),
                role: Role::Presenter,
                email: None,
            },
        ),
        DomainError::UnknownActor { site: w.a },
    )
    .await;
}

#[tokio::test]
async fn on_site_change_user_role_rejects_an_inactive_user_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            ChangeUserRole {
                site_id: w.a,
                user_id: w.gone_a,
                role: Role::DataEntry,
            },
        ),
        DomainError::UserInactive(w.gone_a),
    )
    .await;
}

#[tokio::test]
async fn on_site_set_permission_flags_rejects_instance_admin_given_by_a_user_manager_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            SetPermissionFlags {
                site_id: w.a,
                user_id: w.presenter_a,
                enable: flags(&[PermissionFlag::InstanceAdmin]),
                disable: BTreeSet::new(),
            },
        ),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    )
    .await;
}

#[tokio::test]
async fn on_site_revoke_scorecard_access_rejects_a_scorecard_never_granted_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            RevokeScorecardAccess {
                site_id: w.a,
                user_id: w.presenter_a,
                scorecard_id: w.sc_a,
            },
        ),
        DomainError::ScorecardNotFound(w.sc_a),
    )
    .await;
}

#[tokio::test]
async fn on_site_deactivate_user_rejects_an_inactive_actor_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.gone_admin_a),
            DeactivateUser {
                site_id: w.a,
                user_id: w.presenter_a,
            },
        ),
        DomainError::ActorInactive,
    )
    .await;
}

#[tokio::test]
async fn on_site_reactivate_user_rejects_an_active_user_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            ReactivateUser {
                site_id: w.a,
                user_id: w.presenter_a,
            },
        ),
        DomainError::UserActive(w.presenter_a),
    )
    .await;
}

#[tokio::test]
async fn on_site_hide_organization_settings_rejects_a_user_of_another_site_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            HideOrganizationSettings {
                site_id: w.a,
                user_id: w.presenter_a,
                hidden: true,
            },
        ),
        DomainError::CrossSite {
            actor_site: w.b,
            target_site: w.a,
        },
    )
    .await;
}

#[tokio::test]
async fn on_site_import_users_rejects_a_username_taken_on_the_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    let csv =
        "username,name,role\nnew@grants.org,New,presenter\npresenter@grants.org,Again,presenter\n";
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            ImportUsers {
                site_id: w.a,
                csv: csv.to_string(),
            },
        ),
        DomainError::ImportRejected(vec![RowError {
            line: 3,
            field: "username".into(),
            reason: "presenter@grants.org is taken on this site".into(),
        }]),
    )
    .await;
}

// ---------------------------------------------------------------------------
// request_connection
// ---------------------------------------------------------------------------

#[tokio::test]
async fn request_connection_rejects_an_unknown_site_code_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::RequestConnection {
                site_id: w.a,
                partner_code: code("NOBODY"),
                directions: Directions::Both,
            },
        ),
        DomainError::UnknownSiteCode(code("NOBODY")),
    )
    .await;
}

#[tokio::test]
async fn request_connection_rejects_the_own_site_code_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::RequestConnection {
                site_id: w.a,
                partner_code: code("grants"),
                directions: Directions::Both,
            },
        ),
        DomainError::OwnSiteCode,
    )
    .await;
}

#[tokio::test]
async fn request_connection_rejects_an_operator_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &operator(),
            shareledger_core::connection::RequestConnection {
                site_id: w.a,
                partner_code: code("FUNDED"),
                directions: Directions::Both,
            },
        ),
        DomainError::ConnectionsUnavailable,
    )
    .await;
}

#[tokio::test]
async fn request_connection_rejects_a_link_already_active_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::RequestConnection {
                site_id: w.a,
                partner_code: code("FUNDED"),
                directions: Directions::Both,
            },
        ),
        DomainError::LinkPendingOrActive {
            link: w.a_to_b(),
            other: Some(Link { from: w.b, to: w.a }),
        },
    )
    .await;
}

#[tokio::test]
async fn request_connection_rejects_a_user_without_instance_admin_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            shareledger_core::connection::RequestConnection {
                site_id: w.a,
                partner_code: code("FUNDED"),
                directions: Directions::Both,
            },
        ),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// on_connection, one test per ConnectionCommand
// ---------------------------------------------------------------------------

#[tokio::test]
async fn on_connection_approve_rejects_nothing_awaiting_approval_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            shareledger_core::connection::ApproveConnection {
                site_id: w.b,
                partner: w.a,
            },
        ),
        DomainError::NothingToApprove,
    )
    .await;
}

#[tokio::test]
async fn on_connection_deny_rejects_a_user_without_instance_admin_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.presenter_a),
            shareledger_core::connection::DenyConnection {
                site_id: w.a,
                partner: w.b,
            },
        ),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    )
    .await;
}

#[tokio::test]
async fn on_connection_cancel_rejects_no_request_awaiting_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::CancelConnectionRequest {
                site_id: w.a,
                partner: w.b,
            },
        ),
        DomainError::NothingToCancel,
    )
    .await;
}

#[tokio::test]
async fn on_connection_revoke_rejects_a_link_that_is_not_active_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::RevokeSharing {
                site_id: w.a,
                from: w.b_to_a().from,
                to: w.b_to_a().to,
            },
        ),
        DomainError::LinkNotActive { link: w.b_to_a() },
    )
    .await;
}

#[tokio::test]
async fn on_connection_revoke_rejects_a_link_between_other_sites_and_leaves_the_log_unchanged() {
    let w = world().await;
    let elsewhere = SiteId::new();
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::RevokeSharing {
                site_id: w.a,
                from: w.b,
                to: elsewhere,
            },
        ),
        DomainError::CrossSite {
            actor_site: w.a,
            target_site: w.b,
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// change_sharing, one test per ShareChange
// ---------------------------------------------------------------------------

#[tokio::test]
async fn change_sharing_share_rejects_a_link_that_is_not_active_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            shareledger_core::connection::ShareScorecard {
                site_id: w.b_to_a().from,
                partner: w.b_to_a().to,
                scorecard_id: w.sc_b,
            },
        ),
        DomainError::LinkNotActive { link: w.b_to_a() },
    )
    .await;
}

#[tokio::test]
async fn change_sharing_share_rejects_the_receiving_sites_admin_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            shareledger_core::connection::ShareScorecard {
                site_id: w.a_to_b().from,
                partner: w.a_to_b().to,
                scorecard_id: w.sc_a2,
            },
        ),
        DomainError::CrossSite {
            actor_site: w.b,
            target_site: w.a,
        },
    )
    .await;
}

#[tokio::test]
async fn change_sharing_share_rejects_a_scorecard_shared_already_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::ShareScorecard {
                site_id: w.a_to_b().from,
                partner: w.a_to_b().to,
                scorecard_id: w.sc_a,
            },
        ),
        DomainError::AlreadyShared(w.sc_a),
    )
    .await;
}

#[tokio::test]
async fn change_sharing_unshare_rejects_a_scorecard_not_shared_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::UnshareScorecard {
                site_id: w.a_to_b().from,
                partner: w.a_to_b().to,
                scorecard_id: w.sc_a2,
            },
        ),
        DomainError::NotShared(w.sc_a2),
    )
    .await;
}

#[tokio::test]
async fn change_sharing_set_shared_rejects_a_partners_scorecard_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::SetSharedScorecards {
                site_id: w.a_to_b().from,
                partner: w.a_to_b().to,
                scorecards: [w.sc_a2, w.sc_b].into_iter().collect(),
            },
        ),
        DomainError::ScorecardNotFound(w.sc_b),
    )
    .await;
}

// ---------------------------------------------------------------------------
// on_content, one test per ContentCommand
// ---------------------------------------------------------------------------

#[tokio::test]
async fn on_content_create_scorecard_rejects_an_existing_id_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            CreateScorecard {
                site_id: w.a,
                scorecard_id: w.sc_a,
                name: name("Again"),
            },
        ),
        DomainError::ScorecardExists(w.sc_a),
    )
    .await;
}

#[tokio::test]
async fn on_content_create_scorecard_rejects_a_presenter_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.presenter_a),
            CreateScorecard {
                site_id: w.a,
                scorecard_id: ScorecardId::new(),
                name: name("Mine"),
            },
        ),
        DomainError::NotPermitted {
            needed: PermissionFlag::AddEditScorecardObjects,
        },
    )
    .await;
}

#[tokio::test]
async fn on_content_create_object_rejects_a_container_that_is_not_one_and_leaves_the_log_unchanged()
{
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            CreateObject {
                site_id: w.a,
                object_id: ObjectId::new(),
                kind: ObjectKind::Indicator,
                name: name("Inside an indicator"),
                container: Some(w.obj_a),
            },
        ),
        DomainError::NotAContainer(w.obj_a),
    )
    .await;
}

#[tokio::test]
async fn on_content_create_object_rejects_an_unknown_container_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            CreateObject {
                site_id: w.b,
                object_id: ObjectId::new(),
                kind: ObjectKind::Indicator,
                name: name("Inside A's object"),
                container: Some(w.obj_a),
            },
        ),
        DomainError::ObjectNotFound(w.obj_a),
    )
    .await;
}

#[tokio::test]
async fn on_content_place_object_on_scorecard_rejects_an_unknown_scorecard_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    let nowhere = ScorecardId::new();
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            PlaceObjectOnScorecard {
                site_id: w.a,
                object_id: w.obj_a,
                scorecard_id: nowhere,
            },
        ),
        DomainError::ScorecardNotFound(nowhere),
    )
    .await;
}

#[tokio::test]
async fn on_content_place_object_on_scorecard_rejects_a_partners_object_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    // B's admin cannot place A's shared object with a content command: that
    // is a relationship (R-SHARE-4), through `relate`.
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            PlaceObjectOnScorecard {
                site_id: w.b,
                object_id: w.obj_a,
                scorecard_id: w.sc_b,
            },
        ),
        DomainError::ObjectNotFound(w.obj_a),
    )
    .await;
}

#[tokio::test]
async fn on_content_remove_object_from_scorecard_rejects_an_object_not_placed_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            RemoveObjectFromScorecard {
                site_id: w.a,
                object_id: w.obj_a,
                scorecard_id: w.sc_a2,
            },
        ),
        DomainError::NotPlaced {
            object: w.obj_a,
            scorecard: w.sc_a2,
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// change_object_field
// ---------------------------------------------------------------------------

#[tokio::test]
async fn change_object_field_rejects_a_user_below_updater_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.presenter_a),
            ChangeObjectField {
                site_id: w.a,
                object_id: w.obj_a,
                field: ObjectField::Status,
                value: "green".into(),
            },
        ),
        DomainError::AccessLevelTooLow {
            needed: AccessLevel::Updater,
        },
    )
    .await;
}

#[tokio::test]
async fn change_object_field_rejects_a_nul_in_its_value_as_unstorable_text_and_leaves_the_log_unchanged(
) {
    // PostgreSQL stores no U+0000: the log refuses the event before any SQL
    // (the HTTP edge refuses it earlier still), so no path answers 500.
    let w = world().await;
    let before = w.db.log_snapshot().await;
    let attempt = w
        .service
        .execute(
            &by(w.a, w.admin_a),
            ChangeObjectField {
                site_id: w.a,
                object_id: w.obj_a,
                field: ObjectField::Description,
                value: "a\u{0}b".into(),
            },
        )
        .await;
    assert!(
        matches!(
            &attempt,
            Err(CommandError::Log(LogError::Invalid(InvalidInput::UnstorableText { path })))
                if path == "/value"
        ),
        "{attempt:?}"
    );
    assert_eq!(w.db.log_snapshot().await, before);
}

#[tokio::test]
async fn change_object_field_rejects_an_unknown_object_and_leaves_the_log_unchanged() {
    let w = world().await;
    let nothing = ObjectId::new();
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            ChangeObjectField {
                site_id: w.a,
                object_id: nothing,
                field: ObjectField::Description,
                value: "no such object".into(),
            },
        ),
        DomainError::ObjectNotFound(nothing),
    )
    .await;
}

#[tokio::test]
async fn change_object_field_rejects_a_partners_object_it_cannot_see_and_leaves_the_log_unchanged()
{
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            ChangeObjectField {
                site_id: w.a,
                object_id: w.hidden_a,
                field: ObjectField::Analysis,
                value: "not ours".into(),
            },
        ),
        DomainError::CrossSite {
            actor_site: w.b,
            target_site: w.a,
        },
    )
    .await;
}

#[tokio::test]
async fn change_object_field_rejects_a_partner_on_shared_content_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            ChangeObjectField {
                site_id: w.a,
                object_id: w.obj_a,
                field: ObjectField::Analysis,
                value: "edited by the partner".into(),
            },
        ),
        DomainError::SharedContentReadOnly,
    )
    .await;
}

// ---------------------------------------------------------------------------
// relate, one test per RelateCommand
// ---------------------------------------------------------------------------

#[tokio::test]
async fn relate_link_rejects_an_object_not_shared_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            LinkSharedObject {
                site_id: w.b,
                relationship_id: RelationshipId::new(),
                scorecard_id: w.sc_b,
                origin_site: w.a,
                object_id: w.hidden_a,
            },
        ),
        DomainError::ObjectNotShared(w.hidden_a),
    )
    .await;
}

#[tokio::test]
async fn relate_link_rejects_an_unknown_own_scorecard_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            LinkSharedObject {
                site_id: w.b,
                relationship_id: RelationshipId::new(),
                scorecard_id: w.sc_a,
                origin_site: w.a,
                object_id: w.obj_a,
            },
        ),
        DomainError::ScorecardNotFound(w.sc_a),
    )
    .await;
}

#[tokio::test]
async fn unlink_rejects_a_relationship_the_site_does_not_have_and_leaves_the_log_unchanged() {
    let w = world().await;
    let unknown = RelationshipId::new();
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            UnlinkSharedObject {
                site_id: w.b,
                relationship_id: unknown,
            },
        ),
        DomainError::RelationshipNotFound(unknown),
    )
    .await;
}

#[tokio::test]
async fn relate_aggregate_rejects_an_aggregation_that_is_not_a_measure_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            UseSharedMeasureInAggregation {
                site_id: w.b,
                relationship_id: RelationshipId::new(),
                into_object: w.result_b,
                origin_site: w.a,
                object_id: w.obj_a,
            },
        ),
        DomainError::NotAMeasure(w.result_b),
    )
    .await;
}

// ---------------------------------------------------------------------------
// grant_scorecard_access
// ---------------------------------------------------------------------------

#[tokio::test]
async fn grant_scorecard_access_rejects_a_scorecard_neither_own_nor_shared_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            GrantScorecardAccess {
                site_id: w.a,
                user_id: w.presenter_a,
                scorecard_id: w.sc_b,
                level: AccessLevel::Browser,
                owner_site: Some(w.b),
            },
        ),
        DomainError::ScorecardNotFound(w.sc_b),
    )
    .await;
}

#[tokio::test]
async fn grant_scorecard_access_rejects_an_inactive_user_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            GrantScorecardAccess {
                site_id: w.a,
                user_id: w.gone_a,
                scorecard_id: w.sc_a,
                level: AccessLevel::Editor,
                owner_site: None,
            },
        ),
        DomainError::UserInactive(w.gone_a),
    )
    .await;
}

#[tokio::test]
async fn grant_scorecard_access_rejects_more_than_browser_on_a_partners_scorecard_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            GrantScorecardAccess {
                site_id: w.b,
                user_id: w.admin_b,
                scorecard_id: w.sc_a,
                level: AccessLevel::Editor,
                owner_site: Some(w.a),
            },
        ),
        DomainError::SharedContentReadOnly,
    )
    .await;
}

// ---------------------------------------------------------------------------
// add_existing_user
// ---------------------------------------------------------------------------

#[tokio::test]
async fn add_existing_user_rejects_an_unknown_source_user_and_leaves_the_log_unchanged() {
    let w = world().await;
    let nobody = UserId::new();
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            AddExistingUser {
                site_id: w.a,
                user_id: UserId::new(),
                from_site: w.b,
                from_user: nobody,
                role: Role::Presenter,
            },
        ),
        DomainError::UserNotFound(nobody),
    )
    .await;
}

#[tokio::test]
async fn add_existing_user_rejects_an_unknown_source_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    let nowhere = SiteId::new();
    let command = AddExistingUser {
        site_id: w.a,
        user_id: UserId::new(),
        from_site: nowhere,
        from_user: UserId::new(),
        role: Role::Presenter,
    };
    refused(
        &w.db,
        w.service.execute(&by(w.a, w.manager_a), command.clone()),
        DomainError::SiteNotFound(nowhere),
    )
    .await;
    // Who may not add users learns that first, not which sites exist.
    refused(
        &w.db,
        w.service.execute(&by(w.a, w.presenter_a), command),
        DomainError::NotPermitted {
            needed: PermissionFlag::ManageUsers,
        },
    )
    .await;
}

#[tokio::test]
async fn add_existing_user_rejects_an_unknown_target_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    let nowhere = SiteId::new();
    refused(
        &w.db,
        w.service.execute(
            &operator(),
            AddExistingUser {
                site_id: nowhere,
                user_id: UserId::new(),
                from_site: w.b,
                from_user: w.admin_b,
                role: Role::Presenter,
            },
        ),
        DomainError::SiteNotFound(nowhere),
    )
    .await;
}

#[tokio::test]
async fn add_existing_user_rejects_a_user_manager_of_the_source_site_only_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    // B's admin cannot pull B's own account into A (R-USER-9).
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            AddExistingUser {
                site_id: w.a,
                user_id: UserId::new(),
                from_site: w.b,
                from_user: w.admin_b,
                role: Role::Administration,
            },
        ),
        DomainError::CrossSite {
            actor_site: w.b,
            target_site: w.a,
        },
    )
    .await;
}

#[tokio::test]
async fn add_existing_user_rejects_an_account_of_the_same_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            AddExistingUser {
                site_id: w.a,
                user_id: UserId::new(),
                from_site: w.a,
                from_user: w.presenter_a,
                role: Role::DataEntry,
            },
        ),
        DomainError::UserExists(w.presenter_a),
    )
    .await;
}

// ---------------------------------------------------------------------------
// set_parent_site
// ---------------------------------------------------------------------------

#[tokio::test]
async fn set_parent_site_rejects_a_cycle_and_leaves_the_log_unchanged() {
    let w = world().await;
    // A under B, then B under A would close a loop.
    w.service
        .execute(
            &by(w.a, w.admin_a),
            SetParentSite {
                site_id: w.a,
                parent: Some(w.b),
            },
        )
        .await
        .unwrap();
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            SetParentSite {
                site_id: w.b,
                parent: Some(w.a),
            },
        ),
        DomainError::ParentCycle,
    )
    .await;
    refused(
        &w.db,
        w.service.execute(
            &operator(),
            SetParentSite {
                site_id: w.b,
                parent: Some(w.b),
            },
        ),
        DomainError::ParentCycle,
    )
    .await;
}

#[tokio::test]
async fn set_parent_site_rejects_an_unknown_parent_and_leaves_the_log_unchanged() {
    let w = world().await;
    let nowhere = SiteId::new();
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            SetParentSite {
                site_id: w.a,
                parent: Some(nowhere),
            },
        ),
        DomainError::SiteNotFound(nowhere),
    )
    .await;
}

#[tokio::test]
async fn set_parent_site_rejects_a_user_without_instance_admin_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            SetParentSite {
                site_id: w.a,
                parent: Some(w.b),
            },
        ),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    )
    .await;
}

#[tokio::test]
async fn set_parent_site_rejects_an_unknown_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    let nowhere = SiteId::new();
    refused(
        &w.db,
        w.service.execute(
            &operator(),
            SetParentSite {
                site_id: nowhere,
                parent: None,
            },
        ),
        DomainError::SiteNotFound(nowhere),
    )
    .await;
}

// ---------------------------------------------------------------------------
// configure_self_registration
// ---------------------------------------------------------------------------

#[tokio::test]
async fn configure_self_registration_rejects_enabling_without_a_model_user_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            ConfigureSelfRegistration {
                site_id: w.a,
                enabled: true,
                model_site: Some(w.a),
                model_user: None,
            },
        ),
        DomainError::SelfRegistrationNotConfigured,
    )
    .await;
}

#[tokio::test]
async fn configure_self_registration_rejects_an_unknown_model_user_and_leaves_the_log_unchanged() {
    let w = world().await;
    // A user of another site is not a user of the model site.
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            ConfigureSelfRegistration {
                site_id: w.a,
                enabled: true,
                model_site: Some(w.a),
                model_user: Some(w.admin_b),
            },
        ),
        DomainError::UserNotFound(w.admin_b),
    )
    .await;
}

#[tokio::test]
async fn configure_self_registration_rejects_an_unknown_model_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    let nowhere = SiteId::new();
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.admin_a),
            ConfigureSelfRegistration {
                site_id: w.a,
                enabled: true,
                model_site: Some(nowhere),
                model_user: Some(w.presenter_a),
            },
        ),
        DomainError::SiteNotFound(nowhere),
    )
    .await;
}

#[tokio::test]
async fn configure_self_registration_rejects_a_user_manager_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            ConfigureSelfRegistration {
                site_id: w.a,
                enabled: true,
                model_site: Some(w.a),
                model_user: Some(w.presenter_a),
            },
        ),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    )
    .await;
}

// ---------------------------------------------------------------------------
// self_register_partner
// ---------------------------------------------------------------------------

#[tokio::test]
async fn self_register_partner_rejects_a_group_without_self_registration_and_leaves_the_log_unchanged(
) {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(&operator(), partner_site(w.a, "PARTNER")),
        DomainError::SelfRegistrationNotConfigured,
    )
    .await;
}

#[tokio::test]
async fn self_register_partner_rejects_a_taken_code_and_leaves_the_log_unchanged() {
    let w = world().await;
    configure_a(&w).await;
    refused(
        &w.db,
        w.service.execute(&operator(), partner_site(w.a, "funded")),
        DomainError::SiteCodeTaken(code("FUNDED")),
    )
    .await;
}

#[tokio::test]
async fn self_register_partner_rejects_an_unknown_group_and_leaves_the_log_unchanged() {
    let w = world().await;
    let nowhere = SiteId::new();
    refused(
        &w.db,
        w.service
            .execute(&operator(), partner_site(nowhere, "PARTNER")),
        DomainError::SiteNotFound(nowhere),
    )
    .await;
}

#[tokio::test]
async fn self_register_partner_rejects_an_existing_site_id_and_leaves_the_log_unchanged() {
    let w = world().await;
    configure_a(&w).await;
    let mut command = partner_site(w.a, "PARTNER");
    command.site_id = w.b;
    refused(
        &w.db,
        w.service.execute(&operator(), command),
        DomainError::SiteExists(w.b),
    )
    .await;
}

#[tokio::test]
async fn self_register_partner_rejects_the_system_as_issuer_and_leaves_the_log_unchanged() {
    let w = world().await;
    configure_a(&w).await;
    refused(
        &w.db,
        w.service.execute(
            &Issued {
                actor: Actor::System,
                key: Uuid::new_v4(),
            },
            partner_site(w.a, "PARTNER"),
        ),
        DomainError::NotAnIssuer,
    )
    .await;
}

// ---------------------------------------------------------------------------
// import_users_csv (R-USER-5, R-USER-7, R-USER-8)
// ---------------------------------------------------------------------------

/// R-USER-8: every row is checked; each bad row is reported by line and
/// field, with the reason; nothing of the file is applied.
#[tokio::test]
async fn import_users_csv_rejects_bad_rows_by_line_and_field_and_leaves_the_log_unchanged() {
    let w = world().await;
    let csv = "Username,Name,Role\n\
               ann@grants.org,Ann Lee,Data Entry\n\
               bad user,Bob,presenter\n\
               cy@grants.org,,wizard\n\
               ann@grants.org,Ann Again,presenter\n\
               \"open,x,y\n";
    let reason = |e: InvalidValue| e.to_string();
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            ImportUsers {
                site_id: w.a,
                csv: csv.to_string(),
            },
        ),
        DomainError::ImportRejected(vec![
            RowError {
                line: 3,
                field: "username".into(),
                reason: reason(Username::parse("bad user").unwrap_err()),
            },
            RowError {
                line: 4,
                field: "name".into(),
                reason: reason(Name::parse("").unwrap_err()),
            },
            RowError {
                line: 4,
                field: "role".into(),
                reason: reason(Role::parse("wizard").unwrap_err()),
            },
            RowError {
                line: 5,
                field: "username".into(),
                reason: "ann@grants.org appears already on line 2".into(),
            },
            RowError {
                line: 6,
                field: "row".into(),
                reason: "a quoted field is not closed".into(),
            },
        ]),
    )
    .await;
}

#[tokio::test]
async fn import_users_csv_rejects_a_username_taken_on_the_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(&by(w.a, w.manager_a), ImportUsers { site_id: w.a, csv: "username,name,role\nnew@grants.org,New,presenter\nPresenter@Grants.org,Again,presenter\n".to_string() }),
        DomainError::ImportRejected(vec![RowError {
            line: 3,
            field: "username".into(),
            reason: "presenter@grants.org is taken on this site".into(),
        }]),
    )
    .await;
}

#[tokio::test]
async fn import_users_csv_rejects_a_header_without_a_role_column_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            ImportUsers {
                site_id: w.a,
                csv: "username,name\nnew@grants.org,New\n".to_string(),
            },
        ),
        DomainError::ImportRejected(vec![RowError {
            line: 1,
            field: "role".into(),
            reason: "the header has no role column".into(),
        }]),
    )
    .await;
}

#[tokio::test]
async fn import_users_csv_rejects_a_user_without_manage_users_and_leaves_the_log_unchanged() {
    let w = world().await;
    // Authorization comes first: a presenter learns nothing about the rows.
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.presenter_a),
            ImportUsers {
                site_id: w.a,
                csv: "username,name,role\nbad user,,wizard\n".to_string(),
            },
        ),
        DomainError::NotPermitted {
            needed: PermissionFlag::ManageUsers,
        },
    )
    .await;
}

#[tokio::test]
async fn import_users_csv_rejects_a_file_past_the_seat_limit_and_leaves_the_log_unchanged() {
    let w = world().await;
    // A has 10 seats and 3 active users (2 deactivated): 7 free, 8 rows.
    let mut csv = String::from("username,name,role\n");
    for i in 0..8 {
        csv.push_str(&format!("user{i}@grants.org,User {i},presenter\n"));
    }
    refused(
        &w.db,
        w.service
            .execute(&by(w.a, w.manager_a), ImportUsers { site_id: w.a, csv }),
        DomainError::SeatLimitReached { limit: 10 },
    )
    .await;
}

/// R-USER-8: a good file adds every row; re-sending it with the same key
/// returns the first result and writes nothing.
#[tokio::test]
async fn r_user_8_a_good_file_adds_every_row_and_a_resent_key_changes_nothing() {
    let w = world().await;
    let csv = "Username,Name,Role,Office\n\
               ann@grants.org,Ann Lee,Data Entry,HQ\n\
               \n\
               \"bob@grants.org\",\"Bob, Jr.\",presenter,\n\
               cy@grants.org,Cy,Scorecard Builder,Field\n";
    let issued = by(w.a, w.manager_a);
    let first = w
        .service
        .execute(
            &issued,
            ImportUsers {
                site_id: w.a,
                csv: csv.to_string(),
            },
        )
        .await
        .unwrap();
    assert!(!first.replayed);
    // Each user, and nothing else.
    let types: Vec<&str> = first.events.iter().map(|e| e.event_type.as_str()).collect();
    assert_eq!(types, ["UserAdded"; 3]);
    let stored =
        w.db.store()
            .read_events_by_id(
                &first.events[..3]
                    .iter()
                    .map(|e| e.event_id)
                    .collect::<Vec<_>>(),
            )
            .await
            .unwrap();
    use shareledger_core::catalog::DomainEvent as _;
    use shareledger_core::catalog::{SiteEvent, UserOrigin};
    let added: Vec<(UserId, String, u32)> = stored
        .iter()
        .map(
            |e| match SiteEvent::decode(&e.event_type, 1, &e.data).unwrap() {
                SiteEvent::UserAdded {
                    user,
                    origin: UserOrigin::Imported { line },
                    ..
                } => (user.user_id, user.username.to_string(), line),
                other => panic!("unexpected {other:?}"),
            },
        )
        .collect();
    assert_eq!(
        added,
        vec![
            (imported_user_id(issued.key, 0), "ann@grants.org".into(), 2),
            (imported_user_id(issued.key, 1), "bob@grants.org".into(), 4),
            (imported_user_id(issued.key, 2), "cy@grants.org".into(), 5),
        ]
    );
    // The same key again: the first result, nothing written.
    let before = w.db.log_snapshot().await;
    let again = w
        .service
        .execute(
            &issued,
            ImportUsers {
                site_id: w.a,
                csv: csv.to_string(),
            },
        )
        .await
        .unwrap();
    assert!(again.replayed);
    assert_eq!(again.events, first.events);
    assert_eq!(again.last_position, first.last_position);
    assert_eq!(w.db.log_snapshot().await, before);
    // A new key with the same file: every username is taken now.
    refused(
        &w.db,
        w.service.execute(
            &by(w.a, w.manager_a),
            ImportUsers {
                site_id: w.a,
                csv: csv.to_string(),
            },
        ),
        DomainError::ImportRejected(
            [(2, "ann"), (4, "bob"), (5, "cy")]
                .into_iter()
                .map(|(line, who)| RowError {
                    line,
                    field: "username".into(),
                    reason: format!("{who}@grants.org is taken on this site"),
                })
                .collect(),
        ),
    )
    .await;
}

// ---------------------------------------------------------------------------
// Malformed values never reach the service
// ---------------------------------------------------------------------------

/// Value types parse or refuse: a command can only be built from parsed
/// values, so malformed input is refused (typed `InvalidValue`, code
/// `invalid_value`) before any command reaches the service, and the log
/// cannot change.
#[tokio::test]
async fn malformed_values_are_refused_before_a_command_can_be_built() {
    let db = TestDb::new().await;
    let before = db.log_snapshot().await;
    let refusals: Vec<(Result<(), InvalidValue>, InvalidValue)> = vec![
        (
            SiteCode::parse("x").map(drop),
            InvalidValue::SiteCode("x".into()),
        ),
        (
            SiteCode::parse("no spaces").map(drop),
            InvalidValue::SiteCode("no spaces".into()),
        ),
        (
            Username::parse("a b").map(drop),
            InvalidValue::Username("a b".into()),
        ),
        (
            Name::parse("   ").map(drop),
            InvalidValue::Text {
                field: "name",
                max: Name::MAX,
            },
        ),
        (SeatLimit::new(0).map(drop), InvalidValue::SeatLimit),
        (
            Role::parse("wizard").map(drop),
            InvalidValue::Role("wizard".into()),
        ),
        (
            AccessLevel::parse("owner").map(drop),
            InvalidValue::AccessLevel("owner".into()),
        ),
        (
            PermissionFlag::parse("root").map(drop),
            InvalidValue::PermissionFlag("root".into()),
        ),
        (
            ObjectKind::parse("widget").map(drop),
            InvalidValue::ObjectKind("widget".into()),
        ),
    ];
    for (result, expected) in refusals {
        let invalid = result.unwrap_err();
        assert_eq!(invalid, expected);
        // At the edge it becomes the typed domain error with its stable code.
        let error = CommandError::from(DomainError::from(invalid));
        assert!(matches!(
            &error,
            CommandError::Domain(DomainError::InvalidValue(e)) if *e == expected
        ));
        assert_eq!(error.code(), "invalid_value");
    }
    assert_eq!(db.log_snapshot().await, before);
}

// ---------------------------------------------------------------------------
// Ids name one thing across all sites (claims)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn on_site_rejects_a_user_id_of_another_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            AddUser {
                site_id: w.b,
                user_id: w.admin_a,
                username: username("twin@funded.org"),
                name: name("Twin"),
                role: Role::Presenter,
                email: None,
            },
        ),
        DomainError::UserExists(w.admin_a),
    )
    .await;
}

#[tokio::test]
async fn add_existing_user_rejects_a_user_id_of_another_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            AddExistingUser {
                site_id: w.b,
                user_id: w.presenter_a,
                from_site: w.a,
                from_user: w.manager_a,
                role: Role::Presenter,
            },
        ),
        DomainError::UserExists(w.presenter_a),
    )
    .await;
}

#[tokio::test]
async fn self_register_partner_rejects_a_manager_id_of_another_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    configure_a(&w).await;
    refused(
        &w.db,
        w.service.execute(
            &operator(),
            SelfRegisterPartner {
                manager_id: w.admin_b,
                ..partner_site(w.a, "PARTNER")
            },
        ),
        DomainError::UserExists(w.admin_b),
    )
    .await;
}

#[tokio::test]
async fn on_content_rejects_a_scorecard_or_object_id_of_another_site_and_leaves_the_log_unchanged()
{
    let w = world().await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            CreateScorecard {
                site_id: w.b,
                scorecard_id: w.sc_a,
                name: name("Twin"),
            },
        ),
        DomainError::ScorecardExists(w.sc_a),
    )
    .await;
    refused(
        &w.db,
        w.service.execute(
            &by(w.b, w.admin_b),
            CreateObject {
                site_id: w.b,
                object_id: w.hidden_a,
                kind: ObjectKind::Indicator,
                name: name("Twin"),
                container: None,
            },
        ),
        DomainError::ObjectExists(w.hidden_a),
    )
    .await;
}

#[tokio::test]
async fn relate_rejects_a_relationship_id_of_another_site_and_leaves_the_log_unchanged() {
    let w = world().await;
    // A shares `sc_a` with a third site C too.
    let c = register(&w.service, "THIRD").await;
    let admin_c = add(&w.service, c, "admin@third.org", Role::Administration).await;
    w.service
        .execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::RequestConnection {
                site_id: w.a,
                partner_code: code("THIRD"),
                directions: Directions::Offer,
            },
        )
        .await
        .unwrap();
    w.service
        .execute(
            &by(c, admin_c),
            shareledger_core::connection::ApproveConnection {
                site_id: c,
                partner: w.a,
            },
        )
        .await
        .unwrap();
    w.service
        .execute(
            &by(w.a, w.admin_a),
            shareledger_core::connection::ShareScorecard {
                site_id: w.a,
                partner: c,
                scorecard_id: w.sc_a,
            },
        )
        .await
        .unwrap();
    let sc_c = ScorecardId::new();
    content(
        &w.service,
        c,
        admin_c,
        CreateScorecard {
            site_id: c,
            scorecard_id: sc_c,
            name: name("Theirs"),
        },
    )
    .await;
    let relationship_id = RelationshipId::new();
    let link = |site_id, scorecard_id| LinkSharedObject {
        site_id,
        relationship_id,
        scorecard_id,
        origin_site: w.a,
        object_id: w.obj_a,
    };
    w.service
        .execute(&by(w.b, w.admin_b), link(w.b, w.sc_b))
        .await
        .unwrap();
    refused(
        &w.db,
        w.service.execute(&by(c, admin_c), link(c, sc_c)),
        DomainError::RelationshipExists,
    )
    .await;
}

/// Sixteen admins of two sites adding a user with one id at the same time:
/// one append creates it; every other is refused as existing (its
/// condition on the id's creation failed, or it was decided again and the
/// site's state knew the id), and writes nothing.
#[tokio::test]
async fn concurrent_creations_of_one_id_on_two_sites_create_it_once() {
    let w = world().await;
    let before = w.service.store().head_position().await.unwrap();
    let user_id = UserId::new();
    let tasks: Vec<_> = (0..16)
        .map(|i| {
            let service = w.service.clone();
            let (site, admin) = if i % 2 == 0 {
                (w.a, w.admin_a)
            } else {
                (w.b, w.admin_b)
            };
            tokio::spawn(async move {
                service
                    .execute(
                        &by(site, admin),
                        AddUser {
                            site_id: site,
                            user_id,
                            username: username(&format!("same{i}@grants.org")),
                            name: name("Same"),
                            role: Role::Presenter,
                            email: None,
                        },
                    )
                    .await
            })
        })
        .collect();
    let mut written = Vec::new();
    for task in tasks {
        match task.await.unwrap() {
            Ok(outcome) => written.push(outcome),
            Err(CommandError::Domain(DomainError::UserExists(id))) => assert_eq!(id, user_id),
            Err(other) => panic!("{other:?}"),
        }
    }
    assert_eq!(written.len(), 1, "{written:?}");
    assert_eq!(
        written[0]
            .events
            .iter()
            .map(|e| e.event_type.as_str())
            .collect::<Vec<_>>(),
        ["UserAdded"]
    );
    let head = w.service.store().head_position().await.unwrap();
    assert_eq!(head, before + 1, "one event written in all");
}
