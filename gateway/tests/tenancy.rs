//! Tenancy through HTTP: on random small worlds (2-3 sites, users with
//! random flags, random connections, shares, grants and relationships, built
//! with the HTTP commands), random callers (users, service tokens acting for
//! a user, site auditors) never learn of another site's unshared data.
//!
//! For a caller of site S, a target is *visible* when S owns it or it is (or
//! shows on) a scorecard its owner shares with S over an active link. Then:
//! every target named in a 200 answer (check, lookup, explain, viewers) is
//! visible to S; a question about an invisible target is 404
//! `unknown_target` exactly like one about an id that never existed; the
//! viewers and dashboards of another site (its users' details included)
//! are refused, and its content
//! lists (`/scorecards`, `/objects`, `/relationships`, `/shared-with`,
//! `/children`) are 404 exactly like a site that does not exist; one's own
//! lists hold its own content, the scorecards shared with it over active
//! links, and relationships to partners' objects it sees, never more; the
//! changes feed shows a site's administrators their site's streams and its
//! links', never another site's own events.

mod common;

use std::collections::{BTreeMap, BTreeSet};

use common::{Harness, Reply};
use proptest::prelude::*;
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};
use serde_json::{json, Value};
use uuid::Uuid;

const FLAGS: [&str; 4] = [
    "all_scorecards",
    "instance_admin",
    "manage_users",
    "add_edit_scorecard_objects",
];
const KINDS: [&str; 4] = ["result", "indicator", "program", "performance_measure"];

#[derive(Debug, Clone)]
struct User {
    id: Uuid,
    token: String,
    admin: bool,
}

#[derive(Debug, Clone)]
struct Site {
    id: Uuid,
    users: Vec<User>,
    scorecards: Vec<Uuid>,
    /// Objects with their container and the scorecards they are placed on.
    objects: Vec<(Uuid, Option<Uuid>, Vec<Uuid>)>,
    kinds: BTreeMap<Uuid, &'static str>,
}

#[derive(Debug, Default)]
struct Model {
    sites: Vec<Site>,
    /// Active links (from, to) and what each shares.
    shared: BTreeMap<(usize, usize), BTreeSet<Uuid>>,
}

impl Model {
    fn owner(&self, target: Uuid) -> Option<usize> {
        self.sites.iter().position(|s| {
            s.scorecards.contains(&target) || s.objects.iter().any(|(o, _, _)| *o == target)
        })
    }

    /// The scorecards an object shows on: its own placements and its
    /// containers'.
    fn shows_on(&self, site: usize, object: Uuid) -> BTreeSet<Uuid> {
        let objects = &self.sites[site].objects;
        let mut on = BTreeSet::new();
        let mut current = Some(object);
        while let Some(id) = current {
            let Some((_, container, placed)) = objects.iter().find(|(o, _, _)| *o == id) else {
                break;
            };
            on.extend(placed.iter().copied());
            current = *container;
        }
        on
    }

    fn visible(&self, site: usize, target: Uuid) -> bool {
        let Some(owner) = self.owner(target) else {
            return false;
        };
        if owner == site {
            return true;
        }
        let Some(shared) = self.shared.get(&(owner, site)) else {
            return false;
        };
        if shared.contains(&target) {
            return true;
        }
        let is_object = self.sites[owner]
            .objects
            .iter()
            .any(|(o, _, _)| *o == target);
        is_object && !self.shows_on(owner, target).is_disjoint(shared)
    }

    fn kind(&self, target: Uuid) -> &'static str {
        let is_scorecard = self.sites.iter().any(|s| s.scorecards.contains(&target));
        if is_scorecard {
            "scorecard"
        } else {
            "object"
        }
    }

    fn all_targets(&self) -> Vec<Uuid> {
        self.sites
            .iter()
            .flat_map(|s| {
                s.scorecards
                    .iter()
                    .copied()
                    .chain(s.objects.iter().map(|(o, _, _)| *o))
            })
            .collect()
    }
}

const CODES: [&str; 3] = ["SITEA", "SITEB", "SITEC"];

