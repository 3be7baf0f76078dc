//! Shared harness for integration tests: run the built usher as PID 1 of a new
//! PID namespace (or as a subreaper), wait with bounds, clean up by pid.
#![allow(dead_code)]

use std::fs;
use std::io::Read;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

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
    EMULATOR
        .get_or_init(|| {
            std::env::var("USHERTEST_EMULATOR")
                .ok()
                .filter(|e| !e.is_empty())
        })
        .as_deref()
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
                for sig in [32, 33] {
                    libc::syscall(
                        libc::SYS_rt_sigaction,
                        libc::c_long::from(sig),
                        default.as_ptr(),
                        std::ptr::null_mut::<u64>(),
                        8 as libc::size_t,
                    );
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
        let (code, out, err) = run_bounded(&mut cmd, Duration::from_secs(30));
        assert_eq!(code, Some(0), "asking the app's pid: {out:?} {err:?}");
        out.trim()
            .parse()
            .unwrap_or_else(|_| panic!("asking the app's pid: {out:?}"))
    })
}

/// How usher is started.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Mode {
    /// PID 1 of a fresh PID namespace (via unshare).
    Pid1,
    /// A plain process of this test, with `-s` added by the caller if wanted.
    Plain,
}

/// The unshare prefix that works here, or why none does.
pub fn namespace_prefix() -> Result<&'static [&'static str], String> {
    static PREFIX: OnceLock<Result<&'static [&'static str], String>> = OnceLock::new();
    PREFIX
        .get_or_init(|| {
            const ROOT: &[&str] = &["unshare", "--pid", "--fork", "--mount-proc", "--kill-child"];
            const USER: &[&str] = &[
                "unshare",
                "--user",
                "--map-root-user",
                "--pid",
                "--fork",
                "--mount-proc",
                "--kill-child",
            ];
            for prefix in [ROOT, USER] {
                let ok = Command::new(prefix[0])
                    .args(&prefix[1..])
                    .arg("true")
                    .stdout(Stdio::null())
                    .stderr(Stdio::null())
                    .status()
                    .map(|s| s.success())
                    .unwrap_or(false);
                if ok {
                    return Ok(prefix);
                }
            }
            Err("unshare --pid --fork --mount-proc does not work here (no PID namespaces)".into())
        })
        .clone()
}

/// Returns true (and prints why) when PID-namespace tests cannot run here.
pub fn skip_without_namespaces(test: &str) -> bool {
    match namespace_prefix() {
        Ok(_) => false,
        Err(why) => {
            eprintln!("SKIPPED {test}: {why}");
            true
        }
    }
}

/// A scratch directory unique to one test, removed on drop.
pub struct Scratch(pub PathBuf);

impl Scratch {
    pub fn new(name: &str) -> Scratch {
        static N: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "usher-test-{}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed),
            name
        ));
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
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

