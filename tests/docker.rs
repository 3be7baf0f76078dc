//! End to end in real containers: usher as PID 1 under a Docker engine.
//!
//! `tests/docker/setup.sh` builds a static usher and FROM-scratch images
//! (static busybox, usher, the apps of `tests/docker/apps`; and one with
//! only usher and a static C app) once per run of this test binary. Every
//! container and image carries the labels `usher-test=1` and
//! `usher-test.run=<this run>` and is removed by id: containers when their
//! test ends (a drop guard, also on failure), images when the test binary
//! exits (an `atexit` handler). Where no Docker engine answers, each test
//! prints one `SKIPPED` line and passes, unless
//! `USHERTEST_REQUIRE_DOCKER=1` (set in CI) makes that a failure.
//!
//! Timing: lower bounds are exact (usher must not act early); upper bounds
//! are generous, for a loaded two-core machine. Times in container logs come
//! from `docker logs --timestamps` (the engine's clock, which is this host's)
//! and are compared with the host's clock just before `docker stop`.

mod common;
use common::*;

use std::collections::HashMap;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// `docker ARGS...`, for at most `limit`; panics if it cannot run or hangs.
fn docker(args: &[&str], limit: Duration) -> Ran {
    run_bounded(Command::new("docker").args(args), limit)
}

/// `docker ARGS...` that must succeed; returns its trimmed stdout.
fn docker_ok(args: &[&str], limit: Duration) -> String {
    let out = docker(args, limit);
    assert!(out.ok(), "docker {args:?} failed: {out:?}");
    out.stdout.trim().to_string()
}

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

// ---------------------------------------------------------------------------
// The engine, the one-time setup, and cleanup

/// Whether a Docker engine answers, or why not (checked once).
fn engine() -> &'static Result<String, String> {
    static ENGINE: OnceLock<Result<String, String>> = OnceLock::new();
    ENGINE.get_or_init(|| {
        let mut cmd = Command::new("docker");
        cmd.args(["version", "--format", "{{.Server.Version}}"]);
        match try_run(&mut cmd, secs(30)) {
            Err(e) => Err(format!("no Docker engine answers ({e})")),
            Ok(out) if out.ok() && !out.stdout.trim().is_empty() => {
                Ok(out.stdout.trim().to_string())
            }
            Ok(out) => Err(format!(
                "no Docker engine answers (`docker version`: {})",
                out.stderr.lines().next().unwrap_or("no output").trim()
            )),
        }
    })
}

/// What setup.sh built.
struct Setup {
    run: String,
    work: PathBuf,
    images: HashMap<String, String>,
}

impl Setup {
    /// The id of the image called `name` in setup.sh.
    fn image(&self, name: &str) -> &str {
        self.images
            .get(name)
            .unwrap_or_else(|| panic!("setup.sh built no image {name:?}"))
    }

    /// The labels every container of this run carries.
    fn labels(&self) -> Vec<String> {
        vec![
            "--label".into(),
            "usher-test=1".into(),
            "--label".into(),
            format!("usher-test.run={}", self.run),
            "--label".into(),
            format!("usher-test.pid={}", std::process::id()),
            "--label".into(),
            format!("usher-test.host={}", hostname()),
        ]
    }
}

fn hostname() -> String {
    std::fs::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_string())
        .unwrap_or_default()
}

/// This run's id, set once setup starts (read by the exit handler).
static RUN: OnceLock<(String, PathBuf)> = OnceLock::new();
/// The images setup built, in the order to remove them (base last).
static IMAGES: Mutex<Vec<String>> = Mutex::new(Vec::new());

/// The engine's setup for this test binary, or None (after one printed line)
/// when no Docker engine answers. Panics when the engine answers but the
/// setup fails: then the tests must fail, not skip.
fn prepare() -> Option<&'static Setup> {
    if let Err(why) = engine() {
        if std::env::var_os("USHERTEST_REQUIRE_DOCKER").is_some_and(|v| v == "1") {
            panic!("USHERTEST_REQUIRE_DOCKER=1, but {why}");
        }
        // Straight to stderr, past the test harness's output capture, so the
        // skip is seen even when the test passes.
        skipped(why);
        return None;
    }
    static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();
    match SETUP.get_or_init(build_images) {
        Ok(setup) => Some(setup),
        Err(e) => panic!("Docker engine answers but the test setup failed:\n{e}"),
    }
}

fn build_images() -> Result<Setup, String> {
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let run = format!("{}-{:08x}", std::process::id(), nanos);
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let work = tmp.join(format!("docker-{run}"));
    RUN.set((run.clone(), work.clone())).ok();
    // SAFETY: registers a plain function that takes no arguments; it runs
    // when the test binary exits (after all tests, also when some failed).
    unsafe { libc::atexit(remove_this_run) };

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker/setup.sh");
    let static_dir = tmp
        .parent()
        .map(|t| t.join("docker-static"))
        .unwrap_or_else(|| tmp.join("docker-static"));
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(&run)
        .arg(&work)
        .env("USHER_STATIC_TARGET_DIR", &static_dir)
        .env_remove("CARGO_TARGET_DIR");
    if let Ok(cargo) = std::env::var("CARGO") {
        cmd.env("CARGO", cargo);
    }
    // A cold static build plus seven image builds; generous for a slow machine.
    let out = try_run(&mut cmd, secs(600))?;
    eprintln!("setup took {:?}", out.took);
    if !out.ok() {
        return Err(format!(
            "{} exited {:?}\n--- stderr ---\n{}",
            script.display(),
            out.code,
            out.stderr
        ));
    }
    let mut images = HashMap::new();
    let mut order = Vec::new();
    for line in out.stdout.lines() {
        if let Some((name, id)) = line.trim().split_once('=') {
            if id.starts_with("sha256:") {
                images.insert(name.to_string(), id.to_string());
                order.push(id.to_string());
            }
        }
    }
    // Removal order: the images built FROM base first, base last.
    order.sort_by_key(|id| Some(id) == images.get("base"));
    *IMAGES.lock().unwrap_or_else(|e| e.into_inner()) = order;
    if images.len() < 7 {
        return Err(format!("setup.sh printed too few images:\n{}", out.stdout));
    }
    Ok(Setup { run, work, images })
}

/// At exit: removes this run's containers and images by id (those setup
/// reported, then anything else labelled with this run) and its work dir.
extern "C" fn remove_this_run() {
    let Some((run, work)) = RUN.get() else { return };
    let quiet = |args: &[&str]| try_run(Command::new("docker").args(args), secs(120)).ok();
    let label = format!("label=usher-test.run={run}");
    let listed = |args: &[&str]| -> Vec<String> {
        quiet(args)
            .map(|o| o.stdout.split_whitespace().map(String::from).collect())
            .unwrap_or_default()
    };
    let containers = listed(&["ps", "-aq", "--no-trunc", "--filter", &label]);
    if !containers.is_empty() {
        let mut args = vec!["rm", "-f", "-v"];
        args.extend(containers.iter().map(String::as_str));
        quiet(&args);
    }
    let mut images: Vec<String> = IMAGES
        .lock()
        .map(|v| v.clone())
        .unwrap_or_else(|e| e.into_inner().clone());
    for round in 0..3 {
        if round > 0 {
            images = listed(&["images", "-q", "--no-trunc", "--filter", &label]);
        }
        if images.is_empty() {
            break;
        }
        let mut args = vec!["rmi"];
        args.extend(images.iter().map(String::as_str));
        quiet(&args);
    }
    let _ = std::fs::remove_dir_all(work);
}

// ---------------------------------------------------------------------------
// Containers

/// A container of this run, removed (by id) when dropped.
struct Container {
    id: String,
}

impl Drop for Container {
    fn drop(&mut self) {
        // Never panics (this may run while a failed test unwinds); whatever
        // this misses, the exit handler's sweep by label removes.
        let _ = try_run(
            Command::new("docker").args(["rm", "-f", "-v", &self.id]),
            secs(60),
        );
    }
}

/// `docker run -d <labels> ARGS...`.
fn container(setup: &Setup, args: &[&str]) -> Container {
    let mut full: Vec<String> = vec!["run".into(), "-d".into()];
    full.extend(setup.labels());
    full.extend(args.iter().map(|s| s.to_string()));
    let full: Vec<&str> = full.iter().map(String::as_str).collect();
    Container {
        id: docker_ok(&full, secs(60)),
    }
}

