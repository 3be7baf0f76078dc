//! usher's core job, end to end: exit codes, forwarding to the app's group, rewrites, reaping orphans, the child's clean start, and each way usher exits before the app runs (usage errors, help, version).
//!
//! Most tests run usher as PID 1 of a fresh PID namespace; every wait is
//! bounded and every process is cleaned up by pid (`Running` takes usher
//! and everything under it). The tables of usage errors live in the unit
//! tests of `src/cli.rs`; here is one run per way out.

mod common;
use common::*;

use std::fs;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::process::Command;
use std::time::{Duration, Instant};

// -------------------------------------------------------------- exit codes --

/// As PID 1 usher exits with the app's code, 128+N for a death by signal
/// N (usher itself exits normally: a signalled usher would leave no code),
/// and says nothing when the app just exits; `-e`/`--remap-exit` and
/// `USHER_REMAP_EXIT` report the listed codes as 0, and the flag replaces
/// the variable's list. (TERM sent to usher ending a default app with 143:
/// the end of `reaps_1000_orphans`, in both modes.)
#[test]
fn exit_codes_pass_through_or_are_remapped_as_pid1() {
    needs_namespaces!();
    #[rustfmt::skip]
    let cases: [(&[&str], Option<&str>, &str, i32); 8] = [
        (&[], None, "exit 0", 0),
        (&[], None, "exit 3", 3),
        (&[], None, "kill -TERM $$; sleep 5", 143),
        (&["-e", "3"], None, "exit 3", 0),
        (&["--remap-exit", "3"], None, "exit 4", 4),
        (&["-e", "143"], None, "kill $$; sleep 5", 0),
        (&[], Some("3"), "exit 3", 0),
        (&["-e", "4"], Some("3"), "exit 3", 3),
    ];
    for (flags, var, script, code) in cases {
        let args = [flags, &["--", "sh", "-c", script]].concat();
        let remap: Vec<_> = var.map(|v| ("USHER_REMAP_EXIT", v)).into_iter().collect();
        let f = run_with(Mode::Pid1, &args, &remap);
        let what = format!("{flags:?}, USHER_REMAP_EXIT={var:?}, `{script}`");
        let said = (f.code, f.stderr.as_str());
        assert_eq!(said, (Some(code), ""), "{what}: {f:?}");
    }
}

// -------------------------------------------------------------- forwarding --

/// A `sh` wrapper that starts the real app (its child, usher's grandchild)
/// and waits for it. Both trap HUP, USR1, USR2 and TERM and append the
/// signal's name to a file: the wrapper to `outer`, the app to `got`. The
/// app exits 0 on TERM; the wrapper survives every signal and exits 0 when
/// the app is gone.
struct Family {
    d: Scratch,
    r: Running,
}

impl Family {
    /// usher as PID 1 with `flags` over the wrapper; returns once both trap.
    fn start(flags: &[&str]) -> Family {
        let d = Scratch::new("family");
        let inner = app(
            &d,
            "inner",
            r#"for s in HUP USR1 USR2; do trap "echo $s >> got" $s; done
trap 'echo TERM >> got; exit 0' TERM
rec ready
while :; do sleep 1000 & wait $!; done"#,
        );
        let wrapper = format!(
            r#"for s in HUP USR1 USR2 TERM; do trap "echo $s >> outer" $s; done
sh {inner} &
app=$!
while kill -0 $app 2>/dev/null; do wait $app; done
exit 0"#
        );
        let mut args = flags.to_vec();
        args.extend(["--", "sh", "-c", &wrapper]);
        let r = start_with(Mode::Pid1, &args, |c| {
            c.current_dir(&d.0);
        });
        let r = r.ready(&d, "ready");
        Family { d, r }
    }

    /// Whether `who` ("outer" or "got") records `sig` in time.
    fn recorded(&self, who: &str, sig: &str) -> bool {
        self.d.wait_for(who, sig, SOON)
    }

    /// Sends HUP, USR1 and TERM in turn; asserts each of `whom` gets each.
    fn each_reaches(&self, whom: &[&str]) {
        #[rustfmt::skip]
        let sigs = [(libc::SIGHUP, "HUP"), (libc::SIGUSR1, "USR1"), (libc::SIGTERM, "TERM")];
        for (sig, name) in sigs {
            self.r.signal(sig);
            for who in whom {
                assert!(self.recorded(who, name), "{who} did not get {name}");
            }
        }
    }

