//! `ReconnectingClientFactory`: a client factory that reconnects with exponential backoff
//! (Twisted's `protocol.ReconnectingClientFactory`).
//!
//! The retry state lives in a [`Backoff`], a cheap-clone handle separate from the factory,
//! so that the protocols the factory builds can hold it (to call
//! [`reset_delay`](Backoff::reset_delay) once connected) without a reference cycle through
//! the factory. The factory wraps any [`ClientFactory`]: protocols come from it, and its
//! `client_connection_failed` / `client_connection_lost` run before the retry is scheduled
//! (so they may call [`stop_trying`](Backoff::stop_trying)).
//!
//! Differences from Twisted, on purpose:
//! - the first retry waits `initial_delay` (Twisted #12478), later ones multiply by `factor`;
//! - jitter perturbs each wait but not the base delay the next one grows from, so jitter
//!   does not compound over many retries; the jittered wait is clamped to
//!   `0..=max_delay`;
//! - jitter comes from the reactor's random source, so under simulation it replays with the
//!   seed.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::defer::Failure;
use crate::protocol::{
    Address, ClientFactory, Connector, ConnectorState, Factory, Protocol, WeakConnector,
};
use crate::reactor::{DelayedCall, ReactorRandom, ReactorRandomExt, ReactorTime, ReactorTimeExt};

/// Backoff parameters, with Twisted's defaults.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct RetryPolicy {
    /// The wait before the first retry: 1 s.
    pub initial_delay: Duration,
    /// The longest wait: 3600 s.
    pub max_delay: Duration,
    /// Each later wait is the previous one times this: e (2.718281828…).
    pub factor: f64,
    /// Standard deviation of each wait, as a fraction of it: 0.119626565582.
    pub jitter: f64,
    /// Give up after this many retries; `None` (the default) never gives up.
    pub max_retries: Option<u32>,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            initial_delay: Duration::from_secs(1),
            max_delay: Duration::from_secs(3600),
            factor: std::f64::consts::E,
            jitter: 0.119_626_565_582,
            max_retries: None,
        }
    }
}

struct State {
    time: Rc<dyn ReactorTime>,
    random: Rc<dyn ReactorRandom>,
    policy: Cell<RetryPolicy>,
    /// The base delay of the last retry, in seconds.
    delay: Cell<f64>,
    retries: Cell<u32>,
    continue_trying: Cell<bool>,
    pending: RefCell<Option<DelayedCall>>,
    connector: RefCell<Option<WeakConnector>>,
}

/// The retry state of a [`ReconnectingClientFactory`]: cheap to clone; give a clone to the
/// protocols so they can call [`reset_delay`](Self::reset_delay) once connected.
///
/// **Call `reset_delay()` when a connection succeeds** (typically in `connection_made`, or
/// after the first good response). A client that never does keeps the backoff of its past
/// failures: after a few flaps it waits minutes, then an hour, to reconnect.
#[derive(Clone)]
pub struct Backoff {
    st: Rc<State>,
}

