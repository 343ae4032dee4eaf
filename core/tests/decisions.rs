//! The commands as [`Decision`]s, decided through `decide_with` over an
//! in-memory store of streams (the executor's loop without IO), as
//! given / when / then:
//!
//! * **given** past events per stream (sites, contents, connections; a
//!   registered site's code is claimed with it);
//! * **when** a command is decided by an actor: the loader records every
//!   read it is asked for, in order;
//! * **then** exactly these reads, and exactly this [`Decided`] (the writes
//!   per stream) or this `DomainError`.
//!
//! Tests are named after the rule they prove where one applies
//! (`../shared/DOMAIN.md`); the others after what of the trait they prove:
//! reads in rounds, the writes, undeclared reads, and the commands as HTTP
//! bodies (JSON, unknown fields refused).

use std::collections::BTreeMap;

use shareledger_core::catalog::{
    ConnectionEvent, ContentEvent, Directions, Link, Name, NewUser, ObjectField, ObjectId,
    ObjectKind, PermissionFlag, RelationshipId, RemovalReason, Role, ScorecardId, SeatLimit,
    SiteCode, SiteCodeEvent, SiteEvent, SiteId, UserId, UserOrigin, Username,
};
use shareledger_core::connection::{
    ConnectionState, RequestConnection, RevokeSharing, UnshareScorecard,
};
use shareledger_core::content::{ChangeObjectField, ContentState};
use shareledger_core::csv_import::imported_user_id;
use shareledger_core::decision::decide_with;
use shareledger_core::envelope::Actor;
use shareledger_core::site::{
    AddUser, ImportUsers, RegisterSite, SetParentSite, SetSeatLimit, SiteState,
};
use shareledger_core::{Context, Decided, Decision, DomainError, Facts, Read, Write};
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Harness: an in-memory store and the loader over it
// ---------------------------------------------------------------------------

/// Every stream's events, as the log holds them.
#[derive(Debug, Clone, Default)]
struct Store {
    sites: BTreeMap<SiteId, Vec<SiteEvent>>,
    contents: BTreeMap<SiteId, Vec<ContentEvent>>,
    connections: BTreeMap<(SiteId, SiteId), Vec<ConnectionEvent>>,
    codes: BTreeMap<SiteCode, SiteId>,
}

/// A pair in the order the connection stream's name has.
fn pair(a: SiteId, b: SiteId) -> (SiteId, SiteId) {
    (a.min(b), a.max(b))
}

impl Store {
    /// Given a site's stream; its code is claimed by its `SiteRegistered`.
    fn site(mut self, events: Vec<SiteEvent>) -> Self {
        let SiteEvent::SiteRegistered { site_id, code, .. } = &events[0] else {
            panic!("a site stream starts with SiteRegistered");
        };
        self.codes.insert(code.clone(), *site_id);
        self.sites.insert(*site_id, events);
        self
    }

    /// Given a site's content stream.
    fn content(mut self, site: SiteId, events: Vec<ContentEvent>) -> Self {
        self.contents.insert(site, events);
        self
    }

    /// Given a pair's connection stream.
    fn connection(mut self, a: SiteId, b: SiteId, events: Vec<ConnectionEvent>) -> Self {
        self.connections.insert(pair(a, b), events);
        self
    }

    fn site_state(&self, id: SiteId) -> Option<SiteState> {
        SiteState::from_events(self.sites.get(&id).into_iter().flatten())
    }

    fn content_state(&self, id: SiteId) -> ContentState {
        ContentState::from_events(id, self.contents.get(&id).into_iter().flatten())
    }

    fn connection_state(&self, a: SiteId, b: SiteId) -> ConnectionState {
        ConnectionState::from_events(
            a,
            b,
            self.connections.get(&pair(a, b)).into_iter().flatten(),
        )
    }

    /// What the executor does for one read: the stream folded into `facts`.
    fn load(&self, read: &Read, facts: &mut Facts) {
        match read {
            Read::Site(id) => facts.put_site(*id, self.site_state(*id)),
            Read::Content(id) => facts.put_content(self.content_state(*id)),
            Read::Connection(a, b) => facts.put_connection(*a, *b, self.connection_state(*a, *b)),
            Read::SiteCode(code) => {
                facts.put_site_code(code.clone(), self.codes.get(code).copied())
            }
            Read::ObjectOwner(object) => {
                let owner = self.contents.iter().find_map(|(site, events)| {
                    events
                        .iter()
                        .any(|e| {
                            matches!(e, ContentEvent::ObjectCreated { object_id, .. } if object_id == object)
                        })
                        .then_some(*site)
                });
                facts.put_object_owner(*object, owner)
            }
            Read::ScorecardOwner(scorecard) => {
                let owner = self.contents.iter().find_map(|(site, events)| {
                    events
                        .iter()
                        .any(|e| {
                            matches!(e, ContentEvent::ScorecardCreated { scorecard_id, .. } if scorecard_id == scorecard)
                        })
                        .then_some(*site)
                });
                facts.put_scorecard_owner(*scorecard, owner)
            }
        }
    }

    /// When `decision` is issued by `actor`: the reads the loader was asked
    /// for, in order, and the decision.
    fn when<D: Decision>(
        &self,
        actor: &Actor,
        decision: &D,
    ) -> (Vec<Read>, Result<Decided, DomainError>) {
        let mut asked = Vec::new();
        let decided = decide_with(decision, &ctx(actor), |read, facts| {
            asked.push(read.clone());
            self.load(read, facts);
        });
        (asked, decided)
    }

    /// The facts `reads` names, loaded (a round of the executor by hand).
    fn facts(&self, reads: &[Read]) -> Facts {
        let mut facts = Facts::default();
        for read in reads {
            self.load(read, &mut facts);
        }
        facts
    }
}

/// The idempotency key every test issues its command under.
const KEY: Uuid = Uuid::from_u128(0x4B_E1);

fn ctx(actor: &Actor) -> Context {
    Context {
        actor: actor.clone(),
        key: KEY,
    }
}

