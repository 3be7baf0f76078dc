//! Graceful shutdown, end to end: the drain, the pre-stop hook, the deadline, leftovers and the timeline in the log, with usher as PID 1 (and as a subreaper where it differs) running /bin/sh apps that record, with `date +%s.%N`, when each signal arrived.
//!
//! Timing, for a noisy 2-core machine: the test reads the clock just
//! *before* it sends a signal and the app just *after* the signal reached
//! it, so "no sooner than the drain" is exact; every upper bound allows
//! `SLACK` on top (see `common::assert_on_time`). Every process is cleaned
//! up by pid: `Running` kills its tree on drop (as PID 1 usher takes its
//! namespace with it); subreaper tests also kill, through [`PidGuard`],
//! the pids their apps recorded, if still alive.

mod common;
use common::*;

use std::process::{Command, Stdio};
use std::time::Duration;

const TERM: i32 = libc::SIGTERM;

// ----------------------------------------------------------------- helpers --

/// An app with `traps` that says it is ready, then idles.
fn idle(traps: &str) -> String {
    format!("{traps}\nrec ready\nwhile :; do sleep 0.1; done")
}

/// usher with `flags` (and `-s` when not PID 1) runs the app `body` in `s`;
/// once the app is ready the test sends each signal after its pause (ms),
/// then waits for usher, which must exit with `code`. Returns when each
/// signal was sent, and what usher left.
fn shutdown(
    mode: Mode,
    s: &Scratch,
    flags: &[&str],
    body: &str,
    signals: &[(i32, u64)],
    code: i32,
) -> (Vec<Sent>, Finished) {
    let r = start_app(mode, s, flags, body).ready(s, "ready");
    let mut sent = Vec::new();
    for &(sig, pause) in signals {
        std::thread::sleep(Duration::from_millis(pause));
        sent.push(r.signal(sig));
    }
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(code), "{f}");
    (sent, f)
}

/// [`shutdown`] as PID 1 with TERM alone, sent at once.
fn terminate(s: &Scratch, flags: &[&str], body: &str, code: i32) -> (Sent, Finished) {
    let (sent, f) = shutdown(Mode::Pid1, s, flags, body, &[(TERM, 0)], code);
    (sent[0], f)
}

/// Pids of this test's own PID namespace (a subreaper test's) SIGKILLed on
/// drop if still alive.
struct PidGuard(Vec<i32>);

impl Drop for PidGuard {
    fn drop(&mut self) {
        for &pid in self.0.iter().filter(|&&p| p > 1 && alive(p)) {
            let _ = kill(pid, libc::SIGKILL);
        }
    }
}

// ------------------------------------------------------------------- drain --

/// The drain holds the stop signal alone: the app keeps working (its
/// heartbeats go on up to the drain's end), and another signal sent in the
/// drain (HUP) is forwarded at once.
#[test]
fn drain_holds_term_while_the_app_works_and_other_signals_pass() {
    needs_namespaces!();
    let s = Scratch::new("drain");
    let traps = "trap 'rec term; exit 0' TERM\ntrap 'rec hup' HUP\nrec ready";
    let body = format!("{traps}\nwhile :; do rec beat; sleep 0.1; done");
    let signals = [(TERM, 0), (libc::SIGHUP, 300)];
    let (sent, f) = shutdown(Mode::Pid1, &s, &["--drain", "1s"], &body, &signals, 0);
    let stop = sent[0];
    assert_on_time("TERM", s.since("term", stop), 1.0, &f.stderr);
    assert_on_time("HUP", s.since("hup", sent[1]), 0.0, &f.stderr);
    let hup_first = s.stamp("hup") < s.stamp("term");
    assert!(hup_first, "HUP waited for the drain\n{f}");
    // Heartbeats kept coming during the drain, up to its end.
    let term = s.stamp("term").unwrap();
    let in_drain = |b: &f64| *b > stop.epoch && *b < term;
    let beats: Vec<f64> = s.stamps("beat").into_iter().filter(in_drain).collect();
    assert!(beats.len() >= 3, "heartbeats in the 1s drain: {beats:?}");
    let late = beats.iter().any(|&b| b > stop.epoch + 0.5);
    assert!(late, "no heartbeat in its second half: {beats:?}");
    let fwd = line_with(&f.stderr, "info: forwarded: signal=SIGTERM to=group:{app}");
    assert_on_time("forwarding, by usher", fwd.and_then(line_t), 1.0, &f.stderr);
}

