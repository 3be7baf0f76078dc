//! The decisions of PID 1 as a pure state machine: events in, actions out, no system calls.
//!
//! Everything worth deciding lives here — what to forward to whom, when a
//! hook runs and what its result means, when the drain ends, whom to signal
//! when the app is gone, when to escalate, when to exit and with what code,
//! and which line goes in the log — so that it can be tested without
//! processes or clocks (`tests/machine.rs`). The loop that drives it is
//! written once, in [`crate::event_loop`]; the real world (`driver.rs`) and
//! the tests' in-memory one only turn events into calls and back.
//!
//! # The contract
//! [`Machine::new`] once the app runs; then, one at a time and in the order
//! observed, [`Machine::handle`] each event with the monotonic time (a
//! reading earlier than one already seen counts as that one); after each,
//! every [`Machine::poll_action`] until `None`, carried out in order. Some
//! actions are questions ([`Action::StartHook`], [`Action::Census`],
//! [`Action::Look`]): their answer is the next event handled, before
//! anything else is waited for. [`Machine::poll_timeout`] says when to feed
//! [`Event::Timer`] (early or late does no harm). Nothing after
//! [`Action::Exit`].
//!
//! # Life of the app ([`Life`])
//! ```text
//!  Running ──stop signal──▶ Draining ──drain over, pre-stop done──▶ Stopping ──deadline──▶ Killing
//!     │                        │                                       │                     │
//!     └─────────────────────── app reaped (any of these) ─────────────┴─────────────────────┤
//!                                                                                           ▼
//!   Exited ◀── post-stop done ── PostStop ◀── nobody left ── Gone ◀── end of that round ── Reaped
//! ```
//! Timers by name ([`Timer`]), counted from the first stop signal (the
//! deadline also from the app's own exit): `Drain` holds the stop signal
//! (an adaptive drain's MAX; `Sample` is its next look at the traffic);
//! `Reserve`, R = min(2 s, grace/2) before the deadline, sends it anyway,
//! cutting a pre-stop hook short, so the app is always asked before it is
//! killed; `Deadline` SIGKILLs everything left (in PostStop: cuts the hook).

use alloc::boxed::Box;
use alloc::string::String;
use alloc::vec;
use alloc::vec::Vec;

use alloc::collections::VecDeque;
use core::time::Duration;

mod drain;
mod leftovers;
mod note;
mod timers;

pub use drain::{DrainEnd, DrainSpec, Rate, Verdict, Watch, FLOOR, PERIOD};
pub use leftovers::{Census, Named, Scope, Situation, Target};
pub use note::{Cause, Ending, HookTrouble, KillCause, Note, NoteKind, Purpose};
pub use timers::{Timer, Timers};

use crate::codes;
use crate::hook::{HookAction, HookEnd, HookKind, Outcome};
use crate::process::{Memory, Pid, Status, Traffic};
use crate::signals::{Rewrite, Signal};

/// A reading of the monotonic clock (time since boot).
pub type Time = Duration;

/// The longest stop reserve (the kubelet's own two-second extension).
pub const RESERVE: Duration = Duration::from_secs(2);
/// How long a post-stop hook may run when there is no grace period.
pub const POST_STOP_BOUND: Duration = Duration::from_secs(5);

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
    pub drain: DrainSpec,
    pub grace: Option<Duration>,
    /// The hooks, by kind: the one place they are configured.
    pub hooks: [Option<HookAction>; HookKind::ALL.len()],
    /// Log each orphan reaped as a warning (tini's `-w`).
    pub warn_on_reap: bool,
    /// Note every signal forwarded, not only stop signals: those lines are
    /// debug-level, so with less verbose logs the most frequent thing an
    /// init does builds no note at all.
    pub note_forwards: bool,
}

impl Policy {
    /// How long before the deadline the stop signal goes out at the latest:
    /// min(2 s, grace/2).
    pub fn reserve(&self) -> Option<Duration> {
        self.grace.map(|g| RESERVE.min(g / 2))
    }

    /// The drain, cut so that it ends at the reserve point at the latest.
    pub fn drain(&self) -> DrainSpec {
        match (self.grace, self.reserve()) {
            (Some(g), Some(r)) => self.drain.cut(g.saturating_sub(r)),
            _ => self.drain,
        }
    }

    pub fn hook(&self, kind: HookKind) -> Option<&HookAction> {
        self.hooks[kind as usize].as_ref()
    }

    /// The signal of a sequence no signal began (a failed post-start, the
    /// app's own exit): the first of `--stop-on`.
    fn first_stop_signal(&self) -> Signal {
        self.stop_on.first().copied().unwrap_or(Signal::TERM)
    }
}

