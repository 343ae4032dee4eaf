//! Delivery of the log to NATS JetStream (issue 17, part 3): every event,
//! in log order, on `<prefix>.events.<category>` of one JetStream stream,
//! each once.
//!
//! How each event is delivered once, in order, whatever crashes:
//! * every message carries `Nats-Msg-Id` = the event's id (JetStream drops
//!   a second publish of an id within the stream's duplicate window) and
//!   `ShareLedger-Position` = its position in the log;
//! * the relay publishes a batch, waits for JetStream's acknowledgement of
//!   every message, and only then saves its checkpoint (`sl_checkpoints`,
//!   name `relay:<stream>`; while the next batch is out, so it may be a
//!   batch behind what JetStream holds);
//! * on start it resumes after the later of its checkpoint and the
//!   position of the stream's last message: what was published and
//!   acknowledged before a crash (kill -9 between the acknowledgement and
//!   the checkpoint) is not published again, however long the relay was
//!   down (the duplicate window is only a second line of defence);
//! * messages go out one batch at a time in log order, and a batch is
//!   published in order on one connection: the stream holds them in log
//!   order, with no gap (a batch that is not acknowledged whole is
//!   published again from its first message, and its acknowledged part
//!   is dropped as duplicates).
//!
//! Beside the events, the relay delivers the derived feeds (access changes
//! and notifications) on lanes of their own ([`derived`]), with the same
//! guarantee.
//!
//! Run under the store's supervision (`supervise`), a transient fault of
//! PostgreSQL or NATS ends a run; the next starts from the checkpoint.

use std::time::Duration;

use async_nats::jetstream::{self, stream};
use async_nats::HeaderMap;
use shareledger_events::store::supervise::PartHealth;
use shareledger_events::store::{PgEventStore, PositionFrom, LOG_CHANNEL};
use shareledger_events::{Direction, RecordedEvent};

use crate::ProjectionError;

pub mod derived;

pub use derived::{Lane, SEQ_HEADER};

/// Where and how the relay delivers.
#[derive(Debug, Clone)]
pub struct RelayConfig {
    /// `nats://host:port`.
    pub nats_url: String,
    /// The JetStream stream (created if missing).
    pub stream: String,
    /// Subjects are `<prefix>.events.<category>`.
    pub prefix: String,
    /// Events published before their acknowledgements are awaited.
    pub batch: usize,
    /// Also deliver the derived feeds (access changes, notifications) as
    /// the derived feeds' writer (in `serve`) writes them.
    pub derived: bool,
}

impl Default for RelayConfig {
    fn default() -> Self {
        Self {
            nats_url: "nats://127.0.0.1:4222".into(),
            stream: "SHARELEDGER".into(),
            prefix: "shareledger".into(),
            batch: 1_000,
            derived: true,
        }
    }
}

