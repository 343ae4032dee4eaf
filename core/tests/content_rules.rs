//! Given/when/then tests of a site's content and what partners see of it:
//! R-USER-3, R-USER-4, R-SHARE-1 to R-SHARE-6, R-CONN-4 (the consequence
//! side), R-CONN-7, and the authorization of the content commands. Each test
//! is named after the rule it proves (`docs`: `../shared/DOMAIN.md`).
//!
//! Site A (`ACME`) owns the content under test; B (`BETA`) is its partner,
//! C (`GAMMA`) a third site with no share. A's content is:
//!
//! ```text
//! S1 (Corporate): R (Result), X (Indicator)
//!     R ⊃ I (Indicator), P (Program) ⊃ PM (Performance Measure)
//! S2 (Eastern):   I2 (Indicator), X
//! S3 (Private):   Q (Indicator)
//! on no scorecard: LOOSE (Indicator)
//! ```

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Debug;

use proptest::prelude::*;
use shareledger_core::catalog::{
    AccessLevel, ContentEvent, Name, NewUser, ObjectField, ObjectId, ObjectKind, PermissionFlag,
    Permissions, RelationshipId, RemovalReason, Role, ScorecardId, SeatLimit, SiteCode, SiteEvent,
    SiteId, UserId, UserOrigin, Username,
};
use shareledger_core::content::{
    level_on_object, ChangeObjectField, ContentState, CreateObject, CreateScorecard,
    LinkSharedObject, PlaceObjectOnScorecard, Relationship, RelationshipTarget,
    RemoveObjectFromScorecard, StopUsingSharedMeasure, UnlinkSharedObject,
    UseSharedMeasureInAggregation,
};
use shareledger_core::envelope::Actor;
use shareledger_core::lifecycle::{ArchiveObject, ArchiveScorecard, RenameObject, RenameScorecard};
use shareledger_core::site::{GrantScorecardAccess, SiteState, UserState};
use shareledger_core::DomainError;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Harness
// ---------------------------------------------------------------------------

const SITE_A: SiteId = SiteId(Uuid::from_u128(0xA));
const SITE_B: SiteId = SiteId(Uuid::from_u128(0xB));
const SITE_C: SiteId = SiteId(Uuid::from_u128(0xC));

// A's scorecards and objects.
const S1: ScorecardId = ScorecardId(Uuid::from_u128(0xA0_01));
const S2: ScorecardId = ScorecardId(Uuid::from_u128(0xA0_02));
const S3: ScorecardId = ScorecardId(Uuid::from_u128(0xA0_03));
const R: ObjectId = ObjectId(Uuid::from_u128(0xA1_01));
const I: ObjectId = ObjectId(Uuid::from_u128(0xA1_02));
const P: ObjectId = ObjectId(Uuid::from_u128(0xA1_03));
const PM: ObjectId = ObjectId(Uuid::from_u128(0xA1_04));
const I2: ObjectId = ObjectId(Uuid::from_u128(0xA1_05));
const X: ObjectId = ObjectId(Uuid::from_u128(0xA1_06));
const Q: ObjectId = ObjectId(Uuid::from_u128(0xA1_07));
const LOOSE: ObjectId = ObjectId(Uuid::from_u128(0xA1_08));
/// Ids no event of the fixture uses.
const NEW_SCORECARD: ScorecardId = ScorecardId(Uuid::from_u128(0xA0_FF));
const NEW_OBJECT: ObjectId = ObjectId(Uuid::from_u128(0xA1_FF));
const NEW_CHILD: ObjectId = ObjectId(Uuid::from_u128(0xA1_FE));

// B's scorecard and own objects.
const SB: ScorecardId = ScorecardId(Uuid::from_u128(0xB0_01));
const BI: ObjectId = ObjectId(Uuid::from_u128(0xB1_01));
const BR: ObjectId = ObjectId(Uuid::from_u128(0xB1_02));
const BPM: ObjectId = ObjectId(Uuid::from_u128(0xB1_03));

// C's object (origin of one of B's relationships).
const CO: ObjectId = ObjectId(Uuid::from_u128(0xC1_01));

// B's relationships, in id order (the order `relationships_lost` reports).
const REL1: RelationshipId = RelationshipId(Uuid::from_u128(0xE1));
const REL2: RelationshipId = RelationshipId(Uuid::from_u128(0xE2));
const REL3: RelationshipId = RelationshipId(Uuid::from_u128(0xE3));
const REL4: RelationshipId = RelationshipId(Uuid::from_u128(0xE4));
const REL5: RelationshipId = RelationshipId(Uuid::from_u128(0xE5));
const REL9: RelationshipId = RelationshipId(Uuid::from_u128(0xE9));

const UPDATE_FIELDS: [ObjectField; 4] = [
    ObjectField::SeriesData,
    ObjectField::Analysis,
    ObjectField::Recommendations,
    ObjectField::Status,
];
const EDIT_FIELDS: [ObjectField; 4] = [
    ObjectField::Owner,
    ObjectField::Description,
    ObjectField::DataSource,
    ObjectField::Chart,
];
const VALUE: &str = "new value";

use AccessLevel::{Browser, Editor, ScorecardAdmin, Updater};
use PermissionFlag::{
    AddEditScorecardObjects, AllScorecards, DeleteScorecardObjects, InstanceAdmin, ManageUsers,
};

fn name(raw: &str) -> Name {
    Name::parse(raw).expect("a valid name")
}

/// A site state built by folding `SiteRegistered`, `UserAdded` and, when a
/// test asks for it, `UserDeactivated` / `UserReactivated`.
struct Site {
    state: SiteState,
}

impl Site {
    fn register(id: SiteId, code: &str) -> Self {
        let registered = SiteEvent::SiteRegistered {
            site_id: id,
            code: SiteCode::parse(code).expect("a valid code"),
            name: name(code),
            seat_limit: SeatLimit::new(100).expect("a valid seat limit"),
            parent: None,
        };
        Self {
            state: SiteState::from_events([&registered]).expect("a registered site"),
        }
    }

    fn fold(&mut self, event: SiteEvent) {
        self.state = SiteState::evolve(Some(self.state.clone()), &event).expect("a site");
    }

    /// A user with exactly these flags and per-scorecard levels.
    fn user(&mut self, flags: &[PermissionFlag], access: &[(ScorecardId, AccessLevel)]) -> Actor {
        self.user_with(Role::Presenter, flags.iter().copied().collect(), access)
    }

    /// A user with a role preset's default flags (R-USER-1).
    fn preset(&mut self, role: Role, access: &[(ScorecardId, AccessLevel)]) -> Actor {
        self.user_with(role, role.default_permissions(), access)
    }

    fn user_with(
        &mut self,
        role: Role,
        permissions: Permissions,
        access: &[(ScorecardId, AccessLevel)],
    ) -> Actor {
        let user_id = UserId::new();
        let n = self.state.users.len() + 1;
        self.fold(SiteEvent::UserAdded {
            user: NewUser {
                user_id,
                username: Username::parse(&format!("user{n}@{}.org", self.state.code))
                    .expect("a valid username"),
                name: name(&format!("User {n}")),
                role,
                permissions,
                email: None,
            },
            origin: UserOrigin::Added,
            scorecard_access: access.iter().copied().collect(),
            hide_organization_settings: false,
        });
        Actor::User {
            user_id: user_id.0,
            site_id: self.state.id.0,
        }
    }

    fn deactivate(&mut self, actor: &Actor) {
        self.fold(SiteEvent::UserDeactivated {
            user_id: user_id(actor),
        });
    }

    fn reactivate(&mut self, actor: &Actor) {
        self.fold(SiteEvent::UserReactivated {
            user_id: user_id(actor),
        });
    }

    fn user_state(&self, actor: &Actor) -> &UserState {
        &self.state.users[&user_id(actor)]
    }
}

fn user_id(actor: &Actor) -> UserId {
    match actor {
        Actor::User { user_id, .. } => UserId(*user_id),
        other => panic!("not a user: {other:?}"),
    }
}

fn site_a() -> Site {
    Site::register(SITE_A, "ACME")
}

fn site_b() -> Site {
    Site::register(SITE_B, "BETA")
}

fn site_c() -> Site {
    Site::register(SITE_C, "GAMMA")
}

fn scorecard(scorecard_id: ScorecardId, n: &str) -> ContentEvent {
    ContentEvent::ScorecardCreated {
        scorecard_id,
        name: name(n),
    }
}

fn object(object_id: ObjectId, kind: ObjectKind, container: Option<ObjectId>) -> ContentEvent {
    ContentEvent::ObjectCreated {
        object_id,
        kind,
        name: name(&format!("{kind:?} {}", object_id.0.as_u128())),
        container,
    }
}

fn placed(object_id: ObjectId, scorecard_id: ScorecardId) -> ContentEvent {
    ContentEvent::ObjectPlacedOnScorecard {
        object_id,
        scorecard_id,
    }
}

fn removed(object_id: ObjectId, scorecard_id: ScorecardId) -> ContentEvent {
    ContentEvent::ObjectRemovedFromScorecard {
        object_id,
        scorecard_id,
    }
}

fn linked(
    relationship_id: RelationshipId,
    origin_site: SiteId,
    object_id: ObjectId,
) -> ContentEvent {
    ContentEvent::SharedObjectLinked {
        relationship_id,
        scorecard_id: SB,
        origin_site,
        object_id,
    }
}

