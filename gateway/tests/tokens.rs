//! `/v1/tokens`: tokens issued, listed and revoked over HTTP, each caller
//! within its tenancy (R-USER-5: a site's user managers manage its users'
//! tokens; operators every token).

mod common;

use std::time::Duration;

use common::{Harness, Reply};
use serde_json::{json, Value};
use uuid::Uuid;

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

impl Harness {
    async fn issue_token(&self, caller: &str, body: Value) -> Reply {
        self.post_raw(
            "/v1/tokens",
            &[
                bearer(caller),
                ("content-type", "application/json".to_owned()),
            ],
            serde_json::to_vec(&body).expect("JSON"),
        )
        .await
    }

    async fn revoke_token(&self, caller: &str, token_id: &str) -> Reply {
        self.request(
            reqwest::Method::DELETE,
            &format!("/v1/tokens/{token_id}"),
            &[bearer(caller)],
        )
        .await
    }

    async fn token_count(&self) -> i64 {
        sqlx::query_scalar("SELECT count(*) FROM sl_api_tokens")
            .fetch_one(self.db.pool())
            .await
            .expect("a count")
    }
}

fn user_token(site: Uuid, user: Uuid) -> Value {
    json!({"kind": "user", "site_id": site, "user_id": user, "name": "laptop"})
}

#[tokio::test]
async fn operators_issue_every_kind_and_a_token_works_as_soon_as_it_is_issued() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;

    let issued = h
        .issue_token(
            &h.operator,
            json!({"kind": "user", "site_id": w.b.id, "user_id": w.plain, "name": "plain's phone", "expires_in_days": 7.0}),
        )
        .await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    let secret = issued.json["token"].as_str().expect("the secret");
    assert!(secret.starts_with("sl_") && secret.len() == 51);
    assert_eq!(issued.json["kind"], json!("user"));
    assert_eq!(issued.json["name"], json!("plain's phone"));
    let me = h.get(secret, "/v1/whoami").await;
    assert_eq!(me.ok()["user_id"], json!(w.plain));

    for body in [
        json!({"kind": "service", "site_id": w.a.id, "name": "billing"}),
        json!({"kind": "auditor", "name": "regulator"}),
        json!({"kind": "auditor", "site_id": w.b.id, "name": "B's auditor"}),
        json!({"kind": "operator", "name": "second operator"}),
    ] {
        let reply = h.issue_token(&h.operator, body.clone()).await;
        assert_eq!(reply.status, 201, "{body}: {}", reply.text);
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn r_user_5_a_sites_user_managers_manage_the_tokens_of_its_users_and_no_others() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let (a_user, _) = h.user(&w.a, "ann@alpha.org", "presenter").await;

    // Given A's admin (Administration: Manage Users), when they issue a
    // token for a user of A, then it is issued.
    let issued = h
        .issue_token(&w.a.admin_token, user_token(w.a.id, a_user))
        .await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    let a_secret = issued.json["token"].as_str().unwrap().to_owned();
    let a_token_id = issued.json["token_id"].as_str().unwrap().to_owned();

    // Nothing else: B's users, users of no site, other kinds, and for
    // callers who do not manage users.
    let auditor = h.auditor_token(Some(w.a.id)).await;
    let before = h.token_count().await;
    h.issue_token(&w.a.admin_token, user_token(w.b.id, w.plain))
        .await
        .assert_problem(404, "not_found");
    h.issue_token(&w.a.admin_token, user_token(w.a.id, w.plain))
        .await
        .assert_problem(404, "not_found");
    h.issue_token(
        &w.a.admin_token,
        json!({"kind": "service", "site_id": w.a.id, "name": "billing"}),
    )
    .await
    .assert_problem(403, "forbidden");
    h.issue_token(&w.b.admin_token, user_token(w.a.id, a_user))
        .await
        .assert_problem(404, "not_found");
    h.issue_token(&w.plain_token, user_token(w.b.id, w.plain))
        .await
        .assert_problem(403, "forbidden");
    h.issue_token(&auditor, user_token(w.a.id, a_user))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(h.token_count().await, before, "nothing issued");

    // Lists: A's admin sees A's user tokens only; the operator every one.
    let listed = h.get(&w.a.admin_token, "/v1/tokens").await;
    let listed = listed.ok().as_array().expect("a list").clone();
    assert!(listed
        .iter()
        .all(|t| t["site"] == json!(w.a.id) && t["kind"] == json!("user")));
    assert!(listed.iter().any(|t| t["token_id"] == json!(a_token_id)));
    assert!(
        listed.iter().all(|t| t.get("token").is_none()),
        "no secrets"
    );
    h.get(&w.a.admin_token, &format!("/v1/tokens?site_id={}", w.b.id))
        .await
        .assert_problem(404, "not_found");
    h.get(&w.plain_token, "/v1/tokens")
        .await
        .assert_problem(403, "forbidden");
    let all = h.get(&h.operator, "/v1/tokens").await;
    assert!(all.ok().as_array().unwrap().len() > listed.len());
    let b_only = h
        .get(&h.operator, &format!("/v1/tokens?site_id={}", w.b.id))
        .await;
    assert!(b_only
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["site"] == json!(w.b.id)));
    // A page at a time, newest first: every token once, in order.
    let every: Vec<Value> = all.json.as_array().unwrap().clone();
    let mut paged: Vec<Value> = Vec::new();
    let mut after = String::new();
    loop {
        let page = h
            .get(&h.operator, &format!("/v1/tokens?limit=2{after}"))
            .await;
        let page = page.ok().as_array().unwrap().clone();
        let Some(last) = page.last() else { break };
        after = format!("&after={}", last["token_id"].as_str().unwrap());
        let full = page.len() == 2;
        paged.extend(page);
        if !full {
            break;
        }
    }
    let ids = |list: &[Value]| -> Vec<String> {
        list.iter()
            .map(|t| t["token_id"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ids(&paged), ids(&every));
    // One user's tokens; a cursor naming no token; limit 0.
    let mine = h
        .get(&h.operator, &format!("/v1/tokens?user_id={a_user}"))
        .await;
    assert!(mine
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .all(|t| t["user"] == json!(a_user)));
    h.get(&h.operator, &format!("/v1/tokens?after={}", Uuid::new_v4()))
        .await
        .assert_problem(404, "bad_cursor");
    h.get(&h.operator, "/v1/tokens?limit=0")
        .await
        .assert_problem(400, "invalid_query");

    // Revoking: B's admin cannot see A's token; A's admin revokes it, and
    // it is refused at once; revoking again changes nothing.
    h.revoke_token(&w.b.admin_token, &a_token_id)
        .await
        .assert_problem(404, "not_found");
    assert_eq!(h.get(&a_secret, "/v1/whoami").await.status, 200);
    let last_use = |list: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["token_id"] == json!(a_token_id))
            .map(|t| t["last_used_at"].clone())
    };
    let revoked = h.revoke_token(&w.a.admin_token, &a_token_id).await;
    assert_eq!(revoked.status, 204, "{}", revoked.text);
    let before = h.get(&h.operator, "/v1/tokens").await;
    let before = last_use(before.ok());
    h.get(&a_secret, "/v1/whoami")
        .await
        .assert_problem(401, "bad_token");
    // A refused revoked token is no use: its last use stays.
    let after = h.get(&h.operator, "/v1/tokens").await;
    assert_eq!(last_use(after.ok()), before);
    assert_eq!(
        h.revoke_token(&w.a.admin_token, &a_token_id).await.status,
        204
    );
    h.revoke_token(&h.operator, &Uuid::new_v4().to_string())
        .await
        .assert_problem(404, "not_found");
    harness.shutdown().await;
}

