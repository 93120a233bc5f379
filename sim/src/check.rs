//! The runner: a test body over many seeds, then reproduce, shrink and report the failure.
//!
//! ```no_run
//! use torsion_sim::{check, Sim};
//!
//! check("my protocol survives resets", |sim: &Sim| {
//!     let server = sim.host("server");
//!     // ... listen, connect, add invariants ...
//!     sim.run_until_idle();
//! });
//! ```
//!
//! On the first failing seed it re-runs that seed recording every choice and keeping the
//! full trace, confirms the failure reproduces, shrinks the choice sequence to the smallest
//! one that still fails the same way, and panics with a report: the seed, the error, the
//! fault mix of the shrunk run (in swarm mode the mix is drawn from the choices, so it shrinks
//! with them), the command that replays it, and the shrunk trace. It also writes a replay file
//! (`<name>-<seed>.toml` under `$CARGO_TARGET_DIR/torsion-replays` when `CARGO_TARGET_DIR` is
//! set, else `target/torsion-replays`) holding the check's name, the shrunk choices and the
//! expected trace hash, and next to it `<name>-<seed>.html`: the shrunk run's trace as a
//! space-time diagram to open in a browser (see [`crate::html`]).
//!
//! Environment overrides, as in other Rust simulation harnesses:
//! `TORSION_SEED=S` runs that one seed; `TORSION_SEEDS=N` runs N seeds; `TORSION_JOBS=J` runs
//! on J threads; `TORSION_CHECK_DETERMINISM=1` runs each seed twice and fails on any trace
//! difference, naming the first differing event; `TORSION_REPLAY=FILE` replays a replay file in
//! the check it names (the other checks of the test binary run their seeds as usual).
//!
//! Seeds run in parallel on OS threads, each with its own worlds: the runner is harness code
//! outside the simulated path, so the no-threads rule of the simulator does not apply here.

use std::panic::{catch_unwind, AssertUnwindSafe};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::shrink::{shrink, Attempt};
use crate::trace::Trace;
use crate::world::{Sim, SimBuilder, SimError};

/// The body of a check: builds a world's hosts and workload, and runs it.
pub type Body<'a> = dyn Fn(&Sim) + Sync + 'a;

/// Called after each seed runs (progress reporting), from the runner's threads.
pub type OnSeed = Arc<dyn Fn() + Send + Sync>;

/// How a check runs.
#[derive(Clone)]
pub struct Options {
    /// The check's name (for reports and replay files).
    pub name: String,
    /// How many seeds.
    pub seeds: u64,
    /// The first seed.
    pub start: u64,
    /// Threads.
    pub jobs: usize,
    /// Run each seed twice and compare trace hashes.
    pub check_determinism: bool,
    /// Shrink a failure (on by default).
    pub shrink: bool,
    /// At most this many runs while shrinking.
    pub shrink_budget: usize,
    /// Where replay files go (`None`: don't write one). By default
    /// `$CARGO_TARGET_DIR/torsion-replays` when `CARGO_TARGET_DIR` is set, else
    /// `target/torsion-replays` (relative paths are from the working directory: under
    /// `cargo test`, the package's directory).
    pub replay_dir: Option<PathBuf>,
    /// A replay file to replay (`TORSION_REPLAY`). Only the check whose name the file records
    /// replays it, instead of running its seeds; every other check runs as usual.
    pub replay: Option<PathBuf>,
    /// Run only shard `.0` of `.1`: the seeds whose offset from `start` is `.0` modulo `.1`.
    /// The shards `0/N .. N-1/N` together run exactly the unsharded seeds.
    pub shard: (u64, u64),
    /// Called after each seed.
    pub on_seed: Option<OnSeed>,
    /// The scenario file the body comes from, written into replay files.
    pub scenario: Option<String>,
    /// The command line that runs the scenario, named in a report's replay commands
    /// (default `torsion-sim`; a crate's own [`crate::cli`] binary gives its name).
    pub program: Option<String>,
    /// Keep the list of seeds run in the summary.
    pub record_seeds: bool,
    /// The test running the check (its thread's name under `cargo test`), for the replay
    /// hint: `TORSION_SEED=3 cargo test <test>`.
    pub test: Option<String>,
    /// Run every seed in PCT mode of this depth (see [`Config::pct`](crate::Config::pct)),
    /// whatever the world builder says; `None` leaves it to the builder (the default
    /// portfolio draws it per seed). `TORSION_PCT=D` sets it.
    pub pct: Option<u32>,
}

impl std::fmt::Debug for Options {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Options")
            .field("name", &self.name)
            .field("seeds", &self.seeds)
            .field("start", &self.start)
            .field("jobs", &self.jobs)
            .field("check_determinism", &self.check_determinism)
            .field("shard", &self.shard)
            .field("pct", &self.pct)
            .field("replay", &self.replay)
            .finish_non_exhaustive()
    }
}

