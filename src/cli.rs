//! The command line and its environment variables, turned into a [`Config`] (or a `--check`).
//!
//! One table, [`OPTIONS`], defines every option once: its flags, what each
//! does to the [`Settings`] (its own parser, right in its row), the variable
//! it overrides, and its help. Parsing, the list of variables usher knows,
//! `--help`, the man page and the fuzz lists all derive from it.
//!
//! Hand-written rather than clap: usher's grammar is small and fixed (tini's
//! and dumb-init's flags, a `--`, then the app's words untouched), and clap
//! would more than double the binary. See docs/design.md.

use alloc::boxed::Box;
use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use core::time::Duration;

use crate::hook::{self, HookAction, HookKind, Request};
use crate::http::Patience;
use crate::log::{Format, Level, Logger};
use crate::machine::{DrainSpec, Policy};
use crate::signals::{Rewrite, Signal};
use crate::{codes, duration};

/// Everything usher was asked to do as an init.
#[derive(Clone, Debug)]
pub struct Config {
    pub command: Vec<Vec<u8>>,
    pub subreaper: bool,
    pub pdeathsig: Option<Signal>,
    pub policy: Policy,
    pub log: Logger,
    pub termination_log: TerminationLog,
}

/// Where the termination message goes.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
pub enum TerminationLog {
    /// `/dev/termination-log`, only if it exists (the kubelet makes it).
    #[default]
    Default,
    /// A path given: created if missing (checked at start: not a directory,
    /// in a directory that exists).
    Path(Vec<u8>),
    /// An empty value: none.
    Off,
}

/// `usher --check URL`: one request, its verdict as the exit code.
#[derive(Clone, Debug)]
pub struct Check {
    pub request: Request,
    /// Also fail once the usher running the container began its shutdown.
    pub ready: bool,
    pub patience: Patience,
    /// For an HTTP hook's child: write the outcome to this fd, say nothing.
    pub answer_fd: Option<i32>,
    pub log: Logger,
}

#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    Check(Box<Check>),
    Help,
    Version,
    License,
}

/// `usher -l`, as tini prints its own: the license usher is offered under.
pub const LICENSE: &str = concat!(
    "usher is offered under the MIT license or the Apache License 2.0, at your\n",
    "option (SPDX: MIT OR Apache-2.0). The MIT license:\n\n",
    include_str!("../LICENSE-MIT")
);

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// A command line usher cannot run: the message, and the log format asked
/// for (as far as the options before the mistake and the environment tell),
/// so that the message can follow it.
#[derive(Debug)]
pub struct Usage {
    pub message: String,
    pub format: Format,
}

/// A value's parser: the settings, the value, and the flag or variable it
/// came from (for messages).
type Read = fn(&mut Settings, &str, &str) -> Result<(), String>;

/// What a flag does.
#[derive(Clone, Copy)]
pub enum Takes {
    /// No value.
    Switch(fn(&mut Settings)),
    /// A value, named in the help (`DURATION`).
    Value(&'static str, Read),
    /// Ends the parse with this answer (`--help`, `--version`, `--license`).
    Answer(fn() -> Parsed),
}

/// An environment variable that sets an option when no flag for it is given.
pub struct Var {
    pub name: &'static str,
    /// An example value, for the help.
    pub example: &'static str,
    /// The separator of a list of values (each read in turn).
    pub split: Option<char>,
    pub read: Read,
    /// An empty value means something (rather than "unset").
    pub empty_counts: bool,
    /// tini's and dumb-init's variables for the same option.
    pub peers: &'static [Peer],
    /// Read by `usher --check` too (the others are an init's alone: a
    /// health check or an HTTP hook's child must not trip on them).
    pub check: bool,
}

/// A peer init's variable, read when usher's own is not set: `means` turns
/// its value into usher's (as that init reads it), or `None` where it means
/// nothing to that init either.
pub struct Peer {
    pub var: &'static str,
    pub means: fn(&str) -> Option<&'static str>,
    /// What `means` does, in words (the man page).
    pub says: &'static str,
}

/// One row of the option table: a flag (short, long or both).
pub struct Opt {
    pub short: Option<char>,
    pub long: Option<&'static str>,
    pub takes: Takes,
    /// The variable this flag overrides (shared by the flags of one option:
    /// `-c` and `-g`, `-v` and `-q`); the first row naming it owns it.
    pub var: Option<&'static Var>,
    /// Help lines; none for a flag another row's help covers, or an internal one.
    pub help: &'static [&'static str],
}

impl Opt {
    /// `--long`, or `-s` for a flag without a long form.
    pub fn name(&self) -> String {
        match (self.long, self.short) {
            (Some(l), _) => format!("--{l}"),
            (None, Some(s)) => format!("-{s}"),
            (None, None) => String::new(),
        }
    }

    /// The value's name in the help, `None` for a switch.
    pub fn value(&self) -> Option<&'static str> {
        match self.takes {
            Takes::Value(name, _) => Some(name),
            _ => None,
        }
    }
}

/// The settings as the flags and variables give them, before the checks
/// between them.
#[derive(Default)]
pub struct Settings {
    subreaper: bool,
    pdeathsig: Option<Signal>,
    policy: Policy,
    /// Where the drain and the grace period came from, for messages.
    drain_from: Option<String>,
    grace_from: Option<String>,
    /// `-v`/`-q` steps from info; the variable's level.
    steps: Option<i32>,
    level: Option<Level>,
    format: Option<Format>,
    termination_log: TerminationLog,
    headers: Vec<String>,
    check: bool,
    ready: bool,
    check_timeout: Option<Duration>,
    answer_fd: Option<i32>,
}

// ------------------------------------------------------------- the table --

static SUBREAPER: Var = Var {
    peers: &[Peer {
        var: "TINI_SUBREAPER",
        means: present,
        says: "set, whatever its value: as USHER_SUBREAPER=1 (-s)",
    }],
    ..var("USHER_SUBREAPER", "1", |s, v, n| {
        s.subreaper = boolean(n, v)?;
        Ok(())
    })
};
static SINGLE_CHILD: Var = Var {
    peers: &[
        Peer {
            var: "TINI_KILL_PROCESS_GROUP",
            means: |_| Some("0"),
            says: "set, whatever its value: as USHER_SINGLE_CHILD=0 (signals to the app's group, usher's default)",
        },
        // dumb-init's single-child mode: no new session, signals to the child.
        Peer {
            var: "DUMB_INIT_SETSID",
            means: |v| (v == "0").then_some("1"),
            says: "0: as USHER_SINGLE_CHILD=1 (-c); any other value: ignored",
        },
    ],
    ..var("USHER_SINGLE_CHILD", "1", |s, v, n| {
        s.policy.single_child = boolean(n, v)?;
        Ok(())
    })
};
static REWRITE: Var = Var {
    split: Some(','),
    ..var("USHER_REWRITE", "TERM:QUIT,HUP:0", add_rewrite)
};
static PDEATHSIG: Var = var("USHER_PDEATHSIG", "KILL", |s, v, n| {
    s.pdeathsig = Some(Signal::parse(v).map_err(|e| format!("{n}: {e}"))?);
    Ok(())
});
static REMAP_EXIT: Var = Var {
    split: Some(','),
    ..var("USHER_REMAP_EXIT", "143,130", |s, v, n| {
        s.policy.remap_exit.push(exit_code(n, v)?);
        Ok(())
    })
};
static DRAIN: Var = var("USHER_DRAIN", "5s", set_drain);
static GRACE: Var = var("USHER_GRACE_PERIOD", "25s", |s, v, n| {
    s.policy.grace = Some(parse_duration(n, v)?);
    s.grace_from = Some(n.to_string());
    Ok(())
});
static STOP_ON: Var = var("USHER_STOP_ON", "QUIT", |s, v, n| {
    s.policy.stop_on = parse_stop_on(n, v)?;
    Ok(())
});
static PRE_STOP: Var = var("USHER_PRE_STOP", "'/app/deregister'", |s, v, n| {
    set_hook(s, HookKind::PreStop, v, n)
});
static POST_START: Var = var("USHER_POST_START", "http://127.0.0.1/warm", |s, v, n| {
    set_hook(s, HookKind::PostStart, v, n)
});
static POST_STOP: Var = var("USHER_POST_STOP", "/app/cleanup", |s, v, n| {
    set_hook(s, HookKind::PostStop, v, n)
});
static HEADERS: Var = Var {
    split: Some('\n'),
    check: true,
    ..var("USHER_HTTP_HEADERS", "'X-Token: abc'", add_header)
};
static LOG: Var = Var {
    check: true,
    peers: &[
        Peer {
            var: "TINI_VERBOSITY",
            means: tini_verbosity,
            says: "0, 1, 2, 3, more: as USHER_LOG=error, warn, info, debug, trace",
        },
        Peer {
            var: "DUMB_INIT_DEBUG",
            means: |v| (v == "1").then_some("debug"),
            says: "1: as USHER_LOG=debug; any other value: ignored",
        },
    ],
    ..var("USHER_LOG", "error|warn|info|debug|trace", |s, v, n| {
        let level = Level::parse(v)
            .ok_or_else(|| format!("{n}={v:?} is not one of error, warn, info, debug, trace"))?;
        s.level = Some(level);
        Ok(())
    })
};
static LOG_FORMAT: Var = Var {
    check: true,
    ..var("USHER_LOG_FORMAT", "json", |s, v, n| {
        s.format = Some(log_format(n, v)?);
        Ok(())
    })
};
static WARN_ON_REAP: Var = var("USHER_WARN_ON_REAP", "1", |s, v, n| {
    s.policy.warn_on_reap = boolean(n, v)?;
    Ok(())
});
static TERMINATION_LOG: Var = Var {
    empty_counts: true,
    ..var("USHER_TERMINATION_LOG", "/tmp/why", |s, v, _| {
        s.termination_log = match v.trim() {
            "" => TerminationLog::Off,
            _ => TerminationLog::Path(v.as_bytes().to_vec()),
        };
        Ok(())
    })
};

