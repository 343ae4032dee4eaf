//! End-to-end tests of the `shareledger` binary against real PostgreSQL.

use std::process::Command;

use shareledger_events::ExpectedRevision;
use shareledger_tests::fixtures::{events, stream};
use shareledger_tests::TestDb;

fn shareledger(url: &str, args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_shareledger"))
        .args(args)
        .env("DATABASE_URL", url)
        .output()
        .expect("run shareledger");
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[tokio::test]
async fn migrate_creates_the_schema_on_an_empty_database_and_is_idempotent() {
    let db = TestDb::empty().await;
    let (ok, out, err) = shareledger(&db.url(), &["migrate"]);
    assert!(ok, "{err}");
    assert!(out.contains("schema is up to date"), "{out}");
    let (ok, out, _) = shareledger(&db.url(), &["migrate", "--json"]);
    assert!(ok);
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert!(v["migrations_applied"].as_i64().unwrap() >= 1);
    let exists: bool = sqlx::query_scalar("SELECT to_regclass('sl_events') IS NOT NULL")
        .fetch_one(db.pool())
        .await
        .unwrap();
    assert!(exists);
}

#[tokio::test]
async fn status_reports_the_head_position_and_stream_count() {
    let db = TestDb::new().await;
    db.store()
        .append(&stream("site-1"), ExpectedRevision::NoStream, events(3))
        .await
        .unwrap();
    db.store()
        .append(&stream("site-2"), ExpectedRevision::NoStream, events(1))
        .await
        .unwrap();
    let (ok, out, err) = shareledger(&db.url(), &["status", "--json"]);
    assert!(ok, "{err}");
    let v: serde_json::Value = serde_json::from_str(out.trim()).unwrap();
    assert_eq!(v["head_position"], 4);
    assert_eq!(v["streams"], 2);
    assert!(v["last_recorded_at"].is_string());
    let (ok, out, _) = shareledger(&db.url(), &["status"]);
    assert!(ok);
    assert!(out.contains("head position  4"), "{out}");
}

#[tokio::test]
async fn status_on_an_unmigrated_database_fails_with_a_hint() {
    let db = TestDb::empty().await;
    let (ok, _, err) = shareledger(&db.url(), &["status"]);
    assert!(!ok);
    assert!(err.contains("shareledger migrate"), "{err}");
}
