//! Leases on real PostgreSQL: one holder at a time per name; a lease whose
//! session ends is lost by its holder (which stops the part) and taken by a
//! standby; a part run under [`lead`] follows its holder's position while it
//! waits.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use shareledger_events::store::lease::{lead, LeaseOptions, Leases, Watched};
use shareledger_events::store::supervise::{LeaseRole, PartHealth, PartState};
use shareledger_tests::TestDb;
use tokio::sync::watch;

fn fast() -> LeaseOptions {
    LeaseOptions {
        poll: Duration::from_millis(50),
        heartbeat: Duration::from_millis(200),
        ..LeaseOptions::default()
    }
}

/// Ends every lease session on the test's database, as the server does
/// when a holder's process dies.
async fn end_lease_sessions(db: &TestDb) -> u64 {
    sqlx::query_scalar::<_, i64>(
        "SELECT count(*) FROM (SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND application_name = 'shareledger lease session') t",
    )
    .fetch_one(db.pool())
    .await
    .expect("sessions ended") as u64
}

#[tokio::test]
async fn one_holder_per_name_and_a_released_lease_is_free_at_once() {
    let db = TestDb::new().await;
    let a = Leases::new(db.pool(), fast());
    let b = Leases::new(db.pool(), fast());
    let held = a.try_take("sealer").await.unwrap().expect("a free lease");
    assert!(b.try_take("sealer").await.unwrap().is_none());
    // Another part of the same process does not take it twice either.
    assert!(a.try_take("sealer").await.unwrap().is_none());
    // Other names are other leases.
    let other = b.try_take("consequences").await.unwrap();
    assert!(other.is_some());
    held.release().await;
    assert!(b.try_take("sealer").await.unwrap().is_some());
}

#[tokio::test]
async fn a_holder_whose_session_ends_loses_the_lease_and_a_standby_takes_it() {
    let db = TestDb::new().await;
    let a = Leases::new(db.pool(), fast());
    let b = Leases::new(db.pool(), fast());
    let held = a.try_take("consequences").await.unwrap().expect("free");
    assert!(b.try_take("consequences").await.unwrap().is_none());
    // Only `a`'s session holds a lease; `b`'s holds none. End both.
    assert!(end_lease_sessions(&db).await >= 1);
    tokio::time::timeout(Duration::from_secs(5), held.lost())
        .await
        .expect("the holder notices within its heartbeat");
    let taken = tokio::time::timeout(Duration::from_secs(5), async {
        loop {
            // `b`'s own session was ended too: its first try fails and
            // connects again on the next.
            if let Ok(Some(held)) = b.try_take("consequences").await {
                return held;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
    .await
    .expect("the standby takes the lease");
    drop(taken);
}

#[tokio::test]
async fn a_part_runs_in_one_process_and_moves_to_the_standby_when_its_holder_goes() {
    let db = TestDb::new().await;
    // The part's checkpoint, as the database would hold it.
    let checkpoint = Arc::new(AtomicU64::new(0));
    let runs = Arc::new(AtomicU64::new(0));
    let (stop, _) = watch::channel(false);
    let start = |leases: Leases, health: PartHealth| {
        let (checkpoint, watched, runs) = (
            Arc::clone(&checkpoint),
            Arc::clone(&checkpoint),
            Arc::clone(&runs),
        );
        let stop = stop.subscribe();
        let part = health.clone();
        tokio::spawn(async move {
            lead(
                &leases,
                "part",
                &health,
                stop,
                move || {
                    let (checkpoint, runs, health) =
                        (Arc::clone(&checkpoint), Arc::clone(&runs), part.clone());
                    async move {
                        runs.fetch_add(1, Ordering::SeqCst);
                        // The part: applies one event every 10 ms, until
                        // it is dropped.
                        while checkpoint.load(Ordering::SeqCst) < u64::MAX {
                            let at = checkpoint.fetch_add(1, Ordering::SeqCst) + 1;
                            health.advanced(at);
                            tokio::time::sleep(Duration::from_millis(10)).await;
                        }
                        Ok::<(), sqlx::Error>(())
                    }
                },
                move || {
                    let watched = Arc::clone(&watched);
                    async move { Ok::<_, sqlx::Error>(Watched::At(watched.load(Ordering::SeqCst))) }
                },
            )
            .await
        })
    };
    let a_health = PartHealth::new("part", 0);
    let a = start(Leases::new(db.pool(), fast()), a_health.clone());
    let holder = wait_until(|| a_health.status().lease == Some(LeaseRole::Holder)).await;
    assert!(holder, "the first process takes the free lease");
    let b_health = PartHealth::new("part", 0);
    let b_leases = Leases::new(db.pool(), fast());
    let b = start(b_leases, b_health.clone());
    assert!(
        wait_until(|| b_health.status().state == PartState::Standby && b_health.position() > 0)
            .await,
        "the second waits as a standby and follows the holder's position"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 1, "the part runs once");
    assert!(b_health.status().is_following(Duration::from_secs(5)));

    // The holder's process dies: its task ends, and its lease session's
    // connection closes with it.
    a.abort();
    let _ = a.await;
    assert!(
        wait_until(|| b_health.status().lease == Some(LeaseRole::Holder)
            && b_health.status().state == PartState::Following)
        .await,
        "the standby takes over"
    );
    assert_eq!(runs.load(Ordering::SeqCst), 2);
    stop.send_replace(true);
    b.await.unwrap().unwrap();
}

async fn wait_until(mut condition: impl FnMut() -> bool) -> bool {
    for _ in 0..200 {
        if condition() {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    false
}
