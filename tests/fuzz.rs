//! Fuzzing, as property tests (cargo-fuzz needs a nightly compiler): argument
//! and environment parsing, and the state machine's event handling, must
//! never panic, whatever comes in.
//!
//! - `cli::parse` gets random argv (known flags, `--`, `=` forms, values that
//!   are nearly right, random text, random bytes) and random USHER_*
//!   variables: it returns Ok or Err, and what it accepts is consistent.
//! - The machine, in the very loop usher runs (with the tests' in-memory
//!   world), gets random policies and random event sequences: pids that are
//!   not the child, suspensions, repeated exits of the main child, answers
//!   to questions never asked, timers at any time, time going backwards. It
//!   never panics, emits at most one Exit and nothing after it.
//! - Both chained: whatever `cli::parse` accepts drives a machine.
//!
//! Cases per property: 10,000 by default (about ten seconds for all three
//! in a debug build); `USHERTEST_FUZZ_CASES=1000000 cargo test --release --test
//! fuzz` for a long run. Times stay below a century of uptime and durations
//! within what the command line accepts (`cli::LONGEST`): the monotonic
//! clock and `cli::parse` bound them so in usher.

use std::collections::HashMap;
use std::ffi::OsString;
use std::os::unix::ffi::OsStringExt;
use std::time::Duration;

use proptest::prelude::*;
use proptest::test_runner::TestCaseError;

mod common;
use common::sim::Sim;

use usher::cli::{self, Parsed};
use usher::hook::{HookAction, HookKind, Outcome};
use usher::machine::{
    Action, Census, DrainSpec, Errand, Event, KillCause, Policy, Situation, Start, Target,
};
use usher::process::{Leftover, Memory, Pid, Status, Traffic};
use usher::signals::{Rewrite, Signal};

/// Cases per property: `USHERTEST_FUZZ_CASES`, or 10,000.
fn cases() -> u32 {
    std::env::var("USHERTEST_FUZZ_CASES")
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(10_000)
}

fn config() -> ProptestConfig {
    ProptestConfig {
        cases: cases(),
        // A failure shrinks quickly or not at all: keep a CI failure fast.
        max_shrink_iters: 2_000,
        ..ProptestConfig::default()
    }
}

// ------------------------------------------------------------- arguments

/// Every flag usher knows (from its option table), and some it does not.
fn flags() -> Vec<String> {
    let names = |o: &cli::Opt| {
        let short = o.short.map(|c| format!("-{c}"));
        short.into_iter().chain(o.long.map(|l| format!("--{l}")))
    };
    let odd = ["--bogus", "--", "-", "--=", "---", "-x"].map(String::from);
    cli::OPTIONS.iter().flat_map(names).chain(odd).collect()
}

/// The letters of the short flags, and some that are not flags, for bundles.
fn short_letters() -> Vec<u8> {
    let shorts = cli::OPTIONS.iter().filter_map(|o| o.short).map(|c| c as u8);
    shorts.chain(*b"x=-").collect()
}

/// Values that are right, nearly right, or wrong in interesting ways.
#[rustfmt::skip]
const VALUES: &[&str] = &[
    "", " ", "0", "1", "5", "15", "64", "65", "-1", "255", "256", "99999999999999999999",
    "TERM", "SIGTERM", "sigint", "KILL", "STOP", "CHLD", "SEGV",
    "RTMIN", "RTMIN+3", "RTMAX-1", "RTMAX+1", "RTMIN-1", "RTMIN+2147483647", "RTMAX-2147483648",
    "SIG", "SIG32", "TERM,INT", "TERM,", ",",
    "TERM:QUIT", "TERM:0", "15:0", "KILL:TERM", "TERM:KILL", "TERM:", ":QUIT", ":", "TERM:QUIT:1",
    "0s", "5s", "-1s", "500ms", "1m30s", "1.5s", "1ns", "365d", "366d",
    "99999999999999999999s", "18446744073709551615s", "500000000000y",
    "text", "json", "xml", "'", "\"", "\\",
    "sh -c 'exit 3'", "say \"a \\\"b\\\"\"", "a\\ b", "x '' y",
    "true", "maybe", "yes", "off", "\n", "é",
    "http://127.0.0.1:8080/ready?x=1", "POST http://127.0.0.1:9901/healthcheck/fail",
    "GET http://[::1]:80/", "https://127.0.0.1/", "http://:80/", "http://127.0.0.1:0/",
    "http://example.com/", "POST", "GET /path",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        prop::sample::select(VALUES).prop_map(String::from),
        prop::collection::vec(any::<char>(), 0..8).prop_map(|c| c.into_iter().collect()),
        chars(b"-=:,+ aTERMINSGKLUPQ0123456789", 0..10),
    ]
}