/// Then exactly these writes (and no boundary: the streams read guard it).
#[track_caller]
fn then(decided: Result<Decided, DomainError>, writes: Vec<Write>) {
    assert_eq!(
        decided,
        Ok(Decided {
            writes,
            boundary: None
        })
    );
}

// ---------------------------------------------------------------------------
// Values and fixtures
// ---------------------------------------------------------------------------

const fn sid(n: u128) -> SiteId {
    SiteId(Uuid::from_u128(n))
}
const fn uid(n: u128) -> UserId {
    UserId(Uuid::from_u128(n))
}

/// Site A ("ALPHA"), the acting site of most tests.
const A: SiteId = sid(0xA);
const A_ADMIN: UserId = uid(0xA1);
/// A Scorecard Builder of A: no Instance Admin.
const A_BUILDER: UserId = uid(0xA2);
/// Site B ("BETA"), A's partner.
const B: SiteId = sid(0xB);
const B_ADMIN: UserId = uid(0xB1);
/// Site C ("GAMMA"), a third site.
const C: SiteId = sid(0xC);
const C_ADMIN: UserId = uid(0xC1);

// A's scorecards and objects; B's scorecard; C's object.
const S1: ScorecardId = ScorecardId(Uuid::from_u128(0xA0_01));
const S2: ScorecardId = ScorecardId(Uuid::from_u128(0xA0_02));
const I: ObjectId = ObjectId(Uuid::from_u128(0xA1_01));
const X: ObjectId = ObjectId(Uuid::from_u128(0xA1_02));
const SB: ScorecardId = ScorecardId(Uuid::from_u128(0xB0_01));
const CO: ObjectId = ObjectId(Uuid::from_u128(0xC1_01));
// B's relationships to partners' objects.
const REL1: RelationshipId = RelationshipId(Uuid::from_u128(0xE1));
const REL2: RelationshipId = RelationshipId(Uuid::from_u128(0xE2));
const REL3: RelationshipId = RelationshipId(Uuid::from_u128(0xE3));

fn code(raw: &str) -> SiteCode {
    SiteCode::parse(raw).expect("a valid site code")
}
fn name(raw: &str) -> Name {
    Name::parse(raw).expect("a valid name")
}
fn username(raw: &str) -> Username {
    Username::parse(raw).expect("a valid username")
}
fn seats(n: u32) -> SeatLimit {
    SeatLimit::new(n).expect("a valid seat limit")
}

fn by(site_id: SiteId, user_id: UserId) -> Actor {
    Actor::User {
        user_id: user_id.0,
        site_id: site_id.0,
    }
}
fn operator() -> Actor {
    Actor::Operator {
        name: "ops@shareledger".into(),
    }
}

fn registered(site_id: SiteId, site_code: &str, parent: Option<SiteId>) -> SiteEvent {
    SiteEvent::SiteRegistered {
        site_id,
        code: code(site_code),
        name: name(site_code),
        seat_limit: seats(10),
        parent,
    }
}

/// A's shared (or B's own) scorecard assigned to a user at Browser.
fn granted(user_id: UserId, scorecard_id: ScorecardId) -> SiteEvent {
    SiteEvent::ScorecardAccessGranted {
        user_id,
        scorecard_id,
        level: shareledger_core::catalog::AccessLevel::Browser,
    }
}

fn added(user_id: UserId, login: &str, role: Role) -> SiteEvent {
    SiteEvent::UserAdded {
        user: NewUser {
            user_id,
            username: username(login),
            name: name(login),
            role,
            permissions: role.default_permissions(),
            email: None,
        },
        origin: UserOrigin::Added,
        scorecard_access: BTreeMap::new(),
        hide_organization_settings: false,
    }
}

/// A site with one Administration user (an Instance Admin).
fn site(id: SiteId, site_code: &str, parent: Option<SiteId>, admin: UserId) -> Vec<SiteEvent> {
    vec![
        registered(id, site_code, parent),
        added(
            admin,
            &format!("admin@{site_code}.org"),
            Role::Administration,
        ),
    ]
}

/// A with its admin and a Scorecard Builder, B and C with their admins.
fn three_sites() -> Store {
    let mut a = site(A, "ALPHA", None, A_ADMIN);
    a.push(added(
        A_BUILDER,
        "builder@alpha.org",
        Role::ScorecardBuilder,
    ));
    Store::default()
        .site(a)
        .site(site(B, "BETA", None, B_ADMIN))
        .site(site(C, "GAMMA", None, C_ADMIN))
}

fn ab() -> Link {
    Link { from: A, to: B }
}

/// A requested both links with B, and B approved them.
fn active_both() -> Vec<ConnectionEvent> {
    vec![
        ConnectionEvent::ConnectionRequested {
            requester: A,
            partner: B,
            directions: Directions::Both,
            links: vec![ab(), ab().reversed()],
        },
        ConnectionEvent::LinksActivated {
            approver: B,
            links: vec![ab(), ab().reversed()],
            mutual_request: false,
        },
    ]
}

fn shared(link: Link, scorecard_id: ScorecardId) -> ConnectionEvent {
    ConnectionEvent::ScorecardShared { link, scorecard_id }
}

fn scorecard(scorecard_id: ScorecardId) -> ContentEvent {
    ContentEvent::ScorecardCreated {
        scorecard_id,
        name: name("Scorecard"),
    }
}
fn indicator(object_id: ObjectId) -> ContentEvent {
    ContentEvent::ObjectCreated {
        object_id,
        kind: ObjectKind::Indicator,
        name: name("Indicator"),
        container: None,
    }
}
fn placed(object_id: ObjectId, scorecard_id: ScorecardId) -> ContentEvent {
    ContentEvent::ObjectPlacedOnScorecard {
        object_id,
        scorecard_id,
    }
}
fn linked(
    relationship_id: RelationshipId,
    origin_site: SiteId,
    object_id: ObjectId,
) -> ContentEvent {
    ContentEvent::SharedObjectLinked {
        relationship_id,
        scorecard_id: SB,
        origin_site,
        object_id,
    }
}
fn removed(relationship_id: RelationshipId, reason: RemovalReason) -> ContentEvent {
    ContentEvent::RelationshipRemoved {
        relationship_id,
        reason,
    }
}

