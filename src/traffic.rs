//! What the adaptive drain watches: arrivals of inbound TCP traffic at the app's listening sockets, seen through sock_diag.
//!
//! [`Sampler::start`] finds the app's listeners once: the TCP sockets in
//! LISTEN state whose inodes the app's processes hold open (`/proc/PID/fd`;
//! threads share their process's fd table). Each [`Sampler::sample`] then
//! dumps, over NETLINK_SOCK_DIAG, the network namespace's TCP sockets in
//! every state but LISTEN whose local end is a listener's (same port; same
//! address unless the listener's is the wildcard, and the same family: an
//! IPv6 wildcard listener's IPv4 clients are IPv4-mapped IPv6 sockets), and
//! counts arrival events:
//! - a connection (family and 4-tuple) that the previous sample did not
//!   show; the connections of the first sample, taken by `start`, are the
//!   baseline and not arrivals;
//! - the data segments a connection the previous sample showed received
//!   since then (`tcpi_data_segs_in`), at most [`PER_LOOK`] per connection
//!   per sample:
//!   a request that fits in one segment is one arrival, so a balancer's
//!   pooled keep-alive connection counts its requests while it carries
//!   them and nothing while it idles, and a bulk upload counts no more than
//!   a busy connection;
//! - a connection of the app the kernel says it destroyed (sock_diag's
//!   multicast group of destroyed TCP sockets, Linux 4.10, no privilege)
//!   that the previous sample did not show alive: one opened and closed
//!   between two samples, whoever closed it (the server's close leaves a
//!   TIME_WAIT a snapshot would catch; the client's leaves nothing else).
//!
//! Only the app's own sockets count, never the network namespace's totals
//! (`PassiveOpens` counts every listener's connections): in a Kubernetes
//! pod a sidecar's or a prober's connections to the sidecar's ports do not
//! count (a sidecar that forwards to the app does: those connections are
//! the app's), and in a test on a shared network namespace other tests'
//! traffic does not either.
//!
//! What it cannot see, or sees wrongly (for `--drain`'s documentation):
//! - listeners opened after `start`, or in another network namespace than
//!   usher's (sock_diag lists usher's), and non-TCP traffic (UDP, QUIC,
//!   unix sockets);
//! - a new connection that reuses, between two samples, the 4-tuple of one
//!   the previous sample saw in TIME_WAIT: taken for the same connection
//!   until it receives data or ends;
//! - traffic on a connection that brings no payload (keep-alive probes,
//!   ACKs, the peer's FIN); on a connection seen before, a request split
//!   over several segments (or a TLS handshake's records) counts as
//!   several, up to [`PER_LOOK`];
//! - a connection can count twice: new in one sample (in SYN_RECV, or
//!   established before its first data), then with its data in the next;
//! - data a connection received between the last sample and its end
//!   (it is then in TIME_WAIT, or gone: no tcp_info) does not count;
//! - an outgoing connection from a listener's own port counts like an
//!   incoming one;
//! - kernels before 4.6 report no `tcpi_data_segs_in`: only new
//!   connections count there; before 4.10 there are no destroy events: a
//!   connection the client opens and closes between two samples is missed;
//! - destroy events the kernel dropped (the socket's buffer full between
//!   two samples: very busy) count as one arrival;
//! - beyond [`MAX_TRACKED`] connections in one sample, the rest are
//!   ignored.
//!
//! Cost: one netlink dump per family that has a listener, filtered by the
//! kernel to the listeners' port range and read into one 32 KiB buffer on
//! the stack; two vectors of the connections (sorted, compared by binary
//! search; at most 2 x [`MAX_TRACKED`] x 48 bytes, 6 MiB); the destroy
//! events queued since the last sample. No allocation per socket once
//! the vectors have grown, and nothing ever waits (MSG_DONTWAIT: a dump that
//! is not all there is a failed sample). But a dump walks the kernel's whole
//! table of established sockets, which every network namespace shares and
//! whose size follows the host's memory, not the app: measured with
//! `examples/traffic_cost.rs` on a busy 2-core VM with a 262,144-bucket
//! table, 1.6 to 2.6 ms of CPU per sample with one connection, 3.6 to 5.8 ms
//! with 1,000 idle ones (4 to 6% of a core at one sample per 100 ms), the
//! kernel's walk and its tcp_info for each socket most of it.

use alloc::format;
use alloc::string::String;
use alloc::vec::Vec;

use crate::sys::{io, OwnedFd};

use crate::process::{Pid, Traffic};
use crate::{heapsort, sys};

/// How many connections one sample keeps track of. Beyond that the rest of
/// the dump is left unread: those connections are neither counted nor
/// remembered (a later sample may take some of them for new ones). Memory
/// stays bounded: two vectors of this many 48-byte entries at most.
pub const MAX_TRACKED: usize = 65_536;

