//! Where each projection is: [`ProjectionRuntime::status`] reads the
//! registry and the checkpoints (so it is right whichever process moved
//! them), then the head of the log (see "Position and lag" in the runtime's
//! module documentation).

use std::collections::BTreeMap;

use serde::Serialize;
use sqlx::Row;

use super::registry::{to_u32, to_u64};
use super::ProjectionRuntime;
use crate::ProjectionError;

/// Where one projection is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectionStatus {
    pub name: String,
    /// The version of the projection's code in this process.
    pub version: u32,
    /// The generation the views of `rm` show.
    pub live_generation: u32,
    /// The version of the code that built the live generation.
    pub live_version: u32,
    /// The position of the last event the live generation has applied.
    pub position: u64,
    /// The head of the log, read after the positions.
    pub head: u64,
    /// `head - position`.
    pub lag: u64,
    /// The generation being built beside the live one, if any.
    pub rebuild: Option<RebuildStatus>,
    /// What this process is doing with the projection.
    pub state: ProjectionState,
}

/// A generation being built beside the live one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct RebuildStatus {
    pub generation: u32,
    pub version: u32,
    pub position: u64,
    /// `head - position`.
    pub lag: u64,
}

/// What a runtime is doing with one projection.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", content = "error", rename_all = "snake_case")]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub enum ProjectionState {
    /// Following the log (the live generation, a rebuild, or both).
    Running,
    /// The live generation (and any rebuild) is of another version of the
    /// code, newer than this process's: this process leaves it alone.
    Superseded,
    /// Stopped by this error; the tables stay as last committed.
    Failed(String),
    /// Stopped by [`ProjectionRuntime::shutdown`].
    Stopped,
}

impl ProjectionRuntime {
    /// Where every projection is: positions from the registry and the
    /// checkpoints, then the head of the log.
    pub async fn status(&self) -> Result<Vec<ProjectionStatus>, ProjectionError> {
        let names: Vec<&str> = self.handles.iter().map(|h| h.ctx.name).collect();
        // The joins spell out `checkpoint_name`.
        let rows = sqlx::query(
            "SELECT p.name, p.live_generation, p.live_version, \
                    p.building_generation, p.building_version, \
                    lc.position AS live_position, bc.position AS building_position \
             FROM sl_projections p \
             LEFT JOIN sl_checkpoints lc \
                    ON lc.name = 'projection:' || p.name || ':g' || p.live_generation \
             LEFT JOIN sl_checkpoints bc \
                    ON bc.name = 'projection:' || p.name || ':g' || p.building_generation \
             WHERE p.name = ANY($1)",
        )
        .bind(&names)
        .fetch_all(self.store.pool())
        .await?;
        let head = self.store.head_position().await?;
        let mut by_name = BTreeMap::new();
        for row in rows {
            let name: String = row.try_get("name")?;
            by_name.insert(name, row);
        }
        let mut statuses = Vec::with_capacity(self.handles.len());
        for handle in &self.handles {
            let ctx = &handle.ctx;
            let Some(row) = by_name.get(ctx.name) else {
                return Err(ProjectionError::UnknownProjection(ctx.name.to_string()));
            };
            let position = to_u64(row.try_get::<Option<i64>, _>("live_position")?.unwrap_or(0));
            let building: Option<i32> = row.try_get("building_generation")?;
            let rebuild = match building {
                Some(generation) => {
                    let version: Option<i32> = row.try_get("building_version")?;
                    let at: Option<i64> = row.try_get("building_position")?;
                    let at = to_u64(at.unwrap_or(0));
                    Some(RebuildStatus {
                        generation: to_u32(generation),
                        version: to_u32(version.unwrap_or(0)),
                        position: at,
                        lag: head.saturating_sub(at),
                    })
                }
                None => None,
            };
            statuses.push(ProjectionStatus {
                name: ctx.name.to_string(),
                version: ctx.version,
                live_generation: to_u32(row.try_get("live_generation")?),
                live_version: to_u32(row.try_get("live_version")?),
                position,
                head,
                lag: head.saturating_sub(position),
                rebuild,
                state: ctx.progress.borrow().state.public(),
            });
        }
        Ok(statuses)
    }
}
