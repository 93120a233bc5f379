//! Policies (Twisted's `twisted.protocols.policies`): wrappers that add behaviour around any
//! protocol without changing it.
//!
//! - [`WrappingFactory`] wraps another factory: each protocol it builds is put inside a
//!   [`ProtocolWrapper`], which forwards everything and reports reads, writes and the
//!   connection's life to a [`WrapPolicy`]. The wrapped protocol's transport is a wrapping
//!   transport, so the policy also sees its writes and can gate its producer.
//! - [`ThrottlingFactory`]: a connection limit and read / write bandwidth limits.
//! - [`TimeoutFactory`] closes any wrapped connection idle for a period;
//!   [`TimeoutMixin`] is the same policy for a protocol that wants to manage its own
//!   timeout (Twisted's `TimeoutMixin`).
//!
//! Connection-scoped calls addressed to the wrapped protocol's type still reach it: the
//! wrapper answers [`Protocol::wrapped_protocol`].

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::defer::Failure;
use crate::protocol::{
    Address, ClientFactory, Connector, Factory, Producer, ProducerError, Protocol, PullProducer,
    PushProducer, ScopedCall, Transport, TransportDriver,
};
use crate::reactor::{DelayedCall, ReactorTime, ReactorTimeExt};

// ---------------------------------------------------------------------------------------
// Wrapping

/// What a [`WrappingFactory`] does around each connection. Every hook has a default that
/// does nothing, so a policy implements only what it needs.
pub trait WrapPolicy: 'static {
    /// Whether to accept a connection (Twisted's `buildProtocol` returning `None` refuses).
    fn admit(&self, addr: &Address) -> bool {
        let _ = addr;
        true
    }
    /// A wrapped connection is up (before the wrapped protocol's `connection_made`).
    fn connection_made(&self, conn: &Wrapped) {
        let _ = conn;
    }
    /// Bytes arrived (before the wrapped protocol sees them).
    fn data_received(&self, conn: &Wrapped, data: &[u8]) {
        let _ = (conn, data);
    }
    /// The wrapped protocol wrote `n` bytes.
    fn wrote(&self, conn: &Wrapped, n: usize) {
        let _ = (conn, n);
    }
    /// The connection is gone (after the wrapped protocol's `connection_lost`).
    fn connection_lost(&self, conn: &Wrapped, reason: &Failure) {
        let _ = (conn, reason);
    }
}

/// The policy's no-op: a plain forwarding wrapper.
pub struct Forward;
impl WrapPolicy for Forward {}

#[derive(Default)]
struct Gate {
    producer: Option<GatedProducer>,
    /// The consumer (the real transport) asked the producer to pause.
    consumer_paused: bool,
    /// The policy throttles writes.
    throttled: bool,
    /// A pull producer was asked for a chunk while throttled.
    pull_pending: bool,
}

enum GatedProducer {
    Push(Box<dyn PushProducer>),
    Pull(Box<dyn PullProducer>),
    /// The wrapped protocol itself produces.
    Protocol,
}

struct Shared {
    outer: RefCell<Transport>,
    policy: Rc<dyn WrapPolicy>,
    gate: RefCell<Gate>,
    timer: RefCell<Option<DelayedCall>>,
}

/// One wrapped connection, as a policy sees it: cheap to clone, compared by identity.
#[derive(Clone)]
pub struct Wrapped {
    sh: Rc<Shared>,
}

impl Wrapped {
    /// The real transport.
    pub fn transport(&self) -> Transport {
        self.sh.outer.borrow().clone()
    }

    /// Whether two handles are the same connection.
    pub fn ptr_eq(&self, other: &Wrapped) -> bool {
        Rc::ptr_eq(&self.sh, &other.sh)
    }

    /// Stops reading from this connection.
    pub fn throttle_reads(&self) {
        self.transport().pause_producing();
    }

    /// Reads again.
    pub fn unthrottle_reads(&self) {
        self.transport().resume_producing();
    }

