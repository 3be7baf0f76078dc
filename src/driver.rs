//! The thin loop around the state machine: syscalls become events, actions become syscalls.
//!
//! One process, one thread, two file descriptors: a signalfd for every
//! signal usher handles and a timerfd for the machine's next deadline. The
//! loop blocks in `poll` with no timeout, so an idle usher makes no system
//! call at all.

use std::os::fd::OwnedFd;
use std::time::Duration;

use crate::cli::Config;
use crate::log::{Level, Logger, Value};
use crate::machine::{Action, Event, KillCause, Machine, Pid, Target};
use crate::signals::Signal;
use crate::spawn::{self, SpawnError};
use crate::sys::{self, Reap};
use crate::{procs, report};

/// usher's own failure, exit 125.
pub const EXIT_USHER: i32 = 125;

struct Driver {
    cfg: Config,
    log: Logger,
    machine: Machine,
    signals: OwnedFd,
    timer: OwnedFd,
    armed: Option<Duration>,
    me: Pid,
    pid1: bool,
    child: Pid,
    /// SIGKILL rounds so far: only the first is worth a warning.
    kill_rounds: u32,
    /// What the last reaping round found: usher still has children.
    children_left: bool,
    /// A probe since the last reaping round found nothing left.
    found_empty: bool,
}

/// Runs `cfg.command` under usher until it is time to exit; returns the exit code.
/// Every catchable signal must already be blocked (see `main`).
pub fn run(mut cfg: Config) -> i32 {
    let log = cfg.log;
    let me = sys::getpid();
    let pid1 = me == 1;
    prepare(&cfg, pid1);

    let fds = sys::signalfd(Signal::blocked_set()).and_then(|s| Ok((s, sys::timerfd()?)));
    let (signals, timer) = match fds {
        Ok(fds) => fds,
        Err(e) => {
            log.log(
                Level::Error,
                None,
                "cannot set up signal handling",
                &[("error", e.to_string().into())],
            );
            return EXIT_USHER;
        }
    };
    crate::log::use_nonblocking_stderr();
    let foreground = sys::isatty(libc::STDIN_FILENO);
    let child = match spawn::spawn(&cfg.command, foreground) {
        Ok(pid) => pid,
        Err(e) => return spawn_failed(&log, &cfg, &e),
    };
    log.log(
        Level::Debug,
        None,
        "started",
        &[("pid", child.into()), ("cmd", report_cmd(&cfg).into())],
    );
    // Only a job of an interactive shell stops with its app; elsewhere a
    // stopped app must not freeze usher (and its forwarding and reaping).
    cfg.policy.job_control = !pid1 && foreground;
    let machine = Machine::new(cfg.policy.clone(), child, sys::now());
    let mut driver = Driver {
        cfg,
        log,
        machine,
        signals,
        timer,
        armed: None,
        me,
        pid1,
        child,
        kill_rounds: 0,
        children_left: true,
        found_empty: false,
    };
    driver.run()
}

/// Subreaper, parent-death signal, and the one warning about orphans.
fn prepare(cfg: &Config, pid1: bool) {
    let log = &cfg.log;
    for name in crate::cli::unknown_vars(std::env::vars_os().map(|(k, _)| k)) {
        let known = crate::cli::ENV_VARS.join(", ");
        log.log(
            Level::Warn,
            None,
            "unknown variable ignored (a typo?)",
            &[("name", name.into()), ("known", known.into())],
        );
    }
    let mut reaper = pid1;
    if cfg.subreaper && !pid1 {
        match sys::set_subreaper() {
            Ok(()) => reaper = true,
            Err(e) => log.log(
                Level::Warn,
                None,
                "cannot become a subreaper",
                &[("error", e.to_string().into())],
            ),
        }
    }
    if !reaper {
        log.log(
            Level::Warn,
            None,
            "not PID 1 and not a subreaper: orphans will not be reaped by usher (use -s or USHER_SUBREAPER=1)",
            &[],
        );
    }
    if let Some(sig) = cfg.pdeathsig {
        let parent = sys::getppid();
        if let Err(e) = sys::set_pdeathsig(sig) {
            log.log(
                Level::Warn,
                None,
                "cannot set the parent-death signal",
                &[("error", e.to_string().into())],
            );
        } else if parent != sys::getppid() {
            // The parent died before prctl took hold: deliver the signal now.
            let _ = sys::kill(sys::getpid(), sig);
        }
    }
}

