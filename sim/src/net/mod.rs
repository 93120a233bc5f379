//! The simulated network: one link layer that every packet crosses, and the protocols
//! above it.
//!
//! - [`link`]: every crossing between hosts — SYN, SYN-ACK, refusal, data, FIN, RST,
//!   window update, datagram — is a [`Packet`] sent through [`link::send`]: the fault rules
//!   ([`rules`]) decide its fate, one ordering step gives its arrival time, one in-flight queue
//!   ([`flight`]) holds it, and [`link::arrive`] is the one entry point through which hosts
//!   receive. A fault that exists in one place cannot be forgotten in another.
//! - [`tcp`]: the two ends of a connection (two ordered byte pipes with receive windows).
//! - [`connect`](mod@connect): connectors, listeners, and the handshake.
//! - UDP datagrams are in [`crate::udp`]; they cross the same link.

pub(crate) mod connect;
pub(crate) mod flight;
pub(crate) mod link;
pub(crate) mod rules;
pub(crate) mod tcp;
#[cfg(test)]
mod tests;

use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;

pub(crate) use connect::{connect, stop_listening};
pub(crate) use link::Packet;
pub(crate) use tcp::{flush_dirty, SimConn};

/// Network-wide state: the link, and which connections need a flush.
pub(crate) struct Net {
    /// The link layer's state: cut links, held packets, packets in flight.
    pub(crate) link: link::Link,
    /// Connections that asked to be flushed, first asked first.
    dirty: RefCell<VecDeque<Rc<SimConn>>>,
    /// Segment buffers handed back after delivery, reused for the next segments (a run
    /// moves millions of small segments; this keeps the allocator out of the hot path).
    spare_bufs: RefCell<Vec<Vec<u8>>>,
}

/// At most this many spare segment buffers are kept, each at most this large.
const SPARE_BUFS: usize = 256;
const SPARE_BUF_MAX: usize = 64 * 1024;

impl Net {
    /// The network of a run with these faults.
    pub(crate) fn new(faults: &crate::faults::Faults) -> Net {
        Net {
            link: link::Link::new(faults),
            dirty: RefCell::default(),
            spare_bufs: RefCell::default(),
        }
    }

    /// A buffer for a segment of `len` bytes (a recycled one if any).
    pub(crate) fn buffer(&self, len: usize) -> Vec<u8> {
        match self.spare_bufs.borrow_mut().pop() {
            Some(mut v) => {
                v.clear();
                v.reserve(len);
                v
            }
            None => Vec::with_capacity(len),
        }
    }

    /// Hands a delivered segment's buffer back for reuse.
    pub(crate) fn recycle(&self, v: Vec<u8>) {
        let mut spare = self.spare_bufs.borrow_mut();
        if spare.len() < SPARE_BUFS && v.capacity() <= SPARE_BUF_MAX {
            spare.push(v);
        }
    }
}
