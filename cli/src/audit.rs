//! The auditor's subcommands: `history`, `as-of`, `explain`, `diff`,
//! `verify`, `replay` and `export`. Each prints a readable table, or JSON
//! with `--json` (CSV or JSON lines for `export`), and works against the
//! database the service uses.

use std::io::Write as _;
use std::time::{Duration, Instant};

use anyhow::Context;
use clap::{Args, Subcommand};
use shareledger_core::catalog::{Action, ObjectId, ScorecardId, SiteId, UserId};
use shareledger_events::store::PositionFrom;
use shareledger_events::store::{ChainAnchor, PgEventStore, VerifyOptions};
use shareledger_events::Direction;
use shareledger_projections::access::{AccessIndex, LookupQuery, Target, Visible, MAX_PAGE};
use shareledger_projections::dashboard;
use shareledger_projections::history::{AccessDiff, History, Moment, Scope};
use shareledger_projections::runtime::{ProjectionRuntime, RuntimeOptions};
use shareledger_projections::timeline::{self, TimelineEntry, TimelineQuery};

use crate::progress;
use crate::table::Table;

/// A moment: a global position (digits) or an RFC 3339 time.
pub fn parse_moment(raw: &str) -> Result<Moment, String> {
    if let Ok(p) = raw.parse::<u64>() {
        return Ok(Moment::Position(p));
    }
    chrono::DateTime::parse_from_rfc3339(raw)
        .map(|t| Moment::Time(t.with_timezone(&chrono::Utc)))
        .map_err(|_| format!("{raw:?} is neither a position nor an RFC 3339 time"))
}

/// A scorecard or an object.
#[derive(Debug, Clone, Args)]
#[group(required = true, multiple = false)]
pub struct TargetArgs {
    /// A scorecard id.
    #[arg(long)]
    pub scorecard: Option<uuid::Uuid>,
    /// An object id.
    #[arg(long)]
    pub object: Option<uuid::Uuid>,
}

impl TargetArgs {
    pub fn target(&self) -> Target {
        match (self.scorecard, self.object) {
            (Some(s), _) => Target::Scorecard(ScorecardId(s)),
            (None, Some(o)) => Target::Object(ObjectId(o)),
            (None, None) => unreachable!("clap requires one"),
        }
    }
}

#[derive(Debug, Subcommand)]
pub enum AsOf {
    /// may the user take the action on the target, as of then?
    Check {
        #[arg(long, value_parser = parse_moment)]
        at: Moment,
        #[arg(long)]
        user: uuid::Uuid,
        #[command(flatten)]
        target: TargetArgs,
        /// What the user would do.
        #[arg(long, value_enum, default_value_t = ActionArg::View)]
        action: ActionArg,
    },
    /// everything the user could see then (complete).
    Lookup {
        #[arg(long, value_parser = parse_moment)]
        at: Moment,
        #[arg(long)]
        user: uuid::Uuid,
        /// Only targets of this site.
        #[arg(long)]
        site: Option<uuid::Uuid>,
    },
    /// who could see the target then.
    Viewers {
        #[arg(long, value_parser = parse_moment)]
        at: Moment,
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// `--action`: what a user asks to do, named as the API names it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ActionArg {
    /// See it (Browser or more).
    View,
    /// Update its values (Updater or more).
    Update,
    /// Edit it (Editor or more).
    Edit,
    /// Administer it (Scorecard Admin).
    Admin,
}

impl ActionArg {
    pub fn action(self) -> Action {
        match self {
            ActionArg::View => Action::View,
            ActionArg::Update => Action::Update,
            ActionArg::Edit => Action::Edit,
            ActionArg::Admin => Action::Admin,
        }
    }
}

/// `replay --only`: one read model, by the name `replay` reports.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
#[value(rename_all = "snake_case")]
pub enum ReadModelArg {
    /// The in-memory access index.
    AccessIndex,
    /// The dashboards.
    Dashboards,
    /// The access model as SQL tables.
    AccessTables,
    /// The sharing timelines.
    Timeline,
    /// A site's content lists (scorecards, objects, relationships, shared
    /// with, children).
    SiteContents,
}

impl ReadModelArg {
    /// The read model's name, as `replay` reports it.
    pub fn name(self) -> &'static str {
        match self {
            ReadModelArg::AccessIndex => "access_index",
            ReadModelArg::Dashboards => dashboard::Dashboards::NAME,
            ReadModelArg::AccessTables => dashboard::AccessTables::NAME,
            ReadModelArg::Timeline => timeline::Timeline::NAME,
            ReadModelArg::SiteContents => dashboard::SiteContents::NAME,
        }
    }
}

