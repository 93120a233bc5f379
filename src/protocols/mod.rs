//! Ready-made protocols (Twisted's `twisted.protocols`): framing in [`basic`], wrappers in
//! [`policies`], the small standard services in [`wire`].

pub mod basic;
pub mod policies;
pub mod wire;
