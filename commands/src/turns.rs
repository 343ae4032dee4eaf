//! Fair turns on a contended stream, within one process.
//!
//! Optimistic concurrency starves the occasional writer of a stream that
//! another writer keeps busy: the busy writer decides from its cache and
//! appends back to back, and the occasional one (which reads the stream
//! fresh after a conflict, decides, then appends) finds the busy writer's
//! next event inside its window every time, until it gives up.
//!
//! So a command that met contention twice takes its stream's **turn**
//! (one async mutex per stream, first come first served) and keeps it
//! until it finishes; a command that does not hold a turn, before it
//! appends to a stream whose turn another holds, waits for that turn to
//! end and decides again on fresh reads. A holder never waits for another
//! turn (it appends optimistically as before), so turns cannot deadlock;
//! a holder's conflicts can only come from appends already under way when
//! it took the turn, or from other processes (turns are not shared between
//! processes). Decisions bounded by a condition (they write with no
//! expected revision) neither take nor wait for turns.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use tokio::sync::OwnedMutexGuard;

/// The turns of the streams some command holds or waits for.
#[derive(Debug, Default)]
pub(crate) struct Turns {
    streams: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

/// A stream's turn, held until dropped.
#[derive(Debug)]
pub(crate) struct Turn {
    turns: Arc<Turns>,
    stream: String,
    guard: Option<OwnedMutexGuard<()>>,
}

impl Turns {
    fn lock_of(&self, stream: &str) -> Option<Arc<tokio::sync::Mutex<()>>> {
        self.streams
            .lock()
            .expect("not poisoned")
            .get(stream)
            .cloned()
    }

    /// Forgets `stream` when nobody holds or waits for its turn.
    fn forget_if_idle(&self, stream: &str) {
        let mut streams = self.streams.lock().expect("not poisoned");
        if streams
            .get(stream)
            .is_some_and(|lock| Arc::strong_count(lock) == 1)
        {
            streams.remove(stream);
        }
    }

    /// Waits for `stream`'s turn (after those who asked before) and holds it.
    pub(crate) async fn take(self: &Arc<Self>, stream: &str) -> Turn {
        let lock = Arc::clone(
            self.streams
                .lock()
                .expect("not poisoned")
                .entry(stream.to_owned())
                .or_default(),
        );
        let guard = lock.lock_owned().await;
        Turn {
            turns: Arc::clone(self),
            stream: stream.to_owned(),
            guard: Some(guard),
        }
    }

    /// If another command holds the turn of one of `streams`, waits until
    /// it ends and says so (what was decided meanwhile is to be decided
    /// again); false, at once, when none is held.
    pub(crate) async fn wait_for_others<'a>(
        &self,
        streams: impl IntoIterator<Item = &'a str>,
    ) -> bool {
        let mut waited = false;
        for stream in streams {
            let Some(lock) = self.lock_of(stream) else {
                continue;
            };
            if lock.try_lock().is_err() {
                drop(lock.lock().await);
                waited = true;
            }
            drop(lock);
            self.forget_if_idle(stream);
        }
        waited
    }
}

impl Drop for Turn {
    fn drop(&mut self) {
        // The guard keeps its own reference to the lock: let it go first.
        drop(self.guard.take());
        self.turns.forget_if_idle(&self.stream);
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    /// A turn makes others wait until it ends, and is forgotten once
    /// nobody holds or waits for it.
    #[tokio::test]
    async fn a_turn_makes_others_wait_and_is_forgotten_when_it_ends() {
        let turns = Arc::new(Turns::default());
        assert!(!turns.wait_for_others(["site-a"]).await, "no turn, no wait");
        let turn = turns.take("site-a").await;
        let waiter = {
            let turns = Arc::clone(&turns);
            tokio::spawn(async move { turns.wait_for_others(["site-b", "site-a"]).await })
        };
        tokio::time::sleep(Duration::from_millis(20)).await;
        assert!(!waiter.is_finished(), "waits while the turn is held");
        drop(turn);
        assert!(waiter.await.unwrap(), "waited, and says so");
        assert!(turns.streams.lock().unwrap().is_empty(), "forgotten");
    }

    /// Turns of one stream are taken in the order they were asked for.
    #[tokio::test]
    async fn turns_are_taken_first_come_first_served() {
        let turns = Arc::new(Turns::default());
        let first = turns.take("site-a").await;
        let order = Arc::new(Mutex::new(Vec::new()));
        let mut waiting = Vec::new();
        for i in 0..4 {
            let (turns, order) = (Arc::clone(&turns), Arc::clone(&order));
            waiting.push(tokio::spawn(async move {
                let _turn = turns.take("site-a").await;
                order.lock().unwrap().push(i);
            }));
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        drop(first);
        for task in waiting {
            task.await.unwrap();
        }
        assert_eq!(*order.lock().unwrap(), vec![0, 1, 2, 3]);
    }
}
