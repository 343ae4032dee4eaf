//! One access index kept current from the log in the serving process, and
//! consistency tokens: a query may demand "at least as fresh as position P"
//! and then waits, bounded, until the index has applied P.
//!
//! Every command result carries the global position of its last event. The
//! log's positions are dense and commit in order, so once the index has
//! applied position P it has applied every event up to P: a check made with
//! the token of a revoke can never see the revoked access (no new-enemy
//! problem).
//!
//! **Fail closed.** An answer also waits (bounded) until the index has
//! applied everything this process knows to be committed
//! ([`PgEventStore::known_head`]: every append it acknowledged, every
//! notification it received), so a check right after a `DeactivateUser`
//! this process wrote never answers from before it. And it answers only
//! while the follower is following: when the follower is retrying after a
//! fault (the database away), failed, or has not heard from the log for
//! [`LiveOptions::max_silence`], the answer is
//! [`AccessError::Stale`] (HTTP 503 `read_model_stale`), never a possibly
//! stale *allowed*. The follower itself survives transient faults and
//! resumes from the last event it applied (`crate::follow`).

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use shareledger_events::store::supervise::{
    Freshness, NotFresh, PartHealth, PartState, PartStatus,
};
use shareledger_events::store::{PgEventStore, SubscriptionOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{AccessError, AccessIndex};
use crate::follow::follow_in_memory;
use crate::ProjectionError;

/// How the live index follows the log, and how fresh its answers must be.
#[derive(Debug, Clone, Copy)]
pub struct LiveOptions {
    /// Events read from the log per page.
    pub page_size: usize,
    /// How long `start` waits for the first catch-up.
    pub load_timeout: Duration,
    /// How many events behind the log's known head the index may still
    /// answer without waiting (0: it must have applied every event this
    /// process knows to be committed).
    pub max_lag: u64,
    /// How long since the follower last heard from the log it still counts
    /// as following (it reads the log at least every
    /// [`SubscriptionOptions::idle_recheck`] when idle).
    pub max_silence: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            page_size: 2_000,
            load_timeout: Duration::from_secs(600),
            max_lag: 0,
            max_silence: Duration::from_secs(5),
        }
    }
}

/// A shared, live access index. Clones share the same index.
#[derive(Debug, Clone)]
pub struct LiveAccess {
    index: Arc<RwLock<AccessIndex>>,
    store: PgEventStore,
    health: PartHealth,
    options: LiveOptions,
    stop: Arc<watch::Sender<bool>>,
    /// The position of the snapshot the index started from (0: the whole
    /// log was replayed).
    started_from: u64,
}

impl LiveAccess {
    /// Loads the index from the whole log, then follows the log in a
    /// background task. Returns once the index has applied everything that
    /// was committed when it started. The task survives transient faults
    /// and ends with an error only on a permanent one (the index then
    /// answers [`AccessError::Stale`]).
    pub async fn start(
        store: PgEventStore,
        options: LiveOptions,
    ) -> Result<(Self, JoinHandle<Result<(), ProjectionError>>), ProjectionError> {
        Self::start_from(store, options, AccessIndex::new()).await
    }

    /// As [`LiveAccess::start`], from the newest index snapshot the
    /// integrity chain vouches for (`super::snapshot`), reading the log only
    /// after it; from the whole log when there is none.
    pub async fn start_from_snapshot(
        store: PgEventStore,
        options: LiveOptions,
    ) -> Result<(Self, JoinHandle<Result<(), ProjectionError>>), ProjectionError> {
        let initial = super::snapshot::load(&store)
            .await?
            .unwrap_or_else(AccessIndex::new);
        Self::start_from(store, options, initial).await
    }

