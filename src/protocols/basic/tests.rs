//! Ported from the behaviours of Twisted's `twisted/protocols/test/test_basic.py`, plus a
//! chunking property per framing protocol.

use std::cell::RefCell;
use std::rc::Rc;
use std::time::Duration;

use proptest::prelude::*;

use super::*;
use crate::reactor::ReactorTimeExt;
use crate::testing::{Clock, StringTransport};

// ---------------------------------------------------------------------------------------
// LineReceiver

/// Twisted's `LineTester`: `\n` lines, MAX_LENGTH 64, tokens that switch modes and pause.
struct LineTester {
    lines: LineBuffer,
    received: Vec<Vec<u8>>,
    length: usize,
    clock: Option<Clock>,
    me: std::rc::Weak<RefCell<LineTester>>,
}

fn line_tester(clock: Option<Clock>) -> (Rc<RefCell<LineTester>>, StringTransport) {
    let tr = StringTransport::new();
    let p = Rc::new_cyclic(|me| {
        let mut lines = LineBuffer::with_delimiter(b"\n");
        lines.max_length = 64;
        lines.attach(&tr.transport());
        RefCell::new(LineTester {
            lines,
            received: Vec::new(),
            length: 0,
            clock,
            me: me.clone(),
        })
    });
    (p, tr)
}

impl LineTester {
    fn resume_later(&self) {
        let me = self.me.clone();
        let clock = self.clock.as_ref().expect("pausing tests give a clock");
        clock.call_later(Duration::ZERO, move || {
            if let Some(p) = me.upgrade() {
                p.borrow_mut().resume_producing();
            }
        });
    }
}

impl LineReceiver for LineTester {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        self.received.push(line.to_vec());
        if line.is_empty() {
            self.set_raw_mode();
        } else if line == b"pause" {
            self.pause_producing();
            self.resume_later();
        } else if line == b"rawpause" {
            self.pause_producing();
            self.set_raw_mode();
            self.received.push(Vec::new());
            self.resume_later();
        } else if line == b"stop" {
            self.stop_producing();
        } else if let Some(n) = line.strip_prefix(b"len ") {
            self.length = std::str::from_utf8(n).unwrap().parse().unwrap();
        }
    }
    fn raw_data_received(&mut self, data: &[u8]) {
        let take = self.length.min(data.len());
        let (data, rest) = data.split_at(take);
        self.length -= take;
        self.received.last_mut().unwrap().extend_from_slice(data);
        if self.length == 0 {
            let rest = rest.to_vec();
            self.set_line_mode(&rest);
        }
    }
    fn line_length_exceeded(&mut self, line: &[u8]) {
        let max = self.lines.max_length;
        if line.len() > max + 1 {
            let rest = line[max + 1..].to_vec();
            self.set_line_mode(&rest);
        }
    }
}

const BUFFER: &[u8] = b"len 10\n\n0123456789len 5\n\n1234\nlen 20\nfoo 123\n\n0123456789\n012345678len 0\nfoo 5\n\n1234567890123456789012345678901234567890123456789012345678901234567890\nlen 1\n\na";

fn buffer_output() -> Vec<Vec<u8>> {
    [
        &b"len 10"[..],
        b"0123456789",
        b"len 5",
        b"1234\n",
        b"len 20",
        b"foo 123",
        b"0123456789\n012345678",
        b"len 0",
        b"foo 5",
        b"",
        b"67890",
        b"len 1",
        b"a",
    ]
    .iter()
    .map(|s| s.to_vec())
    .collect()
}

#[test]
fn test_buffer() {
    for packet_size in 1..10 {
        let (p, _tr) = line_tester(None);
        for chunk in BUFFER.chunks(packet_size) {
            p.borrow_mut().feed(chunk);
        }
        assert_eq!(
            p.borrow().received,
            buffer_output(),
            "packet size {packet_size}"
        );
    }
}

const PAUSE_BUF: &[u8] = b"twiddle1\ntwiddle2\npause\ntwiddle3\n";

#[test]
fn test_pausing() {
    for packet_size in 1..10 {
        let clock = Clock::new();
        let (p, tr) = line_tester(Some(clock.clone()));
        for chunk in PAUSE_BUF.chunks(packet_size) {
            p.borrow_mut().feed(chunk);
        }
        let expect1: Vec<Vec<u8>> = vec![
            b"twiddle1".to_vec(),
            b"twiddle2".to_vec(),
            b"pause".to_vec(),
        ];
        assert_eq!(p.borrow().received, expect1);
        assert_eq!(tr.producer_state(), "paused");
        clock.advance(Duration::ZERO);
        let mut expect2 = expect1;
        expect2.push(b"twiddle3".to_vec());
        assert_eq!(p.borrow().received, expect2);
        assert_eq!(tr.producer_state(), "producing");
    }
}

const RAWPAUSE_BUF: &[u8] = b"twiddle1\ntwiddle2\nlen 5\nrawpause\n12345twiddle3\n";

