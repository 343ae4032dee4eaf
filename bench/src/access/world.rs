//! The world of the `access` benchmark: sites, users, scorecards, objects,
//! links, shares and relationships, generated from a fixed seed, together
//! with the catalog events that record it.
//!
//! The generator decides everything on a plain model ([`World`]: vectors
//! indexed by `u32`) and, as it decides, emits the events the command
//! service would have written for the same decisions, with the same
//! streams, actors and consequences (see [`generate`] for the phases). The
//! model's final state is what the Cedar encoding and the questions are
//! built from; the access index is built from the log alone, so the two
//! meet only in the answers.

use std::collections::{BTreeMap, BTreeSet};

use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use rustc_hash::{FxHashMap, FxHashSet};
use shareledger_core::catalog::{
    connection_stream, content_stream, site_code_stream, site_stream, AccessLevel, ConnectionEvent,
    ContentEvent, Directions, DomainEvent, Link as LinkId, Name, NewUser, ObjectId, ObjectKind,
    PermissionFlag, Permissions, RelationshipId, RemovalReason, Role, ScorecardId, SeatLimit,
    SiteCode, SiteCodeEvent, SiteEvent, SiteId, UserId, UserOrigin, Username,
};
use shareledger_events::{Actor, EventMetadata, EventType, NewEvent, StreamName};
use shareledger_projections::access::Target;
use uuid::Uuid;

/// The world's seed: every run builds the same world.
pub const SEED: u64 = 0xacce_55ed_2026_1124;

/// How big a world to build.
#[derive(Debug, Clone, Copy)]
pub struct Sizes {
    pub sites: usize,
    pub users: usize,
    pub scorecards: usize,
    /// Object placements (object directly on a scorecard) at the end.
    pub placements: usize,
    /// Active links (one direction each) at the end.
    pub active_links: usize,
    /// Objects of the hub site (site 0), whose big user sees them all.
    pub hub_objects: usize,
    /// Scorecards of the hub site.
    pub hub_scorecards: usize,
    /// Sites with a link to the hub (they share 1 to 5 scorecards with it).
    pub hub_partners: usize,
    /// Sites the broadcaster (site 1) shares its first scorecard with.
    pub broadcaster_partners: usize,
}

impl Sizes {
    pub fn new(quick: bool) -> Self {
        if quick {
            Self {
                sites: 50,
                users: 5_000,
                scorecards: 1_000,
                placements: 50_000,
                active_links: 250,
                hub_objects: 10_500,
                hub_scorecards: 30,
                hub_partners: 10,
                broadcaster_partners: 20,
            }
        } else {
            Self {
                sites: 1_000,
                users: 100_000,
                scorecards: 20_000,
                placements: 1_000_000,
                active_links: 5_000,
                hub_objects: 12_000,
                hub_scorecards: 40,
                hub_partners: 60,
                broadcaster_partners: 100,
            }
        }
    }
}

/// Placements per object, on average, before the fill-up.
const PLACEMENTS_PER_OBJECT: f64 = 1.4;
/// One placement in this many is removed again (its placement counted).
const REMOVED_ONE_IN: usize = 300;

#[derive(Debug, Clone)]
pub struct Site {
    pub id: SiteId,
    /// The site's first user, an Administration (Instance Admin) user.
    pub admin: u32,
    pub users: Vec<u32>,
    pub scorecards: Vec<u32>,
    pub objects: Vec<u32>,
}

#[derive(Debug, Clone)]
pub struct User {
    pub id: UserId,
    pub site: u32,
    pub flags: Permissions,
    pub active: bool,
    /// Assigned scorecards (own at any level, partners' at Browser).
    pub assigned: Vec<(u32, AccessLevel)>,
}

impl User {
    pub fn has(&self, flag: PermissionFlag) -> bool {
        self.flags.contains(&flag)
    }
}

#[derive(Debug, Clone)]
pub struct Scorecard {
    pub id: ScorecardId,
    pub site: u32,
}

#[derive(Debug, Clone)]
pub struct Object {
    pub id: ObjectId,
    pub site: u32,
    pub kind: ObjectKind,
    pub container: Option<u32>,
    pub children: Vec<u32>,
    /// Scorecards the object is placed on directly.
    pub placed: Vec<u32>,
}

/// One direction `from → to` of a connection.
#[derive(Debug, Clone, Default)]
pub struct LinkState {
    pub active: bool,
    /// Scorecards of `from` shared over the link (empty unless active).
    pub shared: Vec<u32>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum RelTarget {
    Scorecard(u32),
    Aggregation(u32),
}

#[derive(Debug, Clone)]
pub struct Relationship {
    pub id: RelationshipId,
    /// The site that holds the relationship.
    pub site: u32,
    /// The partner's object.
    pub object: u32,
    pub target: RelTarget,
    /// False once removed.
    pub live: bool,
}

/// The world's final state.
#[derive(Debug, Default)]
pub struct World {
    pub sites: Vec<Site>,
    pub users: Vec<User>,
    pub scorecards: Vec<Scorecard>,
    pub objects: Vec<Object>,
    /// Every link ever activated, by `(from, to)`.
    pub links: FxHashMap<(u32, u32), LinkState>,
    /// The keys of `links` in the order they were activated.
    pub link_order: Vec<(u32, u32)>,
    pub relationships: Vec<Relationship>,
    /// What shows on each scorecard (placed, or inside a container on it).
    pub shows: Vec<Vec<u32>>,
    /// The hub site (many objects, many partners sharing with it).
    pub hub: u32,
    /// A hub user with All Scorecards (not Instance Admin).
    pub big_user: u32,
    /// The site that shares one scorecard with many partners.
    pub broadcaster: u32,
}

impl World {
    /// The scorecards an object shows on: placed on, or through its
    /// containers (R-SHARE-2), sorted, without duplicates.
    pub fn shows_on(&self, object: u32) -> Vec<u32> {
        let mut on = Vec::new();
        let mut current = Some(object);
        while let Some(o) = current {
            on.extend_from_slice(&self.objects[o as usize].placed);
            current = self.objects[o as usize].container;
        }
        on.sort_unstable();
        on.dedup();
        on
    }

