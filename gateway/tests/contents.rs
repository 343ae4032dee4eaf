//! The lists a UI needs of a site's content, end to end through a real
//! server over real PostgreSQL: `GET /v1/sites/{site_id}/scorecards`,
//! `/objects`, `/relationships`, `/shared-with` and `/children`. Each
//! answers with names what the HTTP commands did, pages with keyset
//! cursors, refuses a bad `limit` with 400 `invalid_query` and a cursor not
//! of the list with 404 `bad_cursor`, and
//! answers only the site's administrators (another site is 404, like one
//! that does not exist).

mod common;

use std::collections::BTreeSet;

use common::{Harness, Reply, World};
use serde_json::{json, Value};
use uuid::Uuid;

const ROUTES: [&str; 5] = [
    "scorecards",
    "objects",
    "relationships",
    "shared-with",
    "children",
];

/// The common world, and on it: A's Result "Youth outcomes" (on the shared
/// scorecard) holding an Indicator "Reading age"; A's child sites ANNEX
/// and BRANCH; B's Indicator "Total literacy", B's link of A's shared
/// object onto its own scorecard and its use of it in "Total literacy".
struct Content {
    w: World,
    youth: Uuid,
    reading: Uuid,
    annex: Uuid,
    branch: Uuid,
    total: Uuid,
    linked: Uuid,
    aggregated: Uuid,
    last: u64,
}

async fn content(h: &Harness) -> Content {
    let w = h.world().await;
    let (ta, tb) = (w.a.admin_token.as_str(), w.b.admin_token.as_str());
    let (youth, reading, total) = (Uuid::new_v4(), Uuid::new_v4(), Uuid::new_v4());
    h.must(
        ta,
        "CreateObject",
        json!({"site_id": w.a.id, "object_id": youth, "kind": "result", "name": "Youth outcomes"}),
    )
    .await;
    h.must(
        ta,
        "CreateObject",
        json!({"site_id": w.a.id, "object_id": reading, "kind": "indicator", "name": "Reading age", "container": youth}),
    )
    .await;
    h.must(
        ta,
        "PlaceObjectOnScorecard",
        json!({"site_id": w.a.id, "object_id": youth, "scorecard_id": w.shared_scorecard}),
    )
    .await;
    let mut children = Vec::new();
    for code in ["BRANCH", "ANNEX"] {
        let id = Uuid::new_v4();
        h.must(
            ta,
            "RegisterSite",
            json!({"site_id": id, "code": code, "name": format!("{code} site"), "seat_limit": 5, "parent": w.a.id}),
        )
        .await;
        children.push(id);
    }
    h.must(
        tb,
        "CreateObject",
        json!({"site_id": w.b.id, "object_id": total, "kind": "indicator", "name": "Total literacy"}),
    )
    .await;
    let (linked, aggregated) = (Uuid::new_v4(), Uuid::new_v4());
    h.must(
        tb,
        "LinkSharedObject",
        json!({"site_id": w.b.id, "relationship_id": linked, "scorecard_id": w.b_scorecard, "origin_site": w.a.id, "object_id": w.shared_object}),
    )
    .await;
    let last = h
        .must(
            tb,
            "UseSharedMeasureInAggregation",
            json!({"site_id": w.b.id, "relationship_id": aggregated, "into_object": total, "origin_site": w.a.id, "object_id": w.shared_object}),
        )
        .await;
    Content {
        youth,
        reading,
        branch: children[0],
        annex: children[1],
        total,
        linked,
        aggregated,
        last,
        w,
    }
}

fn list(site: Uuid, route: &str, query: &str) -> String {
    format!("/v1/sites/{site}/{route}?{query}")
}

/// Every page of a list, `limit` at a time: the items in order.
async fn every_page(h: &Harness, token: &str, site: Uuid, route: &str, limit: u32) -> Vec<Value> {
    let mut items = Vec::new();
    let mut after = String::new();
    for _ in 0..100 {
        let reply = h
            .get(token, &list(site, route, &format!("limit={limit}{after}")))
            .await;
        let page = reply.ok();
        let got = page["items"].as_array().expect("items");
        assert!(got.len() <= limit as usize, "{route}: {page:#}");
        items.extend(got.iter().cloned());
        match page["next"].as_str() {
            Some(next) => {
                assert_eq!(
                    got.len(),
                    limit as usize,
                    "{route}: a full page before more"
                );
                after = format!("&after={next}");
            }
            None => {
                assert_eq!(page["next"], Value::Null);
                return items;
            }
        }
    }
    panic!("{route}: paging does not end");
}

