//! Finding partners and asking several at once (seed 002's "Request
//! Connections"): `GET /v1/directory`, the sites that chose to be listed
//! (`SetDirectoryListing`), searched by name or code; and
//! `POST /v1/sites/{site_id}/connection-requests`, one `RequestConnection`
//! per partner code through the one command path, with a result per
//! partner.
//!
//! The batch is not one transaction: each partner's request is its own
//! command, decided and written (or refused) on its own, as if sent one by
//! one. Each has its own idempotency key, derived from the caller's key and
//! the partner's code, so sending the same batch again with the same key
//! writes nothing twice: requests already written answer their first
//! result (`replayed`), refused ones are decided again.

use std::collections::BTreeMap;
use std::time::Instant;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::Json;
use serde::{Deserialize, Serialize};
use shareledger_commands::Issued;
use shareledger_core::catalog::{Directions, SiteCode, SiteId};
use shareledger_core::connection::RequestConnection;
use shareledger_core::Decision;
use shareledger_projections::access::AccessError;
use shareledger_projections::dashboard::contents::{self, ChildSitesPage};
use shareledger_projections::dashboard::SiteContents;
use shareledger_projections::ProjectionError;
use uuid::Uuid;

use crate::auth::Principal;
use crate::commands::{idempotency_key, parse_json, scoped_key, CommandResult};
use crate::error::{ApiError, Problem};
use crate::queries::{path, query, reachable, read_model_fresh};
use crate::state::AppState;

/// The most partners one batch asks.
pub const MAX_PARTNERS: usize = 50;

/// The directory's query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DirectoryParams {
    /// Only sites whose name or code contains this (case-insensitive).
    #[param(pattern = r"^[^\x00]*$")]
    pub search: Option<String>,
    /// Page size (default 50); pages hold at most 1,000 sites, and a larger
    /// `limit` is taken as 1,000.
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// The `next` cursor of the previous page.
    #[param(pattern = r"^di\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$")]
    pub after: Option<String>,
    /// A consistency token: answer at least this fresh.
    pub min_position: Option<u64>,
}

/// `GET /v1/directory`: the partner directory.
#[utoipa::path(
    get,
    path = "/v1/directory",
    tag = "contents",
    summary = "The partner directory (seed 002): sites that chose to be listed, searched by name or code, by name; keyset-paged. Any token may read it.",
    params(DirectoryParams),
    responses(
        (status = 200, description = "One page, by name (case-insensitively), then id.", body = ChildSitesPage),
    ),
    security(("bearer" = [])),
)]
pub async fn directory(
    State(state): State<AppState>,
    _principal: Principal,
    params: Result<Query<DirectoryParams>, QueryRejection>,
) -> Result<Json<ChildSitesPage>, ApiError> {
    let p = query(params)?;
    if p.limit == Some(0) {
        return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
    }
    reachable(&state, p.min_position).await?;
    read_model_fresh(&state, SiteContents::NAME, p.min_position).await?;
    let page = contents::PageQuery {
        limit: p.limit.unwrap_or(0),
        after: p.after,
    };
    contents::directory(state.read_pool(), p.search.as_deref(), &page)
        .await
        .map(Json)
        .map_err(|e| match e {
            ProjectionError::BadCursor(raw) => ApiError::Access(AccessError::BadCursor(raw)),
            other => other.into(),
        })
}

/// Several partners asked at once.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RequestConnections {
    /// 1 to 50 partners' site codes (a code named twice is asked once).
    #[schema(min_items = 1, max_items = 50)]
    pub partner_codes: Vec<SiteCode>,
    pub directions: Directions,
}

/// One partner's outcome: the command's result, or its problem.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartnerOutcome {
    pub partner_code: SiteCode,
    /// The HTTP status this request alone would have had.
    pub status: u16,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub result: Option<CommandResult>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub problem: Option<Problem>,
}

/// The batch's answer, one outcome per partner in the order asked.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct RequestConnectionsResult {
    pub outcomes: Vec<PartnerOutcome>,
}

/// Namespace of the per-partner keys derived from a batch's key.
const PARTNER_KEY_NAMESPACE: Uuid = Uuid::from_u128(0x9a4c_27e1_3b58_4d0f_a6e2_51c8_0d7b_3f94);

/// `POST /v1/sites/{site_id}/connection-requests`.
#[utoipa::path(
    post,
    path = "/v1/sites/{site_id}/connection-requests",
    tag = "commands",
    summary = "Requests connections with several partners at once (seed 002): one RequestConnection per code, each decided on its own, with a result per partner.",
    params(
        ("site_id" = uuid::Uuid, Path, description = "The requesting site."),
        ("idempotency-key" = uuid::Uuid, Header, description = "A UUID the caller makes up for this batch; each partner's request gets its own key from it."),
    ),
    request_body = RequestConnections,
    responses(
        (status = 200, description = "Each partner's outcome, in the order asked.", body = RequestConnectionsResult),
    ),
    security(("bearer" = [])),
)]
pub async fn request_connections(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Json<RequestConnectionsResult>, ApiError> {
    let site = path(site)?;
    let actor = principal.actor()?;
    let key = idempotency_key(&headers)?;
    let batch: RequestConnections = parse_json(&headers, body, state.options().body_limit)?;
    if batch.partner_codes.is_empty() || batch.partner_codes.len() > MAX_PARTNERS {
        return Err(ApiError::InvalidBody(format!(
            "partner_codes: 1 to {MAX_PARTNERS} codes, not {}",
            batch.partner_codes.len()
        )));
    }
    // A code named twice (in any case) is asked once: its first outcome.
    let mut seen = std::collections::BTreeSet::new();
    let codes: Vec<SiteCode> = batch
        .partner_codes
        .into_iter()
        .filter(|code| seen.insert(code.as_str().to_owned()))
        .collect();
    let scoped = scoped_key(&principal, RequestConnection::NAME, key);
    let mut outcomes = Vec::with_capacity(codes.len());
    for code in codes {
        let command = RequestConnection {
            site_id: site,
            partner_code: code.clone(),
            directions: batch.directions,
        };
        let issued = Issued {
            actor: actor.clone(),
            key: Uuid::new_v5(
                &PARTNER_KEY_NAMESPACE,
                format!("{scoped}:{}", code.as_str()).as_bytes(),
            ),
        };
        let started = Instant::now();
        let result = state.service().execute(&issued, command).await;
        state
            .metrics()
            .command(RequestConnection::NAME, result.is_ok(), started);
        outcomes.push(match result {
            Ok(outcome) => PartnerOutcome {
                partner_code: code,
                status: if outcome.replayed { 200 } else { 201 },
                result: Some(CommandResult::new(
                    RequestConnection::NAME,
                    outcome,
                    BTreeMap::new(),
                )),
                problem: None,
            },
            Err(e) => {
                let error = ApiError::from(e);
                if crate::error::database_fault(&error).is_some() {
                    // The database is away: the rest would fail alike.
                    return Err(error);
                }
                let mut problem = error.problem();
                problem.detail =
                    crate::names::speak(&problem.detail, &state.access().read(), principal.site());
                PartnerOutcome {
                    partner_code: code,
                    status: problem.status,
                    result: None,
                    problem: Some(problem),
                }
            }
        });
    }
    Ok(Json(RequestConnectionsResult { outcomes }))
}
