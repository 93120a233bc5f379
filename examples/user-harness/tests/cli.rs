//! The crate's own command line, run as its users would: `explore` passes the correct
//! store and finds the planted bug, whose replay file replays; bad parameters are errors
//! naming the file, line and field.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_user-harness"))
}

fn scenarios() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("scenarios")
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("user-harness-{}-{name}", std::process::id()));
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
fn explore_finds_the_planted_bug_and_its_replay_file_replays() {
    let dir = tmp("explore");
    let (out, stdout, stderr) = run(bin()
        .current_dir(&dir)
        .args(["explore", "--json", "--seeds", "60", "--jobs", "2"])
        .arg(scenarios()));
    assert!(out.status.success(), "{stdout}{stderr}");
    let rows: Vec<serde_json::Value> = stdout
        .lines()
        .map(|l| serde_json::from_str(l).expect("each line is JSON"))
        .collect();
    assert_eq!(rows.len(), 2, "{stdout}");
    let (good, bug) = (&rows[0], &rows[1]);
    assert_eq!(good["scenario"], "netkv");
    assert_eq!(good["failures"], 0, "{good}");
    assert_eq!(good["verdict"], "ok");
    assert_eq!(bug["scenario"], "netkv_split_frames");
    assert_eq!(bug["verdict"], "ok", "the planted bug is found: {bug}");
    assert_eq!(bug["failures"], 1);
    // The planted bug shows as a wrong reply, or as a client left waiting for one (its
    // connection still open when the world goes idle: the clean-world check).
    let error = bug["error"].as_str().unwrap().to_string();
    let planted = |text: &str| {
        text.contains("every reply is the one a correct store gives")
            || text.contains("is still open")
    };
    assert!(planted(&error), "{error}");

    // The replay file re-runs the shrunk schedule to the same failure and trace hash.
    let file = dir.join(bug["replay_file"].as_str().unwrap());
    let (out, stdout, stderr) = run(bin().current_dir(&dir).arg("replay").arg(&file));
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(stdout.contains("matches the replay file"), "{stdout}");
    assert!(stdout.contains("the schedule still fails"), "{stdout}");
    assert!(planted(&stdout), "{stdout}");
    // The report names this crate's command line, not the bundled one.
    assert!(stdout.contains("user-harness replay"), "{stdout}");

    // The failing seed, run alone, fails with a trace of the store's traffic.
    let seed = bug["first_failing_seed"].as_u64().unwrap();
    let (out, stdout, _) = run(bin()
        .current_dir(&dir)
        .args(["run", "--trace", "--seed", &seed.to_string()])
        .arg(scenarios().join("netkv_split_frames.toml")));
    assert_eq!(out.status.code(), Some(1), "{stdout}");
    assert!(stdout.contains("listen :4000"), "{stdout}");
}

#[test]
fn list_and_workloads_show_this_crates_workload() {
    let (out, stdout, _) = run(bin().arg("list").arg(scenarios()));
    assert!(out.status.success());
    assert!(stdout.contains("netkv_split_frames"), "{stdout}");
    let (out, stdout, _) = run(bin().arg("workloads"));
    assert!(out.status.success());
    assert!(stdout.starts_with("netkv "), "{stdout}");
}

#[test]
fn bad_workload_parameters_name_file_line_and_field() {
    let good = std::fs::read_to_string(scenarios().join("netkv.toml")).unwrap();
    let line = |key: &str| {
        1 + good
            .lines()
            .position(|l| l.starts_with(key))
            .unwrap_or_else(|| panic!("{key} in netkv.toml"))
    };
    for (name, text, field, at) in [
        (
            "type",
            good.replace("keys = 5", "keys = \"five\""),
            "keys",
            line("keys"),
        ),
        (
            "bound",
            good.replace("value_len = 40", "value_len = 5000"),
            "value_len",
            line("value_len"),
        ),
        (
            "unknown",
            good.replace("buggy = false", "bugy = false"),
            "bugy",
            line("buggy"),
        ),
        (
            "app",
            good.replace("app = \"netkv\"", "app = \"echo\""),
            "app",
            line("app"),
        ),
    ] {
        let dir = tmp(name);
        let path = dir.join("s.toml");
        std::fs::write(&path, text).unwrap();
        let (out, _, stderr) = run(bin().arg("list").arg(&path));
        assert_eq!(out.status.code(), Some(2), "{name}: {stderr}");
        let want = format!("user-harness: {}:{at}: ", path.display());
        assert!(stderr.starts_with(&want), "{name}: {stderr}");
        assert!(stderr.contains(&format!("`{field}`")), "{name}: {stderr}");
    }
}
