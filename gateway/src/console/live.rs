//! `GET /live`: tells a page that the log moved.
//!
//! It is the changes feed's own Server-Sent Events stream
//! (`crate::changes_stream`), for the session's principal and scope: a
//! page hears of the events its reader may see, and of nothing else. Those
//! the feed refuses (users without Instance Admin or Manage Users) get
//! `204 No Content`, which tells a browser's `EventSource` to stop; their
//! pages show what they read when loaded.

use axum::extract::{Query, State};
use axum::http::{header, HeaderMap, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;

use super::session::Session;
use crate::changes::{self, Filter};
use crate::changes_stream;
use crate::state::AppState;

#[derive(Debug, Deserialize)]
pub struct LiveQuery {
    /// The position the page was read at.
    after: u64,
}

/// `GET /live?after=N`.
pub async fn stream(
    State(state): State<AppState>,
    session: Session,
    headers: HeaderMap,
    q: Result<Query<LiveQuery>, axum::extract::rejection::QueryRejection>,
) -> Response {
    let Ok(Query(q)) = q else {
        return StatusCode::BAD_REQUEST.into_response();
    };
    let Ok(scope) = changes::scope(&state, &session.principal).await else {
        return StatusCode::NO_CONTENT.into_response();
    };
    let after = match changes_stream::start_after(&headers, q.after) {
        Ok(after) => after,
        Err(e) => return e.into_response(),
    };
    // The stream asks again every few seconds whether its token still
    // allows it: the session's token.
    let mut asked = HeaderMap::new();
    if let Ok(v) = HeaderValue::from_str(&format!("Bearer {}", session.bearer())) {
        asked.insert(header::AUTHORIZATION, v);
    }
    let filter = Filter {
        scope,
        category: None,
        event_type: None,
    };
    changes_stream::stream(state, asked, filter, after)
}
