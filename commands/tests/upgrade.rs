//! A log written before events had tags keeps working (issue 15): a
//! database at the schema of the previous version, written through the
//! previous `sl_append` (no tags), is migrated; the events stored before get
//! exactly the tags the catalog gives them, and the command service decides
//! and appends on it, with consistency boundaries and with revisions.

use std::borrow::Cow;

use shareledger_commands::{Issued, Service};
use shareledger_core::catalog::tags::tags_of;
use shareledger_core::catalog::{
    content_stream, site_code_stream, site_stream, AccessLevel, ContentEvent, DomainEvent, Name,
    NewUser, ObjectField, ObjectId, ObjectKind, Role, ScorecardId, SeatLimit, SiteCode,
    SiteCodeEvent, SiteEvent, SiteId, UserId, UserOrigin, Username,
};
use shareledger_core::content::{ChangeObjectField, CreateObject};
use shareledger_core::site::AddUser;
use shareledger_events::store::{PgEventStore, MIGRATOR};
use shareledger_events::{Actor, EventMetadata};
use shareledger_tests::TestDb;
use sqlx::migrate::Migrator;
use sqlx::{PgPool, Row};
use uuid::Uuid;

/// The first migration of the tagged log.
const TAGS_MIGRATION: i64 = 20261207000001;

/// Appends through the previous version's `sl_append` (nine arrays, no
/// tags), as a process of that version did.
async fn old_append<E: DomainEvent>(pool: &PgPool, stream: &str, events: &[E]) {
    let n = events.len();
    let metadata = serde_json::to_value(EventMetadata::new(
        Actor::Operator {
            name: "the previous version".into(),
        },
        Uuid::new_v4(),
    ))
    .unwrap();
    sqlx::query("SELECT 1 FROM sl_append($1, $2, $3, $4, $5, $6, $7, $8, $9)")
        .bind(vec![stream.to_owned()])
        .bind(vec![-1i64])
        .bind(vec![n as i32])
        .bind(vec![1i32; n])
        .bind((0..n).map(|_| Uuid::new_v4()).collect::<Vec<_>>())
        .bind(
            events
                .iter()
                .map(|e| e.event_type().to_owned())
                .collect::<Vec<_>>(),
        )
        .bind(vec![1i32; n])
        .bind(events.iter().map(|e| e.data()).collect::<Vec<_>>())
        .bind(vec![metadata; n])
        .fetch_all(pool)
        .await
        .expect("the previous sl_append takes nine arrays");
}

