//! `user-harness`: the torsion-sim command line for this crate's `netkv` workload.
//!
//! ```text
//! cargo run -p user-harness -- explore examples/user-harness/scenarios
//! ```

use std::process::ExitCode;

fn main() -> ExitCode {
    torsion_sim::cli::main(user_harness::registry())
}
