//! A model-based test of the embedded queue: random operations (enqueue, lease, settle,
//! releases of parked jobs with a settle or on their own, operator actions, upkeep with
//! snapshots, copy-forward and segment deletion) with crashes at random points that tear the
//! log's unsynced tail, checked against a plain in-memory model after every reopen: the queue
//! must come back as the model stood after some operation at or after the last one made
//! durable.

use std::collections::BTreeMap;
use std::time::Duration;

use proptest::prelude::*;
use serde_json::json;

use super::*;
use crate::journal::segment::segment_path;

const KEYS: [&str; 4] = ["A", "B", "C", "D"];
const CONNECTORS: [&str; 2] = ["erp", "crm"];
const LATER: i64 = i64::MAX / 4;

#[derive(Debug, Clone)]
enum Op {
    Enqueue(Vec<(usize, usize)>),
    Lease(usize),
    Settle(usize, u8),
    Act(usize, bool),
    Resubmit(usize, bool),
    /// What the jobs parked on a key's customer wait for arrived without a delivery.
    Release(usize),
    Upkeep,
    Sync,
    Crash(u16),
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        4 => prop::collection::vec((0..KEYS.len(), 0..CONNECTORS.len()), 1..4).prop_map(Op::Enqueue),
        4 => (0..CONNECTORS.len()).prop_map(Op::Lease),
        4 => (0..8usize, 0..6u8).prop_map(|(n, how)| Op::Settle(n, how)),
        1 => (0..8usize, any::<bool>()).prop_map(|(n, retry)| Op::Act(n, retry)),
        1 => (0..8usize, any::<bool>()).prop_map(|(n, edit)| Op::Resubmit(n, edit)),
        1 => (0..KEYS.len()).prop_map(Op::Release),
        1 => Just(Op::Upkeep),
        1 => Just(Op::Sync),
        1 => any::<u16>().prop_map(Op::Crash),
    ]
}

/// What the model knows of a job.
#[derive(Debug, Clone, PartialEq)]
struct Model {
    key: usize,
    connector: usize,
    state: State,
    due: Option<i64>,
    waits_for: Option<(String, String)>,
    reason: Option<String>,
    payload: Option<serde_json::Value>,
}

/// What the schedule holds of a job: (state, due, dependency, reason code).
type Seen = (State, Option<i64>, Option<(String, String)>, Option<String>);

#[derive(Debug, Clone, Default, PartialEq)]
struct World {
    jobs: BTreeMap<JobId, Model>,
    cursor: u64,
}

impl World {
    /// The jobs that may run now: the lowest id of each key's line (ready, retrying, leased
    /// jobs) when it is ready and no job of its key is leased.
    fn runnable(&self) -> Vec<JobId> {
        let mut heads = BTreeMap::new();
        for (id, job) in &self.jobs {
            if matches!(job.state, State::Ready | State::Retrying | State::Leased) {
                heads.entry(job.key).or_insert(*id);
            }
        }
        let busy = |key| {
            self.jobs
                .values()
                .any(|j| j.key == key && j.state == State::Leased)
        };
        heads
            .into_iter()
            .filter(|(key, id)| self.jobs[id].state == State::Ready && !busy(*key))
            .map(|(_, id)| id)
            .collect()
    }

    /// After a crash: nothing is leased.
    fn crashed(mut self) -> World {
        for job in self.jobs.values_mut() {
            if job.state == State::Leased {
                job.state = State::Ready;
            }
        }
        self
    }

    /// What the schedule should hold of `id`: (state, due, dependency, reason code).
    fn expected(&self, id: JobId) -> Option<Seen> {
        let job = self.jobs.get(&id)?;
        // A held job's recheck time moves when its key gets a new job (lines.rs): not compared.
        let due = job.due.filter(|_| job.state != State::Held);
        job.state
            .is_held_in_memory()
            .then(|| (job.state, due, job.waits_for.clone(), job.reason.clone()))
    }
}

fn new_job(key: usize, connector: usize) -> Job {
    super::tests::job(KEYS[key], CONNECTORS[connector])
}

fn options() -> Options {
    Options {
        segment_bytes: 4096,
        snapshot_records: 1,
        snapshot_every: Duration::ZERO,
    }
}

fn open(dir: &std::path::Path) -> Embedded {
    let store = Store::open(dir, None, 4).unwrap();
    Embedded::open(&store, Clock::new(), options()).unwrap()
}

