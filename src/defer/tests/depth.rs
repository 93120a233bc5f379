//! Chains of 100,000: no recursion in firing, chaining, cancelling or dropping.

use std::cell::Cell;
use std::rc::Rc;

use crate::defer::{Deferred, Failure};
use crate::error::CancelledError;

const N: usize = 100_000;

/// Runs `f` on a thread with a 2 MiB stack (tests may spawn threads; engine code may not).
fn on_small_stack(f: impl FnOnce() + Send + 'static) {
    #[allow(clippy::disallowed_methods)]
    let handle = std::thread::Builder::new()
        .stack_size(2 * 1024 * 1024)
        .spawn(f)
        .expect("spawn");
    handle.join().expect("no stack overflow");
}

/// d0's callback returns d1, d1's returns d2, ...; the innermost fires last, and the result
/// travels back out through every one.
fn nested_chain_fired_innermost_last() {
    let ds: Vec<Deferred<usize>> = (0..N).map(|_| Deferred::new()).collect();
    let mut tails = Vec::with_capacity(N);
    for i in 0..N - 1 {
        let next = ds[i + 1].clone();
        tails.push(ds[i].clone().and_then(move |_| next));
    }
    for d in &ds[..N - 1] {
        d.callback(0).unwrap();
    }
    assert!(!tails[0].has_result(), "the outermost waits");
    ds[N - 1].callback(7).unwrap();
    assert_eq!(tails[0].result().unwrap().ok(), Some(7));
}

/// The same chain where each inner Deferred already fired when returned.
fn nested_chain_fired_innermost_first() {
    let ds: Vec<Deferred<usize>> = (0..N).map(|_| Deferred::new()).collect();
    ds[N - 1].callback(9).unwrap();
    let mut last = None;
    for i in (0..N - 1).rev() {
        let next = ds[i + 1].clone();
        let t = ds[i].clone().and_then(move |_| next);
        ds[i].callback(0).unwrap();
        last = Some(t);
    }
    assert_eq!(last.unwrap().result().unwrap().ok(), Some(9));
}

/// Every Deferred's callback returns the next *unfired* Deferred and they fire outermost
/// first: resumption cascades inward-out through 100,000 levels.
fn cascade_fired_outermost_first() {
    let ds: Vec<Deferred<usize>> = (0..N).map(|_| Deferred::new()).collect();
    let tail = ds[0].clone().and_then({
        let d1 = ds[1].clone();
        move |_| d1
    });
    for i in 1..N - 1 {
        let next = ds[i + 1].clone();
        let _ = ds[i].clone().and_then(move |_| next);
    }
    for d in &ds[..N - 1] {
        d.callback(0).unwrap();
    }
    ds[N - 1].callback(N).unwrap();
    assert_eq!(tail.result().unwrap().ok(), Some(N));
}

fn chain_deferred_links() {
    let ds: Vec<Deferred<usize>> = (0..N).map(|_| Deferred::new()).collect();
    for i in 0..N - 1 {
        let _ = ds[i].clone().chain_deferred(&ds[i + 1]);
    }
    let end = ds[N - 1].clone().add_callback(|v| v + 1);
    ds[0].callback(41).unwrap();
    assert_eq!(end.result().unwrap().ok(), Some(42));
}

fn many_callbacks_on_one() {
    let d = Deferred::<u64>::new();
    let mut tail = d.clone();
    for _ in 0..N {
        tail = tail.add_callback(|v| v + 1);
    }
    d.callback(0).unwrap();
    assert_eq!(tail.result().unwrap().ok(), Some(N as u64));
}

fn cancel_through_nested_waits() {
    let ds: Vec<Deferred<usize>> = (0..N).map(|_| Deferred::new()).collect();
    let cancelled = Rc::new(Cell::new(false));
    let c = cancelled.clone();
    let innermost = Deferred::<usize>::with_canceller(move |_| c.set(true));
    let mut tails = Vec::new();
    // Every callback first (a callback added after a Deferred was returned by another's
    // callback would run after the hand-over), then fire outermost first.
    for i in 0..N {
        let next = if i + 1 < N {
            ds[i + 1].clone()
        } else {
            innermost.clone()
        };
        tails.push(ds[i].clone().and_then(move |_| next));
    }
    for d in &ds {
        d.callback(0).unwrap();
    }
    tails[0].cancel();
    assert!(cancelled.get(), "cancel reached the innermost Deferred");
    let f: Failure = tails[0].result().unwrap().unwrap_err();
    assert!(f.is::<CancelledError>());
}

/// The same nesting with only the outermost handle kept: the chain holds every level
/// strongly for `cancel`, which still reaches the innermost canceller; then dropping that
/// one handle frees all 100,000 levels without recursion.
fn cancel_and_drop_through_nested_waits_nobody_else_holds() {
    let cancelled = Rc::new(Cell::new(false));
    let c = cancelled.clone();
    let innermost = Deferred::<usize>::with_canceller(move |_| c.set(true));
    let probe = std::rc::Rc::downgrade(&innermost.core);
    let mut next = Some(innermost);
    let mut outer_tail = None;
    for _ in 0..N {
        let d = Deferred::<usize>::new();
        let inner = next.take().expect("set each turn");
        let tail = d.clone().and_then(move |_| inner);
        d.callback(0).unwrap();
        next = Some(tail.clone());
        outer_tail = Some(tail);
    }
    drop(next);
    let outer = outer_tail.expect("N > 0");
    assert!(probe.upgrade().is_some(), "kept alive through the chain");
    let kept = outer.clone();
    drop(outer);
    kept.cancel();
    assert!(cancelled.get(), "cancel reached the innermost Deferred");
    assert!(kept.result().unwrap().unwrap_err().is::<CancelledError>());
    drop(kept);
    assert!(probe.upgrade().is_none());

    // Abandoned instead of cancelled: every level is freed.
    let innermost = Deferred::<usize>::new();
    let probe = std::rc::Rc::downgrade(&innermost.core);
    let mut next = innermost;
    for _ in 0..N {
        let d = Deferred::<usize>::new();
        let inner = next;
        next = d.clone().and_then(move |_| inner);
        d.callback(0).unwrap();
    }
    assert!(probe.upgrade().is_some());
    drop(next);
    assert!(
        probe.upgrade().is_none(),
        "no reference cycle holds the chain"
    );
}

/// An unfired chain of waiting Deferreds, dropped: no recursion in drop.
fn drop_long_waiting_chain() {
    let ds: Vec<Deferred<usize>> = (0..N).map(|_| Deferred::new()).collect();
    for i in 0..N - 1 {
        let next = ds[i + 1].clone();
        let _ = ds[i].clone().and_then(move |_| next);
    }
    for d in &ds[..N - 1] {
        d.callback(0).unwrap();
    }
    assert!(
        ds[0].paused() && ds[N - 2].paused(),
        "a chain of 100,000 waits"
    );
    drop(ds); // d_{N-1} holds the whole chain through its Resume links
}

macro_rules! both_stacks {
    ($($name:ident),*) => {
        $(
            mod $name {
                #[test]
                fn main_thread() {
                    super::$name();
                }
                #[test]
                fn two_mib_thread() {
                    super::on_small_stack(super::$name);
                }
            }
        )*
    };
}

both_stacks!(
    nested_chain_fired_innermost_last,
    nested_chain_fired_innermost_first,
    cascade_fired_outermost_first,
    chain_deferred_links,
    many_callbacks_on_one,
    cancel_through_nested_waits,
    cancel_and_drop_through_nested_waits_nobody_else_holds,
    drop_long_waiting_chain
);
