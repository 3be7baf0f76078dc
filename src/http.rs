//! HTTP hook actions: `[METHOD ]http://HOST[:PORT][/PATH[?QUERY]]`, parsed here and requested from a forked child.
//!
//! PID 1 never waits on a socket: the request runs in a child of usher
//! (see `spawn::fork_request`), which is reaped and killed like a command
//! hook, and writes its outcome into a pipe that usher reads once it has
//! reaped the child. Only loopback-style hosts are taken (an IP literal or
//! `localhost`): a hook talks to the app in its own container, so there is
//! no name to resolve and no TLS to speak.

use std::fs::File;
use std::io::{Read, Write};
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::time::Duration;

use crate::sys;

/// How long the connection may take.
pub const CONNECT_TIMEOUT: Duration = Duration::from_secs(2);
/// How long to wait between attempts at a refused connection.
const RETRY: Duration = Duration::from_millis(100);
/// How long the whole response may take once connected.
pub const RESPONSE_TIMEOUT: Duration = Duration::from_secs(10);
/// How much of the response is read (and thrown away) at most.
const READ_LIMIT: usize = 64 * 1024;

/// One request to make.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Request {
    pub method: String,
    pub addr: SocketAddr,
    /// `HOST:PORT` as written (with brackets for IPv6).
    pub authority: String,
    /// The path and query, `/` at least.
    pub target: String,
}

impl Request {
    /// `POST http://127.0.0.1:9901/healthcheck/fail`, for the log.
    pub fn show(&self) -> String {
        format!("{} http://{}{}", self.method, self.authority, self.target)
    }

    /// The request's bytes: HTTP/1.1, one request per connection.
    fn bytes(&self) -> String {
        // Methods that define a meaning for a body get an explicit empty one
        // (some servers answer 411 otherwise); the others get none.
        let no_body = ["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"];
        let length = match no_body.contains(&self.method.as_str()) {
            true => "",
            false => "Content-Length: 0\r\n",
        };
        format!(
            "{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: usher/{}\r\nConnection: close\r\n{length}\r\n",
            self.method,
            self.target,
            self.authority,
            env!("CARGO_PKG_VERSION")
        )
    }
}

/// What became of a request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Outcome {
    /// The server answered with this status.
    Status(u16),
    /// No status came back, and why.
    Failed(String),
}

impl Outcome {
    /// 200–399, as the kubelet counts an httpGet hook's success.
    pub fn ok(&self) -> bool {
        matches!(self, Outcome::Status(200..=399))
    }

    /// The outcome as bytes for the pipe back to usher: a status as its
    /// three digits, a failure as its reason (never three digits alone).
    pub fn encode(&self) -> Vec<u8> {
        let mut bytes = match self {
            Outcome::Status(code) => i32::from(*code).to_string(),
            Outcome::Failed(why) => format!("failed: {why}"),
        }
        .into_bytes();
        // Short enough to be written and read in one piece (PIPE_BUF).
        bytes.truncate(400);
        bytes
    }

    pub fn decode(bytes: &[u8]) -> Option<Outcome> {
        let text = String::from_utf8_lossy(bytes);
        match text.strip_prefix("failed: ") {
            Some(why) => Some(Outcome::Failed(why.to_string())),
            None => text.parse().ok().map(Outcome::Status),
        }
    }
}

/// Whether a hook's value is an HTTP action (as opposed to a command line):
/// it starts with a URL, or with a method name followed by one (or nothing).
pub fn is_http(value: &str) -> bool {
    let mut words = value.split_whitespace();
    let first = words.next().unwrap_or_default();
    let second = words.next();
    let url_like = |w: &str| scheme(w).is_some() || w.starts_with('/');
    scheme(first).is_some() || is_method(first) && second.is_none_or(url_like)
}

/// `("http", "127.0.0.1/x")` from `http://127.0.0.1/x`.
fn scheme(word: &str) -> Option<(&str, &str)> {
    let colon = word.find(':')?;
    let rest = word[colon..].strip_prefix("://")?;
    Some((&word[..colon], rest))
}

