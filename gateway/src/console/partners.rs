//! Partner Connect (seeds 000 and 002): a site's connections in both
//! directions with their status, the requests awaiting it, requesting by
//! site code or from the partner directory (several sites ticked at once,
//! after a confirmation naming them), approving, denying, cancelling,
//! revoking one direction (after a confirmation that says what goes), and
//! Edit Scorecards: per partner, *cannot access* and *has access to*.
//!
//! Every list is the API's own answer (`/v1/sites/{id}/connections`,
//! `pending-requests`, `shared-scorecards`, `scorecards`, `/v1/directory`),
//! asked with the session's principal; every button is a form to
//! `/act/{Command}`, and the directory's batch goes to the API's
//! `POST /v1/sites/{id}/connection-requests`.

use std::collections::BTreeSet;

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use maud::{html, Markup};
use serde::Deserialize;
use shareledger_core::catalog::{ScorecardId, SiteId};
use shareledger_projections::dashboard::{
    Connection, LinkDirection, LinkStatus, PartnerShares, PendingRequest, SiteSummary,
};

use super::act::{
    field, in_words, json_headers, opened, read_answer, redirect_with, refused, site_of,
};
use super::context::{params, site_page, Context};
use super::layout::{self, badge, form_fields, link, site_tag, when, Flash, Frame, Nav, Shown};
use super::session::{urlencode, Session};
use crate::contents::{self, ScorecardsParams};
use crate::error::ApiError;
use crate::partners::{self, DirectoryParams};
use crate::queries::{self, FreshParams, LinkPageParams};
use crate::state::AppState;

/// `GET /partners`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Shown(flash): Shown,
    q: Result<Query<PartnersQuery>, QueryRejection>,
) -> Response {
    let q = match params(q) {
        Ok(q) => q,
        Err(refusal) => return refusal,
    };
    // The body borrows what the frame borrows too.
    let refused = flash.clone().filter(|f| !f.ok);
    let (state, session, q, refused) = (&state, &session, &q, &refused);
    site_page(
        state,
        session,
        flash,
        Nav::Partners,
        (q.site, q.at),
        |ctx| async move { body(state, session, &ctx, q, refused.as_ref()).await },
    )
    .await
}

/// The Partner Connect page's parameters.
#[derive(Debug, Deserialize)]
pub struct PartnersQuery {
    pub site: Option<SiteId>,
    pub at: Option<u64>,
    /// Search the partner directory.
    pub search: Option<String>,
    /// The partner whose shared scorecards to edit (with more than
    /// [`EDIT_ALL_UP_TO`] partners, one at a time).
    pub edit: Option<SiteId>,
    /// The last link of the previous page of connections
    /// (`<from site>.<to site>`).
    pub after: Option<String>,
}

/// Links per page of the connections tables.
const LINKS_PER_PAGE: u32 = 200;

/// With at most this many partners shared with, Edit Scorecards shows them
/// all; with more, the one picked in the connections table.
const EDIT_ALL_UP_TO: usize = 10;

/// Everything Partner Connect shows, asked of the API.
struct Facts {
    summary: SiteSummary,
    connections: Vec<Connection>,
    pending: Vec<PendingRequest>,
    shares: Vec<PartnerShares>,
    own: Vec<(ScorecardId, String)>,
}

/// What Partner Connect shows; `page` is a page of the connections (its
/// size and the last link before it), `None` for all of them.
async fn facts(
    state: &AppState,
    session: &Session,
    ctx: &Context,
    page: Option<(u32, Option<String>)>,
) -> Result<Facts, ApiError> {
    let p = || session.principal.clone();
    let s = || State(state.clone());
    let site = ctx.site;
    let fresh = || {
        Ok(Query(FreshParams {
            min_position: ctx.at,
        }))
    };
    let links = || {
        Ok(Query(LinkPageParams {
            limit: None,
            after: None,
            min_position: ctx.at,
        }))
    };
    // The answers are independent: asked at once.
    let (Json(summary), Json(connections), Json(pending), Json(shares), Json(page)) = tokio::try_join!(
        queries::site(s(), p(), Ok(Path(site)), fresh()),
        queries::connections(
            s(),
            p(),
            Ok(Path(site)),
            Ok(Query(LinkPageParams {
                limit: page.as_ref().map(|p| p.0),
                after: page.and_then(|p| p.1),
                min_position: ctx.at,
            })),
        ),
        queries::pending_requests(s(), p(), Ok(Path(site)), links()),
        queries::shared_scorecards(s(), p(), Ok(Path(site)), fresh()),
        contents::scorecards(
            s(),
            p(),
            Ok(Path(site)),
            Ok(Query(ScorecardsParams {
                limit: Some(1000),
                after: None,
                min_position: ctx.at,
            })),
        ),
    )?;
    Ok(Facts {
        summary,
        connections,
        pending,
        shares,
        own: page
            .items
            .into_iter()
            .map(|s| (s.scorecard_id, s.name.as_str().to_owned()))
            .collect(),
    })
}

