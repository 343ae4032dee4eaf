//! One way to write a command: the [`Decision`] trait.
//!
//! A command is one type (its data, deserializable as the HTTP body) that
//! says what it reads ([`Decision::reads`]: the streams whose folded states
//! it needs, asked again as they come in, so that a read may depend on an
//! earlier one), and decides on exactly those states ([`Decision::decide_on`]):
//! the events to write, per stream ([`Decided`]), or the reason it is
//! refused. The command service runs every decision the same way: it loads
//! what `reads` names (from its cache or the log), decides, and appends the
//! events on the condition that nothing it read changed meanwhile, or, when
//! the decision declares a consistency boundary ([`Decided::boundary`]),
//! nothing inside that boundary.
//!
//! Adding a command: its type and `impl Decision` with its tests here, one
//! line in the gateway's registry.

use std::collections::{BTreeMap, BTreeSet, HashMap};

use shareledger_events::catalog::{
    ConnectionEvent, ContentEvent, Link, ObjectId, ScorecardId, SiteCode, SiteCodeEvent, SiteEvent,
    SiteId,
};
use shareledger_events::Actor;
use uuid::Uuid;

use crate::boundary::BoundaryItem;
use crate::connection::ConnectionState;
use crate::content::ContentState;
use crate::error::DomainError;
use crate::site::SiteState;

/// Who issues the command, and its idempotency key (ids a command derives,
/// such as an imported file's user ids, come from the key, so a re-send
/// names the same things).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Context {
    pub actor: Actor,
    pub key: Uuid,
}

impl Context {
    /// The site the actor is a user of (`None` for operators and the system).
    pub fn actor_site(&self) -> Option<SiteId> {
        match self.actor {
            Actor::User { site_id, .. } => Some(SiteId(site_id)),
            _ => None,
        }
    }
}

/// One stream a decision reads, as its folded state.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Read {
    /// A site and its users (`site-<id>`; absent if never registered).
    Site(SiteId),
    /// A site's scorecards, objects and relationships (`content-<id>`).
    Content(SiteId),
    /// The links between two sites (`connection-<lo>-<hi>`).
    Connection(SiteId, SiteId),
    /// Which site holds a site code (`sitecode-<CODE>`).
    SiteCode(SiteCode),
    /// Which site an object is of: the content stream of the event that
    /// created it, found by the object's tag (never changes once created).
    ObjectOwner(ObjectId),
    /// Which site a scorecard is of, likewise.
    ScorecardOwner(ScorecardId),
}

/// The states a decision read. Asking for a state it did not declare in
/// [`Decision::reads`] is a bug in the decision: it panics, naming it.
#[derive(Debug, Clone, Default)]
pub struct Facts {
    sites: BTreeMap<SiteId, Option<SiteState>>,
    contents: BTreeMap<SiteId, ContentState>,
    connections: BTreeMap<(SiteId, SiteId), ConnectionState>,
    codes: HashMap<SiteCode, Option<SiteId>>,
    object_owners: BTreeMap<ObjectId, Option<SiteId>>,
    scorecard_owners: BTreeMap<ScorecardId, Option<SiteId>>,
}

/// Orders a pair, as the connection stream's name does.
fn pair(a: SiteId, b: SiteId) -> (SiteId, SiteId) {
    if a <= b {
        (a, b)
    } else {
        (b, a)
    }
}

impl Facts {
    /// Whether `read` has been loaded.
    pub fn has(&self, read: &Read) -> bool {
        match read {
            Read::Site(id) => self.sites.contains_key(id),
            Read::Content(id) => self.contents.contains_key(id),
            Read::Connection(a, b) => self.connections.contains_key(&pair(*a, *b)),
            Read::SiteCode(code) => self.codes.contains_key(code),
            Read::ObjectOwner(object) => self.object_owners.contains_key(object),
            Read::ScorecardOwner(scorecard) => self.scorecard_owners.contains_key(scorecard),
        }
    }

