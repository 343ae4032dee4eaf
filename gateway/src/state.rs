//! What every handler shares: the command service, the live access index,
//! the history (with its in-memory archive of the log), the SQL read
//! models' runtime, the token verifier, the idempotency keys, metrics and
//! options.

use std::sync::Arc;
use std::time::Duration;

use shareledger_commands::Service;
use shareledger_events::store::supervise::{Freshness, PartHealth};
use shareledger_events::store::PgEventStore;
use shareledger_projections::access::LiveAccess;
use shareledger_projections::history::History;
use shareledger_projections::runtime::{ProjectionRuntime, ProjectionState};
use sqlx::PgPool;

use crate::auth::Tokens;
use crate::idempotency::Idempotency;
use crate::metrics::Metrics;

/// The name of the derived feeds' writer among the background parts.
pub const DERIVED_FEEDS: &str = "derived_feeds";

/// Tunables of the HTTP edge.
#[derive(Debug, Clone)]
pub struct GatewayOptions {
    /// The largest request body accepted (413 beyond).
    pub body_limit: usize,
    /// How long a query waits for the read model behind it to reach
    /// `min_position` (a consistency token) and the log's known head.
    pub freshness_timeout: Duration,
    /// How far behind the log's known head, and how long out of touch with
    /// the log, a read model may be and still answer (fail closed: beyond
    /// either, 503 `read_model_stale`).
    pub freshness: Freshness,
    /// The longest a request may take; beyond it, 503 `timed_out` (a
    /// database that stopped answering without closing its connections
    /// must not hold callers).
    pub request_timeout: Duration,
    /// How long `/ready` waits for the database to answer before saying it
    /// does not.
    pub ready_database_timeout: Duration,
    /// How far (in events) the read models may lag for `/ready` to say yes.
    pub ready_max_lag: u64,
    /// Keep the log in memory for the audit routes' as-of questions
    /// (`LiveArchive`: fast answers, about 0.5 KB of memory per event);
    /// without it they read the log from PostgreSQL.
    pub history_archive: bool,
    /// Self-registrations one address may send per minute through a
    /// published link (seed 003), and all addresses together.
    pub registrations_per_minute: u32,
    pub registrations_per_minute_total: u32,
    /// Relay the log to NATS JetStream in this process too (the part
    /// `relay` in `/ready` and `/metrics`).
    pub relay: Option<shareledger_projections::relay::RelayConfig>,
    /// Write the derived feeds (access changes, notifications) in this
    /// process (the part `derived_feeds`; `/v1/access-changes` reads
    /// them). Among several processes on one log, the one holding the
    /// part's lease writes them; the others follow its checkpoint.
    pub derived_feeds: bool,
    /// Events a Server-Sent Events client of the changes feed may fall
    /// behind the log before it is dropped (`event: dropped`).
    pub feed_buffer: usize,
    /// How the parts that run in one process at a time (the consequence
    /// worker, the sealer, the relay, the derived feeds) take, keep and
    /// hand over their leases.
    pub leases: shareledger_events::store::lease::LeaseOptions,
    /// Write snapshots of the access index for new processes to start from
    /// (in the one process holding the `index_snapshot` lease); `None`:
    /// this process writes none (it still starts from one).
    pub index_snapshots: Option<shareledger_projections::access::snapshot::SnapshotOptions>,
    /// Read the log and the read models from this streaming replica of the
    /// database (commands, tokens and idempotency keys still go to the
    /// primary). Such a process takes no leases: it stands by for every
    /// leased part, so at least one process on the primary must run them.
    pub read_replica: Option<PgPool>,
}

impl Default for GatewayOptions {
    fn default() -> Self {
        Self {
            body_limit: 1 << 20,
            freshness_timeout: Duration::from_secs(2),
            freshness: Freshness::default(),
            request_timeout: Duration::from_secs(10),
            ready_database_timeout: Duration::from_millis(500),
            ready_max_lag: 10_000,
            history_archive: true,
            registrations_per_minute: 5,
            registrations_per_minute_total: 60,
            relay: None,
            derived_feeds: true,
            feed_buffer: crate::live_feed::CAPACITY,
            leases: Default::default(),
            index_snapshots: Some(Default::default()),
            read_replica: None,
        }
    }
}

struct Inner {
    service: Service,
    access: LiveAccess,
    history: History,
    runtime: Arc<ProjectionRuntime>,
    background: Vec<PartHealth>,
    derived: Option<PartHealth>,
    live_feed: crate::live_feed::LiveFeed,
    /// Set when the service stops: long-lived answers (event streams) end.
    closing: tokio::sync::watch::Sender<bool>,
    tokens: Tokens,
    idempotency: Idempotency,
    metrics: Metrics,
    registrations: crate::self_registration::Limits,
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
        background: Vec<PartHealth>,
        options: GatewayOptions,
    ) -> Self {
        let derived = background
            .iter()
            .find(|part| part.name() == DERIVED_FEEDS)
            .cloned();
        let tokens = Tokens::new(service.store().pool().clone());
        let idempotency = Idempotency::new(service.store().pool().clone());
        Self(Arc::new(Inner {
            service,
            access,
            history,
            runtime,
            background,
            derived,
            live_feed: crate::live_feed::LiveFeed::new(options.feed_buffer),
            closing: tokio::sync::watch::channel(false).0,
            tokens,
            idempotency,
            metrics: Metrics::new(),
            registrations: crate::self_registration::Limits::new(&options),
            options,
        }))
    }

    /// The derived feeds' writer's health (its position is the feeds'
    /// checkpoint), when this process writes them.
    pub fn derived(&self) -> Option<&PartHealth> {
        self.0.derived.as_ref()
    }

    /// The broadcast of the log's new events to the feed's SSE clients.
    pub fn live_feed(&self) -> &crate::live_feed::LiveFeed {
        &self.0.live_feed
    }

    /// Ends every long-lived answer (event streams): the service stops.
    pub fn close_streams(&self) {
        self.0.closing.send_replace(true);
    }

    /// Changes to true when the service stops.
    pub fn closing(&self) -> tokio::sync::watch::Receiver<bool> {
        self.0.closing.subscribe()
    }

    pub fn service(&self) -> &Service {
        &self.0.service
    }
    pub fn store(&self) -> &PgEventStore {
        self.0.service.store()
    }
    /// The primary's pool: tokens, idempotency keys, anything written.
    pub fn pool(&self) -> &PgPool {
        self.0.service.store().pool()
    }
    /// Where the SQL read models are read from: the primary, or the
    /// streaming replica the process was told to read from
    /// ([`GatewayOptions::read_replica`]).
    pub fn read_pool(&self) -> &PgPool {
        self.0.runtime.reads()
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
    /// The health of every background part answers depend on or the log
    /// needs: the access index, the history archive (when kept), the SQL
    /// read models, the consequence worker and the sealer.
    pub fn parts(&self) -> Vec<PartHealth> {
        let mut parts = vec![self.0.access.health().clone()];
        parts.extend(
            self.0
                .runtime
                .parts()
                .into_iter()
                .filter(|(_, state)| *state != ProjectionState::Superseded)
                .map(|(health, _)| health),
        );
        parts.extend(self.0.background.iter().cloned());
        parts
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
    /// The self-registration route's rate limits.
    pub fn registrations(&self) -> &crate::self_registration::Limits {
        &self.0.registrations
    }
}
