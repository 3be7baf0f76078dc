//! The decisions of PID 1 as a pure state machine: events in, actions out, no system calls.
//!
//! Everything worth deciding lives here — what to forward to whom, when a
//! hook runs and what its result means, when the drain ends, whom to signal
//! when the app is gone, when to escalate, when to exit and with what code,
//! and which line goes in the log — so that it can be tested without
//! processes or clocks (`tests/machine.rs`). The driver (`driver.rs`) only
//! turns system calls into [`Event`]s and [`Action`]s into system calls.
//!
//! # Driving it
//! 1. Start the app, then [`Machine::new`] with what start-up found ([`Start`]).
//! 2. For each thing observed, in the order observed, call
//!    [`Machine::handle`] with the monotonic time (a reading earlier than
//!    one already seen counts as that one: time never goes back in here).
//! 3. After each `handle`, take every [`Machine::poll_action`] until `None`
//!    and carry them out in order. [`Action::FindLeftovers`] is a question:
//!    answer it at once with [`Event::Leftovers`] (its answer may queue more
//!    actions behind the ones already taken).
//! 4. Arm one timer for [`Machine::poll_timeout`] and feed [`Event::Timer`]
//!    when it comes; a timer that fires early or late does no harm.
//! 5. Stop at [`Action::Exit`]; nothing comes after it.
//!
//! # Life of the app
//! ```text
//!  Running ──stop signal──▶ Draining ──drain over, pre-stop done──▶ Stopping
//!     │                        │                                        │
//!     └───────────── app reaped (any phase) ─────────────────────────┐ │
//!                                                                    ▼ ▼
//!                 AppExited ──end of the reaping round──▶ Leftovers ──none left──▶ Exited
//! ```
//! Timers, by name ([`Timer`]), counted from the first stop signal (the
//! deadline also from the app's own exit): `Drain` holds the stop signal;
//! `Reserve`, R = min(2 s, grace/2) before the deadline, sends it anyway,
//! cutting a pre-stop hook short, so the app is always asked before it is
//! killed; `Deadline` SIGKILLs everything left.
//!
//! Hooks, by kind ([`HookKind`]): post-start runs alongside the app from
//! the start, and its failure stops the container (exit 124); pre-stop runs
//! when the sequence begins and holds the stop signal until it is done.

use std::collections::VecDeque;
use std::time::Duration;

use crate::http::Outcome;
use crate::process::{Leftover, Pid, Status};
use crate::signals::{Rewrite, Signal};

/// A reading of the monotonic clock (time since boot).
pub type Time = Duration;

/// Where a signal goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// A process group (the app's pgid is its pid); when no process is left
    /// in it, its leader alone (an app that moved itself out with setsid).
    Group(Pid),
    /// One process.
    Process(Pid),
    /// Every process usher may signal (`kill(-1)`): as PID 1, the namespace.
    Everyone,
}

/// The hooks usher can run, by when they run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HookKind {
    /// Alongside the app, from its start; its failure stops the container.
    PostStart,
    /// When the shutdown sequence begins; the stop signal waits for it.
    PreStop,
}

impl HookKind {
    pub const ALL: [HookKind; 2] = [HookKind::PostStart, HookKind::PreStop];

    /// Its name in the log and on the command line.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::PostStart => "post-start",
            HookKind::PreStop => "pre-stop",
        }
    }
}

/// usher's exit code when a failed post-start hook stopped the container,
/// whatever the app's own code: the orchestrator must see a failed start.
pub const EXIT_POST_START: i32 = 124;

/// The longest stop reserve (the kubelet's own two-second extension).
pub const RESERVE: Duration = Duration::from_secs(2);

/// Everything the user configured that shapes the decisions.
#[derive(Clone, Debug)]
pub struct Policy {
    /// Forward to the app alone rather than its process group.
    pub single_child: bool,
    pub rewrite: Rewrite,
    /// Exit codes reported as 0 (`--remap-exit`).
    pub remap_exit: Vec<i32>,
    /// Signals that start the shutdown sequence, in the order given; the
    /// first is what leftovers get when the app exits without being asked.
    pub stop_on: Vec<Signal>,
    pub drain: Duration,
    pub grace: Option<Duration>,
    /// The hooks configured (their commands are the driver's business).
    pub hooks: Vec<HookKind>,
    /// Log each orphan reaped as a warning (tini's `-w`).
    pub warn_on_reap: bool,
}