impl Options {
    /// Defaults for `name`, then the environment overrides.
    pub fn new(name: &str) -> Self {
        let env_u64 = |k: &str| std::env::var(k).ok().and_then(|v| v.parse::<u64>().ok());
        let mut o = Options {
            name: name.to_string(),
            seeds: 100,
            start: 0,
            jobs: std::thread::available_parallelism().map_or(1, |n| n.get()),
            check_determinism: false,
            shrink: true,
            shrink_budget: 2_000,
            replay_dir: Some(default_replay_dir()),
            replay: std::env::var_os("TORSION_REPLAY")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
            shard: (0, 1),
            on_seed: None,
            scenario: None,
            program: None,
            record_seeds: false,
            test: std::thread::current()
                .name()
                .filter(|n| *n != "main")
                .map(str::to_string),
            pct: None,
        };
        if let Some(n) = env_u64("TORSION_SEEDS") {
            o.seeds = n;
        }
        if let Some(s) = env_u64("TORSION_SEED") {
            o.start = s;
            o.seeds = 1;
        }
        if let Some(j) = env_u64("TORSION_JOBS") {
            o.jobs = (j as usize).max(1);
        }
        if let Some(d) = env_u64("TORSION_PCT") {
            o.pct = Some(u32::try_from(d).unwrap_or(u32::MAX));
        }
        if std::env::var("TORSION_CHECK_DETERMINISM").is_ok_and(|v| v != "0" && !v.is_empty()) {
            o.check_determinism = true;
        }
        if let Ok(v) = std::env::var("TORSION_SHARD") {
            match parse_shard(&v) {
                Some(shard) => o.shard = shard,
                None => panic!("TORSION_SHARD={v:?}: expected I/N with 0 <= I < N"),
            }
        }
        o
    }

    /// Sets the seed count (the environment still wins).
    pub fn seeds(mut self, n: u64) -> Self {
        if std::env::var("TORSION_SEEDS").is_err() && std::env::var("TORSION_SEED").is_err() {
            self.seeds = n;
        }
        self
    }

    /// Sets the first seed (`TORSION_SEED` still wins).
    pub fn start(mut self, seed: u64) -> Self {
        if std::env::var("TORSION_SEED").is_err() {
            self.start = seed;
        }
        self
    }

    /// Sets the number of threads (`TORSION_JOBS` still wins).
    pub fn jobs(mut self, jobs: usize) -> Self {
        if std::env::var("TORSION_JOBS").is_err() {
            self.jobs = jobs.max(1);
        }
        self
    }

    /// Runs each seed twice and fails on any trace difference.
    pub fn check_determinism(mut self, on: bool) -> Self {
        self.check_determinism = on;
        self
    }

    /// Whether a failure is shrunk (on by default), and within how many runs.
    pub fn shrink(mut self, on: bool, budget: usize) -> Self {
        self.shrink = on;
        self.shrink_budget = budget;
        self
    }

    /// Where replay files go (`None`: nowhere).
    pub fn replay_dir(mut self, dir: Option<PathBuf>) -> Self {
        self.replay_dir = dir;
        self
    }

    /// Runs only shard `index` of `count` (`TORSION_SHARD` still wins).
    pub fn shard(mut self, index: u64, count: u64) -> Self {
        assert!(index < count, "shard {index}/{count}: need index < count");
        if std::env::var("TORSION_SHARD").is_err() {
            self.shard = (index, count);
        }
        self
    }

    /// Calls `f` after each seed.
    pub fn on_seed(mut self, f: OnSeed) -> Self {
        self.on_seed = Some(f);
        self
    }

    /// Keeps the list of seeds run in the summary.
    pub fn record_seeds(mut self, on: bool) -> Self {
        self.record_seeds = on;
        self
    }
}

/// `I/N` with `I < N` (a shard of a sweep), as `TORSION_SHARD` and `--shard` take it.
pub(crate) fn parse_shard(text: &str) -> Option<(u64, u64)> {
    let (i, n) = text.split_once('/')?;
    let (i, n) = (i.trim().parse::<u64>().ok()?, n.trim().parse::<u64>().ok()?);
    (n > 0 && i < n).then_some((i, n))
}

/// `$CARGO_TARGET_DIR/torsion-replays` when `CARGO_TARGET_DIR` is set, else
/// `target/torsion-replays`.
fn default_replay_dir() -> PathBuf {
    match std::env::var_os("CARGO_TARGET_DIR") {
        Some(dir) if !dir.is_empty() => PathBuf::from(dir).join("torsion-replays"),
        _ => PathBuf::from("target/torsion-replays"),
    }
}

/// A failure, reproduced and shrunk.
#[derive(Clone, Debug)]
pub struct Report {
    /// The check's name.
    pub name: String,
    /// The failing seed.
    pub seed: u64,
    /// What failed.
    pub error: String,
    /// The fault mix of the run whose trace is shown (the shrunk run), in one line. In
    /// swarm mode the mix is drawn from the choices, so shrinking also shrinks the mix.
    pub faults: String,
    /// The shrunk choice sequence.
    pub choices: Vec<u64>,
    /// The length of the original choice sequence.
    pub original_len: usize,
    /// Runs spent shrinking.
    pub shrink_runs: usize,
    /// The shrunk run's trace, rendered.
    pub trace: String,
    /// The shrunk run's trace hash.
    pub trace_hash: u64,
    /// Where the replay file went.
    pub replay_file: Option<PathBuf>,
    /// The scenario file the check comes from ([`Options::scenario`]): the report's replay
    /// commands are then `torsion-sim` ones rather than `cargo test` ones.
    pub scenario: Option<String>,
    /// The command line named in the replay commands ([`Options::program`]; default
    /// `torsion-sim`).
    pub program: Option<String>,
    /// The test that ran the check ([`Options::test`]).
    pub test: Option<String>,
}

