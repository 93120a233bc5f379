//! The link's fault rules: the chain a run builds from its [`Faults`], and what it decides
//! for a packet.
//!
//! Each rule looks at one packet and may decide its [`Fate`] (hold, drop, reset: the first
//! rule that does ends the chain) or change how it passes (delay, duplicate, skip the
//! ordering step). Probabilistic rules draw "no fault" as choice 0; a rule whose rate is
//! zero is left out of the chain, so a run without faults pays nothing for them.

use crate::faults::Faults;
use crate::net::link::{Packet, Payload};
use crate::world::World;

/// What the fault rules decided for a packet.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Fate {
    /// It crosses.
    Pass,
    /// A cut link holds it until it heals.
    Hold,
    /// It is lost.
    Drop,
    /// The connection is reset in its place (a data segment: the peer gets RST and the
    /// sender loses the connection; a SYN: it crosses, and is refused whatever listens).
    Reset,
}

/// The fault rules' decision for one packet, with how it passes.
pub(crate) struct Verdict {
    pub(crate) fate: Fate,
    /// Why it is dropped or reset (for the trace).
    pub(crate) what: &'static str,
    /// Extra delay, in nanoseconds.
    pub(crate) delay: u64,
    /// Copies that cross (a duplicated datagram crosses twice).
    pub(crate) copies: u8,
    /// Whether it goes through the ordering step.
    pub(crate) ordered: bool,
}

/// One fault rule. The chain of a run holds only the rules whose rate is not zero.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Rule {
    /// A cut link holds or drops (see the module doc).
    Partition,
    /// Per connection attempt, in millionths: refused.
    Refuse(u32),
    /// Per data segment, in millionths: the connection is reset instead.
    Reset(u32),
    /// Per datagram, in millionths: lost.
    Loss(u32),
    /// Per datagram, in millionths: delivered twice.
    Duplicate(u32),
    /// Per datagram, in millionths: it skips the ordering step, so it may overtake or be
    /// overtaken by the link's other datagrams.
    Reorder(u32),
    /// Per packet, in millionths: an extra delay of up to `max_us` microseconds.
    Spike {
        /// The rate.
        ppm: u32,
        /// The largest spike.
        max_us: u64,
    },
}

impl Verdict {
    /// Pass, once, in order, with no extra delay: what a packet gets with no rule.
    pub(crate) const PASS: Verdict = Verdict {
        fate: Fate::Pass,
        what: "",
        delay: 0,
        copies: 1,
        ordered: true,
    };
}

impl Rule {
    /// The chain of rules for `faults`, in the order they apply.
    pub(crate) fn chain(faults: &Faults) -> Vec<Rule> {
        let mut rules = Vec::new();
        if !faults.partitions.is_empty() {
            rules.push(Rule::Partition);
        }
        let rated = [
            (faults.refuse_ppm, Rule::Refuse(faults.refuse_ppm)),
            (faults.reset_ppm, Rule::Reset(faults.reset_ppm)),
            (faults.udp_loss_ppm, Rule::Loss(faults.udp_loss_ppm)),
            (faults.udp_dup_ppm, Rule::Duplicate(faults.udp_dup_ppm)),
            (
                faults.udp_reorder_ppm,
                Rule::Reorder(faults.udp_reorder_ppm),
            ),
            (
                faults.spike_ppm,
                Rule::Spike {
                    ppm: faults.spike_ppm,
                    max_us: faults.spike.as_micros().min(u128::from(u64::MAX)) as u64,
                },
            ),
        ];
        rules.extend(rated.into_iter().filter(|r| r.0 > 0).map(|r| r.1));
        rules
    }

    pub(crate) fn apply(self, world: &World, pkt: &Packet, v: &mut Verdict) {
        let datagram = matches!(pkt.payload, Payload::Datagram(_));
        match self {
            Rule::Partition => {
                if world.net.link.is_cut(pkt.from, pkt.to) {
                    if pkt.payload.of_connection() {
                        v.fate = Fate::Hold;
                    } else {
                        v.fate = Fate::Drop;
                        v.what = "lost in partition";
                    }
                }
            }
            Rule::Refuse(ppm) => {
                if matches!(pkt.payload, Payload::Syn(_)) && world.chance(ppm) {
                    v.fate = Fate::Reset;
                    v.what = "connect refused";
                }
            }
            Rule::Reset(ppm) => {
                if matches!(pkt.payload, Payload::Data { .. }) && world.chance(ppm) {
                    v.fate = Fate::Reset;
                    v.what = "reset";
                }
            }
            Rule::Loss(ppm) => {
                if datagram && world.chance(ppm) {
                    v.fate = Fate::Drop;
                    v.what = "datagram lost";
                }
            }
            Rule::Duplicate(ppm) => {
                if datagram && world.chance(ppm) {
                    v.copies = 2;
                }
            }
            Rule::Reorder(ppm) => {
                if datagram && world.chance(ppm) {
                    v.ordered = false;
                }
            }
            Rule::Spike { ppm, max_us } => {
                if world.chance(ppm) {
                    let us = world.decide.borrow_mut().range(0, max_us);
                    v.delay = v.delay.saturating_add(us.saturating_mul(1_000));
                }
            }
        }
    }
}
