//! The lists a UI needs of a site's content, read from the live
//! `site_contents` tables through the views `rm.content_*`: its scorecards
//! ([`scorecards`]), its objects ([`objects`]), its relationships to
//! partners' shared objects ([`relationships`]), the scorecards partners
//! share with it ([`shared_with`]) and its child sites ([`children`]).
//!
//! Every list is keyset-paged on a stable, unique order (names compare
//! case-insensitively, ties by id): a page is at most `limit` items
//! (`DEFAULT_PAGE` when 0, at most `MAX_PAGE`), and `next` is an opaque
//! cursor to pass back as `after` while more items follow. A cursor names
//! a place in one list's order; one this service did not give out for the
//! list is [`ProjectionError::BadCursor`].

use serde::Serialize;
use shareledger_core::catalog::{
    Name, ObjectId, ObjectKind, RelationshipId, ScorecardId, SiteCode, SiteId,
};
use sqlx::PgPool;
use uuid::Uuid;

use super::super::corrupt;
use crate::ProjectionError;

/// The largest page of a content list.
pub const MAX_PAGE: u32 = 1_000;
/// The page size when none is asked for.
pub const DEFAULT_PAGE: u32 = 50;

/// One page's question: its size and where it starts.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PageQuery {
    /// Page size, clamped to `1..=MAX_PAGE` (0 means `DEFAULT_PAGE`).
    pub limit: u32,
    /// The `next` cursor of the previous page of the same list.
    pub after: Option<String>,
}

impl PageQuery {
    fn size(&self) -> u32 {
        match self.limit {
            0 => DEFAULT_PAGE,
            n => n.min(MAX_PAGE),
        }
    }
}

/// A site, as the lists name it (R-SHARE-6: with its code).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SiteRef {
    pub site_id: SiteId,
    pub code: SiteCode,
    pub name: Name,
}

/// A scorecard, as the lists name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScorecardRef {
    pub scorecard_id: ScorecardId,
    pub name: Name,
}

/// An object of the site, as the lists name it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectRef {
    pub object_id: ObjectId,
    pub name: Name,
}

/// One of the site's own scorecards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScorecardItem {
    pub scorecard_id: ScorecardId,
    pub name: Name,
    /// How many of the site's objects are placed directly on it (objects
    /// inside those containers are not counted).
    pub objects: i64,
    /// How many partners' shared objects the site linked onto it
    /// (R-SHARE-4).
    pub linked_objects: i64,
}

/// One page of a site's scorecards.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ScorecardsPage {
    /// By name (case-insensitively), then id.
    pub items: Vec<ScorecardItem>,
    /// The cursor of the next page, when more items follow.
    pub next: Option<String>,
}

/// One of the site's own objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectItem {
    pub object_id: ObjectId,
    pub kind: ObjectKind,
    pub name: Name,
    /// The Result or Program it sits inside, if any.
    pub container: Option<ObjectRef>,
    /// The scorecards it is placed on directly, by name.
    pub scorecards: Vec<ScorecardRef>,
}

/// One page of a site's objects.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ObjectsPage {
    /// By name (case-insensitively), then id.
    pub items: Vec<ObjectItem>,
    /// The cursor of the next page, when more items follow.
    pub next: Option<String>,
}

/// What a relationship does with a partner's object (R-SHARE-4).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum RelationshipKind {
    /// Placed on one of the site's own scorecards (`LinkSharedObject`).
    Link,
    /// Used in one of the site's own Indicators or Performance Measures
    /// (`UseSharedMeasureInAggregation`).
    Aggregation,
}

/// What a relationship's target is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ContentTargetType {
    Scorecard,
    Object,
}

/// Where a relationship puts the partner's object: one of the site's own
/// scorecards (a link) or own objects (an aggregation), with its name.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelationshipTarget {
    #[serde(rename = "type")]
    pub target_type: ContentTargetType,
    pub id: Uuid,
    pub name: Name,
}

/// A partner's shared object, as a relationship names it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct PartnerObject {
    pub object_id: ObjectId,
    pub kind: ObjectKind,
    pub name: Name,
}

/// One of the site's relationships to a partner's shared object
/// (R-SHARE-4), with the origin site's code (R-SHARE-6).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelationshipItem {
    pub relationship_id: RelationshipId,
    pub kind: RelationshipKind,
    pub target: RelationshipTarget,
    /// The partner whose object it is.
    pub origin: SiteRef,
    pub object: PartnerObject,
}

