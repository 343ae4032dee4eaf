//! Shared setup of the gateway's end-to-end tests: a real server on a free
//! port over a fresh PostgreSQL database, a plain HTTP client, tokens, and
//! worlds built through the HTTP commands themselves.

#![allow(dead_code)]

use std::time::Duration;

use reqwest::header::HeaderMap;
use serde_json::{json, Value};
use shareledger_core::catalog::{SiteId, UserId};
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use shareledger_gateway::server::Server;
use shareledger_gateway::GatewayOptions;
use shareledger_tests::{LogSnapshot, TestDb};
use uuid::Uuid;

/// One HTTP answer: status, content type, headers, and the body as JSON
/// (`Value::Null` when it is not JSON; `text` keeps it as sent).
#[derive(Debug, Clone)]
pub struct Reply {
    pub status: u16,
    pub content_type: String,
    pub headers: HeaderMap,
    pub text: String,
    pub json: Value,
}

impl Reply {
    /// The problem's stable code (empty when there is none).
    pub fn code(&self) -> &str {
        self.json["code"].as_str().unwrap_or("")
    }

    /// Asserts that this is an `application/problem+json` answer with this
    /// status and code.
    #[track_caller]
    pub fn assert_problem(&self, status: u16, code: &str) {
        assert_eq!(
            (self.status, self.code()),
            (status, code),
            "expected a {status} {code} problem, got {self:#?}"
        );
        assert_eq!(
            self.content_type, "application/problem+json",
            "a problem's content type: {self:#?}"
        );
        assert_eq!(self.json["status"], json!(status), "{self:#?}");
        assert_eq!(
            self.json["type"],
            json!(format!("urn:shareledger:problem:{code}")),
            "{self:#?}"
        );
        // Every problem names its request, as the answer's header does.
        let id = self
            .headers
            .get("x-request-id")
            .map(|v| v.to_str().unwrap());
        assert!(id.is_some_and(|id| !id.is_empty()), "{self:#?}");
        assert_eq!(self.json["request_id"].as_str(), id, "{self:#?}");
    }

    /// Asserts a 200 JSON answer and returns its body.
    #[track_caller]
    pub fn ok(&self) -> &Value {
        assert_eq!(self.status, 200, "expected 200, got {self:#?}");
        assert!(
            self.content_type.starts_with("application/json"),
            "{self:#?}"
        );
        &self.json
    }

    /// A command's consistency token (`position`), after asserting 201.
    #[track_caller]
    pub fn created(&self) -> u64 {
        assert_eq!(self.status, 201, "expected 201, got {self:#?}");
        self.json["position"].as_u64().expect("a position")
    }
}

/// A running gateway over its own database.
pub struct Harness {
    pub db: TestDb,
    pub server: Server,
    pub client: reqwest::Client,
    pub url: String,
    /// An operator's token.
    pub operator: String,
}

impl Harness {
    pub async fn start() -> Self {
        Self::start_with(GatewayOptions::default()).await
    }

    pub async fn start_with(options: GatewayOptions) -> Self {
        // The service's own default pool size (`serve --db-connections`):
        // its background parts each hold a connection while they wait.
        let db = TestDb::with_pool_size(16).await;
        let server = Server::start(
            db.pool().clone(),
            "127.0.0.1:0".parse().expect("an address"),
            options,
        )
        .await
        .expect("the gateway starts");
        let url = server.url();
        let client = reqwest::Client::builder()
            .timeout(Duration::from_secs(60))
            .build()
            .expect("an HTTP client");
        let operator = issue(db.pool(), TokenKind::Operator, None, None).await;
        Self {
            db,
            server,
            client,
            url,
            operator,
        }
    }

    /// Stops the server gracefully (and then drops the database).
    pub async fn shutdown(self) {
        let Harness { db, server, .. } = self;
        server.shutdown().await.expect("a clean shutdown");
        drop(db);
    }