#[tokio::test]
async fn given_a_sites_content_when_its_admin_lists_it_then_each_list_names_what_the_commands_did()
{
    let harness = Harness::start().await;
    let h = &harness;
    let c = content(h).await;
    let w = &c.w;
    let at = format!("min_position={}", c.last);
    let get = |token: &str, site: Uuid, route: &str| {
        let path = list(site, route, &at);
        let token = token.to_owned();
        async move { h.get(&token, &path).await.ok().clone() }
    };
    let (ta, tb) = (w.a.admin_token.as_str(), w.b.admin_token.as_str());

    assert_eq!(
        get(ta, w.a.id, "scorecards").await,
        json!({"items": [
            {"scorecard_id": w.private_scorecard, "name": "Internal", "objects": 1, "linked_objects": 0},
            {"scorecard_id": w.shared_scorecard, "name": "Shared measures", "objects": 2, "linked_objects": 0},
        ], "next": null})
    );
    let shared = json!({"scorecard_id": w.shared_scorecard, "name": "Shared measures"});
    assert_eq!(
        get(ta, w.a.id, "objects").await,
        json!({"items": [
            {"object_id": w.shared_object, "kind": "indicator", "name": "Literacy rate",
             "container": null, "scorecards": [shared]},
            {"object_id": c.reading, "kind": "indicator", "name": "Reading age",
             "container": {"object_id": c.youth, "name": "Youth outcomes"}, "scorecards": []},
            {"object_id": w.private_object, "kind": "program", "name": "Secret program",
             "container": null,
             "scorecards": [{"scorecard_id": w.private_scorecard, "name": "Internal"}]},
            {"object_id": c.youth, "kind": "result", "name": "Youth outcomes",
             "container": null, "scorecards": [shared]},
        ], "next": null})
    );
    // Filtered: the objects placed directly on the shared scorecard.
    let on = h
        .get(
            ta,
            &list(
                w.a.id,
                "objects",
                &format!("scorecard={}&{at}", w.shared_scorecard),
            ),
        )
        .await;
    let ids: Vec<&Value> = on.ok()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|o| &o["object_id"])
        .collect();
    assert_eq!(ids, [&json!(w.shared_object), &json!(c.youth)]);
    assert_eq!(
        get(ta, w.a.id, "children").await,
        json!({"items": [
            {"site_id": c.annex, "code": "ANNEX", "name": "ANNEX site"},
            {"site_id": c.branch, "code": "BRANCH", "name": "BRANCH site"},
        ], "next": null})
    );
    // A shares; nothing is shared with A; A relates nothing.
    for route in ["shared-with", "relationships"] {
        assert_eq!(
            get(ta, w.a.id, route).await,
            json!({"items": [], "next": null})
        );
    }

    // B: what A shares with it, with A's code (R-SHARE-6).
    let alpha = json!({"site_id": w.a.id, "code": "ALPHA", "name": "ALPHA site"});
    assert_eq!(
        get(tb, w.b.id, "shared-with").await,
        json!({"items": [
            {"partner": alpha, "scorecard_id": w.shared_scorecard, "name": "Shared measures"},
        ], "next": null})
    );
    // B's relationships to A's object (R-SHARE-4), by the object's name
    // then id.
    let literacy =
        json!({"object_id": w.shared_object, "kind": "indicator", "name": "Literacy rate"});
    let mut expected = vec![
        json!({"relationship_id": c.linked, "kind": "link",
               "target": {"type": "scorecard", "id": w.b_scorecard, "name": "Our results"},
               "origin": alpha, "object": literacy}),
        json!({"relationship_id": c.aggregated, "kind": "aggregation",
               "target": {"type": "object", "id": c.total, "name": "Total literacy"},
               "origin": alpha, "object": literacy}),
    ];
    expected.sort_by_key(|r| r["relationship_id"].as_str().unwrap().to_owned());
    assert_eq!(
        get(tb, w.b.id, "relationships").await,
        json!({"items": expected, "next": null})
    );
    assert_eq!(
        get(tb, w.b.id, "scorecards").await,
        json!({"items": [
            {"scorecard_id": w.b_scorecard, "name": "Our results", "objects": 0, "linked_objects": 1},
        ], "next": null})
    );
    // B's own objects only, never A's it relates to.
    let b_objects = get(tb, w.b.id, "objects").await;
    assert_eq!(
        b_objects["items"],
        json!([{"object_id": c.total, "kind": "indicator", "name": "Total literacy",
                "container": null, "scorecards": []}])
    );
    assert!(get(tb, w.b.id, "children").await["items"]
        .as_array()
        .unwrap()
        .is_empty());

    // Unlinking takes the relationship off the list at its position.
    let p = h
        .must(
            tb,
            "UnlinkSharedObject",
            json!({"site_id": w.b.id, "relationship_id": c.linked}),
        )
        .await;
    let after = h
        .get(
            tb,
            &list(w.b.id, "relationships", &format!("min_position={p}")),
        )
        .await;
    let after = after.ok();
    assert_eq!(after["items"].as_array().unwrap().len(), 1);
    assert_eq!(after["items"][0]["relationship_id"], json!(c.aggregated));
    // The timeline names the site's own removal by its command, not as a
    // consequence.
    let auditor = h.auditor_token(Some(w.b.id)).await;
    let timeline = h
        .get(
            &auditor,
            &format!("/v1/audit/timeline/sites/{}?min_position={p}", w.b.id),
        )
        .await;
    let removal = timeline.ok()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .find(|e| e["event_type"] == json!("RelationshipRemoved"))
        .cloned()
        .expect("the removal in B's timeline");
    assert_eq!(
        removal["command"],
        json!("UnlinkSharedObject"),
        "{removal:#}"
    );
    harness.shutdown().await;
}

