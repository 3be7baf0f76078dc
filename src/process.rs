//! What usher knows of a process: the pid that names it and how it ended.
//!
//! The lowest layer's vocabulary: the syscall module reports in these terms
//! and the state machine decides in them, so neither depends on the other.

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
