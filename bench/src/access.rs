//! `access`: the access index (`projections/src/access`, Q-1 to Q-3) on a
//! large world, side by side with a raw scan of the log, Cedar, and SQL.
//!
//! The world ([`world`]) is generated from a fixed seed as catalog events
//! and appended to a fresh database in big multi-stream appends ([`load`]),
//! not through the command service (too slow at this size), but with the
//! events, streams, actors and consequences it would have written. Full
//! size: 1,000 sites, 100,000 users, 20,000 scorecards, 1,000,000
//! placements, 5,000 active links; `--quick` about 1/20 of that (the hub
//! site keeps over 10,000 objects). Then, in one process:
//!
//! * `access_rebuild`: loading an [`AccessIndex`] from the whole log
//!   (`read_all` pages of [`PAGE`] events, each applied in turn) against
//!   the same pages read and dropped; `ratio` = index events/s ÷ scan
//!   events/s. The scan runs before and after the load and its two rates
//!   are pooled. `live_events_per_s` is [`LiveAccess::start`] (the serving
//!   path: subscription, catch-up) on the same log.
//! * `access_check_cedar`: `AccessIndex::check` on random (user, target,
//!   action) questions (own content, partners' content, relationships, and
//!   random pairs, mostly denials; see [`questions`]), timed per call with
//!   `Instant` (`_p50`, `_p99`, which include the timer; `timer_ns` is an
//!   empty measurement) and as one batch (`_mean`, no timer per call),
//!   against Cedar ([`cedar`]) deciding the same questions with prebuilt
//!   entities and requests. Every question is asked of both (after an
//!   uncounted pass); `agree` counts equal decisions, `cedar_errors`
//!   decisions where a policy failed to evaluate. `ratio` = Cedar's mean ÷
//!   ours (above 1: we are faster), `ratio_p99` the same for p99. Stderr
//!   gets p50/p99 per part of the question mix.
//! * `access_check_sql`: the first questions again, as one SQL query each
//!   (`shareledger_projections::dashboard::level_sql`) over the
//!   `access_tables` read model, filled by the projection runtime from the
//!   same log (`sql_build_s`); `agree` compares levels with
//!   `AccessIndex::level`. `ratio` = SQL's mean ÷ ours.
//! * `access_lookup`: the complete lookup (every page of [`MAX_PAGE`]) of
//!   the hub's big user (All Scorecards): p50, min and max of several runs
//!   and the p50 of each page, against Cedar asked `view` on every candidate
//!   (every scorecard and object of the user's site and of each site
//!   sharing with it); `same_as_cedar` compares the sets. Stderr gets the
//!   lookup filtered to the user's own site.
//! * `access_lookup_10k`: the same for the user who sees the fewest objects
//!   among those who see at least 10,000 (issue 4's goal is stated for a
//!   10,000-object lookup; counted by the index's own complete lookups, for
//!   the users of sites that could reach that many).
//! * `access_viewers`: the reverse lookup of an object on the scorecard the
//!   broadcaster shares with many partners, against Cedar asked for every
//!   user of the owner and of every site the owner shares with.
//! * `access_derive`: the derived feed of access changes
//!   (`AccessIndex::apply_tracked`, what the service's `derived_feeds` part
//!   runs) on the same log from the start, for at most [`DERIVE_BUDGET`],
//!   against plain `apply` of the same events; `ratio` = tracked events/s ÷
//!   plain events/s; `changes` counts the access changes derived. It shows
//!   what deriving costs on a big world: each content event of a site is
//!   diffed for the site's users and its partners'.
//! * `access_memory`: resident memory (VmRSS, after `malloc_trim`) added by
//!   loading the index, and by building Cedar's entities; `ratio` = Cedar's ÷
//!   ours. Both include allocator overhead and fragmentation.
//!
//! * `access_storage`: the world's log on disk (the events, their tags and
//!   streams, after `VACUUM`) and the WAL written while appending it (the
//!   cluster's: run alone), per event, against the events' own JSON (data
//!   and metadata); `ratio` = JSON bytes ÷ bytes on disk.
//!
//! A `WORLD` line on stdout gives the world's size and how long writing it
//! took; every line carries `load1`, the machine's 1-minute load average
//! when it was printed (the machine is shared). A disagreement with Cedar or
//! SQL goes to stderr with the question, its ids (the world is the same in
//! every run) and the index's explanation. Nothing here asserts on time;
//! the run fails only if the setup is inconsistent (the index's sizes differ
//! from the generated world, a question about a known id is an error).

mod cedar;
pub(crate) mod load;
pub(crate) mod world;

use std::hint::black_box;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use rustc_hash::FxHashSet;
use shareledger_core::catalog::{AccessLevel, Action, UserId};
use shareledger_events::store::{PgEventStore, PositionFrom};
use shareledger_events::Direction;
use shareledger_projections::access::{
    AccessIndex, LiveAccess, LiveOptions, LookupQuery, Target, MAX_PAGE,
};
use shareledger_projections::dashboard::{level_sql, AccessTables};
use shareledger_projections::runtime::{ProjectionRuntime, RuntimeOptions};
use shareledger_tests::TestDb;

use self::cedar::CedarSide;
use self::world::{Thing, World};
use crate::report::{self, progress, Line};
use crate::CommonArgs;

