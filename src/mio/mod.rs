//! `MioReactor`: the real reactor, on `mio` (epoll / kqueue), behind the same traits as the
//! simulator's hosts.
//!
//! One thread runs the loop: `mio::Poll` for readiness, a [`Slab`] of sources (listeners,
//! connections, connectors in flight, UDP ports) addressed by their token, the shared
//! [`TimerQueue`] ordered by (deadline, sequence), and a [`mio::Waker`] through which other
//! threads hand work in (`call_from_thread`, finished `defer_to_thread` jobs). SIGINT and
//! SIGTERM become a graceful [`stop`](ReactorCore::stop) through the shutdown triggers
//! (`signal-hook-mio`).
//!
//! Each connection is a [`Connection`](crate::protocol::Connection) (the sans-IO state every driver shares) plus a
//! socket. The hot path: a readable socket is read into one reused 64 KiB buffer and handed
//! to the protocol without another copy; what the protocol writes is flushed on the same
//! loop turn with one vectored `write`, and `WRITABLE` interest is asked for only while
//! output is left over.
//!
//! A fast peer cannot take the loop over: each connection gets one read per turn, as in
//! Twisted (the budget, `READS_PER_TURN`, was chosen by measurement; see there). A socket left
//! with data after its budget raises no new event (readiness is edge-triggered), so it goes
//! on a list of connections read again next turn, and while that list is not empty the loop
//! polls without waiting. Between two budgets every other ready connection is read, output
//! is flushed, timers run and signals are seen.
//!
//! Reading stops while the protocol pauses it, and while the connection's own output is
//! above the high-water mark (read backpressure, kept by the shared `Connection`): the
//! kernel's buffers then push back on the peer. So a peer that never reads cannot make a
//! server buffer without bound, with or without a producer.
//!
//! Accept keeps going when the process runs out of file descriptors: on `EMFILE` / `ENFILE`
//! the listener backs off for 100 ms (existing connections are served meanwhile) and tries
//! again. A panicking protocol loses only its own connection (the panic is caught at the
//! `Connection` boundary). An idle reactor blocks in `poll` with no timeout, or until the
//! next timer: no busy loop.
//!
//! This is the one place in the engine that reads the wall clock, spawns threads and uses
//! operating-system randomness; the rest of the engine is deterministic.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

mod pool;
mod tcp;
mod udp;

use std::any::Any;
use std::cell::{Cell, RefCell};
use std::io;
use std::rc::{Rc, Weak};
use std::sync::Arc;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::defer::{Deferred, Failure};
use crate::protocol::{Address, ClientFactory, Connector, Factory, FactoryStarts};
use crate::reactor::{
    CannotListenError, DatagramProtocol, DatagramTransport, DelayedCall, Instant, Lifecycle,
    ListeningPort, Phase, ReactorCore, ReactorError, ReactorRandom, ReactorTcp, ReactorThreads,
    ReactorTime, ReactorUdp, SplitMix64, SystemEvent, ThreadCallQueue, ThreadCaller, ThreadWork,
    TimerQueue, Trigger, TriggerId,
};

use pool::Pool;
use tcp::{Listener, MioConnector, TcpConn};
use udp::UdpPort;

const WAKER: Token = Token(usize::MAX);
const SIGNALS: Token = Token(usize::MAX - 1);

/// The read buffer's size: one read takes at most this much.
const READ_BUFFER: usize = 64 * 1024;

/// How many reads one connection gets per loop turn (so at most this many times
/// [`READ_BUFFER`] bytes) before the others, the timers and the signals get theirs.
/// Twisted reads once per turn, and so does this loop, by measurement (`cargo bench --bench
/// echo`, 2 cores): with one read, pings beside a flooding client came back in 5–31 ms at
/// the 99th percentile; with 4 reads in 98–242 ms, with 16 or 64 in 80–485 ms, and the
/// flood's own throughput (`flood_echo_mib_per_s`, 300–900 MiB/s) did not rise with the
/// budget beyond the noise. The extra `poll` per 64 KiB costs less than copying them.
const READS_PER_TURN: usize = 1;

/// What a token stands for.
#[derive(Clone)]
enum Source {
    Listener(Rc<Listener>),
    Conn(Rc<TcpConn>),
    Connecting(Rc<MioConnector>),
    Udp(Rc<UdpPort>),
}

