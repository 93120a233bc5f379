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
//! 4. shrink single choices (to 0, then by halving, then by one).
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
        // 4. Shrink single values.
        for i in 0..best.len() {
            for attempt in 0..3 {
                let Some(&v) = best.get(i) else { break };
                if v == 0 {
                    break;
                }
                let smaller_v = match attempt {
                    0 => 0,
                    1 => v / 2,
                    _ => v - 1,
                };
                let mut cand = best.clone();
                cand[i] = smaller_v;
                if try_candidate(&mut best, cand, &mut runs) {
                    break;
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

    #[test]
    fn keeps_the_original_when_nothing_smaller_fails() {
        let (best, _) = shrink(vec![11], 100, judge);
        assert_eq!(best, vec![11]);
    }
}
