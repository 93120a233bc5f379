//! Connecting and listening: connectors, the handshake, listeners.
//!
//! A connect sends a SYN across the [`link`]; the connector itself is the engine's
//! [`ConnectorCore`] (the state machine every reactor drives), with a [`ConnectIo`] that sends
//! the SYN. The server's host, if it has a listener on the port whose factory builds a
//! protocol (and the SYN was not marked refused by the refuse fault), creates its end at once
//! (accept, `connection_made`) and answers with a SYN-ACK; otherwise with a refusal. The
//! client's end is created when the SYN-ACK arrives, if the attempt is still the connector's
//! current one and the client host has not crashed since it sent the SYN; otherwise (a
//! timeout, a stop, a crash came first) the server's end is reset.
//! The SYN-ACK travels in the server's sending direction, so the server's first data never
//! overtakes it. A connect that hears nothing (a SYN lost in a partition) times out.

use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion::defer::Failure;
use torsion::driver::{ConnectIo, ConnectorCore, FactoryStarts};
use torsion::error::ConnectionRefused;
use torsion::protocol::{Address, ClientFactory, Connector};
use torsion::reactor::{DelayedCall, ReactorTime};

use crate::host::{Host, HostState};
use crate::net::link::{self, Packet, Payload};
use crate::net::tcp::new_conn;
use crate::trace::Kind;
use crate::world::World;

/// A connection attempt, in flight.
pub(crate) struct Syn {
    /// The port asked for.
    port: u16,
    /// The client's address.
    client_addr: Address,
    /// `host:port` as the client gave it.
    peer: String,
    connector: Rc<ConnectorCore>,
    attempt: u64,
    /// The client host's incarnation when it sent the SYN: a crash ends the attempt.
    incarnation: u32,
    /// Refused by a fault, whatever listens.
    refused: bool,
}

impl Syn {
    /// Marks it refused (the refuse fault): its receiver answers with a refusal.
    pub(crate) fn refuse(&mut self) {
        self.refused = true;
    }
}

/// The server's answer to a SYN it accepted.
pub(crate) struct SynAck {
    server_addr: Address,
    client_addr: Address,
    connector: Rc<ConnectorCore>,
    attempt: u64,
    incarnation: u32,
}

/// The answer to a SYN nobody accepted.
pub(crate) struct Refused {
    connector: Rc<ConnectorCore>,
    attempt: u64,
    peer: String,
}

impl Refused {
    /// The refusal reaches the client.
    pub(crate) fn arrive(self) {
        let peer = self.peer;
        self.connector
            .failed(self.attempt, Failure::new(ConnectionRefused { peer }));
    }
}

/// Stops a listener.
pub(crate) fn stop_listening(st: &HostState, port: u16) {
    let removed = st.listeners.borrow_mut().remove(&port);
    if let Some(l) = removed {
        st.starts.borrow_mut().do_stop(&l.factory);
    }
}

/// The I/O half of a simulated connector: a SYN across the link. The state machine (attempts,
/// the timeout, factory start/stop, failed/lost) is the engine's [`ConnectorCore`], the same
/// one the real reactor drives.
struct SimConnectIo {
    host: Weak<HostState>,
    dest: String,
    port: u16,
}

impl ConnectIo for SimConnectIo {
    fn open(&self, core: &Rc<ConnectorCore>, attempt: u64) {
        let Some(st) = self.host.upgrade() else {
            return;
        };
        let (Some(world), Some(host)) = (st.world(), st.handle()) else {
            return;
        };
        let peer = format!("{}:{}", self.dest, self.port);
        let Some(server) = world.resolve(&self.dest) else {
            // No such host: refused on the spot, on the next turn.
            let core = core.clone();
            st.schedule_global(world.now.get(), move || {
                core.failed(attempt, Failure::new(ConnectionRefused { peer }));
            });
            return;
        };
        let cid = world.next_conn.get();
        world.next_conn.set(cid + 1);
        let client_addr = Address::tcp(SocketAddr::from((st.ip, host.alloc_port())));
        let syn = Syn {
            port: self.port,
            client_addr,
            peer,
            connector: core.clone(),
            attempt,
            incarnation: st.incarnation.get(),
            refused: false,
        };
        let mut pkt = Packet::between(st.index, server, Payload::Syn(Box::new(syn)));
        pkt.from_conn = cid;
        link::send(&world, pkt);
    }

    /// A SYN in flight stays in flight: its answer finds the attempt stale and is dropped
    /// (a SYN-ACK is answered with a reset, as a real stack does).
    fn release(&self) {}

    fn destination(&self) -> Address {
        let ip = self
            .host
            .upgrade()
            .and_then(|st| st.world())
            .and_then(|w| w.resolve(&self.dest).and_then(|i| w.host(i)))
            .map_or(std::net::Ipv4Addr::UNSPECIFIED, |h| h.ip());
        Address::tcp(SocketAddr::from((ip, self.port)))
    }