impl Backoff {
    /// Backoff with Twisted's defaults, timed and jittered by `reactor`.
    pub fn new<R: ReactorTime + ReactorRandom + 'static>(reactor: Rc<R>) -> Self {
        Self::with_policy(reactor, RetryPolicy::default())
    }

    /// Backoff with the given parameters.
    pub fn with_policy<R: ReactorTime + ReactorRandom + 'static>(
        reactor: Rc<R>,
        policy: RetryPolicy,
    ) -> Self {
        Backoff {
            st: Rc::new(State {
                time: reactor.clone(),
                random: reactor,
                policy: Cell::new(policy),
                delay: Cell::new(policy.initial_delay.as_secs_f64()),
                retries: Cell::new(0),
                continue_trying: Cell::new(true),
                pending: RefCell::new(None),
                connector: RefCell::new(None),
            }),
        }
    }

    /// The parameters.
    pub fn policy(&self) -> RetryPolicy {
        self.st.policy.get()
    }

    /// Changes the parameters (from the next retry on).
    pub fn set_policy(&self, policy: RetryPolicy) {
        self.st.policy.set(policy);
    }

    /// Retries since the last success (Twisted's `retries`).
    pub fn retries(&self) -> u32 {
        self.st.retries.get()
    }

    /// The base delay of the last retry (before jitter).
    pub fn delay(&self) -> Duration {
        secs_saturating(self.st.delay.get())
    }

    /// Whether it will retry after the next failure (Twisted's `continueTrying`).
    pub fn continue_trying(&self) -> bool {
        self.st.continue_trying.get()
    }

    /// The scheduled retry, if one is pending.
    pub fn pending_retry(&self) -> Option<DelayedCall> {
        self.st.pending.borrow().clone().filter(DelayedCall::active)
    }

    /// Forgets past failures: the next retry waits `initial_delay` again, and retrying is on.
    pub fn reset_delay(&self) {
        let st = &self.st;
        st.delay.set(st.policy.get().initial_delay.as_secs_f64());
        st.retries.set(0);
        st.continue_trying.set(true);
        *st.pending.borrow_mut() = None;
    }

    /// Stops retrying: cancels a pending retry and abandons an attempt in flight.
    pub fn stop_trying(&self) {
        let st = &self.st;
        st.continue_trying.set(false);
        if let Some(call) = st.pending.borrow_mut().take() {
            let _ = call.cancel();
        }
        let connector = st
            .connector
            .borrow()
            .as_ref()
            .and_then(WeakConnector::upgrade);
        if let Some(connector) = connector {
            if connector.state() == ConnectorState::Connecting {
                connector.stop_connecting();
            }
        }
    }

    /// Schedules `connector.connect()` after the next backoff wait (Twisted's `retry`).
    /// Does nothing once [`stop_trying`](Self::stop_trying) was called or `max_retries` is
    /// used up.
    pub fn retry(&self, connector: &Connector) {
        let st = &self.st;
        if !st.continue_trying.get() {
            return;
        }
        *st.connector.borrow_mut() = Some(connector.downgrade());
        let policy = st.policy.get();
        let retries = st.retries.get() + 1;
        st.retries.set(retries);
        if policy.max_retries.is_some_and(|max| retries > max) {
            tracing::info!(retries = retries - 1, "abandoning reconnection");
            return;
        }
        let max = policy.max_delay.as_secs_f64();
        let base = if retries == 1 {
            policy.initial_delay.as_secs_f64()
        } else {
            st.delay.get() * policy.factor
        }
        .min(max);
        st.delay.set(base);
        let wait = if policy.jitter > 0.0 {
            st.random
                .normal_variate(base, base * policy.jitter)
                .clamp(0.0, max)
        } else {
            base
        };
        // The pending call holds the connector: nothing else may (a reactor need not keep a
        // disconnected connector alive). The cycle through the state's `pending` handle
        // lasts only until the call runs or is cancelled, which drops the closure.
        let target = connector.clone();
        let call = st.time.call_later(secs_saturating(wait), move || {
            target.connect();
        });
        *st.pending.borrow_mut() = Some(call);
    }
}

/// `secs` as a Duration, saturating: a wait past `Duration::MAX` (a huge `max_delay` or
/// `factor`) is `Duration::MAX`, and a negative or NaN one is zero, where
/// `Duration::from_secs_f64` would panic. The timer queue then saturates the deadline at the
/// end of the clock's range.
fn secs_saturating(secs: f64) -> Duration {
    match Duration::try_from_secs_f64(secs) {
        Ok(d) => d,
        Err(_) if secs > 0.0 => Duration::MAX,
        Err(_) => Duration::ZERO,
    }
}

/// A client factory that reconnects after a failed attempt or a lost connection, waiting
/// longer each time (exponential backoff with jitter).
///
/// ```
/// use std::rc::Rc;
/// use torsion::protocol::{
///     factory_fn, Backoff, Protocol, ReconnectingClientFactory, Transport,
/// };
/// use torsion::testing::MemoryReactor;
///
/// struct Client { backoff: Backoff }
/// impl Protocol for Client {
///     fn connection_made(&mut self, _t: &Transport) {
///         self.backoff.reset_delay(); // connected: forget past failures
///     }
///     fn data_received(&mut self, _data: &[u8]) {}
/// }
///
/// let reactor = Rc::new(MemoryReactor::new());
/// let backoff = Backoff::new(reactor.clone());
/// let b = backoff.clone();
/// let inner = factory_fn(move |_| Some(Box::new(Client { backoff: b.clone() }) as Box<dyn Protocol>));
/// let factory = ReconnectingClientFactory::new(backoff, inner);
/// # let _ = factory;
/// ```
pub struct ReconnectingClientFactory {
    backoff: Backoff,
    inner: Rc<dyn ClientFactory>,
}

impl ReconnectingClientFactory {
    /// Wraps `inner` (which builds the protocols and sees every callback first).
    pub fn new(backoff: Backoff, inner: Rc<dyn ClientFactory>) -> Rc<Self> {
        Rc::new(ReconnectingClientFactory { backoff, inner })
    }

    /// The retry state.
    pub fn backoff(&self) -> &Backoff {
        &self.backoff
    }
}

