//! Site settings: what a site's Instance Admin turns on and off for the
//! consortium and the Partner Portal (seeds 002 and 003).
//!
//! * listing the site in the partner directory (`SetDirectoryListing`);
//! * requiring two-factor sign-in (`RequireTwoFactor`, R-ONB-3);
//! * self-registration: the model site and model user new partners are
//!   copied from (`ConfigureSelfRegistration`, R-ONB-2), and the published
//!   link: made (its address shown this once), or turned off (the API's own
//!   `/v1/sites/{id}/self-registration-link` handlers);
//! * the site's child sites (R-ONB-1).
//!
//! Every value shown is the API's answer (`/v1/sites/{id}`,
//! `/children`); every change is a form to `/act/{Command}` or to the
//! link handlers, with the session's principal.

use axum::body::Bytes;
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{header, HeaderMap, HeaderValue};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use maud::{html, Markup};
use serde::Deserialize;
use serde_json::{json, Value};
use shareledger_core::catalog::{SiteId, UserId};
use shareledger_projections::dashboard::contents::SiteRef;
use shareledger_projections::dashboard::SiteSummary;

use super::act::{
    back_with, field, json_headers, opened, read_answer, redirect_with, refused, site_of,
};
use super::context::{params, site_page, Context};
use super::layout::{form_fields, link, site_tag, Nav, Shown};
use super::session::{behind_https, Session};
use crate::contents::{self, ChildrenParams};
use crate::error::ApiError;
use crate::queries::{self, FreshParams};
use crate::self_registration;
use crate::state::AppState;

/// The most child sites listed (and offered as model sites).
const CHILDREN_SHOWN: u32 = 200;

/// The most users offered as the model user.
const MODEL_USERS_SHOWN: usize = 500;

#[derive(Debug, Default, Deserialize)]
pub struct SettingsQuery {
    site: Option<SiteId>,
    at: Option<u64>,
    /// The model site whose users to offer as the model user (else the
    /// configured one, else the site itself).
    model_site: Option<SiteId>,
}

/// `GET /settings`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Shown(flash): Shown,
    q: Result<Query<SettingsQuery>, QueryRejection>,
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
        Nav::Settings,
        (q.site, q.at),
        |ctx| async move { body(state, session, &ctx, q.model_site).await },
    )
    .await
}

async fn body(
    state: &AppState,
    session: &Session,
    ctx: &Context,
    picked_model: Option<SiteId>,
) -> Result<(String, Markup), ApiError> {
    let s = || State(state.clone());
    let p = || session.principal.clone();
    let (Json(summary), Json(children)) = tokio::try_join!(
        queries::site(
            s(),
            p(),
            Ok(Path(ctx.site)),
            Ok(Query(FreshParams {
                min_position: ctx.at,
            })),
        ),
        contents::children(
            s(),
            p(),
            Ok(Path(ctx.site)),
            Ok(Query(ChildrenParams {
                limit: Some(CHILDREN_SHOWN),
                after: None,
                min_position: ctx.at,
            })),
        ),
    )?;
    let back = link(session, "/settings", Some(ctx.site));
    let code = summary.code.as_str().to_owned();
    let markup = html! {
        p.lead { (summary.name) " " (site_tag(&code, &summary.name))
            ": how partners find " (code) ", how they sign in, and how they join it." }
        @if !ctx.administers {
            p.note data-testid="read-only" { "You can look, not change: these settings are the site's Instance Admins'." }
        }
        (directory(session, ctx, &back, &summary))
        (two_factor(session, ctx, &back, &summary))
        (self_registration(state, session, ctx, &back, &summary, &children.items, picked_model))
        (child_sites(&children.items, children.next.is_some()))
    };
    Ok((format!("Site settings · {code}"), markup))
}

/// A form that switches one setting: `field` becomes `to`.
fn switch(
    session: &Session,
    back: &str,
    (command, site): (&str, SiteId),
    (field, to): (&str, bool),
    label: &str,
    done: &str,
) -> Markup {
    html! {
        form.inline method="post" action=(format!("/act/{command}")) {
            (form_fields(session, back))
            input type="hidden" name="site_id" value=(site);
            input type="hidden" name="bool" value=(field);
            @if to { input type="hidden" name=(field) value="true"; }
            input type="hidden" name="done" value=(done);
            button type="submit" class=(if to { "primary" } else { "" }) { (label) }
        }
    }
}

fn directory(session: &Session, ctx: &Context, back: &str, summary: &SiteSummary) -> Markup {
    let code = summary.code.as_str();
    html! {
        section aria-labelledby="directory-h" data-testid="directory" {
            h2 #directory-h { "Partner directory" }
            @if summary.listed {
                p { (code) " is " strong { "listed" } ": other sites find it by name in Partner Connect and may request a connection." }
            } @else {
                p { (code) " is " strong { "not listed" } ": other sites can request a connection only if they know its code." }
            }
            @if ctx.administers {
                @if summary.listed {
                    (switch(session, back, ("SetDirectoryListing", ctx.site), ("listed", false),
                        "Leave the directory", &format!("{code} has left the partner directory.")))
                } @else {
                    (switch(session, back, ("SetDirectoryListing", ctx.site), ("listed", true),
                        "List in the directory", &format!("{code} is listed in the partner directory.")))
                }
            }
        }
    }
}

