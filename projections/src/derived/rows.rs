//! The derived feeds' tables: writing a batch with the checkpoint, and
//! reading the feeds a page at a time (for the HTTP feed and the relay).
//!
//! Rows are ordered by (position, seq): `seq` numbers an event's access
//! changes (or notifications) from 0. Readers read only up to the
//! checkpoint, so a position is seen whole or not at all.

use chrono::{DateTime, Utc};
use serde::Serialize;
use shareledger_core::catalog::{AccessLevel, SiteId, UserId};
use shareledger_events::store::PgEventStore;
use sqlx::Row;
use uuid::Uuid;

use super::notifications::Notification;
use super::{Derived, CHECKPOINT};
use crate::access::{ChangeKind, EventAccessChange, Target};
use crate::ProjectionError;

/// The position up to which both feeds are written.
pub async fn checkpoint(store: &PgEventStore) -> Result<u64, ProjectionError> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM sl_checkpoints WHERE name = $1")
            .bind(CHECKPOINT)
            .fetch_optional(store.pool())
            .await?;
    Ok(position.unwrap_or(0) as u64)
}

/// Writes the derivations of the events after `after` up to `last`, and
/// moves the checkpoint from `after` to `last`, in one transaction.
/// False (nothing written) when the checkpoint is not at `after`: another
/// writer moved it.
pub(super) async fn write(
    store: &PgEventStore,
    after: u64,
    last: u64,
    derived: &[Derived],
) -> Result<bool, ProjectionError> {
    let mut tx = store.pool().begin().await?;
    let now: Option<i64> =
        sqlx::query_scalar("SELECT position FROM sl_checkpoints WHERE name = $1 FOR UPDATE")
            .bind(CHECKPOINT)
            .fetch_optional(&mut *tx)
            .await?;
    if now.unwrap_or(0) as u64 != after {
        return Ok(false);
    }
    let mut a = AccessColumns::default();
    let mut n = NoteColumns::default();
    for d in derived {
        for (seq, change) in d.access.iter().enumerate() {
            a.push(d, seq, change);
        }
        for (seq, note) in d.notifications.iter().enumerate() {
            n.push(d, seq, note);
        }
    }
    if !a.position.is_empty() {
        sqlx::query(
            "INSERT INTO sl_access_changes (position, seq, event_id, event_type, recorded_at, \
             user_site, user_id, username, target_site, target_type, target_id, target_name, \
             level_before, level_after) \
             SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::uuid[], $4::text[], \
             $5::timestamptz[], $6::uuid[], $7::uuid[], $8::text[], $9::uuid[], $10::text[], \
             $11::uuid[], $12::text[], $13::text[], $14::text[]) \
             ON CONFLICT DO NOTHING",
        )
        .bind(&a.position)
        .bind(&a.seq)
        .bind(&a.event_id)
        .bind(&a.event_type)
        .bind(&a.recorded_at)
        .bind(&a.user_site)
        .bind(&a.user_id)
        .bind(&a.username)
        .bind(&a.target_site)
        .bind(&a.target_type)
        .bind(&a.target_id)
        .bind(&a.target_name)
        .bind(&a.before)
        .bind(&a.after)
        .execute(&mut *tx)
        .await?;
    }
    if !n.position.is_empty() {
        sqlx::query(
            "INSERT INTO sl_notifications (position, seq, event_id, kind, site, body) \
             SELECT * FROM UNNEST($1::bigint[], $2::int[], $3::uuid[], $4::text[], \
             $5::uuid[], $6::jsonb[]) ON CONFLICT DO NOTHING",
        )
        .bind(&n.position)
        .bind(&n.seq)
        .bind(&n.event_id)
        .bind(&n.kind)
        .bind(&n.site)
        .bind(&n.body)
        .execute(&mut *tx)
        .await?;
    }
    sqlx::query(
        "INSERT INTO sl_checkpoints (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
    )
    .bind(CHECKPOINT)
    .bind(last as i64)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(true)
}

