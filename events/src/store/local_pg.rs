//! Finding a PostgreSQL server to use when none is configured.
//!
//! The order is: `DATABASE_URL` if set; else a private cluster, created with
//! the installed binaries (`initdb`, `pg_ctl`, `postgres`) in a directory of
//! ours and listening on 127.0.0.1 on a free port. PostgreSQL refuses to run
//! as root, so when we are root the cluster runs as the `postgres` system user
//! (or `nobody`). When no binaries can be found, [`LocalPgError::NoBinaries`]
//! says exactly what to install.

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Why no private cluster could be started.
#[derive(Debug, thiserror::Error)]
pub enum LocalPgError {
    #[error(
        "no PostgreSQL server configured (DATABASE_URL is unset) and no PostgreSQL binaries found \
         (looked for initdb and pg_ctl on PATH, in $PG_BIN and in /usr/lib/postgresql/*/bin). \
         Either set DATABASE_URL=postgres://user@host:port/db, or install PostgreSQL's server \
         binaries: on Debian or Ubuntu `sudo apt-get install postgresql` (any version from 13 on)"
    )]
    NoBinaries,
    #[error(
        "running as root and neither a `postgres` nor a `nobody` user exists to run PostgreSQL as"
    )]
    NoUnprivilegedUser,
    #[error("the cluster is stopped")]
    NotRunning,
    #[error("{command} failed ({status}): {output}")]
    CommandFailed {
        command: String,
        status: String,
        output: String,
    },
    #[error("io error preparing the private cluster in {path}: {source}")]
    Io {
        path: PathBuf,
        source: std::io::Error,
    },
}

/// A private PostgreSQL cluster started from the installed binaries.
#[derive(Debug, Clone)]
pub struct LocalCluster {
    bin_dir: PathBuf,
    data_dir: PathBuf,
    port: u16,
    run_as: Option<(u32, u32)>,
}

