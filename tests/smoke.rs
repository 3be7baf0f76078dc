//! The harness itself: it runs usher as a real PID 1, and keeps the developer's `USHER_*` variables away from every usher it starts.

mod common;
use common::*;

#[test]
fn harness_runs_usher_as_pid1() {
    needs_namespaces!();
    let f = run(Mode::Pid1, &["--", "sh", "-c", "echo $$ >&2; exit 3"]);
    assert_eq!(f.code, Some(3), "{f:?}");
    assert_eq!(f.stderr, "2\n", "the app is PID 2 under usher as PID 1");
}

/// This binary's environment gets variables that would each change
/// usher's behaviour; the usher the harness starts sees none of them,
/// and a variable the test sets itself still gets through.
#[test]
fn a_developers_usher_variables_do_not_reach_usher() {
    for (k, v) in [
        ("USHER_REMAP_EXIT", "3"),
        ("USHER_LOG_FORMAT", "json"),
        ("USHER_SUBREAPER", "garbage"),
        ("USHER_NOT_A_VARIABLE", "1"),
    ] {
        // Sound: std orders this with every spawn (its env lock), and no C
        // code here reads the environment while tests run.
        std::env::set_var(k, v);
    }
    let f = run(Mode::Plain, &["-s", "--", "sh", "-c", "exit 3"]);
    assert_eq!((f.code, f.stderr.as_str()), (Some(3), ""), "{f:?}");
    let f = run_with(
        Mode::Plain,
        &["-s", "--", "sh", "-c", "exit 3"],
        &[("USHER_REMAP_EXIT", "3")],
    );
    assert_eq!((f.code, f.stderr.as_str()), (Some(0), ""), "{f:?}");
}
