//! torsion-sim: the deterministic simulator and test harness for torsion.
//!
//! This crate drives the same reactor traits as `torsion`'s real reactor, with a virtual
//! clock and an in-memory network whose every choice comes from a seed.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod decide;
pub mod trace;

pub use decide::Decisions;
pub use trace::{Event, Kind, Trace};
