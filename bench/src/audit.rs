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
//! * `audit_archive`, `audit_asof_check_archive`, `audit_asof_lookup_archive`:
//!   the same questions through `History::with_archive`: the log kept in
//!   memory (`LiveArchive`, loaded here from the whole log: its load time and
//!   resident memory are reported), answers checked equal to the log's;
//!   `audit_archive`'s `ratio` = the log's as-of check p50 over the
//!   archive's.
//! * `audit_asof_viewers`, `audit_asof_viewers_archive`: Q-3 as of random
//!   past positions (who could see the question's target: the owner's site
//!   and its partners' streams), from the log on a tenth of the questions
//!   and from the archive on half of them; the log's answers must equal the
//!   archive's.
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
use shareledger_projections::access::{AccessIndex, LookupQuery, Target, Viewer, MAX_PAGE};
use shareledger_projections::history::{History, HistoryError, LiveArchive, Moment};
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

/// Q-1 as of the past, timed per question.
struct Checks {
    times: Vec<Duration>,
    unknown: usize,
    answers: Vec<Option<bool>>,
}

impl Checks {
    fn p50(&self) -> f64 {
        quantile(&self.times, 0.5)
    }

    fn report(&self, name: &str, head: u64, replay_p50: f64, detail: Option<(f64, f64)>) {
        let mut line = Line::new(name)
            .text("log_events", head)
            .text("questions", self.times.len())
            .text("not_existing_then", self.unknown)
            .ms("asof_p50_ms", self.p50())
            .ms("asof_p99_ms", quantile(&self.times, 0.99))
            .ms("asof_max_ms", quantile(&self.times, 1.0));
        if let Some((finding_p50, mean_replayed)) = detail {
            line = line
                .ms("finding_sites_p50_ms", finding_p50)
                .count("mean_events_replayed", mean_replayed);
        }
        line.ms("replay_p50_ms", replay_p50)
            .ratio(replay_p50, self.p50());
    }
}

async fn asof_checks(history: &History, qs: &[Question]) -> anyhow::Result<Checks> {
    let mut checks = Checks {
        times: Vec::with_capacity(qs.len()),
        unknown: 0,
        answers: Vec::with_capacity(qs.len()),
    };
    for q in qs {
        let started = Instant::now();
        match history
            .check(Moment::Position(q.position), q.user, q.target, Action::View)
            .await
        {
            Ok((_, allowed)) => {
                checks.times.push(started.elapsed());
                checks.answers.push(Some(allowed));
            }
            Err(HistoryError::Access(_)) => {
                checks.unknown += 1;
                checks.answers.push(None);
            }
            Err(e) => return Err(e.into()),
        }
    }
    checks.times.sort_unstable();
    Ok(checks)
}

/// The count and mean-length labels of the lines.
const LOOKUP_LABELS: (&str, &str) = ("lookups", "mean_items");
const VIEWER_LABELS: (&str, &str) = ("questions", "mean_viewers");

/// Answers that are lists (Q-2's targets, Q-3's viewers), timed per
/// question; a question about someone or something that did not exist then
/// is answered `None` and not timed.
struct Listed<T> {
    times: Vec<Duration>,
    /// Each timed question's time and index in the questions asked.
    asked: Vec<(Duration, usize)>,
    items: usize,
    answers: Vec<Option<Vec<T>>>,
}

impl<T> Listed<T> {
    fn with_capacity(n: usize) -> Self {
        Self {
            times: Vec::with_capacity(n),
            asked: Vec::with_capacity(n),
            items: 0,
            answers: Vec::with_capacity(n),
        }
    }

    /// Records one question's answer, asked at `started`.
    fn push(&mut self, started: Instant, answer: Option<Vec<T>>) {
        if let Some(items) = &answer {
            let took = started.elapsed();
            self.times.push(took);
            self.asked.push((took, self.answers.len()));
            self.items += items.len();
        }
        self.answers.push(answer);
    }

