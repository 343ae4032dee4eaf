//! The projection runtime: runs [`SqlProjection`]s from their checkpoints,
//! rebuilds them beside the live tables, switches, and reports where each
//! one is.
//!
//! # Exactly-once effects
//!
//! Every generation of a projection (below) has a checkpoint in
//! `sl_checkpoints`, named `projection:<name>:g<N>`: the position of the
//! last event whose effects its tables hold. The runtime applies events in
//! batches, each in one transaction:
//!
//! 1. `SELECT position … FOR UPDATE` on the checkpoint row;
//! 2. [`SqlProjection::apply`] with the events after that position;
//! 3. `UPDATE` the checkpoint to the batch's last position; `COMMIT`.
//!
//! The writes and the checkpoint commit together or not at all, so whatever
//! stops the process (an error, a panic, an aborted task, a killed
//! connection, a crash) the tables hold the effects of exactly the events
//! up to the checkpoint, and a restart resumes from it. Step 1 makes this
//! hold with several processes running the same projection: the row lock
//! orders their batches, and a batch applies only the events after the
//! position it finds, whatever its own subscription thought. A batch is up
//! to [`RuntimeOptions::batch_size`] events while catching up; once live,
//! it is whatever has committed since the last batch (the runtime reads the
//! head of the log and never waits on a timer to fill a batch).
//!
//! # Generations
//!
//! The tables of generation N of projection `p` live in schema
//! `rm_p_gN` ([`generation_schema`]). The registry table `sl_projections`
//! says which generation is *live* (and which version of the code built
//! it) and which is *being built*, if any. Schema
//! [`LIVE_SCHEMA`](crate::projection::LIVE_SCHEMA) (`rm`) holds one view
//! per live table, `rm.<table>`, which is what SQL consumers read.
//!
//! * First start: generation 1 is created (schema, `create_tables`, the
//!   views, checkpoint 0) and registered live, in one transaction.
//! * A rebuild (the code's [`SqlProjection::version`] is newer than the
//!   live generation's, or [`ProjectionRuntime::rebuild`] was called)
//!   creates generation N+1 and fills it from position 0 beside the live
//!   one, which keeps serving. When the code's version equals the live
//!   one's (an explicit rebuild), the live generation keeps following the
//!   log meanwhile. When it differs, this process does not write the live
//!   tables (they have another version's shape and meaning): they serve as
//!   they are, and follow the log only if a process running their version
//!   follows them (a rolling deploy).
//! * A process never touches a generation of another version, and never
//!   rebuilds to replace a newer live version with an older one unless told
//!   to (explicit rebuild): during a rolling deploy, old processes leave the
//!   projection to the new ones ([`ProjectionState::Superseded`]) instead of
//!   rebuilding back and forth.
//!
//! # The switch
//!
//! When the generation being built has caught up (its position reached the
//! head of the log read right after its last batch), the runtime switches,
//! in ONE transaction, under `pg_advisory_xact_lock` on the projection's
//! name (the lock every registry change takes, in every process):
//!
//! 1. check the registry is still as this process knows it;
//! 2. lock the old generation's checkpoint row (its batches stop) and the
//!    new one's; apply to the new generation the events between its
//!    position and the head read just before, so the views never go back
//!    in time (the events were read beforehand, without holding locks; if
//!    the old generation has meanwhile applied more than were read, the
//!    switch rolls back and reads again, and after a few tries waits for
//!    the next batch);
//! 3. drop the old generation's views in `rm`, create the new ones (drop and
//!    create, not `CREATE OR REPLACE`: the columns may differ);
//! 4. update the registry; drop the old schema (`CASCADE`) and delete its
//!    checkpoint.
//!
//! Readers of `rm.<table>` never see a missing view: a query that arrives
//! during the switch waits for its commit and then reads the new view
//! (PostgreSQL looks the name up again after waiting for a lock). A switch
//! waits for queries already reading the old views. A consumer object that
//! depends on an `rm` view (a view of its own) makes the switch fail: the
//! runtime does not drop what it did not create. A switch that changes a
//! view's columns makes prepared statements `SELECT *` from it fail once
//! (`cached plan must not change result type`).
//!
//! A follower whose generation has been dropped (by another process's
//! switch) finds its checkpoint row gone at its next batch (in a quiet log,
//! at the next event); the runtime then reads the registry again and
//! follows the new live generation. Meanwhile the views already show the
//! new generation, which is at least as far as the dropped one was.
//!
//! # Several processes
//!
//! The row lock above keeps a generation's tables exact whatever number of
//! processes follow it. Started with leases
//! ([`ProjectionRuntime::start_leased`], as the service does), only one
//! process applies the log to each generation: the holder of the lease
//! named after the generation's checkpoint (`shareledger_events::store::lease`).
//! The others are standbys: they read the checkpoint (every half second,
//! and every few milliseconds while a wait for a consistency token or a
//! freshness check in their process waits for a position the holder has
//! not reached) and publish it as their position, so those waits answer on
//! every process, and the standby's health says `standby`. A standby never switches: the holder of
//! the generation being built does. When a holder dies, a standby takes its
//! lease and follows from the checkpoint.
//!
//! # Position and lag
//!
//! [`ProjectionRuntime::status`] reads the registry and the checkpoints
//! (so it is right whichever process moved them) and then the head of the
//! log: `lag = head - position`, for the live generation and for a rebuild
//! in progress. [`ProjectionRuntime::wait_for`] waits until every
//! projection's live generation has applied a position (consistency
//! tokens, `/ready`), on a watch channel per projection, without polling;
//! while a new version is being built, that is until the switch.
//!
//! # Tasks, errors and stopping
//!
//! Each projection has a supervising task (registry, rebuild, switch) and
//! one task per generation it follows, each with its own subscription to
//! the log. An error or panic in a projection ends its tasks, is logged with
//! `tracing`, shows in its status ([`ProjectionState::Failed`]) and is
//! returned by [`ProjectionRuntime::wait_for`] and
//! [`ProjectionRuntime::shutdown`]; the other projections keep running.
//! `shutdown` lets each batch in flight commit. Dropping the runtime aborts
//! its tasks at once (an uncommitted batch rolls back).
//!
//! Connections: a caught-up subscription holds one pooled connection for
//! LISTEN, so the pool needs at least two connections per projection
//! (four while rebuilding) plus a few for the batches.
//!
//! # Files
//!
//! * this one: the API ([`ProjectionRuntime`], [`RuntimeOptions`]) and the
//!   names of generations' schemas and checkpoints;
//! * `status.rs`: [`ProjectionRuntime::status`] and what it reports
//!   ([`ProjectionStatus`], [`ProjectionState`]);
//! * `progress.rs`: what this process knows of each projection (its
//!   generations' positions, its run state, its health), as waiters watch it;
//! * `registry.rs`: the SQL of the registry (`sl_projections`), of
//!   generations (schemas, views) and of checkpoints;
//! * `supervisor.rs`: each projection's supervising task (registry,
//!   rebuilds, followers, faults); `switch.rs`, the switch;
//! * `follower.rs`: a task applying the log to one generation, batch by
//!   batch, each batch committing with its checkpoint.

