//! Hardening: bad input of every kind, faults around usher (fork and exec
//! failures, a closed or broken stderr, no /proc, no root, an app that stops
//! itself) and terminal job control through a pty. PID 1 must never fall over.
//!
//! Every wait is bounded and generous (a noisy 2-core machine), every process
//! is cleaned up by pid (`Running` kills its tree on drop; the pty driver
//! kills its own tree by pid), and a test is skipped, with the reason
//! printed, only where a facility is missing (namespaces, setpriv, python3).

mod common;
use common::*;

use std::ffi::{OsStr, OsString};
use std::fs;
use std::io::Read;
use std::os::fd::{FromRawFd, OwnedFd};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::PermissionsExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// Bound for a whole usher run to finish.
const FINISH: Duration = Duration::from_secs(20);
/// Bound for things that normally take milliseconds.
const SOON: Duration = Duration::from_secs(15);
/// How long to watch for something that must NOT happen.
const QUIET: Duration = Duration::from_millis(1000);
/// Slack on every upper bound of a timeline, in seconds.
const SLACK: f64 = 3.0;

// ---------------------------------------------------------------- helpers

/// The non-empty lines of usher's stderr.
fn lines(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Wall-clock seconds since the epoch: comparable with the apps' `date +%s.%N`.
fn epoch() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .expect("clock after 1970")
        .as_secs_f64()
}

/// The first complete stamp in file `name`.
fn first_stamp(s: &Scratch, name: &str) -> Option<f64> {
    let text = s.read(name);
    let complete = &text[..text.rfind('\n')?];
    complete.lines().find_map(|l| l.trim().parse().ok())
}

/// Waits for file `name` to get a stamp; fails with usher's log if it never does.
fn wait_stamp(s: &Scratch, r: Running, name: &str) -> (Running, f64) {
    let mut got = None;
    wait_until(SOON, || {
        got = first_stamp(s, name);
        got.is_some()
    });
    match got {
        Some(t) => (r, t),
        None => {
            let f = r.wait_bounded(Duration::from_secs(1));
            panic!("the app never wrote {name:?}: {f:?}");
        }
    }
}

/// The process state letter of `pid` ('R', 'S', 'T', 'Z'...), from /proc.
fn state(pid: i32) -> Option<char> {
    proc_status(pid, "State")?.chars().next()
}

fn has(path: &str) -> bool {
    Path::new(path).exists()
}

/// The first of `paths` that exists.
fn first_existing(paths: &[&str]) -> Option<String> {
    paths.iter().find(|p| has(p)).map(|p| p.to_string())
}

/// Whether this test runs as root (setpriv can then drop to another user).
fn root() -> bool {
    // SAFETY: getuid cannot fail.
    unsafe { libc::getuid() == 0 }
}

/// `Command` for usher, with no USHER_* variable leaking in from outside.
fn usher_cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    for (k, _) in std::env::vars_os() {
        if k.as_bytes().starts_with(b"USHER_") {
            c.env_remove(k);
        }
    }
    c
}

/// Runs usher (Plain) with OS-string arguments and extra environment, to the end.
fn run_plain(args: &[OsString], env: &[(OsString, OsString)]) -> Finished {
    start_command(Mode::Plain, usher_cmd(usher()), |c| {
        c.args(args);
        c.envs(env.iter().map(|(k, v)| (k, v)));
    })
    .wait_bounded(FINISH)
}

fn os(s: &str) -> OsString {
    OsString::from(s)
}

fn bytes(b: &[u8]) -> OsString {
    OsString::from_vec(b.to_vec())
}

/// The usher binary as user 65534 can run it: in place if its directory is
/// open to others, else a copy in `s` (retried while the copy is busy).
fn usher_for_nobody(s: &Scratch) -> Result<String, String> {
    let can_run = |path: &str| {
        let mut c = Command::new("setpriv");
        c.args(NOBODY).args([path, "--version"]);
        run_bounded(&mut c, SOON).0 == Some(0)
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
        Err(format!(
            "user 65534 cannot run usher at {} nor {copy}",
            usher()
        ))
    }
}

/// setpriv's arguments to become user and group 65534 with no other groups.
const NOBODY: &[&str] = &["--reuid=65534", "--regid=65534", "--clear-groups"];

/// A scratch dir user 65534 may write to.
fn open_scratch(name: &str) -> Scratch {
    let s = Scratch::new(name);
    fs::set_permissions(&s.0, fs::Permissions::from_mode(0o777)).expect("chmod scratch");
    s
}

/// Why setpriv tests cannot run here, if they cannot.
fn setpriv_missing() -> Option<String> {
    if !root() {
        return Some(
            "not root: cannot switch to user 65534 (the suite already runs non-root)".into(),
        );
    }
    let ok = Command::new("setpriv")
        .arg("--help")
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .map(|s| s.success())
        .unwrap_or(false);
    (!ok).then(|| "setpriv (util-linux) is not installed".into())
}

// ------------------------------------------------------ 1. bad input