fn spawn_failed(log: &Logger, cfg: &Config, e: &SpawnError) -> i32 {
    log.log(Level::Error, None, &e.message(&cfg.command[0]), &[]);
    e.exit_code()
}

fn report_cmd(cfg: &Config) -> String {
    let words: Vec<String> = cfg.command.iter().map(|w| crate::cli::show(w)).collect();
    words.join(" ")
}

impl Driver {
    fn run(&mut self) -> i32 {
        let mut pending = Vec::new();
        loop {
            if let Some(code) = self.perform() {
                return code;
            }
            if let Err(e) = self.arm_timer() {
                self.fail("cannot arm the timer", e);
                return EXIT_USHER;
            }
            // No timer armed: block in the signalfd's own read, one system
            // call per wake-up instead of poll and read.
            let waited = match self.armed {
                None => Ok([true, false]),
                Some(_) => sys::wait_readable([&self.signals, &self.timer]),
            };
            let ready = match waited {
                Ok(r) => r,
                Err(e) => {
                    self.fail("poll failed", e);
                    return EXIT_USHER;
                }
            };
            if ready[0] {
                pending.clear();
                if let Err(e) = sys::read_signals(&self.signals, &mut pending) {
                    self.fail("reading signals failed", e);
                    return EXIT_USHER;
                }
                self.on_signals(&pending);
            }
            if ready[1] {
                self.on_timer();
            }
        }
    }

    /// Reaps first when SIGCHLD is among them, so that a signal arriving
    /// with the app's exit is judged knowing the app is gone.
    fn on_signals(&mut self, sigs: &[Signal]) {
        if sigs.contains(&Signal::CHLD) {
            self.reap();
        }
        for &sig in sigs.iter().filter(|s| **s != Signal::CHLD) {
            self.log.log(
                Level::Trace,
                None,
                "received",
                &[("signal", sig.to_string().into())],
            );
            self.machine.handle(Event::Signal(sig), sys::now());
        }
    }

    fn on_timer(&mut self) {
        match sys::timer_fired(&self.timer) {
            Ok(true) => {
                self.armed = None;
                self.machine.handle(Event::Timer, sys::now());
            }
            Ok(false) => {}
            Err(e) => self.fail("reading the timer failed", e),
        }
    }

    /// Reaps every ended child, then tells the machine whether any is left.
    fn reap(&mut self) {
        let untraced = self.cfg.policy.job_control;
        loop {
            let event = match sys::reap_one(untraced) {
                Ok(Reap::Child(pid, status)) => Event::Reaped { pid, status },
                Ok(Reap::Stopped(pid)) => Event::Stopped { pid },
                Ok(Reap::Running) => Event::ReapDone {
                    children_left: true,
                },
                Ok(Reap::None) => Event::ReapDone {
                    children_left: false,
                },
                Err(e) => return self.fail("waitpid failed", e),
            };
            self.machine.handle(event, sys::now());
            if let Event::ReapDone { children_left } = event {
                self.children_left = children_left;
                self.found_empty = false;
                return;
            }
        }
    }

    /// Carries out every queued action; `Some(code)` when usher must exit.
    fn perform(&mut self) -> Option<i32> {
        while let Some(action) = self.machine.poll_action() {
            match action {
                Action::Note(n) => report::note(&self.log, &n),
                Action::Forward { signal, to, resume } => {
                    self.forward(signal, to);
                    if resume {
                        self.forward(Signal::CONT, to);
                    }
                }
                Action::StartHook => self.start_hook(),
                Action::SignalStragglers {
                    signal,
                    t,
                    except_group,
                } => self.signal_leftovers(signal, t, None, except_group),
                Action::KillAll { cause, t } => {
                    self.signal_leftovers(Signal::KILL, t, Some(cause), false)
                }
                Action::Exit(code) => return Some(code),
                Action::StopSelf => sys::stop_self(),
                Action::Foreground => self.foreground(),
            }
        }
        None
    }

    fn forward(&self, sig: Signal, to: Target) {
        let result = match to {
            // A child that moved itself out of its group (setsid) is still reached.
            Target::Group(pgid) => sys::kill(-pgid, sig).or_else(|_| sys::kill(pgid, sig)),
            Target::Child(pid) => sys::kill(pid, sig),
        };
        if let Err(e) = result {
            // ESRCH: the app is already gone, which its reaping will tell;
            // anything else (EPERM) means a signal was lost, worth a warning.
            let level = if e.raw_os_error() == Some(libc::ESRCH) {
                Level::Debug
            } else {
                Level::Warn
            };
            let fields = [
                ("signal", Value::from(sig.to_string())),
                ("to", report::target(to).into()),
                ("error", e.to_string().into()),
            ];
            self.log.log(level, None, "forward failed", &fields);
        }
    }