    /// Pauses the wrapped protocol's producer, if it registered one.
    pub fn throttle_writes(&self) {
        let was = std::mem::replace(&mut self.sh.gate.borrow_mut().throttled, true);
        if !was {
            self.update_producer(true);
        }
    }

    /// Lets the wrapped protocol's producer go on.
    pub fn unthrottle_writes(&self) {
        let was = std::mem::replace(&mut self.sh.gate.borrow_mut().throttled, false);
        if was {
            self.update_producer(false);
        }
    }

    /// A per-connection timer slot for policies (the idle timeout uses it).
    pub fn timer(&self) -> std::cell::RefMut<'_, Option<DelayedCall>> {
        self.sh.timer.borrow_mut()
    }

    /// Tells the producer the combined state changed (paused = throttled or consumer-paused).
    fn update_producer(&self, throttling: bool) {
        let mut gate = self.sh.gate.borrow_mut();
        if gate.consumer_paused {
            return; // the consumer's own pause already stands
        }
        let pull_pending = std::mem::take(&mut gate.pull_pending);
        match gate.producer.as_mut() {
            Some(GatedProducer::Push(p)) => {
                if throttling {
                    p.pause_producing();
                } else {
                    p.resume_producing();
                }
            }
            Some(GatedProducer::Pull(p)) if !throttling && pull_pending => {
                p.resume_producing();
            }
            Some(GatedProducer::Pull(_)) => {}
            Some(GatedProducer::Protocol) => {
                drop(gate);
                let outer = self.transport();
                outer.call_soon::<ProtocolWrapper>(move |w| {
                    if throttling {
                        w.inner.pause_producing();
                    } else {
                        w.inner.resume_producing();
                    }
                });
            }
            None => {}
        }
    }
}

/// The protocol a [`WrappingFactory`] builds: forwards everything to the protocol inside.
pub struct ProtocolWrapper {
    inner: Box<dyn Protocol>,
    conn: Wrapped,
}

impl ProtocolWrapper {
    /// Wraps `inner` under `policy`.
    pub fn new(inner: Box<dyn Protocol>, policy: Rc<dyn WrapPolicy>) -> Self {
        ProtocolWrapper {
            inner,
            conn: Wrapped {
                sh: Rc::new(Shared {
                    outer: RefCell::new(Transport::default()),
                    policy,
                    gate: RefCell::new(Gate::default()),
                    timer: RefCell::new(None),
                }),
            },
        }
    }

    /// This connection, as the policy sees it.
    pub fn wrapped(&self) -> &Wrapped {
        &self.conn
    }
}

impl Protocol for ProtocolWrapper {
    fn connection_made(&mut self, transport: &Transport) {
        *self.conn.sh.outer.borrow_mut() = transport.clone();
        self.conn.sh.policy.connection_made(&self.conn);
        let inner_transport = Transport::new(Rc::new(WrappingTransport {
            sh: self.conn.sh.clone(),
        }));
        self.inner.connection_made(&inner_transport);
    }
    fn data_received(&mut self, data: &[u8]) {
        self.conn.sh.policy.data_received(&self.conn, data);
        self.inner.data_received(data);
    }
    fn connection_lost(&mut self, reason: Failure) {
        self.inner.connection_lost(reason.clone());
        if let Some(call) = self.conn.timer().take() {
            let _ = call.cancel();
        }
        self.conn.sh.gate.borrow_mut().producer = None;
        self.conn.sh.policy.connection_lost(&self.conn, &reason);
    }
    fn half_close(&self) -> bool {
        self.inner.half_close()
    }
    fn read_connection_lost(&mut self) {
        self.inner.read_connection_lost();
    }
    fn write_connection_lost(&mut self) {
        self.inner.write_connection_lost();
    }
    fn pause_producing(&mut self) {
        let mut gate = self.conn.sh.gate.borrow_mut();
        gate.consumer_paused = true;
        let throttled = gate.throttled;
        drop(gate);
        if !throttled {
            self.inner.pause_producing();
        }
    }
    fn resume_producing(&mut self) {
        let mut gate = self.conn.sh.gate.borrow_mut();
        gate.consumer_paused = false;
        if gate.throttled {
            gate.pull_pending = true;
            return;
        }
        drop(gate);
        self.inner.resume_producing();
    }
    fn stop_producing(&mut self) {
        self.inner.stop_producing();
    }
    fn wrapped_protocol(&mut self) -> Option<&mut dyn Protocol> {
        Some(&mut *self.inner)
    }
}

