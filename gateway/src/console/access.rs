//! The access explorer: pick a user, see what they can see; pick an
//! item, see who can see it and at what level; pick a pair, see why
//! each step naming the fact, the event, who caused it and when.
//!
//! Users without admin rights see their own access only (the API refuses
//! any other user); administrators pick among their site's users.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use maud::{html, Markup};
use serde::Deserialize;
use shareledger_core::catalog::{SiteId, UserId};
use shareledger_events::Actor;
use shareledger_projections::access::{
    AccessIndex, Explanation, Fact, Missing, Target, TargetKind,
};

use super::context::{params, site_page, user_named, Context};
use super::layout::{link, site_tag, when, words, Nav, Shown};
use super::session::Session;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::queries::{self, ExplainParams, LookupParams, TargetParams, TargetType};
use crate::state::AppState;

/// Most items of a user's view shown at once.
const LOOKUP_LIMIT: usize = 500;

#[derive(Debug, Default, Deserialize)]
pub struct AccessQuery {
    site: Option<SiteId>,
    at: Option<u64>,
    /// Whose access: a user's id (the page's own links), or a username
    /// typed in the form.
    user: Option<UserId>,
    username: Option<String>,
    /// An item: `scorecard` or `object`, and its id.
    target_type: Option<TargetType>,
    target_id: Option<uuid::Uuid>,
}

/// `GET /access`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Shown(flash): Shown,
    q: Result<Query<AccessQuery>, QueryRejection>,
) -> Response {
    let q = match params(q) {
        Ok(q) => q,
        Err(refusal) => return refusal,
    };
    // The body borrows what the frame borrows too.
    let (state, session, q) = (&state, &session, &q);
    site_page(
        state,
        session,
        flash,
        Nav::Access,
        (q.site, q.at),
        |ctx| async move {
            body(state, session, &ctx, q)
                .await
                .map(|markup| ("Access explorer".to_owned(), markup))
        },
    )
    .await
}

/// The address of the explorer showing `user` and `target`.
fn href(session: &Session, site: SiteId, user: Option<UserId>, target: Option<Target>) -> String {
    let mut parts = Vec::new();
    if let Some(u) = user {
        parts.push(format!("user={u}"));
    }
    match target {
        Some(Target::Scorecard(s)) => parts.push(format!("target_type=scorecard&target_id={s}")),
        Some(Target::Object(o)) => parts.push(format!("target_type=object&target_id={o}")),
        None => {}
    }
    link(session, &format!("/access?{}", parts.join("&")), Some(site))
}

