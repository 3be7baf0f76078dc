//! The thin loop around the state machine: system calls become events, actions become system calls.
//!
//! One process, one thread, two file descriptors: a signalfd for every
//! signal usher handles and a timerfd for the machine's next deadline. With
//! no timer armed the loop blocks in the signalfd's own `read`; with one, in
//! `poll` on both. Either way an idle usher makes no system call at all.
//!
//! The error rule: usher exits 125 only when it can no longer see what
//! happens — the signalfd or the timerfd cannot be made, read or armed, or
//! `poll` fails. Everything else (a signal that cannot be sent, `waitpid`,
//! handing over the terminal, a hook that cannot start) is logged and
//! survived: the app keeps its init.

use std::fs::File;
use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::cli::{Config, HookAction};
use crate::log::{Level, Logger};
use crate::machine::{Action, Event, Found, HookKind, Machine, Start, Target};
use crate::process::Pid;
use crate::signals::Signal;
use crate::sys::{self, Reap};
use crate::{procs, report, spawn};

/// usher's own failure.
pub const EXIT_USHER: i32 = 125;

struct Driver {
    cfg: Config,
    machine: Machine,
    signals: OwnedFd,
    timer: OwnedFd,
    /// What the timerfd is set to.
    armed: Option<Duration>,
    start: Start,
    /// The pipes HTTP hooks write their outcome into, by the hook's pid.
    answers: Vec<(Pid, File)>,
}

/// Which of the two fds has something to read.
struct Ready {
    signals: bool,
    timer: bool,
}

/// Runs `cfg.command` under usher until it is time to exit; returns the exit code.
/// Every catchable signal must already be blocked (see `main`).
pub fn run(cfg: Config) -> i32 {
    let me = sys::getpid();
    prepare(&cfg, me == 1);
    let fds = sys::signalfd(Signal::blocked_set()).and_then(|s| Ok((s, sys::timerfd()?)));
    let (signals, timer) = match fds {
        Ok(fds) => fds,
        Err(e) => return fatal(&cfg.log, "cannot set up signal handling", &e),
    };
    crate::log::use_nonblocking_stderr();
    let terminal = sys::stdin_is_terminal();
    let app = match spawn::spawn(&cfg.command, terminal) {
        Ok(pid) => pid,
        Err(e) => {
            cfg.log.error(&e.message(&cfg.command[0]), &[]);
            return e.exit_code();
        }
    };
    let cmd: Vec<String> = cfg.command.iter().map(|w| crate::cli::show(w)).collect();
    cfg.log.debug(
        "started",
        &[("pid", app.into()), ("cmd", cmd.join(" ").into())],
    );
    let start = Start { app, me, terminal };
    let machine = Machine::new(cfg.policy.clone(), start, sys::now());
    let mut driver = Driver {
        cfg,
        machine,
        signals,
        timer,
        armed: None,
        start,
        answers: Vec::new(),
    };
    driver.run()
}

/// Subreaper, parent-death signal, and the one warning about orphans.
fn prepare(cfg: &Config, pid1: bool) {
    let log = &cfg.log;
    for name in crate::cli::unknown_vars(std::env::vars_os().map(|(k, _)| k)) {
        let known = crate::cli::env_vars().join(", ");
        log.warn(
            "unknown variable ignored (a typo?)",
            &[("name", name.into()), ("known", known.into())],
        );
    }
    let mut reaper = pid1 || sys::is_subreaper();
    if cfg.subreaper && !reaper {
        match sys::set_subreaper() {
            Ok(()) => reaper = true,
            Err(e) => log.warn("cannot become a subreaper", &[("error", (&e).into())]),
        }
    }
    if !reaper {
        log.warn("not PID 1 and not a subreaper: orphans will not be reaped by usher (use -s or USHER_SUBREAPER=1)", &[]);
    }
    if let Some(sig) = cfg.pdeathsig {
        let parent = sys::getppid();
        if let Err(e) = sys::set_pdeathsig(sig) {
            log.warn(
                "cannot set the parent-death signal",
                &[("error", (&e).into())],
            );
        } else if parent != sys::getppid() {
            // The parent died before prctl took hold: deliver the signal now.
            let _ = sys::kill(sys::getpid(), sig);
        }
    }
}

/// Logs a failure that ends usher, and gives its exit code.
fn fatal(log: &Logger, what: &str, e: &std::io::Error) -> i32 {
    log.error(what, &[("error", e.into())]);
    EXIT_USHER
}

impl Driver {
    fn run(&mut self) -> i32 {
        let mut batch = Vec::new();
        loop {
            if let Some(code) = self.perform() {
                return code;
            }
            if let Err(e) = self.arm_timer() {
                return fatal(&self.cfg.log, "cannot arm the timer", &e);
            }
            let ready = match self.wait() {
                Ok(ready) => ready,
                Err(e) => return fatal(&self.cfg.log, "poll failed", &e),
            };
            if ready.signals {
                batch.clear();
                if let Err(e) = sys::read_signals(&self.signals, &mut batch) {
                    return fatal(&self.cfg.log, "reading signals failed", &e);
                }
                self.on_signals(&batch);
            }
            if ready.timer {
                self.on_timer();
            }
        }
    }

    /// With no timer armed, only a signal can come: block in the
    /// signalfd's own read, one system call per wake-up instead of two.
    fn wait(&self) -> std::io::Result<Ready> {
        if self.armed.is_none() {
            return Ok(Ready {
                signals: true,
                timer: false,
            });
        }
        let [signals, timer] = sys::wait_readable([&self.signals, &self.timer])?;
        Ok(Ready { signals, timer })
    }

