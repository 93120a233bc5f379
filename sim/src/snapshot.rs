//! insta integration: snapshot a run's trace in one line.
//!
//! ```ignore
//! let sim = Sim::builder().seed(1).trace(true).build();
//! // ... run a workload ...
//! torsion_sim::assert_trace_snapshot!("echo_seed_1", sim);
//! ```
//!
//! The rendering is stable (integer nanoseconds, escaped previews), so a snapshot changes
//! only when behaviour does. The world must have been built with `.trace(true)`.

/// Snapshots the rendered trace of a [`Sim`](crate::Sim) with `insta`
/// (`assert_trace_snapshot!(sim)` or `assert_trace_snapshot!("name", sim)`).
#[macro_export]
macro_rules! assert_trace_snapshot {
    ($sim:expr) => {
        $crate::insta::assert_snapshot!($crate::snapshot::rendered(&$sim))
    };
    ($name:expr, $sim:expr) => {
        $crate::insta::assert_snapshot!($name, $crate::snapshot::rendered(&$sim))
    };
}

/// The full trace of `sim`, rendered; panics if the world keeps only the trace hash (an
/// empty snapshot would pass for any run).
#[doc(hidden)]
#[track_caller]
pub fn rendered(sim: &crate::Sim) -> String {
    let trace = sim.trace();
    assert!(
        trace.is_full(),
        "assert_trace_snapshot!: this world keeps only its trace hash; build it with \
         `.trace(true)` to snapshot its events"
    );
    trace.render()
}
