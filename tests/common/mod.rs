//! The harness every integration test shares: start usher hermetically (as PID 1 of a new PID namespace or as a plain process), wait with bounds, read its log, assert on timing, clean up by pid.
#![allow(dead_code)]

pub mod sim;

use std::ffi::OsStr;
use std::fs;
use std::io::Read;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::thread::JoinHandle;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

// ------------------------------------------------------------------ bounds --

/// Bound for what normally takes milliseconds (the machine is noisy).
pub const SOON: Duration = Duration::from_secs(15);
/// Bound for a whole usher run to finish.
pub const FINISH: Duration = Duration::from_secs(20);
/// Bound for heavy work: thousands of processes, a storm, a pty session.
pub const HEAVY: Duration = Duration::from_secs(60);
/// How long to keep watching for something that must NOT happen.
pub const QUIET: Duration = Duration::from_millis(1000);
/// Seconds allowed on top of every expected time (never below it).
pub const SLACK: f64 = 3.0;

/// The usher under test: the one cargo built, or `USHERTEST_USHER` (another
/// build of it, e.g. a release binary for another architecture, run under
/// `USHERTEST_EMULATOR`; see [`usher_command`]).
pub fn usher() -> &'static str {
    static USHER: OnceLock<String> = OnceLock::new();
    USHER.get_or_init(|| {
        std::env::var("USHERTEST_USHER").unwrap_or_else(|_| env!("CARGO_BIN_EXE_usher").into())
    })
}

/// `USHERTEST_EMULATOR`: the program usher runs under (`qemu-aarch64-static`,
/// say), so the tests can run another architecture's build; docs/architectures.md.
pub fn emulator() -> Option<&'static str> {
    static EMULATOR: OnceLock<Option<String>> = OnceLock::new();
    let var = || {
        std::env::var("USHERTEST_EMULATOR")
            .ok()
            .filter(|e| !e.is_empty())
    };
    EMULATOR.get_or_init(var).as_deref()
}

/// The command that runs usher after `prefix` (an unshare, or nothing), under
/// the emulator if there is one: the one place the harness builds it.
pub fn usher_command(prefix: &[&str]) -> Command {
    let mut argv: Vec<&str> = prefix.to_vec();
    argv.extend(emulator());
    argv.push(usher());
    let mut cmd = Command::new(argv[0]);
    cmd.args(&argv[1..]);
    if emulator().is_some() {
        // qemu-user gives the host's signals 32 and 33 (its own C library's)
        // to no guest signal, so an emulated usher can neither see nor reset
        // them, and an app it starts inherits them as usher found them.
        // cargo leaves 32 ignored (glibc's posix_spawn does), natively usher
        // resets it; for the emulator, the harness starts it clean.
        // SAFETY: only raw rt_sigaction calls between fork and exec.
        unsafe {
            cmd.pre_exec(|| {
                let default = [0u64; 8]; // the kernel's struct sigaction: SIG_DFL
                let (none, size) = (std::ptr::null_mut::<u64>(), 8 as libc::size_t);
                for sig in [32, 33].map(libc::c_long::from) {
                    libc::syscall(libc::SYS_rt_sigaction, sig, default.as_ptr(), none, size);
                }
                Ok(())
            });
        }
    }
    cmd
}

/// The pid usher's first child gets when usher is PID 1 of a fresh namespace:
/// 2, but under an emulator whatever its own threads left (qemu-user starts
/// a helper thread first, which takes 2), found by asking a shell.
pub fn first_child_pid() -> i32 {
    static PID: OnceLock<i32> = OnceLock::new();
    *PID.get_or_init(|| {
        if emulator().is_none() {
            return 2;
        }
        let prefix = namespace_prefix().expect("namespaces checked by the caller");
        let mut cmd = usher_command(prefix);
        cmd.args(["--", "sh", "-c", "echo $$"]);
        let ran = run_bounded(&mut cmd, Duration::from_secs(30));
        assert!(ran.ok(), "asking the app's pid: {ran:?}");
        let pid = ran.stdout.trim().parse();
        pid.unwrap_or_else(|_| panic!("asking the app's pid: {ran:?}"))
    })
}

// ------------------------------------------------------------- namespaces --

/// How usher is started.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// PID 1 of a fresh PID namespace (via unshare).
    Pid1,
    /// A plain process of this test (with `-s` where a test wants a reaper).
    Plain,
}

