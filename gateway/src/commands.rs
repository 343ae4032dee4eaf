//! `POST /v1/commands/{Name}`: every command of the domain core, by the
//! name our users already use (`RequestConnection`, `GrantScorecardAccess`,
//! …). The JSON body is the core command itself (its type implements
//! `shareledger_core::Decision`); the registry below maps names to types.
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

use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::de::DeserializeOwned;
use serde::Serialize;
use shareledger_commands::{Issued, Outcome};
use shareledger_core::{connection, content, lifecycle, site, Decision};
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
    /// The ids the command created, by the body's field naming each
    /// (`{"user_id": "…"}`): the caller's, or the server's where the caller
    /// left the field out. Empty for commands that create nothing.
    pub created: BTreeMap<String, Uuid>,
    pub events: Vec<WrittenEvent>,
}

impl CommandResult {
    pub(crate) fn new(command: &str, outcome: Outcome, created: BTreeMap<String, Uuid>) -> Self {
        Self {
            command: command.to_owned(),
            position: outcome.last_position,
            replayed: outcome.replayed,
            created,
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

/// Reads the idempotency key header: a UUID, bare or as the draft's
/// structured-field string (`"8e03978e-…"`).
pub(crate) fn idempotency_key(headers: &HeaderMap) -> Result<Uuid, ApiError> {
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

/// Namespace of the ids the gateway creates for commands that leave them out.
const CREATED_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5d1e_0c47_a9b2_4e6f_8a3d_17c9_e2f4_6b05);

/// Gives the body each id field of `creates` it leaves out: a new id
/// derived from the (scoped) idempotency key and the field, so a retry of
/// the same send names the same thing. The field is written into the bytes
/// (first member of the object), so the typed parse still sees the caller's
/// own members exactly as sent. Returns the body to parse and every created
/// id (given or made), by field.
fn with_created_ids(
    bytes: Bytes,
    value: &serde_json::Value,
    creates: &[&str],
    key: Uuid,
) -> (Bytes, BTreeMap<String, Uuid>) {
    let Some(object) = value.as_object() else {
        return (bytes, BTreeMap::new());
    };
    let mut created = BTreeMap::new();
    let mut missing = Vec::new();
    for field in creates {
        match object.get(*field) {
            None => {
                let id = Uuid::new_v5(&CREATED_ID_NAMESPACE, format!("{key}:{field}").as_bytes());
                created.insert((*field).to_owned(), id);
                missing.push(format!("\"{field}\":\"{id}\""));
            }
            Some(given) => {
                if let Some(id) = given.as_str().and_then(|s| Uuid::parse_str(s).ok()) {
                    created.insert((*field).to_owned(), id);
                }
            }
        }
    }
    if missing.is_empty() {
        return (bytes, created);
    }
    let text = String::from_utf8_lossy(&bytes);
    let open = text.find('{').expect("an object starts with a brace");
    let rest = &text[open + 1..];
    let separator = if object.is_empty() { "" } else { "," };
    let body = format!("{}{{{}{separator}{rest}", &text[..open], missing.join(","));
    (Bytes::from(body), created)
}

/// Namespace of the keys the gateway derives from callers' keys.
const SCOPED_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x2c7b_91d4_6e03_4a8f_b5c1_d09e_7f36_a2b8);

/// The key the command service sees: the caller's key scoped to the token
/// and the command, so that one caller's key can never replay (and reveal)
/// another caller's result, nor another command's.
pub(crate) fn scoped_key(principal: &Principal, command: &str, key: Uuid) -> Uuid {
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
    parse_bytes_checked(headers, &read_body(body, limit)?)
}

/// The body's bytes, or why they could not be read (too large: 413).
fn read_body(body: Result<Bytes, BytesRejection>, limit: usize) -> Result<Bytes, ApiError> {
    body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit }
        } else {
            ApiError::MalformedJson(rejection.body_text())
        }
    })
}

/// [`parse_json_checked`] of bytes read already.
fn parse_bytes_checked<T: DeserializeOwned>(
    headers: &HeaderMap,
    body: &Bytes,
) -> Result<(T, serde_json::Value), ApiError> {
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
    let value: serde_json::Value = serde_json::from_slice(body).map_err(classify)?;
    if let Some(path) = nul_pointer(&value) {
        return Err(ApiError::UnstorableText { path });
    }
    // The typed parse reads the bytes again rather than the value: it
    // keeps serde_json's positions in its messages, and refuses a member
    // named twice (the value keeps the last one).
    let parsed = serde_json::from_slice(body).map_err(classify)?;
    Ok((parsed, value))
}