async fn body(
    state: &AppState,
    session: &Session,
    ctx: &Context,
    q: &PartnersQuery,
    refused: Option<&Flash>,
) -> Result<(String, Markup), ApiError> {
    // The directory is asked with the rest, at once.
    let directory = async {
        if !ctx.administers {
            return Ok(Vec::new());
        }
        let Json(page) = partners::directory(
            State(state.clone()),
            session.principal.clone(),
            Ok(Query(DirectoryParams {
                search: q.search.clone().filter(|s| !s.trim().is_empty()),
                limit: Some(20),
                after: None,
                min_position: ctx.at,
            })),
        )
        .await?;
        Ok::<_, ApiError>(
            page.items
                .into_iter()
                .filter(|s| s.site_id != ctx.site)
                .collect::<Vec<_>>(),
        )
    };
    let (f, directory) = tokio::try_join!(
        facts(state, session, ctx, Some((LINKS_PER_PAGE, q.after.clone()))),
        directory
    )?;
    let next_links = (f.connections.len() == LINKS_PER_PAGE as usize)
        .then(|| f.connections.last())
        .flatten()
        .map(|c| {
            link(
                session,
                &format!("/partners?after={}.{}", c.from_site, c.to_site),
                Some(ctx.site),
            )
        });
    // The page to come back to after an action: this one.
    let mut kept = Vec::new();
    if let Some(partner) = q.edit {
        kept.push(format!("edit={partner}"));
    }
    if let Some(after) = &q.after {
        kept.push(format!("after={}", urlencode(after)));
    }
    let here = if kept.is_empty() {
        link(session, "/partners", Some(ctx.site))
    } else {
        link(
            session,
            &format!("/partners?{}", kept.join("&")),
            Some(ctx.site),
        )
    };
    let code = f.summary.code.as_str().to_owned();
    let markup = html! {
        p.lead { (f.summary.name) " " (site_tag(&code, &f.summary.name))
            ": who " (code) " shares with, who shares with " (code) ", and what." }
        @if !ctx.administers {
            p.note data-testid="read-only" { "You can look, not change: connections are managed by the site's Instance Admins." }
        }
        (awaiting(session, ctx, &here, &f.pending))
        (connections(session, ctx, &here, &f.connections))
        @if q.after.is_some() || next_links.is_some() {
            nav.pager aria-label="Pages of connections" {
                @if q.after.is_some() { a href=(link(session, "/partners", Some(ctx.site))) { "First connections" } }
                @if let Some(next) = &next_links { a href=(next) rel="next" { "More connections" } }
            }
        }
        @if ctx.administers {
            (request_form(session, ctx, &here, q.search.as_deref(), &directory, refused))
        }
        (edit_scorecards(session, ctx, &here, &f, q.edit))
    };
    Ok((format!("Partner Connect · {code}"), markup))
}

fn status_badge(status: LinkStatus) -> Markup {
    match status {
        LinkStatus::AwaitingApproval => badge("waiting", "awaiting approval"),
        LinkStatus::Active => badge("active", "active"),
        LinkStatus::Denied => badge("denied", "denied"),
        LinkStatus::Cancelled => badge("cancelled", "cancelled"),
        LinkStatus::Revoked => badge("revoked", "revoked"),
    }
}

