//! The PostgreSQL read models (`dashboards`, `access_tables`) against real
//! PostgreSQL, fed by the real command service.
//!
//! Each test drives commands through `shareledger_commands::Service`, then
//! builds both read models from the whole log into a schema of its own
//! (create the tables, apply every event in one transaction) and points the
//! `rm.<table>` views at it, as the runtime does for the live generation;
//! then asks the Q-5 queries and `level_sql`. Tests are named after the rule
//! they prove where they prove one.

#[path = "../../commands/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;

use common::{by, operator};
use shareledger_commands::{Issued, Outcome, Service};
use shareledger_core::catalog::{
    AccessLevel, Directions, Link, Name, ObjectId, ObjectKind, PermissionFlag, RelationshipId,
    Role, ScorecardId, SeatLimit, SiteCode, SiteId, UserId, Username,
};
use shareledger_core::connection::{
    ApproveConnection, CancelConnectionRequest, DenyConnection, RequestConnection, RevokeSharing,
    SetSharedScorecards, ShareScorecard, UnshareScorecard,
};
use shareledger_core::content::{
    CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
    RemoveObjectFromScorecard, UseSharedMeasureInAggregation,
};
use shareledger_core::site::{
    AddUser, ChangeUserRole, ConfigureSelfRegistration, DeactivateUser, GrantScorecardAccess,
    HideOrganizationSettings, ReactivateUser, RegisterSite, RequireTwoFactor,
    RevokeScorecardAccess, SetPermissionFlags, SetSeatLimit,
};
use shareledger_events::store::{PgEventStore, PositionFrom};
use shareledger_events::{Actor, Direction, RecordedEvent};
use shareledger_projections::access::Target;
use shareledger_projections::dashboard::{
    self, level_sql, AccessTables, Dashboards, LinkDirection, LinkStatus, UserSort, UsersQuery,
};
use shareledger_projections::ProjectionError;
use shareledger_tests::TestDb;
use sqlx::PgPool;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Building the read models
// ---------------------------------------------------------------------------

/// The schema the tests build the read models in.
const SCHEMA: &str = "dash_test_models";

async fn whole_log(store: &PgEventStore) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    loop {
        let from = PositionFrom::At(events.len() as u64 + 1);
        let page = store
            .read_all(Direction::Forwards, from, 5_000)
            .await
            .unwrap();
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

/// Builds both read models from the whole log, applying it `batch` events
/// at a time in one transaction, and points the `rm.<table>` views at them.
async fn project_in_batches(db: &TestDb, batch: usize) -> PgPool {
    let events = whole_log(&db.store()).await;
    let pool = db.pool().clone();
    let mut tx = pool.begin().await.unwrap();
    sqlx::query(&format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"))
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query(&format!("CREATE SCHEMA {SCHEMA}"))
        .execute(&mut *tx)
        .await
        .unwrap();
    sqlx::query("CREATE SCHEMA IF NOT EXISTS rm")
        .execute(&mut *tx)
        .await
        .unwrap();
    for projection in dashboard::all() {
        projection.create_tables(&mut tx, SCHEMA).await.unwrap();
        for chunk in events.chunks(batch.max(1)) {
            projection.apply(&mut tx, SCHEMA, chunk).await.unwrap();
        }
    }
    for table in Dashboards::TABLES.iter().chain(AccessTables::TABLES) {
        sqlx::query(&format!(
            "CREATE OR REPLACE VIEW rm.{table} AS SELECT * FROM {SCHEMA}.{table}"
        ))
        .execute(&mut *tx)
        .await
        .unwrap();
    }
    tx.commit().await.unwrap();
    pool
}

/// Builds both read models from the whole log in one batch.
async fn project(db: &TestDb) -> PgPool {
    project_in_batches(db, usize::MAX).await
}

/// Every row of every table of both models, as sorted text.
async fn dump(pool: &PgPool) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for table in Dashboards::TABLES.iter().chain(AccessTables::TABLES) {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT t::text FROM {SCHEMA}.{table} t ORDER BY 1"
        ))
        .fetch_all(pool)
        .await
        .unwrap();
        out.push((table.to_string(), rows));
    }
    out
}

// ---------------------------------------------------------------------------
// Driving the command service
// ---------------------------------------------------------------------------

fn code(raw: &str) -> SiteCode {
    SiteCode::parse(raw).unwrap()
}

fn name(raw: &str) -> Name {
    Name::parse(raw).unwrap()
}

/// A site and its Administration user (`admin@<code>.org`).
struct Site {
    id: SiteId,
    admin: UserId,
}

impl Site {
    fn by(&self) -> Issued {
        by(self.id, self.admin)
    }
}

async fn site(service: &Service, raw_code: &str) -> Site {
    let id = SiteId::new();
    service
        .execute(
            &operator(),
            RegisterSite {
                site_id: id,
                code: code(raw_code),
                name: name(&format!("{raw_code} site")),
                seat_limit: SeatLimit::new(20).unwrap(),
                parent: None,
            },
        )
        .await
        .unwrap();
    let admin = add_user(
        service,
        id,
        &format!("admin@{raw_code}.org"),
        "Admin",
        Role::Administration,
    )
    .await;
    Site { id, admin }
}

async fn add_user(
    service: &Service,
    site: SiteId,
    username: &str,
    full_name: &str,
    role: Role,
) -> UserId {
    let user_id = UserId::new();
    service
        .execute(
            &operator(),
            AddUser {
                site_id: site,
                user_id,
                username: Username::parse(username).unwrap(),
                name: name(full_name),
                role,
                email: None,
            },
        )
        .await
        .unwrap();
    user_id
}

async fn scorecard(service: &Service, site: &Site, title: &str) -> ScorecardId {
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

async fn object(
    service: &Service,
    site: &Site,
    kind: ObjectKind,
    container: Option<ObjectId>,
) -> ObjectId {
    let object_id = ObjectId::new();
    service
        .execute(
            &site.by(),
            CreateObject {
                site_id: site.id,
                object_id,
                kind,
                name: name("an object"),
                container,
            },
        )
        .await
        .unwrap();
    object_id
}

async fn place(service: &Service, site: &Site, object_id: ObjectId, scorecard_id: ScorecardId) {
    service
        .execute(
            &site.by(),
            PlaceObjectOnScorecard {
                site_id: site.id,
                object_id,
                scorecard_id,
            },
        )
        .await
        .unwrap();
}

async fn unplace(service: &Service, site: &Site, object_id: ObjectId, scorecard_id: ScorecardId) {
    service
        .execute(
            &site.by(),
            RemoveObjectFromScorecard {
                site_id: site.id,
                object_id,
                scorecard_id,
            },
        )
        .await
        .unwrap();
}

async fn request(service: &Service, from: &Site, to_code: &str, directions: Directions) {
    service
        .execute(
            &from.by(),
            RequestConnection {
                site_id: from.id,
                partner_code: code(to_code),
                directions,
            },
        )
        .await
        .unwrap();
}

/// `acting` approves what `partner` requested.
async fn approve(service: &Service, acting: &Site, partner: &Site) {
    service
        .execute(
            &acting.by(),
            ApproveConnection {
                site_id: acting.id,
                partner: partner.id,
            },
        )
        .await
        .unwrap();
}

/// `acting` denies what `partner` requested.
async fn deny(service: &Service, acting: &Site, partner: &Site) {
    service
        .execute(
            &acting.by(),
            DenyConnection {
                site_id: acting.id,
                partner: partner.id,
            },
        )
        .await
        .unwrap();
}

/// `acting` cancels its request to `partner`.
async fn cancel(service: &Service, acting: &Site, partner: &Site) {
    service
        .execute(
            &acting.by(),
            CancelConnectionRequest {
                site_id: acting.id,
                partner: partner.id,
            },
        )
        .await
        .unwrap();
}

/// `acting` (either end) revokes `link`.
async fn revoke(service: &Service, acting: &Site, link: Link) {
    service
        .execute(
            &acting.by(),
            RevokeSharing {
                site_id: acting.id,
                from: link.from,
                to: link.to,
            },
        )
        .await
        .unwrap();
}

async fn share(service: &Service, from: &Site, to: &Site, scorecard_id: ScorecardId) -> Outcome {
    service
        .execute(
            &from.by(),
            ShareScorecard {
                site_id: from.id,
                partner: to.id,
                scorecard_id,
            },
        )
        .await
        .unwrap()
}

async fn unshare(service: &Service, from: &Site, to: &Site, scorecard_id: ScorecardId) -> Outcome {
    service
        .execute(
            &from.by(),
            UnshareScorecard {
                site_id: from.id,
                partner: to.id,
                scorecard_id,
            },
        )
        .await
        .unwrap()
}

/// "Edit Scorecards": the whole set `from` shares with `to`.
async fn set_shared(
    service: &Service,
    from: &Site,
    to: &Site,
    scorecards: BTreeSet<ScorecardId>,
) -> Outcome {
    service
        .execute(
            &from.by(),
            SetSharedScorecards {
                site_id: from.id,
                partner: to.id,
                scorecards,
            },
        )
        .await
        .unwrap()
}

async fn grant(
    service: &Service,
    site: &Site,
    owner: SiteId,
    user_id: UserId,
    scorecard_id: ScorecardId,
    level: AccessLevel,
) {
    service
        .execute(
            &site.by(),
            GrantScorecardAccess {
                site_id: site.id,
                user_id,
                scorecard_id,
                level,
                owner_site: Some(owner),
            },
        )
        .await
        .unwrap();
}

async fn level(pool: &PgPool, user: UserId, target: Target) -> Option<AccessLevel> {
    level_sql(pool, user, target).await.unwrap()
}

fn sc(id: ScorecardId) -> Target {
    Target::Scorecard(id)
}

fn ob(id: ObjectId) -> Target {
    Target::Object(id)
}

// ---------------------------------------------------------------------------
// Q-5: connections, pending requests, shared scorecards
// ---------------------------------------------------------------------------

/// (direction, partner code, status) of each of `site`'s links.
async fn links_of(pool: &PgPool, site: SiteId) -> Vec<(LinkDirection, String, LinkStatus)> {
    dashboard::connections(pool, site, dashboard::LinkPage::default())
        .await
        .unwrap()
        .into_iter()
        .map(|c| (c.direction, c.partner_code.to_string(), c.status))
        .collect()
}

#[tokio::test]
async fn q5_connections_show_both_directions_with_status_through_their_life() {
    use LinkDirection::{Incoming, Outgoing};
    use LinkStatus::*;
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let a = site(&service, "ALPHA").await;
    let b = site(&service, "BETA").await;
    let c = site(&service, "GAMMA").await;

    request(&service, &a, "BETA", Directions::Both).await;
    let pool = project(&db).await;
    let seen_by_a = dashboard::connections(&pool, a.id, dashboard::LinkPage::default())
        .await
        .unwrap();
    assert_eq!(
        links_of(&pool, a.id).await,
        vec![
            (Outgoing, "BETA".into(), AwaitingApproval),
            (Incoming, "BETA".into(), AwaitingApproval)
        ]
    );
    for link in &seen_by_a {
        assert_eq!(link.requester, a.id);
        assert_eq!(link.requested_by_user, Some(a.admin));
        assert_eq!(link.partner, b.id);
        assert_eq!(link.decided_at, None);
    }
    assert_eq!(
        links_of(&pool, b.id).await,
        vec![
            (Outgoing, "ALPHA".into(), AwaitingApproval),
            (Incoming, "ALPHA".into(), AwaitingApproval)
        ]
    );
    assert!(links_of(&pool, c.id).await.is_empty());

    approve(&service, &b, &a).await;
    let pool = project(&db).await;
    assert_eq!(
        links_of(&pool, a.id).await,
        vec![
            (Outgoing, "BETA".into(), Active),
            (Incoming, "BETA".into(), Active)
        ]
    );
    for link in dashboard::connections(&pool, b.id, dashboard::LinkPage::default())
        .await
        .unwrap()
    {
        assert_eq!(link.decided_by_site, Some(b.id));
        assert_eq!(link.decided_by_user, Some(b.admin));
        assert!(link.decided_at.is_some());
    }

    // B revokes A→B: B→A stays active (R-CONN-4).
    revoke(
        &service,
        &b,
        Link {
            from: a.id,
            to: b.id,
        },
    )
    .await;
    let pool = project(&db).await;
    assert_eq!(
        links_of(&pool, a.id).await,
        vec![
            (Outgoing, "BETA".into(), Revoked),
            (Incoming, "BETA".into(), Active)
        ]
    );

    // Requested again, then denied; requested again, then cancelled.
    request(&service, &a, "BETA", Directions::Offer).await;
    let pool = project(&db).await;
    let again = dashboard::connections(&pool, a.id, dashboard::LinkPage::default())
        .await
        .unwrap();
    assert_eq!(again[0].status, AwaitingApproval);
    assert_eq!(
        again[0].decided_at, None,
        "a new request resets the decision"
    );
    deny(&service, &b, &a).await;
    let pool = project(&db).await;
    assert_eq!(
        links_of(&pool, b.id).await,
        vec![
            (Outgoing, "ALPHA".into(), Active),
            (Incoming, "ALPHA".into(), Denied)
        ]
    );
    request(&service, &a, "BETA", Directions::Offer).await;
    cancel(&service, &a, &b).await;
    // C offers to share with A.
    request(&service, &c, "ALPHA", Directions::Offer).await;
    let pool = project(&db).await;
    assert_eq!(
        links_of(&pool, a.id).await,
        vec![
            (Outgoing, "BETA".into(), Cancelled),
            (Incoming, "BETA".into(), Active),
            (Incoming, "GAMMA".into(), AwaitingApproval),
        ]
    );
    assert_eq!(
        links_of(&pool, c.id).await,
        vec![(Outgoing, "ALPHA".into(), AwaitingApproval)]
    );
    let last = dashboard::connections(&pool, c.id, dashboard::LinkPage::default())
        .await
        .unwrap();
    let stored = db
        .store()
        .read_events_by_id(&[last[0].last_event_id])
        .await
        .unwrap();
    assert_eq!(stored[0].event_type, "ConnectionRequested");
    assert_eq!(stored[0].global_position, last[0].last_position);
}

#[tokio::test]
async fn r_conn_5_mutual_requests_show_active_at_once() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let a = site(&service, "ALPHA").await;
    let b = site(&service, "BETA").await;
    request(&service, &a, "BETA", Directions::Both).await;
    request(&service, &b, "ALPHA", Directions::Both).await;
    let pool = project(&db).await;
    assert_eq!(
        links_of(&pool, a.id).await,
        vec![
            (LinkDirection::Outgoing, "BETA".into(), LinkStatus::Active),
            (LinkDirection::Incoming, "BETA".into(), LinkStatus::Active)
        ]
    );
    assert!(
        dashboard::pending_requests(&pool, a.id, dashboard::LinkPage::default())
            .await
            .unwrap()
            .is_empty()
    );
    assert!(
        dashboard::pending_requests(&pool, b.id, dashboard::LinkPage::default())
            .await
            .unwrap()
            .is_empty()
    );
}

