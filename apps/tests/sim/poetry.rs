use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::reactor::{ReactorTcpExt, ReactorTimeExt};
use torsion_apps::poetry::{get_poems, PoetryServerFactory, POEM};
use torsion_sim::{check_with, Options, Sim};

/// A client fetches from three servers (one slow) at once. Under swarm faults the poems
/// either all arrive whole or the fetch fails: never a truncated poem reported as success.
#[test]
fn poetry_from_several_servers() {
    check_with(
        Options::new("poetry swarm").seeds(300),
        &|| Sim::builder().swarm(4, Duration::from_secs(5)),
        |sim: &Sim| {
            for (i, delay) in [(0, 0), (1, 5), (2, 200)] {
                let h = sim.host(&format!("poet{i}"));
                h.start(move |h| {
                    let f = PoetryServerFactory::new(POEM, 16, Duration::from_millis(delay));
                    h.listen_tcp(10_000, f).unwrap();
                });
            }
            // The reader fetches at startup, and again if its host restarts after a crash.
            let client = sim.host("reader");
            let got = Rc::new(RefCell::new(None));
            let g = got.clone();
            client.start(move |h| {
                let (g, c) = (g.clone(), h.clone());
                h.call_later(Duration::from_millis(1), move || {
                    let servers = [("poet0", 10_000), ("poet1", 10_000), ("poet2", 10_000)];
                    let _ = get_poems(&c, &servers).add_both(move |r| {
                        *g.borrow_mut() = Some(r.map_err(|f| f.to_string()));
                        Ok::<(), torsion::defer::Failure>(())
                    });
                });
            });
            sim.run_until_idle();
            let got = got.borrow();
            match got.as_ref().expect("the gather fired") {
                Ok(poems) => {
                    assert_eq!(poems.len(), 3);
                    assert!(poems.iter().all(|p| p == POEM), "a poem arrived damaged");
                }
                Err(e) => assert!(!sim.faults().is_none(), "failed without faults: {e}"),
            }
        },
    );
}
