//! Loading what a decision needs: a stream's events decoded into the
//! catalog, and the expected revision to append or guard with.
//!
//! Streams are cached per service, at the revision they end at: a site's,
//! a site's content and a connection stream as their folded state (a
//! decision then costs a clone of the state, not the decoding of every
//! event again), any other stream as its raw events. An append through the service moves a cached
//! entry forward (new events decoded and folded in); anything else drops it.
//! A decision may run on cached streams because every stream it read from
//! the cache is then checked at append time (written with, or guarded at,
//! the revision it was read at): a stale cache can only cost a retry with
//! fresh reads, never a wrong decision. A refusal (or a decision to write
//! nothing) made on cached streams stands only if every one of them is
//! still at the revision it was read at (one query for all,
//! `PgEventStore::stream_infos`); otherwise it is decided again on fresh
//! reads before it is returned.
//!
//! A fresh read of a cached stream reads only what follows the cached
//! revision and folds it in (streams only grow: the command service never
//! deletes one; a stream found deleted is read whole), so retrying after a
//! conflict or re-deciding a refusal costs one short query per stream, not
//! the stream's whole history.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex};

use shareledger_core::catalog::{
    connection_stream, content_stream, site_code_stream, site_stream, ConnectionEvent,
    ContentEvent, DomainEvent, SiteCodeEvent, SiteEvent, SiteId,
};
use shareledger_core::connection::ConnectionState;
use shareledger_core::content::ContentState;
use shareledger_core::site::SiteState;
use shareledger_core::{Facts, Read};
use shareledger_events::store::{LogError, PgEventStore, RevisionFrom};
use shareledger_events::{Direction, ExpectedRevision};

use crate::{stream_name, CommandError};

/// Events read per page.
const PAGE: usize = 1_000;

/// Most streams a service caches; past it, the cache starts over.
const CACHE_LIMIT: usize = 50_000;

/// Most out-of-order appends kept waiting per cached stream.
const PENDING_LIMIT: usize = 64;

/// A stored event as the cache keeps it: type, schema version, data.
pub(crate) type RawEvent = (String, u32, serde_json::Value);

/// What the cache keeps of a stream.
#[derive(Debug, Clone)]
enum Body {
    /// Its events, as stored.
    Raw(Arc<Vec<RawEvent>>),
    /// A site stream, folded (`None`: no `SiteRegistered` yet).
    Site(Arc<Option<SiteState>>),
    /// A content stream, folded.
    Content(Arc<ContentState>),
    /// A connection stream, folded.
    Connection(Arc<ConnectionState>),
}

/// A stream's state folded from its events, as the cache keeps it.
trait Folded: Clone + Sized {
    type Event: DomainEvent;
    fn apply(self, event: &Self::Event) -> Self;
    fn into_body(state: Arc<Self>) -> Body;
    fn from_body(body: &Body) -> Option<&Arc<Self>>;

    /// `state` with `events` (decoded) applied; `None` if one does not
    /// decode as the stream's events.
    fn extended(state: Arc<Self>, events: &[RawEvent]) -> Option<Body> {
        let mut state = Arc::unwrap_or_clone(state);
        for (t, v, d) in events {
            state = state.apply(&Self::Event::decode(t, *v, d).ok()?);
        }
        Some(Self::into_body(Arc::new(state)))
    }
}

impl Folded for Option<SiteState> {
    type Event = SiteEvent;
    fn apply(self, event: &SiteEvent) -> Self {
        SiteState::evolve(self, event)
    }
    fn into_body(state: Arc<Self>) -> Body {
        Body::Site(state)
    }
    fn from_body(body: &Body) -> Option<&Arc<Self>> {
        match body {
            Body::Site(state) => Some(state),
            _ => None,
        }
    }
}

impl Folded for ContentState {
    type Event = ContentEvent;
    fn apply(self, event: &ContentEvent) -> Self {
        self.evolve(event)
    }
    fn into_body(state: Arc<Self>) -> Body {
        Body::Content(state)
    }
    fn from_body(body: &Body) -> Option<&Arc<Self>> {
        match body {
            Body::Content(state) => Some(state),
            _ => None,
        }
    }
}

impl Folded for ConnectionState {
    type Event = ConnectionEvent;
    fn apply(self, event: &ConnectionEvent) -> Self {
        ConnectionState::evolve(self, event)
    }
    fn into_body(state: Arc<Self>) -> Body {
        Body::Connection(state)
    }
    fn from_body(body: &Body) -> Option<&Arc<Self>> {
        match body {
            Body::Connection(state) => Some(state),
            _ => None,
        }
    }
}

