//! The read side end to end: the access questions, the site
//! dashboards, and the operations routes, through a real server over
//! real PostgreSQL, on a small world built with the HTTP commands.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{command_names, Harness, Reply};
use serde_json::{json, Value};
use shareledger_gateway::GatewayOptions;
use uuid::Uuid;

fn check_path(user: Option<Uuid>, kind: &str, id: Uuid, action: &str, min: u64) -> String {
    let user = user.map(|u| format!("user_id={u}&")).unwrap_or_default();
    format!("/v1/access/check?{user}target_type={kind}&target_id={id}&action={action}&min_position={min}")
}

fn explain_path(user: Option<Uuid>, kind: &str, id: Uuid, min: u64) -> String {
    let user = user.map(|u| format!("user_id={u}&")).unwrap_or_default();
    format!("/v1/access/explain?{user}target_type={kind}&target_id={id}&min_position={min}")
}

fn viewers_path(kind: &str, id: Uuid, min: u64) -> String {
    format!("/v1/access/viewers?target_type={kind}&target_id={id}&min_position={min}")
}

/// The targets of a lookup page, as (type, id).
fn targets(page: &Value) -> BTreeSet<(String, String)> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| {
            (
                i["target"]["type"].as_str().unwrap().to_owned(),
                i["target"]["id"].as_str().unwrap().to_owned(),
            )
        })
        .collect()
}

fn t(kind: &str, id: Uuid) -> (String, String) {
    (kind.to_owned(), id.to_string())
}

