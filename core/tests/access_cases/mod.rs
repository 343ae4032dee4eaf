//! The shared table of cases of the access rule: given facts, the level a
//! user has on a target (`docs/access-model.md`; R-USER-3, R-USER-4,
//! R-USER-6, R-CONN-4, R-CONN-7, R-SHARE-1 to R-SHARE-5).
//!
//! One table, run against every implementation of the level:
//!
//! * `core/tests/access_rule.rs`: `shareledger_core::access_rule::level`
//!   on facts gathered from the command side's own folds, and for own
//!   objects `content::level_on_object` and `ChangeObjectField`'s decision;
//! * `projections/tests/access_cases.rs`: the access index (Q-1 `level`
//!   and `check`, Q-2 `lookup`, Q-3 `viewers`), its explanations (Q-4: the
//!   level of the best path), and `level_sql` over the persisted access
//!   tables on real PostgreSQL.
//!
//! Both include this file (`#[path]`). Each case is a small world: site
//! `A`, which owns scorecards `S1`, `S2` and objects `C` (a Result) and `X`
//! (an Indicator inside `C`); site `B`, which owns scorecard `T` and object
//! `M` (a Performance Measure); one user, of `A` or of `B`, holding the
//! flags the case names. [`Case::world`] turns the givens, in order, into
//! the events a log would hold (with fresh ids), which each implementation
//! reads its own way.

#![allow(dead_code)] // each test that includes this file uses part of it

use std::collections::{BTreeMap, BTreeSet};

use shareledger_core::catalog::{
    AccessLevel, ConnectionEvent, ContentEvent, Directions, Link, Name, NewUser, ObjectId,
    ObjectKind, PermissionFlag, RelationshipId, Role, ScorecardId, SeatLimit, SiteCode, SiteEvent,
    SiteId, UserId, UserOrigin, Username,
};

use AccessLevel::{Browser, Editor, ScorecardAdmin, Updater};
use PermissionFlag::{AddEditScorecardObjects, AllScorecards, InstanceAdmin};

/// The site of the case's user: `A` owns the content the cases mostly ask
/// about, `B` is its partner.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Site {
    A,
    B,
}

/// The scorecards: `A`'s `S1` and `S2`, `B`'s `T`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Sc {
    S1,
    S2,
    T,
}

/// The objects: `A`'s `C` (a Result) and `X` (an Indicator inside `C`),
/// `B`'s `M` (a Performance Measure).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum Ob {
    C,
    X,
    M,
}

/// What a case asks about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum On {
    Scorecard(Sc),
    Object(Ob),
}

/// A fact of a case, established by events in the order given.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Given {
    /// The user holds this flag (from when it is added).
    Flag(PermissionFlag),
    /// The scorecard is assigned to the user at this level.
    Assigned(Sc, AccessLevel),
    /// The assignment is revoked.
    Unassigned(Sc),
    /// The object is placed on a scorecard of its own site.
    Placed(Ob, Sc),
    /// The object is removed from the scorecard.
    Removed(Ob, Sc),
    /// `A` requests the link `A → B` and `B` approves it.
    LinkAB,
    /// `B` requests the link `B → A` and `A` approves it.
    LinkBA,
    /// `A` revokes `A → B` (its shared scorecards are unshared with it).
    RevokeAB,
    /// The scorecard's owner shares it over its link to the other site.
    Shared(Sc),
    /// The owner stops sharing it.
    Unshared(Sc),
    /// `B` places `A`'s object on its scorecard `T` (a relationship).
    OnT(Ob),
    /// `B` uses `A`'s object in its aggregation `M` (a relationship).
    IntoM(Ob),
    /// The user is deactivated.
    Deactivated,
    /// The user is reactivated.
    Reactivated,
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    pub name: &'static str,
    pub user: Site,
    pub given: &'static [Given],
    pub on: On,
    pub expected: Option<AccessLevel>,
}

use Given::*;
use Ob::{C, M, X};
use Sc::{S1, S2, T};