fn aggregated(
    relationship_id: RelationshipId,
    into_object: ObjectId,
    origin_site: SiteId,
    object_id: ObjectId,
) -> ContentEvent {
    ContentEvent::SharedMeasureAggregated {
        relationship_id,
        into_object,
        origin_site,
        object_id,
    }
}

fn lost(relationship_id: RelationshipId, reason: RemovalReason) -> ContentEvent {
    ContentEvent::RelationshipRemoved {
        relationship_id,
        reason,
    }
}

/// Given: a site's content stream.
fn given_content(site: SiteId, events: &[ContentEvent]) -> ContentState {
    ContentState::from_events(site, events)
}

/// When: more events of the same stream.
fn after(content: ContentState, events: &[ContentEvent]) -> ContentState {
    events.iter().fold(content, ContentState::evolve)
}

/// Then: exactly these events.
#[track_caller]
fn then<E: Debug + PartialEq>(result: Result<Vec<E>, DomainError>, expected: Vec<E>) {
    assert_eq!(result, Ok(expected));
}

/// Then: refused with exactly this error.
#[track_caller]
fn then_err<E: Debug + PartialEq>(result: Result<Vec<E>, DomainError>, expected: DomainError) {
    assert_eq!(result, Err(expected));
}

fn a_events() -> Vec<ContentEvent> {
    vec![
        scorecard(S1, "Corporate"),
        scorecard(S2, "Eastern"),
        scorecard(S3, "Private"),
        object(R, ObjectKind::Result, None),
        object(I, ObjectKind::Indicator, Some(R)),
        object(P, ObjectKind::Program, Some(R)),
        object(PM, ObjectKind::PerformanceMeasure, Some(P)),
        object(I2, ObjectKind::Indicator, None),
        object(X, ObjectKind::Indicator, None),
        object(Q, ObjectKind::Indicator, None),
        object(LOOSE, ObjectKind::Indicator, None),
        placed(R, S1),
        placed(X, S1),
        placed(I2, S2),
        placed(X, S2),
        placed(Q, S3),
    ]
}

fn a_content() -> ContentState {
    given_content(SITE_A, &a_events())
}

fn b_events() -> Vec<ContentEvent> {
    vec![
        scorecard(SB, "Partner measures"),
        object(BI, ObjectKind::Indicator, None),
        object(BR, ObjectKind::Result, None),
        object(BPM, ObjectKind::PerformanceMeasure, Some(BR)),
        placed(BR, SB),
    ]
}

fn b_content() -> ContentState {
    given_content(SITE_B, &b_events())
}

/// B's content with relationships to A's objects (and one to C's).
fn b_content_with_relationships() -> ContentState {
    let mut events = b_events();
    events.extend([
        linked(REL1, SITE_A, I),
        aggregated(REL2, BI, SITE_A, PM),
        linked(REL3, SITE_A, I2),
        linked(REL4, SITE_A, X),
        linked(REL5, SITE_C, CO),
    ]);
    given_content(SITE_B, &events)
}

fn scorecards(ids: &[ScorecardId]) -> BTreeSet<ScorecardId> {
    ids.iter().copied().collect()
}

fn objects(ids: &[ObjectId]) -> BTreeSet<ObjectId> {
    ids.iter().copied().collect()
}

fn change(object_id: ObjectId, field: ObjectField) -> ChangeObjectField {
    ChangeObjectField {
        site_id: SITE_A,
        object_id,
        field,
        value: VALUE.into(),
    }
}

fn field_updated(object_id: ObjectId, field: ObjectField) -> Vec<ContentEvent> {
    vec![ContentEvent::ObjectFieldUpdated {
        object_id,
        field,
        value: VALUE.into(),
    }]
}

fn field_edited(object_id: ObjectId, field: ObjectField) -> Vec<ContentEvent> {
    vec![ContentEvent::ObjectFieldEdited {
        object_id,
        field,
        value: VALUE.into(),
    }]
}

fn link(relationship_id: RelationshipId, object_id: ObjectId) -> LinkSharedObject {
    LinkSharedObject {
        site_id: SITE_B,
        relationship_id,
        scorecard_id: SB,
        origin_site: SITE_A,
        object_id,
    }
}

fn aggregate(
    relationship_id: RelationshipId,
    into_object: ObjectId,
    object_id: ObjectId,
) -> UseSharedMeasureInAggregation {
    UseSharedMeasureInAggregation {
        site_id: SITE_B,
        relationship_id,
        into_object,
        origin_site: SITE_A,
        object_id,
    }
}

/// Every content command of site A that needs Add/Edit Scorecard Objects,
/// each of which would succeed for an authorized author.
fn every_author_command_on_a(
    actor: &Actor,
    site: &SiteState,
    content: &ContentState,
) -> Vec<Result<Vec<ContentEvent>, DomainError>> {
    vec![
        CreateScorecard {
            site_id: content.site,
            scorecard_id: NEW_SCORECARD,
            name: name("New"),
        }
        .decide(actor, site, content),
        CreateObject {
            site_id: content.site,
            object_id: NEW_OBJECT,
            kind: ObjectKind::Indicator,
            name: name("New"),
            container: Some(R),
        }
        .decide(actor, site, content),
        PlaceObjectOnScorecard {
            site_id: content.site,
            object_id: LOOSE,
            scorecard_id: S2,
        }
        .decide(actor, site, content),
        RemoveObjectFromScorecard {
            site_id: content.site,
            object_id: I2,
            scorecard_id: S2,
        }
        .decide(actor, site, content),
    ]
}

/// B's relationship commands, each of which would succeed for an authorized
/// author of B while A shares S1 with B.
fn every_relationship_command_on_b(
    actor: &Actor,
    site: &SiteState,
) -> Vec<Result<Vec<ContentEvent>, DomainError>> {
    let origin = a_content();
    let visible = origin.visible_through(&scorecards(&[S1]));
    vec![
        link(REL1, I).decide(actor, site, &b_content(), &visible),
        aggregate(REL2, BI, PM).decide(actor, site, &b_content(), &origin, &visible),
    ]
}

// ---------------------------------------------------------------------------
// R-USER-3: per-scorecard levels; update-fields need Updater, edit-fields Editor
// ---------------------------------------------------------------------------

#[test]
fn r_user_3_update_fields_need_updater_on_a_scorecard_showing_the_object() {
    let mut a = site_a();
    let updater = a.user(&[], &[(S1, Updater)]);
    let content = a_content();

    for field in UPDATE_FIELDS {
        // I shows on S1 through its container R.
        then(
            change(I, field).decide(&updater, &a.state, &content, false),
            field_updated(I, field),
        );
        // I2 shows on S2 only, where this user has no level.
        then_err(
            change(I2, field).decide(&updater, &a.state, &content, false),
            DomainError::AccessLevelTooLow { needed: Updater },
        );
        // Q shows on S3 only.
        then_err(
            change(Q, field).decide(&updater, &a.state, &content, false),
            DomainError::AccessLevelTooLow { needed: Updater },
        );
    }
}

#[test]
fn r_user_3_edit_fields_need_editor() {
    let mut a = site_a();
    let updater = a.user(&[], &[(S1, Updater)]);
    let editor = a.user(&[], &[(S1, Editor)]);
    let admin = a.user(&[], &[(S1, ScorecardAdmin)]);
    let content = a_content();

    for field in EDIT_FIELDS {
        then_err(
            change(I, field).decide(&updater, &a.state, &content, false),
            DomainError::AccessLevelTooLow { needed: Editor },
        );
        // PM shows on S1 through P inside R (nested containers).
        then(
            change(PM, field).decide(&editor, &a.state, &content, false),
            field_edited(PM, field),
        );
        then(
            change(I, field).decide(&admin, &a.state, &content, false),
            field_edited(I, field),
        );
    }
    // Higher levels include the lower ones: an Editor may also update.
    for field in UPDATE_FIELDS {
        then(
            change(I, field).decide(&editor, &a.state, &content, false),
            field_updated(I, field),
        );
    }
}

#[test]
fn r_user_3_browser_can_neither_update_nor_edit() {
    let mut a = site_a();
    let browser = a.user(&[AddEditScorecardObjects], &[(S1, Browser), (S2, Browser)]);
    let content = a_content();

    for field in UPDATE_FIELDS {
        then_err(
            change(X, field).decide(&browser, &a.state, &content, false),
            DomainError::AccessLevelTooLow { needed: Updater },
        );
    }
    for field in EDIT_FIELDS {
        then_err(
            change(X, field).decide(&browser, &a.state, &content, false),
            DomainError::AccessLevelTooLow { needed: Editor },
        );
    }
}

#[test]
fn r_user_3_the_highest_level_among_scorecards_showing_the_object_counts() {
    let mut a = site_a();
    // Browser on S1, Editor on S2, Scorecard Admin on S3.
    let user = a.user(&[], &[(S1, Browser), (S2, Editor), (S3, ScorecardAdmin)]);
    let content = a_content();
    let state = a.user_state(&user);

    // X shows on S1 and S2: Editor. S3's level does not count (X is not on it).
    assert_eq!(level_on_object(state, &content, X), Some(Editor));
    // I shows on S1 only: Browser.
    assert_eq!(level_on_object(state, &content, I), Some(Browser));
    assert_eq!(level_on_object(state, &content, I2), Some(Editor));
    assert_eq!(level_on_object(state, &content, Q), Some(ScorecardAdmin));

    then(
        change(X, ObjectField::Owner).decide(&user, &a.state, &content, false),
        field_edited(X, ObjectField::Owner),
    );
    then_err(
        change(I, ObjectField::Analysis).decide(&user, &a.state, &content, false),
        DomainError::AccessLevelTooLow { needed: Updater },
    );
}

