//! Load tests on loopback against MioReactor, each bounded and self-stopping: many
//! concurrent connections, a peer that never reads, and a crowd that resets mid-stream.
#![allow(clippy::disallowed_methods)] // real threads and the wall clock, outside the engine

use std::io::{Read, Write};
use std::net::TcpStream;
use std::sync::mpsc;
use std::time::{Duration, Instant};

use torsion::mio::MioReactor;
use torsion::prelude::*;
use torsion::protocol::{factory_fn, ForProtocol, Producer, Protocol, Transport, HIGH_WATER_MARK};
use torsion::protocols::wire::Echo;
use torsion::reactor::ThreadCaller;

/// A reactor on its own thread, serving what `setup` listens; stops when dropped.
struct Server {
    port: u16,
    caller: ThreadCaller,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(setup: impl FnOnce(&MioReactor) -> u16 + Send + 'static) -> Server {
        let (tx, rx) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let reactor = MioReactor::new().unwrap();
            let port = setup(&reactor);
            tx.send((port, reactor.thread_caller())).unwrap();
            let _ = reactor.run();
        });
        let (port, caller) = rx.recv().unwrap();
        Server {
            port,
            caller,
            thread: Some(thread),
        }
    }

    /// Runs `f` on the reactor thread and returns its answer.
    fn ask<T: Send + 'static>(&self, f: impl FnOnce(&MioReactor) -> T + Send + 'static) -> T {
        let (tx, rx) = mpsc::channel();
        let f = Box::new(f);
        self.caller.call(move || {
            REACTOR.with(|r| {
                let r = r.borrow();
                let _ = tx.send(f(r.as_ref().expect("the reactor thread")));
            })
        });
        rx.recv_timeout(Duration::from_secs(30))
            .expect("the reactor answers")
    }

    fn connections(&self) -> usize {
        self.ask(|r| r.connection_count())
    }
}

thread_local! {
    static REACTOR: std::cell::RefCell<Option<MioReactor>> = const { std::cell::RefCell::new(None) };
}

fn remember(r: &MioReactor) {
    REACTOR.with(|slot| *slot.borrow_mut() = Some(r.clone()));
}

