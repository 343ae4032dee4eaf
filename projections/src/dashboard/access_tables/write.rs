//! Writing a run of ops of one kind with a few set-based statements (`unnest`
//! of arrays), and keeping the *shows on* closure (`acc_shows_on`) with
//! recursive walks down containers.

use std::collections::HashMap;

use sqlx::PgConnection;
use uuid::Uuid;

use super::ops::{Flags, Op, RelationshipRow};
use crate::dashboard::write;
use crate::ProjectionError;

/// Writes a run of ops of one kind.
pub(super) async fn write_run(
    conn: &mut PgConnection,
    s: &str,
    run: &[Op],
) -> Result<(), ProjectionError> {
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
            super::super::write_links(
                conn,
                &format!("{s}.acc_links"),
                &format!("{s}.acc_shared"),
                merged,
            )
            .await?;
        }
        Op::ScorecardArchived { .. } | Op::ObjectArchived { .. } => {
            for op in run {
                archive(conn, s, op).await?;
            }
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
            super::super::write_shares(conn, &format!("{s}.acc_shared"), merged).await?;
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

/// Deletes an archived scorecard's or object's rows.
async fn archive(conn: &mut PgConnection, s: &str, op: &Op) -> Result<(), ProjectionError> {
    let statements: Vec<(String, Uuid, Option<Uuid>)> = match op {
        Op::ScorecardArchived { scorecard, site } => vec![
            (
                format!("DELETE FROM {s}.acc_placements WHERE scorecard_id = $1"),
                *scorecard,
                None,
            ),
            (
                format!("DELETE FROM {s}.acc_shows_on WHERE scorecard_id = $1"),
                *scorecard,
                None,
            ),
            (
                format!("DELETE FROM {s}.acc_shared WHERE scorecard_id = $1"),
                *scorecard,
                None,
            ),
            (
                format!(
                    "DELETE FROM {s}.acc_assignments a USING {s}.acc_users u \
                     WHERE a.scorecard_id = $1 AND u.user_id = a.user_id AND u.site_id = $2"
                ),
                *scorecard,
                Some(*site),
            ),
            (
                format!("DELETE FROM {s}.acc_scorecards WHERE scorecard_id = $1"),
                *scorecard,
                None,
            ),
        ],
        Op::ObjectArchived { object } => vec![
            (
                format!("DELETE FROM {s}.acc_placements WHERE object_id = $1"),
                *object,
                None,
            ),
            (
                format!("DELETE FROM {s}.acc_shows_on WHERE object_id = $1"),
                *object,
                None,
            ),
            (
                format!("DELETE FROM {s}.acc_objects WHERE object_id = $1"),
                *object,
                None,
            ),
        ],
        _ => return Ok(()),
    };
    for (sql, id, site) in &statements {
        let query = write(sql).bind(id);
        match site {
            Some(site) => query.bind(site).execute(&mut *conn).await?,
            None => query.execute(&mut *conn).await?,
        };
    }
    Ok(())
}
