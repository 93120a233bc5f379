//! The simulated TCP network.
//!
//! A connection is two ordered byte pipes. Writes are buffered in the engine's
//! [`Connection`]; after each event the world flushes dirty connections here: pending output
//! is cut into segments at chosen points (choice 0: the whole write as one segment), each
//! segment gets a latency within the link's range and arrives at the peer at
//! `max(previous arrival, now + latency)`, so a direction is never reordered. Each
//! direction has a receive window: a sender may have at most `window` bytes sent but not yet
//! read by the peer's protocol, so a reader that pauses stalls its writer, whose buffer then
//! grows until its streaming producer is paused. (The window opens as soon as the reader
//! consumes bytes; acknowledgements are not delayed — a simplification that keeps events few.)
//!
//! Closing follows TCP: a clean close sends FIN after the data; the closing side is done at
//! once (as in Twisted, once its data is handed to the network); a peer that did not opt in
//! to half-close closes in turn when the FIN arrives after the data. An abort sends RST. A
//! segment for a connection the receiver does not know (closed, or lost in a crash) is
//! answered with RST. Partitions hold segments (in order) until healed; SYNs into a
//! partition are lost and the connect times out.

use std::cell::{Cell, RefCell};
use std::collections::{BTreeSet, VecDeque};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion::defer::Failure;
use torsion::error::{
    CancelledError, ConnectionDone, ConnectionLost, ConnectionRefused, Panicked, TimeoutError,
};
use torsion::protocol::{
    Address, ClientFactory, CloseAction, Connection, Connector, ConnectorDriver, ConnectorState,
    Transport,
};
use torsion::reactor::{ReactorTime, ReactorTimeExt};

use crate::host::{Host, HostState};
use crate::keyed::{any_at, At, MAX_INDEX};
use crate::trace::Kind;
use crate::world::{SimError, World};

enum Seg {
    Data(Vec<u8>),
    Fin,
    Rst,
}

pub(crate) struct Packet {
    from_host: usize,
    from_conn: u64,
    to_host: usize,
    to_conn: u64,
    seg: Seg,
    /// The sending direction's latest arrival time: segments of one direction never
    /// overtake each other, even once the sending connection is gone (a partition may hold
    /// a closed connection's last segments and its FIN until it heals).
    order: Option<Rc<Cell<u64>>>,
    receiver: Weak<SimConn>,
}

/// Network-wide state: which links are cut, what they hold, which connections need a flush.
#[derive(Default)]
pub(crate) struct Net {
    /// Segments in flight, by (arrival time, sequence): the bulk of a run's events, kept out
    /// of the hosts' timer queues so that each costs one heap push and pop.
    pub(crate) in_flight: RefCell<Flight>,
    dirty: RefCell<VecDeque<Rc<SimConn>>>,
    cut: RefCell<BTreeSet<(usize, usize)>>,
    held: RefCell<Vec<Packet>>,
    /// Segment buffers handed back after delivery, reused for the next segments (a run
    /// moves millions of small segments; this keeps the allocator out of the hot path).
    spare_bufs: RefCell<Vec<Vec<u8>>>,
}

/// At most this many spare segment buffers are kept, each at most this large.
const SPARE_BUFS: usize = 256;
const SPARE_BUF_MAX: usize = 64 * 1024;

impl Net {
    fn buffer(&self, len: usize) -> Vec<u8> {
        match self.spare_bufs.borrow_mut().pop() {
            Some(mut v) => {
                v.clear();
                v.reserve(len);
                v
            }
            None => Vec::with_capacity(len),
        }
    }

    fn recycle(&self, v: Vec<u8>) {
        let mut spare = self.spare_bufs.borrow_mut();
        if spare.len() < SPARE_BUFS && v.capacity() <= SPARE_BUF_MAX {
            spare.push(v);
        }
    }
}

/// Segments in flight: a heap of (arrival, sequence, slot) over a slab of packets, so that
/// moving a packet in and out costs no copying of the packet itself.
#[derive(Default)]
pub(crate) struct Flight {
    heap: std::collections::BinaryHeap<At>,
    slots: Vec<Option<Packet>>,
    free: Vec<u32>,
}

