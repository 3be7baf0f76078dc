//! An in-memory world for the state machine: the very event loop usher runs (`usher::event_loop`), with a clock the test sets, answers it chooses and a record of every action.

use std::time::Duration;

use usher::event_loop::{Blind, EventLoop, World};
use usher::hook::HookKind;
use usher::machine::{Action, Census, Event, Machine, Policy, Start, Target};
use usher::process::{Leftover, Pid, Status, Traffic};
use usher::signals::Signal;

/// The app, the pre-stop, post-start and post-stop hooks, and two leftovers:
/// one in the app's group, one outside it.
pub const APP: Pid = 7;
pub const HOOK: Pid = 9;
pub const POST: Pid = 10;
pub const LAST: Pid = 11;
pub const IN_GROUP: Pid = 40;
pub const OUTSIDE: Pid = 41;
pub const TO_APP: Target = Target::Group(APP);

/// The signals the tests name, short.
pub const TERM: Signal = Signal::TERM;
pub const INT: Signal = Signal::INT;
pub const QUIT: Signal = Signal::QUIT;
pub const HUP: Signal = Signal::HUP;
pub const KILL: Signal = Signal::KILL;
pub const USR1: Signal = Signal::USR1;
pub const CONT: Signal = Signal::CONT;
pub const PIPE: Signal = Signal::PIPE;
pub const XFSZ: Signal = Signal::XFSZ;
pub const PRE_STOP: HookKind = HookKind::PreStop;
pub const POST_START: HookKind = HookKind::PostStart;
pub const POST_STOP: HookKind = HookKind::PostStop;
pub const EVERYONE: Target = Target::Everyone;
pub const KILLED: Status = Status::Signaled(KILL);
pub const EXIT_0: Status = Status::Exited(0);

pub fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// What the world answers and remembers.
pub struct Memory {
    pub now: Duration,
    /// Every action carried out (and the exit), in order.
    pub done: Vec<Action>,
    /// What a census finds.
    pub left: Census,
    /// Hooks cannot start (`HookFailed`) rather than run.
    pub hooks_fail: bool,
    /// What a look at the traffic sees, at the time of the look.
    pub traffic: Box<dyn FnMut(Duration) -> Result<Traffic, String>>,
}

impl Memory {
    fn hook_pid(kind: HookKind) -> Pid {
        match kind {
            HookKind::PreStop => HOOK,
            HookKind::PostStart => POST,
            HookKind::PostStop => LAST,
        }
    }
}

impl World for Memory {
    fn now(&mut self) -> Duration {
        self.now
    }

    /// Only timers come by themselves: the clock moves to `until`.
    fn next(&mut self, until: Option<Duration>) -> Result<Event, Blind> {
        let at = until.ok_or(Blind)?;
        self.now = self.now.max(at);
        Ok(Event::Timer)
    }

    fn perform(&mut self, action: Action) -> Option<Event> {
        let answer = match &action {
            Action::StartHook(kind, _) if self.hooks_fail => Some(Event::HookFailed {
                kind: *kind,
                reason: "cannot run".into(),
            }),
            Action::StartHook(kind, _) => Some(Event::HookStarted {
                kind: *kind,
                pid: Memory::hook_pid(*kind),
            }),
            Action::Census(errand) => Some(Event::Census {
                errand: *errand,
                census: self.left.clone(),
            }),
            Action::Look => Some(Event::Traffic((self.traffic)(self.now))),
            _ => None,
        };
        self.done.push(action);
        answer
    }
}

/// A machine in its loop, driven step by step.
pub struct Sim {
    pub l: EventLoop<Memory>,
    pub exited: bool,
}

impl Sim {
    /// usher as PID 1.
    pub fn new(policy: Policy) -> Sim {
        Sim::started(policy, 1, false)
    }

    /// usher as a plain process (with a subreaper's view of its descendants).
    pub fn not_pid1(policy: Policy) -> Sim {
        Sim::started(policy, 3, false)
    }

    pub fn started(policy: Policy, me: Pid, terminal: bool) -> Sim {
        Sim::at_start(
            policy,
            Start {
                app: APP,
                me,
                terminal,
                memory: None,
            },
        )
    }

    /// usher as PID 1, in a world where no hook can start.
    pub fn refusing_hooks(policy: Policy) -> Sim {
        Sim::build(
            policy,
            Start {
                app: APP,
                me: 1,
                terminal: false,
                memory: None,
            },
            true,
        )
    }

    pub fn at_start(policy: Policy, start: Start) -> Sim {
        Sim::build(policy, start, false)
    }

