//! Who is left: the processes a shutdown must signal, read from /proc.
//!
//! Only read when the app has exited or the deadline has come, never while
//! idle. Without /proc (or with one that belongs to another PID namespace)
//! there is no list, and the driver falls back to signalling the process
//! group (or, as PID 1, everything with kill(-1)).

use std::collections::HashMap;
use std::fs;

use crate::machine::Pid;

/// One line of /proc/PID/stat, the fields we need.
struct Stat {
    ppid: Pid,
    pgrp: Pid,
}

/// Every process visible in /proc, by pid.
fn snapshot() -> Option<HashMap<Pid, Stat>> {
    let mut all = HashMap::new();
    for entry in fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|n| n.parse::<Pid>().ok())
        else {
            continue;
        };
        // A process may vanish between readdir and read: skip it.
        if let Some(stat) = fs::read_to_string(entry.path().join("stat"))
            .ok()
            .and_then(|s| parse_stat(&s))
        {
            all.insert(pid, stat);
        }
    }
    Some(all)
}

/// `pid (comm) state ppid pgrp ...`; comm may hold spaces and parentheses.
fn parse_stat(line: &str) -> Option<Stat> {
    let rest = &line[line.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(1);
    let ppid = fields.next()?.parse().ok()?;
    let pgrp = fields.next()?.parse().ok()?;
    Some(Stat { ppid, pgrp })
}

/// The processes usher answers for, other than itself: as PID 1 every
/// process in the namespace; otherwise the members of `group` and every
/// descendant of usher; with `skip_group`, none of `group`'s members.
/// `None` when /proc cannot be read.
pub fn leftovers(me: Pid, pid1: bool, group: Pid, skip_group: bool) -> Option<Vec<Pid>> {
    if !shows_own_namespace(me) {
        return None;
    }
    let all = snapshot()?;
    let mut found: Vec<Pid> = all
        .iter()
        .filter(|(&p, s)| p != me && !(skip_group && s.pgrp == group))
        .filter(|(&p, s)| pid1 || s.pgrp == group || descends_from(&all, p, me))
        .map(|(&p, _)| p)
        .collect();
    found.sort_unstable();
    Some(found)
}

/// Whether any process but usher lives in usher's PID namespace (as PID 1),
/// from its own /proc; `None` when that /proc cannot be trusted or read.
pub fn others_in_namespace(me: Pid) -> Option<bool> {
    if !shows_own_namespace(me) {
        return None;
    }
    let mut entries = fs::read_dir("/proc").ok()?;
    Some(entries.any(|e| {
        e.ok()
            .and_then(|e| e.file_name().to_str()?.parse::<Pid>().ok())
            .is_some_and(|p| p != me)
    }))
}

/// Whether /proc is procfs for usher's own PID namespace. An empty /proc
/// (not mounted) lists nobody; another namespace's (a PID namespace
/// without its own /proc mount) lists the wrong processes under pids that
/// mean something else here. Either way, what it says cannot be used.
fn shows_own_namespace(me: Pid) -> bool {
    fs::read_link("/proc/self")
        .ok()
        .and_then(|p| p.to_str()?.parse::<Pid>().ok())
        == Some(me)
}

fn descends_from(all: &HashMap<Pid, Stat>, mut pid: Pid, ancestor: Pid) -> bool {
    // Bounded walk: pid loops cannot occur, but a torn snapshot could mislead.
    for _ in 0..all.len() {
        match all.get(&pid) {
            Some(s) if s.ppid == ancestor => return true,
            Some(s) if s.ppid > 0 && s.ppid != pid => pid = s.ppid,
            _ => return false,
        }
    }
    false
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
    fn descent() {
        let mut all = HashMap::new();
        all.insert(10, Stat { ppid: 1, pgrp: 10 });
        all.insert(11, Stat { ppid: 10, pgrp: 10 });
        all.insert(12, Stat { ppid: 11, pgrp: 12 });
        all.insert(20, Stat { ppid: 1, pgrp: 20 });
        assert!(descends_from(&all, 12, 10));
        assert!(!descends_from(&all, 20, 10));
    }

    #[test]
    fn finds_this_test_process_family() {
        let me = std::process::id() as Pid;
        let list = leftovers(me, false, -1, false).expect("/proc readable in tests");
        assert!(!list.contains(&me));
    }
}
