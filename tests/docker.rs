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
use std::sync::OnceLock;
use std::thread;
use std::time::Duration;

// ---------------------------------------------------------------------------
// The one-time setup, and cleanup

/// What setup.sh built.
struct Setup {
    run: String,
    work: PathBuf,
    images: HashMap<String, String>,
}

impl Setup {
    /// The id of the image called `name` in setup.sh.
    fn image(&self, name: &str) -> &str {
        let image = self.images.get(name);
        image.unwrap_or_else(|| panic!("setup.sh built no image {name:?}"))
    }

    /// The labels every container of this run carries.
    fn labels(&self) -> Vec<String> {
        docker_labels(&self.run)
    }
}

/// This run's id and work dir, set once setup starts (read by the exit handler).
static RUN: OnceLock<(String, PathBuf)> = OnceLock::new();

/// The engine's setup for this test binary, or None (after one printed line)
/// when no Docker engine answers. Panics when the engine answers but the
/// setup fails: then the tests must fail, not skip.
fn prepare() -> Option<&'static Setup> {
    if !docker_engine() {
        return None;
    }
    static SETUP: OnceLock<Result<Setup, String>> = OnceLock::new();
    match SETUP.get_or_init(build_images) {
        Ok(setup) => Some(setup),
        Err(e) => panic!("Docker engine answers but the test setup failed:\n{e}"),
    }
}

fn build_images() -> Result<Setup, String> {
    let run = run_id();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("docker-{run}"));
    RUN.set((run.clone(), work.clone())).ok();
    // SAFETY: registers a plain function that takes no arguments; it runs
    // when the test binary exits (after all tests, also when some failed).
    unsafe { libc::atexit(remove_this_run) };

    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker/setup.sh");
    let mut cmd = Command::new("bash");
    cmd.arg(&script)
        .arg(&run)
        .arg(&work)
        .env_remove("CARGO_TARGET_DIR");
    cmd.env("USHER_STATIC_TARGET_DIR", static_target_dir());
    // A cold static build plus seven image builds; generous for a slow machine.
    let out = try_run(&mut cmd, secs(600))?;
    eprintln!("setup took {:?}", out.took);
    if !out.ok() {
        let (script, code, err) = (script.display(), out.code, &out.stderr);
        return Err(format!("{script} exited {code:?}\n--- stderr ---\n{err}"));
    }
    let images: HashMap<String, String> = (out.stdout.lines())
        .filter_map(|l| l.trim().split_once('='))
        .filter(|(_, id)| id.starts_with("sha256:"))
        .map(|(name, id)| (name.to_string(), id.to_string()))
        .collect();
    if images.len() < 7 {
        return Err(format!("setup.sh printed too few images:\n{}", out.stdout));
    }
    Ok(Setup { run, work, images })
}

/// At exit: removes this run's containers and images (all labelled with
/// the run) by id, and its work dir.
extern "C" fn remove_this_run() {
    if let Some((run, work)) = RUN.get() {
        remove_labelled(&format!("usher-test.run={run}"));
        let _ = std::fs::remove_dir_all(work);
    }
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
        let mut rm = Command::new("docker");
        let _ = try_run(rm.args(["rm", "-f", "-v", &self.id]), secs(60));
    }
}

/// `docker VERB <labels> ARGS...`, which must succeed: its trimmed stdout.
fn labelled(setup: &Setup, verb: &[&str], args: &[&str]) -> String {
    let mut cmd = Command::new("docker");
    cmd.args(verb).args(setup.labels()).args(args);
    let out = run_bounded(&mut cmd, secs(60));
    assert!(out.ok(), "docker {verb:?} {args:?} failed: {out:?}");
    out.stdout.trim().to_string()
}

/// `docker run -d <labels> ARGS...`.
fn container(setup: &Setup, args: &[&str]) -> Container {
    Container {
        id: labelled(setup, &["run", "-d"], args),
    }
}

/// A fresh `--cidfile` path: the client writes the container's id there,
/// so the container is removed by id even if the client hangs.
fn cidfile(setup: &Setup) -> PathBuf {
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let file = setup.work.join(format!("cid-{}-{n}", std::process::id()));
    let _ = std::fs::remove_file(&file);
    file
}

/// The guard of the container whose id the client wrote to `cidfile`.
fn written(cidfile: &Path) -> Option<Container> {
    let id = std::fs::read_to_string(cidfile).ok()?.trim().to_string();
    let _ = std::fs::remove_file(cidfile);
    (!id.is_empty()).then_some(Container { id })
}

