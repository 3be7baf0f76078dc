//! The release artefacts end to end: the platform plan that scripts/dist.sh
//! and Dockerfile.example's builder share, and the usher-only image of
//! Dockerfile.release, built from a dist/ that dist.sh writes, checked to
//! hold nothing but usher, and used as `COPY --from=` in an app image.
//!
//! Docker tests follow tests/docker.rs: every image and container carries
//! the labels `usher-test=1`, `usher-test.run`, `usher-test.pid` and
//! `usher-test.host` (so tests/docker/setup.sh sweeps what a killed run left)
//! and is removed by id when its test ends, also on failure. Without a Docker
//! engine they print one `SKIPPED` line and pass, unless
//! `USHERTEST_REQUIRE_DOCKER=1` (set in CI) makes that a failure.

mod common;
use common::{run_bounded, skipped, Ran};

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

fn secs(s: u64) -> Duration {
    Duration::from_secs(s)
}

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn docker(args: &[&str], limit: Duration) -> Ran {
    let mut cmd = Command::new("docker");
    cmd.args(args);
    run_bounded(&mut cmd, limit)
}

/// `docker ARGS...` that must succeed; its trimmed stdout.
fn docker_ok(args: &[&str], limit: Duration) -> String {
    let out = docker(args, limit);
    assert_eq!(out.code, Some(0), "docker {args:?} failed: {out:?}");
    out.stdout.trim().to_string()
}

// ------------------------------------------------- dist.sh and the builder --

/// The argument Dockerfile.example's builder passes to scripts/dist.sh, as
/// written there (a shell word using TARGETARCH and TARGETVARIANT).
fn builder_platform_word() -> String {
    let text = std::fs::read_to_string(repo().join("Dockerfile.example")).expect("read");
    let builder: Vec<&str> = text
        .lines()
        .skip_while(|l| !l.starts_with("FROM ") || !l.contains(" AS builder"))
        .take_while(|l| !l.starts_with("FROM ") || l.contains(" AS builder"))
        .collect();
    for arg in ["ARG TARGETARCH", "ARG TARGETVARIANT"] {
        assert!(
            builder.contains(&arg),
            "the builder stage must declare `{arg}`, or RUN sees it empty"
        );
    }
    let run = builder
        .iter()
        .find_map(|l| l.strip_prefix("RUN scripts/dist.sh "))
        .expect("the builder runs scripts/dist.sh");
    run.split(" \\")
        .next()
        .unwrap()
        .split(" &&")
        .next()
        .unwrap()
        .trim()
        .to_string()
}

/// `scripts/dist.sh --plan WORD` as the builder's shell expands it.
fn plan(word: &str, arch: &str, variant: &str) -> Ran {
    let script = repo().join("scripts/dist.sh");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("\"$0\" --plan {word}"))
        .arg(&script)
        .env("TARGETARCH", arch)
        .env("TARGETVARIANT", variant);
    run_bounded(&mut cmd, secs(30))
}

#[test]
fn dockerfile_example_builds_for_the_platform_being_built() {
    let word = builder_platform_word();
    // What BuildKit sets for each platform usher ships on, and the Rust
    // target (musl first) the builder must then build.
    let host = match std::env::consts::ARCH {
        "x86" => "i686",
        "powerpc64" => "powerpc64le",
        "riscv64" => "riscv64gc",
        a => a,
    };
    let host_musl = if host == "arm" {
        "armv7-unknown-linux-musleabihf".to_string()
    } else {
        format!("{host}-unknown-linux-musl")
    };
    let cases = [
        ("amd64", "", "x86_64-unknown-linux-musl"),
        ("arm64", "", "aarch64-unknown-linux-musl"),
        ("arm", "v7", "armv7-unknown-linux-musleabihf"),
        ("386", "", "i686-unknown-linux-musl"),
        ("s390x", "", "s390x-unknown-linux-musl"),
        ("ppc64le", "", "powerpc64le-unknown-linux-musl"),
        ("riscv64", "", "riscv64gc-unknown-linux-musl"),
        // The classic builder sets neither: the stage's own platform.
        ("", "", host_musl.as_str()),
    ];
    for (arch, variant, musl) in cases {
        let out = plan(&word, arch, variant);
        assert_eq!(out.code, Some(0), "{arch}/{variant}: {out:?}");
        let fields: Vec<&str> = out.stdout.split_whitespace().collect();
        assert_eq!(fields.len(), 3, "{arch}/{variant}: {out:?}");
        assert_eq!(fields[1], musl, "{arch}/{variant}: {out:?}");
        let arch_of = |t: &str| t.split('-').next().unwrap_or("").to_string();
        assert_eq!(arch_of(fields[2]), arch_of(musl), "glibc fallback: {out:?}");
    }
    // A platform usher does not ship fails the build, naming it, instead of
    // building another architecture's binary.
    let out = plan(&word, "arm", "v6");
    assert_ne!(out.code, Some(0), "{out:?}");
    assert!(out.stderr.contains("armv6: unknown platform"), "{out:?}");
}

