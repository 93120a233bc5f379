//! `StringTransport`: a transport that records what is written (Twisted's
//! `StringTransport` / `StringTransportWithDisconnection`).

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::Duration;

use crate::defer::Failure;
use crate::error::{ConnectionAborted, ConnectionDone};
use crate::protocol::{
    Address, Producer, ProducerError, Protocol, ScopedCall, Transport, TransportDriver,
};
use crate::reactor::{DelayedCall, TimerQueue};

#[derive(Default)]
struct State {
    written: RefCell<Vec<u8>>,
    disconnecting: Cell<bool>,
    aborted: Cell<bool>,
    write_closed: Cell<bool>,
    producer: RefCell<Option<bool>>,
    reading_paused: Cell<bool>,
    nodelay: Cell<bool>,
}

/// Records writes and closes, for unit tests of protocols. It does not own the protocol:
/// deliver data by calling the protocol's methods, and use [`StringTransport::lose`] (or
/// [`connect`](crate::testing::connect) for two live ends with timers) to end it.
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
    host: Address,
    peer: Address,
}

impl Default for StringTransport {
    fn default() -> Self {
        Self::new()
    }
}

impl StringTransport {
    /// Twisted's defaults: host 10.0.0.1:12345, peer 192.168.1.1:54321.
    pub fn new() -> Self {
        StringTransport {
            st: Rc::default(),
            host: Address::tcp(SocketAddr::from(([10, 0, 0, 1], 12345))),
            peer: Address::tcp(SocketAddr::from(([192, 168, 1, 1], 54321))),
        }
    }

    /// A handle to give the protocol.
    pub fn transport(&self) -> Transport {
        Transport::new(Rc::new(self.clone()))
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
        protocol.connection_lost(reason);
    }
}

impl TransportDriver for StringTransport {
    fn write(&self, data: &[u8]) {
        if !self.st.aborted.get() {
            self.st.written.borrow_mut().extend_from_slice(data);
        }
    }
    fn lose_connection(&self) {
        self.st.disconnecting.set(true);
    }
    fn abort_connection(&self) {
        self.st.aborted.set(true);
        self.st.disconnecting.set(true);
    }
    fn lose_write_connection(&self) {
        self.st.write_closed.set(true);
    }
    fn get_peer(&self) -> Address {
        self.peer
    }
    fn get_host(&self) -> Address {
        self.host
    }
    fn register_producer(&self, producer: Producer) -> Result<(), ProducerError> {
        let mut p = self.st.producer.borrow_mut();
        if p.is_some() {
            return Err(ProducerError::AlreadyRegistered);
        }
        *p = Some(producer.streaming());
        Ok(())
    }
    fn unregister_producer(&self) {
        *self.st.producer.borrow_mut() = None;
    }
    fn pause_producing(&self) {
        self.st.reading_paused.set(true);
    }
    fn resume_producing(&self) {
        self.st.reading_paused.set(false);
    }
    fn set_tcp_nodelay(&self, enabled: bool) -> bool {
        self.st.nodelay.set(enabled);
        true
    }
    fn connected(&self) -> bool {
        !self.st.disconnecting.get()
    }
    fn disconnecting(&self) -> bool {
        self.st.disconnecting.get()
    }
    fn buffered(&self) -> usize {
        0
    }
    fn call_later_scoped(&self, delay: Duration, f: ScopedCall) -> DelayedCall {
        // No protocol to hand back: scoped calls need a live connection (`testing::connect`).
        let call = TimerQueue::new().call_later_boxed(delay, Box::new(move || drop(f)));
        let _ = call.cancel();
        call
    }
}
