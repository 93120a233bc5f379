//! The command line as a library: `list`, `explore`, `run`, `replay` and `shrink` over
//! scenario files, for the workloads a [`Registry`] knows.
//!
//! ```text
//! NAME list [PATH...]
//! NAME workloads
//! NAME explore [PATH...] [--seeds N] [--start S] [--jobs J] [--shard I/N]
//!              [--check-determinism] [--json] [--junit FILE]
//! NAME run SCENARIO --seed S [--trace] [--trace-out FILE] [--html FILE]
//! NAME replay FILE
//! NAME shrink FILE
//! ```
//!
//! `explore` exits 0 iff every scenario met its expectation: `expect = "pass"` scenarios
//! with no failing seed, `expect = "fail"` scenarios (planted bugs) with one found. The
//! shard may also come from the environment: `TORSION_SHARD=I/N` (a CI matrix), or
//! `JOB_COMPLETION_INDEX=I` with `TORSION_SHARDS=N` (a Kubernetes Indexed Job). `run` and
//! `replay` exit 1 when the seed or the replayed schedule fails, 0 when it passes (a replay
//! after a fix passes, and says its trace differs from the recorded one). `run --html FILE`
//! writes the trace viewer's page; every failure report writes one next to its replay file.
//!
//! Wall-clock time is read here, in the command line, only to report seeds per second; it
//! never reaches a simulated run.
//!
//! A crate testing its own protocol registers its workloads and hands the registry to
//! [`main`], from its own binary (or a `harness = false` test target):
//!
//! ```no_run
//! use std::process::ExitCode;
//! use serde::Deserialize;
//! use torsion_sim::cli::{FieldError, Params, Registry};
//! use torsion_sim::scenario::Scenario;
//! use torsion_sim::Sim;
//!
//! /// The `[workload]` table of a scenario running `app = "counter"`.
//! #[derive(Deserialize)]
//! #[serde(deny_unknown_fields)]
//! struct Counter {
//!     #[serde(default = "ten")]
//!     increments: u64,
//! }
//! fn ten() -> u64 { 10 }
//!
//! impl Params for Counter {
//!     fn check(&self, _s: &Scenario) -> Result<(), FieldError> {
//!         if self.increments > 1_000 {
//!             return Err(FieldError::new("increments", "at most 1000"));
//!         }
//!         Ok(())
//!     }
//! }
//!
//! fn counter(s: &Scenario, p: &Counter, sim: &Sim) {
//!     // Start servers and clients on hosts `server0..` and `client0..`, register the
//!     // invariants with `sim.invariant(..)` and `sim.deadline(..)`, then run:
//!     sim.run_until_idle();
//! }
//!
//! fn main() -> ExitCode {
//!     let mut registry = Registry::new("counter-sim");
//!     registry.workload("counter", "a counter service", counter);
//!     torsion_sim::cli::main(registry)
//! }
//! ```
//!
//! Then `cargo run -- explore scenarios` runs every `scenarios/*.toml` (each names a
//! registered workload in `app`; another name is an error naming the file and line). The scenario's generic tables (`[topology]`, `[network]`, `[faults]`,
//! `[limits]`) are read and bounded by [`crate::scenario`]; the `[workload]` table is the
//! workload's: it is read into its [`Params`] type when the file is loaded (by `list` too), so
//! a wrong type, an unknown field, a missing one, or a value its [`Params::check`] refuses
//! is an error naming the file, line and field before any seed runs. The workload's
//! invariants are the ones its body registers on the world ([`Sim::invariant`],
//! [`Sim::deadline`]), checked after every event, plus the body's own assertions at the end.
//!
//! `explore` exits 0 iff every scenario met its expectation: `expect = "pass"` scenarios
//! with no failing seed, `expect = "fail"` scenarios (planted bugs) with one found. The
//! shard may also come from the environment: `TORSION_SHARD=I/N` (a CI matrix), or
//! `JOB_COMPLETION_INDEX=I` with `TORSION_SHARDS=N` (a Kubernetes Indexed Job). Exit codes:
//! 0 success, 1 a failure found (or a planted bug not found), 2 a usage or input error.
//!
//! Wall-clock time is read here, in the command line, only to report seeds per second; it
//! never reaches a simulated run.
//!
//! The bundled `torsion-sim` binary (`cargo run -p torsion-sim -- explore scenarios`) is
//! this module with the demo apps of `torsion-apps` registered, in
//! `sim/src/bin/torsion-sim/`. It is a target of this package, so `-p torsion-sim` finds
//! it; `torsion-apps` is an optional dependency of the package, enabled by the default
//! `apps` feature and required by that binary target alone (`required-features`). The
//! library never names it: a crate depending on `torsion-sim` with
//! `default-features = false` gets the simulator and this command line without the demo
//! apps. (Cargo gives a package's binaries no dependencies of their own; putting the
//! bundled workloads in `torsion-apps` instead would make it depend on `torsion-sim` and
//! close a cycle, and moving the binary to another package would break the `-p torsion-sim`
//! command.)

