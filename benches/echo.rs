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
//!
//! Then the same Echo (on `MioReactor::run`, as `examples/echo_server` serves) under a fast
//! peer:
//!
//! - `flood_server_rss_mib`: how much the process's resident set grows while a client sends
//!   up to 100 MB and never reads (the target is under 10 MiB); `flood_client_sent_mib` is how
//!   much of it the server let in before it stopped reading;
//! - `flood_ping_p99_ms`: the 99th-percentile round trip of 64-byte pings on a second
//!   connection while another client streams 64 KiB writes as fast as it can and reads the
//!   echo back (the target is under 50 ms); `flood_echo_mib_per_s` is the echo throughput the
//!   flooding client got meanwhile; `quiet_ping_p99_ms` is the same pings before the flood
//!   starts (the machine's own noise);
//! - `flood_stop_ms`: how long `stop()` (from another thread, as a signal does) takes to end
//!   `run()` with the flood still going (the target is under 1 s).
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

/// How much data the never-reading client offers.
const FLOOD_BYTES: usize = 100 * 1024 * 1024;
/// Pings sent while the flood runs.
const PINGS: usize = 500;
/// A ping (or a stop) not answered in this long counts as this long, and ends the sampling.
const FLOOD_WAIT: Duration = Duration::from_secs(5);

thread_local! {
    static FLOOD_REACTOR: std::cell::RefCell<Option<torsion::mio::MioReactor>> =
        const { std::cell::RefCell::new(None) };
}

/// The echo server of the flood figures: `MioReactor::run` on its own thread.
struct FloodServer {
    addr: SocketAddr,
    caller: torsion::reactor::ThreadCaller,
    exited: mpsc::Receiver<()>,
    thread: Option<thread::JoinHandle<()>>,
}

impl FloodServer {
    fn start() -> FloodServer {
        use torsion::mio::MioReactor;
        use torsion::prelude::*;
        use torsion::protocol::ForProtocol;

        let (tx, rx) = mpsc::channel();
        let (exit_tx, exited) = mpsc::channel();
        let thread = thread::spawn(move || {
            let reactor = MioReactor::new().unwrap();
            let port = reactor
                .listen_tcp_with(0, ForProtocol::<Echo>::new(), 1024, "127.0.0.1")
                .unwrap();
            FLOOD_REACTOR.with(|r| *r.borrow_mut() = Some(reactor.clone()));
            tx.send((port.get_host().addr, reactor.thread_caller()))
                .unwrap();
            reactor.run().unwrap();
            let _ = exit_tx.send(());
        });
        let (addr, caller) = rx.recv().unwrap();
        FloodServer {
            addr,
            caller,
            exited,
            thread: Some(thread),
        }
    }

    /// Runs `f` with the reactor on its thread; `None` if it does not answer in time.
    fn ask<T: Send + 'static>(
        &self,
        f: impl FnOnce(&torsion::mio::MioReactor) -> T + Send + 'static,
    ) -> Option<T> {
        let (tx, rx) = mpsc::channel();
        self.caller.call(move || {
            FLOOD_REACTOR.with(|r| {
                if let Some(r) = r.borrow().as_ref() {
                    let _ = tx.send(f(r));
                }
            })
        });
        rx.recv_timeout(FLOOD_WAIT).ok()
    }

    /// Asks the reactor to stop; returns how long `run()` took to return (`None`: not
    /// within [`FLOOD_WAIT`]).
    fn stop(&mut self) -> Option<Duration> {
        use torsion::reactor::ReactorCore;
        let asked = Instant::now();
        self.caller.call(|| {
            FLOOD_REACTOR.with(|r| {
                if let Some(r) = r.borrow().as_ref() {
                    let _ = r.stop();
                }
            })
        });
        self.exited
            .recv_timeout(FLOOD_WAIT)
            .ok()
            .map(|()| asked.elapsed())
    }

    fn join(mut self) {
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// The process's resident set, in bytes (0 where `/proc` is not there).
fn rss_bytes() -> u64 {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("VmRSS:"))
                .and_then(|l| l.split_whitespace().nth(1))
                .and_then(|kib| kib.parse::<u64>().ok())
        })
        .map_or(0, |kib| kib * 1024)
}

const MIB: f64 = 1024.0 * 1024.0;

/// A client sends up to [`FLOOD_BYTES`] and never reads: how much does the server grow?
fn flood_memory() {
    let mut server = FloodServer::start();
    thread::sleep(Duration::from_millis(100));
    let before = rss_bytes();
    let mut s = std::net::TcpStream::connect(server.addr).unwrap();
    // A write that blocks this long means the server stopped reading.
    s.set_write_timeout(Some(Duration::from_secs(1))).unwrap();
    let chunk = vec![b'f'; 64 * 1024];
    let mut sent = 0;
    while sent < FLOOD_BYTES {
        match s.write(&chunk) {
            Ok(n) => sent += n,
            Err(_) => break,
        }
    }
    thread::sleep(Duration::from_millis(200));
    let after = rss_bytes();
    let buffered = server.ask(|r| r.buffered_bytes()).unwrap_or(0);
    println!(
        "flood_server_rss_mib: {:.1} MiB",
        after.saturating_sub(before) as f64 / MIB
    );
    println!("flood_server_buffered_kib: {} KiB", buffered / 1024);
    println!("flood_client_sent_mib: {:.1} MiB", sent as f64 / MIB);
    drop(s);
    let _ = server.stop();
    server.join();
}

