//! The `torsion-sim` command line, run as a user would.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_torsion-sim"))
}

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../scenarios")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("torsion-cli-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn run(cmd: &mut Command) -> (Output, String, String) {
    let out = cmd.output().expect("the binary runs");
    let stdout = String::from_utf8_lossy(&out.stdout).into_owned();
    let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
    (out, stdout, stderr)
}

#[test]
fn list_shows_every_bundled_scenario() {
    let (out, stdout, _) = run(bin().arg("list").arg(scenarios()));
    assert!(out.status.success());
    for name in [
        "echo",
        "chat",
        "kv",
        "poetry",
        "heartbeat",
        "naive_lines",
        "kv_double_apply",
        "reconnect_no_reset",
    ] {
        assert!(
            stdout
                .lines()
                .any(|l| l.split_whitespace().next() == Some(name)),
            "{name} missing from:\n{stdout}"
        );
    }
}

#[test]
fn explore_json_lines_parse() {
    let dir = scenarios();
    let (out, stdout, stderr) = run(bin()
        .args(["explore", "--json", "--seeds", "20", "--jobs", "2"])
        .arg(dir.join("echo.toml"))
        .arg(dir.join("naive_lines.toml")));
    assert!(out.status.success(), "{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(rows.len(), 2);
    assert_eq!(rows[0]["scenario"], "echo");
    assert_eq!(rows[0]["seeds"], 20);
    assert_eq!(rows[0]["verdict"], "ok");
    assert!(rows[0]["seeds_per_s"].as_f64().unwrap() > 0.0);
    assert_eq!(rows[1]["scenario"], "naive_lines");
    assert_eq!(rows[1]["expect"], "fail");
    assert_eq!(rows[1]["verdict"], "ok", "the planted bug is found");
    assert!(rows[1]["first_failing_seed"].is_u64());
    assert!(rows[1]["shrunk_len"].is_u64());
}

#[test]
fn explore_junit_parses() {
    let dir = tmp("junit");
    let xml = dir.join("report.xml");
    let s = scenarios();
    // A pass scenario, and a planted bug run as if expected to pass: one failure.
    let wrong = dir.join("naive_expect_pass.toml");
    let text = std::fs::read_to_string(s.join("naive_lines.toml"))
        .unwrap()
        .replace("expect = \"fail\"", "expect = \"pass\"");
    std::fs::write(&wrong, text).unwrap();
    let (out, _, _) = run(bin()
        .args(["explore", "--seeds", "10", "--junit"])
        .arg(&xml)
        .arg(s.join("echo.toml"))
        .arg(&wrong));
    assert!(!out.status.success(), "a failed expectation exits non-zero");
    let text = std::fs::read_to_string(&xml).unwrap();
    let doc = roxmltree::Document::parse(&text).expect("valid XML");
    let cases: Vec<_> = doc
        .descendants()
        .filter(|n| n.has_tag_name("testcase"))
        .collect();
    assert_eq!(cases.len(), 2);
    assert_eq!(cases[0].attribute("name"), Some("echo"));
    assert!(!cases[0].children().any(|c| c.has_tag_name("failure")));
    let failure = cases[1]
        .children()
        .find(|c| c.has_tag_name("failure"))
        .expect("the failing scenario has a <failure>");
    assert!(failure
        .attribute("message")
        .unwrap()
        .contains("each line arrives whole"));
    let suites = doc.root_element();
    assert_eq!(suites.attribute("failures"), Some("1"));
}

fn seeds_run(extra: &[&str]) -> Vec<u64> {
    seeds_run_with_env(extra, &[])
}

fn seeds_run_with_env(extra: &[&str], env: &[(&str, &str)]) -> Vec<u64> {
    let (out, stdout, stderr) = run(bin()
        .envs(env.iter().copied())
        .args([
            "explore",
            "--json",
            "--emit-seeds",
            "--seeds",
            "37",
            "--start",
            "5",
        ])
        .args(extra)
        .arg(scenarios().join("heartbeat.toml")));
    assert!(out.status.success(), "{stderr}");
    let row: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    row["seeds_run"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| v.as_u64().unwrap())
        .collect()
}

#[test]
fn shards_together_run_exactly_the_unsharded_seeds() {
    let all = seeds_run(&[]);
    assert_eq!(all, (5..42).collect::<Vec<u64>>());
    let a = seeds_run(&["--shard", "0/2"]);
    let b = seeds_run(&["--shard", "1/2"]);
    assert!(a.iter().all(|s| !b.contains(s)), "shards overlap");
    let mut union: Vec<u64> = a.iter().chain(&b).copied().collect();
    union.sort_unstable();
    assert_eq!(union, all);
    // The same split from a Kubernetes Indexed Job's environment.
    let k = seeds_run_with_env(
        &[],
        &[("JOB_COMPLETION_INDEX", "1"), ("TORSION_SHARDS", "2")],
    );
    assert_eq!(k, b);
}

fn bad_file(name: &str, text: &str) -> (String, PathBuf) {
    let dir = tmp(name);
    let path = dir.join(format!("{name}.toml"));
    std::fs::write(&path, text).unwrap();
    let (out, _, stderr) = run(bin().arg("list").arg(&path));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    (stderr.trim().to_string(), path)
}

const GOOD: &str = "name = \"t\"\ndescription = \"d\"\napp = \"echo\"\nseeds = 10\n";

#[test]
fn bad_scenarios_name_file_line_and_field() {
    let (e, p) = bad_file("missing", "name = \"t\"\napp = \"echo\"\n");
    assert!(
        e.contains(&format!("{}:1:", p.display())) && e.contains("description"),
        "{e}"
    );

    let (e, p) = bad_file("wrongtype", &GOOD.replace("seeds = 10", "seeds = \"many\""));
    assert!(
        e.contains(&format!("{}:4:", p.display())) && e.contains("seeds"),
        "{e}"
    );

    let (e, p) = bad_file("unknownapp", &GOOD.replace("\"echo\"", "\"ftp\""));
    assert!(
        e.contains(&format!("{}:3:", p.display())) && e.contains("app") && e.contains("ftp"),
        "{e}"
    );

    let (e, p) = bad_file("negative", &GOOD.replace("seeds = 10", "seeds = -3"));
    assert!(
        e.contains(&format!("{}:4:", p.display())) && e.contains("seeds"),
        "{e}"
    );

    let (e, p) = bad_file("unknownfield", &format!("{GOOD}[workload]\nmesages = 3\n"));
    assert!(
        e.contains(&format!("{}:6:", p.display())) && e.contains("mesages"),
        "{e}"
    );
}

#[test]
fn run_prints_a_trace_and_replay_verifies_the_hash() {
    let dir = tmp("replay");
    let trace = dir.join("trace.txt");
    let (out, stdout, _) = run(bin()
        .args(["run", "--seed", "3", "--trace-out"])
        .arg(&trace)
        .arg(scenarios().join("naive_lines.toml")));
    assert_eq!(
        out.status.code(),
        Some(1),
        "seed 3 finds the planted bug: {stdout}"
    );
    assert!(stdout.contains("FAILED"));
    assert!(std::fs::read_to_string(&trace)
        .unwrap()
        .contains("listen :7"));

    // explore writes a replay file for the failure; replay re-runs it to the same hash, and
    // it still fails.
    let (out, stdout, _) = run(bin()
        .current_dir(&dir)
        .args(["explore", "--json", "--seeds", "5"])
        .arg(scenarios().join("naive_lines.toml")));
    assert!(out.status.success());
    let row: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let file = dir.join(row["replay_file"].as_str().unwrap());
    let (out, stdout, _) = run(bin().current_dir(&dir).arg("replay").arg(&file));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("matches the replay file"));
    assert!(stdout.contains("the schedule still fails"), "{stdout}");
    let (out, stdout, _) = run(bin().current_dir(&dir).arg("shrink").arg(&file));
    assert!(out.status.success());
    assert!(stdout.contains("shrunk trace"), "{stdout}");
}

