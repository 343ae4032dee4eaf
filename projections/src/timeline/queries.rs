//! The sharing timelines, read from the live `timeline` tables
//! through the views `rm.timeline_*`: a site's ([`site_timeline`]), a
//! link's, both directions of a pair ([`link_timeline`]), and a
//! scorecard's ([`scorecard_timeline`]).
//!
//! A timeline is a set of rows of `timeline_entries`: the site's rows; the
//! first site's rows whose partner is the second and that name a link
//! (connection events and relationships over the pair's links); the rows
//! of the scorecard's owner that name the scorecard. Each event appears at
//! most once in a timeline.
//!
//! An entry whose cause (`causation_id`) is an earlier entry of the same
//! timeline is a *consequence*: it is listed under its cause
//! ([`TimelineEntry::consequences`], nested), not on its own. The other
//! entries, the *roots*, are what a page lists, ordered by global
//! position, filtered by time (`from <= recorded_at < to`) and partner
//! (the root's partner, or that of one of its direct consequences), and
//! paged by an opaque keyset cursor. A consequence is listed under its
//! cause whatever the filters, so a revoke shows every unshare and
//! relationship removal it caused.

use std::collections::HashMap;

use chrono::{DateTime, Utc};
use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{Link, ObjectId, RelationshipId, ScorecardId, SiteId, UserId};
use shareledger_events::Actor;
use sqlx::types::Json;
use sqlx::PgPool;
use uuid::Uuid;

use super::corrupt;
use crate::ProjectionError;

/// The largest timeline page.
pub const MAX_TIMELINE_PAGE: u32 = 1_000;
/// The timeline page size when none is asked for.
pub const DEFAULT_TIMELINE_PAGE: u32 = 50;

/// A timeline's question.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineQuery {
    /// Only entries involving this partner site (the entry's or one of its
    /// consequences' partner).
    pub partner: Option<SiteId>,
    /// Only entries recorded at or after this time.
    pub from: Option<DateTime<Utc>>,
    /// Only entries recorded before this time.
    pub to: Option<DateTime<Utc>>,
    /// The cursor of the previous page (`TimelinePage::next`) of the same
    /// timeline.
    pub after: Option<String>,
    /// Page size, clamped to `1..=MAX_TIMELINE_PAGE` (0 means
    /// `DEFAULT_TIMELINE_PAGE`).
    pub limit: u32,
}

/// One event of a sharing timeline, with the consequences it caused.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelineEntry {
    /// The event's global position in the log.
    pub position: u64,
    pub event_id: Uuid,
    /// The event type (`LinkRevoked`, `UserDeactivated`, …).
    pub event_type: String,
    /// The command that caused it (`RevokeSharing`, `DeactivateUser`, …);
    /// for a consequence, `consequence of <command>`.
    pub command: String,
    pub recorded_at: DateTime<Utc>,
    /// Who caused it: a user of a site, an operator, or the system (for
    /// consequences). `None` when its metadata has no typed actor.
    pub actor: Option<Actor>,
    /// A user actor's username and their site's code, as the log knows
    /// them (`None` for operators and the system).
    pub actor_username: Option<String>,
    pub actor_site_code: Option<String>,
    /// The command's idempotency key.
    pub correlation_id: Option<Uuid>,
    /// For a consequence: the event that caused it.
    pub causation_id: Option<Uuid>,
    /// The site whose timeline row this is (the first site of a link
    /// timeline, the owner of a scorecard).
    pub site: SiteId,
    /// The other site the event involves, if any.
    pub partner: Option<SiteId>,
    /// The links (one direction each) the event is about, if any.
    pub links: Vec<Link>,
    pub scorecard_id: Option<ScorecardId>,
    pub user_id: Option<UserId>,
    pub object_id: Option<ObjectId>,
    pub relationship_id: Option<RelationshipId>,
    /// One line for people.
    pub summary: String,
    /// The entries of the same timeline this one caused, by position.
    #[cfg_attr(feature = "openapi", schema(no_recursion))]
    pub consequences: Vec<TimelineEntry>,
}

/// One page of a timeline.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TimelinePage {
    pub entries: Vec<TimelineEntry>,
    /// The cursor of the next page, when more entries follow.
    pub next: Option<String>,
}

