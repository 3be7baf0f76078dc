//! What a lifecycle hook is: its kind, its action (a command line or an HTTP request) parsed from the value given, and how it ended.
//!
//! Pure data and parsing, below both the state machine (which decides when
//! hooks run and what their results mean) and the I/O modules (spawn.rs
//! starts them, http.rs makes the requests).

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec::Vec;

use core::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use crate::process::Status;
use crate::words;

/// The hooks usher can run, by when they run.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum HookKind {
    /// Alongside the app, from its start; its failure stops the container.
    PostStart,
    /// When the shutdown sequence begins; the stop signal waits for it.
    PreStop,
    /// Once the app and everything it left are gone, before usher exits.
    PostStop,
}

impl HookKind {
    pub const ALL: [HookKind; 3] = [HookKind::PostStart, HookKind::PreStop, HookKind::PostStop];

    /// Its name in the log, on the command line and in the termination message.
    pub fn name(self) -> &'static str {
        match self {
            HookKind::PostStart => "post-start",
            HookKind::PreStop => "pre-stop",
            HookKind::PostStop => "post-stop",
        }
    }
}

/// What a hook does: run a command, or make an HTTP request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HookAction {
    /// The words of a command line, split like a shell would (no shell).
    Command(Vec<String>),
    Http(Request),
}

impl HookAction {
    /// An HTTP action when the value's first word is a URL, or its second
    /// after an upper-case method name (`POST http://…`); any other value is
    /// a command line, whatever its case (`ECHO`, `RUN /x`).
    pub fn parse(value: &str) -> Result<HookAction, String> {
        if is_http(value) {
            Request::parse(value).map(HookAction::Http)
        } else {
            words::split(value).map(HookAction::Command)
        }
    }
}

/// How a hook ended.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HookEnd {
    /// A command hook, as it exited.
    Exited(Status),
    /// An HTTP hook, as its request went.
    Answered(Outcome),
}

impl HookEnd {
    /// Exit 0, or an HTTP status 200–399.
    pub fn ok(&self) -> bool {
        match self {
            HookEnd::Exited(status) => *status == Status::Exited(0),
            HookEnd::Answered(outcome) => outcome.ok(),
        }
    }
}

/// What became of an HTTP request.
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

/// One HTTP request to make: `[METHOD ]http://HOST[:PORT][/PATH[?QUERY]]`.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Request {
    pub method: String,
    pub addr: SocketAddr,
    /// `HOST:PORT` as written (with brackets for IPv6).
    pub authority: String,
    /// The path and query, `/` at least.
    pub target: String,
    /// `Name: value` lines from `--http-header`, sent as given.
    pub headers: Vec<String>,
}

impl Request {
    /// Parses `[METHOD ]http://HOST[:PORT][/PATH[?QUERY]]`; the error names
    /// the value and says what would be right.
    pub fn parse(value: &str) -> Result<Request, String> {
        parse_parts(value).map_err(|why| format!("{value:?}: {why}"))
    }

    /// `POST http://127.0.0.1:9901/healthcheck/fail`, for the log and for
    /// the command line of the child that makes it.
    pub fn show(&self) -> String {
        format!("{} http://{}{}", self.method, self.authority, self.target)
    }

    /// The request's bytes: HTTP/1.1, one request per connection.
    pub fn bytes(&self) -> String {
        // Methods that define a meaning for a body get an explicit empty one
        // (some servers answer 411 otherwise); the others get none.
        let no_body = ["GET", "HEAD", "DELETE", "OPTIONS", "TRACE", "CONNECT"];
        let length = match no_body.contains(&self.method.as_str()) {
            true => "",
            false => "Content-Length: 0\r\n",
        };
        let mut head = format!("{} {} HTTP/1.1\r\n", self.method, self.target);
        if !self.has_header("host") {
            head.push_str(&format!("Host: {}\r\n", self.authority));
        }
        if !self.has_header("user-agent") {
            head.push_str(concat!(
                "User-Agent: usher/",
                env!("CARGO_PKG_VERSION"),
                "\r\n"
            ));
        }
        for h in &self.headers {
            head.push_str(h);
            head.push_str("\r\n");
        }
        format!("{head}Connection: close\r\n{length}\r\n")
    }

    fn has_header(&self, name: &str) -> bool {
        let named = |h: &String| {
            h.split(':')
                .next()
                .is_some_and(|n| n.trim().eq_ignore_ascii_case(name))
        };
        self.headers.iter().any(named)
    }
}