#[test]
fn every_bad_argument_exits_2_with_one_line_saying_what_is_wrong() {
    let d = Scratch::new("bad-args");
    let ran = d.path("ran");
    let ran = ran.to_str().unwrap();
    let app: Vec<OsString> = vec![os("touch"), os(ran)];
    // (usher's flags before the app; None: no app at all, needles)
    type Case = (Vec<OsString>, bool, &'static [&'static str]);
    let s = |v: &[&str]| v.iter().map(|a| os(a)).collect::<Vec<_>>();
    let cases: Vec<Case> = vec![
        // The command.
        (s(&[""]), false, &["the command is an empty string"]),
        (
            s(&[]),
            false,
            &["no command given", "usher [OPTIONS] [--] COMMAND"],
        ),
        (
            s(&["--"]),
            false,
            &["no command given", "COMMAND [ARGS...]"],
        ),
        (s(&["-s", "--"]), false, &["no command given"]),
        (s(&["-v"]), false, &["no command given"]),
        // Unknown flags, values where none belong, missing values.
        (
            s(&["--bogus"]),
            true,
            &["unknown option \"--bogus\"", "usher --help"],
        ),
        (s(&["-x"]), true, &["unknown option \"-x\"", "usher --help"]),
        (s(&["-sx"]), true, &["unknown option 'x' in \"-sx\""]),
        // Unknown, whether or not it carries a value.
        (s(&["--bogus=1"]), true, &["--bogus"]),
        (
            s(&["--subreaper=1"]),
            true,
            &["option --subreaper takes no value"],
        ),
        (s(&["--help=1"]), false, &["option --help takes no value"]),
        (s(&["-p"]), false, &["option -p needs a value"]),
        (s(&["--drain"]), false, &["option --drain needs a value"]),
        (s(&["-r"]), false, &["option -r needs a value"]),
        // Signal names and numbers.
        (
            s(&["-p", "0"]),
            true,
            &["--pdeathsig", "signal number 0", "1..64"],
        ),
        (s(&["-p", "65"]), true, &["signal number 65", "1..64"]),
        (s(&["-p", "-1"]), true, &["signal number -1", "1..64"]),
        (
            s(&["-p", "BOGUS"]),
            true,
            &["unknown signal \"BOGUS\"", "TERM", "RTMIN+N", "1..64"],
        ),
        (s(&["-p", "RTMAX+1"]), true, &["unknown signal \"RTMAX+1\""]),
        // Poor message: "--pdeathsig: empty signal name" (nothing on what is accepted).
        (s(&["-p", ""]), true, &["--pdeathsig", "empty signal name"]),
        (
            s(&["-r", "KILL:TERM"]),
            true,
            &["\"KILL:TERM\"", "SIGKILL is never forwarded"],
        ),
        (
            s(&["-r", "STOP:TERM"]),
            true,
            &["\"STOP:TERM\"", "SIGSTOP is never forwarded"],
        ),
        (
            s(&["-r", "CHLD:TERM"]),
            true,
            &["SIGCHLD is never forwarded"],
        ),
        (
            s(&["-r", "SEGV:TERM"]),
            true,
            &["SIGSEGV is never forwarded"],
        ),
        (
            s(&["--stop-on", "KILL"]),
            true,
            &["--stop-on \"KILL\"", "SIGKILL", "cannot start a shutdown"],
        ),
        (
            s(&["--stop-on", "STOP"]),
            true,
            &["SIGSTOP", "cannot start"],
        ),
        (
            s(&["--stop-on", "TERM,65"]),
            true,
            &["--stop-on", "65", "1..64"],
        ),
        (
            s(&["--stop-on", ""]),
            true,
            &["--stop-on", "empty signal name"],
        ),
        // Rewrite specs.
        (
            s(&["-r", "TERM"]),
            true,
            &["rewrite \"TERM\" is not FROM:TO", "TERM:QUIT"],
        ),
        // Poor messages: `rewrite "TERM:": empty signal name` (no FROM:TO hint).
        (s(&["-r", "TERM:"]), true, &["\"TERM:\"", "TO is empty"]),
        (
            s(&["-r", ":QUIT"]),
            true,
            &["\":QUIT\"", "empty signal name"],
        ),
        (
            s(&["-r", "TERM:QUIT:1"]),
            true,
            &["\"TERM:QUIT:1\"", "unknown signal \"QUIT:1\""],
        ),
        (s(&["-r", "0:TERM"]), true, &["\"0:TERM\"", "1..64"]),
        (s(&["-r", "TERM:65"]), true, &["\"TERM:65\"", "1..64"]),
        (s(&["--rewrite=TERM"]), true, &["not FROM:TO"]),
        // Durations: a unit is required (a bare 0 is the one number accepted).
        (
            s(&["--drain", "-1s"]),
            true,
            &["--drain \"-1s\"", "cannot be negative", "500ms, 15s, 1m30s"],
        ),
        (
            s(&["--drain", ""]),
            true,
            &["--drain", "500ms", "empty value"],
        ),
        (s(&["--drain="]), true, &["--drain", "empty value"]),
        (s(&["--drain", "   "]), true, &["--drain", "empty value"]),
        (
            s(&["--drain", "99999999999999999999s"]),
            true,
            &["--drain \"99999999999999999999s\"", "at most 365d"],
        ),
        (
            s(&["--drain", "5"]),
            true,
            &["--drain \"5\" has no unit", "5s", "5ms"],
        ),
        (
            s(&["--grace-period", "5"]),
            true,
            &["--grace-period \"5\" has no unit", "5s"],
        ),
        (
            s(&["--drain", "soon"]),
            true,
            &["--drain \"soon\"", "500ms"],
        ),
        (s(&["--drain", "1.5"]), true, &["--drain \"1.5\""]),
        (
            s(&["--grace-period", "0s"]),
            true,
            &["the default --drain 0s must be shorter than --grace-period 0s"],
        ),
        // Durations too long to mean anything (they could only overflow clocks).
        (
            s(&["--drain", "18446744073709551615s"]),
            true,
            &["--drain \"18446744073709551615s\"", "at most 365d"],
        ),
        (
            s(&["--grace-period", "366d"]),
            true,
            &["--grace-period \"366d\"", "at most 365d"],
        ),
        (
            s(&["--grace-period=500000000000y"]),
            true,
            &["--grace-period", "at most 365d"],
        ),
        // A dash inside a bundle is named with the bundle it sits in.
        (s(&["-s-"]), true, &["unknown option '-' in \"-s-\""]),
        // Conflicts.
        (
            s(&["--drain", "5s", "--grace-period", "1s"]),
            true,
            &["--drain 5s must be shorter than --grace-period 1s"],
        ),
        (
            s(&["--drain=5s", "--grace-period=5s"]),
            true,
            &["--drain 5s must be shorter than --grace-period 5s"],
        ),
        // --pre-stop lines.
        (
            s(&["--pre-stop", "sh -c 'x"]),
            true,
            &["--pre-stop", "unclosed single quote"],
        ),
        (
            s(&["--pre-stop", "say \"oops"]),
            true,
            &["--pre-stop", "unclosed double quote"],
        ),
        (
            s(&["--pre-stop", "hook\\"]),
            true,
            &["--pre-stop", "lone backslash"],
        ),
        (s(&["--pre-stop", ""]), true, &["--pre-stop", "empty"]),
        (s(&["--pre-stop", " \t "]), true, &["--pre-stop", "empty"]),
        // Exit codes and the log format.
        (
            s(&["-e", "256"]),
            true,
            &["--remap-exit \"256\"", "0 to 255"],
        ),
        (s(&["-e", "-1"]), true, &["--remap-exit \"-1\"", "0 to 255"]),
        (s(&["-e", "x"]), true, &["--remap-exit \"x\"", "0 to 255"]),
        (
            s(&["--log-format", "xml"]),
            true,
            &["--log-format \"xml\" is not text or json"],
        ),
        // Options that are not UTF-8 (the app's own words may be: see below).
        (vec![bytes(b"--\xff")], true, &["option", "not valid UTF-8"]),
        (vec![bytes(b"-s\xff")], true, &["option", "not valid UTF-8"]),
        (
            vec![os("--log-format"), bytes(b"\xff")],
            true,
            &["--log-format", "not valid UTF-8"],
        ),
        (
            vec![os("-p"), bytes(b"\xff")],
            true,
            &["-p", "not valid UTF-8"],
        ),
    ];
    for (flags, with_app, needles) in cases {
        let mut args = flags.clone();
        if with_app {
            args.extend(app.iter().cloned());
        }
        let f = run_plain(&args, &[]);
        assert_eq!(f.code, Some(2), "{args:?}: a usage error\n{f:?}");
        let l = lines(&f.stderr);
        assert_eq!(l.len(), 1, "{args:?}: exactly one line: {:?}", f.stderr);
        assert!(l[0].starts_with("usher: error: "), "{args:?}: {:?}", l[0]);
        for n in needles {
            assert!(l[0].contains(n), "{args:?}: {:?} should say {n:?}", l[0]);
        }
        assert!(!d.path("ran").exists(), "{args:?}: the app ran");
    }
}