/// The unshare prefix that works here, or why none does. unshare is named
/// by its full path, so a test may give usher a PATH of its own.
pub fn namespace_prefix() -> Result<&'static [&'static str], String> {
    static PREFIX: OnceLock<Result<&'static [&'static str], String>> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            let unshare = which("unshare").ok_or("no unshare (util-linux) in PATH")?;
            let unshare: &'static str = Box::leak(unshare.into_boxed_str());
            let pid = ["--pid", "--fork", "--mount-proc", "--kill-child"];
            for user in [&[][..], &["--user", "--map-root-user"]] {
                let prefix: Vec<&str> = [&[unshare][..], user, &pid].concat();
                let mut c = Command::new(unshare);
                c.args(&prefix[1..]).arg("true");
                if try_run(&mut c, SOON).is_ok_and(|r| r.ok()) {
                    return Ok(&*Box::leak(prefix.into_boxed_slice()));
                }
            }
            Err("unshare --pid --fork --mount-proc does not work here (no PID namespaces)".into())
        })
        .clone()
}

/// The full path of `program`, found in this process's PATH.
pub fn which(program: &str) -> Option<String> {
    let path = std::env::var_os("PATH")?;
    let mut paths = std::env::split_paths(&path).map(|d| d.join(program));
    Some(paths.find(|p| p.is_file())?.to_string_lossy().into_owned())
}

/// Says, past the test harness's capture (so it shows when the test
/// passes), that the running test or a part of it is skipped, and why.
pub fn skipped(why: &str) {
    use std::io::Write;
    let thread = std::thread::current();
    let test = thread.name().unwrap_or("a test");
    let _ = writeln!(std::io::stderr(), "SKIPPED {test}: {why}");
}

/// Whether PID-namespace tests can run here. When they cannot, says that
/// the running test is skipped, and why; with
/// `USHERTEST_REQUIRE_NAMESPACES=1` (CI) it fails the test instead.
pub fn namespaces() -> bool {
    namespaces_for("")
}

fn namespaces_for(part: &str) -> bool {
    let Err(why) = namespace_prefix() else {
        return true;
    };
    skip("USHERTEST_REQUIRE_NAMESPACES", &format!("{part}{why}"));
    false
}

/// A test (or part) that cannot run here: one `SKIPPED` line saying why,
/// or, with the CI switch `require` (`USHERTEST_REQUIRE_DOCKER`...) set to
/// 1, a failure.
pub fn skip(require: &str, why: &str) {
    if std::env::var_os(require).is_some_and(|v| v == "1") {
        panic!("{require}=1, but {why}");
    }
    skipped(why);
}

/// Returns from the test, saying why, where PID namespaces are unavailable.
#[macro_export]
macro_rules! needs_namespaces {
    () => {
        if !$crate::common::namespaces() {
            return;
        }
    };
}

/// Plain always; PID 1 too where namespaces work.
pub fn modes() -> Vec<Mode> {
    let mut m = vec![Mode::Plain];
    // scripts/dist-test.sh, under an emulator that refuses
    // PR_SET_CHILD_SUBREAPER (qemu 7.2), runs the PID 1 half alone.
    if let Ok(why) = std::env::var("USHERTEST_NO_SUBREAPER") {
        println!("SKIPPED the subreaper half: {why}");
        m.clear();
    }
    if namespaces_for("its PID 1 part: ") {
        m.push(Mode::Pid1);
    }
    m
}

/// Whether this test runs as root.
pub fn root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// The first of `paths` that exists.
pub fn first_existing(paths: &[&str]) -> Option<String> {
    paths
        .iter()
        .find(|p| Path::new(p).exists())
        .map(|p| p.to_string())
}

// ---------------------------------------------------------------- scratch --

