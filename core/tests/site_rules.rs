//! The site and user rules of `../shared/DOMAIN.md` (R-USER-1..9, R-ONB-1..3),
//! proven on `shareledger_core::site` as given / when / then:
//!
//! * **given** a list of past `SiteEvent`s, folded with `SiteState::from_events`;
//! * **when** a command is decided by an actor;
//! * **then** exactly these events (the whole `Vec`), or exactly this
//!   `DomainError` (compared by value).
//!
//! Each test is named after the rule it proves. R-USER-4 (who *sees* what) is
//! not decided here but by the read models, so it has no test in this file.

use std::collections::BTreeMap;

use proptest::prelude::*;
use shareledger_core::catalog::{
    AccessLevel, ConnectionEvent, ContentEvent, Directions, Email, InvalidValue, Link, Name,
    NewUser, PermissionFlag, Permissions, Role, ScorecardId, SeatLimit, SiteCode, SiteEvent,
    SiteId, UserId, UserOrigin, Username, UsernameKey,
};
use shareledger_core::content::ContentState;
use shareledger_core::csv_import::{parse_users_csv, ImportRow};
use shareledger_core::envelope::Actor;
use shareledger_core::site::{
    AddExistingUser, AddUser, ChangeUserDetails, ChangeUserRole, ConfigureSelfRegistration,
    DeactivateUser, GrantScorecardAccess, HideOrganizationSettings, ImportUsers, ReactivateUser,
    RegisterSite, RequireTwoFactor, RevokeScorecardAccess, SelfRegisterPartner, SetParentSite,
    SetPermissionFlags, SetSeatLimit, SetSelfRegistrationLink, SiteState, UserState,
};
use shareledger_core::{DomainError, RowError};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

type Decision = Result<Vec<SiteEvent>, DomainError>;

/// Given these past events (the first one a `SiteRegistered`), the site's state.
#[track_caller]
fn given(events: Vec<SiteEvent>) -> SiteState {
    SiteState::from_events(&events).expect("a site stream starts with SiteRegistered")
}

/// Then exactly these events.
#[track_caller]
fn then(result: Decision, expected: Vec<SiteEvent>) {
    assert_eq!(result, Ok(expected));
}

/// Then exactly this error (and so nothing is written).
#[track_caller]
fn then_err(result: Decision, expected: DomainError) {
    assert_eq!(result, Err(expected));
}

/// Applies accepted events to a state, as the command service would after appending them.
#[track_caller]
fn apply(state: &SiteState, result: Decision) -> SiteState {
    let events = result.expect("the command is accepted");
    events
        .iter()
        .fold(Some(state.clone()), SiteState::evolve)
        .expect("a registered site stays registered")
}

// ---------------------------------------------------------------------------
// Values and fixtures
// ---------------------------------------------------------------------------

const fn sid(n: u128) -> SiteId {
    SiteId(Uuid::from_u128(n))
}
const fn uid(n: u128) -> UserId {
    UserId(Uuid::from_u128(n))
}
const fn scid(n: u128) -> ScorecardId {
    ScorecardId(Uuid::from_u128(n))
}

/// Site A ("ALPHA"), the site most tests act on, and its users.
const A: SiteId = sid(0xA);
const A_ADMIN: UserId = uid(0xA1);
/// Data Entry user of A, Editor on `S1`.
const TARGET: UserId = uid(0xA2);
/// A deactivated Presenter of A, Browser on `S1`.
const RETIRED: UserId = uid(0xA3);
/// The actor of a test, added to A by that test.
const ACTOR: UserId = uid(0xA4);
/// Ids for users a command adds.
const NEW: UserId = uid(0xA5);
const NEW2: UserId = uid(0xA6);

/// Site B ("BRAVO"), another tenant.
const B: SiteId = sid(0xB);
const B_ADMIN: UserId = uid(0xB1);
const B_PERSON: UserId = uid(0xB2);

const S1: ScorecardId = scid(0x51);
const S2: ScorecardId = scid(0x52);
const S3: ScorecardId = scid(0x53);
const S4: ScorecardId = scid(0x54);

fn username(raw: &str) -> Username {
    Username::parse(raw).expect("a valid username")
}
fn name(raw: &str) -> Name {
    Name::parse(raw).expect("a valid name")
}
fn email(raw: &str) -> Email {
    Email::parse(raw).expect("a valid email")
}
fn code(raw: &str) -> SiteCode {
    SiteCode::parse(raw).expect("a valid site code")
}
fn seats(n: u32) -> SeatLimit {
    SeatLimit::new(n).expect("a valid seat limit")
}
fn flags(list: &[PermissionFlag]) -> Permissions {
    list.iter().copied().collect()
}
fn no_flags() -> Permissions {
    Permissions::new()
}

fn by(site_id: SiteId, user_id: UserId) -> Actor {
    Actor::User {
        user_id: user_id.0,
        site_id: site_id.0,
    }
}
fn operator() -> Actor {
    Actor::Operator {
        name: "ops@shareledger".into(),
    }
}

fn registered(site_id: SiteId, site_code: &str, limit: u32) -> SiteEvent {
    SiteEvent::SiteRegistered {
        site_id,
        code: code(site_code),
        name: name(&format!("{site_code} site")),
        seat_limit: seats(limit),
        parent: None,
    }
}

fn registered_child(site_id: SiteId, site_code: &str, limit: u32, parent: SiteId) -> SiteEvent {
    SiteEvent::SiteRegistered {
        site_id,
        code: code(site_code),
        name: name(&format!("{site_code} site")),
        seat_limit: seats(limit),
        parent: Some(parent),
    }
}

/// The `UserAdded` that `AddUser` emits (the preset's flags, no access).
fn added(user_id: UserId, login: &str, role: Role) -> SiteEvent {
    added_with(user_id, login, role, UserOrigin::Added)
}

fn added_with(user_id: UserId, login: &str, role: Role, origin: UserOrigin) -> SiteEvent {
    SiteEvent::UserAdded {
        user: NewUser {
            user_id,
            username: username(login),
            name: name(&format!("Name of {login}")),
            role,
            permissions: role.default_permissions(),
            email: None,
        },
        origin,
        scorecard_access: BTreeMap::new(),
        hide_organization_settings: false,
    }
}

fn permissions_set(user_id: UserId, permissions: Permissions) -> SiteEvent {
    SiteEvent::UserPermissionsSet {
        user_id,
        permissions,
    }
}
fn granted(user_id: UserId, scorecard_id: ScorecardId, level: AccessLevel) -> SiteEvent {
    SiteEvent::ScorecardAccessGranted {
        user_id,
        scorecard_id,
        level,
    }
}
fn revoked(user_id: UserId, scorecard_id: ScorecardId) -> SiteEvent {
    SiteEvent::ScorecardAccessRevoked {
        user_id,
        scorecard_id,
    }
}
fn deactivated(user_id: UserId) -> SiteEvent {
    SiteEvent::UserDeactivated { user_id }
}
fn reactivated(user_id: UserId) -> SiteEvent {
    SiteEvent::UserReactivated { user_id }
}
fn hidden(user_id: UserId, hidden: bool) -> SiteEvent {
    SiteEvent::OrganizationSettingsHiddenSet { user_id, hidden }
}

/// Site A with `limit` seats and its Administration user `A_ADMIN`.
fn site_a(limit: u32) -> Vec<SiteEvent> {
    vec![
        registered(A, "ALPHA", limit),
        added(A_ADMIN, "admin@a.org", Role::Administration),
    ]
}

/// Site A (10 seats) with `A_ADMIN`, `TARGET` (Data Entry, Editor on S1),
/// `RETIRED` (deactivated Presenter, Browser on S1), and `extra` after them.
fn site_a_with_staff(extra: Vec<SiteEvent>) -> SiteState {
    let mut events = site_a(10);
    events.extend([
        added(TARGET, "target@a.org", Role::DataEntry),
        granted(TARGET, S1, AccessLevel::Editor),
        added(RETIRED, "retired@a.org", Role::Presenter),
        granted(RETIRED, S1, AccessLevel::Browser),
        deactivated(RETIRED),
    ]);
    events.extend(extra);
    given(events)
}

/// `ACTOR` added to A as a Presenter, then given exactly `permissions`.
fn actor_with(permissions: Permissions) -> Vec<SiteEvent> {
    vec![
        added(ACTOR, "actor@a.org", Role::Presenter),
        permissions_set(ACTOR, permissions),
    ]
}

/// Site B with its admin and `B_PERSON` ("person@b.org", "Pat Person").
fn site_b() -> SiteState {
    given(vec![
        registered(B, "BRAVO", 10),
        added(B_ADMIN, "admin@b.org", Role::Administration),
        SiteEvent::UserAdded {
            user: NewUser {
                user_id: B_PERSON,
                username: username("Person@B.org"),
                name: name("Pat Person"),
                role: Role::ScorecardBuilder,
                permissions: Role::ScorecardBuilder.default_permissions(),
                email: Some(email("pat@b.org")),
            },
            origin: UserOrigin::Added,
            scorecard_access: BTreeMap::new(),
            hide_organization_settings: false,
        },
    ])
}

/// A user id generator for `parse_users_csv`: `first`, `first + 1`, …
fn ids_from(first: u128) -> impl FnMut() -> UserId {
    let mut next = first;
    move || {
        next += 1;
        uid(next - 1)
    }
}

/// One row, as `parse_users_csv` returns it.
fn row(line: u32, user_id: UserId, login: &str, full_name: &str, role: Role) -> ImportRow {
    ImportRow {
        line,
        user_id,
        username: username(login),
        name: name(full_name),
        role,
        email: None,
    }
}

fn imported(line: u32, user_id: UserId, login: &str, full_name: &str, role: Role) -> SiteEvent {
    SiteEvent::UserAdded {
        user: NewUser {
            user_id,
            username: username(login),
            name: name(full_name),
            role,
            permissions: role.default_permissions(),
            email: None,
        },
        origin: UserOrigin::Imported { line },
        scorecard_access: BTreeMap::new(),
        hide_organization_settings: false,
    }
}

fn row_error(line: u32, field: &str, reason: impl Into<String>) -> RowError {
    RowError {
        line,
        field: field.into(),
        reason: reason.into(),
    }
}

/// One user-management command (R-USER-5) decided on `site_a_with_staff`,
/// with the events it must emit when the actor may manage users.
struct Case {
    what: &'static str,
    result: Decision,
    expected: Vec<SiteEvent>,
}

