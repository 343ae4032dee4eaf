//! The command service: core's decisions over the event log, through one
//! generic executor ([`Service::execute`]).
//!
//! For any command (a type implementing [`shareledger_core::Decision`]) it
//! loads the streams the decision reads (folding their events into states;
//! from its cache or the log), decides, and appends the events with the
//! expected revisions it read, guarding every other stream it read, so that
//! a decision is only recorded if nothing it looked at changed meanwhile; a
//! decision that declares a consistency boundary is checked against that
//! boundary instead. On a concurrency conflict it reloads and decides again,
//! a bounded number of times ([`MAX_ATTEMPTS`]); after contention met twice
//! it takes the stream's turn in this process (`turns.rs`), so that a stream
//! one writer keeps busy starves no other.
//!
//! **Idempotency keys.** Every command carries one ([`Issued::key`]). The
//! ids of the events it writes are derived from the key (UUID v5 of the key
//! and the event's index), so re-sending a key finds its first result in the
//! log and returns it without writing anything; two concurrent sends of one
//! key write once, because the log's idempotent appends see the same ids.
//!
//! **Metadata.** Every event records the actor, the key as correlation id,
//! and, for consequences (a scorecard unshared because its link was
//! revoked), the system as actor and the triggering event as causation.
//!
//! **API boundary:** [`Service`], [`Issued`], [`Outcome`], [`CommandError`].

mod consequences;
mod load;
mod turns;

use shareledger_core::catalog::{
    connection_stream, content_stream, site_code_stream, site_stream, ClaimedId, DomainEvent,
};
use shareledger_core::{Context, Decision, DomainError, Facts, Write};
use shareledger_events::store::{LogError, PgEventStore, StreamAppend};
use shareledger_events::{Actor, EventMetadata, EventType, ExpectedRevision, NewEvent, StreamName};
use uuid::Uuid;

pub use consequences::ConsequenceWorker;
use load::Loaded;

/// How many times a command is decided again after a concurrency conflict.
pub const MAX_ATTEMPTS: usize = 8;

/// Namespace of the event ids derived from idempotency keys.
const EVENT_ID_NAMESPACE: Uuid = Uuid::from_u128(0x5f0c_6a4e_2b1d_4c7e_9a3f_1e2d_3c4b_5a69);

/// Who issues a command, and its idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issued {
    pub actor: Actor,
    /// Re-sending a key returns the first result and writes nothing.
    pub key: Uuid,
}

/// One event a command wrote.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Written {
    pub event_id: Uuid,
    pub stream: String,
    pub event_type: String,
    pub stream_revision: u64,
    pub global_position: u64,
}

/// What a command wrote. `last_position` is its consistency token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Outcome {
    pub events: Vec<Written>,
    pub last_position: u64,
    /// True when the key had been seen: this is the first send's result.
    pub replayed: bool,
}

