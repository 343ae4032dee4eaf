//! Request ids: every request has one, in `x-request-id`, so that a caller
//! reporting a problem and the service's logs name the same request.
//!
//! * A caller's id is kept when it is usable: one header of 1 to
//!   [`MAX_LEN`] visible ASCII characters (no spaces). A missing id, or one
//!   that is not usable, is replaced by a new UUID.
//! * The answer carries the id back in `x-request-id`, whatever the answer
//!   (tower-http's `SetRequestIdLayer` and `PropagateRequestIdLayer`).
//! * The request's trace span records it as `request_id` ([`make_span`]),
//!   so every log line of the request has it.
//! * Every `application/problem+json` answer holds it as `request_id`:
//!   [`scope`] makes it the request's task-local value while the request is
//!   handled, and [`ApiError`](crate::ApiError)'s rendering reads it with
//!   [`current`].
//!
//! [`around`] puts these layers around the whole router, outside every
//! other layer, so that even a panic's 500 and a timeout's 503 have the id.

use axum::extract::Request;
use axum::http::{HeaderName, HeaderValue};
use axum::middleware::{self, Next};
use axum::response::Response;
use axum::Router;
use tower_http::request_id::{MakeRequestUuid, PropagateRequestIdLayer, SetRequestIdLayer};

/// The header that carries the id, both ways.
pub const HEADER: HeaderName = HeaderName::from_static("x-request-id");

/// The longest caller's id kept.
pub const MAX_LEN: usize = 128;

tokio::task_local! {
    static CURRENT: String;
}

/// The id of the request being handled (`None` outside a request).
pub fn current() -> Option<String> {
    CURRENT.try_with(|id| id.clone()).ok()
}

/// The router with request ids: a caller's usable id kept or a new one
/// made, returned on the answer, and in scope while the request runs.
pub fn around(router: Router) -> Router {
    // The last layer added is the outermost: first drop an unusable id,
    // then make one if none is left, return it on the way out, and hold it
    // in scope for everything inside.
    router
        .layer(middleware::from_fn(scope))
        .layer(PropagateRequestIdLayer::new(HEADER))
        .layer(SetRequestIdLayer::new(HEADER, MakeRequestUuid))
        .layer(middleware::from_fn(drop_unusable))
}

/// The trace span of a request: tower-http's default fields (method, URI,
/// version) and the request id.
pub fn make_span<B>(request: &axum::http::Request<B>) -> tracing::Span {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("-");
    tracing::info_span!(
        "request",
        method = %request.method(),
        uri = %request.uri(),
        version = ?request.version(),
        request_id = %id,
    )
}

/// Whether a caller's id is kept as it is.
fn usable(value: &HeaderValue) -> bool {
    let bytes = value.as_bytes();
    (1..=MAX_LEN).contains(&bytes.len()) && bytes.iter().all(u8::is_ascii_graphic)
}

/// Middleware: removes the caller's ids unless there is exactly one and it
/// is usable (a new one is then made).
async fn drop_unusable(mut request: Request, next: Next) -> Response {
    let headers = request.headers_mut();
    let mut ids = headers.get_all(&HEADER).iter();
    let keep = match (ids.next(), ids.next()) {
        (None, _) => true,
        (Some(one), None) => usable(one),
        (Some(_), Some(_)) => false,
    };
    if !keep {
        headers.remove(&HEADER);
    }
    next.run(request).await
}

/// Middleware: the request's id is [`current`] while it is handled.
async fn scope(request: Request, next: Next) -> Response {
    let id = request
        .headers()
        .get(HEADER)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default()
        .to_owned();
    CURRENT.scope(id, next.run(request)).await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usable_ids_are_short_visible_ascii() {
        for id in [
            "a",
            "0f8fad5b-d9cb-469f-a165-70867728950e",
            &"x".repeat(MAX_LEN),
        ] {
            assert!(usable(&HeaderValue::from_str(id).unwrap()), "{id:?}");
        }
        for id in ["", "a b", "tab\there", &"x".repeat(MAX_LEN + 1)] {
            assert!(!usable(&HeaderValue::from_str(id).unwrap()), "{id:?}");
        }
        assert!(!usable(&HeaderValue::from_bytes(b"caf\xc3\xa9").unwrap()));
    }

    #[tokio::test]
    async fn current_is_the_scoped_id_and_none_outside() {
        assert_eq!(current(), None);
        let inside = CURRENT.scope("abc".to_owned(), async { current() }).await;
        assert_eq!(inside, Some("abc".to_owned()));
    }
}