/// One button that issues one command with the given fields.
fn command_button(
    session: &Session,
    back: &str,
    command: &str,
    fields: &[(&str, String)],
    label: &str,
    done: &str,
    class: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(format!("/act/{command}")) {
            (form_fields(session, back))
            input type="hidden" name="done" value=(done);
            @for (name, value) in fields {
                input type="hidden" name=(name) value=(value);
            }
            button type="submit" class=(class) { (label) }
        }
    }
}

fn awaiting(session: &Session, ctx: &Context, back: &str, pending: &[PendingRequest]) -> Markup {
    let site = ctx.site.to_string();
    // One request per partner: approving or denying answers all its links.
    let mut partners: Vec<(&PendingRequest, Vec<LinkDirection>)> = Vec::new();
    for r in pending {
        match partners.iter_mut().find(|(p, _)| p.partner == r.partner) {
            Some((_, directions)) => directions.push(r.direction),
            None => partners.push((r, vec![r.direction])),
        }
    }
    html! {
        section aria-labelledby="awaiting-h" {
            h2 #awaiting-h { "Requests awaiting your approval" }
            @if partners.is_empty() {
                p.empty { "No request is waiting for you." }
            } @else {
                ul.cards {
                    @for (r, directions) in &partners {
                        li.card data-testid=(format!("pending-{}", r.partner_code.as_str())) {
                            p {
                                strong { (r.partner_name) } " " (site_tag(r.partner_code.as_str(), &r.partner_name))
                                @let offers = directions.contains(&LinkDirection::Incoming);
                                @let asks = directions.contains(&LinkDirection::Outgoing);
                                @if offers { " offers to share its scorecards with you" }
                                @if offers && asks { " and" }
                                @if asks { " asks you to share yours with it" }
                                " (requested " (when(&r.requested_at)) ")."
                            }
                            @if ctx.administers {
                                (command_button(session, back, "ApproveConnection",
                                    &[("site_id", site.clone()), ("partner", r.partner.to_string())],
                                    "Approve", &format!("Approved the connection with {}.", r.partner_code.as_str()), "primary"))
                                (command_button(session, back, "DenyConnection",
                                    &[("site_id", site.clone()), ("partner", r.partner.to_string())],
                                    "Deny", &format!("Denied the connection with {}.", r.partner_code.as_str()), "danger"))
                            }
                        }
                    }
                }
            }
        }
    }
}