const fn case(
    name: &'static str,
    user: Site,
    given: &'static [Given],
    on: On,
    expected: Option<AccessLevel>,
) -> Case {
    Case {
        name,
        user,
        given,
        on,
        expected,
    }
}

const fn sc(s: Sc) -> On {
    On::Scorecard(s)
}

const fn ob(o: Ob) -> On {
    On::Object(o)
}

/// The table.
pub const CASES: &[Case] = &[
    // ---- A user's own site: scorecards (R-USER-3, R-USER-4, R-USER-6) ----
    case(
        "nothing assigned and no flag: nothing",
        Site::A,
        &[],
        sc(S1),
        None,
    ),
    case(
        "an assigned level: Browser",
        Site::A,
        &[Assigned(S1, Browser)],
        sc(S1),
        Some(Browser),
    ),
    case(
        "an assigned level: Updater",
        Site::A,
        &[Assigned(S1, Updater)],
        sc(S1),
        Some(Updater),
    ),
    case(
        "an assigned level: Editor",
        Site::A,
        &[Assigned(S1, Editor)],
        sc(S1),
        Some(Editor),
    ),
    case(
        "an assigned level: Scorecard Admin",
        Site::A,
        &[Assigned(S1, ScorecardAdmin)],
        sc(S1),
        Some(ScorecardAdmin),
    ),
    case(
        "another scorecard assigned: nothing on this one",
        Site::A,
        &[Assigned(S2, Editor)],
        sc(S1),
        None,
    ),
    case(
        "a revoked assignment gives nothing",
        Site::A,
        &[Assigned(S1, Editor), Unassigned(S1)],
        sc(S1),
        None,
    ),
    case(
        "Instance Admin: Scorecard Admin",
        Site::A,
        &[Flag(InstanceAdmin)],
        sc(S1),
        Some(ScorecardAdmin),
    ),
    case(
        "Instance Admin outranks an assigned level",
        Site::A,
        &[Flag(InstanceAdmin), Assigned(S1, Browser)],
        sc(S1),
        Some(ScorecardAdmin),
    ),
    case(
        "All Scorecards: Browser",
        Site::A,
        &[Flag(AllScorecards)],
        sc(S1),
        Some(Browser),
    ),
    case(
        "All Scorecards keeps an assigned level",
        Site::A,
        &[Flag(AllScorecards), Assigned(S1, Editor)],
        sc(S1),
        Some(Editor),
    ),
    case(
        "Add/Edit Scorecard Objects with none of its site's scorecards assigned: Browser",
        Site::A,
        &[Flag(AddEditScorecardObjects)],
        sc(S1),
        Some(Browser),
    ),
    case(
        "Add/Edit Scorecard Objects with another of its site's scorecards assigned: nothing",
        Site::A,
        &[Flag(AddEditScorecardObjects), Assigned(S2, Editor)],
        sc(S1),
        None,
    ),
    case(
        "Add/Edit Scorecard Objects browses all again once its assignment is revoked",
        Site::A,
        &[
            Flag(AddEditScorecardObjects),
            Assigned(S2, Editor),
            Unassigned(S2),
        ],
        sc(S1),
        Some(Browser),
    ),
    case(
        "Add/Edit Scorecard Objects with only a partner's scorecard assigned: Browser",
        Site::A,
        &[Flag(AddEditScorecardObjects), Assigned(T, Browser)],
        sc(S1),
        Some(Browser),
    ),
    case(
        "a deactivated Instance Admin: nothing",
        Site::A,
        &[Flag(InstanceAdmin), Deactivated],
        sc(S1),
        None,
    ),
    case(
        "a reactivated Instance Admin: Scorecard Admin again",
        Site::A,
        &[Flag(InstanceAdmin), Deactivated, Reactivated],
        sc(S1),
        Some(ScorecardAdmin),
    ),
    case(
        "a deactivated user keeps nothing of its assignment",
        Site::A,
        &[Assigned(S1, Editor), Deactivated],
        sc(S1),
        None,
    ),
    // ---- A user's own site: objects (R-USER-3, R-USER-4, R-SHARE-2) ----
    case(
        "Instance Admin: Scorecard Admin on an object placed on a scorecard",
        Site::A,
        &[Flag(InstanceAdmin), Placed(X, S1)],
        ob(X),
        Some(ScorecardAdmin),
    ),
    case(
        "Instance Admin: Scorecard Admin on an object inside a placed container",
        Site::A,
        &[Flag(InstanceAdmin), Placed(C, S1)],
        ob(X),
        Some(ScorecardAdmin),
    ),
    case(
        "Instance Admin without All Scorecards: nothing on an object on no scorecard",
        Site::A,
        &[Flag(InstanceAdmin)],
        ob(X),
        None,
    ),
    case(
        "Instance Admin with All Scorecards: Scorecard Admin on an object on no scorecard",
        Site::A,
        &[Flag(InstanceAdmin), Flag(AllScorecards)],
        ob(X),
        Some(ScorecardAdmin),
    ),
    case(
        "the level assigned on the scorecard it is placed on",
        Site::A,
        &[Placed(X, S1), Assigned(S1, Updater)],
        ob(X),
        Some(Updater),
    ),
    case(
        "the level assigned on the scorecard its container is placed on",
        Site::A,
        &[Placed(C, S1), Assigned(S1, Editor)],
        ob(X),
        Some(Editor),
    ),
    case(
        "the highest level among the scorecards it shows on",
        Site::A,
        &[
            Placed(X, S1),
            Placed(C, S2),
            Assigned(S1, Updater),
            Assigned(S2, Editor),
        ],
        ob(X),
        Some(Editor),
    ),
    case(
        "a scorecard it does not show on assigned: nothing",
        Site::A,
        &[Placed(X, S1), Assigned(S2, Editor)],
        ob(X),
        None,
    ),
    case(
        "an object placed inside does not show its container",
        Site::A,
        &[Placed(X, S1), Assigned(S1, Editor)],
        ob(C),
        None,
    ),
    case(
        "a placed container at the level assigned",
        Site::A,
        &[Placed(C, S1), Assigned(S1, Browser)],
        ob(C),
        Some(Browser),
    ),
    case(
        "All Scorecards: Browser on an object on no scorecard",
        Site::A,
        &[Flag(AllScorecards)],
        ob(X),
        Some(Browser),
    ),
    case(
        "All Scorecards keeps an assigned level on an object",
        Site::A,
        &[Flag(AllScorecards), Placed(X, S1), Assigned(S1, Editor)],
        ob(X),
        Some(Editor),
    ),
    case(
        "Add/Edit Scorecard Objects, none assigned: Browser on an object on a scorecard",
        Site::A,
        &[Flag(AddEditScorecardObjects), Placed(X, S1)],
        ob(X),
        Some(Browser),
    ),
    case(
        "Add/Edit Scorecard Objects, none assigned: nothing on an object on no scorecard",
        Site::A,
        &[Flag(AddEditScorecardObjects)],
        ob(X),
        None,
    ),
    case(
        "Add/Edit Scorecard Objects with a scorecard assigned: nothing beyond it",
        Site::A,
        &[
            Flag(AddEditScorecardObjects),
            Placed(X, S1),
            Assigned(S2, Editor),
        ],
        ob(X),
        None,
    ),
    case(
        "removed from its only scorecard: on no scorecard again",
        Site::A,
        &[Placed(X, S1), Assigned(S1, Editor), Removed(X, S1)],
        ob(X),
        None,
    ),
    case(
        "removed from a scorecard it still shows on through its container",
        Site::A,
        &[
            Placed(X, S1),
            Placed(C, S1),
            Assigned(S1, Editor),
            Removed(X, S1),
        ],
        ob(X),
        Some(Editor),
    ),
    case(
        "its container removed: it shows where it is placed itself",
        Site::A,
        &[
            Placed(X, S2),
            Placed(C, S1),
            Assigned(S1, Editor),
            Assigned(S2, Updater),
            Removed(C, S1),
        ],
        ob(X),
        Some(Updater),
    ),
    case(
        "a deactivated user with All Scorecards: nothing on an object",
        Site::A,
        &[Flag(AllScorecards), Deactivated],
        ob(X),
        None,
    ),
    // ---- Partners' scorecards (R-CONN-4, R-CONN-7, R-SHARE-1, R-SHARE-3, R-SHARE-5) ----
    case(
        "no link: nothing, even with All Scorecards",
        Site::B,
        &[Flag(AllScorecards)],
        sc(S1),
        None,
    ),
    case(
        "an active link sharing nothing gives nothing",
        Site::B,
        &[LinkAB, Flag(AllScorecards)],
        sc(S1),
        None,
    ),
    case(
        "shared, and the user has All Scorecards: Browser",
        Site::B,
        &[LinkAB, Shared(S1), Flag(AllScorecards)],
        sc(S1),
        Some(Browser),
    ),
    case(
        "shared and assigned: Browser, whatever the level assigned",
        Site::B,
        &[LinkAB, Shared(S1), Assigned(S1, Editor)],
        sc(S1),
        Some(Browser),
    ),
    case(
        "shared, neither All Scorecards nor assigned: nothing",
        Site::B,
        &[LinkAB, Shared(S1)],
        sc(S1),
        None,
    ),
    case(
        "shared: the partner's Instance Admin gets nothing by that flag",
        Site::B,
        &[LinkAB, Shared(S1), Flag(InstanceAdmin)],
        sc(S1),
        None,
    ),
    case(
        "shared: Add/Edit Scorecard Objects browses only its own site",
        Site::B,
        &[LinkAB, Shared(S1), Flag(AddEditScorecardObjects)],
        sc(S1),
        None,
    ),
    case(
        "another scorecard shared: nothing on this one",
        Site::B,
        &[LinkAB, Shared(S2), Flag(AllScorecards)],
        sc(S1),
        None,
    ),
    case(
        "unshared: nothing",
        Site::B,
        &[LinkAB, Shared(S1), Unshared(S1), Flag(AllScorecards)],
        sc(S1),
        None,
    ),
    case(
        "the link revoked: nothing",
        Site::B,
        &[LinkAB, Shared(S1), RevokeAB, Flag(AllScorecards)],
        sc(S1),
        None,
    ),
    case(
        "revoked, then linked again: nothing shared any more",
        Site::B,
        &[LinkAB, Shared(S1), RevokeAB, LinkAB, Flag(AllScorecards)],
        sc(S1),
        None,
    ),
    case(
        "an assignment kept while unshared gives Browser once shared again",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Assigned(S1, Browser),
            RevokeAB,
            LinkAB,
            Shared(S1),
        ],
        sc(S1),
        Some(Browser),
    ),
    case(
        "only the other direction active: nothing of the owner's",
        Site::B,
        &[LinkBA, Shared(T), Flag(AllScorecards)],
        sc(S1),
        None,
    ),
    case(
        "a partner shares with the site in its own direction: Browser",
        Site::A,
        &[LinkBA, Shared(T), Flag(AllScorecards)],
        sc(T),
        Some(Browser),
    ),
    case(
        "a deactivated partner user: nothing",
        Site::B,
        &[LinkAB, Shared(S1), Flag(AllScorecards), Deactivated],
        sc(S1),
        None,
    ),
    // ---- Partners' objects (R-SHARE-2, R-SHARE-4, R-SHARE-5) ----
    case(
        "on a shared scorecard, All Scorecards: Browser",
        Site::B,
        &[LinkAB, Shared(S1), Placed(X, S1), Flag(AllScorecards)],
        ob(X),
        Some(Browser),
    ),
    case(
        "inside a container on a shared scorecard, All Scorecards: Browser",
        Site::B,
        &[LinkAB, Shared(S1), Placed(C, S1), Flag(AllScorecards)],
        ob(X),
        Some(Browser),
    ),
    case(
        "the shared scorecard it shows on assigned: Browser",
        Site::B,
        &[LinkAB, Shared(S1), Placed(X, S1), Assigned(S1, Editor)],
        ob(X),
        Some(Browser),
    ),
    case(
        "a shared scorecard it does not show on assigned: nothing",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Shared(S2),
            Placed(X, S1),
            Assigned(S2, Browser),
        ],
        ob(X),
        None,
    ),
    case(
        "on an unshared scorecard only: nothing, even with All Scorecards",
        Site::B,
        &[LinkAB, Shared(S2), Placed(X, S1), Flag(AllScorecards)],
        ob(X),
        None,
    ),
    case(
        "on no scorecard: nothing, even with All Scorecards",
        Site::B,
        &[LinkAB, Shared(S1), Flag(AllScorecards)],
        ob(X),
        None,
    ),
    case(
        "removed from the shared scorecard: nothing",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            Flag(AllScorecards),
            Removed(X, S1),
        ],
        ob(X),
        None,
    ),
    case(
        "seen by the site, but no All Scorecards, assignment or relationship: nothing",
        Site::B,
        &[LinkAB, Shared(S1), Placed(X, S1)],
        ob(X),
        None,
    ),
    case(
        "seen, Add/Edit Scorecard Objects with nothing assigned: nothing",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            Flag(AddEditScorecardObjects),
        ],
        ob(X),
        None,
    ),
    case(
        "a relationship on its scorecard T the user is assigned: Browser",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            OnT(X),
            Assigned(T, Updater),
        ],
        ob(X),
        Some(Browser),
    ),
    case(
        "a relationship on its container gives what the container holds",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(C, S1),
            OnT(C),
            Assigned(T, Browser),
        ],
        ob(X),
        Some(Browser),
    ),
    case(
        "a relationship on an object gives nothing on its container",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(C, S1),
            OnT(X),
            Assigned(T, Browser),
        ],
        ob(C),
        None,
    ),
    case(
        "a relationship on T the user has no level on: nothing",
        Site::B,
        &[LinkAB, Shared(S1), Placed(X, S1), OnT(X)],
        ob(X),
        None,
    ),
    case(
        "a relationship on T, the user browses all its own site: Browser",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            OnT(X),
            Flag(AddEditScorecardObjects),
        ],
        ob(X),
        Some(Browser),
    ),
    case(
        "a relationship on T, the user is Instance Admin: Browser at most",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            OnT(X),
            Flag(InstanceAdmin),
        ],
        ob(X),
        Some(Browser),
    ),
    case(
        "an aggregation into M, which shows on T assigned: Browser",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            IntoM(X),
            Placed(M, T),
            Assigned(T, Editor),
        ],
        ob(X),
        Some(Browser),
    ),
    case(
        "an aggregation into M on no scorecard, T assigned: nothing",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            IntoM(X),
            Assigned(T, Editor),
        ],
        ob(X),
        None,
    ),
    case(
        "an aggregation into M on no scorecard, Instance Admin: nothing",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            IntoM(X),
            Flag(InstanceAdmin),
        ],
        ob(X),
        None,
    ),
    case(
        "an aggregation into M on a scorecard, Instance Admin: Browser",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            IntoM(X),
            Placed(M, T),
            Flag(InstanceAdmin),
        ],
        ob(X),
        Some(Browser),
    ),
    case(
        "a relationship whose object the site no longer sees gives nothing",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Shared(S2),
            Placed(C, S1),
            Placed(X, S2),
            OnT(C),
            Assigned(T, Browser),
            Unshared(S1),
        ],
        ob(X),
        None,
    ),
    case(
        "a relationship after the link is revoked gives nothing",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            OnT(X),
            Assigned(T, Browser),
            RevokeAB,
        ],
        ob(X),
        None,
    ),
    case(
        "a deactivated partner user with All Scorecards: nothing on an object",
        Site::B,
        &[
            LinkAB,
            Shared(S1),
            Placed(X, S1),
            Flag(AllScorecards),
            Deactivated,
        ],
        ob(X),
        None,
    ),
];

