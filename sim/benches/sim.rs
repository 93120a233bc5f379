//! Simulator throughput (issue figures): the echo workload over many seeds on one thread.
//!
//! Workload: 1 server, 10 clients, each ping-ponging 100 messages of 1..64 bytes (sizes and
//! contents drawn from the reactor's random source), latency 1..10 ms, fragmentation on, no
//! faults. Prints `echo_seeds_per_s` and `echo_events_per_s`.
// A benchmark's stopwatch is the one place the wall clock belongs.
#![allow(clippy::disallowed_methods)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::defer::Failure;
use torsion::protocol::{Address, ClientFactory, Factory, ForProtocol, Protocol, Transport};
use torsion::reactor::{ReactorRandomExt, ReactorTcpExt};
use torsion_sim::{Host, Sim};

#[derive(Default)]
struct Echo {
    t: Transport,
}
impl Protocol for Echo {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
    }
    fn data_received(&mut self, d: &[u8]) {
        self.t.write(d);
    }
}

struct Pinger {
    t: Transport,
    host: Host,
    left: u32,
    expect: usize,
    done: Rc<Cell<u32>>,
}
impl Pinger {
    fn ping(&mut self) {
        let len = 1 + self.host.random_below(64) as usize;
        self.expect = len;
        self.t.write(vec![b'x'; len]);
    }
}
impl Protocol for Pinger {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        self.ping();
    }
    fn data_received(&mut self, d: &[u8]) {
        self.expect -= d.len();
        if self.expect == 0 {
            self.left -= 1;
            if self.left == 0 {
                self.done.set(self.done.get() + 1);
                self.t.lose_connection();
            } else {
                self.ping();
            }
        }
    }
    fn connection_lost(&mut self, _r: Failure) {}
}
struct PingerFactory {
    host: Host,
    done: Rc<Cell<u32>>,
}
impl Factory for PingerFactory {
    fn build_protocol(&self, _a: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Pinger {
            t: Transport::default(),
            host: self.host.clone(),
            left: 100,
            expect: 0,
            done: self.done.clone(),
        }))
    }
}
impl ClientFactory for PingerFactory {}

fn run_seed(seed: u64) -> u64 {
    let sim = Sim::builder()
        .seed(seed)
        .latency(Duration::from_millis(1), Duration::from_millis(10))
        .build();
    let server = sim.host("server");
    server
        .listen_tcp(7, ForProtocol::<Echo>::new())
        .expect("listen");
    let done = Rc::new(Cell::new(0));
    for i in 0..10 {
        let c = sim.host(&format!("client{i}"));
        let f = Rc::new(PingerFactory {
            host: c.clone(),
            done: done.clone(),
        });
        c.connect_tcp("server", 7, f);
    }
    sim.run_until_idle();
    assert_eq!(done.get(), 10, "seed {seed}: {:?}", sim.errors());
    sim.steps()
}

fn main() {
    let seeds = 1000u64;
    let start = Instant::now();
    let mut events = 0;
    for seed in 0..seeds {
        events += run_seed(seed);
    }
    let secs = start.elapsed().as_secs_f64();
    println!("echo_seeds_per_s: {:.0}", seeds as f64 / secs);
    println!("echo_events_per_s: {:.0}", events as f64 / secs);
}
