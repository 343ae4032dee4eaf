//! The command service: core's pure decisions over the event log.
//!
//! For each command it loads the streams the decision needs (folding their
//! events into states), decides, and appends the events with the expected
//! revisions it read, guarding the other streams it read, so that a decision
//! is only recorded if nothing it looked at changed meanwhile. On a
//! concurrency conflict it reloads and decides again, a bounded number of
//! times ([`MAX_ATTEMPTS`]); after contention met twice it takes the
//! stream's turn in this process (`turns.rs`), so that a stream one writer
//! keeps busy starves no other.
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

use std::collections::BTreeSet;

use shareledger_core::catalog::{
    connection_stream, content_stream, site_code_stream, site_stream, AccessLevel, ClaimedId,
    DomainEvent, Link, RemovalReason, ScorecardId, SiteCode, SiteCodeEvent, SiteEvent, SiteId,
};
use shareledger_core::connection::{
    ApproveConnection, CancelConnectionRequest, ConnectionState, DenyConnection, RequestConnection,
    RevokeSharing, SetSharedScorecards, ShareScorecard, UnshareScorecard,
};
use shareledger_core::content;
use shareledger_core::site::{self, SiteState};
use shareledger_core::DomainError;
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
        self.parts.push((stream_name(stream), expected, events));
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
            // takes the turn of the stream it meets it on.
            if turn.is_none() && plan.boundary.is_none() {
                let written = plan.parts.iter().map(|(s, _, _)| s.as_str());
                if let Some(stream) = self.wait_for_turns(written).await {
                    contended += 1;
                    if contended >= 2 {
                        turn = Some(self.turns.take(&stream).await);
                    }
                    fresh = true;
                    continue;
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

    /// RegisterSite: claims the code (`sitecode-<CODE>`) and creates the site
    /// in one append; a taken code is `SiteCodeTaken`, even under concurrency.
    pub async fn register_site(
        &self,
        issued: &Issued,
        command: site::RegisterSite,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let command = command.clone();
            let actor = issued.actor.clone();
            async move {
                let (existing, site_rev) = loaded.site(command.site_id).await?;
                let parent = match command.parent {
                    Some(p) => loaded.site(p).await?.0,
                    None => None,
                };
                let (claims, code_rev) = loaded
                    .events::<SiteCodeEvent>(&site_code_stream(&command.code))
                    .await?;
                if !claims.is_empty() {
                    return Err(DomainError::SiteCodeTaken(command.code.clone()).into());
                }
                let events = command.decide(&actor, existing.as_ref(), parent.as_ref())?;
                let mut plan = Plan::default();
                plan.write(&site_stream(command.site_id), site_rev, &events, |_| false);
                plan.write(
                    &site_code_stream(&command.code),
                    code_rev,
                    &[SiteCodeEvent::SiteCodeClaimed {
                        code: command.code.clone(),
                        site_id: command.site_id,
                    }],
                    |_| false,
                );
                if let Some(p) = command.parent {
                    plan.guard_read(&loaded, &site_stream(p));
                }
                Ok(plan)
            }
        })
        .await
    }

    /// Any command decided on one site's state alone (settings and users).
    pub async fn on_site<C: SiteCommand>(
        &self,
        issued: &Issued,
        site_id: SiteId,
        command: C,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let command = command.clone();
            let actor = issued.actor.clone();
            async move {
                let (site, rev) = loaded.site(site_id).await?;
                let site = site.ok_or(DomainError::SiteNotFound(site_id))?;
                let events = command.decide_on(&actor, &site)?;
                let mut plan = Plan::default();
                plan.write(&site_stream(site_id), rev, &events, |_| false);
                Ok(plan)
            }
        })
        .await
    }

    /// RequestConnection by the partner's site code (R-CONN-1, 2, 5, 6).
    pub async fn request_connection(
        &self,
        issued: &Issued,
        requester: SiteId,
        partner_code: SiteCode,
        directions: shareledger_core::catalog::Directions,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let actor = issued.actor.clone();
            let partner_code = partner_code.clone();
            async move {
                if !matches!(actor, Actor::User { .. }) {
                    return Err(DomainError::ConnectionsUnavailable.into());
                }
                let (requester_state, requester_rev) = loaded.site(requester).await?;
                let requester_state =
                    requester_state.ok_or(DomainError::SiteNotFound(requester))?;
                let (claims, _) = loaded
                    .events::<SiteCodeEvent>(&site_code_stream(&partner_code))
                    .await?;
                let partner_id = claims
                    .iter()
                    .map(|SiteCodeEvent::SiteCodeClaimed { site_id, .. }| *site_id)
                    .next();
                let partner_state = match partner_id {
                    Some(id) => loaded.site(id).await?.0,
                    None => None,
                };
                // An unknown code has no pair: decide against an empty one
                // with a site that cannot exist, so that authorization is
                // checked before the code is reported unknown.
                let partner = partner_id.unwrap_or(SiteId(Uuid::nil()));
                let stream = connection_stream(requester, partner);
                let (state, rev) = match partner_id {
                    Some(_) => loaded.connection(requester, partner).await?,
                    None => (
                        ConnectionState::new(requester, partner),
                        ExpectedRevision::NoStream,
                    ),
                };
                let events = RequestConnection {
                    partner,
                    directions,
                }
                .decide(
                    &actor,
                    &requester_state,
                    partner_state.as_ref(),
                    &partner_code,
                    &state,
                )?;
                let mut plan = Plan::default();
                plan.write(&stream, rev, &events, |_| false);
                plan.guard(&site_stream(requester), requester_rev);
                Ok(plan)
            }
        })
        .await
    }

    /// ApproveConnection, DenyConnection, CancelConnectionRequest and
    /// RevokeSharing: decided on the actor's site and the pair's links.
    pub async fn on_connection(
        &self,
        issued: &Issued,
        site_id: SiteId,
        partner: SiteId,
        command: ConnectionCommand,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let actor = issued.actor.clone();
            async move {
                if !matches!(actor, Actor::User { .. }) {
                    return Err(DomainError::ConnectionsUnavailable.into());
                }
                let (site, site_rev) = loaded.site(site_id).await?;
                let site = site.ok_or(DomainError::SiteNotFound(site_id))?;
                let stream = connection_stream(site_id, partner);
                let (state, rev) = loaded.connection(site_id, partner).await?;
                let events = match command {
                    ConnectionCommand::Approve => {
                        ApproveConnection { partner }.decide(&actor, &site, &state)?
                    }
                    ConnectionCommand::Deny => {
                        DenyConnection { partner }.decide(&actor, &site, &state)?
                    }
                    ConnectionCommand::Cancel => {
                        CancelConnectionRequest { partner }.decide(&actor, &site, &state)?
                    }
                    ConnectionCommand::Revoke(link) => {
                        RevokeSharing { link }.decide(&actor, &site, &state)?
                    }
                };
                let mut plan = Plan::default();
                plan.write(
                    &stream,
                    rev,
                    &events,
                    shareledger_core::connection::is_consequence,
                );
                plan.guard(&site_stream(site_id), site_rev);
                if let ConnectionCommand::Revoke(link) = command {
                    // R-CONN-4: the receiving site loses every relationship
                    // built on what the link shared, in the same append.
                    let (consumer, consumer_rev) = loaded.content(link.to).await?;
                    let lost = consumer.relationships_lost(
                        link.from,
                        &Default::default(),
                        RemovalReason::LinkRevoked,
                    );
                    plan.write(&content_stream(link.to), consumer_rev, &lost, |_| true);
                }
                Ok(plan)
            }
        })
        .await
    }

    /// ShareScorecard, UnshareScorecard and SetSharedScorecards over `link`
    /// (R-SHARE-1). Unsharing removes the receiving site's relationships that
    /// lost their object, in the same append (R-SHARE-4).
    pub async fn change_sharing(
        &self,
        issued: &Issued,
        link: Link,
        change: ShareChange,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let actor = issued.actor.clone();
            let change = change.clone();
            async move {
                let acting = actor_site(&actor).unwrap_or(link.from);
                let (site, site_rev) = loaded.site(acting).await?;
                let site = site.ok_or(DomainError::SiteNotFound(acting))?;
                let (owner, owner_rev) = loaded.content(link.from).await?;
                let stream = connection_stream(link.from, link.to);
                let (state, rev) = loaded.connection(link.from, link.to).await?;
                let owned: BTreeSet<ScorecardId> = owner.scorecards.keys().copied().collect();
                let events = match &change {
                    ShareChange::Share(scorecard_id) => ShareScorecard {
                        link,
                        scorecard_id: *scorecard_id,
                    }
                    .decide(
                        &actor,
                        &site,
                        owned.contains(scorecard_id),
                        &state,
                    )?,
                    ShareChange::Unshare(scorecard_id) => UnshareScorecard {
                        link,
                        scorecard_id: *scorecard_id,
                    }
                    .decide(&actor, &site, &state)?,
                    ShareChange::SetShared(scorecards) => SetSharedScorecards {
                        link,
                        scorecards: scorecards.clone(),
                    }
                    .decide(&actor, &site, &owned, &state)?,
                };
                let after = events.iter().fold(state, ConnectionState::evolve);
                let still_visible = owner.visible_through(after.shared(link));
                let (consumer, consumer_rev) = loaded.content(link.to).await?;
                let lost = consumer.relationships_lost(
                    link.from,
                    &still_visible,
                    RemovalReason::ScorecardUnshared,
                );
                let mut plan = Plan::default();
                plan.write(
                    &stream,
                    rev,
                    &events,
                    shareledger_core::connection::is_consequence,
                );
                plan.write(&content_stream(link.to), consumer_rev, &lost, |_| true);
                plan.guard(&site_stream(acting), site_rev);
                plan.guard(&content_stream(link.from), owner_rev);
                Ok(plan)
            }
        })
        .await
    }

    /// CreateScorecard, CreateObject, PlaceObjectOnScorecard and
    /// RemoveObjectFromScorecard on a site's own content.
    ///
    /// Removing an object from a shared scorecard does not remove, in the
    /// same append, partners' relationships that lost their only path
    /// (R-SHARE-4): the [`ConsequenceWorker`](crate::consequences::ConsequenceWorker)
    /// follows the log and removes them.
    pub async fn on_content(
        &self,
        issued: &Issued,
        site_id: SiteId,
        command: ContentCommand,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let actor = issued.actor.clone();
            let command = command.clone();
            async move {
                let acting = actor_site(&actor).unwrap_or(site_id);
                let (site, site_rev) = loaded.site(acting).await?;
                let site = site.ok_or(DomainError::SiteNotFound(acting))?;
                let (content, rev) = loaded.content(site_id).await?;
                let events = match &command {
                    ContentCommand::CreateScorecard(c) => c.decide(&actor, &site, &content)?,
                    ContentCommand::CreateObject(c) => c.decide(&actor, &site, &content)?,
                    ContentCommand::PlaceObjectOnScorecard(c) => {
                        c.decide(&actor, &site, &content)?
                    }
                    ContentCommand::RemoveObjectFromScorecard(c) => {
                        c.decide(&actor, &site, &content)?
                    }
                };
                let mut plan = Plan::default();
                plan.write(&content_stream(site_id), rev, &events, |_| false);
                plan.guard(&site_stream(acting), site_rev);
                Ok(plan)
            }
        })
        .await
    }

    /// ChangeObjectField on `owner`'s object: by the owner's users at the
    /// level the field needs (R-USER-3); refused to partners (R-SHARE-3).
    pub async fn change_object_field(
        &self,
        issued: &Issued,
        owner: SiteId,
        command: content::ChangeObjectField,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let actor = issued.actor.clone();
            let command = command.clone();
            async move {
                let acting = actor_site(&actor).unwrap_or(owner);
                let (site, _) = loaded.site(acting).await?;
                let site = site.ok_or(DomainError::SiteNotFound(acting))?;
                let (content, rev) = loaded.content(owner).await?;
                let shared_with_actor = if acting == owner {
                    false
                } else {
                    loaded
                        .visible_to(owner, acting, &content)
                        .await?
                        .contains(&command.object_id)
                };
                let events = command.decide(&actor, &site, &content, shared_with_actor)?;
                let mut plan = Plan::default();
                plan.write(&content_stream(owner), rev, &events, |_| false);
                // Consistent with the object and the acting user alone:
                // edits of different objects of one site never collide.
                plan.bounded_by(command.boundary(&actor, &site, &content));
                Ok(plan)
            }
        })
        .await
    }

    /// LinkSharedObject and UseSharedMeasureInAggregation (R-SHARE-4): the
    /// object must be visible to `site_id` through scorecards `origin` shares
    /// with it, and stay so until the relationship is recorded.
    pub async fn relate(
        &self,
        issued: &Issued,
        site_id: SiteId,
        command: RelateCommand,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let actor = issued.actor.clone();
            let command = command.clone();
            async move {
                let origin_site = match &command {
                    RelateCommand::Link(c) => c.origin_site,
                    RelateCommand::Aggregate(c) => c.origin_site,
                };
                let (site, site_rev) = loaded.site(site_id).await?;
                let site = site.ok_or(DomainError::SiteNotFound(site_id))?;
                let (content, rev) = loaded.content(site_id).await?;
                let (origin, origin_rev) = loaded.content(origin_site).await?;
                let visible = loaded.visible_to(origin_site, site_id, &origin).await?;
                let events = match &command {
                    RelateCommand::Link(c) => c.decide(&actor, &site, &content, &visible)?,
                    RelateCommand::Aggregate(c) => {
                        c.decide(&actor, &site, &content, &origin, &visible)?
                    }
                };
                let connection = connection_stream(origin_site, site_id);
                let mut plan = Plan::default();
                plan.write(&content_stream(site_id), rev, &events, |_| false);
                plan.guard(&site_stream(site_id), site_rev);
                plan.guard(&content_stream(origin_site), origin_rev);
                plan.guard_read(&loaded, &connection);
                Ok(plan)
            }
        })
        .await
    }

    /// GrantScorecardAccess on `owner`'s scorecard: any level on an own
    /// scorecard; at most Browser on a partner's scorecard shared with this
    /// site (R-USER-3, R-SHARE-5).
    pub async fn grant_scorecard_access(
        &self,
        issued: &Issued,
        site_id: SiteId,
        owner: SiteId,
        command: site::GrantScorecardAccess,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let actor = issued.actor.clone();
            let command = command.clone();
            async move {
                let (site, site_rev) = loaded.site(site_id).await?;
                let site = site.ok_or(DomainError::SiteNotFound(site_id))?;
                let (content, content_rev) = loaded.content(owner).await?;
                let max_level = if owner == site_id {
                    content
                        .scorecards
                        .contains_key(&command.scorecard_id)
                        .then_some(AccessLevel::ScorecardAdmin)
                } else {
                    let shared = loaded.shared_with(owner, site_id).await?;
                    shared
                        .contains(&command.scorecard_id)
                        .then_some(AccessLevel::Browser)
                };
                let events = command.decide(&actor, &site, max_level)?;
                let mut plan = Plan::default();
                plan.write(&site_stream(site_id), site_rev, &events, |_| false);
                plan.guard(&content_stream(owner), content_rev);
                if owner != site_id {
                    let connection = connection_stream(owner, site_id);
                    plan.guard_read(&loaded, &connection);
                }
                Ok(plan)
            }
        })
        .await
    }
}