const AF_INET: u8 = libc::AF_INET as u8;
const AF_INET6: u8 = libc::AF_INET6 as u8;
const SYN_RECV: u8 = 3;
const LISTEN: u8 = 10;
/// Every TCP state but LISTEN: ESTABLISHED (1) to CLOSING (11), and 12, the
/// request sockets (NEW_SYN_RECV, which the kernel reports as SYN_RECV).
const CONNECTED: u32 = 0x1ffe & !(1 << LISTEN);
const SOCK_DIAG_BY_FAMILY: u16 = 20;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
/// NLM_F_REQUEST | NLM_F_DUMP.
const DUMP: u16 = 0x301;
/// The inet_diag attribute that carries a socket's `struct tcp_info`.
const INET_DIAG_INFO: u16 = 2;
/// Sizes of `struct nlmsghdr` and `struct inet_diag_msg`.
const HDR: usize = 16;
const MSG: usize = 72;
const DATA_SEGS_IN: usize = core::mem::offset_of!(libc::tcp_info, tcpi_data_segs_in);
/// The data segments received by a socket that reports no tcp_info (TIME_WAIT).
const UNKNOWN: u64 = u64::MAX;
/// The most arrivals one connection counts in one sample: 80 a second is
/// busy by any measure, and a bulk transfer's thousands of segments must
/// not make the rate look higher than a busy connection's.
pub const PER_LOOK: u64 = 8;
/// The multicast groups of destroyed TCP sockets: IPv4 (1) and IPv6 (3).
const DESTROYED: u32 = 1 << 0 | 1 << 2;
/// Datagrams of destroy events read in one look at most (the rest wait for
/// the next look; one that overflowed the socket's buffer counts once).
const MAX_EVENTS: usize = 256;
/// Room for the largest datagram of a dump (the kernel keeps them under 32 KiB).
const BUF: usize = 32 * 1024;
/// Datagrams one dump may take before it counts as failed: far more than
/// [`MAX_TRACKED`] sockets need, and a bound should anything keep sending.
const MAX_DATAGRAMS: usize = 4096;

/// A listening socket: its family, its local address as sock_diag gives it
/// (16 bytes, an IPv4 one in the first 4; all zero for the wildcard) and port.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Listener {
    family: u8,
    addr: [u8; 16],
    port: u16,
}

/// One socket of a dump; `id` is sock_diag's socket id (local port, remote
/// port, local address, remote address, in network byte order).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
struct Socket {
    family: u8,
    state: u8,
    id: [u8; 36],
    inode: u32,
    segs: u64,
}

impl Listener {
    /// Whether `s`, a socket not in LISTEN state, is a connection to this listener.
    fn takes(&self, s: &Socket) -> bool {
        s.family == self.family
            && s.id[..2] == self.port.to_be_bytes()
            && (self.addr == [0; 16] || s.id[4..20] == self.addr)
    }
}

/// A connection seen in a sample: family then socket id, and data segments received.
type Conn = ([u8; 37], u64);

/// Watches the app's listeners; see the module doc for what counts.
pub struct Sampler {
    /// The inodes of the sockets the app holds open (for `start`).
    inodes: Vec<u32>,
    listeners: Vec<Listener>,
    /// The last sample's connections, sorted; and the next one's, being built.
    seen: Vec<Conn>,
    now: Vec<Conn>,
    /// The connections of the sample before the last: a destroy event comes
    /// from a kernel work queue, a moment after the connection's end, so one
    /// told now may have been seen alive two samples ago.
    older: Vec<Conn>,
    /// The kernel's broadcasts of destroyed TCP sockets, when it gives them
    /// (Linux 4.10): every connection of the app is told at its end, so
    /// one the client opened and closed between two looks is not missed.
    ends: Option<OwnedFd>,
    /// The connections of the app destroyed since the last look.
    gone: Vec<Conn>,
    arrivals: u64,
}

impl Sampler {
    /// Finds the listening TCP sockets owned by `owners` (pids); the first
    /// sample is the baseline (arrivals 0). Err(reason) when a source cannot
    /// be read (no /proc, no sock_diag): the caller falls back to a fixed
    /// drain with one warning giving that reason.
    pub fn start(owners: &[Pid]) -> Result<Sampler, String> {
        Sampler::watch(socket_inodes(owners)?)
    }

