//! Users (seeds 001 and 004): the site's users as a table sortable by any
//! column, searched in every field, with inactive users hidden or shown,
//! a page of 50 at a time (keyset-paged, so 10,000 users cost what 50 do);
//! the seat count against the limit; adding, deactivating and reactivating
//! a user, or an existing user of another site (named by its code and
//! their username); importing a CSV file, which shows each bad row's
//! line, field and reason and applies nothing until the file is clean
//! (R-USER-8); and a user's page with their role, flags, Organisation
//! Settings menu (R-ONB-3) and level on each scorecard.

use axum::body::Bytes;
use axum::extract::rejection::{PathRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use axum::{Form, Json};
use maud::{html, Markup};
use serde::Deserialize;
use shareledger_core::catalog::{AccessLevel, PermissionFlag, Role, ScorecardId, SiteId, UserId};
use shareledger_projections::dashboard::{SiteSummary, UserSort, UsersPage};

use super::act::{back_with, field, json_headers, opened, redirect_with};
use super::context::{params, site_page, user_named, Context};
use super::layout::{
    self, badge, form_fields, link, site_tag, when, wire, words, Flash, Frame, Nav, Shown,
};
use super::session::{urlencode, Session};
use crate::commands;
use crate::contents::{self, ScorecardsParams, SharedWithParams};
use crate::error::ApiError;
use crate::queries::{self, FreshParams, UsersParams};
use crate::state::AppState;

/// Users shown per page.
const PAGE: u32 = 50;

const ROLES: [Role; 4] = [
    Role::Administration,
    Role::ScorecardBuilder,
    Role::DataEntry,
    Role::Presenter,
];

/// The users page's parameters (the table's state is in the address, so
/// a sorted, searched page can be bookmarked and shared).
#[derive(Debug, Default, Deserialize)]
pub struct UsersQuery {
    site: Option<SiteId>,
    at: Option<u64>,
    search: Option<String>,
    sort: Option<UserSort>,
    #[serde(default)]
    descending: bool,
    /// Where the page starts: a `next` or a `previous` cursor.
    after: Option<String>,
    /// Hide inactive users (`1`).
    hide_inactive: Option<String>,
}

impl UsersQuery {
    fn hides_inactive(&self) -> bool {
        self.hide_inactive.as_deref().is_some_and(|v| !v.is_empty())
    }

    /// This page's address with some parts changed; `after` is where the
    /// page starts (a `next` or `previous` cursor).
    fn href(
        &self,
        session: &Session,
        site: SiteId,
        sort: UserSort,
        descending: bool,
        after: Option<&str>,
    ) -> String {
        let mut parts = vec![format!("sort={}", wire(&sort))];
        if descending {
            parts.push("descending=true".into());
        }
        if let Some(s) = self.search.as_deref().filter(|s| !s.is_empty()) {
            parts.push(format!("search={}", urlencode(s)));
        }
        if self.hides_inactive() {
            parts.push("hide_inactive=1".into());
        }
        if let Some(cursor) = after {
            parts.push(format!("after={}", urlencode(cursor)));
        }
        link(session, &format!("/users?{}", parts.join("&")), Some(site))
    }
}

/// `GET /users`.
pub async fn page(
    State(state): State<AppState>,
    session: Session,
    Shown(flash): Shown,
    q: Result<Query<UsersQuery>, QueryRejection>,
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
        Nav::Users,
        (q.site, q.at),
        |ctx| async move { body(state, session, &ctx, q, refused.as_ref()).await },
    )
    .await
}

async fn summary(
    state: &AppState,
    session: &Session,
    ctx: &Context,
) -> Result<SiteSummary, ApiError> {
    let Json(summary) = queries::site(
        State(state.clone()),
        session.principal.clone(),
        Ok(Path(ctx.site)),
        Ok(Query(FreshParams {
            min_position: ctx.at,
        })),
    )
    .await?;
    Ok(summary)
}