#[test]
fn r_user_3_a_changed_field_is_folded_into_the_object() {
    let mut a = site_a();
    let editor = a.user(&[], &[(S1, Editor)]);
    let content = a_content();

    let updated = change(I, ObjectField::Analysis)
        .decide(&editor, &a.state, &content, false)
        .expect("an Editor may update");
    let edited = change(I, ObjectField::Owner)
        .decide(&editor, &a.state, &content, false)
        .expect("an Editor may edit");
    let content = after(after(content, &updated), &edited);

    let fields = &content.objects[&I].fields;
    assert_eq!(
        fields.get(&ObjectField::Analysis).map(String::as_str),
        Some(VALUE)
    );
    assert_eq!(
        fields.get(&ObjectField::Owner).map(String::as_str),
        Some(VALUE)
    );
    assert_eq!(fields.len(), 2);
}

// ---------------------------------------------------------------------------
// R-USER-4: who sees which of the site's own objects (`level_on_object`)
// ---------------------------------------------------------------------------

#[test]
fn r_user_4_all_scorecards_sees_every_object_including_objects_on_no_scorecard() {
    let mut a = site_a();
    let viewer = a.user(&[AllScorecards], &[]);
    let content = a_content();
    let state = a.user_state(&viewer);

    for o in [R, I, P, PM, I2, X, Q, LOOSE] {
        assert_eq!(level_on_object(state, &content, o), Some(Browser), "{o}");
    }
}

#[test]
fn r_user_4_all_scorecards_keeps_a_higher_assigned_level() {
    let mut a = site_a();
    let user = a.user(&[AllScorecards], &[(S1, Editor)]);
    let content = a_content();
    let state = a.user_state(&user);

    assert_eq!(level_on_object(state, &content, I), Some(Editor));
    assert_eq!(level_on_object(state, &content, I2), Some(Browser));
    assert_eq!(level_on_object(state, &content, LOOSE), Some(Browser));
}

#[test]
fn r_user_4_without_all_scorecards_a_user_sees_only_objects_on_assigned_scorecards() {
    let mut a = site_a();
    let user = a.user(&[], &[(S1, Updater)]);
    let content = a_content();
    let state = a.user_state(&user);

    for o in [R, I, P, PM, X] {
        assert_eq!(level_on_object(state, &content, o), Some(Updater), "{o}");
    }
    for o in [I2, Q, LOOSE] {
        assert_eq!(level_on_object(state, &content, o), None, "{o}");
    }
    // An object that does not exist is seen by nobody.
    assert_eq!(level_on_object(state, &content, NEW_OBJECT), None);
}

#[test]
fn r_user_4_an_object_on_no_scorecard_is_invisible_without_all_scorecards() {
    let mut a = site_a();
    let everywhere = a.user(
        &[AddEditScorecardObjects],
        &[
            (S1, ScorecardAdmin),
            (S2, ScorecardAdmin),
            (S3, ScorecardAdmin),
        ],
    );
    let unassigned_author = a.user(&[AddEditScorecardObjects], &[]);
    let content = a_content();

    assert_eq!(
        level_on_object(a.user_state(&everywhere), &content, LOOSE),
        None
    );
    assert_eq!(
        level_on_object(a.user_state(&unassigned_author), &content, LOOSE),
        None
    );
    then_err(
        change(LOOSE, ObjectField::Owner).decide(&everywhere, &a.state, &content, false),
        DomainError::AccessLevelTooLow { needed: Editor },
    );
}

#[test]
fn r_user_4_an_object_removed_from_the_assigned_scorecard_stops_being_visible() {
    let mut a = site_a();
    let user = a.user(&[], &[(S2, Editor)]);
    let content = a_content();
    assert_eq!(
        level_on_object(a.user_state(&user), &content, I2),
        Some(Editor)
    );

    let content = after(content, &[removed(I2, S2)]);
    assert_eq!(level_on_object(a.user_state(&user), &content, I2), None);
}

#[test]
fn r_user_4_no_scorecards_assigned_with_add_edit_scorecard_objects_sees_every_scorecard() {
    let mut a = site_a();
    let author = a.user(&[AddEditScorecardObjects], &[]);
    let presenter = a.preset(Role::Presenter, &[]);
    let content = a_content();

    for o in [R, I, P, PM, I2, X, Q] {
        assert_eq!(
            level_on_object(a.user_state(&author), &content, o),
            Some(Browser),
            "{o}"
        );
        // Without the flag, no scorecards assigned means nothing seen.
        assert_eq!(
            level_on_object(a.user_state(&presenter), &content, o),
            None,
            "{o}"
        );
    }
}

#[test]
fn r_user_4_an_instance_admin_is_scorecard_admin() {
    let mut a = site_a();
    let admin = a.preset(Role::Administration, &[(S1, Browser)]);
    let instance_admin_only = a.user(&[InstanceAdmin], &[]);
    let content = a_content();

    for o in [R, I, P, PM, I2, X, Q, LOOSE] {
        assert_eq!(
            level_on_object(a.user_state(&admin), &content, o),
            Some(ScorecardAdmin),
            "{o}"
        );
    }
    for o in [R, I, P, PM, I2, X, Q] {
        assert_eq!(
            level_on_object(a.user_state(&instance_admin_only), &content, o),
            Some(ScorecardAdmin),
            "{o}"
        );
    }
    then(
        change(Q, ObjectField::Chart).decide(&instance_admin_only, &a.state, &content, false),
        field_edited(Q, ObjectField::Chart),
    );
}

#[test]

fn r_user_4_an_instance_admin_without_all_scorecards_does_not_see_objects_on_no_scorecard() {
    let mut a = site_a();
    let instance_admin_only = a.user(&[InstanceAdmin], &[]);
    let content = a_content();

    assert_eq!(
        level_on_object(a.user_state(&instance_admin_only), &content, LOOSE),
        None
    );
}

#[test]
fn r_user_4_an_inactive_user_sees_nothing() {
    let mut a = site_a();
    let user = a.preset(Role::Administration, &[(S1, ScorecardAdmin)]);
    a.deactivate(&user);
    let content = a_content();

    for o in [R, I, P, PM, I2, X, Q, LOOSE] {
        assert_eq!(
            level_on_object(a.user_state(&user), &content, o),
            None,
            "{o}"
        );
    }
    then_err(
        change(I, ObjectField::Analysis).decide(&user, &a.state, &content, false),
        DomainError::ActorInactive,
    );

    // Reactivating restores the settings (R-USER-6).
    a.reactivate(&user);
    assert_eq!(
        level_on_object(a.user_state(&user), &content, I),
        Some(ScorecardAdmin)
    );
}

// ---------------------------------------------------------------------------
// R-SHARE-1 / R-CONN-7: nothing shared by default; only chosen scorecards
// ---------------------------------------------------------------------------

#[test]
fn r_conn_7_with_no_shared_scorecards_nothing_is_visible() {
    let content = a_content();
    assert_eq!(content.visible_through(&BTreeSet::new()), BTreeSet::new());

    // So B cannot build any relationship.
    let mut b = site_b();
    let author = b.user(&[AddEditScorecardObjects], &[]);
    for o in [R, I, PM, X, LOOSE] {
        then_err(
            link(REL1, o).decide(&author, &b.state, &b_content(), &BTreeSet::new()),
            DomainError::ObjectNotShared(o),
        );
    }
}

#[test]
fn r_share_1_only_the_chosen_scorecards_are_visible() {
    let content = a_content();
    // Different partners may get different scorecards.
    assert_eq!(
        content.visible_through(&scorecards(&[S1])),
        objects(&[R, I, P, PM, X])
    );
    assert_eq!(
        content.visible_through(&scorecards(&[S2])),
        objects(&[I2, X])
    );
    // A scorecard that is not A's shows nothing of A's.
    assert_eq!(content.visible_through(&scorecards(&[SB])), BTreeSet::new());
}

// ---------------------------------------------------------------------------
// R-SHARE-2: a shared scorecard shares what shows on it, as it changes
// ---------------------------------------------------------------------------

#[test]
fn r_share_2_objects_inside_shown_containers_are_shared() {
    let content = a_content();
    let visible = content.visible_through(&scorecards(&[S1]));

    // Placed directly: R and X; inside R: I and P; inside P (nested): PM.
    assert_eq!(visible, objects(&[R, I, P, PM, X]));
    // Unshared scorecards and objects on no scorecard do not leak.
    assert!(!visible.contains(&Q) && !visible.contains(&LOOSE) && !visible.contains(&I2));
    assert_eq!(
        content.visible_through(&scorecards(&[S1, S2])),
        objects(&[R, I, P, PM, X, I2])
    );
}

#[test]
fn r_share_2_an_object_placed_later_becomes_visible() {
    let mut a = site_a();
    let author = a.user(&[AddEditScorecardObjects], &[]);
    let shared = scorecards(&[S2]);
    let content = a_content();
    assert!(!content.visible_through(&shared).contains(&LOOSE));

    let events = PlaceObjectOnScorecard {
        site_id: content.site,
        object_id: LOOSE,
        scorecard_id: S2,
    }
    .decide(&author, &a.state, &content)
    .expect("an author may place");
    assert_eq!(events, vec![placed(LOOSE, S2)]);
    let content = after(content, &events);

    assert_eq!(content.visible_through(&shared), objects(&[I2, X, LOOSE]));
}