async fn body(
    state: &AppState,
    session: &Session,
    ctx: &Context,
    q: &AccessQuery,
) -> Result<Markup, ApiError> {
    let me = session.principal.user();
    let typed = q
        .username
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let named = typed.map(|u| user_named(state, ctx.site, u));
    let user = match named {
        Some(found) => found,
        None => q.user.or(me),
    };
    let picks_any = match &session.principal {
        Principal::User { .. } => session
            .principal
            .administers(&state.access().read(), ctx.site),
        _ => true,
    };
    let lookup = match user {
        Some(u) => Some(
            queries::lookup(
                State(state.clone()),
                session.principal.clone(),
                Ok(Query(LookupParams {
                    user_id: Some(u),
                    site: None,
                    kind: None,
                    after: None,
                    limit: Some(LOOKUP_LIMIT),
                    min_position: ctx.at,
                })),
            )
            .await?
            .0,
        ),
        None => None,
    };
    // Who sees an item is for its owner's administrators: a partner's
    // item shows why the user sees it, and says so instead.
    let viewers = match (q.target_type, q.target_id) {
        (Some(target_type), Some(target_id)) => Some(
            queries::viewers(
                State(state.clone()),
                session.principal.clone(),
                Ok(Query(TargetParams {
                    target_type,
                    target_id,
                    min_position: ctx.at,
                })),
            )
            .await
            .map(|answer| answer.0)
            .map_err(|refused| refused.problem().detail),
        ),
        _ => None,
    };
    let explanation = match (user, q.target_type, q.target_id) {
        (Some(u), Some(target_type), Some(target_id)) => Some(
            queries::explain(
                State(state.clone()),
                session.principal.clone(),
                Ok(Query(ExplainParams {
                    user_id: Some(u),
                    target_type,
                    target_id,
                    min_position: ctx.at,
                })),
            )
            .await?
            .0
            .explanation,
        ),
        _ => None,
    };
    // What the user sees is theirs to have named, whoever owns it.
    let seen: std::collections::HashMap<uuid::Uuid, String> = lookup
        .iter()
        .flat_map(|answer| answer.items.iter())
        .map(|v| (target_uuid(v.target), format!("“{}”", v.name.as_str())))
        .collect();
    let index = state.access().read();
    let viewer_site = match session.principal {
        Principal::Operator { .. } | Principal::Auditor { site: None, .. } => None,
        _ => Some(ctx.site),
    };
    Ok(html! {
        @if picks_any {
            form.search method="get" action="/access" {
                @if session.home.as_ref().map(|h| h.0) != Some(ctx.site) {
                    input type="hidden" name="site" value=(ctx.site.to_string());
                }
                label for="pick-user" { "Username" }
                input #pick-user name="username" type="search" autocomplete="off"
                    value=[user.and_then(|u| index.plain_name(u.0))];
                button type="submit" { "Show what they see" }
            }
            @if let (Some(None), Some(typed)) = (named, typed) {
                p.flash.error role="alert" { "No user " (typed) " at this site." }
            }
        }
        @if let Some(answer) = &lookup {
            section aria-labelledby="sees-h" {
                h2 #sees-h { "What " (index.plain_name(answer.user_id.0).unwrap_or_default()) " can see" }
                div.table-wrap { table data-testid="lookup" {
                    thead { tr { th scope="col" { "Item" } th scope="col" { "Kind" } th scope="col" { "From" } th scope="col" { "Level" } th scope="col" { "Why" } } }
                    tbody {
                        @if answer.items.is_empty() { tr { td colspan="5" .empty { "Nothing." } } }
                        @for v in &answer.items {
                            tr {
                                td { a href=(href(session, ctx.site, None, Some(v.target))) { (v.name.as_str()) } }
                                td { (kind_words(v.target, &v.kind)) }
                                td { (site_tag(v.origin_code.as_str(), v.origin_name.as_str())) }
                                td { (words(&v.level)) }
                                td { a href=(format!("{}#why-h", href(session, ctx.site, user, Some(v.target)))) { "why?" } }
                            }
                        }
                    }
                } }
                @if answer.next.is_some() { p.note { "The first " (LOOKUP_LIMIT) " items are shown." } }
            }
        }
        @if let Some(Err(refused)) = &viewers {
            p.note data-testid="viewers-refused" { "Who can see this item: " (refused) "." }
        }
        @if let Some(Ok(answer)) = &viewers {
            section aria-labelledby="viewers-h" {
                h2 #viewers-h { "Who can see " (index.label_for(target_uuid(answer.target), viewer_site).unwrap_or_else(|| answer.target.to_string())) }
                div.table-wrap { table data-testid="viewers" {
                    thead { tr { th scope="col" { "User" } th scope="col" { "Site" } th scope="col" { "Level" } th scope="col" { "Why" } } }
                    tbody {
                        @if answer.viewers.is_empty() { tr { td colspan="4" .empty { "No one." } } }
                        @for v in &answer.viewers {
                            tr {
                                td { (v.username.as_str()) }
                                td { (site_tag(v.site_code.as_str(), "")) }
                                td { (words(&v.level)) }
                                td { a href=(format!("{}#why-h", href(session, ctx.site, Some(v.user), Some(answer.target)))) { "why?" } }
                            }
                        }
                    }
                } }
            }
        }
        @if let Some(e) = &explanation {
            (explain(&index, viewer_site, &seen, e))
        }
        @if lookup.is_none() && viewers.is_none() {
            p.empty { "Choose a user to see what they can see." }
        }
    })
}

fn target_uuid(target: Target) -> uuid::Uuid {
    match target {
        Target::Scorecard(s) => s.0,
        Target::Object(o) => o.0,
    }
}

fn kind_words(target: Target, kind: &TargetKind) -> String {
    match target {
        Target::Scorecard(_) => "scorecard".into(),
        Target::Object(_) => match kind {
            TargetKind::Object(k) => words(k),
            TargetKind::Scorecard => "scorecard".into(),
        },
    }
}

