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

/// Visits every entry of a `BinaryHeap<At<T>>` (as its slice) due at time `t`, stopping
/// early when `f` returns `true` (and then returning `true`). In the heap every entry at
/// the minimum time hangs from the root through entries at that time, so the walk stops
/// at later ones and touches only the due entries and their children. `t` must be the
/// root's time (or earlier, and then nothing is due). `stack` is scratch space.
pub(crate) fn any_at<T: Copy>(
    heap: &[At<T>],
    t: u64,
    stack: &mut Vec<usize>,
    mut f: impl FnMut(&At<T>) -> bool,
) -> bool {
    stack.clear();
    stack.push(0);
    while let Some(i) = stack.pop() {
        let Some(e) = heap.get(i) else { continue };
        if e.time() != t {
            continue;
        }
        if f(e) {
            return true;
        }
        stack.push(2 * i + 1);
        stack.push(2 * i + 2);
    }
    false
}

#[cfg(test)]
mod tests {
    use super::{any_at, At};
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

    #[test]
    fn any_at_visits_exactly_the_entries_due_at_the_minimum() {
        let mut heap = BinaryHeap::new();
        // Many entries at time 10 spread through the heap, and later ones.
        for seq in 0..200u64 {
            let t = if seq % 3 == 0 { 10 } else { 10 + seq };
            heap.push(At::new(t, seq, seq));
        }
        let mut stack = Vec::new();
        let mut seen = Vec::new();
        let stopped = any_at(heap.as_slice(), 10, &mut stack, |e| {
            seen.push(e.item);
            false
        });
        assert!(!stopped);
        seen.sort_unstable();
        assert_eq!(seen, (0..200).filter(|s| s % 3 == 0).collect::<Vec<_>>());
        assert!(any_at(heap.as_slice(), 10, &mut stack, |e| e.item == 99));
        assert!(!any_at(heap.as_slice(), 10, &mut stack, |e| e.item == 98));
    }
}