impl Factory for ReconnectingClientFactory {
    fn build_protocol(&self, addr: &Address) -> Option<Box<dyn Protocol>> {
        self.inner.build_protocol(addr)
    }
    fn start_factory(&self) {
        self.inner.start_factory();
    }
    fn stop_factory(&self) {
        self.inner.stop_factory();
    }
}

impl ClientFactory for ReconnectingClientFactory {
    fn started_connecting(&self, connector: &Connector) {
        self.inner.started_connecting(connector);
    }
    fn client_connection_failed(&self, connector: &Connector, reason: Failure) {
        self.inner.client_connection_failed(connector, reason);
        self.backoff.retry(connector);
    }
    fn client_connection_lost(&self, connector: &Connector, reason: Failure) {
        self.inner.client_connection_lost(connector, reason);
        self.backoff.retry(connector);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::error::ConnectionRefused;
    use crate::protocol::factory_fn;
    use crate::reactor::ReactorTcpExt;
    use crate::reactor::{Instant, ReactorTime};
    use crate::testing::{Clock, MemoryReactor};

    struct Quiet;
    impl Protocol for Quiet {
        fn data_received(&mut self, _data: &[u8]) {}
    }

    fn quiet() -> Rc<dyn ClientFactory> {
        factory_fn(|_| Some(Box::new(Quiet) as Box<dyn Protocol>))
    }

    fn setup(policy: RetryPolicy) -> (Rc<MemoryReactor>, Rc<ReconnectingClientFactory>, Connector) {
        let reactor = Rc::new(MemoryReactor::new());
        let backoff = Backoff::with_policy(reactor.clone(), policy);
        let factory = ReconnectingClientFactory::new(backoff, quiet());
        let connector = reactor.connect_tcp("server", 1234, factory.clone());
        (reactor, factory, connector)
    }

    fn refused() -> ConnectionRefused {
        ConnectionRefused {
            peer: "server:1234".into(),
        }
    }

    #[derive(Default)]
    struct Sink;
    impl Protocol for Sink {
        fn data_received(&mut self, _data: &[u8]) {}
    }

    struct NullConnector;
    impl crate::protocol::ConnectorDriver for NullConnector {
        fn connect(&self) {}
        fn stop_connecting(&self) {}
        fn disconnect(&self) {}
        fn get_destination(&self) -> Address {
            Address::tcp("10.0.0.1:1".parse().unwrap())
        }
        fn state(&self) -> ConnectorState {
            ConnectorState::Disconnected
        }
    }

    fn no_jitter() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    /// Fails the newest attempt and returns the time until the retry was made.
    fn fail_and_measure(reactor: &MemoryReactor) -> Option<f64> {
        let attempts = reactor.tcp_clients().len();
        reactor.fail_connection(attempts - 1, Failure::new(refused()));
        let start = reactor.clock().seconds();
        let call = reactor.clock().get_delayed_calls().into_iter().next()?;
        let wait = call.get_time() - start;
        reactor.advance(wait);
        assert_eq!(
            reactor.tcp_clients().len(),
            attempts + 1,
            "retry connects again"
        );
        Some(wait.as_secs_f64())
    }

    #[test]
    fn test_defaults() {
        let p = RetryPolicy::default();
        assert_eq!(p.max_delay, Duration::from_secs(3600));
        assert_eq!(p.initial_delay, Duration::from_secs(1));
        assert_eq!(p.factor.to_bits(), std::f64::consts::E.to_bits());
        assert!((p.jitter - 0.119_626_565_582).abs() < 1e-15);
        assert_eq!(p.max_retries, None);
        let (_r, f, _c) = setup(p);
        assert_eq!(f.backoff().retries(), 0);
        assert!(f.backoff().continue_trying());
    }

    #[test]
    fn test_first_retry_waits_initial_delay_then_grows_by_factor() {
        let (reactor, _f, _c) = setup(no_jitter());
        let waits: Vec<f64> = (0..5)
            .map(|_| fail_and_measure(&reactor).unwrap())
            .collect();
        let e = std::f64::consts::E;
        for (i, w) in waits.iter().enumerate() {
            let want = e.powi(i as i32);
            assert!(
                (w - want).abs() < 1e-6,
                "retry {i}: waited {w}, want {want}"
            );
        }
    }

    #[test]
    fn test_delay_is_capped_at_max_delay() {
        let (reactor, f, _c) = setup(no_jitter());
        let mut last = 0.0;
        for _ in 0..20 {
            last = fail_and_measure(&reactor).unwrap();
        }
        assert!((last - 3600.0).abs() < 1e-6);
        assert_eq!(f.backoff().delay(), Duration::from_secs(3600));
    }

    #[test]
    fn test_a_delay_past_the_clock_range_saturates() {
        let (reactor, f, _c) = setup(RetryPolicy {
            initial_delay: Duration::MAX,
            max_delay: Duration::MAX,
            ..no_jitter()
        });
        reactor.fail_connection(0, Failure::new(refused()));
        let call = f.backoff().pending_retry().expect("a retry is scheduled");
        assert_eq!(call.get_time(), Instant::from_nanos(u64::MAX));
        assert_eq!(f.backoff().delay(), Duration::MAX);
        reactor.advance(Duration::from_secs(3600));
        assert_eq!(reactor.tcp_clients().len(), 1, "no retry within the hour");
        assert_eq!(secs_saturating(f64::NAN), Duration::ZERO);
        assert_eq!(secs_saturating(-1.0), Duration::ZERO);
        assert_eq!(secs_saturating(f64::INFINITY), Duration::MAX);
    }

    #[test]
    fn test_max_retries_abandons() {
        let (reactor, f, _c) = setup(RetryPolicy {
            max_retries: Some(2),
            ..no_jitter()
        });
        assert!(fail_and_measure(&reactor).is_some());
        assert!(fail_and_measure(&reactor).is_some());
        let n = reactor.tcp_clients().len();
        reactor.fail_connection(n - 1, Failure::new(refused()));
        assert!(reactor.clock().get_delayed_calls().is_empty());
        assert!(f.backoff().pending_retry().is_none());
    }

    #[test]
    fn test_stop_trying_cancels_pending_retry() {
        let (reactor, f, _c) = setup(no_jitter());
        reactor.fail_connection(0, Failure::new(refused()));
        let call = f.backoff().pending_retry().expect("a retry is scheduled");
        f.backoff().stop_trying();
        assert!(!call.active());
        assert!(reactor.clock().get_delayed_calls().is_empty());
        assert!(!f.backoff().continue_trying());
        reactor.advance(Duration::from_secs(10_000));
        assert_eq!(reactor.tcp_clients().len(), 1);
    }

    #[test]
    fn test_stop_trying_before_failure_means_no_retry() {
        let (reactor, f, _c) = setup(no_jitter());
        f.backoff().stop_trying();
        reactor.fail_connection(0, Failure::new(refused()));
        assert!(reactor.clock().get_delayed_calls().is_empty());
    }

    #[test]
    fn test_reset_delay_restarts_at_initial_delay() {
        let (reactor, f, _c) = setup(no_jitter());
        for _ in 0..4 {
            fail_and_measure(&reactor);
        }
        assert_eq!(f.backoff().retries(), 4);
        f.backoff().reset_delay();
        assert_eq!(f.backoff().retries(), 0);
        assert_eq!(f.backoff().delay(), Duration::from_secs(1));
        let w = fail_and_measure(&reactor).unwrap();
        assert!((w - 1.0).abs() < 1e-9);
    }

    #[test]
    fn test_reconnects_after_connection_lost() {
        let reactor = Rc::new(MemoryReactor::new());
        let listen = crate::protocol::ForProtocol::<Sink>::new();
        let _ = reactor.listen_tcp(1234, listen);
        let backoff = Backoff::with_policy(reactor.clone(), no_jitter());
        let factory = ReconnectingClientFactory::new(backoff, quiet());
        let connector = reactor.connect_tcp("server", 1234, factory.clone());
        let pump = reactor.complete_connection(0).expect("connected");
        assert_eq!(connector.state(), ConnectorState::Connected);
        pump.client().transport().abort_connection();
        pump.flush();
        assert_eq!(connector.state(), ConnectorState::Disconnected);
        let call = factory
            .backoff()
            .pending_retry()
            .expect("retry after a lost connection");
        assert_eq!(call.get_time() - reactor.seconds(), Duration::from_secs(1));
    }

    #[test]
    fn test_jitter_comes_from_the_reactor_random_source() {
        let waits = |seed: u64| -> Vec<f64> {
            let clock = Rc::new(Clock::with_seed(seed));
            let backoff = Backoff::new(clock.clone());
            let connector = Connector::new(Rc::new(NullConnector));
            (0..6)
                .map(|_| {
                    backoff.retry(&connector);
                    let call = backoff.pending_retry().unwrap();
                    let w = (call.get_time() - clock.seconds()).as_secs_f64();
                    let _ = call.cancel();
                    w
                })
                .collect()
        };
        let a = waits(7);
        assert_eq!(a, waits(7), "same seed, same waits");
        assert_ne!(a, waits(8), "another seed, other waits");
        let e = std::f64::consts::E;
        for (i, w) in a.iter().enumerate() {
            let base = e.powi(i as i32);
            assert!(
                *w >= 0.0 && (w - base).abs() < base * 0.119_626_565_582 * 6.0,
                "wait {w} vs {base}"
            );
        }
    }
}