/// A's content: I on S1 and S2, X on S1 only.
fn a_content() -> Vec<ContentEvent> {
    vec![
        scorecard(S1),
        scorecard(S2),
        indicator(I),
        indicator(X),
        placed(I, S1),
        placed(X, S1),
        placed(I, S2),
    ]
}

/// B's content: relationships to A's I (REL1) and X (REL2), and to C's CO
/// (REL3).
fn b_content() -> Vec<ContentEvent> {
    vec![
        scorecard(SB),
        linked(REL1, A, I),
        linked(REL2, A, X),
        linked(REL3, C, CO),
    ]
}

/// The three sites; A and B connected both ways, A sharing S1 and S2 with
/// B; the contents above.
fn sharing_world() -> Store {
    let mut connection = active_both();
    connection.extend([shared(ab(), S1), shared(ab(), S2)]);
    three_sites()
        .connection(A, B, connection)
        .content(A, a_content())
        .content(B, b_content())
}

// ---------------------------------------------------------------------------
// (a) RequestConnection reads in rounds: the code first, then its site
// ---------------------------------------------------------------------------

fn request(partner_code: &str, directions: Directions) -> RequestConnection {
    RequestConnection {
        site_id: A,
        partner_code: code(partner_code),
        directions,
    }
}

#[test]
fn r_conn_2_request_connection_reads_the_code_then_the_partner_and_the_pair() {
    let store = three_sites();
    let command = request("beta", Directions::Both);
    let admin = by(A, A_ADMIN);

    // Round one: the requester and the code; nothing of the partner yet.
    let first = command.reads(&ctx(&admin), &Facts::default());
    assert_eq!(first, vec![Read::Site(A), Read::SiteCode(code("BETA"))]);
    // Round two, the code resolved: the partner and the pair's links too.
    let second = command.reads(&ctx(&admin), &store.facts(&first));
    assert_eq!(
        second,
        vec![
            Read::Site(A),
            Read::Site(B),
            Read::Connection(A, B),
            Read::SiteCode(code("BETA")),
        ]
    );

    // The loader is asked for each once, round by round.
    let (asked, decided) = store.when(&admin, &command);
    assert_eq!(
        asked,
        vec![
            Read::Site(A),
            Read::SiteCode(code("BETA")),
            Read::Site(B),
            Read::Connection(A, B),
        ]
    );
    then(
        decided,
        vec![Write::Connection(
            A,
            B,
            vec![ConnectionEvent::ConnectionRequested {
                requester: A,
                partner: B,
                directions: Directions::Both,
                links: vec![ab(), ab().reversed()],
            }],
        )],
    );
}

#[test]
fn r_conn_2_an_unknown_code_is_decided_against_no_pair() {
    let store = three_sites();
    let command = request("NOBODY", Directions::Offer);

    // No partner, so neither its site nor a pair is read.
    let (asked, decided) = store.when(&by(A, A_ADMIN), &command);
    assert_eq!(asked, vec![Read::Site(A), Read::SiteCode(code("NOBODY"))]);
    assert_eq!(decided, Err(DomainError::UnknownSiteCode(code("NOBODY"))));

    // Authorization comes first: the code is not reported to a user who
    // may not request, nor to another site's user, nor to an operator.
    assert_eq!(
        store.when(&by(A, A_BUILDER), &command).1,
        Err(DomainError::NotPermitted {
            needed: PermissionFlag::InstanceAdmin
        })
    );
    assert_eq!(
        store.when(&by(C, C_ADMIN), &command).1,
        Err(DomainError::CrossSite {
            actor_site: C,
            target_site: A
        })
    );
    assert_eq!(
        store.when(&operator(), &command).1,
        Err(DomainError::ConnectionsUnavailable)
    );
}

#[test]
fn r_conn_2_the_own_code_is_refused_after_reading_the_own_pair() {
    let store = three_sites();
    let (asked, decided) = store.when(&by(A, A_ADMIN), &request("Alpha", Directions::Both));
    // A itself is read already: only the (empty) pair is new.
    assert_eq!(
        asked,
        vec![
            Read::Site(A),
            Read::SiteCode(code("ALPHA")),
            Read::Connection(A, A),
        ]
    );
    assert_eq!(decided, Err(DomainError::OwnSiteCode));
}

#[test]
fn r_conn_5_a_request_meeting_the_partners_pending_one_activates_it() {
    // B offered B→A; A now asks for both: B→A is active at once, A→B
    // awaits B's approval.
    let ba = ab().reversed();
    let store = three_sites().connection(
        A,
        B,
        vec![ConnectionEvent::ConnectionRequested {
            requester: B,
            partner: A,
            directions: Directions::Offer,
            links: vec![ba],
        }],
    );
    let (_, decided) = store.when(&by(A, A_ADMIN), &request("BETA", Directions::Both));
    then(
        decided,
        vec![Write::Connection(
            A,
            B,
            vec![
                ConnectionEvent::ConnectionRequested {
                    requester: A,
                    partner: B,
                    directions: Directions::Both,
                    links: vec![ab()],
                },
                ConnectionEvent::LinksActivated {
                    approver: A,
                    links: vec![ba],
                    mutual_request: true,
                },
            ],
        )],
    );
}

// ---------------------------------------------------------------------------
// (b) SetParentSite follows the parent chain read by read
// ---------------------------------------------------------------------------

/// G (top) > A > C1 > C2, and B under G.
const G: SiteId = sid(0x6);
const G_ADMIN: UserId = uid(0x61);
const C1: SiteId = sid(0xC01);
const C2: SiteId = sid(0xC02);

fn hierarchy() -> Store {
    Store::default()
        .site(site(G, "GROUP", None, G_ADMIN))
        .site(site(A, "ALPHA", Some(G), A_ADMIN))
        .site(site(C1, "CHILD", Some(A), uid(0xC11)))
        .site(site(C2, "GRANDCHILD", Some(C1), uid(0xC21)))
        .site(site(B, "BETA", Some(G), B_ADMIN))
}

