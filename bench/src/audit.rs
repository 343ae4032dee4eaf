//! `audit`: looking back on a large log, against the obvious way of doing
//! it in the same run.
//!
//! The log: the `access` benchmark's world generator (sites, users with
//! flags and per-scorecard grants, scorecards, nested objects, placements
//! and removals, links in every state, shares, relationships) sized to about
//! 1,000,000 events (`--quick`: about 1/20), written through the store.
//!
//! * `audit_asof_check`: Q-1 as of random past positions (in the last
//!   tenth of the log, so that most users and targets exist) for random (user,
//!   target) pairs: own content, and partners' content shared or not, by
//!   `History::level` (scoped replay: the two sites' streams up to the
//!   position). Against a **full replay** to the same position (every event
//!   from 1 into a fresh `AccessIndex`, then the same question), timed on a
//!   few of the positions. `ratio` = replay time / as-of time (how many
//!   times faster). Goal: as-of ≤ 50 ms.
//! * `audit_asof_lookup`: Q-2 as of random past positions: a user's complete
//!   lookup (every page), by `History::lookup` (the user's site and its
//!   partners' streams). Same replay comparison.
//! * `audit_verify`: `verify` walking the sealed chain (events/s) against a
//!   raw scan of the same rows (every column, jsonb as text, no hashing).
//!   Also reports how fast the sealer sealed the whole log.
//! * The append benchmark's single-event comparison with the sealer on and
//!   off (`sealing_single_c8`) runs last, on its own fresh database.

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::TryStreamExt as _;
use rand::rngs::StdRng;
use rand::{Rng as _, SeedableRng as _};
use shareledger_core::catalog::Action;
use shareledger_events::store::{verify, PositionFrom, Sealer, SealerOptions, VerifyOptions};
use shareledger_events::Direction;
use shareledger_projections::access::{AccessIndex, LookupQuery, Target, MAX_PAGE};
use shareledger_projections::history::{History, HistoryError, Moment};
use shareledger_tests::TestDb;

use crate::access::load;
use crate::access::world::{self, Thing, World};
use crate::report::{progress, Line};
use crate::CommonArgs;

const SEED: u64 = 0xa0d1_7000_2026_1124;

/// The world's sizes: about 1,000,000 events (1/20 with `--quick`).
fn sizes(quick: bool) -> world::Sizes {
    let mut sizes = world::Sizes::new(quick);
    if !quick {
        sizes.users = 60_000;
        sizes.scorecards = 12_000;
        sizes.placements = 420_000;
        sizes.hub_objects = 6_000;
    }
    sizes
}

/// A past question: a user, a target, a position.
struct Question {
    user: shareledger_core::catalog::UserId,
    target: Target,
    position: u64,
}

fn questions(world: &World, head: u64, n: usize) -> Vec<Question> {
    let mut rng = StdRng::seed_from_u64(SEED);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let (user, owner) = if rng.gen_bool(0.5) {
            let user = rng.gen_range(0..world.users.len());
            (user, world.users[user].site as usize)
        } else {
            let (from, to) = world.link_order[rng.gen_range(0..world.link_order.len())];
            let users = &world.sites[to as usize].users;
            (users[rng.gen_range(0..users.len())] as usize, from as usize)
        };
        let site = &world.sites[owner];
        let thing = if rng.gen_bool(0.3) || site.objects.is_empty() {
            if site.scorecards.is_empty() {
                continue;
            }
            Thing::Scorecard(site.scorecards[rng.gen_range(0..site.scorecards.len())])
        } else {
            Thing::Object(site.objects[rng.gen_range(0..site.objects.len())])
        };
        out.push(Question {
            user: world.users[user].id,
            target: world.target(thing),
            position: rng.gen_range(head - head / 10..=head),
        });
    }
    out
}

fn quantile(sorted: &[Duration], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let rank = ((sorted.len() as f64 * q).ceil() as usize).clamp(1, sorted.len());
    sorted[rank - 1].as_secs_f64() * 1000.0
}