/// The queue agrees with `world` on every job either has seen.
fn agrees(queue: &Embedded, world: &World, ids: &[JobId]) -> bool {
    ids.iter().all(|id| {
        let found = queue.entry(*id).map(|e| {
            let state = match e.state {
                State::Leased => State::Ready,
                other => other,
            };
            let due = e.due.filter(|_| state != State::Held);
            (
                state,
                due,
                e.waits_for.map(|w| *w),
                e.reason.map(String::from),
            )
        });
        let expected = world.expected(*id).map(|(state, due, waits, reason)| {
            let state = match state {
                State::Leased => State::Ready,
                other => other,
            };
            (state, due, waits, reason)
        });
        found == expected
            && (expected.is_none()
                || queue
                    .get(*id)
                    .is_ok_and(|job| job.payload == world.jobs[id].payload))
    }) && queue.cursor().unwrap().next_seq == world.cursor
}

fn run(ops: Vec<Op>) {
    let dir = tempfile::tempdir().unwrap();
    let mut queue = open(dir.path());
    let mut world = World {
        cursor: 1,
        ..World::default()
    };
    // The states the world passed through since the last durable point: a crash may come back
    // to any of them.
    let mut since_sync = vec![world.clone()];
    let mut synced_end = queue.log.durable_end();
    let mut leased: Vec<JobId> = Vec::new();
    let mut ids: Vec<JobId> = Vec::new();
    for op in ops {
        let mut durable = false;
        match op.clone() {
            Op::Enqueue(jobs) => {
                world.cursor += 1;
                let cursor = Cursor {
                    next_seq: world.cursor,
                    at: None,
                };
                let new = jobs.iter().map(|(k, c)| new_job(*k, *c)).collect();
                let given = queue.enqueue(new, cursor).unwrap();
                for (id, (key, connector)) in given.iter().zip(jobs) {
                    assert!(!world.jobs.contains_key(id), "id {id} given twice");
                    let job = Model {
                        key,
                        connector,
                        state: State::Ready,
                        due: None,
                        waits_for: None,
                        reason: None,
                        payload: None,
                    };
                    world.jobs.insert(*id, job);
                    ids.push(*id);
                }
            }
            Op::Lease(connector) => {
                let runnable: Vec<JobId> = world
                    .runnable()
                    .into_iter()
                    .filter(|id| world.jobs[id].connector == connector)
                    .collect();
                match queue.try_lease(CONNECTORS[connector]).unwrap() {
                    Some(job) => {
                        assert!(
                            runnable.contains(&job.id),
                            "{} is not the head of an idle line: {runnable:?}",
                            job.id
                        );
                        assert_eq!(job.payload, world.jobs[&job.id].payload);
                        world.jobs.get_mut(&job.id).unwrap().state = State::Leased;
                        leased.push(job.id);
                    }
                    None => assert!(runnable.is_empty(), "{runnable:?} could run"),
                }
            }
            Op::Settle(n, how) if !leased.is_empty() => {
                let id = leased.remove(n % leased.len());
                let mut job = queue.get(id).unwrap();
                assert_eq!(job.state, State::Leased);
                let key = KEYS[world.jobs[&id].key];
                let on = (
                    "customer".to_owned(),
                    KEYS[(world.jobs[&id].key + 1) % KEYS.len()].to_owned(),
                );
                let (state, due, waits, reason) = match how {
                    0 => (State::Done, None, None, None),
                    1 => (State::Retrying, Some(LATER), None, Some("transient")),
                    2 => (State::Parked, Some(LATER), Some(on), Some("dependency")),
                    3 => (State::Held, Some(LATER), None, Some("hold")),
                    4 => (State::Dead, None, None, Some("fix_data")),
                    _ => (State::Skipped, None, None, Some("stale")),
                };
                (job.state, job.due_ms, job.waits_for) = (state, due, waits.clone());
                job.reason = reason.map(|code| Reason::new(code, "why"));
                let releases = vec![("customer".to_owned(), key.to_owned())];
                queue
                    .settle(Settle {
                        job,
                        attempt: None,
                        effects: Vec::new(),
                        releases: releases.clone(),
                    })
                    .unwrap();
                let model = world.jobs.get_mut(&id).unwrap();
                (model.state, model.due, model.waits_for) = (state, due, waits);
                model.reason = reason.map(String::from);
                if state == State::Done {
                    let settled_key = world.jobs[&id].key;
                    for (other_id, other) in world.jobs.iter_mut() {
                        if other.state == State::Parked
                            && other.waits_for.as_ref() == releases.first()
                        {
                            (other.state, other.due, other.waits_for, other.reason) =
                                (State::Ready, None, None, None);
                        }
                        // A later version delivered: the record's older dead letters are moot.
                        if other.state == State::Dead && other.key == settled_key && *other_id < id
                        {
                            (other.state, other.due, other.waits_for, other.reason) =
                                (State::Skipped, None, None, Some("superseded".into()));
                        }
                    }
                }
            }
            Op::Settle(..) => {}
            Op::Act(n, retry) | Op::Resubmit(n, retry) if !stuck(&world).is_empty() => {
                let stuck = stuck(&world);
                let id = stuck[n % stuck.len()];
                let model = world.jobs.get_mut(&id).unwrap();
                let edited = matches!(op, Op::Resubmit(_, true)).then(|| json!({"edited": id}));
                match op {
                    Op::Act(..) => {
                        let action = if retry { Action::Retry } else { Action::Skip };
                        queue.act(id, action).unwrap();
                        model.state = if retry { State::Ready } else { State::Skipped };
                        model.reason = (!retry).then(|| "skipped_by_operator".into());
                    }
                    _ => {
                        queue.resubmit(id, edited.clone()).unwrap();
                        model.state = State::Ready;
                        model.reason = None;
                        if edited.is_some() {
                            model.payload = edited;
                        }
                    }
                }
                (model.due, model.waits_for) = (None, None);
                durable = true;
            }
            Op::Act(..) | Op::Resubmit(..) => {}
            Op::Release(key) => {
                let on = ("customer".to_owned(), KEYS[key].to_owned());
                let released = queue.release_parked(std::slice::from_ref(&on)).unwrap();
                let mut expected = 0;
                for other in world.jobs.values_mut() {
                    if other.state == State::Parked && other.waits_for.as_ref() == Some(&on) {
                        (other.state, other.due, other.waits_for, other.reason) =
                            (State::Ready, None, None, None);
                        expected += 1;
                    }
                }
                assert_eq!(released, expected, "released on {on:?}");
            }
            Op::Upkeep => {
                queue.upkeep(0, &|_| None).unwrap();
                durable = true;
                for id in &ids {
                    if world.expected(*id).is_some() {
                        queue
                            .get(*id)
                            .expect("an open job's records survive upkeep");
                    }
                }
            }
            Op::Sync => {
                queue.flush().unwrap();
                durable = true;
            }
            Op::Crash(cut) => {
                queue.flush().unwrap();
                let end = queue.log.durable_end();
                drop(queue);
                tear(dir.path(), synced_end, end, cut);
                queue = open(dir.path());
                let matched = since_sync
                    .iter()
                    .rev()
                    .find(|state| agrees(&queue, &World::clone(state).crashed(), &ids))
                    .unwrap_or_else(|| {
                        let seen: Vec<_> = ids.iter().map(|id| (id, queue.entry(*id))).collect();
                        panic!("after the crash the queue matches no state since the last durable point: {seen:?}; candidates {since_sync:#?}");
                    });
                world = matched.clone().crashed();
                leased.clear();
                durable = true;
            }
        }
        if durable {
            synced_end = queue.log.durable_end();
            since_sync.clear();
        }
        since_sync.push(world.clone());
        assert!(agrees(&queue, &world, &ids), "after {op:?}");
    }
}

/// Dead, parked and held jobs: what an operator can act on.
fn stuck(world: &World) -> Vec<JobId> {
    world
        .jobs
        .iter()
        .filter(|(_, job)| matches!(job.state, State::Dead | State::Parked | State::Held))
        .map(|(id, _)| *id)
        .collect()
}

/// Zeroes the log from a point after the last durable end up to its end: the records that a
/// crash kept only in part.
fn tear(dir: &std::path::Path, synced: (u64, u64), end: (u64, u64), cut: u16) {
    let low = if synced.0 == end.0 { synced.1 } else { 0 };
    if end.1 <= low {
        return;
    }
    let from = low + u64::from(cut) % (end.1 - low + 1);
    let path = segment_path(&dir.join("queue"), end.0);
    let mut bytes = std::fs::read(&path).unwrap();
    let stop = (end.1 as usize).min(bytes.len());
    bytes[from as usize..stop].fill(0);
    std::fs::write(&path, bytes).unwrap();
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, failure_persistence: None, ..ProptestConfig::default() })]
    #[test]
    fn the_queue_comes_back_as_the_model_after_any_crash(ops in prop::collection::vec(op(), 1..80)) {
        run(ops);
    }
}
