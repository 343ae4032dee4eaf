//! The `site_contents` read model: what a UI lists of a site's content,
//! with names, so that it need not hold every id beforehand. Its queries
//! ([`queries`]) answer a site's scorecards with their object counts, its
//! objects with their container and scorecards, its relationships to
//! partners' shared objects (R-SHARE-4) with the origin site's code and name
//! (R-SHARE-6), the scorecards shared with it per partner, and a group's
//! child sites.
//!
//! It keeps its own copy of every fact it needs (site names and codes,
//! links and shares as well as content): a projection never joins another
//! projection's tables, since each is rebuilt and switched in its own
//! generation.
//!
//! Tables (in the generation schema; `rm.<table>` for consumers):
//!
//! * `content_sites`: every site's code, name, parent, and whether it is
//!   listed in the partner directory (seed 002).
//! * `content_scorecards`: every scorecard's site and name.
//! * `content_objects`: every object's site, kind, name and container.
//!   Names change by `ScorecardRenamed` and `ObjectRenamed` only: no object
//!   field is its name (`ObjectField`), so `ObjectFieldUpdated` and
//!   `ObjectFieldEdited` change nothing here. An archived scorecard or
//!   object has no row, nor do its placements and shares.
//! * `content_placements`: the objects placed directly on each scorecard.
//! * `content_relationships`: each site's relationships to partners'
//!   objects: `link` (onto an own scorecard, `scorecard_id`) or
//!   `aggregation` (into an own measure, `into_object`), the origin site and
//!   the partner's object. A removed relationship has no row.
//! * `content_links`: every share link ever requested, and whether it is
//!   active now.
//! * `content_shared`: the scorecards shared over each link. A revocation
//!   and a new request of the link empty its set (R-CONN-4).
//!
//! Writes are set-based per batch, as the other models' (see
//! [`super`]): each event becomes at most one op; ops are grouped into
//! runs of one kind by [`Scheduler`], and each run is one or two
//! statements over `unnest`ed arrays. No statement reads another table, so
//! kinds conflict only where their ops touch the same rows: a site's parent
//! with its registration, and a link's status change (which may empty its
//! shared set) with shares.

pub mod queries;

pub use queries::{
    children, directory, objects, relationships, scorecards, shared_with, ChildSitesPage,
    ContentTargetType, ObjectItem, ObjectRef, ObjectsPage, PageQuery, PartnerObject,
    RelationshipItem, RelationshipKind, RelationshipTarget, RelationshipsPage, ScorecardItem,
    ScorecardRef, ScorecardsPage, SharedWithItem, SharedWithPage, SiteRef, CURSOR_PATTERNS,
    DEFAULT_PAGE, MAX_PAGE,
};

use std::collections::HashMap;

use async_trait::async_trait;
use shareledger_core::catalog::{ConnectionEvent, ContentEvent, SiteEvent};
use shareledger_events::RecordedEvent;
use sqlx::PgConnection;
use uuid::Uuid;

use super::schedule::Scheduler;
use super::Statistics;
use super::{quoted, snake, write};
use crate::decode::{decode, Decoded};
use crate::projection::SqlProjection;
use crate::ProjectionError;

/// The `site_contents` read model.
#[derive(Debug, Default)]
pub struct SiteContents {
    statistics: Statistics,
}

impl SiteContents {
    /// Its name (checkpoint and generation schemas, and the freshness gate
    /// of the routes it answers).
    pub const NAME: &'static str = "site_contents";
    /// Its tables, each shown as `rm.<table>`.
    pub const TABLES: &'static [&'static str] = &[
        "content_sites",
        "content_scorecards",
        "content_objects",
        "content_placements",
        "content_relationships",
        "content_links",
        "content_shared",
    ];
}

