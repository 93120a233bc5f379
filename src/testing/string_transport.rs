//! `StringTransport`: a transport that records what is written (Twisted's
//! `StringTransport` / `StringTransportWithDisconnection`).
//!
//! A protocol the transport owns ([`StringTransport::make_connection`]) gets a handle that
//! does not own the transport back ([`Transport::weak`]), as a reactor's protocols do: the
//! transport owns the protocol, so a handle owning the transport would make a cycle and
//! neither would ever be freed.

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::defer::Failure;
use crate::error::{ConnectionAborted, ConnectionDone};
use crate::protocol::{
    find_protocol, Address, Producer, ProducerError, Protocol, ScopedCall, Transport,
    TransportDriver,
};
use crate::reactor::{DelayedCall, ReactorTimeExt, TimerQueue};
use crate::testing::Clock;

struct State {
    me: Weak<State>,
    host: Address,
    peer: Address,
    /// With [`StringTransport::with_clock`]: where scoped calls are scheduled.
    clock: Option<Clock>,
    /// With [`StringTransport::make_connection`]: the protocol it owns.
    protocol: RefCell<Option<Box<dyn Protocol>>>,
    scoped: RefCell<Vec<DelayedCall>>,
    owned: Cell<bool>,
    lost: Cell<bool>,
    written: RefCell<Vec<u8>>,
    disconnecting: Cell<bool>,
    aborted: Cell<bool>,
    write_closed: Cell<bool>,
    producer: RefCell<Option<bool>>,
    reading_paused: Cell<bool>,
    nodelay: Cell<bool>,
}

/// Records writes and closes, for unit tests of protocols.
///
/// Two ways to use it. Hand it to a protocol you keep (`p.connection_made(&tr.transport())`)
/// and call the protocol's methods yourself, ending with [`StringTransport::lose`]; or let it
/// own the protocol ([`with_clock`](Self::with_clock) then
/// [`make_connection`](Self::make_connection)), feed it with
/// [`data_received`](Self::data_received), look inside with
/// [`with_protocol`](Self::with_protocol), and drive the protocol's connection-scoped timers
/// (`transport.call_later::<P>`, a `TimeoutMixin`) by advancing the clock. Scoped calls need
/// the second way: with no protocol to hand back, they are refused (the returned call is
/// already cancelled). For two live ends, use [`connect`](crate::testing::connect).
///
/// ```
/// use torsion::protocol::Protocol;
/// use torsion::protocols::basic::{LineBuffer, LineReceiver};
/// use torsion::testing::StringTransport;
/// # #[derive(Default)] struct Up { lines: LineBuffer }
/// # impl Protocol for Up {
/// #     fn connection_made(&mut self, t: &torsion::protocol::Transport) { self.lines.attach(t); }
/// #     fn data_received(&mut self, d: &[u8]) { self.feed(d) }
/// # }
/// # impl LineReceiver for Up {
/// #     fn line_state(&mut self) -> &mut LineBuffer { &mut self.lines }
/// #     fn line_received(&mut self, l: &[u8]) { self.send_line(&l.to_ascii_uppercase()) }
/// # }
///
/// let tr = StringTransport::new();
/// let mut p = Up::default();
/// p.connection_made(&tr.transport());
/// p.data_received(b"hi\r\n");
/// assert_eq!(tr.value(), b"HI\r\n");
/// ```
#[derive(Clone)]
pub struct StringTransport {
    st: Rc<State>,
}

impl Default for StringTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl StringTransport {
    /// Twisted's defaults: host 10.0.0.1:12345, peer 192.168.1.1:54321.
    pub fn new() -> Self {
        Self::build(None)
    }

    fn build(clock: Option<Clock>) -> Self {
        StringTransport {
            st: Rc::new_cyclic(|me| State {
                me: me.clone(),
                host: Address::tcp(SocketAddr::from(([10, 0, 0, 1], 12345))),
                peer: Address::tcp(SocketAddr::from(([192, 168, 1, 1], 54321))),
                clock,
                protocol: RefCell::new(None),
                scoped: RefCell::new(Vec::new()),
                owned: Cell::new(false),
                lost: Cell::new(false),
                written: RefCell::new(Vec::new()),
                disconnecting: Cell::new(false),
                aborted: Cell::new(false),
                write_closed: Cell::new(false),
                producer: RefCell::new(None),
                reading_paused: Cell::new(false),
                nodelay: Cell::new(false),
            }),
        }
    }

