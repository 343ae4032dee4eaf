//! `shareledger demo`: the seeds' story, loaded through the command service
//! so that every query has something to answer at once.
//!
//! * **FUND**, a community foundation (grant maker), connects with two
//!   funded partners, **HOPE** and **NEST**, shares a scorecard with each,
//!   and HOPE shares its program results back (Clear Impact Partner
//!   Connect).
//! * FUND's users have per-scorecard access, ClearPoint style: a board
//!   member browses one scorecard, a data clerk updates another.
//! * **CLINIC**, a consortium member, offers its data to FUND (a one-way
//!   "offer"), FUND approves, and FUND's board member is granted Browser on
//!   the shared scorecard.
//! * **ACME** has asked FUND to connect; FUND has not answered yet.
//!
//! Ids and idempotency keys are derived from names, so running the demo
//! twice changes nothing the second time (it only issues fresh tokens).

use anyhow::Context;
use serde_json::json;
use shareledger_commands::{Issued, Outcome, Service};
use shareledger_core::catalog::{
    AccessLevel, Directions, Name, ObjectId, ObjectKind, Role, ScorecardId, SeatLimit, SiteCode,
    SiteId, UserId, Username,
};
use shareledger_core::connection::{ApproveConnection, RequestConnection, ShareScorecard};
use shareledger_core::{content, site, Decision};
use shareledger_events::store::PgEventStore;
use shareledger_events::Actor;
use shareledger_gateway::auth::{self, TokenKind, TokenRequest};
use sqlx::PgPool;
use uuid::Uuid;

const NAMESPACE: Uuid = Uuid::from_u128(0x3b9e_2f61_8c4d_4a70_b1e5_6d2c_9f08_a417);

fn id(name: &str) -> Uuid {
    Uuid::new_v5(&NAMESPACE, name.as_bytes())
}

struct Story {
    service: Service,
    last: u64,
}

impl Story {
    fn issued(&self, actor: Actor, step: &str) -> Issued {
        Issued {
            actor,
            key: id(&format!("key:{step}")),
        }
    }

    fn record(
        &mut self,
        step: &str,
        result: Result<Outcome, shareledger_commands::CommandError>,
    ) -> anyhow::Result<()> {
        let outcome = result.with_context(|| format!("demo step {step:?}"))?;
        self.last = self.last.max(outcome.last_position);
        Ok(())
    }

    /// Runs `command` as `actor`, keyed by `step`, and records it.
    async fn run(
        &mut self,
        actor: Actor,
        step: &str,
        command: impl Decision,
    ) -> anyhow::Result<()> {
        let issued = self.issued(actor, step);
        let result = self.service.execute(&issued, command).await;
        self.record(step, result)
    }
}

fn operator() -> Actor {
    Actor::Operator {
        name: "demo".into(),
    }
}

fn user(site: SiteId, user: UserId) -> Actor {
    Actor::User {
        user_id: user.0,
        site_id: site.0,
    }
}

fn site_id(code: &str) -> SiteId {
    SiteId(id(&format!("site:{code}")))
}

fn user_id(code: &str, username: &str) -> UserId {
    UserId(id(&format!("user:{code}:{username}")))
}

fn scorecard_id(code: &str, name: &str) -> ScorecardId {
    ScorecardId(id(&format!("scorecard:{code}:{name}")))
}

fn object_id(code: &str, name: &str) -> ObjectId {
    ObjectId(id(&format!("object:{code}:{name}")))
}