    /// Watches the listeners among the sockets `inodes`.
    fn watch(inodes: Vec<u32>) -> Result<Sampler, String> {
        let mut s = Sampler {
            inodes,
            listeners: Vec::new(),
            seen: Vec::new(),
            now: Vec::new(),
            older: Vec::new(),
            ends: sys::sock_diag_events(DESTROYED).ok(),
            gone: Vec::new(),
            arrivals: 0,
        };
        for family in [AF_INET, AF_INET6] {
            match s.dump(family, 1 << LISTEN) {
                // A kernel without IPv6 has no IPv6 sockets either.
                Err(e) if family == AF_INET6 && e.raw_os_error() == Some(libc::ENOENT) => {}
                r => r.map_err(dump_failed)?,
            }
        }
        s.sample()?;
        s.arrivals = 0;
        Ok(s)
    }

    /// One more look; cheap enough to run every 100 ms with 1,000 connections.
    pub fn sample(&mut self) -> Result<Traffic, String> {
        let overflowed = self.read_ends();
        self.now.clear();
        for family in [AF_INET, AF_INET6] {
            if self.listeners.iter().any(|l| l.family == family) {
                self.dump(family, CONNECTED).map_err(dump_failed)?;
            }
        }
        heapsort::sort(&mut self.now);
        heapsort::sort(&mut self.gone);
        self.gone.dedup_by(|a, b| a.0 == b.0);
        let seen_before = |key: &[u8; 37], seen: &[Conn]| seen.binary_search_by(|c| c.0.cmp(key));
        let mut new = u64::from(overflowed);
        for &(ref key, segs) in &self.now {
            new += match seen_before(key, &self.seen) {
                Ok(i) => received(self.seen[i].1, segs),
                // One that ended and left a TIME_WAIT is counted at its end.
                Err(_) if seen_before(key, &self.gone).is_ok() => 0,
                // New: one arrival, whatever its first look shows (a TLS
                // handshake and its request are one probe).
                Err(_) => 1,
            };
        }
        // Ended without being seen alive: opened and closed between two looks.
        let unseen = |k: &&[u8; 37]| {
            seen_before(k, &self.seen).is_err() && seen_before(k, &self.older).is_err()
        };
        new += self.gone.iter().map(|c| &c.0).filter(unseen).count() as u64;
        self.gone.clear();
        self.arrivals += new;
        core::mem::swap(&mut self.older, &mut self.now);
        core::mem::swap(&mut self.seen, &mut self.older);
        Ok(Traffic {
            listeners: self.listeners.len() as u32,
            arrivals: self.arrivals,
            connections: self.seen.len() as u32,
        })
    }

    /// Dumps the namespace's TCP sockets of `family` in `states` (LISTEN
    /// alone, or CONNECTED) and takes in each. The kernel keeps the local
    /// ports that matter: any for LISTEN, the listeners' range otherwise.
    fn dump(&mut self, family: u8, states: u32) -> io::Result<()> {
        let listen = states == 1 << LISTEN;
        let ports = self.listeners.iter().map(|l| l.port);
        let (lo, hi) = match listen {
            true => (0, u16::MAX),
            false => (ports.clone().min().unwrap_or(0), ports.max().unwrap_or(0)),
        };
        let ext = if listen { 0 } else { 1 << (INET_DIAG_INFO - 1) };
        let fd = sys::sock_diag()?;
        sys::netlink_send(&fd, &request(family, states, ext, (lo, hi)))?;
        let mut buf = [0; BUF]; // on the stack: 32 KiB of PID 1's 8 MiB
        for _ in 0..MAX_DATAGRAMS {
            let n = sys::netlink_recv(&fd, &mut buf)?;
            let mut at = 0;
            loop {
                match next(buf.get(..n).unwrap_or_default(), &mut at)? {
                    Next::Socket(s) if !self.take(s) => return Ok(()),
                    Next::Socket(_) => {}
                    Next::More => break,
                    Next::Done => return Ok(()),
                }
            }
        }
        Err(io::Error::from_raw_os_error(libc::EPROTO)) // it did not end
    }

    /// Takes in the destroy events queued since the last look: the app's
    /// connections among them go to `gone`. True when the kernel dropped
    /// some (the socket's buffer overflowed: busy, whatever the count).
    fn read_ends(&mut self) -> bool {
        let Some(fd) = &self.ends else {
            return false;
        };
        let mut buf = [0; BUF];
        for _ in 0..MAX_EVENTS {
            let n = match sys::netlink_recv(fd, &mut buf) {
                Ok(n) => n,
                Err(e) => return e.raw_os_error() == Some(libc::ENOBUFS),
            };
            let mut at = 0;
            while let Ok(Next::Socket(s)) = next(buf.get(..n).unwrap_or_default(), &mut at) {
                if self.listeners.iter().any(|l| l.takes(&s)) {
                    let mut key = [s.family; 37];
                    key[1..].copy_from_slice(&s.id);
                    self.gone.push((key, UNKNOWN));
                }
            }
        }
        false
    }