    /// Watches a while; asserts that neither the wrapper nor the app got `sig`.
    fn never_got(&self, sig: &str, why: &str) {
        std::thread::sleep(QUIET);
        for who in ["outer", "got"] {
            let got = self.d.read(who);
            assert!(!got.contains(sig), "{why}, but {who} got {sig}: {got:?}");
        }
    }
}

#[test]
fn signals_reach_the_grandchild_by_default() {
    needs_namespaces!();
    let fam = Family::start(&[]);
    fam.each_reaches(&["outer", "got"]);
    // The app exits 0 on TERM, the wrapper then exits 0: a clean shutdown.
    assert_eq!(fam.r.wait(FINISH).code, Some(0));
}

#[test]
fn rewrite_replaces_and_drops_signals() {
    needs_namespaces!();
    let mut fam = Family::start(&["-r", "TERM:USR1", "--rewrite", "HUP:0"]);
    // HUP is dropped; USR2, sent after it, passes and marks that HUP was handled.
    fam.r.signal(libc::SIGHUP);
    fam.r.signal(libc::SIGUSR2);
    assert!(fam.recorded("got", "USR2") && fam.recorded("outer", "USR2"));
    fam.never_got("HUP", "HUP:0 drops HUP");
    // TERM goes out as USR1.
    fam.r.signal(libc::SIGTERM);
    assert!(fam.recorded("got", "USR1") && fam.recorded("outer", "USR1"));
    fam.never_got("TERM", "TERM:USR1 never delivers TERM");
    assert!(fam.r.running(), "the app got USR1, not TERM: it runs on");
}

// ----------------------------------------------------------------- reaping --

/// As PID 1 and as a subreaper: the app starts 1000 `sleep 60`s in a
/// subshell that exits at once, so all of them are orphaned while alive and
/// land on usher. The test then kills them by pid all at once (a burst of
/// SIGCHLDs that coalesce) and checks usher reaps every one, leaving no zombie.
#[test]
fn reaps_1000_orphans() {
    for mode in modes() {
        reaps_1000_orphans_in(mode);
    }
}

fn reaps_1000_orphans_in(mode: Mode) {
    const N: usize = 1000;
    let s = Scratch::new("orphans");
    let body = format!(
        "( i=0; while [ $i -lt {N} ]; do sleep 60 & i=$((i+1)); done )\nrec done\nexec sleep 1000"
    );
    let r = start_app(mode, &s, &["-v"], &body);
    let u = r.usher_pid();
    let started = wait_until(HEAVY, || s.stamp("done").is_some());
    assert!(started, "the app did not finish starting its orphans");
    // The app leads its own group; the orphans are in that group but not leaders.
    let children = children_of(u).into_iter();
    let (apps, orphans): (Vec<i32>, Vec<i32>) = children.partition(|&p| pgrp(p) == Some(p));
    assert_eq!(apps.len(), 1, "one app among usher's children: {apps:?}");
    assert_eq!(orphans.len(), N, "all {N} orphans land on usher ({mode:?})");
    for &p in &orphans {
        let _ = kill(p, libc::SIGKILL);
    }
    let done = wait_until(HEAVY, || children_of(u) == apps);
    let left = children_of(u);
    let zombies = left.iter().filter(|&&c| state(c) == Some('Z')).count();
    let (left, done) = (left.len() - 1, done && zombies == 0);
    assert!(done, "usher left {left} children, {zombies} zombies");
    r.signal(libc::SIGTERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(143), "the app's sleep dies of TERM: {f:?}");
    let reaped = f
        .stderr
        .lines()
        .filter(|l| l.contains("reaped") && l.contains("SIGKILL"));
    let reaped = reaped.count();
    assert_eq!(reaped, N, "usher reaped each orphan once");
}

// ---------------------------------------------------------------- start-up --

/// Whether `pid` has `sig` in its blocked mask.
fn blocks(pid: i32, sig: i32) -> bool {
    let mask = proc_status(pid, "SigBlk").and_then(|h| u64::from_str_radix(&h, 16).ok());
    mask.is_some_and(|m| m & (1 << (sig - 1)) != 0)
}

