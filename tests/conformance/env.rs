//! Backends for the conformance bodies.

use std::rc::Rc;
use std::time::Duration;

use torsion::reactor::Reactor;
use torsion_sim::{Host, Sim, SimError};

/// A backend: a server-side and a client-side reactor, and a way to drive them.
pub trait Env {
    /// The reactor that listens.
    fn server(&self) -> Rc<dyn Reactor>;
    /// The reactor that connects.
    fn client(&self) -> Rc<dyn Reactor>;
    /// What the client connects to.
    fn server_name(&self) -> String;
    /// The port the body's server listens on (nothing listens there before).
    fn port(&self) -> u16;
    /// Runs until `cond` holds; false if the world went idle or `limit` passed first.
    fn run_until(&self, cond: &dyn Fn() -> bool, limit: Duration) -> bool;
    /// Runs for `d` (of the backend's time).
    fn run_for(&self, d: Duration);
    /// A reactor of this backend that has not been started, if the backend has such a thing
    /// (a simulated host runs from boot).
    fn unstarted(&self) -> Option<Rc<dyn Reactor>>;
}

/// The simulator: two hosts on a network with 1..10 ms latency and fragmentation.
pub struct SimEnv {
    sim: Sim,
    server: Host,
    client: Host,
    seed: u64,
}

impl SimEnv {
    pub fn new(seed: u64) -> Self {
        // Panics are isolated and traced, not fatal, so the isolation rule can be checked.
        let sim = Sim::builder().seed(seed).fail_on_panic(false).build();
        let server = sim.host("server");
        let client = sim.host("client");
        SimEnv {
            sim,
            server,
            client,
            seed,
        }
    }

    /// Fails the test if the run recorded an error the body did not expect.
    pub fn finish(&self, name: &str) {
        let errors: Vec<SimError> = self.sim.errors();
        assert!(
            errors.is_empty(),
            "{name} failed on seed {}: {errors:?}\nreplay: TORSION_SEED={} cargo test {name}",
            self.seed,
            self.seed
        );
    }
}

impl Env for SimEnv {
    fn server(&self) -> Rc<dyn Reactor> {
        Rc::new(self.server.clone())
    }
    fn client(&self) -> Rc<dyn Reactor> {
        Rc::new(self.client.clone())
    }
    fn server_name(&self) -> String {
        "server".into()
    }
    fn port(&self) -> u16 {
        4000
    }
    fn run_until(&self, cond: &dyn Fn() -> bool, limit: Duration) -> bool {
        let deadline = self.sim.now() + limit;
        self.sim.run_until(|| cond() || self.sim.now() >= deadline) && cond()
    }
    fn run_for(&self, d: Duration) {
        self.sim.run_for(d);
    }
    fn unstarted(&self) -> Option<Rc<dyn Reactor>> {
        None
    }
}

/// The real reactor: one `MioReactor` is both sides, over 127.0.0.1.
pub struct MioEnv {
    reactor: torsion::mio::MioReactor,
    port: u16,
}

impl MioEnv {
    pub fn new() -> Self {
        let reactor = torsion::mio::MioReactor::new().expect("a poller");
        reactor.start_running().expect("starts");
        // A port nothing listens on: the kernel's pick, released at once.
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .and_then(|l| l.local_addr())
            .expect("a free port")
            .port();
        MioEnv { reactor, port }
    }
}

// The real reactor runs on the wall clock.
#[allow(clippy::disallowed_methods)]
fn wall() -> std::time::Instant {
    std::time::Instant::now()
}

impl Env for MioEnv {
    fn server(&self) -> Rc<dyn Reactor> {
        Rc::new(self.reactor.clone())
    }
    fn client(&self) -> Rc<dyn Reactor> {
        Rc::new(self.reactor.clone())
    }
    fn server_name(&self) -> String {
        "127.0.0.1".into()
    }
    fn port(&self) -> u16 {
        self.port
    }
    fn run_until(&self, cond: &dyn Fn() -> bool, limit: Duration) -> bool {
        let deadline = wall() + limit;
        while !cond() {
            if wall() >= deadline {
                return false;
            }
            self.reactor
                .iterate(Some(Duration::from_millis(10)))
                .expect("poll");
        }
        true
    }
    fn unstarted(&self) -> Option<Rc<dyn Reactor>> {
        Some(Rc::new(torsion::mio::MioReactor::new().expect("a poller")))
    }
    fn run_for(&self, d: Duration) {
        let deadline = wall() + d;
        while wall() < deadline {
            self.reactor
                .iterate(Some(Duration::from_millis(5)))
                .expect("poll");
        }
    }
}
