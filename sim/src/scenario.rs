//! Scenario files: `scenarios/*.toml`, one simulated workload each.
//!
//! A scenario names an app from `torsion-apps`, a topology, workload parameters, the
//! network, the faults (none, explicit rules, or swarm), limits, a seed count, and what the
//! sweep should find: `expect = "pass"` (no seed may fail) or `expect = "fail"` (a planted
//! bug: the sweep passes only if some seed finds it).
//!
//! ```toml
//! name = "echo"
//! description = "10 clients ping-pong 100 messages each through one echo server"
//! app = "echo"
//! seeds = 1000
//!
//! [topology]
//! servers = 1
//! clients = 10
//!
//! [workload]
//! messages = 100
//! min_size = 1
//! max_size = 64
//!
//! [network]
//! latency_ms = [1, 10]
//! ```
//!
//! Every error names the file, the line and the field: a malformed file, an unknown field,
//! a value of the wrong type, an unknown app, a host name no topology has.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

use crate::faults::{Crash, Faults, Partition};
use crate::world::SimBuilder;

/// The apps a scenario can run.
pub const APPS: [&str; 6] = ["echo", "chat", "kv", "poetry", "heartbeat", "lines"];

/// What the sweep should find.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Expect {
    /// Every seed passes.
    #[default]
    Pass,
    /// Some seed fails (a planted bug the harness must find).
    Fail,
}

/// Servers and clients; hosts are named `server0..` and `client0..`.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Topology {
    /// Server hosts.
    #[serde(default = "one")]
    pub servers: u32,
    /// Client hosts.
    #[serde(default = "one")]
    pub clients: u32,
}

fn one() -> u32 {
    1
}

impl Default for Topology {
    fn default() -> Self {
        Topology {
            servers: 1,
            clients: 1,
        }
    }
}

/// App parameters; each app reads the ones it needs and has defaults for the rest.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Workload {
    /// Messages (or lines, or heartbeats) per client.
    pub messages: Option<u64>,
    /// Smallest message, in bytes.
    pub min_size: Option<u64>,
    /// Largest message, in bytes.
    pub max_size: Option<u64>,
    /// Rounds of writes per kv client.
    pub rounds: Option<u64>,
    /// Heartbeat interval, or poetry chunk delay, in milliseconds.
    pub interval_ms: Option<u64>,
    /// Idle timeout, in milliseconds.
    pub timeout_ms: Option<u64>,
    /// A liveness deadline, in simulated seconds from the start.
    pub deadline_s: Option<u64>,
    /// kv: the server deduplicates retried requests (false plants the double-apply bug).
    pub dedupe: Option<bool>,
    /// kv: clients reset their backoff on connecting (false plants the no-reset bug).
    pub reset_delay: Option<bool>,
    /// lines: the server takes each read to be a line (the naive-lines bug).
    pub naive: Option<bool>,
}

/// The network.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// One-way latency range, in milliseconds.
    pub latency_ms: Option<[u64; 2]>,
    /// Whether writes may be split into several segments.
    pub fragment: Option<bool>,
}

/// How faults are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultMode {
    /// A perfect network.
    #[default]
    None,
    /// The rules below.
    Rules,
    /// Each seed draws its own mix.
    Swarm,
}

/// A scheduled partition, by host name.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PartitionRule {
    /// Start, in milliseconds.
    pub at_ms: u64,
    /// Length, in milliseconds.
    pub duration_ms: u64,
    /// One side.
    pub a: String,
    /// The other side.
    pub b: String,
    /// Only `a` to `b` is cut.
    #[serde(default)]
    pub one_way: bool,
}

/// A scheduled crash, by host name.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CrashRule {
    /// When, in milliseconds.
    pub at_ms: u64,
    /// Which host.
    pub host: String,
    /// Restart after this many milliseconds (absent: stays down).
    pub restart_after_ms: Option<u64>,
}

