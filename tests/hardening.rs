//! Hardening: odd input that must pass through (bytes that are not UTF-8, the longest durations), faults around usher (fork and exec failures, a closed, broken or stalled stderr, no /proc, no root, an app that stops itself) and the terminal (job control through a pty; the app in the foreground, or it could not read it). PID 1 must never fall over.
//!
//! Every wait is bounded and generous (a noisy 2-core machine), every
//! process is cleaned up by pid (`Running` kills its tree on drop; the pty
//! driver kills its own tree by pid), and a test is skipped, with the
//! reason printed, only where a facility is missing (setpriv, python3).

mod common;
use common::*;

use std::fs;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

// ------------------------------------------------------- odd input passes --

#[test]
fn non_utf8_arguments_and_env_reach_the_app_byte_for_byte() {
    let d = Scratch::new("non-utf8");
    // The command itself has a name that is not UTF-8: a link to sh.
    let sh_link = d.0.join(bytes(b"sh\xff"));
    std::os::unix::fs::symlink("/bin/sh", &sh_link).expect("symlink sh");
    let dir = d.0.to_str().unwrap();
    let script = format!(
        "cd '{dir}' && printf '%s' \"$0\" > zero && printf '%s' \"$1\" > one && printf '%s' \"$WEIRD\" > env"
    );
    let f = start_command(Mode::Plain, usher_in(Mode::Plain), |c| {
        c.args(["-s", "--"]).arg(&sh_link).args(["-c", &script]);
        c.args([bytes(b"zero\xfe"), bytes(b"a\xffb\x80c")]);
        c.env("WEIRD", bytes(b"\xfe\xff\xc3("));
    });
    let f = f.wait(FINISH);
    assert_eq!(f.code, Some(0), "{f:?}");
    assert_eq!(fs::read(d.path("zero")).unwrap(), b"zero\xfe");
    assert_eq!(fs::read(d.path("one")).unwrap(), b"a\xffb\x80c");
    assert_eq!(fs::read(d.path("env")).unwrap(), b"\xfe\xff\xc3(");

    // The whole environment, names included, as `env` prints it (a shell
    // would drop a name that is not one).
    let out = fs::File::create(d.path("environ")).unwrap();
    let f = start_command(Mode::Plain, usher_in(Mode::Plain), |c| {
        c.args(["-s", "--", "env"]).env("WEIRD", bytes(b"v\xff"));
        c.env(bytes(b"NAME\xfe"), bytes(b"x\x80y")).stdout(out);
    });
    let f = f.wait(FINISH);
    assert_eq!(f.code, Some(0), "{f:?}");
    let environ = fs::read(d.path("environ")).unwrap();
    let shown = String::from_utf8_lossy(&environ);
    assert!(has_line(&environ, b"WEIRD=v\xff"), "{shown}");
    assert!(has_line(&environ, b"NAME\xfe=x\x80y"), "{shown}");
}

/// The longest durations usher accepts (365d) work: no overflow, no timer
/// error. (Longer ones, up to u64::MAX seconds, used to parse and then crash
/// usher at the first stop signal, with an overflow panic or EINVAL from the
/// timerfd; now they are usage errors, see src/cli.rs.)
#[test]
fn the_longest_durations_work_without_crashing_usher() {
    // Drain: the stop signal is held for a year; a second one cuts it short.
    let year = ["--drain", "364d 23h 59m 59s", "--grace-period", "365d"];
    let mut r = start(
        Mode::Plain,
        &[&["-s"][..], &year, &["--", "sleep", "1000"]].concat(),
    );
    std::thread::sleep(Duration::from_millis(300));
    r.signal(libc::SIGTERM);
    std::thread::sleep(QUIET);
    assert!(r.running(), "usher ended at the first TERM");
    r.signal(libc::SIGTERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(143), "the second TERM reaches sleep: {f:?}");
    assert!(f.stderr.contains("drain cut short"), "{}", f.stderr);
    assert!(!f.stderr.contains("panic"), "{}", f.stderr);

    // Grace period alone: the stop signal is forwarded, the deadline far off.
    let r = start(Mode::Plain, &words("-s --grace-period 365d -- sleep 1000"));
    std::thread::sleep(Duration::from_millis(300));
    r.signal(libc::SIGTERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(143), "{f:?}");
    assert!(!f.stderr.contains("error"), "{}", f.stderr);
}

