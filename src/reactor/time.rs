//! The time capability (Twisted's `IReactorTime`) and the reactor's [`Instant`].

use std::fmt;
use std::ops::{Add, Sub};
use std::time::Duration;

use crate::reactor::DelayedCall;

/// A reading of a reactor's clock: nanoseconds since that reactor's epoch.
///
/// Integer nanoseconds keep traces and comparisons exact: nothing depends on float formatting.
/// For the real reactor the epoch is when it was created; for the simulator, the start of the
/// run (plus a host's drift).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Instant(u64);

impl Instant {
    /// The epoch.
    pub const ZERO: Instant = Instant(0);

    /// The instant `nanos` nanoseconds after the epoch.
    pub const fn from_nanos(nanos: u64) -> Self {
        Instant(nanos)
    }

    /// Nanoseconds since the epoch.
    pub const fn as_nanos(self) -> u64 {
        self.0
    }

    /// Time since the epoch.
    pub const fn since_epoch(self) -> Duration {
        Duration::from_nanos(self.0)
    }

    /// Seconds since the epoch, as Twisted's `seconds()` returns them (for display only).
    pub fn as_secs_f64(self) -> f64 {
        self.0 as f64 / 1e9
    }

    /// `self + d`, saturating at the end of time instead of overflowing.
    pub fn saturating_add(self, d: Duration) -> Instant {
        let nanos = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        Instant(self.0.saturating_add(nanos))
    }

    /// The time from `earlier` to `self`, or zero if `earlier` is later.
    pub fn saturating_duration_since(self, earlier: Instant) -> Duration {
        Duration::from_nanos(self.0.saturating_sub(earlier.0))
    }
}

impl Add<Duration> for Instant {
    type Output = Instant;
    fn add(self, d: Duration) -> Instant {
        self.saturating_add(d)
    }
}

impl Sub<Instant> for Instant {
    type Output = Duration;
    fn sub(self, earlier: Instant) -> Duration {
        self.saturating_duration_since(earlier)
    }
}

impl fmt::Debug for Instant {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Instant({}ns)", self.0)
    }
}

impl fmt::Display for Instant {
    /// Seconds with nanosecond precision, from integers: `12.000000500s`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "{}.{:09}s",
            self.0 / 1_000_000_000,
            self.0 % 1_000_000_000
        )
    }
}

/// The time capability of a reactor (Twisted's `IReactorTime`). Object-safe: hold it as
/// `Rc<dyn ReactorTime>` or as a generic. The closure-taking forms most code calls are in
/// [`ReactorTimeExt`].
pub trait ReactorTime {
    /// The reactor's current time.
    fn seconds(&self) -> Instant;

    /// Runs `f` after `delay` (zero: after everything already due now). See
    /// [`ReactorTimeExt::call_later`], which takes any closure.
    ///
    /// `#[track_caller]`: a reactor may record where a call was scheduled (the simulator
    /// names each timer in its trace by its call site).
    #[track_caller]
    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall;
}

/// Closure-taking forms of [`ReactorTime`], for every implementor and for `dyn ReactorTime`.
pub trait ReactorTimeExt: ReactorTime {
    /// Twisted's `callLater`: runs `f` once, `delay` from now, and returns the handle that can
    /// cancel, reset or delay it.
    ///
    /// ```
    /// use std::{cell::Cell, rc::Rc, time::Duration};
    /// use torsion::prelude::*;
    /// use torsion::testing::Clock;
    ///
    /// let clock = Clock::new();
    /// let fired = Rc::new(Cell::new(false));
    /// let f = fired.clone();
    /// let call = clock.call_later(Duration::from_secs(2), move || f.set(true));
    /// clock.advance(Duration::from_secs(1));
    /// assert!(call.active() && !fired.get());
    /// clock.advance(Duration::from_secs(1));
    /// assert!(!call.active() && fired.get());
    /// ```
    #[track_caller]
    fn call_later(&self, delay: Duration, f: impl FnOnce() + 'static) -> DelayedCall {
        self.call_later_boxed(delay, Box::new(f))
    }

    /// Runs `f` after everything already due now (`call_later(0)`).
    #[track_caller]
    fn call_soon(&self, f: impl FnOnce() + 'static) -> DelayedCall {
        self.call_later_boxed(Duration::ZERO, Box::new(f))
    }
}

impl<R: ReactorTime + ?Sized> ReactorTimeExt for R {}

impl<R: ReactorTime + ?Sized> ReactorTime for std::rc::Rc<R> {
    fn seconds(&self) -> Instant {
        (**self).seconds()
    }
    #[track_caller]
    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        (**self).call_later_boxed(delay, f)
    }
}

impl<R: ReactorTime + ?Sized> ReactorTime for &R {
    fn seconds(&self) -> Instant {
        (**self).seconds()
    }
    #[track_caller]
    fn call_later_boxed(&self, delay: Duration, f: Box<dyn FnOnce()>) -> DelayedCall {
        (**self).call_later_boxed(delay, f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn instant_display_uses_integer_nanoseconds() {
        assert_eq!(
            Instant::from_nanos(12_000_000_500).to_string(),
            "12.000000500s"
        );
        assert_eq!(Instant::ZERO.to_string(), "0.000000000s");
    }

    #[test]
    fn instant_arithmetic_saturates() {
        let t = Instant::from_nanos(u64::MAX - 1);
        assert_eq!((t + Duration::from_secs(1)).as_nanos(), u64::MAX);
        assert_eq!(Instant::ZERO - t, Duration::ZERO);
        assert_eq!(t - Instant::ZERO, Duration::from_nanos(u64::MAX - 1));
    }
}
