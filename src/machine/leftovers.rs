//! Whom a signal for the app's leftovers reaches: a pure decision over where usher stands and what a census of processes found.
//!
//! Leftovers are signalled in two steps. What needs no list goes at once
//! ([`Situation::at_once`]): as PID 1 `kill(-1)` reaches the whole namespace,
//! and while the app still runs its group holds most of what it started.
//! Then usher lists who is left (a census of /proc) and the list decides
//! the rest ([`Situation::after`]): processes outside the app's group when
//! usher is not PID 1 (never `kill(-1)` outside a namespace: it would reach
//! everything the user owns), and whom the log names.

use alloc::vec;
use alloc::vec::Vec;

use crate::process::{Leftover, Pid};

/// Where a signal goes.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Target {
    /// A process group (the app's pgid is its pid); when no process is left
    /// in it, its leader alone (an app that moved itself out with setsid).
    Group(Pid),
    /// One process.
    Process(Pid),
    /// Every process usher may signal (`kill(-1)`): as PID 1, the namespace.
    Everyone,
}

/// Where a census must look.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Scope {
    /// Every process of usher's PID namespace (usher is its PID 1).
    Namespace,
    /// usher's descendants, and whether the app's process group has members.
    Descendants,
    /// Only whether the app's process group has members: usher has no
    /// child, so it has no descendants to list.
    Group,
}

/// What a census found.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Census {
    /// The processes found, usher excluded; `None` when /proc cannot be read.
    pub list: Option<Vec<Leftover>>,
    /// Some process is still in the app's process group.
    pub group_alive: bool,
}

impl Census {
    /// Nobody is left (as far as /proc tells).
    pub fn empty(&self) -> bool {
        self.list.as_ref().is_some_and(Vec::is_empty) && !self.group_alive
    }
}

/// Whom the log names as signalled.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Named {
    Pids(Vec<Pid>),
    /// Nothing was listed, but the app's group has members.
    Group(Pid),
    /// /proc could not be read.
    Unknown,
    /// Nobody: no line.
    Nobody,
}

/// Where usher stands when it signals leftovers.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Situation {
    pub pid1: bool,
    /// The app (its pid, which is its group's id).
    pub app: Pid,
    /// The app still runs (the deadline came first).
    pub app_alive: bool,
    /// The app's group already got this signal, forwarded: spare it, a
    /// second TERM can cut an app's cleanup short.
    pub spare_group: bool,
    /// Some child of usher is left (the last reaping round said so).
    pub children_left: bool,
}

impl Situation {
    /// As PID 1 every process of the namespace is usher's child (orphans are
    /// reparented to it), so no child means nothing is left to signal.
    pub fn nothing_left(&self) -> bool {
        self.pid1 && !self.children_left
    }

    /// The signal that needs no list, sent before the census: as PID 1 to
    /// everyone, else to the app's group while the app still runs.
    pub fn at_once(&self) -> Option<Target> {
        match (self.spare_group, self.pid1, self.app_alive) {
            (true, _, _) => None,
            (false, true, _) => Some(Target::Everyone),
            (false, false, true) => Some(Target::Group(self.app)),
            (false, false, false) => None,
        }
    }

    /// Where the census must look.
    pub fn scope(&self) -> Scope {
        match (self.pid1, self.children_left) {
            (true, _) => Scope::Namespace,
            (false, true) => Scope::Descendants,
            (false, false) => Scope::Group,
        }
    }

