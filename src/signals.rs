//! Signal numbers, names, sets, and which signals usher forwards.

use alloc::format;
use alloc::string::String;

use core::fmt;

/// Highest signal number on Linux (SIGRTMAX).
pub const MAX: i32 = 64;

/// A signal number, 1..=64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Signal(i32);

const NAMES: &[(&str, i32)] = &[
    ("HUP", libc::SIGHUP),
    ("INT", libc::SIGINT),
    ("QUIT", libc::SIGQUIT),
    ("ILL", libc::SIGILL),
    ("TRAP", libc::SIGTRAP),
    ("ABRT", libc::SIGABRT),
    ("IOT", libc::SIGABRT),
    ("BUS", libc::SIGBUS),
    ("FPE", libc::SIGFPE),
    ("KILL", libc::SIGKILL),
    ("USR1", libc::SIGUSR1),
    ("SEGV", libc::SIGSEGV),
    ("USR2", libc::SIGUSR2),
    ("PIPE", libc::SIGPIPE),
    ("ALRM", libc::SIGALRM),
    ("TERM", libc::SIGTERM),
    ("STKFLT", libc::SIGSTKFLT),
    ("CHLD", libc::SIGCHLD),
    ("CLD", libc::SIGCHLD),
    ("CONT", libc::SIGCONT),
    ("STOP", libc::SIGSTOP),
    ("TSTP", libc::SIGTSTP),
    ("TTIN", libc::SIGTTIN),
    ("TTOU", libc::SIGTTOU),
    ("URG", libc::SIGURG),
    ("XCPU", libc::SIGXCPU),
    ("XFSZ", libc::SIGXFSZ),
    ("VTALRM", libc::SIGVTALRM),
    ("PROF", libc::SIGPROF),
    ("WINCH", libc::SIGWINCH),
    ("IO", libc::SIGIO),
    ("POLL", libc::SIGIO),
    ("PWR", libc::SIGPWR),
    ("SYS", libc::SIGSYS),
];

/// Signals the kernel raises synchronously on a fault in usher itself; usher
/// never blocks or forwards them, so a bug in usher crashes loudly instead of
/// spinning.
const FAULTS: &[i32] = &[
    libc::SIGSEGV,
    libc::SIGBUS,
    libc::SIGILL,
    libc::SIGFPE,
    libc::SIGTRAP,
    libc::SIGSYS,
    libc::SIGABRT,
];

/// The first real-time signal as `kill -l`, glibc and Docker number it.
/// Not `libc::SIGRTMIN()`: a static musl usher would say 35, and RTMIN+3
/// would then mean something else to usher than to a glibc app and its
/// operator. 32 and 33 have no RTMIN name (glibc keeps them internal) but are
/// forwarded like every other real-time signal.
pub const RTMIN: i32 = 34;

pub fn rtmin() -> i32 {
    RTMIN
}

impl Signal {
    pub const HUP: Signal = Signal(libc::SIGHUP);
    pub const INT: Signal = Signal(libc::SIGINT);
    pub const QUIT: Signal = Signal(libc::SIGQUIT);
    pub const KILL: Signal = Signal(libc::SIGKILL);
    pub const TERM: Signal = Signal(libc::SIGTERM);
    pub const CHLD: Signal = Signal(libc::SIGCHLD);
    pub const CONT: Signal = Signal(libc::SIGCONT);
    pub const STOP: Signal = Signal(libc::SIGSTOP);
    pub const USR1: Signal = Signal(libc::SIGUSR1);
    pub const PIPE: Signal = Signal(libc::SIGPIPE);
    pub const XFSZ: Signal = Signal(libc::SIGXFSZ);

    /// A signal from its number, if it is one (1..=64).
    pub fn new(n: i32) -> Option<Signal> {
        (1..=MAX).contains(&n).then_some(Signal(n))
    }

    pub fn number(self) -> i32 {
        self.0
    }

    /// Whether a process can block or handle it (all but KILL and STOP).
    pub fn catchable(self) -> bool {
        self.0 != libc::SIGKILL && self.0 != libc::SIGSTOP
    }

    /// Whether usher passes it on to the app when usher receives it: a bit
    /// test, for it is asked about every signal usher forwards.
    pub fn forwardable(self) -> bool {
        const NEVER: u64 = {
            let mut mask =
                1 << (libc::SIGKILL - 1) | 1 << (libc::SIGSTOP - 1) | 1 << (libc::SIGCHLD - 1);
            let mut i = 0;
            while i < FAULTS.len() {
                mask |= 1 << (FAULTS[i] - 1);
                i += 1;
            }
            mask
        };
        NEVER & 1 << (self.0 - 1) == 0
    }

