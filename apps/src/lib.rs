//! torsion-apps: demo protocols written against torsion's public API only, each reading
//! like its Twisted original. The same code runs on the real reactor (see `examples/`) and
//! under torsion-sim (see `scenarios/` and the tests), and the planted-bug variants give the
//! simulator something to find.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

pub mod chat;
pub mod cli;
pub mod echo;
pub mod heartbeat;
pub mod kv;
pub mod lines;
pub mod poetry;
pub mod qotd;