    /// With the census: what else to signal (after [`Self::at_once`]), and
    /// whom the log names.
    pub fn after(&self, census: &Census) -> (Vec<Target>, Named) {
        let app = self.app;
        let list = census.list.as_deref();
        let outside: Vec<Pid> = list
            .unwrap_or_default()
            .iter()
            .filter(|p| p.group != app)
            .map(|p| p.pid)
            .collect();
        let mut targets: Vec<Target> = match (self.pid1, list) {
            // Everyone already got it.
            (true, _) if !self.spare_group => Vec::new(),
            // No /proc as PID 1: better a second signal than none outside the group.
            (true, None) => vec![Target::Everyone],
            _ => outside.iter().map(|&p| Target::Process(p)).collect(),
        };
        let group_due = !self.pid1 && !self.spare_group && self.at_once().is_none();
        if group_due && census.group_alive {
            targets.insert(0, Target::Group(app));
        }
        let mut pids = match list {
            None => return (targets, Named::Unknown),
            Some(_) if self.spare_group => outside,
            Some(l) => l.iter().map(|p| p.pid).collect(),
        };
        crate::heapsort::sort(&mut pids);
        let named = match pids.is_empty() {
            false => Named::Pids(pids),
            true if census.group_alive && !self.spare_group => Named::Group(app),
            true => Named::Nobody,
        };
        (targets, named)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use Target::*;

    const APP: Pid = 7;

    /// One in the app's group (40), one outside it (41).
    fn census(list: bool, group_alive: bool) -> Census {
        let procs = [(40, APP), (41, 41)];
        let list = list.then(|| {
            procs
                .iter()
                .map(|&(pid, group)| Leftover { pid, group })
                .collect()
        });
        Census { list, group_alive }
    }

    #[rustfmt::skip]
    #[test]
    fn whom_leftovers_get_by_situation_and_census() {
        // pid1, app_alive, spare_group, /proc listed, group_alive
        //   => at once, after the census, named
        type Row = ((bool, bool, bool, bool, bool), Option<Target>, &'static [Target], Named);
        let p = |v: &[Pid]| Named::Pids(v.to_vec());
        let table: [Row; 12] = [
            // As PID 1: kill(-1) at once, the list only names them.
            ((true, false, false, true, true), Some(Everyone), &[], p(&[40, 41])),
            ((true, true, false, true, true), Some(Everyone), &[], p(&[40, 41])),
            // As PID 1 after the group was told: only what is outside it.
            ((true, false, true, true, true), None, &[Process(41)], p(&[41])),
            // As PID 1 without /proc: everyone, even if the group was told.
            ((true, false, true, false, true), None, &[Everyone], Named::Unknown),
            ((true, false, false, false, true), Some(Everyone), &[], Named::Unknown),
            // Not PID 1, the app running (the deadline): its group at once, then the rest.
            ((false, true, false, true, true), Some(Group(APP)), &[Process(41)], p(&[40, 41])),
            // Not PID 1, the app gone: the group (if it has members) and the outside ones.
            ((false, false, false, true, true), None, &[Group(APP), Process(41)], p(&[40, 41])),
            ((false, false, false, true, false), None, &[Process(41)], p(&[40, 41])),
            // Not PID 1, no /proc: the group alone, named unknown.
            ((false, false, false, false, true), None, &[Group(APP)], Named::Unknown),
            // Not PID 1, group already told: never the group again, never kill(-1).
            ((false, false, true, true, true), None, &[Process(41)], p(&[41])),
            ((false, false, true, false, true), None, &[], Named::Unknown),
            // Not PID 1, the app running, no /proc: its group at once, nobody named.
            ((false, true, false, false, true), Some(Group(APP)), &[], Named::Unknown),
        ];
        for ((pid1, app_alive, spare_group, listed, group_alive), now, later, named) in table {
            let s = Situation { pid1, app: APP, app_alive, spare_group, children_left: true };
            let row = (pid1, app_alive, spare_group, listed, group_alive);
            assert_eq!(s.at_once(), now, "{row:?}");
            assert_eq!(s.after(&census(listed, group_alive)), (later.to_vec(), named), "{row:?}");
        }
        let s = Situation { pid1: false, app: APP, app_alive: false, spare_group: false, children_left: false };
        let empty = Census { list: Some(Vec::new()), group_alive: true };
        assert_eq!(s.after(&empty), (vec![Group(APP)], Named::Group(APP)), "members outside usher's tree");
        assert_eq!(s.scope(), Scope::Group);
        let none = Census { list: Some(Vec::new()), group_alive: false };
        assert_eq!(s.after(&none), (vec![], Named::Nobody));
        assert!(none.empty() && !empty.empty());
    }
}