/// What the wrapped protocol writes to: forwards to the real transport, telling the policy.
struct WrappingTransport {
    sh: Rc<Shared>,
}

impl WrappingTransport {
    fn outer(&self) -> Transport {
        self.sh.outer.borrow().clone()
    }
}

/// A producer registered through the wrapper: the real transport drives this, and it
/// forwards to the wrapped protocol's producer unless the policy throttles writes.
struct GateProducer {
    sh: Rc<Shared>,
}

impl PushProducer for GateProducer {
    fn pause_producing(&mut self) {
        let mut gate = self.sh.gate.borrow_mut();
        gate.consumer_paused = true;
        let throttled = gate.throttled;
        if let (false, Some(GatedProducer::Push(p))) = (throttled, gate.producer.as_mut()) {
            p.pause_producing();
        }
    }
    fn resume_producing(&mut self) {
        let mut gate = self.sh.gate.borrow_mut();
        gate.consumer_paused = false;
        if gate.throttled {
            gate.pull_pending = true;
            return;
        }
        match gate.producer.as_mut() {
            Some(GatedProducer::Push(p)) => p.resume_producing(),
            Some(GatedProducer::Pull(p)) => p.resume_producing(),
            _ => {}
        }
    }
    fn stop_producing(&mut self) {
        let producer = self.sh.gate.borrow_mut().producer.take();
        match producer {
            Some(GatedProducer::Push(mut p)) => p.stop_producing(),
            Some(GatedProducer::Pull(mut p)) => p.stop_producing(),
            _ => {}
        }
    }
}

impl PullProducer for GateProducer {
    fn resume_producing(&mut self) {
        PushProducer::resume_producing(self);
    }
    fn stop_producing(&mut self) {
        PushProducer::stop_producing(self);
    }
}

impl TransportDriver for WrappingTransport {
    fn write(&self, data: &[u8]) {
        let outer = self.outer();
        if outer.disconnecting() {
            return;
        }
        self.sh.policy.wrote(
            &Wrapped {
                sh: self.sh.clone(),
            },
            data.len(),
        );
        outer.write(data);
    }
    fn lose_connection(&self) {
        self.outer().lose_connection();
    }
    fn abort_connection(&self) {
        self.outer().abort_connection();
    }
    fn lose_write_connection(&self) {
        self.outer().lose_write_connection();
    }
    fn get_peer(&self) -> Address {
        self.outer().get_peer()
    }
    fn get_host(&self) -> Address {
        self.outer().get_host()
    }
    fn register_producer(&self, producer: Producer) -> Result<(), ProducerError> {
        if self.sh.gate.borrow().producer.is_some() {
            return Err(ProducerError::AlreadyRegistered);
        }
        let (gated, outer_producer) = match producer {
            Producer::Push(p) => (
                GatedProducer::Push(p),
                Producer::Push(Box::new(GateProducer {
                    sh: self.sh.clone(),
                })),
            ),
            Producer::Pull(p) => (
                GatedProducer::Pull(p),
                Producer::Pull(Box::new(GateProducer {
                    sh: self.sh.clone(),
                })),
            ),
            Producer::Protocol { streaming } => {
                (GatedProducer::Protocol, Producer::Protocol { streaming })
            }
        };
        self.outer().register_producer(outer_producer)?;
        self.sh.gate.borrow_mut().producer = Some(gated);
        Ok(())
    }
    fn unregister_producer(&self) {
        self.sh.gate.borrow_mut().producer = None;
        self.outer().unregister_producer();
    }
    fn pause_producing(&self) {
        self.outer().pause_producing();
    }
    fn resume_producing(&self) {
        self.outer().resume_producing();
    }
    fn set_read_backpressure(&self, enabled: bool) {
        self.outer().set_read_backpressure(enabled);
    }
    fn set_tcp_nodelay(&self, enabled: bool) -> bool {
        self.outer().set_tcp_nodelay(enabled)
    }
    fn connected(&self) -> bool {
        self.outer().connected()
    }
    fn disconnecting(&self) -> bool {
        self.outer().disconnecting()
    }
    fn buffered(&self) -> usize {
        self.outer().buffered()
    }
    fn call_later_scoped(&self, delay: Duration, f: ScopedCall) -> DelayedCall {
        // The real connection hands back the wrapper; pass the wrapped protocol on.
        self.outer().driver().call_later_scoped(
            delay,
            Box::new(
                move |proto: &mut dyn Protocol| match proto.wrapped_protocol() {
                    Some(inner) => f(inner),
                    None => f(proto),
                },
            ),
        )
    }
}