#[test]
fn r_share_2_a_container_placed_later_brings_its_contents() {
    let content = after(
        a_content(),
        &[
            object(NEW_OBJECT, ObjectKind::Program, None),
            object(NEW_CHILD, ObjectKind::PerformanceMeasure, Some(NEW_OBJECT)),
        ],
    );
    let shared = scorecards(&[S2]);
    assert_eq!(content.visible_through(&shared), objects(&[I2, X]));

    let content = after(content, &[placed(NEW_OBJECT, S2)]);
    assert_eq!(
        content.visible_through(&shared),
        objects(&[I2, X, NEW_OBJECT, NEW_CHILD])
    );
}

#[test]
fn r_share_2_an_object_created_later_inside_a_shown_container_becomes_visible() {
    let mut a = site_a();
    let author = a.user(&[AddEditScorecardObjects], &[]);
    let content = a_content();

    let events = CreateObject {
        site_id: content.site,
        object_id: NEW_OBJECT,
        kind: ObjectKind::Indicator,
        name: name("Graduation rate"),
        container: Some(P),
    }
    .decide(&author, &a.state, &content)
    .expect("an author may create");
    let content = after(content, &events);

    assert!(content
        .visible_through(&scorecards(&[S1]))
        .contains(&NEW_OBJECT));
    assert_eq!(content.scorecards_showing(NEW_OBJECT), scorecards(&[S1]));
}

#[test]
fn r_share_2_an_object_removed_stops_being_visible() {
    let mut a = site_a();
    let author = a.user(&[AddEditScorecardObjects], &[]);
    let shared = scorecards(&[S2]);
    let content = a_content();

    let events = RemoveObjectFromScorecard {
        site_id: content.site,
        object_id: I2,
        scorecard_id: S2,
    }
    .decide(&author, &a.state, &content)
    .expect("an author may remove");
    assert_eq!(events, vec![removed(I2, S2)]);
    let content = after(content, &events);

    assert_eq!(content.visible_through(&shared), objects(&[X]));
}

#[test]
fn r_share_2_a_removed_container_takes_its_contents_with_it() {
    let content = after(a_content(), &[removed(R, S1)]);
    assert_eq!(content.visible_through(&scorecards(&[S1])), objects(&[X]));
}

#[test]
fn r_share_2_an_object_still_on_another_shared_scorecard_stays_visible() {
    let content = after(a_content(), &[removed(X, S1)]);

    assert!(content.visible_through(&scorecards(&[S1, S2])).contains(&X));
    // Only through the scorecard it is still on.
    assert!(!content.visible_through(&scorecards(&[S1])).contains(&X));
    assert_eq!(content.scorecards_showing(X), scorecards(&[S2]));
}

#[test]
fn r_share_2_an_object_still_inside_a_shown_container_stays_visible() {
    // I is also placed directly on S1; removing that placement leaves it
    // showing through R.
    let content = after(a_content(), &[placed(I, S1), removed(I, S1)]);
    assert!(content.visible_through(&scorecards(&[S1])).contains(&I));
}

// ---------------------------------------------------------------------------
// R-SHARE-3: shared content is read-only to partners
// ---------------------------------------------------------------------------

#[test]
fn r_share_3_a_partners_user_changing_a_shared_object_is_refused() {
    let mut b = site_b();
    // Even B's most powerful users.
    let b_admin = b.preset(Role::Administration, &[(S1, ScorecardAdmin)]);
    let b_author = b.user(&[AddEditScorecardObjects, AllScorecards], &[]);
    let content = a_content();
    let visible = content.visible_through(&scorecards(&[S1]));

    for actor in [&b_admin, &b_author] {
        for field in UPDATE_FIELDS.into_iter().chain(EDIT_FIELDS) {
            for o in [R, I, PM] {
                then_err(
                    change(o, field).decide(actor, &b.state, &content, visible.contains(&o)),
                    DomainError::SharedContentReadOnly,
                );
            }
        }
    }
}

#[test]
fn r_share_3_a_third_sites_user_without_a_share_is_cross_site() {
    let mut c = site_c();
    let c_admin = c.preset(Role::Administration, &[]);
    let content = a_content();

    for field in [ObjectField::Status, ObjectField::Owner] {
        then_err(
            change(I, field).decide(&c_admin, &c.state, &content, false),
            DomainError::CrossSite {
                actor_site: SITE_C,
                target_site: SITE_A,
            },
        );
    }
}

#[test]
fn r_share_3_a_partners_user_cannot_create_place_or_remove_on_the_partners_content() {
    let a = site_a();
    let mut b = site_b();
    let b_admin = b.preset(Role::Administration, &[]);

    for result in every_author_command_on_a(&b_admin, &a.state, &a_content()) {
        then_err(
            result,
            DomainError::CrossSite {
                actor_site: SITE_B,
                target_site: SITE_A,
            },
        );
    }
}

// ---------------------------------------------------------------------------
// R-SHARE-4: relationships to shared objects, and their removal
// ---------------------------------------------------------------------------

#[test]
fn r_share_4_a_visible_object_can_be_placed_on_the_partners_own_scorecard() {
    let mut b = site_b();
    let author = b.user(&[AddEditScorecardObjects], &[]);
    let visible = a_content().visible_through(&scorecards(&[S1]));

    for (rel, o) in [(REL1, R), (REL2, I), (REL3, PM), (REL4, X)] {
        then(
            link(rel, o).decide(&author, &b.state, &b_content(), &visible),
            vec![linked(rel, SITE_A, o)],
        );
    }
}

#[test]
fn r_share_4_an_object_that_is_not_visible_cannot_be_linked() {
    let mut b = site_b();
    let author = b.user(&[AddEditScorecardObjects], &[]);
    let visible = a_content().visible_through(&scorecards(&[S1]));

    for o in [I2, Q, LOOSE, NEW_OBJECT] {
        then_err(
            link(REL1, o).decide(&author, &b.state, &b_content(), &visible),
            DomainError::ObjectNotShared(o),
        );
    }
}

#[test]
fn r_share_4_a_link_goes_on_one_of_the_sites_own_scorecards_once() {
    let mut b = site_b();
    let author = b.user(&[AddEditScorecardObjects], &[]);
    let visible = a_content().visible_through(&scorecards(&[S1]));
    let content = b_content_with_relationships();

    // Not onto A's scorecard.
    then_err(
        LinkSharedObject {
            site_id: content.site,
            relationship_id: REL9,
            scorecard_id: S1,
            origin_site: SITE_A,
            object_id: I,
        }
        .decide(&author, &b.state, &content, &visible),
        DomainError::ScorecardNotFound(S1),
    );
    // I is on SB already (REL1); REL1 is taken.
    then_err(
        link(REL9, I).decide(&author, &b.state, &content, &visible),
        DomainError::RelationshipExists,
    );
    then_err(
        link(REL1, R).decide(&author, &b.state, &content, &visible),
        DomainError::RelationshipExists,
    );
}

fn unlink(relationship_id: RelationshipId) -> UnlinkSharedObject {
    UnlinkSharedObject {
        site_id: SITE_B,
        relationship_id,
    }
}

#[test]
fn r_share_4_a_site_takes_a_partners_object_off_its_own_scorecard() {
    // Given B linked A's I (REL1) and C's CO (REL5) onto its scorecard.
    let mut b = site_b();
    let author = b.user(&[AddEditScorecardObjects], &[]);
    let content = b_content_with_relationships();
    // When B's author unlinks each, then exactly that relationship goes,
    // removed by the site itself.
    for rel in [REL1, REL3, REL5] {
        then(
            unlink(rel).decide(&author, &b.state, &content),
            vec![lost(rel, RemovalReason::RemovedBySite)],
        );
    }
    // And once gone, it can be linked again.
    let after_unlink = after(content, &[lost(REL1, RemovalReason::RemovedBySite)]);
    let visible = a_content().visible_through(&scorecards(&[S1]));
    then(
        link(REL9, I).decide(&author, &b.state, &after_unlink, &visible),
        vec![linked(REL9, SITE_A, I)],
    );
}

#[test]
fn r_share_4_unlinking_needs_one_of_the_sites_links() {
    let mut b = site_b();
    let author = b.user(&[AddEditScorecardObjects], &[]);
    let content = b_content_with_relationships();
    // An aggregation (REL2) is not a link; an unknown id is none of B's.
    for rel in [REL2, RelationshipId(Uuid::from_u128(0xEEEE))] {
        then_err(
            unlink(rel).decide(&author, &b.state, &content),
            DomainError::RelationshipNotFound(rel),
        );
    }
    // A link already removed is gone.
    let removed = after(content, &[lost(REL4, RemovalReason::LinkRevoked)]);
    then_err(
        unlink(REL4).decide(&author, &b.state, &removed),
        DomainError::RelationshipNotFound(REL4),
    );
}

