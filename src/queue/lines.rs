//! The in-memory schedule of the open jobs and dead letters, rebuilt on open from the snapshot
//! and the queue log after it.
//!
//! # Invariants
//!
//! - Each ordering key has a line of its `Ready`, `Retrying` and `Leased` jobs in id (arrival)
//!   order. Only the head of a line may run, and only while no job of that key is leased.
//! - A job is in its connector's ready queue at most once, and only as the head of an idle line
//!   that is due. Stale ready entries are checked and dropped when popped.
//! - `Parked` jobs wait in `parked` under the dependency they need; `Held` jobs wait under their
//!   key; both have a timer (give up / recheck) and re-enter their line in id order.
//! - `counts` and `by_state` agree with `entries` after every change: every change of an entry
//!   goes through `put`, `take` or `count` (a proptest recounts after random operations).

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};

use foldhash::{HashMap as FastMap, HashSet as FastSet};
use std::sync::Arc;

use super::job::{JobId, State};

/// Where a job's records are in the queue log (0: none).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Locs {
    pub created: u64,
    /// Its last state change.
    pub last: u64,
    /// Event data that replaces the journaled event (an operator's edit, or a copy).
    pub payload: u64,
}

/// What the schedule knows of one job.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    pub key: Arc<str>,
    pub connector: Arc<str>,
    pub state: State,
    pub due: Option<i64>,
    /// Boxed, like the reason: a backlog of a million ready jobs has neither, and each entry
    /// stays small.
    pub waits_for: Option<Box<(String, String)>>,
    /// Reason code, for grouping dead letters and waiting jobs.
    pub reason: Option<Box<str>>,
    pub in_doubt: bool,
    pub at: Locs,
}

#[derive(Default)]
pub struct Lines {
    /// Every open job and dead letter, by id (so lists page in id order without sorting).
    entries: BTreeMap<JobId, Entry>,
    /// Jobs per (connector, state), kept as entries change (the overview reads it).
    counts: HashMap<(Arc<str>, State), u64>,
    /// The ids of entries in every state but `Ready` (the bulk of a backlog, listed by walking
    /// `entries`): dead letters, parked and held jobs list without a full walk.
    by_state: BTreeSet<(State, JobId)>,
    /// Connector names seen, shared by the entries.
    connectors: Vec<Arc<str>>,
    // Looked up several times per job placed or leased: foldhash, not SipHash (the keys come
    // from signed events; a start with 1M queued jobs spent ~10% of its time hashing).
    lines: FastMap<Arc<str>, VecDeque<JobId>>,
    busy: FastSet<Arc<str>>,
    ready: FastMap<Arc<str>, VecDeque<JobId>>,
    queued: FastSet<JobId>,
    timers: BTreeSet<(i64, JobId)>,
    parked: FastMap<(String, String), Vec<JobId>>,
    held: FastMap<Arc<str>, Vec<JobId>>,
    /// How many entries the map held when it was last packed.
    compacted_at: usize,
}

impl Lines {
    pub fn get(&self, id: JobId) -> Option<&Entry> {
        self.entries.get(&id)
    }

    /// Where a job's records are (changing them changes no count or line).
    pub fn locs_mut(&mut self, id: JobId) -> Option<&mut Locs> {
        self.entries.get_mut(&id).map(|entry| &mut entry.at)
    }

    /// Every entry, in id order (for the snapshot at a clean shutdown).
    pub fn entries(&self) -> impl ExactSizeIterator<Item = (JobId, &Entry)> + Clone {
        self.entries.iter().map(|(id, entry)| (*id, entry))
    }

    /// Rebuilds the map of entries with full nodes: placed one by one in id order, a million
    /// entries leave half-empty nodes behind (~100 MB). `append` into a map that is not empty
    /// merges both into a freshly packed tree, freeing the old nodes as it goes (no copy of
    /// the whole map at once, as `collect` would make): the first entry starts the new map.
    pub fn compact(&mut self) {
        let Some(first) = self.entries.pop_first() else {
            return;
        };
        let mut packed = BTreeMap::from([first]);
        packed.append(&mut self.entries);
        self.entries = packed;
        self.compacted_at = self.entries.len();
    }

    /// Compacts once the map has doubled since it was last packed (upkeep calls this).
    pub fn compact_if_grown(&mut self) {
        if self.entries.len() >= 100_000 && self.entries.len() >= 2 * self.compacted_at.max(1) {
            self.compact();
        }
    }

    /// Stores an entry for an id `insert` has just removed, keeping the counts and the index.
    fn put(&mut self, id: JobId, entry: Entry) {
        self.count(id, &entry.connector, entry.state, true);
        let earlier = self.entries.insert(id, entry);
        debug_assert!(earlier.is_none(), "put after remove");
    }

