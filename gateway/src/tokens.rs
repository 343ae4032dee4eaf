//! `/v1/tokens`: people and services get in over HTTP.
//!
//! * `POST /v1/tokens` issues a token; its secret is in this answer only.
//!   Operators issue any kind (users', services', auditors', operators');
//!   a site's user managers (Manage Users or Instance Admin, active) issue
//!   user tokens for the active users of their own site, and nothing else.
//! * `GET /v1/tokens` lists tokens with their last use: an operator's
//!   every token (or one site's, `site_id`), a user manager's the user
//!   tokens of their site.
//! * `DELETE /v1/tokens/{token_id}` revokes one, at once in every process
//!   (auth.rs): operators any, user managers their site's user tokens.
//!
//! A user manager's right is read from the access index once it may answer
//! (fail closed): one deactivated or stripped of Manage Users meanwhile is
//! refused even while the index is behind. Tokens another caller may not
//! manage are not found (404), as sites it cannot see are.

use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::Json;
use serde::Deserialize;
use shareledger_commands::CommandError;
use shareledger_core::catalog::{Name, SiteId, UserId};
use shareledger_core::DomainError;
use uuid::Uuid;

use crate::auth::{
    self, IssuedToken, Principal, TokenError, TokenKind, TokenListing, TokenQuery, TokenRequest,
};
use crate::commands::parse_json;
use crate::error::ApiError;
use crate::queries::{path, query};
use crate::state::AppState;

/// How long a token lives when the request does not say.
pub const DEFAULT_LIFETIME_DAYS: u32 = 90;

/// What to issue, by kind: each kind names exactly what it speaks for.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum IssueToken {
    /// A user of a site.
    User {
        site_id: SiteId,
        user_id: UserId,
        name: Name,
        #[serde(default, deserialize_with = "whole_days")]
        #[schema(minimum = 1, maximum = 3660)]
        expires_in_days: Option<u32>,
    },
    /// A service of a site, acting for its users (`ShareLedger-Act-As`).
    Service {
        site_id: SiteId,
        name: Name,
        #[serde(default, deserialize_with = "whole_days")]
        #[schema(minimum = 1, maximum = 3660)]
        expires_in_days: Option<u32>,
    },
    /// An auditor of one site, or of the whole platform (no `site_id`).
    Auditor {
        #[serde(default)]
        site_id: Option<SiteId>,
        name: Name,
        #[serde(default, deserialize_with = "whole_days")]
        #[schema(minimum = 1, maximum = 3660)]
        expires_in_days: Option<u32>,
    },
    /// An operator of the platform.
    Operator {
        name: Name,
        #[serde(default, deserialize_with = "whole_days")]
        #[schema(minimum = 1, maximum = 3660)]
        expires_in_days: Option<u32>,
    },
}

/// A whole number of days: JSON's `30` and `30.0` are one number (as JSON
/// Schema's `integer` says), so both are read; `30.5`, negative numbers
/// and numbers beyond `u32` are refused.
fn whole_days<'de, D: serde::Deserializer<'de>>(d: D) -> Result<Option<u32>, D::Error> {
    let Some(number) = Option::<serde_json::Number>::deserialize(d)? else {
        return Ok(None);
    };
    let whole = match number.as_u64() {
        Some(n) => u32::try_from(n).ok(),
        None => number
            .as_f64()
            .filter(|v| v.fract() == 0.0 && (0.0..=f64::from(u32::MAX)).contains(v))
            .map(|v| v as u32),
    };
    whole.map(Some).ok_or_else(|| {
        serde::de::Error::custom(format!(
            "expires_in_days {number} is not a whole number of days"
        ))
    })
}

impl IssueToken {
    /// The request as the token store takes it, and its lifetime in days
    /// (default [`DEFAULT_LIFETIME_DAYS`]).
    fn into_request(self) -> (TokenRequest, u32) {
        let (kind, site, user, name, days) = match self {
            IssueToken::User {
                site_id,
                user_id,
                name,
                expires_in_days,
            } => (
                TokenKind::User,
                Some(site_id),
                Some(user_id),
                name,
                expires_in_days,
            ),
            IssueToken::Service {
                site_id,
                name,
                expires_in_days,
            } => (
                TokenKind::Service,
                Some(site_id),
                None,
                name,
                expires_in_days,
            ),
            IssueToken::Auditor {
                site_id,
                name,
                expires_in_days,
            } => (TokenKind::Auditor, site_id, None, name, expires_in_days),
            IssueToken::Operator {
                name,
                expires_in_days,
            } => (TokenKind::Operator, None, None, name, expires_in_days),
        };
        let days = days.unwrap_or(DEFAULT_LIFETIME_DAYS);
        let request = TokenRequest {
            kind,
            site,
            user,
            name: name.as_str().to_owned(),
            lifetime: Duration::from_secs(u64::from(days) * 86_400),
        };
        (request, days)
    }
}

/// `GET /v1/tokens`'s filter.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TokensParams {
    /// Only this site's tokens (a user manager's own site by default, and
    /// only that).
    pub site_id: Option<SiteId>,
    /// Only this user's tokens.
    pub user_id: Option<UserId>,
    /// At most this many (default and most: 1,000).
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// The id of the last token of the previous page: the page after it.
    pub after: Option<Uuid>,
}

/// The most tokens one page lists.
pub const MAX_TOKENS_PAGE: u32 = 1_000;

