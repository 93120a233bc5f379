//! Entries of the simulator's min-heaps (segments in flight, queue wakeups), ordered by
//! (time, sequence).
//!
//! The pair is packed into one `u128` so that a comparison is a single wide compare with
//! no data-dependent branch; the heaps are popped once per event, and with tuple keys the
//! sift loops spent most of their time on mispredicted lexicographic comparisons. The
//! order is reversed, so `std`'s max-heap `BinaryHeap` pops the earliest entry.

use std::cmp::Ordering;

/// An item due at (time, sequence). Sequences are unique, so no two keys are equal.
#[derive(Clone, Copy, Debug)]
pub(crate) struct At<T> {
    key: u128,
    pub(crate) item: T,
}

impl<T> At<T> {
    pub(crate) fn new(time: u64, seq: u64, item: T) -> Self {
        At {
            key: (u128::from(time) << 64) | u128::from(seq),
            item,
        }
    }

    /// The time.
    pub(crate) fn time(&self) -> u64 {
        (self.key >> 64) as u64
    }

    /// (time, sequence).
    pub(crate) fn key(&self) -> (u64, u64) {
        (self.time(), self.key as u64)
    }
}

impl<T> PartialEq for At<T> {
    fn eq(&self, other: &Self) -> bool {
        self.key == other.key
    }
}

impl<T> Eq for At<T> {}

impl<T> PartialOrd for At<T> {
    fn partial_cmp(&self, other: &Self) -> Option<Ordering> {
        Some(self.cmp(other))
    }
}

impl<T> Ord for At<T> {
    /// Reversed: the earliest is the greatest.
    fn cmp(&self, other: &Self) -> Ordering {
        other.key.cmp(&self.key)
    }
}

#[cfg(test)]
mod tests {
    use super::At;
    use std::collections::BinaryHeap;

    #[test]
    fn heap_pops_by_time_then_sequence() {
        let mut heap = BinaryHeap::new();
        for (t, seq) in [(5, 1), (3, 9), (5, 0), (u64::MAX, 2), (3, 4), (0, u64::MAX)] {
            heap.push(At::new(t, seq, (t, seq)));
        }
        let order: Vec<(u64, u64)> = std::iter::from_fn(|| heap.pop().map(|e| e.item)).collect();
        assert_eq!(
            order,
            vec![(0, u64::MAX), (3, 4), (3, 9), (5, 0), (5, 1), (u64::MAX, 2)]
        );
        let e = At::new(7, 8, ());
        assert_eq!((e.time(), e.key()), (7, (7, 8)));
    }
}
