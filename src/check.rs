//! `usher --check URL`: one HTTP request as a health check, and `--ready`, which also fails once the usher running the container began its shutdown.
//!
//! Not an init: a short-lived process started by `docker exec`, a
//! HEALTHCHECK or the kubelet's exec probe — or by usher itself, for an HTTP
//! hook (`--answer-fd`: the outcome goes to that pipe, nothing is said).

use alloc::format;

use crate::cli::Check;
use crate::{codes, procs};

/// Runs the check; returns the exit code (0 ok, 1 not).
pub fn run(check: &Check) -> u8 {
    if check.ready {
        if let Some(pid) = procs::stopping_usher() {
            say(
                check,
                &format!("not ready: usher (pid {pid}) began its shutdown"),
            );
            return codes::CHECK_FAILED;
        }
    }
    let outcome = crate::http::request(&check.request, check.patience);
    if let Some(fd) = check.answer_fd {
        // The pipe usher gave its hook's child as fd 3. Under PIPE_BUF into
        // an empty pipe: one write, whole; a failure leaves the exit code to tell.
        let _ = crate::sys::write_fd(fd, &outcome.encode());
    } else if !outcome.ok() {
        let why = match &outcome {
            crate::hook::Outcome::Status(code) => format!("answered {code}"),
            crate::hook::Outcome::Failed(why) => why.clone(),
        };
        say(
            check,
            &format!("check failed: {}: {why}", check.request.show()),
        );
    }
    if outcome.ok() {
        0
    } else {
        codes::CHECK_FAILED
    }
}

/// One line on stderr (docker inspect shows it in the health log).
fn say(check: &Check, message: &str) {
    if check.answer_fd.is_none() {
        check.log.error(message, &[]);
    }
}
