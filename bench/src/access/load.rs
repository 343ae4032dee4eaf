//! Writing the generated world to the log through [`PgEventStore`], phase
//! after phase (a phase starts when the previous one has committed, so the
//! log's order respects every causal dependency between phases).
//!
//! A bulk phase is split between [`WRITERS`] tasks, each owning whole
//! streams (the longest streams first, each to the least loaded task), so
//! a stream's events keep their order. Each task sends multi-stream appends
//! of up to [`MAX_EVENTS_PER_APPEND`] events, each stream at most once per
//! append, at the exact revision it expects; the store's writer merges the
//! tasks' concurrent appends into bigger transactions. A commands phase
//! appends each command's streams together, one command at a time.

use std::collections::VecDeque;
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use shareledger_events::envelope::MAX_EVENTS_PER_APPEND;
use shareledger_events::store::{PgEventStore, StreamAppend};
use shareledger_events::ExpectedRevision;

use super::world::{Phase, StreamJob, World};
use crate::report::progress;

/// Tasks appending a bulk phase concurrently.
const WRITERS: usize = 4;

/// What writing the world took.
#[derive(Debug, Clone, Copy)]
pub struct Written {
    pub events: u64,
    pub elapsed: Duration,
}

/// Appends every phase, in order.
pub async fn append_phases(
    store: &PgEventStore,
    world: &Arc<World>,
    phases: Vec<Phase>,
) -> anyhow::Result<Written> {
    let started = Instant::now();
    let mut events = 0u64;
    for phase in phases {
        let name = phase.name();
        let count = phase.events() as u64;
        let phase_started = Instant::now();
        match phase {
            Phase::Bulk { jobs, .. } => append_bulk(store, world, jobs).await,
            Phase::Commands { commands, .. } => append_commands(store, world, commands).await,
        }
        .with_context(|| format!("appending phase {name}"))?;
        let took = phase_started.elapsed().as_secs_f64();
        progress(&format!(
            "world: phase {name}: {count} events in {took:.1} s ({:.0} events/s)",
            count as f64 / took
        ));
        events += count;
    }
    Ok(Written {
        events,
        elapsed: started.elapsed(),
    })
}

/// What a stream must be before an append that starts at revision `start`.
fn expected(start: u64) -> ExpectedRevision {
    match start {
        0 => ExpectedRevision::NoStream,
        n => ExpectedRevision::Exact(n - 1),
    }
}

async fn append_bulk(
    store: &PgEventStore,
    world: &Arc<World>,
    mut jobs: Vec<StreamJob>,
) -> anyhow::Result<()> {
    jobs.sort_by_key(|job| std::cmp::Reverse(job.events.len()));
    let mut buckets: Vec<(usize, VecDeque<(StreamJob, usize)>)> =
        (0..WRITERS).map(|_| (0, VecDeque::new())).collect();
    for job in jobs {
        let lightest = buckets
            .iter_mut()
            .min_by_key(|(load, _)| *load)
            .expect("at least one writer");
        lightest.0 += job.events.len();
        lightest.1.push_back((job, 0));
    }
    let mut tasks = tokio::task::JoinSet::new();
    for (_, mut queue) in buckets {
        let store = store.clone();
        let world = Arc::clone(world);
        tasks.spawn(async move {
            while !queue.is_empty() {
                let mut appends = Vec::new();
                let mut used = 0;
                let mut unfinished = None;
                while used < MAX_EVENTS_PER_APPEND {
                    let Some((job, offset)) = queue.pop_front() else {
                        break;
                    };
                    let n = (job.events.len() - offset).min(MAX_EVENTS_PER_APPEND - used);
                    let events = job.events[offset..offset + n]
                        .iter()
                        .map(|p| world.new_event(p))
                        .collect::<anyhow::Result<Vec<_>>>()?;
                    appends.push(StreamAppend {
                        stream: job.stream.clone(),
                        expected: expected(job.start + offset as u64),
                        events,
                    });
                    used += n;
                    if offset + n < job.events.len() {
                        // Only the last job taken can be unfinished.
                        unfinished = Some((job, offset + n));
                    }
                }
                if let Some(rest) = unfinished {
                    queue.push_front(rest);
                }
                store
                    .append_multi(appends)
                    .await
                    .context("a bulk append of the world")?;
            }
            Ok::<_, anyhow::Error>(())
        });
    }
    while let Some(joined) = tasks.join_next().await {
        joined.context("a world writer panicked")??;
    }
    Ok(())
}

async fn append_commands(
    store: &PgEventStore,
    world: &Arc<World>,
    commands: Vec<Vec<StreamJob>>,
) -> anyhow::Result<()> {
    for command in commands {
        let appends = command
            .into_iter()
            .map(|job| {
                Ok(StreamAppend {
                    expected: expected(job.start),
                    events: job
                        .events
                        .iter()
                        .map(|p| world.new_event(p))
                        .collect::<anyhow::Result<Vec<_>>>()?,
                    stream: job.stream,
                })
            })
            .collect::<anyhow::Result<Vec<_>>>()?;
        store
            .append_multi(appends)
            .await
            .context("a command of the world")?;
    }
    Ok(())
}
