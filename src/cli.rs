//! The command line and its environment variables, turned into a [`Config`].
//!
//! Hand-written rather than clap: usher's grammar is small and fixed (tini's
//! and dumb-init's flags, a `--`, then the app's words untouched), and clap
//! would more than double the binary. See docs/design.md.

use std::ffi::{OsStr, OsString};
use std::time::Duration;

use crate::log::{Format, Level, Logger};
use crate::machine::Policy;
use crate::signals::{Rewrite, Signal};
use crate::words;

/// Everything usher was asked to do.
#[derive(Clone, Debug)]
pub struct Config {
    pub command: Vec<OsString>,
    pub subreaper: bool,
    pub pdeathsig: Option<Signal>,
    pub pre_stop: Option<Vec<String>>,
    pub policy: Policy,
    pub log: Logger,
}

#[derive(Debug)]
pub enum Parsed {
    Run(Box<Config>),
    Help,
    Version,
}

pub const VERSION: &str = env!("CARGO_PKG_VERSION");

/// Every variable usher reads; another `USHER_*` is most likely a typo.
pub const ENV_VARS: &[&str] = &[
    "USHER_SUBREAPER",
    "USHER_SINGLE_CHILD",
    "USHER_REWRITE",
    "USHER_PDEATHSIG",
    "USHER_REMAP_EXIT",
    "USHER_LOG",
    "USHER_LOG_FORMAT",
    "USHER_DRAIN",
    "USHER_GRACE_PERIOD",
    "USHER_STOP_ON",
    "USHER_PRE_STOP",
];

/// `USHER_*` variables in `names` that usher does not know.
pub fn unknown_vars(names: impl Iterator<Item = OsString>) -> Vec<String> {
    names
        .filter_map(|n| n.into_string().ok())
        .filter(|n| n.starts_with("USHER_") && !ENV_VARS.contains(&n.as_str()))
        .collect()
}

pub const HELP: &str = "\
usher — a tiny PID 1 for containers: starts your app, reaps zombies,
forwards signals, and shuts the app down gracefully.

Usage: usher [OPTIONS] [--] COMMAND [ARGS...]

Everything from COMMAND on is the app's; usher reads nothing after it.
Every option can also be set by its environment variable; the flag wins.

Options:
  -s, --subreaper           reap orphans when not PID 1 (child subreaper)   USHER_SUBREAPER=1
  -c, --single-child        forward signals to the child only, not its
                            process group                                  USHER_SINGLE_CHILD=1
  -g                        forward to the child's process group (tini
                            compatibility; this is the default)
  -r, --rewrite FROM:TO     forward TO instead of FROM; TO=0 drops FROM;
                            repeatable                                     USHER_REWRITE=TERM:QUIT,HUP:0
  -p, --pdeathsig SIG       signal usher gets when its parent dies         USHER_PDEATHSIG=KILL
  -e, --remap-exit CODE     report the app's exit code CODE as 0;
                            repeatable                                     USHER_REMAP_EXIT=143,130
      --drain DURATION      after the first stop signal, wait this long
                            before forwarding it (default 0s)              USHER_DRAIN=5s
      --grace-period DUR    from the first stop signal, SIGKILL whatever
                            is left after this long (default: never)       USHER_GRACE_PERIOD=25s
      --stop-on SIGNALS     signals that start the shutdown sequence
                            (default TERM,INT)                             USHER_STOP_ON=QUIT
      --pre-stop COMMAND    run COMMAND (split into words like a shell,
                            no shell) when the shutdown starts; forward
                            the stop signal only after it exits            USHER_PRE_STOP='/app/deregister'
  -v, --verbose             more log (repeatable); -q, --quiet: less       USHER_LOG=error|warn|info|debug|trace
      --log-format FORMAT   text or json (one object per line)             USHER_LOG_FORMAT=json
  -h, --help                this help
  -V, --version             usher's version

Signals are names with or without SIG (TERM, SIGHUP, RTMIN+2) or numbers.
Durations carry a unit: 500ms, 15s, 1m30s.

