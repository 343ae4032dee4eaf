//! Faults on demand, for the tests and the `faults` benchmark: a PostgreSQL
//! cluster of one's own that can be stopped and started again, and a TCP
//! proxy that can cut every connection through it, refuse new ones, or go
//! silent without closing anything. And a streaming replica of such a
//! cluster, for the read-replica tests.
//!
//! Never the shared server: stopping it would break every other test. An
//! [`OwnCluster`] is created from the installed binaries in a temporary
//! directory on a free port, and removed when dropped.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use shareledger_events::store::local_pg::{LocalCluster, LocalPgError};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::{AbortHandle, JoinHandle};

/// A private PostgreSQL cluster for one test (or benchmark) alone.
pub struct OwnCluster {
    dir: PathBuf,
    port: u16,
    cluster: Option<LocalCluster>,
}

impl OwnCluster {
    /// Creates and starts a cluster in a fresh temporary directory.
    pub fn start() -> Result<Self, LocalPgError> {
        let dir = std::env::temp_dir().join(format!(
            "shareledger-faults-{}-{}",
            std::process::id(),
            uuid::Uuid::new_v4().simple()
        ));
        let cluster = LocalCluster::start(&dir, None)?;
        let port = cluster.port();
        Ok(Self {
            dir,
            port,
            cluster: Some(cluster),
        })
    }

    /// Creates and starts a streaming replica of it (a hot standby) in a
    /// fresh temporary directory, removed when dropped.
    pub fn start_replica(&self) -> Result<Self, LocalPgError> {
        let primary = self.cluster.as_ref().ok_or(LocalPgError::NotRunning)?;
        let dir = self.dir.with_extension("replica");
        let replica = primary.start_replica(&dir)?;
        Ok(Self {
            dir,
            port: replica.port(),
            cluster: Some(replica),
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        SocketAddr::from(([127, 0, 0, 1], self.port))
    }

    /// A URL for `database` on it, on port `port` (its own, or a proxy's).
    pub fn url_via(&self, port: u16, database: &str) -> String {
        format!("postgres://postgres@127.0.0.1:{port}/{database}")
    }

    /// A URL for `database` on it.
    pub fn url(&self, database: &str) -> String {
        self.url_via(self.port, database)
    }

    /// Stops it (fast shutdown: every connection is closed).
    pub fn stop(&mut self) -> Result<(), LocalPgError> {
        match self.cluster.take() {
            Some(cluster) => cluster.stop(),
            None => Ok(()),
        }
    }

    /// Starts it again, on the same port and data.
    pub fn restart(&mut self) -> Result<(), LocalPgError> {
        if self.cluster.is_none() {
            self.cluster = Some(LocalCluster::start(&self.dir, Some(self.port))?);
        }
        Ok(())
    }
}

impl Drop for OwnCluster {
    fn drop(&mut self) {
        let _ = self.stop();
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A TCP proxy to one address whose connections can be cut on demand.
pub struct ChaosProxy {
    addr: SocketAddr,
    shared: Arc<Shared>,
    accept: JoinHandle<()>,
}

struct Shared {
    target: SocketAddr,
    connections: Mutex<Vec<AbortHandle>>,
    refusing: AtomicBool,
    silent: watch::Sender<bool>,
}

impl ChaosProxy {
    /// Listens on a free loopback port and forwards to `target`.
    pub async fn start(target: SocketAddr) -> std::io::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let shared = Arc::new(Shared {
            target,
            connections: Mutex::new(Vec::new()),
            refusing: AtomicBool::new(false),
            silent: watch::channel(false).0,
        });
        let accept = tokio::spawn(accept_loop(listener, Arc::clone(&shared)));
        Ok(Self {
            addr,
            shared,
            accept,
        })
    }

    /// Where it listens.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Closes every connection through it at once, whatever it is doing
    /// (mid-query, mid-transaction). Returns how many were open.
    pub fn cut(&self) -> usize {
        let mut connections = self.shared.connections.lock().expect("not poisoned");
        let open = connections.iter().filter(|c| !c.is_finished()).count();
        for connection in connections.drain(..) {
            connection.abort();
        }
        open
    }

    /// While on, new connections are closed as soon as they are accepted.
    pub fn set_refusing(&self, on: bool) {
        self.shared.refusing.store(on, Ordering::SeqCst);
    }

    /// While on, no byte goes through in either direction, and nothing is
    /// closed: a network that silently drops everything.
    pub fn set_silent(&self, on: bool) {
        self.shared.silent.send_replace(on);
    }
}

impl Drop for ChaosProxy {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut();
    }
}

async fn accept_loop(listener: TcpListener, shared: Arc<Shared>) {
    while let Ok((client, _)) = listener.accept().await {
        if shared.refusing.load(Ordering::SeqCst) {
            drop(client);
            continue;
        }
        let silent = shared.silent.subscribe();
        let target = shared.target;
        let task = tokio::spawn(async move {
            let Ok(server) = TcpStream::connect(target).await else {
                return;
            };
            let (client_read, client_write) = client.into_split();
            let (server_read, server_write) = server.into_split();
            let up = pump(client_read, server_write, silent.clone());
            let down = pump(server_read, client_write, silent);
            let _ = tokio::join!(up, down);
        });
        let mut connections = shared.connections.lock().expect("not poisoned");
        connections.retain(|c| !c.is_finished());
        connections.push(task.abort_handle());
    }
}

async fn pump(
    mut from: tokio::net::tcp::OwnedReadHalf,
    mut to: tokio::net::tcp::OwnedWriteHalf,
    mut silent: watch::Receiver<bool>,
) -> std::io::Result<()> {
    let mut buffer = vec![0u8; 16 * 1024];
    loop {
        let n = from.read(&mut buffer).await?;
        if n == 0 {
            return to.shutdown().await;
        }
        // Held, not dropped: bytes flow again when the silence ends.
        if silent.wait_for(|s| !*s).await.is_err() {
            return Ok(());
        }
        to.write_all(&buffer[..n]).await?;
    }
}
