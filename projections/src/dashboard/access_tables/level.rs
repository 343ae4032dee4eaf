//! [`level_sql`]: the access model's level by one SQL query over the live
//! `rm.acc_*` views. SQL cannot call the one definition of the level
//! (`shareledger_core::access_rule::level`); the shared table of cases
//! (`core/tests/access_cases/`) holds this query to the same answers
//! (`projections/tests/access_cases.rs` runs it on real PostgreSQL).

use shareledger_core::catalog::{AccessLevel, UserId};
use sqlx::PgPool;

use crate::access::Target;
use crate::dashboard::level_of;
use crate::ProjectionError;

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