fn move_a(parent: Option<SiteId>) -> SetParentSite {
    SetParentSite { site_id: A, parent }
}

#[test]
fn r_onb_1_set_parent_site_refuses_a_descendant_read_by_read() {
    let store = hierarchy();
    let admin = by(A, A_ADMIN);
    let command = move_a(Some(C2));

    // Round one: the site and the new parent.
    let first = command.reads(&ctx(&admin), &Facts::default());
    assert_eq!(first, vec![Read::Site(A), Read::Site(C2)]);
    // Round two: C2's parent, C1; its parent is A itself, so the chain ends.
    let second = command.reads(&ctx(&admin), &store.facts(&first));
    assert_eq!(second, vec![Read::Site(A), Read::Site(C2), Read::Site(C1)]);
    let third = command.reads(&ctx(&admin), &store.facts(&second));
    assert_eq!(third, second);

    let (asked, decided) = store.when(&admin, &command);
    assert_eq!(asked, vec![Read::Site(A), Read::Site(C2), Read::Site(C1)]);
    assert_eq!(decided, Err(DomainError::ParentCycle));
    // Its own child, one level down, too.
    assert_eq!(
        store.when(&admin, &move_a(Some(C1))),
        (
            vec![Read::Site(A), Read::Site(C1)],
            Err(DomainError::ParentCycle)
        )
    );
    // And itself.
    assert_eq!(
        store.when(&admin, &move_a(Some(A))).1,
        Err(DomainError::ParentCycle)
    );
}

#[test]
fn r_onb_1_set_parent_site_reads_the_new_parents_ancestors_to_the_top() {
    let store = hierarchy();
    let (asked, decided) = store.when(&by(A, A_ADMIN), &move_a(Some(B)));
    assert_eq!(asked, vec![Read::Site(A), Read::Site(B), Read::Site(G)]);
    then(
        decided,
        vec![Write::Site(
            A,
            vec![SiteEvent::ParentSiteSet { parent: Some(B) }],
        )],
    );
    // No parent: nothing above to read.
    let (asked, decided) = store.when(&by(A, A_ADMIN), &move_a(None));
    assert_eq!(asked, vec![Read::Site(A)]);
    then(
        decided,
        vec![Write::Site(
            A,
            vec![SiteEvent::ParentSiteSet { parent: None }],
        )],
    );
}

#[test]
fn r_onb_1_set_parent_site_follows_a_stored_cycle_once() {
    // X and Y are each other's parent in stored data (above A's move).
    let (x, y) = (sid(0x51), sid(0x52));
    let mut x_events = site(x, "XRAY", None, uid(0x511));
    x_events.push(SiteEvent::ParentSiteSet { parent: Some(y) });
    let store = hierarchy()
        .site(x_events)
        .site(site(y, "YANKEE", Some(x), uid(0x521)));
    let (asked, decided) = store.when(&by(A, A_ADMIN), &move_a(Some(x)));
    assert_eq!(asked, vec![Read::Site(A), Read::Site(x), Read::Site(y)]);
    then(
        decided,
        vec![Write::Site(
            A,
            vec![SiteEvent::ParentSiteSet { parent: Some(x) }],
        )],
    );
}

#[test]
fn r_onb_1_a_missing_parent_is_not_found_after_authorization() {
    let store = hierarchy();
    let nowhere = sid(0x404);
    let (asked, decided) = store.when(&by(A, A_ADMIN), &move_a(Some(nowhere)));
    assert_eq!(asked, vec![Read::Site(A), Read::Site(nowhere)]);
    assert_eq!(decided, Err(DomainError::SiteNotFound(nowhere)));
    // Another site's admin learns nothing about it.
    assert_eq!(
        store.when(&by(B, B_ADMIN), &move_a(Some(nowhere))).1,
        Err(DomainError::CrossSite {
            actor_site: B,
            target_site: A
        })
    );
}

// ---------------------------------------------------------------------------
// (c) Served reads, expected writes
// ---------------------------------------------------------------------------

fn register(site_id: SiteId, site_code: &str, parent: Option<SiteId>) -> RegisterSite {
    RegisterSite {
        site_id,
        code: code(site_code),
        name: name("Delta"),
        seat_limit: seats(5),
        parent,
    }
}

#[test]
fn r_onb_1_register_site_writes_the_site_stream_and_claims_its_code() {
    let store = three_sites();
    let d = sid(0xD);
    let (asked, decided) = store.when(&operator(), &register(d, "delta", None));
    assert_eq!(asked, vec![Read::Site(d), Read::SiteCode(code("DELTA"))]);
    then(
        decided,
        vec![
            Write::Site(
                d,
                vec![SiteEvent::SiteRegistered {
                    site_id: d,
                    code: code("DELTA"),
                    name: name("Delta"),
                    seat_limit: seats(5),
                    parent: None,
                }],
            ),
            Write::SiteCode(
                code("DELTA"),
                vec![SiteCodeEvent::SiteCodeClaimed {
                    code: code("DELTA"),
                    site_id: d,
                }],
            ),
        ],
    );
    // A code held by another site is taken, in any case.
    assert_eq!(
        store.when(&operator(), &register(d, "alpha", None)).1,
        Err(DomainError::SiteCodeTaken(code("ALPHA")))
    );
}

#[test]
fn r_onb_1_a_groups_instance_admin_registers_a_child_site() {
    let store = three_sites();
    let d = sid(0xD);
    let (asked, decided) = store.when(&by(A, A_ADMIN), &register(d, "DELTA", Some(A)));
    assert_eq!(
        asked,
        vec![Read::Site(d), Read::SiteCode(code("DELTA")), Read::Site(A)]
    );
    let decided = decided.expect("A's Instance Admin registers a child of A");
    assert_eq!(decided.writes.len(), 2);
    assert!(matches!(
        &decided.writes[0],
        Write::Site(site, events) if *site == d && matches!(
            events[..],
            [SiteEvent::SiteRegistered { parent: Some(A), .. }]
        )
    ));
    // Not a child of a site the user is not an Instance Admin of.
    assert_eq!(
        store
            .when(&by(A, A_ADMIN), &register(d, "DELTA", Some(B)))
            .1,
        Err(DomainError::CrossSite {
            actor_site: A,
            target_site: B
        })
    );
}