    /// Every signal usher blocks in itself and reads from its signalfd.
    pub fn blocked_set() -> SigSet {
        let mut set = SigSet::EMPTY;
        for n in 1..=MAX {
            let s = Signal(n);
            if s.catchable() && !FAULTS.contains(&n) {
                set.insert(s);
            }
        }
        set
    }

    /// Parses `TERM`, `SIGTERM`, `sigterm`, `15`, `RTMIN+2`, `SIGRTMAX-1`.
    pub fn parse(text: &str) -> Result<Signal, String> {
        let t = text.trim();
        if t.is_empty() {
            return Err(format!(
                "empty signal name (use a name like TERM or SIGHUP, RTMIN+N, or a number 1..{MAX})"
            ));
        }
        if let Ok(n) = t.parse::<i64>() {
            return i32::try_from(n)
                .ok()
                .and_then(Signal::new)
                .ok_or_else(|| format!("signal number {t} is out of range 1..{MAX}"));
        }
        let upper = t.to_ascii_uppercase();
        let bare = upper.strip_prefix("SIG").unwrap_or(&upper);
        if let Ok(n) = bare.parse::<i32>() {
            // SIG32 and the like: how usher prints numbers that have no name.
            return Signal::new(n)
                .ok_or_else(|| format!("signal number {t} is out of range 1..{MAX}"));
        }
        if let Some(&(_, n)) = NAMES.iter().find(|(name, _)| *name == bare) {
            return Ok(Signal(n));
        }
        parse_realtime(bare).ok_or_else(|| {
            format!("unknown signal {t:?} (use a name like TERM or SIGHUP, RTMIN+N, or a number 1..{MAX})")
        })
    }
}

fn parse_realtime(bare: &str) -> Option<Signal> {
    let (base, rest) = if let Some(rest) = bare.strip_prefix("RTMIN") {
        (rtmin(), rest)
    } else if let Some(rest) = bare.strip_prefix("RTMAX") {
        (MAX, rest)
    } else {
        return None;
    };
    // Checked: RTMIN+2147483647 must be refused, not overflow.
    let n = if rest.is_empty() {
        base
    } else if let Some(k) = rest.strip_prefix('+') {
        base.checked_add(k.parse::<i32>().ok()?)?
    } else if let Some(k) = rest.strip_prefix('-') {
        base.checked_sub(k.parse::<i32>().ok()?)?
    } else {
        return None;
    };
    (rtmin()..=MAX).contains(&n).then_some(Signal(n))
}

impl fmt::Display for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if let Some((name, _)) = NAMES.iter().find(|(_, n)| *n == self.0) {
            return write!(f, "SIG{name}");
        }
        let rt = rtmin();
        match self.0 {
            n if n == rt => write!(f, "SIGRTMIN"),
            n if n == MAX => write!(f, "SIGRTMAX"),
            n if n > rt => write!(f, "SIGRTMIN+{}", n - rt),
            n => write!(f, "SIG{n}"),
        }
    }
}

impl fmt::Debug for Signal {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Display::fmt(self, f)
    }
}

/// A set of signals as a bit mask (bit n-1 for signal n).
#[derive(Clone, Copy, PartialEq, Eq, Default, Debug)]
pub struct SigSet(u64);

impl SigSet {
    pub const EMPTY: SigSet = SigSet(0);

    pub fn insert(&mut self, s: Signal) {
        self.0 |= 1 << (s.0 - 1);
    }

    pub fn contains(&self, s: Signal) -> bool {
        self.0 & (1 << (s.0 - 1)) != 0
    }

    /// A set from the kernel's layout (as in /proc/PID/status).
    pub fn from_bits(bits: u64) -> SigSet {
        SigSet(bits)
    }

    /// The set as the kernel lays it out: bit n-1 for signal n.
    pub fn bits(self) -> u64 {
        self.0
    }

    pub fn iter(self) -> impl Iterator<Item = Signal> {
        (1..=MAX).map(Signal).filter(move |s| self.contains(*s))
    }
}

/// What to forward in place of each signal (`--rewrite FROM:TO`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Rewrite([u8; MAX as usize + 1]);

impl Default for Rewrite {
    fn default() -> Self {
        let mut map = [0u8; MAX as usize + 1];
        for (n, slot) in map.iter_mut().enumerate() {
            *slot = n as u8;
        }
        Rewrite(map)
    }
}

impl Rewrite {
    /// `to == None` drops `from` instead of forwarding it.
    pub fn set(&mut self, from: Signal, to: Option<Signal>) {
        self.0[from.0 as usize] = to.map_or(0, |s| s.0 as u8);
    }

    /// The signal to forward for `s`, or `None` when it is dropped.
    pub fn apply(&self, s: Signal) -> Option<Signal> {
        Signal::new(i32::from(self.0[s.0 as usize]))
    }

