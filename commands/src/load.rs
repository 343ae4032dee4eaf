//! Loading what a decision needs: a stream's events decoded into the
//! catalog, and the expected revision to append or guard with.
//!
//! Streams are cached per service, as the raw events read or appended and
//! the revision they end at. A decision may run on cached streams because
//! every stream it read from the cache is then checked at append time
//! (written with, or guarded at, the revision it was read at): a stale cache
//! can only cost a retry with fresh reads, never a wrong decision. A refusal
//! decided on cached streams is decided again on fresh ones before it is
//! returned.

use std::collections::{BTreeSet, HashMap};
use std::sync::{Arc, Mutex};

use shareledger_core::catalog::{
    connection_stream, content_stream, site_stream, ConnectionEvent, ContentEvent, DomainEvent,
    Link, ObjectId, ScorecardId, SiteEvent, SiteId,
};
use shareledger_core::connection::ConnectionState;
use shareledger_core::content::ContentState;
use shareledger_core::site::SiteState;
use shareledger_events::store::{LogError, PgEventStore, RevisionFrom};
use shareledger_events::{Direction, ExpectedRevision};

use crate::{stream_name, CommandError};

/// Events read per page.
const PAGE: usize = 1_000;

/// Most streams a service caches; past it, the cache starts over.
const CACHE_LIMIT: usize = 50_000;

/// A stored event as the cache keeps it: type, schema version, data.
pub(crate) type RawEvent = (String, u32, serde_json::Value);

#[derive(Debug, Clone)]
struct Cached {
    revision: ExpectedRevision,
    events: Arc<Vec<RawEvent>>,
}

/// The streams a service has read or written, as of their last revision.
#[derive(Debug, Default)]
pub(crate) struct StreamCache {
    entries: Mutex<HashMap<String, Cached>>,
}

impl StreamCache {
    fn get(&self, stream: &str) -> Option<Cached> {
        self.entries
            .lock()
            .expect("not poisoned")
            .get(stream)
            .cloned()
    }

    fn put(&self, stream: &str, cached: Cached) {
        let mut entries = self.entries.lock().expect("not poisoned");
        if entries.len() >= CACHE_LIMIT {
            entries.clear();
        }
        entries.insert(stream.to_owned(), cached);
    }

    pub(crate) fn forget(&self, stream: &str) {
        self.entries.lock().expect("not poisoned").remove(stream);
    }

    /// Records an append of `events` to `stream`, which was at `expected`
    /// and is now at `last`. A cached entry at another revision is dropped.
    pub(crate) fn appended(
        &self,
        stream: &str,
        expected: ExpectedRevision,
        events: Vec<RawEvent>,
        last: u64,
    ) {
        let mut entries = self.entries.lock().expect("not poisoned");
        let Some(entry) = entries.get_mut(stream) else {
            return;
        };
        let first = match entry.revision {
            ExpectedRevision::NoStream => 0,
            ExpectedRevision::Exact(r) => r + 1,
            _ => u64::MAX,
        };
        let follows = entry.revision == expected
            && first.checked_add(events.len() as u64) == last.checked_add(1);
        if follows {
            let mut all = entry.events.as_ref().clone();
            all.extend(events);
            entry.events = Arc::new(all);
            entry.revision = ExpectedRevision::Exact(last);
        } else {
            entries.remove(stream);
        }
    }
}

/// What one attempt of a command has read: each stream's revision, and
/// whether it came from the cache.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    pub(crate) revisions: HashMap<String, ExpectedRevision>,
    pub(crate) from_cache: Vec<String>,
}

/// The streams one attempt of a command reads, with their revisions.
pub(crate) struct Loaded {
    store: PgEventStore,
    cache: Arc<StreamCache>,
    fresh: bool,
    reads: Arc<Mutex<Reads>>,
}

impl Loaded {
    /// `fresh`: read every stream from the log, not from the cache.
    pub(crate) fn new(
        store: PgEventStore,
        cache: Arc<StreamCache>,
        fresh: bool,
        reads: Arc<Mutex<Reads>>,
    ) -> Self {
        Self {
            store,
            cache,
            fresh,
            reads,
        }
    }