/// Why a command did not succeed. Nothing was written.
#[derive(Debug, thiserror::Error)]
pub enum CommandError {
    #[error(transparent)]
    Domain(#[from] DomainError),
    #[error("the streams this command needs kept changing; gave up after {attempts} attempts")]
    Contended { attempts: usize },
    #[error("a stored event does not decode: {0}")]
    Decode(#[from] shareledger_core::catalog::DecodeError),
    #[error(transparent)]
    Log(#[from] LogError),
}

impl shareledger_events::store::supervise::Fault for CommandError {
    /// Contention and the database being away pass; a domain refusal or an
    /// event that does not decode would happen again.
    fn is_transient(&self) -> bool {
        match self {
            CommandError::Contended { .. } => true,
            CommandError::Log(e) => e.is_transient(),
            CommandError::Domain(_) | CommandError::Decode(_) => false,
        }
    }
}

impl CommandError {
    /// A stable code for this error (the domain's own codes for domain errors).
    pub fn code(&self) -> &'static str {
        match self {
            CommandError::Domain(e) => e.code(),
            CommandError::Contended { .. } => "contended",
            CommandError::Decode(_) => "undecodable_event",
            CommandError::Log(_) => "log_error",
        }
    }
}

/// An event to write: its type, data, tags, and whether it is a
/// consequence (attributed to the system, caused by the command's first
/// event).
#[derive(Debug)]
struct PlannedEvent {
    event_type: String,
    data: serde_json::Value,
    tags: Vec<shareledger_events::Tag>,
    consequence: bool,
}

/// What a decision wants written: events per stream with expectations, and
/// what must not have changed since it read: the streams it read (guards,
/// at their revisions), or, when it declares one, its consistency boundary.
#[derive(Debug, Default)]
struct Plan {
    parts: Vec<(StreamName, ExpectedRevision, Vec<PlannedEvent>)>,
    guards: Vec<(StreamName, ExpectedRevision)>,
    /// The decision's consistency boundary: when set, it replaces the
    /// expectations of the streams it writes and every guard.
    boundary: Option<Vec<shareledger_core::boundary::BoundaryItem>>,
    /// The ids the events create: each on the condition that no event
    /// created it before, on any site ([`Plan::claims`]).
    created: Vec<ClaimedId>,
    /// Set when the whole plan is a consequence of an earlier event (written
    /// by a process manager): every event is the system's, caused by it.
    caused_by: Option<Uuid>,
}

impl Plan {
    fn write<E: DomainEvent>(
        &mut self,
        stream: &str,
        expected: ExpectedRevision,
        events: &[E],
        is_consequence: impl Fn(&E) -> bool,
    ) {
        self.created
            .extend(events.iter().filter_map(|e| e.created_id()));
        let events = events
            .iter()
            .map(|e| PlannedEvent {
                event_type: e.event_type().to_owned(),
                data: e.data(),
                tags: e.tags_on(stream),
                consequence: is_consequence(e),
            })
            .collect::<Vec<_>>();
        if events.is_empty() {
            return;
        }
        // A decision's own events and their consequences on one stream
        // (an archive and the placements it removes) are one part.
        let name = stream_name(stream);
        match self.parts.iter_mut().find(|(s, _, _)| *s == name) {
            Some((_, _, planned)) => planned.extend(events),
            None => self.parts.push((name, expected, events)),
        }
    }

    /// Plans one of a decision's writes, expecting its stream at the
    /// revision it was read at.
    fn write_decided(&mut self, loaded: &Loaded, write: Write) {
        match write {
            Write::Site(site, events) => {
                let stream = site_stream(site);
                self.write(&stream, loaded.revision(&stream), &events, |_| false);
            }
            Write::SiteConsequences(site, events) => {
                let stream = site_stream(site);
                self.write(&stream, loaded.revision(&stream), &events, |_| true);
            }
            Write::SiteCode(code, events) => {
                let stream = site_code_stream(&code);
                self.write(&stream, loaded.revision(&stream), &events, |_| false);
            }
            Write::Connection(a, b, events) => {
                let stream = connection_stream(a, b);
                self.write(
                    &stream,
                    loaded.revision(&stream),
                    &events,
                    shareledger_core::connection::is_consequence,
                );
            }
            Write::Content(site, events) => {
                let stream = content_stream(site);
                self.write(&stream, loaded.revision(&stream), &events, |_| false);
            }
            Write::ContentConsequences(site, events) => {
                let stream = content_stream(site);
                self.write(&stream, loaded.revision(&stream), &events, |_| true);
            }
        }
    }

    /// Guards a stream the decision read, at the revision it was read at.
    fn guard_read(&mut self, loaded: &Loaded, stream: &str) {
        self.guard(stream, loaded.revision(stream));
    }

    /// Bounds the decision by `items` instead of the revisions of the
    /// streams it read (see `shareledger_core::boundary`).
    fn bounded_by(&mut self, items: Vec<shareledger_core::boundary::BoundaryItem>) {
        self.boundary = Some(items);
    }

    /// The condition items that make the ids this plan creates its own:
    /// no event created them before, anywhere in the log.
    fn claims(
        &self,
    ) -> impl Iterator<Item = (shareledger_events::Tag, &'static [&'static str])> + '_ {
        self.created.iter().map(|id| (id.tag(), id.created_by()))
    }

