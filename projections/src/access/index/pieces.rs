//! The index cut into pieces that encode and decode on their own, so that
//! a snapshot (`access/snapshot.rs`) is encoded and decoded on every core
//! at once: each map and the event list in chunks of about equal length,
//! and one piece for the rest. Putting the pieces back together moves the
//! entries into maps sized for them at once.

use rustc_hash::{FxHashMap, FxHashSet};
use serde::{Deserialize, Serialize};
use shareledger_core::catalog::{Link, ObjectId, RelationshipId, ScorecardId, SiteId, UserId};

use super::{AccessIndex, LinkInfo, ObjectInfo, RelInfo, ScorecardInfo, SiteInfo, UserInfo};
use crate::decode::EventRef;

/// One piece of an [`AccessIndex`].
#[derive(Debug, Serialize, Deserialize)]
pub(in crate::access) enum Piece {
    /// What is not in a collection's chunks.
    Rest {
        position: u64,
        pending_assigned: FxHashMap<ScorecardId, Vec<UserId>>,
        pending_related: FxHashSet<ObjectId>,
        relationship_ids_reused: bool,
    },
    /// A chunk of the event list, in order (chunks come in order too).
    Events(Vec<EventRef>),
    Sites(Vec<(SiteId, SiteInfo)>),
    Users(Vec<(UserId, UserInfo)>),
    Scorecards(Vec<(ScorecardId, ScorecardInfo)>),
    Objects(Vec<(ObjectId, ObjectInfo)>),
    Links(Vec<(Link, LinkInfo)>),
    Relationships(Vec<(RelationshipId, RelInfo)>),
}

/// Why pieces do not make an index.
#[derive(Debug, thiserror::Error)]
#[error("the pieces hold {rests} parts that are not in a collection (one expected)")]
pub(in crate::access) struct NotOneIndex {
    rests: usize,
}

impl AccessIndex {
    /// The index in pieces: each collection in at most `chunks` chunks.
    /// [`AccessIndex::from_pieces`] takes them back in the same order.
    pub(in crate::access) fn into_pieces(self, chunks: usize) -> Vec<Piece> {
        let mut pieces = vec![Piece::Rest {
            position: self.position,
            pending_assigned: self.pending_assigned,
            pending_related: self.pending_related,
            relationship_ids_reused: self.relationship_ids_reused,
        }];
        pieces.extend(chunked(self.events, chunks, Piece::Events));
        pieces.extend(chunked(self.sites, chunks, Piece::Sites));
        pieces.extend(chunked(self.users, chunks, Piece::Users));
        pieces.extend(chunked(self.scorecards, chunks, Piece::Scorecards));
        pieces.extend(chunked(self.objects, chunks, Piece::Objects));
        pieces.extend(chunked(self.links, chunks, Piece::Links));
        pieces.extend(chunked(self.relationships, chunks, Piece::Relationships));
        pieces
    }

    /// The index the pieces of [`AccessIndex::into_pieces`] came from,
    /// given in the order it returned them.
    pub(in crate::access) fn from_pieces(pieces: Vec<Piece>) -> Result<Self, NotOneIndex> {
        let mut index = AccessIndex::default();
        let mut rests = 0;
        let mut sizes = [0usize; 7];
        for piece in &pieces {
            let (slot, len) = match piece {
                Piece::Rest { .. } => continue,
                Piece::Events(p) => (0, p.len()),
                Piece::Sites(p) => (1, p.len()),
                Piece::Users(p) => (2, p.len()),
                Piece::Scorecards(p) => (3, p.len()),
                Piece::Objects(p) => (4, p.len()),
                Piece::Links(p) => (5, p.len()),
                Piece::Relationships(p) => (6, p.len()),
            };
            sizes[slot] += len;
        }
        index.events.reserve_exact(sizes[0]);
        index.sites.reserve(sizes[1]);
        index.users.reserve(sizes[2]);
        index.scorecards.reserve(sizes[3]);
        index.objects.reserve(sizes[4]);
        index.links.reserve(sizes[5]);
        index.relationships.reserve(sizes[6]);
        for piece in pieces {
            match piece {
                Piece::Rest {
                    position,
                    pending_assigned,
                    pending_related,
                    relationship_ids_reused,
                } => {
                    rests += 1;
                    index.position = position;
                    index.pending_assigned = pending_assigned;
                    index.pending_related = pending_related;
                    index.relationship_ids_reused = relationship_ids_reused;
                }
                Piece::Events(p) => index.events.extend(p),
                Piece::Sites(p) => index.sites.extend(p),
                Piece::Users(p) => index.users.extend(p),
                Piece::Scorecards(p) => index.scorecards.extend(p),
                Piece::Objects(p) => index.objects.extend(p),
                Piece::Links(p) => index.links.extend(p),
                Piece::Relationships(p) => index.relationships.extend(p),
            }
        }
        if rests != 1 {
            return Err(NotOneIndex { rests });
        }
        Ok(index)
    }
}

/// `items` in at most `chunks` pieces of about equal length, in order.
fn chunked<I, T>(items: I, chunks: usize, piece: fn(Vec<T>) -> Piece) -> Vec<Piece>
where
    I: IntoIterator<Item = T>,
    I::IntoIter: ExactSizeIterator,
{
    let items = items.into_iter();
    let size = items.len().div_ceil(chunks.max(1)).max(1);
    let mut pieces = Vec::with_capacity(chunks);
    let mut chunk = Vec::with_capacity(size.min(items.len()));
    for item in items {
        chunk.push(item);
        if chunk.len() == size {
            pieces.push(piece(std::mem::replace(
                &mut chunk,
                Vec::with_capacity(size),
            )));
        }
    }
    if !chunk.is_empty() {
        pieces.push(piece(chunk));
    }
    pieces
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn chunks_keep_their_order_and_lose_nothing() {
        for (len, chunks) in [(0u64, 4usize), (1, 4), (10, 3), (16, 16), (17, 16), (5, 0)] {
            let event = |position| EventRef {
                event_id: uuid::Uuid::nil(),
                position,
                recorded_at: chrono::DateTime::UNIX_EPOCH,
                actor: None,
            };
            let events: Vec<EventRef> = (1..=len).map(event).collect();
            let pieces = chunked(events, chunks, Piece::Events);
            assert!(
                pieces.len() <= chunks.max(1),
                "{len} in {chunks}: {}",
                pieces.len()
            );
            let back: Vec<u64> = pieces
                .iter()
                .flat_map(|piece| match piece {
                    Piece::Events(events) => events.iter().map(|e| e.position).collect::<Vec<_>>(),
                    _ => unreachable!("only events were chunked"),
                })
                .collect();
            assert_eq!(back, (1..=len).collect::<Vec<_>>());
        }
    }

    #[test]
    fn pieces_without_exactly_one_rest_are_no_index() {
        let pieces = AccessIndex::default().into_pieces(4);
        assert!(AccessIndex::from_pieces(pieces).is_ok());
        assert!(AccessIndex::from_pieces(Vec::new()).is_err());
        let mut twice = AccessIndex::default().into_pieces(4);
        twice.extend(AccessIndex::default().into_pieces(4));
        assert!(AccessIndex::from_pieces(twice).is_err());
    }
}