// ------------------------------------------------------------ no root --

/// setpriv's arguments to become user and group 65534 with no other groups.
const NOBODY: &[&str] = &["--reuid=65534", "--regid=65534", "--clear-groups"];

/// A scratch dir user 65534 may write to.
fn open_scratch(name: &str) -> Scratch {
    let s = Scratch::new(name);
    fs::set_permissions(&s.0, fs::Permissions::from_mode(0o777)).expect("chmod scratch");
    s
}

/// usher as user 65534 can run it, or why the test cannot: in place if
/// 65534 can reach it, else a copy in `s` (a checkout in a 0700 directory,
/// such as `mktemp -d`'s, hides it). Checked by an exec *as 65534*, the way
/// the tests run it through prlimit: setpriv itself still reaches a hidden
/// path (it opens it before dropping root), so `setpriv usher` proves nothing.
fn usher_for_nobody(s: &Scratch) -> Result<String, String> {
    if !root() {
        return Err("not root: cannot switch to user 65534".into());
    }
    let can_run = |path: &str| {
        let mut c = Command::new("setpriv");
        c.args(NOBODY).args(["env", path, "--version"]);
        try_run(&mut c, SOON).is_ok_and(|r| r.ok())
    };
    if can_run(usher()) {
        return Ok(usher().to_string());
    }
    let copy = s.path("usher");
    fs::copy(usher(), &copy).map_err(|e| format!("copy usher: {e}"))?;
    fs::set_permissions(&copy, fs::Permissions::from_mode(0o755)).map_err(|e| e.to_string())?;
    let copy = copy.to_string_lossy().into_owned();
    // Another test thread forking while the copy was open for writing can
    // hold it open for a moment (ETXTBSY): retry briefly.
    if wait_until(Duration::from_secs(5), || can_run(&copy)) {
        Ok(copy)
    } else {
        let u = usher();
        Err(format!(
            "user 65534 cannot run usher at {u} nor {copy} (no setpriv?)"
        ))
    }
}

/// The usher for 65534, or a printed skip.
fn nobody_usher(s: &Scratch) -> Option<String> {
    usher_for_nobody(s).map_err(|why| skipped(&why)).ok()
}

/// As user 65534 (a subreaper, then PID 1): exit codes, forwarding, reaping
/// and the deadline all work without root.
#[test]
fn non_root_usher_does_its_whole_job() {
    let s = open_scratch("non-root");
    let Some(u) = nobody_usher(&s) else { return };
    // setpriv runs usher as 65534; as PID 1, under unshare.
    let as_nobody = |mode: Mode| {
        let mut c = match mode {
            Mode::Plain => Command::new("setpriv"),
            Mode::Pid1 => {
                let prefix = namespace_prefix().expect("modes() checked");
                let mut c = Command::new(prefix[0]);
                c.args(&prefix[1..]).arg("setpriv");
                c
            }
        };
        c.args(NOBODY).args([u.as_str(), "-s"]);
        c
    };
    for mode in modes() {
        let id = "[ \"$(id -u)\" = 65534 ] || exit 99; exit 3";
        let f = start_command(mode, as_nobody(mode), |c| {
            c.args(["--", "sh", "-c", id]);
        });
        let f = f.wait(FINISH);
        assert_eq!(f.code, Some(3), "{mode:?}: {f:?}");

        let _ = fs::remove_file(s.path("hup"));
        let _ = fs::remove_file(s.path("ready"));
        let orphan = "sh -c 'sleep 0.1 & exit 0'";
        let body = format!(
            "trap 'rec hup' HUP\ntrap '' TERM\n{orphan}\nrec ready\nwhile :; do sleep 1; done"
        );
        let a = app(&s, "app", &body);
        let r = start_command(mode, as_nobody(mode), |c| {
            c.args(words("-v --drain 300ms --grace-period 1500ms --"))
                .arg(&a);
        });
        let r = r.ready(&s, "ready");
        let uid = proc_status(r.usher_pid(), "Uid").unwrap();
        assert_eq!(uid.split_whitespace().next(), Some("65534"));
        r.signal(libc::SIGHUP);
        assert!(s.wait_for("hup", "\n", SOON), "{mode:?}: HUP not forwarded");
        let stop = r.signal(libc::SIGTERM);
        let f = r.wait(FINISH);
        assert_eq!(f.code, Some(137), "{mode:?}: {f:?}");
        assert_deadline(1.5, stop.elapsed(), &f.stderr);
        let reaped = f.stderr.contains("debug: reaped: pid=");
        assert!(reaped, "{mode:?}: no orphan reaped");
    }
}

