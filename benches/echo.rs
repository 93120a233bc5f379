//! Echo server cost: MioReactor's Echo against a tokio `current_thread` echo server and a
//! raw mio echo loop written here, one after the other in the same process run.
//!
//! Each server runs on its own thread; a load generator (one mio thread) keeps 50 loopback
//! connections ping-ponging 64-byte messages: each connection sends a message, waits for all
//! 64 bytes to come back, and sends the next. After a warm-up, it counts round trips for a
//! fixed time, and the server thread reports the CPU time it used over exactly that window
//! (`CLOCK_THREAD_CPUTIME_ID`, through the `cpu-time` crate). The figures:
//!
//! - `<server>_rt_per_s`: round trips per second (all connections);
//! - `<server>_cpu_us_per_rt`: server CPU microseconds per round trip;
//! - `torsion_vs_rawmio`, `torsion_vs_tokio`: torsion's CPU per round trip over the other's
//!   (1.00 is equal; the target is at most 1.10 against raw mio, at most 1.00 against tokio).
//!
//! Then a leak check: `rss_growth_kib_per_100k_conns` is how much the process's resident set
//! (`VmRSS`, the torsion echo server's thread plus one client thread) grows over 100,000
//! connect / echo one byte / reset cycles against the torsion server, measured after a
//! warm-up of 5,000 cycles and once the server has seen every connection go (the target is
//! under 2,048 KiB). The client resets (`SO_LINGER` 0) so that 100,000 closes leave no
//! `TIME_WAIT` sockets to exhaust the ephemeral ports. `ECHO_BENCH_ONLY=churn` runs this alone.
#![allow(clippy::disallowed_methods, clippy::disallowed_types)]

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{mpsc, Arc};
use std::thread;
use std::time::{Duration, Instant};

use cpu_time::ThreadTime;
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};

const CONNECTIONS: usize = 50;
const MESSAGE: usize = 64;
const WARMUP: Duration = Duration::from_millis(500);
const MEASURE: Duration = Duration::from_secs(2);
/// Each server is measured this many times, in rotation; the medians are reported.
const ROUNDS: usize = 3;

/// What a server thread reports: CPU time between the two marks.
struct Marks {
    start: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    cpu_ns: Arc<AtomicU64>,
}

impl Marks {
    fn new() -> Marks {
        Marks {
            start: Arc::default(),
            stop: Arc::default(),
            cpu_ns: Arc::default(),
        }
    }
    /// The arcs a server thread builds its [`ServerMarks`] from (the CPU clock is per
    /// thread, so the marks are made on the server's own thread).
    fn arcs(&self) -> MarkArcs {
        (self.start.clone(), self.stop.clone(), self.cpu_ns.clone())
    }
}

type MarkArcs = (Arc<AtomicBool>, Arc<AtomicBool>, Arc<AtomicU64>);

impl ServerMarks {
    fn new((start, stop, cpu_ns): MarkArcs) -> ServerMarks {
        ServerMarks {
            start,
            stop,
            cpu_ns,
            started: None,
        }
    }
}

/// The server side of the marks: called each loop turn.
struct ServerMarks {
    start: Arc<AtomicBool>,
    stop: Arc<AtomicBool>,
    cpu_ns: Arc<AtomicU64>,
    started: Option<ThreadTime>,
}

impl ServerMarks {
    /// Returns whether the server should exit.
    fn tick(&mut self) -> bool {
        if self.started.is_none() && self.start.load(Ordering::Acquire) {
            self.started = Some(ThreadTime::now());
        }
        if self.stop.load(Ordering::Acquire) {
            if let Some(t) = self.started.take() {
                self.cpu_ns
                    .store(t.elapsed().as_nanos() as u64, Ordering::Release);
            }
            return true;
        }
        false
    }
}

/// Twisted's Echo, with TCP_NODELAY as the other two servers set it.
#[derive(Default)]
struct Echo {
    transport: torsion::protocol::Transport,
}

impl torsion::protocol::Protocol for Echo {
    fn connection_made(&mut self, t: &torsion::protocol::Transport) {
        t.set_tcp_nodelay(true);
        self.transport = t.clone();
    }
    fn data_received(&mut self, data: &[u8]) {
        self.transport.write(data);
    }
}