fn target_name(target: Target) -> String {
    match target {
        Target::Scorecard(s) => format!("scorecard {}", s.0),
        Target::Object(o) => format!("object {}", o.0),
    }
}

fn level_name<T: serde::Serialize>(level: &Option<T>) -> String {
    match level {
        Some(l) => serde_json::to_value(l)
            .ok()
            .and_then(|v| v.as_str().map(str::to_owned))
            .unwrap_or_default(),
        None => "-".into(),
    }
}

/// Every page of an as-of lookup.
pub async fn complete_lookup(
    history: &History,
    at: Moment,
    user: UserId,
    site: Option<SiteId>,
) -> anyhow::Result<(u64, Vec<Visible>)> {
    let position = history.position(at).await?;
    let mut query = LookupQuery {
        site,
        kind: None,
        after: None,
        limit: MAX_PAGE,
    };
    let mut items = Vec::new();
    loop {
        let (_, page) = history
            .lookup(Moment::Position(position), user, &query)
            .await?;
        items.extend(page.items);
        match page.next {
            Some(next) => query.after = Some(next),
            None => return Ok((position, items)),
        }
    }
}

/// Prints visible items as a table.
pub fn visible_table(items: &[Visible]) -> Table {
    let mut table = Table::new(["target", "kind", "owner", "level"]);
    for v in items {
        let kind = serde_json::to_value(v.kind)
            .map(|k| match k {
                serde_json::Value::String(s) => s,
                other => other
                    .get("object")
                    .and_then(|o| o.as_str())
                    .unwrap_or("object")
                    .to_owned(),
            })
            .unwrap_or_default();
        table.row([
            target_name(v.target),
            kind,
            v.origin_code.to_string(),
            level_name(&Some(v.level)),
        ]);
    }
    table
}

pub async fn as_of(store: PgEventStore, command: &AsOf, json: bool) -> anyhow::Result<()> {
    let history = History::new(store);
    match command {
        AsOf::Check {
            at,
            user,
            target,
            action,
        } => {
            let action = action.action();
            let (position, level) = progress::while_working(
                "replaying the log up to that moment",
                !json,
                history.level(*at, UserId(*user), target.target()),
            )
            .await?;
            let allowed = level.is_some_and(|l| l >= action.required_level());
            if json {
                println!(
                    "{}",
                    serde_json::json!({"position": position, "user_id": user, "target": target.target(), "action": action, "allowed": allowed, "level": level})
                );
            } else {
                println!(
                    "as of position {position}: user {user} {} {:?} {} (level {})",
                    if allowed { "MAY" } else { "may NOT" },
                    action,
                    target_name(target.target()),
                    level_name(&level)
                );
            }
        }
        AsOf::Lookup { at, user, site } => {
            let (position, items) = progress::while_working(
                "replaying the log up to that moment",
                !json,
                complete_lookup(&history, *at, UserId(*user), site.map(SiteId)),
            )
            .await?;
            if json {
                for item in &items {
                    println!("{}", serde_json::to_string(item)?);
                }
            } else {
                println!(
                    "as of position {position}, user {user} could see {} targets:",
                    items.len()
                );
                print!("{}", visible_table(&items));
            }
        }
        AsOf::Viewers { at, target } => {
            let (position, viewers) = progress::while_working(
                "replaying the log up to that moment",
                !json,
                history.viewers(*at, target.target()),
            )
            .await?;
            if json {
                for v in &viewers {
                    println!("{}", serde_json::to_string(v)?);
                }
            } else {
                println!(
                    "as of position {position}, {} users could see {}:",
                    viewers.len(),
                    target_name(target.target())
                );
                let mut table = Table::new(["site", "user", "level"]);
                for v in viewers {
                    table.row([
                        v.site.0.to_string(),
                        v.user.0.to_string(),
                        level_name(&Some(v.level)),
                    ]);
                }
                print!("{table}");
            }
        }
    }
    Ok(())
}

