//! Arbitrary values in every field of a scenario file: each file is either refused with a
//! `file:line: field ...` error, or it runs (one seed, with the run cut short so the test
//! stays fast). Never a panic in the simulator or an app, never an abort.

use std::path::Path;

use proptest::prelude::*;

use torsion_sim::check::run_once;
use torsion_sim::cli::ScenarioBody;
use torsion_sim::scenario::Scenario;
use torsion_sim::SimError;

/// The bundled binary's workloads (the demo apps), as `torsion-sim` registers them.
#[allow(dead_code)]
#[path = "../src/bin/torsion-sim/workloads.rs"]
mod workloads;
use workloads::APPS;

/// The scenario bounds and the bundled apps' parameter bounds.
mod limits {
    pub use super::workloads::limits::*;
    pub use torsion_sim::scenario::limits::*;
}

/// Any TOML value an integer field might be given: past its bound `max`, anything a `u64`
/// can hold, negative, or not an integer at all.
fn arbitrary(max: u64) -> BoxedStrategy<String> {
    prop_oneof![
        (0u64..=4).prop_map(|v| v.to_string()),
        Just(max.saturating_add(1).to_string()),
        any::<u64>().prop_map(|v| v.to_string()),
        (i64::MIN..0).prop_map(|v| v.to_string()),
        Just("\"many\"".to_string()),
        Just("1.5".to_string()),
    ]
    .boxed()
}

/// A value an integer field bounded by `max` accepts: small, or (if `edge`) at the bound.
/// Fields whose bound is costly to run (a million messages built at once) leave it out.
fn valid(max: u64, edge: bool) -> BoxedStrategy<String> {
    let small = (1u64..=4).prop_map(|v| v.to_string());
    if edge {
        prop_oneof![3 => small, 1 => (max - 1..=max).prop_map(|v| v.to_string())].boxed()
    } else {
        small.boxed()
    }
}

/// Mostly a valid value, sometimes an arbitrary one.
fn int(max: u64, edge: bool) -> BoxedStrategy<String> {
    prop_oneof![12 => valid(max, edge), 1 => arbitrary(max)].boxed()
}

/// `key = value` for an optional integer field.
fn field(key: &'static str, max: u64, edge: bool) -> BoxedStrategy<Option<String>> {
    proptest::option::weighted(
        0.3,
        int(max, edge).prop_map(move |v| format!("{key} = {v}")),
    )
    .boxed()
}

/// A host name: one the topology probably has, or not.
fn host() -> BoxedStrategy<String> {
    prop_oneof![
        8 => Just("\"server0\"".to_string()),
        8 => Just("\"client0\"".to_string()),
        2 => (0u32..3).prop_map(|i| format!("\"server{i}\"")),
        2 => (0u32..5).prop_map(|i| format!("\"client{i}\"")),
        1 => prop_oneof![Just("\"mars\"".to_string()), Just("7".to_string())],
    ]
    .boxed()
}

/// Renders one table of optional lines.
fn table(name: &str, lines: Vec<Option<String>>) -> String {
    let body: Vec<String> = lines.into_iter().flatten().collect();
    if body.is_empty() {
        String::new()
    } else {
        format!("[{name}]\n{}\n", body.join("\n"))
    }
}

