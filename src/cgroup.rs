//! The memory cgroup usher runs in: found once at start-up, read for its OOM-kill counter, limit and peak.
//!
//! Found the way a process inside a container can: `/proc/self/cgroup`
//! names the cgroup (v1: the line whose controllers include `memory`; v2:
//! the `0::` line), and the directory is that path under the mount
//! (`/sys/fs/cgroup/memory` for v1, `/sys/fs/cgroup` for v2), or else the
//! mount's root: in a container the cgroup namespace (v2) or Docker's
//! bind-mount of the container's own cgroup (v1) puts it there, while
//! `/proc/self/cgroup` may still show the host's longer path
//! (`/docker/<id>`). A directory counts only once its OOM-kill counter
//! reads. Nothing here runs while usher idles: it is read at start-up and
//! again only when a process died of SIGKILL.

use alloc::format;
use alloc::string::String;

pub use crate::process::Memory;

/// The memory cgroup's directory, found once at start-up.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Cgroup {
    /// The directory, e.g. `/sys/fs/cgroup/memory` (the mount root).
    dir: String,
    /// Whether it is a cgroup v2 (unified) directory.
    v2: bool,
}

impl Cgroup {
    /// The cgroup and its OOM-kill counter now (two files read: start-up
    /// pays for nothing else). None when there is no memory cgroup usher
    /// can read (no /proc/self/cgroup, no mount, no counter file): then
    /// nothing is ever said, and nothing is warned.
    pub fn find() -> Option<(Cgroup, u64)> {
        find_in(
            &crate::sys::read_text("/proc/self/cgroup")?,
            "/sys/fs/cgroup",
        )
    }

    /// Reads the counters now; None if unreadable now.
    pub fn read(&self) -> Option<Memory> {
        let [max, peak] = match self.v2 {
            true => ["memory.max", "memory.peak"],
            false => ["memory.limit_in_bytes", "memory.max_usage_in_bytes"],
        };
        Some(Memory {
            oom_kills: self.kills()?,
            limit: self.file(max).and_then(|t| limit(&t)),
            peak: self.file(peak).and_then(|t| limit(&t)),
        })
    }

    /// The OOM-kill counter now.
    fn kills(&self) -> Option<u64> {
        let events = match self.v2 {
            true => self.file("memory.events")?,
            false => self.file("memory.oom_control")?,
        };
        // v1 has no oom_group_kill.
        Some(counter(&events, "oom_kill")? + counter(&events, "oom_group_kill").unwrap_or(0))
    }

    fn file(&self, name: &str) -> Option<String> {
        crate::sys::read_text(&format!("{}/{name}", self.dir))
    }
}

/// The first readable memory cgroup for the `/proc/self/cgroup` text
/// `cgroups`, with the cgroup mounts under `root`: at the line's path, else
/// at the mount's root; and its OOM-kill counter.
fn find_in(cgroups: &str, root: &str) -> Option<(Cgroup, u64)> {
    for (v2, path) in cgroups.split('\n').filter_map(memory_line) {
        let mount = if v2 { "" } else { "/memory" };
        // A path of "/" makes "MOUNT/": the same directory, read once more.
        for sub in [path, ""] {
            let dir = format!("{root}{mount}{sub}");
            let found = Cgroup { dir, v2 };
            if let Some(kills) = found.kills() {
                return Some((found, kills));
            }
        }
    }
    None
}

/// A `/proc/self/cgroup` line `ID:CONTROLLERS:PATH` that holds the memory
/// controller: (whether it is v2, PATH). v1 names `memory` among its
/// controllers; v2's line is `0::PATH`.
fn memory_line(line: &str) -> Option<(bool, &str)> {
    let (id, rest) = line.split_once(':')?;
    let (controllers, path) = rest.split_once(':')?;
    let v2 = id == "0" && controllers.is_empty();
    (v2 || controllers.split(',').any(|c| c == "memory")).then_some((v2, path))
}

