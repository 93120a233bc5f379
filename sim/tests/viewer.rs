//! The trace viewer in a real browser: headless Chromium loads the page from a file and
//! dumps the DOM its script built, which must hold a lane per host and an arrow per segment
//! delivered.
//!
//! Needs `chromium` on the PATH (`apt-get install -y chromium`); set `TORSION_NO_BROWSER=1`
//! to skip it on a machine without one.

use std::path::{Path, PathBuf};
use std::process::Command;

use torsion::protocol::{ForProtocol, Protocol, Transport};
use torsion::protocols::wire::Echo;
use torsion::reactor::ReactorTcpExt;
use torsion_sim::html::trace_html;
use torsion_sim::{Kind, Sim};

/// Sends two lines (the second hostile markup), closes once both came back.
#[derive(Default)]
struct TwoLines {
    t: Transport,
    got: usize,
}
const LINES: [&[u8]; 2] = [b"hello\r\n", b"</script><img src=x onerror=alert(1)>\n"];
impl Protocol for TwoLines {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        for l in LINES {
            t.write(l);
        }
    }
    fn data_received(&mut self, d: &[u8]) {
        self.got += d.len();
        if self.got == LINES.iter().map(|l| l.len()).sum::<usize>() {
            self.t.lose_connection();
        }
    }
}

fn chromium() -> Option<PathBuf> {
    let path = std::env::var_os("PATH").unwrap_or_default();
    for dir in std::env::split_paths(&path) {
        for name in ["chromium", "chromium-browser"] {
            let p = dir.join(name);
            if p.is_file() {
                return Some(p);
            }
        }
    }
    None
}

fn dump_dom(browser: &Path, page: &str, profile: &Path) -> String {
    let out = Command::new(browser)
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--disable-quic",
            "--no-first-run",
            "--disable-background-networking",
            "--disable-component-update",
            "--disable-sync",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .arg("--dump-dom")
        .arg(page)
        .output()
        .expect("chromium runs");
    assert!(
        out.status.success(),
        "chromium failed: {}\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("the DOM is UTF-8")
}

#[test]
fn chromium_draws_a_lane_per_host_and_an_arrow_per_segment() {
    let Some(browser) = chromium() else {
        if std::env::var("TORSION_NO_BROWSER").as_deref() == Ok("1") {
            eprintln!("skipped: TORSION_NO_BROWSER=1 and no chromium on the PATH");
            return;
        }
        panic!(
            "this test renders the trace viewer in headless Chromium, which is not on the \
             PATH: install it (`apt-get install -y chromium`), or set TORSION_NO_BROWSER=1 \
             to skip it"
        );
    };
    let sim = Sim::builder().seed(2).trace(true).build();
    sim.host("server")
        .listen_tcp(7, ForProtocol::<Echo>::new())
        .unwrap();
    for name in ["alice", "bob"] {
        sim.host(name)
            .connect_tcp("server", 7, ForProtocol::<TwoLines>::new());
    }
    sim.run_until_idle();
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
    let trace = sim.trace();
    let arrows = trace.messages().iter().filter(|m| m.recv.is_some()).count();
    let sends = trace
        .events()
        .iter()
        .filter(|e| matches!(e.kind, Kind::Send(..)))
        .count();
    assert_eq!(arrows, sends, "no faults: every segment arrives");
    assert!(arrows >= 8, "two clients, two lines each way: {arrows}");

    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("viewer");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let page = dir.join("echo.html");
    let failure = "invariant 'demo' failed: <b>not bold</b>";
    std::fs::write(&page, trace_html(&trace, "echo, seed 2", Some(failure))).unwrap();
    let url = format!("file://{}", page.display());
    let dom = dump_dom(&browser, &url, &dir.join("profile"));

    let count = |class: &str| dom.matches(&format!("class=\"{class}\"")).count();
    assert_eq!(count("lane"), 3, "one lane per host");
    for name in ["server", "alice", "bob"] {
        assert!(dom.contains(&format!(">{name}</text>")), "lane {name}");
    }
    assert_eq!(count("arrow"), arrows, "one arrow per segment delivered");
    assert_eq!(count("lost-msg"), 0);
    // One row per event, the last one marked as the failing one.
    assert_eq!(
        dom.matches("id=\"row-").count(),
        trace.events().len(),
        "a row per event"
    );
    let last = trace.events().len() - 1;
    assert!(
        dom.contains(&format!("class=\"row failing\" id=\"row-{last}\"")),
        "the failing event is highlighted"
    );
    // The failure is shown as text; the hostile preview stays text too.
    assert!(dom.contains("invariant 'demo' failed: &lt;b&gt;not bold&lt;/b&gt;"));
    assert!(!dom.contains("<img"), "the hostile preview became markup");
    assert!(!dom.contains("<b>"), "the failure text became markup");
    assert!(
        dom.contains("&lt;/script&gt;&lt;img src"),
        "the preview is drawn"
    );

    assert!(!dom.contains("<dt>time</dt>"), "no details before a click");

    // An event's details, as a click shows them (`#event=N` opens event N at load).
    let (i, send) = trace
        .events()
        .iter()
        .enumerate()
        .find(|(_, e)| matches!(e.kind, Kind::Send(..)))
        .unwrap();
    let dom = dump_dom(&browser, &format!("{url}#event={i}"), &dir.join("profile"));
    let start = dom
        .find("<dl id=\"details-list\">")
        .expect("the details list");
    let details = &dom[start..start + dom[start..].find("</dl>").unwrap()];
    let time = format!(
        "{}.{:09} s",
        send.time / 1_000_000_000,
        send.time % 1_000_000_000
    );
    let host = trace.host_name(send.host.unwrap());
    let text = send
        .kind
        .to_string()
        .replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;");
    for want in [
        format!("<dd>{time}  ({} ns)</dd>", send.time),
        format!("<dd>{host}</dd>"),
        format!("<dd>c{}</dd>", send.conn.unwrap()),
        format!("<dd>{text}</dd>"),
    ] {
        assert!(details.contains(&want), "{want} in {details}");
    }
    assert!(details.contains("<dt>received</dt><dd>by "), "{details}");
    assert!(dom.contains("class=\"on\""), "the details are shown");
}
