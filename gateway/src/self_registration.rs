//! Self-registration from a published link (seed 003, R-ONB-2).
//!
//! * `POST /v1/sites/{site_id}/self-registration-link`: the group's
//!   Instance Admin makes a new link key (`slr_` and 48 hex digits, 192
//!   random bits), shown this once; the log records only its SHA-256
//!   (`SetSelfRegistrationLink`). Each call makes a new key and the last
//!   one is the only one that works (rotation; a retry after a lost answer
//!   simply makes another). `DELETE` turns the link off.
//! * `POST /v1/self-registration`: anyone holding the key registers a
//!   partner site and its first manager (`SelfRegisterPartner` with
//!   `via_link`: the decision itself refuses a key that is not the group's
//!   current one), and gets the manager's first token. No bearer token.
//!
//! Abuse is bounded: a few registrations per minute per address and a
//! total per minute ([`Limits`], 429 `rate_limited` with `Retry-After`), a
//! body of at most [`MAX_BODY`] bytes, and an unknown, rotated or
//! switched-off key is 404 `self_registration_link_invalid` whatever the
//! reason, so nothing tells a guesser how close it came.

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection};
use axum::extract::{ConnectInfo, Path, State};
use axum::http::{Extensions, HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use governor::clock::{Clock, DefaultClock};
use governor::{DefaultDirectRateLimiter, DefaultKeyedRateLimiter, Quota, RateLimiter};
use rand::RngCore;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use shareledger_commands::{CommandError, Issued};
use shareledger_core::catalog::{Email, Name, SeatLimit, SiteCode, SiteId, UserId, Username};
use shareledger_core::site::{SelfRegisterPartner, SetSelfRegistrationLink};
use shareledger_core::DomainError;
use shareledger_events::Actor;
use shareledger_projections::dashboard::Dashboards;
use uuid::Uuid;

use crate::auth::{self, IssuedToken, Principal, TokenKind, TokenRequest};
use crate::commands::{idempotency_key, parse_json, CommandResult};
use crate::error::ApiError;
use crate::queries::{path, read_model_fresh};
use crate::state::{AppState, GatewayOptions};

/// The largest self-registration body.
pub const MAX_BODY: usize = 8 * 1024;

/// How long the new manager's first token lasts.
const FIRST_TOKEN_LIFETIME: Duration = Duration::from_secs(30 * 86_400);

/// Namespace of the ids and keys derived for a self-registration.
const REGISTRATION_NAMESPACE: Uuid = Uuid::from_u128(0x3e8d_5a71_c94b_4f26_9b0e_6d12_a7f3_c845);

/// The self-registration route's rate limits.
pub struct Limits {
    per_address: DefaultKeyedRateLimiter<IpAddr>,
    total: DefaultDirectRateLimiter,
}

impl std::fmt::Debug for Limits {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Limits").finish_non_exhaustive()
    }
}

impl Limits {
    pub fn new(options: &GatewayOptions) -> Self {
        let per_minute = |n: u32| Quota::per_minute(NonZeroU32::new(n.max(1)).expect("at least 1"));
        Self {
            per_address: RateLimiter::keyed(per_minute(options.registrations_per_minute)),
            total: RateLimiter::direct(per_minute(options.registrations_per_minute_total)),
        }
    }

    /// Takes one registration from `address`'s allowance and the total, or
    /// says how long to wait.
    fn admit(&self, address: IpAddr) -> Result<(), ApiError> {
        let wait = |not_until: governor::NotUntil<_>| ApiError::RateLimited {
            retry_after: not_until
                .wait_time_from(DefaultClock::default().now())
                .as_secs()
                .max(1),
        };
        if self.per_address.len() > 100_000 {
            self.per_address.retain_recent();
        }
        self.per_address.check_key(&address).map_err(wait)?;
        self.total.check().map_err(wait)
    }
}

/// The hex SHA-256 of a link key: what the log records.
fn link_hash(key: &str) -> String {
    hex::encode(Sha256::digest(key.as_bytes()))
}

/// A new link key.
fn new_link_key() -> String {
    let mut secret = [0u8; 24];
    rand::thread_rng().fill_bytes(&mut secret);
    format!("slr_{}", hex::encode(secret))
}

/// Whether `key` has a link key's shape.
fn is_link_key(key: &str) -> bool {
    key.strip_prefix("slr_")
        .is_some_and(|hex| hex.len() == 48 && hex.bytes().all(|b| b.is_ascii_hexdigit()))
}