/// The site whose user tokens `principal` manages, checked on a fresh
/// access index: its own site, if it is an active user manager of it.
async fn managed_site(state: &AppState, principal: &Principal) -> Result<SiteId, ApiError> {
    let Principal::User { site, .. } = principal else {
        return Err(ApiError::Forbidden(
            "tokens are managed by operators and by a site's user managers".into(),
        ));
    };
    let index = state
        .access()
        .fresh(None, state.options().freshness_timeout)
        .await?;
    if principal.administers(&index, *site) {
        Ok(*site)
    } else {
        Err(ApiError::Forbidden(
            "only a site's Instance Admins and user managers manage its users' tokens".into(),
        ))
    }
}

/// `POST /v1/tokens`.
#[utoipa::path(post, path = "/v1/tokens", tag = "tokens",
    summary = "Issues a token (operators: any kind; a site's user managers: user tokens for its active users).",
    request_body = IssueToken,
    responses((status = 201, description = "The token, with its secret: shown this once.", body = IssuedToken)),
    security(("bearer" = [])))]
pub async fn issue(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<(StatusCode, Json<IssuedToken>), ApiError> {
    let body: IssueToken = parse_json(&headers, body, state.options().body_limit)?;
    let (request, days) = body.into_request();
    if !(1..=3660).contains(&days) {
        return Err(ApiError::InvalidBody(
            "expires_in_days must be from 1 to 3660".into(),
        ));
    }
    if !matches!(principal, Principal::Operator { .. }) {
        let site = managed_site(&state, &principal).await?;
        let (TokenKind::User, Some(user)) = (request.kind, request.user) else {
            return Err(ApiError::Forbidden(
                "a site's user managers issue user tokens; operators issue the other kinds".into(),
            ));
        };
        if request.site != Some(site) {
            return Err(ApiError::NotFound(
                "user managers issue tokens for the users of their own site".into(),
            ));
        }
        let index = state
            .access()
            .fresh(None, state.options().freshness_timeout)
            .await?;
        match index.user_facts(user) {
            Some(facts) if facts.site == site && facts.active => {}
            Some(facts) if facts.site == site => {
                return Err(ApiError::Command(CommandError::Domain(
                    DomainError::UserInactive(user),
                )))
            }
            _ => return Err(ApiError::NotFound(format!("no user {user} on this site"))),
        }
    }
    let issued = auth::issue(state.pool(), request)
        .await
        .map_err(|e| match e {
            TokenError::Database(e) => ApiError::Database(e),
            other => ApiError::InvalidBody(other.to_string()),
        })?;
    Ok((StatusCode::CREATED, Json(issued)))
}

/// `GET /v1/tokens`.
#[utoipa::path(get, path = "/v1/tokens", tag = "tokens",
    summary = "Lists tokens with their last use (operators: all, or one site's; a site's user managers: its user tokens), newest first; a page at a time with `limit` and `after` (the last token's id).",
    params(TokensParams),
    responses((status = 200, description = "Newest first (ties by id); fewer than `limit` when the list ends.", body = Vec<TokenListing>)),
    security(("bearer" = [])))]
pub async fn list(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<TokensParams>, QueryRejection>,
) -> Result<Json<Vec<TokenListing>>, ApiError> {
    let p = query(params)?;
    if p.limit == Some(0) {
        return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
    }
    let mut asked = TokenQuery {
        site: p.site_id,
        user: p.user_id,
        kind: None,
        limit: Some(p.limit.unwrap_or(MAX_TOKENS_PAGE).min(MAX_TOKENS_PAGE)),
        after: p.after,
    };
    if !matches!(principal, Principal::Operator { .. }) {
        let site = managed_site(&state, &principal).await?;
        if p.site_id.is_some_and(|s| s != site) {
            return Err(ApiError::NotFound(format!(
                "no site {} is visible to this token",
                p.site_id.expect("checked")
            )));
        }
        // A user manager sees its site's user tokens only.
        asked.site = Some(site);
        asked.kind = Some(TokenKind::User);
    }
    let page = auth::list_page(state.pool(), &asked)
        .await?
        .ok_or_else(|| {
            ApiError::Access(shareledger_projections::access::AccessError::BadCursor(
                p.after.map(|a| a.to_string()).unwrap_or_default(),
            ))
        })?;
    Ok(Json(page))
}

/// `DELETE /v1/tokens/{token_id}`.
#[utoipa::path(delete, path = "/v1/tokens/{token_id}", tag = "tokens",
    summary = "Revokes a token at once, in every process (operators: any; a site's user managers: its user tokens). Revoking a revoked token changes nothing.",
    params(("token_id" = Uuid, Path, description = "The token.")),
    responses((status = 204, description = "Revoked (now or before).")),
    security(("bearer" = [])))]
pub async fn revoke(
    State(state): State<AppState>,
    principal: Principal,
    token_id: Result<Path<Uuid>, PathRejection>,
) -> Result<StatusCode, ApiError> {
    let token_id = path(token_id)?;
    let not_found = || ApiError::NotFound(format!("no token {token_id} is visible to this token"));
    let record = auth::find(state.pool(), token_id).await?;
    if !matches!(principal, Principal::Operator { .. }) {
        let site = managed_site(&state, &principal).await?;
        let manages = record
            .as_ref()
            .is_some_and(|r| r.kind == TokenKind::User && r.site == Some(site));
        if !manages {
            return Err(not_found());
        }
    }
    if record.is_none() {
        return Err(not_found());
    }
    state.tokens().revoke(token_id).await?;
    Ok(StatusCode::NO_CONTENT)
}
