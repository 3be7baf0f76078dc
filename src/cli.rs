//! The command line and its environment variables, turned into a [`Config`].
//!
//! One table, [`OPTIONS`], defines every option once: its flags, its
//! environment variable, the name of its value and its help. Parsing, the
//! list of variables usher knows, `--help` and the fuzz lists all derive
//! from it; what an option means is one arm of [`Settings::apply`].
//!
//! Hand-written rather than clap: usher's grammar is small and fixed (tini's
//! and dumb-init's flags, a `--`, then the app's words untouched), and clap
//! would more than double the binary. See docs/design.md.

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use crate::log::{Format, Level, Logger};
use crate::machine::{HookKind, Policy};
use crate::signals::{Rewrite, Signal};
use crate::words;
use crate::{duration, http};

/// Everything usher was asked to do.
#[derive(Clone, Debug)]
pub struct Config {
    pub command: Vec<OsString>,
    pub subreaper: bool,
    pub pdeathsig: Option<Signal>,
    pub post_start: Option<HookAction>,
    pub pre_stop: Option<HookAction>,
    pub policy: Policy,
    pub log: Logger,
}

impl Config {
    /// What the hook of `kind` does, if one is configured.
    pub fn hook(&self, kind: HookKind) -> Option<&HookAction> {
        match kind {
            HookKind::PostStart => self.post_start.as_ref(),
            HookKind::PreStop => self.pre_stop.as_ref(),
        }
    }
}

/// What a hook does: run a command, or make an HTTP request.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum HookAction {
    /// The words of a command line, split like a shell would (no shell).
    Command(Vec<String>),
    Http(http::Request),
}

impl HookAction {
    /// `[METHOD ]http://...` is a request; anything else a command line.
    pub fn parse(value: &str) -> Result<HookAction, String> {
        if http::is_http(value) {
            http::parse(value).map(HookAction::Http)
        } else {
            words::split(value).map(HookAction::Command)
        }
    }
}

#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
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

/// A command line usher cannot run: the message, and the log format asked
/// for (as far as the options before the mistake and the environment tell),
/// so that the message can follow it.
#[derive(Debug)]
pub struct Usage {
    pub message: String,
    pub format: Format,
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// What an option sets; several flags can set the same thing (`-c`, `-g`).
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum Setting {
    Subreaper,
    SingleChild,
    Rewrite,
    Pdeathsig,
    RemapExit,
    Drain,
    GracePeriod,
    StopOn,
    PostStart,
    PreStop,
    Verbosity,
    LogFormat,
    WarnOnReap,
    Help,
    Version,
    License,
}

/// A peer init's variable that sets the same thing, read when usher's own
/// is not set: `means` turns its value into usher's (as that init reads
/// it), or `None` where it means nothing to that init either.
#[derive(Debug)]
pub struct Peer {
    pub var: &'static str,
    pub means: fn(&str) -> Option<&'static str>,
}

/// One row of the option table.
#[derive(Debug)]
pub struct Opt {
    pub short: Option<char>,
    pub long: Option<&'static str>,
    /// The value's name in the help (`DURATION`); `None` for a switch.
    pub value: Option<&'static str>,
    /// What a switch stands for, as if it were given as a value.
    pub switch: &'static str,
    pub setting: Setting,
    /// The variable that sets it when no flag for the setting is given,
    /// with an example value for the help.
    pub env: Option<(&'static str, &'static str)>,
    /// Repeatable; the variable holds a comma-separated list.
    pub list: bool,
    /// tini's and dumb-init's variables for the same setting.
    pub peers: &'static [Peer],
    /// Help lines; none when another row's help covers this flag.
    pub help: &'static [&'static str],
}

const SWITCH: Opt = Opt {
    short: None,
    long: None,
    value: None,
    switch: "1",
    setting: Setting::Help,
    env: None,
    list: false,
    peers: &[],
    help: &[],
};

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

