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

/// The table as one paragraph of prose, for `--help` (the man page lists it as a table).
pub fn prose() -> String {
    let parts: Vec<String> = TABLE.iter().map(|(c, m)| format!("{c} {m}")).collect();
    parts.join("; ")
}

#[cfg(test)]
mod tests {
    use super::TABLE;
    use std::format;
    use std::string::String;
    use std::vec::Vec;

    const README: &str = include_str!("../README.md");

    /// The README's exit status table: its rows, in order.
    fn readme_rows() -> Vec<&'static str> {
        let head = "| exit status | meaning |\n|---|---|\n";
        let at = README
            .find(head)
            .expect("README.md has a table headed `| exit status | meaning |`");
        README[at + head.len()..]
            .lines()
            .take_while(|l| l.starts_with('|'))
            .collect()
    }

    /// README.md, `--help` and the man page list exactly the codes of
    /// TABLE, each with its meaning: none of the three can drift from it.
    #[test]
    fn readme_help_and_man_page_name_every_exit_code() {
        let rows = readme_rows();
        let want: Vec<String> = TABLE
            .iter()
            .map(|(c, m)| format!("| {c} | {m} |"))
            .collect();
        assert_eq!(
            rows, want,
            "README.md's exit status table is not codes::TABLE"
        );

        let help = crate::cli::help();
        let help = help.split_whitespace().collect::<Vec<_>>().join(" ");
        let man = crate::manpage::render();
        let status = man
            .split(".SH EXIT STATUS\n")
            .nth(1)
            .and_then(|rest| rest.split(".SH ").next())
            .expect("the man page has an EXIT STATUS section");
        let mut man_want = String::new();
        for (code, meaning) in TABLE {
            assert!(
                help.contains(&format!("{code} {meaning}")),
                "--help does not name exit status {code}: {meaning}"
            );
            let esc = crate::manpage::escape;
            man_want.push_str(&format!(".TP\n.B {}\n{}\n", esc(code), esc(meaning)));
        }
        assert_eq!(
            status, man_want,
            "the man page's EXIT STATUS is not codes::TABLE"
        );
    }
}
