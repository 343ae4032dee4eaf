//! The changes feed over HTTP (issue 17, first part): `GET /v1/changes`,
//! the log's events after a position, as a JSON page, waiting (long poll)
//! up to `wait` seconds (at most 5) when nothing new is there yet.
//!
//! Each caller sees only what it may (tenancy):
//! * operators, and auditors of no site: every event;
//! * a site's auditors, and its Instance Admins and user managers: the
//!   events of the site's own streams (`site-<id>`, `content-<id>`) and of
//!   the connection streams it is one of the two sites of; never another
//!   site's private events (its users, its content), nor the log's own
//!   lifecycle events or other sites' code claims.
//! * Other users: 403.
//!
//! A page holds at most `limit` events the caller sees, found among at
//! most [`SCAN`] events of the log; `next` is the position to pass as
//! `after` for the following page (the last position looked at, so a
//! caller that sees few events still moves on), `head` the log's head
//! when the page was read. Positions are the log's: gapless and in commit
//! order, so `after=next` never skips or repeats an event.

use std::time::Duration;

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::http::HeaderMap;
use axum::response::{IntoResponse, Response};
use axum::Json;
use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{content_stream, site_stream, SiteId};
use shareledger_events::store::PositionFrom;
use shareledger_events::{Direction, RecordedEvent};
use uuid::Uuid;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::queries::query;
use crate::state::AppState;

/// The most events of the log one page looks at.
pub const SCAN: usize = 5_000;
/// The longest a page waits for a new event.
pub const MAX_WAIT_SECONDS: u64 = 5;
/// The most events one page holds.
pub const MAX_LIMIT: u32 = 1_000;

/// The feed's query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct ChangesParams {
    /// Events after this position (0, the default: from the start).
    pub after: Option<u64>,
    /// At most this many events (default 100, at most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// When nothing new is there, wait up to this many seconds for it
    /// (default 0, at most 5: well inside the service's request timeout).
    #[param(maximum = 5)]
    pub wait: Option<u64>,
    /// Only events of this category: `site`, `content`, `connection` or
    /// `sitecode`.
    #[param(pattern = r"^(site|content|connection|sitecode)$")]
    pub category: Option<String>,
    /// Only events of this type (`LinkRevoked`, …; `docs/events.md`).
    #[param(schema_with = event_type_schema)]
    pub event_type: Option<String>,
}

/// One event of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Change {
    pub position: u64,
    pub event_id: Uuid,
    pub stream: String,
    /// The stream's category (`site`, `content`, `connection`, `sitecode`).
    pub category: String,
    pub event_type: String,
    pub schema_version: u32,
    pub recorded_at: DateTime<Utc>,
    #[schema(value_type = Object)]
    pub data: serde_json::Value,
    /// Who caused it, its correlation and causation (as the log records).
    #[schema(value_type = Object)]
    pub metadata: serde_json::Value,
}

impl Change {
    /// The event as the feed shows it.
    pub(crate) fn of(event: RecordedEvent) -> Self {
        Change {
            position: event.global_position,
            event_id: event.event_id,
            category: category(&event.stream).to_owned(),
            stream: event.stream,
            event_type: event.event_type,
            schema_version: event.schema_version,
            recorded_at: event.recorded_at,
            data: event.data,
            metadata: event.metadata,
        }
    }
}

/// Which events one caller's feed holds: its scope and its filters.
#[derive(Debug, Clone)]
pub(crate) struct Filter {
    pub(crate) scope: Scope,
    pub(crate) category: Option<String>,
    pub(crate) event_type: Option<String>,
}

impl Filter {
    pub(crate) fn wants(&self, e: &RecordedEvent) -> bool {
        let lifecycle = e.stream.starts_with("$$");
        let seen = if lifecycle {
            matches!(self.scope, Scope::Everything)
        } else {
            self.scope.sees(&e.stream)
        };
        seen && self
            .category
            .as_deref()
            .is_none_or(|c| !lifecycle && category(&e.stream) == c)
            && self.event_type.as_deref().is_none_or(|t| e.event_type == t)
    }
}

/// One page of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ChangesPage {
    pub events: Vec<Change>,
    /// Pass as `after` for the following page.
    pub next: u64,
    /// The log's head when the page was read.
    pub head: u64,
}

/// Which events a caller sees.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Scope {
    Everything,
    Site(SiteId),
}

impl Scope {
    fn sees(self, stream: &str) -> bool {
        match self {
            Scope::Everything => true,
            Scope::Site(site) => {
                if stream == site_stream(site) || stream == content_stream(site) {
                    return true;
                }
                // `connection-<lower>-<higher>`: either site.
                let suffix = site.stream_suffix();
                stream
                    .strip_prefix("connection-")
                    .and_then(|pair| pair.split_once('-'))
                    .is_some_and(|(lo, hi)| lo == suffix || hi == suffix)
            }
        }
    }
}

/// Every event type's name (of the site, content, connection and site
/// code families).
fn event_types() -> impl Iterator<Item = &'static str> {
    use shareledger_core::catalog::{ConnectionEvent, ContentEvent, SiteCodeEvent, SiteEvent};
    [
        SiteEvent::TYPES,
        ContentEvent::TYPES,
        ConnectionEvent::TYPES,
        SiteCodeEvent::TYPES,
    ]
    .into_iter()
    .flatten()
    .copied()
}

/// `event_type`'s schema: one of the event types' names.
fn event_type_schema() -> utoipa::openapi::schema::Object {
    utoipa::openapi::schema::ObjectBuilder::new()
        .schema_type(utoipa::openapi::schema::Type::String)
        .enum_values(Some(event_types()))
        .build()
}