/// A scratch directory unique to one test, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let (pid, n) = (std::process::id(), N.fetch_add(1, Ordering::Relaxed));
        let dir = std::env::temp_dir().join(format!("usher-test-{pid}-{n}-{name}"));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("create scratch dir");
        Scratch(dir)
    }

    pub fn path(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }

    /// The file's contents, or "" if it does not exist yet.
    pub fn read(&self, name: &str) -> String {
        fs::read_to_string(self.path(name)).unwrap_or_default()
    }

    /// Waits up to `within` for `name` to contain `needle`.
    pub fn wait_for(&self, name: &str, needle: &str, within: Duration) -> bool {
        wait_until(within, || self.read(name).contains(needle))
    }

    /// The complete stamps (`rec NAME`: `date +%s.%N` lines) in file `name`.
    pub fn stamps(&self, name: &str) -> Vec<f64> {
        let text = self.read(name);
        let complete = &text[..text.rfind('\n').unwrap_or(0)];
        complete
            .lines()
            .filter_map(|l| l.trim().parse().ok())
            .collect()
    }

    /// The first complete stamp in `name`.
    pub fn stamp(&self, name: &str) -> Option<f64> {
        self.stamps(name).first().copied()
    }

    /// Seconds from `sent` to the first stamp in `name`, if there is one.
    pub fn since(&self, name: &str, sent: Sent) -> Option<f64> {
        self.stamp(name).map(|t| t - sent.epoch)
    }

    /// The pid written in `name` (by `echo $$ > name`).
    pub fn pid(&self, name: &str) -> i32 {
        let text = self.read(name);
        let pid = text.trim().parse();
        pid.unwrap_or_else(|_| panic!("{name} holds no pid: {text:?}"))
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Writes an executable shell script into `dir` and returns its path.
pub fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    path.to_string_lossy().into_owned()
}

/// An app script that runs in the scratch dir, never dumps core, and has
/// `rec NAME` to append the wall-clock time to file NAME.
pub fn app(s: &Scratch, name: &str, body: &str) -> String {
    let dir = s.0.to_str().expect("utf-8 temp dir");
    assert!(!dir.contains('\''), "scratch dir {dir:?} holds a quote");
    let rec = "rec() { date +%s.%N >> \"$1\"; }";
    let body = format!("cd '{dir}' || exit 99\nulimit -c 0 2>/dev/null\n{rec}\n{body}");
    script(&s.0, name, &body)
}

// ------------------------------------------------------------------ clocks --

/// Polls `cond` every `every` until it holds or `within` passes.
pub fn poll(within: Duration, every: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(every);
    }
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
pub fn wait_until(within: Duration, cond: impl FnMut() -> bool) -> bool {
    poll(within, Duration::from_millis(10), cond)
}

/// Wall-clock seconds since the epoch: comparable with the apps' `date +%s.%N`.
pub fn epoch() -> f64 {
    let now = SystemTime::now().duration_since(UNIX_EPOCH);
    now.expect("clock after 1970").as_secs_f64()
}

/// When the test sent a signal, read just *before* `kill`: so "no sooner
/// than" bounds measured from it are exact.
#[derive(Clone, Copy, Debug)]
pub struct Sent {
    pub at: Instant,
    pub epoch: f64,
}

impl Sent {
    pub fn now() -> Sent {
        let (at, epoch) = (Instant::now(), epoch());
        Sent { at, epoch }
    }

    /// Seconds since then.
    pub fn elapsed(&self) -> f64 {
        self.at.elapsed().as_secs_f64()
    }
}

/// Asserts that `what` came `after` seconds after its cause: no sooner than
/// `due` (usher must never act early) and at most [`SLACK`] later. `None`:
/// it never came. `log` (usher's) goes into the failure message.
#[track_caller]
pub fn assert_on_time(what: &str, after: Option<f64>, due: f64, log: &str) {
    let Some(after) = after else {
        panic!("{what} never came (due {due}s after its cause)\n{log}");
    };
    let came = format!("{what} came {after:.3}s after its cause");
    assert!(after >= due, "{came}, before {due}s\n{log}");
    let late = after > due + SLACK;
    assert!(!late, "{came} (due {due}s, slack {SLACK}s)\n{log}");
}

/// Asserts an escalation at a `grace`-second deadline, `took` seconds after
/// what started it (by the test's clock): usher's own line says it killed
/// at the deadline, on time, and usher exited no sooner and not much later
/// (listing /proc and reaping can lag on a starved machine). Returns the line.
#[track_caller]
pub fn assert_deadline(grace: f64, took: f64, log: &str) -> String {
    let line = line_with(log, "grace period over, killing: signal=SIGKILL");
    let line = line.unwrap_or_else(|| panic!("no kill at the deadline\n{log}"));
    assert_on_time("the deadline's kill", line_t(line), grace, log);
    let exited = (grace..=grace + 2.0 * SLACK).contains(&took);
    let when = format!("usher exited {took:.3}s after the stop (grace {grace}s)");
    assert!(exited, "{when}\n{log}");
    line.to_string()
}

