//! The harness as `cargo test` runs it: the environment overrides and replay files, seen
//! from outside. Each test re-runs this test binary with one child test selected and the
//! environment set, as a user's `TORSION_REPLAY=FILE cargo test` would.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use torsion_sim::{check, check_with, Options, ReplayFile, Sim};

/// Set in the re-run binary: the child tests run only there.
const CHILD: &str = "TORSION_HARNESS_CHILD";

fn in_child() -> bool {
    std::env::var_os(CHILD).is_some()
}

/// Child: a check that fails whenever its swarm mix has resets.
#[test]
fn child_planted_failure() {
    if !in_child() {
        return;
    }
    check_with(
        Options::new("planted failure"),
        &|| Sim::builder().swarm(2, Duration::from_secs(1)),
        |sim: &Sim| {
            sim.host("a");
            sim.host("b");
            sim.run_until_idle();
            assert!(sim.faults().reset_ppm == 0, "resets are on");
        },
    );
}

/// Child: a check unrelated to the planted failure, which passes every seed.
#[test]
fn child_unrelated_check() {
    if !in_child() {
        return;
    }
    check("unrelated check", |sim: &Sim| {
        sim.host("a").log("hello");
        sim.run_until_idle();
    });
}

/// Runs one child test in `dir` with `env` set; returns whether it passed, and its output.
fn child(dir: &Path, test: &str, env: &[(&str, &OsStr)]) -> (bool, String) {
    let exe = std::env::current_exe().expect("the test binary's path");
    std::fs::create_dir_all(dir).unwrap();
    let mut cmd = Command::new(exe);
    cmd.current_dir(dir)
        .args([test, "--exact", "--test-threads=1", "--nocapture"])
        .env(CHILD, "1")
        .env("TORSION_JOBS", "1");
    for var in [
        "TORSION_REPLAY",
        "TORSION_SEED",
        "TORSION_SEEDS",
        "CARGO_TARGET_DIR",
    ] {
        cmd.env_remove(var);
    }
    cmd.envs(env.iter().copied());
    let out = cmd.output().expect("the test binary runs");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("torsion-harness-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    dir
}

/// The one replay file under `dir/torsion-replays` (with the trace viewer's page next to it,
/// named in the report).
fn the_replay_file(dir: &Path, output: &str) -> PathBuf {
    let replays = dir.join("torsion-replays");
    let mut files: Vec<PathBuf> = std::fs::read_dir(&replays)
        .unwrap_or_else(|e| panic!("{}: {e}\n{output}", replays.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    assert_eq!(files.len(), 2, "{files:?}");
    let (page, file) = (&files[0], &files[1]);
    assert_eq!(file.extension().unwrap(), "toml", "{files:?}");
    assert_eq!(*page, file.with_extension("html"), "{files:?}");
    let name = page.file_name().unwrap().to_string_lossy().into_owned();
    assert!(
        output.contains(&format!("{name}  (open in a browser)")),
        "{output}"
    );
    file.clone()
}

#[test]
fn replay_files_go_under_cargo_target_dir() {
    let (cwd, target) = (tmp("cwd"), tmp("target"));
    let (passed, output) = child(
        &cwd,
        "child_planted_failure",
        &[("CARGO_TARGET_DIR", target.as_os_str())],
    );
    assert!(!passed, "{output}");
    let file = the_replay_file(&target, &output);
    let name = file.file_name().unwrap().to_string_lossy().into_owned();
    assert!(name.starts_with("planted_failure-"), "{name}");
    assert!(!cwd.join("target").exists(), "nothing under ./target");
    // The report's hint names the file where it is.
    let hint = format!("TORSION_REPLAY={} cargo test", file.display());
    assert!(output.contains(&hint), "{hint}\n{output}");
    let _ = std::fs::remove_dir_all(&target);
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn without_cargo_target_dir_replay_files_go_under_target() {
    let cwd = tmp("default");
    let (passed, output) = child(&cwd, "child_planted_failure", &[]);
    assert!(!passed, "{output}");
    let file = the_replay_file(&cwd.join("target"), &output);
    let relative = file.strip_prefix(&cwd).unwrap();
    let hint = format!("TORSION_REPLAY={} cargo test", relative.display());
    assert!(output.contains(&hint), "{hint}\n{output}");
    let _ = std::fs::remove_dir_all(&cwd);
}

#[test]
fn torsion_replay_applies_only_to_the_check_it_names() {
    let cwd = tmp("named");
    let (passed, output) = child(&cwd, "child_planted_failure", &[]);
    assert!(!passed, "{output}");
    let file = the_replay_file(&cwd.join("target"), &output);
    assert_eq!(ReplayFile::load(&file).unwrap().name, "planted failure");

    // Another check of the same binary runs its seeds as usual.
    let (passed, output) = child(
        &cwd,
        "child_unrelated_check",
        &[("TORSION_REPLAY", file.as_os_str())],
    );
    assert!(passed, "{output}");

    // The named check replays the file: one run of the shrunk schedule, no new search.
    let elsewhere = tmp("elsewhere");
    let (passed, output) = child(
        &cwd,
        "child_planted_failure",
        &[
            ("TORSION_REPLAY", file.as_os_str()),
            ("CARGO_TARGET_DIR", elsewhere.as_os_str()),
        ],
    );
    assert!(!passed, "{output}");
    assert!(output.contains("resets are on"), "{output}");
    assert!(output.contains("(from 1, 0 runs)"), "{output}");
    let hint = format!("TORSION_REPLAY={} cargo test", file.display());
    assert!(output.contains(&hint), "{hint}\n{output}");
    assert!(!elsewhere.exists(), "a replay writes no new file");
    let _ = std::fs::remove_dir_all(&cwd);
}