    /// Sorts the times (for the quantiles).
    fn finish(mut self) -> Self {
        self.times.sort_unstable();
        self
    }

    /// The indices of the `n` slowest questions, slowest first.
    fn slowest(&self, n: usize) -> Vec<(Duration, usize)> {
        let mut asked = self.asked.clone();
        asked.sort_unstable_by(|a, b| b.cmp(a));
        asked.truncate(n);
        asked
    }

    /// One `RESULT` line; `labels` name the count of questions and the
    /// mean length of an answer.
    fn report(&self, name: &str, labels: (&str, &str), head: u64, replay_p50: f64) {
        let p50 = quantile(&self.times, 0.5);
        Line::new(name)
            .text("log_events", head)
            .text(labels.0, self.times.len())
            .count(labels.1, self.items as f64 / self.times.len().max(1) as f64)
            .ms("asof_p50_ms", p50)
            .ms("asof_p99_ms", quantile(&self.times, 0.99))
            .ms("asof_max_ms", quantile(&self.times, 1.0))
            .ms("replay_p50_ms", replay_p50)
            .ratio(replay_p50, p50);
    }
}

/// Q-2 as of the past: one complete lookup (every page), `None` if the
/// user did not exist then.
async fn asof_lookup(history: &History, q: &Question) -> anyhow::Result<Option<Vec<Target>>> {
    let mut query = LookupQuery {
        limit: MAX_PAGE,
        ..LookupQuery::default()
    };
    let mut targets = Vec::new();
    loop {
        match history
            .lookup(Moment::Position(q.position), q.user, &query)
            .await
        {
            Ok((_, page)) => {
                targets.extend(page.items.iter().map(|v| v.target));
                match page.next {
                    Some(next) => query.after = Some(next),
                    None => return Ok(Some(targets)),
                }
            }
            Err(HistoryError::Access(_)) => return Ok(None),
            Err(e) => return Err(e.into()),
        }
    }
}

/// Q-2 as of the past: complete lookups, timed per user.
async fn asof_lookups(history: &History, qs: &[Question]) -> anyhow::Result<Listed<Target>> {
    let mut lookups = Listed::with_capacity(qs.len());
    for q in qs {
        let started = Instant::now();
        lookups.push(started, asof_lookup(history, q).await?);
    }
    Ok(lookups.finish())
}

