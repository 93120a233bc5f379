//! Scenario files: `scenarios/*.toml`, one simulated workload each.
//!
//! A scenario names a workload (`app`: a name registered with [`crate::cli::Registry`]), a
//! topology, the workload's own parameters (`[workload]`), the network, the faults (the
//! default portfolio, none, explicit rules, or swarm), the schedule (arrival grid, PCT
//! mode), limits, a seed count, and what the sweep should find:
//! `expect = "pass"` (no seed may fail) or `expect = "fail"` (a planted bug: the sweep
//! passes only if some seed finds it).
//!
//! This module owns every table but `[workload]`: their fields, bounds and errors are the
//! same for every workload. The `[workload]` table belongs to the workload: it is kept as
//! written ([`Scenario::workload`]) and read into the workload's own type with
//! [`Scenario::params`], whose errors name the file, line and field as the others do.
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
//! a missing field, a value of the wrong type, a value out of its bounds (see [`limits`]),
//! an unknown app (checked by the registry), a host name no topology has. A file that parses runs: no value in it can
//! overflow the simulator's clock or exhaust memory while the workload is built.

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::de::DeserializeOwned;
use serde::Deserialize;

use crate::faults::{Crash, Faults, Partition};
use crate::world::SimBuilder;

/// The bounds every numeric field of a scenario is checked against when the file is parsed.
///
/// They are far above what a useful scenario needs and far below what would overflow the
/// simulator's clock (`u64` nanoseconds, about 584 years) or exhaust memory while the
/// workload is built; a value outside them is an error naming the file, line and field.
pub mod limits {
    /// Simulated time in a scenario: one year, in milliseconds (`*_ms` fields: intervals,
    /// timeouts, latencies, fault times and lengths, the swarm horizon, spikes).
    pub const MAX_TIME_MS: u64 = 365 * 24 * 3600 * 1000;
    /// One year, in seconds (`*_s` fields: `deadline_s`, `sim_time_s`).
    pub const MAX_TIME_S: u64 = 365 * 24 * 3600;
    /// Seeds a scenario asks for by default (`seeds`): a billion.
    pub const MAX_SEEDS: u64 = 1_000_000_000;
    /// Server hosts (`servers`).
    pub const MAX_SERVERS: u64 = 1_000;
    /// Client hosts (`clients`).
    pub const MAX_CLIENTS: u64 = 100_000;
    /// A rate in millionths (`*_ppm` fields): one million is "always".
    pub const MAX_PPM: u64 = 1_000_000;
    /// Scheduled partitions, and scheduled crashes, each.
    pub const MAX_RULES: usize = 10_000;
    /// The step budget (`max_steps`).
    pub const MAX_STEPS: u64 = 1_000_000_000_000;
}

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

/// The network.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Network {
    /// One-way latency range, in milliseconds: `[min, max]`.
    pub latency_ms: Option<Vec<u64>>,
    /// Whether writes may be split into several segments.
    pub fragment: Option<bool>,
}

/// The schedule: how same-instant events are ordered. Every scenario runs in the default
/// portfolio ([`SimBuilder::portfolio`]), whose seeds draw an arrival grid and a PCT depth;
/// a field given here pins that dimension for every seed instead.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Schedule {
    /// The arrival grid, in milliseconds (`0`: none): see
    /// [`Config::quantum`](crate::Config::quantum).
    pub quantum_ms: Option<u64>,
    /// PCT mode of this depth (`0`: off): see [`Config::pct`](crate::Config::pct).
    pub pct_depth: Option<u32>,
}

/// How faults are chosen.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum FaultMode {
    /// The default portfolio: one seed in four on a perfect network, the others with a
    /// swarm mix over the scenario's hosts and `horizon_ms` (see
    /// [`SimBuilder::portfolio_swarm`]).
    #[default]
    Portfolio,
    /// A perfect network.
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
    /// The workload that runs it: a name registered with [`crate::cli::Registry`].
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
    /// The workload's own parameters, as written: the registered workload reads them into
    /// its own type with [`Scenario::params`].
    #[serde(default)]
    pub workload: toml::Table,
    /// The network.
    #[serde(default)]
    pub network: Network,
    /// Faults.
    #[serde(default)]
    pub faults: FaultSpec,
    /// Limits.
    #[serde(default)]
    pub limits: Limits,
    /// The schedule.
    #[serde(default)]
    pub schedule: Schedule,
    /// Where it was read from.
    #[serde(skip)]
    pub path: PathBuf,
    /// The file's text, for errors that name a line.
    #[serde(skip)]
    text: String,
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