mod follower;
mod progress;
mod registry;
mod status;
mod supervisor;
mod switch;

pub use status::{ProjectionState, ProjectionStatus, RebuildStatus};

use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Duration;

use shareledger_events::store::lease::Leases;
use shareledger_events::store::supervise::{Freshness, NotFresh, PartHealth};
use shareledger_events::store::{PgEventStore, SubscriptionOptions};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::JoinHandle;

use crate::projection::SqlProjection;
use crate::ProjectionError;
use progress::{Ctx, Progress, RunState};
use registry::register;
use supervisor::{spawn_supervisor, task_failure, Supervisor};

/// The most events applied in one transaction, unless configured.
pub const DEFAULT_BATCH_SIZE: usize = 256;

/// The longest projection name: its schemas (`rm_<name>_g<N>`) must fit
/// PostgreSQL's 63-byte identifiers.
pub const MAX_NAME_LEN: usize = 40;

/// How the runtime reads and applies the log.
#[derive(Debug, Clone, Copy)]
pub struct RuntimeOptions {
    /// The most events applied in one transaction (at least 1). While
    /// catching up every batch is this big; once live, a batch is whatever
    /// has committed since the last one, up to this.
    pub batch_size: usize,
    /// While live, how long a subscription waits for a notification before
    /// reading anyway (a safety net only, see [`SubscriptionOptions`]).
    pub idle_recheck: Duration,
}

