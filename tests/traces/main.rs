//! Trace snapshots: what torsion-sim records of a run, pinned with insta. A snapshot changes
//! only when behaviour does (the rendering uses integer nanoseconds and escaped previews), so
//! a diff here is a change in what the engine or the simulator does.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::protocol::{factory_fn, ForProtocol, Protocol, Transport};
use torsion::reactor::ReactorTcpExt;
use torsion_sim::check::{sweep, Options};
use torsion_sim::{Faults, Partition, Sim};

macro_rules! snapshot {
    ($name:expr, $text:expr) => {
        insta::with_settings!({ snapshot_path => "../snapshots", prepend_module_to_snapshot => false }, {
            insta::assert_snapshot!($name, $text);
        });
    };
}

use torsion::protocols::wire::Echo;

/// Sends two lines, closes once both came back.
#[derive(Default)]
struct TwoLines {
    t: Transport,
    got: usize,
}
impl Protocol for TwoLines {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        t.write(b"hello\r\n");
        t.write(b"world\r\n");
    }
    fn data_received(&mut self, d: &[u8]) {
        self.got += d.len();
        if self.got == 14 {
            self.t.lose_connection();
        }
    }
}

fn echo_world(sim: &Sim) {
    sim.host("server")
        .listen_tcp(7, ForProtocol::<Echo>::new())
        .unwrap();
    sim.host("client")
        .connect_tcp("server", 7, ForProtocol::<TwoLines>::new());
}

#[test]
fn echo_trace() {
    let sim = Sim::builder().seed(1).trace(true).build();
    echo_world(&sim);
    sim.run_until_idle();
    assert!(sim.errors().is_empty());
    snapshot!("echo", sim.trace().render());
}

#[test]
fn reset_trace() {
    // Every data segment has a 50% chance of a reset; seed 3 resets the connection.
    let faults = Faults {
        reset_ppm: 500_000,
        ..Faults::none()
    };
    let sim = Sim::builder().seed(3).faults(faults).trace(true).build();
    echo_world(&sim);
    sim.run_until_idle();
    let text = sim.trace().render();
    assert!(text.contains("FAULT reset"), "{text}");
    snapshot!("reset", text);
}

/// Sends a heartbeat every 100 ms for a second.
#[derive(Default)]
struct Beats {
    t: Transport,
    sent: u32,
}
impl Protocol for Beats {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        t.call_later(Duration::from_millis(100), Beats::beat);
    }
    fn data_received(&mut self, _d: &[u8]) {}
}
impl Beats {
    fn beat(&mut self) {
        self.sent += 1;
        self.t.write(format!("beat {}\n", self.sent));
        if self.sent < 10 {
            self.t.call_later(Duration::from_millis(100), Beats::beat);
        } else {
            self.t.lose_connection();
        }
    }
}

#[test]
fn partition_trace() {
    // The client's beats are held while it is cut off, then delivered in order.
    let faults = Faults {
        partitions: vec![Partition {
            at: Duration::from_millis(250),
            duration: Duration::from_millis(400),
            a: 1,
            b: 0,
            one_way: true,
        }],
        ..Faults::none()
    };
    let sim = Sim::builder().seed(5).faults(faults).trace(true).build();
    sim.host("server")
        .listen_tcp(7, ForProtocol::<Echo>::new())
        .unwrap();
    sim.host("client")
        .connect_tcp("server", 7, ForProtocol::<Beats>::new());
    sim.run_until_idle();
    let text = sim.trace().render();
    assert!(text.contains("FAULT partition client->server"), "{text}");
    snapshot!("partition", text);
}

#[test]
fn crash_and_restart_trace() {
    let faults = Faults {
        crashes: vec![torsion_sim::Crash {
            at: Duration::from_millis(450),
            host: 0,
            restart_after: Some(Duration::from_millis(200)),
        }],
        ..Faults::none()
    };
    let sim = Sim::builder().seed(6).faults(faults).trace(true).build();
    let server = sim.host("server");
    server.start(|h| {
        h.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
    });
    sim.host("client")
        .connect_tcp("server", 7, ForProtocol::<Beats>::new());
    sim.run_until_idle();
    let text = sim.trace().render();
    assert!(text.contains("CRASH") && text.contains("restart"), "{text}");
    snapshot!("crash_restart", text);
}

/// The planted bug: every `data_received` is taken to be one line.
struct NaiveLines {
    lines: Rc<RefCell<Vec<Vec<u8>>>>,
}
impl Protocol for NaiveLines {
    fn data_received(&mut self, data: &[u8]) {
        let line = data.strip_suffix(b"\r\n").unwrap_or(data);
        self.lines.borrow_mut().push(line.to_vec());
    }
}

fn naive(sim: &Sim) {
    let lines = Rc::new(RefCell::new(Vec::new()));
    let l = lines.clone();
    sim.host("server")
        .listen_tcp(
            7,
            factory_fn(move |_| {
                Some(Box::new(NaiveLines { lines: l.clone() }) as Box<dyn Protocol>)
            }),
        )
        .unwrap();
    sim.host("client")
        .connect_tcp("server", 7, ForProtocol::<TwoLines>::new());
    sim.invariant("each line arrives whole", move || {
        let lines = lines.borrow();
        match lines
            .iter()
            .find(|l| l.as_slice() != b"hello" && l.as_slice() != b"world")
        {
            Some(bad) => Err(format!("got line {:?}", String::from_utf8_lossy(bad))),
            None => Ok(()),
        }
    });
    sim.run_until_idle();
}

#[test]
fn shrunk_failure_trace() {
    let mut opts = Options::new("naive lines");
    opts.seeds = 100;
    opts.start = 0;
    opts.jobs = 1;
    opts.replay_dir = None;
    let summary = sweep(&opts, &Sim::builder, &naive);
    let report = summary
        .failure
        .expect("the planted bug is found within 100 seeds");
    let segments = report
        .trace
        .lines()
        .filter(|l| l.contains(" send "))
        .count();
    assert!(segments <= 2, "{report}");
    snapshot!(
        "shrunk_naive_lines",
        format!("error: {}\n{}", report.error, report.trace)
    );
}

/// Three members chat: joins, a nick, broadcasts, quits, on a fragmenting network.
#[test]
fn chat() {
    use torsion::reactor::ReactorTimeExt;
    use torsion_apps::chat::{ChatClientFactory, ChatFactory};
    let sim = Sim::builder().seed(11).trace(true).build();
    let (factory, _room) = ChatFactory::new();
    sim.host("server").start(move |h| {
        h.listen_tcp(6667, factory.clone()).unwrap();
    });
    for i in 0..3 {
        let c = sim.host(&format!("client{i}"));
        let (f, _done) = ChatClientFactory::new(
            &format!("client{i}"),
            vec![format!("m{i}.0")],
            Duration::from_millis(200),
        );
        let c2 = c.clone();
        c.call_later(Duration::from_millis(1 + 50 * i), move || {
            c2.connect_tcp("server", 6667, f);
        });
    }
    sim.run_until_idle();
    let text = sim.trace().render();
    assert!(text.contains("m0.0") && text.contains("/quit"), "{text}");
    snapshot!("chat", text);
}
