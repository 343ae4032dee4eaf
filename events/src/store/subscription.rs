//! Catch-up-then-live subscriptions to the whole log.
//!
//! A subscription reads `$all` forwards in pages from its checkpoint. When a
//! page comes back empty it is caught up: it LISTENs on the `sl_log` channel
//! (every append NOTIFYs it with its last position at commit) and reads again
//! after each notification. Because positions are dense and commit in order
//! (see `docs/event-store.md`), "everything after my last position" is always
//! the exact next slice of the log: no high-water mark, no skipped events. The
//! subscription checks that density as it goes and fails with
//! [`LogError::Gap`] rather than skip anything.
//!
//! A subscription given a [`PartHealth`] ([`Subscription::report_to`])
//! marks it in touch with the log at every successful read and every
//! notification, so that readers can tell a follower that is live from one
//! that is cut off. Every notification's position also raises the store's
//! [`PgEventStore::known_head`].
//!
//! A subscription of a store that reads from a streaming replica
//! ([`PgEventStore::reading_from`]) reads its pages there and LISTENs on
//! the primary (a hot standby cannot LISTEN). A notification may then come
//! before the replica has replayed the events it announces: while the
//! known head is beyond what the replica gave, the subscription reads
//! again every [`SubscriptionOptions::replica_recheck`] instead of waiting
//! for the next notification.

use std::collections::VecDeque;
use std::time::Duration;

use sqlx::postgres::PgListener;

use super::supervise::PartHealth;
use super::{LogError, PgEventStore, PositionFrom};
use crate::envelope::{Direction, RecordedEvent};

/// The channel every append notifies at commit.
pub const CHANNEL: &str = "sl_log";

/// How a subscription reads.
#[derive(Debug, Clone, Copy)]
pub struct SubscriptionOptions {
    /// Events fetched per read.
    pub page_size: usize,
    /// While live, how long to wait for a notification before reading anyway.
    /// New events normally arrive by notification; the read is a safety net
    /// for a notification lost with a dropped connection, and it is how an
    /// idle follower proves it is still in touch with the log (see
    /// [`PartHealth`]).
    pub idle_recheck: Duration,
    /// The longest a read of the log may take before the subscription
    /// gives up with a (transient) error: a connection that went silent
    /// without closing must not hold a follower forever.
    pub read_timeout: Duration,
    /// While the log's known head is beyond the last event read (a
    /// replica that has not replayed a commit yet), how long to wait
    /// before reading again.
    pub replica_recheck: Duration,
}

impl Default for SubscriptionOptions {
    fn default() -> Self {
        Self {
            page_size: 512,
            idle_recheck: Duration::from_secs(1),
            read_timeout: Duration::from_secs(10),
            replica_recheck: Duration::from_millis(2),
        }
    }
}

/// A running subscription. Call [`Subscription::next`] for each event.
pub struct Subscription {
    store: PgEventStore,
    options: SubscriptionOptions,
    /// The position of the last event handed out (the checkpoint).
    position: u64,
    buffer: VecDeque<RecordedEvent>,
    listener: Option<PgListener>,
    health: Option<PartHealth>,
}

impl Subscription {
    pub(super) async fn start(
        store: PgEventStore,
        checkpoint: u64,
        options: SubscriptionOptions,
    ) -> Result<Self, LogError> {
        Ok(Self {
            store,
            options: SubscriptionOptions {
                page_size: options.page_size.max(1),
                ..options
            },
            position: checkpoint,
            buffer: VecDeque::new(),
            listener: None,
            health: None,
        })
    }

    /// Marks `health` in touch with the log at every successful read and
    /// every notification from now on.
    pub fn report_to(&mut self, health: PartHealth) {
        self.health = Some(health);
    }

    fn contact(&self) {
        if let Some(health) = &self.health {
            health.contact();
        }
    }

    /// The position of the last event handed out (0 before the first).
    pub fn position(&self) -> u64 {
        self.position
    }

    /// Whether the subscription has read everything committed so far and is
    /// waiting for new events.
    pub fn is_live(&self) -> bool {
        self.listener.is_some() && self.buffer.is_empty()
    }

    /// How many events have been read from the log but not handed out yet.
    /// Zero after `next` means the subscription handed out everything it had
    /// read: the last event is as fresh as the log was at that read.
    pub fn buffered(&self) -> usize {
        self.buffer.len()
    }

    /// The next event in global order, waiting for one to commit if needed.
    pub async fn next(&mut self) -> Result<RecordedEvent, LogError> {
        loop {
            if let Some(event) = self.buffer.pop_front() {
                self.position = event.global_position;
                return Ok(event);
            }
            if self.fill().await? {
                continue;
            }
            match &mut self.listener {
                None => {
                    // Caught up for the first time: listen, then read again so
                    // that nothing committed between the read and LISTEN is missed.
                    let mut listener = PgListener::connect_with(self.store.pool()).await?;
                    listener.listen(CHANNEL).await?;
                    self.listener = Some(listener);
                }
                Some(listener) => {
                    // Events committed that the read did not return: a
                    // replica behind its primary. Read again soon. (On the
                    // primary a read sees every commit it was told of.)
                    let behind =
                        self.store.reads_from_replica() && self.store.known_head() > self.position;
                    let wait = if behind {
                        self.options.replica_recheck
                    } else {
                        self.options.idle_recheck
                    };
                    match tokio::time::timeout(wait, listener.recv()).await {
                        Ok(Ok(notification)) => {
                            if let Ok(position) = notification.payload().parse::<u64>() {
                                self.store.observe_head(position);
                            }
                            self.contact();
                        }
                        Err(_) => {}
                        // The listener reconnects on its next call; notifications
                        // may have been lost meanwhile, so read again anyway
                        // (which fails, ending the subscription, if the
                        // database is away).
                        Ok(Err(e)) => tracing::warn!(error = %e, "subscription listener lost"),
                    }
                }
            }
        }
    }

    /// Reads the next page into the buffer; false when there was nothing new.
    async fn fill(&mut self) -> Result<bool, LogError> {
        let read = self.store.read_all(
            Direction::Forwards,
            PositionFrom::At(self.position + 1),
            self.options.page_size,
        );
        let page = tokio::time::timeout(self.options.read_timeout, read)
            .await
            .map_err(|_| {
                LogError::Database(sqlx::Error::Io(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    format!(
                        "reading the log took longer than {} ms",
                        self.options.read_timeout.as_millis()
                    ),
                )))
            })??;
        self.contact();
        // Hand out the dense prefix; a missing position is reported when the
        // subscription reaches it, never skipped.
        for (expected, event) in (self.position + 1..).zip(page) {
            if event.global_position != expected {
                if self.buffer.is_empty() {
                    return Err(LogError::Gap {
                        after: expected - 1,
                        found: event.global_position,
                    });
                }
                break;
            }
            self.buffer.push_back(event);
        }
        Ok(!self.buffer.is_empty())
    }
}
