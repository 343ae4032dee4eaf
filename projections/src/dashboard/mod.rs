//! The PostgreSQL read models: Q-5 dashboards ([`Dashboards`], with the
//! query functions of [`queries`]), the persisted access model for SQL
//! consumers ([`AccessTables`], with [`level_sql`]), and the lists a UI
//! needs of a site's content ([`SiteContents`], with the query functions
//! of [`contents`]).
//!
//! Each implements [`SqlProjection`]: the runtime gives them a schema per
//! generation and a transaction; SQL consumers (and the query functions
//! here) read the live generation through the views `rm.<table>`.
//!
//! How `apply` writes: each event becomes zero or more *ops* of a few
//! kinds; the ops of a batch are grouped into runs of one kind (see
//! `schedule`), each written by one set-based statement (`unnest` of
//! arrays), so a rebuild costs a few statements per batch and kind rather
//! than per event. A run is merged only where one statement gives the same
//! tables as its ops one by one (distinct keys, or last-wins per key), and
//! ops are moved past each other only where their kinds commute. Events a
//! model has no use for produce no op.

mod access_tables;
pub mod contents;
mod dashboards;
pub mod queries;
mod schedule;

use std::sync::Arc;

use serde::Serialize;
use shareledger_core::catalog::AccessLevel;
use shareledger_events::Actor;
use uuid::Uuid;

pub use access_tables::{level_sql, AccessTables};
pub use contents::SiteContents;
pub use dashboards::Dashboards;
pub use queries::{
    connections, pending_requests, shared_scorecards, site, user, users, Connection, LinkDirection,
    LinkPage, LinkStatus, PartnerShares, PendingRequest, ScorecardLevel, SelfRegistration,
    SharedScorecard, SiteSummary, UserDetail, UserSort, UserSummary, UsersPage, UsersQuery,
};

use crate::projection::SqlProjection;
use crate::ProjectionError;

/// Every PostgreSQL read model of this module, for the runtime.
pub fn all() -> Vec<Arc<dyn SqlProjection>> {
    vec![
        Arc::new(Dashboards::default()),
        Arc::new(AccessTables::default()),
        Arc::new(SiteContents::default()),
    ]
}

/// Keeps the planner's statistics of a projection's tables current enough
/// while it is applied, even inside one long rebuild before autovacuum has
/// looked at the tables: without them PostgreSQL plans the batch statements
/// (recursive walks over containers, joins on `unnest` keys) as if the
/// tables were tiny, and scans them whole. `ANALYZE` runs in the apply
/// transaction (it sees that transaction's rows) after 1,000 events of a
/// schema, then each time the count has doubled: about ten times over a
/// million events.
#[derive(Debug, Default)]
struct Statistics {
    /// Per schema: events applied by this process, and that count at the
    /// last `ANALYZE`.
    applied: std::sync::Mutex<std::collections::HashMap<String, (u64, u64)>>,
}

impl Statistics {
    const FIRST: u64 = 1_000;

    async fn after_apply(
        &self,
        conn: &mut sqlx::PgConnection,
        schema: &str,
        tables: &[&str],
        events: usize,
    ) -> Result<(), ProjectionError> {
        let due = {
            let mut applied = self
                .applied
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            let entry = applied.entry(schema.to_owned()).or_default();
            entry.0 += events as u64;
            let due = entry.0 >= 2 * entry.1 + Self::FIRST;
            if due {
                entry.1 = entry.0;
            }
            due
        };
        if due {
            let s = quoted(schema);
            let list: Vec<String> = tables.iter().map(|t| format!("{s}.{t}")).collect();
            sqlx::Executor::execute(&mut *conn, format!("ANALYZE {}", list.join(", ")).as_str())
                .await?;
        }
        Ok(())
    }
}

/// A statement of `apply`, planned for its actual arguments every time
/// (not prepared): the size of its arrays decides between index lookups
/// and scans, and a cached generic plan (which assumes 100 elements) would
/// often choose a scan of a large table.
fn write(sql: &str) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql).persistent(false)
}