/// Every user-management command (add, add existing, import, edit, grant,
/// revoke, hide settings, deactivate, reactivate) by `actor` on `site`.
fn user_management_cases(actor: &Actor, site: &SiteState) -> Vec<Case> {
    let b = site_b();
    let import = vec![row(2, NEW2, "imp@a.org", "Imp Orted", Role::Presenter)];
    vec![
        Case {
            what: "ChangeUserDetails",
            result: ChangeUserDetails {
                site_id: site.id,
                user_id: TARGET,
                name: name("Tara Get"),
                email: Some(email("tara@a.org")),
            }
            .decide(actor, site),
            expected: vec![SiteEvent::UserDetailsChanged {
                user_id: TARGET,
                name: name("Tara Get"),
                email: Some(email("tara@a.org")),
            }],
        },
        Case {
            what: "AddUser",
            result: AddUser {
                site_id: site.id,
                user_id: NEW,
                username: username("new@a.org"),
                name: name("Name of new@a.org"),
                role: Role::Presenter,
                email: None,
            }
            .decide(actor, site),
            expected: vec![added(NEW, "new@a.org", Role::Presenter)],
        },
        Case {
            what: "AddExistingUser",
            result: AddExistingUser {
                site_id: site.id,
                user_id: NEW,
                from_site: B,
                from_user: B_PERSON,
                role: Role::DataEntry,
            }
            .decide(actor, site, &b),
            expected: vec![SiteEvent::UserAdded {
                user: NewUser {
                    user_id: NEW,
                    username: username("person@b.org"),
                    name: name("Pat Person"),
                    role: Role::DataEntry,
                    permissions: Role::DataEntry.default_permissions(),
                    email: Some(email("pat@b.org")),
                },
                origin: UserOrigin::ExistingAccount {
                    site_id: B,
                    user_id: B_PERSON,
                },
                scorecard_access: BTreeMap::new(),
                hide_organization_settings: false,
            }],
        },
        Case {
            what: "ImportUsers",
            result: ImportUsers::decide_rows(actor, site, &import),
            expected: vec![imported(2, NEW2, "imp@a.org", "Imp Orted", Role::Presenter)],
        },
        Case {
            what: "ChangeUserRole",
            result: ChangeUserRole {
                site_id: site.id,
                user_id: TARGET,
                role: Role::Presenter,
            }
            .decide(actor, site),
            expected: vec![SiteEvent::UserRoleChanged {
                user_id: TARGET,
                role: Role::Presenter,
                permissions: Role::Presenter.default_permissions(),
            }],
        },
        Case {
            what: "SetPermissionFlags",
            result: SetPermissionFlags {
                site_id: site.id,
                user_id: TARGET,
                enable: flags(&[PermissionFlag::AllScorecards]),
                disable: no_flags(),
            }
            .decide(actor, site),
            expected: vec![permissions_set(TARGET, {
                let mut p = Role::DataEntry.default_permissions();
                p.insert(PermissionFlag::AllScorecards);
                p
            })],
        },
        Case {
            what: "GrantScorecardAccess",
            result: GrantScorecardAccess {
                site_id: site.id,
                owner_site: None,
                user_id: TARGET,
                scorecard_id: S2,
                level: AccessLevel::Updater,
            }
            .decide(actor, site, Some(AccessLevel::ScorecardAdmin), None),
            expected: vec![granted(TARGET, S2, AccessLevel::Updater)],
        },
        Case {
            what: "RevokeScorecardAccess",
            result: RevokeScorecardAccess {
                site_id: site.id,
                user_id: TARGET,
                scorecard_id: S1,
            }
            .decide(actor, site, None),
            expected: vec![revoked(TARGET, S1)],
        },
        Case {
            what: "HideOrganizationSettings",
            result: HideOrganizationSettings {
                site_id: site.id,
                user_id: TARGET,
                hidden: true,
            }
            .decide(actor, site),
            expected: vec![hidden(TARGET, true)],
        },
        Case {
            what: "DeactivateUser",
            result: DeactivateUser {
                site_id: site.id,
                user_id: TARGET,
            }
            .decide(actor, site),
            expected: vec![deactivated(TARGET)],
        },
        Case {
            what: "ReactivateUser",
            result: ReactivateUser {
                site_id: site.id,
                user_id: RETIRED,
            }
            .decide(actor, site),
            expected: vec![reactivated(RETIRED)],
        },
    ]
}

/// Every site-settings command (Instance Admin's) by `actor` on `site`.
fn site_setting_cases(actor: &Actor, site: &SiteState) -> Vec<(&'static str, Decision)> {
    vec![
        (
            "SetSeatLimit",
            SetSeatLimit {
                site_id: site.id,
                seat_limit: seats(3),
            }
            .decide(actor, site),
        ),
        (
            "SetParentSite",
            SetParentSite {
                site_id: site.id,
                parent: Some(sid(0xC)),
            }
            .decide(actor, site, &[]),
        ),
        (
            "ConfigureSelfRegistration",
            ConfigureSelfRegistration {
                site_id: site.id,
                enabled: false,
                model_site: None,
                model_user: None,
            }
            .decide(actor, site, None),
        ),
        (
            "RequireTwoFactor",
            RequireTwoFactor {
                site_id: site.id,
                required: true,
            }
            .decide(actor, site),
        ),
        (
            "RegisterSite (child)",
            RegisterSite {
                site_id: sid(0xC),
                code: code("CHILD"),
                name: name("Child"),
                seat_limit: seats(5),
                parent: Some(site.id),
            }
            .decide(actor, None, Some(site)),
        ),
    ]
}

// ---------------------------------------------------------------------------
// R-USER-1: role presets set default flags; flags can then be switched
// ---------------------------------------------------------------------------

#[test]
fn r_user_1_each_role_preset_gives_its_default_flags_on_add_user() {
    use PermissionFlag::*;
    let actions = [
        AddCommentary,
        AddEditAction,
        DeleteActions,
        UpdateStatus,
        AddToDos,
    ];
    let everything = flags(&PermissionFlag::ALL);
    let admin_level = [
        InstanceAdmin,
        Settings,
        ManageUsers,
        ScorecardDefaults,
        LanguageEditor,
        CalendarManager,
        ImportExport,
        AddEditReport,
    ];
    let builder: Permissions = everything
        .iter()
        .copied()
        .filter(|f| !admin_level.contains(f))
        .collect();
    let data_entry: Permissions = actions.into_iter().chain([DataEntry]).collect();
    let presenter: Permissions = actions.into_iter().collect();

    let site = given(site_a(10));
    for (role, expected) in [
        (Role::Administration, everything),
        (Role::ScorecardBuilder, builder),
        (Role::DataEntry, data_entry),
        (Role::Presenter, presenter),
    ] {
        then(
            AddUser {
                site_id: site.id,
                user_id: NEW,
                username: username("new@a.org"),
                name: name("New User"),
                role,
                email: None,
            }
            .decide(&by(A, A_ADMIN), &site),
            vec![SiteEvent::UserAdded {
                user: NewUser {
                    user_id: NEW,
                    username: username("new@a.org"),
                    name: name("New User"),
                    role,
                    permissions: expected,
                    email: None,
                },
                origin: UserOrigin::Added,
                scorecard_access: BTreeMap::new(),
                hide_organization_settings: false,
            }],
        );
    }
}

#[test]
fn r_user_1_change_user_role_resets_flags_to_the_new_preset() {
    // A Presenter who was given All Scorecards and Manage Users by hand.
    let site = given(
        [
            site_a(10),
            vec![
                added(TARGET, "target@a.org", Role::Presenter),
                permissions_set(
                    TARGET,
                    flags(&[
                        PermissionFlag::AddCommentary,
                        PermissionFlag::AllScorecards,
                        PermissionFlag::ManageUsers,
                    ]),
                ),
            ],
        ]
        .concat(),
    );
    let change = ChangeUserRole {
        site_id: site.id,
        user_id: TARGET,
        role: Role::DataEntry,
    }
    .decide(&by(A, A_ADMIN), &site);
    let preset = flags(&[
        PermissionFlag::AddCommentary,
        PermissionFlag::AddEditAction,
        PermissionFlag::DeleteActions,
        PermissionFlag::UpdateStatus,
        PermissionFlag::AddToDos,
        PermissionFlag::DataEntry,
    ]);
    then(
        change.clone(),
        vec![SiteEvent::UserRoleChanged {
            user_id: TARGET,
            role: Role::DataEntry,
            permissions: preset.clone(),
        }],
    );
    let after = apply(&site, change);
    assert_eq!(after.users[&TARGET].role, Role::DataEntry);
    assert_eq!(after.users[&TARGET].permissions, preset);
}

#[test]
fn r_user_1_set_permission_flags_then_switches_single_flags() {
    let site = given(
        [
            site_a(10),
            vec![added(TARGET, "target@a.org", Role::DataEntry)],
        ]
        .concat(),
    );
    let switch = SetPermissionFlags {
        site_id: site.id,
        user_id: TARGET,
        enable: flags(&[PermissionFlag::AllScorecards]),
        disable: flags(&[PermissionFlag::DataEntry]),
    }
    .decide(&by(A, A_ADMIN), &site);
    let expected = flags(&[
        PermissionFlag::AddCommentary,
        PermissionFlag::AddEditAction,
        PermissionFlag::DeleteActions,
        PermissionFlag::UpdateStatus,
        PermissionFlag::AddToDos,
        PermissionFlag::AllScorecards,
    ]);
    then(
        switch.clone(),
        vec![permissions_set(TARGET, expected.clone())],
    );
    let after = apply(&site, switch);
    // The preset stays what it was; only the two flags moved.
    assert_eq!(after.users[&TARGET].role, Role::DataEntry);
    assert_eq!(after.users[&TARGET].permissions, expected);
}

// ---------------------------------------------------------------------------
// R-USER-2: seed 001's flags, each switchable one by one
// ---------------------------------------------------------------------------

#[test]
fn r_user_2_every_flag_of_seed_001_exists() {
    use PermissionFlag::*;
    let seed_001 = [
        ("Add Commentary", AddCommentary),
        ("Edit Scorecard Object Notes", EditScorecardObjectNotes),
        ("Embed Scorecard", EmbedScorecard),
        ("Add/Edit Scorecard Objects", AddEditScorecardObjects),
        ("Delete Scorecard Objects", DeleteScorecardObjects),
        ("Add/Edit Action", AddEditAction),
        ("Delete Actions", DeleteActions),
        ("Data Entry", DataEntry),
        ("Edit Graph Settings", EditGraphSettings),
        ("Update Status", UpdateStatus),
        ("Add To-Do's", AddToDos),
        ("Instance Admin", InstanceAdmin),
        ("Settings", Settings),
        ("Manage Users", ManageUsers),
        ("Scorecard Defaults", ScorecardDefaults),
        ("Language Editor", LanguageEditor),
        ("Calendar Manager", CalendarManager),
        ("Import/Export", ImportExport),
        ("All Scorecards", AllScorecards),
        ("Compyle Access", CompyleAccess),
        ("View Reports", ViewReports),
        ("Add/Edit Report", AddEditReport),
    ];
    for (label, flag) in seed_001 {
        assert_eq!(PermissionFlag::parse(label), Ok(flag), "{label}");
    }
    let listed: Permissions = seed_001.iter().map(|(_, f)| *f).collect();
    assert_eq!(listed, flags(&PermissionFlag::ALL));
    assert_eq!(listed.len(), PermissionFlag::ALL.len());
}

#[test]

fn r_user_2_seed_001_compyle_access_flag_exists() {
    assert!(PermissionFlag::parse("Compyle Access").is_ok());
}

#[test]
fn r_user_2_every_flag_can_be_enabled_and_disabled_one_by_one() {
    // A Presenter; each flag is switched on, then off, alone.
    let mut site = given(
        [
            site_a(10),
            vec![
                added(TARGET, "target@a.org", Role::Presenter),
                permissions_set(TARGET, no_flags()),
            ],
        ]
        .concat(),
    );
    let admin = by(A, A_ADMIN);
    for flag in PermissionFlag::ALL {
        let enable = SetPermissionFlags {
            site_id: site.id,
            user_id: TARGET,
            enable: flags(&[flag]),
            disable: no_flags(),
        }
        .decide(&admin, &site);
        then(
            enable.clone(),
            vec![permissions_set(TARGET, flags(&[flag]))],
        );
        site = apply(&site, enable);
        assert!(site.users[&TARGET].has(flag), "{flag:?} is on");

        let disable = SetPermissionFlags {
            site_id: site.id,
            user_id: TARGET,
            enable: no_flags(),
            disable: flags(&[flag]),
        }
        .decide(&admin, &site);
        then(disable.clone(), vec![permissions_set(TARGET, no_flags())]);
        site = apply(&site, disable);
        assert!(!site.users[&TARGET].has(flag), "{flag:?} is off");
    }

    // And switched off one by one from a full set, every other flag stays.
    let mut site = given(
        [
            site_a(10),
            vec![added(TARGET, "target@a.org", Role::Administration)],
        ]
        .concat(),
    );
    let mut remaining = flags(&PermissionFlag::ALL);
    for flag in PermissionFlag::ALL {
        remaining.remove(&flag);
        let disable = SetPermissionFlags {
            site_id: site.id,
            user_id: TARGET,
            enable: no_flags(),
            disable: flags(&[flag]),
        }
        .decide(&admin, &site);
        then(
            disable.clone(),
            vec![permissions_set(TARGET, remaining.clone())],
        );
        site = apply(&site, disable);
    }
    assert_eq!(site.users[&TARGET].permissions, no_flags());
}