#[test]
fn r_conn_4_revoke_sharing_writes_the_revocation_and_the_lost_relationships() {
    let store = sharing_world();
    // B, the receiving site, revokes A→B.
    let revoke = RevokeSharing {
        site_id: B,
        from: A,
        to: B,
    };
    let (asked, decided) = store.when(&by(B, B_ADMIN), &revoke);
    assert_eq!(
        asked,
        vec![Read::Site(B), Read::Connection(A, B), Read::Content(B)]
    );
    then(
        decided,
        vec![
            Write::Connection(
                A,
                B,
                vec![
                    ConnectionEvent::LinkRevoked {
                        revoker: B,
                        link: ab(),
                    },
                    ConnectionEvent::ScorecardUnshared {
                        link: ab(),
                        scorecard_id: S1,
                        because_link_revoked: true,
                    },
                    ConnectionEvent::ScorecardUnshared {
                        link: ab(),
                        scorecard_id: S2,
                        because_link_revoked: true,
                    },
                ],
            ),
            // Every relationship to A's objects goes; the one to C's stays.
            Write::ContentConsequences(
                B,
                vec![
                    removed(REL1, RemovalReason::LinkRevoked),
                    removed(REL2, RemovalReason::LinkRevoked),
                ],
            ),
        ],
    );

    // A revokes B→A: nothing shared, no relationship lost, so the only
    // write is the connection's (an empty write is no write).
    let (asked, decided) = store.when(
        &by(A, A_ADMIN),
        &RevokeSharing {
            site_id: A,
            from: B,
            to: A,
        },
    );
    assert_eq!(
        asked,
        vec![Read::Site(A), Read::Connection(B, A), Read::Content(A)]
    );
    then(
        decided,
        vec![Write::Connection(
            B,
            A,
            vec![ConnectionEvent::LinkRevoked {
                revoker: A,
                link: ab().reversed(),
            }],
        )],
    );
}

#[test]
fn r_conn_4_a_revoke_ends_the_receiving_users_assignments_to_what_it_shared() {
    // Given B's admin assigned a B user A's shared S1 (and B's own SB), and
    // a second B user S2.
    const B_VIEWER: UserId = uid(0xB7);
    const B_OTHER: UserId = uid(0xB8);
    let mut store = sharing_world();
    let mut b_stream = store.sites[&B].clone();
    b_stream.extend([
        added(B_VIEWER, "viewer@b.org", Role::Presenter),
        added(B_OTHER, "other@b.org", Role::Presenter),
        granted(B_VIEWER, S1),
        granted(B_VIEWER, SB),
        granted(B_OTHER, S2),
    ]);
    store = store.site(b_stream);
    // When A revokes A→B.
    let (asked, decided) = store.when(
        &by(A, A_ADMIN),
        &RevokeSharing {
            site_id: A,
            from: A,
            to: B,
        },
    );
    // Then it read B's users too, and ended exactly the assignments to the
    // scorecards the link shared (S1, S2), as consequences on B's stream;
    // B's own SB stays assigned.
    assert_eq!(
        asked,
        vec![
            Read::Site(A),
            Read::Connection(A, B),
            Read::Site(B),
            Read::Content(B)
        ]
    );
    let decided = decided.expect("the revoke is decided");
    let ended: Vec<&Write> = decided
        .writes
        .iter()
        .filter(|w| matches!(w, Write::SiteConsequences(..)))
        .collect();
    let revoked = |user_id, scorecard_id| SiteEvent::ScorecardAccessRevoked {
        user_id,
        scorecard_id,
    };
    assert_eq!(
        ended,
        vec![&Write::SiteConsequences(
            B,
            vec![revoked(B_VIEWER, S1), revoked(B_OTHER, S2)]
        )]
    );
}

#[test]
fn r_share_4_unsharing_writes_the_relationships_that_lost_their_only_path() {
    let store = sharing_world();
    let unshare = UnshareScorecard {
        site_id: A,
        partner: B,
        scorecard_id: S1,
    };
    let (asked, decided) = store.when(&by(A, A_ADMIN), &unshare);
    assert_eq!(
        asked,
        vec![
            Read::Site(A),
            Read::Content(A),
            Read::Connection(A, B),
            Read::Content(B),
        ]
    );
    // I still shows on S2, still shared: REL1 stays; X showed on S1 alone.
    then(
        decided,
        vec![
            Write::Connection(
                A,
                B,
                vec![ConnectionEvent::ScorecardUnshared {
                    link: ab(),
                    scorecard_id: S1,
                    because_link_revoked: false,
                }],
            ),
            Write::ContentConsequences(B, vec![removed(REL2, RemovalReason::ScorecardUnshared)]),
        ],
    );
}

#[test]
fn r_user_5_commands_decided_on_the_site_write_its_stream() {
    let store = three_sites();
    let (asked, decided) = store.when(
        &by(A, A_ADMIN),
        &AddUser {
            site_id: A,
            user_id: uid(0xA9),
            username: username("new@alpha.org"),
            name: name("new@alpha.org"),
            role: Role::Presenter,
            email: None,
        },
    );
    assert_eq!(asked, vec![Read::Site(A)]);
    then(
        decided,
        vec![Write::Site(
            A,
            vec![added(uid(0xA9), "new@alpha.org", Role::Presenter)],
        )],
    );
    // A site never registered is not found.
    let nowhere = sid(0x404);
    assert_eq!(
        store.when(
            &operator(),
            &SetSeatLimit {
                site_id: nowhere,
                seat_limit: seats(3),
            },
        ),
        (
            vec![Read::Site(nowhere)],
            Err(DomainError::SiteNotFound(nowhere))
        )
    );
}