/// Builds a random world through the HTTP commands; returns the model and
/// the log's head after it.
async fn build(h: &Harness, rng: &mut StdRng, n_sites: usize) -> (Model, u64) {
    let mut model = Model::default();
    for code in CODES.iter().take(n_sites) {
        let handle = h.site(code).await;
        let mut site = Site {
            id: handle.id,
            users: vec![User {
                id: handle.admin,
                token: handle.admin_token.clone(),
                admin: true,
            }],
            scorecards: Vec::new(),
            objects: Vec::new(),
            kinds: BTreeMap::new(),
        };
        let t = handle.admin_token.as_str();
        for u in 0..rng.gen_range(1..=3) {
            let role = ["presenter", "data_entry"][rng.gen_range(0..2)];
            let (id, token) = h
                .user(&handle, &format!("u{u}@{}.org", code.to_lowercase()), role)
                .await;
            let flags: Vec<&str> = FLAGS
                .iter()
                .copied()
                .filter(|_| rng.gen_bool(0.3))
                .collect();
            if !flags.is_empty() {
                h.must(
                    t,
                    "SetPermissionFlags",
                    json!({"site_id": site.id, "user_id": id, "enable": flags}),
                )
                .await;
            }
            let admin = flags.contains(&"instance_admin") || flags.contains(&"manage_users");
            site.users.push(User { id, token, admin });
        }
        for _ in 0..rng.gen_range(1..=2) {
            let id = Uuid::new_v4();
            h.must(
                t,
                "CreateScorecard",
                json!({"site_id": site.id, "scorecard_id": id, "name": "Card"}),
            )
            .await;
            site.scorecards.push(id);
        }
        for _ in 0..rng.gen_range(1..=4) {
            let id = Uuid::new_v4();
            let kind = KINDS[rng.gen_range(0..4)];
            // Results and Programs contain objects.
            let containers: Vec<Uuid> = site
                .kinds
                .iter()
                .filter(|(_, k)| matches!(**k, "result" | "program"))
                .map(|(o, _)| *o)
                .collect();
            let container = containers.into_iter().find(|_| rng.gen_bool(0.4));
            let mut body =
                json!({"site_id": site.id, "object_id": id, "kind": kind, "name": "Thing"});
            if let Some(c) = container {
                body["container"] = json!(c);
            }
            h.must(t, "CreateObject", body).await;
            let mut placed = Vec::new();
            for s in site.scorecards.clone() {
                if rng.gen_bool(0.5) {
                    h.must(
                        t,
                        "PlaceObjectOnScorecard",
                        json!({"site_id": site.id, "object_id": id, "scorecard_id": s}),
                    )
                    .await;
                    placed.push(s);
                }
            }
            site.objects.push((id, container, placed));
            site.kinds.insert(id, kind);
        }
        model.sites.push(site);
    }
    // Connections between each pair.
    let pairs: Vec<(usize, usize)> = (0..n_sites)
        .flat_map(|i| (i + 1..n_sites).map(move |j| (i, j)))
        .collect();
    for (i, j) in pairs {
        {
            let (ti, tj) = (
                model.sites[i].users[0].token.clone(),
                model.sites[j].users[0].token.clone(),
            );
            let (si, sj) = (model.sites[i].id, model.sites[j].id);
            match rng.gen_range(0..5) {
                0 => {}
                1 => {
                    // Pending: nothing is active.
                    h.must(
                        &ti,
                        "RequestConnection",
                        json!({"site_id": si, "partner_code": CODES[j], "directions": "offer"}),
                    )
                    .await;
                }
                2 => {
                    h.must(
                        &ti,
                        "RequestConnection",
                        json!({"site_id": si, "partner_code": CODES[j], "directions": "offer"}),
                    )
                    .await;
                    h.must(
                        &tj,
                        "ApproveConnection",
                        json!({"site_id": sj, "partner": si}),
                    )
                    .await;
                    model.shared.insert((i, j), BTreeSet::new());
                }
                3 => {
                    h.must(
                        &ti,
                        "RequestConnection",
                        json!({"site_id": si, "partner_code": CODES[j], "directions": "both"}),
                    )
                    .await;
                    h.must(
                        &tj,
                        "ApproveConnection",
                        json!({"site_id": sj, "partner": si}),
                    )
                    .await;
                    model.shared.insert((i, j), BTreeSet::new());
                    model.shared.insert((j, i), BTreeSet::new());
                }
                _ => {
                    // Both active, then j revokes i→j after i shared.
                    h.must(
                        &ti,
                        "RequestConnection",
                        json!({"site_id": si, "partner_code": CODES[j], "directions": "both"}),
                    )
                    .await;
                    h.must(
                        &tj,
                        "ApproveConnection",
                        json!({"site_id": sj, "partner": si}),
                    )
                    .await;
                    let s = model.sites[i].scorecards[0];
                    h.must(
                        &ti,
                        "ShareScorecard",
                        json!({"site_id": si, "partner": sj, "scorecard_id": s}),
                    )
                    .await;
                    h.must(
                        &tj,
                        "RevokeSharing",
                        json!({"site_id": sj, "from": si, "to": sj}),
                    )
                    .await;
                    model.shared.insert((j, i), BTreeSet::new());
                }
            }
        }
    }
    // Shares over active links.
    let links: Vec<(usize, usize)> = model.shared.keys().copied().collect();
    for (from, to) in links {
        let token = model.sites[from].users[0].token.clone();
        for s in model.sites[from].scorecards.clone() {
            if rng.gen_bool(0.5) {
                h.must(&token, "ShareScorecard", json!({"site_id": model.sites[from].id, "partner": model.sites[to].id, "scorecard_id": s})).await;
                model.shared.get_mut(&(from, to)).unwrap().insert(s);
            }
        }
    }
    // Grants on own and shared scorecards, and relationships.
    for site in 0..n_sites {
        let admin_token = model.sites[site].users[0].token.clone();
        let site_id = model.sites[site].id;
        let foreign: Vec<(usize, Uuid)> = model
            .shared
            .iter()
            .filter(|((_, to), _)| *to == site)
            .flat_map(|((from, _), cards)| cards.iter().map(move |c| (*from, *c)))
            .collect();
        for user in model.sites[site].users.clone().iter().skip(1) {
            for s in model.sites[site].scorecards.clone() {
                if rng.gen_bool(0.4) {
                    let level =
                        ["browser", "updater", "editor", "scorecard_admin"][rng.gen_range(0..4)];
                    h.must(&admin_token, "GrantScorecardAccess", json!({"site_id": site_id, "user_id": user.id, "scorecard_id": s, "level": level})).await;
                }
            }
            for (from, s) in &foreign {
                if rng.gen_bool(0.5) {
                    h.must(&admin_token, "GrantScorecardAccess", json!({"site_id": site_id, "user_id": user.id, "scorecard_id": s, "level": "browser", "owner_site": model.sites[*from].id})).await;
                }
            }
        }
        let own_card = model.sites[site].scorecards[0];
        let partners: BTreeSet<usize> = foreign.iter().map(|(from, _)| *from).collect();
        for from in partners {
            let objects: Vec<Uuid> = model.sites[from]
                .objects
                .iter()
                .map(|(o, _, _)| *o)
                .collect();
            for o in objects {
                if model.visible(site, o) && rng.gen_bool(0.5) {
                    h.must(&admin_token, "LinkSharedObject", json!({"site_id": site_id, "relationship_id": Uuid::new_v4(), "scorecard_id": own_card, "origin_site": model.sites[from].id, "object_id": o})).await;
                }
            }
        }
    }
    let last: i64 = sqlx::query_scalar("SELECT MAX(global_position) FROM sl_events")
        .fetch_one(h.db.pool())
        .await
        .expect("the head");
    (model, last as u64)
}

