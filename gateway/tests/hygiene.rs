//! Input hygiene through a real server (issue 14): text PostgreSQL cannot
//! store, usernames and site codes that look like others, idempotency keys
//! as draft-ietf-httpapi-idempotency-key-header says, and token revocation
//! seen by every process.

mod common;

use common::Harness;
use serde_json::json;
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
