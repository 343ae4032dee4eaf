//! `shareledger`: the one binary. Thin: it parses arguments, finds the
//! database and calls the library crates.
//!
//! Subcommands: `migrate` (create or update the schema) and `status` (the
//! log's head position, stream count and last write).

use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use shareledger_events::store::local_pg::LocalCluster;
use shareledger_events::store::PgEventStore;
use sqlx::postgres::PgPoolOptions;

#[derive(Parser)]
#[command(
    name = "shareledger",
    version,
    about = "ShareLedger: who shares what with whom, and who can see it"
)]
struct Cli {
    /// PostgreSQL URL. When unset, a private cluster is used (see --data-dir).
    #[arg(long, env = "DATABASE_URL", global = true)]
    database_url: Option<String>,
    /// Where the private cluster keeps its data when DATABASE_URL is unset.
    #[arg(
        long,
        env = "SHARELEDGER_DATA_DIR",
        default_value = ".shareledger/pgdata",
        global = true
    )]
    data_dir: PathBuf,
    /// Port of the private cluster.
    #[arg(
        long,
        env = "SHARELEDGER_PG_PORT",
        default_value_t = 54329,
        global = true
    )]
    pg_port: u16,
    /// Print JSON instead of text.
    #[arg(long, global = true)]
    json: bool,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create or update the database schema.
    Migrate,
    /// Show the log's head position, stream count and last write.
    Status,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "warn".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();

    let mut private = None;
    let url = match &cli.database_url {
        Some(url) => url.clone(),
        None => {
            let data_dir = std::path::absolute(&cli.data_dir).context("resolving --data-dir")?;
            let (cluster, started) = LocalCluster::open_or_start(&data_dir, cli.pg_port)?;
            eprintln!(
                "using the private PostgreSQL cluster in {} ({})",
                data_dir.display(),
                if started {
                    "started"
                } else {
                    "already running"
                }
            );
            let url = cluster.url("postgres");
            private = Some((cluster, started));
            url
        }
    };

    let result = run(&cli, &url).await;
    if let Some((cluster, true)) = private {
        cluster.stop()?;
    }
    result
}

async fn run(cli: &Cli, url: &str) -> anyhow::Result<()> {
    let pool = PgPoolOptions::new()
        .max_connections(4)
        .connect(url)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    match cli.command {
        Command::Migrate => {
            PgEventStore::migrate(&pool).await.context("migrating")?;
            let applied: i64 = sqlx::query_scalar("SELECT count(*) FROM _sqlx_migrations")
                .fetch_one(&pool)
                .await?;
            if cli.json {
                println!("{}", serde_json::json!({ "migrations_applied": applied }));
            } else {
                println!("schema is up to date ({applied} migrations applied)");
            }
        }
        Command::Status => {
            let store = PgEventStore::new(pool);
            let status = store.status().await.context(
                "reading the log's status (has `shareledger migrate` been run on this database?)",
            )?;
            if cli.json {
                println!("{}", serde_json::to_string(&status)?);
            } else {
                println!("head position  {}", status.head_position);
                println!("streams        {}", status.streams);
                match status.last_recorded_at {
                    Some(t) => println!("last write     {}", t.to_rfc3339()),
                    None => println!("last write     never"),
                }
            }
        }
    }
    Ok(())
}

/// The URL without its password, for messages.
fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &creds[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}