impl Policy {
    /// How long before the deadline the stop signal goes out at the latest:
    /// min(2 s, grace/2).
    pub fn reserve(&self) -> Option<Duration> {
        self.grace.map(|g| RESERVE.min(g / 2))
    }

    /// The drain, cut so that it ends at the reserve point at the latest.
    pub fn drain(&self) -> Duration {
        match (self.grace, self.reserve()) {
            (Some(g), Some(r)) => self.drain.min(g.saturating_sub(r)),
            _ => self.drain,
        }
    }
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
            hooks: Vec::new(),
            warn_on_reap: false,
        }
    }
}

/// What the driver found at start-up.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Start {
    /// The app, just spawned (its process group is its pid).
    pub app: Pid,
    /// usher's own pid: 1 when it is the namespace's init.
    pub me: Pid,
    /// Standard input is a terminal.
    pub terminal: bool,
}

impl Start {
    pub fn pid1(&self) -> bool {
        self.me == 1
    }

    /// usher is a job of an interactive shell: when the app stops (Ctrl-Z)
    /// usher stops too, and on SIGCONT it hands the terminal back first.
    /// As PID 1, or without a terminal, a stopped app must not freeze usher.
    pub fn job_control(&self) -> bool {
        !self.pid1() && self.terminal
    }
}

/// Where [`Action::FindLeftovers`] must look.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// Every process of usher's PID namespace (usher is its PID 1).
    Namespace,
    /// usher's descendants, and whether the app's process group has members.
    Descendants,
    /// Only whether the app's process group has members: usher has no
    /// child, so it has no descendants to list.
    Group,
}

/// The answer to [`Action::FindLeftovers`].
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Found {
    /// The processes found; `None` when /proc cannot be read.
    pub list: Option<Vec<Leftover>>,
    /// Some process is still in the app's process group.
    pub group_alive: bool,
}

/// Something that happened, as the driver observed it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// usher received a signal (never SIGCHLD: the driver reaps on that);
    /// `sender` is the process that sent it, when one did (`kill`, `sigqueue`).
    Signal { signal: Signal, sender: Option<Pid> },
    /// A child of usher was reaped.
    Reaped { pid: Pid, status: Status },
    /// A child of usher stopped.
    Stopped { pid: Pid },
    /// A stopped child of usher was resumed.
    Continued { pid: Pid },
    /// The driver finished a round of reaping; `children_left` is false when
    /// usher has no child at all any more.
    ReapDone { children_left: bool },
    /// The hook asked for by [`Action::StartHook`] is running.
    HookStarted { kind: HookKind, pid: Pid },
    /// An HTTP hook's child told how its request went (fed just before
    /// the child's [`Event::Reaped`]).
    HookAnswered { pid: Pid, outcome: Outcome },
    /// The hook could not be started, and why.
    HookFailed { kind: HookKind, reason: String },
    /// The answer to [`Action::FindLeftovers`].
    Leftovers(Found),
    /// The time returned by [`Machine::poll_timeout`] has come.
    Timer,
}

/// Something the driver must do.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Action {
    Send {
        signal: Signal,
        to: Target,
    },
    StartHook(HookKind),
    /// List what is left in `Scope`; answer with [`Event::Leftovers`] at once.
    FindLeftovers(Scope),
    Exit(i32),
    Note(Note),
    /// Stop usher itself, so the shell that started it sees its job stop.
    StopSelf,
    /// Give the terminal back to the app's group, if usher holds it.
    Foreground,
}

/// The machine's timers, each with its own meaning. When several are due
/// at once they are handled in this order.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Timer {
    /// Everything left is SIGKILLed (`--grace-period`).
    Deadline,
    /// The stop signal goes out now, even if the drain or the pre-stop hook
    /// is not over ([`Policy::reserve`] before the deadline).
    Reserve,
    /// The stop signal is held until then (`--drain`).
    Drain,
}

impl Timer {
    const ALL: [Timer; 3] = [Timer::Deadline, Timer::Reserve, Timer::Drain];
}

/// Named timers: at most one deadline each.
#[derive(Clone, Copy, Default, Debug)]
struct Timers([Option<Time>; Timer::ALL.len()]);

impl Timers {
    fn set(&mut self, timer: Timer, at: Time) {
        self.0[timer as usize] = Some(at);
    }

