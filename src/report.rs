//! How the state machine's notes read: the shutdown timeline in the log, and the termination message.
//!
//! The machine decides which note is written and carries every fact the
//! line needs; this module only picks the level and the words for each kind.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use core::time::Duration;

use crate::hook::{HookEnd, HookKind, Outcome};
use crate::log::{Level, Logger, Value};
use crate::machine::{
    Cause, DrainEnd, DrainSpec, Ending, HookTrouble, KillCause, Named, Note, NoteKind, Purpose,
    Rate, Target,
};
use crate::process::{Memory, Status};
use crate::signals::Signal;

pub fn status(s: Status) -> String {
    match s {
        Status::Exited(c) => format!("exit:{c}"),
        Status::Signaled(sig) => format!("signal:{sig}"),
    }
}

pub fn target(t: Target) -> String {
    match t {
        Target::Group(p) => format!("group:{p}"),
        Target::Process(p) => format!("pid:{p}"),
        Target::Everyone => "all".into(),
    }
}

fn sig(s: Signal) -> Value {
    Value::from(s.to_string())
}

fn grace(g: Option<Duration>) -> Value {
    g.map_or(Value::from("none"), Value::Secs)
}

fn drain(d: DrainSpec) -> Value {
    match d {
        DrainSpec::Fixed(d) => Value::Secs(d),
        DrainSpec::Range { min, max } => Value::from(format!(
            "{}..{}",
            crate::log::secs(min),
            crate::log::secs(max)
        )),
    }
}

/// `31.2/s`.
fn rate(r: Rate) -> Value {
    let tenths = (r.0 + 50) / 100;
    Value::from(format!("{}.{}/s", tenths / 10, tenths % 10))
}

fn pids(p: &[i32]) -> Value {
    Value::List(p.iter().map(|&p| p.into()).collect())
}

fn named(n: &Named) -> Value {
    match n {
        Named::Pids(p) => pids(p),
        Named::Group(g) => Value::from(format!("group:{g}")),
        Named::Unknown | Named::Nobody => Value::from("unknown (no /proc)"),
    }
}

fn cause(c: Cause) -> String {
    match c {
        Cause::Signal(s) => s.to_string(),
        Cause::PostStartFailed => "post-start-failed".into(),
        Cause::AppExited => "app-exited".into(),
    }
}

fn hook_end(end: &HookEnd) -> (&'static str, Value) {
    match end {
        HookEnd::Exited(s) => ("status", status(*s).into()),
        HookEnd::Answered(Outcome::Status(code)) => ("http", i32::from(*code).into()),
        HookEnd::Answered(Outcome::Failed(why)) => ("error", why.as_str().into()),
    }
}

