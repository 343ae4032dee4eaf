//! The `access_tables` read model: the facts of the access model
//! (`docs/access-model.md`) as normalized tables, for SQL consumers, and
//! [`level_sql`], the model's level computed by one SQL query over them.
//!
//! Tables (in the generation schema; `rm.<table>` for consumers):
//!
//! * `acc_users (user_id, site_id, active, all_scorecards, instance_admin,
//!   add_edit_scorecard_objects)`: the flags the model needs.
//! * `acc_assignments (user_id, scorecard_id, level)`: per-scorecard levels,
//!   `level` 0 Browser, 1 Updater, 2 Editor, 3 Scorecard Admin; own
//!   scorecards and partners' (kept while unshared: the model ignores them).
//! * `acc_scorecards (scorecard_id, site_id)`.
//! * `acc_objects (object_id, site_id, kind, container)`.
//! * `acc_placements (scorecard_id, object_id, site_id)`: objects placed
//!   directly on scorecards.
//! * `acc_shows_on (object_id, scorecard_id, site_id)`: the closure "object
//!   shows on scorecard": placed on it, or inside a container that shows on
//!   it, transitively (R-SHARE-2). Kept incrementally: a placement adds the
//!   object and its descendants; a removal recomputes, from the placements,
//!   the rows of the removed object's subtree on that scorecard (the only
//!   rows it can change); a new object inside a container inherits the
//!   container's rows.
//! * `acc_links (from_site, to_site, active)`: every link ever requested.
//! * `acc_shared (from_site, to_site, scorecard_id)`: scorecards shared over
//!   active links (a revoke or a new request empties the link's set).
//! * `acc_relationships (relationship_id, site_id, origin_site, object_id,
//!   target_scorecard, target_object)`: live relationships of `site_id` to
//!   `origin_site`'s object.
//!
//! Files, by concern:
//!
//! * this one: the tables ([`AccessTables`]'s `create_tables`) and `apply`;
//! * `ops.rs`: what each event changes, as ops, and which kinds of ops
//!   commute (the batch's schedule);
//! * `write.rs`: a run of ops of one kind written by a few set-based
//!   statements, the *shows on* closure kept by recursive walks;
//! * `level.rs`: [`level_sql`], the model's level by one SQL query (the
//!   answers of `shareledger_core::access_rule::level`, held to them by the
//!   shared table of cases).

mod level;
mod ops;
mod write;

pub use level::level_sql;

use async_trait::async_trait;
use shareledger_events::RecordedEvent;
use sqlx::PgConnection;

use crate::dashboard::quoted;
use crate::dashboard::schedule::Scheduler;
use crate::dashboard::Statistics;
use crate::decode::decode;
use crate::projection::SqlProjection;
use crate::ProjectionError;
use ops::{ops_of, schedule, Kind};
use write::write_run;

/// The `access_tables` read model.
#[derive(Debug, Default)]
pub struct AccessTables {
    statistics: Statistics,
}

impl AccessTables {
    /// Its name (checkpoint and generation schemas).
    pub const NAME: &'static str = "access_tables";
    /// Its tables, each shown as `rm.<table>`.
    pub const TABLES: &'static [&'static str] = &[
        "acc_users",
        "acc_assignments",
        "acc_scorecards",
        "acc_objects",
        "acc_placements",
        "acc_shows_on",
        "acc_links",
        "acc_shared",
        "acc_relationships",
    ];
}

#[async_trait]
impl SqlProjection for AccessTables {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    fn version(&self) -> u32 {
        1
    }

    async fn create_tables(
        &self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> Result<(), ProjectionError> {
        let s = quoted(schema);
        let ddl = format!(
            r#"
CREATE TABLE {s}.acc_users (
    user_id uuid PRIMARY KEY,
    site_id uuid NOT NULL,
    active boolean NOT NULL,
    all_scorecards boolean NOT NULL,
    instance_admin boolean NOT NULL,
    add_edit_scorecard_objects boolean NOT NULL
);
CREATE INDEX ON {s}.acc_users (site_id);

CREATE TABLE {s}.acc_assignments (
    user_id uuid NOT NULL,
    scorecard_id uuid NOT NULL,
    level smallint NOT NULL CHECK (level BETWEEN 0 AND 3),
    PRIMARY KEY (user_id, scorecard_id)
);
CREATE INDEX ON {s}.acc_assignments (scorecard_id);

CREATE TABLE {s}.acc_scorecards (
    scorecard_id uuid PRIMARY KEY,
    site_id uuid NOT NULL
);
CREATE INDEX ON {s}.acc_scorecards (site_id);

CREATE TABLE {s}.acc_objects (
    object_id uuid PRIMARY KEY,
    site_id uuid NOT NULL,
    kind text NOT NULL,
    container uuid
);
CREATE INDEX ON {s}.acc_objects (container);
CREATE INDEX ON {s}.acc_objects (site_id);

CREATE TABLE {s}.acc_placements (
    scorecard_id uuid NOT NULL,
    object_id uuid NOT NULL,
    site_id uuid NOT NULL,
    PRIMARY KEY (scorecard_id, object_id)
);
CREATE INDEX ON {s}.acc_placements (object_id);

CREATE TABLE {s}.acc_shows_on (
    object_id uuid NOT NULL,
    scorecard_id uuid NOT NULL,
    site_id uuid NOT NULL,
    PRIMARY KEY (object_id, scorecard_id)
);
CREATE INDEX ON {s}.acc_shows_on (scorecard_id);

CREATE TABLE {s}.acc_links (
    from_site uuid NOT NULL,
    to_site uuid NOT NULL,
    active boolean NOT NULL,
    PRIMARY KEY (from_site, to_site)
);
CREATE INDEX ON {s}.acc_links (to_site);

CREATE TABLE {s}.acc_shared (
    from_site uuid NOT NULL,
    to_site uuid NOT NULL,
    scorecard_id uuid NOT NULL,
    PRIMARY KEY (from_site, to_site, scorecard_id)
);
CREATE INDEX ON {s}.acc_shared (scorecard_id);

CREATE TABLE {s}.acc_relationships (
    relationship_id uuid PRIMARY KEY,
    site_id uuid NOT NULL,
    origin_site uuid NOT NULL,
    object_id uuid NOT NULL,
    target_scorecard uuid,
    target_object uuid,
    CHECK ((target_scorecard IS NULL) <> (target_object IS NULL))
);
CREATE INDEX ON {s}.acc_relationships (object_id, site_id);
CREATE INDEX ON {s}.acc_relationships (site_id);
"#
        );
        sqlx::Executor::execute(&mut *conn, ddl.as_str()).await?;
        Ok(())
    }

    async fn apply(
        &self,
        conn: &mut PgConnection,
        schema: &str,
        events: &[RecordedEvent],
    ) -> Result<(), ProjectionError> {
        let s = quoted(schema);
        let mut scheduler = Scheduler::new(Kind::conflict);
        let mut ops = Vec::new();
        for event in events {
            if let Some(decoded) = decode(event)? {
                ops_of(decoded, &mut ops);
                for op in ops.drain(..) {
                    schedule(&mut scheduler, op);
                }
            }
        }
        for run in scheduler.finish() {
            write_run(conn, &s, &run).await?;
        }
        self.statistics
            .after_apply(conn, schema, Self::TABLES, events.len())
            .await
    }
}