/// How many levels of parents [`Service::set_parent_site`] follows above the
/// new parent. A deeper hierarchy is refused as a possible cycle.
pub const MAX_HIERARCHY_DEPTH: usize = 64;

/// Namespace of the user ids derived from idempotency keys (CSV imports).
const USER_ID_NAMESPACE: Uuid = Uuid::from_u128(0x9d41_7c2e_5b3a_4f18_8e6d_0a1b_2c3d_4e5f);

/// The user id of the `row`-th good row (0-based, in file order) of a CSV
/// import sent under `key`: re-sending the same file with the same key
/// names the same users, so the re-send is idempotent.
pub fn imported_user_id(key: Uuid, row: usize) -> shareledger_core::catalog::UserId {
    let mut name = key.as_bytes().to_vec();
    name.extend_from_slice(&(row as u64).to_be_bytes());
    shareledger_core::catalog::UserId(Uuid::new_v5(&USER_ID_NAMESPACE, &name))
}

/// R-USER-5's gate (Manage Users or Instance Admin), checked before a refusal
/// that would otherwise answer an unauthorized actor (a missing source site,
/// a CSV file's bad rows).
fn authorize_user_manager(actor: &Actor, site: &SiteState) -> Result<(), DomainError> {
    use shareledger_core::catalog::PermissionFlag;
    site::authorize(
        actor,
        site,
        &[PermissionFlag::ManageUsers, PermissionFlag::InstanceAdmin],
    )
    .map(|_| ())
}

