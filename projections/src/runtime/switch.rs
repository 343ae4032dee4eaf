//! The switch from the live generation to the one rebuilt beside it, in one
//! transaction, once the new one has caught up (see "The switch" in the
//! runtime's module documentation).

use shareledger_events::store::{PgEventStore, PositionFrom};
use shareledger_events::{Direction, RecordedEvent};

use super::registry::{
    drop_generation, lock_checkpoint, lock_registry, point_views, read_checkpoint, read_registry,
    save_checkpoint, write_registry, Registry,
};
use super::supervisor::Supervisor;
use super::{checkpoint_name, generation_schema};
use crate::ProjectionError;

/// How many times a switch re-reads the events its new generation lacks
/// before waiting for the next batch to try again.
pub(super) const SWITCH_ATTEMPTS: usize = 3;

impl Supervisor {
    /// Switches the views to the generation being built, which has caught
    /// up (see "The switch" in the runtime's module documentation).
    pub(super) async fn switch(&mut self) -> Result<(), ProjectionError> {
        let Some(building) = self.registry.building else {
            return Ok(());
        };
        let ctx = self.ctx.clone();
        let old = self.registry.live_generation;
        let (old_schema, new_schema) = (
            generation_schema(ctx.name, old),
            generation_schema(ctx.name, building.number),
        );
        let (old_checkpoint, new_checkpoint) = (
            checkpoint_name(ctx.name, old),
            checkpoint_name(ctx.name, building.number),
        );
        let batch = ctx.options.batch_size;
        for attempt in 1..=SWITCH_ATTEMPTS {
            // The events the new generation may still lack, read without
            // holding any lock.
            let Some(from) = read_checkpoint(ctx.store.pool(), &new_checkpoint).await? else {
                return self.reread_registry().await;
            };
            let head = ctx.store.head_position().await?;
            let pending = read_range(&ctx.store, from, head, batch).await?;

            let mut tx = ctx.store.pool().begin().await?;
            lock_registry(&mut tx, ctx.name).await?;
            if read_registry(&mut tx, ctx.name).await? != Some(self.registry) {
                tx.rollback().await?;
                return self.reread_registry().await;
            }
            let old_position = lock_checkpoint(&mut tx, &old_checkpoint)
                .await?
                .unwrap_or(0);
            let Some(new_position) = lock_checkpoint(&mut tx, &new_checkpoint).await? else {
                tx.rollback().await?;
                return self.reread_registry().await;
            };
            let reached = pending.last().map_or(from, |e| e.global_position);
            if old_position > reached.max(new_position) {
                // The old generation applied events committed after `head`
                // was read: read again (its checkpoint moves on meanwhile).
                tx.rollback().await?;
                tracing::debug!(projection = ctx.name, attempt, "switch: reading further");
                continue;
            }
            let missing = pending
                .iter()
                .position(|e| e.global_position > new_position)
                .map_or(&pending[..0], |start| &pending[start..]);
            for chunk in missing.chunks(batch) {
                ctx.projection.apply(&mut tx, &new_schema, chunk).await?;
            }
            let position = new_position.max(reached);
            save_checkpoint(&mut tx, &new_checkpoint, position).await?;
            point_views(&mut tx, Some(&old_schema), &new_schema).await?;
            let registry = Registry {
                live_generation: building.number,
                live_version: building.version,
                building: None,
            };
            write_registry(&mut tx, ctx.name, &registry).await?;
            drop_generation(&mut tx, ctx.name, old).await?;
            tx.commit().await?;
            tracing::info!(
                projection = ctx.name,
                generation = building.number,
                version = building.version,
                position,
                old_generation = old,
                old_position,
                "switched to the rebuilt generation"
            );
            ctx.publish(building.number, position, false);
            self.registry = registry;
            return self.align().await;
        }
        tracing::debug!(
            projection = ctx.name,
            "switch postponed: the live generation keeps moving; trying at the next batch"
        );
        Ok(())
    }
}

/// The events after `after` up to `until` (both positions), checked dense.
pub(super) async fn read_range(
    store: &PgEventStore,
    after: u64,
    until: u64,
    page: usize,
) -> Result<Vec<RecordedEvent>, ProjectionError> {
    let mut events: Vec<RecordedEvent> = Vec::new();
    let mut position = after;
    while position < until {
        let read = store
            .read_all(Direction::Forwards, PositionFrom::At(position + 1), page)
            .await?;
        if read.is_empty() {
            break;
        }
        for event in read {
            if event.global_position > until {
                return Ok(events);
            }
            if event.global_position != position + 1 {
                return Err(shareledger_events::store::LogError::Gap {
                    after: position,
                    found: event.global_position,
                }
                .into());
            }
            position = event.global_position;
            events.push(event);
        }
    }
    Ok(events)
}
