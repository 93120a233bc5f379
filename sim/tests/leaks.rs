//! A simulated world frees everything it built: protocols and their connections are dropped
//! after `connection_lost`, when a host crashes, and when the world itself is dropped with
//! connections still open.

use std::cell::Cell;
use std::rc::Rc;
use std::time::Duration;

use torsion::prelude::*;
use torsion::protocol::{factory_fn, Protocol, Transport};
use torsion_sim::Sim;

/// Counts live protocols.
struct Counted {
    live: Rc<Cell<i64>>,
    t: Transport,
    /// Close after this many bytes (`None`: stay open).
    close_after: Option<usize>,
    got: usize,
}

impl Counted {
    fn boxed(live: &Rc<Cell<i64>>, close_after: Option<usize>) -> Box<dyn Protocol> {
        live.set(live.get() + 1);
        Box::new(Counted {
            live: live.clone(),
            t: Transport::default(),
            close_after,
            got: 0,
        })
    }
}

impl Drop for Counted {
    fn drop(&mut self) {
        self.live.set(self.live.get() - 1);
    }
}

impl Protocol for Counted {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        t.write(b"hello");
    }
    fn data_received(&mut self, d: &[u8]) {
        self.got += d.len();
        if self.close_after.is_some_and(|n| self.got >= n) {
            self.t.lose_connection();
        }
    }
}

/// A world with a server and a client host: `closed` connections end with a clean close,
/// `open` ones stay up.
fn world(seed: u64, live: &Rc<Cell<i64>>, closed: usize, open: usize) -> Sim {
    let sim = Sim::new(seed);
    let server = sim.host("server");
    let client = sim.host("client");
    let l = live.clone();
    server
        .listen_tcp(80, factory_fn(move |_| Some(Counted::boxed(&l, None))))
        .expect("listen");
    for i in 0..closed + open {
        let l = live.clone();
        let close_after = (i < closed).then_some(5);
        client.connect_tcp(
            "server",
            80,
            factory_fn(move |_| Some(Counted::boxed(&l, close_after))),
        );
    }
    sim
}

#[test]
fn closed_connections_free_their_protocols_during_the_run() {
    for seed in 0..20 {
        let live = Rc::new(Cell::new(0));
        let sim = world(seed, &live, 4, 0);
        sim.run_for(Duration::from_secs(5));
        assert_eq!(live.get(), 0, "seed {seed}: protocols left after close");
        assert!(sim.errors().is_empty(), "{:?}", sim.errors());
    }
}

#[test]
fn a_dropped_world_frees_its_protocols() {
    for seed in 0..20 {
        let live = Rc::new(Cell::new(0));
        let sim = world(seed, &live, 2, 3);
        sim.run_for(Duration::from_secs(5));
        assert_eq!(live.get(), 6, "seed {seed}: three connections stay open");
        drop(sim);
        assert_eq!(live.get(), 0, "seed {seed}: protocols left after the world");
    }
}

#[test]
fn a_crashed_host_frees_its_protocols() {
    let live = Rc::new(Cell::new(0));
    let sim = world(1, &live, 0, 3);
    sim.run_for(Duration::from_secs(5));
    assert_eq!(live.get(), 6);
    sim.host("server").crash();
    assert_eq!(live.get(), 3, "the server's protocols vanish with it");
    drop(sim);
    assert_eq!(live.get(), 0);
}

/// Bytes allocated and not yet freed, by this thread (tests run on threads of their own).
mod counting {
    use std::alloc::{GlobalAlloc, Layout, System};
    use std::cell::Cell;

    thread_local! {
        static NET: Cell<i64> = const { Cell::new(0) };
    }

    fn add(n: i64) {
        let _ = NET.try_with(|c| c.set(c.get() + n));
    }

    /// The net bytes this thread holds.
    pub fn net() -> i64 {
        NET.with(Cell::get)
    }

    pub struct Counting;

    // SAFETY: every call is forwarded to `System` unchanged; only a thread-local counter is
    // updated besides (a const-initialised `Cell`, which never allocates).
    unsafe impl GlobalAlloc for Counting {
        unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as i64);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc(layout) }
        }
        unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
            add(-(layout.size() as i64));
            // SAFETY: the caller's contract, passed on.
            unsafe { System.dealloc(ptr, layout) };
        }
        unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
            add(layout.size() as i64);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.alloc_zeroed(layout) }
        }
        unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
            add(new_size as i64 - layout.size() as i64);
            // SAFETY: the caller's contract, passed on.
            unsafe { System.realloc(ptr, layout, new_size) }
        }
    }
}

#[global_allocator]
static ALLOC: counting::Counting = counting::Counting;

#[test]
fn a_dropped_world_gives_back_all_its_memory() {
    let live = Rc::new(Cell::new(0));
    // A first world warms up whatever is allocated once per thread.
    drop(world(0, &live, 2, 2));
    let before = counting::net();
    for seed in 1..6 {
        let sim = world(seed, &live, 2, 2);
        sim.run_for(Duration::from_secs(5));
        drop(sim);
    }
    let kept = counting::net() - before;
    assert_eq!(kept, 0, "bytes kept after five worlds were dropped");
    assert_eq!(live.get(), 0);
}