impl Report {
    /// The trace viewer's page of the shrunk run (see [`crate::html`]), written next to the
    /// replay file with the same stem, if it was written.
    pub fn html_file(&self) -> Option<PathBuf> {
        let page = self.replay_file.as_ref()?.with_extension("html");
        page.is_file().then_some(page)
    }
}

impl std::fmt::Display for Report {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        writeln!(f, "check '{}' failed on seed {}", self.name, self.seed)?;
        writeln!(f, "  error:  {}", self.error)?;
        writeln!(f, "  faults: {}", self.faults)?;
        writeln!(
            f,
            "  shrunk: {} choices (from {}, {} runs)",
            self.choices.len(),
            self.original_len,
            self.shrink_runs
        )?;
        let program = self.program.as_deref().unwrap_or("torsion-sim");
        match &self.scenario {
            None => {
                // `cargo test` filters by the test's name, its last path segment enough.
                let test = self
                    .test
                    .as_deref()
                    .map_or("", |t| t.rsplit("::").next().unwrap_or(t));
                let sep = if test.is_empty() { "" } else { " " };
                writeln!(
                    f,
                    "  replay: TORSION_SEED={} cargo test{sep}{test}",
                    self.seed
                )?
            }
            Some(s) => writeln!(f, "  replay: {program} run {s} --seed {}", self.seed)?,
        }
        if let Some(p) = &self.replay_file {
            let p = p.display();
            match &self.scenario {
                None => {
                    let test = self
                        .test
                        .as_deref()
                        .map_or("", |t| t.rsplit("::").next().unwrap_or(t));
                    let sep = if test.is_empty() { "" } else { " " };
                    writeln!(
                        f,
                        "          TORSION_REPLAY={p} cargo test{sep}{test}  (shrunk schedule)"
                    )?
                }
                Some(_) => writeln!(f, "          {program} replay {p}  (shrunk schedule)")?,
            }
        }
        if let Some(p) = self.html_file() {
            writeln!(f, "  viewer: {}  (open in a browser)", p.display())?;
        }
        writeln!(f, "shrunk trace (hash {:016x}):", self.trace_hash)?;
        f.write_str(&self.trace)
    }
}

/// What a replay file holds.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ReplayFile {
    /// The check or scenario name ([`Options::name`]): with `TORSION_REPLAY`, only the
    /// check of this name replays the file.
    pub name: String,
    /// The seed that failed.
    pub seed: u64,
    /// The shrunk choices.
    pub choices: Vec<u64>,
    /// The shrunk run's trace hash, as hex.
    pub trace_hash: String,
    /// The error it failed with.
    pub error: String,
    /// The scenario file it came from (for `torsion-sim replay`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scenario: Option<String>,
}

impl ReplayFile {
    /// Reads one, naming the file in the error.
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
        toml::from_str(&text).map_err(|e| format!("{}: {e}", path.display()))
    }

    /// Writes it.
    pub fn save(&self, path: &Path) -> Result<(), String> {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir).map_err(|e| format!("{}: {e}", dir.display()))?;
        }
        let text = toml::to_string(self).map_err(|e| e.to_string())?;
        std::fs::write(path, text).map_err(|e| format!("{}: {e}", path.display()))
    }
}

/// What a run of the body produced.
pub struct Outcome {
    /// The first error, if the run failed.
    pub error: Option<SimError>,
    /// The trace hash.
    pub hash: u64,
    /// The fault mix.
    pub faults: String,
    /// The recorded choices (if recording).
    pub choices: Vec<u64>,
    /// The rendered trace (if kept).
    pub trace: String,
    /// The trace itself: its events if the world kept them (for [`crate::html`]).
    pub full_trace: Trace,
    /// Simulated events run.
    pub steps: u64,
}

/// Runs `body` once in a world made by `make`.
pub fn run_once(make: &dyn Fn() -> Sim, body: &Body<'_>) -> Outcome {
    let sim = make();
    let panicked = catch_unwind(AssertUnwindSafe(|| body(&sim)));
    if let Err(payload) = panicked {
        let message = torsion::error::Panicked::from_payload(payload).message;
        sim.fail(SimError::Invariant {
            name: "test body".into(),
            message,
        });
    }
    let error = sim.errors().into_iter().next();
    let trace = sim.trace().render();
    let hash = sim.trace_hash();
    let full_trace = sim.take_trace();
    Outcome {
        full_trace,
        error,
        hash,
        faults: sim.describe_faults(),
        choices: sim.recorded_choices().unwrap_or_default(),
        trace,
        steps: sim.steps(),
    }
}

fn same_kind(a: &SimError, b: &SimError) -> bool {
    std::mem::discriminant(a) == std::mem::discriminant(b)
}

/// The outcome of a sweep.
#[derive(Clone, Debug, Default)]
pub struct Summary {
    /// Seeds run.
    pub seeds: u64,
    /// Simulated events, summed.
    pub steps: u64,
    /// The first failure (by seed), reproduced and shrunk.
    pub failure: Option<Report>,
    /// The seeds run, sorted (with [`Options::record_seeds`]).
    pub seeds_run: Vec<u64>,
}

