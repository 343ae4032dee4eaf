//! Starting and stopping the service: migrate, start the consequence
//! worker and the integrity chain's sealer, load the access index (from the
//! newest index snapshot the chain vouches for, then the log after it),
//! start the SQL read models, then serve HTTP until asked to stop. Every
//! background part is supervised (`shareledger_events::store::supervise`):
//! it survives transient database faults, resuming from its checkpoint,
//! and its health is what `/ready`, `/metrics` and every answer's freshness
//! check read. The parts that must run once among several processes on
//! one database (the worker, the sealer, the relay, the derived feeds, the
//! read models' writers, the index snapshots) run under leases
//! (`shareledger_events::store::lease`): in the process holding the part's
//! lease, while the others stand by. A process told to read from a
//! streaming replica (`GatewayOptions::read_replica`) follows the log and
//! reads the read models there, sends commands to the primary, and only
//! stands by. Shutdown is graceful: the listener
//! closes, requests in flight finish, the read models stop after their
//! current batch (their checkpoints commit with their writes), then the
//! worker and the index stop, and the leases are given back.

use std::net::SocketAddr;
use std::sync::Arc;

use shareledger_commands::{ConsequenceWorker, Service};
use shareledger_events::store::lease::{lead, LeaseOptions, Leases, Watched};
use shareledger_events::store::supervise::PartHealth;
use shareledger_events::store::{PgEventStore, Sealer, SealerOptions};
use shareledger_projections::access::{snapshot, LiveAccess, LiveOptions};
use shareledger_projections::history::{History, LiveArchive};
use shareledger_projections::read_models;
use shareledger_projections::runtime::{ProjectionRuntime, RuntimeOptions};
use sqlx::PgPool;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::state::{AppState, GatewayOptions};

/// Why the service could not start or stopped badly.
#[derive(Debug, thiserror::Error)]
pub enum ServerError {
    #[error("migrating the database: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("starting the read models: {0}")]
    ReadModels(#[from] shareledger_projections::ProjectionError),
    #[error("listening on {addr}: {source}")]
    Listen {
        addr: SocketAddr,
        source: std::io::Error,
    },
    #[error("serving HTTP: {0}")]
    Serve(std::io::Error),
}

/// A running service.
pub struct Server {
    addr: SocketAddr,
    state: AppState,
    stop: watch::Sender<bool>,
    http: JoinHandle<std::io::Result<()>>,
    worker: JoinHandle<()>,
    sealer: JoinHandle<()>,
    relay: Option<JoinHandle<()>>,
    derived: Option<JoinHandle<()>>,
    snapshots: Option<JoinHandle<()>>,
    access_task: JoinHandle<Result<(), shareledger_projections::ProjectionError>>,
    archive: Option<(
        LiveArchive,
        JoinHandle<Result<(), shareledger_projections::ProjectionError>>,
    )>,
    runtime: Arc<ProjectionRuntime>,
}

impl Server {
    /// Migrates the database, starts every part, and listens on `addr`
    /// (port 0 picks a free port; see [`Server::addr`]).
    pub async fn start(
        pool: PgPool,
        addr: SocketAddr,
        options: GatewayOptions,
    ) -> Result<Self, ServerError> {
        PgEventStore::migrate(&pool).await?;
        let store = PgEventStore::new(pool);
        let service = Service::new(store.clone());
        let (stop, mut stopped) = watch::channel(false);
        // With a streaming replica, the index, the archive and the read
        // models read from it (and wait there for positions); commands and
        // the history's reads stay on the primary. Such a process stands
        // by for every leased part.
        let (reader, lease_options) = match &options.read_replica {
            Some(replica) => (
                store.reading_from(replica.clone()),
                LeaseOptions {
                    take: false,
                    ..options.leases
                },
            ),
            None => (store.clone(), options.leases),
        };
        let leases = Leases::new(store.pool(), lease_options);
        let leased = Leased {
            leases: leases.clone(),
            stop: stop.clone(),
        };
        let worker_health = PartHealth::new("consequences", 0);
        let worker = ConsequenceWorker::new(service.clone()).reporting_to(worker_health.clone());
        let watched = worker.clone();
        let worker = leased.spawn(
            worker_health.clone(),
            move || {
                let worker = worker.clone();
                async move { worker.run(None).await.map(|_| ()) }
            },
            move || {
                let worker = watched.clone();
                async move { worker.checkpoint().await.map(Watched::At) }
            },
        );
        let sealer_health = PartHealth::new("sealer", 0);
        let sealer = Sealer::new(store.clone(), SealerOptions::default())
            .reporting_to(sealer_health.clone());
        let watched = sealer.clone();
        let sealer = leased.spawn(
            sealer_health.clone(),
            move || {
                let sealer = sealer.clone();
                async move { sealer.follow().await }
            },
            move || {
                let sealer = watched.clone();
                async move { sealer.status().await.map(|p| Watched::At(p.sealed)) }
            },
        );
        let live_options = LiveOptions {
            max_lag: options.freshness.max_lag,
            max_silence: options.freshness.max_silence,
            ..LiveOptions::default()
        };
        let (access, access_task) =
            LiveAccess::start_from_snapshot(reader.clone(), live_options).await?;
        let snapshots = options.index_snapshots.map(|every| {
            // Snapshots of the index for the next processes to start from:
            // one process writes them (not a part of `/ready`: its
            // position moves only every `every` events).
            let health = PartHealth::new("index_snapshot", 0);
            let (store, watched, live, writing) =
                (store.clone(), store.clone(), access.clone(), health.clone());
            leased.spawn(
                health,
                move || {
                    let (store, live, health) = (store.clone(), live.clone(), writing.clone());
                    async move { snapshot::keep_writing(&store, &live, &health, every).await }
                },
                move || {
                    let store = watched.clone();
                    async move { snapshot::stored_position(&store).await.map(Watched::At) }
                },
            )
        });
        let archive = if options.history_archive {
            Some(LiveArchive::start(reader.clone(), LiveOptions::default().page_size).await?)
        } else {
            None
        };
        let history = match &archive {
            Some((archive, _)) => History::with_archive(store.clone(), archive.clone()),
            None => History::new(store.clone()),
        };
        let runtime = Arc::new(
            ProjectionRuntime::start_leased(
                reader,
                read_models(),
                RuntimeOptions::default(),
                Some(leases),
            )
            .await?,
        );
        let mut background = vec![worker_health, sealer_health];
        let relay = options.relay.clone().map(|config| {
            let health = PartHealth::new("relay", 0);
            background.push(health.clone());
            let relay = shareledger_projections::relay::Relay::new(store.clone(), config)
                .reporting_to(health.clone());
            let watched = relay.clone();
            leased.spawn(
                health,
                move || {
                    let relay = relay.clone();
                    async move { relay.run(None).await.map(|_| ()) }
                },
                move || {
                    let relay = watched.clone();
                    async move { relay.checkpoint().await.map(Watched::At) }
                },
            )
        });
        if let Some((archive, _)) = &archive {
            background.push(archive.health().clone());
        }
        let derived = options.derived_feeds.then(|| {
            let health = PartHealth::new(crate::state::DERIVED_FEEDS, 0);
            background.push(health.clone());
            let feeds = shareledger_projections::derived::DerivedFeeds::new(store.clone())
                .reporting_to(health.clone());
            let watched = feeds.clone();
            leased.spawn(
                health,
                move || {
                    let feeds = feeds.clone();
                    async move { feeds.run(None).await.map(|_| ()) }
                },
                move || {
                    let feeds = watched.clone();
                    async move { feeds.checkpoint().await.map(Watched::At) }
                },
            )
        });
        let state = AppState::new(
            service,
            access,
            history,
            Arc::clone(&runtime),
            background,
            options,
        );
        let listener = tokio::net::TcpListener::bind(addr)
            .await
            .map_err(|source| ServerError::Listen { addr, source })?;
        let addr = listener
            .local_addr()
            .map_err(|source| ServerError::Listen { addr, source })?;
        let app = crate::app(state.clone());
        let http = tokio::spawn(async move {
            // The peer's address: the self-registration route's rate limit
            // is per address.
            let app = app.into_make_service_with_connect_info::<std::net::SocketAddr>();
            axum::serve(listener, app)
                .with_graceful_shutdown(async move {
                    let _ = stopped.wait_for(|s| *s).await;
                })
                .await
        });
        tracing::info!(%addr, "listening");
        Ok(Self {
            addr,
            state,
            stop,
            http,
            worker,
            sealer,
            relay,
            derived,
            snapshots,
            access_task,
            archive,
            runtime,
        })
    }

