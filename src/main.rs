//! usher's entry point: block signals first, read the command line, run the app (or a check), exit with its code.
//!
//! Built without std (docs/design.md, "Size"): the C runtime calls `main`
//! with argc and argv, the allocator is the C library's malloc, and a panic
//! (which must never happen) prints one line and aborts.
// Checked as a test target by clippy --all-targets: there std and its
// harness bring their own runtime, so what replaces them is left out.
#![cfg_attr(not(test), no_std)]
#![cfg_attr(not(test), no_main)]
#![cfg_attr(test, allow(dead_code))]

extern crate alloc;

use alloc::format;

use usher::cli::{self, Parsed};
use usher::log::{self, Format, Level, Logger};
use usher::signals::{SigSet, Signal};
use usher::{check, codes, driver, sys};

#[global_allocator]
static MALLOC: sys::Malloc = sys::Malloc;

#[cfg(not(test))]
#[panic_handler]
fn panic(info: &core::panic::PanicInfo<'_>) -> ! {
    sys::panicked(info)
}

/// Never called: nothing unwinds (panic = "abort"), but the precompiled
/// `alloc` and `core` name these two symbols, which std would provide (a
/// static glibc build gets `_Unwind_Resume` from gcc's libgcc_eh).
#[cfg(not(test))]
#[no_mangle]
extern "C" fn rust_eh_personality() {}

#[cfg(not(any(test, all(target_env = "gnu", target_feature = "crt-static"))))]
#[no_mangle]
extern "C" fn _Unwind_Resume() -> ! {
    sys::panicked_unwinding()
}

#[cfg(not(test))]
#[no_mangle]
extern "C" fn main(argc: libc::c_int, argv: *const *const libc::c_char) -> libc::c_int {
    // SAFETY: the C runtime passes main its argc and argv.
    let args = unsafe { sys::args(argc, argv) };
    usher(args)
}

fn usher(args: alloc::vec::Vec<alloc::vec::Vec<u8>>) -> libc::c_int {
    // Before anything else, so no signal can arrive unhandled and be lost:
    // blocked signals wait in the kernel until the signalfd reads them.
    if let Err(e) = sys::set_sigmask(Signal::blocked_set()) {
        log::plain(&format!("error: cannot block signals: {e}"));
        return codes::USHER;
    }
    // Of usher's own dispositions only SIGCHLD matters: an inherited SIG_IGN
    // there would make the kernel reap children and lose their exit codes.
    // Other ignored signals are still queued while blocked; the app gets
    // every one reset (spawn.rs).
    let mut chld = SigSet::EMPTY;
    chld.insert(Signal::CHLD);
    sys::reset_dispositions(chld);

    let mut args = args.into_iter();
    let arg0 = args.next();
    let config = match cli::parse(args, sys::env_var) {
        Ok(Parsed::Run(config)) => config,
        Ok(Parsed::Check(c)) => {
            // Not an init: a stop signal ends a check as it ends any command.
            let _ = sys::set_sigmask(SigSet::EMPTY);
            return check::run(&c).into();
        }
        Ok(Parsed::Help) => return say(&cli::help()),
        Ok(Parsed::Version) => return say(&format!("usher {}\n", cli::VERSION)),
        Ok(Parsed::License) => return say(cli::LICENSE),
        Err(usage) => {
            usage_error(&usage);
            return codes::USAGE.into();
        }
    };
    if let Err(message) = driver::termination_log_usable(&config.termination_log) {
        let format = config.log.format;
        usage_error(&cli::Usage { message, format });
        return codes::USAGE.into();
    }
    driver::run(*config, arg0).clamp(0, 255)
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

/// Prints to stdout; a closed pipe or a full disk is not worth a complaint.
fn say(text: &str) -> libc::c_int {
    let _ = sys::write_all_fd(libc::STDOUT_FILENO, text.as_bytes());
    0
}