fn connections(session: &Session, ctx: &Context, back: &str, all: &[Connection]) -> Markup {
    let site = ctx.site.to_string();
    let (outgoing, incoming): (Vec<&Connection>, Vec<&Connection>) = all
        .iter()
        .partition(|c| c.direction == LinkDirection::Outgoing);
    let table = |caption: &str, rows: &[&Connection], testid: &str| {
        html! {
            div.table-wrap {
                table data-testid=(testid) {
                    caption { (caption) }
                    thead { tr {
                        th scope="col" { "Partner" }
                        th scope="col" { "Status" }
                        th scope="col" { "Scorecards shared" }
                        th scope="col" { "Requested" }
                        th scope="col" { "Last decision" }
                        @if ctx.administers { th scope="col" { "Actions" } }
                    } }
                    tbody {
                        @if rows.is_empty() {
                            tr { td colspan="6" .empty { "None." } }
                        }
                        @for c in rows {
                            tr data-partner=(c.partner_code.as_str()) {
                                td { (c.partner_name) " " (site_tag(c.partner_code.as_str(), &c.partner_name)) }
                                td { (status_badge(c.status)) }
                                td { (c.shared_scorecards) }
                                td { (when(&c.requested_at)) }
                                td { @if let Some(d) = &c.decided_at { (when(d)) } @else { "—" } }
                                @if ctx.administers {
                                    td.actions {
                                        @if c.status == LinkStatus::Active && c.direction == LinkDirection::Outgoing {
                                            a.button href=(link(session, &format!("/partners?edit={}#edit-h", c.partner), Some(ctx.site))) {
                                                "Edit Scorecards"
                                            }
                                        }
                                        @if c.status == LinkStatus::Active {
                                            a.button.danger href=(link(session, &format!("/partners/revoke?from={}&to={}", c.from_site, c.to_site), Some(ctx.site))) {
                                                "Revoke…"
                                            }
                                        }
                                        @if c.status == LinkStatus::AwaitingApproval && c.requester == ctx.site {
                                            (command_button(session, back, "CancelConnectionRequest",
                                                &[("site_id", site.clone()), ("partner", c.partner.to_string())],
                                                "Cancel request", &format!("Cancelled the request to {}.", c.partner_code.as_str()), ""))
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
    };
    html! {
        section aria-labelledby="connections-h" {
            h2 #connections-h { "Connections" }
            (table("You share with", &outgoing, "outgoing"))
            (table("Shares with you", &incoming, "incoming"))
        }
    }
}

fn request_form(
    session: &Session,
    ctx: &Context,
    back: &str,
    search: Option<&str>,
    directory: &[shareledger_projections::dashboard::contents::SiteRef],
    refused: Option<&Flash>,
) -> Markup {
    let site = ctx.site.to_string();
    let kept = |name: &str| refused.and_then(|f| f.kept("RequestConnection", name));
    let offer = kept("directions") == Some("offer");
    html! {
        section aria-labelledby="request-h" {
            h2 #request-h { "Request a connection" }
            form.stack method="post" action="/act/RequestConnection" {
                (form_fields(session, back))
                input type="hidden" name="site_id" value=(site);
                input type="hidden" name="done" value="Connection requested: it awaits the partner's approval.";
                div.field {
                    label for="partner_code" { "Partner's site code" }
                    input #partner_code name="partner_code" required autocomplete="off" placeholder="e.g. NWFOUND" value=[kept("partner_code")];
                }
                fieldset {
                    legend { "Directions" }
                    label { input type="radio" name="directions" value="both" checked[!offer]; " Both: offer ours and ask for theirs" }
                    label { input type="radio" name="directions" value="offer" checked[offer]; " Offer only: share ours with them" }
                }
                button.primary type="submit" { "Send request" }
            }
            h3 { "From the partner directory" }
            form.search method="get" action="/partners" role="search" {
                @if session.home.as_ref().map(|h| h.0) != Some(ctx.site) {
                    input type="hidden" name="site" value=(site);
                }
                label for="dir-search" { "Search listed sites" }
                input #dir-search type="search" name="search" value=[search];
                button type="submit" { "Search" }
            }
            @if directory.is_empty() {
                p.empty { "No listed site matches." }
            } @else {
                form.stack method="get" action="/partners/request" data-testid="directory" {
                    @if session.home.as_ref().map(|h| h.0) != Some(ctx.site) {
                        input type="hidden" name="site" value=(site);
                    }
                    div.table-wrap { table {
                        caption { "Listed sites: tick those to connect with" }
                        thead { tr {
                            th scope="col" { label.check { input type="checkbox" data-select-all="code"; " Select all" } }
                            th scope="col" { "Site" }
                        } }
                        tbody {
                            @for s in directory {
                                tr data-partner=(s.code.as_str()) {
                                    td { input type="checkbox" name="code" value=(s.code.as_str())
                                        id=(format!("pick-{}", s.code.as_str()))
                                        aria-label=(format!("Select {}", s.name.as_str())); }
                                    td { label for=(format!("pick-{}", s.code.as_str())) { (s.name) } " " (site_tag(s.code.as_str(), s.name.as_str())) }
                                }
                            }
                        }
                    } }
                    fieldset {
                        legend { "Directions" }
                        label { input type="radio" name="directions" value="both" checked; " Both: offer ours and ask for theirs" }
                        label { input type="radio" name="directions" value="offer"; " Offer only: share ours with them" }
                    }
                    button.primary type="submit" { "Save" }
                }
            }
        }
    }
}

/// `GET /partners/request?code=…&code=…&directions=…`: the sites ticked
/// in the directory, named, to confirm before anything is asked (seed
/// 002's confirmation message).
pub async fn review_requests(
    State(state): State<AppState>,
    session: Session,
    Query(pairs): Query<Vec<(String, String)>>,
) -> Response {
    let value = |name: &str| {
        pairs
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    };
    let site: Option<SiteId> = value("site").and_then(|s| s.parse().ok()).map(SiteId);
    let directions = match value("directions") {
        Some("offer") => "offer",
        _ => "both",
    };
    let mut codes: Vec<&str> = pairs
        .iter()
        .filter(|(n, _)| n == "code")
        .map(|(_, v)| v.as_str())
        .collect();
    codes.dedup();
    let (state, session, codes) = (&state, &session, &codes);
    site_page(
        state,
        session,
        None,
        Nav::Partners,
        (site, None),
        |ctx| async move {
            let back = link(session, "/partners", Some(ctx.site));
            let named = names_of(state, codes);
            let markup = html! {
                @if codes.is_empty() {
                    p.empty { "No site was ticked: nothing to request." }
                    p { a.button href=(back) { "Back to Partner Connect" } }
                } @else if codes.len() > partners::MAX_PARTNERS {
                    p.empty { "At most " (partners::MAX_PARTNERS) " sites at once: you ticked " (codes.len()) "." }
                    p { a.button href=(back) { "Back to Partner Connect" } }
                } @else {
                    p { "Request a connection with these organisations"
                        (if directions == "both" { ", offering your scorecards and asking for theirs" } else { ", offering your scorecards only" })
                        "? Each must approve before anything is shared, and nothing is shared until you choose it in Edit Scorecards." }
                    div.table-wrap { table data-testid="to-request" {
                        thead { tr { th scope="col" { "Organisation" } th scope="col" { "Code" } } }
                        tbody {
                            @for (code, name) in &named {
                                tr { td { (name) } td { (site_tag(code, name)) } }
                            }
                        }
                    } }
                    form.inline method="post" action="/partners/request" {
                        (form_fields(session, &back))
                        input type="hidden" name="site_id" value=(ctx.site);
                        input type="hidden" name="directions" value=(directions);
                        @for code in codes.iter() { input type="hidden" name="code" value=(code); }
                        button.primary type="submit" { "Confirm" }
                    }
                    " "
                    a.button href=(back) { "Cancel" }
                }
            };
            Ok(("Request connections".to_owned(), markup))
        },
    )
    .await
}

/// Each code with its site's name, as the index knows it (the code itself
/// where no site has it: the request will say so).
fn names_of(state: &AppState, codes: &[&str]) -> Vec<(String, String)> {
    let index = state.access().read();
    let known: std::collections::HashMap<String, String> = index
        .sites()
        .into_iter()
        .filter_map(|s| index.site_code_and_name_of(s))
        .map(|(c, n)| (c.as_str().to_ascii_uppercase(), n.as_str().to_owned()))
        .collect();
    codes
        .iter()
        .map(|c| {
            let name = known
                .get(&c.to_ascii_uppercase())
                .cloned()
                .unwrap_or_else(|| (*c).to_owned());
            ((*c).to_owned(), name)
        })
        .collect()
}

/// `POST /partners/request`: the confirmed batch, through the API's own
/// `POST /v1/sites/{id}/connection-requests`, one outcome per partner.
pub async fn request_many(
    State(state): State<AppState>,
    session: Session,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (back, site) = match opened(&session, &fields).and_then(|b| Ok((b, site_of(&fields)?))) {
        Ok(opened) => opened,
        Err(refusal) => return refusal,
    };
    let codes: Vec<&str> = fields
        .iter()
        .filter(|(n, _)| n == "code")
        .map(|(_, v)| v.as_str())
        .collect();
    let body = serde_json::json!({
        "partner_codes": codes,
        "directions": field(&fields, "directions").unwrap_or("both"),
    });
    let answer = partners::request_connections(
        State(state.clone()),
        session.principal.clone(),
        Ok(Path(site)),
        json_headers(field(&fields, "key")),
        Ok(Bytes::from(body.to_string())),
    )
    .await
    .into_response();
    let (status, bytes) = read_answer(answer).await;
    let result: Option<serde_json::Value> = serde_json::from_slice(&bytes).ok();
    let outcomes = result
        .as_ref()
        .and_then(|r| r.get("outcomes"))
        .and_then(serde_json::Value::as_array)
        .filter(|_| status.is_success());
    let Some(outcomes) = outcomes else {
        return redirect_with(&refused("RequestConnection", status, &bytes), &back, None);
    };
    let mut rows = Vec::new();
    let mut at = None;
    let mut refusals = 0;
    for (i, o) in outcomes.iter().enumerate() {
        let code = o
            .get("partner_code")
            .and_then(serde_json::Value::as_str)
            .unwrap_or_default()
            .to_owned();
        let said = match o
            .pointer("/result/position")
            .and_then(serde_json::Value::as_u64)
        {
            Some(position) => {
                at = at.max(Some(position));
                "requested: it awaits their approval".to_owned()
            }
            None => {
                refusals += 1;
                let detail = o
                    .pointer("/problem/detail")
                    .and_then(serde_json::Value::as_str)
                    .unwrap_or("refused");
                format!("refused: {}", in_words(detail))
            }
        };
        rows.push((u32::try_from(i + 1).unwrap_or(u32::MAX), code, said));
    }
    let asked = rows.len();
    let mut flash = if refusals == 0 {
        Flash::ok(format!(
            "Requested {asked} connection(s): each awaits the partner's approval."
        ))
    } else {
        Flash::error(format!(
            "{refusals} of {asked} request(s) were refused; the others were sent."
        ))
    };
    flash.rows = rows;
    flash.table = Some((
        "Each partner's request".to_owned(),
        ["#".to_owned(), "Partner".to_owned(), "Outcome".to_owned()],
    ));
    redirect_with(&flash, &back, at)
}

/// Edit Scorecards: for each partner this site shares with over an active
/// link, the site's scorecards in two lists.
fn edit_scorecards(
    session: &Session,
    ctx: &Context,
    back: &str,
    f: &Facts,
    picked: Option<SiteId>,
) -> Markup {
    let active: Vec<&Connection> = f
        .connections
        .iter()
        .filter(|c| c.direction == LinkDirection::Outgoing && c.status == LinkStatus::Active)
        .collect();
    let many = active.len() > EDIT_ALL_UP_TO;
    let shown: Vec<&Connection> = active
        .iter()
        .copied()
        .filter(|c| !many || Some(c.partner) == picked)
        .collect();
    let site = ctx.site.to_string();
    html! {
        section aria-labelledby="edit-h" {
            h2 #edit-h { "Edit Scorecards" }
            p { "Nothing is shared by default (R-CONN-7). Per partner, choose what it may see; sharing a scorecard shares every object on it." }
            @if active.is_empty() {
                p.empty { "No active connection on which you share: request one first." }
            }
            @if many && shown.is_empty() {
                p.note { "You share with " (active.len()) " partners: pick one with Edit Scorecards in the table above." }
            }
            @for c in shown {
                @let shared: BTreeSet<ScorecardId> = f.shares.iter()
                    .filter(|p| p.partner == c.partner)
                    .flat_map(|p| p.scorecards.iter().map(|s| s.scorecard_id))
                    .collect();
                @let testid = format!("edit-{}", c.partner_code.as_str());
                @let lists = html! {
                    h3 { "Shared with " (c.partner_name) " " (site_tag(c.partner_code.as_str(), &c.partner_name)) }
                    div.two-lists {
                        (scorecard_list("Cannot access", false, &f.own, &shared, ctx, c.partner))
                        (scorecard_list("Has access to", true, &f.own, &shared, ctx, c.partner))
                    }
                };
                @if ctx.administers {
                    form.card.edit-scorecards method="post" action="/act/SetSharedScorecards" data-testid=(testid) {
                        (form_fields(session, back))
                        input type="hidden" name="site_id" value=(site);
                        input type="hidden" name="partner" value=(c.partner.to_string());
                        input type="hidden" name="scorecards[]" value="";
                        input type="hidden" name="done" value=(format!("Saved what {} can access.", c.partner_code.as_str()));
                        (lists)
                        button.primary type="submit" { "Save" }
                    }
                } @else {
                    div.card.edit-scorecards data-testid=(testid) { (lists) }
                }
            }
        }
    }
}

fn scorecard_list(
    legend: &str,
    with_access: bool,
    own: &[(ScorecardId, String)],
    shared: &BTreeSet<ScorecardId>,
    ctx: &Context,
    partner: SiteId,
) -> Markup {
    html! {
        fieldset.list {
            legend { (legend) }
            @let items: Vec<&(ScorecardId, String)> = own.iter().filter(|(id, _)| shared.contains(id) == with_access).collect();
            @if items.is_empty() { p.empty { "None." } }
            @for (id, name) in items {
                @let input_id = format!("sc-{partner}-{id}");
                div.check {
                    input type="checkbox" id=(input_id) name="scorecards[]" value=(id.to_string())
                        checked[with_access] disabled[!ctx.administers];
                    label for=(input_id) { (name) }
                }
            }
        }
    }
}

/// The revoke confirmation's parameters.
#[derive(Debug, Deserialize)]
pub struct RevokeQuery {
    pub site: Option<SiteId>,
    pub from: SiteId,
    pub to: SiteId,
}

/// `GET /partners/revoke`: what revoking one direction removes, and the
/// button that does it.
pub async fn confirm_revoke(
    State(state): State<AppState>,
    session: Session,
    q: Result<Query<RevokeQuery>, QueryRejection>,
) -> Response {
    let q = match params(q) {
        Ok(q) => q,
        Err(refusal) => return refusal,
    };
    let position = state.access().read().position();
    let Some(ctx) = Context::of(&state, &session, q.site, None) else {
        return layout::refusal(axum::http::StatusCode::BAD_REQUEST, "Name the site.");
    };
    let f = match facts(&state, &session, &ctx, None).await {
        Ok(f) => f,
        Err(e) => return layout::api_refusal(e),
    };
    let Some(c) = f
        .connections
        .iter()
        .find(|c| c.from_site == q.from && c.to_site == q.to)
    else {
        return layout::refusal(
            axum::http::StatusCode::NOT_FOUND,
            "This site has no such connection.",
        );
    };
    let index = state.access().read();
    let name = |s: SiteId| {
        index
            .site_code_and_name_of(s)
            .map(|(c, _)| c.as_str().to_owned())
            .unwrap_or_else(|| s.to_string())
    };
    let (from, to) = (name(c.from_site), name(c.to_site));
    drop(index);
    let shared: Vec<String> = if c.direction == LinkDirection::Outgoing {
        f.shares
            .iter()
            .filter(|p| p.partner == c.partner)
            .flat_map(|p| p.scorecards.iter().map(|s| s.name.clone()))
            .collect()
    } else {
        Vec::new()
    };
    let back = link(&session, "/partners", Some(ctx.site));
    let body = html! {
        section.card.warning {
            p { "Revoking stops " strong { (from) } " sharing with " strong { (to) } ". It cannot be undone (R-CONN-4):" }
            ul {
                li { "every scorecard shared over this link stops being visible to " (to) "'s users"
                    @if c.direction == LinkDirection::Outgoing {
                        @if shared.is_empty() { " (none is shared now)" }
                        @else { ": " (shared.join(", ")) }
                    } @else { " (" (c.shared_scorecards) " now)" }
                    ";" }
                li { "every relationship " (to) " built on them (placements on its scorecards, use in its aggregations) is removed;" }
                li { "the other direction, " (to) " → " (from) ", stays as it is;" }
                li { "sharing again needs a new request, and starts from nothing shared." }
            }
            @if c.status != LinkStatus::Active {
                p.flash.error role="alert" { "This link is not active (" (status_badge(c.status)) "): there is nothing to revoke." }
            } @else if ctx.administers {
                form method="post" action="/act/RevokeSharing" {
                    (form_fields(&session, &back))
                    input type="hidden" name="site_id" value=(ctx.site.to_string());
                    input type="hidden" name="from" value=(c.from_site.to_string());
                    input type="hidden" name="to" value=(c.to_site.to_string());
                    input type="hidden" name="done" value=(format!("Revoked {from} → {to}."));
                    button.danger type="submit" { "Revoke " (from) " → " (to) }
                    " "
                    a href=(back) { "Keep it" }
                }
            }
        }
    };
    layout::page(
        Frame {
            session: &session,
            nav: Nav::Partners,
            site: Some(ctx.site),
            position,
            flash: None,
        },
        &format!("Revoke {from} → {to}?"),
        body,
    )
}