/// How a new link treats the sites registered through it.
#[derive(Debug, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PublishLink {
    /// New sites are children of the group (default false).
    #[serde(default)]
    pub child_of_group: bool,
}

/// A link just made: its key is shown this once.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PublishedLink {
    /// The key to put in the published link (`slr_` and 48 hex digits).
    /// Anyone holding it may register a partner with `POST
    /// /v1/self-registration`, until it is rotated or turned off.
    pub link_key: String,
    pub child_of_group: bool,
    pub result: CommandResult,
}

/// `POST /v1/sites/{site_id}/self-registration-link`.
#[utoipa::path(
    post,
    path = "/v1/sites/{site_id}/self-registration-link",
    tag = "self-registration",
    summary = "Makes the group's self-registration link key (seed 003): shown once, recorded only as its SHA-256; the last one made is the only one that works. Instance Admin.",
    params(("site_id" = uuid::Uuid, Path, description = "The group.")),
    request_body = PublishLink,
    responses(
        (status = 201, description = "The new key.", body = PublishedLink),
    ),
    security(("bearer" = [])),
)]
pub async fn publish(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let site = path(site)?;
    let actor = principal.actor()?;
    let asked: PublishLink = parse_json(&headers, body, state.options().body_limit)?;
    let key = new_link_key();
    let command = SetSelfRegistrationLink {
        site_id: site,
        link_hash: Some(link_hash(&key)),
        child_of_group: asked.child_of_group,
    };
    let result = set_link(&state, actor, command).await?;
    let published = PublishedLink {
        link_key: key,
        child_of_group: asked.child_of_group,
        result,
    };
    Ok((StatusCode::CREATED, Json(published)).into_response())
}

/// `DELETE /v1/sites/{site_id}/self-registration-link`.
#[utoipa::path(
    delete,
    path = "/v1/sites/{site_id}/self-registration-link",
    tag = "self-registration",
    summary = "Turns the group's self-registration link off: no key works until a new one is made. Instance Admin.",
    params(("site_id" = uuid::Uuid, Path, description = "The group.")),
    responses(
        (status = 200, description = "Written.", body = CommandResult),
    ),
    security(("bearer" = [])),
)]
pub async fn withdraw(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
) -> Result<Json<CommandResult>, ApiError> {
    let site = path(site)?;
    let actor = principal.actor()?;
    let command = SetSelfRegistrationLink {
        site_id: site,
        link_hash: None,
        child_of_group: false,
    };
    set_link(&state, actor, command).await.map(Json)
}

/// Runs `SetSelfRegistrationLink` (each call its own command: a new key
/// is a new request).
async fn set_link(
    state: &AppState,
    actor: Actor,
    command: SetSelfRegistrationLink,
) -> Result<CommandResult, ApiError> {
    let issued = Issued {
        actor,
        key: Uuid::new_v4(),
    };
    let started = std::time::Instant::now();
    let result = state.service().execute(&issued, command).await;
    state
        .metrics()
        .command("SetSelfRegistrationLink", result.is_ok(), started);
    Ok(CommandResult::new(
        "SetSelfRegistrationLink",
        result?,
        BTreeMap::new(),
    ))
}

/// A partner registering itself through a group's published link.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Registration {
    /// The key of the published link (`slr_` and 48 hex digits).
    #[schema(pattern = r"^[\s\S]*$")]
    pub link_key: String,
    /// The new site's code and name.
    pub code: SiteCode,
    pub name: Name,
    /// The first manager.
    pub manager_username: Username,
    pub manager_name: Name,
    #[serde(default)]
    pub manager_email: Option<Email>,
}

/// A partner registered: its site, its manager, and the manager's first
/// token (`null` when this answers a retry: the token was given the first
/// time).
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Registered {
    pub site_id: SiteId,
    pub code: SiteCode,
    pub manager_id: UserId,
    pub manager_username: Username,
    pub token: Option<IssuedToken>,
    pub result: CommandResult,
}

/// The group whose current link a key is, and the limit its registered
/// sites get (the model site's).
#[derive(Debug, Clone, sqlx::FromRow)]
pub struct LinkGroup {
    pub site: Uuid,
    pub code: String,
    pub name: String,
    pub seat_limit: i64,
}

