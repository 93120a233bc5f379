//! `MemoryReactor`: a reactor that records what it is asked to do (Twisted's
//! `MemoryReactor` / `MemoryReactorClock`), and completes connections on request.
//!
//! Listening and connecting only record; a test then completes a pending connection (the
//! client factory's protocol is joined to the protocol of a factory listening on that port
//! through an [`IOPump`]) or fails it. Time is a manual [`Clock`]; randomness is a seeded
//! [`SplitMix64`].

use std::cell::{Cell, RefCell};
use std::net::SocketAddr;
use std::rc::{Rc, Weak};
use std::time::Duration;

use crate::defer::{succeed, Deferred, Failure};
use crate::error::ConnectionRefused;
use crate::protocol::{
    Address, ClientFactory, ConnectIo, Connector, ConnectorCore, Factory, FactoryStarts,
};
use crate::reactor::{
    CannotListenError, DatagramProtocol, DatagramTransport, DelayedCall, Instant, Lifecycle,
    ListeningPort, ListeningPortDriver, Phase, ReactorCore, ReactorError, ReactorRandom,
    ReactorTcp, ReactorTime, ReactorUdp, SplitMix64, SystemEvent, Trigger, TriggerId,
};
use crate::testing::{connect, Clock, IOPump};

/// A recorded `listen_tcp`.
#[derive(Clone)]
pub struct ListenRecord {
    /// The port asked for.
    pub port: u16,
    /// The factory.
    pub factory: Rc<dyn Factory>,
    /// The backlog asked for.
    pub backlog: u32,
    /// The interface asked for.
    pub interface: String,
    stopped: Rc<Cell<bool>>,
}

impl ListenRecord {
    /// Whether `stop_listening` was called.
    pub fn stopped(&self) -> bool {
        self.stopped.get()
    }
}

/// A recorded `connect_tcp` (or a `Connector::connect` retry).
#[derive(Clone)]
pub struct ConnectRecord {
    /// The host asked for.
    pub host: String,
    /// The port asked for.
    pub port: u16,
    /// The factory.
    pub factory: Rc<dyn ClientFactory>,
    /// The timeout asked for.
    pub timeout: Duration,
    /// The bind address asked for.
    pub bind_address: Option<SocketAddr>,
    /// The connector handed back.
    pub connector: Connector,
    core: Rc<ConnectorCore>,
    attempt: u64,
}

struct Inner {
    clock: Clock,
    random: SplitMix64,
    life: Lifecycle,
    tcp_servers: RefCell<Vec<ListenRecord>>,
    tcp_clients: RefCell<Vec<ConnectRecord>>,
    starts: RefCell<FactoryStarts>,
}

/// A reactor that records listens and connects (Twisted's `MemoryReactorClock`).
///
/// ```
/// use std::rc::Rc;
/// use torsion::protocol::{ForProtocol, Protocol, Transport};
/// use torsion::reactor::{ReactorTcpExt};
/// use torsion::testing::MemoryReactor;
///
/// #[derive(Default)]
/// struct Echo { t: Transport }
/// impl Protocol for Echo {
///     fn connection_made(&mut self, t: &Transport) { self.t = t.clone(); }
///     fn data_received(&mut self, d: &[u8]) { self.t.write(d); }
/// }
///
/// let reactor = MemoryReactor::new();
/// reactor.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
/// reactor.connect_tcp("10.0.0.1", 7, ForProtocol::<Echo>::new());
/// assert_eq!(reactor.tcp_servers()[0].port, 7);
/// let pump = reactor.complete_connection(0).unwrap();
/// pump.client().transport().write(b"hi");
/// pump.flush();
/// ```
#[derive(Clone)]
pub struct MemoryReactor {
    inner: Rc<Inner>,
}

impl Default for MemoryReactor {
    fn default() -> Self {
        Self::new()
    }
}

impl MemoryReactor {
    /// A reactor at time zero with nothing recorded, its random source seeded with 0.
    pub fn new() -> Self {
        MemoryReactor {
            inner: Rc::new(Inner {
                clock: Clock::new(),
                random: SplitMix64::new(0),
                life: Lifecycle::new(),
                tcp_servers: RefCell::new(Vec::new()),
                tcp_clients: RefCell::new(Vec::new()),
                starts: RefCell::new(FactoryStarts::new()),
            }),
        }
    }

    /// The clock (advance it to run timers).
    pub fn clock(&self) -> &Clock {
        &self.inner.clock
    }

    /// Advances the clock (Twisted's `MemoryReactorClock.advance`).
    pub fn advance(&self, amount: Duration) {
        self.inner.clock.advance(amount);
    }