pub(crate) struct Inner {
    me: Weak<Inner>,
    poll: RefCell<Poll>,
    events: RefCell<Option<Events>>,
    registry: mio::Registry,
    waker: Arc<Waker>,
    epoch: std::time::Instant,
    unix_at_epoch: u64,
    timers: TimerQueue,
    threads: ThreadCallQueue,
    pool: Pool,
    sources: RefCell<Slab<Source>>,
    dirty: RefCell<Vec<Rc<TcpConn>>>,
    spare: RefCell<Vec<Rc<TcpConn>>>,
    /// Connections whose read budget ran out: read again next turn, without waiting for an
    /// event (there will be none: readiness is edge-triggered).
    readable: RefCell<Vec<Rc<TcpConn>>>,
    readable_spare: RefCell<Vec<Rc<TcpConn>>>,
    read_buf: RefCell<Vec<u8>>,
    life: Lifecycle,
    starts: RefCell<FactoryStarts>,
    random: SplitMix64,
    shutdown_done: Rc<Cell<bool>>,
}

/// The real reactor (Twisted's default reactor): cheap to clone; every clone is the same
/// loop. Not `Send`: it lives on the thread that runs it.
///
/// ```no_run
/// use torsion::mio::MioReactor;
/// use torsion::prelude::*;
/// use torsion::protocol::ForProtocol;
/// use torsion::protocols::wire::Echo;
///
/// let reactor = MioReactor::new().expect("a poller");
/// reactor.listen_tcp(8000, ForProtocol::<Echo>::new()).expect("listen");
/// reactor.run().expect("runs until SIGINT or stop()");
/// ```
#[derive(Clone)]
pub struct MioReactor {
    inner: Rc<Inner>,
}

impl MioReactor {
    /// A reactor with its own poller.
    pub fn new() -> io::Result<MioReactor> {
        let poll = Poll::new()?;
        let registry = poll.registry().try_clone()?;
        let waker = Arc::new(Waker::new(poll.registry(), WAKER)?);
        let w = waker.clone();
        let threads = ThreadCallQueue::new(Some(Arc::new(move || {
            let _ = w.wake();
        })));
        let epoch = std::time::Instant::now();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id()).rotate_left(32);
        let unix_at_epoch = unix_nanos();
        let timers = TimerQueue::new();
        timers.set_now(Instant::from_nanos(unix_at_epoch));
        let inner = Rc::new_cyclic(|me| Inner {
            me: me.clone(),
            poll: RefCell::new(poll),
            events: RefCell::new(Some(Events::with_capacity(1024))),
            registry,
            pool: Pool::new(waker.clone()),
            waker,
            epoch,
            unix_at_epoch,
            timers,
            threads,
            sources: RefCell::new(Slab::new()),
            dirty: RefCell::new(Vec::new()),
            spare: RefCell::new(Vec::new()),
            readable: RefCell::new(Vec::new()),
            readable_spare: RefCell::new(Vec::new()),
            read_buf: RefCell::new(vec![0; READ_BUFFER]),
            life: Lifecycle::new(),
            starts: RefCell::new(FactoryStarts::new()),
            random: SplitMix64::new(seed),
            shutdown_done: Rc::new(Cell::new(false)),
        });
        Ok(MioReactor { inner })
    }

    /// Marks the reactor running and fires the startup triggers, without looping (Twisted's
    /// `startRunning`); drive it with [`iterate`](Self::iterate). [`run`](ReactorCore::run)
    /// does this itself. If [`stop`](ReactorCore::stop) was called before, it begins
    /// stopping as soon as startup is done.
    pub fn start_running(&self) -> Result<(), ReactorError> {
        self.inner.life.start()?;
        self.inner.flush_dirty();
        if self.inner.life.take_stop_request() {
            let _ = self.stop(); // `stop` came before `run`: stop now that startup is done
        }
        Ok(())
    }

    /// One turn of the loop (Twisted's `iterate`): waits for readiness, at most `timeout`
    /// (`None`: until something happens or the next timer is due), then runs what is ready,
    /// due timers, and calls from other threads.
    pub fn iterate(&self, timeout: Option<Duration>) -> io::Result<()> {
        self.inner.turn(timeout, None)
    }

    /// Open connections (for tests and monitoring).
    pub fn connection_count(&self) -> usize {
        self.inner
            .sources
            .borrow()
            .iter()
            .filter(|(_, s)| matches!(s, Source::Conn(_)))
            .count()
    }

    /// Bytes buffered for sending, over all connections (for tests and monitoring).
    pub fn buffered_bytes(&self) -> usize {
        self.inner
            .sources
            .borrow()
            .iter()
            .map(|(_, s)| match s {
                Source::Conn(c) => c.conn.pending_output(),
                _ => 0,
            })
            .sum()
    }
}

fn unix_nanos() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

impl Inner {
    fn handle(&self) -> Option<MioReactor> {
        self.me.upgrade().map(|inner| MioReactor { inner })
    }

    /// The reactor's clock: Unix time at creation, advanced by the monotonic clock (so it
    /// never goes backwards).
    fn now(&self) -> Instant {
        let elapsed = self.epoch.elapsed().as_nanos() as u64;
        Instant::from_nanos(self.unix_at_epoch.saturating_add(elapsed))
    }

