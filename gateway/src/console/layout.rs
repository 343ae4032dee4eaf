//! The console's page shell: header, navigation, who is signed in, the
//! one-time message of the last action (a "flash", carried by a short-lived
//! cookie across the redirect that follows every form), and the pages for
//! refusals.

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use cookie::{Cookie, SameSite};
use maud::{html, Markup, DOCTYPE};
use serde::{Deserialize, Serialize};
use shareledger_core::catalog::SiteId;

use super::session::Session;
use crate::auth::Principal;
use crate::error::ApiError;

/// The cookie carrying the last action's message to the next page.
const FLASH_COOKIE: &str = "sl_flash";

/// The message an action leaves for the next page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Flash {
    pub ok: bool,
    pub text: String,
    /// Per-row errors of a refused CSV import (line, field, reason), or
    /// what [`Flash::table`] says its rows are.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub rows: Vec<(u32, String, String)>,
    /// The rows' caption and column names, when they are not an import's
    /// errors.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub table: Option<(String, [String; 3])>,
    /// The refused command and what its form held, to fill it again
    /// (short forms only: the message travels in a cookie).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kept: Option<(String, Vec<(String, String)>)>,
}

impl Flash {
    pub fn ok(text: impl Into<String>) -> Self {
        Self {
            ok: true,
            text: text.into(),
            rows: Vec::new(),
            table: None,
            kept: None,
        }
    }

    pub fn error(text: impl Into<String>) -> Self {
        Self {
            ok: false,
            text: text.into(),
            rows: Vec::new(),
            table: None,
            kept: None,
        }
    }

    /// What field `name` of `command`'s refused form held, if it was kept.
    pub fn kept(&self, command: &str, name: &str) -> Option<&str> {
        let (refused, fields) = self.kept.as_ref()?;
        fields
            .iter()
            .find(|(n, _)| refused == command && n == name)
            .map(|(_, v)| v.as_str())
    }

