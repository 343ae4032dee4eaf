//! The relay to NATS JetStream (issue 17), against the real NATS server
//! and real PostgreSQL: every event of the log reaches the stream once, in
//! log order, with no gap, carrying its id as `Nats-Msg-Id`; a relay that
//! died after JetStream acknowledged a batch but before saving its
//! checkpoint publishes nothing twice when it starts again; a reset
//! checkpoint (`relay --from`) republishes nothing JetStream holds.

#[path = "../../commands/tests/common/mod.rs"]
mod common;

use async_nats::jetstream;
use shareledger_commands::Service;
use shareledger_core::catalog::{Name, Role, SeatLimit, SiteCode, SiteId, UserId, Username};
use shareledger_core::site::{AddUser, RegisterSite};
use shareledger_events::store::PositionFrom;
use shareledger_events::Direction;
use shareledger_projections::relay::{Relay, RelayConfig, POSITION_HEADER};
use shareledger_tests::nats::nats_url;
use shareledger_tests::TestDb;
use uuid::Uuid;

/// A config of a stream and subjects of this test alone.
fn config() -> RelayConfig {
    let tag = Uuid::new_v4().simple().to_string();
    RelayConfig {
        nats_url: nats_url(),
        stream: format!("SLTEST_{tag}"),
        prefix: format!("sltest{tag}"),
        batch: 7,
        derived: false,
    }
}

/// Some events: sites and their users.
async fn write_some(service: &Service, sites: usize) {
    for i in 0..sites {
        let site = SiteId::new();
        let code = format!("R{}{i}", &Uuid::new_v4().simple().to_string()[..6]);
        service
            .execute(
                &common::operator(),
                RegisterSite {
                    site_id: site,
                    code: SiteCode::parse(&code).unwrap(),
                    name: Name::parse("Relay site").unwrap(),
                    seat_limit: SeatLimit::new(10).unwrap(),
                    parent: None,
                },
            )
            .await
            .unwrap();
        for n in 0..3 {
            service
                .execute(
                    &common::operator(),
                    AddUser {
                        site_id: site,
                        user_id: UserId::new(),
                        username: Username::parse(&format!("u{n}@{code}.org")).unwrap(),
                        name: Name::parse("User").unwrap(),
                        role: Role::Presenter,
                        email: None,
                    },
                )
                .await
                .unwrap();
        }
    }
}

/// Every message of the stream: (position header, Nats-Msg-Id).
async fn delivered(config: &RelayConfig) -> Vec<(u64, String)> {
    let client = async_nats::connect(&config.nats_url).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream(&config.stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let position = message
            .headers
            .get(POSITION_HEADER)
            .unwrap()
            .as_str()
            .parse()
            .unwrap();
        let id = message
            .headers
            .get(async_nats::header::NATS_MESSAGE_ID)
            .unwrap()
            .as_str()
            .to_owned();
        out.push((position, id));
    }
    out
}

async fn drop_stream(config: &RelayConfig) {
    let client = async_nats::connect(&config.nats_url).await.unwrap();
    let _ = jetstream::new(client).delete_stream(&config.stream).await;
}

/// The log's events as (position, id).
async fn log(db: &TestDb) -> Vec<(u64, String)> {
    db.store()
        .read_all(Direction::Forwards, PositionFrom::At(1), 100_000)
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.global_position, e.event_id.to_string()))
        .collect()
}

#[tokio::test]
async fn every_event_reaches_jetstream_once_in_log_order_with_its_id() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    write_some(&service, 3).await;
    let config = config();
    let relay = Relay::new(db.store(), config.clone());
    let head = db.store().head_position().await.unwrap();
    assert_eq!(relay.run(Some(head)).await.unwrap(), head);
    assert_eq!(relay.checkpoint().await.unwrap(), head);
    assert_eq!(delivered(&config).await, log(&db).await);
    // More events later: the next run delivers just those.
    write_some(&service, 1).await;
    let head = db.store().head_position().await.unwrap();
    relay.run(Some(head)).await.unwrap();
    assert_eq!(delivered(&config).await, log(&db).await);
    drop_stream(&config).await;
}

#[tokio::test]
async fn a_relay_that_died_before_saving_its_checkpoint_publishes_nothing_twice() {
    let db = TestDb::new().await;
    let service = Service::new(db.store());
    write_some(&service, 2).await;
    let config = config();
    let relay = Relay::new(db.store(), config.clone());
    let head = db.store().head_position().await.unwrap();
    relay.run(Some(head)).await.unwrap();
    // The relay died after JetStream acknowledged everything but before
    // its checkpoint was saved: the checkpoint is behind what was
    // published (here, at the start). Started again, it resumes after the
    // stream's last message.
    relay.reset_checkpoint(0).await.unwrap();
    write_some(&service, 1).await;
    let head = db.store().head_position().await.unwrap();
    relay.run(Some(head)).await.unwrap();
    assert_eq!(delivered(&config).await, log(&db).await);
    assert_eq!(relay.checkpoint().await.unwrap(), head);
    drop_stream(&config).await;
}