#[tokio::test]
async fn given_more_items_than_a_page_when_paged_then_every_item_comes_exactly_once_in_order() {
    let harness = Harness::start().await;
    let h = &harness;
    let c = content(h).await;
    let w = &c.w;
    let (ta, tb) = (w.a.admin_token.as_str(), w.b.admin_token.as_str());
    // More of each: names that tie case-insensitively sort by id.
    for (name, code) in [
        ("internal", "KONE"),
        ("INTERNAL", "KTWO"),
        ("Zoë", "KTHREE"),
    ] {
        h.must(
            ta,
            "CreateScorecard",
            json!({"site_id": w.a.id, "scorecard_id": Uuid::new_v4(), "name": name}),
        )
        .await;
        h.must(
            ta,
            "CreateObject",
            json!({"site_id": w.a.id, "object_id": Uuid::new_v4(), "kind": "program", "name": name}),
        )
        .await;
        h.must(
            ta,
            "RegisterSite",
            json!({"site_id": Uuid::new_v4(), "code": code, "name": name, "seat_limit": 5, "parent": w.a.id}),
        )
        .await;
    }
    h.must(
        ta,
        "ShareScorecard",
        json!({"site_id": w.a.id, "partner": w.b.id, "scorecard_id": w.private_scorecard}),
    )
    .await;
    for o in [w.private_object, c.youth, c.reading] {
        h.must(
            tb,
            "LinkSharedObject",
            json!({"site_id": w.b.id, "relationship_id": Uuid::new_v4(), "scorecard_id": w.b_scorecard, "origin_site": w.a.id, "object_id": o}),
        )
        .await;
    }
    let last: i64 = sqlx::query_scalar("SELECT MAX(global_position) FROM sl_events")
        .fetch_one(h.db.pool())
        .await
        .unwrap();
    let sizes = [
        (w.a.id, "scorecards", 5),
        (w.a.id, "objects", 7),
        (w.a.id, "children", 5),
        (w.b.id, "shared-with", 2),
        (w.b.id, "relationships", 5),
    ];
    for (site, route, size) in sizes {
        let whole = h
            .get(
                &h.operator,
                &list(site, route, &format!("limit=1000&min_position={last}")),
            )
            .await;
        let whole = whole.ok()["items"].as_array().unwrap().clone();
        assert_eq!(whole.len(), size, "{route}: {whole:#?}");
        let distinct: BTreeSet<String> = whole.iter().map(|i| i.to_string()).collect();
        assert_eq!(distinct.len(), size, "{route}: no item twice");
        for limit in [1, 2, 3, size as u32, size as u32 + 1] {
            let paged = every_page(h, &h.operator, site, route, limit).await;
            assert_eq!(paged, whole, "{route}, pages of {limit}");
        }
    }
    // Without `limit`, a page holds up to 50; a larger limit than 1,000
    // is taken as 1,000.
    for query in ["", "limit=1001", "limit=4294967295"] {
        let page = h.get(ta, &list(w.a.id, "objects", query)).await;
        assert_eq!(page.ok()["items"].as_array().unwrap().len(), 7, "{query}");
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn given_a_bad_limit_or_cursor_when_listing_then_invalid_query_or_bad_cursor() {
    let harness = Harness::start().await;
    let h = &harness;
    let c = content(h).await;
    let w = &c.w;
    let ta = w.a.admin_token.as_str();
    // A cursor of one list, given to another, is not that list's.
    let first = h.get(ta, &list(w.a.id, "objects", "limit=1")).await;
    let objects_cursor = first.ok()["next"].as_str().unwrap().to_owned();
    let site_id = w.a.id;
    for route in ROUTES {
        let foreign = if route == "objects" {
            let other = h.get(ta, &list(site_id, "scorecards", "limit=1")).await;
            other.ok()["next"].as_str().unwrap().to_owned()
        } else {
            objects_cursor.clone()
        };
        for (query, code) in [
            ("limit=0".to_owned(), "invalid_query"),
            ("limit=-1".to_owned(), "invalid_query"),
            ("limit=many".to_owned(), "invalid_query"),
            ("limit=4294967296".to_owned(), "invalid_query"),
            ("after=garbage".to_owned(), "bad_cursor"),
            ("after=".to_owned(), "bad_cursor"),
            (format!("after={foreign}"), "bad_cursor"),
            (
                format!("after={}", &foreign[..foreign.len() - 1]),
                "bad_cursor",
            ),
            (
                "after=ob.0.5a6fc3ab000040008000000000000001".to_owned(),
                "bad_cursor",
            ),
            ("after=a%00b".to_owned(), "invalid_query"),
            ("page=2".to_owned(), "invalid_query"),
            ("min_position=soon".to_owned(), "invalid_query"),
            ("scorecard=not-a-uuid".to_owned(), "invalid_query"),
        ] {
            let reply = h.get(ta, &list(site_id, route, &query)).await;
            let status = if code == "bad_cursor" { 404 } else { 400 };
            reply.assert_problem(status, code);
            assert!(
                !reply.json["detail"].as_str().unwrap_or("").is_empty(),
                "{route}?{query}: {reply:#?}"
            );
        }
        // A path that is no site.
        h.get(ta, &format!("/v1/sites/not-a-uuid/{route}"))
            .await
            .assert_problem(400, "invalid_path");
        // A position beyond the log's head is refused at once.
        h.get(
            ta,
            &list(
                site_id,
                route,
                &format!("min_position={}", c.last + 1_000_000),
            ),
        )
        .await
        .assert_problem(409, "future_position");
    }
    // The cursor given out goes on.
    let second = h
        .get(
            ta,
            &list(
                w.a.id,
                "objects",
                &format!("limit=1&after={objects_cursor}"),
            ),
        )
        .await;
    assert_eq!(second.ok()["items"].as_array().unwrap().len(), 1);
    harness.shutdown().await;
}

/// The answer without its request's id and with `id` blanked, to compare
/// two problems.
fn without_id(reply: &Reply, id: Uuid) -> Value {
    let mut json = reply.json.clone();
    if let Some(detail) = json["detail"].as_str() {
        json["detail"] = json!(detail.replace(&id.to_string(), "<id>"));
    }
    if let Some(map) = json.as_object_mut() {
        map.remove("request_id");
    }
    json
}

#[tokio::test]
async fn given_another_sites_lists_then_404_exactly_like_no_site_and_only_administrators_read_their_own(
) {
    let harness = Harness::start().await;
    let h = &harness;
    let c = content(h).await;
    let w = &c.w;
    let auditor_a = h.auditor_token(Some(w.a.id)).await;
    let auditor_b = h.auditor_token(Some(w.b.id)).await;
    let platform = h.auditor_token(None).await;
    let service_b = h.service_token(w.b.id).await;
    let ghost = Uuid::new_v4();
    for route in ROUTES {
        let a_list = list(w.a.id, route, "");
        let b_list = list(w.b.id, route, "");
        // B's administrators, its auditor and its service acting for its
        // admin: A's lists are not found, exactly like a site that is not.
        for token in [&w.b.admin_token, &auditor_b] {
            let theirs = h.get(token, &a_list).await;
            theirs.assert_problem(404, "not_found");
            let nowhere = h.get(token, &list(ghost, route, "")).await;
            nowhere.assert_problem(404, "not_found");
            assert_eq!(without_id(&theirs, w.a.id), without_id(&nowhere, ghost));
        }
        let acting = h
            .get_with(
                &a_list,
                &[
                    ("authorization", format!("Bearer {service_b}")),
                    ("shareledger-act-as", w.b.admin.to_string()),
                ],
            )
            .await;
        acting.assert_problem(404, "not_found");
        // B's Presenters (the partner granted A's shared scorecard among
        // them) are not B's administrators, and know nothing of A's lists.
        for token in [&w.partner_token, &w.plain_token] {
            h.get(token, &b_list).await.assert_problem(403, "forbidden");
            h.get(token, &a_list).await.assert_problem(404, "not_found");
        }
        // A's administrators, A's auditor, platform auditors and operators
        // read A's lists.
        for token in [&w.a.admin_token, &auditor_a, &platform, &h.operator] {
            assert_eq!(h.get(token, &a_list).await.status, 200, "{route}");
        }
        // Without a token: 401.
        h.get_with(&a_list, &[])
            .await
            .assert_problem(401, "unauthenticated");
    }
    harness.shutdown().await;
}

/// The document states each list's cursors: the pattern of its `after` is
/// the shape its cursors have (every string of it is one, see
/// `contents::CURSOR_PATTERNS`), so that a client sending what the
/// document allows gets a page, never 400.
#[test]
fn the_document_states_the_shape_of_each_lists_cursors() {
    let doc: Value = serde_json::from_str(&shareledger_gateway::openapi::document_json()).unwrap();
    let patterns = shareledger_projections::dashboard::contents::CURSOR_PATTERNS;
    let (directory, lists) = patterns.split_last().unwrap();
    assert_eq!(
        lists.iter().map(|(route, _)| *route).collect::<Vec<_>>(),
        ROUTES
    );
    assert_eq!(directory.0, "directory");
    for (route, pattern) in patterns {
        let path = if route == "directory" {
            "/v1/directory".to_owned()
        } else {
            format!("/v1/sites/{{site_id}}/{route}")
        };
        let parameters = doc["paths"][&path]["get"]["parameters"]
            .as_array()
            .unwrap_or_else(|| panic!("{path} in the document"));
        let after = parameters
            .iter()
            .find(|p| p["name"] == json!("after"))
            .expect("an `after` parameter");
        assert_eq!(after["in"], json!("query"));
        assert_eq!(after["schema"]["pattern"], json!(pattern), "{path}");
        let names: BTreeSet<&str> = parameters
            .iter()
            .map(|p| p["name"].as_str().unwrap())
            .collect();
        let mut expected = BTreeSet::from(["site_id", "limit", "after", "min_position"]);
        if route == "objects" {
            expected.insert("scorecard");
        }
        if route == "directory" {
            expected.remove("site_id");
            expected.insert("search");
        }
        assert_eq!(names, expected, "{path}");
    }
}

/// Every `name` in a list's items.
fn names(page: &Value) -> Vec<String> {
    page["items"]
        .as_array()
        .expect("items")
        .iter()
        .map(|i| i["name"].as_str().unwrap_or("").to_owned())
        .collect()
}

#[tokio::test]
async fn given_renames_and_archives_then_answers_name_the_new_and_lose_the_archived_but_as_of_before_keeps_them(
) {
    let harness = Harness::start().await;
    let h = &harness;
    let c = content(h).await;
    let w = &c.w;
    let (ta, tb) = (w.a.admin_token.as_str(), w.b.admin_token.as_str());
    let at = |p: u64| format!("min_position={p}");

    // When A renames its shared scorecard and its shared object,
    h.must(
        ta,
        "RenameScorecard",
        json!({"site_id": w.a.id, "scorecard_id": w.shared_scorecard, "name": "Shared 2027"}),
    )
    .await;
    let renamed = h
        .must(
            ta,
            "RenameObject",
            json!({"site_id": w.a.id, "object_id": w.shared_object, "name": "Literacy %"}),
        )
        .await;
    // then A's lists, B's view of what A shares and B's relationships name
    // them anew, and so do the access answers.
    let a_scorecards = h.get(ta, &list(w.a.id, "scorecards", &at(renamed))).await;
    assert!(names(a_scorecards.ok()).contains(&"Shared 2027".to_owned()));
    let shared_with = h.get(tb, &list(w.b.id, "shared-with", &at(renamed))).await;
    assert_eq!(names(shared_with.ok()), ["Shared 2027"]);
    let relationships = h
        .get(tb, &list(w.b.id, "relationships", &at(renamed)))
        .await;
    for r in relationships.ok()["items"].as_array().unwrap() {
        assert_eq!(r["object"]["name"], "Literacy %", "{r:#}");
    }
    let lookup = h
        .get(
            tb,
            &format!("/v1/access/lookup?site={}&{}", w.a.id, at(renamed)),
        )
        .await;
    let seen: Vec<&Value> = lookup.ok()["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|i| &i["name"])
        .collect();
    assert!(seen.contains(&&json!("Literacy %")), "{}", lookup.text);
    assert!(seen.contains(&&json!("Shared 2027")), "{}", lookup.text);

    // When A archives the shared object (B links and aggregates it),
    let archived = h
        .must(
            ta,
            "ArchiveObject",
            json!({"site_id": w.a.id, "object_id": w.shared_object}),
        )
        .await;
    // then it is gone from A's list and from every access answer now,
    let objects = h.get(ta, &list(w.a.id, "objects", &at(archived))).await;
    assert!(!names(objects.ok()).contains(&"Literacy %".to_owned()));
    let check = |position: &str| {
        format!(
            "/v1/access/check?user_id={}&target_type=object&target_id={}&action=view&{position}",
            w.b.admin, w.shared_object
        )
    };
    h.get(tb, &check(&at(archived)))
        .await
        .assert_problem(404, "unknown_target");
    // but as of before the archive (the rename's position) B's admin could
    // see it,
    let auditor = h.auditor_token(None).await;
    let before = h
        .get(
            &auditor,
            &format!(
                "/v1/audit/as-of/check?at_position={}&user_id={}&target_type=object&target_id={}&action=view",
                renamed,
                w.b.admin,
                w.shared_object
            ),
        )
        .await;
    assert_eq!(before.ok()["allowed"], true, "{}", before.text);
    // and B's relationships to it are removed by the consequence worker.
    h.eventually(
        "B's relationships to the archived object removed",
        std::time::Duration::from_secs(10),
        || async {
            let p = h.get(tb, "/v1/log/status").await;
            let head = p.json["head_position"].as_u64().unwrap_or(archived);
            let reply = h.get(tb, &list(w.b.id, "relationships", &at(head))).await;
            reply.status == 200 && reply.json["items"] == json!([])
        },
    )
    .await;

    // When A archives the shared scorecard, B no longer sees it shared,
    // and A's timeline says what happened.
    let gone = h
        .must(
            ta,
            "ArchiveScorecard",
            json!({"site_id": w.a.id, "scorecard_id": w.shared_scorecard}),
        )
        .await;
    let shared_with = h.get(tb, &list(w.b.id, "shared-with", &at(gone))).await;
    assert_eq!(shared_with.ok()["items"], json!([]));
    let a_scorecards = h.get(ta, &list(w.a.id, "scorecards", &at(gone))).await;
    assert_eq!(names(a_scorecards.ok()), ["Internal"]);
    let timeline = h
        .get(
            &auditor,
            &format!("/v1/audit/timeline/sites/{}?{}", w.a.id, at(gone)),
        )
        .await;
    let summaries: Vec<&str> = timeline.ok()["entries"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["summary"].as_str().unwrap_or(""))
        .collect();
    for wanted in [
        "ALPHA renamed “Shared measures” to “Shared 2027”",
        "ALPHA renamed “Literacy rate” to “Literacy %”",
        "ALPHA archived “Literacy %”",
        "ALPHA archived “Shared 2027”",
    ] {
        assert!(summaries.contains(&wanted), "{wanted}: {summaries:#?}");
    }
    harness.shutdown().await;
}