// ----------------------------------------------------------- Docker image --

/// Why Docker tests cannot run here, if they cannot (and may skip).
fn engine_missing() -> bool {
    let out = docker(&["version", "--format", "{{.Server.Version}}"], secs(30));
    if out.code == Some(0) && !out.stdout.trim().is_empty() {
        return false;
    }
    let why = format!(
        "no Docker engine answers (`docker version`: {})",
        out.stderr.lines().next().unwrap_or("no output").trim()
    );
    if std::env::var_os("USHERTEST_REQUIRE_DOCKER").is_some_and(|v| v == "1") {
        panic!("USHERTEST_REQUIRE_DOCKER=1, but {why}");
    }
    skipped(&why);
    true
}

/// One test's images and containers (removed by id when dropped) and its
/// scratch directory.
struct Run {
    id: String,
    dir: PathBuf,
    images: Vec<String>,
    containers: Vec<String>,
}

impl Run {
    fn new(name: &str) -> Run {
        static N: AtomicUsize = AtomicUsize::new(0);
        let nanos = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let id = format!(
            "{}-{}-{nanos:08x}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        );
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("release-{name}-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Run {
            id,
            dir,
            images: Vec::new(),
            containers: Vec::new(),
        }
    }

    fn labels(&self) -> Vec<String> {
        let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
        [
            "usher-test=1".to_string(),
            format!("usher-test.run={}", self.id),
            format!("usher-test.pid={}", std::process::id()),
            format!("usher-test.host={}", host.trim()),
        ]
        .into_iter()
        .flat_map(|l| ["--label".to_string(), l])
        .collect()
    }

    /// `docker build -q` of `dockerfile` in `context`, tagged NAME of this
    /// run; returns the image id.
    fn build(&mut self, name: &str, dockerfile: &Path, context: &Path, args: &[&str]) -> String {
        let mut cmd = self.build_command(name, dockerfile, context, args);
        let out = run_bounded(&mut cmd, secs(300));
        self.built(name, out)
    }

    fn build_command(
        &self,
        name: &str,
        dockerfile: &Path,
        context: &Path,
        args: &[&str],
    ) -> Command {
        let tag = format!("usher-test-{}:{name}", self.id);
        let mut cmd = Command::new("docker");
        cmd.args(["build", "-q", "-t", &tag, "-f"])
            .arg(dockerfile)
            .args(self.labels())
            .args(args)
            .arg(context);
        cmd
    }

    /// The id a build printed, now owned by this run.
    fn built(&mut self, name: &str, out: Ran) -> String {
        assert_eq!(out.code, Some(0), "docker build {name}: {out:?}");
        let id = out.stdout.trim().to_string();
        assert!(id.starts_with("sha256:"), "docker build {name}: {out:?}");
        self.images.push(id.clone());
        id
    }

    /// `docker run -d` with this run's labels; the container's id.
    fn start(&mut self, args: &[&str]) -> String {
        let mut full = vec!["run".to_string(), "-d".to_string()];
        full.extend(self.labels());
        full.extend(args.iter().map(|a| a.to_string()));
        let full: Vec<&str> = full.iter().map(String::as_str).collect();
        let id = docker_ok(&full, secs(60));
        self.containers.push(id.clone());
        id
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        // Never panics (this may run while a failed test unwinds).
        for c in &self.containers {
            let mut cmd = Command::new("docker");
            cmd.args(["rm", "-f", "-v", c])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
        }
        // Last built first: an image built FROM another goes before it.
        for image in self.images.iter().rev() {
            let mut cmd = Command::new("docker");
            cmd.args(["rmi", "-f", image])
                .stdout(Stdio::null())
                .stderr(Stdio::null());
            let _ = cmd.status();
        }
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Docker's TARGETARCH and TARGETVARIANT for a dist.sh platform name.
fn target_args(platform: &str) -> Vec<String> {
    let (arch, variant) = match platform.strip_prefix("arm").filter(|v| v.starts_with('v')) {
        Some(v) => ("arm", v),
        None => (platform, ""),
    };
    vec![
        "--build-arg".into(),
        format!("TARGETARCH={arch}"),
        "--build-arg".into(),
        format!("TARGETVARIANT={variant}"),
    ]
}

/// Every file in the image's layers, and the bytes of `/usher`, from
/// `docker save`.
fn image_files(run: &Run, image: &str) -> (Vec<String>, Vec<u8>) {
    let saved = run
        .dir
        .join(format!("saved-{}", image.trim_start_matches("sha256:")));
    std::fs::create_dir_all(&saved).expect("mkdir");
    let tar = saved.join("image.tar");
    docker_ok(&["save", "-o", tar.to_str().unwrap(), image], secs(120));
    let mut untar = Command::new("tar");
    untar.arg("-xf").arg(&tar).arg("-C").arg(&saved);
    assert_eq!(run_ok(untar), "");
    let manifest = std::fs::read_to_string(saved.join("manifest.json")).expect("manifest.json");
    let layers: Vec<&str> = manifest
        .split('"')
        .filter(|s| s.ends_with("layer.tar"))
        .collect();
    assert!(!layers.is_empty(), "no layers in {manifest}");
    let (mut files, mut usher) = (Vec::new(), Vec::new());
    for layer in layers {
        let mut list = Command::new("tar");
        list.arg("-tf").arg(saved.join(layer));
        files.extend(run_ok(list).lines().map(String::from));
        let mut cat = Command::new("tar");
        cat.arg("-xOf").arg(saved.join(layer)).arg("usher");
        let out = cat.output().expect("tar");
        if out.status.success() {
            usher = out.stdout;
        }
    }
    (files, usher)
}

fn run_ok(mut cmd: Command) -> String {
    let out = run_bounded(&mut cmd, secs(120));
    assert_eq!(out.code, Some(0), "{out:?}");
    out.stdout
}

/// A static busybox for the app image: $BUSYBOX, else Debian's busybox-static.
fn busybox() -> Result<PathBuf, String> {
    if let Some(b) = std::env::var_os("BUSYBOX") {
        return Ok(b.into());
    }
    let listed = Command::new("dpkg")
        .args(["-L", "busybox-static"])
        .output()
        .map_err(|e| format!("dpkg: {e}"))?;
    String::from_utf8_lossy(&listed.stdout)
        .lines()
        .find(|l| l.ends_with("/bin/busybox"))
        .map(PathBuf::from)
        .ok_or_else(|| "no busybox-static (apt-get install busybox-static, or set BUSYBOX)".into())
}

/// dist.sh for this machine's platform into `dir`; the binary's path and
/// its platform name.
fn dist_native(dir: &Path) -> (PathBuf, String) {
    let target_dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .to_path_buf();
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/dist.sh"))
        .arg("native")
        .env("DIST_DIR", dir)
        .env("CARGO_TARGET_DIR", &target_dir);
    if let Ok(cargo) = std::env::var("CARGO") {
        cmd.env("CARGO", cargo);
    }
    let out = run_bounded(&mut cmd, secs(600));
    assert_eq!(out.code, Some(0), "scripts/dist.sh native: {out:?}");
    let bin = std::fs::read_dir(dir)
        .expect("dist dir")
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .is_some_and(|n| n.to_string_lossy().starts_with("usher-"))
        })
        .unwrap_or_else(|| panic!("dist.sh wrote no binary: {out:?}"));
    let name = bin.file_name().unwrap().to_string_lossy().into_owned();
    // usher-VERSION-PLATFORM-LIBC
    let parts: Vec<&str> = name.rsplitn(3, '-').collect();
    (bin.clone(), parts[1].to_string())
}

#[test]
fn release_image_holds_only_usher_and_serves_copy_from() {
    if engine_missing() {
        return;
    }
    let busybox = match busybox() {
        Ok(b) => b,
        Err(why) if std::env::var_os("USHERTEST_REQUIRE_DOCKER").is_some_and(|v| v == "1") => {
            panic!("USHERTEST_REQUIRE_DOCKER=1, but {why}")
        }
        Err(why) => {
            return skipped(&why);
        }
    };
    let mut r = Run::new("image");
    let dist = r.dir.join("dist");
    let (bin, platform) = dist_native(&dist);
    let built = std::fs::read(&bin).expect("read the dist binary");

    // The release image, as a user without BuildKit builds it.
    let dockerfile = repo().join("Dockerfile.release");
    let args = target_args(&platform);
    let args: Vec<&str> = args.iter().map(String::as_str).collect();
    let image = r.build("release", &dockerfile, &dist, &args);
    let (files, usher) = image_files(&r, &image);
    assert_eq!(files, ["usher"], "the image holds only usher");
    assert!(usher == built, "/usher is dist.sh's {}", bin.display());
    let entry = docker_ok(
        &[
            "image",
            "inspect",
            "-f",
            "{{json .Config.Entrypoint}}",
            &image,
        ],
        secs(30),
    );
    assert_eq!(entry, r#"["/usher"]"#);

    // Used as documented: COPY --from into an app image, usher as PID 1.
    let app_dir = r.dir.join("app");
    std::fs::create_dir_all(&app_dir).expect("mkdir");
    std::fs::copy(&busybox, app_dir.join("busybox")).expect("copy busybox");
    std::fs::write(
        app_dir.join("Dockerfile"),
        format!(
            "FROM scratch\n\
             COPY --from=usher-test-{}:release /usher /usr/local/bin/usher\n\
             COPY busybox /bin/busybox\n\
             ENTRYPOINT [\"/usr/local/bin/usher\", \"--\"]\n",
            r.id
        ),
    )
    .expect("write Dockerfile");
    let app = r.build("app", &app_dir.join("Dockerfile"), &app_dir, &[]);

    // PID 1 is usher, and the app's exit code comes through it.
    // The app image's busybox sh runs `script`, with no network.
    let sh = |r: &mut Run, script: &str| {
        r.start(&[
            "--network",
            "none",
            &app,
            "/bin/busybox",
            "sh",
            "-c",
            script,
        ])
    };
    let c = sh(
        &mut r,
        "/bin/busybox tr '\\0' ' ' < /proc/1/cmdline; echo; exit 7",
    );
    assert_eq!(docker_ok(&["wait", &c], secs(60)), "7");
    let logs = docker(&["logs", &c], secs(30));
    assert!(
        logs.stdout
            .starts_with("/usr/local/bin/usher -- /bin/busybox sh -c"),
        "PID 1 is not usher: {logs:?}"
    );

    // docker stop's SIGTERM reaches the app behind the shell and it exits
    // on its own, long before docker's SIGKILL.
    let app_script = "trap 'echo app: got TERM; exit 0' TERM; echo app: ready; \
                      while :; do /bin/busybox sleep 1 & wait $!; done";
    let c = sh(&mut r, app_script);
    let ready = Instant::now();
    while !docker(&["logs", &c], secs(30))
        .stdout
        .contains("app: ready")
    {
        assert!(ready.elapsed() < secs(30), "the app never started");
        thread::sleep(Duration::from_millis(100));
    }
    let asked = Instant::now();
    docker_ok(&["stop", "-t", "30", &c], secs(90));
    let took = asked.elapsed();
    let code = docker_ok(&["inspect", "-f", "{{.State.ExitCode}}", &c], secs(30));
    let logs = docker(&["logs", &c], secs(30));
    assert_eq!(code, "0", "{logs:?}");
    assert!(logs.stdout.contains("app: got TERM"), "{logs:?}");
    assert!(
        took < secs(20),
        "docker stop took {took:?}: the TERM was not forwarded"
    );
}

#[test]
fn release_image_picks_each_platforms_binary() {
    if engine_missing() {
        return;
    }
    let mut r = Run::new("platforms");
    // A dist/ as dist.sh lays it out, with a marker file per platform.
    let ctx = r.dir.join("dist");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    let mut plan = Command::new("bash");
    plan.arg(repo().join("scripts/dist.sh")).arg("--plan");
    let platforms: Vec<String> = run_ok(plan)
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(String::from))
        .collect();
    assert!(platforms.len() >= 3, "{platforms:?}");
    for (i, p) in platforms.iter().enumerate() {
        let libc = if i % 2 == 0 { "musl" } else { "glibc" };
        std::fs::write(ctx.join(format!("usher-9.9.9-{p}-{libc}")), p).expect("write");
    }
    let dockerfile = repo().join("Dockerfile.release");
    // All at once: one by one, each build is seconds of layer commits.
    let builds: Vec<_> = platforms
        .iter()
        .map(|p| {
            let args = target_args(p);
            let args: Vec<&str> = args.iter().map(String::as_str).collect();
            let mut cmd = r.build_command(p, &dockerfile, &ctx, &args);
            thread::spawn(move || run_bounded(&mut cmd, secs(300)))
        })
        .collect();
    let outs: Vec<Ran> = builds
        .into_iter()
        .map(|b| b.join().expect("build"))
        .collect();
    // Own every image that was built before judging any build.
    for out in outs.iter().filter(|o| o.code == Some(0)) {
        r.images.push(out.stdout.trim().to_string());
    }
    let images: Vec<String> = platforms
        .iter()
        .zip(outs)
        .map(|(p, out)| {
            assert_eq!(out.code, Some(0), "docker build {p}: {out:?}");
            out.stdout.trim().to_string()
        })
        .collect();
    for (p, image) in platforms.iter().zip(images) {
        let (files, usher) = image_files(&r, &image);
        assert_eq!(files, ["usher"], "{p}");
        assert_eq!(
            String::from_utf8_lossy(&usher),
            p.as_str(),
            "{p}: the wrong binary"
        );
    }
    // No binary for the platform: the build fails instead of taking another.
    let mut cmd = Command::new("docker");
    cmd.args(["build", "-q", "-f"])
        .arg(&dockerfile)
        .args(r.labels())
        .args(["--build-arg", "TARGETARCH=mips64le"])
        .arg(&ctx);
    let out = run_bounded(&mut cmd, secs(120));
    assert_ne!(out.code, Some(0), "built with no mips64le binary: {out:?}");
}
