//! An in-memory connection between two protocols, pumped by hand (Twisted's
//! `twisted.test.iosim`: `connect` and `IOPump`).
//!
//! Both ends are real [`Connection`]s, so everything the reactors share — write buffering,
//! close after flush, abort, half-close, producers and their water marks, read pausing,
//! connection-scoped calls and panic isolation — behaves here as it does on a reactor. Bytes
//! move only when the test pumps; time moves only when the test advances the [`Clock`].
//! Unlike Twisted's iosim, held-back reads apply real backpressure: a paused reader's data
//! stays in the writer's buffer.

use std::cell::{Cell, RefCell};
use std::rc::Rc;
use std::time::Duration;

use crate::defer::Failure;
use crate::error::{ConnectionDone, ConnectionLost};
use crate::protocol::{find_protocol, Address, CloseAction, Connection, EofAction, Protocol};
use crate::testing::Clock;

/// The default addresses of the two ends.
pub const SERVER_ADDRESS: &str = "10.0.0.1:8000";
/// The client end's default address.
pub const CLIENT_ADDRESS: &str = "10.0.0.2:40000";

#[derive(Default)]
struct End {
    /// The peer's FIN has been delivered to us.
    eof_seen: Cell<bool>,
    /// The maximum bytes moved per pump step (0: unlimited).
    chunk: Cell<usize>,
}

/// Two protocols connected in memory. Build with [`connect`].
///
/// ```
/// use torsion::protocol::{Protocol, Transport};
/// use torsion::testing::{connect, Clock};
///
/// #[derive(Default)]
/// struct Echo { t: Transport }
/// impl Protocol for Echo {
///     fn connection_made(&mut self, t: &Transport) { self.t = t.clone(); }
///     fn data_received(&mut self, d: &[u8]) { self.t.write(d); }
/// }
/// #[derive(Default)]
/// struct Client { t: Transport, got: Vec<u8> }
/// impl Protocol for Client {
///     fn connection_made(&mut self, t: &Transport) { t.write(b"ping"); self.t = t.clone(); }
///     fn data_received(&mut self, d: &[u8]) { self.got.extend_from_slice(d); }
/// }
///
/// let pump = connect(&Clock::new(), Box::new(Echo::default()), Box::new(Client::default()));
/// pump.flush();
/// assert_eq!(pump.with_client(|c: &mut Client| c.got.clone()).unwrap(), b"ping");
/// ```
pub struct IOPump {
    clock: Clock,
    server: Rc<Connection>,
    client: Rc<Connection>,
    ends: [End; 2],
    log: RefCell<Vec<String>>,
}

/// Connects `server` and `client` in memory and calls both `connection_made`s (server
/// first). Nothing moves until [`IOPump::pump`] or [`IOPump::flush`].
pub fn connect(clock: &Clock, server: Box<dyn Protocol>, client: Box<dyn Protocol>) -> IOPump {
    let (s_addr, c_addr) = match (SERVER_ADDRESS.parse(), CLIENT_ADDRESS.parse()) {
        (Ok(s), Ok(c)) => (Address::tcp(s), Address::tcp(c)),
        // Both are literal, valid socket addresses.
        _ => unreachable!("constant addresses parse"),
    };
    let time: Rc<dyn crate::reactor::ReactorTime> = Rc::new(clock.clone());
    let wake: Rc<dyn Fn()> = Rc::new(|| {});
    let server = Connection::new(time.clone(), wake.clone(), s_addr, c_addr, server);
    let client = Connection::new(time, wake, c_addr, s_addr, client);
    // The connecting end, as on a reactor: no read backpressure (see `Connection`).
    client.set_read_backpressure(false);
    server.make_connection();
    client.make_connection();
    IOPump {
        clock: clock.clone(),
        server,
        client,
        ends: [End::default(), End::default()],
        log: RefCell::new(Vec::new()),
    }
}

impl IOPump {
    /// The server end.
    pub fn server(&self) -> &Rc<Connection> {
        &self.server
    }

    /// The client end.
    pub fn client(&self) -> &Rc<Connection> {
        &self.client
    }

    /// The clock both ends schedule on.
    pub fn clock(&self) -> &Clock {
        &self.clock
    }

