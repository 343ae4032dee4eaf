//! One access index kept current from the log in the serving process, and
//! consistency tokens: a query may demand "at least as fresh as position P"
//! and then waits, bounded, until the index has applied P.
//!
//! Every command result carries the global position of its last event. The
//! log's positions are dense and commit in order, so once the index has
//! applied position P it has applied every event up to P: a check made with
//! the token of a revoke can never see the revoked access (no new-enemy
//! problem).

use std::sync::{Arc, RwLock, RwLockReadGuard};
use std::time::{Duration, Instant};

use shareledger_events::store::{PgEventStore, SubscriptionOptions};
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::{AccessError, AccessIndex};
use crate::ProjectionError;

/// How the live index follows the log.
#[derive(Debug, Clone, Copy)]
pub struct LiveOptions {
    /// Events read from the log per page.
    pub page_size: usize,
    /// How long `start` waits for the first catch-up.
    pub load_timeout: Duration,
}

impl Default for LiveOptions {
    fn default() -> Self {
        Self {
            page_size: 2_000,
            load_timeout: Duration::from_secs(600),
        }
    }
}

/// Where the follower is.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Progress {
    At(u64),
    Stopped { at: u64, reason: String },
}

impl Progress {
    fn position(&self) -> u64 {
        match self {
            Progress::At(p) | Progress::Stopped { at: p, .. } => *p,
        }
    }
}

/// A shared, live access index. Clones share the same index.
#[derive(Debug, Clone)]
pub struct LiveAccess {
    index: Arc<RwLock<AccessIndex>>,
    progress: watch::Receiver<Progress>,
    stop: Arc<watch::Sender<bool>>,
}

impl LiveAccess {
    /// Loads the index from the whole log, then follows the log in a
    /// background task. Returns once the index has applied everything that
    /// was committed when it started. The task ends with an error if the log
    /// cannot be followed (the index then answers `Stopped` to fresh reads).
    pub async fn start(
        store: PgEventStore,
        options: LiveOptions,
    ) -> Result<(Self, JoinHandle<Result<(), ProjectionError>>), ProjectionError> {
        let head = store.head_position().await?;
        let index = Arc::new(RwLock::new(AccessIndex::new()));
        let (progress_tx, progress) = watch::channel(Progress::At(0));
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = tokio::spawn(follow(
            store,
            options,
            Arc::clone(&index),
            progress_tx,
            stop_rx,
        ));
        let live = Self {
            index,
            progress,
            stop: Arc::new(stop_tx),
        };
        match live.wait_for(head, options.load_timeout).await {
            Ok(()) => {
                // Lay the loaded index out afresh (see `compacted`); the
                // follower applies later events to the copy.
                let mut index = live
                    .index
                    .write()
                    .unwrap_or_else(|poisoned| poisoned.into_inner());
                let compact = index.compacted();
                *index = compact;
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

    /// The position of the last event the index applied.
    pub fn position(&self) -> u64 {
        self.progress.borrow().position()
    }

    /// Asks the follower to stop after the event it is applying.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    /// The index as it is now. Do not hold the guard across an `.await`.
    pub fn read(&self) -> RwLockReadGuard<'_, AccessIndex> {
        self.index
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Waits until the index has applied `position`, at most `timeout`.
    pub async fn wait_for(&self, position: u64, timeout: Duration) -> Result<(), AccessError> {
        let started = Instant::now();
        let mut progress = self.progress.clone();
        let reached = tokio::time::timeout(timeout, async {
            loop {
                match &*progress.borrow_and_update() {
                    Progress::At(p) if *p >= position => return Ok(()),
                    Progress::Stopped { at, .. } if *at >= position => return Ok(()),
                    Progress::Stopped { reason, .. } => {
                        return Err(AccessError::Stopped(reason.clone()))
                    }
                    Progress::At(_) => {}
                }
                if progress.changed().await.is_err() {
                    return Err(AccessError::Stopped("the follower has gone".into()));
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

    /// The index once it is at least as fresh as `min_position` (a
    /// consistency token), waiting at most `timeout`.
    pub async fn fresh(
        &self,
        min_position: Option<u64>,
        timeout: Duration,
    ) -> Result<RwLockReadGuard<'_, AccessIndex>, AccessError> {
        if let Some(p) = min_position {
            self.wait_for(p, timeout).await?;
        }
        Ok(self.read())
    }
}

async fn follow(
    store: PgEventStore,
    options: LiveOptions,
    index: Arc<RwLock<AccessIndex>>,
    progress: watch::Sender<Progress>,
    mut stop: watch::Receiver<bool>,
) -> Result<(), ProjectionError> {
    let result = follow_until_stopped(&store, options, &index, &progress, &mut stop).await;
    let at = progress.borrow().position();
    let reason = match &result {
        Ok(()) => "stopped".to_owned(),
        Err(e) => {
            tracing::error!(error = %e, position = at, "access index stopped following the log");
            e.to_string()
        }
    };
    progress.send_replace(Progress::Stopped { at, reason });
    result
}

async fn follow_until_stopped(
    store: &PgEventStore,
    options: LiveOptions,
    index: &RwLock<AccessIndex>,
    progress: &watch::Sender<Progress>,
    stop: &mut watch::Receiver<bool>,
) -> Result<(), ProjectionError> {
    let mut subscription = store
        .subscribe_to_all(
            Some(0),
            SubscriptionOptions {
                page_size: options.page_size,
                ..SubscriptionOptions::default()
            },
        )
        .await?;
    loop {
        let event = tokio::select! {
            event = subscription.next() => event?,
            _ = stop.wait_for(|stop| *stop) => return Ok(()),
        };
        let position = event.global_position;
        index
            .write()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
            .apply(&event)?;
        // Publish at the end of every read page (so at once when live), and
        // every `page_size` positions while catching up.
        if subscription.buffered() == 0 || position % options.page_size.max(1) as u64 == 0 {
            progress.send_replace(Progress::At(position));
        }
    }
}
