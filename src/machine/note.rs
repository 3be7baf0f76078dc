//! The log lines the machine decides on, with every fact each carries, and the facts of the ending (the last line and the termination message).

use alloc::string::String;
use alloc::vec::Vec;

use alloc::boxed::Box;
use core::time::Duration;

use super::drain::{DrainEnd, DrainSpec};
use super::leftovers::{Named, Target};
use crate::hook::{HookEnd, HookKind};
use crate::process::{Memory, Pid, Status};
use crate::signals::Signal;

/// A line of the log, decided in the machine so that the timeline is testable.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Note {
    /// Time since the shutdown sequence began, once it has.
    pub elapsed: Option<Duration>,
    /// Boxed: a note is rare next to what the action queue carries most (a
    /// signal to send), which then moves a few words, not the largest note.
    pub kind: Box<NoteKind>,
}

/// What began the shutdown sequence.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Cause {
    /// usher received a stop signal.
    Signal(Signal),
    /// The post-start hook failed.
    PostStartFailed,
    /// Nothing asked: the app exited on its own.
    AppExited,
}

/// Why everything left is being SIGKILLed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KillCause {
    /// The grace period ran out.
    Deadline,
    /// The app exited and no grace period lets its leftovers linger.
    NoGrace,
}

/// What a signal for leftovers is for.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Purpose {
    /// The stop signal; `spared_group`: the app's group already had it.
    Ask { spared_group: bool },
    /// SIGKILL; `round` counts the rounds that found something (one after
    /// the first when something forked in between).
    Kill { cause: KillCause, round: u32 },
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NoteKind {
    StopReceived {
        signal: Signal,
        drain: DrainSpec,
        grace: Option<Duration>,
        cause: Cause,
    },
    /// At start-up: the drain would not end before the stop reserve.
    DrainShortened {
        asked: Duration,
        to: Duration,
        grace: Duration,
        reserve: Duration,
    },
    /// A second stop signal ended the drain.
    DrainCut {
        signal: Signal,
    },
    /// An adaptive drain ended, and why.
    DrainOver {
        end: DrainEnd,
    },
    /// The traffic cannot be watched: the drain holds to MAX.
    TrafficUnseen {
        reason: String,
    },
    Forwarded {
        signal: Signal,
        sent: Signal,
        to: Target,
        stop: bool,
    },
    /// Rewritten to 0.
    Dropped {
        signal: Signal,
    },
    /// The app is gone and nothing is left that the signal is for.
    Ignored {
        signal: Signal,
    },
    HookStarted {
        kind: HookKind,
        pid: Pid,
    },
    /// `fatal`: a failure that stopped the container (post-start).
    HookEnded {
        kind: HookKind,
        pid: Pid,
        end: HookEnd,
        took: Duration,
        fatal: bool,
    },
    /// Killed (with its process group): the stop reserve, or the post-stop bound.
    HookCut {
        kind: HookKind,
        pid: Pid,
        took: Duration,
    },
    /// It could not be started; `fatal` as for [`NoteKind::HookEnded`].
    HookFailed {
        kind: HookKind,
        reason: String,
        fatal: bool,
    },
    /// `notable`: a stop signal came before the app exited, or it left
    /// processes behind; a lone app's quiet exit is not worth an info line.
    AppExited {
        pid: Pid,
        status: Status,
        notable: bool,
    },
    /// An orphan (or a hook's leftover) was reaped; `warn`: `-w` asked
    /// for each one to be a warning.
    Reaped {
        pid: Pid,
        status: Status,
        warn: bool,
    },
    /// A process died of SIGKILL while the memory cgroup's OOM-kill counter grew.
    OomKilled {
        pid: Pid,
        memory: Memory,
    },
    Signalled {
        signal: Signal,
        named: Named,
        purpose: Purpose,
    },
    Exiting {
        ending: Box<Ending>,
        notable: bool,
    },
}

/// Trouble a hook had.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HookTrouble {
    /// It ran and failed (an exit code other than 0, an HTTP status outside 200–399).
    Ended(HookEnd),
    /// It could not be started, and why.
    Unstarted(String),
    /// It was killed at the stop reserve or the post-stop bound.
    Cut,
}

/// Why usher exits: the facts of the last log line and the termination message.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Ending {
    /// usher's exit code.
    pub code: i32,
    /// How the app ended.
    pub app: Status,
    /// The kernel's OOM killer killed the app: what the memory cgroup said then.
    pub app_oom: Option<Memory>,
    /// What began the shutdown.
    pub cause: Cause,
    /// usher's deadline came: the pids it SIGKILLed (empty when /proc
    /// could not name them).
    pub deadline: Option<Vec<Pid>>,
    /// Leftovers the OOM killer killed.
    pub oom: Vec<Pid>,
    /// Hooks that failed or were cut short.
    pub hooks: Vec<(HookKind, HookTrouble)>,
}
