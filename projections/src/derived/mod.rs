//! The derived feeds (issue 17, parts 2 and 4): beside the log's raw
//! events, *who gained, lost or changed access to what* with each event
//! ([`EventAccessChange`], from [`AccessIndex::apply_tracked`]) and the
//! notifications each event makes ([`notifications`]).
//!
//! One follower ([`DerivedFeeds`]) keeps its own access index, applies the
//! log to it event by event, and writes both feeds to PostgreSQL
//! (`sl_access_changes`, `sl_notifications`) in the same transaction as its
//! checkpoint (`sl_checkpoints`, name [`CHECKPOINT`]). So the tables hold
//! rows for every position up to the checkpoint and for none after it: a
//! reader that reads up to the checkpoint never sees a position half
//! written, and a position is computed once however the follower stops
//! (the checkpoint moves only if it still is where this follower left it).
//!
//! A batch computed but not committed (the database away) is kept and
//! written first when the follower runs again; a follower whose index does
//! not stand at the checkpoint (another writer moved it) loads its index
//! again from the log up to the checkpoint.
//!
//! The HTTP feeds and the relay read the tables ([`rows`]).

pub mod notifications;
pub mod rows;

use std::sync::Arc;

use shareledger_events::store::supervise::PartHealth;
use shareledger_events::store::{PgEventStore, PositionFrom, SubscriptionOptions};
use shareledger_events::{Direction, RecordedEvent};
use tokio::sync::Mutex;

use crate::access::{AccessIndex, EventAccessChange};
use crate::decode::decode;
use crate::ProjectionError;
use notifications::{Notification, Notifier};

/// The follower's checkpoint in `sl_checkpoints`.
pub const CHECKPOINT: &str = "derived";

/// What one event derived.
#[derive(Debug, Clone)]
pub struct Derived {
    pub position: u64,
    pub event_id: uuid::Uuid,
    pub event_type: String,
    pub recorded_at: chrono::DateTime<chrono::Utc>,
    pub access: Vec<EventAccessChange>,
    pub notifications: Vec<Notification>,
}

/// A run of consecutive events' derivations, written in one transaction.
#[derive(Debug, Clone)]
struct Batch {
    /// The checkpoint the batch follows.
    after: u64,
    /// The position of its last event.
    last: u64,
    derived: Vec<Derived>,
}

#[derive(Default)]
struct State {
    index: AccessIndex,
    notifier: Notifier,
    /// Computed, and not known to be committed.
    pending: Option<Batch>,
}

/// The follower that writes the derived feeds.
#[derive(Clone)]
pub struct DerivedFeeds {
    store: PgEventStore,
    health: Option<PartHealth>,
    page_size: usize,
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for DerivedFeeds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("DerivedFeeds")
            .field("page_size", &self.page_size)
            .finish_non_exhaustive()
    }
}

impl DerivedFeeds {
    pub fn new(store: PgEventStore) -> Self {
        Self {
            store,
            health: None,
            page_size: 500,
            state: Arc::default(),
        }
    }

    /// Reports its progress (the position committed) to `health`.
    pub fn reporting_to(mut self, health: PartHealth) -> Self {
        self.health = Some(health);
        self
    }

    /// The position up to which both feeds are written.
    pub async fn checkpoint(&self) -> Result<u64, ProjectionError> {
        rows::checkpoint(&self.store).await
    }

    /// Follows the log and writes the feeds until `until` is written (or
    /// forever with `None`); returns the position written. A transient
    /// fault ends the run with an error; the next run goes on from there.
    pub async fn run(&self, until: Option<u64>) -> Result<u64, ProjectionError> {
        let mut state = self.state.lock().await;
        loop {
            if let Some(reached) = self.run_from_checkpoint(&mut state, until).await? {
                return Ok(reached);
            }
            // Another writer moved the checkpoint: start again from it.
            state.pending = None;
        }
    }

    /// One pass from the checkpoint; `None` when the checkpoint moved
    /// under this writer.
    async fn run_from_checkpoint(
        &self,
        state: &mut State,
        until: Option<u64>,
    ) -> Result<Option<u64>, ProjectionError> {
        let mut checkpoint = self.checkpoint().await?;
        if let Some(batch) = state.pending.clone() {
            if batch.after == checkpoint
                && rows::write(&self.store, batch.after, batch.last, &batch.derived).await?
            {
                checkpoint = batch.last;
            }
            state.pending = None;
        }
        if state.index.position() != checkpoint {
            self.load(state, checkpoint).await?;
        }
        self.advanced(checkpoint);
        if until.is_some_and(|u| checkpoint >= u) {
            return Ok(Some(checkpoint));
        }
        let options = SubscriptionOptions {
            page_size: self.page_size,
            ..SubscriptionOptions::default()
        };
        let mut subscription = self
            .store
            .subscribe_to_all(Some(checkpoint), options)
            .await?;
        // While idle the subscription still hears from the log (its
        // notifications and rechecks): the part counts as following.
        if let Some(health) = &self.health {
            subscription.report_to(health.clone());
        }
        loop {
            let mut events: Vec<RecordedEvent> = vec![subscription.next().await?];
            while subscription.buffered() > 0 && events.len() < self.page_size {
                events.push(subscription.next().await?);
            }
            let mut derived = Vec::with_capacity(events.len());
            for event in &events {
                derived.push(derive(state, event)?);
            }
            let last = events.last().map_or(checkpoint, |e| e.global_position);
            // Kept until known to be committed: a run after a fault writes
            // it first (the index has applied it already).
            let batch = state.pending.insert(Batch {
                after: checkpoint,
                last,
                derived,
            });
            if !rows::write(&self.store, batch.after, batch.last, &batch.derived).await? {
                return Ok(None);
            }
            state.pending = None;
            checkpoint = last;
            self.advanced(checkpoint);
            if until.is_some_and(|u| checkpoint >= u) {
                return Ok(Some(checkpoint));
            }
        }
    }

    /// A fresh index and notifier, loaded from the log up to `position`.
    async fn load(&self, state: &mut State, position: u64) -> Result<(), ProjectionError> {
        state.index = AccessIndex::new();
        state.notifier = Notifier::default();
        let mut at = 0;
        while at < position {
            let want = ((position - at) as usize).min(2_000);
            let page = self
                .store
                .read_all(Direction::Forwards, PositionFrom::At(at + 1), want)
                .await?;
            let Some(last) = page.last().map(|e| e.global_position) else {
                break;
            };
            for event in page.iter().filter(|e| e.global_position <= position) {
                match decode(event)? {
                    Some(decoded) => {
                        state.notifier.observe(&decoded);
                        state
                            .index
                            .apply_decoded(&crate::decode::EventRef::of(event), &decoded)?;
                    }
                    None => state.index.apply(event)?,
                }
            }
            at = last.min(position);
        }
        Ok(())
    }

    fn advanced(&self, position: u64) {
        if let Some(health) = &self.health {
            health.advanced(position);
        }
    }
}

/// Applies one event to the state; what it derived.
fn derive(state: &mut State, event: &RecordedEvent) -> Result<Derived, ProjectionError> {
    let decoded = decode(event)?;
    let access = state.index.apply_tracked_decoded(event, decoded.as_ref())?;
    let notifications = match &decoded {
        Some(decoded) => {
            state.notifier.observe(decoded);
            state.notifier.notify(&state.index, decoded)
        }
        None => Vec::new(),
    };
    Ok(Derived {
        position: event.global_position,
        event_id: event.event_id,
        event_type: event.event_type.clone(),
        recorded_at: event.recorded_at,
        access,
        notifications,
    })
}
