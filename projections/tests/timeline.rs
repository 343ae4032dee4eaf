//! The `timeline` read model (Q-6's sharing history) against real
//! PostgreSQL, fed by the real command service and kept by the projection
//! runtime.
//!
//! The world follows seed 000's example: a grant maker (GRANTS) shares
//! scorecard measures with two funded partners (NORTH, SOUTH) over
//! Partner Connect, and only what it chooses. Each test drives commands,
//! waits for the runtime to reach the log's head (no sleeps), and asks
//! the timeline queries. Tests are named after the rule they show where
//! they show one.

#[path = "../../commands/tests/common/mod.rs"]
mod common;

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;
use std::time::Duration;

use common::by;
use shareledger_commands::{ConsequenceWorker, Issued, Service};
use shareledger_core::catalog::{
    Directions, Link, Name, ObjectId, ObjectKind, RelationshipId, Role, ScorecardId, SiteCode,
    SiteId, UserId, Username,
};
use shareledger_core::content::{
    CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
    RemoveObjectFromScorecard,
};
use shareledger_core::site::{AddUser, DeactivateUser, ReactivateUser};
use shareledger_events::Actor;
use shareledger_projections::dashboard::{self, Dashboards};
use shareledger_projections::projection::SqlProjection;
use shareledger_projections::runtime::{ProjectionRuntime, RuntimeOptions};
use shareledger_projections::timeline::{
    link_timeline, scorecard_timeline, site_timeline, timeline, TimelineEntry, TimelinePage,
    TimelineQuery,
};
use shareledger_projections::ProjectionError;
use shareledger_tests::TestDb;
use uuid::Uuid;

/// A failure guard only: every wait ends on a condition.
const WAIT: Duration = Duration::from_secs(60);

// ---------------------------------------------------------------------------
// The world
// ---------------------------------------------------------------------------

/// A site and its Administration user.
#[derive(Debug, Clone, Copy)]
struct Site {
    id: SiteId,
    admin: UserId,
}

impl Site {
    fn by(&self) -> Issued {
        by(self.id, self.admin)
    }
}

/// The grant maker, its two funded partners, and what it shares.
struct World {
    db: TestDb,
    service: Service,
    /// Always `Some` but while a test restarts it.
    runtime: Option<ProjectionRuntime>,
    grants: Site,
    north: Site,
    south: Site,
    /// GRANTS's "Shared measures", shared with both partners.
    measures: ScorecardId,
    /// GRANTS's "North programs", shared with NORTH only.
    programs: ScorecardId,
    /// An Indicator on "Shared measures".
    literacy: ObjectId,
    /// Who is who, for readable assertions.
    people: HashMap<Uuid, &'static str>,
    codes: HashMap<Uuid, &'static str>,
}

async fn site(service: &Service, code: &'static str) -> Site {
    let (id, admin) = common::site(service, code).await;
    Site { id, admin }
}

fn name(raw: &str) -> Name {
    Name::parse(raw).unwrap()
}

async fn create_scorecard(service: &Service, site: Site, title: &str) -> ScorecardId {
    let scorecard_id = ScorecardId::new();
    service
        .execute(
            &site.by(),
            CreateScorecard {
                site_id: site.id,
                scorecard_id,
                name: name(title),
            },
        )
        .await
        .unwrap();
    scorecard_id
}

fn link(from: Site, to: Site) -> Link {
    Link {
        from: from.id,
        to: to.id,
    }
}