/// Polls `cond` every 10 ms until it holds or `within` passes.
pub fn wait_until(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    loop {
        if cond() {
            return true;
        }
        if Instant::now() >= end {
            return false;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// A running usher (inside unshare in Pid1 mode). Killed with everything it
/// started when dropped.
pub struct Running {
    /// The process we spawned: unshare (Pid1) or usher itself (Plain).
    pub outer: Child,
    pub mode: Mode,
    stderr_buf: Option<std::thread::JoinHandle<String>>,
}

/// What a finished usher left behind.
#[derive(Debug)]
pub struct Finished {
    pub status: ExitStatus,
    pub code: Option<i32>,
    pub stderr: String,
    pub took: Duration,
}

/// Starts usher with `args` (usher's flags, `--`, the app) in `mode`.
pub fn start(mode: Mode, args: &[&str]) -> Running {
    start_with(mode, args, |_| {})
}

/// Like [`start`], with a chance to adjust the command (env vars, stdin).
pub fn start_with(mode: Mode, args: &[&str], adjust: impl FnOnce(&mut Command)) -> Running {
    let mut cmd = match mode {
        Mode::Pid1 => usher_command(namespace_prefix().expect("namespaces checked by the caller")),
        Mode::Plain => usher_command(&[]),
    };
    cmd.args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    // Its own process group, so cleanup can reach unshare and usher by pgid.
    cmd.process_group(0);
    adjust(&mut cmd);
    let mut outer = cmd.spawn().expect("spawn usher");
    let mut err = outer.stderr.take().expect("stderr piped");
    let stderr_buf = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    Running {
        outer,
        mode,
        stderr_buf: Some(stderr_buf),
    }
}

impl Running {
    /// usher's pid as seen from here (for sending it signals).
    pub fn usher_pid(&self) -> i32 {
        let outer = self.outer.id() as i32;
        match self.mode {
            Mode::Plain => outer,
            Mode::Pid1 => {
                let mut found = 0;
                wait_until(Duration::from_secs(10), || {
                    found = children_of(outer).first().copied().unwrap_or(0);
                    found != 0
                });
                assert!(found != 0, "usher did not appear under unshare");
                found
            }
        }
    }

    /// Sends `sig` to usher.
    pub fn signal(&self, sig: i32) {
        // SAFETY: kill has no memory-safety preconditions.
        let ret = unsafe { libc::kill(self.usher_pid(), sig) };
        assert_eq!(ret, 0, "kill usher: {}", std::io::Error::last_os_error());
    }

    /// Waits up to `within` for usher to exit; panics (after cleanup) if it
    /// does not. Never hangs on a stderr that something left behind holds
    /// open (see [`Running::wait_bounded`]).
    pub fn wait(self, within: Duration) -> Finished {
        self.wait_bounded(within)
    }
}

impl Drop for Running {
    fn drop(&mut self) {
        if matches!(self.outer.try_wait(), Ok(Some(_))) {
            return;
        }
        let root = self.outer.id() as i32;
        kill_tree(root);
        let _ = self.outer.wait();
    }
}

/// Direct children of `pid`, from /proc.
pub fn children_of(pid: i32) -> Vec<i32> {
    let mut out = Vec::new();
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return out;
    };
    for t in tasks.flatten() {
        if let Ok(s) = fs::read_to_string(t.path().join("children")) {
            out.extend(s.split_whitespace().filter_map(|p| p.parse::<i32>().ok()));
        }
    }
    out
}

/// SIGKILLs `root` and every descendant, by pid (never by name).
pub fn kill_tree(root: i32) {
    let mut all = vec![root];
    let mut i = 0;
    while i < all.len() {
        let kids = children_of(all[i]);
        all.extend(kids);
        i += 1;
    }
    for pid in all {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGKILL) };
    }
}

/// Fields of /proc/PID/status as text ("SigBlk", "SigIgn", "State", ...).
pub fn proc_status(pid: i32, field: &str) -> Option<String> {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    text.lines().find_map(|l| {
        l.strip_prefix(&format!("{field}:"))
            .map(|v| v.trim().to_string())
    })
}

/// Writes an executable shell script into `dir` and returns its path.
pub fn script(dir: &Path, name: &str, body: &str) -> String {
    use std::os::unix::fs::PermissionsExt;
    let path = dir.join(name);
    fs::write(&path, format!("#!/bin/sh\n{body}\n")).expect("write script");
    fs::set_permissions(&path, fs::Permissions::from_mode(0o755)).expect("chmod script");
    path.to_string_lossy().into_owned()
}

/// `VmRSS` of `pid` in kB, from /proc/PID/status.
pub fn vm_rss_kb(pid: i32) -> Option<u64> {
    proc_status(pid, "VmRSS")?
        .split_whitespace()
        .next()?
        .parse()
        .ok()
}

