//! Shared setup of the command service's tests: two partner sites with
//! admins, an active link A→B, a scorecard of A with an Indicator on it.

#![allow(dead_code)]

use shareledger_commands::{CommandError, Issued, Service};
use shareledger_core::catalog::{
    Directions, Link, Name, ObjectId, ObjectKind, Role, ScorecardId, SeatLimit, SiteCode, SiteId,
    UserId, Username,
};
use shareledger_core::content::{
    CreateObject, CreateScorecard, LinkSharedObject, PlaceObjectOnScorecard,
};
use shareledger_core::site::{AddUser, RegisterSite};
use shareledger_core::DomainError;
use shareledger_events::Actor;
use shareledger_tests::TestDb;
use uuid::Uuid;

pub fn operator() -> Issued {
    Issued {
        actor: Actor::Operator {
            name: "tests".into(),
        },
        key: Uuid::new_v4(),
    }
}

pub fn by(site: SiteId, user: UserId) -> Issued {
    Issued {
        actor: Actor::User {
            user_id: user.0,
            site_id: site.0,
        },
        key: Uuid::new_v4(),
    }
}

pub struct Partners {
    pub service: Service,
    pub a: SiteId,
    pub b: SiteId,
    pub admin_a: UserId,
    pub admin_b: UserId,
    pub viewer_b: UserId,
    pub scorecard: ScorecardId,
    pub object: ObjectId,
    pub b_scorecard: ScorecardId,
}

impl Partners {
    pub fn link(&self) -> Link {
        Link {
            from: self.a,
            to: self.b,
        }
    }
}

pub async fn site(service: &Service, code: &str) -> (SiteId, UserId) {
    let site_id = SiteId::new();
    service
        .execute(
            &operator(),
            RegisterSite {
                site_id,
                code: SiteCode::parse(code).unwrap(),
                name: Name::parse(code).unwrap(),
                seat_limit: SeatLimit::new(10).unwrap(),
                parent: None,
            },
        )
        .await
        .unwrap();
    let admin = UserId::new();
    service
        .execute(
            &operator(),
            AddUser {
                site_id,
                user_id: admin,
                username: Username::parse(&format!("admin@{code}.org")).unwrap(),
                name: Name::parse("Admin").unwrap(),
                role: Role::Administration,
                email: None,
            },
        )
        .await
        .unwrap();
    (site_id, admin)
}

/// A grant maker A sharing a scorecard with an Indicator on it with B, over
/// an active link A→B; B has a scorecard of its own and a Presenter.
pub async fn partners(db: &TestDb) -> Partners {
    let service = Service::new(db.store());
    let (a, admin_a) = site(&service, "GRANTS").await;
    let (b, admin_b) = site(&service, "FUNDED").await;
    let viewer_b = UserId::new();
    service
        .execute(
            &operator(),
            AddUser {
                site_id: b,
                user_id: viewer_b,
                username: Username::parse("viewer@funded.org").unwrap(),
                name: Name::parse("Viewer").unwrap(),
                role: Role::Presenter,
                email: None,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &by(a, admin_a),
            shareledger_core::connection::RequestConnection {
                site_id: a,
                partner_code: SiteCode::parse("FUNDED").unwrap(),
                directions: Directions::Offer,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &by(b, admin_b),
            shareledger_core::connection::ApproveConnection {
                site_id: b,
                partner: a,
            },
        )
        .await
        .unwrap();
    let scorecard = ScorecardId::new();
    let object = ObjectId::new();
    let b_scorecard = ScorecardId::new();
    service
        .execute(
            &by(a, admin_a),
            CreateScorecard {
                site_id: a,
                scorecard_id: scorecard,
                name: Name::parse("Shared measures").unwrap(),
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &by(a, admin_a),
            CreateObject {
                site_id: a,
                object_id: object,
                kind: ObjectKind::Indicator,
                name: Name::parse("Literacy rate").unwrap(),
                container: None,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &by(a, admin_a),
            PlaceObjectOnScorecard {
                site_id: a,
                object_id: object,
                scorecard_id: scorecard,
            },
        )
        .await
        .unwrap();
    service
        .execute(
            &by(b, admin_b),
            CreateScorecard {
                site_id: b,
                scorecard_id: b_scorecard,
                name: Name::parse("Our results").unwrap(),
            },
        )
        .await
        .unwrap();
    Partners {
        service,
        a,
        b,
        admin_a,
        admin_b,
        viewer_b,
        scorecard,
        object,
        b_scorecard,
    }
}

pub async fn share_and_link(p: &Partners) -> shareledger_core::catalog::RelationshipId {
    p.service
        .execute(
            &by(p.a, p.admin_a),
            shareledger_core::connection::ShareScorecard {
                site_id: p.link().from,
                partner: p.link().to,
                scorecard_id: p.scorecard,
            },
        )
        .await
        .unwrap();
    let relationship_id = shareledger_core::catalog::RelationshipId::new();
    p.service
        .execute(
            &by(p.b, p.admin_b),
            LinkSharedObject {
                site_id: p.b,
                relationship_id,
                scorecard_id: p.b_scorecard,
                origin_site: p.a,
                object_id: p.object,
            },
        )
        .await
        .unwrap();
    relationship_id
}

pub fn domain(result: Result<shareledger_commands::Outcome, CommandError>) -> DomainError {
    match result {
        Err(CommandError::Domain(e)) => e,
        other => panic!("expected a domain error, got {other:?}"),
    }
}

pub fn code(raw: &str) -> SiteCode {
    SiteCode::parse(raw).unwrap()
}

pub fn name(raw: &str) -> Name {
    Name::parse(raw).unwrap()
}

pub fn username(raw: &str) -> Username {
    Username::parse(raw).unwrap()
}