/// Wraps another factory's protocols in [`ProtocolWrapper`]s under a [`WrapPolicy`]
/// (Twisted's `WrappingFactory`). Also a [`ClientFactory`], forwarding the client callbacks.
///
/// ```
/// use std::rc::Rc;
/// use torsion::protocol::ForProtocol;
/// use torsion::protocols::policies::{Forward, WrappingFactory};
/// use torsion::protocols::wire::Echo;
///
/// let factory = WrappingFactory::new(ForProtocol::<Echo>::new(), Rc::new(Forward));
/// assert_eq!(factory.connection_count(), 0);
/// ```
pub struct WrappingFactory {
    inner: Rc<dyn Factory>,
    client: Option<Rc<dyn ClientFactory>>,
    policy: Rc<dyn WrapPolicy>,
    live: Rc<Cell<usize>>,
}

struct Counting {
    policy: Rc<dyn WrapPolicy>,
    live: Rc<Cell<usize>>,
}

impl WrapPolicy for Counting {
    fn admit(&self, addr: &Address) -> bool {
        self.policy.admit(addr)
    }
    fn connection_made(&self, conn: &Wrapped) {
        self.live.set(self.live.get() + 1);
        self.policy.connection_made(conn);
    }
    fn data_received(&self, conn: &Wrapped, data: &[u8]) {
        self.policy.data_received(conn, data);
    }
    fn wrote(&self, conn: &Wrapped, n: usize) {
        self.policy.wrote(conn, n);
    }
    fn connection_lost(&self, conn: &Wrapped, reason: &Failure) {
        self.live.set(self.live.get().saturating_sub(1));
        self.policy.connection_lost(conn, reason);
    }
}

impl WrappingFactory {
    /// Wraps a server factory.
    pub fn new(inner: Rc<dyn Factory>, policy: Rc<dyn WrapPolicy>) -> Rc<Self> {
        let live = Rc::new(Cell::new(0));
        Rc::new(WrappingFactory {
            inner,
            client: None,
            policy: Rc::new(Counting {
                policy,
                live: live.clone(),
            }),
            live,
        })
    }

    /// Wraps a client factory (its client callbacks are forwarded).
    pub fn client(inner: Rc<dyn ClientFactory>, policy: Rc<dyn WrapPolicy>) -> Rc<Self> {
        let live = Rc::new(Cell::new(0));
        Rc::new(WrappingFactory {
            inner: inner.clone(),
            client: Some(inner),
            policy: Rc::new(Counting {
                policy,
                live: live.clone(),
            }),
            live,
        })
    }

