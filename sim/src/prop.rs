//! proptest integration: schedules and fault plans as strategies.
//!
//! A run is a function of its choice sequence, so a `Vec<u64>` *is* a schedule. Handing
//! proptest a strategy over such vectors lets `proptest!` drive the simulator with hostile
//! schedules, and proptest's own shrinking (shorter vectors, smaller elements, both toward
//! choice 0: the simplest outcome) minimises a failing schedule for free.
//!
//! ```
//! use proptest::prelude::*;
//! use torsion_sim::prop::{faults, schedule};
//! use torsion_sim::Sim;
//!
//! proptest! {
//!     #![proptest_config(ProptestConfig::with_cases(16))]
//!     // In a test file this function carries `#[test]`.
//!     fn quiet_world_never_fails(choices in schedule(), f in faults(2)) {
//!         let sim = Sim::builder().choices(choices).faults(f).build();
//!         sim.host("a");
//!         sim.host("b");
//!         sim.run_until_idle();
//!         prop_assert!(sim.errors().is_empty());
//!     }
//! }
//! quiet_world_never_fails();
//! ```

use std::time::Duration;

use proptest::prelude::*;

use crate::faults::{Crash, Faults, Partition};

/// Choice sequences of up to 512 choices.
pub fn schedule() -> impl Strategy<Value = Vec<u64>> {
    schedule_of(512)
}

/// Choice sequences of up to `max_len` choices. Elements are mostly small (the decisions
/// that matter most — split or not, which event first, fault or not — have few outcomes),
/// with some arbitrary ones for latencies and split points.
pub fn schedule_of(max_len: usize) -> impl Strategy<Value = Vec<u64>> {
    let choice = prop_oneof![
        4 => 0u64..4,
        2 => 0u64..1_000,
        1 => any::<u64>(),
    ];
    proptest::collection::vec(choice, 0..=max_len)
}

/// Fault plans over `hosts` hosts within the first ten simulated seconds.
pub fn faults(hosts: usize) -> impl Strategy<Value = Faults> {
    let hosts = hosts.max(1);
    let ms = |lo: u64, hi: u64| (lo..hi).prop_map(Duration::from_millis);
    let partition = (
        ms(0, 10_000),
        ms(10, 3_000),
        0..hosts,
        0..hosts,
        any::<bool>(),
    )
        .prop_filter("two different hosts", |(_, _, a, b, _)| a != b)
        .prop_map(|(at, duration, a, b, one_way)| Partition {
            at,
            duration,
            a,
            b,
            one_way,
        });
    let crash = (ms(0, 10_000), 0..hosts, proptest::option::of(ms(10, 3_000))).prop_map(
        |(at, host, restart_after)| Crash {
            at,
            host,
            restart_after,
        },
    );
    (
        0u32..20_000,
        0u32..50_000,
        0u32..50_000,
        ms(0, 500),
        proptest::collection::vec(partition, 0..3),
        proptest::collection::vec(crash, 0..2),
        0u32..1_000,
        (0u32..50_000, 0u32..50_000, 0u32..50_000),
    )
        .prop_map(
            |(reset_ppm, refuse_ppm, spike_ppm, spike, partitions, crashes, drift, udp)| Faults {
                reset_ppm,
                refuse_ppm,
                spike_ppm,
                spike,
                partitions,
                crashes,
                drift_ppm_max: drift,
                udp_loss_ppm: udp.0,
                udp_dup_ppm: udp.1,
                udp_reorder_ppm: udp.2,
            },
        )
}

/// Runs `body` on the schedule `choices` as the check `name` would, for a property: `Ok` if it
/// passes; on a failure, a proptest failure whose message is the full report — the error,
/// the trace, and a replay file that `TORSION_REPLAY=FILE cargo test` replays in the
/// `check_with(Options::new(name), ...)` of the same name. Proptest shrinks the schedule; the
/// replay file is rewritten on each failing case, so the minimal one remains.
///
/// ```
/// use proptest::prelude::*;
/// use torsion_sim::prop::{check_schedule, schedule};
/// use torsion_sim::{Options, Sim};
///
/// proptest! {
///     #![proptest_config(ProptestConfig::with_cases(8))]
///     fn two_hosts_stay_quiet(choices in schedule()) {
///         let body = |sim: &Sim| {
///             sim.host("a");
///             sim.run_until_idle();
///         };
///         check_schedule(&Options::new("quiet"), choices, &Sim::builder, &body)?;
///     }
/// }
/// two_hosts_stay_quiet();
/// ```
pub fn check_schedule(
    opts: &crate::Options,
    choices: Vec<u64>,
    builder: &(dyn Fn() -> crate::SimBuilder + Sync),
    body: &crate::check::Body<'_>,
) -> Result<(), TestCaseError> {
    match crate::check::run_choices(opts, choices, builder, body) {
        None => Ok(()),
        Some(report) => Err(TestCaseError::fail(report.to_string())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Options, Sim};

    #[test]
    fn a_failing_schedule_becomes_a_report_with_a_trace_and_a_replay_file() {
        let dir = std::env::temp_dir().join(format!("torsion-prop-{}", std::process::id()));
        let opts = Options::new("prop failure").replay_dir(Some(dir.clone()));
        let body = |sim: &Sim| {
            let h = sim.host("a");
            h.log("about to fail");
            sim.invariant("never", || Err("broken".into()));
            sim.run_until_idle();
        };
        let err = check_schedule(&opts, vec![0, 1, 2], &Sim::builder, &body).unwrap_err();
        let text = err.to_string();
        assert!(
            text.contains("invariant 'never' violated: broken"),
            "{text}"
        );
        assert!(text.contains("log about to fail"), "{text}");
        let file = dir.join("prop_failure-0.toml");
        assert!(text.contains(&file.display().to_string()), "{text}");
        let replay = crate::ReplayFile::load(&file).unwrap();
        assert_eq!(replay.name, "prop failure");
        let ok = |sim: &Sim| {
            sim.run_until_idle();
        };
        assert!(check_schedule(&opts, vec![3], &Sim::builder, &ok).is_ok());
        let _ = std::fs::remove_dir_all(&dir);
    }
}
