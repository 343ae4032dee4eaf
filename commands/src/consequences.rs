//! The consequence worker: a checkpointed process manager that follows the
//! log and applies the consequences that cannot be decided in the same
//! append as their trigger.
//!
//! Today that is R-SHARE-4's third case: when an object leaves a scorecard
//! (`ObjectRemovedFromScorecard`) or is archived, or a scorecard is
//! archived, every partner that sees the owner's
//! content loses the relationships whose object is no longer visible to it
//! through any scorecard shared with it. (Revoking a link and unsharing a
//! scorecard remove their relationships in the same append as the command;
//! see `RevokeSharing` and `UnshareScorecard` in `shareledger_core`.)
//!
//! How it survives a crash: for each trigger and partner it runs an ordinary
//! command whose idempotency key is derived from the trigger's event id and
//! the partner, decided against the *current* state of the streams. Its
//! checkpoint (table `sl_checkpoints`) is saved after the effects, so a crash
//! in between makes it process some triggers again; their keys make the
//! second run a no-op (or, if the state has moved on, decide nothing new).
//! At-least-once processing with idempotent effects: the effects happen once.
//!
//! The partners of a site come from the connection streams it has seen
//! (rebuilt from the `connection` category at start).
//!
//! Run under [`shareledger_events::store::supervise::supervise`] (as the
//! service does), a transient fault ends a run and the next one starts
//! again from the checkpoint: the same at-least-once, effects-once rule
//! covers it. [`ConsequenceWorker::reporting_to`] publishes its contact
//! with the log and its checkpoint.

use std::collections::{BTreeMap, BTreeSet};

use shareledger_core::catalog::{ContentEvent, DomainEvent, SiteId};
use shareledger_core::content::RemoveRelationshipsNoLongerShared;
use shareledger_events::store::supervise::PartHealth;
use shareledger_events::store::{PositionFrom, SubscriptionOptions};
use shareledger_events::{Actor, Category, Direction, RecordedEvent};
use uuid::Uuid;

use crate::{CommandError, Issued, Service};

/// The events after which a partner may see less of the site's content:
/// an object left a scorecard, or an object or a scorecard was archived.
const TRIGGERS: &[&str] = &[
    "ObjectRemovedFromScorecard",
    "ObjectArchived",
    "ScorecardArchived",
];

/// Namespace of the idempotency keys of consequences.
const CONSEQUENCE_NAMESPACE: Uuid = Uuid::from_u128(0x7c1e_93a0_55d4_4f0b_8e61_2a9d_4b3c_1f07);

/// Follows the log and applies deferred consequences.
#[derive(Debug, Clone)]
pub struct ConsequenceWorker {
    service: Service,
    name: String,
    health: Option<PartHealth>,
}

impl ConsequenceWorker {
    /// A worker checkpointed under `consequences`.
    pub fn new(service: Service) -> Self {
        Self {
            service,
            name: "consequences".into(),
            health: None,
        }
    }

    /// Reports contact with the log and the saved checkpoint to `health`.
    pub fn reporting_to(mut self, health: PartHealth) -> Self {
        self.health = Some(health);
        self
    }

    /// The position up to which every trigger's consequences are applied.
    pub async fn checkpoint(&self) -> Result<u64, CommandError> {
        let position: Option<i64> = sqlx_query_checkpoint(&self.service, &self.name).await?;
        Ok(position.unwrap_or(0) as u64)
    }

    /// Processes the log from the checkpoint until it has handled position
    /// `until` (or forever with `None`), saving the checkpoint as it goes.
    pub async fn run(&self, until: Option<u64>) -> Result<u64, CommandError> {
        let store = self.service.store().clone();
        let mut partners = self.partners_index().await?;
        let start = self.checkpoint().await?;
        let mut subscription = store
            .subscribe_to_all(Some(start), SubscriptionOptions::default())
            .await?;
        if let Some(health) = &self.health {
            subscription.report_to(health.clone());
            health.advanced(start);
        }
        let mut position = start;
        let mut unsaved = 0;
        while until.is_none_or(|u| position < u) {
            let event = subscription.next().await?;
            if let Some((a, b)) = connection_pair(&event.stream) {
                partners.entry(a).or_default().insert(b);
                partners.entry(b).or_default().insert(a);
            }
            if TRIGGERS.contains(&event.event_type.as_str()) && event.stream.starts_with("content-")
            {
                self.object_left_a_scorecard(&event, &partners).await?;
                unsaved = usize::MAX;
            }
            position = event.global_position;
            unsaved = unsaved.saturating_add(1);
            if subscription.buffered() == 0 {
                // Processed (not yet saved: a restart may process some
                // triggers again, which their keys make harmless).
                if let Some(health) = &self.health {
                    health.advanced(position);
                }
            }
            if unsaved >= 256 || until.is_some_and(|u| position >= u) {
                self.save(position).await?;
                unsaved = 0;
            }
        }
        Ok(position)
    }