/// Users and onboarding: commands that read more than one site.
impl Service {
    /// AddExistingUser (Add Existing User): an account on `site_id` for a
    /// person with one on `command.from_site`. Writes the target site's
    /// stream; guards the source site's, so that the copied username and
    /// name are the ones the decision read.
    pub async fn add_existing_user(
        &self,
        issued: &Issued,
        site_id: SiteId,
        command: site::AddExistingUser,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let command = command.clone();
            let actor = issued.actor.clone();
            async move {
                let (target, rev) = loaded.site(site_id).await?;
                let target = target.ok_or(DomainError::SiteNotFound(site_id))?;
                let (source, source_rev) = loaded.site(command.from_site).await?;
                let Some(source) = source else {
                    authorize_user_manager(&actor, &target)?;
                    return Err(DomainError::SiteNotFound(command.from_site).into());
                };
                let events = command.decide(&actor, &target, &source)?;
                let mut plan = Plan::default();
                plan.write(&site_stream(site_id), rev, &events, |_| false);
                plan.guard(&site_stream(command.from_site), source_rev);
                Ok(plan)
            }
        })
        .await
    }

    /// SetParentSite (R-ONB-1). Loads the new parent and its ancestors, up
    /// to [`MAX_HIERARCHY_DEPTH`] levels, so that no cycle can form; guards
    /// every site stream of that chain, so that two concurrent moves cannot
    /// form one either. A cycle already in the stored hierarchy is followed
    /// once, never forever. A parent that does not exist is `SiteNotFound`
    /// (after authorization); a deeper hierarchy is `ParentCycle`.
    pub async fn set_parent_site(
        &self,
        issued: &Issued,
        site_id: SiteId,
        command: site::SetParentSite,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let command = command.clone();
            let actor = issued.actor.clone();
            async move {
                let (site, rev) = loaded.site(site_id).await?;
                let site = site.ok_or(DomainError::SiteNotFound(site_id))?;
                // The parent's ancestors, nearest first, and every site read.
                let mut chain = Vec::new();
                let mut read = Vec::new();
                let mut parent_exists = true;
                let mut too_deep = false;
                if let Some(parent) = command.parent {
                    read.push(parent);
                    let (state, _) = loaded.site(parent).await?;
                    parent_exists = state.is_some();
                    let mut seen = BTreeSet::from([parent]);
                    let mut next = state.and_then(|s| s.parent);
                    while let Some(id) = next {
                        if id == site_id {
                            // Moving under a descendant: the decision refuses.
                            chain.push(id);
                            break;
                        }
                        if !seen.insert(id) {
                            // A cycle in stored data, above this site.
                            break;
                        }
                        if chain.len() == MAX_HIERARCHY_DEPTH {
                            too_deep = true;
                            break;
                        }
                        chain.push(id);
                        read.push(id);
                        next = loaded.site(id).await?.0.and_then(|s| s.parent);
                    }
                }
                let events = command.decide(&actor, &site, &chain)?;
                if let (Some(parent), false) = (command.parent, parent_exists) {
                    return Err(DomainError::SiteNotFound(parent).into());
                }
                if too_deep {
                    return Err(DomainError::ParentCycle.into());
                }
                let mut plan = Plan::default();
                plan.write(&site_stream(site_id), rev, &events, |_| false);
                for id in read {
                    plan.guard_read(&loaded, &site_stream(id));
                }
                Ok(plan)
            }
        })
        .await
    }

    /// ConfigureSelfRegistration (R-ONB-2): the model site is loaded when
    /// one is named, and guarded, so that the model user the decision found
    /// is still there when the setting is recorded.
    pub async fn configure_self_registration(
        &self,
        issued: &Issued,
        site_id: SiteId,
        command: site::ConfigureSelfRegistration,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let command = command.clone();
            let actor = issued.actor.clone();
            async move {
                let (site, rev) = loaded.site(site_id).await?;
                let site = site.ok_or(DomainError::SiteNotFound(site_id))?;
                let model = match command.model_site {
                    Some(id) => loaded.site(id).await?.0,
                    None => None,
                };
                let events = command.decide(&actor, &site, model.as_ref())?;
                let mut plan = Plan::default();
                plan.write(&site_stream(site_id), rev, &events, |_| false);
                if let Some(id) = command.model_site {
                    plan.guard_read(&loaded, &site_stream(id));
                }
                Ok(plan)
            }
        })
        .await
    }

    /// SelfRegisterPartner (R-ONB-2) through `group_site`'s self-registration
    /// link: creates the new site (a child of the group when
    /// `child_of_group`) with its first manager copied from the model user,
    /// and claims its code (`sitecode-<CODE>`) in the same append, exactly
    /// as [`Service::register_site`] does: a taken code is `SiteCodeTaken`,
    /// even under concurrency. Guards the group's and the model site's
    /// streams. Issued by an operator (or a user) on the partner's behalf;
    /// the system issues no commands.
    pub async fn self_register_partner(
        &self,
        issued: &Issued,
        group_site: SiteId,
        command: site::SelfRegisterPartner,
    ) -> Result<Outcome, CommandError> {
        self.run(issued, |mut loaded| {
            let command = command.clone();
            let actor = issued.actor.clone();
            async move {
                if matches!(actor, Actor::System) {
                    return Err(DomainError::NotAnIssuer.into());
                }
                let (group, group_rev) = loaded.site(group_site).await?;
                let group = group.ok_or(DomainError::SiteNotFound(group_site))?;
                let model_site = group.self_registration.model_site;
                let model = match model_site {
                    Some(id) => loaded.site(id).await?.0,
                    None => None,
                };
                let (existing, site_rev) = loaded.site(command.site_id).await?;
                let (claims, code_rev) = loaded
                    .events::<SiteCodeEvent>(&site_code_stream(&command.code))
                    .await?;
                let events = command.decide(&group, model.as_ref(), existing.as_ref())?;
                if !claims.is_empty() {
                    return Err(DomainError::SiteCodeTaken(command.code.clone()).into());
                }
                let mut plan = Plan::default();
                plan.write(&site_stream(command.site_id), site_rev, &events, |_| false);
                plan.write(
                    &site_code_stream(&command.code),
                    code_rev,
                    &[SiteCodeEvent::SiteCodeClaimed {
                        code: command.code.clone(),
                        site_id: command.site_id,
                    }],
                    |_| false,
                );
                plan.guard(&site_stream(group_site), group_rev);
                if let Some(id) = model_site {
                    plan.guard_read(&loaded, &site_stream(id));
                }
                Ok(plan)
            }
        })
        .await
    }

    /// ImportUsers from a CSV file (R-USER-8): the actor's right to import
    /// is checked first (R-USER-5), then every row; one bad row rejects the
    /// whole file with an error per bad field (`ImportRejected`, line, field,
    /// reason) and nothing is applied; a good file adds every row, within the
    /// seat limit (R-USER-7). User ids derive from the idempotency key
    /// ([`imported_user_id`]), so a re-send of the key is idempotent.
    pub async fn import_users_csv(
        &self,
        issued: &Issued,
        site_id: SiteId,
        csv_text: &str,
    ) -> Result<Outcome, CommandError> {
        let key = issued.key;
        self.run(issued, |mut loaded| {
            let actor = issued.actor.clone();
            async move {
                let (site, rev) = loaded.site(site_id).await?;
                let site = site.ok_or(DomainError::SiteNotFound(site_id))?;
                authorize_user_manager(&actor, &site)?;
                let mut row = 0;
                let rows = shareledger_core::csv_import::parse_users_csv(csv_text, || {
                    row += 1;
                    imported_user_id(key, row - 1)
                })?;
                let events = site::ImportUsers { rows }.decide(&actor, &site)?;
                let mut plan = Plan::default();
                plan.write(&site_stream(site_id), rev, &events, |_| false);
                Ok(plan)
            }
        })
        .await
    }
}

