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
//! it) and which is *being built*, if any. Schema [`LIVE_SCHEMA`] (`rm`)
//! holds one view per live table, `rm.<table>`, which is what SQL consumers
//! read.
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

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use serde::Serialize;
use shareledger_events::store::supervise::{
    backoff, supervise, Fault, Freshness, NotFresh, PartHealth,
};
use shareledger_events::store::{PgEventStore, PositionFrom, SubscriptionOptions};
use shareledger_events::{Direction, RecordedEvent};
use sqlx::{PgConnection, Row};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle};

use crate::projection::{SqlProjection, LIVE_SCHEMA};
use crate::ProjectionError;

/// The most events applied in one transaction, unless configured.
pub const DEFAULT_BATCH_SIZE: usize = 256;

/// The longest projection name: its schemas (`rm_<name>_g<N>`) must fit
/// PostgreSQL's 63-byte identifiers.
pub const MAX_NAME_LEN: usize = 40;

/// How many times a switch re-reads the events its new generation lacks
/// before waiting for the next batch to try again.
const SWITCH_ATTEMPTS: usize = 3;

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

/// Where one projection is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectionStatus {
    pub name: String,
    /// The version of the projection's code in this process.
    pub version: u32,
    /// The generation the views of `rm` show.
    pub live_generation: u32,
    /// The version of the code that built the live generation.
    pub live_version: u32,
    /// The position of the last event the live generation has applied.
    pub position: u64,
    /// The head of the log, read after the positions.
    pub head: u64,
    /// `head - position`.
    pub lag: u64,
    /// The generation being built beside the live one, if any.
    pub rebuild: Option<RebuildStatus>,
    /// What this process is doing with the projection.
    pub state: ProjectionState,
}

/// A generation being built beside the live one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RebuildStatus {
    pub generation: u32,
    pub version: u32,
    pub position: u64,
    /// `head - position`.
    pub lag: u64,
}

/// What a runtime is doing with one projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "error", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProjectionState {
    /// Following the log (the live generation, a rebuild, or both).
    Running,
    /// The live generation (and any rebuild) is of another version of the
    /// code, newer than this process's: this process leaves it alone.
    Superseded,
    /// Stopped by this error; the tables stay as last committed.
    Failed(String),
    /// Stopped by [`ProjectionRuntime::shutdown`].
    Stopped,
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

    /// Where every projection is: positions from the registry and the
    /// checkpoints, then the head of the log.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let names: Vec<&str> = self.handles.iter().map(|h| h.ctx.name).collect();
        // The joins spell out `checkpoint_name`.
        let rows = sqlx::query(
            "SELECT p.name, p.live_generation, p.live_version, \
                    p.building_generation, p.building_version, \
                    lc.position AS live_position, bc.position AS building_position \
             FROM sl_projections p \
             LEFT JOIN sl_checkpoints lc \
                    ON lc.name = 'projection:' || p.name || ':g' || p.live_generation \
             LEFT JOIN sl_checkpoints bc \
                    ON bc.name = 'projection:' || p.name || ':g' || p.building_generation \
             WHERE p.name = ANY($1)",
        )
        .bind(&names)
        .fetch_all(self.store.pool())
        .await?;
        let head = self.store.head_position().await?;
        let mut by_name = BTreeMap::new();
        for row in rows {
            let name: String = row.try_get("name")?;
            by_name.insert(name, row);
        }
        let mut statuses = Vec::with_capacity(self.handles.len());
        for handle in &self.handles {
            let ctx = &handle.ctx;
            let Some(row) = by_name.get(ctx.name) else {
                return Err(ProjectionError::UnknownProjection(ctx.name.to_string()));
            };
            let position = to_u64(row.try_get::<Option<i64>, _>("live_position")?.unwrap_or(0));
            let building: Option<i32> = row.try_get("building_generation")?;
            let rebuild = match building {
                Some(generation) => {
                    let version: Option<i32> = row.try_get("building_version")?;
                    let at: Option<i64> = row.try_get("building_position")?;
                    let at = to_u64(at.unwrap_or(0));
                    Some(RebuildStatus {
                        generation: to_u32(generation),
                        version: to_u32(version.unwrap_or(0)),
                        position: at,
                        lag: head.saturating_sub(at),
                    })
                }
                None => None,
            };
            statuses.push(ProjectionStatus {
                name: ctx.name.to_string(),
                version: ctx.version,
                live_generation: to_u32(row.try_get("live_generation")?),
                live_version: to_u32(row.try_get("live_version")?),
                position,
                head,
                lag: head.saturating_sub(position),
                rebuild,
                state: ctx.progress.borrow().state.public(),
            });
        }
        Ok(statuses)
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