/// How many file descriptors `pid` has open, from /proc/PID/fd.
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
    let mut built = BUILT
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|e| e.into_inner());
    built
        .entry(name.to_string())
        .or_insert_with(|| {
            let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
            let out = dir.join(name);
            // Built under a name of its own, then renamed: test binaries
            // running at once never see a half-written program.
            let tmp = dir.join(format!("{name}.{}.tmp", std::process::id()));
            let built = Command::new("cc")
                .args(["-O2", "-Wall", "-o"])
                .arg(&tmp)
                .arg(src)
                .stdin(Stdio::null())
                .output()
                .map_err(|e| {
                    format!("no C compiler (`cc`: {e}); apt-get install -y gcc libc6-dev")
                })?;
            if !built.status.success() {
                let _ = fs::remove_file(&tmp);
                return Err(format!(
                    "cc {} failed: {}",
                    src.display(),
                    String::from_utf8_lossy(&built.stderr).trim()
                ));
            }
            fs::rename(&tmp, &out).map_err(|e| format!("rename {}: {e}", tmp.display()))?;
            Ok(out)
        })
        .clone()
}

/// Like [`start_with`] for any command that is or execs usher (setpriv,
/// prlimit, an unshare of one's own); `mode` says where usher is (Plain: the
/// command itself, after exec; Pid1: the command's child). stdin and stdout
/// are null and stderr is captured unless `adjust` sets them otherwise.
pub fn start_command(mode: Mode, mut cmd: Command, adjust: impl FnOnce(&mut Command)) -> Running {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    cmd.process_group(0);
    adjust(&mut cmd);
    let mut outer = cmd.spawn().expect("spawn usher's command");
    let stderr_buf = outer.stderr.take().map(|mut err| {
        std::thread::spawn(move || {
            let mut s = String::new();
            let _ = err.read_to_string(&mut s);
            s
        })
    });
    Running {
        outer,
        mode,
        stderr_buf,
    }
}

impl Running {
    /// Waits up to `within` for usher to exit, then at most `within` more for its
    /// stderr to close after usher exits: whatever usher left behind (an app
    /// orphaned by a crash) may hold it open, and the test must then fail
    /// with what was read so far, not hang.
    pub fn wait_bounded(mut self, within: Duration) -> Finished {
        let t = Instant::now();
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
        let reader = self.stderr_buf.take();
        let closed = wait_until(within, || reader.as_ref().is_none_or(|h| h.is_finished()));
        let stderr = match reader {
            Some(h) if closed => h.join().unwrap_or_default(),
            Some(_) => {
                "<usher exited but its stderr stayed open: something it left behind holds it>"
                    .into()
            }
            None => String::new(),
        };
        Finished {
            status,
            code: status.code(),
            stderr,
            took: t.elapsed(),
        }
    }
}

/// Spawns `cmd` in its own process group and waits up to `within` for it,
/// killing its whole tree (by pid) if it does not finish. Returns
/// (exit code, stdout, stderr).
pub fn run_bounded(cmd: &mut Command, within: Duration) -> (Option<i32>, String, String) {
    cmd.stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .process_group(0);
    let mut child = cmd.spawn().expect("spawn");
    let mut out = child.stdout.take().unwrap();
    let mut err = child.stderr.take().unwrap();
    let out_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = out.read_to_string(&mut s);
        s
    });
    let err_t = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut status = None;
    wait_until(within, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        kill_tree(child.id() as i32);
        let _ = child.wait();
        panic!("{cmd:?} did not finish within {within:?}");
    };
    let out = out_t.join().unwrap_or_default();
    let err = err_t.join().unwrap_or_default();
    (status.code(), out, err)
}

/// An app script that runs in the scratch dir, never dumps core, and has
/// `rec NAME` to append the wall-clock time to file NAME.
pub fn app(s: &Scratch, name: &str, body: &str) -> String {
    let dir = s.0.to_str().expect("utf-8 temp dir");
    assert!(!dir.contains('\''), "scratch dir {dir:?} holds a quote");
    script(
        &s.0,
        name,
        &format!(
            "cd '{dir}' || exit 99\nulimit -c 0 2>/dev/null\nrec() {{ date +%s.%N >> \"$1\"; }}\n{body}"
        ),
    )
}