/// Events per `read_all` page, as the live index reads them.
const PAGE: usize = 2_000;
/// Seed of the questions (the world has its own).
const QUESTION_SEED: u64 = 0x0ce5_7104_5eed;

/// The sizes of one run.
#[derive(Debug, Clone, Copy)]
struct Settings {
    quick: bool,
    /// Questions asked of the index and of Cedar.
    questions: usize,
    /// Questions asked of SQL too (the first ones).
    sql_questions: usize,
    /// Runs of the complete lookup and of the reverse lookup.
    lookup_runs: usize,
}

impl Settings {
    fn new(quick: bool) -> Self {
        if quick {
            Self {
                quick,
                questions: 50_000,
                sql_questions: 1_000,
                lookup_runs: 51,
            }
        } else {
            Self {
                quick,
                questions: 200_000,
                sql_questions: 2_000,
                lookup_runs: 31,
            }
        }
    }
}

/// Runs every comparison of the `access` benchmark.
pub async fn run(args: CommonArgs) -> anyhow::Result<()> {
    let settings = Settings::new(args.quick);
    let sizes = world::Sizes::new(args.quick);
    progress("world: generating the model and its events");
    let started = Instant::now();
    let (world, phases) = world::generate(&sizes, world::SEED);
    let world = Arc::new(world);
    let events: usize = phases.iter().map(|p| p.events()).sum();
    progress(&format!(
        "world: {events} events decided in {:.1} s",
        started.elapsed().as_secs_f64()
    ));
    let db = TestDb::with_pool_size(12).await;
    let store = db.store();
    let wal_before = wal_position(db.pool()).await?;
    let written = load::append_phases(&store, &world, phases).await?;
    let wal_bytes = wal_since(db.pool(), &wal_before).await?;
    print_world(&world, written);
    sqlx::query("VACUUM (ANALYZE) sl_events, sl_event_tags, sl_streams")
        .execute(db.pool())
        .await
        .context("VACUUM the log")?;
    report_storage(db.pool(), written.events, wal_bytes).await?;
    report::quiesce(db.pool()).await;

    let index = compare_rebuild(&store, &world, written.events).await?;
    compare_derive(&store, written.events).await?;
    let (loaded, index_rss) = index;
    // As `LiveAccess::start` serves it: laid out afresh after loading.
    let started = Instant::now();
    let index = loaded.compacted();
    drop(loaded);
    progress(&format!(
        "rebuild: compacted the loaded index in {:.2} s",
        started.elapsed().as_secs_f64()
    ));

    let rss_before = resident_bytes()?;
    progress("cedar: building the entities");
    let started = Instant::now();
    let cedar = CedarSide::build(&world)?;
    let cedar_build = started.elapsed();
    let cedar_rss = resident_bytes()?.saturating_sub(rss_before);
    progress(&format!(
        "cedar: {} entities in {:.1} s, {:.0} MB resident",
        cedar.entity_count,
        cedar_build.as_secs_f64(),
        mb(cedar_rss)
    ));

    let questions = questions(&world, settings.questions);
    compare_check_cedar(&world, &index, &cedar, &questions)?;
    compare_check_sql(
        &db,
        &store,
        &world,
        &index,
        &questions[..settings.sql_questions],
    )
    .await?;
    compare_lookup(&world, &index, &cedar, &settings)?;
    compare_viewers(&world, &index, &cedar, &settings)?;

    let sizes = index.sizes();
    Line::new("access_memory")
        .count("index_rss_mb", mb(index_rss))
        .count("cedar_rss_mb", mb(cedar_rss))
        .ms("cedar_build_s", cedar_build.as_secs_f64())
        .text("cedar_entities", cedar.entity_count)
        .text("objects", sizes.objects)
        .text("placements", sizes.placements)
        .text("users", sizes.users)
        .text("events_referenced", sizes.events_referenced)
        .count(
            "index_bytes_per_placement",
            index_rss as f64 / sizes.placements as f64,
        )
        .ms("load1", load1())
        .ratio(cedar_rss as f64, index_rss as f64);
    if settings.quick {
        progress("quick run: sizes are about 1/20 of the full run");
    }
    Ok(())
}

// ---- storage ----------------------------------------------------------------

/// The cluster's current WAL position.
async fn wal_position(pool: &sqlx::PgPool) -> anyhow::Result<String> {
    sqlx::query_scalar("SELECT pg_current_wal_lsn()::text")
        .fetch_one(pool)
        .await
        .context("the WAL position")
}

/// The WAL written since `from` (by the whole cluster: run alone).
async fn wal_since(pool: &sqlx::PgPool, from: &str) -> anyhow::Result<i64> {
    sqlx::query_scalar("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), $1::pg_lsn)::bigint")
        .bind(from)
        .fetch_one(pool)
        .await
        .context("the WAL written")
}

