//! usher's own log lines on stderr: one line per event, as text or JSON, same fields.
//!
//! A line is built whole and written with one `write`, so it never interleaves
//! with the app's output mid-line. Write errors (stderr closed, broken pipe)
//! are ignored: PID 1 keeps working when it cannot talk. Once the event loop
//! runs, a pipe or terminal on stderr is written through a non-blocking twin
//! ([`sys::nonblocking_twin`]): a log reader that stops reading costs usher
//! lines (counted and reported once it can write again), never its loop.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use core::fmt::Write as _;
use core::sync::atomic::{AtomicBool, AtomicI32, AtomicU64, Ordering};
use core::time::Duration;

use crate::sys;

/// The event loop runs: write through the non-blocking twin.
static LOOPING: AtomicBool = AtomicBool::new(false);
/// The non-blocking twin of stderr, opened at the loop's first line: its fd,
/// [`NONE`] when there is none to open, [`UNOPENED`] before the first try.
static SINK: AtomicI32 = AtomicI32::new(UNOPENED);
const UNOPENED: i32 = -2;
const NONE: i32 = -1;
/// Lines dropped because stderr was full.
static DROPPED: AtomicU64 = AtomicU64::new(0);

/// From now on, never block on a full stderr pipe (called before the loop).
/// The twin is opened with the first line that needs it: most runs of usher
/// log nothing, and start faster without the three system calls.
pub fn use_nonblocking_stderr() {
    LOOPING.store(true, Ordering::Relaxed);
}

/// Writes one line; on a full pipe drops it and counts it.
fn emit(line: &str) {
    let mut fd = NONE;
    if LOOPING.load(Ordering::Relaxed) {
        fd = SINK.load(Ordering::Relaxed);
        if fd == UNOPENED {
            let twin = sys::nonblocking_twin(libc::STDERR_FILENO);
            fd = twin.map_or(NONE, sys::OwnedFd::into_raw);
            SINK.store(fd, Ordering::Relaxed);
        }
    }
    if fd == NONE {
        // Ignored on purpose: see the module comment.
        let _ = sys::write_all_fd(libc::STDERR_FILENO, line.as_bytes());
        return;
    }
    let dropped = DROPPED.load(Ordering::Relaxed);
    if dropped > 0 {
        let note = format!("usher: warn: {dropped} log lines dropped: stderr was full\n");
        if sys::write_fd(fd, note.as_bytes()).is_err() {
            DROPPED.fetch_add(1, Ordering::Relaxed);
            return;
        }
        DROPPED.fetch_sub(dropped, Ordering::Relaxed);
    }
    // A line under PIPE_BUF is written whole or not at all.
    if let Err(e) = sys::write_fd(fd, line.as_bytes()) {
        if e.kind() == sys::io::ErrorKind::WouldBlock {
            DROPPED.fetch_add(1, Ordering::Relaxed);
        }
    }
}

#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Debug)]
pub enum Level {
    Error,
    Warn,
    Info,
    Debug,
    Trace,
}

impl Level {
    pub const ALL: [Level; 5] = [
        Level::Error,
        Level::Warn,
        Level::Info,
        Level::Debug,
        Level::Trace,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Level::Error => "error",
            Level::Warn => "warn",
            Level::Info => "info",
            Level::Debug => "debug",
            Level::Trace => "trace",
        }
    }

    pub fn parse(s: &str) -> Option<Level> {
        let s = s.trim().to_ascii_lowercase();
        let s = if s == "warning" { "warn" } else { s.as_str() };
        Level::ALL.into_iter().find(|l| l.name() == s)
    }

    /// `steps` more verbose (positive) or quieter (negative), clamped.
    pub fn shifted(self, steps: i32) -> Level {
        let i = (self as i32 + steps).clamp(0, Level::ALL.len() as i32 - 1);
        Level::ALL[i as usize]
    }
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Format {
    Text,
    Json,
}

/// One field's value.
pub enum Value {
    Str(String),
    Int(i64),
    Secs(Duration),
    List(Vec<i64>),
}

impl From<&str> for Value {
    fn from(s: &str) -> Value {
        Value::Str(s.to_string())
    }
}
impl From<String> for Value {
    fn from(s: String) -> Value {
        Value::Str(s)
    }
}
impl From<i32> for Value {
    fn from(n: i32) -> Value {
        Value::Int(n.into())
    }
}
impl From<&sys::io::Error> for Value {
    fn from(e: &sys::io::Error) -> Value {
        Value::Str(e.to_string())
    }
}
impl From<Duration> for Value {
    fn from(d: Duration) -> Value {
        Value::Secs(d)
    }
}

#[derive(Clone, Copy, Debug)]
pub struct Logger {
    pub level: Level,
    pub format: Format,
}

impl Logger {
    pub fn enabled(&self, level: Level) -> bool {
        level <= self.level
    }

    /// Writes one event: `usher: +1.002s info: forwarded: signal=SIGTERM to=group:7`.
    pub fn log(&self, level: Level, t: Option<Duration>, event: &str, fields: &[(&str, Value)]) {
        if !self.enabled(level) {
            return;
        }
        let line = match self.format {
            Format::Text => text_line(level, t, event, fields),
            Format::Json => json_line(level, t, event, fields),
        };
        emit(&line);
    }

    pub fn error(&self, event: &str, fields: &[(&str, Value)]) {
        self.log(Level::Error, None, event, fields);
    }

    pub fn warn(&self, event: &str, fields: &[(&str, Value)]) {
        self.log(Level::Warn, None, event, fields);
    }

    pub fn debug(&self, event: &str, fields: &[(&str, Value)]) {
        self.log(Level::Debug, None, event, fields);
    }
}