// ---------------------------------------------------------------------------
// R-USER-3: per-scorecard access levels
// ---------------------------------------------------------------------------

#[test]
fn r_user_3_grant_scorecard_access_at_each_level_on_an_own_scorecard() {
    let site = site_a_with_staff(vec![]);
    for level in AccessLevel::ALL {
        then(
            GrantScorecardAccess {
                site_id: site.id,
                owner_site: None,
                user_id: TARGET,
                scorecard_id: S2,
                level,
            }
            .decide(
                &by(A, A_ADMIN),
                &site,
                Some(AccessLevel::ScorecardAdmin),
                None,
            ),
            vec![granted(TARGET, S2, level)],
        );
    }
}

#[test]
fn r_user_3_different_levels_on_different_scorecards() {
    let mut site = given(
        [
            site_a(10),
            vec![added(TARGET, "target@a.org", Role::Presenter)],
        ]
        .concat(),
    );
    let admin = by(A, A_ADMIN);
    for (scorecard_id, level) in [
        (S1, AccessLevel::Browser),
        (S2, AccessLevel::Updater),
        (S3, AccessLevel::Editor),
        (S4, AccessLevel::ScorecardAdmin),
        // A later grant replaces the level on that scorecard.
        (S1, AccessLevel::Editor),
    ] {
        let grant = GrantScorecardAccess {
            site_id: site.id,
            owner_site: None,
            user_id: TARGET,
            scorecard_id,
            level,
        }
        .decide(&admin, &site, Some(AccessLevel::ScorecardAdmin), None);
        site = apply(&site, grant);
    }
    assert_eq!(
        site.users[&TARGET].scorecard_access,
        BTreeMap::from([
            (S1, AccessLevel::Editor),
            (S2, AccessLevel::Updater),
            (S3, AccessLevel::Editor),
            (S4, AccessLevel::ScorecardAdmin),
        ])
    );
}

#[test]
fn r_user_3_a_partners_shared_scorecard_is_browser_at_most() {
    let site = site_a_with_staff(vec![]);
    let shared = scid(0xB51);
    let grant = |level| {
        GrantScorecardAccess {
            site_id: site.id,
            owner_site: Some(B),
            user_id: TARGET,
            scorecard_id: shared,
            level,
        }
        .decide(&by(A, A_ADMIN), &site, Some(AccessLevel::Browser), None)
    };
    then(
        grant(AccessLevel::Browser),
        vec![granted(TARGET, shared, AccessLevel::Browser)],
    );
    for level in [
        AccessLevel::Updater,
        AccessLevel::Editor,
        AccessLevel::ScorecardAdmin,
    ] {
        then_err(grant(level), DomainError::SharedContentReadOnly);
    }
}

#[test]
fn r_user_3_a_scorecard_neither_own_nor_shared_is_not_found() {
    let site = site_a_with_staff(vec![]);
    let elsewhere = scid(0xC51);
    then_err(
        GrantScorecardAccess {
            site_id: site.id,
            owner_site: None,
            user_id: TARGET,
            scorecard_id: elsewhere,
            level: AccessLevel::Browser,
        }
        .decide(&by(A, A_ADMIN), &site, None, None),
        DomainError::ScorecardNotFound(elsewhere),
    );
}

#[test]
fn r_user_3_revoke_scorecard_access() {
    let site = site_a_with_staff(vec![granted(TARGET, S2, AccessLevel::Updater)]);
    let revoke = RevokeScorecardAccess {
        site_id: site.id,
        user_id: TARGET,
        scorecard_id: S1,
    };
    let result = revoke.decide(&by(A, A_ADMIN), &site, None);
    then(result.clone(), vec![revoked(TARGET, S1)]);
    let after = apply(&site, result);
    assert_eq!(
        after.users[&TARGET].scorecard_access,
        BTreeMap::from([(S2, AccessLevel::Updater)])
    );
    // Nothing left to revoke on S1.
    then_err(
        revoke.decide(&by(A, A_ADMIN), &after, None),
        DomainError::ScorecardNotFound(S1),
    );
}

// R-USER-4 (All Scorecards and assigned scorecards decide what a user *sees*)
// is answered by the read models, not by these decisions: no test here.

// ---------------------------------------------------------------------------
// R-USER-5: only Manage Users or Instance Admin manage users
// ---------------------------------------------------------------------------

#[test]
fn r_user_5_without_manage_users_or_instance_admin_every_user_command_is_refused() {
    // Scorecard Builder has every flag but the admin-level ones.
    let everything_else: Permissions = PermissionFlag::ALL
        .into_iter()
        .filter(|f| *f != PermissionFlag::ManageUsers && *f != PermissionFlag::InstanceAdmin)
        .collect();
    let site = site_a_with_staff(actor_with(everything_else));
    let cases = user_management_cases(&by(A, ACTOR), &site);
    assert_eq!(cases.len(), 11);
    for case in cases {
        assert_eq!(
            case.result,
            Err(DomainError::NotPermitted {
                needed: PermissionFlag::ManageUsers
            }),
            "{}",
            case.what
        );
    }
}

#[test]
fn r_user_5_only_manage_users_or_instance_admin_manage_users() {
    for permissions in [
        flags(&[PermissionFlag::ManageUsers]),
        flags(&[PermissionFlag::InstanceAdmin]),
    ] {
        let site = site_a_with_staff(actor_with(permissions.clone()));
        for case in user_management_cases(&by(A, ACTOR), &site) {
            assert_eq!(
                case.result,
                Ok(case.expected),
                "{} with {permissions:?}",
                case.what
            );
        }
    }
}

#[test]
fn r_user_5_an_operator_may_manage_users() {
    let site = site_a_with_staff(vec![]);
    for case in user_management_cases(&operator(), &site) {
        assert_eq!(case.result, Ok(case.expected), "{}", case.what);
    }
}

#[test]
fn r_user_5_the_system_issues_no_user_commands() {
    let site = site_a_with_staff(vec![]);
    for case in user_management_cases(&Actor::System, &site) {
        assert_eq!(case.result, Err(DomainError::NotAnIssuer), "{}", case.what);
    }
}

#[test]

fn r_user_5_manage_users_alone_cannot_grant_instance_admin() {
    let site = site_a_with_staff(actor_with(flags(&[PermissionFlag::ManageUsers])));
    let actor = by(A, ACTOR);
    for user_id in [ACTOR, TARGET] {
        then_err(
            SetPermissionFlags {
                site_id: site.id,
                user_id,
                enable: flags(&[PermissionFlag::InstanceAdmin]),
                disable: no_flags(),
            }
            .decide(&actor, &site),
            DomainError::NotPermitted {
                needed: PermissionFlag::InstanceAdmin,
            },
        );
        then_err(
            ChangeUserRole {
                site_id: site.id,
                user_id,
                role: Role::Administration,
            }
            .decide(&actor, &site),
            DomainError::NotPermitted {
                needed: PermissionFlag::InstanceAdmin,
            },
        );
    }
}

// ---------------------------------------------------------------------------
// R-USER-6: deactivation blocks the user, keeps and restores their settings
// ---------------------------------------------------------------------------

#[test]
fn r_user_6_deactivate_user_emits_user_deactivated() {
    let site = site_a_with_staff(vec![]);
    let result = DeactivateUser {
        site_id: site.id,
        user_id: TARGET,
    }
    .decide(&by(A, A_ADMIN), &site);
    then(result.clone(), vec![deactivated(TARGET)]);
    let after = apply(&site, result);
    assert!(!after.users[&TARGET].active);
    assert_eq!(after.active_users(), site.active_users() - 1);
}

#[test]
fn r_user_6_a_deactivated_user_is_refused_every_command_with_actor_inactive() {
    // A deactivated Administration user (every flag) tries everything,
    // including reactivating themself.
    let site = site_a_with_staff(vec![
        added(ACTOR, "actor@a.org", Role::Administration),
        deactivated(ACTOR),
    ]);
    let actor = by(A, ACTOR);
    for case in user_management_cases(&actor, &site) {
        assert_eq!(
            case.result,
            Err(DomainError::ActorInactive),
            "{}",
            case.what
        );
    }
    for (what, result) in site_setting_cases(&actor, &site) {
        assert_eq!(result, Err(DomainError::ActorInactive), "{what}");
    }
    then_err(
        ReactivateUser {
            site_id: site.id,
            user_id: ACTOR,
        }
        .decide(&actor, &site),
        DomainError::ActorInactive,
    );
}

#[test]
fn r_user_6_an_inactive_user_cannot_be_edited() {
    let site = site_a_with_staff(vec![]);
    let admin = by(A, A_ADMIN);
    let inactive = DomainError::UserInactive(RETIRED);
    then_err(
        ChangeUserRole {
            site_id: site.id,
            user_id: RETIRED,
            role: Role::Administration,
        }
        .decide(&admin, &site),
        inactive.clone(),
    );
    then_err(
        SetPermissionFlags {
            site_id: site.id,
            user_id: RETIRED,
            enable: flags(&[PermissionFlag::AllScorecards]),
            disable: no_flags(),
        }
        .decide(&admin, &site),
        inactive.clone(),
    );
    then_err(
        GrantScorecardAccess {
            site_id: site.id,
            owner_site: None,
            user_id: RETIRED,
            scorecard_id: S2,
            level: AccessLevel::Editor,
        }
        .decide(&admin, &site, Some(AccessLevel::ScorecardAdmin), None),
        inactive.clone(),
    );
    then_err(
        RevokeScorecardAccess {
            site_id: site.id,
            user_id: RETIRED,
            scorecard_id: S1,
        }
        .decide(&admin, &site, None),
        inactive.clone(),
    );
    then_err(
        HideOrganizationSettings {
            site_id: site.id,
            user_id: RETIRED,
            hidden: true,
        }
        .decide(&admin, &site),
        inactive.clone(),
    );
    then_err(
        DeactivateUser {
            site_id: site.id,
            user_id: RETIRED,
        }
        .decide(&admin, &site),
        inactive,
    );
    // The operator is held to the same rule.
    then_err(
        ChangeUserRole {
            site_id: site.id,
            user_id: RETIRED,
            role: Role::Administration,
        }
        .decide(&operator(), &site),
        DomainError::UserInactive(RETIRED),
    );
}