/// `access_storage`: what the world's log takes on disk and in the WAL,
/// per event, against the events' own JSON (data and metadata): the
/// figures `docs/scaling.md` sizes a platform from.
async fn report_storage(pool: &sqlx::PgPool, events: u64, wal_bytes: i64) -> anyhow::Result<()> {
    let size = |table: &'static str| async move {
        sqlx::query_scalar::<_, i64>("SELECT pg_total_relation_size($1::regclass)")
            .bind(table)
            .fetch_one(pool)
            .await
            .with_context(|| format!("the size of {table}"))
    };
    let (log, tags, streams) = (
        size("sl_events").await?,
        size("sl_event_tags").await?,
        size("sl_streams").await?,
    );
    let (payload, tag_rows): (i64, i64) = sqlx::query_as(
        "SELECT (SELECT COALESCE(sum(octet_length(data::text) + octet_length(metadata::text)), 0) \
                 FROM sl_events)::bigint, \
                (SELECT count(*) FROM sl_event_tags)",
    )
    .fetch_one(pool)
    .await
    .context("the events' own size")?;
    let per_event = |bytes: i64| bytes as f64 / events.max(1) as f64;
    let on_disk = log + tags + streams;
    Line::new("access_storage")
        .text("events", events)
        .ms("log_mb", mb(log as u64))
        .ms("tags_mb", mb(tags as u64))
        .ms("streams_mb", mb(streams as u64))
        .text(
            "tags_per_event",
            format!("{:.2}", tag_rows as f64 / events.max(1) as f64),
        )
        .count("json_bytes_per_event", per_event(payload))
        .count("disk_bytes_per_event", per_event(on_disk))
        .count("wal_bytes_per_event", per_event(wal_bytes))
        .ms("load1", load1())
        .ratio(payload as f64, on_disk as f64);
    Ok(())
}

fn mb(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

fn print_world(world: &World, written: load::Written) {
    use std::io::Write as _;
    let line = format!(
        "WORLD sites={} users={} scorecards={} objects={} placements={} active_links={} \
         shares={} relationships={} events={} write_s={:.1} write_events_per_s={:.0} load1={:.2}",
        world.sites.len(),
        world.users.len(),
        world.scorecards.len(),
        world.objects.len(),
        world.placements(),
        world.active_links(),
        world.shares(),
        world.live_relationships(),
        written.events,
        written.elapsed.as_secs_f64(),
        written.events as f64 / written.elapsed.as_secs_f64(),
        load1(),
    );
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

// ---- memory -----------------------------------------------------------------

/// Gives the allocator's free memory back to the system, so that resident
/// memory reflects what is live.
fn trim_heap() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        extern "C" {
            fn malloc_trim(pad: usize) -> i32;
        }
        // SAFETY: glibc's malloc_trim only releases free heap memory.
        unsafe {
            malloc_trim(0);
        }
    }
}

/// This process's resident memory (VmRSS), after [`trim_heap`].
pub(crate) fn resident_bytes() -> anyhow::Result<u64> {
    trim_heap();
    let status = std::fs::read_to_string("/proc/self/status").context("/proc/self/status")?;
    let kb: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .context("no VmRSS in /proc/self/status")?;
    Ok(kb * 1024)
}

// ---- rebuild ----------------------------------------------------------------

/// Reads the whole log in pages; `apply` gets each page.
async fn scan(
    store: &PgEventStore,
    head: u64,
    mut apply: impl FnMut(&[shareledger_events::RecordedEvent]) -> anyhow::Result<()>,
) -> anyhow::Result<Duration> {
    let started = Instant::now();
    let (mut next, mut read) = (1u64, 0u64);
    loop {
        let page = store
            .read_all(Direction::Forwards, PositionFrom::At(next), PAGE)
            .await
            .with_context(|| format!("read_all from {next}"))?;
        let Some(last) = page.last() else { break };
        next = last.global_position + 1;
        read += page.len() as u64;
        apply(&page)?;
        black_box(&page);
    }
    anyhow::ensure!(read == head, "read {read} events, the log holds {head}");
    Ok(started.elapsed())
}

/// The longest `access_derive` derives.
const DERIVE_BUDGET: Duration = Duration::from_secs(60);

/// `access_derive`.
async fn compare_derive(store: &PgEventStore, head: u64) -> anyhow::Result<()> {
    progress("derive: access changes from the start of the log");
    let mut index = AccessIndex::new();
    let (mut next, mut changes) = (1u64, 0u64);
    let mut tracked = Duration::ZERO;
    let mut pages: Vec<Vec<shareledger_events::RecordedEvent>> = Vec::new();
    while next <= head && tracked < DERIVE_BUDGET {
        let page = store
            .read_all(Direction::Forwards, PositionFrom::At(next), PAGE)
            .await
            .with_context(|| format!("read_all from {next}"))?;
        let Some(last) = page.last() else { break };
        next = last.global_position + 1;
        let started = Instant::now();
        for event in &page {
            changes += index.apply_tracked(event)?.len() as u64;
            if started.elapsed() + tracked >= DERIVE_BUDGET {
                next = event.global_position + 1;
                break;
            }
        }
        tracked += started.elapsed();
        pages.push(page);
    }
    let derived = next - 1;
    drop(index);
    let mut plain_index = AccessIndex::new();
    let started = Instant::now();
    for event in pages.iter().flatten().take(derived as usize) {
        plain_index.apply(event)?;
    }
    let plain = started.elapsed();
    let rate = |d: Duration| derived as f64 / d.as_secs_f64().max(1e-9);
    Line::new("access_derive")
        .text("events", derived)
        .text("of", head)
        .text("changes", changes)
        .count("tracked_events_per_s", rate(tracked))
        .count("plain_events_per_s", rate(plain))
        .ms("tracked_s", tracked.as_secs_f64())
        .ms("load1", load1())
        .ratio(rate(tracked), rate(plain));
    Ok(())
}

