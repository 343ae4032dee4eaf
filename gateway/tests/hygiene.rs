//! Input hygiene through a real server (issue 14): text PostgreSQL cannot
//! store, usernames and site codes that look like others, idempotency keys
//! as draft-ietf-httpapi-idempotency-key-header says, and token revocation
//! seen by every process.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::Harness;
use serde_json::{json, Value};
use shareledger_core::catalog::{SiteId, UserId};
use shareledger_gateway::auth::{self, Hearing, TokenKind, TokenRequest};
use shareledger_gateway::server::Server;
use shareledger_gateway::GatewayOptions;
use tokio::sync::Barrier;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Text PostgreSQL cannot store (NUL)
// ---------------------------------------------------------------------------

#[tokio::test]
async fn a_nul_in_change_object_field_is_422_unstorable_text_every_time_and_writes_nothing() {
    // Found by a black-box test: `"value":"a\u0000b"` answered 500, every
    // time. Now 422, naming the field, every time.
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let before = h.snapshot().await;
    for _ in 0..3 {
        let reply = h
            .command(
                &w.a.admin_token,
                "ChangeObjectField",
                json!({"site_id": w.a.id, "object_id": w.shared_object, "field": "description", "value": "a\u{0}b"}),
            )
            .await;
        reply.assert_problem(422, "unstorable_text");
        assert_eq!(
            reply.json["detail"],
            json!(
                "the body's text at /value holds a NUL character (\\u0000), which cannot be stored"
            ),
            "{reply:#?}"
        );
    }
    // In a CSV import's text too.
    let reply = h
        .command(
            &w.a.admin_token,
            "ImportUsers",
            json!({"site_id": w.a.id, "csv": "username,name,role\nnul@alpha.org,N\u{0}L,presenter\n"}),
        )
        .await;
    reply.assert_problem(422, "unstorable_text");
    assert_eq!(h.snapshot().await, before);
    // The same field without the NUL is written.
    let reply = h
        .command(
            &w.a.admin_token,
            "ChangeObjectField",
            json!({"site_id": w.a.id, "object_id": w.shared_object, "field": "description", "value": "ab"}),
        )
        .await;
    reply.created();
    harness.shutdown().await;
}

#[tokio::test]
async fn a_nul_in_a_query_parameter_is_400_invalid_query_naming_it() {
    // The users list searches PostgreSQL with `search`: a NUL there was a
    // 500 too.
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    let reply = h
        .get(
            &a.admin_token,
            &format!("/v1/sites/{}/users?search=ad%00min", a.id),
        )
        .await;
    reply.assert_problem(400, "invalid_query");
    assert!(
        reply.json["detail"]
            .as_str()
            .is_some_and(|d| d.contains("search")),
        "{reply:#?}"
    );
    h.get(
        &a.admin_token,
        &format!("/v1/sites/{}/users?search=admin", a.id),
    )
    .await
    .ok();
    harness.shutdown().await;
}

// ---------------------------------------------------------------------------
// Usernames and site codes that look like others
// ---------------------------------------------------------------------------

/// The three look-alikes of `admin@fund.example` that a black-box test
/// added side by side: a Cyrillic `а`, a zero-width space, a fullwidth `ａ`.
const LOOK_ALIKES: [&str; 3] = [
    "\u{430}dmin@fund.example",
    "admin\u{200b}@fund.example",
    "\u{ff41}dmin@fund.example",
];

async fn add_user(h: &Harness, token: &str, site: Uuid, username: &str) -> common::Reply {
    h.command(
        token,
        "AddUser",
        json!({"site_id": site, "user_id": Uuid::new_v4(), "username": username, "name": "Someone", "role": "presenter"}),
    )
    .await
}

#[tokio::test]
async fn the_three_look_alikes_of_a_taken_username_are_409_username_taken() {
    let harness = Harness::start().await;
    let h = &harness;
    let fund = h.site("FUND").await;
    add_user(h, &fund.admin_token, fund.id, "admin@fund.example")
        .await
        .created();
    let before = h.snapshot().await;
    for lookalike in LOOK_ALIKES {
        let reply = add_user(h, &fund.admin_token, fund.id, lookalike).await;
        reply.assert_problem(409, "username_taken");
        let detail = reply.json["detail"].as_str().unwrap_or_default();
        assert!(
            detail.contains("looks the same as admin@fund.example"),
            "{reply:#?}"
        );
    }
    // Case-insensitively the same name is taken too, as before.
    add_user(h, &fund.admin_token, fund.id, "Admin@Fund.Example")
        .await
        .assert_problem(409, "username_taken");
    assert_eq!(h.snapshot().await, before, "a look-alike was written");
    harness.shutdown().await;
}

