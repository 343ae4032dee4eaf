//! The console in a real browser: the grant-maker story end to end, the
//! users page, and a person without rights (DOMAIN.md's R-CONN-1/2/3/4,
//! R-SHARE-1/5/6, R-USER-1/6/8; issue 18's stories).

mod browser;
mod common;

use browser::Browser;
use common::Harness;
use serde_json::json;
use uuid::Uuid;

/// FUND with two scorecards (one to share) and HOPE, each with an admin.
async fn grant_maker_world(h: &Harness) -> (common::SiteHandle, common::SiteHandle, Uuid) {
    let fund = h.site("FUND").await;
    let hope = h.site("HOPE").await;
    let youth = Uuid::new_v4();
    let object = Uuid::new_v4();
    let t = fund.admin_token.as_str();
    h.must(
        t,
        "CreateScorecard",
        json!({"site_id": fund.id, "scorecard_id": youth, "name": "Youth Outcomes 2026"}),
    )
    .await;
    h.must(t, "CreateObject", json!({"site_id": fund.id, "object_id": object, "kind": "indicator", "name": "% of youth graduating"})).await;
    h.must(
        t,
        "PlaceObjectOnScorecard",
        json!({"site_id": fund.id, "object_id": object, "scorecard_id": youth}),
    )
    .await;
    h.must(
        t,
        "CreateScorecard",
        json!({"site_id": fund.id, "scorecard_id": Uuid::new_v4(), "name": "Internal Budget"}),
    )
    .await;
    (fund, hope, youth)
}

#[tokio::test]
async fn r_conn_r_share_the_grant_makers_story_from_the_browser_alone() {
    let h = Harness::start().await;
    let Some(b) = Browser::start(&h.url).await else {
        return;
    };
    let (fund, hope, youth) = grant_maker_world(&h).await;

    // Given FUND's admin signs in, when they request a connection with
    // HOPE by its code (offer only), then it awaits HOPE's approval.
    b.go("/sign-in").await;
    b.shot("sign-in").await;
    b.sign_in(&fund.admin_token).await;
    b.go("/partners").await;
    b.fill("#partner_code", "HOPE").await;
    b.click("input[name=directions][value=offer]").await;
    b.submit("form[action='/act/RequestConnection'] button.primary")
        .await;
    assert!(b
        .text_of(".flash.ok")
        .await
        .contains("Connection requested"));
    let row = b
        .text_of("[data-testid=outgoing] tr[data-partner=HOPE]")
        .await;
    assert!(row.contains("awaiting approval"), "{row}");
    b.sign_out().await;

    // When HOPE's admin approves it, then the link is active.
    b.sign_in(&hope.admin_token).await;
    b.go("/partners").await;
    let card = b.text_of("[data-testid=pending-FUND]").await;
    assert!(
        card.contains("offers to share its scorecards with you"),
        "{card}"
    );
    b.shot("partner-connect-pending").await;
    b.submit("[data-testid=pending-FUND] form[action='/act/ApproveConnection'] button")
        .await;
    assert!(b
        .text_of(".flash.ok")
        .await
        .contains("Approved the connection with FUND"));
    let row = b
        .text_of("[data-testid=incoming] tr[data-partner=FUND]")
        .await;
    assert!(row.contains("active"), "{row}");

    // The page follows the log: a request another site makes appears on
    // its own (the changes feed's events, no reload by the person).
    let nest = h.site("NEST").await;
    h.must(
        &nest.admin_token,
        "RequestConnection",
        json!({"site_id": nest.id, "partner_code": "HOPE", "directions": "both"}),
    )
    .await;
    b.until("NEST's request appears without a reload", |b| async move {
        b.exists("[data-testid=pending-NEST]").await
    })
    .await;
    b.sign_out().await;

    // When FUND's admin moves Youth Outcomes to "has access to" for HOPE
    // in Edit Scorecards, then HOPE's admin sees it, tagged FUND, and why.
    b.sign_in(&fund.admin_token).await;
    b.go("/partners").await;
    b.click(&format!("[data-testid=edit-HOPE] input[value='{youth}']"))
        .await;
    b.submit("[data-testid=edit-HOPE] button[type=submit]")
        .await;
    assert!(b
        .text_of(".flash.ok")
        .await
        .contains("Saved what HOPE can access"));
    let has = b
        .text_of("[data-testid=edit-HOPE] fieldset.list:nth-of-type(2)")
        .await;
    assert!(
        has.contains("Has access to") && has.contains("Youth Outcomes 2026"),
        "{has}"
    );
    b.shot("partner-connect").await;
    b.go("/scorecards").await;
    let row = b.text_of("[data-testid=scorecards]").await;
    assert!(
        row.contains("HOPE"),
        "the scorecard names whom it is shared with: {row}"
    );
    b.shot("scorecards").await;
    b.sign_out().await;

    b.sign_in(&hope.admin_token).await;
    b.go("/access").await;
    let seen = b.text_of("[data-testid=lookup]").await;
    assert!(
        seen.contains("Youth Outcomes 2026") && seen.contains("FUND"),
        "{seen}"
    );
    assert!(
        !seen.contains("Internal Budget"),
        "only what is shared: {seen}"
    );
    b.shot("access-explorer").await;
    b.submit(&format!(
        "[data-testid=lookup] a[href*='{youth}'][href*='user=']"
    ))
    .await;
    let why = b.text_of("[data-testid=explanation]").await;
    assert!(
        why.contains("FUND shares") && why.contains("event"),
        "{why}"
    );
    b.shot("access-why").await;
    let before_revoke: u64 = b
        .text_of("[data-testid=position]")
        .await
        .parse()
        .expect("a position");
    b.sign_out().await;

    // When FUND's admin revokes FUND → HOPE after reading what it
    // removes, then HOPE's admin loses Youth Outcomes.
    b.sign_in(&fund.admin_token).await;
    b.go("/partners").await;
    b.submit("[data-testid=outgoing] tr[data-partner=HOPE] a.button.danger")
        .await;
    let confirm = b.text().await;
    assert!(
        confirm.contains("Revoke FUND → HOPE?") && confirm.contains("Youth Outcomes 2026"),
        "{confirm}"
    );
    b.shot("revoke-confirmation").await;
    b.submit("form[action='/act/RevokeSharing'] button.danger")
        .await;
    assert!(b.text_of(".flash.ok").await.contains("Revoked FUND → HOPE"));
    let row = b
        .text_of("[data-testid=outgoing] tr[data-partner=HOPE]")
        .await;
    assert!(row.contains("revoked"), "{row}");
    let after_revoke: u64 = b
        .text_of("[data-testid=position]")
        .await
        .parse()
        .expect("a position");
    b.sign_out().await;

    // Then FUND's auditor sees the loss in the diff, and the log intact.
    let auditor = h.auditor_token(Some(fund.id)).await;
    b.sign_in(&auditor).await;
    b.go(&format!(
        "/audit?diff_from={before_revoke}&diff_to={after_revoke}"
    ))
    .await;
    let lost = b.text_of("[data-testid=lost]").await;
    assert!(
        lost.contains("admin@hope.org") && lost.contains("Youth Outcomes 2026"),
        "{lost}"
    );
    let timeline = b.text_of("[data-testid=timeline]").await;
    assert!(timeline.contains("RevokeSharing"), "{timeline}");
    b.shot("audit-diff").await;
    b.submit("form[action='/audit'] input[name=verify] ~ button")
        .await;
    assert!(b
        .text_of("[data-testid=verdict]")
        .await
        .contains("The log is intact"));
    b.sign_out().await;

    // Readable at 390 px: nothing but the tables' own scroll is wider.
    b.client.set_window_size(390, 844).await.expect("narrow");
    b.sign_in(&fund.admin_token).await;
    b.go("/partners").await;
    let width = b
        .client
        .execute("return document.documentElement.scrollWidth", vec![])
        .await
        .expect("a width");
    assert!(
        width.as_u64().unwrap_or(9999) <= 390,
        "the page is {width} px wide at 390"
    );
    b.shot("partner-connect-390").await;
    h.shutdown().await;
}