    fn call_later(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Option<DelayedCall> {
        let host = self.host.upgrade()?.handle()?;
        Some(host.call_later_boxed(delay, f))
    }

    fn with_starts(&self, f: &mut dyn FnMut(&mut FactoryStarts)) {
        if let Some(st) = self.host.upgrade() {
            f(&mut st.starts.borrow_mut());
        }
    }

    fn attempt_started(&self, _attempt: u64) {
        let Some(st) = self.host.upgrade() else {
            return;
        };
        if let Some(w) = st.world() {
            let to = format!("{}:{}", self.dest, self.port);
            w.record(Some(st.index), None, Kind::Connect { to });
        }
    }

    fn attempt_failed(&self, reason: &Failure) {
        let Some(st) = self.host.upgrade() else {
            return;
        };
        if let Some(w) = st.world() {
            let reason = reason.to_string();
            w.record(Some(st.index), None, Kind::ConnectFailed { reason });
        }
    }
}

/// A SYN from `client` (its connection `cid`) reaches `server`.
pub(crate) fn syn_arrive(world: &Rc<World>, client: usize, cid: u64, server: usize, syn: Syn) {
    let Some(host) = world.host(server) else {
        return;
    };
    let factory = host
        .st
        .listeners
        .borrow()
        .get(&syn.port)
        .map(|l| l.factory.clone());
    let protocol = match factory {
        Some(f) if !syn.refused => f.build_protocol(&syn.client_addr),
        _ => None,
    };
    let Some(protocol) = protocol else {
        let peer = if syn.refused {
            syn.peer
        } else {
            format!("{}:{}", host.ip(), syn.port)
        };
        let refused = Refused {
            connector: syn.connector,
            attempt: syn.attempt,
            peer,
        };
        let mut pkt = Packet::between(server, client, Payload::Refused(Box::new(refused)));
        pkt.to_conn = cid;
        link::send(world, pkt);
        return;
    };
    let sid = world.next_conn.get();
    world.next_conn.set(sid + 1);
    let server_addr = Address::tcp(SocketAddr::from((host.ip(), syn.port)));
    let sc = new_conn(
        world,
        &host.st,
        sid,
        (client, cid),
        server_addr,
        syn.client_addr,
        protocol,
    );
    world.record(
        Some(server),
        Some(sid),
        Kind::Accept {
            peer: syn.client_addr.addr.to_string(),
        },
    );
    let ack = SynAck {
        server_addr,
        client_addr: syn.client_addr,
        connector: syn.connector,
        attempt: syn.attempt,
        incarnation: syn.incarnation,
    };
    link::send(
        world,
        Packet {
            from: server,
            to: client,
            from_conn: sid,
            to_conn: cid,
            payload: Payload::SynAck(Box::new(ack)),
            order: Some(sc.last_arrival.clone()),
            receiver: Weak::new(),
        },
    );
    world.record(Some(server), Some(sid), Kind::Made);
    sc.conn.make_connection();
}

/// A SYN-ACK from `server` (its connection `sid`) reaches `client` (for its connection
/// `cid`).
pub(crate) fn synack_arrive(
    world: &Rc<World>,
    server: usize,
    sid: u64,
    client: usize,
    cid: u64,
    ack: SynAck,
) {
    let reset_server = |world: &Rc<World>| {
        let mut rst = Packet::between(client, server, Payload::Rst);
        (rst.from_conn, rst.to_conn) = (cid, sid);
        link::send(world, rst);
    };
    let core = ack.connector;
    let Some(host) = world.host(client) else {
        return;
    };
    // An attempt made before the host crashed died with it, even if the host is up again.
    if !host.is_up()
        || host.st.incarnation.get() != ack.incarnation
        || !core.is_current(ack.attempt)
    {
        reset_server(world);
        return;
    }
    let Some(protocol) = core.build_protocol(ack.attempt, &ack.server_addr) else {
        reset_server(world); // the factory declined: the attempt failed with CancelledError
        return;
    };
    let c = new_conn(
        world,
        &host.st,
        cid,
        (server, sid),
        ack.client_addr,
        ack.server_addr,
        protocol,
    );
    core.connected(ack.attempt, &c.conn);
    world.record(Some(client), Some(cid), Kind::Made);
    c.conn.make_connection();
}

/// Starts connecting from `host` to `dest:port`.
pub(crate) fn connect(
    host: &Host,
    dest: &str,
    port: u16,
    factory: Rc<dyn ClientFactory>,
    timeout: Duration,
) -> Connector {
    let io = SimConnectIo {
        host: Rc::downgrade(&host.st),
        dest: dest.to_string(),
        port,
    };
    let core = ConnectorCore::new(factory, timeout, Box::new(io));
    let handle = core.handle();
    core.start();
    handle
}