/// Strings of `len` characters from `set`.
fn chars(set: &'static [u8], len: std::ops::Range<usize>) -> impl Strategy<Value = String> {
    prop::collection::vec(prop::sample::select(set), len)
        .prop_map(|b| b.into_iter().map(char::from).collect())
}

fn raw_bytes() -> impl Strategy<Value = OsString> {
    prop::collection::vec(any::<u8>(), 0..10).prop_map(OsString::from_vec)
}

fn arg() -> impl Strategy<Value = OsString> {
    prop_oneof![
        8 => prop::sample::select(flags()).prop_map(OsString::from),
        2 => (prop::sample::select(flags()), text())
            .prop_map(|(f, v)| OsString::from(format!("{f}={v}"))),
        // Bundles of short flags, some with a glued value: -sv, -pKILL, -e1x
        2 => (
            prop::collection::vec(prop::sample::select(short_letters()), 1..5),
            chars(b"KILT015", 0..3),
        )
            .prop_map(|(flags, value)| {
                let flags: String = flags.into_iter().map(char::from).collect();
                OsString::from(format!("-{flags}{value}"))
            }),
        4 => text().prop_map(OsString::from),
        1 => raw_bytes(),
        1 => raw_bytes().prop_map(|b| {
            let mut v = b"-".to_vec();
            v.extend(b.into_vec());
            OsString::from_vec(v)
        }),
    ]
}

fn env() -> impl Strategy<Value = HashMap<String, OsString>> {
    let value = prop_oneof![
        6 => text().prop_map(OsString::from),
        1 => raw_bytes(),
    ];
    // Every variable usher reads, and one it does not.
    let mut names: Vec<&'static str> = usher::cli::env_vars();
    names.push("USHER_BOGUS");
    prop::collection::hash_map(
        prop::sample::select(names).prop_map(String::from),
        value,
        0..5,
    )
}

/// Parses and checks what `cli::parse` promises; returns the config it accepted.
fn parse_checked(
    args: &[OsString],
    env: &HashMap<String, OsString>,
) -> Result<Option<cli::Config>, TestCaseError> {
    let parsed = cli::parse(args.iter().map(|a| a.clone().into_vec()), |k| {
        env.get(k).map(|v| v.clone().into_vec())
    });
    let newline_in = args.iter().chain(env.values()).any(|a| {
        a.as_encoded_bytes()
            .iter()
            .any(|&b| b == b'\n' || b == b'\r')
    });
    match parsed {
        Ok(Parsed::Run(cfg)) => {
            prop_assert!(!cfg.command.is_empty(), "a run without a command");
            prop_assert!(!cfg.command[0].is_empty(), "an empty command");
            let p = &cfg.policy;
            let max = p.drain.max();
            prop_assert!(max <= cli::LONGEST, "drain {:?}", p.drain);
            if let DrainSpec::Range { min, max } = p.drain {
                prop_assert!(min <= max, "{:?}", p.drain);
            }
            if let Some(g) = p.grace {
                prop_assert!(g <= cli::LONGEST, "grace {g:?}");
                prop_assert!(max < g, "drain {:?} >= grace {g:?}", p.drain);
            }
            prop_assert!(!p.stop_on.is_empty());
            prop_assert!(p.stop_on.iter().all(|s| s.forwardable()), "{:?}", p.stop_on);
            prop_assert!(p.remap_exit.iter().all(|c| (0..=255).contains(c)));
            for hook in p.hooks.iter().flatten() {
                match hook {
                    HookAction::Command(words) => prop_assert!(!words.is_empty()),
                    HookAction::Http(req) => {
                        prop_assert!(req.headers.iter().all(|h| !h.contains(['\r', '\n'])))
                    }
                }
            }
            // The app's words are passed on untouched, in order.
            let tail = &args[args.len() - cfg.command.len()..];
            let tail: Vec<Vec<u8>> = tail.iter().map(|a| a.clone().into_vec()).collect();
            prop_assert_eq!(tail, cfg.command.clone());
            Ok(Some(*cfg))
        }
        Ok(Parsed::Help | Parsed::Version | Parsed::License | Parsed::Check(_)) => Ok(None),
        Err(usage) => {
            let msg = usage.message;
            prop_assert!(!msg.trim().is_empty(), "an empty error message");
            // One line, unless the input itself carried a line break (a
            // known gap: unknown option names are echoed unescaped).
            prop_assert!(
                newline_in || !msg.contains('\n'),
                "a multi-line message: {msg:?}"
            );
            Ok(None)
        }
    }
}