/// Runs `body` over the seeds in `opts`, each in a world from `builder(seed)`; on the first
/// failure, reproduces, shrinks and reports it.
pub fn sweep(
    opts: &Options,
    builder: &(dyn Fn() -> SimBuilder + Sync),
    body: &Body<'_>,
) -> Summary {
    let with_options = || match opts.pct {
        Some(depth) => builder().pct(Some(depth)),
        None => builder(),
    };
    let builder: &(dyn Fn() -> SimBuilder + Sync) = &with_options;
    if let Some(path) = &opts.replay {
        match ReplayFile::load(path) {
            Ok(file) if file.name == opts.name => return replay(opts, path, &file, builder, body),
            Ok(_) => {}
            Err(e) => return unreadable_replay(opts, &e),
        }
    }
    let next = AtomicU64::new(0);
    let end = opts.start.saturating_add(opts.seeds);
    let (shard, shards) = (opts.shard.0, opts.shard.1.max(1));
    let seeds_run: Mutex<Vec<u64>> = Mutex::new(Vec::new());
    let stop = AtomicBool::new(false);
    let first_fail: Mutex<Option<u64>> = Mutex::new(None);
    let steps = AtomicU64::new(0);
    let ran = AtomicU64::new(0);
    let determinism: Mutex<Option<(u64, String)>> = Mutex::new(None);
    let worker = || loop {
        if stop.load(Ordering::Relaxed) {
            return;
        }
        let k = next.fetch_add(1, Ordering::Relaxed);
        let seed = opts
            .start
            .saturating_add(shard)
            .saturating_add(k.saturating_mul(shards));
        if seed >= end {
            return;
        }
        if opts.record_seeds {
            seeds_run
                .lock()
                .unwrap_or_else(|e| e.into_inner())
                .push(seed);
        }
        let make = || builder().seed(seed).build();
        let out = run_once(&make, body);
        ran.fetch_add(1, Ordering::Relaxed);
        steps.fetch_add(out.steps, Ordering::Relaxed);
        if let Some(f) = &opts.on_seed {
            f();
        }
        if out.error.is_some() {
            let mut f = first_fail.lock().unwrap_or_else(|e| e.into_inner());
            if f.is_none_or(|s| seed < s) {
                *f = Some(seed);
            }
            stop.store(true, Ordering::Relaxed);
            continue;
        }
        if opts.check_determinism {
            let again = run_once(&make, body);
            if again.hash != out.hash {
                let traced = || builder().seed(seed).trace(true).build();
                let diff = first_difference(&traced, body);
                *determinism.lock().unwrap_or_else(|e| e.into_inner()) = Some((seed, diff));
                stop.store(true, Ordering::Relaxed);
            }
        }
    };
    // Harness threads: each runs whole worlds; no world is shared across threads.
    #[allow(clippy::disallowed_methods)]
    std::thread::scope(|s| {
        for _ in 1..opts.jobs.max(1) {
            s.spawn(worker);
        }
        worker();
    });
    let mut seeds_run = seeds_run.into_inner().unwrap_or_else(|e| e.into_inner());
    seeds_run.sort_unstable();
    let mut summary = Summary {
        seeds: ran.load(Ordering::Relaxed),
        steps: steps.load(Ordering::Relaxed),
        failure: None,
        seeds_run,
    };
    if let Some((seed, diff)) = determinism.into_inner().unwrap_or_else(|e| e.into_inner()) {
        summary.failure = Some(bare_report(
            opts,
            seed,
            format!("nondeterminism: two runs of the seed differ; {diff}"),
        ));
        return summary;
    }
    let failed = first_fail.into_inner().unwrap_or_else(|e| e.into_inner());
    if let Some(seed) = failed {
        summary.failure = Some(investigate(opts, seed, builder, body));
    }
    summary
}

/// Runs the seed twice with full traces and names the first event where they differ.
fn first_difference(make: &dyn Fn() -> Sim, body: &Body<'_>) -> String {
    let full = || {
        let sim = make();
        let _ = catch_unwind(AssertUnwindSafe(|| body(&sim)));
        let t = sim.trace();
        let lines: Vec<String> = t.events().iter().map(|e| t.render_event(e)).collect();
        lines
    };
    let (a, b) = (full(), full());
    match a.iter().zip(&b).position(|(x, y)| x != y) {
        Some(i) => format!(
            "first difference at event {i}:\n  run 1: {}\n  run 2: {}",
            a[i], b[i]
        ),
        None => format!("the traces have {} and {} events", a.len(), b.len()),
    }
}

/// Re-runs `seed` recording its choices, confirms it fails, shrinks the choices, and
/// reports (writing a replay file if `opts.replay_dir` is set).
pub fn investigate(
    opts: &Options,
    seed: u64,
    builder: &(dyn Fn() -> SimBuilder + Sync),
    body: &Body<'_>,
) -> Report {
    let make = || builder().seed(seed).record(true).trace(true).build();
    let first = run_once(&make, body);
    let Some(error) = first.error else {
        return Report {
            name: opts.name.clone(),
            seed,
            error: "the failure did not reproduce on a second run (nondeterminism?)".into(),
            faults: first.faults,
            choices: Vec::new(),
            original_len: 0,
            shrink_runs: 0,
            trace: first.trace,
            trace_hash: first.hash,
            replay_file: None,
            scenario: opts.scenario.clone(),
            program: opts.program.clone(),
            test: opts.test.clone(),
        };
    };
    let original_len = first.choices.len();
    let (choices, shrink_runs) = if opts.shrink {
        shrink(first.choices.clone(), opts.shrink_budget, |cand| {
            let make = || builder().choices(cand.to_vec()).record(true).build();
            let out = run_once(&make, body);
            Attempt {
                fails: out.error.as_ref().is_some_and(|e| same_kind(e, &error)),
                consumed: out.choices,
            }
        })
    } else {
        (first.choices.clone(), 0)
    };
    let make = || builder().choices(choices.clone()).trace(true).build();
    let last = run_once(&make, body);
    let shown = last.error.clone().unwrap_or(error);
    report_with_file(opts, seed, choices, original_len, shrink_runs, shown, last)
}

