//! Simulator throughput and footprint: the echo workload over many seeds on one thread.
//!
//! Workload: 1 server, 10 clients, each ping-ponging 100 messages of 1..64 bytes (sizes and
//! contents drawn from the reactor's random source), latency 1..10 ms, fragmentation on (the
//! default), no faults. Prints `echo_seeds_per_s` and `echo_events_per_s`; then the same
//! with fragmentation off (`echo_unfragmented_seeds_per_s`, `..._events_per_s`), the
//! figure comparable with simulators that deliver each write whole.
//!
//! Side by side with madsim: the same echo workload written for madsim (1 server, 10
//! clients, 100 messages of 1..64 bytes each over its simulated TCP, latency 1..10 ms) lives
//! in `benches/madsim-echo`, a crate of its own because madsim's simulator needs the whole
//! build under `--cfg madsim`. The bench builds it (`cargo build --release`, in
//! `target/madsim-echo`), then alternates the two sweeps over several rounds, each in its
//! own process run of the same seeds, and prints the medians: `madsim_echo_seeds_per_s` and
//! `echo_over_madsim` (torsion's fragmented echo rate over madsim's; madsim delivers each
//! write whole). `SIM_BENCH_MADSIM=0` skips it.
//!
//! Also: `conns_100k_rss_mib`, the resident memory after opening 100,000 simulated
//! connections (100 client hosts × 1,000) to one server and delivering a byte on each; and
//! `heartbeat_hour_wall_s`, the wall time to simulate one hour of 1,000 connections each
//! sending a heartbeat every second.
// A benchmark's stopwatch is the one place the wall clock belongs.
#![allow(clippy::disallowed_methods)]

use std::cell::Cell;
use std::rc::Rc;
use std::time::{Duration, Instant};

use torsion::defer::Failure;
use torsion::protocol::{Address, ClientFactory, Factory, ForProtocol, Protocol, Transport};
use torsion::reactor::{ReactorRandomExt, ReactorTcpExt};
use torsion_sim::{Host, Sim};

use torsion::protocols::wire::Echo;

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

fn run_seed(seed: u64, fragment: bool) -> u64 {
    let sim = Sim::builder()
        .seed(seed)
        .latency(Duration::from_millis(1), Duration::from_millis(10))
        .fragment(fragment)
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

/// Sends one byte a second, forever, on its connection (scoped timers).
#[derive(Default)]
struct Heart;
impl Protocol for Heart {
    fn connection_made(&mut self, t: &Transport) {
        beat(t.clone());
    }
    fn data_received(&mut self, _d: &[u8]) {}
}
fn beat(t: Transport) {
    let t2 = t.clone();
    t.call_later(Duration::from_secs(1), move |_me: &mut Heart| {
        t2.write(b".");
        beat(t2.clone());
    });
}

#[derive(Default)]
struct Quiet;
impl Protocol for Quiet {
    fn data_received(&mut self, _d: &[u8]) {}
}

#[derive(Default)]
struct Hello;
impl Protocol for Hello {
    fn connection_made(&mut self, t: &Transport) {
        t.write(b"!");
    }
    fn data_received(&mut self, _d: &[u8]) {}
}

fn rss_mib() -> f64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<f64>().ok())
        .map_or(f64::NAN, |kb| kb / 1024.0)
}

/// A quiet server on "server" and `hosts` client hosts with `per_host` connections each,
/// speaking `P`.
fn star<P: Protocol + Default + 'static>(sim: &Sim, hosts: usize, per_host: usize) -> Host {
    let server = sim.host("server");
    server
        .listen_tcp(9, ForProtocol::<Quiet>::new())
        .expect("listen");
    for h in 0..hosts {
        let c = sim.host(&format!("c{h}"));
        for _ in 0..per_host {
            c.connect_tcp("server", 9, ForProtocol::<P>::new());
        }
    }
    server
}

fn conns_100k() -> (f64, usize) {
    let sim = Sim::builder().seed(1).fragment(false).build();
    let server = star::<Hello>(&sim, 100, 1000);
    sim.run_until_idle();
    (rss_mib(), server.connection_count())
}

fn heartbeat_hour() -> f64 {
    let sim = Sim::builder().seed(2).build();
    star::<Heart>(&sim, 10, 100);
    // Wall clock for the benchmark's stopwatch only: it times whole runs from outside and
    // never reaches a simulated world.
    let start = Instant::now();
    sim.run_for(Duration::from_secs(3600));
    let wall = start.elapsed().as_secs_f64();
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
    wall
}