/// An echo scenario whose body's own assertion fails (a panic inside the harness): on a
/// perfect network, the latency is longer than the time limit, so no client finishes.
const TOO_SLOW: &str = "name = \"too_slow\"\ndescription = \"d\"\napp = \"echo\"\nseeds = 3\n\
                        [topology]\nclients = 1\n[workload]\nmessages = 2\n\
                        [network]\nlatency_ms = [2000, 2000]\n[faults]\nmode = \"none\"\n\
                        [limits]\nsim_time_s = 1\n";

fn assert_reported(what: &str, stdout: &str, stderr: &str, seed: u64) {
    assert!(
        !stderr.contains("panicked") && !stderr.contains("backtrace"),
        "{what}: stderr: {stderr}"
    );
    assert!(
        stdout.contains(&format!("check 'too_slow' failed on seed {seed}")),
        "{what}: {stdout}"
    );
    assert!(stdout.contains("every client finished"), "{what}: {stdout}");
    assert!(stdout.contains("shrunk trace"), "{what}: {stdout}");
}

#[test]
fn run_replay_and_shrink_report_a_failing_seed_without_a_panic_message() {
    let dir = tmp("too_slow");
    let path = dir.join("too_slow.toml");
    std::fs::write(&path, TOO_SLOW).unwrap();
    let (out, stdout, stderr) = run(bin()
        .current_dir(&dir)
        .env("RUST_BACKTRACE", "1")
        .args(["run", "--seed", "1"])
        .arg(&path));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("FAILED"), "{stdout}");
    assert_reported("run", &stdout, &stderr, 1);
    assert!(
        dir.join("target/torsion-replays/too_slow-1.toml").exists(),
        "run writes a replay file, as explore does"
    );

    let (out, stdout, _) = run(bin()
        .current_dir(&dir)
        .args(["explore", "--json", "--seeds", "1"])
        .arg(&path));
    assert!(!out.status.success());
    let row: serde_json::Value = serde_json::from_str(stdout.lines().next().unwrap()).unwrap();
    let file = dir.join(row["replay_file"].as_str().unwrap());
    for (cmd, status) in [("replay", 1), ("shrink", 0)] {
        let (out, stdout, stderr) = run(bin()
            .current_dir(&dir)
            .env("RUST_BACKTRACE", "1")
            .arg(cmd)
            .arg(&file));
        assert_eq!(out.status.code(), Some(status), "{cmd}: {stdout}{stderr}");
        assert_reported(cmd, &stdout, &stderr, 0);
    }
}

