//! Finding partners and asking several at once (seed 002), end to end
//! through a real server over real PostgreSQL: the partner directory lists
//! only the sites that chose to be listed, searched by name or code and
//! keyset-paged; a batch of connection requests answers one outcome per
//! partner, each decided on its own as `RequestConnection` (R-CONN-1,
//! R-CONN-2), and a retry with the same key writes nothing twice.

mod common;

use common::{Harness, Reply};
use serde_json::{json, Value};
use uuid::Uuid;

fn codes(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|s| s["code"].as_str().unwrap().to_owned())
        .collect()
}

async fn batch(h: &Harness, token: &str, site: Uuid, body: Value, key: Uuid) -> Reply {
    h.post_raw(
        &format!("/v1/sites/{site}/connection-requests"),
        &[
            ("authorization", format!("Bearer {token}")),
            ("idempotency-key", key.to_string()),
            ("content-type", "application/json".into()),
        ],
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

#[tokio::test]
async fn seed_002_the_directory_lists_only_sites_that_chose_to_be_listed_by_name_or_code() {
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    let b = h.site("BETA").await;
    let c = h.site("GAMMA").await;
    // Given A and C listed, B not.
    for site in [&a, &c] {
        h.must(
            &site.admin_token,
            "SetDirectoryListing",
            json!({"site_id": site.id, "listed": true}),
        )
        .await;
    }
    let last = h
        .must(
            &b.admin_token,
            "SetDirectoryListing",
            json!({"site_id": b.id, "listed": false}),
        )
        .await;
    let get = |query: String| {
        let token = b.admin_token.clone();
        async move { h.get(&token, &format!("/v1/directory?{query}")).await }
    };
    // When B looks, then it finds A and C by name, never itself.
    let all = get(format!("min_position={last}")).await;
    assert_eq!(codes(all.ok()), ["ALPHA", "GAMMA"]);
    // By part of a name or a code, case-insensitively.
    assert_eq!(codes(get("search=gam".into()).await.ok()), ["GAMMA"]);
    assert_eq!(
        codes(get("search=alpha%20SITE".into()).await.ok()),
        ["ALPHA"]
    );
    assert!(codes(get("search=beta".into()).await.ok()).is_empty());
    // One at a time, each once.
    let first = get("limit=1".into()).await;
    let first = first.ok();
    assert_eq!(codes(first), ["ALPHA"]);
    let next = first["next"].as_str().expect("a next page");
    let second = get(format!("limit=1&after={next}")).await;
    assert_eq!(codes(second.ok()), ["GAMMA"]);
    assert_eq!(second.json["next"], Value::Null);
    // A leaves the directory.
    let left = h
        .must(
            &a.admin_token,
            "SetDirectoryListing",
            json!({"site_id": a.id, "listed": false}),
        )
        .await;
    assert_eq!(
        codes(get(format!("min_position={left}")).await.ok()),
        ["GAMMA"]
    );
    // Only an Instance Admin lists its site (R-CONN-1's gate).
    let (_, plain) = h.user(&c, "plain@gamma.org", "presenter").await;
    h.command(
        &plain,
        "SetDirectoryListing",
        json!({"site_id": c.id, "listed": false}),
    )
    .await
    .assert_problem(403, "not_permitted");
    // A cursor of another list, and limit 0, are the query's fault.
    get("after=sc.00.00000000000000000000000000000000".into())
        .await
        .assert_problem(404, "bad_cursor");
    get("limit=0".into())
        .await
        .assert_problem(400, "invalid_query");
    harness.shutdown().await;
}

#[tokio::test]
async fn seed_002_requesting_several_partners_answers_each_and_a_retry_writes_nothing_twice() {
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    let _b = h.site("BETA").await;
    let _c = h.site("GAMMA").await;
    let key = Uuid::new_v4();
    let body = json!({"partner_codes": ["beta", "GAMMA", "NOPE", "ALPHA"], "directions": "both"});
    // When A asks four codes at once,
    let reply = batch(h, &a.admin_token, a.id, body.clone(), key).await;
    let answer = reply.ok().clone();
    let outcomes = answer["outcomes"].as_array().unwrap();
    // then each has its own outcome, in the order asked.
    let summary: Vec<(String, u64, String)> = outcomes
        .iter()
        .map(|o| {
            (
                o["partner_code"].as_str().unwrap().to_owned(),
                o["status"].as_u64().unwrap(),
                o["problem"]["code"].as_str().unwrap_or("").to_owned(),
            )
        })
        .collect();
    assert_eq!(
        summary,
        [
            ("BETA".to_owned(), 201, String::new()),
            ("GAMMA".to_owned(), 201, String::new()),
            ("NOPE".to_owned(), 404, "unknown_site_code".to_owned()),
            ("ALPHA".to_owned(), 409, "own_site_code".to_owned()),
        ]
    );
    assert_eq!(
        outcomes[0]["result"]["events"][0]["event_type"],
        json!("ConnectionRequested")
    );
    // A retry with the same key writes nothing: the written ones replay.
    let before = h.snapshot().await;
    let again = batch(h, &a.admin_token, a.id, body, key).await;
    let again = again.ok().clone();
    assert_eq!(h.snapshot().await, before, "the retry wrote");
    assert_eq!(again["outcomes"][0]["status"], json!(200));
    assert_eq!(again["outcomes"][0]["result"]["replayed"], json!(true));
    // A batch that cannot be read whole is refused whole, writing nothing.
    for bad in [
        json!({"partner_codes": [], "directions": "both"}),
        json!({"partner_codes": ["x"], "directions": "both"}),
        json!({"partner_codes": ["BETA"]}),
    ] {
        let before = h.snapshot().await;
        batch(h, &a.admin_token, a.id, bad.clone(), Uuid::new_v4())
            .await
            .assert_problem(422, "invalid_body");
        assert_eq!(h.snapshot().await, before, "{bad} wrote");
    }
    // A code named twice is asked once.
    let twice = batch(
        h,
        &a.admin_token,
        a.id,
        json!({"partner_codes": ["BETA", "beta"], "directions": "offer"}),
        Uuid::new_v4(),
    )
    .await;
    assert_eq!(twice.ok()["outcomes"].as_array().unwrap().len(), 1);
    // Auditors issue no commands; another site's id is that site's refusal
    // per partner (R-USER-9), never a write.
    let auditor = h.auditor_token(Some(a.id)).await;
    batch(
        h,
        &auditor,
        a.id,
        json!({"partner_codes": ["BETA"], "directions": "both"}),
        Uuid::new_v4(),
    )
    .await
    .assert_problem(403, "forbidden");
    let other = h.site("DELTA").await;
    let before = h.snapshot().await;
    let cross = batch(
        h,
        &other.admin_token,
        a.id,
        json!({"partner_codes": ["BETA"], "directions": "both"}),
        Uuid::new_v4(),
    )
    .await;
    assert_eq!(cross.ok()["outcomes"][0]["status"], json!(403));
    assert_eq!(h.snapshot().await, before);
    harness.shutdown().await;
}