/// Every option usher takes, in the order `--help` lists them.
pub const OPTIONS: &[Opt] = &[
    Opt {
        short: Some('s'),
        long: Some("subreaper"),
        setting: Setting::Subreaper,
        env: Some(("USHER_SUBREAPER", "1")),
        peers: &[Peer {
            var: "TINI_SUBREAPER",
            means: present,
        }],
        help: &["reap orphans when not PID 1 (child subreaper)"],
        ..SWITCH
    },
    Opt {
        short: Some('c'),
        long: Some("single-child"),
        setting: Setting::SingleChild,
        env: Some(("USHER_SINGLE_CHILD", "1")),
        peers: &[
            Peer {
                var: "TINI_KILL_PROCESS_GROUP",
                means: |_| Some("0"),
            },
            // dumb-init's single-child mode: no new session, signals to the child.
            Peer {
                var: "DUMB_INIT_SETSID",
                means: |v| (v == "0").then_some("1"),
            },
        ],
        help: &[
            "forward signals to the child only, not its",
            "process group",
        ],
        ..SWITCH
    },
    Opt {
        short: Some('g'),
        switch: "0",
        setting: Setting::SingleChild,
        help: &[
            "forward to the child's process group (tini",
            "compatibility; this is the default)",
        ],
        ..SWITCH
    },
    Opt {
        short: Some('r'),
        long: Some("rewrite"),
        value: Some("FROM:TO"),
        setting: Setting::Rewrite,
        env: Some(("USHER_REWRITE", "TERM:QUIT,HUP:0")),
        list: true,
        help: &["forward TO instead of FROM; TO=0 drops FROM;", "repeatable"],
        ..SWITCH
    },
    Opt {
        short: Some('p'),
        long: Some("pdeathsig"),
        value: Some("SIG"),
        setting: Setting::Pdeathsig,
        env: Some(("USHER_PDEATHSIG", "KILL")),
        help: &["signal usher gets when its parent dies"],
        ..SWITCH
    },
    Opt {
        short: Some('e'),
        long: Some("remap-exit"),
        value: Some("CODE"),
        setting: Setting::RemapExit,
        env: Some(("USHER_REMAP_EXIT", "143,130")),
        list: true,
        help: &["report the app's exit code CODE as 0;", "repeatable"],
        ..SWITCH
    },
    Opt {
        long: Some("drain"),
        value: Some("DURATION"),
        setting: Setting::Drain,
        env: Some(("USHER_DRAIN", "5s")),
        help: &[
            "after the first stop signal, wait this long",
            "before forwarding it (default 0s)",
        ],
        ..SWITCH
    },
    Opt {
        long: Some("grace-period"),
        value: Some("DUR"),
        setting: Setting::GracePeriod,
        env: Some(("USHER_GRACE_PERIOD", "25s")),
        help: &[
            "from the first stop signal, SIGKILL whatever",
            "is left after this long (default: never)",
        ],
        ..SWITCH
    },
    Opt {
        long: Some("stop-on"),
        value: Some("SIGNALS"),
        setting: Setting::StopOn,
        env: Some(("USHER_STOP_ON", "QUIT")),
        help: &[
            "signals that start the shutdown sequence",
            "(default TERM,INT)",
        ],
        ..SWITCH
    },
    Opt {
        long: Some("pre-stop"),
        value: Some("HOOK"),
        setting: Setting::PreStop,
        env: Some(("USHER_PRE_STOP", "'/app/deregister'")),
        help: &[
            "when the shutdown starts, run HOOK: a command",
            "(split into words like a shell, no shell) or",
            "[METHOD ]http://HOST[:PORT]/PATH; the stop",
            "signal waits for it, but goes out at the",
            "latest min(2s, grace/2) before the deadline",
        ],
        ..SWITCH
    },
    Opt {
        long: Some("post-start"),
        value: Some("HOOK"),
        setting: Setting::PostStart,
        env: Some(("USHER_POST_START", "http://127.0.0.1/warm")),
        help: &[
            "run HOOK alongside the app once it started;",
            "if it fails, stop the app and exit 124",
        ],
        ..SWITCH
    },
    Opt {
        short: Some('v'),
        long: Some("verbose"),
        switch: "+1",
        setting: Setting::Verbosity,
        env: Some(("USHER_LOG", "error|warn|info|debug|trace")),
        peers: &[
            Peer {
                var: "TINI_VERBOSITY",
                means: tini_verbosity,
            },
            Peer {
                var: "DUMB_INIT_DEBUG",
                means: |v| (v == "1").then_some("debug"),
            },
        ],
        help: &["more log (repeatable); -q, --quiet: less"],
        ..SWITCH
    },
    Opt {
        short: Some('q'),
        long: Some("quiet"),
        switch: "-1",
        setting: Setting::Verbosity,
        ..SWITCH
    },
    Opt {
        long: Some("log-format"),
        value: Some("FORMAT"),
        setting: Setting::LogFormat,
        env: Some(("USHER_LOG_FORMAT", "json")),
        help: &["text or json (one object per line)"],
        ..SWITCH
    },
    Opt {
        short: Some('w'),
        long: Some("warn-on-reap"),
        setting: Setting::WarnOnReap,
        env: Some(("USHER_WARN_ON_REAP", "1")),
        help: &["warn each time an orphan is reaped"],
        ..SWITCH
    },
    Opt {
        short: Some('h'),
        long: Some("help"),
        setting: Setting::Help,
        help: &["this help"],
        ..SWITCH
    },
    Opt {
        short: Some('V'),
        long: Some("version"),
        setting: Setting::Version,
        help: &["usher's version"],
        ..SWITCH
    },
    Opt {
        short: Some('l'),
        long: Some("license"),
        setting: Setting::License,
        help: &["the license (tini's -l)"],
        ..SWITCH
    },
];