    fn build(policy: Policy, start: Start, hooks_fail: bool) -> Sim {
        let now = ms(1000);
        let world = Memory {
            now,
            done: Vec::new(),
            left: nothing_left(),
            hooks_fail,
            traffic: Box::new(|_| Ok(Traffic::default())),
        };
        let mut l = EventLoop::new(Machine::new(policy, start, now), world);
        let exited = l.begin().is_some();
        Sim { l, exited }
    }

    pub fn m(&self) -> &Machine {
        &self.l.machine
    }

    /// When the machine wants its next timer.
    pub fn timeout(&self) -> Option<Duration> {
        self.m().poll_timeout()
    }

    pub fn now(&self) -> Duration {
        self.l.world.now
    }

    /// Sets the clock to `t_ms` after the start.
    pub fn at(&mut self, t_ms: u64) -> &mut Self {
        self.l.world.now = ms(1000 + t_ms);
        self
    }

    /// What happened since the last call.
    pub fn take(&mut self) -> Vec<Action> {
        std::mem::take(&mut self.l.world.done)
    }

    /// Settles one event; the actions it led to (and the exit, as an action).
    pub fn feed(&mut self, e: Event) -> Vec<Action> {
        if let Some(ending) = self.l.settle(e) {
            self.exited = true;
            self.l.world.done.push(Action::Exit(Box::new(ending)));
        }
        self.take()
    }

    pub fn sig(&mut self, signal: Signal) -> Vec<Action> {
        self.feed(Event::Signal {
            signal,
            sender: Some(100),
        })
    }

    /// Advances to the machine's own timeout and fires it.
    pub fn fire_timer(&mut self) -> Vec<Action> {
        assert!(self.m().poll_timeout().is_some(), "a timer should be armed");
        match self.l.turn() {
            Ok(Some(ending)) => {
                self.exited = true;
                self.l.world.done.push(Action::Exit(Box::new(ending)));
            }
            Ok(None) => {}
            Err(Blind) => unreachable!("a timer is armed"),
        }
        self.take()
    }

    pub fn reaped(&mut self, pid: Pid, status: Status) -> Vec<Action> {
        self.feed(Event::Reaped {
            pid,
            status,
            memory: None,
        })
    }

    /// The driver's word after reaping: whether children are left.
    pub fn reap_done(&mut self, children_left: bool) -> Vec<Action> {
        self.feed(Event::ReapDone { children_left })
    }

    /// The app is reaped; `left`: processes remain (one in its group, one outside).
    pub fn app_exits(&mut self, status: Status, left: bool) -> Vec<Action> {
        if left {
            self.l.world.left = leftovers(&[(IN_GROUP, APP), (OUTSIDE, OUTSIDE)]);
        }
        let mut out = self.reaped(APP, status);
        out.extend(self.reap_done(left));
        out
    }

    /// The last leftover is reaped.
    pub fn all_gone(&mut self) -> Vec<Action> {
        self.l.world.left = nothing_left();
        self.reap_done(false)
    }
}

pub fn nothing_left() -> Census {
    Census {
        list: Some(Vec::new()),
        group_alive: false,
    }
}

pub fn leftovers(pids: &[(Pid, Pid)]) -> Census {
    let list = pids
        .iter()
        .map(|&(pid, group)| Leftover { pid, group })
        .collect();
    let group_alive = pids.iter().any(|&(_, g)| g == APP);
    Census {
        list: Some(list),
        group_alive,
    }
}

/// Every signal sent, with its target.
pub fn sent(actions: &[Action]) -> Vec<(Signal, Target)> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Send { signal, to } => Some((*signal, *to)),
            _ => None,
        })
        .collect()
}

/// Signals sent other than the SIGCONT that follows a stop signal.
pub fn forwards(actions: &[Action]) -> Vec<(Signal, Target)> {
    let mut all = sent(actions);
    all.retain(|(s, _)| *s != CONT);
    all
}

pub fn exit_code(actions: &[Action]) -> Option<i32> {
    actions.iter().find_map(|a| match a {
        Action::Exit(e) => Some(e.code),
        _ => None,
    })
}

pub fn notes(actions: &[Action]) -> Vec<&usher::machine::NoteKind> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Note(n) => Some(&*n.kind),
            _ => None,
        })
        .collect()
}

/// The elapsed time on each note, in order.
pub fn elapsed(actions: &[Action]) -> Vec<Option<Duration>> {
    actions
        .iter()
        .filter_map(|a| match a {
            Action::Note(n) => Some(n.elapsed),
            _ => None,
        })
        .collect()
}

pub fn killed(actions: &[Action]) -> bool {
    sent(actions).iter().any(|(s, _)| *s == KILL)
}

pub fn started(actions: &[Action], kind: HookKind) -> bool {
    actions
        .iter()
        .any(|a| matches!(a, Action::StartHook(k, _) if *k == kind))
}
