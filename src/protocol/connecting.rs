//! `ConnectorCore`: the connection-establishment state machine, written once for every reactor.
//!
//! Layer: engine, driver contract. A connector's life — `Disconnected` → `Connecting` →
//! `Connected` → `Disconnected`, attempt numbering, the connect timeout, the factory's
//! `start_factory` / `stop_factory` counting, and which of `client_connection_failed` /
//! `client_connection_lost` a factory hears — is the same on every reactor. Only the I/O
//! differs: the real reactor opens a socket and waits for it to become writable, the simulator
//! sends a SYN across its link, the test double records the attempt for the test to complete.
//! So the state machine lives here, sans-IO (as quinn-proto's `Endpoint` owns its handshake),
//! and each reactor supplies a [`ConnectIo`] for the I/O half. A rule fixed here is fixed for
//! every reactor at once; the conformance suite checks that they agree.
//!
//! Every result of an attempt is tagged with its attempt number: a late answer to an attempt
//! that was abandoned (timed out, stopped, superseded by a retry) is ignored, and the driver
//! is told to drop what it holds for it.
//!
//! Nothing here calls the factory re-entrantly from inside a user's call except where Twisted
//! does too: `started_connecting` runs inside `connect`, and `stop_connecting` reports
//! `client_connection_failed(CancelledError)` at once, as Twisted's `stopConnecting` does.

use std::cell::{Cell, RefCell};
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::defer::Failure;
use crate::error::{CancelledError, TimeoutError};
use crate::protocol::{
    Address, ClientFactory, Connection, Connector, ConnectorDriver, ConnectorState, FactoryStarts,
    Protocol,
};
use crate::reactor::DelayedCall;

/// The I/O half of a connector, implemented by each reactor (see the module docs).
///
/// The core calls these; the driver answers by calling [`ConnectorCore::failed`],
/// [`ConnectorCore::build_protocol`] and [`ConnectorCore::connected`] with the attempt number
/// it was given, from its own loop (never from inside `open`).
pub trait ConnectIo {
    /// Starts attempt `attempt`: resolve, open a socket, send a SYN. A failure found at once
    /// is still reported on a later turn.
    fn open(&self, core: &Rc<ConnectorCore>, attempt: u64);
    /// Drops whatever the attempt in flight holds (a registered socket, a pending SYN). Called
    /// when an attempt fails, times out or is stopped; idempotent.
    fn release(&self);
    /// Where the connector connects to.
    fn destination(&self) -> Address;
    /// Runs `f` after `delay` on the reactor's clock (the connect timeout); `None` when the
    /// reactor is gone.
    fn call_later(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Option<DelayedCall>;
    /// Runs `f` with the reactor's factory start counts; does nothing when the reactor is gone.
    fn with_starts(&self, f: &mut dyn FnMut(&mut FactoryStarts));
    /// Told when an attempt begins (before `started_connecting`), for traces.
    fn attempt_started(&self, _attempt: u64) {}
    /// Told when an attempt fails, before the factory hears of it, for traces.
    fn attempt_failed(&self, _reason: &Failure) {}
}

/// The connection-establishment state machine behind every reactor's [`Connector`].
pub struct ConnectorCore {
    me: Weak<ConnectorCore>,
    factory: Rc<dyn ClientFactory>,
    timeout: Duration,
    io: Box<dyn ConnectIo>,
    state: Cell<ConnectorState>,
    attempt: Cell<u64>,
    timeout_call: RefCell<Option<DelayedCall>>,
    conn: RefCell<Weak<Connection>>,
}

impl ConnectorCore {
    /// A connector for `factory` whose I/O is `io`; not started (call [`ConnectorCore::start`]).
    pub fn new(
        factory: Rc<dyn ClientFactory>,
        timeout: Duration,
        io: Box<dyn ConnectIo>,
    ) -> Rc<ConnectorCore> {
        Rc::new_cyclic(|me| ConnectorCore {
            me: me.clone(),
            factory,
            timeout,
            io,
            state: Cell::new(ConnectorState::Disconnected),
            attempt: Cell::new(0),
            timeout_call: RefCell::new(None),
            conn: RefCell::new(Weak::new()),
        })
    }

    /// The user's handle to this connector.
    pub fn handle(self: &Rc<Self>) -> Connector {
        Connector::new(self.clone() as Rc<dyn ConnectorDriver>)
    }

    /// The factory the connector builds its protocol with.
    pub fn factory(&self) -> &Rc<dyn ClientFactory> {
        &self.factory
    }

    /// The I/O half.
    pub fn io(&self) -> &dyn ConnectIo {
        &*self.io
    }

    /// The number of the attempt in flight (or of the last one).
    pub fn attempt(&self) -> u64 {
        self.attempt.get()
    }

