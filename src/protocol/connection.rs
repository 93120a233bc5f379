//! `Connection`: the sans-IO half of a stream connection, shared by every driver.
//!
//! A reactor (the real one, the simulator, the in-memory pump in [`testing`](crate::testing))
//! moves bytes and closes sockets; everything else about a connection is the same everywhere
//! and lives here, once: the protocol slot and panic isolation, the write buffer, the close
//! state machine (lose after flush, abort, half-close), producer flow control with the
//! high/low-water marks, read pausing, and connection-scoped calls. This is the quinn-proto /
//! smoltcp shape: the driver feeds events in ([`deliver`](Connection::deliver),
//! [`read_eof`](Connection::read_eof), [`connection_lost`](Connection::connection_lost)) and
//! pulls work out ([`peek_output`](Connection::peek_output),
//! [`consume_output`](Connection::consume_output), [`close_action`](Connection::close_action)),
//! and is poked through its `wake` function when there is something new to pull.
//!
//! Rule 3 of the reactor contract holds here: a protocol is never called back while it is
//! running. Notifications that Twisted delivers synchronously (a producer paused from inside
//! `write`) are queued for the next turn with the clock's `call_soon`.
//!
//! The driver owns the `Connection` (and through it the protocol); the [`Transport`] handles
//! it gives out do not own it (see [`Transport::weak`]). So when the driver drops a
//! connection after `connection_lost` — or is itself dropped — the protocol goes with it, and
//! no reference cycle through the protocol's own handle keeps either alive.
//!
//! A panic in any protocol callback is caught at this boundary; the connection is aborted and
//! `connection_lost` receives a [`Panicked`](crate::error::Panicked) failure carrying the
//! message. Other connections are unaffected.
//!
//! **Read backpressure.** A connection whose own output is above the
//! [`HIGH_WATER_MARK`] is not read until that output drains to the [`LOW_WATER_MARK`]:
//! [`reading_paused`](Connection::reading_paused) says so, and every driver already holds
//! input while it does. So a peer that sends and never reads cannot make an echo-like protocol
//! buffer without bound, with no producer registered: the kernel's buffers push back on it
//! instead. Twisted has no such rule (its write buffer grows until a producer steps in); it is
//! on by default here because a server must survive such a peer. It is on for every
//! connection the engine builds; drivers switch it off for the connections a program opens
//! (`connect_tcp`), because two ends that both apply it can stall each other: each waits for
//! the other to read. A protocol switches it for its own connection with
//! [`Transport::set_read_backpressure`].

use std::cell::{Cell, RefCell};
use std::collections::VecDeque;
use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::defer::Failure;
use crate::protocol::transport::ScopedCall;
use crate::protocol::{
    Address, Producer, ProducerError, Protocol, Transport, TransportDriver, HIGH_WATER_MARK,
    LOW_WATER_MARK,
};
use crate::reactor::{DelayedCall, ReactorTime, ReactorTimeExt};

/// What the driver should do about closing, once it has flushed what it can.
#[derive(Clone, Debug)]
pub enum CloseAction {
    /// Nothing: keep the connection open.
    None,
    /// Everything written has been flushed and a clean close was asked for: send FIN, then
    /// report [`ConnectionDone`](crate::error::ConnectionDone).
    Close,
    /// Drop everything and reset; report the failure (usually `ConnectionAborted`, or the
    /// failure a panicking protocol turned into).
    Abort(Failure),
    /// Shut down the write side only (half-close), once; reading continues.
    ShutdownWrite,
}

/// What the driver does after the peer's EOF ([`Connection::read_eof`]) or after shutting
/// down its own write side ([`Connection::write_shutdown_done`]). The rule is the same on
/// every reactor, so it lives here: a protocol that did not opt in to half-close is done at
/// the peer's EOF; one that did is done once both directions are shut.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[must_use]
pub enum EofAction {
    /// The other direction is still open: keep the connection.
    StayOpen,
    /// Both directions are done: close with `ConnectionDone` (sending FIN if not yet sent).
    Close,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    Open,
    /// `lose_connection`: flush, then close.
    Closing,
    /// `abort_connection` or a panic: close now.
    Aborting,
    /// `connection_lost` has been delivered.
    Closed,
}