#[tokio::test]
async fn r_user_6_a_deactivated_user_gets_no_new_token_and_a_deactivated_manager_issues_none() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let (manager, manager_token) = h.user(&w.a, "manager@alpha.org", "administration").await;
    let (ann, _) = h.user(&w.a, "ann@alpha.org", "presenter").await;
    h.must(
        &w.a.admin_token,
        "DeactivateUser",
        json!({"site_id": w.a.id, "user_id": ann}),
    )
    .await;
    let before = h.token_count().await;
    h.issue_token(&w.a.admin_token, user_token(w.a.id, ann))
        .await
        .assert_problem(409, "user_inactive");
    h.must(
        &w.a.admin_token,
        "DeactivateUser",
        json!({"site_id": w.a.id, "user_id": manager}),
    )
    .await;
    h.issue_token(&manager_token, user_token(w.a.id, w.a.admin))
        .await
        .assert_problem(403, "forbidden");
    assert_eq!(h.token_count().await, before, "nothing issued");
    harness.shutdown().await;
}

#[tokio::test]
async fn bad_token_requests_are_refused_and_issue_nothing() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let before = h.token_count().await;
    for (body, code) in [
        (
            json!({"kind": "user", "site_id": w.a.id, "name": "no user"}),
            "invalid_body",
        ),
        (
            json!({"kind": "operator", "site_id": w.a.id, "name": "x"}),
            "invalid_body",
        ),
        (
            json!({"kind": "service", "name": "no site"}),
            "invalid_body",
        ),
        (json!({"kind": "auditor", "name": "   "}), "invalid_body"),
        (
            json!({"kind": "auditor", "name": "x", "expires_in_days": 0}),
            "invalid_body",
        ),
        (
            json!({"kind": "auditor", "name": "x", "expires_in_days": 3661}),
            "invalid_body",
        ),
        (
            json!({"kind": "auditor", "name": "x", "scope": "all"}),
            "invalid_body",
        ),
        (json!({"kind": "root", "name": "x"}), "invalid_body"),
        (
            json!({"kind": "auditor", "name": "a\u{0}b"}),
            "unstorable_text",
        ),
    ] {
        h.issue_token(&h.operator, body.clone())
            .await
            .assert_problem(422, code);
    }
    h.post_raw(
        "/v1/tokens",
        &[
            bearer(&h.operator),
            ("content-type", "text/plain".to_owned()),
        ],
        b"{}".to_vec(),
    )
    .await
    .assert_problem(415, "unsupported_media_type");
    h.revoke_token(&h.operator, "not-a-uuid")
        .await
        .assert_problem(400, "invalid_path");
    assert_eq!(h.token_count().await, before, "nothing issued");
    harness.shutdown().await;
}

#[tokio::test]
async fn the_list_shows_when_each_token_was_last_used() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let issued = h
        .issue_token(&w.a.admin_token, user_token(w.a.id, w.a.admin))
        .await;
    assert_eq!(issued.status, 201, "{}", issued.text);
    let secret = issued.json["token"].as_str().unwrap().to_owned();
    let token_id = issued.json["token_id"].clone();
    let last_used = |list: &Value| {
        list.as_array()
            .unwrap()
            .iter()
            .find(|t| t["token_id"] == token_id)
            .map(|t| t["last_used_at"].clone())
            .expect("listed")
    };
    let listed = h.get(&w.a.admin_token, "/v1/tokens").await;
    assert_eq!(last_used(listed.ok()), Value::Null, "never used yet");
    assert_eq!(h.get(&secret, "/v1/whoami").await.status, 200);
    h.eventually("the use is recorded", Duration::from_secs(10), || async {
        let listed = h.get(&w.a.admin_token, "/v1/tokens").await;
        last_used(&listed.json).is_string()
    })
    .await;
    harness.shutdown().await;
}