    /// Every event of `stream`, decoded, and the expectation that it is
    /// still as read (`NoStream` when it has no events).
    pub(crate) async fn events<E: DomainEvent>(
        &mut self,
        stream: &str,
    ) -> Result<(Vec<E>, ExpectedRevision), CommandError> {
        if !self.fresh {
            if let Some(cached) = self.cache.get(stream) {
                let events = cached
                    .events
                    .iter()
                    .map(|(t, v, d)| E::decode(t, *v, d))
                    .collect::<Result<Vec<E>, _>>()?;
                let mut reads = self.reads.lock().expect("not poisoned");
                reads.revisions.insert(stream.to_owned(), cached.revision);
                reads.from_cache.push(stream.to_owned());
                return Ok((events, cached.revision));
            }
        }
        let name = stream_name(stream);
        let mut events = Vec::new();
        let mut raw = Vec::new();
        let mut next = 0;
        let mut last = None;
        loop {
            let page = match self
                .store
                .read_stream(&name, Direction::Forwards, RevisionFrom::At(next), PAGE)
                .await
            {
                Ok(page) => page,
                Err(LogError::StreamNotFound { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let full = page.len() == PAGE;
            for recorded in page {
                events.push(E::decode(
                    &recorded.event_type,
                    recorded.schema_version,
                    &recorded.data,
                )?);
                last = Some(recorded.stream_revision);
                next = recorded.stream_revision + 1;
                raw.push((recorded.event_type, recorded.schema_version, recorded.data));
            }
            if !full {
                break;
            }
        }
        let expected = last.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        self.cache.put(
            stream,
            Cached {
                revision: expected,
                events: Arc::new(raw),
            },
        );
        self.reads
            .lock()
            .expect("not poisoned")
            .revisions
            .insert(stream.to_owned(), expected);
        Ok((events, expected))
    }

    /// A site's state (`None` if it was never registered) and its revision.
    pub(crate) async fn site(
        &mut self,
        site: SiteId,
    ) -> Result<(Option<SiteState>, ExpectedRevision), CommandError> {
        let (events, rev) = self.events::<SiteEvent>(&site_stream(site)).await?;
        Ok((SiteState::from_events(events.iter()), rev))
    }

    /// A site's content and its revision.
    pub(crate) async fn content(
        &mut self,
        site: SiteId,
    ) -> Result<(ContentState, ExpectedRevision), CommandError> {
        let (events, rev) = self.events::<ContentEvent>(&content_stream(site)).await?;
        Ok((ContentState::from_events(site, events.iter()), rev))
    }

    /// The scorecards `owner` shares with `partner` now (none unless the link
    /// owner→partner is active).
    pub(crate) async fn shared_with(
        &mut self,
        owner: SiteId,
        partner: SiteId,
    ) -> Result<BTreeSet<ScorecardId>, CommandError> {
        let (history, _) = self
            .events::<ConnectionEvent>(&connection_stream(owner, partner))
            .await?;
        let state = ConnectionState::from_events(owner, partner, history.iter());
        let link = Link {
            from: owner,
            to: partner,
        };
        Ok(if state.link_state(link).is_active() {
            state.shared(link).clone()
        } else {
            BTreeSet::new()
        })
    }

    /// What of `owner`'s content `partner` sees now (R-SHARE-2).
    pub(crate) async fn visible_to(
        &mut self,
        owner: SiteId,
        partner: SiteId,
        content: &ContentState,
    ) -> Result<BTreeSet<ObjectId>, CommandError> {
        let shared = self.shared_with(owner, partner).await?;
        Ok(content.visible_through(&shared))
    }

    /// The revision a loaded stream was read at.
    pub(crate) fn revision(&self, stream: &str) -> ExpectedRevision {
        self.reads
            .lock()
            .expect("not poisoned")
            .revisions
            .get(stream)
            .copied()
            .unwrap_or(ExpectedRevision::Any)
    }
}
