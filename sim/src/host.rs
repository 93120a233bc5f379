//! A simulated host: one reactor, implementing every engine trait, on the world's clock and
//! network. User code cannot tell it from the real reactor.
//!
//! Each host has its own timer queue in its own time (a host's clock may drift from the
//! world's); the world converts between the two when it looks for the next event. A host can
//! crash (its connections vanish without a word to the peers, its timers and listeners are
//! dropped, its protocols' state is lost) and restart (its startup closure runs again, as a
//! rebooted process would).

use std::cell::{Cell, RefCell};
use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::rc::{Rc, Weak};
use std::time::Duration;

use torsion::defer::{succeed, Deferred};
use torsion::driver::FactoryStarts;
use torsion::driver::{Lifecycle, ListeningPortDriver, TimerQueue};
use torsion::protocol::{Address, ClientFactory, Connector, Factory};
use torsion::reactor::{
    CannotListenError, DatagramProtocol, DatagramTransport, DelayedCall, Instant, ListeningPort,
    Phase, ReactorCore, ReactorError, ReactorRandom, ReactorTcp, ReactorTime, ReactorUdp,
    SystemEvent, Trigger, TriggerId,
};

use crate::net::{self, SimConn};
use crate::trace::Kind;
use crate::world::{LostConns, World};

/// A host's run state: the engine's [`Lifecycle`], started when the host boots (a simulated
/// host is running from creation) and replaced by a fresh one at a crash (a restarted process
/// has no triggers and has not been stopped). Held as an `Rc` so that triggers run with no
/// borrow of the host held: a trigger may crash the host or add triggers.
fn booted() -> Rc<Lifecycle> {
    let life = Lifecycle::new();
    // A new lifecycle always starts (no triggers are registered yet).
    let _ = life.start();
    Rc::new(life)
}

/// The address of host number `index`: `10.w.x.y`, from 10.0.0.1, with `x` below 250 and
/// `y` from 1 to 250 (distinct for the first 16,000,000 hosts, past anything a world holds).
fn ip_of_index(index: usize) -> Ipv4Addr {
    let w = (index / 62_500) as u8;
    let x = (index / 250 % 250) as u8;
    let y = (index % 250 + 1) as u8;
    Ipv4Addr::new(10, w, x, y)
}

/// The host number an address names, if it is of the form [`ip_of_index`] makes (whether
/// that host exists is the world's to say).
pub(crate) fn index_of_ip(ip: Ipv4Addr) -> Option<usize> {
    match ip.octets() {
        [10, w, x @ 0..=249, y @ 1..=250] => {
            Some(usize::from(w) * 62_500 + usize::from(x) * 250 + usize::from(y) - 1)
        }
        _ => None,
    }
}

#[cfg(test)]
#[test]
fn host_addresses_are_distinct_and_invert() {
    for i in (0..200_000).chain([15_999_999]) {
        assert_eq!(index_of_ip(ip_of_index(i)), Some(i), "{}", ip_of_index(i));
    }
    assert_eq!(ip_of_index(0), Ipv4Addr::new(10, 0, 0, 1));
    assert_eq!(ip_of_index(250), Ipv4Addr::new(10, 0, 1, 1));
    assert_eq!(ip_of_index(62_500), Ipv4Addr::new(10, 1, 0, 1));
    assert_eq!(index_of_ip(Ipv4Addr::new(10, 0, 0, 0)), None);
    assert_eq!(index_of_ip(Ipv4Addr::new(127, 0, 0, 1)), None);
}

/// What a host runs at boot and after each restart.
type Startup = Rc<dyn Fn(&Host)>;

pub(crate) struct Listener {
    pub(crate) factory: Rc<dyn Factory>,
}

pub(crate) struct HostState {
    me: Weak<HostState>,
    pub(crate) index: usize,
    name: String,
    pub(crate) ip: Ipv4Addr,
    pub(crate) world: Weak<World>,
    queue: TimerQueue,
    drift_ppm: u64,
    pub(crate) up: Cell<bool>,
    pub(crate) incarnation: Cell<u32>,
    life: RefCell<Rc<Lifecycle>>,
    pub(crate) listeners: RefCell<BTreeMap<u16, Listener>>,
    pub(crate) conns: RefCell<BTreeMap<u64, Rc<SimConn>>>,
    /// Open UDP ports and their protocols (dropped with the host, or at a crash).
    pub(crate) udp: RefCell<BTreeMap<u16, crate::udp::Slot>>,
    /// Connections lost here, kept weakly to find those that outlive their loss.
    pub(crate) lost: RefCell<LostConns>,
    pub(crate) starts: RefCell<FactoryStarts>,
    next_port: Cell<u16>,
    startup: RefCell<Option<Startup>>,
}

