//! Lifecycle hooks end to end: post-start alongside the app, its failure stopping the container (exit 124), post-stop once all is gone, HTTP actions (with `--http-header`) against a real server, the stop reserve, hook output in the container's log, and `usher --check [--ready]`.
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
    /// The request line's method and target.
    fn line(&self) -> (&str, &str) {
        (&self.method, &self.target)
    }

    fn header(&self, name: &str) -> Option<&str> {
        let mut headers = self.headers.iter();
        headers
            .find(|(k, _)| k.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }
}

/// The server: it answers each request as [`by_path`] says.
struct Server {
    port: u16,
    seen: Arc<Mutex<Vec<Seen>>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
}

impl Server {
    fn start() -> Server {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        listener.set_nonblocking(true).expect("nonblocking");
        let port = listener.local_addr().expect("addr").port();
        let (seen, stop): (Arc<Mutex<_>>, Arc<AtomicBool>) = Default::default();
        let (s, st) = (Arc::clone(&seen), Arc::clone(&stop));
        let thread = std::thread::spawn(move || {
            let mut conns = Vec::new();
            while !st.load(Ordering::Relaxed) {
                match listener.accept() {
                    Ok((c, _)) => {
                        let (s, st) = (s.clone(), st.clone());
                        conns.push(std::thread::spawn(move || serve(c, &s, &st)));
                    }
                    Err(_) => std::thread::sleep(Duration::from_millis(5)),
                }
            }
            conns.into_iter().for_each(|c| drop(c.join()));
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
fn serve(mut c: TcpStream, seen: &Mutex<Vec<Seen>>, stop: &AtomicBool) {
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
    let mut first = lines
        .next()
        .unwrap_or_default()
        .split(' ')
        .map(String::from);
    let (method, target) = (
        first.next().unwrap_or_default(),
        first.next().unwrap_or_default(),
    );
    let headers = lines.filter_map(|l| l.split_once(": "));
    let headers = headers
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    let (status, delay) = by_path(&target);
    let at = epoch();
    seen.lock().unwrap().push(Seen {
        method,
        target,
        headers,
        at,
    });
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
    let status = path.strip_prefix("/s/").and_then(|c| c.parse().ok());
    match path {
        "/never" => (0, None),
        "/slow" => (200, Some(Duration::from_secs(1))),
        _ => (status.unwrap_or(200), Some(Duration::ZERO)),
    }
}

// --------------------------------------------------------------- helpers --

/// An app that traps TERM (records it, exits 0) and idles.
const TRAPS_TERM: &str = "trap 'rec term; exit 0' TERM\nrec ready\nwhile :; do sleep 0.1; done";

/// Runs usher (a plain process, `-s`) with `flags` over the [`TRAPS_TERM`]
/// app, to its end.
fn run_app(s: &Scratch, flags: &[&str]) -> Finished {
    start_app(Mode::Plain, s, flags, TRAPS_TERM).wait(Duration::from_secs(40))
}

/// Waits for `r`'s app to be ready, then stops usher with TERM: when the
/// signal went, and usher's end.
fn stop(r: Running, s: &Scratch) -> (Sent, Finished) {
    let r = r.ready(s, "ready");
    (r.signal(TERM), r.wait(FINISH))
}

/// usher with `args` and `env`, run to its end (bounded): `usher --check`.
fn usher_ran(args: &[&str], env: &[(&str, &str)]) -> Ran {
    run_bounded(
        usher_command(&[]).args(args).envs(env.iter().copied()),
        SOON,
    )
}

/// The first line of usher's containing `needle`; fails the test without one.
#[track_caller]
fn must<'a>(f: &'a Finished, needle: &str) -> &'a str {
    line_with(&f.stderr, needle).unwrap_or_else(|| panic!("no line with {needle:?}: {f}"))
}

/// The `took=1.5s` of a hook's line, in seconds (0 without one).
fn took(line: &str) -> f64 {
    let t = field(line, "took").and_then(|t| t.trim_end_matches('s').parse().ok());
    t.unwrap_or(0.0)
}

// ------------------------------------------------------------ post-start --

#[test]
fn post_start_runs_alongside_the_app_which_is_never_held_back() {
    for mode in modes() {
        let s = Scratch::new("post-start-alongside");
        let hook = app(&s, "hook", "rec hook-start\nsleep 1\nrec hook-end");
        let r = start_app(mode, &s, &["--post-start", &hook], TRAPS_TERM).ready(&s, "ready");
        assert!(s.wait_for("hook-end", ".", SOON), "{mode:?}: no hook-end");
        let sent = r.signal(TERM);
        let f = r.wait(FINISH);
        assert_eq!(f.code, Some(0), "{mode:?}: {f}");
        let (ready, hook_end) = (s.stamp("ready").unwrap(), s.stamp("hook-end").unwrap());
        assert!(ready < hook_end, "{mode:?}: the app waited\n{f}");
        assert_on_time("TERM, no drain", s.since("term", sent), 0.0, &f.stderr);
        let done = must(&f, "info: post-start exited: pid=");
        assert_eq!(field(done, "status"), Some("exit:0"), "{done}");
        assert!(took(done) >= 1.0, "the hook's 1 s: {done}");
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
    let timing = ["--drain", "1s", "--grace-period", "10s"];
    for (hook, says) in [
        (exits.as_str(), "status=exit:3"),
        ("/nonexistent/warm-up", "no such file"),
        (killed.as_str(), "status=signal:SIGKILL"),
    ] {
        let _ = std::fs::remove_file(s.path("term"));
        let _ = std::fs::remove_file(s.path("pre-stop"));
        let hooks = ["--post-start", hook, "--pre-stop", &pre_stop];
        let f = run_app(&s, &[hooks, timing].concat());
        assert_eq!(f.code, Some(124), "{hook}: {f}");
        let failed = must(&f, "error: post-start");
        assert!(failed.contains(says), "{failed:?} lacks {says:?}");
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
        assert!(s.stamp("pre-stop").is_some(), "{hook}: no pre-stop\n{f}");
        let term = line_with(&f.stderr, "info: forwarded: signal=SIGTERM").and_then(line_t);
        assert_on_time("TERM after the drain", term, 1.0, &f.stderr);
        if let Some(failed_at) = s.stamp("failed") {
            let term_at = s.stamp("term").expect("the app got TERM");
            assert!(term_at - failed_at >= 1.0, "{hook}: TERM in the drain");
        }
    }
}

/// If the app exits while the post-start hook runs, the hook is a leftover:
/// it gets the stop signal and, without a grace period, SIGKILL at once.
#[test]
fn a_post_start_still_running_when_the_app_exits_is_a_leftover() {
    for mode in modes() {
        let s = Scratch::new("post-start-leftover");
        let hook = app(&s, "hook", "echo $$ > hook-pid\nexec sleep 1000");
        let body = "while [ ! -s hook-pid ]; do sleep 0.05; done\nexit 6";
        let f = start_app(mode, &s, &["--post-start", &hook], body).wait(FINISH);
        assert_eq!(f.code, Some(6), "{mode:?}: the app's own code\n{f}");
        let hook_pid = s.pid("hook-pid");
        let gone = mode == Mode::Pid1 || wait_until(SOON, || !alive(hook_pid));
        assert!(gone, "{mode:?}: the hook survived");
        let told = must(&f, "signalled leftovers");
        let named = mode == Mode::Pid1 || pids_field(told).contains(&hook_pid);
        assert!(named, "{told}");
    }
}

// ------------------------------------------------------------- post-stop --

/// The post-stop hook runs once the app and all it left are gone, as PID 1
/// and not: after the app's own exit (a command, which finds the app's
/// leftover dead) and after a stop (an HTTP request, from
/// `USHER_POST_STOP`, after the app's end); its failure (exit 1, HTTP 500)
/// is a warning, and usher exits with the app's code.
#[test]
fn post_stop_runs_once_all_is_gone_and_its_failure_keeps_the_app_code() {
    let server = Server::start();
    for mode in modes() {
        let s = Scratch::new("post-stop");
        let body = "kill -0 $(cat left) 2>/dev/null && rec alive\nrec post-stop\nexit 1";
        let hook = app(&s, "hook", body);
        let body = "sleep 1000 & echo $! > left\nrec app-end\nexit 3";
        let f = start_app(mode, &s, &["--post-stop", &hook], body).wait(FINISH);
        assert_eq!(f.code, Some(3), "{mode:?}: the app's code\n{f}");
        let failed = must(&f, "warn: post-stop failed");
        assert_eq!(field(failed, "status"), Some("exit:1"), "{failed}");
        let (end, ran, alive) = (s.stamp("app-end"), s.stamp("post-stop"), s.stamp("alive"));
        assert!(end.is_some() && end < ran && alive.is_none(), "{f}");

        let body = TRAPS_TERM.replace("exit 0", "exit 7");
        let path = format!("/s/500?{mode:?}");
        let url = format!("POST {}", server.url(&path));
        let r = start_app_with(mode, &s, &[], &body, |c| c.env("USHER_POST_STOP", &url));
        let f = stop(r, &s).1;
        assert_eq!(f.code, Some(7), "{mode:?}: the app's code\n{f}");
        let failed = must(&f, "warn: post-stop failed");
        assert_eq!(field(failed, "http"), Some("500"), "{failed}");
        let seen = server.seen().pop().expect("the post-stop request");
        assert_eq!(seen.line(), ("POST", path.as_str()));
        let after = s.stamp("term").is_some_and(|t| t < seen.at);
        assert!(after, "after the app's end: {seen:?}");
    }
}

/// A post-stop hook that hangs is cut, with its process group, at its bound
/// from the stop: the deadline (grace period 2 s); the stop reserve when
/// the deadline has passed (an app ignoring TERM is killed at 2 s, then
/// 1 s); 5 s without a grace period. usher exits with the app's code.
#[test]
fn a_hanging_post_stop_is_cut_at_the_deadline_or_its_bound() {
    let s = Scratch::new("post-stop-hangs");
    let hook = app(&s, "hook", "echo $$ > hook-pid\nexec sleep 60");
    let ignores = &TRAPS_TERM.replace("'rec term; exit 0'", "''");
    let grace: &[&str] = &["--grace-period", "2s"];
    for (flags, body, due, code) in [
        (grace, TRAPS_TERM, 2.0, 0),
        (grace, ignores, 3.0, 137),
        (&[], TRAPS_TERM, 5.0, 0),
    ] {
        let _ = std::fs::remove_file(s.path("ready"));
        let flags = [flags, &["--post-stop", &hook]].concat();
        let (sent, f) = stop(start_app(Mode::Plain, &s, &flags, body), &s);
        let took = sent.elapsed();
        assert_eq!(f.code, Some(code), "{f}");
        let cut = must(&f, "warn: post-stop cut short");
        assert_on_time("the cut", line_t(cut), due, &f.stderr);
        assert!((due..due + SLACK).contains(&took), "took {took:.3}s");
        let hook = s.pid("hook-pid");
        assert!(wait_until(SOON, || !alive(hook)), "the hook outlived usher");
    }
}

// -------------------------------------------------------------------- HTTP --

/// GET with a query as the post-start hook, POST as the pre-stop hook: what
/// reaches the server (with `--http-header`'s), header by header, and when.
#[test]
fn http_hooks_send_the_method_path_query_and_headers_and_wait_for_the_answer() {
    let server = Server::start();
    let s = Scratch::new("http-hooks");
    let post_start = server.url("/slow?warm=1&x=%20");
    let pre_stop = format!("POST {}", server.url("/s/204?from=usher"));
    let hooks = ["--post-start", &post_start, "--pre-stop", &pre_stop];
    let more = ["--drain", "500ms", "--grace-period", "10s", "--http-header"];
    let flags = [&hooks[..], &more, &["X-Token:  a:b "]].concat();
    let r = start_app(Mode::Plain, &s, &flags, TRAPS_TERM).ready(&s, "ready");
    assert!(wait_until(SOON, || server.seen().len() == 1), "no GET");
    std::thread::sleep(Duration::from_millis(1500)); // the slow answer
    let sent = r.signal(TERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(0), "{f}");
    let seen = server.seen();
    assert_eq!(seen.len(), 2, "{seen:?}");
    let (get, post) = (&seen[0], &seen[1]);
    assert_eq!(get.line(), ("GET", "/slow?warm=1&x=%20"));
    assert_eq!(post.line(), ("POST", "/s/204?from=usher"));
    let host = format!("127.0.0.1:{}", server.port);
    for r in &seen {
        assert_eq!(r.header("Host"), Some(host.as_str()), "{r:?}");
        assert_eq!(r.header("Connection"), Some("close"), "{r:?}");
        let agent = r.header("User-Agent").unwrap_or_default();
        assert!(agent.starts_with("usher/"), "{r:?}");
        assert_eq!(r.header("X-Token"), Some("a:b"), "{r:?}");
    }
    assert_eq!(get.header("Content-Length"), None, "GET has no body");
    assert_eq!(post.header("Content-Length"), Some("0"), "an empty body");
    assert!(post.at - sent.epoch < SLACK, "pre-stop not at once");
    let answered = must(&f, "info: post-start answered");
    assert_eq!(field(answered, "http"), Some("200"), "{answered}");
    assert!(took(answered) >= 1.0, "waited for the answer: {answered}");
    let answered = must(&f, "info: pre-stop answered");
    assert_eq!(field(answered, "http"), Some("204"), "{answered}");
    let term = s.since("term", sent);
    assert_on_time("TERM after the answer and drain", term, 0.5, &f.stderr);
}

/// Nothing listens: the refused connection is tried again for the 2 s
/// connect bound, then the post-start hook fails.
#[test]
fn a_refused_connection_fails_the_post_start_after_the_connect_bound() {
    let s = Scratch::new("http-refused");
    let url = format!("http://127.0.0.1:{}/ready", free_port());
    let f = run_app(&s, &["--post-start", &url]);
    assert_eq!(f.code, Some(124), "{f}");
    let failed = must(&f, "error: post-start failed");
    assert!(failed.contains("Connection refused"), "{failed}");
    let retried = (1.5..2.0 + SLACK).contains(&took(failed));
    assert!(retried, "retried for the 2 s bound: {failed}");
}

/// A server that accepts and never answers: the post-start hook fails at
/// the 10 s response bound; as a pre-stop hook it is cut at the reserve.
#[test]
fn a_server_that_never_answers_never_stalls_usher() {
    let server = Server::start();
    let s = Scratch::new("http-never-post");
    let started = Instant::now();
    let f = run_app(&s, &["--post-start", &server.url("/never")]);
    assert_eq!(f.code, Some(124), "{f}");
    let failed = must(&f, "error: post-start failed");
    assert!(failed.contains("no answer within 10s"), "{failed}");
    let within = Duration::from_secs_f64(10.0 + SLACK * 2.0);
    assert!(started.elapsed() < within, "{f}");

    let s = Scratch::new("http-never-pre");
    let hook = format!("POST {}", server.url("/never"));
    let flags = ["--pre-stop", &hook, "--grace-period", "3s"];
    let (sent, f) = stop(start_app(Mode::Plain, &s, &flags, TRAPS_TERM), &s);
    assert_eq!(f.code, Some(0), "{f}");
    let term = s.since("term", sent);
    assert_on_time("TERM at the 1.5 s reserve point", term, 1.5, &f.stderr);
    must(&f, "warn: pre-stop cut short");
}

/// A bad URL is a usage error naming the flag (the table of every bad URL
/// is in src/hook.rs's unit tests): exit 2, one line, nothing run.
#[test]
fn a_bad_hook_url_is_a_usage_error() {
    let s = Scratch::new("http-bad");
    let marker = s.path("ran");
    let touch = ["--", "touch", marker.to_str().unwrap()];
    #[rustfmt::skip]
    let cases = [
        ("--post-start", "https://127.0.0.1/", "https is not supported"),
        ("--pre-stop", "GET ftp://127.0.0.1/", "must start with http://"),
        ("--pre-stop", "http://:8080/", "no host"),
        ("--post-start", "http://127.0.0.1:99999/", "from 1 to 65535"),
        ("--post-stop", "POST https://127.0.0.1/", "https is not supported"),
    ];
    for (flag, value, says) in cases {
        let f = run(Mode::Plain, &[&[flag, value][..], &touch].concat());
        assert_eq!(f.code, Some(2), "{flag} {value}: {f}");
        let l = lines(&f.stderr);
        assert_eq!(l.len(), 1, "{f}");
        assert!(l[0].contains(flag) && l[0].contains(says), "{:?}", l[0]);
        assert!(!marker.exists(), "nothing runs after a usage error");
    }
}

// ---------------------------------------------------------- usher --check --

/// Asserts that `r` exited `code` having said one thing: an error with `says`.
#[track_caller]
fn assert_one_error(r: &Ran, code: i32, says: &str) {
    let one = r.code == Some(code) && lines(&r.stderr).len() == 1;
    let said = r.stderr.starts_with("usher: error: ") && r.stderr.contains(says);
    assert!(one && said, "exit {code}, {says:?}: {r:?}");
}

/// `usher --check URL`: 200-399 exit 0 and say nothing; 4xx, 5xx, a refused
/// connection and a server that never answers (cut at the 2 s default
/// bound, or at `--check-timeout`) exit 1 with one line saying why.
#[test]
fn check_exits_0_for_200_to_399_else_1_with_one_line_saying_why() {
    let server = Server::start();
    let status = |code: u16| server.url(&format!("/s/{code}"));
    for url in [200, 204, 302, 399].map(status) {
        let r = usher_ran(&["--check", &url], &[]);
        let quiet = r.stdout.is_empty() && r.stderr.is_empty();
        assert!(r.ok() && quiet, "{r:?}");
    }
    let [e404, e500, e503] = [404, 500, 503].map(status);
    let (never, refused) = (server.url("/never"), free_port().to_string());
    let refused = format!("http://127.0.0.1:{refused}/");
    #[rustfmt::skip]
    let failing: [(&[&str], &str, f64); 6] = [
        (&[&e404], "answered 404", 0.0),
        (&[&e500], "answered 500", 0.0),
        (&[&e503], "answered 503", 0.0),
        (&[&refused], "cannot connect: Connection refused", 0.0),
        (&[&never], "no answer within 2s", 2.0),
        (&["--check-timeout", "500ms", &never], "no answer within 500ms", 0.5),
    ];
    for (args, says, due) in failing {
        let r = usher_ran(&[&["--check"], args].concat(), &[]);
        let url = args[args.len() - 1];
        assert_one_error(&r, 1, &format!("check failed: GET {url}: {says}"));
        let took = r.took.as_secs_f64();
        assert!((due..due + SLACK).contains(&took), "{took:.3}s: {r:?}");
    }
}

/// `--check "POST URL"` makes a POST; `--http-header` (repeatable, a `Host`
/// one replacing usher's) and `USHER_HTTP_HEADERS` (one header per line)
/// reach the server as written; a flag wins over the variable.
#[test]
fn check_sends_the_method_and_the_headers() {
    let server = Server::start();
    let headers = ["X-Token: abc", "Authorization: a:b c", "Host: svc"];
    let flags = headers.map(|h| ["--http-header", h]).concat();
    let post = format!("POST {}", server.url("/s/201?q=1"));
    assert!(usher_ran(&[&["--check"], &flags[..], &[&post]].concat(), &[]).ok());
    let vars = [("USHER_HTTP_HEADERS", "X-One: 1\r\n  X-Two:  two words \n")];
    assert!(usher_ran(&["--check", &server.url("/var")], &vars).ok());
    let flag = ["--check", "--http-header=X-Flag:1", &server.url("/f")];
    assert!(usher_ran(&flag, &vars).ok());
    let seen = server.seen();
    let [post, v, f] = &seen[..] else {
        panic!("{seen:?}")
    };
    assert_eq!((post.line(), v.line().0), (("POST", "/s/201?q=1"), "GET"));
    for (name, value) in headers.map(|h| h.split_once(": ").unwrap()) {
        assert_eq!(post.header(name), Some(value), "{post:?}");
    }
    assert_eq!(post.headers.iter().filter(|h| h.0 == "Host").count(), 1);
    let got = [v.header("X-One"), v.header("X-Two"), f.header("X-One")];
    assert_eq!(got, [Some("1"), Some("two words"), None], "{seen:?}");
    assert_eq!(f.header("X-Flag"), Some("1"), "{f:?}");
}

/// Every form `--check` refuses is a usage error: exit 2, one line saying
/// what is wrong, and no request made.
#[test]
fn check_refuses_bad_forms_with_exit_2_and_sends_nothing() {
    let server = Server::start();
    let url = server.url("/s/200");
    let url = url.as_str();
    let header = |h| vec!["--check", "--http-header", h, url];
    let (no, var): (&[_], &[_]) = (&[], &[("USHER_HTTP_HEADERS", "X-Ok: 1\nX: a\rY: b")]);
    #[rustfmt::skip]
    let cases = [
        (vec!["--check"], no, "--check needs a URL"),
        (vec!["--check", "https://127.0.0.1/"], no, "https is not supported"),
        (vec!["--check", "http//127.0.0.1/"], no, "must start with http://"),
        (vec!["--check", "get http://127.0.0.1/"], no, "method must be upper-case"),
        (vec!["--check", "http://127.0.0.1:99999/"], no, "from 1 to 65535"),
        (vec!["--check", "http://127.0.0.1:x/"], no, "from 1 to 65535"),
        (header("X-Token abc"), no, "is not Name: value"),
        (header(": abc"), no, "the header name must be"),
        (header("X: a\r\nY: b"), no, "cannot hold a line break"),
        (vec!["--check", url], var, "USHER_HTTP_HEADERS: \"X: a\\rY: b\": a header value"),
        (vec!["--ready", url], no, "--ready goes with --check URL"),
        (vec!["--check-timeout", "1s", "true"], no, "--check-timeout goes with --check"),
        (vec!["--check", "POST", url], no, "takes one URL and nothing after it"),
        (vec!["--check", url, "extra"], no, "takes one URL and nothing after it"),
    ];
    for (args, env, says) in cases {
        assert_one_error(&usher_ran(&args, env), 2, says);
    }
    assert!(server.seen().is_empty(), "{:?}", server.seen());
}

/// `usher --check --ready URL`, run by the app itself (so in usher's PID
/// namespace) over and over: 0 until usher begins its shutdown, then 1 for
/// the whole drain, saying so, while a plain `--check` stays 0. usher is
/// PID 1 of a fresh namespace, or (found by the scan of every process) an
/// usher that is not PID 1, run by another usher as PID 1. Each in a PID
/// namespace of its own, so no other usher of this host — another test's,
/// another project's, stopping at the same time — can be seen.
#[test]
fn check_ready_fails_once_usher_began_its_shutdown() {
    needs_namespaces!();
    let server = Server::start();
    let (c, url) = (format!("'{}' --check", usher()), server.url("/"));
    let checks = format!("t=$(date +%s.%N); {c} --ready {url} 2>>why; r=$?; {c} {url}");
    let report = "p=$?; echo $t $r $p $(date +%s.%N) >> checks";
    let body = TRAPS_TERM.replace("sleep 0.1", &format!("{checks}; {report}"));
    for nested in [false, true] {
        let s = Scratch::new("ready");
        let a = app(&s, "app", &body);
        let outer: &[&str] = if nested { &["--", usher(), "-s"] } else { &[] };
        let args = [outer, &["--drain", "2s", "--", &a]].concat();
        let r = start(Mode::Pid1, &args).ready(&s, "ready");
        std::thread::sleep(Duration::from_secs(1));
        let mut stopping = r.usher_pid();
        if nested {
            stopping = child_named(stopping, "usher");
        }
        let sent = Sent::now();
        kill(stopping, TERM).expect("kill usher");
        let f = r.wait(FINISH);
        assert_eq!(f.code, Some(0), "{f}");
        let (term, log) = (s.stamp("term").expect("TERM"), s.read("checks"));
        let row = |l: &str| l.split(' ').flat_map(str::parse).collect::<Vec<f64>>();
        let checks: Vec<_> = log.lines().map(row).filter(|c| c.len() == 4).collect();
        // (start, --ready's code, plain --check's code, end)
        let before: Vec<_> = checks.iter().filter(|c| c[3] < sent.epoch).collect();
        let drain = |c: &&Vec<f64>| c[0] > sent.epoch + 0.5 && c[3] < term;
        let during: Vec<_> = checks.iter().filter(drain).collect();
        let all = |v: &[&Vec<f64>], r| !v.is_empty() && v.iter().all(|c| c[1..3] == [r, 0.0]);
        let what = format!("nested={nested}, stop at {}:\n{log}", sent.epoch);
        assert!(all(&before, 0.0) && all(&during, 1.0), "{what}");
        let pid = if nested { first_child_pid() } else { 1 };
        let says = format!("usher: error: not ready: usher (pid {pid}) began its shutdown");
        // Each failed --ready said so, the last maybe before its report line
        // (the TERM to the app's group can end the next check: the shell
        // then says "Terminated").
        let (why, failed) = (s.read("why"), checks.iter().filter(|c| c[1] == 1.0).count());
        let said: Vec<_> = why.lines().filter(|l| *l != "Terminated").collect();
        let each = said.iter().all(|l| *l == says) && (failed..=failed + 1).contains(&said.len());
        assert!(each, "{what}\n{why}");
    }
}

// ------------------------------------------------------------ the reserve --

/// A drain that would end inside the stop reserve is shortened to end at
/// the reserve point, with a warning at start-up: 1.9 s in 2 s is 1 s.
#[test]
fn a_drain_that_does_not_fit_before_the_reserve_is_shortened_with_a_warning() {
    let s = Scratch::new("drain-cut");
    let flags = ["--drain", "1900ms", "--grace-period", "2s"];
    let r = start_app(Mode::Plain, &s, &flags, TRAPS_TERM).ready(&s, "ready");
    let sent = r.signal(TERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(0), "{f}");
    let warn = must(&f, "warn: the drain would end after the stop reserve");
    let cut = (field(warn, "drain"), field(warn, "to"));
    assert_eq!(cut, (Some("1.900s"), Some("1s")), "{warn}");
    let term = s.since("term", sent);
    assert_on_time("TERM at the reserve point", term, 1.0, &f.stderr);
}

// ------------------------------------------------------------ hook output --

/// What a hook prints (pre-stop, post-stop) reaches usher's own stdout and
/// stderr: the container log.
#[test]
fn hook_output_reaches_the_container_log() {
    let s = Scratch::new("hook-output");
    let say = |hook: &str| app(&s, hook, &format!("echo {hook}-out\necho {hook}-err >&2"));
    let (pre, post) = (say("pre"), say("post"));
    let out = std::fs::File::create(s.path("stdout")).expect("stdout file");
    let flags = ["--pre-stop", &pre, "--post-stop", &post];
    let r = start_app_with(Mode::Plain, &s, &flags, TRAPS_TERM, |c| c.stdout(out));
    let f = stop(r, &s).1;
    assert_eq!(f.code, Some(0), "{f}");
    for said in ["pre", "post"] {
        let stdout = s.read("stdout");
        let out = stdout.contains(&format!("{said}-out"));
        assert!(out, "stdout: {stdout:?}");
        assert!(f.stderr.contains(&format!("{said}-err")), "{f}");
    }
}