const fn var(name: &'static str, example: &'static str, read: Read) -> Var {
    Var {
        name,
        example,
        split: None,
        read,
        empty_counts: false,
        peers: &[],
        check: false,
    }
}

/// Every option usher takes, in the order `--help` lists them.
pub static OPTIONS: &[Opt] = &[
    Opt {
        short: Some('s'),
        long: Some("subreaper"),
        takes: Takes::Switch(|s| s.subreaper = true),
        var: Some(&SUBREAPER),
        help: &["reap orphans when not PID 1 (child subreaper)"],
    },
    Opt {
        short: Some('c'),
        long: Some("single-child"),
        takes: Takes::Switch(|s| s.policy.single_child = true),
        var: Some(&SINGLE_CHILD),
        help: &[
            "forward signals to the child only, not its",
            "process group",
        ],
    },
    Opt {
        short: Some('g'),
        long: None,
        takes: Takes::Switch(|s| s.policy.single_child = false),
        var: Some(&SINGLE_CHILD),
        help: &[
            "forward to the child's process group (tini",
            "compatibility; this is the default)",
        ],
    },
    Opt {
        short: Some('r'),
        long: Some("rewrite"),
        takes: Takes::Value("FROM:TO", add_rewrite),
        var: Some(&REWRITE),
        help: &["forward TO instead of FROM; TO=0 drops FROM;", "repeatable"],
    },
    Opt {
        short: Some('p'),
        long: Some("pdeathsig"),
        takes: Takes::Value("SIG", PDEATHSIG.read),
        var: Some(&PDEATHSIG),
        help: &["signal usher gets when its parent dies"],
    },
    Opt {
        short: Some('e'),
        long: Some("remap-exit"),
        takes: Takes::Value("CODE", REMAP_EXIT.read),
        var: Some(&REMAP_EXIT),
        help: &["report the app's exit code CODE as 0;", "repeatable"],
    },
    Opt {
        short: None,
        long: Some("drain"),
        takes: Takes::Value("DUR|MIN..MAX", set_drain),
        var: Some(&DRAIN),
        help: &[
            "after the first stop signal, wait this long",
            "before forwarding it (default 0s); MIN..MAX:",
            "at least MIN, at most MAX, ending once the",
            "app's inbound traffic has stopped",
        ],
    },
    Opt {
        short: None,
        long: Some("grace-period"),
        takes: Takes::Value("DUR", GRACE.read),
        var: Some(&GRACE),
        help: &[
            "from the first stop signal, SIGKILL whatever",
            "is left after this long (default: never)",
        ],
    },
    Opt {
        short: None,
        long: Some("stop-on"),
        takes: Takes::Value("SIGNALS", STOP_ON.read),
        var: Some(&STOP_ON),
        help: &[
            "signals that start the shutdown sequence",
            "(default TERM,INT)",
        ],
    },
    Opt {
        short: None,
        long: Some("pre-stop"),
        takes: Takes::Value("HOOK", PRE_STOP.read),
        var: Some(&PRE_STOP),
        help: &[
            "when the shutdown starts, run HOOK: a command",
            "(split into words like a shell, no shell) or",
            "[METHOD ]http://HOST[:PORT]/PATH; the stop",
            "signal waits for it, but goes out at the",
            "latest min(2s, grace/2) before the deadline",
        ],
    },
    Opt {
        short: None,
        long: Some("post-start"),
        takes: Takes::Value("HOOK", POST_START.read),
        var: Some(&POST_START),
        help: &[
            "run HOOK alongside the app once it started;",
            "if it fails, stop the app and exit 124",
        ],
    },
    Opt {
        short: None,
        long: Some("post-stop"),
        takes: Takes::Value("HOOK", POST_STOP.read),
        var: Some(&POST_STOP),
        help: &[
            "run HOOK once the app and all it left are",
            "gone, before usher exits; within the deadline",
            "(or 5s without one); a failure is a warning",
        ],
    },
    Opt {
        short: None,
        long: Some("http-header"),
        takes: Takes::Value("HEADER", add_header),
        var: Some(&HEADERS),
        help: &[
            "send HEADER ('Name: value') with every HTTP",
            "hook and --check; repeatable (the variable:",
            "one header per line)",
        ],
    },
    Opt {
        short: None,
        long: Some("termination-log"),
        takes: Takes::Value("PATH", TERMINATION_LOG.read),
        var: Some(&TERMINATION_LOG),
        help: &[
            "write why usher exited to PATH (default",
            "/dev/termination-log, only if it exists);",
            "an empty value: nowhere",
        ],
    },
    Opt {
        short: Some('v'),
        long: Some("verbose"),
        takes: Takes::Switch(|s| s.steps = Some(s.steps.unwrap_or(0) + 1)),
        var: Some(&LOG),
        help: &["more log (repeatable); -q, --quiet: less"],
    },
    Opt {
        short: Some('q'),
        long: Some("quiet"),
        takes: Takes::Switch(|s| s.steps = Some(s.steps.unwrap_or(0) - 1)),
        var: Some(&LOG),
        help: &[],
    },
    Opt {
        short: None,
        long: Some("log-format"),
        takes: Takes::Value("FORMAT", LOG_FORMAT.read),
        var: Some(&LOG_FORMAT),
        help: &["text or json (one object per line)"],
    },
    Opt {
        short: Some('w'),
        long: Some("warn-on-reap"),
        takes: Takes::Switch(|s| s.policy.warn_on_reap = true),
        var: Some(&WARN_ON_REAP),
        help: &["warn each time an orphan is reaped"],
    },
    Opt {
        short: None,
        long: Some("check"),
        takes: Takes::Switch(|s| s.check = true),
        var: None,
        help: &[
            "not an init: usher --check [OPTIONS] URL makes",
            "one request; exit 0 for a status 200-399,",
            "1 otherwise (a health check without curl)",
        ],
    },
    Opt {
        short: None,
        long: Some("ready"),
        takes: Takes::Switch(|s| s.ready = true),
        var: None,
        help: &[
            "with --check: also fail once the usher running",
            "the container began its shutdown",
        ],
    },
    Opt {
        short: None,
        long: Some("check-timeout"),
        takes: Takes::Value("DUR", |s, v, n| {
            let timeout = parse_duration(n, v)?;
            if timeout.is_zero() {
                return Err(format!("{n} must be longer than 0s (e.g. 2s)"));
            }
            s.check_timeout = Some(timeout);
            Ok(())
        }),
        var: None,
        help: &[
            "with --check: the bound on the connection and",
            "the answer together (default 2s)",
        ],
    },
    // Internal: the child usher starts for an HTTP hook writes the outcome there.
    Opt {
        short: None,
        long: Some("answer-fd"),
        takes: Takes::Value("FD", |s, v, n| {
            let fd = v.trim().parse().ok().filter(|fd| *fd >= 3);
            let why = || format!("{n} {v:?} is not a descriptor number (3 or more)");
            s.answer_fd = Some(fd.ok_or_else(why)?);
            Ok(())
        }),
        var: None,
        help: &[],
    },
    Opt {
        short: Some('h'),
        long: Some("help"),
        takes: Takes::Answer(|| Parsed::Help),
        var: None,
        help: &["this help"],
    },
    Opt {
        short: Some('V'),
        long: Some("version"),
        takes: Takes::Answer(|| Parsed::Version),
        var: None,
        help: &["usher's version"],
    },
    Opt {
        short: Some('l'),
        long: Some("license"),
        takes: Takes::Answer(|| Parsed::License),
        var: None,
        help: &["the license (tini's -l)"],
    },
];

