//! The link layer: the one path every packet between hosts takes.
//!
//! Whatever it carries — a SYN, a SYN-ACK, a refusal, data, FIN, RST, a window update, a
//! datagram — a [`Packet`] goes through [`send`], which applies, in order:
//!
//! 1. **The fault rules** ([`Rule`], built from [`Faults`] once per run): each rule may
//!    decide the packet's [`Fate`] — pass, hold (a cut link), drop, reset — or change how it
//!    passes: delay it (a latency spike), duplicate it, let it skip the ordering step. The
//!    first rule that decides a fate ends the chain. Every probabilistic rule draws "no
//!    fault" as choice 0, and a rule whose rate is zero is not in the chain at all.
//! 2. **One ordering step**: a latency drawn in the configured range (choice 0: the least),
//!    then the arrival is pushed back to the packet's ordering cell, so a TCP direction (and
//!    a link's datagrams, unless reordered) never overtakes itself.
//! 3. **One in-flight queue** ([`Flight`]), which the world's scheduler reads.
//!
//! Hosts receive through one entry point, [`arrive`], which hands each kind of packet to
//! its end: [`tcp`](super::tcp), [`connect`](mod@super::connect) or [`udp`](crate::udp).
//!
//! Partitions cut links, per direction. A link stays cut while any partition covers it
//! (partitions are counted, so overlapping ones heal at the last heal). A cut link *holds*
//! the packets of established connections (data, FIN, RST, window updates, the SYN-ACK:
//! what TCP would retransmit until it gets through), and releases them in order when it
//! heals; it *drops* what no connection keeps alive (a SYN, whose connect then times out; a
//! refusal; a datagram).
//!
//! This follows smoltcp's `phy::FaultInjector` and TigerBeetle's `packet_simulator`: a
//! fault that exists in one place cannot be forgotten in another.

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::rc::{Rc, Weak};

use crate::faults::Faults;
use crate::net::connect::{Refused, Syn, SynAck};

use crate::net::flight::Flight;
pub(crate) use crate::net::rules::{Fate, Rule, Verdict};
use crate::net::tcp::SimConn;
use crate::trace::Kind;
use crate::udp::Datagram;
use crate::world::{SimError, World};

/// What a packet carries.
pub(crate) enum Payload {
    /// A connection attempt.
    Syn(Box<Syn>),
    /// The server's answer: the connection exists on its side.
    SynAck(Box<SynAck>),
    /// The answer to a SYN nobody accepts.
    Refused(Box<Refused>),
    /// Bytes of a TCP direction, with the bytes its sender has read since it last said so
    /// (an acknowledgement carried on the data, which opens the peer's window).
    Data {
        /// The bytes.
        bytes: Vec<u8>,
        /// Bytes read by the sender since its last window update.
        ack: usize,
    },
    /// The sender's write side closed.
    Fin,
    /// The connection is reset.
    Rst,
    /// The sender has read this many more bytes: the receiver may send as many more.
    Window(usize),
    /// A UDP datagram.
    Datagram(Box<Datagram>),
}

impl Payload {
    /// Whether it belongs to an established connection (on one side at least). A cut link
    /// holds such packets, which TCP would retransmit, and drops the others.
    pub(crate) fn of_connection(&self) -> bool {
        !matches!(
            self,
            Payload::Syn(_) | Payload::Refused(_) | Payload::Datagram(_)
        )
    }
}

/// One crossing from one host to another.
pub(crate) struct Packet {
    /// The sending host.
    pub(crate) from: usize,
    /// The receiving host.
    pub(crate) to: usize,
    /// The sending connection (0 for none).
    pub(crate) from_conn: u64,
    /// The receiving connection (0 for none).
    pub(crate) to_conn: u64,
    /// What it carries.
    pub(crate) payload: Payload,
    /// The latest arrival of the packets it must not overtake: a TCP direction's (which
    /// outlives the sending connection: a partition may hold a closed connection's last
    /// segments and its FIN until it heals), or a link's datagrams'.
    pub(crate) order: Option<Order>,
    /// The receiving connection, when known (a shortcut past the host's table).
    pub(crate) receiver: Weak<SimConn>,
}