#[tokio::test]
async fn q5_pending_requests_are_the_links_awaiting_the_sites_approval() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let a = site(&service, "ALPHA").await;
    let b = site(&service, "BETA").await;
    let c = site(&service, "GAMMA").await;
    request(&service, &a, "BETA", Directions::Both).await;
    request(&service, &c, "BETA", Directions::Offer).await;
    request(&service, &a, "GAMMA", Directions::Offer).await;
    let pool = project(&db).await;

    // B approves A's two links and C's offer; A requested, so it has nothing to act on.
    let pending: Vec<(LinkDirection, String, SiteId, SiteId)> =
        dashboard::pending_requests(&pool, b.id, dashboard::LinkPage::default())
            .await
            .unwrap()
            .into_iter()
            .map(|p| {
                (
                    p.direction,
                    p.partner_code.to_string(),
                    p.from_site,
                    p.to_site,
                )
            })
            .collect();
    assert_eq!(
        pending,
        vec![
            (LinkDirection::Incoming, "ALPHA".into(), a.id, b.id),
            (LinkDirection::Outgoing, "ALPHA".into(), b.id, a.id),
            (LinkDirection::Incoming, "GAMMA".into(), c.id, b.id),
        ]
    );
    assert!(
        dashboard::pending_requests(&pool, a.id, dashboard::LinkPage::default())
            .await
            .unwrap()
            .is_empty()
    );
    let for_c = dashboard::pending_requests(&pool, c.id, dashboard::LinkPage::default())
        .await
        .unwrap();
    assert_eq!(for_c.len(), 1);
    assert_eq!((for_c[0].from_site, for_c[0].to_site), (a.id, c.id));
    assert_eq!(for_c[0].requested_by_user, Some(a.admin));

    approve(&service, &b, &a).await;
    deny(&service, &b, &c).await;
    cancel(&service, &a, &c).await;
    let pool = project(&db).await;
    for s in [&a, &b, &c] {
        assert!(
            dashboard::pending_requests(&pool, s.id, dashboard::LinkPage::default())
                .await
                .unwrap()
                .is_empty()
        );
    }
}

/// (partner code, [scorecard names]) of what `site` shares.
async fn shares_of(pool: &PgPool, site: SiteId) -> Vec<(String, Vec<String>)> {
    dashboard::shared_scorecards(pool, site)
        .await
        .unwrap()
        .into_iter()
        .map(|p| {
            (
                p.partner_code.to_string(),
                p.scorecards.into_iter().map(|s| s.name).collect(),
            )
        })
        .collect()
}

#[tokio::test]
async fn r_share_7_lists_scorecards_shared_per_partner() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let a = site(&service, "ALPHA").await;
    let b = site(&service, "BETA").await;
    let c = site(&service, "GAMMA").await;
    let corporate = scorecard(&service, &a, "Corporate").await;
    let literacy = scorecard(&service, &a, "Literacy").await;
    let _private = scorecard(&service, &a, "Private").await;
    for (partner, partner_code) in [(&b, "BETA"), (&c, "GAMMA")] {
        request(&service, &a, partner_code, Directions::Offer).await;
        approve(&service, partner, &a).await;
    }
    let pool = project(&db).await;
    // Active links with nothing shared (R-CONN-7) are listed empty.
    assert_eq!(
        shares_of(&pool, a.id).await,
        vec![("BETA".into(), vec![]), ("GAMMA".into(), vec![])]
    );

    share(&service, &a, &b, corporate).await;
    share(&service, &a, &b, literacy).await;
    set_shared(&service, &a, &c, BTreeSet::from([literacy])).await;
    let pool = project(&db).await;
    assert_eq!(
        shares_of(&pool, a.id).await,
        vec![
            ("BETA".into(), vec!["Corporate".into(), "Literacy".into()]),
            ("GAMMA".into(), vec!["Literacy".into()])
        ]
    );
    let listed = dashboard::shared_scorecards(&pool, a.id).await.unwrap();
    let first = &listed[0].scorecards[0];
    assert_eq!(first.scorecard_id, corporate);
    assert_eq!(first.owner_code, code("ALPHA"));
    assert_eq!(first.shared_by_user, Some(a.admin));
    // B shares nothing; what A shares with B is not B's to list.
    assert!(shares_of(&pool, b.id).await.is_empty());
    let to_b = &dashboard::connections(&pool, a.id, dashboard::LinkPage::default())
        .await
        .unwrap()[0];
    assert_eq!(to_b.shared_scorecards, 2);

    unshare(&service, &a, &b, corporate).await;
    let pool = project(&db).await;
    assert_eq!(
        shares_of(&pool, a.id).await,
        vec![
            ("BETA".into(), vec!["Literacy".into()]),
            ("GAMMA".into(), vec!["Literacy".into()])
        ]
    );

    // Revoking A→C ends what was shared with C; a new request starts from
    // nothing shared (R-CONN-4).
    revoke(
        &service,
        &c,
        Link {
            from: a.id,
            to: c.id,
        },
    )
    .await;
    let pool = project(&db).await;
    assert_eq!(
        shares_of(&pool, a.id).await,
        vec![("BETA".into(), vec!["Literacy".into()])]
    );
    request(&service, &a, "GAMMA", Directions::Offer).await;
    approve(&service, &c, &a).await;
    let pool = project(&db).await;
    assert_eq!(
        shares_of(&pool, a.id).await,
        vec![
            ("BETA".into(), vec!["Literacy".into()]),
            ("GAMMA".into(), vec![])
        ]
    );
}

// ---------------------------------------------------------------------------
// Q-5: users; R-ONB-3: settings
// ---------------------------------------------------------------------------

/// A site with four users besides its admin; `ann` deactivated, `bob` acted
/// last.
struct People {
    site: Site,
    ann: UserId,
    bob: UserId,
    cyd: UserId,
    dee: UserId,
}

async fn people(service: &Service) -> People {
    let site = site(service, "PEOPLE").await;
    let ann = add_user(service, site.id, "ann@x.org", "Joanna Zed", Role::DataEntry).await;
    let bob = add_user(
        service,
        site.id,
        "bob@x.org",
        "bob young",
        Role::ScorecardBuilder,
    )
    .await;
    let cyd = add_user(service, site.id, "cyd@x.org", "Cyd Xavier", Role::Presenter).await;
    let dee = add_user(service, site.id, "dee@x.org", "Dee Ann Wu", Role::Presenter).await;
    service
        .execute(
            &site.by(),
            DeactivateUser {
                site_id: site.id,
                user_id: ann,
            },
        )
        .await
        .unwrap();
    // The admin acts, then Bob.
    scorecard(service, &site, "Admin's").await;
    service
        .execute(
            &by(site.id, bob),
            CreateScorecard {
                site_id: site.id,
                scorecard_id: ScorecardId::new(),
                name: name("Bob's"),
            },
        )
        .await
        .unwrap();
    People {
        site,
        ann,
        bob,
        cyd,
        dee,
    }
}

async fn usernames(pool: &PgPool, site: SiteId, query: UsersQuery) -> Vec<String> {
    dashboard::users(pool, site, &query)
        .await
        .unwrap()
        .users
        .into_iter()
        .map(|u| u.username.to_string())
        .collect()
}

fn sorted(sort: UserSort, descending: bool) -> UsersQuery {
    UsersQuery {
        sort,
        descending,
        ..UsersQuery::default()
    }
}

