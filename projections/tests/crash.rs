//! Crash safety of the projection runtime: whatever stops it, and wherever,
//! the live tables end up exactly as a clean rebuild makes them.
//!
//! A random world (sites, users, scorecards, objects, placements, links,
//! shares, relationships, grants, role and flag changes, deactivations) is
//! written through the real command service. Then, round after round, the
//! runtime runs the real read models ([`dashboard::all`]) and a per-stream
//! event counter, wrapped in [`Crashy`]: at a random batch (of any
//! projection, in a follower or inside a switch) the wrapper applies a
//! random part of the batch and then dies in the middle of it, one of four
//! ways:
//!
//! * `Fail`: `apply` returns an error (the runtime reports it, shutdown);
//! * `Panic`: `apply` panics (the runtime reports it, shutdown);
//! * `Abort`: `apply` never returns and the test drops the runtime;
//! * `Kill`: the test terminates every connection of the runtime's pool
//!   (`pg_terminate_backend`) while the batch is open, then lets it go on
//!   (a transient fault: the projection must run again from its checkpoint
//!   and catch up, without the process doing anything).
//!
//! Some rounds start a rebuild first, so crashes also hit rebuilds and
//! switches; commands keep being written while each round runs. After each
//! round every server connection of that round is terminated, as a crashed
//! process's would be. Finally a clean runtime catches up, and every table of
//! every live generation is compared, row for row, with a fresh build of the
//! same projection from the whole log, and the counter with the log itself.
//!
//! The seed is printed; `CRASH_SEED=<n>` replays a run, `CRASH_ROUNDS=<n>`
//! changes the number of rounds (30 by default). Nothing sleeps: the test
//! waits on the wrapper's signals and on the runtime's waits, with timeouts
//! only as failure guards.

use std::collections::BTreeMap;
use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use rand::rngs::StdRng;
use rand::seq::SliceRandom;
use rand::{Rng, SeedableRng};
use shareledger_commands::{CommandError, Issued, Service};
use shareledger_core::catalog::{
    AccessLevel, Directions, Name, ObjectId, ObjectKind, PermissionFlag, RelationshipId, Role,
    ScorecardId, SeatLimit, SiteCode, SiteId, UserId, Username,
};
use shareledger_core::connection::{
    ApproveConnection, CancelConnectionRequest, DenyConnection, RequestConnection, RevokeSharing,
    ShareScorecard, UnshareScorecard,
};
use shareledger_core::content::{
    CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
    RemoveObjectFromScorecard,
};
use shareledger_core::site::{
    AddUser, ChangeUserRole, DeactivateUser, GrantScorecardAccess, ReactivateUser, RegisterSite,
    RevokeScorecardAccess, SetPermissionFlags,
};
use shareledger_events::store::{PgEventStore, PositionFrom};
use shareledger_events::{Actor, Direction, RecordedEvent};
use shareledger_projections::dashboard;
use shareledger_projections::projection::SqlProjection;
use shareledger_projections::runtime::{
    generation_schema, ProjectionRuntime, ProjectionState, RuntimeOptions,
};
use shareledger_projections::ProjectionError;
use shareledger_tests::TestDb;
use sqlx::postgres::PgPoolOptions;
use sqlx::{PgConnection, PgPool};
use tokio::sync::{Notify, Semaphore};
use uuid::Uuid;

/// A failure guard only.
const WAIT: Duration = Duration::from_secs(120);

// ---------------------------------------------------------------------------
// The projections
// ---------------------------------------------------------------------------

/// Counts the events of each stream (every event of the log) in
/// `crash_counts`.
struct Counts;