    fn clear(&mut self, timer: Timer) {
        self.0[timer as usize] = None;
    }

    fn get(&self, timer: Timer) -> Option<Time> {
        self.0[timer as usize]
    }

    fn next(&self) -> Option<Time> {
        self.0.iter().flatten().min().copied()
    }

    /// Clears and returns the timers due at `now`, in [`Timer::ALL`] order.
    fn take_due(&mut self, now: Time) -> Vec<Timer> {
        let due: Vec<Timer> = Timer::ALL
            .into_iter()
            .filter(|t| self.get(*t).is_some_and(|at| at <= now))
            .collect();
        for t in &due {
            self.clear(*t);
        }
        due
    }
}

/// The phases of the app's life, as usher sees it (see the module doc).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Phase {
    /// The app runs; no stop has been asked for.
    Running,
    /// A stop began; its signal is held for the drain and the pre-stop hook.
    Draining,
    /// The stop signal went to the app; it has not exited yet.
    Stopping,
    /// The app was reaped; its leftovers are dealt with at the end of this
    /// reaping round, when the driver knows whether any are left.
    AppExited(Status),
    /// The app is gone and its leftovers were told; waiting for the last.
    Leftovers(Status),
    /// [`Action::Exit`] was given.
    Exited,
}

impl Phase {
    fn app_alive(self) -> bool {
        matches!(self, Phase::Running | Phase::Draining | Phase::Stopping)
    }
}

/// Why everything left is being SIGKILLed.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum KillCause {
    /// The grace period ran out.
    Deadline,
    /// The app exited and no grace period lets its leftovers linger.
    NoGrace,
}

/// Why leftovers are signalled.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Why {
    /// The stop signal; `except_group`: the app's group already got it (a
    /// second TERM can cut an app's own cleanup short).
    Ask { except_group: bool },
    /// SIGKILL; `round` counts from 1 (later rounds catch late forks).
    Kill { cause: KillCause, round: u32 },
}

/// Whom a signal to leftovers reached, for the log.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Whom {
    Pids(Vec<Pid>),
    /// Nothing was listed, but the app's group has members.
    Group(Pid),
    /// /proc could not be read.
    Unknown,
}

/// Why the shutdown sequence began.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum StopCause {
    /// usher received a stop signal.
    Signal,
    /// The post-start hook failed.
    PostStartFailed,
}

/// How a hook ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HookEnd {
    /// A command hook, as it exited.
    Exited(Status),
    /// An HTTP hook, as its request went.
    Answered(Outcome),
}

impl HookEnd {
    /// Exit 0, or an HTTP status 200–399.
    pub fn ok(&self) -> bool {
        match self {
            HookEnd::Exited(status) => *status == Status::Exited(0),
            HookEnd::Answered(outcome) => outcome.ok(),
        }
    }
}

/// A line of the log, decided here so that the timeline is testable.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Note {
    /// Time since the shutdown sequence began, once it has.
    pub elapsed: Option<Duration>,
    pub kind: NoteKind,
}