#[tokio::test]
async fn q5_users_sort_both_ways_on_every_column() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let p = people(&service).await;
    let pool = project(&db).await;
    let all = [
        "admin@people.org",
        "ann@x.org",
        "bob@x.org",
        "cyd@x.org",
        "dee@x.org",
    ];
    let cases: [(UserSort, [&str; 5]); 5] = [
        (UserSort::Username, all),
        // Admin, bob young, Cyd Xavier, Dee Ann Wu, Joanna Zed (case-insensitively).
        (
            UserSort::Name,
            [
                "admin@people.org",
                "bob@x.org",
                "cyd@x.org",
                "dee@x.org",
                "ann@x.org",
            ],
        ),
        // Never acted (by username), then the admin, then Bob.
        (
            UserSort::LastActivity,
            [
                "ann@x.org",
                "cyd@x.org",
                "dee@x.org",
                "admin@people.org",
                "bob@x.org",
            ],
        ),
        // administration, data_entry, presenter ×2, scorecard_builder.
        (
            UserSort::Role,
            [
                "admin@people.org",
                "ann@x.org",
                "cyd@x.org",
                "dee@x.org",
                "bob@x.org",
            ],
        ),
        // Inactive first.
        (
            UserSort::Active,
            [
                "ann@x.org",
                "admin@people.org",
                "bob@x.org",
                "cyd@x.org",
                "dee@x.org",
            ],
        ),
    ];
    for (sort, ascending) in cases {
        assert_eq!(
            usernames(&pool, p.site.id, sorted(sort, false)).await,
            ascending,
            "{sort:?} ascending"
        );
        let mut descending = ascending.to_vec();
        descending.reverse();
        assert_eq!(
            usernames(&pool, p.site.id, sorted(sort, true)).await,
            descending,
            "{sort:?} descending"
        );
    }
    let page = dashboard::users(&pool, p.site.id, &UsersQuery::default())
        .await
        .unwrap();
    assert_eq!(page.total, 5);
    assert_eq!(page.next, None);
    let ann = page.users.iter().find(|u| u.user_id == p.ann).unwrap();
    assert!(!ann.active);
    assert_eq!(ann.role, Role::DataEntry);
    assert_eq!(
        ann.permissions,
        Role::DataEntry.default_permissions().into_iter().collect()
    );
    assert_eq!(ann.name.as_str(), "Joanna Zed");
    assert_eq!(ann.origin, "added");
}

#[tokio::test]
async fn q5_users_pages_follow_the_sort_in_both_directions() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let p = people(&service).await;
    let pool = project(&db).await;
    for sort in [
        UserSort::Username,
        UserSort::Name,
        UserSort::LastActivity,
        UserSort::Role,
        UserSort::Active,
        UserSort::Email,
        UserSort::AddedAt,
    ] {
        for descending in [false, true] {
            let whole = usernames(&pool, p.site.id, sorted(sort, descending)).await;
            let page_of = |after: Option<String>| {
                let pool = pool.clone();
                async move {
                    let page = dashboard::users(
                        &pool,
                        p.site.id,
                        &UsersQuery {
                            sort,
                            descending,
                            limit: 2,
                            after,
                            ..UsersQuery::default()
                        },
                    )
                    .await
                    .unwrap();
                    assert!(page.users.len() <= 2);
                    assert_eq!(page.total, 5);
                    let names: Vec<String> =
                        page.users.iter().map(|u| u.username.to_string()).collect();
                    (names, page.next, page.previous)
                }
            };
            // Forwards, page by page.
            let mut pages = Vec::new();
            let mut after = None;
            let last_previous = loop {
                let (names, next, previous) = page_of(after.take()).await;
                assert_eq!(
                    previous.is_some(),
                    !pages.is_empty(),
                    "only the first page has none before it"
                );
                pages.push(names);
                match next {
                    Some(next) => after = Some(next),
                    None => break previous,
                }
            };
            assert_eq!(pages.concat(), whole, "{sort:?} descending={descending}");
            // Then back from the last page, page by page, to the first.
            let mut back = vec![pages.last().unwrap().clone()];
            let mut before = last_previous;
            while let Some(cursor) = before.take() {
                let (names, next, previous) = page_of(Some(cursor)).await;
                assert!(next.is_some(), "a page paged back to has a next");
                back.push(names);
                before = previous;
            }
            back.reverse();
            assert_eq!(back, pages, "back: {sort:?} descending={descending}");
        }
    }

    // A cursor of another sort or direction, or not one of ours, is refused.
    let first = dashboard::users(
        &pool,
        p.site.id,
        &UsersQuery {
            limit: 2,
            ..UsersQuery::default()
        },
    )
    .await
    .unwrap();
    let cursor = first.next.unwrap();
    for query in [
        UsersQuery {
            sort: UserSort::Name,
            after: Some(cursor.clone()),
            ..UsersQuery::default()
        },
        UsersQuery {
            descending: true,
            after: Some(cursor.clone()),
            ..UsersQuery::default()
        },
        UsersQuery {
            after: Some("nonsense".into()),
            ..UsersQuery::default()
        },
    ] {
        assert!(matches!(
            dashboard::users(&pool, p.site.id, &query).await,
            Err(ProjectionError::BadCursor(_))
        ));
    }
    // Cursors of the right shape whose key is not of the sort's type, or
    // holds NUL: refused as cursors, not failed in the database.
    let hex = |text: &str| -> String { text.bytes().map(|b| format!("{b:02x}")).collect() };
    for (sort, cursor) in [
        (
            UserSort::LastActivity,
            format!("la.{}.{}", hex("garbage"), hex("x")),
        ),
        (
            UserSort::Active,
            format!("aa.{}.{}", hex("maybe"), hex("x")),
        ),
        (
            UserSort::Username,
            format!("ua.{}.{}", hex("a\0b"), hex("x")),
        ),
        (
            UserSort::Username,
            format!("ua.{}.{}", hex("x"), hex("a\0b")),
        ),
    ] {
        let query = UsersQuery {
            sort,
            after: Some(cursor.clone()),
            ..UsersQuery::default()
        };
        let answer = dashboard::users(&pool, p.site.id, &query).await;
        assert!(
            matches!(answer, Err(ProjectionError::BadCursor(_))),
            "{cursor}: {answer:?}"
        );
    }
}

#[tokio::test]
async fn q5_users_filter_by_active_role_and_flag() {
    // Given the people site: admin (Administration), ann (Data Entry,
    // deactivated), bob (Scorecard Builder), cyd and dee (Presenters).
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let p = people(&service).await;
    let pool = project(&db).await;
    let only = |active, role, flag| UsersQuery {
        active,
        role,
        flag,
        ..UsersQuery::default()
    };
    // Hide inactive, or only the inactive.
    assert_eq!(
        usernames(&pool, p.site.id, only(Some(true), None, None)).await,
        ["admin@people.org", "bob@x.org", "cyd@x.org", "dee@x.org"]
    );
    assert_eq!(
        usernames(&pool, p.site.id, only(Some(false), None, None)).await,
        ["ann@x.org"]
    );
    // By role, and by a flag the presets give (Data Entry: not to Presenters).
    assert_eq!(
        usernames(&pool, p.site.id, only(None, Some(Role::Presenter), None)).await,
        ["cyd@x.org", "dee@x.org"]
    );
    assert_eq!(
        usernames(
            &pool,
            p.site.id,
            only(None, None, Some(PermissionFlag::DataEntry))
        )
        .await,
        ["admin@people.org", "ann@x.org", "bob@x.org"]
    );
    // Combined, with the total counting the filtered users and pages
    // following them.
    let query = UsersQuery {
        limit: 1,
        ..only(Some(true), None, Some(PermissionFlag::DataEntry))
    };
    let first = dashboard::users(&pool, p.site.id, &query).await.unwrap();
    assert_eq!(first.total, 2);
    let second = dashboard::users(
        &pool,
        p.site.id,
        &UsersQuery {
            after: first.next.clone(),
            ..query
        },
    )
    .await
    .unwrap();
    let paged: Vec<String> = first
        .users
        .iter()
        .chain(&second.users)
        .map(|u| u.username.to_string())
        .collect();
    assert_eq!(paged, ["admin@people.org", "bob@x.org"]);
    assert_eq!(second.next, None);
}

#[tokio::test]
async fn q5_users_search_usernames_and_names_case_insensitively() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let p = people(&service).await;
    let pool = project(&db).await;
    let search = |text: &str| UsersQuery {
        search: Some(text.into()),
        ..UsersQuery::default()
    };
    // "ANN" is in ann@x.org (username), "Joanna" and "Dee Ann Wu" (names).
    assert_eq!(
        usernames(&pool, p.site.id, search("ANN")).await,
        ["ann@x.org", "dee@x.org"]
    );
    assert_eq!(
        usernames(&pool, p.site.id, search("young")).await,
        ["bob@x.org"]
    );
    assert_eq!(
        usernames(&pool, p.site.id, search("@X.ORG")).await,
        ["ann@x.org", "bob@x.org", "cyd@x.org", "dee@x.org"]
    );
    // A role is found by its wire name and as people read it.
    assert_eq!(
        usernames(&pool, p.site.id, search("data_entry")).await,
        ["ann@x.org"]
    );
    assert_eq!(
        usernames(&pool, p.site.id, search("Data Entry")).await,
        ["ann@x.org"]
    );
    // Wildcards are taken literally.
    assert!(usernames(&pool, p.site.id, search("%")).await.is_empty());
    assert!(usernames(&pool, p.site.id, search("a_n")).await.is_empty());
    // A blank search is no search.
    assert_eq!(usernames(&pool, p.site.id, search("  ")).await.len(), 5);
    let page = dashboard::users(&pool, p.site.id, &search("ann"))
        .await
        .unwrap();
    assert_eq!(page.total, 2);
    let _ = (p.cyd, p.dee);
}

#[tokio::test]
async fn q5_last_activity_is_the_time_of_the_users_last_event() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let p = people(&service).await;
    let pool = project(&db).await;
    let events = whole_log(&db.store()).await;
    let last_by = |user: UserId| {
        events
            .iter()
            .rev()
            .find(|e| {
                matches!(
                    e.typed_metadata().map(|m| m.actor),
                    Ok(Actor::User { user_id, .. }) if user_id == user.0
                )
            })
            .map(|e| e.recorded_at)
    };
    let page = dashboard::users(&pool, p.site.id, &UsersQuery::default())
        .await
        .unwrap();
    for user in &page.users {
        assert_eq!(
            user.last_activity,
            last_by(user.user_id),
            "{}",
            user.username
        );
    }
    let bob = page.users.iter().find(|u| u.user_id == p.bob).unwrap();
    assert!(bob.last_activity.is_some());
    let cyd = page.users.iter().find(|u| u.user_id == p.cyd).unwrap();
    assert_eq!(cyd.last_activity, None, "operator-added users never acted");

    // A later event moves it on; another site's users are not touched.
    let before = bob.last_activity;
    service
        .execute(
            &by(p.site.id, p.bob),
            CreateScorecard {
                site_id: p.site.id,
                scorecard_id: ScorecardId::new(),
                name: name("Bob's second"),
            },
        )
        .await
        .unwrap();
    let pool = project(&db).await;
    let events = whole_log(&db.store()).await;
    let page = dashboard::users(&pool, p.site.id, &UsersQuery::default())
        .await
        .unwrap();
    let bob = page.users.iter().find(|u| u.user_id == p.bob).unwrap();
    assert_eq!(bob.last_activity, events.last().map(|e| e.recorded_at));
    assert!(bob.last_activity >= before);
}