#[async_trait]
impl SqlProjection for Counts {
    fn name(&self) -> &'static str {
        "crash_counts"
    }

    fn version(&self) -> u32 {
        1
    }

    async fn create_tables(
        &self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> Result<(), ProjectionError> {
        sqlx::query(&format!(
            "CREATE TABLE \"{schema}\".crash_counts \
             (stream text PRIMARY KEY, events bigint NOT NULL, last_position bigint NOT NULL)"
        ))
        .execute(conn)
        .await?;
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        // One statement per event: a batch is many statements, so a crash
        // inside it leaves a real half-written transaction behind.
        for event in events {
            sqlx::query(&format!(
                "INSERT INTO \"{schema}\".crash_counts AS t (stream, events, last_position) \
                 VALUES ($1, 1, $2) \
                 ON CONFLICT (stream) DO UPDATE SET events = t.events + 1, \
                     last_position = excluded.last_position"
            ))
            .bind(&event.stream)
            .bind(event.global_position as i64)
            .execute(&mut *conn)
            .await?;
        }
        Ok(())
    }
}

fn projections() -> Vec<Arc<dyn SqlProjection>> {
    let mut all = dashboard::all();
    all.push(Arc::new(Counts));
    all
}

// ---------------------------------------------------------------------------
// The crash
// ---------------------------------------------------------------------------

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Fail,
    Panic,
    Abort,
    Kill,
}

/// When and how a round dies; shared by every wrapped projection of it.
struct CrashPlan {
    mode: Mode,
    /// `apply` calls (of any projection) before the one that dies.
    calls_left: AtomicUsize,
    /// Where in its batch the dying call stops (a fraction of it).
    cut: f64,
    /// The projection that died and the schema it was writing, once it has.
    died: Mutex<Option<(&'static str, String)>>,
    /// Signalled when the dying call has written its part.
    reached: Notify,
    /// `Kill`: closed once the connections are terminated.
    resume: Semaphore,
}

impl CrashPlan {
    /// Whether this call is the one that dies.
    fn dies_now(&self) -> bool {
        self.calls_left
            .fetch_update(Ordering::SeqCst, Ordering::SeqCst, |n| n.checked_sub(1))
            .is_ok_and(|before| before == 1)
    }
}

/// A projection that dies in the middle of a batch as its plan says.
struct Crashy {
    inner: Arc<dyn SqlProjection>,
    plan: Arc<CrashPlan>,
}

#[async_trait]
impl SqlProjection for Crashy {
    fn name(&self) -> &'static str {
        self.inner.name()
    }

    fn version(&self) -> u32 {
        self.inner.version()
    }

    async fn create_tables(
        &self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> Result<(), ProjectionError> {
        self.inner.create_tables(conn, schema).await
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        if !self.plan.dies_now() {
            return self.inner.apply(conn, schema, events).await;
        }
        let cut = ((events.len() as f64) * self.plan.cut) as usize;
        let (written, rest) = events.split_at(cut.min(events.len()));
        self.inner.apply(conn, schema, written).await?;
        *self.plan.died.lock().expect("not poisoned") =
            Some((self.inner.name(), schema.to_string()));
        self.plan.reached.notify_one();
        match self.plan.mode {
            Mode::Fail => Err(ProjectionError::Database(sqlx::Error::Protocol(
                "injected failure in the middle of a batch".into(),
            ))),
            Mode::Panic => panic!("injected panic in the middle of a batch"),
            Mode::Abort => std::future::pending().await,
            Mode::Kill => {
                // Closed, that is released, once the connections are gone.
                let _ = self.plan.resume.acquire().await;
                self.inner.apply(conn, schema, rest).await?;
                // Whatever `apply` did with an empty rest, the connection is
                // gone: the runtime's next statement fails.
                sqlx::query("SELECT 1").execute(&mut *conn).await?;
                Ok(())
            }
        }
    }
}

// ---------------------------------------------------------------------------
// A random world, through the command service
// ---------------------------------------------------------------------------

struct Site {
    id: SiteId,
    code: String,
    admin: UserId,
    users: Vec<UserId>,
    scorecards: Vec<ScorecardId>,
    objects: Vec<ObjectId>,
}

struct World {
    service: Service,
    rng: StdRng,
    sites: Vec<Site>,
    written: usize,
    refused: usize,
}

fn operator() -> Issued {
    Issued {
        actor: Actor::Operator {
            name: "crash-test".into(),
        },
        key: Uuid::new_v4(),
    }
}

fn name(raw: &str) -> Name {
    Name::parse(raw).expect("a valid name")
}

impl World {
    fn new(service: Service, seed: u64) -> Self {
        Self {
            service,
            rng: StdRng::seed_from_u64(seed),
            sites: Vec::new(),
            written: 0,
            refused: 0,
        }
    }