/// `access_rebuild`; returns the index and the resident memory it added.
async fn compare_rebuild(
    store: &PgEventStore,
    world: &World,
    events: u64,
) -> anyhow::Result<(AccessIndex, u64)> {
    let head = store.head_position().await.context("head position")?;
    anyhow::ensure!(
        head == events,
        "the log holds {head} events, {events} were written"
    );
    progress(&format!("rebuild: raw scan of {head} events"));
    let raw_first = scan(store, head, |_| Ok(())).await?;
    progress("rebuild: loading the access index");
    let rss_before = resident_bytes()?;
    let mut index = AccessIndex::new();
    let ours = scan(store, head, |page| {
        for event in page {
            index.apply(event)?;
        }
        Ok(())
    })
    .await?;
    let index_rss = resident_bytes()?.saturating_sub(rss_before);
    progress("rebuild: raw scan again");
    let raw_second = scan(store, head, |_| Ok(())).await?;
    progress("rebuild: LiveAccess::start on the same log");
    let started = Instant::now();
    let (live, task) = LiveAccess::start(store.clone(), LiveOptions::default())
        .await
        .context("LiveAccess::start")?;
    let live_took = started.elapsed();
    anyhow::ensure!(live.position() >= head, "the live index stopped short");
    live.stop();
    task.await
        .context("the live follower panicked")?
        .context("the live follower failed")?;
    drop(live);
    trim_heap();

    check_sizes(&index, world)?;
    let rate = |d: Duration| head as f64 / d.as_secs_f64();
    let raw_rate = 2.0 * head as f64 / (raw_first + raw_second).as_secs_f64();
    Line::new("access_rebuild")
        .text("events", head)
        .text("page", PAGE)
        .count("index_events_per_s", rate(ours))
        .count("raw_events_per_s", raw_rate)
        .count("live_events_per_s", rate(live_took))
        .ms("index_s", ours.as_secs_f64())
        .ms("raw_s", (raw_first + raw_second).as_secs_f64() / 2.0)
        .ms("live_s", live_took.as_secs_f64())
        .ms("load1", load1())
        .ratio(rate(ours), raw_rate);
    Ok((index, index_rss))
}

/// The index must hold what the generator decided.
fn check_sizes(index: &AccessIndex, world: &World) -> anyhow::Result<()> {
    let sizes = index.sizes();
    let expected = [
        ("sites", sizes.sites, world.sites.len()),
        ("users", sizes.users, world.users.len()),
        ("scorecards", sizes.scorecards, world.scorecards.len()),
        ("objects", sizes.objects, world.objects.len()),
        ("placements", sizes.placements, world.placements()),
        ("active_links", sizes.active_links, world.active_links()),
        (
            "relationships",
            sizes.relationships,
            world.live_relationships(),
        ),
    ];
    for (what, index, world) in expected {
        anyhow::ensure!(
            index == world,
            "the index holds {index} {what}, the generated world {world}"
        );
    }
    Ok(())
}

// ---- questions --------------------------------------------------------------

/// One Q-1 question about the world.
#[derive(Debug, Clone, Copy)]
struct Question {
    user: u32,
    thing: Thing,
    action: Action,
    /// Which part of the mix it comes from (see [`questions`]).
    mix: Mix,
}

/// The parts of the question mix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mix {
    Own,
    Partner,
    Relationship,
    Random,
}

impl Mix {
    const ALL: [Mix; 4] = [Mix::Own, Mix::Partner, Mix::Relationship, Mix::Random];
}

/// `n` questions: 40 % about the user's own site (half of them, when the
/// user has own scorecards assigned, about one of those or an object on
/// it), 30 % about content of a site linked to the user's (a shared
/// scorecard, an object on one, or any of that site's objects), 10 % about
/// the object of a relationship of the user's site (or an object inside
/// it), 20 % any user and any target. Actions: view 55 %, update 20 %,
/// edit 15 %, admin 10 %.
fn questions(world: &World, n: usize) -> Vec<Question> {
    let mut rng = StdRng::seed_from_u64(QUESTION_SEED);
    let mut pick = |len: usize| rng.gen_range(0..len);
    let mut out = Vec::with_capacity(n);
    while out.len() < n {
        let roll = pick(100);
        let (user, thing) = if roll < 40 {
            let user = pick(world.users.len()) as u32;
            let site_index = world.users[user as usize].site;
            let site = &world.sites[site_index as usize];
            let own_assigned: Vec<u32> = world.users[user as usize]
                .assigned
                .iter()
                .map(|(s, _)| *s)
                .filter(|s| world.scorecards[*s as usize].site == site_index)
                .collect();
            let thing = if pick(2) == 0 && !own_assigned.is_empty() {
                // Something on a scorecard assigned to the user.
                let scorecard = own_assigned[pick(own_assigned.len())];
                let shows = &world.shows[scorecard as usize];
                if pick(10) < 3 || shows.is_empty() {
                    Thing::Scorecard(scorecard)
                } else {
                    Thing::Object(shows[pick(shows.len())])
                }
            } else if pick(10) < 3 {
                Thing::Scorecard(site.scorecards[pick(site.scorecards.len())])
            } else {
                Thing::Object(site.objects[pick(site.objects.len())])
            };
            (user, thing)
        } else if roll < 70 {
            let (from, to) = world.link_order[pick(world.link_order.len())];
            let users = &world.sites[to as usize].users;
            let user = users[pick(users.len())];
            let shared = &world.links[&(from, to)].shared;
            let owner = &world.sites[from as usize];
            let what = pick(4);
            let thing = if what == 0 && !shared.is_empty() {
                Thing::Scorecard(shared[pick(shared.len())])
            } else if what < 3 && !shared.is_empty() {
                let shows = &world.shows[shared[pick(shared.len())] as usize];
                if shows.is_empty() {
                    continue;
                }
                Thing::Object(shows[pick(shows.len())])
            } else {
                Thing::Object(owner.objects[pick(owner.objects.len())])
            };
            (user, thing)
        } else if roll < 80 {
            if world.relationships.is_empty() {
                continue;
            }
            let rel = &world.relationships[pick(world.relationships.len())];
            let users = &world.sites[rel.site as usize].users;
            let user = users[pick(users.len())];
            let children = &world.objects[rel.object as usize].children;
            let object = if pick(2) == 0 && !children.is_empty() {
                children[pick(children.len())]
            } else {
                rel.object
            };
            (user, Thing::Object(object))
        } else {
            let user = pick(world.users.len()) as u32;
            let thing = if pick(10) < 2 {
                Thing::Scorecard(pick(world.scorecards.len()) as u32)
            } else {
                Thing::Object(pick(world.objects.len()) as u32)
            };
            (user, thing)
        };
        let action = match pick(100) {
            0..55 => Action::View,
            55..75 => Action::Update,
            75..90 => Action::Edit,
            _ => Action::Admin,
        };
        let mix = match roll {
            0..40 => Mix::Own,
            40..70 => Mix::Partner,
            70..80 => Mix::Relationship,
            _ => Mix::Random,
        };
        out.push(Question {
            user,
            thing,
            action,
            mix,
        });
    }
    out
}