/// `docker run <labels> ARGS...` in the foreground, with a cidfile so the
/// container is removed by id even if the run hangs. Returns the guard and
/// the docker client's result (its exit code is the container's).
fn run_attached(setup: &Setup, args: &[&str], limit: Duration) -> (Option<Container>, Ran) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let cidfile = setup.work.join(format!(
        "cid-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_file(&cidfile);
    let mut cmd = Command::new("docker");
    cmd.arg("run")
        .args(setup.labels())
        .arg("--cidfile")
        .arg(&cidfile)
        .args(args);
    let result = try_run(&mut cmd, limit);
    let container = std::fs::read_to_string(&cidfile)
        .ok()
        .map(|id| Container {
            id: id.trim().to_string(),
        })
        .filter(|c| !c.id.is_empty());
    let _ = std::fs::remove_file(&cidfile);
    (container, result.unwrap_or_else(|e| panic!("{e}")))
}

/// A line of `docker logs --timestamps`: seconds since the epoch, and text.
#[derive(Debug, Clone)]
struct Line {
    at: f64,
    text: String,
}

impl Container {
    /// stdout and stderr, merged in time order.
    fn logs(&self) -> Vec<Line> {
        timed_lines(&docker(&["logs", "--timestamps", &self.id], secs(30)))
    }

    fn logs_text(&self) -> String {
        self.logs()
            .iter()
            .map(|l| l.text.as_str())
            .collect::<Vec<_>>()
            .join("\n")
    }

    /// Waits up to `within` for a log line containing `needle`; returns it.
    fn wait_log(&self, needle: &str, within: Duration) -> Line {
        let mut found = None;
        poll(within, Duration::from_millis(100), || {
            found = self.logs().into_iter().find(|l| l.text.contains(needle));
            found.is_some()
        });
        found.unwrap_or_else(|| {
            let state = docker(&["inspect", "-f", "{{json .State}}", &self.id], secs(30));
            let top = docker(&["top", &self.id], secs(30));
            panic!(
                "no log line with {needle:?} within {within:?}; state: {}\nprocesses: {}{}\nlogs:\n{}",
                state.stdout.trim(),
                top.stdout,
                top.stderr,
                self.logs_text()
            )
        })
    }

    /// The first log line containing `needle`, if any.
    fn find_log(&self, needle: &str) -> Option<Line> {
        self.logs().into_iter().find(|l| l.text.contains(needle))
    }

    /// `docker wait`: the container's exit code once it has stopped.
    fn wait_code(&self, limit: Duration) -> i32 {
        let code = docker_ok(&["wait", &self.id], limit);
        code.parse()
            .unwrap_or_else(|_| panic!("docker wait printed {code:?}"))
    }

    /// `docker stop -t TIMEOUT`, waiting for it; returns when it was asked
    /// (seconds since the epoch, taken just before) and its result.
    fn stop(&self, timeout: u64) -> (Sent, Ran) {
        let t = timeout.to_string();
        let asked = Sent::now();
        let out = docker(&["stop", "-t", &t, &self.id], secs(timeout + 60));
        assert!(out.ok(), "docker stop failed: {out:?}");
        (asked, out)
    }

    /// `docker exec ID ARGS...`.
    fn exec(&self, args: &[&str]) -> Ran {
        let mut full = vec!["exec", self.id.as_str()];
        full.extend_from_slice(args);
        docker(&full, secs(30))
    }
}

/// Runs `check` on every case at once, each on its own thread (containers
/// take seconds to start and stop); a failing case fails the test.
fn each_at_once<T: Sync>(cases: &[T], check: impl Fn(&T) + Sync) {
    thread::scope(|sc| {
        let runs: Vec<_> = cases.iter().map(|c| sc.spawn(|| check(c))).collect();
        for r in runs {
            if let Err(e) = r.join() {
                std::panic::resume_unwind(e);
            }
        }
    });
}

/// `2024-11-23T19:40:01.123456789Z` (UTC, as docker prints it) to seconds
/// since the epoch.
fn parse_rfc3339(ts: &str) -> Option<f64> {
    let ts = ts.strip_suffix('Z')?;
    let (date, time) = ts.split_once('T')?;
    let mut d = date.split('-').map(|p| p.parse::<i64>().ok());
    let (y, m, day) = (d.next()??, d.next()??, d.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut t = hms.split(':').map(|p| p.parse::<i64>().ok());
    let (hh, mm, ss) = (t.next()??, t.next()??, t.next()??);
    let frac: f64 = format!("0.{frac}").parse().ok()?;
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + day - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Some((days * 86_400 + hh * 3600 + mm * 60 + ss) as f64 + frac)
}

/// The number after `key=` in `text` (e.g. `pid=7`).
fn number(text: &str, key: &str) -> Option<i64> {
    field(text, key)?.parse().ok()
}

// ---------------------------------------------------------------------------
// The tests

/// `usher FLAGS -- APP` as the container's entrypoint, started detached.
fn usher_container(s: &Setup, flags: &[&str], app: &str) -> Container {
    let mut args = vec!["--entrypoint", "/usher", s.image("usher")];
    args.extend(flags);
    args.extend(["--", app]);
    container(s, &args)
}

/// When `needle` was first logged, counted from `from`.
fn logged_after(c: &Container, needle: &str, from: Sent) -> Option<f64> {
    c.find_log(needle).map(|l| l.at - from.epoch)
}

/// A shell as PID 1 swallows docker stop's SIGTERM; usher in front delivers
/// it. Three containers, stopped together with `docker stop -t 5`:
/// - `bare`: ENTRYPOINT ["sh", "-c", "/app/trap-app; echo ..."]: sh stays
///   PID 1 with no TERM handler, so the app never hears of the stop; docker
///   waits the full 5s and SIGKILLs (exit 137).
/// - `usher-exec`: ENTRYPOINT ["/usher", "--", "sh", "-c", "/app/trap-app"]
///   (Dockerfile.example's exec form): the app gets TERM at once and the
///   container exits with the app's own code, 42.
/// - `usher-wrapped`: usher in front of bare's very shell command: the app
///   gets TERM at once too (group forwarding reaches past the shell); the
///   container exits 143, the code of the shell, which the same TERM ended.
#[test]
fn shell_as_pid1_swallows_term_and_usher_delivers_it() {
    let Some(s) = prepare() else { return };
    let bare = container(s, &[s.image("bare")]);
    let exec = container(s, &[s.image("usher-exec")]);
    let wrapped = container(s, &[s.image("usher-wrapped")]);
    for c in [&bare, &exec, &wrapped] {
        c.wait_log("trap-app: ready", secs(30));
    }
    let stops = thread::scope(|sc| {
        let stopping = [&bare, &exec, &wrapped].map(|c| sc.spawn(|| c.stop(5)));
        stopping.map(|h| h.join().unwrap())
    });

    // Without usher: docker's full timeout, then SIGKILL; the app never knew.
    let logs = bare.logs_text();
    let took = stops[0].1.took;
    eprintln!("bare: docker stop took {took:?}");
    assert!(
        took >= secs(5),
        "bare: docker stop took {took:?}, less than its 5s timeout\n{logs}"
    );
    assert_eq!(
        bare.wait_code(secs(30)),
        137,
        "bare: SIGKILLed at the timeout\n{logs}"
    );
    assert!(
        !logs.contains("got TERM"),
        "bare: the app must not have seen TERM:\n{logs}"
    );
    assert!(
        !logs.contains("trap-app exited"),
        "bare: the shell never got past the app:\n{logs}"
    );

    // With usher: TERM reaches the app at once, and docker stop returns
    // long before its 5s timeout.
    for (name, c, (asked, out), code) in [
        ("usher-exec", &exec, &stops[1], 42),
        ("usher-wrapped", &wrapped, &stops[2], 143),
    ] {
        let logs = c.logs_text();
        let delay = logged_after(c, "trap-app: got TERM", *asked);
        eprintln!(
            "{name}: TERM after {delay:?}s, docker stop took {:?}",
            out.took
        );
        assert_on_time(&format!("{name}: TERM"), delay, 0.0, &logs);
        let took = out.took;
        assert!(
            took < Duration::from_millis(4500),
            "{name}: docker stop took {took:?}\n{logs}"
        );
        assert_eq!(c.wait_code(secs(30)), code, "{name}: exit code\n{logs}");
        let stop = "usher: +0.000s info: stop received: signal=SIGTERM";
        assert!(logs.contains(stop), "{name}: usher logs the stop:\n{logs}");
    }
    let logs = wrapped.logs_text();
    assert!(
        logs.contains("status=signal:SIGTERM") && !logs.contains("trap-app exited"),
        "usher-wrapped: the shell itself was ended by the forwarded TERM:\n{logs}"
    );
}

/// `usher --drain 3s`, `docker stop -t 20`: the app keeps serving (its
/// heartbeat goes on, and `docker exec` reads fresh beats) for 3s, then gets
/// TERM; the container exits with the app's code, 0, long before 20s.
#[test]
fn drain_keeps_the_app_serving_then_forwards_term() {
    let Some(s) = prepare() else { return };
    let c = usher_container(s, &["--drain", "3s"], "/app/beat-app");
    c.wait_log("beat 3", secs(30));
    let read_beat = || -> Result<i64, String> {
        let out = c.exec(&["cat", "/tmp/beat"]);
        match out.stdout.trim().parse() {
            Ok(n) if out.ok() => Ok(n),
            _ => Err(format!("{out:?}")),
        }
    };
    let ((asked, out), (first, second)) = thread::scope(|sc| {
        let stopper = sc.spawn(|| c.stop(20));
        // While the drain runs (it cannot end before 3s), the app answers:
        // two reads started 0.5s and 1.2s into it, each on its own thread so
        // that a slow `docker exec` does not push the other one later.
        let read_at = |ms| {
            move || {
                thread::sleep(Duration::from_millis(ms));
                read_beat()
            }
        };
        let first = sc.spawn(read_at(500));
        let second = sc.spawn(read_at(1200));
        let reads = (first.join().unwrap(), second.join().unwrap());
        (stopper.join().unwrap(), reads)
    });
    let logs = c.logs();
    let text = c.logs_text();
    let delay = logged_after(&c, "beat-app: got TERM", asked);
    assert_on_time("TERM", delay, 3.0, &text);
    let term = asked.epoch + delay.unwrap();
    let in_drain = |l: &&Line| l.text.starts_with("beat ") && l.at >= asked.epoch && l.at < term;
    let beats: Vec<&Line> = logs.iter().filter(in_drain).collect();
    let last = beats.last().map(|l| l.at - asked.epoch).unwrap_or(0.0);
    eprintln!(
        "drain: TERM after {delay:?}s, {} beats in the drain, the last at {last:.3}s, \
         exec read {first:?} then {second:?}, docker stop took {:?}",
        beats.len(),
        out.took
    );
    assert!(
        beats.len() >= 5,
        "only {} heartbeats during the drain:\n{text}",
        beats.len()
    );
    assert!(
        last >= 2.0,
        "the last heartbeat came {last:.3}s into the drain:\n{text}"
    );
    match (&first, &second) {
        (Ok(a), Ok(b)) => assert!(b > a, "docker exec read beats {a} then {b}: not moving\n{text}"),
        _ => panic!("docker exec could not read the heartbeat during the drain ({first:?}, {second:?}):\n{text}"),
    }
    // docker stop itself adds its own round trips on a loaded machine.
    let took = out.took;
    assert!(
        took >= secs(3) && took < secs(12),
        "docker stop took {took:?}, for a 3s drain"
    );
    assert_eq!(c.wait_code(secs(30)), 0, "the app's own exit code:\n{text}");
    assert!(
        text.contains("stop received: signal=SIGTERM drain=3s")
            && text.contains("info: forwarded: signal=SIGTERM"),
        "usher's timeline:\n{text}"
    );
}

/// An app that ignores TERM, under `usher --grace-period 4s`, `docker stop
/// -t 30`: usher SIGKILLs it after 4s (not before), exits 137 long before
/// docker's 30s, and its log names the app's pid in the escalation line.
#[test]
fn grace_period_kills_an_app_ignoring_term_and_says_so() {
    let Some(s) = prepare() else { return };
    let c = usher_container(s, &["--grace-period", "4s"], "/app/stubborn-app");
    let ready = c.wait_log("stubborn-app: ready", secs(30));
    let pid = number(&ready.text, "pid").expect("the app prints its pid") as i32;
    let (asked, out) = c.stop(30);
    let text = c.logs_text();
    let took = out.took;
    eprintln!("grace: docker stop took {took:?}");
    assert!(
        took >= secs(4) && took < secs(15),
        "docker stop took {took:?}, for a 4s grace period"
    );
    assert_eq!(c.wait_code(secs(30)), 137, "{text}");
    assert!(
        text.contains("stubborn-app: ignoring TERM"),
        "the app got TERM first:\n{text}"
    );
    let kill = c.find_log("warn: grace period over, killing: signal=SIGKILL pids=");
    let kill = kill.unwrap_or_else(|| panic!("no escalation line:\n{text}"));
    assert!(
        pids_field(&kill.text).contains(&pid),
        "the line names the app's pid {pid}: {kill:?}"
    );
    // By usher's own clock (from the stop signal) and by docker's.
    assert_on_time("the kill, by usher's clock", line_t(&kill.text), 4.0, &text);
    assert_on_time(
        "the kill, by docker's",
        Some(kill.at - asked.epoch),
        4.0,
        &text,
    );
}

/// One stat line of /proc in the container: (pid, state, ppid).
fn proc_table(c: &Container) -> Vec<(i64, char, i64)> {
    let out = c.exec(&["sh", "-c", "cat /proc/[0-9]*/stat 2>/dev/null"]);
    assert!(
        out.ok() || !out.stdout.is_empty(),
        "reading /proc in the container: {out:?}"
    );
    out.stdout
        .lines()
        .filter_map(|l| {
            let pid = l.split(' ').next()?.parse().ok()?;
            let mut rest = l[l.rfind(')')? + 1..].split_whitespace();
            let state = rest.next()?.chars().next()?;
            let ppid = rest.next()?.parse().ok()?;
            Some((pid, state, ppid))
        })
        .collect()
}

/// An app that leaves 1000 orphans: they are reparented to usher (PID 1),
/// and as they end usher reaps each; none stays a zombie.
#[test]
fn a_thousand_orphans_are_reaped() {
    let Some(s) = prepare() else { return };
    let c = container(s, &[s.image("usher"), "/app/orphan-app", "1000"]);
    let done = c.wait_log("orphan-app: left 1000 orphans", secs(90));
    let app = number(&done.text, "pid").expect("the app prints its pid");
    let orphans = |t: &[(i64, char, i64)]| t.iter().filter(|p| p.2 == 1 && p.0 != app).count();
    let zombies = |t: &[(i64, char, i64)]| t.iter().filter(|p| p.1 == 'Z').count();
    let first = proc_table(&c);
    eprintln!(
        "orphans: {} reparented to PID 1 when the app was done",
        orphans(&first)
    );
    assert!(
        orphans(&first) >= 50,
        "few orphans reparented to usher (PID 1): {first:?}"
    );
    let mut last = first;
    let settled = poll(secs(30), Duration::from_millis(250), || {
        last = proc_table(&c);
        orphans(&last) == 0 && zombies(&last) == 0
    });
    let (o, z) = (orphans(&last), zombies(&last));
    assert!(settled, "orphans left: {o}, zombies: {z} (table: {last:?})");
    // usher and the app are still there, and nothing else but the app's sleep.
    assert!(
        last.iter().any(|p| p.0 == 1) && last.iter().any(|p| p.0 == app),
        "{last:?}"
    );
    let state = docker_ok(&["inspect", "-f", "{{.State.Running}}", &c.id], secs(30));
    assert_eq!(state, "true", "the container still runs its app");
}

/// Exit codes through `docker run` and `docker wait`: the app's own (0, 3),
/// 127 for a missing command, 126 for one that cannot run, and 143 for an app
/// killed by SIGTERM.
#[test]
fn exit_codes_pass_through_docker() {
    let Some(s) = prepare() else { return };
    let cases: &[(&[&str], i32, &str)] = &[
        (&["sh", "-c", "exit 0"], 0, ""),
        (&["sh", "-c", "exit 3"], 3, ""),
        (
            &["/no/such/app"],
            127,
            "cannot run \"/no/such/app\": no such file",
        ),
        (&["no-such-app"], 127, "command not found"),
        (&["/tmp"], 126, "cannot run \"/tmp\""),
        (&["sh", "-c", "kill -TERM $$"], 143, ""),
    ];
    each_at_once(cases, |&(cmd, code, says)| {
        let args = [&[s.image("usher")][..], cmd].concat();
        let (c, out) = run_attached(s, &args, secs(60));
        let c = c.expect("docker run wrote its cidfile");
        assert_eq!(out.code, Some(code), "docker run {cmd:?}: {out:?}");
        assert_eq!(c.wait_code(secs(30)), code, "docker wait, {cmd:?}");
        assert!(
            out.stderr.contains(says),
            "{cmd:?}: usher says {says:?}: {out:?}"
        );
    });
}

/// `docker run -it` driven through a pseudo-terminal (tests/docker/tty.py):
/// the app is its own process group and the terminal's foreground group
/// (pgrp == pid == tpgid); SIGWINCH sent to usher (`docker kill -s WINCH`)
/// is forwarded to it; resizing the terminal reaches it too; it reads from
/// the terminal (a background group would be stopped by SIGTTIN); and its
/// exit code comes out of `docker run`.
#[test]
fn tty_app_is_foreground_and_gets_sigwinch() {
    let Some(s) = prepare() else { return };
    if !try_run(Command::new("python3").arg("--version"), secs(30)).is_ok_and(|o| o.ok()) {
        return skipped("python3 not found (it drives the pty)");
    }
    let cidfile = s.work.join(format!("cid-tty-{}", std::process::id()));
    let _ = std::fs::remove_file(&cidfile);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker/tty.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(&cidfile)
        .args(["--", "docker", "run", "-it"]);
    cmd.args(s.labels()).arg("--cidfile").arg(&cidfile);
    cmd.args([s.image("usher"), "/app/tty-app"]);
    let result = try_run(&mut cmd, secs(120));
    let _guard = std::fs::read_to_string(&cidfile).ok().map(|id| Container {
        id: id.trim().to_string(),
    });
    let out = result.unwrap_or_else(|e| panic!("{e}"));
    let t = &out.stdout;
    assert!(
        out.ok(),
        "a step of the tty session failed:\n{t}\n{}",
        out.stderr
    );
    let line = t
        .lines()
        .find(|l| l.contains("tty-app: pid="))
        .expect("a pid line");
    assert_foreground(line);
    let once = t.contains("winch_from_kill=1\n");
    assert!(
        once,
        "docker kill -s WINCH: usher forwards it, exactly once:\n{t}"
    );
    assert!(t.contains("WINCH size=30 100"), "SIGWINCH on resize:\n{t}");
    assert!(t.contains("read 'quit'"), "the app read the terminal:\n{t}");
    assert!(
        t.contains("exit=7"),
        "docker run -it exits with the app's code 7:\n{t}"
    );
}

/// The twin of Dockerfile.example (its ENTRYPOINT line verbatim: `--drain 5s
/// --grace-period 25s`), stopped the way its comments advise (`docker stop
/// -t 30`): the app gets TERM after the 5s drain, not before, and the
/// container exits with the app's code.
#[test]
fn dockerfile_example_twin_drains_then_stops() {
    let Some(s) = prepare() else { return };
    let c = container(s, &[s.image("twin")]);
    c.wait_log("trap-app: ready", secs(30));
    let (asked, out) = c.stop(30);
    let text = c.logs_text();
    let delay = logged_after(&c, "trap-app: got TERM", asked);
    eprintln!(
        "twin: TERM after {delay:?}s, docker stop took {:?}",
        out.took
    );
    assert_on_time("TERM", delay, 5.0, &text);
    let took = out.took;
    assert!(
        took >= secs(5) && took < secs(15),
        "docker stop took {took:?}, for a 5s drain"
    );
    assert_eq!(c.wait_code(secs(30)), 42, "{text}");
    let stop = "stop received: signal=SIGTERM drain=5s grace=25s";
    assert!(text.contains(stop), "{text}");
}

// ---------------------------------------------------------------------------
// An HTTP pre-stop hook in an image with no shell and no curl: `http-hook`
// (setup.sh) is FROM scratch with only a static usher and a static C app
// (tests/docker/http-app.c), ENTRYPOINT ["/usher"].

/// A loopback port that was free a moment ago (bound, then released): the
/// app of a `--network host` container listens on it.
fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("bind 127.0.0.1:0")
}

/// Whether `path` (as `tar -t` lists it) is one the engine itself puts into
/// every container, whatever the image holds.
fn engine_made(path: &str) -> bool {
    let etc = [
        "etc/",
        "etc/hostname",
        "etc/hosts",
        "etc/mtab",
        "etc/resolv.conf",
    ];
    let trees = ["dev/", "proc/", "sys/"];
    path == ".dockerenv" || etc.contains(&path) || trees.iter().any(|t| path.starts_with(t))
}

/// Every path in the image `name`, from `docker export` of a container
/// created from it (never started), less the engine's own (see
/// [`engine_made`]), sorted.
fn image_paths(s: &Setup, name: &str) -> Vec<String> {
    let mut args: Vec<String> = vec!["create".into()];
    args.extend(s.labels());
    // `base` has no ENTRYPOINT: the engine wants a command, never run here.
    args.extend([s.image(name).into(), "never-run".into()]);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let c = Container {
        id: docker_ok(&args, secs(60)),
    };
    let tar = s
        .work
        .join(format!("export-{name}-{}.tar", std::process::id()));
    let tar_s = tar.to_string_lossy().into_owned();
    docker_ok(&["export", "-o", &tar_s, &c.id], secs(120));
    let list = run_bounded(Command::new("tar").args(["-tf", &tar_s]), secs(60));
    let _ = std::fs::remove_file(&tar);
    assert!(list.ok(), "tar -tf {tar_s}: {list:?}");
    let mut paths: Vec<String> = list
        .stdout
        .lines()
        .map(|l| l.trim_start_matches("./").to_string())
        .filter(|p| !p.is_empty() && !engine_made(p))
        .collect();
    paths.sort();
    paths
}

/// The shell-less image holds exactly two files, /usher and /http-app: no
/// /bin, no sh, no curl, no busybox. The same listing of `base` finds
/// bin/sh (so it would see a shell), and the engine cannot start /bin/sh in
/// `http-hook` (exit 127, "no such file or directory").
#[test]
fn http_hook_image_has_no_shell_and_no_curl() {
    let Some(s) = prepare() else { return };
    let paths = image_paths(s, "http-hook");
    assert_eq!(
        paths,
        ["http-app", "usher"],
        "the http-hook image holds usher and the app, nothing else"
    );
    let base = image_paths(s, "base");
    assert!(
        base.iter().any(|p| p == "bin/sh"),
        "the listing sees a shell where there is one: {base:?}"
    );
    let args = [
        "--entrypoint",
        "/bin/sh",
        s.image("http-hook"),
        "-c",
        "true",
    ];
    let (_c, out) = run_attached(s, &args, secs(60));
    assert_eq!(out.code, Some(127), "no /bin/sh to run: {out:?}");
    assert!(
        out.stderr.contains("/bin/sh") && out.stderr.contains("no such file or directory"),
        "the engine says there is no /bin/sh: {out:?}"
    );
}

/// Runs `http-hook` as `usher --pre-stop "POST http://127.0.0.1:PORT/{path}"
/// --drain 1s --grace-period 10s -- /http-app PORT` on the host's network
/// (PORT free on loopback), waits until the app listens, then `docker stop
/// -t 20`. Returns the container, when the stop was asked, and docker
/// stop's result.
fn stop_with_http_hook(s: &Setup, path: &str) -> (Container, Sent, Ran) {
    let port = free_port().to_string();
    let hook = format!("POST http://127.0.0.1:{port}/{path}");
    let c = container(
        s,
        &[
            "--network",
            "host",
            s.image("http-hook"),
            "--pre-stop",
            &hook,
            "--drain",
            "1s",
            "--grace-period",
            "10s",
            "--",
            "/http-app",
            &port,
        ],
    );
    c.wait_log("http-app: ready", secs(30));
    let (asked, out) = c.stop(20);
    (c, asked, out)
}

/// Checks the stop of [`stop_with_http_hook`]: usher started the pre-stop
/// hook and logged `ended` (its end line, e.g. `pre-stop answered`); the
/// request reached the app (which logs `requested` only for a POST to its
/// path) after the stop and before TERM; TERM came after the 1 s drain, not
/// before (by docker's clock and by usher's); the app exited 0 and so did
/// the container, long before docker's 20 s. Returns usher's end line.
fn assert_hook_then_term(
    c: &Container,
    asked: Sent,
    out: &Ran,
    ended: &str,
    requested: &str,
) -> String {
    let text = c.logs_text();
    let logs = c.logs();
    let at = |needle: &str| {
        logs.iter()
            .position(|l| l.text.contains(needle))
            .unwrap_or_else(|| panic!("no line with {needle:?}:\n{text}"))
    };
    let received = at("stop received: signal=SIGTERM drain=1s grace=10s");
    let started = at("pre-stop started");
    let end = at(ended);
    let request = at(requested);
    let forwarded = at("forwarded: signal=SIGTERM");
    let term = at("http-app: got TERM");
    // The app's two lines share its stdout: their order is exact.
    assert!(
        request < term,
        "the hook's request reached the app before TERM:\n{text}"
    );
    assert!(
        logs[request].at >= asked.epoch,
        "the request came from the stop, not before it:\n{text}"
    );
    // usher's lines share its stderr; the hook ended long before the drain.
    assert!(
        received < started && started < end && end < forwarded,
        "usher's timeline: stop, hook started, hook ended, TERM:\n{text}"
    );
    let delay = logs[term].at - asked.epoch;
    eprintln!(
        "http hook: {requested:?} after {:.3}s, TERM after {delay:.3}s, docker stop took {:?}",
        logs[request].at - asked.epoch,
        out.took
    );
    assert_on_time("TERM, by docker's clock", Some(delay), 1.0, &text);
    assert_on_time(
        "the forwarded TERM, by usher's clock",
        line_t(&logs[forwarded].text),
        1.0,
        &text,
    );
    assert!(
        out.took < secs(12),
        "docker stop took {:?}, for a 1s drain (docker's timeout: 20s)\n{text}",
        out.took
    );
    assert_eq!(c.wait_code(secs(30)), 0, "the app's own code:\n{text}");
    logs[end].text.clone()
}

/// `POST /drain` answers 200: usher logs `pre-stop answered ... http=200`
/// at info, the app prints "drain requested" within the drain, then gets
/// TERM after it; exit 0. Only usher's own HTTP client can have made the
/// request: the image has no shell and no curl (see the test above).
#[test]
fn http_pre_stop_hook_drains_the_app_in_a_scratch_image() {
    let Some(s) = prepare() else { return };
    let (c, asked, out) = stop_with_http_hook(s, "drain");
    let line = assert_hook_then_term(
        &c,
        asked,
        &out,
        "pre-stop answered",
        "http-app: drain requested",
    );
    assert!(line.contains("info: pre-stop answered"), "{line}");
    assert_eq!(field(&line, "http"), Some("200"), "{line}");
}

/// `POST /fail` answers 503: usher logs `pre-stop failed ... http=503` at
/// warn and the sequence goes on, as the kubelet's does: TERM after the
/// drain, exit 0.
#[test]
fn a_failing_http_pre_stop_hook_warns_and_the_stop_goes_on() {
    let Some(s) = prepare() else { return };
    let (c, asked, out) = stop_with_http_hook(s, "fail");
    let line = assert_hook_then_term(
        &c,
        asked,
        &out,
        "pre-stop failed",
        "http-app: fail requested",
    );
    assert!(line.contains("warn: pre-stop failed"), "{line}");
    assert_eq!(field(&line, "http"), Some("503"), "{line}");
}

/// usher as the health check of the shell-less image. `docker run
/// --health-cmd` always wraps its command in `/bin/sh -c`, which this image
/// has not, so the test builds one FROM it with an exec-form `HEALTHCHECK
/// CMD ["/usher", "--check", URL]`: the container turns healthy. Then
/// `docker exec /usher --check --ready` is 0 before the stop and 1 in the
/// 3 s drain after `docker kill -s TERM`, saying usher (PID 1) began its
/// shutdown, while a plain `--check` stays 0; both answered before the app
/// got TERM, which came after the drain: exit 0.
#[test]
fn usher_check_is_a_healthcheck_and_ready_fails_in_the_drain() {
    let Some(s) = prepare() else { return };
    let port = free_port().to_string();
    let url = format!("http://127.0.0.1:{port}/");
    let file = s.work.join(format!("health-{port}.Dockerfile"));
    let check = format!(r#"HEALTHCHECK --interval=1s CMD ["/usher", "--check", "{url}"]"#);
    let from = format!("FROM {}\n{check}\n", tag_of(s, "http-hook"));
    std::fs::write(&file, from).expect("write the Dockerfile");
    let (file, empty) = (file.to_string_lossy(), s.work.join("empty"));
    let build = ["build", "-q", "-f", &file, &empty.to_string_lossy()];
    let image = docker_ok(&build, secs(120));
    let app = ["--drain", "3s", "--", "/http-app", &port];
    let c = container(s, &[&["--network", "host", &image][..], &app].concat());
    let inspect = ["inspect", "-f", "{{json .State.Health}}", &c.id];
    let health = || docker(&inspect, secs(30)).stdout;
    let healthy = r#""Status":"healthy""#;
    let turned = poll(secs(30), Duration::from_millis(200), || {
        health().contains(healthy)
    });
    assert!(turned, "never healthy: {}", health());
    let check = |ready: &[&str]| c.exec(&[&["/usher", "--check"], ready, &[&url]].concat());
    let before = check(&["--ready"]);
    assert!(before.ok() && before.stderr.is_empty(), "{before:?}");
    let kill = Sent::now();
    docker_ok(&["kill", "-s", "TERM", &c.id], secs(30));
    let (ready, plain, answered) = (check(&["--ready"]), check(&[]), kill.elapsed());
    let term = c.wait_log("http-app: got TERM", secs(30)).at - kill.epoch;
    eprintln!("checks answered {answered:.3}s after the kill, TERM after {term:.3}s");
    let said = ready.stderr.contains("usher (pid 1) began its shutdown");
    assert!(ready.code == Some(1) && said, "in the drain: {ready:?}");
    assert!(plain.ok() && plain.stderr.is_empty(), "{plain:?}");
    assert!(answered < term, "both in the drain:\n{}", c.logs_text());
    assert_on_time("TERM after the drain", Some(term), 3.0, &c.logs_text());
    assert_eq!(c.wait_code(secs(30)), 0, "{}", c.logs_text());
    drop(c);
    let _ = docker(&["rmi", &image], secs(60));
}

#[test]
fn rfc3339_parses() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(parse_rfc3339("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
    assert_eq!(
        parse_rfc3339("2024-11-23T19:40:01.000000000Z"),
        Some(1_732_390_801.0)
    );
    assert_eq!(parse_rfc3339("garbage"), None);
}

// ---------------------------------------------------------------------------
// usher as the engines' own init: `docker run --init` with usher mounted over
// /sbin/docker-init, Compose's `init: true`, a Docker daemon's `init-path`,
// and `podman run --init --init-path`. The engine runs the init as
// `INIT -- ENTRYPOINT... CMD...`, so usher's options come from `USHER_*`
// variables only. See docs/docker.md ("usher as the engine's --init") and
// docs/podman.md.

/// Where the engine mounts its init in a Docker container.
const DOCKER_INIT: &str = "/sbin/docker-init";

/// The static usher that setup.sh put in the images, on the host: the file
/// the tests bind-mount over the engine's init (the daemon runs on this
/// host, as for every test here).
fn host_usher(s: &Setup) -> PathBuf {
    s.work.join("rootfs/usher")
}

/// `-v HOST_USHER:/sbin/docker-init:ro`, as a user would write it.
fn init_volume(s: &Setup) -> String {
    format!("{}:{DOCKER_INIT}:ro", host_usher(s).display())
}

/// The tag setup.sh gave the image called `name` (for tools that want a
/// name rather than an id: Compose, `docker save`).
fn tag_of(s: &Setup, name: &str) -> String {
    format!("usher-test-{}:{name}", s.run)
}

/// A would-be skip: prints why and returns, unless `require` (an environment
/// switch set to 1) turns it into a failure.
fn skip_unless_required(require: &str, why: &str) {
    if std::env::var_os(require).is_some_and(|v| v == "1") {
        panic!("{require}=1, but {why}");
    }
    skipped(why);
}

/// Lines of `docker logs --timestamps` (or `podman logs -t`), both streams
/// merged in time order.
fn timed_lines(out: &Ran) -> Vec<Line> {
    let mut lines: Vec<Line> = out
        .stdout
        .lines()
        .chain(out.stderr.lines())
        .filter_map(|l| {
            let (ts, text) = l.split_once(' ')?;
            Some(Line {
                at: parse_rfc3339(ts)?,
                text: text.trim_end_matches('\r').to_string(),
            })
        })
        .collect();
    lines.sort_by(|a, b| a.at.total_cmp(&b.at));
    lines
}

/// PID 1's command line, word by word, read with `exec` (`docker exec`,
/// `podman exec`: the given command prefix plus the container).
fn pid1_cmdline(exec: impl Fn(&[&str]) -> Ran) -> Vec<String> {
    let out = exec(&["cat", "/proc/1/cmdline"]);
    assert!(out.ok(), "reading /proc/1/cmdline: {out:?}");
    out.stdout
        .split('\0')
        .filter(|w| !w.is_empty())
        .map(String::from)
        .collect()
}

/// Checks the drain timeline of an app that traps TERM (trap-app) under
/// `USHER_DRAIN=drain`: TERM reached the app `drain` seconds after the stop
/// was asked, not before, and not far later than `drain` after usher logged
/// the stop's arrival (which, from a slow client such as Python's Compose
/// on a loaded machine, can come seconds after the request).
fn assert_drained(what: &str, lines: &[Line], asked: f64, drain: f64) {
    let text = lines
        .iter()
        .map(|l| l.text.as_str())
        .collect::<Vec<_>>()
        .join("\n");
    let find = |needle: &str| {
        lines
            .iter()
            .find(|l| l.text.contains(needle))
            .unwrap_or_else(|| panic!("{what}: no line with {needle:?}:\n{text}"))
    };
    let received = find(&format!("stop received: signal=SIGTERM drain={drain}s"));
    let term = find("trap-app: got TERM");
    let (delay, after_receipt) = (term.at - asked, term.at - received.at);
    eprintln!(
        "{what}: TERM reached the app {delay:.3}s after the stop was asked, \
         {after_receipt:.3}s after usher got it"
    );
    assert!(
        delay >= drain,
        "{what}: TERM after {delay:.3}s, before the {drain}s drain ended:\n{text}"
    );
    assert!(
        after_receipt < drain + 3.0,
        "{what}: TERM {after_receipt:.3}s after usher got the stop, expected ~{drain}s:\n{text}"
    );
}

/// The issue's recipe, verbatim: `docker run --init -v usher:/sbin/docker-init:ro
/// -e USHER_DRAIN=2s IMAGE CMD`. Docker runs `/sbin/docker-init -- CMD` as PID
/// 1, and the file there is usher (not the engine's tini): `docker stop`
/// drains 2s, then the app gets TERM, and its exit code (42) comes back.
#[test]
fn docker_run_init_runs_usher_mounted_over_docker_init() {
    let Some(s) = prepare() else {
        return;
    };
    let volume = init_volume(s);
    let c = container(
        s,
        &[
            "--init",
            "-v",
            &volume,
            "-e",
            "USHER_DRAIN=2s",
            s.image("base"),
            "/app/trap-app",
        ],
    );
    c.wait_log("trap-app: ready", secs(30));
    assert_eq!(
        pid1_cmdline(|a| c.exec(a)),
        [DOCKER_INIT, "--", "/app/trap-app"],
        "Docker runs its init as `/sbin/docker-init -- CMD`"
    );
    let version = c.exec(&[DOCKER_INIT, "--version"]);
    assert!(
        version.stdout.starts_with("usher "),
        "the mounted usher replaces the engine's docker-init: {version:?}"
    );
    let (asked, out) = c.stop(20);
    eprintln!("docker --init: docker stop took {:?}", out.took);
    assert_drained("docker --init", &c.logs(), asked.epoch, 2.0);
    assert!(
        out.took >= secs(2) && out.took < secs(12),
        "docker stop took {:?}; expected the 2s drain, far below its 20s",
        out.took
    );
    assert_eq!(
        c.wait_code(secs(30)),
        42,
        "the app's own code\n{}",
        c.logs_text()
    );
}

/// Under `--init` usher's arguments are `-- ENTRYPOINT... CMD...`: usher reads
/// no option after the `--`, so a command that looks like an option is run
/// as the app (and not found: 127), options come from `USHER_*` (a bad one is
/// a usage error, 2, naming the variable; a misspelt one is reported), and
/// an image whose own ENTRYPOINT is usher runs under the injected usher with
/// the app's code coming through both.
#[test]
fn docker_init_gives_usher_only_dashdash_and_the_command() {
    let Some(s) = prepare() else {
        return;
    };
    let volume = init_volume(s);
    let (base, own) = (s.image("base"), s.image("usher"));
    // (docker run arguments after the image's volume, exit code, stderr has)
    let cases: &[(&[&str], i32, &str)] = &[
        (&[base, "sh", "-c", "exit 3"], 3, ""),
        (&[base, "--help"], 127, "cannot run \"--help\""),
        (&[base, "-s", "true"], 127, "cannot run \"-s\""),
        (
            &["-e", "USHER_DRAIN=5", base, "true"],
            2,
            "USHER_DRAIN \"5\" has no unit",
        ),
        (
            &["-e", "USHER_DRAINN=5s", base, "true"],
            0,
            "unknown variable ignored (a typo?): name=USHER_DRAINN",
        ),
        (&[own, "sh", "-c", "exit 5"], 5, ""),
    ];
    each_at_once(cases, |&(args, code, says)| {
        let mut full = vec!["--init", "-v", volume.as_str()];
        full.extend_from_slice(args);
        let (c, out) = run_attached(s, &full, secs(60));
        let _c = c.expect("docker run wrote its cidfile");
        assert_eq!(out.code, Some(code), "docker run --init {args:?}: {out:?}");
        assert!(
            out.stderr.contains(says),
            "{args:?}: usher says {says:?}: {out:?}"
        );
    });
}

/// The stop sequence under `--init`, four containers stopped together:
/// - `USHER_GRACE_PERIOD=3s`, an app that ignores TERM, `docker stop -t 30`:
///   usher kills it at 3s and the container exits 137, long before 30s;
/// - `--stop-signal QUIT` with `USHER_DRAIN=3s`: QUIT is not a stop signal
///   for usher, so it is forwarded at once, without the drain...
/// - ...unless `USHER_STOP_ON=QUIT`: then QUIT drains 3s first;
/// - an image with usher as its own ENTRYPOINT under `--init` and
///   `USHER_DRAIN=1s`: both ushers read the variable, so the drains add up
///   (TERM reaches the app after 1s + 1s).
#[test]
fn docker_init_stop_sequence_from_env() {
    let Some(s) = prepare() else {
        return;
    };
    let volume = init_volume(s);
    let v = volume.as_str();
    let quit_app = "trap 'echo quit-app: got QUIT; exit 42' QUIT; \
                    echo quit-app: ready; while :; do sleep 1 & wait $!; done";
    let grace = container(
        s,
        &[
            "--init",
            "-v",
            v,
            "-e",
            "USHER_GRACE_PERIOD=3s",
            s.image("base"),
            "/app/stubborn-app",
        ],
    );
    let quit = |stop_on: &[&str]| {
        let mut args = vec!["--init", "-v", v, "--stop-signal", "QUIT"];
        args.extend_from_slice(&["-e", "USHER_DRAIN=3s"]);
        args.extend_from_slice(stop_on);
        args.extend_from_slice(&[s.image("base"), "sh", "-c", quit_app]);
        container(s, &args)
    };
    let quit_now = quit(&[]);
    let quit_drained = quit(&["-e", "USHER_STOP_ON=QUIT"]);
    let nested = container(
        s,
        &[
            "--init",
            "-v",
            v,
            "-e",
            "USHER_DRAIN=1s",
            s.image("usher"),
            "/app/trap-app",
        ],
    );
    grace.wait_log("stubborn-app: ready", secs(30));
    quit_now.wait_log("quit-app: ready", secs(30));
    quit_drained.wait_log("quit-app: ready", secs(30));
    nested.wait_log("trap-app: ready", secs(30));
    assert_eq!(
        pid1_cmdline(|a| nested.exec(a)),
        [DOCKER_INIT, "--", "/usher", "--", "/app/trap-app"],
        "the engine's init wraps the image's own usher"
    );
    let (g, qn, qd, n) = thread::scope(|sc| {
        let g = sc.spawn(|| grace.stop(30));
        let qn = sc.spawn(|| quit_now.stop(20));
        let qd = sc.spawn(|| quit_drained.stop(20));
        let n = sc.spawn(|| nested.stop(20));
        (
            g.join().unwrap(),
            qn.join().unwrap(),
            qd.join().unwrap(),
            n.join().unwrap(),
        )
    });

    let text = grace.logs_text();
    eprintln!("--init grace: docker stop took {:?}", g.1.took);
    assert!(
        g.1.took >= secs(3) && g.1.took < secs(15),
        "docker stop took {:?}; usher should kill at 3s, far before docker's 30s:\n{text}",
        g.1.took
    );
    assert_eq!(grace.wait_code(secs(30)), 137, "{text}");
    assert!(
        text.contains("warn: grace period over, killing: signal=SIGKILL"),
        "{text}"
    );

    let quit_at = |c: &Container, asked: f64| {
        let text = c.logs_text();
        let line = c
            .find_log("quit-app: got QUIT")
            .unwrap_or_else(|| panic!("the app never got QUIT:\n{text}"));
        assert_eq!(c.wait_code(secs(30)), 42, "{text}");
        let delay = line.at - asked;
        (line, delay, text)
    };
    let (_, now, text) = quit_at(&quit_now, qn.0.epoch);
    eprintln!("--init QUIT without USHER_STOP_ON: forwarded after {now:.3}s");
    assert!(
        now < 2.0,
        "without USHER_STOP_ON=QUIT the stop signal QUIT is forwarded at once, not after the 3s drain ({now:.3}s):\n{text}"
    );
    let (quit, drained, text) = quit_at(&quit_drained, qd.0.epoch);
    let received = quit_drained
        .find_log("stop received: signal=SIGQUIT drain=3s")
        .unwrap_or_else(|| panic!("usher did not take QUIT as the stop:\n{text}"));
    eprintln!("--init QUIT with USHER_STOP_ON=QUIT: forwarded after {drained:.3}s");
    assert!(
        drained >= 3.0 && quit.at - received.at < 6.0,
        "with USHER_STOP_ON=QUIT, QUIT drains 3s first ({drained:.3}s):\n{text}"
    );

    let lines = nested.logs();
    let text = nested.logs_text();
    let term = lines
        .iter()
        .find(|l| l.text.contains("trap-app: got TERM"))
        .unwrap_or_else(|| panic!("the nested app never got TERM:\n{text}"));
    let outer = lines
        .iter()
        .find(|l| l.text.contains("stop received: signal=SIGTERM drain=1s"))
        .unwrap_or_else(|| panic!("the outer usher logged no stop:\n{text}"));
    let delay = term.at - n.0.epoch;
    eprintln!("--init over usher: TERM after {delay:.3}s (two 1s drains)");
    assert!(
        delay >= 2.0 && term.at - outer.at < 5.0,
        "both ushers drain 1s, one after the other ({delay:.3}s):\n{text}"
    );
    assert_eq!(
        text.matches("stop received: signal=SIGTERM drain=1s")
            .count(),
        2,
        "{text}"
    );
    assert_eq!(nested.wait_code(secs(30)), 42, "{text}");
}

/// The Compose tool on this machine: `docker compose` (v2) or
/// `docker-compose` (v1), or why there is none.
fn compose_command() -> Result<Vec<String>, String> {
    let mut v2 = Command::new("docker");
    v2.args(["compose", "version"]);
    if try_run(&mut v2, secs(30)).is_ok_and(|o| o.ok()) {
        return Ok(vec!["docker".into(), "compose".into()]);
    }
    let mut v1 = Command::new("docker-compose");
    v1.arg("version");
    match try_run(&mut v1, secs(30)) {
        Ok(o) if o.ok() => Ok(vec!["docker-compose".into()]),
        Ok(o) => Err(format!("`docker-compose version` failed: {o:?}")),
        Err(e) => Err(format!(
            "neither `docker compose` nor `docker-compose` runs ({e})"
        )),
    }
}

/// Compose: `init: true` and usher as a volume over /sbin/docker-init, with
/// `USHER_DRAIN` in `environment:` and `stop_grace_period: 20s`. `compose
/// stop` drains 2s, then the app gets TERM and exits 42. (Compose reaches
/// the same engine, so the same labels and cleanup by id apply.)
#[test]
fn compose_init_true_with_usher_volume() {
    let Some(s) = prepare() else {
        return;
    };
    let compose = match compose_command() {
        Ok(c) => c,
        Err(why) => return skip_unless_required("USHERTEST_REQUIRE_DOCKER", &why),
    };
    let dir = s.work.join(format!("compose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("compose dir");
    let file = dir.join("compose.yml");
    let yaml = format!(
        r#"version: "2.4"
services:
  app:
    image: {image}
    init: true
    volumes:
      - {volume}
    environment:
      USHER_DRAIN: "2s"
    stop_grace_period: 20s
    network_mode: none
    command: ["/app/trap-app"]
    labels:
      usher-test: "1"
      usher-test.run: "{run}"
      usher-test.pid: "{pid}"
      usher-test.host: "{host}"
"#,
        image = tag_of(s, "base"),
        volume = init_volume(s),
        run = s.run,
        pid = std::process::id(),
        host = hostname(),
    );
    std::fs::write(&file, yaml).expect("compose file");
    let project = format!("usher-test-{}", s.run);
    let file = file.to_string_lossy().into_owned();
    let compose_run = |args: &[&str], limit| {
        let mut cmd = Command::new(&compose[0]);
        cmd.args(&compose[1..])
            .args(["-p", &project, "-f", &file])
            .args(args)
            .env_remove("COMPOSE_FILE")
            .env_remove("COMPOSE_PROJECT_NAME");
        try_run(&mut cmd, limit).unwrap_or_else(|e| panic!("{e}"))
    };
    let up = compose_run(&["up", "-d"], secs(120));
    let id = compose_run(&["ps", "-q", "app"], secs(60))
        .stdout
        .trim()
        .to_string();
    let c = (!id.is_empty()).then(|| Container { id });
    assert!(up.ok(), "compose up failed: {up:?}");
    let c = c.unwrap_or_else(|| panic!("compose up started no container: {up:?}"));
    c.wait_log("trap-app: ready", secs(30));
    assert_eq!(
        pid1_cmdline(|a| c.exec(a)),
        [DOCKER_INIT, "--", "/app/trap-app"]
    );
    let asked = epoch();
    let stop = compose_run(&["stop"], secs(80));
    assert!(stop.ok(), "compose stop failed: {stop:?}");
    eprintln!("compose: stop took {:?}", stop.took);
    assert_drained("compose", &c.logs(), asked, 2.0);
    assert!(
        stop.took >= secs(2),
        "compose stop returned after {:?}, before the 2s drain ended",
        stop.took
    );
    // 42, not 137: the app ended on its own, not at stop_grace_period.
    assert_eq!(c.wait_code(secs(30)), 42, "{}", c.logs_text());
    let down = compose_run(&["down"], secs(80));
    assert!(down.ok(), "compose down failed: {down:?}");
}

// --- a throwaway Docker daemon with "init-path" ------------------------------

/// Whether this process runs as root (from /proc, without unsafe).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status")
        .ok()
        .and_then(|s| {
            s.lines()
                .find(|l| l.starts_with("Uid:"))
                .map(|l| l.split_whitespace().nth(2) == Some("0"))
        })
        .unwrap_or(false)
}

/// Whether `program --version` runs.
fn runs(program: &str) -> bool {
    let mut cmd = Command::new(program);
    cmd.arg("--version");
    try_run(&mut cmd, secs(30)).is_ok_and(|o| o.ok())
}

/// A process this test started, with a scratch directory: on drop it gets
/// SIGTERM, then (after `patience`) SIGKILL to its process group, and the
/// directory goes.
struct Daemon {
    child: std::process::Child,
    dir: PathBuf,
    patience: Duration,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        let _ = Command::new("kill").args(["-TERM", &pid]).status();
        let end = Instant::now() + self.patience;
        while Instant::now() < end {
            if let Ok(Some(_)) = self.child.try_wait() {
                break;
            }
            thread::sleep(Duration::from_millis(50));
        }
        if let Ok(None) = self.child.try_wait() {
            let _ = Command::new("kill")
                .args(["-KILL", "--", &format!("-{pid}")])
                .status();
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// A scratch directory in the system's temp dir (short paths: the daemon's
/// sockets live there), named `PREFIX-PID-N` so that a later run can tell
/// whether its owner is gone. Before making it, removes those whose test
/// process is gone, after `on_stale` has ended what such a run left running.
fn scratch_dir(prefix: &str, on_stale: &dyn Fn(&Path)) -> PathBuf {
    let tmp = std::env::temp_dir();
    if let Ok(entries) = std::fs::read_dir(&tmp) {
        for e in entries.flatten() {
            let name = e.file_name().to_string_lossy().into_owned();
            let Some(owner) = name
                .strip_prefix(&format!("{prefix}-"))
                .and_then(|r| r.split('-').next())
            else {
                continue;
            };
            if owner.is_empty() || Path::new(&format!("/proc/{owner}")).exists() {
                continue;
            }
            on_stale(&e.path());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    static N: AtomicUsize = AtomicUsize::new(0);
    let dir = tmp.join(format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    ));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// For a stale throwaway dockerd's directory: SIGKILLs the pid in its
/// pidfile if, and only if, that process's command line names the directory.
fn end_stale_dockerd(dir: &Path) {
    let Ok(pid) = std::fs::read_to_string(dir.join("docker.pid")) else {
        return;
    };
    let pid = pid.trim();
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
        let _ = Command::new("kill").args(["-KILL", pid]).status();
        thread::sleep(Duration::from_millis(500));
    }
}

/// The daemon-wide way: a daemon.json with `"init": true` and `"init-path"`
/// naming usher makes every container of that daemon start under usher, with
/// no flag and no volume. The machine's own daemon is never reconfigured:
/// the test starts a second, throwaway `dockerd` with its own data root,
/// exec root, socket and pidfile, in its own network and mount namespaces
/// (`unshare --net --mount`: a dockerd started with `--bridge=none` deletes
/// the host's docker0 bridge otherwise), and ends it by pid.
#[test]
fn daemon_wide_init_path_makes_usher_every_containers_init() {
    let Some(s) = prepare() else {
        return;
    };
    let missing = [
        (!is_root()).then_some("it needs root to start a second dockerd"),
        (!runs("dockerd")).then_some("no dockerd binary here"),
        (!runs("unshare")).then_some("no unshare (util-linux)"),
    ];
    if let Some(why) = missing.into_iter().flatten().next() {
        return skip_unless_required("USHERTEST_REQUIRE_DOCKER", why);
    }
    let host_bridge = Path::new("/sys/class/net/docker0").exists();
    let dir = scratch_dir("usher-dockerd", &end_stale_dockerd);
    let config = dir.join("daemon.json");
    std::fs::write(
        &config,
        format!(
            "{{\"init\": true, \"init-path\": \"{}\"}}\n",
            host_usher(s).display()
        ),
    )
    .expect("daemon.json");
    let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd.log");
    let sock = format!("unix://{}", dir.join("docker.sock").display());
    let p = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let mut cmd = Command::new("unshare");
    cmd.args(["--net", "--mount", "--propagation", "private", "dockerd"])
        .args([
            "--config-file",
            &p("daemon.json"),
            "--data-root",
            &p("data"),
        ])
        .args(["--exec-root", &p("exec"), "--pidfile", &p("docker.pid")])
        .args(["-H", &sock, "--storage-driver", "vfs", "--bridge=none"])
        .args(["--iptables=false", "--ip-masq=false", "--ip-forward=false"])
        .arg("--userland-proxy=false")
        .stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"))
        .stderr(log)
        .process_group(0);
    let daemon = Daemon {
        child: cmd.spawn().expect("start unshare dockerd"),
        dir: dir.clone(),
        patience: secs(30),
    };
    let d = |args: &[&str], limit| {
        let mut full = vec!["-H", sock.as_str()];
        full.extend_from_slice(args);
        docker(&full, limit)
    };
    let d_ok = |args: &[&str]| {
        let out = d(args, secs(60));
        assert!(out.ok(), "docker -H {sock} {args:?}: {out:?}");
        out.stdout.trim().to_string()
    };
    let up = poll(secs(60), Duration::from_millis(100), || {
        d(&["version", "--format", "{{.Server.Version}}"], secs(10)).ok()
    });
    let daemon_log = || std::fs::read_to_string(dir.join("dockerd.log")).unwrap_or_default();
    assert!(
        up,
        "the throwaway dockerd did not answer:\n{}",
        daemon_log()
    );
    assert_eq!(
        d_ok(&["info", "--format", "{{.InitBinary}}"]),
        host_usher(s).to_string_lossy()
    );
    let tar = dir.join("base.tar").to_string_lossy().into_owned();
    let image = tag_of(s, "base");
    docker_ok(&["save", "-o", &tar, &image], secs(120));
    d_ok(&["load", "-q", "-i", &tar]);

    // No --init and no volume: the daemon injects usher.
    let id = d_ok(&[
        "run",
        "-d",
        "--network",
        "none",
        "-e",
        "USHER_DRAIN=1s",
        &image,
        "/app/trap-app",
    ]);
    let logs = || timed_lines(&d(&["logs", "--timestamps", &id], secs(30)));
    let ready = poll(secs(30), Duration::from_millis(100), || {
        logs().iter().any(|l| l.text.contains("trap-app: ready"))
    });
    assert!(ready, "the app did not start:\n{:?}", logs());
    assert_eq!(
        pid1_cmdline(|a| {
            let mut full = vec!["exec", id.as_str()];
            full.extend_from_slice(a);
            d(&full, secs(30))
        }),
        [DOCKER_INIT, "--", "/app/trap-app"]
    );
    assert!(d_ok(&["exec", &id, DOCKER_INIT, "--version"]).starts_with("usher "));
    let asked = epoch();
    let stop = d(&["stop", "-t", "20", &id], secs(80));
    assert!(stop.ok(), "docker stop: {stop:?}");
    assert_drained("daemon-wide init", &logs(), asked, 1.0);
    assert_eq!(d_ok(&["wait", &id]), "42");
    d_ok(&["rm", "-f", &id]);
    // A container can still opt out: --init=false makes the command PID 1.
    let plain = d_ok(&[
        "run",
        "--rm",
        "--init=false",
        "--network",
        "none",
        &image,
        "cat",
        "/proc/1/cmdline",
    ]);
    assert_eq!(plain.replace('\0', " ").trim(), "cat /proc/1/cmdline");
    drop(daemon);
    assert_eq!(
        Path::new("/sys/class/net/docker0").exists(),
        host_bridge,
        "the throwaway dockerd must leave the host's docker0 bridge as it was"
    );
}

// --- Podman ------------------------------------------------------------------

/// A private Podman store (root, runroot, tmpdir, containers.conf) in a
/// scratch directory: nothing of the machine's own Podman setup is read or
/// changed. Dropping it removes its containers and the directory.
struct Podman {
    dir: PathBuf,
}

impl Podman {
    fn new() -> Podman {
        // A stale store goes as this one will: its containers first.
        let dir = scratch_dir("usher-podman", &|stale| {
            drop(Podman {
                dir: stale.to_path_buf(),
            })
        });
        // Explicit ulimits: rootful Podman's defaults (nofile 1048576, nproc
        // pid_max) cannot be set where the engine lacks CAP_SYS_RESOURCE (a
        // container, like this repository's test machine: "error setting
        // rlimit type 7: operation not permitted"). Asking for this
        // process's own hard limits works everywhere.
        let limit = |name: &str| -> u64 {
            std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|t| {
                    t.lines()
                        .find(|l| l.starts_with(name))
                        .and_then(|l| l[name.len()..].split_whitespace().nth(1))
                        .and_then(|v| v.parse().ok())
                })
                .unwrap_or(1024)
        };
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max")
            .ok()
            .and_then(|v| v.trim().parse().ok())
            .unwrap_or(4096);
        let nofile = limit("Max open files");
        let nproc = limit("Max processes").min(pid_max);
        let conf = format!(
            "[containers]\n\
             default_ulimits = [\"nofile={nofile}:{nofile}\", \"nproc={nproc}:{nproc}\"]\n\
             [engine]\n\
             cgroup_manager = \"cgroupfs\"\n\
             events_logger = \"none\"\n"
        );
        std::fs::write(dir.join("containers.conf"), conf).expect("containers.conf");
        Podman { dir }
    }

    /// `podman ARGS...` against the private store, with `conf` as its
    /// containers.conf.
    fn run_with(&self, conf: &str, args: &[&str], limit: Duration) -> Ran {
        let p = |name: &str| self.dir.join(name).to_string_lossy().into_owned();
        let mut cmd = Command::new("podman");
        cmd.args(["--root", &p("root"), "--runroot", &p("run")])
            .args(["--tmpdir", &p("tmp"), "--storage-driver", "vfs"])
            .args(args)
            .env("CONTAINERS_CONF", p(conf))
            .env("TZ", "UTC");
        try_run(&mut cmd, limit).unwrap_or_else(|e| panic!("{e}"))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run_with("containers.conf", args, secs(60));
        assert!(out.ok(), "podman {args:?}: {out:?}");
        out.stdout.trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Only this store's containers: it is this test's alone.
        let _ = self.run_with("containers.conf", &["rm", "-a", "-f", "-t", "0"], secs(60));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// `podman run --init --init-path USHER`: Podman mounts usher at
/// /run/podman-init and runs `/run/podman-init -- CMD` as PID 1, in place of
/// catatonit; `USHER_DRAIN=2s` through `-e` drains `podman stop`, and the
/// app's code comes back. Then the engine-wide way: `init_path` in
/// containers.conf, with a bare `--init`. Rootful, with the FROM-scratch
/// image moved over by `docker save` / `podman load`. Skipped where Podman is
/// absent, unless `USHERTEST_REQUIRE_PODMAN=1` (.ci/run sets it).
#[test]
fn podman_run_init_path_runs_usher() {
    if !runs("podman") {
        return skip_unless_required("USHERTEST_REQUIRE_PODMAN", "no podman here");
    }
    let Some(s) = prepare() else {
        return;
    };
    if !is_root() {
        return skip_unless_required("USHERTEST_REQUIRE_PODMAN", "rootful Podman needs root");
    }
    let pm = Podman::new();
    let tar = pm.dir.join("base.tar").to_string_lossy().into_owned();
    docker_ok(&["save", "-o", &tar, &tag_of(s, "base")], secs(120));
    let loaded = pm.ok(&["load", "-i", &tar]);
    let image = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "))
        .map(|i| i.trim().to_string())
        .unwrap_or_else(|| panic!("podman load named no image: {loaded}"));
    let usher = host_usher(s).to_string_lossy().into_owned();
    let start = Instant::now();
    // --timeout: conmon kills the container after 5 minutes even if this
    // test dies before its cleanup runs.
    let id = pm.ok(&[
        "run",
        "-d",
        "--timeout",
        "300",
        "--network",
        "host",
        "--init",
        "--init-path",
        &usher,
        "-e",
        "USHER_DRAIN=2s",
        &image,
        "/app/trap-app",
    ]);
    let logs = || timed_lines(&pm.run_with("containers.conf", &["logs", "-t", &id], secs(30)));
    let ready = poll(secs(30), Duration::from_millis(100), || {
        logs().iter().any(|l| l.text.contains("trap-app: ready"))
    });
    assert!(ready, "the app did not start: {:?}", logs());
    eprintln!("podman: container up after {:?}", start.elapsed());
    let exec = |a: &[&str]| {
        let mut full = vec!["exec", id.as_str()];
        full.extend_from_slice(a);
        pm.run_with("containers.conf", &full, secs(30))
    };
    assert_eq!(
        pid1_cmdline(exec),
        ["/run/podman-init", "--", "/app/trap-app"],
        "Podman runs its init as `/run/podman-init -- CMD`"
    );
    let version = exec(&["/run/podman-init", "--version"]);
    assert!(version.stdout.starts_with("usher "), "{version:?}");
    let asked = epoch();
    let stop = pm.run_with("containers.conf", &["stop", "-t", "20", &id], secs(80));
    assert!(stop.ok(), "podman stop: {stop:?}");
    eprintln!("podman: stop took {:?}", stop.took);
    assert_drained("podman --init-path", &logs(), asked, 2.0);
    assert!(
        stop.took >= secs(2) && stop.took < secs(15),
        "podman stop took {:?}; expected ~2s, far below its 20s",
        stop.took
    );
    assert_eq!(pm.ok(&["inspect", "-f", "{{.State.ExitCode}}", &id]), "42");
    pm.ok(&["rm", "-f", &id]);

    // Engine-wide: init_path in containers.conf; a bare --init uses it.
    let base = std::fs::read_to_string(pm.dir.join("containers.conf")).expect("conf");
    let wide = base.replacen(
        "[containers]\n",
        &format!("[containers]\ninit_path = \"{usher}\"\n"),
        1,
    );
    std::fs::write(pm.dir.join("wide.conf"), wide).expect("wide.conf");
    let out = pm.run_with(
        "wide.conf",
        &[
            "run",
            "--rm",
            "--timeout",
            "120",
            "--network",
            "host",
            "--init",
            &image,
            "sh",
            "-c",
            "/run/podman-init --version; tr '\\0' ' ' </proc/1/cmdline",
        ],
        secs(60),
    );
    assert!(
        out.ok(),
        "podman run --init with init_path in containers.conf: {out:?}"
    );
    assert!(
        out.stdout.starts_with("usher ") && out.stdout.contains("/run/podman-init -- sh -c"),
        "init_path in containers.conf makes usher Podman's --init: {out:?}"
    );
}

// ---------------------------------------------------------------------------
// Why the container ended: usher names an OOM kill in its log (a warn line),
// and writes a summary to the termination message file, /dev/termination-log,
// when there is one (the kubelet bind-mounts it; here a host temp file is);
// where there is none, it creates none.

/// A fresh empty host file, and the `-v` value that mounts it at
/// /dev/termination-log.
fn termination_file(s: &Setup, case: &str) -> (PathBuf, String) {
    let file = s
        .work
        .join(format!("termination-{case}-{}", std::process::id()));
    std::fs::write(&file, "").expect("creating the termination file");
    let mount = format!("{}:/dev/termination-log", file.display());
    (file, mount)
}

/// Asserts the termination file's first line starts `exit code CODE` (not
/// CODE followed by more digits), the file holds every one of `has` and none
/// of `lacks`.
fn assert_termination(file: &Path, code: i32, has: &[&str], lacks: &[&str], log: &str) {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    let first = text.lines().next().unwrap_or_default();
    let rest = first.strip_prefix(&format!("exit code {code}"));
    assert!(
        rest.is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_digit()))
            && has.iter().all(|h| text.contains(h))
            && !lacks.iter().any(|l| text.contains(l)),
        "termination file: {text:?} (first line: exit code {code}; has {has:?}; lacks {lacks:?})\nlog:\n{log}"
    );
}

/// The kernel's OOM killer kills the app (32 MiB, no swap): exit 137, the
/// engine saw an OOM kill (so a plain SIGKILL cannot pass), usher warns that
/// the OOM killer killed the app's pid, and the summary says so.
fn ended_by_the_oom_killer(s: &Setup) {
    let (file, mount) = termination_file(s, "oom");
    let limits = ["--memory", "32m", "--memory-swap", "32m", "-v", &mount];
    let c = container(
        s,
        &[&limits[..], &[s.image("usher"), "/app/oom-app"]].concat(),
    );
    let code = c.wait_code(secs(60));
    let text = c.logs_text();
    let ready = c.find_log("oom-app: ready");
    let ready = ready.unwrap_or_else(|| panic!("the app never started:\n{text}"));
    let pid = number(&ready.text, "pid").expect("the app prints its pid");
    assert_eq!(code, 137, "the app died of SIGKILL:\n{text}");
    let oom = docker_ok(&["inspect", "-f", "{{.State.OOMKilled}}", &c.id], secs(30));
    assert_eq!(oom, "true", "the kernel's OOM killer did it:\n{text}");
    let warn = text
        .lines()
        .find(|l| l.contains("warn: ") && l.contains("OOM killer"));
    let warn = warn.unwrap_or_else(|| panic!("no warn line naming the OOM killer:\n{text}"));
    assert_eq!(number(warn, "pid"), Some(pid), "the app's pid: {warn}");
    assert_termination(&file, 137, &["OOM"], &[], &text);
}

/// An app ignoring TERM, killed at usher's deadline (`--grace-period 1s`):
/// exit 137, and the summary says deadline, not OOM.
fn ended_at_the_deadline(s: &Setup) {
    let (file, mount) = termination_file(s, "deadline");
    let c = container(
        s,
        &[
            "-v",
            &mount,
            "--entrypoint",
            "/usher",
            s.image("usher"),
            "--grace-period",
            "1s",
            "--",
            "/app/stubborn-app",
        ],
    );
    c.wait_log("stubborn-app: ready", secs(30));
    c.stop(30);
    let text = c.logs_text();
    assert_eq!(c.wait_code(secs(30)), 137, "{text}");
    assert!(text.contains("grace period over, killing"), "{text}");
    assert_termination(&file, 137, &["deadline"], &["OOM"], &text);
}

/// An app that exits 3: so does the container, and so says the summary.
fn ended_with_the_apps_code(s: &Setup) {
    let (file, mount) = termination_file(s, "exit3");
    let args = ["-v", &mount, s.image("usher"), "sh", "-c", "exit 3"];
    let (_c, out) = run_attached(s, &args, secs(60));
    assert_eq!(out.code, Some(3), "{out:?}");
    assert_termination(&file, 3, &[], &["OOM"], &out.stderr);
}

/// No /dev/termination-log: usher (a shell's child here, so the shell can
/// look afterwards, inside the very container) creates none.
fn no_termination_file_is_created(s: &Setup) {
    let script = "/usher -- sh -c 'exit 3'; echo \"usher exited $?\"; \
                  test -e /dev/termination-log && echo CREATED || echo ABSENT";
    let args = ["--entrypoint", "sh", s.image("usher"), "-c", script];
    let (_c, out) = run_attached(s, &args, secs(60));
    assert!(
        out.ok() && out.stdout.contains("usher exited 3\nABSENT"),
        "{out:?}"
    );
}

#[test]
fn why_the_container_ended_is_said() {
    let Some(s) = prepare() else { return };
    let cases: [fn(&Setup); 4] = [
        ended_by_the_oom_killer,
        ended_at_the_deadline,
        ended_with_the_apps_code,
        no_termination_file_is_created,
    ];
    each_at_once(&cases, |case| case(s));
}