/// torsion: MioReactor serving Echo; the marks are checked after each loop turn.
fn torsion_server(tx: mpsc::Sender<SocketAddr>, mut marks: ServerMarks) {
    use torsion::mio::MioReactor;
    use torsion::prelude::*;
    use torsion::protocol::ForProtocol;

    let reactor = MioReactor::new().unwrap();
    let port = reactor
        .listen_tcp_with(0, ForProtocol::<Echo>::new(), 1024, "127.0.0.1")
        .unwrap();
    tx.send(port.get_host().addr).unwrap();
    reactor.start_running().unwrap();
    loop {
        reactor.iterate(Some(Duration::from_millis(5))).unwrap();
        if marks.tick() {
            return;
        }
    }
}

/// tokio: a current_thread runtime, one task per connection.
fn tokio_server(tx: mpsc::Sender<SocketAddr>, marks: ServerMarks) {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        tx.send(listener.local_addr().unwrap()).unwrap();
        let marks = std::rc::Rc::new(std::cell::RefCell::new(marks));
        let local = tokio::task::LocalSet::new();
        local
            .run_until(async move {
                tokio::task::spawn_local(async move {
                    loop {
                        let Ok((mut s, _)) = listener.accept().await else {
                            return;
                        };
                        let _ = s.set_nodelay(true);
                        tokio::task::spawn_local(async move {
                            let mut buf = vec![0u8; 64 * 1024];
                            loop {
                                let n = match s.read(&mut buf).await {
                                    Ok(0) | Err(_) => return,
                                    Ok(n) => n,
                                };
                                if s.write_all(&buf[..n]).await.is_err() {
                                    return;
                                }
                            }
                        });
                    }
                });
                loop {
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    if marks.borrow_mut().tick() {
                        return;
                    }
                }
            })
            .await;
    });
}

/// A hand-written mio echo loop: read into one buffer, write straight back, buffer only
/// what the socket would not take.
fn rawmio_server(tx: mpsc::Sender<SocketAddr>, mut marks: ServerMarks) {
    let mut poll = Poll::new().unwrap();
    let mut listener = TcpListener::bind("127.0.0.1:0".parse().unwrap()).unwrap();
    tx.send(listener.local_addr().unwrap()).unwrap();
    const LISTENER: Token = Token(usize::MAX);
    poll.registry()
        .register(&mut listener, LISTENER, Interest::READABLE)
        .unwrap();
    let mut conns: slab::Slab<(TcpStream, Vec<u8>)> = slab::Slab::new();
    let mut events = Events::with_capacity(1024);
    let mut buf = vec![0u8; 64 * 1024];
    loop {
        poll.poll(&mut events, Some(Duration::from_millis(5)))
            .unwrap();
        for ev in events.iter() {
            if ev.token() == LISTENER {
                while let Ok((mut s, _)) = listener.accept() {
                    let _ = s.set_nodelay(true);
                    let e = conns.vacant_entry();
                    poll.registry()
                        .register(
                            &mut s,
                            Token(e.key()),
                            Interest::READABLE | Interest::WRITABLE,
                        )
                        .unwrap();
                    e.insert((s, Vec::new()));
                }
                continue;
            }
            let key = ev.token().0;
            let mut close = false;
            if let Some((s, pending)) = conns.get_mut(key) {
                // Flush leftovers first.
                while !pending.is_empty() {
                    match s.write(pending) {
                        Ok(n) => {
                            pending.drain(..n);
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            close = true;
                            break;
                        }
                    }
                }
                loop {
                    match s.read(&mut buf) {
                        Ok(0) => {
                            close = true;
                            break;
                        }
                        Ok(n) => {
                            if !pending.is_empty() {
                                pending.extend_from_slice(&buf[..n]);
                                continue;
                            }
                            match s.write(&buf[..n]) {
                                Ok(w) if w == n => {}
                                Ok(w) => pending.extend_from_slice(&buf[w..n]),
                                Err(e) if e.kind() == io::ErrorKind::WouldBlock => {
                                    pending.extend_from_slice(&buf[..n]);
                                }
                                Err(_) => {
                                    close = true;
                                    break;
                                }
                            }
                        }
                        Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                        Err(_) => {
                            close = true;
                            break;
                        }
                    }
                }
            }
            if close && conns.contains(key) {
                let (mut s, _) = conns.remove(key);
                let _ = poll.registry().deregister(&mut s);
            }
        }
        if marks.tick() {
            return;
        }
    }
}

