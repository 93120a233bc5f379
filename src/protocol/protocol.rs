//! The `Protocol` trait: what a connection's user code implements.

use std::any::Any;

use crate::defer::Failure;
use crate::protocol::Transport;

/// The user side of a stream connection (Twisted's `Protocol`).
///
/// The reactor owns each connection's protocol and calls these methods from its loop, one at
/// a time, never re-entrantly: nothing a protocol does (writing, closing, scheduling, firing a
/// Deferred) calls back into it before returning.
///
/// `data_received` gets bytes in arbitrary chunks: one `write` on the far side may arrive as
/// many calls, and many writes as one. Parse with the framing receivers in
/// `torsion::protocols::basic`, not by assuming a chunk is a message.
///
/// ```
/// use torsion::defer::Failure;
/// use torsion::protocol::{Protocol, Transport};
///
/// /// Twisted's Echo.
/// #[derive(Default)]
/// struct Echo {
///     transport: Transport,
/// }
///
/// impl Protocol for Echo {
///     fn connection_made(&mut self, transport: &Transport) {
///         self.transport = transport.clone();
///     }
///     fn data_received(&mut self, data: &[u8]) {
///         self.transport.write(data);
///     }
/// }
/// ```
pub trait Protocol: Any {
    /// The connection is up; `transport` is how to talk back. Keep a clone of it (a
    /// [`Transport::default()`] placeholder is a fine initial value for the field).
    fn connection_made(&mut self, transport: &Transport) {
        let _ = transport;
    }

    /// Bytes arrived.
    fn data_received(&mut self, data: &[u8]);

    /// The connection is gone. `reason` is [`ConnectionDone`](crate::error::ConnectionDone)
    /// for a clean close, [`ConnectionLost`](crate::error::ConnectionLost) or
    /// [`ConnectionAborted`](crate::error::ConnectionAborted) otherwise, or the failure a
    /// panic in this protocol turned into.
    fn connection_lost(&mut self, reason: Failure) {
        let _ = reason;
    }

    /// Opt in to half-close (Twisted's `IHalfCloseableProtocol`): when this returns `true`,
    /// the peer shutting down its write side calls
    /// [`read_connection_lost`](Self::read_connection_lost) instead of closing the connection.
    fn half_close(&self) -> bool {
        false
    }

    /// The peer will send no more (only with [`half_close`](Self::half_close)).
    fn read_connection_lost(&mut self) {}

    /// Our write side was shut down by `lose_write_connection` and flushed (only with
    /// [`half_close`](Self::half_close)).
    fn write_connection_lost(&mut self) {}

    /// When this protocol registered itself as its transport's producer
    /// ([`Producer::Protocol`](crate::protocol::Producer::Protocol)): stop writing for now.
    fn pause_producing(&mut self) {}

    /// As producer: write more (streaming: the buffer drained; pull: produce one chunk).
    fn resume_producing(&mut self) {}

    /// As producer: stop for good (the connection is going away).
    fn stop_producing(&mut self) {}

    /// For wrappers (policies, framing adapters): the protocol inside, so that
    /// connection-scoped calls addressed to the inner type still reach it.
    fn wrapped_protocol(&mut self) -> Option<&mut dyn Protocol> {
        None
    }
}

/// Finds the protocol of type `P` in `proto` or in the protocols it wraps.
pub fn find_protocol<P: Protocol>(proto: &mut dyn Protocol) -> Option<&mut P> {
    let mut cur = proto;
    loop {
        if (cur as &dyn Any).is::<P>() {
            return (cur as &mut dyn Any).downcast_mut::<P>();
        }
        cur = cur.wrapped_protocol()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct Inner(u32);
    impl Protocol for Inner {
        fn data_received(&mut self, _data: &[u8]) {}
    }
    struct Outer(Inner);
    impl Protocol for Outer {
        fn data_received(&mut self, _data: &[u8]) {}
        fn wrapped_protocol(&mut self) -> Option<&mut dyn Protocol> {
            Some(&mut self.0)
        }
    }

    #[test]
    fn find_protocol_looks_through_wrappers() {
        let mut p: Box<dyn Protocol> = Box::new(Outer(Inner(7)));
        assert_eq!(find_protocol::<Inner>(&mut *p).map(|i| i.0), Some(7));
        assert!(find_protocol::<Outer>(&mut *p).is_some());
        let mut q: Box<dyn Protocol> = Box::new(Inner(1));
        assert!(find_protocol::<Outer>(&mut *q).is_none());
    }
}
