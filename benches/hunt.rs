//! Exploration power: how many seeds of its default world the simulator needs to find each
//! bug of the battery of planted bugs (`sim/tests/battery/`).
//!
//! Per bug, the buggy version is swept in `check()`'s default world from several seed offsets
//! (0, 100,000, 200,000, ...), up to a limit of seeds each, and the seeds-to-first-failure
//! are collected; `hunt_<bug>_median_seeds: N seeds` prints their median, or `not found
//! within LIMIT` when more than half of the offsets found nothing. Then
//! `hunt_total_median_seeds`, the sum of the medians (a bug not found counts as the limit),
//! and `hunt_bugs_found`. Bugs that need a fault are hunted again in the swarm world a user
//! would opt into for them (`hunt_<bug>_swarm_median_seeds`, `hunt_swarm_...` totals). Each
//! twin is swept over `HUNT_TWIN_SEEDS` seeds (10,000 by default) of each world and must
//! pass: `hunt_<bug>_twin: passed N seeds`.
//!
//! `HUNT_OFFSETS` (default 5), `HUNT_LIMIT` (default 10,000) and `HUNT_TWIN_SEEDS` scale the
//! run; `TORSION_JOBS` sets the threads.
// A benchmark's stopwatch is the one place the wall clock belongs.
#![allow(clippy::disallowed_methods)]

#[allow(dead_code)]
#[path = "../sim/tests/battery/bugs/mod.rs"]
mod bugs;

use std::time::Instant;

use bugs::{default_world, seeds_to_find_with, twin_failure, Bug, BUGS};
use torsion_sim::SimBuilder;

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

/// The median of `found` over `offsets` offsets, where the missing ones were not found:
/// `None` if more than half were not found.
fn median(mut found: Vec<u64>, offsets: usize) -> Option<u64> {
    found.sort_unstable();
    // Not-found offsets sort last, as if infinite.
    let mid = offsets / 2;
    found.get(mid).copied()
}

/// The median seeds-to-find of `bug` in the worlds `builder` makes, or `None` if more than
/// half the offsets found nothing; with the raw figures, for the log.
fn hunt(bug: &Bug, builder: fn() -> SimBuilder, offsets: usize, limit: u64) -> Option<u64> {
    let t0 = Instant::now();
    let mut found = Vec::new();
    for k in 0..offsets {
        if let Some(n) = seeds_to_find_with(bug, builder, k as u64 * 100_000, limit) {
            found.push(n);
        }
        // Once more than half the offsets found nothing, the median is settled.
        if k + 1 - found.len() > offsets / 2 {
            break;
        }
    }
    let runs: Vec<String> = found.iter().map(u64::to_string).collect();
    eprintln!(
        "  {}: found at [{}] ({:.1} s)",
        bug.name,
        runs.join(", "),
        t0.elapsed().as_secs_f64()
    );
    median(found, offsets)
}

fn twin(bug: &Bug, builder: fn() -> SimBuilder, world: &str, seeds: u64) {
    if seeds == 0 {
        return;
    }
    let t0 = Instant::now();
    match twin_failure(bug, builder, 0, seeds) {
        None => println!("hunt_{}_twin{world}: passed {seeds} seeds", bug.name),
        Some(report) => {
            println!(
                "hunt_{}_twin{world}: FAILED on seed {}",
                bug.name, report.seed
            );
            eprintln!("{report}");
        }
    }
    eprintln!(
        "  {} twin{world}: {:.1} s",
        bug.name,
        t0.elapsed().as_secs_f64()
    );
}

fn main() {
    let offsets = env_u64("HUNT_OFFSETS", 5) as usize;
    let limit = env_u64("HUNT_LIMIT", 10_000);
    let twin_seeds = env_u64("HUNT_TWIN_SEEDS", 10_000);
    let started = Instant::now();
    let (mut total, mut found_bugs) = (0, 0);
    let (mut swarm_total, mut swarm_found, mut swarm_bugs) = (0, 0, 0);
    for bug in &BUGS {
        match hunt(bug, default_world, offsets, limit) {
            Some(m) => {
                println!("hunt_{}_median_seeds: {m} seeds", bug.name);
                total += m;
                found_bugs += 1;
            }
            None => {
                println!("hunt_{}_median_seeds: not found within {limit}", bug.name);
                total += limit;
            }
        }
        twin(bug, default_world, "", twin_seeds);
        if let Some(swarm) = bug.swarm {
            swarm_bugs += 1;
            match hunt(bug, swarm, offsets, limit) {
                Some(m) => {
                    println!("hunt_{}_swarm_median_seeds: {m} seeds", bug.name);
                    swarm_total += m;
                    swarm_found += 1;
                }
                None => {
                    println!(
                        "hunt_{}_swarm_median_seeds: not found within {limit}",
                        bug.name
                    );
                    swarm_total += limit;
                }
            }
            twin(bug, swarm, "_swarm", twin_seeds);
        }
    }
    println!("hunt_total_median_seeds: {total} seeds (a bug not found counts as {limit})");
    println!("hunt_bugs_found: {found_bugs} of {}", BUGS.len());
    println!("hunt_swarm_total_median_seeds: {swarm_total} seeds (over the {swarm_bugs} bugs that need a fault)");
    println!("hunt_swarm_bugs_found: {swarm_found} of {swarm_bugs}");
    eprintln!("  wall: {:.1} s", started.elapsed().as_secs_f64());
}