/// Every `USHER_*` variable usher reads; another is most likely a typo.
pub fn env_vars() -> Vec<&'static str> {
    OPTIONS
        .iter()
        .filter_map(|o| o.env)
        .map(|(name, _)| name)
        .collect()
}

/// `USHER_*` variables in `names` that usher does not know.
pub fn unknown_vars(names: impl Iterator<Item = OsString>) -> Vec<String> {
    let known = env_vars();
    names
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.starts_with("USHER_") && !known.contains(&n.as_str()))
        .collect()
}

const HELP_HEAD: &str = "\
usher — a tiny PID 1 for containers: starts your app, reaps zombies,
forwards signals, and shuts the app down gracefully.

Usage: usher [OPTIONS] [--] COMMAND [ARGS...]

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

Exit status: the app's (128+N if killed by signal N; 0 if remapped; 137 if
usher killed it at the grace period); 2 usage error; 124 the post-start
hook failed (usher stopped the app); 125 usher failed; 126 the command
cannot run; 127 the command was not found.
";

/// `usher --help`, built from [`OPTIONS`].
pub fn help() -> String {
    let mut out = String::from(HELP_HEAD);
    for opt in OPTIONS.iter().filter(|o| !o.help.is_empty()) {
        let mut left = match (opt.short, opt.long) {
            (Some(s), Some(l)) => format!("  -{s}, --{l}"),
            (Some(s), None) => format!("  -{s}"),
            (None, Some(l)) => format!("      --{l}"),
            (None, None) => continue,
        };
        if let Some(v) = opt.value {
            left = format!("{left} {v}");
        }
        let last = opt.help.len() - 1;
        for (i, text) in opt.help.iter().enumerate() {
            let mut line = format!("{left:<28}{text}");
            if let (true, Some((var, example))) = (i == last, opt.env) {
                let at = line.chars().count().max(72) + 3;
                line = format!("{line:<at$}{var}={example}");
            }
            out.push_str(line.trim_end());
            out.push('\n');
            left = String::new();
        }
    }
    out.push_str("\nAlso read, when usher's own variable is not set (tini's and dumb-init's):\n ");
    for opt in OPTIONS {
        for peer in opt.peers {
            out.push(' ');
            out.push_str(peer.var);
        }
    }
    out.push('\n');
    out.push_str(HELP_TAIL);
    out
}

