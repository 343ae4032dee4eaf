//! The `timeline` read model: one row per sharing-history event and site
//! involved, with the event's provenance and subjects.
//!
//! Tables (in the generation schema; `rm.<table>` for consumers):
//!
//! * `timeline_entries`: one row per entry event (see the module docs of
//!   [`super`]) and involved site, keyed `(site_id, position)`: the global
//!   position, event id and type, the `command` that caused it (for a
//!   consequence, `consequence of <command of its cause>`), `recorded_at`,
//!   the actor (`actor_kind` `user` with `actor_user` and `actor_site`,
//!   `system`, or `operator` with `actor_name`), `correlation_id` (the
//!   command's idempotency key), `causation_id` (consequences only: the
//!   event that caused it), `partner` (the other involved site, if any),
//!   `links` (JSON array of `{from, to}`), `scorecard_id`, `user_id`,
//!   `object_id`, `relationship_id` where the event names one, and a
//!   one-line `summary`.
//! * `timeline_sites`, `timeline_scorecards`, `timeline_objects`,
//!   `timeline_users`, `timeline_relationships`: what later events need of
//!   earlier ones (site codes, scorecard owners and names, object names,
//!   usernames, the origin and object of each relationship, which a
//!   `RelationshipRemoved` does not repeat).
//!
//! A batch is written with a few set-based statements: the names it
//! defines, its rows (one `INSERT … unnest`), then the commands that only
//! the log around an event tells (below).
//!
//! Commands the event alone does not tell:
//! * several `ScorecardShared`/`ScorecardUnshared` under one correlation id
//!   are one `SetSharedScorecards` ("Edit Scorecards"); a single one reads
//!   as `ShareScorecard`/`UnshareScorecard` (the log cannot tell a
//!   one-scorecard `SetSharedScorecards` apart);
//! * a `SiteRegistered` whose correlation also added a self-registered
//!   manager came from `SelfRegisterPartner`;
//! * a consequence's command is its cause's, which is an entry of an
//!   earlier position (or of this batch, written just before).

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use shareledger_events::{Actor, RecordedEvent};
use sqlx::PgConnection;
use uuid::Uuid;

use super::entries::{self, Defined, Names, Refs, Relationship, Row, CONSEQUENCE};
use super::quoted;
use crate::decode::decode;
use crate::projection::SqlProjection;
use crate::ProjectionError;

/// The `timeline` read model (Q-6's sharing history).
#[derive(Debug, Default, Clone, Copy)]
pub struct Timeline;

impl Timeline {
    /// Its name (checkpoint and generation schemas).
    pub const NAME: &'static str = "timeline";
    /// Its tables, each shown as `rm.<table>`.
    pub const TABLES: &'static [&'static str] = &[
        "timeline_entries",
        "timeline_sites",
        "timeline_scorecards",
        "timeline_objects",
        "timeline_users",
        "timeline_relationships",
    ];
}

/// A statement of `apply`, planned for its actual arguments every time.
fn write(sql: &str) -> sqlx::query::Query<'_, sqlx::Postgres, sqlx::postgres::PgArguments> {
    sqlx::query(sql).persistent(false)
}