/// What one projection's tasks share.
struct Ctx {
    store: PgEventStore,
    projection: Arc<dyn SqlProjection>,
    name: &'static str,
    version: u32,
    options: RuntimeOptions,
    progress: watch::Sender<Progress>,
    /// The projection's health as `/ready` and answers see it: the live
    /// generation's position and contact with the log, and the faults of
    /// any of its tasks.
    health: PartHealth,
}

impl Ctx {
    /// Records that generation `generation` has committed up to `position`
    /// (positions only move forward: a switch may have moved it further).
    fn publish(&self, generation: u32, position: u64, at_head: bool) {
        if self.progress.borrow().live == Some(generation) {
            self.health.advanced(position);
        }
        self.progress.send_if_modified(|p| {
            let Some(current) = p.positions.get_mut(&generation) else {
                return false;
            };
            let next = GenerationProgress {
                position: current.position.max(position),
                at_head,
            };
            let changed = next != *current;
            *current = next;
            changed
        });
    }
}

/// What this process knows of one projection, as watched by waiters.
#[derive(Debug, Clone, Default)]
struct Progress {
    /// The live generation, when this process follows it.
    live: Option<u32>,
    /// The generation being built, when this process builds it.
    building: Option<u32>,
    /// Each followed generation's position.
    positions: BTreeMap<u32, GenerationProgress>,
    state: RunState,
}

impl Progress {
    /// Whether a wait for `position` is over (reached, or never will be).
    fn settled_at(&self, position: u64) -> bool {
        match self.state {
            RunState::Running => self
                .live
                .and_then(|g| self.positions.get(&g))
                .is_some_and(|p| p.position >= position),
            RunState::Superseded | RunState::Failed(_) | RunState::Stopped => true,
        }
    }

    fn building_at_head(&self) -> bool {
        self.building
            .and_then(|g| self.positions.get(&g))
            .is_some_and(|p| p.at_head)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct GenerationProgress {
    /// The checkpoint, as last committed (or seen) by this process.
    position: u64,
    /// Whether `position` was the head of the log when last read.
    at_head: bool,
}

#[derive(Debug, Clone, Default)]
enum RunState {
    #[default]
    Running,
    Superseded,
    Failed(Arc<ProjectionError>),
    Stopped,
}

impl PartialEq for RunState {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Self::Failed(a), Self::Failed(b)) => Arc::ptr_eq(a, b),
            _ => std::mem::discriminant(self) == std::mem::discriminant(other),
        }
    }
}

impl RunState {
    fn public(&self) -> ProjectionState {
        match self {
            Self::Running => ProjectionState::Running,
            Self::Superseded => ProjectionState::Superseded,
            Self::Failed(e) => ProjectionState::Failed(e.to_string()),
            Self::Stopped => ProjectionState::Stopped,
        }
    }

    /// An error for a projection that no longer runs.
    fn check(self, name: &str) -> Result<(), ProjectionError> {
        match self {
            Self::Running | Self::Superseded => Ok(()),
            Self::Failed(source) => Err(ProjectionError::Failed {
                name: name.to_string(),
                source,
            }),
            Self::Stopped => Err(ProjectionError::Stopped(name.to_string())),
        }
    }
}

/// A row of `sl_projections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Registry {
    live_generation: u32,
    live_version: u32,
    building: Option<Generation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Generation {
    number: u32,
    version: u32,
}