// ---------------------------------------------------------------- pre-stop --

#[test]
fn pre_stop_runs_first_and_forwarding_waits_for_it() {
    needs_namespaces!();
    let s = Scratch::new("pre-stop");
    let done = s.path("hook-done");
    let hook = format!("sh -c \"sleep 1.5; echo done > {}\"", done.display());
    let body = idle("trap '[ -f hook-done ] && rec hook-was-done; rec term; exit 0' TERM");
    let (stop, f) = terminate(&s, &["--drain", "200ms", "--pre-stop", &hook], &body, 0);
    assert_eq!(s.read("hook-done"), "done\n", "the hook ran to its end");
    let hook_first = s.stamp("hook-was-done").is_some();
    assert!(hook_first, "TERM came before the hook was done\n{f}");
    assert_on_time("TERM", s.since("term", stop), 1.5, &f.stderr);
    let lines = assert_in_order(
        &f.stderr,
        &[
            "info: stop received: signal=SIGTERM drain=200ms",
            "info: pre-stop started: pid=",
            "info: pre-stop exited: pid=",
            "info: forwarded: signal=SIGTERM to=group:{app}",
            "info: exiting: code=0",
        ],
    );
    assert!(lines[2].contains("status=exit:0"), "{}", lines[2]);
}

/// As PID 1 and as a subreaper: a hook that never ends holds the stop
/// signal back only until the reserve point, min(2 s, grace/2) = 1 s before
/// the 2 s deadline, where the hook is killed with its group and the app
/// gets its TERM (and, trapping it, exits 0 before any SIGKILL).
#[test]
fn hanging_pre_stop_is_cut_at_the_reserve_and_the_app_gets_its_stop_signal() {
    for mode in modes() {
        let s = Scratch::new("hanging-hook");
        let flags = ["--pre-stop", "sleep 1000", "--grace-period", "2s"];
        let body = idle("trap 'rec term; exit 0' TERM\necho $$ > pid");
        let (stop, f) = shutdown(mode, &s, &flags, &body, &[(TERM, 0)], 0);
        let hook = line_with(&f.stderr, "info: pre-stop started: pid=");
        let hook: i32 = hook
            .and_then(|l| field(l, "pid")?.parse().ok())
            .expect("its pid");
        // Outside a namespace the pids are this machine's: kill what survives.
        let _guard = (mode == Mode::Plain).then(|| PidGuard(vec![s.pid("pid"), hook]));
        let term = s.since("term", stop[0]);
        assert_on_time("TERM at the reserve point", term, 1.0, &f.stderr);
        let cut = line_with(&f.stderr, "warn: pre-stop cut short").unwrap_or_else(|| panic!("{f}"));
        assert_eq!(field(cut, "pid"), Some(hook.to_string().as_str()), "{cut}");
        assert_no_line(&f.stderr, "grace period over", "the app stopped in its 1 s");
        // Outside a namespace nothing cleans up for usher: the hook must be gone.
        let gone = mode == Mode::Pid1 || !alive(hook);
        assert!(gone, "{mode:?}: the hook ({hook}) survived");
    }
}

// -------------------------------------------------------------- escalation --

