//! `shareledger`: the one binary. Thin: it parses arguments, finds the
//! database and calls the library crates.
//!
//! Subcommands: `serve` (the HTTP API), `token` (issue, list and revoke API
//! tokens), `demo` (load the seeds' story), `migrate` (create or update the
//! schema), `status` (the log's head position, stream count and last
//! write), `openapi` (print the API document), and `completions` (a shell
//! completion script).

mod audit;
mod demo;
mod private_cluster;
mod progress;
mod table;

use std::path::PathBuf;

use anyhow::Context;
use clap::{CommandFactory, Parser, Subcommand};
use shareledger_core::catalog::{SiteId, UserId};
use shareledger_events::store::local_pg::LocalCluster;
use shareledger_events::store::PgEventStore;
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use shareledger_gateway::server::Server;
use shareledger_gateway::GatewayOptions;

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
    /// Where the private cluster keeps its data when DATABASE_URL is unset
    /// [default: .shareledger/pgdata; as root, when the cluster's `postgres`
    /// user cannot reach it, /var/tmp/shareledger-0/<checkout>-<hash>/pgdata]
    #[arg(long, env = "SHARELEDGER_DATA_DIR", global = true)]
    data_dir: Option<PathBuf>,
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
    /// How logs (stderr) are written.
    #[arg(
        long,
        env = "SHARELEDGER_LOG_FORMAT",
        value_enum,
        default_value = "text",
        global = true
    )]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Serve the HTTP API (migrates first) until Ctrl-C or SIGTERM.
    Serve {
        /// Where to listen.
        #[arg(long, env = "SHARELEDGER_LISTEN", default_value = "127.0.0.1:8080")]
        listen: std::net::SocketAddr,
        /// The largest request body accepted, in bytes.
        #[arg(long, env = "SHARELEDGER_BODY_LIMIT", default_value_t = 1 << 20)]
        body_limit: usize,
        /// How long a query waits for the read model behind it to reach
        /// min_position and the log's known head, in ms (then 503).
        #[arg(
            long,
            env = "SHARELEDGER_FRESHNESS_TIMEOUT_MS",
            default_value_t = 2_000
        )]
        freshness_timeout_ms: u64,
        /// How many events behind the log's known head a read model may
        /// answer without waiting (0: none).
        #[arg(long, env = "SHARELEDGER_MAX_LAG", default_value_t = 0)]
        max_lag: u64,
        /// How long a read model may go without hearing from the log and
        /// still answer, in ms (then 503 read_model_stale).
        #[arg(long, env = "SHARELEDGER_MAX_SILENCE_MS", default_value_t = 5_000)]
        max_silence_ms: u64,
        /// The longest a request may take, in ms (then 503 timed_out).
        #[arg(long, env = "SHARELEDGER_REQUEST_TIMEOUT_MS", default_value_t = 10_000)]
        request_timeout_ms: u64,
        /// How long a request waits for a database connection, in ms (then
        /// 503 database_unavailable).
        #[arg(
            long,
            env = "SHARELEDGER_DB_ACQUIRE_TIMEOUT_MS",
            default_value_t = 1_000
        )]
        db_acquire_timeout_ms: u64,
        /// The database's statement_timeout for the service's connections,
        /// in ms (0: none).
        #[arg(
            long,
            env = "SHARELEDGER_DB_STATEMENT_TIMEOUT_MS",
            default_value_t = 30_000
        )]
        db_statement_timeout_ms: u64,
        /// Database connections.
        #[arg(long, env = "SHARELEDGER_DB_CONNECTIONS", default_value_t = 16)]
        db_connections: u32,
        /// Answer the audit routes' as-of questions from the log in
        /// PostgreSQL instead of keeping it in memory (slower answers,
        /// about 0.5 KB less memory per event).
        #[arg(long, env = "SHARELEDGER_NO_HISTORY_ARCHIVE")]
        no_history_archive: bool,
        /// Also relay the log to NATS JetStream at this URL (stream
        /// SHARELEDGER, subjects shareledger.events.*), as `shareledger
        /// relay` does; `/ready` and `/metrics` then report it as the part
        /// `relay`. Among several processes on one database, the one
        /// holding the relay's lease relays.
        #[arg(long, env = "SHARELEDGER_RELAY_NATS_URL")]
        relay_nats_url: Option<String>,
        /// Do not write the derived feeds (access changes, notifications)
        /// in this process: `/v1/access-changes` then answers 503, and a
        /// relay delivers none. (Among several processes on one database,
        /// the one holding the feeds' lease writes them.)
        #[arg(long, env = "SHARELEDGER_NO_DERIVED_FEEDS")]
        no_derived_feeds: bool,
        /// Write a snapshot of the access index every this many events (in
        /// the one process holding the `index_snapshot` lease), for new
        /// processes to start from instead of replaying the whole log; 0
        /// writes none (a process still starts from a stored one).
        #[arg(
            long,
            env = "SHARELEDGER_INDEX_SNAPSHOT_EVERY",
            default_value_t = 100_000
        )]
        index_snapshot_every: u64,
        /// Read the log and the read models from this streaming replica of
        /// the database (a hot standby), and send commands to the primary
        /// (DATABASE_URL). Answers still wait for the positions they are
        /// given. Such a process runs none of the leased parts: keep at
        /// least one process without this option.
        #[arg(long, env = "SHARELEDGER_REPLICA_URL")]
        replica_url: Option<String>,
    },
    /// Issue, list or revoke API tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    /// Load the seeds' story (sites, users, connections, shares) and print
    /// a token for each kind of user, with curl examples.
    Demo,
    /// Create or update the database schema.
    Migrate,
    /// Show the log's head position, stream count and last write.
    Status,
    /// Print the OpenAPI document (as committed in docs/openapi.json).
    Openapi,
    /// Print a shell completion script (e.g. `shareledger completions bash
    /// > /etc/bash_completion.d/shareledger`).
    Completions {
        /// The shell.
        #[arg(value_enum)]
        shell: clap_complete::Shell,
    },
    /// as of a past position or time (RFC 3339).
    #[command(subcommand, name = "as-of")]
    AsOf(audit::AsOf),
    /// why a user can (or cannot) see a target, each step with its event.
    Explain {
        #[arg(long)]
        user: uuid::Uuid,
        #[command(flatten)]
        target: audit::TargetArgs,
        /// A past position or RFC 3339 time (default: now).
        #[arg(long, value_parser = audit::parse_moment)]
        at: Option<shareledger_projections::history::Moment>,
    },
    /// Who gained, lost or changed which access between two moments.
    Diff(audit::DiffArgs),
    /// A sharing timeline: a site's, a link's or a scorecard's.
    History(audit::TimelineArgs),
    /// Walk the integrity chain: the first altered, inserted or
    /// removed event, and what is not sealed yet. Exits 2 when tampered.
    Verify {
        /// A chain head printed by an earlier verify (`<position>:<hash>`).
        #[arg(long)]
        anchor: Option<String>,
        /// Seal the committed events first (what the service's sealer does).
        #[arg(long)]
        seal: bool,
    },
    /// Export a timeline or an as-of answer as CSV or JSON lines.
    Export {
        #[command(subcommand)]
        what: audit::Export,
        #[arg(long, value_enum, default_value = "csv", global = true)]
        format: audit::Format,
        /// Write to this file instead of stdout.
        #[arg(long, global = true)]
        out: Option<PathBuf>,
    },
    /// Deliver the log to NATS JetStream, every event once and in log order
    /// (`docs/integrations.md`), until stopped (Ctrl-C, SIGTERM).
    Relay {
        /// The NATS server.
        #[arg(long, env = "NATS_URL", default_value = "nats://127.0.0.1:4222")]
        nats_url: String,
        /// The JetStream stream (created when missing).
        #[arg(long, default_value = "SHARELEDGER")]
        stream: String,
        /// Subjects are `<prefix>.events.<category>`, and for the derived
        /// feeds (streams `<STREAM>_ACCESS`, `<STREAM>_NOTIFICATIONS`)
        /// `<prefix>.access.<user site>.<target site>` and
        /// `<prefix>.notifications.<kind>.<site>`.
        #[arg(long, default_value = "shareledger")]
        prefix: String,
        /// First set the checkpoints to this position. A run resumes after
        /// the later of a checkpoint and its stream's last message, so this
        /// skips ahead only; to deliver again, delete the stream first.
        #[arg(long)]
        from: Option<u64>,
        /// Print the checkpoint and stop.
        #[arg(long)]
        status: bool,
    },
    /// Rebuild the read models from the log, with progress and events/s.
    Replay {
        /// Only this read model.
        #[arg(long, value_enum)]
        only: Option<audit::ReadModelArg>,
    },
}