#[async_trait]
impl SqlProjection for SiteContents {
    fn name(&self) -> &'static str {
        Self::NAME
    }

    /// 2: sites may be listed in the partner directory
    /// (`content_sites.listed`).
    fn version(&self) -> u32 {
        2
    }

    async fn create_tables(
        &self,
        conn: &mut PgConnection,
        schema: &str,
    ) -> Result<(), ProjectionError> {
        let s = quoted(schema);
        let ddl = format!(
            r#"
CREATE TABLE {s}.content_sites (
    site_id uuid PRIMARY KEY,
    code text NOT NULL UNIQUE,
    name text NOT NULL,
    parent uuid,
    listed boolean NOT NULL DEFAULT false
);
CREATE INDEX ON {s}.content_sites (lower(name), site_id) WHERE listed;
CREATE INDEX ON {s}.content_sites (parent, lower(name), site_id) WHERE parent IS NOT NULL;

CREATE TABLE {s}.content_scorecards (
    scorecard_id uuid PRIMARY KEY,
    site_id uuid NOT NULL,
    name text NOT NULL
);
CREATE INDEX ON {s}.content_scorecards (site_id, lower(name), scorecard_id);

CREATE TABLE {s}.content_objects (
    object_id uuid PRIMARY KEY,
    site_id uuid NOT NULL,
    kind text NOT NULL,
    name text NOT NULL,
    container uuid
);
CREATE INDEX ON {s}.content_objects (site_id, lower(name), object_id);

CREATE TABLE {s}.content_placements (
    scorecard_id uuid NOT NULL,
    object_id uuid NOT NULL,
    PRIMARY KEY (scorecard_id, object_id)
);
CREATE INDEX ON {s}.content_placements (object_id);

CREATE TABLE {s}.content_relationships (
    relationship_id uuid PRIMARY KEY,
    site_id uuid NOT NULL,
    kind text NOT NULL CHECK (kind IN ('link', 'aggregation')),
    scorecard_id uuid,
    into_object uuid,
    origin_site uuid NOT NULL,
    object_id uuid NOT NULL,
    CHECK ((kind = 'link') = (scorecard_id IS NOT NULL)),
    CHECK ((kind = 'aggregation') = (into_object IS NOT NULL))
);
CREATE INDEX ON {s}.content_relationships (site_id);
CREATE INDEX ON {s}.content_relationships (scorecard_id) WHERE scorecard_id IS NOT NULL;

CREATE TABLE {s}.content_links (
    from_site uuid NOT NULL,
    to_site uuid NOT NULL,
    active boolean NOT NULL,
    PRIMARY KEY (from_site, to_site)
);

CREATE TABLE {s}.content_shared (
    from_site uuid NOT NULL,
    to_site uuid NOT NULL,
    scorecard_id uuid NOT NULL,
    PRIMARY KEY (from_site, to_site, scorecard_id)
);
CREATE INDEX ON {s}.content_shared (to_site);
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
        for event in events {
            if let Some(decoded) = decode(event)? {
                if let Some(op) = op_of(decoded) {
                    scheduler.push(op.kind(), op);
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

/// The kinds of [`Op`]: each kind's ops are merged into runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Site,
    Parent,
    Listing,
    Scorecard,
    Object,
    Placement,
    Relationship,
    Link,
    Share,
    Lifecycle,
}

impl Kind {
    /// Whether ops of kinds `a` and `b` may not be swapped: a parent change
    /// needs its site's row; a link's status change may empty the link's
    /// shared set, which shares fill. Every other pair touches different
    /// rows (no statement reads another table), so it commutes.
    fn conflict(a: Kind, b: Kind) -> bool {
        use Kind::*;
        let pair = |x: Kind, y: Kind| (a == x && b == y) || (a == y && b == x);
        // A rename or an archive touches rows of every kind of content.
        a == Lifecycle || b == Lifecycle || pair(Site, Parent) || pair(Link, Share)
    }
}

/// One change to the tables; runs of one kind are written by one or two
/// statements (see [`write_run`]).
#[derive(Debug)]
enum Op {
    Site {
        site: Uuid,
        code: String,
        name: String,
        parent: Option<Uuid>,
    },
    /// A site's parent set (or cleared); last-wins per site.
    Parent { site: Uuid, parent: Option<Uuid> },
    /// A site listed in the directory or not; last-wins per site.
    Listing { site: Uuid, listed: bool },
    Scorecard {
        scorecard: Uuid,
        site: Uuid,
        name: String,
    },
    Object {
        object: Uuid,
        site: Uuid,
        kind: String,
        name: String,
        container: Option<Uuid>,
    },
    /// An object placed on (`true`) or removed from a scorecard; last-wins
    /// per pair.
    Placement {
        scorecard: Uuid,
        object: Uuid,
        placed: bool,
    },
    /// A relationship made (`Some`) or removed; last-wins per id.
    Relationship {
        id: Uuid,
        row: Option<RelationshipRow>,
    },
    /// The status of some links changed: active or not, and whether their
    /// shared sets end (a revocation, or a new request).
    Link {
        links: Vec<(Uuid, Uuid)>,
        active: bool,
        clears: bool,
    },
    /// A scorecard shared (`true`) or unshared over a link; last-wins per key.
    Share {
        from: Uuid,
        to: Uuid,
        scorecard: Uuid,
        shared: bool,
    },
    /// A scorecard or an object renamed (`Some`) or archived (`None`).
    Lifecycle {
        target: Uuid,
        scorecard: bool,
        name: Option<String>,
    },
}

impl Op {
    fn kind(&self) -> Kind {
        match self {
            Op::Site { .. } => Kind::Site,
            Op::Parent { .. } => Kind::Parent,
            Op::Listing { .. } => Kind::Listing,
            Op::Scorecard { .. } => Kind::Scorecard,
            Op::Object { .. } => Kind::Object,
            Op::Placement { .. } => Kind::Placement,
            Op::Relationship { .. } => Kind::Relationship,
            Op::Link { .. } => Kind::Link,
            Op::Share { .. } => Kind::Share,
            Op::Lifecycle { .. } => Kind::Lifecycle,
        }
    }
}

#[derive(Debug, Clone)]
struct RelationshipRow {
    site: Uuid,
    /// `link` or `aggregation`.
    kind: &'static str,
    scorecard: Option<Uuid>,
    into_object: Option<Uuid>,
    origin: Uuid,
    object: Uuid,
}

/// The op of one decoded event, if it changes these tables.
fn op_of(decoded: Decoded) -> Option<Op> {
    match decoded {
        Decoded::Site { site, event } => match event {
            SiteEvent::SiteRegistered {
                site_id,
                code,
                name,
                parent,
                ..
            } => Some(Op::Site {
                site: site_id.0,
                code: code.as_str().to_owned(),
                name: name.as_str().to_owned(),
                parent: parent.map(|p| p.0),
            }),
            SiteEvent::ParentSiteSet { parent } => Some(Op::Parent {
                site: site.0,
                parent: parent.map(|p| p.0),
            }),
            SiteEvent::DirectoryListingSet { listed } => Some(Op::Listing {
                site: site.0,
                listed,
            }),
            _ => None,
        },
        // The code is in `SiteRegistered` too.
        Decoded::SiteCode(_) => None,
        Decoded::Content { site, event } => {
            let site = site.0;
            match event {
                ContentEvent::ScorecardCreated { scorecard_id, name } => Some(Op::Scorecard {
                    scorecard: scorecard_id.0,
                    site,
                    name: name.as_str().to_owned(),
                }),
                ContentEvent::ObjectCreated {
                    object_id,
                    kind,
                    name,
                    container,
                } => Some(Op::Object {
                    object: object_id.0,
                    site,
                    kind: snake(&kind),
                    name: name.as_str().to_owned(),
                    container: container.map(|c| c.0),
                }),
                ContentEvent::ObjectPlacedOnScorecard {
                    object_id,
                    scorecard_id,
                } => Some(Op::Placement {
                    scorecard: scorecard_id.0,
                    object: object_id.0,
                    placed: true,
                }),
                ContentEvent::ObjectRemovedFromScorecard {
                    object_id,
                    scorecard_id,
                } => Some(Op::Placement {
                    scorecard: scorecard_id.0,
                    object: object_id.0,
                    placed: false,
                }),
                ContentEvent::ScorecardRenamed { scorecard_id, name } => Some(Op::Lifecycle {
                    target: scorecard_id.0,
                    scorecard: true,
                    name: Some(name.as_str().to_owned()),
                }),
                ContentEvent::ObjectRenamed { object_id, name } => Some(Op::Lifecycle {
                    target: object_id.0,
                    scorecard: false,
                    name: Some(name.as_str().to_owned()),
                }),
                ContentEvent::ScorecardArchived { scorecard_id } => Some(Op::Lifecycle {
                    target: scorecard_id.0,
                    scorecard: true,
                    name: None,
                }),
                ContentEvent::ObjectArchived { object_id } => Some(Op::Lifecycle {
                    target: object_id.0,
                    scorecard: false,
                    name: None,
                }),
                // No field is the object's name, kind or container.
                ContentEvent::ObjectFieldUpdated { .. }
                | ContentEvent::ObjectFieldEdited { .. } => None,
                ContentEvent::SharedObjectLinked {
                    relationship_id,
                    scorecard_id,
                    origin_site,
                    object_id,
                } => Some(Op::Relationship {
                    id: relationship_id.0,
                    row: Some(RelationshipRow {
                        site,
                        kind: "link",
                        scorecard: Some(scorecard_id.0),
                        into_object: None,
                        origin: origin_site.0,
                        object: object_id.0,
                    }),
                }),
                ContentEvent::SharedMeasureAggregated {
                    relationship_id,
                    into_object,
                    origin_site,
                    object_id,
                } => Some(Op::Relationship {
                    id: relationship_id.0,
                    row: Some(RelationshipRow {
                        site,
                        kind: "aggregation",
                        scorecard: None,
                        into_object: Some(into_object.0),
                        origin: origin_site.0,
                        object: object_id.0,
                    }),
                }),
                ContentEvent::RelationshipRemoved {
                    relationship_id, ..
                } => Some(Op::Relationship {
                    id: relationship_id.0,
                    row: None,
                }),
            }
        }
        Decoded::Connection(e) => {
            let links = |links: &[shareledger_core::catalog::Link]| -> Vec<(Uuid, Uuid)> {
                links.iter().map(|l| (l.from.0, l.to.0)).collect()
            };
            Some(match e {
                // A new request starts from nothing shared (R-CONN-4).
                ConnectionEvent::ConnectionRequested { links: l, .. } => Op::Link {
                    links: links(&l),
                    active: false,
                    clears: true,
                },
                ConnectionEvent::LinksActivated { links: l, .. } => Op::Link {
                    links: links(&l),
                    active: true,
                    clears: false,
                },
                ConnectionEvent::ConnectionDenied { links: l, .. }
                | ConnectionEvent::ConnectionRequestCancelled { links: l, .. } => Op::Link {
                    links: links(&l),
                    active: false,
                    clears: false,
                },
                ConnectionEvent::LinkRevoked { link, .. } => Op::Link {
                    links: links(&[link]),
                    active: false,
                    clears: true,
                },
                ConnectionEvent::ScorecardShared { link, scorecard_id } => Op::Share {
                    from: link.from.0,
                    to: link.to.0,
                    scorecard: scorecard_id.0,
                    shared: true,
                },
                ConnectionEvent::ScorecardUnshared {
                    link, scorecard_id, ..
                } => Op::Share {
                    from: link.from.0,
                    to: link.to.0,
                    scorecard: scorecard_id.0,
                    shared: false,
                },
            })
        }
    }
}

/// Writes a run of ops of one kind.
async fn write_run(conn: &mut PgConnection, s: &str, run: &[Op]) -> Result<(), ProjectionError> {
    match &run[0] {
        Op::Lifecycle { .. } => {
            for op in run {
                if let Op::Lifecycle {
                    target,
                    scorecard,
                    name,
                } = op
                {
                    lifecycle(conn, s, *target, *scorecard, name.as_deref()).await?;
                }
            }
        }
        Op::Site { .. } => {
            let (mut ids, mut codes, mut names, mut parents) = (vec![], vec![], vec![], vec![]);
            for op in run {
                if let Op::Site {
                    site,
                    code,
                    name,
                    parent,
                } = op
                {
                    ids.push(*site);
                    codes.push(code.clone());
                    names.push(name.clone());
                    parents.push(*parent);
                }
            }
            write(&format!(
                "INSERT INTO {s}.content_sites (site_id, code, name, parent) \
                 SELECT * FROM unnest($1::uuid[], $2::text[], $3::text[], $4::uuid[])"
            ))
            .bind(ids)
            .bind(codes)
            .bind(names)
            .bind(parents)
            .execute(&mut *conn)
            .await?;
        }
        Op::Parent { .. } => {
            let mut last: HashMap<Uuid, Option<Uuid>> = HashMap::new();
            for op in run {
                if let Op::Parent { site, parent } = op {
                    last.insert(*site, *parent);
                }
            }
            let (ids, parents): (Vec<Uuid>, Vec<Option<Uuid>>) = last.into_iter().unzip();
            write(&format!(
                "UPDATE {s}.content_sites t SET parent = v.parent \
                 FROM unnest($1::uuid[], $2::uuid[]) AS v(site_id, parent) \
                 WHERE t.site_id = v.site_id"
            ))
            .bind(ids)
            .bind(parents)
            .execute(&mut *conn)
            .await?;
        }
        Op::Listing { .. } => {
            let mut last: HashMap<Uuid, bool> = HashMap::new();
            for op in run {
                if let Op::Listing { site, listed } = op {
                    last.insert(*site, *listed);
                }
            }
            let (ids, listed): (Vec<Uuid>, Vec<bool>) = last.into_iter().unzip();
            write(&format!(
                "UPDATE {s}.content_sites t SET listed = v.listed \
                 FROM unnest($1::uuid[], $2::bool[]) AS v(site_id, listed) \
                 WHERE t.site_id = v.site_id"
            ))
            .bind(ids)
            .bind(listed)
            .execute(&mut *conn)
            .await?;
        }
        Op::Scorecard { .. } => {
            let (mut ids, mut sites, mut names) = (vec![], vec![], vec![]);
            for op in run {
                if let Op::Scorecard {
                    scorecard,
                    site,
                    name,
                } = op
                {
                    ids.push(*scorecard);
                    sites.push(*site);
                    names.push(name.clone());
                }
            }
            write(&format!(
                "INSERT INTO {s}.content_scorecards (scorecard_id, site_id, name) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[])"
            ))
            .bind(ids)
            .bind(sites)
            .bind(names)
            .execute(&mut *conn)
            .await?;
        }
        Op::Object { .. } => {
            let (mut ids, mut sites, mut kinds, mut names, mut containers) =
                (vec![], vec![], vec![], vec![], vec![]);
            for op in run {
                if let Op::Object {
                    object,
                    site,
                    kind,
                    name,
                    container,
                } = op
                {
                    ids.push(*object);
                    sites.push(*site);
                    kinds.push(kind.clone());
                    names.push(name.clone());
                    containers.push(*container);
                }
            }
            write(&format!(
                "INSERT INTO {s}.content_objects (object_id, site_id, kind, name, container) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::text[], $5::uuid[])"
            ))
            .bind(ids)
            .bind(sites)
            .bind(kinds)
            .bind(names)
            .bind(containers)
            .execute(&mut *conn)
            .await?;
        }
        Op::Placement { .. } => {
            let mut last: HashMap<(Uuid, Uuid), bool> = HashMap::new();
            for op in run {
                if let Op::Placement {
                    scorecard,
                    object,
                    placed,
                } = op
                {
                    last.insert((*scorecard, *object), *placed);
                }
            }
            let (placed, gone) = split_last_wins(last);
            // Keys are distinct: the delete and the insert commute.
            if !gone.is_empty() {
                let (scorecards, objects): (Vec<Uuid>, Vec<Uuid>) = gone.into_iter().unzip();
                write(&format!(
                    "DELETE FROM {s}.content_placements p \
                     USING unnest($1::uuid[], $2::uuid[]) AS v(scorecard_id, object_id) \
                     WHERE p.scorecard_id = v.scorecard_id AND p.object_id = v.object_id"
                ))
                .bind(scorecards)
                .bind(objects)
                .execute(&mut *conn)
                .await?;
            }
            if !placed.is_empty() {
                let (scorecards, objects): (Vec<Uuid>, Vec<Uuid>) = placed.into_iter().unzip();
                write(&format!(
                    "INSERT INTO {s}.content_placements (scorecard_id, object_id) \
                     SELECT * FROM unnest($1::uuid[], $2::uuid[]) \
                     ON CONFLICT DO NOTHING"
                ))
                .bind(scorecards)
                .bind(objects)
                .execute(&mut *conn)
                .await?;
            }
        }
        Op::Relationship { .. } => {
            let mut last: HashMap<Uuid, Option<&RelationshipRow>> = HashMap::new();
            for op in run {
                if let Op::Relationship { id, row } = op {
                    last.insert(*id, row.as_ref());
                }
            }
            let mut gone = Vec::new();
            let (
                mut ids,
                mut sites,
                mut kinds,
                mut scorecards,
                mut intos,
                mut origins,
                mut objects,
            ) = (vec![], vec![], vec![], vec![], vec![], vec![], vec![]);
            for (id, row) in last {
                match row {
                    None => gone.push(id),
                    Some(r) => {
                        ids.push(id);
                        sites.push(r.site);
                        kinds.push(r.kind);
                        scorecards.push(r.scorecard);
                        intos.push(r.into_object);
                        origins.push(r.origin);
                        objects.push(r.object);
                    }
                }
            }
            if !gone.is_empty() {
                write(&format!(
                    "DELETE FROM {s}.content_relationships r \
                     WHERE r.relationship_id = ANY($1::uuid[])"
                ))
                .bind(gone)
                .execute(&mut *conn)
                .await?;
            }
            if !ids.is_empty() {
                write(&format!(
                    "INSERT INTO {s}.content_relationships (relationship_id, site_id, kind, \
                       scorecard_id, into_object, origin_site, object_id) \
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[], \
                       $5::uuid[], $6::uuid[], $7::uuid[])"
                ))
                .bind(ids)
                .bind(sites)
                .bind(kinds)
                .bind(scorecards)
                .bind(intos)
                .bind(origins)
                .bind(objects)
                .execute(&mut *conn)
                .await?;
            }
        }
        Op::Link { .. } => {
            // No share sits between two link changes of one run (shares
            // conflict with links), so a run ends where its last change of
            // each link leaves it, its shared set emptied if any change
            // emptied it.
            let mut last: HashMap<(Uuid, Uuid), (bool, bool)> = HashMap::new();
            for op in run {
                if let Op::Link {
                    links,
                    active,
                    clears,
                } = op
                {
                    for link in links {
                        let entry = last.entry(*link).or_insert((*active, false));
                        entry.0 = *active;
                        entry.1 |= *clears;
                    }
                }
            }
            super::write_links(
                conn,
                &format!("{s}.content_links"),
                &format!("{s}.content_shared"),
                last,
            )
            .await?;
        }
        Op::Share { .. } => {
            let mut last: HashMap<(Uuid, Uuid, Uuid), bool> = HashMap::new();
            for op in run {
                if let Op::Share {
                    from,
                    to,
                    scorecard,
                    shared,
                } = op
                {
                    last.insert((*from, *to, *scorecard), *shared);
                }
            }
            super::write_shares(conn, &format!("{s}.content_shared"), last).await?;
        }
    }
    Ok(())
}

/// The keys whose last op holds (`true`), and those whose last op ends.
fn split_last_wins<K>(last: HashMap<K, bool>) -> (Vec<K>, Vec<K>) {
    let mut held = Vec::new();
    let mut ended = Vec::new();
    for (key, holds) in last {
        if holds {
            held.push(key);
        } else {
            ended.push(key);
        }
    }
    (held, ended)
}

/// A rename updates the name; an archive deletes the row and the rows that
/// name it (placements, shares).
async fn lifecycle(
    conn: &mut PgConnection,
    s: &str,
    target: Uuid,
    scorecard: bool,
    name: Option<&str>,
) -> Result<(), ProjectionError> {
    let (table, column) = if scorecard {
        ("content_scorecards", "scorecard_id")
    } else {
        ("content_objects", "object_id")
    };
    let statements = match name {
        Some(name) => {
            write(&format!(
                "UPDATE {s}.{table} SET name = $2 WHERE {column} = $1"
            ))
            .bind(target)
            .bind(name)
            .execute(&mut *conn)
            .await?;
            return Ok(());
        }
        None if scorecard => vec![
            format!("DELETE FROM {s}.content_placements WHERE scorecard_id = $1"),
            format!("DELETE FROM {s}.content_shared WHERE scorecard_id = $1"),
            format!("DELETE FROM {s}.{table} WHERE {column} = $1"),
        ],
        None => vec![
            format!("DELETE FROM {s}.content_placements WHERE object_id = $1"),
            format!("DELETE FROM {s}.{table} WHERE {column} = $1"),
        ],
    };
    for sql in &statements {
        write(sql).bind(target).execute(&mut *conn).await?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_parents_with_sites_and_links_with_shares_conflict() {
        use Kind::*;
        let all = [
            Site,
            Parent,
            Scorecard,
            Object,
            Placement,
            Relationship,
            Link,
            Share,
        ];
        for a in all {
            for b in all {
                if a == b {
                    continue;
                }
                let expected = matches!(
                    (a, b),
                    (Site, Parent) | (Parent, Site) | (Link, Share) | (Share, Link)
                );
                assert_eq!(Kind::conflict(a, b), expected, "{a:?} {b:?}");
            }
        }
    }
}