#[test]
fn app_ignoring_term_is_killed_at_the_deadline() {
    needs_namespaces!();
    let s = Scratch::new("ignore-term");
    let body = "trap '' TERM\necho $$ > pid\nrec ready\nexec sleep 1000";
    let (stop, f) = terminate(&s, &["--grace-period", "2s"], body, 137);
    let kill = assert_deadline(2.0, stop.elapsed(), &f.stderr);
    assert_in_order(
        &f.stderr,
        &[
            "info: stop received: signal=SIGTERM drain=0s grace=2s",
            "info: forwarded: signal=SIGTERM to=group:{app}",
            "warn: grace period over, killing: signal=SIGKILL pids=",
            "info: child exited: pid={app} status=signal:SIGKILL",
            "info: exiting: code=137",
        ],
    );
    assert_eq!(pids_field(&kill), [s.pid("pid")], "the app: {kill}");
}

/// In `mode`, usher's app is a shell wrapper that runs the script `job`
/// (`{job}` in `how`) and then dies of the TERM usher forwards, in the
/// grace period `grace`: usher exits with the wrapper's code, 143.
fn wrapper_dies_of_term(
    mode: Mode,
    job: &str,
    how: &str,
    grace: &str,
) -> (Scratch, Sent, Finished) {
    let s = Scratch::new("wrapper");
    let job = app(&s, "job", job);
    let body = how.replace("{job}", &job);
    let flags = ["--grace-period", grace];
    let (sent, f) = shutdown(mode, &s, &flags, &body, &[(TERM, 0)], 143);
    (s, sent[0], f)
}

/// As PID 1 and as a subreaper: the wrapper's job ignores TERM and
/// lingers until the deadline kills it.
#[test]
fn sh_wrapper_job_ignoring_term_is_killed() {
    for mode in modes() {
        let job = "trap '' TERM\necho $$ > bgpid\nrec ready\nexec sleep 1000";
        let (s, stop, f) = wrapper_dies_of_term(mode, job, "echo $$ > pid\n{job} &\nwait", "2s");
        let bg_pid = s.pid("bgpid");
        let _guard = (mode == Mode::Plain).then(|| PidGuard(vec![bg_pid, s.pid("pid")]));
        let kill = assert_deadline(2.0, stop.elapsed(), &f.stderr);
        let lines = assert_in_order(
            &f.stderr,
            &[
                "info: forwarded: signal=SIGTERM to=group:",
                "info: child exited: pid=",
                "warn: grace period over, killing: signal=SIGKILL pids=",
                "info: exiting: code=143",
            ],
        );
        assert!(lines[1].contains("status=signal:SIGTERM"), "{}", lines[1]);
        let killed = pids_field(&kill).contains(&bg_pid);
        assert!(killed, "{mode:?}: the job ({bg_pid}) not killed: {kill}");
        let gone = mode == Mode::Pid1 || !alive(bg_pid);
        assert!(gone, "the job survived usher");
    }
}

/// As PID 1 and as a subreaper: the wrapper dies while the app behind it
/// (its job) is still cleaning up; the app, already told, must not get a
/// second TERM when usher signals the leftovers (a second signal often
/// means "quit now").
#[test]
fn app_behind_an_exited_wrapper_is_not_told_twice() {
    for mode in modes() {
        let job = "trap 'rec term; sleep 1; rec cleaned; exit 0' TERM\nrec ready\nwhile :; do sleep 0.1 & wait $!; done";
        // `; true` keeps the shell alive as the app's parent.
        let (s, _, f) = wrapper_dies_of_term(mode, job, "{job}; true", "5s");
        let (told, cleaned) = (s.stamps("term").len(), s.stamps("cleaned").len());
        let once = format!("{mode:?}: TERM once, cleaned up");
        assert_eq!((told, cleaned), (1, 1), "{once}\n{f}");
        assert_no_line(&f.stderr, "SIGKILL", "nothing was to be killed");
    }
}