async fn run<C: Decision + DeserializeOwned>(
    state: &AppState,
    principal: &Principal,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let actor = principal.actor()?;
    let key = idempotency_key(headers)?;
    let key = scoped_key(principal, C::NAME, key);
    let bytes = read_body(body, state.options().body_limit)?;
    let (bytes, created, sent) = if C::CREATES.is_empty() {
        (bytes, BTreeMap::new(), None)
    } else {
        // The ids the caller left out are filled in before the typed parse.
        let (value, _): (serde_json::Value, _) = parse_bytes_checked(headers, &bytes)?;
        let (bytes, created) = with_created_ids(bytes, &value, C::CREATES, key);
        (bytes, created, Some(value))
    };
    let (command, parsed): (C, _) = parse_bytes_checked(headers, &bytes)?;
    // The caller's body as sent (without the ids filled in) is what a
    // retry is compared with.
    let fingerprint = idempotency::fingerprint(C::NAME, sent.as_ref().unwrap_or(&parsed));
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
        let result = state.service().execute(&issued, command).await;
        state.metrics().command(C::NAME, result.is_ok(), started);
        let keys = state.idempotency();
        match result {
            Ok(outcome) => {
                let result = CommandResult::new(C::NAME, outcome, created);
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

/// A command body's schema with the id fields of `creates` optional: the
/// server gives each one the caller leaves out (see [`with_created_ids`]).
fn server_created(
    schema: utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>,
    creates: &[&str],
) -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
    use utoipa::openapi::schema::Schema;
    use utoipa::openapi::RefOr;
    let RefOr::T(Schema::Object(mut object)) = schema else {
        return schema;
    };
    object.required.retain(|r| !creates.contains(&r.as_str()));
    if !creates.is_empty() {
        let fields = creates
            .iter()
            .map(|f| format!("`{f}`"))
            .collect::<Vec<_>>()
            .join(", ");
        let note = format!(
            "Leave out {fields} and the server creates the id (the same for a retry with the \
             same idempotency key); the answer's `created` names it."
        );
        object.description = Some(match object.description.take() {
            Some(d) => format!("{d}\n\n{note}"),
            None => note,
        });
    }
    RefOr::T(Schema::Object(object))
}

/// A refused command's answer: a domain error's detail names sites, users,
/// scorecards and objects as people do ([`crate::names::speak`]).
pub(crate) fn speaking(state: &AppState, principal: &Principal, error: ApiError) -> Response {
    if matches!(
        error,
        ApiError::Command(shareledger_commands::CommandError::Domain(_))
    ) {
        let index = state.access().read();
        let viewer = principal.site();
        error.into_response_speaking(|detail| crate::names::speak(&detail, &index, viewer))
    } else {
        error.into_response()
    }
}

/// The registry: every command's name, from one list of core's command
/// types (each its own HTTP body).
macro_rules! registry {
    ($($command:ty),* $(,)?) => {
        /// Every command's name, in the API document's order.
        pub const NAMES: &[&str] = &[$(<$command as Decision>::NAME),*];

        /// `POST /v1/commands/{name}`.
        pub async fn handle(
            State(state): State<AppState>,
            Path(name): Path<String>,
            principal: Principal,
            headers: HeaderMap,
            body: Result<Bytes, BytesRejection>,
        ) -> Result<Response, ApiError> {
            $(
                if name == <$command as Decision>::NAME {
                    return Ok(run::<$command>(&state, &principal, &headers, body)
                        .await
                        .unwrap_or_else(|e| speaking(&state, &principal, e)));
                }
            )*
            Err(ApiError::UnknownCommand(name))
        }

        /// Each command's name, summary and body schema, for the API document.
        pub fn catalog() -> Vec<(&'static str, &'static str, String)> {
            vec![$((
                <$command as Decision>::NAME,
                <$command as Decision>::SUMMARY,
                <$command as utoipa::ToSchema>::name().into_owned(),
            )),*]
        }

        /// Registers every body's schema (and the schemas it refers to).
        pub fn schemas(schemas: &mut Vec<(String, utoipa::openapi::RefOr<utoipa::openapi::schema::Schema>)>) {
            $(
                schemas.push((
                    <$command as utoipa::ToSchema>::name().into_owned(),
                    server_created(
                        <$command as utoipa::PartialSchema>::schema(),
                        <$command as Decision>::CREATES,
                    ),
                ));
                <$command as utoipa::ToSchema>::schemas(schemas);
            )*
        }
    };
}

registry!(
    site::RegisterSite,
    site::SetSeatLimit,
    site::SetParentSite,
    site::ConfigureSelfRegistration,
    site::RequireTwoFactor,
    site::SetDirectoryListing,
    site::SelfRegisterPartner,
    site::AddUser,
    site::AddExistingUser,
    site::ImportUsers,
    site::ChangeUserRole,
    site::ChangeUserDetails,
    site::SetPermissionFlags,
    site::GrantScorecardAccess,
    site::RevokeScorecardAccess,
    site::DeactivateUser,
    site::ReactivateUser,
    site::HideOrganizationSettings,
    content::CreateScorecard,
    content::CreateObject,
    content::PlaceObjectOnScorecard,
    content::RemoveObjectFromScorecard,
    content::ChangeObjectField,
    content::LinkSharedObject,
    content::UseSharedMeasureInAggregation,
    content::UnlinkSharedObject,
    content::StopUsingSharedMeasure,
    lifecycle::RenameScorecard,
    lifecycle::ArchiveScorecard,
    lifecycle::RenameObject,
    lifecycle::ArchiveObject,
    connection::RequestConnection,
    connection::ApproveConnection,
    connection::DenyConnection,
    connection::CancelConnectionRequest,
    connection::RevokeSharing,
    connection::ShareScorecard,
    connection::UnshareScorecard,
    connection::SetSharedScorecards,
);
