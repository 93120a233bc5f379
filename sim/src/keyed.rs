//! Entries of the simulator's event orders (the per-host heaps of segments in flight, the
//! scheduler's set of queue fronts), ordered by (time, sequence), each carrying a small
//! index (a slot, or a queue).
//!
//! An entry is one `u128`: time in the high 64 bits, then the sequence in 40 bits, then the
//! index in 24. Comparing entries is then a single wide compare with no data-dependent
//! branch (with tuple keys the sift loops spent most of their time on mispredicted
//! lexicographic branches), and an entry is one aligned 16-byte word that the heap moves
//! with one load and one store (wider entries made of several fields stalled the sift
//! loops on store forwarding, reading back as one word what was written as several). The
//! order is reversed, so `std`'s max-heap `BinaryHeap` pops the earliest entry.
//!
//! The packing bounds a run: at most [`MAX_SEQ`] scheduled calls and segments (about
//! 10^12: more than a day of events at the simulator's speed) and indexes below [`MAX_INDEX`]. The
//! world checks both and ends a run that would exceed them with a clear error.

use std::cmp::Ordering;

const INDEX_BITS: u32 = 24;

/// Sequences must be below this (2^40).
pub(crate) const MAX_SEQ: u64 = 1 << (64 - INDEX_BITS);

/// Indexes must be below this (2^24).
pub(crate) const MAX_INDEX: u32 = 1 << INDEX_BITS;

/// An index due at (time, sequence). Sequences are unique, so no two keys are equal.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct At(u128);

impl At {
    /// `seq` must be below [`MAX_SEQ`] and `index` below [`MAX_INDEX`].
    pub(crate) fn new(time: u64, seq: u64, index: u32) -> Self {
        debug_assert!(seq < MAX_SEQ && index < MAX_INDEX);
        At((u128::from(time) << 64) | (u128::from(seq) << INDEX_BITS) | u128::from(index))
    }

    /// The time.
    pub(crate) fn time(&self) -> u64 {
        (self.0 >> 64) as u64
    }

    /// (time, sequence).
    pub(crate) fn key(&self) -> (u64, u64) {
        (self.time(), (self.0 as u64) >> INDEX_BITS)
    }

    /// The index it carries.
    pub(crate) fn index(&self) -> u32 {
        (self.0 as u32) & (MAX_INDEX - 1)
    }

    /// The packed word: ascending order of words is (time, sequence, index) order.
    pub(crate) fn raw(&self) -> u128 {
        self.0
    }

    /// An entry from its packed word.
    pub(crate) fn from_raw(raw: u128) -> Self {
        At(raw)
    }
}

impl PartialOrd for At {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl Ord for At {
    /// Reversed: the earliest is the greatest.
    fn cmp(&self, other: &Self) -> Ordering {
        other.0.cmp(&self.0)
    }
}

#[cfg(test)]
mod tests {
    use super::{At, MAX_INDEX, MAX_SEQ};
    use std::collections::BinaryHeap;

    #[test]
    fn heap_pops_by_time_then_sequence_whatever_the_index() {
        let last = MAX_SEQ - 1;
        let top = MAX_INDEX - 1;
        let entries = [
            (5, 1, 0),
            (3, 9, top),
            (5, 0, top),
            (u64::MAX, 2, 7),
            (3, 4, 0),
            (0, last, 3),
        ];
        let mut heap: BinaryHeap<At> = entries.iter().map(|&(t, s, i)| At::new(t, s, i)).collect();
        let order: Vec<(u64, u64, u32)> = std::iter::from_fn(|| {
            heap.pop().map(|e| {
                let (t, seq) = e.key();
                (t, seq, e.index())
            })
        })
        .collect();
        assert_eq!(
            order,
            vec![
                (0, last, 3),
                (3, 4, 0),
                (3, 9, top),
                (5, 0, top),
                (5, 1, 0),
                (u64::MAX, 2, 7)
            ]
        );
        let e = At::new(7, 8, 9);
        assert_eq!((e.time(), e.key(), e.index()), (7, (7, 8), 9));
        assert_eq!(std::mem::size_of::<At>(), 16);
    }
}
