//! The auditors' routes through a real server: as-of answers, diffs,
//! timelines and verify; who may call them; bad input.

mod common;

use common::Harness;
use serde_json::json;

/// Given the world (A offers BETA its data, shares one scorecard, B's
/// partner user is granted Browser on it), when the grant is revoked
/// later, then as of the grant's position the partner could see it, as of
/// now not, and the diff says what was lost.
#[tokio::test]
async fn as_of_answers_and_diffs_follow_the_history() {
    let h = Harness::start().await;
    let w = h.world().await;
    let granted = w.last;
    let revoked = h
        .must(
            &w.b.admin_token,
            "RevokeScorecardAccess",
            json!({"site_id": w.b.id, "user_id": w.partner, "scorecard_id": w.shared_scorecard}),
        )
        .await;
    let auditor = h.auditor_token(Some(w.b.id)).await;
    let check = |at: u64| {
        format!(
            "/v1/audit/as-of/check?at_position={at}&user_id={}&target_type=scorecard&target_id={}&action=view",
            w.partner, w.shared_scorecard
        )
    };
    let then = h.get(&auditor, &check(granted)).await;
    assert_eq!(then.ok()["allowed"], true, "{}", then.text);
    assert_eq!(then.json["level"], "browser");
    assert_eq!(then.json["position"], granted);
    let now = h.get(&auditor, &check(revoked)).await;
    assert_eq!(now.ok()["allowed"], false);
    // Before the grant, the partner could not see it either.
    let before = h.get(&auditor, &check(granted - 1)).await;
    assert_eq!(before.ok()["allowed"], false);

    // as of the grant.
    let lookup = h
        .get(
            &auditor,
            &format!(
                "/v1/audit/as-of/lookup?at_position={granted}&user_id={}",
                w.partner
            ),
        )
        .await;
    let items = lookup.ok()["items"].as_array().unwrap().clone();
    assert!(items
        .iter()
        .any(|i| i["target"]["id"] == json!(w.shared_scorecard)));
    let explain = h
        .get(
            &auditor,
            &format!(
                "/v1/audit/as-of/explain?at_position={granted}&user_id={}&target_type=scorecard&target_id={}",
                w.partner, w.shared_scorecard
            ),
        )
        .await;
    assert!(!explain.ok()["paths"].as_array().unwrap().is_empty());
    // Its actors include A's admin, who shared the scorecard (a user of the
    // other site of the path), as the live explanation names them.
    let codes: Vec<&str> = explain.json["actors"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| a["site_code"].as_str().unwrap())
        .collect();
    assert!(codes.contains(&"ALPHA"), "{:#}", explain.json);

    // The diff from the grant to the revoke, for the user.
    let diff = h
        .get(
            &auditor,
            &format!(
                "/v1/audit/diff?scope=user&user_id={}&from_position={granted}&to_position={revoked}",
                w.partner
            ),
        )
        .await;
    let lost = diff.ok()["lost"].as_array().unwrap().clone();
    assert!(lost
        .iter()
        .any(|c| c["target"]["id"] == json!(w.shared_scorecard) && c["before"] == "browser"));
    assert!(diff.json["gained"].as_array().unwrap().is_empty());
    // Each change names its user, target and owner (R-SHARE-6).
    let change = lost
        .iter()
        .find(|c| c["target"]["id"] == json!(w.shared_scorecard))
        .unwrap();
    assert_eq!(change["owner_code"], json!("ALPHA"), "{change:#}");
    assert!(change["username"].is_string(), "{change:#}");
    assert!(change["target_name"].is_string(), "{change:#}");

    // Who could see A's shared scorecard then: A's auditor may ask (its
    // content); the partner was among the viewers.
    let a_auditor = h.auditor_token(Some(w.a.id)).await;
    let viewers = h
        .get(
            &a_auditor,
            &format!(
                "/v1/audit/as-of/viewers?at_position={granted}&target_type=scorecard&target_id={}",
                w.shared_scorecard
            ),
        )
        .await;
    assert!(viewers.ok()["viewers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|v| v["user"] == json!(w.partner)));
    h.shutdown().await;
}

#[tokio::test]
async fn timelines_list_the_sharing_history_and_verify_reports_the_chain() {
    let h = Harness::start().await;
    let w = h.world().await;
    let auditor = h.auditor_token(Some(w.a.id)).await;
    let site = h
        .get(
            &auditor,
            &format!(
                "/v1/audit/timeline/sites/{}?min_position={}",
                w.a.id, w.last
            ),
        )
        .await;
    let commands: Vec<String> = site.ok()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["command"].as_str().unwrap().to_owned())
        .collect();
    for wanted in ["RegisterSite", "RequestConnection", "ShareScorecard"] {
        assert!(commands.iter().any(|c| c == wanted), "{commands:?}");
    }
    let link = h
        .get(
            &auditor,
            &format!(
                "/v1/audit/timeline/links?site={}&partner_site={}&min_position={}",
                w.a.id, w.b.id, w.last
            ),
        )
        .await;
    assert!(!link.ok()["entries"].as_array().unwrap().is_empty());
    let scorecard = h
        .get(
            &auditor,
            &format!(
                "/v1/audit/timeline/scorecards/{}?min_position={}&limit=1",
                w.shared_scorecard, w.last
            ),
        )
        .await;
    assert_eq!(scorecard.ok()["entries"].as_array().unwrap().len(), 1);
    assert!(scorecard.json["next"].is_string(), "more than one entry");

    let verify = h.get(&auditor, "/v1/audit/verify").await;
    assert!(verify.ok()["problem"].is_null(), "{}", verify.text);
    h.shutdown().await;
}

#[tokio::test]
async fn audit_routes_are_for_auditors_and_operators_of_the_right_site() {
    let h = Harness::start().await;
    let w = h.world().await;
    let before = h.snapshot().await;
    let a_auditor = h.auditor_token(Some(w.a.id)).await;
    let b_auditor = h.auditor_token(Some(w.b.id)).await;
    let check_b_user = format!(
        "/v1/audit/as-of/check?at_position={}&user_id={}&target_type=scorecard&target_id={}&action=view",
        w.last, w.partner, w.shared_scorecard
    );
    // A user token, even an admin's, reads no history.
    h.get(&w.a.admin_token, &check_b_user)
        .await
        .assert_problem(403, "forbidden");
    h.get(&w.a.admin_token, "/v1/audit/verify")
        .await
        .assert_problem(403, "forbidden");
    // No token at all.
    h.get_with("/v1/audit/verify", &[])
        .await
        .assert_problem(401, "unauthenticated");
    // A's auditor may not ask about B's users, nor read B's history.
    h.get(&a_auditor, &check_b_user)
        .await
        .assert_problem(404, "unknown_user");
    h.get(&a_auditor, &format!("/v1/audit/timeline/sites/{}", w.b.id))
        .await
        .assert_problem(404, "not_found");
    h.get(
        &a_auditor,
        &format!(
            "/v1/audit/diff?scope=site&site_id={}&from_position=0&to_position={}",
            w.b.id, w.last
        ),
    )
    .await
    .assert_problem(404, "not_found");
    // B's auditor may not learn of A's private scorecard, nor who sees A's content.
    h.get(
        &b_auditor,
        &format!(
            "/v1/audit/as-of/check?at_position={}&user_id={}&target_type=scorecard&target_id={}&action=view",
            w.last, w.partner, w.private_scorecard
        ),
    )
    .await
    .assert_problem(404, "unknown_target");
    h.get(
        &b_auditor,
        &format!(
            "/v1/audit/as-of/viewers?at_position={}&target_type=scorecard&target_id={}",
            w.last, w.shared_scorecard
        ),
    )
    .await
    .assert_problem(404, "unknown_target");
    h.get(
        &b_auditor,
        &format!("/v1/audit/timeline/scorecards/{}", w.private_scorecard),
    )
    .await
    .assert_problem(404, "unknown_target");
    // The operator reads everything.
    let all = h.get(&h.operator, &check_b_user).await;
    assert_eq!(all.ok()["allowed"], true);
    // Nothing was written by any of it.
    assert_eq!(h.snapshot().await, before);
    h.shutdown().await;
}

#[tokio::test]
async fn bad_audit_input_is_a_clear_problem_and_changes_nothing() {
    let h = Harness::start().await;
    let w = h.world().await;
    let before = h.snapshot().await;
    let auditor = h.auditor_token(None).await;
    let user = w.partner;
    let sc = w.shared_scorecard;
    let cases: Vec<(String, u16, &str)> = vec![
        // Neither or both moments.
        (
            format!("/v1/audit/as-of/check?user_id={user}&target_type=scorecard&target_id={sc}&action=view"),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/audit/as-of/check?at_position=1&at_time=2026-01-01T00:00:00Z&user_id={user}&target_type=scorecard&target_id={sc}&action=view"),
            400,
            "invalid_query",
        ),
        // Beyond the head: a conflict with the log's state.
        (
            format!("/v1/audit/as-of/check?at_position=999999&user_id={user}&target_type=scorecard&target_id={sc}&action=view"),
            409,
            "future_position",
        ),
        // Not a time.
        (
            format!("/v1/audit/as-of/lookup?at_time=yesterday&user_id={user}"),
            400,
            "invalid_query",
        ),
        // Unknown parameter, bad uuid, bad action.
        (
            format!("/v1/audit/as-of/lookup?at_position=1&user_id={user}&verbose=1"),
            400,
            "invalid_query",
        ),
        (
            "/v1/audit/as-of/viewers?at_position=1&target_type=scorecard&target_id=nope".to_owned(),
            400,
            "invalid_query",
        ),
        (
            format!("/v1/audit/as-of/check?at_position=1&user_id={user}&target_type=scorecard&target_id={sc}&action=fly"),
            400,
            "invalid_query",
        ),
        // A user who did not exist yet.
        (
            format!("/v1/audit/as-of/lookup?at_position=1&user_id={user}"),
            404,
            "unknown_user",
        ),
        // Diffs: moments out of order, missing scope fields.
        (
            format!("/v1/audit/diff?scope=user&user_id={user}&from_position={}&to_position=1", w.last),
            400,
            "moments_out_of_order",
        ),
        (
            format!("/v1/audit/diff?scope=partner&site_id={}&from_position=0&to_position=1", w.a.id),
            400,
            "invalid_query",
        ),
        // A field of another scope.
        (
            format!("/v1/audit/diff?scope=user&user_id={user}&site_id={}&from_position=0&to_position=1", w.a.id),
            400,
            "invalid_query",
        ),
        // A timeline's min_position beyond the head is refused at once.
        (
            format!("/v1/audit/timeline/sites/{}?min_position=999999", w.a.id),
            409,
            "future_position",
        ),
        // Timelines: bad cursor, zero limit, bad path.
        (
            format!("/v1/audit/timeline/sites/{}?after=garbage", w.a.id),
            404,
            "bad_cursor",
        ),
        (
            format!("/v1/audit/timeline/sites/{}?limit=0", w.a.id),
            400,
            "invalid_query",
        ),
        (
            "/v1/audit/timeline/sites/not-a-uuid".to_owned(),
            400,
            "invalid_path",
        ),
        (
            format!("/v1/audit/timeline/links?site={}", w.a.id),
            400,
            "invalid_query",
        ),
    ];
    for (path, status, code) in cases {
        let reply = h.get(&auditor, &path).await;
        assert_eq!(reply.status, status, "{path}: {}", reply.text);
        reply.assert_problem(status, code);
    }
    assert_eq!(h.snapshot().await, before);
    h.shutdown().await;
}
