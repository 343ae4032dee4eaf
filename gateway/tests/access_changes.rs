//! The access changes feed (`GET /v1/access-changes`), end to end through a
//! real server over real PostgreSQL: each entry names the event that
//! caused it; a site's admins see their users' and their content's
//! entries and nothing of a third site's; a user who administers nothing
//! sees their own; a revoke answers a waiting long poll with each partner
//! user's lost access.

mod common;

use common::Harness;
use serde_json::{json, Value};

/// Every entry for `token` with `query`, `limit` at a time, once the feed
/// has reached `position`.
async fn every_entry(
    h: &Harness,
    token: &str,
    query: &str,
    limit: u32,
    position: u64,
) -> Vec<Value> {
    let mut entries = Vec::new();
    let (mut after, mut seq): (u64, Option<u64>) = (0, None);
    loop {
        let seq_part = seq.map_or(String::new(), |s| format!("&after_seq={s}"));
        let page = h
            .get(
                token,
                &format!("/v1/access-changes?after={after}{seq_part}&limit={limit}&wait=5{query}"),
            )
            .await;
        let page = page.ok().clone();
        let got = page["changes"].as_array().unwrap().clone();
        assert!(got.len() <= limit as usize);
        entries.extend(got);
        after = page["next_after"].as_u64().unwrap();
        seq = page["next_after_seq"].as_u64();
        if seq.is_none() && after >= position {
            return entries;
        }
    }
}

#[tokio::test]
async fn r_share_given_a_shared_scorecard_then_each_site_sees_its_own_users_and_content_changes_only(
) {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let all = every_entry(h, &h.operator, "", 1000, w.last).await;
    // Paging by (position, seq) gives the same entries, whatever the size.
    assert_eq!(every_entry(h, &h.operator, "", 2, w.last).await, all);
    let shared = all
        .iter()
        .filter(|e| e["event_type"] == json!("ScorecardShared"))
        .collect::<Vec<_>>();
    // B's admin (All Scorecards) gains Browser on the shared scorecard and
    // the object on it, naming the share.
    assert!(shared.iter().any(|e| e["user"] == json!(w.b.admin)
        && e["target"] == json!({"type": "scorecard", "id": w.shared_scorecard})
        && e["kind"] == json!("gained")
        && e["after"] == json!("browser")
        && e["target_name"] == json!("Shared measures")));
    let (a, b) = (json!(w.a.id), json!(w.b.id));
    let seen_by_b = every_entry(h, &w.b.admin_token, "", 1000, w.last).await;
    assert!(!seen_by_b.is_empty());
    assert!(seen_by_b
        .iter()
        .all(|e| e["user_site"] == b || e["target_site"] == b));
    let expected: Vec<&Value> = all
        .iter()
        .filter(|e| e["user_site"] == b || e["target_site"] == b)
        .collect();
    assert_eq!(seen_by_b.iter().collect::<Vec<_>>(), expected);
    // A sees B's users' access to A's content (who can see A's items)...
    let seen_by_a = every_entry(h, &w.a.admin_token, "", 1000, w.last).await;
    assert!(seen_by_a
        .iter()
        .any(|e| e["user_site"] == b && e["target_site"] == a));
    // ...and nothing of B's users' access to B's own content.
    assert!(!seen_by_a
        .iter()
        .any(|e| e["user_site"] == b && e["target_site"] == b));

    // A user who administers nothing sees their own entries only.
    let own = every_entry(h, &w.partner_token, "", 1000, w.last).await;
    assert!(!own.is_empty());
    assert!(own.iter().all(|e| e["user"] == json!(w.partner)));
    h.get(
        &w.partner_token,
        &format!("/v1/access-changes?user={}", w.b.admin),
    )
    .await
    .assert_problem(403, "forbidden");
    h.get(
        &h.operator,
        &format!("/v1/access-changes?after={}", w.last + 1_000),
    )
    .await
    .assert_problem(409, "future_position");
    for bad in [
        "limit=0",
        "limit=1001",
        "wait=6",
        "after=-1",
        "user=nobody",
        "since=3",
    ] {
        h.get(&h.operator, &format!("/v1/access-changes?{bad}"))
            .await
            .assert_problem(400, "invalid_query");
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn r_conn_revoke_given_a_waiting_long_poll_when_b_revokes_then_it_answers_each_lost_access_naming_the_revoke(
) {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let before = every_entry(h, &w.b.admin_token, "", 1000, w.last).await;
    assert!(!before.is_empty());
    let path = format!("/v1/access-changes?after={}&wait=5", w.last);
    let poll = h.get(&w.b.admin_token, &path);
    let revoke = async {
        h.must(
            &w.b.admin_token,
            "RevokeSharing",
            json!({"site_id": w.b.id, "from": w.a.id, "to": w.b.id}),
        )
        .await
    };
    let (page, revoked) = tokio::join!(poll, revoke);
    let page = page.ok().clone();
    let mut lost = page["changes"].as_array().unwrap().clone();
    // The poll may have answered before the revoke was computed; read on.
    if lost.is_empty() {
        lost = every_entry(h, &w.b.admin_token, "", 1000, revoked)
            .await
            .into_iter()
            .filter(|e| e["position"].as_u64().unwrap() > w.last)
            .collect();
    }
    assert!(!lost.is_empty());
    for entry in &lost {
        assert_eq!(entry["event_type"], json!("LinkRevoked"), "{entry:#}");
        assert_eq!(entry["kind"], json!("lost"));
        assert_eq!(entry["before"], json!("browser"));
        assert_eq!(entry["after"], Value::Null);
        assert_eq!(entry["target_site"], json!(w.a.id));
    }
    // The partner user with access to the shared scorecard lost it too.
    assert!(lost.iter().any(|e| e["user"] == json!(w.partner)
        && e["target"] == json!({"type": "scorecard", "id": w.shared_scorecard})));
    harness.shutdown().await;
}