// --------------------------------------------------------------- commands --

/// Hides the test's own `USHER_*` variables from `cmd` (and so from any
/// usher under it), except those the test set on `cmd` itself: a
/// developer's environment must not change a test's result.
pub fn hermetic(cmd: &mut Command) {
    let set: Vec<_> = cmd.get_envs().map(|(k, _)| k.to_os_string()).collect();
    for (k, _) in std::env::vars_os() {
        if k.as_bytes().starts_with(b"USHER_") && !set.contains(&k) {
            cmd.env_remove(k);
        }
    }
}

/// Reads `from` to its end on a thread of its own.
pub fn read_all(mut from: impl Read + Send + 'static) -> JoinHandle<String> {
    std::thread::spawn(move || {
        let mut s = String::new();
        let _ = from.read_to_string(&mut s);
        s
    })
}

/// What a finished command left.
#[derive(Debug)]
pub struct Ran {
    pub code: Option<i32>,
    pub stdout: String,
    pub stderr: String,
    pub took: Duration,
}

impl Ran {
    pub fn ok(&self) -> bool {
        self.code == Some(0)
    }
}

/// Runs `cmd` hermetically, stdin closed, in its own process group, for at
/// most `within`. Err when it cannot start (the spawn error) or runs out of
/// time (then its whole tree is SIGKILLed, by pid).
pub fn try_run(cmd: &mut Command, within: Duration) -> Result<Ran, String> {
    hermetic(cmd);
    cmd.stdin(Stdio::null()).stdout(Stdio::piped());
    cmd.stderr(Stdio::piped()).process_group(0);
    let start = Instant::now();
    let child = cmd
        .spawn()
        .map_err(|e| format!("cannot run {cmd:?}: {e}"))?;
    let shown = format!("{cmd:?}");
    finish(child, within, start).map_err(|e| format!("{shown} {e}"))
}

/// Waits up to `within` for `child`, collecting what it writes to piped
/// stdout and stderr; kills its tree if it does not finish.
pub fn finish(mut child: Child, within: Duration, start: Instant) -> Result<Ran, String> {
    let out = child.stdout.take().map(read_all);
    let err = child.stderr.take().map(read_all);
    let mut status = None;
    wait_until(within, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        kill_tree(child.id() as i32);
        let _ = child.wait();
        return Err(format!("did not finish within {within:?}"));
    };
    let (code, took) = (status.code(), start.elapsed());
    let text = |h: Option<JoinHandle<String>>| h.and_then(|h| h.join().ok()).unwrap_or_default();
    let (stdout, stderr) = (text(out), text(err));
    Ok(Ran {
        code,
        stdout,
        stderr,
        took,
    })
}

/// Like [`try_run`], failing the test if `cmd` cannot start or finish.
pub fn run_bounded(cmd: &mut Command, within: Duration) -> Ran {
    try_run(cmd, within).unwrap_or_else(|e| panic!("{e}"))
}

// ------------------------------------------------------------------ usher --

/// A running usher (inside unshare in Pid1 mode). Killed with everything it
/// started when dropped.
pub struct Running {
    /// The process we spawned: unshare (Pid1), usher itself (Plain), or
    /// whatever [`start_command`] was given.
    pub outer: Child,
    pub mode: Mode,
    stderr: Option<JoinHandle<String>>,
}

/// What a finished usher left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stderr: String,
}

/// For failure messages: the exit and usher's log as it was written.
impl std::fmt::Display for Finished {
    fn fmt(&self, out: &mut std::fmt::Formatter) -> std::fmt::Result {
        let (code, stderr) = (self.code, &self.stderr);
        write!(out, "usher exited {code:?}; its stderr:\n{stderr}")
    }
}

/// The command that runs usher in `mode` (through unshare as PID 1).
pub fn usher_in(mode: Mode) -> Command {
    let prefix = || namespace_prefix().expect("namespaces checked by the caller");
    usher_command(if mode == Mode::Pid1 { prefix() } else { &[] })
}

/// Starts usher with `args` (usher's flags, `--`, the app) in `mode`.
pub fn start(mode: Mode, args: &[&str]) -> Running {
    start_with(mode, args, |_| {})
}

