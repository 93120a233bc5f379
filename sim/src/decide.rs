//! The decision source: every nondeterministic choice of a run, as one `choose(n)`.
//!
//! Latency, how a write splits into segments, the order of simultaneous events on different
//! hosts, whether a fault fires, which faults a swarm run has: each is one call to
//! [`Decisions::choose`], which returns a number in `0..n`. **Choice 0 is always the simplest
//! outcome** (least latency, the whole write in one segment, first-in first-out, no fault).
//!
//! Two sources feed it: a `ChaCha8Rng` seeded from a `u64` (exploration), or a recorded
//! sequence of choices (replay and shrinking; past its end every choice is 0). Either can
//! record the choices it made. Shrinking a failing run is then shrinking its choice sequence
//! toward shorter and smaller, as Hypothesis does; and because a shorter or smaller sequence
//! means fewer and milder hardships, the shrunk run is the simplest story of the failure.
//!
//! `choose(1)` and `choose(0)` consume nothing: a decision with one outcome is no decision,
//! and skipping it keeps recorded sequences short and stable under shrinking.

use rand_chacha::ChaCha8Rng;
use rand_core::{Rng, SeedableRng};

enum Source {
    Seeded(Box<ChaCha8Rng>),
    Replay { choices: Vec<u64>, pos: usize },
}

/// Where a run's choices come from, and (optionally) the record of what they were.
pub struct Decisions {
    source: Source,
    /// Forced first choices of a seeded source (see [`Decisions::seeded_after`]).
    prefix: Vec<u64>,
    record: Option<Vec<u64>>,
    made: u64,
}

impl Decisions {
    /// Choices drawn from ChaCha8 seeded with `seed`.
    pub fn seeded(seed: u64) -> Self {
        Decisions {
            source: Source::Seeded(Box::new(ChaCha8Rng::seed_from_u64(seed))),
            prefix: Vec::new(),
            record: None,
            made: 0,
        }
    }

    /// Choices replayed from `choices`; past the end, every choice is 0.
    pub fn replay(choices: Vec<u64>) -> Self {
        Decisions {
            source: Source::Replay { choices, pos: 0 },
            prefix: Vec::new(),
            record: None,
            made: 0,
        }
    }

    /// Choices drawn from ChaCha8 seeded with `seed`, except the first ones, which are
    /// `prefix` (each reduced modulo its decision's outcomes, as in a replay). The forced
    /// choices are recorded like any other, so a recorded run replays without the seed.
    pub fn seeded_after(prefix: Vec<u64>, seed: u64) -> Self {
        let mut d = Decisions::seeded(seed);
        d.prefix = prefix;
        d.prefix.reverse();
        d
    }

    /// Starts recording the choices made from now on.
    pub fn start_recording(&mut self) {
        self.record = Some(Vec::new());
    }

    /// The choices recorded so far.
    pub fn recorded(&self) -> Option<&[u64]> {
        self.record.as_deref()
    }

    /// Takes the recorded choices.
    pub fn take_recorded(&mut self) -> Option<Vec<u64>> {
        self.record.take()
    }

    /// How many real decisions (with at least two outcomes) were made.
    pub fn count(&self) -> u64 {
        self.made
    }

    /// A number in `0..n` (0 when `n <= 1`, without consuming anything).
    pub fn choose(&mut self, n: u64) -> u64 {
        if n <= 1 {
            return 0;
        }
        self.made += 1;
        let v = match &mut self.source {
            Source::Seeded(_) if !self.prefix.is_empty() => self.prefix.pop().map_or(0, |v| v % n),
            Source::Seeded(rng) => below(rng, n),
            Source::Replay { choices, pos } => {
                let v = choices.get(*pos).copied().unwrap_or(0);
                *pos += 1;
                if v < n {
                    v
                } else {
                    v % n
                }
            }
        };
        if let Some(rec) = &mut self.record {
            rec.push(v);
        }
        v
    }

    /// `true` with probability `per_million / 1_000_000` (0: never, consuming nothing).
    /// `false` is choice 0.
    pub fn chance(&mut self, per_million: u32) -> bool {
        if per_million == 0 {
            return false;
        }
        if per_million >= 1_000_000 {
            return true;
        }
        // Choice 0 must be "no": map the draw so that 0 falls in the "no" range.
        self.choose(1_000_000) >= u64::from(1_000_000 - per_million)
    }

    /// A value in `lo..=hi`, choice 0 giving `lo`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        if hi <= lo {
            return lo;
        }
        // The whole u64 range has 2^64 values, one more than `choose` can take.
        lo + self.choose((hi - lo).saturating_add(1))
    }
}