    /// Of `reads`, those not loaded yet, each once, in their order.
    pub fn missing(&self, reads: Vec<Read>) -> Vec<Read> {
        let mut missing: Vec<Read> = Vec::with_capacity(reads.len());
        for read in reads {
            if !self.has(&read) && !missing.contains(&read) {
                missing.push(read);
            }
        }
        missing
    }

    pub fn put_site(&mut self, id: SiteId, state: Option<SiteState>) {
        self.sites.insert(id, state);
    }

    pub fn put_content(&mut self, state: ContentState) {
        self.contents.insert(state.site, state);
    }

    pub fn put_connection(&mut self, a: SiteId, b: SiteId, state: ConnectionState) {
        self.connections.insert(pair(a, b), state);
    }

    pub fn put_site_code(&mut self, code: SiteCode, holder: Option<SiteId>) {
        self.codes.insert(code, holder);
    }

    pub fn put_object_owner(&mut self, object: ObjectId, owner: Option<SiteId>) {
        self.object_owners.insert(object, owner);
    }

    pub fn put_scorecard_owner(&mut self, scorecard: ScorecardId, owner: Option<SiteId>) {
        self.scorecard_owners.insert(scorecard, owner);
    }

    /// The site whose scorecard `scorecard` is, if any created it.
    pub fn scorecard_owner(&self, scorecard: ScorecardId) -> Option<SiteId> {
        *self.scorecard_owners.get(&scorecard).unwrap_or_else(|| {
            panic!("a decision read the owner of scorecard {scorecard} without declaring it")
        })
    }

    /// The site whose object `object` is, if any created it.
    pub fn object_owner(&self, object: ObjectId) -> Option<SiteId> {
        *self.object_owners.get(&object).unwrap_or_else(|| {
            panic!("a decision read the owner of object {object} without declaring it")
        })
    }

    /// A site's state, `None` if it was never registered.
    pub fn site(&self, id: SiteId) -> Option<&SiteState> {
        self.sites
            .get(&id)
            .unwrap_or_else(|| panic!("a decision read site {id} without declaring it"))
            .as_ref()
    }

    /// A site that must exist: else [`DomainError::SiteNotFound`].
    pub fn existing_site(&self, id: SiteId) -> Result<&SiteState, DomainError> {
        self.site(id).ok_or(DomainError::SiteNotFound(id))
    }

    /// A site's content (empty if it has none).
    pub fn content(&self, id: SiteId) -> &ContentState {
        self.contents
            .get(&id)
            .unwrap_or_else(|| panic!("a decision read the content of {id} without declaring it"))
    }

    /// The links between `a` and `b`.
    pub fn connection(&self, a: SiteId, b: SiteId) -> &ConnectionState {
        self.connections.get(&pair(a, b)).unwrap_or_else(|| {
            panic!("a decision read the connection of {a} and {b} without declaring it")
        })
    }

    /// The site holding `code`, if any.
    pub fn site_code(&self, code: &SiteCode) -> Option<SiteId> {
        *self
            .codes
            .get(code)
            .unwrap_or_else(|| panic!("a decision read site code {code} without declaring it"))
    }

    /// The scorecards `owner` shares with `partner` now (none unless the
    /// link owner→partner is active). Reads their connection.
    pub fn shared_with(&self, owner: SiteId, partner: SiteId) -> BTreeSet<ScorecardId> {
        let state = self.connection(owner, partner);
        let link = Link {
            from: owner,
            to: partner,
        };
        if state.link_state(link).is_active() {
            state.shared(link).clone()
        } else {
            BTreeSet::new()
        }
    }

    /// What of `owner`'s content `partner` sees now (R-SHARE-2). Reads the
    /// owner's content and their connection.
    pub fn visible_to(&self, owner: SiteId, partner: SiteId) -> BTreeSet<ObjectId> {
        self.content(owner)
            .visible_through(&self.shared_with(owner, partner))
    }
}

