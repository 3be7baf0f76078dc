//! How the state machine's notes read in the log: the shutdown timeline.

use std::time::Duration;

use crate::log::{Level, Logger, Value};
use crate::machine::{Note, Status, Target, What};

pub fn status(s: Status) -> String {
    match s {
        Status::Exited(c) => format!("exit:{c}"),
        Status::Signaled(sig) => format!("signal:{sig}"),
    }
}

pub fn target(t: Target) -> String {
    match t {
        Target::Group(p) => format!("group:{p}"),
        Target::Child(p) => format!("pid:{p}"),
    }
}

fn grace(g: Option<Duration>) -> Value {
    match g {
        Some(d) => Value::Secs(d),
        None => Value::from("none"),
    }
}

/// Writes one note as a log line at the level its importance deserves.
pub fn note(log: &Logger, n: &Note) {
    // The hot path is a forwarded signal at debug level: skip building its
    // fields when nobody will read them.
    if let What::Forwarded { stop: false, .. } = n.what {
        if !log.enabled(Level::Debug) {
            return;
        }
    }
    let t = n.t;
    match &n.what {
        What::StopReceived {
            signal,
            drain,
            grace: g,
        } => log.log(
            Level::Info,
            t,
            "stop received",
            &[
                ("signal", signal.to_string().into()),
                ("drain", (*drain).into()),
                ("grace", grace(*g)),
            ],
        ),
        What::DrainCut { signal } => log.log(
            Level::Info,
            t,
            "drain cut short",
            &[("signal", signal.to_string().into())],
        ),
        What::Forwarded {
            signal,
            sent,
            to,
            stop,
        } => {
            let mut fields = vec![("signal", Value::from(signal.to_string()))];
            if sent != signal {
                fields.push(("sent", sent.to_string().into()));
            }
            fields.push(("to", target(*to).into()));
            let level = if *stop { Level::Info } else { Level::Debug };
            log.log(level, t, "forwarded", &fields);
        }
        What::Dropped { signal } => log.log(
            Level::Debug,
            t,
            "dropped",
            &[("signal", signal.to_string().into())],
        ),
        What::Ignored { signal } => log.log(
            Level::Debug,
            t,
            "ignored, app gone",
            &[("signal", signal.to_string().into())],
        ),
        What::HookStarted { pid } => log.log(
            Level::Info,
            t,
            "pre-stop started",
            &[("pid", (*pid).into())],
        ),
        What::HookExited {
            pid,
            status: s,
            took,
        } => log.log(
            Level::Info,
            t,
            "pre-stop exited",
            &[
                ("pid", (*pid).into()),
                ("status", status(*s).into()),
                ("took", (*took).into()),
            ],
        ),
        What::ChildExited {
            pid,
            status: s,
            notable,
        } => {
            let level = if *notable { Level::Info } else { Level::Debug };
            log.log(
                level,
                t,
                "child exited",
                &[("pid", (*pid).into()), ("status", status(*s).into())],
            );
        }
        What::Reaped { pid, status: s } => log.log(
            Level::Debug,
            t,
            "reaped",
            &[("pid", (*pid).into()), ("status", status(*s).into())],
        ),
        What::Exiting { code, notable } => {
            let level = if *notable { Level::Info } else { Level::Debug };
            log.log(level, t, "exiting", &[("code", (*code).into())]);
        }
    }
}