#[tokio::test]
async fn a_partner_user_sees_what_was_shared_and_granted_at_the_commands_position() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let p = w.last;

    // Browser on A's shared scorecard and on what shows on it.
    let view = h
        .get(
            &w.partner_token,
            &check_path(None, "scorecard", w.shared_scorecard, "view", p),
        )
        .await;
    let body = view.ok();
    assert_eq!(body["allowed"], json!(true), "{view:#?}");
    assert_eq!(body["level"], json!("browser"));
    assert_eq!(body["user_id"], json!(w.partner));
    assert_eq!(
        body["target"],
        json!({"type": "scorecard", "id": w.shared_scorecard})
    );
    assert!(body["position"].as_u64().unwrap() >= p);
    let edit = h
        .get(
            &w.partner_token,
            &check_path(None, "scorecard", w.shared_scorecard, "edit", p),
        )
        .await;
    assert_eq!(
        edit.ok()["allowed"],
        json!(false),
        "R-SHARE-5: at most Browser"
    );
    let object = h
        .get(
            &w.partner_token,
            &check_path(None, "object", w.shared_object, "view", p),
        )
        .await;
    assert_eq!(object.ok()["allowed"], json!(true), "{object:#?}");
    // The plain Presenter of B was granted nothing.
    let plain = h
        .get(
            &w.plain_token,
            &check_path(None, "object", w.shared_object, "view", p),
        )
        .await;
    assert_eq!(plain.ok()["allowed"], json!(false), "{plain:#?}");
    // B's admin asks about the partner (Instance Admin of the user's site).
    let by_admin = h
        .get(
            &w.b.admin_token,
            &check_path(Some(w.partner), "object", w.shared_object, "view", p),
        )
        .await;
    assert_eq!(by_admin.ok()["allowed"], json!(true));

    // exactly the shared scorecard and object, with their origin.
    let lookup = h
        .get(
            &w.partner_token,
            &format!("/v1/access/lookup?min_position={p}"),
        )
        .await;
    let page = lookup.ok();
    assert_eq!(
        targets(page),
        BTreeSet::from([
            t("scorecard", w.shared_scorecard),
            t("object", w.shared_object)
        ]),
        "{lookup:#?}"
    );
    for item in page["items"].as_array().unwrap() {
        assert_eq!(item["site"], json!(w.a.id));
        assert_eq!(item["origin_code"], json!("ALPHA"), "R-SHARE-6");
        assert_eq!(item["origin_name"], json!("ALPHA site"), "R-SHARE-6");
        assert_eq!(item["level"], json!("browser"));
        // Each item is named.
        let name = if item["target"]["type"] == json!("scorecard") {
            "Shared measures"
        } else {
            "Literacy rate"
        };
        assert_eq!(item["name"], json!(name), "{item:#}");
    }
    assert_eq!(page["next"], Value::Null);
    // Filtered and paged: one item per page, then the next.
    let first = h
        .get(
            &w.partner_token,
            &format!("/v1/access/lookup?limit=1&site={}", w.a.id),
        )
        .await;
    let first = first.ok().clone();
    assert_eq!(first["items"].as_array().unwrap().len(), 1);
    let next = first["next"].as_str().expect("a next cursor").to_owned();
    let second = h
        .get(
            &w.partner_token,
            &format!("/v1/access/lookup?limit=1&site={}&after={next}", w.a.id),
        )
        .await;
    let second = second.ok().clone();
    assert_eq!(second["items"].as_array().unwrap().len(), 1);
    assert_ne!(first["items"][0], second["items"][0]);
    let kinds = h
        .get(&w.partner_token, "/v1/access/lookup?kind=indicator")
        .await;
    assert_eq!(
        targets(kinds.ok()),
        BTreeSet::from([t("object", w.shared_object)])
    );
    // B's admin sees B's own scorecard and A's shared content, never A's private content.
    let admin_b = h
        .get(
            &w.b.admin_token,
            &format!("/v1/access/lookup?min_position={p}"),
        )
        .await;
    assert_eq!(
        targets(admin_b.ok()),
        BTreeSet::from([
            t("scorecard", w.shared_scorecard),
            t("object", w.shared_object),
            t("scorecard", w.b_scorecard)
        ])
    );

    // the path names the link, the share, the placement and the grant.
    let explain = h
        .get(
            &w.partner_token,
            &explain_path(None, "object", w.shared_object, p),
        )
        .await;
    let why = explain.ok();
    assert_eq!(why["owner"], json!(w.a.id));
    assert_eq!(why["level"], json!("browser"));
    let facts: BTreeSet<String> = why["paths"][0]["steps"]
        .as_array()
        .expect("a path")
        .iter()
        .map(|s| {
            assert!(s["event"].is_object(), "each step names its event: {s}");
            s["fact"]["fact"].as_str().unwrap().to_owned()
        })
        .collect();
    for fact in [
        "user_active",
        "link_active",
        "scorecard_shared",
        "placed_on_scorecard",
        "scorecard_assigned",
    ] {
        assert!(facts.contains(fact), "{fact} in {why:#}");
    }
    // A denial explains what is missing.
    let denied = h
        .get(
            &w.plain_token,
            &explain_path(None, "object", w.shared_object, p),
        )
        .await;
    let denied = denied.ok();
    assert_eq!(denied["paths"], json!([]));
    assert!(
        !denied["missing"].as_array().unwrap().is_empty(),
        "{denied:#}"
    );

    // for the owner's administrators: A's admin and B's partner.
    let viewers = h
        .get(
            &w.a.admin_token,
            &viewers_path("object", w.shared_object, p),
        )
        .await;
    let viewers = viewers.ok();
    assert_eq!(viewers["owner"], json!(w.a.id));
    let who: BTreeSet<String> = viewers["viewers"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v["user"].as_str().unwrap().to_owned())
        .collect();
    assert!(who.contains(&w.a.admin.to_string()) && who.contains(&w.partner.to_string()));
    // Each viewer is named: username, name and site code.
    let admin = viewers["viewers"]
        .as_array()
        .unwrap()
        .iter()
        .find(|v| v["user"] == json!(w.a.admin))
        .unwrap();
    assert_eq!(admin["username"], json!("admin@alpha.org"));
    assert_eq!(admin["name"], json!("Admin"));
    assert_eq!(admin["site_code"], json!("ALPHA"));
    assert!(!who.contains(&w.plain.to_string()), "{viewers:#}");
    // B sees the object but is not its owner's administrator.
    let refused = h
        .get(
            &w.b.admin_token,
            &viewers_path("object", w.shared_object, p),
        )
        .await;
    refused.assert_problem(403, "forbidden");
    harness.shutdown().await;
}