impl Packet {
    /// A packet from `from` to `to` outside any connection.
    pub(crate) fn between(from: usize, to: usize, payload: Payload) -> Packet {
        Packet {
            from,
            to,
            from_conn: 0,
            to_conn: 0,
            payload,
            order: None,
            receiver: Weak::new(),
        }
    }

    /// A reset answering this packet (from its receiver back to its sender).
    pub(crate) fn reset_reply(&self) -> Packet {
        Packet {
            from: self.to,
            to: self.from,
            from_conn: self.to_conn,
            to_conn: self.from_conn,
            payload: Payload::Rst,
            order: None,
            receiver: Weak::new(),
        }
    }
}

/// An ordering cell: the latest arrival of the packets that must not be overtaken.
type Order = Rc<Cell<u64>>;

/// The link layer's state.
#[derive(Default)]
pub(crate) struct Link {
    /// The fault rules, in order.
    rules: Vec<Rule>,
    /// Cut links (from, to), with how many partitions cut each.
    cut: RefCell<BTreeMap<(usize, usize), u32>>,
    /// Packets held by cut links, in the order they were sent.
    held: RefCell<Vec<Packet>>,
    /// Per link, the latest arrival of its ordered datagrams.
    datagram_order: RefCell<BTreeMap<(usize, usize), Order>>,
    /// Packets in flight.
    pub(crate) flight: RefCell<Flight>,
}

impl Link {
    /// A link applying the rules built from `faults`.
    pub(crate) fn new(faults: &Faults) -> Link {
        Link {
            rules: Rule::chain(faults),
            ..Link::default()
        }
    }

    /// Whether any partition cuts `from` → `to`.
    pub(crate) fn is_cut(&self, from: usize, to: usize) -> bool {
        let cut = self.cut.borrow();
        !cut.is_empty() && cut.contains_key(&(from, to))
    }

    /// The ordering cell of datagrams from `from` to `to`.
    pub(crate) fn datagram_order(&self, from: usize, to: usize) -> Order {
        self.datagram_order
            .borrow_mut()
            .entry((from, to))
            .or_default()
            .clone()
    }
}

/// Sends `pkt` across the link: the fault rules, the ordering step, the in-flight queue.
/// Returns the packet's fate, for a sender that must react to it (a reset).
pub(crate) fn send(world: &Rc<World>, mut pkt: Packet) -> Fate {
    let mut v = Verdict::PASS;
    for &rule in &world.net.link.rules {
        rule.apply(world, &pkt, &mut v);
        if v.fate != Fate::Pass {
            break;
        }
    }
    if v.fate != Fate::Reset {
        match &mut pkt.payload {
            Payload::Data { bytes, .. } => world.record_segment(
                pkt.from,
                pkt.from_conn,
                bytes,
                (pkt.to, pkt.to_conn),
                v.fate != Fate::Drop,
            ),
            Payload::Datagram(d) => {
                d.message = world.record_datagram(pkt.from, false, &d.data, None);
            }
            _ => {}
        }
    }
    // A fault is traced on the sending connection, if the packet belongs to one.
    let on_conn = pkt.payload.of_connection();
    let (from, conn) = (pkt.from, on_conn.then_some(pkt.from_conn));
    let fault = |what: &str| {
        let what = what.to_string();
        world.record(Some(from), conn, Kind::Fault { what });
    };
    match v.fate {
        Fate::Pass => {
            if v.delay > 0 {
                // Where a latency spike takes effect: the packet it slows.
                fault(&format!("spike +{}us", v.delay / 1_000));
            }
            if v.copies > 1 {
                if let Payload::Datagram(d) = &pkt.payload {
                    let copy = Packet {
                        payload: Payload::Datagram(d.clone()),
                        order: pkt.order.clone(),
                        receiver: pkt.receiver.clone(),
                        ..pkt
                    };
                    transmit(world, copy, v.delay, v.ordered);
                }
            }
            transmit(world, pkt, v.delay, v.ordered);
        }
        Fate::Hold => world.net.link.held.borrow_mut().push(pkt),
        Fate::Drop => fault(v.what),
        Fate::Reset => {
            fault(v.what);
            match std::mem::replace(&mut pkt.payload, Payload::Rst) {
                // The segment never leaves: the peer gets a reset in its place.
                Payload::Data { .. } => {
                    send(world, pkt);
                }
                // The SYN crosses, and its receiver answers with a refusal.
                Payload::Syn(mut syn) => {
                    syn.refuse();
                    pkt.payload = Payload::Syn(syn);
                    transmit(world, pkt, v.delay, v.ordered);
                }
                _ => {}
            }
        }
    }
    v.fate
}