#[tokio::test]
async fn r_onb_2_seed_002_003_the_consortium_story_from_the_browser_alone() {
    let h = Harness::start().await;
    let Some(b) = Browser::start(&h.url).await else {
        return;
    };
    let group = h.site("GROUP").await;
    let clinic = h.site("CLINIC").await;
    let pantry = h.site("PANTRY").await;
    let intake = Uuid::new_v4();
    h.must(
        &group.admin_token,
        "CreateScorecard",
        json!({"site_id": group.id, "scorecard_id": intake, "name": "Partner Intake"}),
    )
    .await;
    let (model, _) = h.user(&group, "model@group.org", "administration").await;
    h.must(
        &group.admin_token,
        "GrantScorecardAccess",
        json!({"site_id": group.id, "user_id": model, "scorecard_id": intake, "level": "editor"}),
    )
    .await;

    // Given CLINIC's and PANTRY's admins list their sites in the partner
    // directory from Site settings.
    for site in [&clinic, &pantry] {
        b.sign_in(&site.admin_token).await;
        b.go("/settings").await;
        assert!(b
            .text_of("[data-testid=directory]")
            .await
            .contains("not listed"));
        b.submit("[data-testid=directory] button").await;
        assert!(b
            .text_of(".flash.ok")
            .await
            .contains("is listed in the partner directory"));
        assert!(b
            .text_of("[data-testid=directory]")
            .await
            .contains("is listed"));
        if site.code == "PANTRY" {
            b.shot("site-settings").await;
        }
        b.sign_out().await;
    }

    // When GROUP's admin ticks both in the directory, offer only, and
    // saves, then a confirmation names them; confirmed, each request is
    // sent and awaits approval (seed 002: Connections).
    b.sign_in(&group.admin_token).await;
    b.go("/partners").await;
    b.click("[data-testid=directory] input[data-select-all]")
        .await;
    b.click("[data-testid=directory] input[name=directions][value=offer]")
        .await;
    b.shot("partner-directory").await;
    b.submit("[data-testid=directory] button.primary").await;
    let review = b.text_of("[data-testid=to-request]").await;
    assert!(
        review.contains("CLINIC site") && review.contains("PANTRY site"),
        "{review}"
    );
    assert!(b.text().await.contains("offering your scorecards only"));
    b.shot("request-connections-confirm").await;
    b.submit("form[action='/partners/request'] button.primary")
        .await;
    let outcome = b.text_of(".flash.ok").await;
    assert!(
        outcome.contains("Requested 2 connection(s)")
            && outcome.contains("CLINIC")
            && outcome.contains("PANTRY"),
        "{outcome}"
    );
    for code in ["CLINIC", "PANTRY"] {
        let row = b
            .text_of(&format!("[data-testid=outgoing] tr[data-partner={code}]"))
            .await;
        assert!(row.contains("awaiting approval"), "{row}");
    }

    // When GROUP's admin turns self-registration on with its model user
    // and makes the link, then the link is shown once.
    b.go("/settings").await;
    b.click(&format!("#model_user option[value='{model}']"))
        .await;
    b.click("[data-testid=configure-self-registration] input[name=enabled]")
        .await;
    b.submit("[data-testid=configure-self-registration] button.primary")
        .await;
    assert!(b
        .text_of(".flash.ok")
        .await
        .contains("Saved the self-registration settings"));
    assert_eq!(
        b.text_of("[data-testid=self-registration-state]").await,
        "on"
    );
    b.click("[data-testid=publish-link] input[name=child_of_group]")
        .await;
    b.submit("[data-testid=publish-link] button.primary").await;
    let address = b
        .client
        .execute(
            "return document.querySelector('[data-testid=link]').value",
            vec![],
        )
        .await
        .expect("the link")
        .as_str()
        .expect("text")
        .to_owned();
    assert!(address.contains("/register?key=slr_"), "{address}");
    b.shot("self-registration-link").await;
    b.go("/settings").await;
    assert!(b
        .text_of("[data-testid=link-state]")
        .await
        .contains("published"));
    b.sign_out().await;

    // When a partner with no account opens the link and registers, a
    // mistake keeps what they typed; then their site and manager are made,
    // and they continue into the console as that manager, seeing the
    // model's scorecard shared by GROUP (R-ONB-2).
    let path = &address[address.find("/register").expect("a path")..];
    b.go(path).await;
    b.fill("#name", "Riverside Food Bank").await;
    b.fill("#code", "CLINIC").await;
    b.fill("#manager_name", "Rosa Rivera").await;
    b.fill("#manager_username", "rosa@riverside.org").await;
    b.shot("self-registration").await;
    let before = h.snapshot().await;
    b.submit("form[data-testid=register] button.primary").await;
    assert!(b.text_of(".flash.error").await.contains("Not registered"));
    assert_eq!(h.snapshot().await, before, "a refusal writes nothing");
    let kept = b
        .client
        .execute(
            "return document.querySelector('#manager_username').value",
            vec![],
        )
        .await
        .expect("a value");
    assert_eq!(kept, json!("rosa@riverside.org"), "what was typed is kept");
    b.shot("self-registration-refused").await;
    b.fill("#code", "RIVER").await;
    b.submit("form[data-testid=register] button.primary").await;
    let done = b.text_of("[data-testid=registered]").await;
    assert!(
        done.contains("RIVER") && done.contains("rosa@riverside.org"),
        "{done}"
    );
    b.submit("[data-testid=registered] form button.primary")
        .await;
    assert_eq!(b.text_of("[data-testid=who]").await, "rosa@riverside.org");
    b.go("/access").await;
    let seen = b.text_of("[data-testid=lookup]").await;
    assert!(
        seen.contains("Partner Intake") && seen.contains("GROUP"),
        "{seen}"
    );
    b.sign_out().await;

    // Then GROUP's settings list RIVER as a child site; turning the link
    // off makes it invalid.
    b.sign_in(&group.admin_token).await;
    b.go("/settings").await;
    assert!(b.text_of("[data-testid=children]").await.contains("RIVER"));
    b.submit("form[action='/settings/link/withdraw'] button")
        .await;
    assert!(b.text_of(".flash.ok").await.contains("link is off"));
    b.sign_out().await;
    let gone = h.get_with(path, &[]).await;
    assert_eq!(gone.status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn r_user_the_users_page_sorts_searches_imports_and_deactivates() {
    let h = Harness::start().await;
    let Some(b) = Browser::start(&h.url).await else {
        return;
    };
    let acme = h.site("ACME").await;
    b.sign_in(&acme.admin_token).await;
    b.go("/users").await;
    assert!(b
        .text_of("[data-testid=seats]")
        .await
        .contains("1 of 50 seats"));

    // Adding two users from the form.
    for (username, name) in [
        ("dana@acme.org", "Dana Adams"),
        ("zed@acme.org", "Aaron Zed"),
    ] {
        b.fill("#new-username", username).await;
        b.fill("#new-name", name).await;
        b.submit("form[action='/act/AddUser'] button.primary").await;
        assert!(b.text_of(".flash.ok").await.contains("User added"));
        assert!(b.exists(&format!("tr[data-username='{username}']")).await);
    }
    assert!(b
        .text_of("[data-testid=seats]")
        .await
        .contains("3 of 50 seats"));

    // Sorting by name, then by name descending.
    let order = |b: &Browser| {
        let b = b.client.clone();
        async move {
            b.execute("return [...document.querySelectorAll('[data-testid=users] tbody tr')].map(r => r.dataset.username)", vec![])
                .await
                .expect("rows")
        }
    };
    b.submit("th a[href*='sort=name']").await;
    assert_eq!(
        order(&b).await,
        json!(["zed@acme.org", "admin@acme.org", "dana@acme.org"])
    );
    b.submit("th a[href*='sort=name']").await;
    assert_eq!(
        order(&b).await,
        json!(["dana@acme.org", "admin@acme.org", "zed@acme.org"])
    );

    // Searching every field: "zed" is in one username.
    b.fill("#user-search", "zed").await;
    b.submit("form[role=search] button").await;
    assert_eq!(order(&b).await, json!(["zed@acme.org"]));
    b.go("/users").await;

    // An import with bad rows shows each row's line, field and reason and
    // changes nothing.
    let before = h.snapshot().await;
    b.set_value(
        "#csv-text",
        "username,name,role\nok@acme.org,Ok Person,presenter\nbad@acme.org,,wizard\n",
    )
    .await;
    b.submit("form[action='/act/ImportUsers'] button.primary")
        .await;
    let refusal = b.text_of(".flash.error").await;
    assert!(
        refusal.contains("ImportUsers was refused") && refusal.contains("Line"),
        "{refusal}"
    );
    assert!(
        refusal.contains("name") && refusal.contains("role"),
        "{refusal}"
    );
    let rows = b.text_of(".flash.error table").await;
    assert!(rows.contains('3'), "the bad row's line: {rows}");
    b.shot("users-import-refused").await;
    assert_eq!(
        h.snapshot().await,
        before,
        "a refused import writes nothing"
    );

    // A clean file is applied.
    b.set_value("#csv-text", "username,name,role,email\nok@acme.org,Ok Person,presenter,ok@acme.org\nsam@acme.org,Sam Smith,data_entry,\n").await;
    b.submit("form[action='/act/ImportUsers'] button.primary")
        .await;
    assert!(b.text_of(".flash.ok").await.contains("imported"));
    assert!(b
        .text_of("[data-testid=seats]")
        .await
        .contains("5 of 50 seats"));

    // Deactivating, then hiding the inactive.
    b.submit("tr[data-username='dana@acme.org'] form[action='/act/DeactivateUser'] button")
        .await;
    assert!(b
        .text_of("tr[data-username='dana@acme.org']")
        .await
        .contains("inactive"));
    assert!(b
        .text_of("[data-testid=seats]")
        .await
        .contains("4 of 50 seats"));
    b.shot("users").await;
    b.click("input[name=hide_inactive]").await;
    b.submit("form[role=search] button").await;
    assert!(!b.exists("tr[data-username='dana@acme.org']").await);
    assert!(b.exists("tr[data-username='zed@acme.org']").await);

    // Reactivating: the seat is taken again.
    b.go("/users").await;
    b.submit("tr[data-username='dana@acme.org'] form[action='/act/ReactivateUser'] button")
        .await;
    assert!(b
        .text_of("[data-testid=seats]")
        .await
        .contains("5 of 50 seats"));

    // Adding an existing user of another site (seed 001): a wrong username
    // is refused with the form kept; the right one is added with the
    // account's username and name.
    let beta = h.site("BETA").await;
    h.user(&beta, "lee@beta.org", "presenter").await;
    b.go("/users").await;
    b.fill("#existing-site", "beta").await;
    b.fill("#existing-username", "lea@beta.org").await;
    b.submit("[data-testid=add-existing] button.primary").await;
    assert!(b
        .text_of(".flash.error")
        .await
        .contains("has no user “lea@beta.org”"));
    let kept = b
        .client
        .execute(
            "return document.querySelector('#existing-site').value",
            vec![],
        )
        .await
        .expect("a value");
    assert_eq!(kept, json!("beta"));
    b.fill("#existing-username", "LEE@beta.org").await;
    b.submit("[data-testid=add-existing] button.primary").await;
    assert!(b.text_of(".flash.ok").await.contains("Added"));
    assert!(b.exists("tr[data-username='lee@beta.org']").await);

    // A user's own page: details, role, flags, levels.
    let plan = Uuid::new_v4();
    h.must(
        &acme.admin_token,
        "CreateScorecard",
        json!({"site_id": acme.id, "scorecard_id": plan, "name": "Strategic Plan"}),
    )
    .await;
    b.go("/users").await;
    b.submit("tr[data-username='zed@acme.org'] a").await;
    assert!(b.text().await.contains("User zed@acme.org"));
    b.fill("#edit-name", "Aaron Zedd").await;
    b.submit("form[action='/act/ChangeUserDetails'] button")
        .await;
    assert!(b.text_of(".flash.ok").await.contains("Details saved"));
    assert!(b.text_of("dl.facts").await.contains("Aaron Zedd"));
    b.client
        .execute(
            &format!("document.getElementById('level-{plan}').value = 'editor'"),
            vec![],
        )
        .await
        .expect("a level chosen");
    b.submit(&format!(
        "[data-testid=grantable] input[value='{plan}'] ~ button"
    ))
    .await;
    assert!(b
        .text_of(".flash.ok")
        .await
        .contains("Granted Strategic Plan"));
    let levels = b.text_of("[data-testid=levels]").await;
    assert!(
        levels.contains("Strategic Plan") && levels.contains("editor"),
        "{levels}"
    );
    b.submit("[data-testid=organisation-settings] button").await;
    assert!(b
        .text_of("[data-testid=organisation-settings]")
        .await
        .contains("hidden"));
    b.shot("user").await;
    b.submit("[data-testid=levels] form[action='/act/RevokeScorecardAccess'] button")
        .await;
    assert!(b
        .text_of("[data-testid=levels]")
        .await
        .contains("None assigned"));

    // The access explorer asks about a user by username.
    b.go("/access").await;
    b.fill("#pick-user", "ZED@acme.org").await;
    b.submit("form[action='/access'] button").await;
    assert!(b.text().await.contains("What zed@acme.org can see"));
    b.fill("#pick-user", "nobody@acme.org").await;
    b.submit("form[action='/access'] button").await;
    assert!(b
        .text_of(".flash.error")
        .await
        .contains("No user nobody@acme.org"));
    h.shutdown().await;
}

#[tokio::test]
async fn r_conn_1_a_person_without_rights_sees_no_forbidden_control_and_a_forged_form_is_refused() {
    let h = Harness::start().await;
    let Some(b) = Browser::start(&h.url).await else {
        return;
    };
    let w = h.world().await;

    // A service token names no person, and a made-up one is no token.
    b.sign_in(&h.service_token(w.b.id).await).await;
    assert!(b.text_of(".flash.error").await.contains("service token"));
    b.sign_in("sl_000000000000000000000000000000000000000000000000")
        .await;
    assert!(b.text_of(".flash.error").await.contains("not valid"));

    // A presenter sees their own access, and no form that changes anything.
    b.sign_in(&w.plain_token).await;
    assert!(b.text().await.contains("What plain@beta.org can see"));
    assert!(!b.exists("form[action^='/act/']").await);
    for page in ["/partners", "/users", "/scorecards", "/settings"] {
        b.go(page).await;
        assert!(
            b.text().await.contains("Instance Admins and user managers"),
            "{page}"
        );
        assert!(!b.exists("form[action^='/act/']").await, "{page}");
        assert!(!b.exists("form[action^='/settings/']").await, "{page}");
    }
    b.go("/access").await;
    b.shot("no-rights").await;

    // A form forged in the page, with the session's own CSRF token, is
    // refused by the command's rule (R-CONN-1); one without it by the
    // console. Neither writes anything.
    let before = h.snapshot().await;
    let forge = |csrf: &'static str| {
        format!(
            "const f = document.createElement('form'); f.method = 'post'; f.action = '/act/RequestConnection';
             const csrf = {csrf};
             for (const [k, v] of Object.entries({{csrf, key: crypto.randomUUID(), back: '/access',
                 site_id: '{site}', partner_code: 'ALPHA', directions: 'both'}})) {{
               const i = document.createElement('input'); i.type = 'hidden'; i.name = k; i.value = v; f.appendChild(i);
             }}
             document.body.appendChild(f); document.body.dataset.left = 'yes'; f.submit();",
            site = w.b.id
        )
    };
    b.client
        .execute(
            &forge("document.querySelector('input[name=csrf]').value"),
            vec![],
        )
        .await
        .expect("the forged form is sent");
    b.wait_for_new_page().await;
    let refusal = b.text_of(".flash.error").await;
    assert!(
        refusal.contains("RequestConnection was refused") && refusal.contains("instance_admin"),
        "{refusal}"
    );
    b.client
        .execute(&forge("'not-the-session-token'"), vec![])
        .await
        .expect("the forged form is sent");
    b.wait_for_new_page().await;
    assert!(b
        .text_of("[data-testid=refusal]")
        .await
        .contains("not from your session"));
    assert_eq!(h.snapshot().await, before, "refused forms write nothing");

    // A deactivated user's session ends with the user (R-USER-6).
    h.must(
        &w.b.admin_token,
        "DeactivateUser",
        json!({"site_id": w.b.id, "user_id": w.plain}),
    )
    .await;
    b.go("/access").await;
    assert!(b.text_of(".flash.error").await.contains("deactivated"));
    assert!(b.exists("#token").await, "back at the sign-in page");
    h.shutdown().await;
}

/// Signs in without a browser and returns the session cookie.
async fn session_cookie(h: &Harness, token: &str) -> String {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let answer = client
        .post(format!("{}/sign-in", h.url))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(format!("token={token}&next=%2F"))
        .send()
        .await
        .expect("signed in");
    answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .find(|v| v.starts_with("sl_session="))
        .and_then(|v| v.split(';').next())
        .expect("a session cookie")
        .to_owned()
}

async fn page(h: &Harness, cookie: &str, path: &str) -> String {
    let answer = h
        .client
        .get(format!("{}{path}", h.url))
        .header("cookie", cookie)
        .send()
        .await
        .expect("a page");
    assert!(answer.status().is_success(), "{path}: {}", answer.status());
    answer.text().await.expect("its text")
}

#[tokio::test]
async fn r_conn_partner_connect_pages_its_connections_two_hundred_at_a_time() {
    // Given 201 partners whose requests await HUB, when HUB's admin opens
    // Partner Connect, then 200 links show with a link to the rest, and
    // the next page holds the last one.
    let h = Harness::start().await;
    let hub = h.site("HUB").await;
    for p in 0..201 {
        let partner = h.site(&format!("P{p}")).await;
        h.must(
            &partner.admin_token,
            "RequestConnection",
            json!({"site_id": partner.id, "partner_code": "HUB", "directions": "offer"}),
        )
        .await;
    }
    let cookie = session_cookie(&h, &hub.admin_token).await;
    let first = page(&h, &cookie, "/partners").await;
    assert_eq!(first.matches("<tr data-partner=").count(), 200);
    let next = first
        .split("href=\"")
        .find(|s| s.starts_with("/partners?after="))
        .and_then(|s| s.split('"').next())
        .expect("a link to more connections")
        .replace("&amp;", "&");
    let second = page(&h, &cookie, &next).await;
    assert_eq!(second.matches("<tr data-partner=").count(), 1);
    assert!(second.contains("First connections"));
    h.shutdown().await;
}

/// The id of the token with this secret.
async fn token_id(h: &Harness, secret: &str) -> Uuid {
    sqlx::query_scalar("SELECT token_id FROM sl_api_tokens WHERE secret_hash = sha256($1::bytea)")
        .bind(secret.as_bytes())
        .fetch_one(h.db.pool())
        .await
        .expect("the token's row")
}

#[tokio::test]
async fn a_console_session_is_a_token_made_from_the_one_signed_in_with_and_ends_with_it() {
    let h = Harness::start().await;
    let w = h.world().await;

    // Given the partner user signed in, their session is a token of its
    // own, named after theirs.
    let cookie = session_cookie(&h, &w.partner_token).await;
    assert!(page(&h, &cookie, "/access")
        .await
        .contains("What partner@beta.org can see"));
    let session = token_id(&h, cookie.trim_start_matches("sl_session=")).await;
    let (name, parent): (String, Option<Uuid>) =
        sqlx::query_as("SELECT name, parent_token_id FROM sl_api_tokens WHERE token_id = $1")
            .bind(session)
            .fetch_one(h.db.pool())
            .await
            .expect("the session's row");
    assert_eq!(name, "tests-user (console)");
    assert_eq!(parent, Some(token_id(&h, &w.partner_token).await));

    // When the token they signed in with is revoked, then the session ends
    // at once, and the sign-in page says so in its own words.
    let revoked = h
        .request(
            reqwest::Method::DELETE,
            &format!("/v1/tokens/{}", parent.expect("a parent")),
            &[("authorization", format!("Bearer {}", h.operator))],
        )
        .await;
    assert!(revoked.status < 300, "{revoked:?}");
    let answer = h
        .client
        .get(format!("{}/access", h.url))
        .header("cookie", &cookie)
        .send()
        .await
        .expect("an answer");
    assert!(
        answer
            .url()
            .as_str()
            .contains("/sign-in?next=%2Faccess&reason=ended"),
        "{}",
        answer.url()
    );
    assert!(answer
        .text()
        .await
        .expect("a page")
        .contains("Your session has ended"));

    // The sign-in page shows only its own messages, never the address's.
    let lure = h
        .client
        .get(format!(
            "{}/sign-in?reason=Paste%20your%20token%20at%20evil.example",
            h.url
        ))
        .send()
        .await
        .expect("an answer")
        .text()
        .await
        .expect("a page");
    assert!(!lure.contains("evil.example"));

    // An operator manages a site's users from the console, not its
    // connections (R-CONN-1: a user with Instance Admin does).
    let operator = session_cookie(&h, &h.operator).await;
    let partners = page(&h, &operator, &format!("/partners?site={}", w.a.id)).await;
    assert!(
        !partners.contains("/act/"),
        "no connection control for an operator"
    );
    let users = page(&h, &operator, &format!("/users?site={}", w.a.id)).await;
    assert!(users.contains("/act/AddUser"));
    h.shutdown().await;
}

/// The CSRF token in a console page.
fn csrf_of(page: &str) -> String {
    let at = page.find("name=\"csrf\" value=\"").expect("a form") + 19;
    page[at..at + page[at..].find('"').expect("its end")].to_owned()
}

/// Posts a console form; returns the status and the cookies it sets.
async fn post_form(
    h: &Harness,
    cookie: &str,
    path: &str,
    fields: &[(&str, &str)],
) -> (u16, String) {
    let client = reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .build()
        .expect("a client");
    let body = url::form_urlencoded::Serializer::new(String::new())
        .extend_pairs(fields)
        .finish();
    let answer = client
        .post(format!("{}{path}", h.url))
        .header("cookie", cookie)
        .header("content-type", "application/x-www-form-urlencoded")
        .body(body)
        .send()
        .await
        .expect("an answer");
    let set: Vec<String> = answer
        .headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .map(str::to_owned)
        .collect();
    (answer.status().as_u16(), set.join("; "))
}

#[tokio::test]
async fn r_user_1_a_refused_form_keeps_what_it_held_and_changes_nothing() {
    let h = Harness::start().await;
    let acme = h.site("ACME").await;
    let cookie = session_cookie(&h, &acme.admin_token).await;
    let users = page(&h, &cookie, "/users").await;
    let csrf = csrf_of(&users);
    let before = h.snapshot().await;
    // Given a username already taken, when the admin adds it, then it is
    // refused, nothing is written, and the form shows what was typed.
    let key = Uuid::new_v4().to_string();
    let site = acme.id.to_string();
    let (status, flash) = post_form(
        &h,
        &cookie,
        "/act/AddUser",
        &[
            ("csrf", &csrf),
            ("key", &key),
            ("back", "/users"),
            ("site_id", &site),
            ("username", "ADMIN@acme.org"),
            ("name", "Second Admin"),
            ("role", "data_entry"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    assert_eq!(h.snapshot().await, before, "a refusal writes nothing");
    let again = page(&h, &format!("{cookie}; {flash}"), "/users").await;
    assert!(again.contains("AddUser was refused"), "{again}");
    assert!(again.contains(r#"value="ADMIN@acme.org""#), "{again}");
    assert!(again.contains(r#"value="Second Admin""#), "{again}");
    assert!(
        again.contains(r#"<option value="data_entry" selected>"#),
        "{again}"
    );
    // The form is kept for the refused command only, once.
    let later = page(&h, &cookie, "/users").await;
    assert!(!later.contains("Second Admin"));
    h.shutdown().await;
}

#[tokio::test]
async fn seed_002_a_batch_of_requests_says_each_partners_outcome() {
    let h = Harness::start().await;
    let group = h.site("GROUP").await;
    let _clinic = h.site("CLINIC").await;
    let cookie = session_cookie(&h, &group.admin_token).await;
    let csrf = csrf_of(&page(&h, &cookie, "/partners").await);
    // The review names the ticked sites before anything is asked.
    let review = page(
        &h,
        &cookie,
        "/partners/request?code=CLINIC&code=NOPE&directions=offer",
    )
    .await;
    assert!(
        review.contains("CLINIC site") && review.contains("offering your scorecards only"),
        "{review}"
    );
    let key = Uuid::new_v4().to_string();
    let site = group.id.to_string();
    let (status, flash) = post_form(
        &h,
        &cookie,
        "/partners/request",
        &[
            ("csrf", &csrf),
            ("key", &key),
            ("back", "/partners"),
            ("site_id", &site),
            ("directions", "offer"),
            ("code", "CLINIC"),
            ("code", "NOPE"),
        ],
    )
    .await;
    assert_eq!(status, 303);
    let after = page(&h, &format!("{cookie}; {flash}"), "/partners").await;
    assert!(after.contains("1 of 2 request(s) were refused"), "{after}");
    assert!(
        after.contains("requested: it awaits their approval"),
        "{after}"
    );
    assert!(after.contains("refused: "), "{after}");
    assert!(
        after.contains(r#"data-partner="CLINIC""#),
        "CLINIC's request is listed: {after}"
    );
    // Without the session's CSRF token, nothing is asked.
    let before = h.snapshot().await;
    let (status, _) = post_form(
        &h,
        &cookie,
        "/partners/request",
        &[
            ("site_id", &site),
            ("directions", "both"),
            ("code", "CLINIC"),
        ],
    )
    .await;
    assert_eq!(status, 403);
    assert_eq!(h.snapshot().await, before);
    h.shutdown().await;
}

#[tokio::test]
async fn addresses_the_console_does_not_have_answer_pages_and_the_api_problems() {
    let h = Harness::start().await;
    let acme = h.site("ACME").await;
    let html = [("accept", "text/html,application/xhtml+xml".to_owned())];
    let missing = h.get_with("/no-such-page", &html).await;
    assert_eq!(missing.status, 404);
    assert!(
        missing.content_type.starts_with("text/html"),
        "{}",
        missing.content_type
    );
    assert!(missing.text.contains("There is no such page"));
    let api = h.get_with("/v1/no-such-route", &html).await;
    assert_eq!(api.status, 404);
    assert_eq!(api.content_type, "application/problem+json");
    let nul = h.get_with("/users?search=%00", &html).await;
    assert_eq!(nul.status, 400);
    assert!(nul.content_type.starts_with("text/html"));
    assert!(nul.text.contains("NUL character"));
    let plain = h.get_with("/no-such-page", &[]).await;
    assert_eq!(plain.content_type, "application/problem+json");
    // A registration link that is not a group's current one.
    let link = h
        .get_with(&format!("/register?key=slr_{}", "0".repeat(48)), &html)
        .await;
    assert_eq!(link.status, 404);
    assert!(link.text.contains("This registration link is not valid"));
    // A command address that is not text.
    let cookie = session_cookie(&h, &acme.admin_token).await;
    let csrf = csrf_of(&page(&h, &cookie, "/users").await);
    let (status, _) = post_form(&h, &cookie, "/act/%FF", &[("csrf", &csrf)]).await;
    assert_eq!(status, 404);
    h.shutdown().await;
}

#[tokio::test]
async fn live_pages_in_many_tabs_share_one_stream_and_leave_the_browser_connections() {
    let h = Harness::start().await;
    let Some(b) = Browser::start(&h.url).await else {
        return;
    };
    let w = h.world().await;
    b.sign_in(&w.b.admin_token).await;
    // A page that cannot load is a failure within seconds, not a hang.
    b.client
        .update_timeouts(fantoccini::wd::TimeoutConfiguration::new(
            None,
            Some(std::time::Duration::from_secs(15)),
            None,
        ))
        .await
        .expect("timeouts set");
    // Given eight tabs open on live pages (a browser keeps six connections
    // to one host over HTTP/1.1: a stream per tab would take them all)...
    let first = b.client.window().await.expect("a window");
    b.go("/partners").await;
    for _ in 0..7 {
        let tab = b.client.new_window(true).await.expect("a tab");
        b.client
            .switch_to_window(tab.handle)
            .await
            .expect("switched");
        b.go("/partners").await;
    }
    // ...when another site asks for a connection, then the last tab and
    // the first both show it on their own, and a form still works.
    let gamma = h.site("GAMMA").await;
    h.must(
        &gamma.admin_token,
        "RequestConnection",
        json!({"site_id": gamma.id, "partner_code": "BETA", "directions": "both"}),
    )
    .await;
    b.until("the request appears in the last tab", |b| async move {
        b.exists("[data-testid=pending-GAMMA]").await
    })
    .await;
    b.submit("[data-testid=pending-GAMMA] form[action='/act/ApproveConnection'] button")
        .await;
    assert!(b.text_of(".flash.ok").await.contains("Approved"));
    b.client.switch_to_window(first).await.expect("switched");
    b.until("the approval reaches the first tab", |b| async move {
        b.text().await.contains("GAMMA") && !b.exists("[data-testid=pending-GAMMA]").await
    })
    .await;
    h.shutdown().await;
}

/// The `href` of the link marked `rel="<rel>"` in a page.
fn link_of(page: &str, rel: &str) -> Option<String> {
    let at = page.find(&format!(r#"rel="{rel}""#))?;
    let start = page[..at].rfind("href=\"")? + 6;
    let end = start + page[start..].find('"')?;
    Some(page[start..end].replace("&amp;", "&"))
}

#[tokio::test]
async fn q5_the_users_page_goes_forward_and_back_one_page_at_a_time() {
    let h = Harness::start().await;
    let acme = h.site("ACME").await;
    let mut csv = String::from("username,name,role\n");
    for i in 0..119 {
        csv.push_str(&format!("user{i:03}@acme.org,User {i:03},presenter\n"));
    }
    let site = acme.id;
    h.must(
        &acme.admin_token,
        "SetSeatLimit",
        json!({"site_id": site, "seat_limit": 500}),
    )
    .await;
    h.must(
        &acme.admin_token,
        "ImportUsers",
        json!({"site_id": site, "csv": csv}),
    )
    .await;
    let cookie = session_cookie(&h, &acme.admin_token).await;
    let rows = |page: &str| -> Vec<String> {
        page.split("data-username=\"")
            .skip(1)
            .map(|rest| rest[..rest.find('"').unwrap()].to_owned())
            .collect()
    };
    // 120 users, 50 a page: three pages forwards...
    let first = page(&h, &cookie, "/users").await;
    assert!(
        link_of(&first, "prev").is_none(),
        "the first page has none before it"
    );
    let second = page(&h, &cookie, &link_of(&first, "next").expect("a next page")).await;
    let third = page(
        &h,
        &cookie,
        &link_of(&second, "next").expect("a third page"),
    )
    .await;
    assert!(link_of(&third, "next").is_none());
    assert_eq!(rows(&first).len(), 50);
    assert_eq!(rows(&third).len(), 20);
    // ...and back, one page at a time, to the very same rows.
    let back_second = page(
        &h,
        &cookie,
        &link_of(&third, "prev").expect("a previous page"),
    )
    .await;
    assert_eq!(rows(&back_second), rows(&second));
    let back_first = page(
        &h,
        &cookie,
        &link_of(&back_second, "prev").expect("a previous page"),
    )
    .await;
    assert_eq!(rows(&back_first), rows(&first));
    assert!(link_of(&back_first, "prev").is_none());
    h.shutdown().await;
}
