//! The lists a UI needs of a site's content, from the `site_contents` read
//! model: `GET /v1/sites/{site_id}/scorecards`, `/objects`,
//! `/relationships`, `/shared-with` and `/children`.
//!
//! Tenancy is the dashboards': the site's administrators ask (the gate of
//! `queries::site_view`), a caller of the site who is not one is 403
//! `forbidden`, and a site the caller may not see is 404 `not_found`
//! exactly like a site that does not exist. Each list answers only when
//! `site_contents` is fresh (`min_position`, fail closed), and pages with
//! keyset cursors: `limit` (default 50; a larger one than 1,000 is taken
//! as 1,000; 0 is 400 `invalid_query`) and `after`, the `next` of the
//! previous page. A cursor has its list's shape, stated in the document as
//! the parameter's pattern; one of another shape (or another list's) is
//! 404 `bad_cursor`.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::Deserialize;
use shareledger_core::catalog::{ScorecardId, SiteId};
use shareledger_projections::access::AccessError;
use shareledger_projections::dashboard::contents::{
    self, ChildSitesPage, ObjectsPage, PageQuery, RelationshipsPage, ScorecardsPage, SharedWithPage,
};
use shareledger_projections::dashboard::SiteContents;
use shareledger_projections::ProjectionError;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::queries::{path, query, read_model_fresh, site_view};
use crate::state::AppState;

/// The query of a content list whose cursors have the shape `$pattern`
/// (`contents::CURSOR_PATTERNS`, held to the document by a test): every
/// string of that shape names a place in the list, any other is 400
/// `invalid_query`.
macro_rules! list_params {
    ($(#[$doc:meta])* $name:ident, $pattern:tt $(, $(#[$field_doc:meta])* $field:ident: $ty:ty)?) => {
        $(#[$doc])*
        #[derive(Debug, Deserialize, utoipa::IntoParams)]
        #[into_params(parameter_in = Query)]
        #[serde(deny_unknown_fields)]
        pub struct $name {
            $($(#[$field_doc])* pub $field: $ty,)?
            /// Page size (default 50); pages hold at most 1,000 items, and a
            /// larger `limit` is taken as 1,000.
            #[param(minimum = 1)]
            pub limit: Option<u32>,
            /// The `next` cursor of the previous page of this list.
            #[param(pattern = $pattern)]
            pub after: Option<String>,
            /// A consistency token: answer at least this fresh.
            pub min_position: Option<u64>,
        }
    };
}

list_params!(
    /// The scorecards list's query.
    ScorecardsParams,
    r"^sc\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$"
);
list_params!(
    /// The objects list's query.
    ObjectsParams,
    r"^ob\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$",
    /// Only the objects placed directly on this scorecard (none when it is
    /// not one of the site's).
    scorecard: Option<ScorecardId>
);
list_params!(
    /// The relationships list's query.
    RelationshipsParams,
    r"^re\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$"
);
list_params!(
    /// The shared-with list's query.
    SharedWithParams,
    r"^sw\.(?:[0-9a-fA-F]{2})*\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$"
);
list_params!(
    /// The child sites list's query.
    ChildrenParams,
    r"^ch\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$"
);

/// The page asked for; `limit=0` is refused.
fn page_query(limit: Option<u32>, after: Option<String>) -> Result<PageQuery, ApiError> {
    if limit == Some(0) {
        return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
    }
    Ok(PageQuery {
        limit: limit.unwrap_or(0),
        after,
    })
}

/// The dashboards' gate (the caller administers the site, else 403 or
/// 404), then the wait for `site_contents` to be fresh enough.
async fn content_view(
    state: &AppState,
    principal: &Principal,
    site: SiteId,
    min_position: Option<u64>,
) -> Result<(), ApiError> {
    site_view(state, principal, site, min_position).await?;
    read_model_fresh(state, SiteContents::NAME, min_position).await
}

/// A list's answer; a cursor not of the list's shape is the query's
/// fault: 404 `bad_cursor`.
fn listed<T>(answer: Result<T, ProjectionError>) -> Result<Json<T>, ApiError> {
    answer.map(Json).map_err(|e| match e {
        ProjectionError::BadCursor(raw) => ApiError::Access(AccessError::BadCursor(raw)),
        other => other.into(),
    })
}

/// `GET /v1/sites/{site_id}/scorecards`.
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}/scorecards",
    tag = "contents",
    summary = "The site's own scorecards, with how many objects sit directly on each; keyset-paged.",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), ScorecardsParams),
    responses(
        (status = 200, description = "One page, by name (case-insensitively), then id.", body = ScorecardsPage),
    ),
    security(("bearer" = [])),
)]
pub async fn scorecards(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<ScorecardsParams>, QueryRejection>,
) -> Result<Json<ScorecardsPage>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    let page = page_query(p.limit, p.after)?;
    content_view(&state, &principal, site, p.min_position).await?;
    listed(contents::scorecards(state.read_pool(), site, &page).await)
}