#[tokio::test]
async fn r_onb_3_two_factor_and_hidden_organisation_settings_are_reported() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let p = people(&service).await;
    let group = site(&service, "GROUP").await;
    let pool = project(&db).await;
    let before = dashboard::site(&pool, p.site.id).await.unwrap().unwrap();
    assert!(!before.two_factor_required);
    assert!(!before.listed, "unlisted until the site chooses (seed 002)");
    assert_eq!(before.code, code("PEOPLE"));
    assert_eq!(before.seat_limit, 20);
    assert_eq!((before.users, before.active_users), (5, 4));

    service
        .execute(
            &p.site.by(),
            RequireTwoFactor {
                site_id: p.site.id,
                required: true,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &p.site.by(),
            HideOrganizationSettings {
                site_id: p.site.id,
                user_id: p.bob,
                hidden: true,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &p.site.by(),
            shareledger_core::site::SetDirectoryListing {
                site_id: p.site.id,
                listed: true,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &p.site.by(),
            SetSeatLimit {
                site_id: p.site.id,
                seat_limit: SeatLimit::new(7).unwrap(),
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &group.by(),
            ConfigureSelfRegistration {
                site_id: group.id,
                enabled: true,
                model_site: Some(p.site.id),
                model_user: Some(p.bob),
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &p.site.by(),
            shareledger_core::site::SetParentSite {
                site_id: p.site.id,
                parent: Some(group.id),
            },
        )
        .await
        .unwrap();
    let pool = project(&db).await;
    let after = dashboard::site(&pool, p.site.id).await.unwrap().unwrap();
    assert!(after.two_factor_required);
    assert!(after.listed);
    assert_eq!(after.seat_limit, 7);
    assert_eq!(after.parent, Some(group.id));
    assert_eq!(after.parent_code, Some(code("GROUP")));
    let group_summary = dashboard::site(&pool, group.id).await.unwrap().unwrap();
    assert!(group_summary.self_registration.enabled);
    assert_eq!(group_summary.self_registration.model_site, Some(p.site.id));
    assert_eq!(group_summary.self_registration.model_user, Some(p.bob));
    assert!(
        !group_summary.self_registration.link_published,
        "no link key is published until one is made"
    );
    assert!(!group_summary.two_factor_required);
    let users = dashboard::users(&pool, p.site.id, &UsersQuery::default())
        .await
        .unwrap()
        .users;
    for user in users {
        assert_eq!(
            user.hide_organization_settings,
            user.user_id == p.bob,
            "{}",
            user.username
        );
    }
    assert_eq!(dashboard::site(&pool, SiteId::new()).await.unwrap(), None);

    // Switched off again.
    service
        .execute(
            &p.site.by(),
            RequireTwoFactor {
                site_id: p.site.id,
                required: false,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &p.site.by(),
            HideOrganizationSettings {
                site_id: p.site.id,
                user_id: p.bob,
                hidden: false,
            },
        )
        .await
        .unwrap();
    let pool = project(&db).await;
    assert!(
        !dashboard::site(&pool, p.site.id)
            .await
            .unwrap()
            .unwrap()
            .two_factor_required
    );
    assert!(dashboard::users(&pool, p.site.id, &UsersQuery::default())
        .await
        .unwrap()
        .users
        .iter()
        .all(|u| !u.hide_organization_settings));
}

#[tokio::test]
async fn q5_role_and_flag_changes_and_reactivation_are_reported() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let p = people(&service).await;
    service
        .execute(
            &p.site.by(),
            ChangeUserRole {
                site_id: p.site.id,
                user_id: p.cyd,
                role: Role::DataEntry,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &p.site.by(),
            SetPermissionFlags {
                site_id: p.site.id,
                user_id: p.cyd,
                enable: BTreeSet::from([PermissionFlag::AllScorecards]),
                disable: BTreeSet::from([PermissionFlag::DataEntry]),
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &p.site.by(),
            ReactivateUser {
                site_id: p.site.id,
                user_id: p.ann,
            },
        )
        .await
        .unwrap();
    let pool = project(&db).await;
    let users = dashboard::users(&pool, p.site.id, &UsersQuery::default())
        .await
        .unwrap()
        .users;
    let cyd = users.iter().find(|u| u.user_id == p.cyd).unwrap();
    assert_eq!(cyd.role, Role::DataEntry);
    let mut expected = Role::DataEntry.default_permissions();
    expected.insert(PermissionFlag::AllScorecards);
    expected.remove(&PermissionFlag::DataEntry);
    assert_eq!(cyd.permissions, expected);
    assert!(users.iter().all(|u| u.active));
}

// ---------------------------------------------------------------------------
// Batching
// ---------------------------------------------------------------------------

/// A world that touches every event type the models use: sites, users and
/// their flags, links in every state, shares and unshares, containers,
/// placements and removals, relationships and their removal by a revoke.
async fn rich_world(db: &TestDb) {
    let service = Service::new(db.store());
    let p = people(&service).await;
    let a = site(&service, "ALPHA").await;
    let b = site(&service, "BETA").await;
    let s1 = scorecard(&service, &a, "One").await;
    let s2 = scorecard(&service, &a, "Two").await;
    let result = object(&service, &a, ObjectKind::Result, None).await;
    let inner = object(&service, &a, ObjectKind::Program, Some(result)).await;
    let leaf = object(&service, &a, ObjectKind::Indicator, Some(inner)).await;
    place(&service, &a, result, s1).await;
    place(&service, &a, leaf, s2).await;
    let late = object(&service, &a, ObjectKind::Indicator, Some(inner)).await;
    request(&service, &a, "BETA", Directions::Both).await;
    approve(&service, &b, &a).await;
    share(&service, &a, &b, s1).await;
    share(&service, &a, &b, s2).await;
    let b_card = scorecard(&service, &b, "B's").await;
    service
        .execute(
            &b.by(),
            LinkSharedObject {
                site_id: b.id,
                relationship_id: RelationshipId::new(),
                scorecard_id: b_card,
                origin_site: a.id,
                object_id: inner,
            },
        )
        .await
        .unwrap();
    unplace(&service, &a, result, s1).await;
    unshare(&service, &a, &b, s2).await;
    let viewer = add_user(&service, b.id, "viewer@beta.org", "Viewer", Role::Presenter).await;
    grant(&service, &b, a.id, viewer, s1, AccessLevel::Browser).await;
    grant(&service, &b, b.id, viewer, b_card, AccessLevel::Editor).await;
    service
        .execute(
            &b.by(),
            RevokeScorecardAccess {
                site_id: b.id,
                user_id: viewer,
                scorecard_id: b_card,
            },
        )
        .await
        .unwrap();
    revoke(
        &service,
        &a,
        Link {
            from: a.id,
            to: b.id,
        },
    )
    .await;
    // The revoke ended the viewer's assignment to A's s1 (R-CONN-4); one of
    // B's own keeps the assignments tables non-empty.
    grant(&service, &b, b.id, viewer, b_card, AccessLevel::Browser).await;
    request(&service, &a, "PEOPLE", Directions::Offer).await;
    deny(&service, &p.site, &a).await;
    let _ = (late, p.dee);
}

#[tokio::test]
async fn applying_the_log_in_batches_of_any_size_builds_the_same_tables() {
    let db = TestDb::new().await;
    rich_world(&db).await;
    let whole = {
        let pool = project_in_batches(&db, usize::MAX).await;
        dump(&pool).await
    };
    // Everything was shared over A→B, now revoked; every other table has rows.
    for (table, rows) in &whole {
        let emptied = ["dash_shared", "acc_shared", "acc_relationships"].contains(&table.as_str());
        assert_eq!(rows.is_empty(), emptied, "{table}");
    }
    for batch in [1, 2, 3, 7] {
        let pool = project_in_batches(&db, batch).await;
        assert_eq!(dump(&pool).await, whole, "batches of {batch}");
    }
}

// ---------------------------------------------------------------------------
// The access tables and level_sql (docs/access-model.md)
// ---------------------------------------------------------------------------

/// Two partner sites: A shares `shared` with B over an active link A→B.
/// On A: `shared` shows `container` (a Result) with `child` (an Indicator)
/// inside it; `private` shows `hidden`; `loose` is on no scorecard. On B:
/// `b_card` and `b_other`, an Indicator `b_measure` on `b_other`.
struct World {
    service: Service,
    a: Site,
    b: Site,
    shared: ScorecardId,
    private: ScorecardId,
    container: ObjectId,
    child: ObjectId,
    hidden: ObjectId,
    loose: ObjectId,
    b_card: ScorecardId,
    b_other: ScorecardId,
    b_measure: ObjectId,
}

async fn world(db: &TestDb) -> World {
    let service = Service::new(db.store());
    let a = site(&service, "ALPHA").await;
    let b = site(&service, "BETA").await;
    let shared = scorecard(&service, &a, "Shared").await;
    let private = scorecard(&service, &a, "Private").await;
    let container = object(&service, &a, ObjectKind::Result, None).await;
    let child = object(&service, &a, ObjectKind::Indicator, Some(container)).await;
    let hidden = object(&service, &a, ObjectKind::PerformanceMeasure, None).await;
    let loose = object(&service, &a, ObjectKind::Indicator, None).await;
    place(&service, &a, container, shared).await;
    place(&service, &a, hidden, private).await;
    request(&service, &a, "BETA", Directions::Offer).await;
    approve(&service, &b, &a).await;
    share(&service, &a, &b, shared).await;
    let b_card = scorecard(&service, &b, "B card").await;
    let b_other = scorecard(&service, &b, "B other").await;
    let b_measure = object(&service, &b, ObjectKind::Indicator, None).await;
    place(&service, &b, b_measure, b_other).await;
    World {
        service,
        a,
        b,
        shared,
        private,
        container,
        child,
        hidden,
        loose,
        b_card,
        b_other,
        b_measure,
    }
}

impl World {
    fn a_targets(&self) -> Vec<Target> {
        vec![
            sc(self.shared),
            sc(self.private),
            ob(self.container),
            ob(self.child),
            ob(self.hidden),
            ob(self.loose),
        ]
    }
}

async fn levels(pool: &PgPool, user: UserId, targets: &[Target]) -> Vec<Option<AccessLevel>> {
    let mut out = Vec::new();
    for target in targets {
        out.push(level(pool, user, *target).await);
    }
    out
}

use AccessLevel::{Browser, Editor, ScorecardAdmin, Updater};

#[tokio::test]
async fn r_user_3_own_site_levels_follow_the_scorecards_assigned() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let user = add_user(&w.service, w.a.id, "pat@alpha.org", "Pat", Role::Presenter).await;
    grant(&w.service, &w.a, w.a.id, user, w.shared, Editor).await;
    grant(&w.service, &w.a, w.a.id, user, w.private, Updater).await;
    let pool = project(&db).await;
    assert_eq!(
        levels(&pool, user, &w.a_targets()).await,
        [
            Some(Editor),
            Some(Updater),
            Some(Editor),
            Some(Editor),
            Some(Updater),
            None
        ]
    );
    // The child shows on both: the highest level counts.
    place(&w.service, &w.a, w.child, w.private).await;
    w.service
        .execute(
            &w.a.by(),
            RevokeScorecardAccess {
                site_id: w.a.id,
                user_id: user,
                scorecard_id: w.shared,
            },
        )
        .await
        .unwrap();
    let pool = project(&db).await;
    assert_eq!(
        levels(&pool, user, &w.a_targets()).await,
        [
            None,
            Some(Updater),
            None,
            Some(Updater),
            Some(Updater),
            None
        ]
    );
}

#[tokio::test]
async fn r_user_4_all_scorecards_sees_every_scorecard_and_loose_object() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let user = add_user(&w.service, w.a.id, "pat@alpha.org", "Pat", Role::Presenter).await;
    w.service
        .execute(
            &w.a.by(),
            SetPermissionFlags {
                site_id: w.a.id,
                user_id: user,
                enable: BTreeSet::from([PermissionFlag::AllScorecards]),
                disable: BTreeSet::new(),
            },
        )
        .await
        .unwrap();
    grant(&w.service, &w.a, w.a.id, user, w.private, Editor).await;
    let pool = project(&db).await;
    assert_eq!(
        levels(&pool, user, &w.a_targets()).await,
        [
            Some(Browser),
            Some(Editor),
            Some(Browser),
            Some(Browser),
            Some(Editor),
            Some(Browser)
        ]
    );
}

#[tokio::test]
async fn r_user_4_add_edit_objects_without_scorecards_browses_placed_objects_only() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let user = add_user(&w.service, w.a.id, "pat@alpha.org", "Pat", Role::Presenter).await;
    w.service
        .execute(
            &w.a.by(),
            SetPermissionFlags {
                site_id: w.a.id,
                user_id: user,
                enable: BTreeSet::from([PermissionFlag::AddEditScorecardObjects]),
                disable: BTreeSet::new(),
            },
        )
        .await
        .unwrap();
    let pool = project(&db).await;
    assert_eq!(
        levels(&pool, user, &w.a_targets()).await,
        [
            Some(Browser),
            Some(Browser),
            Some(Browser),
            Some(Browser),
            Some(Browser),
            None
        ]
    );
    // One own scorecard assigned: only it counts now.
    grant(&w.service, &w.a, w.a.id, user, w.private, Updater).await;
    let pool = project(&db).await;
    assert_eq!(
        levels(&pool, user, &w.a_targets()).await,
        [None, Some(Updater), None, None, Some(Updater), None]
    );
}

#[tokio::test]
async fn instance_admin_administers_own_scorecards_and_placed_objects() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let user = add_user(&w.service, w.a.id, "pat@alpha.org", "Pat", Role::Presenter).await;
    w.service
        .execute(
            &w.a.by(),
            SetPermissionFlags {
                site_id: w.a.id,
                user_id: user,
                enable: BTreeSet::from([PermissionFlag::InstanceAdmin]),
                disable: BTreeSet::new(),
            },
        )
        .await
        .unwrap();
    let pool = project(&db).await;
    // Without All Scorecards a loose object stays out of reach.
    assert_eq!(
        levels(&pool, user, &w.a_targets()).await,
        [
            Some(ScorecardAdmin),
            Some(ScorecardAdmin),
            Some(ScorecardAdmin),
            Some(ScorecardAdmin),
            Some(ScorecardAdmin),
            None
        ]
    );
    // The Administration preset has All Scorecards too.
    assert_eq!(
        levels(&pool, w.a.admin, &w.a_targets()).await,
        vec![Some(ScorecardAdmin); 6]
    );
}

#[tokio::test]
async fn r_user_6_a_deactivated_user_sees_nothing_until_reactivated() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let user = add_user(
        &w.service,
        w.a.id,
        "pat@alpha.org",
        "Pat",
        Role::Administration,
    )
    .await;
    w.service
        .execute(
            &w.a.by(),
            DeactivateUser {
                site_id: w.a.id,
                user_id: user,
            },
        )
        .await
        .unwrap();
    let pool = project(&db).await;
    assert_eq!(levels(&pool, user, &w.a_targets()).await, vec![None; 6]);
    w.service
        .execute(
            &w.a.by(),
            ReactivateUser {
                site_id: w.a.id,
                user_id: user,
            },
        )
        .await
        .unwrap();
    let pool = project(&db).await;
    assert_eq!(
        levels(&pool, user, &w.a_targets()).await,
        vec![Some(ScorecardAdmin); 6]
    );
}

#[tokio::test]
async fn r_share_5_partners_see_shared_content_at_most_as_browser() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let presenter = add_user(&w.service, w.b.id, "pre@beta.org", "Pre", Role::Presenter).await;
    let assigned = add_user(&w.service, w.b.id, "asg@beta.org", "Asg", Role::Presenter).await;
    grant(&w.service, &w.b, w.a.id, assigned, w.shared, Browser).await;
    let pool = project(&db).await;
    let seen = [
        Some(Browser),
        None,
        Some(Browser),
        Some(Browser),
        None,
        None,
    ];
    // B's admin (Instance Admin, All Scorecards) is a Browser on what A shares.
    assert_eq!(levels(&pool, w.b.admin, &w.a_targets()).await, seen);
    assert_eq!(levels(&pool, assigned, &w.a_targets()).await, seen);
    assert_eq!(
        levels(&pool, presenter, &w.a_targets()).await,
        vec![None; 6]
    );
    // A's own Administration user is not affected.
    assert_eq!(
        level(&pool, w.a.admin, sc(w.shared)).await,
        Some(ScorecardAdmin)
    );

    // Unshared: gone for everyone of B, the assignment notwithstanding.
    unshare(&w.service, &w.a, &w.b, w.shared).await;
    let pool = project(&db).await;
    for user in [w.b.admin, assigned] {
        assert_eq!(levels(&pool, user, &w.a_targets()).await, vec![None; 6]);
    }
}