impl HostState {
    pub(crate) fn new(world: &Rc<World>, index: usize, name: &str) -> Rc<HostState> {
        let drift_ppm = {
            let max = u64::from(world.cfg.faults.drift_ppm_max);
            if max == 0 {
                0
            } else {
                world.decide.borrow_mut().range(0, max)
            }
        };
        let ip = ip_of_index(index);
        let st = Rc::new_cyclic(|me| HostState {
            me: me.clone(),
            index,
            name: name.to_string(),
            ip,
            world: Rc::downgrade(world),
            queue: TimerQueue::with_sequence(world.seq.clone()),
            drift_ppm,
            up: Cell::new(true),
            incarnation: Cell::new(0),
            life: RefCell::new(booted()),
            listeners: RefCell::new(BTreeMap::new()),
            conns: RefCell::new(BTreeMap::new()),
            udp: RefCell::new(BTreeMap::new()),
            lost: RefCell::new(LostConns::default()),
            starts: RefCell::new(FactoryStarts::new()),
            next_port: Cell::new(32768),
            startup: RefCell::new(None),
        });
        let w = Rc::downgrade(world);
        st.queue.set_change_observer(Some(Rc::new(move || {
            if let Some(w) = w.upgrade() {
                w.timers_changed(index);
            }
        })));
        st
    }

    pub(crate) fn world(&self) -> Option<Rc<World>> {
        self.world.upgrade()
    }

    /// Host time for a global time (the host's clock runs `drift_ppm` millionths fast).
    fn host_time(&self, global: u64) -> u64 {
        if self.drift_ppm == 0 {
            return global;
        }
        let extra = (u128::from(global) * u128::from(self.drift_ppm) / 1_000_000) as u64;
        global.saturating_add(extra)
    }

    /// The first global time at which the host clock reads at least `host`.
    fn global_time(&self, host: u64) -> u64 {
        if self.drift_ppm == 0 {
            return host;
        }
        let den = 1_000_000 + u128::from(self.drift_ppm);
        let g = (u128::from(host) * 1_000_000).div_ceil(den) as u64;
        // Rounding: step forward until the host clock has reached `host`.
        if self.host_time(g) >= host {
            g
        } else {
            g + 1
        }
    }

    /// Brings the queue's clock to the world's present (user code on another host may
    /// schedule here, and a packet arriving here runs protocol code that may reset timers
    /// relative to "now").
    pub(crate) fn sync(&self) {
        if let Some(w) = self.world() {
            let _up = self.sync_to(w.now.get());
        }
    }

    /// Brings the queue's clock to the global time `now`; returns whether the host is up
    /// (an arriving segment is lost otherwise).
    pub(crate) fn sync_to(&self, now: u64) -> bool {
        let now = Instant::from_nanos(self.host_time(now));
        if now > self.queue.now() {
            self.queue.set_now(now);
        }
        self.up.get()
    }

    pub(crate) fn next_global(&self) -> Option<(u64, u64)> {
        self.queue
            .next_key()
            .map(|(t, seq)| (self.global_time(t.as_nanos()), seq))
    }

    pub(crate) fn pop_due(&self, global: u64) -> Option<Box<dyn FnOnce()>> {
        let now = Instant::from_nanos(self.host_time(global));
        self.queue.set_now(now.max(self.queue.now()));
        self.queue.pop_due(self.queue.now()).map(|(_, f)| f)
    }

    /// Schedules `f` at the global time `at`, untraced (the host's own bookkeeping, such as
    /// refusing a connect to a host that does not exist; packets between hosts cross the link).
    pub(crate) fn schedule_global(&self, at: u64, f: impl FnOnce() + 'static) {
        self.sync();
        let t = Instant::from_nanos(self.host_time(at));
        self.queue.call_at_boxed(t, Box::new(f));
    }

    /// Pending delayed calls.
    pub(crate) fn pending_calls(&self) -> usize {
        self.queue.len()
    }

    /// Whether the host's reactor was stopped (and not restarted since).
    pub(crate) fn stopped(&self) -> bool {
        !self.life.borrow().running()
    }

    /// Drops everything without telling anyone (crash, or the end of the world).
    pub(crate) fn teardown(&self) {
        self.queue.clear();
        let conns = std::mem::take(&mut *self.conns.borrow_mut());
        for c in conns.values() {
            c.vanish();
        }
        drop(conns);
        let listeners = std::mem::take(&mut *self.listeners.borrow_mut());
        drop(listeners);
        let udp = std::mem::take(&mut *self.udp.borrow_mut());
        drop(udp);
        // A crash frees what the process held: whatever is still alive is not its leak.
        self.lost.borrow_mut().clear();
    }

