//! `torsion-sim`: the command line of [`torsion_sim::cli`] with the demo apps of
//! `torsion-apps` registered (see `workloads.rs`), over the bundled `scenarios/`.
//!
//! ```text
//! cargo run --release -p torsion-sim -- explore scenarios
//! ```

use std::process::ExitCode;

mod workloads;
#[cfg(test)]
mod workloads_tests;

fn main() -> ExitCode {
    torsion_sim::cli::main(workloads::registry())
}

#[cfg(test)]
mod tests {
    use std::path::Path;

    use torsion_sim::cli::run_seed;

    use super::workloads;

    #[test]
    fn run_keeps_the_full_trace_only_when_asked() {
        let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios/naive_lines.toml");
        let (s, body) = workloads::registry().load(&path).unwrap();
        let quiet = run_seed(&s, &*body, 3, false);
        let full = run_seed(&s, &*body, 3, true);
        assert!(quiet.trace.is_empty(), "{}", quiet.trace);
        assert!(full.trace.contains("listen :7"), "{}", full.trace);
        assert_eq!(quiet.hash, full.hash);
        assert_eq!(quiet.steps, full.steps);
        assert!(quiet.error.is_some() && full.error.is_some());
    }

    #[test]
    fn every_bundled_app_is_registered() {
        assert_eq!(
            workloads::registry().names(),
            ["chat", "echo", "heartbeat", "kv", "lines", "poetry"]
        );
        let mut apps = workloads::APPS.to_vec();
        apps.sort_unstable();
        assert_eq!(workloads::registry().names(), apps);
    }
}
