//! The ends of a simulated TCP connection.
//!
//! A connection is two ordered byte pipes. Writes are buffered in the engine's
//! [`Connection`]; after each event the world flushes dirty connections here: pending output
//! is cut into segments at chosen points (choice 0: the whole write as one segment), and
//! each segment crosses the [`link`], which keeps a direction in order.
//!
//! Flow control: each direction has a receive window. A sender may have at most `window`
//! bytes sent and not yet acknowledged as read by the peer's protocol, so a reader that
//! pauses stalls its writer, whose buffer then grows until its streaming producer is paused.
//! The reader acknowledges what it read with packets on the same link, so an
//! acknowledgement takes a latency to arrive and a partition holds it: it rides on the data
//! the reader sends anyway (no extra packet), and once half a window of reads is owed it
//! goes as a window update of its own. Half a window keeps a stalled writer from waiting
//! forever: a writer stalls only with a whole window unacknowledged, which the reader,
//! once it has read it, owes.
//!
//! Closing follows TCP: a clean close sends FIN after the data; the closing side is done at
//! once (as in Twisted, once its data is handed to the network); a peer that did not opt in
//! to half-close closes in turn when the FIN arrives after the data. An abort sends RST. A
//! segment for a connection the receiver does not know (closed, or lost in a crash) is
//! answered with RST.

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::rc::{Rc, Weak};

use torsion::defer::Failure;
use torsion::driver::{CloseAction, Connection, EofAction};
use torsion::error::{ConnectionDone, ConnectionLost, Panicked};
use torsion::protocol::{Address, Transport};
use torsion::reactor::ReactorTime;

use crate::host::HostState;
use crate::net::link::{self, Fate, Packet, Payload};
use crate::trace::Kind;
use crate::world::{SimError, World};

/// One end of a simulated TCP connection.
pub(crate) struct SimConn {
    pub(crate) id: u64,
    host: usize,
    pub(crate) conn: Rc<Connection>,
    peer: (usize, u64),
    /// The latest arrival of a packet in this end's sending direction.
    pub(crate) last_arrival: Rc<Cell<u64>>,
    /// Bytes sent and not yet acknowledged as read by the peer.
    in_flight: Cell<usize>,
    /// Bytes read here and not yet acknowledged to the peer.
    unacked: Cell<usize>,
    inbound: RefCell<VecDeque<u8>>,
    eof: Cell<bool>,
    eof_done: Cell<bool>,
    fin_sent: Cell<bool>,
    closed: Cell<bool>,
    /// Gone in a crash.
    vanished: Cell<bool>,
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
        self.vanished.set(true);
    }

    /// Whether the other end vanished in a crash of its host (this end will never hear).
    pub(crate) fn peer_crashed(&self) -> bool {
        self.peer_ref
            .borrow()
            .upgrade()
            .is_none_or(|p| p.vanished.get())
    }
}

