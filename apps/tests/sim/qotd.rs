use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::reactor::{ReactorTcpExt, ReactorTimeExt};
use torsion_apps::qotd::{QotdClientFactory, QotdFactory, QUOTES};
use torsion_sim::{check_with, Options, Sim};

/// QOTD over a fragmenting network with swarm faults: a quote that arrives is always whole
/// and one of the server's.
#[test]
fn qotd_quotes_arrive_whole() {
    check_with(
        Options::new("qotd swarm").seeds(200),
        &|| Sim::builder().swarm(4, Duration::from_secs(1)),
        |sim: &Sim| {
            sim.host("server").start(|h| {
                h.listen_tcp(17, QotdFactory::new()).unwrap();
            });
            let got = Rc::new(RefCell::new(Vec::new()));
            for i in 0..3 {
                let c = sim.host(&format!("client{i}"));
                let (factory, done) = QotdClientFactory::new();
                let g = got.clone();
                let _ = done.add_both(move |r| {
                    g.borrow_mut().push(r.ok());
                    Ok::<(), torsion::defer::Failure>(())
                });
                let h = c.clone();
                c.call_later(Duration::from_millis(1), move || {
                    h.connect_tcp("server", 17, factory);
                });
            }
            sim.run_until_idle();
            for q in got.borrow().iter().flatten() {
                assert!(QUOTES.contains(&q.as_str()), "torn quote {q:?}");
            }
            if sim.faults().is_none() {
                assert_eq!(got.borrow().iter().flatten().count(), 3);
            }
        },
    );
}
