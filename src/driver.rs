//! The real world around the state machine: system calls become events, actions become system calls.
//!
//! One process, one thread, two file descriptors: a signalfd for every
//! signal usher handles and a timerfd for the machine's next timer. With
//! no timer armed the loop blocks in the signalfd's own `read`; with one, in
//! `poll` on both. Either way an idle usher makes no system call at all.
//! Children are reaped one `waitpid` per event, so that what the machine
//! decides about one child is carried out before the next is reaped (a pid
//! stays reserved until its zombie is reaped).
//!
//! The error rule: usher exits 125 only when it can no longer see what
//! happens — the signalfd or the timerfd cannot be made, read or armed, or
//! `poll` fails. Everything else (a signal that cannot be sent, `waitpid`,
//! handing over the terminal, a hook that cannot start) is logged and
//! survived: the app keeps its init.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use alloc::ffi::CString;

use crate::cgroup::{Cgroup, Memory};
use crate::cli::{Config, TerminationLog};
use crate::event_loop::{Blind, EventLoop, World};
use crate::hook::{HookAction, HookKind};
use crate::log::{Level, Logger};
use crate::machine::{Action, Census, Ending, Errand, Event, Machine, Scope, Start, Target, Time};
use crate::process::{Pid, Status, Traffic};
use crate::signals::Signal;
use crate::sys::{self, io, OwnedFd, Reap};
use crate::{codes, procs, report, spawn, traffic};

/// Runs `cfg.command` under usher until it is time to exit; returns the exit
/// code. Every catchable signal must already be blocked (see `main`);
/// `arg0` is how usher was started (to start itself again for HTTP hooks).
pub fn run(cfg: Config, arg0: Option<Vec<u8>>) -> i32 {
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
    // The OOM-kill counter's baseline (limit and peak are read at a kill),
    // read once the app has started: cgroup files cost tens of microseconds
    // that its start need not wait for.
    let (cgroup, memory) = match Cgroup::find() {
        Some((cgroup, oom_kills)) => (
            Some(cgroup),
            Some(Memory {
                oom_kills,
                ..Default::default()
            }),
        ),
        None => (None, None),
    };
    let cmd: Vec<String> = cfg.command.iter().map(|w| crate::cli::show(w)).collect();
    cfg.log.debug(
        "started",
        &[("pid", app.into()), ("cmd", cmd.join(" ").into())],
    );
    let start = Start {
        app,
        me,
        terminal,
        memory,
    };
    let machine = Machine::new(cfg.policy.clone(), start, sys::now());
    let world = Real {
        log: cfg.log,
        signals,
        timer,
        armed: None,
        start,
        batch: Vec::with_capacity(32),
        next: 0,
        reaping: false,
        timer_due: false,
        held: None,
        answers: Vec::new(),
        cgroup,
        sampler: None,
        me: Vec::new(),
        arg0,
    };
    let mut event_loop = EventLoop::new(machine, world);
    match event_loop.run() {
        Ok(ending) => finish(&cfg.log, &cfg.termination_log, &ending),
        Err(Blind) => codes::USHER,
    }
}