/// tini reads its switches by presence, whatever the value.
fn present(_: &str) -> Option<&'static str> {
    Some("1")
}

/// tini's `TINI_VERBOSITY` (atoi: 1 is its default, warnings).
fn tini_verbosity(v: &str) -> Option<&'static str> {
    let digits: String = v.trim().chars().take_while(char::is_ascii_digit).collect();
    Some(match digits.parse::<u32>().unwrap_or(0) {
        0 => "error",
        1 => "warn",
        2 => "info",
        3 => "debug",
        _ => "trace",
    })
}

/// The variables of the table, each once, in table order.
pub fn vars() -> Vec<&'static Var> {
    let mut out: Vec<&'static Var> = Vec::new();
    for var in OPTIONS.iter().filter_map(|o| o.var) {
        if !out.iter().any(|v| v.name == var.name) {
            out.push(var);
        }
    }
    out
}

/// Every `USHER_*` variable usher reads; another is most likely a typo.
pub fn env_vars() -> Vec<&'static str> {
    vars().iter().map(|v| v.name).collect()
}

/// `USHER_*` variables in `names` that usher does not know.
pub fn unknown_vars(names: impl Iterator<Item = Vec<u8>>) -> Vec<String> {
    let known = env_vars();
    names
        .filter_map(|n| String::from_utf8(n).ok())
        .filter(|n| n.starts_with("USHER_") && !known.contains(&n.as_str()))
        .collect()
}

/// Whether `opt` is the row that shows its variable in the help.
pub fn owns_var(opt: &Opt) -> bool {
    let first = |v: &Var| {
        OPTIONS
            .iter()
            .position(|o| o.var.is_some_and(|w| w.name == v.name))
    };
    opt.var
        .is_some_and(|v| first(v).is_some_and(|i| core::ptr::eq(&OPTIONS[i], opt)))
}

const HELP_HEAD: &str = "\
usher — a tiny PID 1 for containers: starts your app, reaps zombies,
forwards signals, and shuts the app down gracefully.

Usage: usher [OPTIONS] [--] COMMAND [ARGS...]
       usher --check [--ready] [OPTIONS] URL

Everything from COMMAND on is the app's; usher reads nothing after it.
Every option can also be set by its environment variable; the flag wins.
As an engine's --init (docker/podman run --init), usher is started as
INIT -- COMMAND: set its options through the variables.

Options:
";

const HELP_TAIL: &str = "
Signals are names with or without SIG (TERM, SIGHUP, RTMIN+2) or numbers.
Durations carry a unit: 500ms, 15s, 1m30s.

