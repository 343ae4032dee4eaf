//! What this process knows of one projection, shared by its tasks and
//! watched by waiters: each followed generation's position, whether the
//! projection runs, and its health as `/ready` and answers see it.

use std::collections::BTreeMap;
use std::sync::Arc;

use shareledger_events::store::lease::Leases;
use shareledger_events::store::supervise::PartHealth;
use shareledger_events::store::PgEventStore;
use tokio::sync::watch;

use super::status::ProjectionState;
use super::RuntimeOptions;
use crate::projection::SqlProjection;
use crate::ProjectionError;

/// What one projection's tasks share.
pub(super) struct Ctx {
    pub(super) store: PgEventStore,
    pub(super) projection: Arc<dyn SqlProjection>,
    pub(super) name: &'static str,
    pub(super) version: u32,
    pub(super) options: RuntimeOptions,
    pub(super) progress: watch::Sender<Progress>,
    /// The projection's health as `/ready` and answers see it: the live
    /// generation's position and contact with the log, and the faults of
    /// any of its tasks.
    pub(super) health: PartHealth,
    /// This process's lease session, when generations are followed under
    /// leases (several processes on one log).
    pub(super) leases: Option<Leases>,
}

impl Ctx {
    /// Records that generation `generation` has committed up to `position`
    /// (positions only move forward: a switch may have moved it further).
    pub(super) fn publish(&self, generation: u32, position: u64, at_head: bool) {
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

impl Ctx {
    /// Records that another process (the lease's holder) has committed
    /// generation `generation` up to `position`: for waiters only (the
    /// health is the lease's to set, and a standby never switches).
    pub(super) fn observe(&self, generation: u32, position: u64) {
        self.progress.send_if_modified(|p| {
            let Some(current) = p.positions.get_mut(&generation) else {
                return false;
            };
            if position <= current.position {
                return false;
            }
            current.position = position;
            current.at_head = false;
            true
        });
    }
}

/// What this process knows of one projection, as watched by waiters.
#[derive(Debug, Clone, Default)]
pub(super) struct Progress {
    /// The live generation, when this process follows it.
    pub(super) live: Option<u32>,
    /// The generation being built, when this process builds it.
    pub(super) building: Option<u32>,
    /// Each followed generation's position.
    pub(super) positions: BTreeMap<u32, GenerationProgress>,
    pub(super) state: RunState,
}

impl Progress {
    /// Whether a wait for `position` is over (reached, or never will be).
    pub(super) fn settled_at(&self, position: u64) -> bool {
        match self.state {
            RunState::Running => self
                .live
                .and_then(|g| self.positions.get(&g))
                .is_some_and(|p| p.position >= position),
            RunState::Superseded | RunState::Failed(_) | RunState::Stopped => true,
        }
    }

    pub(super) fn building_at_head(&self) -> bool {
        self.building
            .and_then(|g| self.positions.get(&g))
            .is_some_and(|p| p.at_head)
    }
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(super) struct GenerationProgress {
    /// The checkpoint, as last committed (or seen) by this process.
    pub(super) position: u64,
    /// Whether `position` was the head of the log when last read.
    pub(super) at_head: bool,
}

#[derive(Debug, Clone, Default)]
pub(super) enum RunState {
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
    pub(super) fn public(&self) -> ProjectionState {
        match self {
            Self::Running => ProjectionState::Running,
            Self::Superseded => ProjectionState::Superseded,
            Self::Failed(e) => ProjectionState::Failed(e.to_string()),
            Self::Stopped => ProjectionState::Stopped,
        }
    }

    /// An error for a projection that no longer runs.
    pub(super) fn check(self, name: &str) -> Result<(), ProjectionError> {
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