    /// Runs `f` with the server protocol as a `P` (or a `P` it wraps).
    pub fn with_server<P: Protocol, R>(&self, f: impl FnOnce(&mut P) -> R) -> Option<R> {
        self.server
            .with_protocol(|p| find_protocol::<P>(p).map(f))
            .flatten()
    }

    /// Runs `f` with the client protocol as a `P` (or a `P` it wraps).
    pub fn with_client<P: Protocol, R>(&self, f: impl FnOnce(&mut P) -> R) -> Option<R> {
        self.client
            .with_protocol(|p| find_protocol::<P>(p).map(f))
            .flatten()
    }

    /// Limits each direction to `bytes` per pump step (0: no limit), to exercise parsers
    /// with fragmented reads.
    pub fn set_chunk_size(&self, bytes: usize) {
        for end in &self.ends {
            end.chunk.set(bytes);
        }
    }

    /// A readable record of what moved: `"server -> client 4 bytes"`, closes, resets.
    pub fn log(&self) -> Vec<String> {
        self.log.borrow().clone()
    }

    /// One step: runs due calls, then moves pending bytes each way (up to the chunk size)
    /// and carries out closes. Returns whether anything happened.
    pub fn pump(&self) -> bool {
        self.clock.run_due();
        let a = self.step(&self.server, &self.client, 0, "server", "client");
        let b = self.step(&self.client, &self.server, 1, "client", "server");
        a || b
    }

    /// Pumps until nothing moves (at most 100,000 steps, so a protocol that writes forever
    /// cannot hang a test).
    pub fn flush(&self) {
        for _ in 0..100_000 {
            if !self.pump() {
                return;
            }
        }
    }

    /// Advances the clock by `amount`, pumping after it.
    pub fn advance(&self, amount: Duration) {
        self.clock.advance(amount);
        self.flush();
    }

    fn note(&self, line: String) {
        self.log.borrow_mut().push(line);
    }

    fn step(&self, from: &Rc<Connection>, to: &Rc<Connection>, i: usize, f: &str, t: &str) -> bool {
        if from.is_closed() {
            return false;
        }
        let mut moved = false;
        if !to.is_closed() && !to.reading_paused() {
            let limit = match self.ends[i].chunk.get() {
                0 => usize::MAX,
                n => n,
            };
            let data = from.peek_output(|a, b| {
                let mut v = Vec::with_capacity((a.len() + b.len()).min(limit));
                v.extend(a.iter().chain(b).take(limit));
                v
            });
            if !data.is_empty() {
                from.consume_output(data.len());
                self.note(format!("{f} -> {t} {} bytes", data.len()));
                to.deliver(&data);
                moved = true;
            }
        } else if to.is_closed() && from.pending_output() > 0 {
            // The peer is gone: what we still had to send is lost with the connection.
            from.connection_lost(Failure::new(ConnectionLost::new("peer closed")));
            return true;
        }
        match from.close_action() {
            CloseAction::None => {}
            CloseAction::ShutdownWrite => {
                self.note(format!("{f} shut down writing"));
                if from.write_shutdown_done() == EofAction::Close {
                    from.connection_lost(Failure::new(ConnectionDone));
                }
                self.eof_to(to, 1 - i, t);
                moved = true;
            }
            CloseAction::Close => {
                self.note(format!("{f} closed"));
                from.connection_lost(Failure::new(ConnectionDone));
                self.eof_to(to, 1 - i, t);
                moved = true;
            }
            CloseAction::Abort(reason) => {
                self.note(format!("{f} reset: {reason}"));
                from.connection_lost(reason);
                to.connection_lost(Failure::new(ConnectionLost::new(
                    "connection reset by peer",
                )));
                moved = true;
            }
        }
        moved
    }

    /// The peer's FIN reaches `to`, once its pending input is delivered (it is: bytes move
    /// before closes in each step).
    fn eof_to(&self, to: &Rc<Connection>, j: usize, name: &str) {
        if to.is_closed() || self.ends[j].eof_seen.replace(true) {
            return;
        }
        if to.read_eof() == EofAction::Close {
            self.note(format!("{name} closed after peer's close"));
            to.connection_lost(Failure::new(ConnectionDone));
        }
    }
}
