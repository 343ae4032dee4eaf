//! The auditors' routes: Q-1 to Q-4 as of any past position or time, diffs
//! of who gained and lost access between two moments
//! (`projections::history`), sharing timelines (Q-6,
//! `projections::timeline`) and the integrity chain's verification (Q-7).
//!
//! Only auditor and operator tokens may call them. A site's auditor asks
//! about its own site: its users, the targets it owns or that were shared
//! with it, and diffs scoped to the site; an unknown or foreign user or
//! target is `unknown_user`/`unknown_target`, as elsewhere.

use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{AccessLevel, Action, ScorecardId, SiteId, UserId};
use shareledger_events::store::{VerifyOptions, VerifyReport};
use shareledger_projections::access::{
    AccessError, Explanation, LookupQuery, Target, Viewer, Visible,
};
use shareledger_projections::history::{AccessDiff, History, Moment, Scope};
use shareledger_projections::timeline::{self, Timeline, TimelinePage, TimelineQuery};

use utoipa::openapi::path::{Parameter, ParameterBuilder, ParameterIn, ParameterStyle};
use utoipa::openapi::schema::{
    AdditionalProperties, KnownFormat, ObjectBuilder, OneOfBuilder, Schema, SchemaFormat, Type,
};
use utoipa::openapi::{Ref, RefOr, Required};
use utoipa::IntoParams;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::queries::{path, query, reachable, target, TargetType};
use crate::state::AppState;

/// The moment a question is about: exactly one of `at_position`, `at_time`.
fn moment(
    position: Option<u64>,
    time: Option<DateTime<Utc>>,
    name: &str,
) -> Result<Moment, ApiError> {
    match (position, time) {
        (Some(p), None) => Ok(Moment::Position(p)),
        (None, Some(t)) => Ok(Moment::Time(t)),
        _ => Err(ApiError::InvalidQuery(format!(
            "give exactly one of {name}_position and {name}_time (RFC 3339)"
        ))),
    }
}

/// A query object whose properties are sent as query parameters of their
/// own (`style=form, explode=true`): how OpenAPI states that parameters
/// come together, or one instead of another.
fn exploded(name: &str, description: &str, schema: Schema) -> Parameter {
    ParameterBuilder::new()
        .name(name)
        .parameter_in(ParameterIn::Query)
        .required(Required::True)
        .style(Some(ParameterStyle::Form))
        .explode(Some(true))
        .description(Some(description))
        .schema(Some(schema))
        .build()
}

/// A global position of the log.
fn position_schema() -> RefOr<Schema> {
    ObjectBuilder::new()
        .schema_type(Type::Integer)
        .format(Some(SchemaFormat::KnownFormat(KnownFormat::UInt64)))
        .minimum(Some(0))
        .maximum(Some(u64::MAX))
        .into()
}

/// Exactly one of `<prefix>_position` and `<prefix>_time`.
fn moment_schema(prefix: &str) -> Schema {
    ObjectBuilder::new()
        .property(format!("{prefix}_position"), position_schema())
        .property(
            format!("{prefix}_time"),
            ObjectBuilder::new()
                .schema_type(Type::String)
                .format(Some(SchemaFormat::KnownFormat(KnownFormat::DateTime)))
                .description(Some(
                    "RFC 3339; the last position recorded at or before it.",
                )),
        )
        .min_properties(Some(1))
        .max_properties(Some(1))
        .additional_properties(Some(AdditionalProperties::FreeForm(false)))
        .into()
}

/// `at_position` or `at_time`: the moment of an as-of question.
pub struct AtParam;

impl IntoParams for AtParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![exploded(
            "at",
            "Exactly one of `at_position` (a global position, at most the log's head) and \
             `at_time` (RFC 3339).",
            moment_schema("at"),
        )]
    }
}

/// `from_position` or `from_time`: where a diff starts.
pub struct FromParam;

impl IntoParams for FromParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![exploded(
            "from",
            "Exactly one of `from_position` and `from_time` (RFC 3339); not after the diff's end.",
            moment_schema("from"),
        )]
    }
}

/// `to_position` or `to_time`: where a diff ends.
pub struct ToParam;

impl IntoParams for ToParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        vec![exploded(
            "to",
            "Exactly one of `to_position` and `to_time` (RFC 3339); not before the diff's start.",
            moment_schema("to"),
        )]
    }
}