/// Drives `CONNECTIONS` ping-pong connections; returns round trips in the measured window.
fn load(addr: SocketAddr, marks: &Marks) -> u64 {
    let mut poll = Poll::new().unwrap();
    let mut events = Events::with_capacity(1024);
    let msg = [b'x'; MESSAGE];
    struct C {
        s: TcpStream,
        got: usize,
    }
    let mut conns: Vec<C> = (0..CONNECTIONS)
        .map(|i| {
            let std = std::net::TcpStream::connect(addr).unwrap();
            std.set_nodelay(true).unwrap();
            std.set_nonblocking(true).unwrap();
            let mut s = TcpStream::from_std(std);
            poll.registry()
                .register(&mut s, Token(i), Interest::READABLE)
                .unwrap();
            C { s, got: 0 }
        })
        .collect();
    for c in &mut conns {
        c.s.write_all(&msg).unwrap();
    }
    let mut buf = [0u8; 4096];
    let begin = Instant::now();
    let mut counted = 0u64;
    let mut measuring = false;
    loop {
        let elapsed = begin.elapsed();
        if !measuring && elapsed >= WARMUP {
            measuring = true;
            counted = 0;
            marks.start.store(true, Ordering::Release);
        }
        if elapsed >= WARMUP + MEASURE {
            marks.stop.store(true, Ordering::Release);
            return counted;
        }
        poll.poll(&mut events, Some(Duration::from_millis(10)))
            .unwrap();
        for ev in events.iter() {
            let c = &mut conns[ev.token().0];
            loop {
                match c.s.read(&mut buf) {
                    Ok(0) => panic!("the server closed"),
                    Ok(n) => {
                        c.got += n;
                        while c.got >= MESSAGE {
                            c.got -= MESSAGE;
                            counted += 1;
                            c.s.write_all(&msg).unwrap();
                        }
                    }
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("load generator: {e}"),
                }
            }
        }
    }
}

struct Figures {
    rt_per_s: f64,
    cpu_us_per_rt: f64,
}

fn measure(server: fn(mpsc::Sender<SocketAddr>, ServerMarks)) -> Figures {
    let marks = Marks::new();
    let (tx, rx) = mpsc::channel();
    let arcs = marks.arcs();
    let t = thread::spawn(move || server(tx, ServerMarks::new(arcs)));
    let addr = rx.recv().unwrap();
    let rts = load(addr, &marks);
    t.join().unwrap();
    let cpu_ns = marks.cpu_ns.load(Ordering::Acquire) as f64;
    Figures {
        rt_per_s: rts as f64 / MEASURE.as_secs_f64(),
        cpu_us_per_rt: cpu_ns / 1_000.0 / rts.max(1) as f64,
    }
}

fn median(mut runs: Vec<Figures>) -> Figures {
    runs.sort_by(|a, b| a.cpu_us_per_rt.total_cmp(&b.cpu_us_per_rt));
    runs.swap_remove(runs.len() / 2)
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse. The servers take turns, so slow
    // drifts of the machine (frequency, other load) spread over all three.
    let servers: [fn(mpsc::Sender<SocketAddr>, ServerMarks); 3] =
        [torsion_server, tokio_server, rawmio_server];
    // ECHO_BENCH_ONLY=torsion|tokio|rawmio measures one server (for profiling).
    let only = std::env::var("ECHO_BENCH_ONLY").ok();
    if only.as_deref() == Some("churn") {
        println!(
            "rss_growth_kib_per_100k_conns: {} KiB",
            rss_growth_kib_per_100k_conns()
        );
        return;
    }
    if let Some(name) = only {
        let i = ["torsion", "tokio", "rawmio"]
            .iter()
            .position(|n| *n == name)
            .expect("ECHO_BENCH_ONLY is torsion, tokio, rawmio or churn");
        let f = measure(servers[i]);
        println!("{name}_rt_per_s: {:.0}", f.rt_per_s);
        println!("{name}_cpu_us_per_rt: {:.3}", f.cpu_us_per_rt);
        return;
    }
    let mut runs: [Vec<Figures>; 3] = Default::default();
    for _ in 0..ROUNDS {
        for (i, server) in servers.iter().enumerate() {
            runs[i].push(measure(*server));
        }
    }
    let [torsion, tokio, rawmio] = runs.map(median);
    println!("rounds: {ROUNDS}");
    println!("connections: {CONNECTIONS}");
    println!("message_bytes: {MESSAGE}");
    println!("torsion_rt_per_s: {:.0}", torsion.rt_per_s);
    println!("tokio_rt_per_s: {:.0}", tokio.rt_per_s);
    println!("rawmio_rt_per_s: {:.0}", rawmio.rt_per_s);
    println!("torsion_cpu_us_per_rt: {:.3}", torsion.cpu_us_per_rt);
    println!("tokio_cpu_us_per_rt: {:.3}", tokio.cpu_us_per_rt);
    println!("rawmio_cpu_us_per_rt: {:.3}", rawmio.cpu_us_per_rt);
    println!(
        "torsion_vs_rawmio: {:.2}",
        torsion.cpu_us_per_rt / rawmio.cpu_us_per_rt
    );
    println!(
        "torsion_vs_tokio: {:.2}",
        torsion.cpu_us_per_rt / tokio.cpu_us_per_rt
    );
    println!(
        "rss_growth_kib_per_100k_conns: {} KiB",
        rss_growth_kib_per_100k_conns()
    );
}