#[test]
fn r_share_4_unlinking_is_an_authors_change_on_its_own_site() {
    let content = b_content_with_relationships();
    // Without Add/Edit Scorecard Objects: refused, nothing said about REL1.
    let mut b = site_b();
    let reader = b.user(&[], &[]);
    then_err(
        unlink(REL1).decide(&reader, &b.state, &content),
        DomainError::NotPermitted {
            needed: AddEditScorecardObjects,
        },
    );
    // The owner of the object (A) cannot take it off B's scorecard.
    let mut a = site_a();
    let a_author = a.user(&[AddEditScorecardObjects], &[]);
    then_err(
        unlink(REL1).decide(&a_author, &a.state, &content),
        DomainError::CrossSite {
            actor_site: SITE_A,
            target_site: SITE_B,
        },
    );
}

#[test]
fn r_share_4_a_site_stops_using_a_partners_measure_in_its_aggregation() {
    // Given B uses A's PM in its own measure BI (REL2).
    let mut b = site_b();
    let author = b.user(&[AddEditScorecardObjects], &[]);
    let content = b_content_with_relationships();
    let stop = |relationship_id| StopUsingSharedMeasure {
        site_id: SITE_B,
        relationship_id,
    };
    // When B's author stops using it, then that relationship goes.
    then(
        stop(REL2).decide(&author, &b.state, &content),
        vec![lost(REL2, RemovalReason::RemovedBySite)],
    );
    // A link (REL1) is not an aggregation; nor is an unknown id.
    for rel in [REL1, RelationshipId(Uuid::from_u128(0xEEEE))] {
        then_err(
            stop(rel).decide(&author, &b.state, &content),
            DomainError::RelationshipNotFound(rel),
        );
    }
    // A's author cannot change B's aggregations.
    let mut a = site_a();
    let a_author = a.user(&[AddEditScorecardObjects], &[]);
    then_err(
        stop(REL2).decide(&a_author, &a.state, &content),
        DomainError::CrossSite {
            actor_site: SITE_A,
            target_site: SITE_B,
        },
    );
}

#[test]
fn r_share_4_shared_indicators_and_performance_measures_can_be_aggregated() {
    let mut b = site_b();
    let author = b.user(&[AddEditScorecardObjects], &[]);
    let origin = a_content();
    let visible = origin.visible_through(&scorecards(&[S1]));

    for (rel, into, o) in [(REL1, BI, I), (REL2, BI, PM), (REL3, BPM, X)] {
        then(
            aggregate(rel, into, o).decide(&author, &b.state, &b_content(), &origin, &visible),
            vec![aggregated(rel, into, SITE_A, o)],
        );
    }
}

#[test]
fn r_share_4_aggregation_needs_measures_on_both_sides() {
    let mut b = site_b();
    let author = b.user(&[AddEditScorecardObjects], &[]);
    let origin = a_content();
    let visible = origin.visible_through(&scorecards(&[S1]));

    // Into one of B's containers.
    then_err(
        aggregate(REL1, BR, I).decide(&author, &b.state, &b_content(), &origin, &visible),
        DomainError::NotAMeasure(BR),
    );
    // A shared Result or Program is not a measure.
    for o in [R, P] {
        then_err(
            aggregate(REL1, BI, o).decide(&author, &b.state, &b_content(), &origin, &visible),
            DomainError::NotAMeasure(o),
        );
    }
    // A measure that is not visible.
    then_err(
        aggregate(REL1, BI, I2).decide(&author, &b.state, &b_content(), &origin, &visible),
        DomainError::ObjectNotShared(I2),
    );
    // Into an object B does not have.
    then_err(
        aggregate(REL1, PM, I).decide(&author, &b.state, &b_content(), &origin, &visible),
        DomainError::ObjectNotFound(PM),
    );
    // The same aggregation twice.
    then_err(
        aggregate(REL9, BI, PM).decide(
            &author,
            &b.state,
            &b_content_with_relationships(),
            &origin,
            &visible,
        ),
        DomainError::RelationshipExists,
    );
}

#[test]
fn r_share_4_unsharing_a_scorecard_removes_exactly_the_relationships_that_lost_their_object() {
    let b = b_content_with_relationships();
    // A shared S1 and S2, then unshares S2: I2 is no longer visible; X still
    // is (through S1); C's object is another origin.
    let still_visible = a_content().visible_through(&scorecards(&[S1]));

    let events = b.relationships_lost(SITE_A, &still_visible, RemovalReason::ScorecardUnshared);
    assert_eq!(events, vec![lost(REL3, RemovalReason::ScorecardUnshared)]);

    let b = after(b, &events);
    assert_eq!(
        b.relationships.keys().copied().collect::<Vec<_>>(),
        vec![REL1, REL2, REL4, REL5]
    );
}

#[test]
fn r_share_4_removing_a_container_from_the_shared_scorecard_removes_relationships_inside_it() {
    let b = b_content_with_relationships();
    let a = after(a_content(), &[removed(R, S1)]);
    let still_visible = a.visible_through(&scorecards(&[S1, S2]));
    assert_eq!(still_visible, objects(&[X, I2]));

    let events = b.relationships_lost(SITE_A, &still_visible, RemovalReason::ObjectNoLongerShared);
    // REL1 (I inside R) and REL2 (PM inside P inside R); not REL3 (I2),
    // REL4 (X) nor REL5 (C's).
    assert_eq!(
        events,
        vec![
            lost(REL1, RemovalReason::ObjectNoLongerShared),
            lost(REL2, RemovalReason::ObjectNoLongerShared),
        ]
    );

    let b = after(b, &events);
    assert_eq!(
        b.relationships.keys().copied().collect::<Vec<_>>(),
        vec![REL3, REL4, REL5]
    );
}

#[test]
fn r_share_4_an_object_still_on_another_shared_scorecard_keeps_its_relationships() {
    let b = b_content_with_relationships();
    let a = after(a_content(), &[removed(X, S1)]);
    let still_visible = a.visible_through(&scorecards(&[S1, S2]));

    assert_eq!(
        b.relationships_lost(SITE_A, &still_visible, RemovalReason::ObjectNoLongerShared),
        vec![]
    );
}

// ---------------------------------------------------------------------------
// R-CONN-4 (consequence side): revoking removes every relationship built on it
// ---------------------------------------------------------------------------

#[test]
fn r_conn_4_revoke_removes_every_relationship_to_that_origin() {
    let b = b_content_with_relationships();
    // After revoking A→B nothing of A is visible to B any more.
    let nothing = BTreeSet::new();

    let events = b.relationships_lost(SITE_A, &nothing, RemovalReason::LinkRevoked);
    assert_eq!(
        events,
        vec![
            lost(REL1, RemovalReason::LinkRevoked),
            lost(REL2, RemovalReason::LinkRevoked),
            lost(REL3, RemovalReason::LinkRevoked),
            lost(REL4, RemovalReason::LinkRevoked),
        ]
    );

    let b = after(b, &events);
    // Only the relationship to C's object is left.
    assert_eq!(
        b.relationships.values().copied().collect::<Vec<_>>(),
        vec![Relationship {
            target: RelationshipTarget::Scorecard(SB),
            origin_site: SITE_C,
            object_id: CO,
        }]
    );
    // For good: with nothing shared again, nothing can be linked again.
    let mut b_site = site_b();
    let author = b_site.user(&[AddEditScorecardObjects], &[]);
    then_err(
        link(REL9, I).decide(&author, &b_site.state, &b, &nothing),
        DomainError::ObjectNotShared(I),
    );
    // And nothing is left to remove.
    assert_eq!(
        b.relationships_lost(SITE_A, &nothing, RemovalReason::LinkRevoked),
        vec![]
    );
}

// ---------------------------------------------------------------------------
// R-SHARE-5 / R-SHARE-6: what of them the core can express
// ---------------------------------------------------------------------------

#[test]
fn r_share_5_a_partners_user_gets_at_most_browser_on_a_shared_scorecard() {
    let mut b = site_b();
    let manager = b.user(&[ManageUsers], &[]);
    let viewer = b.user(&[], &[]);
    let viewer_id = user_id(&viewer);
    let grant = |level| GrantScorecardAccess {
        site_id: SITE_B,
        owner_site: Some(SITE_A),
        user_id: viewer_id,
        scorecard_id: S1,
        level,
    };

    // The command service passes max_level = Browser for A's shared scorecard.
    then(
        grant(Browser).decide(&manager, &b.state, Some(Browser), None),
        vec![SiteEvent::ScorecardAccessGranted {
            user_id: viewer_id,
            scorecard_id: S1,
            level: Browser,
        }],
    );
    for level in [Updater, Editor, ScorecardAdmin] {
        then_err(
            grant(level).decide(&manager, &b.state, Some(Browser), None),
            DomainError::SharedContentReadOnly,
        );
    }
}

#[test]
fn r_share_5_a_partners_user_assigned_a_shared_scorecard_browses_what_shows_on_it() {
    let mut b = site_b();
    let viewer = b.user(&[], &[]);
    b.fold(SiteEvent::ScorecardAccessGranted {
        user_id: user_id(&viewer),
        scorecard_id: S1,
        level: Browser,
    });
    let a = a_content();

    for o in [R, I, P, PM, X] {
        assert_eq!(
            level_on_object(b.user_state(&viewer), &a, o),
            Some(Browser),
            "{o}"
        );
    }
    for o in [I2, Q, LOOSE] {
        assert_eq!(level_on_object(b.user_state(&viewer), &a, o), None, "{o}");
    }
    // Browsing is all: changing is refused.
    then_err(
        change(I, ObjectField::Analysis).decide(&viewer, &b.state, &a, true),
        DomainError::SharedContentReadOnly,
    );
}