/// Latencies in nanoseconds: sorted, and in the order measured.
struct Latencies(Vec<u64>, Vec<u64>);

impl Latencies {
    fn new(measured: Vec<u64>) -> Self {
        let mut sorted = measured.clone();
        sorted.sort_unstable();
        Self(sorted, measured)
    }

    fn quantile(&self, q: f64) -> f64 {
        if self.0.is_empty() {
            return f64::NAN;
        }
        let rank = ((self.0.len() as f64 * q).ceil() as usize).clamp(1, self.0.len());
        self.0[rank - 1] as f64
    }
}

/// Times `f` on every item, one `Instant` pair per call.
fn time_each<T, R>(items: &[T], mut f: impl FnMut(&T) -> R) -> (Latencies, Vec<R>) {
    let mut ns = Vec::with_capacity(items.len());
    let mut answers = Vec::with_capacity(items.len());
    for item in items {
        let began = Instant::now();
        let answer = black_box(f(black_box(item)));
        ns.push(began.elapsed().as_nanos() as u64);
        answers.push(answer);
    }
    (Latencies::new(ns), answers)
}

/// Mean nanoseconds per call of `f` over all items, timed as one batch.
fn time_batch<T, R>(items: &[T], mut f: impl FnMut(&T) -> R) -> f64 {
    let began = Instant::now();
    for item in items {
        black_box(f(black_box(item)));
    }
    began.elapsed().as_nanos() as f64 / items.len() as f64
}

fn compare_check_cedar(
    world: &World,
    index: &AccessIndex,
    cedar: &CedarSide,
    questions: &[Question],
) -> anyhow::Result<()> {
    progress(&format!(
        "check: {} questions, index and Cedar",
        questions.len()
    ));
    let ours_q: Vec<(UserId, Target, Action)> = questions
        .iter()
        .map(|q| {
            (
                world.users[q.user as usize].id,
                world.target(q.thing),
                q.action,
            )
        })
        .collect();
    let cedar_q = questions
        .iter()
        .map(|q| cedar.request(world, q.user, q.thing, q.action))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let check =
        |(user, target, action): &(UserId, Target, Action)| index.check(*user, *target, *action);
    // Warm-up (and the answers' errors: every question is about known ids).
    for q in &ours_q {
        check(q).with_context(|| format!("check {q:?}"))?;
    }
    let timer = time_each(&ours_q, |_| ()).0;
    let (ours, answers) = time_each(&ours_q, check);
    let ours_mean = time_batch(&ours_q, check);
    let answers: Vec<bool> = answers.into_iter().collect::<Result<_, _>>()?;

    time_batch(&cedar_q[..cedar_q.len().min(5_000)], |r| cedar.decide(r));
    let (theirs, cedar_answers) = time_each(&cedar_q, |r| cedar.decide(r));
    let theirs_mean = time_batch(&cedar_q, |r| cedar.decide(r));

    let errors = cedar_answers.iter().filter(|(_, e)| *e).count();
    let mut agree = 0;
    let mut shown = 0;
    for (i, (ours, (theirs, _))) in answers.iter().zip(&cedar_answers).enumerate() {
        if ours == theirs {
            agree += 1;
        } else if shown < 5 {
            shown += 1;
            let q = &questions[i];
            let user = &world.users[q.user as usize];
            eprintln!(
                "check: DISAGREE index={ours} cedar={theirs} {:?} by user #{} of site #{} \
                 (active {}, flags {:?}, assigned {:?}) on {:?} of site #{}; index's paths {}",
                q.action,
                q.user,
                user.site,
                user.active,
                user.flags,
                user.assigned,
                q.thing,
                match q.thing {
                    Thing::Scorecard(s) => world.scorecards[s as usize].site,
                    Thing::Object(o) => world.objects[o as usize].site,
                },
                paths(index, ours_q[i].0, ours_q[i].1)
            );
        }
    }
    for mix in Mix::ALL {
        let of = |l: &Latencies| {
            Latencies::new(
                questions
                    .iter()
                    .zip(&l.1)
                    .filter(|(q, _)| q.mix == mix)
                    .map(|(_, ns)| *ns)
                    .collect(),
            )
        };
        let (ours, theirs) = (of(&ours), of(&theirs));
        progress(&format!(
            "check: {mix:?}: {} questions, ours p50 {:.0} ns p99 {:.0} ns, Cedar p50 {:.0} ns \
             p99 {:.0} ns",
            ours.0.len(),
            ours.quantile(0.5),
            ours.quantile(0.99),
            theirs.quantile(0.5),
            theirs.quantile(0.99)
        ));
    }
    let allowed = answers.iter().filter(|a| **a).count();
    Line::new("access_check_cedar")
        .text("questions", questions.len())
        .text("allowed", allowed)
        .text("agree", format_args!("{agree}/{}", questions.len()))
        .text("cedar_errors", errors)
        .count("timer_ns", timer.quantile(0.5))
        .count("ours_p50_ns", ours.quantile(0.5))
        .count("ours_p99_ns", ours.quantile(0.99))
        .count("ours_mean_ns", ours_mean)
        .count("cedar_p50_ns", theirs.quantile(0.5))
        .count("cedar_p99_ns", theirs.quantile(0.99))
        .count("cedar_mean_ns", theirs_mean)
        .ms("load1", load1())
        .ratio_as("ratio_p99", theirs.quantile(0.99), ours.quantile(0.99))
        .ratio(theirs_mean, ours_mean);
    Ok(())
}

