//! Operations: `/health` (the process answers), `/ready` (the database
//! answers and the read models are caught up), `/metrics` (Prometheus), and
//! `/v1/log/status` (the log's head, for auditors and operators).

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use crate::auth::Principal;
use crate::error::ApiError;
use crate::state::AppState;

/// `/health`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Health {
    pub status: &'static str,
}

/// `GET /health`: anonymous; the process is up.
#[utoipa::path(get, path = "/health", tag = "operations", summary = "The process answers (anonymous).",
    responses((status = 200, description = "Up.", body = Health)))]
pub async fn health() -> Json<Health> {
    Json(Health { status: "ok" })
}

/// One read model's readiness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct ReadModelReadiness {
    pub name: String,
    pub position: u64,
    pub lag: u64,
    pub ready: bool,
}

/// `/ready`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    pub database: bool,
    pub head: u64,
    pub read_models: Vec<ReadModelReadiness>,
}

/// `GET /ready`: anonymous; 200 when the database answers and every read
/// model is within the allowed lag, else 503 with the details.
#[utoipa::path(get, path = "/ready", tag = "operations", summary = "The database answers and the read models are caught up (anonymous probe).",
    responses((status = 200, description = "Ready.", body = Readiness), (status = 503, description = "Not ready; the body says why.", body = Readiness)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let head = state.store().head_position().await;
    let database = head.is_ok();
    let head = head.unwrap_or(0);
    let max_lag = state.options().ready_max_lag;
    let mut read_models = Vec::new();
    let access = state.access().position();
    let access_lag = head.saturating_sub(access);
    state.metrics().set_lag("access_index", access_lag);
    read_models.push(ReadModelReadiness {
        name: "access_index".into(),
        position: access,
        lag: access_lag,
        ready: access_lag <= max_lag,
    });
    match state.runtime().status().await {
        Ok(statuses) => {
            for s in statuses {
                state.metrics().set_lag(&s.name, s.lag);
                let running = matches!(
                    s.state,
                    shareledger_projections::runtime::ProjectionState::Running
                );
                read_models.push(ReadModelReadiness {
                    ready: running && s.lag <= max_lag,
                    name: s.name,
                    position: s.position,
                    lag: s.lag,
                });
            }
        }
        Err(e) => {
            tracing::warn!(error = %e, "projection status unavailable");
            read_models.push(ReadModelReadiness {
                name: "projections".into(),
                position: 0,
                lag: head,
                ready: false,
            });
        }
    }
    let ready = database && read_models.iter().all(|r| r.ready);
    let status = if ready {
        StatusCode::OK
    } else {
        StatusCode::SERVICE_UNAVAILABLE
    };
    (
        status,
        Json(Readiness {
            ready,
            database,
            head,
            read_models,
        }),
    )
        .into_response()
}

/// `GET /metrics`: the Prometheus text format, for operator and auditor
/// tokens. Refreshes the lag gauges.
#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics (operator and auditor tokens).",
    responses((status = 200, description = "The text exposition format.", body = String, content_type = "text/plain")),
    security(("bearer" = [])))]
pub async fn metrics(State(state): State<AppState>, principal: Principal) -> Response {
    if matches!(principal, Principal::User { .. }) {
        return ApiError::Forbidden("metrics are for operators and auditors".into())
            .into_response();
    }
    let head = state.store().head_position().await.unwrap_or(0);
    state.metrics().set_lag(
        "access_index",
        head.saturating_sub(state.access().position()),
    );
    if let Ok(statuses) = state.runtime().status().await {
        for s in statuses {
            state.metrics().set_lag(&s.name, s.lag);
        }
    }
    (
        [(header::CONTENT_TYPE, "text/plain; version=0.0.4")],
        state.metrics().render(),
    )
        .into_response()
}

/// The log's head.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct LogStatusAnswer {
    pub head_position: u64,
    pub streams: u64,
    pub last_recorded_at: Option<chrono::DateTime<chrono::Utc>>,
    /// Where the access index is.
    pub access_position: u64,
}

/// `GET /v1/log/status`: for auditors and operators.
#[utoipa::path(get, path = "/v1/log/status", tag = "audit", summary = "The log's head (auditors and operators).",
    responses((status = 200, description = "The head.", body = LogStatusAnswer)),
    security(("bearer" = [])))]
pub async fn log_status(
    State(state): State<AppState>,
    principal: Principal,
) -> Result<Json<LogStatusAnswer>, ApiError> {
    if matches!(principal, Principal::User { .. }) {
        return Err(ApiError::Forbidden(
            "the log's status is for auditors and operators".into(),
        ));
    }
    let status = state
        .store()
        .status()
        .await
        .map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok(Json(LogStatusAnswer {
        head_position: status.head_position,
        streams: status.streams,
        last_recorded_at: status.last_recorded_at,
        access_position: state.access().position(),
    }))
}

/// `GET /v1/whoami`: what the token speaks for.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct WhoAmI {
    pub kind: &'static str,
    pub site_id: Option<uuid::Uuid>,
    pub user_id: Option<uuid::Uuid>,
    pub token_id: uuid::Uuid,
}

/// `GET /v1/whoami`.
#[utoipa::path(get, path = "/v1/whoami", tag = "operations", summary = "What the token speaks for.",
    responses((status = 200, description = "The caller.", body = WhoAmI)),
    security(("bearer" = [])))]
pub async fn whoami(principal: Principal) -> Json<WhoAmI> {
    Json(match principal {
        Principal::User { site, user, token } => WhoAmI {
            kind: "user",
            site_id: Some(site.0),
            user_id: Some(user.0),
            token_id: token,
        },
        Principal::Auditor { site, token } => WhoAmI {
            kind: "auditor",
            site_id: site.map(|s| s.0),
            user_id: None,
            token_id: token,
        },
        Principal::Operator { token, .. } => WhoAmI {
            kind: "operator",
            site_id: None,
            user_id: None,
            token_id: token,
        },
    })
}
