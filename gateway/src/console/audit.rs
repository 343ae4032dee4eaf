//! Audit: a site's sharing timeline with filters; what a user could
//! see **as of** any moment; the **diff** of who gained and lost access
//! between two moments; and the integrity check's verdict. For
//! auditors and operators, as the API's audit routes are.
//!
//! A moment is a log position or a UTC time (`2026-12-07T10:30`, the
//! browser's date-and-time picker).

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::Response;
use axum::Json;
use chrono::{DateTime, NaiveDateTime, Utc};
use maud::{html, Markup};
use serde::Deserialize;
use shareledger_core::catalog::SiteId;
use shareledger_events::Actor;
use shareledger_projections::history::AccessChange;

use super::context::{params, site_page, user_named, Context};
use super::layout::{badge, link, site_tag, when, words, Nav, Shown};
use super::session::{urlencode, Session};
use crate::audit::{self, AsOfUserParams, DiffParams, DiffScope, TimelineParams};
use crate::error::ApiError;
use crate::state::AppState;

/// Timeline entries per page.
const PAGE: u32 = 50;

#[derive(Debug, Default, Deserialize)]
pub struct AuditQuery {
    site: Option<SiteId>,
    at: Option<u64>,
    /// Timeline filters.
    from: Option<String>,
    to: Option<String>,
    after: Option<String>,
    /// The diff's two moments.
    diff_from: Option<String>,
    diff_to: Option<String>,
    /// As of: whose view, and when.
    as_of_user: Option<String>,
    as_of: Option<String>,
    /// Run the integrity check (`1`).
    verify: Option<String>,
}

/// A moment: a log position or a UTC time.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Moment {
    Position(u64),
    Time(DateTime<Utc>),
}

impl Moment {
    /// Reads a position, an RFC 3339 time, or the picker's
    /// `YYYY-MM-DDTHH:MM[:SS]` (taken as UTC); empty is none.
    fn parse(raw: Option<&str>) -> Result<Option<Moment>, ApiError> {
        let Some(raw) = raw.map(str::trim).filter(|r| !r.is_empty()) else {
            return Ok(None);
        };
        if let Ok(p) = raw.parse::<u64>() {
            return Ok(Some(Moment::Position(p)));
        }
        if let Ok(t) = DateTime::parse_from_rfc3339(raw) {
            return Ok(Some(Moment::Time(t.with_timezone(&Utc))));
        }
        for format in ["%Y-%m-%dT%H:%M:%S", "%Y-%m-%dT%H:%M"] {
            if let Ok(t) = NaiveDateTime::parse_from_str(raw, format) {
                return Ok(Some(Moment::Time(t.and_utc())));
            }
        }
        Err(ApiError::InvalidQuery(format!(
            "{raw:?} is neither a log position nor a date and time"
        )))
    }

    fn position(self) -> Option<u64> {
        match self {
            Moment::Position(p) => Some(p),
            Moment::Time(_) => None,
        }
    }

    fn time(self) -> Option<DateTime<Utc>> {
        match self {
            Moment::Time(t) => Some(t),
            Moment::Position(_) => None,
        }
    }
}

/// `GET /audit`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Shown(flash): Shown,
    q: Result<Query<AuditQuery>, QueryRejection>,
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
        Nav::Audit,
        (q.site, q.at),
        |ctx| async move {
            body(state, session, &ctx, q)
                .await
                .map(|markup| ("Audit".to_owned(), markup))
        },
    )
    .await
}

