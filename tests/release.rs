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
use common::*;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::thread;

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

// ------------------------------------------------- dist.sh and the builder --

/// The argument Dockerfile.example's builder passes to scripts/dist.sh, as
/// written there (a shell word using TARGETARCH and TARGETVARIANT).
fn builder_platform_word() -> String {
    let text = std::fs::read_to_string(repo().join("Dockerfile.example")).expect("read");
    let start = |l: &&str| l.starts_with("FROM ") && l.contains(" AS builder");
    let stage = |l: &&str| !l.starts_with("FROM ") || l.contains(" AS builder");
    let builder: Vec<&str> = text
        .lines()
        .skip_while(|l| !start(l))
        .take_while(stage)
        .collect();
    for arg in ["ARG TARGETARCH", "ARG TARGETVARIANT"] {
        let declared = builder.contains(&arg);
        assert!(declared, "no `{arg}` in the builder: RUN sees it empty");
    }
    let mut lines = builder.iter();
    let run = lines.find_map(|l| l.strip_prefix("RUN scripts/dist.sh "));
    let run = run.expect("the builder runs scripts/dist.sh");
    let word = run
        .split(" \\")
        .next()
        .unwrap()
        .split(" &&")
        .next()
        .unwrap();
    word.trim().to_string()
}

/// `scripts/dist.sh --plan WORD` as the builder's shell expands it.
fn plan(word: &str, arch: &str, variant: &str) -> Ran {
    let script = repo().join("scripts/dist.sh");
    let mut cmd = Command::new("sh");
    cmd.arg("-c")
        .arg(format!("\"$0\" --plan {word}"))
        .arg(&script);
    cmd.env("TARGETARCH", arch).env("TARGETVARIANT", variant);
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
    let host_musl = match host {
        "arm" => "armv7-unknown-linux-musleabihf".to_string(),
        host => format!("{host}-unknown-linux-musl"),
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

/// One test's images and containers (all labelled with its id, removed by
/// id when dropped, also on failure) and its scratch directory.
struct Run {
    id: String,
    dir: PathBuf,
}

impl Run {
    fn new(name: &str) -> Run {
        static N: AtomicUsize = AtomicUsize::new(0);
        let id = format!("{}-{}", run_id(), N.fetch_add(1, Ordering::Relaxed));
        let dir = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join(format!("release-{name}-{id}"));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("scratch dir");
        Run { id, dir }
    }

    /// `docker build -q` of `dockerfile` in `context`, tagged NAME of this
    /// run, with its labels.
    fn build(&self, name: &str, dockerfile: &Path, context: &Path, args: &[String]) -> Command {
        let tag = format!("usher-test-{}:{name}", self.id);
        let mut cmd = Command::new("docker");
        cmd.args(["build", "-q", "-t", &tag, "-f"]).arg(dockerfile);
        cmd.args(docker_labels(&self.id)).args(args).arg(context);
        cmd
    }

    /// [`Run::build`], which must succeed; the image's id.
    fn built(&self, name: &str, dockerfile: &Path, context: &Path, args: &[String]) -> String {
        let out = run_bounded(&mut self.build(name, dockerfile, context, args), secs(300));
        let id = out.stdout.trim().to_string();
        let built = out.ok() && id.starts_with("sha256:");
        assert!(built, "docker build {name}: {out:?}");
        id
    }

    /// `docker run -d` with this run's labels; the container's id.
    fn start(&self, args: &[&str]) -> String {
        let labels = docker_labels(&self.id);
        let labels: Vec<&str> = labels.iter().map(String::as_str).collect();
        docker_ok(&[&["run", "-d"], &labels[..], args].concat(), secs(60))
    }
}

impl Drop for Run {
    fn drop(&mut self) {
        remove_labelled(&format!("usher-test.run={}", self.id));
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

/// Docker's TARGETARCH and TARGETVARIANT for a dist.sh platform name.
fn target_args(platform: &str) -> Vec<String> {
    let (arch, variant) = match platform.strip_prefix("arm").filter(|v| v.starts_with('v')) {
        Some(v) => ("arm", v),
        None => (platform, ""),
    };
    let args = [
        format!("TARGETARCH={arch}"),
        format!("TARGETVARIANT={variant}"),
    ];
    args.into_iter()
        .flat_map(|a| ["--build-arg".into(), a])
        .collect()
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
    let listed = Command::new("dpkg").args(["-L", "busybox-static"]).output();
    let listed = listed.map_err(|e| format!("dpkg: {e}"))?.stdout;
    let found = String::from_utf8_lossy(&listed)
        .lines()
        .find(|l| l.ends_with("/bin/busybox"))
        .map(PathBuf::from);
    found.ok_or_else(|| "no busybox-static (apt-get install busybox-static, or set BUSYBOX)".into())
}

/// dist.sh for this machine's platform into `dir`; the binary's path and
/// its platform name.
fn dist_native(dir: &Path) -> (PathBuf, String) {
    let target = PathBuf::from(env!("CARGO_TARGET_TMPDIR"));
    let mut cmd = Command::new("bash");
    cmd.arg(repo().join("scripts/dist.sh")).arg("native");
    cmd.env("DIST_DIR", dir)
        .env("CARGO_TARGET_DIR", target.parent().expect("target dir"));
    let out = run_bounded(&mut cmd, secs(600));
    assert_eq!(out.code, Some(0), "scripts/dist.sh native: {out:?}");
    let entries = std::fs::read_dir(dir).expect("dist dir").flatten();
    let named = |p: &PathBuf| {
        p.file_name()
            .is_some_and(|n| n.to_string_lossy().starts_with("usher-"))
    };
    let bin = entries.map(|e| e.path()).find(named);
    let bin = bin.unwrap_or_else(|| panic!("dist.sh wrote no binary: {out:?}"));
    let name = bin.file_name().unwrap().to_string_lossy().into_owned();
    // usher-VERSION-PLATFORM-LIBC
    let parts: Vec<&str> = name.rsplitn(3, '-').collect();
    (bin.clone(), parts[1].to_string())
}

#[test]
fn release_image_holds_only_usher_and_serves_copy_from() {
    if !docker_engine() {
        return;
    }
    let busybox = match busybox() {
        Ok(b) => b,
        Err(why) => return skip("USHERTEST_REQUIRE_DOCKER", &why),
    };
    let r = Run::new("image");
    let dist = r.dir.join("dist");
    let (bin, platform) = dist_native(&dist);
    let built = std::fs::read(&bin).expect("read the dist binary");

    // The release image, as a user without BuildKit builds it.
    let dockerfile = repo().join("Dockerfile.release");
    let image = r.built("release", &dockerfile, &dist, &target_args(&platform));
    let (files, usher) = image_files(&r, &image);
    assert_eq!(files, ["usher"], "the image holds only usher");
    assert!(usher == built, "/usher is dist.sh's {}", bin.display());
    let inspect = [
        "image",
        "inspect",
        "-f",
        "{{json .Config.Entrypoint}}",
        &image,
    ];
    assert_eq!(docker_ok(&inspect, secs(30)), r#"["/usher"]"#);

    // Used as documented: COPY --from into an app image, usher as PID 1.
    let app_dir = r.dir.join("app");
    std::fs::create_dir_all(&app_dir).expect("mkdir");
    std::fs::copy(&busybox, app_dir.join("busybox")).expect("copy busybox");
    let dockerfile = format!(
        "FROM scratch\n\
         COPY --from=usher-test-{}:release /usher /usr/local/bin/usher\n\
         COPY busybox /bin/busybox\n\
         ENTRYPOINT [\"/usr/local/bin/usher\", \"--\"]\n",
        r.id
    );
    std::fs::write(app_dir.join("Dockerfile"), dockerfile).expect("write Dockerfile");
    let app = r.built("app", &app_dir.join("Dockerfile"), &app_dir, &[]);

    // PID 1 is usher, and the app's exit code comes through it. (That
    // usher forwards docker stop's TERM past a shell is docker.rs's
    // shell_as_pid1_swallows_term_and_usher_delivers_it, same sources.)
    // The app image's busybox sh runs `script`, with no network.
    let sh = |script: &str| {
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
    let c = sh("/bin/busybox tr '\\0' ' ' < /proc/1/cmdline; echo; exit 7");
    assert_eq!(docker_ok(&["wait", &c], secs(60)), "7");
    let logs = docker(&["logs", &c], secs(30));
    let pid1 = logs
        .stdout
        .starts_with("/usr/local/bin/usher -- /bin/busybox sh -c");
    assert!(pid1, "PID 1 is not usher: {logs:?}");
}

#[test]
fn release_image_picks_each_platforms_binary() {
    if !docker_engine() {
        return;
    }
    let r = Run::new("platforms");
    // A dist/ as dist.sh lays it out, with a marker file per platform.
    let ctx = r.dir.join("dist");
    std::fs::create_dir_all(&ctx).expect("mkdir");
    let mut plan = Command::new("bash");
    plan.arg(repo().join("scripts/dist.sh")).arg("--plan");
    let plan = run_ok(plan);
    let platforms: Vec<&str> = plan
        .lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    assert!(platforms.len() >= 3, "{platforms:?}");
    for (i, p) in platforms.iter().enumerate() {
        let libc = if i % 2 == 0 { "musl" } else { "glibc" };
        std::fs::write(ctx.join(format!("usher-9.9.9-{p}-{libc}")), p).expect("write");
    }
    let dockerfile = repo().join("Dockerfile.release");
    // All at once: one by one, each build is seconds of layer commits.
    let builds: Vec<_> = (platforms.iter())
        .map(|p| {
            let mut cmd = r.build(p, &dockerfile, &ctx, &target_args(p));
            thread::spawn(move || run_bounded(&mut cmd, secs(300)))
        })
        .collect();
    // All joined before any is judged: none is still building at the cleanup.
    let outs: Vec<Ran> = builds
        .into_iter()
        .map(|b| b.join().expect("build"))
        .collect();
    for (p, out) in platforms.iter().zip(outs) {
        assert_eq!(out.code, Some(0), "docker build {p}: {out:?}");
        let (files, usher) = image_files(&r, out.stdout.trim());
        assert_eq!(files, ["usher"], "{p}");
        assert_eq!(String::from_utf8_lossy(&usher), *p, "{p}: the wrong binary");
    }
    // No binary for the platform: the build fails instead of taking another.
    let mips = ["--build-arg".to_string(), "TARGETARCH=mips64le".into()];
    let out = run_bounded(&mut r.build("mips", &dockerfile, &ctx, &mips), secs(120));
    assert_ne!(out.code, Some(0), "built with no mips64le binary: {out:?}");
}