/// Q-4 as steps: every path, each fact with the event behind it.
fn explain(
    index: &AccessIndex,
    viewer: Option<SiteId>,
    seen: &std::collections::HashMap<uuid::Uuid, String>,
    e: &Explanation,
) -> Markup {
    let name = |id: uuid::Uuid| {
        index
            .label_for(id, viewer)
            .or_else(|| seen.get(&id).cloned())
            .unwrap_or_else(|| format!("{}…", &id.to_string()[..8]))
    };
    let actor = |a: &Option<Actor>| match a {
        Some(Actor::User { user_id, .. }) => e
            .actors
            .iter()
            .find(|n| n.user.0 == *user_id)
            .map(|n| format!("{} ({})", n.username.as_str(), n.site_code.as_str()))
            .unwrap_or_else(|| name(*user_id)),
        Some(Actor::Operator { name }) => format!("operator {name}"),
        Some(Actor::System) => "the system".into(),
        None => "—".into(),
    };
    let fact = |f: &Fact| -> String {
        match f {
            Fact::UserActive { user, .. } => format!("{} is active", name(user.0)),
            Fact::FlagHeld { user, flag } => format!("{} holds {}", name(user.0), words(flag)),
            Fact::NoScorecardAssigned { user } => format!(
                "{} has Add/Edit Scorecard Objects and no scorecard assigned: every scorecard at browser",
                name(user.0)
            ),
            Fact::ScorecardAssigned { user, scorecard, level } => format!(
                "{} is assigned {} at {}",
                name(user.0),
                name(scorecard.0),
                words(level)
            ),
            Fact::PlacedOnScorecard { object, scorecard } => {
                format!("{} is on {}", name(object.0), name(scorecard.0))
            }
            Fact::InsideContainer { object, container } => {
                format!("{} is inside {}", name(object.0), name(container.0))
            }
            Fact::LinkActive { link } => {
                format!("{} shares with {} (link active)", name(link.from.0), name(link.to.0))
            }
            Fact::ScorecardShared { link, scorecard } => format!(
                "{} shares {} with {}",
                name(link.from.0),
                name(scorecard.0),
                name(link.to.0)
            ),
            Fact::PartnerObjectOnScorecard { object, scorecard, .. } => {
                format!("the partner's {} is placed on {}", name(object.0), name(scorecard.0))
            }
            Fact::PartnerMeasureAggregated { object, into_object, .. } => format!(
                "the partner's {} is aggregated into {}",
                name(object.0),
                name(into_object.0)
            ),
        }
    };
    let missing = |m: &Missing| -> String {
        match m {
            Missing::UserActive { deactivated_by } => format!(
                "the user is deactivated (event at position {})",
                deactivated_by.position
            ),
            Missing::ActiveLink { link } => format!(
                "no active link from {} to {}",
                name(link.from.0),
                name(link.to.0)
            ),
            Missing::SharedScorecard { link, showing } => format!(
                "{} shares none of the scorecards showing it with {} ({})",
                name(link.from.0),
                name(link.to.0),
                showing
                    .iter()
                    .map(|s| name(s.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Missing::OnAScorecard { .. } => {
                "it shows on no scorecard: only All Scorecards sees it".into()
            }
            Missing::AssignedScorecard { any_of } => format!(
                "none of these scorecards is assigned to the user: {}",
                any_of
                    .iter()
                    .map(|s| name(s.0))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            Missing::Flag { flag } => format!("the flag {} would give access", words(flag)),
            Missing::VisibleRelationship { .. } => {
                "no relationship of the user's site puts it where the user sees it".into()
            }
        }
    };
    html! {
        section aria-labelledby="why-h" data-testid="explanation" {
            h2 #why-h { "Why " (e.username.as_str()) " "
                @if let Some(level) = &e.level { "sees " (e.target_name.as_str()) " at " (words(level)) }
                @else { "does not see " (e.target_name.as_str()) }
            }
            p { "Owned by " (site_tag(e.owner_code.as_str(), e.owner_name.as_str())) "." }
            @for (i, path) in e.paths.iter().enumerate() {
                div.card {
                    h3 { "Path " (i + 1) ": " (words(&path.level)) }
                    ol.steps {
                        @for step in &path.steps {
                            li {
                                span.fact { (fact(&step.fact)) }
                                span.event {
                                    "event " (step.event.position) ", by " (actor(&step.event.actor)) ", " (when(&step.event.recorded_at))
                                }
                            }
                        }
                    }
                }
            }
            @if !e.missing.is_empty() {
                div.card {
                    h3 { "What is missing" }
                    ul { @for m in &e.missing { li { (missing(m)) } } }
                }
            }
        }
    }
}