/// The log formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum TokenCommand {
    /// Issue a token; its secret is printed once and never stored.
    Issue {
        /// What the token speaks for.
        #[arg(long, value_enum)]
        kind: KindArg,
        /// The site (user and service tokens; optional for auditors).
        #[arg(long)]
        site: Option<uuid::Uuid>,
        /// The user (user tokens).
        #[arg(long)]
        user: Option<uuid::Uuid>,
        /// A name to recognise it by.
        #[arg(long, default_value = "cli")]
        name: String,
        /// Lifetime in days.
        #[arg(long, default_value_t = 90)]
        days: u64,
    },
    /// List tokens (never their secrets).
    List,
    /// Revoke a token by its id.
    Revoke { token_id: uuid::Uuid },
}

/// `token issue --kind`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum KindArg {
    /// One user of one site (--site and --user), for a UI signed in as them.
    User,
    /// A backend service of one site (--site), acting for its users.
    Service,
    /// Reads history and access answers of one site (--site) or all; no commands.
    Auditor,
    /// Platform staff: any site or user command, every read.
    Operator,
}

impl From<KindArg> for TokenKind {
    fn from(kind: KindArg) -> Self {
        match kind {
            KindArg::User => TokenKind::User,
            KindArg::Service => TokenKind::Service,
            KindArg::Auditor => TokenKind::Auditor,
            KindArg::Operator => TokenKind::Operator,
        }
    }
}

