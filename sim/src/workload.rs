//! The scenario workloads: one body per app of `torsion-apps`, built from a [`Scenario`]'s
//! parameters, with the invariants each app promises.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use torsion::defer::Failure;
use torsion::protocol::{Backoff, ForProtocol};
use torsion::reactor::{ReactorRandomExt, ReactorTcpExt, ReactorTimeExt};
use torsion_apps::{chat, echo, heartbeat, kv, lines, poetry};

use crate::scenario::{FaultMode, Scenario};
use crate::{Host, Sim};

/// The body a sweep runs for `s`.
pub fn body(s: &Scenario) -> Box<dyn Fn(&Sim) + Sync> {
    let s = s.clone();
    match s.app.as_str() {
        "echo" => Box::new(move |sim: &Sim| echo_body(&s, sim)),
        "chat" => Box::new(move |sim: &Sim| chat_body(&s, sim)),
        "kv" => Box::new(move |sim: &Sim| kv_body(&s, sim)),
        "poetry" => Box::new(move |sim: &Sim| poetry_body(&s, sim)),
        "heartbeat" => Box::new(move |sim: &Sim| heartbeat_body(&s, sim)),
        "lines" => Box::new(move |sim: &Sim| lines_body(&s, sim)),
        // Scenario::parse accepts only the apps above.
        other => {
            let other = other.to_string();
            Box::new(move |_sim: &Sim| panic!("unknown app {other:?}"))
        }
    }
}

fn hosts(s: &Scenario, sim: &Sim) -> (Vec<Host>, Vec<Host>) {
    let servers = (0..s.topology.servers)
        .map(|i| sim.host(&format!("server{i}")))
        .collect();
    let clients = (0..s.topology.clients)
        .map(|i| sim.host(&format!("client{i}")))
        .collect();
    (servers, clients)
}

/// Runs `f` on `host` 1 ms after its startup (after every server has started listening),
/// and again after each restart.
fn on_start(host: &Host, f: impl Fn(&Host) + 'static) {
    let f = Rc::new(f);
    host.start(move |h| {
        let (f, h2) = (f.clone(), h.clone());
        h.call_later(Duration::from_millis(1), move || f(&h2));
    });
}

fn faulty(sim: &Sim) -> bool {
    !sim.faults().is_none()
}

fn echo_body(s: &Scenario, sim: &Sim) {
    let w = &s.workload;
    let (count, lo, hi) = (
        w.messages.unwrap_or(100),
        w.min_size.unwrap_or(1),
        w.max_size.unwrap_or(crate::scenario::DEFAULT_MAX_SIZE),
    );
    let (servers, clients) = hosts(s, sim);
    servers[0].start(|h| {
        h.listen_tcp(7, ForProtocol::<echo::Echo>::new()).unwrap();
    });
    let results: Rc<RefCell<Vec<Result<usize, Failure>>>> = Rc::default();
    // The first mismatch, kept as it comes so that the invariant costs nothing per step
    // (not a look through every client's result after every event).
    let mismatch: Rc<RefCell<Option<String>>> = Rc::default();
    for (i, c) in clients.iter().enumerate() {
        let (r, m) = (results.clone(), mismatch.clone());
        c.call_later(Duration::from_millis(1), {
            let c = c.clone();
            move || {
                // Built when the client starts, not all at once before the run: a run that
                // ends early (a limit, a failure) never holds every client's messages.
                let msgs: Vec<Vec<u8>> = (0..count)
                    .map(|j| {
                        let len = lo.saturating_add(c.random_below((hi - lo).saturating_add(1)));
                        let len = usize::try_from(len.max(1)).unwrap_or(usize::MAX);
                        let mut m = format!("{i}.{j}:").into_bytes();
                        m.resize(len, b'a' + (j % 26) as u8);
                        m.truncate(len);
                        m
                    })
                    .collect();
                let (factory, done) = echo::EchoClientFactory::new(msgs);
                let (r, m) = (r.clone(), m.clone());
                let _ = done.add_both(move |out| {
                    if let Err(f) = &out {
                        if f.downcast_ref::<echo::EchoMismatch>().is_some() {
                            m.borrow_mut().get_or_insert_with(|| f.to_string());
                        }
                    }
                    r.borrow_mut().push(out.map(|rep| rep.messages));
                    Ok::<(), Failure>(())
                });
                c.connect_tcp("server0", 7, factory);
            }
        });
    }
    sim.invariant("every echo is exact", move || match &*mismatch.borrow() {
        Some(m) => Err(m.clone()),
        None => Ok(()),
    });
    sim.run_until_idle();
    if !faulty(sim) {
        let r = results.borrow();
        assert_eq!(r.len(), clients.len(), "every client finished");
        for o in r.iter() {
            assert_eq!(
                *o.as_ref().map_err(|f| f.to_string()).unwrap(),
                count as usize
            );
        }
    }
}