/// `missing field `x``, toml's message for an absent required field: `x`.
fn missing_field(message: &str) -> Option<&str> {
    message
        .strip_prefix("missing field `")?
        .split('`')
        .next()
        .filter(|f| !f.is_empty())
}

/// The line of the `index`-th `[[table]]` entry's `key` (or of that entry's header), else
/// of the array's key in its parent table (an inline array), else 1.
fn line_of_entry(text: &str, table: &str, index: usize, key: &str) -> usize {
    let header = format!("[[{table}]]");
    let mut seen = 0;
    let mut inside = false;
    let mut header_line = None;
    for (i, l) in text.lines().enumerate() {
        let t = l.trim();
        if t.starts_with('[') {
            inside = t.replace(' ', "") == header && {
                seen += 1;
                seen == index + 1
            };
            if inside {
                header_line = Some(i + 1);
            }
            continue;
        }
        if inside {
            if let Some((k, _)) = t.split_once('=') {
                if k.trim() == key {
                    return i + 1;
                }
            }
        }
    }
    header_line.unwrap_or_else(|| {
        let (parent, array) = table.rsplit_once('.').unwrap_or(("", table));
        line_of(text, (!parent.is_empty()).then_some(parent), array)
    })
}

/// A TOML error in `text` (read from `path`) as `file:line: field ...`.
fn toml_error(path: &Path, text: &str, e: toml::de::Error) -> ScenarioError {
    let line = e.span().map_or(1, |r| line_at(text, r.start));
    let message = e.message().trim().to_string();
    let message = if let Some(field) = missing_field(&message) {
        // The span of a missing field is its whole table: name the field, not whatever
        // key happens to sit on the table's first line.
        format!("field `{field}` is missing")
    } else {
        match key_on_line(text, line) {
            Some(key) if !message.contains(&format!("`{key}`")) => {
                format!("field `{key}`: {message}")
            }
            _ => message,
        }
    };
    ScenarioError {
        file: path.to_path_buf(),
        line,
        message,
    }
}

/// Checks `value <= max`, naming the field.
fn at_most(field: &str, value: u64, max: u64, unit: &str) -> Result<(), String> {
    if value > max {
        Err(format!(
            "field `{field}`: {value} is above the largest allowed, {max}{unit}"
        ))
    } else {
        Ok(())
    }
}

