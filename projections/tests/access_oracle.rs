//! The access index against a reference oracle (`docs/access-model.md`).
//!
//! The oracle is deliberately naive and shares nothing with the index: it
//! reads the whole log from position 1 after every step, folds it with the
//! command side's own folds (`SiteState`, `ContentState`, `ConnectionState`)
//! into plain maps, and computes every user's level on every scorecard and
//! object by brute force, rule by rule as the model page states them. It
//! restates the rule itself: the index (like the command side's
//! `level_on_object`) asks `shareledger_core::access_rule`, so the oracle
//! does not.
//!
//! The property test drives random command sequences by random actors over
//! three sites through the real command service and PostgreSQL (links in
//! every state, shares and unshares, placements and removals, relationships
//! made and undone, renames and archives of scorecards and objects,
//! scorecard access on own and partners' scorecards, permission flags,
//! deactivation), sometimes lets the consequence worker catch up and
//! sometimes not, and after every step applies the new events to one
//! [`AccessIndex`] and asserts, for every user, target and action, that
//! Q-1 (`level`, `check`), Q-2 (`lookup`, paged with a small limit, with and
//! without filters), Q-3 (`viewers`) and Q-4's level (`explain`) agree with
//! the oracle. A disagreement fails with a readable diff and the world's
//! state in names, not ids.

#[path = "../../commands/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeMap, BTreeSet};
use std::fmt::Write as _;

use common::{by, operator};
use proptest::prelude::*;
use shareledger_commands::{CommandError, ConsequenceWorker, Service};
use shareledger_core::catalog::{
    AccessLevel, Action, Directions, Link, Name, ObjectId, ObjectKind, PermissionFlag,
    RelationshipId, Role, ScorecardId, SeatLimit, SiteCode, SiteId, UserId, Username,
};
use shareledger_core::connection::{
    ApproveConnection, CancelConnectionRequest, ConnectionState, DenyConnection, RequestConnection,
    RevokeSharing, SetSharedScorecards, ShareScorecard, UnshareScorecard,
};
use shareledger_core::content::{
    ContentState, CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
    RelationshipTarget, RemoveObjectFromScorecard, StopUsingSharedMeasure, UnlinkSharedObject,
    UseSharedMeasureInAggregation,
};
use shareledger_core::lifecycle::{ArchiveObject, ArchiveScorecard, RenameObject, RenameScorecard};
use shareledger_core::site::{
    AddUser, ChangeUserRole, DeactivateUser, GrantScorecardAccess, ReactivateUser, RegisterSite,
    RevokeScorecardAccess, SetPermissionFlags, SiteState, UserState,
};
use shareledger_events::store::{PgEventStore, PositionFrom};
use shareledger_events::{Direction, RecordedEvent};
use shareledger_projections::access::{
    AccessError, AccessIndex, LookupQuery, Target, TargetKind, Viewer, Visible,
};
use shareledger_projections::decode::{decode, Decoded};
use shareledger_projections::history::{History, HistoryError, LiveArchive, Moment};
use shareledger_tests::TestDb;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// The oracle
// ---------------------------------------------------------------------------

/// The whole log folded into plain maps.
struct Oracle {
    sites: BTreeMap<SiteId, SiteState>,
    contents: BTreeMap<SiteId, ContentState>,
    /// Keyed by the pair (lower id, higher id), as the streams are.
    connections: BTreeMap<(SiteId, SiteId), ConnectionState>,
}

/// Every recorded event of the log, from position 1.
async fn read_whole_log(store: &PgEventStore) -> Vec<RecordedEvent> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    let mut from = PositionFrom::Edge;
    loop {
        let page = store
            .read_all(Direction::Forwards, from, 10_000)
            .await
            .expect("read the log");
        let Some(last) = page.last() else { break };
        from = PositionFrom::At(last.global_position + 1);
        events.extend(page);
    }
    events
}

/// A target's own id (Q-2 orders by it).
fn target_id(target: Target) -> Uuid {
    match target {
        Target::Scorecard(s) => s.0,
        Target::Object(o) => o.0,
    }
}

/// The two sites of a `connection-<lo>-<hi>` stream.
fn connection_pair(stream: &str) -> (SiteId, SiteId) {
    let rest = stream
        .strip_prefix("connection-")
        .expect("a connection stream");
    let (a, b) = rest.split_once('-').expect("two site ids");
    let a = SiteId(Uuid::parse_str(a).expect("a site id"));
    let b = SiteId(Uuid::parse_str(b).expect("a site id"));
    (a.min(b), a.max(b))
}

impl Oracle {
    async fn read(store: &PgEventStore) -> Oracle {
        Oracle::fold(&read_whole_log(store).await)
    }

    fn fold(events: &[RecordedEvent]) -> Oracle {
        let mut oracle = Oracle {
            sites: BTreeMap::new(),
            contents: BTreeMap::new(),
            connections: BTreeMap::new(),
        };
        for recorded in events {
            match decode(recorded).expect("every event decodes") {
                None | Some(Decoded::SiteCode(_)) => {}
                Some(Decoded::Site { site, event }) => {
                    let before = oracle.sites.remove(&site);
                    if let Some(after) = SiteState::evolve(before, &event) {
                        oracle.sites.insert(site, after);
                    }
                }
                Some(Decoded::Content { site, event }) => {
                    let before = oracle
                        .contents
                        .remove(&site)
                        .unwrap_or_else(|| ContentState::empty(site));
                    oracle.contents.insert(site, before.evolve(&event));
                }
                Some(Decoded::Connection(event)) => {
                    let (lo, hi) = connection_pair(&recorded.stream);
                    let before = oracle
                        .connections
                        .remove(&(lo, hi))
                        .unwrap_or_else(|| ConnectionState::new(lo, hi));
                    oracle
                        .connections
                        .insert((lo, hi), ConnectionState::evolve(before, &event));
                }
            }
        }
        oracle
    }

    /// Every user of every site, with its site.
    fn users(&self) -> BTreeMap<UserId, (SiteId, &UserState)> {
        self.sites
            .values()
            .flat_map(|s| s.users.values().map(move |u| (u.id, (s.id, u))))
            .collect()
    }

    /// Every scorecard and object, with its owner and kind.
    fn targets(&self) -> BTreeMap<Target, (SiteId, TargetKind)> {
        let mut targets = BTreeMap::new();
        for (site, content) in &self.contents {
            for scorecard in content.scorecards.keys() {
                targets.insert(
                    Target::Scorecard(*scorecard),
                    (*site, TargetKind::Scorecard),
                );
            }
            for (id, object) in &content.objects {
                targets.insert(
                    Target::Object(*id),
                    (*site, TargetKind::Object(object.kind)),
                );
            }
        }
        targets
    }

    fn content(&self, site: SiteId) -> ContentState {
        self.contents
            .get(&site)
            .cloned()
            .unwrap_or_else(|| ContentState::empty(site))
    }

    /// `shared(A→B)`: the scorecards shared over the link if it is active.
    fn shared(&self, from: SiteId, to: SiteId) -> BTreeSet<ScorecardId> {
        let key = (from.min(to), from.max(to));
        let link = Link { from, to };
        match self.connections.get(&key) {
            Some(state) if state.link_state(link).is_active() => state.shared(link).clone(),
            _ => BTreeSet::new(),
        }
    }

    /// Whether the link `from → to` is active.
    fn link_active(&self, from: SiteId, to: SiteId) -> bool {
        self.connections
            .get(&(from.min(to), from.max(to)))
            .is_some_and(|c| c.link_state(Link { from, to }).is_active())
    }

    /// The objects `object` is inside of, nearest first (transitively).
    fn containers_of(content: &ContentState, object: ObjectId) -> Vec<ObjectId> {
        let mut chain = Vec::new();
        let mut current = content.objects.get(&object).and_then(|o| o.container);
        while let Some(c) = current {
            if chain.contains(&c) {
                break;
            }
            chain.push(c);
            current = content.objects.get(&c).and_then(|o| o.container);
        }
        chain
    }

    /// A user's level on a scorecard of its own site (the model's rule).
    fn own_scorecard_level(
        user: &UserState,
        content: &ContentState,
        scorecard: ScorecardId,
    ) -> Option<AccessLevel> {
        if !user.active || !content.scorecards.contains_key(&scorecard) {
            return None;
        }
        if user.has(PermissionFlag::InstanceAdmin) {
            return Some(AccessLevel::ScorecardAdmin);
        }
        if let Some(level) = user.scorecard_access.get(&scorecard) {
            return Some(*level);
        }
        let none_of_own_assigned = !user
            .scorecard_access
            .keys()
            .any(|s| content.scorecards.contains_key(s));
        let browse_all = user.has(PermissionFlag::AllScorecards)
            || (user.has(PermissionFlag::AddEditScorecardObjects) && none_of_own_assigned);
        browse_all.then_some(AccessLevel::Browser)
    }

