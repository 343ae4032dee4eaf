//! Property test: random sequences of appends (random streams, random
//! expectations, repeated event ids, exact retries, multi-stream appends,
//! soft deletes and tombstones, tagged events and append conditions) run
//! against the PostgreSQL log and against a simple in-memory reference
//! model. Every result and the final log must match.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use shareledger_events::store::{LogError, PositionFrom, StreamAppend};
use shareledger_events::{
    AppendCondition, Direction, ExpectedRevision, InvalidInput, Query, StreamState, Tag,
};
use shareledger_tests::fixtures::{event_with_id, metadata, stream};
use shareledger_tests::TestDb;
use uuid::Uuid;

const STREAMS: [&str; 4] = ["a-1", "a-2", "b-1", "c-1"];
const TAGS: [&str; 3] = ["t:1", "t:2", "t:3"];
const TYPES: [&str; 2] = ["Happened", "Other"];

#[derive(Debug, Clone)]
enum IdChoice {
    Fresh,
    /// Reuse the n-th id ever generated (modulo how many exist).
    Reuse(usize),
}

#[derive(Debug, Clone)]
struct Part {
    stream: usize,
    expected: ExpectedRevision,
    /// Per event: its id, its type (index in TYPES), its tags (bits over TAGS).
    ids: Vec<(IdChoice, usize, u8)>,
}

/// A condition item: tag (index), types (bits over TYPES; 0 is any), and
/// after (a fraction of the log's length, in eighths).
type ConditionItem = (usize, u8, u8);

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Part>, Vec<ConditionItem>),
    /// Send again exactly the n-th append request made so far.
    Retry(usize),
    Delete {
        stream: usize,
        expected: ExpectedRevision,
    },
    Tombstone {
        stream: usize,
        expected: ExpectedRevision,
    },
}

fn expected_strategy() -> impl Strategy<Value = ExpectedRevision> {
    prop_oneof![
        Just(ExpectedRevision::Any),
        Just(ExpectedRevision::NoStream),
        Just(ExpectedRevision::StreamExists),
        (0u64..4).prop_map(ExpectedRevision::Exact),
    ]
}

fn part_strategy() -> impl Strategy<Value = Part> {
    let id = prop_oneof![4 => Just(IdChoice::Fresh), 1 => (0usize..64).prop_map(IdChoice::Reuse)];
    let event = (id, 0..TYPES.len(), 0u8..8);
    (
        0..STREAMS.len(),
        expected_strategy(),
        prop::collection::vec(event, 1..4),
    )
        .prop_map(|(stream, expected, ids)| Part {
            stream,
            expected,
            ids,
        })
}

/// No condition half the time; else one to three items.
fn conditions() -> impl Strategy<Value = Vec<ConditionItem>> {
    prop_oneof![
        1 => Just(Vec::new()),
        1 => prop::collection::vec((0..TAGS.len(), 0u8..4, 0u8..=8), 1..4),
    ]
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => (prop::collection::vec(part_strategy(), 1..2), conditions())
            .prop_map(|(parts, condition)| Op::Append(parts, condition)),
        2 => (prop::collection::vec(part_strategy(), 2..4), conditions())
            .prop_map(|(parts, condition)| Op::Append(parts, condition)),
        2 => (0usize..64).prop_map(Op::Retry),
        1 => (0..STREAMS.len(), expected_strategy())
            .prop_map(|(stream, expected)| Op::Delete { stream, expected }),
        1 => (0..STREAMS.len(), expected_strategy())
            .prop_map(|(stream, expected)| Op::Tombstone { stream, expected }),
    ]
}

/// A comparable outcome of one operation.
#[derive(Debug, Clone, PartialEq)]
enum Outcome {
    Appended(Vec<Vec<(Uuid, u64, u64)>>),
    Deleted(u64),
    Invalid(InvalidInput),
    Wrong {
        stream: String,
        expected: ExpectedRevision,
        actual: StreamState,
    },
    Tombstoned(String),
    NotFound(String),
    Partial(Vec<Uuid>, Vec<Uuid>),
    Taken,
    Conflict(String, String, u64),
}