/// The report of a failing run of `choices`, with its replay file written (if
/// `opts.replay_dir` is set), named after the check and the seed.
fn report_with_file(
    opts: &Options,
    seed: u64,
    choices: Vec<u64>,
    original_len: usize,
    shrink_runs: usize,
    error: SimError,
    run: Outcome,
) -> Report {
    let full_trace = run.full_trace;
    let mut report = Report {
        name: opts.name.clone(),
        seed,
        error: error.to_string(),
        faults: run.faults,
        choices,
        original_len,
        shrink_runs,
        trace: run.trace,
        trace_hash: run.hash,
        replay_file: None,
        scenario: opts.scenario.clone(),
        program: opts.program.clone(),
        test: opts.test.clone(),
    };
    if let Some(dir) = &opts.replay_dir {
        let safe: String = opts
            .name
            .chars()
            .map(|c| if c.is_ascii_alphanumeric() { c } else { '_' })
            .collect();
        let path = dir.join(format!("{safe}-{seed}.toml"));
        let file = ReplayFile {
            name: opts.name.clone(),
            seed,
            choices: report.choices.clone(),
            trace_hash: format!("{:016x}", report.trace_hash),
            error: report.error.clone(),
            scenario: opts.scenario.clone(),
        };
        if file.save(&path).is_ok() {
            // The trace viewer's page goes next to it, with the same stem.
            let title = format!("{} seed {seed}", opts.name);
            let _ = crate::html::write_trace_html(
                &path.with_extension("html"),
                &full_trace,
                &title,
                Some(&report.error),
            );
            report.replay_file = Some(path);
        }
    }
    report
}

/// Runs one schedule given as its choices (as proptest hands one to a property, see
/// [`crate::prop::check_schedule`]): `None` if it passes, else its report with the full trace,
/// and a replay file (`<name>-0.toml`, overwritten by each failing schedule, so the last —
/// proptest's minimal one — remains) that `TORSION_REPLAY` replays in the check of that name.
pub fn run_choices(
    opts: &Options,
    choices: Vec<u64>,
    builder: &(dyn Fn() -> SimBuilder + Sync),
    body: &Body<'_>,
) -> Option<Report> {
    let make = || builder().choices(choices.clone()).trace(true).build();
    let out = run_once(&make, body);
    let error = out.error.clone()?;
    let len = choices.len();
    Some(report_with_file(opts, 0, choices, len, 0, error, out))
}

/// Replays `file` (the check's own replay file) instead of running seeds.
fn replay(
    opts: &Options,
    path: &Path,
    file: &ReplayFile,
    builder: &(dyn Fn() -> SimBuilder + Sync),
    body: &Body<'_>,
) -> Summary {
    let make = || builder().choices(file.choices.clone()).trace(true).build();
    let out = run_once(&make, body);
    let hash = format!("{:016x}", out.hash);
    // Replaying answers "does this schedule still fail?": after a fix the trace differs and
    // the run passes, which is what the user wants to hear; a changed trace alone is not a
    // failure (the code under test changed).
    let same = hash == file.trace_hash;
    let error = out.error.as_ref().map(|e| {
        if same {
            e.to_string()
        } else {
            format!("{e} (the trace differs from the replay file's: the code changed)")
        }
    });
    if error.is_none() {
        println!(
            "check '{}': the schedule in {} no longer fails{}",
            file.name,
            path.display(),
            if same {
                ""
            } else {
                " (its trace differs from the recorded one)"
            }
        );
    }
    Summary {
        seeds: 1,
        seeds_run: vec![file.seed],
        steps: out.steps,
        failure: error.map(|error| Report {
            name: file.name.clone(),
            seed: file.seed,
            error,
            faults: out.faults,
            choices: file.choices.clone(),
            original_len: file.choices.len(),
            shrink_runs: 0,
            trace: out.trace,
            trace_hash: out.hash,
            replay_file: Some(path.to_path_buf()),
            scenario: opts.scenario.clone(),
            program: opts.program.clone(),
            test: opts.test.clone(),
        }),
    }
}

/// A report of `error` on `seed` with no run behind it (no trace, no choices).
fn bare_report(opts: &Options, seed: u64, error: String) -> Report {
    Report {
        name: opts.name.clone(),
        seed,
        error,
        faults: String::new(),
        choices: Vec::new(),
        original_len: 0,
        shrink_runs: 0,
        trace: String::new(),
        trace_hash: 0,
        replay_file: None,
        scenario: opts.scenario.clone(),
        program: opts.program.clone(),
        test: opts.test.clone(),
    }
}

/// A `TORSION_REPLAY` file that cannot be read names no check, so every check reports it.
fn unreadable_replay(opts: &Options, error: &str) -> Summary {
    Summary {
        failure: Some(bare_report(opts, 0, format!("TORSION_REPLAY: {error}"))),
        ..Summary::default()
    }
}

