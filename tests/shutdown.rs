//! Graceful shutdown, end to end: usher as PID 1 of a fresh PID namespace
//! running small /bin/sh apps that trap signals and record, with
//! `date +%s.%N`, when each one arrived.
//!
//! Timing rules, for a noisy 2-core machine:
//! - lower bounds are exact: the test takes its wall-clock reading *before*
//!   it sends a signal, and the app takes its own *after* the signal reached
//!   it, so "no sooner than the drain" is `app_stamp - sent >= drain`;
//! - upper bounds are generous ([`SLACK`], 2s, on top of the expected time)
//!   and measured from when the test saw the record appear or usher exit.
//!
//! Every process is cleaned up by pid: `Running` kills its tree on drop (and
//! as PID 1 usher takes its namespace with it); Plain-mode tests also kill
//! the pids their apps recorded, if still alive, through [`PidGuard`].

mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Slack added to every upper bound.
const SLACK: f64 = 2.0;
/// How long any single wait may take before the test gives up.
const PATIENCE: Duration = Duration::from_secs(15);

// ---------------------------------------------------------------- helpers --

/// Wall-clock seconds since the epoch: comparable with the apps' `date +%s.%N`.
fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// When the test sent a signal: taken just *before* `kill`.
#[derive(Clone, Copy, Debug)]
struct Sent {
    at: Instant,
    epoch: f64,
}

/// Sends `sig` to usher and returns when it was sent.
fn send(r: &Running, sig: i32) -> Sent {
    let pid = r.usher_pid(); // may poll /proc: not part of the timing
    let sent = Sent {
        at: Instant::now(),
        epoch: epoch(),
    };
    // SAFETY: kill has no memory-safety preconditions.
    let ret = unsafe { libc::kill(pid, sig) };
    assert_eq!(ret, 0, "kill usher: {}", std::io::Error::last_os_error());
    sent
}

/// The complete stamps in file `name` (lines `date +%s.%N` finished writing).
fn stamps(s: &Scratch, name: &str) -> Vec<f64> {
    let text = s.read(name);
    let complete = match text.rfind('\n') {
        Some(i) => &text[..i],
        None => "",
    };
    complete
        .lines()
        .filter_map(|l| l.trim().parse::<f64>().ok())
        .collect()
}

/// Waits for the first stamp in `name`; returns it and when the test saw it.
fn wait_stamp(s: &Scratch, name: &str, within: Duration) -> Option<(f64, Instant)> {
    let mut got = None;
    wait_until(within, || {
        got = stamps(s, name).first().copied();
        got.is_some()
    });
    got.map(|t| (t, Instant::now()))
}

/// Waits for the app's `rec ready`, failing the test (with usher's log) if it never comes.
fn wait_ready(s: &Scratch, r: Running, file: &str) -> Running {
    if wait_stamp(s, file, PATIENCE).is_some() {
        return r;
    }
    let f = r.wait(Duration::from_secs(1));
    panic!("the app never wrote {file:?}: {f:?}");
}

/// Seconds between two instants (`b` after `a`).
fn secs(a: Instant, b: Instant) -> f64 {
    b.saturating_duration_since(a).as_secs_f64()
}

/// The pid written in file `name` (by `echo $$ > name`).
fn read_pid(s: &Scratch, name: &str) -> i32 {
    let text = s.read(name);
    text.trim()
        .parse()
        .unwrap_or_else(|_| panic!("{name} holds no pid: {text:?}"))
}

/// Whether `pid` is a live (not zombie) process, from /proc.
fn alive(pid: i32) -> bool {
    match proc_status(pid, "State") {
        Some(state) => !state.starts_with('Z'),
        None => false,
    }
}

/// Pids (of this test's own PID namespace) SIGKILLed on drop if still alive.
struct PidGuard(Vec<i32>);

impl Drop for PidGuard {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if pid > 1 && alive(pid) {
                // SAFETY: kill has no memory-safety preconditions.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
    }
}

/// usher's own lines (text format), skipping anything the app printed.
fn usher_lines(stderr: &str) -> Vec<&str> {
    stderr
        .lines()
        .filter(|l| l.starts_with("usher: "))
        .collect()
}

/// The first usher line containing `needle`.
fn line_with<'a>(stderr: &'a str, needle: &str) -> Option<&'a str> {
    usher_lines(stderr).into_iter().find(|l| l.contains(needle))
}

/// The `+1.234s` time of a text log line.
fn line_t(line: &str) -> Option<f64> {
    let rest = line.strip_prefix("usher: +")?;
    rest.split_once("s ")?.0.parse().ok()
}

/// The comma-separated pids of a `pids=2,5` field.
fn pids_field(line: &str) -> Vec<i32> {
    line.split_whitespace()
        .find_map(|w| w.strip_prefix("pids="))
        .map(|p| p.split(',').filter_map(|n| n.parse().ok()).collect())
        .unwrap_or_default()
}

/// A text log line's (level, event, fields).
type TextLine = (String, String, Vec<(String, String)>);

/// Splits a text log line into its level, event and fields.
fn parse_text(line: &str) -> Option<TextLine> {
    let mut rest = line.strip_prefix("usher: ")?;
    if rest.starts_with('+') {
        rest = rest.split_once(' ')?.1;
    }
    let (level, rest) = rest.split_once(": ")?;
    let (event, fields) = match rest.split_once(": ") {
        Some((e, f)) => (e, f),
        None => (rest, ""),
    };
    let fields = fields
        .split_whitespace()
        .filter_map(|kv| {
            kv.split_once('=')
                .map(|(k, v)| (k.to_string(), v.to_string()))
        })
        .collect();
    Some((level.to_string(), event.to_string(), fields))
}

/// A JSON value of the flat kind usher writes.
#[derive(Debug, PartialEq)]
enum J {
    Str(String),
    Num(f64),
    Arr(Vec<f64>),
}

