//! The log kept in memory for looking back: every event the access model
//! uses, decoded once, by stream, in global order, and kept current from the
//! log like the live index.
//!
//! An as-of question replays a few streams up to a position into a fresh
//! [`AccessIndex`](crate::access::AccessIndex) (see the parent module). Read
//! from PostgreSQL, most of that time is spent fetching rows and decoding
//! their JSON; from the archive it is slicing each stream at the position
//! (binary search), merging the slices in global order and applying them.
//! The archive also answers, from memory, the questions that scope a replay:
//! which site created a user or a target, and which sites a site has
//! connection streams with.
//!
//! The archive holds what a replay of `$all` would apply, the events the
//! index skips (field updates, seat limits, …) left out; its memory grows
//! with the log (about 0.5 KB per event kept, `docs/audit.md`).
//!
//! **API boundary:** [`LiveArchive`].

use std::cmp::Reverse;
use std::collections::binary_heap::PeekMut;
use std::collections::{BTreeMap, BTreeSet, BinaryHeap, HashMap, HashSet};
use std::sync::{Arc, RwLock};
use std::time::Duration;

use shareledger_core::catalog::{
    connection_stream, content_stream, ConnectionEvent, ContentEvent, Link, ObjectId, ScorecardId,
    SiteEvent, SiteId, UserId,
};
use shareledger_events::store::supervise::{PartHealth, PartState};
use shareledger_events::store::{PgEventStore, SubscriptionOptions};
use shareledger_events::RecordedEvent;
use tokio::sync::watch;
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::access::{AccessIndex, Target};
use crate::decode::{decode, Decoded, EventRef};
use crate::follow::follow_in_memory;
use crate::ProjectionError;

/// One archived event: its provenance and the catalog event.
#[derive(Debug)]
pub(crate) struct ArchivedEvent {
    pub(crate) provenance: EventRef,
    pub(crate) decoded: Decoded,
}

impl ArchivedEvent {
    fn position(&self) -> u64 {
        self.provenance.position
    }
}

/// What the archive holds, as of `position`.
#[derive(Debug, Default)]
struct Archive {
    position: u64,
    streams: HashMap<String, Vec<Arc<ArchivedEvent>>>,
    /// The site and position of each user's first `UserAdded`.
    user_sites: HashMap<UserId, (u64, SiteId)>,
    /// The site and position of each target's creation.
    owners: HashMap<Target, (u64, SiteId)>,
    /// The sites each site has a connection stream with.
    partners: HashMap<SiteId, BTreeSet<SiteId>>,
    /// For each object some site related (linked onto a scorecard or used
    /// in an aggregation), the position and the relating site of each time.
    related: HashMap<ObjectId, Vec<(u64, SiteId)>>,
}

impl Archive {
    fn add(&mut self, event: &RecordedEvent) -> Result<(), ProjectionError> {
        let position = event.global_position;
        self.position = position;
        let Some(decoded) = decode(event)? else {
            return Ok(());
        };
        match &decoded {
            Decoded::Site {
                site,
                event: SiteEvent::UserAdded { user, .. },
            } => {
                self.user_sites
                    .entry(user.user_id)
                    .or_insert((position, *site));
            }
            Decoded::Content { site, event } => {
                let created = match event {
                    ContentEvent::ScorecardCreated { scorecard_id, .. } => {
                        Some(Target::Scorecard(*scorecard_id))
                    }
                    ContentEvent::ObjectCreated { object_id, .. } => {
                        Some(Target::Object(*object_id))
                    }
                    _ => None,
                };
                if let Some(target) = created {
                    self.owners.entry(target).or_insert((position, *site));
                }
                if let ContentEvent::SharedObjectLinked { object_id, .. }
                | ContentEvent::SharedMeasureAggregated { object_id, .. } = event
                {
                    self.related
                        .entry(*object_id)
                        .or_default()
                        .push((position, *site));
                }
            }
            Decoded::Connection(_) => {
                let sites: Vec<SiteId> = event
                    .stream
                    .trim_start_matches("connection-")
                    .split('-')
                    .filter_map(|part| Uuid::parse_str(part).ok().map(SiteId))
                    .collect();
                if let [a, b] = sites[..] {
                    self.partners.entry(a).or_default().insert(b);
                    self.partners.entry(b).or_default().insert(a);
                }
            }
            _ => {}
        }
        if !AccessIndex::uses(&decoded) {
            return Ok(());
        }
        self.streams
            .entry(event.stream.clone())
            .or_default()
            .push(Arc::new(ArchivedEvent {
                provenance: EventRef::of(event),
                decoded,
            }));
        Ok(())
    }

