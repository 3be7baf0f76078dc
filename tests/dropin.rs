//! A tini or dumb-init ENTRYPOINT keeps working when only the binary's name changes: the peers' variables and flags, the subreaper check, SIGCONT only when needed, the working directory.

mod common;
use common::*;

use std::process::Command;
use std::time::Duration;

const TERM: i32 = libc::SIGTERM;

/// The parent pid in /proc/PID/stat.
fn ppid(pid: i32) -> Option<i32> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    stat[stat.rfind(')')? + 2..]
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// `TINI_SUBREAPER=1 usher -- sh -c '(sleep &); sleep'`: the orphan is
/// reparented to usher, as tini adopts it (and not without the variable).
#[test]
fn tini_subreaper_makes_usher_adopt_orphans() {
    for adopt in [true, false] {
        let s = Scratch::new("tini-subreaper");
        let a = app(
            &s,
            "app",
            "(sleep 30 & echo $! > orphan)\nrec ready\nsleep 30",
        );
        let r = start_with(Mode::Plain, &["--", &a], |c| {
            c.envs(adopt.then_some(("TINI_SUBREAPER", "1")));
        });
        let r = r.ready(&s, "ready");
        let orphan = s.pid("orphan");
        let usher = r.usher_pid();
        let adopted = wait_until(Duration::from_secs(3), || ppid(orphan) == Some(usher));
        kill_tree(usher);
        let _ = kill(orphan, libc::SIGKILL);
        let f = r.wait(FINISH);
        assert_eq!(adopted, adopt, "TINI_SUBREAPER set: {adopt}; {f}");
        let warned = f.stderr.contains("not PID 1 and not a subreaper");
        assert_eq!(warned, !adopt, "the orphan warning only without it\n{f}");
    }
}

/// tini's `-w`: every orphan reaped is a warning line; `-l` prints the license.
#[test]
fn tini_w_warns_of_each_reaped_orphan_and_l_prints_the_license() {
    let orphan = ["--", "sh", "-c", "(sleep 0.2 &); sleep 1"];
    let f = run(Mode::Plain, &[&["-s", "-w"][..], &orphan].concat());
    assert_eq!(f.code, Some(0), "{f}");
    let warn = line_with(&f.stderr, "warn: reaped an orphan: pid=");
    let warn = warn.unwrap_or_else(|| panic!("{f}"));
    assert_eq!(field(warn, "status"), Some("exit:0"), "{warn}");
    let f = run(Mode::Plain, &[&["-s"][..], &orphan].concat());
    assert_no_line(&f.stderr, "reaped an orphan", "without -w");

    let mut license = usher_in(Mode::Plain);
    license.arg("-l");
    let ran = run_bounded(&mut license, SOON);
    assert!(ran.ok(), "{ran:?}");
    let both = ran.stdout.contains("MIT") && ran.stdout.contains("Apache");
    assert!(both, "{ran:?}");
}

/// `DUMB_INIT_SETSID=0`, dumb-init's single-child mode: a signal reaches
/// the app (a shell) but not the process it started in its group.
#[test]
fn dumb_init_setsid_0_signals_the_child_alone() {
    needs_namespaces!();
    for single in [true, false] {
        let s = Scratch::new("dumb-init-setsid");
        let inner = "trap 'echo USR1 >> inner' USR1\nrec ready\nwhile :; do sleep 0.1; done";
        let inner = app(&s, "inner.sh", inner);
        let outer = format!("trap 'echo USR1 >> outer' USR1\n{inner} &\nwhile :; do wait; done");
        let outer = app(&s, "outer.sh", &outer);
        let r = start_with(Mode::Pid1, &["--", &outer], |c| {
            c.envs(single.then_some(("DUMB_INIT_SETSID", "0")));
        });
        let r = r.ready(&s, "ready");
        r.signal(libc::SIGUSR1);
        assert!(s.wait_for("outer", "USR1", SOON), "the child gets it");
        std::thread::sleep(QUIET);
        let inner_got = s.read("inner").contains("USR1");
        assert_eq!(inner_got, !single, "DUMB_INIT_SETSID=0 set: {single}");
    }
}

/// An init whose parent made it a child subreaper before exec (the flag
/// survives exec) reaps orphans already: no warning, as tini asks the kernel.
#[test]
fn an_init_started_as_a_subreaper_does_not_warn() {
    let Some(python) = which("python3") else {
        return skipped("no python3 to set PR_SET_CHILD_SUBREAPER before exec");
    };
    let u = usher();
    let prctl = "import ctypes, os, sys; ctypes.CDLL(None).prctl(36, 1, 0, 0, 0)";
    let exec_as_subreaper = format!("{prctl}; os.execv({u:?}, [{u:?}, '--', 'true'])");
    let mut cmd = Command::new(python);
    cmd.args(["-c", &exec_as_subreaper]);
    let f = start_command(Mode::Plain, cmd, |_| {}).wait(FINISH);
    assert_eq!((f.code, f.stderr.as_str()), (Some(0), ""), "{f}");
}

/// An app with a SIGCONT handler that is running never sees a SIGCONT it
/// was not sent (as with tini and dumb-init); a stopped app still gets its
/// stop signal at once (shutdown.rs covers that one).
#[test]
fn a_running_app_never_sees_a_sigcont_it_was_not_sent() {
    for mode in modes() {
        let s = Scratch::new("no-cont");
        // TERM is only noted, so a CONT behind it would be seen too; the
        // deadline ends the app.
        let body =
            "trap 'rec cont' CONT\ntrap 'rec term' TERM\nrec ready\nwhile :; do sleep 0.1; done";
        let r = start_app(mode, &s, &["--grace-period", "1s"], body).ready(&s, "ready");
        r.signal(TERM);
        let f = r.wait(FINISH);
        assert_eq!(f.code, Some(137), "{mode:?}: {f}");
        assert!(s.stamp("term").is_some(), "{mode:?}: the app got TERM");
        assert_eq!(s.read("cont"), "", "{mode:?}: a SIGCONT nobody sent\n{f}");
    }
}

/// usher keeps the directory it was started in (dumb-init moves to /): the
/// app runs there and a hook's relative path works.
#[test]
fn usher_keeps_its_working_directory_for_the_app_and_the_hooks() {
    let s = Scratch::new("cwd");
    let _hook = app(&s, "hook.sh", "pwd > hook-cwd");
    let body = "pwd > app-cwd\ntrap 'exit 0' TERM\nrec ready\nwhile :; do sleep 0.1; done";
    let a = app(&s, "app", body);
    let r = start_with(
        Mode::Plain,
        &["-s", "--pre-stop", "./hook.sh", "--", &a],
        |c| {
            c.current_dir(&s.0);
        },
    );
    let r = r.ready(&s, "ready");
    let usher_cwd = std::fs::read_link(format!("/proc/{}/cwd", r.usher_pid()));
    let usher_cwd = usher_cwd.expect("usher's cwd");
    r.signal(TERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(0), "{f}");
    let here = s.0.canonicalize().unwrap();
    assert_eq!(usher_cwd, here, "usher's own");
    assert_eq!(s.read("app-cwd").trim(), here.to_str().unwrap());
    assert_eq!(s.read("hook-cwd").trim(), here.to_str().unwrap(), "{f}");
}
