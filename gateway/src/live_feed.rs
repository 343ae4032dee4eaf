//! The log's new events, read once and broadcast to every Server-Sent
//! Events client of the changes feed (`crate::changes_stream`).
//!
//! One task reads the log after the last event it broadcast whenever the
//! process learns the log moved ([`PgEventStore::watch_known_head`]:
//! its own appends and the database's notifications), and at least every
//! [`IDLE_READ`] besides, and sends each event on a bounded broadcast
//! channel. However many clients listen, the log is read once. A client
//! that falls [`CAPACITY`] events behind (the default) is told so by the channel
//! (`Lagged`) and is dropped with a reason: it never slows the task or the
//! other clients. The task runs while anyone listens; a fault of the
//! database is retried every second.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use shareledger_events::store::{PgEventStore, PositionFrom};
use shareledger_events::{Direction, RecordedEvent};
use tokio::sync::broadcast;

/// Events a client may fall behind the broadcast before it is dropped (by
/// default; `GatewayOptions::feed_buffer`).
pub const CAPACITY: usize = 4_096;
/// The longest the task goes without reading the log while anyone listens.
pub const IDLE_READ: Duration = Duration::from_secs(1);

/// The broadcast of the log's new events.
#[derive(Clone)]
pub struct LiveFeed {
    sender: broadcast::Sender<Arc<RecordedEvent>>,
    /// Whether the task runs; set and cleared under the lock, so a client
    /// that subscribes as the task ends starts a new one.
    running: Arc<Mutex<bool>>,
}

impl LiveFeed {
    /// A broadcast that drops clients `capacity` events behind.
    pub fn new(capacity: usize) -> Self {
        Self {
            sender: broadcast::channel(capacity.max(1)).0,
            running: Arc::default(),
        }
    }

    /// A receiver of every event written from now on (and possibly some
    /// just before), in log order; starts the task if it is not running.
    pub fn subscribe(&self, store: &PgEventStore) -> broadcast::Receiver<Arc<RecordedEvent>> {
        let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
        let receiver = self.sender.subscribe();
        if !*running {
            *running = true;
            let (feed, store) = (self.clone(), store.clone());
            tokio::spawn(async move { feed.run(store).await });
        }
        receiver
    }

    async fn run(self, store: PgEventStore) {
        let mut known = store.watch_known_head();
        let mut sent = store.known_head();
        loop {
            {
                let mut running = self.running.lock().unwrap_or_else(|p| p.into_inner());
                if self.sender.receiver_count() == 0 {
                    *running = false;
                    return;
                }
            }
            match store
                .read_all(Direction::Forwards, PositionFrom::At(sent + 1), 1_000)
                .await
            {
                Ok(page) if !page.is_empty() => {
                    for event in page {
                        sent = event.global_position;
                        // No receiver now is fine: the count is checked above.
                        let _ = self.sender.send(Arc::new(event));
                    }
                    continue;
                }
                Ok(_) => {}
                Err(e) => {
                    tracing::warn!(error = %e, "the live feed could not read the log; retrying");
                    tokio::time::sleep(Duration::from_secs(1)).await;
                    continue;
                }
            }
            let _ = tokio::time::timeout(IDLE_READ, known.wait_for(|head| *head > sent)).await;
        }
    }
}