    fn guard(&mut self, stream: &str, expected: ExpectedRevision) {
        let name = stream_name(stream);
        if !self.parts.iter().any(|(s, _, _)| *s == name)
            && !self.guards.iter().any(|(s, _)| *s == name)
        {
            self.guards.push((name, expected));
        }
    }
}

/// Of the ids a plan creates, the one the event of `event_type` tagged `tag`
/// (a failed condition's conflict) created already, if it is one.
fn created_before(created: &[ClaimedId], tag: &str, event_type: &str) -> Option<ClaimedId> {
    created
        .iter()
        .copied()
        .find(|id| id.tag().as_str() == tag && id.created_by().contains(&event_type))
}

/// The refusal of an id created already: the thing exists (on some site).
fn exists_already(id: ClaimedId) -> DomainError {
    match id {
        ClaimedId::User(id) => DomainError::UserExists(id),
        ClaimedId::Scorecard(id) => DomainError::ScorecardExists(id),
        ClaimedId::Object(id) => DomainError::ObjectExists(id),
        ClaimedId::Relationship(_) => DomainError::RelationshipExists,
    }
}

fn stream_name(stream: &str) -> StreamName {
    StreamName::parse(stream).expect("catalog stream names are valid")
}

/// The event id of the `index`-th event written under `key`.
pub fn event_id(key: Uuid, index: usize) -> Uuid {
    let mut name = key.as_bytes().to_vec();
    name.extend_from_slice(&(index as u64).to_be_bytes());
    Uuid::new_v5(&EVENT_ID_NAMESPACE, &name)
}

/// Core's decisions over the log.
#[derive(Debug, Clone)]
pub struct Service {
    store: PgEventStore,
    cache: std::sync::Arc<load::StreamCache>,
    turns: std::sync::Arc<turns::Turns>,
}

impl Service {
    pub fn new(store: PgEventStore) -> Self {
        Self {
            store,
            cache: Default::default(),
            turns: Default::default(),
        }
    }

    pub fn store(&self) -> &PgEventStore {
        &self.store
    }

    /// The first result of `key`, if it was written already.
    async fn replay(&self, key: Uuid) -> Result<Option<Outcome>, CommandError> {
        let first = self.store.read_events_by_id(&[event_id(key, 0)]).await?;
        if first.is_empty() {
            return Ok(None);
        }
        let mut events = Vec::new();
        let mut index = 0;
        loop {
            let ids: Vec<Uuid> = (index..index + 64).map(|i| event_id(key, i)).collect();
            let found = self.store.read_events_by_id(&ids).await?;
            let done = found.len() < ids.len();
            events.extend(found);
            if done {
                break;
            }
            index += 64;
        }
        events.sort_by_key(|e| e.global_position);
        Ok(Some(Outcome {
            last_position: events.last().map_or(0, |e| e.global_position),
            events: events
                .into_iter()
                .map(|e| Written {
                    event_id: e.event_id,
                    stream: e.stream,
                    event_type: e.event_type,
                    stream_revision: e.stream_revision,
                    global_position: e.global_position,
                })
                .collect(),
            replayed: true,
        }))
    }

    /// Whether every stream an attempt read from the cache is still at the
    /// revision it was read at (nothing appended, deleted or tombstoned
    /// since): then what it decided is what a fresh read would decide.
    async fn was_current(&self, reads: &load::Reads) -> Result<bool, CommandError> {
        let names: Vec<StreamName> = reads.from_cache.iter().map(|s| stream_name(s)).collect();
        let infos = self.store.stream_infos(&names).await?;
        Ok(reads.from_cache.iter().zip(&infos).all(|(stream, info)| {
            reads
                .revisions
                .get(stream)
                .is_some_and(|read| info.unchanged_since(*read))
        }))
    }