/// Registers the projection or brings its registry row in line with this
/// code: creates generation 1 the first time; starts a rebuild when the
/// code's version is newer than the live one's, or when `explicit`
/// (replacing a rebuild of another version; joining one of this version).
async fn register(ctx: &Ctx, explicit: bool) -> Result<Registry, ProjectionError> {
    let mut tx = ctx.store.pool().begin().await?;
    lock_registry(&mut tx, ctx.name).await?;
    let version = ctx.version;
    let registry = match read_registry(&mut tx, ctx.name).await? {
        None => {
            create_generation(&mut tx, ctx, 1).await?;
            point_views(&mut tx, None, &generation_schema(ctx.name, 1)).await?;
            let registry = Registry {
                live_generation: 1,
                live_version: version,
                building: None,
            };
            write_registry(&mut tx, ctx.name, &registry).await?;
            tracing::info!(
                projection = ctx.name,
                version,
                "projection registered: generation 1"
            );
            registry
        }
        Some(mut registry) => {
            if explicit || version > registry.live_version {
                let number = match registry.building {
                    Some(b) if b.version == version => None,
                    Some(b) if explicit || b.version < version => {
                        drop_generation(&mut tx, ctx.name, b.number).await?;
                        Some(b.number + 1)
                    }
                    Some(_) => None,
                    None => Some(registry.live_generation + 1),
                };
                if let Some(number) = number {
                    create_generation(&mut tx, ctx, number).await?;
                    registry.building = Some(Generation { number, version });
                    write_registry(&mut tx, ctx.name, &registry).await?;
                    tracing::info!(
                        projection = ctx.name,
                        generation = number,
                        version,
                        live_generation = registry.live_generation,
                        live_version = registry.live_version,
                        "rebuild started beside the live generation"
                    );
                }
            }
            registry
        }
    };
    tx.commit().await?;
    Ok(registry)
}

/// Serializes registry changes of projection `name` across processes.
async fn lock_registry(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sl_projections'), hashtext($1))")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

async fn read_registry(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<Registry>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT live_generation, live_version, building_generation, building_version \
         FROM sl_projections WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let building: Option<i32> = row.try_get("building_generation")?;
    let building_version: Option<i32> = row.try_get("building_version")?;
    Ok(Some(Registry {
        live_generation: to_u32(row.try_get("live_generation")?),
        live_version: to_u32(row.try_get("live_version")?),
        building: building.zip(building_version).map(|(g, v)| Generation {
            number: to_u32(g),
            version: to_u32(v),
        }),
    }))
}

async fn write_registry(
    conn: &mut PgConnection,
    name: &str,
    registry: &Registry,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sl_projections \
             (name, live_generation, live_version, building_generation, building_version) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET \
             live_generation = excluded.live_generation, \
             live_version = excluded.live_version, \
             building_generation = excluded.building_generation, \
             building_version = excluded.building_version, \
             updated_at = now()",
    )
    .bind(name)
    .bind(to_i32(registry.live_generation))
    .bind(to_i32(registry.live_version))
    .bind(registry.building.map(|b| to_i32(b.number)))
    .bind(registry.building.map(|b| to_i32(b.version)))
    .execute(conn)
    .await?;
    Ok(())
}