impl Default for RuntimeOptions {
    fn default() -> Self {
        Self {
            batch_size: DEFAULT_BATCH_SIZE,
            idle_recheck: SubscriptionOptions::default().idle_recheck,
        }
    }
}

/// The schema of generation `generation` of projection `name`.
pub fn generation_schema(name: &str, generation: u32) -> String {
    format!("rm_{name}_g{generation}")
}

/// The checkpoint of generation `generation` of projection `name`.
pub fn checkpoint_name(name: &str, generation: u32) -> String {
    format!("projection:{name}:g{generation}")
}

/// Runs projections, each in its own tasks, from their checkpoints.
///
/// Dropping it aborts every task (uncommitted batches roll back); call
/// [`ProjectionRuntime::shutdown`] to stop after the batches in flight.
pub struct ProjectionRuntime {
    store: PgEventStore,
    stop: watch::Sender<bool>,
    handles: Vec<Handle>,
}

/// The runtime's side of one projection.
struct Handle {
    ctx: Arc<Ctx>,
    commands: mpsc::Sender<Command>,
    task: Option<JoinHandle<Result<(), Arc<ProjectionError>>>>,
}

impl Handle {
    /// Resolves when the live generation has applied `position`, or with
    /// the error that stopped the projection.
    async fn reached(&self, position: u64) -> Result<(), ProjectionError> {
        let name = self.ctx.name;
        // A standby reads its holder's checkpoint promptly while waited on.
        self.ctx.health.want(position);
        let mut progress = self.ctx.progress.subscribe();
        let state = progress
            .wait_for(|p| p.settled_at(position))
            .await
            .map(|p| p.state.clone())
            .map_err(|_| ProjectionError::Stopped(name.to_string()))?;
        state.check(name)
    }

    /// Why the projection's task no longer answers.
    fn ended(&self) -> ProjectionError {
        let state = self.ctx.progress.borrow().state.clone();
        match state.check(self.ctx.name) {
            Err(e) => e,
            Ok(()) => ProjectionError::Stopped(self.ctx.name.to_string()),
        }
    }
}

enum Command {
    Rebuild(oneshot::Sender<Result<u32, ProjectionError>>),
}

impl ProjectionRuntime {
    /// Registers each projection (creating generation 1 and its views the
    /// first time), starts a rebuild where the code's version is newer than
    /// the live one, and starts following the log. When it returns, every
    /// projection's `rm` views exist.
    pub async fn start(
        store: PgEventStore,
        projections: Vec<Arc<dyn SqlProjection>>,
        options: RuntimeOptions,
    ) -> Result<Self, ProjectionError> {
        Self::start_leased(store, projections, options, None).await
    }

    /// As [`ProjectionRuntime::start`], and with `leases`, each generation's
    /// follower runs under the lease named after its checkpoint: among
    /// several processes on one log, one applies the log to a generation and
    /// the others follow its checkpoint (see "Several processes").
    pub async fn start_leased(
        store: PgEventStore,
        projections: Vec<Arc<dyn SqlProjection>>,
        options: RuntimeOptions,
        leases: Option<Leases>,
    ) -> Result<Self, ProjectionError> {
        validate(&projections)?;
        let options = RuntimeOptions {
            batch_size: options.batch_size.max(1),
            ..options
        };
        let mut supervisors = Vec::with_capacity(projections.len());
        for projection in projections {
            let (progress, _) = watch::channel(Progress::default());
            let name = projection.name();
            let ctx = Arc::new(Ctx {
                store: store.clone(),
                name: projection.name(),
                version: projection.version(),
                projection,
                options,
                progress,
                health: PartHealth::new(name, 0),
                leases: leases.clone(),
            });
            let registry = register(&ctx, false).await?;
            supervisors.push(Supervisor {
                ctx,
                registry,
                followers: BTreeMap::new(),
            });
        }
        let (stop, _) = watch::channel(false);
        let mut runtime = Self {
            store,
            stop,
            handles: Vec::with_capacity(supervisors.len()),
        };
        for mut supervisor in supervisors {
            supervisor.align().await?;
            let ctx = supervisor.ctx.clone();
            let (commands, received) = mpsc::channel(4);
            let task = spawn_supervisor(supervisor, received, runtime.stop.subscribe());
            runtime.handles.push(Handle {
                ctx,
                commands,
                task: Some(task),
            });
        }
        Ok(runtime)
    }