#[tokio::test]
async fn r_conn_7_an_active_link_alone_gives_nothing() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    unshare(&w.service, &w.a, &w.b, w.shared).await;
    request(&w.service, &w.b, "ALPHA", Directions::Offer).await;
    approve(&w.service, &w.a, &w.b).await;
    let pool = project(&db).await;
    assert_eq!(
        levels(&pool, w.b.admin, &w.a_targets()).await,
        vec![None; 6]
    );
    let b_targets = [sc(w.b_card), sc(w.b_other), ob(w.b_measure)];
    assert_eq!(levels(&pool, w.a.admin, &b_targets).await, vec![None; 3]);
}

#[tokio::test]
async fn r_share_2_partners_follow_placements_and_containers() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let pool = project(&db).await;
    assert_eq!(level(&pool, w.b.admin, ob(w.hidden)).await, None);
    // Placed on the shared scorecard later: visible; a new object inside the
    // shared container: visible.
    place(&w.service, &w.a, w.hidden, w.shared).await;
    let late = object(&w.service, &w.a, ObjectKind::Program, Some(w.container)).await;
    let pool = project(&db).await;
    for target in [ob(w.hidden), ob(late), ob(w.child)] {
        assert_eq!(level(&pool, w.b.admin, target).await, Some(Browser));
    }
    // The container leaves the shared scorecard: it and what is inside go.
    unplace(&w.service, &w.a, w.container, w.shared).await;
    let pool = project(&db).await;
    for target in [ob(w.container), ob(w.child), ob(late)] {
        assert_eq!(level(&pool, w.b.admin, target).await, None);
    }
    assert_eq!(level(&pool, w.b.admin, ob(w.hidden)).await, Some(Browser));
    // Still on another shared scorecard: still visible.
    place(&w.service, &w.a, w.child, w.private).await;
    share(&w.service, &w.a, &w.b, w.private).await;
    unplace(&w.service, &w.a, w.hidden, w.shared).await;
    let pool = project(&db).await;
    assert_eq!(level(&pool, w.b.admin, ob(w.hidden)).await, Some(Browser));
    assert_eq!(level(&pool, w.b.admin, ob(w.child)).await, Some(Browser));
    assert_eq!(level(&pool, w.b.admin, ob(w.container)).await, None);
}

/// B relates A's container to `b_card` and A's child (an Indicator) into
/// `b_measure`; returns the two relationship ids.
async fn relate(w: &World) -> (RelationshipId, RelationshipId) {
    let linked = RelationshipId::new();
    w.service
        .execute(
            &w.b.by(),
            LinkSharedObject {
                site_id: w.b.id,
                relationship_id: linked,
                scorecard_id: w.b_card,
                origin_site: w.a.id,
                object_id: w.container,
            },
        )
        .await
        .unwrap();
    let aggregated = RelationshipId::new();
    w.service
        .execute(
            &w.b.by(),
            UseSharedMeasureInAggregation {
                site_id: w.b.id,
                relationship_id: aggregated,
                into_object: w.b_measure,
                origin_site: w.a.id,
                object_id: w.child,
            },
        )
        .await
        .unwrap();
    (linked, aggregated)
}

#[tokio::test]
async fn r_share_5_relationships_show_partner_objects_to_users_of_their_targets() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    relate(&w).await;
    let on_card = add_user(&w.service, w.b.id, "card@beta.org", "Card", Role::Presenter).await;
    let on_other = add_user(
        &w.service,
        w.b.id,
        "other@beta.org",
        "Other",
        Role::Presenter,
    )
    .await;
    let nobody = add_user(&w.service, w.b.id, "none@beta.org", "None", Role::Presenter).await;
    grant(&w.service, &w.b, w.b.id, on_card, w.b_card, Editor).await;
    grant(&w.service, &w.b, w.b.id, on_other, w.b_other, Updater).await;
    let pool = project(&db).await;
    // The container is on b_card: it and its child are Browser for b_card's
    // users; the child is aggregated into b_measure (on b_other): Browser for
    // b_other's users. Never more than Browser; never the shared scorecard.
    assert_eq!(
        levels(&pool, on_card, &w.a_targets()).await,
        [None, None, Some(Browser), Some(Browser), None, None]
    );
    assert_eq!(
        levels(&pool, on_other, &w.a_targets()).await,
        [None, None, None, Some(Browser), None, None]
    );
    assert_eq!(levels(&pool, nobody, &w.a_targets()).await, vec![None; 6]);
    // Own-site levels of the targets are unchanged.
    assert_eq!(level(&pool, on_card, sc(w.b_card)).await, Some(Editor));
    assert_eq!(level(&pool, on_other, ob(w.b_measure)).await, Some(Updater));
}

#[tokio::test]
async fn r_share_4_a_relationship_whose_object_is_no_longer_seen_gives_nothing() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    relate(&w).await;
    let on_card = add_user(&w.service, w.b.id, "card@beta.org", "Card", Role::Presenter).await;
    grant(&w.service, &w.b, w.b.id, on_card, w.b_card, Browser).await;
    // The child stays visible through `private`; the container does not.
    share(&w.service, &w.a, &w.b, w.private).await;
    place(&w.service, &w.a, w.child, w.private).await;
    unplace(&w.service, &w.a, w.container, w.shared).await;
    // No consequence worker runs here: the relationship on the container is
    // still in the log, and ignored at once.
    let pool = project(&db).await;
    let rows: i64 = sqlx::query_scalar("SELECT count(*) FROM rm.acc_relationships")
        .fetch_one(&pool)
        .await
        .unwrap();
    assert_eq!(rows, 2);
    assert_eq!(level(&pool, on_card, ob(w.container)).await, None);
    assert_eq!(level(&pool, on_card, ob(w.child)).await, None);
}

