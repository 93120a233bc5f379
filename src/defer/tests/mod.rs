//! The Deferred test suite, ported from the behaviours of Twisted's `test_defer.py`.

mod depth;