impl Body {
    /// This body with `events` (appended after it) applied; `None` if one
    /// does not decode as the stream's events.
    fn extended(self, events: Vec<RawEvent>) -> Option<Body> {
        match self {
            Body::Raw(mut all) => {
                Arc::make_mut(&mut all).extend(events);
                Some(Body::Raw(all))
            }
            Body::Site(state) => Folded::extended(state, &events),
            Body::Content(state) => Folded::extended(state, &events),
            Body::Connection(state) => Folded::extended(state, &events),
        }
    }
}

#[derive(Debug, Clone)]
struct Cached {
    revision: ExpectedRevision,
    body: Body,
    /// The global position up to which every event of the stream is in
    /// `body` (the head of the log when it was read, or the position of the
    /// service's own last event appended right after it). A decision's
    /// boundary items about this stream ask "nothing after this".
    complete_to: u64,
    /// The service's own appends that finished before an earlier one of
    /// theirs (out of revision order), by first revision: folded in once
    /// the gap before them is filled.
    pending: BTreeMap<u64, Appended>,
}

/// One append of the service's own to a cached stream.
#[derive(Debug, Clone)]
pub(crate) struct Appended {
    pub(crate) events: Vec<RawEvent>,
    pub(crate) first_revision: u64,
    pub(crate) last_revision: u64,
    pub(crate) last_position: u64,
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

    /// Records an append of the service's own to `stream`. When it
    /// continues the cached entry (its first revision follows the entry's),
    /// it is folded in, with any of the service's later appends that were
    /// waiting for it; when it does not (another writer's events, or an
    /// earlier append of ours not recorded yet, came between), it waits
    /// (a few), and the entry stays as it was: a decision on it is still
    /// checked against what it read (its boundary, or its revision).
    ///
    /// The entry is updated in place, under the cache's lock: it is never
    /// missing meanwhile, so a concurrent decision on the same stream never
    /// falls back to reading the whole stream from the log.
    pub(crate) fn appended(&self, stream: &str, append: Appended) {
        let mut entries = self.entries.lock().expect("not poisoned");
        let Some(entry) = entries.get_mut(stream) else {
            return;
        };
        entry.pending.insert(append.first_revision, append);
        let mut changed = false;
        loop {
            let next = match entry.revision {
                ExpectedRevision::NoStream => 0,
                ExpectedRevision::Exact(r) => r + 1,
                _ => break,
            };
            entry.pending.retain(|first, _| *first >= next);
            let Some(append) = entry.pending.remove(&next) else {
                break;
            };
            let body = std::mem::replace(&mut entry.body, Body::Raw(Arc::default()));
            let Some(body) = body.extended(append.events) else {
                entries.remove(stream);
                return;
            };
            entry.body = body;
            entry.revision = ExpectedRevision::Exact(append.last_revision);
            entry.complete_to = entry.complete_to.max(append.last_position);
            changed = true;
        }
        if !changed && entry.pending.len() > PENDING_LIMIT {
            entry.pending.clear();
        }
    }
}