// ------------------------------------------------------------- faults --

#[test]
fn fork_failure_exits_125_with_a_message() {
    let Some(prlimit) = first_existing(&["/usr/bin/prlimit", "/bin/prlimit"]) else {
        skipped("no prlimit (util-linux)");
        return;
    };
    let s = open_scratch("fork-fail");
    // RLIMIT_NPROC binds only users other than root: become 65534 first
    // (or, already not root, just lower the limit).
    let mut cmd = Command::new("setpriv");
    if root() {
        let Some(u) = nobody_usher(&s) else { return };
        cmd.args(NOBODY).args([prlimit.as_str(), "--nproc=1", &u]);
    } else {
        cmd = Command::new(&prlimit);
        cmd.args(["--nproc=1", usher()]);
    }
    let marker = s.path("ran");
    cmd.args(["-s", "--", "touch", marker.to_str().unwrap()]);
    // usher itself is the one process allowed: its fork must fail.
    let f = start_command(Mode::Plain, cmd, |_| {}).wait(FINISH);
    assert_eq!(f.code, Some(125), "{f:?}");
    #[rustfmt::skip]
    let says = ["cannot start \"touch\"", "fork failed", "Resource temporarily unavailable"];
    assert_one_error(&f.stderr, &says);
    assert!(!marker.exists());
}

