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
use common::{docker_engine, remove_labelled, run_id, skip, skipped, static_target_dir, try_run};

use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

/// Whether `name` is an executable in PATH or in /usr/sbin (where Debian
/// puts nginx and haproxy, and which a non-root PATH may lack).
fn have(name: &str) -> bool {
    let path = std::env::var("PATH").unwrap_or_default();
    let mut dirs = path.split(':').chain(["/usr/sbin", "/sbin"]);
    dirs.any(|dir| Path::new(dir).join(name).is_file())
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
        remove_labelled(&format!("usher-zd.run={}", self.run));
        let _ = std::fs::remove_dir_all(&self.work);
    }
}

/// A field of one `RESULT key=value ...` or `STOP key=value ...` line of
/// harness.py, or None when it is absent or `None`.
fn value(line: &str, key: &str) -> Option<f64> {
    let mut fields = line.split_whitespace();
    let found = fields.find_map(|kv| kv.strip_prefix(key)?.strip_prefix('='));
    found.and_then(|v| v.parse().ok())
}

/// A field that must be there.
fn field(line: &str, key: &str) -> f64 {
    value(line, key).unwrap_or_else(|| panic!("no {key} in {line:?}"))
}

#[test]
fn rolling_restart_loses_nothing_with_drain_and_something_without() {
    let tools = ["docker", "nginx", "haproxy", "python3", "file"];
    if let Some(tool) = tools.into_iter().find(|t| !have(t)) {
        let why = format!("no {tool} (the Debian packages nginx, haproxy, python3, file and a Docker engine are needed)");
        return skip("USHERTEST_REQUIRE_DOCKER", &why);
    }
    if !docker_engine() {
        return;
    }
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"));
    let example = repo.join("examples/zero-downtime");
    let run = run_id();
    let work = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("zero-downtime-{run}"));
    let _cleanup = Cleanup {
        run: run.clone(),
        work: work.clone(),
    };
    let base = free_ports();

    // The static usher is the one tests/docker.rs builds (same target dir).
    let mut cmd = Command::new("bash");
    cmd.arg(example.join("images.sh"))
        .arg(&run)
        .arg(std::process::id().to_string());
    cmd.arg(base.to_string())
        .arg(work.join("build"))
        .env("ZD_IMAGES", "usher");
    cmd.env_remove("CARGO_TARGET_DIR")
        .env("USHER_STATIC_TARGET_DIR", static_target_dir());
    let out = try_run(&mut cmd, Duration::from_secs(600)).unwrap_or_else(|e| panic!("{e}"));
    assert_eq!(out.code, Some(0), "images.sh failed:\n{}", out.stderr);
    eprintln!("images built in {:?}", out.took);
    let images = work.join("images.env");
    std::fs::write(&images, &out.stdout).expect("write images.env");
    let usher_image = out.stdout.lines().find_map(|l| l.strip_prefix("usher="));
    let usher_image = usher_image
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
        let found = out.stdout.lines().filter(|l| l.starts_with(&prefix));
        found.map(String::from).collect()
    };

    // The adaptive drain, if this usher has it.
    let unsupported = lines("UNSUPPORTED", "adaptive").first().map(|line| {
        let refused = line
            .split_once(" why=")
            .map_or(line.as_str(), |(_, why)| why);
        let label = format!("usher-zd.run={run}");
        let help = [
            "run",
            "--rm",
            "--network",
            "none",
            "--label",
            "usher-zd=1",
            "--label",
            &label,
        ];
        let help = try_run(
            Command::new("docker")
                .args(help)
                .args([&usher_image, "--help"]),
            Duration::from_secs(60),
        );
        let help = help.map(|h| h.stdout).unwrap_or_default();
        let offered = help
            .lines()
            .any(|l| l.contains("--drain") && l.contains(".."));
        let why = format!("--help offers a range for --drain, yet: {refused}");
        assert!(!offered, "{why}");
        refused.to_string()
    });
    let adaptive = unsupported.is_none().then_some("adaptive");
    for scenario in ["nodrain", "fixed-long"].into_iter().chain(adaptive) {
        let found = lines("RESULT", scenario);
        assert_eq!(found.len(), 1, "one result for {scenario}:\n{}", out.stdout);
        let line = &found[0];
        eprintln!("{line}\n{}", lines("STOP", scenario).join("\n"));
        // The load ran: over 10 s at 100 requests/s each, and haproxy pooled
        // its server connections (nginx's log: requests per connection).
        assert!(field(line, "sent") >= 600.0, "too little load: {line}");
        let pooled = field(line, "server_requests") >= 5.0 * field(line, "server_connections");
        assert!(pooled, "haproxy did not pool its connections: {line}");
        let failed = field(line, "failed");
        if scenario == "nodrain" {
            // About 100/s × 1/3 of the rotation × (1 s + 2 s) of lag ≈ 100
            // expected, less what a late stop signal takes off (signal_s in
            // the line); a baseline that loses (almost) nothing shows nothing.
            let measures = failed >= 10.0;
            assert!(measures, "without a drain the restart lost almost nothing, so this test measures nothing: {line}");
        } else {
            // --drain 3s ≥ the 2 s lag; --drain 0s..10s ends when the traffic does.
            let lost = format!("{scenario}: the restart lost requests: {line}");
            assert_eq!(failed, 0.0, "{lost}\n{}", out.stderr);
        }
    }
    if let Some(refused) = unsupported {
        let why =
            format!("its adaptive-drain part: this usher has no --drain MIN..MAX yet ({refused})");
        return skipped(&why);
    }
    let stops = lines("STOP", "adaptive");
    assert_eq!(stops.len(), 2, "two stops: {stops:?}");
    for stop in &stops {
        let lag = field(stop, "lag");
        let forwarded = value(stop, "forwarded_s");
        let forwarded = forwarded
            .unwrap_or_else(|| panic!("no `forwarded` line of usher after the stop: {stop}"));
        let held = format!(
            "--drain 0s..10s held the stop signal {forwarded} s after docker stop, though \
             haproxy stopped sending {lag} s after it (want < {} s; MAX is 10 s): {stop}",
            lag + 4.0
        );
        assert!(forwarded < lag + 4.0, "{held}");
    }
}
