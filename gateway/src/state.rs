//! What every handler shares: the command service, the live access index,
//! the history (with its in-memory archive of the log), the SQL read
//! models' runtime, the token verifier, the idempotency keys, metrics and
//! options.

use std::sync::Arc;
use std::time::Duration;

use shareledger_commands::Service;
use shareledger_events::store::PgEventStore;
use shareledger_projections::access::LiveAccess;
use shareledger_projections::history::History;
use shareledger_projections::runtime::ProjectionRuntime;
use sqlx::PgPool;

use crate::auth::Tokens;
use crate::idempotency::Idempotency;
use crate::metrics::Metrics;

/// Tunables of the HTTP edge.
#[derive(Debug, Clone, Copy)]
pub struct GatewayOptions {
    /// The largest request body accepted (413 beyond).
    pub body_limit: usize,
    /// How long a query with `min_position` waits for the read models.
    pub freshness_timeout: Duration,
    /// How far (in events) the read models may lag for `/ready` to say yes.
    pub ready_max_lag: u64,
    /// Keep the log in memory for the audit routes' as-of questions
    /// (`LiveArchive`: fast answers, about 0.5 KB of memory per event);
    /// without it they read the log from PostgreSQL.
    pub history_archive: bool,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            body_limit: 1 << 20,
            freshness_timeout: Duration::from_secs(5),
            ready_max_lag: 10_000,
            history_archive: true,
        }
    }
}

struct Inner {
    service: Service,
    access: LiveAccess,
    history: History,
    runtime: Arc<ProjectionRuntime>,
    tokens: Tokens,
    idempotency: Idempotency,
    metrics: Metrics,
    options: GatewayOptions,
}

/// The handlers' shared state (cheap to clone).
#[derive(Clone)]
pub struct AppState(Arc<Inner>);

impl AppState {
    pub fn new(
        service: Service,
        access: LiveAccess,
        history: History,
        runtime: Arc<ProjectionRuntime>,
        options: GatewayOptions,
    ) -> Self {
        let tokens = Tokens::new(service.store().pool().clone());
        let idempotency = Idempotency::new(service.store().pool().clone());
        Self(Arc::new(Inner {
            service,
            access,
            history,
            runtime,
            tokens,
            idempotency,
            metrics: Metrics::new(),
            options,
        }))
    }

    pub fn service(&self) -> &Service {
        &self.0.service
    }
    pub fn store(&self) -> &PgEventStore {
        self.0.service.store()
    }
    pub fn pool(&self) -> &PgPool {
        self.0.service.store().pool()
    }
    pub fn access(&self) -> &LiveAccess {
        &self.0.access
    }
    pub fn history(&self) -> &History {
        &self.0.history
    }
    pub fn runtime(&self) -> &ProjectionRuntime {
        &self.0.runtime
    }
    pub fn tokens(&self) -> &Tokens {
        &self.0.tokens
    }
    pub fn idempotency(&self) -> &Idempotency {
        &self.0.idempotency
    }
    pub fn metrics(&self) -> &Metrics {
        &self.0.metrics
    }
    pub fn options(&self) -> &GatewayOptions {
        &self.0.options
    }
}