async fn body(
    state: &AppState,
    session: &Session,
    ctx: &Context,
    q: &UsersQuery,
    refused: Option<&Flash>,
) -> Result<(String, Markup), ApiError> {
    let sort = q.sort.unwrap_or_default();
    // The two answers are independent: asked at once.
    let (summary, Json(users)) = tokio::try_join!(
        summary(state, session, ctx),
        queries::users(
            State(state.clone()),
            session.principal.clone(),
            Ok(Path(ctx.site)),
            Ok(Query(UsersParams {
                search: q.search.clone().filter(|s| !s.trim().is_empty()),
                sort: Some(sort),
                descending: q.descending,
                limit: Some(PAGE),
                after: q.after.clone(),
                active: q.hides_inactive().then_some(true),
                role: None,
                flag: None,
                min_position: ctx.at,
            })),
        )
    )?;
    let code = summary.code.as_str().to_owned();
    let here = q.href(session, ctx.site, sort, q.descending, q.after.as_deref());
    let markup = html! {
        p.lead {
            (summary.name) " " (site_tag(&code, &summary.name)) ": "
            strong data-testid="seats" { (summary.active_users) " of " (summary.seat_limit) " seats" }
            " in use (active users count against the limit)."
        }
        (filters(session, ctx, q))
        (table(session, ctx, q, &users, sort, &here))
        @if ctx.manages_users {
            (add_form(session, ctx, &here, refused))
            (add_existing_form(session, ctx, &here, refused))
            (import_form(session, ctx, &here))
        }
    };
    Ok((format!("Users · {code}"), markup))
}

fn filters(session: &Session, ctx: &Context, q: &UsersQuery) -> Markup {
    html! {
        form.search method="get" action="/users" role="search" {
            @if session.home.as_ref().map(|h| h.0) != Some(ctx.site) {
                input type="hidden" name="site" value=(ctx.site.to_string());
            }
            @if let Some(sort) = q.sort { input type="hidden" name="sort" value=(wire(&sort)); }
            @if q.descending { input type="hidden" name="descending" value="true"; }
            label for="user-search" { "Search users" }
            input #user-search type="search" name="search" value=[q.search.as_deref()]
                placeholder="username, name, email or role";
            label.check {
                input type="checkbox" name="hide_inactive" value="1" checked[q.hides_inactive()];
                " Hide inactive"
            }
            button type="submit" { "Apply" }
        }
    }
}

fn table(
    session: &Session,
    ctx: &Context,
    q: &UsersQuery,
    users: &UsersPage,
    sort: UserSort,
    back: &str,
) -> Markup {
    let columns: [(&str, UserSort); 7] = [
        ("Username", UserSort::Username),
        ("Name", UserSort::Name),
        ("Email", UserSort::Email),
        ("Role", UserSort::Role),
        ("Last activity", UserSort::LastActivity),
        ("Added", UserSort::AddedAt),
        ("Status", UserSort::Active),
    ];
    let site = ctx.site.to_string();
    html! {
        div.table-wrap {
            table data-testid="users" {
                caption { (users.total) @if users.total == 1 { " user matches" } @else { " users match" } @if users.previous.is_some() { " (a later page)" } }
                thead { tr {
                    @for (label, column) in columns {
                        @let current = column == sort;
                        @let next_desc = current && !q.descending;
                        th scope="col" aria-sort=(if !current { "none" } else if q.descending { "descending" } else { "ascending" }) {
                            a href=(q.href(session, ctx.site, column, next_desc, None)) {
                                (label)
                                @if current { span aria-hidden="true" { @if q.descending { " ▼" } @else { " ▲" } } }
                            }
                        }
                    }
                    @if ctx.manages_users { th scope="col" { "Actions" } }
                } }
                tbody {
                    @if users.users.is_empty() { tr { td colspan="8" .empty { "No user matches." } } }
                    @for u in &users.users {
                        tr data-username=(u.username.as_str()) {
                            td { a href=(link(session, &format!("/users/{}", u.user_id), Some(ctx.site))) { (u.username.as_str()) } }
                            td { (u.name.as_str()) }
                            td { @if let Some(e) = &u.email { (e.as_str()) } @else { "—" } }
                            td { (words(&u.role)) }
                            td { @if let Some(t) = &u.last_activity { (when(t)) } @else { "never" } }
                            td { (when(&u.added_at)) }
                            td { @if u.active { (badge("active", "active")) } @else { (badge("revoked", "inactive")) } }
                            @if ctx.manages_users && Some(u.user_id) == session.principal.user() {
                                td.actions { span.note { "you" } }
                            } @else if ctx.manages_users {
                                td.actions {
                                    form.inline method="post" action=(if u.active { "/act/DeactivateUser" } else { "/act/ReactivateUser" }) {
                                        (form_fields(session, back))
                                        input type="hidden" name="site_id" value=(site);
                                        input type="hidden" name="user_id" value=(u.user_id.to_string());
                                        input type="hidden" name="done" value=(format!("{} is now {}.", u.username.as_str(), if u.active { "inactive" } else { "active" }));
                                        @if u.active {
                                            button.danger type="submit" aria-label=(format!("Deactivate {}", u.username.as_str())) { "Deactivate" }
                                        } @else {
                                            button type="submit" aria-label=(format!("Reactivate {}", u.username.as_str())) { "Reactivate" }
                                        }
                                    }
                                }
                            }
                        }
                    }
                }
            }
        }
        nav.pager aria-label="Pages" {
            @if let Some(previous) = &users.previous {
                a href=(q.href(session, ctx.site, sort, q.descending, None)) { "First page" }
                a href=(q.href(session, ctx.site, sort, q.descending, Some(previous))) rel="prev" { "Previous page" }
            }
            @if let Some(next) = &users.next {
                a href=(q.href(session, ctx.site, sort, q.descending, Some(next))) rel="next" { "Next page" }
            }
        }
    }
}