    /// Wrapped connections currently up (Twisted's `len(factory.protocols)`).
    pub fn connection_count(&self) -> usize {
        self.live.get()
    }
}

impl Factory for WrappingFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        if !self.policy.admit(addr) {
            return None;
        }
        let inner = self.inner.build_protocol(addr)?;
        Some(Box::new(ProtocolWrapper::new(inner, self.policy.clone())))
    }
    fn start_factory(&self) {
        self.inner.start_factory();
    }
    fn stop_factory(&self) {
        self.inner.stop_factory();
    }
}

impl ClientFactory for WrappingFactory {
    fn started_connecting(&self, connector: &Connector) {
        if let Some(c) = &self.client {
            c.started_connecting(connector);
        }
    }
    fn client_connection_failed(&self, connector: &Connector, reason: Failure) {
        if let Some(c) = &self.client {
            c.client_connection_failed(connector, reason);
        }
    }
    fn client_connection_lost(&self, connector: &Connector, reason: Failure) {
        if let Some(c) = &self.client {
            c.client_connection_lost(connector, reason);
        }
    }
}

// ---------------------------------------------------------------------------------------
// Throttling

/// Limits for a [`ThrottlingFactory`]; `None` is unlimited.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ThrottleLimits {
    /// Connections at once; more are refused.
    pub max_connection_count: Option<usize>,
    /// Bytes read per second, across all connections.
    pub read_limit: Option<u64>,
    /// Bytes written per second, across all connections.
    pub write_limit: Option<u64>,
}

/// The throttling policy (Twisted's `ThrottlingFactory`): once a second it compares the
/// bytes read (written) in the last second with the limit; over it, it pauses reading (the
/// producers writing) on every connection for `bytes / limit - 1` seconds.
pub struct Throttle {
    time: Rc<dyn ReactorTime>,
    limits: ThrottleLimits,
    conns: RefCell<Vec<Wrapped>>,
    read_this_second: Cell<u64>,
    written_this_second: Cell<u64>,
    reads_throttled: Cell<bool>,
    writes_throttled: Cell<bool>,
    calls: RefCell<Vec<DelayedCall>>,
    me: std::rc::Weak<Throttle>,
}

impl Throttle {
    /// The policy alone (for a [`WrappingFactory`] of your own).
    pub fn new(time: Rc<dyn ReactorTime>, limits: ThrottleLimits) -> Rc<Self> {
        Rc::new_cyclic(|me| Throttle {
            time,
            limits,
            conns: RefCell::new(Vec::new()),
            read_this_second: Cell::new(0),
            written_this_second: Cell::new(0),
            reads_throttled: Cell::new(false),
            writes_throttled: Cell::new(false),
            calls: RefCell::new(Vec::new()),
            me: me.clone(),
        })
    }

    /// Whether reading is paused now.
    pub fn reads_throttled(&self) -> bool {
        self.reads_throttled.get()
    }

    /// Whether writing is paused now.
    pub fn writes_throttled(&self) -> bool {
        self.writes_throttled.get()
    }

    fn schedule(&self, delay: Duration, f: impl FnOnce(&Throttle) + 'static) {
        let me = self.me.clone();
        let call = self.time.call_later(delay, move || {
            if let Some(t) = me.upgrade() {
                f(&t);
            }
        });
        let mut calls = self.calls.borrow_mut();
        calls.retain(DelayedCall::active);
        calls.push(call);
    }

    fn check(&self) {
        if let Some(limit) = self.limits.read_limit {
            let n = self.read_this_second.replace(0);
            if n > limit {
                self.set_reads(true);
                let secs = n as f64 / limit as f64 - 1.0;
                self.schedule(Duration::from_secs_f64(secs), |t| t.set_reads(false));
            }
        }
        if let Some(limit) = self.limits.write_limit {
            let n = self.written_this_second.replace(0);
            if n > limit {
                self.set_writes(true);
                let secs = n as f64 / limit as f64 - 1.0;
                self.schedule(Duration::from_secs_f64(secs), |t| t.set_writes(false));
            }
        }
        self.schedule(Duration::from_secs(1), Throttle::check);
    }