/// `Name: value` for `--http-header`: a token name, then a value without CR,
/// LF or NUL (nothing can be smuggled into the request).
pub fn parse_header(text: &str) -> Result<String, String> {
    let Some((name, value)) = text.split_once(':') else {
        return Err(format!(
            "{text:?} is not Name: value (e.g. \"Authorization: Bearer abc\")"
        ));
    };
    let token = |b: u8| b.is_ascii_alphanumeric() || b"!#$%&'*+-.^_`|~".contains(&b);
    if name.is_empty() || !name.bytes().all(token) {
        return Err(format!(
            "{text:?}: the header name must be a token: letters, digits and !#$%&'*+-.^_`|~ (e.g. X-Token)"
        ));
    }
    if value.contains(['\r', '\n', '\0']) {
        return Err(format!("{text:?}: a header value cannot hold a line break"));
    }
    let name = match name.to_ascii_lowercase().as_str() {
        "connection" | "content-length" | "transfer-encoding" => {
            return Err(format!("{text:?}: usher sets {name} itself"))
        }
        _ => name,
    };
    Ok(format!("{name}: {}", value.trim()))
}

/// Whether a hook's value is an HTTP action (see [`HookAction::parse`]).
pub fn is_http(value: &str) -> bool {
    let mut words = value.split_whitespace();
    let first = words.next().unwrap_or_default();
    let url = |w: Option<&str>| w.is_some_and(|w| w.contains("://"));
    url(Some(first)) || is_method(first) && url(words.next())
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

fn parse_parts(value: &str) -> Result<Request, &'static str> {
    let words: Vec<&str> = value.split_whitespace().collect();
    let (method, url) =
        match words[..] {
            [url] => ("GET", url),
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
        Some(("https", _)) => return Err("https is not supported: usher talks to the app in its own container, over plain http://"),
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
        headers: Vec::new(),
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::vec;

    #[test]
    fn urls_methods_and_headers() {
        let r = Request::parse("http://127.0.0.1:8080/ready?x=1").unwrap();
        assert_eq!(r.method, "GET");
        assert_eq!(r.addr, "127.0.0.1:8080".parse().unwrap());
        assert_eq!(
            (r.authority.as_str(), r.target.as_str()),
            ("127.0.0.1:8080", "/ready?x=1")
        );
        let r = Request::parse("POST http://localhost/actuator/shutdown").unwrap();
        assert_eq!(
            (r.method.as_str(), r.addr.port(), r.authority.as_str()),
            ("POST", 80, "localhost:80")
        );
        let mut r = Request::parse("PURGE http://[::1]:9901").unwrap();
        assert_eq!(
            (r.authority.as_str(), r.target.as_str()),
            ("[::1]:9901", "/")
        );
        assert_eq!(Request::parse("http://127.0.0.1?q").unwrap().target, "/?q");
        let agent = concat!("User-Agent: usher/", env!("CARGO_PKG_VERSION"));
        assert_eq!(
            r.bytes(),
            format!("PURGE / HTTP/1.1\r\nHost: [::1]:9901\r\n{agent}\r\nConnection: close\r\nContent-Length: 0\r\n\r\n")
        );
        r.headers = vec![
            parse_header("host: app.local").unwrap(),
            parse_header("X-Token:  a, b;c ").unwrap(),
        ];
        assert_eq!(
            r.bytes(),
            format!("PURGE / HTTP/1.1\r\n{agent}\r\nhost: app.local\r\nX-Token: a, b;c\r\nConnection: close\r\nContent-Length: 0\r\n\r\n"),
            "a Host header given replaces usher's own"
        );
        let get = Request::parse("GET http://127.0.0.1/").unwrap();
        assert!(!get.bytes().contains("Content-Length"));
    }

    #[test]
    fn bad_headers_are_refused() {
        for (text, says) in [
            ("NoColon", "not Name: value"),
            (": v", "header name"),
            ("Bad Name: v", "header name"),
            ("X: a\r\nInjected: 1", "line break"),
            ("X: a\nb", "line break"),
            ("Content-Length: 5", "usher sets"),
            ("Connection: keep-alive", "usher sets"),
        ] {
            let err = parse_header(text).expect_err(text);
            assert!(err.contains(says), "{text:?}: {err}");
        }
    }

    #[test]
    fn which_values_are_http() {
        for v in [
            "http://x",
            "POST http://127.0.0.1/",
            "https://x",
            "GET ftp://x",
            "ftp://x",
        ] {
            assert!(is_http(v), "{v}");
        }
        for v in [
            "/app/deregister",
            "sleep 5",
            "sh -c 'curl http://x'",
            "./GET http://x",
            "Get http://x",
            "ECHO",
            "RUN /x",
            "GET",
            "POST /path",
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
            ("GET ftp://127.0.0.1/", "must start with http://"),
            ("GET http://127.0.0.1/ extra", "nothing else"),
            ("http://127.0.0.1/#top", "fragment"),
            ("http://127.0.0.1#top", "fragment"),
        ];
        for (value, want) in cases {
            let err = HookAction::parse(value).expect_err(value);
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
    }
}