/// Loads the story and prints tokens and curl examples.
pub async fn run(pool: &PgPool, json_output: bool) -> anyhow::Result<()> {
    let mut story = Story {
        service: Service::new(PgEventStore::new(pool.clone())),
        last: 0,
    };
    let sites = [
        ("FUND", "Riverside Community Foundation", 25),
        ("HOPE", "Hope Youth Services", 10),
        ("NEST", "Nest Family Housing", 10),
        ("CLINIC", "Tri-County Health Consortium: Clinic", 10),
        ("ACME", "Acme Neighbourhood Trust", 5),
    ];
    for (code, name, seats) in sites {
        let step = format!("register {code}");
        let issued = story.issued(operator(), &step);
        let result = story
            .service
            .execute(
                &issued,
                site::RegisterSite {
                    site_id: site_id(code),
                    code: SiteCode::parse(code)?,
                    name: Name::parse(name)?,
                    seat_limit: SeatLimit::new(seats)?,
                    parent: None,
                },
            )
            .await;
        story.record(&step, result)?;
        let admin = format!("admin@{}.example", code.to_ascii_lowercase());
        let step = format!("admin {code}");
        let issued = story.issued(operator(), &step);
        let result = story
            .service
            .execute(
                &issued,
                site::AddUser {
                    site_id: site_id(code),
                    user_id: user_id(code, &admin),
                    username: Username::parse(&admin)?,
                    name: Name::parse(&format!("{code} administrator"))?,
                    role: Role::Administration,
                    email: None,
                },
            )
            .await;
        story.record(&step, result)?;
    }
    let admin = |code: &str| {
        user(
            site_id(code),
            user_id(
                code,
                &format!("admin@{}.example", code.to_ascii_lowercase()),
            ),
        )
    };

    // FUND's per-scorecard users (ClearPoint style).
    let people = [
        ("board@fund.example", "Dana Board", Role::Presenter),
        ("clerk@fund.example", "Sam Clerk", Role::DataEntry),
    ];
    for (username, name, role) in people {
        let step = format!("FUND user {username}");
        let issued = story.issued(admin("FUND"), &step);
        let result = story
            .service
            .execute(
                &issued,
                site::AddUser {
                    site_id: site_id("FUND"),
                    user_id: user_id("FUND", username),
                    username: Username::parse(username)?,
                    name: Name::parse(name)?,
                    role,
                    email: None,
                },
            )
            .await;
        story.record(&step, result)?;
    }

    // Content: scorecards with objects on them.
    let content = [
        (
            "FUND",
            "Youth Outcomes 2026",
            "Youth thrive",
            "% of youth graduating",
        ),
        (
            "FUND",
            "Housing Stability 2026",
            "Families are stably housed",
            "% of families housed 12 months",
        ),
        (
            "FUND",
            "Internal Budget",
            "Grants are well managed",
            "% of budget disbursed",
        ),
        (
            "HOPE",
            "Hope Program Results",
            "Mentoring works",
            "# of mentoring sessions",
        ),
        (
            "NEST",
            "Nest Housing Results",
            "Tenancies last",
            "# of tenancies sustained",
        ),
        (
            "CLINIC",
            "Clinic Access Measures",
            "Care is accessible",
            "% of patients seen within 7 days",
        ),
    ];
    for (code, scorecard, result_name, indicator) in content {
        let owner = site_id(code);
        let sc = scorecard_id(code, scorecard);
        let result_id = object_id(code, result_name);
        let indicator_id = object_id(code, indicator);
        let create_scorecard = content::CreateScorecard {
            site_id: owner,
            scorecard_id: sc,
            name: Name::parse(scorecard)?,
        };
        let create_result = content::CreateObject {
            site_id: owner,
            object_id: result_id,
            kind: ObjectKind::Result,
            name: Name::parse(result_name)?,
            container: None,
        };
        let create_indicator = content::CreateObject {
            site_id: owner,
            object_id: indicator_id,
            kind: ObjectKind::Indicator,
            name: Name::parse(indicator)?,
            container: Some(result_id),
        };
        let place_result = content::PlaceObjectOnScorecard {
            site_id: owner,
            object_id: result_id,
            scorecard_id: sc,
        };
        let step = format!("{code} scorecard {scorecard}");
        story.run(admin(code), &step, create_scorecard).await?;
        let step = format!("{code} result {result_name}");
        story.run(admin(code), &step, create_result).await?;
        let step = format!("{code} indicator {indicator}");
        story.run(admin(code), &step, create_indicator).await?;
        let step = format!("{code} place {result_name}");
        story.run(admin(code), &step, place_result).await?;
    }

    // Connections: FUND asks HOPE and NEST (both directions); CLINIC offers
    // its data to FUND; ACME's request waits for FUND.
    let requests = [
        ("FUND", "HOPE", Directions::Both),
        ("FUND", "NEST", Directions::Both),
        ("CLINIC", "FUND", Directions::Offer),
        ("ACME", "FUND", Directions::Both),
    ];
    for (from, to, directions) in requests {
        let step = format!("{from} requests {to}");
        let issued = story.issued(admin(from), &step);
        let result = story
            .service
            .execute(
                &issued,
                RequestConnection {
                    site_id: site_id(from),
                    partner_code: SiteCode::parse(to)?,
                    directions,
                },
            )
            .await;
        story.record(&step, result)?;
    }
    for (approver, requester) in [("HOPE", "FUND"), ("NEST", "FUND"), ("FUND", "CLINIC")] {
        let step = format!("{approver} approves {requester}");
        let issued = story.issued(admin(approver), &step);
        let result = story
            .service
            .execute(
                &issued,
                ApproveConnection {
                    site_id: site_id(approver),
                    partner: site_id(requester),
                },
            )
            .await;
        story.record(&step, result)?;
    }

    // Shares.
    let shares = [
        ("FUND", "HOPE", "Youth Outcomes 2026"),
        ("FUND", "NEST", "Housing Stability 2026"),
        ("HOPE", "FUND", "Hope Program Results"),
        ("CLINIC", "FUND", "Clinic Access Measures"),
    ];
    for (from, to, scorecard) in shares {
        let step = format!("{from} shares {scorecard} with {to}");
        let issued = story.issued(admin(from), &step);
        let result = story
            .service
            .execute(
                &issued,
                ShareScorecard {
                    site_id: site_id(from),
                    partner: site_id(to),
                    scorecard_id: scorecard_id(from, scorecard),
                },
            )
            .await;
        story.record(&step, result)?;
    }

    // Per-scorecard grants.
    let grants = [
        (
            "board@fund.example",
            "FUND",
            "Youth Outcomes 2026",
            AccessLevel::Browser,
        ),
        (
            "board@fund.example",
            "CLINIC",
            "Clinic Access Measures",
            AccessLevel::Browser,
        ),
        (
            "clerk@fund.example",
            "FUND",
            "Housing Stability 2026",
            AccessLevel::Updater,
        ),
    ];
    for (username, owner, scorecard, level) in grants {
        let step = format!("grant {username} {owner} {scorecard}");
        let issued = story.issued(admin("FUND"), &step);
        let result = story
            .service
            .execute(
                &issued,
                site::GrantScorecardAccess {
                    site_id: site_id("FUND"),
                    user_id: user_id("FUND", username),
                    scorecard_id: scorecard_id(owner, scorecard),
                    level,
                    owner_site: Some(site_id(owner)),
                },
            )
            .await;
        story.record(&step, result)?;
    }

    // Tokens, one per kind of caller.
    let lifetime = std::time::Duration::from_secs(30 * 86_400);
    let mut tokens = Vec::new();
    let wanted = [
        ("operator", TokenKind::Operator, None, None),
        (
            "fund-admin",
            TokenKind::User,
            Some(site_id("FUND")),
            Some(user_id("FUND", "admin@fund.example")),
        ),
        (
            "fund-board",
            TokenKind::User,
            Some(site_id("FUND")),
            Some(user_id("FUND", "board@fund.example")),
        ),
        (
            "hope-admin",
            TokenKind::User,
            Some(site_id("HOPE")),
            Some(user_id("HOPE", "admin@hope.example")),
        ),
        (
            "fund-backend",
            TokenKind::Service,
            Some(site_id("FUND")),
            None,
        ),
        (
            "fund-auditor",
            TokenKind::Auditor,
            Some(site_id("FUND")),
            None,
        ),
    ];
    for (name, kind, site, user) in wanted {
        let issued = auth::issue(
            pool,
            TokenRequest {
                kind,
                site,
                user: user.map(|u: UserId| u),
                name: format!("demo {name}"),
                lifetime,
            },
        )
        .await?;
        tokens.push((name, issued));
    }

    let youth = scorecard_id("FUND", "Youth Outcomes 2026");
    let clinic_sc = scorecard_id("CLINIC", "Clinic Access Measures");
    if json_output {
        let out = json!({
            "position": story.last,
            "sites": sites.iter().map(|(code, _, _)| json!({"code": code, "site_id": site_id(code).0})).collect::<Vec<_>>(),
            "tokens": tokens.iter().map(|(name, t)| json!({"name": name, "token": t.token, "kind": t.record.kind})).collect::<Vec<_>>(),
        });
        println!("{out}");
        return Ok(());
    }
    println!("Demo story loaded (log position {}).", story.last);
    println!();
    println!("Sites:");
    for (code, name, _) in sites {
        println!("  {code:<7} {}  {name}", site_id(code).0);
    }
    println!();
    println!("Tokens (shown once; valid 30 days):");
    for (name, t) in &tokens {
        println!("  {name:<13} {}", t.token);
    }
    let token = |name: &str| {
        tokens
            .iter()
            .find(|(n, _)| *n == name)
            .map(|(_, t)| t.token.clone())
            .unwrap_or_default()
    };
    let base = "http://127.0.0.1:8080";
    println!();
    println!("With `shareledger serve` running, open the console at {base}/ in a browser and");
    println!(
        "sign in with a token above (fund-admin: Partner Connect and users; fund-auditor: audit)."
    );
    println!();
    println!("Or, over HTTP:");
    println!("  # a board member (UI): can I see the clinic's shared scorecard? what can I see?");
    println!(
        "  curl -H 'Authorization: Bearer {}' '{base}/v1/access/check?target_type=scorecard&target_id={}&action=view'",
        token("fund-board"),
        clinic_sc.0
    );
    println!(
        "  curl -H 'Authorization: Bearer {}' '{base}/v1/access/lookup'",
        token("fund-board")
    );
    println!("  # FUND's admin: who can see our Youth Outcomes scorecard, and our connections");
    println!(
        "  curl -H 'Authorization: Bearer {}' '{base}/v1/access/viewers?target_type=scorecard&target_id={}'",
        token("fund-admin"),
        youth.0
    );
    println!(
        "  curl -H 'Authorization: Bearer {}' '{base}/v1/sites/{}/connections'",
        token("fund-admin"),
        site_id("FUND").0
    );
    println!("  # FUND's backend, acting for its admin: approve ACME's pending request");
    println!(
        "  curl -X POST -H 'Authorization: Bearer {}' -H 'ShareLedger-Act-As: {}' -H 'Idempotency-Key: {}' -H 'Content-Type: application/json' -d '{{\"site_id\":\"{}\",\"partner\":\"{}\"}}' {base}/v1/commands/ApproveConnection",
        token("fund-backend"),
        user_id("FUND", "admin@fund.example").0,
        Uuid::new_v4(),
        site_id("FUND").0,
        site_id("ACME").0
    );
    println!("  # an auditor: the log's head");
    println!(
        "  curl -H 'Authorization: Bearer {}' {base}/v1/log/status",
        token("fund-auditor")
    );
    Ok(())
}