/// Q-3 as of the past: who could see a target, `None` if it did not exist
/// then.
async fn asof_viewer(history: &History, q: &Question) -> anyhow::Result<Option<Vec<Viewer>>> {
    match history
        .viewers(Moment::Position(q.position), q.target)
        .await
    {
        Ok((_, viewers)) => Ok(Some(viewers)),
        Err(HistoryError::Access(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

/// Q-3 as of the past: who could see a target, timed per question.
async fn asof_viewers(history: &History, qs: &[Question]) -> anyhow::Result<Listed<Viewer>> {
    let mut out = Listed::with_capacity(qs.len());
    for q in qs {
        let started = Instant::now();
        out.push(started, asof_viewer(history, q).await?);
    }
    Ok(out.finish())
}

/// Asks the three slowest questions of a run again and reports both times
/// (stderr): a tail that does not come back was the machine's, one that
/// does is the question's.
async fn ask_slowest_again<T>(
    what: &str,
    listed: &Listed<T>,
    qs: &[Question],
    again: impl AsyncFn(&Question) -> anyhow::Result<Option<Vec<T>>>,
) -> anyhow::Result<()> {
    let mut report = Vec::new();
    for (took, i) in listed.slowest(3) {
        let started = Instant::now();
        let answer = again(&qs[i]).await?;
        report.push(format!(
            "{:.1} ms, again {:.1} ms ({} items, position {})",
            took.as_secs_f64() * 1000.0,
            started.elapsed().as_secs_f64() * 1000.0,
            answer.map_or(0, |a| a.len()),
            qs[i].position
        ));
    }
    progress(&format!(
        "{what}: slowest asked again: {}",
        report.join("; ")
    ));
    Ok(())
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

    let qs = questions(&world, head, samples);
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
    let replay_p50 = quantile(&replay_times, 0.5);

    // From the log in PostgreSQL.
    let from_log = History::new(store.clone());
    let log_checks = asof_checks(&from_log, &qs).await?;
    let log_lookups = asof_lookups(&from_log, &qs[..samples / 2]).await?;
    // Where an as-of check spends its time: finding the sites, and how many
    // events it replays.
    let mut finding = Vec::new();
    let mut replayed = 0usize;
    let mut counted = 0usize;
    for q in qs.iter().take(50) {
        let started = Instant::now();
        let _ = from_log.site_of_user(q.user, q.position).await?;
        let _ = from_log.owner_of(q.target, q.position).await?;
        finding.push(started.elapsed());
        if let Ok(past) = from_log.index_for_pair(q.user, q.target, q.position).await {
            replayed += past.events;
            counted += 1;
        }
    }
    finding.sort_unstable();
    log_checks.report(
        "audit_asof_check",
        head,
        replay_p50,
        Some((
            quantile(&finding, 0.5),
            replayed as f64 / counted.max(1) as f64,
        )),
    );
    log_lookups.report("audit_asof_lookup", LOOKUP_LABELS, head, replay_p50);

    // From the in-memory archive, loaded from the same log.
    let rss_before = crate::access::resident_bytes()?;
    let started = Instant::now();
    let (archive, follower) = LiveArchive::start(store.clone(), 5_000).await?;
    let load_secs = started.elapsed().as_secs_f64();
    let rss_after = crate::access::resident_bytes()?;
    let from_archive = History::with_archive(store.clone(), archive.clone());
    let archive_checks = asof_checks(&from_archive, &qs).await?;
    let archive_lookups = asof_lookups(&from_archive, &qs[..samples / 2]).await?;
    // the same targets' viewers, from the archive, checked against the
    // log on a share of them (from the log each takes hundreds of ms).
    let archive_viewers = asof_viewers(&from_archive, &qs[..samples / 2]).await?;
    let log_viewers = asof_viewers(&from_log, &qs[..samples / 10]).await?;
    let same = archive_checks.answers == log_checks.answers
        && archive_lookups.answers == log_lookups.answers
        && archive_viewers.answers[..log_viewers.answers.len()] == log_viewers.answers[..];
    anyhow::ensure!(same, "the archive's answers differ from the log's");
    ask_slowest_again(
        "audit_asof_lookup_archive",
        &archive_lookups,
        &qs,
        async |q| asof_lookup(&from_archive, q).await,
    )
    .await?;
    ask_slowest_again(
        "audit_asof_viewers_archive",
        &archive_viewers,
        &qs,
        async |q| asof_viewer(&from_archive, q).await,
    )
    .await?;
    Line::new("audit_archive")
        .text("log_events", head)
        .ms("load_ms", load_secs * 1000.0)
        .count("load_events_per_s", head as f64 / load_secs)
        .count(
            "rss_mb",
            rss_after.saturating_sub(rss_before) as f64 / 1_048_576.0,
        )
        .text("same_answers_as_log", same)
        .ratio(log_checks.p50(), archive_checks.p50());
    archive_checks.report("audit_asof_check_archive", head, replay_p50, None);
    archive_lookups.report("audit_asof_lookup_archive", LOOKUP_LABELS, head, replay_p50);
    log_viewers.report("audit_asof_viewers", VIEWER_LABELS, head, replay_p50);
    archive_viewers.report(
        "audit_asof_viewers_archive",
        VIEWER_LABELS,
        head,
        replay_p50,
    );
    archive.stop();
    let _ = follower.await;

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