/// A new end on `host`, talking to `peer` (host, connection).
pub(crate) fn new_conn(
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
        unacked: Cell::new(0),
        inbound: RefCell::new(VecDeque::new()),
        eof: Cell::new(false),
        eof_done: Cell::new(false),
        fin_sent: Cell::new(false),
        closed: Cell::new(false),
        vanished: Cell::new(false),
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
        // Fragmentation: choice 0 sends all that fits; choice 1 (of the world's odds) ends
        // the segment at a chosen point. Whether to split is its own choice, taken again for
        // the rest: so most writes arrive whole whatever their size (a uniform cut point
        // alone would split nearly every write), and every split point stays reachable.
        let odds = world.split_odds;
        let seg = if odds > 0 && len > 1 && world.choose(odds) == 1 {
            1 + world.choose(len as u64 - 1) as usize
        } else {
            len
        };
        let bytes = c.conn.peek_output(|a, b| {
            let mut v = world.net.buffer(seg);
            let first = seg.min(a.len());
            v.extend_from_slice(&a[..first]);
            v.extend_from_slice(&b[..seg - first]);
            v
        });
        c.conn.consume_output(seg);
        pending -= seg;
        c.in_flight.set(c.in_flight.get() + seg);
        let ack = c.unacked.replace(0);
        if send(world, c, Payload::Data { bytes, ack }) == Fate::Reset {
            // The segment never left: the connection is reset in its place.
            lose(
                world,
                c,
                Failure::new(ConnectionLost::new("connection reset (fault)")),
            );
            return;
        }
    }
    match c.conn.close_action() {
        CloseAction::None => {}
        CloseAction::Close => {
            send_fin(world, c);
            lose(world, c, Failure::new(ConnectionDone));
        }
        CloseAction::ShutdownWrite => {
            send_fin(world, c);
            if c.conn.write_shutdown_done() == EofAction::Close {
                lose(world, c, Failure::new(ConnectionDone));
            }
        }
        CloseAction::Abort(reason) => {
            let unsent = c.conn.discarded_output();
            let unread = std::mem::take(&mut *c.inbound.borrow_mut()).len();
            world.record(Some(c.host), Some(c.id), Kind::Rst { unsent, unread });
            send(world, c, Payload::Rst);
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

fn send_fin(world: &Rc<World>, c: &Rc<SimConn>) {
    if !c.fin_sent.replace(true) {
        world.record(Some(c.host), Some(c.id), Kind::Fin);
        send(world, c, Payload::Fin);
    }
}

/// Hands `data` to the protocol at once if nothing is held back (the common case: no copy).
fn receive(world: &Rc<World>, c: &Rc<SimConn>, data: Vec<u8>) {
    if c.inbound.borrow().is_empty() && !c.closed.get() && !c.conn.reading_paused() {
        world.record_data(c.host, Some(c.id), true, &data);
        c.conn.deliver(&data);
        read(world, c, data.len());
        world.net.recycle(data);
        return;
    }
    c.inbound.borrow_mut().extend(data.iter().copied());
    world.net.recycle(data);
    deliver_inbound(world, c);
}

/// The protocol read `n` bytes: they are owed to the peer as an acknowledgement, which
/// goes as a window update of its own once half a window is owed (otherwise it rides on
/// the next data segment).
fn read(world: &Rc<World>, c: &Rc<SimConn>, n: usize) {
    let owed = c.unacked.get() + n;
    if owed >= (world.cfg.window / 2).max(1) && !c.closed.get() {
        c.unacked.set(0);
        send(world, c, Payload::Window(owed));
    } else {
        c.unacked.set(owed);
    }
}

/// The peer read `n` more bytes: this end's window opens by as much.
fn acked(world: &World, c: &Rc<SimConn>, n: usize) {
    if n == 0 {
        return;
    }
    c.in_flight.set(c.in_flight.get().saturating_sub(n));
    if c.conn.pending_output() > 0 && !c.fin_sent.get() {
        mark_dirty(world, c);
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
        read(world, c, data.len());
    }
    if c.eof.get() && !c.eof_done.get() && !c.closed.get() {
        c.eof_done.set(true);
        if c.conn.read_eof() == EofAction::Close {
            send_fin(world, c);
            lose(world, c, Failure::new(ConnectionDone));
        }
    }
}

/// The connection is lost: it leaves its host's table and its protocol hears why.
pub(crate) fn lose(world: &Rc<World>, c: &Rc<SimConn>, reason: Failure) {
    if c.closed.replace(true) {
        return;
    }
    if let Some(h) = world.host(c.host) {
        h.st.conns.borrow_mut().remove(&c.id);
        h.st.lost
            .borrow_mut()
            .push(crate::world::LostConn::new(c.id, &c.conn));
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

/// Sends `payload` from `c` to its peer, in order with the direction's other packets.
fn send(world: &Rc<World>, c: &Rc<SimConn>, payload: Payload) -> Fate {
    let pkt = Packet {
        from: c.host,
        to: c.peer.0,
        from_conn: c.id,
        to_conn: c.peer.1,
        payload,
        order: Some(c.last_arrival.clone()),
        receiver: c.peer_ref.borrow().clone(),
    };
    link::send(world, pkt)
}

/// A TCP segment (data, FIN, RST, window update) reaches its host.
pub(crate) fn arrive(world: &Rc<World>, pkt: Packet) {
    let conn = match pkt.receiver.upgrade() {
        Some(c) if !c.closed.get() => Some(c),
        _ => find(world, pkt.to, pkt.to_conn),
    };
    let Some(c) = conn else {
        // Unknown connection: data and FIN are answered with a reset; a reset or a window
        // update for a connection that is gone needs no answer.
        if matches!(pkt.payload, Payload::Data { .. } | Payload::Fin) {
            link::send(world, pkt.reset_reply());
        }
        return;
    };
    match pkt.payload {
        Payload::Data { bytes, ack } => {
            acked(world, &c, ack);
            receive(world, &c, bytes);
        }
        Payload::Fin => {
            c.eof.set(true);
            deliver_inbound(world, &c);
        }
        Payload::Rst => {
            let unread = std::mem::take(&mut *c.inbound.borrow_mut()).len();
            let unsent = c.conn.pending_output();
            world.record(Some(c.host), Some(c.id), Kind::ResetBy { unsent, unread });
            lose(
                world,
                &c,
                Failure::new(ConnectionLost::new("connection reset by peer")),
            );
        }
        Payload::Window(n) => acked(world, &c, n),
        // Handshake packets and datagrams go elsewhere (see `link::arrive`).
        _ => {}
    }
}