impl Default for Policy {
    fn default() -> Self {
        Policy {
            single_child: false,
            rewrite: Rewrite::default(),
            remap_exit: Vec::new(),
            stop_on: vec![Signal::TERM, Signal::INT],
            drain: DrainSpec::Fixed(Duration::ZERO),
            grace: None,
            hooks: [const { None }; HookKind::ALL.len()],
            warn_on_reap: false,
            note_forwards: true,
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
    /// The memory cgroup's counters, if usher can read them.
    pub memory: Option<Memory>,
}

impl Start {
    pub fn pid1(&self) -> bool {
        self.me == 1
    }

    /// usher is a job of an interactive shell: when the app is suspended
    /// (Ctrl-Z) usher suspends itself too, and on SIGCONT it hands the
    /// terminal back first. As PID 1, or without a terminal, a suspended app
    /// must not freeze usher.
    pub fn job_control(&self) -> bool {
        !self.pid1() && self.terminal
    }
}

/// Something that happened, as the driver observed it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Event {
    /// usher received a signal (never SIGCHLD: the driver reaps on that);
    /// `sender` is the process that sent it, when one did (`kill`, `sigqueue`).
    Signal { signal: Signal, sender: Option<Pid> },
    /// A child of usher was reaped; `memory`, read only for a death by
    /// SIGKILL, is what its memory cgroup says then.
    Reaped {
        pid: Pid,
        status: Status,
        memory: Option<Memory>,
    },
    /// A child of usher was suspended (SIGSTOP, SIGTSTP, ...).
    Suspended { pid: Pid },
    /// A suspended child of usher was resumed.
    Resumed { pid: Pid },
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
    /// The answer to [`Action::Census`].
    Census { errand: Errand, census: Census },
    /// The answer to [`Action::Look`]: the traffic, or why it cannot be seen.
    Traffic(Result<Traffic, String>),
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
    /// Start this hook; answered by [`Event::HookStarted`] or [`Event::HookFailed`].
    StartHook(HookKind, Box<HookAction>),
    /// List who is left where the errand's situation says, then answer with
    /// [`Event::Census`] carrying the errand back.
    Census(Errand),
    /// Look at the app's traffic; answered by [`Event::Traffic`].
    Look,
    Note(Note),
    /// Suspend usher itself, so the shell that started it sees its job stop.
    Suspend,
    /// Give the terminal back to the app's group, if usher holds it.
    Foreground,
    /// Show that the shutdown began where other processes can see it (for
    /// `usher --check --ready`).
    ShowStopping,
    /// Exit with `ending.code`; nothing comes after it.
    Exit(Box<Ending>),
}

/// A signal for leftovers, waiting for the census that says who they are.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Errand {
    /// The stop signal, as rewritten.
    Ask {
        signal: Signal,
        at: Situation,
    },
    Kill {
        cause: KillCause,
        at: Situation,
    },
}

impl Errand {
    pub fn signal(&self) -> Signal {
        match self {
            Errand::Ask { signal, .. } => *signal,
            Errand::Kill { .. } => Signal::KILL,
        }
    }

    pub fn situation(&self) -> &Situation {
        match self {
            Errand::Ask { at, .. } | Errand::Kill { at, .. } => at,
        }
    }
}

/// The shutdown sequence, from its first stop signal (or the app's own exit).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Stop {
    pub t0: Time,
    /// The stop signal as received (rewritten when forwarded).
    pub signal: Signal,
    pub cause: Cause,
    /// The stop signal went to the app.
    pub forwarded: bool,
}

/// How the stop signal is held while draining.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Drain {
    /// Until [`Timer::Drain`]; `then`: the reason to log when it comes.
    Fixed { then: Option<DrainEnd> },
    /// Watching the traffic (`--drain MIN..MAX`), [`Timer::Drain`] at MAX.
    Watching(Watch),
    /// Done; the pre-stop hook may still hold the signal.
    Over,
}

/// The SIGKILL escalation, once begun.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Kill {
    pub cause: KillCause,
    /// The app was still running: its SIGKILL death is usher's doing (137).
    pub app_alive: bool,
    /// Rounds that found something to kill.
    pub rounds: u32,
}