/// Faults.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct FaultSpec {
    /// none, rules or swarm.
    #[serde(default)]
    pub mode: FaultMode,
    /// Swarm: faults are drawn within this many milliseconds from the start.
    pub horizon_ms: Option<u64>,
    /// Rules: resets per million segments.
    #[serde(default)]
    pub reset_ppm: u32,
    /// Rules: refusals per million connection attempts.
    #[serde(default)]
    pub refuse_ppm: u32,
    /// Rules: latency spikes per million segments.
    #[serde(default)]
    pub spike_ppm: u32,
    /// Rules: the largest spike, in milliseconds.
    #[serde(default)]
    pub spike_ms: u64,
    /// Rules: the largest per-host clock drift, in millionths.
    #[serde(default)]
    pub drift_ppm_max: u32,
    /// Rules: UDP datagrams lost per million.
    #[serde(default)]
    pub udp_loss_ppm: u32,
    /// Rules: UDP datagrams duplicated per million.
    #[serde(default)]
    pub udp_dup_ppm: u32,
    /// Rules: UDP datagrams reordered per million.
    #[serde(default)]
    pub udp_reorder_ppm: u32,
    /// Rules: partitions.
    #[serde(default)]
    pub partitions: Vec<PartitionRule>,
    /// Rules: crashes.
    #[serde(default)]
    pub crashes: Vec<CrashRule>,
}

/// Run limits.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Simulated time, in seconds.
    pub sim_time_s: Option<u64>,
    /// Events.
    pub max_steps: Option<u64>,
    /// Whether a run that ends idle must leave nothing behind: no open connection, no lost
    /// connection still alive (see [`crate::Leftover`]). Default: on.
    pub clean: Option<bool>,
}

/// A parsed, validated scenario.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Scenario {
    /// Its name (the replay files and reports use it).
    pub name: String,
    /// One line on what it checks.
    pub description: String,
    /// The app (one of [`APPS`]).
    pub app: String,
    /// What the sweep should find.
    #[serde(default)]
    pub expect: Expect,
    /// Seeds to run by default.
    #[serde(default = "default_seeds")]
    pub seeds: u64,
    /// Hosts.
    #[serde(default)]
    pub topology: Topology,
    /// App parameters.
    #[serde(default)]
    pub workload: Workload,
    /// The network.
    #[serde(default)]
    pub network: Network,
    /// Faults.
    #[serde(default)]
    pub faults: FaultSpec,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// Where it was read from.
    #[serde(skip)]
    pub path: PathBuf,
}

fn default_seeds() -> u64 {
    1000
}

/// A scenario file that could not be used: `file:line: message`, where the message names
/// the field.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
#[error("{}:{line}: {message}", file.display())]
pub struct ScenarioError {
    /// The file.
    pub file: PathBuf,
    /// The line (1-based).
    pub line: usize,
    /// What is wrong, naming the field.
    pub message: String,
}

/// The 1-based line of byte offset `at`.
fn line_at(text: &str, at: usize) -> usize {
    text[..at.min(text.len())].matches('\n').count() + 1
}

/// The key assigned on `line` (`key = value`), if any.
fn key_on_line(text: &str, line: usize) -> Option<String> {
    let l = text.lines().nth(line.checked_sub(1)?)?;
    let (key, _) = l.split_once('=')?;
    let key = key.trim();
    (!key.is_empty() && !key.starts_with('[')).then(|| key.to_string())
}

/// The line where `key` is assigned (within `table`, if given), else the table's header,
/// else 1.
fn line_of(text: &str, table: Option<&str>, key: &str) -> usize {
    let mut current: Option<String> = None;
    let mut header_line = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            current = Some(t.trim_matches(|c| c == '[' || c == ']').trim().to_string());
            if current.as_deref() == table {
                header_line.get_or_insert(i + 1);
            }
            continue;
        }
        if current.as_deref() == table {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == key {
                    return i + 1;
                }
            }
        }
    }
    header_line.unwrap_or(1)
}

impl Scenario {
    /// Reads and validates `path`.
    pub fn load(path: &Path) -> Result<Scenario, ScenarioError> {
        let text = std::fs::read_to_string(path).map_err(|e| ScenarioError {
            file: path.to_path_buf(),
            line: 1,
            message: format!("cannot read: {e}"),
        })?;
        Self::parse(path, &text)
    }

