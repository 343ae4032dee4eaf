//! The runtime's SQL: the registry (`sl_projections`: which generation is
//! live, which is being built, of which versions), creating and dropping
//! generations (schema, tables, checkpoint), pointing the `rm` views at a
//! generation, and the checkpoints (see "Generations" and "Exactly-once
//! effects" in the runtime's module documentation).

use sqlx::{PgConnection, Row};

use super::progress::Ctx;
use super::{checkpoint_name, generation_schema};
use crate::projection::LIVE_SCHEMA;
use crate::ProjectionError;

/// A row of `sl_projections`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Registry {
    pub(super) live_generation: u32,
    pub(super) live_version: u32,
    pub(super) building: Option<Generation>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Generation {
    pub(super) number: u32,
    pub(super) version: u32,
}

/// Registers the projection or brings its registry row in line with this
/// code: creates generation 1 the first time; starts a rebuild when the
/// code's version is newer than the live one's, or when `explicit`
/// (replacing a rebuild of another version; joining one of this version).
pub(super) async fn register(ctx: &Ctx, explicit: bool) -> Result<Registry, ProjectionError> {
    let mut tx = ctx.store.pool().begin().await?;
    lock_registry(&mut tx, ctx.name).await?;
    let version = ctx.version;
    let registry = match read_registry(&mut tx, ctx.name).await? {
        None => {
            create_generation(&mut tx, ctx, 1).await?;
            point_views(&mut tx, None, &generation_schema(ctx.name, 1)).await?;
            let registry = Registry {
                live_generation: 1,
                live_version: version,
                building: None,
            };
            write_registry(&mut tx, ctx.name, &registry).await?;
            tracing::info!(
                projection = ctx.name,
                version,
                "projection registered: generation 1"
            );
            registry
        }
        Some(mut registry) => {
            if explicit || version > registry.live_version {
                let number = match registry.building {
                    Some(b) if b.version == version => None,
                    Some(b) if explicit || b.version < version => {
                        drop_generation(&mut tx, ctx.name, b.number).await?;
                        Some(b.number + 1)
                    }
                    Some(_) => None,
                    None => Some(registry.live_generation + 1),
                };
                if let Some(number) = number {
                    create_generation(&mut tx, ctx, number).await?;
                    registry.building = Some(Generation { number, version });
                    write_registry(&mut tx, ctx.name, &registry).await?;
                    tracing::info!(
                        projection = ctx.name,
                        generation = number,
                        version,
                        live_generation = registry.live_generation,
                        live_version = registry.live_version,
                        "rebuild started beside the live generation"
                    );
                }
            }
            registry
        }
    };
    tx.commit().await?;
    Ok(registry)
}

/// Serializes registry changes of projection `name` across processes.
pub(super) async fn lock_registry(conn: &mut PgConnection, name: &str) -> Result<(), sqlx::Error> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtext('sl_projections'), hashtext($1))")
        .bind(name)
        .execute(conn)
        .await?;
    Ok(())
}

pub(super) async fn read_registry(
    conn: &mut PgConnection,
    name: &str,
) -> Result<Option<Registry>, sqlx::Error> {
    let row = sqlx::query(
        "SELECT live_generation, live_version, building_generation, building_version \
         FROM sl_projections WHERE name = $1",
    )
    .bind(name)
    .fetch_optional(conn)
    .await?;
    let Some(row) = row else {
        return Ok(None);
    };
    let building: Option<i32> = row.try_get("building_generation")?;
    let building_version: Option<i32> = row.try_get("building_version")?;
    Ok(Some(Registry {
        live_generation: to_u32(row.try_get("live_generation")?),
        live_version: to_u32(row.try_get("live_version")?),
        building: building.zip(building_version).map(|(g, v)| Generation {
            number: to_u32(g),
            version: to_u32(v),
        }),
    }))
}

pub(super) async fn write_registry(
    conn: &mut PgConnection,
    name: &str,
    registry: &Registry,
) -> Result<(), sqlx::Error> {
    sqlx::query(
        "INSERT INTO sl_projections \
             (name, live_generation, live_version, building_generation, building_version) \
         VALUES ($1, $2, $3, $4, $5) \
         ON CONFLICT (name) DO UPDATE SET \
             live_generation = excluded.live_generation, \
             live_version = excluded.live_version, \
             building_generation = excluded.building_generation, \
             building_version = excluded.building_version, \
             updated_at = now()",
    )
    .bind(name)
    .bind(to_i32(registry.live_generation))
    .bind(to_i32(registry.live_version))
    .bind(registry.building.map(|b| to_i32(b.number)))
    .bind(registry.building.map(|b| to_i32(b.version)))
    .execute(conn)
    .await?;
    Ok(())
}