    /// Takes in one socket of a dump: a listener, or a connection to one.
    /// False once [`MAX_TRACKED`] connections are.
    fn take(&mut self, s: Socket) -> bool {
        if s.state == LISTEN {
            // Another process's listener is none of the app's business.
            if self.inodes.contains(&s.inode) {
                self.listeners.push(Listener {
                    family: s.family,
                    addr: *s.id[4..20].first_chunk().unwrap_or(&[0; 16]),
                    port: u16::from_be_bytes([s.id[0], s.id[1]]),
                });
            }
        } else if self.listeners.iter().any(|l| l.takes(&s)) {
            let mut key = [s.family; 37];
            key[1..].copy_from_slice(&s.id);
            // A request socket has no tcp_info, and has received nothing.
            let syn = s.state == SYN_RECV && s.segs == UNKNOWN;
            self.now.push((key, if syn { 0 } else { s.segs }));
        }
        self.now.len() < MAX_TRACKED
    }
}

/// Why a source of the sampler cannot be used.
fn unreadable(what: &str, e: io::Error) -> String {
    format!("cannot read {what}: {e}")
}

/// The arrivals a connection's data segments say: those received between
/// two samples (the kernel's u32 counter wraps), at most [`PER_LOOK`].
fn received(before: u64, after: u64) -> u64 {
    if before == UNKNOWN || after == UNKNOWN {
        return 0;
    }
    u64::from((after as u32).wrapping_sub(before as u32)).min(PER_LOOK)
}

fn dump_failed(e: io::Error) -> String {
    unreadable("TCP sockets (sock_diag)", e)
}

/// The inodes of the sockets `owners` hold open; Err when no owner's fd
/// table could be read (processes that are gone, or not ours to read, are
/// skipped).
fn socket_inodes(owners: &[Pid]) -> Result<Vec<u32>, String> {
    let mut inodes = Vec::new();
    let mut failed = None;
    let mut read = owners.is_empty();
    for &pid in owners {
        let dir = format!("/proc/{pid}/fd");
        let mut fds = Vec::new();
        match sys::list_dir(dir.as_bytes(), |fd| fds.push(fd.to_vec())) {
            Ok(()) => {
                read = true;
                inodes.extend(fds.iter().filter_map(|fd| {
                    let mut path = dir.clone().into_bytes();
                    path.push(b'/');
                    path.extend_from_slice(fd);
                    socket_inode(&sys::read_link(&path).ok()?)
                }));
            }
            Err(e) => failed = Some(unreadable(&dir, e)),
        }
    }
    match failed {
        Some(why) if !read => Err(why),
        _ => Ok(inodes),
    }
}

/// The inode in an fd's link to a socket, `socket:[INODE]`.
fn socket_inode(link: &[u8]) -> Option<u32> {
    let n = number(link.strip_prefix(b"socket:[")?.strip_suffix(b"]")?)?;
    u32::try_from(n).ok()
}

/// `N` bytes of `b` at `at`, if there are that many.
fn field<const N: usize>(b: &[u8], at: usize) -> Option<[u8; N]> {
    b.get(at..at.checked_add(N)?)?.try_into().ok()
}

/// A dump request: `struct inet_diag_req_v2` for TCP, and a bytecode filter
/// keeping local ports in `lo..=hi` (a failed test jumps 4 bytes past the
/// end, which rejects the socket).
fn request(family: u8, states: u32, ext: u8, (lo, hi): (u16, u16)) -> [u8; 92] {
    const TEMPLATE: [u8; 92] = {
        let mut r = [0; 92];
        let mut at = 0;
        // Two bytes, then a native-endian u16.
        const fn op(a: u8, b: u8, c: u16) -> [u8; 4] {
            let [c0, c1] = c.to_ne_bytes();
            [a, b, c0, c1]
        }
        const fn two(a: u16, b: u16) -> [u8; 4] {
            let ([a0, a1], [b0, b1]) = (a.to_ne_bytes(), b.to_ne_bytes());
            [a0, a1, b0, b1]
        }
        // (offset, bytes): the parts that never change.
        let parts: [(usize, [u8; 4]); 6] = [
            (0, 92u32.to_ne_bytes()),
            (4, two(SOCK_DIAG_BY_FAMILY, DUMP)),
            (16, [0, libc::IPPROTO_TCP as u8, 0, 0]),
            // INET_DIAG_REQ_BYTECODE, 16 bytes:
            (72, two(20, 1)),
            // INET_DIAG_BC_S_GE; if true the next op, if false past the end + 4,
            (76, op(2, 8, 20)),
            // then INET_DIAG_BC_S_LE; if true the end, which accepts.
            (84, op(3, 8, 12)),
        ];
        while at < parts.len() {
            let (offset, bytes) = parts[at];
            let mut i = 0;
            while i < 4 {
                r[offset + i] = bytes[i];
                i += 1;
            }
            at += 1;
        }
        r
    };
    let mut r = TEMPLATE;
    r[16] = family;
    r[18] = ext;
    // The socket id (24..72) stays zero: a dump does not read it.
    let [s0, s1, s2, s3] = states.to_ne_bytes();
    let ([l0, l1], [h0, h1]) = (lo.to_ne_bytes(), hi.to_ne_bytes());
    (r[20], r[21], r[22], r[23]) = (s0, s1, s2, s3);
    (r[82], r[83], r[90], r[91]) = (l0, l1, h0, h1);
    r
}

