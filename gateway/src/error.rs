//! The HTTP edge's one error type, [`ApiError`], and the one place it
//! becomes a response: RFC 9457 `application/problem+json` with a stable
//! `code` (the table in [`ApiError::status_and_code`] and
//! `docs/http-api.md`).
//!
//! Domain and access errors keep their own codes (`seat_limit_reached`,
//! `unknown_target`, …); the gateway adds codes for what only HTTP can get
//! wrong (`malformed_json`, `unauthenticated`, …). Internal errors are
//! logged with their detail and answered with a generic `internal` problem:
//! nothing of the database or the code leaks.
//!
//! **Database faults are 503, never 500.** Whatever the route, an error
//! whose cause is the database being away (a refused or cut connection, a
//! pool that could not hand one out in time, a server shutting down, a
//! statement timeout: [`sqlx_is_transient`]) is answered 503
//! `database_unavailable` with `Retry-After`, found by walking the error's
//! source chain ([`database_fault`]). A read model that may be behind the
//! log is 503 `read_model_stale`.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use shareledger_commands::CommandError;
use shareledger_core::DomainError;
use shareledger_events::envelope::InvalidInput;
use shareledger_events::store::supervise::sqlx_is_transient;
use shareledger_events::store::LogError;
use shareledger_projections::access::AccessError;
use shareledger_projections::history::HistoryError;
use shareledger_projections::ProjectionError;

