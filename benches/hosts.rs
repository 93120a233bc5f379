//! Scheduler scale: the wall time of one simulated world as its number of hosts grows.
//!
//! Workload: the echo scenario's body (one server, N clients, each sending one message of
//! 1..64 bytes and reading it back; latency 1..10 ms, fragmentation on, no faults), one seed,
//! on one thread, world building included. Prints `hosts_1k_wall_s` (1,000 clients),
//! `hosts_10k_wall_s` (10,000 clients) and `hosts_scaling_10k_over_1k`, their ratio: with a
//! per-event cost that does not grow with the number of hosts, ten times the clients take
//! about ten times as long. Each figure is the least of several runs (the machine's other
//! load only ever adds time). `HOSTS_BENCH_RUNS` sets the runs (default 5).
//!
//! The same three figures in the thread's CPU time (`hosts_1k_cpu_s`, `hosts_10k_cpu_s`,
//! `hosts_scaling_cpu_10k_over_1k`) leave out the time other processes take on a shared
//! machine. What remains of the growth beyond 10× is the memory a larger world touches (the
//! 10,000-client world does not fit in the caches the 1,000-client one fits in), not work: the
//! instructions per event stay the same.
// A benchmark's stopwatch is the one place the wall clock belongs.
#![allow(clippy::disallowed_methods)]

use std::path::Path;
use std::time::Instant;

use cpu_time::ThreadTime;

use torsion_sim::scenario::Scenario;

/// The bundled workloads, as the `torsion-sim` binary registers them.
#[allow(dead_code)]
#[path = "../sim/src/bin/torsion-sim/workloads.rs"]
mod workloads;

fn scenario(clients: usize) -> Scenario {
    let text = format!(
        r#"
name = "hosts"
description = "one echo per client"
app = "echo"
expect = "pass"
seeds = 1

[topology]
servers = 1
clients = {clients}

[workload]
messages = 1
min_size = 1
max_size = 64

[network]
latency_ms = [1, 10]
fragment = true

[faults]
mode = "none"
"#
    );
    match Scenario::parse(Path::new("hosts.toml"), &text) {
        Ok(s) => s,
        Err(e) => panic!("{e}"),
    }
}

/// The least wall time and the least CPU time, in seconds, of `runs` runs of one seed with
/// `clients` clients, and the events of a run.
fn measure(clients: usize, runs: u32) -> (f64, f64, u64) {
    let s = scenario(clients);
    let body = workloads::registry()
        .body(&s)
        .unwrap_or_else(|e| panic!("{e}"));
    let (mut wall, mut cpu) = (f64::INFINITY, f64::INFINITY);
    let mut events = 0;
    for _ in 0..runs {
        // Wall clock for the benchmark's stopwatch only: it times whole runs from outside
        // and never reaches a simulated world.
        let (start, start_cpu) = (Instant::now(), ThreadTime::now());
        let sim = s.builder().seed(1).build();
        body(&sim);
        events = sim.steps();
        assert!(sim.errors().is_empty(), "{:?}", sim.errors());
        drop(sim);
        wall = wall.min(start.elapsed().as_secs_f64());
        cpu = cpu.min(start_cpu.elapsed().as_secs_f64());
    }
    (wall, cpu, events)
}

fn main() {
    let runs = std::env::var("HOSTS_BENCH_RUNS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(5)
        .max(1);
    let (small, small_cpu, small_events) = measure(1_000, runs);
    let (large, large_cpu, large_events) = measure(10_000, runs);
    // The events per client stay the same, so the ratio of times is the ratio of costs.
    assert!(
        large_events >= 9 * small_events,
        "{small_events} → {large_events}"
    );
    println!("hosts_1k_wall_s: {small:.3} s");
    println!("hosts_10k_wall_s: {large:.3} s");
    println!("hosts_scaling_10k_over_1k: {:.1} x", large / small);
    println!("hosts_1k_cpu_s: {small_cpu:.3} s");
    println!("hosts_10k_cpu_s: {large_cpu:.3} s");
    println!(
        "hosts_scaling_cpu_10k_over_1k: {:.1} x",
        large_cpu / small_cpu
    );
}