/// Why the relay stopped.
#[derive(Debug, thiserror::Error)]
pub enum RelayError {
    #[error("NATS: {0}")]
    Nats(String),
    #[error(transparent)]
    Log(#[from] shareledger_events::store::LogError),
    #[error("the checkpoint: {0}")]
    Checkpoint(#[from] sqlx::Error),
    #[error(transparent)]
    Projection(#[from] ProjectionError),
}

impl shareledger_events::store::supervise::Fault for RelayError {
    /// NATS away and the database away are transient: the next run starts
    /// from the checkpoint. A read model's error is not.
    fn is_transient(&self) -> bool {
        match self {
            RelayError::Nats(_) => true,
            RelayError::Log(e) => e.is_transient(),
            RelayError::Checkpoint(e) => e.is_transient(),
            RelayError::Projection(_) => false,
        }
    }
}

fn nats(e: impl std::fmt::Display) -> RelayError {
    RelayError::Nats(e.to_string())
}

/// The checkpoint's name in `sl_checkpoints` of a relay to `stream`: one
/// per JetStream stream, so relays to different streams (or a benchmark's
/// beside the service's) never share one.
pub fn checkpoint_name(stream: &str) -> String {
    format!("relay:{stream}")
}

/// The header carrying an event's position in the log.
pub const POSITION_HEADER: &str = "ShareLedger-Position";

/// Relays the log to JetStream.
#[derive(Debug, Clone)]
pub struct Relay {
    store: PgEventStore,
    config: RelayConfig,
    health: Option<PartHealth>,
}

impl Relay {
    pub fn new(store: PgEventStore, config: RelayConfig) -> Self {
        Self {
            store,
            config,
            health: None,
        }
    }

    /// Reports its progress (the position delivered) to `health`.
    pub fn reporting_to(mut self, health: PartHealth) -> Self {
        self.health = Some(health);
        self
    }

    /// The position up to which every event is delivered and saved.
    pub async fn checkpoint(&self) -> Result<u64, RelayError> {
        self.load(&checkpoint_name(&self.config.stream)).await
    }

    /// The position up to which a derived lane has delivered every entry.
    pub async fn lane_checkpoint(&self, lane: Lane) -> Result<u64, RelayError> {
        self.load(&lane.checkpoint_name(&self.config.stream)).await
    }

    async fn load(&self, name: &str) -> Result<u64, RelayError> {
        let position: Option<i64> =
            sqlx::query_scalar("SELECT position FROM sl_checkpoints WHERE name = $1")
                .bind(name)
                .fetch_optional(self.store.pool())
                .await?;
        Ok(position.unwrap_or(0) as u64)
    }

    async fn save(&self, position: u64) -> Result<(), RelayError> {
        self.save_as(&checkpoint_name(&self.config.stream), position)
            .await
    }

    async fn save_as(&self, name: &str, position: u64) -> Result<(), RelayError> {
        sqlx::query(
            "INSERT INTO sl_checkpoints (name, position) VALUES ($1, $2) \
             ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
        )
        .bind(name)
        .bind(position as i64)
        .execute(self.store.pool())
        .await?;
        Ok(())
    }

    /// Sets the checkpoints (`shareledger relay --from`). A run resumes
    /// after the later of a checkpoint and its stream's last message, so
    /// this moves delivery forward only; to deliver again what a stream
    /// holds, delete the stream first.
    pub async fn reset_checkpoint(&self, position: u64) -> Result<(), RelayError> {
        self.save(position).await?;
        for lane in [Lane::Access, Lane::Notifications] {
            self.save_as(&lane.checkpoint_name(&self.config.stream), position)
                .await?;
        }
        Ok(())
    }

    /// The stream, created with the subjects and a duplicate window if
    /// missing.
    async fn stream(&self, js: &jetstream::Context) -> Result<stream::Stream, RelayError> {
        js.get_or_create_stream(stream::Config {
            name: self.config.stream.clone(),
            subjects: vec![format!("{}.events.>", self.config.prefix)],
            duplicate_window: Duration::from_secs(120),
            ..Default::default()
        })
        .await
        .map_err(nats)
    }

    /// The position of the stream's last message (0 when empty).
    async fn last_published(stream: &mut stream::Stream) -> Result<u64, RelayError> {
        let last = stream.info().await.map_err(nats)?.state.last_sequence;
        if last == 0 {
            return Ok(0);
        }
        let message = stream.get_raw_message(last).await.map_err(nats)?;
        Ok(message
            .headers
            .get(POSITION_HEADER)
            .and_then(|v| v.as_str().parse().ok())
            .unwrap_or(0))
    }

    /// Delivers the log (and, with [`RelayConfig::derived`], the derived
    /// feeds) until position `until` is acknowledged (or forever with
    /// `None`); returns the events' position reached.
    pub async fn run(&self, until: Option<u64>) -> Result<u64, RelayError> {
        let client = async_nats::connect(&self.config.nats_url)
            .await
            .map_err(nats)?;
        let js = jetstream::new(client);
        if !self.config.derived {
            return self.run_events(&js, until).await;
        }
        let (reached, _, _) = tokio::try_join!(
            self.run_events(&js, until),
            self.run_lane(&js, Lane::Access, until),
            self.run_lane(&js, Lane::Notifications, until),
        )?;
        Ok(reached)
    }

    /// The events' lane.
    async fn run_events(
        &self,
        js: &jetstream::Context,
        until: Option<u64>,
    ) -> Result<u64, RelayError> {
        let mut stream = self.stream(js).await?;
        let mut position = self
            .checkpoint()
            .await?
            .max(Self::last_published(&mut stream).await?);
        if let Some(health) = &self.health {
            health.advanced(position);
        }
        // The next page is read, and the last batch's checkpoint saved,
        // while a batch's acknowledgements are awaited: PostgreSQL and
        // JetStream work side by side. (A checkpoint one batch behind loses
        // nothing: a run resumes after the stream's last message.)
        let mut next: Option<Vec<RecordedEvent>> = None;
        let mut unsaved: Option<u64> = None;
        let mut listener: Option<sqlx::postgres::PgListener> = None;
        while until.is_none_or(|u| position < u) {
            let page = match next.take() {
                Some(page) => page,
                None => self.page_after(position).await?,
            };
            if page.is_empty() {
                // The log answered: the relay is in touch and caught up
                // (an idle relay is following, not stalled).
                if let Some(health) = &self.health {
                    health.contact();
                }
                if let Some(p) = unsaved.take() {
                    self.save(p).await?;
                }
                if until.is_some() {
                    // Asked to reach a position the log does not hold yet.
                    let head = self.store.head_position().await?;
                    if until.is_some_and(|u| head < u) {
                        return Ok(position);
                    }
                }
                // Caught up: wait for the log's notification of an append
                // (at most a second), listening first and reading again so
                // that nothing committed before LISTEN is missed.
                match &mut listener {
                    None => {
                        let mut new =
                            sqlx::postgres::PgListener::connect_with(self.store.pool()).await?;
                        new.listen(LOG_CHANNEL).await?;
                        listener = Some(new);
                    }
                    Some(listener) => {
                        if let Ok(Err(e)) =
                            tokio::time::timeout(Duration::from_secs(1), listener.recv()).await
                        {
                            // It reconnects on its next call; the next read
                            // fails, ending the run, if the database is away.
                            tracing::warn!(error = %e, "the relay's listener was lost");
                        }
                    }
                }
                continue;
            }
            let mut acks = Vec::with_capacity(page.len());
            for event in &page {
                let (subject, headers, payload) = self.message(event);
                acks.push(
                    js.publish_with_headers(subject, headers, payload.into())
                        .await
                        .map_err(nats)?,
                );
            }
            let last = page.last().map_or(position, |e| e.global_position);
            let acknowledged = async {
                for ack in acks {
                    ack.await.map_err(nats)?;
                }
                Ok::<(), RelayError>(())
            };
            let more = until.is_none_or(|u| last < u);
            let saved = async {
                match unsaved.take() {
                    Some(p) => self.save(p).await,
                    None => Ok(()),
                }
            };
            let (acknowledged, read, saved) = tokio::join!(
                acknowledged,
                async {
                    if more {
                        self.page_after(last).await.map(Some)
                    } else {
                        Ok(None)
                    }
                },
                saved
            );
            acknowledged?;
            saved?;
            position = last;
            unsaved = Some(position);
            if let Some(health) = &self.health {
                health.advanced(position);
            }
            next = read?;
        }
        if let Some(p) = unsaved {
            self.save(p).await?;
        }
        Ok(position)
    }

    /// The batch of events after `position`.
    async fn page_after(&self, position: u64) -> Result<Vec<RecordedEvent>, RelayError> {
        Ok(self
            .store
            .read_all(
                Direction::Forwards,
                PositionFrom::At(position + 1),
                self.config.batch,
            )
            .await?)
    }

    /// An event as a message: subject, headers, JSON payload (the
    /// benchmark publishes the same messages raw).
    pub fn message(&self, event: &RecordedEvent) -> (String, HeaderMap, Vec<u8>) {
        let category = if event.stream.starts_with("$$") {
            "log"
        } else {
            event.stream.split('-').next().unwrap_or("log")
        };
        let subject = format!("{}.events.{category}", self.config.prefix);
        let mut headers = HeaderMap::new();
        headers.insert(
            async_nats::header::NATS_MESSAGE_ID,
            event.event_id.to_string().as_str(),
        );
        headers.insert(POSITION_HEADER, event.global_position.to_string().as_str());
        /// The payload, serialized from the event in place (no copy of its
        /// data and metadata).
        #[derive(serde::Serialize)]
        struct Payload<'a> {
            position: u64,
            event_id: uuid::Uuid,
            stream: &'a str,
            event_type: &'a str,
            schema_version: u32,
            recorded_at: chrono::DateTime<chrono::Utc>,
            data: &'a serde_json::Value,
            metadata: &'a serde_json::Value,
        }
        let payload = Payload {
            position: event.global_position,
            event_id: event.event_id,
            stream: &event.stream,
            event_type: &event.event_type,
            schema_version: event.schema_version,
            recorded_at: event.recorded_at,
            data: &event.data,
            metadata: &event.metadata,
        };
        (
            subject,
            headers,
            serde_json::to_vec(&payload).expect("JSON serializes"),
        )
    }
}