#[test]
fn test_raw_pausing() {
    for packet_size in 1..10 {
        let clock = Clock::new();
        let (p, _tr) = line_tester(Some(clock.clone()));
        for chunk in RAWPAUSE_BUF.chunks(packet_size) {
            p.borrow_mut().feed(chunk);
        }
        let expect1: Vec<Vec<u8>> = [&b"twiddle1"[..], b"twiddle2", b"len 5", b"rawpause", b""]
            .iter()
            .map(|s| s.to_vec())
            .collect();
        assert_eq!(p.borrow().received, expect1);
        clock.advance(Duration::ZERO);
        let mut expect2 = expect1;
        expect2[4] = b"12345".to_vec();
        expect2.push(b"twiddle3".to_vec());
        assert_eq!(p.borrow().received, expect2);
    }
}

#[test]
fn test_stop_producing() {
    let stop_buf = b"twiddle1\ntwiddle2\nstop\nmore\nstuff\n";
    for packet_size in 1..10 {
        let (p, tr) = line_tester(None);
        for chunk in stop_buf.chunks(packet_size) {
            p.borrow_mut().feed(chunk);
        }
        assert!(tr.disconnecting(), "stop_producing loses the connection");
        assert_eq!(
            p.borrow().received,
            vec![b"twiddle1".to_vec(), b"twiddle2".to_vec(), b"stop".to_vec()]
        );
    }
}

#[test]
fn test_line_receiver_as_producer_pauses_transport() {
    let (p, tr) = line_tester(Some(Clock::new()));
    p.borrow_mut().feed(b"pause\n");
    assert_eq!(tr.producer_state(), "paused");
    assert!(p.borrow().lines.paused());
}

#[test]
fn test_clear_line_buffer() {
    struct ClearOnFirst {
        lines: LineBuffer,
        got: Vec<Vec<u8>>,
        rest: Vec<u8>,
    }
    impl LineReceiver for ClearOnFirst {
        fn line_state(&mut self) -> &mut LineBuffer {
            &mut self.lines
        }
        fn line_received(&mut self, line: &[u8]) {
            self.got.push(line.to_vec());
            self.rest = self.clear_line_buffer();
        }
    }
    let mut p = ClearOnFirst {
        lines: LineBuffer::new(),
        got: vec![],
        rest: vec![],
    };
    p.feed(b"foo\r\nbar\r\nbaz");
    assert_eq!(p.got, vec![b"foo".to_vec()]);
    assert_eq!(p.rest, b"bar\r\nbaz");
    assert!(p.lines.pending().is_empty());
}

#[test]
fn test_send_line() {
    let tr = StringTransport::new();
    let (p, _) = line_tester(None);
    p.borrow_mut().lines.attach(&tr.transport());
    p.borrow_mut().send_line(b"hello");
    assert_eq!(tr.value(), b"hello\n");
}

/// Twisted's `test_stackRecursion`: switching modes on every line of a 100,000-line buffer
/// delivered at once never recurses.
#[test]
fn test_stack_recursion() {
    struct Flip {
        lines: LineBuffer,
        count: usize,
    }
    impl LineReceiver for Flip {
        fn line_state(&mut self) -> &mut LineBuffer {
            &mut self.lines
        }
        fn line_received(&mut self, _line: &[u8]) {
            self.count += 1;
            self.set_raw_mode();
        }
        fn raw_data_received(&mut self, data: &[u8]) {
            let data = data.to_vec();
            self.set_line_mode(&data);
        }
    }
    let run = || {
        let mut p = Flip {
            lines: LineBuffer::with_delimiter(b"\n"),
            count: 0,
        };
        p.feed(&b"x\n".repeat(100_000));
        p.count
    };
    assert_eq!(run(), 100_000);
    let on_small_stack = std::thread::Builder::new()
        .stack_size(256 * 1024)
        .spawn(run)
        .unwrap()
        .join()
        .unwrap();
    assert_eq!(on_small_stack, 100_000);
}

fn max_line_tester() -> (Rc<RefCell<LineTester>>, StringTransport) {
    let (p, tr) = line_tester(None);
    p.borrow_mut().lines.delimiter = b"\r\n".to_vec();
    (p, tr)
}

/// Default `line_length_exceeded` for the MAX_LENGTH tests: the LineTester overrides it.
struct Plain {
    lines: LineBuffer,
    received: Vec<Vec<u8>>,
    long_lines: Vec<Vec<u8>>,
    record_long: bool,
}

impl LineReceiver for Plain {
    fn line_state(&mut self) -> &mut LineBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        self.received.push(line.to_vec());
    }
    fn line_length_exceeded(&mut self, line: &[u8]) {
        if self.record_long {
            self.long_lines.push(line.to_vec());
        } else {
            self.lines.transport().lose_connection();
        }
    }
}

fn plain(record_long: bool) -> (Plain, StringTransport) {
    let tr = StringTransport::new();
    let mut lines = LineBuffer::new();
    lines.max_length = 64;
    lines.attach(&tr.transport());
    (
        Plain {
            lines,
            received: vec![],
            long_lines: vec![],
            record_long,
        },
        tr,
    )
}

#[test]
fn test_maximum_line_length() {
    let (mut p, tr) = plain(false);
    p.feed(&[&b"x".repeat(65)[..], b"\r\nr"].concat());
    assert!(tr.disconnecting());
    assert!(p.received.is_empty());
    let _ = max_line_tester();
}

