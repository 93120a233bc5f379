use std::rc::Rc;

use torsion::defer::Failure;
use torsion::protocol::{ClientFactory, Factory, ForProtocol, Protocol, Transport};
use torsion::protocols::wire::Echo;
use torsion::reactor::ReactorTcpExt;

use super::*;
use crate::trace::Kind;
use crate::Sim;

/// Writes its payload, and closes once as many bytes came back.
struct Sender {
    t: Transport,
    want: Vec<u8>,
    got: usize,
}
impl Protocol for Sender {
    fn connection_made(&mut self, t: &Transport) {
        self.t = t.clone();
        t.write(&self.want);
    }
    fn data_received(&mut self, d: &[u8]) {
        self.got += d.len();
        if self.got >= self.want.len() {
            self.t.lose_connection();
        }
    }
}

struct SenderFactory(Vec<u8>);
impl Factory for SenderFactory {
    fn build_protocol(&self, _a: &torsion::protocol::Address) -> Option<Box<dyn Protocol>> {
        Some(Box::new(Sender {
            t: Transport::default(),
            want: self.0.clone(),
            got: 0,
        }))
    }
}
impl ClientFactory for SenderFactory {
    fn client_connection_failed(&self, _c: &torsion::protocol::Connector, _r: Failure) {}
}

const HOSTILE: &str = "</script><img src=x onerror=alert(1)>";

fn echo(seed: u64, payload: &[u8]) -> Sim {
    let sim = Sim::builder().seed(seed).trace(true).build();
    let server = sim.host("server");
    server.listen_tcp(7, ForProtocol::<Echo>::new()).unwrap();
    let client = sim.host("client");
    client.connect_tcp("server", 7, Rc::new(SenderFactory(payload.to_vec())));
    client.log(HOSTILE);
    sim.run_until_idle();
    assert!(sim.errors().is_empty(), "{:?}", sim.errors());
    sim
}

/// The embedded JSON, and the document with it cut out.
fn split(doc: &str) -> (serde_json::Value, String) {
    let open = "<script type=\"application/json\" id=\"trace-data\">";
    let start = doc.find(open).expect("data element") + open.len();
    let len = doc[start..].find("</script>").expect("data element closed");
    let json = &doc[start..start + len];
    assert!(!json.contains('<'), "no '<' inside the data element");
    let rest = format!("{}{}", &doc[..start], &doc[start + len..]);
    (serde_json::from_str(json).expect("the data parses"), rest)
}

#[test]
fn the_document_is_self_contained_and_holds_every_event() {
    let sim = echo(1, format!("ping {HOSTILE}\r\n").as_bytes());
    let trace = sim.trace();
    let doc = trace_html(&trace, "echo <seed 1>", Some("invariant: boom </script>"));
    assert!(doc.starts_with("<!DOCTYPE html>"));
    for outside in ["http://", "https://", "//cdn", "@import"] {
        assert!(!doc.contains(outside), "{outside} in the document");
    }
    // url() only names the page's own elements (the arrow heads).
    for (at, _) in doc.match_indices("url(") {
        assert!(doc[at + 4..].starts_with('#'), "{}", &doc[at..at + 20]);
    }
    let (data, rest) = split(&doc);
    // Outside the data, nothing loads anything: no src= at all, and only our own elements.
    assert!(!rest.contains("src="), "src= outside the data");
    assert!(
        !doc.contains("<img"),
        "the hostile preview reached the markup"
    );
    assert_eq!(
        doc.matches("</script>").count(),
        2,
        "only our own two scripts"
    );
    assert_eq!(doc.matches("<script").count(), 2);
    assert!(doc.contains("<title>echo &lt;seed 1&gt; - torsion trace</title>"));
    // The hosts are the lanes, in index order.
    assert_eq!(data["hosts"], serde_json::json!(["server", "client"]));
    assert_eq!(data["title"], "echo <seed 1>");
    assert_eq!(data["failure"], "invariant: boom </script>");
    // Every event, in order, with its time, host, connection and full text.
    let events = data["events"].as_array().unwrap();
    assert_eq!(events.len(), trace.events().len());
    assert_eq!(data["total"], trace.events().len());
    assert_eq!(data["skipped"], 0);
    for (j, e) in events.iter().zip(trace.events()) {
        assert_eq!(j["t"], e.time);
        assert_eq!(j["h"], serde_json::json!(e.host));
        assert_eq!(j["c"], serde_json::json!(e.conn));
        assert_eq!(j["x"], e.kind.to_string());
    }
    // The hostile text survives as data (escaped in the page, intact once parsed).
    let sends: Vec<&serde_json::Value> = events.iter().filter(|e| e["k"] == "send").collect();
    assert!(sends
        .iter()
        .any(|e| e["p"].as_str().unwrap().contains("</script><img")));
    assert!(events.iter().any(|e| e["x"] == format!("log {HOSTILE}")));
    // One message per segment sent, each delivered (no faults) to the other host.
    let messages = data["messages"].as_array().unwrap();
    assert_eq!(messages.len(), sends.len());
    assert!(!messages.is_empty());
    for m in messages {
        let (s, r) = (
            m[0].as_u64().unwrap() as usize,
            m[1].as_u64().unwrap() as usize,
        );
        assert_eq!(events[s]["k"], "send");
        assert_eq!(events[r]["k"], "recv");
        assert!(r > s);
        assert_ne!(events[s]["h"], events[r]["h"]);
    }
}

#[test]
fn a_huge_trace_keeps_its_last_events_and_says_so() {
    let mut t = Trace::new(true);
    t.name_host(0, "a");
    for i in 0..(MAX_EVENTS as u64 + 7) {
        t.push(crate::trace::Event {
            time: i,
            host: Some(0),
            conn: None,
            kind: Kind::Timer {
                site: std::panic::Location::caller(),
            },
        });
    }
    let (data, _) = split(&trace_html(&t, "big", None));
    assert_eq!(data["events"].as_array().unwrap().len(), MAX_EVENTS);
    assert_eq!(data["skipped"], 7);
    assert_eq!(data["events"][0]["t"], 7);
    assert_eq!(data["failure"], serde_json::Value::Null);
}

#[test]
fn sim_write_html_shows_the_runs_first_error() {
    let sim = echo(3, b"hi\n");
    sim.fail(crate::SimError::Invariant {
        name: "demo".into(),
        message: "went <wrong>".into(),
    });
    let dir = std::env::temp_dir().join(format!("torsion-html-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("run.html");
    sim.write_html(&path, "echo seed 3").unwrap();
    let (data, _) = split(&std::fs::read_to_string(&path).unwrap());
    assert_eq!(data["failure"], sim.errors()[0].to_string());
    assert!(data["failure"].as_str().unwrap().contains("went <wrong>"));
    assert_eq!(
        data["events"].as_array().unwrap().len(),
        sim.trace().events().len()
    );
    let _ = std::fs::remove_dir_all(&dir);
    // An unwritable path is an error naming it, not a panic.
    let err = sim
        .write_html(&dir.join("no/such/dir/x.html"), "t")
        .unwrap_err();
    assert!(err.contains("x.html"), "{err}");
}