#[derive(Clone, PartialEq, Eq, Debug)]
pub enum NoteKind {
    StopReceived {
        signal: Signal,
        drain: Duration,
        grace: Option<Duration>,
        cause: StopCause,
    },
    /// At start-up: the drain would not end before the stop reserve.
    DrainShortened {
        asked: Duration,
        to: Duration,
        grace: Duration,
        reserve: Duration,
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
    /// Killed (with its process group) at the reserve point.
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
    Signalled {
        signal: Signal,
        whom: Whom,
        why: Why,
    },
    Exiting {
        code: i32,
        notable: bool,
    },
}

#[derive(Clone, PartialEq, Eq, Debug)]
enum Hook {
    Idle,
    Starting {
        since: Time,
    },
    Running {
        pid: Pid,
        since: Time,
        answer: Option<Outcome>,
    },
    Done,
}

/// The shutdown sequence, from its first stop signal (or the app's exit).
#[derive(Clone, Copy, Debug)]
struct Stop {
    t0: Time,
    signal: Signal,
    /// Begun by a stop signal, not by the app's own exit.
    asked: bool,
}

/// The SIGKILL escalation, once begun.
#[derive(Clone, Copy, Debug)]
struct Kill {
    cause: KillCause,
    /// The app was still running: its SIGKILL death is usher's doing (137).
    app_alive: bool,
    /// Rounds that found something to kill.
    rounds: u32,
}

/// A signal for leftovers, waiting for the answer to [`Action::FindLeftovers`].
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Job {
    /// The stop signal (as rewritten); see [`Why::Ask`].
    Ask {
        signal: Signal,
        except_group: bool,
    },
    Kill(KillCause),
}

impl Job {
    /// The signal, and whether the app's group is to be spared.
    fn parts(self) -> (Signal, bool) {
        match self {
            Job::Ask {
                signal,
                except_group,
            } => (signal, except_group),
            Job::Kill(_) => (Signal::KILL, false),
        }
    }
}

#[derive(Debug)]
pub struct Machine {
    policy: Policy,
    start: Start,
    phase: Phase,
    timers: Timers,
    hooks: [Hook; HookKind::ALL.len()],
    stop: Option<Stop>,
    kill: Option<Kill>,
    /// A stop signal went to the app's whole group.
    group_told: bool,
    /// The app exited leaving processes behind.
    lingered: bool,
    /// What the last reaping round said.
    children_left: bool,
    /// Since the last reaping round, a search found nothing left.
    found_empty: bool,
    /// Signals waiting for the answer to [`Action::FindLeftovers`], each
    /// with whether what needs no list was sent already.
    jobs: Vec<(Job, bool)>,
    /// A failed post-start hook stopped the container.
    start_failed: bool,
    /// Children of usher that are stopped now (SIGSTOP, SIGTSTP, ...).
    stopped: Vec<Pid>,
    now: Time,
    actions: VecDeque<Action>,
}

impl Machine {
    /// A machine watching the freshly spawned app.
    pub fn new(policy: Policy, start: Start, now: Time) -> Machine {
        let mut machine = Machine {
            policy,
            start,
            phase: Phase::Running,
            timers: Timers::default(),
            hooks: [const { Hook::Idle }; HookKind::ALL.len()],
            stop: None,
            kill: None,
            group_told: false,
            lingered: false,
            children_left: true,
            found_empty: false,
            jobs: Vec::new(),
            start_failed: false,
            stopped: Vec::new(),
            now,
            actions: VecDeque::new(),
        };
        machine.on_start();
        machine
    }

    /// The app was just spawned: say what does not fit, start the post-start hook.
    fn on_start(&mut self) {
        let p = &self.policy;
        if let (true, Some(grace), Some(reserve)) = (p.drain() < p.drain, p.grace, p.reserve()) {
            let (asked, to) = (p.drain, p.drain());
            self.note(NoteKind::DrainShortened {
                asked,
                to,
                grace,
                reserve,
            });
        }
        if self.policy.hooks.contains(&HookKind::PostStart) {
            self.start_hook(HookKind::PostStart);
        }
    }

    /// Feeds one event observed at monotonic time `now`.
    pub fn handle(&mut self, event: Event, now: Time) {
        self.now = now.max(self.now);
        if self.phase == Phase::Exited {
            return;
        }
        match event {
            Event::Signal { signal, sender } => self.on_signal(signal, sender),
            Event::Reaped { pid, status } => self.on_reaped(pid, status),
            Event::Stopped { pid } => self.on_stopped(pid),
            Event::Continued { pid } => self.stopped.retain(|&p| p != pid),
            Event::ReapDone { children_left } => self.on_reap_done(children_left),
            Event::HookStarted { kind, pid } => self.on_hook_started(kind, pid),
            Event::HookAnswered { pid, outcome } => self.on_hook_answered(pid, outcome),
            Event::HookFailed { kind, reason } => self.on_hook_failed(kind, reason),
            Event::Leftovers(found) => self.on_leftovers(found),
            Event::Timer => self.on_timer(),
        }
    }

    /// The next thing to do, in order; `None` when there is nothing.
    #[must_use]
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When the driver must next feed [`Event::Timer`]; `None`: no timer.
    #[must_use]
    pub fn poll_timeout(&self) -> Option<Time> {
        self.timers.next()
    }

    /// When `timer` is set to fire, if it is.
    pub fn timer(&self, timer: Timer) -> Option<Time> {
        self.timers.get(timer)
    }

    pub fn phase(&self) -> Phase {
        self.phase
    }

    /// Whether usher has decided to exit (after [`Action::Exit`]).
    pub fn exited(&self) -> bool {
        self.phase == Phase::Exited
    }