impl Flight {
    /// Puts `pkt` in flight; `Err` gives it back if [`MAX_INDEX`] segments already are.
    fn insert(&mut self, at: u64, seq: u64, pkt: Packet) -> Result<(), Packet> {
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
            .map(|p| p.to_host)
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

    /// (sequence, destination host, slot) of every segment due at `t`, in sequence order.
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

    /// Whether a child of the root is due at `t` (then more than one segment may be).
    pub(crate) fn second_at(&self, t: u64) -> bool {
        let heap = self.heap.as_slice();
        heap.iter().skip(1).take(2).any(|r| r.time() == t)
    }

    /// Whether a segment due at `t` goes to a host other than `host`.
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

/// One end of a simulated TCP connection.
pub(crate) struct SimConn {
    pub(crate) id: u64,
    host: usize,
    pub(crate) conn: Rc<Connection>,
    peer: (usize, u64),
    last_arrival: Rc<Cell<u64>>,
    in_flight: Cell<usize>,
    inbound: RefCell<VecDeque<u8>>,
    eof: Cell<bool>,
    eof_done: Cell<bool>,
    fin_sent: Cell<bool>,
    closed: Cell<bool>,
    queued: Cell<bool>,
    /// The other end, once both exist (a shortcut past the host's table).
    peer_ref: RefCell<Weak<SimConn>>,
}

impl SimConn {
    pub(crate) fn transport(&self) -> Transport {
        self.conn.transport()
    }

    /// Gone in a crash: no word to the protocol or the peer.
    pub(crate) fn vanish(&self) {
        self.closed.set(true);
    }
}

fn new_conn(
    world: &Rc<World>,
    host: &HostState,
    id: u64,
    peer: (usize, u64),
    local: Address,
    remote: Address,
    protocol: Box<dyn torsion::protocol::Protocol>,
) -> Rc<SimConn> {
    let clock: Rc<dyn ReactorTime> = match host.handle() {
        Some(h) => Rc::new(h),
        None => Rc::new(torsion::testing::Clock::new()),
    };
    let w = Rc::downgrade(world);
    let slot: Rc<RefCell<Weak<SimConn>>> = Rc::default();
    let me = slot.clone();
    let wake: Rc<dyn Fn()> = Rc::new(move || {
        if let (Some(w), Some(c)) = (w.upgrade(), me.borrow().upgrade()) {
            mark_dirty(&w, &c);
        }
    });
    let conn = Connection::new(clock, wake, local, remote, protocol);
    let c = Rc::new(SimConn {
        id,
        host: host.index,
        conn,
        peer,
        last_arrival: Rc::new(Cell::new(0)),
        in_flight: Cell::new(0),
        inbound: RefCell::new(VecDeque::new()),
        eof: Cell::new(false),
        eof_done: Cell::new(false),
        fin_sent: Cell::new(false),
        closed: Cell::new(false),
        queued: Cell::new(false),
        peer_ref: RefCell::new(Weak::new()),
    });
    *slot.borrow_mut() = Rc::downgrade(&c);
    if let Some(peer) = find(world, peer.0, peer.1) {
        *peer.peer_ref.borrow_mut() = Rc::downgrade(&c);
        *c.peer_ref.borrow_mut() = Rc::downgrade(&peer);
    }
    host.conns.borrow_mut().insert(id, c.clone());
    c
}

fn mark_dirty(world: &World, c: &Rc<SimConn>) {
    if !c.queued.replace(true) {
        world.net.dirty.borrow_mut().push_back(c.clone());
    }
}

fn find(world: &World, host: usize, id: u64) -> Option<Rc<SimConn>> {
    let h = world.host(host)?;
    let c = h.st.conns.borrow().get(&id).cloned();
    c
}

/// Flushes every connection that asked for it, first asked first, until none does (one
/// that asks again while being flushed goes to the back).
pub(crate) fn flush_dirty(world: &Rc<World>) {
    loop {
        let next = world.net.dirty.borrow_mut().pop_front();
        let Some(c) = next else { return };
        c.queued.set(false);
        flush(world, &c);
    }
}

fn flush(world: &Rc<World>, c: &Rc<SimConn>) {
    if c.closed.get() {
        return;
    }
    // Held input (a resumed reader) or an unreported FIN first.
    if !c.inbound.borrow().is_empty() || (c.eof.get() && !c.eof_done.get()) {
        deliver_inbound(world, c);
        if c.closed.get() {
            return;
        }
    }
    let window = world.cfg.window;
    // No user code runs in this loop (producers hear of a drained buffer on the next turn),
    // so the pending count is kept here rather than asked for again.
    let mut pending = if c.fin_sent.get() {
        0
    } else {
        c.conn.pending_output()
    };
    while pending > 0 {
        let avail = window.saturating_sub(c.in_flight.get());
        if avail == 0 {
            break;
        }
        let len = pending.min(avail);
        // Fragmentation: choice 0 sends all that fits; otherwise the segment ends at a
        // chosen point. Whether to split is its own choice, taken again for the rest: so
        // half the writes arrive whole whatever their size (a uniform cut point alone would
        // split nearly every write), and every split point stays reachable.
        let seg = if world.cfg.fragment && len > 1 && world.choose(2) == 1 {
            1 + world.choose(len as u64 - 1) as usize
        } else {
            len
        };
        let data = c.conn.peek_output(|a, b| {
            let mut v = world.net.buffer(seg);
            let first = seg.min(a.len());
            v.extend_from_slice(&a[..first]);
            v.extend_from_slice(&b[..seg - first]);
            v
        });
        c.conn.consume_output(seg);
        pending -= seg;
        c.in_flight.set(c.in_flight.get() + seg);
        if world.chance(world.cfg.faults.reset_ppm) {
            // The segment never leaves: the connection is reset in its place.
            world.record(
                Some(c.host),
                Some(c.id),
                Kind::Fault {
                    what: "reset".into(),
                },
            );
            send(world, c, Seg::Rst);
            lose(
                world,
                c,
                Failure::new(ConnectionLost::new("connection reset (fault)")),
            );
            return;
        }
        world.record_data(c.host, Some(c.id), false, &data);
        send(world, c, Seg::Data(data));
    }
    match c.conn.close_action() {
        CloseAction::None => {}
        CloseAction::Close => {
            if !c.fin_sent.replace(true) {
                world.record(Some(c.host), Some(c.id), Kind::Fin);
                send(world, c, Seg::Fin);
            }
            lose(world, c, Failure::new(ConnectionDone));
        }
        CloseAction::ShutdownWrite => {
            if !c.fin_sent.replace(true) {
                world.record(Some(c.host), Some(c.id), Kind::Fin);
                send(world, c, Seg::Fin);
            }
            c.conn.write_shutdown_done();
            if c.eof_done.get() {
                lose(world, c, Failure::new(ConnectionDone));
            }
        }
        CloseAction::Abort(reason) => {
            world.record(Some(c.host), Some(c.id), Kind::Rst);
            send(world, c, Seg::Rst);
            if let Some(p) = reason.downcast_ref::<Panicked>() {
                let host = world.host_name(c.host);
                world.record(
                    Some(c.host),
                    Some(c.id),
                    Kind::Panic {
                        message: p.message.clone(),
                    },
                );
                if world.cfg.fail_on_panic {
                    world.fail(SimError::Panic {
                        host,
                        conn: Some(c.id),
                        message: p.message.clone(),
                    });
                }
            }
            lose(world, c, reason);
        }
    }
}

/// Hands `data` to the protocol at once if nothing is held back (the common case: no copy).
fn receive(world: &Rc<World>, c: &Rc<SimConn>, data: Vec<u8>) {
    if c.inbound.borrow().is_empty() && !c.closed.get() && !c.conn.reading_paused() {
        world.record_data(c.host, Some(c.id), true, &data);
        c.conn.deliver(&data);
        credit(world, c, data.len());
        world.net.recycle(data);
        return;
    }
    c.inbound.borrow_mut().extend(data.iter().copied());
    world.net.recycle(data);
    deliver_inbound(world, c);
}

/// The reader consumed `n` bytes: the sender's window opens by as much.
fn credit(world: &World, c: &SimConn, n: usize) {
    let peer = c.peer_ref.borrow().upgrade();
    if let Some(peer) = peer {
        peer.in_flight.set(peer.in_flight.get().saturating_sub(n));
        if peer.conn.pending_output() > 0 {
            mark_dirty(world, &peer);
        }
    }
}

fn deliver_inbound(world: &Rc<World>, c: &Rc<SimConn>) {
    loop {
        if c.closed.get() || c.conn.reading_paused() {
            return;
        }
        let data: Vec<u8> = c.inbound.borrow_mut().drain(..).collect();
        if data.is_empty() {
            break;
        }
        world.record_data(c.host, Some(c.id), true, &data);
        c.conn.deliver(&data);
        credit(world, c, data.len());
    }
    if c.eof.get() && !c.eof_done.get() && !c.closed.get() {
        c.eof_done.set(true);
        if c.conn.read_eof() {
            if c.fin_sent.get() {
                lose(world, c, Failure::new(ConnectionDone));
            }
        } else {
            if !c.fin_sent.replace(true) {
                world.record(Some(c.host), Some(c.id), Kind::Fin);
                send(world, c, Seg::Fin);
            }
            lose(world, c, Failure::new(ConnectionDone));
        }
    }
}

fn lose(world: &Rc<World>, c: &Rc<SimConn>, reason: Failure) {
    if c.closed.replace(true) {
        return;
    }
    if let Some(h) = world.host(c.host) {
        h.st.conns.borrow_mut().remove(&c.id);
    }
    world.record(
        Some(c.host),
        Some(c.id),
        Kind::Lost {
            reason: reason.to_string(),
        },
    );
    c.conn.connection_lost(reason);
}

fn send(world: &Rc<World>, c: &Rc<SimConn>, seg: Seg) {
    let pkt = Packet {
        from_host: c.host,
        from_conn: c.id,
        to_host: c.peer.0,
        to_conn: c.peer.1,
        seg,
        order: Some(c.last_arrival.clone()),
        receiver: c.peer_ref.borrow().clone(),
    };
    transmit(world, pkt);
}

impl Packet {
    /// The host it is addressed to.
    pub(crate) fn to_host(&self) -> usize {
        self.to_host
    }
}

fn transmit(world: &Rc<World>, pkt: Packet) {
    let cut = {
        let cut = world.net.cut.borrow();
        !cut.is_empty() && cut.contains(&(pkt.from_host, pkt.to_host))
    };
    if cut {
        world.net.held.borrow_mut().push(pkt);
        return;
    }
    let now = world.now.get();
    let at = now + world.latency();
    let at = match &pkt.order {
        Some(last) => {
            let at = at.max(last.get());
            last.set(at);
            at
        }
        None => at,
    };
    let seq = world.seq.get();
    world.seq.set(seq + 1);
    if !world.seq_fits(seq) {
        return;
    }
    let full = world.net.in_flight.borrow_mut().insert(at, seq, pkt);
    if full.is_err() {
        world.fail(SimError::Capacity {
            what: "2^24 segments in flight",
        });
    }
}

/// A segment reaches its host. The world's step calls this for in-flight packets, once
/// the receiving host is known to be up.
pub(crate) fn arrive(world: &Rc<World>, pkt: Packet) {
    let conn = match pkt.receiver.upgrade() {
        Some(c) if !c.closed.get() => Some(c),
        _ => find(world, pkt.to_host, pkt.to_conn),
    };
    match (conn, pkt.seg) {
        (None, Seg::Rst) => {}
        (None, _) => {
            // Unknown connection: answer with a reset.
            transmit(
                world,
                Packet {
                    from_host: pkt.to_host,
                    from_conn: pkt.to_conn,
                    to_host: pkt.from_host,
                    to_conn: pkt.from_conn,
                    seg: Seg::Rst,
                    order: None,
                    receiver: Weak::new(),
                },
            );
        }
        (Some(c), Seg::Data(d)) => receive(world, &c, d),
        (Some(c), Seg::Fin) => {
            c.eof.set(true);
            deliver_inbound(world, &c);
        }
        (Some(c), Seg::Rst) => {
            c.inbound.borrow_mut().clear();
            lose(
                world,
                &c,
                Failure::new(ConnectionLost::new("connection reset by peer")),
            );
        }
    }
}

/// Cuts `a` → `b` (and `b` → `a` unless one-way).
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
    let mut cut = world.net.cut.borrow_mut();
    cut.insert((a, b));
    if !one_way {
        cut.insert((b, a));
    }
}

/// Heals a partition and releases what it held, in order.
pub(crate) fn heal(world: &Rc<World>, a: usize, b: usize, one_way: bool) {
    {
        let mut cut = world.net.cut.borrow_mut();
        cut.remove(&(a, b));
        if !one_way {
            cut.remove(&(b, a));
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
    let held = std::mem::take(&mut *world.net.held.borrow_mut());
    for pkt in held {
        transmit(world, pkt); // still-cut links hold it again, in order
    }
}

/// Stops a listener.
pub(crate) fn stop_listening(st: &HostState, port: u16) {
    let removed = st.listeners.borrow_mut().remove(&port);
    if let Some(l) = removed {
        st.starts.borrow_mut().do_stop(&l.factory);
    }
}

fn resolve(world: &World, dest: &str) -> Option<usize> {
    let hosts = world.hosts.borrow();
    if let Some(h) = hosts.iter().find(|h| h.name() == dest) {
        return Some(h.st.index);
    }
    hosts
        .iter()
        .find(|h| h.ip().to_string() == dest)
        .map(|h| h.st.index)
}

/// A simulated connector.
struct SimConnector {
    me: Weak<SimConnector>,
    host: Weak<HostState>,
    dest: String,
    port: u16,
    factory: Rc<dyn ClientFactory>,
    timeout: Duration,
    state: Cell<ConnectorState>,
    attempt: Cell<u64>,
    /// The host's incarnation when the attempt started: a crash ends the attempt.
    incarnation: Cell<u32>,
    conn: RefCell<Weak<SimConn>>,
    timeout_call: RefCell<Option<torsion::reactor::DelayedCall>>,
}

impl SimConnector {
    fn cancel_timeout(&self) {
        if let Some(call) = self.timeout_call.borrow_mut().take() {
            let _ = call.cancel();
        }
    }

    fn handle(&self) -> Option<Connector> {
        self.me
            .upgrade()
            .map(|me| Connector::new(me as Rc<dyn ConnectorDriver>))
    }

    fn failed(&self, attempt: u64, reason: Failure) {
        if attempt != self.attempt.get() || self.state.get() != ConnectorState::Connecting {
            return;
        }
        self.cancel_timeout();
        self.state.set(ConnectorState::Disconnected);
        let (Some(st), Some(handle)) = (self.host.upgrade(), self.handle()) else {
            return;
        };
        if let Some(w) = st.world() {
            w.record(
                Some(st.index),
                None,
                Kind::ConnectFailed {
                    reason: reason.to_string(),
                },
            );
        }
        self.factory.client_connection_failed(&handle, reason);
        if self.state.get() == ConnectorState::Disconnected {
            st.starts.borrow_mut().do_stop(&self.factory);
        }
    }

    fn start(&self) {
        let (Some(st), Some(handle)) = (self.host.upgrade(), self.handle()) else {
            return;
        };
        let Some(world) = st.world() else { return };
        let Some(host) = st.handle() else { return };
        let attempt = self.attempt.get() + 1;
        self.attempt.set(attempt);
        self.incarnation.set(st.incarnation.get());
        self.state.set(ConnectorState::Connecting);
        st.starts.borrow_mut().do_start(&self.factory);
        world.record(
            Some(st.index),
            None,
            Kind::Connect {
                to: format!("{}:{}", self.dest, self.port),
            },
        );
        self.factory.started_connecting(&handle);
        // Pending work holds the connector strongly (the reactor keeps it alive, as
        // Twisted's does): the timeout, the SYN in flight, and later the connection.
        let Some(me) = self.me.upgrade() else { return };
        let timeout = self.timeout;
        let call = host.call_later(timeout, move || {
            me.failed(attempt, Failure::new(TimeoutError(timeout)));
        });
        *self.timeout_call.borrow_mut() = Some(call);
        let peer = format!("{}:{}", self.dest, self.port);
        let refuse = |me: Rc<SimConnector>, delay: u64| {
            let at = world.now.get() + delay;
            st.schedule_global(at, move || {
                me.failed(attempt, Failure::new(ConnectionRefused { peer }));
            });
        };
        let Some(strong) = self.me.upgrade() else {
            return;
        };
        let Some(server) = resolve(&world, &self.dest) else {
            refuse(strong, 0);
            return;
        };
        if world.chance(world.cfg.faults.refuse_ppm) {
            world.record(
                Some(st.index),
                None,
                Kind::Fault {
                    what: "connect refused".into(),
                },
            );
            refuse(strong, world.latency() * 2);
            return;
        }
        if world.net.cut.borrow().contains(&(st.index, server)) {
            return; // the SYN is lost; the timeout will fire
        }
        let cid = world.next_conn.get();
        world.next_conn.set(cid + 1);
        let local = Address::tcp(SocketAddr::from((st.ip, host.alloc_port())));
        let at = world.now.get() + world.latency();
        let (port, me, client) = (self.port, strong, st.index);
        let w = Rc::downgrade(&world);
        if let Some(server_host) = world.host(server) {
            server_host.st.schedule_global(at, move || {
                if let Some(w) = w.upgrade() {
                    syn_arrive(&w, server, port, client, cid, local, me, attempt);
                }
            });
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn syn_arrive(
    world: &Rc<World>,
    server: usize,
    port: u16,
    client: usize,
    cid: u64,
    client_addr: Address,
    connector: Rc<SimConnector>,
    attempt: u64,
) {
    let Some(host) = world.host(server) else {
        return;
    };
    if !host.is_up() {
        return;
    }
    let factory = host
        .st
        .listeners
        .borrow()
        .get(&port)
        .map(|l| l.factory.clone());
    let refuse = |world: &Rc<World>| {
        let at = world.now.get() + world.latency();
        let peer = format!("{}:{}", host.ip(), port);
        let connector = connector.clone();
        if let Some(ch) = world.host(client) {
            ch.st.schedule_global(at, move || {
                connector.failed(attempt, Failure::new(ConnectionRefused { peer }));
            });
        }
    };
    let Some(factory) = factory else {
        refuse(world);
        return;
    };
    let Some(protocol) = factory.build_protocol(&client_addr) else {
        refuse(world);
        return;
    };
    let sid = world.next_conn.get();
    world.next_conn.set(sid + 1);
    let server_addr = Address::tcp(SocketAddr::from((host.ip(), port)));
    let sc = new_conn(
        world,
        &host.st,
        sid,
        (client, cid),
        server_addr,
        client_addr,
        protocol,
    );
    world.record(
        Some(server),
        Some(sid),
        Kind::Accept {
            peer: client_addr.addr.to_string(),
        },
    );
    let at = world.now.get() + world.latency();
    sc.last_arrival.set(at);
    let w = Rc::downgrade(world);
    if let Some(ch) = world.host(client) {
        ch.st.schedule_global(at, move || {
            if let Some(w) = w.upgrade() {
                synack_arrive(
                    &w,
                    server,
                    sid,
                    server_addr,
                    client,
                    cid,
                    client_addr,
                    connector,
                    attempt,
                );
            }
        });
    }
    world.record(Some(server), Some(sid), Kind::Made);
    sc.conn.make_connection();
}

#[allow(clippy::too_many_arguments)]
fn synack_arrive(
    world: &Rc<World>,
    server: usize,
    sid: u64,
    server_addr: Address,
    client: usize,
    cid: u64,
    client_addr: Address,
    sc: Rc<SimConnector>,
    attempt: u64,
) {
    let reset_server = |world: &Rc<World>| {
        transmit(
            world,
            Packet {
                from_host: client,
                from_conn: cid,
                to_host: server,
                to_conn: sid,
                seg: Seg::Rst,
                order: None,
                receiver: Weak::new(),
            },
        );
    };
    let Some(host) = world.host(client) else {
        return;
    };
    // An attempt made before the host crashed died with it, even if the host is up again.
    if !host.is_up()
        || host.st.incarnation.get() != sc.incarnation.get()
        || sc.attempt.get() != attempt
        || sc.state.get() != ConnectorState::Connecting
    {
        reset_server(world);
        return;
    }
    let Some(protocol) = sc.factory.build_protocol(&server_addr) else {
        reset_server(world);
        sc.failed(attempt, Failure::new(CancelledError));
        return;
    };
    let c = new_conn(
        world,
        &host.st,
        cid,
        (server, sid),
        client_addr,
        server_addr,
        protocol,
    );
    sc.cancel_timeout();
    sc.state.set(ConnectorState::Connected);
    *sc.conn.borrow_mut() = Rc::downgrade(&c);
    let keep = sc.clone();
    c.conn.set_on_lost(move |reason| {
        let sc = keep;
        sc.state.set(ConnectorState::Disconnected);
        if let Some(handle) = sc.handle() {
            sc.factory.client_connection_lost(&handle, reason);
        }
        if sc.state.get() == ConnectorState::Disconnected {
            if let Some(st) = sc.host.upgrade() {
                st.starts.borrow_mut().do_stop(&sc.factory);
            }
        }
    });
    world.record(Some(client), Some(cid), Kind::Made);
    c.conn.make_connection();
}

impl ConnectorDriver for SimConnector {
    fn connect(&self) {
        if self.state.get() == ConnectorState::Disconnected {
            self.start();
        }
    }

    fn stop_connecting(&self) {
        if self.state.get() == ConnectorState::Connecting {
            self.failed(self.attempt.get(), Failure::new(CancelledError));
        }
    }

    fn disconnect(&self) {
        match self.state.get() {
            ConnectorState::Connecting => self.stop_connecting(),
            ConnectorState::Connected => {
                if let Some(c) = self.conn.borrow().upgrade() {
                    c.transport().lose_connection();
                }
            }
            ConnectorState::Disconnected => {}
        }
    }

    fn get_destination(&self) -> Address {
        let ip = self
            .host
            .upgrade()
            .and_then(|st| st.world())
            .and_then(|w| resolve(&w, &self.dest).and_then(|i| w.host(i)))
            .map_or(std::net::Ipv4Addr::UNSPECIFIED, |h| h.ip());
        Address::tcp(SocketAddr::from((ip, self.port)))
    }

    fn state(&self) -> ConnectorState {
        self.state.get()
    }
}

/// Starts connecting from `host` to `dest:port`.
pub(crate) fn connect(
    host: &Host,
    dest: &str,
    port: u16,
    factory: Rc<dyn ClientFactory>,
    timeout: Duration,
) -> Connector {
    let sc = Rc::new_cyclic(|me| SimConnector {
        me: me.clone(),
        host: Rc::downgrade(&host.st),
        dest: dest.to_string(),
        port,
        factory,
        timeout,
        state: Cell::new(ConnectorState::Disconnected),
        attempt: Cell::new(0),
        incarnation: Cell::new(0),
        conn: RefCell::new(Weak::new()),
        timeout_call: RefCell::new(None),
    });
    let handle = Connector::new(sc.clone() as Rc<dyn ConnectorDriver>);
    sc.start();
    handle
}