/// The category of a stream (its name up to the first `-`).
fn category(stream: &str) -> &str {
    stream.split('-').next().unwrap_or(stream)
}

/// Who sees what: the caller's scope, or why it sees nothing.
pub(crate) async fn scope(state: &AppState, principal: &Principal) -> Result<Scope, ApiError> {
    match principal {
        Principal::Operator { .. } | Principal::Auditor { site: None, .. } => Ok(Scope::Everything),
        Principal::Auditor {
            site: Some(site), ..
        } => Ok(Scope::Site(*site)),
        Principal::User { site, .. } => {
            // Asked of an index that may answer (fail closed): a user
            // stripped of their flags is refused even while it is behind.
            let index = state
                .access()
                .fresh(None, state.options().freshness_timeout)
                .await?;
            if principal.administers(&index, *site) {
                Ok(Scope::Site(*site))
            } else {
                Err(ApiError::Forbidden(
                    "the changes feed is for a site's Instance Admins, user managers and auditors"
                        .into(),
                ))
            }
        }
    }
}

/// `GET /v1/changes`.
#[utoipa::path(
    get,
    path = "/v1/changes",
    tag = "changes",
    summary = "The log's events after a position that the caller may see (its site's and its links'; operators everything), a page at a time; waits up to `wait` seconds (at most 5) for a new one.",
    params(ChangesParams),
    responses(
        (status = 200, description = "One page, in log order (JSON); or, asked with `Accept: text/event-stream`, the events as Server-Sent Events from `after` (or the `Last-Event-ID` header) on, without end: each `event: change` with `id:` its position and `data:` the event as in a page; heartbeats as comments; `event: dropped` (a client too slow to keep up, with the position to resume after) or `event: closed` (the token no longer allows it) end the stream.", content(
            (ChangesPage = "application/json"),
            (String = "text/event-stream"),
        )),
    ),
    security(("bearer" = [])),
)]
pub async fn changes(
    State(state): State<AppState>,
    principal: Principal,
    headers: HeaderMap,
    params: Result<Query<ChangesParams>, QueryRejection>,
) -> Result<Response, ApiError> {
    let p = query(params)?;
    let limit = limit(p.limit, MAX_LIMIT)?;
    let wait = wait(p.wait)?;
    if let Some(c) = &p.category {
        if !["site", "content", "connection", "sitecode"].contains(&c.as_str()) {
            return Err(ApiError::InvalidQuery(format!(
                "category {c:?} is not site, content, connection or sitecode"
            )));
        }
    }
    if let Some(t) = &p.event_type {
        if !event_types().any(|known| known == t) {
            return Err(ApiError::InvalidQuery(format!(
                "event_type {t:?} is not the name of an event type (docs/events.md lists them: \
                 ScorecardShared, LinkRevoked, …)"
            )));
        }
    }
    let filter = Filter {
        scope: scope(&state, &principal).await?,
        category: p.category,
        event_type: p.event_type,
    };
    let streams = crate::changes_stream::wants_stream(&headers);
    let after = if streams {
        crate::changes_stream::start_after(&headers, p.after.unwrap_or(0))?
    } else {
        p.after.unwrap_or(0)
    };
    // A place beyond the head names no event yet: 409, rather than skip
    // what is written up to it.
    crate::queries::reachable(&state, Some(after)).await?;
    if streams {
        return Ok(crate::changes_stream::stream(state, headers, filter, after));
    }
    let wanted = |e: &RecordedEvent| filter.wants(e);
    let store = state.store();
    let mut head = store.head_position().await.map_err(command_log)?;
    if head <= after && !wait.is_zero() {
        // Nothing new yet: wait for the log to pass `after` (the access
        // index follows it and says when), then read.
        let _ = state.access().wait_for(after + 1, wait).await;
        head = store.head_position().await.map_err(command_log)?;
    }
    let mut events = Vec::new();
    let mut next = after;
    while events.len() < limit && next < head && (next - after) < SCAN as u64 {
        let want = (SCAN as u64 - (next - after)).min(1_000) as usize;
        let page = store
            .read_all(Direction::Forwards, PositionFrom::At(next + 1), want)
            .await
            .map_err(command_log)?;
        let Some(last) = page.last().map(|e| e.global_position) else {
            break;
        };
        for event in page {
            next = event.global_position;
            if wanted(&event) {
                events.push(Change::of(event));
                if events.len() == limit {
                    break;
                }
            }
        }
        if events.len() < limit {
            next = last;
        }
    }
    Ok(Json(ChangesPage { events, next, head }).into_response())
}

/// A page's `limit`: 100 by default, 1 to `max`.
pub(crate) fn limit(asked: Option<u32>, max: u32) -> Result<usize, ApiError> {
    match asked {
        Some(0) => Err(ApiError::InvalidQuery("limit must be at least 1".into())),
        Some(n) if n > max => Err(ApiError::InvalidQuery(format!("limit is at most {max}"))),
        Some(n) => Ok(n as usize),
        None => Ok(100),
    }
}

/// A long poll's `wait`: none by default, at most [`MAX_WAIT_SECONDS`].
pub(crate) fn wait(asked: Option<u64>) -> Result<Duration, ApiError> {
    match asked {
        Some(w) if w > MAX_WAIT_SECONDS => Err(ApiError::InvalidQuery(format!(
            "wait is at most {MAX_WAIT_SECONDS} seconds"
        ))),
        w => Ok(Duration::from_secs(w.unwrap_or(0))),
    }
}

pub(crate) fn command_log(e: shareledger_events::store::LogError) -> ApiError {
    ApiError::Command(shareledger_commands::CommandError::Log(e))
}