/// An app that is stopped (SIGSTOP, a debugger, Ctrl-Z gone wrong) when the
/// stop signal comes would never run its handler: usher follows the stop
/// signal with SIGCONT, so the app shuts down cleanly (0) instead of
/// waiting for the deadline's SIGKILL (137).
#[test]
fn a_stopped_app_still_gets_its_stop_signal() {
    needs_namespaces!();
    let s = Scratch::new("stopped-app");
    let body = "trap 'rec term; exit 0' TERM\nrec ready\nkill -STOP $$\nwhile :; do sleep 0.1 & wait $!; done";
    // 300 ms for the app to stop itself first.
    let flags = ["--grace-period", "10s"];
    let (sent, f) = shutdown(Mode::Pid1, &s, &flags, body, &[(TERM, 300)], 0);
    let term = s.since("term", sent[0]);
    assert_on_time("TERM to the stopped app", term, 0.0, &f.stderr);
}

// --------------------------------------------------------------- leftovers --

/// The app starts a job with `job` as its body, waits until the job is
/// ready, then exits 7 on its own, leaving the job behind. Returns what
/// usher left and the seconds from the app's exit to usher's.
fn leaves_a_job(flags: &[&str], job: &str) -> (Scratch, Finished, f64) {
    let s = Scratch::new("leftover");
    let bg = app(&s, "bg", &format!("echo $$ > bgpid\n{job}"));
    let body = format!("{bg} &\nwhile [ ! -s ready ]; do sleep 0.05; done\nrec exiting\nexit 7");
    let (_, f) = shutdown(Mode::Pid1, &s, flags, &body, &[], 7);
    let exited = s.stamp("exiting").expect("the app recorded its exit");
    let took = epoch() - exited;
    (s, f, took)
}

#[test]
fn a_leftover_gets_the_stop_signal_when_the_app_exits() {
    needs_namespaces!();
    let job = idle("trap 'rec bgterm; exit 0' TERM");
    let (s, f, took) = leaves_a_job(&["--grace-period", "10s"], &job);
    let exited = s.stamp("exiting").unwrap();
    let told = s.stamp("bgterm").map(|t| t - exited);
    assert_on_time(
        "TERM to the job, after the app's exit",
        told,
        0.0,
        &f.stderr,
    );
    assert_on_time("usher's exit, the job gone", Some(took), 0.0, &f.stderr);
    let told = assert_in_order(
        &f.stderr,
        &["info: signalled leftovers: signal=SIGTERM pids="],
    );
    let listed = pids_field(&told[0]).contains(&s.pid("bgpid"));
    assert!(listed, "the job is not listed: {}", told[0]);
    assert_no_line(&f.stderr, "SIGKILL", "nothing needed killing");
}

#[test]
fn a_leftover_ignoring_term_is_killed_at_the_deadline_and_the_app_code_kept() {
    needs_namespaces!();
    let job = "trap '' TERM\nrec ready\nexec sleep 1000";
    let (s, f, took) = leaves_a_job(&["-v", "--grace-period", "2s"], job);
    let kill = assert_deadline(2.0, took, &f.stderr);
    assert_in_order(
        &f.stderr,
        &[
            "info: child exited: pid={app} status=exit:7",
            "info: signalled leftovers: signal=SIGTERM pids=",
            "warn: grace period over, killing: signal=SIGKILL pids=",
            // info, not debug: the app left a process behind, so its exit is notable.
            "info: exiting: code=7",
        ],
    );
    assert_eq!(pids_field(&kill), [s.pid("bgpid")], "the job: {kill}");
}

// ---------------------------------------------------------------- timeline --

/// The timeline scenario (drain 300ms, grace 5s, the app exits 3 on TERM)
/// in `format`; returns usher's stderr (the app's own goes elsewhere).
fn timeline(format: &str) -> String {
    let s = Scratch::new("timeline");
    let flags = [
        &["--log-format", format][..],
        &words("--drain 300ms --grace-period 5s"),
    ]
    .concat();
    let body = idle("exec 2>/dev/null\ntrap 'rec term; exit 3' TERM");
    let (stop, f) = terminate(&s, &flags, &body, 3);
    assert_on_time("usher's exit", Some(stop.elapsed()), 0.3, &f.stderr);
    f.stderr
}

