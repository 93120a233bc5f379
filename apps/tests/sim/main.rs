//! The apps under torsion-sim: hostile schedules and swarm faults, over many seeds.

mod echo;
mod qotd;
