//! A trace as one self-contained HTML page: a space-time diagram with a lane per host, time
//! downward, each TCP segment or datagram an arrow from its send to its receipt, faults and
//! crashes marked, details on hover or click, and the failing event highlighted.
//!
//! The page needs no network access: its style and script are inline, and the events are
//! embedded as JSON that the script draws as SVG. Every string from the trace (host names,
//! previews, messages) is treated as untrusted: the JSON is escaped so no `<` reaches the
//! HTML parser, and the script only ever sets text, never markup.

use std::path::Path;

use serde_json::{json, Value};

use crate::trace::{Kind, Trace};

/// The most events a page shows: a longer trace keeps its last `MAX_EVENTS` (where a
/// failure is), and the page says how many were left out.
pub const MAX_EVENTS: usize = 20_000;

/// The class of an event, for its mark and colour.
fn class(k: &Kind) -> &'static str {
    match k {
        Kind::Listen { .. } | Kind::Connect { .. } | Kind::Accept { .. } | Kind::Made => "conn",
        Kind::ConnectFailed { .. } => "fail",
        Kind::Send(..) => "send",
        Kind::Recv(..) => "recv",
        Kind::Fin | Kind::Lost { .. } => "close",
        Kind::Rst { .. } | Kind::ResetBy { .. } => "rst",
        Kind::Timer { .. } => "timer",
        Kind::Fault { .. } => "fault",
        Kind::Crash => "crash",
        Kind::Restart => "restart",
        Kind::Unhandled { .. } | Kind::Panic { .. } | Kind::CheckFailed { .. } => "error",
        Kind::Log { .. } => "log",
    }
}

/// The preview of a send or receive (the label of its arrow).
fn preview(k: &Kind) -> Option<&str> {
    match k {
        Kind::Send(_, p) | Kind::Recv(_, p) => Some(p),
        _ => None,
    }
}

/// The page's data: hosts, events (the last [`MAX_EVENTS`]) and messages (segments and datagrams).
fn data(trace: &Trace, title: &str, failure: Option<&str>) -> Value {
    let all = trace.events();
    let skip = all.len().saturating_sub(MAX_EVENTS);
    let events = &all[skip..];
    let lanes = events
        .iter()
        .filter_map(|e| e.host)
        .map(|h| h + 1)
        .max()
        .unwrap_or(0)
        .max(trace.host_names().len());
    let hosts: Vec<String> = (0..lanes).map(|i| trace.host_name(i)).collect();
    let events: Vec<Value> = events
        .iter()
        .map(|e| {
            json!({
                "t": e.time,
                "h": e.host,
                "c": e.conn,
                "k": class(&e.kind),
                "x": e.kind.to_string(),
                "p": preview(&e.kind),
            })
        })
        .collect();
    let messages: Vec<Value> = trace
        .messages()
        .iter()
        .filter(|m| m.send >= skip)
        .map(|m| json!([m.send - skip, m.recv.map(|r| r - skip)]))
        .collect();
    json!({
        "title": title,
        "failure": failure,
        "hosts": hosts,
        "events": events,
        "messages": messages,
        "total": all.len(),
        "skipped": skip,
    })
}

/// JSON made safe inside a `<script>` element: no `<`, `>` or `&` reaches the HTML parser
/// (they only occur inside JSON strings, where the `\u` escapes mean the same).
fn script_safe(json: &str) -> String {
    let mut out = String::with_capacity(json.len() + 64);
    for ch in json.chars() {
        match ch {
            '<' => out.push_str("\\u003c"),
            '>' => out.push_str("\\u003e"),
            '&' => out.push_str("\\u0026"),
            '\u{2028}' => out.push_str("\\u2028"),
            '\u{2029}' => out.push_str("\\u2029"),
            c => out.push(c),
        }
    }
    out
}

/// Text escaped for HTML element content and attribute values.
fn escape_html(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for ch in s.chars() {
        match ch {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c => out.push(c),
        }
    }
    out
}

