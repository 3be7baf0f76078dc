//! End to end in real containers: usher as PID 1 under a Docker engine.
//!
//! `tests/docker/setup.sh` builds a static usher and FROM-scratch images
//! (static busybox, usher, the apps of `tests/docker/apps`) once per run of
//! this test binary. Every container and image carries the labels
//! `usher-test=1` and `usher-test.run=<this run>` and is removed by id:
//! containers when their test ends (a drop guard, also on failure), images
//! when the test binary exits (an `atexit` handler). Where no Docker engine
//! answers, each test prints one `SKIPPED` line and passes, unless
//! `USHERTEST_REQUIRE_DOCKER=1` (set in CI) makes that a failure.
//!
//! Timing: lower bounds are exact (usher must not act early); upper bounds
//! are generous, for a loaded two-core machine. Times in container logs come
//! from `docker logs --timestamps` (the engine's clock, which is this host's)
//! and are compared with the host's clock just before `docker stop`.

mod common;
use common::*;

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, OnceLock};
use std::thread;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

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
    // A cold static build plus six image builds; generous for a slow machine.
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
    if images.len() < 6 {
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
        let out = docker(&["logs", "--timestamps", &self.id], secs(30));
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
    thread::scope(|sc| {
        let runs: Vec<_> = cases
            .iter()
            .map(|&(cmd, code, says)| {
                sc.spawn(move || {
                    let args = [&[s.image("usher")][..], cmd].concat();
                    let (c, out) = run_attached(s, &args, secs(60));
                    let c = c.expect("docker run wrote its cidfile");
                    assert_eq!(out.code, Some(code), "docker run {cmd:?}: {out:?}");
                    assert_eq!(c.wait_code(secs(30)), code, "docker wait, {cmd:?}");
                    assert!(
                        out.stderr.contains(says),
                        "{cmd:?}: usher says {says:?}: {out:?}"
                    );
                })
            })
            .collect();
        for r in runs {
            if let Err(e) = r.join() {
                std::panic::resume_unwind(e);
            }
        }
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
