//! Loading what a decision needs: a stream's events decoded into the
//! catalog, and the expected revision to append or guard with.

use std::collections::{BTreeSet, HashMap};

use shareledger_core::catalog::{
    connection_stream, content_stream, site_stream, ConnectionEvent, ContentEvent, DomainEvent,
    Link, ObjectId, ScorecardId, SiteEvent, SiteId,
};
use shareledger_core::connection::ConnectionState;
use shareledger_core::content::ContentState;
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

    /// A site's content and its revision.
    pub(crate) async fn content(
        &mut self,
        site: SiteId,
    ) -> Result<(ContentState, ExpectedRevision), CommandError> {
        let (events, rev) = self.events::<ContentEvent>(&content_stream(site)).await?;
        Ok((ContentState::from_events(site, events.iter()), rev))
    }

    /// The scorecards `owner` shares with `partner` now (none unless the link
    /// owner→partner is active).
    pub(crate) async fn shared_with(
        &mut self,
        owner: SiteId,
        partner: SiteId,
    ) -> Result<BTreeSet<ScorecardId>, CommandError> {
        let (history, _) = self
            .events::<ConnectionEvent>(&connection_stream(owner, partner))
            .await?;
        let state = ConnectionState::from_events(owner, partner, history.iter());
        let link = Link {
            from: owner,
            to: partner,
        };
        Ok(if state.link_state(link).is_active() {
            state.shared(link).clone()
        } else {
            BTreeSet::new()
        })
    }

    /// What of `owner`'s content `partner` sees now (R-SHARE-2).
    pub(crate) async fn visible_to(
        &mut self,
        owner: SiteId,
        partner: SiteId,
        content: &ContentState,
    ) -> Result<BTreeSet<ObjectId>, CommandError> {
        let shared = self.shared_with(owner, partner).await?;
        Ok(content.visible_through(&shared))
    }

    /// The revision a loaded stream was read at.
    pub(crate) fn revision(&self, stream: &str) -> ExpectedRevision {
        self.revisions
            .get(stream)
            .copied()
            .unwrap_or(ExpectedRevision::Any)
    }
}