/// The group that published `key` as its current link, if any: the
/// dashboards name it (read at least as fresh as the log's head now); the
/// decision checks the key again against the group's state in the log.
pub async fn group_of(state: &AppState, key: &str) -> Result<Option<LinkGroup>, ApiError> {
    if !is_link_key(key) {
        return Ok(None);
    }
    let head = state
        .store()
        .head_position()
        .await
        .map_err(CommandError::Log)?;
    read_model_fresh(state, Dashboards::NAME, Some(head)).await?;
    sqlx::query_as(
        "SELECT s.site_id AS site, s.code, s.name, m.seat_limit FROM rm.dash_sites s \
         JOIN rm.dash_sites m ON m.site_id = s.self_registration_model_site \
         WHERE s.self_registration_link_hash = $1 AND s.self_registration_enabled",
    )
    .bind(link_hash(key))
    .fetch_optional(state.read_pool())
    .await
    .map_err(ApiError::Database)
}

/// `POST /v1/self-registration`.
#[utoipa::path(
    post,
    path = "/v1/self-registration",
    tag = "self-registration",
    summary = "Registers a partner site and its first manager through a group's published link (seed 003, R-ONB-2); no bearer token. Rate-limited per address.",
    params(
        ("idempotency-key" = uuid::Uuid, Header, description = "A UUID the caller makes up for this registration: a retry with it registers nothing twice."),
    ),
    request_body = Registration,
    responses(
        (status = 201, description = "Registered.", body = Registered),
        (status = 200, description = "A retry of a registration already made (no new token).", body = Registered),
    ),
)]
pub async fn register(
    State(state): State<AppState>,
    extensions: Extensions,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let address = extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::from([0, 0, 0, 0]), |c| c.0.ip());
    state.registrations().admit(address)?;
    let key = idempotency_key(&headers)?;
    let bytes = body.map_err(|rejection| {
        if rejection.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge { limit: MAX_BODY }
        } else {
            ApiError::MalformedJson(rejection.body_text())
        }
    })?;
    if bytes.len() > MAX_BODY {
        return Err(ApiError::PayloadTooLarge { limit: MAX_BODY });
    }
    let asked: Registration = parse_json(&headers, Ok(bytes), MAX_BODY)?;
    let invalid = || {
        ApiError::Command(CommandError::Domain(
            DomainError::SelfRegistrationLinkInvalid,
        ))
    };
    let hash = link_hash(&asked.link_key);
    let Some(LinkGroup {
        site: group,
        code: group_code,
        seat_limit,
        ..
    }) = group_of(&state, &asked.link_key).await?
    else {
        return Err(invalid());
    };
    let derived = |what: &str| {
        Uuid::new_v5(
            &REGISTRATION_NAMESPACE,
            format!("{hash}:{key}:{what}").as_bytes(),
        )
    };
    let seat_limit = SeatLimit::new(u32::try_from(seat_limit).unwrap_or(u32::MAX))
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    let command = SelfRegisterPartner {
        group_site: SiteId(group),
        site_id: SiteId(derived("site")),
        code: asked.code.clone(),
        name: asked.name,
        seat_limit,
        manager_id: UserId(derived("manager")),
        manager_username: asked.manager_username.clone(),
        manager_name: asked.manager_name,
        manager_email: asked.manager_email,
        child_of_group: false,
        via_link: Some(hash.clone()),
    };
    let (site_id, manager_id) = (command.site_id, command.manager_id);
    let issued = Issued {
        actor: Actor::Operator {
            name: format!("self-registration link of {group_code}"),
        },
        key: derived("command"),
    };
    let started = std::time::Instant::now();
    let result = state.service().execute(&issued, command).await;
    state
        .metrics()
        .command("SelfRegisterPartner", result.is_ok(), started);
    let outcome = result?;
    let replayed = outcome.replayed;
    let token = if replayed {
        None
    } else {
        Some(
            auth::issue(
                state.pool(),
                TokenRequest {
                    kind: TokenKind::User,
                    site: Some(site_id),
                    user: Some(manager_id),
                    name: "self-registration".into(),
                    lifetime: FIRST_TOKEN_LIFETIME,
                },
            )
            .await
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        )
    };
    let created = BTreeMap::from([
        ("site_id".to_owned(), site_id.0),
        ("manager_id".to_owned(), manager_id.0),
    ]);
    let registered = Registered {
        site_id,
        code: asked.code,
        manager_id,
        manager_username: asked.manager_username,
        token,
        result: CommandResult::new("SelfRegisterPartner", outcome, created),
    };
    let status = if replayed {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    Ok((status, Json(registered)).into_response())
}
