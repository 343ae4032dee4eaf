//! Loading what a decision needs: a stream's events decoded into the
//! catalog, and the expected revision to append or guard with.

use std::collections::HashMap;

use shareledger_core::catalog::{site_stream, DomainEvent, SiteEvent, SiteId};
use shareledger_core::site::SiteState;
use shareledger_events::store::{LogError, PgEventStore, RevisionFrom};
use shareledger_events::{Direction, ExpectedRevision};

use crate::{stream_name, CommandError};

/// Events read per page.
const PAGE: usize = 1_000;

/// The streams one attempt of a command has read, with their revisions.
pub(crate) struct Loaded {
    store: PgEventStore,
    revisions: HashMap<String, ExpectedRevision>,
}

impl Loaded {
    pub(crate) fn new(store: PgEventStore) -> Self {
        Self {
            store,
            revisions: HashMap::new(),
        }
    }

    /// Every event of `stream`, decoded, and the expectation that it is
    /// still as read (`NoStream` when it has no events).
    pub(crate) async fn events<E: DomainEvent>(
        &mut self,
        stream: &str,
    ) -> Result<(Vec<E>, ExpectedRevision), CommandError> {
        let name = stream_name(stream);
        let mut events = Vec::new();
        let mut next = 0;
        let mut last = None;
        loop {
            let page = match self
                .store
                .read_stream(&name, Direction::Forwards, RevisionFrom::At(next), PAGE)
                .await
            {
                Ok(page) => page,
                Err(LogError::StreamNotFound { .. }) => Vec::new(),
                Err(e) => return Err(e.into()),
            };
            let full = page.len() == PAGE;
            for recorded in page {
                events.push(E::decode(
                    &recorded.event_type,
                    recorded.schema_version,
                    &recorded.data,
                )?);
                last = Some(recorded.stream_revision);
                next = recorded.stream_revision + 1;
            }
            if !full {
                break;
            }
        }
        let expected = last.map_or(ExpectedRevision::NoStream, ExpectedRevision::Exact);
        self.revisions.insert(stream.to_owned(), expected);
        Ok((events, expected))
    }

    /// A site's state (`None` if it was never registered) and its revision.
    pub(crate) async fn site(
        &mut self,
        site: SiteId,
    ) -> Result<(Option<SiteState>, ExpectedRevision), CommandError> {
        let (events, rev) = self.events::<SiteEvent>(&site_stream(site)).await?;
        Ok((SiteState::from_events(events.iter()), rev))
    }

    /// The revision a loaded stream was read at.
    pub(crate) fn revision(&self, stream: &str) -> ExpectedRevision {
        self.revisions
            .get(stream)
            .copied()
            .unwrap_or(ExpectedRevision::Any)
    }
}