fn two_factor(session: &Session, ctx: &Context, back: &str, summary: &SiteSummary) -> Markup {
    let required = summary.two_factor_required;
    html! {
        section aria-labelledby="two-factor-h" data-testid="two-factor" {
            h2 #two-factor-h { "Two-factor sign-in" }
            p { "Two-factor sign-in is " strong { (if required { "required" } else { "not required" }) }
                " for " (summary.code.as_str()) "'s users (recorded and reported; R-ONB-3)." }
            @if ctx.administers {
                (switch(session, back, ("RequireTwoFactor", ctx.site), ("required", !required),
                    if required { "Stop requiring it" } else { "Require it" },
                    if required { "Two-factor sign-in is no longer required." } else { "Two-factor sign-in is now required." }))
            }
        }
    }
}

/// The self-registration section: its state, the model site and user, and
/// the link.
fn self_registration(
    state: &AppState,
    session: &Session,
    ctx: &Context,
    back: &str,
    summary: &SiteSummary,
    children: &[SiteRef],
    picked_model: Option<SiteId>,
) -> Markup {
    let sr = &summary.self_registration;
    let index = state.access().read();
    let site_name = |id: SiteId| {
        index
            .site_code_and_name_of(id)
            .map(|(c, n)| format!("{} ({})", n.as_str(), c.as_str()))
            .unwrap_or_else(|| id.to_string())
    };
    let user_name = |id: UserId| {
        index
            .person(id)
            .map(|p| format!("{} ({})", p.name.as_str(), p.username.as_str()))
            .unwrap_or_else(|| id.to_string())
    };
    // The model site may be the site itself or one of its children.
    let mut candidates: Vec<SiteId> = std::iter::once(ctx.site)
        .chain(children.iter().map(|c| c.site_id))
        .collect();
    if let Some(configured) = sr.model_site.filter(|m| !candidates.contains(m)) {
        candidates.push(configured);
    }
    let model_site = picked_model
        .filter(|m| candidates.contains(m))
        .or(sr.model_site)
        .unwrap_or(ctx.site);
    let mut model_users: Vec<(String, UserId)> = index
        .users_of(model_site)
        .into_iter()
        .filter_map(|u| index.person(u).filter(|p| p.active))
        .map(|p| (p.username.as_str().to_owned(), p.user))
        .collect();
    model_users.sort();
    model_users.truncate(MODEL_USERS_SHOWN);
    let here = link(session, "/settings", Some(ctx.site));
    html! {
        section aria-labelledby="self-registration-h" data-testid="self-registration" {
            h2 #self-registration-h { "Self-registration (Partner Portal)" }
            p { "Partners may register their own organisation and first manager from a link you publish. Each gets a new site and a manager copied from the "
                em { "model user" } ": their scorecard access, restrictions and flags (R-ONB-2)." }
            dl.facts {
                dt { "Self-registration" }
                dd data-testid="self-registration-state" { (if sr.enabled { "on" } else { "off" }) }
                dt { "Model site" }
                dd { (sr.model_site.map(site_name).unwrap_or_else(|| "none".into())) }
                dt { "Model user" }
                dd { (sr.model_user.map(user_name).unwrap_or_else(|| "none".into())) }
                dt { "Link" }
                dd data-testid="link-state" {
                    @if sr.link_published {
                        "published" @if sr.link_makes_children { ": new sites become children of " (summary.code.as_str()) }
                    } @else { "none" }
                }
            }
            @if ctx.administers {
                h3 { "Model" }
                form.search method="get" action="/settings" {
                    @if session.home.as_ref().map(|h| h.0) != Some(ctx.site) {
                        input type="hidden" name="site" value=(ctx.site);
                    }
                    label for="model_site_pick" { "Model site" }
                    select #model_site_pick name="model_site" {
                        @for id in &candidates {
                            option value=(id) selected[*id == model_site] { (site_name(*id)) }
                        }
                    }
                    button type="submit" { "Show its users" }
                }
                form.stack method="post" action="/act/ConfigureSelfRegistration" data-testid="configure-self-registration" {
                    (form_fields(session, back))
                    input type="hidden" name="site_id" value=(ctx.site);
                    input type="hidden" name="model_site" value=(model_site);
                    input type="hidden" name="bool" value="enabled";
                    input type="hidden" name="done" value="Saved the self-registration settings.";
                    div.field {
                        label for="model_user" { "Model user (of " (site_name(model_site)) ")" }
                        select #model_user name="model_user" {
                            option value="" { "none" }
                            @for (username, id) in &model_users {
                                option value=(id) selected[sr.model_user == Some(*id)] { (username) }
                            }
                        }
                    }
                    label.check { input type="checkbox" name="enabled" value="true" checked[sr.enabled]; " Allow partners to register themselves" }
                    button.primary type="submit" { "Save" }
                }
                h3 { "Link" }
                @if sr.enabled {
                    form.stack method="post" action="/settings/link" data-testid="publish-link" {
                        (form_fields(session, &here))
                        input type="hidden" name="site_id" value=(ctx.site);
                        label.check { input type="checkbox" name="child_of_group" value="true" checked[sr.link_makes_children];
                            " New sites become children of " (summary.code.as_str()) }
                        button.primary type="submit" {
                            (if sr.link_published { "Make a new link (the old one stops working)" } else { "Make the link" })
                        }
                    }
                } @else {
                    p.note { "Turn self-registration on to make a link." }
                }
                @if sr.link_published {
                    form.inline method="post" action="/settings/link/withdraw" {
                        (form_fields(session, &here))
                        input type="hidden" name="site_id" value=(ctx.site);
                        button.danger type="submit" { "Turn the link off" }
                    }
                }
            }
        }
    }
}