    /// The cookie that carries this message to the next page (one
    /// minute; hex so that any text fits a cookie's value).
    pub fn cookie(&self) -> Cookie<'static> {
        let json = serde_json::to_vec(self).unwrap_or_default();
        Cookie::build((FLASH_COOKIE, hex::encode(json)))
            .path("/")
            .http_only(true)
            .same_site(SameSite::Strict)
            .max_age(cookie::time::Duration::minutes(1))
            .build()
    }

    fn render(&self) -> Markup {
        let (caption, [first, second, third]) = self.table.clone().unwrap_or_else(|| {
            (
                "Rows to correct (nothing was imported)".to_owned(),
                ["Line".to_owned(), "Field".to_owned(), "Reason".to_owned()],
            )
        });
        html! {
            div.flash.ok[self.ok].error[!self.ok] role=(if self.ok { "status" } else { "alert" }) {
                p { (self.text) }
                @if !self.rows.is_empty() {
                    div.table-wrap {
                        table {
                            caption { (caption) }
                            thead { tr { th scope="col" { (first) } th scope="col" { (second) } th scope="col" { (third) } } }
                            tbody {
                                @for (line, field, reason) in &self.rows {
                                    tr { td { (line) } td { (field) } td { (reason) } }
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}

/// The message left by the last action, if any (read once: the page that
/// shows it clears the cookie).
#[derive(Debug, Clone, Default)]
pub struct Shown(pub Option<Flash>);

impl<S: Send + Sync> FromRequestParts<S> for Shown {
    type Rejection = std::convert::Infallible;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, Self::Rejection> {
        let flash = parts
            .headers
            .get_all(header::COOKIE)
            .iter()
            .filter_map(|v| v.to_str().ok())
            .flat_map(Cookie::split_parse)
            .filter_map(Result::ok)
            .find(|c| c.name() == FLASH_COOKIE)
            .and_then(|c| hex::decode(c.value()).ok())
            .and_then(|bytes| serde_json::from_slice(&bytes).ok());
        Ok(Shown(flash))
    }
}

/// The console's sections.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Nav {
    Partners,
    Users,
    Scorecards,
    Access,
    Audit,
    Settings,
}

impl Nav {
    const ALL: [Nav; 6] = [
        Nav::Partners,
        Nav::Users,
        Nav::Scorecards,
        Nav::Access,
        Nav::Audit,
        Nav::Settings,
    ];

    pub fn label(self) -> &'static str {
        match self {
            Nav::Partners => "Partner Connect",
            Nav::Users => "Users",
            Nav::Scorecards => "Scorecards",
            Nav::Access => "Access explorer",
            Nav::Audit => "Audit",
            Nav::Settings => "Site settings",
        }
    }

    /// Whether the section is for this person: the administrative pages
    /// for those who may read them, Audit for auditors and operators (as
    /// the API decides; the navigation only spares a refusal).
    fn offered_to(self, session: &Session) -> bool {
        let user = matches!(session.principal, Principal::User { .. });
        match self {
            Nav::Access => true,
            Nav::Audit => !user,
            Nav::Partners | Nav::Users | Nav::Scorecards | Nav::Settings => {
                session.reads_admin_pages
            }
        }
    }

    pub fn path(self) -> &'static str {
        match self {
            Nav::Partners => "/partners",
            Nav::Users => "/users",
            Nav::Scorecards => "/scorecards",
            Nav::Access => "/access",
            Nav::Audit => "/audit",
            Nav::Settings => "/settings",
        }
    }
}

/// A link to a console page about `site` (the `site` parameter is left
/// out when it is the signed-in person's own).
pub fn link(session: &Session, path: &str, site: Option<SiteId>) -> String {
    match site {
        Some(s) if session.home.as_ref().map(|h| h.0) != Some(s) => {
            let sep = if path.contains('?') { '&' } else { '?' };
            format!("{path}{sep}site={s}")
        }
        _ => path.to_owned(),
    }
}

/// What a page is: its section, the site it is about, the log position it
/// was read at (the live script watches the log from there).
pub struct Frame<'a> {
    pub session: &'a Session,
    pub nav: Nav,
    pub site: Option<SiteId>,
    pub position: u64,
    pub flash: Option<Flash>,
}

/// A whole page of the console.
pub fn page(frame: Frame<'_>, title: &str, body: Markup) -> Response {
    let Frame {
        session,
        nav,
        site,
        position,
        flash,
    } = frame;
    let had_flash = flash.is_some();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body data-position=(position) data-live=(session.record.token_id) {
                a.skip href="#main" { "Skip to content" }
                header.top {
                    a.brand href="/" { "ShareLedger" }
                    nav aria-label="Sections" {
                        ul {
                            @for item in Nav::ALL.into_iter().filter(|n| n.offered_to(session)) {
                                li {
                                    a href=(link(session, item.path(), site))
                                        aria-current=[(item == nav).then_some("page")] { (item.label()) }
                                }
                            }
                        }
                    }
                    div.who {
                        span data-testid="who" { (session.who) }
                        @if let Some((_, code, name)) = &session.home {
                            " · " span.site-tag title=(name) { (code) }
                        } @else if site.is_some() {
                            " · " a href=(nav.path()) { "change site" }
                        }
                        form.inline method="post" action="/sign-out" {
                            input type="hidden" name="csrf" value=(session.csrf());
                            button.link type="submit" { "Sign out" }
                        }
                    }
                }
                div #live.live hidden role="status" aria-live="polite" {
                    span { "The log has moved since this page was read." }
                    " "
                    a href="" { "Show the latest" }
                }
                main #main {
                    @if let Some(f) = &flash { (f.render()) }
                    h1 { (title) }
                    (body)
                }
                footer { "Read at log position " span data-testid="position" { (position) } }
                script src="/assets/console.js" defer {}
            }
        }
    };
    let mut response = (StatusCode::OK, markup).into_response();
    if had_flash {
        clear_flash(&mut response);
    }
    response
}

