//! The read side: the access model's questions (Q-1 to Q-4) answered from
//! the in-memory index, and a site's dashboards (Q-5) from the SQL read
//! models. Every query accepts `min_position` (a command's consistency
//! token) and then answers at least that fresh, or fails with
//! `not_fresh_enough` after the configured wait.
//!
//! **Who may ask what** (also `docs/http-api.md`): a user asks about their
//! own access; a site's administrators (Instance Admin or Manage Users),
//! its auditors and operators ask about the site's users, its dashboards,
//! and who sees its content. A target the caller's site cannot see (neither
//! its own nor shared with it) is answered exactly like a target that does
//! not exist: `unknown_target`, so that nobody learns of another site's
//! unshared data.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{
    AccessLevel, Action, ObjectId, ObjectKind, PermissionFlag, Role, ScorecardId, SiteId, UserId,
};
use shareledger_projections::access::{
    AccessError, AccessIndex, Explanation, LookupQuery, Missing, Target, TargetKind, Viewer,
    Visible,
};
use shareledger_projections::dashboard::{
    self, Connection, Dashboards, LinkPage, PartnerShares, PendingRequest, SiteSummary, UserDetail,
    UserSort, UsersPage, UsersQuery,
};
use shareledger_projections::history::HistoryError;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// Unwraps a query string, as a 400 `invalid_query` when it does not parse.
/// Refuses, before any handler, a query string with a NUL character
/// (`%00`) in a parameter's name or value: nothing could search for it or
/// store it (PostgreSQL holds no U+0000 in text), and it must not reach a
/// query as a 500. 400 `invalid_query`, naming the parameter.
pub(crate) async fn refuse_nul_in_query(
    request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<axum::response::Response, ApiError> {
    if let Some(query) = request.uri().query() {
        if let Some(pair) = query.split('&').find(|pair| pair.contains("%00")) {
            if crate::console::wants_page(request.uri(), request.headers()) {
                return Ok(crate::console::nul_in_query());
            }
            let name = pair.split('=').next().unwrap_or_default();
            return Err(ApiError::InvalidQuery(format!(
                "query parameter {name} holds a NUL character (%00), which no parameter may hold"
            )));
        }
    }
    Ok(next.run(request).await)
}

pub(crate) fn query<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(t)| t)
        .map_err(|e| ApiError::InvalidQuery(e.body_text()))
}

/// Unwraps path parameters, as a 400 `invalid_path` when they do not parse.
pub(crate) fn path<T>(p: Result<Path<T>, PathRejection>) -> Result<T, ApiError> {
    p.map(|Path(t)| t)
        .map_err(|e| ApiError::InvalidPath(e.body_text()))
}

/// Refuses at once a `min_position` beyond the log's head (409
/// `future_position`): no write of this log is that far yet, so waiting
/// for it could only time out. The access index's position is a lower
/// bound of the head, so a token a command gave out costs no query.
pub(crate) async fn reachable(state: &AppState, min_position: Option<u64>) -> Result<(), ApiError> {
    let Some(wanted) = min_position else {
        return Ok(());
    };
    if wanted <= state.access().position() || wanted <= state.store().known_head() {
        return Ok(());
    }
    let head = state
        .store()
        .head_position()
        .await
        .map_err(ApiError::backend)?;
    if wanted > head {
        return Err(HistoryError::Future { wanted, head }.into());
    }
    Ok(())
}

/// What a target is: `target_type` and `target_id`.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum TargetType {
    Scorecard,
    Object,
}

pub(crate) fn target(kind: TargetType, id: uuid::Uuid) -> Target {
    match kind {
        TargetType::Scorecard => Target::Scorecard(ScorecardId(id)),
        TargetType::Object => Target::Object(ObjectId(id)),
    }
}

/// The user a question is about: the one named, else the caller.
fn subject(principal: &Principal, named: Option<UserId>) -> Result<UserId, ApiError> {
    named.or(principal.user()).ok_or_else(|| {
        ApiError::InvalidQuery("user_id is required for tokens that are not a user's".into())
    })
}

/// Refuses questions about users the caller may not ask about. A user the
/// caller may not know of is `unknown_user`, like one that does not exist.
fn may_ask(principal: &Principal, index: &AccessIndex, user: UserId) -> Result<(), ApiError> {
    if principal.may_ask_about(index, user) {
        return Ok(());
    }
    let known_to_caller = match (index.user_facts(user), principal.site()) {
        (Some(facts), Some(site)) => facts.site == site,
        _ => false,
    };
    if known_to_caller {
        Err(ApiError::Forbidden(
            "only the user and their site's administrators may ask about a user's access".into(),
        ))
    } else {
        Err(AccessError::UnknownUser(user).into())
    }
}

