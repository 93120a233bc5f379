use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use torsion::reactor::{ReactorTcpExt, ReactorTimeExt};
use torsion_apps::heartbeat::{HeartbeatClientFactory, HeartbeatServerFactory, HeartbeatStats};
use torsion_sim::{check_with, Faults, Options, Partition, Sim};

/// A server with a 3 s timeout and a client beating `beats` times a second apart.
fn beating(sim: &Sim, beats: u64) -> (Rc<HeartbeatStats>, Rc<Cell<u64>>) {
    let server = sim.host("server");
    let client = sim.host("client");
    let (sf, stats) = HeartbeatServerFactory::new(Duration::from_secs(3));
    server.start(move |h| {
        h.listen_tcp(9000, sf.clone()).unwrap();
    });
    let clock: Rc<dyn torsion::reactor::ReactorTime> = Rc::new(client.clone());
    let (cf, sent) = HeartbeatClientFactory::new(clock, Duration::from_secs(1), beats);
    let c = client.clone();
    client.call_later(Duration::from_millis(1), move || {
        c.connect_tcp("server", 9000, cf);
    });
    (stats, sent)
}

/// A partition longer than the server's timeout: the server closes the silent connection
/// within a second of the timeout, and the run ends clean (the client's LoopingCall stopped
/// once it learned its connection was gone).
#[test]
fn heartbeat_timeout_under_partition() {
    let faults = Faults {
        partitions: vec![Partition {
            at: Duration::from_secs(5),
            duration: Duration::from_secs(10),
            a: 0,
            b: 1,
            one_way: false,
        }],
        ..Faults::none()
    };
    check_with(
        Options::new("heartbeat partition").seeds(200),
        &|| Sim::builder().faults(faults.clone()),
        |sim: &Sim| {
            let (stats, sent) = beating(sim, 60);
            let s = stats.clone();
            // Silence starts at 5 s (plus latency); the server must act by 5 + 3 + 1 s.
            sim.deadline(
                "server notices the silence",
                Duration::from_secs(9),
                move || s.timeouts.get() == 1,
            );
            sim.run_until_idle();
            assert_eq!(stats.timeouts.get(), 1);
            assert!(stats.beats.get() >= 3, "beats before the partition");
            assert!(
                sent.get() < 60,
                "the client stopped when its connection died"
            );
        },
    );
}

/// No faults: all beats arrive and nothing times out.
#[test]
fn heartbeat_without_faults() {
    check_with(
        Options::new("heartbeat clean").seeds(100),
        &|| Sim::builder(),
        |sim: &Sim| {
            let (stats, sent) = beating(sim, 10);
            sim.run_until_idle();
            assert_eq!(sent.get(), 10);
            assert_eq!(stats.beats.get(), 10);
            assert_eq!(stats.timeouts.get(), 0);
        },
    );
}
