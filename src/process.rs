//! What usher observes of processes: the pid that names one, how it ended, its memory cgroup, its traffic.
//!
//! The lowest layer's vocabulary: the syscall and I/O modules report in
//! these terms and the state machine decides in them, so neither depends on
//! the other.

use crate::signals::Signal;

pub type Pid = i32;

/// How a process ended, as `waitpid` reports it.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Status {
    Exited(i32),
    Signaled(Signal),
}

impl Status {
    /// The shell's convention: the exit code, or 128+N for death by signal N.
    pub fn code(self) -> i32 {
        match self {
            Status::Exited(c) => c & 0xff,
            Status::Signaled(s) => 128 + s.number(),
        }
    }
}

/// A process found still running after the app exited, with its process group.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Leftover {
    pub pid: Pid,
    pub group: Pid,
}

/// What the memory cgroup usher runs in says (read at start, and again only
/// when a process died of SIGKILL).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Memory {
    /// The kernel's OOM-kill counter.
    pub oom_kills: u64,
    /// The limit in bytes, when one is set.
    pub limit: Option<u64>,
    /// The peak usage in bytes, where the cgroup records it.
    pub peak: Option<u64>,
}

/// One look at the app's inbound traffic (during an adaptive drain).
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub struct Traffic {
    /// Listening TCP sockets owned by the app's processes.
    pub listeners: u32,
    /// Arrivals since the first look, cumulative: new connections, data
    /// segments received on connections seen before (at most
    /// `traffic::PER_LOOK` per connection per look), and connections that
    /// ended unseen (see `traffic`).
    pub arrivals: u64,
    /// Connections to the listeners now.
    pub connections: u32,
}
