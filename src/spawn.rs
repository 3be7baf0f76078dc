//! Starting the app and the hooks: fork, a clean signal state, exec (or an HTTP request), and an honest error.
//!
//! The child gets its own process group, the terminal's foreground if asked,
//! default dispositions and an empty signal mask. An exec failure travels
//! back over a close-on-exec pipe, so usher can tell "not found" (127) from
//! "cannot run" (126) and say which, instead of guessing from an exit code.

use std::env;
use std::ffi::{CString, OsStr, OsString};
use std::fs::File;
use std::io::{self, Read, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

use crate::http;
use crate::process::Pid;
use crate::signals::SigSet;
use crate::sys;

/// The PATH execvp falls back to when none is set.
const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// Why a command could not be started.
#[derive(Debug)]
pub enum SpawnError {
    /// usher itself failed (fork, pipe): exit 125.
    Usher(&'static str, io::Error),
    /// The command was not found: exit 127.
    NotFound,
    /// Found but could not run (permission, format, arguments): exit 126.
    CannotRun(io::Error),
}

impl SpawnError {
    pub fn exit_code(&self) -> i32 {
        match self {
            SpawnError::Usher(..) => 125,
            SpawnError::NotFound => 127,
            SpawnError::CannotRun(_) => 126,
        }
    }

    /// One line naming the command and the reason.
    pub fn message(&self, command: &OsStr) -> String {
        let name = command.to_string_lossy();
        match self {
            SpawnError::Usher(what, e) => format!("cannot start {name:?}: {what} failed: {e}"),
            // The file is there, so what is missing is what exec needs to
            // run it: the #! line's interpreter or the ELF loader (a musl
            // binary in a glibc image, or the other way round).
            SpawnError::NotFound if name.contains('/') && Path::new(command).exists() => {
                format!("cannot run {name:?}: its #! interpreter or ELF loader is missing (no such file)")
            }
            SpawnError::NotFound if name.contains('/') => {
                format!("cannot run {name:?}: no such file")
            }
            SpawnError::NotFound => match find_in_path(command) {
                Some(found) => format!(
                    "cannot run {name:?}: found {}, but its #! interpreter or ELF loader is missing",
                    found.display()
                ),
                None => format!("cannot run {name:?}: command not found in PATH"),
            },
            SpawnError::CannotRun(e) => {
                let why = match e.raw_os_error() {
                    Some(libc::EACCES) if Path::new(command).is_dir() => "it is a directory".into(),
                    Some(libc::EACCES) => {
                        "permission denied (is it executable, and its directory searchable?)".into()
                    }
                    Some(libc::ENOEXEC) => {
                        "not an executable: exec format error (a script needs a #! line)".into()
                    }
                    Some(libc::E2BIG) => "argument list too long".into(),
                    _ => e.to_string(),
                };
                format!("cannot run {name:?}: {why}")
            }
        }
    }
}

/// The first file named `name` in PATH, for a better message after ENOENT.
fn find_in_path(name: &OsStr) -> Option<std::path::PathBuf> {
    let path = env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|p| p.is_file())
}

/// Starts `argv` as a child in a new process group; with `foreground`, that
/// group takes over the terminal on stdin. Returns once the exec succeeded.
pub fn spawn(argv: &[OsString], foreground: bool) -> Result<Pid, SpawnError> {
    let args = c_strings(argv)?;
    let candidates = candidates(&argv[0])?;
    let mut ptrs: Vec<*const libc::c_char> = args.iter().map(|a| a.as_ptr()).collect();
    ptrs.push(std::ptr::null());

    // Only SIG_IGN survives exec, so only the ignored signals need a reset
    // in the child: a handful of syscalls instead of one per signal.
    let ignored = sys::ignored_signals();
    let (errors_in, errors_out) = sys::pipe(false).map_err(|e| SpawnError::Usher("pipe", e))?;
    let (mut errors_in, errors_out) = (File::from(errors_in), File::from(errors_out));
    let pid = sys::fork().map_err(|e| SpawnError::Usher("fork", e))?;
    if pid == 0 {
        drop(errors_in);
        let err = become_command(&candidates, &ptrs, foreground, ignored);
        let code = err.raw_os_error().unwrap_or(libc::EINVAL);
        // Four bytes into an empty pipe: one write, whole or not at all.
        let _ = (&errors_out).write(&code.to_ne_bytes());
        sys::exit_now(127);
    }
    drop(errors_out);

    let mut buf = [0u8; 4];
    let got = read_retrying(&mut errors_in, &mut buf)
        .map_err(|e| SpawnError::Usher("reading the exec status", e))?;
    if got == 0 {
        return Ok(pid); // the pipe closed on exec: the command runs
    }
    // The child could not exec; collect it so no zombie is left behind.
    let _ = sys::reap_pid(pid);
    let errno = i32::from_ne_bytes(buf);
    match errno {
        libc::ENOENT | libc::ENOTDIR => Err(SpawnError::NotFound),
        _ => Err(SpawnError::CannotRun(io::Error::from_raw_os_error(errno))),
    }
}

/// Starts an HTTP hook: a child of usher in a process group of its own
/// that makes the request (every wait bounded), writes the outcome into the
/// returned pipe and exits 0 on success. usher reads the pipe once it has
/// reaped the child: the bytes are there by then, or never will be.
pub fn request(req: &http::Request) -> Result<(Pid, File), SpawnError> {
    let (answer_in, answer_out) = sys::pipe(true).map_err(|e| SpawnError::Usher("pipe", e))?;
    let pid = sys::fork().map_err(|e| SpawnError::Usher("fork", e))?;
    if pid == 0 {
        drop(answer_in);
        let _ = sys::setpgid_self();
        // Unblocked, so that a stop signal for leftovers ends it too.
        let _ = sys::set_sigmask(SigSet::EMPTY);
        let outcome = http::request(req);
        // Under PIPE_BUF into an empty pipe: one write, whole.
        let _ = File::from(answer_out).write(&outcome.encode());
        sys::exit_now(if outcome.ok() { 0 } else { 1 });
    }
    drop(answer_out);
    Ok((pid, File::from(answer_in)))
}

/// What an HTTP hook's child wrote before it ended, if anything.
pub fn answer(mut pipe: File) -> Option<http::Outcome> {
    let mut buf = [0u8; 512];
    let got = read_retrying(&mut pipe, &mut buf).ok()?;
    http::Outcome::decode(&buf[..got])
}

/// One read, again after an interrupting signal; 0 at end of file.
fn read_retrying(file: &mut File, buf: &mut [u8]) -> io::Result<usize> {
    loop {
        match file.read(buf) {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            got => return got,
        }
    }
}

/// In the forked child: set up the process and exec; returns the error that
/// stopped every attempt.
fn become_command(
    candidates: &[CString],
    argv: &[*const libc::c_char],
    foreground: bool,
    ignored: SigSet,
) -> io::Error {
    // Errors here are not fatal: a child in usher's group still runs.
    let _ = sys::setpgid_self();
    if foreground {
        let _ = sys::take_terminal(libc::STDIN_FILENO);
    }
    sys::reset_dispositions(ignored);
    if let Err(e) = sys::set_sigmask(SigSet::EMPTY) {
        return e;
    }
    // Like execvp: try each PATH entry; EACCES is remembered but the search
    // goes on; any error other than "not here" ends it. Unlike glibc's
    // execvp, a file without a #! line is an error, not a shell script.
    let mut denied = None;
    for path in candidates {
        let err = sys::execve(path, argv);
        match err.raw_os_error() {
            Some(libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT) => {}
            Some(libc::EACCES) => denied = Some(err),
            _ => return err,
        }
    }
    denied.unwrap_or_else(|| io::Error::from_raw_os_error(libc::ENOENT))
}

fn c_strings(argv: &[OsString]) -> Result<Vec<CString>, SpawnError> {
    argv.iter()
        .map(|a| {
            CString::new(a.as_bytes())
                .map_err(|_| SpawnError::CannotRun(io::Error::from_raw_os_error(libc::EINVAL)))
        })
        .collect()
}

/// The paths to try for `name`: itself if it has a slash, else each PATH entry.
fn candidates(name: &OsStr) -> Result<Vec<CString>, SpawnError> {
    let bad = |_| SpawnError::CannotRun(io::Error::from_raw_os_error(libc::EINVAL));
    if name.as_bytes().contains(&b'/') {
        return Ok(vec![CString::new(name.as_bytes()).map_err(bad)?]);
    }
    let path = env::var_os("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    path.as_bytes()
        .split(|&b| b == b':')
        .map(|dir| {
            let dir = if dir.is_empty() { b"." as &[u8] } else { dir };
            let mut full = dir.to_vec();
            full.push(b'/');
            full.extend_from_slice(name.as_bytes());
            CString::new(full).map_err(bad)
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_path_rules() {
        let c = candidates(OsStr::new("./app")).unwrap();
        assert_eq!(c, [CString::new("./app").unwrap()]);
        let c = candidates(OsStr::new("sh")).unwrap();
        assert!(c.iter().all(|p| p.to_bytes().ends_with(b"/sh")));
    }

    #[test]
    fn messages_name_command_and_reason() {
        let cmd = OsStr::new("nope");
        assert_eq!(SpawnError::NotFound.exit_code(), 127);
        assert!(SpawnError::NotFound
            .message(cmd)
            .contains("\"nope\": command not found"));
        let e = SpawnError::CannotRun(io::Error::from_raw_os_error(libc::EACCES));
        assert_eq!(e.exit_code(), 126);
        assert!(e.message(cmd).contains("permission denied"));
        let e = SpawnError::CannotRun(io::Error::from_raw_os_error(libc::ENOEXEC));
        assert!(e.message(cmd).contains("exec format error"));
        assert_eq!(
            SpawnError::Usher("fork", io::Error::from_raw_os_error(libc::EAGAIN)).exit_code(),
            125
        );
    }
}