#[test]
fn test_maximum_line_length_partial_delimiter() {
    // A line of exactly MAX_LENGTH whose delimiter arrives in two pieces is a line.
    let (mut p, tr) = plain(false);
    p.feed(&b"x".repeat(64));
    p.feed(b"\r");
    assert!(!tr.disconnecting());
    p.feed(b"\n");
    assert!(!tr.disconnecting());
    assert_eq!(p.received, vec![b"x".repeat(64)]);
}

#[test]
fn test_not_quite_maximum_line_length_unfinished() {
    let (mut p, tr) = plain(false);
    p.feed(&[&b"x".repeat(64)[..], b"\r"].concat());
    assert!(!tr.disconnecting());
}

#[test]
fn test_maximum_line_length_remaining() {
    // `line_length_exceeded` gets the over-long line and everything after it.
    let (mut p, _tr) = plain(true);
    let data = [&b"x".repeat(65)[..], b"\r\nrest\r\n"].concat();
    p.feed(&data);
    assert_eq!(p.long_lines, vec![data]);
    assert!(p.received.is_empty());
}

#[test]
fn test_long_line_with_delimiter() {
    let (mut p, _tr) = plain(true);
    let x = b"x".repeat(64 * 2 + 2);
    let excessive = [&x[..], b"\r\n", &x[..]].concat();
    p.feed(&excessive);
    assert_eq!(p.long_lines, vec![excessive]);
}

#[test]
fn test_long_unended_line() {
    let (mut p, _tr) = plain(true);
    let excessive = b"x".repeat(64 * 2 + 2);
    p.feed(&excessive);
    assert_eq!(p.long_lines, vec![excessive]);
}

#[test]
fn test_unended_line_at_max_plus_delimiter_length() {
    // MAX_LENGTH + len(delimiter) bytes without a delimiter can no longer become a line.
    let (mut p, _tr) = plain(true);
    p.feed(&b"x".repeat(65));
    assert!(p.long_lines.is_empty());
    p.feed(b"x");
    assert_eq!(p.long_lines, vec![b"x".repeat(66)]);
}

#[test]
fn test_line_exactly_max_length_accepted() {
    let (mut p, tr) = plain(false);
    p.feed(&[&b"x".repeat(64)[..], b"\r\n"].concat());
    assert_eq!(p.received.len(), 1);
    assert!(!tr.disconnecting());
}

#[test]
fn test_no_lines_after_lose_connection() {
    struct Quit {
        lines: LineBuffer,
        got: usize,
    }
    impl LineReceiver for Quit {
        fn line_state(&mut self) -> &mut LineBuffer {
            &mut self.lines
        }
        fn line_received(&mut self, _line: &[u8]) {
            self.got += 1;
            self.lines.transport().lose_connection();
        }
    }
    let tr = StringTransport::new();
    let mut p = Quit {
        lines: LineBuffer::new(),
        got: 0,
    };
    p.lines.attach(&tr.transport());
    p.feed(b"a\r\nb\r\nc\r\n");
    assert_eq!(p.got, 1);
}

#[test]
fn test_raw_mode_delivers_rest_of_buffer() {
    struct Raw {
        lines: LineBuffer,
        line: Vec<u8>,
        raw: Vec<u8>,
    }
    impl LineReceiver for Raw {
        fn line_state(&mut self) -> &mut LineBuffer {
            &mut self.lines
        }
        fn line_received(&mut self, line: &[u8]) {
            self.line = line.to_vec();
            self.set_raw_mode();
        }
        fn raw_data_received(&mut self, data: &[u8]) {
            self.raw.extend_from_slice(data);
        }
    }
    let mut p = Raw {
        lines: LineBuffer::new(),
        line: vec![],
        raw: vec![],
    };
    p.feed(b"header\r\nbody\r\nmore");
    p.feed(b" and more");
    assert_eq!(p.line, b"header");
    assert_eq!(p.raw, b"body\r\nmore and more");
    assert!(!p.lines.line_mode());
}

/// A line fed one byte at a time is scanned once, not once per byte (the search resumes
/// where it stopped): 1 MiB costs a few MiB of comparisons, not half a tebibyte.
#[test]
fn test_long_line_fed_bytewise_is_scanned_linearly() {
    let (mut p, tr) = plain(true);
    let n = 1 << 20;
    p.lines.max_length = 2 * n;
    let line = b"y".repeat(n);
    for b in line.chunks(1) {
        p.feed(b);
    }
    p.feed(b"\r");
    p.feed(b"\nnext");
    assert_eq!(p.received, vec![line]);
    assert_eq!(p.lines.pending(), b"next");
    let scanned = p.lines.scanned();
    assert!(
        scanned <= 3 * n as u64,
        "scanned {scanned} bytes for a {n}-byte line"
    );
    assert!(!tr.disconnecting());
}

/// Many lines in one read are each scanned once too.
#[test]
fn test_many_lines_in_one_feed_are_scanned_linearly() {
    let (mut p, _tr) = plain(true);
    let wire = b"ab\r\n".repeat(10_000);
    p.feed(&wire);
    assert_eq!(p.received.len(), 10_000);
    assert!(p.lines.scanned() <= wire.len() as u64);
}

#[test]
fn test_delimiter_split_across_feeds() {
    for delimiter in [&b"\r\n"[..], b"\r\n\r\n", b"\n"] {
        let (mut p, _tr) = plain(true);
        p.lines.delimiter = delimiter.to_vec();
        let wire = [&b"one"[..], delimiter, b"two", delimiter, b"thr"].concat();
        for b in wire.chunks(1) {
            p.feed(b);
        }
        assert_eq!(p.received, vec![b"one".to_vec(), b"two".to_vec()]);
        assert_eq!(p.lines.pending(), b"thr");
    }
}