/// An HTTP method name: upper-case letters (GET, POST, PURGE, ...).
fn is_method(word: &str) -> bool {
    !word.is_empty() && word.bytes().all(|b| b.is_ascii_uppercase())
}

/// Parses `[METHOD ]http://HOST[:PORT][/PATH[?QUERY]]`; the error names
/// the value and says what would be right.
pub fn parse(value: &str) -> Result<Request, String> {
    parse_parts(value).map_err(|why| format!("{value:?}: {why}"))
}

fn parse_parts(value: &str) -> Result<Request, &'static str> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let (method, url) =
        match words[..] {
            [url] if scheme(url).is_some() => ("GET", url),
            [_] => return Err("a method needs a URL: write POST http://127.0.0.1:PORT/PATH"),
            [method, url] => (method, url),
            _ => return Err(
                "write [METHOD ]http://HOST[:PORT][/PATH]: one method and one URL, nothing else",
            ),
        };
    if !is_method(method) {
        return Err("the method must be upper-case letters, like GET or POST");
    }
    let rest = match scheme(url) {
        Some(("http", rest)) => rest,
        Some(("https", _)) => return Err("https is not supported: a hook talks to the app in its own container, over plain http://"),
        _ => return Err("the URL must start with http://"),
    };
    let split = rest.find(['/', '?', '#']).unwrap_or(rest.len());
    let (authority, target) = rest.split_at(split);
    let target = match target {
        "" => "/".to_string(),
        t if t.contains('#') => return Err("a #fragment is never sent to a server; leave it out"),
        t if t.starts_with('?') => format!("/{t}"),
        t => t.to_string(),
    };
    if authority.contains('@') {
        return Err("user names and passwords are not supported");
    }
    let (host, port) = match authority.rfind(':') {
        Some(i) if !authority[i..].contains(']') => (&authority[..i], Some(&authority[i + 1..])),
        _ => (authority, None),
    };
    let ip = match host {
        "" => return Err("there is no host: write http://127.0.0.1:PORT/PATH"),
        "localhost" => IpAddr::V4(Ipv4Addr::LOCALHOST),
        h => match h.strip_prefix('[').and_then(|h| h.strip_suffix(']')) {
            Some(v6) => IpAddr::V6(ipv6(v6).ok_or("the [IPv6] host is not an IPv6 address")?),
            None => IpAddr::V4(ipv4(h).ok_or(
                "the host must be an IPv4 address, [IPv6] or localhost: usher resolves no names",
            )?),
        },
    };
    let port = match port.map(str::parse::<u16>) {
        None => 80,
        Some(Ok(n)) if n > 0 => n,
        Some(_) => return Err("the port must be a number from 1 to 65535"),
    };
    Ok(Request {
        method: method.to_string(),
        addr: SocketAddr::new(ip, port),
        authority: format!("{host}:{}", i32::from(port)),
        target,
    })
}

/// `127.0.0.1`: four decimal numbers up to 255. (Written out rather than
/// std's parser, which costs the binary more than the whole of this file.)
fn ipv4(text: &str) -> Option<Ipv4Addr> {
    let mut octets = [0u8; 4];
    let mut parts = text.split('.');
    for octet in &mut octets {
        let part = parts.next()?;
        if part.is_empty() || part.len() > 3 || !part.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        *octet = part.parse().ok()?;
    }
    parts.next().is_none().then_some(Ipv4Addr::from(octets))
}

