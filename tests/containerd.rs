//! End to end under containerd, the runtime the kubelet drives through CRI: usher as a container's PID 1 under the runc shim, stopped with `ctr task kill`, in a containerd of the test's own.
//!
//! Each test starts a dedicated containerd: its own config, root, state,
//! temp dir and socket in a scratch dir, in new network, mount and PID
//! namespaces (`unshare --net --mount --pid --fork --mount-proc`), with a
//! tmpfs over `/run` in its mount namespace: the runc shim puts its sockets
//! in `/run/containerd/s` whatever the config says (and runc its state in
//! `/run/containerd/runc` by default), and the host's Docker engine has its own
//! containerd, whose shims use that very directory. containerd is PID 1 of
//! its PID namespace, so when it goes, the kernel kills every shim and
//! container of the test with it; the drop guard stops it by pid (also when
//! the test fails), removes the cgroups the containers had (a parent of the
//! test's own under every hierarchy, by path), checks that no mount of the
//! daemon's leaked into the test's mount namespace, and removes the
//! scratch dir. The host's network, the Docker engine's containerd and
//! other containers are never touched; the containers get no network
//! (`ctr run` gives them a new network namespace with only a loopback).
//!
//! The image is built without Docker and pulled from nowhere: the root
//! filesystem of the Docker tests' images (`tests/docker/setup.sh` with
//! `USHER_SETUP_ROOTFS_ONLY=1`: a static usher, a static busybox, the apps
//! of `tests/docker/apps`), packed into an OCI image tarball by
//! `tests/containerd/oci-image.sh` and imported with `ctr images import`.
//! The snapshotter is `native` (plain copies: works on any storage, where
//! overlayfs cannot be stacked on an overlay), the runtime
//! `io.containerd.runc.v2` with the `runc` found in PATH.
//!
//! Where it cannot run (no root, no `ctr`/`containerd`/shim/`runc`, no
//! namespaces) each test prints one `SKIPPED` line, unless
//! `USHERTEST_REQUIRE_CONTAINERD=1` (set in CI) makes that a failure.

mod common;
use common::*;

use std::fs;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// The containerd namespace of the test's containers and image.
const NAMESPACE: &str = "usher-test";
/// The image's name in the test's containerd.
const IMAGE: &str = "usher-test/usher:latest";
/// usher with a Kubernetes-style drain and deadline, in both tests.
const USHER: &str = "/usher --drain 1s --grace-period 5s --";
/// unshare's flags for the daemon: new network, mount and PID namespaces
/// (the mount namespace private: nothing mounted in it reaches the host).
const DAEMON_NAMESPACES: &str =
    "--net --mount --propagation private --pid --fork --mount-proc --kill-child";

// ---------------------------------------------------------------------------
// What the test needs

/// The programs the tests run, by full path.
struct Tools {
    ctr: String,
    containerd: String,
    runc: String,
    unshare: String,
    mount: String,
}

/// The tools, or None after one `SKIPPED` line (a failure with
/// `USHERTEST_REQUIRE_CONTAINERD=1`); checked once.
fn prepare() -> Option<&'static Tools> {
    static TOOLS: OnceLock<Result<Tools, String>> = OnceLock::new();
    let tools = TOOLS.get_or_init(|| {
        if !root() {
            return Err("not root (containerd and runc need root)".into());
        }
        let find = |(program, package): (&str, &str)| {
            which(program).ok_or(format!("no {program} in PATH ({package})"))
        };
        let deb = "Debian's containerd package";
        #[rustfmt::skip]
        let [ctr, containerd, shim, runc, unshare, mount] = [
            ("ctr", deb), ("containerd", deb), ("containerd-shim-runc-v2", deb),
            ("runc", "Debian's runc package"), ("unshare", "util-linux"), ("mount", "mount"),
        ].map(find);
        shim?;
        let (ctr, containerd, runc, unshare, mount) = (ctr?, containerd?, runc?, unshare?, mount?);
        let mut probe = Command::new(&unshare);
        let ran = try_run(probe.args(words(DAEMON_NAMESPACES)).arg("true"), SOON)?;
        let why = ran.stderr.trim();
        if !ran.ok() {
            return Err(format!("unshare {DAEMON_NAMESPACES} fails here: {why}"));
        }
        Ok(Tools {
            ctr,
            containerd,
            runc,
            unshare,
            mount,
        })
    });
    let skipped = |why: &String| skip("USHERTEST_REQUIRE_CONTAINERD", why);
    tools.as_ref().map_err(skipped).ok()
}

