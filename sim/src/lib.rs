//! torsion-sim: the deterministic simulator and test harness for torsion.
//!
//! This crate drives the same reactor traits as `torsion`'s real reactor, with a virtual
//! clock and an in-memory network whose every choice comes from a seed. It is being built:
//! see the project's issue tracker.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The version of the torsion engine this simulator drives.
pub const ENGINE: &str = torsion::VERSION;