    /// Starts from `initial` (an empty index, or a snapshot at its
    /// position) and applies the log after it.
    async fn start_from(
        store: PgEventStore,
        options: LiveOptions,
        initial: AccessIndex,
    ) -> Result<(Self, JoinHandle<Result<(), ProjectionError>>), ProjectionError> {
        let head = store.head_position().await?;
        let started_from = initial.position();
        let health = PartHealth::new("access_index", started_from);
        let index = Arc::new(RwLock::new(initial));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = {
            let (store, health, index) = (store.clone(), health.clone(), Arc::clone(&index));
            let subscription = SubscriptionOptions {
                page_size: options.page_size,
                ..SubscriptionOptions::default()
            };
            tokio::spawn(async move {
                follow_in_memory(&store, subscription, &health, stop_rx, |event| {
                    index
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .apply(event)
                })
                .await
            })
        };
        let live = Self {
            index,
            store,
            health,
            options,
            stop: Arc::new(stop_tx),
            started_from,
        };
        match live.wait_for(head, options.load_timeout).await {
            Ok(()) => {
                // Lay the loaded index out afresh (see `compacted`); the
                // follower applies later events to the copy. An index
                // decoded from a snapshot was laid out afresh by decoding:
                // it is copied only when most of it came from the log.
                let mut index = live
                    .index
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                if index.position().saturating_sub(started_from) > started_from {
                    let compact = index.compacted();
                    *index = compact;
                }
                drop(index);
                Ok((live, task))
            }
            Err(e) => {
                live.stop();
                match task.await {
                    Ok(Err(log)) => Err(log),
                    _ => Err(ProjectionError::NotLoaded(e.to_string())),
                }
            }
        }
    }

    /// The position of the last event the index applied (as published: at
    /// the end of every page read).
    pub fn position(&self) -> u64 {
        self.health.position()
    }

    /// The position of the snapshot the index started from; 0 when it
    /// replayed the whole log.
    pub fn started_from(&self) -> u64 {
        self.started_from
    }

    /// The follower's health (state, position, last fault), for `/ready`.
    pub fn health(&self) -> &PartHealth {
        &self.health
    }

    /// Asks the follower to stop after the event it is applying.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// A copy of the index as it is now (for a snapshot): taken under the
    /// read lock, which the follower waits for meanwhile.
    pub fn copy(&self) -> AccessIndex {
        self.read().compacted()
    }

    /// The index as it is now, however fresh. Do not hold the guard across
    /// an `.await`. Answers to callers go through [`LiveAccess::fresh`].
    pub fn read(&self) -> RwLockReadGuard<'_, AccessIndex> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until the index has applied `position`, at most `timeout`
    /// (while the follower retries after a fault, too). A follower stopped
    /// for good is [`AccessError::Stale`] at once.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), AccessError> {
        let started = Instant::now();
        let mut status = self.health.subscribe();
        let reached = tokio::time::timeout(timeout, async {
            loop {
                {
                    let now = status.borrow_and_update();
                    if now.position >= position {
                        return Ok(());
                    }
                    if matches!(now.state, PartState::Failed | PartState::Stopped) {
                        return Err(self.stale(&now));
                    }
                }
                if status.changed().await.is_err() {
                    return Err(self.stale(&self.health.status()));
                }
            }
        })
        .await;
        match reached {
            Ok(result) => result,
            Err(_) => Err(AccessError::NotFreshEnough {
                wanted: position,
                reached: self.position(),
                waited_ms: started.elapsed().as_millis() as u64,
            }),
        }
    }

    /// The index, once it may answer: the follower is following (in touch
    /// with the log within [`LiveOptions::max_silence`]) and the index has
    /// applied `min_position` (a consistency token) and everything this
    /// process knows to be committed (less [`LiveOptions::max_lag`]).
    /// Waits at most `timeout` for the index to get there; a follower that
    /// is not following is [`AccessError::Stale`] at once.
    pub async fn fresh(
        &self,
        min_position: Option<u64>,
        timeout: Duration,
    ) -> Result<RwLockReadGuard<'_, AccessIndex>, AccessError> {
        let bounds = Freshness {
            max_lag: self.options.max_lag,
            max_silence: self.options.max_silence,
        };
        self.health
            .fresh(self.store.watch_known_head(), min_position, bounds, timeout)
            .await
            .map_err(|e| match e {
                NotFresh::Stale {
                    reached,
                    head,
                    state,
                } => AccessError::Stale {
                    reached,
                    head,
                    state,
                },
                NotFresh::Behind {
                    wanted,
                    reached,
                    waited_ms,
                } => AccessError::NotFreshEnough {
                    wanted,
                    reached,
                    waited_ms,
                },
            })?;
        Ok(self.read())
    }

    fn stale(&self, status: &PartStatus) -> AccessError {
        AccessError::Stale {
            reached: status.position,
            head: self.store.known_head().max(status.position),
            state: status.describe(),
        }
    }
}