/// What to change in the scorecards shared over a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ShareChange {
    Share(ScorecardId),
    Unshare(ScorecardId),
    /// "Edit Scorecards": the whole set at once.
    SetShared(BTreeSet<ScorecardId>),
}

/// The content commands decided on one site's content alone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ContentCommand {
    CreateScorecard(content::CreateScorecard),
    CreateObject(content::CreateObject),
    PlaceObjectOnScorecard(content::PlaceObjectOnScorecard),
    RemoveObjectFromScorecard(content::RemoveObjectFromScorecard),
}

/// The relationship commands (R-SHARE-4).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RelateCommand {
    Link(content::LinkSharedObject),
    Aggregate(content::UseSharedMeasureInAggregation),
}

/// The site a user acts for (`None` for operators and the system).
fn actor_site(actor: &Actor) -> Option<SiteId> {
    match actor {
        Actor::User { site_id, .. } => Some(SiteId(*site_id)),
        _ => None,
    }
}

/// The connection commands decided on one pair's links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConnectionCommand {
    Approve,
    Deny,
    Cancel,
    Revoke(Link),
}

/// A command decided on one site's state alone.
pub trait SiteCommand: Clone + Send + Sync {
    fn decide_on(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError>;
}

macro_rules! site_commands {
    ($($command:ty),* $(,)?) => {
        $(impl SiteCommand for $command {
            fn decide_on(&self, actor: &Actor, site: &SiteState) -> Result<Vec<SiteEvent>, DomainError> {
                self.decide(actor, site)
            }
        })*
    };
}

site_commands!(
    site::SetSeatLimit,
    site::RequireTwoFactor,
    site::AddUser,
    site::ChangeUserRole,
    site::SetPermissionFlags,
    site::RevokeScorecardAccess,
    site::DeactivateUser,
    site::ReactivateUser,
    site::HideOrganizationSettings,
    site::ImportUsers,
);