    /// Parses one `FROM:TO` spec; `TO` of 0 drops `FROM`.
    pub fn parse_spec(spec: &str) -> Result<(Signal, Option<Signal>), String> {
        let (from, to) = spec.split_once(':').ok_or_else(|| {
            format!("rewrite {spec:?} is not FROM:TO (e.g. TERM:QUIT, or 15:0 to drop)")
        })?;
        if to.trim().is_empty() {
            return Err(format!(
                "rewrite {spec:?}: TO is empty; write FROM:TO (e.g. TERM:QUIT, or TERM:0 to drop)"
            ));
        }
        let from = Signal::parse(from).map_err(|e| format!("rewrite {spec:?}: {e}"))?;
        if !from.forwardable() {
            return Err(format!(
                "rewrite {spec:?}: {from} is never forwarded, so it cannot be rewritten"
            ));
        }
        let to = match to.trim() {
            "0" => None,
            t => Some(Signal::parse(t).map_err(|e| format!("rewrite {spec:?}: {e}"))?),
        };
        if to == Some(Signal::STOP) {
            return Err(format!(
                "rewrite {spec:?}: forwarding SIGSTOP would freeze the app until the deadline; use TSTP"
            ));
        }
        Ok((from, to))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::string::ToString;

    #[test]
    fn parses_names_numbers_and_prefixes() {
        assert_eq!(Signal::parse("TERM"), Ok(Signal::TERM));
        assert_eq!(Signal::parse("SIGTERM"), Ok(Signal::TERM));
        assert_eq!(Signal::parse("sigterm"), Ok(Signal::TERM));
        assert_eq!(Signal::parse("15"), Ok(Signal::TERM));
        assert_eq!(Signal::parse("cld"), Ok(Signal::CHLD));
        assert_eq!(Signal::parse("RTMIN").unwrap().number(), rtmin());
        assert_eq!(Signal::parse("SIGRTMIN+3").unwrap().number(), rtmin() + 3);
        assert_eq!(Signal::parse("RTMAX-1").unwrap().number(), 63);
        assert_eq!(Signal::parse("64").unwrap().number(), 64);
    }

    #[test]
    fn rejects_bad_signals() {
        for bad in [
            "",
            "0",
            "65",
            "-1",
            "TERMX",
            "RTMAX+1",
            "RTMIN-1",
            "99999999999",
            "SIG",
            "RTMIN+2147483647",
            "RTMAX-2147483648",
            "RTMAX--2147483648",
            "RTMIN+-5",
        ] {
            assert!(Signal::parse(bad).is_err(), "{bad:?} should not parse");
        }
    }

    #[test]
    fn names_round_trip() {
        for n in 1..=MAX {
            let s = Signal::new(n).unwrap();
            assert_eq!(Signal::parse(&s.to_string()), Ok(s), "{s}");
        }
        assert_eq!(Signal::TERM.to_string(), "SIGTERM");
    }

    #[test]
    fn forwarding_policy() {
        for s in [
            Signal::HUP,
            Signal::INT,
            Signal::TERM,
            Signal::USR1,
            Signal::QUIT,
        ] {
            assert!(s.forwardable());
        }
        for n in [
            libc::SIGCHLD,
            libc::SIGKILL,
            libc::SIGSTOP,
            libc::SIGSEGV,
            libc::SIGABRT,
        ] {
            assert!(!Signal::new(n).unwrap().forwardable());
        }
        assert!(Signal::new(rtmin() + 1).unwrap().forwardable());
        let blocked = Signal::blocked_set();
        assert!(blocked.contains(Signal::CHLD) && blocked.contains(Signal::TERM));
        assert!(
            !blocked.contains(Signal::KILL)
                && !blocked.contains(Signal::new(libc::SIGSEGV).unwrap())
        );
    }

    #[test]
    fn rewrite_specs() {
        assert_eq!(
            Rewrite::parse_spec("TERM:QUIT"),
            Ok((Signal::TERM, Some(Signal::QUIT)))
        );
        assert_eq!(Rewrite::parse_spec("1:0"), Ok((Signal::HUP, None)));
        for bad in [
            "TERM",
            "TERM:",
            ":QUIT",
            "KILL:TERM",
            "CHLD:TERM",
            "TERM:BOGUS",
            "TERM:QUIT:1",
        ] {
            assert!(
                Rewrite::parse_spec(bad).is_err(),
                "{bad:?} should be rejected"
            );
        }
        let mut r = Rewrite::default();
        r.set(Signal::TERM, Some(Signal::QUIT));
        r.set(Signal::HUP, None);
        assert_eq!(r.apply(Signal::TERM), Some(Signal::QUIT));
        assert_eq!(r.apply(Signal::HUP), None);
        assert_eq!(r.apply(Signal::INT), Some(Signal::INT));
    }
}
