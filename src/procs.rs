//! Who is left: the processes a shutdown must signal, read from /proc.
//!
//! Read only when the machine asks (the app has exited, or the deadline has
//! come), never while idle. As PID 1 the namespace's own /proc is the list,
//! and a short one. Otherwise usher walks down from itself through
//! `/proc/PID/task/TID/children`, so a busy host's thousands of unrelated
//! processes cost nothing. Without /proc (or with one that belongs to
//! another PID namespace) there is no list, and the machine decides what to
//! do without one.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::sys;

use crate::machine::Scope;
use crate::process::{Leftover, Pid};

/// The processes in `scope`, other than usher (`me`), in no particular
/// order; `None` when /proc cannot be read or is another namespace's.
pub fn find(scope: Scope, me: Pid) -> Option<Vec<Leftover>> {
    if scope == Scope::Group {
        return Some(Vec::new()); // nothing to list: the driver probes the group
    }
    if !shows_own_namespace(me) {
        return None;
    }
    match scope {
        Scope::Namespace => namespace(me),
        Scope::Descendants => descendants(me).or_else(|| scan_descendants(me)),
        Scope::Group => None,
    }
}

/// The pids of the app's process tree: as PID 1 every process but usher,
/// otherwise usher's descendants (hooks included; they rarely listen).
pub fn tree(me: Pid) -> Option<Vec<Pid>> {
    let scope = if me == 1 {
        Scope::Namespace
    } else {
        Scope::Descendants
    };
    Some(find(scope, me)?.into_iter().map(|p| p.pid).collect())
}

/// An usher of this PID namespace that began its shutdown: it names itself
/// `usher:stopping` then (`/proc/PID/comm`, readable by any process of the
/// namespace, even from a read-only root and without privileges). PID 1 is
/// looked at first, then every other process.
pub fn stopping_usher() -> Option<Pid> {
    let stopping = |pid: Pid| {
        let comm = sys::read_file(format!("/proc/{pid}/comm").as_bytes());
        comm.is_ok_and(|c| c.trim_ascii_end() == b"usher:stopping")
    };
    if stopping(1) {
        return Some(1);
    }
    pids_in_proc()?
        .into_iter()
        .find(|&pid| pid != 1 && stopping(pid))
}

/// Every process in /proc but `me`.
fn namespace(me: Pid) -> Option<Vec<Leftover>> {
    Some(
        pids_in_proc()?
            .into_iter()
            .filter(|&pid| pid != me)
            .filter_map(leftover)
            .collect(),
    )
}

/// `me`'s descendants, walked down through each task's `children` file;
/// `None` when the kernel has no such file (CONFIG_PROC_CHILDREN).
///
/// A process that dies during the walk hands its children to usher (a
/// subreaper) after usher's own `children` was read: they would be missed.
/// So the walk is repeated, keeping what earlier walks found, until one
/// finds nobody new — three walks at most.
fn descendants(me: Pid) -> Option<Vec<Leftover>> {
    let mut found: Vec<Leftover> = Vec::new();
    for _ in 0..3 {
        let before = found.len();
        let mut todo = children(me)?;
        let mut seen: Vec<Pid> = Vec::new();
        while let Some(pid) = todo.pop() {
            if seen.contains(&pid) {
                continue; // listed twice while the tree changed
            }
            seen.push(pid);
            if !found.iter().any(|p| p.pid == pid) {
                match leftover(pid) {
                    Some(p) => found.push(p),
                    None => continue, // gone between the listing and now
                }
            }
            todo.extend(children(pid).unwrap_or_default());
        }
        if found.len() == before {
            break;
        }
    }
    Some(found)
}

/// The children of every task of `pid`; `None` without the `children` file.
fn children(pid: Pid) -> Option<Vec<Pid>> {
    let mut kids = Vec::new();
    let mut any = false;
    let mut tasks = Vec::new();
    sys::list_dir(format!("/proc/{pid}/task").as_bytes(), |t| {
        tasks.push(t.to_vec())
    })
    .ok()?;
    for task in tasks {
        let task = String::from_utf8_lossy(&task);
        let Some(text) = sys::read_text(&format!("/proc/{pid}/task/{task}/children")) else {
            continue;
        };
        any = true;
        kids.extend(
            text.split_whitespace()
                .filter_map(|w| w.parse::<Pid>().ok()),
        );
    }
    any.then_some(kids)
}

