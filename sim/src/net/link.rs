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
//! its end: [`tcp`](super::tcp), [`connect`](super::connect) or [`udp`](crate::udp).
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
    /// Whether a cut link holds it (it belongs to a connection, which TCP would retransmit)
    /// rather than drops it.
    fn held_by_partition(&self) -> bool {
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

/// What the fault rules decided for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// It crosses.
    Pass,
    /// A cut link holds it until it heals.
    Hold,
    /// It is lost.
    Drop,
    /// The connection is reset in its place (a data segment: the peer gets RST and the
    /// sender loses the connection; a SYN: the connect is refused).
    Reset,
}

/// The fault rules' decision for one packet, with how it passes.
struct Verdict {
    fate: Fate,
    /// Why it is dropped or reset (for the trace).
    what: &'static str,
    /// Extra delay, in nanoseconds.
    delay: u64,
    /// Copies that cross (a duplicated datagram crosses twice).
    copies: u8,
    /// Whether it goes through the ordering step.
    ordered: bool,
}

/// One fault rule. The chain of a run holds only the rules whose rate is not zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// A cut link holds or drops (see the module doc).
    Partition,
    /// Per connection attempt, in millionths: refused.
    Refuse(u32),
    /// Per data segment, in millionths: the connection is reset instead.
    Reset(u32),
    /// Per datagram, in millionths: lost.
    Loss(u32),
    /// Per datagram, in millionths: delivered twice.
    Duplicate(u32),
    /// Per datagram, in millionths: it skips the ordering step, so it may overtake or be
    /// overtaken by the link's other datagrams.
    Reorder(u32),
    /// Per packet, in millionths: an extra delay of up to `max_us` microseconds.
    Spike {
        /// The rate.
        ppm: u32,
        /// The largest spike.
        max_us: u64,
    },
}

impl Rule {
    /// The chain of rules for `faults`, in the order they apply.
    pub(crate) fn chain(faults: &Faults) -> Vec<Rule> {
        let mut rules = Vec::new();
        if !faults.partitions.is_empty() {
            rules.push(Rule::Partition);
        }
        let rated = [
            (faults.refuse_ppm, Rule::Refuse(faults.refuse_ppm)),
            (faults.reset_ppm, Rule::Reset(faults.reset_ppm)),
            (faults.udp_loss_ppm, Rule::Loss(faults.udp_loss_ppm)),
            (faults.udp_dup_ppm, Rule::Duplicate(faults.udp_dup_ppm)),
            (
                faults.udp_reorder_ppm,
                Rule::Reorder(faults.udp_reorder_ppm),
            ),
            (
                faults.spike_ppm,
                Rule::Spike {
                    ppm: faults.spike_ppm,
                    max_us: faults.spike.as_micros().min(u128::from(u64::MAX)) as u64,
                },
            ),
        ];
        rules.extend(rated.into_iter().filter(|r| r.0 > 0).map(|r| r.1));
        rules
    }

    fn apply(self, world: &World, pkt: &Packet, v: &mut Verdict) {
        let datagram = matches!(pkt.payload, Payload::Datagram(_));
        match self {
            Rule::Partition => {
                if world.net.link.is_cut(pkt.from, pkt.to) {
                    if pkt.payload.held_by_partition() {
                        v.fate = Fate::Hold;
                    } else {
                        v.fate = Fate::Drop;
                        v.what = "lost in partition";
                    }
                }
            }
            Rule::Refuse(ppm) => {
                if matches!(pkt.payload, Payload::Syn(_)) && world.chance(ppm) {
                    v.fate = Fate::Reset;
                    v.what = "connect refused";
                }
            }
            Rule::Reset(ppm) => {
                if matches!(pkt.payload, Payload::Data { .. }) && world.chance(ppm) {
                    v.fate = Fate::Reset;
                    v.what = "reset";
                }
            }
            Rule::Loss(ppm) => {
                if datagram && world.chance(ppm) {
                    v.fate = Fate::Drop;
                    v.what = "datagram lost";
                }
            }
            Rule::Duplicate(ppm) => {
                if datagram && world.chance(ppm) {
                    v.copies = 2;
                }
            }
            Rule::Reorder(ppm) => {
                if datagram && world.chance(ppm) {
                    v.ordered = false;
                }
            }
            Rule::Spike { ppm, max_us } => {
                if world.chance(ppm) {
                    v.delay += world.decide.borrow_mut().range(0, max_us) * 1_000;
                }
            }
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

    fn is_cut(&self, from: usize, to: usize) -> bool {
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
    let mut v = Verdict {
        fate: Fate::Pass,
        what: "",
        delay: 0,
        copies: 1,
        ordered: true,
    };
    for &rule in &world.net.link.rules {
        rule.apply(world, &pkt, &mut v);
        if v.fate != Fate::Pass {
            break;
        }
    }
    if v.fate != Fate::Reset {
        match &pkt.payload {
            Payload::Data { bytes, .. } => {
                world.record_data(pkt.from, Some(pkt.from_conn), false, bytes);
            }
            Payload::Datagram(d) => world.record_data(pkt.from, None, false, &d.data),
            _ => {}
        }
    }
    let (from, conn) = (pkt.from, (pkt.from_conn != 0).then_some(pkt.from_conn));
    let fault = |what: &str| {
        let what = what.to_string();
        world.record(Some(from), conn, Kind::Fault { what });
    };
    match v.fate {
        Fate::Pass => {
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
                Payload::Syn(syn) => {
                    let mut back = Packet::between(pkt.to, pkt.from, Refused::answer(*syn));
                    back.to_conn = pkt.from_conn;
                    send(world, back);
                }
                _ => {}
            }
        }
    }
    v.fate
}

/// The ordering step and the in-flight queue.
fn transmit(world: &Rc<World>, pkt: Packet, delay: u64, ordered: bool) {
    let at = world.now.get() + world.latency() + delay;
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
    let full = world.net.link.flight.borrow_mut().insert(at, seq, pkt);
    if full.is_err() {
        world.fail(SimError::Capacity {
            what: "2^24 segments in flight",
        });
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