/// Runs `body` over 100 seeds (or as the environment says) in the worlds of the default
/// portfolio ([`SimBuilder::portfolio`]), and panics with a report on the first failure.
///
/// Seed 0 is the all-zero schedule; one seed in four is fault-free with a varied schedule;
/// the others draw a fault mix (resets, refusals, latency spikes beyond second-long
/// timeouts, partitions and crashes), so a body must tolerate the faults its seed has:
/// [`Sim::faults`] tells which. Every seed also draws an arrival grid (same-instant
/// arrivals on purpose) and may run in PCT mode. To pin the world, pass a builder to
/// [`check_with`]: it keeps exactly what it says, unless it opts into the portfolio with
/// [`SimBuilder::portfolio`].
#[track_caller]
pub fn check(name: &str, body: impl Fn(&Sim) + Sync) {
    check_with(Options::new(name), &|| Sim::builder().portfolio(), body);
}

/// [`check()`] with options and a world builder (faults, latency, limits).
///
/// A failure panics at the caller's line (`#[track_caller]`); a pass prints how many seeds
/// and events it ran (shown with `cargo test -- --nocapture`).
#[track_caller]
pub fn check_with(
    opts: Options,
    builder: &(dyn Fn() -> SimBuilder + Sync),
    body: impl Fn(&Sim) + Sync,
) {
    let summary = sweep(&opts, builder, &body);
    if let Some(report) = summary.failure {
        panic!("{report}");
    }
    println!(
        "check '{}': {} seeds passed ({} events)",
        opts.name, summary.seeds, summary.steps
    );
}

#[cfg(test)]
mod tests {
    use std::cell::RefCell;
    use std::rc::Rc;
    use std::time::Duration;

    use torsion::protocol::{factory_fn, Protocol, Transport};
    use torsion::reactor::ReactorTcpExt;

    use super::*;
    use crate::Kind;

    /// The planted bug: every `data_received` is taken to be exactly one line.
    struct NaiveLines {
        lines: Rc<RefCell<Vec<Vec<u8>>>>,
    }
    impl Protocol for NaiveLines {
        fn data_received(&mut self, data: &[u8]) {
            let line = data.strip_suffix(b"\r\n").unwrap_or(data);
            self.lines.borrow_mut().push(line.to_vec());
        }
    }

    struct Sender;
    impl Protocol for Sender {
        fn connection_made(&mut self, t: &Transport) {
            t.write(b"hello\r\n");
            t.write(b"world\r\n");
            t.lose_connection();
        }
        fn data_received(&mut self, _d: &[u8]) {}
    }

    fn naive_body(sim: &Sim) {
        let lines = Rc::new(RefCell::new(Vec::new()));
        let l = lines.clone();
        let server = sim.host("server");
        server
            .listen_tcp(
                8000,
                factory_fn(move |_| {
                    Some(Box::new(NaiveLines { lines: l.clone() }) as Box<dyn Protocol>)
                }),
            )
            .unwrap();
        let client = sim.host("client");
        client.connect_tcp("server", 8000, factory_fn(|_| Some(Box::new(Sender) as _)));
        let l = lines.clone();
        sim.invariant("lines arrive as sent", move || {
            let got = l.borrow();
            let want: [&[u8]; 2] = [b"hello", b"world"];
            match got.iter().zip(want).find(|(g, w)| g.as_slice() != *w) {
                Some((g, w)) => Err(format!(
                    "got {:?}, expected {:?}",
                    String::from_utf8_lossy(g),
                    String::from_utf8_lossy(w)
                )),
                None => Ok(()),
            }
        });
        sim.run_until_idle();
    }

    fn opts(name: &str) -> Options {
        let mut o = Options::new(name);
        o.seeds = 100;
        o.start = 0;
        o.jobs = 1;
        o.replay_dir = None;
        o.replay = None;
        o
    }

    #[test]
    fn planted_naive_line_bug_is_found_and_shrunk() {
        let summary = sweep(&opts("naive lines"), &Sim::builder, &naive_body);
        let report = summary
            .failure
            .expect("the planted bug is found within 100 seeds");
        assert!(report.seed < 100);
        assert!(report.error.contains("lines arrive as sent"), "{report}");
        let data_segments = report
            .trace
            .lines()
            .filter(|l| l.contains(" send "))
            .count();
        assert!(
            data_segments <= 2,
            "shrunk to {data_segments} segments:\n{report}"
        );
        assert!(report.choices.len() <= report.original_len);
        // The shrunk schedule replays to the same trace.
        let make = || {
            Sim::builder()
                .choices(report.choices.clone())
                .trace(true)
                .build()
        };
        let again = run_once(&make, &naive_body);
        assert_eq!(again.hash, report.trace_hash);
        assert!(again.error.is_some());
    }

    #[test]
    fn a_correct_protocol_passes_every_seed() {
        let body = |sim: &Sim| {
            let h = sim.host("a");
            h.log("hello");
            sim.run_until_idle();
            assert!(!sim.trace().is_empty());
        };
        let summary = sweep(&opts("trivial"), &Sim::builder, &body);
        assert!(summary.failure.is_none());
        assert_eq!(summary.seeds, 100);
    }