/// Runs usher with `args` in `mode` to its end.
pub fn run(mode: Mode, args: &[&str]) -> Finished {
    start(mode, args).wait(FINISH)
}

/// Runs usher with `args` in `mode` to its end, with the variables `env`.
pub fn run_with(mode: Mode, args: &[&str], env: &[(&str, &str)]) -> Finished {
    start_with(mode, args, |c| {
        c.envs(env.iter().copied());
    })
    .wait(FINISH)
}

/// Like [`start`], with a chance to adjust the command (env vars, stdin).
pub fn start_with(mode: Mode, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Running {
    start_command(mode, usher_in(mode), |c| {
        c.args(args);
        adjust(c);
    })
}

/// Starts usher in `mode` with `flags` (and `-s` when not PID 1) running
/// the app script `body` (see [`app`]) in `s`.
pub fn start_app(mode: Mode, s: &Scratch, flags: &[&str], body: &str) -> Running {
    start_app_with(mode, s, flags, body, |c| c)
}

/// [`start_app`] with a chance to adjust usher's command (variables, stdout).
pub fn start_app_with(
    mode: Mode,
    s: &Scratch,
    flags: &[&str],
    body: &str,
    adjust: impl FnOnce(&mut Command) -> &mut Command,
) -> Running {
    let a = app(s, "app", body);
    let plain: &[&str] = if mode == Mode::Plain { &["-s"] } else { &[] };
    start_with(mode, &[plain, flags, &["--", &a]].concat(), |c| {
        adjust(c);
    })
}

/// Starts `cmd`, which is or execs usher (setpriv, prlimit, an unshare of
/// one's own); `mode` says where usher is (Plain: the command itself, after
/// exec; Pid1: its child). Hermetic; stdin and stdout null and stderr
/// captured unless `adjust` sets them otherwise.
pub fn start_command(mode: Mode, mut cmd: Command, adjust: impl FnOnce(&mut Command)) -> Running {
    hermetic(&mut cmd);
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Its own process group, so cleanup can reach unshare and usher by pgid.
    cmd.process_group(0);
    adjust(&mut cmd);
    let mut outer = cmd.spawn().expect("spawn usher's command");
    let stderr = outer.stderr.take().map(read_all);
    Running {
        outer,
        mode,
        stderr,
    }
}

impl Running {
    /// usher's pid as seen from here (for sending it signals).
    pub fn usher_pid(&self) -> i32 {
        let outer = self.outer.id() as i32;
        if self.mode == Mode::Plain {
            return outer;
        }
        let mut found = 0;
        wait_until(SOON, || {
            found = children_of(outer).first().copied().unwrap_or(0);
            found != 0
        });
        assert!(found != 0, "usher did not appear under unshare");
        found
    }

    /// Sends `sig` to usher; returns when, read just before sending.
    pub fn signal(&self, sig: i32) -> Sent {
        let pid = self.usher_pid(); // may poll /proc: not part of the timing
        let sent = Sent::now();
        kill(pid, sig).unwrap_or_else(|e| panic!("kill usher: {e}"));
        sent
    }

    /// Whether usher (the outer process) is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.outer.try_wait(), Ok(None))
    }

    /// Waits up to [`SOON`] for the app to stamp `file`; fails the test,
    /// with usher's log, if it never does.
    pub fn ready(self, s: &Scratch, file: &str) -> Running {
        if wait_until(SOON, || s.stamp(file).is_some()) {
            return self;
        }
        let f = self.wait(Duration::from_secs(1));
        panic!("the app never wrote {file:?}: {f:?}");
    }

    /// Waits up to `within` for usher to exit, then at most `within` more
    /// for its stderr to close: whatever usher left behind (an app orphaned
    /// by a crash) may hold it open, and the test must then fail with what
    /// was read so far, not hang. Panics (after cleanup) if usher does not exit.
    pub fn wait(mut self, within: Duration) -> Finished {
        let mut status = None;
        wait_until(within, || {
            status = self.outer.try_wait().ok().flatten();
            status.is_some()
        });
        let Some(status) = status else {
            let pid = self.outer.id();
            drop(self);
            panic!("usher (outer pid {pid}) did not exit within {within:?}");
        };
        let reader = self.stderr.take();
        let closed = wait_until(within, || reader.as_ref().is_none_or(|h| h.is_finished()));
        let held = "<usher exited but its stderr stayed open: something it left behind holds it>";
        let stderr = match reader {
            Some(h) if closed => h.join().unwrap_or_default(),
            Some(_) => held.into(),
            None => String::new(),
        };
        let code = status.code();
        Finished {
            status,
            code,
            stderr,
        }
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if !matches!(self.outer.try_wait(), Ok(Some(_))) {
            kill_tree(self.outer.id() as i32);
            let _ = self.outer.wait();
        }
    }
}

