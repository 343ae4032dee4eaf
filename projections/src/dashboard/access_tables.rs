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

use std::collections::HashMap;

use async_trait::async_trait;
use shareledger_core::catalog::{
    AccessLevel, ConnectionEvent, ContentEvent, Link, PermissionFlag, Permissions, SiteEvent,
    UserId,
};
use shareledger_events::RecordedEvent;
use sqlx::{PgConnection, PgPool};
use uuid::Uuid;

use super::schedule::Scheduler;
use super::Statistics;
use super::{level_code, level_of, quoted, snake, write};
use crate::access::Target;
use crate::decode::{decode, Decoded};
use crate::projection::SqlProjection;
use crate::ProjectionError;

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

/// The flags of the model: (all scorecards, instance admin, add/edit
/// scorecard objects).
type Flags = (bool, bool, bool);

fn flags(permissions: &Permissions) -> Flags {
    (
        permissions.contains(&PermissionFlag::AllScorecards),
        permissions.contains(&PermissionFlag::InstanceAdmin),
        permissions.contains(&PermissionFlag::AddEditScorecardObjects),
    )
}

/// The kinds of [`Op`]: each kind's ops are merged into runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    UserAdded,
    UserPatch,
    Access,
    ScorecardCreated,
    ObjectCreated,
    Placed,
    Removed,
    Relationship,
    Link,
    Share,
}

impl Kind {
    /// Whether ops of kinds `a` and `b` may not be swapped: placements and
    /// removals (of possibly the same pair); a link's (re)request or
    /// revocation and the shares over it (it empties its shared set).
    ///
    /// Everything else commutes. Object creations commute with placements
    /// and removals: a placement adds rows for the placed object and what
    /// `acc_objects` holds inside it, a removal recomputes the rows of what
    /// `acc_objects` holds inside the removed object, and a creation
    /// inherits the rows its ancestors have when it runs (new ancestors
    /// included); whichever runs first, the other completes the closure.
    /// (No statement reads `acc_scorecards`: rows carry their site.)
    /// Patches and levels of a user added in the same batch are folded into
    /// the pending addition ([`schedule`]).
    fn conflict(a: Kind, b: Kind) -> bool {
        use Kind::*;
        let pair = |x: Kind, y: Kind| (a == x && b == y) || (a == y && b == x);
        pair(Removed, Placed) || pair(Link, Share)
    }
}

/// Adds `op` to the scheduler, folding a patch or a level of a user added
/// in this batch into its pending addition.
fn schedule(scheduler: &mut Scheduler<Kind, Op>, op: Op) {
    let target = match &op {
        Op::UserPatch { user, .. } | Op::Access { user, .. } => Some(*user),
        _ => None,
    };
    if let Some(target) = target {
        let added = scheduler.pending_mut(Kind::UserAdded).and_then(|ops| {
            ops.iter_mut().rev().find(|o| match o {
                Op::UserAdded { user, .. } => *user == target,
                _ => false,
            })
        });
        if let Some(Op::UserAdded {
            flags,
            active,
            access,
            ..
        }) = added
        {
            match op {
                Op::UserPatch {
                    flags: new_flags,
                    active: new_active,
                    ..
                } => {
                    *flags = new_flags.unwrap_or(*flags);
                    *active = new_active.unwrap_or(*active);
                }
                Op::Access {
                    scorecard, level, ..
                } => {
                    access.retain(|(s, _)| *s != scorecard);
                    if let Some(level) = level {
                        access.push((scorecard, level));
                    }
                }
                _ => unreachable!("only patches and levels are folded"),
            }
            return;
        }
    }
    let kind = op.kind();
    scheduler.push(kind, op);
}

/// One change to the tables; runs of one kind are written by a few
/// statements (see [`write_run`]).
#[derive(Debug)]
enum Op {
    UserAdded {
        user: Uuid,
        site: Uuid,
        flags: Flags,
        active: bool,
        access: Vec<(Uuid, i16)>,
    },
    /// Flags and/or active changed; merged last-wins per user.
    UserPatch {
        user: Uuid,
        flags: Option<Flags>,
        active: Option<bool>,
    },
    /// A level set (`Some`) or removed (`None`); merged last-wins per key.
    Access {
        user: Uuid,
        scorecard: Uuid,
        level: Option<i16>,
    },
    ScorecardCreated {
        scorecard: Uuid,
        site: Uuid,
    },
    ObjectCreated {
        object: Uuid,
        site: Uuid,
        kind: String,
        container: Option<Uuid>,
    },
    Placed {
        object: Uuid,
        scorecard: Uuid,
        site: Uuid,
    },
    Removed {
        object: Uuid,
        scorecard: Uuid,
    },
    /// A relationship built (`Some`) or removed (`None`); last-wins per id.
    Relationship {
        id: Uuid,
        row: Option<RelationshipRow>,
    },
    /// A link's activity; `clears` empties its shared set. Merged per link:
    /// the last activity, and cleared if any op clears (no share can come
    /// between within a run).
    Link {
        from: Uuid,
        to: Uuid,
        active: bool,
        clears: bool,
    },
    /// A scorecard shared (`true`) or unshared; last-wins per key.
    Share {
        from: Uuid,
        to: Uuid,
        scorecard: Uuid,
        shared: bool,
    },
}

