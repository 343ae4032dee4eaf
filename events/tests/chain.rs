//! The integrity chain against real PostgreSQL: sealing and verifying a
//! clean log (legitimate deletes and tombstones included), every column of
//! an event row altered, rows removed and inserted, seals tampered with, a
//! rewritten chain caught by an anchor, and sealers racing each other and
//! concurrent writers.
//!
//! Tampering is done as a superuser would: the append-only triggers are
//! disabled first.

use std::time::Duration;

use rand::{Rng, SeedableRng};
use shareledger_events::store::verify_with_progress;
use shareledger_events::store::{
    verify, ChainAnchor, ChainError, ChainProblem, PgEventStore, SealProgress, Sealer,
    SealerOptions, StreamAppend, VerifyOptions, VerifyReport, HASHED_COLUMN_NAMES,
};
use shareledger_events::ExpectedRevision;
use shareledger_tests::fixtures::{event, events, metadata, stream};
use shareledger_tests::TestDb;
use uuid::Uuid;

/// How long a test waits for the sealer to reach a position.
const WAIT: Duration = Duration::from_secs(120);

async fn report(store: &PgEventStore) -> VerifyReport {
    verify(store, VerifyOptions::default()).await.unwrap()
}

fn sealer(store: &PgEventStore) -> Sealer {
    Sealer::new(store.clone(), SealerOptions::default())
}

/// Seals everything committed.
async fn seal_all(store: &PgEventStore) {
    let sealer = sealer(store);
    while sealer.seal_pending(1000).await.unwrap() > 0 {}
}

/// Runs SQL with the append-only triggers of the log and the seals off.
async fn tamper(db: &TestDb, sql: &str) {
    let mut tx = db.pool().begin().await.unwrap();
    for statement in [
        "ALTER TABLE sl_events DISABLE TRIGGER USER",
        "ALTER TABLE sl_seals DISABLE TRIGGER USER",
    ] {
        sqlx::query(statement).execute(&mut *tx).await.unwrap();
    }
    sqlx::raw_sql(sql).execute(&mut *tx).await.unwrap();
    tx.commit().await.unwrap();
}

/// A log of five events in one stream (`a-1`, data `{"n": i}`), all sealed.
async fn sealed_log() -> (TestDb, PgEventStore) {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("a-1"), ExpectedRevision::NoStream, events(5))
        .await
        .unwrap();
    seal_all(&store).await;
    let clean = report(&store).await;
    assert_eq!(clean.problem, None);
    assert_eq!((clean.checked, clean.unsealed), (5, 0));
    (db, store)
}

async fn event_id_at(db: &TestDb, position: i64) -> Uuid {
    sqlx::query_scalar("SELECT event_id FROM sl_events WHERE global_position = $1")
        .bind(position)
        .fetch_one(db.pool())
        .await
        .unwrap()
}

/// Applies `sql` to a sealed log of five events and returns the problem
/// verify reports.
async fn problem_after(sql: &str) -> (TestDb, Option<ChainProblem>) {
    let (db, store) = sealed_log().await;
    tamper(&db, sql).await;
    let problem = report(&store).await.problem;
    (db, problem)
}

/// Applies an UPDATE of one column of position 3 and requires `Altered` at 3.
async fn assert_update_of_position_3_is_altered(set: &str) {
    let (db, problem) = problem_after(&format!(
        "UPDATE sl_events SET {set} WHERE global_position = 3"
    ))
    .await;
    let event_id = event_id_at(&db, 3).await;
    assert_eq!(
        problem,
        Some(ChainProblem::Altered {
            position: 3,
            event_id
        }),
        "SET {set}"
    );
}