#[test]
fn r_user_6_reactivating_restores_the_same_settings() {
    // A user with a changed role, hand-switched flags, access to two
    // scorecards and hidden organisation settings.
    let site = site_a_with_staff(vec![
        SiteEvent::UserRoleChanged {
            user_id: TARGET,
            role: Role::ScorecardBuilder,
            permissions: Role::ScorecardBuilder.default_permissions(),
        },
        permissions_set(
            TARGET,
            flags(&[PermissionFlag::AllScorecards, PermissionFlag::ManageUsers]),
        ),
        granted(TARGET, S2, AccessLevel::ScorecardAdmin),
        hidden(TARGET, true),
    ]);
    let before: UserState = site.users[&TARGET].clone();
    assert!(before.active);

    let admin = by(A, A_ADMIN);
    let off = DeactivateUser {
        site_id: site.id,
        user_id: TARGET,
    }
    .decide(&admin, &site);
    let inactive = apply(&site, off);
    let kept = &inactive.users[&TARGET];
    assert!(!kept.active);
    assert_eq!(
        UserState {
            active: true,
            ..kept.clone()
        },
        before,
        "settings are kept while inactive"
    );

    let on = ReactivateUser {
        site_id: inactive.id,
        user_id: TARGET,
    }
    .decide(&admin, &inactive);
    then(on.clone(), vec![reactivated(TARGET)]);
    let back = apply(&inactive, on);
    assert_eq!(back.users[&TARGET], before);

    // Reactivating an active user is refused.
    then_err(
        ReactivateUser {
            site_id: back.id,
            user_id: TARGET,
        }
        .decide(&admin, &back),
        DomainError::UserActive(TARGET),
    );
}

// ---------------------------------------------------------------------------
// R-USER-7: the seat limit bounds active users
// ---------------------------------------------------------------------------

#[test]
fn r_user_7_adding_at_the_seat_limit_is_refused() {
    let site = given(
        [
            site_a(2),
            vec![added(TARGET, "target@a.org", Role::Presenter)],
        ]
        .concat(),
    );
    let full = DomainError::SeatLimitReached { limit: 2 };
    then_err(
        AddUser {
            site_id: site.id,
            user_id: NEW,
            username: username("new@a.org"),
            name: name("New"),
            role: Role::Presenter,
            email: None,
        }
        .decide(&by(A, A_ADMIN), &site),
        full.clone(),
    );
    then_err(
        AddExistingUser {
            site_id: site.id,
            user_id: NEW,
            from_site: B,
            from_user: B_PERSON,
            role: Role::Presenter,
        }
        .decide(&by(A, A_ADMIN), &site, &site_b()),
        full.clone(),
    );
    then_err(
        AddUser {
            site_id: site.id,
            user_id: NEW,
            username: username("new@a.org"),
            name: name("New"),
            role: Role::Presenter,
            email: None,
        }
        .decide(&operator(), &site),
        full,
    );
}

#[test]
fn r_user_7_an_inactive_user_frees_a_seat_and_reactivating_past_the_limit_is_refused() {
    let site = given(
        [
            site_a(2),
            vec![
                added(RETIRED, "retired@a.org", Role::Presenter),
                deactivated(RETIRED),
            ],
        ]
        .concat(),
    );
    let admin = by(A, A_ADMIN);
    let add = AddUser {
        site_id: site.id,
        user_id: NEW,
        username: username("new@a.org"),
        name: name("Name of new@a.org"),
        role: Role::Presenter,
        email: None,
    }
    .decide(&admin, &site);
    then(add.clone(), vec![added(NEW, "new@a.org", Role::Presenter)]);
    let full = apply(&site, add);
    assert_eq!(full.active_users(), 2);
    then_err(
        ReactivateUser {
            site_id: full.id,
            user_id: RETIRED,
        }
        .decide(&admin, &full),
        DomainError::SeatLimitReached { limit: 2 },
    );
}

#[test]
fn r_user_7_an_import_larger_than_the_free_seats_is_refused_whole() {
    // 3 seats, 1 taken: 2 free.
    let site = given(site_a(3));
    let rows = vec![
        row(2, uid(0x101), "one@a.org", "One", Role::Presenter),
        row(3, uid(0x102), "two@a.org", "Two", Role::Presenter),
        row(4, uid(0x103), "three@a.org", "Three", Role::Presenter),
    ];
    then_err(
        ImportUsers::decide_rows(&by(A, A_ADMIN), &site, &rows),
        DomainError::SeatLimitReached { limit: 3 },
    );
    // Two rows fit exactly.
    then(
        ImportUsers::decide_rows(&by(A, A_ADMIN), &site, &rows[..2]),
        vec![
            imported(2, uid(0x101), "one@a.org", "One", Role::Presenter),
            imported(3, uid(0x102), "two@a.org", "Two", Role::Presenter),
        ],
    );
}

#[test]
fn r_user_7_lowering_the_limit_below_the_active_users_is_allowed_but_blocks_adds() {
    // 5 seats; A_ADMIN, TARGET and U3 active; RETIRED inactive.
    let u3 = uid(0xA9);
    let site = given(
        [
            site_a(5),
            vec![
                added(TARGET, "target@a.org", Role::Presenter),
                added(u3, "u3@a.org", Role::Presenter),
                added(RETIRED, "retired@a.org", Role::Presenter),
                deactivated(RETIRED),
            ],
        ]
        .concat(),
    );
    let admin = by(A, A_ADMIN);
    let lower = SetSeatLimit {
        site_id: site.id,
        seat_limit: seats(2),
    }
    .decide(&admin, &site);
    then(
        lower.clone(),
        vec![SiteEvent::SeatLimitSet {
            seat_limit: seats(2),
        }],
    );
    let over = apply(&site, lower);
    // Nobody is deactivated by it.
    assert_eq!(over.seat_limit, seats(2));
    assert_eq!(over.active_users(), 3);

    let full = DomainError::SeatLimitReached { limit: 2 };
    let add = AddUser {
        site_id: over.id,
        user_id: NEW,
        username: username("new@a.org"),
        name: name("Name of new@a.org"),
        role: Role::Presenter,
        email: None,
    };
    then_err(add.decide(&admin, &over), full.clone());
    then_err(
        ReactivateUser {
            site_id: over.id,
            user_id: RETIRED,
        }
        .decide(&admin, &over),
        full.clone(),
    );
    then_err(
        ImportUsers::decide_rows(
            &admin,
            &over,
            &[row(2, NEW2, "imp@a.org", "Imp", Role::Presenter)],
        ),
        full.clone(),
    );

    // Back at the limit (2 active of 2): still full.
    let at_limit = apply(
        &over,
        DeactivateUser {
            site_id: over.id,
            user_id: u3,
        }
        .decide(&admin, &over),
    );
    then_err(add.decide(&admin, &at_limit), full);
    // Below it: one add fits.
    let below = apply(
        &at_limit,
        DeactivateUser {
            site_id: at_limit.id,
            user_id: TARGET,
        }
        .decide(&admin, &at_limit),
    );
    then(
        add.decide(&admin, &below),
        vec![added(NEW, "new@a.org", Role::Presenter)],
    );
}

// ---------------------------------------------------------------------------
// R-USER-8: CSV import, all or nothing
// ---------------------------------------------------------------------------

#[test]
fn r_user_8_a_good_file_adds_every_row() {
    let csv = "\u{feff}\"Role\",Name,USERNAME,Office\r\n\
               presenter,Ann Lee,Ann@A.org,HQ\r\n\
               \r\n\
               Scorecard Builder,\"Lee, Bob\",bob@a.org,\r\n\
               data-entry,\"Cy \"\"CJ\"\" Jones\",cy@a.org,Remote\r\n";
    let rows = parse_users_csv(csv, ids_from(0x101)).expect("a good file parses");
    assert_eq!(
        rows,
        vec![
            row(2, uid(0x101), "ann@a.org", "Ann Lee", Role::Presenter),
            row(
                4,
                uid(0x102),
                "bob@a.org",
                "Lee, Bob",
                Role::ScorecardBuilder
            ),
            row(
                5,
                uid(0x103),
                "cy@a.org",
                "Cy \"CJ\" Jones",
                Role::DataEntry
            ),
        ]
    );

    let site = given(site_a(10));
    let result = ImportUsers::decide_rows(&by(A, A_ADMIN), &site, &rows);
    then(
        result.clone(),
        vec![
            imported(2, uid(0x101), "ann@a.org", "Ann Lee", Role::Presenter),
            imported(
                4,
                uid(0x102),
                "bob@a.org",
                "Lee, Bob",
                Role::ScorecardBuilder,
            ),
            imported(
                5,
                uid(0x103),
                "cy@a.org",
                "Cy \"CJ\" Jones",
                Role::DataEntry,
            ),
        ],
    );
    let after = apply(&site, result);
    assert_eq!(after.active_users(), 4);
    assert_eq!(after.usernames[&username("bob@a.org").key()], uid(0x102));
}

#[test]
fn r_user_8_bad_rows_reject_the_whole_file_with_an_error_per_bad_field() {
    // The unclosed quote comes last: a quoted field may span lines, so one
    // that is never closed runs to the end of the file.
    let csv = "username,name,role\n\
               ok@a.org,Okay,presenter\n\
               bad user,Bob,presenter\n\
               cy@a.org,,wizard\n\
               OK@a.org,Dup,presenter\n\
               dee@a.org,Dee\n\
               fine@a.org,Fine,data entry\n\
               \"open,x,y\n";
    let mut ids_given = 0;
    let result = parse_users_csv(csv, || {
        ids_given += 1;
        UserId::new()
    });
    assert_eq!(
        result,
        Err(DomainError::ImportRejected(vec![
            row_error(
                3,
                "username",
                InvalidValue::Username("bad user".into()).to_string()
            ),
            row_error(
                4,
                "name",
                InvalidValue::Text {
                    field: "name",
                    max: Name::MAX
                }
                .to_string()
            ),
            row_error(4, "role", InvalidValue::Role("wizard".into()).to_string()),
            row_error(5, "username", "ok@a.org appears already on line 2"),
            row_error(6, "role", InvalidValue::Role(String::new()).to_string()),
            row_error(8, "row", "a quoted field is not closed"),
        ]))
    );
    // The good rows (2 and 7) got ids but nothing reaches ImportUsers: there
    // is no Vec<ImportRow> to decide on, so nothing is applied.
    assert_eq!(ids_given, 2);
}

#[test]
fn r_user_8_quoted_fields_hold_commas_quotes_and_line_breaks_and_lines_stay_the_files() {
    // Notes that span lines (2 and 3, then 5 to 7) are one field; a quoted
    // comma and doubled quotes are the name's; every row keeps the line an
    // editor shows it on.
    let good = "username,name,notes,role\r\n\
                ann@a.org,\"Lee, Ann \"\"AL\"\"\",\"1 Main St\r\nSpringfield\",presenter\r\n\
                bob@a.org,Bob,,presenter\r\n\
                cy@a.org,Cy,\"three\n\nlines\",data entry\n\
                dee@a.org,Dee,,presenter\n";
    let rows = parse_users_csv(good, ids_from(0x101)).expect("a good file parses");
    assert_eq!(
        rows,
        vec![
            row(
                2,
                uid(0x101),
                "ann@a.org",
                "Lee, Ann \"AL\"",
                Role::Presenter
            ),
            row(4, uid(0x102), "bob@a.org", "Bob", Role::Presenter),
            row(5, uid(0x103), "cy@a.org", "Cy", Role::DataEntry),
            row(8, uid(0x104), "dee@a.org", "Dee", Role::Presenter),
        ]
    );

    // Bad rows after a multi-line field are reported at their own lines; a
    // line break in a name is a bad name (a control character), reported
    // at the line its row starts on.
    let bad = "username,name,notes,role\n\
               ann@a.org,Ann,\"two\nlines\",presenter\n\
               bob@a.org,Bob,,wizard\n\
               cy@a.org,\"Cy\nJones\",,presenter\n\
               ann@a.org,\"Ann, again\",,presenter\n";
    then_err(
        parse_users_csv(bad, ids_from(0x101)).map(|_| vec![]),
        DomainError::ImportRejected(vec![
            row_error(4, "role", InvalidValue::Role("wizard".into()).to_string()),
            row_error(
                5,
                "name",
                InvalidValue::Text {
                    field: "name",
                    max: Name::MAX,
                }
                .to_string(),
            ),
            row_error(7, "username", "ann@a.org appears already on line 2"),
        ]),
    );
}

