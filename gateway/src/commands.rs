//! `POST /v1/commands/{Name}`: every command of the domain core, by the
//! name our users already use (`RequestConnection`, `GrantScorecardAccess`,
//! …), with a JSON body of its own shape.
//!
//! Bodies are parsed, not validated: their fields are the catalog's
//! newtypes (`SiteCode`, `Username`, `SeatLimit`, …), whose deserializers
//! refuse invalid values, and unknown fields are refused too. The caller's
//! token gives the actor; the `Idempotency-Key` header (a UUID) gives the
//! key: re-sending it (same token, same command, same body) returns the
//! first result and writes nothing; with another body it is refused (422),
//! and while the first send runs, 409 (`idempotency`). Keys are scoped to
//! the token and the command, so a key reused by another caller or for
//! another command is a new command.
//!
//! The response's `position` is the consistency token: pass it as
//! `min_position` to any query to read at least this fresh.

use std::collections::BTreeSet;
use std::future::Future;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use shareledger_commands::{
    CommandError, ConnectionCommand, ContentCommand, Issued, Outcome, RelateCommand, Service,
    ShareChange,
};
use shareledger_core::catalog::{
    AccessLevel, Directions, Link, Name, ObjectField, ObjectId, ObjectKind, PermissionFlag,
    RelationshipId, Role, ScorecardId, SeatLimit, SiteCode, SiteId, UserId, Username,
};
use shareledger_core::{content, site};
use shareledger_events::envelope::nul_pointer;
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::idempotency::{self, Claim};
use crate::state::AppState;

/// The header carrying a command's idempotency key.
pub const IDEMPOTENCY_KEY: &str = "idempotency-key";
/// The response header carrying the consistency token.
pub const POSITION_HEADER: &str = "shareledger-position";

/// One event a command wrote.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WrittenEvent {
    pub event_id: Uuid,
    pub stream: String,
    pub event_type: String,
    pub stream_revision: u64,
    pub global_position: u64,
}

/// What a command wrote.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CommandResult {
    /// The command's name.
    pub command: String,
    /// The consistency token: the global position of the last event the
    /// command wrote (of the first send's, when replayed; the log's head
    /// when the command had nothing to write).
    pub position: u64,
    /// True when the idempotency key had been used: this is the first
    /// send's result and nothing was written now.
    pub replayed: bool,
    pub events: Vec<WrittenEvent>,
}

impl CommandResult {
    fn new(command: &str, outcome: Outcome) -> Self {
        Self {
            command: command.to_owned(),
            position: outcome.last_position,
            replayed: outcome.replayed,
            events: outcome
                .events
                .into_iter()
                .map(|e| WrittenEvent {
                    event_id: e.event_id,
                    stream: e.stream,
                    event_type: e.event_type,
                    stream_revision: e.stream_revision,
                    global_position: e.global_position,
                })
                .collect(),
        }
    }
}

/// A command's body: how it is named, described, and run.
pub trait CommandBody: DeserializeOwned + utoipa::ToSchema + Send + 'static {
    /// The command's name, which is also the schema's name.
    const NAME: &'static str;
    /// One line for the API document.
    const SUMMARY: &'static str;
    /// Runs the command through the command service.
    fn execute(
        self,
        service: &Service,
        issued: &Issued,
    ) -> impl Future<Output = Result<Outcome, CommandError>> + Send;
}

/// Reads the idempotency key header: a UUID, bare or as the draft's
/// structured-field string (`"8e03978e-…"`).
fn idempotency_key(headers: &HeaderMap) -> Result<Uuid, ApiError> {
    let raw = headers
        .get(IDEMPOTENCY_KEY)
        .ok_or(ApiError::MissingIdempotencyKey)?;
    raw.to_str()
        .ok()
        .map(str::trim)
        .map(|s| {
            s.strip_prefix('"')
                .and_then(|s| s.strip_suffix('"'))
                .unwrap_or(s)
        })
        .and_then(|s| Uuid::parse_str(s).ok())
        .ok_or(ApiError::BadIdempotencyKey)
}