// ------------------------------------------------------------------ /proc --

/// kill(2), as a Result.
pub fn kill(pid: i32, sig: i32) -> std::io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    match unsafe { libc::kill(pid, sig) } {
        0 => Ok(()),
        _ => Err(std::io::Error::last_os_error()),
    }
}

/// Direct children of `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task"))
        .into_iter()
        .flatten()
        .flatten();
    let children = tasks.filter_map(|t| fs::read_to_string(t.path().join("children")).ok());
    let pids: Vec<String> = children.collect();
    pids.iter()
        .flat_map(|s| s.split_whitespace())
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// Waits up to [`SOON`] for `parent`'s first child to be `comm`; returns its pid.
pub fn child_named(parent: i32, comm: &str) -> i32 {
    let mut found = 0;
    let named = |p: i32| fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
    let ok = wait_until(SOON, || {
        found = children_of(parent).first().copied().unwrap_or(0);
        found != 0 && named(found).trim() == comm
    });
    assert!(ok, "no {comm} under pid {parent}");
    found
}

/// SIGKILLs `root` and every descendant, by pid (never by name).
pub fn kill_tree(root: i32) {
    let mut all = vec![root];
    for i in 0.. {
        let Some(&pid) = all.get(i) else { break };
        all.extend(children_of(pid));
    }
    for pid in all {
        let _ = kill(pid, libc::SIGKILL);
    }
}

/// Fields of /proc/PID/status as text ("SigBlk", "SigIgn", "State", ...).
pub fn proc_status(pid: i32, field: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    let field = format!("{field}:");
    text.lines()
        .find_map(|l| Some(l.strip_prefix(&field)?.trim().to_string()))
}

/// The process state letter of `pid` ('R', 'S', 'T', 'Z'...).
pub fn state(pid: i32) -> Option<char> {
    proc_status(pid, "State")?.chars().next()
}

/// Whether `pid` is a live (not zombie) process.
pub fn alive(pid: i32) -> bool {
    state(pid).is_some_and(|s| s != 'Z')
}

/// The process group of `pid`, from /proc/PID/stat.
pub fn pgrp(pid: i32) -> Option<i32> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    text[text.rfind(')')? + 1..]
        .split_whitespace()
        .nth(2)?
        .parse()
        .ok()
}

/// `VmRSS` of `pid` in kB.
pub fn vm_rss_kb(pid: i32) -> Option<u64> {
    proc_status(pid, "VmRSS")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many file descriptors `pid` has open.
pub fn fd_count(pid: i32) -> Option<usize> {
    Some(fs::read_dir(format!("/proc/{pid}/fd")).ok()?.count())
}

/// Compiles the C program `src` with `cc -O2` into the test binaries' temp
/// dir, once per test process; `Err(why)` when there is no C compiler or
/// the build fails (callers skip with the reason).
pub fn cc_binary(src: &Path, name: &str) -> Result<PathBuf, String> {
    use std::collections::HashMap;
    use std::sync::Mutex;
    static BUILT: OnceLock<Mutex<HashMap<String, Result<PathBuf, String>>>> = OnceLock::new();
    let built = BUILT.get_or_init(Default::default).lock();
    let mut built = built.unwrap_or_else(|e| e.into_inner());
    built
        .entry(name.to_string())
        .or_insert_with(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let out = dir.join(name);
            // Built under a name of its own, then renamed: test binaries
            // running at once never see a half-written program.
            let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
            let mut cc = Command::new("cc");
            cc.args(["-O2", "-Wall", "-o"]).arg(&tmp).arg(src);
            let no_cc = |e| format!("no C compiler ({e}); apt-get install -y gcc libc6-dev");
            let built = try_run(&mut cc, HEAVY).map_err(no_cc)?;
            if !built.ok() {
                let _ = fs::remove_file(&tmp);
                let why = built.stderr.trim();
                return Err(format!("cc {} failed: {why}", src.display()));
            }
            fs::rename(&tmp, &out).map_err(|e| format!("rename {}: {e}", tmp.display()))?;
            Ok(out)
        })
        .clone()
}