/// What comes next in a dump's datagram.
#[derive(PartialEq, Eq, Debug)]
enum Next {
    Socket(Socket),
    /// The end of this datagram: the dump goes on in the next.
    More,
    /// The end of the dump.
    Done,
}

/// The next message in the datagram `d` from `at` on (which moves past it).
/// Anything malformed or unexpected (NLMSG_OVERRUN, say) is an error, and
/// so is the kernel's refusal of the dump.
fn next(d: &[u8], at: &mut usize) -> io::Result<Next> {
    let bad = || io::Error::from_raw_os_error(libc::EPROTO);
    let Some(rest) = d.get(*at..).filter(|r| !r.is_empty()) else {
        return Ok(Next::More);
    };
    let len = u32::from_ne_bytes(field(rest, 0).ok_or_else(bad)?) as usize;
    let kind = u16::from_ne_bytes(field(rest, 4).ok_or_else(bad)?);
    let body = rest.get(HDR..len).ok_or_else(bad)?;
    *at += len.next_multiple_of(4);
    match kind {
        SOCK_DIAG_BY_FAMILY => socket(body).map(Next::Socket).ok_or_else(bad),
        NLMSG_DONE => Ok(Next::Done),
        NLMSG_ERROR => {
            let code = i32::from_ne_bytes(field(body, 0).ok_or_else(bad)?);
            Err(io::Error::from_raw_os_error(code.wrapping_neg()))
        }
        _ => Err(bad()),
    }
}

/// One `struct inet_diag_msg` and its attributes.
fn socket(body: &[u8]) -> Option<Socket> {
    let msg = body.get(..MSG)?;
    let mut attrs = body.get(MSG..)?;
    let mut segs = UNKNOWN;
    while !attrs.is_empty() {
        let len = usize::from(u16::from_ne_bytes(field(attrs, 0)?));
        let value = attrs.get(4..len)?;
        if u16::from_ne_bytes(field(attrs, 2)?) == INET_DIAG_INFO {
            // Shorter before Linux 4.6, which had no tcpi_data_segs_in.
            if let Some(b) = field(value, DATA_SEGS_IN) {
                segs = u64::from(u32::from_ne_bytes(b));
            }
        }
        attrs = attrs.get(len.next_multiple_of(4)..).unwrap_or_default();
    }
    Some(Socket {
        family: msg[0],
        state: msg[1],
        id: field(msg, 4)?,
        inode: u32::from_ne_bytes(field(msg, 68)?),
        segs,
    })
}

