//! `commands`: commands per second through the command service, for a
//! realistic mix of user, sharing and connection commands, against the raw
//! single-row `INSERT` limit of the same run.
//!
//! `commands_c{1,8,32}`, each side on a fresh database of its own:
//!
//! * Ours: `concurrency` tasks issue commands through
//!   [`shareledger_commands::Service`] for the measured window. Before it,
//!   not timed: 64 sites (16 with `--quick`; at least two per task), each
//!   with an Administration admin (added by an operator), a generous seat
//!   limit, [`SCORECARDS`] scorecards and [`USERS_AT_SETUP`] users, and an
//!   active link both ways between neighbouring sites (site `i` requests
//!   `i+1`, `i+1` approves).
//! * Raw: one autocommit single-row `INSERT` per call, exactly
//!   `append_single_c*`'s raw side ([`crate::append::measure_raw`]).
//!
//! The mix: each task loops, picking an action by weight with a seeded RNG,
//! on one of its own sites (tasks split the sites between them; one pick in
//! ten goes to any site, so tasks overlap a little). Every command gets a
//! fresh idempotency key and is issued by its site's admin.
//!
//! | weight | action | commands |
//! |---|---|---|
//! | 40 | `AddUser`, then `GrantScorecardAccess` for that user on an own scorecard | 2 |
//! | 20 | `ShareScorecard` / `UnshareScorecard` over the link to the next site | 1 |
//! | 20 | `RequestConnection` to a random site, then its `ApproveConnection` when the request awaits approval | 1 or 2 |
//! | 20 | `DeactivateUser` / `ReactivateUser` of a user created earlier | 1 |
//!
//! Each command is one operation of [`run_timed`], so latencies are per
//! command. Outcomes:
//!
//! * `ours_per_s`: accepted commands (they wrote their events) per second.
//! * `rejected_per_s`: domain refusals the mix runs into legitimately
//!   (`LinkPendingOrActive` once a pair is linked, `NothingToApprove`,
//!   `UserActive`/`UserInactive`, `AlreadyShared`/`NotShared` when tasks
//!   overlap on a site). Any other domain error is a bug of the benchmark and
//!   aborts it.
//! * `errors`: `Contended`, `Log` and `Decode` errors, counted (their first
//!   messages go to stderr), not fatal.
//!
//! Then `commands_hot_site_c32` (`hot_site.rs`): 32 editors of one site
//! against the same work over 32 sites.
//!
//! `ratio` = `ours_per_s / raw_per_s`; latencies are of every command
//! (accepted, rejected or failed). After each run, stderr gets each command kind's
//! count and mean latency over the whole run (warm-up included) and the size
//! of the site streams, which every command reads in full.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::Context as _;
use futures::{StreamExt as _, TryStreamExt as _};
use shareledger_commands::{CommandError, Issued, Outcome, Service};
use shareledger_core::catalog::{
    AccessLevel, Directions, Name, Role, ScorecardId, SeatLimit, SiteCode, SiteId, UserId, Username,
};
use shareledger_core::connection::{
    ApproveConnection, RequestConnection, ShareScorecard, UnshareScorecard,
};
use shareledger_core::content::CreateScorecard;
use shareledger_core::site::{
    AddUser, DeactivateUser, GrantScorecardAccess, ReactivateUser, RegisterSite,
};
use shareledger_core::DomainError;
use shareledger_events::Actor;
use shareledger_tests::TestDb;
use sqlx::{Connection as _, PgPool};

use crate::append::{measure_raw, Workload};
use crate::report::{self, progress, run_timed, Line, Measured, Timing};
use crate::CommandsArgs;

/// Scorecards each site creates during setup.
const SCORECARDS: usize = 2;
/// Users (besides the admin) each site adds during setup, so that
/// deactivations have someone to act on from the first pick.
const USERS_AT_SETUP: usize = 2;
/// Seats per site: never the limit in this benchmark.
const SEAT_LIMIT: u32 = 100_000;
/// Seed of the tasks' RNGs (task `t` uses `SEED ^ t`).
const SEED: u64 = 0x5eed_c0de_2026_0001;
/// One pick in this many goes to any site, not only the task's own.
const OVERLAP_ONE_IN: u64 = 10;

