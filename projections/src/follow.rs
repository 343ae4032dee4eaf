//! Following the log into a read model held in memory (the access index,
//! the history archive), supervised: a transient fault (the database away,
//! a connection cut) ends the run, and the next run subscribes again from
//! the position of the last event applied, so nothing is lost and nothing
//! is applied twice; a permanent fault (an event that does not apply)
//! stops the follower and shows in its [`PartHealth`].

use std::sync::atomic::{AtomicU64, Ordering};

use shareledger_events::store::supervise::{supervise, Fault, PartHealth};
use shareledger_events::store::{PgEventStore, SubscriptionOptions};
use shareledger_events::RecordedEvent;
use tokio::sync::watch;

use crate::ProjectionError;

impl Fault for ProjectionError {
    /// The log or the read model's database was away; everything else
    /// (an event that does not decode or apply, a moved checkpoint, a
    /// panic) would happen again.
    fn is_transient(&self) -> bool {
        match self {
            ProjectionError::Log(e) => e.is_transient(),
            ProjectionError::Database(e) => e.is_transient(),
            ProjectionError::Failed { source, .. } => source.is_transient(),
            _ => false,
        }
    }
}

/// Applies every event after `health.position()` with `apply`, in order,
/// until `stop` is set or a permanent fault. The health's position moves at
/// the end of every page read (so at once when live) and every
/// `options.page_size` events while catching up.
pub(crate) async fn follow_in_memory(
    store: &PgEventStore,
    options: SubscriptionOptions,
    health: &PartHealth,
    stop: watch::Receiver<bool>,
    apply: impl Fn(&RecordedEvent) -> Result<(), ProjectionError>,
) -> Result<(), ProjectionError> {
    // The exact position applied, across runs (the health's may lag it by
    // up to a page).
    let applied = AtomicU64::new(health.position());
    let (applied, apply) = (&applied, &apply);
    let followed = supervise(health, stop, || async move {
        let from = applied.load(Ordering::Acquire);
        let mut subscription = store.subscribe_to_all(Some(from), options).await?;
        subscription.report_to(health.clone());
        let every = options.page_size.max(1) as u64;
        loop {
            let event = subscription.next().await?;
            let position = event.global_position;
            apply(&event)?;
            applied.store(position, Ordering::Release);
            if subscription.buffered() == 0 || position % every == 0 {
                health.advanced(position);
            }
        }
    })
    .await;
    if followed.is_ok() {
        health.stopped();
    }
    followed
}
