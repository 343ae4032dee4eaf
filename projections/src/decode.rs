//! Recorded events → catalog events, with the site a stream belongs to and
//! the event's provenance (id, position, time, actor) for explanations.

use chrono::{DateTime, Utc};
use shareledger_core::catalog::{
    ConnectionEvent, ContentEvent, DomainEvent, SiteCodeEvent, SiteEvent, SiteId,
};
use shareledger_events::{Actor, RecordedEvent};
use uuid::Uuid;

use crate::ProjectionError;

/// A catalog event with the site its stream belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decoded {
    /// An event of stream `site-<site>`.
    Site { site: SiteId, event: SiteEvent },
    /// An event of stream `sitecode-<CODE>`.
    SiteCode(SiteCodeEvent),
    /// An event of stream `content-<site>`.
    Content { site: SiteId, event: ContentEvent },
    /// An event of stream `connection-<lo>-<hi>`.
    Connection(ConnectionEvent),
}

/// Where a fact came from: the event that established it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct EventRef {
    pub event_id: Uuid,
    pub position: u64,
    pub recorded_at: DateTime<Utc>,
    /// Who caused the event; `None` when its metadata has no typed actor.
    pub actor: Option<Actor>,
}

impl EventRef {
    /// The provenance of a recorded event.
    pub fn of(event: &RecordedEvent) -> Self {
        Self {
            event_id: event.event_id,
            position: event.global_position,
            recorded_at: event.recorded_at,
            actor: event.typed_metadata().ok().map(|m| m.actor),
        }
    }
}

/// Decodes a recorded event. Events of other categories (the log's own
/// `$$` events, streams of other applications) are `None`.
pub fn decode(event: &RecordedEvent) -> Result<Option<Decoded>, ProjectionError> {
    let position = event.global_position;
    let (category, suffix) = match event.stream.split_once('-') {
        Some(parts) => parts,
        None => return Ok(None),
    };
    let site = || -> Result<SiteId, ProjectionError> {
        Uuid::parse_str(suffix)
            .map(SiteId)
            .map_err(|_| ProjectionError::BadStream {
                position,
                stream: event.stream.clone(),
            })
    };
    let decoded = match category {
        SiteEvent::CATEGORY => Decoded::Site {
            site: site()?,
            event: decode_as(event)?,
        },
        SiteCodeEvent::CATEGORY => Decoded::SiteCode(decode_as(event)?),
        ContentEvent::CATEGORY => Decoded::Content {
            site: site()?,
            event: decode_as(event)?,
        },
        ConnectionEvent::CATEGORY => Decoded::Connection(decode_as(event)?),
        _ => return Ok(None),
    };
    Ok(Some(decoded))
}

fn decode_as<E: DomainEvent>(event: &RecordedEvent) -> Result<E, ProjectionError> {
    E::decode(&event.event_type, event.schema_version, &event.data).map_err(|source| {
        ProjectionError::Decode {
            position: event.global_position,
            source,
        }
    })
}