#[test]
fn every_usher_env_var_set_to_garbage_exits_2_naming_it() {
    let d = Scratch::new("bad-env");
    let ran = d.path("ran");
    let ran = ran.to_str().unwrap();
    // (usher's flags, variables, needles): the message must name the
    // variable at fault, not the flag the user never passed.
    type Case = (
        &'static [&'static str],
        Vec<(&'static str, OsString)>,
        Vec<&'static str>,
    );
    let e = |k: &'static str, v: &str| (k, os(v));
    let mut cases: Vec<Case> = vec![
        (
            &[],
            vec![e("USHER_SUBREAPER", "maybe")],
            vec!["USHER_SUBREAPER=\"maybe\"", "not a boolean", "1 or 0"],
        ),
        (
            &[],
            vec![e("USHER_SINGLE_CHILD", "2")],
            vec!["USHER_SINGLE_CHILD=\"2\"", "not a boolean"],
        ),
        (
            &[],
            vec![e("USHER_REWRITE", "TERM")],
            vec!["USHER_REWRITE: rewrite \"TERM\" is not FROM:TO"],
        ),
        (
            &[],
            vec![e("USHER_REWRITE", "TERM:QUIT,KILL:TERM")],
            vec!["USHER_REWRITE", "\"KILL:TERM\"", "never forwarded"],
        ),
        (
            &[],
            vec![e("USHER_REWRITE", "TERM:QUIT:HUP")],
            vec!["USHER_REWRITE", "\"TERM:QUIT:HUP\""],
        ),
        (
            &[],
            vec![e("USHER_PDEATHSIG", "0")],
            vec!["USHER_PDEATHSIG: signal number 0", "1..64"],
        ),
        (
            &[],
            vec![e("USHER_PDEATHSIG", "SIGNOPE")],
            vec!["USHER_PDEATHSIG: unknown signal \"SIGNOPE\""],
        ),
        (
            &[],
            vec![e("USHER_REMAP_EXIT", "143,300")],
            vec!["USHER_REMAP_EXIT \"300\"", "0 to 255"],
        ),
        (
            &[],
            vec![e("USHER_LOG", "loud")],
            vec!["USHER_LOG=\"loud\"", "error, warn, info, debug, trace"],
        ),
        (
            &[],
            vec![e("USHER_LOG_FORMAT", "xml")],
            vec!["USHER_LOG_FORMAT \"xml\" is not text or json"],
        ),
        (
            &[],
            vec![e("USHER_DRAIN", "5")],
            vec!["USHER_DRAIN \"5\" has no unit", "5s"],
        ),
        (
            &[],
            vec![e("USHER_DRAIN", "-1s")],
            vec!["USHER_DRAIN \"-1s\"", "cannot be negative", "500ms"],
        ),
        (
            &[],
            vec![e("USHER_GRACE_PERIOD", "soon")],
            vec!["USHER_GRACE_PERIOD \"soon\"", "500ms"],
        ),
        (
            &[],
            vec![e("USHER_GRACE_PERIOD", "99999999999999999999s")],
            vec!["USHER_GRACE_PERIOD \"99999999999999999999s\""],
        ),
        (
            &[],
            vec![e("USHER_GRACE_PERIOD", "400d")],
            vec!["USHER_GRACE_PERIOD \"400d\"", "at most 365d"],
        ),
        (
            &[],
            vec![e("USHER_STOP_ON", "KILL")],
            vec!["USHER_STOP_ON \"KILL\"", "cannot start a shutdown"],
        ),
        (
            &[],
            vec![e("USHER_STOP_ON", "TERM,,INT")],
            vec!["USHER_STOP_ON", "empty signal name"],
        ),
        (
            &[],
            vec![e("USHER_PRE_STOP", "'")],
            vec!["USHER_PRE_STOP: ", "unclosed single quote"],
        ),
        // Conflicts, between variables and between a variable and a flag.
        (
            &[],
            vec![e("USHER_DRAIN", "5s"), e("USHER_GRACE_PERIOD", "1s")],
            vec!["USHER_DRAIN 5s must be shorter than USHER_GRACE_PERIOD 1s"],
        ),
        (
            &["--grace-period", "1s"],
            vec![e("USHER_DRAIN", "5s")],
            vec!["USHER_DRAIN 5s must be shorter than --grace-period 1s"],
        ),
    ];
    // Every variable usher reads, so a new one is covered here at once.
    for var in usher::cli::env_vars() {
        cases.push((
            &[],
            vec![(var, bytes(b"x\xff"))],
            vec![var, "\"x\\xFF\"", "not valid UTF-8"],
        ));
    }
    for (flags, env, needles) in cases {
        let env: Vec<(OsString, OsString)> = env.into_iter().map(|(k, v)| (os(k), v)).collect();
        let mut args: Vec<OsString> = flags.iter().map(|a| os(a)).collect();
        args.extend([os("touch"), os(ran)]);
        let f = run_plain(&args, &env);
        assert_eq!(f.code, Some(2), "{flags:?} {env:?}: a usage error\n{f:?}");
        let l = lines(&f.stderr);
        assert_eq!(l.len(), 1, "{env:?}: exactly one line: {:?}", f.stderr);
        assert!(l[0].starts_with("usher: error: "), "{env:?}: {:?}", l[0]);
        assert!(
            env.iter().any(|(k, _)| l[0].contains(k.to_str().unwrap())),
            "{env:?}: {:?} does not name the variable",
            l[0]
        );
        for n in needles {
            assert!(l[0].contains(n), "{env:?}: {:?} should say {n:?}", l[0]);
        }
        assert!(!d.path("ran").exists(), "{env:?}: the app ran");
    }
}

