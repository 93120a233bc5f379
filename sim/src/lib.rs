//! torsion-sim: the deterministic simulator and test harness for torsion.
//!
//! Protocols, factories and Deferred chains written against torsion's reactor traits run
//! here unchanged, on simulated hosts ([`Host`]) joined by a simulated network, in a world
//! ([`Sim`]) whose every nondeterministic choice — latency, how writes split into reads, the
//! order of simultaneous events, faults, crashes — comes from one decision source
//! ([`Decisions`]) fed by a seed. So:
//!
//! - a run is a pure function of its seed: running it again gives the same trace, byte for
//!   byte ([`Trace`]; the determinism check compares hashes);
//! - a failing run records its choices, and shrinking that sequence toward shorter and
//!   smaller ([`shrink`]) yields the simplest schedule that still fails;
//! - the runner ([`check()`](fn@check)) sweeps seeds in parallel, and on a failure prints the seed, the
//!   fault mix, the replay command and the shrunk trace, and writes a replay file;
//! - a trace is also a page to open in a browser ([`html`], [`Sim::write_html`]): a
//!   space-time diagram with a lane per host and an arrow per message, written next to each
//!   failure's replay file;
//! - user code marks its own rare paths with [`buggify!`], which the simulator takes now
//!   and then, as a decision of the run (module [`buggify`](mod@buggify));
//! - [`prop`] gives proptest strategies over schedules and fault plans, and
//!   [`assert_trace_snapshot!`] snapshots a trace with insta;
//! - [`cli`] is the command line (`list`, `explore`, `run`, `replay`, `shrink`) as a
//!   library: a crate registers its own workloads in a [`cli::Registry`] and calls
//!   [`cli::main`] from its own binary, over its own scenario files.
//!
//! ```
//! use std::rc::Rc;
//! use torsion::protocol::{ForProtocol, Protocol, Transport};
//! use torsion::reactor::ReactorTcpExt;
//! use torsion_sim::Sim;
//!
//! #[derive(Default)]
//! struct Echo { t: Transport }
//! impl Protocol for Echo {
//!     fn connection_made(&mut self, t: &Transport) { self.t = t.clone(); }
//!     fn data_received(&mut self, d: &[u8]) { self.t.write(d); }
//! }
//!
//! let sim = Sim::builder().seed(42).trace(true).build();
//! sim.host("server").listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
//! sim.host("client").connect_tcp("server", 7, ForProtocol::<Echo>::new());
//! sim.run_for(std::time::Duration::from_secs(1));
//! assert!(sim.trace().render().contains("accept from 10.0.0.2"));
//! ```
//!
//! Determinism rules hold in this crate as in the engine: no wall clock, no thread RNG, no
//! hash-ordered iteration; threads only in the runner, one world per thread.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod buggify;
pub mod check;
pub mod cli;
pub mod decide;
pub mod faults;
mod host;
pub mod html;
mod keyed;
mod net;
pub mod pct;
pub mod prop;
mod ranked;
pub mod scenario;
pub mod shrink;
#[doc(hidden)]
pub mod snapshot;
pub mod trace;
mod udp;
mod world;

pub use check::{check, check_with, run_choices, Options, ReplayFile, Report, Summary};
pub use decide::Decisions;
pub use faults::{Crash, Faults, Partition};
pub use host::Host;
#[doc(hidden)]
pub use insta;
pub use scenario::{Scenario, ScenarioError};
pub use trace::{Event, Kind, Trace};
pub use world::{
    Cadence, Config, Leftover, Sim, SimBuilder, SimError, Stop, FRAGMENT_ODDS, PORTFOLIO_HORIZON,
    PORTFOLIO_PCT, PORTFOLIO_QUANTA,
};
