//! The scheduler: what runs next, and one step.
//!
//! Events wait in queues: each host's (its timers, and the packets coming to it) and the
//! world's own (`SYS`: fault schedules, deadlines). Every queue with anything pending has
//! one entry in an ordered set, its earliest event's (global time, sequence). Whatever may
//! change a queue's front — a call scheduled, cancelled or moved, a packet sent, an event
//! taken — marks that queue, and before each step the marked queues' entries are brought up
//! to date; a step never looks at a queue that did not change. So a step costs O(log n) in
//! the number of queues, plus O(log n) per queue it marked, whatever the number of hosts or
//! of events due at one instant.
//!
//! Each step runs the earliest event. When events on *different* hosts are due at the same
//! instant, the decision source may pick which goes first (choice 0: FIFO): the candidates
//! are the queues due at that instant, each with its earliest event, in scheduling order;
//! the set counts them and finds the chosen one by rank. Events on the same host always run
//! in FIFO order: that is the reactor contract. After every event, dirty connections are
//! flushed and invariants checked.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use torsion::reactor::Instant;

use super::{Cadence, Invariant, SimError, World, SYS};
use crate::host::HostState;
use crate::keyed::{At, MAX_INDEX};
use crate::ranked::Ranked;
use crate::trace::Kind;

#[derive(PartialEq, Eq)]
pub(super) enum StepResult {
    Ran,
    Idle,
    Limit,
    Failed,
}

/// The world's own queue as an entry's index (hosts are indexed by number).
const SYS_SLOT: u32 = MAX_INDEX - 1;

/// A queue's entry index: `SYS`, or a host below 2^24 - 1.
fn slot_of(index: usize) -> Option<u32> {
    match index {
        SYS => Some(SYS_SLOT),
        i if i < SYS_SLOT as usize => Some(i as u32),
        _ => None,
    }
}

/// Where a queue's bookkeeping lives in [`Sched`]'s vectors: the world's own first.
fn cell(slot: u32) -> usize {
    if slot == SYS_SLOT {
        0
    } else {
        slot as usize + 1
    }
}

/// The queues' fronts, and which may be out of date.
#[derive(Default)]
pub(crate) struct Sched {
    /// Per queue with anything pending, its earliest (global time, sequence, queue).
    fronts: Ranked,
    /// Per queue (by [`cell`]), its entry in `fronts`.
    entries: Vec<Option<At>>,
    /// Per queue (by [`cell`]), whether it is in `marked`.
    is_marked: Vec<bool>,
    /// The queues whose front may have changed since their entry was made.
    marked: Vec<u32>,
    /// Queue fronts looked up so far.
    lookups: u64,
}

impl Sched {
    /// Marks queue `index` (a host, or `SYS`) for a new look before the next step.
    pub(super) fn touch(&mut self, index: usize) -> Result<(), SimError> {
        let slot = slot_of(index).ok_or(SimError::Capacity { what: "2^24 hosts" })?;
        let c = cell(slot);
        if self.is_marked.len() <= c {
            self.is_marked.resize(c + 1, false);
            self.entries.resize(c + 1, None);
        }
        if !self.is_marked[c] {
            self.is_marked[c] = true;
            self.marked.push(slot);
        }
        Ok(())
    }

    /// A marked queue, unmarked.
    fn next_marked(&mut self) -> Option<u32> {
        let slot = self.marked.pop()?;
        self.is_marked[cell(slot)] = false;
        self.lookups += 1;
        Some(slot)
    }

    /// Records queue `slot`'s front.
    fn set_front(&mut self, slot: u32, front: Option<At>) {
        let entry = &mut self.entries[cell(slot)];
        if *entry == front {
            return;
        }
        let old = std::mem::replace(entry, front);
        if let Some(old) = old {
            self.fronts.remove(old);
        }
        if let Some(new) = front {
            self.fronts.insert(new);
        }
    }

    /// The work done so far: queue fronts looked up, and entries of the set visited. Tests
    /// bound it per event.
    #[cfg(test)]
    pub(crate) fn work(&self) -> u64 {
        self.lookups + self.fronts.visits()
    }
}

/// Queue `slot`'s earliest event now, in global time: a host's earliest timer or packet.
fn front(world: &World, slot: u32) -> Option<At> {
    let key = if slot == SYS_SLOT {
        world.sys.next_key().map(|(t, seq)| (t.as_nanos(), seq))
    } else {
        let host = slot as usize;
        let timer = world.with_host(host, HostState::next_global).flatten();
        let packet = world.net.link.flight.borrow().front(host);
        match (timer, packet) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }?;
    world.seq_fits(key.1).then(|| At::new(key.0, key.1, slot))
}

/// Brings the marked queues' entries up to date.
fn refresh(world: &World) {
    loop {
        let Some(slot) = world.sched.borrow_mut().next_marked() else {
            return;
        };
        // Looked up with no borrow of the scheduler held.
        let front = front(world, slot);
        world.sched.borrow_mut().set_front(slot, front);
    }
}

/// What runs next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Due {
    /// The front of a host's timer queue (or `SYS`, the world's).
    Queue(usize),
    /// The next packet to a host.
    Packet(usize),
}

