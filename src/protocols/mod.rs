//! Ready-made protocols (Twisted's `twisted.protocols`): framing in [`basic`].

pub mod basic;
