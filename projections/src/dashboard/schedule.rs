//! Grouping a batch's ops into runs of one kind, each written by one
//! set-based statement (or a few).
//!
//! Ops arrive in log order. Each kind has a pending buffer; an op joins its
//! kind's buffer after every pending buffer of a kind that *conflicts* with
//! it has been closed into a run. Two kinds that do not conflict commute:
//! applying their ops in either order gives the same tables. So the runs,
//! executed in order, have the effect of the ops executed one by one in log
//! order (only commuting ops were swapped), while a log that interleaves
//! many kinds (users, content, shares, …) still makes long runs.
//!
//! Invariant: the kinds pending at any time pairwise commute (an op closes
//! every pending kind it conflicts with before joining), so closing several
//! of them, or all at the end, in any order is correct.

/// Ops of kind `K`, grouped into runs.
pub(super) struct Scheduler<K, O> {
    conflicts: fn(K, K) -> bool,
    pending: Vec<(K, Vec<O>)>,
    runs: Vec<Vec<O>>,
}

impl<K: Copy + Eq, O> Scheduler<K, O> {
    /// A scheduler whose kinds conflict as `conflicts` says (symmetric; a
    /// kind with itself is never asked).
    pub(super) fn new(conflicts: fn(K, K) -> bool) -> Self {
        Self {
            conflicts,
            pending: Vec::new(),
            runs: Vec::new(),
        }
    }

    /// Adds `op` of kind `kind`, after closing the pending kinds it
    /// conflicts with.
    pub(super) fn push(&mut self, kind: K, op: O) {
        let conflicts = self.conflicts;
        let mut i = 0;
        while i < self.pending.len() {
            let other = self.pending[i].0;
            if other != kind && conflicts(other, kind) {
                let (_, ops) = self.pending.remove(i);
                self.runs.push(ops);
            } else {
                i += 1;
            }
        }
        match self.pending.iter_mut().find(|(k, _)| *k == kind) {
            Some((_, ops)) => ops.push(op),
            None => self.pending.push((kind, vec![op])),
        }
    }

    /// The pending (not yet closed) ops of `kind`, to fold a later op into
    /// one of them instead of pushing it.
    pub(super) fn pending_mut(&mut self, kind: K) -> Option<&mut Vec<O>> {
        self.pending
            .iter_mut()
            .find(|(k, _)| *k == kind)
            .map(|(_, ops)| ops)
    }

    /// Every run, in the order to execute them.
    pub(super) fn finish(mut self) -> Vec<Vec<O>> {
        self.runs.extend(self.pending.drain(..).map(|(_, ops)| ops));
        self.runs
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    enum K {
        A,
        B,
        C,
    }

    /// A conflicts with B; C commutes with both.
    fn conflicts(x: K, y: K) -> bool {
        matches!((x, y), (K::A, K::B) | (K::B, K::A))
    }

    #[test]
    fn commuting_kinds_merge_across_each_other_and_conflicting_ones_keep_their_order() {
        let mut s = Scheduler::new(conflicts);
        for (k, n) in [
            (K::A, 1),
            (K::C, 2),
            (K::A, 3),
            (K::B, 4),
            (K::C, 5),
            (K::A, 6),
        ] {
            s.push(k, n);
        }
        assert_eq!(s.finish(), vec![vec![1, 3], vec![4], vec![2, 5], vec![6]]);
    }

    #[test]
    fn pending_ops_can_be_folded_into() {
        let mut s = Scheduler::new(conflicts);
        s.push(K::A, 1);
        s.pending_mut(K::A).unwrap()[0] = 10;
        assert!(s.pending_mut(K::B).is_none());
        s.push(K::B, 2);
        assert!(s.pending_mut(K::A).is_none(), "closed by the conflict");
        assert_eq!(s.finish(), vec![vec![10], vec![2]]);
    }
}