/// A delimiter changed while a partial line is buffered is searched for from the start of
/// that line, including the bytes already searched for the old delimiter.
#[test]
fn test_delimiter_change_with_buffered_data() {
    let (mut p, _tr) = plain(true);
    p.feed(b"abc\ndef");
    assert!(p.received.is_empty());
    p.lines.delimiter = b"\n".to_vec();
    p.feed(b"");
    p.feed(b"x");
    assert_eq!(p.received, vec![b"abc".to_vec()]);
    assert_eq!(p.lines.pending(), b"defx");
    p.lines.delimiter = b"ef".to_vec();
    p.feed(b"!");
    assert_eq!(p.received, vec![b"abc".to_vec(), b"d".to_vec()]);
    assert_eq!(p.lines.pending(), b"x!");
}

/// A delimiter changed from `line_received` applies to the rest of the same buffer.
#[test]
fn test_delimiter_change_mid_buffer() {
    struct Switch {
        lines: LineBuffer,
        received: Vec<Vec<u8>>,
    }
    impl LineReceiver for Switch {
        fn line_state(&mut self) -> &mut LineBuffer {
            &mut self.lines
        }
        fn line_received(&mut self, line: &[u8]) {
            self.received.push(line.to_vec());
            self.lines.delimiter = b";".to_vec();
        }
    }
    let mut p = Switch {
        lines: LineBuffer::new(),
        received: vec![],
    };
    p.feed(b"first\r\na;b\r\n");
    p.feed(b"c;");
    assert_eq!(
        p.received,
        vec![b"first".to_vec(), b"a".to_vec(), b"b\r\nc".to_vec()]
    );
}

/// The raw-mode switch drops the search position with the buffer: line mode again searches
/// the re-fed bytes from their start.
#[test]
fn test_raw_mode_round_trip_resets_the_search() {
    let (mut p, _tr) = plain(true);
    p.feed(b"partial line without end");
    p.set_raw_mode();
    p.feed(b"");
    p.set_line_mode(b"a\r\nb");
    assert_eq!(p.received, vec![b"a".to_vec()]);
    assert_eq!(p.lines.pending(), b"b");
    let _ = p.clear_line_buffer();
    p.feed(b"c\r\n");
    assert_eq!(p.received, vec![b"a".to_vec(), b"c".to_vec()]);
}

/// The length limit is still noticed when an unended line arrives byte by byte.
#[test]
fn test_max_length_exceeded_while_streaming() {
    let (mut p, _tr) = plain(true);
    for _ in 0..64 + 1 {
        p.feed(b"z");
    }
    assert!(
        p.long_lines.is_empty(),
        "64 + 1 bytes may still end with \\r\\n"
    );
    p.feed(b"z");
    assert_eq!(p.long_lines, vec![b"z".repeat(66)]);
    assert!(p.lines.pending().is_empty());
    p.feed(b"ok\r\n");
    assert_eq!(p.received, vec![b"ok".to_vec()]);
}

// ---------------------------------------------------------------------------------------
// LineOnlyReceiver

struct LineOnlyTester {
    lines: LineOnlyBuffer,
    received: Vec<Vec<u8>>,
}

impl LineOnlyReceiver for LineOnlyTester {
    fn line_only_state(&mut self) -> &mut LineOnlyBuffer {
        &mut self.lines
    }
    fn line_received(&mut self, line: &[u8]) {
        self.received.push(line.to_vec());
    }
}

fn line_only_tester() -> (LineOnlyTester, StringTransport) {
    let tr = StringTransport::new();
    let mut lines = LineOnlyBuffer::default();
    lines.delimiter = b"\n".to_vec();
    lines.max_length = 64;
    lines.attach(&tr.transport());
    (
        LineOnlyTester {
            lines,
            received: vec![],
        },
        tr,
    )
}

#[test]
fn test_line_only_buffer() {
    let buffer = b"foo\nbleakness\ndesolation\nfoo\nfiddle\n";
    for packet_size in 1..10 {
        let (mut p, _tr) = line_only_tester();
        for chunk in buffer.chunks(packet_size) {
            p.feed(chunk);
        }
        let want: Vec<Vec<u8>> = [&b"foo"[..], b"bleakness", b"desolation", b"foo", b"fiddle"]
            .iter()
            .map(|s| s.to_vec())
            .collect();
        assert_eq!(p.received, want);
    }
}

#[test]
fn test_line_only_too_long_buffered() {
    let (mut p, tr) = line_only_tester();
    p.feed(&b"x".repeat(64));
    assert!(!tr.disconnecting());
    p.feed(b"x");
    assert!(tr.disconnecting());
}

#[test]
fn test_line_only_greater_than_maximum_line_length() {
    let (mut p, tr) = line_only_tester();
    p.feed(&[&b"x".repeat(64 + 1 + 1)[..], b"\nr"].concat());
    assert!(tr.disconnecting());
    assert!(p.received.is_empty());
}