/// Namespace of the keys the gateway derives from callers' keys.
const SCOPED_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x2c7b_91d4_6e03_4a8f_b5c1_d09e_7f36_a2b8);

/// The key the command service sees: the caller's key scoped to the token
/// and the command, so that one caller's key can never replay (and reveal)
/// another caller's result, nor another command's.
fn scoped_key(principal: &Principal, command: &str, key: Uuid) -> Uuid {
    let caller = match principal {
        Principal::User { user, token, .. } => format!("{token}:{}", user.0),
        Principal::Auditor { token, .. } | Principal::Operator { token, .. } => token.to_string(),
    };
    Uuid::new_v5(
        &SCOPED_KEY_NAMESPACE,
        format!("{caller}:{command}:{key}").as_bytes(),
    )
}

/// Parses a JSON body: syntax errors are 400, shape and value errors 422.
pub fn parse_json<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<T, ApiError> {
    parse_json_checked(headers, body, limit).map(|(parsed, _)| parsed)
}

/// As [`parse_json`], and the body as a JSON value too. A NUL character
/// (U+0000) in any string or member name is refused first, as 422
/// `unstorable_text` naming where it is: PostgreSQL cannot store it.
fn parse_json_checked<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
    limit: usize,
) -> Result<(T, serde_json::Value), ApiError> {
    let body = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::MalformedJson(rejection.body_text())
        }
    })?;
    let json = headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split(';').next())
        .map(|v| {
            let v = v.trim().to_ascii_lowercase();
            v == "application/json" || (v.starts_with("application/") && v.ends_with("+json"))
        })
        .unwrap_or(false);
    if !json {
        return Err(ApiError::UnsupportedMediaType);
    }
    let classify = |e: serde_json::Error| match e.classify() {
        serde_json::error::Category::Data => ApiError::InvalidBody(e.to_string()),
        _ => ApiError::MalformedJson(e.to_string()),
    };
    let value: serde_json::Value = serde_json::from_slice(&body).map_err(classify)?;
    if let Some(path) = nul_pointer(&value) {
        return Err(ApiError::UnstorableText { path });
    }
    // The typed parse reads the bytes again rather than the value: it
    // keeps serde_json's positions in its messages, and refuses a member
    // named twice (the value keeps the last one).
    let parsed = serde_json::from_slice(&body).map_err(classify)?;
    Ok((parsed, value))
}

async fn run<C: CommandBody>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let key = idempotency_key(headers)?;
    let (command, body): (C, _) = parse_json_checked(headers, body, state.options().body_limit)?;
    let key = scoped_key(principal, C::NAME, key);
    let fingerprint = idempotency::fingerprint(C::NAME, &body);
    let ticket = match state
        .idempotency()
        .claim(key, C::NAME, &fingerprint)
        .await?
    {
        Claim::Run(ticket) => ticket,
        Claim::Replay(mut first) => {
            first["replayed"] = serde_json::Value::Bool(true);
            let position = first["position"].as_u64().unwrap_or_default();
            return Ok(answer(StatusCode::OK, &first, position));
        }
        Claim::Reused => return Err(ApiError::IdempotencyKeyReused),
        Claim::InFlight => return Err(ApiError::IdempotencyKeyInFlight),
    };
    // The claimed run goes on in a task of its own: a caller that hangs up
    // does not cut a command short, and its result is still recorded for
    // the caller's retry.
    let state = state.clone();
    let run = tokio::spawn(async move {
        let issued = Issued { actor, key };
        let started = Instant::now();
        let result = command.execute(state.service(), &issued).await;
        state.metrics().command(C::NAME, result.is_ok(), started);
        let keys = state.idempotency();
        match result {
            Ok(outcome) => {
                let result = CommandResult::new(C::NAME, outcome);
                let stored = serde_json::to_value(&result).expect("a result serializes");
                // The command was written: answer it whether or not its
                // result can be recorded now.
                keys.finish_eventually(ticket, stored).await;
                Ok(result)
            }
            Err(e) => {
                let error = ApiError::from(e);
                let away = crate::error::database_fault(&error).is_some();
                keys.release_eventually(ticket, away).await;
                Err(error)
            }
        }
    });
    let result = run
        .await
        .map_err(|e| ApiError::Internal(format!("a command's task ended: {e}")))??;
    let status = if result.replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok(answer(status, &result, result.position))
}