    /// Where the read models' rows are to be read from: the runtime's
    /// store's reads (a streaming replica's pool when it reads from one;
    /// its checkpoints are read there too, so a read model that reached a
    /// position there answers with every row of that position).
    pub fn reads(&self) -> &sqlx::PgPool {
        self.store.reads()
    }

    /// The names of the projections this runtime runs, in the order given.
    pub fn names(&self) -> Vec<&'static str> {
        self.handles.iter().map(|h| h.ctx.name).collect()
    }

    /// Rebuilds projection `name` beside its live generation and switches
    /// to it when caught up. Returns the generation being built (the one
    /// already being built with this code's version, if any).
    pub async fn rebuild(&self, name: &str) -> Result<u32, ProjectionError> {
        let handle = self.handle(name)?;
        let (reply, answer) = oneshot::channel();
        handle
            .commands
            .send(Command::Rebuild(reply))
            .await
            .map_err(|_| handle.ended())?;
        answer.await.map_err(|_| handle.ended())?
    }

    /// Every projection's health and state, from memory (no database
    /// query): for `/ready` and `/metrics`, which must answer whatever the
    /// database does.
    pub fn parts(&self) -> Vec<(PartHealth, ProjectionState)> {
        self.handles
            .iter()
            .map(|h| {
                let state = h.ctx.progress.borrow().state.public();
                (h.ctx.health.clone(), state)
            })
            .collect()
    }

    /// Waits, at most `timeout`, until projection `name` may answer: its
    /// live generation is followed by this process, in touch with the log,
    /// and has applied `min_position` and everything this process knows to
    /// be committed (less `bounds.max_lag`). A projection superseded by a
    /// newer version is answered from as it is (its own processes follow
    /// it). Returns the position reached.
    pub async fn fresh(
        &self,
        name: &str,
        min_position: Option<u64>,
        bounds: Freshness,
        timeout: Duration,
    ) -> Result<u64, ProjectionError> {
        let handle = self.handle(name)?;
        if handle.ctx.progress.borrow().state == RunState::Superseded {
            return Ok(handle.ctx.health.position());
        }
        handle
            .ctx
            .health
            .fresh(self.store.watch_known_head(), min_position, bounds, timeout)
            .await
            .map_err(|e| match e {
                NotFresh::Stale {
                    reached,
                    head,
                    state,
                } => ProjectionError::Stale {
                    name: name.to_string(),
                    reached,
                    head,
                    state,
                },
                NotFresh::Behind {
                    wanted, waited_ms, ..
                } => ProjectionError::Timeout {
                    position: wanted,
                    waited: Duration::from_millis(waited_ms),
                    behind: vec![name.to_string()],
                },
            })
    }

    /// Waits until the live generation of every projection has applied the
    /// event at `position` (and all before it). Projections superseded by a
    /// newer version are not waited for. A failed or stopped projection is
    /// an error at once; not getting there within `timeout` is
    /// [`ProjectionError::Timeout`].
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), ProjectionError> {
        let all = async {
            for handle in &self.handles {
                handle.reached(position).await?;
            }
            Ok(())
        };
        match tokio::time::timeout(timeout, all).await {
            Ok(result) => result,
            Err(_) => Err(ProjectionError::Timeout {
                position,
                waited: timeout,
                behind: self
                    .handles
                    .iter()
                    .filter(|h| !h.ctx.progress.borrow().settled_at(position))
                    .map(|h| h.ctx.name.to_string())
                    .collect(),
            }),
        }
    }

    /// Like [`ProjectionRuntime::wait_for`], for projection `name` alone.
    pub async fn wait_for_projection(
        &self,
        name: &str,
        position: u64,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        let handle = self.handle(name)?;
        match tokio::time::timeout(timeout, handle.reached(position)).await {
            Ok(result) => result,
            Err(_) => Err(ProjectionError::Timeout {
                position,
                waited: timeout,
                behind: vec![name.to_string()],
            }),
        }
    }

    /// Waits until this process follows generation `generation` (or a later
    /// one) of projection `name` as its live generation: after
    /// [`ProjectionRuntime::rebuild`], until the switch.
    pub async fn wait_for_generation(
        &self,
        name: &str,
        generation: u32,
        timeout: Duration,
    ) -> Result<(), ProjectionError> {
        let handle = self.handle(name)?;
        let mut progress = handle.ctx.progress.subscribe();
        let waited = tokio::time::timeout(
            timeout,
            progress.wait_for(|p| {
                p.state != RunState::Running || p.live.is_some_and(|g| g >= generation)
            }),
        )
        .await;
        let state = match waited {
            Ok(Ok(p)) => p.state.clone(),
            Ok(Err(_)) => return Err(ProjectionError::Stopped(name.to_string())),
            Err(_) => {
                return Err(ProjectionError::Timeout {
                    position: 0,
                    waited: timeout,
                    behind: vec![name.to_string()],
                })
            }
        };
        match state {
            RunState::Superseded => Err(ProjectionError::Stopped(name.to_string())),
            other => other.check(name),
        }
    }

    /// Stops every projection after the batch each is applying commits.
    /// Returns the first projection error (every one is also logged when it
    /// happens).
    pub async fn shutdown(mut self) -> Result<(), ProjectionError> {
        self.stop.send_replace(true);
        let mut first = None;
        for handle in &mut self.handles {
            let Some(task) = handle.task.take() else {
                continue;
            };
            let error = match task.await {
                Ok(Ok(())) => continue,
                Ok(Err(source)) => ProjectionError::Failed {
                    name: handle.ctx.name.to_string(),
                    source,
                },
                Err(join) => task_failure(handle.ctx.name, join),
            };
            first.get_or_insert(error);
        }
        first.map_or(Ok(()), Err)
    }

    fn handle(&self, name: &str) -> Result<&Handle, ProjectionError> {
        self.handles
            .iter()
            .find(|h| h.ctx.name == name)
            .ok_or_else(|| ProjectionError::UnknownProjection(name.to_string()))
    }
}