fn scenario_text() -> impl Strategy<Value = String> {
    use limits::*;
    let y = MAX_TIME_MS;
    let ppm = MAX_PPM;
    let top = (
        prop::sample::select(APPS.to_vec()),
        field("seeds", MAX_SEEDS, true),
    );
    // Valid clients stay small: a run of 100,000 hosts is legal but too slow for a
    // debug-build property test.
    let topology = (
        field("servers", MAX_SERVERS, true),
        proptest::option::weighted(
            0.8,
            prop_oneof![
                12 => (1u64..=4).prop_map(|v| v.to_string()),
                1 => arbitrary(MAX_CLIENTS),
            ]
            .prop_map(|v| format!("clients = {v}")),
        ),
    );
    let workload = (
        field("messages", MAX_MESSAGES, false),
        field("min_size", MAX_MESSAGE_SIZE, false),
        field("max_size", MAX_MESSAGE_SIZE, false),
        field("rounds", MAX_ROUNDS, false),
        field("interval_ms", y, true),
        field("timeout_ms", y, true),
        field("deadline_s", MAX_TIME_S, true),
        proptest::option::of(any::<bool>().prop_map(|b| format!("dedupe = {b}"))),
        proptest::option::of(any::<bool>().prop_map(|b| format!("naive = {b}"))),
    );
    let network = (
        proptest::option::weighted(
            0.5,
            prop_oneof![
                4 => (0..=y, 0..=y).prop_map(|(a, b)| vec![a.min(b).to_string(), a.max(b).to_string()]),
                1 => prop::collection::vec(int(y, true), 0..4),
            ]
            .prop_map(|v| format!("latency_ms = [{}]", v.join(", "))),
        ),
        proptest::option::of(any::<bool>().prop_map(|b| format!("fragment = {b}"))),
    );
    let faults = (
        prop::sample::select(vec!["none", "rules", "swarm"]),
        field("horizon_ms", y, true),
        (
            field("reset_ppm", ppm, true),
            field("refuse_ppm", ppm, true),
            field("spike_ppm", ppm, true),
            field("spike_ms", y, true),
            field("drift_ppm_max", ppm, true),
            field("udp_loss_ppm", ppm, true),
            field("udp_dup_ppm", ppm, true),
            field("udp_reorder_ppm", ppm, true),
        ),
        prop::collection::vec(
            (int(y, true), int(y, true), host(), host(), any::<bool>()),
            0..3,
        ),
        prop::collection::vec(
            (int(y, true), host(), proptest::option::of(int(y, true))),
            0..3,
        ),
    );
    let run_limits = (
        field("sim_time_s", MAX_TIME_S, true),
        field("max_steps", MAX_STEPS, true),
    );
    (top, topology, workload, network, faults, run_limits).prop_map(
        |((app, seeds), (servers, clients), w, (latency, fragment), f, (time, steps))| {
            let mut text = format!("name = \"p\"\ndescription = \"d\"\napp = \"{app}\"\n");
            text.extend(seeds.map(|s| format!("{s}\n")));
            text += &table("topology", vec![servers, clients]);
            text += &table(
                "workload",
                vec![w.0, w.1, w.2, w.3, w.4, w.5, w.6, w.7, w.8],
            );
            text += &table("network", vec![latency, fragment]);
            let (mode, horizon, rates, partitions, crashes) = f;
            let r = rates;
            text += &table(
                "faults",
                vec![
                    Some(format!("mode = \"{mode}\"")),
                    horizon,
                    r.0,
                    r.1,
                    r.2,
                    r.3,
                    r.4,
                    r.5,
                    r.6,
                    r.7,
                ],
            );
            for (at, len, a, b, one_way) in partitions {
                text += &format!(
                    "[[faults.partitions]]\nat_ms = {at}\nduration_ms = {len}\na = {a}\nb = {b}\none_way = {one_way}\n"
                );
            }
            for (at, h, restart) in crashes {
                text += &format!("[[faults.crashes]]\nat_ms = {at}\nhost = {h}\n");
                text.extend(restart.map(|r| format!("restart_after_ms = {r}\n")));
            }
            text += &table("limits", vec![time, steps]);
            text
        },
    )
}

/// The workloads' own assertions fail often in runs cut short; the harness catches them.
/// Keep them out of the output, and print every other panic as usual.
fn quiet_workload_asserts() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let default = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if !info
                .location()
                .is_some_and(|l| l.file().ends_with("workloads.rs"))
            {
                default(info);
            }
        }));
    });
}

/// What the standard library's panics from bad arithmetic, conversions, allocation and
/// indexing say.
const DEFECTS: [&str; 9] = [
    "overflow",
    "attempt to",
    "cannot convert",
    "unwrap()",
    "out of bounds",
    "out of range",
    "capacity",
    "divide by zero",
    "memory allocation",
];

