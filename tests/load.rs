//! Load tests on loopback against MioReactor, each bounded and self-stopping: many
//! concurrent connections, a peer that never reads, a crowd that resets mid-stream, and a
//! client that streams as fast as it can while others are served and the server is stopped.
//!
//! Time limits here are functional bounds (minutes apart from what a working server takes):
//! the latency figures themselves are lines of `cargo bench --bench echo`.
#![allow(clippy::disallowed_methods)] // real threads and the wall clock, outside the engine

use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
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
    exited: mpsc::Receiver<()>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl Server {
    fn start(setup: impl FnOnce(&MioReactor) -> u16 + Send + 'static) -> Server {
        let (tx, rx) = mpsc::channel();
        let (exit_tx, exited) = mpsc::channel();
        let thread = std::thread::spawn(move || {
            let reactor = MioReactor::new().unwrap();
            let port = setup(&reactor);
            tx.send((port, reactor.thread_caller())).unwrap();
            let _ = reactor.run();
            let _ = exit_tx.send(());
        });
        let (port, caller) = rx.recv().unwrap();
        Server {
            port,
            caller,
            exited,
            thread: Some(thread),
        }
    }

    /// An echo server (`remember`ed, so `ask` works).
    fn echo() -> Server {
        Server::start(|r| {
            remember(r);
            r.listen_tcp_with(0, ForProtocol::<Echo>::new(), 1024, "127.0.0.1")
                .unwrap()
                .get_host()
                .addr
                .port()
        })
    }

    /// Asks the reactor to stop (from this thread, as a signal handler's wake-up does) and
    /// returns whether `run()` returned within `limit`.
    fn stop_within(&self, limit: Duration) -> bool {
        self.caller.call(|| {
            REACTOR.with(|r| {
                if let Some(r) = r.borrow().as_ref() {
                    let _ = r.stop();
                }
            })
        });
        self.exited.recv_timeout(limit).is_ok()
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

/// A client that writes 64 KiB chunks as fast as the server takes them and reads back (and
/// drops) whatever it gets, on two threads, until dropped.
struct Flood {
    stop: Arc<AtomicBool>,
    threads: Vec<std::thread::JoinHandle<()>>,
}

impl Flood {
    fn start(port: u16) -> Flood {
        let stream = TcpStream::connect(("127.0.0.1", port)).unwrap();
        // Short timeouts so that both threads notice the stop flag.
        stream
            .set_write_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        stream
            .set_read_timeout(Some(Duration::from_millis(100)))
            .unwrap();
        let (mut w, mut r) = (stream.try_clone().unwrap(), stream);
        let stop = Arc::new(AtomicBool::new(false));
        let transient = |e: &io::Error| {
            matches!(
                e.kind(),
                io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut | io::ErrorKind::Interrupted
            )
        };
        let st = stop.clone();
        let writer = std::thread::spawn(move || {
            let chunk = vec![b'f'; 64 * 1024];
            while !st.load(Ordering::Relaxed) {
                if let Err(e) = w.write(&chunk) {
                    if !transient(&e) {
                        return;
                    }
                }
            }
        });
        let st = stop.clone();
        let reader = std::thread::spawn(move || {
            let mut buf = vec![0u8; 64 * 1024];
            while !st.load(Ordering::Relaxed) {
                match r.read(&mut buf) {
                    Ok(0) => return,
                    Ok(_) => {}
                    Err(e) if transient(&e) => {}
                    Err(_) => return,
                }
            }
        });
        Flood {
            stop,
            threads: vec![writer, reader],
        }
    }
}

impl Drop for Flood {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        for t in self.threads.drain(..) {
            let _ = t.join();
        }
    }
}

/// Sends `count` 64-byte pings on a fresh connection, each after the previous came back;
/// fails if one is not answered within `limit`.
fn ping(port: u16, count: usize, limit: Duration) {
    let mut s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_nodelay(true).unwrap();
    s.set_read_timeout(Some(limit)).unwrap();
    for i in 0..count {
        let msg = [b'a' + (i % 26) as u8; 64];
        s.write_all(&msg).unwrap();
        let mut back = [0u8; 64];
        if let Err(e) = s.read_exact(&mut back) {
            panic!("ping {i} of {count} not answered within {limit:?} during the flood: {e}");
        }
        assert_eq!(back, msg);
    }
}

/// Generous bounds: a working server answers in milliseconds (see `flood_ping_p99_ms`), one
/// that reads the flood in a single loop turn never does while the flood lasts.
const ANSWER_LIMIT: Duration = Duration::from_secs(10);

#[test]
fn a_flooding_client_does_not_starve_other_connections_or_stop() {
    let server = Server::echo();
    let flood = Flood::start(server.port);
    std::thread::sleep(Duration::from_millis(200)); // the flood is under way
    ping(server.port, 100, ANSWER_LIMIT);
    // A new connection is accepted and served too, and the reactor answers calls from
    // other threads.
    ping(server.port, 10, ANSWER_LIMIT);
    assert!(server.connections() >= 1);
    assert!(
        server.stop_within(ANSWER_LIMIT),
        "stop() from another thread ends run() while the flood goes on"
    );
    drop(flood);
}

#[test]
fn a_client_that_sends_100_mb_and_never_reads_cannot_grow_the_echo_server() {
    const OFFERED: usize = 100 * 1024 * 1024;
    let server = Server::echo();
    let mut client = TcpStream::connect(("127.0.0.1", server.port)).unwrap();
    // A write that blocks this long means the server stopped reading.
    client
        .set_write_timeout(Some(Duration::from_secs(2)))
        .unwrap();
    let chunk = vec![b'm'; 64 * 1024];
    let mut sent = 0;
    while sent < OFFERED {
        match client.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    let mut peak = 0;
    for _ in 0..10 {
        peak = peak.max(server.ask(|r| r.buffered_bytes()));
        std::thread::sleep(Duration::from_millis(20));
    }
    // The echo server reads until its output passes the high-water mark, then only once it
    // drains: at most one 64 KiB read lands on top of the mark. The rest stays in the
    // kernel's buffers and pushes back on the client.
    assert!(
        peak <= HIGH_WATER_MARK + 64 * 1024,
        "the echo server buffered {peak} bytes for a client that never reads"
    );
    assert!(
        sent < OFFERED,
        "the server read everything ({sent} bytes) although the client never reads"
    );
    drop(client);
    wait_until("closed", || server.connections() == 0);
}

/// Set in the environment of the child process that `sigint_stops_a_flooded_server` runs.
const CHILD: &str = "TORSION_LOAD_SIGINT_CHILD";

/// Not a test of its own: the server process of `sigint_stops_a_flooded_server`, which runs
/// this test binary again with only this (ignored) test and [`CHILD`] set. It serves echo
/// with `MioReactor::run`, as `examples/echo_server` does, until SIGINT.
#[test]
#[ignore = "the child process of sigint_stops_a_flooded_server"]
fn sigint_child_server() {
    if std::env::var_os(CHILD).is_none() {
        return;
    }
    let reactor = MioReactor::new().unwrap();
    let port = reactor
        .listen_tcp_with(0, ForProtocol::<Echo>::new(), 1024, "127.0.0.1")
        .unwrap()
        .get_host()
        .addr
        .port();
    println!("listening on {port}");
    io::stdout().flush().unwrap();
    reactor.run().unwrap();
    println!("stopped");
}

/// The child server process, killed if the test ends without it having exited.
struct Child(std::process::Child);

impl Drop for Child {
    fn drop(&mut self) {
        if let Ok(None) = self.0.try_wait() {
            let _ = self.0.kill();
            let _ = self.0.wait();
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

#[test]
fn sigint_stops_a_flooded_server() {
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "sigint_child_server",
            "--exact",
            "--ignored",
            "--nocapture",
            "--test-threads=1",
        ])
        .env(CHILD, "1")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let mut child = Child(child);
    let (tx, rx) = mpsc::channel();
    let out = child.0.stdout.take().unwrap();
    std::thread::spawn(move || {
        use std::io::BufRead;
        for line in io::BufReader::new(out).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let port: u16 = loop {
        let line = rx
            .recv_timeout(Duration::from_secs(30))
            .expect("the child server starts");
        // libtest writes "test sigint_child_server ... " on the same line first.
        if let Some((_, p)) = line.split_once("listening on ") {
            break p.trim().parse().unwrap();
        }
    };
    let flood = Flood::start(port);
    std::thread::sleep(Duration::from_millis(200));
    ping(port, 10, ANSWER_LIMIT);
    let pid = libc::pid_t::try_from(child.0.id()).unwrap();
    // SAFETY: kill(2) with a valid signal number has no memory-safety preconditions.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let deadline = Instant::now() + ANSWER_LIMIT;
    let status = loop {
        if let Some(status) = child.0.try_wait().unwrap() {
            break Some(status);
        }
        if Instant::now() >= deadline {
            break None;
        }
        std::thread::sleep(Duration::from_millis(10));
    };
    drop(flood);
    let status = status.expect("SIGINT stops the server while the flood goes on");
    assert!(status.success(), "the server exits cleanly: {status}");
    let mut said = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(5)) {
        said.push(line);
    }
    assert!(said.iter().any(|l| l.trim() == "stopped"), "{said:?}");
}
