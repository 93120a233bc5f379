//! Echo (RFC 862): the server writes back whatever it reads; the client sends messages and
//! verifies every byte comes back, in order.
//!
//! Twisted's version:
//!
//! ```python
//! class Echo(Protocol):
//!     def dataReceived(self, data):
//!         self.transport.write(data)
//! ```

use std::rc::Rc;

use torsion::defer::{Deferred, Failure};
use torsion::error::ConnectionDone;
use torsion::protocol::{Address, ClientFactory, Connector, Factory, Protocol, Transport};

/// The echo server protocol: the engine's own ([`torsion::protocols::wire::Echo`]).
pub use torsion::protocols::wire::Echo;

/// What the verifying client reports when it is done.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EchoReport {
    /// Messages sent and echoed back intact.
    pub messages: usize,
    /// Bytes echoed back.
    pub bytes: usize,
}

/// A client that sends `messages` one at a time (each after the previous came back whole)
/// and fires `done` with a report, or fails it if the echo is wrong or the connection drops.
/// An empty message counts as echoed as soon as its turn comes.
pub struct EchoClient {
    transport: Transport,
    messages: Vec<Vec<u8>>,
    next: usize,
    pending: Vec<u8>,
    bytes: usize,
    done: Deferred<EchoReport>,
}

/// The echo went wrong.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("echo mismatch in message {index}: sent {sent:?}, got {got:?}")]
pub struct EchoMismatch {
    /// Which message.
    pub index: usize,
    /// What was sent (lossy UTF-8).
    pub sent: String,
    /// What came back (lossy UTF-8).
    pub got: String,
}

impl EchoClient {
    /// A client for `messages`, reporting through `done`.
    pub fn new(messages: Vec<Vec<u8>>, done: Deferred<EchoReport>) -> Self {
        EchoClient {
            transport: Transport::default(),
            messages,
            next: 0,
            pending: Vec::new(),
            bytes: 0,
            done,
        }
    }

    fn send_next(&mut self) {
        // An empty message is sent as nothing, so nothing comes back for it: it is echoed
        // intact at once (waiting for its echo would wait forever).
        while self.messages.get(self.next).is_some_and(Vec::is_empty) {
            self.next += 1;
        }
        match self.messages.get(self.next) {
            Some(m) => self.transport.write(m),
            None => {
                let _ = self.done.callback(EchoReport {
                    messages: self.messages.len(),
                    bytes: self.bytes,
                });
                self.transport.lose_connection();
            }
        }
    }
}

impl Protocol for EchoClient {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = transport.clone();
        self.send_next();
    }

    fn data_received(&mut self, data: &[u8]) {
        self.pending.extend_from_slice(data);
        self.bytes += data.len();
        let Some(want) = self.messages.get(self.next) else {
            return;
        };
        if self.pending.len() < want.len() {
            if !want.starts_with(&self.pending) {
                self.fail_mismatch();
            }
            return;
        }
        if self.pending != *want {
            self.fail_mismatch();
            return;
        }
        self.pending.clear();
        self.next += 1;
        self.send_next();
    }

    fn connection_lost(&mut self, reason: Failure) {
        if !self.done.called() {
            let reason = if reason.is::<ConnectionDone>() {
                Failure::msg("the server closed before every message came back")
            } else {
                reason
            };
            let _ = self.done.errback(reason);
        }
    }
}

impl EchoClient {
    fn fail_mismatch(&mut self) {
        let sent = self.messages.get(self.next).cloned().unwrap_or_default();
        let _ = self.done.errback(EchoMismatch {
            index: self.next,
            sent: String::from_utf8_lossy(&sent).into_owned(),
            got: String::from_utf8_lossy(&self.pending).into_owned(),
        });
        self.transport.abort_connection();
    }
}

/// A client factory for one [`EchoClient`]; `done` fires with its report, or fails if the
/// connection cannot be made.
pub struct EchoClientFactory {
    messages: Vec<Vec<u8>>,
    done: Deferred<EchoReport>,
}

impl EchoClientFactory {
    /// A factory that will send `messages`; returns it and the Deferred of the report.
    pub fn new(messages: Vec<Vec<u8>>) -> (Rc<Self>, Deferred<EchoReport>) {
        let done = Deferred::new();
        (
            Rc::new(EchoClientFactory {
                messages,
                done: done.clone(),
            }),
            done,
        )
    }
}

impl Factory for EchoClientFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(EchoClient::new(
            self.messages.clone(),
            self.done.clone(),
        )))
    }
}

impl ClientFactory for EchoClientFactory {
    fn client_connection_failed(&self, _connector: &Connector, reason: Failure) {
        if !self.done.called() {
            let _ = self.done.errback(reason);
        }
    }
}

#[cfg(test)]
mod tests {
    use torsion::testing::{connect, Clock};

    use super::*;

    #[test]
    fn echoes_every_message_in_any_chunking() {
        for chunk in [0, 1, 3, 7] {
            let done = Deferred::new();
            let msgs = vec![b"hello".to_vec(), b"a".to_vec(), vec![b'z'; 300]];
            let pump = connect(
                &Clock::new(),
                Box::new(Echo::default()),
                Box::new(EchoClient::new(msgs, done.clone())),
            );
            pump.set_chunk_size(chunk);
            pump.flush();
            assert_eq!(
                done.result().unwrap().unwrap(),
                EchoReport {
                    messages: 3,
                    bytes: 306
                }
            );
        }
    }

    /// Empty messages (`echo_client ADDR a "" b`) count as echoed; the client still finishes.
    #[test]
    fn empty_messages_are_echoed_at_once() {
        for msgs in [
            vec![b"a".to_vec(), vec![], b"b".to_vec()],
            vec![vec![], vec![]],
            vec![b"a".to_vec(), vec![]],
        ] {
            let done = Deferred::new();
            let n = msgs.len();
            let bytes = msgs.iter().map(Vec::len).sum();
            let pump = connect(
                &Clock::new(),
                Box::new(Echo::default()),
                Box::new(EchoClient::new(msgs, done.clone())),
            );
            pump.flush();
            assert_eq!(
                done.result().expect("finished").unwrap(),
                EchoReport { messages: n, bytes }
            );
        }
    }

    /// A broken echo server that drops the first byte it ever sees.
    #[derive(Default)]
    struct Lossy {
        t: Transport,
        first: bool,
    }
    impl Protocol for Lossy {
        fn connection_made(&mut self, t: &Transport) {
            self.t = t.clone();
        }
        fn data_received(&mut self, d: &[u8]) {
            let d = if self.first { d } else { &d[1..] };
            self.first = true;
            self.t.write(d);
        }
    }

    #[test]
    fn client_detects_a_wrong_echo() {
        let done = Deferred::new();
        let pump = connect(
            &Clock::new(),
            Box::new(Lossy::default()),
            Box::new(EchoClient::new(vec![b"abc".to_vec()], done.clone())),
        );
        pump.flush();
        let f = done.result().unwrap().unwrap_err();
        assert_eq!(f.downcast_ref::<EchoMismatch>().unwrap().got, "bc");
    }
}