#[async_trait]
impl SqlProjection for Timeline {
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
CREATE TABLE {s}.timeline_entries (
    site_id uuid NOT NULL,
    position bigint NOT NULL,
    event_id uuid NOT NULL,
    event_type text NOT NULL,
    command text NOT NULL,
    recorded_at timestamptz NOT NULL,
    actor_kind text CHECK (actor_kind IN ('user', 'system', 'operator')),
    actor_user uuid,
    actor_site uuid,
    actor_name text,
    correlation_id uuid,
    causation_id uuid,
    partner uuid,
    links jsonb NOT NULL,
    scorecard_id uuid,
    user_id uuid,
    object_id uuid,
    relationship_id uuid,
    summary text NOT NULL,
    PRIMARY KEY (site_id, position),
    UNIQUE (event_id, site_id)
);
CREATE INDEX ON {s}.timeline_entries (site_id, partner, position);
CREATE INDEX ON {s}.timeline_entries (scorecard_id, position) WHERE scorecard_id IS NOT NULL;
CREATE INDEX ON {s}.timeline_entries (causation_id) WHERE causation_id IS NOT NULL;
CREATE INDEX ON {s}.timeline_entries (correlation_id);

CREATE TABLE {s}.timeline_sites (
    site_id uuid PRIMARY KEY,
    code text NOT NULL
);

CREATE TABLE {s}.timeline_scorecards (
    scorecard_id uuid PRIMARY KEY,
    site_id uuid NOT NULL,
    name text NOT NULL
);

CREATE TABLE {s}.timeline_objects (
    object_id uuid PRIMARY KEY,
    site_id uuid NOT NULL,
    name text NOT NULL
);

CREATE TABLE {s}.timeline_users (
    site_id uuid NOT NULL,
    user_id uuid NOT NULL,
    username text NOT NULL,
    PRIMARY KEY (site_id, user_id)
);

CREATE TABLE {s}.timeline_relationships (
    site_id uuid NOT NULL,
    relationship_id uuid NOT NULL,
    origin_site uuid NOT NULL,
    object_id uuid NOT NULL,
    scorecard_id uuid,
    into_object uuid,
    PRIMARY KEY (site_id, relationship_id)
);
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
        let mut decoded = Vec::with_capacity(events.len());
        let mut refs = Refs::default();
        for event in events {
            if let Some(d) = decode(event)? {
                entries::refer(&mut refs, &event.stream, &d);
                decoded.push((event, d));
            }
        }
        if decoded.is_empty() {
            return Ok(());
        }
        let mut names = load(conn, &s, refs).await?;
        let mut defined = Defined::default();
        let mut rows = Vec::new();
        for (event, d) in &decoded {
            names.learn(d, &mut defined);
            rows.extend(entries::rows(event, d, &names));
            names.learn_rename(d, &mut defined);
        }
        write_names(conn, &s, &defined).await?;
        if rows.is_empty() {
            return Ok(());
        }
        write_rows(conn, &s, &rows).await?;
        complete_commands(conn, &s, &rows).await
    }
}

/// A row of `timeline_relationships`: site, relationship, origin site,
/// object, scorecard, aggregation.
type RelationshipRecord = (Uuid, Uuid, Uuid, Uuid, Option<Uuid>, Option<Uuid>);