/// The slow way, for kernels without `children` files: every process of
/// the host, each followed up its parents.
fn scan_descendants(me: Pid) -> Option<Vec<Leftover>> {
    let all: Vec<(Pid, Stat)> = pids_in_proc()?
        .into_iter()
        .filter_map(|pid| Some((pid, stat(pid)?)))
        .collect();
    let parent = |pid: Pid| all.iter().find(|(p, _)| *p == pid).map(|(_, s)| s.ppid);
    let descends = |mut pid: Pid| {
        for _ in 0..all.len() {
            match parent(pid) {
                Some(pp) if pp == me => return true,
                Some(pp) if pp > 0 && pp != pid => pid = pp,
                _ => return false,
            }
        }
        false
    };
    Some(
        all.iter()
            .filter(|(pid, _)| *pid != me && descends(*pid))
            .map(|(pid, s)| Leftover {
                pid: *pid,
                group: s.pgrp,
            })
            .collect(),
    )
}

/// The pids /proc lists.
fn pids_in_proc() -> Option<Vec<Pid>> {
    let mut pids = Vec::new();
    let number = |name: &[u8]| core::str::from_utf8(name).ok()?.parse::<Pid>().ok();
    sys::list_dir(b"/proc", |name| pids.extend(number(name))).ok()?;
    Some(pids)
}

fn leftover(pid: Pid) -> Option<Leftover> {
    stat(pid).map(|s| Leftover { pid, group: s.pgrp })
}

/// One line of /proc/PID/stat, the fields we need.
struct Stat {
    ppid: Pid,
    pgrp: Pid,
}

fn stat(pid: Pid) -> Option<Stat> {
    parse_stat(&sys::read_text(&format!("/proc/{pid}/stat"))?)
}

/// `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(1);
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { ppid, pgrp })
}

/// Whether /proc is procfs for usher's own PID namespace. An empty /proc
/// (not mounted) lists nobody; another namespace's (a PID namespace
/// without its own /proc mount) lists the wrong processes under pids that
/// mean something else here. Either way, what it says cannot be used.
fn shows_own_namespace(me: Pid) -> bool {
    let link = sys::read_link(b"/proc/self").ok();
    link.and_then(|p| core::str::from_utf8(&p).ok()?.parse::<Pid>().ok()) == Some(me)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_stat_with_odd_names() {
        let s = parse_stat("42 (a) b (c)) S 7 42 42 0 -1").unwrap();
        assert_eq!((s.ppid, s.pgrp), (7, 42));
        assert!(parse_stat("garbage").is_none());
    }

    #[test]
    fn finds_a_child_and_its_child_both_ways() {
        use std::os::unix::process::CommandExt;
        use std::time::{Duration, Instant};
        let me = std::process::id() as Pid;
        // Its own group, so that the cleanup below reaches the sleep too.
        let mut child = std::process::Command::new("sh")
            .args(["-c", "sleep 30 & wait"])
            .process_group(0)
            .spawn()
            .expect("sh");
        let kid = child.id() as Pid;
        let end = Instant::now() + Duration::from_secs(5);
        while children(kid).unwrap_or_default().is_empty() && Instant::now() < end {
            std::thread::sleep(Duration::from_millis(10));
        }
        let grandkids = children(kid).unwrap_or_default();
        let walked = find(Scope::Descendants, me).expect("/proc readable in tests");
        let scanned = scan_descendants(me).expect("/proc readable in tests");
        let _ = std::process::Command::new("kill")
            .args(["-KILL", "--", &format!("-{kid}")])
            .status();
        let _ = child.wait();
        let pids = |l: &[Leftover]| l.iter().map(|p| p.pid).collect::<Vec<_>>();
        let (walked, scanned) = (pids(&walked), pids(&scanned));
        assert_eq!(grandkids.len(), 1, "sh has its sleep");
        for p in [kid, grandkids[0]] {
            assert!(walked.contains(&p), "{p} not walked: {walked:?}");
            assert!(scanned.contains(&p), "{p} not scanned: {scanned:?}");
        }
        assert!(!walked.contains(&me) && !scanned.contains(&me));
    }
}