fn text_line(level: Level, t: Option<Duration>, event: &str, fields: &[(&str, Value)]) -> String {
    let mut out = String::from("usher: ");
    if let Some(t) = t {
        let _ = write!(out, "+{}s ", decimal(t, 3));
    }
    let _ = write!(out, "{}: {event}", level.name());
    for (i, (key, value)) in fields.iter().enumerate() {
        out.push_str(if i == 0 { ": " } else { " " });
        out.push_str(key);
        out.push('=');
        match value {
            Value::Str(s)
                if s.is_empty() || s.contains(|c: char| c.is_whitespace() || c == '"') =>
            {
                let _ = write!(out, "{s:?}");
            }
            Value::Str(s) => out.push_str(s),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Secs(d) => out.push_str(&secs(*d)),
            Value::List(l) => out.push_str(&join(l)),
        }
    }
    out.push('\n');
    out
}

fn json_line(level: Level, t: Option<Duration>, event: &str, fields: &[(&str, Value)]) -> String {
    let mut out = String::from("{\"source\":\"usher\"");
    if let Some(t) = t {
        let _ = write!(out, ",\"t\":{}", decimal(t, 6));
    }
    let _ = write!(out, ",\"level\":\"{}\",\"event\":", level.name());
    json_str(&mut out, event);
    for (key, value) in fields {
        out.push(',');
        json_str(&mut out, key);
        out.push(':');
        match value {
            Value::Str(s) => json_str(&mut out, s),
            Value::Int(n) => {
                let _ = write!(out, "{n}");
            }
            Value::Secs(d) => {
                out.push_str(&decimal(*d, 6));
            }
            Value::List(l) => {
                let _ = write!(out, "[{}]", join(l));
            }
        }
    }
    out.push_str("}\n");
    out
}

fn json_str(out: &mut String, s: &str) {
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if (c as u32) < 0x20 => {
                let _ = write!(out, "\\u{:04x}", c as u32);
            }
            c => out.push(c),
        }
    }
    out.push('"');
}

fn join(list: &[i64]) -> String {
    let parts: Vec<String> = list.iter().map(i64::to_string).collect();
    parts.join(",")
}

/// `1.500s`, `250ms`, `25s`, `0s`: whole seconds bare, under a second in
/// milliseconds, else seconds with three decimals (exact to the millisecond).
pub fn secs(d: Duration) -> String {
    if d.subsec_millis() == 0 {
        format!("{}s", d.as_secs())
    } else if d.as_secs() == 0 {
        format!("{}ms", d.subsec_millis())
    } else {
        format!("{}s", decimal(d, 3))
    }
}

/// Seconds with `places` decimals, rounded to the nearest: `1.002`. Integer
/// arithmetic: float formatting would cost the binary about 10 KiB.
pub fn decimal(d: Duration, places: u32) -> String {
    let scale = 10u64.pow(places);
    let step = 1_000_000_000 / scale;
    let units = (u64::from(d.subsec_nanos()) + step / 2) / step;
    let (secs, frac) = (d.as_secs() + units / scale, units % scale);
    let width = places as usize;
    format!("{secs}.{frac:0width$}")
}

/// A message for the user before the event loop runs (usage errors and the like).
pub fn plain(msg: &str) {
    let _ = sys::write_all_fd(libc::STDERR_FILENO, format!("usher: {msg}\n").as_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn text_and_json_carry_the_same_fields() {
        let fields = [
            ("signal", Value::from("SIGTERM")),
            ("to", Value::from("group:7")),
            ("pids", Value::List(vec![3, 4])),
        ];
        let t = Some(Duration::from_millis(1002));
        assert_eq!(
            text_line(Level::Info, t, "forwarded", &fields),
            "usher: +1.002s info: forwarded: signal=SIGTERM to=group:7 pids=3,4\n"
        );
        assert_eq!(
            json_line(Level::Info, t, "forwarded", &fields),
            "{\"source\":\"usher\",\"t\":1.002000,\"level\":\"info\",\"event\":\"forwarded\",\"signal\":\"SIGTERM\",\"to\":\"group:7\",\"pids\":[3,4]}\n"
        );
    }

    #[test]
    fn quoting() {
        let fields = [
            ("cmd", Value::from("sh -c \"x\"")),
            ("empty", Value::from("")),
        ];
        assert_eq!(
            text_line(Level::Warn, None, "e", &fields),
            "usher: warn: e: cmd=\"sh -c \\\"x\\\"\" empty=\"\"\n"
        );
        let mut s = String::new();
        json_str(&mut s, "a\"b\\c\n\u{1}");
        assert_eq!(s, "\"a\\\"b\\\\c\\n\\u0001\"");
    }

    #[test]
    fn levels_shift_and_parse() {
        assert_eq!(Level::Info.shifted(1), Level::Debug);
        assert_eq!(Level::Info.shifted(9), Level::Trace);
        assert_eq!(Level::Info.shifted(-9), Level::Error);
        assert_eq!(Level::parse("WARNING"), Some(Level::Warn));
        assert_eq!(Level::parse("loud"), None);
        assert_eq!(secs(Duration::from_millis(1500)), "1.500s");
        assert_eq!(secs(Duration::from_millis(250)), "250ms");
        assert_eq!(secs(Duration::from_secs(25)), "25s");
        assert_eq!(decimal(Duration::from_nanos(1_000_499_999), 3), "1.000");
        assert_eq!(decimal(Duration::from_nanos(1_000_500_000), 3), "1.001");
        assert_eq!(decimal(Duration::from_nanos(999_999_999), 3), "1.000");
        assert_eq!(decimal(Duration::from_micros(1_002_003), 6), "1.002003");
        assert_eq!(decimal(Duration::ZERO, 6), "0.000000");
        assert_eq!(decimal(Duration::from_secs(365 * 86400), 3), "31536000.000");
    }
}