/// What the tables know of the ids a batch refers to.
async fn load(conn: &mut PgConnection, s: &str, mut refs: Refs) -> Result<Names, ProjectionError> {
    let mut names = Names::default();
    if !refs.relationships.is_empty() {
        let (sites, ids): (Vec<Uuid>, Vec<Uuid>) = refs.relationships.iter().copied().unzip();
        let found: Vec<RelationshipRecord> = sqlx::query_as(&format!(
            "SELECT r.site_id, r.relationship_id, r.origin_site, r.object_id, r.scorecard_id, \
                   r.into_object \
                 FROM {s}.timeline_relationships r \
                 JOIN unnest($1::uuid[], $2::uuid[]) AS v(site_id, relationship_id) \
                   ON r.site_id = v.site_id AND r.relationship_id = v.relationship_id"
        ))
        .persistent(false)
        .bind(sites)
        .bind(ids)
        .fetch_all(&mut *conn)
        .await?;
        for (site, id, origin, object, scorecard, into_object) in found {
            refs.sites.insert(origin);
            refs.objects.insert(object);
            refs.scorecards.extend(scorecard);
            names.relationships.insert(
                (site, id),
                Relationship {
                    origin,
                    object,
                    scorecard,
                    into_object,
                },
            );
        }
    }
    if !refs.scorecards.is_empty() {
        let found: Vec<(Uuid, Uuid, String)> = sqlx::query_as(&format!(
            "SELECT scorecard_id, site_id, name FROM {s}.timeline_scorecards \
             WHERE scorecard_id = ANY($1)"
        ))
        .persistent(false)
        .bind(refs.scorecards.iter().copied().collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        for (id, site, name) in found {
            refs.sites.insert(site);
            names.scorecards.insert(id, (site, name));
        }
    }
    if !refs.objects.is_empty() {
        let found: Vec<(Uuid, Uuid, String)> = sqlx::query_as(&format!(
            "SELECT object_id, site_id, name FROM {s}.timeline_objects WHERE object_id = ANY($1)"
        ))
        .persistent(false)
        .bind(refs.objects.iter().copied().collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        for (id, site, name) in found {
            names.objects.insert(id, (site, name));
        }
    }
    if !refs.users.is_empty() {
        let (sites, users): (Vec<Uuid>, Vec<Uuid>) = refs.users.iter().copied().unzip();
        let found: Vec<(Uuid, Uuid, String)> = sqlx::query_as(&format!(
            "SELECT u.site_id, u.user_id, u.username FROM {s}.timeline_users u \
             JOIN unnest($1::uuid[], $2::uuid[]) AS v(site_id, user_id) \
               ON u.site_id = v.site_id AND u.user_id = v.user_id"
        ))
        .persistent(false)
        .bind(sites)
        .bind(users)
        .fetch_all(&mut *conn)
        .await?;
        for (site, user, username) in found {
            names.users.insert((site, user), username);
        }
    }
    if !refs.sites.is_empty() {
        let found: Vec<(Uuid, String)> = sqlx::query_as(&format!(
            "SELECT site_id, code FROM {s}.timeline_sites WHERE site_id = ANY($1)"
        ))
        .persistent(false)
        .bind(refs.sites.iter().copied().collect::<Vec<_>>())
        .fetch_all(&mut *conn)
        .await?;
        names.sites.extend(found);
    }
    Ok(names)
}

/// Writes the names a batch defines. Each is defined by one event, once.
async fn write_names(
    conn: &mut PgConnection,
    s: &str,
    defined: &Defined,
) -> Result<(), ProjectionError> {
    if !defined.sites.is_empty() {
        let (ids, codes): (Vec<Uuid>, Vec<String>) = defined.sites.iter().cloned().unzip();
        write(&format!(
            "INSERT INTO {s}.timeline_sites (site_id, code) \
             SELECT * FROM unnest($1::uuid[], $2::text[]) ON CONFLICT DO NOTHING"
        ))
        .bind(ids)
        .bind(codes)
        .execute(&mut *conn)
        .await?;
    }
    for (table, key, rows) in [
        ("timeline_scorecards", "scorecard_id", &defined.scorecards),
        ("timeline_objects", "object_id", &defined.objects),
    ] {
        if rows.is_empty() {
            continue;
        }
        // The last name of each (a batch may create and rename one thing).
        let mut last: std::collections::HashMap<Uuid, (Uuid, Uuid, String)> =
            std::collections::HashMap::new();
        for row in rows.iter() {
            last.insert(row.0, row.clone());
        }
        let rows: Vec<(Uuid, Uuid, String)> = last.into_values().collect();
        write(&format!(
            "INSERT INTO {s}.{table} ({key}, site_id, name) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[]) \
             ON CONFLICT ({key}) DO UPDATE SET name = EXCLUDED.name"
        ))
        .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !defined.users.is_empty() {
        let rows = &defined.users;
        write(&format!(
            "INSERT INTO {s}.timeline_users (site_id, user_id, username) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[]) ON CONFLICT DO NOTHING"
        ))
        .bind(rows.iter().map(|r| r.0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.2.clone()).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    if !defined.relationships.is_empty() {
        let rows = &defined.relationships;
        write(&format!(
            "INSERT INTO {s}.timeline_relationships (site_id, relationship_id, origin_site, \
               object_id, scorecard_id, into_object) \
             SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], $5::uuid[], \
               $6::uuid[]) ON CONFLICT DO NOTHING"
        ))
        .bind(rows.iter().map(|r| r.0 .0).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.0 .1).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1.origin).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1.object).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1.scorecard).collect::<Vec<_>>())
        .bind(rows.iter().map(|r| r.1.into_object).collect::<Vec<_>>())
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

/// The actor as stored: kind, user, site, name.
fn actor_columns(
    actor: Option<&Actor>,
) -> (
    Option<&'static str>,
    Option<Uuid>,
    Option<Uuid>,
    Option<String>,
) {
    match actor {
        None => (None, None, None, None),
        Some(Actor::User { user_id, site_id }) => {
            (Some("user"), Some(*user_id), Some(*site_id), None)
        }
        Some(Actor::System) => (Some("system"), None, None, None),
        Some(Actor::Operator { name }) => (Some("operator"), None, None, Some(name.clone())),
    }
}

/// Inserts a batch's rows in one statement.
async fn write_rows(conn: &mut PgConnection, s: &str, rows: &[Row]) -> Result<(), ProjectionError> {
    let actors: Vec<_> = rows
        .iter()
        .map(|r| actor_columns(r.actor.as_ref()))
        .collect();
    let links: Vec<serde_json::Value> = rows
        .iter()
        .map(|r| serde_json::to_value(&r.links).unwrap_or_else(|_| serde_json::json!([])))
        .collect();
    write(&format!(
        "INSERT INTO {s}.timeline_entries (site_id, position, event_id, event_type, command, \
           recorded_at, actor_kind, actor_user, actor_site, actor_name, correlation_id, \
           causation_id, partner, links, scorecard_id, user_id, object_id, relationship_id, \
           summary) \
         SELECT * FROM unnest($1::uuid[], $2::int8[], $3::uuid[], $4::text[], $5::text[], \
           $6::timestamptz[], $7::text[], $8::uuid[], $9::uuid[], $10::text[], $11::uuid[], \
           $12::uuid[], $13::uuid[], $14::jsonb[], $15::uuid[], $16::uuid[], $17::uuid[], \
           $18::uuid[], $19::text[])"
    ))
    .bind(rows.iter().map(|r| r.site).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.position).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.event_id).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.event_type.clone())
            .collect::<Vec<_>>(),
    )
    .bind(rows.iter().map(|r| r.command.clone()).collect::<Vec<_>>())
    .bind(
        rows.iter()
            .map(|r| r.recorded_at)
            .collect::<Vec<DateTime<Utc>>>(),
    )
    .bind(actors.iter().map(|a| a.0).collect::<Vec<_>>())
    .bind(actors.iter().map(|a| a.1).collect::<Vec<_>>())
    .bind(actors.iter().map(|a| a.2).collect::<Vec<_>>())
    .bind(actors.iter().map(|a| a.3.clone()).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.correlation).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.causation).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.partner).collect::<Vec<_>>())
    .bind(links)
    .bind(rows.iter().map(|r| r.scorecard).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.user).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.object).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.relationship).collect::<Vec<_>>())
    .bind(rows.iter().map(|r| r.summary.clone()).collect::<Vec<_>>())
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The correlation ids of `rows` matching `keep`, without repeats.
fn correlations(rows: &[Row], keep: impl Fn(&Row) -> bool) -> Vec<Uuid> {
    let mut ids: Vec<Uuid> = rows
        .iter()
        .filter(|r| keep(r))
        .filter_map(|r| r.correlation)
        .collect();
    ids.sort_unstable();
    ids.dedup();
    ids
}

