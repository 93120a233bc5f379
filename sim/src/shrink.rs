//! Shrinking a failing run's choice sequence.
//!
//! A run is a function of its choices; choice 0 is always the simplest outcome. So a failing
//! run shrinks by trying shorter and smaller choice sequences (past the end, choices are 0)
//! and keeping any that still fails the same way, until no pass makes progress — the
//! approach of Hypothesis. Passes, cheapest and most effective first:
//!
//! 1. cut the tail (halving, then smaller cuts);
//! 2. delete runs of choices in the middle (long runs first);
//! 3. zero runs of choices;
//! 4. shrink single choices: to 0, else by binary search between the largest value known to
//!    pass and the smallest known to fail (about 20 runs for a value near 10^6, where moving
//!    one unit at a time could take a million).
//!
//! Each candidate is judged by running it; the sequence a passing candidate actually
//! consumed (its recording) replaces the current one, so unused choices fall away.

/// The outcome of running a candidate sequence.
pub struct Attempt {
    /// Whether it failed the same way as the original.
    pub fails: bool,
    /// The choices it actually consumed.
    pub consumed: Vec<u64>,
}

/// Shrinks `choices` with `run`, trying at most `budget` candidates. Returns the smallest
/// failing sequence found and how many candidates were run.
pub fn shrink(
    choices: Vec<u64>,
    budget: usize,
    mut run: impl FnMut(&[u64]) -> Attempt,
) -> (Vec<u64>, usize) {
    let mut best = trim(choices);
    let mut runs = 0usize;
    let mut try_candidate = |best: &mut Vec<u64>, cand: Vec<u64>, runs: &mut usize| -> bool {
        if *runs >= budget || !smaller(&cand, best) {
            return false;
        }
        *runs += 1;
        let a = run(&cand);
        if a.fails {
            let consumed = trim(a.consumed);
            *best = if smaller(&consumed, &cand) {
                consumed
            } else {
                trim(cand)
            };
            true
        } else {
            false
        }
    };
    loop {
        let before = best.clone();
        // 1. Cut the tail.
        let mut cut = best.len() / 2;
        while cut > 0 {
            let keep = best.len().saturating_sub(cut);
            let cand = best[..keep].to_vec();
            if !try_candidate(&mut best, cand, &mut runs) {
                cut /= 2;
            }
        }
        // 2. Delete runs in the middle, then 3. zero them.
        for zero in [false, true] {
            let mut size = (best.len() / 2).max(1);
            while size > 0 {
                let mut i = 0;
                while i + size <= best.len() {
                    let mut cand = best.clone();
                    if zero {
                        if cand[i..i + size].iter().all(|v| *v == 0) {
                            i += size;
                            continue;
                        }
                        cand[i..i + size].iter_mut().for_each(|v| *v = 0);
                    } else {
                        cand.drain(i..i + size);
                    }
                    if !try_candidate(&mut best, cand, &mut runs) {
                        i += size;
                    }
                }
                size /= 2;
            }
        }
        // 4. Shrink single values: 0, else bisect between the largest value known to pass
        //    and the smallest known to fail.
        for i in 0..best.len() {
            let Some(&v) = best.get(i) else { break };
            if v == 0 {
                continue;
            }
            let mut cand = best.clone();
            cand[i] = 0;
            if try_candidate(&mut best, cand, &mut runs) {
                continue;
            }
            // A value already at its smallest (as after an earlier round) costs one run.
            let mut cand = best.clone();
            cand[i] = v - 1;
            if v > 1 && !try_candidate(&mut best, cand, &mut runs) {
                continue;
            }
            let (mut passes, mut fails) = (0u64, best.get(i).copied().unwrap_or(0).min(v));
            while fails.saturating_sub(passes) > 1 && runs < budget {
                let mid = passes + (fails - passes) / 2;
                let mut cand = best.clone();
                cand[i] = mid;
                if !try_candidate(&mut best, cand, &mut runs) {
                    passes = mid;
                    continue;
                }
                // The recording may differ from the candidate (values wrap to their range,
                // unused choices fall away): go on from what it holds now.
                match best.get(i) {
                    Some(&now) if now < fails => fails = now,
                    _ => break,
                }
            }
        }
        if best == before || runs >= budget {
            return (best, runs);
        }
    }
}

/// Trailing zeros change nothing (past the end every choice is 0 anyway).
fn trim(mut v: Vec<u64>) -> Vec<u64> {
    while v.last() == Some(&0) {
        v.pop();
    }
    v
}

/// Shortlex order: shorter is smaller; at equal length, lexicographically smaller.
fn smaller(a: &[u64], b: &[u64]) -> bool {
    (a.len(), a) < (b.len(), b)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A "program" that fails when the sum of its first three choices exceeds 10.
    fn judge(c: &[u64]) -> Attempt {
        let used: Vec<u64> = c.iter().copied().take(3).collect();
        Attempt {
            fails: used.iter().sum::<u64>() > 10,
            consumed: used,
        }
    }

    #[test]
    fn shrinks_to_a_minimal_failing_sequence() {
        let (best, runs) = shrink(vec![9, 9, 9, 5, 5, 5, 5], 1000, judge);
        assert_eq!(best.iter().sum::<u64>(), 11, "{best:?}");
        assert!(best.len() <= 2, "{best:?}");
        assert!(runs > 0 && runs < 1000);
    }

    #[test]
    fn respects_the_budget() {
        let (_best, runs) = shrink(vec![50; 100], 7, judge);
        assert!(runs <= 7);
    }

    /// A fault that fires when its draw out of a million is at least 983,346 (a 16,654 ppm
    /// rate): the failing run drew 983,484.
    fn fault_fires(c: &[u64]) -> Attempt {
        let draw = c.first().copied().unwrap_or(0);
        Attempt {
            fails: draw >= 983_346,
            consumed: c.iter().copied().take(1).collect(),
        }
    }

    #[test]
    fn a_large_value_shrinks_by_bisection() {
        let (best, runs) = shrink(vec![983_484], 2_000, fault_fires);
        assert_eq!(best, vec![983_346]);
        assert!(runs < 100, "{runs} runs");
    }

    #[test]
    fn bisection_finds_the_smallest_failing_value_of_each_position() {
        // Fails when the second draw is at least 700,000 and the fourth at least 12.
        let judge = |c: &[u64]| {
            let at = |i: usize| c.get(i).copied().unwrap_or(0);
            Attempt {
                fails: at(1) >= 700_000 && at(3) >= 12,
                consumed: c.iter().copied().take(4).collect(),
            }
        };
        let (best, runs) = shrink(vec![5, 999_999, 77, 1 << 40], 2_000, judge);
        assert_eq!(best, vec![0, 700_000, 0, 12]);
        assert!(runs < 200, "{runs} runs");
    }

    #[test]
    fn keeps_the_original_when_nothing_smaller_fails() {
        let (best, _) = shrink(vec![11], 100, judge);
        assert_eq!(best, vec![11]);
    }
}