/// Writes a run's link states, merged per link (the last state wins; a
/// link cleared anywhere in the run is cleared): upserts `links` (`from_site,
/// to_site, active`) and empties `shared` for each cleared link (a
/// revocation or a new request, R-CONN-4). The tables are named with their
/// schema. One statement, used by every model that keeps links.
async fn write_links(
    conn: &mut sqlx::PgConnection,
    links: &str,
    shared: &str,
    merged: std::collections::HashMap<(Uuid, Uuid), (bool, bool)>,
) -> Result<(), ProjectionError> {
    let (mut froms, mut tos, mut actives, mut clears) = (vec![], vec![], vec![], vec![]);
    for ((from, to), (active, clear)) in merged {
        froms.push(from);
        tos.push(to);
        actives.push(active);
        clears.push(clear);
    }
    write(&format!(
        "WITH v AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::bool[], $4::bool[]) \
           AS v(from_site, to_site, active, clears)), \
         cleared AS (DELETE FROM {shared} sh USING v \
           WHERE v.clears AND sh.from_site = v.from_site AND sh.to_site = v.to_site) \
         INSERT INTO {links} (from_site, to_site, active) \
         SELECT from_site, to_site, active FROM v \
         ON CONFLICT (from_site, to_site) DO UPDATE SET active = EXCLUDED.active"
    ))
    .bind(froms)
    .bind(tos)
    .bind(actives)
    .bind(clears)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Writes a run's shares, merged per (link, scorecard), last wins: inserts
/// the shared into `shared` (`from_site, to_site, scorecard_id`, named with
/// its schema) and deletes the unshared. Keys are distinct, so the delete
/// and the insert commute: one statement.
async fn write_shares(
    conn: &mut sqlx::PgConnection,
    shared: &str,
    merged: std::collections::HashMap<(Uuid, Uuid, Uuid), bool>,
) -> Result<(), ProjectionError> {
    let (mut froms, mut tos, mut scorecards, mut holds) = (vec![], vec![], vec![], vec![]);
    for ((from, to, scorecard), is_shared) in merged {
        froms.push(from);
        tos.push(to);
        scorecards.push(scorecard);
        holds.push(is_shared);
    }
    write(&format!(
        "WITH v AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bool[]) \
           AS v(from_site, to_site, scorecard_id, shared)), \
         unshared AS (DELETE FROM {shared} sh USING v \
           WHERE NOT v.shared AND sh.from_site = v.from_site AND sh.to_site = v.to_site \
             AND sh.scorecard_id = v.scorecard_id) \
         INSERT INTO {shared} (from_site, to_site, scorecard_id) \
         SELECT from_site, to_site, scorecard_id FROM v WHERE v.shared \
         ON CONFLICT DO NOTHING"
    ))
    .bind(froms)
    .bind(tos)
    .bind(scorecards)
    .bind(holds)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// `schema` as a quoted SQL identifier.
fn quoted(schema: &str) -> String {
    format!("\"{}\"", schema.replace('"', "\"\""))
}

/// The snake_case name a catalog enum serializes to (`scorecard_builder`).
fn snake<T: Serialize>(value: &T) -> String {
    match serde_json::to_value(value) {
        Ok(serde_json::Value::String(s)) => s,
        other => unreachable!("catalog enums serialize to strings, got {other:?}"),
    }
}

/// An access level as stored: 0 (Browser) to 3 (Scorecard Admin).
fn level_code(level: AccessLevel) -> i16 {
    match level {
        AccessLevel::Browser => 0,
        AccessLevel::Updater => 1,
        AccessLevel::Editor => 2,
        AccessLevel::ScorecardAdmin => 3,
    }
}

/// The access level of a stored code.
fn level_of(code: i16) -> Result<AccessLevel, ProjectionError> {
    AccessLevel::ALL
        .get(usize::try_from(code).unwrap_or(usize::MAX))
        .copied()
        .ok_or_else(|| corrupt(format!("{code} is not an access level code")))
}

/// The user an actor names, if it is a user.
fn actor_user(actor: Option<&Actor>) -> Option<Uuid> {
    match actor {
        Some(Actor::User { user_id, .. }) => Some(*user_id),
        _ => None,
    }
}

/// A stored value that does not parse back (the tables were altered).
fn corrupt(reason: impl Into<String>) -> ProjectionError {
    let reason: String = reason.into();
    ProjectionError::Database(sqlx::Error::Decode(reason.into()))
}

/// A log position as stored (`bigint`).
fn position(event: &shareledger_events::RecordedEvent) -> i64 {
    i64::try_from(event.global_position).unwrap_or(i64::MAX)
}