async fn compare_check_sql(
    db: &TestDb,
    store: &PgEventStore,
    world: &World,
    index: &AccessIndex,
    questions: &[Question],
) -> anyhow::Result<()> {
    progress("check: filling the access_tables read model from the log");
    let head = store.head_position().await.context("head position")?;
    let started = Instant::now();
    let runtime = ProjectionRuntime::start(
        store.clone(),
        vec![Arc::new(AccessTables::default())],
        RuntimeOptions {
            batch_size: PAGE,
            ..RuntimeOptions::default()
        },
    )
    .await
    .context("starting the projection runtime")?;
    runtime
        .wait_for(head, Duration::from_secs(3_600))
        .await
        .context("waiting for access_tables to catch up")?;
    let build = started.elapsed();
    runtime.shutdown().await.context("stopping the runtime")?;
    progress(&format!(
        "check: access_tables caught up with {head} events in {:.1} s",
        build.as_secs_f64()
    ));
    report::quiesce(db.pool()).await;
    let pool = db.pool().clone();
    let asked: Vec<(UserId, Target)> = questions
        .iter()
        .map(|q| (world.users[q.user as usize].id, world.target(q.thing)))
        .collect();
    // Warm-up: a tenth of the questions, not counted.
    for (user, target) in &asked[..asked.len() / 10] {
        level_sql(&pool, *user, *target).await?;
    }
    let mut ns = Vec::with_capacity(asked.len());
    let mut theirs: Vec<Option<AccessLevel>> = Vec::with_capacity(asked.len());
    let began = Instant::now();
    for (user, target) in &asked {
        let t = Instant::now();
        theirs.push(
            level_sql(&pool, *user, *target)
                .await
                .with_context(|| format!("level_sql({user}, {target:?})"))?,
        );
        ns.push(t.elapsed().as_nanos() as u64);
    }
    let sql_mean = began.elapsed().as_nanos() as f64 / asked.len() as f64;
    let sql = Latencies::new(ns);
    let level = |(user, target): &(UserId, Target)| index.level(*user, *target);
    time_batch(&asked, level);
    let (ours, answers) = time_each(&asked, level);
    let ours_mean = time_batch(&asked, level);
    let mut agree = 0;
    for (i, (ours, theirs)) in answers.into_iter().zip(&theirs).enumerate() {
        let ours = ours?;
        if ours == *theirs {
            agree += 1;
        } else if i - agree < 5 {
            let (user, target) = asked[i];
            eprintln!(
                "check: DISAGREE index={ours:?} sql={theirs:?} on {:?}: user {user}, {target:?}, \
                 index's paths {}",
                questions[i],
                paths(index, user, target)
            );
        }
    }
    Line::new("access_check_sql")
        .text("questions", asked.len())
        .text("agree", format_args!("{agree}/{}", asked.len()))
        .ms("sql_build_s", build.as_secs_f64())
        .count("ours_p50_ns", ours.quantile(0.5))
        .count("ours_p99_ns", ours.quantile(0.99))
        .count("ours_mean_ns", ours_mean)
        .count("sql_p50_ns", sql.quantile(0.5))
        .count("sql_p99_ns", sql.quantile(0.99))
        .count("sql_mean_ns", sql_mean)
        .ms("load1", load1())
        .ratio_as("ratio_p99", sql.quantile(0.99), ours.quantile(0.99))
        .ratio(sql_mean, ours_mean);
    Ok(())
}