/// The app's life as usher sees it (see the module doc); each phase holds
/// what is true in it.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Life {
    /// The app runs; no stop has been asked for.
    Running,
    /// A stop began; its signal is held for the drain and the pre-stop hook.
    Draining { stop: Stop, drain: Drain },
    /// The stop signal went to the app; it has not exited yet.
    Stopping { stop: Stop },
    /// The deadline came while the app ran: everything got SIGKILL.
    Killing { stop: Stop, kill: Kill },
    /// The app was reaped; its leftovers are dealt with at the end of this
    /// reaping round, when the driver knows whether any child is left.
    Reaped {
        stop: Stop,
        status: Status,
        kill: Option<Kill>,
    },
    /// The app is gone and its leftovers were told; waiting for the last.
    /// `lingered`: it left processes behind. `found_none`: a census since
    /// the last reaping round found nobody (no need to look again before
    /// the next one, whatever signals come).
    Gone {
        stop: Stop,
        status: Status,
        kill: Option<Kill>,
        lingered: bool,
        found_none: bool,
    },
    /// Nobody is left; the post-stop hook runs, the ending is decided.
    PostStop {
        stop: Stop,
        ending: Ending,
        notable: bool,
        kill: Option<Kill>,
    },
    /// [`Action::Exit`] was given.
    Exited,
}

/// A hook's process, by kind.
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

#[derive(Debug)]
pub struct Machine {
    policy: Policy,
    start: Start,
    now: Time,
    life: Life,
    hooks: [Hook; HookKind::ALL.len()],
    timers: Timers,
    /// Children of usher suspended now: a stop signal needs a SIGCONT behind it.
    suspended: Vec<Pid>,
    /// What the last reaping round said: some child of usher is left.
    children_left: bool,
    /// Censuses asked for and not answered yet.
    awaiting: u32,
    /// The OOM-kill counter as far as deaths explain it: the reading at
    /// start, plus one per death put down to the OOM killer.
    oom_counted: Option<u64>,
    /// Facts for the ending, gathered as they happen.
    deadline_killed: Option<Vec<Pid>>,
    app_oom: Option<Memory>,
    oom: Vec<Pid>,
    troubles: Vec<(HookKind, HookTrouble)>,
    actions: VecDeque<Action>,
}

impl Machine {
    /// A machine watching the freshly spawned app.
    pub fn new(policy: Policy, start: Start, now: Time) -> Machine {
        let mut machine = Machine {
            policy,
            start,
            now,
            life: Life::Running,
            hooks: [const { Hook::Idle }; HookKind::ALL.len()],
            timers: Timers::default(),
            suspended: Vec::new(),
            children_left: true,
            awaiting: 0,
            oom_counted: start.memory.map(|m| m.oom_kills),
            deadline_killed: None,
            app_oom: None,
            oom: Vec::new(),
            troubles: Vec::new(),
            actions: VecDeque::with_capacity(8),
        };
        machine.on_start();
        machine
    }

    /// The app was just spawned: say what does not fit, start the post-start hook.
    fn on_start(&mut self) {
        let p = &self.policy;
        let (asked, to) = (p.drain.max(), p.drain().max());
        if let (true, Some(grace), Some(reserve)) = (to < asked, p.grace, p.reserve()) {
            self.note(NoteKind::DrainShortened {
                asked,
                to,
                grace,
                reserve,
            });
        }
        self.start_hook(HookKind::PostStart);
    }