    /// A user's level on an object of its own site (the model's rule,
    /// restated: not `content::level_on_object`, which asks the rule the
    /// index asks).
    fn own_object_level(
        user: &UserState,
        content: &ContentState,
        object: ObjectId,
    ) -> Option<AccessLevel> {
        if !user.active || !content.objects.contains_key(&object) {
            return None;
        }
        let on: Vec<ScorecardId> = content
            .scorecards
            .keys()
            .filter(|s| content.objects_on(**s).contains(&object))
            .copied()
            .collect();
        let all = user.has(PermissionFlag::AllScorecards);
        if user.has(PermissionFlag::InstanceAdmin) && (all || !on.is_empty()) {
            return Some(AccessLevel::ScorecardAdmin);
        }
        if let Some(level) = on.iter().filter_map(|s| user.scorecard_access.get(s)).max() {
            return Some(*level);
        }
        let none_of_own_assigned = !user
            .scorecard_access
            .keys()
            .any(|s| content.scorecards.contains_key(s));
        let browse_all =
            all || (user.has(PermissionFlag::AddEditScorecardObjects) && none_of_own_assigned);
        (all || (browse_all && !on.is_empty())).then_some(AccessLevel::Browser)
    }

    /// Q-1 by brute force: `user`'s level on `target`.
    fn level(&self, user: UserId, target: Target) -> Option<AccessLevel> {
        let users = self.users();
        let (user_site, user) = users.get(&user).copied()?;
        let (owner, _) = self.targets().get(&target).copied()?;
        if !user.active {
            return None;
        }
        let own = self.content(user_site);
        if owner == user_site {
            return match target {
                Target::Scorecard(s) => Oracle::own_scorecard_level(user, &own, s),
                Target::Object(x) => Oracle::own_object_level(user, &own, x),
            };
        }
        // Partners' content: Browser at most, only what the user's site sees.
        let origin = self.content(owner);
        let shared = self.shared(owner, user_site);
        let all = user.has(PermissionFlag::AllScorecards);
        let assigned = |s: &ScorecardId| user.scorecard_access.contains_key(s);
        let visible = match target {
            Target::Scorecard(s) => shared.contains(&s) && (all || assigned(&s)),
            Target::Object(x) => {
                let seen = origin.visible_through(&shared);
                let through_assigned = shared
                    .iter()
                    .filter(|s| assigned(s))
                    .any(|s| origin.objects_on(*s).contains(&x));
                let mut related_to = vec![x];
                related_to.extend(Oracle::containers_of(&origin, x));
                let through_relationship = own.relationships.values().any(|r| {
                    r.origin_site == owner
                        && related_to.contains(&r.object_id)
                        && seen.contains(&r.object_id)
                        && match r.target {
                            RelationshipTarget::Scorecard(s) => {
                                Oracle::own_scorecard_level(user, &own, s).is_some()
                            }
                            RelationshipTarget::Aggregation(o) => {
                                Oracle::own_object_level(user, &own, o).is_some()
                            }
                        }
                });
                seen.contains(&x) && (all || through_assigned || through_relationship)
            }
        };
        visible.then_some(AccessLevel::Browser)
    }

    /// A target's name, from its owner's content.
    fn name_of(&self, target: Target) -> Name {
        let (_, (site, _)) = self
            .targets()
            .into_iter()
            .find(|(t, _)| *t == target)
            .expect("a known target");
        let content = self.content(site);
        match target {
            Target::Scorecard(id) => content.scorecards[&id].clone(),
            Target::Object(id) => content.objects[&id].name.clone(),
        }
    }

    /// Q-2 by brute force: everything `user` sees, ordered by (owner site id,
    /// target id).
    fn lookup(&self, user: UserId) -> Vec<Visible> {
        let mut items: Vec<Visible> = self
            .targets()
            .into_iter()
            .filter_map(|(target, (site, kind))| {
                self.level(user, target).map(|level| Visible {
                    target,
                    kind,
                    name: self.name_of(target),
                    site,
                    origin_code: self.sites[&site].code.clone(),
                    origin_name: self.sites[&site].name.clone(),
                    level,
                })
            })
            .collect();
        // "(owner site id, target id)": the target's own id, whether it is a
        // scorecard or an object.
        items.sort_by_key(|v| (v.site, target_id(v.target)));
        items
    }

    /// Q-3 by brute force: every user with a level on `target`, ordered by (site, user).
    fn viewers(&self, target: Target) -> Vec<Viewer> {
        let mut viewers: Vec<Viewer> = self
            .users()
            .into_iter()
            .filter_map(|(user, (site, state))| {
                self.level(user, target).map(|level| Viewer {
                    site,
                    user,
                    level,
                    username: state.username.clone(),
                    name: state.name.clone(),
                    site_code: self.sites[&site].code.clone(),
                })
            })
            .collect();
        viewers.sort_by_key(|v| (v.site, v.user));
        viewers
    }
}

// ---------------------------------------------------------------------------
// The world: three sites, their users, scorecards and objects
// ---------------------------------------------------------------------------

const SITES: usize = 3;

/// Per site, in this order: the flags each user has on top of its role.
const USERS: [(&str, Role, &[PermissionFlag]); 5] = [
    ("admin", Role::Administration, &[]),
    ("allsc", Role::Presenter, &[PermissionFlag::AllScorecards]),
    (
        "author",
        Role::Presenter,
        &[PermissionFlag::AddEditScorecardObjects],
    ),
    ("plain", Role::Presenter, &[]),
    ("ia", Role::Presenter, &[PermissionFlag::InstanceAdmin]),
];

/// Per site, the objects: kind and container (an index into this list). The
/// first [`OBJECTS_AT_START`] exist from the start; the others are created by
/// steps (so objects appear inside containers that are already shared).
const OBJECTS: [(ObjectKind, Option<usize>); 7] = [
    (ObjectKind::Result, None),
    (ObjectKind::Indicator, Some(0)),
    (ObjectKind::Program, None),
    (ObjectKind::PerformanceMeasure, Some(2)),
    (ObjectKind::Indicator, None),
    (ObjectKind::Result, Some(0)),
    (ObjectKind::PerformanceMeasure, Some(5)),
];
const OBJECTS_AT_START: usize = 5;
/// Per site: scorecards 0 and 1 exist from the start, 2 is created by a step.
const SCORECARDS: usize = 3;
const SCORECARDS_AT_START: usize = 2;

/// The flags steps switch on and off.
const FLAGS: [PermissionFlag; 4] = [
    PermissionFlag::AllScorecards,
    PermissionFlag::InstanceAdmin,
    PermissionFlag::AddEditScorecardObjects,
    PermissionFlag::ManageUsers,
];
const ROLES: [Role; 4] = [
    Role::Administration,
    Role::ScorecardBuilder,
    Role::DataEntry,
    Role::Presenter,
];

struct World {
    service: Service,
    worker: ConsequenceWorker,
    sites: Vec<SiteId>,
    codes: Vec<SiteCode>,
    users: Vec<Vec<UserId>>,
    scorecards: Vec<Vec<ScorecardId>>,
    objects: Vec<Vec<ObjectId>>,
    /// Ids to names, for readable failures.
    names: BTreeMap<Uuid, String>,
}

impl World {
    async fn new(db: &TestDb) -> World {
        let service = Service::new(db.store());
        let worker = ConsequenceWorker::new(service.clone());
        let mut world = World {
            service,
            worker,
            sites: Vec::new(),
            codes: Vec::new(),
            users: Vec::new(),
            scorecards: Vec::new(),
            objects: Vec::new(),
            names: BTreeMap::new(),
        };
        for i in 0..SITES {
            world.add_site(i).await;
        }
        world
    }