/// Each command's outcome, packed into the event count [`run_timed`] sums:
/// accepted in the low 21 bits, rejected in the next 21, errors above.
const ACCEPTED: u64 = 1;
const REJECTED: u64 = 1 << 21;
const ERRORED: u64 = 1 << 42;
const FIELD: u64 = (1 << 21) - 1;

/// The sizes of one run of the `commands` benchmark.
#[derive(Debug, Clone, Copy)]
struct Settings {
    timing: Timing,
    sites: usize,
}

impl Settings {
    /// Sites at `concurrency`: at least two per task, so that tasks work
    /// mostly on different sites.
    fn sites_for(&self, concurrency: usize) -> usize {
        self.sites.max(2 * concurrency)
    }

    fn new(quick: bool) -> Self {
        if quick {
            Self {
                timing: Timing {
                    warmup: Duration::from_secs(1),
                    window: Duration::from_secs(3),
                },
                sites: 16,
            }
        } else {
            Self {
                timing: Timing {
                    warmup: Duration::from_secs(2),
                    window: Duration::from_secs(10),
                },
                sites: 64,
            }
        }
    }
}

/// Runs `commands_c{1,8,32}` (or the concurrencies chosen).
pub async fn run(args: CommandsArgs) -> anyhow::Result<()> {
    let settings = Settings::new(args.common.quick);
    let workload = Arc::new(Workload::new());
    let concurrencies = match args.concurrency.as_slice() {
        [] => vec![1, 8, 32],
        chosen => chosen.to_vec(),
    };
    for concurrency in &concurrencies {
        compare(*concurrency, &settings, &workload).await?;
    }
    if args.concurrency.is_empty() || args.concurrency.contains(&32) {
        crate::hot_site::run(settings.timing).await?;
    }
    Ok(())
}

async fn compare(
    concurrency: usize,
    settings: &Settings,
    workload: &Arc<Workload>,
) -> anyhow::Result<()> {
    let name = format!("commands_c{concurrency}");
    let ours = measure_ours(&name, concurrency, settings).await?;
    let raw = measure_raw(&name, concurrency, 1, settings.timing, workload).await?;
    let window = ours.measured.window.as_secs_f64();
    let ours_per_s = ours.accepted as f64 / window;
    let raw_per_s = raw.events_per_s();
    Line::new(&name)
        .count("ours_per_s", ours_per_s)
        .count("rejected_per_s", ours.rejected as f64 / window)
        .count("raw_per_s", raw_per_s)
        .text("errors", ours.errors)
        .text("sites", settings.sites_for(concurrency))
        .ms("ours_p50_ms", ours.measured.latency_ms(0.50))
        .ms("ours_p99_ms", ours.measured.latency_ms(0.99))
        .ms("raw_p50_ms", raw.latency_ms(0.50))
        .ms("raw_p99_ms", raw.latency_ms(0.99))
        .ratio(ours_per_s, raw_per_s);
    Ok(())
}

/// What our side measured: the commands' latencies and their outcomes
/// inside the window.
struct Ours {
    measured: Measured,
    accepted: u64,
    rejected: u64,
    errors: u64,
}

/// Our side: sets up the sites on a fresh database with a pool of
/// `concurrency`, then runs the mix on `concurrency` tasks.
async fn measure_ours(
    label: &str,
    concurrency: usize,
    settings: &Settings,
) -> anyhow::Result<Ours> {
    let db = TestDb::with_pool_size(concurrency as u32).await;
    let service = Service::new(db.store());
    let sites = settings.sites_for(concurrency);
    progress(&format!(
        "{label}: setting up {sites} sites ({SCORECARDS} scorecards, {USERS_AT_SETUP} users \
         each, linked to their neighbours)"
    ));
    let started = Instant::now();
    let world = Arc::new(World::set_up(&service, sites, concurrency).await?);
    let head_after_setup = service
        .store()
        .head_position()
        .await
        .context("head position")?;
    progress(&format!(
        "{label}: set up in {:.1} s ({head_after_setup} events)",
        started.elapsed().as_secs_f64()
    ));
    report::quiesce(db.pool()).await;
    progress(&format!(
        "{label}: command mix through the command service, {concurrency} task(s)"
    ));
    let tasks: Arc<Vec<Mutex<TaskState>>> = Arc::new(
        (0..concurrency)
            .map(|t| Mutex::new(TaskState::new(t as u64)))
            .collect(),
    );
    let stats = Arc::new(Stats::default());
    let op = {
        let (service, world, stats) = (service.clone(), Arc::clone(&world), Arc::clone(&stats));
        move |task: usize| {
            let (service, world, tasks, stats) = (
                service.clone(),
                Arc::clone(&world),
                Arc::clone(&tasks),
                Arc::clone(&stats),
            );
            async move { one_command(&service, &world, &tasks, task, concurrency, &stats).await }
        }
    };
    let measured = run_timed(label, concurrency, settings.timing, op).await?;
    let accepted = measured.events & FIELD;
    let rejected = (measured.events >> 21) & FIELD;
    let errors = measured.events >> 42;
    anyhow::ensure!(
        accepted + rejected + errors == measured.ops,
        "{label}: outcome tally overflowed ({} commands, {accepted} accepted, {rejected} \
         rejected, {errors} errors)",
        measured.ops
    );
    stats.print(label);
    print_stream_sizes(label, db.pool()).await?;
    let head = service
        .store()
        .head_position()
        .await
        .context("head position")?;
    anyhow::ensure!(
        head - head_after_setup >= accepted,
        "{label}: the log grew by {} events but the run counted {accepted} accepted commands",
        head - head_after_setup
    );
    print_transactions(label, &db, stats.issued()).await?;
    Ok(Ours {
        measured,
        accepted,
        rejected,
        errors,
    })
}

