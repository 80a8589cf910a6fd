//! Proposals this node appended as leader and has not answered yet (driver-owned, controller
//! shard). A proposal's fate is known exactly from the committed log: the entry committed at
//! its index either has its term (committed) or not (replaced). Terms never decrease along the
//! log, so once an entry of term T commits, every pending proposal of a term below T at a later
//! index is dead too. A leader that lost its leadership therefore keeps its proposals until
//! the log decides them, instead of guessing.

use std::collections::BTreeMap;

use super::{Committed, ProposeError, Reply};

#[derive(Default)]
pub(crate) struct Pending {
    /// Raft index -> (term it was proposed in, who waits).
    by_index: BTreeMap<u64, (u64, Reply)>,
}

impl Pending {
    pub fn add(&mut self, raft_index: u64, raft_term: u64, reply: Reply) {
        let old = self.by_index.insert(raft_index, (raft_term, reply));
        // A newer leader term may reuse an index only after the old one was decided.
        assert!(old.is_none(), "two pending proposals at index {raft_index}");
    }

    #[cfg(test)]
    pub fn len(&self) -> usize {
        self.by_index.len()
    }

    /// The entry at `raft_index` with `raft_term` was committed and applied.
    pub fn committed(&mut self, raft_index: u64, raft_term: u64) {
        self.decide_up_to(raft_index, raft_term, |index, term| {
            if index == raft_index && term == raft_term {
                Ok(Committed {
                    raft_index,
                    raft_term,
                })
            } else if index == raft_index {
                Err(ProposeError::Dropped {
                    raft_index: index,
                    raft_term: term,
                })
            } else {
                // Skipped over (only a snapshot skips entries; see `snapshot_installed`).
                Err(ProposeError::OutcomeUnknown { raft_index: index })
            }
        });
    }

    /// A snapshot from the leader now covers everything up to `raft_index`.
    pub fn snapshot_installed(&mut self, raft_index: u64, raft_term: u64) {
        self.decide_up_to(raft_index, raft_term, |index, _| {
            Err(ProposeError::OutcomeUnknown { raft_index: index })
        });
    }

    /// Answers every proposal at or below `raft_index` with `answer`, and fails the later ones
    /// whose term is below `raft_term`.
    fn decide_up_to(
        &mut self,
        raft_index: u64,
        raft_term: u64,
        answer: impl Fn(u64, u64) -> Result<Committed, ProposeError>,
    ) {
        let later = self.by_index.split_off(&(raft_index + 1));
        for (index, (term, reply)) in std::mem::replace(&mut self.by_index, later) {
            // The waiter may have given up; nothing to do then.
            let _ = reply.send(answer(index, term));
        }
        let dead: Vec<u64> = self
            .by_index
            .iter()
            .filter(|(_, (term, _))| *term < raft_term)
            .map(|(index, _)| *index)
            .collect();
        for index in dead {
            if let Some((term, reply)) = self.by_index.remove(&index) {
                let _ = reply.send(Err(ProposeError::Dropped {
                    raft_index: index,
                    raft_term: term,
                }));
            }
        }
    }

    /// The driver stops: nobody will decide these any more.
    pub fn fail_all(&mut self, reason: &str) {
        for (_, (_, reply)) in std::mem::take(&mut self.by_index) {
            let _ = reply.send(Err(ProposeError::Stopped {
                reason: reason.to_string(),
            }));
        }
    }
}

#[cfg(test)]
mod tests {
    use futures_channel::oneshot;

    use super::*;

    type Answer = oneshot::Receiver<Result<Committed, ProposeError>>;

    fn add(p: &mut Pending, index: u64, term: u64) -> Answer {
        let (tx, rx) = oneshot::channel();
        p.add(index, term, tx);
        rx
    }

    fn answer(rx: &mut Answer) -> Option<Result<Committed, ProposeError>> {
        rx.try_recv().ok().flatten()
    }

    #[test]
    fn the_committed_log_decides_each_proposal() {
        let mut p = Pending::default();
        let mut a = add(&mut p, 5, 2);
        let mut b = add(&mut p, 6, 2);
        let mut c = add(&mut p, 7, 2);
        p.committed(5, 2);
        assert_eq!(
            answer(&mut a),
            Some(Ok(Committed {
                raft_index: 5,
                raft_term: 2
            }))
        );
        assert_eq!(answer(&mut b), None);
        // A new leader (term 3) committed its own entry at 6: 6 and 7 are gone.
        p.committed(6, 3);
        assert!(matches!(
            answer(&mut b),
            Some(Err(ProposeError::Dropped { raft_index: 6, .. }))
        ));
        assert!(matches!(
            answer(&mut c),
            Some(Err(ProposeError::Dropped { raft_index: 7, .. }))
        ));
        assert_eq!(p.len(), 0);
    }

    #[test]
    fn later_proposals_of_the_same_term_wait_and_snapshots_are_unknown() {
        let mut p = Pending::default();
        let mut a = add(&mut p, 3, 1);
        let mut b = add(&mut p, 9, 4);
        p.committed(2, 4);
        // Index 3 (term 1) can no longer commit; index 9 (term 4) still can.
        assert!(matches!(
            answer(&mut a),
            Some(Err(ProposeError::Dropped { .. }))
        ));
        assert_eq!(answer(&mut b), None);
        p.snapshot_installed(10, 4);
        assert!(matches!(
            answer(&mut b),
            Some(Err(ProposeError::OutcomeUnknown { raft_index: 9 }))
        ));
        let mut c = add(&mut p, 11, 5);
        p.fail_all("bye");
        assert!(matches!(
            answer(&mut c),
            Some(Err(ProposeError::Stopped { .. }))
        ));
    }
}