/// Parses one flat JSON object (strings, numbers, arrays of numbers), strictly:
/// the whole line must be consumed. Keys in order.
fn parse_json_line(line: &str) -> Result<Vec<(String, J)>, String> {
    struct P<'a> {
        s: &'a [u8],
        i: usize,
    }
    impl P<'_> {
        fn peek(&self) -> Option<u8> {
            self.s.get(self.i).copied()
        }
        fn eat(&mut self, c: u8) -> Result<(), String> {
            if self.peek() == Some(c) {
                self.i += 1;
                Ok(())
            } else {
                Err(format!("expected {:?} at {}", c as char, self.i))
            }
        }
        fn string(&mut self) -> Result<String, String> {
            self.eat(b'"')?;
            let mut out = Vec::new();
            loop {
                match self.peek().ok_or("unterminated string")? {
                    b'"' => {
                        self.i += 1;
                        return String::from_utf8(out).map_err(|e| e.to_string());
                    }
                    b'\\' => {
                        self.i += 1;
                        let c = self.peek().ok_or("dangling escape")?;
                        self.i += 1;
                        match c {
                            b'"' | b'\\' | b'/' => out.push(c),
                            b'n' => out.push(b'\n'),
                            b'r' => out.push(b'\r'),
                            b't' => out.push(b'\t'),
                            b'u' => {
                                let hex = self.s.get(self.i..self.i + 4).ok_or("short \\u")?;
                                let hex = std::str::from_utf8(hex).map_err(|e| e.to_string())?;
                                let n = u32::from_str_radix(hex, 16).map_err(|e| e.to_string())?;
                                let ch = char::from_u32(n).ok_or("bad \\u")?;
                                out.extend(ch.to_string().as_bytes());
                                self.i += 4;
                            }
                            _ => return Err(format!("bad escape \\{}", c as char)),
                        }
                    }
                    c if c < 0x20 => return Err("control character in string".into()),
                    c => {
                        out.push(c);
                        self.i += 1;
                    }
                }
            }
        }
        fn number(&mut self) -> Result<f64, String> {
            let start = self.i;
            while matches!(
                self.peek(),
                Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
            ) {
                self.i += 1;
            }
            let text = std::str::from_utf8(&self.s[start..self.i]).map_err(|e| e.to_string())?;
            text.parse()
                .map_err(|_| format!("bad number {text:?} at {start}"))
        }
        fn value(&mut self) -> Result<J, String> {
            match self.peek() {
                Some(b'"') => self.string().map(J::Str),
                Some(b'[') => {
                    self.i += 1;
                    let mut items = Vec::new();
                    if self.peek() == Some(b']') {
                        self.i += 1;
                        return Ok(J::Arr(items));
                    }
                    loop {
                        items.push(self.number()?);
                        match self.peek() {
                            Some(b',') => self.i += 1,
                            Some(b']') => {
                                self.i += 1;
                                return Ok(J::Arr(items));
                            }
                            _ => return Err(format!("bad array at {}", self.i)),
                        }
                    }
                }
                _ => self.number().map(J::Num),
            }
        }
    }
    let mut p = P {
        s: line.as_bytes(),
        i: 0,
    };
    let mut out = Vec::new();
    p.eat(b'{')?;
    loop {
        let key = p.string()?;
        p.eat(b':')?;
        out.push((key, p.value()?));
        match p.peek() {
            Some(b',') => p.i += 1,
            Some(b'}') => {
                p.i += 1;
                break;
            }
            _ => return Err(format!("expected , or }} at {}", p.i)),
        }
    }
    if p.i != p.s.len() {
        return Err(format!("trailing text at {}", p.i));
    }
    Ok(out)
}

/// The value of key `k` in a parsed JSON line.
fn get<'a>(obj: &'a [(String, J)], k: &str) -> Option<&'a J> {
    obj.iter().find(|(key, _)| key == k).map(|(_, v)| v)
}

/// `300ms`, `5s`, `1.500s` as seconds.
fn text_secs(v: &str) -> Option<f64> {
    if let Some(ms) = v.strip_suffix("ms") {
        return ms.parse::<f64>().ok().map(|m| m / 1000.0);
    }
    v.strip_suffix('s')?.parse().ok()
}

/// Whether a text value and a JSON value say the same thing.
fn same_value(text: &str, json: &J) -> bool {
    match json {
        J::Str(s) => s == text,
        J::Num(n) => {
            text.parse::<f64>().map(|t| t == *n).unwrap_or(false)
                || text_secs(text).is_some_and(|t| (t - n).abs() < 1e-6)
        }
        J::Arr(items) => {
            let listed: Vec<f64> = text.split(',').filter_map(|p| p.parse().ok()).collect();
            &listed == items
        }
    }
}

/// Asserts `needles` occur in usher's lines in this order, each on its own line.
fn assert_in_order(stderr: &str, needles: &[impl AsRef<str>]) -> Vec<String> {
    let lines = usher_lines(stderr);
    let mut found = Vec::new();
    let mut from = 0;
    for needle in needles.iter().map(AsRef::as_ref) {
        let at = lines[from..]
            .iter()
            .position(|l| l.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?} after line {from} in:\n{stderr}"));
        found.push(lines[from + at].to_string());
        from += at + 1;
    }
    found
}

// ------------------------------------------------------------------ drain --

#[test]
fn drain_delays_term_while_the_app_keeps_working() {
    if skip_without_namespaces("drain_delays_term_while_the_app_keeps_working") {
        return;
    }
    let s = Scratch::new("drain");
    let a = app(
        &s,
        "app",
        "trap 'rec term; exit 0' TERM\nrec ready\nwhile :; do rec beat; sleep 0.1; done",
    );
    let r = start(Mode::Pid1, &["--drain", "1s", "--", &a]);
    let r = wait_ready(&s, r, "ready");
    let sent = send(&r, libc::SIGTERM);
    let (term, seen) = wait_stamp(&s, "term", PATIENCE).expect("the app never got TERM");
    let f = r.wait(PATIENCE);

    let after = term - sent.epoch;
    assert!(
        after >= 1.0,
        "TERM reached the app {after:.3}s after the stop: before the 1s drain ended\n{}",
        f.stderr
    );
    let seen_after = secs(sent.at, seen);
    assert!(
        seen_after <= 1.0 + SLACK,
        "TERM reached the app only {seen_after:.3}s after the stop\n{}",
        f.stderr
    );

    // Heartbeats kept coming during the drain, up to its end.
    let beats: Vec<f64> = stamps(&s, "beat")
        .into_iter()
        .filter(|&b| b > sent.epoch && b < term)
        .collect();
    assert!(
        beats.len() >= 3,
        "only {} heartbeats during the 1s drain: {beats:?}",
        beats.len()
    );
    assert!(
        beats.iter().any(|&b| b > sent.epoch + 0.5),
        "no heartbeat in the second half of the drain: {beats:?} (stop at {:.3})",
        sent.epoch
    );

    assert_eq!(f.code, Some(0), "{f:?}");
    let fwd = line_with(
        &f.stderr,
        &format!(
            "info: forwarded: signal=SIGTERM to=group:{}",
            first_child_pid()
        ),
    )
    .unwrap_or_else(|| panic!("no forwarded line:\n{}", f.stderr));
    let t = line_t(fwd).expect("forwarded line has a time");
    assert!(
        t >= 1.0,
        "usher says it forwarded at +{t}s, inside the drain: {fwd}"
    );
}

