//! The decisions of PID 1 as a pure state machine: events in, actions out, no system calls.
//!
//! The driver (`driver.rs`) turns signals, reaped children and timer expiries
//! into [`Event`]s, feeds them to [`Machine::handle`], then carries out every
//! [`Action`] from [`Machine::poll_action`] and arms its one timer for
//! [`Machine::poll_timeout`]. Everything worth deciding — what to forward to
//! whom, when the drain ends, when to escalate, when to exit and with what
//! code — is decided here, so it can be tested without processes or clocks.

use std::collections::VecDeque;
use std::time::Duration;

use crate::signals::{Rewrite, Signal};

pub type Pid = i32;

/// A reading of the monotonic clock (time since boot).
pub type Time = Duration;

/// How a process ended, as `waitpid` reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    Exited(i32),
    Signaled(Signal),
}

impl Status {
    /// The shell's convention: the exit code, or 128+N for death by signal N.
    pub fn code(self) -> i32 {
        match self {
            Status::Exited(c) => c & 0xff,
            Status::Signaled(s) => 128 + s.number(),
        }
    }
}

/// Where forwarded signals go.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// The main child's whole process group (its pgid is its pid).
    Group(Pid),
    /// The main child alone (`--single-child`).
    Child(Pid),
}

/// Everything the user configured that shapes the decisions.
#[derive(Clone, Debug)]
pub struct Policy {
    pub single_child: bool,
    pub rewrite: Rewrite,
    /// Exit codes reported as 0 (`--remap-exit`).
    pub remap_exit: Vec<i32>,
    /// Signals that start the shutdown sequence, in the order given; the
    /// first is what stragglers get when the app exits without being asked.
    pub stop_on: Vec<Signal>,
    pub drain: Duration,
    pub grace: Option<Duration>,
    pub pre_stop: bool,
    /// usher is not PID 1 and behaves as a job of an interactive shell:
    /// when the app stops (Ctrl-Z), usher stops too; on SIGCONT it hands
    /// the terminal back to the app before forwarding.
    pub job_control: bool,
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            single_child: false,
            rewrite: Rewrite::default(),
            remap_exit: Vec::new(),
            stop_on: vec![Signal::TERM, Signal::INT],
            drain: Duration::ZERO,
            grace: None,
            pre_stop: false,
            job_control: false,
        }
    }
}

/// Something that happened, as the driver observed it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Event {
    /// usher received a signal (never SIGCHLD: the driver reaps on that).
    Signal(Signal),
    /// A child of usher was reaped.
    Reaped { pid: Pid, status: Status },
    /// A child of usher stopped (reported only with `job_control`).
    Stopped { pid: Pid },
    /// The driver finished a round of reaping; `children_left` is false when
    /// usher has no child at all any more.
    ReapDone { children_left: bool },
    /// The pre-stop hook asked for by [`Action::StartHook`] is running.
    HookStarted(Pid),
    /// The pre-stop hook could not be started (the driver said why).
    HookFailed,
    /// The time returned by [`Machine::poll_timeout`] has come.
    Timer,
}

/// Why everything left is being SIGKILLed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KillCause {
    /// The grace period ran out.
    Deadline,
    /// The app exited and no grace period lets its leftovers linger.
    NoGrace,
}

/// Something the driver must do.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    /// Send `signal` to `to`; with `resume`, follow it with SIGCONT, so a
    /// stopped app sees its stop signal now rather than never (as systemd does).
    Forward {
        signal: Signal,
        to: Target,
        resume: bool,
    },
    StartHook,
    /// Send `signal` to what the app left behind: its group (as PID 1, the
    /// namespace). `except_group`: the group already got this stop signal
    /// forwarded, so only processes outside it need it (a second TERM can
    /// cut an app's own cleanup short).
    SignalStragglers {
        signal: Signal,
        t: Duration,
        except_group: bool,
    },
    /// SIGKILL every process that is left (as PID 1, the namespace).
    KillAll {
        cause: KillCause,
        t: Duration,
    },
    Exit(i32),
    Note(Note),
    /// Stop usher itself, so the shell that started it sees its job stop.
    StopSelf,
    /// Give the terminal back to the app's group, if usher holds it.
    Foreground,
}