    pub async fn snapshot(&self) -> LogSnapshot {
        self.db.log_snapshot().await
    }

    /// A token of this kind.
    pub async fn token(&self, kind: TokenKind, site: Option<Uuid>, user: Option<Uuid>) -> String {
        issue(self.db.pool(), kind, site, user).await
    }

    pub async fn user_token(&self, site: Uuid, user: Uuid) -> String {
        self.token(TokenKind::User, Some(site), Some(user)).await
    }

    pub async fn auditor_token(&self, site: Option<Uuid>) -> String {
        self.token(TokenKind::Auditor, site, None).await
    }

    pub async fn service_token(&self, site: Uuid) -> String {
        self.token(TokenKind::Service, Some(site), None).await
    }

    /// `POST /v1/commands/{name}` with a fresh idempotency key.
    pub async fn command(&self, token: &str, name: &str, body: Value) -> Reply {
        self.command_keyed(token, name, body, Uuid::new_v4()).await
    }

    /// `POST /v1/commands/{name}` with this idempotency key.
    pub async fn command_keyed(&self, token: &str, name: &str, body: Value, key: Uuid) -> Reply {
        let bytes = serde_json::to_vec(&body).expect("JSON");
        self.post_raw(
            &format!("/v1/commands/{name}"),
            &[
                ("authorization", format!("Bearer {token}")),
                ("idempotency-key", key.to_string()),
                ("content-type", "application/json".into()),
            ],
            bytes,
        )
        .await
    }

    /// A command that must succeed: its position.
    pub async fn must(&self, token: &str, name: &str, body: Value) -> u64 {
        let reply = self.command(token, name, body.clone()).await;
        assert_eq!(
            reply.status, 201,
            "{name} {body} should succeed, got {reply:#?}"
        );
        reply.json["position"].as_u64().expect("a position")
    }