#[test]
fn r_user_8_an_unclosed_quote_runs_to_the_end_of_the_file_and_is_reported_where_it_starts() {
    // Rows before it are checked as usual; what follows it is inside it.
    let csv = "username,name,role\n\
               ann@a.org,Ann,wizard\n\
               bob@a.org,\"Bob,presenter\n\
               cy@a.org,Cy,also not a role\n";
    then_err(
        parse_users_csv(csv, ids_from(0x101)).map(|_| vec![]),
        DomainError::ImportRejected(vec![
            row_error(2, "role", InvalidValue::Role("wizard".into()).to_string()),
            row_error(3, "row", "a quoted field is not closed"),
        ]),
    );
    // In the header, it leaves no header.
    then_err(
        parse_users_csv(
            "username,\"name,role\nann@a.org,Ann,presenter\n",
            ids_from(0x101),
        )
        .map(|_| vec![]),
        DomainError::ImportRejected(vec![row_error(1, "header", "a quoted field is not closed")]),
    );
    // A closing quote on the last line, without a final line break, closes it.
    let rows = parse_users_csv(
        "username,name,role\nann@a.org,Ann,\"presenter\"",
        ids_from(0x101),
    )
    .expect("a closed quote at the end of the file");
    assert_eq!(
        rows,
        vec![row(2, uid(0x101), "ann@a.org", "Ann", Role::Presenter)]
    );
}

#[test]
fn r_user_8_a_header_without_the_required_columns_is_rejected() {
    then_err(
        parse_users_csv("username,name,office\nann@a.org,Ann,HQ\n", ids_from(0x101))
            .map(|_| vec![]),
        DomainError::ImportRejected(vec![row_error(1, "role", "the header has no role column")]),
    );
}

#[test]
fn r_user_8_a_username_taken_on_the_site_is_reported_by_line_and_nothing_is_applied() {
    // `retired@a.org` is inactive: its username is still taken.
    let site = site_a_with_staff(vec![]);
    let csv = "username,name,role\n\
               new@a.org,New,presenter\n\
               Target@A.org,Someone Else,presenter\n\
               other@a.org,Other,presenter\n\
               retired@a.org,Retired Again,presenter\n";
    let rows = parse_users_csv(csv, ids_from(0x101)).expect("the file itself is good");
    then_err(
        ImportUsers::decide_rows(&by(A, A_ADMIN), &site, &rows),
        DomainError::ImportRejected(vec![
            row_error(3, "username", "target@a.org is taken on this site"),
            row_error(5, "username", "retired@a.org is taken on this site"),
        ]),
    );
}

#[test]
fn r_user_8_import_users_checks_duplicates_inside_the_batch() {
    // Rows built by hand (not through parse_users_csv) are checked too.
    let site = given(site_a(10));
    then_err(
        ImportUsers::decide_rows(
            &by(A, A_ADMIN),
            &site,
            &[
                row(2, uid(0x101), "ann@a.org", "Ann", Role::Presenter),
                row(3, uid(0x102), "bob@a.org", "Bob", Role::Presenter),
                row(4, uid(0x103), "ANN@a.org", "Ann Again", Role::Presenter),
            ],
        ),
        DomainError::ImportRejected(vec![row_error(
            4,
            "username",
            "ann@a.org appears already on line 2",
        )]),
    );
}

#[test]

fn r_user_8_a_duplicate_of_a_row_with_another_bad_field_is_reported_too() {
    let csv = "username,name,role\n\
               ann@a.org,Ann,wizard\n\
               ann@a.org,Ann Two,presenter\n";
    then_err(
        parse_users_csv(csv, ids_from(0x101)).map(|_| vec![]),
        DomainError::ImportRejected(vec![
            row_error(2, "role", InvalidValue::Role("wizard".into()).to_string()),
            row_error(3, "username", "ann@a.org appears already on line 2"),
        ]),
    );
}

#[test]

fn r_user_8_import_users_refuses_a_row_with_an_existing_user_id() {
    let site = site_a_with_staff(vec![]);
    then_err(
        ImportUsers::decide_rows(
            &by(A, A_ADMIN),
            &site,
            &[row(2, TARGET, "someone@a.org", "Someone", Role::Presenter)],
        ),
        DomainError::UserExists(TARGET),
    );
}

// ---------------------------------------------------------------------------
// R-USER-9: no acting across sites
// ---------------------------------------------------------------------------

#[test]
fn r_user_9_a_user_of_another_site_is_refused_on_every_site_and_user_command() {
    let site = site_a_with_staff(vec![]);
    // B's Administration user holds every flag, on B.
    let stranger = by(B, B_ADMIN);
    let cross = DomainError::CrossSite {
        actor_site: B,
        target_site: A,
    };
    for case in user_management_cases(&stranger, &site) {
        assert_eq!(case.result, Err(cross.clone()), "{}", case.what);
    }
    for (what, result) in site_setting_cases(&stranger, &site) {
        assert_eq!(result, Err(cross.clone()), "{what}");
    }
    // Even naming a user id that also exists on A does not help.
    then_err(
        AddUser {
            site_id: site.id,
            user_id: NEW,
            username: username("new@a.org"),
            name: name("New"),
            role: Role::Presenter,
            email: None,
        }
        .decide(&by(B, A_ADMIN), &site),
        cross,
    );
}

#[test]
fn r_user_9_add_existing_user_copies_username_name_and_email_from_another_site() {
    let site = given(site_a(10));
    let b = site_b();
    let result = AddExistingUser {
        site_id: site.id,
        user_id: NEW,
        from_site: B,
        from_user: B_PERSON,
        role: Role::Presenter,
    }
    .decide(&by(A, A_ADMIN), &site, &b);
    then(
        result.clone(),
        vec![SiteEvent::UserAdded {
            user: NewUser {
                user_id: NEW,
                username: username("person@b.org"),
                name: name("Pat Person"),
                role: Role::Presenter,
                permissions: Role::Presenter.default_permissions(),
                email: Some(email("pat@b.org")),
            },
            origin: UserOrigin::ExistingAccount {
                site_id: B,
                user_id: B_PERSON,
            },
            scorecard_access: BTreeMap::new(),
            hide_organization_settings: false,
        }],
    );
    let after = apply(&site, result);
    // The same person now holds two accounts, one per site.
    assert_eq!(
        after.users[&NEW].username,
        b.users[&B_PERSON].username.clone()
    );

    // A second copy of the same person is a username taken on A.
    then_err(
        AddExistingUser {
            site_id: after.id,
            user_id: NEW2,
            from_site: B,
            from_user: B_PERSON,
            role: Role::Presenter,
        }
        .decide(&by(A, A_ADMIN), &after, &b),
        DomainError::UsernameTaken(username("person@b.org")),
    );
    // The source must exist on the other site, and be on another site.
    then_err(
        AddExistingUser {
            site_id: site.id,
            user_id: NEW2,
            from_site: B,
            from_user: uid(0xB9),
            role: Role::Presenter,
        }
        .decide(&by(A, A_ADMIN), &site, &b),
        DomainError::UserNotFound(uid(0xB9)),
    );
    then_err(
        AddExistingUser {
            site_id: site.id,
            user_id: NEW2,
            from_site: A,
            from_user: A_ADMIN,
            role: Role::Presenter,
        }
        .decide(&by(A, A_ADMIN), &site, &site),
        DomainError::UserExists(A_ADMIN),
    );
}

// ---------------------------------------------------------------------------
// Usernames are unique per site, case-insensitively ("Who and what": User)
// ---------------------------------------------------------------------------

#[test]
fn usernames_unique_per_site_case_insensitively() {
    let site = given(
        [
            site_a(10),
            vec![
                added(TARGET, "ann@x.org", Role::Presenter),
                added(RETIRED, "bob@x.org", Role::Presenter),
                deactivated(RETIRED),
            ],
        ]
        .concat(),
    );
    let add = |login: &str| {
        AddUser {
            site_id: site.id,
            user_id: NEW,
            username: username(login),
            name: name("Someone"),
            role: Role::Presenter,
            email: None,
        }
        .decide(&by(A, A_ADMIN), &site)
    };
    then_err(
        add("Ann@X.org"),
        DomainError::UsernameTaken(username("ann@x.org")),
    );
    // An inactive user keeps their username.
    then_err(
        add("BOB@x.org"),
        DomainError::UsernameTaken(username("bob@x.org")),
    );
    // A user id that exists already is refused too.
    then_err(
        AddUser {
            site_id: site.id,
            user_id: TARGET,
            username: username("fresh@x.org"),
            name: name("Fresh"),
            role: Role::Presenter,
            email: None,
        }
        .decide(&by(A, A_ADMIN), &site),
        DomainError::UserExists(TARGET),
    );
    // The same username on another site is another account.
    then(
        AddUser {
            site_id: B,
            user_id: NEW,
            username: username("Ann@X.org"),
            name: name("Name of ann@x.org"),
            role: Role::Presenter,
            email: None,
        }
        .decide(&by(B, B_ADMIN), &site_b()),
        vec![added(NEW, "ann@x.org", Role::Presenter)],
    );
}

// ---------------------------------------------------------------------------
// Usernames that look alike are one username (R-USER-5 adding users, R-USER-8
// importing them, R-USER-9 copying them, R-ONB-2 a self-registered manager)
// ---------------------------------------------------------------------------

/// The three look-alikes of `admin@fund.example` a black-box test added side
/// by side: a Cyrillic `а`, a zero-width space, a fullwidth `ａ`.
const LOOK_ALIKES: [&str; 3] = [
    "\u{430}dmin@fund.example",
    "admin\u{200b}@fund.example",
    "\u{ff41}dmin@fund.example",
];

fn add_user(login: &str) -> AddUser {
    AddUser {
        site_id: A,
        user_id: NEW,
        username: username(login),
        name: name("Someone"),
        role: Role::Presenter,
        email: None,
    }
}

#[test]
fn r_user_5_a_username_that_looks_like_a_taken_one_is_taken() {
    // Given admin@fund.example on site A; when a look-alike is added; then
    // it is taken, naming the username it looks like.
    let site = given(
        [
            site_a(10),
            vec![added(TARGET, "admin@fund.example", Role::Presenter)],
        ]
        .concat(),
    );
    for lookalike in LOOK_ALIKES {
        then_err(
            add_user(lookalike).decide(&by(A, A_ADMIN), &site),
            DomainError::UsernameLooksTaken {
                username: username(lookalike),
                existing: username("admin@fund.example"),
            },
        );
    }
    // Confusable ASCII too: l and 1, rn and m.
    let site = given(
        [
            site_a(10),
            vec![added(TARGET, "bill@x.org", Role::Presenter)],
        ]
        .concat(),
    );
    for lookalike in ["bi1l@x.org", "biil@x.org"] {
        assert!(
            matches!(
                add_user(lookalike).decide(&by(A, A_ADMIN), &site),
                Err(DomainError::UsernameLooksTaken { .. })
            ) == (lookalike == "bi1l@x.org"),
            "{lookalike}"
        );
    }
    let err = add_user(LOOK_ALIKES[1])
        .decide(
            &by(A, A_ADMIN),
            &given(
                [
                    site_a(10),
                    vec![added(TARGET, "admin@fund.example", Role::Presenter)],
                ]
                .concat(),
            ),
        )
        .unwrap_err();
    assert_eq!(err.code(), "username_taken");
    assert_eq!(
        err.to_string(),
        "username admin<U+200B>@fund.example looks the same as admin@fund.example, which is taken on this site"
    );
}