/// One page of a site's relationships.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RelationshipsPage {
    /// By the partner object's name (case-insensitively), then the
    /// relationship's id.
    pub items: Vec<RelationshipItem>,
    /// The cursor of the next page, when more items follow.
    pub next: Option<String>,
}

/// A scorecard a partner shares with the site over an active link.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SharedWithItem {
    /// The partner that owns and shares it (R-SHARE-6).
    pub partner: SiteRef,
    pub scorecard_id: ScorecardId,
    pub name: Name,
}

/// One page of the scorecards shared with a site.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SharedWithPage {
    /// Per partner (by partner code), then by scorecard name
    /// (case-insensitively), then id: a partner's scorecards are
    /// consecutive.
    pub items: Vec<SharedWithItem>,
    /// The cursor of the next page, when more items follow.
    pub next: Option<String>,
}

/// One page of a group's child sites.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ChildSitesPage {
    /// By name (case-insensitively), then id.
    pub items: Vec<SiteRef>,
    /// The cursor of the next page, when more items follow.
    pub next: Option<String>,
}

/// A place in one list's order: the list's tag, the last item's text keys
/// and its id. Encoded as `<tag>.<hex of each key>….<id>`: the keys as the
/// lowercase hex of their UTF-8 bytes, the id as 32 hex digits
/// ([`CURSOR_PATTERNS`] states the shape of each list's cursors).
///
/// Every string of that shape names a place in the list's order (keyset
/// paging needs no item at that place), so every one is decoded: bytes
/// that are not UTF-8, and U+0000 (which PostgreSQL's text cannot hold),
/// become U+FFFD. A string of another shape, or of another list's, is
/// refused.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Cursor {
    keys: Vec<String>,
    id: Uuid,
}

impl Cursor {
    fn encode(&self, tag: &str) -> String {
        let mut out = String::from(tag);
        for key in &self.keys {
            out.push('.');
            out.push_str(&hex::encode(key));
        }
        out.push('.');
        out.push_str(&self.id.simple().to_string());
        out
    }

    /// The cursor `raw` of the list tagged `tag`, whose order has `keys`
    /// text keys before the id.
    fn decode(raw: &str, tag: &str, keys: usize) -> Option<Self> {
        let mut parts = raw.split('.');
        if parts.next()? != tag {
            return None;
        }
        let parts: Vec<&str> = parts.collect();
        if parts.len() != keys + 1 {
            return None;
        }
        let (id, keys) = parts.split_last()?;
        if id.len() != 32 || !id.bytes().all(|b| b.is_ascii_hexdigit()) {
            return None;
        }
        let id = Uuid::parse_str(id).ok()?;
        let keys = keys
            .iter()
            .map(|k| {
                let bytes = hex::decode(k).ok()?;
                Some(String::from_utf8_lossy(&bytes).replace('\0', "\u{FFFD}"))
            })
            .collect::<Option<Vec<_>>>()?;
        Some(Self { keys, id })
    }

    /// The cursor of `raw`, as the list's question binds it.
    fn after(raw: Option<&str>, tag: &str, keys: usize) -> Result<Option<Self>, ProjectionError> {
        raw.map(|raw| {
            Self::decode(raw, tag, keys).ok_or_else(|| ProjectionError::BadCursor(raw.to_owned()))
        })
        .transpose()
    }
}

/// The list's tags (a cursor of one list is refused by the others).
const SCORECARDS: &str = "sc";
const OBJECTS: &str = "ob";
const RELATIONSHIPS: &str = "re";
const SHARED_WITH: &str = "sw";
const CHILDREN: &str = "ch";
const DIRECTORY: &str = "di";

/// The shape of each list's cursors, as a regular expression (for the API
/// document): exactly the strings [`Cursor::decode`] takes for the list.
pub const CURSOR_PATTERNS: [(&str, &str); 6] = [
    ("scorecards", r"^sc\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$"),
    ("objects", r"^ob\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$"),
    (
        "relationships",
        r"^re\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$",
    ),
    (
        "shared-with",
        r"^sw\.(?:[0-9a-fA-F]{2})*\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$",
    ),
    ("children", r"^ch\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$"),
    ("directory", r"^di\.(?:[0-9a-fA-F]{2})*\.[0-9a-fA-F]{32}$"),
];