/// The Add a user form, filled again with what a refused one held.
fn add_form(session: &Session, ctx: &Context, back: &str, refused: Option<&Flash>) -> Markup {
    let kept = |name: &str| refused.and_then(|f| f.kept("AddUser", name));
    let role = kept("role").unwrap_or("presenter");
    html! {
        section aria-labelledby="add-h" {
            h2 #add-h { "Add a user" }
            form.stack method="post" action="/act/AddUser" {
                (form_fields(session, back))
                input type="hidden" name="site_id" value=(ctx.site.to_string());
                input type="hidden" name="done" value="User added.";
                div.field { label for="new-username" { "Username" } input #new-username name="username" required autocomplete="off" value=[kept("username")]; }
                div.field { label for="new-name" { "Name" } input #new-name name="name" required autocomplete="off" value=[kept("name")]; }
                div.field { label for="new-email" { "Email (optional)" } input #new-email name="email" type="email" autocomplete="off" value=[kept("email")]; }
                div.field {
                    label for="new-role" { "Role" }
                    select #new-role name="role" {
                        @for r in ROLES { option value=(wire(&r)) selected[wire(&r) == role] { (words(&r)) } }
                    }
                }
                button.primary type="submit" { "Add user" }
            }
        }
    }
}

/// Add Existing User (seed 001): a person with an account on another site,
/// named by that site's code and their username there.
fn add_existing_form(
    session: &Session,
    ctx: &Context,
    back: &str,
    refused: Option<&Flash>,
) -> Markup {
    let kept = |name: &str| refused.and_then(|f| f.kept("AddExistingUser", name));
    let role = kept("role").unwrap_or("presenter");
    html! {
        section aria-labelledby="existing-h" {
            h2 #existing-h { "Add an existing user" }
            p { "Someone with an account on another site: the account here gets their username, name and email, and a role of its own." }
            form.stack method="post" action="/users/add-existing" data-testid="add-existing" {
                (form_fields(session, back))
                input type="hidden" name="site_id" value=(ctx.site.to_string());
                div.field { label for="existing-site" { "Their site's code" } input #existing-site name="from_code" required autocomplete="off" value=[kept("from_code")]; }
                div.field { label for="existing-username" { "Their username there" } input #existing-username name="from_username" required autocomplete="off" value=[kept("from_username")]; }
                div.field {
                    label for="existing-role" { "Role here" }
                    select #existing-role name="role" {
                        @for r in ROLES { option value=(wire(&r)) selected[wire(&r) == role] { (words(&r)) } }
                    }
                }
                button.primary type="submit" { "Add user" }
            }
        }
    }
}

/// `POST /users/add-existing`: the site code and username named, as the
/// ids `AddExistingUser` takes (looked up in the access index), then the
/// command through the API's handler.
pub async fn add_existing(
    State(state): State<AppState>,
    session: Session,
    Form(fields): Form<Vec<(String, String)>>,
) -> Response {
    let back = match opened(&session, &fields) {
        Ok(back) => back,
        Err(refusal) => return refusal,
    };
    let value = |name: &str| field(&fields, name).unwrap_or_default().trim().to_owned();
    let kept: Vec<(String, String)> = ["from_code", "from_username", "role"]
        .iter()
        .map(|n| ((*n).to_owned(), value(n)))
        .filter(|(_, v)| !v.is_empty() && v.len() <= 256)
        .collect();
    let refuse = |text: String| {
        let mut flash = Flash::error(text);
        flash.kept = Some(("AddExistingUser".to_owned(), kept.clone()));
        redirect_with(&flash, &back, None)
    };
    let (code, username) = (value("from_code"), value("from_username"));
    let from_site = {
        let index = state.access().read();
        index.sites().into_iter().find(|s| {
            index
                .site_code_and_name_of(*s)
                .is_some_and(|(c, _)| c.as_str().eq_ignore_ascii_case(&code))
        })
    };
    let Some(from_site) = from_site else {
        return refuse(format!(
            "AddExistingUser was refused: no site has the code “{code}”."
        ));
    };
    let Some(from_user) = user_named(&state, from_site, &username) else {
        return refuse(format!(
            "AddExistingUser was refused: {code} has no user “{username}”."
        ));
    };
    let body = serde_json::json!({
        "site_id": value("site_id"),
        "from_site": from_site,
        "from_user": from_user,
        "role": value("role"),
    });
    let answer = commands::handle(
        State(state.clone()),
        Path("AddExistingUser".to_owned()),
        session.principal.clone(),
        json_headers(field(&fields, "key")),
        Ok(Bytes::from(body.to_string())),
    )
    .await
    .unwrap_or_else(IntoResponse::into_response);
    back_with(
        answer,
        "AddExistingUser",
        Some(&format!("Added {username} of {code}.")),
        &back,
        Some(("AddExistingUser".to_owned(), kept.clone())),
    )
    .await
}

fn import_form(session: &Session, ctx: &Context, back: &str) -> Markup {
    html! {
        section aria-labelledby="import-h" {
            h2 #import-h { "Import users from CSV" }
            p { "A header naming " code { "username" } ", " code { "name" } " and " code { "role" }
                " (and optionally " code { "email" } "), then one user per row. Every row is checked first: one bad row and nothing is imported." }
            form.stack method="post" action="/act/ImportUsers" {
                (form_fields(session, back))
                input type="hidden" name="site_id" value=(ctx.site.to_string());
                input type="hidden" name="done" value="The file was imported.";
                div.field {
                    label for="csv-file" { "Choose a file" }
                    input #csv-file type="file" accept=".csv,text/csv" data-fills="csv-text";
                }
                div.field {
                    label for="csv-text" { "…or paste it" }
                    textarea #csv-text name="csv" rows="6" required spellcheck="false" {}
                }
                button.primary type="submit" { "Import" }
            }
        }
    }
}

/// `GET /users/{user_id}`: one user, their flags and scorecard levels.
pub async fn detail(
    State(state): State<AppState>,
    session: Session,
    Shown(flash): Shown,
    user: Result<Path<UserId>, PathRejection>,
    q: Result<Query<DetailQuery>, QueryRejection>,
) -> Response {
    let q = match params(q) {
        Ok(q) => q,
        Err(refusal) => return refusal,
    };
    let Ok(Path(user)) = user else {
        return layout::refusal(axum::http::StatusCode::NOT_FOUND, "No such user.");
    };
    let position = state.access().read().position();
    let Some(ctx) = Context::of(&state, &session, q.site, q.at) else {
        return layout::refusal(axum::http::StatusCode::BAD_REQUEST, "Name the site.");
    };
    let Json(detail) = match queries::user(
        State(state.clone()),
        session.principal.clone(),
        Ok(Path((ctx.site, user))),
        Ok(Query(FreshParams {
            min_position: ctx.at,
        })),
    )
    .await
    {
        Ok(d) => d,
        Err(e) => return layout::api_refusal(e),
    };
    let grantable = if ctx.manages_users {
        match grantable(&state, &session, &ctx).await {
            Ok(g) => g,
            Err(e) => return layout::api_refusal(e),
        }
    } else {
        Vec::new()
    };
    let u = &detail.user;
    let back = link(&session, &format!("/users/{user}"), Some(ctx.site));
    let site = ctx.site.to_string();
    let body = html! {
        dl.facts {
            dt { "Name" } dd { (u.name.as_str()) }
            dt { "Email" } dd { @if let Some(e) = &u.email { (e.as_str()) } @else { "—" } }
            dt { "Role" } dd { (words(&u.role)) }
            dt { "Status" } dd { @if u.active { (badge("active", "active")) } @else { (badge("revoked", "inactive")) } }
            dt { "Added" } dd {
                (when(&u.added_at))
                @if u.origin != "added" { " (" (u.origin.replace('_', " ")) ")" }
            }
            dt { "Last activity" } dd { @if let Some(t) = &u.last_activity { (when(t)) } @else { "never" } }
        }
        @if ctx.manages_users {
            section aria-labelledby="edit-h" {
                h2 #edit-h { "Details and role" }
                div.two-lists {
                    form.stack method="post" action="/act/ChangeUserDetails" {
                        (form_fields(&session, &back))
                        input type="hidden" name="site_id" value=(site);
                        input type="hidden" name="user_id" value=(u.user_id.to_string());
                        input type="hidden" name="done" value="Details saved.";
                        div.field { label for="edit-name" { "Name" } input #edit-name name="name" required value=(u.name.as_str()); }
                        div.field { label for="edit-email" { "Email (empty: none)" } input #edit-email name="email" type="email" value=[u.email.as_ref().map(|e| e.as_str())]; }
                        button.primary type="submit" { "Save details" }
                    }
                    form.stack method="post" action="/act/ChangeUserRole" {
                        (form_fields(&session, &back))
                        input type="hidden" name="site_id" value=(site);
                        input type="hidden" name="user_id" value=(u.user_id.to_string());
                        input type="hidden" name="done" value="Role changed.";
                        div.field {
                            label for="edit-role" { "Role preset" }
                            select #edit-role name="role" {
                                @for role in ROLES { option value=(wire(&role)) selected[role == u.role] { (words(&role)) } }
                            }
                        }
                        p.note { "A role preset sets the permission flags below to the role's." }
                        button.primary type="submit" { "Change role" }
                    }
                }
            }
        }
        section aria-labelledby="flags-h" {
            h2 #flags-h { "Permission flags" }
            form.stack method="post" action="/act/SetPermissionFlags" {
                (form_fields(&session, &back))
                input type="hidden" name="site_id" value=(site);
                input type="hidden" name="user_id" value=(u.user_id.to_string());
                input type="hidden" name="done" value="Permission flags saved.";
                // Every flag not switched on is switched off.
                input type="hidden" name="complement" value="disable:enable";
                @for flag in PermissionFlag::ALL {
                    input type="hidden" name="disable[]" value=(wire(&flag));
                }
                div.flags {
                    @for flag in PermissionFlag::ALL {
                        @let id = format!("flag-{}", wire(&flag));
                        div.check {
                            input type="checkbox" id=(id) name="enable[]" value=(wire(&flag))
                                checked[u.permissions.contains(&flag)] disabled[!ctx.manages_users];
                            label for=(id) { (words(&flag)) }
                        }
                    }
                }
                @if ctx.manages_users { button.primary type="submit" { "Save flags" } }
            }
        }
        section aria-labelledby="org-h" data-testid="organisation-settings" {
            h2 #org-h { "Organisation settings menu" }
            p { "The Organisation Settings menu is "
                strong { (if u.hide_organization_settings { "hidden" } else { "shown" }) }
                " for " (u.username.as_str()) " (R-ONB-3)." }
            @if ctx.manages_users {
                form.inline method="post" action="/act/HideOrganizationSettings" {
                    (form_fields(&session, &back))
                    input type="hidden" name="site_id" value=(site);
                    input type="hidden" name="user_id" value=(u.user_id.to_string());
                    input type="hidden" name="bool" value="hidden";
                    @if !u.hide_organization_settings { input type="hidden" name="hidden" value="true"; }
                    input type="hidden" name="done" value=(if u.hide_organization_settings { "The Organisation Settings menu is shown again." } else { "The Organisation Settings menu is hidden." });
                    button type="submit" { (if u.hide_organization_settings { "Show it" } else { "Hide it" }) }
                }
            }
        }
        section aria-labelledby="levels-h" {
            h2 #levels-h { "Scorecard access" }
            div.table-wrap { table data-testid="levels" {
                caption { "The user's level on each scorecard assigned to them" }
                thead { tr {
                    th scope="col" { "Scorecard" } th scope="col" { "Owner" } th scope="col" { "Level" }
                    @if ctx.manages_users { th scope="col" { "Actions" } }
                } }
                tbody {
                    @if detail.scorecard_access.is_empty() { tr { td colspan="4" .empty { "None assigned." } } }
                    @for s in &detail.scorecard_access {
                        tr {
                            td { (s.name.as_str()) } td { (site_tag(s.owner_code.as_str(), "")) } td { (words(&s.level)) }
                            @if ctx.manages_users {
                                td.actions {
                                    form.inline method="post" action="/act/RevokeScorecardAccess" {
                                        (form_fields(&session, &back))
                                        input type="hidden" name="site_id" value=(site);
                                        input type="hidden" name="user_id" value=(u.user_id.to_string());
                                        input type="hidden" name="scorecard_id" value=(s.scorecard_id.to_string());
                                        input type="hidden" name="done" value=(format!("Removed {} from {}.", s.name.as_str(), u.username.as_str()));
                                        button.danger type="submit" aria-label=(format!("Remove {}", s.name.as_str())) { "Remove" }
                                    }
                                }
                            }
                        }
                    }
                }
            } }
            @if ctx.manages_users {
                h3 { "Grant a level" }
                div.table-wrap { table data-testid="grantable" {
                    caption { "Our scorecards, and partners' scorecards shared with us (at most browser, R-SHARE-5)" }
                    thead { tr { th scope="col" { "Scorecard" } th scope="col" { "Owner" } th scope="col" { "Level" } } }
                    tbody {
                        @if grantable.is_empty() { tr { td colspan="3" .empty { "No scorecard to grant." } } }
                        @for (id, name, owner, code) in &grantable {
                            tr {
                                td { (name) }
                                td { (site_tag(code, "")) }
                                td {
                                    form.inline method="post" action="/act/GrantScorecardAccess" {
                                        (form_fields(&session, &back))
                                        input type="hidden" name="site_id" value=(site);
                                        input type="hidden" name="user_id" value=(u.user_id.to_string());
                                        input type="hidden" name="scorecard_id" value=(id.to_string());
                                        @if let Some(owner) = owner { input type="hidden" name="owner_site" value=(owner.to_string()); }
                                        input type="hidden" name="done" value=(format!("Granted {} to {}.", name, u.username.as_str()));
                                        @let select_id = format!("level-{id}");
                                        label.visually-hidden for=(select_id) { "Level on " (name) }
                                        select id=(select_id) name="level" {
                                            @for level in AccessLevel::ALL { option value=(wire(&level)) { (words(&level)) } }
                                        }
                                        " "
                                        button type="submit" aria-label=(format!("Grant {name}")) { "Grant" }
                                    }
                                }
                            }
                        }
                    }
                } }
            }
        }
    };
    layout::page(
        Frame {
            session: &session,
            nav: Nav::Users,
            site: Some(ctx.site),
            position,
            flash,
        },
        &format!("User {}", u.username.as_str()),
        body,
    )
}

/// The scorecards a user of the site can be granted a level on: the
/// site's own, and its partners' shared with it (with their owner).
async fn grantable(
    state: &AppState,
    session: &Session,
    ctx: &Context,
) -> Result<Vec<(ScorecardId, String, Option<SiteId>, String)>, ApiError> {
    let s = || State(state.clone());
    let p = || session.principal.clone();
    let (Json(own), Json(theirs)) = tokio::try_join!(
        contents::scorecards(
            s(),
            p(),
            Ok(Path(ctx.site)),
            Ok(Query(ScorecardsParams {
                limit: Some(1000),
                after: None,
                min_position: ctx.at,
            })),
        ),
        contents::shared_with(
            s(),
            p(),
            Ok(Path(ctx.site)),
            Ok(Query(SharedWithParams {
                limit: Some(1000),
                after: None,
                min_position: ctx.at,
            })),
        ),
    )?;
    let code = session
        .home
        .as_ref()
        .filter(|h| h.0 == ctx.site)
        .map(|h| h.1.clone())
        .or_else(|| {
            state
                .access()
                .read()
                .site_code_and_name_of(ctx.site)
                .map(|(c, _)| c.as_str().to_owned())
        })
        .unwrap_or_default();
    let mut all: Vec<_> = own
        .items
        .into_iter()
        .map(|s| {
            (
                s.scorecard_id,
                s.name.as_str().to_owned(),
                None,
                code.clone(),
            )
        })
        .collect();
    all.extend(theirs.items.into_iter().map(|i| {
        (
            i.scorecard_id,
            i.name.as_str().to_owned(),
            Some(i.partner.site_id),
            i.partner.code.as_str().to_owned(),
        )
    }));
    Ok(all)
}

/// A user page's parameters.
#[derive(Debug, Default, Deserialize)]
pub struct DetailQuery {
    site: Option<SiteId>,
    at: Option<u64>,
}