#[tokio::test]
async fn r_conn_4_revoke_removes_access_and_relationships() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    relate(&w).await;
    let on_card = add_user(&w.service, w.b.id, "card@beta.org", "Card", Role::Presenter).await;
    grant(&w.service, &w.b, w.b.id, on_card, w.b_card, Browser).await;
    let pool = project(&db).await;
    assert_eq!(level(&pool, on_card, ob(w.child)).await, Some(Browser));
    assert_eq!(level(&pool, w.b.admin, sc(w.shared)).await, Some(Browser));
    revoke(
        &w.service,
        &w.b,
        Link {
            from: w.a.id,
            to: w.b.id,
        },
    )
    .await;
    let pool = project(&db).await;
    for user in [on_card, w.b.admin] {
        assert_eq!(levels(&pool, user, &w.a_targets()).await, vec![None; 6]);
    }
    let (relationships, shared, active): (i64, i64, bool) = sqlx::query_as(
        "SELECT (SELECT count(*) FROM rm.acc_relationships), \
                (SELECT count(*) FROM rm.acc_shared), \
                (SELECT active FROM rm.acc_links WHERE from_site = $1 AND to_site = $2)",
    )
    .bind(w.a.id.0)
    .bind(w.b.id.0)
    .fetch_one(&pool)
    .await
    .unwrap();
    assert_eq!((relationships, shared, active), (0, 0, false));

    // A new request starts from nothing shared.
    request(&w.service, &w.a, "BETA", Directions::Offer).await;
    approve(&w.service, &w.b, &w.a).await;
    let pool = project(&db).await;
    assert_eq!(
        levels(&pool, w.b.admin, &w.a_targets()).await,
        vec![None; 6]
    );
}

#[tokio::test]
async fn level_sql_refuses_unknown_users_and_targets() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let pool = project(&db).await;
    let stranger = UserId::new();
    assert!(matches!(
        level_sql(&pool, stranger, sc(w.shared)).await,
        Err(ProjectionError::UnknownUser(u)) if u == stranger
    ));
    let nothing = ScorecardId::new();
    assert!(matches!(
        level_sql(&pool, w.a.admin, sc(nothing)).await,
        Err(ProjectionError::UnknownTarget(t)) if t == sc(nothing)
    ));
    assert!(matches!(
        level_sql(&pool, w.a.admin, ob(ObjectId::new())).await,
        Err(ProjectionError::UnknownTarget(_))
    ));
}

#[tokio::test]
async fn placements_and_removals_in_one_batch_apply_in_log_order() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    // A placement waits in the batch; then a removal and a new placement of
    // the same pair, and a placement and a removal of another.
    place(&w.service, &w.a, w.loose, w.private).await;
    unplace(&w.service, &w.a, w.container, w.shared).await;
    place(&w.service, &w.a, w.container, w.shared).await;
    place(&w.service, &w.a, w.hidden, w.shared).await;
    unplace(&w.service, &w.a, w.hidden, w.shared).await;
    let pool = project(&db).await;
    let whole = dump(&pool).await;
    for target in [ob(w.container), ob(w.child)] {
        assert_eq!(level(&pool, w.b.admin, target).await, Some(Browser));
    }
    assert_eq!(level(&pool, w.b.admin, ob(w.hidden)).await, None);
    let one_by_one = project_in_batches(&db, 1).await;
    assert_eq!(dump(&one_by_one).await, whole);
}

#[tokio::test]
async fn shares_and_link_changes_in_one_batch_apply_in_log_order() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    // A share waits in the batch; then the link is revoked, requested and
    // approved again, and shared anew.
    share(&w.service, &w.a, &w.b, w.private).await;
    revoke(
        &w.service,
        &w.a,
        Link {
            from: w.a.id,
            to: w.b.id,
        },
    )
    .await;
    request(&w.service, &w.a, "BETA", Directions::Offer).await;
    approve(&w.service, &w.b, &w.a).await;
    // A scorecard created, and a site registered, after the waiting share,
    // then shared.
    let late = scorecard(&w.service, &w.a, "Late").await;
    share(&w.service, &w.a, &w.b, late).await;
    let c = site(&w.service, "GAMMA").await;
    let c_card = scorecard(&w.service, &c, "Gamma's").await;
    request(&w.service, &c, "ALPHA", Directions::Offer).await;
    approve(&w.service, &w.a, &c).await;
    share(&w.service, &c, &w.a, c_card).await;
    // A link requested with a share waiting, then revoked after another share.
    request(&w.service, &w.b, "ALPHA", Directions::Offer).await;
    approve(&w.service, &w.a, &w.b).await;
    share(&w.service, &w.b, &w.a, w.b_card).await;
    revoke(
        &w.service,
        &w.a,
        Link {
            from: w.b.id,
            to: w.a.id,
        },
    )
    .await;

    let pool = project(&db).await;
    let whole = dump(&pool).await;
    assert_eq!(
        levels(&pool, w.b.admin, &[sc(w.shared), sc(w.private), sc(late)]).await,
        [None, None, Some(Browser)]
    );
    assert_eq!(level(&pool, w.a.admin, sc(c_card)).await, Some(Browser));
    assert_eq!(level(&pool, w.a.admin, sc(w.b_card)).await, None);
    assert_eq!(
        shares_of(&pool, w.a.id).await,
        vec![("BETA".into(), vec!["Late".into()])]
    );
    assert_eq!(
        shares_of(&pool, c.id).await,
        vec![("ALPHA".into(), vec!["Gamma's".into()])]
    );
    assert!(shares_of(&pool, w.b.id).await.is_empty());
    let one_by_one = project_in_batches(&db, 1).await;
    assert_eq!(dump(&one_by_one).await, whole);
}

#[tokio::test]
async fn shows_on_is_the_closure_of_placements_through_containers() {
    let db = TestDb::new().await;
    let w = world(&db).await;
    let inner = object(&w.service, &w.a, ObjectKind::Program, Some(w.container)).await;
    let deep = object(&w.service, &w.a, ObjectKind::Indicator, Some(inner)).await;
    place(&w.service, &w.a, inner, w.private).await;
    let pool = project(&db).await;
    let rows = |pool: PgPool| async move {
        let rows: Vec<(Uuid, Uuid)> =
            sqlx::query_as("SELECT object_id, scorecard_id FROM rm.acc_shows_on ORDER BY 1, 2")
                .fetch_all(&pool)
                .await
                .unwrap();
        rows.into_iter().collect::<BTreeSet<_>>()
    };
    let expected = |pairs: &[(ObjectId, ScorecardId)]| {
        pairs
            .iter()
            .map(|(o, s)| (o.0, s.0))
            .collect::<BTreeSet<_>>()
    };
    assert_eq!(
        rows(pool).await,
        expected(&[
            (w.container, w.shared),
            (w.child, w.shared),
            (inner, w.shared),
            (deep, w.shared),
            (inner, w.private),
            (deep, w.private),
            (w.hidden, w.private),
            (w.b_measure, w.b_other),
        ])
    );
    unplace(&w.service, &w.a, w.container, w.shared).await;
    let pool = project(&db).await;
    assert_eq!(
        rows(pool).await,
        expected(&[
            (inner, w.private),
            (deep, w.private),
            (w.hidden, w.private),
            (w.b_measure, w.b_other),
        ])
    );
}

// ---------------------------------------------------------------------------
// Random worlds: level_sql and Q-5 against a brute-force fold of the log
// ---------------------------------------------------------------------------

mod random_worlds {
    //! Random command sequences over three sites through the real command
    //! service; afterwards every answer of `level_sql` (every user × every
    //! target) and the links, shares and users of Q-5 are compared with a
    //! naive fold of the whole log by the command side's own state types,
    //! evaluated rule by rule as `docs/access-model.md` states them; and
    //! the tables built in batches of 1 and 5 events equal those built in
    //! one batch.

    use std::collections::{BTreeMap, BTreeSet};

    use proptest::prelude::*;
    use shareledger_commands::CommandError;
    use shareledger_core::connection::{ConnectionState, LinkState};
    use shareledger_core::content::{level_on_object, ContentState, RelationshipTarget};
    use shareledger_core::site::{SiteState, UserState};
    use shareledger_projections::decode::{decode, Decoded};

    use super::*;

    /// The whole log folded into the command side's states.
    struct Oracle {
        sites: BTreeMap<SiteId, SiteState>,
        contents: BTreeMap<SiteId, ContentState>,
        connections: BTreeMap<(SiteId, SiteId), ConnectionState>,
    }

    fn pair(a: SiteId, b: SiteId) -> (SiteId, SiteId) {
        (a.min(b), a.max(b))
    }

    impl Oracle {
        fn fold(events: &[RecordedEvent]) -> Self {
            let mut o = Oracle {
                sites: BTreeMap::new(),
                contents: BTreeMap::new(),
                connections: BTreeMap::new(),
            };
            for recorded in events {
                match decode(recorded).unwrap() {
                    None | Some(Decoded::SiteCode(_)) => {}
                    Some(Decoded::Site { site, event }) => {
                        let before = o.sites.remove(&site);
                        if let Some(after) = SiteState::evolve(before, &event) {
                            o.sites.insert(site, after);
                        }
                    }
                    Some(Decoded::Content { site, event }) => {
                        let before = o
                            .contents
                            .remove(&site)
                            .unwrap_or_else(|| ContentState::empty(site));
                        o.contents.insert(site, before.evolve(&event));
                    }
                    Some(Decoded::Connection(event)) => {
                        let (lo, hi) = match &event {
                            shareledger_core::catalog::ConnectionEvent::ConnectionRequested {
                                requester,
                                partner,
                                ..
                            } => pair(*requester, *partner),
                            shareledger_core::catalog::ConnectionEvent::LinksActivated {
                                links,
                                ..
                            }
                            | shareledger_core::catalog::ConnectionEvent::ConnectionDenied {
                                links,
                                ..
                            }
                            | shareledger_core::catalog::ConnectionEvent::ConnectionRequestCancelled {
                                links,
                                ..
                            } => pair(links[0].from, links[0].to),
                            shareledger_core::catalog::ConnectionEvent::LinkRevoked {
                                link, ..
                            }
                            | shareledger_core::catalog::ConnectionEvent::ScorecardShared {
                                link,
                                ..
                            }
                            | shareledger_core::catalog::ConnectionEvent::ScorecardUnshared {
                                link,
                                ..
                            } => pair(link.from, link.to),
                        };
                        let before = o
                            .connections
                            .remove(&(lo, hi))
                            .unwrap_or_else(|| ConnectionState::new(lo, hi));
                        o.connections
                            .insert((lo, hi), ConnectionState::evolve(before, &event));
                    }
                }
            }
            o
        }

        fn content(&self, site: SiteId) -> ContentState {
            self.contents
                .get(&site)
                .cloned()
                .unwrap_or_else(|| ContentState::empty(site))
        }

        fn user(&self, user: UserId) -> (SiteId, &UserState) {
            self.sites
                .values()
                .find_map(|s| s.users.get(&user).map(|u| (s.id, u)))
                .expect("a known user")
        }