/// Seed 000's grant maker: GRANTS offers its data to NORTH and SOUTH, who
/// approve; it shares both its scorecards with NORTH at once ("Edit
/// Scorecards") and "Shared measures" alone with SOUTH.
async fn grant_maker(options: RuntimeOptions, with_dashboards: bool) -> World {
    let db = TestDb::with_pool_size(16).await;
    let service = Service::new(db.store());
    let grants = site(&service, "GRANTS").await;
    let north = site(&service, "NORTH").await;
    let south = site(&service, "SOUTH").await;
    let measures = create_scorecard(&service, grants, "Shared measures").await;
    let programs = create_scorecard(&service, grants, "North programs").await;
    let literacy = ObjectId::new();
    service
        .execute(
            &grants.by(),
            CreateObject {
                site_id: grants.id,
                object_id: literacy,
                kind: ObjectKind::Indicator,
                name: name("Literacy rate"),
                container: None,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &grants.by(),
            PlaceObjectOnScorecard {
                site_id: grants.id,
                object_id: literacy,
                scorecard_id: measures,
            },
        )
        .await
        .unwrap();
    for (partner, code) in [(north, "NORTH"), (south, "SOUTH")] {
        service
            .execute(
                &grants.by(),
                shareledger_core::connection::RequestConnection {
                    site_id: grants.id,
                    partner_code: SiteCode::parse(code).unwrap(),
                    directions: Directions::Offer,
                },
            )
            .await
            .unwrap();
        service
            .execute(
                &partner.by(),
                shareledger_core::connection::ApproveConnection {
                    site_id: partner.id,
                    partner: grants.id,
                },
            )
            .await
            .unwrap();
    }
    service
        .execute(
            &grants.by(),
            shareledger_core::connection::SetSharedScorecards {
                site_id: link(grants, north).from,
                partner: link(grants, north).to,
                scorecards: BTreeSet::from([measures, programs]),
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &grants.by(),
            shareledger_core::connection::ShareScorecard {
                site_id: link(grants, south).from,
                partner: link(grants, south).to,
                scorecard_id: measures,
            },
        )
        .await
        .unwrap();
    let mut projections: Vec<Arc<dyn SqlProjection>> = vec![timeline()];
    if with_dashboards {
        projections.push(Arc::new(Dashboards::default()));
    }
    let runtime = ProjectionRuntime::start(db.store(), projections, options)
        .await
        .unwrap();
    let people = HashMap::from([
        (grants.admin.0, "GRANTS admin"),
        (north.admin.0, "NORTH admin"),
        (south.admin.0, "SOUTH admin"),
    ]);
    let codes = HashMap::from([
        (grants.id.0, "GRANTS"),
        (north.id.0, "NORTH"),
        (south.id.0, "SOUTH"),
    ]);
    let world = World {
        db,
        service,
        runtime: Some(runtime),
        grants,
        north,
        south,
        measures,
        programs,
        literacy,
        people,
        codes,
    };
    world.caught_up().await;
    world
}

impl World {
    fn runtime(&self) -> &ProjectionRuntime {
        self.runtime.as_ref().expect("the runtime runs")
    }

    /// Waits until the runtime has applied the whole log.
    async fn caught_up(&self) {
        let head = self.db.store().head_position().await.unwrap();
        self.runtime().wait_for(head, WAIT).await.unwrap();
    }

    /// Who an actor is, readably.
    fn who(&self, actor: &Option<Actor>) -> String {
        match actor {
            Some(Actor::User { user_id, site_id }) => {
                let person = self.people.get(user_id).copied().unwrap_or("a user");
                let code = self.codes.get(site_id).copied().unwrap_or("?");
                assert!(person.starts_with(code), "{person} acts for {code}");
                person.to_owned()
            }
            Some(Actor::System) => "system".to_owned(),
            Some(Actor::Operator { name }) => format!("operator {name}"),
            None => "nobody".to_owned(),
        }
    }

    fn code(&self, site: Option<SiteId>) -> &'static str {
        site.map_or("-", |s| self.codes.get(&s.0).copied().unwrap_or("?"))
    }

    /// (event type, command, actor, partner) of each entry.
    fn lines(&self, entries: &[TimelineEntry]) -> Vec<(String, String, String, &'static str)> {
        entries
            .iter()
            .map(|e| {
                (
                    e.event_type.clone(),
                    e.command.clone(),
                    self.who(&e.actor),
                    self.code(e.partner),
                )
            })
            .collect()
    }

    async fn site(&self, site: Site, query: &TimelineQuery) -> Vec<TimelineEntry> {
        site_timeline(self.db.pool(), site.id, query)
            .await
            .unwrap()
            .entries
    }

    async fn whole_site(&self, site: Site) -> Vec<TimelineEntry> {
        self.site(site, &all()).await
    }

    /// NORTH places GRANTS's Literacy rate on a scorecard of its own (a
    /// relationship, R-SHARE-4).
    async fn north_builds_on_literacy(&self) -> (ScorecardId, RelationshipId) {
        let results = create_scorecard(&self.service, self.north, "Our results").await;
        let relationship_id = RelationshipId::new();
        self.service
            .execute(
                &self.north.by(),
                LinkSharedObject {
                    site_id: self.north.id,
                    relationship_id,
                    scorecard_id: results,
                    origin_site: self.grants.id,
                    object_id: self.literacy,
                },
            )
            .await
            .unwrap();
        (results, relationship_id)
    }

    /// NORTH revokes GRANTS→NORTH under idempotency key `key`.
    async fn north_revokes(&self, key: Uuid) {
        let issued = Issued {
            key,
            ..self.north.by()
        };
        self.service
            .execute(
                &issued,
                shareledger_core::connection::RevokeSharing {
                    site_id: self.north.id,
                    from: link(self.grants, self.north).from,
                    to: link(self.grants, self.north).to,
                },
            )
            .await
            .unwrap();
    }
}

/// Everything, in one page.
fn all() -> TimelineQuery {
    TimelineQuery {
        limit: 1_000,
        ..TimelineQuery::default()
    }
}

fn line(
    event_type: &str,
    command: &str,
    who: &str,
    partner: &'static str,
) -> (String, String, String, &'static str) {
    (event_type.into(), command.into(), who.into(), partner)
}

/// The scorecards `SetSharedScorecards` shares, in the order it writes them.
fn in_id_order(scorecards: [ScorecardId; 2]) -> Vec<Option<ScorecardId>> {
    let mut sorted = scorecards.to_vec();
    sorted.sort();
    sorted.into_iter().map(Some).collect()
}

// ---------------------------------------------------------------------------
// (a) A grant maker shares with two funded partners
// ---------------------------------------------------------------------------

#[tokio::test]
async fn q6_a_grant_maker_and_its_partners_see_their_sharing_history() {
    let w = grant_maker(RuntimeOptions::default(), false).await;
    let op = "operator tests";

    let north = w.whole_site(w.north).await;
    assert_eq!(
        w.lines(&north),
        vec![
            line("SiteRegistered", "RegisterSite", op, "-"),
            line("UserAdded", "AddUser", op, "-"),
            line(
                "ConnectionRequested",
                "RequestConnection",
                "GRANTS admin",
                "GRANTS"
            ),
            line(
                "LinksActivated",
                "ApproveConnection",
                "NORTH admin",
                "GRANTS"
            ),
            line(
                "ScorecardShared",
                "SetSharedScorecards",
                "GRANTS admin",
                "GRANTS"
            ),
            line(
                "ScorecardShared",
                "SetSharedScorecards",
                "GRANTS admin",
                "GRANTS"
            ),
        ]
    );
    assert_eq!(
        north[4..]
            .iter()
            .map(|e| e.scorecard_id)
            .collect::<Vec<_>>(),
        in_id_order([w.measures, w.programs])
    );
    assert_eq!(
        north[2].links,
        vec![link(w.grants, w.north)],
        "an offer names one direction"
    );
    assert_eq!(
        north[4].actor,
        Some(Actor::User {
            user_id: w.grants.admin.0,
            site_id: w.grants.id.0
        })
    );
    assert_eq!(
        north[4].correlation_id, north[5].correlation_id,
        "one command"
    );
    assert!(
        north[4].summary.contains("GRANTS shared"),
        "{}",
        north[4].summary
    );
    for e in &north {
        assert_eq!(e.site, w.north.id);
        assert_eq!(e.causation_id, None);
        assert!(e.consequences.is_empty());
        assert!(e.correlation_id.is_some());
    }
    assert!(north.windows(2).all(|p| p[0].position < p[1].position));

    let south = w.whole_site(w.south).await;
    assert_eq!(
        w.lines(&south),
        vec![
            line("SiteRegistered", "RegisterSite", op, "-"),
            line("UserAdded", "AddUser", op, "-"),
            line(
                "ConnectionRequested",
                "RequestConnection",
                "GRANTS admin",
                "GRANTS"
            ),
            line(
                "LinksActivated",
                "ApproveConnection",
                "SOUTH admin",
                "GRANTS"
            ),
            line(
                "ScorecardShared",
                "ShareScorecard",
                "GRANTS admin",
                "GRANTS"
            ),
        ]
    );
    assert_eq!(south[4].scorecard_id, Some(w.measures));

    let grants = w.whole_site(w.grants).await;
    assert_eq!(
        w.lines(&grants),
        vec![
            line("SiteRegistered", "RegisterSite", op, "-"),
            line("UserAdded", "AddUser", op, "-"),
            line("ScorecardCreated", "CreateScorecard", "GRANTS admin", "-"),
            line("ScorecardCreated", "CreateScorecard", "GRANTS admin", "-"),
            line(
                "ObjectPlacedOnScorecard",
                "PlaceObjectOnScorecard",
                "GRANTS admin",
                "-"
            ),
            line(
                "ConnectionRequested",
                "RequestConnection",
                "GRANTS admin",
                "NORTH"
            ),
            line(
                "LinksActivated",
                "ApproveConnection",
                "NORTH admin",
                "NORTH"
            ),
            line(
                "ConnectionRequested",
                "RequestConnection",
                "GRANTS admin",
                "SOUTH"
            ),
            line(
                "LinksActivated",
                "ApproveConnection",
                "SOUTH admin",
                "SOUTH"
            ),
            line(
                "ScorecardShared",
                "SetSharedScorecards",
                "GRANTS admin",
                "NORTH"
            ),
            line(
                "ScorecardShared",
                "SetSharedScorecards",
                "GRANTS admin",
                "NORTH"
            ),
            line("ScorecardShared", "ShareScorecard", "GRANTS admin", "SOUTH"),
        ]
    );
    // One event, one row per involved site: the same event in both timelines.
    assert_eq!(grants[11].event_id, south[4].event_id);
    assert_eq!(grants[11].position, south[4].position);
    assert_eq!(grants[11].site, w.grants.id);
    assert_eq!(south[4].site, w.south.id);
    assert_eq!(grants[4].object_id, Some(w.literacy));

    // Partner filter.
    let with_south = w
        .site(
            w.grants,
            &TimelineQuery {
                partner: Some(w.south.id),
                ..all()
            },
        )
        .await;
    assert_eq!(
        w.lines(&with_south),
        vec![
            line(
                "ConnectionRequested",
                "RequestConnection",
                "GRANTS admin",
                "SOUTH"
            ),
            line(
                "LinksActivated",
                "ApproveConnection",
                "SOUTH admin",
                "SOUTH"
            ),
            line("ScorecardShared", "ShareScorecard", "GRANTS admin", "SOUTH"),
        ]
    );
    let north_with_south = w
        .site(
            w.north,
            &TimelineQuery {
                partner: Some(w.south.id),
                ..all()
            },
        )
        .await;
    assert!(north_with_south.is_empty(), "NORTH and SOUTH share nothing");

    // Time range: from NORTH's approval (included) to SOUTH's share (excluded).
    let range = TimelineQuery {
        from: Some(grants[6].recorded_at),
        to: Some(grants[11].recorded_at),
        ..all()
    };
    assert!(grants[5].recorded_at < grants[6].recorded_at);
    let in_range = w.site(w.grants, &range).await;
    assert_eq!(in_range, grants[6..11].to_vec());
    let in_range_with_north = w
        .site(
            w.grants,
            &TimelineQuery {
                partner: Some(w.north.id),
                ..range.clone()
            },
        )
        .await;
    assert_eq!(
        in_range_with_north
            .iter()
            .map(|e| e.position)
            .collect::<Vec<_>>(),
        vec![grants[6].position, grants[9].position, grants[10].position]
    );

    // The link, both directions, from either side.
    let pair = link_timeline(w.db.pool(), w.grants.id, w.north.id, &all())
        .await
        .unwrap()
        .entries;
    assert_eq!(
        pair.iter().map(|e| e.event_id).collect::<Vec<_>>(),
        [&grants[5..7], &grants[9..11]]
            .concat()
            .iter()
            .map(|e| e.event_id)
            .collect::<Vec<_>>()
    );
    let seen_from_north = link_timeline(w.db.pool(), w.north.id, w.grants.id, &all())
        .await
        .unwrap()
        .entries;
    assert_eq!(seen_from_north, north[2..].to_vec());

    // The scorecard: created, an object placed, shared with each partner.
    let measures = scorecard_timeline(w.db.pool(), w.measures, &all())
        .await
        .unwrap()
        .entries;
    assert_eq!(
        w.lines(&measures),
        vec![
            line("ScorecardCreated", "CreateScorecard", "GRANTS admin", "-"),
            line(
                "ObjectPlacedOnScorecard",
                "PlaceObjectOnScorecard",
                "GRANTS admin",
                "-"
            ),
            line(
                "ScorecardShared",
                "SetSharedScorecards",
                "GRANTS admin",
                "NORTH"
            ),
            line("ScorecardShared", "ShareScorecard", "GRANTS admin", "SOUTH"),
        ]
    );
    let programs = scorecard_timeline(w.db.pool(), w.programs, &all())
        .await
        .unwrap()
        .entries;
    assert_eq!(programs.len(), 2, "created, shared with NORTH");
    assert!(scorecard_timeline(w.db.pool(), ScorecardId::new(), &all())
        .await
        .unwrap()
        .entries
        .is_empty());
}

// ---------------------------------------------------------------------------
// (b) A partner revokes; a new request starts from nothing shared
// ---------------------------------------------------------------------------

/// Checks the consequences of NORTH's revoke, as listed in one timeline.
fn assert_revoke_consequences(
    w: &World,
    revoke: &TimelineEntry,
    key: Uuid,
    relationship: RelationshipId,
) {
    assert_eq!(revoke.event_type, "LinkRevoked");
    assert_eq!(revoke.command, "RevokeSharing");
    assert_eq!(w.who(&revoke.actor), "NORTH admin");
    // The actor is named: their username and their site's code.
    assert_eq!(revoke.actor_username.as_deref(), Some("admin@north.org"));
    assert_eq!(revoke.actor_site_code.as_deref(), Some("NORTH"));
    assert_eq!(revoke.correlation_id, Some(key));
    assert_eq!(revoke.links, vec![link(w.grants, w.north)]);
    let consequences = &revoke.consequences;
    assert_eq!(
        consequences
            .iter()
            .map(|c| c.event_type.as_str())
            .collect::<Vec<_>>(),
        vec![
            "ScorecardUnshared",
            "ScorecardUnshared",
            "RelationshipRemoved"
        ]
    );
    assert_eq!(
        consequences[..2]
            .iter()
            .map(|c| c.scorecard_id)
            .collect::<BTreeSet<_>>(),
        BTreeSet::from([Some(w.measures), Some(w.programs)])
    );
    assert_eq!(consequences[2].relationship_id, Some(relationship));
    assert_eq!(consequences[2].object_id, Some(w.literacy));
    for c in consequences {
        assert_eq!(c.actor, Some(Actor::System));
        assert_eq!(c.actor_username, None);
        assert_eq!(c.command, "consequence of RevokeSharing");
        assert_eq!(c.causation_id, Some(revoke.event_id));
        assert_eq!(c.correlation_id, Some(key));
        assert_eq!(c.site, revoke.site);
        assert_eq!(c.partner, revoke.partner);
        assert_eq!(c.links, vec![link(w.grants, w.north)]);
        assert!(c.position > revoke.position);
        assert!(c.consequences.is_empty());
    }
}

#[tokio::test]
async fn r_conn_4_a_revoke_lists_what_it_removed_and_a_new_request_starts_from_nothing() {
    let w = grant_maker(RuntimeOptions::default(), true).await;
    let (results, relationship) = w.north_builds_on_literacy().await;
    let key = Uuid::new_v4();
    w.north_revokes(key).await;
    // Later, NORTH asks again (and offers its own data); GRANTS approves.
    w.service
        .execute(
            &w.north.by(),
            shareledger_core::connection::RequestConnection {
                site_id: w.north.id,
                partner_code: SiteCode::parse("GRANTS").unwrap(),
                directions: Directions::Both,
            },
        )
        .await
        .unwrap();
    w.service
        .execute(
            &w.grants.by(),
            shareledger_core::connection::ApproveConnection {
                site_id: w.grants.id,
                partner: w.north.id,
            },
        )
        .await
        .unwrap();
    w.caught_up().await;

    let north = w.whole_site(w.north).await;
    assert_eq!(
        w.lines(&north[6..]),
        vec![
            line("ScorecardCreated", "CreateScorecard", "NORTH admin", "-"),
            line(
                "SharedObjectLinked",
                "LinkSharedObject",
                "NORTH admin",
                "GRANTS"
            ),
            line("LinkRevoked", "RevokeSharing", "NORTH admin", "GRANTS"),
            line(
                "ConnectionRequested",
                "RequestConnection",
                "NORTH admin",
                "GRANTS"
            ),
            line(
                "LinksActivated",
                "ApproveConnection",
                "GRANTS admin",
                "GRANTS"
            ),
        ]
    );
    assert_eq!(north[7].scorecard_id, Some(results));
    assert_eq!(north[7].relationship_id, Some(relationship));
    assert_eq!(north[7].links, vec![link(w.grants, w.north)]);
    assert_revoke_consequences(&w, &north[8], key, relationship);
    assert_eq!(
        north[9].links,
        vec![link(w.north, w.grants), link(w.grants, w.north)]
    );
    assert!(
        north.iter().all(|e| e.causation_id.is_none()),
        "consequences are listed under their cause only"
    );

    // The grant maker's timeline shows the same revoke, seen from its side.
    let grants = w.whole_site(w.grants).await;
    let revoke = grants
        .iter()
        .find(|e| e.event_type == "LinkRevoked")
        .unwrap();
    assert_eq!(revoke.partner, Some(w.north.id));
    assert_revoke_consequences(&w, revoke, key, relationship);
    assert_eq!(revoke.event_id, north[8].event_id);
    // And so does the link's.
    let pair = link_timeline(w.db.pool(), w.grants.id, w.north.id, &all())
        .await
        .unwrap()
        .entries;
    assert_eq!(
        w.lines(&pair),
        vec![
            line(
                "ConnectionRequested",
                "RequestConnection",
                "GRANTS admin",
                "NORTH"
            ),
            line(
                "LinksActivated",
                "ApproveConnection",
                "NORTH admin",
                "NORTH"
            ),
            line(
                "ScorecardShared",
                "SetSharedScorecards",
                "GRANTS admin",
                "NORTH"
            ),
            line(
                "ScorecardShared",
                "SetSharedScorecards",
                "GRANTS admin",
                "NORTH"
            ),
            line(
                "SharedObjectLinked",
                "LinkSharedObject",
                "NORTH admin",
                "NORTH"
            ),
            line("LinkRevoked", "RevokeSharing", "NORTH admin", "NORTH"),
            line(
                "ConnectionRequested",
                "RequestConnection",
                "NORTH admin",
                "NORTH"
            ),
            line(
                "LinksActivated",
                "ApproveConnection",
                "GRANTS admin",
                "NORTH"
            ),
        ]
    );
    assert_revoke_consequences(&w, &pair[5], key, relationship);
    // Nothing shared since the new request: the link is active, its set empty.
    assert!(pair[6..].iter().all(|e| e.event_type != "ScorecardShared"));
    let shares = dashboard::shared_scorecards(w.db.pool(), w.grants.id)
        .await
        .unwrap();
    let with_north = shares.iter().find(|p| p.partner == w.north.id).unwrap();
    assert!(with_north.scorecards.is_empty(), "{with_north:?}");

    // In the scorecard's timeline the revoke is not an entry: the unshare
    // stands alone, attributed to the system, naming the command behind it.
    let measures = scorecard_timeline(w.db.pool(), w.measures, &all())
        .await
        .unwrap()
        .entries;
    let unshare = measures.last().unwrap();
    assert_eq!(unshare.event_type, "ScorecardUnshared");
    assert_eq!(unshare.command, "consequence of RevokeSharing");
    assert_eq!(unshare.actor, Some(Actor::System));
    assert_eq!(unshare.causation_id, Some(north[8].event_id));
    assert!(unshare.summary.contains("revoked"), "{}", unshare.summary);

    // A partner filter keeps the revoke with its consequences.
    let with_north = w
        .site(
            w.grants,
            &TimelineQuery {
                partner: Some(w.north.id),
                from: Some(revoke.recorded_at),
                ..all()
            },
        )
        .await;
    assert_eq!(with_north[0], *revoke);
}

#[tokio::test]
async fn r_share_4_removals_by_the_consequence_worker_nest_under_their_trigger() {
    let w = grant_maker(RuntimeOptions::default(), false).await;
    let (_, relationship) = w.north_builds_on_literacy().await;
    // GRANTS takes Literacy rate off "Shared measures": NORTH loses it.
    let removed = w
        .service
        .execute(
            &w.grants.by(),
            RemoveObjectFromScorecard {
                site_id: w.grants.id,
                object_id: w.literacy,
                scorecard_id: w.measures,
            },
        )
        .await
        .unwrap();
    let worker = ConsequenceWorker::new(w.service.clone());
    worker.run(Some(removed.last_position)).await.unwrap();
    w.caught_up().await;

    let grants = w.whole_site(w.grants).await;
    let removal = grants.last().unwrap();
    assert_eq!(removal.event_type, "ObjectRemovedFromScorecard");
    assert_eq!(removal.command, "RemoveObjectFromScorecard");
    assert_eq!(removal.partner, None);
    assert_eq!(removal.consequences.len(), 1);
    let lost = &removal.consequences[0];
    assert_eq!(lost.event_type, "RelationshipRemoved");
    assert_eq!(lost.command, "consequence of RemoveObjectFromScorecard");
    assert_eq!(lost.actor, Some(Actor::System));
    assert_eq!(lost.causation_id, Some(removal.event_id));
    assert_eq!(lost.relationship_id, Some(relationship));
    assert_eq!(lost.partner, Some(w.north.id));
    // Filtering GRANTS's timeline by NORTH keeps the removal, for what it
    // caused to NORTH.
    let with_north = w
        .site(
            w.grants,
            &TimelineQuery {
                partner: Some(w.north.id),
                ..all()
            },
        )
        .await;
    assert_eq!(with_north.last(), Some(removal));
    // NORTH's timeline does not hold GRANTS's removal: the loss stands alone.
    let north = w.whole_site(w.north).await;
    let alone = north.last().unwrap();
    assert_eq!(alone.event_id, lost.event_id);
    assert_eq!(alone.command, "consequence of RemoveObjectFromScorecard");
    assert_eq!(alone.partner, Some(w.grants.id));
    assert!(
        alone.summary.contains("no longer shared"),
        "{}",
        alone.summary
    );
}

// ---------------------------------------------------------------------------
// (c) Users; pagination; cursors; rebuild
// ---------------------------------------------------------------------------

/// Every page of `site`'s timeline for `query`, `limit` entries at a time.
async fn paged(w: &World, site: Site, query: &TimelineQuery, limit: u32) -> Vec<TimelineEntry> {
    let mut out = Vec::new();
    let mut after = None;
    loop {
        let page: TimelinePage = site_timeline(
            w.db.pool(),
            site.id,
            &TimelineQuery {
                after,
                limit,
                ..query.clone()
            },
        )
        .await
        .unwrap();
        assert!(page.entries.len() <= limit as usize);
        out.extend(page.entries);
        match page.next {
            Some(next) => after = Some(next),
            None => return out,
        }
    }
}

/// Every timeline of the world, as JSON.
async fn answers(w: &World) -> serde_json::Value {
    let pool = w.db.pool();
    let mut out = Vec::new();
    for site in [w.grants, w.north, w.south] {
        out.push(
            serde_json::to_value(site_timeline(pool, site.id, &all()).await.unwrap()).unwrap(),
        );
        for partner in [w.grants, w.north, w.south] {
            let q = TimelineQuery {
                partner: Some(partner.id),
                limit: 3,
                ..TimelineQuery::default()
            };
            out.push(
                serde_json::to_value(site_timeline(pool, site.id, &q).await.unwrap()).unwrap(),
            );
            out.push(
                serde_json::to_value(
                    link_timeline(pool, site.id, partner.id, &all())
                        .await
                        .unwrap(),
                )
                .unwrap(),
            );
        }
    }
    for scorecard in [w.measures, w.programs] {
        out.push(
            serde_json::to_value(scorecard_timeline(pool, scorecard, &all()).await.unwrap())
                .unwrap(),
        );
    }
    serde_json::Value::Array(out)
}

#[tokio::test]
async fn r_user_6_deactivation_shows_with_its_admin_pages_cover_everything_and_a_rebuild_agrees() {
    // Small batches: appends are split across batches, so commands decided
    // from several events (SetSharedScorecards, consequences) are completed
    // across them.
    let w = grant_maker(
        RuntimeOptions {
            batch_size: 3,
            ..RuntimeOptions::default()
        },
        false,
    )
    .await;
    let (_, relationship) = w.north_builds_on_literacy().await;
    let key = Uuid::new_v4();
    w.north_revokes(key).await;
    let officer = UserId::new();
    w.service
        .execute(
            &w.north.by(),
            AddUser {
                site_id: w.north.id,
                user_id: officer,
                username: Username::parse("officer@north.org").unwrap(),
                name: name("Program officer"),
                role: Role::DataEntry,
                email: None,
            },
        )
        .await
        .unwrap();
    w.service
        .execute(
            &w.north.by(),
            DeactivateUser {
                site_id: w.north.id,
                user_id: officer,
            },
        )
        .await
        .unwrap();
    w.service
        .execute(
            &w.north.by(),
            ReactivateUser {
                site_id: w.north.id,
                user_id: officer,
            },
        )
        .await
        .unwrap();
    w.caught_up().await;

    let north = w.whole_site(w.north).await;
    let users = &north[north.len() - 3..];
    assert_eq!(
        w.lines(users),
        vec![
            line("UserAdded", "AddUser", "NORTH admin", "-"),
            line("UserDeactivated", "DeactivateUser", "NORTH admin", "-"),
            line("UserReactivated", "ReactivateUser", "NORTH admin", "-"),
        ]
    );
    for e in users {
        assert_eq!(e.user_id, Some(officer));
        assert_eq!(
            e.actor,
            Some(Actor::User {
                user_id: w.north.admin.0,
                site_id: w.north.id.0
            })
        );
    }
    assert_eq!(
        users[0].summary, "user officer@north.org added to NORTH as data entry",
        "a role is said in words"
    );
    assert_eq!(users[1].summary, "officer@north.org deactivated");
    assert_eq!(users[2].summary, "officer@north.org reactivated");
    let revoke = north
        .iter()
        .find(|e| e.event_type == "LinkRevoked")
        .unwrap();
    assert_revoke_consequences(&w, revoke, key, relationship);

    // Pages of every size list every entry once, in order.
    for (site, partner) in [(w.grants, w.north), (w.north, w.grants)] {
        let whole = w.whole_site(site).await;
        for limit in [1, 2, 3, 5] {
            assert_eq!(paged(&w, site, &all(), limit).await, whole, "limit {limit}");
        }
        let with_partner = TimelineQuery {
            partner: Some(partner.id),
            ..all()
        };
        let filtered = w.site(site, &with_partner).await;
        assert!(filtered.len() > 4 && filtered.len() < whole.len());
        assert_eq!(paged(&w, site, &with_partner, 2).await, filtered);
    }
    let first = site_timeline(
        w.db.pool(),
        w.grants.id,
        &TimelineQuery {
            limit: 4,
            ..TimelineQuery::default()
        },
    )
    .await
    .unwrap();
    assert_eq!(first.entries.len(), 4);
    let cursor = first.next.clone().unwrap();

    // Bad cursors: made up, or given out by another timeline.
    for bad in [
        "nonsense".to_owned(),
        String::new(),
        format!("{cursor}zz"),
        cursor.to_uppercase(),
    ] {
        let answer = site_timeline(
            w.db.pool(),
            w.grants.id,
            &TimelineQuery {
                after: Some(bad.clone()),
                ..all()
            },
        )
        .await;
        assert!(
            matches!(answer, Err(ProjectionError::BadCursor(ref c)) if *c == bad),
            "{bad:?}: {answer:?}"
        );
    }
    let elsewhere = TimelineQuery {
        after: Some(cursor.clone()),
        ..all()
    };
    assert!(matches!(
        site_timeline(w.db.pool(), w.north.id, &elsewhere).await,
        Err(ProjectionError::BadCursor(_))
    ));
    assert!(matches!(
        link_timeline(w.db.pool(), w.grants.id, w.north.id, &elsewhere).await,
        Err(ProjectionError::BadCursor(_))
    ));
    assert!(matches!(
        scorecard_timeline(w.db.pool(), w.measures, &elsewhere).await,
        Err(ProjectionError::BadCursor(_))
    ));

    // A rebuild (other batch boundaries) gives the same answers.
    let before = answers(&w).await;
    let generation = w.runtime().rebuild("timeline").await.unwrap();
    w.runtime()
        .wait_for_generation("timeline", generation, WAIT)
        .await
        .unwrap();
    w.caught_up().await;
    assert_eq!(answers(&w).await, before);

    // And so does one applied an event at a time, by a new process.
    let mut w = w;
    w.runtime.take().unwrap().shutdown().await.unwrap();
    w.runtime = Some(
        ProjectionRuntime::start(
            w.db.store(),
            vec![timeline()],
            RuntimeOptions {
                batch_size: 1,
                ..RuntimeOptions::default()
            },
        )
        .await
        .unwrap(),
    );
    let generation = w.runtime().rebuild("timeline").await.unwrap();
    w.runtime()
        .wait_for_generation("timeline", generation, WAIT)
        .await
        .unwrap();
    w.caught_up().await;
    assert_eq!(answers(&w).await, before);
    // One event per batch: "Edit Scorecards" is still one command.
    let north = w.whole_site(w.north).await;
    assert_eq!(
        north
            .iter()
            .filter(|e| e.command == "SetSharedScorecards")
            .count(),
        2
    );
}
