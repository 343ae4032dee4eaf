//! Self-registration from a published link (seed 003, R-ONB-2), end to end
//! through a real server over real PostgreSQL: the group's Instance Admin
//! makes a link key (shown once, recorded only hashed), an anonymous caller
//! holding it registers a partner site and its first manager copied from
//! the model user and gets the manager's first token; the manager sees the
//! model site's scorecards the model user sees (shared over an active
//! link); rotation and withdrawal make old keys useless; abuse is bounded
//! (rate limit per address, body size), and every refusal writes nothing.

mod common;

use common::{Harness, Reply};
use serde_json::{json, Value};
use shareledger_gateway::GatewayOptions;
use uuid::Uuid;

/// A group with a scorecard, a model user (an administrator of its site)
/// with Editor on it, and
/// self-registration on (the group is its own model site).
struct Group {
    id: Uuid,
    admin_token: String,
    scorecard: Uuid,
}

async fn group(h: &Harness) -> Group {
    let g = h.site("GROUP").await;
    let scorecard = Uuid::new_v4();
    h.must(
        &g.admin_token,
        "CreateScorecard",
        json!({"site_id": g.id, "scorecard_id": scorecard, "name": "Assessments"}),
    )
    .await;
    let (model, _) = h.user(&g, "model@group.org", "administration").await;
    h.must(
        &g.admin_token,
        "GrantScorecardAccess",
        json!({"site_id": g.id, "user_id": model, "scorecard_id": scorecard, "level": "editor"}),
    )
    .await;
    h.must(
        &g.admin_token,
        "ConfigureSelfRegistration",
        json!({"site_id": g.id, "enabled": true, "model_site": g.id, "model_user": model}),
    )
    .await;
    Group {
        id: g.id,
        admin_token: g.admin_token,
        scorecard,
    }
}

async fn publish(h: &Harness, token: &str, site: Uuid, body: Value) -> Reply {
    h.post_raw(
        &format!("/v1/sites/{site}/self-registration-link"),
        &[
            ("authorization", format!("Bearer {token}")),
            ("content-type", "application/json".into()),
        ],
        serde_json::to_vec(&body).unwrap(),
    )
    .await
}

async fn register(h: &Harness, body: &Value, key: Uuid) -> Reply {
    h.post_raw(
        "/v1/self-registration",
        &[
            ("idempotency-key", key.to_string()),
            ("content-type", "application/json".into()),
        ],
        serde_json::to_vec(body).unwrap(),
    )
    .await
}

fn partner(link_key: &str, code: &str) -> Value {
    json!({
        "link_key": link_key,
        "code": code,
        "name": format!("{code} partner"),
        "manager_username": format!("boss@{}.org", code.to_lowercase()),
        "manager_name": "Pat Boss",
        "manager_email": format!("pat@{}.org", code.to_lowercase()),
    })
}