#[test]
fn r_share_6_relationships_record_their_origin_site() {
    let mut b = site_b();
    let author = b.user(&[AddEditScorecardObjects], &[]);
    let origin = a_content();
    let visible = origin.visible_through(&scorecards(&[S1]));

    let mut events = link(REL1, I)
        .decide(&author, &b.state, &b_content(), &visible)
        .expect("a visible object links");
    events.extend(
        aggregate(REL2, BI, PM)
            .decide(&author, &b.state, &b_content(), &origin, &visible)
            .expect("a visible measure aggregates"),
    );
    let content = after(b_content(), &events);

    assert_eq!(
        content.relationships,
        BTreeMap::from([
            (
                REL1,
                Relationship {
                    target: RelationshipTarget::Scorecard(SB),
                    origin_site: SITE_A,
                    object_id: I,
                }
            ),
            (
                REL2,
                Relationship {
                    target: RelationshipTarget::Aggregation(BI),
                    origin_site: SITE_A,
                    object_id: PM,
                }
            ),
        ])
    );
}

// ---------------------------------------------------------------------------
// Authorization of the content commands (R-USER-2, R-USER-6, R-USER-9)
// ---------------------------------------------------------------------------

#[test]
fn r_user_2_content_commands_need_add_edit_scorecard_objects() {
    let mut a = site_a();
    let mut b = site_b();
    let needed = DomainError::NotPermitted {
        needed: AddEditScorecardObjects,
    };
    // High levels do not stand in for the flag.
    let presenter = a.preset(
        Role::Presenter,
        &[(S1, ScorecardAdmin), (S2, ScorecardAdmin)],
    );
    let data_entry = a.preset(Role::DataEntry, &[(S1, Editor), (S2, Editor)]);
    for actor in [&presenter, &data_entry] {
        for result in every_author_command_on_a(actor, &a.state, &a_content()) {
            then_err(result, needed.clone());
        }
    }
    let b_viewer = b.user(&[AllScorecards, ManageUsers], &[(SB, ScorecardAdmin)]);
    for result in every_relationship_command_on_b(&b_viewer, &b.state) {
        then_err(result, needed.clone());
    }

    // With the flag they succeed.
    let author = a.user(&[AddEditScorecardObjects], &[]);
    for result in every_author_command_on_a(&author, &a.state, &a_content()) {
        assert!(result.is_ok(), "{result:?}");
    }
    let b_author = b.user(&[AddEditScorecardObjects], &[]);
    for result in every_relationship_command_on_b(&b_author, &b.state) {
        assert!(result.is_ok(), "{result:?}");
    }
}

#[test]
fn r_user_6_an_inactive_actor_is_refused() {
    let mut a = site_a();
    let mut b = site_b();
    let a_admin = a.preset(Role::Administration, &[(S1, ScorecardAdmin)]);
    let b_admin = b.preset(Role::Administration, &[]);
    a.deactivate(&a_admin);
    b.deactivate(&b_admin);

    for result in every_author_command_on_a(&a_admin, &a.state, &a_content()) {
        then_err(result, DomainError::ActorInactive);
    }
    for result in every_relationship_command_on_b(&b_admin, &b.state) {
        then_err(result, DomainError::ActorInactive);
    }
    then_err(
        change(I, ObjectField::Owner).decide(&a_admin, &a.state, &a_content(), false),
        DomainError::ActorInactive,
    );
}

#[test]
fn r_user_9_a_user_of_another_site_is_cross_site() {
    let a = site_a();
    let b = site_b();
    let mut c = site_c();
    let c_admin = c.preset(Role::Administration, &[]);
    let cross = |target_site| DomainError::CrossSite {
        actor_site: SITE_C,
        target_site,
    };

    for result in every_author_command_on_a(&c_admin, &a.state, &a_content()) {
        then_err(result, cross(SITE_A));
    }
    for result in every_relationship_command_on_b(&c_admin, &b.state) {
        then_err(result, cross(SITE_B));
    }
}

#[test]
fn content_only_users_and_operators_issue_commands() {
    let a = site_a();
    // The system only records consequences.
    for result in every_author_command_on_a(&Actor::System, &a.state, &a_content()) {
        then_err(result, DomainError::NotAnIssuer);
    }
    // A user the site does not know.
    let stranger = Actor::User {
        user_id: Uuid::from_u128(0xDEAD),
        site_id: SITE_A.0,
    };
    for result in every_author_command_on_a(&stranger, &a.state, &a_content()) {
        then_err(result, DomainError::UnknownActor { site: SITE_A });
    }
    // An operator may.
    let operator = Actor::Operator {
        name: "tests".into(),
    };
    for result in every_author_command_on_a(&operator, &a.state, &a_content()) {
        assert!(result.is_ok(), "{result:?}");
    }
}

// ---------------------------------------------------------------------------
// Content command checks
// ---------------------------------------------------------------------------

#[test]
fn content_create_object_into_a_non_container_is_rejected() {
    let mut a = site_a();
    let author = a.user(&[AddEditScorecardObjects], &[]);
    let content = a_content();
    let create = |container| CreateObject {
        site_id: SITE_A,
        object_id: NEW_OBJECT,
        kind: ObjectKind::Indicator,
        name: name("Attendance"),
        container: Some(container),
    };

    for container in [I, PM] {
        then_err(
            create(container).decide(&author, &a.state, &content),
            DomainError::NotAContainer(container),
        );
    }
    then_err(
        create(NEW_CHILD).decide(&author, &a.state, &content),
        DomainError::ObjectNotFound(NEW_CHILD),
    );
    // Results and Programs contain objects.
    for container in [R, P] {
        then(
            create(container).decide(&author, &a.state, &content),
            vec![object_named(
                NEW_OBJECT,
                ObjectKind::Indicator,
                "Attendance",
                Some(container),
            )],
        );
    }
}

fn object_named(
    object_id: ObjectId,
    kind: ObjectKind,
    n: &str,
    container: Option<ObjectId>,
) -> ContentEvent {
    ContentEvent::ObjectCreated {
        object_id,
        kind,
        name: name(n),
        container,
    }
}

#[test]
fn content_duplicate_ids_are_rejected() {
    let mut a = site_a();
    let author = a.user(&[AddEditScorecardObjects], &[]);
    let content = a_content();

    then_err(
        CreateScorecard {
            site_id: content.site,
            scorecard_id: S1,
            name: name("Again"),
        }
        .decide(&author, &a.state, &content),
        DomainError::ScorecardExists(S1),
    );
    then_err(
        CreateObject {
            site_id: content.site,
            object_id: I,
            kind: ObjectKind::Result,
            name: name("Again"),
            container: None,
        }
        .decide(&author, &a.state, &content),
        DomainError::ObjectExists(I),
    );
    then(
        CreateScorecard {
            site_id: content.site,
            scorecard_id: NEW_SCORECARD,
            name: name("Western"),
        }
        .decide(&author, &a.state, &content),
        vec![scorecard(NEW_SCORECARD, "Western")],
    );
}

#[test]
fn content_placing_an_object_twice_is_rejected() {
    let mut a = site_a();
    let author = a.user(&[AddEditScorecardObjects], &[]);
    let content = a_content();
    let place = |object_id, scorecard_id| PlaceObjectOnScorecard {
        site_id: SITE_A,
        object_id,
        scorecard_id,
    };

    then_err(
        place(R, S1).decide(&author, &a.state, &content),
        DomainError::AlreadyPlaced {
            object: R,
            scorecard: S1,
        },
    );
    then_err(
        place(NEW_OBJECT, S1).decide(&author, &a.state, &content),
        DomainError::ObjectNotFound(NEW_OBJECT),
    );
    then_err(
        place(R, SB).decide(&author, &a.state, &content),
        DomainError::ScorecardNotFound(SB),
    );
    // Showing through a container is not being placed: I may also be placed.
    then(
        place(I, S1).decide(&author, &a.state, &content),
        vec![placed(I, S1)],
    );
}

#[test]
fn content_removing_an_unplaced_object_is_rejected() {
    let mut a = site_a();
    let author = a.user(&[AddEditScorecardObjects], &[]);
    let remove = |object_id, scorecard_id| RemoveObjectFromScorecard {
        site_id: SITE_A,
        object_id,
        scorecard_id,
    };
    let content = a_content();

    then_err(
        remove(LOOSE, S1).decide(&author, &a.state, &content),
        DomainError::NotPlaced {
            object: LOOSE,
            scorecard: S1,
        },
    );
    // I shows on S1 through R but is not placed on it.
    then_err(
        remove(I, S1).decide(&author, &a.state, &content),
        DomainError::NotPlaced {
            object: I,
            scorecard: S1,
        },
    );
    // Removed once: removing again is refused.
    let content = after(content, &[removed(X, S1)]);
    then_err(
        remove(X, S1).decide(&author, &a.state, &content),
        DomainError::NotPlaced {
            object: X,
            scorecard: S1,
        },
    );
    then(
        remove(X, S2).decide(&author, &a.state, &content),
        vec![removed(X, S2)],
    );
}

#[test]
fn content_a_change_of_an_unknown_object_is_rejected() {
    let mut a = site_a();
    let admin = a.preset(Role::Administration, &[]);
    then_err(
        change(NEW_OBJECT, ObjectField::Status).decide(&admin, &a.state, &a_content(), false),
        DomainError::ObjectNotFound(NEW_OBJECT),
    );
}

