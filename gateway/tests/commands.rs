//! `POST /v1/commands/{Name}` end to end: a real server, real PostgreSQL.
//!
//! Every command of `commands::NAMES` succeeds through HTTP (201, position,
//! events) and replays on a re-sent Idempotency-Key (200, `replayed`, the
//! log unchanged); every command refuses bad input, bad tokens and other
//! sites' ids with a problem+json and a stable code, writing nothing.

mod common;

use std::collections::BTreeSet;
use std::time::Duration;

use common::{command_names, Harness, Reply, SiteHandle};
use serde_json::{json, Value};
use shareledger_core::catalog::{SiteId, UserId};
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use shareledger_gateway::GatewayOptions;
use uuid::Uuid;

// ---------------------------------------------------------------------------
// Success and idempotent replay of every command
// ---------------------------------------------------------------------------

/// Sends a command, asserts 201 with events and a position matching the
/// header, re-sends it with the same key and asserts 200 `replayed` with the
/// same result and an unchanged log. Returns the position.
async fn succeeds_and_replays(h: &Harness, token: &str, name: &str, body: Value) -> u64 {
    let key = Uuid::new_v4();
    let head_before = head(h).await;
    let first = h.command_keyed(token, name, body.clone(), key).await;
    assert_eq!(
        first.status, 201,
        "{name} {body} should be written: {first:#?}"
    );
    assert!(first.content_type.starts_with("application/json"));
    assert_eq!(first.json["command"], json!(name));
    assert_eq!(first.json["replayed"], json!(false));
    let position = first.json["position"].as_u64().expect("a position");
    let events = first.json["events"].as_array().expect("events");
    assert!(!events.is_empty(), "{name} wrote no events: {first:#?}");
    let positions: Vec<u64> = events
        .iter()
        .map(|e| e["global_position"].as_u64().expect("a global position"))
        .collect();
    assert!(positions.iter().all(|p| *p > head_before), "{first:#?}");
    assert_eq!(positions.iter().max(), Some(&position), "{first:#?}");
    for e in events {
        assert!(e["event_type"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(e["stream"].as_str().is_some_and(|t| !t.is_empty()));
        assert!(e["event_id"]
            .as_str()
            .and_then(|i| i.parse::<Uuid>().ok())
            .is_some());
    }
    assert_eq!(
        first.headers["shareledger-position"].to_str().unwrap(),
        position.to_string()
    );

    let before = h.snapshot().await;
    let again = h.command_keyed(token, name, body.clone(), key).await;
    assert_eq!(again.status, 200, "{name}'s re-send: {again:#?}");
    assert_eq!(again.json["replayed"], json!(true), "{again:#?}");
    assert_eq!(again.json["position"], json!(position), "{again:#?}");
    let ids = |r: &Reply| -> Vec<Value> {
        r.json["events"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| e["event_id"].clone())
            .collect()
    };
    assert_eq!(ids(&again), ids(&first), "the first send's events");
    assert_eq!(
        again.headers["shareledger-position"].to_str().unwrap(),
        position.to_string()
    );
    assert_eq!(h.snapshot().await, before, "{name}'s re-send wrote");
    position
}

async fn head(h: &Harness) -> u64 {
    sqlx::query_scalar::<_, i64>("SELECT COALESCE(MAX(global_position), 0) FROM sl_events")
        .fetch_one(h.db.pool())
        .await
        .expect("the head") as u64
}

#[tokio::test]
async fn every_command_succeeds_through_http_and_replays_its_idempotency_key() {
    let harness = Harness::start().await;
    let h = &harness;
    let op = h.operator.clone();
    let mut done: BTreeSet<&str> = BTreeSet::new();
    macro_rules! ok {
        ($token:expr, $name:literal, $body:expr) => {{
            done.insert($name);
            succeeds_and_replays(&h, $token, $name, $body).await
        }};
    }

    // Sites and their admins, by the operator.
    let (a, b, c, d) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    ok!(
        &op,
        "RegisterSite",
        json!({"site_id": a, "code": "ALPHA", "name": "Alpha", "seat_limit": 10})
    );
    ok!(
        &op,
        "RegisterSite",
        json!({"site_id": b, "code": "BETA", "name": "Beta", "seat_limit": 10})
    );
    let (admin_a, admin_b) = (Uuid::new_v4(), Uuid::new_v4());
    ok!(
        &op,
        "AddUser",
        json!({"site_id": a, "user_id": admin_a, "username": "admin@alpha.org", "name": "Admin A", "role": "administration"})
    );
    ok!(
        &op,
        "AddUser",
        json!({"site_id": b, "user_id": admin_b, "username": "admin@beta.org", "name": "Admin B", "role": "administration"})
    );
    let ta = h.user_token(a, admin_a).await;
    let tb = h.user_token(b, admin_b).await;

    // Site settings and users, by A's admin.
    ok!(&ta, "SetSeatLimit", json!({"site_id": a, "seat_limit": 20}));
    ok!(
        &ta,
        "RequireTwoFactor",
        json!({"site_id": a, "required": true})
    );
    ok!(
        &ta,
        "SetDirectoryListing",
        json!({"site_id": a, "listed": true})
    );
    let worker = Uuid::new_v4();
    ok!(
        &ta,
        "AddUser",
        json!({"site_id": a, "user_id": worker, "username": "worker@alpha.org", "name": "Worker", "role": "presenter"})
    );
    ok!(
        &ta,
        "ChangeUserRole",
        json!({"site_id": a, "user_id": worker, "role": "data_entry"})
    );
    ok!(
        &ta,
        "ChangeUserDetails",
        json!({"site_id": a, "user_id": worker, "name": "Wendy Worker", "email": "wendy@alpha.org"})
    );
    ok!(
        &ta,
        "SetPermissionFlags",
        json!({"site_id": a, "user_id": worker, "enable": ["all_scorecards"], "disable": ["add_commentary"]})
    );
    ok!(
        &ta,
        "HideOrganizationSettings",
        json!({"site_id": a, "user_id": worker, "hidden": true})
    );

    // Content of A.
    let (sc1, sc2, obj, obj2) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    ok!(
        &ta,
        "CreateScorecard",
        json!({"site_id": a, "scorecard_id": sc1, "name": "Measures"})
    );
    ok!(
        &ta,
        "CreateScorecard",
        json!({"site_id": a, "scorecard_id": sc2, "name": "More"})
    );
    ok!(
        &ta,
        "CreateObject",
        json!({"site_id": a, "object_id": obj, "kind": "indicator", "name": "Literacy"})
    );
    ok!(
        &ta,
        "CreateObject",
        json!({"site_id": a, "object_id": obj2, "kind": "result", "name": "Outcome"})
    );
    ok!(
        &ta,
        "PlaceObjectOnScorecard",
        json!({"site_id": a, "object_id": obj, "scorecard_id": sc1})
    );
    ok!(
        &ta,
        "PlaceObjectOnScorecard",
        json!({"site_id": a, "object_id": obj2, "scorecard_id": sc1})
    );
    // Not shared yet: the consequence worker has nothing to remove.
    ok!(
        &ta,
        "RemoveObjectFromScorecard",
        json!({"site_id": a, "object_id": obj2, "scorecard_id": sc1})
    );
    ok!(
        &ta,
        "GrantScorecardAccess",
        json!({"site_id": a, "user_id": worker, "scorecard_id": sc1, "level": "editor"})
    );
    ok!(
        &ta,
        "RevokeScorecardAccess",
        json!({"site_id": a, "user_id": worker, "scorecard_id": sc1})
    );
    ok!(
        &ta,
        "ChangeObjectField",
        json!({"site_id": a, "object_id": obj, "field": "status", "value": "on track"})
    );
    ok!(
        &ta,
        "DeactivateUser",
        json!({"site_id": a, "user_id": worker})
    );
    ok!(
        &ta,
        "ReactivateUser",
        json!({"site_id": a, "user_id": worker})
    );

    // Content of B, the connection, sharing and relationships.
    let (bsc, bmeasure) = (Uuid::new_v4(), Uuid::new_v4());
    ok!(
        &tb,
        "CreateScorecard",
        json!({"site_id": b, "scorecard_id": bsc, "name": "Ours"})
    );
    ok!(
        &tb,
        "CreateObject",
        json!({"site_id": b, "object_id": bmeasure, "kind": "performance_measure", "name": "Total"})
    );
    ok!(
        &ta,
        "RequestConnection",
        json!({"site_id": a, "partner_code": "beta", "directions": "both"})
    );
    ok!(
        &tb,
        "ApproveConnection",
        json!({"site_id": b, "partner": a})
    );
    ok!(
        &ta,
        "ShareScorecard",
        json!({"site_id": a, "partner": b, "scorecard_id": sc1})
    );
    ok!(
        &ta,
        "SetSharedScorecards",
        json!({"site_id": a, "partner": b, "scorecards": [sc1, sc2]})
    );
    ok!(
        &ta,
        "UnshareScorecard",
        json!({"site_id": a, "partner": b, "scorecard_id": sc2})
    );
    let viewer = Uuid::new_v4();
    ok!(
        &tb,
        "AddUser",
        json!({"site_id": b, "user_id": viewer, "username": "viewer@beta.org", "name": "Viewer", "role": "presenter"})
    );
    ok!(
        &tb,
        "GrantScorecardAccess",
        json!({"site_id": b, "user_id": viewer, "scorecard_id": sc1, "level": "browser", "owner_site": a})
    );
    let linked = Uuid::new_v4();
    ok!(
        &tb,
        "LinkSharedObject",
        json!({"site_id": b, "relationship_id": linked, "scorecard_id": bsc, "origin_site": a, "object_id": obj})
    );
    ok!(
        &tb,
        "UnlinkSharedObject",
        json!({"site_id": b, "relationship_id": linked})
    );
    let aggregated = Uuid::new_v4();
    ok!(
        &tb,
        "UseSharedMeasureInAggregation",
        json!({"site_id": b, "relationship_id": aggregated, "into_object": bmeasure, "origin_site": a, "object_id": obj})
    );
    ok!(
        &tb,
        "StopUsingSharedMeasure",
        json!({"site_id": b, "relationship_id": aggregated})
    );
    ok!(
        &ta,
        "RenameScorecard",
        json!({"site_id": a, "scorecard_id": sc2, "name": "Eastern 2027"})
    );
    ok!(
        &ta,
        "RenameObject",
        json!({"site_id": a, "object_id": obj, "name": "Reading level"})
    );
    let (spare_scorecard, spare_object) = (Uuid::new_v4(), Uuid::new_v4());
    ok!(
        &ta,
        "CreateScorecard",
        json!({"site_id": a, "scorecard_id": spare_scorecard, "name": "Spare"})
    );
    ok!(
        &ta,
        "CreateObject",
        json!({"site_id": a, "object_id": spare_object, "kind": "indicator", "name": "Spare"})
    );
    ok!(
        &ta,
        "PlaceObjectOnScorecard",
        json!({"site_id": a, "object_id": spare_object, "scorecard_id": spare_scorecard})
    );
    ok!(
        &ta,
        "ArchiveObject",
        json!({"site_id": a, "object_id": spare_object})
    );
    ok!(
        &ta,
        "ArchiveScorecard",
        json!({"site_id": a, "scorecard_id": spare_scorecard})
    );
    // B revokes its own B→A link; A→B stays.
    ok!(
        &tb,
        "RevokeSharing",
        json!({"site_id": b, "from": b, "to": a})
    );

    // A third site: denied and cancelled requests, a parent.
    ok!(
        &op,
        "RegisterSite",
        json!({"site_id": c, "code": "GAMMA", "name": "Gamma", "seat_limit": 3})
    );
    let admin_c = Uuid::new_v4();
    ok!(
        &op,
        "AddUser",
        json!({"site_id": c, "user_id": admin_c, "username": "admin@gamma.org", "name": "Admin C", "role": "administration"})
    );
    let tc = h.user_token(c, admin_c).await;
    ok!(
        &tc,
        "RequestConnection",
        json!({"site_id": c, "partner_code": "ALPHA", "directions": "offer"})
    );
    ok!(&ta, "DenyConnection", json!({"site_id": a, "partner": c}));
    ok!(
        &tc,
        "RequestConnection",
        json!({"site_id": c, "partner_code": "BETA", "directions": "offer"})
    );
    ok!(
        &tc,
        "CancelConnectionRequest",
        json!({"site_id": c, "partner": b})
    );
    ok!(&op, "SetParentSite", json!({"site_id": c, "parent": a}));

    // Onboarding and users from elsewhere.
    ok!(
        &ta,
        "ConfigureSelfRegistration",
        json!({"site_id": a, "enabled": true, "model_site": a, "model_user": worker})
    );
    ok!(
        &op,
        "SelfRegisterPartner",
        json!({"group_site": a, "site_id": d, "code": "DELTA", "name": "Delta", "seat_limit": 5, "manager_id": Uuid::new_v4(), "manager_username": "boss@delta.org", "manager_name": "Boss", "child_of_group": true})
    );
    ok!(
        &tb,
        "AddExistingUser",
        json!({"site_id": b, "user_id": Uuid::new_v4(), "from_site": a, "from_user": worker, "role": "presenter"})
    );
    ok!(
        &tb,
        "ImportUsers",
        json!({"site_id": b, "csv": "username,name,role\nimp1@beta.org,Imp One,presenter\nimp2@beta.org,\"Two, Imp\",data_entry\n"})
    );

    let all: BTreeSet<&str> = command_names().into_iter().collect();
    assert_eq!(done, all, "every command of NAMES succeeded once");
    harness.shutdown().await;
}

// ---------------------------------------------------------------------------
// A world where each command's body below would succeed
// ---------------------------------------------------------------------------

struct Rw {
    a: SiteHandle,
    b: SiteHandle,
    c: SiteHandle,
    d: SiteHandle,
    worker_a: Uuid,
    retired_a: Uuid,
    sc1: Uuid,
    sc2: Uuid,
    obj: Uuid,
    obj2: Uuid,
    bsc: Uuid,
    bmeasure: Uuid,
    /// B's link of `obj` onto `bsc`.
    linked: Uuid,
    /// B's use of `obj` in `bmeasure`.
    aggregated: Uuid,
}

/// Sites A (ALPHA), B (BETA), C (GAMMA), D (DELTA). A↔B active (A asked
/// for both directions); A shares `sc1` (showing `obj` and `obj2`) with B;
/// C and D each asked A for a link (pending); B asked C (pending); A's
/// self-registration is on with `worker_a` as model; `worker_a` holds Editor
/// on `sc2`; `retired_a` is deactivated; B linked `obj` onto `bsc` (`linked`)
/// and uses it in `bmeasure` (`aggregated`).
async fn rejection_world(h: &Harness) -> Rw {
    let a = h.site("ALPHA").await;
    let b = h.site("BETA").await;
    let c = h.site("GAMMA").await;
    let d = h.site("DELTA").await;
    let (ta, tb) = (a.admin_token.as_str(), b.admin_token.as_str());
    let (worker_a, _) = h.user(&a, "worker@alpha.org", "presenter").await;
    let (retired_a, _) = h.user(&a, "retired@alpha.org", "presenter").await;
    h.must(
        ta,
        "DeactivateUser",
        json!({"site_id": a.id, "user_id": retired_a}),
    )
    .await;
    let (sc1, sc2, obj, obj2) = (
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
        Uuid::new_v4(),
    );
    h.must(
        ta,
        "CreateScorecard",
        json!({"site_id": a.id, "scorecard_id": sc1, "name": "One"}),
    )
    .await;
    h.must(
        ta,
        "CreateScorecard",
        json!({"site_id": a.id, "scorecard_id": sc2, "name": "Two"}),
    )
    .await;
    h.must(
        ta,
        "CreateObject",
        json!({"site_id": a.id, "object_id": obj, "kind": "indicator", "name": "Ind"}),
    )
    .await;
    h.must(
        ta,
        "CreateObject",
        json!({"site_id": a.id, "object_id": obj2, "kind": "result", "name": "Res"}),
    )
    .await;
    h.must(
        ta,
        "PlaceObjectOnScorecard",
        json!({"site_id": a.id, "object_id": obj, "scorecard_id": sc1}),
    )
    .await;
    h.must(
        ta,
        "PlaceObjectOnScorecard",
        json!({"site_id": a.id, "object_id": obj2, "scorecard_id": sc1}),
    )
    .await;
    h.must(
        ta,
        "GrantScorecardAccess",
        json!({"site_id": a.id, "user_id": worker_a, "scorecard_id": sc2, "level": "editor"}),
    )
    .await;
    h.must(
        ta,
        "ConfigureSelfRegistration",
        json!({"site_id": a.id, "enabled": true, "model_site": a.id, "model_user": worker_a}),
    )
    .await;
    let (bsc, bmeasure) = (Uuid::new_v4(), Uuid::new_v4());
    h.must(
        tb,
        "CreateScorecard",
        json!({"site_id": b.id, "scorecard_id": bsc, "name": "B's"}),
    )
    .await;
    h.must(tb, "CreateObject", json!({"site_id": b.id, "object_id": bmeasure, "kind": "performance_measure", "name": "Sum"})).await;
    h.must(
        ta,
        "RequestConnection",
        json!({"site_id": a.id, "partner_code": "BETA", "directions": "both"}),
    )
    .await;
    h.must(
        tb,
        "ApproveConnection",
        json!({"site_id": b.id, "partner": a.id}),
    )
    .await;
    h.must(
        ta,
        "ShareScorecard",
        json!({"site_id": a.id, "partner": b.id, "scorecard_id": sc1}),
    )
    .await;
    let linked = Uuid::new_v4();
    h.must(tb, "LinkSharedObject", json!({"site_id": b.id, "relationship_id": linked, "scorecard_id": bsc, "origin_site": a.id, "object_id": obj})).await;
    let aggregated = Uuid::new_v4();
    h.must(tb, "UseSharedMeasureInAggregation", json!({"site_id": b.id, "relationship_id": aggregated, "into_object": bmeasure, "origin_site": a.id, "object_id": obj})).await;
    h.must(
        &c.admin_token,
        "RequestConnection",
        json!({"site_id": c.id, "partner_code": "ALPHA", "directions": "offer"}),
    )
    .await;
    h.must(
        &d.admin_token,
        "RequestConnection",
        json!({"site_id": d.id, "partner_code": "ALPHA", "directions": "offer"}),
    )
    .await;
    h.must(
        tb,
        "RequestConnection",
        json!({"site_id": b.id, "partner_code": "GAMMA", "directions": "offer"}),
    )
    .await;
    Rw {
        a,
        b,
        c,
        d,
        worker_a,
        retired_a,
        sc1,
        sc2,
        obj,
        obj2,
        bsc,
        bmeasure,
        linked,
        aggregated,
    }
}

/// One command as the right caller would send it in the rejection world.
struct Case {
    name: &'static str,
    token: String,
    body: Value,
    /// A caller of another site (or, for operator commands, a user naming
    /// another site), and what the domain answers them.
    wrong_token: String,
    wrong_body: Value,
    wrong_answer: (u16, &'static str),
    /// Invalid values of the body's fields (each alone: 422).
    invalid: Vec<(&'static str, Value)>,
}

fn cases(h: &Harness, w: &Rw) -> Vec<Case> {
    let (ta, tb, tc, td) = (
        w.a.admin_token.clone(),
        w.b.admin_token.clone(),
        w.c.admin_token.clone(),
        w.d.admin_token.clone(),
    );
    let op = h.operator.clone();
    let (a, b, c, d) = (w.a.id, w.b.id, w.c.id, w.d.id);
    let cross = (403, "cross_site");
    // Created by the cases below, renamed and archived by later ones.
    let (fresh_scorecard, fresh_object) = (Uuid::new_v4(), Uuid::new_v4());
    let case =
        |name, token: &String, body: Value, wrong_token: &String, wrong_answer, invalid| Case {
            name,
            token: token.clone(),
            wrong_body: body.clone(),
            body,
            wrong_token: wrong_token.clone(),
            wrong_answer,
            invalid,
        };
    let register =
        json!({"site_id": Uuid::new_v4(), "code": "EPSILON", "name": "Epsilon", "seat_limit": 5});
    let mut register_case = case(
        "RegisterSite",
        &op,
        register.clone(),
        &ta,
        cross,
        vec![
            ("code", json!("x")),
            ("code", json!("has space")),
            ("code", json!("-AB")),
            ("seat_limit", json!(0)),
            ("seat_limit", json!(-3)),
            ("name", json!("   ")),
            ("name", json!("x".repeat(201))),
            ("parent", json!("not-a-site")),
        ],
    );
    // A's admin registering a child of B.
    register_case.wrong_body = {
        let mut body = register;
        body["parent"] = json!(b);
        body
    };
    let mut cases = vec![
        register_case,
        case(
            "SelfRegisterPartner",
            &op,
            json!({"group_site": a, "site_id": Uuid::new_v4(), "code": "ZETA", "name": "Zeta", "seat_limit": 5, "manager_id": Uuid::new_v4(), "manager_username": "boss@zeta.org", "manager_name": "Boss", "child_of_group": true}),
            // Self-registration is open to whoever holds the group's link:
            // through B (not configured) it is refused.
            &tb,
            (409, "self_registration_not_configured"),
            vec![
                ("code", json!("z")),
                ("seat_limit", json!(0)),
                ("manager_username", json!("two words")),
                ("manager_name", json!("")),
                ("manager_id", json!("nope")),
            ],
        ),
        case(
            "ConfigureSelfRegistration",
            &ta,
            json!({"site_id": a, "enabled": false}),
            &tb,
            cross,
            vec![("enabled", json!("no")), ("model_user", json!("nope"))],
        ),
        case(
            "SetSeatLimit",
            &ta,
            json!({"site_id": a, "seat_limit": 40}),
            &tb,
            cross,
            vec![
                ("seat_limit", json!(0)),
                ("seat_limit", json!(1.5)),
                ("seat_limit", json!(-1)),
            ],
        ),
        case(
            "SetParentSite",
            &tc,
            json!({"site_id": c, "parent": a}),
            &tb,
            cross,
            vec![("parent", json!("nope")), ("site_id", json!(""))],
        ),
        case(
            "RequireTwoFactor",
            &ta,
            json!({"site_id": a, "required": true}),
            &tb,
            cross,
            vec![("required", json!("yes"))],
        ),
        case(
            "SetDirectoryListing",
            &ta,
            json!({"site_id": a, "listed": true}),
            &tb,
            cross,
            vec![("listed", json!("yes"))],
        ),
        case(
            "AddUser",
            &ta,
            json!({"site_id": a, "user_id": Uuid::new_v4(), "username": "new@alpha.org", "name": "New", "role": "presenter"}),
            &tb,
            cross,
            vec![
                ("username", json!("two words")),
                ("username", json!("")),
                ("name", json!("")),
                ("role", json!("king")),
            ],
        ),
        case(
            "AddExistingUser",
            &tb,
            json!({"site_id": b, "user_id": Uuid::new_v4(), "from_site": a, "from_user": w.worker_a, "role": "presenter"}),
            &ta,
            cross,
            vec![("role", json!("king")), ("from_user", json!("nope"))],
        ),
        case(
            "ImportUsers",
            &tb,
            json!({"site_id": b, "csv": "username,name,role\nimp@beta.org,Imp,presenter\n"}),
            &ta,
            cross,
            vec![
                // (A NUL is 422 unstorable_text for every command:
                // every_command_refuses_a_nul_character_….)
                ("csv", json!(["not", "text"])),
            ],
        ),
        case(
            "ChangeUserDetails",
            &ta,
            json!({"site_id": a, "user_id": w.worker_a, "name": "Wendy Worker", "email": "wendy@alpha.org"}),
            &tb,
            cross,
            vec![
                ("email", json!("wendy")),
                ("email", json!("wendy@alpha")),
                ("name", json!("")),
            ],
        ),
        case(
            "ChangeUserRole",
            &ta,
            json!({"site_id": a, "user_id": w.worker_a, "role": "data_entry"}),
            &tb,
            cross,
            vec![("role", json!("king")), ("role", json!(""))],
        ),
        case(
            "SetPermissionFlags",
            &ta,
            json!({"site_id": a, "user_id": w.worker_a, "enable": ["all_scorecards"], "disable": ["add_commentary"]}),
            &tb,
            cross,
            vec![
                ("enable", json!(["fly"])),
                ("disable", json!("all_scorecards")),
            ],
        ),
        case(
            "GrantScorecardAccess",
            &ta,
            json!({"site_id": a, "user_id": w.worker_a, "scorecard_id": w.sc1, "level": "browser"}),
            &tb,
            cross,
            vec![("level", json!("god")), ("scorecard_id", json!("nope"))],
        ),
        case(
            "RevokeScorecardAccess",
            &ta,
            json!({"site_id": a, "user_id": w.worker_a, "scorecard_id": w.sc2}),
            &tb,
            cross,
            vec![("scorecard_id", json!("nope"))],
        ),
        case(
            "HideOrganizationSettings",
            &ta,
            json!({"site_id": a, "user_id": w.worker_a, "hidden": true}),
            &tb,
            cross,
            vec![("hidden", json!(1))],
        ),
        case(
            "DeactivateUser",
            &ta,
            json!({"site_id": a, "user_id": w.worker_a}),
            &tb,
            cross,
            vec![("user_id", json!("nope"))],
        ),
        case(
            "ReactivateUser",
            &ta,
            json!({"site_id": a, "user_id": w.retired_a}),
            &tb,
            cross,
            vec![("user_id", json!("12345678"))],
        ),
        case(
            "CreateScorecard",
            &ta,
            json!({"site_id": a, "scorecard_id": fresh_scorecard, "name": "New"}),
            &tb,
            cross,
            vec![
                ("name", json!("")),
                ("name", json!("x".repeat(201))),
                ("name", json!("a\u{0007}b")),
            ],
        ),
        case(
            "CreateObject",
            &ta,
            json!({"site_id": a, "object_id": fresh_object, "kind": "indicator", "name": "New", "container": w.obj2}),
            &tb,
            cross,
            vec![("kind", json!("widget")), ("container", json!("nope"))],
        ),
        case(
            "PlaceObjectOnScorecard",
            &ta,
            json!({"site_id": a, "object_id": w.obj, "scorecard_id": w.sc2}),
            &tb,
            cross,
            vec![("object_id", json!("nope"))],
        ),
        case(
            "RemoveObjectFromScorecard",
            &ta,
            json!({"site_id": a, "object_id": w.obj2, "scorecard_id": w.sc1}),
            &tb,
            cross,
            vec![("scorecard_id", json!("nope"))],
        ),
        case(
            "ChangeObjectField",
            &ta,
            json!({"site_id": a, "object_id": w.obj, "field": "status", "value": "on track"}),
            // B sees the object (shared): read-only to it (R-SHARE-3).
            &tb,
            (403, "shared_content_read_only"),
            vec![("field", json!("colour")), ("value", json!(3))],
        ),
        // Before the link below: it links `obj` onto `bsc` again.
        case(
            "UnlinkSharedObject",
            &tb,
            json!({"site_id": b, "relationship_id": w.linked}),
            &ta,
            cross,
            vec![("relationship_id", json!("nope"))],
        ),
        case(
            "LinkSharedObject",
            &tb,
            json!({"site_id": b, "relationship_id": Uuid::new_v4(), "scorecard_id": w.bsc, "origin_site": a, "object_id": w.obj}),
            &ta,
            cross,
            vec![("relationship_id", json!("nope"))],
        ),
        // Before the aggregation below: it uses `obj` in `bmeasure` again.
        case(
            "StopUsingSharedMeasure",
            &tb,
            json!({"site_id": b, "relationship_id": w.aggregated}),
            &ta,
            cross,
            vec![("relationship_id", json!("nope"))],
        ),
        case(
            "UseSharedMeasureInAggregation",
            &tb,
            json!({"site_id": b, "relationship_id": Uuid::new_v4(), "into_object": w.bmeasure, "origin_site": a, "object_id": w.obj}),
            &ta,
            cross,
            vec![("into_object", json!("nope"))],
        ),
        case(
            "RenameScorecard",
            &ta,
            json!({"site_id": a, "scorecard_id": fresh_scorecard, "name": "Renamed"}),
            &tb,
            cross,
            vec![("name", json!("")), ("scorecard_id", json!("nope"))],
        ),
        case(
            "RenameObject",
            &ta,
            json!({"site_id": a, "object_id": w.obj, "name": "Renamed"}),
            // On `sc1`, shared with B: read-only to it.
            &tb,
            (403, "shared_content_read_only"),
            vec![("name", json!("a\u{0007}b")), ("object_id", json!("nope"))],
        ),
        case(
            "ArchiveObject",
            &ta,
            json!({"site_id": a, "object_id": fresh_object}),
            &tb,
            (403, "shared_content_read_only"),
            vec![("object_id", json!("nope"))],
        ),
        case(
            "ArchiveScorecard",
            &ta,
            json!({"site_id": a, "scorecard_id": fresh_scorecard}),
            &tb,
            cross,
            vec![("scorecard_id", json!(12))],
        ),
        case(
            "RequestConnection",
            &td,
            json!({"site_id": d, "partner_code": "BETA", "directions": "offer"}),
            &ta,
            cross,
            vec![
                ("partner_code", json!("x")),
                ("partner_code", json!("no spaces")),
                ("directions", json!("sideways")),
            ],
        ),
        case(
            "ApproveConnection",
            &ta,
            json!({"site_id": a, "partner": c}),
            &tb,
            cross,
            vec![("partner", json!("nope"))],
        ),
        case(
            "DenyConnection",
            &ta,
            json!({"site_id": a, "partner": d}),
            &tb,
            cross,
            vec![("partner", json!("nope"))],
        ),
        case(
            "CancelConnectionRequest",
            &tb,
            json!({"site_id": b, "partner": c}),
            &ta,
            cross,
            vec![("partner", json!("nope"))],
        ),
        case(
            "ShareScorecard",
            &ta,
            json!({"site_id": a, "partner": b, "scorecard_id": w.sc2}),
            &tb,
            cross,
            vec![("scorecard_id", json!("nope"))],
        ),
        case(
            "UnshareScorecard",
            &ta,
            json!({"site_id": a, "partner": b, "scorecard_id": w.sc1}),
            &tb,
            cross,
            vec![("scorecard_id", json!("nope"))],
        ),
        case(
            "SetSharedScorecards",
            &ta,
            json!({"site_id": a, "partner": b, "scorecards": [w.sc1, w.sc2]}),
            &tb,
            cross,
            vec![
                ("scorecards", json!("nope")),
                ("scorecards", json!(["nope"])),
            ],
        ),
        case(
            "RevokeSharing",
            &ta,
            json!({"site_id": a, "from": a, "to": b}),
            &tb,
            cross,
            vec![("from", json!("nope"))],
        ),
    ];
    // Through B's link, which B never configured.
    // The object archived is created by an earlier case; B is refused
    // archiving a shared one that exists from the start.
    for case in cases.iter_mut().filter(|c| c.name == "ArchiveObject") {
        case.wrong_body["object_id"] = json!(w.obj);
    }
    for case in cases.iter_mut().filter(|c| c.name == "SelfRegisterPartner") {
        case.wrong_body["group_site"] = json!(b);
    }
    cases
}

fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

fn key() -> (&'static str, String) {
    ("idempotency-key", Uuid::new_v4().to_string())
}

fn json_type() -> (&'static str, String) {
    ("content-type", "application/json".to_owned())
}

fn bytes(body: &Value) -> Vec<u8> {
    serde_json::to_vec(body).unwrap()
}

/// Runs `send` for every case and asserts the problem and an unchanged log.
async fn each_rejected<F, Fut>(h: &Harness, w: &Rw, what: &str, status: u16, code: &str, send: F)
where
    F: Fn(Case) -> Fut,
    Fut: std::future::Future<Output = Reply>,
{
    let cases = cases(h, w);
    assert_eq!(
        cases.iter().map(|c| c.name).collect::<BTreeSet<_>>(),
        command_names().into_iter().collect::<BTreeSet<_>>(),
        "a case for every command"
    );
    for case in cases {
        let name = case.name;
        let before = h.snapshot().await;
        let reply = send(case).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{what} for {name}: {reply:#?}"
        );
        reply.assert_problem(status, code);
        assert_eq!(h.snapshot().await, before, "{what} for {name} wrote");
    }
}

#[tokio::test]
async fn the_rejection_worlds_bodies_succeed_in_order_with_the_right_tokens() {
    // Given the world of the rejection tests; when each case's body is sent
    // by its right caller, then each is written: so the rejections below are
    // caused by what each test changes, nothing else.
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    for case in cases(h, &w) {
        let reply = h.command(&case.token, case.name, case.body.clone()).await;
        assert_eq!(reply.status, 201, "{}: {reply:#?}", case.name);
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_malformed_json_with_400_and_writes_nothing() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    for broken in [&b"{\"site_id\": "[..], b"", b"not json", b"{'site_id': 1}"] {
        each_rejected(
            h,
            &w,
            "malformed JSON",
            400,
            "malformed_json",
            |c| async move {
                let path = format!("/v1/commands/{}", c.name);
                h.post_raw(
                    &path,
                    &[bearer(&c.token), key(), json_type()],
                    broken.to_vec(),
                )
                .await
            },
        )
        .await;
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_an_unknown_field_with_422_invalid_body() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    each_rejected(
        h,
        &w,
        "an unknown field",
        422,
        "invalid_body",
        |c| async move {
            let mut body = c.body.clone();
            body["bogus"] = json!(true);
            h.command(&c.token, c.name, body).await
        },
    )
    .await;
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_a_wrong_type_or_a_missing_field_with_422_invalid_body() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    each_rejected(
        h,
        &w,
        "a number for an id",
        422,
        "invalid_body",
        |c| async move {
            let mut body = c.body.clone();
            let field = if body.get("site_id").is_some() {
                "site_id"
            } else {
                "group_site"
            };
            body[field] = json!(42);
            h.command(&c.token, c.name, body).await
        },
    )
    .await;
    each_rejected(
        h,
        &w,
        "an array body",
        422,
        "invalid_body",
        |c| async move { h.command(&c.token, c.name, json!([c.body])).await },
    )
    .await;
    each_rejected(
        h,
        &w,
        "a missing site_id (or code, where the server creates the site's id)",
        422,
        "invalid_body",
        |c| async move {
            let mut body = c.body.clone();
            let field = if ["RegisterSite", "SelfRegisterPartner"].contains(&c.name) {
                "code"
            } else {
                "site_id"
            };
            body.as_object_mut().unwrap().remove(field);
            h.command(&c.token, c.name, body).await
        },
    )
    .await;
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_invalid_values_with_422_invalid_body() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    let before = h.snapshot().await;
    for case in cases(h, &w) {
        let mut invalid = case.invalid.clone();
        invalid.push(("site_id", json!("not-a-uuid")));
        for (field, value) in invalid {
            let mut body = case.body.clone();
            if case.name == "SelfRegisterPartner" && field == "site_id" {
                body["group_site"] = value.clone();
            }
            body[field] = value.clone();
            let reply = h.command(&case.token, case.name, body).await;
            assert_eq!(
                (reply.status, reply.code()),
                (422, "invalid_body"),
                "{} with {field} = {value}: {reply:#?}",
                case.name
            );
            reply.assert_problem(422, "invalid_body");
        }
    }
    assert_eq!(h.snapshot().await, before, "an invalid value wrote");
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_a_nul_character_with_422_unstorable_text_naming_where() {
    // PostgreSQL stores no U+0000: in a field's value or a member's name,
    // every command answers 422 naming the place, never 500.
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    let field_of = |body: &Value| {
        if body.get("site_id").is_some() {
            "site_id"
        } else {
            "group_site"
        }
    };
    each_rejected(
        h,
        &w,
        "a NUL in a value",
        422,
        "unstorable_text",
        |c| async move {
            let mut body = c.body.clone();
            let field = field_of(&body);
            body[field] = json!(format!("{}\u{0}", body[field].as_str().unwrap()));
            let reply = h.command(&c.token, c.name, body).await;
            assert!(
                reply.json["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains(&format!("/{field}"))),
                "{}: {reply:#?}",
                c.name
            );
            reply
        },
    )
    .await;
    each_rejected(
        h,
        &w,
        "a NUL in a member name",
        422,
        "unstorable_text",
        |c| async move {
            let mut body = c.body.clone();
            body["note\u{0}"] = json!(1);
            let reply = h.command(&c.token, c.name, body).await;
            assert!(
                reply.json["detail"]
                    .as_str()
                    .is_some_and(|d| d.contains("/note\\u0000")),
                "{}: {reply:#?}",
                c.name
            );
            reply
        },
    )
    .await;
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_needs_an_idempotency_key_holding_a_uuid() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    each_rejected(
        h,
        &w,
        "no Idempotency-Key",
        400,
        "missing_idempotency_key",
        |c| async move {
            let path = format!("/v1/commands/{}", c.name);
            h.post_raw(&path, &[bearer(&c.token), json_type()], bytes(&c.body))
                .await
        },
    )
    .await;
    each_rejected(
        h,
        &w,
        "a bad Idempotency-Key",
        400,
        "bad_idempotency_key",
        |c| async move {
            let path = format!("/v1/commands/{}", c.name);
            let bad = ("idempotency-key", "retry-1".to_owned());
            h.post_raw(&path, &[bearer(&c.token), bad, json_type()], bytes(&c.body))
                .await
        },
    )
    .await;
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_a_body_that_is_not_json_with_415() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    each_rejected(
        h,
        &w,
        "text/plain",
        415,
        "unsupported_media_type",
        |c| async move {
            let path = format!("/v1/commands/{}", c.name);
            let text = ("content-type", "text/plain".to_owned());
            h.post_raw(&path, &[bearer(&c.token), key(), text], bytes(&c.body))
                .await
        },
    )
    .await;
    each_rejected(
        h,
        &w,
        "no content type",
        415,
        "unsupported_media_type",
        |c| async move {
            let path = format!("/v1/commands/{}", c.name);
            h.post_raw(&path, &[bearer(&c.token), key()], bytes(&c.body))
                .await
        },
    )
    .await;
    each_rejected(
        h,
        &w,
        "a form",
        415,
        "unsupported_media_type",
        |c| async move {
            let path = format!("/v1/commands/{}", c.name);
            let form = (
                "content-type",
                "application/x-www-form-urlencoded".to_owned(),
            );
            h.post_raw(
                &path,
                &[bearer(&c.token), key(), form],
                b"site_id=1".to_vec(),
            )
            .await
        },
    )
    .await;
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_a_body_over_the_limit_with_413() {
    let limit = 2048;
    let harness = Harness::start_with(GatewayOptions {
        body_limit: limit,
        ..GatewayOptions::default()
    })
    .await;
    let h = &harness;
    let w = rejection_world(h).await;
    // Under the limit the same server accepts a body.
    let small = h
        .command(
            &w.a.admin_token,
            "RequireTwoFactor",
            json!({"site_id": w.a.id, "required": false}),
        )
        .await;
    assert_eq!(small.status, 201, "{small:#?}");
    each_rejected(
        h,
        &w,
        "a large body",
        413,
        "payload_too_large",
        |c| async move {
            let mut body = c.body.clone();
            body["padding"] = json!("x".repeat(limit + 1));
            h.command(&c.token, c.name, body).await
        },
    )
    .await;
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_another_sites_ids_as_the_domain_decides() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    let before = h.snapshot().await;
    for case in cases(h, &w) {
        let reply = h
            .command(&case.wrong_token, case.name, case.wrong_body.clone())
            .await;
        let (status, code) = case.wrong_answer;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{} by another site: {reply:#?}",
            case.name
        );
        reply.assert_problem(status, code);
        assert_eq!(
            h.snapshot().await,
            before,
            "{} by another site wrote",
            case.name
        );
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_needs_a_bearer_token() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    each_rejected(h, &w, "no token", 401, "unauthenticated", |c| async move {
        let path = format!("/v1/commands/{}", c.name);
        h.post_raw(&path, &[key(), json_type()], bytes(&c.body))
            .await
    })
    .await;
    each_rejected(
        h,
        &w,
        "a Basic header",
        401,
        "unauthenticated",
        |c| async move {
            let path = format!("/v1/commands/{}", c.name);
            let basic = ("authorization", "Basic dXNlcjpwYXNz".to_owned());
            h.post_raw(&path, &[basic, key(), json_type()], bytes(&c.body))
                .await
        },
    )
    .await;
    // The 401 names the scheme.
    let reply = h
        .post_raw(
            "/v1/commands/SetSeatLimit",
            &[key(), json_type()],
            b"{}".to_vec(),
        )
        .await;
    assert!(reply.headers["www-authenticate"]
        .to_str()
        .unwrap()
        .starts_with("Bearer"));
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_a_forged_token_with_401_bad_token() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    // Well-formed but never issued, and not even well-formed.
    let forged = format!("sl_{}", "ab".repeat(24));
    for token in [forged.as_str(), "sl_short", "not-a-token"] {
        each_rejected(h, &w, "a forged token", 401, "bad_token", |c| async move {
            h.command(token, c.name, c.body.clone()).await
        })
        .await;
    }
    // A real token with one character changed.
    let real = w.a.admin_token.clone();
    let last = if real.ends_with('0') { "1" } else { "0" };
    let tampered = format!("{}{last}", &real[..real.len() - 1]);
    each_rejected(h, &w, "a tampered token", 401, "bad_token", |c| {
        let tampered = tampered.clone();
        async move { h.command(&tampered, c.name, c.body.clone()).await }
    })
    .await;
    harness.shutdown().await;
}

async fn issue_full(
    h: &Harness,
    kind: TokenKind,
    site: Option<Uuid>,
    user: Option<Uuid>,
) -> auth::IssuedToken {
    auth::issue(
        h.db.pool(),
        TokenRequest {
            kind,
            site: site.map(SiteId),
            user: user.map(UserId),
            name: "doomed".into(),
            lifetime: Duration::from_secs(3600),
        },
    )
    .await
    .expect("issued")
}

#[tokio::test]
async fn every_command_refuses_an_expired_token_with_401_token_expired() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    // Expired before its first use (a verified token is cached for a while).
    let operator = issue_full(h, TokenKind::Operator, None, None).await;
    let admin_a = issue_full(h, TokenKind::User, Some(w.a.id), Some(w.a.admin)).await;
    let admin_b = issue_full(h, TokenKind::User, Some(w.b.id), Some(w.b.admin)).await;
    for id in [
        operator.record.token_id,
        admin_a.record.token_id,
        admin_b.record.token_id,
    ] {
        sqlx::query(
            "UPDATE sl_api_tokens SET expires_at = now() - interval '1 minute' WHERE token_id = $1",
        )
        .bind(id)
        .execute(h.db.pool())
        .await
        .unwrap();
    }
    let (op, ta, tb) = (operator.token, admin_a.token, admin_b.token);
    let replace = |token: &str| -> String {
        if token == h.operator {
            op.clone()
        } else if token == w.a.admin_token {
            ta.clone()
        } else if token == w.b.admin_token {
            tb.clone()
        } else {
            // C's and D's admins: A's expired token stands in.
            ta.clone()
        }
    };
    each_rejected(h, &w, "an expired token", 401, "token_expired", |c| {
        let token = replace(&c.token);
        async move { h.command(&token, c.name, c.body.clone()).await }
    })
    .await;
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_a_revoked_token_with_401_bad_token() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    let operator = issue_full(h, TokenKind::Operator, None, None).await;
    let admin_a = issue_full(h, TokenKind::User, Some(w.a.id), Some(w.a.admin)).await;
    // One revoked before its first use; one used, revoked, and the
    // process's verification cache cleared (as revoking through it does).
    assert!(auth::revoke(h.db.pool(), operator.record.token_id)
        .await
        .unwrap());
    let used = h
        .command(
            &admin_a.token,
            "RequireTwoFactor",
            json!({"site_id": w.a.id, "required": false}),
        )
        .await;
    assert_eq!(used.status, 201, "{used:#?}");
    assert!(auth::revoke(h.db.pool(), admin_a.record.token_id)
        .await
        .unwrap());
    h.server.state().tokens().clear();
    for token in [&operator.token, &admin_a.token] {
        each_rejected(h, &w, "a revoked token", 401, "bad_token", |c| async move {
            h.command(token, c.name, c.body.clone()).await
        })
        .await;
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn every_command_refuses_auditor_tokens_with_403_forbidden() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    let platform = h.auditor_token(None).await;
    let of_a = h.auditor_token(Some(w.a.id)).await;
    for token in [&platform, &of_a] {
        each_rejected(
            h,
            &w,
            "an auditor token",
            403,
            "forbidden",
            |c| async move { h.command(token, c.name, c.body.clone()).await },
        )
        .await;
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn service_tokens_act_only_for_a_user_of_their_own_site() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    let service_a = h.service_token(w.a.id).await;
    let body = json!({"site_id": w.a.id, "required": true});
    let act_as = |user: String| ("shareledger-act-as", user);
    let send = |headers: Vec<(&'static str, String)>| {
        let body = bytes(&body);
        async move {
            h.post_raw("/v1/commands/RequireTwoFactor", &headers, body)
                .await
        }
    };
    let before = h.snapshot().await;
    // No act-as, a non-UUID, a user of another site, an unknown user.
    for headers in [
        vec![bearer(&service_a), key(), json_type()],
        vec![bearer(&service_a), key(), json_type(), act_as("bob".into())],
        vec![
            bearer(&service_a),
            key(),
            json_type(),
            act_as(w.b.admin.to_string()),
        ],
        vec![
            bearer(&service_a),
            key(),
            json_type(),
            act_as(Uuid::new_v4().to_string()),
        ],
        // Only service tokens may act as someone.
        vec![
            bearer(&w.a.admin_token),
            key(),
            json_type(),
            act_as(w.a.admin.to_string()),
        ],
    ] {
        send(headers).await.assert_problem(403, "forbidden");
        assert_eq!(h.snapshot().await, before);
    }
    // Acting for A's admin, the command is theirs.
    let reply = send(vec![
        bearer(&service_a),
        key(),
        json_type(),
        act_as(w.a.admin.to_string()),
    ])
    .await;
    assert_eq!(reply.status, 201, "{reply:#?}");
    // Acting for a Presenter of A, the domain refuses (R-CONN-1 / flags).
    let reply = send(vec![
        bearer(&service_a),
        key(),
        json_type(),
        act_as(w.worker_a.to_string()),
    ])
    .await;
    reply.assert_problem(403, "not_permitted");
    harness.shutdown().await;
}

#[tokio::test]
async fn an_unknown_command_is_404_unknown_command() {
    let harness = Harness::start().await;
    let h = &harness;
    let before = h.snapshot().await;
    for name in ["DropAllTables", "registersite", "RegisterSite2"] {
        let reply = h.command(&h.operator, name, json!({})).await;
        reply.assert_problem(404, "unknown_command");
    }
    assert_eq!(h.snapshot().await, before);
    harness.shutdown().await;
}

// ---------------------------------------------------------------------------
// Domain errors and their statuses
// ---------------------------------------------------------------------------

#[tokio::test]
async fn domain_refusals_map_to_their_statuses_and_codes_and_write_nothing() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = rejection_world(h).await;
    let (ta, tb) = (w.a.admin_token.as_str(), w.b.admin_token.as_str());
    let op = h.operator.as_str();
    let tiny = h.site("TINY").await;
    h.must(
        &tiny.admin_token,
        "SetSeatLimit",
        json!({"site_id": tiny.id, "seat_limit": 1}),
    )
    .await;
    let cases: Vec<(&str, &str, Value, u16, &str)> = vec![
        // R-USER-7: the admin holds the only seat.
        (
            "AddUser",
            tiny.admin_token.as_str(),
            json!({"site_id": tiny.id, "user_id": Uuid::new_v4(), "username": "two@tiny.org", "name": "Two", "role": "presenter"}),
            409,
            "seat_limit_reached",
        ),
        (
            "ReactivateUser",
            ta,
            json!({"site_id": w.a.id, "user_id": w.worker_a}),
            409,
            "user_active",
        ),
        // Codes are case-insensitive.
        (
            "RegisterSite",
            op,
            json!({"site_id": Uuid::new_v4(), "code": "alpha", "name": "Again", "seat_limit": 5}),
            409,
            "site_code_taken",
        ),
        (
            "RegisterSite",
            op,
            json!({"site_id": w.b.id, "code": "NEWCODE", "name": "Again", "seat_limit": 5}),
            409,
            "site_exists",
        ),
        (
            "AddUser",
            ta,
            json!({"site_id": w.a.id, "user_id": Uuid::new_v4(), "username": "WORKER@alpha.org", "name": "Dup", "role": "presenter"}),
            409,
            "username_taken",
        ),
        (
            "SetSeatLimit",
            ta,
            json!({"site_id": Uuid::new_v4(), "seat_limit": 5}),
            404,
            "site_not_found",
        ),
        (
            "DeactivateUser",
            ta,
            json!({"site_id": w.a.id, "user_id": Uuid::new_v4()}),
            404,
            "user_not_found",
        ),
        (
            "RequestConnection",
            ta,
            json!({"site_id": w.a.id, "partner_code": "ALPHA", "directions": "offer"}),
            409,
            "own_site_code",
        ),
        (
            "RequestConnection",
            ta,
            json!({"site_id": w.a.id, "partner_code": "NOBODY", "directions": "offer"}),
            404,
            "unknown_site_code",
        ),
        (
            "RequestConnection",
            ta,
            json!({"site_id": w.a.id, "partner_code": "BETA", "directions": "offer"}),
            409,
            "link_pending_or_active",
        ),
        (
            "ApproveConnection",
            tb,
            json!({"site_id": w.b.id, "partner": w.a.id}),
            409,
            "nothing_to_approve",
        ),
        (
            "ShareScorecard",
            ta,
            json!({"site_id": w.a.id, "partner": w.b.id, "scorecard_id": w.sc1}),
            409,
            "already_shared",
        ),
        (
            "ShareScorecard",
            ta,
            json!({"site_id": w.a.id, "partner": w.c.id, "scorecard_id": w.sc2}),
            409,
            "link_not_active",
        ),
        (
            "SetParentSite",
            ta,
            json!({"site_id": w.a.id, "parent": w.a.id}),
            409,
            "parent_cycle",
        ),
        (
            "CreateObject",
            ta,
            json!({"site_id": w.a.id, "object_id": Uuid::new_v4(), "kind": "indicator", "name": "In", "container": w.obj}),
            409,
            "not_a_container",
        ),
        // R-CONN-1: a Presenter cannot request connections; operators have no site.
        (
            "RequestConnection",
            op,
            json!({"site_id": w.a.id, "partner_code": "GAMMA", "directions": "offer"}),
            403,
            "connections_unavailable",
        ),
        (
            "RegisterSite",
            ta,
            json!({"site_id": Uuid::new_v4(), "code": "ROGUE", "name": "Rogue", "seat_limit": 5}),
            403,
            "not_permitted",
        ),
        (
            "LinkSharedObject",
            tb,
            json!({"site_id": w.b.id, "relationship_id": Uuid::new_v4(), "scorecard_id": w.bsc, "origin_site": w.a.id, "object_id": Uuid::new_v4()}),
            409,
            "object_not_shared",
        ),
        (
            "UnlinkSharedObject",
            tb,
            json!({"site_id": w.b.id, "relationship_id": Uuid::new_v4()}),
            404,
            "relationship_not_found",
        ),
    ];
    for (name, token, body, status, code) in cases {
        let before = h.snapshot().await;
        let reply = h.command(token, name, body.clone()).await;
        assert_eq!(
            (reply.status, reply.code()),
            (status, code),
            "{name} {body}: {reply:#?}"
        );
        reply.assert_problem(status, code);
        assert_eq!(h.snapshot().await, before, "{name} {body} wrote");
    }
    harness.shutdown().await;
}

#[tokio::test]
async fn a_bad_csv_import_is_422_with_an_error_per_bad_row_and_writes_nothing() {
    // R-USER-8 through HTTP: the problem lists line, field and reason.
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    let before = h.snapshot().await;
    let csv = "username,name,role\nok@alpha.org,Ok,presenter\nbad name,Bad,presenter\ndup@alpha.org,Dup,king\n";
    let reply = h
        .command(
            &a.admin_token,
            "ImportUsers",
            json!({"site_id": a.id, "csv": csv}),
        )
        .await;
    reply.assert_problem(422, "import_rejected");
    let errors = reply.json["errors"].as_array().expect("errors");
    let at: BTreeSet<(u64, String)> = errors
        .iter()
        .map(|e| {
            assert!(e["reason"].as_str().is_some_and(|r| !r.is_empty()));
            (
                e["line"].as_u64().unwrap(),
                e["field"].as_str().unwrap().to_owned(),
            )
        })
        .collect();
    assert_eq!(
        at,
        BTreeSet::from([(3, "username".to_owned()), (4, "role".to_owned())]),
        "{reply:#?}"
    );
    assert_eq!(h.snapshot().await, before);
    harness.shutdown().await;
}

#[tokio::test]
async fn a_reused_idempotency_key_with_another_body_is_422_and_writes_nothing() {
    // draft-ietf-httpapi-idempotency-key-header: a key names one request;
    // sent again with another payload it is 422, never the first result
    // for a body that asked something else.
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    let key = Uuid::new_v4();
    let first = h
        .command_keyed(
            &a.admin_token,
            "SetSeatLimit",
            json!({"site_id": a.id, "seat_limit": 7}),
            key,
        )
        .await;
    let position = first.created();
    let before = h.snapshot().await;
    let again = h
        .command_keyed(
            &a.admin_token,
            "SetSeatLimit",
            json!({"site_id": a.id, "seat_limit": 9}),
            key,
        )
        .await;
    again.assert_problem(422, "idempotency_key_reused");
    assert_eq!(h.snapshot().await, before);
    // The same body, its members in another order and spaced otherwise,
    // is the same request: the first result, replayed.
    let reordered = format!("{{ \"seat_limit\" : 7,\n \"site_id\": \"{}\" }}", a.id);
    let same = h
        .post_raw(
            "/v1/commands/SetSeatLimit",
            &[
                ("authorization", format!("Bearer {}", a.admin_token)),
                ("idempotency-key", key.to_string()),
                ("content-type", "application/json".into()),
            ],
            reordered.into_bytes(),
        )
        .await;
    assert_eq!(same.status, 200, "{same:#?}");
    assert_eq!(same.json["replayed"], json!(true));
    assert_eq!(same.json["position"], json!(position));
    assert_eq!(h.snapshot().await, before);
    harness.shutdown().await;
}

#[tokio::test]
async fn r_user_3_a_scorecard_admin_configures_its_scorecards_access_over_http() {
    // Given a Presenter of A holding Scorecard Admin on one scorecard.
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    let (own, other) = (Uuid::new_v4(), Uuid::new_v4());
    for (id, name) in [(own, "Corporate"), (other, "Eastern")] {
        h.must(
            &a.admin_token,
            "CreateScorecard",
            json!({"site_id": a.id, "scorecard_id": id, "name": name}),
        )
        .await;
    }
    let (card_admin, card_admin_token) = h.user(&a, "cards@alpha.org", "presenter").await;
    let (member, _) = h.user(&a, "member@alpha.org", "presenter").await;
    h.must(
        &a.admin_token,
        "GrantScorecardAccess",
        json!({"site_id": a.id, "user_id": card_admin, "scorecard_id": own, "level": "scorecard_admin"}),
    )
    .await;
    // When they grant and revoke access to it, then both are written.
    h.must(
        &card_admin_token,
        "GrantScorecardAccess",
        json!({"site_id": a.id, "user_id": member, "scorecard_id": own, "level": "editor"}),
    )
    .await;
    h.must(
        &card_admin_token,
        "RevokeScorecardAccess",
        json!({"site_id": a.id, "user_id": member, "scorecard_id": own}),
    )
    .await;
    // And another scorecard's access is refused to them, writing nothing.
    let before = h.snapshot().await;
    h.command(
        &card_admin_token,
        "GrantScorecardAccess",
        json!({"site_id": a.id, "user_id": member, "scorecard_id": other, "level": "browser"}),
    )
    .await
    .assert_problem(403, "not_permitted");
    assert_eq!(h.snapshot().await, before);
    harness.shutdown().await;
}

#[tokio::test]
async fn r_share_3_a_partner_editing_shared_content_gets_read_only_whatever_site_it_names() {
    // Given A shares a scorecard showing `shared_object` with B.
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let c = h.site("GAMMA").await;
    let before = h.snapshot().await;
    // When B's admin changes A's shared object naming A, B or C: 403
    // shared_content_read_only each time, nothing written.
    for named in [w.a.id, w.b.id, c.id] {
        h.command(
            &w.b.admin_token,
            "ChangeObjectField",
            json!({"site_id": named, "object_id": w.shared_object, "field": "description", "value": "ours now"}),
        )
        .await
        .assert_problem(403, "shared_content_read_only");
    }
    // A's private object stays unknown to B, as if it did not exist.
    h.command(
        &w.b.admin_token,
        "ChangeObjectField",
        json!({"site_id": w.b.id, "object_id": w.private_object, "field": "description", "value": "x"}),
    )
    .await
    .assert_problem(404, "object_not_found");
    assert_eq!(h.snapshot().await, before);
    harness.shutdown().await;
}

#[tokio::test]
async fn a_command_without_the_id_it_creates_gets_one_from_the_server_and_a_retry_gets_the_same() {
    let harness = Harness::start().await;
    let h = &harness;
    // An operator registers a site without naming its id.
    let key = Uuid::new_v4();
    let body = json!({"code": "NOID", "name": "No id", "seat_limit": 5});
    let first = h
        .command_keyed(&h.operator, "RegisterSite", body.clone(), key)
        .await;
    assert_eq!(first.status, 201, "{}", first.text);
    let site = first.json["created"]["site_id"]
        .as_str()
        .and_then(|s| Uuid::parse_str(s).ok())
        .expect("the created site id");
    // The retry with the same key is the same send: same answer, same id.
    let again = h
        .command_keyed(&h.operator, "RegisterSite", body, key)
        .await;
    assert_eq!(again.status, 200, "{}", again.text);
    assert_eq!(again.json["replayed"], json!(true));
    assert_eq!(again.json["created"]["site_id"], json!(site));
    // The id names the site from then on.
    let added = h
        .command(
            &h.operator,
            "AddUser",
            json!({"site_id": site, "username": "admin@noid.org", "name": "Admin", "role": "administration"}),
        )
        .await;
    assert_eq!(added.status, 201, "{}", added.text);
    let admin = added.json["created"]["user_id"]
        .as_str()
        .unwrap()
        .to_owned();
    let token = h.user_token(site, Uuid::parse_str(&admin).unwrap()).await;
    let scorecard = h
        .command(
            &token,
            "CreateScorecard",
            json!({"site_id": site, "name": "Made without an id"}),
        )
        .await;
    assert_eq!(scorecard.status, 201, "{}", scorecard.text);
    let scorecard_id = scorecard.json["created"]["scorecard_id"].clone();
    let object = h
        .command(
            &token,
            "CreateObject",
            json!({"site_id": site, "kind": "indicator", "name": "Also"}),
        )
        .await;
    assert_eq!(object.status, 201, "{}", object.text);
    let placed = h
        .command(
            &token,
            "PlaceObjectOnScorecard",
            json!({"site_id": site, "object_id": object.json["created"]["object_id"], "scorecard_id": scorecard_id}),
        )
        .await;
    assert_eq!(placed.status, 201, "{}", placed.text);
    // A command naming its id answers it too; one that creates nothing
    // answers an empty `created`.
    let given = Uuid::new_v4();
    let named = h
        .command(
            &token,
            "CreateScorecard",
            json!({"site_id": site, "scorecard_id": given, "name": "Named"}),
        )
        .await;
    assert_eq!(named.json["created"], json!({"scorecard_id": given}));
    assert_eq!(placed.json["created"], json!({}));
    // A null id is not a left-out one: refused as the body's shape.
    let null = h
        .command(
            &token,
            "CreateScorecard",
            json!({"site_id": site, "scorecard_id": null, "name": "Null"}),
        )
        .await;
    null.assert_problem(422, "invalid_body");
    harness.shutdown().await;
}

#[tokio::test]
async fn a_refused_commands_detail_names_sites_users_and_things_as_people_do() {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    // B's admin acting on A's data: the sites by their codes (R-USER-9).
    let cross = h
        .command(
            &w.b.admin_token,
            "CreateScorecard",
            json!({"site_id": w.a.id, "name": "Not mine"}),
        )
        .await;
    cross.assert_problem(403, "cross_site");
    assert_eq!(
        cross.json["detail"],
        json!("a user of site BETA cannot act on site ALPHA's own data (R-USER-9)")
    );
    // A link that is not active, in codes and its direction.
    let inactive = h
        .command(
            &w.b.admin_token,
            "ShareScorecard",
            json!({"site_id": w.b.id, "partner": w.a.id, "scorecard_id": w.b_scorecard}),
        )
        .await;
    inactive.assert_problem(409, "link_not_active");
    let detail = inactive.json["detail"].as_str().unwrap();
    assert!(detail.contains("from site BETA to site ALPHA"), "{detail}");
    // A scorecard by its name; an id nobody knows stays an id.
    let placed = h
        .command(
            &w.a.admin_token,
            "PlaceObjectOnScorecard",
            json!({"site_id": w.a.id, "object_id": w.shared_object, "scorecard_id": w.shared_scorecard}),
        )
        .await;
    placed.assert_problem(409, "already_placed");
    let detail = placed.json["detail"].as_str().unwrap();
    assert!(detail.contains("on scorecard “"), "{detail}");
    assert!(
        !detail.contains(&w.shared_scorecard.to_string()),
        "{detail}"
    );
    let ghost = Uuid::new_v4();
    let unknown = h
        .command(
            &w.a.admin_token,
            "DeactivateUser",
            json!({"site_id": w.a.id, "user_id": ghost}),
        )
        .await;
    unknown.assert_problem(404, "user_not_found");
    assert!(unknown.json["detail"]
        .as_str()
        .unwrap()
        .contains(&ghost.to_string()));
    // Tenancy: another site's private things are never named to B, only
    // echoed as the ids B sent.
    let private = h
        .command(
            &w.b.admin_token,
            "PlaceObjectOnScorecard",
            json!({"site_id": w.b.id, "object_id": w.private_object, "scorecard_id": w.private_scorecard}),
        )
        .await;
    let detail = private.json["detail"].as_str().unwrap().to_owned();
    assert!(
        detail.contains(&w.private_object.to_string())
            || detail.contains(&w.private_scorecard.to_string()),
        "{detail}"
    );
    assert!(!detail.contains('“'), "B is told no name of A's: {detail}");
    let a_user = h
        .command(
            &w.b.admin_token,
            "DeactivateUser",
            json!({"site_id": w.b.id, "user_id": w.a.admin}),
        )
        .await;
    a_user.assert_problem(404, "user_not_found");
    let detail = a_user.json["detail"].as_str().unwrap();
    assert!(detail.contains(&w.a.admin.to_string()), "{detail}");
    assert!(!detail.contains("admin@alpha"), "{detail}");
    harness.shutdown().await;
}

#[tokio::test]
async fn r_share_3_a_partner_renaming_or_archiving_a_shared_scorecard_is_read_only_whatever_site_it_names(
) {
    let harness = Harness::start().await;
    let h = &harness;
    let w = h.world().await;
    let before = h.snapshot().await;
    for site in [w.a.id, w.b.id] {
        h.command(
            &w.b.admin_token,
            "RenameScorecard",
            json!({"site_id": site, "scorecard_id": w.shared_scorecard, "name": "Ours now"}),
        )
        .await
        .assert_problem(403, "shared_content_read_only");
        h.command(
            &w.b.admin_token,
            "ArchiveScorecard",
            json!({"site_id": site, "scorecard_id": w.shared_scorecard}),
        )
        .await
        .assert_problem(403, "shared_content_read_only");
    }
    // A's unshared scorecard, named as B's own: as if it did not exist.
    h.command(
        &w.b.admin_token,
        "RenameScorecard",
        json!({"site_id": w.b.id, "scorecard_id": w.private_scorecard, "name": "Ours now"}),
    )
    .await
    .assert_problem(404, "scorecard_not_found");
    assert_eq!(h.snapshot().await, before, "nothing written");
    harness.shutdown().await;
}

#[tokio::test]
async fn r_user_8_an_import_of_the_most_rows_a_file_may_hold_is_applied_whole() {
    // Given a site with seats to spare, when its admin imports a file of
    // MAX_IMPORT_ROWS users, then every one is added in one append (its
    // condition names each username: it once exceeded the log's limit on
    // a condition's items and failed as an internal error).
    use shareledger_core::csv_import::MAX_IMPORT_ROWS;
    let harness = Harness::start().await;
    let h = &harness;
    let a = h.site("ALPHA").await;
    h.must(
        &h.operator,
        "SetSeatLimit",
        json!({"site_id": a.id, "seat_limit": 10_000}),
    )
    .await;
    let mut csv = String::from("username,name,role\n");
    for u in 0..MAX_IMPORT_ROWS {
        csv.push_str(&format!("user{u}@alpha.org,User {u},presenter\n"));
    }
    let position = h
        .must(
            &a.admin_token,
            "ImportUsers",
            json!({"site_id": a.id, "csv": csv}),
        )
        .await;
    let page = h
        .get(
            &a.admin_token,
            &format!("/v1/sites/{}/users?limit=1&min_position={position}", a.id),
        )
        .await;
    assert_eq!(page.ok()["total"], json!(MAX_IMPORT_ROWS + 1));
    harness.shutdown().await;
}