#[test]
fn test_line_only_maximum_line_length_accepted() {
    let (mut p, tr) = line_only_tester();
    p.feed(&[&b"x".repeat(64)[..], b"\n"].concat());
    assert!(!tr.disconnecting());
    assert_eq!(p.received, vec![b"x".repeat(64)]);
}

#[test]
fn test_line_only_long_line_fed_bytewise_is_scanned_linearly() {
    let (mut p, tr) = line_only_tester();
    let n = 1 << 20;
    p.lines.max_length = 2 * n;
    let line = b"y".repeat(n);
    for b in line.chunks(1) {
        p.feed(b);
    }
    p.feed(b"\n");
    assert_eq!(p.received, vec![line]);
    let scanned = p.lines.scanned();
    assert!(
        scanned <= 3 * n as u64,
        "scanned {scanned} bytes for a {n}-byte line"
    );
    assert!(!tr.disconnecting());
}

#[test]
fn test_line_only_delimiter_split_and_changed() {
    let (mut p, _tr) = line_only_tester();
    p.lines.delimiter = b"\r\n".to_vec();
    for b in b"one\r\ntwo\nthree".chunks(1) {
        p.feed(b);
    }
    assert_eq!(p.received, vec![b"one".to_vec()]);
    p.lines.delimiter = b"\n".to_vec();
    p.feed(b"");
    assert_eq!(p.received, vec![b"one".to_vec(), b"two".to_vec()]);
}

#[test]
fn test_line_only_send_line() {
    let (mut p, tr) = line_only_tester();
    p.send_line(b"hi");
    assert_eq!(tr.value(), b"hi\n");
}

// ---------------------------------------------------------------------------------------
// Int8/16/32StringReceiver

struct IntTester {
    frames: IntNBuffer,
    received: Vec<Vec<u8>>,
    limit: Option<usize>,
}

impl IntNStringReceiver for IntTester {
    fn int_n_state(&mut self) -> &mut IntNBuffer {
        &mut self.frames
    }
    fn string_received(&mut self, s: &[u8]) {
        self.received.push(s.to_vec());
    }
    fn length_limit_exceeded(&mut self, length: usize) {
        self.limit = Some(length);
        self.frames.transport().lose_connection();
    }
}

fn int_tester(frames: IntNBuffer) -> (IntTester, StringTransport) {
    let tr = StringTransport::new();
    let mut frames = frames;
    frames.attach(&tr.transport());
    (
        IntTester {
            frames,
            received: vec![],
            limit: None,
        },
        tr,
    )
}

fn all_widths() -> [IntNBuffer; 3] {
    [IntNBuffer::int8(), IntNBuffer::int16(), IntNBuffer::int32()]
}

#[test]
fn test_int_n_receive() {
    for frames in all_widths() {
        let strings: Vec<Vec<u8>> = vec![
            b"hello".to_vec(),
            b"world".to_vec(),
            vec![],
            b"x".repeat(200),
        ];
        let wire: Vec<u8> = strings
            .iter()
            .flat_map(|s| frames.encode(s).unwrap())
            .collect();
        for packet_size in 1..10 {
            let (mut p, _tr) = int_tester(frames.clone());
            for chunk in wire.chunks(packet_size) {
                p.feed(chunk);
            }
            assert_eq!(p.received, strings, "prefix {}", frames.prefix_length());
        }
    }
}

#[test]
fn test_int_n_partial() {
    // Prefix and payload split at every point deliver nothing until complete.
    for frames in all_widths() {
        let wire = frames.encode(b"abcd").unwrap();
        for cut in 0..wire.len() {
            let (mut p, _tr) = int_tester(frames.clone());
            p.feed(&wire[..cut]);
            assert!(p.received.is_empty());
            p.feed(&wire[cut..]);
            assert_eq!(p.received, vec![b"abcd".to_vec()]);
        }
    }
}

#[test]
fn test_int_n_send() {
    for frames in all_widths() {
        let (mut p, tr) = int_tester(frames.clone());
        p.send_string(b"b").unwrap();
        let mut want = vec![0u8; frames.prefix_length() - 1];
        want.extend_from_slice(&[1, b'b']);
        assert_eq!(tr.value(), want);
    }
}

#[test]
fn test_int_n_length_limit_exceeded() {
    for frames in all_widths() {
        let (mut p, tr) = int_tester(frames.clone());
        p.frames.max_length = 10;
        p.feed(&frames.encode(&[b'x'; 11]).unwrap());
        assert_eq!(p.limit, Some(11));
        assert!(tr.disconnecting());
        assert!(p.received.is_empty());
    }
}

#[test]
fn test_int_n_longer_than_max_length_closes_by_default() {
    struct Default32 {
        frames: IntNBuffer,
    }
    impl IntNStringReceiver for Default32 {
        fn int_n_state(&mut self) -> &mut IntNBuffer {
            &mut self.frames
        }
        fn string_received(&mut self, _s: &[u8]) {
            panic!("nothing should be delivered");
        }
    }
    let tr = StringTransport::new();
    let mut p = Default32 {
        frames: IntNBuffer::int32(),
    };
    p.frames.attach(&tr.transport());
    p.feed(&(INT_N_MAX_LENGTH as u32 + 1).to_be_bytes());
    assert!(tr.disconnecting());
}