fn head(title: &str) -> Markup {
    html! {
        head {
            meta charset="utf-8";
            meta name="viewport" content="width=device-width, initial-scale=1";
            title { (title) " · ShareLedger" }
            link rel="stylesheet" href="/assets/console.css";
            link rel="icon" href="data:image/svg+xml,%3Csvg xmlns='http://www.w3.org/2000/svg' viewBox='0 0 16 16'%3E%3Crect width='16' height='16' rx='3' fill='%2314213d'/%3E%3C/svg%3E";
        }
    }
}

/// A page outside a session (sign-in, refusals).
pub fn bare(title: &str, flash: Option<Flash>, body: Markup) -> Response {
    let had_flash = flash.is_some();
    let markup = html! {
        (DOCTYPE)
        html lang="en" {
            (head(title))
            body {
                header.top { a.brand href="/" { "ShareLedger" } }
                main #main {
                    @if let Some(f) = &flash { (f.render()) }
                    (body)
                }
            }
        }
    };
    let mut response = markup.into_response();
    if had_flash {
        clear_flash(&mut response);
    }
    response
}

fn clear_flash(response: &mut Response) {
    let gone = Cookie::build((FLASH_COOKIE, ""))
        .path("/")
        .max_age(cookie::time::Duration::ZERO)
        .build();
    if let Ok(v) = gone.to_string().parse() {
        response.headers_mut().append(header::SET_COOKIE, v);
    }
}

/// A refusal as a page: the status and the reason in the domain's words.
pub fn refusal(status: StatusCode, text: &str) -> Response {
    let body = html! {
        section.card.narrow {
            h1 { (status.canonical_reason().unwrap_or("Refused")) }
            p data-testid="refusal" { (text) }
            p { a href="/" { "Back to the console" } }
        }
    };
    let mut response = bare("Refused", None, body);
    *response.status_mut() = status;
    response
}

/// An API error as a page, with the API's status and detail.
pub fn api_refusal(error: ApiError) -> Response {
    let (status, _) = error.status_and_code();
    let problem = error.problem();
    refusal(status, &problem.detail)
}

/// A badge for a status word.
pub fn badge(kind: &str, text: &str) -> Markup {
    html! { span class=(format!("badge {kind}")) { (text) } }
}

/// A site's tag: its code, its name on hover.
pub fn site_tag(code: &str, name: &str) -> Markup {
    html! { span.site-tag title=(name) { (code) } }
}

/// A value's name on the wire (`browser`, `instance_admin`, …).
pub fn wire<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        Ok(other) => other.to_string(),
        Err(_) => String::new(),
    }
}

/// A wire name in words (`scorecard_admin` → `scorecard admin`).
pub fn words<T: Serialize>(value: &T) -> String {
    wire(value).replace('_', " ")
}

/// A time as people read it (UTC, to the second).
pub fn when(at: &chrono::DateTime<chrono::Utc>) -> Markup {
    html! { time datetime=(at.to_rfc3339()) { (at.format("%Y-%m-%d %H:%M:%S UTC")) } }
}

/// The hidden fields every form carries: the CSRF token, a fresh
/// idempotency key (a form sent twice is applied once) and the page to
/// come back to.
pub fn form_fields(session: &Session, back: &str) -> Markup {
    html! {
        input type="hidden" name="csrf" value=(session.csrf());
        input type="hidden" name="key" value=(uuid::Uuid::new_v4());
        input type="hidden" name="back" value=(back);
    }
}

/// The stylesheet, compiled into the binary.
pub const CSS: &str = include_str!("assets/console.css");
/// The script (live updates, CSV file reading), compiled into the binary.
pub const JS: &str = include_str!("assets/console.js");
/// The shared worker holding one live stream for a session's tabs.
pub const LIVE_WORKER: &str = include_str!("assets/live-worker.js");