/// Cuts the `size + 1` rows fetched to one page: the rows, and the cursor of
/// the next page when a row was left over.
fn page<R>(
    mut rows: Vec<R>,
    size: u32,
    tag: &str,
    cursor: impl Fn(&R) -> Cursor,
) -> (Vec<R>, Option<String>) {
    let more = rows.len() > size as usize;
    rows.truncate(size as usize);
    let next = match (more, rows.last()) {
        (true, Some(last)) => Some(cursor(last).encode(tag)),
        _ => None,
    };
    (rows, next)
}

fn site_code(raw: &str) -> Result<SiteCode, ProjectionError> {
    SiteCode::parse(raw).map_err(|e| corrupt(e.to_string()))
}

fn name(raw: &str) -> Result<Name, ProjectionError> {
    Name::parse(raw).map_err(|e| corrupt(e.to_string()))
}

fn object_kind(raw: &str) -> Result<ObjectKind, ProjectionError> {
    ObjectKind::parse(raw).map_err(|e| corrupt(e.to_string()))
}

/// The cursor's key and id, as a list's question binds them.
fn key(after: &Option<Cursor>, i: usize) -> Option<String> {
    after.as_ref().map(|c| c.keys[i].clone())
}

fn id(after: &Option<Cursor>) -> Option<Uuid> {
    after.as_ref().map(|c| c.id)
}

#[derive(sqlx::FromRow)]
struct ScorecardRecord {
    scorecard_id: Uuid,
    name: String,
    sort_key: String,
    objects: i64,
    linked_objects: i64,
}