    /// Drops an entry, keeping the counts and the state index.
    fn take(&mut self, id: JobId) -> Option<Entry> {
        let entry = self.entries.remove(&id)?;
        self.count(id, &entry.connector, entry.state, false);
        Some(entry)
    }

    /// Counts a job of `connector` in `state` in (`added`) or out of the counts and the index.
    fn count(&mut self, id: JobId, connector: &Arc<str>, state: State, added: bool) {
        let count = self.counts.entry((connector.clone(), state)).or_default();
        if added {
            *count += 1;
        } else {
            *count -= 1;
            if *count == 0 {
                self.counts.remove(&(connector.clone(), state));
            }
        }
        if state != State::Ready {
            if added {
                self.by_state.insert((state, id));
            } else {
                self.by_state.remove(&(state, id));
            }
        }
    }

    /// Places a job by its entry's state (a leased job found on open comes back ready, in doubt).
    pub fn insert(&mut self, id: JobId, mut entry: Entry, now: i64) {
        if entry.state == State::Leased {
            entry.state = State::Ready;
            entry.in_doubt = true;
        }
        self.remove(id);
        self.share_names(&mut entry);
        let key = entry.key.clone();
        match entry.state {
            State::Ready | State::Retrying => {
                if let Some(due) = entry.due.filter(|_| entry.state == State::Retrying) {
                    self.timers.insert((due, id));
                }
                let line = self.lines.entry(key.clone()).or_default();
                let at = line.partition_point(|other| *other < id);
                line.insert(at, id);
                self.put(id, entry);
                self.wake_held(&key);
                self.promote(&key, now);
            }
            State::Parked => {
                if let Some(due) = entry.due {
                    self.timers.insert((due, id));
                }
                if let Some(on) = &entry.waits_for {
                    self.parked.entry((**on).clone()).or_default().push(id);
                }
                self.put(id, entry);
            }
            State::Held => {
                if let Some(due) = entry.due {
                    self.timers.insert((due, id));
                }
                self.held.entry(key.clone()).or_default().push(id);
                self.put(id, entry);
            }
            State::Dead => {
                self.put(id, entry);
            }
            State::Leased | State::Done | State::Skipped => {}
        }
        // The job may have left the head of its line: the next one may run.
        self.promote(&key, now);
    }

    /// Points the entry at the key and connector names the schedule already holds, so a
    /// backlog of a million jobs over a few thousand keys keeps a few thousand names.
    fn share_names(&mut self, entry: &mut Entry) {
        if let Some((key, _)) = self.lines.get_key_value(&entry.key) {
            entry.key = key.clone();
        }
        match self.connectors.iter().find(|c| **c == entry.connector) {
            Some(connector) => entry.connector = connector.clone(),
            None => self.connectors.push(entry.connector.clone()),
        }
    }

    /// Forgets a job (settled, or about to be placed again); the next job of its key may run.
    pub fn remove(&mut self, id: JobId) -> Option<Entry> {
        let entry = self.take(id)?;
        if let Some(due) = entry.due {
            self.timers.remove(&(due, id));
        }
        self.queued.remove(&id);
        match entry.state {
            State::Ready | State::Retrying | State::Leased => {
                if let Some(line) = self.lines.get_mut(&entry.key) {
                    line.retain(|other| *other != id);
                    if line.is_empty() {
                        self.lines.remove(&entry.key);
                    }
                }
                if entry.state == State::Leased {
                    self.busy.remove(&entry.key);
                }
            }
            State::Parked => {
                if let Some(on) = &entry.waits_for
                    && let Some(waiting) = self.parked.get_mut(&**on)
                {
                    waiting.retain(|other| *other != id);
                    if waiting.is_empty() {
                        self.parked.remove(&**on);
                    }
                }
            }
            State::Held => {
                if let Some(waiting) = self.held.get_mut(&entry.key) {
                    waiting.retain(|other| *other != id);
                    if waiting.is_empty() {
                        self.held.remove(&entry.key);
                    }
                }
            }
            State::Dead | State::Done | State::Skipped => {}
        }
        Some(entry)
    }

    /// Queues the head of `key`'s line if it may run now.
    pub fn promote(&mut self, key: &Arc<str>, now: i64) {
        if self.busy.contains(key) {
            return;
        }
        let Some(&head) = self.lines.get(key).and_then(VecDeque::front) else {
            return;
        };
        let entry = &self.entries[&head];
        let due = match entry.state {
            State::Ready => true,
            State::Retrying => entry.due.is_none_or(|due| due <= now),
            _ => false,
        };
        if due && self.queued.insert(head) {
            self.ready
                .entry(entry.connector.clone())
                .or_default()
                .push_back(head);
        }
    }