/// A site of the benchmark, as set up.
#[derive(Debug)]
struct Site {
    id: SiteId,
    code: SiteCode,
    admin: UserId,
    scorecards: Vec<ScorecardId>,
}

/// What the tasks know of a site's changing state. Only a hint: tasks that
/// overlap on a site may find it stale, and then the command is refused.
#[derive(Debug, Default)]
struct Book {
    /// Users added by the benchmark (not the admin), and whether active.
    users: Vec<(UserId, bool)>,
    /// Scorecards shared over the link to the next site.
    shared: BTreeSet<ScorecardId>,
}

struct World {
    sites: Vec<Site>,
    books: Vec<Mutex<Book>>,
}

impl World {
    /// Registers `n` sites with an admin, scorecards and users, then links
    /// each site with the next one (both ways), `parallel` at a time.
    async fn set_up(service: &Service, n: usize, parallel: usize) -> anyhow::Result<Self> {
        anyhow::ensure!(n >= 3, "the benchmark needs at least 3 sites");
        let parallel = parallel.max(1);
        let built: Vec<(Site, Book)> = futures::stream::iter(0..n)
            .map(|i| set_up_site(service, i))
            .buffered(parallel)
            .try_collect()
            .await?;
        let (sites, books): (Vec<Site>, Vec<Book>) = built.into_iter().unzip();
        let world = Self {
            sites,
            books: books.into_iter().map(Mutex::new).collect(),
        };
        futures::stream::iter(0..n)
            .map(|i| world.link_with_next(service, i))
            .buffer_unordered(parallel)
            .try_collect::<Vec<()>>()
            .await?;
        Ok(world)
    }

    fn next(&self, site: usize) -> usize {
        (site + 1) % self.sites.len()
    }

    async fn link_with_next(&self, service: &Service, i: usize) -> anyhow::Result<()> {
        let (a, b) = (&self.sites[i], &self.sites[self.next(i)]);
        service
            .execute(
                &by(a),
                RequestConnection {
                    site_id: a.id,
                    partner_code: b.code.clone(),
                    directions: Directions::Both,
                },
            )
            .await
            .with_context(|| format!("setup: {} requests {}", a.code, b.code))?;
        service
            .execute(
                &by(b),
                ApproveConnection {
                    site_id: b.id,
                    partner: a.id,
                },
            )
            .await
            .with_context(|| format!("setup: {} approves {}", b.code, a.code))?;
        Ok(())
    }

    fn book(&self, site: usize) -> std::sync::MutexGuard<'_, Book> {
        self.books[site]
            .lock()
            .expect("a book's lock is never poisoned")
    }
}