// ---------------------------------------------------------------------------
// Property: visibility is reachability from placements through containers
// ---------------------------------------------------------------------------

const POOL_SCORECARDS: u8 = 4;
const POOL_OBJECTS: u8 = 10;

fn pool_scorecard(i: u8) -> ScorecardId {
    ScorecardId(Uuid::from_u128(0x5C_00 + u128::from(i)))
}

fn pool_object(i: u8) -> ObjectId {
    ObjectId(Uuid::from_u128(0x0B_00 + u128::from(i)))
}

#[derive(Debug, Clone)]
enum Op {
    CreateScorecard(u8),
    CreateObject {
        object: u8,
        kind: ObjectKind,
        container: Option<u8>,
    },
    Place {
        object: u8,
        scorecard: u8,
    },
    Remove {
        object: u8,
        scorecard: u8,
    },
}

fn kind_strategy() -> impl Strategy<Value = ObjectKind> {
    prop_oneof![
        Just(ObjectKind::Result),
        Just(ObjectKind::Indicator),
        Just(ObjectKind::Program),
        Just(ObjectKind::PerformanceMeasure),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        1 => (0..POOL_SCORECARDS).prop_map(Op::CreateScorecard),
        3 => (0..POOL_OBJECTS, kind_strategy(), proptest::option::of(0..POOL_OBJECTS))
            .prop_map(|(object, kind, container)| Op::CreateObject { object, kind, container }),
        4 => (0..POOL_OBJECTS, 0..POOL_SCORECARDS)
            .prop_map(|(object, scorecard)| Op::Place { object, scorecard }),
        2 => (0..POOL_OBJECTS, 0..POOL_SCORECARDS)
            .prop_map(|(object, scorecard)| Op::Remove { object, scorecard }),
    ]
}

/// An independent model of the content: which scorecards and objects exist,
/// each object's container, and the placements.
#[derive(Debug, Default)]
struct Model {
    scorecards: BTreeSet<ScorecardId>,
    objects: BTreeMap<ObjectId, (ObjectKind, Option<ObjectId>)>,
    placements: BTreeSet<(ScorecardId, ObjectId)>,
}

impl Model {
    /// What the decision should answer.
    fn expect(&self, op: &Op) -> Result<(), DomainError> {
        match *op {
            Op::CreateScorecard(s) => {
                let s = pool_scorecard(s);
                if self.scorecards.contains(&s) {
                    return Err(DomainError::ScorecardExists(s));
                }
            }
            Op::CreateObject {
                object, container, ..
            } => {
                let o = pool_object(object);
                if self.objects.contains_key(&o) {
                    return Err(DomainError::ObjectExists(o));
                }
                if let Some(c) = container.map(pool_object) {
                    match self.objects.get(&c) {
                        None => return Err(DomainError::ObjectNotFound(c)),
                        Some((kind, _)) if !kind.is_container() => {
                            return Err(DomainError::NotAContainer(c))
                        }
                        Some(_) => {}
                    }
                }
            }
            Op::Place { object, scorecard } | Op::Remove { object, scorecard } => {
                let (o, s) = (pool_object(object), pool_scorecard(scorecard));
                if !self.objects.contains_key(&o) {
                    return Err(DomainError::ObjectNotFound(o));
                }
                if !self.scorecards.contains(&s) {
                    return Err(DomainError::ScorecardNotFound(s));
                }
                let is_placed = self.placements.contains(&(s, o));
                if matches!(op, Op::Place { .. }) && is_placed {
                    return Err(DomainError::AlreadyPlaced {
                        object: o,
                        scorecard: s,
                    });
                }
                if matches!(op, Op::Remove { .. }) && !is_placed {
                    return Err(DomainError::NotPlaced {
                        object: o,
                        scorecard: s,
                    });
                }
            }
        }
        Ok(())
    }

    fn apply(&mut self, op: &Op) {
        match *op {
            Op::CreateScorecard(s) => {
                self.scorecards.insert(pool_scorecard(s));
            }
            Op::CreateObject {
                object,
                kind,
                container,
            } => {
                self.objects
                    .insert(pool_object(object), (kind, container.map(pool_object)));
            }
            Op::Place { object, scorecard } => {
                self.placements
                    .insert((pool_scorecard(scorecard), pool_object(object)));
            }
            Op::Remove { object, scorecard } => {
                self.placements
                    .remove(&(pool_scorecard(scorecard), pool_object(object)));
            }
        }
    }

    /// The objects reachable from the placements on the chosen scorecards
    /// through the container relation: a plain fixpoint.
    fn reachable(&self, chosen: impl Fn(ScorecardId) -> bool) -> BTreeSet<ObjectId> {
        let mut seen: BTreeSet<ObjectId> = self
            .placements
            .iter()
            .filter(|(s, _)| chosen(*s))
            .map(|(_, o)| *o)
            .collect();
        loop {
            let before = seen.len();
            for (o, (_, container)) in &self.objects {
                if container.is_some_and(|c| seen.contains(&c)) {
                    seen.insert(*o);
                }
            }
            if seen.len() == before {
                return seen;
            }
        }
    }
}

fn decide_op(
    op: &Op,
    actor: &Actor,
    site: &SiteState,
    content: &ContentState,
) -> Result<Vec<ContentEvent>, DomainError> {
    match *op {
        Op::CreateScorecard(s) => CreateScorecard {
            site_id: content.site,
            scorecard_id: pool_scorecard(s),
            name: name(&format!("Scorecard {s}")),
        }
        .decide(actor, site, content),
        Op::CreateObject {
            object,
            kind,
            container,
        } => CreateObject {
            site_id: content.site,
            object_id: pool_object(object),
            kind,
            name: name(&format!("Object {object}")),
            container: container.map(pool_object),
        }
        .decide(actor, site, content),
        Op::Place { object, scorecard } => PlaceObjectOnScorecard {
            site_id: content.site,
            object_id: pool_object(object),
            scorecard_id: pool_scorecard(scorecard),
        }
        .decide(actor, site, content),
        Op::Remove { object, scorecard } => RemoveObjectFromScorecard {
            site_id: content.site,
            object_id: pool_object(object),
            scorecard_id: pool_scorecard(scorecard),
        }
        .decide(actor, site, content),
    }
}

fn shown_per_scorecard(content: &ContentState) -> BTreeMap<ScorecardId, BTreeSet<ObjectId>> {
    content
        .scorecards
        .keys()
        .map(|s| (*s, content.objects_on(*s)))
        .collect()
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn r_share_2_visible_through_is_reachability_from_placements_and_monotone(
        ops in proptest::collection::vec(op_strategy(), 0..60),
        shared_mask in 0u8..(1 << POOL_SCORECARDS),
        placement_mask in any::<u64>(),
    ) {
        let site = site_a();
        let operator = Actor::Operator { name: "proptest".into() };
        let mut content = ContentState::empty(SITE_A);
        let mut model = Model::default();

        for op in &ops {
            let before = shown_per_scorecard(&content);
            let decided = decide_op(op, &operator, &site.state, &content);
            prop_assert_eq!(
                decided.as_ref().map(|_| ()).map_err(Clone::clone),
                model.expect(op),
                "decision of {:?}", op
            );
            if let Ok(events) = decided {
                content = after(content, &events);
                model.apply(op);
            }

            // objects_on is monotone in placements: placing (or creating an
            // object inside a shown container) only adds, removing only takes.
            for (s, shown) in &before {
                let now = content.objects_on(*s);
                if matches!(op, Op::Remove { .. }) {
                    prop_assert!(now.is_subset(shown), "{:?} grew {}", op, s);
                } else {
                    prop_assert!(now.is_superset(shown), "{:?} shrank {}", op, s);
                }
            }

            // Every scorecard shows exactly what is reachable from its placements.
            for s in &model.scorecards {
                prop_assert_eq!(content.objects_on(*s), model.reachable(|x| x == *s));
            }
            let all: BTreeSet<ScorecardId> = content.scorecards.keys().copied().collect();
            prop_assert_eq!(content.visible_through(&all), model.reachable(|_| true));
        }

        // Any choice of shared scorecards (some perhaps not created).
        let shared: BTreeSet<ScorecardId> = (0..POOL_SCORECARDS)
            .filter(|i| shared_mask & (1 << i) != 0)
            .map(pool_scorecard)
            .collect();
        prop_assert_eq!(
            content.visible_through(&shared),
            model.reachable(|s| shared.contains(&s))
        );

        // scorecards_showing is the inverse of objects_on.
        for o in model.objects.keys() {
            let showing: BTreeSet<ScorecardId> = model
                .scorecards
                .iter()
                .filter(|s| model.reachable(|x| x == **s).contains(o))
                .copied()
                .collect();
            prop_assert_eq!(content.scorecards_showing(*o), showing);
        }

        // Fewer placements never show more.
        let mut fewer = content.clone();
        let mut bit = 0;
        for placed in fewer.placements.values_mut() {
            placed.retain(|_| {
                bit += 1;
                placement_mask & (1 << (bit % 64)) != 0
            });
        }
        for s in content.scorecards.keys() {
            prop_assert!(fewer.objects_on(*s).is_subset(&content.objects_on(*s)));
        }
    }
}

