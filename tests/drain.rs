//! The adaptive drain (`--drain MIN..MAX`) end to end: a real HTTP server as usher's app, traffic from this test to 127.0.0.1, as PID 1 and not.
//!
//! The app, a threaded Python HTTP/1.1 server (keep-alive), stamps when it
//! got SIGTERM. Bounds count from the test's clock read *before* their cause
//! (the stop, the last request): SIGTERM never comes before MIN nor before
//! [`FLOOR`] of silence, exactly; at most `SLACK` later. Fresh connections
//! are closed by the server (TIME_WAIT shows them to every look) or by the
//! client (gone at once: only the kernel's destroy events tell them).

mod common;
use common::*;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

/// The shortest silence usher takes for the end of the traffic.
const FLOOR: f64 = 0.3;

const SERVER: &str = r#"import http.server as h, os, signal, time
def term(*_):
    os.write(os.open("term", os.O_WRONLY | os.O_CREAT, 0o644), b"%.6f\n" % time.time())
    os._exit(0)
signal.signal(signal.SIGTERM, term)
class H(h.BaseHTTPRequestHandler):
    protocol_version, disable_nagle_algorithm = "HTTP/1.1", True
    def do_GET(self):
        self.send_response(200); self.send_header("Content-Length", "3"); self.end_headers()
        self.wfile.write(b"ok\n")
    def log_message(self, *_): pass
s = h.ThreadingHTTPServer(("127.0.0.1", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
"#;

/// How a load generator's connections end.
#[derive(Clone, Copy, PartialEq, Eq)]
enum Conns {
    /// One per request, `Connection: close`: the server closes first.
    ServerCloses,
    /// One per request, closed by the client once it has the answer.
    ClientCloses,
    /// One kept-alive connection for every request.
    Pooled,
}
use Conns::*;

/// GETs a second, for how many seconds, how.
type Traffic = (u32, f64, Conns);
const DRAIN: [&str; 4] = ["--drain", "0s..10s", "--grace-period", "15s"];

/// What a load generator did: when each request was sent (epoch), what
/// stopped it early, its kept-alive connection (left open, idle).
struct Load {
    sent: Vec<f64>,
    failed: Option<String>,
    conn: Option<TcpStream>,
}

fn load(port: u16, (per_sec, secs, how): Traffic) -> Load {
    let gap = Duration::from_secs_f64(1.0 / f64::from(per_sec));
    let end = Instant::now() + Duration::from_secs_f64(secs);
    let (sent, failed, conn) = (Vec::new(), None, None);
    let mut l = Load { sent, failed, conn };
    while Instant::now() < end && l.failed.is_none() {
        let (next, at) = (Instant::now() + gap, epoch());
        match get(port, &mut l.conn, how) {
            Ok(()) => l.sent.push(at),
            Err(e) => l.failed = Some(format!("request {}: {e}", l.sent.len() + 1)),
        }
        std::thread::sleep(next.saturating_duration_since(Instant::now()));
    }
    l
}

/// One GET, on `conn` when pooled (opened if need be, kept there).
fn get(port: u16, conn: &mut Option<TcpStream>, how: Conns) -> std::io::Result<()> {
    let mut c = match conn.take() {
        Some(c) => c,
        None => TcpStream::connect(("127.0.0.1", port))?,
    };
    c.set_read_timeout(Some(SOON))?;
    c.set_nodelay(true)?;
    let close = if how == ServerCloses {
        "Connection: close\r\n"
    } else {
        ""
    };
    c.write_all(format!("GET / HTTP/1.1\r\nHost: t\r\n{close}\r\n").as_bytes())?;
    let (mut got, mut buf) = (Vec::new(), [0u8; 512]);
    while !(how != ServerCloses && got.ends_with(b"\r\n\r\nok\n")) {
        match c.read(&mut buf)? {
            0 => break,
            n => got.extend_from_slice(&buf[..n]),
        }
    }
    if !got.ends_with(b"\r\n\r\nok\n") {
        return Err(std::io::Error::other("a wrong or cut answer"));
    }
    *conn = (how == Pooled).then_some(c);
    Ok(())
}

/// A drained shutdown: when the stop signal was sent, the traffic, when the
/// server got SIGTERM (epoch), usher's log.
struct Run {
    stop: Sent,
    loads: Vec<Load>,
    term: f64,
    log: String,
}

/// [`modes`], or none (skipped) without python3 for the server.
fn server_modes() -> Vec<Mode> {
    if which("python3").is_none() {
        skipped("no python3 for the HTTP server app");
        return Vec::new();
    }
    modes()
}

/// The server under usher with `flags` and `env`; the `traffic` starts,
/// SIGTERM follows 0.5 s later (at once without).
fn shutdown(mode: Mode, flags: &[&str], env: &[(&str, &str)], traffic: &[Traffic]) -> Run {
    let s = Scratch::new("drain");
    std::fs::write(s.path("server.py"), SERVER).expect("write server.py");
    let r = start_app_with(mode, &s, flags, "exec python3 server.py >port", |c| {
        c.envs(env.iter().copied())
    });
    let r = r.ready(&s, "port");
    let port: u16 = s.read("port").trim().parse().expect("the server's port");
    let load = |&t: &Traffic| std::thread::spawn(move || load(port, t));
    let threads: Vec<_> = traffic.iter().map(load).collect();
    let lead = if traffic.is_empty() { 0 } else { 500 };
    std::thread::sleep(Duration::from_millis(lead));
    let stop = r.signal(libc::SIGTERM);
    let f = r.wait(FINISH);
    assert_eq!(f.code, Some(0), "{f}");
    let loads = Vec::from_iter(threads.into_iter().map(|t| t.join().expect("load")));
    let term = s.stamp("term").unwrap_or_else(|| panic!("no SIGTERM\n{f}"));
    let log = f.stderr;
    Run {
        stop,
        loads,
        term,
        log,
    }
}

/// The drain's last line, which must give `reason`.
#[track_caller]
fn drain_over<'a>(log: &'a str, reason: &str) -> &'a str {
    let want = format!("info: drain over: reason={reason}");
    line_with(log, &want).unwrap_or_else(|| panic!("no {want:?} in\n{log}"))
}