/// Every way an exec fails, as PID 1 and not: 127 or 126, one line naming
/// the command and the reason, and no shell run in its place.
#[test]
fn exec_failures_exit_127_or_126_naming_the_command_and_the_reason() {
    let d = Scratch::new("exec-fail");
    let write = |name: &str, body: &str, mode: u32| {
        let p = d.path(name);
        fs::write(&p, body).unwrap();
        fs::set_permissions(&p, fs::Permissions::from_mode(mode)).unwrap();
        p.to_str().unwrap().to_string()
    };
    let ran = d.path("ran").to_str().unwrap().to_string();
    let touch = format!("touch {ran}\n");
    let no_exec_bit = write("noexec.sh", &format!("#!/bin/sh\n{touch}"), 0o644);
    let no_hashbang = write("nohashbang", &touch, 0o755);
    let empty = write("empty", "", 0o755);
    let no_interp = format!("#!/nonexistent/interp\n{touch}");
    let bad_interp = write("badinterp", &no_interp, 0o755);
    let under_file = format!("{}/x", write("file", "", 0o644));
    let dir = d.0.to_str().unwrap().to_string();
    fs::create_dir(d.path("bin")).unwrap();
    write("bin/usher-hardening-noexec", "#!/bin/sh\n", 0o644);
    let in_path = write("bin/usher-hardening-badinterp", &no_interp, 0o755);
    let bin = d.path("bin").to_str().unwrap().to_string();
    let found = format!("found {in_path}, but its #! interpreter or ELF loader is missing");
    let missing = "#! interpreter or ELF loader is missing";

    // (command, PATH override, exit code, what the line must say)
    #[rustfmt::skip]
    let cases: Vec<(&str, Option<&str>, i32, &str)> = vec![
        ("usher-hardening-no-such-cmd", None, 127, "command not found in PATH"),
        ("/nonexistent/usher-app", None, 127, "no such file"),
        (under_file.as_str(), None, 127, "no such file"), // ENOTDIR
        (bad_interp.as_str(), None, 127, missing),
        (no_exec_bit.as_str(), None, 126, "permission denied"),
        (dir.as_str(), None, 126, "it is a directory"),
        (no_hashbang.as_str(), None, 126, "exec format error"),
        (empty.as_str(), None, 126, "exec format error"),
        // Found in PATH but not executable: EACCES wins over "not found".
        ("usher-hardening-noexec", Some(bin.as_str()), 126, "permission denied"),
        // Found in PATH, its interpreter missing: the message says which file.
        ("usher-hardening-badinterp", Some(bin.as_str()), 127, found.as_str()),
        // An empty PATH entry means the current directory, as in execvp.
        ("usher-hardening-no-such-cmd", Some(""), 127, "command not found"),
    ];
    for mode in modes() {
        for &(cmd, path, code, why) in &cases {
            let path: Vec<_> = path.map(|p| ("PATH", p)).into_iter().collect();
            let f = run_with(mode, &["-s", "--", cmd], &path);
            assert_eq!(f.code, Some(code), "{mode:?} {cmd}: {f:?}");
            let names = format!("usher: error: cannot run {cmd:?}");
            assert_one_error(&f.stderr, &[&names, why]);
        }
    }
    let ran = Path::new(&ran).exists();
    assert!(!ran, "a failed command ran, or a shell in its place");
}

enum Trial {
    /// usher itself could not be started with that many bytes.
    UsherTooBig,
    /// The app ran.
    Ran,
    /// usher ran and the app's exec failed with E2BIG.
    Refused(String),
}