    /// Whether `attempt` is the attempt in flight (an answer to any other is stale).
    pub fn is_current(&self, attempt: u64) -> bool {
        attempt == self.attempt.get() && self.state.get() == ConnectorState::Connecting
    }

    /// Begins a new attempt: counts the factory as started, tells it `started_connecting`,
    /// arms the timeout and asks the driver to open. Does nothing unless disconnected.
    pub fn start(&self) {
        if self.state.get() != ConnectorState::Disconnected {
            return;
        }
        let Some(me) = self.me.upgrade() else { return };
        let attempt = self.attempt.get() + 1;
        self.attempt.set(attempt);
        self.state.set(ConnectorState::Connecting);
        self.io.with_starts(&mut |s| s.do_start(&self.factory));
        self.io.attempt_started(attempt);
        self.factory.started_connecting(&me.handle());
        if !self.is_current(attempt) {
            return; // stopped from started_connecting
        }
        // The pending timeout holds the connector strongly: the reactor keeps an attempt in
        // flight alive even when the user dropped its handle, as Twisted's does.
        let timeout = self.timeout;
        let m = me.clone();
        let call = self.io.call_later(
            timeout,
            Box::new(move || m.failed(attempt, Failure::new(TimeoutError(timeout)))),
        );
        *self.timeout_call.borrow_mut() = call;
        self.io.open(&me, attempt);
    }

    fn cancel_timeout(&self) {
        if let Some(call) = self.timeout_call.borrow_mut().take() {
            let _ = call.cancel();
        }
    }

    /// Attempt `attempt` failed with `reason`: the driver releases it and the factory hears
    /// `client_connection_failed`; unless the factory started a new attempt from there, its
    /// start count drops. A stale attempt is ignored.
    pub fn failed(&self, attempt: u64, reason: Failure) {
        if !self.is_current(attempt) {
            return;
        }
        self.cancel_timeout();
        self.io.release();
        self.state.set(ConnectorState::Disconnected);
        let Some(me) = self.me.upgrade() else { return };
        self.io.attempt_failed(&reason);
        self.factory.client_connection_failed(&me.handle(), reason);
        if self.state.get() == ConnectorState::Disconnected {
            self.io.with_starts(&mut |s| s.do_stop(&self.factory));
        }
    }

    /// The attempt reached its peer at `peer`: builds the client's protocol. `None` when the
    /// attempt is stale (the driver should reset what it opened) or when the factory declined
    /// (the attempt has then failed with `CancelledError`).
    pub fn build_protocol(&self, attempt: u64, peer: &Address) -> Option<Box<dyn Protocol>> {
        if !self.is_current(attempt) {
            return None;
        }
        let protocol = self.factory.build_protocol(peer);
        if protocol.is_none() {
            self.failed(attempt, Failure::new(CancelledError));
        }
        protocol
    }

    /// The attempt's connection is up with `conn` (whose protocol came from
    /// [`ConnectorCore::build_protocol`]): the connector is connected, and the connection's
    /// loss is reported to the factory as `client_connection_lost`. The driver then calls
    /// `conn.make_connection()`. Returns `false` (and does nothing) for a stale attempt.
    pub fn connected(&self, attempt: u64, conn: &Rc<Connection>) -> bool {
        if !self.is_current(attempt) {
            return false;
        }
        self.cancel_timeout();
        self.state.set(ConnectorState::Connected);
        *self.conn.borrow_mut() = Rc::downgrade(conn);
        // A connection we opened is read whatever we have queued (see `Connection`'s read
        // backpressure): a client that pipelines requests must still see the answers.
        conn.set_read_backpressure(false);
        // The connection holds its connector until it is lost (the connector holds only a
        // weak reference back, so there is no cycle).
        let Some(me) = self.me.upgrade() else {
            return true;
        };
        conn.set_on_lost(move |reason| me.lost(reason));
        true
    }

    fn lost(self: Rc<Self>, reason: Failure) {
        *self.conn.borrow_mut() = Weak::new();
        self.state.set(ConnectorState::Disconnected);
        self.factory.client_connection_lost(&self.handle(), reason);
        if self.state.get() == ConnectorState::Disconnected {
            self.io.with_starts(&mut |s| s.do_stop(&self.factory));
        }
    }
}

impl ConnectorDriver for ConnectorCore {
    fn connect(&self) {
        self.start();
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
                let conn = self.conn.borrow().upgrade();
                if let Some(c) = conn {
                    c.transport().lose_connection();
                }
            }
            ConnectorState::Disconnected => {}
        }
    }

    fn get_destination(&self) -> Address {
        self.io.destination()
    }

    fn state(&self) -> ConnectorState {
        self.state.get()
    }
}