    /// Reaps first when SIGCHLD is among them, so that a signal arriving
    /// with the app's exit is judged knowing the app is gone.
    fn on_signals(&mut self, batch: &[(Signal, Option<Pid>)]) {
        if batch.iter().any(|(s, _)| *s == Signal::CHLD) {
            self.reap();
        }
        for &(signal, sender) in batch.iter().filter(|(s, _)| *s != Signal::CHLD) {
            let log = &self.cfg.log;
            if log.enabled(Level::Trace) {
                log.log(
                    Level::Trace,
                    None,
                    "received",
                    &[("signal", signal.to_string().into())],
                );
            }
            self.machine
                .handle(Event::Signal { signal, sender }, sys::now());
        }
    }

    fn on_timer(&mut self) {
        match sys::timer_fired(&self.timer) {
            Ok(true) => {
                self.armed = None;
                self.machine.handle(Event::Timer, sys::now());
            }
            Ok(false) => {}
            Err(e) => self.survive("reading the timer failed", &e),
        }
    }

    /// Reaps every ended child, then tells the machine whether any is left.
    fn reap(&mut self) {
        loop {
            let event = match sys::reap_one() {
                Ok(Reap::Child(pid, status)) => {
                    self.collect_answer(pid);
                    Event::Reaped { pid, status }
                }
                Ok(Reap::Stopped(pid)) => Event::Stopped { pid },
                Ok(Reap::Continued(pid)) => Event::Continued { pid },
                Ok(Reap::Running) => Event::ReapDone {
                    children_left: true,
                },
                Ok(Reap::None) => Event::ReapDone {
                    children_left: false,
                },
                Err(e) => return self.survive("waitpid failed", &e),
            };
            let done = matches!(event, Event::ReapDone { .. });
            self.machine.handle(event, sys::now());
            if done {
                return;
            }
        }
    }

    /// Carries out every queued action; `Some(code)` when usher must exit.
    fn perform(&mut self) -> Option<i32> {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Note(n) => report::note(&self.cfg.log, &n),
                Action::Send { signal, to } => self.send(signal, to),
                Action::StartHook(kind) => self.start_hook(kind),
                Action::FindLeftovers(scope) => {
                    let found = Found {
                        list: procs::find(scope, self.start.me),
                        group_alive: sys::exists(-self.start.app),
                    };
                    self.machine.handle(Event::Leftovers(found), sys::now());
                }
                Action::Exit(code) => return Some(code),
                Action::StopSelf => sys::stop_self(),
                Action::Foreground => self.foreground(),
            }
        }
        None
    }

    fn send(&self, signal: Signal, to: Target) {
        let result = match to {
            // A leader that moved itself out of its group (setsid) is still reached.
            Target::Group(pgid) => sys::kill(-pgid, signal).or_else(|_| sys::kill(pgid, signal)),
            Target::Process(pid) => sys::kill(pid, signal),
            Target::Everyone => sys::kill(-1, signal),
        };
        if let Err(e) = result {
            // ESRCH: the target is already gone, which its reaping will tell;
            // anything else (EPERM) means a signal was lost, worth a warning.
            let level = match e.raw_os_error() {
                Some(libc::ESRCH) => Level::Debug,
                _ => Level::Warn,
            };
            let to = report::target(to).into();
            let fields = [
                ("signal", signal.to_string().into()),
                ("to", to),
                ("error", (&e).into()),
            ];
            self.cfg.log.log(level, None, "forward failed", &fields);
        }
    }

    fn start_hook(&mut self, kind: HookKind) {
        let started = match self.cfg.hook(kind) {
            None => Err("no hook configured".to_string()),
            Some(HookAction::Command(words)) => {
                let argv: Vec<_> = words.iter().map(Into::into).collect();
                spawn::spawn(&argv, false).map_err(|e| e.message(&argv[0]))
            }
            Some(HookAction::Http(req)) => match spawn::request(req) {
                Ok((pid, answer)) => {
                    self.answers.push((pid, answer));
                    Ok(pid)
                }
                Err(e) => Err(e.message(req.show().as_ref())),
            },
        };
        let event = match started {
            Ok(pid) => Event::HookStarted { kind, pid },
            Err(reason) => Event::HookFailed { kind, reason },
        };
        self.machine.handle(event, sys::now());
    }

    /// An HTTP hook's child was reaped: tell the machine what it wrote.
    fn collect_answer(&mut self, pid: Pid) {
        let Some(i) = self.answers.iter().position(|(p, _)| *p == pid) else {
            return;
        };
        let (_, pipe) = self.answers.swap_remove(i);
        if let Some(outcome) = spawn::answer(pipe) {
            let event = Event::HookAnswered { pid, outcome };
            self.machine.handle(event, sys::now());
        }
    }

    /// After `fg`: the terminal came back to usher's group; pass it to the app.
    fn foreground(&self) {
        let tty = libc::STDIN_FILENO;
        if sys::stdin_is_terminal() && sys::in_foreground(tty) {
            if let Err(e) = sys::give_terminal(tty, self.start.app) {
                self.survive("cannot hand the terminal to the app", &e);
            }
        }
    }

    fn arm_timer(&mut self) -> std::io::Result<()> {
        let want = self.machine.poll_timeout();
        if want != self.armed {
            sys::timer_set(&self.timer, want)?;
            self.armed = want;
        }
        Ok(())
    }

    /// Logs a failure that usher lives with (see the module doc).
    fn survive(&self, what: &str, e: &std::io::Error) {
        self.cfg.log.error(what, &[("error", e.into())]);
    }
}