impl Op {
    fn kind(&self) -> Kind {
        match self {
            Op::UserAdded { .. } => Kind::UserAdded,
            Op::UserPatch { .. } => Kind::UserPatch,
            Op::Access { .. } => Kind::Access,
            Op::ScorecardCreated { .. } => Kind::ScorecardCreated,
            Op::ObjectCreated { .. } => Kind::ObjectCreated,
            Op::Placed { .. } => Kind::Placed,
            Op::Removed { .. } => Kind::Removed,
            Op::Relationship { .. } => Kind::Relationship,
            Op::Link { .. } => Kind::Link,
            Op::Share { .. } => Kind::Share,
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct RelationshipRow {
    site: Uuid,
    origin: Uuid,
    object: Uuid,
    target_scorecard: Option<Uuid>,
    target_object: Option<Uuid>,
}

fn link_ops(links: &[Link], active: bool, clears: bool, ops: &mut Vec<Op>) {
    ops.extend(links.iter().map(|l| Op::Link {
        from: l.from.0,
        to: l.to.0,
        active,
        clears,
    }));
}

/// The ops of one decoded event.
fn ops_of(decoded: Decoded, ops: &mut Vec<Op>) {
    match decoded {
        Decoded::Site { site, event } => match event {
            SiteEvent::UserAdded {
                user,
                scorecard_access,
                ..
            } => ops.push(Op::UserAdded {
                user: user.user_id.0,
                site: site.0,
                flags: flags(&user.permissions),
                active: true,
                access: scorecard_access
                    .iter()
                    .map(|(s, l)| (s.0, level_code(*l)))
                    .collect(),
            }),
            SiteEvent::UserRoleChanged {
                user_id,
                permissions,
                ..
            }
            | SiteEvent::UserPermissionsSet {
                user_id,
                permissions,
            } => ops.push(Op::UserPatch {
                user: user_id.0,
                flags: Some(flags(&permissions)),
                active: None,
            }),
            SiteEvent::UserDeactivated { user_id } => ops.push(Op::UserPatch {
                user: user_id.0,
                flags: None,
                active: Some(false),
            }),
            SiteEvent::UserReactivated { user_id } => ops.push(Op::UserPatch {
                user: user_id.0,
                flags: None,
                active: Some(true),
            }),
            SiteEvent::ScorecardAccessGranted {
                user_id,
                scorecard_id,
                level,
            } => ops.push(Op::Access {
                user: user_id.0,
                scorecard: scorecard_id.0,
                level: Some(level_code(level)),
            }),
            SiteEvent::ScorecardAccessRevoked {
                user_id,
                scorecard_id,
            } => ops.push(Op::Access {
                user: user_id.0,
                scorecard: scorecard_id.0,
                level: None,
            }),
            SiteEvent::SiteRegistered { .. }
            | SiteEvent::SeatLimitSet { .. }
            | SiteEvent::ParentSiteSet { .. }
            | SiteEvent::SelfRegistrationConfigured { .. }
            | SiteEvent::TwoFactorRequirementSet { .. }
            | SiteEvent::OrganizationSettingsHiddenSet { .. } => {}
        },
        Decoded::Content { site, event } => match event {
            ContentEvent::ScorecardCreated { scorecard_id, .. } => ops.push(Op::ScorecardCreated {
                scorecard: scorecard_id.0,
                site: site.0,
            }),
            ContentEvent::ObjectCreated {
                object_id,
                kind,
                container,
                ..
            } => ops.push(Op::ObjectCreated {
                object: object_id.0,
                site: site.0,
                kind: snake(&kind),
                container: container.map(|c| c.0),
            }),
            ContentEvent::ObjectPlacedOnScorecard {
                object_id,
                scorecard_id,
            } => ops.push(Op::Placed {
                object: object_id.0,
                scorecard: scorecard_id.0,
                site: site.0,
            }),
            ContentEvent::ObjectRemovedFromScorecard {
                object_id,
                scorecard_id,
            } => ops.push(Op::Removed {
                object: object_id.0,
                scorecard: scorecard_id.0,
            }),
            ContentEvent::SharedObjectLinked {
                relationship_id,
                scorecard_id,
                origin_site,
                object_id,
            } => ops.push(Op::Relationship {
                id: relationship_id.0,
                row: Some(RelationshipRow {
                    site: site.0,
                    origin: origin_site.0,
                    object: object_id.0,
                    target_scorecard: Some(scorecard_id.0),
                    target_object: None,
                }),
            }),
            ContentEvent::SharedMeasureAggregated {
                relationship_id,
                into_object,
                origin_site,
                object_id,
            } => ops.push(Op::Relationship {
                id: relationship_id.0,
                row: Some(RelationshipRow {
                    site: site.0,
                    origin: origin_site.0,
                    object: object_id.0,
                    target_scorecard: None,
                    target_object: Some(into_object.0),
                }),
            }),
            ContentEvent::RelationshipRemoved {
                relationship_id, ..
            } => ops.push(Op::Relationship {
                id: relationship_id.0,
                row: None,
            }),
            ContentEvent::ObjectFieldUpdated { .. } | ContentEvent::ObjectFieldEdited { .. } => {}
        },
        Decoded::Connection(event) => match event {
            ConnectionEvent::ConnectionRequested { links, .. } => {
                link_ops(&links, false, true, ops)
            }
            ConnectionEvent::LinksActivated { links, .. } => link_ops(&links, true, false, ops),
            ConnectionEvent::ConnectionDenied { links, .. }
            | ConnectionEvent::ConnectionRequestCancelled { links, .. } => {
                link_ops(&links, false, false, ops)
            }
            ConnectionEvent::LinkRevoked { link, .. } => link_ops(&[link], false, true, ops),
            ConnectionEvent::ScorecardShared { link, scorecard_id } => ops.push(Op::Share {
                from: link.from.0,
                to: link.to.0,
                scorecard: scorecard_id.0,
                shared: true,
            }),
            ConnectionEvent::ScorecardUnshared {
                link, scorecard_id, ..
            } => ops.push(Op::Share {
                from: link.from.0,
                to: link.to.0,
                scorecard: scorecard_id.0,
                shared: false,
            }),
        },
        Decoded::SiteCode(_) => {}
    }
}

/// Writes a run of ops of one kind.
async fn write_run(conn: &mut PgConnection, s: &str, run: &[Op]) -> Result<(), ProjectionError> {
    match &run[0] {
        Op::UserAdded { .. } => {
            let (mut users, mut sites, mut actives) = (vec![], vec![], vec![]);
            let (mut all, mut admin, mut add_edit) = (vec![], vec![], vec![]);
            let (mut a_users, mut a_scorecards, mut a_levels) = (vec![], vec![], vec![]);
            for op in run {
                if let Op::UserAdded {
                    user,
                    site,
                    flags,
                    active,
                    access,
                } = op
                {
                    users.push(*user);
                    sites.push(*site);
                    actives.push(*active);
                    all.push(flags.0);
                    admin.push(flags.1);
                    add_edit.push(flags.2);
                    for (scorecard, level) in access {
                        a_users.push(*user);
                        a_scorecards.push(*scorecard);
                        a_levels.push(*level);
                    }
                }
            }
            write(&format!(
                "INSERT INTO {s}.acc_users (user_id, site_id, active, all_scorecards, \
                   instance_admin, add_edit_scorecard_objects) \
                 SELECT v.user_id, v.site_id, v.active, v.all_scorecards, v.instance_admin, \
                   v.add_edit \
                 FROM unnest($1::uuid[], $2::uuid[], $3::bool[], $4::bool[], $5::bool[], \
                   $6::bool[]) AS v(user_id, site_id, all_scorecards, instance_admin, add_edit, \
                   active)"
            ))
            .bind(users)
            .bind(sites)
            .bind(all)
            .bind(admin)
            .bind(add_edit)
            .bind(actives)
            .execute(&mut *conn)
            .await?;
            if !a_users.is_empty() {
                write(&format!(
                    "INSERT INTO {s}.acc_assignments (user_id, scorecard_id, level) \
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int2[])"
                ))
                .bind(a_users)
                .bind(a_scorecards)
                .bind(a_levels)
                .execute(&mut *conn)
                .await?;
            }
        }
        Op::UserPatch { .. } => {
            let mut merged: HashMap<Uuid, (Option<Flags>, Option<bool>)> = HashMap::new();
            for op in run {
                if let Op::UserPatch {
                    user,
                    flags,
                    active,
                } = op
                {
                    let entry = merged.entry(*user).or_default();
                    entry.0 = flags.or(entry.0);
                    entry.1 = active.or(entry.1);
                }
            }
            let mut users = Vec::with_capacity(merged.len());
            let (mut all, mut admin, mut add_edit, mut active) = (vec![], vec![], vec![], vec![]);
            for (user, (flags, act)) in merged {
                users.push(user);
                all.push(flags.map(|f| f.0));
                admin.push(flags.map(|f| f.1));
                add_edit.push(flags.map(|f| f.2));
                active.push(act);
            }
            write(&format!(
                "UPDATE {s}.acc_users u SET \
                   all_scorecards = COALESCE(v.all_scorecards, u.all_scorecards), \
                   instance_admin = COALESCE(v.instance_admin, u.instance_admin), \
                   add_edit_scorecard_objects = COALESCE(v.add_edit, u.add_edit_scorecard_objects), \
                   active = COALESCE(v.active, u.active) \
                 FROM unnest($1::uuid[], $2::bool[], $3::bool[], $4::bool[], $5::bool[]) \
                   AS v(user_id, all_scorecards, instance_admin, add_edit, active) \
                 WHERE u.user_id = v.user_id"
            ))
            .bind(users)
            .bind(all)
            .bind(admin)
            .bind(add_edit)
            .bind(active)
            .execute(&mut *conn)
            .await?;
        }
        Op::Access { .. } => {
            let mut merged: HashMap<(Uuid, Uuid), Option<i16>> = HashMap::new();
            for op in run {
                if let Op::Access {
                    user,
                    scorecard,
                    level,
                } = op
                {
                    merged.insert((*user, *scorecard), *level);
                }
            }
            let (mut set_u, mut set_s, mut set_l) = (vec![], vec![], vec![]);
            let (mut del_u, mut del_s) = (vec![], vec![]);
            for ((user, scorecard), level) in merged {
                match level {
                    Some(level) => {
                        set_u.push(user);
                        set_s.push(scorecard);
                        set_l.push(level);
                    }
                    None => {
                        del_u.push(user);
                        del_s.push(scorecard);
                    }
                }
            }
            if !set_u.is_empty() {
                write(&format!(
                    "INSERT INTO {s}.acc_assignments (user_id, scorecard_id, level) \
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::int2[]) \
                     ON CONFLICT (user_id, scorecard_id) DO UPDATE SET level = EXCLUDED.level"
                ))
                .bind(set_u)
                .bind(set_s)
                .bind(set_l)
                .execute(&mut *conn)
                .await?;
            }
            if !del_u.is_empty() {
                write(&format!(
                    "DELETE FROM {s}.acc_assignments a \
                     USING unnest($1::uuid[], $2::uuid[]) AS v(user_id, scorecard_id) \
                     WHERE a.user_id = v.user_id AND a.scorecard_id = v.scorecard_id"
                ))
                .bind(del_u)
                .bind(del_s)
                .execute(&mut *conn)
                .await?;
            }
        }
        Op::ScorecardCreated { .. } => {
            let (mut ids, mut sites) = (vec![], vec![]);
            for op in run {
                if let Op::ScorecardCreated { scorecard, site } = op {
                    ids.push(*scorecard);
                    sites.push(*site);
                }
            }
            write(&format!(
                "INSERT INTO {s}.acc_scorecards (scorecard_id, site_id) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[])"
            ))
            .bind(ids)
            .bind(sites)
            .execute(&mut *conn)
            .await?;
        }
        Op::ObjectCreated { .. } => {
            let (mut ids, mut sites, mut kinds, mut containers) = (vec![], vec![], vec![], vec![]);
            for op in run {
                if let Op::ObjectCreated {
                    object,
                    site,
                    kind,
                    container,
                } = op
                {
                    ids.push(*object);
                    sites.push(*site);
                    kinds.push(kind.clone());
                    containers.push(*container);
                }
            }
            // A new object shows where its container shows: it inherits the
            // rows of its ancestors up to the nearest one that existed before
            // the run (that one's rows hold the closure above it; the new ones
            // have rows only if a placement of this batch ran first). The
            // (object, ancestor) pairs are found here, so that the statement
            // is a join on exactly known keys.
            let container_of: HashMap<Uuid, Option<Uuid>> = ids
                .iter()
                .copied()
                .zip(containers.iter().copied())
                .collect();
            let (mut heirs, mut ancestors) = (vec![], vec![]);
            for (object, container) in ids.iter().zip(&containers) {
                let mut next = *container;
                while let Some(ancestor) = next {
                    heirs.push(*object);
                    ancestors.push(ancestor);
                    next = container_of.get(&ancestor).copied().flatten();
                }
            }
            write(&format!(
                "INSERT INTO {s}.acc_objects (object_id, site_id, kind, container) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::text[], $4::uuid[])"
            ))
            .bind(&ids)
            .bind(sites)
            .bind(kinds)
            .bind(&containers)
            .execute(&mut *conn)
            .await?;
            if !heirs.is_empty() {
                write(&format!(
                    "INSERT INTO {s}.acc_shows_on (object_id, scorecard_id, site_id) \
                     SELECT v.object_id, so.scorecard_id, so.site_id \
                     FROM unnest($1::uuid[], $2::uuid[]) AS v(object_id, ancestor) \
                     JOIN {s}.acc_shows_on so ON so.object_id = v.ancestor \
                     ON CONFLICT DO NOTHING"
                ))
                .bind(heirs)
                .bind(ancestors)
                .execute(&mut *conn)
                .await?;
            }
        }
        Op::Placed { .. } => {
            let (mut objects, mut scorecards, mut sites) = (vec![], vec![], vec![]);
            for op in run {
                if let Op::Placed {
                    object,
                    scorecard,
                    site,
                } = op
                {
                    objects.push(*object);
                    scorecards.push(*scorecard);
                    sites.push(*site);
                }
            }
            write(&format!(
                "INSERT INTO {s}.acc_placements (object_id, scorecard_id, site_id) \
                 SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) ON CONFLICT DO NOTHING"
            ))
            .bind(&objects)
            .bind(&scorecards)
            .bind(&sites)
            .execute(&mut *conn)
            .await?;
            // The placed objects and everything inside them show on the scorecard.
            let inside = children(s, "down");
            write(&format!(
                "WITH RECURSIVE down (object_id, scorecard_id, site_id) AS ( \
                   SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[]) \
                   UNION \
                   SELECT o.object_id, down.scorecard_id, down.site_id FROM down, \
                   {inside} o) \
                 INSERT INTO {s}.acc_shows_on (object_id, scorecard_id, site_id) \
                 SELECT * FROM down ON CONFLICT DO NOTHING"
            ))
            .bind(objects)
            .bind(scorecards)
            .bind(sites)
            .execute(&mut *conn)
            .await?;
        }
        Op::Removed { .. } => {
            let (mut objects, mut scorecards) = (vec![], vec![]);
            for op in run {
                if let Op::Removed { object, scorecard } = op {
                    objects.push(*object);
                    scorecards.push(*scorecard);
                }
            }
            write(&format!(
                "DELETE FROM {s}.acc_placements p \
                 USING unnest($1::uuid[], $2::uuid[]) AS v(object_id, scorecard_id) \
                 WHERE p.object_id = v.object_id AND p.scorecard_id = v.scorecard_id"
            ))
            .bind(&objects)
            .bind(&scorecards)
            .execute(&mut *conn)
            .await?;
            recompute_shows_on(conn, s, &objects, &scorecards).await?;
        }
        Op::Relationship { .. } => {
            let mut merged: HashMap<Uuid, Option<RelationshipRow>> = HashMap::new();
            for op in run {
                if let Op::Relationship { id, row } = op {
                    merged.insert(*id, *row);
                }
            }
            let (mut ids, mut sites, mut origins, mut objects, mut t_sc, mut t_obj) =
                (vec![], vec![], vec![], vec![], vec![], vec![]);
            let mut removed = vec![];
            for (id, row) in merged {
                match row {
                    Some(r) => {
                        ids.push(id);
                        sites.push(r.site);
                        origins.push(r.origin);
                        objects.push(r.object);
                        t_sc.push(r.target_scorecard);
                        t_obj.push(r.target_object);
                    }
                    None => removed.push(id),
                }
            }
            if !ids.is_empty() {
                write(&format!(
                    "INSERT INTO {s}.acc_relationships (relationship_id, site_id, origin_site, \
                       object_id, target_scorecard, target_object) \
                     SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::uuid[], \
                       $5::uuid[], $6::uuid[]) \
                     ON CONFLICT (relationship_id) DO NOTHING"
                ))
                .bind(ids)
                .bind(sites)
                .bind(origins)
                .bind(objects)
                .bind(t_sc)
                .bind(t_obj)
                .execute(&mut *conn)
                .await?;
            }
            if !removed.is_empty() {
                write(&format!(
                    "DELETE FROM {s}.acc_relationships WHERE relationship_id = ANY($1::uuid[])"
                ))
                .bind(removed)
                .execute(&mut *conn)
                .await?;
            }
        }
        Op::Link { .. } => {
            let mut merged: HashMap<(Uuid, Uuid), (bool, bool)> = HashMap::new();
            for op in run {
                if let Op::Link {
                    from,
                    to,
                    active,
                    clears,
                } = op
                {
                    let entry = merged.entry((*from, *to)).or_insert((*active, false));
                    entry.0 = *active;
                    entry.1 |= *clears;
                }
            }
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
                 cleared AS (DELETE FROM {s}.acc_shared sh USING v \
                   WHERE v.clears AND sh.from_site = v.from_site AND sh.to_site = v.to_site) \
                 INSERT INTO {s}.acc_links (from_site, to_site, active) \
                 SELECT from_site, to_site, active FROM v \
                 ON CONFLICT (from_site, to_site) DO UPDATE SET active = EXCLUDED.active"
            ))
            .bind(froms)
            .bind(tos)
            .bind(actives)
            .bind(clears)
            .execute(&mut *conn)
            .await?;
        }
        Op::Share { .. } => {
            let mut merged: HashMap<(Uuid, Uuid, Uuid), bool> = HashMap::new();
            for op in run {
                if let Op::Share {
                    from,
                    to,
                    scorecard,
                    shared,
                } = op
                {
                    merged.insert((*from, *to, *scorecard), *shared);
                }
            }
            let (mut froms, mut tos, mut scorecards, mut shared) = (vec![], vec![], vec![], vec![]);
            for ((from, to, scorecard), is_shared) in merged {
                froms.push(from);
                tos.push(to);
                scorecards.push(scorecard);
                shared.push(is_shared);
            }
            // Keys are distinct: the delete and the insert commute.
            write(&format!(
                "WITH v AS (SELECT * FROM unnest($1::uuid[], $2::uuid[], $3::uuid[], $4::bool[]) \
                   AS v(from_site, to_site, scorecard_id, shared)), \
                 unshared AS (DELETE FROM {s}.acc_shared sh USING v \
                   WHERE NOT v.shared AND sh.from_site = v.from_site AND sh.to_site = v.to_site \
                     AND sh.scorecard_id = v.scorecard_id) \
                 INSERT INTO {s}.acc_shared (from_site, to_site, scorecard_id) \
                 SELECT from_site, to_site, scorecard_id FROM v WHERE v.shared \
                 ON CONFLICT DO NOTHING"
            ))
            .bind(froms)
            .bind(tos)
            .bind(scorecards)
            .bind(shared)
            .execute(&mut *conn)
            .await?;
        }
    }
    Ok(())
}

/// The objects directly inside `outer.object_id`, for the recursive step of
/// a walk down containers: a lateral subquery the planner cannot flatten,
/// so each step is an index lookup. (Joined plainly, the planner, which
/// cannot estimate a recursive CTE's size, hashes all of `acc_objects` for
/// every walk: a rebuild would slow down as the table grows.)
fn children(s: &str, outer: &str) -> String {
    format!(
        "LATERAL (SELECT c.object_id FROM {s}.acc_objects c \
         WHERE c.container = {outer}.object_id OFFSET 0)"
    )
}

/// After the placements `(objects[i], scorecards[i])` were removed:
/// recomputes, with recursive CTEs, the `acc_shows_on` rows those removals
/// can change, and only those.
///
/// The rows that can change are `(Y, S)` for `Y` inside a removed `X`
/// (or `X` itself) and `S` its scorecard: the *affected* set, closed
/// downwards. Every other row still has the placement it came from. An
/// affected `Y` still shows on `S` when an ancestor-or-self `W` of it is
/// placed on `S`: if `W` is affected, `W` is a root; otherwise the first
/// affected object on the way from `W` down to `Y` is a removed `X` whose
/// container (not affected, so its row is intact) shows on `S`, and `X` is a
/// root. So: delete the affected rows, then add the roots and what is
/// inside them. The cost follows the removed objects' subtrees, not the
/// size of the scorecards.
async fn recompute_shows_on(
    conn: &mut PgConnection,
    s: &str,
    objects: &[Uuid],
    scorecards: &[Uuid],
) -> Result<(), ProjectionError> {
    // The affected pairs are fetched, then used as exactly known keys: the
    // planner cannot estimate a recursive CTE's size and would otherwise
    // scan `acc_shows_on` whole to join it.
    let inside = children(s, "a");
    let affected: Vec<(Uuid, Uuid)> = sqlx::query_as(&format!(
        "WITH RECURSIVE affected (object_id, scorecard_id) AS ( \
           SELECT * FROM unnest($1::uuid[], $2::uuid[]) \
           UNION \
           SELECT o.object_id, a.scorecard_id FROM affected a, \
           {inside} o) \
         SELECT object_id, scorecard_id FROM affected"
    ))
    .bind(objects)
    .bind(scorecards)
    .persistent(false)
    .fetch_all(&mut *conn)
    .await?;
    let (affected_objects, affected_scorecards): (Vec<Uuid>, Vec<Uuid>) =
        affected.into_iter().unzip();
    write(&format!(
        "DELETE FROM {s}.acc_shows_on so \
         USING unnest($1::uuid[], $2::uuid[]) AS a(object_id, scorecard_id) \
         WHERE so.object_id = a.object_id AND so.scorecard_id = a.scorecard_id"
    ))
    .bind(&affected_objects)
    .bind(&affected_scorecards)
    .execute(&mut *conn)
    .await?;
    let inside = children(s, "d");
    write(&format!(
        "WITH RECURSIVE roots (object_id, scorecard_id, site_id) AS ( \
           SELECT a.object_id, a.scorecard_id, p.site_id \
           FROM unnest($1::uuid[], $2::uuid[]) AS a(object_id, scorecard_id) \
           JOIN {s}.acc_placements p \
             ON p.scorecard_id = a.scorecard_id AND p.object_id = a.object_id \
           UNION \
           SELECT r.object_id, r.scorecard_id, so.site_id \
           FROM unnest($3::uuid[], $4::uuid[]) AS r(object_id, scorecard_id) \
           JOIN {s}.acc_objects o ON o.object_id = r.object_id \
           JOIN {s}.acc_shows_on so \
             ON so.object_id = o.container AND so.scorecard_id = r.scorecard_id), \
         down (object_id, scorecard_id, site_id) AS ( \
           SELECT * FROM roots \
           UNION \
           SELECT o.object_id, d.scorecard_id, d.site_id FROM down d, \
           {inside} o) \
         INSERT INTO {s}.acc_shows_on (object_id, scorecard_id, site_id) \
         SELECT * FROM down \
         ON CONFLICT DO NOTHING"
    ))
    .bind(&affected_objects)
    .bind(&affected_scorecards)
    .bind(objects)
    .bind(scorecards)
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// The level of the access model (`docs/access-model.md`) of `user` on
/// `target`, computed by one SQL query over the live `rm.acc_*` views:
/// `None` when the user has no access. Unknown users and targets are errors
/// ([`ProjectionError::UnknownUser`], [`ProjectionError::UnknownTarget`]),
/// as for Q-1.
pub async fn level_sql(
    pool: &PgPool,
    user: UserId,
    target: Target,
) -> Result<Option<AccessLevel>, ProjectionError> {
    let (scorecard, object) = match target {
        Target::Scorecard(id) => (Some(id.0), None),
        Target::Object(id) => (None, Some(id.0)),
    };
    let (user_known, target_known, level): (bool, bool, Option<i16>) = sqlx::query_as(LEVEL_SQL)
        .bind(user.0)
        .bind(scorecard)
        .bind(object)
        .fetch_one(pool)
        .await?;
    if !user_known {
        return Err(ProjectionError::UnknownUser(user));
    }
    if !target_known {
        return Err(ProjectionError::UnknownTarget(target));
    }
    level.map(level_of).transpose()
}

/// `$1` user, `$2` scorecard or `$3` object (the other is null). Every step
/// is a primary-key or index lookup.
///
/// * `u`: the user, with `browse_all` (All Scorecards, or Add/Edit
///   Scorecard Objects with none of its own site's scorecards assigned).
/// * `t`: the target's owner site.
/// * `anc`: the object and its containers, transitively (for relationships
///   built on a container of the object).
/// * `seen(A, B, X)` is spelled out where used: `X` shows on a scorecard
///   shared over the active link `A → B`.
const LEVEL_SQL: &str = r#"
WITH RECURSIVE
u AS (
    SELECT u.site_id, u.active, u.all_scorecards, u.instance_admin,
           u.all_scorecards OR (u.add_edit_scorecard_objects AND NOT EXISTS (
               SELECT 1 FROM rm.acc_assignments a
               JOIN rm.acc_scorecards sc ON sc.scorecard_id = a.scorecard_id
               WHERE a.user_id = $1 AND sc.site_id = u.site_id)) AS browse_all
    FROM rm.acc_users u
    WHERE u.user_id = $1
),
t AS (
    SELECT site_id FROM rm.acc_scorecards WHERE scorecard_id = $2::uuid
    UNION ALL
    SELECT site_id FROM rm.acc_objects WHERE object_id = $3::uuid
),
anc (object_id, container) AS (
    SELECT object_id, container FROM rm.acc_objects WHERE object_id = $3::uuid
    UNION ALL
    SELECT o.object_id, o.container FROM rm.acc_objects o
    JOIN anc ON o.object_id = anc.container
)
SELECT
    EXISTS (SELECT 1 FROM u) AS user_known,
    EXISTS (SELECT 1 FROM t) AS target_known,
    (SELECT (CASE
        WHEN NOT u.active THEN NULL
        -- Own scorecard.
        WHEN t.site_id = u.site_id AND $2::uuid IS NOT NULL THEN
            CASE WHEN u.instance_admin THEN 3
            ELSE COALESCE(
                (SELECT a.level FROM rm.acc_assignments a
                 WHERE a.user_id = $1 AND a.scorecard_id = $2::uuid),
                CASE WHEN u.browse_all THEN 0 END)
            END
        -- Own object.
        WHEN t.site_id = u.site_id THEN
            CASE WHEN u.instance_admin AND (u.all_scorecards OR EXISTS (
                    SELECT 1 FROM rm.acc_shows_on so WHERE so.object_id = $3::uuid)) THEN 3
            ELSE COALESCE(
                (SELECT max(a.level) FROM rm.acc_shows_on so
                 JOIN rm.acc_assignments a
                   ON a.user_id = $1 AND a.scorecard_id = so.scorecard_id
                 WHERE so.object_id = $3::uuid),
                CASE WHEN u.all_scorecards OR (u.browse_all AND EXISTS (
                    SELECT 1 FROM rm.acc_shows_on so WHERE so.object_id = $3::uuid)) THEN 0 END)
            END
        -- A partner's scorecard: Browser at most.
        WHEN $2::uuid IS NOT NULL THEN
            CASE WHEN EXISTS (
                    SELECT 1 FROM rm.acc_shared sh
                    JOIN rm.acc_links l ON l.from_site = sh.from_site
                      AND l.to_site = sh.to_site AND l.active
                    WHERE sh.from_site = t.site_id AND sh.to_site = u.site_id
                      AND sh.scorecard_id = $2::uuid)
                AND (u.all_scorecards OR EXISTS (
                    SELECT 1 FROM rm.acc_assignments a
                    WHERE a.user_id = $1 AND a.scorecard_id = $2::uuid))
            THEN 0 END
        -- A partner's object: Browser at most, when the user's site sees it.
        ELSE
            CASE WHEN EXISTS (
                    SELECT 1 FROM rm.acc_shows_on so
                    JOIN rm.acc_shared sh ON sh.from_site = t.site_id
                      AND sh.to_site = u.site_id AND sh.scorecard_id = so.scorecard_id
                    JOIN rm.acc_links l ON l.from_site = t.site_id
                      AND l.to_site = u.site_id AND l.active
                    WHERE so.object_id = $3::uuid)
                AND (
                    u.all_scorecards
                    -- A shared scorecard it shows on is assigned to the user.
                    OR EXISTS (
                        SELECT 1 FROM rm.acc_shows_on so
                        JOIN rm.acc_shared sh ON sh.from_site = t.site_id
                          AND sh.to_site = u.site_id AND sh.scorecard_id = so.scorecard_id
                        JOIN rm.acc_links l ON l.from_site = t.site_id
                          AND l.to_site = u.site_id AND l.active
                        JOIN rm.acc_assignments a
                          ON a.user_id = $1 AND a.scorecard_id = so.scorecard_id
                        WHERE so.object_id = $3::uuid)
                    -- A relationship of the user's site on the object or a
                    -- container of it, whose object the site still sees, to
                    -- a scorecard or object of its own the user has a level on.
                    -- (OFFSET 0: relationships are looked up per object
                    -- of the chain, and checked one by one; never by
                    -- hashing a site's relationships or the objects of
                    -- its shared scorecards.)
                    OR EXISTS (
                        SELECT 1 FROM anc,
                        LATERAL (SELECT * FROM rm.acc_relationships r
                                 WHERE r.object_id = anc.object_id AND r.site_id = u.site_id
                                 OFFSET 0) r
                        WHERE EXISTS (
                                SELECT 1 FROM rm.acc_shows_on so
                                JOIN rm.acc_shared sh ON sh.from_site = t.site_id
                                  AND sh.to_site = u.site_id
                                  AND sh.scorecard_id = so.scorecard_id
                                JOIN rm.acc_links l ON l.from_site = t.site_id
                                  AND l.to_site = u.site_id AND l.active
                                WHERE so.object_id = r.object_id
                                OFFSET 0)
                          AND (
                            (r.target_scorecard IS NOT NULL AND (
                                u.instance_admin OR u.browse_all OR EXISTS (
                                    SELECT 1 FROM rm.acc_assignments a
                                    WHERE a.user_id = $1
                                      AND a.scorecard_id = r.target_scorecard)))
                            OR (r.target_object IS NOT NULL AND EXISTS (
                                SELECT 1 FROM rm.acc_shows_on so
                                WHERE so.object_id = r.target_object
                                  AND (u.instance_admin OR u.browse_all OR EXISTS (
                                    SELECT 1 FROM rm.acc_assignments a
                                    WHERE a.user_id = $1
                                      AND a.scorecard_id = so.scorecard_id))))
                          ))
                )
            THEN 0 END
    END)::smallint
    FROM u, t) AS level
"#;
