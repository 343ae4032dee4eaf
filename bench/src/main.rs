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
//! ```

mod access;
mod append;
mod audit;
mod commands;
mod http;
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
        }
    })
}