/// The index's explanation in short: the facts of each path, for
/// reporting a disagreement.
fn paths(index: &AccessIndex, user: UserId, target: Target) -> String {
    match index.explain(user, target) {
        Ok(explanation) => {
            let paths: Vec<String> = explanation
                .paths
                .iter()
                .map(|path| {
                    let facts: Vec<String> = path
                        .steps
                        .iter()
                        .map(|step| {
                            serde_json::to_value(&step.fact)
                                .ok()
                                .and_then(|v| v.get("fact").map(|f| f.to_string()))
                                .unwrap_or_default()
                        })
                        .collect();
                    format!("{:?}: {}", path.level, facts.join(" + "))
                })
                .collect();
            format!("[{}]", paths.join("; "))
        }
        Err(e) => format!("(no explanation: {e})"),
    }
}

// ---- lookups ----------------------------------------------------------------

/// Every page of `user`'s lookup (narrowed by `query`): the targets, and
/// each page's time in milliseconds.
fn full_lookup(
    index: &AccessIndex,
    user: UserId,
    mut query: LookupQuery,
) -> anyhow::Result<(Vec<Target>, Vec<f64>)> {
    query.limit = MAX_PAGE;
    let mut targets = Vec::new();
    let mut page_ms = Vec::new();
    loop {
        let began = Instant::now();
        let page = black_box(index.lookup(user, &query)?);
        page_ms.push(began.elapsed().as_secs_f64() * 1000.0);
        targets.extend(page.items.iter().map(|v| v.target));
        match page.next {
            Some(cursor) => query.after = Some(cursor),
            None => return Ok((targets, page_ms)),
        }
    }
}

/// The p50 of some milliseconds.
fn median(mut ms: Vec<f64>) -> f64 {
    ms.sort_by(f64::total_cmp);
    ms[ms.len() / 2]
}

/// p50, min and max of `runs` timings of `f`.
fn repeat<R>(
    runs: usize,
    mut f: impl FnMut() -> anyhow::Result<R>,
) -> anyhow::Result<(f64, f64, f64)> {
    let mut ms = Vec::with_capacity(runs);
    for _ in 0..runs {
        let began = Instant::now();
        black_box(f()?);
        ms.push(began.elapsed().as_secs_f64() * 1000.0);
    }
    ms.sort_by(f64::total_cmp);
    Ok((ms[ms.len() / 2], ms[0], ms[ms.len() - 1]))
}

/// The 1-minute load average: the machine is shared, and a run's figures
/// are only as quiet as the machine was.
fn load1() -> f64 {
    std::fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next()?.parse().ok())
        .unwrap_or(f64::NAN)
}

/// The objects a lookup returned.
fn objects_in(targets: &[Target]) -> usize {
    targets
        .iter()
        .filter(|t| matches!(t, Target::Object(_)))
        .count()
}

/// The object count of issue 4's lookup goal.
const TEN_THOUSAND: usize = 10_000;

/// The user who sees the fewest objects among those who see at least
/// [`TEN_THOUSAND`] (the lowest index on a tie), with that count. Counted by
/// complete lookups, only for users whose site could reach that many: its
/// own objects plus, per site sharing with it, the objects showing on the
/// shared scorecards (an upper bound of what any of its users sees).
fn ten_thousand_user(world: &World, index: &AccessIndex) -> anyhow::Result<Option<(u32, usize)>> {
    let mut bound: Vec<usize> = world.sites.iter().map(|s| s.objects.len()).collect();
    for (&(from, to), link) in &world.links {
        if link.active {
            bound[to as usize] += world
                .shared(from, to)
                .iter()
                .map(|s| world.shows[*s as usize].len())
                .sum::<usize>();
        }
    }
    let mut best: Option<(u32, usize)> = None;
    for (user, info) in world.users.iter().enumerate() {
        if bound[info.site as usize] < TEN_THOUSAND {
            continue;
        }
        let (targets, _) = full_lookup(index, info.id, LookupQuery::default())?;
        let objects = objects_in(&targets);
        if objects >= TEN_THOUSAND && best.is_none_or(|(_, fewest)| objects < fewest) {
            best = Some((user as u32, objects));
        }
    }
    Ok(best)
}

fn compare_lookup(
    world: &World,
    index: &AccessIndex,
    cedar: &CedarSide,
    settings: &Settings,
) -> anyhow::Result<()> {
    progress("lookup: the big user's complete lookup");
    compare_lookup_of(
        "access_lookup",
        world.big_user,
        world,
        index,
        cedar,
        settings,
    )?;
    match ten_thousand_user(world, index)? {
        Some((user, objects)) => {
            progress(&format!(
                "lookup: user {user} sees {objects} objects, the fewest of those who see \
                 {TEN_THOUSAND} or more"
            ));
            compare_lookup_of("access_lookup_10k", user, world, index, cedar, settings)?;
        }
        None => progress(&format!(
            "lookup: no user sees {TEN_THOUSAND} objects: no access_lookup_10k line"
        )),
    }
    Ok(())
}

