//! An ordered set of [`At`] entries that also answers by rank: how many entries come before
//! a bound, and which entry is the k-th. The scheduler keeps one entry per queue in it (each
//! queue's earliest event), so that counting the queues due at an instant and picking one of
//! them cost O(log n) in the number of queues, however many are due at once.
//!
//! A treap: a binary search tree on the entries, heap-ordered on a priority hashed from the
//! entry itself (no random source: the shape is a function of the contents, so two runs of
//! one seed build the same tree), with subtree sizes for the ranks. Nodes live in one vector
//! and freed ones are reused. Entries are ordered earliest first, by (time, sequence, index).

use crate::keyed::At;

/// No node.
const NIL: u32 = u32::MAX;

#[derive(Clone, Copy)]
struct Node {
    key: u128,
    prio: u64,
    left: u32,
    right: u32,
    size: u32,
}

/// The tree form of [`Ranked`].
struct Treap {
    nodes: Vec<Node>,
    free: Vec<u32>,
    root: u32,
    /// Nodes visited so far, by every operation: the work done, for tests that bound it.
    visits: u64,
}

impl Default for Treap {
    fn default() -> Self {
        Treap {
            nodes: Vec::new(),
            free: Vec::new(),
            root: NIL,
            visits: 0,
        }
    }
}