#[tokio::test]
async fn a_sealed_log_verifies_clean_with_deletes_tombstones_and_every_kind_of_append() {
    let db = TestDb::new().await;
    let store = db.store();
    store
        .append(&stream("site-1"), ExpectedRevision::NoStream, events(3))
        .await
        .unwrap();
    store
        .append_multi(vec![
            StreamAppend {
                stream: stream("content-1"),
                expected: ExpectedRevision::NoStream,
                events: events(2),
            },
            StreamAppend {
                stream: stream("connection-1-2"),
                expected: ExpectedRevision::NoStream,
                events: vec![event(
                    "Linked",
                    serde_json::json!({"z": [1, 2.50, "é\t\"q\""], "a": {"nested": null}, "big": 12345678901234567890123u128.to_string()}),
                )],
            },
        ])
        .await
        .unwrap();
    let mut tx = store.pool().begin().await.unwrap();
    PgEventStore::append_multi_in(
        &mut tx,
        vec![StreamAppend {
            stream: stream("site-2"),
            expected: ExpectedRevision::NoStream,
            events: events(2),
        }],
    )
    .await
    .unwrap();
    tx.commit().await.unwrap();
    // Legitimate lifecycle operations: soft delete, append again, tombstone.
    store
        .delete_stream(&stream("site-1"), ExpectedRevision::Any, metadata())
        .await
        .unwrap();
    store
        .append(&stream("site-1"), ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    store
        .tombstone_stream(&stream("content-1"), ExpectedRevision::Any, metadata())
        .await
        .unwrap();
    // A retried append writes nothing and leaves the chain alone.
    let retry = events(1);
    for _ in 0..2 {
        store
            .append(&stream("site-3"), ExpectedRevision::Any, retry.clone())
            .await
            .unwrap();
    }
    let head = store.head_position().await.unwrap();

    let sealer = sealer(&store);
    assert_eq!(sealer.seal_pending(1000).await.unwrap(), head);
    assert_eq!(sealer.seal_pending(1000).await.unwrap(), 0);
    let status = sealer.status().await.unwrap();
    assert_eq!(
        status,
        SealProgress {
            sealed: head,
            head,
            lag: 0
        }
    );
    assert_eq!(*sealer.progress().borrow(), status);

    // Soft delete and tombstone after sealing change no sealed row.
    store
        .delete_stream(&stream("site-2"), ExpectedRevision::Any, metadata())
        .await
        .unwrap();
    seal_all(&store).await;

    let report = report(&store).await;
    assert_eq!(report.problem, None, "{report:?}");
    assert!(report.is_intact());
    assert_eq!(report.checked, head + 1);
    assert_eq!(report.unsealed, 0);
    assert_eq!(report.log_head, head + 1);
    assert_eq!(report.sealed_up_to, sealer.chain_head().await.unwrap());
    assert_eq!(report.sealed_up_to.position, head + 1);
}

/// `verify_with_progress` tells after every page how far the walk is, in
/// order, up to the log's head, and answers as `verify` does.
#[tokio::test]
async fn verify_reports_its_progress_page_by_page_up_to_the_head() {
    let (_db, store) = sealed_log().await;
    store
        .append(&stream("a-2"), ExpectedRevision::NoStream, events(4))
        .await
        .unwrap();
    let options = VerifyOptions {
        batch_size: 2,
        anchor: None,
    };
    let mut seen = Vec::new();
    let got = verify_with_progress(&store, options, |at, head| seen.push((at, head)))
        .await
        .unwrap();
    assert_eq!(got, verify(&store, options).await.unwrap());
    assert_eq!((got.checked, got.unsealed), (5, 4));
    // Pages of two over nine events: 2, 4, 6, 8, then the rest.
    assert_eq!(seen, vec![(2, 9), (4, 9), (6, 9), (8, 9), (9, 9)]);
}

#[tokio::test]
async fn verify_gives_the_same_answer_whatever_the_batch_size() {
    let db = TestDb::new().await;
    let store = db.store();
    for i in 0..5 {
        store
            .append(&stream(&format!("s-{i}")), ExpectedRevision::Any, events(3))
            .await
            .unwrap();
    }
    sealer(&store).seal_pending(10).await.unwrap();
    store
        .append(&stream("s-9"), ExpectedRevision::Any, events(4))
        .await
        .unwrap();
    let expected = report(&store).await;
    assert_eq!(
        (expected.checked, expected.unsealed, expected.problem),
        (10, 9, None)
    );
    for batch_size in [1, 2, 3, 7, 10, 11, 19, 20] {
        let got = verify(
            &store,
            VerifyOptions {
                batch_size,
                anchor: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(got, expected, "batch size {batch_size}");
    }
    // A problem at a page boundary is found whatever the page size.
    tamper(&db, "DELETE FROM sl_seals WHERE global_position = 6").await;
    for batch_size in [1, 2, 3, 5, 6, 7, 1000] {
        let got = verify(
            &store,
            VerifyOptions {
                batch_size,
                anchor: None,
            },
        )
        .await
        .unwrap();
        assert_eq!(
            got.problem,
            Some(ChainProblem::Inserted { position: 6 }),
            "batch size {batch_size}"
        );
    }
}

#[tokio::test]
async fn unsealed_events_are_reported_and_sealed_later() {
    let (_db, store) = sealed_log().await;
    store
        .append(&stream("b-1"), ExpectedRevision::NoStream, events(3))
        .await
        .unwrap();
    let before = report(&store).await;
    assert_eq!(before.problem, None);
    assert_eq!(
        (
            before.checked,
            before.sealed_up_to.position,
            before.unsealed,
            before.log_head
        ),
        (5, 5, 3, 8)
    );
    let sealer = sealer(&store);
    assert_eq!(
        sealer.status().await.unwrap(),
        SealProgress {
            sealed: 5,
            head: 8,
            lag: 3
        }
    );
    assert_eq!(sealer.seal_pending(2).await.unwrap(), 2);
    let middle = report(&store).await;
    assert_eq!((middle.sealed_up_to.position, middle.unsealed), (7, 1));
    assert_eq!(sealer.seal_pending(2).await.unwrap(), 1);
    let after = report(&store).await;
    assert_eq!((after.checked, after.unsealed, after.problem), (8, 0, None));
}

#[tokio::test]
async fn an_empty_log_verifies_clean() {
    let db = TestDb::new().await;
    let store = db.store();
    assert_eq!(sealer(&store).seal_pending(10).await.unwrap(), 0);
    let report = report(&store).await;
    assert_eq!(
        report,
        VerifyReport {
            checked: 0,
            sealed_up_to: ChainAnchor::GENESIS,
            log_head: 0,
            unsealed: 0,
            problem: None,
        }
    );
}

#[tokio::test]
async fn the_hash_covers_every_column_of_the_events_table() {
    let db = TestDb::new().await;
    let columns: Vec<String> = sqlx::query_scalar(
        "SELECT column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND table_name = 'sl_events' \
         ORDER BY ordinal_position",
    )
    .fetch_all(db.pool())
    .await
    .unwrap();
    assert_eq!(columns, HASHED_COLUMN_NAMES);
}

#[tokio::test]
async fn altering_the_stream_name_is_detected() {
    assert_update_of_position_3_is_altered("stream_name = 'b-1'").await;
}

#[tokio::test]
async fn altering_the_stream_revision_is_detected() {
    assert_update_of_position_3_is_altered("stream_revision = stream_revision + 100").await;
}

#[tokio::test]
async fn altering_the_event_id_is_detected() {
    assert_update_of_position_3_is_altered("event_id = gen_random_uuid()").await;
}

#[tokio::test]
async fn altering_the_event_type_is_detected() {
    assert_update_of_position_3_is_altered("event_type = 'Forged'").await;
}

#[tokio::test]
async fn altering_the_schema_version_is_detected() {
    assert_update_of_position_3_is_altered("schema_version = schema_version + 1").await;
}

#[tokio::test]
async fn altering_the_data_is_detected() {
    assert_update_of_position_3_is_altered(r#"data = data || '{"forged": true}'"#).await;
}

#[tokio::test]
async fn altering_only_how_a_number_is_written_in_the_data_is_detected() {
    // {"n": 2} becomes {"n": 2.0}: equal as jsonb numbers, not the same row.
    assert_update_of_position_3_is_altered("data = jsonb_set(data, '{n}', '2.0')").await;
}

#[tokio::test]
async fn altering_the_metadata_is_detected() {
    assert_update_of_position_3_is_altered(r#"metadata = metadata || '{"actor": null}'"#).await;
}

#[tokio::test]
async fn altering_the_recorded_time_by_a_microsecond_is_detected() {
    assert_update_of_position_3_is_altered("recorded_at = recorded_at + interval '1 microsecond'")
        .await;
}

#[tokio::test]
async fn altering_the_global_position_is_detected() {
    // Swap positions 3 and 4: the rows are all there, in another order.
    let (db, problem) = problem_after(
        "UPDATE sl_events SET global_position = -global_position WHERE global_position IN (3, 4); \
         UPDATE sl_events SET global_position = CASE global_position WHEN -3 THEN 4 ELSE 3 END \
         WHERE global_position IN (-3, -4);",
    )
    .await;
    let event_id = event_id_at(&db, 3).await;
    assert_eq!(
        problem,
        Some(ChainProblem::Altered {
            position: 3,
            event_id
        })
    );
    // Moved past the head: gone from 3, and not written by an append at 100.
    let (_db, problem) =
        problem_after("UPDATE sl_events SET global_position = 100 WHERE global_position = 3").await;
    assert_eq!(problem, Some(ChainProblem::Removed { position: 3 }));
}

#[tokio::test]
async fn rewriting_a_row_with_the_same_content_is_not_a_change() {
    // jsonb re-parsed from its text, the same time: the stored row is equal.
    let (_db, problem) = problem_after(
        "UPDATE sl_events SET data = data::text::jsonb, metadata = metadata::text::jsonb, \
         recorded_at = recorded_at + interval '0 seconds' WHERE global_position = 3",
    )
    .await;
    assert_eq!(problem, None);
}

#[tokio::test]
async fn deleting_an_event_is_detected() {
    // In the middle: its seal remains.
    let (_db, problem) = problem_after("DELETE FROM sl_events WHERE global_position = 3").await;
    assert_eq!(problem, Some(ChainProblem::Removed { position: 3 }));
    // The last one.
    let (_db, problem) = problem_after("DELETE FROM sl_events WHERE global_position = 5").await;
    assert_eq!(problem, Some(ChainProblem::Removed { position: 5 }));
    // An event and its seal together.
    let (_db, problem) = problem_after(
        "DELETE FROM sl_events WHERE global_position = 2; \
         DELETE FROM sl_seals WHERE global_position = 2;",
    )
    .await;
    assert_eq!(problem, Some(ChainProblem::Removed { position: 2 }));
}

#[tokio::test]
async fn deleting_an_unsealed_event_is_detected_and_the_sealer_refuses_the_hole() {
    let (db, store) = sealed_log().await;
    store
        .append(&stream("b-1"), ExpectedRevision::NoStream, events(3))
        .await
        .unwrap();
    // The last one: the log's head counter still says 8.
    tamper(&db, "DELETE FROM sl_events WHERE global_position = 8").await;
    assert_eq!(
        report(&store).await.problem,
        Some(ChainProblem::Removed { position: 8 })
    );
    // One in the middle of the unsealed tail.
    tamper(&db, "DELETE FROM sl_events WHERE global_position = 6").await;
    assert_eq!(
        report(&store).await.problem,
        Some(ChainProblem::Removed { position: 6 })
    );
    assert!(matches!(
        sealer(&store).seal_pending(100).await,
        Err(ChainError::Gap { after: 5, found: 7 })
    ));
    assert_eq!(sealer(&store).status().await.unwrap().sealed, 5);
}

const FORGED: &str = "INSERT INTO sl_events (global_position, stream_name, stream_revision, \
     event_id, event_type, schema_version, data, metadata) VALUES";

#[tokio::test]
async fn inserting_an_event_after_the_head_is_detected_and_never_sealed() {
    let (_db, problem) = problem_after(&format!(
        "{FORGED} (6, 'forged-1', 0, gen_random_uuid(), 'Forged', 1, '{{}}', '{{}}')"
    ))
    .await;
    assert_eq!(problem, Some(ChainProblem::Inserted { position: 6 }));

    let (db, store) = sealed_log().await;
    tamper(
        &db,
        &format!("{FORGED} (6, 'forged-1', 0, gen_random_uuid(), 'Forged', 1, '{{}}', '{{}}')"),
    )
    .await;
    assert_eq!(sealer(&store).seal_pending(100).await.unwrap(), 0);
    // A real append after it fails on the taken position, writing nothing.
    assert!(store
        .append(&stream("b-1"), ExpectedRevision::Any, events(1))
        .await
        .is_err());
    assert_eq!(
        report(&store).await.problem,
        Some(ChainProblem::Inserted { position: 6 })
    );
}

#[tokio::test]
async fn inserting_an_event_with_a_forged_seal_is_detected() {
    // With the head counter moved and a seal of made-up hashes.
    let (_db, problem) = problem_after(&format!(
        "{FORGED} (6, 'forged-1', 0, gen_random_uuid(), 'Forged', 1, '{{}}', '{{}}'); \
         UPDATE sl_log_head SET last_position = 6; \
         INSERT INTO sl_seals (global_position, event_hash, chain_hash) \
             VALUES (6, sha256('event'), sha256('chain')); \
         UPDATE sl_seal_head SET last_position = 6, chain_hash = sha256('chain');"
    ))
    .await;
    assert_eq!(problem, Some(ChainProblem::SealBroken { position: 6 }));
}

#[tokio::test]
async fn inserting_an_event_below_the_first_position_is_detected() {
    let (_db, problem) = problem_after(&format!(
        "{FORGED} (0, 'forged-1', 0, gen_random_uuid(), 'Forged', 1, '{{}}', '{{}}')"
    ))
    .await;
    assert_eq!(problem, Some(ChainProblem::Inserted { position: 0 }));
}

#[tokio::test]
async fn inserting_an_event_into_a_hole_is_detected() {
    // The original event 3 is replaced by another one: its seal remains.
    let (db, problem) = problem_after(&format!(
        "DELETE FROM sl_events WHERE global_position = 3; \
         {FORGED} (3, 'a-1', 2, gen_random_uuid(), 'Happened', 1, '{{\"n\": 2}}', '{{}}')"
    ))
    .await;
    let event_id = event_id_at(&db, 3).await;
    assert_eq!(
        problem,
        Some(ChainProblem::Altered {
            position: 3,
            event_id
        })
    );
    // The event and its seal removed, another event put in the hole: it
    // has no seal, between sealed ones.
    let (_db, problem) = problem_after(&format!(
        "DELETE FROM sl_events WHERE global_position = 3; \
         DELETE FROM sl_seals WHERE global_position = 3; \
         {FORGED} (3, 'a-1', 2, gen_random_uuid(), 'Happened', 1, '{{\"n\": 2}}', '{{}}')"
    ))
    .await;
    assert_eq!(problem, Some(ChainProblem::Inserted { position: 3 }));
}

#[tokio::test]
async fn tampering_with_a_seal_is_detected() {
    let (_db, problem) =
        problem_after("UPDATE sl_seals SET chain_hash = sha256('x') WHERE global_position = 3")
            .await;
    assert_eq!(problem, Some(ChainProblem::SealBroken { position: 3 }));
    let (_db, problem) =
        problem_after("UPDATE sl_seals SET event_hash = sha256('x') WHERE global_position = 3")
            .await;
    assert_eq!(problem, Some(ChainProblem::SealBroken { position: 3 }));
    // A seal removed: its event is no longer covered by the chain.
    let (_db, problem) = problem_after("DELETE FROM sl_seals WHERE global_position = 3").await;
    assert_eq!(problem, Some(ChainProblem::Inserted { position: 3 }));
    // The last seal removed: the sealer's head still names it.
    let (_db, problem) = problem_after("DELETE FROM sl_seals WHERE global_position = 5").await;
    assert_eq!(problem, Some(ChainProblem::SealBroken { position: 5 }));
    // The sealer's head moved back.
    let (_db, problem) = problem_after(
        "UPDATE sl_seal_head SET last_position = 4, \
         chain_hash = (SELECT chain_hash FROM sl_seals WHERE global_position = 4)",
    )
    .await;
    assert_eq!(problem, Some(ChainProblem::SealBroken { position: 5 }));
}

#[tokio::test]
async fn an_anchor_catches_an_event_altered_and_the_chain_resealed() {
    let (db, store) = sealed_log().await;
    let anchor = sealer(&store).chain_head().await.unwrap();
    assert_eq!(anchor.position, 5);
    let anchored = VerifyOptions {
        anchor: Some(anchor),
        ..VerifyOptions::default()
    };
    assert_eq!(verify(&store, anchored).await.unwrap().problem, None);
    // Alter event 2, drop the seals from 2 on, move the sealer's head back
    // and let the sealer seal the altered log again.
    tamper(
        &db,
        r#"UPDATE sl_events SET data = '{"n": 100}' WHERE global_position = 2;
           DELETE FROM sl_seals WHERE global_position >= 2;
           UPDATE sl_seal_head SET last_position = 1,
               chain_hash = (SELECT chain_hash FROM sl_seals WHERE global_position = 1);"#,
    )
    .await;
    seal_all(&store).await;
    // Without the anchor the rewritten chain is consistent in itself.
    assert_eq!(report(&store).await.problem, None);
    assert_eq!(
        verify(&store, anchored).await.unwrap().problem,
        Some(ChainProblem::AnchorMismatch { position: 5 })
    );
    // The genesis anchor always holds; an anchor past the chain does not.
    let genesis = VerifyOptions {
        anchor: Some(ChainAnchor::GENESIS),
        ..VerifyOptions::default()
    };
    assert_eq!(verify(&store, genesis).await.unwrap().problem, None);
    let beyond = VerifyOptions {
        anchor: Some(ChainAnchor {
            position: 9,
            ..anchor
        }),
        ..VerifyOptions::default()
    };
    assert_eq!(
        verify(&store, beyond).await.unwrap().problem,
        Some(ChainProblem::AnchorMismatch { position: 9 })
    );
}

#[tokio::test]
async fn appends_do_not_wait_for_the_chain() {
    let (db, store) = sealed_log().await;
    // Hold the chain's head as a sealer mid-batch would.
    let mut sealing = db.pool().begin().await.unwrap();
    sqlx::query("SELECT * FROM sl_seal_head FOR UPDATE")
        .execute(&mut *sealing)
        .await
        .unwrap();
    tokio::time::timeout(
        Duration::from_secs(30),
        store.append(&stream("b-1"), ExpectedRevision::NoStream, events(2)),
    )
    .await
    .expect("an append does not wait for a sealer")
    .unwrap();
    sealing.rollback().await.unwrap();
    let report = report(&store).await;
    assert_eq!((report.unsealed, report.problem), (2, None));
}

/// A writer appending `rounds` times to a few shared streams, through the
/// store's own append or inside a transaction it holds open a little and
/// sometimes rolls back.
async fn writer(store: PgEventStore, seed: u64, rounds: usize) {
    let mut rng = rand::rngs::StdRng::seed_from_u64(seed);
    for _ in 0..rounds {
        let append = StreamAppend {
            stream: stream(&format!("hot-{}", rng.gen_range(0..4))),
            expected: ExpectedRevision::Any,
            events: (0..rng.gen_range(1..=3))
                .map(|i| event("Raced", serde_json::json!({ "seed": seed, "i": i })))
                .collect(),
        };
        if rng.gen_bool(0.6) {
            store.append_multi(vec![append]).await.unwrap();
        } else {
            let mut tx = store.pool().begin().await.unwrap();
            sqlx::query("SELECT pg_sleep($1)")
                .bind(rng.gen_range(0..3) as f64 / 1000.0)
                .execute(&mut *tx)
                .await
                .unwrap();
            PgEventStore::append_multi_in(&mut tx, vec![append])
                .await
                .unwrap();
            if rng.gen_bool(0.2) {
                tx.rollback().await.unwrap();
            } else {
                tx.commit().await.unwrap();
            }
        }
    }
}

/// Waits until `sealer` has sealed up to `position`.
async fn wait_sealed(sealer: &Sealer, position: u64) {
    let mut progress = sealer.progress();
    tokio::time::timeout(WAIT, progress.wait_for(|p| p.sealed >= position))
        .await
        .expect("the sealer reaches the head in time")
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn concurrent_appends_while_the_sealer_runs_end_fully_sealed() {
    let db = TestDb::with_pool_size(30).await;
    let store = db.store();
    let sealer = Sealer::new(
        store.clone(),
        SealerOptions {
            batch_size: 16,
            ..SealerOptions::default()
        },
    );
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    let running = {
        let sealer = sealer.clone();
        tokio::spawn(async move {
            sealer
                .run(async move {
                    let _ = stopped.await;
                })
                .await
        })
    };
    let writers: Vec<_> = (0..8)
        .map(|seed| tokio::spawn(writer(store.clone(), seed, 40)))
        .collect();
    for w in futures::future::join_all(writers).await {
        w.unwrap();
    }
    let head = store.head_position().await.unwrap();
    assert!(head > 100, "the writers wrote {head} events");
    wait_sealed(&sealer, head).await;
    stop.send(()).unwrap();
    running.await.unwrap().unwrap();

    let progress = *sealer.progress().borrow();
    assert_eq!(progress.sealed, head);
    assert_eq!(progress.lag, 0);
    let report = report(&store).await;
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!(
        (
            report.checked,
            report.sealed_up_to.position,
            report.unsealed
        ),
        (head, head, 0)
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sealers_racing_each_other_never_fork_the_chain() {
    let db = TestDb::with_pool_size(40).await;
    let store = db.store();
    // Small batches, so that the sealers interleave.
    let base = Sealer::new(
        store.clone(),
        SealerOptions {
            batch_size: 5,
            ..SealerOptions::default()
        },
    );
    let (stop, _) = tokio::sync::watch::channel(false);
    // Two followers of the log.
    let followers: Vec<_> = (0..2)
        .map(|_| {
            let sealer = base.clone();
            let mut stopped = stop.subscribe();
            tokio::spawn(async move {
                sealer
                    .run(async move {
                        let _ = stopped.wait_for(|s| *s).await;
                    })
                    .await
            })
        })
        .collect();
    // And four sealers calling seal_pending in a loop (one of them a
    // separate sealer, as another process would run) while writers append.
    let pollers: Vec<_> = (0..4)
        .map(|i| {
            let sealer = if i == 0 { sealer(&store) } else { base.clone() };
            let stopped = stop.subscribe();
            tokio::spawn(async move {
                let mut sealed = 0;
                while !*stopped.borrow() {
                    sealed += sealer.seal_pending(3 + i).await.unwrap();
                    tokio::task::yield_now().await;
                }
                sealed
            })
        })
        .collect();
    let writers: Vec<_> = (0..6)
        .map(|seed| tokio::spawn(writer(store.clone(), 100 + seed, 30)))
        .collect();
    for w in futures::future::join_all(writers).await {
        w.unwrap();
    }
    let head = store.head_position().await.unwrap();
    // The followers are woken by the last append and publish at least once
    // after it, whoever sealed it.
    wait_sealed(&base, head).await;
    stop.send(true).unwrap();
    let mut by_pollers = 0;
    for p in futures::future::join_all(pollers).await {
        by_pollers += p.unwrap();
    }
    for f in futures::future::join_all(followers).await {
        f.unwrap().unwrap();
    }
    assert!(by_pollers <= head);

    let report = report(&store).await;
    assert_eq!(report.problem, None, "{report:?}");
    assert_eq!((report.checked, report.unsealed), (head, 0));
    let seals: i64 = sqlx::query_scalar("SELECT count(*) FROM sl_seals")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert_eq!(seals as u64, head);
}