    /// The events of `stream` at or below `until`.
    fn upto(&self, stream: &str, until: u64) -> &[Arc<ArchivedEvent>] {
        match self.streams.get(stream) {
            Some(events) => &events[..events.partition_point(|e| e.position() <= until)],
            None => &[],
        }
    }

    /// Feeds `apply` the events of `full` streams, and the `SiteRegistered`
    /// event of `codes_only` streams, at or below `until`, in global order
    /// (a k-way merge of the streams' slices, each in order already).
    /// Returns how many it fed.
    fn replay<E>(
        &self,
        full: &[String],
        codes_only: &[String],
        until: u64,
        mut apply: impl FnMut(&ArchivedEvent) -> Result<(), E>,
    ) -> Result<usize, E> {
        let mut slices: Vec<&[Arc<ArchivedEvent>]> =
            Vec::with_capacity(full.len() + codes_only.len());
        slices.extend(full.iter().map(|name| self.upto(name, until)));
        for name in codes_only {
            let events = self.upto(name, until);
            let registered = events.iter().position(|e| {
                matches!(
                    e.decoded,
                    Decoded::Site {
                        event: SiteEvent::SiteRegistered { .. },
                        ..
                    }
                )
            });
            if let Some(at) = registered {
                slices.push(&events[at..=at]);
            }
        }
        slices.retain(|slice| !slice.is_empty());
        let mut heads: BinaryHeap<Reverse<(u64, usize)>> = slices
            .iter()
            .enumerate()
            .map(|(i, slice)| Reverse((slice[0].position(), i)))
            .collect();
        let mut fed = 0;
        while let Some(mut head) = heads.peek_mut() {
            let Reverse((_, i)) = *head;
            let (event, rest) = slices[i]
                .split_first()
                .expect("slices in the heap are not empty");
            apply(event)?;
            fed += 1;
            slices[i] = rest;
            match rest.first() {
                Some(next) => *head = Reverse((next.position(), i)),
                None => {
                    PeekMut::pop(head);
                }
            }
        }
        Ok(fed)
    }

    /// The scorecards shared over `link` at `until` if it is active then,
    /// `None` if not: folds its connection stream (named `stream`) up to
    /// there as the access index does.
    fn shared_over(&self, stream: &str, link: Link, until: u64) -> Option<HashSet<ScorecardId>> {
        let mut active = false;
        let mut shared: HashSet<ScorecardId> = HashSet::new();
        for event in self.upto(stream, until) {
            let Decoded::Connection(event) = &event.decoded else {
                continue;
            };
            match event {
                ConnectionEvent::LinksActivated { links, .. } if links.contains(&link) => {
                    active = true;
                    shared.clear();
                }
                ConnectionEvent::LinkRevoked { link: l, .. } if *l == link => {
                    active = false;
                    shared.clear();
                }
                ConnectionEvent::ScorecardShared {
                    link: l,
                    scorecard_id,
                } if *l == link => {
                    shared.insert(*scorecard_id);
                }
                ConnectionEvent::ScorecardUnshared {
                    link: l,
                    scorecard_id,
                    ..
                } if *l == link => {
                    shared.remove(scorecard_id);
                }
                _ => {}
            }
        }
        active.then_some(shared)
    }