/// Subreaper, parent-death signal, and the one warning about orphans.
fn prepare(cfg: &Config, pid1: bool) {
    let log = &cfg.log;
    for name in crate::cli::unknown_vars(sys::env_names().into_iter()) {
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
fn fatal(log: &Logger, what: &str, e: &io::Error) -> i32 {
    log.error(what, &[("error", e.into())]);
    codes::USHER
}

/// Writes the termination message where it goes; a failure is one warning
/// and never changes the exit code.
fn finish(log: &Logger, to: &TerminationLog, ending: &Ending) -> i32 {
    let (path, create) = match to {
        TerminationLog::Off => return ending.code,
        TerminationLog::Default => (&b"/dev/termination-log"[..], false),
        TerminationLog::Path(p) => (p.as_slice(), true),
    };
    if let Err(e) = write_file(path, report::summary(ending).as_bytes(), create) {
        if create || e.kind() != io::ErrorKind::NotFound {
            let path = String::from_utf8_lossy(path).into_owned();
            log.warn(
                "cannot write the termination message",
                &[("path", path.into()), ("error", (&e).into())],
            );
        }
    }
    ending.code
}

/// Whether a termination message path given by name can be a file: not a
/// directory, in a directory that exists. Told at start, not at exit, when
/// nothing can be done about it any more.
pub fn termination_log_usable(to: &TerminationLog) -> Result<(), String> {
    let TerminationLog::Path(path) = to else {
        return Ok(());
    };
    let shown = crate::cli::quoted(path);
    let parent = match path.iter().rposition(|&b| b == b'/') {
        Some(0) => &b"/"[..],
        Some(i) => &path[..i],
        None => &b"."[..],
    };
    let wrong = match (sys::file_kind(path), sys::file_kind(parent)) {
        (Some(sys::FileKind::Dir), _) => "is a directory",
        (None, Some(sys::FileKind::Dir)) | (Some(_), _) => return Ok(()),
        (None, _) => "is in a directory that does not exist",
    };
    Err(format!(
        "the termination message file {shown} {wrong}: give a file's path (--termination-log, USHER_TERMINATION_LOG)"
    ))
}

/// Writes `bytes` to the file at `path` (created only with `create`).
/// Non-blocking: a FIFO with no reader is an error (ENXIO), never a wait.
fn write_file(path: &[u8], bytes: &[u8], create: bool) -> io::Result<()> {
    let mut flags = libc::O_WRONLY | libc::O_TRUNC | libc::O_NONBLOCK | libc::O_NOCTTY;
    if create {
        flags |= libc::O_CREAT;
    }
    sys::open(path, flags, 0o644)?.write_all(bytes)
}

/// The world of a real usher: its two fds, its children, /proc.
struct Real {
    log: Logger,
    signals: OwnedFd,
    timer: OwnedFd,
    /// What the timerfd is set to.
    armed: Option<Time>,
    start: Start,
    /// The last batch read from the signalfd, and the next one to hand out.
    batch: Vec<(Signal, Option<Pid>)>,
    next: usize,
    /// A SIGCHLD came: reap until nothing more is ready.
    reaping: bool,
    /// The timer fired; handed out after the signals read with it.
    timer_due: bool,
    /// An event held back for the next call (a hook's reaping, after its answer).
    held: Option<Event>,
    /// The pipes HTTP hooks write their outcome into, by the hook's pid.
    answers: Vec<(Pid, OwnedFd)>,
    cgroup: Option<Cgroup>,
    /// The traffic sampler of an adaptive drain, from its first look.
    sampler: Option<traffic::Sampler>,
    /// Where usher's own binary is (for HTTP hooks), found at the first.
    me: Vec<CString>,
    arg0: Option<Vec<u8>>,
}

impl World for Real {
    fn now(&mut self) -> Time {
        sys::now()
    }

    fn next(&mut self, until: Option<Time>) -> Result<Event, Blind> {
        loop {
            if let Some(event) = self.held.take() {
                return Ok(event);
            }
            if self.reaping {
                return Ok(self.reap_one());
            }
            if let Some(&(signal, sender)) = self.batch.get(self.next) {
                self.next += 1;
                if self.log.enabled(Level::Trace) {
                    self.log.log(
                        Level::Trace,
                        None,
                        "received",
                        &[("signal", signal.to_string().into())],
                    );
                }
                return Ok(Event::Signal { signal, sender });
            }
            if core::mem::take(&mut self.timer_due) {
                return Ok(Event::Timer);
            }
            self.wait(until)?;
        }
    }

    fn perform(&mut self, action: Action) -> Option<Event> {
        match action {
            Action::Note(n) => report::note(&self.log, &n),
            Action::Send { signal, to } => self.send(signal, to),
            Action::StartHook(kind, hook) => return Some(self.start_hook(kind, &hook)),
            Action::Census(errand) => return Some(self.census(errand)),
            Action::Look => return Some(Event::Traffic(self.look())),
            Action::Suspend => sys::suspend_self(),
            Action::Foreground => self.foreground(),
            Action::ShowStopping => sys::set_name(c"usher:stopping"),
            Action::Exit(_) => {}
        }
        None
    }
}

impl Real {
    /// Arms the timer for `until`, waits, reads what came: a batch of
    /// signals (SIGCHLD among them starts a reaping round, handed out
    /// first, so that a signal arriving with the app's exit is judged
    /// knowing the app is gone) and whether the timer fired.
    fn wait(&mut self, until: Option<Time>) -> Result<(), Blind> {
        if until != self.armed {
            if let Err(e) = sys::timer_set(&self.timer, until) {
                fatal(&self.log, "cannot arm the timer", &e);
                return Err(Blind);
            }
            self.armed = until;
        }
        // With no timer armed, only a signal can come: block in the
        // signalfd's own read, one system call per wake-up instead of two.
        let [signals, timer] = match self.armed {
            None => [true, false],
            Some(_) => sys::wait_readable([&self.signals, &self.timer]).map_err(|e| {
                fatal(&self.log, "poll failed", &e);
                Blind
            })?,
        };
        if signals {
            self.batch.clear();
            self.next = 0;
            if let Err(e) = sys::read_signals(&self.signals, &mut self.batch) {
                fatal(&self.log, "reading signals failed", &e);
                return Err(Blind);
            }
            let before = self.batch.len();
            self.batch.retain(|(s, _)| *s != Signal::CHLD);
            self.reaping |= self.batch.len() < before;
        }
        if timer {
            match sys::timer_fired(&self.timer) {
                Ok(fired) => {
                    self.timer_due = fired;
                    if fired {
                        self.armed = None;
                    }
                }
                Err(e) => self.survive("reading the timer failed", &e),
            }
        }
        Ok(())
    }

    /// One `waitpid`: a child that ended, stopped or resumed, or the end of
    /// the round. An HTTP hook's answer comes just before its reaping.
    fn reap_one(&mut self) -> Event {
        let reaped = match sys::reap_one() {
            Ok(reaped) => reaped,
            Err(e) => {
                self.survive("waitpid failed", &e);
                self.reaping = false;
                return Event::ReapDone {
                    children_left: true,
                };
            }
        };
        match reaped {
            Reap::Child(pid, status) => {
                let memory = match status {
                    Status::Signaled(Signal::KILL) => self.cgroup.as_ref().and_then(Cgroup::read),
                    _ => None,
                };
                let reaped = Event::Reaped {
                    pid,
                    status,
                    memory,
                };
                match self.collect_answer(pid) {
                    Some(answer) => {
                        self.held = Some(reaped);
                        answer
                    }
                    None => reaped,
                }
            }
            Reap::Stopped(pid) => Event::Suspended { pid },
            Reap::Continued(pid) => Event::Resumed { pid },
            Reap::Running | Reap::None => {
                self.reaping = false;
                Event::ReapDone {
                    children_left: matches!(reaped, Reap::Running),
                }
            }
        }
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
            let fields = [
                ("signal", signal.to_string().into()),
                ("to", report::target(to).into()),
                ("error", (&e).into()),
            ];
            self.log.log(level, None, "forward failed", &fields);
        }
    }

    fn start_hook(&mut self, kind: HookKind, hook: &HookAction) -> Event {
        let started = match hook {
            HookAction::Command(words) => {
                let argv: Vec<Vec<u8>> = words.iter().map(|w| w.as_bytes().to_vec()).collect();
                spawn::spawn(&argv, false).map_err(|e| e.message(&argv[0]))
            }
            HookAction::Http(req) => {
                if self.me.is_empty() {
                    self.me = spawn::own_binary(self.arg0.as_deref());
                }
                match spawn::request(req, &self.me) {
                    Ok((pid, answer)) => {
                        self.answers.push((pid, answer));
                        Ok(pid)
                    }
                    Err(e) => Err(e.message(b"usher --check")),
                }
            }
        };
        match started {
            Ok(pid) => Event::HookStarted { kind, pid },
            Err(reason) => Event::HookFailed { kind, reason },
        }
    }

    /// An HTTP hook's child was reaped: what it wrote, as an event.
    fn collect_answer(&mut self, pid: Pid) -> Option<Event> {
        let i = self.answers.iter().position(|(p, _)| *p == pid)?;
        let (_, pipe) = self.answers.swap_remove(i);
        let outcome = spawn::answer(pipe)?;
        Some(Event::HookAnswered { pid, outcome })
    }

    fn census(&self, errand: Errand) -> Event {
        let scope = errand.situation().scope();
        let census = Census {
            list: match scope {
                Scope::Group => Some(Vec::new()),
                _ => procs::find(scope, self.start.me),
            },
            group_alive: sys::exists(-self.start.app),
        };
        Event::Census { errand, census }
    }

    /// A look at the app's traffic; the first finds its listening sockets.
    fn look(&mut self) -> Result<Traffic, String> {
        if let Some(sampler) = &mut self.sampler {
            return sampler.sample();
        }
        let owners = procs::tree(self.start.me).ok_or("/proc cannot be read")?;
        let mut sampler = traffic::Sampler::start(&owners)?;
        let look = sampler.sample();
        self.sampler = Some(sampler);
        look
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

    /// Logs a failure that usher lives with (see the module doc).
    fn survive(&self, what: &str, e: &io::Error) {
        self.log.error(what, &[("error", e.into())]);
    }
}