fn child_sites(children: &[SiteRef], more: bool) -> Markup {
    html! {
        section aria-labelledby="children-h" {
            h2 #children-h { "Child sites" }
            @if children.is_empty() {
                p.empty { "No child site." }
            } @else {
                div.table-wrap { table data-testid="children" {
                    thead { tr { th scope="col" { "Site" } th scope="col" { "Code" } } }
                    tbody {
                        @for c in children {
                            tr { td { (c.name.as_str()) } td { (site_tag(c.code.as_str(), c.name.as_str())) } }
                        }
                    }
                } }
                @if more { p.note { "The first " (CHILDREN_SHOWN) " child sites, by name." } }
            }
        }
    }
}

/// `POST /settings/link`: makes the group's link (the API's handler) and
/// shows its address, this once.
pub async fn publish_link(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (back, site) = match opened(&session, &fields).and_then(|b| Ok((b, site_of(&fields)?))) {
        Ok(opened) => opened,
        Err(refusal) => return refusal,
    };
    let children = field(&fields, "child_of_group") == Some("true");
    let body = json!({ "child_of_group": children }).to_string();
    let answer = self_registration::publish(
        State(state.clone()),
        session.principal.clone(),
        Ok(Path(site)),
        json_headers(None),
        Ok(Bytes::from(body)),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    let (status, bytes) = read_answer(answer).await;
    let answered: Option<Value> = serde_json::from_slice(&bytes).ok();
    let key = answered
        .as_ref()
        .and_then(|v| v.get("link_key"))
        .and_then(Value::as_str);
    let (true, Some(key)) = (status.is_success(), key) else {
        return redirect_with(&refused("Making the link", status, &bytes), &back, None);
    };
    let position = answered
        .as_ref()
        .and_then(|v| v.pointer("/result/position"))
        .and_then(Value::as_u64);
    let scheme = if behind_https(&headers) {
        "https"
    } else {
        "http"
    };
    let host = headers
        .get(header::HOST)
        .and_then(|h| h.to_str().ok())
        .unwrap_or("localhost");
    let address = format!("{scheme}://{host}/register?key={key}");
    let (state, session) = (&state, &session);
    let mut response = site_page(
        state,
        session,
        None,
        Nav::Settings,
        (Some(site), position),
        |_ctx| async move {
            Ok((
                "The self-registration link".to_owned(),
                html! {
                    div.flash.ok role="status" {
                        p { "A new link is made. Copy it now: it is shown this once (the log keeps only its fingerprint). Any earlier link has stopped working." }
                    }
                    div.field {
                        label for="link" { "Self-registration link" }
                        input #link type="text" readonly value=(address) data-testid="link" spellcheck="false";
                    }
                    p { "Put it on your website or send it to partners. Anyone holding it may register an organisation until you make a new one or turn it off." }
                    p { a.button href=(back) { "Back to the site settings" } }
                },
            ))
        },
    )
    .await;
    // A page holding a secret is not kept by any cache.
    response
        .headers_mut()
        .insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    response
}

/// `POST /settings/link/withdraw`: turns the group's link off.
pub async fn withdraw_link(
    State(state): State<AppState>,
    session: Session,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let (back, site) = match opened(&session, &fields).and_then(|b| Ok((b, site_of(&fields)?))) {
        Ok(opened) => opened,
        Err(refusal) => return refusal,
    };
    let answer = self_registration::withdraw(
        State(state.clone()),
        session.principal.clone(),
        Ok(Path(site)),
    )
    .await
    .into_response();
    back_with(
        answer,
        "Turning the link off",
        Some("The self-registration link is off: no key works until a new one is made."),
        &back,
        None,
    )
    .await
}