    /// Takes the next runnable job of `connector` and marks it leased.
    pub fn pop_ready(&mut self, connector: &str) -> Option<(JobId, bool)> {
        let queue = self.ready.get_mut(connector)?;
        while let Some(id) = queue.pop_front() {
            if !self.queued.remove(&id) {
                continue;
            }
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            let head = self.lines.get(&entry.key).and_then(VecDeque::front) == Some(&id);
            if !head || self.busy.contains(&entry.key) {
                continue;
            }
            let entry = self.entries.get_mut(&id).expect("present");
            let (from, due) = (entry.state, entry.due.take());
            entry.state = State::Leased;
            let (key, connector, in_doubt) =
                (entry.key.clone(), entry.connector.clone(), entry.in_doubt);
            if let Some(due) = due {
                self.timers.remove(&(due, id));
            }
            self.count(id, &connector, from, false);
            self.count(id, &connector, State::Leased, true);
            self.busy.insert(key);
            return Some((id, in_doubt));
        }
        None
    }

    /// Whether `connector` has a job ready to run.
    pub fn has_ready(&self, connector: &str) -> bool {
        self.ready.get(connector).is_some_and(|q| !q.is_empty())
    }

    /// Timers that have fired: retrying jobs become runnable here; held and parked ones are
    /// returned for the queue to act on.
    pub fn fire(&mut self, now: i64) -> Vec<(JobId, State)> {
        let mut fired = Vec::new();
        while let Some(&(due, id)) = self.timers.first() {
            if due > now {
                break;
            }
            self.timers.pop_first();
            let Some(entry) = self.entries.get(&id) else {
                continue;
            };
            match entry.state {
                State::Retrying => {
                    let key = entry.key.clone();
                    self.promote(&key, now);
                }
                State::Held | State::Parked => fired.push((id, entry.state)),
                _ => {}
            }
        }
        fired
    }

    /// The next time a timer fires.
    pub fn next_timer(&self) -> Option<i64> {
        self.timers.first().map(|(due, _)| *due)
    }

    /// The jobs parked on (kind, id).
    pub fn parked_on(&self, kind: &str, id: &str) -> Vec<JobId> {
        self.parked
            .get(&(kind.to_owned(), id.to_owned()))
            .cloned()
            .unwrap_or_default()
    }

    /// A new job joined `key`'s line: held jobs of the key are rechecked now (their timer fires).
    fn wake_held(&mut self, key: &Arc<str>) {
        for id in self.held.get(key).cloned().unwrap_or_default() {
            if let Some(entry) = self.entries.get_mut(&id) {
                if let Some(due) = entry.due {
                    self.timers.remove(&(due, id));
                }
                entry.due = Some(i64::MIN);
                self.timers.insert((i64::MIN, id));
            }
        }
    }

    /// Counts per state and connector of the jobs the schedule holds.
    pub fn counts(&self) -> HashMap<(Arc<str>, State), u64> {
        self.counts.clone()
    }

    /// Ids of entries in `state` (dead letters, parked, held…), in id order.
    /// Whether any entry is in `state` (cheap: one step into the state index).
    pub fn any_in(&self, state: State) -> bool {
        !self.newest_in(state, JobId::MAX, 1).is_empty()
    }

    pub fn ids_in(&self, state: State) -> Vec<JobId> {
        self.newest_in(state, JobId::MAX, usize::MAX)
            .into_iter()
            .rev()
            .collect()
    }

    /// Up to `limit` ids of entries in `state` below `before`, newest first.
    pub fn newest_in(&self, state: State, before: JobId, limit: usize) -> Vec<JobId> {
        if state == State::Ready {
            return self
                .entries
                .range(..before)
                .rev()
                .filter(|(_, e)| e.state == state)
                .map(|(id, _)| *id)
                .take(limit)
                .collect();
        }
        self.by_state
            .range((state, 0)..(state, before))
            .rev()
            .map(|(_, id)| *id)
            .take(limit)
            .collect()
    }

    /// Up to `limit` ids of any entry below `before`, newest first.
    pub fn newest(&self, before: JobId, limit: usize) -> Vec<JobId> {
        self.entries
            .range(..before)
            .rev()
            .map(|(id, _)| *id)
            .take(limit)
            .collect()
    }

    /// After a crash: every job that may have been in flight (ready or retrying) is in doubt.
    pub fn mark_in_doubt(&mut self) {
        for entry in self.entries.values_mut() {
            if matches!(entry.state, State::Ready | State::Retrying) {
                entry.in_doubt = true;
            }
        }
    }

