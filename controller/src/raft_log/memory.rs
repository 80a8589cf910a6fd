//! `MemLog`: the Raft log as raft-rs reads it (controller shard): the latest snapshot's
//! metadata and data, every entry after it, HardState and ConfState, all in memory. raft-rs is
//! synchronous and may read its storage on any step, so reads are served from here. The driver
//! writes each change to `DiskLog` first and only then applies it here, so raft-rs never reads
//! an entry that is not durable. Memory is bounded by the snapshot interval (entries and bytes).

use raft::eraftpb::{ConfState, Entry, HardState, Snapshot};
use raft::{GetEntriesContext, RaftState, Storage, StorageError};

/// Bytes an entry holds in memory, for the snapshot trigger (payload plus a fixed header).
fn entry_bytes(e: &Entry) -> u64 {
    (e.data.len() + e.context.len() + 32) as u64
}

pub(crate) struct MemLog {
    hard_state: HardState,
    conf_state: ConfState,
    /// The latest snapshot; index 0 and term 0 when there is none yet.
    snapshot: Snapshot,
    /// Entries `snapshot.index + 1 ..= last_index`, contiguous.
    entries: Vec<Entry>,
    entries_bytes: u64,
}

impl MemLog {
    /// A log recovered from disk. Panics if the pieces do not fit together: `DiskLog::open`
    /// checked them against the files, so a mismatch here is our bug.
    pub fn new(
        hard_state: HardState,
        conf_state: ConfState,
        snapshot: Snapshot,
        entries: Vec<Entry>,
    ) -> MemLog {
        let mut log = MemLog {
            hard_state,
            conf_state,
            snapshot,
            entries: Vec::new(),
            entries_bytes: 0,
        };
        log.replace_from(&entries);
        assert!(log.hard_state.commit >= log.snapshot_index());
        assert!(log.hard_state.commit <= log.last_index());
        log
    }

    pub fn snapshot_index(&self) -> u64 {
        self.snapshot.get_metadata().index
    }

    pub fn first_index(&self) -> u64 {
        self.snapshot_index() + 1
    }

    pub fn last_index(&self) -> u64 {
        self.snapshot_index() + self.entries.len() as u64
    }

    pub fn hard_state(&self) -> &HardState {
        &self.hard_state
    }

    pub fn conf_state(&self) -> &ConfState {
        &self.conf_state
    }

    /// Entries and their bytes since the latest snapshot.
    pub fn since_snapshot(&self) -> (u64, u64) {
        (self.entries.len() as u64, self.entries_bytes)
    }

    pub fn set_hard_state(&mut self, hs: HardState) {
        assert!(hs.term >= self.hard_state.term, "term never goes back");
        self.hard_state = hs;
    }

    pub fn set_commit(&mut self, commit: u64) {
        assert!(commit >= self.hard_state.commit, "commit never goes back");
        assert!(commit <= self.last_index());
        self.hard_state.commit = commit;
    }

    /// The term of `index` if this log still holds it (the snapshot's own index included).
    pub fn term_of(&self, index: u64) -> Option<u64> {
        if index == self.snapshot_index() {
            return Some(self.snapshot.get_metadata().term);
        }
        let at = index.checked_sub(self.first_index())?;
        self.entries.get(usize::try_from(at).ok()?).map(|e| e.term)
    }

    /// Appends entries that are already durable, replacing any conflicting suffix. Raft only
    /// replaces uncommitted entries, so the first new index is above the commit index.
    pub fn append(&mut self, new: &[Entry]) {
        if let Some(first) = new.first() {
            assert!(
                first.index > self.hard_state.commit,
                "overwrites committed entries"
            );
        }
        self.replace_from(new);
    }

    fn replace_from(&mut self, new: &[Entry]) {
        let Some(first) = new.first() else { return };
        assert!(
            first.index >= self.first_index(),
            "overwrites compacted entries"
        );
        assert!(first.index <= self.last_index() + 1, "leaves a gap");
        let keep = (first.index - self.first_index()) as usize;
        for e in self.entries.drain(keep..) {
            self.entries_bytes -= entry_bytes(&e);
        }
        for (i, e) in new.iter().enumerate() {
            assert_eq!(e.index, first.index + i as u64, "entries are contiguous");
            self.entries_bytes += entry_bytes(e);
            self.entries.push(e.clone());
        }
    }

    /// A snapshot of this node's own image at an applied index: entries up to it go.
    pub fn compact(&mut self, snapshot: Snapshot) {
        let index = snapshot.get_metadata().index;
        assert!(index > self.snapshot_index());
        assert!(
            index <= self.hard_state.commit,
            "only applied entries are snapshotted"
        );
        assert_eq!(self.term_of(index), Some(snapshot.get_metadata().term));
        let drop = (index - self.snapshot_index()) as usize;
        for e in self.entries.drain(..drop) {
            self.entries_bytes -= entry_bytes(&e);
        }
        self.snapshot = snapshot;
    }

    /// A snapshot received from the leader replaces the whole log.
    pub fn install_snapshot(&mut self, snapshot: Snapshot) {
        let meta = snapshot.get_metadata();
        assert!(
            meta.index >= self.hard_state.commit,
            "a snapshot never goes back"
        );
        self.hard_state.commit = meta.index;
        self.hard_state.term = self.hard_state.term.max(meta.term);
        self.conf_state = meta.get_conf_state().clone();
        self.entries.clear();
        self.entries_bytes = 0;
        self.snapshot = snapshot;
    }