/// Runs `usher -s -- x PAD...` with `pad` bytes of arguments, `x` found
/// through a PATH entry thousands of bytes long (a link to `true`): the
/// app's exec copies that long path where usher's had its own short one,
/// so some sizes fit usher but not the app.
fn e2big_trial(path_dir: &Path, pad: usize) -> Trial {
    let mut args = vec!["-s".to_string(), "--".into(), "x".into()];
    let mut left = pad;
    while left > 0 {
        let n = left.min(16 * 1024);
        args.push("p".repeat(n));
        left -= n;
    }
    let mut cmd = Command::new(usher());
    cmd.args(&args)
        .env_clear()
        .env("PATH", path_dir)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .process_group(0);
    // SAFETY: setrlimit is async-signal-safe; the rlimit lives on the stack.
    unsafe {
        cmd.pre_exec(|| {
            // 512 KiB of stack: exec then allows the 128 KiB minimum of arguments.
            let lim = libc::rlimit {
                rlim_cur: 512 * 1024,
                rlim_max: 512 * 1024,
            };
            if libc::setrlimit(libc::RLIMIT_STACK, &lim) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(libc::E2BIG) => return Trial::UsherTooBig,
        Err(e) => panic!("spawn usher: {e}"),
    };
    let out = finish(child, FINISH, Instant::now())
        .unwrap_or_else(|e| panic!("usher with {pad} bytes of arguments {e}"));
    match out.code {
        Some(0) => Trial::Ran,
        Some(126) => Trial::Refused(out.stderr),
        other => panic!("{pad} bytes: unexpected exit {other:?}: {:?}", out.stderr),
    }
}

#[test]
fn argument_list_too_long_exits_126() {
    let Some(true_bin) = first_existing(&["/bin/true", "/usr/bin/true"]) else {
        skipped("no `true` binary");
        return;
    };
    let d = Scratch::new("e2big");
    let mut long = d.0.clone();
    while long.as_os_str().len() < 3000 {
        long.push("d".repeat(200));
    }
    fs::create_dir_all(&long).expect("long PATH dir");
    std::os::unix::fs::symlink(&true_bin, long.join("x")).unwrap();

    assert!(matches!(e2big_trial(&long, 0), Trial::Ran), "x must run");
    let (mut lo, mut hi) = (0usize, 256 * 1024);
    assert!(matches!(e2big_trial(&long, hi), Trial::UsherTooBig));
    let mut tried = Vec::new();
    while hi - lo > 64 {
        let mid = (lo + hi) / 2;
        match e2big_trial(&long, mid) {
            Trial::Ran => lo = mid,
            Trial::UsherTooBig => hi = mid,
            Trial::Refused(stderr) => {
                let says = ["usher: error: cannot run \"x\"", "argument list too long"];
                return assert_one_error(&stderr, &says);
            }
        }
        tried.push(mid);
    }
    panic!("no size fit usher but not the app (tried {tried:?}; usher fits below {hi})");
}

/// What a faulty stderr does to usher's own writes.
#[derive(Clone, Copy, Debug)]
enum BadStderr {
    /// fd 2 closed (`2>&-`): EBADF.
    Closed,
    /// A pipe whose read end is closed: EPIPE, and SIGPIPE raised in usher.
    /// Was a bug: usher forwarded that SIGPIPE, killing the app (exit 141
    /// instead of 3).
    BrokenPipe,
    /// A file past RLIMIT_FSIZE: EFBIG, and SIGXFSZ raised in usher. Was a
    /// bug: usher forwarded that SIGXFSZ, killing the app (exit 153 instead
    /// of 3).
    OverSizeLimit,
}

/// Applies `how` to the command that runs usher.
fn bad_stderr(c: &mut Command, how: BadStderr, s: &Scratch) {
    match how {
        BadStderr::Closed => {
            c.stderr(Stdio::null());
            // SAFETY: close is async-signal-safe.
            unsafe {
                c.pre_exec(|| {
                    libc::close(2);
                    Ok(())
                });
            }
        }
        BadStderr::BrokenPipe => {
            let mut fds = [0; 2];
            // SAFETY: fds has room for two fds.
            assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
            // SAFETY: both fds are fresh and owned here; the read end is closed
            // at once, so every write to the other end fails with EPIPE.
            unsafe {
                libc::close(fds[0]);
                c.stderr(Stdio::from(OwnedFd::from_raw_fd(fds[1])));
            }
        }
        BadStderr::OverSizeLimit => {
            c.stderr(fs::File::create(s.path("usher.log")).unwrap());
            // SAFETY: setrlimit is async-signal-safe; the rlimit lives on the stack.
            unsafe {
                c.pre_exec(|| {
                    let (rlim_cur, rlim_max) = (64, 64);
                    libc::setrlimit(libc::RLIMIT_FSIZE, &libc::rlimit { rlim_cur, rlim_max });
                    Ok(())
                });
            }
        }
    }
}

/// usher can neither log nor be told it cannot: the app's exit code still
/// comes through, no signal usher raised in itself reaches the app, and a
/// drain still holds the stop signal for its time.
fn keeps_working_without_stderr(how: BadStderr) {
    // The apps send their own stderr elsewhere (sh's "Terminated" on a
    // broken pipe would raise SIGPIPE in the app itself) and record PIPE
    // and XFSZ if they ever get them.
    let traps = "exec 2>/dev/null\nfor sig in PIPE XFSZ; do trap \"echo $sig >> got\" $sig; done";
    for mode in modes() {
        let s = Scratch::new(&format!("bad-stderr-{how:?}"));
        // -vvv: a log line for everything, so every write fails. Without -s
        // when not PID 1, the orphan warning is the very first write.
        let a = app(&s, "quick", &format!("{traps}\nsleep 0.3\nexit 3"));
        let f = start_command(mode, usher_in(mode), |c| {
            c.args(["-vvv", "--", &a]);
            bad_stderr(c, how, &s);
        });
        let f = f.wait(FINISH);
        assert_eq!(f.code, Some(3), "{how:?} {mode:?}: the app's code: {f:?}");
        let raised = |s: &Scratch| s.read("got").is_empty();
        let what = format!("{how:?} {mode:?}");
        assert!(raised(&s), "{what}: usher's own signals reached the app");

        // The shutdown timeline: TERM held for the 1s drain, then forwarded.
        let body =
            format!("{traps}\ntrap 'rec term; exit 7' TERM\nrec ready\nwhile :; do sleep 1; done");
        let a = app(&s, "drained", &body);
        let r = start_command(mode, usher_in(mode), |c| {
            c.args(words("-vvv -s --drain 1s --grace-period 10s --"))
                .arg(&a);
            bad_stderr(c, how, &s);
        });
        let r = r.ready(&s, "ready");
        let sent = r.signal(libc::SIGTERM);
        let f = r.wait(FINISH);
        assert_eq!(f.code, Some(7), "{how:?} {mode:?}: {f:?}");
        let what = format!("{how:?} {mode:?}: TERM");
        assert_on_time(&what, s.since("term", sent), 1.0, "");
        assert!(raised(&s), "{what}: usher's own signals reached the app");
    }
}

#[test]
fn a_closed_broken_or_oversized_stderr_changes_nothing() {
    use BadStderr::*;
    for how in [Closed, BrokenPipe, OverSizeLimit] {
        keeps_working_without_stderr(how);
    }
}

/// Was a gap: usher wrote its log with blocking writes, so a reader that
/// stops reading stderr (a stalled log shipper) froze PID 1 once the pipe
/// was full: no reaping, no forwarding, no shutdown.
#[test]
fn stalled_stderr_reader_does_not_freeze_usher() {
    let s = Scratch::new("stalled-stderr");
    let mut fds = [0; 2];
    // SAFETY: fds has room for two fds.
    assert_eq!(unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) }, 0);
    // SAFETY: fresh fds owned here; the read end stays open and unread.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let a = app(&s, "app", "trap '' 35\nrec ready\nexec sleep 1000");
    let r = start_command(Mode::Plain, usher_in(Mode::Plain), |c| {
        c.args(["-s", "-vv", "--", &a])
            .stderr(Stdio::from(write_end));
    });
    let r = r.ready(&s, "ready");
    let pid = r.usher_pid();
    // Queued real-time signals: two log lines each, far beyond 64 KiB.
    for _ in 0..3000 {
        let _ = kill(pid, libc::SIGRTMIN() + 1);
    }
    std::thread::sleep(Duration::from_millis(500));
    r.signal(libc::SIGTERM);
    let f = r.wait(Duration::from_secs(5));
    drop(read_end);
    assert_eq!(f.code, Some(143), "{f:?}");
}

