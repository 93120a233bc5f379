//! Connecting and listening: connectors, the handshake, listeners.
//!
//! A connect sends a SYN across the [`link`]. The server's host, if it has a
//! listener on the port whose factory builds a protocol (and the SYN was not marked refused by
//! the refuse fault), creates its end at once (accept,
//! `connection_made`) and answers with a SYN-ACK; otherwise with a refusal. The client's
//! end is created when the SYN-ACK arrives, if the attempt is still the connector's
//! current one; otherwise (a timeout, a stop, a crash came first) the server's end is reset.
//! The SYN-ACK travels in the server's sending direction, so the server's first data never
//! overtakes it. A connect that hears nothing (a SYN lost in a partition) times out.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion::defer::Failure;
use torsion::error::{CancelledError, ConnectionRefused, TimeoutError};
use torsion::protocol::{Address, ClientFactory, Connector, ConnectorDriver, ConnectorState};
use torsion::reactor::ReactorTimeExt;

use crate::host::{Host, HostState};
use crate::net::link::{self, Packet, Payload};
use crate::net::tcp::{new_conn, SimConn};
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
    connector: Rc<SimConnector>,
    attempt: u64,
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
    connector: Rc<SimConnector>,
    attempt: u64,
}

/// The answer to a SYN nobody accepted.
pub(crate) struct Refused {
    connector: Rc<SimConnector>,
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
pub(crate) struct SimConnector {
    me: Weak<SimConnector>,
    host: Weak<HostState>,
    dest: String,
    port: u16,
    factory: Rc<dyn ClientFactory>,
    timeout: Duration,
    state: Cell<ConnectorState>,
    attempt: Cell<u64>,
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
        self.state.set(ConnectorState::Connecting);
        st.starts.borrow_mut().do_start(&self.factory);
        let peer = format!("{}:{}", self.dest, self.port);
        world.record(Some(st.index), None, Kind::Connect { to: peer.clone() });
        self.factory.started_connecting(&handle);
        // Pending work holds the connector strongly (the reactor keeps it alive, as
        // Twisted's does): the timeout, the SYN in flight, and later the connection.
        let Some(me) = self.me.upgrade() else { return };
        let timeout = self.timeout;
        let call = host.call_later(timeout, move || {
            me.failed(attempt, Failure::new(TimeoutError(timeout)));
        });
        *self.timeout_call.borrow_mut() = Some(call);
        let Some(strong) = self.me.upgrade() else {
            return;
        };
        let Some(server) = resolve(&world, &self.dest) else {
            // No such host: refused on the spot, on the next turn.
            st.schedule_global(world.now.get(), move || {
                strong.failed(attempt, Failure::new(ConnectionRefused { peer }));
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
            connector: strong,
            attempt,
            refused: false,
        };
        let mut pkt = Packet::between(st.index, server, Payload::Syn(Box::new(syn)));
        pkt.from_conn = cid;
        link::send(&world, pkt);
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
    let sc = ack.connector;
    let Some(host) = world.host(client) else {
        return;
    };
    if !host.is_up()
        || sc.attempt.get() != ack.attempt
        || sc.state.get() != ConnectorState::Connecting
    {
        reset_server(world);
        return;
    }
    let Some(protocol) = sc.factory.build_protocol(&ack.server_addr) else {
        reset_server(world);
        sc.failed(ack.attempt, Failure::new(CancelledError));
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
        conn: RefCell::new(Weak::new()),
        timeout_call: RefCell::new(None),
    });
    let handle = Connector::new(sc.clone() as Rc<dyn ConnectorDriver>);
    sc.start();
    handle
}
