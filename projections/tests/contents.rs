//! The `site_contents` read model against real PostgreSQL, fed by the real
//! command service: after a sequence of commands its lists (a site's
//! scorecards, objects, relationships, what is shared with it, its child
//! sites) are what the commands did; the log applied in batches of any
//! size, and a rebuild by the runtime beside the live generation, give the
//! same rows; and paging returns every item exactly once, in order.
//!
//! Most tests build the model from the whole log into a schema of their own
//! and point the `rm.content_*` views at it, as the runtime does for the
//! live generation; `a_rebuild_by_the_runtime_…` runs the runtime itself.

#[path = "../../commands/tests/common/mod.rs"]
mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{by, operator};
use shareledger_commands::{ConsequenceWorker, Issued, Service};
use shareledger_core::catalog::{
    Directions, Name, ObjectField, ObjectId, ObjectKind, RelationshipId, Role, ScorecardId,
    SeatLimit, SiteCode, SiteId, UserId, Username,
};
use shareledger_core::connection::{
    ApproveConnection, CancelConnectionRequest, DenyConnection, RequestConnection, RevokeSharing,
    ShareScorecard, UnshareScorecard,
};
use shareledger_core::content::{
    ChangeObjectField, CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
    RemoveObjectFromScorecard, StopUsingSharedMeasure, UnlinkSharedObject,
    UseSharedMeasureInAggregation,
};
use shareledger_core::site::{AddUser, RegisterSite, SetParentSite};
use shareledger_events::store::{PgEventStore, PositionFrom};
use shareledger_events::{Direction, RecordedEvent};
use shareledger_projections::dashboard::contents::{
    self, ChildSitesPage, ContentTargetType, ObjectsPage, PageQuery, RelationshipKind,
    RelationshipsPage, ScorecardsPage, SharedWithPage,
};
use shareledger_projections::dashboard::SiteContents;
use shareledger_projections::projection::SqlProjection;
use shareledger_projections::runtime::{ProjectionRuntime, RuntimeOptions};
use shareledger_projections::ProjectionError;
use shareledger_tests::TestDb;
use sqlx::PgPool;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Building the read model
// ---------------------------------------------------------------------------

/// The schema the tests build the read model in.
const SCHEMA: &str = "contents_test_model";

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

/// Builds the read model from the whole log, `batch` events per `apply`,
/// in one transaction, and points the `rm.content_*` views at it.
async fn project_in_batches(db: &TestDb, batch: usize) -> PgPool {
    build(db, batch, true).await
}