/// Spins (no sleeping) until `cond` holds; false after `within`.
fn spin(within: Duration, mut cond: impl FnMut() -> bool) -> bool {
    let end = Instant::now() + within;
    while !cond() {
        if Instant::now() >= end {
            return false;
        }
        std::thread::yield_now();
    }
    true
}

/// A parent that ignores PIPE, INT and USR2 and blocks HUP and USR1 (and,
/// with `usr1_only`, just blocks USR1): all of it is inherited across fork
/// and exec, so usher must undo it for the app.
fn dirty(c: &mut Command, usr1_only: bool) {
    // SAFETY: only async-signal-safe calls between fork and exec.
    unsafe {
        c.pre_exec(move || {
            let mut set: libc::sigset_t = std::mem::zeroed();
            libc::sigemptyset(&mut set);
            libc::sigaddset(&mut set, libc::SIGUSR1);
            if !usr1_only {
                for s in [libc::SIGPIPE, libc::SIGINT, libc::SIGUSR2] {
                    libc::signal(s, libc::SIG_IGN);
                }
                libc::sigaddset(&mut set, libc::SIGHUP);
            }
            libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
            Ok(())
        });
    }
}

#[test]
fn a_signal_at_start_up_is_not_lost() {
    needs_namespaces!();
    const ROUNDS: usize = 20;
    let (mut trapped, mut killed) = (0, 0);
    for round in 0..ROUNDS {
        let s = Scratch::new("startup");
        let body = "trap 'rec got; exit 0' USR1\nwhile :; do sleep 1000 & wait $!; done";
        let a = app(&s, "app", body);
        // Odd rounds: usher starts with USR1 already blocked (as a parent may
        // leave it) and the signal goes out the moment usher's pid exists,
        // before it even execs. Even rounds: the signal goes out the moment
        // usher has blocked its signals, while it is spawning the app.
        // Under an emulator the SigBlk that even rounds wait for is the
        // emulator's own mask, which blocks USR1 for a moment before usher
        // does and then lets the kernel drop it: they cannot know when to
        // send, so only the odd rounds run (docs/architectures.md).
        let preblocked = round % 2 == 1 || emulator().is_some();
        let mut r = start_with(Mode::Pid1, &["--", &a], |c| {
            if preblocked {
                dirty(c, true);
            }
        });
        let outer = r.outer.id() as i32;
        let mut u = 0;
        assert!(spin(SOON, || {
            u = children_of(outer).first().copied().unwrap_or(0);
            u != 0
        }));
        if !preblocked {
            assert!(spin(SOON, || blocks(u, libc::SIGUSR1)), "never blocked");
        }
        kill(u, libc::SIGUSR1).expect("kill usher");
        // Delivered either after the app set its trap (it records and exits
        // 0) or before (it dies of USR1: 138). Lost: it runs on forever.
        let lost = || format!("round {round} (preblocked={preblocked}): USR1 was lost");
        assert!(wait_until(FINISH, || !r.running()), "{}", lost());
        match r.wait(SOON).code {
            Some(0) => {
                assert_eq!(s.stamps("got").len(), 1, "round {round}");
                trapped += 1;
            }
            Some(138) => killed += 1,
            other => panic!("round {round}: unexpected exit {other:?}"),
        }
    }
    eprintln!("start-up USR1: {trapped} trapped by the app, {killed} killed it before its trap");
    if let Some(emulator) = emulator() {
        let only = "only the rounds with USR1 blocked before usher starts ran";
        let _ = writeln!(
            std::io::stderr(),
            "NOTE a_signal_at_start_up_is_not_lost: under {emulator} {only}"
        );
    }
}

#[test]
fn the_child_starts_with_a_clean_signal_state() {
    // Control: without usher, the app really inherits the dirty state.
    let control = start_command(Mode::Plain, Command::new("sleep"), |c| {
        c.arg("1000");
        dirty(c, false);
    });
    let pid = control.usher_pid(); // the plain `sleep` itself
    let comm = || fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
    assert!(wait_until(SOON, || comm().trim() == "sleep"), "no sleep");
    for field in ["SigBlk", "SigIgn"] {
        let inherited = proc_status(pid, field);
        assert_ne!(inherited.as_deref(), Some("0000000000000000"), "{field}");
    }
    drop(control);

    for mode in modes() {
        let r = start_with(mode, &["--", "sleep", "1000"], |c| dirty(c, false));
        let app = child_named(r.usher_pid(), "sleep");
        for field in ["SigBlk", "SigIgn"] {
            let clean = proc_status(app, field);
            let none = Some("0000000000000000");
            assert_eq!(clean.as_deref(), none, "{mode:?}: {field}");
        }
    }
}