/// The complete lookup of one user, timed and compared with Cedar: one
/// `name` line.
fn compare_lookup_of(
    name: &str,
    user: u32,
    world: &World,
    index: &AccessIndex,
    cedar: &CedarSide,
    settings: &Settings,
) -> anyhow::Result<()> {
    let user_id = world.users[user as usize].id;
    let site = world.users[user as usize].site;
    let (targets, _) = full_lookup(index, user_id, LookupQuery::default())?;
    let mut totals = Vec::with_capacity(settings.lookup_runs);
    let mut per_page: Vec<Vec<f64>> = Vec::new();
    for _ in 0..settings.lookup_runs {
        let (_, page_ms) = full_lookup(index, user_id, LookupQuery::default())?;
        totals.push(page_ms.iter().sum::<f64>());
        per_page.resize(page_ms.len(), Vec::new());
        for (page, ms) in page_ms.into_iter().enumerate() {
            per_page[page].push(ms);
        }
    }
    let pages = per_page.len();
    let page_p50: Vec<String> = per_page
        .into_iter()
        .map(|ms| format!("{:.2}", median(ms)))
        .collect();
    let (min, max) = (
        totals.iter().copied().fold(f64::INFINITY, f64::min),
        totals.iter().copied().fold(0.0, f64::max),
    );
    let p50 = median(totals);
    let own_only = LookupQuery {
        site: Some(world.sites[site as usize].id),
        ..LookupQuery::default()
    };
    let (own_p50, _, _) = repeat(settings.lookup_runs, || {
        full_lookup(index, user_id, own_only.clone())
    })?;
    progress(&format!(
        "lookup ({name}): the user's own site only (filter site): p50 {own_p50:.2} ms"
    ));
    // Cedar has no lookup: ask it about every candidate.
    let mut candidates: Vec<Thing> = Vec::new();
    let mut owners = vec![site];
    owners.extend(
        world
            .links
            .iter()
            .filter_map(|(&(from, to), link)| (to == site && link.active).then_some(from)),
    );
    for owner in owners {
        let owner = &world.sites[owner as usize];
        candidates.extend(owner.scorecards.iter().map(|s| Thing::Scorecard(*s)));
        candidates.extend(owner.objects.iter().map(|o| Thing::Object(*o)));
    }
    let requests = candidates
        .iter()
        .map(|c| cedar.request(world, user, *c, Action::View))
        .collect::<anyhow::Result<Vec<_>>>()?;
    progress(&format!(
        "lookup ({name}): Cedar on {} candidates",
        requests.len()
    ));
    let mut allowed = Vec::new();
    let (cedar_p50, _, _) = repeat(3, || {
        allowed.clear();
        for (request, thing) in requests.iter().zip(&candidates) {
            if cedar.decide(request).0 {
                allowed.push(*thing);
            }
        }
        Ok(())
    })?;
    let ours: FxHashSet<Target> = targets.iter().copied().collect();
    let theirs: FxHashSet<Target> = allowed.iter().map(|t| world.target(*t)).collect();
    Line::new(name)
        .text("items", targets.len())
        .text("objects", objects_in(&targets))
        .text("pages", pages)
        .text(
            "same_as_cedar",
            ours == theirs && ours.len() == targets.len(),
        )
        .text("candidates", candidates.len())
        .ms("ours_p50_ms", p50)
        .ms("ours_min_ms", min)
        .ms("ours_max_ms", max)
        .text("page_p50_ms", page_p50.join("/"))
        .ms("cedar_scan_ms", cedar_p50)
        .ms("load1", load1())
        .ratio(cedar_p50, p50);
    Ok(())
}

fn compare_viewers(
    world: &World,
    index: &AccessIndex,
    cedar: &CedarSide,
    settings: &Settings,
) -> anyhow::Result<()> {
    let owner = world.broadcaster;
    let first = *world.sites[owner as usize]
        .scorecards
        .iter()
        .min()
        .context("the broadcaster has scorecards")?;
    let object = *world.shows[first as usize]
        .first()
        .context("an object shows on the broadcaster's first scorecard")?;
    let target = world.target(Thing::Object(object));
    progress("viewers: reverse lookup of a widely shared object");
    let viewers = index.viewers(target)?;
    let (p50, min, max) = repeat(settings.lookup_runs, || Ok(index.viewers(target)?))?;
    let mut sites = vec![owner];
    sites.extend(
        world
            .links
            .iter()
            .filter_map(|(&(from, to), link)| (from == owner && link.active).then_some(to)),
    );
    let partners = sites.len() - 1;
    let users: Vec<u32> = sites
        .iter()
        .flat_map(|s| world.sites[*s as usize].users.iter().copied())
        .collect();
    let requests = users
        .iter()
        .map(|u| cedar.request(world, *u, Thing::Object(object), Action::View))
        .collect::<anyhow::Result<Vec<_>>>()?;
    let mut allowed = Vec::new();
    let (cedar_p50, _, _) = repeat(3, || {
        allowed.clear();
        for (request, user) in requests.iter().zip(&users) {
            if cedar.decide(request).0 {
                allowed.push(world.users[*user as usize].id);
            }
        }
        Ok(())
    })?;
    let ours: FxHashSet<UserId> = viewers.iter().map(|v| v.user).collect();
    let theirs: FxHashSet<UserId> = allowed.iter().copied().collect();
    Line::new("access_viewers")
        .text("viewers", viewers.len())
        .text("partner_sites", partners)
        .text("same_as_cedar", ours == theirs)
        .text("candidates", users.len())
        .ms("ours_p50_ms", p50)
        .ms("ours_min_ms", min)
        .ms("ours_max_ms", max)
        .ms("cedar_scan_ms", cedar_p50)
        .ms("load1", load1())
        .ratio(cedar_p50, p50);
    Ok(())
}
