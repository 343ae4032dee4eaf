//! Measuring and printing, shared by every benchmark.
//!
//! * [`run_timed`] runs an operation in a loop on `concurrency` tokio tasks:
//!   a warm-up first, whose operations are not counted, then a measured window
//!   of fixed length. An operation counts when it completes inside the window,
//!   so the rate is (operations completed in the window) / (window length).
//!   The first error of any task aborts the whole run, with its message.
//! * [`Line`] prints one `RESULT <name> key=value … ratio=x.xx` line.
//! * [`print_header`] prints the `MACHINE …` line, [`quiesce`] asks the server
//!   for a checkpoint between runs so no run pays for another's dirty pages.

use std::fmt::Write as _;
use std::future::Future;
use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use shareledger_tests::TestDb;
use sqlx::PgPool;
use tokio::task::JoinSet;

/// What one timed run measured.
#[derive(Debug, Clone)]
pub struct Measured {
    /// Operations completed inside the window.
    pub ops: u64,
    /// Events those operations wrote (or read).
    pub events: u64,
    /// Length of the measured window.
    pub window: Duration,
    /// Latency of every counted operation, sorted.
    latencies: Vec<Duration>,
}

impl Measured {
    /// A measurement of a fixed amount of work that took `elapsed` (no latencies).
    pub fn of_work(ops: u64, events: u64, elapsed: Duration) -> Self {
        Self {
            ops,
            events,
            window: elapsed,
            latencies: Vec::new(),
        }
    }

    /// Adds another measurement of the same work (its counts and its time).
    pub fn add(&mut self, other: Measured) {
        self.ops += other.ops;
        self.events += other.events;
        self.window += other.window;
        self.latencies.extend(other.latencies);
        self.latencies.sort_unstable();
    }

    /// Events per second.
    pub fn events_per_s(&self) -> f64 {
        self.events as f64 / self.window.as_secs_f64()
    }

    /// The latency at quantile `q` (0.0 to 1.0) in milliseconds.
    pub fn latency_ms(&self, q: f64) -> f64 {
        if self.latencies.is_empty() {
            return f64::NAN;
        }
        let rank =
            ((self.latencies.len() as f64 * q).ceil() as usize).clamp(1, self.latencies.len());
        self.latencies[rank - 1].as_secs_f64() * 1000.0
    }
}

/// How long to warm up and to measure.
#[derive(Debug, Clone, Copy)]
pub struct Timing {
    pub warmup: Duration,
    pub window: Duration,
}

/// Runs `op` in a loop on `concurrency` tasks for `timing.warmup` then
/// `timing.window`, and counts what completes inside the window. `op` gets
/// the task's index and returns how many events it handled.
pub async fn run_timed<F, Fut>(
    label: &str,
    concurrency: usize,
    timing: Timing,
    op: F,
) -> anyhow::Result<Measured>
where
    F: Fn(usize) -> Fut + Clone + Send + Sync + 'static,
    Fut: Future<Output = anyhow::Result<u64>> + Send + 'static,
{
    let start = Instant::now();
    let measure_from = start + timing.warmup;
    let until = measure_from + timing.window;
    let mut tasks = JoinSet::new();
    for task in 0..concurrency {
        let op = op.clone();
        tasks.spawn(async move {
            let mut ops = 0u64;
            let mut events = 0u64;
            let mut latencies = Vec::new();
            loop {
                let began = Instant::now();
                if began >= until {
                    break;
                }
                let n = op(task).await?;
                let ended = Instant::now();
                if ended >= measure_from && ended < until {
                    ops += 1;
                    events += n;
                    latencies.push(ended - began);
                }
            }
            Ok::<_, anyhow::Error>((ops, events, latencies))
        });
    }
    let mut measured = Measured {
        ops: 0,
        events: 0,
        window: timing.window,
        latencies: Vec::new(),
    };
    // Dropping the JoinSet on the first error aborts the other tasks.
    while let Some(joined) = tasks.join_next().await {
        let (ops, events, latencies) = joined
            .with_context(|| format!("{label}: a benchmark task panicked"))?
            .with_context(|| format!("{label}: an operation failed; benchmark aborted"))?;
        measured.ops += ops;
        measured.events += events;
        measured.latencies.extend(latencies);
    }
    measured.latencies.sort_unstable();
    if measured.ops == 0 {
        anyhow::bail!(
            "{label}: no operation completed inside the {:?} window",
            timing.window
        );
    }
    Ok(measured)
}

/// One `RESULT` line, built key by key.
#[derive(Debug)]
pub struct Line {
    text: String,
}

impl Line {
    pub fn new(name: &str) -> Self {
        Self {
            text: format!("RESULT {name}"),
        }
    }

    /// A rate (or any quantity) printed as a whole number.
    pub fn count(mut self, key: &str, value: f64) -> Self {
        let _ = write!(self.text, " {key}={value:.0}");
        self
    }

    /// A latency in milliseconds, two decimals.
    pub fn ms(mut self, key: &str, value: f64) -> Self {
        let _ = write!(self.text, " {key}={value:.2}");
        self
    }

    /// A value printed as given.
    pub fn text(mut self, key: &str, value: impl std::fmt::Display) -> Self {
        let _ = write!(self.text, " {key}={value}");
        self
    }

    /// A ratio key other than the final `ratio`, two decimals.
    pub fn ratio_as(mut self, key: &str, ours: f64, theirs: f64) -> Self {
        let _ = write!(self.text, " {key}={:.2}", ours / theirs);
        self
    }

    /// Ends the line with `ratio=ours/theirs` and prints it.
    pub fn ratio(self, ours: f64, theirs: f64) {
        let line = format!("{} ratio={:.2}", self.text, ours / theirs);
        emit(&line);
    }
}

fn emit(line: &str) {
    let mut out = std::io::stdout().lock();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

/// Prints the `MACHINE` header: cores, PostgreSQL version and the settings
/// that bound write throughput.
pub async fn print_header(bench: &str, quick: bool) -> anyhow::Result<()> {
    let cores = std::thread::available_parallelism().map_or(0, |n| n.get());
    let db = TestDb::with_pool_size(1).await;
    let show = |setting: &'static str| {
        let pool = db.pool().clone();
        async move {
            sqlx::query_scalar::<_, String>(&format!("SHOW {setting}"))
                .fetch_one(&pool)
                .await
                .with_context(|| format!("SHOW {setting}"))
        }
    };
    let version = show("server_version").await?;
    let sync_commit = show("synchronous_commit").await?;
    let fsync = show("fsync").await?;
    let shared_buffers = show("shared_buffers").await?;
    emit(&format!(
        "MACHINE cores={cores} postgres=\"{version}\" synchronous_commit={sync_commit} \
         fsync={fsync} shared_buffers={shared_buffers} bench={bench} mode={}",
        if quick { "quick" } else { "full" }
    ));
    Ok(())
}

/// Flushes the server's dirty pages before a run (`CHECKPOINT`), so that no
/// measured window pays for an earlier run's writes. Needs superuser or
/// `pg_checkpoint`; without them the run goes on with a note on stderr.
pub async fn quiesce(pool: &PgPool) {
    if let Err(e) = sqlx::query("CHECKPOINT").execute(pool).await {
        static WARNED: std::sync::Once = std::sync::Once::new();
        WARNED.call_once(|| eprintln!("note: CHECKPOINT between runs not possible ({e})"));
    }
}

/// Progress on stderr (stdout carries the results only).
pub fn progress(message: &str) {
    eprintln!("… {message}");
}
