//! The apps under torsion-sim: hostile schedules and swarm faults, over many seeds.

mod chat;
mod echo;
mod heartbeat;
mod poetry;
mod qotd;