async fn body(
    state: &AppState,
    session: &Session,
    ctx: &Context,
    q: &AuditQuery,
) -> Result<Markup, ApiError> {
    let s = || State(state.clone());
    let p = || session.principal.clone();
    let time = |raw: &Option<String>| -> Result<Option<DateTime<Utc>>, ApiError> {
        match Moment::parse(raw.as_deref())? {
            None => Ok(None),
            Some(Moment::Time(t)) => Ok(Some(t)),
            Some(Moment::Position(_)) => Err(ApiError::InvalidQuery(
                "the timeline's filters are dates and times".into(),
            )),
        }
    };
    let Json(timeline) = audit::site_timeline(
        s(),
        p(),
        Ok(Path(ctx.site)),
        Ok(Query(TimelineParams {
            partner: None,
            from: time(&q.from)?,
            to: time(&q.to)?,
            after: q.after.clone(),
            limit: Some(PAGE),
            min_position: ctx.at,
        })),
    )
    .await?;
    // The diff and the as-of answer are the forms' own: a mistake in one
    // is said beside it, and the rest of the page stays.
    let diff = async {
        let from = Moment::parse(q.diff_from.as_deref())?;
        let to = Moment::parse(q.diff_to.as_deref())?;
        let (from, to) = match (from, to) {
            (Some(from), Some(to)) => (from, to),
            (None, None) => return Ok(None),
            _ => {
                return Err(ApiError::InvalidQuery(
                    "give both moments: where the comparison starts and where it ends".into(),
                ))
            }
        };
        Ok(Some(
            audit::diff(
                s(),
                p(),
                Ok(Query(DiffParams {
                    scope: DiffScope::Site,
                    user_id: None,
                    target_type: None,
                    target_id: None,
                    site_id: Some(ctx.site),
                    partner_id: None,
                    from_position: from.position(),
                    from_time: from.time(),
                    to_position: to.position(),
                    to_time: to.time(),
                })),
            )
            .await?
            .0,
        ))
    }
    .await
    .map_err(|e: ApiError| e.problem().detail);
    let as_of_typed = q
        .as_of_user
        .as_deref()
        .map(str::trim)
        .filter(|u| !u.is_empty());
    let as_of = async {
        let at = Moment::parse(q.as_of.as_deref())?;
        let (typed, at) = match (as_of_typed, at) {
            (Some(typed), Some(at)) => (typed, at),
            (None, None) => return Ok(None),
            _ => {
                return Err(ApiError::InvalidQuery(
                    "give both a username and a moment".into(),
                ))
            }
        };
        let user = user_named(state, ctx.site, typed)
            .ok_or_else(|| ApiError::NotFound(format!("no user {typed} at this site")))?;
        Ok(Some(
            audit::lookup(
                s(),
                p(),
                Ok(Query(AsOfUserParams {
                    at_position: at.position(),
                    at_time: at.time(),
                    user_id: user,
                    site: None,
                    after: None,
                    limit: Some(500),
                })),
            )
            .await
            .map_err(|e| match e {
                ApiError::NotFound(_) => ApiError::NotFound(format!(
                    "{typed} was not yet a user of this site at that moment"
                )),
                other => other,
            })?
            .0,
        ))
    }
    .await
    .map_err(|e: ApiError| e.problem().detail);
    let verdict = if q.verify.as_deref().is_some_and(|v| !v.is_empty()) {
        Some(audit::verify(s(), p()).await?.0)
    } else {
        None
    };
    let keep_site = session.home.as_ref().map(|h| h.0) != Some(ctx.site);
    let site_field = html! {
        @if keep_site { input type="hidden" name="site" value=(ctx.site.to_string()); }
    };
    let next_href = timeline.next.as_ref().map(|n| {
        let mut parts = vec![format!("after={}", urlencode(n))];
        for (k, v) in [("from", &q.from), ("to", &q.to)] {
            if let Some(v) = v.as_deref().filter(|v| !v.is_empty()) {
                parts.push(format!("{k}={}", urlencode(v)));
            }
        }
        link(
            session,
            &format!("/audit?{}", parts.join("&")),
            Some(ctx.site),
        )
    });
    Ok(html! {
        section aria-labelledby="verify-h" {
            h2 #verify-h { "Integrity" }
            @if let Some(v) = &verdict {
                @if let Some(problem) = &v.problem {
                    p.flash.error data-testid="verdict" { "The log is NOT intact: " (problem.to_string()) }
                } @else {
                    p.flash.ok data-testid="verdict" {
                        "The log is intact: " (v.checked) " events checked, sealed up to position "
                        (v.sealed_up_to.position) " of " (v.log_head) " (" (v.unsealed) " not sealed yet)."
                    }
                }
            } @else {
                form.search method="get" action="/audit" {
                    (site_field)
                    input type="hidden" name="verify" value="1";
                    button type="submit" { "Verify the hash chain" }
                }
            }
        }
        section aria-labelledby="diff-h" {
            h2 #diff-h { "Who gained and lost access" }
            form.search method="get" action="/audit" {
                (site_field)
                label for="diff-from" { "From (UTC, or a position)" }
                input #diff-from name="diff_from" type="text" value=[q.diff_from.as_deref()] placeholder="2026-12-01T09:00 or 120";
                label for="diff-to" { "To" }
                input #diff-to name="diff_to" type="text" value=[q.diff_to.as_deref()] placeholder="2026-12-07T17:00 or 480";
                button type="submit" { "Compare" }
            }
            @if let Err(refused) = &diff { p.flash.error role="alert" { (refused) } }
            @if let Ok(Some(d)) = &diff {
                p.note { "Access to this site's own scorecards and objects, by anyone (its users and its partners' users)." }
                p { "Between positions " (d.from) " and " (d.to) ":" }
                (changes("Gained", "gained", &d.gained))
                (changes("Lost", "lost", &d.lost))
                (changes("Changed level", "changed", &d.changed))
            }
        }
        section aria-labelledby="asof-h" {
            h2 #asof-h { "As of a moment" }
            form.search method="get" action="/audit" {
                (site_field)
                label for="asof-user" { "User" }
                input #asof-user name="as_of_user" type="search" autocomplete="off" value=[as_of_typed] placeholder="username";
                label for="asof-at" { "At (UTC, or a position)" }
                input #asof-at name="as_of" type="text" value=[q.as_of.as_deref()] placeholder="2026-12-01T09:00 or 120";
                button type="submit" { "Show what they could see" }
            }
            @if let Err(refused) = &as_of { p.flash.error role="alert" { (refused) } }
            @if let Ok(Some(a)) = &as_of {
                div.table-wrap { table data-testid="as-of" {
                    caption { "What they could see at position " (a.position) }
                    thead { tr { th scope="col" { "Item" } th scope="col" { "From" } th scope="col" { "Level" } } }
                    tbody {
                        @if a.items.is_empty() { tr { td colspan="3" .empty { "Nothing." } } }
                        @for v in &a.items {
                            tr { td { (v.name.as_str()) } td { (site_tag(v.origin_code.as_str(), v.origin_name.as_str())) } td { (words(&v.level)) } }
                        }
                    }
                } }
            }
        }
        section aria-labelledby="timeline-h" {
            h2 #timeline-h { "Sharing timeline" }
            form.search method="get" action="/audit" {
                (site_field)
                label for="tl-from" { "From (UTC)" }
                input #tl-from name="from" type="datetime-local" value=[q.from.as_deref()];
                label for="tl-to" { "Before (UTC)" }
                input #tl-to name="to" type="datetime-local" value=[q.to.as_deref()];
                button type="submit" { "Filter" }
            }
            div.table-wrap { table data-testid="timeline" {
                thead { tr {
                    th scope="col" { "Position" } th scope="col" { "When" } th scope="col" { "Who" }
                    th scope="col" { "Command" } th scope="col" { "What happened" }
                } }
                tbody {
                    @if timeline.entries.is_empty() { tr { td colspan="5" .empty { "Nothing in this period." } } }
                    @for e in &timeline.entries {
                        tr {
                            td { (e.position) }
                            td { (when(&e.recorded_at)) }
                            td { (actor_words(&e.actor, e.actor_username.as_deref(), e.actor_site_code.as_deref())) }
                            td { (e.command) }
                            td {
                                (e.summary)
                                @if !e.consequences.is_empty() {
                                    ul.consequences { @for c in &e.consequences { li { (c.summary) } } }
                                }
                            }
                        }
                    }
                }
            } }
            @if let Some(href) = next_href { nav.pager aria-label="Pages" { a href=(href) rel="next" { "Later entries" } } }
        }
    })
}