    fn insert(&self, f: impl FnOnce(Token) -> Source) -> Token {
        let mut sources = self.sources.borrow_mut();
        let entry = sources.vacant_entry();
        let token = Token(entry.key());
        entry.insert(f(token));
        token
    }

    fn remove(&self, token: Token) {
        let mut sources = self.sources.borrow_mut();
        if sources.contains(token.0) {
            sources.remove(token.0);
        }
    }

    fn mark_dirty(&self, c: &Rc<TcpConn>) {
        if !c.queued.replace(true) {
            self.dirty.borrow_mut().push(c.clone());
        }
    }

    /// `c` still has data to read after its budget: read it again next turn.
    fn read_later(&self, c: &Rc<TcpConn>) {
        if !c.read_later.replace(true) {
            self.readable.borrow_mut().push(c.clone());
        }
    }

    fn flush_dirty(&self) {
        // Two vectors swap roles, so a busy loop allocates nothing here.
        loop {
            let mut batch = std::mem::take(&mut *self.spare.borrow_mut());
            std::mem::swap(&mut batch, &mut *self.dirty.borrow_mut());
            if batch.is_empty() {
                *self.spare.borrow_mut() = batch;
                return;
            }
            for c in batch.drain(..) {
                c.queued.set(false);
                tcp::flush(self, &c);
            }
            *self.spare.borrow_mut() = batch;
        }
    }

    fn run_timers(&self) {
        let now = self.now();
        while let Some((_, call)) = self.timers.pop_due(now) {
            self.timers.set_now(now);
            call();
            self.flush_dirty();
        }
        self.timers.set_now(now);
    }

    fn poll_timeout(&self, cap: Option<Duration>) -> Option<Duration> {
        if self.threads.has_pending()
            || !self.dirty.borrow().is_empty()
            || !self.readable.borrow().is_empty()
        {
            return Some(Duration::ZERO);
        }
        let timer = self
            .timers
            .next_deadline()
            .map(|t| t.saturating_duration_since(self.now()));
        match (timer, cap) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn turn(
        &self,
        cap: Option<Duration>,
        signals: Option<&mut signal_hook_mio::v1_0::Signals>,
    ) -> io::Result<()> {
        let timeout = self.poll_timeout(cap);
        // The connections left readable by the last turn (two vectors swap roles, as for the
        // dirty list). Each is read again below unless an event of this turn already spent
        // its budget again.
        let mut carried = std::mem::take(&mut *self.readable_spare.borrow_mut());
        std::mem::swap(&mut carried, &mut *self.readable.borrow_mut());
        for c in &carried {
            c.read_later.set(false);
        }
        // The events buffer is reused turn after turn (taken out while dispatching: a nested
        // `iterate` from inside a callback gets a fresh one rather than a borrow panic).
        let mut events = self
            .events
            .borrow_mut()
            .take()
            .unwrap_or_else(|| Events::with_capacity(1024));
        match self.poll.borrow_mut().poll(&mut events, timeout) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                *self.events.borrow_mut() = Some(events);
                for c in &carried {
                    self.read_later(c);
                }
                return Err(e);
            }
        }
        self.timers.set_now(self.now());
        for event in events.iter() {
            match event.token() {
                WAKER => {}
                SIGNALS => {} // read below
                token => self.dispatch(token, event),
            }
            self.flush_dirty();
        }
        *self.events.borrow_mut() = Some(events);
        for c in carried.drain(..) {
            if !c.read_later.get() {
                tcp::read(self, &c, true);
                self.flush_dirty();
            }
        }
        *self.readable_spare.borrow_mut() = carried;
        if let Some(s) = signals {
            let got = s.pending().count();
            if got > 0 {
                self.on_signal();
            }
        }
        self.threads.drain();
        self.flush_dirty();
        for done in self.pool.completions() {
            done();
            self.flush_dirty();
        }
        self.run_timers();
        self.threads.drain();
        self.flush_dirty();
        Ok(())
    }

    fn on_signal(&self) {
        if self.life.running() {
            tracing::info!("signal received: stopping the reactor");
            if let Some(r) = self.handle() {
                let _ = r.stop();
            }
        }
    }

    fn dispatch(&self, token: Token, event: &mio::event::Event) {
        let source = self.sources.borrow().get(token.0).cloned();
        match source {
            Some(Source::Listener(l)) => tcp::accept(self, &l),
            Some(Source::Conn(c)) => {
                let drain = event.is_read_closed() || event.is_error();
                if event.is_readable() || drain {
                    tcp::read(self, &c, drain);
                }
                if event.is_writable() || event.is_write_closed() {
                    self.mark_dirty(&c);
                }
            }
            Some(Source::Connecting(c)) => tcp::connect_ready(self, &c),
            Some(Source::Udp(u)) => udp::read(self, &u),
            None => {}
        }
    }

    /// Every open connection (for the shutdown).
    fn connections(&self) -> Vec<Rc<TcpConn>> {
        self.sources
            .borrow()
            .iter()
            .filter_map(|(_, s)| match s {
                Source::Conn(c) => Some(c.clone()),
                _ => None,
            })
            .collect()
    }
}