#[test]
fn odd_env_values_that_are_accepted_and_flags_that_override_garbage() {
    // (flags, variables): each runs `true` and exits 0.
    type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)]);
    let cases: &[Case] = &[
        (&[], &[("USHER_SUBREAPER", "")]),
        // An empty or blank variable is an unset one, whichever it is.
        (&["-s"], &[("USHER_LOG", " ")]),
        (&["-s"], &[("USHER_DRAIN", "")]),
        (&["-s"], &[("USHER_PRE_STOP", " ")]),
        (&[], &[("USHER_SUBREAPER", " YES ")]),
        (&["-s"], &[("USHER_REWRITE", ",,")]),
        (&["-s"], &[("USHER_REWRITE", " TERM:QUIT , ")]),
        (&["-s"], &[("USHER_REMAP_EXIT", " ")]),
        (&["-s"], &[("USHER_BOGUS", "1")]),
        (&["-s"], &[("USHER_DRAIN", "0")]),
        // The flag wins: the variable is not even read.
        (&["-s", "--drain", "1s"], &[("USHER_DRAIN", "garbage")]),
        (&["-s", "-v"], &[("USHER_LOG", "loud")]),
        (
            &["-s", "--log-format", "text"],
            &[("USHER_LOG_FORMAT", "xml")],
        ),
        (
            &["-s", "-r", "TERM:QUIT"],
            &[("USHER_REWRITE", "KILL:TERM")],
        ),
        (&["-s", "-p", "KILL"], &[("USHER_PDEATHSIG", "0")]),
        (&["-s", "--pre-stop", "true"], &[("USHER_PRE_STOP", "'")]),
        (
            &["-c"],
            &[("USHER_SUBREAPER", "1"), ("USHER_SINGLE_CHILD", "no")],
        ),
    ];
    for (flags, env) in cases {
        let mut args: Vec<OsString> = flags.iter().map(|a| os(a)).collect();
        args.push(os("true"));
        let env: Vec<(OsString, OsString)> = env.iter().map(|(k, v)| (os(k), os(v))).collect();
        let f = run_plain(&args, &env);
        assert_eq!(f.code, Some(0), "{flags:?} {env:?}: accepted\n{f:?}");
        assert!(
            !f.stderr.contains("error"),
            "{flags:?} {env:?}: {:?}",
            f.stderr
        );
    }
}

#[test]
fn non_utf8_arguments_and_env_reach_the_app_byte_for_byte() {
    let d = Scratch::new("non-utf8");
    let dir = d.0.to_str().unwrap().to_string();
    // The command itself has a name that is not UTF-8: a link to sh.
    let sh_link = d.0.join(OsStr::from_bytes(b"sh\xff"));
    std::os::unix::fs::symlink("/bin/sh", &sh_link).expect("symlink sh");
    let script = format!(
        "cd '{dir}' && printf '%s' \"$0\" > zero && printf '%s' \"$1\" > one && printf '%s' \"$WEIRD\" > env"
    );
    let args = vec![
        os("-s"),
        os("--"),
        sh_link.clone().into_os_string(),
        os("-c"),
        os(&script),
        bytes(b"zero\xfe"),
        bytes(b"a\xffb\x80c"),
    ];
    let env = vec![(os("WEIRD"), bytes(b"\xfe\xff\xc3("))];
    let f = run_plain(&args, &env);
    assert_eq!(f.code, Some(0), "{f:?}");
    assert_eq!(fs::read(d.path("zero")).unwrap(), b"zero\xfe");
    assert_eq!(fs::read(d.path("one")).unwrap(), b"a\xffb\x80c");
    assert_eq!(fs::read(d.path("env")).unwrap(), b"\xfe\xff\xc3(");

    // The whole environment, names included, as `env` prints it.
    let out = fs::File::create(d.path("environ")).unwrap();
    let f = start_command(Mode::Plain, usher_cmd(usher()), |c| {
        c.args(["-s", "--", "env"])
            .env("WEIRD", OsStr::from_bytes(b"v\xff"))
            .env(OsStr::from_bytes(b"NAME\xfe"), OsStr::from_bytes(b"x\x80y"))
            .stdout(out);
    })
    .wait_bounded(FINISH);
    assert_eq!(f.code, Some(0), "{f:?}");
    let environ = fs::read(d.path("environ")).unwrap();
    let has_line = |want: &[u8]| environ.split(|&b| b == b'\n').any(|l| l == want);
    assert!(
        has_line(b"WEIRD=v\xff"),
        "{:?}",
        String::from_utf8_lossy(&environ)
    );
    assert!(
        has_line(b"NAME\xfe=x\x80y"),
        "{:?}",
        String::from_utf8_lossy(&environ)
    );
}

/// The longest durations usher accepts (365d) work: no overflow, no timer
/// error. (Longer ones, up to u64::MAX seconds, used to parse and then crash
/// usher at the first stop signal, with an overflow panic or EINVAL from the
/// timerfd; now they are usage errors, see the table above.)
#[test]
fn the_longest_durations_work_without_crashing_usher() {
    // Drain: the stop signal is held for a year; a second one cuts it short.
    let mut r = start(
        Mode::Plain,
        &[
            "-s",
            "--drain",
            "364d 23h 59m 59s",
            "--grace-period",
            "365d",
            "--",
            "sleep",
            "1000",
        ],
    );
    std::thread::sleep(Duration::from_millis(300));
    r.signal(libc::SIGTERM);
    std::thread::sleep(QUIET);
    assert!(
        matches!(r.outer.try_wait(), Ok(None)),
        "usher ended at the first TERM: {:?}",
        r.wait_bounded(Duration::from_secs(1))
    );
    r.signal(libc::SIGTERM);
    let f = r.wait_bounded(FINISH);
    assert_eq!(f.code, Some(143), "the second TERM reaches sleep: {f:?}");
    assert!(f.stderr.contains("drain cut short"), "{}", f.stderr);
    assert!(!f.stderr.contains("panic"), "{}", f.stderr);

    // Grace period alone: the stop signal is forwarded, the deadline far off.
    let r = start(
        Mode::Plain,
        &["-s", "--grace-period", "365d", "--", "sleep", "1000"],
    );
    std::thread::sleep(Duration::from_millis(300));
    r.signal(libc::SIGTERM);
    let f = r.wait_bounded(FINISH);
    assert_eq!(f.code, Some(143), "{f:?}");
    assert!(!f.stderr.contains("error"), "{}", f.stderr);
}

/// An unknown option is quoted and escaped, so a newline in it cannot split
/// the one-line message (nor let an argument forge a log line).
#[test]
fn an_option_with_a_newline_still_gives_one_line() {
    for arg in ["--a\nusher: info: forged", "-\n"] {
        let f = run_plain(&[os(arg), os("true")], &[]);
        assert_eq!(f.code, Some(2), "{f:?}");
        assert_eq!(lines(&f.stderr).len(), 1, "{arg:?}: {:?}", f.stderr);
    }
}

// ----------------------------------------------------------- 4. faults