    /// Every scorecard `target` of `owner` can show on at `until`, and
    /// perhaps more: the scorecard itself, or each scorecard that the object
    /// or one of its containers was placed on at or before `until` (later
    /// removals ignored). Placements name the owner's own objects and
    /// scorecards (core's `PlaceObjectOnScorecard`) and an object's
    /// container is fixed when it is created, so the owner's content stream
    /// alone tells. Also returns the object and its containers (none for a
    /// scorecard).
    fn may_show_on(
        &self,
        owner: SiteId,
        target: Target,
        until: u64,
    ) -> (HashSet<ScorecardId>, HashSet<ObjectId>) {
        let object = match target {
            Target::Scorecard(s) => return (HashSet::from([s]), HashSet::new()),
            Target::Object(o) => o,
        };
        let events = self.upto(&content_stream(owner), until);
        // Every container an object was ever created with (core creates an
        // object once; a superset either way).
        let mut containers: HashMap<ObjectId, Vec<ObjectId>> = HashMap::new();
        for event in events {
            if let Decoded::Content {
                event:
                    ContentEvent::ObjectCreated {
                        object_id,
                        container: Some(container),
                        ..
                    },
                ..
            } = &event.decoded
            {
                containers.entry(*object_id).or_default().push(*container);
            }
        }
        let mut lineage = HashSet::from([object]);
        let mut stack = vec![object];
        while let Some(current) = stack.pop() {
            for &up in containers.get(&current).into_iter().flatten() {
                if lineage.insert(up) {
                    stack.push(up);
                }
            }
        }
        let scorecards = events
            .iter()
            .filter_map(|event| match &event.decoded {
                Decoded::Content {
                    event:
                        ContentEvent::ObjectPlacedOnScorecard {
                            object_id,
                            scorecard_id,
                        },
                    ..
                } if lineage.contains(object_id) => Some(*scorecard_id),
                _ => None,
            })
            .collect();
        (scorecards, lineage)
    }

    /// The partners of `owner` whose users may see `target` at `until`: those
    /// the owner shares, over a link active then, a scorecard the target may
    /// show on. A superset of the sites the access index finds seeing it.
    /// Each comes with whether its content can matter: only if it related
    /// the target or one of its containers by then (a partner's users see a
    /// shared object otherwise through their flags and assignments alone,
    /// held in the partner's site stream).
    fn partners_seeing(&self, owner: SiteId, target: Target, until: u64) -> BTreeMap<SiteId, bool> {
        let Some(partners) = self.partners.get(&owner) else {
            return BTreeMap::new();
        };
        let (shows_on, lineage) = self.may_show_on(owner, target, until);
        let relating: HashSet<SiteId> = lineage
            .iter()
            .filter_map(|object| self.related.get(object))
            .flatten()
            .filter(|(at, _)| *at <= until)
            .map(|(_, site)| *site)
            .collect();
        partners
            .iter()
            .copied()
            .filter(|&partner| {
                let stream = connection_stream(owner, partner);
                self.shared_over(
                    &stream,
                    Link {
                        from: owner,
                        to: partner,
                    },
                    until,
                )
                .is_some_and(|shared| shared.iter().any(|s| shows_on.contains(s)))
            })
            .map(|partner| (partner, relating.contains(&partner)))
            .collect()
    }
}

/// The archive, loaded from the log and following it. Clones share it.
#[derive(Debug, Clone)]
pub struct LiveArchive {
    archive: Arc<RwLock<Archive>>,
    health: PartHealth,
    stop: Arc<watch::Sender<bool>>,
}