#[tokio::test]
async fn a_check_at_a_revocations_position_never_sees_the_revoked_access() {
    // Read-your-writes: each answer at a command's position reflects it.
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let ta = w.a.admin_token.as_str();
    for round in 0..5 {
        let scorecard = Uuid::new_v4();
        h.must(
            ta,
            "CreateScorecard",
            json!({"site_id": w.a.id, "scorecard_id": scorecard, "name": format!("Round {round}")}),
        )
        .await;
        let shared = h
            .must(
                ta,
                "ShareScorecard",
                json!({"site_id": w.a.id, "partner": w.b.id, "scorecard_id": scorecard}),
            )
            .await;
        let seen = h
            .get(
                &w.b.admin_token,
                &check_path(None, "scorecard", scorecard, "view", shared),
            )
            .await;
        assert_eq!(
            seen.ok()["allowed"],
            json!(true),
            "round {round}: {seen:#?}"
        );
        let unshared = h
            .must(
                ta,
                "UnshareScorecard",
                json!({"site_id": w.a.id, "partner": w.b.id, "scorecard_id": scorecard}),
            )
            .await;
        let gone = h
            .get(
                &w.b.admin_token,
                &check_path(None, "scorecard", scorecard, "view", unshared),
            )
            .await;
        gone.assert_problem(404, "unknown_target");
    }
    let revoked = h
        .must(
            ta,
            "RevokeSharing",
            json!({"site_id": w.a.id, "from": w.a.id, "to": w.b.id}),
        )
        .await;
    for (token, kind, id) in [
        (&w.partner_token, "scorecard", w.shared_scorecard),
        (&w.partner_token, "object", w.shared_object),
        (&w.b.admin_token, "object", w.shared_object),
    ] {
        let reply = h
            .get(token, &check_path(None, kind, id, "view", revoked))
            .await;
        reply.assert_problem(404, "unknown_target");
        let reply = h.get(token, &explain_path(None, kind, id, revoked)).await;
        reply.assert_problem(404, "unknown_target");
    }
    let lookup = h
        .get(
            &w.partner_token,
            &format!("/v1/access/lookup?min_position={revoked}"),
        )
        .await;
    assert_eq!(targets(lookup.ok()), BTreeSet::new());
    // The dashboards at the same position show the revoked link.
    let connections = h
        .get(
            ta,
            &format!("/v1/sites/{}/connections?min_position={revoked}", w.a.id),
        )
        .await;
    let link = connections
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .find(|c| c["to_site"] == json!(w.b.id))
        .cloned()
        .expect("the link A→B");
    assert_ne!(link["status"], json!("active"), "{link:#}");
    let shares = h
        .get(
            ta,
            &format!(
                "/v1/sites/{}/shared-scorecards?min_position={revoked}",
                w.a.id
            ),
        )
        .await;
    assert!(shares
        .ok()
        .as_array()
        .unwrap()
        .iter()
        .all(|p| p["partner"] != json!(w.b.id) || p["scorecards"].as_array().unwrap().is_empty()));
    harness.shutdown().await;
}