/// Uniform in `0..n` without modulo bias (Lemire's multiply-and-reject). The rejection
/// threshold `2^64 mod n` is below `n`, so a draw whose low word is at least `n` is accepted
/// without computing it: the division runs only for the rare draws near the boundary, and
/// every draw is accepted or rejected exactly as the plain loop would.
fn below(rng: &mut ChaCha8Rng, n: u64) -> u64 {
    let mut m = u128::from(rng.next_u64()) * u128::from(n);
    if (m as u64) < n {
        let threshold = n.wrapping_neg() % n;
        while (m as u64) < threshold {
            m = u128::from(rng.next_u64()) * u128::from(n);
        }
    }
    (m >> 64) as u64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seeded_choices_are_reproducible_and_in_range() {
        let mut a = Decisions::seeded(42);
        let mut b = Decisions::seeded(42);
        for n in 2..500u64 {
            let (x, y) = (a.choose(n), b.choose(n));
            assert_eq!(x, y);
            assert!(x < n);
        }
        assert_ne!(
            (0..20)
                .map(|_| Decisions::seeded(1).choose(1000))
                .collect::<Vec<_>>(),
            (0..20)
                .map(|_| Decisions::seeded(2).choose(1000))
                .collect::<Vec<_>>()
        );
    }

    /// The draw-and-reject rule, written plainly: `below` must accept and reject exactly
    /// the same draws (recorded seeds keep their meaning).
    fn below_plain(rng: &mut ChaCha8Rng, n: u64) -> u64 {
        let threshold = n.wrapping_neg() % n;
        loop {
            let m = u128::from(rng.next_u64()) * u128::from(n);
            if (m as u64) >= threshold {
                return (m >> 64) as u64;
            }
        }
    }

    #[test]
    fn below_matches_the_plain_rejection_loop() {
        for seed in 0..4 {
            let mut a = ChaCha8Rng::seed_from_u64(seed);
            let mut b = ChaCha8Rng::seed_from_u64(seed);
            // Sizes that reject often (just above a power of two, and near 2^64) and rarely.
            for n in [
                2u64,
                3,
                7,
                1000,
                1 << 40,
                (1 << 63) + 1,
                u64::MAX - 1,
                u64::MAX,
            ] {
                for _ in 0..500 {
                    assert_eq!(below(&mut a, n), below_plain(&mut b, n), "n {n}");
                }
            }
        }
    }

    #[test]
    fn single_outcome_decisions_consume_nothing() {
        let mut d = Decisions::replay(vec![5, 6]);
        d.start_recording();
        assert_eq!(d.choose(1), 0);
        assert_eq!(d.choose(0), 0);
        assert_eq!(d.choose(10), 5);
        assert_eq!(d.recorded().unwrap(), &[5]);
        assert_eq!(d.count(), 1);
    }

    #[test]
    fn replay_past_the_end_is_zero_and_wraps_large_values() {
        let mut d = Decisions::replay(vec![13]);
        assert_eq!(d.choose(10), 3);
        assert_eq!(d.choose(10), 0);
        assert_eq!(d.choose(7), 0);
    }

    #[test]
    fn recording_a_seeded_run_replays_it() {
        let mut a = Decisions::seeded(9);
        a.start_recording();
        let drawn: Vec<u64> = (0..100).map(|i| a.choose(3 + i)).collect();
        let mut b = Decisions::replay(a.take_recorded().unwrap());
        let replayed: Vec<u64> = (0..100).map(|i| b.choose(3 + i)).collect();
        assert_eq!(drawn, replayed);
    }

    #[test]
    fn a_forced_prefix_comes_first_then_the_seed_and_replays() {
        let mut d = Decisions::seeded_after(vec![3, 9], 5);
        d.start_recording();
        assert_eq!(d.choose(4), 3);
        assert_eq!(d.choose(4), 1, "forced choices wrap like replayed ones");
        let mut plain = Decisions::seeded(5);
        let rest: Vec<u64> = (0..10).map(|_| d.choose(1000)).collect();
        assert_eq!(
            rest,
            (0..10).map(|_| plain.choose(1000)).collect::<Vec<_>>()
        );
        let mut again = Decisions::replay(d.take_recorded().unwrap());
        assert_eq!((again.choose(4), again.choose(4)), (3, 1));
        assert_eq!(
            (0..10).map(|_| again.choose(1000)).collect::<Vec<_>>(),
            rest
        );
    }

    #[test]
    fn chance_zero_choice_is_no() {
        let mut d = Decisions::replay(vec![]);
        assert!(!d.chance(999_999));
        let mut never = Decisions::seeded(3);
        assert!((0..10_000).all(|_| !never.chance(0)));
        assert_eq!(never.count(), 0);
        let mut always = Decisions::seeded(3);
        assert!((0..100).all(|_| always.chance(1_000_000)));
    }
}
