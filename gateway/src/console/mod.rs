//! The console: the seed products' pages for site admins, partners and
//! auditors, served by `shareledger serve` itself at `/` (the API stays
//! under `/v1`).
//!
//! Pages are rendered on the server (maud templates compiled into the
//! binary, one stylesheet, one small script and its shared worker beside
//! them): nothing is built, fetched or installed to run it. Every page
//! asks the API's own handlers, with the signed-in person's principal,
//! and every form goes through `POST /act/{Command}` to the API's command
//! handler: the console adds no second path to the log and no second set
//! of rules.
//!
//! * `session`: sign-in with a token, session tokens in an HttpOnly
//!   cookie, CSRF, sign-out;
//! * `layout`: the page shell, navigation, messages, refusals;
//! * `context`: a page's site and the person's rights there;
//! * `act`: forms to commands;
//! * `partners`: Partner Connect and Edit Scorecards;
//! * `users`: the users table, a user's page, adding and importing;
//! * `scorecards`: a site's scorecards and what is shared;
//! * `access`: the access explorer (what a user sees, who sees an item,
//!   why);
//! * `audit`: the sharing timeline, as-of answers, diffs, the integrity
//!   check;
//! * `settings`: the directory listing, two-factor sign-in,
//!   self-registration and its link, child sites;
//! * `register`: the Partner Portal's self-registration page, for people
//!   with no account yet;
//! * `live`: pages learn that the log moved (the changes feed's Server-Sent
//!   Events, one stream for a session's tabs).

mod access;
mod act;
mod audit;
mod context;
mod layout;
mod live;
mod partners;
mod register;
mod scorecards;
mod session;
mod settings;
mod users;

use axum::http::header;
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::{get, post};
use axum::Router;

use crate::auth::Principal;
use crate::state::AppState;
use session::Session;
pub use session::SESSION_COOKIE;

/// The console's routes.
pub fn routes() -> Router<AppState> {
    Router::new()
        .route("/", get(home))
        .route(
            "/sign-in",
            get(session::sign_in_page).post(session::sign_in),
        )
        .route("/sign-out", post(session::sign_out))
        .route("/act/{command}", post(act::act))
        .route("/partners", get(partners::page))
        .route("/partners/revoke", get(partners::confirm_revoke))
        .route(
            "/partners/request",
            get(partners::review_requests).post(partners::request_many),
        )
        .route("/users", get(users::page))
        .route("/users/add-existing", post(users::add_existing))
        .route("/users/{user_id}", get(users::detail))
        .route("/scorecards", get(scorecards::page))
        .route("/access", get(access::page))
        .route("/audit", get(audit::page))
        .route("/settings", get(settings::page))
        .route("/settings/link", post(settings::publish_link))
        .route("/settings/link/withdraw", post(settings::withdraw_link))
        .route("/register", get(register::page).post(register::register))
        .route("/live", get(live::stream))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
        .route("/assets/live-worker.js", get(live_worker))
}

/// `GET /`: each person's first page.
async fn home(session: Session) -> Redirect {
    Redirect::to(match session.principal {
        Principal::Auditor { .. } => "/audit",
        Principal::Operator { .. } => "/partners",
        Principal::User { .. } => "/access",
    })
}

/// Whether a request is a browser's for a console page (outside `/v1`,
/// accepting HTML): refused before any handler, it is answered with a
/// page rather than the API's problem document.
pub fn wants_page(uri: &axum::http::Uri, headers: &axum::http::HeaderMap) -> bool {
    let accepts_html = headers
        .get(header::ACCEPT)
        .and_then(|a| a.to_str().ok())
        .is_some_and(|a| a.contains("text/html"));
    accepts_html && !uri.path().starts_with("/v1/")
}

/// The page for an address the console does not have.
pub fn no_page() -> Response {
    layout::refusal(
        axum::http::StatusCode::NOT_FOUND,
        "There is no such page in the console.",
    )
}

/// The page for a query string holding a NUL character.
pub fn nul_in_query() -> Response {
    layout::refusal(
        axum::http::StatusCode::BAD_REQUEST,
        "This page's address holds a NUL character (%00), which no address the console makes holds.",
    )
}

fn asset(content_type: &'static str, body: &'static str) -> Response {
    (
        [
            (header::CONTENT_TYPE, content_type),
            (header::CACHE_CONTROL, "no-cache"),
        ],
        body,
    )
        .into_response()
}

async fn css() -> Response {
    asset("text/css; charset=utf-8", layout::CSS)
}

async fn js() -> Response {
    asset("text/javascript; charset=utf-8", layout::JS)
}

async fn live_worker() -> Response {
    asset("text/javascript; charset=utf-8", layout::LIVE_WORKER)
}