#[test]
fn r_user_5_a_new_username_that_could_pass_for_another_is_an_invalid_value() {
    // Given a site without the name they imitate; when a look-alike is
    // added; then it is refused as an invalid value saying why, and a
    // username in one script per part is added.
    let site = given(site_a(10));
    for (lookalike, why) in LOOK_ALIKES.into_iter().zip([
        "mixes scripts (Cyrillic and Latin) in '\u{430}dmin'",
        "has an invisible character (U+200B) at position 6",
        "a compatibility form of a plain character: type admin@fund.example instead",
    ]) {
        let err = add_user(lookalike)
            .decide(&by(A, A_ADMIN), &site)
            .unwrap_err();
        assert!(
            matches!(
                err,
                DomainError::InvalidValue(InvalidValue::LookAlike {
                    field: "username",
                    ..
                })
            ),
            "{lookalike:?}: {err:?}"
        );
        assert_eq!(err.code(), "invalid_value");
        assert!(err.to_string().contains(why), "{lookalike:?}: {err}");
    }
    for bidi in [
        "admin\u{202e}gro.x@",
        "\u{2066}admin@x.org",
        "adm\u{ad}in@x.org",
    ] {
        assert!(matches!(
            add_user(bidi).decide(&by(A, A_ADMIN), &site),
            Err(DomainError::InvalidValue(InvalidValue::LookAlike { .. }))
        ));
    }
    then(
        add_user("иван@fund.example").decide(&by(A, A_ADMIN), &site),
        vec![SiteEvent::UserAdded {
            user: NewUser {
                user_id: NEW,
                username: username("иван@fund.example"),
                name: name("Someone"),
                role: Role::Presenter,
                permissions: Role::Presenter.default_permissions(),
                email: None,
            },
            origin: UserOrigin::Added,
            scorecard_access: BTreeMap::new(),
            hide_organization_settings: false,
        }],
    );
}

#[test]
fn r_user_5_look_alikes_stored_before_still_load_and_hold_their_names() {
    // The log is immutable: given users whose look-alike usernames were
    // stored before these rules, the site still folds, every user is
    // there, and the name they imitate cannot be added beside them.
    let mut events = site_a(10);
    for (n, lookalike) in LOOK_ALIKES.into_iter().enumerate() {
        events.push(added(uid(0x200 + n as u128), lookalike, Role::Presenter));
    }
    let site = given(events);
    assert_eq!(site.users.len(), 4);
    for (n, lookalike) in LOOK_ALIKES.into_iter().enumerate() {
        assert_eq!(
            site.users[&uid(0x200 + n as u128)].username,
            username(lookalike)
        );
    }
    // The first stored holds the key; the plain name looks like it.
    then_err(
        add_user("admin@fund.example").decide(&by(A, A_ADMIN), &site),
        DomainError::UsernameLooksTaken {
            username: username("admin@fund.example"),
            existing: username(LOOK_ALIKES[0]),
        },
    );
    // Each stored user can still be edited.
    then(
        DeactivateUser {
            site_id: site.id,
            user_id: uid(0x201),
        }
        .decide(&by(A, A_ADMIN), &site),
        vec![deactivated(uid(0x201))],
    );
}

#[test]
fn r_user_8_an_import_reports_look_alike_usernames_by_line_and_applies_nothing() {
    let site = given(
        [
            site_a(10),
            vec![added(TARGET, "admin@fund.example", Role::Presenter)],
        ]
        .concat(),
    );
    let rows = vec![
        row(2, uid(0x101), LOOK_ALIKES[0], "Cyrillic", Role::Presenter),
        row(3, uid(0x102), "ann@fund.example", "Ann", Role::Presenter),
        row(
            4,
            uid(0x103),
            "\u{ff41}nn@fund.example",
            "Fullwidth Ann",
            Role::Presenter,
        ),
        row(
            5,
            uid(0x104),
            "bob\u{200d}@fund.example",
            "Joined Bob",
            Role::Presenter,
        ),
    ];
    then_err(
        ImportUsers::decide_rows(&by(A, A_ADMIN), &site, &rows),
        DomainError::ImportRejected(vec![
            row_error(
                2,
                "username",
                "\u{430}dmin@fund.example looks the same as admin@fund.example, which is taken on this site",
            ),
            row_error(
                4,
                "username",
                "\u{ff41}nn@fund.example looks the same as ann@fund.example on line 3",
            ),
            row_error(
                5,
                "username",
                "username bob<U+200D>@fund.example has an invisible character (U+200D) at position 4",
            ),
        ]),
    );
}

#[test]
fn r_user_9_add_existing_user_refuses_a_username_that_looks_taken() {
    // Given B's person@b.org, and on A a look-alike stored before the
    // rules; when A adds B's person; then the username looks taken.
    let site = given(
        [
            site_a(10),
            vec![added(TARGET, "pers\u{43e}n@b.org", Role::Presenter)],
        ]
        .concat(),
    );
    then_err(
        AddExistingUser {
            site_id: site.id,
            user_id: NEW,
            from_site: B,
            from_user: B_PERSON,
            role: Role::Presenter,
        }
        .decide(&by(A, A_ADMIN), &site, &site_b()),
        DomainError::UsernameLooksTaken {
            username: username("person@b.org"),
            existing: username("pers\u{43e}n@b.org"),
        },
    );
}

// ---------------------------------------------------------------------------
// R-ONB-1: parent sites
// ---------------------------------------------------------------------------

#[test]
fn r_onb_1_register_site_with_a_parent_needs_the_parents_instance_admin() {
    let child = sid(0xC);
    let register = RegisterSite {
        site_id: child,
        code: code("child"),
        name: name("Child"),
        seat_limit: seats(5),
        parent: Some(A),
    };
    let expected = vec![SiteEvent::SiteRegistered {
        site_id: child,
        code: code("CHILD"),
        name: name("Child"),
        seat_limit: seats(5),
        parent: Some(A),
    }];
    let group = site_a_with_staff(actor_with(flags(&[PermissionFlag::ManageUsers])));

    then(
        register.decide(&by(A, A_ADMIN), None, Some(&group)),
        expected.clone(),
    );
    then(register.decide(&operator(), None, Some(&group)), expected);
    // Manage Users is not enough.
    then_err(
        register.decide(&by(A, ACTOR), None, Some(&group)),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    );
    // An Instance Admin of another site is not the group's.
    then_err(
        register.decide(&by(B, B_ADMIN), None, Some(&group)),
        DomainError::CrossSite {
            actor_site: B,
            target_site: A,
        },
    );
    // The parent must exist; the new site must not.
    then_err(
        register.decide(&by(A, A_ADMIN), None, None),
        DomainError::SiteNotFound(A),
    );
    let existing = given(vec![registered(child, "CHILD", 5)]);
    then_err(
        register.decide(&by(A, A_ADMIN), Some(&existing), Some(&group)),
        DomainError::SiteExists(child),
    );
}

#[test]
fn r_onb_1_register_site_without_a_parent_needs_an_operator() {
    let register = RegisterSite {
        site_id: sid(0xD),
        code: code("DELTA"),
        name: name("DELTA site"),
        seat_limit: seats(5),
        parent: None,
    };
    then(
        register.decide(&operator(), None, None),
        vec![registered(sid(0xD), "DELTA", 5)],
    );
    // Even an Instance Admin of an existing site cannot create a top-level site.
    then_err(
        register.decide(&by(A, A_ADMIN), None, None),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    );
    then_err(
        register.decide(&Actor::System, None, None),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    );
    let existing = given(vec![registered(sid(0xD), "DELTA", 5)]);
    then_err(
        register.decide(&operator(), Some(&existing), None),
        DomainError::SiteExists(sid(0xD)),
    );
}

#[test]
fn r_onb_1_set_parent_site_refuses_cycles() {
    // The hierarchy: G (top) > A; C is a child of A.
    let g = sid(0x6);
    let c = sid(0xC);
    let site = given(
        [
            vec![registered_child(A, "ALPHA", 10, g)],
            vec![added(A_ADMIN, "admin@a.org", Role::Administration)],
        ]
        .concat(),
    );
    let admin = by(A, A_ADMIN);
    let set = |parent| SetParentSite { site_id: A, parent };

    // A under itself.
    then_err(
        set(Some(A)).decide(&admin, &site, &[g]),
        DomainError::ParentCycle,
    );
    // A under its own child C (C's ancestors: A, G).
    then_err(
        set(Some(c)).decide(&admin, &site, &[A, g]),
        DomainError::ParentCycle,
    );
    // A under B (B's ancestors: G) is fine, and so is no parent.
    let moved = set(Some(B)).decide(&admin, &site, &[g]);
    then(
        moved.clone(),
        vec![SiteEvent::ParentSiteSet { parent: Some(B) }],
    );
    assert_eq!(apply(&site, moved).parent, Some(B));
    let top = set(None).decide(&admin, &site, &[]);
    then(top.clone(), vec![SiteEvent::ParentSiteSet { parent: None }]);
    assert_eq!(apply(&site, top).parent, None);
    // It is an Instance Admin setting.
    let with_manager = given(
        [
            site_a(10),
            actor_with(flags(&[PermissionFlag::ManageUsers])),
        ]
        .concat(),
    );
    then_err(
        set(Some(B)).decide(&by(A, ACTOR), &with_manager, &[]),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    );
}

// ---------------------------------------------------------------------------
// R-ONB-2: self-registration from a model user
// ---------------------------------------------------------------------------

const GROUP: SiteId = sid(0x60);
const GROUP_ADMIN: UserId = uid(0x61);
const MODEL_SITE: SiteId = sid(0x70);
const MODEL_USER: UserId = uid(0x71);
const PARTNER: SiteId = sid(0x80);
const PARTNER_MANAGER: UserId = uid(0x81);

fn group(extra: Vec<SiteEvent>) -> SiteState {
    given(
        [
            vec![
                registered(GROUP, "GROUP", 10),
                added(GROUP_ADMIN, "admin@group.org", Role::Administration),
            ],
            extra,
        ]
        .concat(),
    )
}

/// The model site, child of the group, with the model user: a Data Entry
/// manager with Manage Users added, access to two scorecards and hidden
/// organisation settings.
fn model_site() -> SiteState {
    given(vec![
        registered_child(MODEL_SITE, "MODEL", 5, GROUP),
        added(MODEL_USER, "model@group.org", Role::DataEntry),
        permissions_set(
            MODEL_USER,
            flags(&[
                PermissionFlag::DataEntry,
                PermissionFlag::ManageUsers,
                PermissionFlag::AddCommentary,
            ]),
        ),
        granted(MODEL_USER, S1, AccessLevel::Editor),
        granted(MODEL_USER, S2, AccessLevel::Browser),
        hidden(MODEL_USER, true),
    ])
}

/// The model site's content: its scorecard S1 (S2 is not the model site's).
fn group_content() -> ContentState {
    ContentState::empty(MODEL_SITE).evolve(&ContentEvent::ScorecardCreated {
        scorecard_id: S1,
        name: name("Group outcomes"),
    })
}

/// `SelfRegisterPartner::decide` on [`group_content`]: the new site's events.
fn decide_sr(
    command: &SelfRegisterPartner,
    group: &SiteState,
    model: Option<&SiteState>,
    existing: Option<&SiteState>,
) -> Decision {
    command
        .decide(group, &group_content(), model, existing)
        .map(|registered| registered.site)
}

fn self_register(child_of_group: bool) -> SelfRegisterPartner {
    SelfRegisterPartner {
        group_site: GROUP,
        site_id: PARTNER,
        code: code("PARTNER"),
        name: name("Partner Org"),
        seat_limit: seats(3),
        manager_id: PARTNER_MANAGER,
        manager_username: username("Boss@Partner.org"),
        manager_name: name("Pat Boss"),
        child_of_group,
        manager_email: None,
        via_link: None,
    }
}