fn second_stop_cuts_the_drain(name: &str, second: i32, second_name: &str, file: &str) {
    if skip_without_namespaces(name) {
        return;
    }
    let s = Scratch::new(name);
    let a = app(
        &s,
        "app",
        "trap 'rec term; exit 0' TERM\ntrap 'rec int; exit 0' INT\nrec ready\nwhile :; do sleep 0.1; done",
    );
    let r = start(Mode::Pid1, &["--drain", "10s", "--", &a]);
    let r = wait_ready(&s, r, "ready");
    let first = send(&r, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let again = send(&r, second);
    let got = wait_stamp(&s, file, Duration::from_secs(9));
    let f = r.wait(PATIENCE);
    let (stamp, seen) = got.unwrap_or_else(|| {
        panic!(
            "the app never got {second_name} after the second stop signal\n{}",
            f.stderr
        )
    });

    assert!(
        stamp >= again.epoch,
        "the app got {second_name} {:.3}s before the second stop signal was even sent\n{}",
        again.epoch - stamp,
        f.stderr
    );
    let waited = secs(again.at, seen);
    assert!(
        waited <= SLACK,
        "{second_name} took {waited:.3}s to reach the app after the second stop\n{}",
        f.stderr
    );
    let total = secs(first.at, seen);
    assert!(
        total < 10.0 - 5.0,
        "the app got the stop signal {total:.3}s after the first: the drain was not cut\n{}",
        f.stderr
    );
    if file == "int" {
        assert!(
            s.read("term").is_empty(),
            "the drained TERM was forwarded as well\n{}",
            f.stderr
        );
    }
    assert_eq!(f.code, Some(0), "{f:?}");
    assert_in_order(
        &f.stderr,
        &[
            "info: stop received: signal=SIGTERM drain=10s",
            &format!("info: drain cut short: signal={second_name}"),
            &format!(
                "info: forwarded: signal={second_name} to=group:{}",
                first_child_pid()
            ),
            "info: exiting: code=0",
        ],
    );
}

#[test]
fn second_term_during_the_drain_forwards_at_once() {
    second_stop_cuts_the_drain(
        "second_term_during_the_drain_forwards_at_once",
        libc::SIGTERM,
        "SIGTERM",
        "term",
    );
}

#[test]
fn int_during_a_term_drain_forwards_at_once() {
    // A second stop signal is forwarded as itself (design.md: "A second stop
    // signal while waiting forwards at once").
    second_stop_cuts_the_drain(
        "int_during_a_term_drain_forwards_at_once",
        libc::SIGINT,
        "SIGINT",
        "int",
    );
}

#[test]
fn hup_during_the_drain_is_forwarded_at_once_and_term_still_waits() {
    if skip_without_namespaces("hup_during_the_drain_is_forwarded_at_once_and_term_still_waits") {
        return;
    }
    let s = Scratch::new("hup");
    let a = app(
        &s,
        "app",
        "trap 'rec term; exit 0' TERM\ntrap 'rec hup' HUP\nrec ready\nwhile :; do sleep 0.1; done",
    );
    let r = start(Mode::Pid1, &["--drain", "1500ms", "--", &a]);
    let r = wait_ready(&s, r, "ready");
    let stop = send(&r, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let hup = send(&r, libc::SIGHUP);
    let got_hup = wait_stamp(&s, "hup", Duration::from_secs(5));
    let got_term = wait_stamp(&s, "term", PATIENCE);
    let f = r.wait(PATIENCE);
    let (hup_at, hup_seen) =
        got_hup.unwrap_or_else(|| panic!("HUP never reached the app\n{}", f.stderr));
    let (term_at, term_seen) =
        got_term.unwrap_or_else(|| panic!("TERM never reached the app\n{}", f.stderr));

    assert!(
        hup_at >= hup.epoch,
        "HUP stamped before it was sent\n{}",
        f.stderr
    );
    let hup_wait = secs(hup.at, hup_seen);
    assert!(
        hup_wait <= 1.0,
        "HUP took {hup_wait:.3}s to reach the app: it waited for the drain\n{}",
        f.stderr
    );
    assert!(
        hup_at < term_at,
        "HUP came after TERM: it waited for the drain\n{}",
        f.stderr
    );
    let term_after = term_at - stop.epoch;
    assert!(
        term_after >= 1.5,
        "TERM reached the app {term_after:.3}s after the stop, inside the 1.5s drain\n{}",
        f.stderr
    );
    let term_seen_after = secs(stop.at, term_seen);
    assert!(
        term_seen_after <= 1.5 + SLACK,
        "TERM only after {term_seen_after:.3}s\n{}",
        f.stderr
    );
    assert_eq!(f.code, Some(0), "{f:?}");
}

#[test]
fn app_exiting_during_the_drain_ends_usher_at_once() {
    if skip_without_namespaces("app_exiting_during_the_drain_ends_usher_at_once") {
        return;
    }
    let s = Scratch::new("exit-in-drain");
    let a = app(
        &s,
        "app",
        "trap 'rec term; exit 0' TERM\nrec ready\nwhile [ ! -f quit ]; do sleep 0.05; done\nexit 5",
    );
    let r = start(Mode::Pid1, &["--drain", "10s", "--", &a]);
    let r = wait_ready(&s, r, "ready");
    let stop = send(&r, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let quit = Instant::now();
    std::fs::write(s.path("quit"), "now\n").expect("write quit");
    let f = r.wait(Duration::from_secs(12));
    let after_quit = quit.elapsed().as_secs_f64();
    let after_stop = stop.at.elapsed().as_secs_f64();

    assert_eq!(
        f.code,
        Some(5),
        "usher must exit with the app's own code\n{f:?}"
    );
    assert!(
        after_quit <= SLACK,
        "usher exited {after_quit:.3}s after the app was told to quit ({after_stop:.3}s into a 10s drain)\n{}",
        f.stderr
    );
    assert!(
        s.read("term").is_empty(),
        "the app got TERM although it exited during the drain\n{}",
        f.stderr
    );
    assert_in_order(
        &f.stderr,
        &[
            "info: stop received: signal=SIGTERM drain=10s",
            &format!(
                "info: child exited: pid={app} status=exit:5",
                app = first_child_pid()
            ),
            "info: exiting: code=5",
        ],
    );
    assert!(
        line_with(&f.stderr, "forwarded").is_none(),
        "nothing to forward to a gone app:\n{}",
        f.stderr
    );
}

// --------------------------------------------------------------- pre-stop --

#[test]
fn pre_stop_runs_first_and_forwarding_waits_for_it() {
    if skip_without_namespaces("pre_stop_runs_first_and_forwarding_waits_for_it") {
        return;
    }
    let s = Scratch::new("pre-stop");
    let done = s.path("hook-done");
    let a = app(
        &s,
        "app",
        "trap 'if [ -f hook-done ]; then rec hook-was-done; fi; rec term; exit 0' TERM\nrec ready\nwhile :; do sleep 0.1; done",
    );
    let hook = format!("sh -c \"sleep 1.5; echo done > {}\"", done.display());
    let r = start(
        Mode::Pid1,
        &["--drain", "200ms", "--pre-stop", &hook, "--", &a],
    );
    let r = wait_ready(&s, r, "ready");
    let stop = send(&r, libc::SIGTERM);
    let got = wait_stamp(&s, "term", PATIENCE);
    let f = r.wait(PATIENCE);
    let (term_at, seen) = got.unwrap_or_else(|| panic!("the app never got TERM\n{}", f.stderr));

    assert_eq!(
        s.read("hook-done"),
        "done\n",
        "the hook did not run to the end\n{}",
        f.stderr
    );
    assert!(
        !s.read("hook-was-done").is_empty(),
        "TERM reached the app before the pre-stop hook had written its file\n{}",
        f.stderr
    );
    let after = term_at - stop.epoch;
    assert!(
        after >= 1.5,
        "TERM reached the app {after:.3}s after the stop, before the 1.5s hook finished\n{}",
        f.stderr
    );
    let seen_after = secs(stop.at, seen);
    assert!(
        seen_after <= 1.5 + SLACK,
        "TERM reached the app only after {seen_after:.3}s\n{}",
        f.stderr
    );
    assert_eq!(f.code, Some(0), "{f:?}");
    let lines = assert_in_order(
        &f.stderr,
        &[
            "info: stop received: signal=SIGTERM drain=200ms",
            "info: pre-stop started: pid=",
            "info: pre-stop exited: pid=",
            &format!(
                "info: forwarded: signal=SIGTERM to=group:{app}",
                app = first_child_pid()
            ),
            "info: exiting: code=0",
        ],
    );
    assert!(lines[2].contains("status=exit:0"), "{}", lines[2]);
}

fn hanging_hook_is_killed_at_the_deadline(mode: Mode, name: &str) {
    if mode == Mode::Pid1 && skip_without_namespaces(name) {
        return;
    }
    let s = Scratch::new(name);
    let a = app(
        &s,
        "app",
        "trap 'rec term; exit 0' TERM\necho $$ > pid\nrec ready\nwhile :; do sleep 0.1; done",
    );
    let mut args = vec!["--pre-stop", "sleep 1000", "--grace-period", "2s", "--"];
    if mode == Mode::Plain {
        args.insert(0, "-s");
    }
    args.push(&a);
    let r = start(mode, &args);
    let r = wait_ready(&s, r, "ready");
    let mut guard = PidGuard(Vec::new());
    if mode == Mode::Plain {
        guard.0.push(read_pid(&s, "pid"));
    }
    let stop = send(&r, libc::SIGTERM);
    let f = r.wait(PATIENCE);
    let took = stop.at.elapsed().as_secs_f64();

    let hook_line = line_with(&f.stderr, "info: pre-stop started: pid=")
        .unwrap_or_else(|| panic!("the hook never started:\n{}", f.stderr));
    let hook: i32 = hook_line
        .rsplit('=')
        .next()
        .and_then(|p| p.parse().ok())
        .expect("hook pid");
    if mode == Mode::Plain {
        guard.0.push(hook);
    }
    assert_eq!(
        f.code,
        Some(137),
        "the app was still running at the deadline\n{f:?}"
    );
    assert!(
        took >= 2.0,
        "usher exited {took:.3}s after the stop, before the 2s grace period\n{}",
        f.stderr
    );
    assert!(
        took <= 2.0 + SLACK,
        "usher exited only {took:.3}s after the stop (grace period 2s)\n{}",
        f.stderr
    );
    assert!(
        s.read("term").is_empty(),
        "TERM was forwarded although the hook never finished\n{}",
        f.stderr
    );
    let kill = line_with(
        &f.stderr,
        "warn: grace period over, killing: signal=SIGKILL pids=",
    )
    .unwrap_or_else(|| panic!("no escalation line:\n{}", f.stderr));
    let killed = pids_field(kill);
    assert!(
        killed.contains(&hook),
        "the hook (pid {hook}) is not among the killed: {kill}"
    );
    if mode == Mode::Plain {
        // Outside a namespace nothing cleans up for usher: the hook must be gone.
        assert!(
            !alive(hook),
            "the hanging hook (pid {hook}) survived usher\n{}",
            f.stderr
        );
        let app_pid = guard.0[0];
        assert!(
            killed.contains(&app_pid),
            "the app (pid {app_pid}) is not among the killed: {kill}"
        );
        assert!(!alive(app_pid), "the app (pid {app_pid}) survived usher");
    } else {
        assert!(
            killed.contains(&first_child_pid()),
            "the app (pid {}) is not among the killed: {kill}",
            first_child_pid()
        );
    }
}

#[test]
fn hanging_pre_stop_is_cut_at_the_deadline() {
    hanging_hook_is_killed_at_the_deadline(Mode::Pid1, "hanging_pre_stop_is_cut_at_the_deadline");
}

#[test]
fn hanging_pre_stop_is_cut_at_the_deadline_as_subreaper() {
    hanging_hook_is_killed_at_the_deadline(
        Mode::Plain,
        "hanging_pre_stop_is_cut_at_the_deadline_as_subreaper",
    );
}

// ------------------------------------------------------------ escalation --

#[test]
fn app_ignoring_term_is_killed_at_the_deadline() {
    if skip_without_namespaces("app_ignoring_term_is_killed_at_the_deadline") {
        return;
    }
    let s = Scratch::new("ignore-term");
    let a = app(
        &s,
        "app",
        "trap '' TERM\necho $$ > pid\nrec ready\nexec sleep 1000",
    );
    let r = start(Mode::Pid1, &["--grace-period", "2s", "--", &a]);
    let r = wait_ready(&s, r, "ready");
    let stop = send(&r, libc::SIGTERM);
    let f = r.wait(PATIENCE);
    let took = stop.at.elapsed().as_secs_f64();

    assert_eq!(f.code, Some(137), "{f:?}");
    assert!(
        took >= 2.0,
        "usher exited {took:.3}s after the stop, before the 2s grace period\n{}",
        f.stderr
    );
    assert!(
        took <= 2.0 + SLACK,
        "usher exited only {took:.3}s after the stop\n{}",
        f.stderr
    );
    let app_pid = read_pid(&s, "pid");
    let lines = assert_in_order(
        &f.stderr,
        &[
            "info: stop received: signal=SIGTERM drain=0s grace=2s",
            &format!(
                "info: forwarded: signal=SIGTERM to=group:{app}",
                app = first_child_pid()
            ),
            "warn: grace period over, killing: signal=SIGKILL pids=",
            &format!(
                "info: child exited: pid={app} status=signal:SIGKILL",
                app = first_child_pid()
            ),
            "info: exiting: code=137",
        ],
    );
    let t = line_t(&lines[2]).expect("time on the escalation line");
    assert!(
        t >= 2.0,
        "escalated at +{t}s, before the grace period: {}",
        lines[2]
    );
    assert_eq!(
        pids_field(&lines[2]),
        vec![app_pid],
        "the escalation line names the app: {}",
        lines[2]
    );
}

fn wrapper_job_ignoring_term(mode: Mode, name: &str) {
    if mode == Mode::Pid1 && skip_without_namespaces(name) {
        return;
    }
    let s = Scratch::new(name);
    let bg = app(
        &s,
        "bg",
        "trap '' TERM\necho $$ > bgpid\nrec bgready\nexec sleep 1000",
    );
    let wrapper = format!(
        "cd '{}' || exit 9; echo $$ > pid; {bg} & wait",
        s.0.display()
    );
    let mut args = vec!["--grace-period", "2s", "--", "sh", "-c", &wrapper];
    if mode == Mode::Plain {
        args.insert(0, "-s");
    }
    let r = start(mode, &args);
    let r = wait_ready(&s, r, "bgready");
    let bg_pid = read_pid(&s, "bgpid");
    let sh_pid = read_pid(&s, "pid");
    let _guard = (mode == Mode::Plain).then(|| PidGuard(vec![bg_pid, sh_pid]));
    let stop = send(&r, libc::SIGTERM);
    let f = r.wait(PATIENCE);
    let took = stop.at.elapsed().as_secs_f64();

    // The wrapper dies of the TERM; its job lingers until the deadline.
    assert_eq!(
        f.code,
        Some(128 + libc::SIGTERM),
        "usher exits with the wrapper's own status\n{f:?}"
    );
    assert!(
        took >= 2.0,
        "usher exited {took:.3}s after the stop, before the 2s grace period\n{}",
        f.stderr
    );
    assert!(
        took <= 2.0 + SLACK,
        "usher exited only {took:.3}s after the stop\n{}",
        f.stderr
    );
    let lines = assert_in_order(
        &f.stderr,
        &[
            "info: forwarded: signal=SIGTERM to=group:",
            "info: child exited: pid=",
            "warn: grace period over, killing: signal=SIGKILL pids=",
            &format!("info: exiting: code={}", 128 + libc::SIGTERM),
        ],
    );
    assert!(lines[1].contains("status=signal:SIGTERM"), "{}", lines[1]);
    let killed = pids_field(&lines[2]);
    assert!(
        killed.contains(&bg_pid),
        "the job (pid {bg_pid}) is not among the killed: {}",
        lines[2]
    );
    if mode == Mode::Plain {
        assert!(
            !alive(bg_pid),
            "the job (pid {bg_pid}) survived usher\n{}",
            f.stderr
        );
    }
}

#[test]
fn sh_wrapper_job_ignoring_term_is_killed() {
    wrapper_job_ignoring_term(Mode::Pid1, "sh_wrapper_job_ignoring_term_is_killed");
}

#[test]
fn sh_wrapper_job_ignoring_term_is_killed_as_subreaper() {
    wrapper_job_ignoring_term(
        Mode::Plain,
        "sh_wrapper_job_ignoring_term_is_killed_as_subreaper",
    );
}

// ------------------------------------------------------------- stragglers --

/// The app starts `bg` in the background, waits until it is ready, then exits 7.
fn straggler_app(s: &Scratch, bg_body: &str) -> String {
    let bg = app(s, "bg", bg_body);
    app(
        s,
        "app",
        &format!("{bg} &\nwhile [ ! -s bgready ]; do sleep 0.05; done\nrec exiting\nexit 7"),
    )
}

#[test]
fn straggler_gets_the_stop_signal_when_the_app_exits() {
    if skip_without_namespaces("straggler_gets_the_stop_signal_when_the_app_exits") {
        return;
    }
    let s = Scratch::new("straggler");
    let a = straggler_app(
        &s,
        "trap 'rec bgterm; exit 0' TERM\necho $$ > bgpid\nrec bgready\nwhile :; do sleep 0.1; done",
    );
    let r = start(Mode::Pid1, &["--grace-period", "10s", "--", &a]);
    let f = r.wait(Duration::from_secs(20));
    let done = epoch();

    assert_eq!(f.code, Some(7), "usher exits with the app's code\n{f:?}");
    let exited = stamps(&s, "exiting")
        .first()
        .copied()
        .expect("the app recorded its exit");
    let bgterm = stamps(&s, "bgterm").first().copied();
    let bgterm =
        bgterm.unwrap_or_else(|| panic!("the background job never got TERM\n{}", f.stderr));
    assert!(
        bgterm >= exited,
        "the job got TERM before the app exited\n{}",
        f.stderr
    );
    let waited = done - exited;
    assert!(
        waited <= SLACK,
        "usher took {waited:.3}s after the app's exit, with a job that stops at once\n{}",
        f.stderr
    );
    let bg_pid = read_pid(&s, "bgpid");
    let lines = assert_in_order(
        &f.stderr,
        &["info: signalled leftovers: signal=SIGTERM pids="],
    );
    assert!(
        pids_field(&lines[0]).contains(&bg_pid),
        "the job (pid {bg_pid}) is not listed: {}",
        lines[0]
    );
    assert!(
        line_with(&f.stderr, "SIGKILL").is_none(),
        "nothing needed killing:\n{}",
        f.stderr
    );
}

#[test]
fn straggler_ignoring_term_is_killed_at_the_deadline_and_the_app_code_kept() {
    if skip_without_namespaces(
        "straggler_ignoring_term_is_killed_at_the_deadline_and_the_app_code_kept",
    ) {
        return;
    }
    let s = Scratch::new("straggler-kill");
    let a = straggler_app(
        &s,
        "trap '' TERM\necho $$ > bgpid\nrec bgready\nexec sleep 1000",
    );
    let r = start(Mode::Pid1, &["-v", "--grace-period", "2s", "--", &a]);
    let f = r.wait(Duration::from_secs(20));
    let done = epoch();

    assert_eq!(
        f.code,
        Some(7),
        "usher keeps the app's own code after killing a straggler\n{f:?}"
    );
    let exited = stamps(&s, "exiting")
        .first()
        .copied()
        .expect("the app recorded its exit");
    let waited = done - exited;
    assert!(
        waited >= 2.0,
        "usher exited {waited:.3}s after the app, before the 2s grace period\n{}",
        f.stderr
    );
    assert!(
        waited <= 2.0 + SLACK,
        "usher exited only {waited:.3}s after the app\n{}",
        f.stderr
    );
    let bg_pid = read_pid(&s, "bgpid");
    let lines = assert_in_order(
        &f.stderr,
        &[
            &format!(
                "info: child exited: pid={app} status=exit:7",
                app = first_child_pid()
            ),
            "info: signalled leftovers: signal=SIGTERM pids=",
            "warn: grace period over, killing: signal=SIGKILL pids=",
            // info, not debug: the app left a process behind, so its exit is notable.
            "info: exiting: code=7",
        ],
    );
    assert_eq!(
        pids_field(&lines[2]),
        vec![bg_pid],
        "the escalation line names the job: {}",
        lines[2]
    );
    let t = line_t(&lines[2]).expect("time on the escalation line");
    assert!(
        t >= 2.0,
        "killed at +{t}s, before the grace period: {}",
        lines[2]
    );
}

#[test]
fn straggler_without_grace_period_is_killed_at_once() {
    if skip_without_namespaces("straggler_without_grace_period_is_killed_at_once") {
        return;
    }
    let s = Scratch::new("straggler-nograce");
    let a = straggler_app(
        &s,
        "trap '' TERM\necho $$ > bgpid\nrec bgready\nexec sleep 1000",
    );
    let r = start(Mode::Pid1, &["--", &a]);
    let f = r.wait(Duration::from_secs(20));
    let done = epoch();

    assert_eq!(f.code, Some(7), "{f:?}");
    let exited = stamps(&s, "exiting")
        .first()
        .copied()
        .expect("the app recorded its exit");
    let waited = done - exited;
    assert!(
        waited <= SLACK,
        "usher waited {waited:.3}s for a straggler with no grace period\n{}",
        f.stderr
    );
    let bg_pid = read_pid(&s, "bgpid");
    let kill = line_with(&f.stderr, "info: killing leftovers: signal=SIGKILL pids=")
        .unwrap_or_else(|| panic!("no kill line:\n{}", f.stderr));
    assert!(
        pids_field(kill).contains(&bg_pid),
        "the job (pid {bg_pid}) is not listed: {kill}"
    );
}

// ------------------------------------------------------ signals, rewrites --

#[test]
fn stop_on_quit_drains_quit_and_forwards_term_at_once() {
    if skip_without_namespaces("stop_on_quit_drains_quit_and_forwards_term_at_once") {
        return;
    }
    let s = Scratch::new("stop-on-quit");
    let a = app(
        &s,
        "app",
        "trap 'rec quit; exit 0' QUIT\ntrap 'rec term' TERM\nrec ready\nwhile :; do sleep 0.1; done",
    );
    let r = start(
        Mode::Pid1,
        &["--stop-on", "QUIT", "--drain", "1500ms", "--", &a],
    );
    let r = wait_ready(&s, r, "ready");
    let quit = send(&r, libc::SIGQUIT);
    std::thread::sleep(Duration::from_millis(200));
    let term = send(&r, libc::SIGTERM);
    let got_term = wait_stamp(&s, "term", Duration::from_secs(5));
    let got_quit = wait_stamp(&s, "quit", PATIENCE);
    let f = r.wait(PATIENCE);
    let (term_at, term_seen) =
        got_term.unwrap_or_else(|| panic!("TERM never reached the app\n{}", f.stderr));
    let (quit_at, quit_seen) =
        got_quit.unwrap_or_else(|| panic!("QUIT never reached the app\n{}", f.stderr));

    assert!(term_at >= term.epoch, "TERM stamped before it was sent");
    let term_wait = secs(term.at, term_seen);
    assert!(
        term_wait <= 1.0,
        "TERM took {term_wait:.3}s: it is not a stop signal here and must not wait\n{}",
        f.stderr
    );
    assert!(
        term_at < quit_at,
        "TERM reached the app after the drained QUIT\n{}",
        f.stderr
    );
    let quit_after = quit_at - quit.epoch;
    assert!(
        quit_after >= 1.5,
        "QUIT reached the app {quit_after:.3}s after it was sent, inside the drain\n{}",
        f.stderr
    );
    let quit_seen_after = secs(quit.at, quit_seen);
    assert!(
        quit_seen_after <= 1.5 + SLACK,
        "QUIT only after {quit_seen_after:.3}s\n{}",
        f.stderr
    );
    assert_eq!(f.code, Some(0), "{f:?}");
    assert_in_order(
        &f.stderr,
        &[
            "info: stop received: signal=SIGQUIT drain=1.500s",
            &format!(
                "info: forwarded: signal=SIGQUIT to=group:{app}",
                app = first_child_pid()
            ),
            "info: exiting: code=0",
        ],
    );
    assert!(
        line_with(&f.stderr, "drain cut short").is_none(),
        "TERM is no stop signal here:\n{}",
        f.stderr
    );
}

#[test]
fn rewrite_term_to_quit_after_the_drain() {
    if skip_without_namespaces("rewrite_term_to_quit_after_the_drain") {
        return;
    }
    let s = Scratch::new("rewrite");
    let a = app(
        &s,
        "app",
        "trap 'rec quit; exit 0' QUIT\ntrap 'rec term; exit 0' TERM\nrec ready\nwhile :; do sleep 0.1; done",
    );
    let r = start(
        Mode::Pid1,
        &["--rewrite", "TERM:QUIT", "--drain", "1s", "--", &a],
    );
    let r = wait_ready(&s, r, "ready");
    let stop = send(&r, libc::SIGTERM);
    let got = wait_stamp(&s, "quit", PATIENCE);
    let f = r.wait(PATIENCE);
    let (quit_at, seen) = got.unwrap_or_else(|| panic!("QUIT never reached the app\n{}", f.stderr));

    let after = quit_at - stop.epoch;
    assert!(
        after >= 1.0,
        "QUIT reached the app {after:.3}s after the stop, inside the 1s drain\n{}",
        f.stderr
    );
    let seen_after = secs(stop.at, seen);
    assert!(
        seen_after <= 1.0 + SLACK,
        "QUIT only after {seen_after:.3}s\n{}",
        f.stderr
    );
    assert!(
        s.read("term").is_empty(),
        "the app got TERM although it was rewritten\n{}",
        f.stderr
    );
    assert_eq!(f.code, Some(0), "{f:?}");
    let lines = assert_in_order(
        &f.stderr,
        &[
            "info: stop received: signal=SIGTERM drain=1s",
            &format!(
                "info: forwarded: signal=SIGTERM sent=SIGQUIT to=group:{app}",
                app = first_child_pid()
            ),
        ],
    );
    let t = line_t(&lines[1]).expect("time on the forwarded line");
    assert!(
        t >= 1.0,
        "forwarded at +{t}s, inside the drain: {}",
        lines[1]
    );
}

// --------------------------------------------------------------- timeline --

/// Runs the timeline scenario and returns usher's stderr.
fn timeline_run(name: &str, format: &str) -> (String, Sent) {
    let s = Scratch::new(name);
    // Quiet app: stderr holds usher's lines only.
    let a = app(
        &s,
        "app",
        "exec 2>/dev/null\ntrap 'rec term; exit 3' TERM\nrec ready\nwhile :; do sleep 0.1; done",
    );
    let r = start(
        Mode::Pid1,
        &[
            "--log-format",
            format,
            "--drain",
            "300ms",
            "--grace-period",
            "5s",
            "--",
            &a,
        ],
    );
    let r = wait_ready(&s, r, "ready");
    let stop = send(&r, libc::SIGTERM);
    let f = r.wait(PATIENCE);
    assert_eq!(f.code, Some(3), "{f:?}");
    let took = stop.at.elapsed().as_secs_f64();
    assert!(
        (0.3..=0.3 + SLACK).contains(&took),
        "usher exited {took:.3}s after the stop\n{}",
        f.stderr
    );
    (f.stderr, stop)
}

/// What `timeline_run` must log, in order.
fn timeline() -> Vec<String> {
    let app = first_child_pid();
    vec![
        "info: stop received: signal=SIGTERM drain=300ms grace=5s".into(),
        format!("info: forwarded: signal=SIGTERM to=group:{app}"),
        format!("info: child exited: pid={app} status=exit:3"),
        "info: exiting: code=3".into(),
    ]
}

#[test]
fn timeline_lines_in_order() {
    if skip_without_namespaces("timeline_lines_in_order") {
        return;
    }
    let (stderr, _) = timeline_run("timeline", "text");
    let lines = assert_in_order(&stderr, &timeline());
    let ts: Vec<f64> = lines
        .iter()
        .map(|l| line_t(l).unwrap_or_else(|| panic!("no +t on {l}")))
        .collect();
    assert_eq!(ts[0], 0.0, "the stop line starts the clock: {}", lines[0]);
    assert!(
        ts.windows(2).all(|w| w[0] <= w[1]),
        "times go backwards: {ts:?}\n{stderr}"
    );
    assert!(
        ts[1] >= 0.3,
        "forwarded at +{}s, inside the 300ms drain",
        ts[1]
    );
    assert!(ts[3] <= 0.3 + SLACK, "exiting at +{}s", ts[3]);
    for l in usher_lines(&stderr) {
        assert!(
            !l.starts_with("usher: +") || line_t(l).is_some(),
            "malformed time: {l}"
        );
    }
}

#[test]
fn timeline_as_json_has_the_same_events_and_fields() {
    if skip_without_namespaces("timeline_as_json_has_the_same_events_and_fields") {
        return;
    }
    let (json, _) = timeline_run("timeline-json", "json");
    let (text, _) = timeline_run("timeline-text", "text");

    let mut objects = Vec::new();
    for line in json.lines().filter(|l| !l.is_empty()) {
        assert!(
            line.starts_with("{\"source\":\"usher\"") && line.ends_with('}'),
            "not a usher JSON line: {line:?}\n{json}"
        );
        let obj = parse_json_line(line).unwrap_or_else(|e| panic!("bad JSON ({e}): {line}"));
        objects.push(obj);
    }

    // The same timeline, event by event, with the same fields and values.
    let text_lines: Vec<_> = usher_lines(&text)
        .into_iter()
        .filter_map(parse_text)
        .collect();
    assert_eq!(
        objects.len(),
        text_lines.len(),
        "as many JSON lines as text lines:\n{json}\n{text}"
    );
    for (obj, (level, event, fields)) in objects.iter().zip(&text_lines) {
        assert_eq!(
            get(obj, "level"),
            Some(&J::Str(level.clone())),
            "{obj:?} vs {level} {event}"
        );
        assert_eq!(get(obj, "event"), Some(&J::Str(event.clone())), "{obj:?}");
        let keys: Vec<&str> = obj
            .iter()
            .map(|(k, _)| k.as_str())
            .filter(|k| !["source", "t", "level", "event"].contains(k))
            .collect();
        let text_keys: Vec<&str> = fields.iter().map(|(k, _)| k.as_str()).collect();
        assert_eq!(keys, text_keys, "the same fields for {event:?}");
        for (k, v) in fields {
            let jv = get(obj, k).expect("key present");
            // Times of day differ between the runs; nothing else may.
            assert!(
                same_value(v, jv),
                "{event:?} {k}: text {v:?} vs JSON {jv:?}"
            );
        }
    }
    // The four timeline events, in order, with times.
    let events: Vec<String> = objects
        .iter()
        .filter_map(|o| match get(o, "event") {
            Some(J::Str(e)) => Some(e.clone()),
            _ => None,
        })
        .collect();
    let want = ["stop received", "forwarded", "child exited", "exiting"];
    let mut it = events.iter();
    for w in want {
        assert!(it.any(|e| e == w), "no {w:?} in order in {events:?}");
    }
    for o in &objects {
        if let Some(J::Str(e)) = get(o, "event") {
            if want.contains(&e.as_str()) {
                assert!(
                    matches!(get(o, "t"), Some(J::Num(_))),
                    "{e:?} has no time: {o:?}"
                );
            }
            if e == "forwarded" {
                let Some(J::Num(t)) = get(o, "t") else {
                    unreachable!()
                };
                assert!(*t >= 0.3, "forwarded at {t}, inside the drain");
            }
        }
    }
    let stop = &objects[0];
    assert_eq!(get(stop, "drain"), Some(&J::Num(0.3)), "{stop:?}");
    assert_eq!(get(stop, "grace"), Some(&J::Num(5.0)), "{stop:?}");
    assert_eq!(
        get(stop, "signal"),
        Some(&J::Str("SIGTERM".into())),
        "{stop:?}"
    );
}

// ----------------------------------------------------------- usage errors --

#[test]
fn usage_errors_exit_2_and_name_the_values() {
    let s = Scratch::new("usage");
    let marker = s.path("started");
    let touch = format!("touch {}", marker.display());
    let cases: &[(&[&str], &[&str])] = &[
        (
            &["--drain", "5s", "--grace-period", "5s"],
            &["--drain 5s", "--grace-period 5s"],
        ),
        (&["--drain", "5"], &["--drain", "\"5\"", "unit"]),
        (&["--grace-period", "soon"], &["--grace-period", "\"soon\""]),
        (&["--stop-on", "TERM,BOGUS"], &["--stop-on", "\"BOGUS\""]),
        (
            &["--pre-stop", "sh -c 'x"],
            &["--pre-stop", "sh -c 'x", "quote"],
        ),
    ];
    for (flags, needles) in cases {
        let mut args: Vec<&str> = flags.to_vec();
        args.extend(["--", "sh", "-c", &touch]);
        let f = start(Mode::Plain, &args).wait(Duration::from_secs(10));
        assert_eq!(f.code, Some(2), "{flags:?} is a usage error\n{f:?}");
        assert!(
            f.stderr.starts_with("usher: error: "),
            "{flags:?}: {:?}",
            f.stderr
        );
        assert_eq!(
            f.stderr.lines().count(),
            1,
            "one line for {flags:?}: {:?}",
            f.stderr
        );
        for n in *needles {
            assert!(
                f.stderr.contains(n),
                "{flags:?}: the message should name {n:?}: {:?}",
                f.stderr
            );
        }
        assert!(
            !marker.exists(),
            "{flags:?}: the app ran despite the usage error"
        );
    }
}

// ------------------------------------------------------------ idle usher --

/// strace's path, or why it cannot be used.
fn strace() -> Result<&'static str, String> {
    let ok = Command::new("strace")
        .arg("-V")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status();
    match ok {
        Ok(st) if st.success() => Ok("strace"),
        _ => Err("strace is not installed (apt-get install -y strace)".into()),
    }
}

#[test]
fn idle_usher_makes_no_syscalls_during_the_drain() {
    let name = "idle_usher_makes_no_syscalls_during_the_drain";
    if skip_without_namespaces(name) {
        return;
    }
    let strace = match strace() {
        Ok(p) => p,
        Err(why) => {
            eprintln!("SKIPPED {name}: {why}");
            return;
        }
    };
    let s = Scratch::new("idle");
    let a = app(
        &s,
        "app",
        "trap 'rec term; exit 0' TERM\nrec ready\nwhile :; do sleep 0.1; done",
    );
    let r = start(Mode::Pid1, &["--drain", "4s", "--", &a]);
    let r = wait_ready(&s, r, "ready");
    let pid = r.usher_pid();
    let stop = send(&r, libc::SIGTERM);
    std::thread::sleep(Duration::from_millis(300));
    let out = s.path("strace.out");
    let tracer = Command::new(strace)
        .args(["-qq", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()])
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn strace");
    let tracer_pid = tracer.id() as i32;
    let _guard = PidGuard(vec![tracer_pid]);
    // Watch for 1.2s, well inside the 4s drain.
    std::thread::sleep(Duration::from_millis(1200));
    let watched_until = secs(stop.at, Instant::now());
    // SAFETY: kill has no memory-safety preconditions; SIGINT makes strace detach.
    unsafe { libc::kill(tracer_pid, libc::SIGINT) };
    let traced = tracer.wait_with_output().expect("wait for strace");
    let log = std::fs::read_to_string(&out).unwrap_or_default();
    let got = wait_stamp(&s, "term", PATIENCE);
    let f = r.wait(PATIENCE);

    if log.trim().is_empty() {
        let why = String::from_utf8_lossy(&traced.stderr);
        if why.contains("not permitted") || why.contains("ptrace") {
            eprintln!("SKIPPED {name}: strace cannot attach here: {}", why.trim());
            return;
        }
        panic!("strace recorded nothing: {traced:?}");
    }
    assert!(
        watched_until < 4.0,
        "watched until +{watched_until:.3}s: past the drain, the check means nothing"
    );
    // Each line starts with a syscall name: the only one allowed is the
    // poll usher blocks in (shown as restarted after strace's attach).
    let calls: Vec<&str> = log
        .lines()
        .filter(|l| !l.trim().is_empty())
        .map(|l| l.split('(').next().unwrap_or(l).trim())
        .collect();
    let first_poll = calls
        .iter()
        .position(|c| matches!(*c, "restart_syscall" | "poll" | "ppoll"))
        .unwrap_or_else(|| panic!("usher never blocked in poll while watched:\n{log}"));
    assert_eq!(
        calls.len(),
        first_poll + 1,
        "usher made system calls while idle in the drain:\n{log}"
    );

    // And the drain still ended on time.
    let (term_at, _) = got.unwrap_or_else(|| panic!("the app never got TERM\n{}", f.stderr));
    assert!(
        term_at - stop.epoch >= 4.0,
        "TERM inside the 4s drain\n{}",
        f.stderr
    );
    assert_eq!(f.code, Some(0), "{f:?}");
}

// A wrapper shell that dies of the forwarded TERM while the app behind it is
// still cleaning up: the app, already told, must not get a second TERM when
// usher signals the leftovers (a second signal often means "quit now").
fn wrapper_exits_first(mode: Mode, name: &str) {
    let s = Scratch::new(name);
    let inner = app(
        &s,
        "inner",
        "trap 'rec term; sleep 1; rec cleaned; exit 0' TERM\nrec ready\nwhile :; do sleep 0.1 & wait $!; done",
    );
    // `; true` keeps the shell alive as the app's parent; it dies of TERM.
    let wrapper = format!("{inner}; true");
    let mut args = vec!["--grace-period", "5s", "--", "sh", "-c", &wrapper];
    if mode == Mode::Plain {
        args.insert(0, "-s");
    }
    let r = wait_ready(&s, start(mode, &args), "ready");
    send(&r, libc::SIGTERM);
    let f = r.wait(Duration::from_secs(20));
    assert_eq!(
        f.code,
        Some(143),
        "the wrapper shell's own death by TERM\n{f:?}"
    );
    assert_eq!(
        stamps(&s, "term").len(),
        1,
        "the app got TERM exactly once\n{}",
        f.stderr
    );
    assert_eq!(
        stamps(&s, "cleaned").len(),
        1,
        "the app's cleanup finished\n{}",
        f.stderr
    );
    assert!(
        line_with(&f.stderr, "SIGKILL").is_none(),
        "nothing was killed\n{}",
        f.stderr
    );
}

#[test]
fn app_behind_an_exited_wrapper_is_not_told_twice() {
    if skip_without_namespaces("app_behind_an_exited_wrapper_is_not_told_twice") {
        return;
    }
    wrapper_exits_first(Mode::Pid1, "told-once");
}

#[test]
fn app_behind_an_exited_wrapper_is_not_told_twice_as_subreaper() {
    wrapper_exits_first(Mode::Plain, "told-once-plain");
}

// An app that is stopped (SIGSTOP, a debugger, Ctrl-Z gone wrong) when the
// stop signal comes would never run its handler: usher follows the stop
// signal with SIGCONT, so the app shuts down cleanly instead of waiting for
// the deadline's SIGKILL.
#[test]
fn a_stopped_app_still_gets_its_stop_signal() {
    if skip_without_namespaces("a_stopped_app_still_gets_its_stop_signal") {
        return;
    }
    let s = Scratch::new("stopped-app");
    let a = app(
        &s,
        "app",
        "trap 'rec term; exit 0' TERM\nrec ready\nkill -STOP $$\nwhile :; do sleep 0.1 & wait $!; done",
    );
    let r = wait_ready(
        &s,
        start(Mode::Pid1, &["--grace-period", "10s", "--", &a]),
        "ready",
    );
    std::thread::sleep(Duration::from_millis(300)); // let it stop
    let sent = send(&r, libc::SIGTERM);
    let got = wait_stamp(&s, "term", Duration::from_secs(5));
    let f = r.wait(Duration::from_secs(20));
    let (_, seen) = got.unwrap_or_else(|| panic!("the stopped app never got TERM\n{}", f.stderr));
    assert!(
        secs(sent.at, seen) < SLACK,
        "TERM reached the stopped app late\n{}",
        f.stderr
    );
    assert_eq!(
        f.code,
        Some(0),
        "a clean exit, not the deadline's 137\n{f:?}"
    );
}