#[tokio::test]
async fn a_sites_dashboards_answer_its_administrators_and_auditors_at_the_commands_position() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let c = h.site("GAMMA").await;
    let p = h
        .must(
            &c.admin_token,
            "RequestConnection",
            json!({"site_id": c.id, "partner_code": "ALPHA", "directions": "both"}),
        )
        .await;
    let auditor_a = h.auditor_token(Some(w.a.id)).await;
    let platform = h.auditor_token(None).await;
    for token in [&w.a.admin_token, &auditor_a, &platform, &h.operator] {
        let site = h
            .get(token, &format!("/v1/sites/{}?min_position={p}", w.a.id))
            .await;
        let site = site.ok();
        assert_eq!(site["code"], json!("ALPHA"));
        assert_eq!(site["site_id"], json!(w.a.id));
        assert_eq!(site["active_users"], json!(1));

        let connections = h
            .get(
                token,
                &format!("/v1/sites/{}/connections?min_position={p}", w.a.id),
            )
            .await;
        let connections = connections.ok().as_array().unwrap().clone();
        assert!(
            connections.iter().any(|c| c["to_site"] == json!(w.b.id)
                && c["status"] == json!("active")
                && c["partner_code"] == json!("BETA")),
            "{connections:#?}"
        );
        assert!(
            connections.iter().any(|x| x["partner"] == json!(c.id)),
            "{connections:#?}"
        );

        let pending = h
            .get(
                token,
                &format!("/v1/sites/{}/pending-requests?min_position={p}", w.a.id),
            )
            .await;
        let pending = pending.ok().as_array().unwrap().clone();
        assert!(!pending.is_empty());
        assert!(
            pending.iter().all(|r| r["partner"] == json!(c.id)),
            "{pending:#?}"
        );

        let shared = h
            .get(
                token,
                &format!("/v1/sites/{}/shared-scorecards?min_position={p}", w.a.id),
            )
            .await;
        let shared = shared.ok().as_array().unwrap().clone();
        assert_eq!(shared.len(), 1, "{shared:#?}");
        assert_eq!(shared[0]["partner"], json!(w.b.id));
        assert_eq!(
            shared[0]["scorecards"][0]["scorecard_id"],
            json!(w.shared_scorecard)
        );
        assert_eq!(shared[0]["scorecards"][0]["owner_code"], json!("ALPHA"));
    }
    // B's users: sorted, searched, paged.
    let users = h
        .get(
            &w.b.admin_token,
            &format!("/v1/sites/{}/users?min_position={}", w.b.id, w.last),
        )
        .await;
    let users = users.ok();
    assert_eq!(users["total"], json!(3));
    let search = h
        .get(
            &w.b.admin_token,
            &format!("/v1/sites/{}/users?search=PARTNER", w.b.id),
        )
        .await;
    let search = search.ok();
    assert_eq!(search["total"], json!(1));
    assert_eq!(
        search["users"][0]["user_id"],
        json!(w.partner),
        "{search:#}"
    );
    let page = h
        .get(
            &w.b.admin_token,
            &format!(
                "/v1/sites/{}/users?limit=2&sort=name&descending=true",
                w.b.id
            ),
        )
        .await;
    let page = page.ok().clone();
    assert_eq!(page["users"].as_array().unwrap().len(), 2);
    let after = page["next"].as_str().expect("a next page").to_owned();
    let rest = h
        .get(
            &w.b.admin_token,
            &format!(
                "/v1/sites/{}/users?limit=2&sort=name&descending=true&after={after}",
                w.b.id
            ),
        )
        .await;
    assert_eq!(rest.ok()["users"].as_array().unwrap().len(), 1);
    // Filtered by role, flag and active (B: an admin and two Presenters).
    for (filter, total) in [
        ("role=presenter", 2),
        ("flag=instance_admin", 1),
        ("active=true&role=administration", 1),
        ("active=false", 0),
    ] {
        let filtered = h
            .get(
                &w.b.admin_token,
                &format!("/v1/sites/{}/users?{filter}", w.b.id),
            )
            .await;
        assert_eq!(filtered.ok()["total"], json!(total), "{filter}");
    }
    h.get(
        &w.b.admin_token,
        &format!("/v1/sites/{}/users?role=king", w.b.id),
    )
    .await
    .assert_problem(400, "invalid_query");
    // Seed 001: a user's name and email change; the list shows them, finds
    // the user by email, and sorts by email (no email first).
    let changed = h
        .must(
            &w.b.admin_token,
            "ChangeUserDetails",
            json!({"site_id": w.b.id, "user_id": w.partner, "name": "Pat Partner", "email": "pat@partner.example.org"}),
        )
        .await;
    let found = h
        .get(
            &w.b.admin_token,
            &format!(
                "/v1/sites/{}/users?search=partner.example&min_position={changed}",
                w.b.id
            ),
        )
        .await;
    let found = found.ok();
    assert_eq!(found["total"], json!(1), "{found:#}");
    assert_eq!(found["users"][0]["name"], json!("Pat Partner"));
    assert_eq!(found["users"][0]["email"], json!("pat@partner.example.org"));
    let by_email = h
        .get(
            &w.b.admin_token,
            &format!("/v1/sites/{}/users?sort=email&descending=true", w.b.id),
        )
        .await;
    assert_eq!(by_email.ok()["users"][0]["user_id"], json!(w.partner));
    // One user's detail: the summary and the level on each scorecard, with
    // its owner (A's shared scorecard, R-SHARE-5, R-SHARE-6).
    let detail = h
        .get(
            &w.b.admin_token,
            &format!(
                "/v1/sites/{}/users/{}?min_position={changed}",
                w.b.id, w.partner
            ),
        )
        .await;
    let detail = detail.ok();
    assert_eq!(detail["user"]["email"], json!("pat@partner.example.org"));
    let levels = detail["scorecard_access"].as_array().unwrap();
    assert!(
        levels
            .iter()
            .any(|l| l["scorecard_id"] == json!(w.shared_scorecard)
                && l["owner_code"] == json!("ALPHA")
                && l["level"] == json!("browser")),
        "{detail:#}"
    );
    // The partner has signed in (used its token): its last sign-in shows,
    // and counts as activity.
    h.get(&w.partner_token, "/v1/whoami").await.ok();
    // A use is recorded beside the request, not in it: wait for it.
    let detail_path = format!("/v1/sites/{}/users/{}", w.b.id, w.partner);
    h.eventually(
        "the partner's sign-in recorded",
        Duration::from_secs(10),
        || async {
            let reply = h.get(&w.b.admin_token, &detail_path).await;
            reply.status == 200 && reply.json["user"]["last_sign_in"].is_string()
        },
    )
    .await;
    let signed_in = h.get(&w.b.admin_token, &detail_path).await;
    let signed_in = signed_in.ok();
    assert!(
        signed_in["user"]["last_sign_in"].is_string(),
        "{signed_in:#}"
    );
    assert!(
        signed_in["user"]["last_activity"].is_string(),
        "{signed_in:#}"
    );
    h.get(
        &w.b.admin_token,
        &format!("/v1/sites/{}/users/{}", w.b.id, Uuid::new_v4()),
    )
    .await
    .assert_problem(404, "not_found");
    harness.shutdown().await;
}

