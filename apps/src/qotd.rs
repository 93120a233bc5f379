//! Quote of the Day (RFC 865): on connect, the server writes a quote and closes.
//!
//! Twisted's version:
//!
//! ```python
//! class QOTD(Protocol):
//!     def connectionMade(self):
//!         self.transport.write(self.factory.quote + b"\r\n")
//!         self.transport.loseConnection()
//! ```

use std::rc::Rc;

use torsion::defer::{Deferred, Failure};
use torsion::error::ConnectionDone;
use torsion::protocol::{Address, ClientFactory, Connector, Factory, Protocol, Transport};

/// Quotes the server picks from, in turn.
pub const QUOTES: [&str; 3] = [
    "An idle mind is the devil's workshop.",
    "The reactor is the heart of Twisted.",
    "Simple is better than complex.",
];

/// The QOTD server protocol: writes its quote and closes.
pub struct Qotd {
    quote: String,
}

impl Protocol for Qotd {
    fn connection_made(&mut self, transport: &Transport) {
        transport.write(format!("{}\r\n", self.quote));
        transport.lose_connection();
    }

    fn data_received(&mut self, _data: &[u8]) {}
}

/// The QOTD factory: each connection gets the next quote.
#[derive(Default)]
pub struct QotdFactory {
    served: std::cell::Cell<usize>,
}

impl QotdFactory {
    /// A factory starting at the first quote.
    pub fn new() -> Rc<Self> {
        Rc::new(Self::default())
    }
}

impl Factory for QotdFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        let n = self.served.get();
        self.served.set(n + 1);
        Some(Box::new(Qotd {
            quote: QUOTES[n % QUOTES.len()].to_string(),
        }))
    }
}

/// A client that reads the whole quote and fires `done` with it when the server closes.
pub struct QotdClient {
    buf: Vec<u8>,
    done: Deferred<String>,
}

impl Protocol for QotdClient {
    fn data_received(&mut self, data: &[u8]) {
        self.buf.extend_from_slice(data);
    }

    fn connection_lost(&mut self, reason: Failure) {
        let result = if reason.is::<ConnectionDone>() {
            let text = String::from_utf8_lossy(&self.buf);
            Ok(text.trim_end_matches("\r\n").to_string())
        } else {
            Err(reason)
        };
        let _ = self.done.resolve(result);
    }
}

/// A client factory for one quote.
pub struct QotdClientFactory {
    done: Deferred<String>,
}

impl QotdClientFactory {
    /// The factory and the Deferred of the quote.
    pub fn new() -> (Rc<Self>, Deferred<String>) {
        let done = Deferred::new();
        (Rc::new(QotdClientFactory { done: done.clone() }), done)
    }
}

impl Factory for QotdClientFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(QotdClient {
            buf: Vec::new(),
            done: self.done.clone(),
        }))
    }
}

impl ClientFactory for QotdClientFactory {
    fn client_connection_failed(&self, _c: &Connector, reason: Failure) {
        let _ = self.done.errback(reason);
    }
}

#[cfg(test)]
mod tests {
    use torsion::testing::{connect, Clock};

    use super::*;

    #[test]
    fn quote_is_written_then_the_connection_closes() {
        let factory = QotdFactory::new();
        let addr = Address::tcp("10.0.0.2:1".parse().unwrap());
        for expected in [QUOTES[0], QUOTES[1]] {
            let done = Deferred::new();
            let pump = connect(
                &Clock::new(),
                factory.build_protocol(&addr).unwrap(),
                Box::new(QotdClient {
                    buf: Vec::new(),
                    done: done.clone(),
                }),
            );
            pump.set_chunk_size(4);
            pump.flush();
            assert_eq!(done.result().unwrap().unwrap(), expected);
        }
    }
}