    /// Runs `decide` until its plan is appended, a domain error, or too many
    /// conflicts. `decide` loads what it needs through `Loaded` each attempt.
    async fn run<F, Fut>(&self, issued: &Issued, decide: F) -> Result<Outcome, CommandError>
    where
        F: Fn(Loaded) -> Fut,
        Fut: std::future::Future<Output = Result<Plan, CommandError>>,
    {
        // The key is looked up only when the answer may differ from a fresh
        // decision's: a refusal, an empty decision, or a conflict on event
        // ids. A re-send that decides the same events gets the originals
        // back from the log's idempotent append.
        let mut fresh = false;
        // Contention met (conflicts, or waits for another's turn) and, after
        // two, the turn of the stream contended for (`turns`).
        let mut contended = 0;
        let mut turn: Option<turns::Turn> = None;
        for attempt in 0..MAX_ATTEMPTS {
            if attempt > 1 && turn.is_none() {
                // Back off after repeated conflicts, spread by the key so that
                // commands that keep colliding stop colliding.
                let spread = (issued.key.as_u128() % 1_000) as u64;
                let micros = (250u64 << attempt.min(6)) + spread * attempt as u64;
                tokio::time::sleep(std::time::Duration::from_micros(micros)).await;
            }
            let reads = std::sync::Arc::new(std::sync::Mutex::new(load::Reads::default()));
            let loaded = Loaded::new(self.store.clone(), self.cache.clone(), fresh, reads.clone());
            let decided = decide(loaded).await;
            let reads = std::mem::take(&mut *reads.lock().expect("not poisoned"));
            let mut plan = match decided {
                Ok(plan) => plan,
                // A refusal decided on cached streams stands only if they
                // were current (one query checks them all); otherwise it is
                // decided again on fresh ones (the cached entries brought up
                // to the log's end): a stale cache must not refuse a valid
                // command.
                Err(CommandError::Domain(_))
                    if !reads.from_cache.is_empty() && !self.was_current(&reads).await? =>
                {
                    fresh = true;
                    continue;
                }
                Err(CommandError::Domain(e)) => {
                    return match self.replay(issued.key).await? {
                        Some(outcome) => Ok(outcome),
                        None => Err(CommandError::Domain(e)),
                    };
                }
                Err(e) => return Err(e),
            };
            // "Nothing to do" decided on cached streams is decided again on
            // fresh ones too: an empty plan writes nothing, so no append
            // would notice that the cache was stale (a consequence the
            // worker must write would be skipped for good).
            if plan.parts.is_empty()
                && !reads.from_cache.is_empty()
                && !self.was_current(&reads).await?
            {
                fresh = true;
                continue;
            }
            if plan.parts.is_empty() {
                if let Some(outcome) = self.replay(issued.key).await? {
                    return Ok(outcome);
                }
            }
            // A stream read from the cache may be stale: check it at append
            // time (streams read fresh are guarded as the handler chose). A
            // decision with a boundary is checked against it instead.
            if plan.boundary.is_none() {
                for stream in &reads.from_cache {
                    if let Some(revision) = reads.revisions.get(stream) {
                        plan.guard(stream, *revision);
                    }
                }
            }
            let streams: Vec<String> = plan
                .parts
                .iter()
                .map(|(s, _, _)| s.to_string())
                .chain(plan.guards.iter().map(|(s, _)| s.to_string()))
                .collect();
            // A stream whose turn another command holds is written after
            // it, on fresh reads; after contention met twice, this command
            // takes the turn of the stream it meets it on. A bounded
            // decision yields too (else edits, which never conflict with
            // one another, would starve a command that needs the whole
            // stream unchanged), then appends as decided: its condition
            // says whether the holder's append moved its boundary.
            if turn.is_none() {
                let written = plan.parts.iter().map(|(s, _, _)| s.as_str());
                if let Some(stream) = self.wait_for_turns(written).await {
                    if plan.boundary.is_none() {
                        contended += 1;
                        if contended >= 2 {
                            turn = Some(self.turns.take(&stream).await);
                        }
                        fresh = true;
                        continue;
                    }
                }
            }
            // Kept to tell a created id's conflict from any other.
            let created = plan.created.clone();
            match self.append(issued, plan, &reads).await {
                Ok(outcome) => return Ok(outcome),
                // An id the decision creates was created before, on some
                // site: the thing exists (a re-sent key gets its result).
                Err(CommandError::Log(LogError::ConditionFailed {
                    ref tag,
                    ref event_type,
                    ..
                })) if created_before(&created, tag, event_type).is_some() => {
                    let id = created_before(&created, tag, event_type).expect("matched just now");
                    return match self.replay(issued.key).await? {
                        Some(outcome) => Ok(outcome),
                        None => Err(CommandError::Domain(exists_already(id))),
                    };
                }
                // Another writer moved a stream on, or appended inside the
                // decision's boundary: decide again on fresh reads (each
                // cached entry catches up with what it missed).
                Err(CommandError::Log(LogError::WrongExpectedRevision { stream, .. })) => {
                    contended += 1;
                    if contended >= 2 && turn.is_none() {
                        turn = Some(self.turns.take(&stream).await);
                    }
                    fresh = true;
                    continue;
                }
                Err(CommandError::Log(LogError::ConditionFailed { .. })) => {
                    fresh = true;
                    continue;
                }
                Err(CommandError::Log(
                    LogError::PartialDuplicate { .. } | LogError::EventIdsTaken { .. },
                )) => {
                    // A concurrent send of the same key won: return its result.
                    if let Some(outcome) = self.replay(issued.key).await? {
                        return Ok(outcome);
                    }
                }
                Err(other) => {
                    for stream in &streams {
                        self.cache.forget(stream);
                    }
                    return Err(other);
                }
            }
        }
        Err(CommandError::Contended {
            attempts: MAX_ATTEMPTS,
        })
    }