    /// After `fg`: the terminal came back to usher's group; pass it to the app.
    fn foreground(&self) {
        let tty = libc::STDIN_FILENO;
        if sys::isatty(tty) && sys::in_foreground(tty) {
            if let Err(e) = sys::give_terminal(tty, self.child) {
                self.fail("cannot hand the terminal to the app", e);
            }
        }
    }

    fn start_hook(&mut self) {
        let Some(words) = self.cfg.pre_stop.clone() else {
            return self.machine.handle(Event::HookFailed, sys::now());
        };
        let argv: Vec<_> = words.iter().map(Into::into).collect();
        match spawn::spawn(&argv, false) {
            Ok(pid) => self.machine.handle(Event::HookStarted(pid), sys::now()),
            Err(e) => {
                self.log.log(
                    Level::Warn,
                    None,
                    "pre-stop hook failed",
                    &[("error", e.message(&argv[0]).into())],
                );
                self.machine.handle(Event::HookFailed, sys::now());
            }
        }
    }

    /// Signals whatever the app left behind (all of the namespace as PID 1).
    fn signal_leftovers(
        &mut self,
        sig: Signal,
        t: Duration,
        kill: Option<KillCause>,
        except_group: bool,
    ) {
        if self.found_empty || !self.anything_left() {
            // The common case, an app that exited alone: probed once, and
            // the SIGKILL round that follows needs no second look.
            self.found_empty = true;
            return;
        }
        // Signal first, list afterwards: reading /proc can take a while on a
        // busy host, and the dead stay listed as zombies until reaped. A stop
        // signal is followed by SIGCONT, so stopped leftovers see it too.
        let sigs: &[Signal] = if kill.is_none() {
            &[sig, Signal::CONT]
        } else {
            &[sig]
        };
        if !except_group {
            for &s in sigs {
                let _ = sys::kill(if self.pid1 { -1 } else { -self.child }, s);
            }
        }
        let pids = procs::leftovers(self.me, self.pid1, self.child, except_group);
        for &s in sigs {
            match &pids {
                // Descendants that left the app's group (reparented orphans, the
                // hook), or everything but the group when it was already told.
                Some(list) if !self.pid1 || except_group => {
                    for &p in list {
                        let _ = sys::kill(p, s);
                    }
                }
                // No /proc as PID 1: better a second signal than none outside the group.
                None if except_group && self.pid1 => {
                    let _ = sys::kill(-1, s);
                }
                _ => {}
            }
        }
        let listed = match &pids {
            Some(list) if list.is_empty() => return,
            Some(list) => Value::List(list.iter().map(|&p| p.into()).collect()),
            None => Value::from("unknown (no /proc)"),
        };
        let fields = [("signal", Value::from(sig.to_string())), ("pids", listed)];
        if kill.is_some() {
            self.kill_rounds += 1;
        }
        match kill {
            Some(_) if self.kill_rounds > 1 => {
                self.log
                    .log(Level::Debug, Some(t), "killing again", &fields)
            }
            None => self
                .log
                .log(Level::Info, Some(t), "signalled leftovers", &fields),
            Some(KillCause::Deadline) => {
                self.log
                    .log(Level::Warn, Some(t), "grace period over, killing", &fields)
            }
            Some(KillCause::NoGrace) => {
                self.log
                    .log(Level::Info, Some(t), "killing leftovers", &fields)
            }
        }
    }

    /// Whether the app can have left anything, by cheap probes (signal 0):
    /// as PID 1, any other process in the namespace; otherwise a child of
    /// usher or a member of the app's group.
    fn anything_left(&self) -> bool {
        if self.pid1 {
            // The namespace's own /proc is a short list; kill(-1, 0) walks
            // every task on the host.
            procs::others_in_namespace(self.me).unwrap_or_else(|| sys::exists(-1))
        } else {
            self.children_left || sys::exists(-self.child)
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

    fn fail(&self, what: &str, e: std::io::Error) {
        self.log
            .log(Level::Error, None, what, &[("error", e.to_string().into())]);
    }
}