/// The number after `key ` on a line of `text` (memory.events, memory.oom_control).
fn counter(text: &str, key: &str) -> Option<u64> {
    text.split('\n')
        .find_map(|l| l.strip_prefix(key)?.strip_prefix(' ')?.parse().ok())
}

/// A byte count from a one-number file; None for v2's "max" and for v1's
/// "unlimited" (the page counter's maximum in bytes, 9223372036854771712 with
/// 4 KiB pages: anything from 2^62 up is no limit anyone set).
fn limit(text: &str) -> Option<u64> {
    let n: u64 = text.trim().parse().ok()?;
    (n < 1 << 62).then_some(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::eprintln;
    use std::fs;
    use std::vec::Vec;

    const V1: &str = "12:pids:/docker/4f1c\n\
                      9:cpu,cpuacct:/docker/4f1c\n\
                      4:memory:/docker/4f1c\n\
                      1:name=systemd:/docker/4f1c\n\
                      0::/\n";

    #[test]
    fn proc_self_cgroup_lines() {
        let lines = |t: &'static str| t.lines().filter_map(memory_line).collect::<Vec<_>>();
        // v1 (hybrid: the v2 line comes too, and is tried after).
        assert_eq!(lines(V1), [(false, "/docker/4f1c"), (true, "/")]);
        // v2 only, in a cgroup namespace and on the host.
        assert_eq!(lines("0::/\n"), [(true, "/")]);
        assert_eq!(
            lines("0::/system.slice/docker-4f1c.scope\n"),
            [(true, "/system.slice/docker-4f1c.scope")]
        );
        // Co-mounted controllers; a name= hierarchy is not memory.
        assert_eq!(lines("5:cpu,memory:/a\n"), [(false, "/a")]);
        assert_eq!(lines("1:name=memory:/a\n7:memoryx:/b\n"), []);
        assert_eq!(lines(""), []);
        assert_eq!(lines("garbage\n4:memory\n"), []);
    }

    #[test]
    fn counters() {
        let events = "low 0\nhigh 0\nmax 12\noom 3\noom_kill 2\noom_group_kill 1\n";
        assert_eq!(counter(events, "oom_kill"), Some(2));
        assert_eq!(counter(events, "oom_group_kill"), Some(1));
        assert_eq!(counter(events, "oom"), Some(3));
        assert_eq!(counter("oom_kill 5\n", "oom_group_kill"), None);
        // v1 memory.oom_control, with the counter (kernel ≥ 4.13) and without.
        let v1 = "oom_kill_disable 0\nunder_oom 0\noom_kill 7\n";
        assert_eq!(counter(v1, "oom_kill"), Some(7));
        assert_eq!(
            counter("oom_kill_disable 0\nunder_oom 0\n", "oom_kill"),
            None
        );
        assert_eq!(counter("oom_kill x\n", "oom_kill"), None);
    }

    #[test]
    fn limits() {
        assert_eq!(limit("33554432\n"), Some(32 << 20));
        assert_eq!(limit("max\n"), None);
        assert_eq!(limit("9223372036854771712\n"), None); // v1, 4 KiB pages
        assert_eq!(limit("9223372036854710272\n"), None); // v1, 64 KiB pages
        assert_eq!(limit(""), None);
    }

    /// A fake cgroup mount under a temp dir: `files` at their paths.
    fn fake(name: &str, files: &[(&str, &str)]) -> String {
        let root = std::env::temp_dir().join(format!("usher-cg-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&root);
        for (path, text) in files {
            let file = root.join(path);
            fs::create_dir_all(file.parent().unwrap()).unwrap();
            fs::write(file, text).unwrap();
        }
        root.to_string_lossy().into_owned()
    }

    #[test]
    fn v1_bind_mount_root_when_the_path_is_the_hosts() {
        // Docker's v1 bind-mount: /proc/self/cgroup shows /docker/4f1c, the
        // container's own cgroup is the mount's root.
        let root = fake(
            "v1",
            &[
                (
                    "memory/memory.oom_control",
                    "oom_kill_disable 0\nunder_oom 0\noom_kill 4\n",
                ),
                ("memory/memory.limit_in_bytes", "33554432\n"),
                ("memory/memory.max_usage_in_bytes", "33550336\n"),
            ],
        );
        let (cg, kills) = find_in(V1, &root).expect("found at the mount root");
        assert_eq!(kills, 4);
        assert_eq!(cg.dir, format!("{root}/memory"));
        let mem = Memory {
            oom_kills: 4,
            limit: Some(32 << 20),
            peak: Some(33550336),
        };
        assert_eq!(cg.read(), Some(mem));
        // The path itself, when it is there (no bind-mount: on the host).
        fs::create_dir_all(format!("{root}/memory/docker/4f1c")).unwrap();
        let unlimited = "9223372036854771712\n";
        fs::write(
            format!("{root}/memory/docker/4f1c/memory.limit_in_bytes"),
            unlimited,
        )
        .unwrap();
        fs::write(
            format!("{root}/memory/docker/4f1c/memory.oom_control"),
            "oom_kill 0\n",
        )
        .unwrap();
        let (cg, _) = find_in(V1, &root).expect("found at the path");
        assert_eq!(cg.dir, format!("{root}/memory/docker/4f1c"));
        assert_eq!(cg.read(), Some(Memory::default()));
        // Without the counter (kernel < 4.13) the cgroup is of no use.
        fs::write(format!("{root}/memory/memory.oom_control"), "under_oom 0\n").unwrap();
        fs::remove_file(format!("{root}/memory/docker/4f1c/memory.oom_control")).unwrap();
        assert_eq!(find_in(V1, &root), None);
        let _ = fs::remove_dir_all(root);
    }

    #[test]
    fn v2_path_then_root() {
        let events = "low 0\nhigh 0\nmax 9\noom 2\noom_kill 1\noom_group_kill 1\n";
        let root = fake(
            "v2",
            &[
                ("app.slice/memory.events", events),
                ("app.slice/memory.max", "max\n"),
                ("memory.events", "oom 0\noom_kill 0\n"),
                ("memory.max", "67108864\n"),
            ],
        );
        let (cg, kills) = find_in("0::/app.slice\n", &root).expect("found at the path");
        assert_eq!(kills, 2);
        assert!(cg.v2 && cg.dir.ends_with("/app.slice"), "{cg:?}");
        let mem = Memory {
            oom_kills: 2,
            limit: None,
            peak: None,
        };
        assert_eq!(cg.read(), Some(mem));
        // A cgroup namespace's root, under the host's path.
        let (cg, _) = find_in("0::/system.slice/docker-1.scope\n", &root).expect("root");
        let mem = Memory {
            oom_kills: 0,
            limit: Some(64 << 20),
            peak: None,
        };
        assert_eq!((cg.dir.as_str(), cg.read()), (root.as_str(), Some(mem)));
        // No memory controller in v2 (a hybrid host's unified mount): none.
        assert_eq!(find_in("0::/nothing\n", &format!("{root}/none")), None);
        let _ = fs::remove_dir_all(root);
    }

    /// Whatever cgroup this test process is in: finding and reading never
    /// panics; when this process's own v1/v2 counter file is where
    /// /proc/self/cgroup says, it is found and reads.
    #[test]
    fn this_process() {
        let found = Cgroup::find();
        let read = found.as_ref().and_then(|(c, _)| c.read());
        eprintln!("this process's memory cgroup: {found:?}: {read:?}");
        let cgroups = fs::read_to_string("/proc/self/cgroup").unwrap_or_default();
        let counter_at = |(v2, path): (bool, &str)| {
            let file = if v2 {
                format!("/sys/fs/cgroup{path}/memory.events")
            } else {
                format!("/sys/fs/cgroup/memory{path}/memory.oom_control")
            };
            fs::read_to_string(file).is_ok_and(|t| counter(&t, "oom_kill").is_some())
        };
        if cgroups.lines().filter_map(memory_line).any(counter_at) {
            assert!(read.is_some(), "{found:?} for {cgroups}");
        }
    }
}
