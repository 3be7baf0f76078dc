//! usher: a tiny PID 1 for containers — spawns the app, reaps zombies, forwards signals, shuts down gracefully.
//!
//! The binary is `src/main.rs`; this library holds its parts so that tests
//! (and fuzzers) can drive them directly. Start reading at [`machine`].
//! Only [`sys`] may use `unsafe`.
#![deny(unsafe_code)]

pub mod cgroup;
pub mod cli;
pub mod driver;
pub mod duration;
pub mod http;
pub mod log;
pub mod machine;
pub mod manpage;
pub mod process;
pub mod procs;
pub mod report;
pub mod signals;
pub mod spawn;
pub mod sys;
pub mod words;
