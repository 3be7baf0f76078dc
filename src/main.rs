//! usher's entry point: block signals first, read the command line, run the app (or a check), exit with its code.

use std::process::ExitCode;

use usher::cli::{self, Parsed};
use usher::log::{self, Format, Level, Logger};
use usher::signals::{SigSet, Signal};
use usher::{check, codes, driver, sys};

fn main() -> ExitCode {
    // Before anything else, so no signal can arrive unhandled and be lost:
    // blocked signals wait in the kernel until the signalfd reads them.
    if let Err(e) = sys::set_sigmask(Signal::blocked_set()) {
        log::plain(&format!("error: cannot block signals: {e}"));
        return ExitCode::from(codes::USHER as u8);
    }
    // Of usher's own dispositions only SIGCHLD matters: an inherited SIG_IGN
    // there would make the kernel reap children and lose their exit codes.
    // Other ignored signals are still queued while blocked; the app gets
    // every one reset (spawn.rs).
    let mut chld = SigSet::EMPTY;
    chld.insert(Signal::CHLD);
    sys::reset_dispositions(chld);

    let parsed = cli::parse(std::env::args_os().skip(1), |name| std::env::var_os(name));
    let config = match parsed {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Check(c)) => {
            // Not an init: a stop signal ends a check as it ends any command.
            let _ = sys::set_sigmask(SigSet::EMPTY);
            return ExitCode::from(check::run(&c));
        }
        Ok(Parsed::Help) => return say(&cli::help()),
        Ok(Parsed::Version) => return say(&format!("usher {}\n", cli::VERSION)),
        Ok(Parsed::License) => return say(cli::LICENSE),
        Err(usage) => {
            usage_error(&usage);
            return ExitCode::from(codes::USAGE);
        }
    };
    ExitCode::from(driver::run(*config).clamp(0, 255) as u8)
}

/// Reports a usage error in the log format the command line asked for.
fn usage_error(usage: &cli::Usage) {
    match usage.format {
        Format::Json => Logger {
            level: Level::Error,
            format: Format::Json,
        }
        .error(&usage.message, &[]),
        Format::Text => log::plain(&format!("error: {}", usage.message)),
    }
}

/// Prints to stdout; a closed pipe or a full disk is not worth a panic
/// (SIGPIPE is blocked, so print! would panic on EPIPE).
fn say(text: &str) -> ExitCode {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
    ExitCode::SUCCESS
}
