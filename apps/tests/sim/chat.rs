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
        assert_eq!(room.borrow().said_count(), (CLIENTS * MESSAGES) as u64);
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
    let opts = Options::new("chat determinism")
        .seeds(SEEDS)
        .check_determinism(true);
    check_with(opts, &swarm, chat_body);
}

/// Counts the lines it receives; optionally never reads (pauses its transport at once).
struct Member {
    sleeps: bool,
    got: Rc<std::cell::Cell<usize>>,
    lost: Rc<RefCell<Option<String>>>,
}

impl torsion::protocol::Protocol for Member {
    fn connection_made(&mut self, t: &torsion::protocol::Transport) {
        if self.sleeps {
            t.pause_producing();
        }
    }
    fn data_received(&mut self, data: &[u8]) {
        let lines = data.iter().filter(|&&b| b == b'\n').count();
        self.got.set(self.got.get() + lines);
    }
    fn connection_lost(&mut self, reason: torsion::defer::Failure) {
        *self.lost.borrow_mut() = Some(reason.to_string());
    }
}

/// Says `lines` lines of 60 bytes, one a millisecond (a pace any reader keeps up with),
/// then quits.
struct Talker {
    lines: usize,
}

fn talk(t: torsion::protocol::Transport) {
    let t2 = t.clone();
    t.call_later(Duration::from_millis(1), move |me: &mut Talker| {
        if me.lines == 0 {
            t2.write("/quit\r\n");
            return;
        }
        me.lines -= 1;
        t2.write(format!("{:059}\r\n", me.lines));
        talk(t2);
    });
}

impl torsion::protocol::Protocol for Talker {
    fn connection_made(&mut self, t: &torsion::protocol::Transport) {
        talk(t.clone());
    }
    fn data_received(&mut self, _data: &[u8]) {}
}

/// A member that stops reading while another talks is disconnected once the room's backlog
/// limit waits for it (rather than buffered for without bound); the others, reading at the
/// talker's pace, get every line and stay.
#[test]
fn a_member_that_stops_reading_is_dropped_not_buffered_for() {
    use torsion::protocol::{factory_fn, Protocol};
    const LINES: usize = 2_000;
    let sim = Sim::builder().seed(1).fragment(false).build();
    let server = sim.host("server");
    let (factory, room) = ChatFactory::new();
    room.borrow_mut().set_backlog_limit(16 * 1024);
    server.listen_tcp(6667, factory).unwrap();
    let member = |name: &str, sleeps: bool| {
        let got = Rc::new(std::cell::Cell::new(0));
        let lost: Rc<RefCell<Option<String>>> = Rc::default();
        let (g, l) = (got.clone(), lost.clone());
        sim.host(name).connect_tcp(
            "server",
            6667,
            factory_fn(move |_| {
                Some(Box::new(Member {
                    sleeps,
                    got: g.clone(),
                    lost: l.clone(),
                }) as Box<dyn Protocol>)
            }),
        );
        (got, lost)
    };
    let (_, sleeper_lost) = member("sleeper", true);
    let (listener_got, listener_lost) = member("listener", false);
    sim.run_for(Duration::from_millis(100));
    let talker = sim.host("talker");
    talker.connect_tcp(
        "server",
        6667,
        factory_fn(|_| Some(Box::new(Talker { lines: LINES }) as Box<dyn Protocol>)),
    );
    sim.run_until_idle();
    assert_eq!(room.borrow().dropped_slow(), 1);
    let reason = sleeper_lost
        .borrow()
        .clone()
        .expect("the sleeper was disconnected");
    assert!(
        reason.contains("reset") || reason.contains("lost"),
        "{reason}"
    );
    // Welcome lines aside, the listener got the sleeper's and the talker's arrivals, every
    // line said, and the sleeper leaving.
    assert!(listener_got.get() >= LINES + 2, "{}", listener_got.get());
    assert!(listener_lost.borrow().is_none());
    assert_eq!(room.borrow().said_count(), LINES as u64);
    assert_eq!(room.borrow().recent().len(), torsion_apps::chat::HISTORY);
}