    // ---- signals

    fn on_signal(&mut self, signal: Signal, sender: Option<Pid>) {
        if !signal.forwardable() || self.raised_by_own_write(signal, sender) {
            return;
        }
        let Some(sent) = self.policy.rewrite.apply(signal) else {
            // Rewritten to 0: dropped, whatever it is, stop signal or not.
            return self.note(NoteKind::Dropped { signal });
        };
        let is_stop = self.policy.stop_on.contains(&signal);
        if signal == Signal::CONT && self.start.job_control() && self.phase.app_alive() {
            // Resumed by `fg`: the app must own the terminal before it runs.
            self.push(Action::Foreground);
        }
        match self.phase {
            Phase::Running if is_stop => self.begin_stop(signal, StopCause::Signal),
            Phase::Draining if is_stop => {
                self.note(NoteKind::DrainCut { signal });
                self.forward_stop(signal, sent);
            }
            Phase::Running | Phase::Draining | Phase::Stopping => {
                self.forward(signal, sent, is_stop)
            }
            Phase::AppExited(_) | Phase::Leftovers(_) if is_stop && self.kill.is_none() => {
                self.find_then(Job::Ask {
                    signal: sent,
                    except_group: false,
                });
            }
            _ => self.note(NoteKind::Ignored { signal }),
        }
    }

    /// A SIGPIPE or SIGXFSZ the kernel raised in usher because its own write
    /// failed (its log on a broken pipe, or past RLIMIT_FSIZE): about usher's
    /// stderr, not for the app, which it would kill. The kernel marks these
    /// as sent by usher itself; nobody else can.
    fn raised_by_own_write(&self, signal: Signal, sender: Option<Pid>) -> bool {
        (signal == Signal::PIPE || signal == Signal::XFSZ) && sender == Some(self.start.me)
    }

    fn begin_stop(&mut self, signal: Signal, cause: StopCause) {
        let now = self.now;
        self.stop = Some(Stop {
            t0: now,
            signal,
            asked: true,
        });
        self.phase = Phase::Draining;
        let drain = self.policy.drain();
        self.note(NoteKind::StopReceived {
            signal,
            drain,
            grace: self.policy.grace,
            cause,
        });
        if !drain.is_zero() {
            self.timers.set(Timer::Drain, now.saturating_add(drain));
        }
        if let (Some(grace), Some(reserve)) = (self.policy.grace, self.policy.reserve()) {
            let deadline = now.saturating_add(grace);
            self.timers.set(Timer::Deadline, deadline);
            self.timers
                .set(Timer::Reserve, deadline.saturating_sub(reserve));
        }
        if self.policy.hooks.contains(&HookKind::PreStop) {
            self.start_hook(HookKind::PreStop);
        }
        self.try_forward_stop();
    }

    /// Forwards the held stop signal once the drain is over and the pre-stop hook is done.
    fn try_forward_stop(&mut self) {
        let Some(stop) = self.stop else { return };
        let held = self.timers.get(Timer::Drain).is_some() || self.hook_busy(HookKind::PreStop);
        if self.phase == Phase::Draining && !held {
            if let Some(sent) = self.policy.rewrite.apply(stop.signal) {
                self.forward_stop(stop.signal, sent);
            }
        }
    }

    fn forward_stop(&mut self, signal: Signal, sent: Signal) {
        self.phase = Phase::Stopping;
        self.timers.clear(Timer::Drain);
        self.timers.clear(Timer::Reserve);
        self.forward(signal, sent, true);
    }

    /// Sends `sent` (what `signal` is rewritten to) to the app; a stop
    /// signal is followed by SIGCONT when a child of usher is stopped, so
    /// that a stopped app sees it now rather than never (as systemd does)
    /// and an app that is not stopped never sees a SIGCONT it was not sent.
    fn forward(&mut self, signal: Signal, sent: Signal, stop: bool) {
        let to = if self.policy.single_child {
            Target::Process(self.start.app)
        } else {
            Target::Group(self.start.app)
        };
        self.group_told |= stop && !self.policy.single_child;
        self.note(NoteKind::Forwarded {
            signal,
            sent,
            to,
            stop,
        });
        self.push(Action::Send { signal: sent, to });
        if stop {
            self.resume(to);
        }
    }

    // ---- children