    /// Feeds one event observed at monotonic time `now`.
    pub fn handle(&mut self, event: Event, now: Time) {
        self.now = now.max(self.now);
        if self.exited() {
            return;
        }
        match event {
            Event::Signal { signal, sender } => self.on_signal(signal, sender),
            Event::Reaped {
                pid,
                status,
                memory,
            } => self.on_reaped(pid, status, memory),
            Event::Suspended { pid } => self.on_suspended(pid),
            Event::Resumed { pid } => self.suspended.retain(|&p| p != pid),
            Event::ReapDone { children_left } => self.on_reap_done(children_left),
            Event::HookStarted { kind, pid } => self.on_hook_started(kind, pid),
            Event::HookAnswered { pid, outcome } => self.on_hook_answered(pid, outcome),
            Event::HookFailed { kind, reason } => self.on_hook_failed(kind, reason),
            Event::Census { errand, census } => self.on_census(errand, census),
            Event::Traffic(look) => self.on_traffic(look),
            Event::Timer => self.on_timers(),
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

    pub fn life(&self) -> &Life {
        &self.life
    }

    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// Whether usher has decided to exit (after [`Action::Exit`]).
    pub fn exited(&self) -> bool {
        matches!(self.life, Life::Exited)
    }

    fn app_alive(&self) -> bool {
        matches!(
            self.life,
            Life::Running | Life::Draining { .. } | Life::Stopping { .. } | Life::Killing { .. }
        )
    }

    fn stop(&self) -> Option<&Stop> {
        match &self.life {
            Life::Running | Life::Exited => None,
            Life::Draining { stop, .. }
            | Life::Stopping { stop }
            | Life::Killing { stop, .. }
            | Life::Reaped { stop, .. }
            | Life::Gone { stop, .. }
            | Life::PostStop { stop, .. } => Some(stop),
        }
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
        if signal == Signal::CONT && self.start.job_control() && self.app_alive() {
            // Resumed by `fg`: the app must own the terminal before it runs.
            self.push(Action::Foreground);
        }
        match self.life {
            Life::Running if is_stop => self.begin_stop(Cause::Signal(signal)),
            Life::Draining { drain, .. } if is_stop => {
                // Only the pre-stop hook may be holding it: no drain to cut.
                if drain != Drain::Over {
                    self.note(NoteKind::DrainCut { signal });
                }
                self.forward_stop(signal, sent);
            }
            Life::Running
            | Life::Draining { .. }
            | Life::Stopping { .. }
            | Life::Killing { .. } => self.forward(signal, sent, is_stop),
            Life::Reaped { kill: None, .. } | Life::Gone { kill: None, .. } if is_stop => {
                let at = self.situation(false);
                self.signal_leftovers(Errand::Ask { signal: sent, at });
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

    /// The sequence begins: hold the stop signal for the drain and the
    /// pre-stop hook, and count the deadline from now.
    fn begin_stop(&mut self, cause: Cause) {
        let now = self.now;
        let signal = match cause {
            Cause::Signal(signal) => signal,
            _ => self.policy.first_stop_signal(),
        };
        let spec = self.policy.drain();
        let drain = match spec {
            DrainSpec::Fixed(d) if d.is_zero() => Drain::Over,
            DrainSpec::Fixed(d) => {
                self.timers.set(Timer::Drain, now.saturating_add(d));
                Drain::Fixed { then: None }
            }
            DrainSpec::Range { max, .. } => {
                self.timers.set(Timer::Drain, now.saturating_add(max));
                Drain::Watching(Watch::new(now))
            }
        };
        let stop = Stop {
            t0: now,
            signal,
            cause,
            forwarded: false,
        };
        self.life = Life::Draining { stop, drain };
        let grace = self.policy.grace;
        self.note(NoteKind::StopReceived {
            signal,
            drain: spec,
            grace,
            cause,
        });
        self.push(Action::ShowStopping);
        if let Drain::Watching(_) = drain {
            self.push(Action::Look);
        }
        if let (Some(grace), Some(reserve)) = (grace, self.policy.reserve()) {
            let deadline = now.saturating_add(grace);
            self.timers.set(Timer::Deadline, deadline);
            self.timers
                .set(Timer::Reserve, deadline.saturating_sub(reserve));
        }
        self.start_hook(HookKind::PreStop);
        self.try_forward_stop();
    }

    /// Forwards the held stop signal once the drain is over and the pre-stop hook is done.
    fn try_forward_stop(&mut self) {
        let Life::Draining {
            stop,
            drain: Drain::Over,
        } = self.life
        else {
            return;
        };
        if self.hook_busy(HookKind::PreStop) {
            return;
        }
        if let Some(sent) = self.policy.rewrite.apply(stop.signal) {
            self.forward_stop(stop.signal, sent);
        }
    }

    fn forward_stop(&mut self, signal: Signal, sent: Signal) {
        let Life::Draining { stop, .. } = self.life else {
            return;
        };
        self.life = Life::Stopping {
            stop: Stop {
                forwarded: true,
                ..stop
            },
        };
        for timer in [Timer::Sample, Timer::Drain, Timer::Reserve] {
            self.timers.clear(timer);
        }
        self.forward(signal, sent, true);
    }

    /// Sends `sent` (what `signal` is rewritten to) to the app; a stop
    /// signal is followed by SIGCONT when a child of usher is suspended, so
    /// that a suspended app sees it now rather than never (as systemd does)
    /// and an app that is not suspended never sees a SIGCONT it was not sent.
    fn forward(&mut self, signal: Signal, sent: Signal, stop: bool) {
        let to = match self.policy.single_child {
            true => Target::Process(self.start.app),
            false => Target::Group(self.start.app),
        };
        if stop || self.policy.note_forwards {
            self.note(NoteKind::Forwarded {
                signal,
                sent,
                to,
                stop,
            });
        }
        self.push(Action::Send { signal: sent, to });
        if stop {
            self.resume(to);
        }
    }

    // ---- the drain

    fn on_traffic(&mut self, look: Result<Traffic, String>) {
        let now = self.now;
        let min_at = match (self.policy.drain(), self.stop()) {
            (DrainSpec::Range { min, .. }, Some(stop)) => stop.t0.saturating_add(min),
            _ => return,
        };
        let Life::Draining {
            drain: Drain::Watching(mut watch),
            stop,
        } = self.life
        else {
            return; // a late answer: the drain is already over
        };
        let look = match look {
            Ok(look) => look,
            Err(reason) => {
                let drain = Drain::Fixed {
                    then: Some(DrainEnd::Unseen),
                };
                self.life = Life::Draining { stop, drain };
                return self.note(NoteKind::TrafficUnseen { reason });
            }
        };
        let verdict = watch.observe(look, now);
        let drain = match verdict {
            Verdict::Over(DrainEnd::NoListener) if now < min_at => {
                self.timers.set(Timer::Drain, min_at);
                Drain::Fixed {
                    then: Some(DrainEnd::NoListener),
                }
            }
            Verdict::Over(end) if now >= min_at => {
                self.timers.clear(Timer::Drain);
                self.note(NoteKind::DrainOver { end });
                Drain::Over
            }
            _ => {
                let next = now.saturating_add(PERIOD);
                let next = if now < min_at { next.min(min_at) } else { next };
                self.timers.set(Timer::Sample, next);
                Drain::Watching(watch)
            }
        };
        self.life = Life::Draining { stop, drain };
        self.try_forward_stop();
    }

    /// The drain's time is up: a fixed drain's end, or an adaptive one's MAX.
    fn on_drain_timer(&mut self) {
        let Life::Draining { stop, drain } = self.life else {
            return;
        };
        let end = match drain {
            Drain::Fixed { then } => then,
            Drain::Watching(w) => Some(DrainEnd::Max {
                rate: w.rate(self.now),
                arrivals: w.arrivals(),
            }),
            Drain::Over => None,
        };
        self.timers.clear(Timer::Sample);
        self.life = Life::Draining {
            stop,
            drain: Drain::Over,
        };
        if let Some(end) = end {
            self.note(NoteKind::DrainOver { end });
        }
        self.try_forward_stop();
    }

    // ---- children

    fn on_reaped(&mut self, pid: Pid, status: Status, memory: Option<Memory>) {
        self.suspended.retain(|&p| p != pid);
        if status == Status::Signaled(Signal::KILL) {
            self.count_oom(pid, memory);
        }
        if pid == self.start.app && self.app_alive() {
            return self.on_app_exit(status);
        }
        match self.running_hook(pid) {
            Some(kind) => self.on_hook_exit(kind, status),
            None => {
                let warn = self.policy.warn_on_reap;
                self.note(NoteKind::Reaped { pid, status, warn });
            }
        }
    }

    /// A SIGKILL death while the OOM-kill counter grew beyond what earlier
    /// deaths explain is the OOM killer's.
    fn count_oom(&mut self, pid: Pid, memory: Option<Memory>) {
        let (Some(memory), Some(counted)) = (memory, self.oom_counted) else {
            return;
        };
        if memory.oom_kills <= counted {
            return;
        }
        self.oom_counted = Some(counted + 1);
        match pid == self.start.app && self.app_alive() {
            true => self.app_oom = Some(memory),
            false => self.oom.push(pid),
        }
        self.note(NoteKind::OomKilled { pid, memory });
    }

    fn on_suspended(&mut self, pid: Pid) {
        if !self.suspended.contains(&pid) {
            self.suspended.push(pid);
        }
        if self.start.job_control() && pid == self.start.app && self.app_alive() {
            self.push(Action::Suspend);
        }
    }

    /// SIGCONT after a stop signal, when something usher can see is suspended.
    fn resume(&mut self, to: Target) {
        if !self.suspended.is_empty() {
            self.push(Action::Send {
                signal: Signal::CONT,
                to,
            });
        }
    }

    /// The app is gone: no more forwarding; the deadline (if no stop came
    /// first) counts from now.
    fn on_app_exit(&mut self, status: Status) {
        let (stop, kill) = match self.life {
            Life::Draining { stop, .. } | Life::Stopping { stop } => (stop, None),
            Life::Killing { stop, kill } => (stop, Some(kill)),
            _ => {
                let signal = self.policy.first_stop_signal();
                let stop = Stop {
                    t0: self.now,
                    signal,
                    cause: Cause::AppExited,
                    forwarded: false,
                };
                if let Some(grace) = self.policy.grace {
                    self.timers
                        .set(Timer::Deadline, self.now.saturating_add(grace));
                }
                (stop, None)
            }
        };
        for timer in [Timer::Sample, Timer::Drain, Timer::Reserve] {
            self.timers.clear(timer);
        }
        self.life = Life::Reaped { stop, status, kill };
    }

    fn on_reap_done(&mut self, children_left: bool) {
        self.children_left = children_left;
        let post_stop_busy = self.hook_busy(HookKind::PostStop);
        match &mut self.life {
            Life::Reaped { stop, status, kill } => {
                let (stop, status, kill) = (*stop, *status, *kill);
                self.after_app_exit(stop, status, kill);
            }
            Life::Gone {
                kill,
                lingered,
                found_none,
                ..
            } => {
                *found_none = false;
                *lingered |= children_left;
                if let (true, Some(kill)) = (children_left, *kill) {
                    // Something forked between the kill and now: kill again.
                    self.kill_all(kill.cause);
                }
            }
            Life::PostStop { kill, .. } if children_left && !post_stop_busy => {
                // The post-stop hook left processes behind: they go now.
                let cause = kill.map_or(KillCause::NoGrace, |k| k.cause);
                self.kill_all(cause);
            }
            _ => {}
        }
        self.exit_if_done();
    }

    /// At the end of the round that reaped the app: leftovers get the stop
    /// signal; without a grace period, SIGKILL at once.
    fn after_app_exit(&mut self, stop: Stop, status: Status, kill: Option<Kill>) {
        let lingered = self.children_left;
        self.life = Life::Gone {
            stop,
            status,
            kill,
            lingered,
            found_none: false,
        };
        let notable = stop.cause != Cause::AppExited || lingered;
        let pid = self.start.app;
        self.note(NoteKind::AppExited {
            pid,
            status,
            notable,
        });
        if kill.is_some() {
            return; // already escalating; repeated while anything is left
        }
        if let Some(signal) = self.policy.rewrite.apply(stop.signal) {
            let at = self.situation(stop.forwarded && !self.policy.single_child);
            self.signal_leftovers(Errand::Ask { signal, at });
        }
        if self.policy.grace.is_none() {
            self.kill_all(KillCause::NoGrace);
        }
    }

    // ---- hooks

    fn start_hook(&mut self, kind: HookKind) {
        if let Some(action) = self.policy.hook(kind).cloned() {
            self.hooks[kind as usize] = Hook::Starting { since: self.now };
            self.push(Action::StartHook(kind, Box::new(action)));
        }
    }

    fn on_hook_started(&mut self, kind: HookKind, pid: Pid) {
        // A child again, whatever the last reaping round said.
        self.children_left = true;
        if let Hook::Starting { since } = self.hooks[kind as usize] {
            self.hooks[kind as usize] = Hook::Running {
                pid,
                since,
                answer: None,
            };
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
            self.troubles
                .push((kind, HookTrouble::Unstarted(reason.clone())));
            self.note(NoteKind::HookFailed {
                kind,
                reason,
                fatal,
            });
            self.hook_done(kind, false);
        }
    }

    fn on_hook_exit(&mut self, kind: HookKind, status: Status) {
        let hook = core::mem::replace(&mut self.hooks[kind as usize], Hook::Done);
        let Hook::Running { pid, since, answer } = hook else {
            return;
        };
        let end = match answer {
            Some(outcome) => HookEnd::Answered(outcome),
            None => HookEnd::Exited(status),
        };
        let (ok, took) = (end.ok(), self.now.saturating_sub(since));
        let fatal = !ok && self.fails_the_start(kind);
        if !ok {
            self.troubles.push((kind, HookTrouble::Ended(end.clone())));
        }
        self.note(NoteKind::HookEnded {
            kind,
            pid,
            end,
            took,
            fatal,
        });
        self.hook_done(kind, ok);
    }

    /// The hook running as `pid`, if one is.
    fn running_hook(&self, pid: Pid) -> Option<HookKind> {
        HookKind::ALL.into_iter().find(
            |&kind| matches!(self.hooks[kind as usize], Hook::Running { pid: p, .. } if p == pid),
        )
    }

    /// A failure of this hook now stops the container: a post-start hook
    /// while the app runs and no stop was asked for (the kubelet's rule).
    fn fails_the_start(&self, kind: HookKind) -> bool {
        kind == HookKind::PostStart && matches!(self.life, Life::Running)
    }

    fn hook_done(&mut self, kind: HookKind, ok: bool) {
        let fatal = !ok && self.fails_the_start(kind);
        self.hooks[kind as usize] = Hook::Done;
        match kind {
            HookKind::PostStart if fatal => self.begin_stop(Cause::PostStartFailed),
            HookKind::PostStart => {}
            HookKind::PreStop => self.try_forward_stop(),
            HookKind::PostStop => self.exit_if_done(),
        }
    }

    fn hook_busy(&self, kind: HookKind) -> bool {
        matches!(
            self.hooks[kind as usize],
            Hook::Starting { .. } | Hook::Running { .. }
        )
    }

    /// Kills a hook that is still running, with its process group, and says so.
    fn cut_hook(&mut self, kind: HookKind) {
        if let Hook::Running { pid, since, .. } = self.hooks[kind as usize] {
            self.hooks[kind as usize] = Hook::Done;
            let took = self.now.saturating_sub(since);
            self.troubles.push((kind, HookTrouble::Cut));
            self.note(NoteKind::HookCut { kind, pid, took });
            self.push(Action::Send {
                signal: Signal::KILL,
                to: Target::Group(pid),
            });
        }
    }

    /// At the reserve point: a pre-stop hook still running is killed with
    /// its process group, and the stop signal goes out.
    fn on_reserve(&mut self) {
        let Life::Draining { stop, .. } = self.life else {
            return;
        };
        self.cut_hook(HookKind::PreStop);
        self.timers.clear(Timer::Drain);
        self.timers.clear(Timer::Sample);
        self.life = Life::Draining {
            stop,
            drain: Drain::Over,
        };
        self.try_forward_stop();
    }

    // ---- timers

    /// Every timer due now, earliest first.
    fn on_timers(&mut self) {
        while let Some((timer, _)) = self.timers.take_due(self.now) {
            match timer {
                Timer::Sample => self.push(Action::Look),
                Timer::Drain => self.on_drain_timer(),
                Timer::Reserve => self.on_reserve(),
                Timer::Deadline if matches!(self.life, Life::PostStop { .. }) => {
                    self.cut_hook(HookKind::PostStop)
                }
                Timer::Deadline => self.kill_all(KillCause::Deadline),
            }
        }
    }

    // ---- leftovers and the end

    fn situation(&self, spare_group: bool) -> Situation {
        Situation {
            pid1: self.start.pid1(),
            app: self.start.app,
            app_alive: self.app_alive(),
            spare_group,
            children_left: self.children_left,
        }
    }

    fn kill_all(&mut self, cause: KillCause) {
        let fresh = Kill {
            cause,
            app_alive: self.app_alive(),
            rounds: 0,
        };
        match &mut self.life {
            Life::Draining { stop, .. } | Life::Stopping { stop } => {
                self.life = Life::Killing {
                    stop: *stop,
                    kill: fresh,
                };
            }
            Life::Reaped { kill, .. } | Life::Gone { kill, .. } | Life::PostStop { kill, .. } => {
                kill.get_or_insert(fresh);
            }
            Life::Running | Life::Killing { .. } | Life::Exited => {}
        }
        if !matches!(self.life, Life::PostStop { .. }) {
            self.timers = Timers::default();
        }
        let at = self.situation(false);
        self.signal_leftovers(Errand::Kill { cause, at });
    }

    /// Signals what needs no list at once, then asks who is left.
    /// Signal first: at the deadline every moment counts, and the dead stay
    /// listed as zombies until reaped anyway.
    fn signal_leftovers(&mut self, errand: Errand) {
        let at = *errand.situation();
        let found_none = matches!(
            self.life,
            Life::Gone {
                found_none: true,
                ..
            }
        );
        if at.nothing_left() || found_none {
            return;
        }
        if let Some(to) = at.at_once() {
            self.send_leftover(&errand, to);
        }
        self.awaiting += 1;
        self.push(Action::Census(errand));
    }

    fn on_census(&mut self, mut errand: Errand, mut census: Census) {
        if self.awaiting == 0 {
            return; // an answer to nothing asked
        }
        self.awaiting -= 1;
        // Where usher stands is the machine's own fact, whatever comes back.
        let (Errand::Ask { at, .. } | Errand::Kill { at, .. }) = &mut errand;
        (at.pid1, at.app) = (self.start.pid1(), self.start.app);
        let me = self.start.me;
        if let Some(list) = &mut census.list {
            list.retain(|p| p.pid != me);
        }
        if let (true, Life::Gone { found_none, .. }) = (census.empty(), &mut self.life) {
            // The common case, an app that exited alone: nothing to signal,
            // and no need to look again until the next reaping round.
            *found_none = true;
        }
        let (targets, named) = errand.situation().after(&census);
        for to in targets {
            self.send_leftover(&errand, to);
        }
        self.note_signalled(&errand, named);
        self.exit_if_done();
    }

    /// One signal to leftovers; a stop signal brings SIGCONT where needed.
    fn send_leftover(&mut self, errand: &Errand, to: Target) {
        self.push(Action::Send {
            signal: errand.signal(),
            to,
        });
        if let Errand::Ask { .. } = errand {
            self.resume(to);
        }
    }

    fn note_signalled(&mut self, errand: &Errand, named: Named) {
        let purpose = match errand {
            Errand::Ask { at, .. } => Purpose::Ask {
                spared_group: at.spare_group,
            },
            Errand::Kill { cause, .. } => {
                if *cause == KillCause::Deadline {
                    let killed = self.deadline_killed.get_or_insert_with(Vec::new);
                    if let Named::Pids(pids) = &named {
                        killed.extend(pids);
                        crate::heapsort::sort(killed);
                        killed.dedup();
                    }
                }
                if named == Named::Nobody {
                    return;
                }
                let round = match self.kill_mut() {
                    Some(kill) => {
                        kill.rounds += 1;
                        kill.rounds
                    }
                    None => 1,
                };
                Purpose::Kill {
                    cause: *cause,
                    round,
                }
            }
        };
        if named != Named::Nobody {
            let signal = errand.signal();
            self.note(NoteKind::Signalled {
                signal,
                named,
                purpose,
            });
        }
    }

    fn kill_mut(&mut self) -> Option<&mut Kill> {
        match &mut self.life {
            Life::Killing { kill, .. } => Some(kill),
            Life::Reaped { kill, .. } | Life::Gone { kill, .. } | Life::PostStop { kill, .. } => {
                kill.as_mut()
            }
            _ => None,
        }
    }

    fn exit_if_done(&mut self) {
        if self.children_left || self.awaiting > 0 {
            return;
        }
        match &self.life {
            Life::Gone {
                stop,
                status,
                kill,
                lingered,
                ..
            } => {
                let (stop, status, kill, lingered) = (*stop, *status, *kill, *lingered);
                self.conclude(stop, status, kill, lingered);
            }
            Life::PostStop {
                ending, notable, ..
            } if !self.hook_busy(HookKind::PostStop) => {
                let (ending, notable) = (ending.clone(), *notable);
                self.exit(ending, notable);
            }
            _ => {}
        }
    }

    /// Nobody is left: decide the exit code, then run the post-stop hook
    /// (within the deadline, or [`POST_STOP_BOUND`] without one) or exit.
    fn conclude(&mut self, stop: Stop, status: Status, kill: Option<Kill>, lingered: bool) {
        // 137 even if remapped: usher killed it. But an app that exited by
        // itself just before the kill landed keeps its own code.
        let killed = kill.is_some_and(|k| k.app_alive) && status == Status::Signaled(Signal::KILL);
        let code = match stop.cause {
            Cause::PostStartFailed => codes::POST_START,
            _ if killed => codes::KILLED,
            _ if self.policy.remap_exit.contains(&status.code()) => 0,
            _ => status.code(),
        };
        let ending = Ending {
            code,
            app: status,
            app_oom: self.app_oom,
            cause: stop.cause,
            deadline: self.deadline_killed.clone(),
            oom: self.oom.clone(),
            hooks: Vec::new(),
        };
        let notable = stop.cause != Cause::AppExited || lingered;
        if self.policy.hook(HookKind::PostStop).is_none() {
            return self.exit(ending, notable);
        }
        let now = self.now;
        let deadline = self.policy.grace.map(|g| stop.t0.saturating_add(g));
        let bound = match (deadline, self.policy.reserve()) {
            (Some(d), _) if d > now => d,
            (Some(_), Some(r)) => now.saturating_add(r),
            _ => now.saturating_add(POST_STOP_BOUND),
        };
        self.timers = Timers::default();
        self.timers.set(Timer::Deadline, bound);
        self.life = Life::PostStop {
            stop,
            ending,
            notable,
            kill: None,
        };
        self.start_hook(HookKind::PostStop);
    }

    fn exit(&mut self, mut ending: Ending, notable: bool) {
        ending.hooks = core::mem::take(&mut self.troubles);
        let ending = Box::new(ending);
        self.note(NoteKind::Exiting {
            ending: ending.clone(),
            notable,
        });
        self.push(Action::Exit(ending));
        self.life = Life::Exited;
        self.timers = Timers::default();
    }

    fn note(&mut self, kind: NoteKind) {
        let elapsed = self.stop().map(|s| self.now.saturating_sub(s.t0));
        let kind = Box::new(kind);
        self.push(Action::Note(Note { elapsed, kind }));
    }

    fn push(&mut self, action: Action) {
        self.actions.push_back(action);
    }
}