/// Builds the read model from the whole log into [`SCHEMA`], `batch`
/// events per `apply`, in one transaction; and points the `rm.content_*`
/// views at it when `views` (not while a runtime owns them).
async fn build(db: &TestDb, batch: usize, views: bool) -> PgPool {
    let events = whole_log(&db.store()).await;
    let pool = db.pool().clone();
    let mut tx = pool.begin().await.unwrap();
    for sql in [
        format!("DROP SCHEMA IF EXISTS {SCHEMA} CASCADE"),
        format!("CREATE SCHEMA {SCHEMA}"),
        "CREATE SCHEMA IF NOT EXISTS rm".to_owned(),
    ] {
        sqlx::query(&sql).execute(&mut *tx).await.unwrap();
    }
    let model = SiteContents::default();
    model.create_tables(&mut tx, SCHEMA).await.unwrap();
    for chunk in events.chunks(batch.max(1)) {
        model.apply(&mut tx, SCHEMA, chunk).await.unwrap();
    }
    for table in SiteContents::TABLES.iter().filter(|_| views) {
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

/// Builds the read model from the whole log in one batch.
async fn project(db: &TestDb) -> PgPool {
    project_in_batches(db, usize::MAX).await
}

/// Every row of every table, as sorted text, read through `schema`.
async fn dump(pool: &PgPool, schema: &str) -> Vec<(String, Vec<String>)> {
    let mut out = Vec::new();
    for table in SiteContents::TABLES {
        let rows: Vec<String> = sqlx::query_scalar(&format!(
            "SELECT t::text FROM {schema}.{table} t ORDER BY 1"
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

fn name(raw: &str) -> Name {
    Name::parse(raw).unwrap()
}

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

/// Registers a site named `<code> site` (by an operator, or by the group's
/// admin when it has a parent) with an Administration user.
async fn site_under(service: &Service, code: &str, parent: Option<&Site>) -> Site {
    let id = SiteId::new();
    let command = RegisterSite {
        site_id: id,
        code: SiteCode::parse(code).unwrap(),
        name: name(&format!("{code} site")),
        seat_limit: SeatLimit::new(20).unwrap(),
        parent: parent.map(|p| p.id),
    };
    let issued = parent.map_or_else(operator, Site::by);
    service.execute(&issued, command).await.unwrap();
    let admin = UserId::new();
    service
        .execute(
            &operator(),
            AddUser {
                site_id: id,
                user_id: admin,
                username: Username::parse(&format!("admin@{}.org", code.to_lowercase())).unwrap(),
                name: name("Admin"),
                role: Role::Administration,
                email: None,
            },
        )
        .await
        .unwrap();
    Site { id, admin }
}

async fn site(service: &Service, code: &str) -> Site {
    site_under(service, code, None).await
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
    title: &str,
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
                name: name(title),
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

/// `from` asks `to` (by code) for links.
async fn request(service: &Service, from: &Site, to_code: &str, directions: Directions) {
    service
        .execute(
            &from.by(),
            RequestConnection {
                site_id: from.id,
                partner_code: SiteCode::parse(to_code).unwrap(),
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

/// `from` offers `to` a link and `to` approves it: `from → to` is active.
async fn connect(service: &Service, from: &Site, to: &Site, to_code: &str) {
    request(service, from, to_code, Directions::Offer).await;
    approve(service, to, from).await;
}

async fn revoke(service: &Service, acting: &Site, from: &Site, to: &Site) {
    service
        .execute(
            &acting.by(),
            RevokeSharing {
                site_id: acting.id,
                from: from.id,
                to: to.id,
            },
        )
        .await
        .unwrap();
}

async fn share(service: &Service, from: &Site, to: &Site, scorecard_id: ScorecardId) {
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
        .unwrap();
}

async fn unshare(service: &Service, from: &Site, to: &Site, scorecard_id: ScorecardId) {
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
        .unwrap();
}

/// `site` links `origin`'s object onto its own scorecard.
async fn link(
    service: &Service,
    site: &Site,
    scorecard_id: ScorecardId,
    origin: &Site,
    object_id: ObjectId,
) -> RelationshipId {
    let relationship_id = RelationshipId::new();
    service
        .execute(
            &site.by(),
            LinkSharedObject {
                site_id: site.id,
                relationship_id,
                scorecard_id,
                origin_site: origin.id,
                object_id,
            },
        )
        .await
        .unwrap();
    relationship_id
}

/// `site` uses `origin`'s measure in its own `into_object`.
async fn aggregate(
    service: &Service,
    site: &Site,
    into_object: ObjectId,
    origin: &Site,
    object_id: ObjectId,
) -> RelationshipId {
    let relationship_id = RelationshipId::new();
    service
        .execute(
            &site.by(),
            UseSharedMeasureInAggregation {
                site_id: site.id,
                relationship_id,
                into_object,
                origin_site: origin.id,
                object_id,
            },
        )
        .await
        .unwrap();
    relationship_id
}

// ---------------------------------------------------------------------------
// Reading the lists whole
// ---------------------------------------------------------------------------

fn all() -> PageQuery {
    PageQuery {
        limit: 1_000,
        after: None,
    }
}

async fn scorecards_of(pool: &PgPool, site: &Site) -> Vec<(ScorecardId, String, i64, i64)> {
    let page: ScorecardsPage = contents::scorecards(pool, site.id, &all()).await.unwrap();
    assert_eq!(page.next, None);
    page.items
        .into_iter()
        .map(|s| {
            (
                s.scorecard_id,
                s.name.to_string(),
                s.objects,
                s.linked_objects,
            )
        })
        .collect()
}

/// (object, kind, name, container and its name, scorecards and their names).
type ObjectRow = (
    ObjectId,
    ObjectKind,
    String,
    Option<(ObjectId, String)>,
    Vec<(ScorecardId, String)>,
);

async fn objects_of(pool: &PgPool, site: &Site, on: Option<ScorecardId>) -> Vec<ObjectRow> {
    let page: ObjectsPage = contents::objects(pool, site.id, on, &all()).await.unwrap();
    assert_eq!(page.next, None);
    page.items
        .into_iter()
        .map(|o| {
            (
                o.object_id,
                o.kind,
                o.name.to_string(),
                o.container.map(|c| (c.object_id, c.name.to_string())),
                o.scorecards
                    .into_iter()
                    .map(|s| (s.scorecard_id, s.name.to_string()))
                    .collect(),
            )
        })
        .collect()
}

/// (relationship, kind, target type, target id, target name, origin site,
/// origin code, origin name, object, object kind, object name).
type RelationshipRow = (
    RelationshipId,
    RelationshipKind,
    ContentTargetType,
    Uuid,
    String,
    SiteId,
    String,
    String,
    ObjectId,
    ObjectKind,
    String,
);

async fn relationships_of(pool: &PgPool, site: &Site) -> Vec<RelationshipRow> {
    let page: RelationshipsPage = contents::relationships(pool, site.id, &all())
        .await
        .unwrap();
    assert_eq!(page.next, None);
    page.items
        .into_iter()
        .map(|r| {
            (
                r.relationship_id,
                r.kind,
                r.target.target_type,
                r.target.id,
                r.target.name.to_string(),
                r.origin.site_id,
                r.origin.code.as_str().to_owned(),
                r.origin.name.to_string(),
                r.object.object_id,
                r.object.kind,
                r.object.name.to_string(),
            )
        })
        .collect()
}

/// (partner, partner code, partner name, scorecard, scorecard name).
async fn shared_with_of(
    pool: &PgPool,
    site: &Site,
) -> Vec<(SiteId, String, String, ScorecardId, String)> {
    let page: SharedWithPage = contents::shared_with(pool, site.id, &all()).await.unwrap();
    assert_eq!(page.next, None);
    page.items
        .into_iter()
        .map(|s| {
            (
                s.partner.site_id,
                s.partner.code.as_str().to_owned(),
                s.partner.name.to_string(),
                s.scorecard_id,
                s.name.to_string(),
            )
        })
        .collect()
}

async fn children_of(pool: &PgPool, site: &Site) -> Vec<(SiteId, String, String)> {
    let page: ChildSitesPage = contents::children(pool, site.id, &all()).await.unwrap();
    assert_eq!(page.next, None);
    page.items
        .into_iter()
        .map(|s| (s.site_id, s.code.as_str().to_owned(), s.name.to_string()))
        .collect()
}

fn s(raw: &str) -> String {
    raw.to_owned()
}

// ---------------------------------------------------------------------------
// The lists are what the commands did
// ---------------------------------------------------------------------------

#[tokio::test]
async fn given_a_sites_content_when_listed_then_scorecards_and_objects_carry_names_counts_containers_and_placements(
) {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let a = site(&service, "ALPHA").await;
    let other = site(&service, "OTHER").await;
    let youth = scorecard(&service, &a, "youth Outcomes").await;
    let board = scorecard(&service, &a, "Board").await;
    let empty = scorecard(&service, &a, "Zero").await;
    let result = object(&service, &a, ObjectKind::Result, "Healthy kids", None).await;
    let program = object(
        &service,
        &a,
        ObjectKind::Program,
        "After school",
        Some(result),
    )
    .await;
    let rate = object(
        &service,
        &a,
        ObjectKind::Indicator,
        "attendance rate",
        Some(program),
    )
    .await;
    let loose = object(&service, &a, ObjectKind::PerformanceMeasure, "Loose", None).await;
    place(&service, &a, result, youth).await;
    place(&service, &a, rate, youth).await;
    place(&service, &a, rate, board).await;
    place(&service, &a, loose, board).await;
    unplace(&service, &a, loose, board).await;
    // Fields change, names do not (no field is the name).
    service
        .execute(
            &a.by(),
            ChangeObjectField {
                site_id: a.id,
                object_id: rate,
                field: ObjectField::Description,
                value: "Share of days attended".into(),
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &a.by(),
            ChangeObjectField {
                site_id: a.id,
                object_id: rate,
                field: ObjectField::Status,
                value: "on track".into(),
            },
        )
        .await
        .unwrap();
    // Another site's content is not A's.
    let theirs = scorecard(&service, &other, "Board").await;
    let their_object = object(&service, &other, ObjectKind::Indicator, "Board", None).await;
    place(&service, &other, their_object, theirs).await;

    let pool = project(&db).await;
    assert_eq!(
        scorecards_of(&pool, &a).await,
        vec![
            (board, s("Board"), 1, 0),
            (youth, s("youth Outcomes"), 2, 0),
            (empty, s("Zero"), 0, 0),
        ]
    );
    let board_ref = (board, s("Board"));
    let youth_ref = (youth, s("youth Outcomes"));
    assert_eq!(
        objects_of(&pool, &a, None).await,
        vec![
            (
                program,
                ObjectKind::Program,
                s("After school"),
                Some((result, s("Healthy kids"))),
                vec![]
            ),
            (
                rate,
                ObjectKind::Indicator,
                s("attendance rate"),
                Some((program, s("After school"))),
                vec![board_ref.clone(), youth_ref.clone()]
            ),
            (
                result,
                ObjectKind::Result,
                s("Healthy kids"),
                None,
                vec![youth_ref.clone()]
            ),
            (
                loose,
                ObjectKind::PerformanceMeasure,
                s("Loose"),
                None,
                vec![]
            ),
        ]
    );
    // Filtered by a scorecard: the objects placed directly on it.
    let on_youth: Vec<ObjectId> = objects_of(&pool, &a, Some(youth))
        .await
        .into_iter()
        .map(|o| o.0)
        .collect();
    assert_eq!(on_youth, vec![rate, result]);
    assert!(objects_of(&pool, &a, Some(empty)).await.is_empty());
    // Another site's scorecard, or none at all: nothing of A is on it.
    assert!(objects_of(&pool, &a, Some(theirs)).await.is_empty());
    assert!(objects_of(&pool, &a, Some(ScorecardId::new()))
        .await
        .is_empty());
    assert_eq!(
        scorecards_of(&pool, &other).await,
        vec![(theirs, s("Board"), 1, 0)]
    );
    // A site with nothing, or no site at all, lists nothing.
    assert!(contents::scorecards(&pool, SiteId::new(), &all())
        .await
        .unwrap()
        .items
        .is_empty());
}

#[tokio::test]
async fn given_partner_relationships_when_listed_then_each_names_its_target_origin_site_and_partner_object(
) {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let a = site(&service, "ALPHA").await;
    let c = site(&service, "CEDAR").await;
    let b = site(&service, "BETA").await;
    // A and C share with B.
    let a_card = scorecard(&service, &a, "Shared measures").await;
    let a_rate = object(&service, &a, ObjectKind::Indicator, "Literacy rate", None).await;
    let a_result = object(&service, &a, ObjectKind::Result, "Readers", None).await;
    place(&service, &a, a_rate, a_card).await;
    place(&service, &a, a_result, a_card).await;
    let c_card = scorecard(&service, &c, "Cedar card").await;
    let c_measure = object(
        &service,
        &c,
        ObjectKind::PerformanceMeasure,
        "Books lent",
        None,
    )
    .await;
    place(&service, &c, c_measure, c_card).await;
    connect(&service, &a, &b, "BETA").await;
    connect(&service, &c, &b, "BETA").await;
    share(&service, &a, &b, a_card).await;
    share(&service, &c, &b, c_card).await;
    let b_card = scorecard(&service, &b, "Our results").await;
    let b_measure = object(&service, &b, ObjectKind::Indicator, "Total reading", None).await;
    let linked_rate = link(&service, &b, b_card, &a, a_rate).await;
    let linked_result = link(&service, &b, b_card, &a, a_result).await;
    let aggregated_rate = aggregate(&service, &b, b_measure, &a, a_rate).await;
    let aggregated_books = aggregate(&service, &b, b_measure, &c, c_measure).await;
    let linked_books = link(&service, &b, b_card, &c, c_measure).await;

    let pool = project(&db).await;
    let on_card = |id, origin: &Site, code: &str, object, kind, object_name: &str| {
        (
            id,
            RelationshipKind::Link,
            ContentTargetType::Scorecard,
            b_card.0,
            s("Our results"),
            origin.id,
            s(code),
            format!("{code} site"),
            object,
            kind,
            s(object_name),
        )
    };
    let into_measure = |id, origin: &Site, code: &str, object, kind, object_name: &str| {
        (
            id,
            RelationshipKind::Aggregation,
            ContentTargetType::Object,
            b_measure.0,
            s("Total reading"),
            origin.id,
            s(code),
            format!("{code} site"),
            object,
            kind,
            s(object_name),
        )
    };
    let books_linked = on_card(
        linked_books,
        &c,
        "CEDAR",
        c_measure,
        ObjectKind::PerformanceMeasure,
        "Books lent",
    );
    let books_aggregated = into_measure(
        aggregated_books,
        &c,
        "CEDAR",
        c_measure,
        ObjectKind::PerformanceMeasure,
        "Books lent",
    );
    let rate_linked = on_card(
        linked_rate,
        &a,
        "ALPHA",
        a_rate,
        ObjectKind::Indicator,
        "Literacy rate",
    );
    let rate_aggregated = into_measure(
        aggregated_rate,
        &a,
        "ALPHA",
        a_rate,
        ObjectKind::Indicator,
        "Literacy rate",
    );
    let result_linked = on_card(
        linked_result,
        &a,
        "ALPHA",
        a_result,
        ObjectKind::Result,
        "Readers",
    );
    // By the partner object's name, then the relationship's id.
    let mut expected = vec![
        books_linked.clone(),
        books_aggregated.clone(),
        rate_linked.clone(),
        rate_aggregated.clone(),
        result_linked.clone(),
    ];
    expected.sort_by_key(|r| (r.10.to_lowercase(), r.0 .0));
    assert_eq!(relationships_of(&pool, &b).await, expected);
    // Linked objects count on the scorecard they are linked onto; the
    // partners' own lists have none of B's relationships.
    assert_eq!(
        scorecards_of(&pool, &b).await,
        vec![(b_card, s("Our results"), 0, 3)]
    );
    assert!(relationships_of(&pool, &a).await.is_empty());
    assert_eq!(
        scorecards_of(&pool, &a).await,
        vec![(a_card, s("Shared measures"), 2, 0)]
    );

    // B undoes two of them (R-SHARE-4: UnlinkSharedObject,
    // StopUsingSharedMeasure).
    service
        .execute(
            &b.by(),
            UnlinkSharedObject {
                site_id: b.id,
                relationship_id: linked_books,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &b.by(),
            StopUsingSharedMeasure {
                site_id: b.id,
                relationship_id: aggregated_books,
            },
        )
        .await
        .unwrap();
    let pool = project(&db).await;
    let mut expected = vec![
        rate_linked.clone(),
        rate_aggregated.clone(),
        result_linked.clone(),
    ];
    expected.sort_by_key(|r| (r.10.to_lowercase(), r.0 .0));
    assert_eq!(relationships_of(&pool, &b).await, expected);

    // The Result leaves A's shared scorecard: the consequence worker
    // removes B's relationship to it (R-SHARE-4); until it has, the log
    // still holds it.
    unplace(&service, &a, a_result, a_card).await;
    let pool = project(&db).await;
    assert_eq!(relationships_of(&pool, &b).await.len(), 3);
    let head = db.store().head_position().await.unwrap();
    ConsequenceWorker::new(service.clone())
        .run(Some(head))
        .await
        .unwrap();
    let pool = project(&db).await;
    let mut expected = vec![rate_linked.clone(), rate_aggregated.clone()];
    expected.sort_by_key(|r| (r.10.to_lowercase(), r.0 .0));
    assert_eq!(relationships_of(&pool, &b).await, expected);

    // A revokes A→B (R-CONN-4): every relationship on A's objects goes.
    revoke(&service, &a, &a, &b).await;
    let pool = project(&db).await;
    assert!(relationships_of(&pool, &b).await.is_empty());
    assert_eq!(
        scorecards_of(&pool, &b).await,
        vec![(b_card, s("Our results"), 0, 0)]
    );
}

#[tokio::test]
async fn given_links_in_every_state_when_listing_shared_with_then_only_active_links_shares_show_per_partner(
) {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let b = site(&service, "BETA").await;
    let a = site(&service, "ALPHA").await;
    let c = site(&service, "CEDAR").await;
    let d = site(&service, "DELTA").await;
    let e = site(&service, "ECHO").await;
    let a1 = scorecard(&service, &a, "zeta").await;
    let a2 = scorecard(&service, &a, "Alpha card").await;
    let a3 = scorecard(&service, &a, "Unshared later").await;
    let c1 = scorecard(&service, &c, "Cedar card").await;
    let d1 = scorecard(&service, &d, "Delta card").await;
    let b1 = scorecard(&service, &b, "B's own").await;
    // A → B active, three shared, one unshared again.
    connect(&service, &a, &b, "BETA").await;
    share(&service, &a, &b, a1).await;
    share(&service, &a, &b, a2).await;
    share(&service, &a, &b, a3).await;
    unshare(&service, &a, &b, a3).await;
    // C → B active with one share; B → C too: B's shares are not shared
    // *with* B.
    request(&service, &c, "BETA", Directions::Both).await;
    approve(&service, &b, &c).await;
    share(&service, &c, &b, c1).await;
    share(&service, &b, &c, b1).await;
    // D → B shared, then revoked, then requested and approved again: a new
    // request starts from nothing shared (R-CONN-4).
    connect(&service, &d, &b, "BETA").await;
    share(&service, &d, &b, d1).await;
    revoke(&service, &b, &d, &b).await;
    let pool = project(&db).await;
    assert!(shared_with_of(&pool, &b)
        .await
        .iter()
        .all(|(partner, ..)| *partner != d.id));
    connect(&service, &d, &b, "BETA").await;
    // E's request is pending, then denied; then cancelled: never active.
    request(&service, &e, "BETA", Directions::Offer).await;
    service
        .execute(
            &b.by(),
            DenyConnection {
                site_id: b.id,
                partner: e.id,
            },
        )
        .await
        .unwrap();
    request(&service, &e, "BETA", Directions::Offer).await;
    service
        .execute(
            &e.by(),
            CancelConnectionRequest {
                site_id: e.id,
                partner: b.id,
            },
        )
        .await
        .unwrap();

    let pool = project(&db).await;
    let alpha = |id, n: &str| (a.id, s("ALPHA"), s("ALPHA site"), id, s(n));
    assert_eq!(
        shared_with_of(&pool, &b).await,
        vec![
            alpha(a2, "Alpha card"),
            alpha(a1, "zeta"),
            (c.id, s("CEDAR"), s("CEDAR site"), c1, s("Cedar card")),
        ]
    );
    assert_eq!(
        shared_with_of(&pool, &c).await,
        vec![(b.id, s("BETA"), s("BETA site"), b1, s("B's own"))]
    );
    assert!(shared_with_of(&pool, &a).await.is_empty());

    // Sharing again over D → B's new link shows it again; revoking C → B
    // takes C's away at once.
    share(&service, &d, &b, d1).await;
    revoke(&service, &c, &c, &b).await;
    let pool = project(&db).await;
    assert_eq!(
        shared_with_of(&pool, &b).await,
        vec![
            alpha(a2, "Alpha card"),
            alpha(a1, "zeta"),
            (d.id, s("DELTA"), s("DELTA site"), d1, s("Delta card")),
        ]
    );
}

#[tokio::test]
async fn given_a_group_when_children_are_registered_and_moved_then_children_lists_the_current_ones()
{
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let group = site(&service, "GROUP").await;
    let other = site(&service, "OTHERGROUP").await;
    let north = site_under(&service, "NORTH", Some(&group)).await;
    let south = site_under(&service, "SOUTH", Some(&group)).await;
    let east = site_under(&service, "EAST", Some(&group)).await;
    let loner = site(&service, "LONER").await;
    // EAST moves to the other group; LONER joins this one; NORTH leaves.
    for (child, parent) in [
        (&east, Some(other.id)),
        (&loner, Some(group.id)),
        (&north, None),
    ] {
        service
            .execute(
                &operator(),
                SetParentSite {
                    site_id: child.id,
                    parent,
                },
            )
            .await
            .unwrap();
    }
    let pool = project(&db).await;
    assert_eq!(
        children_of(&pool, &group).await,
        vec![
            (loner.id, s("LONER"), s("LONER site")),
            (south.id, s("SOUTH"), s("SOUTH site")),
        ]
    );
    assert_eq!(
        children_of(&pool, &other).await,
        vec![(east.id, s("EAST"), s("EAST site"))]
    );
    assert!(children_of(&pool, &north).await.is_empty());
}

// ---------------------------------------------------------------------------
// Batches and rebuilds
// ---------------------------------------------------------------------------

/// A log touching every table and every kind of op, with ops of one kind
/// on the same rows in one batch (a placement made and taken back, a
/// share made and unshared, a link revoked and requested again).
async fn rich_world(db: &TestDb) -> Service {
    let service = Service::new(db.store());
    let group = site(&service, "GROUP").await;
    let a = site_under(&service, "ALPHA", Some(&group)).await;
    let b = site(&service, "BETA").await;
    let s1 = scorecard(&service, &a, "One").await;
    let s2 = scorecard(&service, &a, "two").await;
    let result = object(&service, &a, ObjectKind::Result, "Result", None).await;
    let inner = object(&service, &a, ObjectKind::Indicator, "Inner", Some(result)).await;
    let measure = object(&service, &a, ObjectKind::Indicator, "Measure", None).await;
    place(&service, &a, result, s1).await;
    place(&service, &a, measure, s1).await;
    place(&service, &a, measure, s2).await;
    unplace(&service, &a, measure, s2).await;
    place(&service, &a, measure, s2).await;
    request(&service, &a, "BETA", Directions::Both).await;
    approve(&service, &b, &a).await;
    share(&service, &a, &b, s1).await;
    share(&service, &a, &b, s2).await;
    unshare(&service, &a, &b, s2).await;
    let b_card = scorecard(&service, &b, "B card").await;
    let b_measure = object(
        &service,
        &b,
        ObjectKind::PerformanceMeasure,
        "B measure",
        None,
    )
    .await;
    place(&service, &b, b_measure, b_card).await;
    share(&service, &b, &a, b_card).await;
    link(&service, &b, b_card, &a, inner).await;
    aggregate(&service, &b, b_measure, &a, measure).await;
    let gone = link(&service, &b, b_card, &a, measure).await;
    service
        .execute(
            &b.by(),
            UnlinkSharedObject {
                site_id: b.id,
                relationship_id: gone,
            },
        )
        .await
        .unwrap();
    link(&service, &a, s2, &b, b_measure).await;
    revoke(&service, &a, &b, &a).await;
    request(&service, &b, "ALPHA", Directions::Offer).await;
    approve(&service, &a, &b).await;
    share(&service, &b, &a, b_card).await;
    service
        .execute(
            &operator(),
            SetParentSite {
                site_id: b.id,
                parent: Some(group.id),
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &operator(),
            SetParentSite {
                site_id: a.id,
                parent: None,
            },
        )
        .await
        .unwrap();
    service
}

#[tokio::test]
async fn given_any_batch_size_when_the_log_is_applied_then_the_tables_are_the_same() {
    let db = TestDb::new().await;
    rich_world(&db).await;
    let whole = {
        let pool = project_in_batches(&db, usize::MAX).await;
        dump(&pool, SCHEMA).await
    };
    for (table, rows) in &whole {
        assert!(!rows.is_empty(), "{table} has rows");
    }
    for batch in [1, 2, 3, 5, 7] {
        let pool = project_in_batches(&db, batch).await;
        assert_eq!(dump(&pool, SCHEMA).await, whole, "batches of {batch}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn given_a_live_model_when_the_runtime_rebuilds_it_from_the_log_then_the_rows_are_the_same() {
    const WAIT: Duration = Duration::from_secs(60);
    let db = TestDb::new().await;
    let service = rich_world(&db).await;
    let store = db.store();
    let runtime = ProjectionRuntime::start(
        store.clone(),
        vec![std::sync::Arc::new(SiteContents::default())],
        RuntimeOptions {
            batch_size: 4,
            ..RuntimeOptions::default()
        },
    )
    .await
    .unwrap();
    let head = store.head_position().await.unwrap();
    runtime.wait_for(head, WAIT).await.unwrap();
    let live = dump(db.pool(), "rm").await;
    // The live generation, applied batch by batch as the log grew, is what
    // one pass over the log builds.
    let expected = {
        let pool = build(&db, usize::MAX, false).await;
        dump(&pool, SCHEMA).await
    };
    assert_eq!(live, expected);

    assert_eq!(runtime.rebuild(SiteContents::NAME).await.unwrap(), 2);
    runtime
        .wait_for_generation(SiteContents::NAME, 2, WAIT)
        .await
        .unwrap();
    runtime.wait_for(head, WAIT).await.unwrap();
    assert_eq!(dump(db.pool(), "rm").await, live, "the rebuilt generation");

    // And it follows the log on: a new scorecard shows.
    let g = site(&service, "LATE").await;
    let late = scorecard(&service, &g, "Late card").await;
    let head = store.head_position().await.unwrap();
    runtime.wait_for(head, WAIT).await.unwrap();
    let fresh = contents::scorecards(db.pool(), g.id, &all()).await.unwrap();
    assert_eq!(
        fresh
            .items
            .iter()
            .map(|s| s.scorecard_id)
            .collect::<Vec<_>>(),
        vec![late]
    );
    runtime.shutdown().await.unwrap();
}

// ---------------------------------------------------------------------------
// Paging
// ---------------------------------------------------------------------------

/// Names that tie case-insensitively, sort apart only by id, and hold
/// cursor-unfriendly text.
const NAMES: [&str; 6] = ["alpha", "Alpha", "ALPHA", "beta. gamma", "Zoë", "ß"];

/// Every page of a list, asked `limit` at a time; the ids in page order.
async fn every_page<F, Fut>(limit: u32, mut ask: F) -> Vec<Uuid>
where
    F: FnMut(PageQuery) -> Fut,
    Fut: std::future::Future<Output = Ids>,
{
    let mut out = Vec::new();
    let mut after = None;
    let mut pages = 0;
    loop {
        let (ids, next) = ask(PageQuery {
            limit,
            after: after.clone(),
        })
        .await;
        pages += 1;
        assert!(ids.len() <= limit as usize, "a page holds at most {limit}");
        out.extend(ids.iter().copied());
        match next {
            Some(cursor) => {
                assert_eq!(ids.len(), limit as usize, "a page before the last is full");
                after = Some(cursor);
            }
            None => break,
        }
        assert!(pages < 1_000, "paging ends");
    }
    out
}

/// A page's ids in order, and its `next`.
type Ids = (Vec<Uuid>, Option<String>);

fn scorecard_ids(p: ScorecardsPage) -> Ids {
    (p.items.iter().map(|i| i.scorecard_id.0).collect(), p.next)
}

fn object_ids(p: ObjectsPage) -> Ids {
    (p.items.iter().map(|i| i.object_id.0).collect(), p.next)
}

fn relationship_ids(p: RelationshipsPage) -> Ids {
    (
        p.items.iter().map(|i| i.relationship_id.0).collect(),
        p.next,
    )
}

fn shared_ids(p: SharedWithPage) -> Ids {
    (p.items.iter().map(|i| i.scorecard_id.0).collect(), p.next)
}

fn site_ids(p: ChildSitesPage) -> Ids {
    (p.items.iter().map(|i| i.site_id.0).collect(), p.next)
}

#[tokio::test]
async fn given_many_items_when_paged_with_any_limit_then_every_item_comes_exactly_once_in_order() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let group = site(&service, "GROUP").await;
    let b = site(&service, "BETA").await;
    // Two partners of the group, each sharing several scorecards with it.
    let mut partners = Vec::new();
    for code in ["PA", "PB"] {
        let p = site_under(&service, code, Some(&group)).await;
        connect(&service, &p, &group, "GROUP").await;
        for title in NAMES.iter().take(4) {
            let card = scorecard(&service, &p, title).await;
            share(&service, &p, &group, card).await;
        }
        partners.push(p);
    }
    for (i, code) in ["KA", "KB", "KC", "KD", "KE"].iter().enumerate() {
        let child = site_under(&service, code, Some(&group)).await;
        let _ = (i, child);
    }
    let mut cards = Vec::new();
    for title in NAMES.iter().chain(NAMES.iter()) {
        cards.push(scorecard(&service, &group, title).await);
    }
    let mut objects = Vec::new();
    for (i, title) in NAMES.iter().chain(NAMES.iter()).enumerate() {
        let kind = [ObjectKind::Indicator, ObjectKind::Result][i % 2];
        let o = object(&service, &group, kind, title, None).await;
        place(&service, &group, o, cards[i % 3]).await;
        objects.push(o);
    }
    // B links the group's objects, and the group links partner objects.
    connect(&service, &group, &b, "BETA").await;
    share(&service, &group, &b, cards[0]).await;
    let b_card = scorecard(&service, &b, "B card").await;
    for o in objects.iter().step_by(3) {
        link(&service, &b, b_card, &group, *o).await;
    }
    for p in &partners {
        let card = scorecard(&service, p, "More").await;
        for title in NAMES {
            let o = object(&service, p, ObjectKind::Indicator, title, None).await;
            place(&service, p, o, card).await;
        }
        share(&service, p, &group, card).await;
    }
    let pool = project(&db).await;
    for p in &partners {
        let theirs: Vec<ObjectId> = objects_of(&pool, p, None)
            .await
            .into_iter()
            .map(|o| o.0)
            .collect();
        for o in theirs {
            link(&service, &group, cards[1], p, o).await;
        }
    }
    let pool = project(&db).await;

    let (pool, g) = (&pool, group.id);
    let on = Some(cards[0]);
    // Each list whole, in one page.
    let whole = [
        scorecard_ids(contents::scorecards(pool, g, &all()).await.unwrap()),
        object_ids(contents::objects(pool, g, None, &all()).await.unwrap()),
        object_ids(contents::objects(pool, g, on, &all()).await.unwrap()),
        relationship_ids(contents::relationships(pool, g, &all()).await.unwrap()),
        shared_ids(contents::shared_with(pool, g, &all()).await.unwrap()),
        site_ids(contents::children(pool, g, &all()).await.unwrap()),
    ];
    let sizes: Vec<usize> = whole.iter().map(|(ids, _)| ids.len()).collect();
    assert_eq!(sizes, [12, 12, 4, 12, 10, 7]);
    for (ids, next) in &whole {
        assert_eq!(next, &None);
        let distinct: BTreeSet<&Uuid> = ids.iter().collect();
        assert_eq!(distinct.len(), ids.len(), "no item twice");
    }
    for limit in [1, 2, 3, 5, 7, 11, 12, 13] {
        let paged = [
            every_page(limit, |q| async move {
                scorecard_ids(contents::scorecards(pool, g, &q).await.unwrap())
            })
            .await,
            every_page(limit, |q| async move {
                object_ids(contents::objects(pool, g, None, &q).await.unwrap())
            })
            .await,
            every_page(limit, |q| async move {
                object_ids(contents::objects(pool, g, on, &q).await.unwrap())
            })
            .await,
            every_page(limit, |q| async move {
                relationship_ids(contents::relationships(pool, g, &q).await.unwrap())
            })
            .await,
            every_page(limit, |q| async move {
                shared_ids(contents::shared_with(pool, g, &q).await.unwrap())
            })
            .await,
            every_page(limit, |q| async move {
                site_ids(contents::children(pool, g, &q).await.unwrap())
            })
            .await,
        ];
        for (list, (paged, (whole, _))) in paged.iter().zip(&whole).enumerate() {
            assert_eq!(paged, whole, "list {list}, pages of {limit}");
        }
    }
    // The default page is 50 items.
    let default = contents::scorecards(pool, g, &PageQuery::default())
        .await
        .unwrap();
    assert_eq!(default.items.len(), 12);
}

#[tokio::test]
async fn given_a_cursor_this_list_did_not_give_out_then_it_is_a_bad_cursor() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    let a = site(&service, "ALPHA").await;
    for title in ["One", "Two", "Three"] {
        scorecard(&service, &a, title).await;
        object(&service, &a, ObjectKind::Indicator, title, None).await;
    }
    let pool = project(&db).await;
    let first = contents::scorecards(
        &pool,
        a.id,
        &PageQuery {
            limit: 1,
            after: None,
        },
    )
    .await
    .unwrap();
    let scorecards_cursor = first.next.expect("more follow");
    let ask = |after: &str| PageQuery {
        limit: 1,
        after: Some(after.to_owned()),
    };
    // Another list's cursor, text that is no cursor, a key of odd length.
    let id = Uuid::new_v4().simple().to_string();
    for bad in [
        scorecards_cursor.as_str(),
        "garbage",
        "",
        &format!("ob.0.{id}"),
        &format!("ob.zz.{id}"),
        &format!("ob.{id}"),
    ] {
        let answer = contents::objects(&pool, a.id, None, &ask(bad)).await;
        assert!(
            matches!(answer, Err(ProjectionError::BadCursor(ref raw)) if raw == bad),
            "{bad:?}: {answer:?}"
        );
    }
    for bad in ["garbage", &format!("sc.zz.{id}")] {
        for answer in [
            contents::scorecards(&pool, a.id, &ask(bad))
                .await
                .map(|_| ()),
            contents::relationships(&pool, a.id, &ask(bad))
                .await
                .map(|_| ()),
            contents::shared_with(&pool, a.id, &ask(bad))
                .await
                .map(|_| ()),
            contents::children(&pool, a.id, &ask(bad)).await.map(|_| ()),
        ] {
            assert!(
                matches!(answer, Err(ProjectionError::BadCursor(_))),
                "{bad:?}: {answer:?}"
            );
        }
    }
    // The cursor it gave out goes on.
    let second = contents::scorecards(&pool, a.id, &ask(&scorecards_cursor))
        .await
        .unwrap();
    assert_eq!(second.items.len(), 1);
    assert_ne!(second.items[0].scorecard_id, first.items[0].scorecard_id);
}
