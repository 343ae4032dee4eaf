//! Running the `shareledger` binary against a test database, and the demo
//! story's ids (recomputed the way `cli/src/demo.rs` derives them).

#![allow(dead_code)]

use std::ffi::OsStr;
use std::process::Output;

use shareledger_tests::TestDb;
use uuid::Uuid;

pub mod service;

/// One run of the binary: exit code, stdout and stderr.
#[derive(Debug)]
pub struct Run {
    pub args: Vec<String>,
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
}

impl Run {
    fn from_output(args: Vec<String>, out: Output) -> Self {
        Self {
            args,
            code: out.status.code(),
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }

    /// Asserts exit code 0 and returns the run.
    #[track_caller]
    pub fn success(self) -> Self {
        assert_eq!(
            self.code,
            Some(0),
            "`shareledger {}` failed\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.stdout,
            self.stderr
        );
        self
    }

    /// Asserts a non-zero exit code (not a signal, not a panic) and returns
    /// the run.
    #[track_caller]
    pub fn failure(self) -> Self {
        assert!(
            matches!(self.code, Some(c) if c != 0 && c != 101),
            "`shareledger {}` should have failed cleanly, exit code {:?}\n--- stdout\n{}\n--- stderr\n{}",
            self.args.join(" "),
            self.code,
            self.stdout,
            self.stderr
        );
        self
    }

    /// Stdout as one JSON value.
    #[track_caller]
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(self.stdout.trim()).unwrap_or_else(|e| {
            panic!(
                "`shareledger {}` did not print one JSON value ({e}):\n{}",
                self.args.join(" "),
                self.stdout
            )
        })
    }

    /// Stdout as JSON lines, one object per line.
    #[track_caller]
    pub fn json_lines(&self) -> Vec<serde_json::Value> {
        self.stdout
            .lines()
            .map(|line| {
                let v: serde_json::Value = serde_json::from_str(line).unwrap_or_else(|e| {
                    panic!(
                        "`shareledger {}`: a line is not JSON ({e}): {line}",
                        self.args.join(" ")
                    )
                });
                assert!(v.is_object(), "not a JSON object: {line}");
                v
            })
            .collect()
    }
}

/// The binary with a clean environment for the child: the test database,
/// no backtraces, no inherited log filter or private-cluster settings.
pub fn command(url: Option<&str>) -> tokio::process::Command {
    let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_shareledger"));
    cmd.env("RUST_BACKTRACE", "0")
        .env_remove("RUST_LOG")
        .env_remove("SHARELEDGER_DATA_DIR")
        .env_remove("SHARELEDGER_PG_PORT")
        .env_remove("DATABASE_URL")
        .kill_on_drop(true);
    if let Some(url) = url {
        cmd.env("DATABASE_URL", url);
    }
    cmd
}

/// Runs the binary and returns what it printed, whatever its exit code.
/// Never a panic: every run asserts that stderr has no panic message.
pub async fn shareledger<I, S>(url: &str, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let run = shareledger_allowing_panic(Some(url), args).await;
    assert_no_panic(&run);
    run
}

/// Like [`shareledger`], without the no-panic assertion, and with an
/// optional database URL.
pub async fn shareledger_allowing_panic<I, S>(url: Option<&str>, args: I) -> Run
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let args: Vec<String> = args
        .into_iter()
        .map(|a| a.as_ref().to_string_lossy().into_owned())
        .collect();
    let out = command(url)
        .args(&args)
        .output()
        .await
        .expect("running the shareledger binary");
    Run::from_output(args, out)
}

#[track_caller]
pub fn assert_no_panic(run: &Run) {
    assert!(
        !run.stderr.contains("panicked") && run.code != Some(101),
        "`shareledger {}` panicked (exit code {:?}):\n{}",
        run.args.join(" "),
        run.code,
        run.stderr
    );
}

/// `cli/src/demo.rs`'s namespace for the story's ids.
pub const NAMESPACE: Uuid = Uuid::from_u128(0x3b9e_2f61_8c4d_4a70_b1e5_6d2c_9f08_a417);

fn id(name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

pub fn site(code: &str) -> String {
    id(&format!("site:{code}")).to_string()
}

pub fn user(code: &str, username: &str) -> String {
    id(&format!("user:{code}:{username}")).to_string()
}

pub fn scorecard(code: &str, name: &str) -> String {
    id(&format!("scorecard:{code}:{name}")).to_string()
}

pub fn object(code: &str, name: &str) -> String {
    id(&format!("object:{code}:{name}")).to_string()
}

/// FUND's board member (Browser on Youth Outcomes and on CLINIC's shared
/// scorecard).
pub fn board() -> String {
    user("FUND", "board@fund.example")
}

pub fn fund_admin() -> String {
    user("FUND", "admin@fund.example")
}

pub fn clinic_admin() -> String {
    user("CLINIC", "admin@clinic.example")
}

pub fn youth() -> String {
    scorecard("FUND", "Youth Outcomes 2026")
}

pub fn clinic_scorecard() -> String {
    scorecard("CLINIC", "Clinic Access Measures")
}

/// A fresh database with the demo story loaded; returns it and the log's
/// head position.
pub async fn demo_db() -> (TestDb, u64) {
    let db = TestDb::new().await;
    let run = shareledger(&db.url(), ["demo", "--json"]).await.success();
    let head = run.json()["position"]
        .as_u64()
        .expect("demo --json: position");
    (db, head)
}

/// The log's head position, read directly.
pub async fn head(db: &TestDb) -> u64 {
    let head: i64 = sqlx::query_scalar("SELECT coalesce(max(global_position), 0) FROM sl_events")
        .fetch_one(db.pool())
        .await
        .expect("head query");
    head as u64
}

/// The global position of the first event of `event_type` whose data
/// contains `containing` (a JSON fragment).
pub async fn position_of(db: &TestDb, event_type: &str, containing: serde_json::Value) -> u64 {
    let p: i64 = sqlx::query_scalar(
        "SELECT global_position FROM sl_events WHERE event_type = $1 AND data @> $2 \
         ORDER BY global_position LIMIT 1",
    )
    .bind(event_type)
    .bind(containing)
    .fetch_one(db.pool())
    .await
    .expect("position query");
    p as u64
}

/// A file path in the temporary directory, removed when dropped.
pub struct TempPath(pub std::path::PathBuf);

impl TempPath {
    pub fn new(extension: &str) -> Self {
        Self(std::env::temp_dir().join(format!(
            "shareledger-cli-test-{}.{extension}",
            Uuid::new_v4().simple()
        )))
    }

    pub fn as_str(&self) -> &str {
        self.0.to_str().expect("a UTF-8 temp path")
    }
}

impl Drop for TempPath {
    fn drop(&mut self) {
        let _ = std::fs::remove_file(&self.0);
    }
}