/// A decimal number, digits only (wrapping on overflow, never panicking).
fn number(digits: &[u8]) -> Option<u64> {
    let mut n = None;
    for &d in digits {
        let d = d.checked_sub(b'0').filter(|d| *d < 10)?;
        n = Some(
            n.unwrap_or(0u64)
                .wrapping_mul(10)
                .wrapping_add(u64::from(d)),
        );
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::fs;
    use std::io::{Read, Write};
    use std::net::{TcpListener, TcpStream};
    use std::os::fd::AsRawFd;
    use std::time::Duration;
    use std::{format, println, vec};

    const IO: Duration = Duration::from_secs(5);

    fn inode(fd: &impl AsRawFd) -> u32 {
        let link = fs::read_link(format!("/proc/self/fd/{}", fd.as_raw_fd())).expect("/proc");
        use std::os::unix::ffi::OsStrExt;
        socket_inode(link.as_os_str().as_bytes()).expect("a socket")
    }

    /// A sampler watching `l` alone, so that listeners of tests running
    /// alongside in this process do not count.
    fn watching(l: &TcpListener) -> Sampler {
        Sampler::watch(vec![inode(l)]).expect("sock_diag readable")
    }

    /// A connection to `l`: (client end, server end).
    fn connect(l: &TcpListener) -> (TcpStream, TcpStream) {
        let c = TcpStream::connect(l.local_addr().expect("addr")).expect("connect");
        let (s, _) = l.accept().expect("accept");
        for end in [&c, &s] {
            end.set_read_timeout(Some(IO)).expect("timeout");
        }
        (c, s)
    }

    /// A connection the server closes first: its socket is left in TIME_WAIT.
    fn server_closed(l: &TcpListener) {
        let (mut c, s) = connect(l);
        drop(s);
        assert_eq!(c.read(&mut [0; 1]).expect("EOF"), 0);
    }

    /// `n` bytes from client to server, read by the server.
    fn send(c: &mut TcpStream, s: &mut TcpStream, n: usize) {
        c.write_all(&vec![b'x'; n]).expect("write");
        s.read_exact(&mut vec![0; n]).expect("read");
    }

    /// Arrivals the next sample adds, and the sample.
    fn step(s: &mut Sampler) -> (u64, Traffic) {
        let before = s.arrivals;
        let got = s.sample().expect("sample");
        (got.arrivals - before, got)
    }

    /// Exactly `n` new arrivals.
    fn assert_arrivals(s: &mut Sampler, n: u64, what: &str) -> Traffic {
        let (got, sample) = step(s);
        assert_eq!(got, n, "{what}");
        sample
    }

    #[test]
    fn start_finds_the_listeners_of_its_owners_only() {
        let mut sleep = std::process::Command::new("sleep")
            .arg("10")
            .spawn()
            .expect("sleep");
        let other = Sampler::start(&[sleep.id() as Pid]);
        let _ = sleep.kill();
        let _ = sleep.wait();
        let mut other = other.expect("a child's /proc is readable");
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
        let _c = connect(&listener);
        let got = other.sample().expect("sample");
        assert_eq!((got.listeners, got.arrivals, got.connections), (0, 0, 0));

        let me = std::process::id() as Pid;
        let mine = Sampler::start(&[me]).expect("own /proc readable");
        // Other tests of this process may have listeners too.
        assert!(!mine.listeners.is_empty(), "{:?}", mine.listeners);
        let port = listener.local_addr().expect("addr").port();
        assert!(mine.listeners.iter().any(|l| l.port == port));
        assert_eq!(Sampler::start(&[]).expect("no owners").listeners, []);
        assert!(Sampler::start(&[-5]).is_err(), "no such /proc entry");
    }

    #[test]
    fn the_baseline_is_not_arrivals() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (mut c, mut s) = connect(&l);
        send(&mut c, &mut s, 10);
        let _idle = connect(&l);
        server_closed(&l);
        let mut sampler = watching(&l);
        assert!(sampler.seen.len() >= 3, "two open, one TIME_WAIT");
        let got = assert_arrivals(&mut sampler, 0, "nothing happened since start");
        assert_eq!((got.listeners, got.arrivals), (1, 0));
        assert!(got.connections >= 3);
    }

    #[test]
    fn connections_the_server_closed_count_from_time_wait() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut sampler = watching(&l);
        for _ in 0..5 {
            server_closed(&l);
        }
        assert_arrivals(&mut sampler, 5, "five closed connections");
        // Still in TIME_WAIT, and seen: no more arrivals.
        let got = assert_arrivals(&mut sampler, 0, "nothing new");
        assert!(got.connections >= 5);
    }

    #[test]
    fn connections_the_client_closed_count_alive_or_at_their_end() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let mut sampler = watching(&l);
        let mut ends = Vec::new();
        for _ in 0..3 {
            let (c, mut s) = connect(&l);
            drop(c);
            assert_eq!(s.read(&mut [0; 1]).expect("EOF"), 0);
            ends.push(s); // CLOSE_WAIT until the app closes it
        }
        assert_arrivals(&mut sampler, 3, "three connections in CLOSE_WAIT");
        drop(ends);
        assert_arrivals(&mut sampler, 0, "their ends: seen alive before");
        // Opened and closed between two samples: gone from any snapshot,
        // told by its destroy event (the kernel sends those from a work
        // queue: they may come a moment later).
        for _ in 0..2 {
            let (c, mut s) = connect(&l);
            drop(c);
            assert_eq!(s.read(&mut [0; 1]).expect("EOF"), 0);
        }
        let mut got = 0;
        for _ in 0..20 {
            got += step(&mut sampler).0;
            if got >= 2 {
                break;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        assert_eq!(got, 2, "client-closed connections between samples");
    }

    #[test]
    fn requests_on_a_kept_alive_connection_count_up_to_a_cap() {
        let l = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (mut c, mut s) = connect(&l);
        let mut sampler = watching(&l);
        for n in [1, 3, PER_LOOK, 50] {
            for _ in 0..n {
                send(&mut c, &mut s, 100); // one request, one segment
            }
            assert_arrivals(&mut sampler, n.min(PER_LOOK), &format!("{n} requests"));
        }
        for round in 0..3 {
            assert_arrivals(&mut sampler, 0, &format!("idle round {round}"));
        }
        // The client's FIN carries no data.
        drop(c);
        assert_eq!(s.read(&mut [0; 1]).expect("EOF"), 0);
        assert_arrivals(&mut sampler, 0, "the client closed");
    }

    #[test]
    fn segment_counts_wrap_and_unknowns_count_nothing() {
        assert_eq!(received(u64::from(u32::MAX), 2), 3);
        assert_eq!(received(5, 5), 0);
        assert_eq!(received(0, 1000), PER_LOOK);
        assert_eq!(received(UNKNOWN, 7), 0);
        assert_eq!(received(7, UNKNOWN), 0);
    }

    #[test]
    fn other_listeners_never_count() {
        let mine = TcpListener::bind("127.0.0.1:0").expect("bind");
        let other = TcpListener::bind("127.0.0.1:0").expect("bind");
        let (mut c, mut s) = connect(&other);
        let mut sampler = watching(&mine);
        for _ in 0..2 {
            for _ in 0..3 {
                server_closed(&other);
            }
            send(&mut c, &mut s, 100);
            let (c2, _s2) = connect(&other);
            drop(c2);
            let (got, sample) = step(&mut sampler);
            assert_eq!((got, sample.listeners, sample.connections), (0, 1, 0));
        }
    }

    #[test]
    fn ipv6_loopback_and_ipv4_mapped_connections_count() {
        let Ok(l) = TcpListener::bind("[::1]:0") else {
            println!("SKIPPED traffic ipv6: no IPv6 loopback on this host");
            return;
        };
        let (mut c, mut s) = connect(&l);
        let mut sampler = watching(&l);
        for _ in 0..4 {
            server_closed(&l);
        }
        send(&mut c, &mut s, 10);
        assert_arrivals(&mut sampler, 5, "four new, one busy");
        assert_arrivals(&mut sampler, 0, "idle");
        // A dual-stack wildcard listener; traffic still only to 127.0.0.1.
        let any = TcpListener::bind("[::]:0").expect("bind [::]");
        let port = any.local_addr().expect("addr").port();
        let mut sampler = watching(&any);
        for _ in 0..3 {
            let mut c = TcpStream::connect(("127.0.0.1", port)).expect("connect");
            drop(any.accept().expect("accept"));
            assert_eq!(c.read(&mut [0; 1]).expect("EOF"), 0);
        }
        assert_arrivals(&mut sampler, 3, "IPv4-mapped connections");
    }

    #[test]
    fn matches_by_family_port_and_address_unless_wildcard() {
        let id = |port: u16, addr: [u8; 16]| {
            let mut id = [0; 36];
            id[..2].copy_from_slice(&port.to_be_bytes());
            id[4..20].copy_from_slice(&addr);
            id
        };
        let v4 = |a: [u8; 4]| {
            *[a, [0; 4], [0; 4], [0; 4]]
                .as_flattened()
                .first_chunk()
                .unwrap()
        };
        let mapped = {
            let mut a = [0; 16];
            a[10..].copy_from_slice(&[0xff, 0xff, 127, 0, 0, 1]);
            a
        };
        let sock = |family, id| Socket {
            family,
            state: 1,
            id,
            inode: 0,
            segs: 0,
        };
        let lo4 = Listener {
            family: AF_INET,
            addr: v4([127, 0, 0, 1]),
            port: 80,
        };
        let any4 = Listener {
            addr: [0; 16],
            ..lo4
        };
        let any6 = Listener {
            family: AF_INET6,
            ..any4
        };
        let a = id(80, v4([127, 0, 0, 1]));
        let b = id(80, v4([10, 0, 0, 1]));
        let c = id(81, v4([127, 0, 0, 1]));
        let m = id(80, mapped);
        assert!(lo4.takes(&sock(AF_INET, a)));
        assert!(!lo4.takes(&sock(AF_INET, b)), "another address");
        assert!(!lo4.takes(&sock(AF_INET, c)), "another port");
        assert!(!lo4.takes(&sock(AF_INET6, a)), "another family");
        assert!(any4.takes(&sock(AF_INET, b)));
        assert!(!any4.takes(&sock(AF_INET6, m)));
        assert!(any6.takes(&sock(AF_INET6, m)), "IPv4-mapped");
        assert!(
            !any6.takes(&sock(AF_INET, a)),
            "a V6ONLY [::] and an IPv4 listener"
        );
    }

    /// A datagram of `records`, each a message type and its body.
    fn datagram(records: &[(u16, Vec<u8>)]) -> Vec<u8> {
        let mut d = Vec::new();
        for (kind, body) in records {
            d.extend(((HDR + body.len()) as u32).to_ne_bytes());
            d.extend(kind.to_ne_bytes());
            d.extend([0; 10]);
            d.extend(body);
            d.resize(d.len().next_multiple_of(4), 0);
        }
        d
    }

    fn diag_msg(info: Option<usize>, segs: u32) -> Vec<u8> {
        let mut m = vec![AF_INET, 1, 0, 0];
        m.extend([0x1f, 0x90]); // port 8080
        m.resize(68, 7);
        m.extend(42u32.to_ne_bytes());
        if let Some(len) = info {
            let mut value = vec![0; len];
            if let Some(at) = value.get_mut(DATA_SEGS_IN..DATA_SEGS_IN + 4) {
                at.copy_from_slice(&segs.to_ne_bytes());
            }
            m.extend(((4 + len) as u16).to_ne_bytes());
            m.extend(INET_DIAG_INFO.to_ne_bytes());
            m.extend(value);
        }
        m
    }

    /// What a parse handed over: family, local port, inode, data segments received.
    type Parsed = Vec<(u8, u16, u32, u64)>;

    fn parsed(d: &[u8]) -> io::Result<(bool, Parsed)> {
        let (mut at, mut got) = (0, Vec::new());
        loop {
            match next(d, &mut at)? {
                Next::Socket(s) => {
                    let port = u16::from_be_bytes([s.id[0], s.id[1]]);
                    got.push((s.family, port, s.inode, s.segs));
                }
                Next::More => return Ok((true, got)),
                Next::Done => return Ok((false, got)),
            }
        }
    }

    #[test]
    fn parses_dump_messages_and_refuses_malformed_ones() {
        let full = std::mem::size_of::<libc::tcp_info>();
        let d = datagram(&[
            (SOCK_DIAG_BY_FAMILY, diag_msg(Some(full), 1234)),
            (SOCK_DIAG_BY_FAMILY, diag_msg(None, 0)),
            (SOCK_DIAG_BY_FAMILY, diag_msg(Some(144), 5)), // before Linux 4.6: no tcpi_data_segs_in
        ]);
        let (more, got) = parsed(&d).expect("well-formed");
        assert!(more);
        let want = [
            (AF_INET, 8080, 42, 1234),
            (AF_INET, 8080, 42, UNKNOWN),
            (AF_INET, 8080, 42, UNKNOWN),
        ];
        assert_eq!(got, want);
        let done = datagram(&[
            (SOCK_DIAG_BY_FAMILY, diag_msg(None, 0)),
            (NLMSG_DONE, vec![0; 4]),
        ]);
        assert!(!parsed(&done).expect("done").0);
        let refused = datagram(&[(NLMSG_ERROR, (-libc::EACCES).to_ne_bytes().to_vec())]);
        assert_eq!(
            parsed(&refused).unwrap_err().raw_os_error(),
            Some(libc::EACCES)
        );
        // Cut anywhere, a datagram is an error, never a panic.
        let whole = datagram(&[(SOCK_DIAG_BY_FAMILY, diag_msg(Some(full), 1))]);
        for cut in 1..whole.len() {
            assert!(parsed(&whole[..cut]).is_err(), "cut at {cut}");
        }
        let mut short_attr = datagram(&[(SOCK_DIAG_BY_FAMILY, diag_msg(Some(8), 0))]);
        short_attr[HDR + MSG] = 3; // attribute length below its own header
        assert!(parsed(&short_attr).is_err());
        assert!(parsed(&datagram(&[(SOCK_DIAG_BY_FAMILY, vec![0; 71])])).is_err());
        assert!(parsed(&datagram(&[(4, vec![])])).is_err(), "NLMSG_OVERRUN");
    }

    proptest::proptest! {
        #[test]
        fn any_bytes_parse_without_panic(bytes in proptest::collection::vec(proptest::num::u8::ANY, 0..400)) {
            let _ = parsed(&bytes);
            let mut framed = datagram(&[(SOCK_DIAG_BY_FAMILY, bytes.clone())]);
            let _ = parsed(&framed);
            framed.truncate(framed.len() / 2);
            let _ = parsed(&framed);
        }
    }

    #[test]
    fn request_filters_the_listeners_port_range() {
        let r = request(AF_INET6, CONNECTED, 2, (80, 8080));
        assert_eq!(u32::from_ne_bytes(field(&r, 0).unwrap()) as usize, r.len());
        assert_eq!((r[16], r[17], r[18]), (AF_INET6, 6, 2));
        assert_eq!(u16::from_ne_bytes(field(&r, 82).unwrap()), 80);
        assert_eq!(u16::from_ne_bytes(field(&r, 90).unwrap()), 8080);
        // The kernel refuses a filter it cannot prove safe: a dump through
        // this one (in the tests above) is the real check.
    }
}
