//! The scheduler: what runs next, and one step.
//!
//! Every scheduled call has an entry in the world's `wakeups` heap (an index over the
//! hosts' timer queues and the world's own); packets in flight wait in the link's queue.
//! Each step runs the earliest event; when events on *different* hosts are due at the same
//! instant, the decision source may pick which goes first (choice 0: FIFO). Events on the
//! same host always run in FIFO order: that is the reactor contract. After every event,
//! dirty connections are flushed and invariants checked.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::rc::Rc;

use torsion::reactor::Instant;

use super::{queue_of, Cadence, Invariant, SimError, World, SYS};
use crate::host::HostState;
use crate::keyed::{any_at, At};
use crate::net::flight::Flight;
use crate::trace::Kind;

#[derive(PartialEq, Eq)]
pub(super) enum StepResult {
    Ran,
    Idle,
    Limit,
    Failed,
}

/// The live (time, sequence) at the front of queue `index`, in global time.
fn front(world: &World, index: usize) -> Option<(u64, u64)> {
    if index == SYS {
        world.sys.next_key().map(|(t, seq)| (t.as_nanos(), seq))
    } else {
        world.with_host(index, HostState::next_global).flatten()
    }
}

/// What runs next.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Due {
    /// The front of a host's queue (or `SYS`, the world's).
    Queue(usize),
    /// A segment in flight, by its slot.
    Packet(u32),
}

/// Scratch vectors for [`next_due`], reused step after step (cleared before each use, so
/// nothing carries over between steps or worlds).
#[derive(Default)]
pub(crate) struct Scratch {
    stack: Vec<usize>,
    due: Vec<(u64, usize, u32)>,
    candidates: Vec<(u64, usize, Due)>,
}

/// Finds what runs next. Every scheduled call has an entry in `wakeups`, and the heap's
/// minimum is never later than any queue's front; so a minimum entry that is not its
/// queue's front is stale (cancelled or moved) and is dropped. Segments in flight wait in
/// their own heap. When several are due at the same instant on different hosts — a host's
/// earliest timer or segment, per host — the decision source picks one (choice 0: the
/// earliest scheduled). What is not picked stays where it is.
fn next_due(world: &World, until: u64) -> Result<(u64, Due), StepResult> {
    let mut flight = world.net.link.flight.borrow_mut();
    let packet_front = flight.front();
    let mut heap = world.wakeups.borrow_mut();
    // The queues' index is validated only as far as it matters: an entry later than the
    // earliest segment cannot run next, stale or not (most steps are segments).
    let queue_front = loop {
        let Some(&top) = heap.peek() else {
            break None;
        };
        let ((t, seq), index) = (top.key(), queue_of(&top));
        if packet_front.is_some_and(|p| p < (t, seq)) || front(world, index) == Some((t, seq)) {
            break Some((t, seq, index));
        }
        heap.pop();
    };
    // (time, what, on which host).
    let first = match (queue_front, packet_front) {
        (None, None) => return Err(StepResult::Idle),
        (Some((t, seq, i)), p) if p.is_none_or(|p| (t, seq) < p) => (t, Due::Queue(i), i),
        (_, Some((t, _))) => {
            let (slot, host) = flight.front_slot().unwrap_or((u32::MAX, usize::MAX));
            (t, Due::Packet(slot), host)
        }
        (Some((t, _, i)), None) => (t, Due::Queue(i), i),
    };
    let t = first.0;
    if t > until {
        return Err(StepResult::Limit);
    }
    // Anything else due at `t`? In a min-heap, only if a child of the root is.
    let child_at = |slice: &[At]| slice.iter().skip(1).take(2).any(|e| e.time() == t);
    let others = usize::from(queue_front.is_some_and(|q| q.0 == t))
        + usize::from(packet_front.is_some_and(|p| p.0 == t))
        + usize::from(child_at(heap.as_slice()))
        + usize::from(flight.second_at(t));
    let chosen = if world.cfg.reorder && others >= 2 {
        let mut guard = world.scratch.borrow_mut();
        let sc = &mut *guard;
        // A choice exists only if something due at `t` is on another host than the first
        // (simultaneous segments of one connection are the common case, and need none).
        // Stale queue entries count here; the full look validates them.
        let host = first.2;
        let several = any_at(heap.as_slice(), t, &mut sc.stack, |e| queue_of(e) != host)
            || flight.other_host_at(t, host, &mut sc.stack);
        if several {
            pick(world, heap.as_slice(), &flight, t, sc).unwrap_or(first.1)
        } else {
            first.1
        }
    } else {
        first.1
    };
    if chosen == first.1 {
        if let Due::Queue(_) = first.1 {
            heap.pop();
        }
    }
    Ok((t, chosen))
}

/// Picks among the hosts with something due at `t`: per host, the earliest of its due
/// timers and due segments is a candidate; candidates in scheduling order, the decision
/// source chooses (choice 0: the earliest). `None` if only one host has anything due.
fn pick(world: &World, wakeups: &[At], flight: &Flight, t: u64, sc: &mut Scratch) -> Option<Due> {
    let candidates = &mut sc.candidates;
    candidates.clear();
    any_at(wakeups, t, &mut sc.stack, |e| {
        let (key, index) = (e.key(), queue_of(e));
        if front(world, index) == Some(key) && !candidates.iter().any(|c| c.1 == index) {
            candidates.push((key.1, index, Due::Queue(index)));
        }
        false
    });
    flight.due_at(t, &mut sc.due, &mut sc.stack);
    for &(seq, host, slot) in &sc.due {
        match candidates.iter_mut().find(|c| c.1 == host) {
            Some(c) if c.0 < seq => {}
            Some(c) => *c = (seq, host, Due::Packet(slot)),
            None => candidates.push((seq, host, Due::Packet(slot))),
        }
    }
    if candidates.len() < 2 {
        return None;
    }
    candidates.sort_unstable_by_key(|c| c.0);
    let mut pct = world.pct.borrow_mut();
    let i = match pct.as_mut() {
        Some(pct) => {
            sc.stack.clear();
            sc.stack.extend(candidates.iter().map(|c| c.1));
            pct.pick(&sc.stack, &mut world.decide.borrow_mut())
        }
        None => world.choose(candidates.len() as u64) as usize,
    };
    Some(candidates[i].2)
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
        Due::Packet(slot) => {
            let pkt = world.net.link.flight.borrow_mut().take(slot);
            match pkt {
                Some(p) if world.with_host(p.to, |h| h.sync_to(t)) == Some(true) => {
                    let to = p.to;
                    let outcome =
                        catch_unwind(AssertUnwindSafe(|| crate::net::link::arrive(world, p)));
                    (Some(to), Some(outcome))
                }
                // The host is down (or gone): the segment is lost.
                _ => (None, None),
            }
        }
        Due::Queue(SYS) => {
            world.sys.set_now(Instant::from_nanos(t));
            let call = world.sys.pop_due(Instant::from_nanos(t)).map(|(_, f)| f);
            (None, call.map(|f| catch_unwind(AssertUnwindSafe(f))))
        }
        Due::Queue(index) => {
            let call = world.with_host(index, |h| h.pop_due(t)).flatten();
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
