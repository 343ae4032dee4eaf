//! The feed of access changes over HTTP (issue 17, part 2):
//! `GET /v1/access-changes`, who gained, lost or changed access to what,
//! each entry naming the event that caused it, a page at a time after a
//! place `(after, after_seq)`, waiting (long poll) up to `wait` seconds.
//!
//! Who sees what:
//! * operators, and auditors of no site: every entry;
//! * a site's auditors, Instance Admins and user managers: the entries of
//!   the site's users (whatever site's content) and of the site's content
//!   (whatever site's users: who-can-see of its own items names partners'
//!   users too, Q-3);
//! * any other user: their own entries.
//!
//! The entries are written by the derived feeds' writer
//! (`shareledger_projections::derived`) up to its checkpoint, which the
//! page gives as `head` beside the log's `log_head`: a position is in a
//! page whole or not yet.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::Json;
use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{SiteId, UserId};
use shareledger_projections::derived::rows::{self, AccessChangeEntry, FeedPoint};

use crate::auth::Principal;
use crate::error::ApiError;
use crate::queries::query;
use crate::state::AppState;

/// The most entries one page holds.
pub const MAX_LIMIT: u32 = 1_000;

/// The feed's query.
#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[serde(deny_unknown_fields)]
pub struct AccessChangesParams {
    /// Entries after this position (0, the default: from the start)…
    pub after: Option<u64>,
    /// …and, within that position, after this entry (none: after all of
    /// the position's entries). Pass the page's `next_after` and
    /// `next_after_seq`.
    pub after_seq: Option<u32>,
    /// At most this many entries (default 100, at most 1,000).
    #[param(minimum = 1, maximum = 1000)]
    pub limit: Option<u32>,
    /// When nothing new is there, wait up to this many seconds for it
    /// (default 0, at most 5).
    #[param(maximum = 5)]
    pub wait: Option<u64>,
    /// Only this user's entries.
    pub user: Option<UserId>,
}

/// One page of the feed.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct AccessChangesPage {
    pub changes: Vec<AccessChangeEntry>,
    /// Pass as `after` and `after_seq` for the following page.
    pub next_after: u64,
    pub next_after_seq: Option<u32>,
    /// The position up to which the feed is computed.
    pub head: u64,
    /// The log's head when the page was read (`log_head - head`: how far
    /// the feed is behind).
    pub log_head: u64,
}

/// Whose entries a caller sees.
enum Scope {
    Everything,
    Site(SiteId),
    Own(UserId),
}

async fn scope(state: &AppState, principal: &Principal) -> Result<Scope, ApiError> {
    match principal {
        Principal::Operator { .. } | Principal::Auditor { site: None, .. } => Ok(Scope::Everything),
        Principal::Auditor {
            site: Some(site), ..
        } => Ok(Scope::Site(*site)),
        Principal::User { site, user, .. } => {
            let index = state
                .access()
                .fresh(None, state.options().freshness_timeout)
                .await?;
            Ok(if principal.administers(&index, *site) {
                Scope::Site(*site)
            } else {
                Scope::Own(*user)
            })
        }
    }
}

/// `GET /v1/access-changes`.
#[utoipa::path(
    get,
    path = "/v1/access-changes",
    tag = "changes",
    summary = "Who gained, lost or changed access to what, each entry naming the event that caused it, after a place in the feed; a site's admins and auditors see their site's users and content, other users their own; waits up to `wait` seconds (at most 5).",
    params(AccessChangesParams),
    responses(
        (status = 200, description = "One page, in log order.", body = AccessChangesPage),
    ),
    security(("bearer" = [])),
)]
pub async fn access_changes(
    State(state): State<AppState>,
    principal: Principal,
    params: Result<Query<AccessChangesParams>, QueryRejection>,
) -> Result<Json<AccessChangesPage>, ApiError> {
    let p = query(params)?;
    let limit = crate::changes::limit(p.limit, MAX_LIMIT)?;
    let wait = crate::changes::wait(p.wait)?;
    let Some(writer) = state.derived() else {
        return Err(ApiError::Unavailable(
            "this process does not compute the access changes feed".into(),
        ));
    };
    let (site, user) = match scope(&state, &principal).await? {
        Scope::Everything => (None, p.user),
        Scope::Site(site) => (Some(site), p.user),
        Scope::Own(own) => match p.user {
            Some(other) if other != own => {
                return Err(ApiError::Forbidden(
                    "a user who administers no site sees only their own access changes".into(),
                ))
            }
            _ => (None, Some(own)),
        },
    };
    let from = FeedPoint {
        position: p.after.unwrap_or(0),
        seq: p.after_seq,
    };
    // A place beyond the log's head names nothing yet: 409.
    crate::queries::reachable(&state, Some(from.position)).await?;
    let read = || rows::access_changes(state.store(), from, site, user, limit);
    let (mut changes, mut head) = read().await?;
    if changes.is_empty() && head <= from.position && !wait.is_zero() {
        // On a standby process this wakes when the standby next reads the
        // writer's checkpoint (within `LeaseOptions::poll`).
        let mut status = writer.subscribe();
        let _ = tokio::time::timeout(wait, status.wait_for(|s| s.position > from.position)).await;
        (changes, head) = read().await?;
    }
    let log_head = state
        .store()
        .head_position()
        .await
        .map_err(crate::changes::command_log)?;
    let (next_after, next_after_seq) = match changes.last() {
        Some(last) if changes.len() == limit => (last.position, Some(last.seq)),
        // Everything up to the head is read: go on from there.
        _ => (head.max(from.position), None),
    };
    Ok(Json(AccessChangesPage {
        changes,
        next_after,
        next_after_seq,
        head,
        log_head,
    }))
}