/// Why a request failed. Nothing was written when a command fails.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("this needs a bearer token (Authorization: Bearer sl_…)")]
    Unauthenticated,
    #[error("the bearer token is not one this service issued, or it was revoked")]
    BadToken,
    #[error("the bearer token expired")]
    TokenExpired,
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("the body is not valid JSON: {0}")]
    MalformedJson(String),
    #[error("the body does not fit this endpoint: {0}")]
    InvalidBody(String),
    #[error("the body must be application/json")]
    UnsupportedMediaType,
    #[error("the body is larger than {limit} bytes")]
    PayloadTooLarge { limit: usize },
    /// A string or member name of the body holds U+0000, which PostgreSQL
    /// cannot store: `path` is its JSON Pointer.
    #[error("the body's text at {path} holds a NUL character (\\u0000), which cannot be stored")]
    UnstorableText { path: String },
    #[error("bad query parameter: {0}")]
    InvalidQuery(String),
    #[error("bad path parameter: {0}")]
    InvalidPath(String),
    #[error("commands need an Idempotency-Key header holding a UUID")]
    MissingIdempotencyKey,
    #[error("the Idempotency-Key header must be a UUID")]
    BadIdempotencyKey,
    #[error("this Idempotency-Key was sent before with another body: a key names one request, so send a new key for a new request")]
    IdempotencyKeyReused,
    #[error("a request with this Idempotency-Key is still running: retry to get its answer once it has finished")]
    IdempotencyKeyInFlight,
    #[error("too many self-registrations from here just now: try again in {retry_after} s")]
    RateLimited { retry_after: u64 },
    #[error("no command is named {0:?} (see /v1/openapi.json)")]
    UnknownCommand(String),
    #[error("no route matches {0}")]
    NoRoute(String),
    #[error("method not allowed")]
    MethodNotAllowed,
    #[error(transparent)]
    Command(#[from] CommandError),
    #[error(transparent)]
    Access(#[from] AccessError),
    #[error(transparent)]
    History(#[from] HistoryError),
    #[error("the read models did not reach position {position} within {waited_ms} ms")]
    NotFreshEnough { position: u64, waited_ms: u64 },
    #[error("{what} is at position {reached} and the log at {head} or beyond; it is {state}: not answering from a possibly stale model")]
    Stale {
        what: String,
        reached: u64,
        head: u64,
        state: String,
    },
    #[error("{0}")]
    Unavailable(String),
    #[error("the request took longer than {after_ms} ms")]
    TimedOut { after_ms: u64 },
    /// A read model's failure (a database fault is 503, anything else 500).
    #[error(transparent)]
    ReadModel(ProjectionError),
    /// A database error outside the parts above (503 when the database is
    /// away, else 500).
    #[error("database: {0}")]
    Database(#[from] sqlx::Error),
    /// Another part's failure (503 when the database is away, else 500).
    #[error("{0}")]
    Backend(#[source] Box<dyn std::error::Error + Send + Sync>),
    /// Anything else: logged, never shown.
    #[error("internal error: {0}")]
    Internal(String),
}

impl From<ProjectionError> for ApiError {
    fn from(e: ProjectionError) -> Self {
        match e {
            ProjectionError::BadCursor(c) => ApiError::Access(AccessError::BadCursor(c)),
            ProjectionError::Timeout {
                position, waited, ..
            } => ApiError::NotFreshEnough {
                position,
                waited_ms: waited.as_millis() as u64,
            },
            ProjectionError::Stale {
                name,
                reached,
                head,
                state,
            } => ApiError::Stale {
                what: format!("read model {name}"),
                reached,
                head,
                state,
            },
            other => ApiError::ReadModel(other),
        }
    }
}

impl ApiError {
    /// Wraps another part's error, keeping it as the source (so that a
    /// database fault under it is still found).
    pub fn backend(e: impl std::error::Error + Send + Sync + 'static) -> Self {
        ApiError::Backend(Box::new(e))
    }
}

/// The database error at the root of `error`, if the database being away
/// is what caused it (see [`sqlx_is_transient`]; a closed pool, when the
/// service is stopping, too).
pub fn database_fault<'a>(error: &'a (dyn std::error::Error + 'static)) -> Option<&'a sqlx::Error> {
    let mut next = Some(error);
    while let Some(e) = next {
        if let Some(db) = e.downcast_ref::<sqlx::Error>() {
            if sqlx_is_transient(db) || matches!(db, sqlx::Error::PoolClosed) {
                return Some(db);
            }
        }
        next = e.source();
    }
    None
}

/// The status of a domain error, by its stable code.
fn domain_status(e: &DomainError) -> StatusCode {
    use DomainError::*;
    match e {
        // What the body alone shows to be invalid; a refusal that depends on
        // what is stored (another object's kind, the site's own code, the
        // sites' parents) is a conflict with the state, below.
        InvalidValue(_) | ImportRejected(_) => StatusCode::UNPROCESSABLE_ENTITY,
        UnknownActor { .. }
        | ActorInactive
        | NotPermitted { .. }
        | CrossSite { .. }
        | ConnectionsUnavailable
        | NotAnIssuer
        | AccessLevelTooLow { .. }
        | SharedContentReadOnly => StatusCode::FORBIDDEN,
        SiteNotFound(_)
        | UnknownSiteCode(_)
        | UserNotFound(_)
        | SelfRegistrationLinkInvalid
        | ScorecardNotFound(_)
        | ObjectNotFound(_)
        | RelationshipNotFound(_) => StatusCode::NOT_FOUND,
        SiteExists(_)
        | SiteCodeTaken(_)
        | UserExists(_)
        | UsernameTaken(_)
        | UsernameLooksTaken { .. }
        | UserInactive(_)
        | UserActive(_)
        | SeatLimitReached { .. }
        | SelfRegistrationNotConfigured
        | ScorecardExists(_)
        | ObjectExists(_)
        | AlreadyPlaced { .. }
        | NotPlaced { .. }
        | LinkNotActive { .. }
        | LinkPendingOrActive { .. }
        | NothingToApprove
        | NothingToCancel
        | AlreadyShared(_)
        | NotShared(_)
        | ObjectNotShared(_)
        | RelationshipExists
        | ParentCycle
        | OwnSiteCode
        | NotAContainer(_)
        | ContainerNotEmpty(_)
        | NotAMeasure(_) => StatusCode::CONFLICT,
    }
}

impl ApiError {
    /// The HTTP status and the stable code of this error.
    pub fn status_and_code(&self) -> (StatusCode, &'static str) {
        use ApiError::*;
        if database_fault(self).is_some() {
            return (StatusCode::SERVICE_UNAVAILABLE, "database_unavailable");
        }
        match self {
            Unauthenticated => (StatusCode::UNAUTHORIZED, "unauthenticated"),
            BadToken => (StatusCode::UNAUTHORIZED, "bad_token"),
            TokenExpired => (StatusCode::UNAUTHORIZED, "token_expired"),
            Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            MalformedJson(_) => (StatusCode::BAD_REQUEST, "malformed_json"),
            InvalidBody(_) => (StatusCode::UNPROCESSABLE_ENTITY, "invalid_body"),
            UnsupportedMediaType => (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type"),
            PayloadTooLarge { .. } => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            UnstorableText { .. } => (StatusCode::UNPROCESSABLE_ENTITY, "unstorable_text"),
            InvalidQuery(_) => (StatusCode::BAD_REQUEST, "invalid_query"),
            InvalidPath(_) => (StatusCode::BAD_REQUEST, "invalid_path"),
            MissingIdempotencyKey => (StatusCode::BAD_REQUEST, "missing_idempotency_key"),
            BadIdempotencyKey => (StatusCode::BAD_REQUEST, "bad_idempotency_key"),
            IdempotencyKeyReused => (StatusCode::UNPROCESSABLE_ENTITY, "idempotency_key_reused"),
            IdempotencyKeyInFlight => (StatusCode::CONFLICT, "idempotency_key_in_flight"),
            RateLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            UnknownCommand(_) => (StatusCode::NOT_FOUND, "unknown_command"),
            NoRoute(_) => (StatusCode::NOT_FOUND, "no_route"),
            MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            Command(CommandError::Domain(e)) => (domain_status(e), e.code()),
            Command(e @ CommandError::Contended { .. }) => (StatusCode::CONFLICT, e.code()),
            Command(CommandError::Log(LogError::Invalid(InvalidInput::EventTooLarge {
                ..
            }))) => (StatusCode::UNPROCESSABLE_ENTITY, "event_too_large"),
            Command(CommandError::Log(LogError::Invalid(InvalidInput::UnstorableText {
                ..
            }))) => (StatusCode::UNPROCESSABLE_ENTITY, "unstorable_text"),
            Command(CommandError::Decode(_) | CommandError::Log(_)) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
            Access(e) => {
                let status = match e {
                    AccessError::UnknownUser(_) | AccessError::UnknownTarget(_) => {
                        StatusCode::NOT_FOUND
                    }
                    // A cursor names a place in one list: one this service
                    // did not give out for it names no place there.
                    AccessError::BadCursor(_) => StatusCode::NOT_FOUND,
                    AccessError::NotFreshEnough { .. } | AccessError::Stale { .. } => {
                        StatusCode::SERVICE_UNAVAILABLE
                    }
                };
                (status, e.code())
            }
            History(HistoryError::Access(e)) => Access(e.clone()).status_and_code(),
            // A position the log has not reached yet: a conflict with its state.
            History(e @ HistoryError::Future { .. }) => (StatusCode::CONFLICT, e.code()),
            History(e @ HistoryError::Backwards { .. }) => (StatusCode::BAD_REQUEST, e.code()),
            History(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
            NotFreshEnough { .. } => (StatusCode::SERVICE_UNAVAILABLE, "not_fresh_enough"),
            Stale { .. } => (StatusCode::SERVICE_UNAVAILABLE, "read_model_stale"),
            Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            TimedOut { .. } => (StatusCode::SERVICE_UNAVAILABLE, "timed_out"),
            ReadModel(_) | Database(_) | Backend(_) | Internal(_) => {
                (StatusCode::INTERNAL_SERVER_ERROR, "internal")
            }
        }
    }
}

/// An RFC 9457 problem document, with ShareLedger's extensions.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Problem {
    /// `urn:shareledger:problem:<code>`.
    #[serde(rename = "type")]
    pub problem_type: String,
    pub title: String,
    pub status: u16,
    pub detail: String,
    /// The stable, machine-readable code.
    pub code: String,
    /// Per-row errors of a rejected CSV import (R-USER-8).
    #[serde(skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub errors: Option<serde_json::Value>,
    /// The request's id, as in its `x-request-id` header: quote it when
    /// reporting the problem.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub request_id: Option<String>,
}

impl ApiError {
    /// This error as a problem document (an internal error's detail is
    /// logged, never shown).
    pub fn problem(&self) -> Problem {
        let (status, code) = self.status_and_code();
        let detail = if status == StatusCode::INTERNAL_SERVER_ERROR {
            tracing::error!(error = %self, "internal error");
            "an internal error occurred; it has been logged".to_owned()
        } else if code == "database_unavailable" {
            tracing::warn!(error = %self, "database unavailable");
            "the database is not answering; try again shortly (a command sent again with \
             the same Idempotency-Key is applied at most once)"
                .to_owned()
        } else {
            self.to_string()
        };
        let errors = match self {
            ApiError::Command(CommandError::Domain(DomainError::ImportRejected(rows))) => {
                serde_json::to_value(rows).ok()
            }
            _ => None,
        };
        Problem {
            problem_type: format!("urn:shareledger:problem:{code}"),
            title: status.canonical_reason().unwrap_or("Error").to_owned(),
            status: status.as_u16(),
            detail,
            code: code.to_owned(),
            errors,
            request_id: crate::request_id::current(),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.into_response_speaking(|detail| detail)
    }
}

impl ApiError {
    /// The response, its detail rewritten by `speak` (ids into the names
    /// the domain uses for them: [`crate::names::speak`]).
    pub fn into_response_speaking(self, speak: impl FnOnce(String) -> String) -> Response {
        let (status, code) = self.status_and_code();
        let mut problem = self.problem();
        problem.detail = speak(problem.detail);
        let body = serde_json::to_vec(&problem).unwrap_or_default();
        let mut response = (status, body).into_response();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/problem+json"),
        );
        if status == StatusCode::UNAUTHORIZED {
            headers.insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Bearer realm=\"shareledger\""),
            );
        }
        if let ApiError::RateLimited { retry_after } = &self {
            headers.insert(
                header::RETRY_AFTER,
                HeaderValue::from(retry_after.max(&1).to_owned()),
            );
        } else if status == StatusCode::SERVICE_UNAVAILABLE || code == "idempotency_key_in_flight" {
            headers.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
        }
        response
    }
}