/// `explain`: every path (or what is missing), each step with its event.
pub async fn explain(
    store: PgEventStore,
    at: Option<Moment>,
    user: uuid::Uuid,
    target: Target,
    json: bool,
) -> anyhow::Result<()> {
    let history = History::new(store.clone());
    let at = match at {
        Some(at) => at,
        None => Moment::Position(store.head_position().await?),
    };
    let (position, e) = progress::while_working(
        "replaying the log up to that moment",
        !json,
        history.explain(at, UserId(user), target),
    )
    .await?;
    if json {
        println!(
            "{}",
            serde_json::json!({"position": position, "explanation": e})
        );
        return Ok(());
    }
    println!(
        "as of position {position}: user {user} on {}: level {}",
        target_name(target),
        level_name(&e.level)
    );
    for (n, path) in e.paths.iter().enumerate() {
        println!("path {} (gives {}):", n + 1, level_name(&Some(path.level)));
        let mut table = Table::new(["fact", "event", "position", "time", "actor"]);
        for step in &path.steps {
            let fact = serde_json::to_value(&step.fact)?;
            table.row([
                compact(&fact),
                step.event.event_id.to_string(),
                step.event.position.to_string(),
                step.event.recorded_at.to_rfc3339(),
                step.event
                    .actor
                    .as_ref()
                    .map(|a| compact(&serde_json::to_value(a).unwrap_or_default()))
                    .unwrap_or_else(|| "-".into()),
            ]);
        }
        print!("{table}");
    }
    if e.paths.is_empty() {
        println!("no access; what is missing (any one would give access):");
        for m in &e.missing {
            println!("  {}", compact(&serde_json::to_value(m)?));
        }
    }
    Ok(())
}

/// A JSON value on one line, without quotes around plain strings.
fn compact(value: &serde_json::Value) -> String {
    match value {
        serde_json::Value::String(s) => s.clone(),
        serde_json::Value::Object(map) => map
            .iter()
            .map(|(k, v)| format!("{k}={}", compact(v)))
            .collect::<Vec<_>>()
            .join(" "),
        other => other.to_string(),
    }
}

#[derive(Debug, Clone, Args)]
pub struct DiffArgs {
    #[arg(long, value_parser = parse_moment)]
    pub from: Moment,
    #[arg(long, value_parser = parse_moment)]
    pub to: Moment,
    /// Everything this user can see.
    #[arg(long, group = "scope")]
    pub user: Option<uuid::Uuid>,
    /// Who sees this scorecard.
    #[arg(long, group = "scope")]
    pub scorecard: Option<uuid::Uuid>,
    /// Who sees this object.
    #[arg(long, group = "scope")]
    pub object: Option<uuid::Uuid>,
    /// Who sees this site's content (with --partner: that partner's users only).
    #[arg(long, group = "scope")]
    pub site: Option<uuid::Uuid>,
    #[arg(long, requires = "site")]
    pub partner: Option<uuid::Uuid>,
}