/// The sharing history of `site`: every entry that involves it.
pub async fn site_timeline(
    pool: &PgPool,
    site: SiteId,
    query: &TimelineQuery,
) -> Result<TimelinePage, ProjectionError> {
    page(pool, Scope::Site(site), query).await
}

/// The history of the links between `a` and `b`, both directions: requests,
/// decisions, revocations, shares and unshares, relationships built over
/// them and removed. Entries are `a`'s rows (`site` is `a`, `partner` `b`).
pub async fn link_timeline(
    pool: &PgPool,
    a: SiteId,
    b: SiteId,
    query: &TimelineQuery,
) -> Result<TimelinePage, ProjectionError> {
    page(pool, Scope::Link(a, b), query).await
}

/// The history of `scorecard`: created, objects placed and removed, shared
/// and unshared with partners, users given or denied access to it. Empty
/// for a scorecard the read model does not know.
pub async fn scorecard_timeline(
    pool: &PgPool,
    scorecard: ScorecardId,
    query: &TimelineQuery,
) -> Result<TimelinePage, ProjectionError> {
    page(pool, Scope::Scorecard(scorecard), query).await
}

/// Which timeline.
#[derive(Debug, Clone, Copy)]
enum Scope {
    Site(SiteId),
    Link(SiteId, SiteId),
    Scorecard(ScorecardId),
}

impl Scope {
    /// The rows of this timeline, over alias `a`, with the subject as `$1`
    /// (and the link's second site as `$2`).
    fn predicate(self, a: &str) -> String {
        match self {
            Scope::Site(_) => format!("{a}.site_id = $1"),
            Scope::Link(..) => {
                format!("{a}.site_id = $1 AND {a}.partner = $2 AND {a}.links <> '[]'::jsonb")
            }
            Scope::Scorecard(_) => format!(
                "{a}.scorecard_id = $1 AND {a}.site_id = \
                 (SELECT sc.site_id FROM rm.timeline_scorecards sc WHERE sc.scorecard_id = $1)"
            ),
        }
    }

    fn subject(self) -> (Uuid, Option<Uuid>) {
        match self {
            Scope::Site(s) => (s.0, None),
            Scope::Link(a, b) => (a.0, Some(b.0)),
            Scope::Scorecard(s) => (s.0, None),
        }
    }

    /// What a cursor of this timeline starts with: its kind and subject.
    fn cursor_prefix(self) -> String {
        let (kind, (first, second)) = match self {
            Scope::Site(_) => ('s', self.subject()),
            Scope::Link(..) => ('l', self.subject()),
            Scope::Scorecard(_) => ('c', self.subject()),
        };
        let tag = |id: Uuid| id.simple().to_string()[..8].to_owned();
        match second {
            Some(b) => format!("{kind}{}{}.", tag(first), tag(b)),
            None => format!("{kind}{}.", tag(first)),
        }
    }

    fn cursor(self, position: i64) -> String {
        format!("{}{position:x}", self.cursor_prefix())
    }

    /// The position a cursor of this timeline continues after.
    fn after(self, raw: &str) -> Result<i64, ProjectionError> {
        raw.strip_prefix(&self.cursor_prefix())
            .filter(|hex| !hex.is_empty() && hex.len() <= 16)
            .filter(|hex| {
                hex.bytes()
                    .all(|b| b.is_ascii_hexdigit() && !b.is_ascii_uppercase())
            })
            .and_then(|hex| i64::from_str_radix(hex, 16).ok())
            .ok_or_else(|| ProjectionError::BadCursor(raw.to_owned()))
    }
}

#[derive(sqlx::FromRow)]
struct EntryRecord {
    site_id: Uuid,
    position: i64,
    event_id: Uuid,
    event_type: String,
    command: String,
    recorded_at: DateTime<Utc>,
    actor_kind: Option<String>,
    actor_user: Option<Uuid>,
    actor_site: Option<Uuid>,
    actor_name: Option<String>,
    actor_username: Option<String>,
    actor_site_code: Option<String>,
    correlation_id: Option<Uuid>,
    causation_id: Option<Uuid>,
    partner: Option<Uuid>,
    links: Json<Vec<Link>>,
    scorecard_id: Option<Uuid>,
    user_id: Option<Uuid>,
    object_id: Option<Uuid>,
    relationship_id: Option<Uuid>,
    summary: String,
}