async fn set_up_site(service: &Service, i: usize) -> anyhow::Result<(Site, Book)> {
    let id = SiteId::new();
    let code = SiteCode::parse(&format!("BENCH{i:04}"))?;
    let operator = || Issued {
        actor: Actor::Operator {
            name: "bench".into(),
        },
        key: uuid::Uuid::new_v4(),
    };
    service
        .execute(
            &operator(),
            RegisterSite {
                site_id: id,
                code: code.clone(),
                name: Name::parse(&format!("Bench site {i}"))?,
                seat_limit: SeatLimit::new(SEAT_LIMIT)?,
                parent: None,
            },
        )
        .await
        .with_context(|| format!("setup: registering {code}"))?;
    let admin = UserId::new();
    service
        .execute(
            &operator(),
            AddUser {
                site_id: id,
                user_id: admin,
                username: Username::parse(&format!("admin@{}.example.org", code.as_str()))?,
                name: Name::parse("Admin")?,
                role: Role::Administration,
                email: None,
            },
        )
        .await
        .with_context(|| format!("setup: adding {code}'s admin"))?;
    let mut site = Site {
        id,
        code,
        admin,
        scorecards: Vec::with_capacity(SCORECARDS),
    };
    for k in 0..SCORECARDS {
        let scorecard_id = ScorecardId::new();
        service
            .execute(
                &by(&site),
                CreateScorecard {
                    site_id: id,
                    scorecard_id,
                    name: Name::parse(&format!("Scorecard {k}"))?,
                },
            )
            .await
            .with_context(|| format!("setup: {}'s scorecard {k}", site.code))?;
        site.scorecards.push(scorecard_id);
    }
    let mut book = Book::default();
    for _ in 0..USERS_AT_SETUP {
        let command = new_user(id);
        let user_id = command.user_id;
        service
            .execute(&by(&site), command)
            .await
            .with_context(|| format!("setup: adding a user to {}", site.code))?;
        book.users.push((user_id, true));
    }
    Ok((site, book))
}

/// A command issued by `site`'s admin, with a fresh idempotency key.
fn by(site: &Site) -> Issued {
    Issued {
        actor: Actor::User {
            user_id: site.admin.0,
            site_id: site.id.0,
        },
        key: uuid::Uuid::new_v4(),
    }
}

/// A new user of `site_id`.
fn new_user(site_id: SiteId) -> AddUser {
    let user_id = UserId::new();
    AddUser {
        site_id,
        user_id,
        username: Username::parse(&format!("user-{}@example.org", user_id.0.simple()))
            .expect("a valid username"),
        name: Name::parse("Bench User").expect("a valid name"),
        role: Role::DataEntry,
        email: None,
    }
}

/// SplitMix64: small, seeded, good enough to pick commands.
#[derive(Debug)]
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `0..n` (n > 0; the bias is negligible for small n).
    fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
}

/// A command the mix issues; site fields are indexes into [`World::sites`].
#[derive(Debug, Clone)]
enum Step {
    AddUser {
        site: usize,
        command: AddUser,
    },
    Grant {
        site: usize,
        user: UserId,
        scorecard: ScorecardId,
    },
    Share {
        site: usize,
        scorecard: ScorecardId,
        share: bool,
    },
    Request {
        site: usize,
        partner: usize,
    },
    Approve {
        site: usize,
        requester: usize,
    },
    Toggle {
        site: usize,
        user: UserId,
        deactivate: bool,
    },
}

/// The kinds of [`Step`], for the per-kind statistics.
const KINDS: [&str; 8] = [
    "AddUser",
    "GrantScorecardAccess",
    "ShareScorecard",
    "UnshareScorecard",
    "RequestConnection",
    "ApproveConnection",
    "DeactivateUser",
    "ReactivateUser",
];

impl Step {
    fn kind(&self) -> usize {
        match self {
            Step::AddUser { .. } => 0,
            Step::Grant { .. } => 1,
            Step::Share { share: true, .. } => 2,
            Step::Share { share: false, .. } => 3,
            Step::Request { .. } => 4,
            Step::Approve { .. } => 5,
            Step::Toggle {
                deactivate: true, ..
            } => 6,
            Step::Toggle {
                deactivate: false, ..
            } => 7,
        }
    }
}

/// One task's RNG and the second command of a two-command action, if due.
struct TaskState {
    rng: Rng,
    next: Option<Step>,
}

impl TaskState {
    fn new(task: u64) -> Self {
        Self {
            rng: Rng(SEED ^ task),
            next: None,
        }
    }
}

/// Count and total latency per command kind, and the first error messages.
#[derive(Default)]
struct Stats {
    count: [AtomicU64; KINDS.len()],
    rejected: [AtomicU64; KINDS.len()],
    errored: [AtomicU64; KINDS.len()],
    micros: [AtomicU64; KINDS.len()],
    errors: AtomicU64,
}

