//! Faults: what can go wrong in a run, as rules the network and the world apply.
//!
//! Probabilistic faults (a reset on a segment, a refused connect, a latency spike) are
//! decided per event through the decision source, where "no fault" is choice 0, so shrinking
//! a failing run removes the faults it did not need. Scheduled faults (partitions, crashes)
//! are drawn up front, also through the decision source, in swarm mode.
//!
//! Swarm testing (as in TigerBeetle's VOPR): each seed draws its own fault mix — some seeds
//! have no resets and many partitions, others the reverse — because a uniform mix hides the
//! bugs that need one fault to be frequent and another absent. The mix is printed with the
//! seed ([`Faults::describe`]).

use std::fmt::Write as _;
use std::time::Duration;

use crate::decide::Decisions;

/// A scheduled partition between two hosts (by index).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Partition {
    /// When it starts, from the start of the run.
    pub at: Duration,
    /// How long it lasts.
    pub duration: Duration,
    /// One side.
    pub a: usize,
    /// The other side.
    pub b: usize,
    /// Only `a` to `b` is cut (otherwise both directions).
    pub one_way: bool,
}

/// A scheduled crash of a host, and its restart.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Crash {
    /// When, from the start of the run.
    pub at: Duration,
    /// Which host (index).
    pub host: usize,
    /// Restart after this long (`None`: stays down).
    pub restart_after: Option<Duration>,
}

/// The faults of a run.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Faults {
    /// Per TCP data segment, in millionths: the connection is reset.
    pub reset_ppm: u32,
    /// Per connection attempt, in millionths: refused.
    pub refuse_ppm: u32,
    /// Per packet (of any kind), in millionths: an extra delay of up to `spike`.
    pub spike_ppm: u32,
    /// The largest latency spike.
    pub spike: Duration,
    /// Scheduled partitions.
    pub partitions: Vec<Partition>,
    /// Scheduled crashes.
    pub crashes: Vec<Crash>,
    /// Largest per-host clock drift, in millionths (each host draws its own in `0..=max`).
    pub drift_ppm_max: u32,
    /// Per UDP datagram, in millionths: lost.
    pub udp_loss_ppm: u32,
    /// Per UDP datagram, in millionths: delivered twice.
    pub udp_dup_ppm: u32,
    /// Per UDP datagram, in millionths: it does not keep its place in the order of its
    /// link's datagrams (without this, datagrams between two hosts arrive in the order
    /// sent).
    pub udp_reorder_ppm: u32,
}

impl Faults {
    /// No faults.
    pub fn none() -> Self {
        Faults::default()
    }

    /// Whether there are no faults at all.
    pub fn is_none(&self) -> bool {
        *self == Faults::default()
    }

    /// Draws a fault mix for a run over `hosts` hosts lasting about `horizon`, from the
    /// decision source (choice 0 everywhere gives no faults). Host 0 is taken to be a server
    /// and is never crashed for good.
    ///
    /// Magnitudes scale with the horizon, on a log scale so that short and long ones are
    /// both common: the largest latency spike is drawn between a thousandth and half of the
    /// horizon, partitions and crash-to-restart times between 10 ms and half of it. With a
    /// horizon of seconds, a spike or a partition outlasts the timeouts protocols commonly
    /// use (a second or a few) in a good share of the seeds. Partitions and crashes start
    /// anywhere in the horizon.
    pub fn swarm(d: &mut Decisions, hosts: usize, horizon: Duration) -> Self {
        Faults::draw(d, hosts, horizon, false)
    }

    /// The fault mix of the default portfolio's swarm seeds (see
    /// [`SimBuilder::portfolio`](crate::SimBuilder::portfolio)): as [`Faults::swarm`], for a
    /// body whose hosts and span are not known when the world is built. Partitions and crashes
    /// concern the first two hosts created (commonly a server and its first client), and
    /// start at a time drawn on a log scale from 1 ms to the horizon, so that most fall early,
    /// within a short workload, while some reach late.
    pub fn swarm_unknown_span(d: &mut Decisions, horizon: Duration) -> Self {
        Faults::draw(d, 2, horizon, true)
    }

    fn draw(d: &mut Decisions, hosts: usize, horizon: Duration, log_starts: bool) -> Self {
        const RATES: [u32; 4] = [0, 200, 2_000, 20_000];
        let horizon_ms = u64::try_from(horizon.as_millis()).map_or(u64::MAX, |ms| ms.max(1));
        let mut f = Faults {
            reset_ppm: RATES[d.choose(4) as usize],
            refuse_ppm: RATES[d.choose(4) as usize] * 5,
            spike_ppm: RATES[d.choose(4) as usize] * 5,
            ..Faults::default()
        };
        if f.spike_ppm > 0 {
            let most = (horizon_ms / 2).max(1);
            f.spike = Duration::from_millis(log_ms(d, (horizon_ms / 1_000).clamp(1, most), most));
        }
        f.drift_ppm_max = [0, 100, 1_000][d.choose(3) as usize];
        let start = |d: &mut Decisions| {
            if log_starts {
                log_ms(d, 1, horizon_ms)
            } else {
                d.range(0, horizon_ms)
            }
        };
        let span = |d: &mut Decisions| log_ms(d, 10, (horizon_ms / 2).max(10));
        if hosts >= 2 {
            for _ in 0..d.choose(4) {
                let a = d.choose(hosts as u64) as usize;
                let b = (a + 1 + d.choose(hosts as u64 - 1) as usize) % hosts;
                f.partitions.push(Partition {
                    at: Duration::from_millis(start(d)),
                    duration: Duration::from_millis(span(d)),
                    a,
                    b,
                    one_way: d.choose(2) == 1,
                });
            }
            for _ in 0..d.choose(3) {
                f.crashes.push(Crash {
                    at: Duration::from_millis(start(d)),
                    host: d.choose(hosts as u64) as usize,
                    restart_after: Some(Duration::from_millis(span(d))),
                });
            }
        }
        f.udp_loss_ppm = RATES[d.choose(4) as usize] * 5;
        f.udp_dup_ppm = RATES[d.choose(4) as usize] * 5;
        f.udp_reorder_ppm = RATES[d.choose(4) as usize] * 5;
        f
    }