const COLUMNS: &str = "e.site_id, e.position, e.event_id, e.event_type, e.command, \
    e.recorded_at, e.actor_kind, e.actor_user, e.actor_site, e.actor_name, \
    (SELECT u.username FROM rm.timeline_users u \
        WHERE u.site_id = e.actor_site AND u.user_id = e.actor_user) AS actor_username, \
    (SELECT st.code FROM rm.timeline_sites st WHERE st.site_id = e.actor_site) AS actor_site_code, \
    e.correlation_id, e.causation_id, e.partner, e.links, e.scorecard_id, e.user_id, \
    e.object_id, e.relationship_id, e.summary";

impl EntryRecord {
    fn actor(&self) -> Result<Option<Actor>, ProjectionError> {
        Ok(match self.actor_kind.as_deref() {
            None => None,
            Some("system") => Some(Actor::System),
            Some("user") => match (self.actor_user, self.actor_site) {
                (Some(user_id), Some(site_id)) => Some(Actor::User { user_id, site_id }),
                _ => return Err(corrupt("a user actor without its user and site")),
            },
            Some("operator") => Some(Actor::Operator {
                name: self.actor_name.clone().unwrap_or_default(),
            }),
            Some(other) => return Err(corrupt(format!("{other:?} is not an actor kind"))),
        })
    }

    fn into_entry(
        self,
        consequences: Vec<TimelineEntry>,
    ) -> Result<TimelineEntry, ProjectionError> {
        Ok(TimelineEntry {
            actor: self.actor()?,
            actor_username: self.actor_username,
            actor_site_code: self.actor_site_code,
            position: u64::try_from(self.position)
                .map_err(|_| corrupt(format!("position {}", self.position)))?,
            event_id: self.event_id,
            event_type: self.event_type,
            command: self.command,
            recorded_at: self.recorded_at,
            correlation_id: self.correlation_id,
            causation_id: self.causation_id,
            site: SiteId(self.site_id),
            partner: self.partner.map(SiteId),
            links: self.links.0,
            scorecard_id: self.scorecard_id.map(ScorecardId),
            user_id: self.user_id.map(UserId),
            object_id: self.object_id.map(ObjectId),
            relationship_id: self.relationship_id.map(RelationshipId),
            summary: self.summary,
            consequences,
        })
    }
}