        fn owner(&self, target: Target) -> SiteId {
            self.contents
                .values()
                .find(|c| match target {
                    Target::Scorecard(s) => c.scorecards.contains_key(&s),
                    Target::Object(x) => c.objects.contains_key(&x),
                })
                .map(|c| c.site)
                .expect("a known target")
        }

        /// `shared(from → to)`: empty unless the link is active.
        fn shared(&self, from: SiteId, to: SiteId) -> BTreeSet<ScorecardId> {
            let link = Link { from, to };
            self.connections
                .get(&pair(from, to))
                .filter(|c| c.link_state(link).is_active())
                .map(|c| c.shared(link).clone())
                .unwrap_or_default()
        }

        fn own_scorecard_level(
            u: &UserState,
            content: &ContentState,
            s: ScorecardId,
        ) -> Option<AccessLevel> {
            let none_assigned = !u
                .scorecard_access
                .keys()
                .any(|k| content.scorecards.contains_key(k));
            let browse_all = u.has(PermissionFlag::AllScorecards)
                || (u.has(PermissionFlag::AddEditScorecardObjects) && none_assigned);
            if u.has(PermissionFlag::InstanceAdmin) {
                Some(ScorecardAdmin)
            } else if let Some(level) = u.scorecard_access.get(&s) {
                Some(*level)
            } else {
                browse_all.then_some(Browser)
            }
        }

        /// The level, rule by rule as `docs/access-model.md` states it.
        fn level(&self, user: UserId, target: Target) -> Option<AccessLevel> {
            let (site, u) = self.user(user);
            if !u.active {
                return None;
            }
            let owner = self.owner(target);
            let owned = self.content(owner);
            if owner == site {
                return match target {
                    Target::Scorecard(s) => Self::own_scorecard_level(u, &owned, s),
                    Target::Object(x) => level_on_object(u, &owned, x),
                };
            }
            let shared = self.shared(owner, site);
            let all = u.has(PermissionFlag::AllScorecards);
            match target {
                Target::Scorecard(s) => (shared.contains(&s)
                    && (all || u.scorecard_access.contains_key(&s)))
                .then_some(Browser),
                Target::Object(x) => {
                    let sees =
                        |o: ObjectId| shared.iter().any(|s| owned.objects_on(*s).contains(&o));
                    if !sees(x) {
                        return None;
                    }
                    let mut chain = vec![x];
                    while let Some(c) = owned.objects[chain.last().unwrap()].container {
                        chain.push(c);
                    }
                    let own = self.content(site);
                    let assigned = shared.iter().any(|s| {
                        u.scorecard_access.contains_key(s) && owned.objects_on(*s).contains(&x)
                    });
                    let related = own.relationships.values().any(|r| {
                        chain.contains(&r.object_id)
                            && sees(r.object_id)
                            && match r.target {
                                RelationshipTarget::Scorecard(s) => {
                                    Self::own_scorecard_level(u, &own, s).is_some()
                                }
                                RelationshipTarget::Aggregation(o) => {
                                    level_on_object(u, &own, o).is_some()
                                }
                            }
                    });
                    (all || assigned || related).then_some(Browser)
                }
            }
        }
    }

    /// One random command; indices are taken modulo what exists.
    #[derive(Debug, Clone)]
    enum Step {
        CreateScorecard {
            site: usize,
        },
        CreateObject {
            site: usize,
            kind: usize,
            container: Option<usize>,
        },
        Place {
            site: usize,
            object: usize,
            scorecard: usize,
        },
        Remove {
            site: usize,
            object: usize,
            scorecard: usize,
        },
        Request {
            from: usize,
            to: usize,
            both: bool,
        },
        Decide {
            site: usize,
            partner: usize,
            what: usize,
            outgoing: bool,
        },
        Share {
            from: usize,
            to: usize,
            scorecard: usize,
            share: bool,
        },
        Link {
            site: usize,
            partner: usize,
            object: usize,
            scorecard: usize,
        },
        Aggregate {
            site: usize,
            partner: usize,
            object: usize,
            into: usize,
        },
        Grant {
            site: usize,
            user: usize,
            owner: usize,
            scorecard: usize,
            level: usize,
        },
        RevokeAccess {
            site: usize,
            user: usize,
            owner: usize,
            scorecard: usize,
        },
        Flag {
            site: usize,
            user: usize,
            flag: usize,
            on: bool,
        },
        Active {
            site: usize,
            user: usize,
            on: bool,
        },
    }

    fn step() -> impl Strategy<Value = Step> {
        let s = 0..3usize;
        let n = 0..16usize;
        let p = 0..2usize;
        prop_oneof![
            1 => s.clone().prop_map(|site| Step::CreateScorecard { site }),
            3 => (s.clone(), 0..4usize, prop::option::of(n.clone()))
                .prop_map(|(site, kind, container)| Step::CreateObject { site, kind, container }),
            3 => (s.clone(), n.clone(), n.clone())
                .prop_map(|(site, object, scorecard)| Step::Place { site, object, scorecard }),
            1 => (s.clone(), n.clone(), n.clone())
                .prop_map(|(site, object, scorecard)| Step::Remove { site, object, scorecard }),
            2 => (s.clone(), p.clone(), any::<bool>()).prop_map(|(from, to, both)| {
                Step::Request { from, to: Sim::partner(from, to), both }
            }),
            2 => (s.clone(), p.clone(), 0..4usize, any::<bool>()).prop_map(
                |(site, partner, what, outgoing)| Step::Decide {
                    site,
                    partner: Sim::partner(site, partner),
                    what,
                    outgoing,
                }
            ),
            3 => (s.clone(), p.clone(), n.clone(), any::<bool>()).prop_map(
                |(from, to, scorecard, share)| Step::Share {
                    from,
                    to: Sim::partner(from, to),
                    scorecard,
                    share,
                }
            ),
            3 => (s.clone(), p.clone(), n.clone(), n.clone()).prop_map(
                |(site, partner, object, scorecard)| Step::Link {
                    site,
                    partner: Sim::partner(site, partner),
                    object,
                    scorecard,
                }
            ),
            2 => (s.clone(), p, n.clone(), n.clone()).prop_map(
                |(site, partner, object, into)| Step::Aggregate {
                    site,
                    partner: Sim::partner(site, partner),
                    object,
                    into,
                }
            ),
            2 => (s.clone(), 0..3usize, s.clone(), n.clone(), 0..4usize).prop_map(
                |(site, user, owner, scorecard, level)| Step::Grant { site, user, owner, scorecard, level }
            ),
            1 => (s.clone(), 0..3usize, s.clone(), n.clone()).prop_map(
                |(site, user, owner, scorecard)| Step::RevokeAccess { site, user, owner, scorecard }
            ),
            1 => (s.clone(), 1..3usize, 0..3usize, any::<bool>())
                .prop_map(|(site, user, flag, on)| Step::Flag { site, user, flag, on }),
            1 => (s, 1..3usize, any::<bool>())
                .prop_map(|(site, user, on)| Step::Active { site, user, on }),
        ]
    }

    /// Three sites, each with an admin, a Scorecard Builder and a Presenter,
    /// two scorecards and a Result on the first.
    struct Sim {
        service: Service,
        sites: Vec<Site>,
        codes: Vec<&'static str>,
        users: Vec<Vec<UserId>>,
        scorecards: Vec<Vec<ScorecardId>>,
        objects: Vec<Vec<ObjectId>>,
    }

    fn pick<T: Copy>(items: &[T], i: usize) -> Option<T> {
        (!items.is_empty()).then(|| items[i % items.len()])
    }

    impl Sim {
        async fn new(db: &TestDb) -> Self {
            let service = Service::new(db.store());
            let codes = vec!["ALPHA", "BETA", "GAMMA"];
            let mut sim = Sim {
                service,
                sites: Vec::new(),
                codes: codes.clone(),
                users: Vec::new(),
                scorecards: Vec::new(),
                objects: Vec::new(),
            };
            for (i, c) in codes.iter().enumerate() {
                let s = site(&sim.service, c).await;
                let builder = add_user(
                    &sim.service,
                    s.id,
                    &format!("builder@{c}.org"),
                    "Builder",
                    Role::ScorecardBuilder,
                )
                .await;
                let presenter = add_user(
                    &sim.service,
                    s.id,
                    &format!("pre@{c}.org"),
                    "Pre",
                    Role::Presenter,
                )
                .await;
                sim.users.push(vec![s.admin, builder, presenter]);
                let first = scorecard(&sim.service, &s, "First").await;
                let second = scorecard(&sim.service, &s, "Second").await;
                let result = object(&sim.service, &s, ObjectKind::Result, None).await;
                let inside = object(&sim.service, &s, ObjectKind::Indicator, Some(result)).await;
                let measure = object(&sim.service, &s, ObjectKind::Indicator, None).await;
                place(&sim.service, &s, result, first).await;
                place(&sim.service, &s, measure, second).await;
                sim.scorecards.push(vec![first, second]);
                sim.objects.push(vec![result, inside, measure]);
                sim.sites.push(s);
                debug_assert_eq!(sim.sites.len(), i + 1);
            }
            // Every link active, each site sharing its first scorecard with
            // each partner: the random steps then revoke, re-request, share,
            // unshare and relate from there.
            for (from, to) in [(0, 1), (0, 2), (1, 2)] {
                request(&sim.service, &sim.sites[from], codes[to], Directions::Both).await;
                approve(&sim.service, &sim.sites[to], &sim.sites[from]).await;
            }
            for from in 0..3 {
                for to in (0..3).filter(|to| *to != from) {
                    share(
                        &sim.service,
                        &sim.sites[from],
                        &sim.sites[to],
                        sim.scorecards[from][0],
                    )
                    .await;
                }
            }
            sim
        }

        /// The partner `offset` (0 or 1) away from `site`.
        fn partner(site: usize, offset: usize) -> usize {
            (site + 1 + offset % 2) % 3
        }