/// The unshare prefix without --mount-proc: with `mount`, a new mount
/// namespace too (where /proc is then hidden under an empty tmpfs).
fn prefix_without_proc(mount: bool) -> Vec<&'static str> {
    let prefix = namespace_prefix()
        .expect("checked by the caller")
        .iter()
        .copied();
    let mut p: Vec<&str> = prefix.filter(|a| *a != "--mount-proc").collect();
    if mount {
        p.insert(1, "--mount");
    }
    p
}

/// usher as PID 1 where /proc cannot tell it who is left: `empty` hides
/// /proc under an empty tmpfs; otherwise /proc is the parent namespace's
/// (a PID namespace without its own /proc). usher still reaps orphans,
/// forwards signals and kills at the deadline, listing the pids as unknown.
/// Was a bug: an empty /proc made usher log no kill at all, and a foreign
/// one made it list (and, when not PID 1, signal) other namespaces' pids.
fn without_proc(empty: bool) {
    needs_namespaces!();
    let s = Scratch::new("no-proc");
    // The app: HUP recorded; TERM ignored; an orphan that exits at once,
    // and a second one later, both left for usher (PID 1) to reap.
    let orphans = "sh -c 'sleep 0.1 & exit 0'\nsh -c 'sleep 1 & exit 0'";
    let body = format!(
        "trap 'rec hup' HUP\ntrap '' TERM\n{orphans}\nrec ready\nwhile :; do sleep 1; done"
    );
    let a = app(&s, "app", &body);
    let prefix = prefix_without_proc(empty);
    let mut cmd = Command::new(prefix[0]);
    cmd.args(&prefix[1..]);
    let setup = if empty {
        "mount -t tmpfs -o size=1m none /proc || exit 97; ls /proc | grep -q . && exit 98; exec \"$@\""
    } else {
        "[ \"$(readlink /proc/self)\" = 1 ] && exit 96; exec \"$@\""
    };
    cmd.args(["sh", "-c", setup, "sh", usher()]);
    cmd.args(words("-v --grace-period 1s --")).arg(&a);
    let r = start_command(Mode::Pid1, cmd, |_| {}).ready(&s, "ready");
    let pid = r.usher_pid();
    // Both orphans reaped: no zombie child of usher once they are done.
    std::thread::sleep(Duration::from_millis(1200));
    let zombies = || children_of(pid).into_iter().any(|c| state(c) == Some('Z'));
    assert!(wait_until(SOON, || !zombies()), "zombies left under usher");
    r.signal(libc::SIGHUP);
    assert!(s.wait_for("hup", "\n", SOON), "HUP was not forwarded");
    let stop = r.signal(libc::SIGTERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(137), "{f:?}");
    let kill = assert_deadline(1.0, stop.elapsed(), &f.stderr);
    assert!(kill.contains("pids=\"unknown (no /proc)\""), "{kill}");
    let reaped = f.stderr.matches("debug: reaped: pid=").count();
    assert!(reaped >= 2, "both orphans reaped: {}", f.stderr);
}