use std::collections::BTreeMap;
use std::io::{IsTerminal, Write};
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use indicatif::{ProgressBar, ProgressStyle};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::check::{
    investigate, run_once, sweep, Body, Options, Outcome, ReplayFile, Report, Summary,
};
use crate::scenario::{Expect, Scenario, ScenarioError};
use crate::Sim;

/// A workload's parameters: its scenario's `[workload]` table, read with serde.
///
/// Derive `Deserialize` (with `#[serde(deny_unknown_fields)]`, so a misspelt field is an
/// error, and `#[serde(default)]` where a field may be left out) and implement `check` for
/// what types cannot say: bounds, one field against another, against the topology.
pub trait Params: DeserializeOwned + Send + Sync + 'static {
    /// Checks the values once the table parsed; an error names the field, and the command
    /// line reports it with the file and the field's line. Default: everything is fine.
    fn check(&self, scenario: &Scenario) -> Result<(), FieldError> {
        let _ = scenario;
        Ok(())
    }
}

/// A workload without parameters: its scenarios have no `[workload]` table (or an empty
/// one).
impl Params for NoParams {}

/// No parameters (an empty `[workload]` table).
#[derive(Clone, Copy, Debug, Default, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct NoParams {}

/// A value of `[workload]` a workload refuses: the field and what is wrong with it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FieldError {
    /// The field, as written in the table.
    pub field: String,
    /// What is wrong (the error reads `file:line: field `FIELD`: MESSAGE`).
    pub message: String,
}

impl FieldError {
    /// `field` is wrong: `message`.
    pub fn new(field: &str, message: impl std::fmt::Display) -> Self {
        FieldError {
            field: field.to_string(),
            message: message.to_string(),
        }
    }
}

/// What a sweep runs for one scenario.
pub type ScenarioBody = Arc<Body<'static>>;

type Build = Arc<dyn Fn(&Scenario) -> Result<ScenarioBody, ScenarioError> + Send + Sync>;

struct Entry {
    about: String,
    build: Build,
}

/// The workloads a command line knows, by the name a scenario's `app` gives.
pub struct Registry {
    name: &'static str,
    workloads: BTreeMap<String, Entry>,
}

impl Registry {
    /// An empty registry for the program `name` (shown in help and error messages).
    pub fn new(name: &'static str) -> Self {
        Registry {
            name,
            workloads: BTreeMap::new(),
        }
    }

    /// Registers `run` as the workload `name`: a scenario with `app = "NAME"` runs it on
    /// each seed's world, with its `[workload]` table read into `P` (once, when the file is
    /// loaded). `run` builds the hosts (`server0..`, `client0..`, as the topology says),
    /// registers the invariants on the world, runs it, and asserts what must hold at the
    /// end. A name registered twice keeps the later workload.
    pub fn workload<P, F>(&mut self, name: &str, about: &str, run: F) -> &mut Self
    where
        P: Params,
        F: Fn(&Scenario, &P, &Sim) + Send + Sync + 'static,
    {
        let run = Arc::new(run);
        let build: Build = Arc::new(move |s: &Scenario| {
            let p: P = s.params()?;
            p.check(s)
                .map_err(|e| s.field_error(&e.field, &e.message))?;
            let (s, run) = (s.clone(), run.clone());
            let body: ScenarioBody = Arc::new(move |sim: &Sim| run(&s, &p, sim));
            Ok(body)
        });
        self.workloads.insert(
            name.to_string(),
            Entry {
                about: about.to_string(),
                build,
            },
        );
        self
    }

    /// The registered workloads' names, sorted.
    pub fn names(&self) -> Vec<&str> {
        self.workloads.keys().map(String::as_str).collect()
    }

