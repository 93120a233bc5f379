//! The example programs as a user runs them: arguments, output, exit status. The programs are
//! thin wrappers over `torsion_apps::cli` (tested there); this runs the built binaries, which
//! `cargo test` builds alongside the tests. A binary that is not built (a filtered run such as
//! `cargo test --test examples`) fails the test, naming the command that builds it
//! (`cargo build --examples`): a test that cannot run must not pass.

use std::ffi::OsString;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::time::Duration;

/// The built example `name`, next to this test's own binary (`target/<profile>/examples/`).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test binary's path");
    // target/<profile>/deps/<test> -> target/<profile>/examples
    let dir = exe
        .parent()
        .and_then(|deps| deps.parent())
        .expect("the test binary lives in target/<profile>/deps")
        .join("examples");
    let path = dir.join(format!("{name}{}", std::env::consts::EXE_SUFFIX));
    assert!(
        path.exists(),
        "{} is not built: run `cargo build --examples` (or the whole `cargo test`)",
        path.display()
    );
    path
}

// Bounds a hang (the bug this guards against), not a timing assertion.
#[allow(clippy::disallowed_methods)]
fn finish(mut child: Child) -> Output {
    let deadline = std::time::Instant::now() + Duration::from_secs(60);
    while child.try_wait().expect("wait").is_none() {
        if std::time::Instant::now() > deadline {
            let _ = child.kill();
            panic!("the program did not exit");
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    child.wait_with_output().expect("output")
}

fn run(path: &PathBuf, args: &[OsString]) -> Output {
    let child = Command::new(path)
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn");
    finish(child)
}

fn args(a: &[&str]) -> Vec<OsString> {
    a.iter().map(OsString::from).collect()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// A port nothing listens on: the kernel's pick, released at once.
fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("a free port")
        .port()
}

#[test]
fn poetry_client_without_an_address_prints_its_usage_and_exits_2() {
    let client = example("poetry_client");
    let out = run(&client, &[]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    let err = stderr(&out);
    assert!(
        err.starts_with("poetry_client: no server address given\n"),
        "{err}"
    );
    assert!(err.contains("usage: poetry_client HOST:PORT..."), "{err}");
}

#[test]
fn a_bad_address_is_one_readable_line_and_exit_2() {
    let server = example("echo_server");
    let out = run(&server, &args(&["80x0"]));
    assert_eq!(out.status.code(), Some(2));
    let err = stderr(&out);
    let first = err.lines().next().unwrap_or_default();
    assert_eq!(
        first,
        "echo_server: \"80x0\" is not a port number (0 to 65535)"
    );
    assert!(
        !err.contains("AddrParseError") && !err.contains("panicked"),
        "{err}"
    );
}

#[cfg(unix)]
#[test]
fn a_non_utf8_argument_is_an_error_not_a_panic() {
    use std::os::unix::ffi::OsStringExt;
    let client = example("echo_client");
    let word = OsString::from_vec(vec![b'a', 0xff]);
    let out = run(&client, &[OsString::from("127.0.0.1:1"), word]);
    assert_eq!(out.status.code(), Some(2), "{}", stderr(&out));
    assert!(
        stderr(&out).contains("is not valid UTF-8"),
        "{}",
        stderr(&out)
    );
    assert!(!stderr(&out).contains("panicked"));
}

#[test]
fn echo_client_failing_to_connect_exits_1_with_one_line() {
    let client = example("echo_client");
    let port = closed_port();
    let out = run(&client, &args(&[&format!("127.0.0.1:{port}"), "hi"]));
    assert_eq!(out.status.code(), Some(1), "{}", stderr(&out));
    let err = stderr(&out);
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.starts_with(&format!("echo_client: echo to 127.0.0.1:{port} failed: ")),
        "{err}"
    );
}

/// A server on a bare port (every interface), a client by name, and an empty word.
#[test]
fn echo_client_by_name_with_an_empty_word_finishes() {
    let (server, client) = (example("echo_server"), example("echo_client"));
    let mut s = Command::new(&server)
        .arg("0")
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("spawn");
    let mut line = String::new();
    let stdout = s.stdout.take().expect("stdout");
    BufReader::new(stdout).read_line(&mut line).expect("a line");
    let port = line
        .trim()
        .strip_prefix("echo server listening on tcp:0.0.0.0:")
        .and_then(|p| p.parse::<u16>().ok());
    let out = port.map(|port| {
        run(
            &client,
            &args(&[&format!("localhost:{port}"), "a", "", "b"]),
        )
    });
    let _ = s.kill();
    let _ = s.wait();
    let out = out.unwrap_or_else(|| panic!("unexpected banner {line:?}"));
    assert_eq!(out.status.code(), Some(0), "{}", stderr(&out));
    assert_eq!(
        String::from_utf8_lossy(&out.stdout),
        "echoed 3 messages, 2 bytes\n"
    );
}