#[tokio::test]
async fn a_look_alike_username_without_its_original_is_422_invalid_value_saying_why() {
    let harness = Harness::start().await;
    let h = &harness;
    let fund = h.site("FUND").await;
    let before = h.snapshot().await;
    for (lookalike, why) in LOOK_ALIKES.into_iter().zip([
        "mixes scripts (Cyrillic and Latin)",
        "has an invisible character (U+200B) at position 6",
        "type admin@fund.example instead",
    ]) {
        let reply = add_user(h, &fund.admin_token, fund.id, lookalike).await;
        reply.assert_problem(422, "invalid_value");
        let detail = reply.json["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{lookalike:?}: {reply:#?}");
        assert!(!detail.contains("\\u{"), "no Rust escapes: {detail}");
    }
    assert_eq!(h.snapshot().await, before);
    // One script per part is a username.
    add_user(h, &fund.admin_token, fund.id, "иван@fund.example")
        .await
        .created();
    harness.shutdown().await;
}

#[tokio::test]
async fn site_codes_that_look_like_a_taken_code_are_refused_and_say_why() {
    // Site codes are ASCII letters, digits, '-' and '_' (case-insensitive):
    // a Cyrillic, zero-width or fullwidth look-alike of ACME is no code.
    let harness = Harness::start().await;
    let h = &harness;
    h.site("ACME").await;
    let before = h.snapshot().await;
    for (lookalike, why) in [
        ("\u{410}CME", "mixes scripts (Cyrillic and Latin)"),
        ("ACME\u{200b}", "invisible character (U+200B) at position 5"),
        ("\u{ff21}\u{ff23}\u{ff2d}\u{ff25}", "type acme instead"),
    ] {
        let reply = h
            .command(
                &h.operator,
                "RegisterSite",
                json!({"site_id": Uuid::new_v4(), "code": lookalike, "name": "Imitation", "seat_limit": 5}),
            )
            .await;
        reply.assert_problem(422, "invalid_body");
        let detail = reply.json["detail"].as_str().unwrap_or_default();
        assert!(detail.contains(why), "{lookalike:?}: {reply:#?}");
    }
    let reply = h
        .command(
            &h.operator,
            "RegisterSite",
            json!({"site_id": Uuid::new_v4(), "code": "acme", "name": "Imitation", "seat_limit": 5}),
        )
        .await;
    reply.assert_problem(409, "site_code_taken");
    assert_eq!(h.snapshot().await, before);
    harness.shutdown().await;
}

// ---------------------------------------------------------------------------
// Idempotency keys (draft-ietf-httpapi-idempotency-key-header)
// ---------------------------------------------------------------------------

/// A second server on the harness's database, with a pool of its own, as
/// another process would have.
async fn second_server(h: &Harness) -> Server {
    let pool = sqlx::postgres::PgPoolOptions::new()
        .max_connections(10)
        .connect_with(h.db.connect_options())
        .await
        .expect("a second pool");
    Server::start(
        pool,
        "127.0.0.1:0".parse().expect("an address"),
        GatewayOptions::default(),
    )
    .await
    .expect("a second server starts")
}

/// `POST /v1/commands/{name}` to the server at `url`.
async fn command_at(
    client: &reqwest::Client,
    url: &str,
    token: &str,
    name: &str,
    body: &Value,
    key: Uuid,
) -> (u16, Option<String>, Value) {
    let response = client
        .post(format!("{url}/v1/commands/{name}"))
        .header("authorization", format!("Bearer {token}"))
        .header("idempotency-key", key.to_string())
        .json(body)
        .send()
        .await
        .expect("the server answers");
    let status = response.status().as_u16();
    let retry_after = response
        .headers()
        .get("retry-after")
        .and_then(|v| v.to_str().ok())
        .map(str::to_owned);
    let json = response.json().await.expect("a JSON body");
    (status, retry_after, json)
}

