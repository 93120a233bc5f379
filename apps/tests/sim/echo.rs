use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::protocol::ForProtocol;
use torsion::reactor::{ReactorTcpExt, ReactorTimeExt};
use torsion_apps::echo::{Echo, EchoClientFactory, EchoMismatch};
use torsion_sim::{check_with, Options, Sim};

/// Echo with swarm faults: whatever the network does, a client never sees a wrong echo;
/// without faults every client completes.
#[test]
fn echo_survives_swarm_faults() {
    let opts = Options::new("echo swarm").seeds(200);
    check_with(
        opts,
        &|| Sim::builder().swarm(6, Duration::from_secs(2)),
        |sim: &Sim| {
            let server = sim.host("server");
            server.start(|h| {
                h.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
            });
            let outcomes = Rc::new(RefCell::new(Vec::new()));
            for i in 0..5 {
                let client = sim.host(&format!("client{i}"));
                let msgs: Vec<Vec<u8>> = (0..20)
                    .map(|j| format!("msg {i}.{j}").into_bytes())
                    .collect();
                let (factory, done) = EchoClientFactory::new(msgs);
                let o = outcomes.clone();
                let _ = done.add_both(move |r| {
                    o.borrow_mut().push(r.map(|rep| rep.messages));
                    Ok::<(), torsion::defer::Failure>(())
                });
                // Connect once the server's startup has run.
                let h = client.clone();
                client.call_later(Duration::from_millis(1), move || {
                    h.connect_tcp("server", 7, factory);
                });
            }
            sim.run_until_idle();
            let outcomes = outcomes.borrow();
            for o in outcomes.iter() {
                if let Err(f) = o {
                    assert!(
                        f.downcast_ref::<EchoMismatch>().is_none(),
                        "wrong echo: {f}"
                    );
                }
            }
            if sim.faults().is_none() {
                assert_eq!(outcomes.len(), 5);
                assert!(outcomes.iter().all(|o| *o.as_ref().unwrap() == 20));
            }
        },
    );
}