/// A command's answer: its JSON and the consistency token header.
fn answer(status: StatusCode, body: &impl Serialize, position: u64) -> Response {
    let mut response = (status, Json(body)).into_response();
    response.headers_mut().insert(
        POSITION_HEADER,
        HeaderValue::from_str(&position.to_string()).expect("digits"),
    );
    response
}

macro_rules! command_bodies {
    ($($body:ident),* $(,)?) => {
        /// Every command's name, in the API document's order.
        pub const NAMES: &[&str] = &[$(<$body as CommandBody>::NAME),*];

        /// `POST /v1/commands/{name}`.
        pub async fn handle(
            State(state): State<AppState>,
            Path(name): Path<String>,
            principal: Principal,
            headers: HeaderMap,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<Response, ApiError> {
            $(
                if name == <$body as CommandBody>::NAME {
                    return run::<$body>(&state, &principal, &headers, body).await;
                }
            )*
            Err(ApiError::UnknownCommand(name))
        }

        /// Each command's name, summary and body schema, for the API document.
        pub fn catalog() -> Vec<(&'static str, &'static str, String)> {
            vec![$((
                <$body as CommandBody>::NAME,
                <$body as CommandBody>::SUMMARY,
                <$body as utoipa::ToSchema>::name().into_owned(),
            )),*]
        }

        /// Registers every body's schema (and the schemas it refers to).
        pub fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
            $(
                schemas.push((
                    <$body as utoipa::ToSchema>::name().into_owned(),
                    <$body as utoipa::PartialSchema>::schema(),
                ));
                <$body as utoipa::ToSchema>::schemas(schemas);
            )*
        }
    };
}

command_bodies!(
    RegisterSite,
    SetSeatLimit,
    SetParentSite,
    ConfigureSelfRegistration,
    RequireTwoFactor,
    SelfRegisterPartner,
    AddUser,
    AddExistingUser,
    ImportUsers,
    ChangeUserRole,
    SetPermissionFlags,
    GrantScorecardAccess,
    RevokeScorecardAccess,
    DeactivateUser,
    ReactivateUser,
    HideOrganizationSettings,
    CreateScorecard,
    CreateObject,
    PlaceObjectOnScorecard,
    RemoveObjectFromScorecard,
    ChangeObjectField,
    LinkSharedObject,
    UseSharedMeasureInAggregation,
    RequestConnection,
    ApproveConnection,
    DenyConnection,
    CancelConnectionRequest,
    RevokeSharing,
    ShareScorecard,
    UnshareScorecard,
    SetSharedScorecards,
);