/// A line of the log, decided here so that the timeline is testable.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Note {
    /// Time since the shutdown sequence began, once it has.
    pub t: Option<Duration>,
    pub what: What,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum What {
    StopReceived {
        signal: Signal,
        drain: Duration,
        grace: Option<Duration>,
    },
    DrainCut {
        signal: Signal,
    },
    Forwarded {
        signal: Signal,
        sent: Signal,
        to: Target,
        stop: bool,
    },
    Dropped {
        signal: Signal,
    },
    Ignored {
        signal: Signal,
    },
    HookStarted {
        pid: Pid,
    },
    HookExited {
        pid: Pid,
        status: Status,
        took: Duration,
    },
    /// `notable`: a stop signal came before the app exited, or it left
    /// processes behind; a lone app's quiet exit is not worth an info line.
    ChildExited {
        pid: Pid,
        status: Status,
        notable: bool,
    },
    Reaped {
        pid: Pid,
        status: Status,
    },
    /// `notable`: a stop signal came, or the app left processes behind;
    /// a quiet exit of a lone app is not worth an info line.
    Exiting {
        code: i32,
        notable: bool,
    },
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Hook {
    Idle,
    Starting { since: Time },
    Running { pid: Pid, since: Time },
    Done,
}

/// The shutdown sequence, from its first stop signal (or the app's exit).
#[derive(Clone, Copy, Debug)]
struct Stop {
    t0: Time,
    signal: Signal,
    drain_end: Time,
    deadline: Option<Time>,
    forwarded: bool,
}

#[derive(Debug)]
pub struct Machine {
    policy: Policy,
    child: Pid,
    main: Option<Status>,
    hook: Hook,
    stop: Option<Stop>,
    /// KillAll issued; `Some(true)` when the main child was still alive then.
    killed: Option<bool>,
    /// A stop signal came before the app exited.
    asked: bool,
    /// The app exited leaving processes behind.
    lingered: bool,
    /// The app's exit was logged and its leftovers dealt with.
    main_reported: bool,
    /// A stop signal was forwarded to the app's whole group.
    group_told: bool,
    children_left: bool,
    exited: bool,
    now: Time,
    actions: VecDeque<Action>,
}

impl Machine {
    /// A machine watching the freshly spawned main child `child`.
    pub fn new(policy: Policy, child: Pid, now: Time) -> Machine {
        Machine {
            policy,
            child,
            main: None,
            hook: Hook::Idle,
            stop: None,
            killed: None,
            asked: false,
            lingered: false,
            main_reported: false,
            group_told: false,
            children_left: true,
            exited: false,
            now,
            actions: VecDeque::new(),
        }
    }

    /// Feeds one event observed at monotonic time `now`.
    pub fn handle(&mut self, event: Event, now: Time) {
        self.now = now.max(self.now);
        if self.exited {
            return;
        }
        match event {
            Event::Signal(sig) => self.on_signal(sig),
            Event::Reaped { pid, status } => self.on_reaped(pid, status),
            Event::Stopped { pid } => self.on_stopped(pid),
            Event::ReapDone { children_left } => self.on_reap_done(children_left),
            Event::HookStarted(pid) => self.on_hook_started(pid),
            Event::HookFailed => self.on_hook_gone(),
            Event::Timer => self.on_timer(),
        }
    }

    /// The next thing to do, in order; `None` when there is nothing.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the driver must next feed [`Event::Timer`]; `None`: no timer.
    pub fn poll_timeout(&self) -> Option<Time> {
        let stop = self.stop.as_ref()?;
        if self.exited || self.killed.is_some() {
            return None;
        }
        let drain = (self.forward_pending() && !self.hook_running()).then_some(stop.drain_end);
        match (drain, stop.deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Whether usher has decided to exit (after [`Action::Exit`]).
    pub fn exited(&self) -> bool {
        self.exited
    }

    fn on_signal(&mut self, sig: Signal) {
        if !sig.forwardable() {
            return;
        }
        let is_stop = self.policy.stop_on.contains(&sig);
        if sig.number() == libc::SIGCONT && self.policy.job_control && self.main.is_none() {
            // Resumed by `fg`: the app must own the terminal before it runs.
            self.push(Action::Foreground);
        }
        if self.main.is_some() {
            self.on_signal_after_exit(sig, is_stop);
        } else if !is_stop {
            self.forward(sig, false);
        } else if self.stop.is_none() {
            self.begin_stop(sig);
        } else if self.forward_pending() {
            self.note(What::DrainCut { signal: sig });
            self.forward_stop(sig);
        } else {
            self.forward(sig, true);
        }
    }

    /// The app is gone; only its leftovers remain. A stop signal asks them
    /// again; anything else has no one to go to.
    fn on_signal_after_exit(&mut self, sig: Signal, is_stop: bool) {
        match self.policy.rewrite.apply(sig) {
            Some(sent) if is_stop && self.killed.is_none() => {
                let t = self.since_t0();
                self.push(Action::SignalStragglers {
                    signal: sent,
                    t,
                    except_group: false,
                });
            }
            _ => self.note(What::Ignored { signal: sig }),
        }
    }

    fn begin_stop(&mut self, sig: Signal) {
        let now = self.now;
        let stop = Stop {
            t0: now,
            signal: sig,
            drain_end: now.saturating_add(self.policy.drain),
            deadline: self.policy.grace.map(|g| now.saturating_add(g)),
            forwarded: false,
        };
        self.stop = Some(stop);
        self.note(What::StopReceived {
            signal: sig,
            drain: self.policy.drain,
            grace: self.policy.grace,
        });
        if self.policy.pre_stop {
            self.hook = Hook::Starting { since: now };
            self.push(Action::StartHook);
        }
        self.try_forward_stop();
    }

    /// Forwards the first stop signal once the drain is over and the hook is done.
    fn try_forward_stop(&mut self) {
        let Some(stop) = self.stop else { return };
        if self.forward_pending() && !self.hook_running() && self.now >= stop.drain_end {
            self.forward_stop(stop.signal);
        }
    }

    fn forward_stop(&mut self, sig: Signal) {
        if let Some(stop) = self.stop.as_mut() {
            stop.forwarded = true;
        }
        self.forward(sig, true);
    }

    fn forward(&mut self, sig: Signal, stop: bool) {
        let to = if self.policy.single_child {
            Target::Child(self.child)
        } else {
            Target::Group(self.child)
        };
        match self.policy.rewrite.apply(sig) {
            Some(sent) => {
                self.group_told |= stop && !self.policy.single_child;
                self.note(What::Forwarded {
                    signal: sig,
                    sent,
                    to,
                    stop,
                });
                self.push(Action::Forward {
                    signal: sent,
                    to,
                    resume: stop,
                });
            }
            None => self.note(What::Dropped { signal: sig }),
        }
    }

    fn on_reaped(&mut self, pid: Pid, status: Status) {
        if pid == self.child && self.main.is_none() {
            self.on_main_exit(status);
        } else if let Hook::Running { pid: hook, since } = self.hook {
            if hook == pid {
                let took = self.now.saturating_sub(since);
                self.note(What::HookExited { pid, status, took });
                self.on_hook_gone();
                return;
            }
            self.note(What::Reaped { pid, status });
        } else {
            self.note(What::Reaped { pid, status });
        }
    }

    fn on_stopped(&mut self, pid: Pid) {
        if self.policy.job_control && pid == self.child && self.main.is_none() {
            self.push(Action::StopSelf);
        }
    }

    /// The app is gone: no more forwarding; the deadline (if no stop came
    /// first) counts from now. What to do about leftovers waits for the end
    /// of this reaping round, when the driver knows whether any are left.
    fn on_main_exit(&mut self, status: Status) {
        self.main = Some(status);
        self.asked = self.stop.is_some();
        let now = self.now;
        let stop = self.stop.get_or_insert(Stop {
            t0: now,
            signal: self.policy.stop_on.first().copied().unwrap_or(Signal::TERM),
            drain_end: now,
            deadline: self.policy.grace.map(|g| now.saturating_add(g)),
            forwarded: true,
        });
        stop.forwarded = true;
    }

    /// Leftovers get the stop signal; without a grace period, SIGKILL at once.
    fn after_main_exit(&mut self, status: Status, children_left: bool) {
        let notable = self.asked || children_left;
        self.note(What::ChildExited {
            pid: self.child,
            status,
            notable,
        });
        if self.killed.is_some() {
            return; // already escalated; repeated below while anything is left
        }
        let t = self.since_t0();
        let sig = self.stop.map_or(Signal::TERM, |s| s.signal);
        if let Some(sent) = self.policy.rewrite.apply(sig) {
            let except_group = self.group_told;
            self.push(Action::SignalStragglers {
                signal: sent,
                t,
                except_group,
            });
        }
        if self.policy.grace.is_none() {
            self.kill_all(KillCause::NoGrace);
        }
    }

    fn on_hook_started(&mut self, pid: Pid) {
        if let Hook::Starting { since } = self.hook {
            self.hook = Hook::Running { pid, since };
            self.note(What::HookStarted { pid });
        }
    }

    fn on_hook_gone(&mut self) {
        self.hook = Hook::Done;
        self.try_forward_stop();
    }

    fn on_reap_done(&mut self, children_left: bool) {
        self.children_left = children_left;
        let Some(status) = self.main else { return };
        if children_left {
            self.lingered = true;
        }
        if !self.main_reported {
            self.main_reported = true;
            self.after_main_exit(status, children_left);
        } else if children_left && self.killed.is_some() {
            // Something forked between the kill and now: kill again.
            let cause = if self.policy.grace.is_some() {
                KillCause::Deadline
            } else {
                KillCause::NoGrace
            };
            let t = self.since_t0();
            self.push(Action::KillAll { cause, t });
        }
        if !children_left {
            self.exit();
        }
    }

    fn on_timer(&mut self) {
        let Some(stop) = self.stop else { return };
        if self.killed.is_none() && stop.deadline.is_some_and(|d| self.now >= d) {
            self.kill_all(KillCause::Deadline);
        } else {
            self.try_forward_stop();
        }
    }

    fn kill_all(&mut self, cause: KillCause) {
        if self.killed.is_none() {
            self.killed = Some(self.main.is_none());
        }
        let t = self.since_t0();
        self.push(Action::KillAll { cause, t });
    }

    fn exit(&mut self) {
        let Some(status) = self.main else { return };
        // 137 even if remapped: usher killed it. But an app that exited by
        // itself just before the kill landed keeps its own code.
        let code = if self.killed == Some(true) && status == Status::Signaled(Signal::KILL) {
            128 + Signal::KILL.number()
        } else if self.policy.remap_exit.contains(&status.code()) {
            0
        } else {
            status.code()
        };
        let notable = self.asked || self.lingered;
        self.note(What::Exiting { code, notable });
        self.push(Action::Exit(code));
        self.exited = true;
    }

    fn forward_pending(&self) -> bool {
        self.main.is_none() && self.stop.is_some_and(|s| !s.forwarded)
    }

    fn hook_running(&self) -> bool {
        matches!(self.hook, Hook::Starting { .. } | Hook::Running { .. })
    }

    fn since_t0(&self) -> Duration {
        self.stop
            .map_or(Duration::ZERO, |s| self.now.saturating_sub(s.t0))
    }

    fn note(&mut self, what: What) {
        let t = self.stop.map(|s| self.now.saturating_sub(s.t0));
        self.push(Action::Note(Note { t, what }));
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }
}