#[test]
fn r_user_8_import_users_derives_the_user_ids_from_the_idempotency_key() {
    let store = three_sites();
    let import = ImportUsers {
        site_id: A,
        csv: "username,name,role\nann@alpha.org,Ann,presenter\nbob@alpha.org,Bob,data_entry\n"
            .into(),
    };
    let imported =
        |row: usize, line: u32, login: &str, full_name: &str, role: Role| SiteEvent::UserAdded {
            user: NewUser {
                user_id: imported_user_id(KEY, row),
                username: username(login),
                name: name(full_name),
                role,
                permissions: role.default_permissions(),
                email: None,
            },
            origin: UserOrigin::Imported { line },
            scorecard_access: BTreeMap::new(),
            hide_organization_settings: false,
        };
    let (asked, decided) = store.when(&by(A, A_ADMIN), &import);
    assert_eq!(asked, vec![Read::Site(A)]);
    then(
        decided.clone(),
        vec![Write::Site(
            A,
            vec![
                imported(0, 2, "ann@alpha.org", "Ann", Role::Presenter),
                imported(1, 3, "bob@alpha.org", "Bob", Role::DataEntry),
            ],
        )],
    );
    // A re-send under the same key names the same users.
    assert_eq!(store.when(&by(A, A_ADMIN), &import).1, decided);
    assert_ne!(
        imported_user_id(KEY, 0),
        imported_user_id(Uuid::from_u128(1), 0)
    );
    // The right to import is checked before the rows.
    let bad = ImportUsers {
        site_id: A,
        csv: "username,name,role\nann@alpha.org,Ann,wizard\n".into(),
    };
    assert_eq!(
        store.when(&by(A, A_BUILDER), &bad).1,
        Err(DomainError::NotPermitted {
            needed: PermissionFlag::ManageUsers
        })
    );
}

#[test]
fn r_user_3_change_object_field_is_bounded_by_the_object_and_the_user() {
    let store = sharing_world();
    let admin = by(A, A_ADMIN);
    let change = ChangeObjectField {
        site_id: A,
        object_id: I,
        field: ObjectField::Analysis,
        value: "better".into(),
    };
    let (asked, decided) = store.when(&admin, &change);
    assert_eq!(asked, vec![Read::Site(A), Read::Content(A)]);
    let site = store.site_state(A).expect("A is registered");
    assert_eq!(
        decided,
        Ok(Decided {
            writes: vec![Write::Content(
                A,
                vec![ContentEvent::ObjectFieldUpdated {
                    object_id: I,
                    field: ObjectField::Analysis,
                    value: "better".into(),
                }],
            )],
            boundary: Some(change.boundary(&admin, &site, &store.content_state(A))),
        })
    );
    // A partner's user reads whether A shares the object with B, and is
    // refused as read-only.
    let (asked, decided) = store.when(&by(B, B_ADMIN), &change);
    assert_eq!(
        asked,
        vec![Read::Site(B), Read::Content(A), Read::Connection(A, B)]
    );
    assert_eq!(decided, Err(DomainError::SharedContentReadOnly));
}

// ---------------------------------------------------------------------------
// (d) Reading what was not declared is a bug in the decision: it panics
// ---------------------------------------------------------------------------

#[test]
#[should_panic(expected = "read site")]
fn facts_panic_on_an_undeclared_site() {
    Facts::default().site(A);
}

#[test]
#[should_panic(expected = "read the content of")]
fn facts_panic_on_an_undeclared_content() {
    Facts::default().content(A);
}

#[test]
#[should_panic(expected = "read the connection of")]
fn facts_panic_on_an_undeclared_connection() {
    // One end loaded is not the pair.
    let store = three_sites();
    store
        .facts(&[Read::Site(A), Read::Site(B)])
        .connection(A, B);
}

#[test]
#[should_panic(expected = "read site code")]
fn facts_panic_on_an_undeclared_site_code() {
    Facts::default().site_code(&code("ALPHA"));
}

#[test]
fn facts_answer_a_declared_read_of_nothing() {
    // Declared and loaded, but never written: no site, no holder, nothing
    // shared, an empty content. Not a panic.
    let nowhere = sid(0x404);
    let facts = Store::default().facts(&[
        Read::Site(nowhere),
        Read::SiteCode(code("NOBODY")),
        Read::Connection(nowhere, A),
        Read::Content(nowhere),
    ]);
    assert_eq!(facts.site(nowhere), None);
    assert_eq!(
        facts.existing_site(nowhere),
        Err(DomainError::SiteNotFound(nowhere))
    );
    assert_eq!(facts.site_code(&code("nobody")), None);
    assert!(facts.shared_with(nowhere, A).is_empty());
    assert!(facts.visible_to(nowhere, A).is_empty());
    // The pair is one, in either order.
    assert!(facts.has(&Read::Connection(A, nowhere)));
}

/// A decision that declares A's site but reads A's content.
#[derive(Debug, Clone)]
struct ReadsUndeclaredContent;

impl Decision for ReadsUndeclaredContent {
    const NAME: &'static str = "ReadsUndeclaredContent";
    const SUMMARY: &'static str = "A decision with a bug: it reads what it did not declare.";

    fn reads(&self, _: &Context, _: &Facts) -> Vec<Read> {
        vec![Read::Site(A)]
    }

    fn decide_on(&self, _: &Context, facts: &Facts) -> Result<Decided, DomainError> {
        facts.content(A);
        Ok(Decided::default())
    }
}

#[test]
#[should_panic(expected = "without declaring it")]
fn a_decision_reading_what_it_did_not_declare_panics() {
    let _ = three_sites().when(&by(A, A_ADMIN), &ReadsUndeclaredContent);
}

// ---------------------------------------------------------------------------
// (e) The commands are the HTTP bodies: JSON, unknown fields refused
// ---------------------------------------------------------------------------

