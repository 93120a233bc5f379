//! The Deferred test suite, ported from the behaviours of Twisted's `test_defer.py`.

mod callbacks;
mod cancel;
mod chaining;
mod combinators;
mod debug;
mod depth;
mod failure;
mod locks;
mod support;
mod unhandled;
