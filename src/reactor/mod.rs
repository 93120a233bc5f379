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
//!    reads `t`, never later than calls scheduled for an earlier time.
//! 3. **Same-time calls run first-in, first-out**, ordered by (deadline, sequence). A call
//!    scheduled for "now" while another call runs goes after it (and after every call already
//!    due at that time), never inside it.
//! 4. **No synchronous re-entry.** Scheduling, cancelling, writing or closing never calls back
//!    into user code before returning: the work is queued and the loop dispatches it.
//!
//! [`TimerQueue`] implements rules 2 and 3 once, for every driver.

mod core;
mod random;
mod tcp;
mod time;
mod timer;
mod udp;

pub use self::core::{
    Phase, ReactorCore, ReactorCoreExt, ReactorError, SystemEvent, SystemEventTriggers, Trigger,
    TriggerId,
};
pub use random::{ReactorRandom, ReactorRandomExt, SplitMix64};
pub use tcp::{
    CannotListenError, ListeningPort, ListeningPortDriver, ReactorTcp, ReactorTcpExt,
    DEFAULT_BACKLOG, DEFAULT_CONNECT_TIMEOUT,
};
pub use time::{Instant, ReactorTime, ReactorTimeExt};
pub use timer::{DelayedCall, TimerQueue};
pub use udp::{
    DatagramProtocol, DatagramTransport, DatagramTransportDriver, ReactorUdp, ReactorUdpExt,
    UdpError, DEFAULT_MAX_PACKET_SIZE,
};