    fn on_reaped(&mut self, pid: Pid, status: Status) {
        self.stopped.retain(|&p| p != pid);
        if pid == self.start.app && self.phase.app_alive() {
            return self.on_app_exit(status);
        }
        match self.running_hook(pid) {
            Some((kind, since, answer)) => {
                let end = match answer {
                    Some(outcome) => HookEnd::Answered(outcome),
                    None => HookEnd::Exited(status),
                };
                let took = self.now.saturating_sub(since);
                let ok = end.ok();
                let fatal = !ok && self.fails_the_start(kind);
                self.note(NoteKind::HookEnded {
                    kind,
                    pid,
                    end,
                    took,
                    fatal,
                });
                self.hook_done(kind, ok);
            }
            None => {
                let warn = self.policy.warn_on_reap;
                self.note(NoteKind::Reaped { pid, status, warn });
            }
        }
    }

    fn on_stopped(&mut self, pid: Pid) {
        if !self.stopped.contains(&pid) {
            self.stopped.push(pid);
        }
        if self.start.job_control() && pid == self.start.app && self.phase.app_alive() {
            self.push(Action::StopSelf);
        }
    }

    /// SIGCONT after a stop signal, when something usher can see is stopped.
    fn resume(&mut self, to: Target) {
        if !self.stopped.is_empty() {
            let signal = Signal::CONT;
            self.push(Action::Send { signal, to });
        }
    }

    /// The app is gone: no more forwarding; the deadline (if no stop came
    /// first) counts from now.
    fn on_app_exit(&mut self, status: Status) {
        self.phase = Phase::AppExited(status);
        self.timers.clear(Timer::Drain);
        if self.stop.is_none() {
            let now = self.now;
            let signal = self.policy.stop_on.first().copied().unwrap_or(Signal::TERM);
            self.stop = Some(Stop {
                t0: now,
                signal,
                asked: false,
            });
            if let (Some(grace), None) = (self.policy.grace, self.kill) {
                self.timers.set(Timer::Deadline, now.saturating_add(grace));
            }
        }
    }

    fn on_reap_done(&mut self, children_left: bool) {
        self.children_left = children_left;
        self.found_empty = false;
        match self.phase {
            Phase::AppExited(status) => self.after_app_exit(status),
            Phase::Leftovers(_) if children_left => {
                self.lingered = true;
                if let Some(kill) = self.kill {
                    // Something forked between the kill and now: kill again.
                    self.kill_all(kill.cause);
                }
            }
            _ => {}
        }
        self.exit_if_done();
    }

    /// At the end of the round that reaped the app: leftovers get the stop
    /// signal; without a grace period, SIGKILL at once.
    fn after_app_exit(&mut self, status: Status) {
        self.phase = Phase::Leftovers(status);
        self.lingered = self.children_left;
        let asked = self.stop.is_some_and(|s| s.asked);
        self.note(NoteKind::AppExited {
            pid: self.start.app,
            status,
            notable: asked || self.children_left,
        });
        if self.kill.is_some() {
            return; // already escalating; repeated while anything is left
        }
        let signal = self.stop.map_or(Signal::TERM, |s| s.signal);
        if let Some(sent) = self.policy.rewrite.apply(signal) {
            self.find_then(Job::Ask {
                signal: sent,
                except_group: self.group_told,
            });
        }
        if self.policy.grace.is_none() {
            self.kill_all(KillCause::NoGrace);
        }
    }

    // ---- hooks

    fn start_hook(&mut self, kind: HookKind) {
        self.hooks[kind as usize] = Hook::Starting { since: self.now };
        self.push(Action::StartHook(kind));
    }

    fn on_hook_started(&mut self, kind: HookKind, pid: Pid) {
        if let Hook::Starting { since } = self.hooks[kind as usize] {
            let answer = None;
            self.hooks[kind as usize] = Hook::Running { pid, since, answer };
            self.note(NoteKind::HookStarted { kind, pid });
        }
    }

    fn on_hook_answered(&mut self, pid: Pid, outcome: Outcome) {
        for hook in &mut self.hooks {
            if let Hook::Running { pid: p, answer, .. } = hook {
                if *p == pid {
                    *answer = Some(outcome.clone());
                }
            }
        }
    }