// ---------------------------------------------------------------------------
// Renaming and archiving (`shareledger_core::lifecycle`)
// ---------------------------------------------------------------------------

fn rename_scorecard(scorecard_id: ScorecardId) -> RenameScorecard {
    RenameScorecard {
        site_id: SITE_A,
        scorecard_id,
        name: name("Corporate 2027"),
    }
}

fn renamed_scorecard(scorecard_id: ScorecardId) -> ContentEvent {
    ContentEvent::ScorecardRenamed {
        scorecard_id,
        name: name("Corporate 2027"),
    }
}

#[test]
fn r_user_3_a_scorecard_admin_configures_its_scorecard_by_renaming_it() {
    // Given a user with Scorecard Admin on S1 only and no Add/Edit flag.
    let mut a = site_a();
    let admin_of_s1 = a.user(&[], &[(S1, ScorecardAdmin), (S2, Editor)]);
    let content = a_content();
    // When they rename S1, then it is renamed.
    then(
        rename_scorecard(S1).decide(&admin_of_s1, &a.state, &content, false),
        vec![renamed_scorecard(S1)],
    );
    // But S2, where they are an Editor, needs Add/Edit Scorecard Objects.
    then_err(
        rename_scorecard(S2).decide(&admin_of_s1, &a.state, &content, false),
        DomainError::NotPermitted {
            needed: AddEditScorecardObjects,
        },
    );
    // An author renames any scorecard of the site; an unknown one is not found.
    let author = a.user(&[AddEditScorecardObjects], &[]);
    then(
        rename_scorecard(S2).decide(&author, &a.state, &content, false),
        vec![renamed_scorecard(S2)],
    );
    then_err(
        rename_scorecard(NEW_SCORECARD).decide(&author, &a.state, &content, false),
        DomainError::ScorecardNotFound(NEW_SCORECARD),
    );
    // The new name is the scorecard's from then on.
    let renamed = after(content, &[renamed_scorecard(S1)]);
    assert_eq!(renamed.scorecards[&S1], name("Corporate 2027"));
}

#[test]
fn r_user_3_renaming_an_object_is_an_edit() {
    let mut a = site_a();
    let editor = a.user(&[], &[(S1, Editor)]);
    let updater = a.user(&[], &[(S1, Updater)]);
    let content = a_content();
    let rename = |object_id| RenameObject {
        site_id: SITE_A,
        object_id,
        name: name("Reading level"),
    };
    // I shows on S1 (inside R): an Editor of S1 renames it.
    then(
        rename(I).decide(&editor, &a.state, &content, false),
        vec![ContentEvent::ObjectRenamed {
            object_id: I,
            name: name("Reading level"),
        }],
    );
    // An Updater may change update-fields only.
    then_err(
        rename(I).decide(&updater, &a.state, &content, false),
        DomainError::AccessLevelTooLow { needed: Editor },
    );
    // Q is on S3, which the editor cannot see; NEW_OBJECT does not exist.
    then_err(
        rename(Q).decide(&editor, &a.state, &content, false),
        DomainError::AccessLevelTooLow { needed: Editor },
    );
    then_err(
        rename(NEW_OBJECT).decide(&editor, &a.state, &content, false),
        DomainError::ObjectNotFound(NEW_OBJECT),
    );
}

#[test]
fn r_user_2_archiving_needs_delete_scorecard_objects() {
    let mut a = site_a();
    let author = a.user(&[AddEditScorecardObjects], &[]);
    let content = a_content();
    let archive = ArchiveScorecard {
        site_id: SITE_A,
        scorecard_id: S3,
    };
    assert_eq!(
        archive.decide(&author, &a.state, &content, false),
        Err(DomainError::NotPermitted {
            needed: DeleteScorecardObjects,
        })
    );
    let deleter = a.user(&[DeleteScorecardObjects], &[]);
    assert!(archive.decide(&deleter, &a.state, &content, false).is_ok());
    // Scorecard Admin on S3 does not archive it: that is not configuring.
    let admin_of_s3 = a.user(&[], &[(S3, ScorecardAdmin)]);
    assert_eq!(
        archive.decide(&admin_of_s3, &a.state, &content, false),
        Err(DomainError::NotPermitted {
            needed: DeleteScorecardObjects,
        })
    );
}

#[test]
fn r_share_4_archiving_a_scorecard_removes_its_placements_and_the_links_onto_it() {
    let mut a = site_a();
    let deleter = a.user(&[DeleteScorecardObjects, AddEditScorecardObjects], &[]);
    // Given S1 holds R (with I, P, PM inside) and X, and S1 is shared with B.
    let content = a_content();
    // When A archives S1, then its two placements go as consequences.
    let archived = ArchiveScorecard {
        site_id: SITE_A,
        scorecard_id: S1,
    }
    .decide(&deleter, &a.state, &content, false)
    .unwrap();
    assert_eq!(
        archived.archive,
        ContentEvent::ScorecardArchived { scorecard_id: S1 }
    );
    assert_eq!(archived.consequences, vec![removed(R, S1), removed(X, S1)]);
    // And B sees nothing through S1 any more, though it is still recorded
    // as shared: A's content no longer has it.
    let mut events = vec![archived.archive];
    events.extend(archived.consequences);
    let after_archive = after(content, &events);
    assert!(after_archive.visible_through(&scorecards(&[S1])).is_empty());
    assert_eq!(after_archive.scorecards_showing(X), scorecards(&[S2]));
    // Its id is never used again.
    then_err(
        CreateScorecard {
            site_id: SITE_A,
            scorecard_id: S1,
            name: name("Again"),
        }
        .decide(&deleter, &a.state, &after_archive),
        DomainError::ScorecardExists(S1),
    );
    // B archiving its scorecard SB removes its links onto SB (REL1, REL3,
    // REL4, REL5), not its aggregation (REL2).
    let mut b = site_b();
    let b_deleter = b.user(&[DeleteScorecardObjects], &[]);
    let archived = ArchiveScorecard {
        site_id: SITE_B,
        scorecard_id: SB,
    }
    .decide(&b_deleter, &b.state, &b_content_with_relationships(), false)
    .unwrap();
    let gone = RemovalReason::TargetArchived;
    assert_eq!(
        archived.consequences,
        vec![
            removed(BR, SB),
            lost(REL1, gone),
            lost(REL3, gone),
            lost(REL4, gone),
            lost(REL5, gone),
        ]
    );
}

#[test]
fn r_share_4_archiving_an_object_removes_its_placements_and_the_aggregations_into_it() {
    let mut a = site_a();
    let deleter = a.user(&[DeleteScorecardObjects], &[]);
    let content = a_content();
    let archive = |object_id| ArchiveObject {
        site_id: SITE_A,
        object_id,
    };
    // X is placed on S1 and S2.
    let archived = archive(X)
        .decide(&deleter, &a.state, &content, false)
        .unwrap();
    assert_eq!(
        archived.archive,
        ContentEvent::ObjectArchived { object_id: X }
    );
    assert_eq!(archived.consequences, vec![removed(X, S1), removed(X, S2)]);
    let after_archive = after(content.clone(), &[archived.archive]);
    assert!(!after_archive.objects_on(S1).contains(&X));
    // R still contains I and P: archive them first.
    assert_eq!(
        archive(R).decide(&deleter, &a.state, &content, false),
        Err(DomainError::ContainerNotEmpty(R))
    );
    // PM is inside P, on no scorecard directly: archived with no placement
    // to remove, and S1 no longer shows it.
    let archived = archive(PM)
        .decide(&deleter, &a.state, &content, false)
        .unwrap();
    assert!(archived.consequences.is_empty());
    let after_archive = after(content, &[archived.archive]);
    assert!(!after_archive.objects_on(S1).contains(&PM));
    // B's measure BI holds A's PM (REL2): archiving BI removes REL2.
    let mut b = site_b();
    let b_deleter = b.user(&[DeleteScorecardObjects], &[]);
    let archived = ArchiveObject {
        site_id: SITE_B,
        object_id: BI,
    }
    .decide(&b_deleter, &b.state, &b_content_with_relationships(), false)
    .unwrap();
    assert_eq!(
        archived.consequences,
        vec![lost(REL2, RemovalReason::TargetArchived)]
    );
}

#[test]
fn r_share_3_a_partner_cannot_rename_or_archive_shared_content() {
    // Given A shares S1 (with I) with B, whose user has every flag.
    let mut b = site_b();
    let partner = b.preset(Role::Administration, &[]);
    let content = a_content();
    let rename_object = RenameObject {
        site_id: SITE_A,
        object_id: I,
        name: name("Mine now"),
    };
    then_err(
        rename_object.decide(&partner, &b.state, &content, true),
        DomainError::SharedContentReadOnly,
    );
    then_err(
        rename_scorecard(S1).decide(&partner, &b.state, &content, true),
        DomainError::SharedContentReadOnly,
    );
    let archive = ArchiveObject {
        site_id: SITE_A,
        object_id: I,
    };
    assert_eq!(
        archive.decide(&partner, &b.state, &content, true),
        Err(DomainError::SharedContentReadOnly)
    );
    // What A does not share with B is another site's own data (R-USER-9).
    assert_eq!(
        ArchiveScorecard {
            site_id: SITE_A,
            scorecard_id: S3,
        }
        .decide(&partner, &b.state, &content, false),
        Err(DomainError::CrossSite {
            actor_site: SITE_B,
            target_site: SITE_A,
        })
    );
}
