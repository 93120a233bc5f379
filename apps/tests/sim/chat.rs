use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::reactor::{ReactorTcpExt, ReactorTimeExt};
use torsion_apps::chat::{ChatClientFactory, ChatFactory, ChatLog};
use torsion_sim::{check_with, Options, Sim, SimBuilder};

const CLIENTS: usize = 20;
const MESSAGES: usize = 5;

/// Checks one receiver's log: every line is well formed, never its own, and from each
/// sender the message numbers are a contiguous increasing run (the server relays each
/// sender's messages in order, and a receiver sees a contiguous window of the broadcast
/// stream). Without faults each run ends at the sender's last message.
fn check_log(me: usize, log: &ChatLog, faults: bool) -> Result<(), String> {
    let mut runs: Vec<Vec<usize>> = vec![Vec::new(); CLIENTS];
    for line in &log.received {
        if line.starts_with("* ") {
            continue;
        }
        let (nick, msg) = line
            .strip_prefix('<')
            .and_then(|l| l.split_once("> "))
            .ok_or_else(|| format!("client{me}: malformed line {line:?}"))?;
        let sender: usize = nick
            .strip_prefix("client")
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("client{me}: unknown sender in {line:?}"))?;
        let want_prefix = format!("m{sender}.");
        let n: usize = msg
            .strip_prefix(&want_prefix)
            .and_then(|n| n.parse().ok())
            .ok_or_else(|| format!("client{me}: corrupt message {line:?}"))?;
        if sender == me {
            return Err(format!("client{me} got its own message {line:?}"));
        }
        runs[sender].push(n);
    }
    for (sender, run) in runs.iter().enumerate() {
        if run.windows(2).any(|w| w[1] != w[0] + 1) {
            return Err(format!(
                "client{me} got client{sender}'s messages as {run:?}"
            ));
        }
        if !faults && run.last().is_some_and(|&n| n != MESSAGES - 1) {
            return Err(format!(
                "client{me} missed the end of client{sender}'s messages: {run:?}"
            ));
        }
    }
    Ok(())
}

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
    sim.invariant("chat logs are well formed and ordered", move || {
        l.borrow()
            .iter()
            .try_for_each(|(me, log)| check_log(*me, log, faults))
    });
    sim.run_until_idle();
    if !faults {
        assert_eq!(logs.borrow().len(), CLIENTS, "every client finished");
        assert_eq!(room.borrow().said().len(), CLIENTS * MESSAGES);
        assert!(logs.borrow().iter().all(|(_, l)| l.sent_all));
    }
}

fn swarm() -> SimBuilder {
    Sim::builder().swarm(CLIENTS + 1, Duration::from_secs(8))
}

/// 20 clients chatting under swarm faults, 1000 seeds: nothing is corrupted, duplicated or
/// reordered; without faults, everything is delivered.
#[test]
fn chat_swarm_invariants_hold() {
    check_with(Options::new("chat swarm").seeds(1000), &swarm, chat_body);
}

/// Every seed of the chat run replays to the same trace hash.
#[test]
fn chat_runs_are_deterministic() {
    let mut opts = Options::new("chat determinism").seeds(1000);
    opts.check_determinism = true;
    check_with(opts, &swarm, chat_body);
}