    /// Parses and validates `text` (read from `path`).
    pub fn parse(path: &Path, text: &str) -> Result<Scenario, ScenarioError> {
        let err = |line: usize, message: String| ScenarioError {
            file: path.to_path_buf(),
            line,
            message,
        };
        let mut s: Scenario = toml::from_str(text).map_err(|e| {
            let line = e.span().map_or(1, |r| line_at(text, r.start));
            let message = e.message().trim().to_string();
            let message = match key_on_line(text, line) {
                Some(key) if !message.contains(&format!("`{key}`")) => {
                    format!("field `{key}`: {message}")
                }
                _ => message,
            };
            err(line, message)
        })?;
        s.path = path.to_path_buf();
        if !APPS.contains(&s.app.as_str()) {
            return Err(err(
                line_of(text, None, "app"),
                format!(
                    "field `app`: unknown app {:?} (known: {})",
                    s.app,
                    APPS.join(", ")
                ),
            ));
        }
        if s.seeds == 0 {
            return Err(err(
                line_of(text, None, "seeds"),
                "field `seeds`: must be at least 1".into(),
            ));
        }
        if s.topology.servers == 0 {
            return Err(err(
                line_of(text, Some("topology"), "servers"),
                "field `servers`: must be at least 1".into(),
            ));
        }
        if let Some([lo, hi]) = s.network.latency_ms {
            if lo > hi {
                return Err(err(
                    line_of(text, Some("network"), "latency_ms"),
                    format!("field `latency_ms`: minimum {lo} exceeds maximum {hi}"),
                ));
            }
        }
        if let (Some(lo), Some(hi)) = (s.workload.min_size, s.workload.max_size) {
            if lo > hi || hi == 0 {
                return Err(err(
                    line_of(text, Some("workload"), "max_size"),
                    format!("field `max_size`: {hi} is below min_size {lo} (or zero)"),
                ));
            }
        }
        for (i, p) in s.faults.partitions.iter().enumerate() {
            for (field, name) in [("a", &p.a), ("b", &p.b)] {
                if s.host_index(name).is_none() {
                    return Err(err(
                        line_of(text, Some("faults.partitions"), field).max(line_of(
                            text,
                            Some("faults"),
                            "partitions",
                        )),
                        format!(
                            "field `{field}` of partition {i}: no host {name:?} in the topology"
                        ),
                    ));
                }
            }
        }
        for (i, c) in s.faults.crashes.iter().enumerate() {
            if s.host_index(&c.host).is_none() {
                return Err(err(
                    line_of(text, Some("faults.crashes"), "host").max(line_of(
                        text,
                        Some("faults"),
                        "crashes",
                    )),
                    format!(
                        "field `host` of crash {i}: no host {:?} in the topology",
                        c.host
                    ),
                ));
            }
        }
        Ok(s)
    }

    /// Reads every `*.toml` under each path (a file or a directory), sorted by file name.
    pub fn load_all(paths: &[PathBuf]) -> Result<Vec<Scenario>, ScenarioError> {
        let mut files = Vec::new();
        for p in paths {
            if p.is_dir() {
                let entries = std::fs::read_dir(p).map_err(|e| ScenarioError {
                    file: p.clone(),
                    line: 1,
                    message: format!("cannot read directory: {e}"),
                })?;
                let mut found: Vec<PathBuf> = entries
                    .filter_map(Result::ok)
                    .map(|e| e.path())
                    .filter(|f| f.extension().is_some_and(|x| x == "toml"))
                    .collect();
                found.sort();
                files.extend(found);
            } else {
                files.push(p.clone());
            }
        }
        files.iter().map(|f| Scenario::load(f)).collect()
    }

    /// The hosts' names in index order: servers, then clients.
    pub fn host_names(&self) -> Vec<String> {
        (0..self.topology.servers)
            .map(|i| format!("server{i}"))
            .chain((0..self.topology.clients).map(|i| format!("client{i}")))
            .collect()
    }

    /// A host's index (servers first, then clients).
    pub fn host_index(&self, name: &str) -> Option<usize> {
        self.host_names().iter().position(|n| n == name)
    }

    /// The fault horizon: swarm faults fall within it.
    pub fn horizon(&self) -> Duration {
        Duration::from_millis(self.faults.horizon_ms.unwrap_or(5_000))
    }

