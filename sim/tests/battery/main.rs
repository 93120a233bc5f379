//! The battery of planted bugs (issue 14): every twin passes, and every bug is found within
//! 1,000 seeds of `check()`'s default world (the default portfolio: the all-zero schedule,
//! fault-free varied schedules and swarm fault mixes, with arrival grids and PCT mode). Bugs
//! that need a fault are also hunted in the swarm world a user would opt into for them.
//! `cargo bench --bench hunt` measures seeds-to-find per bug.
//!
//! Debug runs sweep a modest number of twin seeds (`TORSION_SEEDS` scales it up; the
//! issue's 10,000 run in release, in the `hunt` benchmark).

mod bugs;
mod sim_defects;

use bugs::{bug, default_world, seeds_to_find, seeds_to_find_with, twin_failure};

/// Twin seeds per bug and world in a debug run (or `TORSION_SEEDS`).
fn twin_seeds() -> u64 {
    std::env::var("TORSION_SEEDS")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(100)
}

fn twin_passes(name: &str) {
    let b = bug(name);
    if let Some(report) = twin_failure(b, default_world, 0, twin_seeds()) {
        panic!("the correct twin of {name} failed:\n{report}");
    }
    if let Some(swarm) = b.swarm {
        if let Some(report) = twin_failure(b, swarm, 0, twin_seeds()) {
            panic!("the correct twin of {name} failed in its swarm world:\n{report}");
        }
    }
}

fn found_within_1000(name: &str) {
    let found = seeds_to_find(bug(name), 0, 1_000);
    assert!(
        found.is_some(),
        "{name}: not found within 1,000 seeds of check()'s default world"
    );
}

fn found_in_swarm_within_1000(name: &str) {
    let b = bug(name);
    let swarm = b
        .swarm
        .expect("a bug that needs a fault names its swarm world");
    let found = seeds_to_find_with(b, swarm, 0, 1_000);
    assert!(
        found.is_some(),
        "{name}: not found within 1,000 seeds of its swarm world"
    );
}

macro_rules! tests {
    ($check:ident: $($(#[$attr:meta])* $name:ident;)*) => {
        $(#[test] $(#[$attr])* fn $name() { super::$check(stringify!($name)); })*
    };
}

mod twin_passes {
    tests! { twin_passes:
        lost_update;
        retry_double_apply;
        timeout_after_close;
        lost_on_reset;
        delimiter_split;
        split_brain;
        stale_read;
        producer_pause;
    }
}

mod found_within_1000_seeds {
    tests! { found_within_1000:
        lost_update;
        retry_double_apply;
        timeout_after_close;
        lost_on_reset;
        delimiter_split;
        split_brain;
        stale_read;
        producer_pause;
    }
}

mod found_in_swarm_within_1000_seeds {
    tests! { found_in_swarm_within_1000:
        retry_double_apply;
        timeout_after_close;
        lost_on_reset;
        split_brain;
        stale_read;
    }
}

#[test]
fn every_bug_is_in_the_battery_once() {
    let mut names: Vec<&str> = bugs::BUGS.iter().map(|b| b.name).collect();
    names.sort_unstable();
    names.dedup();
    assert_eq!(names.len(), bugs::BUGS.len());
    assert!(names.len() >= 8);
}