/// Refuses targets the caller's site cannot see, as if they did not exist.
fn may_see(principal: &Principal, index: &AccessIndex, target: Target) -> Result<(), ApiError> {
    if principal.reads_everything() {
        return Ok(());
    }
    match principal.site() {
        Some(site) if index.site_knows(site, target) => Ok(()),
        _ => Err(AccessError::UnknownTarget(target).into()),
    }
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct CheckParams {
    /// Whose access (default: the calling user).
    pub user_id: Option<UserId>,
    pub target_type: TargetType,
    pub target_id: uuid::Uuid,
    /// view, update, edit or admin.
    pub action: Action,
    /// A consistency token: answer at least this fresh.
    pub min_position: Option<u64>,
}

/// Q-1's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct CheckAnswer {
    pub user_id: UserId,
    pub target: Target,
    pub action: Action,
    pub allowed: bool,
    /// The user's level on the target, if any.
    pub level: Option<AccessLevel>,
    /// The log position the answer reflects.
    pub position: u64,
}

/// `GET /v1/access/check` (Q-1).
#[utoipa::path(
    get,
    path = "/v1/access/check",
    tag = "access",
    summary = "Q-1: may the user view, update, edit or admin the target?",
    params(CheckParams),
    responses(
        (status = 200, description = "The answer.", body = CheckAnswer),
    ),
    security(("bearer" = [])),
)]
pub async fn check(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<CheckParams>, QueryRejection>,
) -> Result<Json<CheckAnswer>, ApiError> {
    let p = query(params)?;
    let user = subject(&principal, p.user_id)?;
    let target = target(p.target_type, p.target_id);
    reachable(&state, p.min_position).await?;
    let access = state.access();
    let index = access
        .fresh(p.min_position, state.options().freshness_timeout)
        .await?;
    may_ask(&principal, &index, user)?;
    may_see(&principal, &index, target)?;
    // One evaluation: a check is the level compared with what the action
    // needs (the oracle test holds `check` and `level` to that).
    let level = index.level(user, target)?;
    let allowed = level.is_some_and(|l| l >= p.action.required_level());
    Ok(Json(CheckAnswer {
        user_id: user,
        target,
        action: p.action,
        allowed,
        level,
        position: index.position(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LookupParams {
    /// Whose access (default: the calling user).
    pub user_id: Option<UserId>,
    /// Only targets owned by this site.
    pub site: Option<SiteId>,
    /// Only targets of this kind.
    pub kind: Option<LookupKind>,
    /// The `next` cursor of the previous page.
    #[param(pattern = r"^[^\x00]*$")]
    pub after: Option<String>,
    /// Page size (default 100); pages hold at most 10,000 items, and a
    /// larger `limit` is taken as 10,000.
    #[param(value_type = Option<u64>, minimum = 1)]
    pub limit: Option<usize>,
    /// A consistency token: answer at least this fresh.
    pub min_position: Option<u64>,
}

/// Which targets a lookup lists: scorecards, or objects of one kind.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum LookupKind {
    Scorecard,
    Result,
    Indicator,
    Program,
    PerformanceMeasure,
}

impl From<LookupKind> for TargetKind {
    fn from(kind: LookupKind) -> Self {
        match kind {
            LookupKind::Scorecard => TargetKind::Scorecard,
            LookupKind::Result => TargetKind::Object(ObjectKind::Result),
            LookupKind::Indicator => TargetKind::Object(ObjectKind::Indicator),
            LookupKind::Program => TargetKind::Object(ObjectKind::Program),
            LookupKind::PerformanceMeasure => TargetKind::Object(ObjectKind::PerformanceMeasure),
        }
    }
}

/// One page of Q-2's answer. `next` is set whenever more items follow.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LookupAnswer {
    pub user_id: UserId,
    pub items: Vec<Visible>,
    pub next: Option<String>,
    pub position: u64,
}

/// `GET /v1/access/lookup` (Q-2).
#[utoipa::path(
    get,
    path = "/v1/access/lookup",
    tag = "access",
    summary = "Q-2: everything the user can see, filtered and paged (never truncated).",
    params(LookupParams),
    responses(
        (status = 200, description = "The answer.", body = LookupAnswer),
    ),
    security(("bearer" = [])),
)]
pub async fn lookup(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<LookupParams>, QueryRejection>,
) -> Result<Json<LookupAnswer>, ApiError> {
    let p = query(params)?;
    let user = subject(&principal, p.user_id)?;
    let kind = p.kind.map(TargetKind::from);
    if let Some(0) = p.limit {
        return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
    }
    let lookup = LookupQuery {
        site: p.site,
        kind,
        after: p.after,
        limit: p.limit.unwrap_or(0),
    };
    reachable(&state, p.min_position).await?;
    let access = state.access();
    let index = access
        .fresh(p.min_position, state.options().freshness_timeout)
        .await?;
    may_ask(&principal, &index, user)?;
    let page = index.lookup(user, &lookup)?;
    Ok(Json(LookupAnswer {
        user_id: user,
        items: page.items,
        next: page.next,
        position: index.position(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TargetParams {
    pub target_type: TargetType,
    pub target_id: uuid::Uuid,
    /// A consistency token: answer at least this fresh.
    pub min_position: Option<u64>,
}

/// Q-3's answer: every user of every site who can see the target.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ViewersAnswer {
    pub target: Target,
    pub owner: SiteId,
    pub viewers: Vec<Viewer>,
    pub position: u64,
}

/// `GET /v1/access/viewers` (Q-3): for the owner site's administrators.
#[utoipa::path(
    get,
    path = "/v1/access/viewers",
    tag = "access",
    summary = "Q-3: every user of every site who can see the target, with their level.",
    params(TargetParams),
    responses(
        (status = 200, description = "The answer.", body = ViewersAnswer),
    ),
    security(("bearer" = [])),
)]
pub async fn viewers(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<TargetParams>, QueryRejection>,
) -> Result<Json<ViewersAnswer>, ApiError> {
    let p = query(params)?;
    let target = target(p.target_type, p.target_id);
    reachable(&state, p.min_position).await?;
    let access = state.access();
    let index = access
        .fresh(p.min_position, state.options().freshness_timeout)
        .await?;
    may_see(&principal, &index, target)?;
    let owner = index
        .owner_of(target)
        .ok_or(AccessError::UnknownTarget(target))?;
    if !principal.administers(&index, owner) {
        return Err(ApiError::Forbidden(
            "only the owner site's administrators may ask who sees its content".into(),
        ));
    }
    let viewers = index.viewers(target)?;
    Ok(Json(ViewersAnswer {
        target,
        owner,
        viewers,
        position: index.position(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ExplainParams {
    pub user_id: Option<UserId>,
    pub target_type: TargetType,
    pub target_id: uuid::Uuid,
    /// A consistency token: answer at least this fresh.
    pub min_position: Option<u64>,
}

/// Q-4's answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ExplainAnswer {
    #[serde(flatten)]
    pub explanation: Explanation,
    pub position: u64,
}

/// `GET /v1/access/explain` (Q-4). Callers outside the owner site do not
/// learn which of the owner's scorecards show the target.
#[utoipa::path(
    get,
    path = "/v1/access/explain",
    tag = "access",
    summary = "Q-4: every path by which the user sees the target, each step with its event; or what is missing.",
    params(ExplainParams),
    responses(
        (status = 200, description = "The answer.", body = ExplainAnswer),
    ),
    security(("bearer" = [])),
)]
pub async fn explain(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<ExplainParams>, QueryRejection>,
) -> Result<Json<ExplainAnswer>, ApiError> {
    let p = query(params)?;
    let user = subject(&principal, p.user_id)?;
    let target = target(p.target_type, p.target_id);
    reachable(&state, p.min_position).await?;
    let access = state.access();
    let index = access
        .fresh(p.min_position, state.options().freshness_timeout)
        .await?;
    may_ask(&principal, &index, user)?;
    may_see(&principal, &index, target)?;
    let mut explanation = index.explain(user, target)?;
    let outsider = !principal.reads_everything() && principal.site() != Some(explanation.owner);
    if outsider {
        for missing in &mut explanation.missing {
            if let Missing::SharedScorecard { showing, .. } = missing {
                showing.clear();
            }
        }
    }
    Ok(Json(ExplainAnswer {
        explanation,
        position: index.position(),
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct FreshParams {
    /// A consistency token: answer at least this fresh.
    pub min_position: Option<u64>,
}

/// A page of a list of links: `limit` and `after`, the last link of the
/// previous page as `<from_site>.<to_site>`.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LinkPageParams {
    /// At most this many links (default: all).
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// The last link of the previous page, `<from_site>.<to_site>` (its
    /// two ids); a link not in this list is 404 `bad_cursor`.
    #[param(pattern = r"^[0-9a-fA-F-]{36}\.[0-9a-fA-F-]{36}$")]
    pub after: Option<String>,
    /// A consistency token: answer at least this fresh.
    pub min_position: Option<u64>,
}

impl LinkPageParams {
    fn page(&self) -> Result<LinkPage, ApiError> {
        if self.limit == Some(0) {
            return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
        }
        let after = match &self.after {
            None => None,
            Some(raw) => {
                let bad = || ApiError::Access(AccessError::BadCursor(raw.clone()));
                let (from, to) = raw.split_once('.').ok_or_else(bad)?;
                let id = |s: &str| uuid::Uuid::parse_str(s).map(SiteId).map_err(|_| bad());
                Some((id(from)?, id(to)?))
            }
        };
        Ok(LinkPage {
            limit: self.limit,
            after,
        })
    }
}

/// Checks that the caller administers the site, then waits for the
/// dashboards read model to be fresh enough.
pub(crate) async fn site_view(
    state: &AppState,
    principal: &Principal,
    site: SiteId,
    min_position: Option<u64>,
) -> Result<(), ApiError> {
    reachable(state, min_position).await?;
    // A user's right comes from the access index: asked only once it may
    // answer (fail closed), so that an admin deactivated or stripped of
    // Manage Users is refused even while the index is behind or stopped.
    let allowed = match principal {
        Principal::User { .. } => {
            let index = state
                .access()
                .fresh(min_position, state.options().freshness_timeout)
                .await?;
            principal.administers(&index, site)
        }
        _ => principal.administers(&state.access().read(), site),
    };
    if !allowed {
        return Err(if principal.site() == Some(site) {
            ApiError::Forbidden(
                "a site's dashboards are for its Instance Admins and user managers".into(),
            )
        } else {
            ApiError::NotFound(format!("no site {site} is visible to this token"))
        });
    }
    read_model_fresh(state, Dashboards::NAME, min_position).await
}

/// Waits (bounded) until SQL read model `name` may answer: following the
/// log, at `min_position` and at the log's head as this process knows it
/// (fail closed: else 503 `read_model_stale` or `not_fresh_enough`).
pub(crate) async fn read_model_fresh(
    state: &AppState,
    name: &str,
    min_position: Option<u64>,
) -> Result<(), ApiError> {
    let options = state.options();
    state
        .runtime()
        .fresh(
            name,
            min_position,
            options.freshness,
            options.freshness_timeout,
        )
        .await?;
    Ok(())
}

/// `GET /v1/sites/{site_id}`: the site's settings and counts.
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}",
    tag = "dashboards",
    summary = "The site's settings and counts.",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), FreshParams),
    responses(
        (status = 200, description = "The answer.", body = SiteSummary),
    ),
    security(("bearer" = [])),
)]
pub async fn site(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<FreshParams>, QueryRejection>,
) -> Result<Json<SiteSummary>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    site_view(&state, &principal, site, p.min_position).await?;
    dashboard::site(state.read_pool(), site)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("no site {site} is visible to this token")))
}

