//! One projection's supervising task: it owns the projection's followers,
//! reads the registry and follows what it says, starts rebuilds, switches
//! (`switch.rs`), and recovers from transient faults; an outer task records
//! how it ended (see "Tasks, errors and stopping" in the runtime's module
//! documentation).

use std::collections::BTreeMap;
use std::future::{poll_fn, Future};
use std::pin::Pin;
use std::sync::Arc;
use std::task::Poll;
use std::time::Duration;

use shareledger_events::store::supervise::{backoff, Fault};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::task::{JoinError, JoinHandle};

use super::follower::{FollowEnd, Follower};
use super::progress::{Ctx, RunState};
use super::registry::register;
use super::registry::Registry;
use super::{stopped, Command};
use crate::ProjectionError;

/// One projection's supervising task: owns its followers, rebuilds and
/// switches.
pub(super) struct Supervisor {
    pub(super) ctx: Arc<Ctx>,
    pub(super) registry: Registry,
    /// The followers this process runs, by generation.
    pub(super) followers: BTreeMap<u32, Follower>,
}

pub(super) type FollowerEnd = Result<Result<FollowEnd, ProjectionError>, JoinError>;

impl Supervisor {
    pub(super) async fn run(
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
    pub(super) async fn recover(
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
    pub(super) async fn align(&mut self) -> Result<(), ProjectionError> {
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

    pub(super) async fn rebuild(
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

    pub(super) async fn follower_ended(
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

    /// Reads the registry again (another process changed it) and follows
    /// what it says now.
    pub(super) async fn reread_registry(&mut self) -> Result<(), ProjectionError> {
        self.registry = register(&self.ctx, false).await?;
        self.align().await
    }

    /// Stops every follower after its current batch.
    pub(super) async fn stop_all(&mut self) -> Result<(), ProjectionError> {
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
pub(super) fn spawn_supervisor(
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

pub(super) struct AbortOnDrop<T>(pub(super) JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The first follower to end, with its generation. Pending while none has
/// (or there are none).
pub(super) fn next_end(
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

pub(super) fn task_failure(name: &str, error: JoinError) -> ProjectionError {
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