impl DiffArgs {
    fn scope(&self) -> anyhow::Result<Scope> {
        Ok(
            match (
                self.user,
                self.scorecard,
                self.object,
                self.site,
                self.partner,
            ) {
                (Some(u), ..) => Scope::User(UserId(u)),
                (_, Some(s), ..) => Scope::Target(Target::Scorecard(ScorecardId(s))),
                (_, _, Some(o), ..) => Scope::Target(Target::Object(ObjectId(o))),
                (_, _, _, Some(site), Some(partner)) => Scope::Partner {
                    site: SiteId(site),
                    partner: SiteId(partner),
                },
                (_, _, _, Some(site), None) => Scope::Site(SiteId(site)),
                _ => anyhow::bail!("name a scope: --user, --scorecard, --object or --site"),
            },
        )
    }
}

pub fn diff_table(diff: &AccessDiff) -> Table {
    let mut table = Table::new(["change", "user", "user's site", "target", "before", "after"]);
    for (label, changes) in [
        ("gained", &diff.gained),
        ("lost", &diff.lost),
        ("changed", &diff.changed),
    ] {
        for c in changes {
            table.row([
                label.to_owned(),
                c.user.0.to_string(),
                c.user_site.0.to_string(),
                target_name(c.target),
                level_name(&c.before),
                level_name(&c.after),
            ]);
        }
    }
    table
}

pub async fn diff(store: PgEventStore, args: &DiffArgs, json: bool) -> anyhow::Result<()> {
    let history = History::new(store);
    let diff = progress::while_working(
        "replaying the log up to both moments",
        !json,
        history.diff(args.scope()?, args.from, args.to),
    )
    .await?;
    if json {
        println!("{}", serde_json::to_string(&diff)?);
    } else {
        println!(
            "from position {} to {}: {} gained, {} lost, {} changed",
            diff.from,
            diff.to,
            diff.gained.len(),
            diff.lost.len(),
            diff.changed.len()
        );
        print!("{}", diff_table(&diff));
    }
    Ok(())
}

/// `replay`: rebuilds the SQL read models from position 0 beside the live
/// ones (then switches), and replays the whole log into a fresh access
/// index, with progress and events/s.
pub async fn replay(
    store: PgEventStore,
    only: Option<ReadModelArg>,
    json: bool,
) -> anyhow::Result<()> {
    let head = store.head_position().await?;
    let mut report = Vec::new();

    // The access index: the whole log, page by page.
    if only.is_none_or(|m| m == ReadModelArg::AccessIndex) {
        let started = Instant::now();
        let bar = progress::events("access_index", head, !json);
        let mut index = AccessIndex::new();
        let mut at = 0;
        while at < head {
            let page = store
                .read_all(Direction::Forwards, PositionFrom::At(at + 1), 5_000)
                .await?;
            if page.is_empty() {
                break;
            }
            for event in &page {
                index.apply(event)?;
                at = event.global_position;
            }
            bar.set_position(at);
        }
        let secs = started.elapsed().as_secs_f64();
        progress::finish(&bar);
        report.push(serde_json::json!({"read_model": "access_index", "events": at, "seconds": secs, "events_per_second": at as f64 / secs.max(1e-9)}));
    }

    // The SQL read models: rebuild beside, then switch.
    let runtime =
        ProjectionRuntime::start(store.clone(), sql_read_models(), RuntimeOptions::default())
            .await
            .context("starting the read models")?;
    for name in runtime.names() {
        if only.is_some_and(|m| m.name() != name) {
            continue;
        }
        let started = Instant::now();
        let bar = progress::events(name, head, !json);
        let generation = runtime.rebuild(name).await?;
        let wait = runtime.wait_for_generation(name, generation, Duration::from_secs(24 * 3600));
        tokio::pin!(wait);
        loop {
            tokio::select! {
                done = &mut wait => { done?; break; }
                _ = tokio::time::sleep(Duration::from_millis(250)), if !bar.is_hidden() => {
                    let statuses = runtime.status().await?;
                    if let Some(s) = statuses.iter().find(|s| s.name == name) {
                        bar.set_length(s.head);
                        bar.set_position(s.rebuild.as_ref().map_or(s.position, |r| r.position));
                    }
                }
            }
        }
        let secs = started.elapsed().as_secs_f64();
        bar.set_position(head);
        progress::finish(&bar);
        report.push(serde_json::json!({"read_model": name, "generation": generation, "events": head, "seconds": secs, "events_per_second": head as f64 / secs.max(1e-9)}));
    }
    runtime.shutdown().await?;
    if json {
        println!("{}", serde_json::Value::Array(report));
    } else {
        let mut table = Table::new(["read model", "events", "seconds", "events/s"]);
        for r in &report {
            table.row([
                r["read_model"].as_str().unwrap_or_default().to_owned(),
                r["events"].to_string(),
                format!("{:.2}", r["seconds"].as_f64().unwrap_or_default()),
                format!("{:.0}", r["events_per_second"].as_f64().unwrap_or_default()),
            ]);
        }
        print!("{table}");
    }
    Ok(())
}