/// The app's open fds and their targets, by number, from `ls -l /proc/self/fd`.
fn fd_table(listing: &str) -> Vec<(u32, String)> {
    let fd = |l: &str| {
        let (left, target) = l.split_once(" -> ")?;
        Some((
            left.split_whitespace().last()?.parse().ok()?,
            target.trim().to_string(),
        ))
    };
    let mut table: Vec<(u32, String)> = listing.lines().filter_map(fd).collect();
    table.sort();
    table
}

#[test]
fn no_fds_leak_into_the_app() {
    let d = Scratch::new("fds");
    for mode in modes() {
        let list = |name: &str| format!("exec ls -l /proc/self/fd > {}", d.path(name).display());
        // The same command without usher, started the same way.
        let mut cmd = match mode {
            Mode::Pid1 => {
                let prefix = namespace_prefix().unwrap();
                let mut c = Command::new(prefix[0]);
                c.args(&prefix[1..]).arg("sh");
                c
            }
            Mode::Plain => Command::new("sh"),
        };
        assert!(run_bounded(cmd.args(["-c", &list("base")]), FINISH).ok());
        let f = run(mode, &["-s", "--", "sh", "-c", &list("usher")]);
        assert_eq!(f.code, Some(0), "{f:?}");

        let base = fd_table(&d.read("base"));
        let under = fd_table(&d.read("usher"));
        assert!(base.len() >= 4, "{mode:?}: baseline listing: {base:?}");
        let fds = |t: &[(u32, String)]| t.iter().map(|(n, _)| *n).collect::<Vec<_>>();
        let same = format!("{mode:?}: the same fds as without usher: {under:?} vs {base:?}");
        assert_eq!(fds(&under), fds(&base), "{same}");
        // Beyond stdio, only ls's own directory fd and whatever this test
        // process itself passes down (the very same object in both runs).
        for (n, target) in under.iter().filter(|(n, _)| *n > 2) {
            let inherited = base.iter().any(|(m, t)| m == n && t == target);
            let ours = !target.contains("anon_inode") && (target.ends_with("/fd") || inherited);
            assert!(ours, "{mode:?}: fd {n} -> {target} leaked from usher");
        }
        assert!(fds(&under).starts_with(&[0, 1, 2]), "{mode:?}: {under:?}");
    }
}

#[test]
fn orphan_warning_only_when_not_a_reaper() {
    // Not PID 1, no -s: exactly one warning line about orphans.
    let f = run(Mode::Plain, &["--", "true"]);
    assert_eq!(f.code, Some(0), "{f:?}");
    let l = lines(&f.stderr);
    assert!(l.len() == 1 && l[0].contains("warn") && l[0].contains("orphans"));
    // A subreaper, by flag or variable, or PID 1: no warning.
    let quiet = |f: Finished, how: &str| {
        assert_eq!((f.code, f.stderr.as_str()), (Some(0), ""), "{how}: {f:?}");
    };
    quiet(run(Mode::Plain, &["-s", "--", "true"]), "-s");
    let by_env = run_with(Mode::Plain, &["--", "true"], &[("USHER_SUBREAPER", "1")]);
    quiet(by_env, "USHER_SUBREAPER=1");
    if namespaces() {
        quiet(run(Mode::Pid1, &["--", "true"]), "PID 1");
    }
}

// ------------------------------------------------ ways out before the app --

/// Runs usher (not PID 1) with `args` and variables `env`, to its end;
/// the app, if usher ever ran it, would create `ran` in `s`.
fn refused(s: &Scratch, args: &[&str], env: &[(&str, &str)]) -> Finished {
    let ran = s.path("ran");
    let mut all = args.to_vec();
    all.extend(["touch", ran.to_str().unwrap()]);
    let f = run_with(Mode::Plain, &all, env);
    assert_eq!(f.code, Some(2), "{args:?} {env:?}: a usage error: {f:?}");
    assert!(!ran.exists(), "{args:?} {env:?}: the app ran");
    f
}