    /// The scorecards shared over the active link `from → to`.
    pub fn shared(&self, from: u32, to: u32) -> &[u32] {
        match self.links.get(&(from, to)) {
            Some(link) if link.active => &link.shared,
            _ => &[],
        }
    }

    pub fn placements(&self) -> usize {
        self.objects.iter().map(|o| o.placed.len()).sum()
    }

    pub fn active_links(&self) -> usize {
        self.links.values().filter(|l| l.active).count()
    }

    pub fn shares(&self) -> usize {
        self.links.values().map(|l| l.shared.len()).sum()
    }

    pub fn live_relationships(&self) -> usize {
        self.relationships.iter().filter(|r| r.live).count()
    }

    /// The actor of events written by `by`.
    fn actor(&self, by: By) -> Actor {
        match by {
            By::Operator => Actor::Operator {
                name: "shareledger-bench access".into(),
            },
            By::Admin(site) => {
                let site = &self.sites[site as usize];
                Actor::User {
                    user_id: self.users[site.admin as usize].id.0,
                    site_id: site.id.0,
                }
            }
            By::System => Actor::System,
        }
    }

    /// The log's form of a pending event.
    pub fn new_event(&self, pending: &Pending) -> anyhow::Result<NewEvent> {
        let mut metadata = EventMetadata::new(self.actor(pending.by), pending.correlation);
        metadata.causation_id = pending.causation;
        Ok(NewEvent::new(
            pending.id,
            EventType::parse(pending.event.event_type())?,
            1,
            pending.event.data(),
            metadata,
        )?)
    }
}

/// A target of the world: a scorecard or an object, by index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Thing {
    Scorecard(u32),
    Object(u32),
}

impl World {
    /// The access index's name for a target.
    pub fn target(&self, thing: Thing) -> Target {
        match thing {
            Thing::Scorecard(s) => Target::Scorecard(self.scorecards[s as usize].id),
            Thing::Object(o) => Target::Object(self.objects[o as usize].id),
        }
    }
}

/// A catalog event of any family.
#[derive(Debug, Clone)]
pub enum Ev {
    Site(SiteEvent),
    Code(SiteCodeEvent),
    Content(ContentEvent),
    Connection(ConnectionEvent),
}

impl Ev {
    fn event_type(&self) -> &'static str {
        match self {
            Ev::Site(e) => e.event_type(),
            Ev::Code(e) => e.event_type(),
            Ev::Content(e) => e.event_type(),
            Ev::Connection(e) => e.event_type(),
        }
    }

    fn data(&self) -> serde_json::Value {
        match self {
            Ev::Site(e) => e.data(),
            Ev::Code(e) => e.data(),
            Ev::Content(e) => e.data(),
            Ev::Connection(e) => e.data(),
        }
    }
}

/// Who causes an event: an operator, a site's admin, or the system (a
/// consequence, caused by the command's first event).
#[derive(Debug, Clone, Copy)]
pub enum By {
    Operator,
    Admin(u32),
    System,
}

/// An event to append.
#[derive(Debug, Clone)]
pub struct Pending {
    pub id: Uuid,
    pub event: Ev,
    pub by: By,
    pub correlation: Uuid,
    pub causation: Option<Uuid>,
}

/// Events for one stream, to append in order from revision `start`.
#[derive(Debug)]
pub struct StreamJob {
    pub stream: StreamName,
    pub start: u64,
    pub events: Vec<Pending>,
}

/// One step of writing the world. Phases are appended one after the other;
/// inside a bulk phase each stream's events keep their order, streams are
/// appended concurrently in big multi-stream appends. A commands phase
/// appends each command's streams in one append, one command at a time.
#[derive(Debug)]
pub enum Phase {
    Bulk {
        name: &'static str,
        jobs: Vec<StreamJob>,
    },
    Commands {
        name: &'static str,
        commands: Vec<Vec<StreamJob>>,
    },
}

impl Phase {
    pub fn name(&self) -> &'static str {
        match self {
            Phase::Bulk { name, .. } | Phase::Commands { name, .. } => name,
        }
    }

    pub fn events(&self) -> usize {
        match self {
            Phase::Bulk { jobs, .. } => jobs.iter().map(|j| j.events.len()).sum(),
            Phase::Commands { commands, .. } => commands
                .iter()
                .flat_map(|c| c.iter().map(|j| j.events.len()))
                .sum(),
        }
    }
}

/// Collects a bulk phase's events per stream.
struct BulkBuilder {
    name: &'static str,
    jobs: Vec<StreamJob>,
    by_stream: FxHashMap<String, usize>,
}

impl BulkBuilder {
    fn new(name: &'static str) -> Self {
        Self {
            name,
            jobs: Vec::new(),
            by_stream: FxHashMap::default(),
        }
    }

