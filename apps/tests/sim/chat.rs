use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::reactor::{ReactorTcpExt, ReactorTimeExt};
use torsion_apps::chat::{logs_invariant, ChatClientFactory, ChatFactory, ChatLog};
use torsion_sim::{check_with, Options, Sim, SimBuilder};

const CLIENTS: usize = 20;
const MESSAGES: usize = 5;

fn chat_body(sim: &Sim) {
    let server = sim.host("server");
    let (factory, room) = ChatFactory::new();
    server.start(move |h| {
        h.listen_tcp(6667, factory.clone()).unwrap();
    });
    let logs: Rc<RefCell<Vec<(usize, ChatLog)>>> = Rc::default();
    for i in 0..CLIENTS {
        let client = sim.host(&format!("client{i}"));
        let msgs = (0..MESSAGES).map(|j| format!("m{i}.{j}")).collect();
        let (f, done) =
            ChatClientFactory::new(&format!("client{i}"), msgs, Duration::from_secs(10));
        let l = logs.clone();
        let _ = done.add_callback(move |log| {
            l.borrow_mut().push((i, log));
            Ok::<(), torsion::defer::Failure>(())
        });
        let h = client.clone();
        client.call_later(Duration::from_millis(1 + i as u64), move || {
            h.connect_tcp("server", 6667, f);
        });
    }
    let faults = !sim.faults().is_none();
    let l = logs.clone();
    sim.invariant(
        "chat logs are well formed and ordered",
        logs_invariant(l, CLIENTS, MESSAGES, faults),
    );
    sim.run_until_idle();
    if !faults {
        assert_eq!(logs.borrow().len(), CLIENTS, "every client finished");
        assert_eq!(room.borrow().said().len(), CLIENTS * MESSAGES);
        assert!(logs.borrow().iter().all(|(_, l)| l.sent_all));
    }
}

/// Seeds per check: the large sweep is the chat scenario's, run in release by `explore`
/// (with the determinism check) in CI; a debug build runs a tenth.
const SEEDS: u64 = if cfg!(debug_assertions) { 100 } else { 1000 };

fn swarm() -> SimBuilder {
    Sim::builder().swarm(CLIENTS + 1, Duration::from_secs(8))
}

/// 20 clients chatting under swarm faults, [`SEEDS`] seeds: nothing is corrupted, duplicated or
/// reordered; without faults, everything is delivered.
#[test]
fn chat_swarm_invariants_hold() {
    check_with(Options::new("chat swarm").seeds(SEEDS), &swarm, chat_body);
}

/// Every seed of the chat run replays to the same trace hash.
#[test]
fn chat_runs_are_deterministic() {
    let mut opts = Options::new("chat determinism").seeds(SEEDS);
    opts.check_determinism = true;
    check_with(opts, &swarm, chat_body);
}
