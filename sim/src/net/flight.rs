//! The in-flight queue: every packet between its departure and its arrival.
//!
//! Per destination host, a min-heap of (arrival, sequence, slot) over one slab of packets, so
//! that moving a packet in and out costs no copying of the packet itself; packets are the
//! bulk of a run's events, kept out of the hosts' timer queues so that each costs one heap
//! push and pop. A host's packets arrive in (arrival, sequence) order, so only the front of a
//! host's heap is ever taken: the world's scheduler reads each host's front and takes it when
//! that host's turn comes.

use std::collections::BinaryHeap;

use crate::keyed::{At, MAX_INDEX};
use crate::net::Packet;

/// Packets in flight.
#[derive(Default)]
pub(crate) struct Flight {
    /// Per destination host, its packets by (arrival, sequence, slot).
    queues: Vec<BinaryHeap<At>>,
    slots: Vec<Option<Packet>>,
    free: Vec<u32>,
}

impl Flight {
    /// Puts `pkt` in flight; `Err` gives it back if [`MAX_INDEX`] packets already are.
    pub(crate) fn insert(&mut self, at: u64, seq: u64, pkt: Packet) -> Result<(), Packet> {
        let to = pkt.to;
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
        if self.queues.len() <= to {
            self.queues.resize_with(to + 1, BinaryHeap::new);
        }
        self.queues[to].push(At::new(at, seq, slot));
        Ok(())
    }

    /// The (arrival, sequence) of the next packet to `host`.
    pub(crate) fn front(&self, host: usize) -> Option<(u64, u64)> {
        self.queues.get(host)?.peek().map(At::key)
    }

    /// Takes the next packet to `host`.
    pub(crate) fn take_front(&mut self, host: usize) -> Option<Packet> {
        let slot = self.queues.get_mut(host)?.pop()?.index();
        let pkt = self.slots.get_mut(slot as usize)?.take();
        self.free.push(slot);
        pkt
    }
}