    /// The recorded `listen_tcp` calls.
    pub fn tcp_servers(&self) -> Vec<ListenRecord> {
        self.inner.tcp_servers.borrow().clone()
    }

    /// The recorded `connect_tcp` calls and connector retries.
    pub fn tcp_clients(&self) -> Vec<ConnectRecord> {
        self.inner.tcp_clients.borrow().clone()
    }

    /// Whether `run` was called and `stop` not yet.
    pub fn has_run(&self) -> bool {
        self.inner.life.has_started()
    }

    /// Whether `stop` was called.
    pub fn has_stopped(&self) -> bool {
        self.inner.life.has_stopped()
    }

    /// Completes the `index`th recorded connect: joins the client factory's protocol to the
    /// protocol of the factory listening on that port, and reports the connection to both.
    /// With no such listener, or a server factory that refuses, the client factory hears
    /// `client_connection_failed(ConnectionRefused)` and `None` is returned. A record whose
    /// attempt was abandoned since (timed out, stopped, retried) completes nothing.
    pub fn complete_connection(&self, index: usize) -> Option<IOPump> {
        let record = self.inner.tcp_clients.borrow().get(index)?.clone();
        let (core, attempt) = (&record.core, record.attempt);
        if !core.is_current(attempt) {
            return None;
        }
        let server_factory = self
            .inner
            .tcp_servers
            .borrow()
            .iter()
            .find(|s| s.port == record.port && !s.stopped())
            .map(|s| s.factory.clone());
        let refused = || {
            let peer = format!("{}:{}", record.host, record.port);
            core.failed(attempt, Failure::new(ConnectionRefused { peer }));
            None
        };
        let Some(server_factory) = server_factory else {
            return refused();
        };
        let server_addr = Address::tcp(parse(crate::testing::SERVER_ADDRESS));
        let client_addr = Address::tcp(parse(crate::testing::CLIENT_ADDRESS));
        let Some(server) = server_factory.build_protocol(&client_addr) else {
            return refused();
        };
        let client = core.build_protocol(attempt, &server_addr)?;
        let pump = connect(&self.inner.clock, server, client);
        core.connected(attempt, pump.client());
        Some(pump)
    }

    /// Fails the `index`th recorded connect with `reason` (nothing happens if that attempt
    /// was abandoned since).
    pub fn fail_connection(&self, index: usize, reason: Failure) {
        let record = self.inner.tcp_clients.borrow().get(index).cloned();
        if let Some(record) = record {
            record.core.failed(record.attempt, reason);
        }
    }
}

fn parse(s: &str) -> SocketAddr {
    // Only called with the module's constant, valid addresses.
    s.parse()
        .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], 0)))
}

/// The I/O half of a connector on the memory reactor: each attempt is recorded for the test
/// to complete or fail; the state machine is the engine's [`ConnectorCore`].
struct MemoryConnectIo {
    reactor: Weak<Inner>,
    host: String,
    port: u16,
    timeout: Duration,
    bind_address: Option<SocketAddr>,
}

impl ConnectIo for MemoryConnectIo {
    fn open(&self, core: &Rc<ConnectorCore>, attempt: u64) {
        if let Some(inner) = self.reactor.upgrade() {
            inner.tcp_clients.borrow_mut().push(ConnectRecord {
                host: self.host.clone(),
                port: self.port,
                factory: core.factory().clone(),
                timeout: self.timeout,
                bind_address: self.bind_address,
                connector: core.handle(),
                core: core.clone(),
                attempt,
            });
        }
    }

    fn release(&self) {}

    fn destination(&self) -> Address {
        let addr = format!("{}:{}", self.host, self.port)
            .parse()
            .unwrap_or_else(|_| SocketAddr::from(([0, 0, 0, 0], self.port)));
        Address::tcp(addr)
    }

    fn call_later(&self, delay: Duration, f: Box<dyn FnOnce()>) -> Option<DelayedCall> {
        let inner = self.reactor.upgrade()?;
        Some(inner.clock.call_later_boxed(delay, f))
    }

    fn with_starts(&self, f: &mut dyn FnMut(&mut FactoryStarts)) {
        if let Some(inner) = self.reactor.upgrade() {
            f(&mut inner.starts.borrow_mut());
        }
    }
}

struct FakePort {
    host: Address,
    stopped: Rc<Cell<bool>>,
    factory: Rc<dyn Factory>,
    reactor: Weak<Inner>,
}

impl ListeningPortDriver for FakePort {
    fn stop_listening(&self) -> Deferred<()> {
        if !self.stopped.replace(true) {
            if let Some(inner) = self.reactor.upgrade() {
                inner.starts.borrow_mut().do_stop(&self.factory);
            }
        }
        succeed(())
    }