    /// A POST with exactly these headers and body bytes.
    pub async fn post_raw(&self, path: &str, headers: &[(&str, String)], body: Vec<u8>) -> Reply {
        let mut request = self.client.post(format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        reply(request.body(body).send().await.expect("the server answers")).await
    }

    /// `GET path` with a bearer token.
    pub async fn get(&self, token: &str, path: &str) -> Reply {
        self.get_with(path, &[("authorization", format!("Bearer {token}"))])
            .await
    }

    /// `GET path` with exactly these headers.
    pub async fn get_with(&self, path: &str, headers: &[(&str, String)]) -> Reply {
        self.request(reqwest::Method::GET, path, headers).await
    }

    /// Any method, no body.
    pub async fn request(
        &self,
        method: reqwest::Method,
        path: &str,
        headers: &[(&str, String)],
    ) -> Reply {
        let mut request = self.client.request(method, format!("{}{path}", self.url));
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        reply(request.send().await.expect("the server answers")).await
    }

    /// Registers a site (operator) with an Administration user, and issues
    /// that admin a user token.
    pub async fn site(&self, code: &str) -> SiteHandle {
        let id = Uuid::new_v4();
        self.must(
            &self.operator,
            "RegisterSite",
            json!({"site_id": id, "code": code, "name": format!("{code} site"), "seat_limit": 50}),
        )
        .await;
        let admin = Uuid::new_v4();
        self.must(
            &self.operator,
            "AddUser",
            json!({"site_id": id, "user_id": admin, "username": format!("admin@{}.org", code.to_lowercase()), "name": "Admin", "role": "administration"}),
        )
        .await;
        let admin_token = self.user_token(id, admin).await;
        SiteHandle {
            id,
            code: code.to_owned(),
            admin,
            admin_token,
        }
    }

    /// Adds a user with a role (by the site's admin) and returns the user
    /// and a token of theirs.
    pub async fn user(&self, site: &SiteHandle, username: &str, role: &str) -> (Uuid, String) {
        let id = Uuid::new_v4();
        self.must(
            &site.admin_token,
            "AddUser",
            json!({"site_id": site.id, "user_id": id, "username": username, "name": username, "role": role}),
        )
        .await;
        let token = self.user_token(site.id, id).await;
        (id, token)
    }

    /// The small world most tests use: sites ALPHA (A) and BETA (B); an
    /// active link A→B (A offered, B approved) over which A shares
    /// `shared_scorecard` showing `shared_object`; A's `private_scorecard`
    /// showing `private_object` is not shared; B has its own scorecard, a
    /// Presenter `partner` who was granted Browser on A's shared scorecard,
    /// and a Presenter `plain` with nothing granted.
    pub async fn world(&self) -> World {
        let a = self.site("ALPHA").await;
        let b = self.site("BETA").await;
        let shared_scorecard = Uuid::new_v4();
        let shared_object = Uuid::new_v4();
        let private_scorecard = Uuid::new_v4();
        let private_object = Uuid::new_v4();
        let b_scorecard = Uuid::new_v4();
        let ta = a.admin_token.as_str();
        let tb = b.admin_token.as_str();
        self.must(
            ta,
            "CreateScorecard",
            json!({"site_id": a.id, "scorecard_id": shared_scorecard, "name": "Shared measures"}),
        )
        .await;
        self.must(ta, "CreateObject", json!({"site_id": a.id, "object_id": shared_object, "kind": "indicator", "name": "Literacy rate"})).await;
        self.must(
            ta,
            "PlaceObjectOnScorecard",
            json!({"site_id": a.id, "object_id": shared_object, "scorecard_id": shared_scorecard}),
        )
        .await;
        self.must(
            ta,
            "CreateScorecard",
            json!({"site_id": a.id, "scorecard_id": private_scorecard, "name": "Internal"}),
        )
        .await;
        self.must(ta, "CreateObject", json!({"site_id": a.id, "object_id": private_object, "kind": "program", "name": "Secret program"})).await;
        self.must(ta, "PlaceObjectOnScorecard", json!({"site_id": a.id, "object_id": private_object, "scorecard_id": private_scorecard})).await;
        self.must(
            tb,
            "CreateScorecard",
            json!({"site_id": b.id, "scorecard_id": b_scorecard, "name": "Our results"}),
        )
        .await;
        self.must(
            ta,
            "RequestConnection",
            json!({"site_id": a.id, "partner_code": "BETA", "directions": "offer"}),
        )
        .await;
        self.must(
            tb,
            "ApproveConnection",
            json!({"site_id": b.id, "partner": a.id}),
        )
        .await;
        self.must(
            ta,
            "ShareScorecard",
            json!({"site_id": a.id, "partner": b.id, "scorecard_id": shared_scorecard}),
        )
        .await;
        let (partner, partner_token) = self.user(&b, "partner@beta.org", "presenter").await;
        let (plain, plain_token) = self.user(&b, "plain@beta.org", "presenter").await;
        let last = self
            .must(
                tb,
                "GrantScorecardAccess",
                json!({"site_id": b.id, "user_id": partner, "scorecard_id": shared_scorecard, "level": "browser", "owner_site": a.id}),
            )
            .await;
        World {
            a,
            b,
            shared_scorecard,
            shared_object,
            private_scorecard,
            private_object,
            b_scorecard,
            partner,
            partner_token,
            plain,
            plain_token,
            last,
        }
    }

    /// Polls `condition` until it holds or `deadline` passes (for the
    /// consequence worker, whose effects have no consistency token).
    pub async fn eventually<F, Fut>(&self, what: &str, deadline: Duration, mut condition: F)
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = bool>,
    {
        let until = tokio::time::Instant::now() + deadline;
        loop {
            if condition().await {
                return;
            }
            assert!(
                tokio::time::Instant::now() < until,
                "{what}: not within {deadline:?}"
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }
}

/// A site registered through the API, with its Administration user.
#[derive(Debug, Clone)]
pub struct SiteHandle {
    pub id: Uuid,
    pub code: String,
    pub admin: Uuid,
    pub admin_token: String,
}

/// See [`Harness::world`].
#[derive(Debug, Clone)]
pub struct World {
    pub a: SiteHandle,
    pub b: SiteHandle,
    pub shared_scorecard: Uuid,
    pub shared_object: Uuid,
    pub private_scorecard: Uuid,
    pub private_object: Uuid,
    pub b_scorecard: Uuid,
    pub partner: Uuid,
    pub partner_token: String,
    pub plain: Uuid,
    pub plain_token: String,
    /// The position of the world's last command.
    pub last: u64,
}

async fn reply(response: reqwest::Response) -> Reply {
    let status = response.status().as_u16();
    let headers = response.headers().clone();
    let content_type = headers
        .get("content-type")
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    let text = response.text().await.expect("a body");
    let json = serde_json::from_str(&text).unwrap_or(Value::Null);
    Reply {
        status,
        content_type,
        headers,
        text,
        json,
    }
}

/// Issues a token straight into the database (as `shareledger token issue`).
pub async fn issue(
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
            name: format!("tests-{}", kind.as_str()),
            lifetime: Duration::from_secs(3600),
        },
    )
    .await
    .expect("a token is issued")
    .token
}

/// Every command's name, as the gateway lists them.
pub fn command_names() -> Vec<&'static str> {
    shareledger_gateway::commands::NAMES.to_vec()
}

