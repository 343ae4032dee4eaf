//! The HTTP API, the only crate that speaks HTTP.
//!
//! [`app`] builds the whole router from an [`AppState`] (tested without a
//! socket as well as through a real server); [`server::Server`] starts
//! everything the API needs (the access index, the SQL read models, the
//! consequence worker) and serves it until shut down.
//!
//! * `commands`: `POST /v1/commands/{Name}` for every command;
//! * `queries`: `/v1/access/*`, `/v1/sites/{id}/*`;
//! * `contents`: the lists a UI needs of a site's content
//!   (`/v1/sites/{id}/scorecards`, `objects`, `relationships`,
//!   `shared-with`, `children`);
//! * `partners`: the partner directory (`/v1/directory`) and several
//!   connection requests at once (`/v1/sites/{id}/connection-requests`);
//! * `self_registration`: a group's published link and the anonymous
//!   registration through it (`/v1/self-registration`);
//! * `audit`: `/v1/audit/*`, Q-1 to Q-4 as of the past, and diffs;
//! * `changes`: `/v1/changes`, the log's events each caller may see, a page
//!   at a time (long poll, or Server-Sent Events); `access_changes`:
//!   `/v1/access-changes`, who gained, lost or changed access to what;
//! * `ops`: `/health`, `/ready`, `/metrics`, `/v1/log/status`, `/v1/whoami`;
//! * `openapi`: the document at `/v1/openapi.json`, generated from the code;
//! * `auth`: bearer tokens and who a request acts as;
//! * `tokens`: `/v1/tokens`, tokens issued, listed and revoked over HTTP;
//! * `idempotency`: commands' idempotency keys, one run per key across
//!   processes;
//! * `error`: one error type, one problem+json rendering; `names`: ids in
//!   problem details replaced by codes, usernames and names;
//! * `console`: the pages for people at `/` (sign-in, Partner Connect,
//!   users, scorecards, the access explorer, audit), built on the handlers
//!   above;
//! * `timeout`: the bound on every request;
//! * `request_id`: every request's id (`x-request-id`), in its trace span
//!   and in every problem.
//!
//! **API boundary:** [`app`], [`AppState`], [`GatewayOptions`],
//! [`server::Server`], [`auth`]'s token functions, [`openapi::document`].

pub mod access_changes;
pub mod audit;
pub mod auth;
pub mod changes;
pub mod changes_stream;
pub mod commands;
pub mod console;
pub mod contents;
pub mod error;
pub mod idempotency;
pub mod live_feed;
pub mod metrics;
pub mod names;
pub mod openapi;
pub mod ops;
pub mod partners;
pub mod queries;
pub mod request_id;
pub mod self_registration;
pub mod server;
pub mod state;
pub mod timeout;
pub mod tokens;

use axum::extract::DefaultBodyLimit;
use axum::http::{HeaderMap, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{delete, get, post};
use axum::Router;
use tower_http::catch_panic::CatchPanicLayer;
use tower_http::trace::{DefaultOnResponse, TraceLayer};
use tracing::Level;

pub use error::ApiError;
pub use state::{AppState, GatewayOptions};

/// The whole API.
pub fn app(state: AppState) -> Router {
    let limit = state.options().body_limit;
    let app = Router::new()
        .route("/health", get(ops::health))
        .route("/ready", get(ops::ready))
        .route("/metrics", get(ops::metrics))
        .route("/v1/openapi.json", get(openapi::serve))
        .route("/v1/whoami", get(ops::whoami))
        .route("/v1/tokens", get(tokens::list).post(tokens::issue))
        .route("/v1/tokens/{token_id}", delete(tokens::revoke))
        .route("/v1/log/status", get(ops::log_status))
        .route("/v1/changes", get(changes::changes))
        .route("/v1/access-changes", get(access_changes::access_changes))
        .route("/v1/commands/{name}", post(commands::handle))
        .route("/v1/access/check", get(queries::check))
        .route("/v1/access/lookup", get(queries::lookup))
        .route("/v1/access/viewers", get(queries::viewers))
        .route("/v1/access/explain", get(queries::explain))
        .route("/v1/sites/{site_id}", get(queries::site))
        .route("/v1/sites/{site_id}/connections", get(queries::connections))
        .route(
            "/v1/sites/{site_id}/pending-requests",
            get(queries::pending_requests),
        )
        .route(
            "/v1/sites/{site_id}/shared-scorecards",
            get(queries::shared_scorecards),
        )
        .route("/v1/sites/{site_id}/users", get(queries::users))
        .route("/v1/sites/{site_id}/users/{user_id}", get(queries::user))
        .route("/v1/sites/{site_id}/scorecards", get(contents::scorecards))
        .route("/v1/sites/{site_id}/objects", get(contents::objects))
        .route(
            "/v1/sites/{site_id}/relationships",
            get(contents::relationships),
        )
        .route(
            "/v1/sites/{site_id}/shared-with",
            get(contents::shared_with),
        )
        .route("/v1/sites/{site_id}/children", get(contents::children))
        .route("/v1/directory", get(partners::directory))
        .route("/v1/self-registration", post(self_registration::register))
        .route(
            "/v1/sites/{site_id}/self-registration-link",
            post(self_registration::publish).delete(self_registration::withdraw),
        )
        .route(
            "/v1/sites/{site_id}/connection-requests",
            post(partners::request_connections),
        )
        .route("/v1/audit/as-of/check", get(audit::check))
        .route("/v1/audit/as-of/lookup", get(audit::lookup))
        .route("/v1/audit/as-of/viewers", get(audit::viewers))
        .route("/v1/audit/as-of/explain", get(audit::explain))
        .route("/v1/audit/diff", get(audit::diff))
        .route(
            "/v1/audit/timeline/sites/{site_id}",
            get(audit::site_timeline),
        )
        .route("/v1/audit/timeline/links", get(audit::link_timeline))
        .route(
            "/v1/audit/timeline/scorecards/{scorecard_id}",
            get(audit::scorecard_timeline),
        )
        .route("/v1/audit/verify", get(audit::verify))
        .merge(console::routes())
        .fallback(no_route)
        .method_not_allowed_fallback(|| async { ApiError::MethodNotAllowed })
        .layer(DefaultBodyLimit::max(limit))
        .layer(axum::middleware::from_fn(queries::refuse_nul_in_query))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            timeout::limit,
        ))
        .layer(axum::middleware::from_fn_with_state(
            state.clone(),
            metrics::track,
        ))
        .layer(
            TraceLayer::new_for_http()
                .make_span_with(request_id::make_span)
                .on_response(DefaultOnResponse::new().level(Level::INFO)),
        )
        .layer(CatchPanicLayer::custom(|_| {
            axum::response::IntoResponse::into_response(ApiError::Internal(
                "a handler panicked".into(),
            ))
        }))
        .with_state(state);
    request_id::around(app)
}

/// An address nothing serves: the API's problem (404 `no_route`), or, for
/// a browser asking for a console page, the console's page saying so.
async fn no_route(uri: Uri, headers: HeaderMap) -> Response {
    if console::wants_page(&uri, &headers) {
        console::no_page()
    } else {
        ApiError::NoRoute(uri.path().to_owned()).into_response()
    }
}