/// `::1`, `fe80::1:2`, `::ffff:127.0.0.1`: up to eight hex groups, one `::`
/// standing for the zero groups left out, and an IPv4 tail.
fn ipv6(text: &str) -> Option<Ipv6Addr> {
    let groups = |part: &str| -> Option<Vec<u16>> {
        if part.is_empty() {
            return Some(Vec::new());
        }
        let mut out = Vec::new();
        let words: Vec<&str> = part.split(':').collect();
        for (i, word) in words.iter().enumerate() {
            if i == words.len() - 1 && word.contains('.') {
                let [a, b, c, d] = ipv4(word)?.octets();
                out.extend([u16::from_be_bytes([a, b]), u16::from_be_bytes([c, d])]);
            } else if (1..=4).contains(&word.len()) && word.bytes().all(|b| b.is_ascii_hexdigit()) {
                out.push(u16::from_str_radix(word, 16).ok()?);
            } else {
                return None;
            }
        }
        Some(out)
    };
    let double = |t: &str| t.as_bytes().windows(2).position(|w| w == b"::");
    let (head, tail) = match double(text) {
        Some(i) if double(&text[i + 2..]).is_none() => {
            (groups(&text[..i])?, Some(groups(&text[i + 2..])?))
        }
        Some(_) => return None,
        None => (groups(text)?, None),
    };
    let mut all = [0u16; 8];
    match tail {
        None if head.len() == 8 => all.copy_from_slice(&head),
        Some(tail) if head.len() + tail.len() < 8 => {
            all[..head.len()].copy_from_slice(&head);
            all[8 - tail.len()..].copy_from_slice(&tail);
        }
        _ => return None,
    }
    Some(Ipv6Addr::from(all))
}

/// Makes the request and reads the status line; every wait is bounded.
/// Blocking: only ever called in a forked child.
pub fn request(req: &Request) -> Outcome {
    match exchange(req) {
        Ok(outcome) => outcome,
        Err(why) => Outcome::Failed(why),
    }
}

fn exchange(req: &Request) -> Result<Outcome, String> {
    let mut socket = File::from(connect(req.addr)?);
    let end = sys::now().saturating_add(RESPONSE_TIMEOUT);
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
        match read_before(&mut socket, &mut buf, end)? {
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
        match read_before(&mut socket, &mut buf, end) {
            Ok(n) if n > 0 => total += n,
            _ => break,
        }
    }
    Ok(status)
}

/// Connects within [`CONNECT_TIMEOUT`]. A refused connection is tried
/// again every 100 ms until then: the app in the same container may still
/// be starting (a post-start hook runs alongside it).
fn connect(addr: SocketAddr) -> Result<std::os::fd::OwnedFd, String> {
    let end = sys::now().saturating_add(CONNECT_TIMEOUT);
    loop {
        let fd = sys::tcp_connect(addr).map_err(|e| format!("cannot connect: {e}"))?;
        let left = end.saturating_sub(sys::now());
        let result = match sys::wait_ready(&fd, libc::POLLOUT, left) {
            Ok(true) => sys::socket_error(&fd),
            Ok(false) => {
                let secs = CONNECT_TIMEOUT.as_secs();
                return Err(format!("no connection within {secs}s"));
            }
            Err(e) => Err(e),
        };
        match result {
            Ok(()) => return Ok(fd),
            Err(e) if e.raw_os_error() == Some(libc::ECONNREFUSED) && left > RETRY => {
                std::thread::sleep(RETRY)
            }
            Err(e) => return Err(format!("cannot connect: {e}")),
        }
    }
}

