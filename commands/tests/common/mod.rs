//! Shared setup of the command service's tests: two partner sites with
//! admins, an active link A→B, a scorecard of A with an Indicator on it.

#![allow(dead_code)]

use shareledger_commands::{
    CommandError, ConnectionCommand, ContentCommand, Issued, RelateCommand, Service, ShareChange,
};
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
        .register_site(
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
        .on_site(
            &operator(),
            site_id,
            AddUser {
                user_id: admin,
                username: Username::parse(&format!("admin@{code}.org")).unwrap(),
                name: Name::parse("Admin").unwrap(),
                role: Role::Administration,
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
        .on_site(
            &operator(),
            b,
            AddUser {
                user_id: viewer_b,
                username: Username::parse("viewer@funded.org").unwrap(),
                name: Name::parse("Viewer").unwrap(),
                role: Role::Presenter,
            },
        )
        .await
        .unwrap();
    service
        .request_connection(
            &by(a, admin_a),
            a,
            SiteCode::parse("FUNDED").unwrap(),
            Directions::Offer,
        )
        .await
        .unwrap();
    service
        .on_connection(&by(b, admin_b), b, a, ConnectionCommand::Approve)
        .await
        .unwrap();
    let scorecard = ScorecardId::new();
    let object = ObjectId::new();
    let b_scorecard = ScorecardId::new();
    for (site_id, admin, command) in [
        (
            a,
            admin_a,
            ContentCommand::CreateScorecard(CreateScorecard {
                scorecard_id: scorecard,
                name: Name::parse("Shared measures").unwrap(),
            }),
        ),
        (
            a,
            admin_a,
            ContentCommand::CreateObject(CreateObject {
                object_id: object,
                kind: ObjectKind::Indicator,
                name: Name::parse("Literacy rate").unwrap(),
                container: None,
            }),
        ),
        (
            a,
            admin_a,
            ContentCommand::PlaceObjectOnScorecard(PlaceObjectOnScorecard {
                object_id: object,
                scorecard_id: scorecard,
            }),
        ),
        (
            b,
            admin_b,
            ContentCommand::CreateScorecard(CreateScorecard {
                scorecard_id: b_scorecard,
                name: Name::parse("Our results").unwrap(),
            }),
        ),
    ] {
        service
            .on_content(&by(site_id, admin), site_id, command)
            .await
            .unwrap();
    }
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
        .change_sharing(
            &by(p.a, p.admin_a),
            p.link(),
            ShareChange::Share(p.scorecard),
        )
        .await
        .unwrap();
    let relationship_id = shareledger_core::catalog::RelationshipId::new();
    p.service
        .relate(
            &by(p.b, p.admin_b),
            p.b,
            RelateCommand::Link(LinkSharedObject {
                relationship_id,
                scorecard_id: p.b_scorecard,
                origin_site: p.a,
                object_id: p.object,
            }),
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