/// Finds what runs next: the earliest event, or, when queues of several hosts are due at
/// its instant, the one the decision source picks among them (choice 0: the earliest
/// scheduled).
fn next_due(world: &World, until: u64) -> Result<(u64, Due), StepResult> {
    refresh(world);
    let chosen = {
        let mut sched = world.sched.borrow_mut();
        let first = sched.fronts.first().ok_or(StepResult::Idle)?;
        let t = first.time();
        if t > until {
            return Err(StepResult::Limit);
        }
        let due = if world.cfg.reorder {
            sched.fronts.count_until(t)
        } else {
            1
        };
        if due >= 2 {
            let k = match world.pct.borrow_mut().as_mut() {
                // PCT: the competitor on the host of highest priority (see `crate::pct`).
                Some(pct) => {
                    let hosts: Vec<usize> = (0..due)
                        .filter_map(|i| sched.fronts.nth(i))
                        .map(|e| e.index() as usize)
                        .collect();
                    pct.pick(&hosts, &mut world.decide.borrow_mut())
                }
                None => world.choose(due as u64) as usize,
            };
            sched.fronts.nth(k).unwrap_or(first)
        } else {
            first
        }
    };
    let due = match chosen.index() {
        SYS_SLOT => Due::Queue(SYS),
        slot => {
            let host = slot as usize;
            let packet = world.net.link.flight.borrow().front(host);
            if packet == Some(chosen.key()) {
                Due::Packet(host)
            } else {
                Due::Queue(host)
            }
        }
    };
    Ok((chosen.time(), due))
}

pub(super) fn step(world: &Rc<World>, until: u64) -> StepResult {
    if !world.errors.borrow().is_empty() {
        return StepResult::Failed;
    }
    if world.thread_calls.has_pending() {
        world.thread_calls.drain();
        crate::net::flush_dirty(world);
    }
    let (t, due) = match next_due(world, until) {
        Ok(due) => due,
        Err(stop) => return stop,
    };
    let steps = world.steps.get() + 1;
    world.steps.set(steps);
    if steps > world.cfg.max_steps {
        world.fail(SimError::StepBudget {
            steps: world.cfg.max_steps,
        });
        return StepResult::Failed;
    }
    world.now.set(t);
    // Hosts are looked at through short borrows of the table, never cloned: the hot path
    // of a step is a segment's arrival.
    let (host, outcome) = match due {
        Due::Packet(to) => {
            let pkt = world.net.link.flight.borrow_mut().take_front(to);
            world.touch(to);
            match pkt {
                Some(p) if world.with_host(to, |h| h.sync_to(t)) == Some(true) => {
                    let outcome =
                        catch_unwind(AssertUnwindSafe(|| crate::net::link::arrive(world, p)));
                    (Some(to), Some(outcome))
                }
                // The host is down (or gone): the packet is lost.
                _ => (None, None),
            }
        }
        Due::Queue(SYS) => {
            world.sys.set_now(Instant::from_nanos(t));
            let call = world.sys.pop_due(Instant::from_nanos(t)).map(|(_, f)| f);
            world.touch(SYS);
            (None, call.map(|f| catch_unwind(AssertUnwindSafe(f))))
        }
        Due::Queue(index) => {
            let call = world.with_host(index, |h| h.pop_due(t)).flatten();
            world.touch(index);
            (Some(index), call.map(|f| catch_unwind(AssertUnwindSafe(f))))
        }
    };
    if let Some(Err(payload)) = outcome {
        let message = torsion::error::Panicked::from_payload(payload).message;
        let name = host.map_or_else(|| "world".to_string(), |i| world.host_name(i));
        world.record(
            host,
            None,
            Kind::Panic {
                message: message.clone(),
            },
        );
        world.fail(SimError::Panic {
            host: name,
            conn: None,
            message,
        });
    }
    crate::net::flush_dirty(world);
    check_invariants(world);
    if world.errors.borrow().is_empty() {
        StepResult::Ran
    } else {
        StepResult::Failed
    }
}

fn check_invariants(world: &World) {
    evaluate_invariants(world, false);
}

/// Evaluates the invariants that are due after this step, or every invariant at the end of
/// a run (`at_end`), failing the run with each one that does not hold.
pub(super) fn evaluate_invariants(world: &World, at_end: bool) {
    if world.invariants.borrow().is_empty() {
        return;
    }
    let (steps, now) = (world.steps.get(), world.now.get());
    let failed: Vec<(String, String)> = {
        let inv = world.invariants.borrow();
        inv.iter()
            .filter(|i| at_end || due(i, steps, now))
            .filter_map(|i| (i.check)().err().map(|m| (i.name.clone(), m)))
            .collect()
    };
    for (name, message) in failed {
        world.fail(SimError::Invariant { name, message });
    }
}

/// Whether invariant `i` is evaluated after step number `steps`, at time `now`; records
/// the evaluation.
fn due(i: &Invariant, steps: u64, now: u64) -> bool {
    let (mark, period) = match i.cadence {
        Cadence::EveryStep => return true,
        Cadence::AtEnd => return false,
        Cadence::EverySteps(n) => (steps, n.max(1)),
        Cadence::Every(d) => (now, u64::try_from(d.as_nanos()).unwrap_or(u64::MAX)),
    };
    if mark.saturating_sub(i.last.get()) >= period {
        i.last.set(mark);
        true
    } else {
        false
    }
}