/// Every message of a stream: (subject, position, seq, Nats-Msg-Id).
async fn lane_messages(nats: &str, stream: &str) -> Vec<(String, u64, u64, String)> {
    let client = async_nats::connect(nats).await.unwrap();
    let js = jetstream::new(client);
    let mut stream = js.get_stream(stream).await.unwrap();
    let last = stream.info().await.unwrap().state.last_sequence;
    let mut out = Vec::new();
    for sequence in 1..=last {
        let message = stream.get_raw_message(sequence).await.unwrap();
        let header = |name: &str| {
            message
                .headers
                .get(name)
                .unwrap_or_else(|| panic!("{name} in {:?}", message.headers))
                .as_str()
                .to_owned()
        };
        out.push((
            message.subject.to_string(),
            header(POSITION_HEADER).parse().unwrap(),
            header(shareledger_projections::relay::SEQ_HEADER)
                .parse()
                .unwrap(),
            message
                .headers
                .get(async_nats::header::NATS_MESSAGE_ID)
                .unwrap()
                .as_str()
                .to_owned(),
        ));
    }
    out
}

#[tokio::test]
async fn access_changes_and_notifications_reach_their_streams_once_in_feed_order() {
    use shareledger_core::connection::{RevokeSharing, ShareScorecard};
    use shareledger_projections::derived::rows::{self, FeedPoint};
    use shareledger_projections::derived::DerivedFeeds;
    use shareledger_projections::relay::Lane;

    let db = TestDb::new().await;
    let p = common::partners(&db).await;
    let store = p.service.store().clone();
    for command in [ShareScorecard {
        site_id: p.a,
        partner: p.b,
        scorecard_id: p.scorecard,
    }] {
        p.service
            .execute(&common::by(p.a, p.admin_a), command)
            .await
            .unwrap();
    }
    p.service
        .execute(
            &common::by(p.a, p.admin_a),
            RevokeSharing {
                site_id: p.a,
                from: p.a,
                to: p.b,
            },
        )
        .await
        .unwrap();
    let head = store.head_position().await.unwrap();
    DerivedFeeds::new(store.clone())
        .run(Some(head))
        .await
        .unwrap();
    let config = RelayConfig {
        batch: 3,
        derived: true,
        ..config()
    };
    let relay = Relay::new(store.clone(), config.clone());
    assert_eq!(relay.run(Some(head)).await.unwrap(), head);

    let (changes, _) = rows::access_changes(&store, FeedPoint::default(), None, None, 1_000)
        .await
        .unwrap();
    assert!(changes.len() >= 4, "{changes:#?}");
    let access = lane_messages(&config.nats_url, &Lane::Access.stream_name(&config.stream)).await;
    let expected: Vec<(String, u64, u64, String)> = changes
        .iter()
        .map(|c| {
            (
                format!(
                    "{}.access.{}.{}",
                    config.prefix,
                    c.change.user_site.0.simple(),
                    c.change.target_site.0.simple()
                ),
                c.position,
                c.seq as u64,
                format!("access:{}:{}", c.event_id, c.seq),
            )
        })
        .collect();
    assert_eq!(access, expected);
    let notes = lane_messages(
        &config.nats_url,
        &Lane::Notifications.stream_name(&config.stream),
    )
    .await;
    let kinds: Vec<&str> = notes
        .iter()
        .map(|(subject, ..)| subject.split('.').nth(2).unwrap())
        .collect();
    assert_eq!(
        kinds,
        vec![
            "connection_requested",
            "connection_approved",
            "scorecard_shared",
            "link_revoked"
        ]
    );
    assert_eq!(
        relay.lane_checkpoint(Lane::Access).await.unwrap(),
        head,
        "the lane saved its checkpoint"
    );

    // A relay whose checkpoints were lost (or a crash before saving them)
    // resumes after the streams' last messages: nothing is sent twice.
    relay.reset_checkpoint(0).await.unwrap();
    let again = Relay::new(store.clone(), config.clone());
    assert_eq!(again.run(Some(head)).await.unwrap(), head);
    assert_eq!(
        lane_messages(&config.nats_url, &Lane::Access.stream_name(&config.stream)).await,
        expected
    );
    assert_eq!(
        lane_messages(
            &config.nats_url,
            &Lane::Notifications.stream_name(&config.stream)
        )
        .await
        .len(),
        4
    );
    let client = async_nats::connect(&config.nats_url).await.unwrap();
    let js = jetstream::new(client);
    for name in [
        config.stream.clone(),
        Lane::Access.stream_name(&config.stream),
        Lane::Notifications.stream_name(&config.stream),
    ] {
        let _ = js.delete_stream(&name).await;
    }
}