/// What a diff is about: `scope` and exactly the fields of that scope.
pub struct DiffSubjectParam;

impl IntoParams for DiffSubjectParam {
    fn into_params(_: impl Fn() -> Option<ParameterIn>) -> Vec<Parameter> {
        let id = |schema: &str| RefOr::from(Ref::from_schema_name(schema));
        let variant = |scope: &str, fields: Vec<(&str, RefOr<Schema>)>| {
            let mut object = ObjectBuilder::new()
                .property(
                    "scope",
                    ObjectBuilder::new()
                        .schema_type(Type::String)
                        .enum_values(Some([scope])),
                )
                .required("scope");
            for (field, schema) in fields {
                object = object.property(field, schema).required(field);
            }
            object.additional_properties(Some(AdditionalProperties::FreeForm(false)))
        };
        let uuid = ObjectBuilder::new()
            .schema_type(Type::String)
            .format(Some(SchemaFormat::KnownFormat(KnownFormat::Uuid)))
            .into();
        let subject = OneOfBuilder::new()
            .item(variant("user", vec![("user_id", id("UserId"))]))
            .item(variant(
                "target",
                vec![("target_type", id("TargetType")), ("target_id", uuid)],
            ))
            .item(variant("site", vec![("site_id", id("SiteId"))]))
            .item(variant(
                "partner",
                vec![("site_id", id("SiteId")), ("partner_id", id("SiteId"))],
            ));
        vec![exploded(
            "subject",
            "`scope` and its fields: `user` with `user_id`, `target` with `target_type` and \
             `target_id`, `site` with `site_id`, or `partner` with `site_id` and `partner_id`.",
            subject.into(),
        )]
    }
}

/// The site an auditor token is limited to (`None`: every site).
fn audited_site(principal: &Principal) -> Result<Option<SiteId>, ApiError> {
    match principal {
        Principal::Auditor { site, .. } => Ok(*site),
        Principal::Operator { .. } => Ok(None),
        Principal::User { .. } => Err(ApiError::Forbidden(
            "history is read with auditor or operator tokens".into(),
        )),
    }
}

/// Refuses a user outside the auditor's site, as unknown.
async fn audit_user(
    history: &History,
    principal: &Principal,
    user: UserId,
    position: u64,
) -> Result<(), ApiError> {
    if let Some(site) = audited_site(principal)? {
        if history.site_of_user(user, position).await? != Some(site) {
            return Err(AccessError::UnknownUser(user).into());
        }
    }
    Ok(())
}

/// Refuses a target the auditor's site did not own or see, as unknown.
async fn audit_target(
    history: &History,
    principal: &Principal,
    target: Target,
    position: u64,
) -> Result<(), ApiError> {
    if let Some(site) = audited_site(principal)? {
        let owner = history.owner_of(target, position).await?;
        let known = match owner {
            Some(owner) if owner == site => true,
            Some(_) => history
                .index_around(site, position)
                .await?
                .index
                .site_knows(site, target),
            None => false,
        };
        if !known {
            return Err(AccessError::UnknownTarget(target).into());
        }
    }
    Ok(())
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AsOfCheckParams {
    #[param(ignore)]
    pub at_position: Option<u64>,
    #[param(ignore)]
    pub at_time: Option<DateTime<Utc>>,
    pub user_id: UserId,
    pub target_type: TargetType,
    pub target_id: uuid::Uuid,
    pub action: Action,
}

/// Q-1 as of a moment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AsOfCheckAnswer {
    pub position: u64,
    pub user_id: UserId,
    pub target: Target,
    pub action: Action,
    pub allowed: bool,
    pub level: Option<AccessLevel>,
}

/// `GET /v1/audit/as-of/check`.
#[utoipa::path(get, path = "/v1/audit/as-of/check", tag = "audit",
    summary = "Q-1 as of a past position or time: exactly what a replay up to it answers.",
    params(AtParam, AsOfCheckParams),
    responses((status = 200, description = "The answer.", body = AsOfCheckAnswer)),
    security(("bearer" = [])))]