struct State {
    phase: Phase,
    abort_reason: Option<Failure>,
    /// Bytes of output an abort threw away unsent.
    discarded: usize,
    out: VecDeque<u8>,
    write_shutdown: WriteShutdown,
    reading_paused: bool,
    eof_received: bool,
    producer: Option<ProducerSlot>,
    producer_paused: bool,
    scoped: Vec<DelayedCall>,
    nodelay: bool,
    /// Whether reading stops while the output is above the high-water mark.
    read_backpressure: bool,
    /// The output went above the high-water mark and has not yet drained to the low-water
    /// mark: input is held.
    read_gated: bool,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum WriteShutdown {
    No,
    Requested,
    Done,
}

enum ProducerSlot {
    Push(Option<Box<dyn crate::protocol::PushProducer>>),
    Pull(Option<Box<dyn crate::protocol::PullProducer>>),
    Protocol { streaming: bool },
}

impl ProducerSlot {
    fn streaming(&self) -> bool {
        match self {
            ProducerSlot::Push(_) => true,
            ProducerSlot::Pull(_) => false,
            ProducerSlot::Protocol { streaming } => *streaming,
        }
    }
}

#[derive(Clone, Copy)]
enum ProducerEvent {
    Pause,
    Resume,
}

/// What runs after `connection_lost` (see [`Connection::set_on_lost`]).
type LostHook = Box<dyn FnOnce(Failure)>;

/// One stream connection's state, shared by its driver and its [`Transport`] handles.
pub struct Connection {
    me: Weak<Connection>,
    clock: Rc<dyn ReactorTime>,
    wake: Rc<dyn Fn()>,
    host: Address,
    peer: Address,
    protocol: RefCell<Option<Box<dyn Protocol>>>,
    state: RefCell<State>,
    made: Cell<bool>,
    on_lost: RefCell<Option<LostHook>>,
}

impl Connection {
    /// A connection between `host` (this end) and `peer` for `protocol`. `clock` schedules
    /// scoped calls and next-turn notifications; `wake` tells the driver there is output to
    /// flush or a close to perform. Call [`make_connection`](Self::make_connection) next.
    pub fn new(
        clock: Rc<dyn ReactorTime>,
        wake: Rc<dyn Fn()>,
        host: Address,
        peer: Address,
        protocol: Box<dyn Protocol>,
    ) -> Rc<Connection> {
        Rc::new_cyclic(|me| Connection {
            me: me.clone(),
            clock,
            wake,
            host,
            peer,
            protocol: RefCell::new(Some(protocol)),
            state: RefCell::new(State {
                phase: Phase::Open,
                abort_reason: None,
                discarded: 0,
                out: VecDeque::new(),
                write_shutdown: WriteShutdown::No,
                eof_received: false,
                reading_paused: false,
                producer: None,
                producer_paused: false,
                scoped: Vec::new(),
                nodelay: false,
                read_backpressure: true,
                read_gated: false,
            }),
            made: Cell::new(false),
            on_lost: RefCell::new(None),
        })
    }

    /// A transport handle for this connection. It does not keep the connection alive (see
    /// [`Transport::weak`]): the driver owns the connection, and dropping it after
    /// `connection_lost` frees the protocol, whose handles then answer as detached.
    pub fn transport(&self) -> Transport {
        let me: Weak<dyn TransportDriver> = self.me.clone();
        Transport::weak(me, self.host, self.peer)
    }

    /// Calls the protocol's `connection_made` (once).
    pub fn make_connection(self: &Rc<Self>) {
        if self.made.replace(true) {
            return;
        }
        let transport = self.transport();
        self.dispatch(|p| p.connection_made(&transport));
    }

    /// Runs `f` with the protocol, catching a panic (which aborts the connection). Returns
    /// `false` if the protocol is unavailable (the connection is closed, or `f` would re-enter
    /// a running protocol, which the reactor contract rules out).
    pub fn dispatch(&self, f: impl FnOnce(&mut dyn Protocol)) -> bool {
        let taken = self.protocol.borrow_mut().take();
        let Some(mut proto) = taken else {
            return false;
        };
        let outcome = catch_unwind(AssertUnwindSafe(|| f(&mut *proto)));
        *self.protocol.borrow_mut() = Some(proto);
        if let Err(payload) = outcome {
            self.abort_with(Failure::from_panic(payload));
        }
        true
    }

    /// Hands received bytes to the protocol (the driver checks
    /// [`reading_paused`](Self::reading_paused) first and holds data while paused).
    pub fn deliver(&self, data: &[u8]) {
        if self.state.borrow().phase == Phase::Open {
            self.dispatch(|p| p.data_received(data));
        }
    }