fn outcome_of_error(e: LogError) -> Outcome {
    match e {
        LogError::Invalid(i) => Outcome::Invalid(i),
        LogError::WrongExpectedRevision {
            stream,
            expected,
            actual,
        } => Outcome::Wrong {
            stream,
            expected,
            actual,
        },
        LogError::StreamTombstoned { stream } => Outcome::Tombstoned(stream),
        LogError::StreamNotFound { stream } => Outcome::NotFound(stream),
        LogError::PartialDuplicate {
            written,
            not_written,
        } => Outcome::Partial(written, not_written),
        LogError::EventIdsTaken { .. } => Outcome::Taken,
        LogError::ConditionFailed {
            tag,
            event_type,
            position,
        } => Outcome::Conflict(tag, event_type, position),
        other => panic!("unexpected error from the log: {other}"),
    }
}

#[derive(Default)]
struct ModelStream {
    last: i64,
    visible_from: i64,
    tombstoned: bool,
}

impl ModelStream {
    fn state(&self) -> StreamState {
        if self.last < self.visible_from {
            StreamState::NoStream
        } else {
            StreamState::At(self.last as u64)
        }
    }
}

/// The reference model: the log as a vector, streams as a map.
#[derive(Default)]
struct Model {
    streams: BTreeMap<String, ModelStream>,
    /// (stream, revision, event id), position = index + 1.
    log: Vec<(String, u64, Uuid)>,
    by_id: HashMap<Uuid, (String, u64, u64)>,
    /// Each position's type and tags (lifecycle events: none).
    tagged: Vec<(String, Vec<String>)>,
}

/// A request: parts (stream, expectation, events: id, type, tags), and the
/// condition (tag, type or any, after).
type Request = (
    Vec<(String, ExpectedRevision, Vec<(Uuid, String, Vec<String>)>)>,
    Vec<(String, Option<String>, u64)>,
);

impl Model {
    fn stream_mut(&mut self, name: &str) -> &mut ModelStream {
        self.streams
            .entry(name.to_owned())
            .or_insert_with(|| ModelStream {
                last: -1,
                ..Default::default()
            })
    }

    fn append(&mut self, request: &Request) -> Outcome {
        let (full, condition) = request;
        let parts: Vec<(String, ExpectedRevision, Vec<Uuid>)> = full
            .iter()
            .map(|(s, e, events)| (s.clone(), *e, events.iter().map(|e| e.0).collect()))
            .collect();
        let parts = &parts[..];
        let mut streams = HashSet::new();
        let mut ids = HashSet::new();
        for (s, _, part_ids) in parts {
            if !streams.insert(s.clone()) {
                return Outcome::Invalid(InvalidInput::DuplicateStream(s.clone()));
            }
            for id in part_ids {
                if !ids.insert(*id) {
                    return Outcome::Invalid(InvalidInput::DuplicateEventId(*id));
                }
            }
        }
        let all: Vec<Uuid> = parts.iter().flat_map(|p| p.2.clone()).collect();
        let found = all.iter().filter(|id| self.by_id.contains_key(id)).count();
        if found > 0 {
            if found < all.len() {
                let (w, n): (Vec<Uuid>, Vec<Uuid>) =
                    all.iter().partition(|id| self.by_id.contains_key(id));
                return Outcome::Partial(w, n);
            }
            for (s, _, part_ids) in parts {
                let bases: HashSet<i64> = part_ids
                    .iter()
                    .enumerate()
                    .map(|(i, id)| self.by_id[id].1 as i64 - i as i64)
                    .collect();
                let same = part_ids.iter().all(|id| &self.by_id[id].0 == s);
                if !same || bases.len() != 1 {
                    return Outcome::Taken;
                }
            }
            return Outcome::Appended(
                parts
                    .iter()
                    .map(|(_, _, part_ids)| {
                        part_ids
                            .iter()
                            .map(|id| (*id, self.by_id[id].1, self.by_id[id].2))
                            .collect()
                    })
                    .collect(),
            );
        }
        // The condition: the first matching event after its item's position,
        // with the first of its tags (in text order) that matched.
        let mut conflict: Option<(u64, String, String)> = None;
        for (tag, event_type, after) in condition {
            for (i, (t, tags)) in self.tagged.iter().enumerate() {
                let position = i as u64 + 1;
                if position > *after
                    && tags.contains(tag)
                    && event_type.as_ref().is_none_or(|ty| ty == t)
                {
                    let candidate = (position, tag.clone(), t.clone());
                    if conflict
                        .as_ref()
                        .is_none_or(|c| (c.0, &c.1) > (position, tag))
                    {
                        conflict = Some(candidate);
                    }
                    break;
                }
            }
        }
        if let Some((position, tag, event_type)) = conflict {
            return Outcome::Conflict(tag, event_type, position);
        }
        let mut sorted: Vec<&(String, ExpectedRevision, Vec<Uuid>)> = parts.iter().collect();
        sorted.sort_by(|a, b| a.0.cmp(&b.0));
        for (s, expected, _) in sorted {
            let st = self.stream_mut(s);
            if st.tombstoned {
                return Outcome::Tombstoned(s.clone());
            }
            if !expected.is_met_by(st.state()) {
                return Outcome::Wrong {
                    stream: s.clone(),
                    expected: *expected,
                    actual: st.state(),
                };
            }
        }
        let mut out = Vec::new();
        for (s, _, part_events) in full {
            let mut written = Vec::new();
            for (id, event_type, tags) in part_events {
                let st = self.stream_mut(s);
                st.last += 1;
                let rev = st.last as u64;
                self.log.push((s.clone(), rev, *id));
                let mut tags = tags.clone();
                tags.sort();
                self.tagged.push((event_type.clone(), tags));
                let pos = self.log.len() as u64;
                self.by_id.insert(*id, (s.clone(), rev, pos));
                written.push((*id, rev, pos));
            }
            out.push(written);
        }
        Outcome::Appended(out)
    }