    async fn add_site(&mut self, i: usize) {
        let site = SiteId::new();
        let code = SiteCode::parse(&format!("SITE{i}")).unwrap();
        self.service
            .execute(
                &operator(),
                RegisterSite {
                    site_id: site,
                    code: code.clone(),
                    name: Name::parse(&format!("Site {i}")).unwrap(),
                    seat_limit: SeatLimit::new(10).unwrap(),
                    parent: None,
                },
            )
            .await
            .unwrap();
        self.names.insert(site.0, format!("S{i}"));
        let mut users = Vec::new();
        for (n, (label, role, flags)) in USERS.iter().enumerate() {
            let user_id = UserId::new();
            self.service
                .execute(
                    &operator(),
                    AddUser {
                        site_id: site,
                        user_id,
                        username: Username::parse(&format!("{label}@site{i}.org")).unwrap(),
                        name: Name::parse(label).unwrap(),
                        role: *role,
                        email: None,
                    },
                )
                .await
                .unwrap();
            if !flags.is_empty() {
                self.service
                    .execute(
                        &operator(),
                        SetPermissionFlags {
                            site_id: site,
                            user_id,
                            enable: flags.iter().copied().collect(),
                            disable: BTreeSet::new(),
                        },
                    )
                    .await
                    .unwrap();
            }
            self.names.insert(user_id.0, format!("S{i}.u{n}({label})"));
            users.push(user_id);
        }
        let scorecards: Vec<ScorecardId> = (0..SCORECARDS).map(|_| ScorecardId::new()).collect();
        let objects: Vec<ObjectId> = (0..OBJECTS.len()).map(|_| ObjectId::new()).collect();
        for (n, s) in scorecards.iter().enumerate() {
            self.names.insert(s.0, format!("S{i}.sc{n}"));
        }
        for (n, (kind, container)) in OBJECTS.iter().enumerate() {
            let inside = container.map_or(String::new(), |c| format!(" in o{c}"));
            self.names
                .insert(objects[n].0, format!("S{i}.o{n}({kind:?}{inside})"));
        }
        self.sites.push(site);
        self.codes.push(code);
        self.users.push(users);
        self.scorecards.push(scorecards);
        self.objects.push(objects);
        let admin = self.users[i][0];
        for n in 0..SCORECARDS_AT_START {
            self.service
                .execute(&by(site, admin), self.create_scorecard(i, n))
                .await
                .unwrap();
        }
        for n in 0..OBJECTS_AT_START {
            self.service
                .execute(&by(site, admin), self.create_object(i, n))
                .await
                .unwrap();
        }
        // A Result (with its Indicator) on scorecard 0, the Program (with its
        // Performance Measure) on scorecard 1; the loose Indicator on none.
        for (object, scorecard) in [(0, 0), (2, 1)] {
            self.service
                .execute(
                    &by(site, admin),
                    PlaceObjectOnScorecard {
                        site_id: site,
                        object_id: self.objects[i][object],
                        scorecard_id: self.scorecards[i][scorecard],
                    },
                )
                .await
                .unwrap();
        }
    }

    fn create_scorecard(&self, site: usize, n: usize) -> CreateScorecard {
        CreateScorecard {
            site_id: self.sites[site],
            scorecard_id: self.scorecards[site][n],
            name: Name::parse(&format!("Scorecard {n}")).unwrap(),
        }
    }

    fn create_object(&self, site: usize, n: usize) -> CreateObject {
        let (kind, container) = OBJECTS[n];
        CreateObject {
            site_id: self.sites[site],
            object_id: self.objects[site][n],
            kind,
            name: Name::parse(&format!("Object {n}")).unwrap(),
            container: container.map(|c| self.objects[site][c]),
        }
    }

    fn name(&self, id: Uuid) -> String {
        self.names
            .get(&id)
            .cloned()
            .unwrap_or_else(|| format!("?{}", &id.simple().to_string()[..8]))
    }

    fn target_name(&self, target: Target) -> String {
        match target {
            Target::Scorecard(s) => self.name(s.0),
            Target::Object(o) => self.name(o.0),
        }
    }
}

// ---------------------------------------------------------------------------
// Steps
// ---------------------------------------------------------------------------

