//! The bound on every request: a request that takes longer than
//! [`GatewayOptions::request_timeout`](crate::GatewayOptions) is answered
//! 503 `timed_out` (with `Retry-After`), so that a database that stopped
//! answering without closing its connections cannot hold callers. A command
//! cut off this way may still commit: its `Idempotency-Key` tells, on a
//! retry, whether it did.

use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;
use crate::state::AppState;

/// Middleware: answers 503 `timed_out` when the handler takes too long.
pub async fn limit(State(state): State<AppState>, request: Request, next: Next) -> Response {
    let bound = state.options().request_timeout;
    match tokio::time::timeout(bound, next.run(request)).await {
        Ok(response) => response,
        Err(_) => ApiError::TimedOut {
            after_ms: bound.as_millis() as u64,
        }
        .into_response(),
    }
}