/// One read from the non-blocking socket, waiting no later than `end`.
fn read_before(socket: &mut File, buf: &mut [u8], end: Duration) -> Result<usize, String> {
    loop {
        let left = end.saturating_sub(sys::now());
        match sys::wait_ready(socket, libc::POLLIN, left) {
            Ok(false) => return Err(format!("no answer within {}s", RESPONSE_TIMEOUT.as_secs())),
            Err(e) if e.kind() != std::io::ErrorKind::Interrupted => {
                return Err(format!("waiting for the answer failed: {e}"))
            }
            _ => {}
        }
        match socket.read(buf) {
            Ok(n) => return Ok(n),
            Err(e)
                if matches!(
                    e.kind(),
                    std::io::ErrorKind::WouldBlock | std::io::ErrorKind::Interrupted
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
    fn urls_and_methods() {
        let r = parse("http://127.0.0.1:8080/ready?x=1").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (r.authority.as_str(), r.target.as_str()),
            ("127.0.0.1:8080", "/ready?x=1")
        );
        let r = parse("POST http://localhost/actuator/shutdown").unwrap();
        assert_eq!((r.method.as_str(), r.addr.port()), ("POST", 80));
        assert_eq!(r.authority, "localhost:80");
        let r = parse("PURGE http://[::1]:9901").unwrap();
        assert_eq!(
            (r.authority.as_str(), r.target.as_str()),
            ("[::1]:9901", "/")
        );
        assert_eq!(parse("http://127.0.0.1?q").unwrap().target, "/?q");
        assert_eq!(
            r.bytes(),
            format!(
                "PURGE / HTTP/1.1\r\nHost: [::1]:9901\r\nUser-Agent: usher/{}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n",
                env!("CARGO_PKG_VERSION")
            )
        );
        assert!(!parse("GET http://127.0.0.1/")
            .unwrap()
            .bytes()
            .contains("Content-Length"));
    }

    #[test]
    fn which_values_are_http() {
        for v in [
            "http://x",
            "POST http://127.0.0.1/",
            "https://x",
            "GET",
            "POST /path",
            "GET ftp://x",
        ] {
            assert!(is_http(v), "{v}");
        }
        for v in [
            "/app/deregister",
            "sleep 5",
            "sh -c 'curl http://x'",
            "./GET http://x",
            "Get http://x",
        ] {
            assert!(!is_http(v), "{v}");
        }
    }

    #[test]
    fn bad_urls_say_what_would_be_right() {
        let cases = [
            ("https://127.0.0.1/", "https is not supported"),
            ("http:///path", "no host"),
            ("http://:8080/", "no host"),
            ("http://127.0.0.1:0/", "from 1 to 65535"),
            ("http://127.0.0.1:99999/", "from 1 to 65535"),
            ("http://127.0.0.1:x/", "from 1 to 65535"),
            ("http://127.0.0.1:/", "from 1 to 65535"),
            ("http://example.com/", "resolves no names"),
            ("http://[::1/", "resolves no names"),
            ("http://[nope]/", "not an IPv6 address"),
            ("http://u:p@127.0.0.1/", "user names"),
            ("POST", "needs a URL"),
            ("POST /path", "must start with http://"),
            ("GET ftp://127.0.0.1/", "must start with http://"),
            ("GET http://127.0.0.1/ extra", "nothing else"),
            ("get http://127.0.0.1/", "upper-case"),
            ("http://127.0.0.1/#top", "fragment"),
            ("http://127.0.0.1#top", "fragment"),
        ];
        for (value, want) in cases {
            let err = parse(value).expect_err(value);
            assert!(err.contains(want), "{value}: {err}");
        }
    }

    #[test]
    fn ip_literals_parse_like_std() {
        for v4 in ["127.0.0.1", "0.0.0.0", "255.255.255.255", "10.1.2.3"] {
            assert_eq!(ipv4(v4), v4.parse().ok(), "{v4}");
        }
        for bad in [
            "1.2.3",
            "1.2.3.4.5",
            "256.0.0.1",
            "1..2.3",
            "a.b.c.d",
            "+1.2.3.4",
            "01234.1.1.1",
            "",
        ] {
            assert_eq!(ipv4(bad), None, "{bad}");
        }
        for v6 in [
            "::1",
            "::",
            "fe80::1:2",
            "2001:db8::ff00:42:8329",
            "1:2:3:4:5:6:7:8",
            "::ffff:127.0.0.1",
            "1::",
            "1:2:3:4:5:6::8",
        ] {
            assert_eq!(ipv6(v6), v6.parse().ok(), "{v6}");
        }
        for bad in [
            "1::2::3",
            ":::",
            "12345::",
            "1:2:3:4:5:6:7:8:9",
            "1:2:3:4:5:6:7",
            "g::1",
            "::1.2.3",
            "1:2:3:4:5:6:7:8::",
        ] {
            assert_eq!(ipv6(bad), None, "{bad}");
        }
    }

    #[test]
    fn outcomes_cross_the_pipe() {
        for o in [
            Outcome::Status(503),
            Outcome::Failed("cannot connect: refused".into()),
        ] {
            assert_eq!(Outcome::decode(&o.encode()), Some(o));
        }
        assert!(Outcome::Status(302).ok() && !Outcome::Status(404).ok());
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