    #[test]
    fn determinism_check_catches_hidden_state() {
        use std::sync::atomic::{AtomicU64, Ordering};
        static COUNTER: AtomicU64 = AtomicU64::new(0);
        // A body that leaks state between runs: the second run of a seed differs.
        let body = |sim: &Sim| {
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            sim.host("h").log(format!("run {n}"));
            sim.run_until_idle();
        };
        let mut o = opts("leaky");
        o.check_determinism = true;
        o.seeds = 3;
        let summary = sweep(&o, &Sim::builder, &body);
        let report = summary.failure.expect("nondeterminism is reported");
        assert!(
            report.error.contains("first difference at event 0"),
            "{}",
            report.error
        );
    }

    #[test]
    fn swarm_report_describes_the_faults_of_the_shrunk_run() {
        // Fails whenever the drawn mix resets segments; every other fault is noise the
        // shrinker removes, so the shrunk run's mix differs from the seed's.
        let body = |sim: &Sim| {
            sim.host("a");
            sim.host("b");
            sim.run_until_idle();
            assert!(sim.faults().reset_ppm == 0, "resets are on");
        };
        let builder = || Sim::builder().swarm(2, Duration::from_secs(1));
        let mut o = opts("swarm faults");
        o.seeds = 200;
        let report = sweep(&o, &builder, &body)
            .failure
            .expect("some seed draws resets");
        let seed_mix = run_once(&|| builder().seed(report.seed).build(), &body).faults;
        let shrunk = || builder().choices(report.choices.clone()).build();
        let shrunk_mix = run_once(&shrunk, &body).faults;
        assert_ne!(
            seed_mix, shrunk_mix,
            "the seed's mix is not already minimal"
        );
        assert!(shrunk_mix.starts_with("reset "), "{shrunk_mix}");
        assert_eq!(report.faults, shrunk_mix, "{report}");
    }

    /// Records whether the connection ended cleanly.
    struct Sink {
        clean: Rc<RefCell<Option<bool>>>,
    }
    impl Protocol for Sink {
        fn data_received(&mut self, _d: &[u8]) {}
        fn connection_lost(&mut self, reason: torsion::defer::Failure) {
            *self.clean.borrow_mut() = Some(reason.is::<torsion::error::ConnectionDone>());
        }
    }

    /// Fails when a reset fault cuts the connection.
    fn reset_body(sim: &Sim) {
        let clean = Rc::new(RefCell::new(None));
        let c = clean.clone();
        sim.host("server")
            .listen_tcp(
                8000,
                factory_fn(move |_| Some(Box::new(Sink { clean: c.clone() }) as _)),
            )
            .unwrap();
        let client = sim.host("client");
        client.connect_tcp("server", 8000, factory_fn(|_| Some(Box::new(Sender) as _)));
        sim.run_until_idle();
        assert_eq!(
            *clean.borrow(),
            Some(true),
            "the connection was not closed cleanly"
        );
    }

    #[test]
    fn a_fault_draw_near_a_million_shrinks_in_under_100_runs() {
        // A reset fires on a segment when its draw out of a million is at least 980,000.
        let builder = || {
            Sim::builder().faults(crate::Faults {
                reset_ppm: 20_000,
                ..crate::Faults::none()
            })
        };
        let mut o = opts("reset draw");
        o.seeds = 500;
        let report = sweep(&o, &builder, &reset_body)
            .failure
            .expect("a reset within 500 seeds");
        assert!(report.error.contains("not closed cleanly"), "{report}");
        assert!(report.shrink_runs < 100, "{report}");
        // The smallest draw that still fires the reset.
        assert!(
            report.choices.contains(&980_000),
            "{report}\n{:?}",
            report.choices
        );
    }