impl Drop for ProjectionRuntime {
    fn drop(&mut self) {
        for handle in &self.handles {
            if let Some(task) = &handle.task {
                task.abort();
            }
        }
    }
}

impl std::fmt::Debug for ProjectionRuntime {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectionRuntime")
            .field("projections", &self.names())
            .finish_non_exhaustive()
    }
}

fn validate(projections: &[Arc<dyn SqlProjection>]) -> Result<(), ProjectionError> {
    let mut seen = std::collections::BTreeSet::new();
    for projection in projections {
        let name = projection.name();
        let invalid = |reason| ProjectionError::InvalidProjection {
            name: name.to_string(),
            reason,
        };
        let mut chars = name.chars();
        let well_formed = chars.next().is_some_and(|c| c.is_ascii_lowercase())
            && chars.all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && name.len() <= MAX_NAME_LEN;
        if !well_formed {
            return Err(invalid(
                "a name is a lowercase letter, then lowercase letters, digits and _ (at most 40)",
            ));
        }
        if i32::try_from(projection.version()).is_err() {
            return Err(invalid("a version must fit in 31 bits"));
        }
        if !seen.insert(name) {
            return Err(invalid("two projections have this name"));
        }
    }
    Ok(())
}

/// Resolves once `stop` is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: stopping is all that is left.
    let _ = stop.wait_for(|stop| *stop).await;
}