In a Dockerfile:
  COPY usher /usr/local/bin/usher
  ENTRYPOINT [\"/usr/local/bin/usher\", \"--drain\", \"5s\", \"--grace-period\", \"25s\", \"--\"]
  CMD [\"/app/server\", \"--port\", \"8080\"]

Exit status: the app's (128+N if killed by signal N; 0 if remapped; 137 if
usher killed it at the grace period); 2 usage error; 125 usher failed;
126 the command cannot run; 127 the command was not found.
";

/// Parses `args` (without the program name) with `env` looking up variables.
pub fn parse<I, E>(args: I, env: E) -> Result<Parsed, String>
where
    I: IntoIterator<Item = OsString>,
    E: Fn(&str) -> Option<OsString>,
{
    let mut flags = Flags::default();
    let mut args = args.into_iter();
    let mut command = Vec::new();
    while let Some(arg) = args.next() {
        let Some(text) = arg.to_str() else {
            if arg.as_encoded_bytes().starts_with(b"-") {
                return Err(format!("option {arg:?} is not valid UTF-8"));
            }
            command.push(arg);
            break;
        };
        if text == "--" {
            break;
        } else if let Some(long) = text.strip_prefix("--") {
            if flags.long(long, &mut args)? {
                return flags
                    .early
                    .ok_or_else(|| "internal: early exit without a reason".into());
            }
        } else if text.len() > 1 && text.starts_with('-') {
            if flags.shorts(&text[1..], &mut args)? {
                return flags
                    .early
                    .ok_or_else(|| "internal: early exit without a reason".into());
            }
        } else {
            command.push(arg);
            break;
        }
    }
    command.extend(args);
    if command.is_empty() {
        return Err("no command given: usage is usher [OPTIONS] [--] COMMAND [ARGS...]".into());
    }
    if command[0].is_empty() {
        return Err("the command is an empty string".into());
    }
    flags
        .into_config(command, &env)
        .map(|c| Parsed::Run(Box::new(c)))
}

/// Flags as given; `None` where the flag was absent (the env var may apply).
#[derive(Default)]
struct Flags {
    subreaper: Option<bool>,
    single_child: Option<bool>,
    rewrite: Vec<String>,
    pdeathsig: Option<String>,
    remap: Vec<String>,
    verbosity: Option<i32>,
    log_format: Option<String>,
    drain: Option<String>,
    grace: Option<String>,
    stop_on: Option<String>,
    pre_stop: Option<String>,
    early: Option<Parsed>,
}

type Args<'a> = &'a mut dyn Iterator<Item = OsString>;

impl Flags {
    /// One `--name` or `--name=value`; true when usher should stop parsing (help, version).
    fn long(&mut self, long: &str, args: Args) -> Result<bool, String> {
        let (name, inline) = match long.split_once('=') {
            Some((n, v)) => (n, Some(v.to_string())),
            None => (long, None),
        };
        let takes_value = matches!(
            name,
            "rewrite"
                | "pdeathsig"
                | "remap-exit"
                | "log-format"
                | "drain"
                | "grace-period"
                | "stop-on"
                | "pre-stop"
        );
        let is_switch = matches!(
            name,
            "subreaper" | "single-child" | "verbose" | "quiet" | "help" | "version"
        );
        if !takes_value && !is_switch {
            return Err(format!(
                "unknown option {:?} (see usher --help)",
                format!("--{name}")
            ));
        }
        if !takes_value && inline.is_some() {
            return Err(format!("option --{name} takes no value"));
        }
        let mut value = || match inline.clone() {
            Some(v) => Ok(v),
            None => value_of(&format!("--{name}"), args),
        };
        match name {
            "subreaper" => self.subreaper = Some(true),
            "single-child" => self.single_child = Some(true),
            "verbose" => self.shift_verbosity(1),
            "quiet" => self.shift_verbosity(-1),
            "rewrite" => self.rewrite.push(value()?),
            "pdeathsig" => self.pdeathsig = Some(value()?),
            "remap-exit" => self.remap.push(value()?),
            "log-format" => self.log_format = Some(value()?),
            "drain" => self.drain = Some(value()?),
            "grace-period" => self.grace = Some(value()?),
            "stop-on" => self.stop_on = Some(value()?),
            "pre-stop" => self.pre_stop = Some(value()?),
            "help" => self.early = Some(Parsed::Help),
            "version" => self.early = Some(Parsed::Version),
            _ => {
                return Err(format!(
                    "unknown option {:?} (see usher --help)",
                    format!("--{name}")
                ))
            }
        }
        Ok(self.early.is_some())
    }

    /// A bundle of short flags like `-sv` or `-pKILL`.
    fn shorts(&mut self, bundle: &str, args: Args) -> Result<bool, String> {
        for (i, c) in bundle.char_indices() {
            let rest = &bundle[i + c.len_utf8()..];
            let mut value = || {
                if rest.is_empty() {
                    value_of(&format!("-{c}"), args)
                } else {
                    Ok(rest.to_string())
                }
            };
            match c {
                's' => self.subreaper = Some(true),
                'c' => self.single_child = Some(true),
                'g' => self.single_child = Some(false),
                'v' => self.shift_verbosity(1),
                'q' => self.shift_verbosity(-1),
                'h' => self.early = Some(Parsed::Help),
                'V' => self.early = Some(Parsed::Version),
                'r' | 'p' | 'e' => {
                    let v = value()?;
                    match c {
                        'r' => self.rewrite.push(v),
                        'p' => self.pdeathsig = Some(v),
                        _ => self.remap.push(v),
                    }
                    return Ok(self.early.is_some());
                }
                _ if bundle.len() > 1 => {
                    return Err(format!(
                        "unknown option {c:?} in {:?} (see usher --help)",
                        format!("-{bundle}")
                    ))
                }
                _ => {
                    return Err(format!(
                        "unknown option {:?} (see usher --help)",
                        format!("-{c}")
                    ))
                }
            }
            if self.early.is_some() {
                return Ok(true);
            }
        }
        Ok(false)
    }

    fn shift_verbosity(&mut self, by: i32) {
        *self.verbosity.get_or_insert(0) += by;
    }

    fn into_config(
        self,
        command: Vec<OsString>,
        env: &dyn Fn(&str) -> Option<OsString>,
    ) -> Result<Config, String> {
        // An empty variable is an unset one (`ENV USHER_DRAIN=` in a
        // Dockerfile, or `-e USHER_DRAIN=` to clear an image's setting).
        let get = |name: &str| -> Result<Option<String>, String> {
            env(name)
                .filter(|v| !v.to_string_lossy().trim().is_empty())
                .map(|v| {
                    v.into_string()
                        .map_err(|v| format!("{name}={v:?} is not valid UTF-8"))
                })
                .transpose()
        };
        let subreaper = pick_bool(self.subreaper, "USHER_SUBREAPER", &get)?;
        let single_child = pick_bool(self.single_child, "USHER_SINGLE_CHILD", &get)?;

        let mut policy = Policy {
            single_child,
            ..Policy::default()
        };
        let (specs, from) = list(self.rewrite, "--rewrite", "USHER_REWRITE", &get)?;
        for spec in specs {
            let (sig, to) = Rewrite::parse_spec(&spec).map_err(|e| blame(from, e))?;
            policy.rewrite.set(sig, to);
        }
        let (codes, from) = list(self.remap, "--remap-exit", "USHER_REMAP_EXIT", &get)?;
        for code in codes {
            policy.remap_exit.push(parse_exit_code(from, &code)?);
        }
        if let Some((v, from)) = pick(self.stop_on, "--stop-on", "USHER_STOP_ON", &get)? {
            policy.stop_on = parse_stop_on(from, &v)?;
        }
        let mut drain_from = "the default --drain";
        if let Some((v, from)) = pick(self.drain, "--drain", "USHER_DRAIN", &get)? {
            policy.drain = parse_duration(from, &v)?;
            drain_from = from;
        }
        if let Some((v, from)) = pick(self.grace, "--grace-period", "USHER_GRACE_PERIOD", &get)? {
            let grace = parse_duration(from, &v)?;
            if policy.drain >= grace {
                return Err(format!(
                    "{drain_from} {} must be shorter than {from} {}: the grace period counts from the same stop signal and must leave the app time to stop",
                    humantime::format_duration(policy.drain),
                    humantime::format_duration(grace)
                ));
            }
            policy.grace = Some(grace);
        }
        let pre_stop = match pick(self.pre_stop, "--pre-stop", "USHER_PRE_STOP", &get)? {
            Some((line, from)) => Some(words::split(&line).map_err(|e| blame(from, e))?),
            None => None,
        };
        policy.pre_stop = pre_stop.is_some();

        let pdeathsig = match pick(self.pdeathsig, "--pdeathsig", "USHER_PDEATHSIG", &get)? {
            Some((v, from)) => Some(Signal::parse(&v).map_err(|e| blame(from, e))?),
            None => None,
        };
        let log = Logger {
            level: log_level(self.verbosity, &get)?,
            format: log_format(self.log_format, &get)?,
        };
        Ok(Config {
            command,
            subreaper,
            pdeathsig,
            pre_stop,
            policy,
            log,
        })
    }
}

fn value_of(flag: &str, args: Args) -> Result<String, String> {
    let v = args
        .next()
        .ok_or_else(|| format!("option {flag} needs a value"))?;
    v.into_string()
        .map_err(|v| format!("the value of {flag}, {v:?}, is not valid UTF-8"))
}

type Get<'a> = dyn Fn(&str) -> Result<Option<String>, String> + 'a;

/// The flag's value if given, else the environment variable's, with the
/// name of where it came from (for messages).
fn pick(
    flag: Option<String>,
    flag_name: &'static str,
    var: &'static str,
    get: &Get,
) -> Result<Option<(String, &'static str)>, String> {
    match flag {
        Some(v) => Ok(Some((v, flag_name))),
        None => Ok(get(var)?.map(|v| (v, var))),
    }
}

/// An error message prefixed with the flag or variable it is about.
fn blame(from: &str, e: String) -> String {
    format!("{from}: {e}")
}

fn pick_bool(flag: Option<bool>, var: &str, get: &Get) -> Result<bool, String> {
    if let Some(b) = flag {
        return Ok(b);
    }
    match get(var)?.as_deref().map(|s| s.trim().to_ascii_lowercase()) {
        None => Ok(false),
        Some(v) => match v.as_str() {
            "1" | "true" | "yes" | "on" => Ok(true),
            "0" | "false" | "no" | "off" | "" => Ok(false),
            _ => Err(format!("{var}={v:?} is not a boolean (use 1 or 0)")),
        },
    }
}

/// Repeated flags, or else the comma-separated variable: flags replace it whole.
fn list(
    flags: Vec<String>,
    flag_name: &'static str,
    var: &'static str,
    get: &Get,
) -> Result<(Vec<String>, &'static str), String> {
    if !flags.is_empty() {
        return Ok((flags, flag_name));
    }
    let items = get(var)?
        .map(|v| {
            v.split(',')
                .map(str::trim)
                .filter(|s| !s.is_empty())
                .map(String::from)
                .collect()
        })
        .unwrap_or_default();
    Ok((items, var))
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

/// A humantime duration with an explicit unit (`500ms`, `15s`, `1m30s`).
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
    let d = humantime::parse_duration(t).map_err(|e| match e {
        humantime::DurationError::NumberOverflow => {
            format!("{flag} {t:?} is longer than usher allows (at most 365d)")
        }
        e => format!("{flag} {t:?} is not a duration like 500ms, 15s or 1m30s ({e})"),
    })?;
    if d > LONGEST {
        return Err(format!(
            "{flag} {t:?} is longer than usher allows (at most 365d)"
        ));
    }
    Ok(d)
}

fn log_level(verbosity: Option<i32>, get: &Get) -> Result<Level, String> {
    if let Some(steps) = verbosity {
        return Ok(Level::Info.shifted(steps));
    }
    match get("USHER_LOG")? {
        None => Ok(Level::Info),
        Some(v) => Level::parse(&v).ok_or_else(|| {
            format!("USHER_LOG={v:?} is not one of error, warn, info, debug, trace")
        }),
    }
}

fn log_format(flag: Option<String>, get: &Get) -> Result<Format, String> {
    match pick(flag, "--log-format", "USHER_LOG_FORMAT", get)? {
        None => Ok(Format::Text),
        Some((v, from)) => match v.trim() {
            "text" => Ok(Format::Text),
            "json" => Ok(Format::Json),
            other => Err(format!("{from} {other:?} is not text or json")),
        },
    }
}

/// The app's command as text for messages.
pub fn show(arg: &OsStr) -> String {
    arg.to_string_lossy().into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn run(args: &[&str], env: &[(&str, &str)]) -> Result<Config, String> {
        let env: HashMap<String, OsString> = env
            .iter()
            .map(|(k, v)| (k.to_string(), OsString::from(v)))
            .collect();
        match parse(args.iter().map(OsString::from), |k| env.get(k).cloned())? {
            Parsed::Run(c) => Ok(*c),
            other => Err(format!("expected a run, got {other:?}")),
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
        assert_eq!(c.pre_stop, Some(vec!["sleep".into(), "1".into()]));
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

    #[test]
    fn usage_errors_say_what_is_wrong() {
        type Case<'a> = (&'a [&'a str], &'a [(&'a str, &'a str)], &'a str);
        let cases: &[Case] = &[
            (&[], &[], "no command"),
            (&["-s"], &[], "no command"),
            (&["--bogus", "app"], &[], "unknown option \"--bogus\""),
            (&["--bogus=1", "app"], &[], "unknown option \"--bogus\""),
            (&["-x", "app"], &[], "unknown option \"-x\""),
            (&["-s-", "app"], &[], "unknown option '-' in \"-s-\""),
            (&["--a\nb", "app"], &[], "unknown option \"--a\\nb\""),
            (&["-r", "TERM:STOP", "app"], &[], "freeze"),
            (&["--drain", "-1s", "app"], &[], "cannot be negative"),
            (
                &["--drain", "99999999999999999999s", "app"],
                &[],
                "at most 365d",
            ),
            (&["-p"], &[], "needs a value"),
            (&["-p", "BOGUS", "app"], &[], "unknown signal"),
            (&["-r", "TERM", "app"], &[], "not FROM:TO"),
            (&["-r", "KILL:TERM", "app"], &[], "never forwarded"),
            (&["-e", "256", "app"], &[], "0 to 255"),
            (&["--drain", "5", "app"], &[], "no unit"),
            (&["--drain", "soon", "app"], &[], "not a duration"),
            (
                &["--drain", "5s", "--grace-period", "5s", "app"],
                &[],
                "must be shorter",
            ),
            (&["--stop-on", "TERM,KILL", "app"], &[], "never forwarded"),
            (
                &["--pre-stop", "sh -c 'x", "app"],
                &[],
                "unclosed single quote",
            ),
            (&["--subreaper=1", "app"], &[], "takes no value"),
            (&["--log-format", "xml", "app"], &[], "not text or json"),
            (&["app"], &[("USHER_SUBREAPER", "maybe")], "not a boolean"),
            (&["app"], &[("USHER_LOG", "loud")], "USHER_LOG"),
            (
                &["app"],
                &[("USHER_GRACE_PERIOD", "-1s")],
                "USHER_GRACE_PERIOD \"-1s\"",
            ),
            (
                &["app"],
                &[("USHER_DRAIN", "5")],
                "USHER_DRAIN \"5\" has no unit",
            ),
            (&["app"], &[("USHER_STOP_ON", "TERM;INT")], "USHER_STOP_ON"),
            (
                &["app"],
                &[("USHER_REWRITE", "TERM")],
                "USHER_REWRITE: rewrite \"TERM\"",
            ),
            (
                &["app"],
                &[("USHER_PDEATHSIG", "NOPE")],
                "USHER_PDEATHSIG: unknown signal",
            ),
            (
                &["app"],
                &[("USHER_REMAP_EXIT", "x")],
                "USHER_REMAP_EXIT \"x\"",
            ),
            (&["app"], &[("USHER_PRE_STOP", "'")], "USHER_PRE_STOP: "),
            (
                &["--grace-period", "0s", "app"],
                &[],
                "the default --drain 0s must be shorter than --grace-period 0s",
            ),
            (&["--drain", "400d", "app"], &[], "at most 365d"),
            (&[""], &[], "empty string"),
        ];
        for (args, env, want) in cases {
            let err = run(args, env).expect_err(&format!("{args:?} {env:?} should fail"));
            assert!(
                err.contains(want),
                "{args:?}: {err:?} should mention {want:?}"
            );
        }
    }

    #[test]
    fn non_utf8_command_passes_through() {
        use std::os::unix::ffi::OsStringExt;
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