#[derive(Default)]
struct AccessColumns {
    position: Vec<i64>,
    seq: Vec<i32>,
    event_id: Vec<Uuid>,
    event_type: Vec<String>,
    recorded_at: Vec<DateTime<Utc>>,
    user_site: Vec<Uuid>,
    user_id: Vec<Uuid>,
    username: Vec<String>,
    target_site: Vec<Uuid>,
    target_type: Vec<String>,
    target_id: Vec<Uuid>,
    target_name: Vec<String>,
    before: Vec<Option<String>>,
    after: Vec<Option<String>>,
}

impl AccessColumns {
    fn push(&mut self, d: &Derived, seq: usize, c: &EventAccessChange) {
        let (kind, id) = match c.target {
            Target::Scorecard(id) => ("scorecard", id.0),
            Target::Object(id) => ("object", id.0),
        };
        self.position.push(d.position as i64);
        self.seq.push(seq as i32);
        self.event_id.push(d.event_id);
        self.event_type.push(d.event_type.clone());
        self.recorded_at.push(d.recorded_at);
        self.user_site.push(c.user_site.0);
        self.user_id.push(c.user.0);
        self.username.push(c.username.as_str().to_owned());
        self.target_site.push(c.target_site.0);
        self.target_type.push(kind.to_owned());
        self.target_id.push(id);
        self.target_name.push(c.target_name.as_str().to_owned());
        self.before.push(c.before.map(|l| l.to_string()));
        self.after.push(c.after.map(|l| l.to_string()));
    }
}

#[derive(Default)]
struct NoteColumns {
    position: Vec<i64>,
    seq: Vec<i32>,
    event_id: Vec<Uuid>,
    kind: Vec<String>,
    site: Vec<Uuid>,
    body: Vec<serde_json::Value>,
}

impl NoteColumns {
    fn push(&mut self, d: &Derived, seq: usize, note: &Notification) {
        self.position.push(d.position as i64);
        self.seq.push(seq as i32);
        self.event_id.push(d.event_id);
        self.kind.push(note.kind.as_str().to_owned());
        self.site.push(note.site.id.0);
        let body = NotificationRow {
            position: d.position,
            event_id: d.event_id,
            event_type: &d.event_type,
            recorded_at: d.recorded_at,
            notification: note,
        };
        self.body
            .push(serde_json::to_value(body).expect("a notification serializes"));
    }
}

/// A notification as stored and delivered: the notification and the event
/// that made it.
#[derive(Debug, Serialize)]
struct NotificationRow<'a> {
    position: u64,
    event_id: Uuid,
    event_type: &'a str,
    recorded_at: DateTime<Utc>,
    #[serde(flatten)]
    notification: &'a Notification,
}

/// One access change of the feed, with the event that caused it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct AccessChangeEntry {
    /// The causing event's position; with `seq`, the entry's place in the feed.
    pub position: u64,
    /// The entry's number among its event's access changes, from 0.
    pub seq: u32,
    pub event_id: Uuid,
    pub event_type: String,
    pub recorded_at: DateTime<Utc>,
    pub kind: ChangeKind,
    #[serde(flatten)]
    pub change: EventAccessChange,
}

/// Where a page of a feed starts: after this (position, seq).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Default)]
pub struct FeedPoint {
    pub position: u64,
    /// None: after every entry of `position`.
    pub seq: Option<u32>,
}

impl FeedPoint {
    fn key(self) -> (i64, i32) {
        (
            self.position as i64,
            self.seq.map_or(i32::MAX, |s| s as i32),
        )
    }
}