// --------------------------------------------------------- state machine

const CHILD: Pid = 7;
/// Monotonic times stay below a century of uptime.
const CENTURY: u64 = 100 * 365 * 24 * 3600;

/// The signals that matter most, drawn more often than the rest.
#[rustfmt::skip]
const COMMON: [i32; 7] = [
    libc::SIGTERM, libc::SIGINT, libc::SIGQUIT, libc::SIGHUP, libc::SIGUSR1, libc::SIGCONT, libc::SIGTSTP,
];

fn signal() -> impl Strategy<Value = Signal> {
    prop_oneof![
        3 => prop::sample::select(COMMON.map(|n| Signal::new(n).unwrap()).to_vec()),
        2 => (1..=64i32).prop_map(|n| Signal::new(n).unwrap()),
    ]
}

fn duration() -> impl Strategy<Value = Duration> {
    prop_oneof![
        3 => (0u64..5_000).prop_map(Duration::from_millis),
        1 => (0..=cli::LONGEST.as_nanos() as u64).prop_map(Duration::from_nanos),
        1 => Just(cli::LONGEST),
        1 => Just(Duration::ZERO),
    ]
}

fn policy() -> impl Strategy<Value = Policy> {
    let drain = prop_oneof![
        duration().prop_map(DrainSpec::Fixed),
        (duration(), duration()).prop_map(|(a, b)| DrainSpec::Range {
            min: a.min(b),
            max: a.max(b)
        }),
    ];
    (
        any::<bool>(),
        prop::collection::vec((signal(), prop::option::of(signal())), 0..4),
        prop::collection::vec(prop_oneof![0..=255i32, any::<i32>()], 0..3),
        prop::collection::vec(signal(), 0..4),
        drain,
        prop::option::of(duration()),
        prop::collection::vec(any::<bool>(), 3),
        any::<bool>(),
    )
        .prop_map(
            |(single_child, rewrites, remap_exit, stop_on, drain, grace, hooks, warn_on_reap)| {
                let mut rewrite = Rewrite::default();
                for (from, to) in rewrites {
                    rewrite.set(from, to);
                }
                let mut policy = Policy {
                    single_child,
                    rewrite,
                    remap_exit,
                    stop_on,
                    drain,
                    grace,
                    warn_on_reap,
                    ..Policy::default()
                };
                for (kind, on) in HookKind::ALL.into_iter().zip(hooks) {
                    policy.hooks[kind as usize] = on.then(|| HookAction::Command(vec!["x".into()]));
                }
                policy
            },
        )
}

/// When an event is observed, relative to the previous one.
#[derive(Clone, Debug)]
enum When {
    Same,
    Later(u64),
    /// Time going backwards (the machine must not care).
    Earlier(u64),
    /// Exactly when the machine asked for its timer, if it did.
    AtTimeout,
    /// Anywhere below a century of uptime.
    Anytime(u64),
}

/// Digits of a random number in mixed bases: each `take(n)` is one choice
/// among `n`. Events are decoded from one number each, which is far cheaper
/// to generate (and still shrinks: smaller numbers, simpler events) than a
/// tree of proptest strategies, so many more cases fit in a debug build.
struct Digits(u128);

impl Digits {
    fn take(&mut self, n: u128) -> u128 {
        let d = self.0 % n;
        self.0 /= n;
        d
    }

    fn signal(&mut self) -> Signal {
        let n = match self.take(2) {
            0 => COMMON[self.take(7) as usize],
            _ => 1 + self.take(64) as i32,
        };
        Signal::new(n).expect("1..=64")
    }

    fn pid(&mut self) -> Pid {
        match self.take(9) {
            0..=3 => CHILD,
            4 | 5 => CHILD + 1, // the hook, often
            6 | 7 => 1 + self.take(20) as Pid,
            _ => self.take(1 << 32) as u32 as Pid,
        }
    }

    fn status(&mut self) -> Status {
        match self.take(6) {
            0..=2 => Status::Exited(self.take(256) as i32),
            3 => Status::Exited(self.take(1 << 32) as u32 as i32),
            _ => Status::Signaled(self.signal()),
        }
    }

    fn hook_kind(&mut self) -> HookKind {
        HookKind::ALL[self.take(HookKind::ALL.len() as u128) as usize]
    }