    fn finish(self) -> Phase {
        Phase::Bulk {
            name: self.name,
            jobs: self.jobs,
        }
    }
}

/// The generator: the model being decided, the RNG, and the revision each
/// stream is at.
struct Gen {
    rng: StdRng,
    world: World,
    revisions: FxHashMap<String, u64>,
    /// Users each site gets (its admin included).
    users_per_site: Vec<usize>,
    /// Each site's live relationships, once phase 5 made them.
    relationships_by_site: Vec<Vec<u32>>,
}

impl Gen {
    fn uuid(&mut self) -> Uuid {
        uuid::Builder::from_random_bytes(self.rng.gen()).into_uuid()
    }

    /// A pending event that is a command of its own.
    fn command(&mut self, event: Ev, by: By) -> Pending {
        let id = self.uuid();
        let correlation = self.uuid();
        Pending {
            id,
            event,
            by,
            correlation,
            causation: None,
        }
    }

    /// Adds a one-event command to `stream` in a bulk phase.
    fn push(&mut self, phase: &mut BulkBuilder, stream: String, event: Ev, by: By) {
        let pending = self.command(event, by);
        let job = match phase.by_stream.get(&stream) {
            Some(i) => *i,
            None => {
                let start = self.revisions.get(&stream).copied().unwrap_or(0);
                phase.jobs.push(StreamJob {
                    stream: StreamName::parse(stream.clone()).expect("catalog stream names"),
                    start,
                    events: Vec::new(),
                });
                phase.by_stream.insert(stream.clone(), phase.jobs.len() - 1);
                phase.jobs.len() - 1
            }
        };
        phase.jobs[job].events.push(pending);
        *self.revisions.entry(stream).or_insert(0) += 1;
    }

    /// One stream's part of a multi-stream command.
    fn command_part(&mut self, stream: String, events: Vec<Pending>) -> StreamJob {
        let revision = self.revisions.entry(stream.clone()).or_insert(0);
        let start = *revision;
        *revision += events.len() as u64;
        StreamJob {
            stream: StreamName::parse(stream).expect("catalog stream names"),
            start,
            events,
        }
    }

