//! `shareledger serve` (the real binary) as a child process on a free port,
//! and the HTTP calls the process tests make to it.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use shareledger_core::catalog::{SiteId, UserId};
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use shareledger_tests::TestDb;
use tokio::process::Child;
use uuid::Uuid;

/// A running `shareledger serve` on a free port.
pub struct Service {
    child: Child,
    pub url: String,
}

impl Service {
    /// Starts `serve` on `db` and waits until it answers `/health`.
    pub async fn start(db: &TestDb) -> Self {
        Self::start_with(db, &[]).await
    }

    /// Starts `serve` on `db` with more arguments.
    pub async fn start_with(db: &TestDb, args: &[&str]) -> Self {
        Self::start_on(&db.url(), args).await
    }

    /// Starts `serve` on the database at `url` with more arguments.
    pub async fn start_on(url: &str, args: &[&str]) -> Self {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        let child = super::command(Some(url))
            .args(["serve", "--listen", &format!("127.0.0.1:{port}")])
            .args(args)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("serve starts");
        let service = Self {
            child,
            url: format!("http://127.0.0.1:{port}"),
        };
        let client = client();
        for _ in 0..600 {
            if let Ok(r) = client.get(format!("{}/health", service.url)).send().await {
                if r.status().is_success() {
                    return service;
                }
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("serve did not answer /health within 30 s");
    }

    /// SIGKILL: no graceful anything.
    pub async fn kill_9(mut self) {
        self.child.start_kill().expect("SIGKILL sent");
        self.child.wait().await.expect("the process ended");
    }

    /// `/ready`'s answer (200 or 503 alike).
    pub async fn ready(&self, client: &reqwest::Client) -> Value {
        client
            .get(format!("{}/ready", self.url))
            .send()
            .await
            .expect("/ready answers")
            .json()
            .await
            .expect("/ready is JSON")
    }

    /// Waits (at most 30 s) until `/ready` says ready, and returns it.
    pub async fn wait_ready(&self, client: &reqwest::Client) -> Value {
        let mut ready = Value::Null;
        for _ in 0..600 {
            ready = self.ready(client).await;
            if ready["ready"] == Value::Bool(true) {
                return ready;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        panic!("not ready within 30 s: {ready:#}");
    }
}

impl Service {
    /// Waits (at most 30 s) until `/v1/audit/verify` says the chain is
    /// sealed to the head, and asserts it is, with nothing altered.
    pub async fn assert_sealed(&self, client: &reqwest::Client, token: &str) {
        let mut verified = Value::Null;
        for _ in 0..600 {
            verified = client
                .get(format!("{}/v1/audit/verify", self.url))
                .bearer_auth(token)
                .send()
                .await
                .expect("verify answers")
                .json()
                .await
                .expect("verify is JSON");
            if verified["unsealed"] == 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert_eq!(verified["problem"], Value::Null, "{verified:#}");
        assert_eq!(verified["unsealed"], Value::from(0), "{verified:#}");
    }

    /// `/v1/log/status`'s answer.
    pub async fn log_status(&self, client: &reqwest::Client, token: &str) -> Value {
        client
            .get(format!("{}/v1/log/status", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("/v1/log/status answers")
            .json()
            .await
            .expect("/v1/log/status is JSON")
    }

    /// Asserts that `GET path` answers 200.
    pub async fn assert_reads(&self, client: &reqwest::Client, token: &str, path: &str) {
        let answer = client
            .get(format!("{}{path}", self.url))
            .bearer_auth(token)
            .send()
            .await
            .expect("an answer");
        let status = answer.status().as_u16();
        assert_eq!(
            status,
            200,
            "{path}: {}",
            answer.text().await.unwrap_or_default()
        );
    }
}

/// An HTTP client with a 20 s bound per request.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(20))
        .build()
        .expect("an HTTP client")
}

/// A bearer token of `kind`, issued straight into the database.
pub async fn token(db: &TestDb, kind: TokenKind, site: Option<Uuid>, user: Option<Uuid>) -> String {
    token_on(db.pool(), kind, site, user).await
}

/// A bearer token of `kind`, issued straight into the database of `pool`.
pub async fn token_on(
    pool: &sqlx::PgPool,
    kind: TokenKind,
    site: Option<Uuid>,
    user: Option<Uuid>,
) -> String {
    auth::issue(
        pool,
        TokenRequest {
            kind,
            site: site.map(SiteId),
            user: user.map(UserId),
            name: "process test".into(),
            lifetime: Duration::from_secs(3_600),
        },
    )
    .await
    .expect("a token")
    .token
}

/// Sends a command; `None` when no answer came (the process died).
pub async fn send(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    name: &str,
    body: &Value,
    key: Uuid,
) -> Option<(u16, Value)> {
    let response = client
        .post(format!("{url}/v1/commands/{name}"))
        .bearer_auth(token)
        .header("idempotency-key", key.to_string())
        .json(body)
        .send()
        .await
        .ok()?;
    let status = response.status().as_u16();
    Some((status, response.json().await.unwrap_or(Value::Null)))
}

/// Sends a command that must succeed; returns its position.
pub async fn must(
    client: &reqwest::Client,
    service: &Service,
    token: &str,
    name: &str,
    body: Value,
) -> u64 {
    let (status, reply) = send(client, &service.url, token, name, &body, Uuid::new_v4())
        .await
        .expect("an answer");
    assert!(
        status == 201 || status == 200,
        "{name} answered {status}: {reply}"
    );
    reply["position"].as_u64().expect("a position")
}