    fn on_hook_failed(&mut self, kind: HookKind, reason: String) {
        if let Hook::Starting { .. } = self.hooks[kind as usize] {
            let fatal = self.fails_the_start(kind);
            self.note(NoteKind::HookFailed {
                kind,
                reason,
                fatal,
            });
            self.hook_done(kind, false);
        }
    }

    /// The hook running as `pid`, when it started, and its HTTP answer.
    fn running_hook(&self, pid: Pid) -> Option<(HookKind, Time, Option<Outcome>)> {
        HookKind::ALL
            .into_iter()
            .find_map(|kind| match &self.hooks[kind as usize] {
                Hook::Running {
                    pid: p,
                    since,
                    answer,
                } if *p == pid => Some((kind, *since, answer.clone())),
                _ => None,
            })
    }

    /// A failure of this hook now stops the container: a post-start hook
    /// while the app runs and no stop was asked for (the kubelet's rule).
    fn fails_the_start(&self, kind: HookKind) -> bool {
        kind == HookKind::PostStart && self.phase == Phase::Running
    }

    fn hook_done(&mut self, kind: HookKind, ok: bool) {
        let fatal = !ok && self.fails_the_start(kind);
        self.hooks[kind as usize] = Hook::Done;
        match kind {
            HookKind::PostStart if fatal => {
                self.start_failed = true;
                let signal = self.policy.stop_on.first().copied().unwrap_or(Signal::TERM);
                self.begin_stop(signal, StopCause::PostStartFailed);
            }
            HookKind::PostStart => {}
            HookKind::PreStop => self.try_forward_stop(),
        }
    }

    /// At the reserve point: a pre-stop hook still running is killed with
    /// its process group, and the stop signal goes out.
    fn on_reserve(&mut self) {
        if self.phase != Phase::Draining {
            return;
        }
        if let Hook::Running { pid, since, .. } = self.hooks[HookKind::PreStop as usize] {
            self.hooks[HookKind::PreStop as usize] = Hook::Done;
            let took = self.now.saturating_sub(since);
            let kind = HookKind::PreStop;
            self.note(NoteKind::HookCut { kind, pid, took });
            let (signal, to) = (Signal::KILL, Target::Group(pid));
            self.push(Action::Send { signal, to });
        }
        self.timers.clear(Timer::Drain);
        self.try_forward_stop();
    }

    fn hook_busy(&self, kind: HookKind) -> bool {
        matches!(
            self.hooks[kind as usize],
            Hook::Starting { .. } | Hook::Running { .. }
        )
    }

    // ---- timers

    fn on_timer(&mut self) {
        for timer in self.timers.take_due(self.now) {
            match timer {
                Timer::Deadline => self.kill_all(KillCause::Deadline),
                Timer::Reserve => self.on_reserve(),
                Timer::Drain => self.try_forward_stop(),
            }
        }
    }

    // ---- leftovers and the end

    fn kill_all(&mut self, cause: KillCause) {
        let app_alive = self.phase.app_alive();
        self.kill.get_or_insert(Kill {
            cause,
            app_alive,
            rounds: 0,
        });
        self.timers = Timers::default();
        self.find_then(Job::Kill(cause));
    }

    /// Signals leftovers: at once where no list is needed — as PID 1
    /// everyone, and the app's group while the app still runs (the
    /// deadline) — then asks where the rest are ([`Self::on_leftovers`]).
    /// Signal first: at the deadline every moment counts, and the dead stay
    /// listed as zombies until reaped anyway.
    fn find_then(&mut self, job: Job) {
        // As PID 1 every process of the namespace is usher's child (orphans
        // are reparented to it), so no child means nothing left.
        let empty = self.start.pid1() && !self.children_left;
        if self.found_empty || empty {
            return;
        }
        let (signal, except_group) = job.parts();
        let first = !except_group && (self.start.pid1() || self.phase.app_alive());
        if first {
            let to = match self.start.pid1() {
                true => Target::Everyone,
                false => Target::Group(self.start.app),
            };
            self.send_leftover(job, signal, to);
        }
        if self.jobs.is_empty() {
            let scope = match (self.start.pid1(), self.children_left) {
                (true, _) => Scope::Namespace,
                (false, true) => Scope::Descendants,
                (false, false) => Scope::Group,
            };
            self.push(Action::FindLeftovers(scope));
        }
        self.jobs.push((job, first));
    }

