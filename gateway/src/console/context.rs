//! What every console page starts from: the site it is about, how fresh
//! it must be read, and what the signed-in person may do there.
//!
//! What a person *may do* only decides which controls a page shows: the
//! command itself decides again (a forged form is refused by the same rule
//! as an API call).

use axum::extract::rejection::QueryRejection;
use axum::extract::Query;
use axum::http::StatusCode;
use axum::response::Response;
use maud::{html, Markup};
use shareledger_core::catalog::{PermissionFlag, SiteId, UserId};

use super::layout::{self, Flash, Frame, Nav};
use super::session::Session;
use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// The page's site and the person's rights there.
#[derive(Debug, Clone, Copy)]
pub struct Context {
    pub site: SiteId,
    pub at: Option<u64>,
    /// May request, approve, deny, cancel and revoke connections and edit
    /// what is shared (Instance Admin, R-CONN-*).
    pub administers: bool,
    /// May add, change, deactivate and import users (Manage Users or
    /// Instance Admin).
    pub manages_users: bool,
}

/// A query string the page could not read, as a refusal.
pub fn params<T>(q: Result<Query<T>, QueryRejection>) -> Result<T, Response> {
    q.map(|Query(t)| t).map_err(|e| {
        layout::refusal(
            StatusCode::BAD_REQUEST,
            &format!(
                "This page's address is not one the console makes: {}",
                e.body_text()
            ),
        )
    })
}

impl Context {
    /// The page's context, or `None` when the person must first pick a
    /// site (operators and platform auditors).
    pub fn of(
        state: &AppState,
        session: &Session,
        site: Option<SiteId>,
        at: Option<u64>,
    ) -> Option<Context> {
        let site = match (&session.principal, site) {
            (Principal::User { site, .. }, _) => *site,
            (Principal::Auditor { site: Some(s), .. }, _) => *s,
            (_, Some(s)) => s,
            (_, None) => return None,
        };
        let index = state.access().read();
        let (administers, manages_users) = match &session.principal {
            // Connections are acted on by a site's Instance Admin, a user
            // (R-CONN-1): an operator manages users, not connections.
            Principal::Operator { .. } => (false, true),
            Principal::Auditor { .. } => (false, false),
            Principal::User { user, .. } => index
                .user_facts(*user)
                .filter(|f| f.active && f.site == site)
                .map(|f| {
                    let admin = f.flags.contains(&PermissionFlag::InstanceAdmin);
                    (
                        admin,
                        admin || f.flags.contains(&PermissionFlag::ManageUsers),
                    )
                })
                .unwrap_or((false, false)),
        };
        Some(Context {
            site,
            at,
            administers,
            manages_users,
        })
    }
}

/// The site's user with this username (as typed: case and surrounding
/// spaces aside), if any.
pub fn user_named(state: &AppState, site: SiteId, username: &str) -> Option<UserId> {
    let wanted = username.trim();
    let index = state.access().read();
    index.users_of(site).into_iter().find(|u| {
        index
            .person(*u)
            .is_some_and(|p| p.username.as_str().eq_ignore_ascii_case(wanted))
    })
}

/// A page about a site: its frame (read at the index's position now), the
/// site picker for those who must first choose one, `body`'s title and
/// markup, or the API's refusal as a page.
pub async fn site_page<Fut>(
    state: &AppState,
    session: &Session,
    flash: Option<Flash>,
    nav: Nav,
    (site, at): (Option<SiteId>, Option<u64>),
    body: impl FnOnce(Context) -> Fut,
) -> Response
where
    Fut: std::future::Future<Output = Result<(String, Markup), ApiError>>,
{
    let position = state.access().read().position();
    let frame = |site| Frame {
        session,
        nav,
        site,
        position,
        flash: flash.clone(),
    };
    let Some(ctx) = Context::of(state, session, site, at) else {
        return layout::page(frame(None), nav.label(), site_picker(state, nav.path()));
    };
    match body(ctx).await {
        Ok((title, markup)) => layout::page(frame(Some(ctx.site)), &title, markup),
        Err(e) => layout::api_refusal(e),
    }
}

/// The list of sites to choose from, for those who see every site.
pub fn site_picker(state: &AppState, path: &str) -> Markup {
    let index = state.access().read();
    let mut sites: Vec<(String, String, SiteId)> = index
        .sites()
        .into_iter()
        .filter_map(|s| {
            index
                .site_code_and_name_of(s)
                .map(|(c, n)| (c.as_str().to_owned(), n.as_str().to_owned(), s))
        })
        .collect();
    sites.sort();
    html! {
        p { "You see every site: choose one." }
        div.table-wrap {
            table {
                thead { tr { th scope="col" { "Code" } th scope="col" { "Name" } } }
                tbody {
                    @for (code, name, id) in &sites {
                        tr {
                            td { a href=(format!("{path}?site={id}")) { (code) } }
                            td { (name) }
                        }
                    }
                }
            }
        }
    }
}