fn memory(m: &Memory, fields: &mut Vec<(&'static str, Value)>) {
    for (key, bytes) in [("limit", m.limit), ("peak", m.peak)] {
        if let Some(b) = bytes {
            fields.push((key, Value::Int(b.min(i64::MAX as u64) as i64)));
        }
    }
}

/// Writes one note as a log line at the level its importance deserves.
pub fn note(log: &Logger, n: &Note) {
    // The hot path is a forwarded signal at debug level: build nothing
    // when nobody will read it.
    if let NoteKind::Forwarded { stop: false, .. } = *n.kind {
        if !log.enabled(Level::Debug) {
            return;
        }
    }
    let (level, event, fields) = words(&n.kind);
    log.log(level, n.elapsed, &event, &fields);
}

/// The level, the words and the fields of one note.
fn words(kind: &NoteKind) -> (Level, String, Vec<(&'static str, Value)>) {
    let info_if = |notable: bool| if notable { Level::Info } else { Level::Debug };
    let hook = |kind: &HookKind, words: &str| format!("{} {words}", kind.name());
    match kind {
        NoteKind::StopReceived {
            signal,
            drain: d,
            grace: g,
            cause,
        } => {
            let words = match cause {
                Cause::PostStartFailed => "stopping: the post-start hook failed",
                _ => "stop received",
            };
            let fields = vec![
                ("signal", sig(*signal)),
                ("drain", drain(*d)),
                ("grace", grace(*g)),
            ];
            (Level::Info, words.into(), fields)
        }
        NoteKind::DrainShortened {
            asked,
            to,
            grace,
            reserve,
        } => (
            Level::Warn,
            "the drain would end after the stop reserve, shortened".into(),
            vec![
                ("drain", (*asked).into()),
                ("to", (*to).into()),
                ("grace", (*grace).into()),
                ("reserve", (*reserve).into()),
            ],
        ),
        NoteKind::DrainCut { signal } => (
            Level::Info,
            "drain cut short".into(),
            vec![("signal", sig(*signal))],
        ),
        NoteKind::DrainOver { end } => {
            let (reason, mut fields) = match end {
                DrainEnd::Quiet {
                    silence,
                    rate: r,
                    arrivals,
                    sparse,
                } => (
                    "quiet",
                    vec![
                        ("silence", (*silence).into()),
                        ("rate", rate(*r)),
                        ("arrivals", Value::Int(*arrivals as i64)),
                        ("sparse", Value::Int(*sparse as i64)),
                    ],
                ),
                DrainEnd::Max { rate: r, arrivals } => (
                    "max",
                    vec![
                        ("rate", rate(*r)),
                        ("arrivals", Value::Int(*arrivals as i64)),
                    ],
                ),
                DrainEnd::NoListener => ("no-listener", Vec::new()),
                DrainEnd::Unseen => ("unseen", Vec::new()),
            };
            fields.insert(0, ("reason", reason.into()));
            (Level::Info, "drain over".into(), fields)
        }
        NoteKind::TrafficUnseen { reason } => (
            Level::Warn,
            "cannot watch the app's traffic: the drain holds to MAX".into(),
            vec![("error", reason.as_str().into())],
        ),
        NoteKind::Forwarded {
            signal,
            sent,
            to,
            stop,
        } => {
            let mut fields = vec![("signal", sig(*signal))];
            if sent != signal {
                fields.push(("sent", sig(*sent)));
            }
            fields.push(("to", target(*to).into()));
            (info_if(*stop), "forwarded".into(), fields)
        }
        NoteKind::Dropped { signal } => (
            Level::Debug,
            "dropped".into(),
            vec![("signal", sig(*signal))],
        ),
        NoteKind::Ignored { signal } => (
            Level::Debug,
            "ignored, app gone".into(),
            vec![("signal", sig(*signal))],
        ),
        NoteKind::HookStarted { kind, pid } => (
            Level::Info,
            hook(kind, "started"),
            vec![("pid", (*pid).into())],
        ),
        NoteKind::HookEnded {
            kind,
            pid,
            end,
            took,
            fatal,
        } => {
            let (level, words) = match (end.ok(), fatal, end) {
                (false, true, _) => (Level::Error, "failed"),
                (false, false, _) => (Level::Warn, "failed"),
                (true, _, HookEnd::Exited(_)) => (Level::Info, "exited"),
                (true, _, HookEnd::Answered(_)) => (Level::Info, "answered"),
            };
            let fields = vec![
                ("pid", (*pid).into()),
                hook_end(end),
                ("took", (*took).into()),
            ];
            (level, hook(kind, words), fields)
        }
        NoteKind::HookCut { kind, pid, took } => {
            let words = match kind {
                HookKind::PostStop => "cut short: its time is up",
                _ => "cut short: the stop signal is due",
            };
            (
                Level::Warn,
                hook(kind, words),
                vec![("pid", (*pid).into()), ("took", (*took).into())],
            )
        }
        NoteKind::HookFailed {
            kind,
            reason,
            fatal,
        } => {
            let level = if *fatal { Level::Error } else { Level::Warn };
            (
                level,
                hook(kind, "hook failed"),
                vec![("error", reason.as_str().into())],
            )
        }
        NoteKind::AppExited {
            pid,
            status: s,
            notable,
        } => (
            info_if(*notable),
            "child exited".into(),
            vec![("pid", (*pid).into()), ("status", status(*s).into())],
        ),
        NoteKind::Reaped {
            pid,
            status: s,
            warn,
        } => {
            let (level, words) = if *warn {
                (Level::Warn, "reaped an orphan")
            } else {
                (Level::Debug, "reaped")
            };
            (
                level,
                words.into(),
                vec![("pid", (*pid).into()), ("status", status(*s).into())],
            )
        }
        NoteKind::OomKilled { pid, memory: m } => {
            let mut fields = vec![("pid", (*pid).into()), ("status", "signal:SIGKILL".into())];
            memory(m, &mut fields);
            (
                Level::Warn,
                "killed by the kernel's OOM killer".into(),
                fields,
            )
        }
        NoteKind::Signalled {
            signal,
            named: n,
            purpose,
        } => {
            let (level, words) = match purpose {
                Purpose::Ask { .. } => (Level::Info, "signalled leftovers"),
                Purpose::Kill { round, .. } if *round > 1 => (Level::Debug, "killing again"),
                Purpose::Kill {
                    cause: KillCause::Deadline,
                    ..
                } => (Level::Warn, "grace period over, killing"),
                Purpose::Kill {
                    cause: KillCause::NoGrace,
                    ..
                } => (Level::Info, "killing leftovers"),
            };
            (
                level,
                words.into(),
                vec![("signal", sig(*signal)), ("pids", named(n))],
            )
        }
        NoteKind::Exiting { ending, notable } => {
            let level = if *notable || ending_troubled(ending) {
                Level::Info
            } else {
                Level::Debug
            };
            (level, "exiting".into(), conclusion(ending))
        }
    }
}

fn ending_troubled(e: &Ending) -> bool {
    e.app_oom.is_some() || !e.oom.is_empty() || e.deadline.is_some() || !e.hooks.is_empty()
}

/// The facts of the last line: always the code, how the app ended and what
/// began the shutdown; then OOM kills, the deadline's kills and hook
/// trouble when there was any.
fn conclusion(e: &Ending) -> Vec<(&'static str, Value)> {
    let mut fields = vec![
        ("code", e.code.into()),
        ("app", status(e.app).into()),
        ("cause", cause(e.cause).into()),
    ];
    if e.app_oom.is_some() || !e.oom.is_empty() {
        fields.push(("oom", Value::from(oom_list(e))));
    }
    if let Some(killed) = &e.deadline {
        fields.push(("killed", pids(killed)));
    }
    if !e.hooks.is_empty() {
        let hooks: Vec<String> = e
            .hooks
            .iter()
            .map(|(k, t)| format!("{}:{}", k.name(), trouble_word(t)))
            .collect();
        fields.push(("hooks", Value::from(hooks.join(","))));
    }
    fields
}

fn oom_list(e: &Ending) -> String {
    let mut who: Vec<String> = e.oom.iter().map(i32::to_string).collect();
    if e.app_oom.is_some() {
        who.insert(0, "app".into());
    }
    who.join(",")
}

fn trouble_word(t: &HookTrouble) -> &'static str {
    match t {
        HookTrouble::Ended(_) => "failed",
        HookTrouble::Unstarted(_) => "unstarted",
        HookTrouble::Cut => "cut",
    }
}

/// The most the kubelet keeps of a termination message.
pub const SUMMARY_LIMIT: usize = 4096;

/// The termination message: a headline with the exit code, then one line
/// per fact, at most [`SUMMARY_LIMIT`] bytes (cut at a line's end).
pub fn summary(e: &Ending) -> String {
    let mut lines = vec![format!("exit code {}: {}", e.code, headline(e))];
    lines.push(format!("app: {}", app_line(e)));
    lines.push(match e.cause {
        Cause::Signal(s) => format!("shutdown: {s} received"),
        Cause::PostStartFailed => "shutdown: the post-start hook failed".into(),
        Cause::AppExited => "shutdown: none, the app ended on its own".into(),
    });
    if let Some(killed) = &e.deadline {
        let who = match killed.is_empty() {
            true => "what was left (no /proc to name it)".to_string(),
            false => format!("pids {}", join(killed)),
        };
        lines.push(format!(
            "deadline: usher's grace period ran out; SIGKILL to {who}"
        ));
    }
    if !e.oom.is_empty() {
        lines.push(format!(
            "oom: the kernel's OOM killer killed pids {}",
            join(&e.oom)
        ));
    }
    for (kind, trouble) in &e.hooks {
        let what = match trouble {
            HookTrouble::Ended(end) => {
                let (key, value) = hook_end(end);
                format!("failed: {key}={}", value_text(&value))
            }
            HookTrouble::Unstarted(why) => format!("could not start: {why}"),
            HookTrouble::Cut => "cut short: its time was up".into(),
        };
        lines.push(format!("{}: {what}", kind.name()));
    }
    let mut out = String::new();
    for line in lines {
        if out.len() + line.len() + 1 > SUMMARY_LIMIT {
            break;
        }
        out.push_str(&line);
        out.push('\n');
    }
    if out.is_empty() {
        // Not even the first line fits (it cannot, but never write nothing).
        let mut cut = SUMMARY_LIMIT;
        let first = format!("exit code {}", e.code);
        while !first.is_char_boundary(cut.min(first.len())) {
            cut -= 1;
        }
        out = first[..cut.min(first.len())].to_string();
    }
    out
}

fn headline(e: &Ending) -> String {
    let after = match e.cause {
        Cause::Signal(s) => format!(" after {s}"),
        _ => String::new(),
    };
    match (e.cause, e.app) {
        (Cause::PostStartFailed, _) => {
            "the post-start hook failed, so usher stopped the app".into()
        }
        _ if e.app_oom.is_some() => "the kernel's OOM killer killed the app".into(),
        (_, Status::Signaled(Signal::KILL)) if e.deadline.is_some() => {
            "usher's deadline came and it killed the app".into()
        }
        (_, Status::Signaled(s)) => format!("the app died of {s}{after}"),
        (_, Status::Exited(c)) if c != e.code => {
            format!("the app exited {c}{after} (reported as {})", e.code)
        }
        (_, Status::Exited(c)) => format!("the app exited {c}{after}"),
    }
}

fn app_line(e: &Ending) -> String {
    match (e.app, e.app_oom) {
        (_, Some(m)) => {
            let mut facts: Vec<String> = Vec::new();
            if let Some(limit) = m.limit {
                facts.push(format!("memory limit {limit} bytes"));
            }
            if let Some(peak) = m.peak {
                facts.push(format!("peak {peak} bytes"));
            }
            let facts = if facts.is_empty() {
                String::new()
            } else {
                format!(" ({})", facts.join(", "))
            };
            format!("killed by SIGKILL from the kernel's OOM killer{facts}")
        }
        (Status::Exited(c), None) => format!("exited {c}"),
        (Status::Signaled(s), None) => format!("died of {s}"),
    }
}

fn join(p: &[i32]) -> String {
    p.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

fn value_text(v: &Value) -> String {
    match v {
        Value::Str(s) => s.clone(),
        Value::Int(n) => n.to_string(),
        Value::Secs(d) => crate::log::secs(*d),
        Value::List(l) => l.iter().map(i64::to_string).collect::<Vec<_>>().join(","),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn ending(code: i32, app: Status, cause: Cause) -> Ending {
        Ending {
            code,
            app,
            app_oom: None,
            cause,
            deadline: None,
            oom: Vec::new(),
            hooks: Vec::new(),
        }
    }

    #[test]
    fn the_termination_message_says_why_for_every_cause() {
        let term = Cause::Signal(Signal::TERM);
        let cases: Vec<(Ending, &[&str])> = vec![
            (
                ending(3, Status::Exited(3), Cause::AppExited),
                &["exit code 3: the app exited 3\n", "shutdown: none"],
            ),
            (
                ending(42, Status::Exited(42), term),
                &[
                    "exit code 42: the app exited 42 after SIGTERM",
                    "shutdown: SIGTERM received",
                ],
            ),
            (
                ending(0, Status::Exited(143), term),
                &["the app exited 143 after SIGTERM (reported as 0)"],
            ),
            (
                ending(143, Status::Signaled(Signal::TERM), term),
                &["exit code 143: the app died of SIGTERM after SIGTERM"],
            ),
            (
                ending(124, Status::Exited(0), Cause::PostStartFailed),
                &[
                    "exit code 124: the post-start hook failed",
                    "shutdown: the post-start hook failed",
                ],
            ),
            (
                Ending {
                    deadline: Some(vec![7, 9]),
                    ..ending(137, Status::Signaled(Signal::KILL), term)
                },
                &[
                    "exit code 137: usher's deadline came",
                    "deadline: usher's grace period ran out; SIGKILL to pids 7,9",
                ],
            ),
            (
                Ending {
                    app_oom: Some(Memory {
                        oom_kills: 1,
                        limit: Some(33554432),
                        peak: Some(33550000),
                    }),
                    ..ending(137, Status::Signaled(Signal::KILL), Cause::AppExited)
                },
                &[
                    "exit code 137: the kernel's OOM killer killed the app",
                    "memory limit 33554432 bytes, peak 33550000 bytes",
                ],
            ),
            (
                Ending {
                    hooks: vec![
                        (
                            HookKind::PreStop,
                            HookTrouble::Ended(HookEnd::Answered(Outcome::Status(503))),
                        ),
                        (HookKind::PostStop, HookTrouble::Cut),
                        (
                            HookKind::PostStart,
                            HookTrouble::Unstarted("not found".into()),
                        ),
                    ],
                    oom: vec![12],
                    ..ending(0, Status::Exited(0), term)
                },
                &[
                    "pre-stop: failed: http=503",
                    "post-stop: cut short",
                    "post-start: could not start: not found",
                    "oom: the kernel's OOM killer killed pids 12",
                ],
            ),
        ];
        for (e, says) in cases {
            let text = summary(&e);
            for s in says {
                assert!(text.contains(s), "{text:?} should say {s:?}");
            }
            assert!(
                !text.contains("OOM") || e.app_oom.is_some() || !e.oom.is_empty(),
                "{text}"
            );
        }
    }

    #[test]
    fn the_termination_message_is_cut_at_4096_bytes_on_a_line_end() {
        let why = "x".repeat(1500);
        let hooks = (0..5)
            .map(|_| (HookKind::PreStop, HookTrouble::Unstarted(why.clone())))
            .collect();
        let e = Ending {
            hooks,
            ..ending(1, Status::Exited(1), Cause::AppExited)
        };
        let text = summary(&e);
        assert!(
            text.len() <= SUMMARY_LIMIT && text.ends_with('\n'),
            "{}",
            text.len()
        );
        assert!(text.starts_with("exit code 1: ") && text.matches("could not start").count() == 2);
    }

    #[test]
    fn the_last_line_carries_the_facts_as_fields() {
        let e = Ending {
            deadline: Some(vec![3, 4]),
            hooks: vec![(HookKind::PreStop, HookTrouble::Cut)],
            ..ending(
                137,
                Status::Signaled(Signal::KILL),
                Cause::Signal(Signal::TERM),
            )
        };
        let keys: Vec<&str> = conclusion(&e).iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, ["code", "app", "cause", "killed", "hooks"]);
        assert_eq!(value_text(&conclusion(&e)[4].1), "pre-stop:cut");
    }
}