fn chat_body(s: &Scenario, sim: &Sim) {
    let count = s.workload.messages.unwrap_or(5) as usize;
    let (servers, clients) = hosts(s, sim);
    let (factory, room) = chat::ChatFactory::new();
    servers[0].start(move |h| {
        h.listen_tcp(6667, factory.clone()).unwrap();
    });
    let logs: Rc<RefCell<Vec<(usize, chat::ChatLog)>>> = Rc::default();
    for (i, c) in clients.iter().enumerate() {
        let l = logs.clone();
        let restarts = std::cell::Cell::new(0u32);
        on_start(c, move |h| {
            let msgs = (0..count).map(|j| format!("m{i}.{j}")).collect();
            let k = restarts.replace(restarts.get() + 1);
            let nick = match k {
                0 => format!("client{i}"),
                k => format!("client{i}r{k}"),
            };
            let (f, done) = chat::ChatClientFactory::new(&nick, msgs, Duration::from_secs(10));
            let l = l.clone();
            let _ = done.add_callback(move |log| {
                l.borrow_mut().push((i, log));
                Ok::<(), Failure>(())
            });
            h.connect_tcp("server0", 6667, f);
        });
    }
    let n = clients.len();
    let f = faulty(sim);
    let l = logs.clone();
    sim.invariant(
        "chat logs are well formed and ordered",
        chat::logs_invariant(l, n, count, f),
    );
    sim.run_until_idle();
    if !f {
        assert_eq!(logs.borrow().len(), n, "every client finished");
        assert_eq!(room.borrow().said_count(), (n * count) as u64);
    }
}

fn kv_body(s: &Scenario, sim: &Sim) {
    let w = &s.workload;
    let rounds = w.rounds.unwrap_or(10);
    let (servers, clients) = hosts(s, sim);
    let store = kv::KvStore::new();
    let dedupe = w.dedupe.unwrap_or(true);
    servers[0].start(move |h| {
        let f = if dedupe {
            kv::KvServerFactory::new(store.clone())
        } else {
            kv::KvServerFactory::without_dedupe(store.clone())
        };
        h.listen_tcp(6000, f).unwrap();
    });
    let mut progress = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let name = format!("client{i}");
        let backoff = Backoff::new(Rc::new(c.clone()));
        let (f, p) = kv::KvClientFactory::new(
            &name,
            kv::script(&name, rounds),
            backoff,
            w.reset_delay.unwrap_or(true),
        );
        progress.push((name, p));
        let c2 = c.clone();
        c.call_later(Duration::from_millis(1), move || {
            c2.connect_tcp("server0", 6000, f);
        });
    }
    let progress = Rc::new(progress);
    let p = progress.clone();
    sim.invariant(
        "every acknowledged write is readable afterwards",
        move || {
            p.iter()
                .try_for_each(|(name, p)| kv::check_progress(name, rounds, &p.borrow()))
        },
    );
    if let Some(secs) = w.deadline_s {
        let p = progress.clone();
        sim.deadline(
            "every kv client finishes",
            Duration::from_secs(secs),
            move || p.iter().all(|(_, p)| p.borrow().done),
        );
    }
    sim.run_until_idle();
    if !faulty(sim) {
        assert!(
            progress.iter().all(|(_, p)| p.borrow().done),
            "every client finished"
        );
    }
}

fn poetry_body(s: &Scenario, sim: &Sim) {
    let delay = s.workload.interval_ms.unwrap_or(20);
    let (servers, clients) = hosts(s, sim);
    let names: Vec<String> = (0..servers.len()).map(|i| format!("server{i}")).collect();
    for (i, h) in servers.iter().enumerate() {
        // Each poet is slower than the one before.
        let d = Duration::from_millis(delay.saturating_mul(i as u64));
        h.start(move |h| {
            let f = poetry::PoetryServerFactory::new(poetry::POEM, 16, d);
            h.listen_tcp(10_000, f).unwrap();
        });
    }
    type Fetched = Result<Vec<String>, String>;
    let got: Rc<RefCell<Vec<Fetched>>> = Rc::default();
    for c in &clients {
        let (g, names) = (got.clone(), names.clone());
        on_start(c, move |h| {
            let servers: Vec<(&str, u16)> = names.iter().map(|n| (n.as_str(), 10_000)).collect();
            let g = g.clone();
            let _ = poetry::get_poems(h, &servers).add_both(move |r| {
                g.borrow_mut().push(r.map_err(|f| f.to_string()));
                Ok::<(), Failure>(())
            });
        });
    }
    let g = got.clone();
    sim.invariant("a poem arrives whole or not at all", move || {
        g.borrow().iter().try_for_each(|r| match r {
            Ok(poems) if poems.iter().any(|p| p != poetry::POEM) => {
                Err(format!("a damaged poem was reported as whole: {poems:?}"))
            }
            _ => Ok(()),
        })
    });
    sim.run_until_idle();
    if !faulty(sim) {
        let got = got.borrow();
        assert_eq!(got.len(), clients.len());
        assert!(got.iter().all(Result::is_ok), "{got:?}");
    }
}