#[test]
fn without_its_own_proc_usher_still_reaps_forwards_and_escalates() {
    for empty in [true, false] {
        without_proc(empty);
    }
}

/// An app that stops itself, with no terminal: usher does not stop with it
/// (as PID 1 it cannot be stopped; otherwise there is no shell to hand a
/// stopped job to) and keeps forwarding and reaping; SIGCONT sent to usher
/// is forwarded and the app carries on to its own exit code. (With a
/// terminal and not PID 1 usher stops like a shell job: see the pty tests.)
#[test]
fn an_app_stopping_itself_leaves_usher_running_and_cont_resumes_it() {
    for mode in modes() {
        let s = Scratch::new("self-stop");
        let body = "rec ready\nkill -STOP $$\nrec resumed\nexit 3";
        let r = start_app(mode, &s, &["-v"], body).ready(&s, "ready");
        let pid = r.usher_pid();
        let mut app_pid = 0;
        let stopped = wait_until(SOON, || {
            app_pid = children_of(pid).first().copied().unwrap_or(0);
            app_pid != 0 && state(app_pid) == Some('T')
        });
        assert!(stopped, "{mode:?}: the app never stopped");
        let stopped = poll(QUIET, Duration::from_millis(20), || state(pid) == Some('T'));
        assert!(!stopped, "{mode:?}: usher stopped with its app");
        r.signal(libc::SIGCONT);
        let resumed = s.wait_for("resumed", "\n", SOON);
        assert!(resumed, "{mode:?}: CONT was not forwarded");
        let f = r.wait(FINISH);
        assert_eq!(f.code, Some(3), "{f:?}");
        assert!(f.stderr.contains("forwarded: signal=SIGCONT"), "{f:?}");
    }
}

// ----------------------------------------------------------- terminal --

