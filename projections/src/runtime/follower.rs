//! A follower: a task applying the log to one generation, batch by batch
//! from its checkpoint, each batch and the checkpoint in one transaction
//! (see "Exactly-once effects" in the runtime's module documentation), run
//! again from the checkpoint after every transient fault.

use std::sync::Arc;

use shareledger_events::store::lease::{lead, Watched};
use shareledger_events::store::supervise::{supervise, PartHealth};
use shareledger_events::store::SubscriptionOptions;
use shareledger_events::RecordedEvent;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use super::progress::Ctx;
use super::registry::{lock_checkpoint, read_checkpoint, save_checkpoint};
use super::supervisor::task_failure;
use super::{checkpoint_name, generation_schema, stopped};
use crate::ProjectionError;

/// How a follower ended without an error.
#[derive(Debug)]
pub(super) enum FollowEnd {
    /// Told to stop.
    Stopped,
    /// Its generation's checkpoint is gone: the generation was dropped.
    Retired,
}

/// A task applying the log to one generation. Dropping it aborts the task.
pub(super) struct Follower {
    pub(super) name: &'static str,
    pub(super) stop: watch::Sender<bool>,
    pub(super) task: JoinHandle<Result<FollowEnd, ProjectionError>>,
}

impl Follower {
    pub(super) fn start(ctx: Arc<Ctx>, generation: u32) -> Self {
        let (stop, stopped) = watch::channel(false);
        let name = ctx.name;
        let task = tokio::spawn(follow_supervised(ctx, generation, stopped));
        Self { name, stop, task }
    }

    /// Stops after the current batch; errors are the follower's.
    pub(super) async fn stop(mut self) -> Result<(), ProjectionError> {
        self.stop.send_replace(true);
        match (&mut self.task).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(e),
            Err(join) => Err(task_failure(self.name, join)),
        }
    }
}

impl Drop for Follower {
    fn drop(&mut self) {
        self.task.abort();
    }
}

/// Runs [`follow`] again from the checkpoint after every transient fault
/// (the database away, a connection cut), until it ends or fails for good;
/// with leases, only while this process holds the generation's lease, and
/// as a standby reading the checkpoint meanwhile (see "Several processes"
/// in the runtime's module documentation).
pub(super) async fn follow_supervised(
    ctx: Arc<Ctx>,
    generation: u32,
    stop: watch::Receiver<bool>,
) -> Result<FollowEnd, ProjectionError> {
    let ended = std::sync::Mutex::new(FollowEnd::Stopped);
    let (ctx, ended_ref, stop_ref) = (&ctx, &ended, &stop);
    let run = || async move {
        let end = follow(Arc::clone(ctx), generation, stop_ref.clone()).await?;
        *ended_ref.lock().unwrap_or_else(|p| p.into_inner()) = end;
        Ok::<(), ProjectionError>(())
    };
    match &ctx.leases {
        None => supervise(&ctx.health, stop.clone(), run).await?,
        Some(leases) => {
            let checkpoint = checkpoint_name(ctx.name, generation);
            // The live generation's lease shows in the projection's health;
            // a generation being built keeps its own.
            let live = ctx.progress.borrow().live == Some(generation);
            let health = if live {
                ctx.health.clone()
            } else {
                PartHealth::new(checkpoint.clone(), 0)
            };
            let checkpoint = &checkpoint;
            let watch = || async move {
                // Where the rows are read from: with a replica, its copy of
                // the checkpoint commits with its copy of the rows.
                let mut found = read_checkpoint(ctx.store.reads(), checkpoint).await?;
                if found.is_none() && ctx.store.reads_from_replica() {
                    // A generation the replica has not received yet is not
                    // gone if the primary has it: nothing is readable yet.
                    found = read_checkpoint(ctx.store.pool(), checkpoint)
                        .await?
                        .map(|_| 0);
                }
                match found {
                    Some(position) => {
                        ctx.observe(generation, position);
                        Ok(Watched::At(position))
                    }
                    None => {
                        *ended_ref.lock().unwrap_or_else(|p| p.into_inner()) = FollowEnd::Retired;
                        Ok(Watched::Gone)
                    }
                }
            };
            lead(leases, checkpoint, &health, stop.clone(), run, watch).await?
        }
    }
    Ok(ended.into_inner().unwrap_or_else(|p| p.into_inner()))
}