/// Asserts that `busy` ran its course into the drain, and that SIGTERM
/// came at least FLOOR after its last request and at most SLACK later.
#[track_caller]
fn forwarded_after(run: &Run, busy: &Load) {
    let (n, log, last) = (busy.sent.len(), &run.log, busy.sent.last());
    let ran = busy.failed.is_none() && n >= 20 && last > Some(&(run.stop.epoch + 1.0));
    assert!(ran, "{n} sent, {:?}\n{log}", busy.failed);
    let after = last.map(|l| run.term - l);
    assert_on_time("SIGTERM after the last request", after, FLOOR, log);
}

const MIN_1S: [&str; 4] = ["--drain", "1s..5s", "--grace-period", "8s"];

#[test]
fn without_a_listener_the_drain_ends_at_min() {
    for mode in modes() {
        let s = Scratch::new("sleeper");
        let body = "trap 'rec term; exit 0' TERM\nrec ready\nwhile :; do sleep 0.1; done";
        let r = start_app(mode, &s, &MIN_1S, body).ready(&s, "ready");
        let stop = r.signal(libc::SIGTERM);
        let f = r.wait(FINISH);
        assert_on_time("SIGTERM", s.since("term", stop), 1.0, &f.stderr);
        drain_over(&f.stderr, "no-listener");
    }
}

#[test]
fn a_quiet_server_holds_to_min_by_flag_or_variable() {
    let var = [("USHER_DRAIN", "1s..5s"), ("USHER_GRACE_PERIOD", "8s")];
    let modes = server_modes();
    let by_flag = modes.iter().map(|&m| (m, &MIN_1S[..], &[][..]));
    let by_var = modes.iter().take(1).map(|&m| (m, &[][..], &var[..])); // Plain
    for (mode, flags, env) in by_flag.chain(by_var) {
        let run = shutdown(mode, flags, env, &[]);
        let log = &run.log;
        assert_on_time("SIGTERM", Some(run.term - run.stop.epoch), 1.0, log);
        let start = "stop received: signal=SIGTERM drain=1s..5s grace=8s";
        assert!(log.contains(start), "{log}");
        let end = drain_over(log, "quiet");
        assert_eq!(field(end, "arrivals"), Some("0"), "{log}");
    }
}

/// Busy traffic, 30 GETs a second from 0.5 s before the stop to 2 s into a
/// 0s..10s drain: SIGTERM goes out soon after it stops, never before.
fn traffic_that_stops(how: Conns) {
    for mode in server_modes() {
        let run = shutdown(mode, &DRAIN, &[], &[(30, 2.5, how)]);
        forwarded_after(&run, &run.loads[0]);
        drain_over(&run.log, "quiet");
    }
}

#[test]
fn new_connections_that_stop_end_the_drain() {
    traffic_that_stops(ServerCloses);
    traffic_that_stops(ClientCloses);
}

#[test]
fn a_kept_alive_connection_that_goes_idle_ends_the_drain() {
    traffic_that_stops(Pooled);
}

#[test]
fn steady_traffic_holds_the_drain_to_max() {
    for mode in server_modes() {
        let flags = ["--drain", "0s..3s", "--grace-period", "8s"];
        let run = shutdown(mode, &flags, &[], &[(30, 3.0 + SLACK + 2.0, ClientCloses)]);
        let log = &run.log;
        assert_on_time("SIGTERM", Some(run.term - run.stop.epoch), 3.0, log);
        let rate = field(drain_over(log, "max"), "rate").and_then(|r| r.strip_suffix("/s"));
        let rate: f64 = rate.and_then(|r| r.parse().ok()).unwrap_or(0.0);
        assert!(rate >= 5.0, "30 requests a second, rate {rate}\n{log}");
        let late = run.loads[0].sent.iter().any(|&t| t > run.term - 0.5);
        assert!(late, "the traffic paused\n{log}");
    }
}

#[test]
fn a_prober_once_a_second_does_not_hold_the_drain() {
    for mode in server_modes() {
        let run = shutdown(
            mode,
            &DRAIN,
            &[],
            &[(30, 2.5, ServerCloses), (1, 12.0, ClientCloses)],
        );
        forwarded_after(&run, &run.loads[0]);
        drain_over(&run.log, "quiet");
        let in_drain = |&&t: &&f64| t > run.stop.epoch && t < run.term;
        let probes = run.loads[1].sent.iter().filter(in_drain).count();
        assert!(probes >= 2, "{probes} probes in the drain\n{}", run.log);
    }
}
