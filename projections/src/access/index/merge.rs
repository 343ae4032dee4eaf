//! The k-way merge a Q-2 page reads: ordered sources (a scorecard's `shows`
//! sought to the cursor, or a sorted list), merged by key, each key once at
//! the highest level any source gives it.

use std::collections::binary_heap::PeekMut;
use std::collections::{btree_map, BTreeMap, BinaryHeap};
use std::ops::Bound;

use shareledger_core::catalog::{AccessLevel, ObjectId, ObjectKind};

use super::{target_key, TargetKey};
use crate::access::{Target, TargetKind};

/// One item of a lookup page: the target's key, its kind, the level.
pub(super) type Item = (TargetKey, TargetKind, AccessLevel);

/// An ordered source of a lookup page's items: a scorecard's `shows` from
/// the cursor on (its objects, at one level), or a list sorted by key.
pub(super) enum Source<'a> {
    Shows {
        objects: btree_map::Range<'a, ObjectId, ObjectKind>,
        level: AccessLevel,
    },
    List(std::slice::Iter<'a, Item>),
}

impl<'a> Source<'a> {
    /// The objects of `shows` whose keys may follow `from` (at most the
    /// first is not after it: the tie of a scorecard's and an object's id).
    pub(super) fn shows(
        shows: &'a BTreeMap<ObjectId, ObjectKind>,
        from: Option<TargetKey>,
        level: AccessLevel,
    ) -> Self {
        let start = match from {
            Some((id, _)) => Bound::Included(ObjectId(id)),
            None => Bound::Unbounded,
        };
        Source::Shows {
            objects: shows.range((start, Bound::Unbounded)),
            level,
        }
    }
}

impl Iterator for Source<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        match self {
            Source::Shows { objects, level } => objects.next().map(|(o, k)| {
                (
                    target_key(Target::Object(*o)),
                    TargetKind::Object(*k),
                    *level,
                )
            }),
            Source::List(items) => items.next().copied(),
        }
    }
}

/// The head of one source in a [`Merge`]: ordered by key (the smallest
/// first out of the max-heap), then by source.
#[derive(Clone, Copy, PartialEq, Eq)]
struct Head {
    key: TargetKey,
    source: usize,
    kind: TargetKind,
    level: AccessLevel,
}

impl Ord for Head {
    fn cmp(&self, other: &Self) -> std::cmp::Ordering {
        (other.key, other.source).cmp(&(self.key, self.source))
    }
}

impl PartialOrd for Head {
    fn partial_cmp(&self, other: &Self) -> Option<std::cmp::Ordering> {
        Some(self.cmp(other))
    }
}

/// A k-way merge of ordered sources: every key once, in order, at the
/// highest level any source gives it. Each step costs a heap operation
/// (logarithmic in the number of sources) per source item read; nothing is
/// read beyond what is asked.
pub(super) struct Merge<'a> {
    sources: Vec<Source<'a>>,
    heads: BinaryHeap<Head>,
}

impl<'a> Merge<'a> {
    pub(super) fn new(sources: impl IntoIterator<Item = Source<'a>>) -> Self {
        let mut sources: Vec<Source<'a>> = sources.into_iter().collect();
        let mut heads = BinaryHeap::with_capacity(sources.len());
        for (source, items) in sources.iter_mut().enumerate() {
            if let Some((key, kind, level)) = items.next() {
                heads.push(Head {
                    key,
                    source,
                    kind,
                    level,
                });
            }
        }
        Self { sources, heads }
    }

    /// Takes the smallest head and puts its source's next item in its place.
    fn pop(&mut self) -> Option<Head> {
        let mut top = self.heads.peek_mut()?;
        let head = *top;
        match self.sources[head.source].next() {
            Some((key, kind, level)) => {
                *top = Head {
                    key,
                    source: head.source,
                    kind,
                    level,
                }
            }
            None => {
                PeekMut::pop(top);
            }
        }
        Some(head)
    }

    /// The highest level the sources give `key`, skipping every smaller key
    /// (keys must be asked in increasing order).
    pub(super) fn level_at(&mut self, key: TargetKey) -> Option<AccessLevel> {
        let mut level = None;
        while self.heads.peek().is_some_and(|head| head.key <= key) {
            let head = self.pop().expect("peeked");
            if head.key == key {
                level = level.max(Some(head.level));
            }
        }
        level
    }
}

impl Iterator for Merge<'_> {
    type Item = Item;

    fn next(&mut self) -> Option<Item> {
        let head = self.pop()?;
        let mut level = head.level;
        while self.heads.peek().is_some_and(|next| next.key == head.key) {
            level = level.max(self.pop().expect("peeked").level);
        }
        Some((head.key, head.kind, level))
    }
}
