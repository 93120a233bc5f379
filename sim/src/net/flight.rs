//! The in-flight queue: every packet between its departure and its arrival.
//!
//! A min-heap of (arrival, sequence, slot) over a slab of packets, so that moving a packet
//! in and out costs no copying of the packet itself; packets are the bulk of a run's events,
//! kept out of the hosts' timer queues so that each costs one heap push and pop. The world's
//! scheduler reads the front and the entries due at an instant (to choose among hosts).

use std::collections::BinaryHeap;

use crate::keyed::{any_at, At, MAX_INDEX};
use crate::net::Packet;

/// Packets in flight.
#[derive(Default)]
pub(crate) struct Flight {
    heap: BinaryHeap<At>,
    slots: Vec<Option<Packet>>,
    free: Vec<u32>,
}

impl Flight {
    /// Puts `pkt` in flight; `Err` gives it back if [`MAX_INDEX`] packets already are.
    pub(crate) fn insert(&mut self, at: u64, seq: u64, pkt: Packet) -> Result<(), Packet> {
        let slot = match self.free.pop() {
            Some(i) => {
                self.slots[i as usize] = Some(pkt);
                i
            }
            None if self.slots.len() < MAX_INDEX as usize => {
                self.slots.push(Some(pkt));
                (self.slots.len() - 1) as u32
            }
            None => return Err(pkt),
        };
        self.heap.push(At::new(at, seq, slot));
        Ok(())
    }

    /// The destination host of the packet in `slot`, if it is still there.
    fn host_of(&self, slot: u32) -> Option<usize> {
        self.slots
            .get(slot as usize)
            .and_then(Option::as_ref)
            .map(|p| p.to)
    }

    /// The earliest (arrival, sequence), dropping entries already taken.
    pub(crate) fn front(&mut self) -> Option<(u64, u64)> {
        while let Some(top) = self.heap.peek() {
            let slot = top.index();
            if self.host_of(slot).is_some() {
                return Some(top.key());
            }
            // The entry's packet was taken: only now may its slot be reused.
            self.heap.pop();
            self.free.push(slot);
        }
        None
    }

    /// (sequence, destination host, slot) of every packet due at `t`, in sequence order.
    pub(crate) fn due_at(&self, t: u64, out: &mut Vec<(u64, usize, u32)>, stack: &mut Vec<usize>) {
        out.clear();
        any_at(self.heap.as_slice(), t, stack, |e| {
            if let Some(host) = self.host_of(e.index()) {
                out.push((e.key().1, host, e.index()));
            }
            false
        });
        out.sort_unstable();
    }

    /// Whether a child of the root is due at `t` (then more than one packet may be).
    pub(crate) fn second_at(&self, t: u64) -> bool {
        let heap = self.heap.as_slice();
        heap.iter().skip(1).take(2).any(|r| r.time() == t)
    }

    /// Whether a packet due at `t` goes to a host other than `host`.
    pub(crate) fn other_host_at(&self, t: u64, host: usize, stack: &mut Vec<usize>) -> bool {
        any_at(self.heap.as_slice(), t, stack, |e| {
            self.host_of(e.index()).is_some_and(|h| h != host)
        })
    }

    /// Takes the packet in `slot`; its heap entry is dropped (and the slot freed) when it
    /// surfaces.
    pub(crate) fn take(&mut self, slot: u32) -> Option<Packet> {
        self.slots.get_mut(slot as usize)?.take()
    }

    /// The slot and destination host of the front entry (call [`Flight::front`] first).
    pub(crate) fn front_slot(&self) -> Option<(u32, usize)> {
        let slot = self.heap.peek()?.index();
        Some((slot, self.host_of(slot)?))
    }
}