#[test]
fn r_onb_2_self_registration_without_a_configured_model_user_is_refused() {
    let model = model_site();
    // Never configured.
    then_err(
        decide_sr(&self_register(true), &group(vec![]), Some(&model), None),
        DomainError::SelfRegistrationNotConfigured,
    );
    // Configured, then turned off.
    then_err(
        decide_sr(
            &self_register(true),
            &group(vec![SiteEvent::SelfRegistrationConfigured {
                enabled: false,
                model_site: Some(MODEL_SITE),
                model_user: Some(MODEL_USER),
            }]),
            Some(&model),
            None,
        ),
        DomainError::SelfRegistrationNotConfigured,
    );
    // Enabled in the log without a model user (or model site).
    for (model_site, model_user) in [(Some(MODEL_SITE), None), (None, Some(MODEL_USER))] {
        then_err(
            decide_sr(
                &self_register(true),
                &group(vec![SiteEvent::SelfRegistrationConfigured {
                    enabled: true,
                    model_site,
                    model_user,
                }]),
                Some(&model),
                None,
            ),
            DomainError::SelfRegistrationNotConfigured,
        );
    }
}

#[test]
fn r_onb_2_configure_self_registration_needs_a_model_user() {
    let g = group(vec![]);
    let model = model_site();
    let admin = by(GROUP, GROUP_ADMIN);
    let configure = |enabled, model_site, model_user| ConfigureSelfRegistration {
        site_id: GROUP,
        enabled,
        model_site,
        model_user,
    };
    then_err(
        configure(true, Some(MODEL_SITE), None).decide(&admin, &g, Some(&model)),
        DomainError::SelfRegistrationNotConfigured,
    );
    then_err(
        configure(true, None, None).decide(&admin, &g, None),
        DomainError::SelfRegistrationNotConfigured,
    );
    // The model user must exist on the model site, which must exist.
    then_err(
        configure(true, Some(MODEL_SITE), Some(uid(0x79))).decide(&admin, &g, Some(&model)),
        DomainError::UserNotFound(uid(0x79)),
    );
    then_err(
        configure(true, Some(MODEL_SITE), Some(MODEL_USER)).decide(&admin, &g, None),
        DomainError::SiteNotFound(MODEL_SITE),
    );
    // Turning it off needs no model.
    then(
        configure(false, None, None).decide(&admin, &g, None),
        vec![SiteEvent::SelfRegistrationConfigured {
            enabled: false,
            model_site: None,
            model_user: None,
        }],
    );
    // It is an Instance Admin setting.
    let with_manager = group(vec![
        added(ACTOR, "actor@group.org", Role::Presenter),
        permissions_set(ACTOR, flags(&[PermissionFlag::ManageUsers])),
    ]);
    then_err(
        configure(true, Some(MODEL_SITE), Some(MODEL_USER)).decide(
            &by(GROUP, ACTOR),
            &with_manager,
            Some(&model),
        ),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    );
}

#[test]
fn r_onb_2_the_first_manager_copies_the_model_user() {
    let model = model_site();
    let g = group(vec![]);
    let configure = ConfigureSelfRegistration {
        site_id: g.id,
        enabled: true,
        model_site: Some(MODEL_SITE),
        model_user: Some(MODEL_USER),
    }
    .decide(&by(GROUP, GROUP_ADMIN), &g, Some(&model));
    then(
        configure.clone(),
        vec![SiteEvent::SelfRegistrationConfigured {
            enabled: true,
            model_site: Some(MODEL_SITE),
            model_user: Some(MODEL_USER),
        }],
    );
    let g = apply(&g, configure);
    assert_eq!(g.self_registration.model_user, Some(MODEL_USER));

    let model_user = &model.users[&MODEL_USER];
    let result = decide_sr(&self_register(true), &g, Some(&model), None);
    then(
        result.clone(),
        vec![
            SiteEvent::SiteRegistered {
                site_id: PARTNER,
                code: code("PARTNER"),
                name: name("Partner Org"),
                seat_limit: seats(3),
                parent: Some(GROUP),
            },
            SiteEvent::UserAdded {
                user: NewUser {
                    user_id: PARTNER_MANAGER,
                    username: username("boss@partner.org"),
                    name: name("Pat Boss"),
                    role: Role::DataEntry,
                    permissions: flags(&[
                        PermissionFlag::DataEntry,
                        PermissionFlag::ManageUsers,
                        PermissionFlag::AddCommentary,
                    ]),
                    email: None,
                },
                origin: UserOrigin::SelfRegistered {
                    model_site: MODEL_SITE,
                    model_user: MODEL_USER,
                },
                // Of S1 (the model site's) and S2 (not its): S1, shared
                // with the new site, as a Browser (R-SHARE-5).
                scorecard_access: BTreeMap::from([(S1, AccessLevel::Browser)]),
                hide_organization_settings: true,
            },
        ],
    );

    // Folded, the new site's manager carries the model user's settings.
    let partner = SiteState::from_events(&result.expect("accepted")).expect("registered");
    assert_eq!(partner.parent, Some(GROUP));
    let manager = &partner.users[&PARTNER_MANAGER];
    assert_eq!(
        manager,
        &UserState {
            id: PARTNER_MANAGER,
            username: username("boss@partner.org"),
            name: name("Pat Boss"),
            active: true,
            scorecard_access: BTreeMap::from([(S1, AccessLevel::Browser)]),
            ..model_user.clone()
        }
    );

    // The site must not exist yet.
    then_err(
        decide_sr(&self_register(true), &g, Some(&model), Some(&partner)),
        DomainError::SiteExists(PARTNER),
    );
}

#[test]
fn r_onb_2_a_self_registered_manager_username_that_could_pass_for_another_is_refused() {
    let g = group(vec![SiteEvent::SelfRegistrationConfigured {
        enabled: true,
        model_site: Some(MODEL_SITE),
        model_user: Some(MODEL_USER),
    }]);
    let model = model_site();
    for lookalike in LOOK_ALIKES {
        let register = SelfRegisterPartner {
            manager_username: username(lookalike),
            ..self_register(true)
        };
        assert!(
            matches!(
                decide_sr(&register, &g, Some(&model), None),
                Err(DomainError::InvalidValue(InvalidValue::LookAlike { .. }))
            ),
            "{lookalike:?}"
        );
    }
}

#[test]
fn r_onb_2_child_of_group_sets_the_parent() {
    let g = group(vec![SiteEvent::SelfRegistrationConfigured {
        enabled: true,
        model_site: Some(MODEL_SITE),
        model_user: Some(MODEL_USER),
    }]);
    let model = model_site();
    for (child_of_group, parent) in [(true, Some(GROUP)), (false, None)] {
        let events =
            decide_sr(&self_register(child_of_group), &g, Some(&model), None).expect("accepted");
        let partner = SiteState::from_events(&events).expect("registered");
        assert_eq!(partner.parent, parent, "child_of_group = {child_of_group}");
    }
}

// ---------------------------------------------------------------------------
// R-ONB-3: recorded settings
// ---------------------------------------------------------------------------

#[test]
fn r_onb_3_hide_organization_settings_is_recorded() {
    let site = site_a_with_staff(vec![]);
    assert!(!site.users[&TARGET].hide_organization_settings);
    let admin = by(A, A_ADMIN);
    let hide = HideOrganizationSettings {
        site_id: site.id,
        user_id: TARGET,
        hidden: true,
    }
    .decide(&admin, &site);
    then(hide.clone(), vec![hidden(TARGET, true)]);
    let site = apply(&site, hide);
    assert!(site.users[&TARGET].hide_organization_settings);
    let show = HideOrganizationSettings {
        site_id: site.id,
        user_id: TARGET,
        hidden: false,
    }
    .decide(&admin, &site);
    then(show.clone(), vec![hidden(TARGET, false)]);
    assert!(!apply(&site, show).users[&TARGET].hide_organization_settings);
}

#[test]
fn r_onb_3_require_two_factor_is_recorded() {
    let site = given(
        [
            site_a(10),
            actor_with(flags(&[PermissionFlag::ManageUsers])),
        ]
        .concat(),
    );
    assert!(!site.two_factor_required);
    let on = RequireTwoFactor {
        site_id: site.id,
        required: true,
    }
    .decide(&by(A, A_ADMIN), &site);
    then(
        on.clone(),
        vec![SiteEvent::TwoFactorRequirementSet { required: true }],
    );
    let site = apply(&site, on);
    assert!(site.two_factor_required);
    let off = RequireTwoFactor {
        site_id: site.id,
        required: false,
    }
    .decide(&operator(), &site);
    then(
        off.clone(),
        vec![SiteEvent::TwoFactorRequirementSet { required: false }],
    );
    assert!(!apply(&site, off).two_factor_required);
    // A site-wide setting: Instance Admin's, not Manage Users'.
    then_err(
        RequireTwoFactor {
            site_id: site.id,
            required: true,
        }
        .decide(&by(A, ACTOR), &site),
        DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin,
        },
    );
}

// ---------------------------------------------------------------------------
// Property: random user command sequences keep the site's invariants
// (R-USER-5, R-USER-6, R-USER-7, unique usernames)
// ---------------------------------------------------------------------------

/// Usernames drawn by index, with case variants of the same name.
const LOGINS: [&str; 8] = [
    "ann@x.org",
    "Ann@X.org",
    "bob@x.org",
    "BOB@x.org",
    "cy@x.org",
    "di@x.org",
    "ed@x.org",
    "fay@x.org",
];

#[derive(Debug, Clone)]
enum Who {
    Operator,
    /// A user of the site, by index among all users (active or not).
    Member(usize),
    /// A user of another site.
    Stranger,
}

#[derive(Debug, Clone)]
enum Cmd {
    Add { login: usize, role: Role },
    Deactivate(usize),
    Reactivate(usize),
    ChangeRole(usize, Role),
    SetSeatLimit(u32),
}

fn role_strategy() -> impl Strategy<Value = Role> {
    prop_oneof![
        Just(Role::Administration),
        Just(Role::ScorecardBuilder),
        Just(Role::DataEntry),
        Just(Role::Presenter),
    ]
}

fn who_strategy() -> impl Strategy<Value = Who> {
    prop_oneof![
        2 => Just(Who::Operator),
        6 => any::<usize>().prop_map(Who::Member),
        1 => Just(Who::Stranger),
    ]
}

fn cmd_strategy() -> impl Strategy<Value = Cmd> {
    prop_oneof![
        4 => (0..LOGINS.len(), role_strategy()).prop_map(|(login, role)| Cmd::Add { login, role }),
        2 => any::<usize>().prop_map(Cmd::Deactivate),
        2 => any::<usize>().prop_map(Cmd::Reactivate),
        2 => (any::<usize>(), role_strategy()).prop_map(|(i, role)| Cmd::ChangeRole(i, role)),
        1 => (1u32..6).prop_map(Cmd::SetSeatLimit),
    ]
}

/// The `i`-th user of the site (modulo), or a user id the site does not know.
fn pick(site: &SiteState, i: usize) -> UserId {
    site.users
        .keys()
        .nth(i % site.users.len().max(1))
        .copied()
        .unwrap_or(uid(0xDEAD))
}