/// One message of a Server-Sent Events stream.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SseMessage {
    pub event: String,
    pub id: Option<String>,
    pub data: Value,
}

/// A Server-Sent Events stream being read.
pub struct SseStream {
    response: reqwest::Response,
    buffer: String,
    /// Heartbeat comments seen so far.
    pub comments: usize,
}

impl SseStream {
    /// Opens `path` with `Accept: text/event-stream` and `headers`.
    pub async fn open(h: &Harness, path: &str, headers: &[(&str, String)]) -> Result<Self, Reply> {
        let mut request = h
            .client
            .get(format!("{}{path}", h.url))
            .header("accept", "text/event-stream");
        for (name, value) in headers {
            request = request.header(*name, value);
        }
        let response = request.send().await.expect("the server answers");
        let is_stream = response
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.starts_with("text/event-stream"));
        if response.status() != 200 || !is_stream {
            return Err(reply(response).await);
        }
        Ok(Self {
            response,
            buffer: String::new(),
            comments: 0,
        })
    }

    /// The next message (not a comment), or none when the stream ends or
    /// `within` passes first.
    pub async fn next(&mut self, within: Duration) -> Option<SseMessage> {
        let deadline = tokio::time::Instant::now() + within;
        loop {
            if let Some(end) = self.buffer.find("\n\n") {
                let block: String = self.buffer.drain(..end + 2).collect();
                let mut message = SseMessage::default();
                let mut data = String::new();
                let mut comment = true;
                for line in block.lines() {
                    if line.starts_with(':') {
                        continue;
                    }
                    comment = false;
                    let (field, value) = line.split_once(':').unwrap_or((line, ""));
                    let value = value.strip_prefix(' ').unwrap_or(value);
                    match field {
                        "event" => message.event = value.to_owned(),
                        "id" => message.id = Some(value.to_owned()),
                        "data" => data.push_str(value),
                        _ => {}
                    }
                }
                if comment {
                    self.comments += 1;
                    continue;
                }
                message.data = serde_json::from_str(&data).unwrap_or(Value::String(data));
                return Some(message);
            }
            let chunk = tokio::time::timeout_at(deadline, self.response.chunk())
                .await
                .ok()?
                .expect("the stream reads")?;
            self.buffer
                .push_str(std::str::from_utf8(&chunk).expect("UTF-8"));
        }
    }
}
