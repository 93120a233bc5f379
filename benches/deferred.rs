//! Deferred throughput: callbacks per second through real chains.
//!
//! Two workloads, each over 100,000 Deferreds, timed end to end (create the Deferred, add
//! its callbacks, fire it, read the result):
//!
//! - `deferred_callbacks_per_s`: 10 callbacks per Deferred, each mapping the value;
//! - `deferred_chained_callbacks_per_s`: each Deferred's first callback returns an inner,
//!   unfired Deferred; the outer chain pauses, the inner fires, the outer resumes and runs a
//!   second callback. Two user callbacks per Deferred, plus the pause/resume.
//!
//! Each workload runs 7 times; the median is printed.
// A benchmark's stopwatch is the one place the wall clock belongs.
#![allow(clippy::disallowed_methods)]

use std::hint::black_box;
use std::time::Instant;

use torsion::defer::Deferred;

const DEFERREDS: usize = 100_000;
const RUNS: usize = 7;

fn ten_callbacks() -> u64 {
    let mut total = 0u64;
    for i in 0..DEFERREDS {
        let d = Deferred::<u64>::new();
        let mut tail = d.clone();
        for _ in 0..10 {
            tail = tail.add_callback(|x| black_box(x + 1));
        }
        d.callback(i as u64).expect("fresh Deferred");
        total += tail.result().and_then(Result::ok).expect("fired");
    }
    total
}

fn chained() -> u64 {
    let mut total = 0u64;
    for i in 0..DEFERREDS {
        let outer = Deferred::<u64>::new();
        let inner = Deferred::<u64>::new();
        let waiting = inner.clone();
        let tail = outer
            .clone()
            .and_then(move |_x| waiting)
            .add_callback(|x| black_box(x + 1));
        outer.callback(i as u64).expect("fresh Deferred");
        inner.callback(i as u64).expect("fresh Deferred");
        total += tail.result().and_then(Result::ok).expect("fired");
    }
    total
}

fn median_rate(callbacks: usize, f: fn() -> u64) -> f64 {
    let mut rates: Vec<f64> = (0..RUNS)
        .map(|_| {
            let start = Instant::now();
            black_box(f());
            callbacks as f64 / start.elapsed().as_secs_f64()
        })
        .collect();
    rates.sort_by(|a, b| a.total_cmp(b));
    rates[RUNS / 2]
}

fn main() {
    let plain = median_rate(DEFERREDS * 10, ten_callbacks);
    let chained = median_rate(DEFERREDS * 2, chained);
    println!("deferred_callbacks_per_s: {plain:.0}");
    println!("deferred_chained_callbacks_per_s: {chained:.0}");
}
