//! The reactor: the contract every driver keeps, and the pieces drivers share.
//!
//! A reactor is an event loop. torsion has two: the real one over `mio` and the simulator's
//! host reactor. Protocols and Deferred chains are written against the traits here and cannot
//! tell which one runs them. The traits are split by capability, as Twisted's `IReactor*`
//! interfaces are; this module grows one per capability.
//!
//! # The contract
//!
//! Every reactor keeps these rules; the conformance suite is their executable form.
//!
//! 1. **Time is the reactor's.** [`ReactorTime::seconds`] is the reactor's own clock, an
//!    [`Instant`] with integer nanoseconds inside. Nothing else reads a clock.
//! 2. **Each call runs at its own time.** A delayed call scheduled for `t` runs when the clock
//!    reads `t` (or later, on a real reactor that was busy), never before a call scheduled for
//!    an earlier time.
//! 3. **Same-time calls run first-in, first-out**, ordered by (deadline, sequence). A call
//!    scheduled for "now" while another call runs goes after it, and after every call already
//!    due at that time: never inside it. (The simulator may reorder *independent* same-time
//!    events when its decision source says so; choice 0 is always FIFO.)
//! 4. **No synchronous re-entry.** Scheduling, cancelling, writing, closing, registering a
//!    producer or firing a Deferred never calls back into a protocol before returning: the
//!    work is queued and the loop dispatches it. Connection-scoped calls
//!    ([`Transport::call_later`](crate::protocol::Transport::call_later),
//!    [`Transport::when_fired`](crate::protocol::Transport::when_fired)) run from the loop
//!    and never after that connection's `connection_lost`.
//! 5. **Close after pending data.** `lose_connection` lets everything written before it reach
//!    the network first; the peer's `connection_lost(ConnectionDone)` comes after it received
//!    all of that data. `abort_connection` drops buffered data and reports
//!    `ConnectionAborted` on a later turn. A registered producer delays a clean close until it
//!    unregisters.
//! 6. **Backpressure.** A streaming producer is paused when its transport buffers more than
//!    64 KiB and resumed when the buffer drains to 16 KiB; a pull producer is asked for more
//!    each time the buffer empties.
//! 7. **Panics are isolated.** A panic in a protocol callback loses that connection, with a
//!    [`Panicked`](crate::error::Panicked) reason carrying the message; every other
//!    connection carries on. (The simulator also turns it into a failing seed.)
//! 8. **Stopping.** `stop` runs the `before` shutdown triggers, waits for the Deferreds they
//!    return, runs `during` and `after`, disconnects every connection and returns from `run`.
//!    `stop` when not running is [`ReactorError::NotRunning`]; a reactor runs once. A `stop`
//!    before `run` is also remembered: `run` then starts up and stops at once.
//!
//! The shared machinery lives in the engine so that drivers cannot drift apart:
//! [`TimerQueue`] (rules 2 and 3),
//! [`SystemEventTriggers`](crate::driver::SystemEventTriggers) (rule 8), and
//! [`Connection`](crate::driver::Connection) (rules 4 to 7 for stream connections).
//!

pub(crate) mod core;
mod random;
pub(crate) mod tcp;
pub(crate) mod threads;
mod time;
pub(crate) mod timer;
pub(crate) mod udp;

pub use self::core::{
    Phase, ReactorCore, ReactorCoreExt, ReactorError, SystemEvent, Trigger, TriggerId,
};
pub use random::{ReactorRandom, ReactorRandomExt, SplitMix64};
pub use tcp::{
    CannotListenError, ListeningPort, ReactorTcp, ReactorTcpExt, DEFAULT_BACKLOG,
    DEFAULT_CONNECT_TIMEOUT,
};
pub use threads::{ReactorThreads, ReactorThreadsExt, ThreadCall, ThreadCaller, ThreadWork};
pub use time::{Instant, ReactorTime, ReactorTimeExt};
pub use timer::DelayedCall;
// The driver kit's items, under their old paths for the crate's own use (the public path is
// `crate::driver`).
pub(crate) use self::core::Lifecycle;
pub(crate) use tcp::ListeningPortDriver;
pub(crate) use threads::{run_work, ThreadCallQueue};
pub(crate) use timer::TimerQueue;
#[cfg(feature = "mio")]
pub(crate) use udp::DatagramTransportDriver;
/// Every capability at once: what a protocol or application holds as `Rc<dyn Reactor>`.
/// Implemented for anything that has them all (the real reactor, each simulated host,
/// `MemoryReactor`).
pub trait Reactor:
    ReactorCore + ReactorTime + ReactorTcp + ReactorUdp + ReactorThreads + ReactorRandom
{
}

impl<R> Reactor for R where
    R: ReactorCore
        + ReactorTime
        + ReactorTcp
        + ReactorUdp
        + ReactorThreads
        + ReactorRandom
        + ?Sized
{
}

pub use udp::{
    DatagramProtocol, DatagramTransport, ReactorUdp, ReactorUdpExt, UdpError,
    DEFAULT_MAX_PACKET_SIZE,
};