#[tokio::test]
async fn dashboards_of_another_site_are_not_found_and_of_ones_own_need_admin_flags() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let auditor_a = h.auditor_token(Some(w.a.id)).await;
    for route in [
        "",
        "/connections",
        "/pending-requests",
        "/shared-scorecards",
        "/users",
    ] {
        let b_path = format!("/v1/sites/{}{route}", w.b.id);
        for token in [&w.a.admin_token, &auditor_a] {
            h.get(token, &b_path).await.assert_problem(404, "not_found");
        }
        // A site that does not exist answers the same.
        let nowhere = format!("/v1/sites/{}{route}", Uuid::new_v4());
        let missing = h.get(&w.a.admin_token, &nowhere).await;
        missing.assert_problem(404, "not_found");
        // B's Presenters are not B's administrators.
        h.get(&w.partner_token, &b_path)
            .await
            .assert_problem(403, "forbidden");
        let bad = format!("/v1/sites/not-a-uuid{route}");
        h.get(&w.a.admin_token, &bad)
            .await
            .assert_problem(400, "invalid_path");
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn bad_query_parameters_are_refused_with_a_clear_problem() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let tb = w.b.admin_token.as_str();
    let sc = w.shared_scorecard;
    let cases: Vec<(String, u16, &str)> = vec![
        (
            "/v1/access/check?target_type=scorecard&target_id=nope&action=view".to_owned(),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/access/check?target_type=widget&target_id={sc}&action=view"),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/access/check?target_type=scorecard&target_id={sc}&action=fly"),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/access/check?target_type=scorecard&target_id={sc}"),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/access/check?target_type=scorecard&target_id={sc}&action=view&foo=1"),
            400,
            "invalid_query",
        ),
        (
            format!(
                "/v1/access/check?target_type=scorecard&target_id={sc}&action=view&user_id=bob"
            ),
            400,
            "invalid_query",
        ),
        (
            format!(
                "/v1/access/check?target_type=scorecard&target_id={sc}&action=view&min_position=-1"
            ),
            400,
            "invalid_query",
        ),
        ("/v1/access/lookup?limit=0".to_owned(), 400, "invalid_query"),
        // A consistency token beyond the log's head is refused at once.
        (
            format!(
                "/v1/access/check?target_type=scorecard&target_id={sc}&action=view&min_position=999999"
            ),
            409,
            "future_position",
        ),
        (
            format!("/v1/sites/{}/connections?min_position=999999", w.b.id),
            409,
            "future_position",
        ),
        (
            "/v1/access/lookup?limit=many".to_owned(),
            400,
            "invalid_query",
        ),
        (
            "/v1/access/lookup?kind=widget".to_owned(),
            400,
            "invalid_query",
        ),
        (
            "/v1/access/lookup?after=garbage".to_owned(),
            404,
            "bad_cursor",
        ),
        (
            "/v1/access/lookup?verbose=true".to_owned(),
            400,
            "invalid_query",
        ),
        (
            format!(
                "/v1/access/viewers?target_type=object&target_id={sc}&user_id={}",
                w.partner
            ),
            400,
            "invalid_query",
        ),
        (
            "/v1/access/explain?target_type=object".to_owned(),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/sites/{}/users?limit=0", w.b.id),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/sites/{}/users?after=garbage", w.b.id),
            404,
            "bad_cursor",
        ),
        (
            format!("/v1/sites/{}/users?search=a%00b", w.b.id),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/sites/{}/users?sort=height", w.b.id),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/sites/{}/connections?page=2", w.b.id),
            400,
            "invalid_query",
        ),
    ];
    for (path, status, code) in cases {
        let reply = h.get(tb, &path).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{path}: {reply:#?}"
        );
        reply.assert_problem(status, code);
    }
    // Auditors and operators must name the user.
    let auditor = h.auditor_token(Some(w.b.id)).await;
    h.get(&auditor, "/v1/access/lookup")
        .await
        .assert_problem(400, "invalid_query");
    harness.shutdown().await;
}

#[tokio::test]
async fn questions_about_users_the_caller_may_not_ask_about_are_refused() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let p = w.last;
    let sc = w.shared_scorecard;
    // An unknown user.
    let unknown = Uuid::new_v4();
    h.get(
        &w.b.admin_token,
        &check_path(Some(unknown), "scorecard", sc, "view", p),
    )
    .await
    .assert_problem(404, "unknown_user");
    h.get(
        &h.operator,
        &check_path(Some(unknown), "scorecard", sc, "view", p),
    )
    .await
    .assert_problem(404, "unknown_user");
    // A Presenter asking about another user of their own site.
    for path in [
        check_path(Some(w.b.admin), "scorecard", sc, "view", p),
        explain_path(Some(w.b.admin), "scorecard", sc, p),
        format!("/v1/access/lookup?user_id={}", w.b.admin),
    ] {
        h.get(&w.plain_token, &path)
            .await
            .assert_problem(403, "forbidden");
    }
    // Users of another site are unknown to the caller, like users that do
    // not exist.
    for path in [
        check_path(Some(w.partner), "scorecard", sc, "view", p),
        format!("/v1/access/lookup?user_id={}", w.partner),
    ] {
        h.get(&w.a.admin_token, &path)
            .await
            .assert_problem(404, "unknown_user");
    }
    // A site's auditor asks about its users, not another site's.
    let auditor_b = h.auditor_token(Some(w.b.id)).await;
    let ok = h
        .get(
            &auditor_b,
            &check_path(Some(w.partner), "scorecard", sc, "view", p),
        )
        .await;
    assert_eq!(ok.ok()["allowed"], json!(true));
    h.get(
        &auditor_b,
        &check_path(Some(w.a.admin), "scorecard", sc, "view", p),
    )
    .await
    .assert_problem(404, "unknown_user");
    harness.shutdown().await;
}