/// Connect/close cycles measured by the leak check.
const CHURN_CYCLES: usize = 100_000;
/// Cycles run first, so that buffers, the slab and the allocator reach their steady size.
const CHURN_WARMUP: usize = 5_000;

/// This process's resident set, in KiB (`VmRSS` in `/proc/self/status`).
fn vm_rss_kib() -> i64 {
    let status = std::fs::read_to_string("/proc/self/status").unwrap();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status")
}

/// The torsion echo server for the leak check; publishes its open connection count.
fn churn_server(tx: mpsc::Sender<SocketAddr>, stop: Arc<AtomicBool>, open: Arc<AtomicUsize>) {
    use torsion::mio::MioReactor;
    use torsion::prelude::*;
    use torsion::protocol::ForProtocol;

    let reactor = MioReactor::new().unwrap();
    let port = reactor
        .listen_tcp_with(0, ForProtocol::<Echo>::new(), 1024, "127.0.0.1")
        .unwrap();
    tx.send(port.get_host().addr).unwrap();
    reactor.start_running().unwrap();
    while !stop.load(Ordering::Acquire) {
        reactor.iterate(Some(Duration::from_millis(5))).unwrap();
        open.store(reactor.connection_count(), Ordering::Release);
    }
}

/// `n` cycles of: connect, send one byte, read it back, reset.
fn churn(addr: SocketAddr, n: usize) {
    let mut byte = [0u8; 1];
    for _ in 0..n {
        let mut s = std::net::TcpStream::connect(addr).unwrap();
        s.set_nodelay(true).unwrap();
        s.write_all(b"x").unwrap();
        s.read_exact(&mut byte).unwrap();
        socket2::SockRef::from(&s)
            .set_linger(Some(Duration::ZERO))
            .unwrap();
    }
}

/// Waits until the server has no connection left (it has seen every reset).
fn wait_closed(open: &AtomicUsize) {
    let deadline = Instant::now() + Duration::from_secs(30);
    thread::sleep(Duration::from_millis(50));
    while open.load(Ordering::Acquire) != 0 {
        assert!(
            Instant::now() < deadline,
            "the server keeps connections open"
        );
        thread::sleep(Duration::from_millis(10));
    }
}

/// RSS growth over [`CHURN_CYCLES`] connections, after [`CHURN_WARMUP`].
fn rss_growth_kib_per_100k_conns() -> i64 {
    let (stop, open) = (
        Arc::new(AtomicBool::new(false)),
        Arc::new(AtomicUsize::new(0)),
    );
    let (tx, rx) = mpsc::channel();
    let (s, o) = (stop.clone(), open.clone());
    let server = thread::spawn(move || churn_server(tx, s, o));
    let addr = rx.recv().unwrap();
    churn(addr, CHURN_WARMUP);
    wait_closed(&open);
    let before = vm_rss_kib();
    churn(addr, CHURN_CYCLES);
    wait_closed(&open);
    let after = vm_rss_kib();
    stop.store(true, Ordering::Release);
    server.join().unwrap();
    (after - before) * 100_000 / CHURN_CYCLES as i64
}