#[test]
fn test_int_n_string_too_long() {
    let (mut p8, tr8) = int_tester(IntNBuffer::int8());
    assert_eq!(
        p8.send_string(&[0u8; 256]),
        Err(StringTooLongError {
            len: 256,
            prefix: 1
        })
    );
    assert!(tr8.value().is_empty());
    assert!(p8.send_string(&[0u8; 255]).is_ok());
    let (mut p16, _tr) = int_tester(IntNBuffer::int16());
    assert!(p16.send_string(&vec![0u8; 65536]).is_err());
    assert!(p16.send_string(&vec![0u8; 65535]).is_ok());
}

#[test]
fn test_int_n_pause_and_resume() {
    struct Pauser {
        frames: IntNBuffer,
        received: Vec<Vec<u8>>,
    }
    impl IntNStringReceiver for Pauser {
        fn int_n_state(&mut self) -> &mut IntNBuffer {
            &mut self.frames
        }
        fn string_received(&mut self, s: &[u8]) {
            self.received.push(s.to_vec());
            if s == b"pause" {
                self.pause_producing();
            }
        }
    }
    let tr = StringTransport::new();
    let mut p = Pauser {
        frames: IntNBuffer::int16(),
        received: vec![],
    };
    p.frames.attach(&tr.transport());
    let wire: Vec<u8> = [&b"a"[..], b"pause", b"b", b"c"]
        .iter()
        .flat_map(|s| p.frames.encode(s).unwrap())
        .collect();
    p.feed(&wire);
    assert_eq!(p.received, vec![b"a".to_vec(), b"pause".to_vec()]);
    assert_eq!(tr.producer_state(), "paused");
    p.resume_producing();
    assert_eq!(p.received.len(), 4);
    assert_eq!(tr.producer_state(), "producing");
}

// ---------------------------------------------------------------------------------------
// NetstringReceiver

struct NetTester {
    ns: NetstringBuffer,
    received: Vec<Vec<u8>>,
    errors: Vec<NetstringParseError>,
}

impl NetstringReceiver for NetTester {
    fn netstring_state(&mut self) -> &mut NetstringBuffer {
        &mut self.ns
    }
    fn string_received(&mut self, s: &[u8]) {
        self.received.push(s.to_vec());
    }
    fn netstring_parse_error(&mut self, error: &NetstringParseError) {
        self.errors.push(error.clone());
        self.ns.transport().lose_connection();
    }
}

fn net_tester(max: usize) -> (NetTester, StringTransport) {
    let tr = StringTransport::new();
    let mut ns = NetstringBuffer::default();
    ns.max_length = max;
    ns.attach(&tr.transport());
    (
        NetTester {
            ns,
            received: vec![],
            errors: vec![],
        },
        tr,
    )
}

fn feed_net(data: &[u8]) -> (NetTester, StringTransport) {
    let (mut p, tr) = net_tester(50);
    p.feed(data);
    (p, tr)
}

#[test]
fn test_netstring_buffer() {
    let strings: Vec<Vec<u8>> = vec![
        b"hello".to_vec(),
        b"world".to_vec(),
        b"how".to_vec(),
        b"are".to_vec(),
        b"you123".to_vec(),
        b":today".to_vec(),
        b"a".repeat(50),
    ];
    let wire: Vec<u8> = strings
        .iter()
        .flat_map(|s| NetstringBuffer::encode(s))
        .collect();
    for packet_size in 1..10 {
        let (mut p, tr) = net_tester(50);
        for chunk in wire.chunks(packet_size) {
            p.feed(chunk);
        }
        assert_eq!(p.received, strings);
        assert!(!tr.disconnecting());
    }
}

#[test]
fn test_netstring_send() {
    let (mut p, tr) = net_tester(50);
    p.send_string(b"foo");
    assert_eq!(tr.value(), b"3:foo,");
}

#[test]
fn test_netstring_illegal() {
    let long = [&b"51:"[..], &b"a".repeat(51), b","].concat();
    for bad in [&b"9999999999999999999999"[..], b"abc", b"4:abcde", &long] {
        let (p, tr) = feed_net(bad);
        assert!(tr.disconnecting(), "{:?}", String::from_utf8_lossy(bad));
        assert!(p.received.is_empty());
        assert!(p.ns.broken_peer().is_some());
    }
}

#[test]
fn test_receive_empty_netstring() {
    let (p, _) = feed_net(b"0:,");
    assert_eq!(p.received, vec![Vec::<u8>::new()]);
}

#[test]
fn test_receive_one_character() {
    let (p, _) = feed_net(b"1:a,");
    assert_eq!(p.received, vec![b"a".to_vec()]);
}

#[test]
fn test_receive_two_characters() {
    let (p, _) = feed_net(b"2:ab,");
    assert_eq!(p.received, vec![b"ab".to_vec()]);
}

#[test]
fn test_receive_nested_netstring() {
    let (p, _) = feed_net(b"4:1:a,,");
    assert_eq!(p.received, vec![b"1:a,".to_vec()]);
}

#[test]
fn test_more_data_than_specified() {
    let (p, tr) = feed_net(b"2:aaa,");
    assert!(tr.disconnecting());
    assert_eq!(p.errors, vec![NetstringParseError::MissingComma]);
}

#[test]
fn test_more_data_than_specified_border_case() {
    let (p, tr) = feed_net(b"0:a,");
    assert!(tr.disconnecting());
    assert_eq!(p.errors, vec![NetstringParseError::MissingComma]);
}

