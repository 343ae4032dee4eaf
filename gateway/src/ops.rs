//! Operations: `/health` (the process answers), `/ready` (the database
//! answers and every background part follows the log), `/metrics`
//! (Prometheus), and `/v1/log/status` (the log's head, for auditors and
//! operators). `/ready` and `/metrics` read the parts' health from memory
//! and probe the database with a short bound, so they answer promptly
//! while the database is away.

use axum::extract::State;
use axum::http::{header, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Serialize;

use shareledger_events::store::supervise::{LeaseRole, PartState};

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

/// One background part's readiness.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct PartReadiness {
    /// `access_index`, `history_archive`, a SQL read model's name,
    /// `consequences` or `sealer`.
    pub name: String,
    pub state: PartState,
    /// The position of the last event it applied (sealed, for the sealer).
    pub position: u64,
    /// `head - position`.
    pub lag: u64,
    /// Following, in touch with the log, and within the allowed lag.
    pub ready: bool,
    /// How many times it ran again after a transient fault.
    pub restarts: u64,
    /// The fault that stopped its last run, if any.
    pub last_error: Option<String>,
    /// How long it has been in `state`.
    pub seconds_in_state: f64,
    /// For a part that runs in one process at a time (`consequences`,
    /// `sealer`, `relay`, `derived_feeds`): `holder` when this process runs
    /// it, `standby` when another does (its position is then the holder's
    /// checkpoint); absent for parts every process runs.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub lease: Option<LeaseRole>,
}

/// `/ready`'s answer.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Readiness {
    pub ready: bool,
    /// Whether the database answered within the probe's bound.
    pub database: bool,
    /// The log's head: as the database said, or as far as this process
    /// knows when it did not answer.
    pub head: u64,
    pub parts: Vec<PartReadiness>,
}

/// Every part's readiness against `head`, with the metrics refreshed.
fn parts(state: &AppState, head: u64) -> Vec<PartReadiness> {
    let max_silence = state.options().freshness.max_silence;
    let max_lag = state.options().ready_max_lag;
    state
        .parts()
        .iter()
        .map(|part| {
            let status = part.status();
            let following = status.is_following(max_silence);
            let lag = head.saturating_sub(status.position);
            state.metrics().set_part(
                part.name(),
                following,
                status.position,
                lag,
                status.restarts,
            );
            if let Some(role) = status.lease {
                state
                    .metrics()
                    .set_lease(part.name(), role == LeaseRole::Holder);
            }
            PartReadiness {
                name: part.name().to_owned(),
                state: status.state,
                position: status.position,
                lag,
                ready: following && lag <= max_lag,
                restarts: status.restarts,
                last_error: status.last_error,
                seconds_in_state: status.since.elapsed().as_secs_f64(),
                lease: status.lease,
            }
        })
        .collect()
}

/// The log's head from the database, if it answers within the probe's
/// bound; records whether it did.
async fn probe_head(state: &AppState) -> Option<u64> {
    let probe = tokio::time::timeout(
        state.options().ready_database_timeout,
        state.store().head_position(),
    )
    .await;
    let head = match probe {
        Ok(Ok(head)) => Some(head),
        _ => None,
    };
    state.metrics().set_database_up(head.is_some());
    head
}

/// `GET /ready`: anonymous; 200 when the database answers and every
/// background part follows the log within the allowed lag, else 503 with
/// the details. Answers within about the probe's bound (half a second by
/// default) whatever the database does: the parts' states are in memory.
#[utoipa::path(get, path = "/ready", tag = "operations", summary = "The database answers and every background part follows the log (anonymous probe).",
    responses((status = 200, description = "Ready.", body = Readiness), (status = 503, description = "Not ready; the body says why.", body = Readiness)))]
pub async fn ready(State(state): State<AppState>) -> Response {
    let probed = probe_head(&state).await;
    let database = probed.is_some();
    let head = probed.unwrap_or(0).max(state.store().known_head());
    let parts = parts(&state, head);
    let ready = database && parts.iter().all(|p| p.ready);
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
            parts,
        }),
    )
        .into_response()
}

/// `GET /metrics`: the Prometheus text format, for operator and auditor
/// tokens. Refreshes the parts' gauges (and probes the database, bounded).
#[utoipa::path(get, path = "/metrics", tag = "operations", summary = "Prometheus metrics (operator and auditor tokens).",
    responses((status = 200, description = "The text exposition format.", body = String, content_type = "text/plain")),
    security(("bearer" = [])))]
pub async fn metrics(State(state): State<AppState>, principal: Principal) -> Response {
    if matches!(principal, Principal::User { .. }) {
        return ApiError::Forbidden("metrics are for operators and auditors".into())
            .into_response();
    }
    let head = probe_head(&state)
        .await
        .unwrap_or(0)
        .max(state.store().known_head());
    parts(&state, head);
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
    /// The position of the index snapshot this process's access index
    /// started from (0: it replayed the whole log).
    pub access_started_from: u64,
    /// Where this process reads the log and the read models from.
    pub reads_from: ReadsFrom,
}

/// Where a process reads the log and the read models from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum ReadsFrom {
    /// The database it writes to.
    Primary,
    /// A streaming replica of it (`serve --replica-url`).
    Replica,
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
    let status = state.store().status().await.map_err(ApiError::backend)?;
    Ok(Json(LogStatusAnswer {
        head_position: status.head_position,
        streams: status.streams,
        last_recorded_at: status.last_recorded_at,
        access_position: state.access().position(),
        access_started_from: state.access().started_from(),
        reads_from: if state.options().read_replica.is_some() {
            ReadsFrom::Replica
        } else {
            ReadsFrom::Primary
        },
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