#[test]
fn fork_failure_exits_125_with_a_message() {
    let Some(prlimit) = first_existing(&["/usr/bin/prlimit", "/bin/prlimit"]) else {
        eprintln!("SKIPPED fork_failure_exits_125_with_a_message: no prlimit (util-linux)");
        return;
    };
    let s = open_scratch("fork-fail");
    // RLIMIT_NPROC binds only users other than root: become 65534 first
    // (or, already not root, just lower the limit).
    let mut cmd;
    if root() {
        if let Some(why) = setpriv_missing() {
            eprintln!("SKIPPED fork_failure_exits_125_with_a_message: {why}");
            return;
        }
        let u = match usher_for_nobody(&s) {
            Ok(u) => u,
            Err(why) => {
                eprintln!("SKIPPED fork_failure_exits_125_with_a_message: {why}");
                return;
            }
        };
        cmd = usher_cmd("setpriv");
        cmd.args(NOBODY).args([prlimit.as_str(), "--nproc=1", &u]);
    } else {
        cmd = usher_cmd(&prlimit);
        cmd.args(["--nproc=1", usher()]);
    }
    let marker = s.path("ran");
    cmd.args(["-s", "--", "touch", marker.to_str().unwrap()]);
    // usher itself is the one process allowed: its fork must fail.
    let f = start_command(Mode::Plain, cmd, |_| {}).wait_bounded(FINISH);
    assert_eq!(f.code, Some(125), "{f:?}");
    let l = lines(&f.stderr);
    assert_eq!(l.len(), 1, "one line: {:?}", f.stderr);
    assert!(
        l[0].starts_with("usher: error: ")
            && l[0].contains("cannot start \"touch\"")
            && l[0].contains("fork failed")
            && l[0].contains("Resource temporarily unavailable"),
        "{:?}",
        l[0]
    );
    assert!(!marker.exists());
}

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
    let no_exec_bit = write("noexec.sh", &format!("#!/bin/sh\ntouch {ran}\n"), 0o644);
    let no_hashbang = write("nohashbang", &format!("touch {ran}\n"), 0o755);
    let empty = write("empty", "", 0o755);
    let bad_interp = write(
        "badinterp",
        &format!("#!/nonexistent/interp\ntouch {ran}\n"),
        0o755,
    );
    let plain_file = write("file", "", 0o644);
    let under_file = format!("{plain_file}/x");
    let dir = d.0.to_str().unwrap().to_string();
    fs::create_dir(d.path("bin")).unwrap();
    write("bin/usher-hardening-noexec", "#!/bin/sh\n", 0o644);
    let in_path_bad_interp = write(
        "bin/usher-hardening-badinterp",
        &format!("#!/nonexistent/interp\ntouch {ran}\n"),
        0o755,
    );
    let bin = d.path("bin").to_str().unwrap().to_string();

    // (command, PATH override, exit code, what the line must say)
    let cases: Vec<(String, Option<&str>, i32, &str)> = vec![
        (
            "usher-hardening-no-such-cmd".into(),
            None,
            127,
            "command not found in PATH",
        ),
        ("/nonexistent/usher-app".into(), None, 127, "no such file"),
        (under_file.clone(), None, 127, "no such file"), // ENOTDIR
        (
            bad_interp.clone(),
            None,
            127,
            "#! interpreter or ELF loader is missing",
        ),
        (no_exec_bit.clone(), None, 126, "permission denied"),
        (dir.clone(), None, 126, "it is a directory"),
        (no_hashbang.clone(), None, 126, "exec format error"),
        (empty.clone(), None, 126, "exec format error"),
        // Found in PATH but not executable: EACCES wins over "not found".
        (
            "usher-hardening-noexec".into(),
            Some(bin.as_str()),
            126,
            "permission denied",
        ),
        // Found in PATH, its interpreter missing: the message says which file.
        (
            "usher-hardening-badinterp".into(),
            Some(bin.as_str()),
            127,
            "#! interpreter or ELF loader is missing",
        ),
        // An empty PATH entry means the current directory, as in execvp.
        (
            "usher-hardening-no-such-cmd".into(),
            Some(""),
            127,
            "command not found",
        ),
    ];
    let found = format!("found {in_path_bad_interp}, but");
    for (cmd, path, code, why) in cases {
        let f = start_command(Mode::Plain, usher_cmd(usher()), |c| {
            c.args(["-s", "--", &cmd]);
            if let Some(p) = path {
                c.env("PATH", p);
            }
        })
        .wait_bounded(FINISH);
        assert_eq!(f.code, Some(code), "{cmd}: {f:?}");
        let l = lines(&f.stderr);
        assert_eq!(l.len(), 1, "{cmd}: one line: {:?}", f.stderr);
        assert!(
            l[0].starts_with("usher: error: cannot run ")
                && l[0].contains(&format!("{cmd:?}"))
                && l[0].contains(why),
            "{cmd}: should name it and say {why:?}: {:?}",
            l[0]
        );
        if cmd == "usher-hardening-badinterp" {
            assert!(l[0].contains(&found), "{:?} should say {found:?}", l[0]);
        }
    }
    assert!(
        !d.path("ran").exists(),
        "no failed command may run, nor a shell in its place"
    );
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
    let mut child = match cmd.spawn() {
        Ok(c) => c,
        Err(e) if e.raw_os_error() == Some(libc::E2BIG) => return Trial::UsherTooBig,
        Err(e) => panic!("spawn usher: {e}"),
    };
    let mut err = child.stderr.take().unwrap();
    let reader = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = err.read_to_string(&mut s);
        s
    });
    let mut status = None;
    wait_until(FINISH, || {
        status = child.try_wait().ok().flatten();
        status.is_some()
    });
    let Some(status) = status else {
        kill_tree(child.id() as i32);
        let _ = child.wait();
        panic!("usher with {pad} bytes of arguments did not finish");
    };
    let stderr = reader.join().unwrap_or_default();
    match status.code() {
        Some(0) => Trial::Ran,
        Some(126) => Trial::Refused(stderr),
        other => panic!("{pad} bytes: unexpected exit {other:?}: {stderr:?}"),
    }
}

#[test]
fn argument_list_too_long_exits_126() {
    let Some(true_bin) = first_existing(&["/bin/true", "/usr/bin/true"]) else {
        eprintln!("SKIPPED argument_list_too_long_exits_126: no `true` binary");
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
                let l = lines(&stderr);
                assert_eq!(l.len(), 1, "{mid} bytes: one line: {stderr:?}");
                assert!(
                    l[0].starts_with("usher: error: cannot run \"x\"")
                        && l[0].contains("argument list too long"),
                    "{:?}",
                    l[0]
                );
                return;
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
    BrokenPipe,
    /// A file past RLIMIT_FSIZE: EFBIG, and SIGXFSZ raised in usher.
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
                    let lim = libc::rlimit {
                        rlim_cur: 64,
                        rlim_max: 64,
                    };
                    libc::setrlimit(libc::RLIMIT_FSIZE, &lim);
                    Ok(())
                });
            }
        }
    }
}

/// The command that runs usher in `mode` (through unshare as PID 1).
fn usher_in(mode: Mode) -> Command {
    match mode {
        Mode::Plain => usher_cmd(usher()),
        Mode::Pid1 => {
            let prefix = namespace_prefix().expect("checked by the caller");
            let mut c = usher_cmd(prefix[0]);
            c.args(&prefix[1..]).arg(usher());
            c
        }
    }
}

fn modes(test: &str) -> Vec<Mode> {
    let mut m = vec![Mode::Plain];
    if !skip_without_namespaces(test) {
        m.push(Mode::Pid1);
    }
    m
}

