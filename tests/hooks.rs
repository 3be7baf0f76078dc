//! Lifecycle hooks end to end: post-start alongside the app, its failure stopping the container (exit 124), HTTP actions against a real server, the stop reserve, and hook output in the container's log.
//!
//! The HTTP server is a small std `TcpListener` on 127.0.0.1 in this test
//! process: it records each request's method, target, headers and arrival
//! time, and answers with the status (after the delay) the test chose for
//! that path. Nothing leaves 127.0.0.1.

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

const TERM: i32 = libc::SIGTERM;

// ------------------------------------------------------------ HTTP server --

/// One request as the server saw it.
#[derive(Clone, Debug)]
struct Seen {
    method: String,
    target: String,
    headers: Vec<(String, String)>,
    /// Seconds since the epoch when its head was complete.
    at: f64,
}

impl Seen {
    fn header(&self, name: &str) -> Option<&str> {
        let h = self
            .headers
            .iter()
            .find(|(k, _)| k.eq_ignore_ascii_case(name));
        h.map(|(_, v)| v.as_str())
    }
}

/// What to answer for a path: a status after a delay (`None`: never answer).
type Answer = fn(&str) -> (u16, Option<Duration>);

struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start(answer: Answer) -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let stop = Arc::new(AtomicBool::new(false));
        let (s, st) = (seen.clone(), stop.clone());
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let (s, st) = (s.clone(), st.clone());
                        conns.push(std::thread::spawn(move || serve(c, answer, &s, &st)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            for c in conns {
                let _ = c.join();
            }
        });
        Server {
            port,
            seen,
            stop,
            thread: Some(thread),
        }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }

    fn seen(&self) -> Vec<Seen> {
        self.seen.lock().unwrap().clone()
    }
}