/// The trace as one self-contained HTML document (see the module docs). `failure`, when
/// given, is shown at the top, and the trace's last event is highlighted as the failing one.
/// Only a full trace (a world built with `.trace(true)`) has events to draw.
pub fn trace_html(trace: &Trace, title: &str, failure: Option<&str>) -> String {
    let data = script_safe(&data(trace, title, failure).to_string());
    let mut page = String::with_capacity(data.len() + STYLE.len() + SCRIPT.len() + 4096);
    page.push_str("<!DOCTYPE html>\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n");
    page.push_str("<meta name=\"viewport\" content=\"width=device-width, initial-scale=1\">\n");
    page.push_str(
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; \
         style-src 'unsafe-inline'; script-src 'unsafe-inline'\">\n",
    );
    page.push_str("<title>");
    page.push_str(&escape_html(title));
    page.push_str(" - torsion trace</title>\n<style>");
    page.push_str(STYLE);
    page.push_str("</style>\n</head>\n<body>\n");
    page.push_str(BODY);
    page.push_str("<script type=\"application/json\" id=\"trace-data\">");
    page.push_str(&data);
    page.push_str("</script>\n<script>");
    page.push_str(SCRIPT);
    page.push_str("</script>\n</body>\n</html>\n");
    page
}

/// Writes [`trace_html`] to `path`.
pub fn write_trace_html(
    path: &Path,
    trace: &Trace,
    title: &str,
    failure: Option<&str>,
) -> Result<(), String> {
    std::fs::write(path, trace_html(trace, title, failure))
        .map_err(|e| format!("{}: {e}", path.display()))
}

const STYLE: &str = r##"
:root {
  --bg: #fbfbfd; --fg: #1d2330; --muted: #6b7385; --grid: #e6e8ef; --lane: #c9cedb;
  --send: #2f6fd6; --recv: #2f6fd6; --conn: #1f9d63; --close: #8a8f9c; --rst: #d9822b;
  --timer: #8a5cd1; --fault: #e08a00; --crash: #d23a3a; --restart: #1f9d63; --error: #d23a3a;
  --log: #8a8f9c; --fail: #d9822b;
}
* { box-sizing: border-box; }
html, body { margin: 0; background: var(--bg); color: var(--fg);
  font: 13px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, "Helvetica Neue", Arial, sans-serif; }
header { position: sticky; top: 0; z-index: 3; background: #fff; border-bottom: 1px solid var(--grid);
  padding: 10px 16px 8px; box-shadow: 0 1px 4px rgba(20,30,60,.06); }
