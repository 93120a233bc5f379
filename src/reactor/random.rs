//! The reactor's random source: where protocols get randomness (jitter, ids, choices).
//!
//! Protocols never use a thread RNG: under simulation the reactor's source is derived from
//! the run's seed, so a protocol's random choices replay with the run.

/// A reactor's random source. Object-safe; the derived draws are in [`ReactorRandomExt`].
pub trait ReactorRandom {
    /// 64 uniformly random bits.
    fn next_u64(&self) -> u64;
}

/// Draws derived from [`ReactorRandom::next_u64`], identical on every reactor.
pub trait ReactorRandomExt: ReactorRandom {
    /// A uniform `f64` in `[0, 1)` (53 random bits).
    fn random_f64(&self) -> f64 {
        (self.next_u64() >> 11) as f64 * (1.0 / (1u64 << 53) as f64)
    }

    /// A uniform integer in `0..n` (`0` when `n` is 0), without modulo bias.
    fn random_below(&self, n: u64) -> u64 {
        if n == 0 {
            return 0;
        }
        // Lemire's multiply-shift with rejection. A fair source is rejected with probability
        // below n / 2^64 per draw; a degenerate one (a simulator replaying its simplest
        // schedule, where every draw is 0) would be rejected forever, so after
        // `MAX_REJECTIONS` draws the last one is taken as it is (biased only for such a source).
        const MAX_REJECTIONS: u32 = 64;
        let threshold = n.wrapping_neg() % n;
        let mut tries = 0;
        loop {
            let m = u128::from(self.next_u64()) * u128::from(n);
            tries += 1;
            if (m as u64) >= threshold || tries >= MAX_REJECTIONS {
                return (m >> 64) as u64;
            }
        }
    }

    /// A normal variate (Python's `random.normalvariate`, by Box–Muller).
    fn normal_variate(&self, mean: f64, std_dev: f64) -> f64 {
        let u1 = 1.0 - self.random_f64(); // (0, 1]
        let u2 = self.random_f64();
        let z = (-2.0 * u1.ln()).sqrt() * (std::f64::consts::TAU * u2).cos();
        mean + std_dev * z
    }
}

impl<R: ReactorRandom + ?Sized> ReactorRandomExt for R {}

#[cfg(test)]
mod degenerate_source_tests {
    use super::*;

    /// Every draw is 0: the simplest schedule a simulator can replay.
    struct Zeros;
    impl ReactorRandom for Zeros {
        fn next_u64(&self) -> u64 {
            0
        }
    }

    #[test]
    fn random_below_returns_for_a_source_that_always_draws_zero() {
        // 3 is not a power of two: every zero draw falls under the rejection threshold.
        assert_eq!(Zeros.random_below(3), 0);
        assert_eq!(Zeros.random_below(u64::MAX), 0);
        assert!(Zeros.normal_variate(0.0, 1.0).is_finite());
    }
}

/// A small seeded generator (SplitMix64) for test doubles and as a default source.
///
/// The simulator uses ChaCha8 from `rand_chacha` for its decisions; this one exists so the
/// engine's test doubles have a reproducible source without depending on the simulator.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: std::cell::Cell<u64>,
}

impl SplitMix64 {
    /// A generator seeded with `seed`.
    pub fn new(seed: u64) -> Self {
        SplitMix64 {
            state: std::cell::Cell::new(seed),
        }
    }
}

impl ReactorRandom for SplitMix64 {
    fn next_u64(&self) -> u64 {
        let s = self.state.get().wrapping_add(0x9E37_79B9_7F4A_7C15);
        self.state.set(s);
        let mut z = s;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn draws_are_reproducible_and_in_range() {
        let a = SplitMix64::new(7);
        let b = SplitMix64::new(7);
        for _ in 0..1000 {
            let (x, y) = (a.random_below(10), b.random_below(10));
            assert_eq!(x, y);
            assert!(x < 10);
            let f = a.random_f64();
            assert_eq!(f, b.random_f64());
            assert!((0.0..1.0).contains(&f));
        }
        assert_eq!(a.random_below(0), 0);
    }

    #[test]
    fn normal_variate_has_roughly_the_right_mean() {
        let r = SplitMix64::new(1);
        let n = 20_000;
        let mean: f64 = (0..n).map(|_| r.normal_variate(5.0, 1.0)).sum::<f64>() / n as f64;
        assert!((mean - 5.0).abs() < 0.05, "mean {mean}");
    }
}