/// A text log line's level, event and `key=value` fields.
type TextLine<'a> = (&'a str, &'a str, Vec<(&'a str, &'a str)>);

fn parse_text(line: &str) -> Option<TextLine<'_>> {
    let mut rest = line.strip_prefix("usher: ")?;
    if rest.starts_with('+') {
        rest = rest.split_once(' ')?.1;
    }
    let (level, rest) = rest.split_once(": ")?;
    let (event, fields) = rest.split_once(": ").unwrap_or((rest, ""));
    let fields = fields
        .split_whitespace()
        .filter_map(|kv| kv.split_once('='));
    Some((level, event, fields.collect()))
}

/// Whether a text value and a JSON value say the same thing (`300ms` is
/// 0.3; `2,5` is [2, 5]).
fn same_value(text: &str, json: &serde_json::Value) -> bool {
    use serde_json::Value;
    let secs = |v: &str| match v.strip_suffix("ms") {
        Some(ms) => ms.parse::<f64>().ok().map(|m| m / 1000.0),
        None => v.strip_suffix('s')?.parse().ok(),
    };
    match json {
        Value::String(s) => s == text,
        Value::Number(n) => {
            let n = n.as_f64().unwrap();
            text.parse::<f64>().ok() == Some(n) || secs(text).is_some_and(|t| (t - n).abs() < 1e-6)
        }
        Value::Array(items) => {
            let listed = text.split(',').map(|p| p.parse::<f64>().ok());
            items.iter().map(|i| i.as_f64()).eq(listed)
        }
        _ => false,
    }
}

const TIMELINE: &[&str] = &[
    "info: stop received: signal=SIGTERM drain=300ms grace=5s",
    "info: forwarded: signal=SIGTERM to=group:{app}",
    "info: child exited: pid={app} status=exit:3",
    "info: exiting: code=3",
];

/// The shutdown's key lines, in order, timed from the stop signal; and the
/// same events with the same fields and values as JSON, one object a line.
#[test]
fn the_timeline_in_text_and_the_same_in_json() {
    needs_namespaces!();
    let text = timeline("text");
    let key = assert_in_order(&text, TIMELINE);
    let ts: Vec<Option<f64>> = key.iter().map(|l| line_t(l)).collect();
    assert_eq!(ts[0], Some(0.0), "the stop starts the clock: {}", key[0]);
    let forward = ts.windows(2).all(|w| w[0] <= w[1]);
    assert!(forward, "times go back: {ts:?}\n{text}");
    assert_on_time("forwarding, by usher", ts[1], 0.3, &text);
    assert_on_time("exiting, by usher", ts[3], 0.3, &text);
    for l in usher_lines(&text)
        .iter()
        .filter(|l| l.starts_with("usher: +"))
    {
        assert!(line_t(l).is_some(), "malformed time: {l}");
    }

    let json = timeline("json");
    let text_lines: Vec<_> = usher_lines(&text)
        .into_iter()
        .filter_map(parse_text)
        .collect();
    let json_lines = lines(&json);
    assert_eq!(json_lines.len(), text_lines.len(), "lines:\n{json}\n{text}");
    for (raw, (level, event, fields)) in json_lines.iter().zip(&text_lines) {
        assert!(raw.starts_with("{\"source\":\"usher\""), "{raw}");
        let obj: serde_json::Value = serde_json::from_str(raw).expect(raw);
        let same = obj["level"] == *level && obj["event"] == *event;
        assert!(same, "{raw} vs {event}");
        // The same fields, in the same order, with the same values (only
        // times of day may differ between the two runs).
        let head = ["source", "t", "level", "event"];
        let keys = obj.as_object().unwrap().keys();
        let keys = keys.filter(|k| !head.contains(&k.as_str()));
        let mut text_keys: Vec<&str> = fields.iter().map(|(k, _)| *k).collect();
        let at = |k: &str| raw.find(&format!("\"{k}\":"));
        let in_order = text_keys.windows(2).all(|w| at(w[0]) < at(w[1]));
        assert!(in_order, "fields out of order: {raw}");
        text_keys.sort();
        assert!(keys.eq(text_keys), "{event}: fields {raw} vs {fields:?}");
        for (k, v) in fields {
            let same = same_value(v, &obj[*k]);
            assert!(same, "{event} {k}: text {v:?} vs JSON {}", obj[*k]);
        }
        if TIMELINE.iter().any(|l| l.contains(&format!(" {event}:"))) {
            assert!(obj["t"].is_number(), "{event} has no time: {raw}");
        }
        if *event == "forwarded" {
            assert_on_time("forwarding, in JSON", obj["t"].as_f64(), 0.3, &json);
        }
    }
    let stop: serde_json::Value = serde_json::from_str(json_lines[0]).unwrap();
    let timers = (stop["drain"].as_f64(), stop["grace"].as_f64());
    assert_eq!(timers, (Some(0.3), Some(5.0)), "{stop}");
    assert_eq!(stop["signal"], "SIGTERM");
}