// -------------------------------------------------------------------- log --

/// The non-empty lines of `text`.
pub fn lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// usher's own lines (text format), skipping anything the app printed.
pub fn usher_lines(log: &str) -> Vec<&str> {
    log.lines().filter(|l| l.starts_with("usher: ")).collect()
}

/// The first usher line containing `needle`.
pub fn line_with<'a>(log: &'a str, needle: &str) -> Option<&'a str> {
    let needle = with_app_pid(needle);
    usher_lines(log).into_iter().find(|l| l.contains(&needle))
}

/// `needle` with `{app}` standing for the pid of the app of a PID-1 usher
/// ([`first_child_pid`]: 2, natively), as log needles write it.
pub fn with_app_pid(needle: &str) -> String {
    match needle.contains("{app}") {
        true => needle.replace("{app}", &first_child_pid().to_string()),
        false => needle.to_string(),
    }
}

/// The `+1.234s` time of a text log line.
pub fn line_t(line: &str) -> Option<f64> {
    let rest = line.strip_prefix("usher: +")?;
    rest.split_once("s ")?.0.parse().ok()
}

/// The value of `key=` among the words of a line.
pub fn field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let want = format!("{key}=");
    let mut words = line.split_whitespace();
    Some(
        words
            .find_map(|w| w.strip_prefix(want.as_str()))?
            .trim_end_matches(','),
    )
}

/// The comma-separated pids of a `pids=2,5` field.
pub fn pids_field(line: &str) -> Vec<i32> {
    let pids = field(line, "pids").unwrap_or_default();
    pids.split(',').filter_map(|n| n.parse().ok()).collect()
}

/// Asserts that `stderr` is one line, `usher: error: ...`, saying each of `says`.
#[track_caller]
pub fn assert_one_error(stderr: &str, says: &[&str]) {
    let l = lines(stderr);
    let all = |l: &str| says.iter().all(|s| l.contains(s));
    let one = l.len() == 1 && l[0].starts_with("usher: error: ") && all(l[0]);
    assert!(one, "one `usher: error:` line saying {says:?}: {stderr:?}");
}

/// Asserts that no line of usher's mentions `needle`, because `why`.
#[track_caller]
pub fn assert_no_line(log: &str, needle: &str, why: &str) {
    if let Some(line) = line_with(log, needle) {
        panic!("{why}, but usher says {line:?}\n{log}");
    }
}

/// Asserts `needles` occur in usher's lines in this order, each on its
/// own line; returns those lines.
#[track_caller]
pub fn assert_in_order(log: &str, needles: &[&str]) -> Vec<String> {
    let lines = usher_lines(log);
    let mut found = Vec::new();
    let mut from = 0;
    for needle in needles.iter().map(|n| with_app_pid(n)) {
        let Some(at) = lines[from..].iter().position(|l| l.contains(&needle)) else {
            panic!("no line with {needle:?} after line {from} in:\n{log}");
        };
        found.push(lines[from + at].to_string());
        from += at + 1;
    }
    found
}

/// Asserts that the `pid= pgrp= tpgid=` report of an app on a terminal
/// says it leads its own process group and that group is the terminal's
/// foreground one (so it reads the terminal and gets ^C).
#[track_caller]
pub fn assert_foreground(line: &str) {
    let [pid, pgrp, tpgid] = ["pid", "pgrp", "tpgid"].map(|k| field(line, k));
    let leads = pid.is_some() && pgrp == pid;
    assert!(leads, "the app leads its group: {line}");
    assert_eq!(tpgid, pgrp, "its group is the foreground: {line}");
}

/// Whether `text` (bytes, maybe not UTF-8) has a line that is exactly `want`.
pub fn has_line(text: &[u8], want: &[u8]) -> bool {
    text.split(|&b| b == b'\n').any(|l| l == want)
}

/// An OS string from raw bytes.
pub fn bytes(b: &[u8]) -> &OsStr {
    OsStr::from_bytes(b)
}

// ------------------------------------------- shared by the Docker tests --

/// `Duration::from_secs`, short.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}