/// Creates generation `number`: its schema, its tables, its checkpoint at 0.
pub(super) async fn create_generation(
    conn: &mut PgConnection,
    ctx: &Ctx,
    number: u32,
) -> Result<(), ProjectionError> {
    let schema = generation_schema(ctx.name, number);
    sqlx::query(&format!("CREATE SCHEMA {}", quote_ident(&schema)))
        .execute(&mut *conn)
        .await?;
    ctx.projection.create_tables(&mut *conn, &schema).await?;
    sqlx::query("INSERT INTO sl_checkpoints (name, position) VALUES ($1, 0)")
        .bind(checkpoint_name(ctx.name, number))
        .execute(&mut *conn)
        .await?;
    Ok(())
}

/// Drops generation `number`: its checkpoint first (the row its batches
/// lock first, so that this cannot deadlock with one), then its schema.
pub(super) async fn drop_generation(
    conn: &mut PgConnection,
    name: &str,
    number: u32,
) -> Result<(), sqlx::Error> {
    sqlx::query("DELETE FROM sl_checkpoints WHERE name = $1")
        .bind(checkpoint_name(name, number))
        .execute(&mut *conn)
        .await?;
    let schema = generation_schema(name, number);
    sqlx::query(&format!(
        "DROP SCHEMA IF EXISTS {} CASCADE",
        quote_ident(&schema)
    ))
    .execute(&mut *conn)
    .await?;
    Ok(())
}

/// Points the views of `rm` at the tables of schema `new`: drops the views
/// over schema `old`, then creates `rm.<table>` for every table (and view)
/// of `new`.
pub(super) async fn point_views(
    conn: &mut PgConnection,
    old: Option<&str>,
    new: &str,
) -> Result<(), sqlx::Error> {
    if let Some(old) = old {
        let views: Vec<String> = sqlx::query_scalar(
            "SELECT DISTINCT v.relname::text FROM pg_depend d \
             JOIN pg_rewrite r ON r.oid = d.objid \
             JOIN pg_class v ON v.oid = r.ev_class \
             JOIN pg_class t ON t.oid = d.refobjid \
             WHERE d.classid = 'pg_rewrite'::regclass AND d.refclassid = 'pg_class'::regclass \
               AND v.relnamespace = $1::regnamespace AND t.relnamespace = $2::regnamespace \
               AND v.oid <> t.oid \
             ORDER BY 1",
        )
        .bind(LIVE_SCHEMA)
        .bind(old)
        .fetch_all(&mut *conn)
        .await?;
        for view in views {
            sqlx::query(&format!(
                "DROP VIEW {}.{}",
                quote_ident(LIVE_SCHEMA),
                quote_ident(&view)
            ))
            .execute(&mut *conn)
            .await?;
        }
    }
    let tables: Vec<String> = sqlx::query_scalar(
        "SELECT c.relname::text FROM pg_class c \
         WHERE c.relnamespace = $1::regnamespace \
           AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND NOT c.relispartition \
         ORDER BY 1",
    )
    .bind(new)
    .fetch_all(&mut *conn)
    .await?;
    for table in tables {
        sqlx::query(&format!(
            "CREATE VIEW {live}.{table} AS SELECT * FROM {new}.{table}",
            live = quote_ident(LIVE_SCHEMA),
            table = quote_ident(&table),
            new = quote_ident(new),
        ))
        .execute(&mut *conn)
        .await?;
    }
    Ok(())
}

pub(super) async fn read_checkpoint(
    conn: impl sqlx::PgExecutor<'_>,
    checkpoint: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM sl_checkpoints WHERE name = $1")
            .bind(checkpoint)
            .fetch_optional(conn)
            .await?;
    Ok(position.map(to_u64))
}

/// Locks a checkpoint row until the end of the transaction.
pub(super) async fn lock_checkpoint(
    conn: &mut PgConnection,
    checkpoint: &str,
) -> Result<Option<u64>, sqlx::Error> {
    let position: Option<i64> =
        sqlx::query_scalar("SELECT position FROM sl_checkpoints WHERE name = $1 FOR UPDATE")
            .bind(checkpoint)
            .fetch_optional(conn)
            .await?;
    Ok(position.map(to_u64))
}

pub(super) async fn save_checkpoint(
    conn: &mut PgConnection,
    checkpoint: &str,
    position: u64,
) -> Result<(), sqlx::Error> {
    sqlx::query("UPDATE sl_checkpoints SET position = $2, updated_at = now() WHERE name = $1")
        .bind(checkpoint)
        .bind(to_i64(position))
        .execute(conn)
        .await?;
    Ok(())
}

/// `name` as a quoted SQL identifier.
pub(super) fn quote_ident(name: &str) -> String {
    format!("\"{}\"", name.replace('"', "\"\""))
}

pub(super) fn to_u64(n: i64) -> u64 {
    u64::try_from(n).unwrap_or(0)
}

pub(super) fn to_i64(n: u64) -> i64 {
    i64::try_from(n).unwrap_or(i64::MAX)
}

pub(super) fn to_u32(n: i32) -> u32 {
    u32::try_from(n).unwrap_or(0)
}

pub(super) fn to_i32(n: u32) -> i32 {
    i32::try_from(n).unwrap_or(i32::MAX)
}