    /// A world builder for this scenario (seed or choices are set by the caller).
    pub fn builder(&self) -> SimBuilder {
        let mut b = crate::Sim::builder().check_clean(self.limits.clean.unwrap_or(true));
        if let Some([lo, hi]) = self.network.latency_ms {
            b = b.latency(Duration::from_millis(lo), Duration::from_millis(hi));
        }
        if let Some(f) = self.network.fragment {
            b = b.fragment(f);
        }
        if let Some(s) = self.limits.sim_time_s {
            b = b.max_time(Duration::from_secs(s));
        }
        if let Some(n) = self.limits.max_steps {
            b = b.max_steps(n);
        }
        let hosts = (self.topology.servers + self.topology.clients) as usize;
        match self.faults.mode {
            FaultMode::None => b,
            FaultMode::Swarm => b.swarm(hosts, self.horizon()),
            FaultMode::Rules => b.faults(self.rules()),
        }
    }

    fn rules(&self) -> Faults {
        let f = &self.faults;
        let idx = |n: &str| self.host_index(n).unwrap_or(0);
        Faults {
            reset_ppm: f.reset_ppm,
            refuse_ppm: f.refuse_ppm,
            spike_ppm: f.spike_ppm,
            spike: Duration::from_millis(f.spike_ms),
            drift_ppm_max: f.drift_ppm_max,
            udp_loss_ppm: f.udp_loss_ppm,
            udp_dup_ppm: f.udp_dup_ppm,
            udp_reorder_ppm: f.udp_reorder_ppm,
            partitions: f
                .partitions
                .iter()
                .map(|p| Partition {
                    at: Duration::from_millis(p.at_ms),
                    duration: Duration::from_millis(p.duration_ms),
                    a: idx(&p.a),
                    b: idx(&p.b),
                    one_way: p.one_way,
                })
                .collect(),
            crashes: f
                .crashes
                .iter()
                .map(|c| Crash {
                    at: Duration::from_millis(c.at_ms),
                    host: idx(&c.host),
                    restart_after: c.restart_after_ms.map(Duration::from_millis),
                })
                .collect(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<Scenario, ScenarioError> {
        Scenario::parse(Path::new("scenarios/x.toml"), text)
    }

    const GOOD: &str = "name = \"x\"\ndescription = \"d\"\napp = \"echo\"\nseeds = 10\n\n[topology]\nclients = 3\n";

    #[test]
    fn a_good_file_parses_with_defaults() {
        let s = parse(GOOD).unwrap();
        assert_eq!(s.seeds, 10);
        assert_eq!(s.topology.servers, 1);
        assert_eq!(s.expect, Expect::Pass);
        assert_eq!(s.host_names(), ["server0", "client0", "client1", "client2"]);
    }

    #[test]
    fn a_missing_field_is_named() {
        let e = parse("name = \"x\"\napp = \"echo\"\n").unwrap_err();
        assert!(e.to_string().starts_with("scenarios/x.toml:1: "), "{e}");
        assert!(e.message.contains("description"), "{e}");
    }

    #[test]
    fn a_wrong_type_names_line_and_field() {
        let e = parse(&GOOD.replace("seeds = 10", "seeds = \"ten\"")).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("seeds"), "{e}");
    }

    #[test]
    fn a_negative_seed_count_is_refused() {
        let e = parse(&GOOD.replace("seeds = 10", "seeds = -5")).unwrap_err();
        assert_eq!(e.line, 4, "{e}");
        assert!(e.message.contains("seeds"), "{e}");
    }

    #[test]
    fn an_unknown_app_is_named() {
        let e = parse(&GOOD.replace("\"echo\"", "\"gopher\"")).unwrap_err();
        assert_eq!(e.line, 3);
        assert!(e.message.contains("unknown app \"gopher\""), "{e}");
    }

    #[test]
    fn an_unknown_field_is_named() {
        let e = parse(&format!("{GOOD}colour = 3\n")).unwrap_err();
        assert!(e.message.contains("colour"), "{e}");
        assert_eq!(e.line, 8, "{e}");
    }

    #[test]
    fn a_malformed_file_names_the_line() {
        let e = parse("name = \"x\"\ndescription = \n").unwrap_err();
        assert_eq!(e.line, 2, "{e}");
    }

    #[test]
    fn an_unknown_host_in_a_rule_is_named() {
        let text = format!(
            "{GOOD}\n[faults]\nmode = \"rules\"\n[[faults.partitions]]\nat_ms = 1\nduration_ms = 2\na = \"server0\"\nb = \"mars\"\n"
        );
        let e = parse(&text).unwrap_err();
        assert!(e.message.contains("\"mars\""), "{e}");
    }
}