/// The site's own scorecards, with how many objects sit directly on each.
pub async fn scorecards(
    pool: &PgPool,
    site: SiteId,
    query: &PageQuery,
) -> Result<ScorecardsPage, ProjectionError> {
    let after = Cursor::after(query.after.as_deref(), SCORECARDS, 1)?;
    let size = query.size();
    let records: Vec<ScorecardRecord> = sqlx::query_as(
        "SELECT sc.scorecard_id, sc.name, lower(sc.name) AS sort_key, \
           (SELECT count(*) FROM rm.content_placements p \
             WHERE p.scorecard_id = sc.scorecard_id) AS objects, \
           (SELECT count(*) FROM rm.content_relationships r \
             WHERE r.scorecard_id = sc.scorecard_id) AS linked_objects \
         FROM rm.content_scorecards sc \
         WHERE sc.site_id = $1 \
           AND ($2::text IS NULL OR (lower(sc.name), sc.scorecard_id) > ($2::text, $3::uuid)) \
         ORDER BY lower(sc.name), sc.scorecard_id \
         LIMIT $4",
    )
    .bind(site.0)
    .bind(key(&after, 0))
    .bind(id(&after))
    .bind(i64::from(size) + 1)
    .fetch_all(pool)
    .await?;
    let (records, next) = page(records, size, SCORECARDS, |r| Cursor {
        keys: vec![r.sort_key.clone()],
        id: r.scorecard_id,
    });
    let items = records
        .into_iter()
        .map(|r| {
            Ok(ScorecardItem {
                scorecard_id: ScorecardId(r.scorecard_id),
                name: name(&r.name)?,
                objects: r.objects,
                linked_objects: r.linked_objects,
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok(ScorecardsPage { items, next })
}

#[derive(sqlx::FromRow)]
struct ObjectRecord {
    object_id: Uuid,
    kind: String,
    name: String,
    sort_key: String,
    container_id: Option<Uuid>,
    container_name: Option<String>,
    scorecard_ids: Vec<Uuid>,
    scorecard_names: Vec<String>,
}

/// The site's own objects, each with its container and the scorecards it
/// is placed on; with `on`, only the objects placed directly on that
/// scorecard (none when it is not one of the site's).
pub async fn objects(
    pool: &PgPool,
    site: SiteId,
    on: Option<ScorecardId>,
    query: &PageQuery,
) -> Result<ObjectsPage, ProjectionError> {
    let after = Cursor::after(query.after.as_deref(), OBJECTS, 1)?;
    let size = query.size();
    let records: Vec<ObjectRecord> = sqlx::query_as(
        "SELECT o.object_id, o.kind, o.name, lower(o.name) AS sort_key, \
           c.object_id AS container_id, c.name AS container_name, \
           COALESCE(pl.ids, '{}') AS scorecard_ids, COALESCE(pl.names, '{}') AS scorecard_names \
         FROM rm.content_objects o \
         LEFT JOIN rm.content_objects c ON c.object_id = o.container \
         LEFT JOIN LATERAL ( \
           SELECT array_agg(sc.scorecard_id ORDER BY lower(sc.name), sc.scorecard_id) AS ids, \
                  array_agg(sc.name ORDER BY lower(sc.name), sc.scorecard_id) AS names \
           FROM rm.content_placements p \
           JOIN rm.content_scorecards sc ON sc.scorecard_id = p.scorecard_id \
           WHERE p.object_id = o.object_id) pl ON true \
         WHERE o.site_id = $1 \
           AND ($5::uuid IS NULL OR EXISTS (SELECT 1 FROM rm.content_placements f \
                 WHERE f.scorecard_id = $5 AND f.object_id = o.object_id)) \
           AND ($2::text IS NULL OR (lower(o.name), o.object_id) > ($2::text, $3::uuid)) \
         ORDER BY lower(o.name), o.object_id \
         LIMIT $4",
    )
    .bind(site.0)
    .bind(key(&after, 0))
    .bind(id(&after))
    .bind(i64::from(size) + 1)
    .bind(on.map(|s| s.0))
    .fetch_all(pool)
    .await?;
    let (records, next) = page(records, size, OBJECTS, |r| Cursor {
        keys: vec![r.sort_key.clone()],
        id: r.object_id,
    });
    let items = records
        .into_iter()
        .map(|r| {
            let container = match (r.container_id, r.container_name) {
                (Some(id), Some(raw)) => Some(ObjectRef {
                    object_id: ObjectId(id),
                    name: name(&raw)?,
                }),
                _ => None,
            };
            Ok(ObjectItem {
                object_id: ObjectId(r.object_id),
                kind: object_kind(&r.kind)?,
                name: name(&r.name)?,
                container,
                scorecards: r
                    .scorecard_ids
                    .into_iter()
                    .zip(r.scorecard_names)
                    .map(|(id, raw)| {
                        Ok(ScorecardRef {
                            scorecard_id: ScorecardId(id),
                            name: name(&raw)?,
                        })
                    })
                    .collect::<Result<_, ProjectionError>>()?,
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok(ObjectsPage { items, next })
}

#[derive(sqlx::FromRow)]
struct RelationshipRecord {
    relationship_id: Uuid,
    kind: String,
    scorecard_id: Option<Uuid>,
    into_object: Option<Uuid>,
    target_name: Option<String>,
    origin_site: Uuid,
    origin_code: String,
    origin_name: String,
    object_id: Uuid,
    object_kind: String,
    object_name: String,
    sort_key: String,
}

/// The site's relationships to partners' shared objects (R-SHARE-4), each
/// with its target (an own scorecard or object), the origin site's code and
/// name (R-SHARE-6), and the partner's object. A relationship is listed
/// until its `RelationshipRemoved` (recorded in the same append as an
/// unshare or a revocation, and by the consequence worker just after an
/// object leaves the shared scorecards).
pub async fn relationships(
    pool: &PgPool,
    site: SiteId,
    query: &PageQuery,
) -> Result<RelationshipsPage, ProjectionError> {
    let after = Cursor::after(query.after.as_deref(), RELATIONSHIPS, 1)?;
    let size = query.size();
    let records: Vec<RelationshipRecord> = sqlx::query_as(
        "SELECT r.relationship_id, r.kind, r.scorecard_id, r.into_object, \
           COALESCE(tsc.name, tob.name) AS target_name, \
           r.origin_site, os.code AS origin_code, os.name AS origin_name, \
           r.object_id, po.kind AS object_kind, po.name AS object_name, \
           lower(po.name) AS sort_key \
         FROM rm.content_relationships r \
         JOIN rm.content_sites os ON os.site_id = r.origin_site \
         JOIN rm.content_objects po ON po.object_id = r.object_id \
         LEFT JOIN rm.content_scorecards tsc ON tsc.scorecard_id = r.scorecard_id \
         LEFT JOIN rm.content_objects tob ON tob.object_id = r.into_object \
         WHERE r.site_id = $1 \
           AND ($2::text IS NULL OR (lower(po.name), r.relationship_id) > ($2::text, $3::uuid)) \
         ORDER BY lower(po.name), r.relationship_id \
         LIMIT $4",
    )
    .bind(site.0)
    .bind(key(&after, 0))
    .bind(id(&after))
    .bind(i64::from(size) + 1)
    .fetch_all(pool)
    .await?;
    let (records, next) = page(records, size, RELATIONSHIPS, |r| Cursor {
        keys: vec![r.sort_key.clone()],
        id: r.relationship_id,
    });
    let items = records
        .into_iter()
        .map(|r| {
            let (kind, target_type, target) = match (r.kind.as_str(), r.scorecard_id, r.into_object)
            {
                ("link", Some(scorecard), None) => (
                    RelationshipKind::Link,
                    ContentTargetType::Scorecard,
                    scorecard,
                ),
                ("aggregation", None, Some(object)) => (
                    RelationshipKind::Aggregation,
                    ContentTargetType::Object,
                    object,
                ),
                (other, _, _) => {
                    return Err(corrupt(format!(
                        "relationship {} of kind {other:?} has the wrong target",
                        r.relationship_id
                    )))
                }
            };
            let target_name = r.target_name.ok_or_else(|| {
                corrupt(format!(
                    "the target {target} of relationship {} is unknown",
                    r.relationship_id
                ))
            })?;
            Ok(RelationshipItem {
                relationship_id: RelationshipId(r.relationship_id),
                kind,
                target: RelationshipTarget {
                    target_type,
                    id: target,
                    name: name(&target_name)?,
                },
                origin: SiteRef {
                    site_id: SiteId(r.origin_site),
                    code: site_code(&r.origin_code)?,
                    name: name(&r.origin_name)?,
                },
                object: PartnerObject {
                    object_id: ObjectId(r.object_id),
                    kind: object_kind(&r.object_kind)?,
                    name: name(&r.object_name)?,
                },
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok(RelationshipsPage { items, next })
}

#[derive(sqlx::FromRow)]
struct SharedWithRecord {
    partner: Uuid,
    partner_code: String,
    partner_name: String,
    scorecard_id: Uuid,
    name: String,
    sort_key: String,
}

/// The scorecards partners share with the site over their active links,
/// per partner (the opposite direction of `shared_scorecards`).
pub async fn shared_with(
    pool: &PgPool,
    site: SiteId,
    query: &PageQuery,
) -> Result<SharedWithPage, ProjectionError> {
    let after = Cursor::after(query.after.as_deref(), SHARED_WITH, 2)?;
    let size = query.size();
    let records: Vec<SharedWithRecord> = sqlx::query_as(
        "SELECT p.site_id AS partner, p.code AS partner_code, p.name AS partner_name, \
           sc.scorecard_id, sc.name, lower(sc.name) AS sort_key \
         FROM rm.content_shared sh \
         JOIN rm.content_links l \
           ON l.from_site = sh.from_site AND l.to_site = sh.to_site AND l.active \
         JOIN rm.content_sites p ON p.site_id = sh.from_site \
         JOIN rm.content_scorecards sc ON sc.scorecard_id = sh.scorecard_id \
         WHERE sh.to_site = $1 \
           AND ($2::text IS NULL \
             OR (p.code, lower(sc.name), sc.scorecard_id) > ($2::text, $3::text, $4::uuid)) \
         ORDER BY p.code, lower(sc.name), sc.scorecard_id \
         LIMIT $5",
    )
    .bind(site.0)
    .bind(key(&after, 0))
    .bind(key(&after, 1))
    .bind(id(&after))
    .bind(i64::from(size) + 1)
    .fetch_all(pool)
    .await?;
    let (records, next) = page(records, size, SHARED_WITH, |r| Cursor {
        keys: vec![r.partner_code.clone(), r.sort_key.clone()],
        id: r.scorecard_id,
    });
    let items = records
        .into_iter()
        .map(|r| {
            Ok(SharedWithItem {
                partner: SiteRef {
                    site_id: SiteId(r.partner),
                    code: site_code(&r.partner_code)?,
                    name: name(&r.partner_name)?,
                },
                scorecard_id: ScorecardId(r.scorecard_id),
                name: name(&r.name)?,
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok(SharedWithPage { items, next })
}

#[derive(sqlx::FromRow)]
struct SiteRecord {
    site_id: Uuid,
    code: String,
    name: String,
    sort_key: String,
}

/// A group's child sites (R-ONB-1): the sites whose parent it is now.
pub async fn children(
    pool: &PgPool,
    site: SiteId,
    query: &PageQuery,
) -> Result<ChildSitesPage, ProjectionError> {
    let after = Cursor::after(query.after.as_deref(), CHILDREN, 1)?;
    let size = query.size();
    let records: Vec<SiteRecord> = sqlx::query_as(
        "SELECT s.site_id, s.code, s.name, lower(s.name) AS sort_key \
         FROM rm.content_sites s \
         WHERE s.parent = $1 \
           AND ($2::text IS NULL OR (lower(s.name), s.site_id) > ($2::text, $3::uuid)) \
         ORDER BY lower(s.name), s.site_id \
         LIMIT $4",
    )
    .bind(site.0)
    .bind(key(&after, 0))
    .bind(id(&after))
    .bind(i64::from(size) + 1)
    .fetch_all(pool)
    .await?;
    let (records, next) = page(records, size, CHILDREN, |r| Cursor {
        keys: vec![r.sort_key.clone()],
        id: r.site_id,
    });
    let items = records
        .into_iter()
        .map(|r| {
            Ok(SiteRef {
                site_id: SiteId(r.site_id),
                code: site_code(&r.code)?,
                name: name(&r.name)?,
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok(ChildSitesPage { items, next })
}

/// The partner directory (seed 002): the sites that chose to be listed,
/// whose name or code contains `search` (case-insensitively), by name.
pub async fn directory(
    pool: &PgPool,
    search: Option<&str>,
    query: &PageQuery,
) -> Result<ChildSitesPage, ProjectionError> {
    let after = Cursor::after(query.after.as_deref(), DIRECTORY, 1)?;
    let size = query.size();
    let pattern = search
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(super::super::queries::contains_pattern);
    let records: Vec<SiteRecord> = sqlx::query_as(
        "SELECT s.site_id, s.code, s.name, lower(s.name) AS sort_key \
         FROM rm.content_sites s \
         WHERE s.listed \
           AND ($1::text IS NULL OR s.name ILIKE $1 OR s.code ILIKE $1) \
           AND ($2::text IS NULL OR (lower(s.name), s.site_id) > ($2::text, $3::uuid)) \
         ORDER BY lower(s.name), s.site_id \
         LIMIT $4",
    )
    .bind(pattern)
    .bind(key(&after, 0))
    .bind(id(&after))
    .bind(i64::from(size) + 1)
    .fetch_all(pool)
    .await?;
    let (records, next) = page(records, size, DIRECTORY, |r| Cursor {
        keys: vec![r.sort_key.clone()],
        id: r.site_id,
    });
    let items = records
        .into_iter()
        .map(|r| {
            Ok(SiteRef {
                site_id: SiteId(r.site_id),
                code: site_code(&r.code)?,
                name: name(&r.name)?,
            })
        })
        .collect::<Result<Vec<_>, ProjectionError>>()?;
    Ok(ChildSitesPage { items, next })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cursors_round_trip_any_text_and_name_their_list() {
        let id = Uuid::parse_str("5a6fc3ab-0000-4000-8000-000000000001").unwrap();
        let cursor = Cursor {
            keys: vec!["ACME".into(), "zoë. a.b".into()],
            id,
        };
        let raw = cursor.encode(SHARED_WITH);
        assert_eq!(
            raw,
            "sw.41434d45.7a6fc3ab2e20612e62.5a6fc3ab000040008000000000000001"
        );
        assert_eq!(Cursor::decode(&raw, SHARED_WITH, 2), Some(cursor));
        // Another list's tag, or another number of keys: not this list's.
        assert_eq!(Cursor::decode(&raw, OBJECTS, 2), None);
        assert_eq!(Cursor::decode(&raw, SHARED_WITH, 1), None);
        let empty = Cursor {
            keys: vec![String::new()],
            id,
        };
        assert_eq!(
            Cursor::decode(&empty.encode(OBJECTS), OBJECTS, 1),
            Some(empty)
        );
    }

    #[test]
    fn malformed_cursors_are_refused() {
        let id = "5a6fc3ab000040008000000000000001";
        for bad in [
            String::new(),
            "ob".into(),
            "ob.".into(),
            format!("ob.{id}"),
            format!("ob.zz.{id}"),
            format!("ob.0.{id}"),
            format!("ob.41.{}", &id[..31]),
            format!("ob.41.{id}0"),
            format!("ob.41.{id}.41"),
            "ob.41.5a6fc3ab-0000-4000-8000-000000000001".into(),
            format!("ob.41.+{}", &id[1..]),
            format!("sc.41.{id}"),
        ] {
            assert_eq!(Cursor::decode(&bad, OBJECTS, 1), None, "{bad:?}");
            assert!(
                matches!(
                    Cursor::after(Some(&bad), OBJECTS, 1),
                    Err(ProjectionError::BadCursor(_))
                ),
                "{bad:?}"
            );
        }
        assert!(matches!(Cursor::after(None, OBJECTS, 1), Ok(None)));
    }

    #[test]
    fn keys_that_are_no_text_still_name_a_place() {
        let id = "5a6fc3ab000040008000000000000001";
        // Not UTF-8, and U+0000 (which PostgreSQL's text cannot hold).
        for (raw, key) in [
            ("ff", "\u{FFFD}"),
            ("00", "\u{FFFD}"),
            ("410042", "A\u{FFFD}B"),
        ] {
            let cursor = Cursor::decode(&format!("ob.{raw}.{id}"), OBJECTS, 1).unwrap();
            assert_eq!(cursor.keys, [key]);
        }
        // Uppercase hex is hex.
        let upper = Cursor::decode(&format!("ob.4A.{}", id.to_uppercase()), OBJECTS, 1).unwrap();
        assert_eq!(upper.keys, ["J"]);
    }

    /// The document states each list's cursors by [`CURSOR_PATTERNS`]:
    /// every string of that shape is one of the list's cursors (so a
    /// client that sends what the document allows gets a page), and every
    /// cursor the list gives out has that shape.
    #[test]
    fn every_string_of_a_lists_pattern_is_one_of_its_cursors() {
        use proptest::strategy::{Strategy, ValueTree};
        use proptest::test_runner::TestRunner;
        let lists = [
            ("scorecards", SCORECARDS, 1),
            ("objects", OBJECTS, 1),
            ("relationships", RELATIONSHIPS, 1),
            ("shared-with", SHARED_WITH, 2),
            ("children", CHILDREN, 1),
            ("directory", DIRECTORY, 1),
        ];
        assert_eq!(
            CURSOR_PATTERNS.map(|(route, _)| route),
            lists.map(|(route, ..)| route)
        );
        let mut runner = TestRunner::deterministic();
        for ((_, pattern), (route, tag, keys)) in CURSOR_PATTERNS.iter().zip(lists) {
            let unanchored = pattern
                .strip_prefix('^')
                .and_then(|p| p.strip_suffix('$'))
                .expect("an anchored pattern");
            let strings = proptest::string::string_regex(unanchored).expect("a pattern");
            for _ in 0..500 {
                let raw = strings.new_tree(&mut runner).unwrap().current();
                assert!(
                    Cursor::decode(&raw, tag, keys).is_some(),
                    "{route}: {raw:?}"
                );
            }
            // What the list gives out is of that shape (checked by hand:
            // the tag, then lowercase hex pairs per key, then 32 hex).
            let given = Cursor {
                keys: vec!["Zoë \u{FFFD}".into(); keys],
                id: Uuid::new_v4(),
            }
            .encode(tag);
            let parts: Vec<&str> = given.split('.').collect();
            assert_eq!(parts[0], tag);
            assert_eq!(parts.len(), keys + 2, "{given}");
            for key in &parts[1..=keys] {
                assert!(key.len() % 2 == 0 && key.bytes().all(|b| b.is_ascii_hexdigit()));
            }
            assert_eq!(parts[keys + 1].len(), 32);
        }
    }

    #[test]
    fn page_sizes_default_to_50_and_stop_at_1000() {
        let size = |limit| PageQuery { limit, after: None }.size();
        assert_eq!(size(0), DEFAULT_PAGE);
        assert_eq!(size(1), 1);
        assert_eq!(size(1_000), 1_000);
        assert_eq!(size(1_001), MAX_PAGE);
        assert_eq!(size(u32::MAX), MAX_PAGE);
    }
}
