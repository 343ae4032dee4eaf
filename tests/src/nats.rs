//! A NATS server with JetStream for the tests that deliver to it: `NATS_URL`
//! when set; otherwise the one on 127.0.0.1:4222 if it answers; otherwise a
//! private `nats-server -js` started from the installed binary on a free
//! port, with its store in a temporary directory, killed when the test
//! process exits. When none of these is possible the first test that asks
//! fails with one message saying what to install.

use std::net::TcpStream;
use std::process::{Child, Command, Stdio};
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

static URL: OnceLock<Result<String, String>> = OnceLock::new();
static PRIVATE: Mutex<Option<(Child, std::path::PathBuf)>> = Mutex::new(None);

extern "C" fn stop_private_server() {
    if let Ok(mut guard) = PRIVATE.lock() {
        if let Some((mut child, dir)) = guard.take() {
            let _ = child.kill();
            let _ = child.wait();
            let _ = std::fs::remove_dir_all(dir);
        }
    }
}

fn answers(addr: &str) -> bool {
    addr.parse()
        .ok()
        .is_some_and(|a| TcpStream::connect_timeout(&a, Duration::from_millis(300)).is_ok())
}

fn find() -> Result<String, String> {
    if let Ok(url) = std::env::var("NATS_URL") {
        return Ok(url);
    }
    if answers("127.0.0.1:4222") {
        return Ok("nats://127.0.0.1:4222".into());
    }
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map_err(|e| format!("no free port for a private NATS server: {e}"))?
        .port();
    let dir = std::env::temp_dir().join(format!("shareledger-nats-{}", std::process::id()));
    let child = Command::new("nats-server")
        .args(["-js", "-a", "127.0.0.1", "-p", &port.to_string(), "-sd"])
        .arg(&dir)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .map_err(|e| {
            format!(
                "no NATS server answers on 127.0.0.1:4222 and `nats-server` cannot be started \
                 ({e}): install it (Debian: apt-get install nats-server) or set NATS_URL"
            )
        })?;
    *PRIVATE.lock().expect("the private server's lock") = Some((child, dir));
    extern "C" {
        fn atexit(f: extern "C" fn()) -> i32;
    }
    // SAFETY: registering a plain function to run at exit.
    unsafe {
        atexit(stop_private_server);
    }
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    while !answers(&addr) {
        if Instant::now() > deadline {
            return Err(format!("the private nats-server did not answer on {addr}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Ok(format!("nats://{addr}"))
}

/// The URL of a NATS server with JetStream for tests.
pub fn nats_url() -> String {
    match URL.get_or_init(find) {
        Ok(url) => url.clone(),
        Err(message) => panic!("{message}"),
    }
}