    /// Where the service listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// `http://<addr>`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The handlers' state (for tests and tools in the same process).
    pub fn state(&self) -> &AppState {
        &self.state
    }

    /// Stops gracefully: no new connections, requests in flight finish,
    /// then the read models, the worker and the index stop.
    pub async fn shutdown(self) -> Result<(), ServerError> {
        let Server {
            state,
            stop,
            http,
            worker,
            sealer,
            relay,
            derived,
            snapshots,
            access_task,
            archive,
            runtime,
            ..
        } = self;
        stop.send_replace(true);
        // Event streams never end by themselves: end them, so that the
        // graceful shutdown's wait for open connections ends.
        state.close_streams();
        let served = match http.await {
            Ok(result) => result.map_err(ServerError::Serve),
            Err(e) => Err(ServerError::Serve(std::io::Error::other(e))),
        };
        state.access().stop();
        drop(state);
        match Arc::try_unwrap(runtime) {
            Ok(runtime) => {
                if let Err(e) = runtime.shutdown().await {
                    tracing::warn!(error = %e, "read models stopped with an error");
                }
            }
            Err(still_shared) => drop(still_shared),
        }
        let _ = worker.await;
        let _ = sealer.await;
        if let Some(relay) = relay {
            let _ = relay.await;
        }
        if let Some(derived) = derived {
            let _ = derived.await;
        }
        if let Some(snapshots) = snapshots {
            let _ = snapshots.await;
        }
        let _ = access_task.await;
        if let Some((archive, task)) = archive {
            archive.stop();
            let _ = task.await;
        }
        served
    }
}

/// What every leased part of this process shares: the lease session and
/// the stop signal.
struct Leased {
    leases: Leases,
    stop: watch::Sender<bool>,
}

impl Leased {
    /// Runs a background part under its lease (named after the part), in a
    /// task of its own, until the service stops or a permanent fault
    /// (logged, and shown as failed in the part's health: `/ready` then
    /// says no). While another process holds the lease, `watch` reads the
    /// holder's checkpoint.
    fn spawn<E, F, Fut, W, WFut>(&self, health: PartHealth, run: F, watch: W) -> JoinHandle<()>
    where
        E: shareledger_events::store::supervise::Fault + std::fmt::Display + Send + 'static,
        F: FnMut() -> Fut + Send + 'static,
        Fut: std::future::Future<Output = Result<(), E>> + Send + 'static,
        W: FnMut() -> WFut + Send + 'static,
        WFut: std::future::Future<Output = Result<Watched, E>> + Send + 'static,
    {
        let leases = self.leases.clone();
        let stop = self.stop.subscribe();
        tokio::spawn(async move {
            let name = health.name().to_owned();
            if lead(&leases, &name, &health, stop, run, watch)
                .await
                .is_ok()
            {
                health.stopped();
            }
        })
    }
}