/// A well-mixed 64-bit hash of an entry (splitmix64's finaliser over both halves).
fn priority(key: u128) -> u64 {
    let mut z = (key as u64) ^ ((key >> 64) as u64).rotate_left(29);
    z = z.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

impl Treap {
    /// Number of entries.
    fn len(&self) -> usize {
        self.size(self.root) as usize
    }

    fn size(&self, n: u32) -> u32 {
        if n == NIL {
            0
        } else {
            self.nodes[n as usize].size
        }
    }

    fn node(&self, n: u32) -> &Node {
        &self.nodes[n as usize]
    }

    fn node_mut(&mut self, n: u32) -> &mut Node {
        &mut self.nodes[n as usize]
    }

    fn resize(&mut self, n: u32) {
        let node = *self.node(n);
        self.node_mut(n).size = 1 + self.size(node.left) + self.size(node.right);
    }

    /// Splits the subtree `n` into the entries below `key` and the others.
    fn split(&mut self, n: u32, key: u128) -> (u32, u32) {
        if n == NIL {
            return (NIL, NIL);
        }
        self.visits += 1;
        let node = *self.node(n);
        if node.key < key {
            let (l, r) = self.split(node.right, key);
            self.node_mut(n).right = l;
            self.resize(n);
            (n, r)
        } else {
            let (l, r) = self.split(node.left, key);
            self.node_mut(n).left = r;
            self.resize(n);
            (l, n)
        }
    }

    /// Joins two subtrees, every entry of `a` below every entry of `b`.
    fn merge(&mut self, a: u32, b: u32) -> u32 {
        if a == NIL {
            return b;
        }
        if b == NIL {
            return a;
        }
        self.visits += 1;
        if self.node(a).prio > self.node(b).prio {
            let r = self.merge(self.node(a).right, b);
            self.node_mut(a).right = r;
            self.resize(a);
            a
        } else {
            let l = self.merge(a, self.node(b).left);
            self.node_mut(b).left = l;
            self.resize(b);
            b
        }
    }

    fn insert_into(&mut self, n: u32, new: u32) -> u32 {
        if n == NIL {
            return new;
        }
        self.visits += 1;
        let (node, fresh) = (*self.node(n), *self.node(new));
        if fresh.prio > node.prio {
            let (l, r) = self.split(n, fresh.key);
            let m = self.node_mut(new);
            m.left = l;
            m.right = r;
            self.resize(new);
            return new;
        }
        if fresh.key < node.key {
            let l = self.insert_into(node.left, new);
            self.node_mut(n).left = l;
        } else {
            let r = self.insert_into(node.right, new);
            self.node_mut(n).right = r;
        }
        self.resize(n);
        n
    }

    /// Adds `e` (which must not be in the set).
    fn insert(&mut self, e: At) {
        let node = Node {
            key: e.raw(),
            prio: priority(e.raw()),
            left: NIL,
            right: NIL,
            size: 1,
        };
        let new = match self.free.pop() {
            Some(i) => {
                self.nodes[i as usize] = node;
                i
            }
            None => {
                self.nodes.push(node);
                (self.nodes.len() - 1) as u32
            }
        };
        self.root = self.insert_into(self.root, new);
    }

    fn remove_from(&mut self, n: u32, key: u128) -> u32 {
        if n == NIL {
            return NIL;
        }
        self.visits += 1;
        let node = *self.node(n);
        if key == node.key {
            self.free.push(n);
            return self.merge(node.left, node.right);
        }
        if key < node.key {
            let l = self.remove_from(node.left, key);
            self.node_mut(n).left = l;
        } else {
            let r = self.remove_from(node.right, key);
            self.node_mut(n).right = r;
        }
        self.resize(n);
        n
    }

    /// Removes `e` if present.
    fn remove(&mut self, e: At) {
        self.root = self.remove_from(self.root, e.raw());
    }

    /// The earliest entry.
    fn first(&mut self) -> Option<At> {
        let mut n = self.root;
        let mut found = None;
        while n != NIL {
            self.visits += 1;
            found = Some(self.node(n).key);
            n = self.node(n).left;
        }
        found.map(At::from_raw)
    }

    /// How many entries are due at or before `time`.
    fn count_until(&mut self, time: u64) -> usize {
        let mut n = self.root;
        let mut count = 0;
        while n != NIL {
            self.visits += 1;
            let node = *self.node(n);
            if At::from_raw(node.key).time() <= time {
                count += self.size(node.left) as usize + 1;
                n = node.right;
            } else {
                n = node.left;
            }
        }
        count
    }

    /// The `k`-th earliest entry (from 0).
    fn nth(&mut self, mut k: usize) -> Option<At> {
        let mut n = self.root;
        while n != NIL {
            self.visits += 1;
            let node = *self.node(n);
            let left = self.size(node.left) as usize;
            match k.cmp(&left) {
                std::cmp::Ordering::Less => n = node.left,
                std::cmp::Ordering::Equal => return Some(At::from_raw(node.key)),
                std::cmp::Ordering::Greater => {
                    k -= left + 1;
                    n = node.right;
                }
            }
        }
        None
    }

    /// The depth of the tree (for tests).
    #[cfg(test)]
    fn depth(&self, n: u32) -> usize {
        if n == NIL {
            0
        } else {
            let node = self.node(n);
            1 + self.depth(node.left).max(self.depth(node.right))
        }
    }
}

/// Up to this many entries, the set is a sorted vector; past it, a treap (and back to a vector
/// once it holds half as many). A world of a few hosts — the common case — pays a binary
/// search and a short move per change, not a tree's pointer chasing; a world of thousands
/// keeps O(log n) per change.
const SMALL: usize = 64;

/// The ordered set. Its entries must be distinct (entries carry unique sequences).
#[derive(Default)]
pub(crate) struct Ranked {
    /// The entries, sorted, while there are at most [`SMALL`] (and `tree` is `None`).
    small: Vec<u128>,
    tree: Option<Treap>,
    /// Work done in the vector form (search steps), for tests that bound it.
    visits: u64,
}

impl Ranked {
    /// Number of entries.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.tree.as_ref().map_or(self.small.len(), Treap::len)
    }

    /// Work done so far (nodes visited, or search steps in the vector form).
    #[cfg(test)]
    pub(crate) fn visits(&self) -> u64 {
        self.visits + self.tree.as_ref().map_or(0, |t| t.visits)
    }

    /// A binary search's steps over the vector, counted as work.
    fn search(&mut self, key: u128) -> Result<usize, usize> {
        self.visits += u64::from(usize::BITS - self.small.len().leading_zeros()) + 1;
        self.small.binary_search(&key)
    }

    /// Adds `e` (which must not be in the set).
    pub(crate) fn insert(&mut self, e: At) {
        if let Some(t) = &mut self.tree {
            t.insert(e);
            return;
        }
        let key = e.raw();
        let i = match self.search(key) {
            Ok(_) => return,
            Err(i) => i,
        };
        self.small.insert(i, key);
        if self.small.len() > SMALL {
            let mut t = Treap::default();
            for &k in &self.small {
                t.insert(At::from_raw(k));
            }
            self.small.clear();
            self.tree = Some(t);
        }
    }

    /// Removes `e` if present.
    pub(crate) fn remove(&mut self, e: At) {
        if let Some(t) = &mut self.tree {
            t.remove(e);
            if t.len() < SMALL / 2 {
                let n = t.len();
                self.small = (0..n).filter_map(|k| t.nth(k)).map(|e| e.raw()).collect();
                self.visits += t.visits;
                self.tree = None;
            }
            return;
        }
        if let Ok(i) = self.search(e.raw()) {
            self.small.remove(i);
        }
    }

    /// The earliest entry.
    pub(crate) fn first(&mut self) -> Option<At> {
        match &mut self.tree {
            Some(t) => t.first(),
            None => self.small.first().map(|&k| At::from_raw(k)),
        }
    }

    /// How many entries are due at or before `time`.
    pub(crate) fn count_until(&mut self, time: u64) -> usize {
        match &mut self.tree {
            Some(t) => t.count_until(time),
            None => {
                self.visits += 1;
                self.small
                    .partition_point(|&k| At::from_raw(k).time() <= time)
            }
        }
    }

    /// The `k`-th earliest entry (from 0).
    pub(crate) fn nth(&mut self, k: usize) -> Option<At> {
        match &mut self.tree {
            Some(t) => t.nth(k),
            None => self.small.get(k).map(|&k| At::from_raw(k)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::Ranked;
    use crate::keyed::At;
    use std::collections::BTreeSet;

    /// A small deterministic generator for the test's operations.
    fn lcg(state: &mut u64) -> u64 {
        *state = state
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        *state >> 33
    }

    #[test]
    fn ranks_agree_with_a_sorted_set_through_inserts_and_removals() {
        let mut set = Ranked::default();
        let mut model: BTreeSet<u128> = BTreeSet::new();
        let mut state = 7;
        for seq in 0..5_000u64 {
            // Few distinct times, so that many entries share one.
            let time = lcg(&mut state) % 20;
            let e = At::new(time, seq, (lcg(&mut state) % 1000) as u32);
            set.insert(e);
            model.insert(e.raw());
            if lcg(&mut state) % 3 == 0 {
                let k = (lcg(&mut state) as usize) % model.len();
                let victim = *model.iter().nth(k).unwrap();
                assert_eq!(set.nth(k).map(|e| e.raw()), Some(victim));
                set.remove(At::from_raw(victim));
                model.remove(&victim);
            }
            assert_eq!(set.len(), model.len());
            if seq % 97 == 0 {
                assert_eq!(set.first().map(|e| e.raw()), model.first().copied());
                for t in 0..21 {
                    let below = model
                        .iter()
                        .filter(|&&k| At::from_raw(k).time() <= t)
                        .count();
                    assert_eq!(set.count_until(t), below, "time {t}");
                }
                let all: Vec<u128> = (0..set.len()).map(|k| set.nth(k).unwrap().raw()).collect();
                assert_eq!(all, model.iter().copied().collect::<Vec<_>>());
                assert!(set.nth(set.len()).is_none());
            }
        }
        // Removing what is not there changes nothing.
        let len = set.len();
        set.remove(At::new(99, 1 << 39, 5));
        assert_eq!(set.len(), len);
        while let Some(e) = set.first() {
            set.remove(e);
        }
        assert_eq!(set.len(), 0);
        assert!(set.tree.is_none(), "back to the vector form");
        assert_eq!(set.count_until(u64::MAX), 0);
    }

    #[test]
    fn stays_shallow_when_entries_come_in_order() {
        // Entries arrive in increasing order in the scheduler (sequences only grow): a plain
        // search tree would degenerate into a list.
        let mut set = Ranked::default();
        for seq in 0..100_000u64 {
            set.insert(At::new(0, seq, 1));
        }
        let tree = set.tree.as_ref().expect("a treap past SMALL entries");
        let depth = tree.depth(tree.root);
        assert!(depth < 60, "depth {depth} for 100,000 entries");
        assert_eq!(set.count_until(0), 100_000);
        assert_eq!(set.nth(54_321).map(|e| e.key()), Some((0, 54_321)));
    }
}
