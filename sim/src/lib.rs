//! torsion-sim: the deterministic simulator and test harness for torsion.
//!
//! This crate drives the same reactor traits as `torsion`'s real reactor, with a virtual
//! clock and an in-memory network whose every choice comes from a seed.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod check;
pub mod decide;
pub mod faults;
mod host;
mod net;
pub mod shrink;
pub mod trace;
mod udp;
mod world;

pub use check::{check, check_with, Options, ReplayFile, Report, Summary};
pub use decide::Decisions;
pub use faults::{Crash, Faults, Partition};
pub use host::Host;
pub use trace::{Event, Kind, Trace};
pub use world::{Config, Sim, SimBuilder, SimError, Stop};