#[test]
fn test_missing_number() {
    let (p, tr) = feed_net(b":aaa,");
    assert!(tr.disconnecting());
    assert_eq!(p.errors, vec![NetstringParseError::EmptyLength]);
}

#[test]
fn test_missing_colon() {
    let (p, tr) = feed_net(b"3aaa,");
    assert!(tr.disconnecting());
    assert_eq!(p.errors, vec![NetstringParseError::NotADigit('a')]);
}

#[test]
fn test_missing_number_and_colon() {
    let (p, tr) = feed_net(b"aaa,");
    assert!(tr.disconnecting());
    assert_eq!(p.errors, vec![NetstringParseError::NotADigit('a')]);
}

#[test]
fn test_only_data() {
    let (p, tr) = feed_net(b"aaa");
    assert!(tr.disconnecting());
    assert!(p.received.is_empty());
}

#[test]
fn test_leading_zero() {
    let (p, tr) = feed_net(b"01:a,");
    assert!(tr.disconnecting());
    assert_eq!(p.errors, vec![NetstringParseError::LeadingZero]);
}

#[test]
fn test_length_without_colon_past_max_digits() {
    let (p, tr) = feed_net(b"123");
    assert!(tr.disconnecting());
    assert_eq!(p.errors, vec![NetstringParseError::MissingColon]);
}

#[test]
fn test_receive_netstring_portions_1() {
    let (mut p, _) = net_tester(50);
    for part in [&b"4:aa"[..], b"aa,"] {
        p.feed(part);
    }
    assert_eq!(p.received, vec![b"aaaa".to_vec()]);
}

#[test]
fn test_receive_netstring_portions_2() {
    let (mut p, _) = net_tester(50);
    for part in [&b"1"[..], b"0:01234", b"56789", b","] {
        p.feed(part);
    }
    assert_eq!(p.received, vec![b"0123456789".to_vec()]);
}

#[test]
fn test_receive_netstring_portions_3() {
    let (mut p, _) = net_tester(50);
    for part in b"2:ab,".chunks(1) {
        p.feed(part);
    }
    assert_eq!(p.received, vec![b"ab".to_vec()]);
}

#[test]
fn test_receive_two_netstrings() {
    let (mut p, _) = net_tester(50);
    p.feed(b"1:a,1");
    assert_eq!(p.received, vec![b"a".to_vec()]);
    p.feed(b":b,");
    assert_eq!(p.received, vec![b"a".to_vec(), b"b".to_vec()]);
}

#[test]
fn test_max_receive_limit() {
    let (mut p, tr) = net_tester(10);
    p.feed(b"11:aaaaaaaaaaa,");
    assert!(tr.disconnecting());
    assert_eq!(p.errors, vec![NetstringParseError::TooLong(11)]);
}

#[test]
fn test_consume_length_border_cases() {
    // The length field of a maximal netstring is accepted; one more digit is not.
    let (mut p, tr) = net_tester(12);
    p.feed(b"12:");
    assert!(!tr.disconnecting());
    let (mut p, tr) = net_tester(12);
    p.feed(b"1234:");
    assert!(tr.disconnecting());
    assert!(!p.errors.is_empty());
    let (mut p, tr) = net_tester(1);
    p.feed(b"2:");
    assert!(tr.disconnecting());
    assert_eq!(p.errors, vec![NetstringParseError::TooLong(2)]);
}

/// Many netstrings in one read: the buffer is compacted once per `feed`, not moved once per
/// netstring (which is quadratic in the netstrings of the read).
#[test]
fn test_many_netstrings_in_one_feed_move_the_buffer_once() {
    let wire = b"1:a,".repeat(50_000);
    let (mut p, tr) = net_tester(NETSTRING_MAX_LENGTH);
    p.feed(&wire[..wire.len() - 1]);
    p.feed(b",");
    assert_eq!(p.received.len(), 50_000);
    assert!(p.ns.shifted() <= 4, "moved {} bytes", p.ns.shifted());
    // A long payload in pieces is moved at most once as well.
    let long = NetstringBuffer::encode(&b"z".repeat(60_000));
    for piece in long.chunks(7) {
        p.feed(piece);
    }
    assert_eq!(p.received.last().map(Vec::len), Some(60_000));
    assert!(p.ns.shifted() <= 4 + long.len() as u64);
    assert!(!tr.disconnecting());
}

#[test]
fn test_nothing_delivered_after_parse_error() {
    let (mut p, _) = net_tester(50);
    p.feed(b"x");
    p.feed(b"1:a,");
    assert!(p.received.is_empty());
    assert_eq!(p.errors.len(), 1);
}

// ---------------------------------------------------------------------------------------
// Chunking properties: any message list, split anywhere, arrives as the same messages; an
// oversize frame always closes the connection.

fn chunked(wire: &[u8], cuts: &[usize]) -> Vec<Vec<u8>> {
    let mut points: Vec<usize> = cuts.iter().map(|c| c % (wire.len() + 1)).collect();
    points.push(0);
    points.push(wire.len());
    points.sort_unstable();
    points.dedup();
    points
        .windows(2)
        .map(|w| wire[w[0]..w[1]].to_vec())
        .collect()
}