/// usher can neither log nor be told it cannot: the app's exit code still
/// comes through, no signal usher raised in itself reaches the app, and a
/// drain still holds the stop signal for its time.
fn keeps_working_without_stderr(how: BadStderr) {
    let name = format!("bad-stderr-{how:?}");
    for mode in modes(&name) {
        let s = Scratch::new(&name);
        // -vvv: a log line for everything, so every write fails. Without -s
        // when not PID 1, the orphan warning is the very first write. The
        // apps send their own stderr elsewhere: sh's "Terminated" on a
        // broken pipe would raise SIGPIPE in the app itself.
        let a = app(
            &s,
            "quick",
            "exec 2>/dev/null\nfor sig in PIPE XFSZ; do trap \"echo $sig >> got\" $sig; done\nsleep 0.3\nexit 3",
        );
        let f = start_command(mode, usher_in(mode), |c| {
            c.args(["-vvv", "--", &a]);
            bad_stderr(c, how, &s);
        })
        .wait_bounded(FINISH);
        assert_eq!(f.code, Some(3), "{how:?} {mode:?}: the app's code: {f:?}");
        assert_eq!(
            s.read("got"),
            "",
            "{how:?} {mode:?}: signals usher raised itself reached the app"
        );

        // The shutdown timeline: TERM held for the 1s drain, then forwarded.
        let a = app(
            &s,
            "drained",
            "exec 2>/dev/null\ntrap 'rec term; exit 7' TERM\nfor sig in PIPE XFSZ; do trap \"echo $sig >> got\" $sig; done\nrec ready\nwhile :; do sleep 1; done",
        );
        let r = start_command(mode, usher_in(mode), |c| {
            c.args([
                "-vvv",
                "-s",
                "--drain",
                "1s",
                "--grace-period",
                "10s",
                "--",
                &a,
            ]);
            bad_stderr(c, how, &s);
        });
        let (r, _) = wait_stamp(&s, r, "ready");
        let pid = r.usher_pid();
        let sent = epoch();
        // SAFETY: kill has no memory-safety preconditions.
        assert_eq!(unsafe { libc::kill(pid, libc::SIGTERM) }, 0);
        let f = r.wait_bounded(FINISH);
        assert_eq!(f.code, Some(7), "{how:?} {mode:?}: {f:?}");
        let got = first_stamp(&s, "term").expect("the app got TERM");
        assert!(
            got - sent >= 1.0,
            "{how:?} {mode:?}: TERM after {:.3}s, before the drain",
            got - sent
        );
        assert!(
            got - sent <= 1.0 + SLACK,
            "{how:?} {mode:?}: TERM only after {:.3}s",
            got - sent
        );
        assert_eq!(
            s.read("got"),
            "",
            "{how:?} {mode:?}: signals usher raised itself reached the app"
        );
    }
}

#[test]
fn closed_stderr_changes_nothing() {
    keeps_working_without_stderr(BadStderr::Closed);
}

/// Was a bug: usher's log write on a broken pipe raised SIGPIPE in usher,
/// which it then forwarded, killing the app (exit 141 instead of 3).
#[test]
fn broken_pipe_stderr_changes_nothing() {
    keeps_working_without_stderr(BadStderr::BrokenPipe);
}

/// Was a bug: past RLIMIT_FSIZE usher's log write raised SIGXFSZ in usher,
/// which it forwarded, killing the app (exit 153 instead of 3).
#[test]
fn stderr_past_the_file_size_limit_changes_nothing() {
    keeps_working_without_stderr(BadStderr::OverSizeLimit);
}

/// Known gap (log.rs): usher writes its log with blocking writes, so a
/// reader that stops reading stderr (a stalled log shipper) freezes PID 1
/// once the pipe is full: no reaping, no forwarding, no shutdown.
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
    let r = start_command(Mode::Plain, usher_cmd(usher()), |c| {
        c.args(["-s", "-vv", "--", &a])
            .stderr(Stdio::from(write_end));
    });
    let (r, _) = wait_stamp(&s, r, "ready");
    let pid = r.usher_pid();
    // Queued real-time signals: two log lines each, far beyond 64 KiB.
    for _ in 0..3000 {
        // SAFETY: kill has no memory-safety preconditions.
        unsafe { libc::kill(pid, libc::SIGRTMIN() + 1) };
    }
    std::thread::sleep(Duration::from_millis(500));
    // SAFETY: as above.
    unsafe { libc::kill(pid, libc::SIGTERM) };
    let f = r.wait_bounded(Duration::from_secs(5));
    drop(read_end);
    assert_eq!(f.code, Some(143), "{f:?}");
}

/// Checks an escalation at a `grace`-second deadline: usher exited no
/// sooner (`took`, by the test's clock, from just before the stop signal),
/// decided to kill within [`SLACK`] of it (its own log's time), and exited
/// reasonably soon after (listing /proc and reaping can lag on a starved
/// machine; the kill itself is sent before either).
fn check_deadline(grace: f64, took: f64, stderr: &str, what: &str) {
    assert!(
        took >= grace,
        "{what}: usher exited {took:.3}s after the stop, before the deadline\n{stderr}"
    );
    let line = stderr
        .lines()
        .find(|l| l.contains("grace period over, killing"))
        .unwrap_or_else(|| panic!("{what}: no escalation line\n{stderr}"));
    let t: f64 = line
        .strip_prefix("usher: +")
        .and_then(|r| r.split_once("s "))
        .and_then(|(t, _)| t.parse().ok())
        .unwrap_or_else(|| panic!("{what}: no time on {line:?}"));
    assert!(
        (grace..=grace + SLACK).contains(&t),
        "{what}: escalated at +{t}s\n{stderr}"
    );
    assert!(
        took <= grace + 10.0,
        "{what}: usher exited only {took:.3}s after the stop\n{stderr}"
    );
}

/// The unshare prefix without --mount-proc: with `mount`, a new mount
/// namespace too (where /proc is then hidden under an empty tmpfs).
fn prefix_without_proc(mount: bool) -> Vec<&'static str> {
    let mut p: Vec<&str> = namespace_prefix()
        .expect("checked by the caller")
        .iter()
        .copied()
        .filter(|a| *a != "--mount-proc")
        .collect();
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
fn without_proc(name: &str, empty: bool) {
    if skip_without_namespaces(name) {
        return;
    }
    let s = Scratch::new(name);
    // The app: HUP recorded; TERM ignored; an orphan that exits at once,
    // and a second one later, both left for usher (PID 1) to reap.
    let a = app(
        &s,
        "app",
        "trap 'rec hup' HUP\ntrap '' TERM\nsh -c 'sleep 0.1 & exit 0'\nsh -c 'sleep 1 & exit 0'\nrec ready\nwhile :; do sleep 1; done",
    );
    let mut cmd = usher_cmd(prefix_without_proc(empty)[0]);
    cmd.args(&prefix_without_proc(empty)[1..]);
    let setup = if empty {
        "mount -t tmpfs -o size=1m none /proc || exit 97; ls /proc | grep -q . && exit 98; exec \"$@\""
    } else {
        "[ \"$(readlink /proc/self)\" = 1 ] && exit 96; exec \"$@\""
    };
    cmd.args([
        "sh",
        "-c",
        setup,
        "sh",
        usher(),
        "-v",
        "--grace-period",
        "1s",
        "--",
        &a,
    ]);
    let r = start_command(Mode::Pid1, cmd, |_| {});
    let (r, _) = wait_stamp(&s, r, "ready");
    let pid = r.usher_pid();
    // Both orphans reaped: no zombie child of usher once they are done.
    std::thread::sleep(Duration::from_millis(1200));
    let zombies = || {
        children_of(pid)
            .into_iter()
            .filter(|&c| state(c) == Some('Z'))
            .count()
    };
    assert!(
        wait_until(SOON, || zombies() == 0),
        "zombies left under usher"
    );
    r.signal(libc::SIGHUP);
    assert!(s.wait_for("hup", "\n", SOON), "HUP was not forwarded");
    let t = Instant::now();
    r.signal(libc::SIGTERM);
    let f = r.wait_bounded(FINISH);
    let took = t.elapsed().as_secs_f64();
    assert_eq!(f.code, Some(137), "{f:?}");
    check_deadline(1.0, took, &f.stderr, name);
    let reaped = f
        .stderr
        .lines()
        .filter(|l| l.contains("debug: reaped: pid="))
        .count();
    assert!(reaped >= 2, "both orphans reaped: {}", f.stderr);
    let kill = f
        .stderr
        .lines()
        .find(|l| l.contains("grace period over, killing"))
        .unwrap_or_else(|| panic!("no escalation line: {}", f.stderr));
    assert!(kill.contains("pids=\"unknown (no /proc)\""), "{kill}");
}