pub async fn check(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<AsOfCheckParams>, QueryRejection>,
) -> Result<Json<AsOfCheckAnswer>, ApiError> {
    let p = query(params)?;
    audited_site(&principal)?;
    let history = state.history().clone();
    let position = history
        .position(moment(p.at_position, p.at_time, "at")?)
        .await?;
    let at = Moment::Position(position);
    let target = target(p.target_type, p.target_id);
    audit_user(&history, &principal, p.user_id, position).await?;
    audit_target(&history, &principal, target, position).await?;
    let (_, level) = history.level(at, p.user_id, target).await?;
    Ok(Json(AsOfCheckAnswer {
        position,
        user_id: p.user_id,
        target,
        action: p.action,
        allowed: level.is_some_and(|l| l >= p.action.required_level()),
        level,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AsOfUserParams {
    #[param(ignore)]
    pub at_position: Option<u64>,
    #[param(ignore)]
    pub at_time: Option<DateTime<Utc>>,
    pub user_id: UserId,
    /// Only targets owned by this site.
    pub site: Option<SiteId>,
    /// The `next` cursor of the previous page.
    #[param(pattern = r"^[^\x00]*$")]
    pub after: Option<String>,
    /// Page size (default 100); pages hold at most 10,000 items, and a
    /// larger `limit` is taken as 10,000.
    #[param(value_type = Option<u64>, minimum = 1)]
    pub limit: Option<usize>,
}

/// Q-2 as of a moment: one page.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AsOfLookupAnswer {
    pub position: u64,
    pub user_id: UserId,
    pub items: Vec<Visible>,
    pub next: Option<String>,
}

/// `GET /v1/audit/as-of/lookup`.
#[utoipa::path(get, path = "/v1/audit/as-of/lookup", tag = "audit",
    summary = "Q-2 as of a past position or time, paged, never truncated.",
    params(AtParam, AsOfUserParams),
    responses((status = 200, description = "One page.", body = AsOfLookupAnswer)),
    security(("bearer" = [])))]
pub async fn lookup(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<AsOfUserParams>, QueryRejection>,
) -> Result<Json<AsOfLookupAnswer>, ApiError> {
    let p = query(params)?;
    audited_site(&principal)?;
    if p.limit == Some(0) {
        return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
    }
    let history = state.history().clone();
    let position = history
        .position(moment(p.at_position, p.at_time, "at")?)
        .await?;
    audit_user(&history, &principal, p.user_id, position).await?;
    let q = LookupQuery {
        site: p.site,
        kind: None,
        after: p.after,
        limit: p.limit.unwrap_or(0),
    };
    let (_, page) = history
        .lookup(Moment::Position(position), p.user_id, &q)
        .await?;
    Ok(Json(AsOfLookupAnswer {
        position,
        user_id: p.user_id,
        items: page.items,
        next: page.next,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AsOfTargetParams {
    #[param(ignore)]
    pub at_position: Option<u64>,
    #[param(ignore)]
    pub at_time: Option<DateTime<Utc>>,
    pub target_type: TargetType,
    pub target_id: uuid::Uuid,
}

/// Q-3 as of a moment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AsOfViewersAnswer {
    pub position: u64,
    pub target: Target,
    pub viewers: Vec<Viewer>,
}

/// `GET /v1/audit/as-of/viewers`.
#[utoipa::path(get, path = "/v1/audit/as-of/viewers", tag = "audit",
    summary = "Q-3 as of a past position or time: who could see the target.",
    params(AtParam, AsOfTargetParams),
    responses((status = 200, description = "The viewers.", body = AsOfViewersAnswer)),
    security(("bearer" = [])))]
pub async fn viewers(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<AsOfTargetParams>, QueryRejection>,
) -> Result<Json<AsOfViewersAnswer>, ApiError> {
    let p = query(params)?;
    audited_site(&principal)?;
    let history = state.history().clone();
    let position = history
        .position(moment(p.at_position, p.at_time, "at")?)
        .await?;
    let target = target(p.target_type, p.target_id);
    // Who sees a target is the owner's to know.
    if let Some(site) = audited_site(&principal)? {
        if history.owner_of(target, position).await? != Some(site) {
            return Err(AccessError::UnknownTarget(target).into());
        }
    }
    let (_, viewers) = history.viewers(Moment::Position(position), target).await?;
    Ok(Json(AsOfViewersAnswer {
        position,
        target,
        viewers,
    }))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AsOfExplainParams {
    #[param(ignore)]
    pub at_position: Option<u64>,
    #[param(ignore)]
    pub at_time: Option<DateTime<Utc>>,
    pub user_id: UserId,
    pub target_type: TargetType,
    pub target_id: uuid::Uuid,
}

/// Q-4 as of a moment.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AsOfExplainAnswer {
    pub position: u64,
    #[serde(flatten)]
    pub explanation: Explanation,
}

/// `GET /v1/audit/as-of/explain`.
#[utoipa::path(get, path = "/v1/audit/as-of/explain", tag = "audit",
    summary = "Q-4 as of a past position or time: every path, each step with its event.",
    params(AtParam, AsOfExplainParams),
    responses((status = 200, description = "The explanation.", body = AsOfExplainAnswer)),
    security(("bearer" = [])))]