    fn on_leftovers(&mut self, found: Found) {
        let me = self.start.me;
        let list: Option<Vec<Leftover>> = found
            .list
            .map(|l| l.into_iter().filter(|p| p.pid != me).collect());
        let empty = list.as_ref().is_some_and(Vec::is_empty) && !found.group_alive;
        if empty && !self.phase.app_alive() {
            // The common case, an app that exited alone: nothing to signal,
            // and no need to look again until the next reaping round.
            self.found_empty = true;
            self.jobs.clear();
        }
        for (job, sent) in std::mem::take(&mut self.jobs) {
            self.signal_leftovers(job, sent, list.as_deref(), found.group_alive);
        }
        self.exit_if_done();
    }

    /// What the list adds to what [`Self::find_then`] sent first (`sent`):
    /// not PID 1, the app's group and each descendant outside it — never
    /// `kill(-1)` outside a namespace, which would reach everything the user
    /// owns; as PID 1, after the group already got the stop signal, what is
    /// outside it, or everyone when /proc cannot tell.
    fn signal_leftovers(
        &mut self,
        job: Job,
        sent: bool,
        list: Option<&[Leftover]>,
        group_alive: bool,
    ) {
        let app = self.start.app;
        let (signal, except_group) = job.parts();
        let outside: Vec<Pid> = list
            .unwrap_or_default()
            .iter()
            .filter(|p| p.group != app)
            .map(|p| p.pid)
            .collect();
        let mut targets: Vec<Target> = match (self.start.pid1(), list) {
            (true, _) if !except_group => Vec::new(),
            // No /proc as PID 1: better a second signal than none outside the group.
            (true, None) => vec![Target::Everyone],
            _ => outside.iter().map(|&p| Target::Process(p)).collect(),
        };
        if !self.start.pid1() && !except_group && !sent && group_alive {
            targets.insert(0, Target::Group(app));
        }
        for to in targets {
            self.send_leftover(job, signal, to);
        }
        let mut pids = match list {
            None => return self.note_signalled(job, signal, Whom::Unknown),
            Some(_) if except_group => outside,
            Some(l) => l.iter().map(|p| p.pid).collect(),
        };
        pids.sort_unstable();
        let whom = match pids.is_empty() {
            false => Whom::Pids(pids),
            true if group_alive && !except_group => Whom::Group(app),
            true => return,
        };
        self.note_signalled(job, signal, whom);
    }

    /// One signal to leftovers; a stop signal brings SIGCONT where needed.
    fn send_leftover(&mut self, job: Job, signal: Signal, to: Target) {
        self.push(Action::Send { signal, to });
        if let Job::Ask { .. } = job {
            self.resume(to);
        }
    }

    fn note_signalled(&mut self, job: Job, signal: Signal, whom: Whom) {
        let why = match (job, self.kill.as_mut()) {
            (Job::Ask { except_group, .. }, _) => Why::Ask { except_group },
            (Job::Kill(cause), Some(kill)) => {
                kill.rounds += 1;
                Why::Kill {
                    cause,
                    round: kill.rounds,
                }
            }
            (Job::Kill(cause), None) => Why::Kill { cause, round: 1 },
        };
        self.note(NoteKind::Signalled { signal, whom, why });
    }

    fn exit_if_done(&mut self) {
        if let Phase::Leftovers(status) = self.phase {
            if !self.children_left && self.jobs.is_empty() {
                self.exit(status);
            }
        }
    }

    fn exit(&mut self, status: Status) {
        // 137 even if remapped: usher killed it. But an app that exited by
        // itself just before the kill landed keeps its own code.
        let killed = self.kill.is_some_and(|k| k.app_alive);
        let code = if self.start_failed {
            EXIT_POST_START
        } else if killed && status == Status::Signaled(Signal::KILL) {
            128 + Signal::KILL.number()
        } else if self.policy.remap_exit.contains(&status.code()) {
            0
        } else {
            status.code()
        };
        let notable = self.stop.is_some_and(|s| s.asked) || self.lingered;
        self.note(NoteKind::Exiting { code, notable });
        self.push(Action::Exit(code));
        self.phase = Phase::Exited;
        self.timers = Timers::default();
    }

    fn note(&mut self, kind: NoteKind) {
        let elapsed = self.stop.map(|s| self.now.saturating_sub(s.t0));
        self.push(Action::Note(Note { elapsed, kind }));
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }
}