/// The words of `line`, split at white space: for command lines of flags,
/// names and numbers (no quoting: a path goes as an argument of its own).
pub fn words(line: &str) -> Vec<&str> {
    line.split_whitespace().collect()
}

/// A loopback port nothing listens on (bound a moment ago, then released).
pub fn free_port() -> u16 {
    let bound = std::net::TcpListener::bind("127.0.0.1:0").and_then(|l| l.local_addr());
    bound.expect("bind 127.0.0.1:0").port()
}

/// An id unique to this test run on this host: the pid and the clock's nanoseconds.
pub fn run_id() -> String {
    let nanos = SystemTime::now().duration_since(UNIX_EPOCH);
    let nanos = nanos.map(|d| d.subsec_nanos()).unwrap_or(0);
    format!("{}-{nanos:08x}", std::process::id())
}

/// The cargo target dir of the static usher that tests/docker/setup.sh and
/// the example's images.sh build: one for every test binary, so it is built once.
pub fn static_target_dir() -> PathBuf {
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    tmp.parent().unwrap_or(&tmp).join("docker-static")
}

/// `docker ARGS...`, for at most `limit`; panics if it cannot run or hangs.
pub fn docker(args: &[&str], limit: Duration) -> Ran {
    run_bounded(Command::new("docker").args(args), limit)
}

/// `docker ARGS...` that must succeed; returns its trimmed stdout.
pub fn docker_ok(args: &[&str], limit: Duration) -> String {
    let out = docker(args, limit);
    assert!(out.ok(), "docker {args:?} failed: {out:?}");
    out.stdout.trim().to_string()
}

/// Whether a Docker engine answers (asked once); if not, [`skip`]s the
/// running test (`USHERTEST_REQUIRE_DOCKER=1` makes that a failure).
pub fn docker_engine() -> bool {
    static ENGINE: OnceLock<Result<(), String>> = OnceLock::new();
    let answer = ENGINE.get_or_init(|| {
        let mut cmd = Command::new("docker");
        cmd.args(["version", "--format", "{{.Server.Version}}"]);
        match try_run(&mut cmd, secs(30)) {
            Err(e) => Err(format!("no Docker engine answers ({e})")),
            Ok(out) if out.ok() && !out.stdout.trim().is_empty() => Ok(()),
            Ok(out) => Err(format!(
                "no Docker engine answers (`docker version`: {})",
                out.stderr.lines().next().unwrap_or("no output").trim()
            )),
        }
    });
    answer
        .as_ref()
        .map_err(|why| skip("USHERTEST_REQUIRE_DOCKER", why))
        .is_ok()
}

/// `--label` arguments for everything a test makes in Docker: `usher-test=1`,
/// `usher-test.run=RUN`, the test's pid and host (setup.sh's sweep removes
/// what a killed run left behind).
pub fn docker_labels(run: &str) -> Vec<String> {
    let host = fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    let (pid, host) = (std::process::id(), host.trim());
    let labels = [
        format!("run={run}"),
        format!("pid={pid}"),
        format!("host={host}"),
    ];
    let labels = labels.map(|l| format!("usher-test.{l}"));
    let all = ["usher-test=1".to_string()].into_iter().chain(labels);
    all.flat_map(|l| ["--label".to_string(), l]).collect()
}

/// Removes, by id, every container and then every image labelled `label`
/// (`KEY=VALUE`); never panics (it may run while a failed test unwinds).
pub fn remove_labelled(label: &str) {
    let filter = format!("label={label}");
    let docker = |args: &[&str], ids: &[String]| {
        let mut cmd = Command::new("docker");
        cmd.args(args).args(ids);
        try_run(&mut cmd, secs(120))
            .map(|o| o.stdout)
            .unwrap_or_default()
    };
    let ids = |list: &[&str]| -> Vec<String> {
        let out = docker(&[list, &["--no-trunc", "--filter", &filter]].concat(), &[]);
        let mut ids: Vec<String> = out.split_whitespace().map(String::from).collect();
        ids.dedup();
        ids
    };
    let containers = ids(&["ps", "-aq"]);
    if !containers.is_empty() {
        docker(&["rm", "-f", "-v"], &containers);
    }
    // An image built FROM another goes first: a few rounds remove a chain.
    for _ in 0..3 {
        let images = ids(&["images", "-q"]);
        if images.is_empty() {
            break;
        }
        docker(&["rmi", "-f"], &images);
    }
}