    fn get_host(&self) -> Address {
        self.host
    }
}

impl ReactorTime for MemoryReactor {
    fn seconds(&self) -> Instant {
        self.inner.clock.seconds()
    }

    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        self.inner.clock.call_later_boxed(delay, f)
    }
}

impl crate::reactor::ReactorThreads for MemoryReactor {
    fn thread_caller(&self) -> crate::reactor::ThreadCaller {
        self.inner.clock.thread_caller()
    }

    fn defer_to_thread_boxed(
        &self,
        work: crate::reactor::ThreadWork,
    ) -> Deferred<Box<dyn std::any::Any + Send>> {
        self.inner.clock.defer_to_thread_boxed(work)
    }
}

impl ReactorRandom for MemoryReactor {
    fn next_u64(&self) -> u64 {
        self.inner.random.next_u64()
    }
}

impl ReactorCore for MemoryReactor {
    fn run(&self) -> Result<(), ReactorError> {
        self.inner.life.start()?;
        if self.inner.life.take_stop_request() {
            let _ = self.stop(); // `stop` came before `run`
        }
        Ok(())
    }

    fn stop(&self) -> Result<(), ReactorError> {
        self.inner.life.stop()?;
        self.inner.life.finish();
        Ok(())
    }

    fn running(&self) -> bool {
        self.inner.life.running()
    }

    fn call_when_running_boxed(&self, f: Box<dyn FnOnce()>) {
        self.inner.life.call_when_running(f);
    }

    fn add_system_event_trigger_boxed(
        &self,
        phase: Phase,
        event: SystemEvent,
        f: Trigger,
    ) -> TriggerId {
        self.inner.life.triggers().add(phase, event, f)
    }

    fn remove_system_event_trigger(&self, id: TriggerId) -> bool {
        self.inner.life.triggers().remove(id)
    }
}

impl ReactorTcp for MemoryReactor {
    fn listen_tcp_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        backlog: u32,
        interface: &str,
    ) -> Result<ListeningPort, CannotListenError> {
        let taken = self
            .inner
            .tcp_servers
            .borrow()
            .iter()
            .any(|s| s.port == port && port != 0 && !s.stopped());
        if taken {
            return Err(CannotListenError {
                interface: interface.to_string(),
                port,
                reason: "address already in use".into(),
            });
        }
        let stopped = Rc::new(Cell::new(false));
        self.inner.starts.borrow_mut().do_start(&factory);
        let record = ListenRecord {
            port,
            factory: factory.clone(),
            backlog,
            interface: interface.to_string(),
            stopped: stopped.clone(),
        };
        self.inner.tcp_servers.borrow_mut().push(record);
        let host = Address::tcp(SocketAddr::from(([0, 0, 0, 0], port)));
        Ok(ListeningPort::new(Rc::new(FakePort {
            host,
            stopped,
            factory,
            reactor: Rc::downgrade(&self.inner),
        })))
    }

    fn connect_tcp_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        timeout: Duration,
        bind_address: Option<SocketAddr>,
    ) -> Connector {
        let io = MemoryConnectIo {
            reactor: Rc::downgrade(&self.inner),
            host: host.to_string(),
            port,
            timeout,
            bind_address,
        };
        let core = ConnectorCore::new(factory, timeout, Box::new(io));
        let connector = core.handle();
        core.start();
        connector
    }
}