// ---------------------------------------------------------------------------
// The image

/// Builds the OCI image tarball in `s` (setup.sh's root filesystem, packed
/// by oci-image.sh); returns its path. The static usher build is cached
/// where the Docker tests cache theirs.
fn build_image(s: &Scratch) -> PathBuf {
    let tests = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests");
    let run = format!("containerd-{}", std::process::id());
    let mut setup = Command::new("bash");
    setup
        .arg(tests.join("docker/setup.sh"))
        .arg(run)
        .arg(s.path("build"));
    setup
        .env("USHER_SETUP_ROOTFS_ONLY", "1")
        .env_remove("CARGO_TARGET_DIR");
    setup.env("USHER_STATIC_TARGET_DIR", static_target_dir());
    // A cold static build can take minutes on a slow machine.
    let built = run_bounded(&mut setup, secs(600));
    assert!(built.ok(), "setup.sh (root filesystem only): {built:?}");
    let rootfs = built.stdout.lines().find_map(|l| l.strip_prefix("rootfs="));
    let rootfs = rootfs.unwrap_or_else(|| panic!("setup.sh printed no rootfs= line: {built:?}"));
    let mut pack = Command::new("bash");
    pack.arg(tests.join("containerd/oci-image.sh")).arg(rootfs);
    pack.arg(s.path("oci")).arg(IMAGE);
    let packed = run_bounded(&mut pack, HEAVY);
    assert!(packed.ok(), "oci-image.sh failed: {packed:?}");
    PathBuf::from(packed.stdout.trim())
}

// ---------------------------------------------------------------------------
// The test's own containerd

/// A containerd of the test's own; stopped, with all it started, on drop.
struct Daemon {
    tools: &'static Tools,
    /// unshare, which forked containerd as PID 1 of a new PID namespace.
    unshare: Child,
    /// containerd's pid as this test sees it (0 until known).
    containerd: i32,
    /// The cgroup every container of this daemon is put under (in every
    /// hierarchy), removed on drop.
    cgroup: String,
    /// Config, root, state, socket, FIFOs, logs: removed last.
    dir: Scratch,
}