In a Dockerfile:
  COPY usher /usr/local/bin/usher
  ENTRYPOINT [\"/usr/local/bin/usher\", \"--drain\", \"5s\", \"--grace-period\", \"25s\", \"--\"]
  CMD [\"/app/server\", \"--port\", \"8080\"]
  HEALTHCHECK CMD [\"/usr/local/bin/usher\", \"--check\", \"http://127.0.0.1:8080/healthz\"]
";

/// `usher --help`, built from [`OPTIONS`] and the exit codes' table.
pub fn help() -> String {
    let mut out = String::from(HELP_HEAD);
    for opt in OPTIONS.iter().filter(|o| !o.help.is_empty()) {
        let mut left = match (opt.short, opt.long) {
            (Some(s), Some(l)) => format!("  -{s}, --{l}"),
            (Some(s), None) => format!("  -{s}"),
            (None, Some(l)) => format!("      --{l}"),
            (None, None) => continue,
        };
        if let Some(v) = opt.value() {
            left = format!("{left} {v}");
        }
        if left.chars().count() >= 28 {
            out.push_str(&left);
            out.push('\n');
            left = String::new();
        }
        let last = opt.help.len() - 1;
        for (i, text) in opt.help.iter().enumerate() {
            let mut line = format!("{left:<28}{text}");
            if let (true, true, Some(var)) = (i == last, owns_var(opt), opt.var) {
                let at = line.chars().count().max(72) + 3;
                line = format!("{line:<at$}{}={}", var.name, var.example);
            }
            out.push_str(line.trim_end());
            out.push('\n');
            left = String::new();
        }
    }
    out.push_str("\nAlso read, when usher's own variable is not set (tini's and dumb-init's):\n ");
    for var in vars() {
        for peer in var.peers {
            out.push(' ');
            out.push_str(peer.var);
        }
    }
    out.push('\n');
    out.push_str(HELP_TAIL);
    out.push('\n');
    out.push_str(&wrap(&format!("Exit status: {}.", codes::prose()), 72));
    out.push('\n');
    out
}

/// `text` broken into lines of at most `width` characters.
fn wrap(text: &str, width: usize) -> String {
    let mut out = String::new();
    let mut line = 0;
    for word in text.split(' ') {
        if line > 0 && line + 1 + word.chars().count() > width {
            out.push('\n');
            line = 0;
        } else if line > 0 {
            out.push(' ');
            line += 1;
        }
        out.push_str(word);
        line += word.chars().count();
    }
    out
}

// ------------------------------------------------------------- parsing --

/// Parses `args` (without the program name) with `env` looking up variables.
pub fn parse<I, E>(args: I, env: E) -> Result<Parsed, Usage>
where
    I: IntoIterator<Item = Vec<u8>>,
    E: Fn(&str) -> Option<Vec<u8>>,
{
    let mut s = Settings::default();
    let mut given: Vec<&'static Opt> = Vec::new();
    let mut args = args.into_iter();
    let usage = |s: &Settings, message: String| Usage {
        format: s.usage_format(&env),
        message,
    };
    let words = match scan(&mut s, &mut given, &mut args) {
        Ok(Scan::Words(first)) => first.into_iter().chain(args).collect::<Vec<_>>(),
        Ok(Scan::Answer(parsed)) => return Ok(parsed),
        Err(message) => return Err(usage(&s, message)),
    };
    let parsed = check_only(&s, &given)
        .and_then(|()| read_vars(&mut s, &given, &env))
        .and_then(|()| s.finish(words));
    parsed.map_err(|message| usage(&s, message))
}

/// With `--check`, only the options a health check takes.
fn check_only(s: &Settings, given: &[&'static Opt]) -> Result<(), String> {
    let for_check = |o: &Opt| match o.var {
        Some(var) => var.check,
        None => matches!(
            o.long,
            Some("check" | "ready" | "check-timeout" | "answer-fd")
        ),
    };
    match given.iter().find(|o| !for_check(o)) {
        Some(o) if s.check => Err(format!(
            "{} is an init's option, not --check's (usher --check takes --ready, --check-timeout, --http-header, -v, -q, --log-format)",
            o.long.map_or_else(|| format!("-{}", o.short.unwrap_or('?')), |l| format!("--{l}"))
        )),
        _ => Ok(()),
    }
}

/// How the scan of usher's own arguments ended.
enum Scan {
    /// At the first word that is not usher's (`None` after a `--` with
    /// nothing after it).
    Words(Option<Vec<u8>>),
    /// `--help`, `--version`, `--license`: nothing else matters.
    Answer(Parsed),
}

type Args<'a> = &'a mut dyn Iterator<Item = Vec<u8>>;

/// Reads usher's flags up to the first word that is not one, applying each.
fn scan(s: &mut Settings, given: &mut Vec<&'static Opt>, args: Args) -> Result<Scan, String> {
    while let Some(arg) = args.next() {
        let Ok(text) = core::str::from_utf8(&arg) else {
            if arg.starts_with(b"-") {
                return Err(format!("option {} is not valid UTF-8", quoted(&arg)));
            }
            return Ok(Scan::Words(Some(arg)));
        };
        if text == "--" {
            return Ok(Scan::Words(args.next()));
        }
        let answer = if let Some(long) = text.strip_prefix("--") {
            long_flag(s, given, long, args)?
        } else if text.len() > 1 && text.starts_with('-') {
            short_flags(s, given, &text[1..], args)?
        } else {
            return Ok(Scan::Words(Some(arg)));
        };
        if let Some(parsed) = answer {
            return Ok(Scan::Answer(parsed));
        }
    }
    Ok(Scan::Words(None))
}

/// One `--name` or `--name=value`.
fn long_flag(
    s: &mut Settings,
    given: &mut Vec<&'static Opt>,
    long: &str,
    args: Args,
) -> Result<Option<Parsed>, String> {
    let (name, inline) = match long.split_once('=') {
        Some((n, v)) => (n, Some(v.to_string())),
        None => (long, None),
    };
    let Some(opt) = OPTIONS.iter().find(|o| o.long == Some(name)) else {
        return Err(format!(
            "unknown option {:?} (see usher --help)",
            format!("--{name}")
        ));
    };
    let flag = format!("--{name}");
    let value = match (opt.takes, inline) {
        (Takes::Value(..), Some(v)) => Some(v),
        (Takes::Value(..), None) => Some(value_of(&flag, args)?),
        (_, Some(_)) => return Err(format!("option {flag} takes no value")),
        (_, None) => None,
    };
    apply(s, given, opt, value.as_deref())
}

/// A bundle of short flags like `-sv` or `-pKILL`.
fn short_flags(
    s: &mut Settings,
    given: &mut Vec<&'static Opt>,
    bundle: &str,
    args: Args,
) -> Result<Option<Parsed>, String> {
    for (i, c) in bundle.char_indices() {
        let Some(opt) = OPTIONS.iter().find(|o| o.short == Some(c)) else {
            let flag = format!("-{bundle}");
            return Err(match bundle.len() {
                1 => format!("unknown option {flag:?} (see usher --help)"),
                _ => format!("unknown option {c:?} in {flag:?} (see usher --help)"),
            });
        };
        if let Takes::Value(..) = opt.takes {
            // The rest of the bundle is the value, or else the next argument.
            let rest = &bundle[i + c.len_utf8()..];
            let value = match rest {
                "" => value_of(&format!("-{c}"), args)?,
                _ => rest.to_string(),
            };
            return apply(s, given, opt, Some(&value));
        }
        if let Some(parsed) = apply(s, given, opt, None)? {
            return Ok(Some(parsed));
        }
    }
    Ok(None)
}

/// What one flag does; messages name the option by its long name.
fn apply(
    s: &mut Settings,
    given: &mut Vec<&'static Opt>,
    opt: &'static Opt,
    value: Option<&str>,
) -> Result<Option<Parsed>, String> {
    given.push(opt);
    match (opt.takes, value) {
        (Takes::Switch(set), _) => set(s),
        (Takes::Value(_, read), Some(v)) => read(s, v, &opt.name())?,
        (Takes::Value(..), None) => {}
        (Takes::Answer(answer), _) => return Ok(Some(answer())),
    }
    Ok(None)
}

fn value_of(flag: &str, args: Args) -> Result<String, String> {
    let v = args
        .next()
        .ok_or_else(|| format!("option {flag} needs a value"))?;
    String::from_utf8(v).map_err(|e| {
        let v = quoted(e.as_bytes());
        format!("the value of {flag}, {v}, is not valid UTF-8")
    })
}

/// Every variable no given flag overrides: usher's own, else a peer's.
fn read_vars(
    s: &mut Settings,
    given: &[&'static Opt],
    env: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Result<(), String> {
    let checking = s.check;
    for var in vars().into_iter().filter(|v| v.check || !checking) {
        if given
            .iter()
            .any(|o| o.var.is_some_and(|v| v.name == var.name))
        {
            continue;
        }
        if let Some(value) = env_value(env, var)? {
            let values: Vec<&str> = match var.split {
                Some(sep) => value
                    .split(sep)
                    .map(str::trim)
                    .filter(|v| !v.is_empty())
                    .collect(),
                None => vec![value.as_str()],
            };
            for v in values {
                (var.read)(s, v, var.name)?;
            }
        } else if let Some((value, peer)) = peer_value(var, env) {
            (var.read)(s, value, peer)?;
        }
    }
    Ok(())
}

/// A variable's value; an empty one is an unset one (`ENV USHER_DRAIN=` in a
/// Dockerfile, or `-e USHER_DRAIN=` to clear an image's setting), but for a
/// variable whose empty value means something.
fn env_value(env: &dyn Fn(&str) -> Option<Vec<u8>>, var: &Var) -> Result<Option<String>, String> {
    let name = var.name;
    env(name)
        .filter(|v| var.empty_counts || !v.trim_ascii().is_empty())
        .map(|v| {
            String::from_utf8(v)
                .map_err(|e| format!("{name}={} is not valid UTF-8", quoted(e.as_bytes())))
        })
        .transpose()
}

/// The first of `var`'s peer variables that is set and means something.
fn peer_value(
    var: &Var,
    env: &dyn Fn(&str) -> Option<Vec<u8>>,
) -> Option<(&'static str, &'static str)> {
    var.peers.iter().find_map(|peer| {
        let value = String::from_utf8(env(peer.var)?).ok()?;
        Some(((peer.means)(&value)?, peer.var))
    })
}

impl Settings {
    /// The log format for a usage error: the flag's if one was given and
    /// valid, else the variable's if valid, else text.
    fn usage_format(&self, env: &dyn Fn(&str) -> Option<Vec<u8>>) -> Format {
        let from_env = || log_format("", &String::from_utf8(env(LOG_FORMAT.name)?).ok()?).ok();
        self.format.or_else(from_env).unwrap_or(Format::Text)
    }

    fn logger(&self) -> Logger {
        let level = match self.steps {
            Some(steps) => Level::Info.shifted(steps),
            None => self.level.unwrap_or(Level::Info),
        };
        Logger {
            level,
            format: self.format.unwrap_or(Format::Text),
        }
    }

    /// The checks between settings, and what the words after the flags are.
    fn finish(&mut self, words: Vec<Vec<u8>>) -> Result<Parsed, String> {
        for hook in self.policy.hooks.iter_mut().flatten() {
            if let HookAction::Http(req) = hook {
                req.headers.clone_from(&self.headers);
            }
        }
        if self.check {
            return self.to_check(words).map(|c| Parsed::Check(Box::new(c)));
        }
        if self.ready || self.check_timeout.is_some() {
            let flag = if self.ready {
                "--ready"
            } else {
                "--check-timeout"
            };
            return Err(format!(
                "{flag} goes with --check URL (a health check), not with a command"
            ));
        }
        match words.first() {
            None => {
                return Err(
                    "no command given: usage is usher [OPTIONS] [--] COMMAND [ARGS...]".into(),
                )
            }
            Some(first) if first.is_empty() => return Err("the command is an empty string".into()),
            Some(_) => {}
        }
        let mut policy = core::mem::take(&mut self.policy);
        let log = self.logger();
        policy.note_forwards = log.enabled(Level::Debug);
        if let Some(grace) = policy.grace {
            let max = policy.drain.max();
            if max >= grace {
                let drain_from = self.drain_from.as_deref().unwrap_or("the default --drain");
                let grace_from = self.grace_from.as_deref().unwrap_or_default();
                let what = match policy.drain {
                    DrainSpec::Range { .. } => "'s MAX",
                    DrainSpec::Fixed(_) => "",
                };
                return Err(format!(
                    "{drain_from}{what} {} must be shorter than {grace_from} {}: the grace period counts from the same stop signal and must leave the app time to stop",
                    crate::log::secs(max),
                    crate::log::secs(grace)
                ));
            }
        }
        Ok(Parsed::Run(Box::new(Config {
            command: words,
            subreaper: self.subreaper,
            pdeathsig: self.pdeathsig,
            policy,
            log,
            termination_log: core::mem::take(&mut self.termination_log),
        })))
    }

    fn to_check(&self, words: Vec<Vec<u8>>) -> Result<Check, String> {
        let url = match &words[..] {
            [url] => {
                core::str::from_utf8(url).map_err(|_| "--check: the URL is not valid UTF-8")?
            }
            [] => {
                return Err("--check needs a URL: usher --check http://127.0.0.1:PORT/PATH".into())
            }
            _ => {
                return Err(
                    "--check takes one URL and nothing after it (quote \"POST http://...\")".into(),
                )
            }
        };
        let mut request = Request::parse(url).map_err(|e| format!("--check: {e}"))?;
        request.headers.clone_from(&self.headers);
        let patience = match (self.answer_fd, self.check_timeout) {
            (Some(_), _) => crate::http::HOOK,
            (None, timeout) => {
                let t = timeout.unwrap_or(CHECK_TIMEOUT);
                Patience {
                    connect: t,
                    answer: t,
                    whole: Some(t),
                    retry_refused: false,
                }
            }
        };
        Ok(Check {
            request,
            ready: self.ready,
            patience,
            answer_fd: self.answer_fd,
            log: self.logger(),
        })
    }
}

/// How long `usher --check` may take, connection and answer together.
pub const CHECK_TIMEOUT: Duration = Duration::from_secs(2);

// ------------------------------------------------------------- values --

/// A switch's variable: `1`/`0` and their spellings.
fn boolean(from: &str, value: &str) -> Result<bool, String> {
    let v = value.trim().to_ascii_lowercase();
    match v.as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!("{from}={v:?} is not a boolean (use 1 or 0)")),
    }
}

fn add_rewrite(s: &mut Settings, spec: &str, from: &str) -> Result<(), String> {
    let (sig, to) = Rewrite::parse_spec(spec).map_err(|e| format!("{from}: {e}"))?;
    s.policy.rewrite.set(sig, to);
    Ok(())
}

fn add_header(s: &mut Settings, text: &str, from: &str) -> Result<(), String> {
    s.headers
        .push(hook::parse_header(text).map_err(|e| format!("{from}: {e}"))?);
    Ok(())
}

fn set_hook(s: &mut Settings, kind: HookKind, value: &str, from: &str) -> Result<(), String> {
    s.policy.hooks[kind as usize] =
        Some(HookAction::parse(value).map_err(|e| format!("{from}: {e}"))?);
    Ok(())
}

fn set_drain(s: &mut Settings, value: &str, from: &str) -> Result<(), String> {
    s.policy.drain = parse_drain(from, value)?;
    s.drain_from = Some(from.to_string());
    Ok(())
}

/// `5s`, or `MIN..MAX` with both bounds and MIN ≤ MAX.
pub fn parse_drain(from: &str, text: &str) -> Result<DrainSpec, String> {
    let t = text.trim();
    let Some((min, max)) = t.split_once("..") else {
        return parse_duration(from, t).map(DrainSpec::Fixed);
    };
    let range =
        |why: &str| format!("{from} {t:?}: {why} (a range is MIN..MAX, e.g. 1s..15s or 0s..10s)");
    if min.trim().is_empty() || max.trim().is_empty() {
        return Err(range("both bounds are needed"));
    }
    if max.starts_with('.') {
        return Err(range("two dots between the bounds, not three"));
    }
    let bound =
        |b: &str| parse_duration(from, b).map_err(|e| range(e.trim_start_matches(from).trim()));
    let (min, max) = (bound(min)?, bound(max)?);
    if min > max {
        return Err(range("MIN is longer than MAX"));
    }
    Ok(DrainSpec::Range { min, max })
}

fn log_format(from: &str, v: &str) -> Result<Format, String> {
    match v.trim() {
        "text" => Ok(Format::Text),
        "json" => Ok(Format::Json),
        other => Err(format!("{from} {other:?} is not text or json")),
    }
}

fn exit_code(from: &str, text: &str) -> Result<i32, String> {
    match text.trim().parse::<i32>() {
        Ok(n) if (0..=255).contains(&n) => Ok(n),
        _ => Err(format!(
            "{from} {text:?}: an exit code is a number from 0 to 255"
        )),
    }
}

/// `TERM,INT` or `QUIT`: each must be a signal usher forwards.
pub fn parse_stop_on(from: &str, text: &str) -> Result<Vec<Signal>, String> {
    let mut out = Vec::new();
    for part in text.split(',') {
        let s = Signal::parse(part).map_err(|e| format!("{from} {text:?}: {e}"))?;
        if !s.forwardable() {
            return Err(format!(
                "{from} {text:?}: {s} is never forwarded, so it cannot start a shutdown"
            ));
        }
        if !out.contains(&s) {
            out.push(s);
        }
    }
    Ok(out)
}

/// The longest drain or grace period: a year is already far past any
/// orchestrator's patience, and it keeps the clock arithmetic far from overflow.
pub const LONGEST: Duration = Duration::from_secs(365 * 24 * 60 * 60);

/// A duration with an explicit unit (`500ms`, `15s`, `1m30s`).
pub fn parse_duration(flag: &str, text: &str) -> Result<Duration, String> {
    let t = text.trim();
    if t.is_empty() {
        return Err(format!(
            "{flag} needs a duration like 500ms, 15s or 1m30s, not an empty value"
        ));
    }
    if t.bytes().all(|b| b.is_ascii_digit()) && t != "0" {
        return Err(format!(
            "{flag} {t:?} has no unit: write {t}s for seconds or {t}ms for milliseconds"
        ));
    }
    if t.starts_with('-') {
        return Err(format!(
            "{flag} {t:?}: a duration cannot be negative (e.g. 500ms, 15s, 1m30s)"
        ));
    }
    let too_long = || format!("{flag} {t:?} is longer than usher allows (at most 365d)");
    let d = duration::parse(t).map_err(|e| match e {
        duration::Error::Overflow => too_long(),
        duration::Error::Bad(why) => {
            format!("{flag} {t:?} is not a duration like 500ms, 15s or 1m30s ({why})")
        }
    })?;
    if d > LONGEST {
        return Err(too_long());
    }
    Ok(d)
}

/// The app's command as text for messages.
pub fn show(arg: &[u8]) -> String {
    String::from_utf8_lossy(arg).into_owned()
}

/// `"--\xFF"`: bytes in quotes, escaped as Rust shows a string, with the
/// bytes that are not UTF-8 as `\xNN`.
pub fn quoted(bytes: &[u8]) -> String {
    let mut out = String::from("\"");
    for chunk in bytes.utf8_chunks() {
        out.extend(chunk.valid().chars().flat_map(char::escape_debug));
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02X}"));
        }
    }
    out.push('"');
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::ffi::OsString;
    use std::os::unix::ffi::OsStringExt;

    /// Arguments, or what a message must say; variables and their values.
    type Words = &'static [&'static str];
    type Vars = &'static [(&'static str, &'static str)];

    /// `parse` with `args` and the variables `env`, and nothing else.
    fn parse_os(args: &[OsString], env: &[(&str, OsString)]) -> Result<Parsed, Usage> {
        let env: HashMap<&str, Vec<u8>> = env
            .iter()
            .map(|(k, v)| (*k, v.clone().into_vec()))
            .collect();
        parse(args.iter().map(|a| a.clone().into_vec()), |k| {
            env.get(k).cloned()
        })
    }

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let args: Vec<OsString> = args.iter().map(OsString::from).collect();
        let env: Vec<(&str, OsString)> = env.iter().map(|&(k, v)| (k, v.into())).collect();
        match parse_os(&args, &env) {
            Err(usage) => Err(usage.message),
            Ok(Parsed::Run(c)) => Ok(*c),
            Ok(other) => Err(format!("expected a run, got {other:?}")),
        }
    }

    /// A health check (and an HTTP hook's child) reads only its own
    /// variables: an init's, bad or not, are not its business; an init's
    /// flag with `--check` is refused.
    #[test]
    fn check_takes_only_its_own_options_and_variables() {
        let check = |args: &[&str], env: &[(&str, &str)]| {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            let env: Vec<(&str, OsString)> = env.iter().map(|&(k, v)| (k, v.into())).collect();
            match parse_os(&args, &env) {
                Ok(Parsed::Check(c)) => Ok(c),
                Ok(other) => Err(format!("expected a check, got {other:?}")),
                Err(usage) => Err(usage.message),
            }
        };
        let url = "http://127.0.0.1:8080/";
        let env = [
            ("USHER_DRAIN", "abc"),
            ("USHER_PRE_STOP", "'"),
            ("USHER_HTTP_HEADERS", "X-A: 1"),
        ];
        let c = check(&["--check", url], &env).expect("init variables ignored");
        assert_eq!(c.request.headers, ["X-A: 1"]);
        let bad_log = check(&["--check", url], &[("USHER_LOG", "loud")]).unwrap_err();
        assert!(bad_log.contains("USHER_LOG"), "{bad_log}");
        let zero = check(&["--check-timeout", "0s", "--check", url], &[]).unwrap_err();
        assert_eq!(zero, "--check-timeout must be longer than 0s (e.g. 2s)");
        for init in [&["--drain", "5s"][..], &["-s"], &["--pre-stop", "x"]] {
            let args = [init, &["--check", url]].concat();
            let err = check(&args, &[]).unwrap_err();
            assert!(err.contains("is an init's option, not --check's"), "{err}");
        }
    }

    #[test]
    fn command_starts_at_first_non_option() {
        let c = run(&["-s", "app", "-v", "--", "x"], &[]).unwrap();
        assert_eq!(c.command, [&b"app"[..], b"-v", b"--", b"x"]);
        assert!(c.subreaper);
        let c = run(&["--", "-weird-name", "-s"], &[]).unwrap();
        assert_eq!(c.command, [&b"-weird-name"[..], b"-s"]);
        assert!(!c.subreaper);
    }

    #[test]
    fn tini_and_dumb_init_flags() {
        let c = run(
            &["-sg", "-p", "SIGKILL", "-e", "143", "-vvv", "--", "app"],
            &[],
        )
        .unwrap();
        assert!(c.subreaper && !c.policy.single_child);
        assert_eq!(c.pdeathsig, Some(Signal::KILL));
        assert_eq!(c.policy.remap_exit, [143]);
        assert_eq!(c.log.level, Level::Trace);
        let c = run(&["-c", "-r", "15:3", "--rewrite=1:0", "app"], &[]).unwrap();
        assert!(c.policy.single_child);
        assert_eq!(c.policy.rewrite.apply(Signal::TERM), Some(Signal::QUIT));
        assert_eq!(c.policy.rewrite.apply(Signal::HUP), None);
        let c = run(&["-pKILL", "app"], &[]).unwrap();
        assert_eq!(c.pdeathsig, Some(Signal::KILL));
    }

    #[test]
    fn env_applies_and_flags_win() {
        let env = [
            ("USHER_SUBREAPER", "1"),
            ("USHER_REWRITE", "TERM:QUIT, 1:0"),
            ("USHER_REMAP_EXIT", "143,130"),
            ("USHER_LOG", "debug"),
            ("USHER_LOG_FORMAT", "json"),
            ("USHER_DRAIN", "2s"),
            ("USHER_GRACE_PERIOD", "10s"),
            ("USHER_STOP_ON", "QUIT"),
            ("USHER_PRE_STOP", "sleep 1"),
        ];
        let c = run(&["app"], &env).unwrap();
        assert!(c.subreaper);
        assert_eq!(c.policy.rewrite.apply(Signal::TERM), Some(Signal::QUIT));
        assert_eq!(c.policy.remap_exit, [143, 130]);
        assert_eq!((c.log.level, c.log.format), (Level::Debug, Format::Json));
        assert_eq!(c.policy.drain, DrainSpec::Fixed(Duration::from_secs(2)));
        assert_eq!(c.policy.grace, Some(Duration::from_secs(10)));
        assert_eq!(c.policy.stop_on, [Signal::QUIT]);
        let sleep = HookAction::Command(vec!["sleep".into(), "1".into()]);
        assert_eq!(c.policy.hooks, [None, Some(sleep), None]);
        let c = run(
            &[
                "-q",
                "--log-format",
                "text",
                "-r",
                "INT:0",
                "--drain=1s",
                "app",
            ],
            &env,
        )
        .unwrap();
        assert_eq!((c.log.level, c.log.format), (Level::Warn, Format::Text));
        assert_eq!(
            c.policy.rewrite.apply(Signal::TERM),
            Some(Signal::TERM),
            "flags replace USHER_REWRITE"
        );
        assert_eq!(c.policy.drain, DrainSpec::Fixed(Duration::from_secs(1)));
    }

    #[test]
    fn help_and_version_stop_parsing() {
        assert!(matches!(parse(["-h".into()], |_| None), Ok(Parsed::Help)));
        assert!(matches!(
            parse(["--version".into()], |_| None),
            Ok(Parsed::Version)
        ));
        assert!(matches!(
            parse(["-V".into(), "--bogus".into()], |_| None),
            Ok(Parsed::Version)
        ));
    }

    /// Every command line and environment usher refuses, and what its
    /// one-line message must say. (That main prints it as one line on
    /// stderr, exits 2 and runs nothing is tested once, in tests/core.rs.)
    #[rustfmt::skip]
    const REFUSED: &[(Words, Vars, Words)] = &[
        // The command.
        (&[], &[], &["no command given", "usher [OPTIONS] [--] COMMAND [ARGS...]"]),
        (&["--"], &[], &["no command given"]),
        (&["-s"], &[], &["no command given"]),
        (&["-s", "--"], &[], &["no command given"]),
        (&["-v"], &[], &["no command given"]),
        (&[""], &[], &["the command is an empty string"]),
        // Unknown flags, values where none belong, missing values. A name
        // is quoted and escaped: a newline in it cannot make a second line.
        (&["--bogus", "app"], &[], &["unknown option \"--bogus\" (see usher --help)"]),
        (&["--bogus=1", "app"], &[], &["unknown option \"--bogus\""]),
        (&["-x", "app"], &[], &["unknown option \"-x\" (see usher --help)"]),
        (&["-sx", "app"], &[], &["unknown option 'x' in \"-sx\""]),
        (&["-s-", "app"], &[], &["unknown option '-' in \"-s-\""]),
        (&["--a\nb", "app"], &[], &["unknown option \"--a\\nb\""]),
        (&["-\n", "app"], &[], &["unknown option \"-\\n\""]),
        (&["--subreaper=1", "app"], &[], &["option --subreaper takes no value"]),
        (&["--help=1"], &[], &["option --help takes no value"]),
        (&["-p"], &[], &["option -p needs a value"]),
        (&["--drain"], &[], &["option --drain needs a value"]),
        (&["-r"], &[], &["option -r needs a value"]),
        // Signals.
        (&["-p", "0", "app"], &[], &["--pdeathsig", "signal number 0", "1..64"]),
        (&["-p", "65", "app"], &[], &["signal number 65", "1..64"]),
        (&["-p", "-1", "app"], &[], &["signal number -1", "1..64"]),
        (&["-p", "BOGUS", "app"], &[], &["unknown signal \"BOGUS\"", "TERM", "RTMIN+N", "1..64"]),
        (&["-p", "RTMAX+1", "app"], &[], &["unknown signal \"RTMAX+1\""]),
        (&["-p", "", "app"], &[], &["--pdeathsig", "empty signal name"]),
        (&["--stop-on", "KILL", "app"], &[], &["--stop-on \"KILL\"", "SIGKILL", "cannot start a shutdown"]),
        (&["--stop-on", "STOP", "app"], &[], &["SIGSTOP", "cannot start"]),
        (&["--stop-on", "TERM,KILL", "app"], &[], &["never forwarded"]),
        (&["--stop-on", "TERM,65", "app"], &[], &["--stop-on", "65", "1..64"]),
        (&["--stop-on", "TERM,BOGUS", "app"], &[], &["--stop-on", "\"BOGUS\""]),
        (&["--stop-on", "", "app"], &[], &["--stop-on", "empty signal name"]),
        // Rewrites.
        (&["-r", "TERM", "app"], &[], &["rewrite \"TERM\" is not FROM:TO", "TERM:QUIT"]),
        (&["--rewrite=TERM", "app"], &[], &["not FROM:TO"]),
        (&["-r", "TERM:", "app"], &[], &["\"TERM:\"", "TO is empty"]),
        (&["-r", ":QUIT", "app"], &[], &["\":QUIT\"", "empty signal name"]),
        (&["-r", "TERM:QUIT:1", "app"], &[], &["\"TERM:QUIT:1\"", "unknown signal \"QUIT:1\""]),
        (&["-r", "0:TERM", "app"], &[], &["\"0:TERM\"", "1..64"]),
        (&["-r", "TERM:65", "app"], &[], &["\"TERM:65\"", "1..64"]),
        (&["-r", "KILL:TERM", "app"], &[], &["\"KILL:TERM\"", "SIGKILL is never forwarded"]),
        (&["-r", "STOP:TERM", "app"], &[], &["\"STOP:TERM\"", "SIGSTOP is never forwarded"]),
        (&["-r", "CHLD:TERM", "app"], &[], &["SIGCHLD is never forwarded"]),
        (&["-r", "SEGV:TERM", "app"], &[], &["SIGSEGV is never forwarded"]),
        (&["-r", "TERM:STOP", "app"], &[], &["freeze"]),
        // Durations carry a unit (a bare 0 is the one number accepted).
        (&["--drain", "5", "app"], &[], &["--drain \"5\" has no unit", "5s", "5ms"]),
        (&["--grace-period", "5", "app"], &[], &["--grace-period \"5\" has no unit", "5s"]),
        (&["--drain", "-1s", "app"], &[], &["--drain \"-1s\"", "cannot be negative", "500ms, 15s, 1m30s"]),
        (&["--drain", "", "app"], &[], &["--drain", "500ms", "empty value"]),
        (&["--drain=", "app"], &[], &["--drain", "empty value"]),
        (&["--drain", "   ", "app"], &[], &["--drain", "empty value"]),
        (&["--drain", "soon", "app"], &[], &["--drain \"soon\"", "500ms", "not a duration"]),
        (&["--grace-period", "soon", "app"], &[], &["--grace-period \"soon\""]),
        (&["--drain", "1.5", "app"], &[], &["--drain \"1.5\""]),
        // Ranges: MIN..MAX, two dots, both bounds with a unit, MIN no longer than MAX.
        (&["--drain", "5s..1s", "app"], &[], &["--drain \"5s..1s\": MIN is longer than MAX", "1s..15s"]),
        (&["--drain", "..5s", "app"], &[], &["--drain \"..5s\": both bounds are needed", "MIN..MAX"]),
        (&["--drain", "1s..", "app"], &[], &["--drain \"1s..\": both bounds are needed"]),
        (&["--drain", "..", "app"], &[], &["--drain \"..\": both bounds are needed"]),
        (&["--drain", "1s...3s", "app"], &[], &["--drain \"1s...3s\": two dots between the bounds, not three"]),
        (&["--drain", "1..5s", "app"], &[], &["--drain \"1..5s\": \"1\" has no unit", "1s"]),
        (&["--drain", "1s..5", "app"], &[], &["--drain \"1s..5\": \"5\" has no unit"]),
        (&["--drain", "-1s..5s", "app"], &[], &["--drain \"-1s..5s\"", "cannot be negative"]),
        (&["--drain", "1s..3s..5s", "app"], &[], &["--drain \"1s..3s..5s\"", "not a duration"]),
        (&["--drain", "1s..400d", "app"], &[], &["--drain \"1s..400d\"", "at most 365d"]),
        (&["app"], &[("USHER_DRAIN", "5s..1s")], &["USHER_DRAIN \"5s..1s\": MIN is longer than MAX"]),
        (&["app"], &[("USHER_DRAIN", "1s..")], &["USHER_DRAIN \"1s..\": both bounds are needed"]),
        // Durations too long to mean anything (they could only overflow clocks).
        (&["--drain", "99999999999999999999s", "app"], &[], &["--drain \"99999999999999999999s\"", "at most 365d"]),
        (&["--drain", "18446744073709551615s", "app"], &[], &["--drain \"18446744073709551615s\"", "at most 365d"]),
        (&["--drain", "400d", "app"], &[], &["at most 365d"]),
        (&["--grace-period", "366d", "app"], &[], &["--grace-period \"366d\"", "at most 365d"]),
        (&["--grace-period=500000000000y", "app"], &[], &["--grace-period", "at most 365d"]),
        // The drain ends before the deadline.
        (&["--drain", "5s", "--grace-period", "5s", "app"], &[], &["--drain 5s must be shorter than --grace-period 5s"]),
        (&["--drain=5s", "--grace-period=5s", "app"], &[], &["--drain 5s must be shorter than --grace-period 5s"]),
        (&["--drain", "5s", "--grace-period", "1s", "app"], &[], &["--drain 5s must be shorter than --grace-period 1s"]),
        (&["--grace-period", "0s", "app"], &[], &["the default --drain 0s must be shorter than --grace-period 0s"]),
        (&["--drain", "1s..5s", "--grace-period", "5s", "app"], &[], &["--drain's MAX 5s must be shorter than --grace-period 5s"]),
        (&["--drain", "0s..9s", "--grace-period", "5s", "app"], &[], &["--drain's MAX 9s must be shorter than --grace-period 5s"]),
        // Hook command lines.
        (&["--pre-stop", "sh -c 'x", "app"], &[], &["--pre-stop", "sh -c 'x", "unclosed single quote"]),
        (&["--pre-stop", "say \"oops", "app"], &[], &["--pre-stop", "unclosed double quote"]),
        (&["--pre-stop", "hook\\", "app"], &[], &["--pre-stop", "lone backslash"]),
        (&["--pre-stop", "", "app"], &[], &["--pre-stop", "empty"]),
        (&["--pre-stop", " \t ", "app"], &[], &["--pre-stop", "empty"]),
        // Exit codes and the log format.
        (&["-e", "256", "app"], &[], &["--remap-exit \"256\"", "0 to 255"]),
        (&["-e", "-1", "app"], &[], &["--remap-exit \"-1\"", "0 to 255"]),
        (&["-e", "x", "app"], &[], &["--remap-exit \"x\"", "0 to 255"]),
        (&["--log-format", "xml", "app"], &[], &["--log-format \"xml\" is not text or json"]),
        // Variables: the message names the variable, not a flag never given.
        (&["app"], &[("USHER_SUBREAPER", "maybe")], &["USHER_SUBREAPER=\"maybe\"", "not a boolean", "1 or 0"]),
        (&["app"], &[("USHER_SINGLE_CHILD", "2")], &["USHER_SINGLE_CHILD=\"2\"", "not a boolean"]),
        (&["app"], &[("USHER_REWRITE", "TERM")], &["USHER_REWRITE: rewrite \"TERM\" is not FROM:TO"]),
        (&["app"], &[("USHER_REWRITE", "TERM:QUIT,KILL:TERM")], &["USHER_REWRITE", "\"KILL:TERM\"", "never forwarded"]),
        (&["app"], &[("USHER_REWRITE", "TERM:QUIT:HUP")], &["USHER_REWRITE", "\"TERM:QUIT:HUP\""]),
        (&["app"], &[("USHER_PDEATHSIG", "0")], &["USHER_PDEATHSIG: signal number 0", "1..64"]),
        (&["app"], &[("USHER_PDEATHSIG", "NOPE")], &["USHER_PDEATHSIG: unknown signal \"NOPE\""]),
        (&["app"], &[("USHER_PDEATHSIG", "SIGNOPE")], &["USHER_PDEATHSIG: unknown signal \"SIGNOPE\""]),
        (&["app"], &[("USHER_REMAP_EXIT", "x")], &["USHER_REMAP_EXIT \"x\""]),
        (&["app"], &[("USHER_REMAP_EXIT", "143,300")], &["USHER_REMAP_EXIT \"300\"", "0 to 255"]),
        (&["app"], &[("USHER_LOG", "loud")], &["USHER_LOG=\"loud\"", "error, warn, info, debug, trace"]),
        (&["app"], &[("USHER_LOG_FORMAT", "xml")], &["USHER_LOG_FORMAT \"xml\" is not text or json"]),
        (&["app"], &[("USHER_DRAIN", "5")], &["USHER_DRAIN \"5\" has no unit", "5s"]),
        (&["app"], &[("USHER_DRAIN", "-1s")], &["USHER_DRAIN \"-1s\"", "cannot be negative", "500ms"]),
        (&["app"], &[("USHER_GRACE_PERIOD", "-1s")], &["USHER_GRACE_PERIOD \"-1s\""]),
        (&["app"], &[("USHER_GRACE_PERIOD", "soon")], &["USHER_GRACE_PERIOD \"soon\"", "500ms"]),
        (&["app"], &[("USHER_GRACE_PERIOD", "99999999999999999999s")], &["USHER_GRACE_PERIOD \"99999999999999999999s\""]),
        (&["app"], &[("USHER_GRACE_PERIOD", "400d")], &["USHER_GRACE_PERIOD \"400d\"", "at most 365d"]),
        (&["app"], &[("USHER_STOP_ON", "KILL")], &["USHER_STOP_ON \"KILL\"", "cannot start a shutdown"]),
        (&["app"], &[("USHER_STOP_ON", "TERM;INT")], &["USHER_STOP_ON"]),
        (&["app"], &[("USHER_STOP_ON", "TERM,,INT")], &["USHER_STOP_ON", "empty signal name"]),
        (&["app"], &[("USHER_PRE_STOP", "'")], &["USHER_PRE_STOP: ", "unclosed single quote"]),
        // Conflicts, between variables and between a variable and a flag.
        (&["app"], &[("USHER_DRAIN", "5s"), ("USHER_GRACE_PERIOD", "1s")], &["USHER_DRAIN 5s must be shorter than USHER_GRACE_PERIOD 1s"]),
        (&["--grace-period", "1s", "app"], &[("USHER_DRAIN", "5s")], &["USHER_DRAIN 5s must be shorter than --grace-period 1s"]),
        (&["app"], &[("USHER_DRAIN", "1s..5s"), ("USHER_GRACE_PERIOD", "5s")], &["USHER_DRAIN's MAX 5s must be shorter than USHER_GRACE_PERIOD 5s"]),
    ];

    #[test]
    fn usage_errors_say_what_is_wrong_in_one_line() {
        for (args, env, needles) in REFUSED {
            let err = run(args, env).expect_err(&format!("{args:?} {env:?} should fail"));
            assert!(!err.contains('\n'), "{args:?}: more than one line: {err:?}");
            for n in *needles {
                assert!(
                    err.contains(n),
                    "{args:?} {env:?}: {err:?} should say {n:?}"
                );
            }
            let names_a_var = env.iter().any(|(k, _)| err.contains(k));
            assert!(env.is_empty() || names_a_var, "{env:?}: {err:?}");
        }
    }

    #[test]
    fn options_and_variables_that_are_not_utf8_are_refused_by_name() {
        let os = |b: &[u8]| OsString::from_vec(b.to_vec());
        let cases = [
            (vec![os(b"--\xff")], "option \"--\\xFF\" is not valid UTF-8"),
            (vec![os(b"-s\xff")], "option \"-s\\xFF\" is not valid UTF-8"),
            (vec![os(b"--log-format"), os(b"\xff")], "--log-format"),
            (
                vec![os(b"-p"), os(b"\xff")],
                "the value of -p, \"\\xFF\", is not valid UTF-8",
            ),
        ];
        for (mut args, says) in cases {
            args.push("app".into());
            let err = parse_os(&args, &[]).expect_err("refused").message;
            assert!(
                err.contains(says) && err.contains("not valid UTF-8"),
                "{err:?}"
            );
        }
        // Every variable usher reads, so a new one is covered at once.
        for var in env_vars() {
            let err = parse_os(&["app".into()], &[(var, os(b"x\xff"))]).expect_err(var);
            let says = format!("{var}=\"x\\xFF\" is not valid UTF-8");
            assert!(err.message.contains(&says), "{var}: {:?}", err.message);
        }
    }

    /// Values that look odd but are fine; and a flag wins over a variable
    /// without the variable even being read, so garbage there is harmless.
    #[rustfmt::skip]
    const ACCEPTED: &[(Words, Vars)] = &[
        // An empty or blank variable is an unset one, whichever it is.
        (&["app"], &[("USHER_SUBREAPER", "")]),
        (&["app"], &[("USHER_LOG", " ")]),
        (&["app"], &[("USHER_DRAIN", "")]),
        (&["app"], &[("USHER_PRE_STOP", " ")]),
        (&["app"], &[("USHER_REMAP_EXIT", " ")]),
        (&["app"], &[("USHER_REWRITE", ",,")]),
        (&["app"], &[("USHER_REWRITE", " TERM:QUIT , ")]),
        (&["app"], &[("USHER_SUBREAPER", " YES ")]),
        (&["app"], &[("USHER_DRAIN", "0")]),
        (&["app"], &[("USHER_BOGUS", "1")]),
        (&["--drain", "1s", "app"], &[("USHER_DRAIN", "garbage")]),
        (&["-v", "app"], &[("USHER_LOG", "loud")]),
        (&["--log-format", "text", "app"], &[("USHER_LOG_FORMAT", "xml")]),
        (&["-r", "TERM:QUIT", "app"], &[("USHER_REWRITE", "KILL:TERM")]),
        (&["-p", "KILL", "app"], &[("USHER_PDEATHSIG", "0")]),
        (&["--pre-stop", "true", "app"], &[("USHER_PRE_STOP", "'")]),
        (&["-c", "app"], &[("USHER_SUBREAPER", "1"), ("USHER_SINGLE_CHILD", "no")]),
        (&["-g", "app"], &[("USHER_SINGLE_CHILD", "1")]),
    ];

    #[test]
    fn odd_values_are_accepted_and_a_flag_overrides_a_garbage_variable() {
        for (args, env) in ACCEPTED {
            let c = run(args, env).unwrap_or_else(|e| panic!("{args:?} {env:?}: {e}"));
            assert_eq!(c.command, [b"app"]);
        }
        let c = run(&["app"], &[("USHER_SUBREAPER", " YES ")]).unwrap();
        assert!(c.subreaper);
        let c = run(&["-g", "app"], &[("USHER_SINGLE_CHILD", "1")]).unwrap();
        assert!(!c.policy.single_child, "-g wins over USHER_SINGLE_CHILD=1");
        let c = run(&["app"], &[("USHER_SINGLE_CHILD", "1")]).unwrap();
        assert!(c.policy.single_child);
        let c = run(&["app"], &[("USHER_REWRITE", " TERM:QUIT , ")]).unwrap();
        assert_eq!(c.policy.rewrite.apply(Signal::TERM), Some(Signal::QUIT));
    }

    #[test]
    fn a_usage_error_follows_the_log_format_asked_for_and_the_flag_wins() {
        let format = |args: &[&str], env: &[(&str, &str)]| {
            let args: Vec<OsString> = args.iter().map(OsString::from).collect();
            let env: Vec<(&str, OsString)> = env.iter().map(|&(k, v)| (k, v.into())).collect();
            match parse_os(&args, &env) {
                Err(usage) => usage.format,
                Ok(p) => panic!("{args:?} parsed: {p:?}"),
            }
        };
        let json = [("USHER_LOG_FORMAT", "json")];
        assert_eq!(format(&["--bogus", "app"], &[]), Format::Text);
        assert_eq!(format(&["--bogus", "app"], &json), Format::Json);
        assert_eq!(format(&["--log-format=json", "--bogus"], &[]), Format::Json);
        assert_eq!(
            format(&["--log-format", "text", "--bogus"], &json),
            Format::Text,
            "the flag wins over the variable"
        );
        assert_eq!(
            format(&["--drain", "5", "app", "--log-format", "json"], &[]),
            Format::Text,
            "the app's own arguments are the app's"
        );
        assert_eq!(format(&["--log-format", "xml", "app"], &json), Format::Json);
        assert_eq!(format(&[], &[("USHER_LOG_FORMAT", "xml")]), Format::Text);
    }

    #[test]
    fn each_peer_variable_says_which_of_usher_s_it_stands_for() {
        // The man page prints `says`; what each value means is tested below.
        for var in vars() {
            for peer in var.peers {
                let named = format!("as {}=", var.name);
                assert!(peer.says.contains(&named), "{}: {}", peer.var, peer.says);
            }
        }
    }

    #[test]
    fn tini_and_dumb_init_variables_work_and_usher_own_win() {
        let c = run(&["app"], &[("TINI_SUBREAPER", "")]).unwrap();
        assert!(c.subreaper, "tini reads TINI_SUBREAPER by presence");
        let c = run(
            &["app"],
            &[("TINI_SUBREAPER", "1"), ("USHER_SUBREAPER", "0")],
        )
        .unwrap();
        assert!(!c.subreaper, "USHER_SUBREAPER wins");
        let c = run(&["app"], &[("DUMB_INIT_SETSID", "0")]).unwrap();
        assert!(c.policy.single_child, "dumb-init's single-child mode");
        let c = run(&["app"], &[("DUMB_INIT_SETSID", "1")]).unwrap();
        assert!(!c.policy.single_child);
        let c = run(&["-g", "app"], &[("DUMB_INIT_SETSID", "0")]).unwrap();
        assert!(!c.policy.single_child, "a flag wins over every variable");
        let c = run(&["app"], &[("TINI_KILL_PROCESS_GROUP", "1")]).unwrap();
        assert!(!c.policy.single_child);
        for (v, level) in [
            ("0", Level::Error),
            ("1", Level::Warn),
            ("2", Level::Info),
            ("3", Level::Debug),
            ("9", Level::Trace),
            ("x", Level::Error),
        ] {
            let c = run(&["app"], &[("TINI_VERBOSITY", v)]).unwrap();
            assert_eq!(c.log.level, level, "TINI_VERBOSITY={v}");
        }
        let c = run(&["app"], &[("DUMB_INIT_DEBUG", "1")]).unwrap();
        assert_eq!(c.log.level, Level::Debug);
        let c = run(&["app"], &[("DUMB_INIT_DEBUG", "0")]).unwrap();
        assert_eq!(c.log.level, Level::Info);
        let c = run(&["app"], &[("DUMB_INIT_DEBUG", "1"), ("USHER_LOG", "warn")]).unwrap();
        assert_eq!(c.log.level, Level::Warn, "USHER_LOG wins");
        let c = run(&["-q", "app"], &[("TINI_VERBOSITY", "3")]).unwrap();
        assert_eq!(c.log.level, Level::Warn, "-q wins");
    }

    #[test]
    fn tini_w_and_l() {
        let c = run(&["-s", "-w", "--", "true"], &[]).unwrap();
        assert!(c.policy.warn_on_reap && c.subreaper);
        let c = run(&["app"], &[("USHER_WARN_ON_REAP", "1")]).unwrap();
        assert!(c.policy.warn_on_reap);
        assert!(matches!(
            parse(["-l".into()], |_| None),
            Ok(Parsed::License)
        ));
        assert!(LICENSE.contains("MIT") && LICENSE.contains("Permission is hereby granted"));
    }

    #[test]
    fn help_lists_every_option_and_variable_from_the_table() {
        let help = help();
        for opt in OPTIONS.iter().filter(|o| !o.help.is_empty()) {
            if let Some(long) = opt.long {
                assert!(help.contains(&format!("--{long}")), "--{long}");
            }
            if let (true, Some(var)) = (owns_var(opt), opt.var) {
                let shown = format!("{}={}", var.name, var.example);
                assert!(help.contains(&shown), "{shown}");
            }
        }
        assert!(help.lines().all(|l| l.chars().count() <= 120), "{help}");
    }

    #[test]
    fn non_utf8_command_passes_through() {
        let weird = vec![b'a', 0xff];
        let Ok(Parsed::Run(c)) = parse([b"printf".to_vec(), weird.clone()], |_| None) else {
            panic!()
        };
        assert_eq!(c.command[1], weird);
        let Ok(Parsed::Run(c)) = parse([weird.clone()], |_| None) else {
            panic!()
        };
        assert_eq!(c.command[0], weird);
    }
}