impl Stats {
    /// Counts one command of `kind` with its `outcome` ([`ACCEPTED`],
    /// [`REJECTED`] or [`ERRORED`]) and latency.
    fn record(&self, kind: usize, outcome: u64, took: Duration) {
        self.count[kind].fetch_add(1, Ordering::Relaxed);
        if outcome == REJECTED {
            self.rejected[kind].fetch_add(1, Ordering::Relaxed);
        } else if outcome == ERRORED {
            self.errored[kind].fetch_add(1, Ordering::Relaxed);
        }
        self.micros[kind].fetch_add(took.as_micros() as u64, Ordering::Relaxed);
    }

    /// Counts an error; the first few go to stderr.
    fn error(&self, message: String) {
        if self.errors.fetch_add(1, Ordering::Relaxed) < 5 {
            progress(&format!("command error: {message}"));
        }
    }

    /// Commands issued in the whole run.
    fn issued(&self) -> u64 {
        self.count.iter().map(|c| c.load(Ordering::Relaxed)).sum()
    }

    fn print(&self, label: &str) {
        let mut parts = Vec::new();
        for (kind, name) in KINDS.iter().enumerate() {
            let count = self.count[kind].load(Ordering::Relaxed);
            if count == 0 {
                continue;
            }
            let mean_ms = self.micros[kind].load(Ordering::Relaxed) as f64 / count as f64 / 1e3;
            let errored = self.errored[kind].load(Ordering::Relaxed);
            parts.push(format!(
                "{name} {count} ({} rejected{}) {mean_ms:.2} ms",
                self.rejected[kind].load(Ordering::Relaxed),
                if errored > 0 {
                    format!(", {errored} errors")
                } else {
                    String::new()
                }
            ));
        }
        progress(&format!(
            "{label}: whole run incl. warm-up, count and mean latency: {}",
            parts.join(", ")
        ));
        let errors = self.errors.load(Ordering::Relaxed);
        if errors > 0 {
            progress(&format!(
                "{label}: {errors} command error(s) in the whole run"
            ));
        }
    }
}

/// Picks a site for task `task` of `tasks`: one of its own, or (one pick in
/// [`OVERLAP_ONE_IN`]) any.
fn pick_site(rng: &mut Rng, sites: usize, task: usize, tasks: usize) -> usize {
    if rng.below(OVERLAP_ONE_IN as usize) == 0 {
        return rng.below(sites);
    }
    if sites >= tasks {
        // The sites s with s % tasks == task.
        let own = (sites - task).div_ceil(tasks);
        task + tasks * rng.below(own)
    } else {
        task % sites
    }
}

/// The next command of task `task`: the second half of the last action, or
/// a new action picked by weight.
fn next_step(world: &World, state: &mut TaskState, task: usize, tasks: usize) -> Step {
    if let Some(step) = state.next.take() {
        return step;
    }
    let rng = &mut state.rng;
    let site = pick_site(rng, world.sites.len(), task, tasks);
    let roll = rng.below(100);
    if roll < 40 {
        return Step::AddUser {
            site,
            command: new_user(world.sites[site].id),
        };
    }
    if roll < 60 {
        let scorecard = world.sites[site].scorecards[rng.below(SCORECARDS)];
        let share = !world.book(site).shared.contains(&scorecard);
        return Step::Share {
            site,
            scorecard,
            share,
        };
    }
    if roll < 80 {
        let mut partner = rng.below(world.sites.len() - 1);
        if partner >= site {
            partner += 1;
        }
        return Step::Request { site, partner };
    }
    let book = world.book(site);
    if book.users.is_empty() {
        drop(book);
        return Step::AddUser {
            site,
            command: new_user(world.sites[site].id),
        };
    }
    let (user, active) = book.users[rng.below(book.users.len())];
    Step::Toggle {
        site,
        user,
        deactivate: active,
    }
}