/// The SQL read models the service runs.
pub fn sql_read_models(
) -> Vec<std::sync::Arc<dyn shareledger_projections::projection::SqlProjection>> {
    shareledger_projections::read_models()
}

/// Which timeline.
#[derive(Debug, Clone, Args)]
pub struct TimelineArgs {
    /// A site's sharing history.
    #[arg(long, group = "timeline")]
    pub site: Option<uuid::Uuid>,
    /// The links between two sites: `--link A --link B`.
    #[arg(long, group = "timeline", num_args = 2, value_names = ["SITE", "PARTNER"])]
    pub link: Option<Vec<uuid::Uuid>>,
    /// A scorecard's history.
    #[arg(long, group = "timeline")]
    pub scorecard: Option<uuid::Uuid>,
    /// Only entries involving this partner (with --site).
    #[arg(long, requires = "site")]
    pub partner: Option<uuid::Uuid>,
    /// Only entries recorded at or after this time (RFC 3339).
    #[arg(long)]
    pub from: Option<chrono::DateTime<chrono::Utc>>,
    /// Only entries recorded before this time (RFC 3339).
    #[arg(long)]
    pub to: Option<chrono::DateTime<chrono::Utc>>,
    /// At most this many entries (default: all).
    #[arg(long)]
    pub limit: Option<usize>,
}

/// Every entry of a timeline (all pages, up to `limit`), after bringing the
/// SQL read models up to the log's head.
pub async fn timeline_entries(
    store: &PgEventStore,
    args: &TimelineArgs,
    shown: bool,
) -> anyhow::Result<Vec<TimelineEntry>> {
    let head = store.head_position().await?;
    let runtime =
        ProjectionRuntime::start(store.clone(), sql_read_models(), RuntimeOptions::default())
            .await
            .context("starting the read models")?;
    catch_up(&runtime, head, shown)
        .await
        .context("bringing the read models up to the log's head")?;
    let pool = store.pool();
    let mut query = TimelineQuery {
        partner: args.partner.map(SiteId),
        from: args.from,
        to: args.to,
        after: None,
        limit: 1_000,
    };
    let mut entries = Vec::new();
    loop {
        let page = match (&args.site, &args.link, &args.scorecard) {
            (Some(site), _, _) => timeline::site_timeline(pool, SiteId(*site), &query).await?,
            (_, Some(pair), _) => {
                timeline::link_timeline(pool, SiteId(pair[0]), SiteId(pair[1]), &query).await?
            }
            (_, _, Some(sc)) => {
                timeline::scorecard_timeline(pool, ScorecardId(*sc), &query).await?
            }
            _ => anyhow::bail!("name a timeline: --site, --link A B or --scorecard"),
        };
        entries.extend(page.entries);
        if args.limit.is_some_and(|l| entries.len() >= l) {
            entries.truncate(args.limit.unwrap_or(usize::MAX));
            break;
        }
        match page.next {
            Some(next) => query.after = Some(next),
            None => break,
        }
    }
    runtime.shutdown().await?;
    Ok(entries)
}