/// `GET /v1/sites/{site_id}/connections` (Q-5): both directions, with status.
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}/connections",
    tag = "dashboards",
    summary = "Q-5: the site's connections in both directions, with status; a page at a time with `limit` and `after` (the last link).",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), LinkPageParams),
    responses(
        (status = 200, description = "The answer.", body = Vec<Connection>),
    ),
    security(("bearer" = [])),
)]
pub async fn connections(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<LinkPageParams>, QueryRejection>,
) -> Result<Json<Vec<Connection>>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    let page = p.page()?;
    site_view(&state, &principal, site, p.min_position).await?;
    Ok(Json(
        dashboard::connections(state.read_pool(), site, page).await?,
    ))
}

/// `GET /v1/sites/{site_id}/pending-requests` (Q-5): what the site must act on.
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}/pending-requests",
    tag = "dashboards",
    summary = "Q-5: the requests the site must act on; a page at a time with `limit` and `after` (the last link).",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), LinkPageParams),
    responses(
        (status = 200, description = "The answer.", body = Vec<PendingRequest>),
    ),
    security(("bearer" = [])),
)]
pub async fn pending_requests(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<LinkPageParams>, QueryRejection>,
) -> Result<Json<Vec<PendingRequest>>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    let page = p.page()?;
    site_view(&state, &principal, site, p.min_position).await?;
    Ok(Json(
        dashboard::pending_requests(state.read_pool(), site, page).await?,
    ))
}