/// A usage error is one line on stderr, after `usher: error: `, naming what
/// is wrong: in a flag, in a variable (read from the real environment), or
/// in an option holding a newline that must not forge a second line.
#[test]
fn a_usage_error_exits_2_with_one_line_and_runs_nothing() {
    let s = Scratch::new("usage");
    let one_line = |f: Finished, says: &str| assert_one_error(&f.stderr, &[says]);
    one_line(refused(&s, &["--bogus"], &[]), "unknown option \"--bogus\"");
    let env = [("USHER_DRAIN", "5")];
    one_line(refused(&s, &[], &env), "USHER_DRAIN \"5\" has no unit");
    let forged = refused(&s, &["--a\nusher: info: forged"], &[]);
    one_line(forged, "--a\\nusher: info: forged");
    // Told at start, not at exit: a termination message path that cannot be a file.
    let dir = [("USHER_TERMINATION_LOG", "/")];
    one_line(
        refused(&s, &[], &dir),
        "termination message file \"/\" is a directory",
    );
}

/// A usage error is one JSON object when JSON logs were asked for, by the
/// variable or by the flag, so a log pipeline parsing usher's lines gets it;
/// `--log-format text` beats the variable.
#[test]
fn a_usage_error_follows_the_log_format_asked_for() {
    let s = Scratch::new("usage-json");
    let json = [("USHER_LOG_FORMAT", "json")];
    let as_json = [
        refused(&s, &["--drain", "5"], &json),
        refused(&s, &["--log-format", "json", "--bogus"], &[]),
    ];
    for (f, says) in as_json.iter().zip(["no unit", "unknown option"]) {
        let line = serde_json::from_str::<serde_json::Value>(&f.stderr);
        let line = line.unwrap_or_else(|e| panic!("not one JSON object ({e}): {f:?}"));
        assert_eq!(line["source"], "usher", "{line}");
        assert_eq!(line["level"], "error", "{line}");
        assert!(line["event"].as_str().unwrap().contains(says), "{line}");
    }
    let f = refused(&s, &["--log-format", "text", "--bogus"], &json);
    let text = f.stderr.starts_with("usher: error: unknown option");
    assert!(text, "{f:?}");
}

#[test]
fn help_and_version_print_to_stdout_and_exit_0() {
    for (flag, says) in [("--help", "Usage: usher [OPTIONS]"), ("-V", "usher 0.")] {
        let out = run_bounded(usher_command(&[]).args([flag, "--bogus"]), FINISH);
        assert!(out.ok() && out.stderr.is_empty(), "{flag}: {out:?}");
        assert!(out.stdout.starts_with(says) || out.stdout.contains(says));
    }
}

/// A `USHER_*` variable usher does not know is most likely a typo: one
/// warning naming it, and the app runs.
#[test]
fn an_unknown_usher_variable_is_named_in_a_warning_and_ignored() {
    let f = run_with(
        Mode::Plain,
        &["-s", "--", "true"],
        &[("USHER_DRAINN", "5s")],
    );
    assert_eq!(f.code, Some(0), "{f:?}");
    // An emulator that refuses PR_SET_CHILD_SUBREAPER (qemu 7.2) adds its warning.
    let refused = |l: &&str| {
        emulator().is_some() && l.contains("subreaper") && !l.contains("unknown variable")
    };
    let l: Vec<&str> = lines(&f.stderr)
        .into_iter()
        .filter(|l| !refused(l))
        .collect();
    assert!(
        l.len() == 1 && l[0].contains("warn: unknown variable ignored"),
        "{l:?}"
    );
    assert!(
        l[0].contains("name=USHER_DRAINN") && l[0].contains("USHER_DRAIN,"),
        "{l:?}"
    );
}

/// docs/design.md says usher is one process with one thread; this holds
/// it to that, so a thread a dependency started would not go unnoticed.
#[test]
fn usher_runs_on_one_thread() {
    if let Some(emulator) = emulator() {
        // The count would be qemu-user's own threads, not usher's; the
        // native run of this suite checks it.
        return skipped(&format!("under {emulator} /proc shows its threads"));
    }
    let s = Scratch::new("one-thread");
    let body = "rec ready\nwhile :; do sleep 0.1; done";
    let r = start_app(Mode::Plain, &s, &[], body).ready(&s, "ready");
    let threads = proc_status(r.usher_pid(), "Threads");
    assert_eq!(threads.as_deref(), Some("1"), "usher's threads");
}
