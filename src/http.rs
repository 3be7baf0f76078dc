//! HTTP requests for hooks and `usher --check`: one request to the app in its own container, every wait bounded.
//!
//! Only ever run by `usher --check` — as a health check, or as the child
//! usher starts for an HTTP hook — never in PID 1's loop: PID 1 never
//! waits on a socket. The request itself ([`crate::hook::Request`]) is
//! parsed with the hooks' values.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use core::net::SocketAddr;
use core::time::Duration;

use crate::hook::{Outcome, Request};
use crate::sys::{self, io, OwnedFd};

/// How long a request may take, and whether a refused connection is tried again.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Patience {
    /// For the connection to be made.
    pub connect: Duration,
    /// For the whole answer, once connected.
    pub answer: Duration,
    /// For everything together, when bounded as a whole (`--check-timeout`).
    pub whole: Option<Duration>,
    /// Try a refused connection again every 100 ms until `connect` runs
    /// out: a hook's app in the same container may still be starting.
    pub retry_refused: bool,
}

/// A hook's request: 2 s to connect (refusals retried), 10 s for the answer.
pub const HOOK: Patience = Patience {
    connect: Duration::from_secs(2),
    answer: Duration::from_secs(10),
    whole: None,
    retry_refused: true,
};

/// How long to wait between attempts at a refused connection.
const RETRY: Duration = Duration::from_millis(100);
/// How much of the response is read (and thrown away) at most.
const READ_LIMIT: usize = 64 * 1024;

/// Makes the request and reads the status line; every wait is bounded.
/// Blocking: only ever called in a forked child.
pub fn request(req: &Request, patience: Patience) -> Outcome {
    match exchange(req, patience) {
        Ok(outcome) => outcome,
        Err(why) => Outcome::Failed(why),
    }
}

fn exchange(req: &Request, patience: Patience) -> Result<Outcome, String> {
    let started = sys::now();
    let socket = connect(req.addr, patience)?;
    let mut end = sys::now().saturating_add(patience.answer);
    if let Some(whole) = patience.whole {
        end = end.min(started.saturating_add(whole));
    }
    // A few hundred bytes into a fresh connection's empty buffer.
    let request = req.bytes();
    if !matches!(socket.write(request.as_bytes()), Ok(n) if n == request.len()) {
        return Err("cannot send the request".into());
    }
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    let mut total = 0;
    let status = loop {
        if let Some(status) = status_of(&head) {
            break status;
        }
        if head.len() > 8192 {
            return Err("the response does not start with an HTTP status line".into());
        }
        match read_before(&socket, &mut buf, end, patience.answer)? {
            0 => return Err("the connection closed before a status line".into()),
            n => {
                total += n;
                head.extend_from_slice(&buf[..n]);
            }
        }
    };
    // The rest is read, within the same bounds, and thrown away, so that the
    // server is not cut off while it writes.
    while total < READ_LIMIT {
        match read_before(&socket, &mut buf, end, patience.answer) {
            Ok(n) if n > 0 => total += n,
            _ => break,
        }
    }
    Ok(status)
}

/// Connects within `patience.connect`; a refused connection is tried again
/// every 100 ms until then, when the patience says so.
fn connect(addr: SocketAddr, patience: Patience) -> Result<OwnedFd, String> {
    let end = sys::now().saturating_add(patience.connect);
    loop {
        let fd = sys::tcp_connect(addr).map_err(|e| format!("cannot connect: {e}"))?;
        let left = end.saturating_sub(sys::now());
        let result = match sys::wait_ready(&fd, libc::POLLOUT, left) {
            Ok(true) => sys::socket_error(&fd),
            Ok(false) => {
                let within = crate::log::secs(patience.connect);
                return Err(format!("no connection within {within}"));
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(fd),
            Err(e)
                if e.raw_os_error() == Some(libc::ECONNREFUSED)
                    && patience.retry_refused
                    && left > RETRY =>
            {
                sys::sleep(RETRY)
            }
            Err(e) => return Err(format!("cannot connect: {e}")),
        }
    }
}

/// One read from the non-blocking socket, waiting no later than `end`.
fn read_before(
    socket: &OwnedFd,
    buf: &mut [u8],
    end: Duration,
    bound: Duration,
) -> Result<usize, String> {
    loop {
        let left = end.saturating_sub(sys::now());
        match sys::wait_ready(socket, libc::POLLIN, left) {
            Ok(false) => return Err(format!("no answer within {}", crate::log::secs(bound))),
            Err(e) if e.kind() != io::ErrorKind::Interrupted => {
                return Err(format!("waiting for the answer failed: {e}"))
            }
            _ => {}
        }
        match socket.read(buf) {
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted
                ) => {}
            Err(e) => return Err(format!("reading the answer failed: {e}")),
        }
    }
}

/// The status of a response whose first line is complete; a line that is
/// not `HTTP/1.x NNN ...` gives a failure.
fn status_of(head: &[u8]) -> Option<Outcome> {
    let end = head.iter().position(|&b| b == b'\n')?;
    let line = String::from_utf8_lossy(&head[..end]);
    let mut parts = line.split_whitespace();
    let version = parts.next().unwrap_or_default();
    let code = parts.next().and_then(|c| c.parse::<u16>().ok());
    Some(match code {
        Some(c) if version.starts_with("HTTP/") && (100..=999).contains(&c) => Outcome::Status(c),
        _ => Outcome::Failed(format!("not an HTTP status line: {:?}", line.trim_end())),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn status_lines() {
        assert_eq!(
            status_of(b"HTTP/1.1 204 No Content\r\n"),
            Some(Outcome::Status(204))
        );
        assert!(matches!(
            status_of(b"SSH-2.0-x\r\n"),
            Some(Outcome::Failed(_))
        ));
        assert_eq!(
            status_of(b"HTTP/1.1 200"),
            None,
            "the line is not complete yet"
        );
    }
}