    /// The body for `s`: its workload's, with its parameters read and checked. An unknown
    /// `app` or a bad `[workload]` table is an error naming the file, line and field.
    pub fn body(&self, s: &Scenario) -> Result<ScenarioBody, ScenarioError> {
        let entry = self.workloads.get(&s.app).ok_or_else(|| {
            s.top_error(
                "app",
                format!(
                    "unknown app {:?} (known: {})",
                    s.app,
                    self.names().join(", ")
                ),
            )
        })?;
        (entry.build)(s)
    }

    /// Reads and checks a scenario file, and builds its body.
    pub fn load(&self, path: &Path) -> Result<(Scenario, ScenarioBody), ScenarioError> {
        let s = Scenario::load(path)?;
        let body = self.body(&s)?;
        Ok((s, body))
    }

    /// Parses and checks a scenario's text (read from `path`), and builds its body.
    pub fn parse(
        &self,
        path: &Path,
        text: &str,
    ) -> Result<(Scenario, ScenarioBody), ScenarioError> {
        let s = Scenario::parse(path, text)?;
        let body = self.body(&s)?;
        Ok((s, body))
    }

    /// Every scenario under `paths` (files, or directories of `*.toml`), with its body.
    pub fn load_all(
        &self,
        paths: &[PathBuf],
    ) -> Result<Vec<(Scenario, ScenarioBody)>, ScenarioError> {
        Scenario::load_all(paths)?
            .into_iter()
            .map(|s| self.body(&s).map(|b| (s, b)))
            .collect()
    }
}

#[derive(Parser)]
#[command(version, about = "Deterministic simulation of torsion protocols")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// List the scenarios, one line each.
    List {
        /// Scenario files or directories.
        #[arg(default_value = "scenarios")]
        paths: Vec<PathBuf>,
    },
    /// List the workloads a scenario's `app` can name.
    Workloads,
    /// Run scenarios over many seeds and report what was found.
    Explore(ExploreArgs),
    /// Run one seed of a scenario.
    Run {
        /// A scenario file, or the name of one in `scenarios/`.
        scenario: String,
        /// The seed.
        #[arg(long)]
        seed: u64,
        /// Print the full trace.
        #[arg(long)]
        trace: bool,
        /// Write the full trace to a file.
        #[arg(long)]
        trace_out: Option<PathBuf>,
        /// Write the trace viewer's page (one self-contained HTML file) to a file.
        #[arg(long)]
        html: Option<PathBuf>,
    },
    /// Re-run a replay file's schedule: exit 1 if it still fails, 0 if not (and say whether
    /// the trace matches the recorded one).
    Replay {
        /// The replay file (written by a failing `explore` or test).
        file: PathBuf,
    },
    /// Shrink a replay file's failure and print the minimal trace.
    Shrink {
        /// The replay file.
        file: PathBuf,
    },
}

/// Failing seeds panic inside the harness, which catches them and reports the seed (the
/// error, the faults, the replay command, the shrunk trace); the default hook would also
/// print each panic with a backtrace as it happens. This one keeps quiet, remembering the
/// last panic's location in case one escapes the harness (a bug in the simulator itself).
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        if let Some(at) = info.location() {
            *last_panic().lock().unwrap_or_else(|e| e.into_inner()) = Some(at.to_string());
        }
    }));
}

fn last_panic() -> &'static std::sync::Mutex<Option<String>> {
    static LAST: std::sync::Mutex<Option<String>> = std::sync::Mutex::new(None);
    &LAST
}

/// Runs the command line on the process's arguments with the workloads of `registry`, and
/// returns the exit code: 0 success, 1 a failure found (or a planted bug not found), 2 a
/// usage or input error (reported on stderr as `NAME: file:line: ...`).
pub fn main(registry: Registry) -> ExitCode {
    main_from(registry, std::env::args_os())
}