    fn census(&mut self) -> Census {
        let list = match self.take(4) {
            0 => None,
            n => Some(
                (0..n - 1)
                    .map(|_| Leftover {
                        pid: self.pid(),
                        group: self.pid(),
                    })
                    .collect(),
            ),
        };
        Census {
            list,
            group_alive: self.take(2) == 1,
        }
    }

    /// An answer to a census nobody asked for, or to one asked long ago.
    fn errand(&mut self) -> Errand {
        let at = Situation {
            pid1: self.take(2) == 1,
            app: self.pid(),
            app_alive: self.take(2) == 1,
            spare_group: self.take(2) == 1,
            children_left: self.take(2) == 1,
        };
        match self.take(2) {
            0 => Errand::Ask {
                signal: self.signal(),
                at,
            },
            _ => Errand::Kill {
                cause: KillCause::Deadline,
                at,
            },
        }
    }

    fn event(&mut self) -> Event {
        match self.take(19) {
            0..=3 => Event::Signal {
                signal: self.signal(),
                sender: match self.take(3) {
                    0 => None,
                    _ => Some(self.pid()),
                },
            },
            4..=6 => Event::Reaped {
                pid: self.pid(),
                status: self.status(),
                memory: (self.take(3) == 0).then(|| Memory {
                    oom_kills: self.take(4) as u64,
                    limit: None,
                    peak: Some(1),
                }),
            },
            7 => Event::Suspended { pid: self.pid() },
            14 => Event::Resumed { pid: self.pid() },
            8 | 9 => Event::ReapDone {
                children_left: self.take(2) == 1,
            },
            10 => Event::HookStarted {
                kind: self.hook_kind(),
                pid: self.pid(),
            },
            11 => Event::HookFailed {
                kind: self.hook_kind(),
                reason: "x".into(),
            },
            13 => Event::HookAnswered {
                pid: self.pid(),
                outcome: match self.take(3) {
                    0 => Outcome::Failed("refused".into()),
                    _ => Outcome::Status(self.take(1000) as u16),
                },
            },
            12 => Event::Census {
                errand: self.errand(),
                census: self.census(),
            },
            15 => Event::Traffic(match self.take(3) {
                0 => Err("gone".into()),
                _ => Ok(Traffic {
                    listeners: self.take(3) as u32,
                    arrivals: self.take(1 << 20) as u64,
                    connections: 0,
                }),
            }),
            _ => Event::Timer,
        }
    }

    fn when(&mut self) -> When {
        match self.take(11) {
            0 | 1 => When::Same,
            2..=5 => When::Later(self.take(10_000) as u64),
            6 => When::Earlier(self.take(10_000) as u64),
            7..=9 => When::AtTimeout,
            _ => When::Anytime(self.take(u128::from(CENTURY)) as u64),
        }
    }
}

fn events(max: usize) -> impl Strategy<Value = Vec<(When, Event)>> {
    prop::collection::vec(any::<u128>(), 0..max).prop_map(|seeds| {
        seeds
            .into_iter()
            .map(|seed| {
                let mut d = Digits(seed);
                let event = d.event();
                (d.when(), event)
            })
            .collect()
    })
}

/// Feeds `events` to a machine with `policy`, in the loop usher runs, and
/// checks, after every event, that it emitted at most one Exit, nothing
/// after it, and nothing odd.
fn run_machine(
    policy: Policy,
    at: Start,
    start: Duration,
    events: &[(When, Event)],
) -> Result<(), TestCaseError> {
    let mut s = Sim::at_start(policy, at);
    s.l.world.now = start;
    let mut exit: Option<i32> = None;
    let mut actions = s.take();
    for (i, (when, event)) in events.iter().enumerate() {
        for action in actions.drain(..) {
            prop_assert!(exit.is_none(), "event {i}: {action:?} after Exit({exit:?})");
            match action {
                Action::Exit(ending) => {
                    prop_assert!(
                        (0..=255).contains(&ending.code),
                        "exit code {}",
                        ending.code
                    );
                    exit = Some(ending.code);
                }
                Action::Send { to, .. } => {
                    prop_assert!(
                        to != Target::Everyone || at.pid1(),
                        "kill(-1) outside a namespace"
                    );
                }
                _ => {}
            }
        }
        prop_assert_eq!(s.m().exited(), exit.is_some(), "exited() after event {}", i);
        if exit.is_some() {
            prop_assert_eq!(s.m().poll_timeout(), None, "a timer after Exit");
        }
        let now = s.now();
        s.l.world.now = match when {
            When::Same => now,
            When::Later(ms) => now + Duration::from_millis(*ms),
            When::Earlier(ms) => now.saturating_sub(Duration::from_millis(*ms)),
            When::AtTimeout => s.m().poll_timeout().unwrap_or(now),
            When::Anytime(secs) => Duration::from_secs(*secs),
        };
        actions = s.feed(event.clone());
    }
    Ok(())
}

