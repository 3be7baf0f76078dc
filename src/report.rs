//! How the state machine's notes read in the log: the shutdown timeline.
//!
//! The machine decides which note is written and carries every fact the
//! line needs; this module only picks the words and the level for each kind.

use std::time::Duration;

use crate::http::Outcome;
use crate::log::{Level, Logger, Value};
use crate::machine::{HookEnd, KillCause, Note, NoteKind, StopCause, Target, Whom, Why};
use crate::process::Status;

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

fn grace(g: Option<Duration>) -> Value {
    match g {
        Some(d) => Value::Secs(d),
        None => Value::from("none"),
    }
}

fn whom(w: &Whom) -> Value {
    match w {
        Whom::Pids(p) => Value::List(p.iter().map(|&p| p.into()).collect()),
        Whom::Group(g) => Value::from(format!("group:{g}")),
        Whom::Unknown => Value::from("unknown (no /proc)"),
    }
}

/// The level of a note's line, and the words it starts with.
fn headline(kind: &NoteKind) -> (Level, &'static str) {
    let info_if = |notable: bool| if notable { Level::Info } else { Level::Debug };
    match kind {
        NoteKind::StopReceived { cause, .. } => match cause {
            StopCause::Signal => (Level::Info, "stop received"),
            StopCause::PostStartFailed => (Level::Info, "stopping: the post-start hook failed"),
        },
        NoteKind::DrainShortened { .. } => (
            Level::Warn,
            "the drain would end after the stop reserve, shortened",
        ),
        NoteKind::DrainCut { .. } => (Level::Info, "drain cut short"),
        NoteKind::Forwarded { stop, .. } => (info_if(*stop), "forwarded"),
        NoteKind::Dropped { .. } => (Level::Debug, "dropped"),
        NoteKind::Ignored { .. } => (Level::Debug, "ignored, app gone"),
        NoteKind::HookStarted { .. } => (Level::Info, "started"),
        NoteKind::HookEnded { end, fatal, .. } => match (end, end.ok(), fatal) {
            (_, false, true) => (Level::Error, "failed"),
            (_, false, false) => (Level::Warn, "failed"),
            (HookEnd::Exited(_), true, _) => (Level::Info, "exited"),
            (HookEnd::Answered(_), true, _) => (Level::Info, "answered"),
        },
        NoteKind::HookCut { .. } => (Level::Warn, "cut short: the stop signal is due"),
        NoteKind::HookFailed { fatal: true, .. } => (Level::Error, "hook failed"),
        NoteKind::HookFailed { .. } => (Level::Warn, "hook failed"),
        NoteKind::AppExited { notable, .. } => (info_if(*notable), "child exited"),
        NoteKind::Reaped { warn: true, .. } => (Level::Warn, "reaped an orphan"),
        NoteKind::Reaped { .. } => (Level::Debug, "reaped"),
        NoteKind::Signalled { why, .. } => match why {
            Why::Ask { .. } => (Level::Info, "signalled leftovers"),
            Why::Kill { round, .. } if *round > 1 => (Level::Debug, "killing again"),
            Why::Kill {
                cause: KillCause::Deadline,
                ..
            } => (Level::Warn, "grace period over, killing"),
            Why::Kill {
                cause: KillCause::NoGrace,
                ..
            } => (Level::Info, "killing leftovers"),
        },
        NoteKind::Exiting { notable, .. } => (info_if(*notable), "exiting"),
    }
}

/// Writes one note as a log line at the level its importance deserves.
pub fn note(log: &Logger, n: &Note) {
    let (level, words) = headline(&n.kind);
    // The hot path is a forwarded signal at debug level: build nothing
    // when nobody will read it.
    if !log.enabled(level) {
        return;
    }
    let sig = |s: &crate::signals::Signal| Value::from(s.to_string());
    let (event, fields): (String, Vec<(&str, Value)>) = match &n.kind {
        NoteKind::StopReceived {
            signal,
            drain,
            grace: g,
            ..
        } => (
            words.into(),
            vec![
                ("signal", sig(signal)),
                ("drain", (*drain).into()),
                ("grace", grace(*g)),
            ],
        ),
        NoteKind::DrainShortened {
            asked,
            to,
            grace: g,
            reserve,
        } => (
            words.into(),
            vec![
                ("drain", (*asked).into()),
                ("to", (*to).into()),
                ("grace", (*g).into()),
                ("reserve", (*reserve).into()),
            ],
        ),
        NoteKind::DrainCut { signal }
        | NoteKind::Dropped { signal }
        | NoteKind::Ignored { signal } => (words.into(), vec![("signal", sig(signal))]),
        NoteKind::Forwarded {
            signal, sent, to, ..
        } => {
            let mut fields = vec![("signal", sig(signal))];
            if sent != signal {
                fields.push(("sent", sig(sent)));
            }
            fields.push(("to", target(*to).into()));
            (words.into(), fields)
        }
        NoteKind::HookStarted { kind, pid } => (
            format!("{} {words}", kind.name()),
            vec![("pid", (*pid).into())],
        ),
        NoteKind::HookEnded {
            kind,
            pid,
            end,
            took,
            ..
        } => {
            let result = match end {
                HookEnd::Exited(s) => ("status", status(*s).into()),
                HookEnd::Answered(Outcome::Status(code)) => ("http", i32::from(*code).into()),
                HookEnd::Answered(Outcome::Failed(why)) => ("error", why.as_str().into()),
            };
            (
                format!("{} {words}", kind.name()),
                vec![("pid", (*pid).into()), result, ("took", (*took).into())],
            )
        }
        NoteKind::HookCut { kind, pid, took } => (
            format!("{} {words}", kind.name()),
            vec![("pid", (*pid).into()), ("took", (*took).into())],
        ),
        NoteKind::HookFailed { kind, reason, .. } => (
            format!("{} {words}", kind.name()),
            vec![("error", reason.as_str().into())],
        ),
        NoteKind::AppExited { pid, status: s, .. } | NoteKind::Reaped { pid, status: s, .. } => (
            words.into(),
            vec![("pid", (*pid).into()), ("status", status(*s).into())],
        ),
        NoteKind::Signalled {
            signal, whom: w, ..
        } => (
            words.into(),
            vec![("signal", sig(signal)), ("pids", whom(w))],
        ),
        NoteKind::Exiting { code, .. } => (words.into(), vec![("code", (*code).into())]),
    };
    log.log(level, n.elapsed, &event, &fields);
}