/// The problem with the target's id blanked and without its request's id
/// (each request has its own), to compare two refusals.
fn without_id(reply: &Reply, id: Uuid) -> Value {
    let mut json = reply.json.clone();
    let detail = json["detail"]
        .as_str()
        .unwrap()
        .replace(&id.to_string(), "<id>");
    json["detail"] = json!(detail);
    json.as_object_mut().unwrap().remove("request_id");
    json
}

#[tokio::test]
async fn another_sites_unshared_objects_are_unknown_exactly_like_nonexistent_ones() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let p = w.last;
    let ghost = Uuid::new_v4();
    let auditor_b = h.auditor_token(Some(w.b.id)).await;
    for token in [&w.partner_token, &w.b.admin_token, &auditor_b] {
        let user = if *token == auditor_b {
            Some(w.partner)
        } else {
            None
        };
        for (kind, private) in [
            ("object", w.private_object),
            ("scorecard", w.private_scorecard),
        ] {
            let paths = |id| {
                vec![
                    check_path(user, kind, id, "view", p),
                    explain_path(user, kind, id, p),
                    viewers_path(kind, id, p),
                ]
            };
            for (real, fake) in paths(private).into_iter().zip(paths(ghost)) {
                let real_reply = h.get(token, &real).await;
                let fake_reply = h.get(token, &fake).await;
                real_reply.assert_problem(404, "unknown_target");
                fake_reply.assert_problem(404, "unknown_target");
                assert_eq!(
                    without_id(&real_reply, private),
                    without_id(&fake_reply, ghost),
                    "{real} and {fake} answer alike"
                );
                assert_eq!(
                    real_reply.headers.get("content-length"),
                    fake_reply.headers.get("content-length")
                );
            }
        }
        // Nor does A's private content appear in B's lookups.
        let lookup = h
            .get(
                token,
                &format!(
                    "/v1/access/lookup?site={}&limit=10000{}",
                    w.a.id,
                    user.map(|u| format!("&user_id={u}")).unwrap_or_default()
                ),
            )
            .await;
        let seen = targets(lookup.ok());
        assert!(
            !seen.contains(&t("object", w.private_object))
                && !seen.contains(&t("scorecard", w.private_scorecard))
        );
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn a_min_position_beyond_the_head_is_409_and_one_the_read_models_lag_behind_is_503() {
    let harness = Harness::start_with(GatewayOptions {
        freshness_timeout: Duration::from_millis(150),
        ..GatewayOptions::default()
    })
    .await;
    let h = &harness;
    let w = h.world().await;
    let sites = |at: u64| {
        [
            format!("/v1/sites/{}?min_position={at}", w.b.id),
            format!("/v1/sites/{}/connections?min_position={at}", w.b.id),
            format!("/v1/sites/{}/pending-requests?min_position={at}", w.b.id),
            format!("/v1/sites/{}/shared-scorecards?min_position={at}", w.b.id),
            format!("/v1/sites/{}/users?min_position={at}", w.b.id),
        ]
    };
    let access = |at: u64| {
        [
            check_path(None, "scorecard", w.b_scorecard, "view", at),
            explain_path(None, "scorecard", w.b_scorecard, at),
            viewers_path("scorecard", w.b_scorecard, at),
            format!("/v1/access/lookup?min_position={at}"),
        ]
    };
    // No write of this log is that far: refused at once, without waiting.
    let far = w.last + 1_000_000;
    for path in access(far).into_iter().chain(sites(far)) {
        h.get(&w.b.admin_token, &path)
            .await
            .assert_problem(409, "future_position");
    }

    // The SQL read models cannot commit while their checkpoints are locked:
    // a position the log has reached is not reached by them in time.
    let mut lock = h.db.pool().begin().await.expect("a transaction");
    sqlx::query("LOCK TABLE sl_checkpoints IN EXCLUSIVE MODE")
        .execute(&mut *lock)
        .await
        .expect("the lock");
    let written = h
        .must(
            &w.b.admin_token,
            "RequireTwoFactor",
            json!({"site_id": w.b.id, "required": true}),
        )
        .await;
    for path in sites(written) {
        let reply = h.get(&w.b.admin_token, &path).await;
        reply.assert_problem(503, "not_fresh_enough");
        assert_eq!(reply.headers["retry-after"], "1", "{path}");
    }
    // The access index is in memory: it has the position.
    for path in access(written) {
        assert_eq!(h.get(&w.b.admin_token, &path).await.status, 200, "{path}");
    }
    lock.rollback().await.expect("unlocked");
    for path in sites(written) {
        assert_eq!(h.get(&w.b.admin_token, &path).await.status, 200, "{path}");
    }

    // An access index that stopped following the log answers nothing
    // (fail closed), not even what it had reached.
    h.server.state().access().stop();
    let after_stop = h
        .must(
            &w.b.admin_token,
            "RequireTwoFactor",
            json!({"site_id": w.b.id, "required": false}),
        )
        .await;
    h.eventually("the index stops", Duration::from_secs(10), || async {
        h.get(&w.b.admin_token, &access(after_stop)[0]).await.code() == "read_model_stale"
    })
    .await;
    for path in access(after_stop) {
        let reply = h.get(&w.b.admin_token, &path).await;
        reply.assert_problem(503, "read_model_stale");
        assert_eq!(reply.headers["retry-after"], "1", "{path}");
    }
    // A user's right to a site's dashboards comes from the index too: with
    // it stopped, a user's token is refused (an admin deactivated meanwhile
    // must not keep seeing them), though the dashboards themselves follow.
    for path in sites(after_stop) {
        let reply = h.get(&w.b.admin_token, &path).await;
        reply.assert_problem(503, "read_model_stale");
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn health_ready_metrics_and_the_api_document() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;

    let health = h.get_with("/health", &[]).await;
    assert_eq!(health.ok()["status"], json!("ok"));

    // Ready once the read models have caught up with the world.
    h.eventually("ready", Duration::from_secs(30), || async {
        let ready = h.get_with("/ready", &[]).await;
        ready.status == 200 && ready.json["ready"] == json!(true)
    })
    .await;
    let ready = h.get_with("/ready", &[]).await;
    let ready = ready.ok();
    assert_eq!(ready["database"], json!(true));
    assert!(ready["head"].as_u64().unwrap() >= w.last);
    let parts = ready["parts"].as_array().unwrap();
    assert!(
        parts.iter().all(|m| m["ready"] == json!(true)),
        "{parts:#?}"
    );
    let names: Vec<&str> = parts.iter().map(|p| p["name"].as_str().unwrap()).collect();
    for part in [
        "access_index",
        "dashboards",
        "access_tables",
        "timeline",
        "consequences",
        "sealer",
        "history_archive",
    ] {
        assert!(names.contains(&part), "{part} in {names:?}");
    }

    // Metrics: operators and auditors only.
    h.get_with("/metrics", &[])
        .await
        .assert_problem(401, "unauthenticated");
    h.get(&w.a.admin_token, "/metrics")
        .await
        .assert_problem(403, "forbidden");
    let auditor = h.auditor_token(None).await;
    for token in [&h.operator, &auditor] {
        let metrics = h.get(token, "/metrics").await;
        assert_eq!(metrics.status, 200);
        assert!(metrics.content_type.starts_with("text/plain"));
        assert!(
            metrics.text.contains("shareledger_http_requests_total"),
            "{}",
            metrics.text
        );
        assert!(
            metrics.text.contains("route=\"/v1/commands/{name}\""),
            "{}",
            metrics.text
        );
    }

    // The document: any valid token; a path per command.
    h.get_with("/v1/openapi.json", &[])
        .await
        .assert_problem(401, "unauthenticated");
    let doc = h.get(&w.partner_token, "/v1/openapi.json").await;
    let doc = doc.ok();
    for name in command_names() {
        assert!(
            doc["paths"][format!("/v1/commands/{name}")]["post"].is_object(),
            "{name}"
        );
    }
    for path in [
        "/v1/access/check",
        "/v1/access/lookup",
        "/v1/access/viewers",
        "/v1/access/explain",
        "/v1/sites/{site_id}/users",
    ] {
        assert!(doc["paths"][path]["get"].is_object(), "{path}");
    }
    let served: Value = doc.clone();
    let generated: Value =
        serde_json::from_str(&shareledger_gateway::openapi::document_json()).unwrap();
    assert_eq!(served, generated);

    // Who am I, and the log's status (auditors and operators).
    let me = h.get(&w.partner_token, "/v1/whoami").await;
    assert_eq!(me.ok()["user_id"], json!(w.partner));
    assert_eq!(me.ok()["kind"], json!("user"));
    h.get(&w.partner_token, "/v1/log/status")
        .await
        .assert_problem(403, "forbidden");
    let status = h.get(&auditor, "/v1/log/status").await;
    assert!(status.ok()["head_position"].as_u64().unwrap() >= w.last);

    // Unknown routes and wrong methods are problems too.
    h.get(&h.operator, "/v1/nothing/here")
        .await
        .assert_problem(404, "no_route");
    h.get_with("/favicon.ico", &[])
        .await
        .assert_problem(404, "no_route");
    let wrong = h.get(&h.operator, "/v1/commands/RegisterSite").await;
    wrong.assert_problem(405, "method_not_allowed");
    let wrong = h
        .request(
            reqwest::Method::DELETE,
            "/v1/access/check",
            &[("authorization", format!("Bearer {}", h.operator))],
        )
        .await;
    wrong.assert_problem(405, "method_not_allowed");
    let wrong = h
        .post_raw(
            "/health",
            &[("content-type", "application/json".into())],
            b"{}".to_vec(),
        )
        .await;
    wrong.assert_problem(405, "method_not_allowed");
    harness.shutdown().await;
}

#[tokio::test]
async fn queries_need_a_valid_token() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let path = check_path(None, "scorecard", w.b_scorecard, "view", w.last);
    h.get_with(&path, &[])
        .await
        .assert_problem(401, "unauthenticated");
    h.get(&format!("sl_{}", "cd".repeat(24)), &path)
        .await
        .assert_problem(401, "bad_token");
    let expired = common::issue(
        h.db.pool(),
        shareledger_gateway::auth::TokenKind::User,
        Some(w.b.id),
        Some(w.b.admin),
    )
    .await;
    sqlx::query("UPDATE sl_api_tokens SET expires_at = now() - interval '1 second' WHERE token_id = (SELECT token_id FROM sl_api_tokens ORDER BY created_at DESC LIMIT 1)")
        .execute(h.db.pool())
        .await
        .unwrap();
    h.get(&expired, &path)
        .await
        .assert_problem(401, "token_expired");
    h.get(&expired, &format!("/v1/sites/{}", w.b.id))
        .await
        .assert_problem(401, "token_expired");
    harness.shutdown().await;
}

#[tokio::test]
async fn the_consequence_worker_removes_a_partners_relationship_when_the_object_leaves_the_shared_scorecard(
) {
    // R-SHARE-4's deferred case, observed through HTTP: poll with a
    // deadline (the worker's effect has no consistency token of its own).
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    h.must(&w.b.admin_token, "LinkSharedObject", json!({"site_id": w.b.id, "relationship_id": Uuid::new_v4(), "scorecard_id": w.b_scorecard, "origin_site": w.a.id, "object_id": w.shared_object})).await;
    let removed = h
        .must(&w.a.admin_token, "RemoveObjectFromScorecard", json!({"site_id": w.a.id, "object_id": w.shared_object, "scorecard_id": w.shared_scorecard}))
        .await;
    // At once, B no longer knows the object.
    h.get(
        &w.b.admin_token,
        &check_path(None, "object", w.shared_object, "view", removed),
    )
    .await
    .assert_problem(404, "unknown_target");
    h.eventually(
        "the relationship's removal",
        Duration::from_secs(30),
        || async {
            let n: i64 = sqlx::query_scalar(
                "SELECT count(*) FROM sl_events WHERE event_type = 'RelationshipRemoved'",
            )
            .fetch_one(h.db.pool())
            .await
            .unwrap();
            n == 1
        },
    )
    .await;
    harness.shutdown().await;
}

#[tokio::test]
async fn connections_and_pending_requests_page_by_link() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    // C and D ask A for both directions: four links await A.
    let mut last = w.last;
    for code in ["GAMMA", "DELTA"] {
        let other = h.site(code).await;
        last = h
            .must(
                &other.admin_token,
                "RequestConnection",
                json!({"site_id": other.id, "partner_code": "ALPHA", "directions": "both"}),
            )
            .await;
    }
    for route in ["connections", "pending-requests"] {
        let path = |query: &str| format!("/v1/sites/{}/{route}?min_position={last}{query}", w.a.id);
        let all = h.get(&w.a.admin_token, &path("")).await;
        let all = all.ok().as_array().unwrap().clone();
        assert!(all.len() >= 4, "{route}: {all:#?}");
        let key = |item: &Value| {
            format!(
                "{}.{}",
                item["from_site"].as_str().unwrap(),
                item["to_site"].as_str().unwrap()
            )
        };
        let mut paged = Vec::new();
        let mut after = String::new();
        loop {
            let page = h
                .get(&w.a.admin_token, &path(&format!("&limit=1{after}")))
                .await;
            let page = page.ok().as_array().unwrap().clone();
            let Some(item) = page.first() else { break };
            after = format!("&after={}", key(item));
            paged.push(item.clone());
        }
        assert_eq!(paged, all, "{route}: every link once, in order");
        h.get(
            &w.a.admin_token,
            &path(&format!("&after={}.{}", Uuid::new_v4(), Uuid::new_v4())),
        )
        .await
        .assert_problem(404, "bad_cursor");
        h.get(&w.a.admin_token, &path("&after=nope"))
            .await
            .assert_problem(404, "bad_cursor");
        h.get(&w.a.admin_token, &path("&limit=0"))
            .await
            .assert_problem(400, "invalid_query");
    }
    harness.shutdown().await;
}