/// Completes the commands that the log around an event tells (see the
/// module docs), in an order where each step sees the previous ones.
async fn complete_commands(
    conn: &mut PgConnection,
    s: &str,
    rows: &[Row],
) -> Result<(), ProjectionError> {
    const SHARES: &str = "('ScorecardShared', 'ScorecardUnshared')";
    let edits = correlations(rows, |r| {
        r.causation.is_none()
            && (r.event_type == "ScorecardShared" || r.event_type == "ScorecardUnshared")
    });
    if !edits.is_empty() {
        write(&format!(
            "UPDATE {s}.timeline_entries t SET command = 'SetSharedScorecards' \
             FROM (SELECT correlation_id FROM {s}.timeline_entries \
                   WHERE correlation_id = ANY($1) AND causation_id IS NULL \
                     AND event_type IN {SHARES} \
                   GROUP BY correlation_id HAVING count(DISTINCT event_id) > 1) m \
             WHERE t.correlation_id = m.correlation_id AND t.causation_id IS NULL \
               AND t.event_type IN {SHARES}"
        ))
        .bind(edits)
        .execute(&mut *conn)
        .await?;
    }
    let self_registrations = correlations(rows, |r| {
        r.causation.is_none() && r.command == "SelfRegisterPartner"
    });
    if !self_registrations.is_empty() {
        write(&format!(
            "UPDATE {s}.timeline_entries SET command = 'SelfRegisterPartner' \
             WHERE correlation_id = ANY($1) AND causation_id IS NULL \
               AND event_type = 'SiteRegistered'"
        ))
        .bind(self_registrations)
        .execute(&mut *conn)
        .await?;
    }
    let mut causes: Vec<Uuid> = rows.iter().filter_map(|r| r.causation).collect();
    causes.sort_unstable();
    causes.dedup();
    if !causes.is_empty() {
        write(&format!(
            "UPDATE {s}.timeline_entries t SET command = '{CONSEQUENCE} of ' || c.command \
             FROM (SELECT DISTINCT ON (event_id) event_id, command \
                   FROM {s}.timeline_entries WHERE event_id = ANY($1) \
                   ORDER BY event_id, site_id) c \
             WHERE t.causation_id = c.event_id AND t.event_id <> c.event_id"
        ))
        .bind(causes)
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}