impl Daemon {
    /// Starts a containerd in `Scratch::new(name)` and waits until it answers.
    fn start(tools: &'static Tools, name: &str) -> Daemon {
        let dir = Scratch::new(name);
        let d = dir.0.to_str().expect("utf-8 temp dir").to_string();
        for sub in ["tmp", "opt", "fifo"] {
            fs::create_dir_all(dir.path(sub)).expect("create the daemon's dirs");
        }
        // Everything it writes in the scratch dir; only the plugins it needs
        // (no CRI: no CNI, no streaming server; no snapshotter but native).
        let config = format!(
            r#"version = 2
root = "{d}/root"
state = "{d}/state"
temp = "{d}/tmp"
disabled_plugins = [
  "io.containerd.grpc.v1.cri",
  "io.containerd.snapshotter.v1.aufs",
  "io.containerd.snapshotter.v1.btrfs",
  "io.containerd.snapshotter.v1.devmapper",
  "io.containerd.snapshotter.v1.overlayfs",
  "io.containerd.snapshotter.v1.zfs",
  "io.containerd.tracing.processor.v1.otlp",
  "io.containerd.internal.v1.tracing",
]

[grpc]
  address = "{d}/containerd.sock"

[ttrpc]
  address = "{d}/containerd.sock.ttrpc"

[plugins."io.containerd.internal.v1.opt"]
  path = "{d}/opt"
"#
        );
        fs::write(dir.path("config.toml"), config).expect("write the daemon's config");
        let log = fs::File::create(dir.path("containerd.log")).expect("create the daemon's log");
        let mut cmd = Command::new(&tools.unshare);
        // The tmpfs over /run: the shim's sockets and runc's state, which
        // containerd 1.6 puts there whatever its config says.
        let run = "\"$0\" -t tmpfs -o mode=0755 usher-test /run && exec \"$1\" --config \"$2\"";
        cmd.args(words(DAEMON_NAMESPACES))
            .args(["sh", "-c", run, &tools.mount, &tools.containerd]);
        cmd.arg(dir.path("config.toml"))
            .env("TMPDIR", dir.path("tmp"));
        cmd.stdin(Stdio::null())
            .stdout(log.try_clone().expect("dup the daemon's log"));
        cmd.stderr(log).process_group(0);
        hermetic(&mut cmd);
        let unshare = cmd.spawn().expect("spawn unshare for containerd");
        let cgroup = dir.0.file_name().expect("scratch dir name");
        let cgroup = cgroup.to_string_lossy().into_owned();
        let mut daemon = Daemon {
            tools,
            unshare,
            containerd: 0,
            cgroup,
            dir,
        };
        // From here on the drop guard stops it, whatever fails.
        let outer = daemon.unshare.id() as i32;
        let named = |p: i32| fs::read_to_string(format!("/proc/{p}/comm")).unwrap_or_default();
        wait_until(SOON, || {
            let child = children_of(outer).first().copied().unwrap_or(0);
            if child != 0 && named(child).trim() == "containerd" {
                daemon.containerd = child;
            }
            daemon.containerd != 0 || daemon.unshare.try_wait().is_ok_and(|s| s.is_some())
        });
        let started = daemon.containerd != 0;
        let log = daemon.log();
        assert!(started, "containerd did not start under unshare\n{log}");
        let socket = daemon.dir.path("containerd.sock");
        let up = wait_until(SOON, || socket.exists());
        assert!(up, "containerd made no socket\n{}", daemon.log());
        daemon.ctr_ok(&["version"], SOON);
        daemon
    }

    /// `ctr` talking to this daemon, in the test's containerd namespace.
    fn ctr(&self, args: &[&str]) -> Command {
        let mut cmd = Command::new(&self.tools.ctr);
        cmd.arg("--address").arg(self.dir.path("containerd.sock"));
        cmd.args(["--namespace", NAMESPACE]).args(args);
        for var in ["ADDRESS", "NAMESPACE", "SNAPSHOTTER"] {
            cmd.env_remove(format!("CONTAINERD_{var}"));
        }
        cmd
    }

    /// `ctr ARGS...` that must succeed within `within`.
    fn ctr_ok(&self, args: &[&str], within: Duration) -> Ran {
        let ran = run_bounded(&mut self.ctr(args), within);
        let log = self.log();
        let failed = format!("ctr {args:?} failed: {ran:?}\ncontainerd's log:\n{log}");
        assert!(ran.ok(), "{failed}");
        ran
    }

    /// The daemon's log (for failure messages).
    fn log(&self) -> String {
        self.dir.read("containerd.log")
    }

    /// Asserts the daemon's network, mount and PID namespaces are not the test's.
    fn assert_isolated(&self) {
        let ns = |pid: &str, kind: &str| fs::read_link(format!("/proc/{pid}/ns/{kind}")).ok();
        for kind in ["net", "mnt", "pid"] {
            let (ours, its) = (ns("self", kind), ns(&self.containerd.to_string(), kind));
            let read = ours.is_some() && its.is_some();
            assert!(read, "cannot read {kind} namespaces");
            assert_ne!(ours, its, "containerd shares the test's {kind} namespace");
        }
    }

    /// The mounts of the test's own mount namespace under the scratch dir:
    /// none, unless the daemon's isolation leaks.
    fn leaked_mounts(&self) -> Vec<String> {
        let dir = self.dir.0.to_string_lossy().into_owned();
        let mountinfo = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
        let mounts = mountinfo
            .lines()
            .filter_map(|l| l.split_whitespace().nth(4));
        mounts
            .filter(|m| m.starts_with(&dir))
            .map(String::from)
            .collect()
    }