// -------------------------------------------------------------- idle usher --

#[test]
fn idle_usher_makes_no_syscalls_during_the_drain() {
    needs_namespaces!();
    if !try_run(Command::new("strace").arg("-V"), SOON).is_ok_and(|r| r.ok()) {
        skipped("no strace (apt-get install -y strace)");
        return;
    }
    let s = Scratch::new("idle");
    let body = idle("trap 'rec term; exit 0' TERM");
    let r = start_app(Mode::Pid1, &s, &["--drain", "4s"], &body).ready(&s, "ready");
    let pid = r.usher_pid();
    let stop = r.signal(TERM);
    std::thread::sleep(Duration::from_millis(300));
    let out = s.path("strace.out");
    let mut strace = Command::new("strace");
    strace
        .args(["-qq", "-o"])
        .arg(&out)
        .args(["-p", &pid.to_string()]);
    strace
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped());
    let tracer = strace.spawn().expect("spawn strace");
    let tracer_pid = tracer.id() as i32;
    let _guard = PidGuard(vec![tracer_pid]);
    // Watch for 1.2s, well inside the 4s drain; SIGINT makes strace detach.
    std::thread::sleep(Duration::from_millis(1200));
    let watched_until = stop.elapsed();
    let _ = kill(tracer_pid, libc::SIGINT);
    let traced = tracer.wait_with_output().expect("wait for strace");
    let log = std::fs::read_to_string(&out).unwrap_or_default();
    let f = r.wait(FINISH);

    if log.trim().is_empty() {
        let why = String::from_utf8_lossy(&traced.stderr);
        if why.contains("not permitted") || why.contains("ptrace") {
            skipped(&format!("strace cannot attach here: {}", why.trim()));
            return;
        }
        panic!("strace recorded nothing: {traced:?}");
    }
    let past = watched_until >= 4.0;
    assert!(!past, "watched past the drain: {watched_until:.3}s");
    // Each line starts with a syscall name: the only one allowed is the
    // call usher blocks in (shown as restarted after strace's attach).
    let calls: Vec<&str> = lines(&log)
        .iter()
        .map(|l| l.split('(').next().unwrap())
        .collect();
    let blocking = ["restart_syscall", "poll", "ppoll"];
    let blocked = calls.iter().position(|c| blocking.contains(&c.trim()));
    let blocked = blocked.unwrap_or_else(|| panic!("usher never blocked while watched:\n{log}"));
    assert_eq!(calls.len(), blocked + 1, "calls while idle:\n{log}");
    // And the drain still ended on time.
    assert_eq!(f.code, Some(0), "{f}");
    assert_on_time("TERM", s.since("term", stop), 4.0, &f.stderr);
}