fn start() -> impl Strategy<Value = Start> {
    (
        prop::sample::select(vec![1, 2, CHILD + 1]),
        any::<bool>(),
        prop::option::of(0u64..3),
    )
        .prop_map(|(me, terminal, oom)| Start {
            app: CHILD,
            me,
            terminal,
            memory: oom.map(|oom_kills| Memory {
                oom_kills,
                limit: None,
                peak: None,
            }),
        })
}

proptest! {
    #![proptest_config(config())]

    #[test]
    fn cli_parse_never_panics(
        args in prop::collection::vec(arg(), 0..10),
        env in env(),
    ) {
        parse_checked(&args, &env)?;
    }

    #[test]
    fn machine_never_panics_nor_acts_after_exit(
        policy in policy(),
        at in start(),
        start in (0..CENTURY).prop_map(Duration::from_secs),
        events in events(60),
    ) {
        run_machine(policy, at, start, &events)?;
    }

    #[test]
    fn whatever_the_cli_accepts_drives_a_machine(
        args in prop::collection::vec(arg(), 0..8),
        env in env(),
        at in start(),
        events in events(40),
    ) {
        // Half the time, a valid command after the flags so more runs parse.
        let mut args = args;
        args.push(OsString::from("app"));
        if let Some(cfg) = parse_checked(&args, &env)? {
            run_machine(cfg.policy, at, Duration::from_secs(1), &events)?;
        }
    }
}

/// The edges the random search may take long to hit, spelled out.
#[test]
fn edge_cases_do_not_panic() {
    let mut longest = Policy {
        drain: DrainSpec::Range {
            min: cli::LONGEST,
            max: cli::LONGEST,
        },
        grace: Some(cli::LONGEST),
        stop_on: Vec::new(),
        ..Policy::default()
    };
    for kind in HookKind::ALL {
        longest.hooks[kind as usize] = Some(HookAction::Command(vec!["x".into()]));
    }
    let at = Duration::from_secs(CENTURY);
    let term = Event::Signal {
        signal: Signal::TERM,
        sender: None,
    };
    let storm: Vec<(When, Event)> = [
        term.clone(),
        Event::Reaped {
            pid: CHILD,
            status: Status::Exited(-1),
            memory: Some(Memory {
                oom_kills: u64::MAX,
                limit: Some(u64::MAX),
                peak: None,
            }),
        },
        Event::Reaped {
            pid: CHILD,
            status: Status::Exited(i32::MAX),
            memory: None,
        },
        Event::Suspended { pid: CHILD },
        Event::HookStarted {
            kind: HookKind::PreStop,
            pid: CHILD,
        },
        Event::HookFailed {
            kind: HookKind::PreStop,
            reason: String::new(),
        },
        Event::Traffic(Ok(Traffic {
            listeners: u32::MAX,
            arrivals: u64::MAX,
            connections: 0,
        })),
        Event::ReapDone {
            children_left: true,
        },
        Event::Timer,
        Event::ReapDone {
            children_left: false,
        },
        term,
        Event::Timer,
    ]
    .into_iter()
    .map(|e| (When::AtTimeout, e))
    .collect();
    for me in [1, 2] {
        let start = Start {
            app: CHILD,
            me,
            terminal: true,
            memory: Some(Memory::default()),
        };
        run_machine(longest.clone(), start, at, &storm).unwrap();
        run_machine(Policy::default(), start, Duration::ZERO, &storm).unwrap();
    }
    let odd: Vec<OsString> = ["--drain=365d", "--grace-period", "365d", "--", ""]
        .into_iter()
        .map(OsString::from)
        .collect();
    parse_checked(&odd, &HashMap::new()).unwrap();
    for bad in [
        "RTMIN+2147483647",
        "RTMAX-2147483648",
        "SIGRTMIN+99999999999",
    ] {
        let args: Vec<OsString> = ["-p", bad, "app"].into_iter().map(OsString::from).collect();
        let accepted = parse_checked(&args, &HashMap::new()).unwrap();
        assert!(accepted.is_none(), "{bad}");
    }
}