    fn slice(&self, low: u64, high: u64) -> raft::Result<&[Entry]> {
        if low < self.first_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        if low > high || high > self.last_index() + 1 {
            return Err(raft::Error::Store(StorageError::Unavailable));
        }
        let lo = (low - self.first_index()) as usize;
        let hi = (high - self.first_index()) as usize;
        Ok(&self.entries[lo..hi])
    }
}

impl Storage for MemLog {
    fn initial_state(&self) -> raft::Result<RaftState> {
        Ok(RaftState::new(
            self.hard_state.clone(),
            self.conf_state.clone(),
        ))
    }

    fn entries(
        &self,
        low: u64,
        high: u64,
        max_size: impl Into<Option<u64>>,
        _context: GetEntriesContext,
    ) -> raft::Result<Vec<Entry>> {
        let mut out = self.slice(low, high)?.to_vec();
        raft::util::limit_size(&mut out, max_size.into());
        Ok(out)
    }

    fn term(&self, idx: u64) -> raft::Result<u64> {
        if idx < self.snapshot_index() {
            return Err(raft::Error::Store(StorageError::Compacted));
        }
        self.term_of(idx)
            .ok_or(raft::Error::Store(StorageError::Unavailable))
    }

    fn first_index(&self) -> raft::Result<u64> {
        Ok(MemLog::first_index(self))
    }

    fn last_index(&self) -> raft::Result<u64> {
        Ok(MemLog::last_index(self))
    }

    fn snapshot(&self, request_index: u64, _to: u64) -> raft::Result<Snapshot> {
        // Snapshots are taken on the applied interval, never on demand.
        if self.snapshot_index() < request_index || self.snapshot_index() == 0 {
            return Err(raft::Error::Store(
                StorageError::SnapshotTemporarilyUnavailable,
            ));
        }
        Ok(self.snapshot.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(index: u64, term: u64) -> Entry {
        Entry {
            index,
            term,
            data: vec![index as u8].into(),
            ..Entry::default()
        }
    }

    fn snapshot(index: u64, term: u64) -> Snapshot {
        let mut s = Snapshot::default();
        s.mut_metadata().index = index;
        s.mut_metadata().term = term;
        s
    }

    fn ctx() -> GetEntriesContext {
        GetEntriesContext::empty(false)
    }

    #[test]
    fn append_replaces_a_conflicting_suffix() {
        let mut log = MemLog::new(
            HardState::default(),
            ConfState::default(),
            Snapshot::default(),
            (1..=5).map(|i| entry(i, 1)).collect(),
        );
        assert_eq!((log.first_index(), log.last_index()), (1, 5));
        log.append(&[entry(4, 2), entry(5, 2), entry(6, 2)]);
        assert_eq!(log.last_index(), 6);
        assert_eq!(log.term(3).unwrap(), 1);
        assert_eq!(log.term(4).unwrap(), 2);
        assert_eq!(log.term(0).unwrap(), 0);
        assert!(log.term(7).is_err());
        let got = log.entries(2, 7, None, ctx()).unwrap();
        assert_eq!(
            got.iter().map(|e| e.index).collect::<Vec<_>>(),
            [2, 3, 4, 5, 6]
        );
        assert_eq!(log.since_snapshot().0, 6);
    }

    #[test]
    fn compaction_keeps_the_snapshot_term_and_refuses_older_reads() {
        let hs = HardState {
            commit: 5,
            ..HardState::default()
        };
        let mut log = MemLog::new(
            hs,
            ConfState::default(),
            Snapshot::default(),
            (1..=6).map(|i| entry(i, 1 + i / 4)).collect(),
        );
        assert!(log.snapshot(0, 2).is_err(), "no snapshot yet");
        log.compact(snapshot(4, 2));
        assert_eq!((log.first_index(), log.last_index()), (5, 6));
        assert_eq!(log.term(4).unwrap(), 2);
        assert!(matches!(
            log.term(3),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert!(matches!(
            log.entries(4, 6, None, ctx()),
            Err(raft::Error::Store(StorageError::Compacted))
        ));
        assert_eq!(log.entries(5, 7, None, ctx()).unwrap().len(), 2);
        assert_eq!(log.snapshot(0, 2).unwrap().get_metadata().index, 4);
        assert_eq!(log.since_snapshot().0, 2);
    }

    #[test]
    fn an_installed_snapshot_replaces_everything() {
        let mut log = MemLog::new(
            HardState::default(),
            ConfState::default(),
            Snapshot::default(),
            (1..=3).map(|i| entry(i, 1)).collect(),
        );
        let mut s = snapshot(10, 3);
        s.mut_metadata().mut_conf_state().voters = vec![1, 2, 3];
        log.install_snapshot(s);
        assert_eq!((log.first_index(), log.last_index()), (11, 10));
        assert_eq!(log.hard_state().commit, 10);
        assert_eq!(log.hard_state().term, 3);
        assert_eq!(log.conf_state().voters, vec![1, 2, 3]);
        log.append(&[entry(11, 3)]);
        assert_eq!(log.last_index(), 11);
    }
}