/// Creates generation `number`: its schema, its tables, its checkpoint at 0.
async fn create_generation(
    conn: &mut PgConnection,
    ctx: &Ctx,
    number: u32,
) -> Result<(), ProjectionError> {
    let schema = generation_schema(ctx.name, number);
    sqlx::query(&format!("CREATE SCHEMA {}", quote_ident(&schema)))
        .execute(&mut *conn)
        .await?;
    ctx.projection.create_tables(&mut *conn, &schema).await?;
    sqlx::query("INSERT INTO sl_checkpoints (name, position) VALUES ($1, 0)")
        .bind(checkpoint_name(ctx.name, number))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Drops generation `number`: its checkpoint first (the row its batches
/// lock first, so that this cannot deadlock with one), then its schema.
async fn drop_generation(
    conn: &mut PgConnection,
    name: &str,
    number: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sl_checkpoints WHERE name = $1")
        .bind(checkpoint_name(name, number))
        .execute(&mut *conn)
        .await?;
    let schema = generation_schema(name, number);
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quote_ident(&schema)
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Points the views of `rm` at the tables of schema `new`: drops the views
/// over schema `old`, then creates `rm.<table>` for every table (and view)
/// of `new`.
async fn point_views(
    conn: &mut PgConnection,
    old: Option<&str>,
    new: &str,
) -> Result<(), sqlx::Error> {
    if let Some(old) = old {
        let views: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT v.relname::text FROM pg_depend d \
             JOIN pg_rewrite r ON r.oid = d.objid \
             JOIN pg_class v ON v.oid = r.ev_class \
             JOIN pg_class t ON t.oid = d.refobjid \
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
               AND v.relnamespace = $1::regnamespace AND t.relnamespace = $2::regnamespace \
               AND v.oid <> t.oid \
             ORDER BY 1",
        )
        .bind(LIVE_SCHEMA)
        .bind(old)
        .fetch_all(&mut *conn)
        .await?;
        for view in views {
            sqlx::query(&format!(
                "DROP VIEW {}.{}",
                quote_ident(LIVE_SCHEMA),
                quote_ident(&view)
            ))
            .execute(&mut *conn)
            .await?;
        }
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c \
         WHERE c.relnamespace = $1::regnamespace \
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition \
         ORDER BY 1",
    )
    .bind(new)
    .fetch_all(&mut *conn)
    .await?;
    for table in tables {
        sqlx::query(&format!(
            "CREATE VIEW {live}.{table} AS SELECT * FROM {new}.{table}",
            live = quote_ident(LIVE_SCHEMA),
            table = quote_ident(&table),
            new = quote_ident(new),
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

async fn read_checkpoint(
    conn: impl sqlx::PgExecutor<'_>,
    checkpoint: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM sl_checkpoints WHERE name = $1")
            .bind(checkpoint)
            .fetch_optional(conn)
            .await?;
    Ok(position.map(to_u64))
}

/// Locks a checkpoint row until the end of the transaction.
async fn lock_checkpoint(
    conn: &mut PgConnection,
    checkpoint: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM sl_checkpoints WHERE name = $1 FOR UPDATE")
            .bind(checkpoint)
            .fetch_optional(conn)
            .await?;
    Ok(position.map(to_u64))
}

async fn save_checkpoint(
    conn: &mut PgConnection,
    checkpoint: &str,
    position: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sl_checkpoints SET position = $2, updated_at = now() WHERE name = $1")
        .bind(checkpoint)
        .bind(to_i64(position))
        .execute(conn)
        .await?;
    Ok(())
}

/// The events after `after` up to `until` (both positions), checked dense.
async fn read_range(
    store: &PgEventStore,
    after: u64,
    until: u64,
    page: usize,
) -> Result<Vec<RecordedEvent>, ProjectionError> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    let mut position = after;
    while position < until {
        let read = store
            .read_all(Direction::Forwards, PositionFrom::At(position + 1), page)
            .await?;
        if read.is_empty() {
            break;
        }
        for event in read {
            if event.global_position > until {
                return Ok(events);
            }
            if event.global_position != position + 1 {
                return Err(shareledger_events::store::LogError::Gap {
                    after: position,
                    found: event.global_position,
                }
                .into());
            }
            position = event.global_position;
            events.push(event);
        }
    }
    Ok(events)
}

/// One projection's supervising task: owns its followers, rebuilds and
/// switches.
struct Supervisor {
    ctx: Arc<Ctx>,
    registry: Registry,
    /// The followers this process runs, by generation.
    followers: BTreeMap<u32, Follower>,
}

type FollowerEnd = Result<Result<FollowEnd, ProjectionError>, JoinError>;

impl Supervisor {
    async fn run(
        mut self,
        mut commands: mpsc::Receiver<Command>,
        mut stop: watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        let mut changes = self.ctx.progress.subscribe();
        let outcome = loop {
            let step = tokio::select! {
                biased;
                () = stopped(&mut stop) => break Ok(()),
                command = commands.recv() => match command {
                    Some(Command::Rebuild(reply)) => self.rebuild(reply).await,
                    None => break Ok(()),
                },
                (generation, end) = next_end(&mut self.followers) => {
                    self.follower_ended(generation, end).await
                }
                Ok(()) = changes.changed() => {
                    let ready = self.ctx.progress.borrow().building_at_head();
                    if ready {
                        self.switch().await
                    } else {
                        Ok(())
                    }
                }
            };
            if let Err(e) = step {
                if !e.is_transient() {
                    break Err(e);
                }
                if let Err(e) = self.recover(e, &mut stop).await {
                    break Err(e);
                }
            }
        };
        let stopped = self.stop_all().await;
        match (outcome, stopped) {
            (Err(e), Err(also)) => {
                tracing::error!(
                    projection = self.ctx.name,
                    error = %also,
                    "a follower also failed while stopping"
                );
                Err(e)
            }
            (outcome, stopped) => outcome.and(stopped),
        }
    }

    /// After a transient fault in a step of its own (a switch, reading the
    /// registry): waits, then reads the registry again and follows what it
    /// says, until that succeeds, a permanent fault, or `stop`.
    async fn recover(
        &mut self,
        mut error: ProjectionError,
        stop: &mut watch::Receiver<bool>,
    ) -> Result<(), ProjectionError> {
        let mut delays = backoff();
        loop {
            self.ctx.health.retrying(&error);
            let delay = delays.next().unwrap_or(Duration::from_secs(1));
            tracing::warn!(
                projection = self.ctx.name,
                error = %error,
                retry_in_ms = delay.as_millis() as u64,
                "transient fault; reading the registry again"
            );
            tokio::select! {
                biased;
                () = stopped(stop) => return Ok(()),
                () = tokio::time::sleep(delay) => {}
            }
            match self.reread_registry().await {
                Ok(()) => return Ok(()),
                Err(e) if e.is_transient() => error = e,
                Err(e) => return Err(e),
            }
        }
    }

    /// Runs a follower for each generation of this code's version that the
    /// registry names, and none for the others.
    async fn align(&mut self) -> Result<(), ProjectionError> {
        let registry = self.registry;
        let version = self.ctx.version;
        let live = (registry.live_version == version).then_some(registry.live_generation);
        let building = registry
            .building
            .filter(|b| b.version == version)
            .map(|b| b.number);
        let wanted = |g: u32| Some(g) == live || Some(g) == building;
        let unwanted: Vec<u32> = self
            .followers
            .keys()
            .copied()
            .filter(|g| !wanted(*g))
            .collect();
        for generation in unwanted {
            if let Some(follower) = self.followers.remove(&generation) {
                follower.stop().await?;
            }
        }
        self.ctx.progress.send_modify(|p| {
            p.live = live;
            p.building = building;
            p.positions.retain(|g, _| wanted(*g));
            for g in [live, building].into_iter().flatten() {
                p.positions.entry(g).or_default();
            }
            p.state = if live.is_none() && building.is_none() {
                RunState::Superseded
            } else {
                RunState::Running
            };
        });
        if live.is_none() && building.is_none() {
            tracing::warn!(
                projection = self.ctx.name,
                version,
                live_version = registry.live_version,
                "superseded by a newer version: this process leaves the projection alone"
            );
        }
        for generation in [live, building].into_iter().flatten() {
            if !self.followers.contains_key(&generation) {
                let follower = Follower::start(self.ctx.clone(), generation);
                self.followers.insert(generation, follower);
            }
        }
        Ok(())
    }

    async fn rebuild(
        &mut self,
        reply: oneshot::Sender<Result<u32, ProjectionError>>,
    ) -> Result<(), ProjectionError> {
        match register(&self.ctx, true).await {
            Ok(registry) => {
                self.registry = registry;
                let aligned = self.align().await;
                let building = registry
                    .building
                    .map(|b| b.number)
                    .ok_or_else(|| ProjectionError::Stopped(self.ctx.name.to_string()));
                // The caller may have given up waiting; nothing to tell then.
                let _ = reply.send(building);
                aligned
            }
            Err(e) => {
                let _ = reply.send(Err(e));
                Ok(())
            }
        }
    }

    async fn follower_ended(
        &mut self,
        generation: u32,
        end: FollowerEnd,
    ) -> Result<(), ProjectionError> {
        // Finished: removing it must not poll its handle again.
        self.followers.remove(&generation);
        match end {
            Ok(Ok(FollowEnd::Retired)) => {
                tracing::info!(
                    projection = self.ctx.name,
                    generation,
                    "generation dropped by another process; reading the registry again"
                );
                self.reread_registry().await
            }
            Ok(Ok(FollowEnd::Stopped)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(join) => Err(task_failure(self.ctx.name, join)),
        }
    }

    /// Switches the views to the generation being built, which has caught
    /// up (see the module documentation).
    async fn switch(&mut self) -> Result<(), ProjectionError> {
        let Some(building) = self.registry.building else {
            return Ok(());
        };
        let ctx = self.ctx.clone();
        let old = self.registry.live_generation;
        let (old_schema, new_schema) = (
            generation_schema(ctx.name, old),
            generation_schema(ctx.name, building.number),
        );
        let (old_checkpoint, new_checkpoint) = (
            checkpoint_name(ctx.name, old),
            checkpoint_name(ctx.name, building.number),
        );
        let batch = ctx.options.batch_size;
        for attempt in 1..=SWITCH_ATTEMPTS {
            // The events the new generation may still lack, read without
            // holding any lock.
            let Some(from) = read_checkpoint(ctx.store.pool(), &new_checkpoint).await? else {
                return self.reread_registry().await;
            };
            let head = ctx.store.head_position().await?;
            let pending = read_range(&ctx.store, from, head, batch).await?;

            let mut tx = ctx.store.pool().begin().await?;
            lock_registry(&mut tx, ctx.name).await?;
            if read_registry(&mut tx, ctx.name).await? != Some(self.registry) {
                tx.rollback().await?;
                return self.reread_registry().await;
            }
            let old_position = lock_checkpoint(&mut tx, &old_checkpoint)
                .await?
                .unwrap_or(0);
            let Some(new_position) = lock_checkpoint(&mut tx, &new_checkpoint).await? else {
                tx.rollback().await?;
                return self.reread_registry().await;
            };
            let reached = pending.last().map_or(from, |e| e.global_position);
            if old_position > reached.max(new_position) {
                // The old generation applied events committed after `head`
                // was read: read again (its checkpoint moves on meanwhile).
                tx.rollback().await?;
                tracing::debug!(projection = ctx.name, attempt, "switch: reading further");
                continue;
            }
            let missing = pending
                .iter()
                .position(|e| e.global_position > new_position)
                .map_or(&pending[..0], |start| &pending[start..]);
            for chunk in missing.chunks(batch) {
                ctx.projection.apply(&mut tx, &new_schema, chunk).await?;
            }
            let position = new_position.max(reached);
            save_checkpoint(&mut tx, &new_checkpoint, position).await?;
            point_views(&mut tx, Some(&old_schema), &new_schema).await?;
            let registry = Registry {
                live_generation: building.number,
                live_version: building.version,
                building: None,
            };
            write_registry(&mut tx, ctx.name, &registry).await?;
            drop_generation(&mut tx, ctx.name, old).await?;
            tx.commit().await?;
            tracing::info!(
                projection = ctx.name,
                generation = building.number,
                version = building.version,
                position,
                old_generation = old,
                old_position,
                "switched to the rebuilt generation"
            );
            ctx.publish(building.number, position, false);
            self.registry = registry;
            return self.align().await;
        }
        tracing::debug!(
            projection = ctx.name,
            "switch postponed: the live generation keeps moving; trying at the next batch"
        );
        Ok(())
    }

    /// Reads the registry again (another process changed it) and follows
    /// what it says now.
    async fn reread_registry(&mut self) -> Result<(), ProjectionError> {
        self.registry = register(&self.ctx, false).await?;
        self.align().await
    }

    /// Stops every follower after its current batch.
    async fn stop_all(&mut self) -> Result<(), ProjectionError> {
        let followers = std::mem::take(&mut self.followers);
        for follower in followers.values() {
            follower.stop.send_replace(true);
        }
        let mut first = Ok(());
        for (_, follower) in followers {
            if let Err(e) = follower.stop().await {
                tracing::error!(projection = self.ctx.name, error = %e, "follower failed");
                if first.is_ok() {
                    first = Err(e);
                }
            }
        }
        first
    }
}

/// Runs the supervisor in a task of its own, watched by an outer task that
/// records how it ended (a panic included) in the projection's state.
fn spawn_supervisor(
    supervisor: Supervisor,
    commands: mpsc::Receiver<Command>,
    stop: watch::Receiver<bool>,
) -> JoinHandle<Result<(), Arc<ProjectionError>>> {
    let ctx = supervisor.ctx.clone();
    tokio::spawn(async move {
        let mut inner = AbortOnDrop(tokio::spawn(supervisor.run(commands, stop)));
        let result = match (&mut inner.0).await {
            Ok(result) => result,
            Err(join) => Err(task_failure(ctx.name, join)),
        };
        match result {
            Ok(()) => {
                ctx.progress.send_modify(|p| p.state = RunState::Stopped);
                ctx.health.stopped();
                tracing::info!(projection = ctx.name, "projection stopped");
                Ok(())
            }
            Err(e) => {
                tracing::error!(projection = ctx.name, error = %e, "projection failed");
                ctx.health.failed(&e);
                let e = Arc::new(e);
                ctx.progress
                    .send_modify(|p| p.state = RunState::Failed(e.clone()));
                Err(e)
            }
        }
    })
}

struct AbortOnDrop<T>(JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The first follower to end, with its generation. Pending while none has
/// (or there are none).
fn next_end(
    followers: &mut BTreeMap<u32, Follower>,
) -> impl Future<Output = (u32, FollowerEnd)> + '_ {
    poll_fn(move |cx| {
        for (generation, follower) in followers.iter_mut() {
            if let Poll::Ready(end) = Pin::new(&mut follower.task).poll(cx) {
                return Poll::Ready((*generation, end));
            }
        }
        Poll::Pending
    })
}

fn task_failure(name: &str, error: JoinError) -> ProjectionError {
    if !error.is_panic() {
        return ProjectionError::Stopped(name.to_string());
    }
    let payload = error.into_panic();
    let message = payload
        .downcast_ref::<&str>()
        .map(|s| s.to_string())
        .or_else(|| payload.downcast_ref::<String>().cloned())
        .unwrap_or_else(|| "a panic without a message".to_string());
    ProjectionError::Panicked {
        name: name.to_string(),
        message,
    }
}

/// How a follower ended without an error.
#[derive(Debug)]
enum FollowEnd {
    /// Told to stop.
    Stopped,
    /// Its generation's checkpoint is gone: the generation was dropped.
    Retired,
}

/// A task applying the log to one generation. Dropping it aborts the task.
struct Follower {
    name: &'static str,
    stop: watch::Sender<bool>,
    task: JoinHandle<Result<FollowEnd, ProjectionError>>,
}

impl Follower {
    fn start(ctx: Arc<Ctx>, generation: u32) -> Self {
        let (stop, stopped) = watch::channel(false);
        let name = ctx.name;
        let task = tokio::spawn(follow_supervised(ctx, generation, stopped));
        Self { name, stop, task }
    }

    /// Stops after the current batch; errors are the follower's.
    async fn stop(mut self) -> Result<(), ProjectionError> {
        self.stop.send_replace(true);
        match (&mut self.task).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(join) => Err(task_failure(self.name, join)),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs [`follow`] again from the checkpoint after every transient fault
/// (the database away, a connection cut), until it ends or fails for good.
async fn follow_supervised(
    ctx: Arc<Ctx>,
    generation: u32,
    stop: watch::Receiver<bool>,
) -> Result<FollowEnd, ProjectionError> {
    let ended = std::sync::Mutex::new(FollowEnd::Stopped);
    let (ctx, ended_ref, stop_ref) = (&ctx, &ended, &stop);
    supervise(&ctx.health, stop.clone(), || async move {
        let end = follow(Arc::clone(ctx), generation, stop_ref.clone()).await?;
        *ended_ref.lock().unwrap_or_else(|p| p.into_inner()) = end;
        Ok::<(), ProjectionError>(())
    })
    .await?;
    Ok(ended.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Applies the log to generation `generation`, batch by batch, from its
/// checkpoint.
async fn follow(
    ctx: Arc<Ctx>,
    generation: u32,
    mut stop: watch::Receiver<bool>,
) -> Result<FollowEnd, ProjectionError> {
    let schema = generation_schema(ctx.name, generation);
    let checkpoint = checkpoint_name(ctx.name, generation);
    let Some(mut committed) = read_checkpoint(ctx.store.pool(), &checkpoint).await? else {
        return Ok(FollowEnd::Retired);
    };
    ctx.publish(generation, committed, false);
    tracing::debug!(
        projection = ctx.name,
        generation,
        position = committed,
        "following"
    );
    let options = SubscriptionOptions {
        page_size: ctx.options.batch_size,
        idle_recheck: ctx.options.idle_recheck,
        ..SubscriptionOptions::default()
    };
    let live = ctx.progress.borrow().live == Some(generation);
    let mut subscription = ctx.store.subscribe_to_all(Some(committed), options).await?;
    if live {
        subscription.report_to(ctx.health.clone());
    }
    // The newest head of the log read, and whether `committed` equals it.
    let mut head = 0;
    let mut at_head = false;
    loop {
        if *stop.borrow() {
            return Ok(FollowEnd::Stopped);
        }
        if !at_head && committed >= head {
            head = ctx.store.head_position().await?;
            if committed >= head {
                ctx.publish(generation, committed, true);
            }
        }
        let first = tokio::select! {
            biased;
            () = stopped(&mut stop) => return Ok(FollowEnd::Stopped),
            event = subscription.next() => event?,
        };
        // The rest of the batch: only events known to be committed (up to
        // a head read), so that this never waits for new ones.
        let mut batch = vec![first];
        at_head = false;
        while batch.len() < ctx.options.batch_size {
            if subscription.position() >= head {
                head = ctx.store.head_position().await?;
                if subscription.position() >= head {
                    at_head = true;
                    break;
                }
            }
            batch.push(subscription.next().await?);
        }
        match commit_batch(&ctx, &schema, &checkpoint, &batch).await? {
            Batch::Committed(position) => committed = position,
            Batch::Ahead(stored) => {
                // Another process (or a switch) applied these already.
                committed = stored;
                at_head = false;
                if stored > subscription.position() {
                    subscription = ctx.store.subscribe_to_all(Some(stored), options).await?;
                    if live {
                        subscription.report_to(ctx.health.clone());
                    }
                }
            }
            Batch::Retired => return Ok(FollowEnd::Retired),
        }
        ctx.publish(generation, committed, at_head);
    }
}

enum Batch {
    /// Applied and committed up to this position.
    Committed(u64),
    /// Nothing to apply: the checkpoint is at this position, past the batch.
    Ahead(u64),
    /// The checkpoint is gone.
    Retired,
}

/// Applies `batch` (consecutive events) to `schema` and moves the
/// checkpoint, in one transaction.
async fn commit_batch(
    ctx: &Ctx,
    schema: &str,
    checkpoint: &str,
    batch: &[RecordedEvent],
) -> Result<Batch, ProjectionError> {
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Ok(Batch::Ahead(0));
    };
    let (first, last) = (first.global_position, last.global_position);
    let mut tx = ctx.store.pool().begin().await?;
    let Some(stored) = lock_checkpoint(&mut tx, checkpoint).await? else {
        tx.rollback().await?;
        return Ok(Batch::Retired);
    };
    if stored + 1 < first {
        return Err(ProjectionError::CheckpointMovedBack {
            checkpoint: checkpoint.to_string(),
            stored,
            expected: first - 1,
        });
    }
    if stored >= last {
        tx.rollback().await?;
        return Ok(Batch::Ahead(stored));
    }
    // `first - 1 <= stored < last`: apply what comes after `stored`.
    let skip = usize::try_from(stored + 1 - first).unwrap_or(usize::MAX);
    ctx.projection
        .apply(&mut tx, schema, &batch[skip..])
        .await?;
    save_checkpoint(&mut tx, checkpoint, last).await?;
    tx.commit().await?;
    tracing::trace!(
        projection = ctx.name,
        schema,
        from = stored + 1,
        to = last,
        "batch committed"
    );
    Ok(Batch::Committed(last))
}

/// Resolves once `stop` is set (or its sender is gone).
async fn stopped(stop: &mut watch::Receiver<bool>) {
    // An error means the sender is gone: stopping is all that is left.
    let _ = stop.wait_for(|stop| *stop).await;
}

/// `name` as a quoted SQL identifier.
fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

fn to_u32(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