/// One event of a case's log.
#[derive(Debug, Clone)]
pub enum Event {
    /// In `site-<site>`.
    Site(SiteId, SiteEvent),
    /// In `content-<site>`.
    Content(SiteId, ContentEvent),
    /// In `connection-<lo>-<hi>` of `A` and `B`.
    Connection(ConnectionEvent),
}

/// A case's world: its ids, and its log.
#[derive(Debug, Clone)]
pub struct World {
    pub a: SiteId,
    pub b: SiteId,
    pub user: UserId,
    /// The user's site.
    pub user_site: SiteId,
    pub scorecards: BTreeMap<Sc, ScorecardId>,
    pub objects: BTreeMap<Ob, ObjectId>,
    pub events: Vec<Event>,
}

impl World {
    pub fn scorecard(&self, s: Sc) -> ScorecardId {
        self.scorecards[&s]
    }

    pub fn object(&self, o: Ob) -> ObjectId {
        self.objects[&o]
    }

    /// The site that owns a scorecard or object of the world.
    pub fn owner(&self, on: On) -> SiteId {
        match on {
            On::Scorecard(Sc::T) | On::Object(Ob::M) => self.b,
            _ => self.a,
        }
    }
}

fn name(raw: &str) -> Name {
    Name::parse(raw).expect("a valid name")
}