    /// A transport whose connection-scoped calls run on `clock`, once it owns its protocol
    /// ([`make_connection`](Self::make_connection)).
    ///
    /// ```
    /// use std::time::Duration;
    /// use torsion::protocol::{Protocol, Transport};
    /// use torsion::protocols::policies::{Timeout, TimeoutMixin};
    /// use torsion::testing::{Clock, StringTransport};
    ///
    /// #[derive(Default)]
    /// struct Idle { timeout: Timeout }
    /// impl Protocol for Idle {
    ///     fn connection_made(&mut self, t: &Transport) {
    ///         self.timeout.attach(t);
    ///         self.set_timeout(Some(Duration::from_secs(5)));
    ///     }
    ///     fn data_received(&mut self, _d: &[u8]) { self.reset_timeout(); }
    /// }
    /// impl TimeoutMixin for Idle {
    ///     fn timeout_state(&mut self) -> &mut Timeout { &mut self.timeout }
    /// }
    ///
    /// let clock = Clock::new();
    /// let tr = StringTransport::with_clock(&clock);
    /// tr.make_connection(Box::new(Idle::default()));
    /// clock.advance(Duration::from_secs(4));
    /// tr.data_received(b"still here");
    /// clock.advance(Duration::from_secs(4));
    /// assert!(!tr.disconnecting());
    /// clock.advance(Duration::from_secs(1));
    /// assert!(tr.disconnecting(), "five idle seconds");
    /// ```
    pub fn with_clock(clock: &Clock) -> Self {
        Self::build(Some(clock.clone()))
    }

    /// Takes ownership of `protocol` and calls its `connection_made`. The protocol's handle
    /// does not keep this transport alive (see the module docs): once every
    /// `StringTransport` clone is dropped, so is the protocol.
    pub fn make_connection(&self, protocol: Box<dyn Protocol>) {
        *self.st.protocol.borrow_mut() = Some(protocol);
        self.st.owned.set(true);
        let me: Weak<State> = Rc::downgrade(&self.st);
        let t = Transport::weak(me as Weak<dyn TransportDriver>, self.st.host, self.st.peer);
        self.st.dispatch(|p| p.connection_made(&t));
    }

    /// Delivers `data` to the owned protocol (nothing once the connection is lost).
    pub fn data_received(&self, data: &[u8]) {
        if !self.st.lost.get() {
            self.st.dispatch(|p| p.data_received(data));
        }
    }

    /// Runs `f` with the owned protocol as a `P` (or a `P` it wraps).
    pub fn with_protocol<P: Protocol, R>(&self, f: impl FnOnce(&mut P) -> R) -> Option<R> {
        let mut slot = self.st.protocol.borrow_mut();
        let p = slot.as_mut()?;
        find_protocol::<P>(&mut **p).map(f)
    }

    /// Ends the owned protocol's connection as [`lose`](Self::lose) does, and cancels its
    /// scoped calls.
    pub fn connection_lost(&self, reason: Option<Failure>) {
        let taken = self.st.protocol.borrow_mut().take();
        if let Some(mut p) = taken {
            self.lose(&mut *p, reason);
            *self.st.protocol.borrow_mut() = Some(p);
        }
    }

    /// A handle to give the protocol. It keeps this transport alive (for a protocol the
    /// test owns; a protocol the transport owns gets a handle that does not).
    pub fn transport(&self) -> Transport {
        Transport::new(self.st.clone())
    }

    /// Everything written so far.
    pub fn value(&self) -> Vec<u8> {
        self.st.written.borrow().clone()
    }

    /// Takes everything written so far.
    pub fn take(&self) -> Vec<u8> {
        std::mem::take(&mut *self.st.written.borrow_mut())
    }

    /// Forgets what was written.
    pub fn clear(&self) {
        self.st.written.borrow_mut().clear();
    }

    /// Whether `lose_connection` was called.
    pub fn disconnecting(&self) -> bool {
        self.st.disconnecting.get()
    }

    /// Whether `abort_connection` was called.
    pub fn aborted(&self) -> bool {
        self.st.aborted.get()
    }

    /// Whether `lose_write_connection` was called.
    pub fn write_closed(&self) -> bool {
        self.st.write_closed.get()
    }

    /// `Some(streaming)` while a producer is registered.
    pub fn producer(&self) -> Option<bool> {
        *self.st.producer.borrow()
    }