/// Parses `args` (without the program name) with `env` looking up variables.
pub fn parse<I, E>(args: I, env: E) -> Result<Parsed, Usage>
where
    I: IntoIterator<Item = OsString>,
    E: Fn(&str) -> Option<OsString>,
{
    let mut given = Given::default();
    let mut args = args.into_iter();
    let scanned = given.scan(&mut args);
    let usage = |given: &Given, message: String| Usage {
        format: given.log_format(&env),
        message,
    };
    let command = match scanned {
        Ok(Scan::Command(first)) => first.into_iter().chain(args).collect::<Vec<_>>(),
        Ok(Scan::Early(parsed)) => return Ok(parsed),
        Err(message) => return Err(usage(&given, message)),
    };
    let config = match command.first() {
        None => Err("no command given: usage is usher [OPTIONS] [--] COMMAND [ARGS...]".into()),
        Some(first) if first.is_empty() => Err("the command is an empty string".into()),
        Some(_) => given.to_config(command, &env),
    };
    config
        .map(|c| Parsed::Run(Box::new(c)))
        .map_err(|message| usage(&given, message))
}

/// How the scan of usher's own arguments ended.
enum Scan {
    /// At the app's first word (`None` after a `--` with nothing after it).
    Command(Option<OsString>),
    /// `--help` or `--version`: nothing else matters.
    Early(Parsed),
}

type Args<'a> = &'a mut dyn Iterator<Item = OsString>;