    /// Starts `ctr run` attached (the container `id`, [`USHER`] as its PID
    /// 1 running `app`, `mounts` as `--mount` values): its stdout (the app's)
    /// goes to the file `ID.out`, its stderr (usher's log) is captured, its
    /// exit code is the task's. The ctr client is killed by pid on drop.
    fn run(&self, id: &str, mounts: &[String], app: &[&str]) -> Running {
        let (fifo, pid_file) = (self.dir.path("fifo"), self.dir.path(&format!("{id}.pid")));
        let cgroup = format!("/{}/{id}", self.cgroup);
        let mut args = words("run --rm --snapshotter native --runtime io.containerd.runc.v2");
        args.extend(["--runc-binary", &self.tools.runc, "--cgroup", &cgroup]);
        args.extend(["--fifo-dir", fifo.to_str().expect("utf-8 temp dir")]);
        args.extend(["--pid-file", pid_file.to_str().expect("utf-8 temp dir")]);
        for m in mounts {
            args.extend(["--mount", m]);
        }
        args.extend([IMAGE, id]);
        args.extend(words(USHER).into_iter().chain(app.iter().copied()));
        let out = fs::File::create(self.dir.path(&format!("{id}.out"))).expect("create ID.out");
        start_command(Mode::Plain, self.ctr(&args), |c| {
            c.stdout(out);
        })
    }

    /// Waits up to [`SOON`] for the app of `id` to print `ready`; fails
    /// the test with what the container and the daemon said if it never does.
    fn wait_ready(&self, id: &str, task: Running, ready: &str) -> Running {
        if self.dir.wait_for(&format!("{id}.out"), ready, SOON) {
            return task;
        }
        let f = task.wait(secs(2));
        let out = self.dir.read(&format!("{id}.out"));
        let log = self.log();
        panic!("the app of {id} never said {ready:?}: {f}\nits stdout:\n{out}\ncontainerd's log:\n{log}");
    }

    /// `ctr task kill --signal SIG ID`; returns when, read just before.
    fn kill(&self, id: &str, sig: &str) -> Sent {
        let mut cmd = self.ctr(&["task", "kill", "--signal", sig, id]);
        let sent = Sent::now();
        let ran = run_bounded(&mut cmd, SOON);
        assert!(ran.ok(), "ctr task kill failed: {ran:?}\n{}", self.log());
        sent
    }
}

impl Drop for Daemon {
    fn drop(&mut self) {
        // containerd is PID 1 of its PID namespace: when it exits the kernel
        // kills the rest of that namespace (shims, runc, the containers,
        // whose PID namespaces are nested in it), and unshare then returns.
        // (Signalled only while still unshare's child: its pid is ours.)
        let outer = self.unshare.id() as i32;
        if self.containerd > 0 && children_of(outer).contains(&self.containerd) {
            let _ = kill(self.containerd, libc::SIGTERM);
        }
        if !wait_until(SOON, || matches!(self.unshare.try_wait(), Ok(Some(_)))) {
            kill_tree(outer);
            let _ = self.unshare.wait();
        }
        remove_cgroups(&self.cgroup);
        // Its mounts were in its own mount namespace, gone with it; should
        // one have leaked into the test's, it is detached before the scratch
        // dir goes (the test itself asserts there is none).
        for m in self.leaked_mounts().iter().rev() {
            let _ = try_run(Command::new("umount").args(["-l", m]), SOON);
        }
    }
}

/// Removes the cgroup `name` (and the containers' cgroups in it) from every
/// hierarchy, retrying while their last processes are still exiting.
fn remove_cgroups(name: &str) {
    let top = PathBuf::from("/sys/fs/cgroup");
    for ours in [vec![top.clone()], subdirs(&top)].concat() {
        let ours = ours.join(name);
        for dir in [subdirs(&ours), vec![ours]].concat() {
            wait_until(SOON, || fs::remove_dir(&dir).is_ok() || !dir.exists());
        }
    }
}