/// Replays the log from position 1 to `position` into a fresh index.
async fn full_replay(
    store: &shareledger_events::store::PgEventStore,
    position: u64,
) -> anyhow::Result<AccessIndex> {
    let mut index = AccessIndex::new();
    let mut at = 0;
    while at < position {
        let page = store
            .read_all(Direction::Forwards, PositionFrom::At(at + 1), 5_000)
            .await?;
        if page.is_empty() {
            break;
        }
        for event in &page {
            if event.global_position > position {
                return Ok(index);
            }
            index.apply(event)?;
            at = event.global_position;
        }
    }
    Ok(index)
}

pub async fn run(args: CommonArgs) -> anyhow::Result<()> {
    let sizes = sizes(args.quick);
    progress("audit world: generating the model and its events");
    let (world, phases) = world::generate(&sizes, world::SEED);
    let world = Arc::new(world);
    let db = TestDb::with_pool_size(12).await;
    let store = db.store();
    let written = load::append_phases(&store, &world, phases).await?;
    progress(&format!(
        "audit world: {} events written in {:.0} s",
        written.events,
        written.elapsed.as_secs_f64()
    ));
    sqlx::query("VACUUM (ANALYZE) sl_events")
        .execute(db.pool())
        .await
        .context("VACUUM sl_events")?;
    let head = store.head_position().await?;
    let history = History::new(store.clone());
    // How PostgreSQL reads one question's streams (to stderr).
    if let Some(site) = world.sites.first() {
        let plan: Vec<String> = sqlx::query_scalar(
            "EXPLAIN (ANALYZE, BUFFERS) SELECT e.* FROM unnest($1::text[]) AS s(name) \
             CROSS JOIN LATERAL (SELECT * FROM sl_events WHERE stream_name = s.name \
             AND global_position <= $2 ORDER BY stream_revision) e \
             UNION ALL SELECT e.* FROM unnest($3::text[]) AS s(name) \
             CROSS JOIN LATERAL (SELECT * FROM sl_events WHERE stream_name = s.name \
             AND global_position <= $2 AND event_type = ANY($4) ORDER BY stream_revision) e \
             ORDER BY global_position",
        )
        .bind(vec![
            format!("site-{}", site.id.stream_suffix()),
            format!("content-{}", site.id.stream_suffix()),
        ])
        .bind(head as i64)
        .bind(Vec::<String>::new())
        .bind(vec!["SiteRegistered".to_string()])
        .fetch_all(db.pool())
        .await?;
        progress(&format!(
            "audit: reading a site's streams:\n{}",
            plan.join("\n")
        ));
    }
    let samples = if args.quick { 100 } else { 300 };
    let replays = 3;

    // Q-1 as of the past.
    let qs = questions(&world, head, samples);
    let mut times = Vec::with_capacity(qs.len());
    let mut unknown = 0;
    for q in &qs {
        let started = Instant::now();
        match history
            .check(Moment::Position(q.position), q.user, q.target, Action::View)
            .await
        {
            Ok(_) => times.push(started.elapsed()),
            Err(HistoryError::Access(_)) => unknown += 1,
            Err(e) => return Err(e.into()),
        }
    }
    times.sort_unstable();
    // Where an as-of check spends its time: finding the sites, and how many
    // events it replays.
    let mut lookups = Vec::new();
    let mut replayed = 0usize;
    let mut counted = 0usize;
    for q in qs.iter().take(50) {
        let started = Instant::now();
        let _ = history.site_of_user(q.user, q.position).await?;
        let _ = history.owner_of(q.target, q.position).await?;
        lookups.push(started.elapsed());
        if let Ok(past) = history.index_for_pair(q.user, q.target, q.position).await {
            replayed += past.events;
            counted += 1;
        }
    }
    lookups.sort_unstable();
    let mut replay_times = Vec::new();
    for q in qs.iter().take(replays) {
        let started = Instant::now();
        let index = full_replay(&store, q.position).await?;
        let _ = index.check(q.user, q.target, Action::View);
        replay_times.push(started.elapsed());
        progress(&format!(
            "audit: full replay to {} took {:.1} s",
            q.position,
            started.elapsed().as_secs_f64()
        ));
    }
    replay_times.sort_unstable();
    let asof_p50 = quantile(&times, 0.5);
    let replay_p50 = quantile(&replay_times, 0.5);
    Line::new("audit_asof_check")
        .text("log_events", head)
        .text("questions", times.len())
        .text("not_existing_then", unknown)
        .ms("asof_p50_ms", asof_p50)
        .ms("asof_p99_ms", quantile(&times, 0.99))
        .ms("asof_max_ms", quantile(&times, 1.0))
        .ms("finding_sites_p50_ms", quantile(&lookups, 0.5))
        .count(
            "mean_events_replayed",
            replayed as f64 / counted.max(1) as f64,
        )
        .ms("replay_p50_ms", replay_p50)
        .ratio(replay_p50, asof_p50);

    // Q-2 as of the past: complete lookups.
    let mut times = Vec::with_capacity(qs.len());
    let mut items = 0usize;
    for q in qs.iter().take(samples / 2) {
        let started = Instant::now();
        let mut query = LookupQuery {
            limit: MAX_PAGE,
            ..LookupQuery::default()
        };
        let mut ok = true;
        loop {
            match history
                .lookup(Moment::Position(q.position), q.user, &query)
                .await
            {
                Ok((_, page)) => {
                    items += page.items.len();
                    match page.next {
                        Some(next) => query.after = Some(next),
                        None => break,
                    }
                }
                Err(HistoryError::Access(_)) => {
                    ok = false;
                    break;
                }
                Err(e) => return Err(e.into()),
            }
        }
        if ok {
            times.push(started.elapsed());
        }
    }
    times.sort_unstable();
    let lookup_p50 = quantile(&times, 0.5);
    Line::new("audit_asof_lookup")
        .text("log_events", head)
        .text("lookups", times.len())
        .count("mean_items", items as f64 / times.len().max(1) as f64)
        .ms("asof_p50_ms", lookup_p50)
        .ms("asof_p99_ms", quantile(&times, 0.99))
        .ms("asof_max_ms", quantile(&times, 1.0))
        .ms("replay_p50_ms", replay_p50)
        .ratio(replay_p50, lookup_p50);

    // The chain: seal everything, then verify vs a raw scan.
    let sealer = Sealer::new(store.clone(), SealerOptions::default());
    let started = Instant::now();
    let mut sealed = 0;
    loop {
        let n = sealer.seal_pending(5_000).await?;
        if n == 0 {
            break;
        }
        sealed += n;
    }
    let seal_secs = started.elapsed().as_secs_f64();
    let started = Instant::now();
    let report = verify(&store, VerifyOptions::default()).await?;
    let verify_secs = started.elapsed().as_secs_f64();
    anyhow::ensure!(
        report.is_intact(),
        "the generated log does not verify: {report:?}"
    );
    let started = Instant::now();
    let mut rows = sqlx::query(
        "SELECT global_position, stream_name, stream_revision, event_id, event_type, \
         schema_version, data::text, metadata::text, recorded_at FROM sl_events \
         ORDER BY global_position",
    )
    .fetch(db.pool());
    let mut scanned = 0u64;
    while rows.try_next().await?.is_some() {
        scanned += 1;
    }
    let scan_secs = started.elapsed().as_secs_f64();
    let verify_rate = report.checked as f64 / verify_secs;
    let scan_rate = scanned as f64 / scan_secs;
    Line::new("audit_verify")
        .text("events", report.checked)
        .count("verify_events_per_s", verify_rate)
        .count("raw_scan_events_per_s", scan_rate)
        .count("seal_events_per_s", sealed as f64 / seal_secs)
        .ratio(verify_rate, scan_rate);
    drop(db);

    // Appends with the chain on and off.
    crate::append::compare_sealing_single(args).await?;
    Ok(())
}