impl LocalCluster {
    /// Starts (creating it first if needed) a cluster whose data lives in
    /// `data_dir`, listening on 127.0.0.1:`port` (a free port when `None`).
    /// The superuser is `postgres`, with trust authentication on loopback only.
    pub fn start(data_dir: &Path, port: Option<u16>) -> Result<Self, LocalPgError> {
        let bin_dir = find_bin_dir().ok_or(LocalPgError::NoBinaries)?;
        let run_as = unprivileged_user()?;
        let io = |source| LocalPgError::Io {
            path: data_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        if let Some((uid, gid)) = run_as {
            std::os::unix::fs::chown(data_dir, Some(uid), Some(gid)).map_err(io)?;
        }
        let port = match port {
            Some(p) => p,
            None => free_port().map_err(io)?,
        };
        let cluster = Self {
            bin_dir,
            data_dir: data_dir.to_owned(),
            port,
            run_as,
        };
        if !data_dir.join("PG_VERSION").exists() {
            cluster.run(
                "initdb",
                &[
                    "-D",
                    &cluster.data_dir.to_string_lossy(),
                    "-U",
                    "postgres",
                    "--auth=trust",
                    "--encoding=UTF8",
                    "--locale=C",
                    "-N",
                ],
            )?;
        }
        let options = format!(
            "-c listen_addresses=127.0.0.1 -c port={port} -c unix_socket_directories='{}' \
             -c max_connections=200 -c fsync=on",
            cluster.data_dir.display()
        );
        cluster.run(
            "pg_ctl",
            &[
                "start",
                "-w",
                "-t",
                "60",
                "-D",
                &cluster.data_dir.to_string_lossy(),
                "-l",
                &cluster.data_dir.join("server.log").to_string_lossy(),
                "-o",
                &options,
            ],
        )?;
        Ok(cluster)
    }

    /// Creates and starts a streaming replica of this cluster (a hot
    /// standby, read-only) in `data_dir`, on a free port: `pg_basebackup`
    /// copies this cluster and writes the standby's connection to it, then
    /// the copy starts and follows this cluster's WAL.
    pub fn start_replica(&self, data_dir: &Path) -> Result<Self, LocalPgError> {
        use std::os::unix::fs::PermissionsExt;
        let io = |source| LocalPgError::Io {
            path: data_dir.to_owned(),
            source,
        };
        std::fs::create_dir_all(data_dir).map_err(io)?;
        // PostgreSQL refuses a data directory others can read.
        std::fs::set_permissions(data_dir, std::fs::Permissions::from_mode(0o700)).map_err(io)?;
        if let Some((uid, gid)) = self.run_as {
            std::os::unix::fs::chown(data_dir, Some(uid), Some(gid)).map_err(io)?;
        }
        let replica = Self {
            data_dir: data_dir.to_owned(),
            ..self.clone()
        };
        let port = self.port.to_string();
        replica.run(
            "pg_basebackup",
            &[
                "-h",
                "127.0.0.1",
                "-p",
                &port,
                "-U",
                "postgres",
                "-D",
                &replica.data_dir.to_string_lossy(),
                "--write-recovery-conf",
                "--checkpoint=fast",
                "--wal-method=stream",
            ],
        )?;
        Self::start(data_dir, None)
    }

    /// Reuses the cluster in `data_dir` if it is running already (on `port`),
    /// or starts it. The boolean says whether this call started it.
    pub fn open_or_start(data_dir: &Path, port: u16) -> Result<(Self, bool), LocalPgError> {
        let bin_dir = find_bin_dir().ok_or(LocalPgError::NoBinaries)?;
        let cluster = Self {
            bin_dir,
            data_dir: data_dir.to_owned(),
            port,
            run_as: unprivileged_user()?,
        };
        if data_dir.join("PG_VERSION").exists()
            && cluster
                .run("pg_ctl", &["status", "-D", &data_dir.to_string_lossy()])
                .is_ok()
        {
            return Ok((cluster, false));
        }
        Ok((Self::start(data_dir, Some(port))?, true))
    }

    /// A connection URL for `database` on this cluster.
    pub fn url(&self, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{}/{database}", self.port)
    }

    /// The port it listens on (on 127.0.0.1).
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Where the cluster keeps its data.
    pub fn data_dir(&self) -> &Path {
        &self.data_dir
    }

    /// Stops the cluster (fast shutdown: connections are closed).
    pub fn stop(&self) -> Result<(), LocalPgError> {
        self.run(
            "pg_ctl",
            &[
                "stop",
                "-w",
                "-m",
                "fast",
                "-D",
                &self.data_dir.to_string_lossy(),
            ],
        )
    }

    fn run(&self, program: &str, args: &[&str]) -> Result<(), LocalPgError> {
        use std::os::unix::process::CommandExt;
        let mut command = Command::new(self.bin_dir.join(program));
        command.args(args).current_dir(&self.data_dir);
        if let Some((uid, gid)) = self.run_as {
            command.uid(uid).gid(gid).env("HOME", &self.data_dir);
        }
        let output = command.output().map_err(|source| LocalPgError::Io {
            path: self.bin_dir.join(program),
            source,
        })?;
        if output.status.success() {
            return Ok(());
        }
        let mut text = String::from_utf8_lossy(&output.stdout).into_owned();
        text.push_str(&String::from_utf8_lossy(&output.stderr));
        Err(LocalPgError::CommandFailed {
            command: format!("{program} {}", args.join(" ")),
            status: output.status.to_string(),
            output: text,
        })
    }
}

/// The directory holding `initdb`, `pg_ctl` and `postgres`, if any.
pub fn find_bin_dir() -> Option<PathBuf> {
    let has_all = |dir: &Path| {
        ["initdb", "pg_ctl", "postgres"]
            .iter()
            .all(|b| dir.join(b).is_file())
    };
    let mut candidates: Vec<PathBuf> = Vec::new();
    if let Some(dir) = std::env::var_os("PG_BIN") {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(path) = std::env::var_os("PATH") {
        candidates.extend(std::env::split_paths(&path));
    }
    let mut versioned: Vec<(u32, PathBuf)> = std::fs::read_dir("/usr/lib/postgresql")
        .into_iter()
        .flatten()
        .flatten()
        .filter_map(|entry| {
            let version = entry.file_name().to_string_lossy().parse::<u32>().ok()?;
            Some((version, entry.path().join("bin")))
        })
        .collect();
    versioned.sort();
    candidates.extend(versioned.into_iter().rev().map(|(_, p)| p));
    candidates.into_iter().find(|dir| has_all(dir)).map(|dir| {
        // Resolve symlinks such as /usr/local/bin/initdb so that initdb finds
        // its sibling `postgres` binary of the same version.
        std::fs::canonicalize(dir.join("initdb"))
            .ok()
            .and_then(|p| p.parent().map(Path::to_owned))
            .filter(|d| has_all(d))
            .unwrap_or(dir)
    })
}

/// The user and group the private cluster runs as: `None` when we are not
/// root (it runs as us), else the `postgres` (or `nobody`) system user.
pub fn unprivileged_user() -> Result<Option<(u32, u32)>, LocalPgError> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        return Ok(None);
    }
    for name in ["postgres", "nobody"] {
        let cname = std::ffi::CString::new(name).expect("no NUL in a literal");
        // SAFETY: getpwnam takes a NUL-terminated string and returns null or a
        // pointer to a static record that we copy out of at once.
        let entry = unsafe { libc::getpwnam(cname.as_ptr()) };
        if !entry.is_null() {
            // SAFETY: non-null pointer from getpwnam.
            let (uid, gid) = unsafe { ((*entry).pw_uid, (*entry).pw_gid) };
            return Ok(Some((uid, gid)));
        }
    }
    Err(LocalPgError::NoUnprivilegedUser)
}

fn free_port() -> std::io::Result<u16> {
    Ok(TcpListener::bind("127.0.0.1:0")?.local_addr()?.port())
}