pub async fn explain(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<AsOfExplainParams>, QueryRejection>,
) -> Result<Json<AsOfExplainAnswer>, ApiError> {
    let p = query(params)?;
    audited_site(&principal)?;
    let history = state.history().clone();
    let position = history
        .position(moment(p.at_position, p.at_time, "at")?)
        .await?;
    let target = target(p.target_type, p.target_id);
    audit_user(&history, &principal, p.user_id, position).await?;
    audit_target(&history, &principal, target, position).await?;
    let (_, mut explanation) = history
        .explain(Moment::Position(position), p.user_id, target)
        .await?;
    state.access().read().name_actors(&mut explanation);
    Ok(Json(AsOfExplainAnswer {
        position,
        explanation,
    }))
}

/// What a diff is about, in query form.
#[derive(Debug, Clone, Copy, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum DiffScope {
    User,
    Target,
    Site,
    Partner,
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct DiffParams {
    /// user (user_id), target (target_type, target_id), site (site_id) or
    /// partner (site_id, partner_id): in the document, [`DiffSubjectParam`].
    #[param(ignore)]
    pub scope: DiffScope,
    #[param(ignore)]
    pub user_id: Option<UserId>,
    #[param(ignore)]
    pub target_type: Option<TargetType>,
    #[param(ignore)]
    pub target_id: Option<uuid::Uuid>,
    #[param(ignore)]
    pub site_id: Option<SiteId>,
    #[param(ignore)]
    pub partner_id: Option<SiteId>,
    /// Exactly one of `from_position`, `from_time` ([`FromParam`]).
    #[param(ignore)]
    pub from_position: Option<u64>,
    #[param(ignore)]
    pub from_time: Option<DateTime<Utc>>,
    /// Exactly one of `to_position`, `to_time` ([`ToParam`]).
    #[param(ignore)]
    pub to_position: Option<u64>,
    #[param(ignore)]
    pub to_time: Option<DateTime<Utc>>,
}

impl DiffParams {
    /// Refuses the fields another scope takes: each scope names its
    /// subject with exactly its own fields.
    fn only_fields_of_scope(&self) -> Result<(), ApiError> {
        let given = [
            ("user_id", self.user_id.is_some()),
            ("target_type", self.target_type.is_some()),
            ("target_id", self.target_id.is_some()),
            ("site_id", self.site_id.is_some()),
            ("partner_id", self.partner_id.is_some()),
        ];
        let own: &[&str] = match self.scope {
            DiffScope::User => &["user_id"],
            DiffScope::Target => &["target_type", "target_id"],
            DiffScope::Site => &["site_id"],
            DiffScope::Partner => &["site_id", "partner_id"],
        };
        match given.iter().find(|(name, set)| *set && !own.contains(name)) {
            Some((name, _)) => Err(ApiError::InvalidQuery(format!(
                "scope {} takes {}, not {name}",
                self.scope.as_str(),
                own.join(" and ")
            ))),
            None => Ok(()),
        }
    }
}

impl DiffScope {
    fn as_str(self) -> &'static str {
        match self {
            DiffScope::User => "user",
            DiffScope::Target => "target",
            DiffScope::Site => "site",
            DiffScope::Partner => "partner",
        }
    }
}

/// `GET /v1/audit/diff`.
#[utoipa::path(get, path = "/v1/audit/diff", tag = "audit",
    summary = "Who gained, lost or changed which access between two moments.",
    params(DiffSubjectParam, FromParam, ToParam),
    responses((status = 200, description = "The changes.", body = AccessDiff)),
    security(("bearer" = [])))]