    fn record(&self, kind: Kind) {
        if let Some(w) = self.world() {
            w.record(Some(self.index), None, kind);
        }
    }

    pub(crate) fn handle(&self) -> Option<Host> {
        self.me.upgrade().map(|st| Host { st })
    }
}

/// A simulated host and its reactor. Cheap to clone; implements [`ReactorCore`],
/// [`ReactorTime`], [`ReactorTcp`], [`ReactorUdp`] and [`ReactorRandom`].
#[derive(Clone)]
pub struct Host {
    pub(crate) st: Rc<HostState>,
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Host({} {})", self.st.name, self.st.ip)
    }
}

impl Host {
    /// The host's name.
    pub fn name(&self) -> &str {
        &self.st.name
    }

    /// The host's address.
    pub fn ip(&self) -> Ipv4Addr {
        self.st.ip
    }

    /// Whether the host is up (not crashed).
    pub fn is_up(&self) -> bool {
        self.st.up.get()
    }

    /// Writes a line into the trace.
    pub fn log(&self, text: impl Into<String>) {
        self.st.record(Kind::Log { text: text.into() });
    }

    /// Runs `f` now (on the next turn) and again after every restart: what a process does at
    /// boot (listen, connect, start timers).
    pub fn start(&self, f: impl Fn(&Host) + 'static) {
        let f: Startup = Rc::new(f);
        *self.st.startup.borrow_mut() = Some(f.clone());
        self.run_startup(f);
    }

    /// Schedules the startup closure for the next turn.
    fn run_startup(&self, f: Startup) {
        let me = Rc::downgrade(&self.st);
        self.st.sync();
        self.st.queue.call_later_boxed(
            Duration::ZERO,
            Box::new(move || {
                if let Some(h) = me.upgrade().and_then(|s| s.handle()) {
                    f(&h);
                }
            }),
        );
    }

    /// Crashes the host: its connections vanish (peers are not told), its timers and
    /// listeners are dropped.
    pub fn crash(&self) {
        if !self.st.up.get() {
            return;
        }
        self.st.record(Kind::Crash);
        self.st.up.set(false);
        self.st.incarnation.set(self.st.incarnation.get() + 1);
        self.st.teardown();
        *self.st.life.borrow_mut() = booted();
        *self.st.starts.borrow_mut() = FactoryStarts::new();
    }

    /// Restarts a crashed host and runs its startup closure again.
    pub fn restart(&self) {
        if self.st.up.get() {
            return;
        }
        self.st.up.set(true);
        self.st.record(Kind::Restart);
        let startup = self.st.startup.borrow().clone();
        if let Some(f) = startup {
            self.run_startup(f);
        }
    }

    /// Open connections on this host.
    pub fn connection_count(&self) -> usize {
        self.st.conns.borrow().len()
    }

    /// Pending timers on this host.
    pub fn pending_calls(&self) -> usize {
        self.st.queue.len()
    }

    fn life(&self) -> Rc<Lifecycle> {
        self.st.life.borrow().clone()
    }

    pub(crate) fn alloc_port(&self) -> u16 {
        let p = self.st.next_port.get();
        self.st
            .next_port
            .set(if p == u16::MAX { 32768 } else { p + 1 });
        p
    }
}

impl ReactorTime for Host {
    fn seconds(&self) -> Instant {
        match self.st.world() {
            Some(w) => Instant::from_nanos(self.st.host_time(w.now.get())),
            None => self.st.queue.now(),
        }
    }

    #[track_caller]
    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        let site = std::panic::Location::caller();
        self.st.sync();
        if !self.st.up.get() {
            // A crashed host runs nothing: hand back a call that never runs.
            let call = TimerQueue::new().call_later_boxed(delay, Box::new(|| {}));
            let _ = call.cancel();
            return call;
        }
        let me = Rc::downgrade(&self.st);
        self.st.queue.call_later_boxed(
            delay,
            Box::new(move || {
                if let Some(st) = me.upgrade() {
                    st.record(Kind::Timer { site });
                }
                f();
            }),
        )
    }
}

impl torsion::reactor::ReactorThreads for Host {
    fn thread_caller(&self) -> torsion::reactor::ThreadCaller {
        match self.st.world() {
            Some(w) => w.thread_calls.caller(),
            None => torsion::driver::ThreadCallQueue::new(None).caller(),
        }
    }

