//! Interop: the example servers, run as processes, talk to clients written with nothing but
//! `std::net` blocking sockets (and the example clients talk to the example servers).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running example; killed when dropped.
struct Example {
    child: Child,
    port: u16,
}

impl Drop for Example {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn example_path(name: &str) -> PathBuf {
    // target/<profile>/deps/interop-HASH -> target/<profile>/examples/NAME
    let exe = std::env::current_exe().expect("test binary path");
    let profile = exe.parent().and_then(|p| p.parent()).expect("target dir");
    profile.join("examples").join(name)
}

/// Starts an example server on an ephemeral port and reads the port it reports.
fn server(name: &str, extra: &[&str]) -> Example {
    let mut child = Command::new(example_path(name))
        .arg("127.0.0.1:0")
        .args(extra)
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start example {name}: {e} (cargo test builds examples)")
        });
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port = line
        .trim()
        .rsplit(':')
        .next()
        .and_then(|p| p.parse().ok())
        .unwrap_or_else(|| panic!("{name} printed {line:?}"));
    Example { child, port }
}

fn dial(port: u16) -> TcpStream {
    let s = TcpStream::connect(("127.0.0.1", port)).unwrap();
    s.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    s
}

fn read_line(r: &mut BufReader<TcpStream>) -> String {
    let mut line = String::new();
    r.read_line(&mut line).unwrap();
    line.trim_end().to_string()
}

#[test]
fn echo_server_echoes_a_std_client() {
    let srv = server("echo_server", &[]);
    let mut s = dial(srv.port);
    for msg in [&b"hello"[..], &[7u8; 100_000], b"bye"] {
        s.write_all(msg).unwrap();
        let mut back = vec![0u8; msg.len()];
        s.read_exact(&mut back).unwrap();
        assert_eq!(back, msg);
    }
}

#[test]
fn echo_client_example_talks_to_echo_server_example() {
    let srv = server("echo_server", &[]);
    let out = Command::new(example_path("echo_client"))
        .arg(format!("127.0.0.1:{}", srv.port))
        .args(["one", "two", "three"])
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(stdout.contains("echoed 3 messages, 11 bytes"), "{stdout}");
}

#[test]
fn chat_server_nick_broadcast_and_overlong_line() {
    let srv = server("chat_server", &[]);
    let mut members: Vec<(TcpStream, BufReader<TcpStream>)> = (0..3)
        .map(|_| {
            let s = dial(srv.port);
            let r = BufReader::new(s.try_clone().unwrap());
            (s, r)
        })
        .collect();
    // Joining order: each sees its welcome, earlier members see the joins.
    assert_eq!(read_line(&mut members[0].1), "* welcome guest1");
    assert_eq!(read_line(&mut members[1].1), "* welcome guest2");
    assert_eq!(read_line(&mut members[2].1), "* welcome guest3");
    assert_eq!(read_line(&mut members[0].1), "* guest2 has joined");
    assert_eq!(read_line(&mut members[0].1), "* guest3 has joined");
    assert_eq!(read_line(&mut members[1].1), "* guest3 has joined");

    members[0]
        .0
        .write_all(b"/nick alice\r\nhello room\r\n")
        .unwrap();
    for m in &mut members[1..] {
        assert_eq!(read_line(&mut m.1), "* guest1 is now alice");
        assert_eq!(read_line(&mut m.1), "<alice> hello room");
    }

    // An over-long line closes only that member's connection.
    members[2].0.write_all(&vec![b'x'; 20_000]).unwrap();
    let mut rest = Vec::new();
    let _ = members[2].1.read_to_end(&mut rest);
    assert_eq!(read_line(&mut members[0].1), "* guest3 has left");
    assert_eq!(read_line(&mut members[1].1), "* guest3 has left");
    members[1].0.write_all(b"still here\r\n").unwrap();
    assert_eq!(read_line(&mut members[0].1), "<guest2> still here");
}

#[test]
fn qotd_server_writes_a_quote_and_closes() {
    let srv = server("qotd_server", &[]);
    let mut s = dial(srv.port);
    let mut text = String::new();
    s.read_to_string(&mut text).unwrap();
    assert_eq!(text, "An apple a day keeps the doctor away\r\n");
}

#[test]
fn poetry_server_trickles_the_poem_to_a_std_client() {
    let srv = server("poetry_server", &["5"]);
    let mut s = dial(srv.port);
    let mut poem = String::new();
    s.read_to_string(&mut poem).unwrap();
    assert_eq!(poem, torsion_apps::poetry::POEM);
}

#[test]
fn poetry_client_example_gathers_from_two_servers() {
    let fast = server("poetry_server", &["0"]);
    let slow = server("poetry_server", &["20"]);
    let out = Command::new(example_path("poetry_client"))
        .arg(format!("127.0.0.1:{}", fast.port))
        .arg(format!("127.0.0.1:{}", slow.port))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success());
    assert!(
        stdout.contains("poem 1:") && stdout.contains("poem 2:"),
        "{stdout}"
    );
    assert_eq!(stdout.matches("replay the bug").count(), 2, "{stdout}");
}

/// Runs out of file descriptors: the server must keep serving the connections it has, and
/// accept the waiting ones once descriptors free up.
#[test]
fn accept_survives_running_out_of_file_descriptors() {
    use std::os::unix::process::CommandExt;
    let mut cmd = Command::new(example_path("echo_server"));
    cmd.arg("127.0.0.1:0")
        .stdout(Stdio::piped())
        .stderr(Stdio::null());
    // SAFETY: only async-signal-safe calls (setrlimit) between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            let lim = libc::rlimit {
                rlim_cur: 40,
                rlim_max: 40,
            };
            if libc::setrlimit(libc::RLIMIT_NOFILE, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(child.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let port: u16 = line.trim().rsplit(':').next().unwrap().parse().unwrap();
    let srv = Example { child, port };
    // More connections than the server has descriptors; the kernel queues the excess.
    let mut conns: Vec<TcpStream> = (0..80).map(|_| dial(srv.port)).collect();
    // The first connections are served while accept is starved.
    for (i, c) in conns.iter_mut().take(10).enumerate() {
        let msg = format!("early {i}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
    // Free descriptors: the server goes back to accepting and serves the rest.
    conns.drain(..60);
    for (i, c) in conns.iter_mut().enumerate() {
        let msg = format!("late {i}");
        c.write_all(msg.as_bytes()).unwrap();
        let mut back = vec![0u8; msg.len()];
        c.read_exact(&mut back).unwrap();
        assert_eq!(back, msg.as_bytes());
    }
}

/// SIGINT stops the reactor gracefully: the shutdown triggers run, open connections are
/// closed cleanly (the client sees EOF, not a reset), and the process exits 0.
#[test]
fn sigint_stops_the_server_gracefully() {
    let mut srv = server("echo_server", &[]);
    let mut s = dial(srv.port);
    s.write_all(b"before").unwrap();
    let mut back = [0u8; 6];
    s.read_exact(&mut back).unwrap();
    let pid = srv.child.id() as libc::pid_t;
    // SAFETY: kill(2) on our own child's pid.
    assert_eq!(unsafe { libc::kill(pid, libc::SIGINT) }, 0);
    let mut rest = Vec::new();
    s.read_to_end(&mut rest)
        .expect("a clean close, not a reset");
    assert!(rest.is_empty());
    let status = srv.child.wait().unwrap();
    assert!(status.success(), "{status:?}");
}