#[derive(Debug, Clone)]
enum Op {
    Request {
        from: usize,
        to: usize,
        actor: usize,
        both: bool,
    },
    Respond {
        site: usize,
        partner: usize,
        actor: usize,
        /// 0 approve, 1 deny, 2 cancel.
        how: u8,
    },
    Revoke {
        site: usize,
        from: usize,
        to: usize,
        actor: usize,
    },
    Share {
        from: usize,
        to: usize,
        actor: usize,
        scorecard: usize,
        unshare: bool,
    },
    SetShared {
        from: usize,
        to: usize,
        actor: usize,
        /// Bit n: scorecard n is shared.
        mask: u8,
    },
    CreateScorecard {
        site: usize,
        actor: usize,
    },
    CreateObject {
        site: usize,
        actor: usize,
        object: usize,
    },
    Move {
        site: usize,
        actor: usize,
        object: usize,
        scorecard: usize,
        remove: bool,
    },
    Link {
        site: usize,
        origin: usize,
        actor: usize,
        object: usize,
        scorecard: usize,
    },
    Aggregate {
        site: usize,
        origin: usize,
        actor: usize,
        object: usize,
        into: usize,
    },
    Grant {
        site: usize,
        actor: usize,
        user: usize,
        owner: usize,
        scorecard: usize,
        level: usize,
    },
    RevokeAccess {
        site: usize,
        actor: usize,
        user: usize,
        owner: usize,
        scorecard: usize,
    },
    Flag {
        site: usize,
        actor: usize,
        user: usize,
        flag: usize,
        on: bool,
    },
    Role {
        site: usize,
        actor: usize,
        user: usize,
        role: usize,
    },
    Deactivate {
        site: usize,
        actor: usize,
        user: usize,
    },
    Reactivate {
        site: usize,
        actor: usize,
        user: usize,
    },
    /// The consequence worker catches up with the log.
    Worker,
    // Steps that pick among what exists now (by the world's order, so that
    // a case replays the same), to reach the states refusals rarely reach:
    /// Removes the `pick`-th placement of the site's content.
    Unplace {
        site: usize,
        actor: usize,
        pick: usize,
    },
    /// Unshares the `pick`-th scorecard the site shares over an active link.
    UnshareAny {
        site: usize,
        actor: usize,
        pick: usize,
    },
    /// Revokes the `pick`-th active link from or to the site.
    RevokeAny {
        site: usize,
        actor: usize,
        pick: usize,
    },
    /// Assigns the `pick`-th partner scorecard shared with the site.
    GrantShared {
        site: usize,
        actor: usize,
        user: usize,
        pick: usize,
        level: usize,
    },
    /// Revokes the `pick`-th scorecard assigned to the user.
    Ungrant {
        site: usize,
        actor: usize,
        user: usize,
        pick: usize,
    },
    /// Relates the `pick`-th partner object the site sees: onto one of its
    /// scorecards, or (with `into`) into one of its objects.
    Relate {
        site: usize,
        actor: usize,
        pick: usize,
        scorecard: usize,
        into: Option<usize>,
    },
    /// Undoes the `pick`-th relationship of the site (resolved to
    /// [`Op::Unlink`]).
    Unrelate {
        site: usize,
        actor: usize,
        pick: usize,
    },
    /// `UnlinkSharedObject`, or `StopUsingSharedMeasure` for an aggregation.
    Unlink {
        site: usize,
        actor: usize,
        relationship: RelationshipId,
        aggregation: bool,
    },
    /// Renames a scorecard (`scorecard`) or an object (`object`) of the site.
    Rename {
        site: usize,
        actor: usize,
        scorecard: Option<usize>,
        object: usize,
    },
    /// Archives a scorecard (`scorecard`) or an object (`object`) of the site.
    Archive {
        site: usize,
        actor: usize,
        scorecard: Option<usize>,
        object: usize,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let s = || 0..SITES;
    // Mostly the site's admin, sometimes a user who may lack permissions or
    // be deactivated.
    let a = || prop_oneof![3 => Just(0usize), 1 => 1..USERS.len()];
    let u = || 0..USERS.len();
    let sc = || 0..SCORECARDS;
    let ob = || 0..OBJECTS.len();
    prop_oneof![
        3 => (s(), s(), a(), any::<bool>())
            .prop_map(|(from, to, actor, both)| Op::Request { from, to, actor, both }),
        3 => (s(), s(), a(), 0u8..3)
            .prop_map(|(site, partner, actor, how)| Op::Respond { site, partner, actor, how }),
        1 => (s(), s(), s(), a())
            .prop_map(|(site, from, to, actor)| Op::Revoke { site, from, to, actor }),
        4 => (s(), s(), a(), sc(), any::<bool>()).prop_map(|(from, to, actor, scorecard, unshare)| {
            Op::Share { from, to, actor, scorecard, unshare }
        }),
        1 => (s(), s(), a(), 0u8..8)
            .prop_map(|(from, to, actor, mask)| Op::SetShared { from, to, actor, mask }),
        1 => (s(), a()).prop_map(|(site, actor)| Op::CreateScorecard { site, actor }),
        1 => (s(), a(), OBJECTS_AT_START..OBJECTS.len())
            .prop_map(|(site, actor, object)| Op::CreateObject { site, actor, object }),
        4 => (s(), a(), ob(), sc(), any::<bool>()).prop_map(
            |(site, actor, object, scorecard, remove)| Op::Move { site, actor, object, scorecard, remove }
        ),
        3 => (s(), s(), a(), ob(), sc()).prop_map(|(site, origin, actor, object, scorecard)| {
            Op::Link { site, origin, actor, object, scorecard }
        }),
        2 => (s(), s(), a(), ob(), ob()).prop_map(|(site, origin, actor, object, into)| {
            Op::Aggregate { site, origin, actor, object, into }
        }),
        4 => (s(), a(), u(), s(), sc(), 0usize..4).prop_map(
            |(site, actor, user, owner, scorecard, level)| Op::Grant { site, actor, user, owner, scorecard, level }
        ),
        2 => (s(), a(), u(), s(), sc()).prop_map(|(site, actor, user, owner, scorecard)| {
            Op::RevokeAccess { site, actor, user, owner, scorecard }
        }),
        2 => (s(), a(), u(), 0..FLAGS.len(), any::<bool>())
            .prop_map(|(site, actor, user, flag, on)| Op::Flag { site, actor, user, flag, on }),
        1 => (s(), a(), u(), 0..ROLES.len())
            .prop_map(|(site, actor, user, role)| Op::Role { site, actor, user, role }),
        1 => (s(), a(), u()).prop_map(|(site, actor, user)| Op::Deactivate { site, actor, user }),
        1 => (s(), a(), u()).prop_map(|(site, actor, user)| Op::Reactivate { site, actor, user }),
        2 => Just(Op::Worker),
        4 => (s(), a(), any::<usize>()).prop_map(|(site, actor, pick)| Op::Unplace { site, actor, pick }),
        2 => (s(), a(), any::<usize>())
            .prop_map(|(site, actor, pick)| Op::UnshareAny { site, actor, pick }),
        1 => (s(), a(), any::<usize>())
            .prop_map(|(site, actor, pick)| Op::RevokeAny { site, actor, pick }),
        3 => (s(), a(), u(), any::<usize>(), prop_oneof![3 => Just(0usize), 1 => 1usize..4]).prop_map(
            |(site, actor, user, pick, level)| Op::GrantShared { site, actor, user, pick, level }
        ),
        2 => (s(), a(), u(), any::<usize>())
            .prop_map(|(site, actor, user, pick)| Op::Ungrant { site, actor, user, pick }),
        4 => (s(), a(), any::<usize>(), sc(), prop::option::of(ob())).prop_map(
            |(site, actor, pick, scorecard, into)| Op::Relate { site, actor, pick, scorecard, into }
        ),
        2 => (s(), a(), any::<usize>())
            .prop_map(|(site, actor, pick)| Op::Unrelate { site, actor, pick }),
        1 => (s(), a(), prop::option::of(sc()), ob())
            .prop_map(|(site, actor, scorecard, object)| Op::Rename { site, actor, scorecard, object }),
        1 => (s(), a(), prop::option::of(sc()), ob())
            .prop_map(|(site, actor, scorecard, object)| Op::Archive { site, actor, scorecard, object }),
    ]
}

/// Links, shares, relationships and grants to start from, so that random
/// steps have something to take away.
fn prologue() -> Vec<Op> {
    use Op::*;
    vec![
        // S0 ⇄ S1, both directions active; S0 shares scorecard 0 with S1.
        Request {
            from: 0,
            to: 1,
            actor: 0,
            both: true,
        },
        Respond {
            site: 1,
            partner: 0,
            actor: 0,
            how: 0,
        },
        Share {
            from: 0,
            to: 1,
            actor: 0,
            scorecard: 0,
            unshare: false,
        },
        // S0's Indicator also sits on scorecard 0 directly, besides inside
        // the Result there (two ways to show on one scorecard).
        Move {
            site: 0,
            actor: 0,
            object: 1,
            scorecard: 0,
            remove: false,
        },
        // S1's plain user is assigned S0's shared scorecard; S1 places S0's
        // Result (and so the Indicator inside) on its scorecard 1, which is
        // assigned to S1's author.
        Grant {
            site: 1,
            actor: 0,
            user: 3,
            owner: 0,
            scorecard: 0,
            level: 0,
        },
        Link {
            site: 1,
            origin: 0,
            actor: 0,
            object: 0,
            scorecard: 1,
        },
        Grant {
            site: 1,
            actor: 0,
            user: 2,
            owner: 1,
            scorecard: 1,
            level: 1,
        },
        // S2 offers S0 its scorecard 1 (the Program with its Measure); S0
        // aggregates the Measure into its loose Indicator.
        Request {
            from: 2,
            to: 0,
            actor: 0,
            both: false,
        },
        Respond {
            site: 0,
            partner: 2,
            actor: 0,
            how: 0,
        },
        Share {
            from: 2,
            to: 0,
            actor: 0,
            scorecard: 1,
            unshare: false,
        },
        Aggregate {
            site: 0,
            origin: 2,
            actor: 0,
            object: 3,
            into: 4,
        },
        Grant {
            site: 0,
            actor: 0,
            user: 3,
            owner: 0,
            scorecard: 1,
            level: 2,
        },
        // S1 asks S2 for both directions; it stays pending.
        Request {
            from: 1,
            to: 2,
            actor: 0,
            both: true,
        },
    ]
}

const LEVELS: [AccessLevel; 4] = AccessLevel::ALL;

impl World {
    /// Issues one step through the command service. Domain refusals are
    /// expected (random steps); anything else is a failure.
    async fn apply(&mut self, op: &Op, now: &Oracle) -> Result<bool, TestCaseError> {
        let s = |i: usize| self.sites[i];
        let Some(op) = self.resolve(op, now) else {
            // Nothing to pick from: the step is skipped.
            return Ok(false);
        };
        let op = &op;
        let user = |site: usize, n: usize| self.users[site][n];
        let issued = |site: usize, actor: usize| by(s(site), user(site, actor));
        let result = match op.clone() {
            Op::Unplace { .. }
            | Op::UnshareAny { .. }
            | Op::RevokeAny { .. }
            | Op::GrantShared { .. }
            | Op::Ungrant { .. }
            | Op::Relate { .. }
            | Op::Unrelate { .. } => unreachable!("resolved above"),
            Op::Unlink {
                site,
                actor,
                relationship,
                aggregation: false,
            } => {
                let command = UnlinkSharedObject {
                    site_id: s(site),
                    relationship_id: relationship,
                };
                self.service.execute(&issued(site, actor), command).await
            }
            Op::Unlink {
                site,
                actor,
                relationship,
                aggregation: true,
            } => {
                let command = StopUsingSharedMeasure {
                    site_id: s(site),
                    relationship_id: relationship,
                };
                self.service.execute(&issued(site, actor), command).await
            }
            Op::Rename {
                site,
                actor,
                scorecard: Some(scorecard),
                ..
            } => {
                let command = RenameScorecard {
                    site_id: s(site),
                    scorecard_id: self.scorecards[site][scorecard],
                    name: Name::parse(&format!("Renamed scorecard {scorecard}")).unwrap(),
                };
                self.service.execute(&issued(site, actor), command).await
            }
            Op::Rename {
                site,
                actor,
                scorecard: None,
                object,
            } => {
                let command = RenameObject {
                    site_id: s(site),
                    object_id: self.objects[site][object],
                    name: Name::parse(&format!("Renamed object {object}")).unwrap(),
                };
                self.service.execute(&issued(site, actor), command).await
            }
            Op::Archive {
                site,
                actor,
                scorecard: Some(scorecard),
                ..
            } => {
                let command = ArchiveScorecard {
                    site_id: s(site),
                    scorecard_id: self.scorecards[site][scorecard],
                };
                self.service.execute(&issued(site, actor), command).await
            }
            Op::Archive {
                site,
                actor,
                scorecard: None,
                object,
            } => {
                let command = ArchiveObject {
                    site_id: s(site),
                    object_id: self.objects[site][object],
                };
                self.service.execute(&issued(site, actor), command).await
            }
            Op::Worker => {
                let head = self.service.store().head_position().await.unwrap();
                self.worker
                    .run(Some(head))
                    .await
                    .map_err(|e| TestCaseError::fail(format!("the worker failed: {e}")))?;
                return Ok(true);
            }
            Op::Request {
                from,
                to,
                actor,
                both,
            } => {
                let directions = if both {
                    Directions::Both
                } else {
                    Directions::Offer
                };
                self.service
                    .execute(
                        &issued(from, actor),
                        RequestConnection {
                            site_id: s(from),
                            partner_code: self.codes[to].clone(),
                            directions,
                        },
                    )
                    .await
            }
            Op::Respond {
                site,
                partner,
                actor,
                how,
            } => {
                let (site_id, partner) = (s(site), s(partner));
                let by = issued(site, actor);
                match how {
                    0 => {
                        self.service
                            .execute(&by, ApproveConnection { site_id, partner })
                            .await
                    }
                    1 => {
                        self.service
                            .execute(&by, DenyConnection { site_id, partner })
                            .await
                    }
                    _ => {
                        self.service
                            .execute(&by, CancelConnectionRequest { site_id, partner })
                            .await
                    }
                }
            }
            Op::Revoke {
                site,
                from,
                to,
                actor,
            } => {
                self.service
                    .execute(
                        &issued(site, actor),
                        RevokeSharing {
                            site_id: s(site),
                            from: s(from),
                            to: s(to),
                        },
                    )
                    .await
            }
            Op::Share {
                from,
                to,
                actor,
                scorecard,
                unshare,
            } => {
                let id = self.scorecards[from][scorecard];
                let (site_id, partner) = (s(from), s(to));
                if unshare {
                    self.service
                        .execute(
                            &issued(from, actor),
                            UnshareScorecard {
                                site_id,
                                partner,
                                scorecard_id: id,
                            },
                        )
                        .await
                } else {
                    self.service
                        .execute(
                            &issued(from, actor),
                            ShareScorecard {
                                site_id,
                                partner,
                                scorecard_id: id,
                            },
                        )
                        .await
                }
            }
            Op::SetShared {
                from,
                to,
                actor,
                mask,
            } => {
                let chosen = (0..SCORECARDS)
                    .filter(|n| mask & (1 << n) != 0)
                    .map(|n| self.scorecards[from][n])
                    .collect();
                self.service
                    .execute(
                        &issued(from, actor),
                        SetSharedScorecards {
                            site_id: s(from),
                            partner: s(to),
                            scorecards: chosen,
                        },
                    )
                    .await
            }
            Op::CreateScorecard { site, actor } => {
                let command = self.create_scorecard(site, SCORECARDS_AT_START);
                self.service.execute(&issued(site, actor), command).await
            }
            Op::CreateObject {
                site,
                actor,
                object,
            } => {
                let command = self.create_object(site, object);
                self.service.execute(&issued(site, actor), command).await
            }
            Op::Move {
                site,
                actor,
                object,
                scorecard,
                remove,
            } => {
                let (object_id, scorecard_id) =
                    (self.objects[site][object], self.scorecards[site][scorecard]);
                let site_id = s(site);
                if remove {
                    self.service
                        .execute(
                            &issued(site, actor),
                            RemoveObjectFromScorecard {
                                site_id,
                                object_id,
                                scorecard_id,
                            },
                        )
                        .await
                } else {
                    self.service
                        .execute(
                            &issued(site, actor),
                            PlaceObjectOnScorecard {
                                site_id,
                                object_id,
                                scorecard_id,
                            },
                        )
                        .await
                }
            }
            Op::Link {
                site,
                origin,
                actor,
                object,
                scorecard,
            } => {
                let command = LinkSharedObject {
                    site_id: s(site),
                    relationship_id: RelationshipId::new(),
                    scorecard_id: self.scorecards[site][scorecard],
                    origin_site: s(origin),
                    object_id: self.objects[origin][object],
                };
                self.service.execute(&issued(site, actor), command).await
            }
            Op::Aggregate {
                site,
                origin,
                actor,
                object,
                into,
            } => {
                let command = UseSharedMeasureInAggregation {
                    site_id: s(site),
                    relationship_id: RelationshipId::new(),
                    into_object: self.objects[site][into],
                    origin_site: s(origin),
                    object_id: self.objects[origin][object],
                };
                self.service.execute(&issued(site, actor), command).await
            }
            Op::Grant {
                site,
                actor,
                user: target,
                owner,
                scorecard,
                level,
            } => {
                self.service
                    .execute(
                        &issued(site, actor),
                        GrantScorecardAccess {
                            site_id: s(site),
                            user_id: user(site, target),
                            scorecard_id: self.scorecards[owner][scorecard],
                            level: LEVELS[level],
                            owner_site: Some(s(owner)),
                        },
                    )
                    .await
            }
            Op::RevokeAccess {
                site,
                actor,
                user: target,
                owner,
                scorecard,
            } => {
                self.service
                    .execute(
                        &issued(site, actor),
                        RevokeScorecardAccess {
                            site_id: s(site),
                            user_id: user(site, target),
                            scorecard_id: self.scorecards[owner][scorecard],
                        },
                    )
                    .await
            }
            Op::Flag {
                site,
                actor,
                user: target,
                flag,
                on,
            } => {
                let flags = BTreeSet::from([FLAGS[flag]]);
                let (enable, disable) = if on {
                    (flags, BTreeSet::new())
                } else {
                    (BTreeSet::new(), flags)
                };
                self.service
                    .execute(
                        &issued(site, actor),
                        SetPermissionFlags {
                            site_id: s(site),
                            user_id: user(site, target),
                            enable,
                            disable,
                        },
                    )
                    .await
            }
            Op::Role {
                site,
                actor,
                user: target,
                role,
            } => {
                self.service
                    .execute(
                        &issued(site, actor),
                        ChangeUserRole {
                            site_id: s(site),
                            user_id: user(site, target),
                            role: ROLES[role],
                        },
                    )
                    .await
            }
            Op::Deactivate {
                site,
                actor,
                user: target,
            } => {
                self.service
                    .execute(
                        &issued(site, actor),
                        DeactivateUser {
                            site_id: s(site),
                            user_id: user(site, target),
                        },
                    )
                    .await
            }
            Op::Reactivate {
                site,
                actor,
                user: target,
            } => {
                self.service
                    .execute(
                        &issued(site, actor),
                        ReactivateUser {
                            site_id: s(site),
                            user_id: user(site, target),
                        },
                    )
                    .await
            }
        };
        match result {
            Ok(_) => Ok(true),
            Err(CommandError::Domain(_)) => Ok(false),
            Err(other) => Err(TestCaseError::fail(format!("{op:?}: {other}"))),
        }
    }
}

impl World {
    /// Turns a step that picks among what exists now into a plain step
    /// (`None` when there is nothing to pick); other steps are as they are.
    fn resolve(&self, op: &Op, now: &Oracle) -> Option<Op> {
        let pick = |n: usize, len: usize| (len > 0).then(|| n % len);
        let placed = |site: usize, object: usize, scorecard: usize| {
            now.contents.get(&self.sites[site]).is_some_and(|c| {
                c.placements
                    .get(&self.scorecards[site][scorecard])
                    .is_some_and(|p| p.contains(&self.objects[site][object]))
            })
        };
        let resolved = match *op {
            Op::Unplace {
                site,
                actor,
                pick: n,
            } => {
                let candidates: Vec<(usize, usize)> = (0..SCORECARDS)
                    .flat_map(|sc| (0..OBJECTS.len()).map(move |o| (o, sc)))
                    .filter(|(o, sc)| placed(site, *o, *sc))
                    .collect();
                let (object, scorecard) = candidates[pick(n, candidates.len())?];
                Op::Move {
                    site,
                    actor,
                    object,
                    scorecard,
                    remove: true,
                }
            }
            Op::UnshareAny {
                site,
                actor,
                pick: n,
            } => {
                let candidates: Vec<(usize, usize)> = (0..SITES)
                    .flat_map(|to| (0..SCORECARDS).map(move |sc| (to, sc)))
                    .filter(|(to, sc)| {
                        now.shared(self.sites[site], self.sites[*to])
                            .contains(&self.scorecards[site][*sc])
                    })
                    .collect();
                let (to, scorecard) = candidates[pick(n, candidates.len())?];
                Op::Share {
                    from: site,
                    to,
                    actor,
                    scorecard,
                    unshare: true,
                }
            }
            Op::RevokeAny {
                site,
                actor,
                pick: n,
            } => {
                let candidates: Vec<(usize, usize)> = (0..SITES)
                    .flat_map(|other| [(site, other), (other, site)])
                    .filter(|(from, to)| {
                        from != to && now.link_active(self.sites[*from], self.sites[*to])
                    })
                    .collect();
                let (from, to) = candidates[pick(n, candidates.len())?];
                Op::Revoke {
                    site,
                    from,
                    to,
                    actor,
                }
            }
            Op::GrantShared {
                site,
                actor,
                user,
                pick: n,
                level,
            } => {
                let candidates: Vec<(usize, usize)> = (0..SITES)
                    .flat_map(|owner| (0..SCORECARDS).map(move |sc| (owner, sc)))
                    .filter(|(owner, sc)| {
                        *owner != site
                            && now
                                .shared(self.sites[*owner], self.sites[site])
                                .contains(&self.scorecards[*owner][*sc])
                    })
                    .collect();
                let (owner, scorecard) = candidates[pick(n, candidates.len())?];
                Op::Grant {
                    site,
                    actor,
                    user,
                    owner,
                    scorecard,
                    level,
                }
            }
            Op::Ungrant {
                site,
                actor,
                user,
                pick: n,
            } => {
                let held = now
                    .sites
                    .get(&self.sites[site])
                    .and_then(|s| s.users.get(&self.users[site][user]))
                    .map(|u| u.scorecard_access.clone())
                    .unwrap_or_default();
                let candidates: Vec<(usize, usize)> = (0..SITES)
                    .flat_map(|owner| (0..SCORECARDS).map(move |sc| (owner, sc)))
                    .filter(|(owner, sc)| held.contains_key(&self.scorecards[*owner][*sc]))
                    .collect();
                let (owner, scorecard) = candidates[pick(n, candidates.len())?];
                Op::RevokeAccess {
                    site,
                    actor,
                    user,
                    owner,
                    scorecard,
                }
            }
            Op::Relate {
                site,
                actor,
                pick: n,
                scorecard,
                into,
            } => {
                let candidates: Vec<(usize, usize)> = (0..SITES)
                    .filter(|origin| *origin != site)
                    .flat_map(|origin| {
                        let seen = now
                            .content(self.sites[origin])
                            .visible_through(&now.shared(self.sites[origin], self.sites[site]));
                        (0..OBJECTS.len())
                            .filter(move |o| seen.contains(&self.objects[origin][*o]))
                            .map(move |o| (origin, o))
                    })
                    .collect();
                let (origin, object) = candidates[pick(n, candidates.len())?];
                match into {
                    Some(into) => Op::Aggregate {
                        site,
                        origin,
                        actor,
                        object,
                        into,
                    },
                    None => Op::Link {
                        site,
                        origin,
                        actor,
                        object,
                        scorecard,
                    },
                }
            }
            Op::Unrelate {
                site,
                actor,
                pick: n,
            } => {
                let candidates: Vec<(RelationshipId, bool)> = now
                    .content(self.sites[site])
                    .relationships
                    .iter()
                    .map(|(id, r)| (*id, matches!(r.target, RelationshipTarget::Aggregation(_))))
                    .collect();
                let (relationship, aggregation) = candidates[pick(n, candidates.len())?];
                Op::Unlink {
                    site,
                    actor,
                    relationship,
                    aggregation,
                }
            }
            _ => op.clone(),
        };
        Some(resolved)
    }
}

// ---------------------------------------------------------------------------
// Comparing the index with the oracle
// ---------------------------------------------------------------------------

/// Applies every event after `applied` to the index; returns the new position.
async fn catch_up(
    index: &mut AccessIndex,
    store: &PgEventStore,
    mut applied: u64,
) -> Result<u64, TestCaseError> {
    loop {
        let page = store
            .read_all(Direction::Forwards, PositionFrom::At(applied + 1), 1_000)
            .await
            .expect("read the log");
        if page.is_empty() {
            return Ok(applied);
        }
        for event in &page {
            index.apply(event).map_err(|e| {
                TestCaseError::fail(format!(
                    "the index refused event {} ({}): {e}",
                    event.global_position, event.event_type
                ))
            })?;
            applied = event.global_position;
            prop_assert_eq!(index.position(), applied, "the index's position");
        }
    }
}

/// Every (user, target) with a level, by the oracle's Q-3.
fn oracle_q3(oracle: &Oracle) -> BTreeMap<(UserId, Target), AccessLevel> {
    oracle
        .targets()
        .into_keys()
        .flat_map(|target| {
            oracle
                .viewers(target)
                .into_iter()
                .map(move |v| ((v.user, target), v.level))
        })
        .collect()
}

/// A second index that applies the log event by event with
/// [`AccessIndex::apply_tracked`], and the oracle's Q-3 answers at its
/// position: the access changes it derives must equal the difference of
/// the oracle's Q-3 answers before and after each event (issue 17).
#[derive(Default)]
struct Tracked {
    index: AccessIndex,
    q3: BTreeMap<(UserId, Target), AccessLevel>,
    /// The owner of every target ever seen (archived ones included).
    owners: BTreeMap<Target, SiteId>,
}

impl Tracked {
    async fn catch_up(&mut self, store: &PgEventStore, world: &World) -> Result<(), TestCaseError> {
        let log = read_whole_log(store).await;
        for event in log.iter().skip(self.index.position() as usize) {
            let changes = self.index.apply_tracked(event).map_err(|e| {
                TestCaseError::fail(format!("the tracked index refused an event: {e}"))
            })?;
            let position = event.global_position as usize;
            let oracle = Oracle::fold(&log[..position]);
            let q3 = oracle_q3(&oracle);
            let keys: BTreeSet<&(UserId, Target)> = self.q3.keys().chain(q3.keys()).collect();
            let expected: BTreeSet<(UserId, Target, Option<AccessLevel>, Option<AccessLevel>)> =
                keys.into_iter()
                    .filter(|key| self.q3.get(key) != q3.get(key))
                    .map(|key| {
                        (
                            key.0,
                            key.1,
                            self.q3.get(key).copied(),
                            q3.get(key).copied(),
                        )
                    })
                    .collect();
            let got: BTreeSet<(UserId, Target, Option<AccessLevel>, Option<AccessLevel>)> = changes
                .iter()
                .map(|c| (c.user, c.target, c.before, c.after))
                .collect();
            let describe =
                |set: &BTreeSet<(UserId, Target, Option<AccessLevel>, Option<AccessLevel>)>| {
                    set.iter()
                        .map(|(user, target, before, after)| {
                            format!(
                                "{} on {}: {} -> {}",
                                world.name(user.0),
                                world.target_name(*target),
                                level_name(*before),
                                level_name(*after)
                            )
                        })
                        .collect::<Vec<_>>()
                };
            prop_assert_eq!(
                describe(&got),
                describe(&expected),
                "the access changes of event {} ({}) differ from the oracle's Q-3 before and after it",
                event.global_position,
                event.event_type
            );
            prop_assert_eq!(changes.len(), got.len(), "an access change named twice");
            let users = oracle.users();
            self.owners.extend(
                oracle
                    .targets()
                    .into_iter()
                    .map(|(target, (site, _))| (target, site)),
            );
            for change in &changes {
                prop_assert_eq!(Some(change.user_site), users.get(&change.user).map(|u| u.0));
                prop_assert_eq!(
                    Some(change.target_site),
                    self.owners.get(&change.target).copied()
                );
            }
            self.q3 = q3;
        }
        Ok(())
    }
}

/// Pages through a lookup with `limit`, checking each page's shape.
fn page_through(
    index: &AccessIndex,
    user: UserId,
    site: Option<SiteId>,
    kind: Option<TargetKind>,
    limit: usize,
) -> Result<Vec<Visible>, String> {
    let mut items = Vec::new();
    let mut after = None;
    for _ in 0..1_000 {
        let query = LookupQuery {
            site,
            kind,
            after: after.clone(),
            limit,
        };
        let page = index
            .lookup(user, &query)
            .map_err(|e| format!("lookup failed: {e}"))?;
        if page.items.len() > limit {
            return Err(format!(
                "a page of limit {limit} has {} items",
                page.items.len()
            ));
        }
        if page.next.is_some() && page.items.is_empty() {
            return Err("an empty page says more follow".into());
        }
        items.extend(page.items);
        match page.next {
            None => return Ok(items),
            Some(cursor) => after = Some(cursor),
        }
    }
    Err("the pages never end".into())
}

fn level_name(level: Option<AccessLevel>) -> String {
    level.map_or("-".into(), |l| format!("{l:?}"))
}

/// Every disagreement between the index and the oracle, in words.
fn compare(world: &World, index: &AccessIndex, oracle: &Oracle) -> Vec<String> {
    let mut diffs = Vec::new();
    let users = oracle.users();
    let targets = oracle.targets();
    // Q-1 and Q-4's level, for every user, target and action.
    for user in users.keys() {
        for target in targets.keys() {
            let want = oracle.level(*user, *target);
            let who = format!("{} on {}", world.name(user.0), world.target_name(*target));
            match index.level(*user, *target) {
                Ok(got) if got == want => {}
                Ok(got) => diffs.push(format!(
                    "level {who}: index {}, oracle {}",
                    level_name(got),
                    level_name(want)
                )),
                Err(e) => diffs.push(format!("level {who}: index error {e}")),
            }
            for action in [Action::View, Action::Update, Action::Edit, Action::Admin] {
                let allowed = want.is_some_and(|l| l >= action.required_level());
                match index.check(*user, *target, action) {
                    Ok(got) if got == allowed => {}
                    Ok(got) => diffs.push(format!(
                        "check {action:?} {who}: index {got}, oracle {allowed}"
                    )),
                    Err(e) => diffs.push(format!("check {action:?} {who}: index error {e}")),
                }
            }
            match index.explain(*user, *target) {
                Ok(explanation) if explanation.level == want => {}
                Ok(explanation) => diffs.push(format!(
                    "explain {who}: index level {}, oracle {}",
                    level_name(explanation.level),
                    level_name(want)
                )),
                Err(e) => diffs.push(format!("explain {who}: index error {e}")),
            }
        }
    }
    // paged, unfiltered and filtered by site, kind and both.
    let kinds: Vec<TargetKind> = std::iter::once(TargetKind::Scorecard)
        .chain(
            [
                ObjectKind::Result,
                ObjectKind::Indicator,
                ObjectKind::Program,
                ObjectKind::PerformanceMeasure,
            ]
            .map(TargetKind::Object),
        )
        .collect();
    let mut filters: Vec<(Option<SiteId>, Option<TargetKind>, usize)> = vec![(None, None, 3)];
    for site in &world.sites {
        filters.push((Some(*site), None, 2));
        for kind in &kinds {
            filters.push((Some(*site), Some(*kind), 2));
        }
    }
    for kind in &kinds {
        filters.push((None, Some(*kind), 2));
    }
    for user in users.keys() {
        let all = oracle.lookup(*user);
        for (site, kind, limit) in &filters {
            let want: Vec<Visible> = all
                .iter()
                .filter(|v| site.is_none_or(|s| v.site == s))
                .filter(|v| kind.is_none_or(|k| v.kind == k))
                .cloned()
                .collect();
            let filter = format!(
                "lookup by {} (site {}, kind {kind:?}, limit {limit})",
                world.name(user.0),
                site.map_or("any".into(), |s| world.name(s.0)),
            );
            match page_through(index, *user, *site, *kind, *limit) {
                Err(e) => diffs.push(format!("{filter}: {e}")),
                Ok(got) if got == want => {}
                Ok(got) => {
                    let show = |items: &[Visible]| {
                        items
                            .iter()
                            .map(|v| {
                                format!(
                                    "{}:{:?}@{}",
                                    world.target_name(v.target),
                                    v.level,
                                    v.origin_code
                                )
                            })
                            .collect::<Vec<_>>()
                            .join(", ")
                    };
                    let got_set: BTreeSet<String> = got.iter().map(|v| format!("{v:?}")).collect();
                    let order_only = got.len() == want.len()
                        && want.iter().all(|v| got_set.contains(&format!("{v:?}")));
                    diffs.push(format!(
                        "{filter}{}:\n    index  [{}]\n    oracle [{}]",
                        if order_only { " (order only)" } else { "" },
                        show(&got),
                        show(&want)
                    ));
                }
            }
        }
    }
    // Q-3 for every target.
    for target in targets.keys() {
        let want = oracle.viewers(*target);
        match index.viewers(*target) {
            Ok(got) if got == want => {}
            Ok(got) => {
                let show = |viewers: &[Viewer]| {
                    viewers
                        .iter()
                        .map(|v| format!("{}:{:?}", world.name(v.user.0), v.level))
                        .collect::<Vec<_>>()
                        .join(", ")
                };
                diffs.push(format!(
                    "viewers of {}:\n    index  [{}]\n    oracle [{}]",
                    world.target_name(*target),
                    show(&got),
                    show(&want)
                ));
            }
            Err(e) => diffs.push(format!(
                "viewers of {}: index error {e}",
                world.target_name(*target)
            )),
        }
    }
    diffs
}

/// The oracle's state in names: links, shares, placements, relationships,
/// users' flags and grants.
fn describe(world: &World, oracle: &Oracle) -> String {
    let mut out = String::new();
    for ((lo, hi), state) in &oracle.connections {
        for link in [Link { from: *lo, to: *hi }, Link { from: *hi, to: *lo }] {
            let shared: Vec<String> = state.shared(link).iter().map(|s| world.name(s.0)).collect();
            let _ = writeln!(
                out,
                "  link {}→{}: {:?} shared [{}]",
                world.name(link.from.0),
                world.name(link.to.0),
                state.link_state(link),
                shared.join(", ")
            );
        }
    }
    for (site, content) in &oracle.contents {
        let _ = writeln!(out, "  content of {}:", world.name(site.0));
        let objects: Vec<String> = content.objects.keys().map(|o| world.name(o.0)).collect();
        let _ = writeln!(out, "    objects [{}]", objects.join(", "));
        for (scorecard, placed) in &content.placements {
            let placed: Vec<String> = placed.iter().map(|o| world.name(o.0)).collect();
            let _ = writeln!(
                out,
                "    {} shows placed [{}]",
                world.name(scorecard.0),
                placed.join(", ")
            );
        }
        for r in content.relationships.values() {
            let target = match r.target {
                RelationshipTarget::Scorecard(s) => world.name(s.0),
                RelationshipTarget::Aggregation(o) => format!("aggregation {}", world.name(o.0)),
            };
            let _ = writeln!(
                out,
                "    relationship {} → {}",
                world.name(r.object_id.0),
                target
            );
        }
    }
    for site in oracle.sites.values() {
        for user in site.users.values() {
            let flags: Vec<String> = FLAGS
                .iter()
                .filter(|f| user.has(**f))
                .map(|f| format!("{f:?}"))
                .collect();
            let grants: Vec<String> = user
                .scorecard_access
                .iter()
                .map(|(s, l)| format!("{}:{l:?}", world.name(s.0)))
                .collect();
            let _ = writeln!(
                out,
                "  {}{} {:?} flags [{}] grants [{}]",
                world.name(user.id.0),
                if user.active { "" } else { " INACTIVE" },
                user.role,
                flags.join(", "),
                grants.join(", ")
            );
        }
    }
    out
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    run_checked(ops, false).await
}

/// [`run`]; with `all_accepted`, a refused step fails the run too.
async fn run_checked(ops: Vec<Op>, all_accepted: bool) -> Result<(), TestCaseError> {
    let db = TestDb::new().await;
    let mut world = World::new(&db).await;
    let store = world.service.store().clone();
    let mut index = AccessIndex::new();
    let mut applied = 0;
    let mut tracked = Tracked::default();
    let mut now = Oracle::read(&store).await;
    let mut boundaries: Vec<u64> = Vec::new();
    let prologue = prologue();
    let steps = prologue.len();
    // A snapshot of the index halfway (issue 19): decoded and brought up to
    // the head from the log after it, it must answer as the index does.
    let halfway = (steps + ops.len()) / 2;
    let mut snapshot: Option<(Vec<u8>, u64)> = None;
    for (n, op) in prologue.iter().chain(&ops).enumerate() {
        let resolved = world
            .resolve(op, &now)
            .map_or("nothing to pick".to_string(), |op| format!("{op:?}"));
        let accepted = world.apply(op, &now).await?;
        if n < steps || all_accepted {
            prop_assert!(accepted, "step {} was refused: {:?}", n, op);
        }
        applied = catch_up(&mut index, &store, applied).await?;
        tracked.catch_up(&store, &world).await?;
        if boundaries.last() != Some(&applied) {
            boundaries.push(applied);
        }
        if n == halfway {
            let bytes = shareledger_projections::access::snapshot::encode(index.clone())
                .expect("the index encodes");
            snapshot = Some((bytes, applied));
        }
        let oracle = Oracle::read(&store).await;
        let diffs = compare(&world, &index, &oracle);
        now = oracle;
        if !diffs.is_empty() {
            let shown: Vec<&String> = diffs.iter().take(40).collect();
            return Err(TestCaseError::fail(format!(
                "after step {n} ({op:?} as {resolved}, {}), at position {applied}, the index \
                 disagrees with the oracle in {} answers:\n  {}\nthe world:\n{}",
                if accepted {
                    "accepted"
                } else {
                    "refused or skipped"
                },
                diffs.len(),
                shown
                    .iter()
                    .map(|d| d.as_str())
                    .collect::<Vec<_>>()
                    .join("\n  "),
                describe(&world, &now)
            )));
        }
    }
    if let Some((bytes, at)) = snapshot {
        let mut restored = shareledger_projections::access::snapshot::decode(&bytes)
            .expect("the snapshot decodes");
        prop_assert_eq!(restored.position(), at);
        catch_up(&mut restored, &store, at).await?;
        let diffs = compare(&world, &restored, &now);
        prop_assert!(
            diffs.is_empty(),
            "the index from the snapshot at {} brought to {} disagrees with the oracle:\n  {}",
            at,
            applied,
            diffs.join("\n  ")
        );
    }
    // As of past positions (issue 5's time travel): the history's answers
    // equal the oracle folded from the log's prefix.
    let log = read_whole_log(&store).await;
    // Both ways of looking back: the log in PostgreSQL, and the in-memory
    // archive (loaded from the whole log) that serves the same questions.
    let (archive, follower) = LiveArchive::start(store.clone(), 500)
        .await
        .expect("the archive loads");
    prop_assert_eq!(
        archive.position(),
        applied,
        "the archive loaded the whole log"
    );
    let histories = [
        ("the log", History::new(store.clone())),
        (
            "the archive",
            History::with_archive(store.clone(), archive.clone()),
        ),
    ];
    let mut past: Vec<u64> = Vec::new();
    if let Some(&first) = boundaries.get(steps.saturating_sub(1)) {
        past.push(first);
    }
    past.push(boundaries[boundaries.len() / 2]);
    past.push(boundaries[boundaries.len() / 2].saturating_sub(1));
    past.push(applied);
    past.sort_unstable();
    past.dedup();
    for position in past {
        let prefix: Vec<RecordedEvent> = log
            .iter()
            .filter(|e| e.global_position <= position)
            .cloned()
            .collect();
        let oracle = Oracle::fold(&prefix);
        for (source, history) in &histories {
            let diffs = compare_past(&world, history, &oracle, position).await;
            if !diffs.is_empty() {
                let shown: Vec<&String> = diffs.iter().take(40).collect();
                return Err(TestCaseError::fail(format!(
                    "as of position {position} (head {applied}), the history read from \
                     {source} disagrees with the oracle in {} answers:\n  {}",
                    diffs.len(),
                    shown
                        .iter()
                        .map(|d| d.as_str())
                        .collect::<Vec<_>>()
                        .join("\n  ")
                )));
            }
        }
        let history = &histories[1].1;
        if boundaries.contains(&position) && position > 0 {
            // A command's events share their recorded time: the time of a
            // step's last event stands for that step's end.
            let at = log[position as usize - 1].recorded_at;
            let got = history
                .position(Moment::Time(at))
                .await
                .expect("position at");
            prop_assert_eq!(got, position, "the position recorded at {}", at);
        }
    }
    archive.stop();
    let _ = follower.await;

    // Ids never seen are errors, not denials.
    let known_user = world.users[0][0];
    let stranger = UserId::new();
    let nothing = Target::Object(ObjectId::new());
    prop_assert_eq!(
        index.level(stranger, Target::Scorecard(world.scorecards[0][0])),
        Err(AccessError::UnknownUser(stranger))
    );
    prop_assert_eq!(
        index.level(known_user, nothing),
        Err(AccessError::UnknownTarget(nothing))
    );
    Ok(())
}

/// Compares the history as of `position` with the oracle of the log's prefix
/// up to it: through the per-site replays the history builds (every answer
/// about the site's users and who sees its content), and through the
/// history's own question API for.
async fn compare_past(
    world: &World,
    history: &History,
    oracle: &Oracle,
    position: u64,
) -> Vec<String> {
    let mut diffs = Vec::new();
    let users = oracle.users();
    let targets = oracle.targets();
    let at = Moment::Position(position);
    for site in oracle.sites.keys() {
        let past = match history.index_around(*site, position).await {
            Ok(past) => past,
            Err(e) => {
                diffs.push(format!("replay around {}: {e}", world.name(site.0)));
                continue;
            }
        };
        let index = &past.index;
        for (user, (user_site, _)) in &users {
            if user_site != site {
                continue;
            }
            for target in targets.keys() {
                let want = oracle.level(*user, *target);
                match index.level(*user, *target) {
                    Ok(got) if got == want => {}
                    got => diffs.push(format!(
                        "past level {} on {}: {got:?}, oracle {}",
                        world.name(user.0),
                        world.target_name(*target),
                        level_name(want)
                    )),
                }
            }
            match page_through(index, *user, None, None, 4) {
                Ok(got) if got == oracle.lookup(*user) => {}
                got => diffs.push(format!(
                    "past lookup by {}: {got:?}, oracle {:?}",
                    world.name(user.0),
                    oracle.lookup(*user)
                )),
            }
        }
        for (target, (owner, _)) in &targets {
            if owner != site {
                continue;
            }
            match index.viewers(*target) {
                Ok(got) if got == oracle.viewers(*target) => {}
                got => diffs.push(format!(
                    "past viewers of {}: {got:?}, oracle {:?}",
                    world.target_name(*target),
                    oracle.viewers(*target)
                )),
            }
        }
    }
    // The question API itself, on the first user and every target.
    if let Some((user, _)) = users.iter().next() {
        for target in targets.keys() {
            let want = oracle.level(*user, *target);
            match history.level(at, *user, *target).await {
                Ok((p, got)) if p == position && got == want => {}
                got => diffs.push(format!("history.level: {got:?}, oracle {want:?}")),
            }
            let allowed = want.is_some_and(|l| l >= Action::View.required_level());
            match history.check(at, *user, *target, Action::View).await {
                Ok((_, got)) if got == allowed => {}
                got => diffs.push(format!("history.check: {got:?}, oracle {allowed}")),
            }
            match history.explain(at, *user, *target).await {
                Ok((_, e)) if e.level == want => {}
                got => diffs.push(format!("history.explain: {got:?}, oracle {want:?}")),
            }
            match history.viewers(at, *target).await {
                Ok((_, got)) if got == oracle.viewers(*target) => {}
                got => diffs.push(format!("history.viewers: {got:?}")),
            }
        }
        let query = LookupQuery {
            limit: 10_000,
            ..LookupQuery::default()
        };
        match history.lookup(at, *user, &query).await {
            Ok((_, page)) if page.items == oracle.lookup(*user) && page.next.is_none() => {}
            got => diffs.push(format!("history.lookup: {got:?}")),
        }
    }
    // Users and targets created later are unknown as of this position.
    let stranger = UserId::new();
    if !matches!(
        history
            .level(at, stranger, Target::Object(ObjectId::new()))
            .await,
        Err(HistoryError::Access(AccessError::UnknownUser(_)))
    ) {
        diffs.push("an unknown user is not UnknownUser as of the past".into());
    }
    diffs
}

/// Sequences worth checking every time, beyond what random cases happen to
/// reach (each runs after the prologue).
#[test]
fn the_index_agrees_with_the_oracle_on_chosen_sequences() {
    use Op::*;
    let sequences: Vec<(&str, Vec<Op>)> = vec![
        (
            // S1's relationship is on S0's Result; the Indicator inside it
            // is also placed on the shared scorecard directly (prologue).
            // When the Result leaves the shared scorecard (no worker yet),
            // S1 no longer sees the relationship's object: the relationship
            // gives nothing, even though S1 still sees the Indicator.
            "a relationship on a container S1 no longer sees",
            vec![Move {
                site: 0,
                actor: 0,
                object: 0,
                scorecard: 0,
                remove: true,
            }],
        ),
        (
            // An object created inside a container that is already shared
            // becomes visible to the partner at once; so does its content;
            // and both go when the container leaves the shared scorecard.
            "objects created inside a shared container",
            vec![
                Move {
                    site: 0,
                    actor: 0,
                    object: 1,
                    scorecard: 0,
                    remove: true,
                },
                CreateObject {
                    site: 0,
                    actor: 0,
                    object: 5,
                },
                CreateObject {
                    site: 0,
                    actor: 0,
                    object: 6,
                },
                Move {
                    site: 0,
                    actor: 0,
                    object: 0,
                    scorecard: 0,
                    remove: true,
                },
                Worker,
            ],
        ),
        (
            // Revoke, then a new request and approval: nothing shared again.
            "revoke and re-request",
            vec![
                Revoke {
                    site: 1,
                    from: 0,
                    to: 1,
                    actor: 0,
                },
                Request {
                    from: 0,
                    to: 1,
                    actor: 0,
                    both: false,
                },
                Respond {
                    site: 1,
                    partner: 0,
                    actor: 0,
                    how: 0,
                },
                Share {
                    from: 0,
                    to: 1,
                    actor: 0,
                    scorecard: 1,
                    unshare: false,
                },
            ],
        ),
        (
            // Deactivation and reactivation of a partner's viewer and of the
            // author whose relationship scorecard shows the shared Result.
            "deactivate and reactivate",
            vec![
                Deactivate {
                    site: 1,
                    actor: 0,
                    user: 3,
                },
                Deactivate {
                    site: 1,
                    actor: 0,
                    user: 2,
                },
                Reactivate {
                    site: 1,
                    actor: 0,
                    user: 3,
                },
            ],
        ),
    ];
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let mut failures = Vec::new();
    for (name, ops) in sequences {
        if let Err(e) = runtime.block_on(run(ops)) {
            failures.push(format!("{name}: {e}"));
        }
    }
    // Every step of these is accepted: renames, archives and undone
    // relationships, each compared with the oracle (and as of before).
    let lifecycle: Vec<(&str, Vec<Op>)> = vec![
        (
            // S1's relationship onto its scorecard 1 shows S0's Result; S0
            // renames and archives the Indicator inside it (also placed on
            // the shared scorecard), then the Result; the worker removes
            // S1's relationship.
            "renames and archives of shared objects",
            vec![
                Rename {
                    site: 0,
                    actor: 0,
                    scorecard: None,
                    object: 1,
                },
                Archive {
                    site: 0,
                    actor: 0,
                    scorecard: None,
                    object: 1,
                },
                Archive {
                    site: 0,
                    actor: 0,
                    scorecard: None,
                    object: 0,
                },
                Worker,
            ],
        ),
        (
            // S0 archives its shared scorecard 0 (S1 sees its Result through
            // it, and has a relationship onto it), and S1 archives its
            // scorecard 1, which held that relationship.
            "archives of shared scorecards and of relationship targets",
            vec![
                Rename {
                    site: 0,
                    actor: 0,
                    scorecard: Some(0),
                    object: 0,
                },
                Archive {
                    site: 0,
                    actor: 0,
                    scorecard: Some(0),
                    object: 0,
                },
                Worker,
                Archive {
                    site: 1,
                    actor: 0,
                    scorecard: Some(1),
                    object: 0,
                },
                Archive {
                    site: 0,
                    actor: 0,
                    scorecard: None,
                    object: 4,
                },
            ],
        ),
        (
            // S1 takes S0's Result off its scorecard; S0 stops using S2's
            // measure in its aggregation.
            "relationships undone",
            vec![
                Unrelate {
                    site: 1,
                    actor: 0,
                    pick: 0,
                },
                Unrelate {
                    site: 0,
                    actor: 0,
                    pick: 0,
                },
            ],
        ),
    ];
    for (name, ops) in lifecycle {
        if let Err(e) = runtime.block_on(run_checked(ops, true)) {
            failures.push(format!("{name}: {e}"));
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

proptest! {
    // PROPTEST_CASES=n runs more (or fewer) cases than the default 24.
    #![proptest_config(ProptestConfig {
        cases: std::env::var("PROPTEST_CASES").ok().and_then(|n| n.parse().ok()).unwrap_or(24),
        max_shrink_iters: 200,
        ..ProptestConfig::default()
    })]

    #[test]
    fn the_index_agrees_with_the_oracle_after_every_step(ops in prop::collection::vec(op(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops))?;
    }
}