/// Runs seed 0 of `s`, cut short: at most 2 simulated seconds and 3,000 events.
fn run_briefly((mut s, body): (Scenario, ScenarioBody)) -> Result<(), String> {
    quiet_workload_asserts();
    let cap = |v: Option<u64>, max: u64| Some(v.unwrap_or(max).min(max));
    s.limits.sim_time_s = cap(s.limits.sim_time_s, 2);
    s.limits.max_steps = cap(s.limits.max_steps, 3_000);
    let make = || s.builder().seed(0).build();
    let out = run_once(&make, &*body);
    match out.error {
        // A protocol or the simulator panicked: a defect, whatever the input.
        Some(e @ SimError::Panic { .. }) => Err(e.to_string()),
        // The body's own assertions (every client finished, ...) may fail when the run is
        // cut short; a panic of arithmetic, conversion or indexing in it is a defect.
        Some(SimError::Invariant { name, message })
            if name == "test body" && DEFECTS.iter().any(|d| message.contains(d)) =>
        {
            Err(message)
        }
        _ => Ok(()),
    }
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn any_scenario_is_an_error_or_a_run(text in scenario_text()) {
        let path = Path::new("p.toml");
        match workloads::registry().parse(path, &text) {
            Err(e) => {
                let shown = e.to_string();
                if std::env::var_os("SCENARIO_INPUT_SHOW").is_some() {
                    eprintln!("error: {shown}");
                }
                prop_assert!(shown.starts_with(&format!("p.toml:{}: ", e.line)), "{}", shown);
                prop_assert!(e.line >= 1 && e.line <= text.lines().count().max(1), "{}\n{}", shown, text);
                prop_assert!(!e.message.is_empty());
            }
            Ok(s) => {
                if std::env::var_os("SCENARIO_INPUT_SHOW").is_some() {
                    eprintln!("runs: {} {:?}", s.0.app, s.0.topology);
                }
                let r = run_briefly(s);
                prop_assert!(r.is_ok(), "{}\n{}", r.unwrap_err(), text);
            }
        }
    }
}

/// Each bound, reached by one field at a time, in the app that reads it: a run, not a panic.
#[test]
fn every_field_at_its_bound_runs() {
    use limits::*;
    let y = MAX_TIME_MS;
    let cases: Vec<(&str, String)> = vec![
        ("heartbeat", format!("[workload]\ninterval_ms = {y}\ntimeout_ms = {y}\nmessages = 30")),
        ("kv", format!("[workload]\ndeadline_s = {MAX_TIME_S}")),
        ("poetry", format!("[topology]\nservers = 40\nclients = 1\n[workload]\ninterval_ms = {y}")),
        ("echo", format!("[network]\nlatency_ms = [{y}, {y}]")),
        ("echo", format!("[network]\nlatency_ms = [0, {y}]")),
        ("echo", format!("[topology]\nservers = {MAX_SERVERS}")),
        ("echo", format!("[faults]\nmode = \"swarm\"\nhorizon_ms = {y}")),
        (
            "lines",
            format!(
                "[faults]\nmode = \"rules\"\nreset_ppm = {MAX_PPM}\nrefuse_ppm = {MAX_PPM}\n\
                 spike_ppm = {MAX_PPM}\nspike_ms = {y}\ndrift_ppm_max = {MAX_PPM}\n\
                 udp_loss_ppm = {MAX_PPM}\nudp_dup_ppm = {MAX_PPM}\nudp_reorder_ppm = {MAX_PPM}"
            ),
        ),
        (
            "heartbeat",
            format!(
                "[faults]\nmode = \"rules\"\n[[faults.partitions]]\nat_ms = {y}\nduration_ms = {y}\n\
                 a = \"server0\"\nb = \"client0\"\n[[faults.crashes]]\nat_ms = {y}\n\
                 host = \"server0\"\nrestart_after_ms = {y}"
            ),
        ),
        ("chat", format!("[limits]\nsim_time_s = {MAX_TIME_S}\nmax_steps = {MAX_STEPS}")),
    ];
    for (app, extra) in cases {
        let text = format!(
            "name = \"b\"\ndescription = \"d\"\napp = \"{app}\"\nseeds = {MAX_SEEDS}\n{extra}\n"
        );
        let s = workloads::registry()
            .parse(Path::new("b.toml"), &text)
            .unwrap_or_else(|e| panic!("{text}\nis valid: {e}"));
        if let Err(e) = run_briefly(s) {
            panic!("{text}\nfailed: {e}");
        }
    }
}
