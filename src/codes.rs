//! usher's exit codes, each defined once with what it means: `--help`, the man page and the README are built from or tested against [`TABLE`].

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

/// `usher --check`: the answer was not a success.
pub const CHECK_FAILED: u8 = 1;
/// A usage error: a flag or variable usher cannot use.
pub const USAGE: u8 = 2;
/// A failed post-start hook stopped the app, whatever its own code.
pub const POST_START: i32 = 124;
/// usher itself failed (fork, signal set-up, its event loop).
pub const USHER: i32 = 125;
/// The command was found but cannot run.
pub const CANNOT_RUN: i32 = 126;
/// The command was not found.
pub const NOT_FOUND: i32 = 127;
/// usher SIGKILLed the app at its deadline (128 + 9).
pub const KILLED: i32 = 137;

/// Every exit status with its meaning, in the order the docs list them.
pub const TABLE: &[(&str, &str)] = &[
    ("N", "the app's own exit code"),
    ("128+N", "the app died of signal N"),
    ("0", "the app's code was given to --remap-exit"),
    (
        "137",
        "usher SIGKILLed the app at its deadline (--grace-period)",
    ),
    (
        "124",
        "the post-start hook failed and usher stopped the app",
    ),
    ("125", "usher itself failed"),
    ("126", "the command was found but cannot run"),
    ("127", "the command was not found"),
    ("2", "a usage error"),
    (
        "1",
        "usher --check: the answer was not 200-399, or none came",
    ),
];

/// The table as one paragraph of prose, for `--help` and the man page.
pub fn prose() -> String {
    let parts: Vec<String> = TABLE.iter().map(|(c, m)| format!("{c} {m}")).collect();
    parts.join("; ")
}
