//! The console: the seed products' pages for site admins, partners and
//! auditors, served by `shareledger serve` itself at `/` (the API stays
//! under `/v1`).
//!
//! Pages are rendered on the server (maud templates compiled into the
//! binary, one stylesheet and one small script beside them): nothing is
//! built, fetched or installed to run it. Every page asks the API's own
//! handlers, with the signed-in person's principal, and every form goes
//! through `POST /act/{Command}` to the API's command handler: the console
//! adds no second path to the log and no second set of rules.
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
//! * `live`: pages learn that the log moved (the changes feed's Server-Sent
//!   Events).

mod access;
mod act;
mod audit;
mod context;
mod layout;
mod live;
mod partners;
mod scorecards;
mod session;
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
        .route("/users", get(users::page))
        .route("/users/{user_id}", get(users::detail))
        .route("/scorecards", get(scorecards::page))
        .route("/access", get(access::page))
        .route("/audit", get(audit::page))
        .route("/live", get(live::stream))
        .route("/assets/console.css", get(css))
        .route("/assets/console.js", get(js))
}

/// `GET /`: each person's first page.
async fn home(session: Session) -> Redirect {
    Redirect::to(match session.principal {
        Principal::Auditor { .. } => "/audit",
        Principal::Operator { .. } => "/partners",
        Principal::User { .. } => "/access",
    })
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