    fn by(&self, site: usize) -> Issued {
        let site = &self.sites[site];
        Issued {
            actor: Actor::User {
                user_id: site.admin.0,
                site_id: site.id.0,
            },
            key: Uuid::new_v4(),
        }
    }

    /// Counts a command's outcome; domain refusals are part of a random
    /// world, anything else is a failure of the test.
    fn outcome<T>(&mut self, result: Result<T, CommandError>) -> Option<T> {
        match result {
            Ok(value) => {
                self.written += 1;
                Some(value)
            }
            Err(CommandError::Domain(_)) => {
                self.refused += 1;
                None
            }
            Err(other) => panic!("a command failed: {other}"),
        }
    }

    async fn add_site(&mut self) {
        let n = self.sites.len();
        let code = format!("SITE{n}");
        let id = SiteId::new();
        let registered = self
            .service
            .execute(
                &operator(),
                RegisterSite {
                    site_id: id,
                    code: SiteCode::parse(&code).expect("a valid code"),
                    name: name(&format!("Site {n}")),
                    seat_limit: SeatLimit::new(40).expect("a valid limit"),
                    parent: None,
                },
            )
            .await;
        self.outcome(registered).expect("a new site registers");
        let admin = UserId::new();
        let added = self
            .service
            .execute(
                &operator(),
                AddUser {
                    site_id: id,
                    user_id: admin,
                    username: Username::parse(&format!("admin@site{n}.org")).expect("valid"),
                    name: name("Admin"),
                    role: Role::Administration,
                    email: None,
                },
            )
            .await;
        self.outcome(added).expect("the first admin is added");
        self.sites.push(Site {
            id,
            code,
            admin,
            users: vec![admin],
            scorecards: Vec::new(),
            objects: Vec::new(),
        });
    }

    fn site(&mut self) -> usize {
        self.rng.gen_range(0..self.sites.len())
    }

    fn two_sites(&mut self) -> (usize, usize) {
        let a = self.site();
        let b = (a + self.rng.gen_range(1..self.sites.len())) % self.sites.len();
        (a, b)
    }

    fn pick<T: Copy>(&mut self, items: &[T]) -> Option<T> {
        items.choose(&mut self.rng).copied()
    }

    /// A command that always writes: a new scorecard.
    async fn sure_step(&mut self) {
        let s = self.site();
        let scorecard_id = ScorecardId::new();
        let r = self
            .service
            .execute(
                &self.by(s),
                CreateScorecard {
                    site_id: self.sites[s].id,
                    scorecard_id,
                    name: name("A scorecard"),
                },
            )
            .await;
        self.outcome(r).expect("an admin creates a scorecard");
        self.sites[s].scorecards.push(scorecard_id);
    }