#[test]
fn a_replay_file_naming_a_missing_scenario_file_says_so() {
    let dir = tmp("missing_scenario");
    let file = dir.join("r.toml");
    let missing = dir.join("gone.toml");
    std::fs::write(
        &file,
        format!(
            "name = \"x\"\nseed = 0\nchoices = []\ntrace_hash = \"00\"\nerror = \"\"\nscenario = {:?}\n",
            missing.display().to_string()
        ),
    )
    .unwrap();
    let (out, _, stderr) = run(bin().current_dir(&dir).arg("replay").arg(&file));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(
        stderr.contains(&format!("{}:1: cannot read", missing.display())),
        "{stderr}"
    );
}

#[test]
fn impossible_sizes_are_errors_not_aborts() {
    for (name, table, line) in [
        (
            "max_size",
            "[workload]\nmax_size = 1000000000000",
            "max_size",
        ),
        ("clients", "[topology]\nclients = 4294967295", "clients"),
        (
            "messages",
            "[workload]\nmessages = 1000000000000",
            "messages",
        ),
        (
            "sim_time",
            "[limits]\nsim_time_s = 18446744074",
            "sim_time_s",
        ),
    ] {
        let dir = tmp(&format!("impossible_{name}"));
        let path = dir.join("s.toml");
        std::fs::write(&path, format!("{GOOD}{table}\n")).unwrap();
        let (out, _, stderr) = run(bin().args(["run", "--seed", "0"]).arg(&path));
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        assert!(
            stderr.contains(&format!("{}:6: field `{line}`", path.display())),
            "{name}: {stderr}"
        );
    }
    let dir = tmp("impossible_rounds");
    let path = dir.join("s.toml");
    std::fs::write(
        &path,
        format!(
            "{}[workload]\nrounds = 1000000000000\n",
            GOOD.replace("\"echo\"", "\"kv\"")
        ),
    )
    .unwrap();
    let (out, _, stderr) = run(bin().args(["run", "--seed", "0"]).arg(&path));
    assert_eq!(out.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains(":6: field `rounds`"), "{stderr}");
}

#[test]
fn run_writes_the_viewer_page_with_html() {
    let dir = tmp("html");
    let page = dir.join("echo.html");
    let (out, stdout, _) = run(bin()
        .args(["run", "--seed", "1", "--html"])
        .arg(&page)
        .arg(scenarios().join("echo.toml")));
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains(&format!("viewer: {}", page.display())),
        "{stdout}"
    );
    let html = std::fs::read_to_string(&page).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>"));
    assert!(
        html.contains("\"title\":\"echo seed 1\""),
        "no title in the page data"
    );
    assert!(html.contains("server0"), "the hosts are in the page");
}
