//! A rolling restart through a real load balancer that pools its server
//! connections: without a drain it loses requests, with a drain that covers
//! the balancer's lag it loses none, and usher's adaptive drain
//! (`--drain 0s..10s`) loses none and lets the stop signal through well
//! before MAX once the traffic has stopped.
//!
//! A reduced run of `examples/zero-downtime/` (see docs/zero-downtime.md):
//! `images.sh` builds a static usher and a FROM-scratch nginx image,
//! `harness.py` puts two replicas behind haproxy on 127.0.0.1 with
//! `http-reuse always` (many requests share few server connections, so most
//! of the traffic an old replica sees is bytes on established connections,
//! not new ones), sends 100 requests/s through it, probes each replica
//! directly once a second as kubelet does, and replaces replicas the way a
//! Deployment does: the replacement first, then `docker stop` of the old
//! one, which haproxy stops using only LAG seconds later. Each run makes two
//! stops, with lags of 1 s and 2 s. Three runs, all `usher -r TERM:QUIT
//! --grace-period 12s`:
//! - no drain: must lose requests (else this test measures nothing);
//! - `--drain 3s` (≥ the worst lag): must lose none;
//! - `--drain 0s..10s`: must lose none, and usher's `forwarded` line must
//!   come less than LAG + 4 s after `docker stop` (5 s for a 1 s lag), far
//!   from MAX (10 s). An usher without the adaptive drain refuses the range
//!   (exit 2): that part then says `SKIPPED` — unless usher's `--help` offers
//!   a range for `--drain`, when a refusal fails the test.
//!
//! Why the lags are not shorter: the lag runs from the `docker stop` call,
//! and on a loaded machine its signal reaches the container up to several
//! hundred ms later, which shortens the window in which the baseline loses
//! requests.
//!
//! Where Docker, nginx, haproxy or python3 is missing, the test prints one
//! `SKIPPED` line and passes, unless `USHERTEST_REQUIRE_DOCKER=1` (set by
//! .ci/run) makes that a failure. Its containers and images carry the label
//! `usher-zd.run=<this run>` and are removed by id when it ends, pass or fail.

mod common;
use common::{skipped, try_run};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

/// `docker ARGS...` for at most a minute; its stdout, or None.
fn docker(args: &[&str]) -> Option<String> {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    match try_run(&mut cmd, Duration::from_secs(60)) {
        Ok(out) if out.code == Some(0) => Some(out.stdout),
        _ => None,
    }
}

/// Whether `name` is an executable in PATH or in /usr/sbin (where Debian
/// puts nginx and haproxy, and which a non-root PATH may lack).
fn have(name: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let found = path
        .split(':')
        .chain(["/usr/sbin", "/sbin"])
        .any(|dir| Path::new(dir).join(name).is_file());
    found
}

/// Why the test cannot run here, if it cannot.
fn missing() -> Option<String> {
    for tool in ["docker", "nginx", "haproxy", "python3", "file"] {
        if !have(tool) {
            return Some(format!("no {tool} (the Debian packages nginx, haproxy, python3, file and a Docker engine are needed)"));
        }
    }
    match docker(&["version", "--format", "{{.Server.Version}}"]) {
        Some(v) if !v.trim().is_empty() => None,
        _ => Some("no Docker engine answers (docker version)".into()),
    }
}

/// A base port with it and the next four free on 127.0.0.1 (haproxy there,
/// the replicas after it), away from the example's default 18480.
fn free_ports() -> u16 {
    (18500..19000)
        .step_by(5)
        .find(|base| (0..5).all(|i| TcpListener::bind(("127.0.0.1", base + i)).is_ok()))
        .expect("no five free ports on 127.0.0.1 between 18500 and 19000")
}

/// This run's containers and images, removed by id when dropped (also when
/// the test panics); what a killed run leaves, the next images.sh removes.
struct Cleanup {
    run: String,
    work: PathBuf,
}

