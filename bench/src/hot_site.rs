//! `commands_hot_site_c32`: 32 callers each editing an object of its own,
//! all of **one** site, against the same work spread over 32 sites, in the
//! same run (issue 15: a site with a dozen editors must not see refusals
//! that have nothing to do with its rules).
//!
//! Each side on a fresh database: the site(s), a scorecard per site and 32
//! Indicators placed on it (one per caller), created before the window.
//! Every caller then loops `ChangeObjectField` (an update-field, by the
//! site's Administration admin) on its own object through one
//! [`Service`], with a fresh idempotency key each time.
//!
//! `hot_per_s` and `spread_per_s` count accepted commands; `contended`
//! counts commands that gave up on conflicts (409 `contended` over HTTP) on
//! the hot side, `errors` any other failure. `ratio` = `hot / spread`.

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;

use anyhow::Context as _;
use shareledger_commands::{CommandError, Issued, Service};
use shareledger_core::catalog::{
    Name, ObjectField, ObjectId, ObjectKind, Role, ScorecardId, SeatLimit, SiteCode, SiteId,
    UserId, Username,
};
use shareledger_core::content::{
    ChangeObjectField, CreateObject, CreateScorecard, PlaceObjectOnScorecard,
};
use shareledger_core::site::{AddUser, RegisterSite};
use shareledger_events::Actor;
use shareledger_tests::TestDb;

use crate::report::{progress, run_timed, Line, Measured, Timing};

const CALLERS: usize = 32;

/// One caller's object: its site, the site's admin, the object.
#[derive(Debug, Clone, Copy)]
struct Target {
    site: SiteId,
    admin: UserId,
    object: ObjectId,
}

fn operator() -> Issued {
    Issued {
        actor: Actor::Operator {
            name: "bench".into(),
        },
        key: uuid::Uuid::new_v4(),
    }
}

fn by(site: SiteId, admin: UserId) -> Issued {
    Issued {
        actor: Actor::User {
            user_id: admin.0,
            site_id: site.0,
        },
        key: uuid::Uuid::new_v4(),
    }
}

/// A site with its admin and a scorecard showing `objects` Indicators.
async fn site(service: &Service, n: usize, objects: usize) -> anyhow::Result<Vec<Target>> {
    let site = SiteId::new();
    let admin = UserId::new();
    service
        .execute(
            &operator(),
            RegisterSite {
                site_id: site,
                code: SiteCode::parse(&format!("HOT{n:04}"))?,
                name: Name::parse(&format!("Hot site {n}"))?,
                seat_limit: SeatLimit::new(100)?,
                parent: None,
            },
        )
        .await?;
    service
        .execute(
            &operator(),
            AddUser {
                site_id: site,
                user_id: admin,
                username: Username::parse(&format!("admin{n}@hot.example"))?,
                name: Name::parse("Admin")?,
                role: Role::Administration,
                email: None,
            },
        )
        .await?;
    let scorecard = ScorecardId::new();
    service
        .execute(
            &by(site, admin),
            CreateScorecard {
                site_id: site,
                scorecard_id: scorecard,
                name: Name::parse("Outcomes")?,
            },
        )
        .await?;
    let mut targets = Vec::new();
    for i in 0..objects {
        let object = ObjectId::new();
        service
            .execute(
                &by(site, admin),
                CreateObject {
                    site_id: site,
                    object_id: object,
                    kind: ObjectKind::Indicator,
                    name: Name::parse(&format!("Indicator {i}"))?,
                    container: None,
                },
            )
            .await?;
        service
            .execute(
                &by(site, admin),
                PlaceObjectOnScorecard {
                    site_id: site,
                    object_id: object,
                    scorecard_id: scorecard,
                },
            )
            .await?;
        targets.push(Target {
            site,
            admin,
            object,
        });
    }
    Ok(targets)
}

/// What one side measured.
struct Side {
    measured: Measured,
    contended: u64,
    errors: u64,
}

async fn measure(label: &str, hot: bool, timing: Timing) -> anyhow::Result<Side> {
    let db = TestDb::with_pool_size(CALLERS as u32 + 8).await;
    let service = Service::new(db.store());
    progress(&format!("{label}: setting up"));
    let targets: Vec<Target> = if hot {
        site(&service, 0, CALLERS).await?
    } else {
        let mut all = Vec::new();
        for n in 0..CALLERS {
            all.extend(site(&service, n, 1).await?);
        }
        all
    };
    let targets = Arc::new(targets);
    let contended = Arc::new(AtomicU64::new(0));
    let errors = Arc::new(AtomicU64::new(0));
    progress(&format!("{label}: measuring"));
    let measured = {
        let (contended, errors) = (Arc::clone(&contended), Arc::clone(&errors));
        run_timed(label, CALLERS, timing, move |task| {
            let (service, targets) = (service.clone(), Arc::clone(&targets));
            let (contended, errors) = (Arc::clone(&contended), Arc::clone(&errors));
            async move {
                let t = targets[task];
                let changed = service
                    .execute(
                        &by(t.site, t.admin),
                        ChangeObjectField {
                            site_id: t.site,
                            object_id: t.object,
                            field: ObjectField::Analysis,
                            value: format!("by caller {task}"),
                        },
                    )
                    .await;
                Ok(match changed {
                    Ok(_) => 1,
                    Err(CommandError::Contended { .. }) => {
                        contended.fetch_add(1, Ordering::Relaxed);
                        0
                    }
                    Err(e) => {
                        if errors.fetch_add(1, Ordering::Relaxed) == 0 {
                            eprintln!("{task}: {e}");
                        }
                        0
                    }
                })
            }
        })
        .await
        .with_context(|| format!("{label}: measuring"))?
    };
    Ok(Side {
        measured,
        contended: contended.load(Ordering::Relaxed),
        errors: errors.load(Ordering::Relaxed),
    })
}

/// Runs `commands_hot_site_c32`.
pub async fn run(timing: Timing) -> anyhow::Result<()> {
    let name = "commands_hot_site_c32";
    let hot = measure(&format!("{name} (one site)"), true, timing).await?;
    let spread = measure(&format!("{name} (32 sites)"), false, timing).await?;
    let window = timing.window.as_secs_f64();
    let hot_per_s = hot.measured.events as f64 / window;
    let spread_per_s = spread.measured.events as f64 / window;
    Line::new(name)
        .count("hot_per_s", hot_per_s)
        .count("spread_per_s", spread_per_s)
        .text("contended", hot.contended)
        .text("spread_contended", spread.contended)
        .text("errors", hot.errors + spread.errors)
        .ms("hot_p50_ms", hot.measured.latency_ms(0.50))
        .ms("hot_p99_ms", hot.measured.latency_ms(0.99))
        .ms("spread_p50_ms", spread.measured.latency_ms(0.50))
        .ms("spread_p99_ms", spread.measured.latency_ms(0.99))
        .ratio(hot_per_s, spread_per_s);
    Ok(())
}