impl Drop for Server {
    fn drop(&mut self) {
        self.caller.call(|| {
            REACTOR.with(|r| {
                if let Some(r) = r.borrow().as_ref() {
                    let _ = r.stop();
                }
            })
        });
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(30);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting: {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn five_thousand_concurrent_echo_connections_are_all_served() {
    const N: usize = 5_000;
    let server = Server::start(|r| {
        remember(r);
        r.listen_tcp_with(0, ForProtocol::<Echo>::new(), 4096, "127.0.0.1")
            .unwrap()
            .get_host()
            .addr
            .port()
    });
    let mut clients: Vec<TcpStream> = (0..N)
        .map(|_| {
            let s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
            s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
            s
        })
        .collect();
    wait_until("every connection accepted", || server.connections() == N);
    for (i, c) in clients.iter_mut().enumerate() {
        c.write_all(format!("client {i:05}\n").as_bytes()).unwrap();
    }
    for (i, c) in clients.iter_mut().enumerate() {
        let mut back = [0u8; 13];
        c.read_exact(&mut back).unwrap();
        assert_eq!(&back, format!("client {i:05}\n").as_bytes());
    }
    drop(clients);
    wait_until("every connection closed", || server.connections() == 0);
}

/// Writes 16 KiB chunks as fast as its transport lets it (a streaming producer). The
/// transport's pause arrives on the next loop turn (no re-entry), so within one turn the
/// producer also stops once the transport reports the high-water mark reached.
struct Firehose {
    transport: Transport,
    paused: bool,
}

impl Firehose {
    fn pump(&mut self) {
        // Bounded per turn so a never-pausing transport could not spin forever.
        for _ in 0..64 {
            if self.paused || !self.transport.connected() {
                return;
            }
            if self.transport.buffered() >= HIGH_WATER_MARK {
                break; // the pause is on its way
            }
            self.transport.write(vec![b'z'; 16 * 1024]);
        }
        self.transport
            .call_later(Duration::from_millis(1), |me: &mut Firehose| me.pump());
    }
}

impl Protocol for Firehose {
    fn connection_made(&mut self, t: &Transport) {
        self.transport = t.clone();
        t.register_producer(Producer::Protocol { streaming: true })
            .unwrap();
        self.pump();
    }
    fn data_received(&mut self, _data: &[u8]) {}
    fn pause_producing(&mut self) {
        self.paused = true;
    }
    fn resume_producing(&mut self) {
        self.paused = false;
        self.pump();
    }
}

#[test]
fn a_peer_that_never_reads_cannot_grow_the_server_buffer() {
    let server = Server::start(|r| {
        remember(r);
        let f = factory_fn(|_| {
            Some(Box::new(Firehose {
                transport: Transport::default(),
                paused: false,
            }) as Box<dyn Protocol>)
        });
        r.listen_tcp(0, f).unwrap().get_host().addr.port()
    });
    let client = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    wait_until("connected", || server.connections() == 1);
    // Sample the server's buffered output for two seconds while the client never reads.
    let mut peak = 0;
    let until = Instant::now() + Duration::from_secs(2);
    while Instant::now() < until {
        peak = peak.max(server.ask(|r| r.buffered_bytes()));
        std::thread::sleep(Duration::from_millis(10));
    }
    // The producer pauses once the buffer passes the high-water mark: at most one more
    // chunk can land on top of it.
    assert!(peak > 0, "the server did buffer");
    assert!(
        peak <= HIGH_WATER_MARK + 16 * 1024,
        "buffered {peak} bytes with a 64 KiB high-water mark"
    );
    drop(client);
    wait_until("closed", || server.connections() == 0);
}

#[test]
fn a_thousand_clients_resetting_mid_stream_leave_nothing_behind() {
    let server = Server::start(|r| {
        remember(r);
        r.listen_tcp_with(0, ForProtocol::<Echo>::new(), 1024, "127.0.0.1")
            .unwrap()
            .get_host()
            .addr
            .port()
    });
    let mut peak = 0;
    for batch in 0..10 {
        let clients: Vec<TcpStream> = (0..100)
            .map(|i| {
                let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
                s.write_all(&vec![b'a' + (i % 26) as u8; 1000 * (batch + 1)])
                    .unwrap();
                s
            })
            .collect();
        peak = peak.max(server.connections());
        for s in clients {
            // SO_LINGER 0: close sends RST, with echoed data unread.
            socket2::SockRef::from(&s)
                .set_linger(Some(Duration::ZERO))
                .unwrap();
            drop(s);
        }
    }
    assert!(peak > 0);
    wait_until("every reset connection is gone", || {
        server.connections() == 0
    });
}

/// Counts the server's live protocols, across threads.
static LIVE: std::sync::atomic::AtomicI64 = std::sync::atomic::AtomicI64::new(0);

/// Echo, closing on `q`, whose instances are counted in [`LIVE`].
struct CountedEcho {
    t: Transport,
}
impl Drop for CountedEcho {
    fn drop(&mut self) {
        LIVE.fetch_sub(1, std::sync::atomic::Ordering::SeqCst);
    }
}
impl Protocol for CountedEcho {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
    }
    fn data_received(&mut self, data: &[u8]) {
        if data.contains(&b'q') {
            self.t.lose_connection();
        } else {
            self.t.write(data);
        }
    }
}

#[test]
fn five_thousand_connect_close_cycles_leave_no_protocol_alive() {
    use std::sync::atomic::Ordering;
    const N: usize = 5_000;
    let server = Server::start(|r| {
        remember(r);
        let factory = factory_fn(|_| {
            LIVE.fetch_add(1, Ordering::SeqCst);
            Some(Box::new(CountedEcho {
                t: Transport::default(),
            }) as Box<dyn Protocol>)
        });
        r.listen_tcp_with(0, factory, 1024, "127.0.0.1")
            .unwrap()
            .get_host()
            .addr
            .port()
    });
    let mut byte = [0u8; 1];
    for i in 0..N {
        let mut s = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
        match i % 3 {
            // The client closes cleanly.
            0 => {
                s.write_all(b"x").unwrap();
                s.read_exact(&mut byte).unwrap();
            }
            // The client resets.
            1 => {
                s.write_all(b"x").unwrap();
                s.read_exact(&mut byte).unwrap();
                socket2::SockRef::from(&s)
                    .set_linger(Some(Duration::ZERO))
                    .unwrap();
            }
            // The server closes.
            _ => {
                s.write_all(b"q").unwrap();
                assert_eq!(s.read(&mut byte).unwrap(), 0, "the server closed");
            }
        }
    }
    wait_until("every connection is gone", || server.connections() == 0);
    // The counter, not a timing, is the check: every protocol was dropped.
    wait_until("every protocol is dropped", || {
        LIVE.load(Ordering::SeqCst) == 0
    });
}