pub async fn diff(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<DiffParams>, QueryRejection>,
) -> Result<Json<AccessDiff>, ApiError> {
    let p = query(params)?;
    p.only_fields_of_scope()?;
    let limited = audited_site(&principal)?;
    let history = state.history().clone();
    let from = moment(p.from_position, p.from_time, "from")?;
    let to = moment(p.to_position, p.to_time, "to")?;
    let missing = |what: &str| ApiError::InvalidQuery(format!("scope needs {what}"));
    let head = state
        .store()
        .head_position()
        .await
        .map_err(ApiError::backend)?;
    let scope = match p.scope {
        DiffScope::User => {
            let user = p.user_id.ok_or_else(|| missing("user_id"))?;
            audit_user(&history, &principal, user, head).await?;
            Scope::User(user)
        }
        DiffScope::Target => {
            let kind = p.target_type.ok_or_else(|| missing("target_type"))?;
            let id = p.target_id.ok_or_else(|| missing("target_id"))?;
            let target = target(kind, id);
            if let Some(site) = limited {
                if history.owner_of(target, head).await? != Some(site) {
                    return Err(AccessError::UnknownTarget(target).into());
                }
            }
            Scope::Target(target)
        }
        DiffScope::Site | DiffScope::Partner => {
            let site = p.site_id.ok_or_else(|| missing("site_id"))?;
            if limited.is_some_and(|s| s != site) {
                return Err(ApiError::NotFound(format!(
                    "no site {site} is visible to this token"
                )));
            }
            match p.scope {
                DiffScope::Partner => Scope::Partner {
                    site,
                    partner: p.partner_id.ok_or_else(|| missing("partner_id"))?,
                },
                _ => Scope::Site(site),
            }
        }
    };
    Ok(Json(history.diff(scope, from, to).await?))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct TimelineParams {
    /// Only entries involving this partner site.
    pub partner: Option<SiteId>,
    /// Only entries recorded at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only entries recorded before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// The `next` cursor of the previous page.
    #[param(pattern = r"^[^\x00]*$")]
    pub after: Option<String>,
    /// Page size (default 50); pages hold at most 1,000 entries, and a
    /// larger `limit` is taken as 1,000.
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// A consistency token: answer at least this fresh.
    pub min_position: Option<u64>,
}

impl TimelineParams {
    fn query(&self) -> Result<TimelineQuery, ApiError> {
        if self.limit == Some(0) {
            return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
        }
        Ok(TimelineQuery {
            partner: self.partner,
            from: self.from,
            to: self.to,
            after: self.after.clone(),
            limit: self.limit.unwrap_or(0),
        })
    }
}

/// Refuses another site's history to a site's auditor, as not found.
fn audit_site(principal: &Principal, site: SiteId) -> Result<(), ApiError> {
    match audited_site(principal)? {
        Some(s) if s != site => Err(ApiError::NotFound(format!(
            "no site {site} is visible to this token"
        ))),
        _ => Ok(()),
    }
}

/// The timeline read model, once fresh enough to answer from.
async fn fresh(state: &AppState, min_position: Option<u64>) -> Result<(), ApiError> {
    reachable(state, min_position).await?;
    crate::queries::read_model_fresh(state, Timeline::NAME, min_position).await
}

/// `GET /v1/audit/timeline/sites/{site_id}` (Q-6).
#[utoipa::path(get, path = "/v1/audit/timeline/sites/{site_id}", tag = "audit",
    summary = "Q-6: a site's sharing history, each entry with its actor, command and consequences.",
    params(("site_id" = uuid::Uuid, Path, description = "The site."), TimelineParams),
    responses((status = 200, description = "One page, by position.", body = TimelinePage)),
    security(("bearer" = [])))]