        /// Runs one step; refusals are fine.
        async fn run(&mut self, step: &Step) {
            let outcome: Result<Outcome, CommandError> = match *step {
                Step::CreateScorecard { site } => {
                    let id = ScorecardId::new();
                    let r = self
                        .service
                        .execute(
                            &self.sites[site].by(),
                            CreateScorecard {
                                site_id: self.sites[site].id,
                                scorecard_id: id,
                                name: name("Random"),
                            },
                        )
                        .await;
                    if r.is_ok() {
                        self.scorecards[site].push(id);
                    }
                    r
                }
                Step::CreateObject {
                    site,
                    kind,
                    container,
                } => {
                    let id = ObjectId::new();
                    let kinds = [
                        ObjectKind::Result,
                        ObjectKind::Indicator,
                        ObjectKind::Program,
                        ObjectKind::PerformanceMeasure,
                    ];
                    let r = self
                        .service
                        .execute(
                            &self.sites[site].by(),
                            CreateObject {
                                site_id: self.sites[site].id,
                                object_id: id,
                                kind: kinds[kind],
                                name: name("Random"),
                                container: container.and_then(|c| pick(&self.objects[site], c)),
                            },
                        )
                        .await;
                    if r.is_ok() {
                        self.objects[site].push(id);
                    }
                    r
                }
                Step::Place {
                    site,
                    object,
                    scorecard,
                }
                | Step::Remove {
                    site,
                    object,
                    scorecard,
                } => {
                    let (Some(object_id), Some(scorecard_id)) = (
                        pick(&self.objects[site], object),
                        pick(&self.scorecards[site], scorecard),
                    ) else {
                        return;
                    };
                    let (by, site_id) = (self.sites[site].by(), self.sites[site].id);
                    if matches!(step, Step::Place { .. }) {
                        self.service
                            .execute(
                                &by,
                                PlaceObjectOnScorecard {
                                    site_id,
                                    object_id,
                                    scorecard_id,
                                },
                            )
                            .await
                    } else {
                        self.service
                            .execute(
                                &by,
                                RemoveObjectFromScorecard {
                                    site_id,
                                    object_id,
                                    scorecard_id,
                                },
                            )
                            .await
                    }
                }
                Step::Request { from, to, both } => {
                    self.service
                        .execute(
                            &self.sites[from].by(),
                            RequestConnection {
                                site_id: self.sites[from].id,
                                partner_code: code(self.codes[to]),
                                directions: if both {
                                    Directions::Both
                                } else {
                                    Directions::Offer
                                },
                            },
                        )
                        .await
                }
                Step::Decide {
                    site,
                    partner,
                    what,
                    outgoing,
                } => {
                    let (s, p) = (&self.sites[site], &self.sites[partner]);
                    let link = if outgoing {
                        Link {
                            from: s.id,
                            to: p.id,
                        }
                    } else {
                        Link {
                            from: p.id,
                            to: s.id,
                        }
                    };
                    let (site_id, partner) = (s.id, p.id);
                    match what {
                        0 => {
                            self.service
                                .execute(&s.by(), ApproveConnection { site_id, partner })
                                .await
                        }
                        1 => {
                            self.service
                                .execute(&s.by(), DenyConnection { site_id, partner })
                                .await
                        }
                        2 => {
                            self.service
                                .execute(&s.by(), CancelConnectionRequest { site_id, partner })
                                .await
                        }
                        3 => {
                            self.service
                                .execute(
                                    &s.by(),
                                    RevokeSharing {
                                        site_id,
                                        from: link.from,
                                        to: link.to,
                                    },
                                )
                                .await
                        }
                        _ => unreachable!("four decisions"),
                    }
                }
                Step::Share {
                    from,
                    to,
                    scorecard,
                    share,
                } => {
                    let Some(id) = pick(&self.scorecards[from], scorecard) else {
                        return;
                    };
                    let (site_id, partner) = (self.sites[from].id, self.sites[to].id);
                    if share {
                        self.service
                            .execute(
                                &self.sites[from].by(),
                                ShareScorecard {
                                    site_id,
                                    partner,
                                    scorecard_id: id,
                                },
                            )
                            .await
                    } else {
                        self.service
                            .execute(
                                &self.sites[from].by(),
                                UnshareScorecard {
                                    site_id,
                                    partner,
                                    scorecard_id: id,
                                },
                            )
                            .await
                    }
                }
                Step::Link {
                    site,
                    partner,
                    object,
                    scorecard,
                } => {
                    let (Some(object_id), Some(scorecard_id)) = (
                        pick(&self.objects[partner], object),
                        pick(&self.scorecards[site], scorecard),
                    ) else {
                        return;
                    };
                    self.service
                        .execute(
                            &self.sites[site].by(),
                            LinkSharedObject {
                                site_id: self.sites[site].id,
                                relationship_id: RelationshipId::new(),
                                scorecard_id,
                                origin_site: self.sites[partner].id,
                                object_id,
                            },
                        )
                        .await
                }
                Step::Aggregate {
                    site,
                    partner,
                    object,
                    into,
                } => {
                    let (Some(object_id), Some(into_object)) = (
                        pick(&self.objects[partner], object),
                        pick(&self.objects[site], into),
                    ) else {
                        return;
                    };
                    self.service
                        .execute(
                            &self.sites[site].by(),
                            UseSharedMeasureInAggregation {
                                site_id: self.sites[site].id,
                                relationship_id: RelationshipId::new(),
                                into_object,
                                origin_site: self.sites[partner].id,
                                object_id,
                            },
                        )
                        .await
                }
                Step::Grant {
                    site,
                    user,
                    owner,
                    scorecard,
                    level,
                } => {
                    let Some(scorecard_id) = pick(&self.scorecards[owner], scorecard) else {
                        return;
                    };
                    self.service
                        .execute(
                            &self.sites[site].by(),
                            GrantScorecardAccess {
                                site_id: self.sites[site].id,
                                user_id: self.users[site][user],
                                scorecard_id,
                                level: AccessLevel::ALL[level],
                                owner_site: Some(self.sites[owner].id),
                            },
                        )
                        .await
                }
                Step::RevokeAccess {
                    site,
                    user,
                    owner,
                    scorecard,
                } => {
                    let Some(scorecard_id) = pick(&self.scorecards[owner], scorecard) else {
                        return;
                    };
                    self.service
                        .execute(
                            &self.sites[site].by(),
                            RevokeScorecardAccess {
                                site_id: self.sites[site].id,
                                user_id: self.users[site][user],
                                scorecard_id,
                            },
                        )
                        .await
                }
                Step::Flag {
                    site,
                    user,
                    flag,
                    on,
                } => {
                    let flag = BTreeSet::from([[
                        PermissionFlag::AllScorecards,
                        PermissionFlag::InstanceAdmin,
                        PermissionFlag::AddEditScorecardObjects,
                    ][flag]]);
                    let (enable, disable) = if on {
                        (flag, BTreeSet::new())
                    } else {
                        (BTreeSet::new(), flag)
                    };
                    self.service
                        .execute(
                            &self.sites[site].by(),
                            SetPermissionFlags {
                                site_id: self.sites[site].id,
                                user_id: self.users[site][user],
                                enable,
                                disable,
                            },
                        )
                        .await
                }
                Step::Active { site, user, on } => {
                    let user_id = self.users[site][user];
                    let (s, by) = (self.sites[site].id, self.sites[site].by());
                    if on {
                        self.service
                            .execute(
                                &by,
                                ReactivateUser {
                                    site_id: s,
                                    user_id,
                                },
                            )
                            .await
                    } else {
                        self.service
                            .execute(
                                &by,
                                DeactivateUser {
                                    site_id: s,
                                    user_id,
                                },
                            )
                            .await
                    }
                }
            };
            match outcome {
                Ok(_) | Err(CommandError::Domain(_)) => {}
                Err(other) => panic!("{step:?} failed: {other}"),
            }
        }

        fn targets(&self) -> Vec<Target> {
            let scorecards = self.scorecards.iter().flatten().map(|s| sc(*s));
            let objects = self.objects.iter().flatten().map(|o| ob(*o));
            scorecards.chain(objects).collect()
        }
    }

    fn status_of(state: LinkState) -> Option<LinkStatus> {
        match state {
            LinkState::None => None,
            LinkState::AwaitingApproval { .. } => Some(LinkStatus::AwaitingApproval),
            LinkState::Active => Some(LinkStatus::Active),
            LinkState::Denied => Some(LinkStatus::Denied),
            LinkState::Cancelled => Some(LinkStatus::Cancelled),
            LinkState::Revoked => Some(LinkStatus::Revoked),
        }
    }

    async fn check(steps: Vec<Step>) -> Result<(), TestCaseError> {
        let db = TestDb::new().await;
        let mut sim = Sim::new(&db).await;
        for step in &steps {
            sim.run(step).await;
        }
        let oracle = Oracle::fold(&whole_log(&db.store()).await);
        let pool = project(&db).await;

        // level_sql, every user × every target.
        let mut diffs = Vec::new();
        for user in sim.users.iter().flatten() {
            for target in sim.targets() {
                let sql = level(&pool, *user, target).await;
                let expected = oracle.level(*user, target);
                if sql != expected {
                    diffs.push(format!(
                        "{user} on {target:?}: sql {sql:?}, rules {expected:?}"
                    ));
                }
            }
        }
        prop_assert!(
            diffs.is_empty(),
            "level_sql disagrees:\n{}",
            diffs.join("\n")
        );

        // Q-5: links with their status, what is shared, users.
        for (i, s) in sim.sites.iter().enumerate() {
            let mut expected = BTreeMap::new();
            for (j, p) in sim.sites.iter().enumerate() {
                if i == j {
                    continue;
                }
                let state = oracle.connections.get(&pair(s.id, p.id));
                for link in [
                    Link {
                        from: s.id,
                        to: p.id,
                    },
                    Link {
                        from: p.id,
                        to: s.id,
                    },
                ] {
                    if let Some(status) = state.and_then(|c| status_of(c.link_state(link))) {
                        let shared = state.unwrap().shared(link).len() as i64;
                        expected.insert((link.from, link.to), (status, shared));
                    }
                }
            }
            let seen: BTreeMap<_, _> =
                dashboard::connections(&pool, s.id, dashboard::LinkPage::default())
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|c| ((c.from_site, c.to_site), (c.status, c.shared_scorecards)))
                    .collect();
            prop_assert_eq!(seen, expected, "connections of {}", sim.codes[i]);
            let shares: BTreeMap<SiteId, BTreeSet<ScorecardId>> =
                dashboard::shared_scorecards(&pool, s.id)
                    .await
                    .unwrap()
                    .into_iter()
                    .map(|p| {
                        (
                            p.partner,
                            p.scorecards.iter().map(|x| x.scorecard_id).collect(),
                        )
                    })
                    .collect();
            let expected_shares: BTreeMap<SiteId, BTreeSet<ScorecardId>> = sim
                .sites
                .iter()
                .filter(|p| p.id != s.id)
                .filter(|p| {
                    oracle.connections.get(&pair(s.id, p.id)).is_some_and(|c| {
                        c.link_state(Link {
                            from: s.id,
                            to: p.id,
                        })
                        .is_active()
                    })
                })
                .map(|p| (p.id, oracle.shared(s.id, p.id)))
                .collect();
            prop_assert_eq!(shares, expected_shares, "shares of {}", sim.codes[i]);
            let users = dashboard::users(&pool, s.id, &UsersQuery::default())
                .await
                .unwrap()
                .users;
            let state = &oracle.sites[&s.id];
            prop_assert_eq!(users.len(), state.users.len());
            for u in users {
                let expected = &state.users[&u.user_id];
                prop_assert_eq!(u.active, expected.active);
                prop_assert_eq!(&u.permissions, &expected.permissions);
                prop_assert_eq!(u.role, expected.role);
            }
        }

        // Batches of any size build the same tables.
        let whole = dump(&pool).await;
        for batch in [1, 5] {
            let pool = project_in_batches(&db, batch).await;
            prop_assert_eq!(dump(&pool).await, whole.clone(), "batches of {}", batch);
        }
        Ok(())
    }

    proptest! {
        #![proptest_config(ProptestConfig { cases: 16, max_shrink_iters: 100, ..ProptestConfig::default() })]

        #[test]
        fn level_sql_and_q5_agree_with_the_rules_on_random_worlds(
            steps in prop::collection::vec(step(), 1..60)
        ) {
            let runtime = tokio::runtime::Builder::new_multi_thread()
                .worker_threads(2)
                .enable_all()
                .build()
                .unwrap();
            runtime.block_on(check(steps))?;
        }
    }
}