/// `{"site_id": …}` with A's id, and `rest`.
fn body(rest: &str) -> String {
    format!(r#"{{"site_id": "{}", {rest}}}"#, A.0)
}

#[test]
fn request_connection_parses_from_json_and_refuses_unknown_fields() {
    let good = body(r#""partner_code": "beta", "directions": "offer""#);
    assert_eq!(
        serde_json::from_str::<RequestConnection>(&good).expect("a good body"),
        RequestConnection {
            site_id: A,
            partner_code: code("BETA"),
            directions: Directions::Offer,
        }
    );
    // The old shape's partner id, beside the code: refused, not ignored.
    let extra = body(&format!(
        r#""partner_code": "beta", "directions": "offer", "partner": "{}""#,
        B.0
    ));
    let err = serde_json::from_str::<RequestConnection>(&extra).unwrap_err();
    assert!(err.to_string().contains("unknown field `partner`"), "{err}");
    // A code that is not one.
    assert!(serde_json::from_str::<RequestConnection>(&body(
        r#""partner_code": "x", "directions": "offer""#
    ))
    .is_err());
}

#[test]
fn revoke_sharing_parses_from_json_and_refuses_unknown_fields() {
    let good = body(&format!(r#""from": "{}", "to": "{}""#, B.0, A.0));
    let revoke = serde_json::from_str::<RevokeSharing>(&good).expect("a good body");
    assert_eq!(
        revoke,
        RevokeSharing {
            site_id: A,
            from: B,
            to: A,
        }
    );
    assert_eq!(revoke.link(), ab().reversed());
    // The old shape, a link object.
    let old = body(&format!(
        r#""link": {{"from": "{}", "to": "{}"}}"#,
        B.0, A.0
    ));
    let err = serde_json::from_str::<RevokeSharing>(&old).unwrap_err();
    assert!(err.to_string().contains("unknown field `link`"), "{err}");
}

#[test]
fn site_commands_parse_from_json_and_refuse_unknown_fields() {
    let good = body(&format!(
        r#""user_id": "{}", "username": "New@Alpha.org", "name": "New", "role": "presenter""#,
        uid(0xA9).0
    ));
    assert_eq!(
        serde_json::from_str::<AddUser>(&good).expect("a good body"),
        AddUser {
            site_id: A,
            user_id: uid(0xA9),
            username: username("new@alpha.org"),
            name: name("New"),
            role: Role::Presenter,
            email: None,
        }
    );
    let extra = body(&format!(
        r#""user_id": "{}", "username": "new@alpha.org", "name": "New", "role": "presenter", "permissions": []"#,
        uid(0xA9).0
    ));
    let err = serde_json::from_str::<AddUser>(&extra).unwrap_err();
    assert!(
        err.to_string().contains("unknown field `permissions`"),
        "{err}"
    );

    // An optional field may be left out.
    assert_eq!(
        serde_json::from_str::<SetParentSite>(&format!(r#"{{"site_id": "{}"}}"#, A.0))
            .expect("a good body"),
        SetParentSite {
            site_id: A,
            parent: None
        }
    );
    // The import is CSV text now, not parsed rows.
    let csv = body(r#""csv": "username,name,role\n""#);
    assert_eq!(
        serde_json::from_str::<ImportUsers>(&csv).expect("a good body"),
        ImportUsers {
            site_id: A,
            csv: "username,name,role\n".into(),
        }
    );
    let rows = body(r#""rows": []"#);
    let err = serde_json::from_str::<ImportUsers>(&rows).unwrap_err();
    assert!(err.to_string().contains("unknown field `rows`"), "{err}");
}

// ---------------------------------------------------------------------------
// R-USER-3: a Scorecard Admin configures its scorecard's access
// ---------------------------------------------------------------------------

const A_CARD_ADMIN: UserId = uid(0xA5);
const A_CARD_EDITOR: UserId = uid(0xA6);
const A_MEMBER: UserId = uid(0xA7);

/// A's content; on A, a Presenter holding Scorecard Admin on S1, another
/// holding Editor on S1, and a plain Presenter.
fn scorecard_admin_world() -> Store {
    let store = three_sites().content(A, a_content());
    let mut a = store.sites[&A].clone();
    a.extend([
        added(A_CARD_ADMIN, "cards@alpha.org", Role::Presenter),
        added(A_CARD_EDITOR, "editor@alpha.org", Role::Presenter),
        added(A_MEMBER, "member@alpha.org", Role::Presenter),
        SiteEvent::ScorecardAccessGranted {
            user_id: A_CARD_ADMIN,
            scorecard_id: S1,
            level: shareledger_core::catalog::AccessLevel::ScorecardAdmin,
        },
        SiteEvent::ScorecardAccessGranted {
            user_id: A_CARD_EDITOR,
            scorecard_id: S1,
            level: shareledger_core::catalog::AccessLevel::Editor,
        },
        granted(A_MEMBER, S1),
    ]);
    store.site(a)
}

fn grant_on(scorecard_id: ScorecardId) -> shareledger_core::site::GrantScorecardAccess {
    shareledger_core::site::GrantScorecardAccess {
        site_id: A,
        user_id: A_MEMBER,
        scorecard_id,
        level: shareledger_core::catalog::AccessLevel::Editor,
        owner_site: None,
    }
}

fn revoke_on(scorecard_id: ScorecardId) -> shareledger_core::site::RevokeScorecardAccess {
    shareledger_core::site::RevokeScorecardAccess {
        site_id: A,
        user_id: A_MEMBER,
        scorecard_id,
    }
}

#[test]
fn r_user_3_a_scorecard_admin_grants_and_revokes_access_to_its_scorecard() {
    let store = scorecard_admin_world();
    let admin = by(A, A_CARD_ADMIN);
    // Given Scorecard Admin on S1 (and no Manage Users), when granting
    // Editor on S1, then the grant is written.
    let (_, decided) = store.when(&admin, &grant_on(S1));
    then(
        decided,
        vec![Write::Site(
            A,
            vec![SiteEvent::ScorecardAccessGranted {
                user_id: A_MEMBER,
                scorecard_id: S1,
                level: shareledger_core::catalog::AccessLevel::Editor,
            }],
        )],
    );
    // When revoking access to S1: the site and its content are read (the
    // level decides), and the revocation is written.
    let (asked, decided) = store.when(&admin, &revoke_on(S1));
    assert_eq!(asked, vec![Read::Site(A), Read::Content(A)]);
    then(
        decided,
        vec![Write::Site(
            A,
            vec![SiteEvent::ScorecardAccessRevoked {
                user_id: A_MEMBER,
                scorecard_id: S1,
            }],
        )],
    );
}

#[test]
fn r_user_3_only_a_scorecard_admin_of_that_scorecard_or_a_user_manager_changes_its_access() {
    let store = scorecard_admin_world();
    let refused = DomainError::NotPermitted {
        needed: PermissionFlag::ManageUsers,
    };
    // Scorecard Admin on S1 is nothing on S2.
    assert_eq!(
        store.when(&by(A, A_CARD_ADMIN), &grant_on(S2)).1,
        Err(refused.clone())
    );
    assert_eq!(
        store.when(&by(A, A_CARD_ADMIN), &revoke_on(S2)).1,
        Err(refused.clone())
    );
    // Editor on S1 does not configure it.
    assert_eq!(
        store.when(&by(A, A_CARD_EDITOR), &grant_on(S1)).1,
        Err(refused.clone())
    );
    assert_eq!(
        store.when(&by(A, A_CARD_EDITOR), &revoke_on(S1)).1,
        Err(refused)
    );
    // A user manager needs no level, and no read of the content to revoke.
    let (asked, decided) = store.when(&by(A, A_ADMIN), &revoke_on(S1));
    assert_eq!(asked, vec![Read::Site(A)]);
    assert!(decided.is_ok(), "{decided:?}");
}

#[test]
fn r_user_6_a_deactivated_scorecard_admin_changes_nothing() {
    let mut store = scorecard_admin_world();
    let mut a = store.sites[&A].clone();
    a.push(SiteEvent::UserDeactivated {
        user_id: A_CARD_ADMIN,
    });
    store = store.site(a);
    let (_, decided) = store.when(&by(A, A_CARD_ADMIN), &grant_on(S1));
    assert!(
        matches!(decided, Err(DomainError::ActorInactive)),
        "{decided:?}"
    );
}

#[test]
fn r_user_2_importing_users_needs_import_export_besides_manage_users() {
    // Given a Presenter of A with Manage Users but not Import/Export.
    const A_MANAGER: UserId = uid(0xA9);
    let mut store = three_sites();
    let mut a = store.sites[&A].clone();
    a.extend([
        added(A_MANAGER, "manager@alpha.org", Role::Presenter),
        SiteEvent::UserPermissionsSet {
            user_id: A_MANAGER,
            permissions: [PermissionFlag::ManageUsers].into_iter().collect(),
        },
    ]);
    store = store.site(a.clone());
    let import = ImportUsers {
        site_id: A,
        csv: "username,name,role\nann@alpha.org,Ann,presenter\n".into(),
    };
    // When they import, then they are refused, naming Import/Export
    // (seed 001: "can access the Import Users admin page").
    assert_eq!(
        store.when(&by(A, A_MANAGER), &import).1,
        Err(DomainError::NotPermitted {
            needed: PermissionFlag::ImportExport
        })
    );
    // Given Import/Export too, the same file is imported.
    a.push(SiteEvent::UserPermissionsSet {
        user_id: A_MANAGER,
        permissions: [PermissionFlag::ManageUsers, PermissionFlag::ImportExport]
            .into_iter()
            .collect(),
    });
    store = store.site(a);
    assert!(store.when(&by(A, A_MANAGER), &import).1.is_ok());
}

// ---------------------------------------------------------------------------
// R-SHARE-3: shared content is read-only, whatever site the partner names
// ---------------------------------------------------------------------------

#[test]
fn r_share_3_a_partner_editing_shared_content_is_read_only_whatever_site_it_names() {
    // Given A shares S1 (showing I) with B, and keeps H on no scorecard.
    const H: ObjectId = ObjectId(Uuid::from_u128(0xA1_09));
    let mut store = sharing_world();
    let mut a = store.contents[&A].clone();
    a.push(indicator(H));
    store = store.content(A, a);
    let edit = |site_id, object_id| ChangeObjectField {
        site_id,
        object_id,
        field: ObjectField::Description,
        value: "changed".into(),
    };
    let b_admin = by(B, B_ADMIN);
    // When B's admin names A, its own site B, or a third site C with A's
    // shared I: read-only each time.
    for named in [A, B, C] {
        let (_, decided) = store.when(&b_admin, &edit(named, I));
        assert_eq!(
            decided,
            Err(DomainError::SharedContentReadOnly),
            "{named:?}"
        );
    }
    // Naming its own site B, the reads find I's owner by its tag, then what
    // A shares with B.
    let (asked, _) = store.when(&b_admin, &edit(B, I));
    assert_eq!(
        asked,
        vec![
            Read::Site(B),
            Read::Content(B),
            Read::ObjectOwner(I),
            Read::Content(A),
            Read::Connection(A, B)
        ]
    );
    // What A does not share stays unknown to B: not found on B, another
    // site's on C, exactly as an object that does not exist.
    const NOWHERE: ObjectId = ObjectId(Uuid::from_u128(0xDEAD));
    for object in [H, NOWHERE] {
        assert_eq!(
            store.when(&b_admin, &edit(B, object)).1,
            Err(DomainError::ObjectNotFound(object))
        );
        assert_eq!(
            store.when(&b_admin, &edit(C, object)).1,
            Err(DomainError::CrossSite {
                actor_site: B,
                target_site: C
            })
        );
    }
    // A's own edit of I reads no owner: the object is where it names it.
    let (asked, decided) = store.when(&by(A, A_ADMIN), &edit(A, I));
    assert_eq!(asked, vec![Read::Site(A), Read::Content(A)]);
    assert!(decided.is_ok(), "{decided:?}");
}