/// Events a decision writes to one stream.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write {
    /// To `site-<id>`: the command's own events.
    Site(SiteId, Vec<SiteEvent>),
    /// To `site-<id>`: changes to users as a consequence of the command's
    /// own events (R-CONN-4), recorded as the system's.
    SiteConsequences(SiteId, Vec<SiteEvent>),
    /// To `sitecode-<CODE>`.
    SiteCode(SiteCode, Vec<SiteCodeEvent>),
    /// To the pair's `connection-…` stream; the unshares a revocation causes
    /// are recorded as its consequences ([`crate::connection::is_consequence`]).
    Connection(SiteId, SiteId, Vec<ConnectionEvent>),
    /// To `content-<id>`: the command's own events.
    Content(SiteId, Vec<ContentEvent>),
    /// To `content-<id>`: relationships removed as a consequence of the
    /// command's own events (R-CONN-4, R-SHARE-4), recorded as the system's.
    ContentConsequences(SiteId, Vec<ContentEvent>),
}

impl Write {
    /// Whether it writes nothing.
    pub fn is_empty(&self) -> bool {
        match self {
            Write::Site(_, e) | Write::SiteConsequences(_, e) => e.is_empty(),
            Write::SiteCode(_, e) => e.is_empty(),
            Write::Connection(_, _, e) => e.is_empty(),
            Write::Content(_, e) | Write::ContentConsequences(_, e) => e.is_empty(),
        }
    }
}

/// What a decision decided: the events to write, and, when it declares
/// one, the consistency boundary that replaces "nothing it read changed".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Decided {
    pub writes: Vec<Write>,
    pub boundary: Option<Vec<BoundaryItem>>,
}

impl Decided {
    /// Writes `write` too (nothing if it is empty).
    pub fn and(mut self, write: Write) -> Self {
        if !write.is_empty() {
            self.writes.push(write);
        }
        self
    }

    /// One write.
    pub fn write(write: Write) -> Self {
        Self::default().and(write)
    }

    /// Events on one site's stream.
    pub fn site(site: SiteId, events: Vec<SiteEvent>) -> Self {
        Self::write(Write::Site(site, events))
    }

    /// Events on one site's content stream.
    pub fn content(site: SiteId, events: Vec<ContentEvent>) -> Self {
        Self::write(Write::Content(site, events))
    }

    /// Bounded by `items` instead of the streams it read.
    pub fn bounded_by(mut self, items: Vec<BoundaryItem>) -> Self {
        self.boundary = Some(items);
        self
    }
}

/// A command: what it reads, and what it decides on what it read.
pub trait Decision: Clone + std::fmt::Debug + Send + Sync + 'static {
    /// The command's name (imperative), as the HTTP API names it.
    const NAME: &'static str;
    /// One line for the API document.
    const SUMMARY: &'static str;
    /// The fields naming the ids this command creates (`user_id`,
    /// `object_id`, …). Over HTTP a caller may leave them out: the server
    /// gives each a new id (derived from the idempotency key, so a retry
    /// gets the same) and answers it.
    const CREATES: &'static [&'static str] = &[];

    /// The streams the decision reads, given what it has read so far: the
    /// executor loads whatever of them is not loaded yet and asks again,
    /// until every one named is loaded.
    fn reads(&self, ctx: &Context, facts: &Facts) -> Vec<Read>;

    /// The events to write, or the reason the command is refused, decided on
    /// the states [`Decision::reads`] named.
    fn decide_on(&self, ctx: &Context, facts: &Facts) -> Result<Decided, DomainError>;
}

/// Loads `decision`'s reads from `load` until none is missing, then
/// decides: what the executor does around IO, here without it (tests, and
/// in-memory models, pass a closure over states they hold).
pub fn decide_with<D: Decision>(
    decision: &D,
    ctx: &Context,
    mut load: impl FnMut(&Read, &mut Facts),
) -> Result<Decided, DomainError> {
    let mut facts = Facts::default();
    loop {
        let missing = facts.missing(decision.reads(ctx, &facts));
        if missing.is_empty() {
            return decision.decide_on(ctx, &facts);
        }
        for read in &missing {
            load(read, &mut facts);
        }
    }
}
