//! `relay`: the relay to NATS JetStream (issue 17) against raw `async-nats`
//! JetStream publishes of the same messages, in the same run.
//!
//! * ours: `Relay::run` from an empty stream to the log's head: reading the
//!   log from PostgreSQL, publishing each batch, awaiting every
//!   acknowledgement, saving the checkpoint;
//! * raw: the same messages (built beforehand, in memory), published to
//!   another stream in batches of the same size, each batch's
//!   acknowledgements awaited; no log, no checkpoint.
//!
//! Then a crash drill: the relay's task is aborted mid-run (no graceful
//! anything, as a kill -9 of its process would leave it; the binary's real
//! SIGKILL is `cli/tests/relay_crash.rs`), started again to the head, and a
//! consumer of the stream counts what was lost and what came twice.

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use async_nats::jetstream;
use shareledger_events::store::PositionFrom;
use shareledger_events::{Direction, ExpectedRevision};
use shareledger_projections::relay::{Relay, RelayConfig, POSITION_HEADER};
use shareledger_tests::fixtures::{events, stream};
use shareledger_tests::nats::nats_url;
use shareledger_tests::TestDb;
use uuid::Uuid;

use crate::report::{progress, Line};
use crate::CommonArgs;

fn config(batch: usize) -> RelayConfig {
    let tag = Uuid::new_v4().simple().to_string();
    RelayConfig {
        nats_url: nats_url(),
        stream: format!("SLBENCH_{tag}"),
        prefix: format!("slbench{tag}"),
        batch,
        derived: false,
    }
}

async fn messages_in(js: &jetstream::Context, name: &str) -> u64 {
    match js.get_stream(name).await {
        Ok(mut s) => s.info().await.map(|i| i.state.messages).unwrap_or(0),
        Err(_) => 0,
    }
}

pub async fn run(args: CommonArgs) -> anyhow::Result<()> {
    let total = if args.quick { 5_000 } else { 50_000 };
    let batch = RelayConfig::default().batch;
    let db = TestDb::new().await;
    let store = db.store();
    progress(&format!("writing {total} events"));
    for n in 0..total / 100 {
        store
            .append(
                &stream(&format!("bench-{n}")),
                ExpectedRevision::Any,
                events(100),
            )
            .await?;
    }
    let head = store.head_position().await?;
    let js = jetstream::new(async_nats::connect(nats_url()).await?);

    // Ours.
    let ours_config = config(batch);
    let relay = Relay::new(store.clone(), ours_config.clone());
    let started = Instant::now();
    relay.run(Some(head)).await?;
    let ours = head as f64 / started.elapsed().as_secs_f64();

    // Raw: the same messages, built beforehand, to a stream of their own.
    let raw_config = config(batch);
    let log = store
        .read_all(Direction::Forwards, PositionFrom::At(1), total + 10)
        .await?;
    let shaper = Relay::new(store.clone(), raw_config.clone());
    let prepared: Vec<_> = log.iter().map(|e| shaper.message(e)).collect();
    js.get_or_create_stream(jetstream::stream::Config {
        name: raw_config.stream.clone(),
        subjects: vec![format!("{}.events.>", raw_config.prefix)],
        duplicate_window: Duration::from_secs(120),
        ..Default::default()
    })
    .await?;
    let started = Instant::now();
    for chunk in prepared.chunks(batch) {
        let mut acks = Vec::with_capacity(chunk.len());
        for (subject, headers, payload) in chunk {
            acks.push(
                js.publish_with_headers(subject.clone(), headers.clone(), payload.clone().into())
                    .await?,
            );
        }
        for ack in acks {
            ack.await?;
        }
    }
    let raw = head as f64 / started.elapsed().as_secs_f64();

    // The crash drill: abort mid-run, start again, count.
    let crash_config = config(batch);
    let crashing = Relay::new(store.clone(), crash_config.clone());
    let task = tokio::spawn({
        let crashing = crashing.clone();
        async move { crashing.run(Some(head)).await }
    });
    while messages_in(&js, &crash_config.stream).await < head / 2 && !task.is_finished() {
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    task.abort();
    let _ = task.await;
    let at_crash = messages_in(&js, &crash_config.stream).await;
    crashing.run(Some(head)).await?;
    let mut s = js.get_stream(&crash_config.stream).await?;
    let last = s.info().await?.state.last_sequence;
    let mut ids = Vec::with_capacity(last as usize);
    let mut in_order = true;
    let mut previous = 0u64;
    for sequence in 1..=last {
        let m = s.get_raw_message(sequence).await?;
        let position: u64 = m
            .headers
            .get(POSITION_HEADER)
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or(0);
        in_order &= position == previous + 1;
        previous = position;
        ids.push(
            m.headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .map(|v| v.as_str().to_owned())
                .unwrap_or_default(),
        );
    }
    let unique: BTreeSet<&String> = ids.iter().collect();
    let duplicated = ids.len() - unique.len();
    let lost = log.len() - unique.len().min(log.len());
    for name in [
        &ours_config.stream,
        &raw_config.stream,
        &crash_config.stream,
    ] {
        let _ = js.delete_stream(name).await;
    }
    Line::new("relay")
        .count("events", head as f64)
        .count("batch", batch as f64)
        .count("ours_events_per_s", ours)
        .count("raw_publish_per_s", raw)
        .count("crashed_at", at_crash as f64)
        .count("lost", lost as f64)
        .count("duplicated", duplicated as f64)
        .text("in_order", in_order)
        .ratio(ours, raw);
    Ok(())
}