impl Case {
    /// The case's world, with fresh ids; `n` tells its sites' codes apart
    /// from other cases' (several worlds may share one log).
    pub fn world(&self, n: usize) -> World {
        let (a, b) = (SiteId::new(), SiteId::new());
        let user = UserId::new();
        let user_site = match self.user {
            Site::A => a,
            Site::B => b,
        };
        let scorecards: BTreeMap<Sc, ScorecardId> = [S1, S2, T]
            .into_iter()
            .map(|s| (s, ScorecardId::new()))
            .collect();
        let objects: BTreeMap<Ob, ObjectId> = [C, X, M]
            .into_iter()
            .map(|o| (o, ObjectId::new()))
            .collect();
        let site_of_sc = |s: Sc| if s == T { b } else { a };
        let site_of_ob = |o: Ob| if o == M { b } else { a };
        let mut events = Vec::new();
        for (site, code) in [(a, format!("CASE{n}A")), (b, format!("CASE{n}B"))] {
            events.push(Event::Site(
                site,
                SiteEvent::SiteRegistered {
                    site_id: site,
                    code: SiteCode::parse(&code).expect("a valid code"),
                    name: name(&code),
                    seat_limit: SeatLimit::new(10).expect("a valid limit"),
                    parent: None,
                },
            ));
        }
        let permissions: BTreeSet<PermissionFlag> = self
            .given
            .iter()
            .filter_map(|g| match g {
                Flag(flag) => Some(*flag),
                _ => None,
            })
            .collect();
        events.push(Event::Site(
            user_site,
            SiteEvent::UserAdded {
                user: NewUser {
                    user_id: user,
                    username: Username::parse(&format!("user@case{n}.org")).expect("valid"),
                    name: name("The user"),
                    role: Role::Presenter,
                    permissions,
                    email: None,
                },
                origin: UserOrigin::Added,
                scorecard_access: BTreeMap::new(),
                hide_organization_settings: false,
            },
        ));
        for s in [S1, S2, T] {
            events.push(Event::Content(
                site_of_sc(s),
                ContentEvent::ScorecardCreated {
                    scorecard_id: scorecards[&s],
                    name: name(&format!("{s:?}")),
                },
            ));
        }
        for (o, kind, container) in [
            (C, ObjectKind::Result, None),
            (X, ObjectKind::Indicator, Some(objects[&C])),
            (M, ObjectKind::PerformanceMeasure, None),
        ] {
            events.push(Event::Content(
                site_of_ob(o),
                ContentEvent::ObjectCreated {
                    object_id: objects[&o],
                    kind,
                    name: name(&format!("{o:?}")),
                    container,
                },
            ));
        }
        let ab = Link { from: a, to: b };
        let ba = Link { from: b, to: a };
        let mut shared: BTreeMap<Link, BTreeSet<ScorecardId>> = BTreeMap::new();
        let share_link = |s: Sc| if s == T { ba } else { ab };
        for given in self.given {
            match *given {
                Flag(_) => {}
                Assigned(s, level) => events.push(Event::Site(
                    user_site,
                    SiteEvent::ScorecardAccessGranted {
                        user_id: user,
                        scorecard_id: scorecards[&s],
                        level,
                    },
                )),
                Unassigned(s) => events.push(Event::Site(
                    user_site,
                    SiteEvent::ScorecardAccessRevoked {
                        user_id: user,
                        scorecard_id: scorecards[&s],
                    },
                )),
                Placed(o, s) => events.push(Event::Content(
                    site_of_ob(o),
                    ContentEvent::ObjectPlacedOnScorecard {
                        object_id: objects[&o],
                        scorecard_id: scorecards[&s],
                    },
                )),
                Removed(o, s) => events.push(Event::Content(
                    site_of_ob(o),
                    ContentEvent::ObjectRemovedFromScorecard {
                        object_id: objects[&o],
                        scorecard_id: scorecards[&s],
                    },
                )),
                LinkAB | LinkBA => {
                    let (link, requester, approver) = if *given == LinkAB {
                        (ab, a, b)
                    } else {
                        (ba, b, a)
                    };
                    events.push(Event::Connection(ConnectionEvent::ConnectionRequested {
                        requester,
                        partner: approver,
                        directions: Directions::Offer,
                        links: vec![link],
                    }));
                    events.push(Event::Connection(ConnectionEvent::LinksActivated {
                        approver,
                        links: vec![link],
                        mutual_request: false,
                    }));
                    shared.remove(&link);
                }
                RevokeAB => {
                    events.push(Event::Connection(ConnectionEvent::LinkRevoked {
                        revoker: a,
                        link: ab,
                    }));
                    for scorecard_id in shared.remove(&ab).unwrap_or_default() {
                        events.push(Event::Connection(ConnectionEvent::ScorecardUnshared {
                            link: ab,
                            scorecard_id,
                            because_link_revoked: true,
                        }));
                    }
                }
                Shared(s) => {
                    let link = share_link(s);
                    shared.entry(link).or_default().insert(scorecards[&s]);
                    events.push(Event::Connection(ConnectionEvent::ScorecardShared {
                        link,
                        scorecard_id: scorecards[&s],
                    }));
                }
                Unshared(s) => {
                    let link = share_link(s);
                    shared.entry(link).or_default().remove(&scorecards[&s]);
                    events.push(Event::Connection(ConnectionEvent::ScorecardUnshared {
                        link,
                        scorecard_id: scorecards[&s],
                        because_link_revoked: false,
                    }));
                }
                OnT(o) => events.push(Event::Content(
                    b,
                    ContentEvent::SharedObjectLinked {
                        relationship_id: RelationshipId::new(),
                        scorecard_id: scorecards[&T],
                        origin_site: a,
                        object_id: objects[&o],
                    },
                )),
                IntoM(o) => events.push(Event::Content(
                    b,
                    ContentEvent::SharedMeasureAggregated {
                        relationship_id: RelationshipId::new(),
                        into_object: objects[&M],
                        origin_site: a,
                        object_id: objects[&o],
                    },
                )),
                Deactivated => events.push(Event::Site(
                    user_site,
                    SiteEvent::UserDeactivated { user_id: user },
                )),
                Reactivated => events.push(Event::Site(
                    user_site,
                    SiteEvent::UserReactivated { user_id: user },
                )),
            }
        }
        World {
            a,
            b,
            user,
            user_site,
            scorecards,
            objects,
            events,
        }
    }
}