    /// The peer shut down its write side (its FIN arrived, after all its data). A half-close
    /// protocol gets `read_connection_lost` and the connection stays open until its own write
    /// side is shut too; any other protocol is done. Only the first EOF counts.
    pub fn read_eof(&self) -> EofAction {
        let write_shut = {
            let mut st = self.state.borrow_mut();
            if st.eof_received {
                return EofAction::StayOpen;
            }
            st.eof_received = true;
            st.write_shutdown == WriteShutdown::Done
        };
        if !self.with_protocol(|p| p.half_close()).unwrap_or(false) {
            return EofAction::Close;
        }
        self.dispatch(|p| p.read_connection_lost());
        if write_shut {
            EofAction::Close
        } else {
            EofAction::StayOpen
        }
    }

    /// Whether the peer's EOF has been received.
    pub fn eof_received(&self) -> bool {
        self.state.borrow().eof_received
    }

    /// Whether this side's write direction has been shut down (after
    /// [`CloseAction::ShutdownWrite`]).
    pub fn write_shut(&self) -> bool {
        self.state.borrow().write_shutdown == WriteShutdown::Done
    }

    /// Runs `f` with the protocol if it is available (no panic isolation: for queries).
    pub fn with_protocol<R>(&self, f: impl FnOnce(&mut dyn Protocol) -> R) -> Option<R> {
        let mut slot = self.protocol.borrow_mut();
        slot.as_mut().map(|p| f(&mut **p))
    }

    /// The connection is gone: cancels scoped calls, stops the producer and calls the
    /// protocol's `connection_lost(reason)`, once.
    pub fn connection_lost(&self, reason: Failure) {
        let (calls, producer) = {
            let mut st = self.state.borrow_mut();
            if st.phase == Phase::Closed {
                return;
            }
            st.phase = Phase::Closed;
            st.out.clear();
            (std::mem::take(&mut st.scoped), st.producer.take())
        };
        for call in calls {
            let _ = call.cancel();
        }
        match producer {
            Some(ProducerSlot::Push(Some(mut p))) => p.stop_producing(),
            Some(ProducerSlot::Pull(Some(mut p))) => p.stop_producing(),
            Some(ProducerSlot::Protocol { .. }) => {
                self.dispatch(|p| p.stop_producing());
            }
            _ => {}
        }
        self.dispatch(|p| p.connection_lost(reason.clone()));
        let on_lost = self.on_lost.borrow_mut().take();
        if let Some(f) = on_lost {
            f(reason);
        }
    }

    /// Runs `f` with the reason after the protocol's `connection_lost` (drivers use it to
    /// tell a client factory, `client_connection_lost`, and to count factory users).
    pub fn set_on_lost(&self, f: impl FnOnce(Failure) + 'static) {
        *self.on_lost.borrow_mut() = Some(Box::new(f));
    }

    /// Whether `connection_lost` has been delivered.
    pub fn is_closed(&self) -> bool {
        self.state.borrow().phase == Phase::Closed
    }

    /// Whether the driver must hold input for now: the protocol paused reading, or the
    /// connection's own output is above the high-water mark (read backpressure; see the
    /// module docs). When this turns false the connection calls its `wake` function, and the
    /// driver delivers what it held.
    pub fn reading_paused(&self) -> bool {
        let st = self.state.borrow();
        st.reading_paused || st.read_gated
    }

    /// Bytes waiting to be sent.
    pub fn pending_output(&self) -> usize {
        self.state.borrow().out.len()
    }

    /// Bytes of output an abort threw away unsent (0 until an abort).
    pub fn discarded_output(&self) -> usize {
        self.state.borrow().discarded
    }

    /// Whether `TCP_NODELAY` was asked for.
    pub fn nodelay(&self) -> bool {
        self.state.borrow().nodelay
    }

    /// Lets the driver look at the pending output (as the two slices of a ring buffer).
    pub fn peek_output<R>(&self, f: impl FnOnce(&[u8], &[u8]) -> R) -> R {
        let st = self.state.borrow();
        let (a, b) = st.out.as_slices();
        f(a, b)
    }