#[tokio::test]
async fn a_log_written_before_tags_is_tagged_on_migration_and_accepts_every_kind_of_command() {
    let db = TestDb::empty().await;
    let pool = db.pool();
    // The schema of the previous version. (Migrator's fields are how sqlx's
    // own macro builds one; a subset of ours is the previous schema.)
    let previous = Migrator {
        migrations: Cow::Owned(
            MIGRATOR
                .iter()
                .filter(|m| m.version < TAGS_MIGRATION)
                .cloned()
                .collect(),
        ),
        ..Migrator::DEFAULT
    };
    previous.run(pool).await.unwrap();

    // A site, its admin and some content, written by the previous version.
    let site = SiteId::new();
    let admin = UserId::new();
    let code = SiteCode::parse("OLDLOG").unwrap();
    let (scorecard, object) = (ScorecardId::new(), ObjectId::new());
    old_append(
        pool,
        &site_code_stream(&code),
        &[SiteCodeEvent::SiteCodeClaimed {
            code: code.clone(),
            site_id: site,
        }],
    )
    .await;
    old_append(
        pool,
        &site_stream(site),
        &[
            SiteEvent::SiteRegistered {
                site_id: site,
                code,
                name: Name::parse("Old log").unwrap(),
                seat_limit: SeatLimit::new(10).unwrap(),
                parent: None,
            },
            SiteEvent::UserAdded {
                user: NewUser {
                    user_id: admin,
                    username: Username::parse("admin@old.example").unwrap(),
                    name: Name::parse("Admin").unwrap(),
                    role: Role::Administration,
                    permissions: Role::Administration.default_permissions(),
                    email: None,
                },
                origin: UserOrigin::Added,
                scorecard_access: Default::default(),
                hide_organization_settings: false,
            },
            SiteEvent::ScorecardAccessGranted {
                user_id: admin,
                scorecard_id: scorecard,
                level: AccessLevel::Editor,
            },
        ],
    )
    .await;
    old_append(
        pool,
        &content_stream(site),
        &[
            ContentEvent::ScorecardCreated {
                scorecard_id: scorecard,
                name: Name::parse("Outcomes").unwrap(),
            },
            ContentEvent::ObjectCreated {
                object_id: object,
                kind: ObjectKind::Indicator,
                name: Name::parse("Reading").unwrap(),
                container: None,
            },
            ContentEvent::ObjectPlacedOnScorecard {
                object_id: object,
                scorecard_id: scorecard,
            },
        ],
    )
    .await;

    // Migrated: every old event has the tags the catalog gives it.
    PgEventStore::migrate(pool).await.unwrap();
    let events = sqlx::query(
        "SELECT global_position, stream_name, event_type, schema_version, data \
         FROM sl_events ORDER BY global_position",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(events.len(), 7);
    for event in &events {
        let position: i64 = event.get("global_position");
        let stream: String = event.get("stream_name");
        let expected: Vec<String> = tags_of(
            &stream,
            event.get("event_type"),
            event.get::<i32, _>("schema_version") as u32,
            &event.get("data"),
        )
        .into_iter()
        .map(|t| t.to_string())
        .collect();
        assert!(!expected.is_empty(), "catalog events have tags");
        let stored: Vec<String> = sqlx::query_scalar(
            "SELECT tag FROM sl_event_tags WHERE global_position = $1 ORDER BY tag",
        )
        .bind(position)
        .fetch_all(pool)
        .await
        .unwrap();
        assert_eq!(stored, expected, "event {position} of {stream}");
    }
    // Migrating again derives nothing twice.
    PgEventStore::migrate(pool).await.unwrap();
    let tags: i64 = sqlx::query_scalar("SELECT count(*) FROM sl_event_tags")
        .fetch_one(pool)
        .await
        .unwrap();
    let expected: usize = events
        .iter()
        .map(|e| {
            tags_of(
                e.get::<String, _>("stream_name").as_str(),
                e.get("event_type"),
                1,
                &e.get("data"),
            )
            .len()
        })
        .sum();
    assert_eq!(tags as usize, expected);

    // The command service decides on it: a boundary-checked edit, a
    // revision-checked user change, new content.
    let service = Service::new(PgEventStore::new(pool.clone()));
    let by_admin = || Issued {
        actor: Actor::User {
            user_id: admin.0,
            site_id: site.0,
        },
        key: Uuid::new_v4(),
    };
    service
        .execute(
            &by_admin(),
            ChangeObjectField {
                site_id: site,
                object_id: object,
                field: ObjectField::Analysis,
                value: "read before the upgrade".into(),
            },
        )
        .await
        .expect("an edit bounded by tags on a migrated log");
    service
        .execute(
            &by_admin(),
            AddUser {
                site_id: site,
                user_id: UserId::new(),
                username: Username::parse("new@old.example").unwrap(),
                name: Name::parse("New").unwrap(),
                role: Role::Presenter,
                email: None,
            },
        )
        .await
        .expect("a user added on a migrated log");
    service
        .execute(
            &by_admin(),
            CreateObject {
                site_id: site,
                object_id: ObjectId::new(),
                kind: ObjectKind::Program,
                name: Name::parse("After").unwrap(),
                container: None,
            },
        )
        .await
        .expect("content created on a migrated log");
    let untagged: i64 = sqlx::query_scalar(
        "SELECT count(*) FROM sl_events e WHERE NOT EXISTS \
         (SELECT 1 FROM sl_event_tags t WHERE t.global_position = e.global_position)",
    )
    .fetch_one(pool)
    .await
    .unwrap();
    assert_eq!(untagged, 0, "every event, old and new, has its tags");
}