/// `GET /v1/sites/{site_id}/shared-scorecards` (Q-5, R-SHARE-7): per partner.
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}/shared-scorecards",
    tag = "dashboards",
    summary = "Q-5: the scorecards the site shares, per partner (R-SHARE-7).",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), FreshParams),
    responses(
        (status = 200, description = "The answer.", body = Vec<PartnerShares>),
    ),
    security(("bearer" = [])),
)]
pub async fn shared_scorecards(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<FreshParams>, QueryRejection>,
) -> Result<Json<Vec<PartnerShares>>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    site_view(&state, &principal, site, p.min_position).await?;
    Ok(Json(
        dashboard::shared_scorecards(state.read_pool(), site).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct UsersParams {
    /// Username, name, email or role contains this (case-insensitive; a
    /// role as on the wire, `data_entry`, or in words, `data entry`).
    #[param(pattern = r"^[^\x00]*$")]
    pub search: Option<String>,
    /// username (default), name, email, last_activity, added_at, role or
    /// active.
    pub sort: Option<UserSort>,
    #[serde(default)]
    pub descending: bool,
    /// Page size (default 50); pages hold at most 1,000 users, and a larger
    /// `limit` is taken as 1,000.
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// Where the page starts: another page's `next` cursor (the page after
    /// it) or its `previous` cursor (the page before it), of the same sort
    /// and filters.
    #[param(pattern = r"^[^\x00]*$")]
    pub after: Option<String>,
    /// Only active users (`true`: hide the inactive) or only inactive ones.
    pub active: Option<bool>,
    /// Only users of this role preset.
    pub role: Option<Role>,
    /// Only users holding this permission flag.
    pub flag: Option<PermissionFlag>,
    /// A consistency token: answer at least this fresh.
    pub min_position: Option<u64>,
}

/// `GET /v1/sites/{site_id}/users/{user_id}`: one user, with their level on
/// each scorecard assigned to them.
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}/users/{user_id}",
    tag = "dashboards",
    summary = "Q-5: one user of the site: role, flags, email, active, last activity, and their level on each scorecard (own and partners').",
    params(
        ("site_id" = uuid::Uuid, Path, description = "The site."),
        ("user_id" = uuid::Uuid, Path, description = "The user."),
        FreshParams
    ),
    responses(
        (status = 200, description = "The answer.", body = UserDetail),
    ),
    security(("bearer" = [])),
)]
pub async fn user(
    State(state): State<AppState>,
    principal: Principal,
    ids: Result<Path<(SiteId, UserId)>, PathRejection>,
    params: Result<Query<FreshParams>, QueryRejection>,
) -> Result<Json<UserDetail>, ApiError> {
    let (site, user) = path(ids)?;
    let p = query(params)?;
    site_view(&state, &principal, site, p.min_position).await?;
    dashboard::user(state.read_pool(), site, user)
        .await?
        .map(Json)
        .ok_or_else(|| ApiError::NotFound(format!("site {site} has no user {user}")))
}

/// `GET /v1/sites/{site_id}/users` (Q-5): sortable, searchable, keyset-paged.
#[utoipa::path(
    get,
    path = "/v1/sites/{site_id}/users",
    tag = "dashboards",
    summary = "Q-5: the site's users, sortable, searchable, filtered by active, role and flag, keyset-paged.",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), UsersParams),
    responses(
        (status = 200, description = "The answer.", body = UsersPage),
    ),
    security(("bearer" = [])),
)]
pub async fn users(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<UsersParams>, QueryRejection>,
) -> Result<Json<UsersPage>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    if let Some(0) = p.limit {
        return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
    }
    if p.search.as_deref().is_some_and(|s| s.contains('\0')) {
        return Err(ApiError::InvalidQuery(
            "search may not hold the NUL character (U+0000)".into(),
        ));
    }
    site_view(&state, &principal, site, p.min_position).await?;
    let q = UsersQuery {
        search: p.search,
        sort: p.sort.unwrap_or_default(),
        descending: p.descending,
        limit: p.limit.unwrap_or(0),
        after: p.after,
        active: p.active,
        role: p.role,
        flag: p.flag,
    };
    Ok(Json(dashboard::users(state.read_pool(), site, &q).await?))
}