impl Drop for Cleanup {
    fn drop(&mut self) {
        let label = format!("label=usher-zd.run={}", self.run);
        let ids = |args: &[&str]| -> Vec<String> {
            let out = docker(args).unwrap_or_default();
            let mut v: Vec<String> = out.split_whitespace().map(String::from).collect();
            v.dedup();
            v
        };
        let containers = ids(&["ps", "-aq", "--no-trunc", "--filter", &label]);
        if !containers.is_empty() {
            let mut args = vec!["rm", "-f", "-v"];
            args.extend(containers.iter().map(String::as_str));
            docker(&args);
        }
        // Newest first: an image goes before the one it was built FROM.
        for _ in 0..3 {
            let images = ids(&["images", "-q", "--no-trunc", "--filter", &label]);
            if images.is_empty() {
                break;
            }
            let mut args = vec!["rmi"];
            args.extend(images.iter().map(String::as_str));
            docker(&args);
        }
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// A field of one `RESULT key=value ...` or `STOP key=value ...` line of
/// harness.py, or None when it is absent or `None`.
fn value(line: &str, key: &str) -> Option<f64> {
    line.split_whitespace()
        .find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='))
        .and_then(|v| v.parse().ok())
}

/// A field that must be there.
fn field(line: &str, key: &str) -> f64 {
    value(line, key).unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[test]
fn rolling_restart_loses_nothing_with_drain_and_something_without() {
    if let Some(why) = missing() {
        if std::env::var_os("USHERTEST_REQUIRE_DOCKER").is_some_and(|v| v == "1") {
            panic!("USHERTEST_REQUIRE_DOCKER=1, but {why}");
        }
        return skipped(&why);
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = repo.join("examples/zero-downtime");
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let run = format!("{}-{nanos:08x}", std::process::id());
    let tmp = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let work = tmp.join(format!("zero-downtime-{run}"));
    let _cleanup = Cleanup {
        run: run.clone(),
        work: work.clone(),
    };
    let base = free_ports();

    // The static usher is the one tests/docker.rs builds (same target dir).
    let mut cmd = Command::new("bash");
    cmd.arg(example.join("images.sh"))
        .arg(&run)
        .arg(std::process::id().to_string())
        .arg(base.to_string())
        .arg(work.join("build"))
        .env("ZD_IMAGES", "usher")
        .env_remove("CARGO_TARGET_DIR")
        .env(
            "USHER_STATIC_TARGET_DIR",
            tmp.parent().unwrap_or(&tmp).join("docker-static"),
        );
    let out = try_run(&mut cmd, Duration::from_secs(600)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.code, Some(0), "images.sh failed:\n{}", out.stderr);
    eprintln!("images built in {:?}", out.took);
    let images = work.join("images.env");
    std::fs::write(&images, &out.stdout).expect("write images.env");
    let usher_image = out
        .stdout
        .lines()
        .find_map(|l| l.strip_prefix("usher="))
        .expect("images.sh printed no usher image")
        .to_string();

    // Three runs of two stops each, lags 1 s and 2 s, haproxy retries 0 and
    // http-reuse always. The harness stops itself (and cleans up) at its
    // deadline, before this test's limit.
    let mut cmd = Command::new("python3");
    cmd.arg(example.join("harness.py"))
        .args(["--images", &images.to_string_lossy()])
        .args(["--out", &work.join("results.json").to_string_lossy()])
        .args(["--run-id", &run, "--port-base", &base.to_string()])
        .args(["--paths", "http-pool", "--lags", "1,2", "--stops", "2"])
        .args([
            "--rate",
            "100",
            "--drain-long",
            "3s",
            "--adaptive",
            "0s..10s",
        ])
        .args(["--scenarios", "nodrain,fixed-long,adaptive", "--reps", "1"])
        .args(["--deadline", "240"]);
    // try_run leaves out every inherited USHER_* variable (hermetic).
    let out = try_run(&mut cmd, Duration::from_secs(300)).unwrap_or_else(|e| panic!("{e}"));
    eprintln!("harness took {:?}:\n{}", out.took, out.stderr);
    assert_eq!(out.code, Some(0), "harness.py failed:\n{}", out.stderr);
    let lines = |kind: &str, scenario: &str| -> Vec<String> {
        let prefix = format!("{kind} scenario={scenario} ");
        out.stdout
            .lines()
            .filter(|l| l.starts_with(&prefix))
            .map(String::from)
            .collect()
    };
    let result = |scenario: &str| -> String {
        let found = lines("RESULT", scenario);
        assert_eq!(found.len(), 1, "one result for {scenario}:\n{}", out.stdout);
        eprintln!("{}\n{}", found[0], lines("STOP", scenario).join("\n"));
        found[0].clone()
    };
    let (without, with) = (result("nodrain"), result("fixed-long"));
    // The load ran: over 10 s at 100 requests/s each, and haproxy pooled its
    // server connections (nginx's log: requests per connection).
    for line in [&without, &with] {
        assert!(field(line, "sent") >= 600.0, "too little load: {line}");
        assert!(
            field(line, "server_requests") >= 5.0 * field(line, "server_connections"),
            "haproxy did not pool its server connections: {line}"
        );
    }
    // About 100/s × 1/3 of the rotation × (1 s + 2 s) of lag ≈ 100 expected,
    // less what a late stop signal takes off (signal_s in the line); a
    // baseline that loses (almost) nothing shows nothing.
    assert!(
        field(&without, "failed") >= 10.0,
        "without a drain the restart lost almost nothing, so this test measures nothing: {without}"
    );
    assert_eq!(
        field(&with, "failed"),
        0.0,
        "with --drain 3s ≥ the 2 s lag the restart lost requests: {with}\n{}",
        out.stderr
    );

    // The adaptive drain, if this usher has it.
    if let Some(line) = lines("UNSUPPORTED", "adaptive").first() {
        let refused = line
            .split_once(" why=")
            .map_or(line.as_str(), |(_, why)| why);
        let help = docker(&[
            "run",
            "--rm",
            "--network",
            "none",
            "--label",
            "usher-zd=1",
            "--label",
            &format!("usher-zd.run={run}"),
            &usher_image,
            "--help",
        ])
        .unwrap_or_default();
        let offered = help
            .lines()
            .any(|l| l.contains("--drain") && l.contains(".."));
        assert!(
            !offered,
            "usher's --help offers a range for --drain, yet it refused --drain 0s..10s: {refused}"
        );
        return skipped(&format!(
            "its adaptive-drain part: this usher has no --drain MIN..MAX yet ({refused})"
        ));
    }
    let adaptive = result("adaptive");
    assert!(
        field(&adaptive, "sent") >= 600.0,
        "too little load: {adaptive}"
    );
    assert_eq!(
        field(&adaptive, "failed"),
        0.0,
        "with --drain 0s..10s the restart lost requests: {adaptive}\n{}",
        out.stderr
    );
    let stops = lines("STOP", "adaptive");
    assert_eq!(stops.len(), 2, "two stops: {stops:?}");
    for stop in &stops {
        let lag = field(stop, "lag");
        let forwarded = value(stop, "forwarded_s")
            .unwrap_or_else(|| panic!("no `forwarded` line of usher after the stop: {stop}"));
        assert!(
            forwarded < lag + 4.0,
            "--drain 0s..10s held the stop signal {forwarded} s after docker stop, though \
             haproxy stopped sending {lag} s after it (want < {} s; MAX is 10 s): {stop}",
            lag + 4.0
        );
    }
}