#[tokio::test]
async fn twenty_concurrent_sends_of_one_key_over_two_processes_run_it_once() {
    // Found: 20 sends of one key at once wrote one event but up to 4
    // answers said `201 "replayed":false`. Now exactly one runs; every
    // other answer is its result replayed, or 409 while it runs.
    let harness = Harness::start().await;
    let h = &harness;
    let other = second_server(h).await;
    let a = h.site("ALPHA").await;
    let before = h.snapshot().await;
    let key = Uuid::new_v4();
    let body = json!({"site_id": a.id, "seat_limit": 9});
    let start = Arc::new(Barrier::new(20));
    let sends = (0..20).map(|i| {
        let url = if i % 2 == 0 {
            h.url.clone()
        } else {
            other.url()
        };
        let (client, token, body, start) = (
            h.client.clone(),
            a.admin_token.clone(),
            body.clone(),
            Arc::clone(&start),
        );
        tokio::spawn(async move {
            start.wait().await;
            command_at(&client, &url, &token, "SetSeatLimit", &body, key).await
        })
    });
    let answers: Vec<_> = futures::future::join_all(sends)
        .await
        .into_iter()
        .map(|joined| joined.expect("a send"))
        .collect();
    let ran: Vec<&Value> = answers
        .iter()
        .filter(|(status, _, _)| *status == 201)
        .map(|(_, _, json)| json)
        .collect();
    assert_eq!(ran.len(), 1, "exactly one 201: {answers:#?}");
    let first = ran[0];
    assert_eq!(first["replayed"], json!(false));
    let mut replayed = 0;
    for (status, retry_after, json) in &answers {
        match status {
            201 => {}
            200 => {
                replayed += 1;
                assert_eq!(json["replayed"], json!(true), "{json}");
                assert_eq!(json["position"], first["position"]);
                assert_eq!(json["events"], first["events"]);
            }
            409 => {
                assert_eq!(json["code"], json!("idempotency_key_in_flight"), "{json}");
                assert_eq!(retry_after.as_deref(), Some("1"));
            }
            other => panic!("unexpected {other}: {json}"),
        }
    }
    let after = h.snapshot().await;
    assert_eq!(after.events.len(), before.events.len() + 1, "one event");
    assert_eq!(first["events"].as_array().map(Vec::len), Some(1));
    // Once it finished, every send gets its result, from either process.
    for url in [h.url.clone(), other.url()] {
        let (status, _, json) =
            command_at(&h.client, &url, &a.admin_token, "SetSeatLimit", &body, key).await;
        assert_eq!((status, &json["replayed"]), (200, &json!(true)), "{json}");
        assert_eq!(json["events"], first["events"]);
    }
    assert_eq!(h.snapshot().await, after);
    eprintln!(
        "20 sends: 1 ran, {replayed} replayed, {} in flight",
        19 - replayed
    );
    other.shutdown().await.expect("a clean shutdown");
    harness.shutdown().await;
}

/// Changes the one key row that `which` selects, as a process that died
/// would have left it.
async fn set_key_row(h: &Harness, which: &str, set: &str) {
    let done = sqlx::query(&format!(
        "UPDATE sl_idempotency_keys SET {set} WHERE {which}"
    ))
    .execute(h.db.pool())
    .await
    .expect("the key's row is updated");
    assert_eq!(done.rows_affected(), 1);
}

#[tokio::test]
async fn a_key_whose_process_died_running_it_is_409_until_its_lease_lapses_then_runs() {
    // A refused send gives its key back (the same body may be sent again);
    // a send claimed by a process that died holds the key only for its
    // lease.
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    h.must(
        &h.operator,
        "SetSeatLimit",
        json!({"site_id": a.id, "seat_limit": 1}),
    )
    .await;
    let key = Uuid::new_v4();
    let body = json!({"site_id": a.id, "user_id": Uuid::new_v4(), "username": "new@alpha.org", "name": "New", "role": "presenter"});
    let send = || h.command_keyed(&a.admin_token, "AddUser", body.clone(), key);
    send().await.assert_problem(409, "seat_limit_reached");
    // A process claims the key again and dies (its claim stays, leased).
    let failed = "command = 'AddUser' AND result IS NULL";
    set_key_row(
        h,
        failed,
        "claim = gen_random_uuid(), lease_until = now() + interval '1 hour'",
    )
    .await;
    h.must(
        &h.operator,
        "SetSeatLimit",
        json!({"site_id": a.id, "seat_limit": 5}),
    )
    .await;
    let before = h.snapshot().await;
    let held = send().await;
    held.assert_problem(409, "idempotency_key_in_flight");
    assert_eq!(held.headers["retry-after"], "1");
    assert_eq!(h.snapshot().await, before);
    // The lease lapses: the next send takes the key over and runs it.
    set_key_row(h, failed, "lease_until = now() - interval '1 second'").await;
    let ran = send().await;
    ran.created();
    assert_eq!(ran.json["replayed"], json!(false));
    let again = send().await;
    assert_eq!((again.status, &again.json["replayed"]), (200, &json!(true)));
    assert_eq!(again.json["events"], ran.json["events"]);
    harness.shutdown().await;
}

