//! Dynamic consistency boundaries (the DCB specification, dcb.events): what
//! an event is about ([`Tag`]s), which events a decision depends on
//! ([`Query`]), and the condition its append carries ([`AppendCondition`]):
//! "no event matching the query was appended after the positions I read".
//!
//! Pure data. The log stores every event's tags (`sl_event_tags`) and checks
//! a condition atomically with the append it guards (`docs/event-store.md`);
//! the catalog says which tags each domain event carries
//! (`catalog::tags`); the decisions in `core` build their queries.
//!
//! One difference from the specification's single `after` position: each
//! query item carries its own. A decision reads its facts from several
//! streams, each known complete up to its own position; an item about facts
//! read from a stream known up to position P asks "nothing after P", so
//! events the decision has already seen never count as conflicts.

use std::fmt;

use serde::{Deserialize, Serialize};

use crate::envelope::{EventType, InvalidInput};

/// The longest tag, in bytes.
pub const MAX_TAG_LEN: usize = 200;
/// The most tags one event may carry.
pub const MAX_TAGS_PER_EVENT: usize = 32;
/// The most items one condition may have: a guard against a runaway
/// query, well above what a decision needs (an import of the most rows a
/// file may hold names each of its usernames: `MAX_IMPORT_ROWS`, 500).
pub const MAX_CONDITION_ITEMS: usize = 2_048;

/// What an event is about: `<kind>:<value>`, e.g. `object:0d1c…` or
/// `user:7f3a…`. The kind is lower-case ASCII letters and `_`; the value is
/// printable ASCII without spaces.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Tag(String);

impl Tag {
    /// Parses a tag.
    pub fn parse(raw: impl Into<String>) -> Result<Self, InvalidInput> {
        let raw = raw.into();
        let bad = |reason: &'static str| InvalidInput::TagFormat {
            tag: raw.chars().take(MAX_TAG_LEN).collect(),
            reason,
        };
        if raw.len() > MAX_TAG_LEN {
            return Err(bad("longer than 200 bytes"));
        }
        let Some((kind, value)) = raw.split_once(':') else {
            return Err(bad("no ':' between kind and value"));
        };
        if kind.is_empty() || !kind.bytes().all(|b| b.is_ascii_lowercase() || b == b'_') {
            return Err(bad("the kind must be lower-case ASCII letters and '_'"));
        }
        if value.is_empty() || !value.bytes().all(|b| b.is_ascii_graphic()) {
            return Err(bad("the value must be printable ASCII without spaces"));
        }
        Ok(Self(raw))
    }

    /// A tag of `kind` for `value` (a UUID, a code): panics only on a kind
    /// or value the catalog never produces.
    pub fn of(kind: &str, value: impl fmt::Display) -> Self {
        Self::parse(format!("{kind}:{value}")).expect("catalog tags are well formed")
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for Tag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl TryFrom<String> for Tag {
    type Error = InvalidInput;
    fn try_from(raw: String) -> Result<Self, Self::Error> {
        Self::parse(raw)
    }
}

impl From<Tag> for String {
    fn from(tag: Tag) -> Self {
        tag.0
    }
}

/// One item of a query: the events tagged `tag` whose type is one of
/// `types` (any type when `types` is empty), appended after position
/// `after`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct QueryItem {
    pub tag: Tag,
    pub types: Vec<EventType>,
    pub after: u64,
}

/// The events a decision depends on: those matching any item.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Query {
    items: Vec<QueryItem>,
}

impl Query {
    pub fn new() -> Self {
        Self::default()
    }

    /// Adds an item (events tagged `tag`, of `types` or any type, after
    /// `after`); an item equal to one already there is not repeated.
    pub fn with(mut self, tag: Tag, types: &[&str], after: u64) -> Self {
        self.push(tag, types, after);
        self
    }

    /// See [`Query::with`].
    pub fn push(&mut self, tag: Tag, types: &[&str], after: u64) {
        let types = types
            .iter()
            .map(|t| EventType::parse(*t).expect("catalog event types are valid"))
            .collect();
        let item = QueryItem { tag, types, after };
        if !self.items.contains(&item) {
            self.items.push(item);
        }
    }

    pub fn items(&self) -> &[QueryItem] {
        &self.items
    }

    pub fn is_empty(&self) -> bool {
        self.items.is_empty()
    }
}

/// An append's condition: it is written only if no event matching `query`
/// was appended after its items' positions; otherwise nothing is written
/// and the append fails with the first conflicting event.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AppendCondition {
    pub query: Query,
}

impl AppendCondition {
    pub fn new(query: Query) -> Self {
        Self { query }
    }

    /// Checks the condition's size.
    pub fn check(&self) -> Result<(), InvalidInput> {
        let items = self.query.items().len();
        if items > MAX_CONDITION_ITEMS {
            return Err(InvalidInput::TooManyConditionItems { count: items });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tags_are_kind_colon_value() {
        assert_eq!(Tag::parse("object:abc-1").unwrap().as_str(), "object:abc-1");
        assert_eq!(
            Tag::of("user", uuid::Uuid::nil()).as_str(),
            "user:00000000-0000-0000-0000-000000000000"
        );
        for bad in ["object", ":x", "Object:x", "object:", "object:a b", "ob1:x"] {
            assert!(Tag::parse(bad).is_err(), "{bad}");
        }
        assert!(Tag::parse(format!("k:{}", "x".repeat(MAX_TAG_LEN))).is_err());
    }

    #[test]
    fn a_query_keeps_each_item_once() {
        let tag = Tag::of("object", "o1");
        let query = Query::new()
            .with(tag.clone(), &["ObjectCreated"], 5)
            .with(tag.clone(), &["ObjectCreated"], 5)
            .with(tag, &[], 5);
        assert_eq!(query.items().len(), 2);
    }
}