    fn site_id(&self, site: u32) -> SiteId {
        self.world.sites[site as usize].id
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> T {
        items[self.rng.gen_range(0..items.len())]
    }

    /// A new user of `site` in the model, and its `UserAdded` event.
    fn add_user(&mut self, site: u32, number: usize, role: Role) -> Ev {
        let id = UserId(self.uuid());
        let permissions = role.default_permissions();
        let index = self.world.users.len() as u32;
        self.world.users.push(User {
            id,
            site,
            flags: permissions.clone(),
            active: true,
            assigned: Vec::new(),
        });
        self.world.sites[site as usize].users.push(index);
        Ev::Site(SiteEvent::UserAdded {
            user: NewUser {
                user_id: id,
                username: Username::parse(&format!("u{number}@s{site}.example"))
                    .expect("valid username"),
                name: name(&format!("User {number} of site {site}")),
                role,
                permissions,
                email: None,
            },
            origin: UserOrigin::Added,
            scorecard_access: BTreeMap::new(),
            hide_organization_settings: false,
        })
    }

    // ---- phase 1 -----------------------------------------------------------

    fn sites(&mut self, sizes: &Sizes) -> Phase {
        let mut phase = BulkBuilder::new("sites");
        self.users_per_site = spread(&mut self.rng, sizes.users, sizes.sites, 10);
        for i in 0..sizes.sites {
            let id = SiteId(self.uuid());
            let code = SiteCode::parse(&format!("S{i:05}")).expect("valid code");
            let seat_limit = SeatLimit::new(self.users_per_site[i] as u32 * 2).expect("positive");
            let site = i as u32;
            self.world.sites.push(Site {
                id,
                admin: self.world.users.len() as u32,
                users: Vec::new(),
                scorecards: Vec::new(),
                objects: Vec::new(),
            });
            self.push(
                &mut phase,
                site_code_stream(&code),
                Ev::Code(SiteCodeEvent::SiteCodeClaimed {
                    code: code.clone(),
                    site_id: id,
                }),
                By::Operator,
            );
            self.push(
                &mut phase,
                site_stream(id),
                Ev::Site(SiteEvent::SiteRegistered {
                    site_id: id,
                    code,
                    name: name(&format!("Site {i}")),
                    seat_limit,
                    parent: None,
                }),
                By::Operator,
            );
            let admin = self.add_user(site, 0, Role::Administration);
            self.push(&mut phase, site_stream(id), admin, By::Operator);
        }
        phase.finish()
    }

    // ---- phase 2 -----------------------------------------------------------

    fn content(&mut self, sizes: &Sizes) -> Phase {
        let mut phase = BulkBuilder::new("content");
        let others = sizes.sites - 1;
        let other_scorecards = sizes.scorecards - sizes.hub_scorecards;
        let mut scorecards = vec![sizes.hub_scorecards];
        scorecards.extend(spread(&mut self.rng, other_scorecards, others, 3));
        let hub_placements = (sizes.hub_objects as f64 * PLACEMENTS_PER_OBJECT) as usize;
        let rest = sizes.placements.saturating_sub(hub_placements);
        let mut quotas = vec![hub_placements];
        quotas.extend(scorecards[1..].iter().map(|s| rest * s / other_scorecards));
        let short = sizes.placements.saturating_sub(quotas.iter().sum());
        for quota in quotas[1..].iter_mut().take(short) {
            *quota += 1;
        }
        for site in 0..sizes.sites {
            let objects = if site == self.world.hub as usize {
                sizes.hub_objects
            } else {
                ((quotas[site] as f64 / PLACEMENTS_PER_OBJECT) as usize).max(3)
            };
            self.site_content(
                &mut phase,
                site as u32,
                scorecards[site],
                objects,
                quotas[site],
            );
        }
        phase.finish()
    }

    fn site_content(
        &mut self,
        phase: &mut BulkBuilder,
        site: u32,
        scorecards: usize,
        objects: usize,
        quota: usize,
    ) {
        let stream = content_stream(self.site_id(site));
        let by = By::Admin(site);
        for k in 0..scorecards {
            let id = ScorecardId(self.uuid());
            let index = self.world.scorecards.len() as u32;
            self.world.scorecards.push(Scorecard { id, site });
            self.world.sites[site as usize].scorecards.push(index);
            let event = ContentEvent::ScorecardCreated {
                scorecard_id: id,
                name: name(&format!("Scorecard {k}")),
            };
            self.push(phase, stream.clone(), Ev::Content(event), by);
        }
        let own_scorecards = self.world.sites[site as usize].scorecards.clone();
        // (object, depth) of this site's containers; objects that may be placed.
        let mut containers: Vec<(u32, u8)> = Vec::new();
        let mut placeable: Vec<u32> = Vec::with_capacity(objects);
        let mut placed = 0usize;
        for j in 0..objects {
            let is_container = self.rng.gen_bool(0.18);
            let container = if containers.is_empty() {
                None
            } else if is_container {
                let candidate = self.pick(&containers);
                (candidate.1 < 2 && self.rng.gen_bool(0.3)).then_some(candidate)
            } else {
                self.rng.gen_bool(0.55).then(|| self.pick(&containers))
            };
            let kind = match (is_container, self.rng.gen_bool(0.6)) {
                (true, true) => ObjectKind::Result,
                (true, false) => ObjectKind::Program,
                (false, true) => ObjectKind::Indicator,
                (false, false) => ObjectKind::PerformanceMeasure,
            };
            let id = ObjectId(self.uuid());
            let index = self.world.objects.len() as u32;
            self.world.objects.push(Object {
                id,
                site,
                kind,
                container: container.map(|c| c.0),
                children: Vec::new(),
                placed: Vec::new(),
            });
            self.world.sites[site as usize].objects.push(index);
            if let Some((parent, depth)) = container {
                self.world.objects[parent as usize].children.push(index);
                if is_container {
                    containers.push((index, depth + 1));
                }
            } else if is_container {
                containers.push((index, 0));
            }
            let event = ContentEvent::ObjectCreated {
                object_id: id,
                kind,
                name: name(&format!("Object {j}")),
                container: container.map(|c| self.world.objects[c.0 as usize].id),
            };
            self.push(phase, stream.clone(), Ev::Content(event), by);
            let placements = match (container, self.rng.gen_range(0..100)) {
                (None, 0..5) => continue, // on no scorecard: All Scorecards only
                (None, 5..75) | (Some(_), 0..20) => 1,
                (None, _) => 2,
                (Some(_), _) => 0,
            };
            placeable.push(index);
            for _ in 0..placements {
                let scorecard = self.pick(&own_scorecards);
                if self.place(phase, &stream, site, index, scorecard) {
                    placed += 1;
                }
            }
        }
        let removals = quota / REMOVED_ONE_IN;
        let mut attempts = 0usize;
        while placed < quota + removals && attempts < 20 * (quota + removals) {
            attempts += 1;
            let object = self.pick(&placeable);
            let scorecard = self.pick(&own_scorecards);
            if self.place(phase, &stream, site, object, scorecard) {
                placed += 1;
            }
        }
        let mut removed = 0;
        while removed < removals {
            let object = self.pick(&placeable);
            let on = &self.world.objects[object as usize].placed;
            if on.is_empty() {
                continue;
            }
            let scorecard = on[self.rng.gen_range(0..on.len())];
            self.world.objects[object as usize]
                .placed
                .retain(|s| *s != scorecard);
            let event = ContentEvent::ObjectRemovedFromScorecard {
                object_id: self.world.objects[object as usize].id,
                scorecard_id: self.world.scorecards[scorecard as usize].id,
            };
            self.push(phase, stream.clone(), Ev::Content(event), by);
            removed += 1;
        }
    }

    /// Places `object` on `scorecard` unless it is there already.
    fn place(
        &mut self,
        phase: &mut BulkBuilder,
        stream: &str,
        site: u32,
        object: u32,
        scorecard: u32,
    ) -> bool {
        let info = &mut self.world.objects[object as usize];
        if info.placed.contains(&scorecard) {
            return false;
        }
        info.placed.push(scorecard);
        let event = ContentEvent::ObjectPlacedOnScorecard {
            object_id: info.id,
            scorecard_id: self.world.scorecards[scorecard as usize].id,
        };
        self.push(
            phase,
            stream.to_owned(),
            Ev::Content(event),
            By::Admin(site),
        );
        true
    }

    // ---- phase 3 -----------------------------------------------------------

    fn users(&mut self, sizes: &Sizes) -> Phase {
        let mut phase = BulkBuilder::new("users");
        for site in 0..sizes.sites as u32 {
            let stream = site_stream(self.site_id(site));
            let by = By::Admin(site);
            let own = self.world.sites[site as usize].scorecards.clone();
            for number in 1..self.users_per_site[site as usize] {
                let big = site == self.world.hub && number == 1;
                let role = match self.rng.gen_range(0..100) {
                    _ if big => Role::ScorecardBuilder,
                    0..3 => Role::Administration,
                    3..10 => Role::ScorecardBuilder,
                    10..65 => Role::DataEntry,
                    _ => Role::Presenter,
                };
                let added = self.add_user(site, number, role);
                self.push(&mut phase, stream.clone(), added, by);
                let user = self.world.users.len() as u32 - 1;
                if big {
                    self.world.big_user = user;
                    continue;
                }
                let mut flags = self.world.users[user as usize].flags.clone();
                let changed = match role {
                    Role::DataEntry | Role::Presenter if self.rng.gen_bool(0.12) => {
                        flags.insert(PermissionFlag::AddEditScorecardObjects)
                    }
                    Role::ScorecardBuilder | Role::Administration if self.rng.gen_bool(0.3) => {
                        flags.remove(&PermissionFlag::AllScorecards)
                    }
                    _ => false,
                };
                if changed {
                    let user_id = self.world.users[user as usize].id;
                    self.world.users[user as usize].flags = flags.clone();
                    let event = SiteEvent::UserPermissionsSet {
                        user_id,
                        permissions: flags.clone(),
                    };
                    self.push(&mut phase, stream.clone(), Ev::Site(event), by);
                }
                let (p, most) = match role {
                    Role::DataEntry | Role::Presenter
                        if flags.contains(&PermissionFlag::AddEditScorecardObjects) =>
                    {
                        (0.5, 4)
                    }
                    Role::DataEntry | Role::Presenter => (0.85, 4),
                    Role::ScorecardBuilder => (0.4, 2),
                    Role::Administration => (0.2, 1),
                };
                if !self.rng.gen_bool(p) {
                    continue;
                }
                for _ in 0..self.rng.gen_range(1..=most) {
                    let scorecard = self.pick(&own);
                    let level = pick_level(&mut self.rng);
                    self.grant(&mut phase, &stream, site, user, scorecard, level);
                }
                if self.rng.gen_bool(0.02) {
                    let assigned = &self.world.users[user as usize].assigned;
                    let (scorecard, _) = assigned[self.rng.gen_range(0..assigned.len())];
                    self.world.users[user as usize]
                        .assigned
                        .retain(|(s, _)| *s != scorecard);
                    let event = SiteEvent::ScorecardAccessRevoked {
                        user_id: self.world.users[user as usize].id,
                        scorecard_id: self.world.scorecards[scorecard as usize].id,
                    };
                    self.push(&mut phase, stream.clone(), Ev::Site(event), by);
                }
            }
        }
        phase.finish()
    }

    /// Assigns `scorecard` to `user` at `level` (a new level replaces the old).
    fn grant(
        &mut self,
        phase: &mut BulkBuilder,
        stream: &str,
        site: u32,
        user: u32,
        scorecard: u32,
        level: AccessLevel,
    ) {
        let info = &mut self.world.users[user as usize];
        info.assigned.retain(|(s, _)| *s != scorecard);
        info.assigned.push((scorecard, level));
        let event = SiteEvent::ScorecardAccessGranted {
            user_id: info.id,
            scorecard_id: self.world.scorecards[scorecard as usize].id,
            level,
        };
        self.push(phase, stream.to_owned(), Ev::Site(event), By::Admin(site));
    }

    // ---- phase 4 -----------------------------------------------------------

    fn connections(&mut self, sizes: &Sizes) -> Phase {
        let mut phase = BulkBuilder::new("connections");
        let sites = sizes.sites as u32;
        let (hub, broadcaster) = (self.world.hub, self.world.broadcaster);
        let revoked = (sizes.active_links / 100).max(1);
        let wanted = sizes.active_links + revoked;
        let mut pairs: FxHashSet<(u32, u32)> = FxHashSet::default();
        let mut plan: Vec<(u32, u32, Directions)> = Vec::new();
        let mut links = 0;
        let pair = |a: u32, b: u32| (a.min(b), a.max(b));
        let mut others: Vec<u32> = (2..sites).collect();
        others.shuffle(&mut self.rng);
        for p in others.iter().take(sizes.broadcaster_partners) {
            pairs.insert(pair(broadcaster, *p));
            plan.push((broadcaster, *p, Directions::Both));
            links += 2;
        }
        others.shuffle(&mut self.rng);
        for p in others.iter().take(sizes.hub_partners) {
            pairs.insert(pair(*p, hub));
            plan.push((*p, hub, Directions::Both));
            links += 2;
        }
        while links < wanted {
            let (a, b) = (self.rng.gen_range(0..sites), self.rng.gen_range(0..sites));
            if a == b || !pairs.insert(pair(a, b)) {
                continue;
            }
            let directions = if wanted - links == 1 || self.rng.gen_bool(0.05) {
                Directions::Offer
            } else {
                Directions::Both
            };
            plan.push((a, b, directions));
            links += if directions == Directions::Both { 2 } else { 1 };
        }
        for (a, b, directions) in plan {
            self.connect(&mut phase, a, b, directions);
        }
        // Requests left pending, and requests denied: no access either way.
        let (pending, denied) = (
            (sizes.active_links / 100).max(1),
            (sizes.active_links / 200).max(1),
        );
        let mut made = 0;
        while made < pending + denied {
            let (a, b) = (self.rng.gen_range(0..sites), self.rng.gen_range(0..sites));
            if a == b || !pairs.insert(pair(a, b)) {
                continue;
            }
            let stream = connection_stream(self.site_id(a), self.site_id(b));
            let offered = LinkId {
                from: self.site_id(a),
                to: self.site_id(b),
            };
            let event = ConnectionEvent::ConnectionRequested {
                requester: offered.from,
                partner: offered.to,
                directions: Directions::Both,
                links: vec![offered, offered.reversed()],
            };
            self.push(
                &mut phase,
                stream.clone(),
                Ev::Connection(event),
                By::Admin(a),
            );
            if made >= pending {
                let event = ConnectionEvent::ConnectionDenied {
                    denier: offered.to,
                    links: vec![offered, offered.reversed()],
                };
                self.push(&mut phase, stream, Ev::Connection(event), By::Admin(b));
            }
            made += 1;
        }
        phase.finish()
    }

    /// `a` requests `b` (both directions or an offer), `b` approves, and each
    /// new link shares 1 to 5 of its scorecards.
    fn connect(&mut self, phase: &mut BulkBuilder, a: u32, b: u32, directions: Directions) {
        let stream = connection_stream(self.site_id(a), self.site_id(b));
        let offered = LinkId {
            from: self.site_id(a),
            to: self.site_id(b),
        };
        let (ids, keys) = match directions {
            Directions::Both => (vec![offered, offered.reversed()], vec![(a, b), (b, a)]),
            Directions::Offer => (vec![offered], vec![(a, b)]),
        };
        let requested = ConnectionEvent::ConnectionRequested {
            requester: offered.from,
            partner: offered.to,
            directions,
            links: ids.clone(),
        };
        self.push(
            phase,
            stream.clone(),
            Ev::Connection(requested),
            By::Admin(a),
        );
        let activated = ConnectionEvent::LinksActivated {
            approver: offered.to,
            links: ids.clone(),
            mutual_request: false,
        };
        self.push(
            phase,
            stream.clone(),
            Ev::Connection(activated),
            By::Admin(b),
        );
        for (link, (from, to)) in ids.into_iter().zip(keys) {
            let mut own = self.world.sites[from as usize].scorecards.clone();
            own.shuffle(&mut self.rng);
            let count = self.rng.gen_range(1..=5).min(own.len());
            let mut shared: Vec<u32> = own[..count].to_vec();
            if from == self.world.broadcaster {
                let first = own.iter().copied().min().expect("sites have scorecards");
                if !shared.contains(&first) {
                    shared[0] = first;
                }
            }
            for scorecard in &shared {
                let event = ConnectionEvent::ScorecardShared {
                    link,
                    scorecard_id: self.world.scorecards[*scorecard as usize].id,
                };
                self.push(
                    phase,
                    stream.clone(),
                    Ev::Connection(event),
                    By::Admin(from),
                );
            }
            self.world.links.insert(
                (from, to),
                LinkState {
                    active: true,
                    shared,
                },
            );
            self.world.link_order.push((from, to));
        }
    }

    // ---- phase 5 -----------------------------------------------------------

    fn partners(&mut self) -> Phase {
        let mut phase = BulkBuilder::new("partners");
        // Placements do not change after phase 2.
        let mut shows: Vec<Vec<u32>> = vec![Vec::new(); self.world.scorecards.len()];
        for object in 0..self.world.objects.len() as u32 {
            for scorecard in self.world.shows_on(object) {
                shows[scorecard as usize].push(object);
            }
        }
        self.world.shows = shows;
        self.relationships_by_site = vec![Vec::new(); self.world.sites.len()];
        let mut made: FxHashSet<(u32, u32, RelTarget)> = FxHashSet::default();
        for (from, to) in self.world.link_order.clone() {
            let shared = self.world.links[&(from, to)].shared.clone();
            let site_stream_to = site_stream(self.site_id(to));
            for user in self.world.sites[to as usize].users.clone() {
                let skip =
                    user == self.world.sites[to as usize].admin || user == self.world.big_user;
                if skip || !self.rng.gen_bool(0.05) {
                    continue;
                }
                let scorecard = self.pick(&shared);
                let assigned = &self.world.users[user as usize].assigned;
                if !assigned.iter().any(|(s, _)| *s == scorecard) {
                    self.grant(
                        &mut phase,
                        &site_stream_to,
                        to,
                        user,
                        scorecard,
                        AccessLevel::Browser,
                    );
                }
            }
            if !self.rng.gen_bool(0.4) {
                continue;
            }
            let content_to = content_stream(self.site_id(to));
            for _ in 0..self.rng.gen_range(1..=3) {
                let scorecard = self.pick(&shared);
                let visible = &self.world.shows[scorecard as usize];
                if visible.is_empty() {
                    continue;
                }
                let object = visible[self.rng.gen_range(0..visible.len())];
                let target = if self.rng.gen_bool(0.7) {
                    let own = &self.world.sites[to as usize].scorecards;
                    RelTarget::Scorecard(own[self.rng.gen_range(0..own.len())])
                } else if self.world.objects[object as usize].kind.is_measure() {
                    let own = &self.world.sites[to as usize].objects;
                    let into = (0..10)
                        .map(|_| own[self.rng.gen_range(0..own.len())])
                        .find(|o| self.world.objects[*o as usize].kind.is_measure());
                    match into {
                        Some(into) => RelTarget::Aggregation(into),
                        None => continue,
                    }
                } else {
                    continue;
                };
                if !made.insert((to, object, target)) {
                    continue;
                }
                let id = RelationshipId(self.uuid());
                let origin_site = self.site_id(from);
                let object_id = self.world.objects[object as usize].id;
                let event = match target {
                    RelTarget::Scorecard(s) => ContentEvent::SharedObjectLinked {
                        relationship_id: id,
                        scorecard_id: self.world.scorecards[s as usize].id,
                        origin_site,
                        object_id,
                    },
                    RelTarget::Aggregation(o) => ContentEvent::SharedMeasureAggregated {
                        relationship_id: id,
                        into_object: self.world.objects[o as usize].id,
                        origin_site,
                        object_id,
                    },
                };
                self.push(
                    &mut phase,
                    content_to.clone(),
                    Ev::Content(event),
                    By::Admin(to),
                );
                self.relationships_by_site[to as usize].push(self.world.relationships.len() as u32);
                self.world.relationships.push(Relationship {
                    id,
                    site: to,
                    object,
                    target,
                    live: true,
                });
            }
        }
        phase.finish()
    }

    // ---- phase 6 -----------------------------------------------------------

    fn deactivations(&mut self) -> Phase {
        let mut phase = BulkBuilder::new("deactivations");
        for user in 0..self.world.users.len() as u32 {
            let site = self.world.users[user as usize].site;
            if user == self.world.sites[site as usize].admin
                || user == self.world.big_user
                || !self.rng.gen_bool(0.02)
            {
                continue;
            }
            let stream = site_stream(self.site_id(site));
            let user_id = self.world.users[user as usize].id;
            let event = SiteEvent::UserDeactivated { user_id };
            self.push(&mut phase, stream.clone(), Ev::Site(event), By::Admin(site));
            self.world.users[user as usize].active = false;
            if self.rng.gen_bool(0.25) {
                let event = SiteEvent::UserReactivated { user_id };
                self.push(&mut phase, stream, Ev::Site(event), By::Admin(site));
                self.world.users[user as usize].active = true;
            }
        }
        phase.finish()
    }

    // ---- phase 7 -----------------------------------------------------------

    fn unshares_and_revokes(&mut self, sizes: &Sizes) -> Phase {
        let mut commands = Vec::new();
        for (from, to) in self.world.link_order.clone() {
            for scorecard in self.world.links[&(from, to)].shared.clone() {
                if self.world.links[&(from, to)].shared.len() > 1 && self.rng.gen_bool(0.03) {
                    commands.push(self.unshare(from, to, scorecard));
                }
            }
        }
        let (hub, broadcaster) = (self.world.hub, self.world.broadcaster);
        let mut candidates: Vec<(u32, u32)> = self
            .world
            .link_order
            .iter()
            .copied()
            .filter(|(from, to)| *from != broadcaster && *to != hub)
            .collect();
        candidates.shuffle(&mut self.rng);
        for (from, to) in candidates
            .into_iter()
            .take((sizes.active_links / 100).max(1))
        {
            commands.push(self.revoke(from, to));
        }
        Phase::Commands {
            name: "unshares and revokes",
            commands,
        }
    }

    /// The link's id as events carry it.
    fn link_id(&self, from: u32, to: u32) -> LinkId {
        LinkId {
            from: self.site_id(from),
            to: self.site_id(to),
        }
    }

    /// `to`'s live relationships to `from`'s objects that `to` no longer
    /// sees over `from → to`, removed in the model, as events caused by
    /// `cause`.
    fn relationships_lost(
        &mut self,
        from: u32,
        to: u32,
        reason: RemovalReason,
        correlation: Uuid,
        cause: Uuid,
    ) -> Vec<Pending> {
        let shared: BTreeSet<u32> = self.world.shared(from, to).iter().copied().collect();
        let mut lost = Vec::new();
        for r in self.relationships_by_site[to as usize].clone() {
            let rel = &self.world.relationships[r as usize];
            if !rel.live || self.world.objects[rel.object as usize].site != from {
                continue;
            }
            let visible = self
                .world
                .shows_on(rel.object)
                .iter()
                .any(|s| shared.contains(s));
            if visible {
                continue;
            }
            self.world.relationships[r as usize].live = false;
            lost.push(Pending {
                id: self.uuid(),
                event: Ev::Content(ContentEvent::RelationshipRemoved {
                    relationship_id: self.world.relationships[r as usize].id,
                    reason,
                }),
                by: By::System,
                correlation,
                causation: Some(cause),
            });
        }
        lost
    }

    fn unshare(&mut self, from: u32, to: u32, scorecard: u32) -> Vec<StreamJob> {
        let (id, correlation) = (self.uuid(), self.uuid());
        let link = self.link_id(from, to);
        let unshared = Pending {
            id,
            event: Ev::Connection(ConnectionEvent::ScorecardUnshared {
                link,
                scorecard_id: self.world.scorecards[scorecard as usize].id,
                because_link_revoked: false,
            }),
            by: By::Admin(from),
            correlation,
            causation: None,
        };
        if let Some(state) = self.world.links.get_mut(&(from, to)) {
            state.shared.retain(|s| *s != scorecard);
        }
        let lost =
            self.relationships_lost(from, to, RemovalReason::ScorecardUnshared, correlation, id);
        let mut parts =
            vec![self.command_part(connection_stream(link.from, link.to), vec![unshared])];
        if !lost.is_empty() {
            parts.push(self.command_part(content_stream(link.to), lost));
        }
        parts
    }

    fn revoke(&mut self, from: u32, to: u32) -> Vec<StreamJob> {
        let (id, correlation) = (self.uuid(), self.uuid());
        let link = self.link_id(from, to);
        let revoker = if self.rng.gen_bool(0.5) { from } else { to };
        let mut events = vec![Pending {
            id,
            event: Ev::Connection(ConnectionEvent::LinkRevoked {
                revoker: self.site_id(revoker),
                link,
            }),
            by: By::Admin(revoker),
            correlation,
            causation: None,
        }];
        let state = self
            .world
            .links
            .get_mut(&(from, to))
            .expect("an activated link");
        state.active = false;
        let shared = std::mem::take(&mut state.shared);
        for scorecard in shared {
            events.push(Pending {
                id: self.uuid(),
                event: Ev::Connection(ConnectionEvent::ScorecardUnshared {
                    link,
                    scorecard_id: self.world.scorecards[scorecard as usize].id,
                    because_link_revoked: true,
                }),
                by: By::System,
                correlation,
                causation: Some(id),
            });
        }
        let lost = self.relationships_lost(from, to, RemovalReason::LinkRevoked, correlation, id);
        let mut parts = vec![self.command_part(connection_stream(link.from, link.to), events)];
        if !lost.is_empty() {
            parts.push(self.command_part(content_stream(link.to), lost));
        }
        parts
    }
}

/// `total` split into `n` parts of at least `min`, unevenly: equal parts,
/// then `n / 2` random transfers of up to half a part.
fn spread(rng: &mut StdRng, total: usize, n: usize, min: usize) -> Vec<usize> {
    let base = total / n;
    let mut parts = vec![base; n];
    for part in parts.iter_mut().take(total % n) {
        *part += 1;
    }
    for _ in 0..n / 2 {
        let (from, to) = (rng.gen_range(0..n), rng.gen_range(0..n));
        let room = parts[from].saturating_sub(min).min(base / 2);
        if room > 0 && from != to {
            let moved = rng.gen_range(1..=room);
            parts[from] -= moved;
            parts[to] += moved;
        }
    }
    parts
}

fn name(text: &str) -> Name {
    Name::parse(text).expect("generated names are valid")
}

/// Browser 50 %, Updater 25 %, Editor 15 %, Scorecard Admin 10 %.
fn pick_level(rng: &mut StdRng) -> AccessLevel {
    match rng.gen_range(0..100) {
        0..50 => AccessLevel::Browser,
        50..75 => AccessLevel::Updater,
        75..90 => AccessLevel::Editor,
        _ => AccessLevel::ScorecardAdmin,
    }
}

/// Generates the world and the phases of events that write it.
///
/// 1. `sites`: `SiteCodeClaimed` and `SiteRegistered` by an operator, and
///    each site's first user (Administration) added by the operator.
/// 2. `content`: each site's scorecards, objects (about 18 % containers,
///    nested up to three deep; most measures inside a container; about 5 %
///    of top-level objects on no scorecard), placements (top-level objects
///    on one or two scorecards, some contained ones directly too, then
///    random extra placements up to the site's quota), and a few placements
///    removed again. Issued by the site's admin.
/// 3. `users`: the other users (Administration 3 %, Scorecard Builder 7 %,
///    Data Entry 55 %, Presenter 35 %), flag changes (Add/Edit Scorecard
///    Objects given to some, All Scorecards taken from some builders and
///    admins), own scorecards assigned at random levels, a few revoked.
/// 4. `connections`: pairs requested (both directions) and approved, a few
///    offer-only; each active link shares 1 to 5 of its scorecards. The
///    broadcaster shares its first scorecard with many partners; many
///    partners share with the hub. Also some requests left pending and
///    some denied.
/// 5. `partners`: partners' shared scorecards assigned (Browser) to some
///    users of the receiving site, and relationships (shared objects placed
///    on own scorecards, shared measures aggregated into own measures).
/// 6. `deactivations`: about 2 % of users deactivated, a quarter of them
///    reactivated.
/// 7. `unshares and revokes` (multi-stream commands): about 3 % of shares
///    unshared, about 1 % of links revoked, each with the consequences the
///    command service appends with it (`ScorecardUnshared` for a revoked
///    link, `RelationshipRemoved` for relationships that lost their object).
pub fn generate(sizes: &Sizes, seed: u64) -> (World, Vec<Phase>) {
    let mut gen = Gen {
        rng: StdRng::seed_from_u64(seed),
        world: World::default(),
        revisions: FxHashMap::default(),
        users_per_site: Vec::new(),
        relationships_by_site: Vec::new(),
    };
    gen.world.hub = 0;
    gen.world.broadcaster = 1;
    let phases = vec![
        gen.sites(sizes),
        gen.content(sizes),
        gen.users(sizes),
        gen.connections(sizes),
        gen.partners(),
        gen.deactivations(),
        gen.unshares_and_revokes(sizes),
    ];
    (gen.world, phases)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_keeps_the_total_and_the_minimum() {
        let mut rng = StdRng::seed_from_u64(7);
        let parts = spread(&mut rng, 1_003, 10, 20);
        assert_eq!(parts.iter().sum::<usize>(), 1_003);
        assert!(parts.iter().all(|p| *p >= 20), "{parts:?}");
    }
}