/// One caller: how to authenticate, its site, the subject of its access
/// questions, and whether it administers its site.
struct Caller {
    label: String,
    headers: Vec<(&'static str, String)>,
    site: usize,
    subject: Option<Uuid>,
    /// The user the caller acts as (none for an auditor).
    acts_as: Option<Uuid>,
    administers: bool,
}

/// Every UUID in the answer under keys that name targets.
fn named_targets(value: &Value, out: &mut BTreeSet<Uuid>) {
    match value {
        Value::Object(map) => {
            for (key, v) in map {
                let names_target = matches!(
                    key.as_str(),
                    "scorecard" | "object" | "container" | "any_of" | "showing" | "into_object"
                );
                if names_target {
                    collect_uuids(v, out);
                }
                if key == "target" {
                    if let Some(id) = v["id"].as_str().and_then(|s| s.parse().ok()) {
                        out.insert(id);
                    }
                }
                named_targets(v, out);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| named_targets(i, out)),
        _ => {}
    }
}

fn collect_uuids(value: &Value, out: &mut BTreeSet<Uuid>) {
    match value {
        Value::String(s) => {
            if let Ok(id) = s.parse() {
                out.insert(id);
            }
        }
        Value::Array(items) => items.iter().for_each(|i| collect_uuids(i, out)),
        _ => {}
    }
}

/// The answer with the target's id blanked and without its request's id
/// (each request has its own), to compare two answers.
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

async fn get(h: &Harness, caller: &Caller, path: &str) -> Reply {
    h.get_with(path, &caller.headers).await
}

async fn check_world(h: &Harness, model: &Model, last: u64, rng: &mut StdRng) {
    // The callers: every user, a service token per site acting for a random
    // user of it, and an auditor per site asking about a random user of it.
    let mut callers = Vec::new();
    for (i, site) in model.sites.iter().enumerate() {
        for user in &site.users {
            callers.push(Caller {
                label: format!("user {} of site {i}", user.id),
                headers: vec![("authorization", format!("Bearer {}", user.token))],
                site: i,
                subject: None,
                acts_as: Some(user.id),
                administers: user.admin,
            });
        }
        let service = h.service_token(site.id).await;
        let user = &site.users[rng.gen_range(0..site.users.len())];
        callers.push(Caller {
            label: format!("service of site {i} as {}", user.id),
            headers: vec![
                ("authorization", format!("Bearer {service}")),
                ("shareledger-act-as", user.id.to_string()),
            ],
            site: i,
            subject: None,
            acts_as: Some(user.id),
            administers: user.admin,
        });
        let auditor = h.auditor_token(Some(site.id)).await;
        callers.push(Caller {
            label: format!("auditor of site {i}"),
            headers: vec![("authorization", format!("Bearer {auditor}"))],
            site: i,
            subject: Some(site.users[rng.gen_range(0..site.users.len())].id),
            acts_as: None,
            administers: true,
        });
    }
    let ghost = Uuid::new_v4();
    for caller in &callers {
        let s = caller.site;
        let user = caller
            .subject
            .map(|u| format!("&user_id={u}"))
            .unwrap_or_default();
        let visible_or_fail = |answer: &Value, what: &str| {
            let mut named = BTreeSet::new();
            named_targets(answer, &mut named);
            for id in named {
                if model.owner(id).is_some() {
                    assert!(
                        model.visible(s, id),
                        "{}: {what} names {id}, invisible to site {s}: {answer:#}",
                        caller.label
                    );
                }
            }
        };
        // only visible targets, each with its owner.
        let lookup = get(
            h,
            caller,
            &format!("/v1/access/lookup?limit=10000&min_position={last}{user}"),
        )
        .await;
        assert_eq!(lookup.status, 200, "{}: {lookup:#?}", caller.label);
        for item in lookup.json["items"].as_array().unwrap() {
            let id: Uuid = item["target"]["id"].as_str().unwrap().parse().unwrap();
            let owner = model.owner(id).expect("a known target");
            assert!(
                model.visible(s, id),
                "{}: lookup shows {id}: {item}",
                caller.label
            );
            assert_eq!(item["site"], json!(model.sites[owner].id));
        }
        visible_or_fail(&lookup.json, "lookup");

        for target in model.all_targets() {
            let kind = model.kind(target);
            let owner = model.owner(target).unwrap();
            let visible = model.visible(s, target);
            let questions = |id: Uuid| {
                [
                    format!("/v1/access/check?target_type={kind}&target_id={id}&action=view&min_position={last}{user}"),
                    format!("/v1/access/explain?target_type={kind}&target_id={id}&min_position={last}{user}"),
                    format!("/v1/access/viewers?target_type={kind}&target_id={id}&min_position={last}"),
                ]
            };
            for (n, (real, fake)) in questions(target)
                .into_iter()
                .zip(questions(ghost))
                .enumerate()
            {
                let answer = get(h, caller, &real).await;
                if !visible {
                    answer.assert_problem(404, "unknown_target");
                    let ghostly = get(h, caller, &fake).await;
                    ghostly.assert_problem(404, "unknown_target");
                    assert_eq!(
                        without_id(&answer, target),
                        without_id(&ghostly, ghost),
                        "{}: {real}",
                        caller.label
                    );
                    continue;
                }
                let is_viewers = n == 2;
                if is_viewers && (owner != s || !caller.administers) {
                    answer.assert_problem(403, "forbidden");
                    continue;
                }
                assert_eq!(answer.status, 200, "{}: {real}: {answer:#?}", caller.label);
                visible_or_fail(&answer.json, &real);
                if is_viewers {
                    // Who sees it: users of the owner or of sites it is
                    // shared with, never of a site it is hidden from.
                    for v in answer.json["viewers"].as_array().unwrap() {
                        let site = model
                            .sites
                            .iter()
                            .position(|x| json!(x.id) == v["site"])
                            .expect("a known site");
                        assert!(model.visible(site, target), "{}: {real}: {v}", caller.label);
                    }
                }
            }
        }

        // Dashboards and content lists: another site's are not found,
        // exactly like a site that does not exist; one's own need admin,
        // and hold the site's own content and what is shared with it only.
        for (t, other) in model.sites.iter().enumerate() {
            // One user's detail: of another site, not found like the rest.
            let user_route = format!("/users/{}", other.users[0].id);
            for route in [
                user_route.as_str(),
                "",
                "/connections",
                "/pending-requests",
                "/shared-scorecards",
                "/users",
                "/scorecards",
                "/objects",
                "/relationships",
                "/shared-with",
                "/children",
            ] {
                let answer = get(
                    h,
                    caller,
                    &format!("/v1/sites/{}{route}?min_position={last}", other.id),
                )
                .await;
                if t != s {
                    answer.assert_problem(404, "not_found");
                    if CONTENT_ROUTES.contains(&route) {
                        let ghostly = get(
                            h,
                            caller,
                            &format!("/v1/sites/{ghost}{route}?min_position={last}"),
                        )
                        .await;
                        assert_eq!(
                            without_id(&answer, other.id),
                            without_id(&ghostly, ghost),
                            "{}: {route}",
                            caller.label
                        );
                    }
                } else if caller.administers {
                    assert_eq!(answer.status, 200, "{}: {answer:#?}", caller.label);
                    if CONTENT_ROUTES.contains(&route) {
                        visible_or_fail(&answer.json, route);
                        own_content_only(model, s, route, &answer.json, &caller.label);
                    }
                } else {
                    answer.assert_problem(403, "forbidden");
                }
            }
        }

        // The changes feed: a site's administrators (and its auditors)
        // see their site's streams and the links it is one of, nothing of
        // another site's own; other users nothing.
        let feed = get(h, caller, "/v1/changes?limit=1000").await;
        if caller.administers {
            assert_eq!(feed.status, 200, "{}: {feed:#?}", caller.label);
            let own = model.sites[s].id.simple().to_string();
            for event in feed.json["events"].as_array().unwrap() {
                let stream = event["stream"].as_str().unwrap();
                let mine = stream == format!("site-{own}")
                    || stream == format!("content-{own}")
                    || stream
                        .strip_prefix("connection-")
                        .and_then(|pair| pair.split_once('-'))
                        .is_some_and(|(lo, hi)| lo == own || hi == own);
                assert!(mine, "{} sees {stream}", caller.label);
            }
        } else {
            feed.assert_problem(403, "forbidden");
        }

        // The access changes feed: a site's administrators see their
        // users' and their content's entries; other users their own.
        let changes = get(h, caller, "/v1/access-changes?limit=1000").await;
        assert_eq!(changes.status, 200, "{}: {changes:#?}", caller.label);
        let own = json!(model.sites[s].id);
        for entry in changes.json["changes"].as_array().unwrap() {
            if caller.administers {
                assert!(
                    entry["user_site"] == own || entry["target_site"] == own,
                    "{} sees {entry}",
                    caller.label
                );
            } else {
                assert_eq!(entry["user"], json!(caller.acts_as), "{}", caller.label);
            }
        }
    }
}

/// The lists of a site's content (`gateway/src/contents.rs`).
const CONTENT_ROUTES: [&str; 5] = [
    "/scorecards",
    "/objects",
    "/relationships",
    "/shared-with",
    "/children",
];

fn uuid_at(value: &Value) -> Uuid {
    value
        .as_str()
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("a UUID, got {value}"))
}

/// Site `s`'s content list `route` (one page: the worlds are small) holds
/// exactly the site's own scorecards and objects, the scorecards its
/// partners share with it over active links, and relationships to
/// partners' objects it sees (R-SHARE-4), named with their owner's code
/// (R-SHARE-6); never anything else of another site.
fn own_content_only(model: &Model, s: usize, route: &str, answer: &Value, label: &str) {
    assert_eq!(answer["next"], Value::Null, "{label}: {route}: one page");
    let items = answer["items"].as_array().expect("items");
    let site = &model.sites[s];
    match route {
        "/scorecards" => {
            let listed: BTreeSet<Uuid> =
                items.iter().map(|i| uuid_at(&i["scorecard_id"])).collect();
            let own: BTreeSet<Uuid> = site.scorecards.iter().copied().collect();
            assert_eq!(listed, own, "{label}: {route}: {answer:#}");
        }
        "/objects" => {
            let listed: BTreeSet<(Uuid, Option<Uuid>, BTreeSet<Uuid>)> = items
                .iter()
                .map(|i| {
                    let container = match &i["container"] {
                        Value::Null => None,
                        c => Some(uuid_at(&c["object_id"])),
                    };
                    let on = i["scorecards"]
                        .as_array()
                        .unwrap()
                        .iter()
                        .map(|c| uuid_at(&c["scorecard_id"]))
                        .collect();
                    (uuid_at(&i["object_id"]), container, on)
                })
                .collect();
            let own: BTreeSet<(Uuid, Option<Uuid>, BTreeSet<Uuid>)> = site
                .objects
                .iter()
                .map(|(o, container, placed)| (*o, *container, placed.iter().copied().collect()))
                .collect();
            assert_eq!(listed, own, "{label}: {route}: {answer:#}");
            for item in items {
                let kind = site.kinds[&uuid_at(&item["object_id"])];
                assert_eq!(item["kind"], json!(kind), "{label}: {item}");
            }
        }
        "/shared-with" => {
            let listed: BTreeSet<(Uuid, Uuid)> = items
                .iter()
                .map(|i| {
                    let partner = uuid_at(&i["partner"]["site_id"]);
                    let from = model.sites.iter().position(|x| x.id == partner).unwrap();
                    assert_eq!(i["partner"]["code"], json!(CODES[from]), "{label}: {i}");
                    (partner, uuid_at(&i["scorecard_id"]))
                })
                .collect();
            let shared: BTreeSet<(Uuid, Uuid)> = model
                .shared
                .iter()
                .filter(|((_, to), _)| *to == s)
                .flat_map(|((from, _), cards)| {
                    cards.iter().map(move |c| (model.sites[*from].id, *c))
                })
                .collect();
            assert_eq!(listed, shared, "{label}: {route}: {answer:#}");
        }
        "/relationships" => {
            for item in items {
                let object = uuid_at(&item["object"]["object_id"]);
                let owner = model.owner(object).expect("a known object");
                assert_ne!(owner, s, "{label}: a relationship is to a partner's object");
                assert!(model.visible(s, object), "{label}: {item}");
                assert_eq!(item["origin"]["site_id"], json!(model.sites[owner].id));
                assert_eq!(
                    item["origin"]["code"],
                    json!(CODES[owner]),
                    "{label}: {item}"
                );
                let target = uuid_at(&item["target"]["id"]);
                assert_eq!(model.owner(target), Some(s), "{label}: {item}");
            }
        }
        "/children" => assert!(items.is_empty(), "{label}: {answer:#}"),
        other => panic!("not a content route: {other}"),
    }
}

proptest! {
    // Each case builds a world over HTTP: few cases, and no shrinking (the
    // seed is the whole input; a failure prints it).
    #![proptest_config(ProptestConfig { cases: 8, max_shrink_iters: 0, ..ProptestConfig::default() })]

    #[test]
    fn no_answer_reveals_another_sites_unshared_data(seed in any::<u64>(), n_sites in 2usize..=3) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let harness = Harness::start().await;
            let mut rng = StdRng::seed_from_u64(seed);
            let (model, last) = build(&harness, &mut rng, n_sites).await;
            check_world(&harness, &model, last, &mut rng).await;
            harness.shutdown().await;
        });
    }
}
