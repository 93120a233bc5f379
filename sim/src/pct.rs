//! PCT mode: probabilistic concurrency testing (Burckhardt et al., ASPLOS 2010), adapted to
//! a simulator with a clock.
//!
//! Events run in time order; only events due at the *same instant* on different hosts
//! compete (see [`Sim`](crate::Sim)). In PCT mode each host draws a random priority the first
//! time it competes, and the competitor on the host of highest priority runs first, so one
//! host keeps winning every race until a *change point*: `depth` of the competitions, drawn
//! up front among the first [`CHANGE_WINDOW`], demote the host that wins them to the lowest
//! priority so far. A bug that needs one host to win a race `d - 1` times and then lose it
//! is found with a probability that depends on the number of hosts and `d`, not on how
//! many races the run has, as it does when every race is a coin toss.
//!
//! Every draw goes through the decision source (choice 0: the priority that keeps the
//! earliest-scheduled competitor first, no change point), so a PCT run replays and shrinks.

use crate::decide::Decisions;

/// Change points fall among the first this many competitions.
pub const CHANGE_WINDOW: u64 = 64;

/// The state of PCT mode in one run.
#[derive(Debug, Default)]
pub(crate) struct Pct {
    /// (host index, priority), in the order hosts first competed.
    priority: Vec<(usize, u64)>,
    /// Competitions so far.
    races: u64,
    /// At which competitions the winner is demoted (sorted).
    changes: Vec<u64>,
    /// The next demoted priority (counts down, below every drawn one).
    low: u64,
}

/// Drawn priorities are at least this; demoted ones below.
const DRAWN: u64 = 1 << 32;

impl Pct {
    /// PCT state with `depth` change points drawn from `d`.
    pub(crate) fn new(d: &mut Decisions, depth: u32) -> Self {
        let mut changes: Vec<u64> = (0..depth).map(|_| d.choose(CHANGE_WINDOW)).collect();
        changes.sort_unstable();
        Pct {
            priority: Vec::new(),
            races: 0,
            changes,
            low: DRAWN - 1,
        }
    }

    /// Picks the winner among `hosts` (the competitors' host indices, earliest scheduled
    /// first): the index into `hosts` of the one of highest priority.
    pub(crate) fn pick(&mut self, hosts: &[usize], d: &mut Decisions) -> usize {
        let mut best = (0, 0);
        for (i, &h) in hosts.iter().enumerate() {
            let p = match self.priority.iter().find(|e| e.0 == h) {
                Some(e) => e.1,
                None => {
                    // Choice 0 is the highest priority yet: first come, first served.
                    let p = u64::MAX - (d.choose(1 << 20) << 12) - self.priority.len() as u64;
                    self.priority.push((h, p.max(DRAWN)));
                    p
                }
            };
            if i == 0 || p > best.1 {
                best = (i, p);
            }
        }
        let race = self.races;
        self.races += 1;
        if self.changes.binary_search(&race).is_ok() {
            let winner = hosts[best.0];
            if let Some(e) = self.priority.iter_mut().find(|e| e.0 == winner) {
                e.1 = self.low;
                self.low = self.low.saturating_sub(1);
            }
        }
        best.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn all_zero_choices_keep_first_come_first_served() {
        let mut d = Decisions::replay(vec![]);
        let mut p = Pct::new(&mut d, 0);
        assert_eq!(p.pick(&[3, 1, 2], &mut d), 0);
        assert_eq!(
            p.pick(&[1, 3], &mut d),
            1,
            "host 3 competed first, so it ranks first"
        );
    }

    #[test]
    fn a_host_keeps_winning_until_a_change_point_demotes_it() {
        for seed in 0..50 {
            let mut d = Decisions::seeded(seed);
            let mut p = Pct::new(&mut d, 1);
            let change = p.changes[0];
            let first = [0, 1][p.pick(&[0, 1], &mut d)];
            let mut winners = vec![first];
            for _ in 1..CHANGE_WINDOW + 4 {
                winners.push([0, 1][p.pick(&[0, 1], &mut d)]);
            }
            let c = change as usize;
            assert!(winners[..=c].iter().all(|&w| w == first), "seed {seed}");
            assert!(winners[c + 1..].iter().all(|&w| w != first), "seed {seed}");
        }
    }
}