/// Applies the log to generation `generation`, batch by batch, from its
/// checkpoint.
pub(super) async fn follow(
    ctx: Arc<Ctx>,
    generation: u32,
    mut stop: watch::Receiver<bool>,
) -> Result<FollowEnd, ProjectionError> {
    let schema = generation_schema(ctx.name, generation);
    let checkpoint = checkpoint_name(ctx.name, generation);
    let Some(mut committed) = read_checkpoint(ctx.store.pool(), &checkpoint).await? else {
        return Ok(FollowEnd::Retired);
    };
    ctx.publish(generation, committed, false);
    tracing::debug!(
        projection = ctx.name,
        generation,
        position = committed,
        "following"
    );
    let options = SubscriptionOptions {
        page_size: ctx.options.batch_size,
        idle_recheck: ctx.options.idle_recheck,
        ..SubscriptionOptions::default()
    };
    let live = ctx.progress.borrow().live == Some(generation);
    let mut subscription = ctx.store.subscribe_to_all(Some(committed), options).await?;
    if live {
        subscription.report_to(ctx.health.clone());
    }
    // The newest head of the log read, and whether `committed` equals it.
    let mut head = 0;
    let mut at_head = false;
    loop {
        if *stop.borrow() {
            return Ok(FollowEnd::Stopped);
        }
        if !at_head && committed >= head {
            head = ctx.store.head_position().await?;
            if committed >= head {
                ctx.publish(generation, committed, true);
            }
        }
        let first = tokio::select! {
            biased;
            () = stopped(&mut stop) => return Ok(FollowEnd::Stopped),
            event = subscription.next() => event?,
        };
        // The rest of the batch: only events known to be committed (up to
        // a head read), so that this never waits for new ones.
        let mut batch = vec![first];
        at_head = false;
        while batch.len() < ctx.options.batch_size {
            if subscription.position() >= head {
                head = ctx.store.head_position().await?;
                if subscription.position() >= head {
                    at_head = true;
                    break;
                }
            }
            batch.push(subscription.next().await?);
        }
        match commit_batch(&ctx, &schema, &checkpoint, &batch).await? {
            Batch::Committed(position) => committed = position,
            Batch::Ahead(stored) => {
                // Another process (or a switch) applied these already.
                committed = stored;
                at_head = false;
                if stored > subscription.position() {
                    subscription = ctx.store.subscribe_to_all(Some(stored), options).await?;
                    if live {
                        subscription.report_to(ctx.health.clone());
                    }
                }
            }
            Batch::Retired => return Ok(FollowEnd::Retired),
        }
        ctx.publish(generation, committed, at_head);
    }
}

pub(super) enum Batch {
    /// Applied and committed up to this position.
    Committed(u64),
    /// Nothing to apply: the checkpoint is at this position, past the batch.
    Ahead(u64),
    /// The checkpoint is gone.
    Retired,
}

/// Applies `batch` (consecutive events) to `schema` and moves the
/// checkpoint, in one transaction.
pub(super) async fn commit_batch(
    ctx: &Ctx,
    schema: &str,
    checkpoint: &str,
    batch: &[RecordedEvent],
) -> Result<Batch, ProjectionError> {
    let (Some(first), Some(last)) = (batch.first(), batch.last()) else {
        return Ok(Batch::Ahead(0));
    };
    let (first, last) = (first.global_position, last.global_position);
    let mut tx = ctx.store.pool().begin().await?;
    let Some(stored) = lock_checkpoint(&mut tx, checkpoint).await? else {
        tx.rollback().await?;
        return Ok(Batch::Retired);
    };
    if stored + 1 < first {
        return Err(ProjectionError::CheckpointMovedBack {
            checkpoint: checkpoint.to_string(),
            stored,
            expected: first - 1,
        });
    }
    if stored >= last {
        tx.rollback().await?;
        return Ok(Batch::Ahead(stored));
    }
    // `first - 1 <= stored < last`: apply what comes after `stored`.
    let skip = usize::try_from(stored + 1 - first).unwrap_or(usize::MAX);
    ctx.projection
        .apply(&mut tx, schema, &batch[skip..])
        .await?;
    save_checkpoint(&mut tx, checkpoint, last).await?;
    tx.commit().await?;
    tracing::trace!(
        projection = ctx.name,
        schema,
        from = stored + 1,
        to = last,
        "batch committed"
    );
    Ok(Batch::Committed(last))
}