fn line_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    // Lines without '\r' or '\n', up to MAX_LENGTH (64 here).
    prop::collection::vec(
        prop::collection::vec(
            any::<u8>().prop_filter("no delimiter bytes", |b| *b != b'\r' && *b != b'\n'),
            0..=64,
        ),
        0..20,
    )
}

fn frame_strategy() -> impl Strategy<Value = Vec<Vec<u8>>> {
    prop::collection::vec(prop::collection::vec(any::<u8>(), 0..=64), 0..20)
}

fn cuts() -> impl Strategy<Value = Vec<usize>> {
    prop::collection::vec(any::<usize>(), 0..40)
}

proptest! {
    #[test]
    fn prop_line_receiver_any_chunking(lines in line_strategy(), cuts in cuts()) {
        let (mut p, tr) = plain(false);
        let wire: Vec<u8> = lines.iter().flat_map(|l| [&l[..], b"\r\n"].concat()).collect();
        for chunk in chunked(&wire, &cuts) {
            p.feed(&chunk);
        }
        prop_assert_eq!(p.received, lines);
        prop_assert!(!tr.disconnecting());
    }

    #[test]
    fn prop_line_receiver_oversize_closes(before in line_strategy(), extra in 1usize..100, cuts in cuts()) {
        let (mut p, tr) = plain(false);
        let mut wire: Vec<u8> = before.iter().flat_map(|l| [&l[..], b"\r\n"].concat()).collect();
        wire.extend(std::iter::repeat_n(b'x', 64 + extra));
        wire.extend_from_slice(b"\r\nafter\r\n");
        for chunk in chunked(&wire, &cuts) {
            p.feed(&chunk);
        }
        prop_assert!(tr.disconnecting());
        prop_assert_eq!(p.received, before);
    }

    #[test]
    fn prop_line_only_any_chunking(lines in line_strategy(), cuts in cuts()) {
        let (mut p, tr) = line_only_tester();
        p.lines.delimiter = b"\r\n".to_vec();
        let wire: Vec<u8> = lines.iter().flat_map(|l| [&l[..], b"\r\n"].concat()).collect();
        for chunk in chunked(&wire, &cuts) {
            p.feed(&chunk);
        }
        prop_assert_eq!(p.received, lines);
        prop_assert!(!tr.disconnecting());
    }

    #[test]
    fn prop_line_only_oversize_closes(before in line_strategy(), extra in 1usize..100, cuts in cuts()) {
        let (mut p, tr) = line_only_tester();
        p.lines.delimiter = b"\r\n".to_vec();
        let mut wire: Vec<u8> = before.iter().flat_map(|l| [&l[..], b"\r\n"].concat()).collect();
        wire.extend(std::iter::repeat_n(b'x', 64 + extra));
        wire.extend_from_slice(b"\r\nafter\r\n");
        for chunk in chunked(&wire, &cuts) {
            p.feed(&chunk);
        }
        prop_assert!(tr.disconnecting());
        prop_assert_eq!(p.received, before);
    }

    #[test]
    fn prop_int_n_any_chunking(frames in frame_strategy(), width in 0usize..3, cuts in cuts()) {
        let (mut p, tr) = int_tester(all_widths()[width].clone());
        let wire: Vec<u8> = frames.iter().flat_map(|f| p.frames.encode(f).unwrap()).collect();
        for chunk in chunked(&wire, &cuts) {
            p.feed(&chunk);
        }
        prop_assert_eq!(p.received, frames);
        prop_assert!(!tr.disconnecting());
    }

    #[test]
    fn prop_int_n_oversize_closes(frames in frame_strategy(), width in 0usize..3, extra in 1usize..100, cuts in cuts()) {
        let (mut p, tr) = int_tester(all_widths()[width].clone());
        p.frames.max_length = 64;
        let mut wire: Vec<u8> = frames.iter().flat_map(|f| p.frames.encode(f).unwrap()).collect();
        wire.extend(p.frames.encode(&vec![b'x'; 64 + extra]).unwrap());
        wire.extend(p.frames.encode(b"after").unwrap());
        for chunk in chunked(&wire, &cuts) {
            p.feed(&chunk);
        }
        prop_assert!(tr.disconnecting());
        prop_assert_eq!(p.received, frames);
    }

    #[test]
    fn prop_netstring_any_chunking(frames in frame_strategy(), cuts in cuts()) {
        let (mut p, tr) = net_tester(64);
        let wire: Vec<u8> = frames.iter().flat_map(|f| NetstringBuffer::encode(f)).collect();
        for chunk in chunked(&wire, &cuts) {
            p.feed(&chunk);
        }
        prop_assert_eq!(p.received, frames);
        prop_assert!(!tr.disconnecting());
    }

    #[test]
    fn prop_netstring_oversize_closes(frames in frame_strategy(), extra in 1usize..100, cuts in cuts()) {
        let (mut p, tr) = net_tester(64);
        let mut wire: Vec<u8> = frames.iter().flat_map(|f| NetstringBuffer::encode(f)).collect();
        wire.extend(NetstringBuffer::encode(&vec![b'x'; 64 + extra]));
        wire.extend(NetstringBuffer::encode(b"after"));
        for chunk in chunked(&wire, &cuts) {
            p.feed(&chunk);
        }
        prop_assert!(tr.disconnecting());
        prop_assert_eq!(p.received, frames);
    }
}