    fn set_reads(&self, on: bool) {
        self.reads_throttled.set(on);
        for c in self.conns.borrow().iter() {
            if on {
                c.throttle_reads();
            } else {
                c.unthrottle_reads();
            }
        }
    }

    fn set_writes(&self, on: bool) {
        self.writes_throttled.set(on);
        let conns = self.conns.borrow().clone();
        for c in conns {
            if on {
                c.throttle_writes();
            } else {
                c.unthrottle_writes();
            }
        }
    }
}

impl WrapPolicy for Throttle {
    fn admit(&self, _addr: &Address) -> bool {
        let n = self.conns.borrow().len();
        self.limits.max_connection_count.is_none_or(|max| n < max)
    }
    fn connection_made(&self, conn: &Wrapped) {
        let first = self.conns.borrow().is_empty();
        self.conns.borrow_mut().push(conn.clone());
        if first && (self.limits.read_limit.is_some() || self.limits.write_limit.is_some()) {
            self.schedule(Duration::from_secs(1), Throttle::check);
        }
        if self.reads_throttled.get() {
            conn.throttle_reads();
        }
        if self.writes_throttled.get() {
            conn.throttle_writes();
        }
    }
    fn data_received(&self, _conn: &Wrapped, data: &[u8]) {
        self.read_this_second
            .set(self.read_this_second.get() + data.len() as u64);
    }
    fn wrote(&self, _conn: &Wrapped, n: usize) {
        self.written_this_second
            .set(self.written_this_second.get() + n as u64);
    }
    fn connection_lost(&self, conn: &Wrapped, _reason: &Failure) {
        let mut conns = self.conns.borrow_mut();
        conns.retain(|c| !c.ptr_eq(conn));
        if conns.is_empty() {
            // Nothing to watch: stop checking (leaves the reactor clean).
            for call in self.calls.borrow_mut().drain(..) {
                let _ = call.cancel();
            }
            self.reads_throttled.set(false);
            self.writes_throttled.set(false);
            self.read_this_second.set(0);
            self.written_this_second.set(0);
        }
    }
}

/// Twisted's `ThrottlingFactory`: wraps `inner` under a [`Throttle`].
pub struct ThrottlingFactory;

impl ThrottlingFactory {
    /// Wraps `inner` with `limits`, timed by `time`. Returns the factory and the policy.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(
        time: Rc<dyn ReactorTime>,
        inner: Rc<dyn Factory>,
        limits: ThrottleLimits,
    ) -> (Rc<WrappingFactory>, Rc<Throttle>) {
        let throttle = Throttle::new(time, limits);
        (WrappingFactory::new(inner, throttle.clone()), throttle)
    }
}

// ---------------------------------------------------------------------------------------
// Timeouts

/// The idle-timeout policy (Twisted's `TimeoutFactory` / `TimeoutProtocol`): a wrapped
/// connection with no reads or writes for `period` is closed.
pub struct IdleTimeout {
    period: Duration,
}

impl IdleTimeout {
    /// Closes connections idle for `period`.
    pub fn new(period: Duration) -> Rc<Self> {
        Rc::new(IdleTimeout { period })
    }

    fn arm(&self, conn: &Wrapped) {
        let mut slot = conn.timer();
        if let Some(call) = slot.as_ref().filter(|c| c.active()) {
            let _ = call.reset(self.period);
            return;
        }
        let t = conn.transport();
        *slot = Some(t.call_later::<ProtocolWrapper>(self.period, |w| {
            *w.conn.timer() = None;
            w.conn.transport().lose_connection();
        }));
    }
}