#[tokio::test]
async fn a_key_whose_process_died_after_writing_replays_what_it_wrote() {
    // The process wrote the events, then died before recording the result:
    // the next send after the lease finds the events (their ids derive
    // from the key) and writes nothing.
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    let key = Uuid::new_v4();
    let body = json!({"site_id": a.id, "seat_limit": 4});
    let first = h
        .command_keyed(&a.admin_token, "SetSeatLimit", body.clone(), key)
        .await;
    first.created();
    set_key_row(
        h,
        "command = 'SetSeatLimit'",
        "result = NULL, finished_at = NULL, claim = gen_random_uuid(), \
         lease_until = now() - interval '1 second'",
    )
    .await;
    let before = h.snapshot().await;
    let again = h
        .command_keyed(&a.admin_token, "SetSeatLimit", body, key)
        .await;
    assert_eq!(again.status, 200, "{again:#?}");
    assert_eq!(again.json["replayed"], json!(true));
    assert_eq!(again.json["events"], first.json["events"]);
    assert_eq!(h.snapshot().await, before);
    harness.shutdown().await;
}

#[tokio::test]
async fn a_key_quoted_as_the_draft_writes_it_is_the_same_key() {
    // The draft's header is a structured-field string: "8e03978e-…".
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    let key = Uuid::new_v4();
    let body = serde_json::to_vec(&json!({"site_id": a.id, "seat_limit": 3})).unwrap();
    let send = |key: String| {
        let (token, body) = (a.admin_token.clone(), body.clone());
        async move {
            h.post_raw(
                "/v1/commands/SetSeatLimit",
                &[
                    ("authorization", format!("Bearer {token}")),
                    ("idempotency-key", key),
                    ("content-type", "application/json".into()),
                ],
                body,
            )
            .await
        }
    };
    send(format!("\"{key}\"")).await.created();
    let again = send(key.to_string()).await;
    assert_eq!((again.status, &again.json["replayed"]), (200, &json!(true)));
    send(format!("\"{key}"))
        .await
        .assert_problem(400, "bad_idempotency_key");
    harness.shutdown().await;
}

// ---------------------------------------------------------------------------
// Token revocation seen by every process
// ---------------------------------------------------------------------------

/// Issues a user token of the site's admin: its secret and its id.
async fn admin_token(h: &Harness, site: &common::SiteHandle) -> (String, Uuid) {
    let issued = auth::issue(
        h.db.pool(),
        TokenRequest {
            kind: TokenKind::User,
            site: Some(SiteId(site.id)),
            user: Some(UserId(site.admin)),
            name: "revocable".into(),
            lifetime: Duration::from_secs(3600),
        },
    )
    .await
    .expect("a token");
    (issued.token, issued.record.token_id)
}

/// Waits (at most 10 s) until a process's revocation listener is as
/// `condition` says.
async fn until_heard(server: &Server, what: &str, condition: impl FnMut(&Hearing) -> bool) {
    let mut hearing = server.state().tokens().hearing();
    tokio::time::timeout(Duration::from_secs(10), hearing.wait_for(condition))
        .await
        .unwrap_or_else(|_| panic!("{what}: not within 10 s"))
        .expect("the listener's state is kept");
}

fn heard(server: &Server) -> Hearing {
    *server.state().tokens().hearing().borrow()
}

