//! The shared table of cases (`core/tests/access_cases/mod.rs`) against
//! the read side: every case's world is appended to one log on real
//! PostgreSQL (each case with sites of its own), the log is applied to an
//! [`AccessIndex`] and to the `access_tables` read model, and each case's
//! level is asked of
//!
//! * the index: Q-1 `level` and `check` (every action), Q-2 `lookup` (the
//!   target listed at the level, or not listed) and Q-3 `viewers`;
//! * its explanations, Q-4: the level, the best path's level, and missing
//!   facts exactly for a denial;
//! * `level_sql`, the level by one SQL query over the persisted tables.
//!
//! The core side runs the same table in `core/tests/access_rule.rs`.

#[path = "../../core/tests/access_cases/mod.rs"]
mod access_cases;

use access_cases::{Event, On, World, CASES};
use shareledger_core::catalog::{
    connection_stream, content_stream, site_stream, AccessLevel, Action, DomainEvent,
};
use shareledger_events::store::{PgEventStore, PositionFrom};
use shareledger_events::{Direction, ExpectedRevision, RecordedEvent};
use shareledger_projections::access::{AccessIndex, LookupQuery, Target, Viewer, MAX_PAGE};
use shareledger_projections::dashboard::{level_sql, AccessTables};
use shareledger_projections::projection::SqlProjection;
use shareledger_tests::{fixtures, TestDb};

/// The schema the access tables are built in.
const SCHEMA: &str = "access_cases";

async fn append(store: &PgEventStore, world: &World) {
    for event in &world.events {
        let (stream, event_type, data) = match event {
            Event::Site(site, e) => (site_stream(*site), e.event_type(), e.data()),
            Event::Content(site, e) => (content_stream(*site), e.event_type(), e.data()),
            Event::Connection(e) => (
                connection_stream(world.a, world.b),
                e.event_type(),
                e.data(),
            ),
        };
        store
            .append(
                &fixtures::stream(&stream),
                ExpectedRevision::Any,
                vec![fixtures::event(event_type, data)],
            )
            .await
            .expect("append a case's event");
    }
}

async fn whole_log(store: &PgEventStore) -> Vec<RecordedEvent> {
    let mut events = Vec::new();
    loop {
        let from = PositionFrom::At(events.len() as u64 + 1);
        let page = store
            .read_all(Direction::Forwards, from, 5_000)
            .await
            .expect("read the log");
        if page.is_empty() {
            return events;
        }
        events.extend(page);
    }
}

/// Builds the access tables from `events` and points the `rm` views at
/// them, as the runtime does for the live generation.
async fn project(db: &TestDb, events: &[RecordedEvent]) {
    let mut tx = db.pool().begin().await.expect("begin");
    for sql in [
        format!("CREATE SCHEMA {SCHEMA}"),
        "CREATE SCHEMA IF NOT EXISTS rm".to_string(),
    ] {
        sqlx::query(&sql).execute(&mut *tx).await.expect("schemas");
    }
    let tables = AccessTables::default();
    tables
        .create_tables(&mut tx, SCHEMA)
        .await
        .expect("create the tables");
    tables
        .apply(&mut tx, SCHEMA, events)
        .await
        .expect("apply the log");
    for table in AccessTables::TABLES {
        sqlx::query(&format!(
            "CREATE OR REPLACE VIEW rm.{table} AS SELECT * FROM {SCHEMA}.{table}"
        ))
        .execute(&mut *tx)
        .await
        .expect("a view");
    }
    tx.commit().await.expect("commit");
}

fn target(world: &World, on: On) -> Target {
    match on {
        On::Scorecard(s) => Target::Scorecard(world.scorecard(s)),
        On::Object(o) => Target::Object(world.object(o)),
    }
}

#[tokio::test]
async fn the_read_side_answers_the_shared_table_of_cases() {
    let db = TestDb::new().await;
    let store = db.store();
    let worlds: Vec<World> = CASES.iter().enumerate().map(|(n, c)| c.world(n)).collect();
    for world in &worlds {
        append(&store, world).await;
    }
    let events = whole_log(&store).await;
    let mut index = AccessIndex::new();
    for event in &events {
        index.apply(event).expect("the index applies the log");
    }
    project(&db, &events).await;

    let mut wrong = Vec::new();
    for (case, world) in CASES.iter().zip(&worlds) {
        let target = target(world, case.on);
        let user = world.user;
        // (implementation, its level), compared with the table below.
        let mut answers: Vec<(&str, Option<AccessLevel>)> = Vec::new();
        let mut answer = |implementation, got| answers.push((implementation, got));

        //
        answer(
            "AccessIndex::level",
            index.level(user, target).expect("known"),
        );
        for action in [Action::View, Action::Update, Action::Edit, Action::Admin] {
            let allowed = index.check(user, target, action).expect("known");
            let expected = case
                .expected
                .is_some_and(|level| level >= action.required_level());
            if allowed != expected {
                wrong.push(format!(
                    "{}: AccessIndex::check({action:?}) says {allowed}",
                    case.name
                ));
            }
        }

        // the target, listed at its level, or not listed.
        let page = index
            .lookup(
                user,
                &LookupQuery {
                    limit: MAX_PAGE,
                    ..LookupQuery::default()
                },
            )
            .expect("a lookup");
        assert!(page.next.is_none(), "a case's world fits one page");
        let listed = page.items.iter().find(|v| v.target == target);
        answer("AccessIndex::lookup", listed.map(|v| v.level));

        // the user among the target's viewers, at its level.
        let viewers = index.viewers(target).expect("a known target");
        let viewer = viewers.iter().find(|v: &&Viewer| v.user == user);
        answer("AccessIndex::viewers", viewer.map(|v| v.level));

        // the best path's level; missing facts exactly for a denial.
        let explanation = index.explain(user, target).expect("known");
        answer("AccessIndex::explain (level)", explanation.level);
        answer(
            "AccessIndex::explain (best path)",
            explanation.paths.iter().map(|p| p.level).max(),
        );
        if explanation.missing.is_empty() != case.expected.is_some() {
            wrong.push(format!(
                "{}: explain lists {} missing fact(s) for {:?}",
                case.name,
                explanation.missing.len(),
                case.expected
            ));
        }

        // The SQL.
        answer(
            "level_sql",
            level_sql(db.pool(), user, target).await.expect("known"),
        );
        for (implementation, got) in answers {
            if got != case.expected {
                wrong.push(format!(
                    "{}: {implementation} says {got:?}, the table {:?}",
                    case.name, case.expected
                ));
            }
        }
    }
    assert!(
        wrong.is_empty(),
        "{} disagreement(s) with the table:\n{}",
        wrong.len(),
        wrong.join("\n")
    );
}