/// Waits for every read model of `runtime` to reach `head`, with a bar of
/// the one furthest behind.
async fn catch_up(runtime: &ProjectionRuntime, head: u64, shown: bool) -> anyhow::Result<()> {
    let bar = progress::events("read models", head, shown);
    let wait = runtime.wait_for(head, Duration::from_secs(24 * 3600));
    tokio::pin!(wait);
    loop {
        tokio::select! {
            done = &mut wait => { done?; break; }
            _ = tokio::time::sleep(Duration::from_millis(250)), if !bar.is_hidden() => {
                let statuses = runtime.status().await?;
                bar.set_position(statuses.iter().map(|s| s.position).min().unwrap_or(head));
            }
        }
    }
    bar.finish_and_clear();
    Ok(())
}

fn actor_name(actor: &Option<shareledger_events::Actor>) -> String {
    match actor {
        Some(shareledger_events::Actor::User { user_id, .. }) => format!("user {user_id}"),
        Some(shareledger_events::Actor::System) => "system".into(),
        Some(shareledger_events::Actor::Operator { name }) => format!("operator {name}"),
        None => "-".into(),
    }
}

fn timeline_rows(table: &mut Table, entries: &[TimelineEntry], depth: usize) {
    for e in entries {
        table.row([
            e.position.to_string(),
            e.recorded_at.format("%Y-%m-%d %H:%M:%S").to_string(),
            actor_name(&e.actor),
            format!("{}{}", "  ".repeat(depth), e.command),
            format!("{}{}", if depth > 0 { "└ " } else { "" }, e.summary),
        ]);
        timeline_rows(table, &e.consequences, depth + 1);
    }
}

pub async fn history(store: PgEventStore, args: &TimelineArgs, json: bool) -> anyhow::Result<()> {
    let entries = timeline_entries(&store, args, !json).await?;
    if json {
        for e in &entries {
            println!("{}", serde_json::to_string(e)?);
        }
        return Ok(());
    }
    let mut table = Table::new([
        "position",
        "time (UTC)",
        "actor",
        "command",
        "what happened",
    ]);
    timeline_rows(&mut table, &entries, 0);
    print!("{table}");
    Ok(())
}

/// `verify --seal`: seals every committed event not sealed yet (what the
/// service's sealer does), with a bar; returns how many it sealed.
pub async fn seal(store: PgEventStore, shown: bool) -> anyhow::Result<u64> {
    let sealer = shareledger_events::store::Sealer::new(store, Default::default());
    let status = sealer.status().await?;
    let bar = progress::events("sealing", status.head, shown);
    bar.set_position(status.sealed);
    let mut sealed = 0;
    loop {
        let n = sealer.seal_pending(5_000).await?;
        if n == 0 {
            break;
        }
        sealed += n;
        bar.inc(n);
    }
    bar.finish_and_clear();
    Ok(sealed)
}

/// `verify`: walks the chain; exits non-zero when the log was tampered with.
pub async fn verify(
    store: PgEventStore,
    anchor: Option<String>,
    json: bool,
) -> anyhow::Result<bool> {
    let anchor = match anchor {
        None => None,
        Some(raw) => Some(parse_anchor(&raw)?),
    };
    let started = Instant::now();
    let bar = progress::events("verify", 0, !json);
    let report = shareledger_events::store::verify_with_progress(
        &store,
        VerifyOptions {
            anchor,
            ..VerifyOptions::default()
        },
        |at, head| {
            bar.set_length(head);
            bar.set_position(at);
        },
    )
    .await?;
    bar.finish_and_clear();
    let secs = started.elapsed().as_secs_f64();
    if json {
        println!("{}", serde_json::to_string(&report)?);
    } else {
        println!(
            "checked {} events in {secs:.2} s ({:.0} events/s)",
            report.checked,
            report.checked as f64 / secs.max(1e-9)
        );
        println!("log head        {}", report.log_head);
        println!("sealed up to    {}", report.sealed_up_to.position);
        println!("not sealed yet  {}", report.unsealed);
        match &report.problem {
            None => {
                println!(
                    "chain head      {}  (keep it outside the database; pass it as --anchor later)",
                    report.sealed_up_to
                );
                println!("INTACT: every sealed event matches its seal");
            }
            Some(problem) => println!("TAMPERED: {problem}"),
        }
    }
    Ok(report.is_intact())
}