/// The flags as given, in order: the row and the value (or what the switch stands for).
#[derive(Default)]
struct Given(Vec<(&'static Opt, String)>);

impl Given {
    /// Reads usher's options up to the app's first word.
    fn scan(&mut self, args: Args) -> Result<Scan, String> {
        while let Some(arg) = args.next() {
            let Some(text) = arg.to_str() else {
                if arg.as_encoded_bytes().starts_with(b"-") {
                    return Err(format!("option {arg:?} is not valid UTF-8"));
                }
                return Ok(Scan::Command(Some(arg)));
            };
            if text == "--" {
                return Ok(Scan::Command(args.next()));
            }
            let found = if let Some(long) = text.strip_prefix("--") {
                self.long(long, args)?
            } else if text.len() > 1 && text.starts_with('-') {
                self.shorts(&text[1..], args)?
            } else {
                return Ok(Scan::Command(Some(arg)));
            };
            if let Some(early) = found {
                return Ok(Scan::Early(early));
            }
        }
        Ok(Scan::Command(None))
    }

    /// One `--name` or `--name=value`.
    fn long(&mut self, long: &str, args: Args) -> Result<Option<Parsed>, String> {
        let (name, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (long, None),
        };
        let Some(opt) = OPTIONS.iter().find(|o| o.long == Some(name)) else {
            let flag = format!("--{name}");
            return Err(format!("unknown option {flag:?} (see usher --help)"));
        };
        let value = match (opt.value, inline) {
            (None, Some(_)) => return Err(format!("option --{name} takes no value")),
            (None, None) => opt.switch.to_string(),
            (Some(_), Some(v)) => v,
            (Some(_), None) => value_of(&format!("--{name}"), args)?,
        };
        Ok(self.push(opt, value))
    }

    /// A bundle of short flags like `-sv` or `-pKILL`.
    fn shorts(&mut self, bundle: &str, args: Args) -> Result<Option<Parsed>, String> {
        for (i, c) in bundle.char_indices() {
            let Some(opt) = OPTIONS.iter().find(|o| o.short == Some(c)) else {
                let flag = format!("-{bundle}");
                return Err(match bundle.len() {
                    1 => format!("unknown option {flag:?} (see usher --help)"),
                    _ => format!("unknown option {c:?} in {flag:?} (see usher --help)"),
                });
            };
            if opt.value.is_none() {
                if let Some(early) = self.push(opt, opt.switch.to_string()) {
                    return Ok(Some(early));
                }
                continue;
            }
            // The rest of the bundle is the value, or else the next argument.
            let rest = &bundle[i + c.len_utf8()..];
            let value = match rest {
                "" => value_of(&format!("-{c}"), args)?,
                _ => rest.to_string(),
            };
            return Ok(self.push(opt, value));
        }
        Ok(None)
    }

    fn push(&mut self, opt: &'static Opt, value: String) -> Option<Parsed> {
        match opt.setting {
            Setting::Help => Some(Parsed::Help),
            Setting::Version => Some(Parsed::Version),
            Setting::License => Some(Parsed::License),
            _ => {
                self.0.push((opt, value));
                None
            }
        }
    }

    /// The values given for `setting` by flags, in order.
    fn flags(&self, setting: Setting) -> Vec<String> {
        let given = self.0.iter().filter(|(o, _)| o.setting == setting);
        given.map(|(_, v)| v.clone()).collect()
    }

    /// The log format, for a usage error: the flag if it was given and is
    /// valid, else the variable's if valid, else text.
    fn log_format(&self, env: &dyn Fn(&str) -> Option<OsString>) -> Format {
        let row = owner(Setting::LogFormat);
        let valid = |v: Option<String>| parse_format("", &v?).ok();
        let from_flag = valid(self.flags(Setting::LogFormat).pop());
        let from_env = || valid(env(row.env?.0)?.into_string().ok());
        from_flag.or_else(from_env).unwrap_or(Format::Text)
    }

    fn to_config(
        &self,
        command: Vec<OsString>,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Config, String> {
        let mut s = Settings::default();
        let mut seen = Vec::new();
        for opt in OPTIONS {
            if seen.contains(&opt.setting) {
                continue;
            }
            seen.push(opt.setting);
            let from_flags = self.flags(opt.setting);
            let (values, from) = if !from_flags.is_empty() {
                (from_flags, Source::Flag(flag_name(opt)))
            } else if let Some(v) = opt
                .env
                .map(|(var, _)| env_value(env, var))
                .transpose()?
                .flatten()
            {
                let var = opt.env.map_or("", |(var, _)| var);
                let values = if opt.list { split_list(&v) } else { vec![v] };
                (values, Source::Env(var))
            } else if let Some((value, var)) = peer_value(opt, env) {
                (vec![value.to_string()], Source::Env(var))
            } else {
                continue;
            };
            s.apply(opt.setting, &values, from)?;
        }
        s.into_config(command)
    }
}

/// The first of `opt`'s peer variables that is set and means something.
fn peer_value(
    opt: &Opt,
    env: &dyn Fn(&str) -> Option<OsString>,
) -> Option<(&'static str, &'static str)> {
    opt.peers.iter().find_map(|peer| {
        let value = env(peer.var)?.into_string().ok()?;
        Some(((peer.means)(&value)?, peer.var))
    })
}

/// The row that names a setting in messages and owns its variable.
fn owner(setting: Setting) -> &'static Opt {
    let mut rows = OPTIONS.iter().filter(|o| o.setting == setting);
    let first = rows.next().unwrap_or(&OPTIONS[0]);
    OPTIONS
        .iter()
        .find(|o| o.setting == setting && o.env.is_some())
        .unwrap_or(first)
}

/// `--long`, or `-s` for a flag without a long form.
fn flag_name(opt: &Opt) -> String {
    let owner = owner(opt.setting);
    match (owner.long, owner.short) {
        (Some(l), _) => format!("--{l}"),
        (None, Some(s)) => format!("-{s}"),
        (None, None) => String::new(),
    }
}

/// Where a setting's values came from.
#[derive(Clone, Debug)]
enum Source {
    Flag(String),
    Env(&'static str),
}

impl Source {
    /// How messages name it: `--drain` or `USHER_DRAIN`.
    fn name(&self) -> &str {
        match self {
            Source::Flag(f) => f,
            Source::Env(v) => v,
        }
    }
}

fn value_of(flag: &str, args: Args) -> Result<String, String> {
    let v = args
        .next()
        .ok_or_else(|| format!("option {flag} needs a value"))?;
    v.into_string()
        .map_err(|v| format!("the value of {flag}, {v:?}, is not valid UTF-8"))
}

/// A variable's value; an empty one is an unset one (`ENV USHER_DRAIN=` in a
/// Dockerfile, or `-e USHER_DRAIN=` to clear an image's setting).
fn env_value(env: &dyn Fn(&str) -> Option<OsString>, name: &str) -> Result<Option<String>, String> {
    env(name)
        .filter(|v| !v.to_string_lossy().trim().is_empty())
        .map(|v| {
            v.into_string()
                .map_err(|v| format!("{name}={v:?} is not valid UTF-8"))
        })
        .transpose()
}

fn split_list(v: &str) -> Vec<String> {
    v.split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(String::from)
        .collect()
}

/// The settings as they are resolved, before the checks between them.
#[derive(Default)]
struct Settings {
    subreaper: bool,
    pdeathsig: Option<Signal>,
    post_start: Option<HookAction>,
    pre_stop: Option<HookAction>,
    policy: Policy,
    drain_from: Option<String>,
    grace_from: Option<String>,
    level: Option<Level>,
    format: Option<Format>,
}

impl Settings {
    /// What each option means: `values` as given (the last one counts for
    /// an option given once), `from` the flag or variable, for messages.
    fn apply(&mut self, setting: Setting, values: &[String], from: Source) -> Result<(), String> {
        let name = from.name();
        let last = values.last().map(String::as_str).unwrap_or_default();
        let p = &mut self.policy;
        match setting {
            Setting::Subreaper => self.subreaper = boolean(&from, last)?,
            Setting::SingleChild => p.single_child = boolean(&from, last)?,
            Setting::Rewrite => {
                for spec in values {
                    let (sig, to) = Rewrite::parse_spec(spec).map_err(|e| blame(name, e))?;
                    p.rewrite.set(sig, to);
                }
            }
            Setting::RemapExit => {
                for code in values {
                    p.remap_exit.push(parse_exit_code(name, code)?);
                }
            }
            Setting::Pdeathsig => {
                self.pdeathsig = Some(Signal::parse(last).map_err(|e| blame(name, e))?)
            }
            Setting::Drain => {
                p.drain = parse_duration(name, last)?;
                self.drain_from = Some(name.to_string());
            }
            Setting::GracePeriod => {
                p.grace = Some(parse_duration(name, last)?);
                self.grace_from = Some(name.to_string());
            }
            Setting::StopOn => p.stop_on = parse_stop_on(name, last)?,
            Setting::PreStop => {
                self.pre_stop = Some(HookAction::parse(last).map_err(|e| blame(name, e))?);
                p.hooks.push(HookKind::PreStop);
            }
            Setting::PostStart => {
                self.post_start = Some(HookAction::parse(last).map_err(|e| blame(name, e))?);
                p.hooks.push(HookKind::PostStart);
            }
            Setting::Verbosity => self.level = Some(level(&from, values)?),
            Setting::LogFormat => self.format = Some(parse_format(name, last)?),
            Setting::WarnOnReap => p.warn_on_reap = boolean(&from, last)?,
            Setting::Help | Setting::Version | Setting::License => {}
        }
        Ok(())
    }

    fn into_config(self, command: Vec<OsString>) -> Result<Config, String> {
        let policy = self.policy;
        if let Some(grace) = policy.grace {
            if policy.drain >= grace {
                let drain_from = self.drain_from.as_deref().unwrap_or("the default --drain");
                let grace_from = self.grace_from.as_deref().unwrap_or_default();
                return Err(format!(
                    "{drain_from} {} must be shorter than {grace_from} {}: the grace period counts from the same stop signal and must leave the app time to stop",
                    crate::log::secs(policy.drain),
                    crate::log::secs(grace)
                ));
            }
        }
        Ok(Config {
            command,
            subreaper: self.subreaper,
            pdeathsig: self.pdeathsig,
            post_start: self.post_start,
            pre_stop: self.pre_stop,
            policy,
            log: Logger {
                level: self.level.unwrap_or(Level::Info),
                format: self.format.unwrap_or(Format::Text),
            },
        })
    }
}

/// An error message prefixed with the flag or variable it is about.
fn blame(from: &str, e: String) -> String {
    format!("{from}: {e}")
}

/// A switch's own value, or a variable's `1`/`0` (and their spellings).
fn boolean(from: &Source, value: &str) -> Result<bool, String> {
    let v = value.trim().to_ascii_lowercase();
    match v.as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "0" | "false" | "no" | "off" | "" => Ok(false),
        _ => Err(format!(
            "{}={v:?} is not a boolean (use 1 or 0)",
            from.name()
        )),
    }
}

/// `-v`/`-q` flags move from info one step each; `USHER_LOG` names a level.
fn level(from: &Source, values: &[String]) -> Result<Level, String> {
    match from {
        Source::Flag(_) => {
            let steps = values.iter().map(|v| if v == "-1" { -1 } else { 1 }).sum();
            Ok(Level::Info.shifted(steps))
        }
        Source::Env(var) => {
            let v = values.last().map(String::as_str).unwrap_or_default();
            Level::parse(v)
                .ok_or_else(|| format!("{var}={v:?} is not one of error, warn, info, debug, trace"))
        }
    }
}

fn parse_format(from: &str, v: &str) -> Result<Format, String> {
    match v.trim() {
        "text" => Ok(Format::Text),
        "json" => Ok(Format::Json),
        other => Err(format!("{from} {other:?} is not text or json")),
    }
}

fn parse_exit_code(from: &str, text: &str) -> Result<i32, String> {
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
    let d = duration::parse(t).map_err(|e| match e {
        duration::Error::Overflow => {
            format!("{flag} {t:?} is longer than usher allows (at most 365d)")
        }
        duration::Error::Bad(why) => {
            format!("{flag} {t:?} is not a duration like 500ms, 15s or 1m30s ({why})")
        }
    })?;
    if d > LONGEST {
        return Err(format!(
            "{flag} {t:?} is longer than usher allows (at most 365d)"
        ));
    }
    Ok(d)
}

/// The app's command as text for messages.
pub fn show(arg: &OsStr) -> String {
    arg.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;
    use std::os::unix::ffi::OsStringExt;

    /// Arguments, or what a message must say; variables and their values.
    type Words = &'static [&'static str];
    type Vars = &'static [(&'static str, &'static str)];

    /// `parse` with `args` and the variables `env`, and nothing else.
    fn parse_os(args: &[OsString], env: &[(&str, OsString)]) -> Result<Parsed, Usage> {
        let env: HashMap<&str, OsString> = env.iter().cloned().collect();
        parse(args.iter().cloned(), |k| env.get(k).cloned())
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

    #[test]
    fn command_starts_at_first_non_option() {
        let c = run(&["-s", "app", "-v", "--", "x"], &[]).unwrap();
        assert_eq!(c.command, ["app", "-v", "--", "x"]);
        assert!(c.subreaper);
        let c = run(&["--", "-weird-name", "-s"], &[]).unwrap();
        assert_eq!(c.command, ["-weird-name", "-s"]);
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
        assert_eq!(c.policy.drain, Duration::from_secs(2));
        assert_eq!(c.policy.grace, Some(Duration::from_secs(10)));
        assert_eq!(c.policy.stop_on, [Signal::QUIT]);
        assert_eq!(
            c.pre_stop,
            Some(HookAction::Command(vec!["sleep".into(), "1".into()]))
        );
        assert_eq!(c.policy.hooks, [HookKind::PreStop]);
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
        assert_eq!(c.policy.drain, Duration::from_secs(1));
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
            assert_eq!(c.command, ["app"]);
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
            if let Some((var, example)) = opt.env {
                assert!(help.contains(&format!("{var}={example}")), "{var}");
            }
        }
        assert!(help.lines().all(|l| l.chars().count() <= 120), "{help}");
    }

    #[test]
    fn non_utf8_command_passes_through() {
        let weird = OsString::from_vec(vec![b'a', 0xff]);
        let Ok(Parsed::Run(c)) = parse(["printf".into(), weird.clone()], |_| None) else {
            panic!()
        };
        assert_eq!(c.command[1], weird);
        let Ok(Parsed::Run(c)) = parse([weird.clone()], |_| None) else {
            panic!()
        };
        assert_eq!(c.command[0], weird);
    }
}