/// The allocator of every ShareLedger binary (`docs/dependencies.md`).
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Runs the binary. A failure is one line on stderr (`error: ` and what
/// went wrong, with its causes) and exit code 1, never a backtrace: they
/// are expected (no database, a port in use, a bad flag value), and the
/// line says what to do. Only a bug panics.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    match run_binary().await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            std::process::ExitCode::FAILURE
        }
    }
}

/// The error and its causes, `: `-separated, each said once (a cause's
/// message often repeats its own cause's).
fn one_line(e: &anyhow::Error) -> String {
    let mut line = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !line.contains(&cause) {
            line.push_str(": ");
            line.push_str(&cause);
        }
    }
    line
}

async fn run_binary() -> anyhow::Result<()> {
    restore_sigpipe();
    let cli = Cli::parse();
    // Logs go to stderr: JSON lines with `--log-format json` (for log
    // collectors), readable text otherwise. `RUST_LOG` sets the level; the
    // service logs its requests at info.
    let default_level = if matches!(cli.command, Command::Serve { .. }) {
        "info,sqlx=warn"
    } else {
        "warn"
    };
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| default_level.into());
    let logs = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match cli.log_format {
        LogFormat::Json => logs.json().init(),
        LogFormat::Text => logs.init(),
    }
    if let Command::Openapi = cli.command {
        // Needs no database: never start a private cluster for it.
        print!("{}", shareledger_gateway::openapi::document_json());
        return Ok(());
    }
    if let Command::Completions { shell } = cli.command {
        // Needs no database either.
        let mut command = Cli::command();
        clap_complete::generate(shell, &mut command, "shareledger", &mut std::io::stdout());
        return Ok(());
    }

    let mut private = None;
    let url = match &cli.database_url {
        Some(url) => url.clone(),
        None => {
            let data_dir = private_cluster::resolve(cli.data_dir.as_deref())?;
            if let Some(note) = &data_dir.moved {
                eprintln!("{note}");
            }
            let data_dir = data_dir.path;
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
    if let Command::Openapi = cli.command {
        print!("{}", shareledger_gateway::openapi::document_json());
        return Ok(());
    }
    let connections = match cli.command {
        Command::Serve { db_connections, .. } => db_connections.max(2),
        // The read models' runtime needs two connections per projection,
        // four while rebuilding, and some for its batches.
        Command::Replay { .. } | Command::History(_) | Command::Export { .. } => 16,
        _ => 4,
    };
    let mut pool_options = PgEventStore::pool_options().max_connections(connections);
    let mut connect: sqlx::postgres::PgConnectOptions = url
        .parse()
        .with_context(|| format!("parsing the database URL {}", redact(url)))?;
    if let Command::Serve {
        db_acquire_timeout_ms,
        db_statement_timeout_ms,
        ..
    } = cli.command
    {
        // Fail fast while the database is away: a request waits this long
        // for a connection, a statement this long for its answer.
        pool_options =
            pool_options.acquire_timeout(std::time::Duration::from_millis(db_acquire_timeout_ms));
        if db_statement_timeout_ms > 0 {
            connect = connect.options([("statement_timeout", db_statement_timeout_ms.to_string())]);
        }
    }
    let replica = match &cli.command {
        Command::Serve {
            replica_url: Some(replica_url),
            ..
        } => {
            let replica: sqlx::postgres::PgConnectOptions = replica_url
                .parse()
                .with_context(|| format!("parsing the replica's URL {}", redact(replica_url)))?;
            let replica = match cli.command {
                Command::Serve {
                    db_statement_timeout_ms,
                    ..
                } if db_statement_timeout_ms > 0 => {
                    replica.options([("statement_timeout", db_statement_timeout_ms.to_string())])
                }
                _ => replica,
            };
            Some(
                pool_options
                    .clone()
                    .connect_with(replica)
                    .await
                    .with_context(|| {
                        format!("connecting to the replica {}", redact(replica_url))
                    })?,
            )
        }
        _ => None,
    };
    let pool = pool_options
        .connect_with(connect)
        .await
        .with_context(|| format!("connecting to {}", redact(url)))?;
    // Every command but `status` works on an up-to-date schema (as the
    // service does): migrating is idempotent and cheap when nothing is new.
    if !matches!(cli.command, Command::Status | Command::Migrate) {
        PgEventStore::migrate(&pool).await.context("migrating")?;
    }
    match &cli.command {
        Command::Openapi | Command::Completions { .. } => unreachable!("answered above"),
        Command::Serve {
            listen,
            body_limit,
            freshness_timeout_ms,
            max_lag,
            max_silence_ms,
            request_timeout_ms,
            no_history_archive,
            relay_nats_url,
            no_derived_feeds,
            index_snapshot_every,
            ..
        } => {
            let options = GatewayOptions {
                body_limit: *body_limit,
                freshness_timeout: std::time::Duration::from_millis(*freshness_timeout_ms),
                freshness: shareledger_events::store::supervise::Freshness {
                    max_lag: *max_lag,
                    max_silence: std::time::Duration::from_millis(*max_silence_ms),
                },
                request_timeout: std::time::Duration::from_millis(*request_timeout_ms),
                history_archive: !*no_history_archive,
                relay: relay_nats_url.as_ref().map(|url| {
                    shareledger_projections::relay::RelayConfig {
                        nats_url: url.clone(),
                        ..Default::default()
                    }
                }),
                derived_feeds: !*no_derived_feeds,
                index_snapshots: (*index_snapshot_every > 0).then(|| {
                    shareledger_projections::access::snapshot::SnapshotOptions {
                        every: *index_snapshot_every,
                        ..Default::default()
                    }
                }),
                read_replica: replica,
                ..GatewayOptions::default()
            };
            let server = Server::start(pool.clone(), *listen, options)
                .await
                .context("starting the service")?;
            let tokens = auth::list(&pool, None).await?.len();
            println!("ShareLedger is listening on {}", server.url());
            println!("  database: {}", redact(url));
            println!("  try:      curl {}/health", server.url());
            if tokens == 0 {
                println!("  no API tokens yet; issue a first operator token with");
                println!("    cargo run --release -- token issue --kind operator --name admin");
                println!(
                    "  or load the demo story (it prints tokens): cargo run --release -- demo"
                );
            }
            shutdown_signal().await;
            eprintln!("shutting down: finishing requests in flight");
            server.shutdown().await.context("shutting down")?;
        }
        Command::Token(command) => token(cli, &pool, command).await?,
        Command::AsOf(command) => {
            audit::as_of(PgEventStore::new(pool.clone()), command, cli.json).await?
        }
        Command::Explain { user, target, at } => {
            audit::explain(
                PgEventStore::new(pool.clone()),
                *at,
                *user,
                target.target(),
                cli.json,
            )
            .await?
        }
        Command::Diff(args) => audit::diff(PgEventStore::new(pool.clone()), args, cli.json).await?,
        Command::History(args) => {
            audit::history(PgEventStore::new(pool.clone()), args, cli.json).await?
        }
        Command::Verify { anchor, seal } => {
            if *seal {
                let sealed = audit::seal(PgEventStore::new(pool.clone()), !cli.json).await?;
                eprintln!("sealed {sealed} events");
            }
            let intact =
                audit::verify(PgEventStore::new(pool.clone()), anchor.clone(), cli.json).await?;
            if !intact {
                std::process::exit(2);
            }
        }
        Command::Export { what, format, out } => {
            audit::export(PgEventStore::new(pool.clone()), what, *format, out.clone()).await?
        }
        Command::Replay { only } => {
            audit::replay(PgEventStore::new(pool.clone()), *only, cli.json).await?
        }
        Command::Relay {
            nats_url,
            stream,
            prefix,
            from,
            status,
        } => {
            let config = shareledger_projections::relay::RelayConfig {
                nats_url: nats_url.clone(),
                stream: stream.clone(),
                prefix: prefix.clone(),
                ..Default::default()
            };
            relay(
                PgEventStore::new(pool.clone()),
                config,
                *from,
                *status,
                cli.json,
            )
            .await?
        }
        Command::Demo => demo::run(&pool, cli.json).await?,
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

/// Output piped into `head` ends quietly, as other Unix tools do, rather
/// than with a panic on the broken pipe (Rust ignores SIGPIPE by default).
fn restore_sigpipe() {
    #[cfg(unix)]
    // SAFETY: called first thing in `main`, before any thread is spawned;
    // resetting a signal's disposition to its default is always sound.
    unsafe {
        libc::signal(libc::SIGPIPE, libc::SIG_DFL);
    }
}

/// Resolves on Ctrl-C or SIGTERM.
/// `shareledger relay`: the relay, supervised (a transient fault of NATS or
/// PostgreSQL ends a run and the next starts from the checkpoint), until
/// Ctrl-C or SIGTERM.
async fn relay(
    store: PgEventStore,
    config: shareledger_projections::relay::RelayConfig,
    from: Option<u64>,
    status: bool,
    json: bool,
) -> anyhow::Result<()> {
    use shareledger_events::store::lease::{lead, LeaseOptions, Leases, Watched};
    use shareledger_events::store::supervise::PartHealth;
    let relay = shareledger_projections::relay::Relay::new(store.clone(), config.clone());
    if let Some(position) = from {
        relay.reset_checkpoint(position).await?;
    }
    if status {
        use shareledger_projections::relay::Lane;
        let checkpoint = relay.checkpoint().await?;
        let access = relay.lane_checkpoint(Lane::Access).await?;
        let notifications = relay.lane_checkpoint(Lane::Notifications).await?;
        if json {
            println!(
                "{}",
                serde_json::json!({
                    "checkpoint": checkpoint,
                    "access_checkpoint": access,
                    "notifications_checkpoint": notifications,
                })
            );
        } else {
            println!("the relay has delivered the log up to position {checkpoint}");
            println!("  access changes up to position {access}");
            println!("  notifications up to position {notifications}");
        }
        return Ok(());
    }
    let health = PartHealth::new("relay", relay.checkpoint().await?);
    let relay = relay.reporting_to(health.clone());
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(async move {
        shutdown_signal().await;
        let _ = stop_tx.send(true);
    });
    eprintln!(
        "relaying the log to {} (stream {}, subjects {}.events.*), or standing by while another process holds the relay's lease; Ctrl-C stops",
        config.nats_url, config.stream, config.prefix
    );
    // The same lease as a `serve --relay-nats-url`: one relay at a time
    // on a database; this one waits as a standby while another relays.
    let leases = Leases::new(store.pool(), LeaseOptions::default());
    let watched = relay.clone();
    lead(
        &leases,
        "relay",
        &health,
        stop_rx,
        || {
            let relay = relay.clone();
            async move { relay.run(None).await.map(|_| ()) }
        },
        || {
            let relay = watched.clone();
            async move { relay.checkpoint().await.map(Watched::At) }
        },
    )
    .await
    .map_err(|e| anyhow::anyhow!("the relay stopped: {e}"))
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("installing the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = ctrl_c.await;
    }
}

async fn token(cli: &Cli, pool: &sqlx::PgPool, command: &TokenCommand) -> anyhow::Result<()> {
    match command {
        TokenCommand::Issue {
            kind,
            site,
            user,
            name,
            days,
        } => {
            let kind = TokenKind::from(*kind);
            let issued = auth::issue(
                pool,
                TokenRequest {
                    kind,
                    site: site.map(SiteId),
                    user: user.map(UserId),
                    name: name.clone(),
                    lifetime: std::time::Duration::from_secs(days.saturating_mul(86_400)),
                },
            )
            .await?;
            if cli.json {
                println!("{}", serde_json::to_string(&issued)?);
            } else {
                println!("{}", issued.token);
                eprintln!(
                    "{} token {} ({}), expires {}; shown once, stored only as a hash",
                    kind.as_str(),
                    issued.record.token_id,
                    issued.record.name,
                    issued.record.expires_at.to_rfc3339()
                );
            }
        }
        TokenCommand::List => {
            let tokens = auth::list(pool, None).await?;
            if cli.json {
                println!("{}", serde_json::to_string(&tokens)?);
            } else {
                let mut table = table::Table::new([
                    "token id",
                    "kind",
                    "name",
                    "expires",
                    "last used",
                    "state",
                ]);
                for t in tokens {
                    let state = if t.record.revoked_at.is_some() {
                        "revoked"
                    } else if t.record.expires_at <= chrono::Utc::now() {
                        "expired"
                    } else {
                        "active"
                    };
                    table.row([
                        t.record.token_id.to_string(),
                        t.record.kind.as_str().to_owned(),
                        t.record.name,
                        t.record.expires_at.to_rfc3339(),
                        t.last_used_at
                            .map_or_else(|| "never".to_owned(), |at| at.to_rfc3339()),
                        state.to_owned(),
                    ]);
                }
                print!("{table}");
            }
        }
        TokenCommand::Revoke { token_id } => {
            if auth::revoke(pool, *token_id).await? {
                println!("revoked {token_id}");
            } else {
                anyhow::bail!("no active token {token_id}");
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