/// Declares a body struct (unknown fields refused) and its `CommandBody`.
macro_rules! body {
    (
        $(#[doc = $doc:literal])+
        $name:ident { $($(#[$field_attr:meta])* $field:ident : $ty:ty),* $(,)? }
        |$this:ident, $service:ident, $issued:ident| $run:expr
    ) => {
        $(#[doc = $doc])+
        #[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_attr])* pub $field: $ty),*
        }

        impl CommandBody for $name {
            const NAME: &'static str = stringify!($name);
            const SUMMARY: &'static str = concat!($($doc),+);
            fn execute(
                self,
                $service: &Service,
                $issued: &Issued,
            ) -> impl Future<Output = Result<Outcome, CommandError>> + Send {
                let $this = self;
                async move { $run }
            }
        }
    };
}

body!(
    /// Registers a site with a unique code (operators; a group's Instance Admin for child sites, R-ONB-1).
    RegisterSite { site_id: SiteId, code: SiteCode, name: Name, seat_limit: SeatLimit, #[serde(default)] parent: Option<SiteId> }
    |b, s, i| s.register_site(i, site::RegisterSite { site_id: b.site_id, code: b.code, name: b.name, seat_limit: b.seat_limit, parent: b.parent }).await
);
body!(
    /// Sets how many active users the site may have (R-USER-7).
    SetSeatLimit { site_id: SiteId, seat_limit: SeatLimit }
    |b, s, i| s.on_site(i, b.site_id, site::SetSeatLimit { seat_limit: b.seat_limit }).await
);
body!(
    /// Sets or clears the site's parent (R-ONB-1).
    SetParentSite { site_id: SiteId, #[serde(default)] parent: Option<SiteId> }
    |b, s, i| s.set_parent_site(i, b.site_id, site::SetParentSite { parent: b.parent }).await
);
body!(
    /// Enables or disables partner self-registration with a model site and user (R-ONB-2).
    ConfigureSelfRegistration { site_id: SiteId, enabled: bool, #[serde(default)] model_site: Option<SiteId>, #[serde(default)] model_user: Option<UserId> }
    |b, s, i| s.configure_self_registration(i, b.site_id, site::ConfigureSelfRegistration { enabled: b.enabled, model_site: b.model_site, model_user: b.model_user }).await
);
body!(
    /// Requires (or stops requiring) two-factor sign-in on the site (R-ONB-3).
    RequireTwoFactor { site_id: SiteId, required: bool }
    |b, s, i| s.on_site(i, b.site_id, site::RequireTwoFactor { required: b.required }).await
);
body!(
    /// A partner registers itself with a group that enabled self-registration (R-ONB-2).
    SelfRegisterPartner { group_site: SiteId, site_id: SiteId, code: SiteCode, name: Name, seat_limit: SeatLimit, manager_id: UserId, manager_username: Username, manager_name: Name, #[serde(default)] child_of_group: bool }
    |b, s, i| s.self_register_partner(i, b.group_site, site::SelfRegisterPartner { site_id: b.site_id, code: b.code, name: b.name, seat_limit: b.seat_limit, manager_id: b.manager_id, manager_username: b.manager_username, manager_name: b.manager_name, child_of_group: b.child_of_group }).await
);
body!(
    /// Adds a user to the site with a role preset (R-USER-1, R-USER-7).
    AddUser { site_id: SiteId, user_id: UserId, username: Username, name: Name, role: Role }
    |b, s, i| s.on_site(i, b.site_id, site::AddUser { user_id: b.user_id, username: b.username, name: b.name, role: b.role }).await
);
body!(
    /// Adds an existing user of another site (R-USER-9).
    AddExistingUser { site_id: SiteId, user_id: UserId, from_site: SiteId, from_user: UserId, role: Role }
    |b, s, i| s.add_existing_user(i, b.site_id, site::AddExistingUser { user_id: b.user_id, from_site: b.from_site, from_user: b.from_user, role: b.role }).await
);
body!(
    /// Imports users from CSV text: all rows or none, bad rows reported by line and field (R-USER-8).
    ImportUsers { site_id: SiteId, #[schema(pattern = r"^[^\x00]*$")] csv: String }
    |b, s, i| s.import_users_csv(i, b.site_id, &b.csv).await
);
body!(
    /// Changes a user's role preset (R-USER-1).
    ChangeUserRole { site_id: SiteId, user_id: UserId, role: Role }
    |b, s, i| s.on_site(i, b.site_id, site::ChangeUserRole { user_id: b.user_id, role: b.role }).await
);
body!(
    /// Switches a user's permission flags on and off (R-USER-2).
    SetPermissionFlags { site_id: SiteId, user_id: UserId, #[serde(default)] enable: BTreeSet<PermissionFlag>, #[serde(default)] disable: BTreeSet<PermissionFlag> }
    |b, s, i| s.on_site(i, b.site_id, site::SetPermissionFlags { user_id: b.user_id, enable: b.enable, disable: b.disable }).await
);
body!(
    /// Grants a user a level on a scorecard of the site, or of a partner that shares it (Browser only, R-SHARE-5).
    GrantScorecardAccess { site_id: SiteId, user_id: UserId, scorecard_id: ScorecardId, level: AccessLevel, #[serde(default)] owner_site: Option<SiteId> }
    |b, s, i| s.grant_scorecard_access(i, b.site_id, b.owner_site.unwrap_or(b.site_id), site::GrantScorecardAccess { user_id: b.user_id, scorecard_id: b.scorecard_id, level: b.level }).await
);
body!(
    /// Revokes a user's access to a scorecard.
    RevokeScorecardAccess { site_id: SiteId, user_id: UserId, scorecard_id: ScorecardId }
    |b, s, i| s.on_site(i, b.site_id, site::RevokeScorecardAccess { user_id: b.user_id, scorecard_id: b.scorecard_id }).await
);
body!(
    /// Deactivates a user: they see nothing and can do nothing until reactivated (R-USER-6).
    DeactivateUser { site_id: SiteId, user_id: UserId }
    |b, s, i| s.on_site(i, b.site_id, site::DeactivateUser { user_id: b.user_id }).await
);
body!(
    /// Reactivates a user, within the seat limit (R-USER-7).
    ReactivateUser { site_id: SiteId, user_id: UserId }
    |b, s, i| s.on_site(i, b.site_id, site::ReactivateUser { user_id: b.user_id }).await
);
body!(
    /// Hides (or shows) the organisation settings from a user.
    HideOrganizationSettings { site_id: SiteId, user_id: UserId, hidden: bool }
    |b, s, i| s.on_site(i, b.site_id, site::HideOrganizationSettings { user_id: b.user_id, hidden: b.hidden }).await
);
body!(
    /// Creates a scorecard on the site.
    CreateScorecard { site_id: SiteId, scorecard_id: ScorecardId, name: Name }
    |b, s, i| s.on_content(i, b.site_id, ContentCommand::CreateScorecard(content::CreateScorecard { scorecard_id: b.scorecard_id, name: b.name })).await
);
body!(
    /// Creates a Result, Indicator, Program or Performance Measure, optionally inside a container.
    CreateObject { site_id: SiteId, object_id: ObjectId, kind: ObjectKind, name: Name, #[serde(default)] container: Option<ObjectId> }
    |b, s, i| s.on_content(i, b.site_id, ContentCommand::CreateObject(content::CreateObject { object_id: b.object_id, kind: b.kind, name: b.name, container: b.container })).await
);
body!(
    /// Places an object on one of the site's scorecards.
    PlaceObjectOnScorecard { site_id: SiteId, object_id: ObjectId, scorecard_id: ScorecardId }
    |b, s, i| s.on_content(i, b.site_id, ContentCommand::PlaceObjectOnScorecard(content::PlaceObjectOnScorecard { object_id: b.object_id, scorecard_id: b.scorecard_id })).await
);
body!(
    /// Removes an object from a scorecard; partners' relationships that lose their only path go too (R-SHARE-4).
    RemoveObjectFromScorecard { site_id: SiteId, object_id: ObjectId, scorecard_id: ScorecardId }
    |b, s, i| s.on_content(i, b.site_id, ContentCommand::RemoveObjectFromScorecard(content::RemoveObjectFromScorecard { object_id: b.object_id, scorecard_id: b.scorecard_id })).await
);
body!(
    /// Changes one field of an object of `site_id` (update-fields need Updater, edit-fields Editor; R-USER-3, R-SHARE-3).
    ChangeObjectField { site_id: SiteId, object_id: ObjectId, field: ObjectField, #[schema(pattern = r"^[^\x00]*$")] value: String }
    |b, s, i| s.change_object_field(i, b.site_id, content::ChangeObjectField { object_id: b.object_id, field: b.field, value: b.value }).await
);
body!(
    /// Links a partner's shared object onto one of the site's scorecards (R-SHARE-4).
    LinkSharedObject { site_id: SiteId, relationship_id: RelationshipId, scorecard_id: ScorecardId, origin_site: SiteId, object_id: ObjectId }
    |b, s, i| s.relate(i, b.site_id, RelateCommand::Link(content::LinkSharedObject { relationship_id: b.relationship_id, scorecard_id: b.scorecard_id, origin_site: b.origin_site, object_id: b.object_id })).await
);
body!(
    /// Uses a partner's shared Indicator or Performance Measure in an aggregation of the site's own object (R-SHARE-4).
    UseSharedMeasureInAggregation { site_id: SiteId, relationship_id: RelationshipId, into_object: ObjectId, origin_site: SiteId, object_id: ObjectId }
    |b, s, i| s.relate(i, b.site_id, RelateCommand::Aggregate(content::UseSharedMeasureInAggregation { relationship_id: b.relationship_id, into_object: b.into_object, origin_site: b.origin_site, object_id: b.object_id })).await
);
body!(
    /// Requests a connection with the partner of that site code, in both directions or as an offer (R-CONN-1, 2, 5, 6).
    RequestConnection { site_id: SiteId, partner_code: SiteCode, directions: Directions }
    |b, s, i| s.request_connection(i, b.site_id, b.partner_code, b.directions).await
);
body!(
    /// Approves what the partner requested (R-CONN-3).
    ApproveConnection { site_id: SiteId, partner: SiteId }
    |b, s, i| s.on_connection(i, b.site_id, b.partner, ConnectionCommand::Approve).await
);
body!(
    /// Denies what the partner requested (R-CONN-3).
    DenyConnection { site_id: SiteId, partner: SiteId }
    |b, s, i| s.on_connection(i, b.site_id, b.partner, ConnectionCommand::Deny).await
);
body!(
    /// Cancels the site's own pending request to the partner (R-CONN-3).
    CancelConnectionRequest { site_id: SiteId, partner: SiteId }
    |b, s, i| s.on_connection(i, b.site_id, b.partner, ConnectionCommand::Cancel).await
);
body!(
    /// Revokes one direction of a connection; its shares and the relationships on them go too (R-CONN-4).
    RevokeSharing { site_id: SiteId, from: SiteId, to: SiteId }
    |b, s, i| {
        let partner = if b.to == b.site_id { b.from } else { b.to };
        s.on_connection(i, b.site_id, partner, ConnectionCommand::Revoke(Link { from: b.from, to: b.to })).await
    }
);
body!(
    /// Shares one of the site's scorecards with a partner over an active link (R-SHARE-1).
    ShareScorecard { site_id: SiteId, partner: SiteId, scorecard_id: ScorecardId }
    |b, s, i| s.change_sharing(i, Link { from: b.site_id, to: b.partner }, ShareChange::Share(b.scorecard_id)).await
);
body!(
    /// Stops sharing a scorecard with a partner; relationships that lose their only path go too (R-SHARE-4).
    UnshareScorecard { site_id: SiteId, partner: SiteId, scorecard_id: ScorecardId }
    |b, s, i| s.change_sharing(i, Link { from: b.site_id, to: b.partner }, ShareChange::Unshare(b.scorecard_id)).await
);
body!(
    /// Sets the whole set of scorecards shared with a partner at once ("Edit Scorecards", R-SHARE-7).
    SetSharedScorecards { site_id: SiteId, partner: SiteId, scorecards: BTreeSet<ScorecardId> }
    |b, s, i| s.change_sharing(i, Link { from: b.site_id, to: b.partner }, ShareChange::SetShared(b.scorecards)).await
);
