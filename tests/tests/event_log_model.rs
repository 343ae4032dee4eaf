//! Property test: random sequences of appends (random streams, random
//! expectations, repeated event ids, exact retries, multi-stream appends,
//! soft deletes and tombstones) run against the PostgreSQL log and against a
//! simple in-memory reference model. Every result and the final log must match.

use std::collections::{BTreeMap, HashMap, HashSet};

use proptest::prelude::*;
use shareledger_events::store::{LogError, PositionFrom, StreamAppend};
use shareledger_events::{Direction, ExpectedRevision, InvalidInput, StreamState};
use shareledger_tests::fixtures::{event_with_id, metadata, stream};
use shareledger_tests::TestDb;
use uuid::Uuid;

const STREAMS: [&str; 4] = ["a-1", "a-2", "b-1", "c-1"];

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
    ids: Vec<IdChoice>,
}

#[derive(Debug, Clone)]
enum Op {
    Append(Vec<Part>),
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
    (
        0..STREAMS.len(),
        expected_strategy(),
        prop::collection::vec(id, 1..4),
    )
        .prop_map(|(stream, expected, ids)| Part {
            stream,
            expected,
            ids,
        })
}

fn op_strategy() -> impl Strategy<Value = Op> {
    prop_oneof![
        6 => prop::collection::vec(part_strategy(), 1..2).prop_map(Op::Append),
        2 => prop::collection::vec(part_strategy(), 2..4).prop_map(Op::Append),
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
}

impl Model {
    fn stream_mut(&mut self, name: &str) -> &mut ModelStream {
        self.streams
            .entry(name.to_owned())
            .or_insert_with(|| ModelStream {
                last: -1,
                ..Default::default()
            })
    }

    fn append(&mut self, parts: &[(String, ExpectedRevision, Vec<Uuid>)]) -> Outcome {
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
        for (s, _, part_ids) in parts {
            let mut written = Vec::new();
            for id in part_ids {
                let st = self.stream_mut(s);
                st.last += 1;
                let rev = st.last as u64;
                self.log.push((s.clone(), rev, *id));
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
        Outcome::Deleted(self.log.len() as u64)
    }
}

async fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let db = TestDb::with_pool_size(4).await;
    let store = db.store();
    let mut model = Model::default();
    let mut used_ids: Vec<Uuid> = Vec::new();
    let mut requests: Vec<Vec<(String, ExpectedRevision, Vec<Uuid>)>> = Vec::new();

    for (step, op) in ops.into_iter().enumerate() {
        let (request, ending) = match op {
            Op::Append(parts) => {
                let request: Vec<(String, ExpectedRevision, Vec<Uuid>)> = parts
                    .iter()
                    .map(|p| {
                        let ids = p
                            .ids
                            .iter()
                            .map(|c| match c {
                                IdChoice::Reuse(n) if !used_ids.is_empty() => {
                                    used_ids[n % used_ids.len()]
                                }
                                _ => {
                                    let id = Uuid::new_v4();
                                    used_ids.push(id);
                                    id
                                }
                            })
                            .collect();
                        (STREAMS[p.stream].to_owned(), p.expected, ids)
                    })
                    .collect();
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
                .iter()
                .map(|(s, expected, ids)| StreamAppend {
                    stream: stream(s),
                    expected: *expected,
                    events: ids
                        .iter()
                        .map(|id| event_with_id(*id, "Happened", serde_json::json!({"step": step})))
                        .collect(),
                })
                .collect();
            let ours = match store.append_multi(appends).await {
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
