//! torsion-apps: demo protocols written against torsion's public API only.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

/// The version of the torsion engine these apps are written against.
pub const ENGINE: &str = torsion::VERSION;