/// `docker run <labels> ARGS...` in the foreground, with a [`cidfile`].
/// Returns the guard and the docker client's result (its exit code is the
/// container's).
fn run_attached(setup: &Setup, args: &[&str], limit: Duration) -> (Option<Container>, Ran) {
    let file = cidfile(setup);
    let mut cmd = Command::new("docker");
    cmd.arg("run")
        .args(setup.labels())
        .arg("--cidfile")
        .arg(&file);
    let result = try_run(cmd.args(args), limit);
    (written(&file), result.unwrap_or_else(|e| panic!("{e}")))
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
        text_of(&self.logs())
    }

    /// Waits up to `within` for a log line containing `needle`; returns it.
    fn wait_log(&self, needle: &str, within: Duration) -> Line {
        let mut found = None;
        poll(within, Duration::from_millis(100), || {
            found = self.find_log(needle);
            found.is_some()
        });
        found.unwrap_or_else(|| {
            let state = docker(&["inspect", "-f", "{{json .State}}", &self.id], secs(30));
            let (state, top, logs) = (state.stdout, docker(&["top", &self.id], secs(30)), self.logs_text());
            panic!("no log line with {needle:?} within {within:?}; state: {state}\n{top:?}\nlogs:\n{logs}")
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
    /// (taken just before) and its result.
    fn stop(&self, timeout: u64) -> (Sent, Ran) {
        let t = timeout.to_string();
        let asked = Sent::now();
        let out = docker(&["stop", "-t", &t, &self.id], secs(timeout + 60));
        assert!(out.ok(), "docker stop failed: {out:?}");
        (asked, out)
    }

    /// `docker exec ID ARGS...`.
    fn exec(&self, args: &[&str]) -> Ran {
        docker(&[&["exec", self.id.as_str()], args].concat(), secs(30))
    }
}

/// The lines' texts, one a line.
fn text_of(lines: &[Line]) -> String {
    let texts: Vec<&str> = lines.iter().map(|l| l.text.as_str()).collect();
    texts.join("\n")
}

/// Runs `check` on every case at once, each on its own thread (containers
/// take seconds to start and stop); a failing case fails the test.
fn each_at_once<T: Sync>(cases: &[T], check: impl Fn(&T) + Sync) {
    thread::scope(|sc| {
        let runs: Vec<_> = cases.iter().map(|c| sc.spawn(|| check(c))).collect();
        if let Some(e) = runs.into_iter().find_map(|r| r.join().err()) {
            std::panic::resume_unwind(e);
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

#[test]
fn rfc3339_parses() {
    assert_eq!(parse_rfc3339("1970-01-01T00:00:00Z"), Some(0.0));
    assert_eq!(parse_rfc3339("2000-03-01T00:00:01.5Z"), Some(951_868_801.5));
    let ts = "2024-11-23T19:40:01.000000000Z";
    assert_eq!(parse_rfc3339(ts), Some(1_732_390_801.0));
    assert_eq!(parse_rfc3339("garbage"), None);
}

/// The number after `key=` in `text` (e.g. `pid=7`).
fn number(text: &str, key: &str) -> Option<i64> {
    field(text, key)?.parse().ok()
}

// ---------------------------------------------------------------------------
// The tests

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
    let (logs, took) = (bare.logs_text(), stops[0].1.took);
    let check = |ok: bool, what: &str| assert!(ok, "bare: {what} (stop took {took:?}):\n{logs}");
    eprintln!("bare: docker stop took {took:?}");
    check(took >= secs(5), "docker stop took less than its 5s timeout");
    let code = bare.wait_code(secs(30));
    check(code == 137, &format!("exit {code}, not SIGKILL's 137"));
    check(!logs.contains("got TERM"), "the app saw TERM");
    check(
        !logs.contains("trap-app exited"),
        "the shell got past the app",
    );

    // With usher: TERM reaches the app at once, and docker stop returns
    // long before its 5s timeout.
    for (name, c, (asked, out), code) in [
        ("usher-exec", &exec, &stops[1], 42),
        ("usher-wrapped", &wrapped, &stops[2], 143),
    ] {
        let (logs, took) = (c.logs_text(), out.took);
        let delay = logged_after(c, "trap-app: got TERM", *asked);
        eprintln!("{name}: TERM after {delay:?}s, docker stop took {took:?}");
        assert_on_time(&format!("{name}: TERM"), delay, 0.0, &logs);
        let check =
            |ok: bool, what: &str| assert!(ok, "{name}: {what} (stop took {took:?}):\n{logs}");
        check(
            took < Duration::from_millis(4500),
            "docker stop took too long",
        );
        let exit = c.wait_code(secs(30));
        check(exit == code, &format!("exit {exit}, not {code}"));
        let stop = "usher: +0.000s info: stop received: signal=SIGTERM";
        check(logs.contains(stop), "usher logged no stop");
    }
    let logs = wrapped.logs_text();
    let ended = logs.contains("status=signal:SIGTERM") && !logs.contains("trap-app exited");
    assert!(ended, "usher-wrapped: the TERM ended the shell:\n{logs}");
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
    if which("python3").is_none() {
        return skipped("python3 not found (it drives the pty)");
    }
    let file = cidfile(s);
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/docker/tty.py");
    let mut cmd = Command::new("python3");
    cmd.arg(&script)
        .arg(&file)
        .args(["--", "docker", "run", "-it"]);
    cmd.args(s.labels()).arg("--cidfile").arg(&file);
    cmd.args([s.image("usher"), "/app/tty-app"]);
    let result = try_run(&mut cmd, secs(120));
    let _guard = written(&file);
    let out = result.unwrap_or_else(|e| panic!("{e}"));
    let t = &out.stdout;
    let err = &out.stderr;
    assert!(out.ok(), "a step of the tty session failed:\n{t}\n{err}");
    let line = t.lines().find(|l| l.contains("tty-app: pid="));
    assert_foreground(line.expect("a pid line"));
    let once = t.contains("winch_from_kill=1\n");
    assert!(once, "docker kill -s WINCH: forwarded exactly once:\n{t}");
    assert!(t.contains("WINCH size=30 100"), "SIGWINCH on resize:\n{t}");
    assert!(t.contains("read 'quit'"), "the app read the terminal:\n{t}");
    let code = t.contains("exit=7");
    assert!(code, "docker run -it exits with the app's code 7:\n{t}");
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
    let took = out.took;
    eprintln!("twin: TERM after {delay:?}s, docker stop took {took:?}");
    assert_on_time("TERM", delay, 5.0, &text);
    let in_time = took >= secs(5) && took < secs(15);
    assert!(in_time, "docker stop took {took:?}, for a 5s drain");
    assert_eq!(c.wait_code(secs(30)), 42, "{text}");
    let stop = "stop received: signal=SIGTERM drain=5s grace=25s";
    assert!(text.contains(stop), "{text}");
}

// ---------------------------------------------------------------------------
// An HTTP pre-stop hook in an image with no shell and no curl: `http-hook`
// (setup.sh) is FROM scratch with only a static usher and a static C app
// (tests/docker/http-app.c), ENTRYPOINT ["/usher"].

/// Whether `path` (as `tar -t` lists it) is one the engine itself puts into
/// every container, whatever the image holds.
fn engine_made(path: &str) -> bool {
    #[rustfmt::skip]
    let etc = ["etc/", "etc/hostname", "etc/hosts", "etc/mtab", "etc/resolv.conf"];
    let trees = ["dev/", "proc/", "sys/"];
    path == ".dockerenv" || etc.contains(&path) || trees.iter().any(|t| path.starts_with(t))
}

/// Every path in the image `name`, from `docker export` of a container
/// created from it (never started), less the engine's own (see
/// [`engine_made`]), sorted.
fn image_paths(s: &Setup, name: &str) -> Vec<String> {
    // `base` has no ENTRYPOINT: the engine wants a command, never run here.
    let create = [s.image(name), "never-run"];
    let id = labelled(s, &["create"], &create);
    let c = Container { id };
    let tar = format!("export-{name}-{}.tar", std::process::id());
    let tar = s.work.join(tar);
    let tar_s = tar.to_string_lossy().into_owned();
    docker_ok(&["export", "-o", &tar_s, &c.id], secs(120));
    let list = run_bounded(Command::new("tar").args(["-tf", &tar_s]), secs(60));
    let _ = std::fs::remove_file(&tar);
    assert!(list.ok(), "tar -tf {tar_s}: {list:?}");
    let mut paths: Vec<String> = (list.stdout.lines())
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
    assert_eq!(paths, ["http-app", "usher"], "nothing else");
    let base = image_paths(s, "base");
    let sh = base.iter().any(|p| p == "bin/sh");
    assert!(sh, "the listing sees a shell where there is one: {base:?}");
    let image = s.image("http-hook");
    let (_c, out) = run_attached(
        s,
        &["--entrypoint", "/bin/sh", image, "-c", "true"],
        secs(60),
    );
    assert_eq!(out.code, Some(127), "no /bin/sh to run: {out:?}");
    let said = out.stderr.contains("/bin/sh") && out.stderr.contains("no such file or directory");
    assert!(said, "the engine says there is no /bin/sh: {out:?}");
}

/// `http-hook` as `usher --pre-stop "POST http://127.0.0.1:PORT/PATH"
/// --drain 1s --grace-period 10s -- /http-app PORT` on the host's network
/// (PORT free on loopback), stopped with `docker stop -t 20` once the app
/// listens. `POST /drain` answers 200: usher logs `pre-stop answered ...
/// http=200` at info; `POST /fail` answers 503: `pre-stop failed ...
/// http=503` at warn, and the sequence goes on, as the kubelet's does.
/// Either way the request reached the app (which logs `PATH requested` only
/// for a POST to its path) after the stop and before TERM, which came after
/// the 1 s drain, not before (by docker's clock and by usher's); the app
/// exited 0 and so did the container, long before docker's 20 s. Only
/// usher's own HTTP client can have made the request: the image has no
/// shell and no curl (see the test above).
#[test]
fn http_pre_stop_hook_in_a_scratch_image_answered_or_failing() {
    let Some(s) = prepare() else { return };
    let cases = [
        ("drain", "info: pre-stop answered", "200"),
        ("fail", "warn: pre-stop failed", "503"),
    ];
    each_at_once(&cases, |&(path, ended, status)| {
        let port = free_port().to_string();
        let hook = format!("POST http://127.0.0.1:{port}/{path}");
        let image = s.image("http-hook");
        let app = words("--drain 1s --grace-period 10s -- /http-app");
        let c = container(
            s,
            &[
                &["--network", "host", image, "--pre-stop", &hook],
                &app[..],
                &[&port],
            ]
            .concat(),
        );
        c.wait_log("http-app: ready", secs(30));
        let (asked, out) = c.stop(20);
        let (logs, text) = (c.logs(), c.logs_text());
        let at = |needle: &str| {
            let found = logs.iter().position(|l| l.text.contains(needle));
            found.unwrap_or_else(|| panic!("no line with {needle:?}:\n{text}"))
        };
        let received = at("stop received: signal=SIGTERM drain=1s grace=10s");
        let (started, end) = (at("pre-stop started"), at(ended));
        let request = at(&format!("http-app: {path} requested"));
        let (forwarded, term) = (at("forwarded: signal=SIGTERM"), at("http-app: got TERM"));
        let check = |ok: bool, what: &str| assert!(ok, "{path}: {what}:\n{text}");
        // The app's two lines share its stdout: their order is exact.
        check(request < term, "the hook's request came after TERM");
        check(
            logs[request].at >= asked.epoch,
            "the request came before the stop",
        );
        // usher's lines share its stderr; the hook ended long before the drain.
        let order = received < started && started < end && end < forwarded;
        check(
            order,
            "usher's timeline is not: stop, hook started, hook ended, TERM",
        );
        let (delay, took) = (logs[term].at - asked.epoch, out.took);
        eprintln!("http hook {path}: TERM after {delay:.3}s, docker stop took {took:?}");
        assert_on_time("TERM, by docker's clock", Some(delay), 1.0, &text);
        let by_usher = line_t(&logs[forwarded].text);
        assert_on_time("the forwarded TERM, by usher's clock", by_usher, 1.0, &text);
        check(
            took < secs(12),
            "docker stop took 12s or more, for a 1s drain",
        );
        assert_eq!(c.wait_code(secs(30)), 0, "the app's own code:\n{text}");
        assert_eq!(field(&logs[end].text, "http"), Some(status), "{text}");
    });
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

/// Lines of `docker logs --timestamps` (or `podman logs -t`), both streams
/// merged in time order.
fn timed_lines(out: &Ran) -> Vec<Line> {
    let mut lines: Vec<Line> = (out.stdout.lines().chain(out.stderr.lines()))
        .filter_map(|l| {
            let (ts, text) = l.split_once(' ')?;
            let (at, text) = (parse_rfc3339(ts)?, text.trim_end_matches('\r').into());
            Some(Line { at, text })
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
    let words = out.stdout.split('\0').filter(|w| !w.is_empty());
    words.map(String::from).collect()
}

/// Checks the drain timeline of an app that traps TERM (trap-app) under
/// `USHER_DRAIN=drain`: TERM reached the app `drain` seconds after the stop
/// was asked, not before, and not far later than `drain` after usher logged
/// the stop's arrival (which, from a slow client such as Python's Compose
/// on a loaded machine, can come seconds after the request).
fn assert_drained(what: &str, lines: &[Line], asked: f64, drain: f64) {
    let text = text_of(lines);
    let find = |needle: &str| {
        let found = lines.iter().find(|l| l.text.contains(needle));
        found.unwrap_or_else(|| panic!("{what}: no line with {needle:?}:\n{text}"))
    };
    let received = find(&format!("stop received: signal=SIGTERM drain={drain}s"));
    let term = find("trap-app: got TERM");
    let (delay, after_receipt) = (term.at - asked, term.at - received.at);
    eprintln!(
        "{what}: TERM reached the app {delay:.3}s after the stop was asked, \
         {after_receipt:.3}s after usher got it"
    );
    let early = format!("{what}: TERM after {delay:.3}s, before the {drain}s drain ended:\n{text}");
    assert!(delay >= drain, "{early}");
    let late = format!(
        "{what}: TERM {after_receipt:.3}s after usher got the stop, expected ~{drain}s:\n{text}"
    );
    assert!(after_receipt < drain + 3.0, "{late}");
}

/// Through `engine` (a command line's tail to `docker`, `docker -H SOCK`
/// or `podman` with its store): the container `id` runs `INIT -- CMD` as
/// PID 1 (`init`, then /app/trap-app), and INIT is usher; `ENGINE stop -t
/// 20` takes the `drain`, not less, and less than `limit` seconds in all
/// (far below its 20), and the app's own code, 42, comes back.
fn assert_init_is_usher(
    what: &str,
    engine: impl Fn(&[&str]) -> Ran,
    id: &str,
    init: &str,
    drain: u64,
    limit: u64,
) {
    let logs = || timed_lines(&engine(&["logs", "-t", id]));
    let ready = poll(secs(30), Duration::from_millis(100), || {
        logs().iter().any(|l| l.text.contains("trap-app: ready"))
    });
    assert!(ready, "{what}: the app did not start: {:?}", logs());
    let pid1 = pid1_cmdline(|a| engine(&[&["exec", id][..], a].concat()));
    assert_eq!(pid1, [init, "--", "/app/trap-app"], "{what}: `INIT -- CMD`");
    let version = engine(&["exec", id, init, "--version"]);
    let usher = version.stdout.starts_with("usher ");
    assert!(usher, "{what}: INIT is not usher: {version:?}");
    let asked = epoch();
    let stop = engine(&["stop", "-t", "20", id]);
    assert!(stop.ok(), "{what}: stop: {stop:?}");
    let took = stop.took;
    eprintln!("{what}: stop took {took:?}");
    assert_drained(what, &logs(), asked, drain as f64);
    let in_time = took >= secs(drain) && took < secs(limit);
    assert!(in_time, "{what}: stop took {took:?}, for a {drain}s drain");
    let code = engine(&["inspect", "-f", "{{.State.ExitCode}}", id]);
    assert_eq!(code.stdout.trim(), "42", "{what}: the app's own code");
}

/// The issue's recipe, verbatim: `docker run --init -v usher:/sbin/docker-init:ro
/// -e USHER_DRAIN=2s IMAGE CMD`. Docker runs `/sbin/docker-init -- CMD` as PID
/// 1, and the file there is usher (not the engine's tini): `docker stop`
/// drains 2s, then the app gets TERM, and its exit code (42) comes back.
#[test]
fn docker_run_init_runs_usher_mounted_over_docker_init() {
    let Some(s) = prepare() else { return };
    let volume = init_volume(s);
    let env = ["-e", "USHER_DRAIN=2s", s.image("base"), "/app/trap-app"];
    let c = container(s, &[&["--init", "-v", &volume][..], &env].concat());
    let docker = |args: &[&str]| docker(args, secs(80));
    assert_init_is_usher("docker --init", docker, &c.id, DOCKER_INIT, 2, 12);
}

/// Under `--init` usher's arguments are `-- ENTRYPOINT... CMD...`: usher reads
/// no option after the `--`, so a command that looks like an option is run
/// as the app (and not found: 127), options come from `USHER_*` (a bad one is
/// a usage error, 2, naming the variable; a misspelt one is reported), and
/// an image whose own ENTRYPOINT is usher runs under the injected usher with
/// the app's code coming through both.
#[test]
fn docker_init_gives_usher_only_dashdash_and_the_command() {
    let Some(s) = prepare() else { return };
    let volume = init_volume(s);
    let (base, own) = (s.image("base"), s.image("usher"));
    // (docker run arguments after the image's volume, exit code, stderr has)
    #[rustfmt::skip]
    let cases: &[(&[&str], i32, &str)] = &[
        (&[base, "sh", "-c", "exit 3"], 3, ""),
        (&[base, "--help"], 127, "cannot run \"--help\""),
        (&[base, "-s", "true"], 127, "cannot run \"-s\""),
        (&["-e", "USHER_DRAIN=5", base, "true"], 2, "USHER_DRAIN \"5\" has no unit"),
        (&["-e", "USHER_DRAINN=5s", base, "true"], 0, "unknown variable ignored (a typo?): name=USHER_DRAINN"),
        (&[own, "sh", "-c", "exit 5"], 5, ""),
    ];
    each_at_once(cases, |&(args, code, says)| {
        let full = [&["--init", "-v", volume.as_str()][..], args].concat();
        let (c, out) = run_attached(s, &full, secs(60));
        let _c = c.expect("docker run wrote its cidfile");
        assert_eq!(out.code, Some(code), "docker run --init {args:?}: {out:?}");
        let said = out.stderr.contains(says);
        assert!(said, "{args:?}: usher says {says:?}: {out:?}");
    });
}

/// The stop sequence under `--init`, three containers stopped together:
/// - `--stop-signal QUIT` with `USHER_DRAIN=3s`: QUIT is not a stop signal
///   for usher, so it is forwarded at once, without the drain...
/// - ...unless `USHER_STOP_ON=QUIT`: then QUIT drains 3s first;
/// - an image with usher as its own ENTRYPOINT under `--init` and
///   `USHER_DRAIN=1s`: both ushers read the variable, so the drains add up
///   (TERM reaches the app after 1s + 1s).
///
/// (The deadline under Docker: `why_the_container_ended_is_said`.)
#[test]
fn docker_init_stop_sequence_from_env() {
    let Some(s) = prepare() else { return };
    let volume = init_volume(s);
    let init = ["--init", "-v", volume.as_str()];
    let quit_app = "trap 'echo quit-app: got QUIT; exit 42' QUIT; \
                    echo quit-app: ready; while :; do sleep 1 & wait $!; done";
    let quit = |stop_on: &str| {
        let env = format!("--stop-signal QUIT -e USHER_DRAIN=3s {stop_on}");
        let app = [s.image("base"), "sh", "-c", quit_app];
        container(s, &[&init[..], &words(&env), &app].concat())
    };
    let (quit_now, quit_drained) = (quit(""), quit("-e USHER_STOP_ON=QUIT"));
    let nested = ["-e", "USHER_DRAIN=1s", s.image("usher"), "/app/trap-app"];
    let nested = container(s, &[&init[..], &nested].concat());
    quit_now.wait_log("quit-app: ready", secs(30));
    quit_drained.wait_log("quit-app: ready", secs(30));
    nested.wait_log("trap-app: ready", secs(30));
    let both = [DOCKER_INIT, "--", "/usher", "--", "/app/trap-app"];
    let pid1 = pid1_cmdline(|a| nested.exec(a));
    assert_eq!(pid1, both, "the engine's init wraps the image's own usher");
    let [qn, qd, n] = thread::scope(|sc| {
        let stops = [&quit_now, &quit_drained, &nested].map(|c| sc.spawn(|| c.stop(20)));
        stops.map(|h| h.join().unwrap())
    });

    let quit_at = |c: &Container, asked: f64| {
        let text = c.logs_text();
        let line = c.find_log("quit-app: got QUIT");
        let line = line.unwrap_or_else(|| panic!("the app never got QUIT:\n{text}"));
        assert_eq!(c.wait_code(secs(30)), 42, "{text}");
        let delay = line.at - asked;
        (line, delay, text)
    };
    let (_, now, text) = quit_at(&quit_now, qn.0.epoch);
    eprintln!("--init QUIT without USHER_STOP_ON: forwarded after {now:.3}s");
    let at_once = "without USHER_STOP_ON=QUIT, QUIT goes at once, not after the drain";
    assert!(now < 2.0, "{at_once} ({now:.3}s):\n{text}");
    let (quit, drained, text) = quit_at(&quit_drained, qd.0.epoch);
    let received = quit_drained.find_log("stop received: signal=SIGQUIT drain=3s");
    let received = received.unwrap_or_else(|| panic!("QUIT was no stop:\n{text}"));
    eprintln!("--init QUIT with USHER_STOP_ON=QUIT: forwarded after {drained:.3}s");
    let drains = drained >= 3.0 && quit.at - received.at < 6.0;
    assert!(drains, "QUIT drains 3s ({drained:.3}s):\n{text}");

    let (lines, text) = (nested.logs(), nested.logs_text());
    let find = |needle: &str, what: &str| {
        let found = lines.iter().find(|l| l.text.contains(needle));
        found.unwrap_or_else(|| panic!("{what}:\n{text}"))
    };
    let term = find("trap-app: got TERM", "the nested app never got TERM");
    let outer = find("stop received: signal=SIGTERM drain=1s", "no stop logged");
    let delay = term.at - n.0.epoch;
    eprintln!("--init over usher: TERM after {delay:.3}s (two 1s drains)");
    let added = delay >= 2.0 && term.at - outer.at < 5.0;
    assert!(added, "both drain 1s, in turn ({delay:.3}s):\n{text}");
    let stops = text.matches("stop received: signal=SIGTERM drain=1s");
    let stops = stops.count();
    assert_eq!(stops, 2, "{text}");
    assert_eq!(nested.wait_code(secs(30)), 42, "{text}");
}

/// The Compose tool on this machine: `docker compose` (v2) or
/// `docker-compose` (v1), or why there is none.
fn compose_command() -> Result<Vec<&'static str>, String> {
    let mut v2 = Command::new("docker");
    if try_run(v2.args(["compose", "version"]), secs(30)).is_ok_and(|o| o.ok()) {
        return Ok(vec!["docker", "compose"]);
    }
    match try_run(Command::new("docker-compose").arg("version"), secs(30)) {
        Ok(o) if o.ok() => Ok(vec!["docker-compose"]),
        Ok(o) => Err(format!("`docker-compose version` failed: {o:?}")),
        Err(e) => Err(format!("no `docker compose`, no `docker-compose` ({e})")),
    }
}

/// Compose: `init: true` and usher as a volume over /sbin/docker-init, with
/// `USHER_DRAIN` in `environment:` and `stop_grace_period: 20s`. `compose
/// stop` drains 2s, then the app gets TERM and exits 42. (Compose reaches
/// the same engine, so the same labels and cleanup by id apply.)
#[test]
fn compose_init_true_with_usher_volume() {
    let Some(s) = prepare() else { return };
    let compose = match compose_command() {
        Ok(c) => c,
        Err(why) => return skip("USHERTEST_REQUIRE_DOCKER", &why),
    };
    let dir = s.work.join(format!("compose-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("compose dir");
    let file = dir.join("compose.yml");
    // The labels of `docker_labels`, as Compose writes them.
    let labels = s.labels();
    let labels: Vec<String> = (labels.iter().skip(1).step_by(2))
        .map(|l| l.replacen('=', ": \"", 1) + "\"")
        .collect();
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
      {labels}
"#,
        image = tag_of(s, "base"),
        volume = init_volume(s),
        labels = labels.join("\n      "),
    );
    std::fs::write(&file, yaml).expect("compose file");
    let project = format!("usher-test-{}", s.run);
    let file = file.to_string_lossy().into_owned();
    let compose_run = |args: &[&str], limit| {
        let mut cmd = Command::new(compose[0]);
        cmd.args(&compose[1..]).args(["-p", &project, "-f", &file]);
        cmd.args(args).env_remove("COMPOSE_FILE");
        cmd.env_remove("COMPOSE_PROJECT_NAME");
        try_run(&mut cmd, limit).unwrap_or_else(|e| panic!("{e}"))
    };
    let up = compose_run(&["up", "-d"], secs(120));
    let id = compose_run(&["ps", "-q", "app"], secs(60)).stdout;
    let id = id.trim().to_string();
    let c = (!id.is_empty()).then(|| Container { id });
    assert!(up.ok(), "compose up failed: {up:?}");
    let c = c.unwrap_or_else(|| panic!("compose up started no container: {up:?}"));
    c.wait_log("trap-app: ready", secs(30));
    let pid1 = pid1_cmdline(|a| c.exec(a));
    assert_eq!(pid1, [DOCKER_INIT, "--", "/app/trap-app"]);
    let asked = epoch();
    let stop = compose_run(&["stop"], secs(80));
    assert!(stop.ok(), "compose stop failed: {stop:?}");
    let took = stop.took;
    eprintln!("compose: stop took {took:?}");
    assert_drained("compose", &c.logs(), asked, 2.0);
    assert!(took >= secs(2), "compose stop took {took:?}");
    // 42, not 137: the app ended on its own, not at stop_grace_period.
    assert_eq!(c.wait_code(secs(30)), 42, "{}", c.logs_text());
    let down = compose_run(&["down"], secs(80));
    assert!(down.ok(), "compose down failed: {down:?}");
}

// --- a throwaway Docker daemon with "init-path" ------------------------------

/// A scratch directory in the system's temp dir (short paths: the daemon's
/// sockets live there), named `PREFIX-PID-N` so that a later run can tell
/// whether its owner is gone. Before making it, removes those whose test
/// process is gone, after `on_stale` has ended what such a run left running.
fn scratch_dir(prefix: &str, on_stale: &dyn Fn(&Path)) -> PathBuf {
    let tmp = std::env::temp_dir();
    for e in std::fs::read_dir(&tmp).into_iter().flatten().flatten() {
        let name = e.file_name().to_string_lossy().into_owned();
        let rest = name.strip_prefix(&format!("{prefix}-"));
        let Some(owner) = rest.and_then(|r| r.split('-').next()) else {
            continue;
        };
        if !owner.is_empty() && !Path::new(&format!("/proc/{owner}")).exists() {
            on_stale(&e.path());
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
    static N: AtomicUsize = AtomicUsize::new(0);
    let n = N.fetch_add(1, Ordering::Relaxed);
    let dir = tmp.join(format!("{prefix}-{}-{n}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("scratch dir");
    dir
}

/// For a stale throwaway dockerd's directory: SIGKILLs the pid in its
/// pidfile if, and only if, that process's command line names the directory.
fn end_stale_dockerd(dir: &Path) {
    let pid = std::fs::read_to_string(dir.join("docker.pid")).unwrap_or_default();
    let Ok(pid) = pid.trim().parse::<i32>() else {
        return;
    };
    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    if String::from_utf8_lossy(&cmdline).contains(&*dir.to_string_lossy()) {
        let _ = kill(pid, libc::SIGKILL);
        std::thread::sleep(Duration::from_millis(500));
    }
}

/// The throwaway dockerd (unshare, which execs it) and its directory: on
/// drop it gets SIGTERM, then, after 30 s, SIGKILL with everything under
/// it, by pid; and the directory goes.
struct Dockerd {
    child: std::process::Child,
    dir: PathBuf,
}

impl Drop for Dockerd {
    fn drop(&mut self) {
        let _ = kill(self.child.id() as i32, libc::SIGTERM);
        let gone = poll(secs(30), Duration::from_millis(50), || {
            matches!(self.child.try_wait(), Ok(Some(_)))
        });
        if !gone {
            kill_tree(self.child.id() as i32);
            let _ = self.child.wait();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
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
    let Some(s) = prepare() else { return };
    let missing = [
        (!root(), "it needs root to start a second dockerd"),
        (which("dockerd").is_none(), "no dockerd binary here"),
        (which("unshare").is_none(), "no unshare (util-linux)"),
    ];
    if let Some((_, why)) = missing.into_iter().find(|m| m.0) {
        return skip("USHERTEST_REQUIRE_DOCKER", why);
    }
    let host_bridge = Path::new("/sys/class/net/docker0").exists();
    let dir = scratch_dir("usher-dockerd", &end_stale_dockerd);
    let usher = host_usher(s).to_string_lossy().into_owned();
    let config = format!("{{\"init\": true, \"init-path\": \"{usher}\"}}\n");
    std::fs::write(dir.join("daemon.json"), config).expect("daemon.json");
    let log = std::fs::File::create(dir.join("dockerd.log")).expect("dockerd.log");
    let sock = format!("unix://{}", dir.join("docker.sock").display());
    let mut cmd = Command::new("unshare");
    cmd.args(words("--net --mount --propagation private dockerd -H"))
        .arg(&sock);
    // Its own config, data root, exec root and pidfile, in its directory.
    #[rustfmt::skip]
    let own = [("--config-file", "daemon.json"), ("--data-root", "data"), ("--exec-root", "exec"), ("--pidfile", "docker.pid")];
    for (flag, name) in own {
        cmd.arg(flag).arg(dir.join(name));
    }
    let no_net = "--bridge=none --iptables=false --ip-masq=false --ip-forward=false";
    cmd.args(words(no_net))
        .args(["--userland-proxy=false", "--storage-driver", "vfs"]);
    cmd.stdin(Stdio::null())
        .stdout(log.try_clone().expect("log fd"));
    cmd.stderr(log).process_group(0);
    let child = cmd.spawn().expect("start unshare dockerd");
    let daemon = Dockerd { child, dir };
    let d = |args: &[&str], limit| docker(&[&["-H", sock.as_str()][..], args].concat(), limit);
    let d_ok = |args: &[&str]| {
        let out = d(args, secs(60));
        assert!(out.ok(), "docker -H {sock} {args:?}: {out:?}");
        out.stdout.trim().to_string()
    };
    let up = poll(secs(60), Duration::from_millis(100), || {
        d(&["version", "--format", "{{.Server.Version}}"], secs(10)).ok()
    });
    let log = std::fs::read_to_string(daemon.dir.join("dockerd.log")).unwrap_or_default();
    assert!(up, "the throwaway dockerd did not answer:\n{log}");
    assert_eq!(d_ok(&["info", "--format", "{{.InitBinary}}"]), usher);
    let tar = daemon.dir.join("base.tar").to_string_lossy().into_owned();
    let image = tag_of(s, "base");
    docker_ok(&["save", "-o", &tar, &image], secs(120));
    d_ok(&["load", "-q", "-i", &tar]);

    // No --init and no volume: the daemon injects usher.
    let run = words("run -d --network none -e USHER_DRAIN=1s");
    let id = d_ok(&[&run[..], &[&image, "/app/trap-app"]].concat());
    let engine = |args: &[&str]| d(args, secs(80));
    assert_init_is_usher("daemon-wide init", engine, &id, DOCKER_INIT, 1, 11);
    d_ok(&["rm", "-f", &id]);
    // A container can still opt out: --init=false makes the command PID 1.
    let opt_out = words("run --rm --init=false --network none");
    let plain = d_ok(&[&opt_out[..], &[&image, "cat", "/proc/1/cmdline"]].concat());
    assert_eq!(plain.replace('\0', " ").trim(), "cat /proc/1/cmdline");
    drop(daemon);
    let bridge = Path::new("/sys/class/net/docker0").exists();
    assert_eq!(bridge, host_bridge, "the host's docker0 bridge changed");
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
            let dir = stale.to_path_buf();
            drop(Podman { dir })
        });
        // Explicit ulimits: rootful Podman's defaults (nofile 1048576, nproc
        // pid_max) cannot be set where the engine lacks CAP_SYS_RESOURCE (a
        // container, like this repository's test machine: "error setting
        // rlimit type 7: operation not permitted"). Asking for this
        // process's own hard limits works everywhere.
        let limits = std::fs::read_to_string("/proc/self/limits").unwrap_or_default();
        let limit = |name: &str| -> u64 {
            let line = limits.lines().find_map(|l| l.strip_prefix(name));
            let hard = line.and_then(|l| l.split_whitespace().nth(1));
            hard.and_then(|v| v.parse().ok()).unwrap_or(1024)
        };
        let pid_max = std::fs::read_to_string("/proc/sys/kernel/pid_max").unwrap_or_default();
        let nofile = limit("Max open files");
        let nproc = limit("Max processes").min(pid_max.trim().parse().unwrap_or(4096));
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

    /// `podman ARGS...` with the store's own containers.conf, for at most a minute.
    fn run(&self, args: &[&str]) -> Ran {
        self.run_with("containers.conf", args, secs(60))
    }

    fn ok(&self, args: &[&str]) -> String {
        let out = self.run(args);
        assert!(out.ok(), "podman {args:?}: {out:?}");
        out.stdout.trim().to_string()
    }
}

impl Drop for Podman {
    fn drop(&mut self) {
        // Only this store's containers: it is this test's alone.
        let _ = self.run(&["rm", "-a", "-f", "-t", "0"]);
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
    if which("podman").is_none() {
        return skip("USHERTEST_REQUIRE_PODMAN", "no podman here");
    }
    let Some(s) = prepare() else { return };
    if !root() {
        return skip("USHERTEST_REQUIRE_PODMAN", "rootful Podman needs root");
    }
    let pm = Podman::new();
    let tar = pm.dir.join("base.tar").to_string_lossy().into_owned();
    docker_ok(&["save", "-o", &tar, &tag_of(s, "base")], secs(120));
    let loaded = pm.ok(&["load", "-i", &tar]);
    let image = loaded
        .lines()
        .find_map(|l| l.strip_prefix("Loaded image: "));
    let image = image
        .unwrap_or_else(|| panic!("podman load named no image: {loaded}"))
        .trim();
    let usher = host_usher(s).to_string_lossy().into_owned();
    // --timeout: conmon kills the container after 5 minutes even if this
    // test dies before its cleanup runs.
    let run = words("run -d --timeout 300 --network host --init --init-path");
    let env = ["-e", "USHER_DRAIN=2s", image, "/app/trap-app"];
    let id = pm.ok(&[&run[..], &[&usher], &env].concat());
    let engine = |args: &[&str]| pm.run_with("containers.conf", args, secs(80));
    assert_init_is_usher("podman --init-path", engine, &id, "/run/podman-init", 2, 15);
    pm.ok(&["rm", "-f", &id]);

    // Engine-wide: init_path in containers.conf; a bare --init uses it.
    let base = std::fs::read_to_string(pm.dir.join("containers.conf")).expect("conf");
    let path = format!("[containers]\ninit_path = \"{usher}\"\n");
    let wide = base.replacen("[containers]\n", &path, 1);
    std::fs::write(pm.dir.join("wide.conf"), wide).expect("wide.conf");
    let run = words("run --rm --timeout 120 --network host --init");
    let script = "/run/podman-init --version; tr '\\0' ' ' </proc/1/cmdline";
    let args = [&run[..], &[image, "sh", "-c", script]].concat();
    let out = pm.run_with("wide.conf", &args, secs(60));
    assert!(out.ok(), "podman run --init, init_path: {out:?}");
    let (version, pid1) = ("usher ", "/run/podman-init -- sh -c");
    let usher_is_init = out.stdout.starts_with(version) && out.stdout.contains(pid1);
    assert!(usher_is_init, "init_path makes usher the --init: {out:?}");
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
    let first_ok = rest.is_some_and(|r| !r.starts_with(|c: char| c.is_ascii_digit()));
    let ok =
        first_ok && has.iter().all(|h| text.contains(h)) && !lacks.iter().any(|l| text.contains(l));
    let want = format!("first line: exit code {code}; has {has:?}; lacks {lacks:?}");
    assert!(ok, "termination file: {text:?} ({want})\nlog:\n{log}");
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
    // The engine learns of the OOM kill from an event that may trail the exit.
    let inspect = || docker_ok(&["inspect", "-f", "{{.State.OOMKilled}}", &c.id], secs(30));
    let oom = wait_until(secs(10), || inspect() == "true");
    let said = inspect();
    assert!(oom, "an OOM kill, said the engine: {said}\n{text}");
    let warn = (text.lines()).find(|l| l.contains("warn: ") && l.contains("OOM killer"));
    let warn = warn.unwrap_or_else(|| panic!("no warn line naming the OOM killer:\n{text}"));
    assert_eq!(number(warn, "pid"), Some(pid), "the app's pid: {warn}");
    assert_termination(&file, 137, &["OOM"], &[], &text);
}

/// An app ignoring TERM under `usher --grace-period 2s`, `docker stop -t
/// 30`: usher SIGKILLs it at 2 s, not before (by usher's clock and by
/// docker's), its log names the app's pid in the escalation line, it exits
/// 137 long before docker's 30 s, and the summary says deadline, not OOM.
fn ended_at_the_deadline(s: &Setup) {
    let (file, mount) = termination_file(s, "deadline");
    let flags = ["-v", &mount, "--entrypoint", "/usher", s.image("usher")];
    let usher = words("--grace-period 2s -- /app/stubborn-app");
    let c = container(s, &[&flags[..], &usher].concat());
    let ready = c.wait_log("stubborn-app: ready", secs(30));
    let pid = number(&ready.text, "pid").expect("the app prints its pid") as i32;
    let (asked, out) = c.stop(30);
    let (text, took) = (c.logs_text(), out.took);
    eprintln!("deadline: docker stop took {took:?}");
    let in_time = took >= secs(2) && took < secs(15);
    assert!(in_time, "docker stop took {took:?}, for a 2s grace period");
    assert_eq!(c.wait_code(secs(30)), 137, "{text}");
    let first = text.contains("stubborn-app: ignoring TERM");
    assert!(first, "the app got TERM first:\n{text}");
    let kill = c.find_log("warn: grace period over, killing: signal=SIGKILL pids=");
    let kill = kill.unwrap_or_else(|| panic!("no escalation line:\n{text}"));
    let named = pids_field(&kill.text).contains(&pid);
    assert!(named, "the line names the app's pid {pid}: {kill:?}");
    assert_on_time("the kill, by usher's clock", line_t(&kill.text), 2.0, &text);
    let by_docker = Some(kill.at - asked.epoch);
    assert_on_time("the kill, by docker's", by_docker, 2.0, &text);
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
    let absent = out.ok() && out.stdout.contains("usher exited 3\nABSENT");
    assert!(absent, "{out:?}");
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