    /// Twisted's `producerState`: `"paused"` if the protocol paused reading, else
    /// `"producing"`.
    pub fn producer_state(&self) -> &'static str {
        if self.st.reading_paused.get() {
            "paused"
        } else {
            "producing"
        }
    }

    /// Ends the connection for `protocol` as a reactor would after a close: `ConnectionDone`
    /// after `lose_connection`, `ConnectionAborted` after `abort_connection`, else `reason`.
    pub fn lose(&self, protocol: &mut dyn Protocol, reason: Option<Failure>) {
        let reason = if self.aborted() {
            Failure::new(ConnectionAborted)
        } else {
            reason.unwrap_or_else(|| Failure::new(ConnectionDone))
        };
        self.st.disconnecting.set(true);
        self.st.lost.set(true);
        for call in self.st.scoped.borrow_mut().drain(..) {
            let _ = call.cancel();
        }
        protocol.connection_lost(reason);
    }
}

impl State {
    fn dispatch(&self, f: impl FnOnce(&mut dyn Protocol)) {
        let taken = self.protocol.borrow_mut().take();
        if let Some(mut p) = taken {
            f(&mut *p);
            *self.protocol.borrow_mut() = Some(p);
        }
    }
}

impl TransportDriver for State {
    fn write(&self, data: &[u8]) {
        if !self.aborted.get() {
            self.written.borrow_mut().extend_from_slice(data);
        }
    }
    fn lose_connection(&self) {
        self.disconnecting.set(true);
    }
    fn abort_connection(&self) {
        self.aborted.set(true);
        self.disconnecting.set(true);
    }
    fn lose_write_connection(&self) {
        self.write_closed.set(true);
    }
    fn get_peer(&self) -> Address {
        self.peer
    }
    fn get_host(&self) -> Address {
        self.host
    }
    fn register_producer(&self, producer: Producer) -> Result<(), ProducerError> {
        let mut p = self.producer.borrow_mut();
        if p.is_some() {
            return Err(ProducerError::AlreadyRegistered);
        }
        *p = Some(producer.streaming());
        Ok(())
    }
    fn unregister_producer(&self) {
        *self.producer.borrow_mut() = None;
    }
    fn pause_producing(&self) {
        self.reading_paused.set(true);
    }
    fn resume_producing(&self) {
        self.reading_paused.set(false);
    }
    fn set_tcp_nodelay(&self, enabled: bool) -> bool {
        self.nodelay.set(enabled);
        true
    }
    fn connected(&self) -> bool {
        !self.disconnecting.get()
    }
    fn disconnecting(&self) -> bool {
        self.disconnecting.get()
    }
    fn buffered(&self) -> usize {
        0
    }
    fn call_later_scoped(&self, delay: Duration, f: ScopedCall) -> DelayedCall {
        match &self.clock {
            Some(clock) if self.owned.get() && !self.lost.get() => {
                let me = self.me.clone();
                let call = clock.call_later(delay, move || {
                    if let Some(me) = me.upgrade() {
                        if !me.lost.get() {
                            me.dispatch(f);
                        }
                    }
                });
                let mut scoped = self.scoped.borrow_mut();
                scoped.retain(DelayedCall::active);
                scoped.push(call.clone());
                call
            }
            _ => {
                // No clock or no protocol to hand back (see the type's docs): refused.
                let call = TimerQueue::new().call_later_boxed(delay, Box::new(move || drop(f)));
                let _ = call.cancel();
                call
            }
        }
    }
}