/// `GET /v1/sites/{site_id}/objects`.
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}/objects",
    tag = "contents",
    summary = "The site's own objects, with kind, name, container and the scorecards each is placed on; `scorecard` filters; keyset-paged.",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), ObjectsParams),
    responses(
        (status = 200, description = "One page, by name (case-insensitively), then id.", body = ObjectsPage),
    ),
    security(("bearer" = [])),
)]
pub async fn objects(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<ObjectsParams>, QueryRejection>,
) -> Result<Json<ObjectsPage>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    let page = page_query(p.limit, p.after)?;
    content_view(&state, &principal, site, p.min_position).await?;
    listed(contents::objects(state.read_pool(), site, p.scorecard, &page).await)
}

/// `GET /v1/sites/{site_id}/relationships` (R-SHARE-4, R-SHARE-6).
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}/relationships",
    tag = "contents",
    summary = "The site's relationships to partners' shared objects (R-SHARE-4), with target, origin site code and name (R-SHARE-6) and the partner's object; keyset-paged.",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), RelationshipsParams),
    responses(
        (status = 200, description = "One page, by the partner object's name (case-insensitively), then the relationship's id.", body = RelationshipsPage),
    ),
    security(("bearer" = [])),
)]
pub async fn relationships(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<RelationshipsParams>, QueryRejection>,
) -> Result<Json<RelationshipsPage>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    let page = page_query(p.limit, p.after)?;
    content_view(&state, &principal, site, p.min_position).await?;
    listed(contents::relationships(state.read_pool(), site, &page).await)
}

/// `GET /v1/sites/{site_id}/shared-with`.
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}/shared-with",
    tag = "contents",
    summary = "The scorecards partners share with the site over active links, per partner (the opposite of `shared-scorecards`); keyset-paged.",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), SharedWithParams),
    responses(
        (status = 200, description = "One page, by partner code, then scorecard name (case-insensitively), then id.", body = SharedWithPage),
    ),
    security(("bearer" = [])),
)]
pub async fn shared_with(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<SharedWithParams>, QueryRejection>,
) -> Result<Json<SharedWithPage>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    let page = page_query(p.limit, p.after)?;
    content_view(&state, &principal, site, p.min_position).await?;
    listed(contents::shared_with(state.read_pool(), site, &page).await)
}

/// `GET /v1/sites/{site_id}/children` (R-ONB-1).
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}/children",
    tag = "contents",
    summary = "A group's child sites (R-ONB-1); keyset-paged.",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), ChildrenParams),
    responses(
        (status = 200, description = "One page, by name (case-insensitively), then id.", body = ChildSitesPage),
    ),
    security(("bearer" = [])),
)]
pub async fn children(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<ChildrenParams>, QueryRejection>,
) -> Result<Json<ChildSitesPage>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    let page = page_query(p.limit, p.after)?;
    content_view(&state, &principal, site, p.min_position).await?;
    listed(contents::children(state.read_pool(), site, &page).await)
}
