//! The bundled workloads' parameters: bounds and errors naming the file, line and field.

use std::path::Path;

use super::workloads::*;
use torsion_sim::scenario::limits::*;
use torsion_sim::scenario::{Scenario, ScenarioError};

fn parse(text: &str) -> Result<Scenario, ScenarioError> {
    registry()
        .parse(Path::new("scenarios/x.toml"), text)
        .map(|(s, _)| s)
}

const GOOD: &str =
    "name = \"x\"\ndescription = \"d\"\napp = \"echo\"\nseeds = 10\n\n[topology]\nclients = 3\n";

/// `GOOD` with `key = value` added under `[table]`, on line [`FIELD_LINE`].
fn with(table: &str, key: &str, value: &str) -> String {
    match (table, key) {
        ("topology", "clients") => {
            GOOD.replace("clients = 3", &format!("servers = 1\n\nclients = {value}"))
        }
        ("topology", _) => format!("{GOOD}\n{key} = {value}\n"),
        _ => format!("{GOOD}[{table}]\n{key} = {value}\n"),
    }
}

/// The line `key = value` lands on in [`with`].
const FIELD_LINE: usize = 9;

#[test]
fn the_sizes_that_aborted_the_process_are_errors_naming_file_line_and_field() {
    for (app, table, key, value) in [
        ("echo", "workload", "max_size", "1000000000000"),
        ("echo", "topology", "clients", "4294967295"),
        ("echo", "workload", "messages", "1000000000000"),
        ("kv", "workload", "rounds", "1000000000000"),
        ("echo", "limits", "sim_time_s", "18446744074"),
        (
            "heartbeat",
            "workload",
            "interval_ms",
            "9223372036854775807",
        ),
    ] {
        let text = with(table, key, value).replace("\"echo\"", &format!("{app:?}"));
        let e = parse(&text).unwrap_err();
        assert!(
            e.to_string()
                .starts_with(&format!("scenarios/x.toml:{FIELD_LINE}: field `{key}`")),
            "{key}: {e}"
        );
    }
}

#[test]
fn every_numeric_field_is_bounded() {
    use limits::*;
    let y = MAX_TIME_MS;
    let ppm = MAX_PPM;
    for (table, key, max) in [
        ("topology", "servers", MAX_SERVERS),
        ("workload", "min_size", DEFAULT_MAX_SIZE),
        ("workload", "interval_ms", y),
        ("workload", "timeout_ms", y),
        ("workload", "deadline_s", MAX_TIME_S),
        ("faults", "horizon_ms", y),
        ("faults", "spike_ms", y),
        ("faults", "reset_ppm", ppm),
        ("faults", "refuse_ppm", ppm),
        ("faults", "spike_ppm", ppm),
        ("faults", "drift_ppm_max", ppm),
        ("faults", "udp_loss_ppm", ppm),
        ("faults", "udp_dup_ppm", ppm),
        ("faults", "udp_reorder_ppm", ppm),
        ("limits", "sim_time_s", MAX_TIME_S),
        ("limits", "max_steps", MAX_STEPS),
    ] {
        parse(&with(table, key, &max.to_string()))
            .unwrap_or_else(|e| panic!("{key} = {max} is allowed: {e}"));
        let e = parse(&with(table, key, &(max + 1).to_string())).unwrap_err();
        assert_eq!(e.line, FIELD_LINE, "{key}: {e}");
        assert!(e.message.starts_with(&format!("field `{key}`")), "{e}");
    }
    // One client, so that the per-client bounds are the binding ones.
    let one = GOOD.replace("clients = 3", "clients = 1");
    for (key, max) in [
        ("messages", MAX_MESSAGES),
        ("rounds", MAX_ROUNDS),
        ("max_size", MAX_WORKLOAD_BYTES / 100),
    ] {
        // Small messages, so that the bytes bound does not bind first.
        let small = if key == "max_size" {
            ""
        } else {
            "max_size = 1\n"
        };
        parse(&format!("{one}[workload]\n{key} = {max}\n{small}"))
            .unwrap_or_else(|e| panic!("{key} = {max} is allowed: {e}"));
        let e = parse(&format!("{one}[workload]\n{key} = {}\n", max + 1)).unwrap_err();
        assert!(e.message.starts_with(&format!("field `{key}`")), "{e}");
    }
    // Messages over all clients.
    let e = parse(&format!(
        "{}[workload]\nmessages = {MAX_MESSAGES}\nmax_size = 1\n",
        GOOD.replace("clients = 3", "clients = 11")
    ))
    .unwrap_err();
    assert_eq!(e.line, 9, "{e}");
    assert!(e.message.contains("times 11 clients is 11000000"), "{e}");
    let e = parse(&format!(
        "{}[workload]\nrounds = 500000\n",
        GOOD.replace("\"echo\"", "\"kv\"")
    ))
    .unwrap_err();
    assert!(
        e.message
            .contains("field `rounds`: 500000 per client times 3"),
        "{e}"
    );
    let e = parse(&format!(
        "{one}[workload]\nmax_size = {}\n",
        MAX_MESSAGE_SIZE + 1
    ))
    .unwrap_err();
    assert!(e.message.starts_with("field `max_size`"), "{e}");
    let e =
        parse(&GOOD.replace("clients = 3", &format!("clients = {}", MAX_CLIENTS + 1))).unwrap_err();
    assert_eq!(e.line, 7, "{e}");
    assert!(e.message.starts_with("field `clients`"), "{e}");
    let e = parse(&GOOD.replace("seeds = 10", &format!("seeds = {}", MAX_SEEDS + 1))).unwrap_err();
    assert!(e.message.starts_with("field `seeds`"), "{e}");
    // The echo clients' bytes, all together.
    let e = parse(&format!(
        "{one}[workload]\nmessages = 1000000\nmax_size = 2000\n"
    ))
    .unwrap_err();
    assert!(e.message.contains("1 GiB"), "{e}");
}

#[test]
fn an_unknown_app_is_named() {
    let e = parse(&GOOD.replace("\"echo\"", "\"gopher\"")).unwrap_err();
    assert_eq!(e.line, 3);
    assert!(e.message.contains("unknown app \"gopher\""), "{e}");
}

#[test]
fn an_app_without_clients_is_refused() {
    for app in APPS {
        let text = GOOD
            .replace("clients = 3", "clients = 0")
            .replace("\"echo\"", &format!("{app:?}"));
        let e = parse(&text).unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        assert!(
            e.message.contains(&format!(
                "field `clients`: app `{app}` needs at least one client"
            )),
            "{e}"
        );
    }
}

#[test]
fn a_min_size_above_the_default_max_is_refused() {
    let e = parse(&with("workload", "min_size", "65")).unwrap_err();
    assert!(e.message.contains("above max_size 64 (the default)"), "{e}");
}