#[test]
fn empty_proc_usher_still_reaps_forwards_and_escalates() {
    without_proc("empty_proc_usher_still_reaps_forwards_and_escalates", true);
}

#[test]
fn foreign_proc_usher_still_reaps_forwards_and_escalates() {
    without_proc(
        "foreign_proc_usher_still_reaps_forwards_and_escalates",
        false,
    );
}

/// As user 65534 (a subreaper, then PID 1): exit codes, forwarding, reaping
/// and the deadline all work without root.
#[test]
fn non_root_usher_does_its_whole_job() {
    if let Some(why) = setpriv_missing() {
        eprintln!("SKIPPED non_root_usher_does_its_whole_job: {why}");
        return;
    }
    let s = open_scratch("non-root");
    let u = match usher_for_nobody(&s) {
        Ok(u) => u,
        Err(why) => {
            eprintln!("SKIPPED non_root_usher_does_its_whole_job: {why}");
            return;
        }
    };
    let as_nobody = |pid1: bool| {
        let mut c = if pid1 {
            let mut c = usher_cmd(namespace_prefix().unwrap()[0]);
            c.args(&namespace_prefix().unwrap()[1..]).arg("setpriv");
            c
        } else {
            usher_cmd("setpriv")
        };
        c.args(NOBODY).arg(&u);
        c
    };
    let mut modes = vec![Mode::Plain];
    if !skip_without_namespaces("non_root_usher_does_its_whole_job (PID 1)") {
        modes.push(Mode::Pid1);
    }
    for mode in modes {
        let pid1 = mode == Mode::Pid1;
        let mut c = as_nobody(pid1);
        c.args([
            "-s",
            "--",
            "sh",
            "-c",
            "[ \"$(id -u)\" = 65534 ] || exit 99; exit 3",
        ]);
        let f = start_command(mode, c, |_| {}).wait_bounded(FINISH);
        assert_eq!(f.code, Some(3), "{mode:?}: {f:?}");

        let _ = fs::remove_file(s.path("hup"));
        let _ = fs::remove_file(s.path("ready"));
        let a = app(
            &s,
            "app",
            "trap 'rec hup' HUP\ntrap '' TERM\nsh -c 'sleep 0.1 & exit 0'\nrec ready\nwhile :; do sleep 1; done",
        );
        let mut c = as_nobody(pid1);
        c.args([
            "-s",
            "-v",
            "--drain",
            "300ms",
            "--grace-period",
            "1500ms",
            "--",
            &a,
        ]);
        let r = start_command(mode, c, |_| {});
        let (r, _) = wait_stamp(&s, r, "ready");
        assert_eq!(
            proc_status(r.usher_pid(), "Uid")
                .unwrap()
                .split_whitespace()
                .next(),
            Some("65534")
        );
        r.signal(libc::SIGHUP);
        assert!(s.wait_for("hup", "\n", SOON), "{mode:?}: HUP not forwarded");
        let t = Instant::now();
        r.signal(libc::SIGTERM);
        let f = r.wait_bounded(FINISH);
        let took = t.elapsed().as_secs_f64();
        assert_eq!(f.code, Some(137), "{mode:?}: {f:?}");
        check_deadline(1.5, took, &f.stderr, &format!("{mode:?}"));
        assert!(
            f.stderr.contains("debug: reaped: pid="),
            "{mode:?}: orphan reaped: {}",
            f.stderr
        );
        assert!(
            f.stderr.contains("grace period over, killing"),
            "{mode:?}: {}",
            f.stderr
        );
    }
}

/// An app that stops itself, as PID 1: usher does not stop with it (it
/// cannot be stopped, and must keep reaping); SIGCONT sent to usher is
/// forwarded and the app carries on to its own exit code.
#[test]
fn app_stopping_itself_as_pid1_usher_keeps_running_and_cont_resumes_it() {
    if skip_without_namespaces(
        "app_stopping_itself_as_pid1_usher_keeps_running_and_cont_resumes_it",
    ) {
        return;
    }
    let s = Scratch::new("self-stop-pid1");
    let a = app(&s, "app", "rec ready\nkill -STOP $$\nrec resumed\nexit 3");
    let r = start(Mode::Pid1, &["-v", "--", &a]);
    let (r, _) = wait_stamp(&s, r, "ready");
    let pid = r.usher_pid();
    let mut app_pid = 0;
    assert!(
        wait_until(SOON, || {
            app_pid = children_of(pid).first().copied().unwrap_or(0);
            app_pid != 0 && state(app_pid) == Some('T')
        }),
        "the app never stopped"
    );
    let end = Instant::now() + QUIET;
    while Instant::now() < end {
        assert_ne!(state(pid), Some('T'), "usher (PID 1) stopped with its app");
        std::thread::sleep(Duration::from_millis(20));
    }
    r.signal(libc::SIGCONT);
    assert!(s.wait_for("resumed", "\n", SOON), "CONT was not forwarded");
    let f = r.wait_bounded(FINISH);
    assert_eq!(f.code, Some(3), "{f:?}");
    assert!(
        f.stderr.contains("forwarded: signal=SIGCONT"),
        "{}",
        f.stderr
    );
}