/// Runs `argv` on a pty under tests/pty.py, driven by `scenario`; returns
/// all the driver printed once it exited 0, or None (after saying why)
/// without python3 or bash.
fn on_a_pty(scenario: &str, argv: &[&str]) -> Option<String> {
    for tool in ["python3", "bash"] {
        let mut c = Command::new(tool);
        if !try_run(c.arg("--version"), SOON).is_ok_and(|r| r.ok()) {
            skipped(&format!("no {tool} (apt-get install {tool})"));
            return None;
        }
    }
    let s = Scratch::new("pty");
    let script = s.path("drive.py");
    fs::write(&script, format!("{}\n{scenario}", include_str!("pty.py"))).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(&script).args(argv).env("USHER", usher());
    let out = run_bounded(&mut cmd, Duration::from_secs(90));
    let all = format!("{}{}", out.stdout, out.stderr);
    assert_eq!(out.code, Some(0), "{argv:?}: {all}");
    Some(all)
}

/// The scenario for `bash -i` running `usher -- cat` (not PID 1).
const JOB_CONTROL: &str = r#"
usher = os.environ["USHER"]
send("PS1='[u''p]> '\n"); expect("[up]> ")
send(usher + " -s -v -- cat\n"); expect("started: pid=")
expect("\n")
cat = int(out[:mark].rsplit(b"started: pid=", 1)[1].split()[0])
usher_pid = [p for p in tree(pid) if cat in children(p)][0]
send("hello\n"); expect("hello", 2)
send("\x1a"); expect("Stopped"); expect("[up]> ")
wait_state(usher_pid, "T"); wait_state(cat, "T")
send("jobs\n"); expect("Stopped"); expect("[up]> ")
send("fg\n"); expect("forwarded: signal=SIGCONT")
wait_state(usher_pid, "SR"); wait_state(cat, "SR")
send("world\n"); expect("world", 2)
send("\x04"); expect("[up]> ")
send("echo rc=$?\n"); expect("rc=0")
send("exit\n")
code = finish()
print("OK bash exit", code)
"#;

/// `usher -- cat` in an interactive bash, through a pty: Ctrl-Z stops the
/// job (usher and cat), bash reports it Stopped and prompts; `fg` resumes
/// both and cat owns the terminal again; Ctrl-D ends cat and usher exits 0.
#[test]
fn ctrl_z_suspends_and_fg_resumes_usher_in_an_interactive_shell() {
    let bash = ["bash", "--norc", "--noprofile", "-i"];
    let Some(out) = on_a_pty(JOB_CONTROL, &bash) else {
        return;
    };
    assert!(out.contains("OK bash exit"), "{out}");
}

/// The scenario for `unshare … usher -- cat` on the pty: usher is PID 1.
const PID1_NEVER_STOPS: &str = r#"
expect("started: pid="); expect("\n")
usher_pid = children(pid)[0]       # pid is unshare; usher is its child
cat = children(usher_pid)[0]
send("hello\n"); expect("hello", 2)
send("\x1a")                      # Ctrl-Z: TSTP to cat's group
wait_state(cat, "T"); keeps_state(usher_pid, "T")
os.kill(usher_pid, signal.SIGCONT); wait_state(cat, "SR")
os.kill(usher_pid, signal.SIGTSTP)  # forwarded, and usher does not stop
wait_state(cat, "T"); keeps_state(usher_pid, "T")
os.kill(usher_pid, signal.SIGCONT); wait_state(cat, "SR")
send("world\n"); expect("world", 2)
send("\x04")
code = finish()
if code != 0: fail(f"exit {code}")
print("OK usher exit", code)
"#;

/// As PID 1 on a terminal, usher never stops: Ctrl-Z and a TSTP sent to
/// usher stop only the app; CONT sent to usher resumes it; Ctrl-D ends it.
#[test]
fn pid1_usher_on_a_terminal_never_stops() {
    needs_namespaces!();
    let mut argv: Vec<&str> = namespace_prefix().unwrap().to_vec();
    argv.extend([usher(), "-v", "--", "cat"]);
    let Some(out) = on_a_pty(PID1_NEVER_STOPS, &argv) else {
        return;
    };
    assert!(out.contains("OK usher exit 0"), "{out}");
}