    async fn save(&self, position: u64) -> Result<(), CommandError> {
        sqlx_save_checkpoint(&self.service, &self.name, position).await
    }

    /// Every site's partners, from the connection streams.
    async fn partners_index(&self) -> Result<BTreeMap<SiteId, BTreeSet<SiteId>>, CommandError> {
        let store = self.service.store();
        let category = Category::parse("connection").expect("a valid category");
        let mut partners: BTreeMap<SiteId, BTreeSet<SiteId>> = BTreeMap::new();
        let mut from = 1;
        loop {
            let page = store
                .read_category(
                    &category,
                    Direction::Forwards,
                    PositionFrom::At(from),
                    1_000,
                )
                .await?;
            let Some(last) = page.last() else { break };
            from = last.global_position + 1;
            for event in &page {
                if let Some((a, b)) = connection_pair(&event.stream) {
                    partners.entry(a).or_default().insert(b);
                    partners.entry(b).or_default().insert(a);
                }
            }
        }
        Ok(partners)
    }

    async fn object_left_a_scorecard(
        &self,
        trigger: &RecordedEvent,
        partners: &BTreeMap<SiteId, BTreeSet<SiteId>>,
    ) -> Result<(), CommandError> {
        let (ContentEvent::ObjectRemovedFromScorecard { .. }
        | ContentEvent::ObjectArchived { .. }
        | ContentEvent::ScorecardArchived { .. }) =
            ContentEvent::decode(&trigger.event_type, trigger.schema_version, &trigger.data)?
        else {
            return Ok(());
        };
        let Some(owner) = site_of_content_stream(&trigger.stream) else {
            return Ok(());
        };
        for partner in partners.get(&owner).into_iter().flatten() {
            let partner = *partner;
            let mut key_name = trigger.event_id.as_bytes().to_vec();
            key_name.extend_from_slice(partner.0.as_bytes());
            let issued = Issued {
                actor: Actor::System,
                key: Uuid::new_v5(&CONSEQUENCE_NAMESPACE, &key_name),
            };
            self.service
                .execute_caused_by(
                    &issued,
                    &RemoveRelationshipsNoLongerShared { owner, partner },
                    trigger.event_id,
                )
                .await?;
        }
        Ok(())
    }
}

fn parse_site(hex: &str) -> Option<SiteId> {
    Uuid::try_parse(hex).ok().map(SiteId)
}

/// The two sites of a `connection-<a>-<b>` stream.
fn connection_pair(stream: &str) -> Option<(SiteId, SiteId)> {
    let rest = stream.strip_prefix("connection-")?;
    let (a, b) = rest.split_once('-')?;
    Some((parse_site(a)?, parse_site(b)?))
}

/// The site of a `content-<site>` stream.
fn site_of_content_stream(stream: &str) -> Option<SiteId> {
    parse_site(stream.strip_prefix("content-")?)
}

async fn sqlx_query_checkpoint(service: &Service, name: &str) -> Result<Option<i64>, CommandError> {
    sqlx::query_scalar("SELECT position FROM sl_checkpoints WHERE name = $1")
        .bind(name)
        .fetch_optional(service.store().pool())
        .await
        .map_err(|e| CommandError::Log(e.into()))
}

async fn sqlx_save_checkpoint(
    service: &Service,
    name: &str,
    position: u64,
) -> Result<(), CommandError> {
    sqlx::query(
        "INSERT INTO sl_checkpoints (name, position) VALUES ($1, $2) \
         ON CONFLICT (name) DO UPDATE SET position = EXCLUDED.position, updated_at = now()",
    )
    .bind(name)
    .bind(position as i64)
    .execute(service.store().pool())
    .await
    .map_err(|e| CommandError::Log(e.into()))?;
    Ok(())
}