    /// The driver sent `n` bytes of the pending output. Resumes producers as the buffer
    /// drains (below the low-water mark for streaming ones, when empty for pull ones), and
    /// reading once it is down to the low-water mark (then `wake` is called: held input may
    /// be delivered).
    pub fn consume_output(&self, n: usize) {
        let (event, ungated) = {
            let mut st = self.state.borrow_mut();
            let n = n.min(st.out.len());
            if n == st.out.len() {
                // Empty: `clear` also rewinds the ring, so the next write is one contiguous
                // run (a plain `send`, not a two-piece `writev`).
                st.out.clear();
            } else {
                st.out.drain(..n);
            }
            let len = st.out.len();
            let ungated = st.read_gated && len <= LOW_WATER_MARK;
            if ungated {
                st.read_gated = false;
            }
            let event = match &st.producer {
                Some(slot) if slot.streaming() && st.producer_paused && len <= LOW_WATER_MARK => {
                    st.producer_paused = false;
                    Some(ProducerEvent::Resume)
                }
                Some(slot) if !slot.streaming() && len == 0 && st.phase == Phase::Open => {
                    Some(ProducerEvent::Resume)
                }
                _ => None,
            };
            (event, ungated)
        };
        if let Some(event) = event {
            self.producer_event_soon(event);
        }
        if ungated && !self.reading_paused() {
            (self.wake)();
        }
    }

    /// Turns read backpressure on or off for this connection (see the module docs; on by
    /// default). Drivers switch it off before `connection_made` for connections the program
    /// opened; a protocol may switch it either way through
    /// [`Transport::set_read_backpressure`].
    pub fn set_read_backpressure(&self, enabled: bool) {
        let ungated = {
            let mut st = self.state.borrow_mut();
            st.read_backpressure = enabled;
            let was = st.read_gated;
            st.read_gated = enabled && st.out.len() > HIGH_WATER_MARK;
            was && !st.read_gated && !st.reading_paused
        };
        if ungated {
            (self.wake)(); // held data may be delivered now
        }
    }

    /// What the driver should do about closing now. `Close` only once the output is flushed
    /// and no producer is registered (Twisted waits for the producer to unregister).
    pub fn close_action(&self) -> CloseAction {
        let mut st = self.state.borrow_mut();
        match st.phase {
            Phase::Aborting => CloseAction::Abort(
                st.abort_reason
                    .clone()
                    .unwrap_or_else(|| Failure::new(crate::error::ConnectionAborted)),
            ),
            Phase::Closing if st.out.is_empty() && st.producer.is_none() => CloseAction::Close,
            Phase::Open if st.out.is_empty() && st.write_shutdown == WriteShutdown::Requested => {
                st.write_shutdown = WriteShutdown::Done;
                CloseAction::ShutdownWrite
            }
            _ => CloseAction::None,
        }
    }

    /// After the driver performed [`CloseAction::ShutdownWrite`]: tells a half-close protocol
    /// `write_connection_lost`; the connection is done if the peer's EOF came first.
    pub fn write_shutdown_done(&self) -> EofAction {
        if self.with_protocol(|p| p.half_close()).unwrap_or(false) {
            self.dispatch(|p| p.write_connection_lost());
        }
        if self.eof_received() {
            EofAction::Close
        } else {
            EofAction::StayOpen
        }
    }

    fn abort_with(&self, reason: Failure) {
        {
            let mut st = self.state.borrow_mut();
            if matches!(st.phase, Phase::Closed | Phase::Aborting) {
                return;
            }
            st.phase = Phase::Aborting;
            st.abort_reason = Some(reason);
            st.discarded = st.out.len();
            st.out.clear();
        }
        (self.wake)();
    }

    fn producer_event_soon(&self, event: ProducerEvent) {
        let me = self.me.clone();
        let call = self.clock.call_soon(move || {
            if let Some(conn) = me.upgrade() {
                conn.producer_event(event);
            }
        });
        self.state.borrow_mut().scoped.push(call);
    }

    fn producer_event(&self, event: ProducerEvent) {
        let slot = {
            let mut st = self.state.borrow_mut();
            if st.phase == Phase::Closed {
                return;
            }
            match &mut st.producer {
                Some(ProducerSlot::Push(p)) => p.take().map(|p| (Some(p), None)),
                Some(ProducerSlot::Pull(p)) => p.take().map(|p| (None, Some(p))),
                Some(ProducerSlot::Protocol { .. }) => Some((None, None)),
                None => return,
            }
        };
        let Some((push, pull)) = slot else { return };
        let outcome = catch_unwind(AssertUnwindSafe(|| match (push, pull) {
            (Some(mut p), _) => {
                match event {
                    ProducerEvent::Pause => p.pause_producing(),
                    ProducerEvent::Resume => p.resume_producing(),
                }
                (Some(p), None)
            }
            (None, Some(mut p)) => {
                if let ProducerEvent::Resume = event {
                    p.resume_producing();
                }
                (None, Some(p))
            }
            (None, None) => {
                self.dispatch(|proto| match event {
                    ProducerEvent::Pause => proto.pause_producing(),
                    ProducerEvent::Resume => proto.resume_producing(),
                });
                (None, None)
            }
        }));
        match outcome {
            Ok((push, pull)) => {
                let mut st = self.state.borrow_mut();
                match (&mut st.producer, push, pull) {
                    (Some(ProducerSlot::Push(slot)), Some(p), _) => *slot = Some(p),
                    (Some(ProducerSlot::Pull(slot)), _, Some(p)) => *slot = Some(p),
                    _ => {}
                }
            }
            Err(payload) => self.abort_with(Failure::from_panic(payload)),
        }
    }
}

impl TransportDriver for Connection {
    fn write(&self, data: &[u8]) {
        if data.is_empty() {
            return;
        }
        let pause = {
            let mut st = self.state.borrow_mut();
            if st.phase != Phase::Open || st.write_shutdown != WriteShutdown::No {
                return; // writes after close are dropped
            }
            st.out.extend(data);
            let over = st.out.len() > HIGH_WATER_MARK;
            if over && st.read_backpressure {
                st.read_gated = true;
            }
            match &st.producer {
                Some(slot) if slot.streaming() && over && !st.producer_paused => {
                    st.producer_paused = true;
                    true
                }
                _ => false,
            }
        };
        if pause {
            self.producer_event_soon(ProducerEvent::Pause);
        }
        (self.wake)();
    }