h1 { font-size: 16px; margin: 0 0 4px; font-weight: 600; }
.sub { color: var(--muted); }
.failure { margin: 8px 0 2px; padding: 8px 10px; border-radius: 6px; background: #fdecec;
  border: 1px solid #f3b8b8; color: #8c1d1d; white-space: pre-wrap; word-break: break-word;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12px; }
.failure button { float: right; margin-left: 8px; }
.note { margin-top: 6px; color: #7a5a00; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; margin-top: 6px; color: var(--muted); font-size: 12px; }
.legend span { display: inline-flex; align-items: center; gap: 5px; }
.legend svg { overflow: visible; }
#scroller { overflow: auto; height: calc(100vh - var(--head, 120px)); }
#diagram text, #lanehead text { font-size: 11px; }
#diagram, #lanehead { display: block; }
#lanehead { position: sticky; top: 0; z-index: 2; background: #fff;
  border-bottom: 1px solid var(--grid); }
#lanehead .lane-head { font-size: 12.5px; }
#diagram .mono { font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; }
.lane-head { font-weight: 600; font-size: 12px; fill: var(--fg); }
.lane-line { stroke: var(--lane); stroke-width: 1.5; }
.row:hover .row-bg, .row.sel .row-bg { fill: #eef3fd; }
.row-bg { fill: transparent; }
.tlabel { fill: var(--muted); font-size: 10.5px; }
.elabel { fill: #3b4252; }
.arrow line { stroke: var(--send); stroke-width: 1.4; }
.arrow text, .lost-msg text { fill: #1f4fa0; paint-order: stroke; stroke: var(--bg); stroke-width: 3px; }
.lost-msg line { stroke: var(--crash); stroke-width: 1.4; stroke-dasharray: 4 3; }
.arrow:hover line, .arrow.sel line { stroke-width: 3; }
.global line { stroke: var(--fault); stroke-dasharray: 6 4; stroke-width: 1.2; }
.global text { fill: #8a5300; font-weight: 600; }
.global.error line { stroke: var(--crash); }
.global.error text { fill: #8c1d1d; }
.failing .ring { stroke: var(--crash); stroke-width: 2.5; fill: none; }
.failing .row-bg { fill: #fdecec; }
.mark { cursor: pointer; }
#details { position: fixed; right: 16px; bottom: 16px; max-width: min(560px, 90vw); z-index: 4;
  background: #fff; border: 1px solid var(--grid); border-radius: 8px; padding: 10px 12px;
  box-shadow: 0 4px 18px rgba(20,30,60,.15); display: none; }
#details.on { display: block; }
#details dl { display: grid; grid-template-columns: auto 1fr; gap: 2px 10px; margin: 0; }
#details dt { color: var(--muted); }
#details dd { margin: 0; word-break: break-all; white-space: pre-wrap;
  font-family: ui-monospace, SFMono-Regular, Menlo, Consolas, "DejaVu Sans Mono", monospace; font-size: 12px; }
#details .close { float: right; cursor: pointer; border: 0; background: none; font-size: 16px; color: var(--muted); }
button { font: inherit; border: 1px solid var(--lane); background: #fff; border-radius: 5px; padding: 1px 8px; cursor: pointer; }
"##;

const BODY: &str = r##"<header id="head">
<h1 id="title"></h1>
<div class="sub" id="summary"></div>
<div class="failure" id="failure" hidden><button id="jump" type="button">show</button><span id="failure-text"></span></div>
<div class="note" id="note" hidden></div>
<div class="legend" id="legend"></div>
</header>
<div id="scroller"><svg id="lanehead" aria-hidden="true"></svg><svg id="diagram" role="img" aria-label="space-time diagram"></svg></div>
<div id="details" role="dialog"><button class="close" id="details-close" type="button" aria-label="close">&times;</button><dl id="details-list"></dl></div>
<noscript><p>This trace viewer draws its diagram with JavaScript.</p></noscript>
"##;

const SCRIPT: &str = r##"
(function () {
  "use strict";
  var NS = document.getElementById("diagram").namespaceURI;
  var D = JSON.parse(document.getElementById("trace-data").textContent);
  var COLORS = { send: "--send", recv: "--recv", conn: "--conn", close: "--close", rst: "--rst",
    timer: "--timer", fault: "--fault", crash: "--crash", restart: "--restart", error: "--error",
    log: "--log", fail: "--fail" };
  var NAMES = [["send", "send / receive"], ["conn", "listen, connect, accept"], ["close", "fin, lost"],
    ["rst", "reset"], ["timer", "timer"], ["fault", "fault"], ["crash", "crash"],
    ["restart", "restart"], ["error", "panic, unhandled, check failed"], ["log", "log"]];
  function color(k) { return "var(" + (COLORS[k] || "--log") + ")"; }
  function el(tag, attrs, parent) {
    var n = document.createElementNS(NS, tag);
    for (var a in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, a)) n.setAttribute(a, String(attrs[a])); }
    if (parent) parent.appendChild(n);
    return n;
  }
  function text(parent, x, y, s, cls, anchor) {
    var t = el("text", { x: x, y: y, "class": cls || "" }, parent);
    if (anchor) t.setAttribute("text-anchor", anchor);
    t.textContent = s;
    return t;
  }
  function clip(s, n) { s = String(s); return s.length > n ? s.slice(0, n - 1) + "\u2026" : s; }
  function pad(n, w) { n = String(n); while (n.length < w) n = "0" + n; return n; }
  function fmtTime(t) {
    var s = Math.floor(t / 1e9), ns = t % 1e9;
    return s + "." + pad(ns, 9) + " s";
  }
  function shortTime(t) {
    if (t < 1e3) return t + " ns";
    if (t < 1e6) return (t / 1e3).toFixed(t < 1e4 ? 2 : 1) + " \u00b5s";
    if (t < 1e9) return (t / 1e6).toFixed(t < 1e7 ? 3 : 2) + " ms";
    return (t / 1e9).toFixed(6) + " s";
  }
  function mark(g, k, x, y) {
    var c = color(k), m;
    if (k === "crash") {
      m = el("path", { d: "M" + (x - 6) + " " + (y - 6) + "L" + (x + 6) + " " + (y + 6) + "M" + (x + 6) + " " + (y - 6) + "L" + (x - 6) + " " + (y + 6), stroke: c, "stroke-width": 3, "stroke-linecap": "round" }, g);
    } else if (k === "fault") {
      m = el("path", { d: "M" + x + " " + (y - 7) + "L" + (x + 7) + " " + (y + 5) + "L" + (x - 7) + " " + (y + 5) + "Z", fill: c }, g);
    } else if (k === "restart") {
      m = el("rect", { x: x - 5, y: y - 5, width: 10, height: 10, rx: 2, fill: c }, g);
    } else if (k === "error" || k === "fail") {
      m = el("rect", { x: x - 5, y: y - 5, width: 10, height: 10, fill: c, transform: "rotate(45 " + x + " " + y + ")" }, g);
    } else if (k === "timer") {
      m = el("circle", { cx: x, cy: y, r: 4.5, fill: "#fff", stroke: c, "stroke-width": 2 }, g);
    } else {
      m = el("circle", { cx: x, cy: y, r: k === "log" ? 3 : 4.5, fill: c }, g);
    }
    m.setAttribute("class", "mark");
    return m;
  }

  document.getElementById("title").textContent = D.title;
  document.title = D.title + " - torsion trace";
  var nmsg = D.messages.length;
  document.getElementById("summary").textContent = D.hosts.length + " hosts \u00b7 " +
    D.total + " events \u00b7 " + nmsg + " messages" +
    (D.events.length ? " \u00b7 " + fmtTime(D.events[0].t) + " to " + fmtTime(D.events[D.events.length - 1].t) : "");
  if (D.failure !== null && D.failure !== undefined) {
    document.getElementById("failure").hidden = false;
    document.getElementById("failure-text").textContent = D.failure;
  }
  if (D.skipped > 0) {
    var note = document.getElementById("note");
    note.hidden = false;
    note.textContent = "Showing the last " + D.events.length + " of " + D.total +
      " events (the first " + D.skipped + " are left out).";
  }
  var legend = document.getElementById("legend");
  NAMES.forEach(function (p) {
    var s = document.createElement("span");
    var svg = el("svg", { width: 14, height: 14, viewBox: "0 0 14 14" }, s);
    mark(svg, p[0], 7, 7);
    s.appendChild(document.createTextNode(p[1]));
    legend.appendChild(s);
  });
  (function () {
    var s = document.createElement("span");
    var svg = el("svg", { width: 22, height: 14 }, s);
    el("line", { x1: 1, y1: 7, x2: 21, y2: 7, stroke: "var(--send)", "stroke-width": 1.6 }, svg);
    s.appendChild(document.createTextNode("message sent \u2192 received"));
    legend.appendChild(s);
    var s2 = document.createElement("span");
    var svg2 = el("svg", { width: 22, height: 14 }, s2);
    el("line", { x1: 1, y1: 7, x2: 21, y2: 7, stroke: "var(--crash)", "stroke-width": 1.6, "stroke-dasharray": "4 3" }, svg2);
    s2.appendChild(document.createTextNode("message not delivered"));
    legend.appendChild(s2);
  })();

  var ROW = 22, TOP = 8, GUTTER = 120, LANE = Math.max(240, Math.min(360, 1400 / Math.max(1, D.hosts.length)));
  var ev = D.events, n = ev.length;
  var width = GUTTER + LANE * Math.max(1, D.hosts.length) + 40;
  var height = TOP + ROW * (n + 1) + 20;
  var svg = document.getElementById("diagram");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height);
  svg.setAttribute("viewBox", "0 0 " + width + " " + height);
  el("defs", {}, svg);
  var defs = svg.firstChild;
  var marker = el("marker", { id: "head", viewBox: "0 0 10 10", refX: 9, refY: 5, markerWidth: 7, markerHeight: 7, orient: "auto-start-reverse" }, defs);
  el("path", { d: "M0 0L10 5L0 10z", fill: "var(--send)" }, marker);
  var xmark = el("marker", { id: "xhead", viewBox: "0 0 10 10", refX: 5, refY: 5, markerWidth: 8, markerHeight: 8 }, defs);
  el("path", { d: "M1 1L9 9M9 1L1 9", stroke: "var(--crash)", "stroke-width": 2 }, xmark);

  function laneX(h) { return GUTTER + LANE * h + 16; }
  function rowY(i) { return TOP + ROW * i + ROW / 2; }
  var rows = el("g", { "class": "rows" }, svg);
  var lanes = el("g", { "class": "lanes" }, svg);
  var arrows = el("g", { "class": "arrows" }, svg);
  var marks = el("g", { "class": "marks" }, svg);

  var head = document.getElementById("lanehead");
  head.setAttribute("width", width);
  head.setAttribute("height", 40);
  text(head, GUTTER - 12, 25, "time", "tlabel", "end");
  D.hosts.forEach(function (name, h) {
    var g = el("g", { "class": "lane" }, lanes);
    g.setAttribute("data-host", h);
    el("line", { x1: laneX(h), y1: 0, x2: laneX(h), y2: height - 10, "class": "lane-line" }, g);
    var n = el("g", { "class": "lane-name" }, head);
    text(n, laneX(h), 17, clip(name, 40), "lane-head", "middle");
    text(n, laneX(h), 32, "host " + h, "tlabel", "middle");
    var t = el("title", {}, n);
    t.textContent = name;
  });

  var selected = null;
  var details = document.getElementById("details");
  var list = document.getElementById("details-list");
  function connName(c) { return c === null || c === undefined ? "" : " c" + c; }
  function hostName(h) { return h === null || h === undefined ? "(world)" : (D.hosts[h] || "h" + h); }
  var pairOf = {};
  D.messages.forEach(function (m) { pairOf[m[0]] = m; if (m[1] !== null) { (pairOf["r" + m[1]] = pairOf["r" + m[1]] || []).push(m[0]); } });
  function show(i) {
    var e = ev[i];
    if (!e) return;
    if (selected) selected.classList.remove("sel");
    selected = document.getElementById("row-" + i);
    if (selected) selected.classList.add("sel");
    while (list.firstChild) list.removeChild(list.firstChild);
    var items = [["event", "#" + (D.skipped + i + 1) + " of " + D.total], ["time", fmtTime(e.t) + "  (" + e.t + " ns)"],
      ["host", hostName(e.h)], ["connection", e.c === null || e.c === undefined ? "-" : "c" + e.c], ["what", e.x]];
    var m = pairOf[i];
    if (m) {
      items.push(["received", m[1] === null ? "not delivered (dropped, or the run ended first)" : "by " + hostName(ev[m[1]].h) + connName(ev[m[1]].c) + " at " + fmtTime(ev[m[1]].t) + " (+" + shortTime(ev[m[1]].t - e.t) + ")"]);
    }
    var r = pairOf["r" + i];
    if (r) {
      items.push(["sent", r.map(function (s) { return "by " + hostName(ev[s].h) + connName(ev[s].c) + " at " + fmtTime(ev[s].t); }).join("\n")]);
    }
    if (D.failure !== null && D.failure !== undefined && i === n - 1) items.push(["failure", D.failure]);
    items.forEach(function (p) {
      var dt = document.createElement("dt"); dt.textContent = p[0]; list.appendChild(dt);
      var dd = document.createElement("dd"); dd.textContent = p[1]; list.appendChild(dd);
    });
    details.classList.add("on");
  }
  document.getElementById("details-close").addEventListener("click", function () {
    details.classList.remove("on");
    if (selected) selected.classList.remove("sel");
  });

  var lastT = -1;
  var failing = D.failure !== null && D.failure !== undefined && n > 0 ? n - 1 : -1;
  for (var i = 0; i < n; i++) {
    var e = ev[i], y = rowY(i);
    var row = el("g", { "class": "row" + (i === failing ? " failing" : ""), id: "row-" + i }, rows);
    row.setAttribute("data-i", i);
    el("rect", { x: 0, y: y - ROW / 2, width: width, height: ROW, "class": "row-bg" }, row);
    if (e.t !== lastT) {
      text(row, GUTTER - 12, y + 4, fmtTime(e.t), "tlabel mono", "end");
      lastT = e.t;
    }
    var title = el("title", {}, row);
    title.textContent = fmtTime(e.t) + "  " + hostName(e.h) + (e.c !== null && e.c !== undefined ? " c" + e.c : "") + "\n" + e.x;
    if (e.h === null || e.h === undefined) {
      var g = el("g", { "class": "global " + e.k }, row);
      el("line", { x1: GUTTER, y1: y, x2: width - 20, y2: y }, g);
      var mk = mark(g, e.k, GUTTER + 6, y);
      text(g, GUTTER + 18, y - 4, clip(e.x, 140), "mono");
      if (i === failing) el("circle", { cx: GUTTER + 6, cy: y, r: 9, "class": "ring" }, row);
    } else {
      var x = laneX(e.h);
      var gm = el("g", {}, marks);
      gm.setAttribute("data-i", i);
      mark(gm, e.k, x, y);
      var label = e.k === "send" || e.k === "recv" ? e.x.split(" ").slice(0, 2).join(" ") : e.x;
      var pm = pairOf[i];
      if (pm && pm[1] === null) label = label + " " + (e.p || "") + " \u2715 not delivered";
      text(row, x + 10, y + 4, (e.c !== null && e.c !== undefined ? "c" + e.c + " " : "") + clip(label, Math.floor((LANE - 40) / 6.2)), "elabel mono");
      if (i === failing) el("circle", { cx: x, cy: y, r: 9, "class": "ring" }, row);
    }
  }

  D.messages.forEach(function (m) {
    var s = ev[m[0]];
    if (!s || s.h === null || s.h === undefined) return;
    var x1 = laneX(s.h), y1 = rowY(m[0]);
    var g, x2, y2, lx, ly;
    if (m[1] !== null && ev[m[1]] && ev[m[1]].h !== null) {
      var r = ev[m[1]];
      x2 = laneX(r.h); y2 = rowY(m[1]);
      var dir = x2 >= x1 ? 1 : -1;
      g = el("g", { "class": "arrow" }, arrows);
      el("line", { x1: x1 + 5 * dir, y1: y1, x2: x2 - 6 * dir, y2: y2, "marker-end": "url(#head)" }, g);
    } else {
      g = el("g", { "class": "lost-msg" }, arrows);
      x2 = x1 + 26; y2 = y1 + ROW * 0.85;
      el("line", { x1: x1 + 5, y1: y1, x2: x2, y2: y2, "marker-end": "url(#xhead)" }, g);
    }
    g.setAttribute("data-send", m[0]);
    lx = (x1 + x2) / 2; ly = (y1 + y2) / 2 - 4;
    if (m[1] !== null && s.p !== null && s.p !== undefined) text(g, lx, ly, clip(s.p, 34), "mono", "middle");
    var t = el("title", {}, g);
    t.textContent = s.x;
    g.addEventListener("click", function () { show(m[0]); });
  });

  function pick(ev0) {
    var t = ev0.target;
    while (t && t !== svg) {
      if (t.getAttribute && t.getAttribute("data-i") !== null) return parseInt(t.getAttribute("data-i"), 10);
      t = t.parentNode;
    }
    return -1;
  }
  svg.addEventListener("click", function (x) { var i = pick(x); if (i >= 0) show(i); });
  marks.addEventListener("mouseover", function (x) { var i = pick(x); if (i >= 0) show(i); });

  function fit() {
    document.documentElement.style.setProperty("--head", document.getElementById("head").offsetHeight + "px");
  }
  fit();
  window.addEventListener("resize", fit);
  document.getElementById("jump").addEventListener("click", function () {
    if (failing < 0) return;
    var sc = document.getElementById("scroller");
    sc.scrollTop = Math.max(0, rowY(failing) - sc.clientHeight / 2);
    show(failing);
  });
  // "#event=N" in the address opens event N (as a click on it would), else the failure.
  var want = /^#event=(\d+)$/.exec(window.location.hash);
  var focus = want ? parseInt(want[1], 10) : failing;
  if (focus >= 0 && focus < n) {
    var sc0 = document.getElementById("scroller");
    sc0.scrollTop = Math.max(0, rowY(focus) - sc0.clientHeight / 2);
    if (want) show(focus);
  }
})();
"##;

#[cfg(test)]
mod tests;