impl Scenario {
    /// Checks every value against [`limits`] and the others; an error is (line, message).
    fn validate(&self, text: &str) -> Result<(), (usize, String)> {
        use limits::*;
        let top = |key: &str| line_of(text, None, key);
        let within = |table: &'static str| move |key: &str| line_of(text, Some(table), key);
        let check = |line: usize, r: Result<(), String>| r.map_err(|m| (line, m));
        let ms = " (one year)";

        if self.seeds == 0 {
            return Err((top("seeds"), "field `seeds`: must be at least 1".into()));
        }
        check(top("seeds"), at_most("seeds", self.seeds, MAX_SEEDS, ""))?;

        let topo = within("topology");
        let t = &self.topology;
        if t.servers == 0 {
            return Err((
                topo("servers"),
                "field `servers`: must be at least 1".into(),
            ));
        }
        check(
            topo("servers"),
            at_most("servers", t.servers.into(), MAX_SERVERS, ""),
        )?;
        if t.clients == 0 {
            return Err((
                topo("clients"),
                format!(
                    "field `clients`: app `{}` needs at least one client",
                    self.app
                ),
            ));
        }
        check(
            topo("clients"),
            at_most("clients", t.clients.into(), MAX_CLIENTS, ""),
        )?;

        let net = within("network");
        if let Some(range) = &self.network.latency_ms {
            let [lo, hi] = range[..] else {
                return Err((
                    net("latency_ms"),
                    format!(
                        "field `latency_ms`: expected two values, [min, max], found {}",
                        range.len()
                    ),
                ));
            };
            check(
                net("latency_ms"),
                at_most("latency_ms", hi, MAX_TIME_MS, ms),
            )?;
            if lo > hi {
                return Err((
                    net("latency_ms"),
                    format!("field `latency_ms`: minimum {lo} exceeds maximum {hi}"),
                ));
            }
        }

        let fl = within("faults");
        let f = &self.faults;
        for (field, v) in [
            ("reset_ppm", f.reset_ppm),
            ("refuse_ppm", f.refuse_ppm),
            ("spike_ppm", f.spike_ppm),
            ("drift_ppm_max", f.drift_ppm_max),
            ("udp_loss_ppm", f.udp_loss_ppm),
            ("udp_dup_ppm", f.udp_dup_ppm),
            ("udp_reorder_ppm", f.udp_reorder_ppm),
        ] {
            check(
                fl(field),
                at_most(field, v.into(), MAX_PPM, " (one million is always)"),
            )?;
        }
        check(
            fl("spike_ms"),
            at_most("spike_ms", f.spike_ms, MAX_TIME_MS, ms),
        )?;
        if let Some(h) = f.horizon_ms {
            check(fl("horizon_ms"), at_most("horizon_ms", h, MAX_TIME_MS, ms))?;
        }
        let sched = within("schedule");
        if let Some(q) = self.schedule.quantum_ms {
            check(
                sched("quantum_ms"),
                at_most("quantum_ms", q, MAX_TIME_MS, ms),
            )?;
        }
        if let Some(d) = self.schedule.pct_depth {
            let most = crate::pct::CHANGE_WINDOW;
            check(
                sched("pct_depth"),
                at_most("pct_depth", d.into(), most, " (the change-point window)"),
            )?;
        }
        for (what, n) in [
            ("partitions", f.partitions.len()),
            ("crashes", f.crashes.len()),
        ] {
            if n > MAX_RULES {
                return Err((
                    fl(what).max(line_of_entry(text, &format!("faults.{what}"), 0, "")),
                    format!("field `{what}`: {n} rules, above the largest allowed, {MAX_RULES}"),
                ));
            }
        }
        for (i, p) in f.partitions.iter().enumerate() {
            let line = |key: &str| line_of_entry(text, "faults.partitions", i, key);
            for (field, v) in [("at_ms", p.at_ms), ("duration_ms", p.duration_ms)] {
                at_most(field, v, MAX_TIME_MS, ms)
                    .map_err(|m| (line(field), format!("partition {i}: {m}")))?;
            }
            for (field, name) in [("a", &p.a), ("b", &p.b)] {
                if self.host_index(name).is_none() {
                    return Err((
                        line(field),
                        format!(
                            "field `{field}` of partition {i}: no host {name:?} in the topology"
                        ),
                    ));
                }
            }
        }
        for (i, c) in f.crashes.iter().enumerate() {
            let line = |key: &str| line_of_entry(text, "faults.crashes", i, key);
            at_most("at_ms", c.at_ms, MAX_TIME_MS, ms)
                .map_err(|m| (line("at_ms"), format!("crash {i}: {m}")))?;
            if let Some(r) = c.restart_after_ms {
                at_most("restart_after_ms", r, MAX_TIME_MS, ms)
                    .map_err(|m| (line("restart_after_ms"), format!("crash {i}: {m}")))?;
            }
            if self.host_index(&c.host).is_none() {
                return Err((
                    line("host"),
                    format!(
                        "field `host` of crash {i}: no host {:?} in the topology",
                        c.host
                    ),
                ));
            }
        }

        let lim = within("limits");
        if let Some(v) = self.limits.sim_time_s {
            check(lim("sim_time_s"), at_most("sim_time_s", v, MAX_TIME_S, ms))?;
        }
        if let Some(v) = self.limits.max_steps {
            check(lim("max_steps"), at_most("max_steps", v, MAX_STEPS, ""))?;
        }
        Ok(())
    }
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
        let mut s: Scenario = toml::from_str(text).map_err(|e| toml_error(path, text, e))?;
        s.path = path.to_path_buf();
        s.text = text.to_string();
        s.validate(text)
            .map_err(|(line, message)| err(line, message))?;
        Ok(s)
    }

    /// The `[workload]` table read into the workload's own type `P` (an empty table if the
    /// file has none, so `P`'s `#[serde(default)]` fields apply). An error names the file,
    /// the line and the field, as for the scenario's own fields: a value of the wrong type,
    /// an unknown field (with `#[serde(deny_unknown_fields)]`), a missing one.
    pub fn params<P: DeserializeOwned>(&self) -> Result<P, ScenarioError> {
        #[derive(Deserialize)]
        struct Only<P> {
            workload: Option<P>,
        }
        let err = |e: toml::de::Error, text: &str| toml_error(&self.path, text, e);
        let only: Only<P> = toml::from_str(&self.text).map_err(|e| err(e, &self.text))?;
        match only.workload {
            Some(p) => Ok(p),
            None => toml::from_str("").map_err(|e| {
                let mut e = err(e, "");
                e.line = line_of(&self.text, None, "app");
                e.message = format!("[workload]: {}", e.message);
                e
            }),
        }
    }

    /// An error about `field` of the `[workload]` table, at the line that sets it (else the
    /// table's header): for the checks a workload makes beyond types (bounds, one field
    /// against another).
    pub fn field_error(&self, field: &str, message: impl std::fmt::Display) -> ScenarioError {
        ScenarioError {
            file: self.path.clone(),
            line: line_of(&self.text, Some("workload"), field),
            message: format!("field `{field}`: {message}"),
        }
    }

    /// An error about the scenario's top-level `field` (such as `app`), at its line.
    pub fn top_error(&self, field: &str, message: impl std::fmt::Display) -> ScenarioError {
        ScenarioError {
            file: self.path.clone(),
            line: line_of(&self.text, None, field),
            message: format!("field `{field}`: {message}"),
        }
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
        let number = |digits: &str| {
            let i: u32 = digits.parse().ok()?;
            (i.to_string() == digits).then_some(i as usize)
        };
        let servers = self.topology.servers as usize;
        if let Some(i) = name.strip_prefix("server").and_then(number) {
            return (i < servers).then_some(i);
        }
        let i = name.strip_prefix("client").and_then(number)?;
        (i < self.topology.clients as usize).then_some(servers + i)
    }

    /// The fault horizon: swarm faults fall within it.
    pub fn horizon(&self) -> Duration {
        Duration::from_millis(self.faults.horizon_ms.unwrap_or(5_000))
    }

    /// A world builder for this scenario (seed or choices are set by the caller).
    pub fn builder(&self) -> SimBuilder {
        let mut b = crate::Sim::builder().check_clean(self.limits.clean.unwrap_or(true));
        if let Some(&[lo, hi]) = self.network.latency_ms.as_deref() {
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
        if let Some(q) = self.schedule.quantum_ms {
            b = b.quantum(Duration::from_millis(q));
        }
        if let Some(d) = self.schedule.pct_depth {
            b = b.pct((d > 0).then_some(d));
        }
        let hosts = self.topology.servers as usize + self.topology.clients as usize;
        match self.faults.mode {
            FaultMode::Portfolio => b.portfolio_swarm(hosts, self.horizon()),
            FaultMode::None => b.portfolio().faults(Faults::none()),
            FaultMode::Swarm => b.portfolio().swarm(hosts, self.horizon()),
            FaultMode::Rules => b.portfolio().faults(self.rules()),
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
    fn params_read_the_workload_table_with_file_line_and_field() {
        #[derive(Debug, Deserialize)]
        #[serde(deny_unknown_fields)]
        struct P {
            count: u32,
            #[serde(default)]
            buggy: bool,
        }
        let s = parse(&format!("{GOOD}[workload]\ncount = 4\nbuggy = true\n")).unwrap();
        let p: P = s.params().unwrap();
        assert_eq!((p.count, p.buggy), (4, true));
        let s = parse(&format!("{GOOD}[workload]\ncount = \"x\"\n")).unwrap();
        let e = s.params::<P>().unwrap_err();
        assert_eq!(e.line, 9, "{e}");
        assert!(
            e.to_string()
                .starts_with("scenarios/x.toml:9: field `count`"),
            "{e}"
        );
        let s = parse(&format!("{GOOD}[workload]\ncount = 1\ncolour = 2\n")).unwrap();
        let e = s.params::<P>().unwrap_err();
        assert_eq!(e.line, 10, "{e}");
        assert!(e.message.contains("colour"), "{e}");
        let s = parse(&format!("{GOOD}[workload]\nbuggy = true\n")).unwrap();
        let e = s.params::<P>().unwrap_err();
        assert_eq!(e.message, "field `count` is missing", "{e}");
        // No table at all: the workload's defaults, or its missing fields named.
        let s = parse(GOOD).unwrap();
        let e = s.params::<P>().unwrap_err();
        assert!(e.message.contains("`count` is missing"), "{e}");
        let e = s.field_error("count", "too big");
        assert_eq!(e.to_string(), "scenarios/x.toml:1: field `count`: too big");
        let s = parse(&format!("{GOOD}[workload]\ncount = 1\n")).unwrap();
        assert_eq!(s.field_error("count", "too big").line, 9);
    }

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
    fn a_missing_app_names_app_not_the_first_line() {
        let e = parse("name = \"x\"\ndescription = \"d\"\n").unwrap_err();
        assert_eq!(e.message, "field `app` is missing", "{e}");
        assert!(!e.message.contains("`name`"), "{e}");
        let e = parse(&format!(
            "{GOOD}[faults]\nmode = \"rules\"\n[[faults.partitions]]\nat_ms = 1\na = \"server0\"\nb = \"client0\"\n"
        ))
        .unwrap_err();
        assert!(e.message.contains("`duration_ms` is missing"), "{e}");
    }

    /// `GOOD` with `key = value` added under `[table]`, on line [`FIELD_LINE`].
    fn with(table: &str, key: &str, value: &str) -> String {
        match (table, key) {
            ("topology", "clients") => {
                GOOD.replace("clients = 3", &format!("servers = 1\n\nclients = {value}"))
            }
            ("topology", _) => format!("{GOOD}\n{key} = {value}\n"),
            _ => format!("{GOOD}[{table}]\n{key} = {value}\n"),
        }
    }

    /// The line `key = value` lands on in [`with`].
    const FIELD_LINE: usize = 9;

    #[test]
    fn the_sizes_that_aborted_the_process_are_errors_naming_file_line_and_field() {
        for (app, table, key, value) in [
            ("echo", "topology", "clients", "4294967295"),
            ("echo", "limits", "sim_time_s", "18446744074"),
        ] {
            let text = with(table, key, value).replace("\"echo\"", &format!("{app:?}"));
            let e = parse(&text).unwrap_err();
            assert!(
                e.to_string()
                    .starts_with(&format!("scenarios/x.toml:{FIELD_LINE}: field `{key}`")),
                "{key}: {e}"
            );
        }
    }

    #[test]
    fn every_numeric_field_is_bounded() {
        use limits::*;
        let y = MAX_TIME_MS;
        let ppm = MAX_PPM;
        for (table, key, max) in [
            ("topology", "servers", MAX_SERVERS),
            ("faults", "horizon_ms", y),
            ("faults", "spike_ms", y),
            ("faults", "reset_ppm", ppm),
            ("faults", "refuse_ppm", ppm),
            ("faults", "spike_ppm", ppm),
            ("faults", "drift_ppm_max", ppm),
            ("faults", "udp_loss_ppm", ppm),
            ("faults", "udp_dup_ppm", ppm),
            ("faults", "udp_reorder_ppm", ppm),
            ("limits", "sim_time_s", MAX_TIME_S),
            ("limits", "max_steps", MAX_STEPS),
        ] {
            parse(&with(table, key, &max.to_string()))
                .unwrap_or_else(|e| panic!("{key} = {max} is allowed: {e}"));
            let e = parse(&with(table, key, &(max + 1).to_string())).unwrap_err();
            assert_eq!(e.line, FIELD_LINE, "{key}: {e}");
            assert!(e.message.starts_with(&format!("field `{key}`")), "{e}");
        }
        let e = parse(&GOOD.replace("clients = 3", &format!("clients = {}", MAX_CLIENTS + 1)))
            .unwrap_err();
        assert_eq!(e.line, 7, "{e}");
        assert!(e.message.starts_with("field `clients`"), "{e}");
        let e =
            parse(&GOOD.replace("seeds = 10", &format!("seeds = {}", MAX_SEEDS + 1))).unwrap_err();
        assert!(e.message.starts_with("field `seeds`"), "{e}");
    }

    #[test]
    fn rule_times_are_bounded_and_name_their_rule_and_line() {
        let y = limits::MAX_TIME_MS;
        let rules = format!(
            "{GOOD}[faults]\nmode = \"rules\"\n\
             [[faults.partitions]]\nat_ms = 1\nduration_ms = 2\na = \"server0\"\nb = \"client0\"\n\
             [[faults.partitions]]\nat_ms = {}\nduration_ms = 2\na = \"server0\"\nb = \"client1\"\n\
             [[faults.crashes]]\nat_ms = 5\nhost = \"client2\"\nrestart_after_ms = {}\n",
            y + 1,
            y + 1
        );
        let e = parse(&rules).unwrap_err();
        assert_eq!(e.line, 16, "{e}");
        assert!(e.message.contains("partition 1: field `at_ms`"), "{e}");
        let e = parse(&rules.replacen(&format!("at_ms = {}", y + 1), "at_ms = 3", 1)).unwrap_err();
        assert_eq!(e.line, 23, "{e}");
        assert!(
            e.message.contains("crash 0: field `restart_after_ms`"),
            "{e}"
        );
        let rules = rules.replace(&format!("{}", y + 1), &y.to_string());
        parse(&rules).unwrap();
        let e = parse(&rules.replace("\"client1\"", "\"client3\"")).unwrap_err();
        assert_eq!(e.line, 19, "{e}");
        assert!(e.message.contains("no host \"client3\""), "{e}");
    }

    #[test]
    fn latency_needs_two_ordered_values() {
        for (value, want) in [
            ("[5]", "expected two values, [min, max], found 1"),
            ("[1, 2, 3]", "expected two values, [min, max], found 3"),
            ("[]", "found 0"),
            ("[9, 3]", "minimum 9 exceeds maximum 3"),
        ] {
            let e = parse(&with("network", "latency_ms", value)).unwrap_err();
            assert_eq!(e.line, FIELD_LINE, "{e}");
            assert!(e.message.starts_with("field `latency_ms`"), "{e}");
            assert!(e.message.contains(want), "{value}: {e}");
        }
        let ok = parse(&with("network", "latency_ms", "[2, 7]")).unwrap();
        assert_eq!(ok.network.latency_ms, Some(vec![2, 7]));
    }

    #[test]
    fn an_app_without_clients_is_refused() {
        for app in ["echo", "anything"] {
            let text = GOOD
                .replace("clients = 3", "clients = 0")
                .replace("\"echo\"", &format!("{app:?}"));
            let e = parse(&text).unwrap_err();
            assert_eq!(e.line, 7, "{e}");
            assert!(
                e.message.contains(&format!(
                    "field `clients`: app `{app}` needs at least one client"
                )),
                "{e}"
            );
        }
    }

    #[test]
    fn host_names_resolve_without_listing_every_host() {
        let s = parse(&GOOD.replace("clients = 3", "clients = 100000")).unwrap();
        assert_eq!(s.host_index("server0"), Some(0));
        assert_eq!(s.host_index("client99999"), Some(100_000));
        assert_eq!(s.host_index("client100000"), None);
        assert_eq!(s.host_index("server1"), None);
        assert_eq!(s.host_index("client01"), None);
        assert_eq!(s.host_index("client"), None);
        assert_eq!(s.host_index("mars"), None);
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