/// The echo workload over `seeds` seeds: (seeds per second, events per second).
fn echo_sweep(seeds: u64, fragment: bool) -> (f64, f64) {
    // Wall clock for the benchmark's stopwatch only: it times whole runs from outside and
    // never reaches a simulated world.
    let start = Instant::now();
    let mut events = 0;
    for seed in 0..seeds {
        events += run_seed(seed, fragment);
    }
    let secs = start.elapsed().as_secs_f64();
    (seeds as f64 / secs, events as f64 / secs)
}

/// Builds `benches/madsim-echo` and returns its binary, or why it could not.
fn build_madsim_echo() -> Result<std::path::PathBuf, String> {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map_or_else(|| root.join("target"), std::path::PathBuf::from)
        .join("madsim-echo");
    let status = std::process::Command::new(std::env::var("CARGO").unwrap_or("cargo".into()))
        .args(["build", "--release", "--quiet", "--manifest-path"])
        .arg(root.join("benches/madsim-echo/Cargo.toml"))
        .env("RUSTFLAGS", "--cfg madsim")
        .env("CARGO_TARGET_DIR", &target)
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    if !status.success() {
        return Err(format!("building benches/madsim-echo failed ({status})"));
    }
    Ok(target.join("release/madsim-echo"))
}

/// madsim's echo rate over `seeds` seeds from `start`, timed inside its process.
fn madsim_echo(bin: &std::path::Path, seeds: u64, start: u64) -> Result<f64, String> {
    let out = std::process::Command::new(bin)
        .args([seeds.to_string(), start.to_string()])
        .output()
        .map_err(|e| format!("{}: {e}", bin.display()))?;
    let text = String::from_utf8_lossy(&out.stdout);
    let secs = text
        .lines()
        .find_map(|l| l.strip_prefix("madsim_echo_seconds: "))
        .and_then(|v| v.trim().parse::<f64>().ok())
        .ok_or_else(|| {
            format!(
                "madsim-echo printed no time: {text}{}",
                String::from_utf8_lossy(&out.stderr)
            )
        })?;
    Ok(seeds as f64 / secs)
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Alternates torsion's and madsim's echo sweeps over `rounds` rounds of `seeds` seeds.
fn versus_madsim(rounds: u64, seeds: u64) {
    let bin = match build_madsim_echo() {
        Ok(bin) => bin,
        Err(e) => {
            println!("madsim_echo_seeds_per_s: unavailable ({e})");
            return;
        }
    };
    let (mut ours, mut theirs) = (Vec::new(), Vec::new());
    for round in 0..rounds {
        let start = round * seeds;
        match madsim_echo(&bin, seeds, start) {
            Ok(rate) => theirs.push(rate),
            Err(e) => {
                println!("madsim_echo_seeds_per_s: unavailable ({e})");
                return;
            }
        }
        let t = Instant::now();
        for seed in start..start + seeds {
            run_seed(seed, true);
        }
        ours.push(seeds as f64 / t.elapsed().as_secs_f64());
    }
    let (ours, theirs) = (median(ours), median(theirs));
    println!("versus_madsim_rounds: {rounds}");
    println!("versus_madsim_echo_seeds_per_s: {ours:.0}");
    println!("madsim_echo_seeds_per_s: {theirs:.0}");
    println!("echo_over_madsim: {:.2} x", ours / theirs);
}

fn main() {
    // SIM_BENCH_ONLY=echo runs just the seeds workload (for profiling).
    let only_echo = std::env::var("SIM_BENCH_ONLY").is_ok_and(|v| v == "echo");
    if !only_echo {
        // Memory first, before other workloads grow the heap.
        let (rss, open) = conns_100k();
        assert_eq!(open, 100_000, "every connection is open on the server");
        println!("conns_100k_rss_mib: {rss:.0}");
    }
    let (seeds_per_s, events_per_s) = echo_sweep(1000, true);
    println!("echo_seeds_per_s: {seeds_per_s:.0}");
    println!("echo_events_per_s: {events_per_s:.0}");
    // The same workload with every write delivered whole, as simulators without
    // fragmentation run it (fragmentation roughly triples the events of this workload).
    let (seeds_per_s, events_per_s) = echo_sweep(1000, false);
    println!("echo_unfragmented_seeds_per_s: {seeds_per_s:.0}");
    println!("echo_unfragmented_events_per_s: {events_per_s:.0}");
    if std::env::var("SIM_BENCH_MADSIM").map_or(true, |v| v != "0") {
        versus_madsim(5, 500);
    }
    if only_echo {
        return;
    }
    let wall = heartbeat_hour();
    println!("heartbeat_hour_wall_s: {wall:.2}");
}