fn decide_cmd(cmd: &Cmd, actor: &Actor, site: &SiteState, step: usize) -> Decision {
    match cmd {
        Cmd::Add { login, role } => AddUser {
            site_id: site.id,
            user_id: uid(0x1000 + step as u128),
            username: username(LOGINS[*login]),
            name: name(LOGINS[*login]),
            role: *role,
            email: None,
        }
        .decide(actor, site),
        Cmd::Deactivate(i) => DeactivateUser {
            site_id: site.id,
            user_id: pick(site, *i),
        }
        .decide(actor, site),
        Cmd::Reactivate(i) => ReactivateUser {
            site_id: site.id,
            user_id: pick(site, *i),
        }
        .decide(actor, site),
        Cmd::ChangeRole(i, role) => ChangeUserRole {
            site_id: site.id,
            user_id: pick(site, *i),
            role: *role,
        }
        .decide(actor, site),
        Cmd::SetSeatLimit(n) => SetSeatLimit {
            site_id: site.id,
            seat_limit: seats(*n),
        }
        .decide(actor, site),
    }
}

fn check_usernames_unique(site: &SiteState) -> Result<(), TestCaseError> {
    let distinct: std::collections::BTreeSet<UsernameKey> =
        site.users.values().map(|u| u.username.key()).collect();
    prop_assert_eq!(
        distinct.len(),
        site.users.len(),
        "usernames are unique, and none looks like another"
    );
    prop_assert_eq!(site.usernames.len(), site.users.len());
    for (key, id) in site.usernames.iter() {
        prop_assert_eq!(&site.users[id].username.key(), key);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn r_user_5_6_7_random_user_commands_keep_the_sites_invariants(
        limit in 1u32..5,
        steps in prop::collection::vec((who_strategy(), cmd_strategy()), 1..40),
    ) {
        let mut site = given(site_a(limit));
        for (step, (who, cmd)) in steps.iter().enumerate() {
            let actor = match who {
                Who::Operator => operator(),
                Who::Member(i) => by(A, pick(&site, *i)),
                Who::Stranger => by(B, B_ADMIN),
            };
            let before = site.clone();
            let result = decide_cmd(cmd, &actor, &before, step);

            // Who may act at all (R-USER-9, R-USER-6, R-USER-5).
            match who {
                Who::Stranger => prop_assert_eq!(
                    &result,
                    &Err(DomainError::CrossSite { actor_site: B, target_site: A })
                ),
                Who::Member(i) => {
                    let acting = &before.users[&pick(&before, *i)];
                    if !acting.active {
                        prop_assert_eq!(&result, &Err(DomainError::ActorInactive));
                    } else if result.is_ok() {
                        let needed: &[PermissionFlag] = match cmd {
                            Cmd::SetSeatLimit(_) => &[PermissionFlag::InstanceAdmin],
                            _ => &[PermissionFlag::ManageUsers, PermissionFlag::InstanceAdmin],
                        };
                        prop_assert!(needed.iter().any(|f| acting.has(*f)));
                    }
                }
                Who::Operator => {}
            }

            let Ok(events) = result else { continue };
            site = events
                .iter()
                .fold(Some(before.clone()), SiteState::evolve)
                .expect("registered");

            // Seats (R-USER-7): an accepted add or reactivation never goes
            // past the limit; only lowering the limit leaves the site over it.
            let limit_now = site.seat_limit.get() as usize;
            if matches!(cmd, Cmd::Add { .. } | Cmd::Reactivate(_)) {
                prop_assert_eq!(site.active_users(), before.active_users() + 1);
                prop_assert!(
                    site.active_users() <= limit_now,
                    "{} active of {} after {:?}", site.active_users(), limit_now, cmd
                );
            }
            if site.active_users() > limit_now {
                prop_assert!(
                    matches!(cmd, Cmd::SetSeatLimit(_))
                        || site.active_users() <= before.active_users(),
                    "over the limit after {:?}", cmd
                );
            }
            check_usernames_unique(&site)?;
        }
    }
}

// ---------------------------------------------------------------------------
// Seed 001: a user's name and email
// ---------------------------------------------------------------------------

#[test]
fn r_user_6_a_deactivated_users_details_cannot_change_and_an_email_can_be_cleared() {
    let site = site_a_with_staff(vec![]);
    let change = |user_id, email: Option<Email>| ChangeUserDetails {
        site_id: A,
        user_id,
        name: name("Renamed"),
        email,
    };
    // A deactivated user is not edited (R-USER-6); an unknown one is not found.
    then_err(
        change(RETIRED, None).decide(&by(A, A_ADMIN), &site),
        DomainError::UserInactive(RETIRED),
    );
    then_err(
        change(NEW, None).decide(&by(A, A_ADMIN), &site),
        DomainError::UserNotFound(NEW),
    );
    // Given an email, then none: the user has the last one given.
    let with = apply(
        &site,
        change(TARGET, Some(email("t@a.org"))).decide(&by(A, A_ADMIN), &site),
    );
    assert_eq!(with.users[&TARGET].email, Some(email("t@a.org")));
    assert_eq!(with.users[&TARGET].name, name("Renamed"));
    let without = apply(&with, change(TARGET, None).decide(&by(A, A_ADMIN), &with));
    assert_eq!(without.users[&TARGET].email, None);
    // The username people sign in with is unchanged.
    assert_eq!(without.users[&TARGET].username, username("target@a.org"));
}

#[test]
fn emails_parse_as_local_at_domain() {
    for good in ["ann@acme.org", " Ann.Lee+x@mail.acme.co.uk ", "a@b.c"] {
        assert!(Email::parse(good).is_ok(), "{good}");
    }
    for bad in [
        "",
        "ann",
        "ann@",
        "@acme.org",
        "ann@acme",
        "ann@@acme.org",
        "ann lee@acme.org",
        "ann@acme..org",
        "ann@.acme.org",
        "ann@a.b.c.d.e",
    ] {
        assert!(Email::parse(bad).is_err(), "{bad}");
    }
}

#[test]
fn r_user_8_an_email_column_gives_each_user_an_email_and_a_bad_one_is_reported_at_its_line() {
    let csv = "username,name,role,Email\n\
               ann@a.org,Ann Lee,presenter,Ann.Lee@mail.a.org\n\
               bob@a.org,Bob,presenter,\n";
    let rows = parse_users_csv(csv, ids_from(0x201)).expect("a good file parses");
    assert_eq!(rows[0].email, Some(email("Ann.Lee@mail.a.org")));
    assert_eq!(rows[1].email, None);
    let site = given(site_a(10));
    let events = ImportUsers::decide_rows(&by(A, A_ADMIN), &site, &rows).unwrap();
    let SiteEvent::UserAdded { user, .. } = &events[0] else {
        panic!("a user added: {events:?}");
    };
    assert_eq!(user.email, Some(email("Ann.Lee@mail.a.org")));

    let bad = "username,name,role,email\nann@a.org,Ann,presenter,not an email\n";
    match parse_users_csv(bad, ids_from(0x301)) {
        Err(DomainError::ImportRejected(errors)) => {
            assert_eq!(errors.len(), 1, "{errors:?}");
            assert_eq!((errors[0].line, errors[0].field.as_str()), (2, "email"));
        }
        other => panic!("rejected, not {other:?}"),
    }
}

#[test]
fn r_onb_2_the_model_sites_scorecards_the_model_sees_are_shared_with_the_new_site_over_an_active_link(
) {
    let g = group(vec![SiteEvent::SelfRegistrationConfigured {
        enabled: true,
        model_site: Some(MODEL_SITE),
        model_user: Some(MODEL_USER),
    }]);
    let registered = self_register(false)
        .decide(&g, &group_content(), Some(&model_site()), None)
        .expect("accepted");
    let link = Link {
        from: MODEL_SITE,
        to: PARTNER,
    };
    assert_eq!(
        registered.connection,
        vec![
            ConnectionEvent::ConnectionRequested {
                requester: MODEL_SITE,
                partner: PARTNER,
                directions: Directions::Offer,
                links: vec![link],
            },
            ConnectionEvent::LinksActivated {
                approver: PARTNER,
                links: vec![link],
                mutual_request: false,
            },
            ConnectionEvent::ScorecardShared {
                link,
                scorecard_id: S1,
            },
        ]
    );
    // A model site with none of the model's scorecards opens no link.
    let none = self_register(false)
        .decide(
            &g,
            &ContentState::empty(MODEL_SITE),
            Some(&model_site()),
            None,
        )
        .expect("accepted");
    assert!(none.connection.is_empty());
}

#[test]
fn r_onb_2_a_published_link_registers_only_with_its_current_key_and_says_where_new_sites_go() {
    let configured = SiteEvent::SelfRegistrationConfigured {
        enabled: true,
        model_site: Some(MODEL_SITE),
        model_user: Some(MODEL_USER),
    };
    let publish = |hash: Option<&str>| SetSelfRegistrationLink {
        site_id: GROUP,
        link_hash: hash.map(str::to_owned),
        child_of_group: true,
    };
    // Only the group's Instance Admin publishes, and only once
    // self-registration is on.
    then_err(
        publish(Some("aa")).decide(&by(GROUP, GROUP_ADMIN), &group(vec![])),
        DomainError::SelfRegistrationNotConfigured,
    );
    let g = group(vec![configured]);
    let g = apply(&g, publish(Some("aa")).decide(&by(GROUP, GROUP_ADMIN), &g));
    let via = |hash: &str| SelfRegisterPartner {
        via_link: Some(hash.to_owned()),
        ..self_register(false)
    };
    // The current key registers, as a child of the group (the link says
    // so, whatever the body asked); another key is refused.
    let events = decide_sr(&via("aa"), &g, Some(&model_site()), None).expect("accepted");
    let partner = SiteState::from_events(&events).expect("registered");
    assert_eq!(partner.parent, Some(GROUP));
    then_err(
        decide_sr(&via("bb"), &g, Some(&model_site()), None),
        DomainError::SelfRegistrationLinkInvalid,
    );
    // Rotated, the old key stops working; turned off, none works.
    let rotated = apply(&g, publish(Some("bb")).decide(&by(GROUP, GROUP_ADMIN), &g));
    then_err(
        decide_sr(&via("aa"), &rotated, Some(&model_site()), None),
        DomainError::SelfRegistrationLinkInvalid,
    );
    assert!(decide_sr(&via("bb"), &rotated, Some(&model_site()), None).is_ok());
    let off = apply(
        &rotated,
        publish(None).decide(&by(GROUP, GROUP_ADMIN), &rotated),
    );
    then_err(
        decide_sr(&via("bb"), &off, Some(&model_site()), None),
        DomainError::SelfRegistrationLinkInvalid,
    );
}

#[test]
fn r_user_8_one_answer_lists_every_bad_row_a_bad_field_and_a_taken_username_alike() {
    // Given A with admin@a.org; a file whose line 2 has a bad role and
    // whose line 3 takes admin@a.org's username.
    let site = given(site_a(10));
    let csv = "username,name,role\n\
               new@a.org,New,king\n\
               ADMIN@a.org,Again,presenter\n";
    let import = ImportUsers {
        site_id: A,
        csv: csv.into(),
    };
    let ctx = shareledger_core::Context {
        actor: by(A, A_ADMIN),
        key: Uuid::from_u128(0x1),
    };
    let decided = shareledger_core::decision::decide_with(&import, &ctx, |_, facts| {
        facts.put_site(A, Some(site.clone()));
    });
    match decided {
        Err(DomainError::ImportRejected(errors)) => {
            let found: Vec<(u32, &str)> =
                errors.iter().map(|e| (e.line, e.field.as_str())).collect();
            assert_eq!(found, [(2, "role"), (3, "username")], "{errors:?}");
            assert_eq!(
                DomainError::ImportRejected(errors).to_string(),
                "2 bad row(s) in the import; nothing was applied (R-USER-8)"
            );
        }
        other => panic!("rejected, not {other:?}"),
    }
}