#[tokio::test]
async fn r_onb_2_a_partner_registers_through_the_published_link_and_its_manager_sees_what_the_model_sees(
) {
    // Every registration here comes from one address: more than the
    // default five a minute.
    let harness = Harness::start_with(GatewayOptions {
        registrations_per_minute: 100,
        ..GatewayOptions::default()
    })
    .await;
    let h = &harness;
    let g = group(h).await;
    // When the group's admin makes a link (new sites its children),
    let made = publish(h, &g.admin_token, g.id, json!({"child_of_group": true})).await;
    assert_eq!(made.status, 201, "{}", made.text);
    let link = made.json["link_key"].as_str().unwrap().to_owned();
    assert!(link.starts_with("slr_") && link.len() == 52, "{link}");
    // the log records only the key's hash, never the key.
    let log: Vec<String> = sqlx::query_scalar("SELECT data::text FROM sl_events")
        .fetch_all(h.db.pool())
        .await
        .unwrap();
    assert!(log.iter().all(|data| !data.contains(&link)));

    // When an anonymous caller registers with it,
    let key = Uuid::new_v4();
    let first = register(h, &partner(&link, "ACME"), key).await;
    assert_eq!(first.status, 201, "{}", first.text);
    let site = first.json["site_id"].as_str().unwrap().to_owned();
    let manager = first.json["manager_id"].as_str().unwrap().to_owned();
    let token = first.json["token"]["token"].as_str().unwrap().to_owned();
    // then the manager's token works, on the new site, a child of the group,
    let who = h.get(&token, "/v1/whoami").await;
    assert_eq!(who.ok()["site_id"], json!(site), "{}", who.text);
    let position = first.json["result"]["position"].as_u64().unwrap();
    let summary = h
        .get(&token, &format!("/v1/sites/{site}?min_position={position}"))
        .await;
    assert_eq!(summary.ok()["parent"], json!(g.id), "{}", summary.text);
    // and the manager sees the group's scorecard the model user sees,
    // shared with the new site, as a Browser (R-SHARE-5).
    let check = h
        .get(
            &token,
            &format!(
                "/v1/access/check?target_type=scorecard&target_id={}&action=view&min_position={position}",
                g.scorecard
            ),
        )
        .await;
    assert_eq!(check.ok()["allowed"], json!(true), "{}", check.text);
    assert_eq!(check.json["level"], json!("browser"));
    let detail = h
        .get(&token, &format!("/v1/sites/{site}/users/{manager}"))
        .await;
    assert_eq!(detail.ok()["user"]["email"], json!("pat@acme.org"));
    assert_eq!(detail.json["user"]["origin"], json!("self_registered"));

    // A retry with the same idempotency key registers nothing twice and
    // gives no second token.
    let before = h.snapshot().await;
    let again = register(h, &partner(&link, "ACME"), key).await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["token"], Value::Null);
    assert_eq!(again.json["site_id"], json!(site));
    assert_eq!(h.snapshot().await, before);

    // A second partner with the same link is fine; a taken code is not.
    let second = register(h, &partner(&link, "BETA"), Uuid::new_v4()).await;
    assert_eq!(second.status, 201, "{}", second.text);
    let before = h.snapshot().await;
    register(h, &partner(&link, "ACME"), Uuid::new_v4())
        .await
        .assert_problem(409, "site_code_taken");
    assert_eq!(h.snapshot().await, before);

    // Rotated, the old key registers nothing; the new one does.
    let rotated = publish(h, &g.admin_token, g.id, json!({})).await;
    assert_eq!(rotated.status, 201, "{}", rotated.text);
    let new_link = rotated.json["link_key"].as_str().unwrap().to_owned();
    assert_ne!(new_link, link);
    let before = h.snapshot().await;
    register(h, &partner(&link, "GAMMA"), Uuid::new_v4())
        .await
        .assert_problem(404, "self_registration_link_invalid");
    assert_eq!(h.snapshot().await, before);
    let gamma = register(h, &partner(&new_link, "GAMMA"), Uuid::new_v4()).await;
    assert_eq!(gamma.status, 201, "{}", gamma.text);

    // Turned off, no key works.
    let off = h
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/sites/{}/self-registration-link", g.id),
            &[("authorization", format!("Bearer {}", g.admin_token))],
        )
        .await;
    assert_eq!(off.status, 200, "{}", off.text);
    let before = h.snapshot().await;
    for bad_key in [
        new_link.clone(),
        format!("slr_{}", "0".repeat(48)),
        "not a key".to_owned(),
    ] {
        register(h, &partner(&bad_key, "DELTA"), Uuid::new_v4())
            .await
            .assert_problem(404, "self_registration_link_invalid");
    }
    assert_eq!(h.snapshot().await, before);
    harness.shutdown().await;
}

#[tokio::test]
async fn r_onb_2_only_the_groups_instance_admin_makes_a_link_and_only_once_self_registration_is_on()
{
    let harness = Harness::start().await;
    let h = &harness;
    let plain = h.site("PLAIN").await;
    let before = h.snapshot().await;
    // Self-registration is off on PLAIN.
    publish(h, &plain.admin_token, plain.id, json!({}))
        .await
        .assert_problem(409, "self_registration_not_configured");
    let g = group(h).await;
    let (_, presenter) = h
        .user(
            &common::SiteHandle {
                id: g.id,
                code: "GROUP".into(),
                admin: Uuid::nil(),
                admin_token: g.admin_token.clone(),
            },
            "viewer@group.org",
            "presenter",
        )
        .await;
    let before_group = h.snapshot().await;
    publish(h, &presenter, g.id, json!({}))
        .await
        .assert_problem(403, "not_permitted");
    // Another site's admin names the group: another site's data.
    publish(h, &plain.admin_token, g.id, json!({}))
        .await
        .assert_problem(403, "cross_site");
    publish(h, &g.admin_token, g.id, json!({"child": true}))
        .await
        .assert_problem(422, "invalid_body");
    assert_eq!(h.snapshot().await, before_group);
    assert_ne!(before, before_group);
    harness.shutdown().await;
}

#[tokio::test]
async fn r_onb_2_self_registration_is_rate_limited_per_address_and_bounded_in_size() {
    let harness = Harness::start_with(GatewayOptions {
        registrations_per_minute: 2,
        ..GatewayOptions::default()
    })
    .await;
    let h = &harness;
    let g = group(h).await;
    let made = publish(h, &g.admin_token, g.id, json!({})).await;
    let link = made.json["link_key"].as_str().unwrap().to_owned();
    // A body past 8 KiB is refused before it is read as JSON.
    let mut big = partner(&link, "BIG");
    big["name"] = json!("x".repeat(9_000));
    register(h, &big, Uuid::new_v4())
        .await
        .assert_problem(413, "payload_too_large");
    // That was one of the two this minute; one more, then 429.
    let ok = register(h, &partner(&link, "ONE"), Uuid::new_v4()).await;
    assert_eq!(ok.status, 201, "{}", ok.text);
    let before = h.snapshot().await;
    let limited = register(h, &partner(&link, "TWO"), Uuid::new_v4()).await;
    limited.assert_problem(429, "rate_limited");
    let wait: u64 = limited.headers["retry-after"]
        .to_str()
        .unwrap()
        .parse()
        .unwrap();
    assert!((1..=60).contains(&wait), "{wait}");
    assert_eq!(h.snapshot().await, before);
    harness.shutdown().await;
}