/// [`main`] on the arguments `args` (the first is the program's name).
pub fn main_from<I, T>(registry: Registry, args: I) -> ExitCode
where
    I: IntoIterator<Item = T>,
    T: Into<std::ffi::OsString> + Clone,
{
    let matches = match Cli::command()
        .name(registry.name)
        .try_get_matches_from(args)
    {
        Ok(m) => m,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(if e.use_stderr() { 2 } else { 0 });
        }
    };
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(c) => c,
        Err(e) => {
            let _ = e.print();
            return ExitCode::from(2);
        }
    };
    quiet_panics();
    let r = &registry;
    let result = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| dispatch(r, cli)))
        .unwrap_or_else(|payload| {
            let message = torsion::error::Panicked::from_payload(payload).message;
            let at = last_panic()
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .take()
                .unwrap_or_default();
            Err(format!("internal error at {at}: {message}"))
        });
    match result {
        Ok(code) => code,
        Err(e) => {
            eprintln!("{}: {e}", registry.name);
            ExitCode::from(2)
        }
    }
}

fn dispatch(reg: &Registry, cli: Cli) -> Result<ExitCode, String> {
    match cli.command {
        Command::List { paths } => list(reg, &paths),
        Command::Workloads => {
            let width = reg.workloads.keys().map(String::len).max().unwrap_or(0);
            for (name, e) in &reg.workloads {
                println!("{name:width$}  {}", e.about);
            }
            Ok(ExitCode::SUCCESS)
        }
        Command::Explore(args) => explore(reg, args),
        Command::Run {
            scenario,
            seed,
            trace,
            trace_out,
            html,
        } => run(
            reg,
            &scenario,
            seed,
            trace,
            trace_out.as_deref(),
            html.as_deref(),
        ),
        Command::Replay { file } => replay(reg, &file),
        Command::Shrink { file } => shrink(reg, &file),
    }
}

fn list(reg: &Registry, paths: &[PathBuf]) -> Result<ExitCode, String> {
    let scenarios = reg.load_all(paths).map_err(|e| e.to_string())?;
    let width = scenarios
        .iter()
        .map(|(s, _)| s.name.len())
        .max()
        .unwrap_or(0);
    for (s, _) in &scenarios {
        let expect = match s.expect {
            Expect::Pass => "pass",
            Expect::Fail => "fail",
        };
        println!(
            "{:width$}  {:9}  expect {expect}  {:>6} seeds  {}",
            s.name, s.app, s.seeds, s.description
        );
    }
    Ok(ExitCode::SUCCESS)
}

#[derive(clap::Args)]
struct ExploreArgs {
    /// Scenario files or directories.
    #[arg(default_value = "scenarios")]
    paths: Vec<PathBuf>,
    /// Seeds per scenario (default: each scenario's own `seeds`).
    #[arg(long)]
    seeds: Option<u64>,
    /// The first seed.
    #[arg(long, default_value_t = 0)]
    start: u64,
    /// Threads (default: one per core).
    #[arg(long)]
    jobs: Option<usize>,
    /// Run only shard I of N (`I/N`, 0-based).
    #[arg(long)]
    shard: Option<String>,
    /// Run each seed twice; any trace difference fails.
    #[arg(long)]
    check_determinism: bool,
    /// Print one JSON object per scenario instead of the table.
    #[arg(long)]
    json: bool,
    /// Also write a JUnit XML report.
    #[arg(long)]
    junit: Option<PathBuf>,
    /// Include the list of seeds run in the JSON output.
    #[arg(long, hide = true)]
    emit_seeds: bool,
}

/// One scenario's line of the summary (and of `--json`).
#[derive(Serialize)]
struct Row {
    scenario: String,
    app: String,
    expect: &'static str,
    seeds: u64,
    failures: u64,
    seconds: f64,
    seeds_per_s: f64,
    events: u64,
    events_per_s: f64,
    first_failing_seed: Option<u64>,
    shrunk_len: Option<usize>,
    verdict: &'static str,
    error: Option<String>,
    replay_file: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    seeds_run: Option<Vec<u64>>,
    #[serde(skip)]
    report: Option<String>,
}

/// Parses `I/N`.
fn parse_shard(text: &str) -> Result<(u64, u64), String> {
    let (i, n) = text
        .split_once('/')
        .ok_or_else(|| format!("shard {text:?}: expected I/N"))?;
    let i: u64 = i
        .trim()
        .parse()
        .map_err(|_| format!("shard {text:?}: bad index"))?;
    let n: u64 = n
        .trim()
        .parse()
        .map_err(|_| format!("shard {text:?}: bad count"))?;
    if n == 0 || i >= n {
        return Err(format!("shard {text:?}: need 0 <= I < N"));
    }
    Ok((i, n))
}