/// Not PID 1 and without a terminal (no shell to hand a stopped job to),
/// usher does not stop with its app: it keeps forwarding and reaping, and
/// SIGCONT sent to it is forwarded. (With a terminal it stops like a shell
/// job: see the pty tests below.)
#[test]
fn app_stopping_itself_without_a_terminal_leaves_a_non_pid1_usher_running() {
    let s = Scratch::new("self-stop-plain");
    let a = app(&s, "app", "rec ready\nkill -STOP $$\nrec resumed\nexit 3");
    let r = start(Mode::Plain, &["-s", "-v", "--", &a]);
    let (r, _) = wait_stamp(&s, r, "ready");
    let pid = r.usher_pid();
    let mut app_pid = 0;
    assert!(
        wait_until(SOON, || {
            app_pid = children_of(pid).first().copied().unwrap_or(0);
            app_pid != 0 && state(app_pid) == Some('T')
        }),
        "the app never stopped"
    );
    let end = Instant::now() + QUIET;
    while Instant::now() < end {
        assert_ne!(state(pid), Some('T'), "usher stopped with its app");
        std::thread::sleep(Duration::from_millis(20));
    }
    r.signal(libc::SIGCONT);
    assert!(
        s.wait_for("resumed", "\n", SOON),
        "CONT did not reach the app"
    );
    let f = r.wait_bounded(FINISH);
    assert_eq!(f.code, Some(3), "{f:?}");
}

// ------------------------------------------------- 5. terminal job control

/// A small expect(1) in Python: drives a program on a pty, waits for
/// output with deadlines, reports process states, kills its tree by pid.
const PTY_DRIVER: &str = r#"
import os, pty, select, signal, sys, time

def children(pid):
    out = []
    try:
        for t in os.listdir(f"/proc/{pid}/task"):
            with open(f"/proc/{pid}/task/{t}/children") as f:
                out += [int(p) for p in f.read().split()]
    except OSError:
        pass
    return out

def tree(pid):
    all, i = [pid], 0
    while i < len(all):
        all += children(all[i]); i += 1
    return all

def state(pid):
    try:
        with open(f"/proc/{pid}/stat") as f:
            return f.read().rsplit(")", 1)[1].split()[0]
    except OSError:
        return "?"

pid, fd = pty.fork()
if pid == 0:
    os.execvp(sys.argv[1], sys.argv[1:])

out, mark = b"", 0
def pump(t):
    global out
    r, _, _ = select.select([fd], [], [], t)
    if r:
        try:
            data = os.read(fd, 4096)
        except OSError:
            return False
        if not data:
            return False
        out += data
    return True

def fail(why):
    sys.stdout.write("FAIL: " + why + "\n--- transcript ---\n" + out.decode(errors="replace"))
    for p in reversed(tree(pid)):
        try: os.kill(p, signal.SIGKILL)
        except OSError: pass
    sys.exit(1)

def expect(needle, count=1, t=15):
    global mark
    needle = needle.encode()
    end = time.time() + t
    while out.count(needle, mark) < count:
        if time.time() > end or not pump(0.05):
            if out.count(needle, mark) >= count: break
            fail(f"no {needle!r} x{count}")
    i = mark
    for _ in range(count):
        i = out.index(needle, i) + len(needle)
    mark = i

def send(s):
    os.write(fd, s.encode())

def wait_state(p, want, t=15):
    end = time.time() + t
    while state(p) not in want:
        if time.time() > end:
            fail(f"pid {p} is {state(p)}, not {want}")
        pump(0.02)

def keeps_state(p, bad, t=1.0):
    end = time.time() + t
    while time.time() < end:
        if state(p) in bad:
            fail(f"pid {p} went {state(p)}")
        pump(0.02)

def finish(t=15):
    end = time.time() + t
    while time.time() < end:
        w, st = os.waitpid(pid, os.WNOHANG)
        if w:
            pump(0.1)
            return os.waitstatus_to_exitcode(st)
        pump(0.05)
    fail("did not exit")
"#;

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

fn pty_tools(test: &str) -> bool {
    for (tool, pkg) in [("python3", "python3"), ("bash", "bash")] {
        let ok = Command::new(tool)
            .arg("--version")
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .map(|s| s.success())
            .unwrap_or(false);
        if !ok {
            eprintln!("SKIPPED {test}: no {tool} (apt-get install {pkg})");
            return false;
        }
    }
    true
}

fn run_pty(s: &Scratch, scenario: &str, argv: &[&str]) -> (Option<i32>, String) {
    let script = s.path("drive.py");
    fs::write(&script, format!("{PTY_DRIVER}\n{scenario}")).unwrap();
    let mut cmd = Command::new("python3");
    cmd.arg(&script).args(argv).env("USHER", usher());
    let (code, out, err) = run_bounded(&mut cmd, Duration::from_secs(90));
    (code, format!("{out}{err}"))
}

/// `usher -- cat` in an interactive bash, through a pty: Ctrl-Z stops the
/// job (usher and cat), bash reports it Stopped and prompts; `fg` resumes
/// both and cat owns the terminal again; Ctrl-D ends cat and usher exits 0.
#[test]
fn ctrl_z_suspends_and_fg_resumes_usher_in_an_interactive_shell() {
    let test = "ctrl_z_suspends_and_fg_resumes_usher_in_an_interactive_shell";
    if !pty_tools(test) {
        return;
    }
    let s = Scratch::new("pty-job");
    let (code, out) = run_pty(&s, JOB_CONTROL, &["bash", "--norc", "--noprofile", "-i"]);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("OK bash exit"), "{out}");
}

/// As PID 1 on a terminal, usher never stops: Ctrl-Z and a TSTP sent to
/// usher stop only the app; CONT sent to usher resumes it; Ctrl-D ends it.
#[test]
fn pid1_usher_on_a_terminal_never_stops() {
    let test = "pid1_usher_on_a_terminal_never_stops";
    if !pty_tools(test) || skip_without_namespaces(test) {
        return;
    }
    let s = Scratch::new("pty-pid1");
    let mut argv: Vec<&str> = namespace_prefix().unwrap().to_vec();
    argv.extend([usher(), "-v", "--", "cat"]);
    let (code, out) = run_pty(&s, PID1_NEVER_STOPS, &argv);
    assert_eq!(code, Some(0), "{out}");
    assert!(out.contains("OK usher exit 0"), "{out}");
}

/// A usage error is reported in JSON when JSON logs were asked for, by the
/// variable or by the flag, so a log pipeline parsing usher's lines gets it.
#[test]
fn usage_errors_follow_the_json_log_format() {
    let mut by_env = Command::new(usher());
    by_env
        .args(["--drain", "5", "true"])
        .env("USHER_LOG_FORMAT", "json");
    let mut by_flag = Command::new(usher());
    by_flag.args(["--log-format", "json", "--bogus", "true"]);
    for (mut cmd, want) in [(by_env, "no unit"), (by_flag, "unknown option")] {
        let (code, _, err) = run_bounded(&mut cmd, Duration::from_secs(10));
        assert_eq!(code, Some(2), "{err}");
        let line = err.trim_end();
        assert!(
            line.starts_with("{\"source\":\"usher\",\"level\":\"error\"") && line.ends_with('}'),
            "one JSON object: {line:?}"
        );
        assert!(line.contains(want) && !line.contains('\n'), "{line:?}");
    }
}