    fn end(&mut self, s: &str, expected: ExpectedRevision, tombstone: bool) -> Outcome {
        let st = self.stream_mut(s);
        if st.tombstoned {
            return Outcome::Tombstoned(s.to_owned());
        }
        let state = st.state();
        if !expected.is_met_by(state) {
            return Outcome::Wrong {
                stream: s.to_owned(),
                expected,
                actual: state,
            };
        }
        if state == StreamState::NoStream && !tombstone {
            return Outcome::NotFound(s.to_owned());
        }
        st.visible_from = st.last + 1;
        st.tombstoned = tombstone;
        let meta = format!("$${s}");
        let ms = self.stream_mut(&meta);
        ms.last += 1;
        let rev = ms.last as u64;
        // Lifecycle event ids are generated by the log; compare them as nil.
        self.log.push((meta, rev, Uuid::nil()));
        self.tagged.push((String::new(), Vec::new()));
        Outcome::Deleted(self.log.len() as u64)
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let db = TestDb::with_pool_size(4).await;
    let store = db.store();
    let mut model = Model::default();
    let mut used_ids: Vec<Uuid> = Vec::new();
    let mut requests: Vec<Request> = Vec::new();

    for (step, op) in ops.into_iter().enumerate() {
        let (request, ending) = match op {
            Op::Append(parts, items) => {
                let full: Vec<_> = parts
                    .iter()
                    .map(|p| {
                        let events = p
                            .ids
                            .iter()
                            .map(|(c, event_type, bits)| {
                                let id = match c {
                                    IdChoice::Reuse(n) if !used_ids.is_empty() => {
                                        used_ids[n % used_ids.len()]
                                    }
                                    _ => {
                                        let id = Uuid::new_v4();
                                        used_ids.push(id);
                                        id
                                    }
                                };
                                let tags = (0..TAGS.len())
                                    .filter(|t| bits & (1 << t) != 0)
                                    .map(|t| TAGS[t].to_owned())
                                    .collect();
                                (id, TYPES[*event_type].to_owned(), tags)
                            })
                            .collect();
                        (STREAMS[p.stream].to_owned(), p.expected, events)
                    })
                    .collect();
                let length = model.log.len() as u64;
                let mut condition = Vec::new();
                for (tag, types, eighths) in &items {
                    let after = length * u64::from(*eighths) / 8;
                    let tag = TAGS[*tag].to_owned();
                    if *types == 0 || *types == 3 {
                        condition.push((tag.clone(), None, after));
                    }
                    for (t, name) in TYPES.iter().enumerate() {
                        if *types != 3 && types & (1 << t) != 0 {
                            condition.push((tag.clone(), Some((*name).to_owned()), after));
                        }
                    }
                }
                let request = (full, condition);
                requests.push(request.clone());
                (Some(request), None)
            }
            Op::Retry(n) if !requests.is_empty() => {
                (Some(requests[n % requests.len()].clone()), None)
            }
            Op::Retry(_) => continue,
            Op::Delete { stream, expected } => (None, Some((stream, expected, false))),
            Op::Tombstone { stream, expected } => (None, Some((stream, expected, true))),
        };
        let (ours, theirs) = if let Some(request) = request {
            let appends = request
                .0
                .iter()
                .map(|(s, expected, events)| StreamAppend {
                    stream: stream(s),
                    expected: *expected,
                    events: events
                        .iter()
                        .map(|(id, event_type, tags)| {
                            event_with_id(*id, event_type, serde_json::json!({"step": step}))
                                .with_tags(
                                    tags.iter()
                                        .map(|t| Tag::parse(t.as_str()).unwrap())
                                        .collect(),
                                )
                                .unwrap()
                        })
                        .collect(),
                })
                .collect();
            let mut query = Query::new();
            for (tag, event_type, after) in &request.1 {
                let types: Vec<&str> = event_type.iter().map(String::as_str).collect();
                query.push(Tag::parse(tag.as_str()).unwrap(), &types, *after);
            }
            let condition = AppendCondition::new(query);
            let ours = match store
                .append_conditioned(appends, &[], (!request.1.is_empty()).then_some(&condition))
                .await
            {
                Ok(results) => Outcome::Appended(
                    results
                        .iter()
                        .map(|r| {
                            r.events
                                .iter()
                                .map(|e| (e.event_id, e.stream_revision, e.global_position))
                                .collect()
                        })
                        .collect(),
                ),
                Err(e) => outcome_of_error(e),
            };
            (ours, model.append(&request))
        } else {
            let (s, expected, tombstone) = ending.expect("an ending op");
            let name = stream(STREAMS[s]);
            let result = if tombstone {
                store.tombstone_stream(&name, expected, metadata()).await
            } else {
                store.delete_stream(&name, expected, metadata()).await
            };
            let ours = match result {
                Ok(p) => Outcome::Deleted(p),
                Err(e) => outcome_of_error(e),
            };
            (ours, model.end(STREAMS[s], expected, tombstone))
        };
        prop_assert_eq!(ours, theirs, "step {}", step);
    }

    let log = store
        .read_all(Direction::Forwards, PositionFrom::Edge, 10_000)
        .await
        .map_err(|e| TestCaseError::fail(e.to_string()))?;
    let ours: Vec<(String, u64, Uuid)> = log
        .iter()
        .map(|e| {
            let id = if e.stream.starts_with("$$") {
                Uuid::nil()
            } else {
                e.event_id
            };
            (e.stream.clone(), e.stream_revision, id)
        })
        .collect();
    prop_assert_eq!(ours, model.log.clone());
    for (i, e) in log.iter().enumerate() {
        prop_assert_eq!(e.global_position, i as u64 + 1);
    }
    for (name, st) in &model.streams {
        if name.starts_with("$$") {
            continue;
        }
        let info = store
            .stream_info(&stream(name))
            .await
            .map_err(|e| TestCaseError::fail(e.to_string()))?;
        prop_assert_eq!(info.state, st.state(), "stream {}", name);
        prop_assert_eq!(info.tombstoned, st.tombstoned, "stream {}", name);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 40, max_shrink_iters: 200, ..ProptestConfig::default() })]

    #[test]
    fn the_log_behaves_like_the_reference_model(ops in prop::collection::vec(op_strategy(), 1..40)) {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(run(ops))?;
    }
}