    /// No threads under simulation: `work` runs inline, now, and its Deferred fires after a
    /// chosen virtual delay (0 to 10 ms; choice 0: at once, on the next turn).
    fn defer_to_thread_boxed(
        &self,
        work: torsion::reactor::ThreadWork,
    ) -> Deferred<Box<dyn std::any::Any + Send>> {
        let d = Deferred::new();
        let result = torsion::driver::run_work(work);
        let delay = self
            .st
            .world()
            .map_or(0, |w| w.decide.borrow_mut().range(0, 10_000));
        let fire = d.clone();
        self.call_later_boxed(
            Duration::from_micros(delay),
            Box::new(move || {
                let _ = fire.resolve(result);
            }),
        );
        d
    }
}

impl ReactorRandom for Host {
    fn next_u64(&self) -> u64 {
        self.st
            .world()
            .map_or(0, |w| w.decide.borrow_mut().choose(u64::MAX))
    }
}

impl ReactorCore for Host {
    fn run(&self) -> Result<(), ReactorError> {
        // The world runs the hosts; a host is already running (or stopped for good).
        self.life().start()
    }

    fn stop(&self) -> Result<(), ReactorError> {
        let life = self.life();
        let shutdown = life.stop()?;
        let me = Rc::downgrade(&self.st);
        let _ = shutdown.add_callback(move |()| {
            life.finish();
            let Some(st) = me.upgrade() else { return };
            let conns: Vec<Rc<SimConn>> = st.conns.borrow().values().cloned().collect();
            for c in conns {
                c.transport().lose_connection();
            }
            let ports: Vec<u16> = st.listeners.borrow().keys().copied().collect();
            for port in ports {
                net::stop_listening(&st, port);
            }
        });
        Ok(())
    }

    fn running(&self) -> bool {
        self.life().running() && self.st.up.get()
    }

    fn call_when_running_boxed(&self, f: Box<dyn FnOnce()>) {
        // Hosts are running from creation; run it on the next turn, as at startup, so that
        // boot code sees the same order on every host.
        if self.life().running() {
            self.call_later_boxed(Duration::ZERO, f);
        } else {
            self.life().call_when_running(f);
        }
    }

    fn add_system_event_trigger_boxed(
        &self,
        phase: Phase,
        event: SystemEvent,
        f: Trigger,
    ) -> TriggerId {
        self.life().triggers().add(phase, event, f)
    }

    fn remove_system_event_trigger(&self, id: TriggerId) -> bool {
        self.life().triggers().remove(id)
    }
}

struct SimPort {
    host: Weak<HostState>,
    port: u16,
    addr: Address,
}

impl ListeningPortDriver for SimPort {
    fn stop_listening(&self) -> Deferred<()> {
        if let Some(st) = self.host.upgrade() {
            net::stop_listening(&st, self.port);
        }
        succeed(())
    }

    fn get_host(&self) -> Address {
        self.addr
    }
}

impl ReactorTcp for Host {
    fn listen_tcp_with(
        &self,
        port: u16,
        factory: Rc<dyn Factory>,
        _backlog: u32,
        interface: &str,
    ) -> Result<ListeningPort, CannotListenError> {
        let port = if port == 0 { self.alloc_port() } else { port };
        if self.st.listeners.borrow().contains_key(&port) {
            return Err(CannotListenError {
                interface: interface.to_string(),
                port,
                reason: "address already in use".into(),
            });
        }
        self.st.starts.borrow_mut().do_start(&factory);
        self.st
            .listeners
            .borrow_mut()
            .insert(port, Listener { factory });
        self.st.record(Kind::Listen { port });
        let addr = Address::tcp(SocketAddr::from((self.st.ip, port)));
        Ok(ListeningPort::new(Rc::new(SimPort {
            host: Rc::downgrade(&self.st),
            port,
            addr,
        })))
    }

    fn connect_tcp_with(
        &self,
        host: &str,
        port: u16,
        factory: Rc<dyn ClientFactory>,
        timeout: Duration,
        _bind_address: Option<SocketAddr>,
    ) -> Connector {
        net::connect(self, host, port, factory, timeout)
    }
}

impl ReactorUdp for Host {
    fn listen_udp_with(
        &self,
        port: u16,
        protocol: Box<dyn DatagramProtocol>,
        interface: &str,
        max_packet_size: usize,
    ) -> Result<DatagramTransport, CannotListenError> {
        crate::udp::listen(self, port, protocol, interface, max_packet_size)
    }
}