impl Drop for Server {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Reads one request head (bounded), records it, answers as told.
fn serve(mut c: TcpStream, answer: Answer, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool) {
    let _ = c.set_read_timeout(Some(Duration::from_secs(5)));
    let mut head = Vec::new();
    let mut buf = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < 16 * 1024 {
        match c.read(&mut buf) {
            Ok(0) | Err(_) => return,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
    }
    let text = String::from_utf8_lossy(&head).into_owned();
    let mut lines = text.split("\r\n");
    let mut first = lines.next().unwrap_or_default().split(' ');
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default(),
    );
    let headers = lines
        .filter_map(|l| l.split_once(": "))
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let request = Seen {
        method: method.into(),
        target: target.into(),
        headers,
        at: epoch(),
    };
    seen.lock().unwrap().push(request);
    let (status, delay) = answer(target);
    // Never answering still ends when the test does: the server stops.
    let end = Instant::now() + delay.unwrap_or(Duration::from_secs(120));
    while Instant::now() < end && !stop.load(Ordering::Relaxed) {
        std::thread::sleep(Duration::from_millis(10));
    }
    if delay.is_some() {
        let body = "answered\n";
        let reply = format!(
            "HTTP/1.1 {status} Whatever\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
            body.len()
        );
        let _ = c.write_all(reply.as_bytes());
    }
}

/// The status is in the path: `/s/503` answers 503, at once; `/slow`
/// answers 200 after a second; `/never` never answers.
fn by_path(target: &str) -> (u16, Option<Duration>) {
    let path = target.split('?').next().unwrap_or_default();
    match path {
        "/never" => (0, None),
        "/slow" => (200, Some(Duration::from_secs(1))),
        p => (
            p.strip_prefix("/s/")
                .and_then(|c| c.parse().ok())
                .unwrap_or(200),
            Some(Duration::ZERO),
        ),
    }
}

// --------------------------------------------------------------- helpers --

/// An app that traps TERM (records it, exits 0) and idles.
const TRAPS_TERM: &str = "trap 'rec term; exit 0' TERM\nrec ready\nwhile :; do sleep 0.1; done";

/// Runs usher (as PID 1 where namespaces work, else as a subreaper) with
/// `flags` over the [`TRAPS_TERM`] app; with `after`, stops it with TERM
/// that long after the app is ready (unless usher exits first); returns
/// usher's end.
fn run_app(s: &Scratch, flags: &[&str], after: Option<Duration>) -> Finished {
    let mode = modes()[0];
    let mut r = start_app(mode, s, flags, TRAPS_TERM);
    if let Some(pause) = after {
        r = r.ready(s, "ready");
        std::thread::sleep(pause);
        if r.running() {
            r.signal(TERM);
        }
    }
    r.wait(Duration::from_secs(40))
}

// ------------------------------------------------------------ post-start --

#[test]
fn post_start_runs_alongside_the_app_which_is_never_held_back() {
    for mode in modes() {
        let s = Scratch::new("post-start-alongside");
        let hook = app(&s, "hook", "rec hook-start\nsleep 1\nrec hook-end");
        let r = start_app(mode, &s, &["--post-start", &hook], TRAPS_TERM).ready(&s, "ready");
        assert!(
            s.wait_for("hook-end", ".", SOON),
            "{mode:?}: the hook never ended"
        );
        let sent = r.signal(TERM);
        let f = r.wait(FINISH);
        assert_eq!(f.code, Some(0), "{mode:?}: {f}");
        let (ready, hook_end) = (s.stamp("ready").unwrap(), s.stamp("hook-end").unwrap());
        assert!(
            ready < hook_end,
            "{mode:?}: the app waited for the hook\n{f}"
        );
        assert_on_time("TERM, no drain", s.since("term", sent), 0.0, &f.stderr);
        let done =
            line_with(&f.stderr, "info: post-start exited: pid=").unwrap_or_else(|| panic!("{f}"));
        assert_eq!(field(done, "status"), Some("exit:0"), "{done}");
        let took: f64 = field(done, "took")
            .and_then(|t| t.trim_end_matches('s').parse().ok())
            .unwrap_or(0.0);
        assert!(took >= 1.0, "the hook's 1 s: {done}");
    }
}

/// Each way a post-start hook fails — exit status, not found, killed by a
/// signal — stops the app with the full sequence (pre-stop hook, 1 s drain,
/// TERM) and makes usher exit 124, though the app exits 0.
#[test]
fn a_failed_post_start_stops_the_app_with_the_whole_sequence_and_exit_124() {
    let s = Scratch::new("post-start-fails");
    let exits = app(&s, "exits", "rec failed\nexit 3");
    let killed = app(&s, "killed", "rec failed\nkill -KILL $$");
    let pre_stop = app(&s, "pre-stop-hook", "rec pre-stop");
    for (hook, says) in [
        (exits.as_str(), "status=exit:3"),
        ("/nonexistent/warm-up", "no such file"),
        (killed.as_str(), "status=signal:SIGKILL"),
    ] {
        let _ = std::fs::remove_file(s.path("term"));
        let _ = std::fs::remove_file(s.path("pre-stop"));
        let flags = [
            "--post-start",
            hook,
            "--pre-stop",
            &pre_stop,
            "--drain",
            "1s",
            "--grace-period",
            "10s",
        ];
        let f = run_app(&s, &flags, None);
        assert_eq!(f.code, Some(124), "{hook}: {f}");
        let failed = line_with(&f.stderr, "error: post-start").unwrap_or_else(|| panic!("{f}"));
        assert!(
            failed.contains(says),
            "{hook}: {failed:?} should say {says:?}"
        );
        assert_in_order(
            &f.stderr,
            &[
                "error: post-start",
                "info: stopping: the post-start hook failed: signal=SIGTERM drain=1s grace=10s",
                "info: pre-stop started",
                "info: forwarded: signal=SIGTERM",
                "info: exiting: code=124",
            ],
        );
        assert!(
            s.stamp("pre-stop").is_some(),
            "{hook}: the pre-stop hook ran\n{f}"
        );
        let term = line_with(&f.stderr, "info: forwarded: signal=SIGTERM").and_then(line_t);
        assert_on_time("TERM after the drain", term, 1.0, &f.stderr);
        if let Some(failed_at) = s.stamp("failed") {
            let term_at = s.stamp("term").expect("the app got TERM");
            assert!(
                term_at - failed_at >= 1.0,
                "{hook}: TERM before the 1 s drain\n{f}"
            );
        }
    }
}

#[test]
fn post_start_from_the_environment() {
    let s = Scratch::new("post-start-env");
    let hook = app(&s, "hook", "exit 1");
    let mode = modes()[0];
    let mut cmd = usher_in(mode);
    let a = app(&s, "app", TRAPS_TERM);
    if mode == Mode::Plain {
        cmd.arg("-s");
    }
    cmd.args(["--", &a]);
    let f = start_command(mode, cmd, |c| {
        c.env("USHER_POST_START", &hook);
    })
    .wait(FINISH);
    assert_eq!(f.code, Some(124), "{f}");
    assert!(
        line_with(&f.stderr, "error: post-start failed").is_some(),
        "{f}"
    );
}

/// If the app exits while the post-start hook runs, the hook is a leftover:
/// it gets the stop signal and, without a grace period, SIGKILL at once.
#[test]
fn a_post_start_still_running_when_the_app_exits_is_a_leftover() {
    for mode in modes() {
        let s = Scratch::new("post-start-leftover");
        let hook = app(&s, "hook", "echo $$ > hook-pid\nexec sleep 1000");
        let a = app(
            &s,
            "app",
            "while [ ! -s hook-pid ]; do sleep 0.05; done\nexit 6",
        );
        let mut args = vec!["--post-start", &hook];
        if mode == Mode::Plain {
            args.insert(0, "-s");
        }
        args.extend(["--", &a]);
        let f = run(mode, &args);
        assert_eq!(f.code, Some(6), "{mode:?}: the app's own code\n{f}");
        let hook_pid = s.pid("hook-pid");
        assert!(
            wait_until(SOON, || !alive(hook_pid)) || mode == Mode::Pid1,
            "{mode:?}: the hook survived"
        );
        let told = line_with(&f.stderr, "signalled leftovers").unwrap_or_else(|| panic!("{f}"));
        assert!(
            mode == Mode::Pid1 || pids_field(told).contains(&hook_pid),
            "{told}"
        );
    }
}

// -------------------------------------------------------------------- HTTP --

/// GET with a query as the post-start hook, POST as the pre-stop hook: what
/// reaches the server, header by header, and when.
#[test]
fn http_hooks_send_the_method_path_query_and_headers_and_wait_for_the_answer() {
    let server = Server::start(by_path);
    let s = Scratch::new("http-hooks");
    let post_start = server.url("/slow?warm=1&x=%20");
    let pre_stop = format!("POST {}", server.url("/s/204?from=usher"));
    let flags = [
        "--post-start",
        &post_start,
        "--pre-stop",
        &pre_stop,
        "--drain",
        "500ms",
        "--grace-period",
        "10s",
    ];
    let mode = modes()[0];
    let r = start_app(mode, &s, &flags, TRAPS_TERM).ready(&s, "ready");
    assert!(
        wait_until(SOON, || server.seen().len() == 1),
        "the post-start request"
    );
    std::thread::sleep(Duration::from_millis(1500)); // the slow answer
    let sent = r.signal(TERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(0), "{f}");
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (get, post) = (&seen[0], &seen[1]);
    assert_eq!(
        (get.method.as_str(), get.target.as_str()),
        ("GET", "/slow?warm=1&x=%20")
    );
    assert_eq!(
        (post.method.as_str(), post.target.as_str()),
        ("POST", "/s/204?from=usher")
    );
    let host = format!("127.0.0.1:{}", server.port);
    for r in &seen {
        assert_eq!(r.header("Host"), Some(host.as_str()), "{r:?}");
        assert_eq!(r.header("Connection"), Some("close"), "{r:?}");
        let agent = r.header("User-Agent").unwrap_or_default();
        assert!(agent.starts_with("usher/"), "{r:?}");
    }
    assert_eq!(get.header("Content-Length"), None, "GET has no body");
    assert_eq!(
        post.header("Content-Length"),
        Some("0"),
        "POST says its body is empty"
    );
    assert!(
        post.at - sent.epoch < SLACK,
        "the pre-stop request went out at the stop"
    );
    let answered =
        line_with(&f.stderr, "info: post-start answered").unwrap_or_else(|| panic!("{f}"));
    assert_eq!(field(answered, "http"), Some("200"), "{answered}");
    let took: f64 = field(answered, "took")
        .and_then(|t| t.trim_end_matches('s').parse().ok())
        .unwrap_or(0.0);
    assert!(took >= 1.0, "usher waited for the slow answer: {answered}");
    assert!(
        line_with(&f.stderr, "info: pre-stop answered").is_some_and(|l| l.contains("http=204")),
        "{f}"
    );
    assert_on_time(
        "TERM after the answer and the drain",
        s.since("term", sent),
        0.5,
        &f.stderr,
    );
}

/// 200 and 302 are success; 500 and 503 fail the post-start hook (exit 124).
#[test]
fn http_statuses_200_to_399_succeed_and_others_fail() {
    let server = Server::start(by_path);
    for (status, ok) in [(200, true), (302, true), (500, false), (503, false)] {
        let s = Scratch::new("http-status");
        let url = server.url(&format!("/s/{status}"));
        let after = ok.then_some(Duration::from_millis(800));
        let f = run_app(&s, &["--post-start", &url], after);
        let want = if ok { 0 } else { 124 };
        assert_eq!(f.code, Some(want), "HTTP {status}: {f}");
        let level = if ok {
            "info: post-start answered"
        } else {
            "error: post-start failed"
        };
        let line = line_with(&f.stderr, level).unwrap_or_else(|| panic!("HTTP {status}: {f}"));
        assert_eq!(
            field(line, "http"),
            Some(status.to_string().as_str()),
            "{line}"
        );
    }
}

/// A pre-stop request answered 503 is a warning; the sequence goes on.
#[test]
fn a_failed_http_pre_stop_is_a_warning_and_the_stop_signal_follows() {
    let server = Server::start(by_path);
    let s = Scratch::new("http-pre-stop-503");
    let hook = format!("DELETE {}", server.url("/s/503"));
    let f = run_app(
        &s,
        &["--pre-stop", &hook, "--grace-period", "5s"],
        Some(Duration::ZERO),
    );
    assert_eq!(f.code, Some(0), "{f}");
    let warn = line_with(&f.stderr, "warn: pre-stop failed").unwrap_or_else(|| panic!("{f}"));
    assert_eq!(field(warn, "http"), Some("503"), "{warn}");
    assert!(s.stamp("term").is_some(), "the app got TERM\n{f}");
    assert_eq!(server.seen()[0].method, "DELETE");
}

/// Nothing listens: the refused connection is tried again for the 2 s
/// connect bound, then the post-start hook fails.
#[test]
fn a_refused_connection_fails_the_post_start_after_the_connect_bound() {
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let s = Scratch::new("http-refused");
    let url = format!("http://127.0.0.1:{port}/ready");
    let f = run_app(&s, &["--post-start", &url], None);
    assert_eq!(f.code, Some(124), "{f}");
    let failed = line_with(&f.stderr, "error: post-start failed").unwrap_or_else(|| panic!("{f}"));
    assert!(failed.contains("Connection refused"), "{failed}");
    let took: f64 = field(failed, "took")
        .and_then(|t| t.trim_end_matches('s').parse().ok())
        .unwrap_or(0.0);
    assert!(
        (1.5..2.0 + SLACK).contains(&took),
        "retried for the 2 s bound: {failed}"
    );
}

/// A server that accepts and never answers: the post-start hook fails at
/// the 10 s response bound; as a pre-stop hook it is cut at the reserve.
#[test]
fn a_server_that_never_answers_never_stalls_usher() {
    let server = Server::start(by_path);
    let s = Scratch::new("http-never-post");
    let started = Instant::now();
    let f = run_app(&s, &["--post-start", &server.url("/never")], None);
    assert_eq!(f.code, Some(124), "{f}");
    let failed = line_with(&f.stderr, "error: post-start failed").unwrap_or_else(|| panic!("{f}"));
    assert!(failed.contains("no answer within 10s"), "{failed}");
    assert!(
        started.elapsed() < Duration::from_secs(10) + Duration::from_secs_f64(SLACK * 2.0),
        "{f}"
    );

    let s = Scratch::new("http-never-pre");
    let hook = format!("POST {}", server.url("/never"));
    let r = start_app(
        modes()[0],
        &s,
        &["--pre-stop", &hook, "--grace-period", "3s"],
        TRAPS_TERM,
    )
    .ready(&s, "ready");
    let sent = r.signal(TERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(0), "{f}");
    assert_on_time(
        "TERM at the 1.5 s reserve point",
        s.since("term", sent),
        1.5,
        &f.stderr,
    );
    assert!(
        line_with(&f.stderr, "warn: pre-stop cut short").is_some(),
        "{f}"
    );
}

/// A bad URL is a usage error naming the flag (the table of every bad URL
/// is in src/hook.rs's unit tests): exit 2, one line, nothing run.
#[test]
fn a_bad_hook_url_is_a_usage_error() {
    let s = Scratch::new("http-bad");
    let marker = s.path("ran");
    for (flag, value, says) in [
        (
            "--post-start",
            "https://127.0.0.1/ready",
            "https is not supported",
        ),
        (
            "--pre-stop",
            "GET ftp://127.0.0.1/",
            "must start with http://",
        ),
        ("--pre-stop", "http://:8080/", "no host"),
        ("--post-start", "http://127.0.0.1:99999/", "from 1 to 65535"),
    ] {
        let f = run(
            Mode::Plain,
            &[flag, value, "--", "touch", marker.to_str().unwrap()],
        );
        assert_eq!(f.code, Some(2), "{flag} {value}: {f}");
        let l = lines(&f.stderr);
        assert_eq!(l.len(), 1, "{f}");
        assert!(l[0].contains(flag) && l[0].contains(says), "{:?}", l[0]);
        assert!(!marker.exists(), "nothing runs after a usage error");
    }
}

// ------------------------------------------------------------ the reserve --

/// A drain that would end inside the stop reserve is shortened to end at
/// the reserve point, with a warning at start-up: 1.9 s in 2 s is 1 s.
#[test]
fn a_drain_that_does_not_fit_before_the_reserve_is_shortened_with_a_warning() {
    let s = Scratch::new("drain-cut");
    let mode = modes()[0];
    let r = start_app(
        mode,
        &s,
        &["--drain", "1900ms", "--grace-period", "2s"],
        TRAPS_TERM,
    )
    .ready(&s, "ready");
    let sent = r.signal(TERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(0), "{f}");
    let warn = line_with(
        &f.stderr,
        "warn: the drain would end after the stop reserve",
    )
    .unwrap_or_else(|| panic!("{f}"));
    assert_eq!(
        (field(warn, "drain"), field(warn, "to")),
        (Some("1.900s"), Some("1s")),
        "{warn}"
    );
    assert_on_time(
        "TERM at the reserve point",
        s.since("term", sent),
        1.0,
        &f.stderr,
    );
}

// ------------------------------------------------------------ hook output --

/// What a hook prints reaches usher's own stdout and stderr: the container log.
#[test]
fn hook_output_reaches_the_container_log() {
    let s = Scratch::new("hook-output");
    let hook = app(&s, "hook", "echo hook-says-out\necho hook-says-err >&2");
    let a = app(&s, "app", TRAPS_TERM);
    let mode = modes()[0];
    let mut cmd = usher_in(mode);
    if mode == Mode::Plain {
        cmd.arg("-s");
    }
    cmd.args(["--pre-stop", &hook, "--", &a]);
    let out_file = s.path("stdout");
    let out = std::fs::File::create(&out_file).expect("stdout file");
    let r = start_command(mode, cmd, |c| {
        c.stdout(out);
    })
    .ready(&s, "ready");
    r.signal(TERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(0), "{f}");
    assert!(
        s.read("stdout").contains("hook-says-out"),
        "stdout: {:?}",
        s.read("stdout")
    );
    assert!(f.stderr.contains("hook-says-err"), "{f}");
}