fn actor_words(actor: &Option<Actor>, username: Option<&str>, site: Option<&str>) -> String {
    match (actor, username) {
        (Some(Actor::User { .. }), Some(u)) => match site {
            Some(s) => format!("{u} ({s})"),
            None => u.to_owned(),
        },
        (Some(Actor::Operator { name }), _) => format!("operator {name}"),
        (Some(Actor::System), _) => "the system".into(),
        _ => "—".into(),
    }
}

fn changes(title: &str, testid: &str, rows: &[AccessChange]) -> Markup {
    html! {
        div.table-wrap { table data-testid=(testid) {
            caption { (title) " (" (rows.len()) ")" }
            thead { tr { th scope="col" { "User" } th scope="col" { "Item" } th scope="col" { "Owner" } th scope="col" { "Before" } th scope="col" { "After" } } }
            tbody {
                @if rows.is_empty() { tr { td colspan="5" .empty { "None." } } }
                @for c in rows {
                    tr {
                        td { (c.username.clone().unwrap_or_else(|| c.user.to_string())) }
                        td { (c.target_name.clone().unwrap_or_else(|| c.target.to_string())) }
                        td { @if let Some(code) = &c.owner_code { (site_tag(code, "")) } }
                        td { @match &c.before { Some(l) => (badge("active", &words(l))), None => "—" } }
                        td { @match &c.after { Some(l) => (badge("active", &words(l))), None => (badge("revoked", "none")) } }
                    }
                }
            }
        } }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_moment_is_a_position_or_a_utc_time() {
        assert_eq!(
            Moment::parse(Some("42")).unwrap(),
            Some(Moment::Position(42))
        );
        assert_eq!(Moment::parse(Some(" ")).unwrap(), None);
        let t = Moment::parse(Some("2026-12-07T10:30")).unwrap().unwrap();
        assert_eq!(t.time().unwrap().to_rfc3339(), "2026-12-07T10:30:00+00:00");
        assert!(Moment::parse(Some("yesterday")).is_err());
    }
}