/// Issues one command of task `task` and returns its outcome packed as
/// [`ACCEPTED`], [`REJECTED`] or [`ERRORED`].
async fn one_command(
    service: &Service,
    world: &World,
    tasks: &[Mutex<TaskState>],
    task: usize,
    concurrency: usize,
    stats: &Stats,
) -> anyhow::Result<u64> {
    let step = {
        let mut state = tasks[task].lock().expect("never poisoned");
        next_step(world, &mut state, task, concurrency)
    };
    let began = Instant::now();
    let result = issue(service, world, &step).await;
    let took = began.elapsed();
    let packed = match result {
        Ok(outcome) => {
            let mut state = tasks[task].lock().expect("never poisoned");
            state.next = accepted(world, &step, &outcome, &mut state.rng);
            drop(state);
            ACCEPTED
        }
        Err(CommandError::Domain(e)) => {
            refused(world, &step, &e)?;
            REJECTED
        }
        Err(
            e @ (CommandError::Contended { .. } | CommandError::Log(_) | CommandError::Decode(_)),
        ) => {
            stats.error(format!("{}: {e}", KINDS[step.kind()]));
            ERRORED
        }
    };
    stats.record(step.kind(), packed, took);
    Ok(packed)
}

async fn issue(service: &Service, world: &World, step: &Step) -> Result<Outcome, CommandError> {
    let sites = &world.sites;
    match step {
        Step::AddUser { site, command } => {
            let s = &sites[*site];
            service.execute(&by(s), command.clone()).await
        }
        Step::Grant {
            site,
            user,
            scorecard,
        } => {
            let s = &sites[*site];
            service
                .execute(
                    &by(s),
                    GrantScorecardAccess {
                        site_id: s.id,
                        user_id: *user,
                        scorecard_id: *scorecard,
                        level: AccessLevel::Editor,
                        owner_site: None,
                    },
                )
                .await
        }
        Step::Share {
            site,
            scorecard,
            share,
        } => {
            let s = &sites[*site];
            let partner = sites[world.next(*site)].id;
            if *share {
                let command = ShareScorecard {
                    site_id: s.id,
                    partner,
                    scorecard_id: *scorecard,
                };
                service.execute(&by(s), command).await
            } else {
                let command = UnshareScorecard {
                    site_id: s.id,
                    partner,
                    scorecard_id: *scorecard,
                };
                service.execute(&by(s), command).await
            }
        }
        Step::Request { site, partner } => {
            let (s, p) = (&sites[*site], &sites[*partner]);
            service
                .execute(
                    &by(s),
                    RequestConnection {
                        site_id: s.id,
                        partner_code: p.code.clone(),
                        directions: Directions::Both,
                    },
                )
                .await
        }
        Step::Approve { site, requester } => {
            let (s, r) = (&sites[*site], &sites[*requester]);
            service
                .execute(
                    &by(s),
                    ApproveConnection {
                        site_id: s.id,
                        partner: r.id,
                    },
                )
                .await
        }
        Step::Toggle {
            site,
            user,
            deactivate,
        } => {
            let s = &sites[*site];
            if *deactivate {
                service
                    .execute(
                        &by(s),
                        DeactivateUser {
                            site_id: s.id,
                            user_id: *user,
                        },
                    )
                    .await
            } else {
                service
                    .execute(
                        &by(s),
                        ReactivateUser {
                            site_id: s.id,
                            user_id: *user,
                        },
                    )
                    .await
            }
        }
    }
}

/// Records what an accepted command changed; returns the action's second
/// command, if it has one.
fn accepted(world: &World, step: &Step, outcome: &Outcome, rng: &mut Rng) -> Option<Step> {
    match step {
        Step::AddUser { site, command } => {
            world.book(*site).users.push((command.user_id, true));
            Some(Step::Grant {
                site: *site,
                user: command.user_id,
                scorecard: world.sites[*site].scorecards[rng.below(SCORECARDS)],
            })
        }
        Step::Share {
            site,
            scorecard,
            share,
        } => {
            let mut book = world.book(*site);
            if *share {
                book.shared.insert(*scorecard);
            } else {
                book.shared.remove(scorecard);
            }
            None
        }
        Step::Request { site, partner } => outcome
            .events
            .iter()
            .any(|e| e.event_type == "ConnectionRequested")
            .then_some(Step::Approve {
                site: *partner,
                requester: *site,
            }),
        Step::Toggle {
            site,
            user,
            deactivate,
        } => {
            set_active(world, *site, *user, !deactivate);
            None
        }
        Step::Grant { .. } | Step::Approve { .. } => None,
    }
}

