//! usher: a tiny PID 1 for containers — spawns the app, reaps zombies, forwards signals, shuts down gracefully.
//!
//! The binary is `src/main.rs`; this library holds its parts so that tests
//! (and fuzzers) can drive them directly. Start reading at [`machine`], then
//! [`event_loop`]. Only [`sys`] may use `unsafe`. Built without std (only
//! `core` and `alloc`, with [`sys`] over the C library): docs/design.md, "Size".
#![no_std]
#![deny(unsafe_code)]

extern crate alloc;
#[cfg(test)]
extern crate std;

pub mod cgroup;
pub mod check;
pub mod cli;
pub mod codes;
pub mod driver;
pub mod duration;
pub mod event_loop;
pub mod heapsort;
pub mod hook;
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
pub mod traffic;
pub mod words;