/// The directories in `dir` (none if it is not one).
fn subdirs(dir: &Path) -> Vec<PathBuf> {
    let entries = fs::read_dir(dir).into_iter().flatten().flatten();
    entries.map(|e| e.path()).filter(|p| p.is_dir()).collect()
}

/// A daemon with the image imported, or None when the test is skipped.
/// Prints what each step cost.
fn daemon_with_image(name: &str) -> Option<Daemon> {
    let tools = prepare()?;
    let t = Instant::now();
    let daemon = Daemon::start(tools, name);
    let started = t.elapsed().as_millis();
    daemon.assert_isolated();
    let t = Instant::now();
    let image = build_image(&daemon.dir);
    let (built, t) = (t.elapsed().as_millis(), Instant::now());
    let tar = image.to_str().expect("utf-8 image path");
    // No pull: it is all there.
    daemon.ctr_ok(&["images", "import", "--snapshotter", "native", tar], HEAVY);
    let imported = t.elapsed().as_millis();
    let leaked = daemon.leaked_mounts();
    assert!(leaked.is_empty(), "the import mounted here: {leaked:?}");
    eprintln!(
        "containerd: up in {started} ms, image built in {built} ms, imported in {imported} ms"
    );
    Some(daemon)
}

// ---------------------------------------------------------------------------
// The test

/// The kubelet's stop, as containerd carries it out: `ctr task kill` sends
/// SIGTERM to the task's init (usher), usher drains 1s (the forward no
/// sooner, by its own log), forwards it, the app exits 42, the task's exit
/// status (ctr run's) is 42, and usher's termination message is in the file
/// the kubelet bind-mounts at /dev/termination-log.
#[test]
fn task_kill_drains_forwards_and_writes_the_termination_message() {
    let Some(d) = daemon_with_image("containerd-stop") else {
        return;
    };
    // The kubelet creates the file empty and bind-mounts it.
    let message = d.dir.path("termination-log");
    fs::write(&message, "").expect("create the termination message file");
    let src = message.display();
    let mount = format!("type=bind,src={src},dst=/dev/termination-log,options=rbind:rw");
    let task = d.run("stop", &[mount], &["/app/trap-app"]);
    let task = d.wait_ready("stop", task, "trap-app: ready");
    let sent = d.kill("stop", "SIGTERM");
    let f = task.wait(FINISH);
    let took = sent.elapsed();
    let log = format!("{f}\nthe app's stdout:\n{}", d.dir.read("stop.out"));
    let stop = "stop received: signal=SIGTERM drain=1s";
    let found = assert_in_order(&f.stderr, &[stop, "forwarded: signal=SIGTERM"]);
    let (Some(stop), Some(fwd)) = (line_t(&found[0]), line_t(&found[1])) else {
        panic!("usher's lines carry no times:\n{log}");
    };
    assert_on_time("the forward after the stop", Some(fwd - stop), 1.0, &log);
    assert_eq!(f.code, Some(42), "the task's exit status\n{log}");
    let got = log.contains("trap-app: got TERM, exiting 42");
    assert!(got, "the app never got the forwarded TERM\n{log}");
    let in_time = (1.0..=1.0 + 2.0 * SLACK).contains(&took);
    assert!(in_time, "ctr run returned {took:.3}s after the kill\n{log}");
    assert_eq!(d.leaked_mounts(), Vec::<String>::new(), "mounts leaked");

    // usher's termination message, as the kubelet reads it.
    let text = fs::read_to_string(&message).expect("read the termination message file");
    let first = text.lines().next().unwrap_or_default();
    let code = first.starts_with("exit code 42");
    let what = format!("the termination message:\n{text:?}\n{log}");
    assert!(code, "not `exit code 42` in {first:?} of {what}");
    let why = text.lines().any(|l| l == "shutdown: SIGTERM received");
    assert!(why, "no `shutdown: SIGTERM received` in {what}");
}