/// The ordering step and the in-flight queue.
fn transmit(world: &Rc<World>, pkt: Packet, delay: u64, ordered: bool) {
    let at = world
        .now
        .get()
        .saturating_add(world.latency())
        .saturating_add(delay);
    // The arrival grid: round up to the next multiple (collisions on purpose).
    let at = match u64::try_from(world.cfg.quantum.as_nanos()).unwrap_or(u64::MAX) {
        0 => at,
        q => at.div_ceil(q).saturating_mul(q),
    };
    let at = match &pkt.order {
        Some(last) if ordered => {
            let at = at.max(last.get());
            last.set(at);
            at
        }
        _ => at,
    };
    let seq = world.seq.get();
    world.seq.set(seq + 1);
    if !world.seq_fits(seq) {
        return;
    }
    let to = pkt.to;
    let full = world.net.link.flight.borrow_mut().insert(at, seq, pkt);
    match full {
        Ok(()) => world.touch(to),
        Err(_) => world.fail(SimError::Capacity {
            what: "2^24 segments in flight",
        }),
    }
}

/// A packet reaches its host: the one entry point through which hosts receive. The world's
/// step calls this once the receiving host is known to be up.
pub(crate) fn arrive(world: &Rc<World>, pkt: Packet) {
    match pkt.payload {
        Payload::Syn(syn) => {
            super::connect::syn_arrive(world, pkt.from, pkt.from_conn, pkt.to, *syn)
        }
        Payload::SynAck(ack) => {
            super::connect::synack_arrive(
                world,
                pkt.from,
                pkt.from_conn,
                pkt.to,
                pkt.to_conn,
                *ack,
            );
        }
        Payload::Refused(r) => r.arrive(),
        Payload::Datagram(d) => crate::udp::arrive(world, pkt.to, *d),
        _ => super::tcp::arrive(world, pkt),
    }
}

/// Cuts `a` → `b` (and `b` → `a` unless one-way), on top of any partition already there.
pub(crate) fn partition(world: &Rc<World>, a: usize, b: usize, one_way: bool) {
    let arrow = if one_way { "->" } else { "<->" };
    let name = |i: usize| world.host_name(i);
    world.record(
        None,
        None,
        Kind::Fault {
            what: format!("partition {}{arrow}{}", name(a), name(b)),
        },
    );
    let mut cut = world.net.link.cut.borrow_mut();
    *cut.entry((a, b)).or_default() += 1;
    if !one_way {
        *cut.entry((b, a)).or_default() += 1;
    }
}

/// Ends one partition; links no other partition cuts release what they held, in order.
pub(crate) fn heal(world: &Rc<World>, a: usize, b: usize, one_way: bool) {
    {
        let mut cut = world.net.link.cut.borrow_mut();
        let mut lift = |link: (usize, usize)| {
            if let Some(n) = cut.get_mut(&link) {
                *n -= 1;
                if *n == 0 {
                    cut.remove(&link);
                }
            }
        };
        lift((a, b));
        if !one_way {
            lift((b, a));
        }
    }
    let name = |i: usize| world.host_name(i);
    world.record(
        None,
        None,
        Kind::Fault {
            what: format!("heal {}/{}", name(a), name(b)),
        },
    );
    let held = std::mem::take(&mut *world.net.link.held.borrow_mut());
    let link = &world.net.link;
    for pkt in held {
        if link.is_cut(pkt.from, pkt.to) {
            link.held.borrow_mut().push(pkt); // still cut: held again, in order
        } else {
            transmit(world, pkt, 0, true);
        }
    }
}