/// The same as the [`Transport`] [`transport`](StringTransport::transport) returns.
impl TransportDriver for StringTransport {
    fn write(&self, data: &[u8]) {
        self.st.write(data);
    }
    fn lose_connection(&self) {
        self.st.lose_connection();
    }
    fn abort_connection(&self) {
        self.st.abort_connection();
    }
    fn lose_write_connection(&self) {
        self.st.lose_write_connection();
    }
    fn get_peer(&self) -> Address {
        self.st.peer
    }
    fn get_host(&self) -> Address {
        self.st.host
    }
    fn register_producer(&self, producer: Producer) -> Result<(), ProducerError> {
        self.st.register_producer(producer)
    }
    fn unregister_producer(&self) {
        self.st.unregister_producer();
    }
    fn pause_producing(&self) {
        self.st.pause_producing();
    }
    fn resume_producing(&self) {
        self.st.resume_producing();
    }
    fn set_tcp_nodelay(&self, enabled: bool) -> bool {
        self.st.set_tcp_nodelay(enabled)
    }
    fn connected(&self) -> bool {
        self.st.connected()
    }
    fn disconnecting(&self) -> bool {
        self.st.disconnecting()
    }
    fn buffered(&self) -> usize {
        self.st.buffered()
    }
    fn call_later_scoped(&self, delay: Duration, f: ScopedCall) -> DelayedCall {
        self.st.call_later_scoped(delay, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Ticker {
        t: Transport,
        ticks: u32,
    }
    impl Protocol for Ticker {
        fn connection_made(&mut self, t: &Transport) {
            self.t = t.clone();
            t.call_later(Duration::from_secs(1), |me: &mut Ticker| me.ticks += 1);
        }
        fn data_received(&mut self, data: &[u8]) {
            self.t.write(data);
        }
    }

    #[test]
    fn an_owned_protocol_gets_its_scoped_calls() {
        let clock = Clock::new();
        let tr = StringTransport::with_clock(&clock);
        tr.make_connection(Box::new(Ticker::default()));
        tr.data_received(b"echo");
        assert_eq!(tr.value(), b"echo");
        clock.advance(Duration::from_secs(1));
        assert_eq!(tr.with_protocol(|p: &mut Ticker| p.ticks), Some(1));
    }

    #[test]
    fn scoped_calls_are_cancelled_with_the_connection() {
        let clock = Clock::new();
        let tr = StringTransport::with_clock(&clock);
        tr.make_connection(Box::new(Ticker::default()));
        tr.connection_lost(None);
        assert!(clock.get_delayed_calls().is_empty());
        clock.advance(Duration::from_secs(2));
        assert_eq!(tr.with_protocol(|p: &mut Ticker| p.ticks), Some(0));
    }

    #[test]
    fn without_a_clock_scoped_calls_are_refused() {
        let tr = StringTransport::new();
        let mut p = Ticker::default();
        p.connection_made(&tr.transport());
        // The call came back cancelled: nothing would ever run it.
        let call = tr
            .transport()
            .call_later(Duration::from_secs(1), |me: &mut Ticker| me.ticks += 1);
        assert!(call.cancelled());
    }

    #[test]
    fn abort_is_reported_as_connection_aborted() {
        struct Reason(Rc<RefCell<String>>);
        impl Protocol for Reason {
            fn data_received(&mut self, _d: &[u8]) {}
            fn connection_lost(&mut self, reason: Failure) {
                *self.0.borrow_mut() = reason.to_string();
            }
        }
        let got = Rc::new(RefCell::new(String::new()));
        let tr = StringTransport::new();
        let mut p = Reason(got.clone());
        tr.transport().write(b"dropped");
        tr.transport().abort_connection();
        tr.lose(&mut p, None);
        assert_eq!(*got.borrow(), Failure::new(ConnectionAborted).to_string());
        assert!(tr.aborted());
    }

    /// Counts live instances.
    struct Counted {
        live: Rc<Cell<i32>>,
        t: Transport,
    }
    impl Counted {
        fn new(live: &Rc<Cell<i32>>) -> Box<Counted> {
            live.set(live.get() + 1);
            Box::new(Counted {
                live: live.clone(),
                t: Transport::default(),
            })
        }
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.live.set(self.live.get() - 1);
        }
    }
    impl Protocol for Counted {
        fn connection_made(&mut self, t: &Transport) {
            self.t = t.clone();
            t.call_later(Duration::from_secs(5), |me: &mut Counted| {
                me.t.write(b"late");
            });
        }
        fn data_received(&mut self, data: &[u8]) {
            self.t.write(data);
        }
    }

    #[test]
    fn an_owned_protocol_is_freed_with_the_transport() {
        let clock = Clock::new();
        let live = Rc::new(Cell::new(0));
        let tr = StringTransport::with_clock(&clock);
        tr.make_connection(Counted::new(&live));
        tr.data_received(b"echo");
        assert_eq!(tr.value(), b"echo", "the protocol's handle works");
        tr.connection_lost(None);
        assert_eq!(
            live.get(),
            1,
            "kept for inspection while the transport lives"
        );
        drop(tr);
        assert_eq!(live.get(), 0, "the protocol is freed with its transport");

        // Also with a scoped call still pending and no connection_lost.
        let tr = StringTransport::with_clock(&clock);
        tr.make_connection(Counted::new(&live));
        let handle = tr.with_protocol(|p: &mut Counted| p.t.clone()).unwrap();
        drop(tr);
        assert_eq!(live.get(), 0);
        assert!(!handle.connected(), "the protocol's handle is detached");
        handle.write(b"ignored");
        assert_eq!(handle.get_peer().to_string(), "tcp:192.168.1.1:54321");
        clock.advance(Duration::from_secs(10)); // the pending call finds nothing to run
    }
}