#[tokio::test]
async fn a_token_revoked_through_one_process_is_refused_by_the_next_request_through_another() {
    // Found: a revoked token kept working for up to 10 s (the token cache).
    // Now the process that revokes forgets it at once, and every other one
    // as soon as it hears the notification.
    let harness = Harness::start().await;
    let h = &harness;
    let other = second_server(h).await;
    let a = h.site("ALPHA").await;
    let (token, token_id) = admin_token(h, &a).await;
    let whoami = |server: &str| {
        let (client, token) = (h.client.clone(), token.clone());
        let url = format!("{server}/v1/whoami");
        async move {
            client
                .get(url)
                .bearer_auth(token)
                .send()
                .await
                .expect("an answer")
                .status()
                .as_u16()
        }
    };
    until_heard(&h.server, "the first process listens", |s| s.listening).await;
    until_heard(&other, "the second process listens", |s| s.listening).await;
    // Both processes verified the token and cached it.
    assert_eq!(whoami(&h.url).await, 200);
    assert_eq!(whoami(&other.url()).await, 200);
    let before = heard(&h.server);
    assert!(other
        .state()
        .tokens()
        .revoke(token_id)
        .await
        .expect("revoked"));
    // The revoking process refuses it at once.
    assert_eq!(whoami(&other.url()).await, 401);
    // The first process, once it heard it, refuses it on its next request.
    until_heard(&h.server, "the revocation is heard", |s| {
        s.heard > before.heard
    })
    .await;
    assert_eq!(whoami(&h.url).await, 401);
    // The same through `shareledger token revoke`'s function, which only
    // the notification carries to the servers.
    let (token, token_id) = admin_token(h, &a).await;
    let reply = h.get(&token, "/v1/whoami").await;
    reply.ok();
    let before = heard(&h.server);
    assert!(auth::revoke(h.db.pool(), token_id).await.expect("revoked"));
    until_heard(&h.server, "the CLI's revocation is heard", |s| {
        s.heard > before.heard
    })
    .await;
    h.get(&token, "/v1/whoami")
        .await
        .assert_problem(401, "bad_token");
    other.shutdown().await.expect("a clean shutdown");
    harness.shutdown().await;
}

#[tokio::test]
async fn a_lost_listener_connection_empties_the_cache_so_a_missed_revocation_cannot_survive() {
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    let (token, token_id) = admin_token(h, &a).await;
    until_heard(&h.server, "the process listens", |s| s.listening).await;
    h.get(&token, "/v1/whoami").await.ok();
    // A revocation whose notification never arrives (the trigger is off
    // for it): the cache, trusted while listening, still accepts the token.
    let pool = h.db.pool();
    sqlx::query("ALTER TABLE sl_api_tokens DISABLE TRIGGER sl_api_tokens_changed")
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("UPDATE sl_api_tokens SET revoked_at = now() WHERE token_id = $1")
        .bind(token_id)
        .execute(pool)
        .await
        .unwrap();
    sqlx::query("ALTER TABLE sl_api_tokens ENABLE TRIGGER sl_api_tokens_changed")
        .execute(pool)
        .await
        .unwrap();
    h.get(&token, "/v1/whoami").await.ok();
    // The listening connection is lost (as when PostgreSQL restarts or the
    // network drops): the process empties its cache, listens again, and
    // empties it again.
    let sessions = heard(&h.server).sessions;
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = current_database() AND query LIKE 'LISTEN%sl_api_tokens%'",
    )
    .fetch_all(pool)
    .await
    .unwrap();
    assert_eq!(killed, vec![true], "one listening connection");
    until_heard(&h.server, "listening again", |s| {
        s.listening && s.sessions > sessions
    })
    .await;
    h.get(&token, "/v1/whoami")
        .await
        .assert_problem(401, "bad_token");
    harness.shutdown().await;
}

#[tokio::test]
async fn a_token_name_with_a_nul_or_another_control_character_is_refused_and_nothing_stored() {
    // The name is recorded as the actor of an operator's commands: a NUL
    // there would reach the log (as `api:<name>`) and PostgreSQL.
    let db = shareledger_tests::TestDb::new().await;
    for name in ["ops\u{0}", "ops\nroot"] {
        let refused = auth::issue(
            db.pool(),
            TokenRequest {
                kind: TokenKind::Operator,
                site: None,
                user: None,
                name: name.into(),
                lifetime: Duration::from_secs(3600),
            },
        )
        .await;
        assert!(
            matches!(refused, Err(auth::TokenError::Name)),
            "{name:?}: {refused:?}"
        );
    }
    assert!(auth::list(db.pool(), None)
        .await
        .expect("tokens")
        .is_empty());
}