/// Up to `limit` access changes after `from`, up to the checkpoint, that
/// concern `site` (its users', or its content's) or all with `None`; and
/// the checkpoint.
pub async fn access_changes(
    store: &PgEventStore,
    from: FeedPoint,
    site: Option<SiteId>,
    user: Option<UserId>,
    limit: usize,
) -> Result<(Vec<AccessChangeEntry>, u64), ProjectionError> {
    let head = checkpoint(store).await?;
    let (position, seq) = from.key();
    let rows = sqlx::query(
        "SELECT position, seq, event_id, event_type, recorded_at, user_site, user_id, username, \
         target_site, target_type, target_id, target_name, level_before, level_after \
         FROM sl_access_changes \
         WHERE (position, seq) > ($1, $2) AND position <= $3 \
           AND ($4::uuid IS NULL OR user_site = $4 OR target_site = $4) \
           AND ($5::uuid IS NULL OR user_id = $5) \
         ORDER BY position, seq LIMIT $6",
    )
    .bind(position)
    .bind(seq)
    .bind(head as i64)
    .bind(site.map(|s| s.0))
    .bind(user.map(|u| u.0))
    .bind(limit as i64)
    .fetch_all(store.pool())
    .await?;
    let entries = rows
        .iter()
        .map(entry)
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok((entries, head))
}

fn entry(row: &sqlx::postgres::PgRow) -> Result<AccessChangeEntry, ProjectionError> {
    let bad = |what: &str| ProjectionError::InvalidProjection {
        name: CHECKPOINT.into(),
        reason: match what {
            "level" => "a stored access level does not parse",
            _ => "a stored name does not parse",
        },
    };
    let level = |column: &str| -> Result<Option<AccessLevel>, ProjectionError> {
        row.get::<Option<String>, _>(column)
            .map(|l| AccessLevel::parse(&l).map_err(|_| bad("level")))
            .transpose()
    };
    let target_id: Uuid = row.get("target_id");
    let target = if row.get::<String, _>("target_type") == "scorecard" {
        Target::Scorecard(shareledger_core::catalog::ScorecardId(target_id))
    } else {
        Target::Object(shareledger_core::catalog::ObjectId(target_id))
    };
    let change = EventAccessChange {
        user_site: SiteId(row.get("user_site")),
        user: UserId(row.get("user_id")),
        username: shareledger_core::catalog::Username::parse(&row.get::<String, _>("username"))
            .map_err(|_| bad("name"))?,
        target_site: SiteId(row.get("target_site")),
        target,
        target_name: shareledger_core::catalog::Name::parse(&row.get::<String, _>("target_name"))
            .map_err(|_| bad("name"))?,
        before: level("level_before")?,
        after: level("level_after")?,
    };
    Ok(AccessChangeEntry {
        position: row.get::<i64, _>("position") as u64,
        seq: row.get::<i32, _>("seq") as u32,
        event_id: row.get("event_id"),
        event_type: row.get("event_type"),
        recorded_at: row.get("recorded_at"),
        kind: change.kind(),
        change,
    })
}

/// One stored notification, as delivered.
#[derive(Debug, Clone)]
pub struct NotificationEntry {
    pub position: u64,
    pub seq: u32,
    pub kind: String,
    pub site: SiteId,
    /// The notification as JSON (with its event's position, id, type, time).
    pub body: serde_json::Value,
}

/// Up to `limit` notifications after `from`, up to the checkpoint.
pub async fn notifications(
    store: &PgEventStore,
    from: FeedPoint,
    limit: usize,
) -> Result<(Vec<NotificationEntry>, u64), ProjectionError> {
    let head = checkpoint(store).await?;
    let (position, seq) = from.key();
    let rows = sqlx::query(
        "SELECT position, seq, kind, site, body FROM sl_notifications \
         WHERE (position, seq) > ($1, $2) AND position <= $3 ORDER BY position, seq LIMIT $4",
    )
    .bind(position)
    .bind(seq)
    .bind(head as i64)
    .bind(limit as i64)
    .fetch_all(store.pool())
    .await?;
    Ok((
        rows.iter()
            .map(|r| NotificationEntry {
                position: r.get::<i64, _>("position") as u64,
                seq: r.get::<i32, _>("seq") as u32,
                kind: r.get("kind"),
                site: SiteId(r.get("site")),
                body: r.get("body"),
            })
            .collect(),
        head,
    ))
}