async fn page(
    pool: &PgPool,
    scope: Scope,
    query: &TimelineQuery,
) -> Result<TimelinePage, ProjectionError> {
    let after = query
        .after
        .as_deref()
        .map(|raw| scope.after(raw))
        .transpose()?;
    let limit = match query.limit {
        0 => DEFAULT_TIMELINE_PAGE,
        n => n.min(MAX_TIMELINE_PAGE),
    };
    let (first, second) = scope.subject();
    let (e, c, k) = (
        scope.predicate("e"),
        scope.predicate("c"),
        scope.predicate("k"),
    );
    let mut roots: Vec<EntryRecord> = sqlx::query_as(&format!(
        "SELECT {COLUMNS} FROM rm.timeline_entries e \
         WHERE {e} \
           AND NOT EXISTS (SELECT 1 FROM rm.timeline_entries c \
             WHERE {c} AND c.event_id = e.causation_id AND c.position < e.position) \
           AND ($3::timestamptz IS NULL OR e.recorded_at >= $3) \
           AND ($4::timestamptz IS NULL OR e.recorded_at < $4) \
           AND ($5::uuid IS NULL OR e.partner = $5 OR EXISTS (SELECT 1 \
             FROM rm.timeline_entries k WHERE {k} AND k.causation_id = e.event_id \
               AND k.position > e.position AND k.partner = $5)) \
           AND ($6::int8 IS NULL OR e.position > $6) \
         ORDER BY e.position \
         LIMIT $7"
    ))
    .bind(first)
    .bind(second)
    .bind(query.from)
    .bind(query.to)
    .bind(query.partner.map(|p| p.0))
    .bind(after)
    .bind(i64::from(limit) + 1)
    .fetch_all(pool)
    .await?;
    let more = roots.len() > limit as usize;
    roots.truncate(limit as usize);
    let next = match (more, roots.last()) {
        (true, Some(last)) => Some(scope.cursor(last.position)),
        _ => None,
    };
    let mut children = consequences_of(pool, scope, &roots).await?;
    let entries = roots
        .into_iter()
        .map(|r| {
            let nested = children.remove(&r.event_id).unwrap_or_default();
            r.into_entry(nested)
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(TimelinePage { entries, next })
}

/// Every consequence (transitively) of `roots` in the timeline, nested,
/// by the event id of the entry that caused it.
async fn consequences_of(
    pool: &PgPool,
    scope: Scope,
    roots: &[EntryRecord],
) -> Result<HashMap<Uuid, Vec<TimelineEntry>>, ProjectionError> {
    let mut children: HashMap<Uuid, Vec<TimelineEntry>> = HashMap::new();
    if roots.is_empty() {
        return Ok(children);
    }
    let (first, second) = scope.subject();
    let (p, c) = (scope.predicate("p"), scope.predicate("c"));
    let records: Vec<EntryRecord> = sqlx::query_as(&format!(
        "WITH RECURSIVE tree AS ( \
           SELECT c.* FROM rm.timeline_entries p \
             JOIN rm.timeline_entries c \
               ON c.causation_id = p.event_id AND c.position > p.position \
             WHERE {p} AND p.event_id = ANY($3) AND {c} \
           UNION ALL \
           SELECT c.* FROM tree t \
             JOIN rm.timeline_entries c \
               ON c.causation_id = t.event_id AND c.position > t.position \
             WHERE {c} \
         ) \
         SELECT {COLUMNS} FROM tree e ORDER BY e.position"
    ))
    .bind(first)
    .bind(second)
    .bind(roots.iter().map(|r| r.event_id).collect::<Vec<_>>())
    .fetch_all(pool)
    .await?;
    // Later entries first: an entry's consequences come after it, so each
    // is complete when its cause is built.
    for record in records.into_iter().rev() {
        let cause = record
            .causation_id
            .ok_or_else(|| corrupt("a consequence without its cause"))?;
        let mut nested = children.remove(&record.event_id).unwrap_or_default();
        nested.reverse();
        let entry = record.into_entry(nested)?;
        children.entry(cause).or_default().push(entry);
    }
    for list in children.values_mut() {
        list.reverse();
    }
    Ok(children)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[cfg(feature = "openapi")]
    #[test]
    fn the_page_schema_refers_to_nested_entries() {
        // Collecting the referenced schemas ends: the nesting is a `$ref`.
        let mut schemas = Vec::new();
        <TimelinePage as utoipa::ToSchema>::schemas(&mut schemas);
        let components = utoipa::openapi::ComponentsBuilder::new()
            .schema_from::<TimelinePage>()
            .schemas_from_iter(schemas)
            .build();
        let json = serde_json::to_value(&components).unwrap();
        let entry = &json["schemas"]["TimelineEntry"];
        assert_eq!(
            entry["properties"]["consequences"]["items"]["$ref"],
            "#/components/schemas/TimelineEntry",
            "{json:#}"
        );
    }

    #[test]
    fn cursors_belong_to_their_timeline() {
        let a = SiteId::new();
        let b = SiteId::new();
        let site = Scope::Site(a);
        let link = Scope::Link(a, b);
        let cursor = site.cursor(4_096);
        assert_eq!(site.after(&cursor).unwrap(), 4_096);
        assert!(link.after(&cursor).is_err());
        assert!(Scope::Site(b).after(&cursor).is_err());
        assert_eq!(link.after(&link.cursor(7)).unwrap(), 7);
        assert!(Scope::Link(b, a).after(&link.cursor(7)).is_err());
        let prefix = site.cursor_prefix();
        for bad in [
            String::new(),
            "x".into(),
            prefix.clone(),
            format!("{prefix}zz"),
            format!("{prefix}-1"),
            format!("{prefix}FF"),
            format!("{prefix}{}", "f".repeat(17)),
        ] {
            assert!(
                matches!(site.after(&bad), Err(ProjectionError::BadCursor(_))),
                "{bad:?}"
            );
        }
    }
}