impl ReactorUdp for MemoryReactor {
    fn listen_udp_with(
        &self,
        port: u16,
        protocol: Box<dyn DatagramProtocol>,
        interface: &str,
        max_packet_size: usize,
    ) -> Result<DatagramTransport, CannotListenError> {
        let _ = (port, protocol, interface, max_packet_size);
        Err(CannotListenError {
            interface: interface.to_string(),
            port,
            reason: "MemoryReactor does not simulate UDP; use torsion-sim".into(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{ConnectorState, Protocol};
    use crate::reactor::{ReactorCoreExt, ReactorTcpExt};

    type Log = Rc<RefCell<Vec<String>>>;

    use crate::protocols::wire::Echo;

    struct Client {
        log: Log,
    }
    impl Factory for Client {
        fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
            Some(Box::new(Echo::default()))
        }
        fn start_factory(&self) {
            self.log.borrow_mut().push("start".into());
        }
        fn stop_factory(&self) {
            self.log.borrow_mut().push("stop".into());
        }
    }
    impl ClientFactory for Client {
        fn started_connecting(&self, _c: &Connector) {
            self.log.borrow_mut().push("connecting".into());
        }
        fn client_connection_failed(&self, _c: &Connector, reason: Failure) {
            self.log.borrow_mut().push(format!("failed: {reason}"));
        }
        fn client_connection_lost(&self, _c: &Connector, reason: Failure) {
            self.log.borrow_mut().push(format!("lost: {reason}"));
        }
    }

    fn client(log: &Log) -> Rc<Client> {
        Rc::new(Client { log: log.clone() })
    }

    #[test]
    fn test_listen_and_connect_are_recorded() {
        let r = MemoryReactor::new();
        let log = Log::default();
        let port = r.listen_tcp_with(80, client(&log), 5, "127.0.0.1").unwrap();
        assert_eq!(port.get_host().port(), 80);
        let c = r.connect_tcp("example.invalid", 80, client(&log));
        let servers = r.tcp_servers();
        assert_eq!((servers[0].port, servers[0].backlog), (80, 5));
        assert_eq!(servers[0].interface, "127.0.0.1");
        let clients = r.tcp_clients();
        assert_eq!(
            (clients[0].host.as_str(), clients[0].port),
            ("example.invalid", 80)
        );
        assert_eq!(c.state(), ConnectorState::Connecting);
        assert!(r.listen_tcp(80, client(&log)).is_err(), "port in use");
    }

    #[test]
    fn test_complete_connection_joins_to_listener_and_reports_loss() {
        let r = MemoryReactor::new();
        let log = Log::default();
        r.listen_tcp(7, client(&Log::default())).unwrap();
        let c = r.connect_tcp("10.0.0.1", 7, client(&log));
        let pump = r.complete_connection(0).unwrap();
        assert_eq!(c.state(), ConnectorState::Connected);
        pump.client().transport().write(b"abc");
        pump.flush();
        c.disconnect();
        pump.flush();
        assert_eq!(c.state(), ConnectorState::Disconnected);
        assert_eq!(
            *log.borrow(),
            vec![
                "start",
                "connecting",
                "lost: connection was closed cleanly",
                "stop"
            ]
        );
    }

    /// A protocol that counts live instances and closes on `b"bye"`.
    struct Counted {
        live: Rc<Cell<i32>>,
        t: crate::protocol::Transport,
    }
    impl Drop for Counted {
        fn drop(&mut self) {
            self.live.set(self.live.get() - 1);
        }
    }
    impl Protocol for Counted {
        fn connection_made(&mut self, t: &crate::protocol::Transport) {
            self.t = t.clone();
        }
        fn data_received(&mut self, data: &[u8]) {
            if data == b"bye" {
                self.t.lose_connection();
            }
        }
    }
    fn counted(live: &Rc<Cell<i32>>) -> Rc<dyn ClientFactory> {
        let live = live.clone();
        crate::protocol::factory_fn(move |_| {
            live.set(live.get() + 1);
            Some(Box::new(Counted {
                live: live.clone(),
                t: Default::default(),
            }) as Box<dyn Protocol>)
        })
    }

    #[test]
    fn test_completed_connections_free_their_protocols() {
        let r = MemoryReactor::new();
        let live = Rc::new(Cell::new(0));
        r.listen_tcp(7, counted(&live)).unwrap();
        for (i, how) in ["lose", "abort", "bye"].into_iter().enumerate() {
            r.connect_tcp("10.0.0.1", 7, counted(&live));
            let pump = r.complete_connection(i).unwrap();
            assert_eq!(live.get(), 2);
            let client = pump.client().transport();
            client.write(b"ping");
            pump.flush();
            match how {
                "lose" => client.lose_connection(),
                "abort" => client.abort_connection(),
                _ => pump.server().transport().write(b"bye"), // the client closes
            }
            pump.flush();
            assert!(
                pump.client().is_closed() && pump.server().is_closed(),
                "{how}"
            );
            assert_eq!(live.get(), 2, "{how}: still there for inspection");
            drop(pump);
            assert_eq!(live.get(), 0, "{how}: both protocols freed with the pump");
            assert!(!client.connected(), "{how}: a kept handle is detached");
        }
    }

    #[test]
    fn test_connection_without_listener_is_refused() {
        let r = MemoryReactor::new();
        let log = Log::default();
        r.connect_tcp("10.0.0.9", 9, client(&log));
        assert!(r.complete_connection(0).is_none());
        assert_eq!(
            log.borrow()[2],
            "failed: connection was refused by 10.0.0.9:9"
        );
    }

    #[test]
    fn test_fail_connection_and_retry_through_connector() {
        let r = MemoryReactor::new();
        let log = Log::default();
        let c = r.connect_tcp("10.0.0.9", 9, client(&log));
        r.fail_connection(0, Failure::msg("unreachable"));
        c.connect();
        assert_eq!(r.tcp_clients().len(), 2);
        c.stop_connecting();
        assert_eq!(
            *log.borrow(),
            vec![
                "start",
                "connecting",
                "failed: unreachable",
                "stop",
                "start",
                "connecting",
                "failed: the Deferred was cancelled",
                "stop"
            ]
        );
    }

    /// The memory reactor runs the engine's one connector state machine: attempts are
    /// numbered, so a record of an abandoned attempt completes nothing.
    #[test]
    fn test_a_superseded_attempt_cannot_complete() {
        let r = MemoryReactor::new();
        let log = Log::default();
        r.listen_tcp(9, client(&Log::default())).unwrap();
        let c = r.connect_tcp("10.0.0.9", 9, client(&log));
        c.stop_connecting();
        c.connect();
        assert!(r.complete_connection(0).is_none(), "attempt 1 was stopped");
        assert_eq!(c.state(), ConnectorState::Connecting);
        r.fail_connection(0, Failure::msg("late"));
        assert_eq!(
            c.state(),
            ConnectorState::Connecting,
            "a stale failure is ignored"
        );
        assert!(r.complete_connection(1).is_some());
        assert_eq!(c.state(), ConnectorState::Connected);
        assert!(!log.borrow().iter().any(|l| l.contains("late")));
    }

    /// The connect timeout runs on the reactor's clock, as on every other reactor.
    #[test]
    fn test_connect_times_out_on_the_clock() {
        let r = MemoryReactor::new();
        let log = Log::default();
        let c = r.connect_tcp_with("10.0.0.9", 9, client(&log), Duration::from_secs(5), None);
        r.advance(Duration::from_secs(4));
        assert_eq!(c.state(), ConnectorState::Connecting);
        r.advance(Duration::from_secs(1));
        assert_eq!(c.state(), ConnectorState::Disconnected);
        assert_eq!(
            *log.borrow(),
            vec!["start", "connecting", "failed: timed out after 5s", "stop"]
        );
        assert!(r.complete_connection(0).is_none());
    }

    #[test]
    fn test_factory_start_and_stop_are_counted_across_ports() {
        let r = MemoryReactor::new();
        let log = Log::default();
        let f = client(&log);
        let a = r.listen_tcp(1, f.clone()).unwrap();
        let b = r.listen_tcp(2, f.clone()).unwrap();
        assert_eq!(*log.borrow(), vec!["start"]);
        assert!(a.stop_listening().called());
        assert_eq!(*log.borrow(), vec!["start"]);
        let _ = b.stop_listening();
        let _ = b.stop_listening(); // twice is harmless
        assert_eq!(*log.borrow(), vec!["start", "stop"]);
    }

    #[test]
    fn test_run_stop_and_triggers() {
        let r = MemoryReactor::new();
        let log = Log::default();
        let l = log.clone();
        r.call_when_running(move || l.borrow_mut().push("running".into()));
        let l = log.clone();
        r.add_system_event_trigger(Phase::Before, SystemEvent::Shutdown, move || {
            l.borrow_mut().push("before shutdown".into())
        });
        r.run().unwrap();
        assert_eq!(r.run(), Err(ReactorError::AlreadyRunning));
        let l = log.clone();
        r.call_when_running(move || l.borrow_mut().push("now".into()));
        r.stop().unwrap();
        assert_eq!(r.run(), Err(ReactorError::NotRestartable));
        assert_eq!(*log.borrow(), vec!["running", "now", "before shutdown"]);
        assert!(r.has_run() && r.has_stopped());
    }

    /// `stop` before `run` is refused as not running, and `run` then starts up and stops.
    #[test]
    fn test_stop_before_run_stops_after_startup() {
        let r = MemoryReactor::new();
        let log = Log::default();
        let l = log.clone();
        r.call_when_running(move || l.borrow_mut().push("running".into()));
        let l = log.clone();
        r.add_system_event_trigger(Phase::After, SystemEvent::Shutdown, move || {
            l.borrow_mut().push("after shutdown".into())
        });
        assert_eq!(r.stop(), Err(ReactorError::NotRunning));
        assert!(log.borrow().is_empty());
        r.run().unwrap();
        assert_eq!(*log.borrow(), vec!["running", "after shutdown"]);
        assert!(!r.running() && r.has_stopped());
        assert_eq!(r.stop(), Err(ReactorError::NotRunning));
        assert_eq!(r.run(), Err(ReactorError::NotRestartable));
    }
}
