//! `shareledger-bench`: side-by-side benchmarks of ShareLedger against raw
//! PostgreSQL and peer event stores.
//!
//! Each subcommand is one benchmark, in its own module; [`report`] holds the
//! shared measuring loop and the output format. Every comparison prints one
//! line to stdout:
//!
//! ```text
//! RESULT <name> key=value … ratio=<ours/theirs, 2 decimals>
//! ```
//!
//! after one `MACHINE …` header line; progress goes to stderr. Every
//! comparison runs on fresh databases from `shareledger-tests`' `TestDb`, so
//! the bench never touches other data.
//!
//! ```text
//! cargo run --release -p shareledger-bench -- append [--quick]
//! cargo run --release -p shareledger-bench -- commands [--quick]
//! cargo run --release -p shareledger-bench -- access [--quick]
//! cargo run --release -p shareledger-bench -- audit [--quick]
//! cargo run --release -p shareledger-bench -- http [--quick]
//! cargo run --release -p shareledger-bench -- faults [--quick]
//! cargo run --release -p shareledger-bench -- relay [--quick]
//! cargo run --release -p shareledger-bench -- feed [--quick]
//! cargo run --release -p shareledger-bench -- console [--quick]
//! cargo run --release -p shareledger-bench -- replicas [--quick] [--only load|failover|snapshot|replica]
//! ```

mod access;
mod append;
mod audit;
mod commands;
mod console;
mod feed;
mod hot_site;
mod http;
mod relay;
mod replica_reads;
mod replicas;
mod report;
mod vs_postgres_es;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(about = "Side-by-side benchmarks of ShareLedger against raw PostgreSQL and peer stores")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Appends (single events, batches of 100, vs raw INSERTs and postgres-es)
    /// and reading `$all` to the client.
    Append(CommonArgs),
    /// Commands per second through the command service (a mix of user,
    /// sharing and connection commands) vs raw single-row INSERTs.
    Commands(CommandsArgs),
    /// The access index on a large generated world: rebuild from the log vs
    /// a raw scan, checks vs Cedar and SQL, lookups, memory.
    Access(CommonArgs),
    /// Looking back on a ~1,000,000-event log: as-of checks and lookups vs a
    /// full replay, verify vs a raw scan, appends with and without the sealer.
    Audit(CommonArgs),
    /// The HTTP API under load on loopback: checks and commands vs the
    /// stack's trivial-endpoint limit and the in-process commands.
    Http(CommonArgs),
    /// Fault drills under a load of checks and commands: PostgreSQL
    /// stopped for 10 s, and every connection cut mid-query; 5xx, slowest
    /// 503, recovery time, stale allows and lost commands.
    Faults(CommonArgs),
    /// The relay to NATS JetStream vs raw async-nats publishes of the same
    /// messages, and a crash drill counting lost and duplicated events.
    Relay(CommonArgs),
    /// The changes feed: commit-to-delivery latency with 100 connected
    /// clients, by Server-Sent Events vs long polls.
    Feed(CommonArgs),
    Console(CommonArgs),
    /// Several `shareledger serve` processes on one database: a mixed load
    /// on three processes vs one, and a kill -9 of the lease holder
    /// (failover time, lost and doubled consequences, the chain); and the
    /// index's start from a snapshot vs a replay.
    Replicas(replicas::ReplicasArgs),
}

/// The `commands` benchmark's options.
#[derive(Debug, Clone, Args)]
pub struct CommandsArgs {
    #[command(flatten)]
    pub common: CommonArgs,
    /// Run only these concurrencies (repeatable; default 1, 8 and 32), e.g.
    /// to profile one of them.
    #[arg(long = "concurrency")]
    pub concurrency: Vec<usize>,
}

/// Options every benchmark takes.
#[derive(Debug, Clone, Copy, Args)]
pub struct CommonArgs {
    /// Shorter windows and smaller data sets: the whole run takes under a minute.
    #[arg(long)]
    pub quick: bool,
}

/// The allocator of every ShareLedger binary (`docs/dependencies.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()?;
    runtime.block_on(async {
        match cli.command {
            Command::Append(args) => {
                report::print_header("append", args.quick).await?;
                append::run(args).await
            }
            Command::Commands(args) => {
                report::print_header("commands", args.common.quick).await?;
                commands::run(args).await
            }
            Command::Access(args) => {
                report::print_header("access", args.quick).await?;
                access::run(args).await
            }
            Command::Audit(args) => {
                report::print_header("audit", args.quick).await?;
                audit::run(args).await
            }
            Command::Http(args) => {
                report::print_header("http", args.quick).await?;
                http::run(args).await
            }
            Command::Faults(args) => {
                report::print_header("faults", args.quick).await?;
                faults_report(args).await
            }
            Command::Relay(args) => {
                report::print_header("relay", args.quick).await?;
                relay::run(args).await
            }
            Command::Feed(args) => {
                report::print_header("feed", args.quick).await?;
                feed::run(args).await
            }
            Command::Console(args) => {
                report::print_header("console", args.quick).await?;
                console::run(args).await
            }
            Command::Replicas(args) => {
                report::print_header("replicas", args.common.quick).await?;
                replicas::run(args).await
            }
        }
    })
}

/// Runs the fault drills and prints their figures. `ratio` is the recovery
/// time over its goal (5 s): at most 1 meets it.
async fn faults_report(args: CommonArgs) -> anyhow::Result<()> {
    use shareledger_bench::faults::{self, Drill, Load};
    use std::time::Duration;
    let load = Load {
        after: if args.quick {
            Duration::from_secs(2)
        } else {
            Duration::from_secs(5)
        },
        ..Load::default()
    };
    for (name, drill) in [
        ("faults_outage", Drill::Outage(Duration::from_secs(10))),
        ("faults_cut_connections", Drill::CutConnections(5)),
    ] {
        let r = faults::run(drill, load).await?;
        let unavailable: Vec<String> = r
            .unavailable
            .iter()
            .map(|(code, n)| format!("{code}:{n}"))
            .collect();
        report::Line::new(name)
            .count("requests", r.requests as f64)
            .count("five_xx", r.five_xx as f64)
            .text("unavailable", unavailable.join(","))
            .ms("slowest_503_s", r.slowest_503.as_secs_f64())
            .ms("slowest_s", r.slowest.as_secs_f64())
            .count("unanswered", r.unanswered as f64)
            .ms("recovery_s", r.recovery.as_secs_f64())
            .count("stale_allows", r.stale_allows as f64)
            .count("victim_checks", r.checks_after_deactivation as f64)
            .text("first_check_after", r.first_check_after.replace(' ', "_"))
            .count("acknowledged", r.acknowledged as f64)
            .count("lost", r.lost as f64)
            .count("contended", r.contended as f64)
            .count("in_flight", r.in_flight as f64)
            .text("consequence_applied", r.consequence_applied)
            .text("sealed_to_head", r.sealed_to_head)
            .count("restarts", r.restarts as f64)
            .ratio(r.recovery.as_secs_f64(), 5.0);
    }
    Ok(())
}