impl ReactorTime for MioReactor {
    fn seconds(&self) -> Instant {
        self.inner.now()
    }

    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        let now = self.inner.now();
        self.inner.timers.set_now(now);
        self.inner.timers.call_later_boxed(delay, f)
    }
}

impl ReactorRandom for MioReactor {
    fn next_u64(&self) -> u64 {
        self.inner.random.next_u64()
    }
}

impl ReactorThreads for MioReactor {
    fn thread_caller(&self) -> ThreadCaller {
        self.inner.threads.caller()
    }

    fn defer_to_thread_boxed(&self, work: ThreadWork) -> Deferred<Box<dyn Any + Send>> {
        self.inner.pool.submit(work)
    }
}

impl ReactorCore for MioReactor {
    /// Runs the loop until [`stop`](ReactorCore::stop) (or SIGINT / SIGTERM) and the
    /// shutdown triggers complete; open connections are then closed cleanly.
    fn run(&self) -> Result<(), ReactorError> {
        self.start_running()?;
        let mut signals = signal_hook_mio::v1_0::Signals::new([
            signal_hook::consts::SIGINT,
            signal_hook::consts::SIGTERM,
        ])
        .ok();
        if let Some(s) = signals.as_mut() {
            let _ = self.inner.registry.register(s, SIGNALS, Interest::READABLE);
        }
        while !self.inner.shutdown_done.get() {
            if let Err(e) = self.inner.turn(None, signals.as_mut()) {
                tracing::error!(error = %e, "poll failed; stopping");
                break;
            }
        }
        // Close what is left: flush and FIN each connection, for at most a second.
        for c in self.inner.connections() {
            c.conn.transport().lose_connection();
        }
        let deadline = std::time::Instant::now() + Duration::from_secs(1);
        while self.connection_count() > 0 && std::time::Instant::now() < deadline {
            let _ = self.inner.turn(Some(Duration::from_millis(10)), None);
        }
        if let Some(mut s) = signals {
            let _ = self.inner.registry.deregister(&mut s);
        }
        self.inner.life.finish();
        Ok(())
    }

    fn stop(&self) -> Result<(), ReactorError> {
        let done = self.inner.shutdown_done.clone();
        let _ = self
            .inner
            .life
            .stop()?
            .add_callback(move |()| done.set(true));
        let _ = self.inner.waker.wake();
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

impl ReactorTcp for MioReactor {
    fn listen_tcp_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        backlog: u32,
        interface: &str,
    ) -> Result<ListeningPort, CannotListenError> {
        tcp::listen(&self.inner, port, factory, backlog, interface)
    }

    fn connect_tcp_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        timeout: Duration,
        bind_address: Option<std::net::SocketAddr>,
    ) -> Connector {
        tcp::connect(&self.inner, host, port, factory, timeout, bind_address)
    }
}

impl ReactorUdp for MioReactor {
    fn listen_udp_with(
        &self,
        port: u16,
        protocol: Box<dyn DatagramProtocol>,
        interface: &str,
        max_packet_size: usize,
    ) -> Result<DatagramTransport, CannotListenError> {
        udp::listen(&self.inner, port, protocol, interface, max_packet_size)
    }
}

/// `host:port` as a socket address (`""` and `"0.0.0.0"` mean every IPv4 interface).
/// The address of `host` (a name or an IP literal): its first IPv4 address if it has one,
/// as Twisted's `connectTCP` and `listenTCP` resolve names (so `localhost` reaches a server
/// listening on `0.0.0.0` even where `::1` is listed first).
fn resolve(host: &str, port: u16) -> io::Result<std::net::SocketAddr> {
    use std::net::ToSocketAddrs;
    let host = if host.is_empty() { "0.0.0.0" } else { host };
    let all: Vec<std::net::SocketAddr> = (host, port).to_socket_addrs()?.collect();
    all.iter()
        .find(|a| a.is_ipv4())
        .or(all.first())
        .copied()
        .ok_or_else(|| io::Error::new(io::ErrorKind::NotFound, format!("no address for {host}")))
}

fn failure_from_io(e: &io::Error) -> Failure {
    Failure::new(crate::error::ConnectionLost::new(e.to_string()))
}

fn addr(a: std::net::SocketAddr) -> Address {
    Address::tcp(a)
}

#[cfg(test)]
mod tests;