/// Pings on a second connection: `(p99, median)` of the round trips and whether all were
/// answered.
fn pings(addr: SocketAddr) -> (Duration, Duration, usize) {
    let mut ping = std::net::TcpStream::connect(addr).unwrap();
    ping.set_nodelay(true).unwrap();
    ping.set_read_timeout(Some(FLOOD_WAIT)).unwrap();
    let msg = [b'p'; MESSAGE];
    let mut back = [0u8; MESSAGE];
    let mut rtts = Vec::with_capacity(PINGS);
    let mut answered = 0;
    for _ in 0..PINGS {
        let t = Instant::now();
        let ok = ping.write_all(&msg).is_ok() && ping.read_exact(&mut back).is_ok();
        rtts.push(t.elapsed().min(FLOOD_WAIT));
        if !ok {
            break;
        }
        answered += 1;
        thread::sleep(Duration::from_millis(2));
    }
    rtts.sort();
    let p99 = rtts[(rtts.len() * 99 / 100).min(rtts.len() - 1)];
    (p99, rtts[rtts.len() / 2], answered)
}

fn print_pings(name: &str, (p99, median, answered): (Duration, Duration, usize)) {
    let note = if answered == PINGS {
        String::new()
    } else {
        format!(" ({answered} of {PINGS} pings answered)")
    };
    println!("{name}_p99_ms: {:.2} ms{note}", p99.as_secs_f64() * 1e3);
    println!("{name}_median_ms: {:.2} ms", median.as_secs_f64() * 1e3);
}

/// One client floods (and reads the echo back); another pings. Then the reactor is stopped
/// with the flood still going. First the same pings with no flood: the machine's own noise.
fn flood_latency() {
    let mut server = FloodServer::start();
    print_pings("quiet_ping", pings(server.addr));
    let stop = Arc::new(AtomicBool::new(false));
    let echoed = Arc::new(AtomicU64::new(0));
    let flood = std::net::TcpStream::connect(server.addr).unwrap();
    flood
        .set_write_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    flood
        .set_read_timeout(Some(Duration::from_millis(100)))
        .unwrap();
    let (mut w, mut r) = (flood.try_clone().unwrap(), flood);
    let st = stop.clone();
    let writer = thread::spawn(move || {
        let chunk = vec![b'f'; 64 * 1024];
        while !st.load(Ordering::Relaxed) {
            if let Err(e) = w.write(&chunk) {
                if !matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                ) {
                    return;
                }
            }
        }
    });
    let (st, ec) = (stop.clone(), echoed.clone());
    let reader = thread::spawn(move || {
        let mut buf = vec![0u8; 64 * 1024];
        while !st.load(Ordering::Relaxed) {
            match r.read(&mut buf) {
                Ok(0) => return,
                Ok(n) => {
                    ec.fetch_add(n as u64, Ordering::Relaxed);
                }
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut
                    ) => {}
                Err(_) => return,
            }
        }
    });
    // Let the flood get going, then ping on a second connection.
    thread::sleep(Duration::from_millis(300));
    let echoed_before = echoed.load(Ordering::Relaxed);
    let began = Instant::now();
    let figures = pings(server.addr);
    let flood_rate = (echoed.load(Ordering::Relaxed) - echoed_before) as f64
        / MIB
        / began.elapsed().as_secs_f64();
    let stopped = server.stop();
    stop.store(true, Ordering::Relaxed);
    let _ = writer.join();
    let _ = reader.join();
    server.join();
    print_pings("flood_ping", figures);
    println!("flood_echo_mib_per_s: {flood_rate:.0} MiB/s");
    match stopped {
        Some(d) => println!("flood_stop_ms: {:.1} ms", d.as_secs_f64() * 1e3),
        None => println!(
            "flood_stop_ms: > {} ms (not stopped while flooded)",
            FLOOD_WAIT.as_millis()
        ),
    }
}

fn main() {
    // `cargo bench` passes `--bench`; nothing to parse. The servers take turns, so slow
    // drifts of the machine (frequency, other load) spread over all three.
    let servers: [fn(mpsc::Sender<SocketAddr>, ServerMarks); 3] =
        [torsion_server, tokio_server, rawmio_server];
    // ECHO_BENCH_ONLY=torsion|tokio|rawmio measures one server (for profiling); =flood runs
    // only the flood figures.
    let only = std::env::var("ECHO_BENCH_ONLY").ok();
    if only.as_deref() == Some("churn") {
        println!(
            "rss_growth_kib_per_100k_conns: {} KiB",
            rss_growth_kib_per_100k_conns()
        );
        return;
    }
    if only.as_deref() == Some("flood") {
        flood_memory();
        flood_latency();
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
    // Last: a flood leaves the machine's loopback busy for a moment.
    flood_memory();
    flood_latency();
}

/// Connect/close cycles measured by the leak check.
const CHURN_CYCLES: usize = 100_000;
/// Cycles run first, so that buffers, the slab and the allocator reach their steady size.
const CHURN_WARMUP: usize = 5_000;

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
    let before = (rss_bytes() / 1024) as i64;
    churn(addr, CHURN_CYCLES);
    wait_closed(&open);
    let after = (rss_bytes() / 1024) as i64;
    stop.store(true, Ordering::Release);
    server.join().unwrap();
    (after - before) * 100_000 / CHURN_CYCLES as i64
}