/// The shard from the flag, else `TORSION_SHARD`, else a Kubernetes Indexed Job's
/// `JOB_COMPLETION_INDEX` with `TORSION_SHARDS`, else the whole range.
fn shard_from(flag: Option<&str>) -> Result<(u64, u64), String> {
    if let Some(s) = flag {
        return parse_shard(s);
    }
    if let Ok(s) = std::env::var("TORSION_SHARD") {
        return parse_shard(&s);
    }
    if let (Ok(i), Ok(n)) = (
        std::env::var("JOB_COMPLETION_INDEX"),
        std::env::var("TORSION_SHARDS"),
    ) {
        return parse_shard(&format!("{i}/{n}"));
    }
    Ok((0, 1))
}

/// Wall-clock time for the seeds/s and events/s columns only. It is read around whole
/// sweeps, in the command line, and never enters a simulated run (which sees only virtual
/// time), so it cannot affect determinism.
#[allow(clippy::disallowed_methods)]
fn now() -> std::time::Instant {
    std::time::Instant::now()
}

fn explore(reg: &Registry, args: ExploreArgs) -> Result<ExitCode, String> {
    let scenarios = reg.load_all(&args.paths).map_err(|e| e.to_string())?;
    if scenarios.is_empty() {
        return Err("no scenarios found".into());
    }
    let shard = shard_from(args.shard.as_deref())?;
    let interactive = std::io::stderr().is_terminal() && !args.json;
    let mut rows = Vec::new();
    for (s, body) in &scenarios {
        let mut opts = Options::new(&s.name);
        opts.seeds = args.seeds.unwrap_or(s.seeds);
        opts.start = args.start;
        if let Some(j) = args.jobs {
            opts.jobs = j.max(1);
        }
        opts.shard = shard;
        opts.check_determinism |= args.check_determinism;
        opts.scenario = Some(s.path.display().to_string());
        opts.program = Some(reg.name.to_string());
        opts.record_seeds = args.emit_seeds;
        let bar = if interactive {
            let in_shard = opts.seeds.saturating_sub(shard.0).div_ceil(shard.1);
            let pb = ProgressBar::new(in_shard);
            pb.set_style(
                ProgressStyle::with_template("{prefix:>16} [{bar:30}] {pos}/{len} seeds {per_sec}")
                    .map_err(|e| e.to_string())?
                    .progress_chars("=> "),
            );
            pb.set_prefix(s.name.clone());
            let p = pb.clone();
            opts.on_seed = Some(Arc::new(move || p.inc(1)));
            Some(pb)
        } else {
            None
        };
        let builder = || s.builder();
        let started = now();
        let summary = sweep(&opts, &builder, &**body);
        let seconds = started.elapsed().as_secs_f64();
        if let Some(pb) = bar {
            pb.finish_and_clear();
        }
        let row = make_row(s, &summary, seconds, args.emit_seeds);
        if !args.json && !interactive {
            eprintln!(
                "{}: {} seeds, {} failures, {} ({:.1}s)",
                row.scenario, row.seeds, row.failures, row.verdict, row.seconds
            );
        }
        if args.json {
            let line = serde_json::to_string(&row).map_err(|e| e.to_string())?;
            println!("{line}");
        }
        rows.push(row);
    }
    if !args.json {
        print_table(&rows);
        for r in rows.iter().filter(|r| r.verdict != "ok") {
            if let Some(report) = &r.report {
                println!("\n{report}");
            }
        }
    }
    if let Some(path) = &args.junit {
        std::fs::write(path, junit(&rows)).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    let all_ok = rows.iter().all(|r| r.verdict == "ok");
    Ok(if all_ok {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

fn make_row(s: &Scenario, summary: &Summary, seconds: f64, emit_seeds: bool) -> Row {
    let failed = summary.failure.is_some();
    let verdict = match (s.expect, failed) {
        (Expect::Pass, false) | (Expect::Fail, true) => "ok",
        (Expect::Pass, true) => "FAILED",
        (Expect::Fail, false) => "BUG NOT FOUND",
    };
    let secs = seconds.max(1e-9);
    Row {
        scenario: s.name.clone(),
        app: s.app.clone(),
        expect: match s.expect {
            Expect::Pass => "pass",
            Expect::Fail => "fail",
        },
        seeds: summary.seeds,
        failures: u64::from(failed),
        seconds,
        seeds_per_s: summary.seeds as f64 / secs,
        events: summary.steps,
        events_per_s: summary.steps as f64 / secs,
        first_failing_seed: summary.failure.as_ref().map(|f| f.seed),
        shrunk_len: summary.failure.as_ref().map(|f| f.choices.len()),
        verdict,
        error: summary.failure.as_ref().map(|f| f.error.clone()),
        replay_file: summary
            .failure
            .as_ref()
            .and_then(|f| f.replay_file.as_ref())
            .map(|p| p.display().to_string()),
        seeds_run: emit_seeds.then(|| summary.seeds_run.clone()),
        report: summary.failure.as_ref().map(|f| f.to_string()),
    }
}

fn print_table(rows: &[Row]) {
    let w = rows
        .iter()
        .map(|r| r.scenario.len())
        .max()
        .unwrap_or(8)
        .max(8);
    println!(
        "{:w$}  {:>6}  {:>8}  {:>9}  {:>10}  {:>12}  {:>7}  {:>6}  verdict",
        "scenario", "seeds", "failures", "seeds/s", "events/s", "first fail", "shrunk", "expect"
    );
    for r in rows {
        let first = r
            .first_failing_seed
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        let shrunk = r
            .shrunk_len
            .map_or_else(|| "-".to_string(), |n| n.to_string());
        println!(
            "{:w$}  {:>6}  {:>8}  {:>9.0}  {:>10.0}  {:>12}  {:>7}  {:>6}  {}",
            r.scenario,
            r.seeds,
            r.failures,
            r.seeds_per_s,
            r.events_per_s,
            first,
            shrunk,
            r.expect,
            r.verdict
        );
    }
}

fn xml_escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&apos;"),
            c if (c as u32) < 0x20 && c != '\n' && c != '\t' && c != '\r' => {
                out.push_str(&format!("&#x{:x};", c as u32));
            }
            c => out.push(c),
        }
    }
    out
}

fn junit(rows: &[Row]) -> String {
    let failures = rows.iter().filter(|r| r.verdict != "ok").count();
    let total: f64 = rows.iter().map(|r| r.seconds).sum();
    let mut x = String::from("<?xml version=\"1.0\" encoding=\"UTF-8\"?>\n");
    x.push_str(&format!(
        "<testsuites name=\"torsion-sim\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">\n",
        rows.len()
    ));
    x.push_str(&format!(
        "  <testsuite name=\"explore\" tests=\"{}\" failures=\"{failures}\" time=\"{total:.3}\">\n",
        rows.len()
    ));
    for r in rows {
        x.push_str(&format!(
            "    <testcase classname=\"scenarios\" name=\"{}\" time=\"{:.3}\">\n",
            xml_escape(&r.scenario),
            r.seconds
        ));
        x.push_str(&format!(
            "      <system-out>{} seeds, expect {}, verdict {}</system-out>\n",
            r.seeds, r.expect, r.verdict
        ));
        if r.verdict != "ok" {
            let message = match (&r.error, r.verdict) {
                (Some(e), _) => e.clone(),
                (None, v) => v.to_string(),
            };
            x.push_str(&format!(
                "      <failure message=\"{}\">{}</failure>\n",
                xml_escape(&message),
                xml_escape(r.report.as_deref().unwrap_or(r.verdict))
            ));
        }
        x.push_str("    </testcase>\n");
    }
    x.push_str("  </testsuite>\n</testsuites>\n");
    x
}

/// A scenario by path, or by name under `scenarios/`.
fn find_scenario(reg: &Registry, arg: &str) -> Result<(Scenario, ScenarioBody), String> {
    let p = Path::new(arg);
    // A path (an existing file, or anything that looks like one) is loaded as given, so a
    // missing file is reported as such rather than looked up by name.
    if p.exists() || arg.ends_with(".toml") || arg.contains(std::path::MAIN_SEPARATOR) {
        return reg.load(p).map_err(|e| e.to_string());
    }
    let all = reg
        .load_all(&[PathBuf::from("scenarios")])
        .map_err(|e| e.to_string())?;
    all.into_iter()
        .find(|(s, _)| s.name == arg)
        .ok_or_else(|| format!("no scenario file or name {arg:?}"))
}

/// Options for investigating one seed of `s` from the command line: its name, its file
/// in the replay file, the default replay directory.
fn options_for(reg: &Registry, s: &Scenario) -> Options {
    let mut opts = Options::new(&s.name);
    opts.scenario = Some(s.path.display().to_string());
    opts.program = Some(reg.name.to_string());
    opts
}

/// Runs one seed of `s`. The full trace costs memory and time: it is kept only when asked
/// for (a failure is re-run with it for the report).
pub fn run_seed(s: &Scenario, body: &Body<'_>, seed: u64, keep_trace: bool) -> Outcome {
    let make = || s.builder().seed(seed).trace(keep_trace).build();
    run_once(&make, body)
}

fn run(
    reg: &Registry,
    arg: &str,
    seed: u64,
    trace: bool,
    trace_out: Option<&Path>,
    html: Option<&Path>,
) -> Result<ExitCode, String> {
    let (s, body) = find_scenario(reg, arg)?;
    let keep = trace || trace_out.is_some() || html.is_some();
    let out = run_seed(&s, &*body, seed, keep);
    if trace {
        print!("{}", out.trace);
    }
    if let Some(path) = trace_out {
        std::fs::write(path, &out.trace).map_err(|e| format!("{}: {e}", path.display()))?;
    }
    if let Some(path) = html {
        let failure = out.error.as_ref().map(ToString::to_string);
        let title = format!("{} seed {seed}", s.name);
        crate::html::write_trace_html(path, &out.full_trace, &title, failure.as_deref())?;
        println!("viewer: {}", path.display());
    }
    println!(
        "scenario {} seed {seed}: {} events, trace hash {:016x}",
        s.name, out.steps, out.hash
    );
    println!("faults: {}", out.faults);
    match out.error {
        None => {
            println!("passed");
            Ok(ExitCode::SUCCESS)
        }
        Some(e) => {
            println!("FAILED: {e}\n");
            let builder = || s.builder();
            let report = investigate(&options_for(reg, &s), seed, &builder, &*body);
            println!("{report}");
            Ok(ExitCode::FAILURE)
        }
    }
}

fn load_replay(
    reg: &Registry,
    file: &Path,
) -> Result<(ReplayFile, Scenario, ScenarioBody), String> {
    let r = ReplayFile::load(file)?;
    let scenario = r.scenario.clone().ok_or_else(|| {
        format!(
            "{}: no `scenario` field; replay it with its test",
            file.display()
        )
    })?;
    let (s, body) = find_scenario(reg, &scenario)?;
    Ok((r, s, body))
}

/// Runs a replay file's schedule and says whether it still fails, as `run` does for a seed:
/// exit status 1 if it fails, 0 if it passes (after a fix: its trace then differs from the
/// recorded one, which is said, not treated as a failure). Whether the run reproduced the
/// recorded trace exactly is printed either way.
fn replay(reg: &Registry, file: &Path) -> Result<ExitCode, String> {
    let (r, s, body) = load_replay(reg, file)?;
    let make = || s.builder().choices(r.choices.clone()).trace(true).build();
    let out = run_once(&make, &*body);
    let hash = format!("{:016x}", out.hash);
    let failed = out.error.is_some();
    match &out.error {
        Some(e) => {
            let report = Report {
                name: r.name.clone(),
                seed: r.seed,
                error: e.to_string(),
                faults: out.faults.clone(),
                choices: r.choices.clone(),
                original_len: r.choices.len(),
                shrink_runs: 0,
                trace: out.trace.clone(),
                trace_hash: out.hash,
                replay_file: Some(file.to_path_buf()),
                scenario: r.scenario.clone(),
                program: Some(reg.name.to_string()),
                test: None,
            };
            println!("{report}");
        }
        None => print!("{}", out.trace),
    }
    let _ = std::io::stdout().flush();
    if hash == r.trace_hash {
        println!("trace hash {hash} matches the replay file");
    } else {
        println!(
            "trace hash {hash} differs from the replay file's {} (the code changed)",
            r.trace_hash
        );
    }
    if failed {
        println!("the schedule still fails");
        Ok(ExitCode::FAILURE)
    } else {
        println!("the schedule no longer fails");
        Ok(ExitCode::SUCCESS)
    }
}

fn shrink(reg: &Registry, file: &Path) -> Result<ExitCode, String> {
    let (r, s, body) = load_replay(reg, file)?;
    let builder = || s.builder();
    let report = investigate(&options_for(reg, &s), r.seed, &builder, &*body);
    println!("{report}");
    Ok(ExitCode::SUCCESS)
}