    /// Waits for the turns others hold on any of `streams` (see
    /// [`turns`]); the first such stream, if one was held.
    async fn wait_for_turns<'a>(&self, streams: impl Iterator<Item = &'a str>) -> Option<String> {
        for stream in streams {
            if self.turns.wait_for_others([stream]).await {
                return Some(stream.to_owned());
            }
        }
        None
    }

    async fn append(
        &self,
        issued: &Issued,
        plan: Plan,
        reads: &load::Reads,
    ) -> Result<Outcome, CommandError> {
        if plan.parts.is_empty() {
            return Ok(Outcome {
                events: Vec::new(),
                last_position: self.store.head_position().await?,
                replayed: false,
            });
        }
        let command_meta = EventMetadata::new(issued.actor.clone(), issued.key);
        let trigger = plan.caused_by.unwrap_or_else(|| event_id(issued.key, 0));
        // The decision's boundary (when it declares one: it replaces the
        // revisions of the streams it read), and the ids it creates.
        let bounded = plan.boundary.is_some();
        let mut query = shareledger_events::Query::new();
        for item in plan.boundary.iter().flatten() {
            // An item about a stream this attempt did not read asks about
            // every event ever: it can only fail safe.
            let after = reads.complete_to.get(&item.stream).copied().unwrap_or(0);
            query.push(item.tag.clone(), item.types, after);
        }
        for (tag, types) in plan.claims() {
            query.push(tag, types, 0);
        }
        let condition =
            (!query.is_empty()).then(|| shareledger_events::AppendCondition::new(query));
        let mut index = 0;
        let mut types = std::collections::HashMap::new();
        let mut appends = Vec::with_capacity(plan.parts.len());
        let mut cache_updates = Vec::with_capacity(plan.parts.len());
        for (stream, expected, events) in plan.parts {
            let mut new_events = Vec::with_capacity(events.len());
            cache_updates.push((
                stream.to_string(),
                events
                    .iter()
                    .map(|e| (e.event_type.clone(), 1u32, e.data.clone()))
                    .collect::<Vec<load::RawEvent>>(),
            ));
            for event in events {
                let metadata = if event.consequence || plan.caused_by.is_some() {
                    EventMetadata::new(Actor::System, issued.key).caused_by(trigger)
                } else {
                    command_meta.clone()
                };
                let id = event_id(issued.key, index);
                types.insert(id, event.event_type.clone());
                let event_type =
                    EventType::parse(event.event_type).expect("catalog event types are valid");
                new_events.push(
                    NewEvent::new(id, event_type, 1, event.data, metadata)
                        .and_then(|e| e.with_tags(event.tags))
                        .map_err(LogError::from)?,
                );
                index += 1;
            }
            appends.push(StreamAppend {
                stream,
                expected: if bounded {
                    ExpectedRevision::Any
                } else {
                    expected
                },
                events: new_events,
            });
        }
        let guards = if bounded { &[][..] } else { &plan.guards[..] };
        let results = self
            .store
            .append_conditioned(appends, guards, condition.as_ref())
            .await?;
        // An append whose events were written already (a re-sent key) gets
        // the stored events back.
        let replayed = results.iter().any(|r| r.events.iter().any(|e| e.replayed));
        if !replayed {
            for ((stream, raw), result) in cache_updates.into_iter().zip(&results) {
                if let (Some(first), Some(last)) = (result.events.first(), result.events.last()) {
                    self.cache.appended(
                        &stream,
                        load::Appended {
                            events: raw,
                            first_revision: first.stream_revision,
                            last_revision: last.stream_revision,
                            last_position: last.global_position,
                        },
                    );
                }
            }
        }
        let mut events = Vec::new();
        for result in results {
            for e in result.events {
                events.push(Written {
                    event_id: e.event_id,
                    stream: result.stream.to_string(),
                    event_type: types.get(&e.event_id).cloned().unwrap_or_default(),
                    stream_revision: e.stream_revision,
                    global_position: e.global_position,
                });
            }
        }
        events.sort_by_key(|e| e.global_position);
        Ok(Outcome {
            last_position: events.last().map_or(0, |e| e.global_position),
            events,
            replayed,
        })
    }

    /// Runs `decision`: loads what it reads (from the cache or the log),
    /// decides, and appends its events on the condition that nothing it
    /// read changed meanwhile (or, when it declares one, nothing inside its
    /// boundary); on a conflict, decides again.
    pub async fn execute<D: Decision>(
        &self,
        issued: &Issued,
        decision: D,
    ) -> Result<Outcome, CommandError> {
        self.execute_decision(issued, &decision, None).await
    }

    /// As [`Service::execute`], for a decision the system makes as a
    /// consequence of the event `trigger`: every event is the system's,
    /// caused by it.
    pub(crate) async fn execute_caused_by<D: Decision>(
        &self,
        issued: &Issued,
        decision: &D,
        trigger: Uuid,
    ) -> Result<Outcome, CommandError> {
        self.execute_decision(issued, decision, Some(trigger)).await
    }

    async fn execute_decision<D: Decision>(
        &self,
        issued: &Issued,
        decision: &D,
        caused_by: Option<Uuid>,
    ) -> Result<Outcome, CommandError> {
        let ctx = Context {
            actor: issued.actor.clone(),
            key: issued.key,
        };
        self.run(issued, |mut loaded| {
            let ctx = &ctx;
            async move {
                let mut facts = Facts::default();
                loop {
                    let missing = facts.missing(decision.reads(ctx, &facts));
                    if missing.is_empty() {
                        break;
                    }
                    for read in &missing {
                        loaded.load(read, &mut facts).await?;
                    }
                }
                let decided = decision.decide_on(ctx, &facts)?;
                let mut plan = Plan {
                    caused_by,
                    ..Plan::default()
                };
                for write in decided.writes {
                    plan.write_decided(&loaded, write);
                }
                if let Some(boundary) = decided.boundary {
                    plan.bounded_by(boundary);
                }
                for stream in loaded.read_streams() {
                    plan.guard_read(&loaded, &stream);
                }
                Ok(plan)
            }
        })
        .await
    }
}