    /// One random command.
    async fn step(&mut self) {
        let s = self.site();
        let site_id = self.sites[s].id;
        match self.rng.gen_range(0..100) {
            0..=9 => {
                let user_id = UserId::new();
                let role = *[
                    Role::Administration,
                    Role::ScorecardBuilder,
                    Role::DataEntry,
                    Role::Presenter,
                ]
                .choose(&mut self.rng)
                .expect("roles");
                let username = format!("u{}@site{s}.org", self.sites[s].users.len());
                let r = self
                    .service
                    .execute(
                        &self.by(s),
                        AddUser {
                            site_id,
                            user_id,
                            username: Username::parse(&username).expect("valid"),
                            name: name("A user"),
                            role,
                            email: None,
                        },
                    )
                    .await;
                if self.outcome(r).is_some() {
                    self.sites[s].users.push(user_id);
                }
            }
            10..=17 => {
                let scorecard_id = ScorecardId::new();
                let r = self
                    .service
                    .execute(
                        &self.by(s),
                        CreateScorecard {
                            site_id,
                            scorecard_id,
                            name: name("A scorecard"),
                        },
                    )
                    .await;
                if self.outcome(r).is_some() {
                    self.sites[s].scorecards.push(scorecard_id);
                }
            }
            18..=31 => {
                let object_id = ObjectId::new();
                let kind = *[
                    ObjectKind::Result,
                    ObjectKind::Indicator,
                    ObjectKind::Program,
                    ObjectKind::PerformanceMeasure,
                ]
                .choose(&mut self.rng)
                .expect("kinds");
                let objects = self.sites[s].objects.clone();
                let container = if self.rng.gen_bool(0.6) {
                    self.pick(&objects)
                } else {
                    None
                };
                let r = self
                    .service
                    .execute(
                        &self.by(s),
                        CreateObject {
                            site_id,
                            object_id,
                            kind,
                            name: name("An object"),
                            container,
                        },
                    )
                    .await;
                if self.outcome(r).is_some() {
                    self.sites[s].objects.push(object_id);
                }
            }
            32..=43 => {
                let (objects, scorecards) = (
                    self.sites[s].objects.clone(),
                    self.sites[s].scorecards.clone(),
                );
                let (Some(object_id), Some(scorecard_id)) =
                    (self.pick(&objects), self.pick(&scorecards))
                else {
                    return;
                };
                let r = if self.rng.gen_bool(0.8) {
                    self.service
                        .execute(
                            &self.by(s),
                            PlaceObjectOnScorecard {
                                site_id,
                                object_id,
                                scorecard_id,
                            },
                        )
                        .await
                } else {
                    self.service
                        .execute(
                            &self.by(s),
                            RemoveObjectFromScorecard {
                                site_id,
                                object_id,
                                scorecard_id,
                            },
                        )
                        .await
                };
                self.outcome(r);
            }
            44..=51 => {
                let (a, b) = self.two_sites();
                let directions = if self.rng.gen_bool(0.5) {
                    Directions::Both
                } else {
                    Directions::Offer
                };
                let code = SiteCode::parse(&self.sites[b].code).expect("valid");
                let r = self
                    .service
                    .execute(
                        &self.by(a),
                        RequestConnection {
                            site_id: self.sites[a].id,
                            partner_code: code,
                            directions,
                        },
                    )
                    .await;
                self.outcome(r);
            }
            52..=61 => {
                let (a, b) = self.two_sites();
                let (ida, idb) = (self.sites[a].id, self.sites[b].id);
                let by = self.by(a);
                let r = match self.rng.gen_range(0..10) {
                    0..=6 => {
                        self.service
                            .execute(
                                &by,
                                ApproveConnection {
                                    site_id: ida,
                                    partner: idb,
                                },
                            )
                            .await
                    }
                    7 => {
                        self.service
                            .execute(
                                &by,
                                DenyConnection {
                                    site_id: ida,
                                    partner: idb,
                                },
                            )
                            .await
                    }
                    8 => {
                        self.service
                            .execute(
                                &by,
                                CancelConnectionRequest {
                                    site_id: ida,
                                    partner: idb,
                                },
                            )
                            .await
                    }
                    _ => {
                        self.service
                            .execute(
                                &by,
                                RevokeSharing {
                                    site_id: ida,
                                    from: ida,
                                    to: idb,
                                },
                            )
                            .await
                    }
                };
                self.outcome(r);
            }
            62..=71 => {
                let (a, b) = self.two_sites();
                let scorecards = self.sites[a].scorecards.clone();
                let Some(scorecard) = self.pick(&scorecards) else {
                    return;
                };
                let (site_id, partner) = (self.sites[a].id, self.sites[b].id);
                let r = if self.rng.gen_bool(0.8) {
                    self.service
                        .execute(
                            &self.by(a),
                            ShareScorecard {
                                site_id,
                                partner,
                                scorecard_id: scorecard,
                            },
                        )
                        .await
                } else {
                    self.service
                        .execute(
                            &self.by(a),
                            UnshareScorecard {
                                site_id,
                                partner,
                                scorecard_id: scorecard,
                            },
                        )
                        .await
                };
                self.outcome(r);
            }
            72..=79 => {
                let (a, b) = self.two_sites();
                let (scorecards, objects) = (
                    self.sites[a].scorecards.clone(),
                    self.sites[b].objects.clone(),
                );
                let (Some(scorecard_id), Some(object_id)) =
                    (self.pick(&scorecards), self.pick(&objects))
                else {
                    return;
                };
                let command = LinkSharedObject {
                    site_id: self.sites[a].id,
                    relationship_id: RelationshipId::new(),
                    scorecard_id,
                    origin_site: self.sites[b].id,
                    object_id,
                };
                let r = self.service.execute(&self.by(a), command).await;
                self.outcome(r);
            }
            80..=87 => {
                // Own or a partner's scorecard.
                let owner = if self.rng.gen_bool(0.6) {
                    s
                } else {
                    self.site()
                };
                let (users, scorecards) = (
                    self.sites[s].users.clone(),
                    self.sites[owner].scorecards.clone(),
                );
                let (Some(user_id), Some(scorecard_id)) =
                    (self.pick(&users), self.pick(&scorecards))
                else {
                    return;
                };
                let level = *AccessLevel::ALL.choose(&mut self.rng).expect("levels");
                let owner_id = self.sites[owner].id;
                let r = if self.rng.gen_bool(0.8) {
                    self.service
                        .execute(
                            &self.by(s),
                            GrantScorecardAccess {
                                site_id,
                                user_id,
                                scorecard_id,
                                level,
                                owner_site: Some(owner_id),
                            },
                        )
                        .await
                } else {
                    self.service
                        .execute(
                            &self.by(s),
                            RevokeScorecardAccess {
                                site_id,
                                user_id,
                                scorecard_id,
                            },
                        )
                        .await
                };
                self.outcome(r);
            }
            _ => {
                let users = self.sites[s].users[1..].to_vec();
                let Some(user_id) = self.pick(&users) else {
                    return;
                };
                let r = match self.rng.gen_range(0..4) {
                    0 => {
                        let role = *[Role::ScorecardBuilder, Role::DataEntry, Role::Presenter]
                            .choose(&mut self.rng)
                            .expect("roles");
                        self.service
                            .execute(
                                &self.by(s),
                                ChangeUserRole {
                                    site_id,
                                    user_id,
                                    role,
                                },
                            )
                            .await
                    }
                    1 => {
                        let flags: Vec<PermissionFlag> = PermissionFlag::ALL
                            .choose_multiple(&mut self.rng, 3)
                            .copied()
                            .collect();
                        self.service
                            .execute(
                                &self.by(s),
                                SetPermissionFlags {
                                    site_id,
                                    user_id,
                                    enable: BTreeSet::from([flags[0], flags[1]]),
                                    disable: BTreeSet::from([flags[2]]),
                                },
                            )
                            .await
                    }
                    2 => {
                        self.service
                            .execute(&self.by(s), DeactivateUser { site_id, user_id })
                            .await
                    }
                    _ => {
                        self.service
                            .execute(&self.by(s), ReactivateUser { site_id, user_id })
                            .await
                    }
                };
                self.outcome(r);
            }
        }
    }
}

// ---------------------------------------------------------------------------
// Checking
// ---------------------------------------------------------------------------

async fn whole_log(store: &PgEventStore) -> Vec<RecordedEvent> {
    let mut events: Vec<RecordedEvent> = Vec::new();
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

/// The tables (and views) of a schema.
async fn relations(pool: &PgPool, schema: &str) -> Vec<String> {
    sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace \
         WHERE n.nspname = $1 AND c.relkind IN ('r', 'p', 'v', 'm') ORDER BY 1",
    )
    .bind(schema)
    .fetch_all(pool)
    .await
    .expect("read the catalog")
}

/// Every row of a relation as text, sorted.
async fn rows(pool: &PgPool, schema: &str, relation: &str) -> Vec<String> {
    sqlx::query_scalar(&format!(
        "SELECT t::text FROM \"{schema}\".\"{relation}\" t ORDER BY 1"
    ))
    .fetch_all(pool)
    .await
    .expect("read a relation")
}

/// Builds `projection` from the whole log into a fresh schema, in one
/// transaction, as plainly as possible.
async fn clean_build(
    pool: &PgPool,
    projection: &dyn SqlProjection,
    events: &[RecordedEvent],
) -> String {
    let schema = format!("clean_{}", projection.name());
    let mut tx = pool.begin().await.expect("begin");
    sqlx::query(&format!("CREATE SCHEMA \"{schema}\""))
        .execute(&mut *tx)
        .await
        .expect("create the clean schema");
    projection
        .create_tables(&mut tx, &schema)
        .await
        .expect("create the clean tables");
    for chunk in events.chunks(500) {
        projection
            .apply(&mut tx, &schema, chunk)
            .await
            .expect("apply the whole log");
    }
    tx.commit().await.expect("commit");
    schema
}

/// Terminates every server connection of pools named `application`, and
/// waits until each has exited; returns how many there were.
async fn kill_connections(pool: &PgPool, application: &str) -> i64 {
    sqlx::query_scalar(
        "SELECT count(pg_terminate_backend(pid, 60000)) FROM pg_stat_activity \
         WHERE application_name = $1 AND pid <> pg_backend_pid()",
    )
    .bind(application)
    .fetch_one(pool)
    .await
    .expect("terminate backends")
}

/// Terminates the connections of pools named `application` until none is
/// left (a pool may have been opening one meanwhile).
async fn connections_gone(pool: &PgPool, application: &str) {
    let gone = async { while kill_connections(pool, application).await > 0 {} };
    tokio::time::timeout(WAIT, gone)
        .await
        .expect("the round's connections go away");
}

// ---------------------------------------------------------------------------
// The test
// ---------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn crashes_anywhere_leave_the_live_tables_as_a_clean_rebuild_makes_them() {
    let seed: u64 = std::env::var("CRASH_SEED")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(rand::random);
    let rounds: usize = std::env::var("CRASH_ROUNDS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(30);
    println!("crash test: CRASH_SEED={seed} CRASH_ROUNDS={rounds}");
    let mut rng = StdRng::seed_from_u64(seed);

    let started = std::time::Instant::now();
    let db = TestDb::new().await;
    let store = db.store();
    let mut world = World::new(Service::new(store.clone()), seed ^ 0x5eed);
    for _ in 0..8 {
        world.add_site().await;
    }
    for _ in 0..1_200 {
        world.step().await;
    }
    println!("crash test: world written in {:?}", started.elapsed());
    let started = std::time::Instant::now();
    let names: Vec<&'static str> = projections().iter().map(|p| p.name()).collect();
    let world = Arc::new(tokio::sync::Mutex::new(world));

    let mut modes = BTreeMap::<String, usize>::new();
    for round in 0..rounds {
        // New commands before the round, so every projection has work.
        let before = store.head_position().await.expect("head");
        {
            let mut world = world.lock().await;
            world.sure_step().await;
            let steps = rng.gen_range(20..80);
            for _ in 0..steps {
                world.step().await;
            }
        }
        let head = store.head_position().await.expect("head");
        let batch_size = *[1, 3, 8, 32, 128].choose(&mut rng).expect("sizes");
        // Each projection needs at least this many batches to catch up, so
        // a crash at or before the call below is certain to happen.
        let batches = (head - before).div_ceil(batch_size as u64) as usize;
        let mode = *[Mode::Fail, Mode::Panic, Mode::Abort, Mode::Kill]
            .choose(&mut rng)
            .expect("modes");
        let plan = Arc::new(CrashPlan {
            mode,
            calls_left: AtomicUsize::new(rng.gen_range(1..=batches * names.len())),
            cut: rng.gen_range(0.0..1.0),
            died: Mutex::new(None),
            reached: Notify::new(),
            resume: Semaphore::new(0),
        });
        let wrapped: Vec<Arc<dyn SqlProjection>> = projections()
            .into_iter()
            .map(|inner| -> Arc<dyn SqlProjection> {
                Arc::new(Crashy {
                    inner,
                    plan: plan.clone(),
                })
            })
            .collect();

        // The runtime gets a pool of its own, named, so that its
        // connections can be killed as a crashed process's would be.
        let application = format!("crash_round_{round}");
        let pool = PgPoolOptions::new()
            .max_connections(16)
            .acquire_timeout(WAIT)
            .connect_with(db.connect_options().application_name(&application))
            .await
            .expect("the round's pool");
        let options = RuntimeOptions {
            batch_size,
            ..RuntimeOptions::default()
        };
        let runtime = ProjectionRuntime::start(PgEventStore::new(pool.clone()), wrapped, options)
            .await
            .expect("the runtime starts");
        if rng.gen_bool(0.3) {
            let name = *names.choose(&mut rng).expect("names");
            // It may be refused if the crash came first; either is fine.
            let _ = runtime.rebuild(name).await;
        }

        // Commands keep coming while the round runs.
        let writing = Arc::new(AtomicBool::new(true));
        let writer = tokio::spawn({
            let (world, writing) = (world.clone(), writing.clone());
            let steps = rng.gen_range(0..30);
            async move {
                let mut world = world.lock().await;
                for _ in 0..steps {
                    if !writing.load(Ordering::Relaxed) {
                        break;
                    }
                    world.step().await;
                }
            }
        });

        tokio::time::timeout(WAIT, plan.reached.notified())
            .await
            .unwrap_or_else(|_| panic!("round {round}: the crash did not come ({mode:?})"));
        let (died, schema) = plan
            .died
            .lock()
            .expect("not poisoned")
            .clone()
            .expect("the dying projection is named");
        // Which generation the crash hit: the live one or one being rebuilt
        // (the registry is as the crash left it).
        let building: Option<i32> =
            sqlx::query_scalar("SELECT building_generation FROM sl_projections WHERE name = $1")
                .bind(died)
                .fetch_one(db.pool())
                .await
                .expect("read the registry");
        let hit = match building {
            Some(g) if generation_schema(died, g as u32) == schema => "rebuild",
            _ => "live",
        };
        *modes
            .entry(format!("{mode:?} in a {hit} generation"))
            .or_default() += 1;
        match mode {
            Mode::Fail | Mode::Panic => {
                let failed = runtime.wait_for_projection(died, u64::MAX, WAIT).await;
                assert!(
                    matches!(&failed, Err(ProjectionError::Failed { name, .. }) if *name == died),
                    "round {round}: {failed:?}"
                );
                let stopped = runtime.shutdown().await;
                assert!(
                    stopped.is_err(),
                    "round {round}: shutdown reports the failure"
                );
            }
            Mode::Abort => drop(runtime),
            Mode::Kill => {
                kill_connections(db.pool(), &application).await;
                plan.resume.close();
                // A killed connection is a transient fault: the projection
                // runs again from its checkpoint (or, when a switch retired
                // the generation the batch was in, simply goes on with the
                // new one) and catches up; it never fails for it.
                let head = db.store().head_position().await.expect("the head");
                runtime
                    .wait_for_projection(died, head, WAIT)
                    .await
                    .unwrap_or_else(|e| {
                        panic!("round {round}: {died} ({hit}) did not recover: {e}")
                    });
                let state = runtime
                    .parts()
                    .into_iter()
                    .find(|(health, _)| health.name() == died)
                    .map(|(_, state)| state);
                assert_eq!(
                    state,
                    Some(ProjectionState::Running),
                    "round {round}: {died} ({hit})"
                );
                drop(runtime);
            }
        }
        writing.store(false, Ordering::Relaxed);
        writer.await.expect("the writer");
        // Whatever the process left open on the server dies with it.
        connections_gone(db.pool(), &application).await;
        drop(pool);
    }
    println!(
        "crash test: modes {modes:?}, rounds took {:?}",
        started.elapsed()
    );

    // A clean runtime finishes whatever is under way and catches up.
    let runtime = ProjectionRuntime::start(store.clone(), projections(), RuntimeOptions::default())
        .await
        .expect("the clean runtime starts");
    for status in runtime.status().await.expect("status") {
        if let Some(rebuild) = status.rebuild {
            runtime
                .wait_for_generation(&status.name, rebuild.generation, WAIT)
                .await
                .expect("the rebuild in progress completes");
        }
    }
    let head = store.head_position().await.expect("head");
    runtime.wait_for(head, WAIT).await.expect("caught up");
    let status = runtime.status().await.expect("status");
    runtime.shutdown().await.expect("a clean stop");

    let pool = db.pool();
    let events = whole_log(&store).await;
    assert_eq!(events.len() as u64, head);
    let world = world.lock().await;
    println!(
        "crash test: {} events, {} commands written, {} refused",
        head, world.written, world.refused
    );
    for (projection, status) in projections().iter().zip(&status) {
        assert_eq!(status.name, projection.name());
        assert_eq!((status.position, status.rebuild.clone()), (head, None));
        let live = generation_schema(projection.name(), status.live_generation);
        let clean = clean_build(pool, projection.as_ref(), &events).await;
        let tables = relations(pool, &live).await;
        assert!(!tables.is_empty());
        assert_eq!(tables, relations(pool, &clean).await, "{live}: same tables");
        for table in &tables {
            let (got, want) = (
                rows(pool, &live, table).await,
                rows(pool, &clean, table).await,
            );
            assert!(
                got == want,
                "{live}.{table} differs from a clean rebuild: {} rows against {}; \
                 only live: {:?}; only clean: {:?}",
                got.len(),
                want.len(),
                got.iter()
                    .filter(|r| !want.contains(r))
                    .take(5)
                    .collect::<Vec<_>>(),
                want.iter()
                    .filter(|r| !got.contains(r))
                    .take(5)
                    .collect::<Vec<_>>(),
            );
            // And SQL consumers see the same through `rm`.
            assert_eq!(rows(pool, "rm", table).await, want, "rm.{table}");
        }
    }
    // The counter equals the log itself.
    let mut from_log = BTreeMap::<String, i64>::new();
    for event in &events {
        *from_log.entry(event.stream.clone()).or_default() += 1;
    }
    let counted: BTreeMap<String, i64> =
        sqlx::query_as::<_, (String, i64)>("SELECT stream, events FROM rm.crash_counts")
            .fetch_all(pool)
            .await
            .expect("read the counts")
            .into_iter()
            .collect();
    assert_eq!(counted, from_log);
    // Nothing is left of dropped generations.
    let leftovers: Vec<String> = sqlx::query_scalar(
        "SELECT nspname::text FROM pg_namespace WHERE nspname LIKE 'rm\\_%' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("read the schemas");
    let live: Vec<String> = {
        let mut live: Vec<String> = status
            .iter()
            .map(|s| generation_schema(&s.name, s.live_generation))
            .collect();
        live.sort();
        live
    };
    assert_eq!(leftovers, live);
    let checkpoints: Vec<String> = sqlx::query_scalar(
        "SELECT name FROM sl_checkpoints WHERE name LIKE 'projection:%' ORDER BY 1",
    )
    .fetch_all(pool)
    .await
    .expect("read the checkpoints");
    let mut expected: Vec<String> = status
        .iter()
        .map(|s| format!("projection:{}:g{}", s.name, s.live_generation))
        .collect();
    expected.sort();
    assert_eq!(checkpoints, expected);
}