pub async fn site_timeline(
    State(state): State<AppState>,
    principal: Principal,
    site: Result<Path<SiteId>, PathRejection>,
    params: Result<Query<TimelineParams>, QueryRejection>,
) -> Result<Json<TimelinePage>, ApiError> {
    let site = path(site)?;
    let p = query(params)?;
    audit_site(&principal, site)?;
    fresh(&state, p.min_position).await?;
    Ok(Json(
        timeline::site_timeline(state.read_pool(), site, &p.query()?).await?,
    ))
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct LinkTimelineParams {
    /// One site of the pair.
    pub site: SiteId,
    /// The other.
    pub partner_site: SiteId,
    /// Only entries recorded at or after this time (RFC 3339).
    pub from: Option<DateTime<Utc>>,
    /// Only entries recorded before this time (RFC 3339).
    pub to: Option<DateTime<Utc>>,
    /// The `next` cursor of the previous page.
    #[param(pattern = r"^[^\x00]*$")]
    pub after: Option<String>,
    /// Page size (default 50); pages hold at most 1,000 entries, and a
    /// larger `limit` is taken as 1,000.
    #[param(minimum = 1)]
    pub limit: Option<u32>,
    /// A consistency token: answer at least this fresh.
    pub min_position: Option<u64>,
}

/// `GET /v1/audit/timeline/links` (Q-6).
#[utoipa::path(get, path = "/v1/audit/timeline/links", tag = "audit",
    summary = "Q-6: the history of the links between two sites (both directions).",
    params(LinkTimelineParams),
    responses((status = 200, description = "One page, by position.", body = TimelinePage)),
    security(("bearer" = [])))]
pub async fn link_timeline(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<LinkTimelineParams>, QueryRejection>,
) -> Result<Json<TimelinePage>, ApiError> {
    let p = query(params)?;
    let (a, b) = match audited_site(&principal)? {
        Some(s) if s == p.site => (p.site, p.partner_site),
        Some(s) if s == p.partner_site => (p.partner_site, p.site),
        Some(_) => {
            return Err(ApiError::NotFound(
                "no link of these sites is visible to this token".into(),
            ))
        }
        None => (p.site, p.partner_site),
    };
    if p.limit == Some(0) {
        return Err(ApiError::InvalidQuery("limit must be at least 1".into()));
    }
    fresh(&state, p.min_position).await?;
    let q = TimelineQuery {
        partner: None,
        from: p.from,
        to: p.to,
        after: p.after,
        limit: p.limit.unwrap_or(0),
    };
    Ok(Json(
        timeline::link_timeline(state.read_pool(), a, b, &q).await?,
    ))
}

/// `GET /v1/audit/timeline/scorecards/{scorecard_id}` (Q-6).
#[utoipa::path(get, path = "/v1/audit/timeline/scorecards/{scorecard_id}", tag = "audit",
    summary = "Q-6: a scorecard's sharing history (shared, unshared, granted, placed, removed …).",
    params(("scorecard_id" = uuid::Uuid, Path, description = "The scorecard."), TimelineParams),
    responses((status = 200, description = "One page, by position.", body = TimelinePage)),
    security(("bearer" = [])))]
pub async fn scorecard_timeline(
    State(state): State<AppState>,
    principal: Principal,
    scorecard: Result<Path<ScorecardId>, PathRejection>,
    params: Result<Query<TimelineParams>, QueryRejection>,
) -> Result<Json<TimelinePage>, ApiError> {
    let scorecard = path(scorecard)?;
    let p = query(params)?;
    if let Some(site) = audited_site(&principal)? {
        let history = state.history().clone();
        let head = state
            .store()
            .head_position()
            .await
            .map_err(ApiError::backend)?;
        let target = Target::Scorecard(scorecard);
        if history.owner_of(target, head).await? != Some(site) {
            return Err(AccessError::UnknownTarget(target).into());
        }
    }
    fresh(&state, p.min_position).await?;
    Ok(Json(
        timeline::scorecard_timeline(state.read_pool(), scorecard, &p.query()?).await?,
    ))
}

/// `GET /v1/audit/verify` (Q-7).
#[utoipa::path(get, path = "/v1/audit/verify", tag = "audit",
    summary = "Q-7: walk the hash chain; the first altered, inserted or removed event, and what is not sealed yet.",
    responses((status = 200, description = "The report (`problem` is null when the log is intact).", body = VerifyReport)),
    security(("bearer" = [])))]
pub async fn verify(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<VerifyReport>, ApiError> {
    audited_site(&principal)?;
    let report = shareledger_events::store::verify(state.store(), VerifyOptions::default())
        .await
        .map_err(ApiError::backend)?;
    Ok(Json(report))
}