/// An anchor printed by `verify`: `<position>:<64 hex digits>`.
fn parse_anchor(raw: &str) -> anyhow::Result<ChainAnchor> {
    let (position, digits) = raw
        .split_once(':')
        .context("an anchor is <position>:<64 hex digits>")?;
    let position: u64 = position.parse().context("the anchor's position")?;
    let mut chain_hash = [0u8; 32];
    hex::decode_to_slice(digits, &mut chain_hash)
        .map_err(|_| anyhow::anyhow!("the anchor's hash is 64 hex digits"))?;
    Ok(ChainAnchor {
        position,
        chain_hash,
    })
}

/// What `export` writes.
#[derive(Debug, Subcommand)]
pub enum Export {
    /// A timeline, one row per entry (consequences after their cause).
    Timeline(TimelineArgs),
    /// Everything a user could see at a moment.
    Lookup {
        #[arg(long, value_parser = parse_moment)]
        at: Moment,
        #[arg(long)]
        user: uuid::Uuid,
        #[arg(long)]
        site: Option<uuid::Uuid>,
    },
    /// Who could see a target at a moment.
    Viewers {
        #[arg(long, value_parser = parse_moment)]
        at: Moment,
        #[command(flatten)]
        target: TargetArgs,
    },
}

/// The export formats.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    Csv,
    Jsonl,
}

fn flatten(entries: &[TimelineEntry], out: &mut Vec<TimelineEntry>) {
    for e in entries {
        let mut top = e.clone();
        top.consequences = Vec::new();
        out.push(top);
        flatten(&e.consequences, out);
    }
}