impl LiveArchive {
    /// Loads every event committed so far (returns once it has), then
    /// follows the log in a background task, which survives transient
    /// faults (resuming after the last event archived) and ends with an
    /// error only on a permanent one. Questions beyond the position the
    /// archive holds are answered from the log in PostgreSQL.
    pub async fn start(
        store: PgEventStore,
        page_size: usize,
    ) -> Result<(Self, JoinHandle<Result<(), ProjectionError>>), ProjectionError> {
        let head = store.head_position().await?;
        let archive = Arc::new(RwLock::new(Archive::default()));
        let health = PartHealth::new("history_archive", 0);
        let (stop_tx, stop_rx) = watch::channel(false);
        let task = {
            let (shared, health) = (Arc::clone(&archive), health.clone());
            let subscription = SubscriptionOptions {
                page_size,
                ..SubscriptionOptions::default()
            };
            tokio::spawn(async move {
                follow_in_memory(&store, subscription, &health, stop_rx, |event| {
                    shared
                        .write()
                        .unwrap_or_else(|poisoned| poisoned.into_inner())
                        .add(event)
                })
                .await
            })
        };
        let live = Self {
            archive,
            health,
            stop: Arc::new(stop_tx),
        };
        let mut reached = live.health.subscribe();
        let loaded = tokio::time::timeout(Duration::from_secs(3_600), async {
            reached
                .wait_for(|s| {
                    s.position >= head || matches!(s.state, PartState::Failed | PartState::Stopped)
                })
                .await
                .is_ok_and(|s| s.position >= head)
        })
        .await;
        if loaded == Ok(true) {
            return Ok((live, task));
        }
        live.stop();
        match task.await {
            Ok(Err(e)) => Err(e),
            _ => Err(ProjectionError::NotLoaded(
                "the archive did not load the log".into(),
            )),
        }
    }

    /// The position of the last event archived (as published: at the end of
    /// every page read).
    pub fn position(&self) -> u64 {
        self.health.position()
    }

    /// The follower's health, for `/ready`.
    pub fn health(&self) -> &PartHealth {
        &self.health
    }

    /// Asks the follower to stop.
    pub fn stop(&self) {
        self.stop.send_replace(true);
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Archive> {
        self.archive
            .read()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Whether the archive holds everything up to `position`.
    pub(crate) fn covers(&self, position: u64) -> bool {
        self.position() >= position
    }

    /// The site that created `user`, if it did at or before `position`.
    pub(crate) fn site_of_user(&self, user: UserId, position: u64) -> Option<SiteId> {
        self.read()
            .user_sites
            .get(&user)
            .filter(|(at, _)| *at <= position)
            .map(|(_, site)| *site)
    }

    /// The site that created `target`, if it did at or before `position`.
    pub(crate) fn owner_of(&self, target: Target, position: u64) -> Option<SiteId> {
        self.read()
            .owners
            .get(&target)
            .filter(|(at, _)| *at <= position)
            .map(|(_, site)| *site)
    }

    /// The sites `site` has a connection stream with.
    pub(crate) fn partners(&self, site: SiteId) -> BTreeSet<SiteId> {
        self.read().partners.get(&site).cloned().unwrap_or_default()
    }

    /// See [`Archive::replay`]: holds the archive (the follower waits)
    /// while it feeds `apply`.
    pub(crate) fn replay<E>(
        &self,
        full: &[String],
        codes_only: &[String],
        until: u64,
        apply: impl FnMut(&ArchivedEvent) -> Result<(), E>,
    ) -> Result<usize, E> {
        self.read().replay(full, codes_only, until, apply)
    }

    /// Whether, at `until`, `link` (whose connection stream is `stream`) is
    /// active with at least one scorecard shared over it.
    pub(crate) fn shares_over(&self, stream: &str, link: Link, until: u64) -> bool {
        self.read()
            .shared_over(stream, link, until)
            .is_some_and(|shared| !shared.is_empty())
    }

    /// See [`Archive::partners_seeing`].
    pub(crate) fn partners_seeing(
        &self,
        owner: SiteId,
        target: Target,
        until: u64,
    ) -> BTreeMap<SiteId, bool> {
        self.read().partners_seeing(owner, target, until)
    }
}