impl WrapPolicy for IdleTimeout {
    fn connection_made(&self, conn: &Wrapped) {
        self.arm(conn);
    }
    fn data_received(&self, conn: &Wrapped, _data: &[u8]) {
        self.arm(conn);
    }
    fn wrote(&self, conn: &Wrapped, _n: usize) {
        self.arm(conn);
    }
}

/// Twisted's `TimeoutFactory`: wraps `inner` so idle connections close after `period`.
pub struct TimeoutFactory;

impl TimeoutFactory {
    /// Wraps `inner`.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(inner: Rc<dyn Factory>, period: Duration) -> Rc<WrappingFactory> {
        WrappingFactory::new(inner, IdleTimeout::new(period))
    }
}

/// The timeout state a [`TimeoutMixin`] protocol embeds.
#[derive(Default)]
pub struct Timeout {
    period: Option<Duration>,
    call: Option<DelayedCall>,
    transport: Transport,
}

impl Timeout {
    /// Keeps the transport (call from `connection_made`, before `set_timeout`).
    pub fn attach(&mut self, transport: &Transport) {
        self.transport = transport.clone();
    }

    /// The transport (a detached placeholder until [`attach`](Self::attach)).
    pub fn transport(&self) -> &Transport {
        &self.transport
    }

    /// The current period.
    pub fn period(&self) -> Option<Duration> {
        self.period
    }

    /// The pending timeout, if armed.
    pub fn pending(&self) -> Option<&DelayedCall> {
        self.call.as_ref().filter(|c| c.active())
    }
}

/// A protocol that times itself out (Twisted's `TimeoutMixin`): call
/// [`set_timeout`](Self::set_timeout) to arm, [`reset_timeout`](Self::reset_timeout) on
/// activity; when the period passes with no reset, [`timeout_connection`](Self::timeout_connection)
/// runs (default: lose the connection). The timer is connection-scoped: it cannot fire after
/// `connection_lost`.
///
/// ```
/// use std::time::Duration;
/// use torsion::protocol::{Protocol, Transport};
/// use torsion::protocols::policies::{Timeout, TimeoutMixin};
///
/// #[derive(Default)]
/// struct Session { timeout: Timeout }
/// impl Protocol for Session {
///     fn connection_made(&mut self, t: &Transport) {
///         self.timeout.attach(t);
///         self.set_timeout(Some(Duration::from_secs(30)));
///     }
///     fn data_received(&mut self, _data: &[u8]) { self.reset_timeout(); }
/// }
/// impl TimeoutMixin for Session {
///     fn timeout_state(&mut self) -> &mut Timeout { &mut self.timeout }
/// }
/// ```
pub trait TimeoutMixin: Protocol + Sized {
    /// Where the protocol keeps its [`Timeout`].
    fn timeout_state(&mut self) -> &mut Timeout;

    /// The period passed with no activity (default: lose the connection).
    fn timeout_connection(&mut self) {
        self.timeout_state().transport.lose_connection();
    }

    /// Sets (or with `None` cancels) the timeout; returns the previous period.
    fn set_timeout(&mut self, period: Option<Duration>) -> Option<Duration> {
        let st = self.timeout_state();
        let previous = std::mem::replace(&mut st.period, period);
        match (st.call.as_ref().filter(|c| c.active()), period) {
            (Some(call), None) => {
                let _ = call.cancel();
                st.call = None;
            }
            (Some(call), Some(p)) => {
                let _ = call.reset(p);
            }
            (None, Some(p)) => {
                st.call = Some(st.transport.call_later::<Self>(p, |me| {
                    me.timeout_state().call = None;
                    me.timeout_connection();
                }));
            }
            (None, None) => {}
        }
        previous
    }

    /// Restarts the period (call on activity).
    fn reset_timeout(&mut self) {
        let st = self.timeout_state();
        if let (Some(call), Some(p)) = (st.call.as_ref().filter(|c| c.active()), st.period) {
            let _ = call.reset(p);
        }
    }
}

#[cfg(test)]
#[path = "policies_tests.rs"]
mod tests;