fn heartbeat_body(s: &Scenario, sim: &Sim) {
    let w = &s.workload;
    let interval = Duration::from_millis(w.interval_ms.unwrap_or(1_000));
    let timeout = Duration::from_millis(w.timeout_ms.unwrap_or(3_000));
    let beats = w.messages.unwrap_or(30);
    let (servers, clients) = hosts(s, sim);
    let (sf, stats) = heartbeat::HeartbeatServerFactory::new(timeout);
    servers[0].start(move |h| {
        h.listen_tcp(9000, sf.clone()).unwrap();
    });
    let mut sent = Vec::new();
    for c in &clients {
        let clock: Rc<dyn torsion::reactor::ReactorTime> = Rc::new(c.clone());
        let (cf, n) = heartbeat::HeartbeatClientFactory::new(clock, interval, beats);
        sent.push(n);
        let c2 = c.clone();
        c.call_later(Duration::from_millis(1), move || {
            c2.connect_tcp("server0", 9000, cf);
        });
    }
    // Each rule partition that silences a client for longer than the timeout while it is
    // beating must be noticed within the timeout (plus one interval and a second of slack).
    if s.faults.mode == FaultMode::Rules {
        let active = interval.saturating_mul(u32::try_from(beats).unwrap_or(u32::MAX));
        let mut silencing: Vec<Duration> = s
            .faults
            .partitions
            .iter()
            .filter(|p| {
                let (a, b) = (p.a.as_str(), p.b.as_str());
                let involves = (a == "server0") != (b == "server0");
                let at = Duration::from_millis(p.at_ms);
                involves
                    && !p.one_way
                    && Duration::from_millis(p.duration_ms)
                        > timeout.saturating_add(interval.saturating_mul(2))
                    && at.saturating_add(timeout).saturating_add(interval) < active
            })
            .map(|p| {
                Duration::from_millis(p.at_ms)
                    .saturating_add(timeout)
                    .saturating_add(interval)
                    .saturating_add(Duration::from_secs(1))
            })
            .collect();
        silencing.sort();
        for (k, at) in silencing.into_iter().enumerate() {
            let st = stats.clone();
            sim.deadline("the server notices a silent client", at, move || {
                st.timeouts.get() > k as u64
            });
        }
    }
    sim.run_until_idle();
    if !faulty(sim) {
        assert_eq!(stats.timeouts.get(), 0, "no timeouts on a healthy network");
        assert_eq!(
            stats.beats.get(),
            beats.saturating_mul(clients.len() as u64)
        );
    }
}

fn lines_body(s: &Scenario, sim: &Sim) {
    let count = s.workload.messages.unwrap_or(5);
    let naive = s.workload.naive.unwrap_or(false);
    let (servers, clients) = hosts(s, sim);
    let (factory, got) = lines::CollectorFactory::new(naive);
    servers[0].start(move |h| {
        h.listen_tcp(7, factory.clone()).unwrap();
    });
    let mut sent: Vec<String> = Vec::new();
    for (i, c) in clients.iter().enumerate() {
        let mine: Vec<String> = (0..count).map(|j| format!("client{i} line {j}")).collect();
        sent.extend(mine.iter().cloned());
        let c2 = c.clone();
        c.call_later(Duration::from_millis(1), move || {
            c2.connect_tcp("server0", 7, lines::SenderFactory::new(mine));
        });
    }
    let g = got.clone();
    let sent2 = sent.clone();
    sim.invariant("each line arrives whole", move || {
        match g.borrow().iter().find(|l| !sent2.contains(l)) {
            Some(bad) => Err(format!("received {bad:?}, which no client sent")),
            None => Ok(()),
        }
    });
    sim.run_until_idle();
    if !faulty(sim) {
        let mut got = got.borrow().clone();
        got.sort();
        sent.sort();
        assert_eq!(got, sent, "every line arrived once");
    }
}
