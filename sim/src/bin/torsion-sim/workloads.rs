//! The bundled workloads: one per demo app of `torsion-apps`, registered under the app's
//! name, with the parameters its scenarios' `[workload]` tables give and the invariants
//! each app promises.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use serde::Deserialize;
use torsion::defer::Failure;
use torsion::protocol::{Backoff, ForProtocol};
use torsion::reactor::{ReactorRandomExt, ReactorTcpExt, ReactorTimeExt};
use torsion_apps::{chat, echo, heartbeat, kv, lines, poetry};
use torsion_sim::cli::{FieldError, Params, Registry};
use torsion_sim::scenario::{limits::MAX_TIME_MS, limits::MAX_TIME_S, FaultMode, Scenario};
use torsion_sim::{Host, Sim};

#[cfg_attr(not(test), allow(dead_code))]
/// The bundled apps, in the order `list` and the docs give them.
pub const APPS: [&str; 6] = ["echo", "chat", "kv", "poetry", "heartbeat", "lines"];

/// The echo workload's largest message when `max_size` is not given, in bytes.
pub const DEFAULT_MAX_SIZE: u64 = 64;

/// The bounds of the bundled apps' parameters, checked when a scenario is loaded: far above
/// what a useful scenario needs, far below what would exhaust memory while the workload is
/// built.
pub mod limits {
    /// Messages, lines or heartbeats per client (`messages`).
    pub const MAX_MESSAGES: u64 = 1_000_000;
    /// kv write rounds per client (`rounds`).
    pub const MAX_ROUNDS: u64 = 1_000_000;
    /// One message, in bytes (`min_size`, `max_size`): 64 MiB.
    pub const MAX_MESSAGE_SIZE: u64 = 64 << 20;
    /// Messages (or kv rounds) over all clients: `clients × messages` and
    /// `clients × rounds` (10,000 clients of 100 messages each, say).
    pub const MAX_TOTAL_MESSAGES: u64 = 1_000_000;
    /// Bytes the echo clients hold over all clients, `clients × messages × max_size`: 1 GiB.
    pub const MAX_WORKLOAD_BYTES: u64 = 1 << 30;
}

/// The bundled apps' parameters; each app reads the ones it needs and has defaults for the
/// rest.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AppParams {
    /// Messages (or lines, or heartbeats) per client.
    pub messages: Option<u64>,
    /// Smallest message, in bytes.
    pub min_size: Option<u64>,
    /// Largest message, in bytes.
    pub max_size: Option<u64>,
    /// Rounds of writes per kv client.
    pub rounds: Option<u64>,
    /// Heartbeat interval, or poetry chunk delay, in milliseconds.
    pub interval_ms: Option<u64>,
    /// Idle timeout, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// A liveness deadline, in simulated seconds from the start.
    pub deadline_s: Option<u64>,
    /// kv: the server deduplicates retried requests (false plants the double-apply bug).
    pub dedupe: Option<bool>,
    /// kv: clients reset their backoff on connecting (false plants the no-reset bug).
    pub reset_delay: Option<bool>,
    /// lines: the server takes each read to be a line (the naive-lines bug).
    pub naive: Option<bool>,
}

/// Checks `value <= max`, naming the field.
fn at_most(field: &str, value: u64, max: u64, unit: &str) -> Result<(), FieldError> {
    if value > max {
        Err(FieldError::new(
            field,
            format!("{value} is above the largest allowed, {max}{unit}"),
        ))
    } else {
        Ok(())
    }
}

impl Params for AppParams {
    fn check(&self, s: &Scenario) -> Result<(), FieldError> {
        use limits::*;
        let w = self;
        let clients = u64::from(s.topology.clients);
        let ms = " (one year)";
        for (field, value, max, unit) in [
            ("messages", w.messages, MAX_MESSAGES, ""),
            ("rounds", w.rounds, MAX_ROUNDS, ""),
            ("min_size", w.min_size, MAX_MESSAGE_SIZE, " bytes (64 MiB)"),
            ("max_size", w.max_size, MAX_MESSAGE_SIZE, " bytes (64 MiB)"),
            ("interval_ms", w.interval_ms, MAX_TIME_MS, ms),
            ("timeout_ms", w.timeout_ms, MAX_TIME_MS, ms),
            ("deadline_s", w.deadline_s, MAX_TIME_S, ms),
        ] {
            if let Some(v) = value {
                at_most(field, v, max, unit)?;
            }
        }
        if w.max_size == Some(0) {
            return Err(FieldError::new("max_size", "must be at least 1"));
        }
        if let Some(lo) = w.min_size {
            let hi = w.max_size.unwrap_or(DEFAULT_MAX_SIZE);
            if lo > hi {
                let (field, default) = match w.max_size {
                    Some(_) => ("max_size", ""),
                    None => ("min_size", " (the default)"),
                };
                return Err(FieldError::new(
                    field,
                    format!("min_size {lo} is above max_size {hi}{default}"),
                ));
            }
        }
        for (field, per_client) in [("messages", w.messages), ("rounds", w.rounds)] {
            let total = per_client.unwrap_or(0).saturating_mul(clients);
            if total > MAX_TOTAL_MESSAGES {
                return Err(FieldError::new(
                    field,
                    format!(
                        "{} per client times {clients} clients is {total}, \
                         above the largest total allowed, {MAX_TOTAL_MESSAGES}",
                        per_client.unwrap_or(0)
                    ),
                ));
            }
        }
        if s.app == "echo" {
            let size = w.max_size.unwrap_or(DEFAULT_MAX_SIZE);
            let bytes = w
                .messages
                .unwrap_or(100)
                .saturating_mul(clients)
                .saturating_mul(size);
            if bytes > MAX_WORKLOAD_BYTES {
                return Err(FieldError::new(
                    "max_size",
                    format!(
                        "clients × messages × max_size is {bytes} bytes, \
                         above the largest allowed, {MAX_WORKLOAD_BYTES} (1 GiB)"
                    ),
                ));
            }
        }
        Ok(())
    }
}

/// The bundled apps' workloads.
pub fn registry() -> Registry {
    let mut r = Registry::new("torsion-sim");
    r.workload(
        "echo",
        "clients ping-pong messages through an echo server",
        echo_body,
    )
    .workload("chat", "clients talk in one chat room", chat_body)
    .workload(
        "kv",
        "clients write and read a key-value store, retrying",
        kv_body,
    )
    .workload(
        "poetry",
        "clients fetch poems from several slow poets",
        poetry_body,
    )
    .workload(
        "heartbeat",
        "clients beat; the server notices silence",
        heartbeat_body,
    )
    .workload("lines", "clients send lines to a collector", lines_body);
    r
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

fn echo_body(s: &Scenario, w: &AppParams, sim: &Sim) {
    let (count, lo, hi) = (
        w.messages.unwrap_or(100),
        w.min_size.unwrap_or(1),
        w.max_size.unwrap_or(DEFAULT_MAX_SIZE),
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

fn chat_body(s: &Scenario, w: &AppParams, sim: &Sim) {
    let count = w.messages.unwrap_or(5) as usize;
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

fn kv_body(s: &Scenario, w: &AppParams, sim: &Sim) {
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

fn poetry_body(s: &Scenario, w: &AppParams, sim: &Sim) {
    let delay = w.interval_ms.unwrap_or(20);
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

fn heartbeat_body(s: &Scenario, w: &AppParams, sim: &Sim) {
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

fn lines_body(s: &Scenario, w: &AppParams, sim: &Sim) {
    let count = w.messages.unwrap_or(5);
    let naive = w.naive.unwrap_or(false);
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