pub async fn export(
    store: PgEventStore,
    what: &Export,
    format: Format,
    out: Option<std::path::PathBuf>,
) -> anyhow::Result<()> {
    let mut sink: Box<dyn std::io::Write> = match &out {
        Some(path) => Box::new(std::io::BufWriter::new(
            std::fs::File::create(path).with_context(|| format!("creating {}", path.display()))?,
        )),
        None => Box::new(std::io::stdout().lock()),
    };
    let opt = |v: Option<String>| v.unwrap_or_default();
    let rows: Vec<(serde_json::Value, Vec<String>)>;
    let header: Vec<&str>;
    match what {
        Export::Timeline(args) => {
            let mut flat = Vec::new();
            flatten(&timeline_entries(&store, args, true).await?, &mut flat);
            header = vec![
                "position",
                "recorded_at",
                "event_id",
                "event_type",
                "command",
                "actor",
                "site",
                "partner",
                "scorecard_id",
                "user_id",
                "object_id",
                "causation_id",
                "correlation_id",
                "summary",
            ];
            rows = flat
                .iter()
                .map(|e| {
                    let mut json = serde_json::to_value(e).unwrap_or_default();
                    if let Some(map) = json.as_object_mut() {
                        map.remove("consequences");
                    }
                    (
                        json,
                        vec![
                            e.position.to_string(),
                            e.recorded_at.to_rfc3339(),
                            e.event_id.to_string(),
                            e.event_type.clone(),
                            e.command.clone(),
                            actor_name(&e.actor),
                            e.site.0.to_string(),
                            opt(e.partner.map(|p| p.0.to_string())),
                            opt(e.scorecard_id.map(|s| s.0.to_string())),
                            opt(e.user_id.map(|u| u.0.to_string())),
                            opt(e.object_id.map(|o| o.0.to_string())),
                            opt(e.causation_id.map(|c| c.to_string())),
                            opt(e.correlation_id.map(|c| c.to_string())),
                            e.summary.clone(),
                        ],
                    )
                })
                .collect();
        }
        Export::Lookup { at, user, site } => {
            let history = History::new(store.clone());
            let (position, items) = progress::while_working(
                "replaying the log up to that moment",
                true,
                complete_lookup(&history, *at, UserId(*user), site.map(SiteId)),
            )
            .await?;
            header = vec![
                "position",
                "user_id",
                "target_type",
                "target_id",
                "owner",
                "owner_code",
                "level",
            ];
            rows = items
                .iter()
                .map(|v| {
                    let (kind, id) = match v.target {
                        Target::Scorecard(s) => ("scorecard", s.0),
                        Target::Object(o) => ("object", o.0),
                    };
                    let mut json = serde_json::to_value(v).unwrap_or_default();
                    json["position"] = position.into();
                    json["user_id"] = serde_json::json!(user);
                    (
                        json,
                        vec![
                            position.to_string(),
                            user.to_string(),
                            kind.into(),
                            id.to_string(),
                            v.site.0.to_string(),
                            v.origin_code.to_string(),
                            level_name(&Some(v.level)),
                        ],
                    )
                })
                .collect();
        }
        Export::Viewers { at, target } => {
            let history = History::new(store.clone());
            let (position, viewers) = progress::while_working(
                "replaying the log up to that moment",
                true,
                history.viewers(*at, target.target()),
            )
            .await?;
            header = vec!["position", "target", "site", "user_id", "level"];
            rows = viewers
                .iter()
                .map(|v| {
                    let mut json = serde_json::to_value(v).unwrap_or_default();
                    json["position"] = position.into();
                    json["target"] = serde_json::to_value(target.target()).unwrap_or_default();
                    (
                        json,
                        vec![
                            position.to_string(),
                            target_name(target.target()),
                            v.site.0.to_string(),
                            v.user.0.to_string(),
                            level_name(&Some(v.level)),
                        ],
                    )
                })
                .collect();
        }
    }
    match format {
        Format::Jsonl => {
            for (json, _) in &rows {
                writeln!(sink, "{}", serde_json::to_string(json)?)?;
            }
        }
        Format::Csv => {
            let mut writer = csv::Writer::from_writer(sink);
            writer.write_record(&header)?;
            for (_, row) in &rows {
                writer.write_record(row)?;
            }
            writer.flush()?;
            if let Some(path) = &out {
                eprintln!("wrote {} rows to {}", rows.len(), path.display());
            }
            return Ok(());
        }
    }
    sink.flush()?;
    if let Some(path) = &out {
        eprintln!("wrote {} rows to {}", rows.len(), path.display());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use clap::ValueEnum;

    use super::*;

    #[test]
    fn every_action_is_named_on_the_command_line_as_the_api_names_it() {
        for arg in ActionArg::value_variants() {
            let api_name = serde_json::to_value(arg.action()).unwrap();
            assert_eq!(
                arg.to_possible_value().unwrap().get_name(),
                api_name.as_str().unwrap()
            );
            // Every action has its flag value: this match fails to compile
            // when an action is added without one.
            let back = match arg.action() {
                Action::View => ActionArg::View,
                Action::Update => ActionArg::Update,
                Action::Edit => ActionArg::Edit,
                Action::Admin => ActionArg::Admin,
            };
            assert_eq!(back, *arg);
        }
    }

    #[test]
    fn only_names_exactly_the_read_models_replay_rebuilds() {
        let mut listed: Vec<&str> = ReadModelArg::value_variants()
            .iter()
            .map(|m| {
                assert_eq!(m.to_possible_value().unwrap().get_name(), m.name());
                m.name()
            })
            .collect();
        let mut rebuilt: Vec<&str> = sql_read_models().iter().map(|p| p.name()).collect();
        rebuilt.push("access_index");
        listed.sort_unstable();
        rebuilt.sort_unstable();
        assert_eq!(listed, rebuilt);
    }
}