    /// A one-line description, printed with a failing seed.
    pub fn describe(&self, host_names: &[String]) -> String {
        if self.is_none() {
            return "no faults".into();
        }
        let name = |i: usize| {
            host_names
                .get(i)
                .cloned()
                .unwrap_or_else(|| format!("h{i}"))
        };
        let mut s = format!(
            "reset {}ppm, refuse {}ppm, spike {}ppm up to {:?}, drift up to {}ppm",
            self.reset_ppm, self.refuse_ppm, self.spike_ppm, self.spike, self.drift_ppm_max
        );
        if self.udp_loss_ppm > 0 || self.udp_dup_ppm > 0 || self.udp_reorder_ppm > 0 {
            let _ = write!(
                s,
                ", udp loss {}ppm dup {}ppm reorder {}ppm",
                self.udp_loss_ppm, self.udp_dup_ppm, self.udp_reorder_ppm
            );
        }
        for p in &self.partitions {
            let arrow = if p.one_way { "->" } else { "<->" };
            let _ = write!(
                s,
                "; partition {}{arrow}{} at {:?} for {:?}",
                name(p.a),
                name(p.b),
                p.at,
                p.duration
            );
        }
        for c in &self.crashes {
            let _ = write!(s, "; crash {} at {:?}", name(c.host), c.at);
            if let Some(r) = c.restart_after {
                let _ = write!(s, " restart after {r:?}");
            }
        }
        s
    }
}

/// A number of milliseconds in `lo..=hi` drawn on a log scale (a power of two times `lo`,
/// then uniform up to the next one), choice 0 giving `lo`.
pub(crate) fn log_ms(d: &mut Decisions, lo: u64, hi: u64) -> u64 {
    let lo = lo.max(1);
    if hi <= lo {
        return lo;
    }
    let doublings = u64::from((hi / lo).ilog2());
    let base = lo.saturating_mul(1 << doublings.min(63));
    let base = lo
        .saturating_mul(1u64 << d.choose(doublings + 1).min(63))
        .min(base);
    base.saturating_add(d.range(0, base.saturating_sub(1)))
        .min(hi)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn swarm_with_all_zero_choices_is_no_faults() {
        let mut d = Decisions::replay(vec![]);
        let f = Faults::swarm(&mut d, 5, Duration::from_secs(10));
        assert!(f.is_none(), "{f:?}");
        assert_eq!(f.describe(&[]), "no faults");
    }

    #[test]
    fn swarm_spikes_and_partitions_scale_with_the_horizon() {
        let (mut long_spike, mut long_partition) = (0, 0);
        for seed in 0..400 {
            let mut d = Decisions::seeded(seed);
            let f = Faults::swarm(&mut d, 2, Duration::from_secs(10));
            assert!(f.spike <= Duration::from_secs(5));
            long_spike += usize::from(f.spike > Duration::from_secs(1));
            for p in &f.partitions {
                assert!(p.duration <= Duration::from_secs(5) && p.at <= Duration::from_secs(10));
                long_partition += usize::from(p.duration > Duration::from_secs(1));
            }
        }
        // Spikes and partitions beyond a common 1 s timeout are not rare.
        assert!(long_spike > 20, "{long_spike}");
        assert!(long_partition > 20, "{long_partition}");
    }

    #[test]
    fn log_ms_stays_in_range_and_zero_is_the_least() {
        assert_eq!(log_ms(&mut Decisions::replay(vec![]), 10, 5_000), 10);
        let mut d = Decisions::seeded(1);
        let drawn: Vec<u64> = (0..2_000).map(|_| log_ms(&mut d, 10, 5_000)).collect();
        assert!(drawn.iter().all(|&v| (10..=5_000).contains(&v)));
        assert!(drawn.iter().any(|&v| v < 40) && drawn.iter().any(|&v| v > 2_500));
    }

    #[test]
    fn swarm_mixes_differ_across_seeds_and_stay_in_range() {
        let mut seen = std::collections::BTreeSet::new();
        for seed in 0..50 {
            let mut d = Decisions::seeded(seed);
            let f = Faults::swarm(&mut d, 4, Duration::from_secs(10));
            for p in &f.partitions {
                assert!(p.a < 4 && p.b < 4 && p.a != p.b);
            }
            for c in &f.crashes {
                assert!(c.host < 4);
            }
            seen.insert(f.describe(&[]));
        }
        assert!(seen.len() > 40, "mixes should vary: {}", seen.len());
    }
}
