//! Twisted's poetry example (from Dave Peticolas' Twisted introduction): a server that
//! trickles a poem out and closes, and a client that fetches poems from several servers at
//! once and gets them all through one Deferred.
//!
//! ```python
//! def get_poetry(host, port):
//!     d = defer.Deferred()
//!     factory = PoetryClientFactory(d)
//!     reactor.connectTCP(host, port, factory)
//!     return d
//! ```

use std::rc::Rc;
use std::time::Duration;

use torsion::defer::{gather_results, Deferred, Failure};
use torsion::error::ConnectionDone;
use torsion::protocol::{Address, ClientFactory, Connector, Factory, Protocol, Transport};
use torsion::protocols::policies::{Timeout, TimeoutMixin};
use torsion::reactor::ReactorTcp;
use torsion::reactor::ReactorTcpExt;

/// A short poem to serve.
pub const POEM: &str = "The reactor turns, the callbacks chain,\n\
one thread, no locks, and no stack pain;\n\
a seed goes in, the same world out:\n\
replay the bug, and leave no doubt.\n";

/// Writes its poem `chunk` bytes at a time, one chunk every `delay`, then closes.
/// With a zero delay it is a fast server; with a long one, a slow server.
pub struct PoetryServer {
    poem: Rc<[u8]>,
    chunk: usize,
    delay: Duration,
    sent: usize,
    transport: Transport,
}

impl PoetryServer {
    fn send_next(&mut self) {
        let end = (self.sent + self.chunk.max(1)).min(self.poem.len());
        self.transport.write(&self.poem[self.sent..end]);
        self.sent = end;
        if self.sent == self.poem.len() {
            self.transport.lose_connection();
        } else {
            self.transport
                .call_later::<PoetryServer>(self.delay, PoetryServer::send_next);
        }
    }
}

impl Protocol for PoetryServer {
    fn connection_made(&mut self, transport: &Transport) {
        self.transport = transport.clone();
        self.send_next();
    }
    fn data_received(&mut self, _data: &[u8]) {}
}

/// Serves one poem to everyone who connects.
pub struct PoetryServerFactory {
    poem: Rc<[u8]>,
    chunk: usize,
    delay: Duration,
}

impl PoetryServerFactory {
    /// Serves `poem` in `chunk`-byte pieces, `delay` apart.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(poem: &str, chunk: usize, delay: Duration) -> Rc<Self> {
        Rc::new(PoetryServerFactory {
            poem: Rc::from(poem.as_bytes()),
            chunk,
            delay,
        })
    }
}

impl Factory for PoetryServerFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(PoetryServer {
            poem: self.poem.clone(),
            chunk: self.chunk,
            delay: self.delay,
            sent: 0,
            transport: Transport::default(),
        }))
    }
}

/// How long a [`PoetryClient`] waits for the next bytes before giving up.
pub const POETRY_IDLE_TIMEOUT: Duration = Duration::from_secs(10);

/// Collects a poem; fires `done` when the server closes cleanly, or fails it.
///
/// Twisted's original has no timeout. The simulator shows why it needs one: when the
/// server's host crashes, nothing tells a client that only reads (no RST comes back to a
/// peer that never sends), so the fetch would hang forever. An idle timeout
/// ([`TimeoutMixin`]) aborts it instead.
pub struct PoetryClient {
    poem: Vec<u8>,
    timeout: Timeout,
    done: Deferred<String>,
}

impl TimeoutMixin for PoetryClient {
    fn timeout_state(&mut self) -> &mut Timeout {
        &mut self.timeout
    }
    /// Aborts, so the poem so far is reported as a failure, not as the whole poem.
    fn timeout_connection(&mut self) {
        self.timeout.transport().abort_connection();
    }
}

impl Protocol for PoetryClient {
    fn connection_made(&mut self, transport: &Transport) {
        self.timeout.attach(transport);
        self.set_timeout(Some(POETRY_IDLE_TIMEOUT));
    }
    fn data_received(&mut self, data: &[u8]) {
        self.reset_timeout();
        self.poem.extend_from_slice(data);
    }
    fn connection_lost(&mut self, reason: Failure) {
        let poem = String::from_utf8_lossy(&std::mem::take(&mut self.poem)).into_owned();
        let _ = if reason.is::<ConnectionDone>() {
            self.done.callback(poem)
        } else {
            self.done.errback(reason)
        };
    }
}

/// The client factory: fails `done` if the connection cannot be made.
pub struct PoetryClientFactory {
    done: Deferred<String>,
}

impl Factory for PoetryClientFactory {
    fn build_protocol(&self, _addr: &Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(PoetryClient {
            poem: Vec::new(),
            timeout: Timeout::default(),
            done: self.done.clone(),
        }))
    }
}

impl ClientFactory for PoetryClientFactory {
    fn client_connection_failed(&self, _connector: &Connector, reason: Failure) {
        let _ = self.done.errback(reason);
    }
}

/// Fetches the poem served at `host:port`.
pub fn get_poetry(reactor: &dyn ReactorTcp, host: &str, port: u16) -> Deferred<String> {
    let done = Deferred::new();
    let factory = Rc::new(PoetryClientFactory { done: done.clone() });
    reactor.connect_tcp(host, port, factory);
    done
}

/// Fetches every poem at once; fires with them in the order given, or with the first
/// failure.
pub fn get_poems(reactor: &dyn ReactorTcp, servers: &[(&str, u16)]) -> Deferred<Vec<String>> {
    let ds = servers
        .iter()
        .map(|(host, port)| get_poetry(reactor, host, *port))
        .collect();
    gather_results(ds, true)
}

#[cfg(test)]
mod tests {
    use torsion::testing::{connect, Clock};

    use super::*;

    #[test]
    fn slow_server_trickles_the_whole_poem() {
        let clock = Clock::new();
        let f = PoetryServerFactory::new(POEM, 10, Duration::from_millis(100));
        let server = f
            .build_protocol(&"10.0.0.1:1".parse().map(Address::tcp).unwrap())
            .unwrap();
        let done = Deferred::new();
        let pump = connect(
            &clock,
            server,
            Box::new(PoetryClient {
                poem: vec![],
                timeout: Timeout::default(),
                done: done.clone(),
            }),
        );
        pump.flush();
        assert!(!done.called(), "still trickling");
        for _ in 0..POEM.len() / 10 + 1 {
            pump.advance(Duration::from_millis(100));
        }
        assert_eq!(done.take_result().unwrap().unwrap(), POEM);
    }
}