/// What one attempt of a command has read: each stream's revision, and
/// whether it came from the cache.
#[derive(Debug, Default)]
pub(crate) struct Reads {
    pub(crate) revisions: HashMap<String, ExpectedRevision>,
    pub(crate) from_cache: Vec<String>,
    /// Up to which global position each stream read is complete.
    pub(crate) complete_to: HashMap<String, u64>,
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
        let (raw, expected) = match self.cached(stream).await? {
            Some((
                Cached {
                    revision,
                    body: Body::Raw(raw),
                    complete_to,
                    ..
                },
                verified,
            )) => {
                self.read(stream, revision, complete_to, !verified);
                (raw, revision)
            }
            _ => {
                let (raw, expected, complete_to) = self.read_log(stream).await?;
                self.cache.put(
                    stream,
                    Cached {
                        revision: expected,
                        body: Body::Raw(Arc::clone(&raw)),
                        complete_to,
                        pending: BTreeMap::new(),
                    },
                );
                (raw, expected)
            }
        };
        let events = raw
            .iter()
            .map(|(t, v, d)| E::decode(t, *v, d))
            .collect::<Result<Vec<E>, _>>()?;
        Ok((events, expected))
    }

    /// The cached entry of `stream`, and whether it was checked against the
    /// log just now: when this attempt reads fresh, the entry is first
    /// brought up to the stream's end by reading only the events after it
    /// (`None` if that is not possible: read the stream whole).
    async fn cached(&self, stream: &str) -> Result<Option<(Cached, bool)>, CommandError> {
        let Some(entry) = self.cache.get(stream) else {
            return Ok(None);
        };
        if !self.fresh {
            return Ok(Some((entry, false)));
        }
        let next = match entry.revision {
            ExpectedRevision::NoStream => 0,
            ExpectedRevision::Exact(r) => r + 1,
            _ => return Ok(None),
        };
        let Some((tail, last, head)) = self.read_from(stream, next).await? else {
            // Nothing visible any more: deleted since it was cached.
            self.cache.forget(stream);
            return Ok(None);
        };
        let revision = last.map_or(entry.revision, ExpectedRevision::Exact);
        let body = if tail.is_empty() {
            entry.body
        } else {
            match entry.body.extended(tail) {
                Some(body) => body,
                None => return Ok(None),
            }
        };
        let refreshed = Cached {
            revision,
            body,
            complete_to: head.max(entry.complete_to),
            pending: BTreeMap::new(),
        };
        self.cache.put(stream, refreshed.clone());
        Ok(Some((refreshed, true)))
    }

    /// The visible events of `stream` from revision `from` on, the
    /// revision of the last (`None`: no event from there), and the position
    /// up to which the stream is complete (the head of the log as of the
    /// last read). Reading on from a revision past 0, `None` when the
    /// stream does not simply continue there (nothing visible any more, or
    /// hidden revisions: it was deleted since).
    async fn read_from(
        &self,
        stream: &str,
        from: u64,
    ) -> Result<Option<(Vec<RawEvent>, Option<u64>, u64)>, CommandError> {
        let mut next = from;
        let name = stream_name(stream);
        let mut raw = Vec::new();
        let mut last = None;
        loop {
            let (page, head) = match self
                .store
                .read_stream_with_head(&name, Direction::Forwards, RevisionFrom::At(next), PAGE)
                .await
            {
                Ok(read) => read,
                Err(LogError::StreamNotFound { .. }) if from > 0 => return Ok(None),
                Err(LogError::StreamNotFound { .. }) => (Vec::new(), self.store.known_head()),
                Err(e) => return Err(e.into()),
            };
            let full = page.len() == PAGE;
            for recorded in page {
                if from > 0 && recorded.stream_revision != next {
                    return Ok(None);
                }
                last = Some(recorded.stream_revision);
                next = recorded.stream_revision + 1;
                raw.push((recorded.event_type, recorded.schema_version, recorded.data));
            }
            if !full {
                return Ok(Some((raw, last, head)));
            }
        }
    }

    /// Notes that this attempt read `stream` at `revision`, complete up to
    /// position `complete_to`.
    fn read(&self, stream: &str, revision: ExpectedRevision, complete_to: u64, from_cache: bool) {
        let mut reads = self.reads.lock().expect("not poisoned");
        reads.revisions.insert(stream.to_owned(), revision);
        reads.complete_to.insert(stream.to_owned(), complete_to);
        if from_cache {
            reads.from_cache.push(stream.to_owned());
        }
    }

    /// Every stored event of `stream` from the log, and its revision.
    async fn read_log(
        &self,
        stream: &str,
    ) -> Result<(Arc<Vec<RawEvent>>, ExpectedRevision, u64), CommandError> {
        // From the start, the read always answers.
        let (raw, last, complete_to) = self.read_from(stream, 0).await?.unwrap_or_default();
        let expected = last.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        self.read(stream, expected, complete_to, false);
        Ok((Arc::new(raw), expected, complete_to))
    }

    /// A stream's state folded from `initial`, and its revision: from the
    /// cache if it holds the stream folded, from the log otherwise.
    async fn folded<S: Folded>(
        &mut self,
        stream: &str,
        initial: S,
    ) -> Result<(S, ExpectedRevision), CommandError> {
        if let Some((entry, verified)) = self.cached(stream).await? {
            if let Some(state) = S::from_body(&entry.body) {
                self.read(stream, entry.revision, entry.complete_to, !verified);
                return Ok((state.as_ref().clone(), entry.revision));
            }
        }
        let (raw, revision, complete_to) = self.read_log(stream).await?;
        let mut state = initial;
        for (t, v, d) in raw.iter() {
            state = state.apply(&S::Event::decode(t, *v, d)?);
        }
        self.cache.put(
            stream,
            Cached {
                revision,
                body: S::into_body(Arc::new(state.clone())),
                complete_to,
                pending: BTreeMap::new(),
            },
        );
        Ok((state, revision))
    }

    /// A site's state (`None` if it was never registered) and its revision.
    pub(crate) async fn site(
        &mut self,
        site: SiteId,
    ) -> Result<(Option<SiteState>, ExpectedRevision), CommandError> {
        self.folded(&site_stream(site), None).await
    }

    /// A site's content and its revision.
    pub(crate) async fn content(
        &mut self,
        site: SiteId,
    ) -> Result<(ContentState, ExpectedRevision), CommandError> {
        let initial = ContentState::from_events(site, std::iter::empty());
        self.folded(&content_stream(site), initial).await
    }

    /// The links between two sites and the revision of their connection
    /// stream.
    pub(crate) async fn connection(
        &mut self,
        a: SiteId,
        b: SiteId,
    ) -> Result<(ConnectionState, ExpectedRevision), CommandError> {
        self.folded(&connection_stream(a, b), ConnectionState::new(a, b))
            .await
    }

    /// Loads what `read` names into `facts`.
    pub(crate) async fn load(
        &mut self,
        read: &Read,
        facts: &mut Facts,
    ) -> Result<(), CommandError> {
        match read {
            Read::Site(id) => facts.put_site(*id, self.site(*id).await?.0),
            Read::Content(id) => facts.put_content(self.content(*id).await?.0),
            Read::Connection(a, b) => {
                facts.put_connection(*a, *b, self.connection(*a, *b).await?.0)
            }
            Read::SiteCode(code) => {
                let (claims, _) = self
                    .events::<SiteCodeEvent>(&site_code_stream(code))
                    .await?;
                let holder = claims
                    .first()
                    .map(|SiteCodeEvent::SiteCodeClaimed { site_id, .. }| *site_id);
                facts.put_site_code(code.clone(), holder);
            }
            Read::ObjectOwner(object) => {
                // An object's owner never changes: read by its tag, not
                // guarded (no stream to guard).
                let created = self
                    .store
                    .read_tagged(&object.tag(), &["ObjectCreated"], 1)
                    .await?;
                let owner = created.first().and_then(|e| {
                    e.stream
                        .strip_prefix("content-")
                        .and_then(|id| uuid::Uuid::try_parse(id).ok())
                        .map(SiteId)
                });
                facts.put_object_owner(*object, owner);
            }
            Read::ScorecardOwner(scorecard) => {
                let created = self
                    .store
                    .read_tagged(&scorecard.tag(), &["ScorecardCreated"], 1)
                    .await?;
                let owner = created.first().and_then(|e| {
                    e.stream
                        .strip_prefix("content-")
                        .and_then(|id| uuid::Uuid::try_parse(id).ok())
                        .map(SiteId)
                });
                facts.put_scorecard_owner(*scorecard, owner);
            }
        }
        Ok(())
    }

    /// Every stream read so far.
    pub(crate) fn read_streams(&self) -> Vec<String> {
        let reads = self.reads.lock().expect("not poisoned");
        let mut streams: Vec<String> = reads.revisions.keys().cloned().collect();
        streams.sort();
        streams
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

#[cfg(test)]
mod tests {
    use shareledger_core::catalog::{
        Directions, Link, Name, ObjectId, ObjectKind, ScorecardId, SeatLimit, SiteCode,
    };

    use super::*;

    fn raw<E: DomainEvent>(event: &E) -> RawEvent {
        (
            event.event_type().to_owned(),
            event.schema_version(),
            event.data(),
        )
    }

    /// A folded entry moved forward by appended events equals the fold of
    /// the whole stream, wherever the append starts.
    #[test]
    fn a_cached_state_moved_forward_equals_the_fold_of_the_whole_stream() {
        let site = SiteId::new();
        let scorecard = ScorecardId::new();
        let object = ObjectId::new();
        let site_events = vec![
            SiteEvent::SiteRegistered {
                site_id: site,
                code: SiteCode::parse("ACME").unwrap(),
                name: Name::parse("Acme").unwrap(),
                seat_limit: SeatLimit::new(5).unwrap(),
                parent: None,
            },
            SiteEvent::SeatLimitSet {
                seat_limit: SeatLimit::new(9).unwrap(),
            },
            SiteEvent::TwoFactorRequirementSet { required: true },
        ];
        let content_events = vec![
            ContentEvent::ScorecardCreated {
                scorecard_id: scorecard,
                name: Name::parse("Outcomes").unwrap(),
            },
            ContentEvent::ObjectCreated {
                object_id: object,
                kind: ObjectKind::Indicator,
                name: Name::parse("Reading").unwrap(),
                container: None,
            },
            ContentEvent::ObjectPlacedOnScorecard {
                object_id: object,
                scorecard_id: scorecard,
            },
        ];
        let (a, b) = (site, SiteId::new());
        let link = Link { from: a, to: b };
        let connection_events = vec![
            ConnectionEvent::ConnectionRequested {
                requester: a,
                partner: b,
                directions: Directions::Offer,
                links: vec![link],
            },
            ConnectionEvent::LinksActivated {
                approver: b,
                links: vec![link],
                mutual_request: false,
            },
            ConnectionEvent::ScorecardShared {
                link,
                scorecard_id: scorecard,
            },
        ];
        let whole_connection = ConnectionState::from_events(a, b, &connection_events);
        for k in 0..=connection_events.len() {
            let before = Body::Connection(Arc::new(ConnectionState::from_events(
                b,
                a,
                &connection_events[..k],
            )));
            let after = before
                .extended(connection_events[k..].iter().map(raw).collect())
                .expect("our own events decode");
            let Body::Connection(state) = after else {
                panic!("a connection stays a connection")
            };
            assert_eq!(*state, whole_connection, "appended after {k} events");
            assert!(state.shared(link).contains(&scorecard));
        }
        let whole_site = SiteState::from_events(&site_events);
        let whole_content = ContentState::from_events(site, &content_events);
        for k in 0..=site_events.len() {
            let before = Body::Site(Arc::new(SiteState::from_events(&site_events[..k])));
            let after = before
                .extended(site_events[k..].iter().map(raw).collect())
                .expect("our own events decode");
            let Body::Site(state) = after else {
                panic!("a site stays a site")
            };
            assert_eq!(*state, whole_site, "appended after {k} events");
        }
        for k in 0..=content_events.len() {
            let before = Body::Content(Arc::new(ContentState::from_events(
                site,
                &content_events[..k],
            )));
            let after = before
                .extended(content_events[k..].iter().map(raw).collect())
                .expect("our own events decode");
            let Body::Content(state) = after else {
                panic!("content stays content")
            };
            assert_eq!(*state, whole_content, "appended after {k} events");
        }
    }

    /// The service's own appends to a cached stream, recorded out of
    /// revision order, are folded in once the gap before them fills; the
    /// entry is there all along (a concurrent decision never falls back to
    /// reading the whole stream).
    #[test]
    fn appends_recorded_out_of_order_fold_in_order_and_the_entry_stays() {
        let cache = StreamCache::default();
        let stream = "site-x";
        let registered = SiteEvent::SiteRegistered {
            site_id: SiteId::new(),
            code: SiteCode::parse("ACME").unwrap(),
            name: Name::parse("Acme").unwrap(),
            seat_limit: SeatLimit::new(5).unwrap(),
            parent: None,
        };
        cache.put(
            stream,
            Cached {
                revision: ExpectedRevision::Exact(0),
                body: Body::Site(Arc::new(SiteState::from_events([&registered]))),
                complete_to: 10,
                pending: BTreeMap::new(),
            },
        );
        let limit = |n: u32, revision: u64| Appended {
            events: vec![raw(&SiteEvent::SeatLimitSet {
                seat_limit: SeatLimit::new(n).unwrap(),
            })],
            first_revision: revision,
            last_revision: revision,
            last_position: 10 + revision,
        };
        let seats = |cache: &StreamCache| {
            let entry = cache.get(stream).expect("the entry stays");
            let Body::Site(state) = entry.body else {
                panic!("a site stays a site")
            };
            (
                entry.revision,
                state.as_ref().as_ref().unwrap().seat_limit.get(),
            )
        };
        // Revision 2 is recorded before revision 1: it waits.
        cache.appended(stream, limit(7, 2));
        assert_eq!(seats(&cache), (ExpectedRevision::Exact(0), 5));
        cache.appended(stream, limit(6, 1));
        assert_eq!(seats(&cache), (ExpectedRevision::Exact(2), 7));
        assert_eq!(cache.get(stream).unwrap().complete_to, 12);
    }

    /// An event that is not the stream's kind drops the entry.
    #[test]
    fn an_event_of_another_kind_drops_the_cached_state() {
        let body = Body::Site(Arc::new(None));
        let foreign = raw(&ContentEvent::ScorecardCreated {
            scorecard_id: ScorecardId::new(),
            name: Name::parse("Outcomes").unwrap(),
        });
        assert!(body.extended(vec![foreign]).is_none());
    }
}