    /// Entries in `state` grouped by reason code: (reason, count, up to `keep` newest ids).
    pub fn groups(&self, state: State, keep: usize) -> BTreeMap<String, (u64, Vec<JobId>)> {
        let mut groups: BTreeMap<String, (u64, Vec<JobId>)> = BTreeMap::new();
        for id in self.newest_in(state, JobId::MAX, usize::MAX) {
            let reason = self.entries[&id].reason.as_deref().unwrap_or_default();
            if !groups.contains_key(reason) {
                groups.insert(reason.to_owned(), (0, Vec::new()));
            }
            let (count, ids) = groups.get_mut(reason).expect("inserted above");
            *count += 1;
            if ids.len() < keep {
                ids.push(id);
            }
        }
        groups
    }

    /// The oldest job still to be worked on.
    pub fn oldest_open(&self) -> Option<JobId> {
        self.entries
            .iter()
            .find(|(_, e)| e.state.is_open())
            .map(|(id, _)| *id)
    }
}

#[cfg(test)]
mod tests {
    use proptest::prelude::*;

    use super::*;

    fn entry(key: u8, connector: u8, state: State, due: Option<i64>) -> Entry {
        Entry {
            key: Arc::from(format!("k{key}")),
            connector: Arc::from(format!("c{connector}")),
            state,
            due,
            waits_for: (state == State::Parked)
                .then(|| Box::new(("customer".into(), format!("a{key}")))),
            reason: (state == State::Dead).then(|| format!("r{}", key % 2).into()),
            in_doubt: false,
            at: Locs::default(),
        }
    }

    /// The kept counts and state index agree with a count over the entries themselves.
    fn check(lines: &Lines) {
        let mut counts: HashMap<(Arc<str>, State), u64> = HashMap::new();
        for entry in lines.entries.values() {
            *counts
                .entry((entry.connector.clone(), entry.state))
                .or_default() += 1;
        }
        assert_eq!(lines.counts(), counts);
        for state in State::ALL {
            let ids: Vec<JobId> = lines
                .entries
                .iter()
                .filter(|(_, e)| e.state == state)
                .map(|(id, _)| *id)
                .collect();
            assert_eq!(lines.ids_in(state), ids, "{state:?}");
            let newest: Vec<JobId> = ids.iter().rev().copied().take(3).collect();
            assert_eq!(lines.newest_in(state, JobId::MAX, 3), newest);
        }
        let oldest = lines
            .entries
            .iter()
            .filter(|(_, e)| e.state.is_open())
            .map(|(id, _)| *id)
            .min();
        assert_eq!(lines.oldest_open(), oldest);
    }

    #[derive(Debug, Clone)]
    enum Op {
        Insert(JobId, u8, u8, usize),
        Pop(u8),
        Remove(JobId),
        Fire(i64),
        Compact,
    }

    fn op() -> impl Strategy<Value = Op> {
        prop_oneof![
            (0..40u64, 0..4u8, 0..2u8, 0..State::ALL.len())
                .prop_map(|(id, key, c, s)| Op::Insert(id, key, c, s)),
            (0..2u8).prop_map(Op::Pop),
            (0..40u64).prop_map(Op::Remove),
            (0..100i64).prop_map(Op::Fire),
            Just(Op::Compact),
        ]
    }

    proptest! {
        // Failures are shown with their input; no regressions file at the crate root.
        #![proptest_config(ProptestConfig { failure_persistence: None, ..ProptestConfig::default() })]
        #[test]
        fn counts_and_state_index_follow_every_change(ops in prop::collection::vec(op(), 1..120)) {
            let mut lines = Lines::default();
            for op in ops {
                match op {
                    Op::Insert(id, key, connector, state) => {
                        let state = State::ALL[state];
                        lines.insert(id, entry(key, connector, state, Some(id as i64)), 50);
                    }
                    Op::Pop(connector) => {
                        lines.pop_ready(&format!("c{connector}"));
                    }
                    Op::Remove(id) => {
                        lines.remove(id);
                    }
                    Op::Fire(now) => {
                        lines.fire(now);
                    }
                    Op::Compact => {
                        let before: Vec<(JobId, Entry)> =
                            lines.entries().map(|(id, e)| (id, e.clone())).collect();
                        lines.compact();
                        let after: Vec<(JobId, Entry)> =
                            lines.entries().map(|(id, e)| (id, e.clone())).collect();
                        prop_assert_eq!(before, after);
                    }
                }
                check(&lines);
            }
        }
    }

    #[test]
    fn groups_count_every_dead_letter_and_keep_the_newest_ids() {
        let mut lines = Lines::default();
        for id in 1..=9 {
            lines.insert(id, entry(id as u8, 0, State::Dead, None), 0);
        }
        lines.insert(10, entry(10, 0, State::Ready, None), 0);
        let groups = lines.groups(State::Dead, 2);
        assert_eq!(groups["r0"], (4, vec![8, 6]));
        assert_eq!(groups["r1"], (5, vec![9, 7]));
    }
}
