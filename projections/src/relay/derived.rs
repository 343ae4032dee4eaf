//! Delivery of the derived feeds to JetStream (issue 17, parts 2 and 4):
//! every access change on `<prefix>.access.<user site>.<target site>` of
//! the stream `<STREAM>_ACCESS`, and every notification on
//! `<prefix>.notifications.<kind>.<addressed site>` of `<STREAM>_NOTIFICATIONS`
//! (site ids in their 32-hex-digit form).
//!
//! The same guarantee as the events' lane, per lane: each entry once, in
//! feed order ((position, seq)), with no gap. Every message carries
//! `Nats-Msg-Id` (`access:<event id>:<seq>`, `notification:<event id>:<seq>`),
//! `ShareLedger-Position` and `ShareLedger-Seq`; a lane resumes after the
//! later of its checkpoint (`relay:<stream>:access`, `…:notifications`:
//! every position up to it delivered) and the stream's last message's
//! (position, seq). The lanes deliver what the derived feeds' writer has
//! written (`crate::derived`, run by `serve`), up to its checkpoint.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;

use super::{nats, Relay, RelayError, POSITION_HEADER};
use crate::derived::rows::{self, FeedPoint};

/// The header carrying an entry's number within its position.
pub const SEQ_HEADER: &str = "ShareLedger-Seq";

/// One derived feed's lane.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    Access,
    Notifications,
}

impl Lane {
    /// `access` or `notifications`: the subjects' second token and the
    /// suffix of the stream and checkpoint names.
    pub fn as_str(self) -> &'static str {
        match self {
            Lane::Access => "access",
            Lane::Notifications => "notifications",
        }
    }

    /// The JetStream stream of the lane for the events' stream `stream`.
    pub fn stream_name(self, stream: &str) -> String {
        format!("{stream}_{}", self.as_str().to_ascii_uppercase())
    }

    /// The lane's checkpoint in `sl_checkpoints`.
    pub fn checkpoint_name(self, stream: &str) -> String {
        format!("{}:{}", super::checkpoint_name(stream), self.as_str())
    }
}

/// A message of a lane: subject, headers, payload, and its place.
type Message = (String, HeaderMap, Vec<u8>, FeedPoint);

impl Relay {
    /// Delivers one lane until every entry up to position `until` is
    /// acknowledged (or forever with `None`); returns the position reached.
    pub(super) async fn run_lane(
        &self,
        js: &jetstream::Context,
        lane: Lane,
        until: Option<u64>,
    ) -> Result<u64, RelayError> {
        let name = lane.stream_name(&self.config.stream);
        let mut stream = js
            .get_or_create_stream(stream::Config {
                name: name.clone(),
                subjects: vec![format!("{}.{}.>", self.config.prefix, lane.as_str())],
                duplicate_window: Duration::from_secs(120),
                ..Default::default()
            })
            .await
            .map_err(nats)?;
        let checkpoint_name = lane.checkpoint_name(&self.config.stream);
        let checkpoint = self.load(&checkpoint_name).await?;
        let last = last_published(&mut stream).await?;
        let mut from = match last {
            Some(point) if point.position > checkpoint => point,
            _ => FeedPoint {
                position: checkpoint,
                seq: None,
            },
        };
        loop {
            let (messages, head) = self.lane_page(lane, from).await?;
            if messages.is_empty() {
                if head > from.position {
                    // Nothing (more) to deliver up to the feed's head.
                    from = FeedPoint {
                        position: head,
                        seq: None,
                    };
                    self.save_as(&checkpoint_name, head).await?;
                }
                if until.is_some_and(|u| from.position >= u && from.seq.is_none()) {
                    return Ok(from.position);
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
            let full = messages.len() == self.config.batch;
            let mut acks = Vec::with_capacity(messages.len());
            let mut reached = from;
            for (subject, headers, payload, point) in messages {
                acks.push(
                    js.publish_with_headers(subject, headers, payload.into())
                        .await
                        .map_err(nats)?,
                );
                reached = point;
            }
            for ack in acks {
                ack.await.map_err(nats)?;
            }
            from = if full {
                reached
            } else {
                FeedPoint {
                    position: head,
                    seq: None,
                }
            };
            // Every position before the last entry's is delivered whole;
            // the last one too when the page read up to the head.
            let whole = if full {
                reached.position.saturating_sub(1)
            } else {
                head
            };
            self.save_as(&checkpoint_name, whole).await?;
        }
    }

    /// The lane's next page as messages, and the feed's head.
    async fn lane_page(
        &self,
        lane: Lane,
        from: FeedPoint,
    ) -> Result<(Vec<Message>, u64), RelayError> {
        let prefix = &self.config.prefix;
        let batch = self.config.batch;
        match lane {
            Lane::Access => {
                let (entries, head) =
                    rows::access_changes(&self.store, from, None, None, batch).await?;
                let messages = entries
                    .into_iter()
                    .map(|e| {
                        let subject = format!(
                            "{prefix}.access.{}.{}",
                            e.change.user_site.0.simple(),
                            e.change.target_site.0.simple()
                        );
                        let id = format!("access:{}:{}", e.event_id, e.seq);
                        let point = FeedPoint {
                            position: e.position,
                            seq: Some(e.seq),
                        };
                        let payload = serde_json::to_vec(&e).expect("an entry serializes");
                        (subject, headers(&id, point), payload, point)
                    })
                    .collect();
                Ok((messages, head))
            }
            Lane::Notifications => {
                let (entries, head) = rows::notifications(&self.store, from, batch).await?;
                let messages = entries
                    .into_iter()
                    .map(|n| {
                        let subject =
                            format!("{prefix}.notifications.{}.{}", n.kind, n.site.0.simple());
                        let event_id = n.body["event_id"].as_str().unwrap_or_default();
                        let id = format!("notification:{event_id}:{}", n.seq);
                        let point = FeedPoint {
                            position: n.position,
                            seq: Some(n.seq),
                        };
                        let payload = serde_json::to_vec(&n.body).expect("JSON serializes");
                        (subject, headers(&id, point), payload, point)
                    })
                    .collect();
                Ok((messages, head))
            }
        }
    }
}

fn headers(id: &str, point: FeedPoint) -> HeaderMap {
    let mut headers = HeaderMap::new();
    headers.insert(async_nats::header::NATS_MESSAGE_ID, id);
    headers.insert(POSITION_HEADER, point.position.to_string().as_str());
    headers.insert(
        SEQ_HEADER,
        point.seq.unwrap_or_default().to_string().as_str(),
    );
    headers
}

/// The (position, seq) of the stream's last message, if any.
async fn last_published(stream: &mut stream::Stream) -> Result<Option<FeedPoint>, RelayError> {
    let last = stream.info().await.map_err(nats)?.state.last_sequence;
    if last == 0 {
        return Ok(None);
    }
    let message = stream.get_raw_message(last).await.map_err(nats)?;
    let header = |name: &str| -> Option<u64> {
        message
            .headers
            .get(name)
            .and_then(|v| v.as_str().parse().ok())
    };
    Ok(Some(FeedPoint {
        position: header(POSITION_HEADER).unwrap_or(0),
        seq: header(SEQ_HEADER).map(|s| s as u32),
    }))
}