    #[test]
    fn a_replay_file_replays_only_in_the_check_it_names() {
        let dir = std::env::temp_dir().join(format!("torsion-replay-name-{}", std::process::id()));
        let mut o = opts("naive lines");
        o.replay_dir = Some(dir.clone());
        let report = sweep(&o, &Sim::builder, &naive_body).failure.unwrap();
        let path = report
            .replay_file
            .clone()
            .expect("a replay file is written");
        assert_eq!(ReplayFile::load(&path).unwrap().name, "naive lines");

        // Another check runs its own seeds, untouched by the file.
        let mut other = opts("trivial");
        other.replay = Some(path.clone());
        let passing = |sim: &Sim| {
            sim.host("a").log("hello");
            sim.run_until_idle();
        };
        let summary = sweep(&other, &Sim::builder, &passing);
        assert!(summary.failure.is_none(), "{}", summary.failure.unwrap());
        assert_eq!(summary.seeds, 100);

        // The named check replays the shrunk schedule: one run, the same trace.
        let mut named = opts("naive lines");
        named.replay = Some(path.clone());
        let summary = sweep(&named, &Sim::builder, &naive_body);
        assert_eq!(summary.seeds, 1);
        let replayed = summary.failure.expect("the replay fails the same way");
        assert_eq!(replayed.trace_hash, report.trace_hash);
        assert_eq!(replayed.error, report.error);
        assert_eq!(replayed.shrink_runs, 0);
        let hint = format!("TORSION_REPLAY={} cargo test", path.display());
        assert!(replayed.to_string().contains(&hint), "{replayed}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn replaying_after_the_fix_runs_the_schedule_and_passes() {
        let dir = std::env::temp_dir().join(format!("torsion-replay-fix-{}", std::process::id()));
        let mut o = opts("lines");
        o.replay_dir = Some(dir.clone());
        let report = sweep(&o, &Sim::builder, &naive_body).failure.unwrap();
        let path = report.replay_file.clone().expect("a replay file");
        // The hints name the test that ran the check, as `cargo test` filters by it.
        let text = report.to_string();
        let test = "cargo test replaying_after_the_fix_runs_the_schedule_and_passes";
        assert!(
            text.contains(&format!("TORSION_SEED={} {test}\n", report.seed)),
            "{text}"
        );
        assert!(
            text.contains(&format!("{} {test}  (shrunk", path.display())),
            "{text}"
        );
        // The same check, its protocol fixed: the schedule runs (its trace differs, as the
        // code changed) and no longer fails.
        let mut fixed = opts("lines");
        fixed.replay = Some(path.clone());
        let summary = sweep(&fixed, &Sim::builder, &|sim: &Sim| {
            sim.host("a").log("fixed");
            sim.run_until_idle();
        });
        assert_eq!(summary.seeds, 1);
        assert!(summary.failure.is_none(), "{}", summary.failure.unwrap());
        // Still broken: it fails, with the recorded error.
        let summary = sweep(&fixed, &Sim::builder, &naive_body);
        assert_eq!(summary.failure.expect("still fails").error, report.error);
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn a_failure_writes_the_viewer_page_next_to_its_replay_file() {
        let dir = std::env::temp_dir().join(format!("torsion-replay-html-{}", std::process::id()));
        let mut o = opts("naive lines");
        o.replay_dir = Some(dir.clone());
        let report = sweep(&o, &Sim::builder, &naive_body).failure.unwrap();
        let replay = report.replay_file.clone().expect("a replay file");
        let page = report.html_file().expect("a page");
        assert_eq!(page, replay.with_extension("html"));
        assert!(report
            .to_string()
            .contains(&format!("viewer: {}", page.display())));
        let html = std::fs::read_to_string(&page).unwrap();
        let open = "<script type=\"application/json\" id=\"trace-data\">";
        let start = html.find(open).unwrap() + open.len();
        let end = start + html[start..].find("</script>").unwrap();
        let data: serde_json::Value = serde_json::from_str(&html[start..end]).unwrap();
        // The shrunk run's trace, with the report's error as its failure.
        assert_eq!(data["failure"], report.error.as_str());
        assert_eq!(
            data["events"].as_array().unwrap().len(),
            report.trace.lines().count()
        );
        assert_eq!(data["title"], format!("naive lines seed {}", report.seed));
        // Without a replay file, no page.
        let mut none = opts("naive lines");
        none.replay_dir = None;
        let report = sweep(&none, &Sim::builder, &naive_body).failure.unwrap();
        assert_eq!(report.html_file(), None);
        assert!(!report.to_string().contains("viewer:"));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn shards_parse_as_index_over_count() {
        assert_eq!(parse_shard("0/4"), Some((0, 4)));
        assert_eq!(parse_shard(" 3 / 4 "), Some((3, 4)));
        for bad in ["4/4", "1/0", "x/2", "1", "-1/2", ""] {
            assert_eq!(parse_shard(bad), None, "{bad}");
        }
    }

    #[test]
    #[should_panic(expected = "keeps only its trace hash")]
    fn a_trace_snapshot_of_a_world_without_a_trace_is_an_error() {
        let sim = Sim::new(0);
        sim.run_until_idle();
        crate::assert_trace_snapshot!("never_written", sim);
    }

    #[test]
    fn an_unreadable_replay_file_fails_the_check_naming_the_file() {
        let mut o = opts("trivial");
        o.replay = Some(PathBuf::from("no/such/replay.toml"));
        let body = |sim: &Sim| {
            sim.run_until_idle();
        };
        let report = sweep(&o, &Sim::builder, &body).failure.unwrap();
        assert!(report.error.starts_with("TORSION_REPLAY: "), "{report}");
        assert!(report.error.contains("no/such/replay.toml"), "{report}");
    }

    #[test]
    fn a_scenario_report_names_the_command_line_replays() {
        let mut o = opts("naive lines");
        o.scenario = Some("scenarios/naive_lines.toml".into());
        let dir = std::env::temp_dir().join(format!("torsion-replay-cli-{}", std::process::id()));
        o.replay_dir = Some(dir.clone());
        let report = sweep(&o, &Sim::builder, &naive_body).failure.unwrap();
        let text = report.to_string();
        let run = format!(
            "replay: torsion-sim run scenarios/naive_lines.toml --seed {}",
            report.seed
        );
        assert!(text.contains(&run), "{text}");
        let file = report.replay_file.as_ref().unwrap().display().to_string();
        assert!(
            text.contains(&format!("torsion-sim replay {file}")),
            "{text}"
        );
        assert!(!text.contains("cargo test"), "{text}");
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn replay_file_round_trips() {
        let dir = std::env::temp_dir().join(format!("torsion-replay-test-{}", std::process::id()));
        let file = ReplayFile {
            name: "x".into(),
            seed: 3,
            choices: vec![1, 2, 3],
            trace_hash: "00000000000000ff".into(),
            error: "boom".into(),
            scenario: Some("scenarios/x.toml".into()),
        };
        let path = dir.join("x-3.toml");
        file.save(&path).unwrap();
        assert_eq!(ReplayFile::load(&path).unwrap(), file);
        let _ = std::fs::remove_dir_all(&dir);
        assert!(ReplayFile::load(&path).unwrap_err().contains("x-3.toml"));
        let _ = Kind::Made;
    }
}