/// Checks that a refusal is one the mix runs into legitimately, and corrects
/// the stale hint that led to it. Any other refusal is a benchmark bug.
fn refused(world: &World, step: &Step, error: &DomainError) -> anyhow::Result<()> {
    match (step, error) {
        (Step::Request { .. }, DomainError::LinkPendingOrActive { .. })
        | (Step::Approve { .. }, DomainError::NothingToApprove)
        // Another task deactivated the new user before the grant.
        | (Step::Grant { .. }, DomainError::UserInactive(_)) => Ok(()),
        (Step::Share { site, scorecard, .. }, DomainError::AlreadyShared(_)) => {
            world.book(*site).shared.insert(*scorecard);
            Ok(())
        }
        (Step::Share { site, scorecard, .. }, DomainError::NotShared(_)) => {
            world.book(*site).shared.remove(scorecard);
            Ok(())
        }
        (Step::Toggle { site, user, .. }, DomainError::UserInactive(_)) => {
            set_active(world, *site, *user, false);
            Ok(())
        }
        (Step::Toggle { site, user, .. }, DomainError::UserActive(_)) => {
            set_active(world, *site, *user, true);
            Ok(())
        }
        _ => Err(anyhow::anyhow!(
            "{} was refused unexpectedly ({}: {error}); the benchmark's setup or mix is wrong",
            KINDS[step.kind()],
            error.code()
        )),
    }
}

fn set_active(world: &World, site: usize, user: UserId, active: bool) {
    let mut book = world.book(site);
    if let Some(entry) = book.users.iter_mut().find(|(id, _)| *id == user) {
        entry.1 = active;
    }
}

/// Prints the database's committed and rolled-back transactions: a failed
/// append (a wrong expected revision, which the command service retries)
/// rolls back; so does every append of a merged batch the writer task re-runs
/// alone after the batch failed. Closes the pool first, so that every backend
/// reports its counts when it exits.
async fn print_transactions(label: &str, db: &TestDb, issued: u64) -> anyhow::Result<()> {
    db.pool().close().await;
    tokio::time::sleep(Duration::from_millis(500)).await;
    let mut conn = sqlx::PgConnection::connect_with(&db.connect_options())
        .await
        .context("connecting for pg_stat_database")?;
    let (commits, rollbacks): (i64, i64) = sqlx::query_as(
        "SELECT xact_commit, xact_rollback FROM pg_stat_database \
         WHERE datname = current_database()",
    )
    .fetch_one(&mut conn)
    .await
    .context("reading pg_stat_database")?;
    conn.close().await.ok();
    progress(&format!(
        "{label}: database transactions incl. setup: {commits} committed (reads too), \
         {rollbacks} rolled back, for {issued} commands in the mix"
    ));
    Ok(())
}

/// Prints how many events the site streams hold (every command reads its
/// site's stream in full).
async fn print_stream_sizes(label: &str, pool: &PgPool) -> anyhow::Result<()> {
    let (streams, mean, max): (i64, Option<f64>, Option<i64>) = sqlx::query_as(
        "SELECT count(*), avg(n)::float8, max(n) FROM \
         (SELECT count(*) AS n FROM sl_events WHERE stream_name LIKE 'site-%' \
          GROUP BY stream_name) per_stream",
    )
    .fetch_one(pool)
    .await
    .context("counting the site streams' events")?;
    progress(&format!(
        "{label}: {streams} site streams hold {:.0} events on average, {} at most",
        mean.unwrap_or(0.0),
        max.unwrap_or(0)
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tasks_pick_their_own_sites_mostly() {
        for (sites, tasks) in [(64, 1), (64, 8), (64, 32), (16, 8), (16, 32)] {
            let mut rng = Rng(SEED);
            for task in 0..tasks {
                let mut own = 0;
                for _ in 0..1_000 {
                    let site = pick_site(&mut rng, sites, task, tasks);
                    assert!(site < sites);
                    if sites >= tasks && site % tasks == task
                        || sites < tasks && site == task % sites
                    {
                        own += 1;
                    }
                }
                assert!(own > 850, "{sites} sites, task {task}/{tasks}: {own} own");
            }
        }
    }

    #[test]
    fn outcome_fields_do_not_overlap() {
        let packed = 3 * ACCEPTED + 5 * REJECTED + 7 * ERRORED;
        assert_eq!(packed & FIELD, 3);
        assert_eq!((packed >> 21) & FIELD, 5);
        assert_eq!(packed >> 42, 7);
    }
}
