mod common;
use common::*;
use std::time::Duration;

#[test]
fn harness_runs_usher_as_pid1() {
    if skip_without_namespaces("harness_runs_usher_as_pid1") {
        return;
    }
    let r = start(Mode::Pid1, &["--", "sh", "-c", "echo $$ >&2; exit 3"]);
    let f = r.wait(Duration::from_secs(20));
    assert_eq!(f.code, Some(3), "{f:?}");
    assert!(
        f.stderr.starts_with("2\n"),
        "the app is PID 2 under usher as PID 1: {:?}",
        f.stderr
    );
}