    fn lose_connection(&self) {
        {
            let mut st = self.state.borrow_mut();
            if st.phase != Phase::Open {
                return;
            }
            st.phase = Phase::Closing;
        }
        (self.wake)();
    }

    fn abort_connection(&self) {
        self.abort_with(Failure::new(crate::error::ConnectionAborted));
    }

    fn lose_write_connection(&self) {
        {
            let mut st = self.state.borrow_mut();
            if st.phase != Phase::Open || st.write_shutdown != WriteShutdown::No {
                return;
            }
            st.write_shutdown = WriteShutdown::Requested;
        }
        (self.wake)();
    }

    fn get_peer(&self) -> Address {
        self.peer
    }

    fn get_host(&self) -> Address {
        self.host
    }

    fn register_producer(&self, producer: Producer) -> Result<(), ProducerError> {
        let pull = {
            let mut st = self.state.borrow_mut();
            if st.phase == Phase::Closed {
                return Err(ProducerError::Disconnected);
            }
            if st.producer.is_some() {
                return Err(ProducerError::AlreadyRegistered);
            }
            let streaming = producer.streaming();
            st.producer = Some(match producer {
                Producer::Push(p) => ProducerSlot::Push(Some(p)),
                Producer::Pull(p) => ProducerSlot::Pull(Some(p)),
                Producer::Protocol { streaming } => ProducerSlot::Protocol { streaming },
            });
            st.producer_paused = false;
            !streaming
        };
        if pull {
            // Twisted starts a pull producer at once.
            self.producer_event_soon(ProducerEvent::Resume);
        }
        Ok(())
    }

    fn unregister_producer(&self) {
        let had = self.state.borrow_mut().producer.take();
        if had.is_some() {
            drop(had);
            (self.wake)(); // a pending lose_connection may now complete
        }
    }

    fn pause_producing(&self) {
        self.state.borrow_mut().reading_paused = true;
    }

    fn resume_producing(&self) {
        let was = std::mem::replace(&mut self.state.borrow_mut().reading_paused, false);
        if was {
            (self.wake)(); // held data may be delivered now
        }
    }

    fn set_read_backpressure(&self, enabled: bool) {
        Connection::set_read_backpressure(self, enabled);
    }

    fn set_tcp_nodelay(&self, enabled: bool) -> bool {
        self.state.borrow_mut().nodelay = enabled;
        true
    }

    fn connected(&self) -> bool {
        self.state.borrow().phase == Phase::Open
    }

    fn disconnecting(&self) -> bool {
        matches!(self.state.borrow().phase, Phase::Closing | Phase::Aborting)
    }

    fn buffered(&self) -> usize {
        self.pending_output()
    }

    fn call_later_scoped(&self, delay: Duration, f: ScopedCall) -> DelayedCall {
        let me = self.me.clone();
        let call = self.clock.call_later(delay, move || {
            if let Some(conn) = me.upgrade() {
                if !conn.is_closed() {
                    conn.dispatch(f);
                }
            }
        });
        let mut st = self.state.borrow_mut();
        if st.phase == Phase::Closed {
            let _ = call.cancel();
        } else {
            st.scoped.retain(DelayedCall::active);
            st.scoped.push(call.clone());
        }
        call
    }
}

#[cfg(test)]
#[path = "connection_tests.rs"]
mod tests;
