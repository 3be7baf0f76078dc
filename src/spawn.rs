//! Starting the app and the hooks: a command (or usher itself for an HTTP request) in a clean signal state, and an honest error.
//!
//! The child gets its own process group, the terminal's foreground if asked,
//! default dispositions and an empty signal mask. An exec failure travels
//! back over a close-on-exec pipe, so usher can tell "not found" (127) from
//! "cannot run" (126) and say which, instead of guessing from an exit code.

use alloc::format;
use alloc::string::{String, ToString};
use alloc::vec;
use alloc::vec::Vec;

use alloc::ffi::CString;

use crate::sys::{io, FileKind, OwnedFd};

use crate::codes;
use crate::hook::{Outcome, Request};
use crate::process::Pid;
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
            SpawnError::Usher(..) => codes::USHER,
            SpawnError::NotFound => codes::NOT_FOUND,
            SpawnError::CannotRun(_) => codes::CANNOT_RUN,
        }
    }

    /// One line naming the command and the reason.
    pub fn message(&self, command: &[u8]) -> String {
        let name = String::from_utf8_lossy(command);
        match self {
            SpawnError::Usher(what, e) => format!("cannot start {name:?}: {what} failed: {e}"),
            // The file is there, so what is missing is what exec needs to
            // run it: the #! line's interpreter or the ELF loader (a musl
            // binary in a glibc image, or the other way round).
            SpawnError::NotFound if name.contains('/') && sys::file_kind(command).is_some() => {
                format!("cannot run {name:?}: its #! interpreter or ELF loader is missing (no such file)")
            }
            SpawnError::NotFound if name.contains('/') => {
                format!("cannot run {name:?}: no such file")
            }
            SpawnError::NotFound => match find_in_path(command) {
                Some(found) => format!(
                    "cannot run {name:?}: found {found}, but its #! interpreter or ELF loader is missing"
                ),
                None => format!("cannot run {name:?}: command not found in PATH"),
            },
            SpawnError::CannotRun(e) => {
                let why = match e.raw_os_error() {
                    Some(libc::EACCES) if sys::file_kind(command) == Some(FileKind::Dir) => {
                        "it is a directory".into()
                    }
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
fn find_in_path(name: &[u8]) -> Option<String> {
    let found = in_path(name)
        .into_iter()
        .find(|p| sys::file_kind(p) == Some(FileKind::File))?;
    Some(String::from_utf8_lossy(&found).into_owned())
}

/// `DIR/name` for each directory of PATH (an empty one is `.`), in order.
fn in_path(name: &[u8]) -> Vec<Vec<u8>> {
    let path = sys::env_var("PATH").unwrap_or_else(|| DEFAULT_PATH.into());
    let full = |dir: &[u8]| {
        let mut full = if dir.is_empty() {
            b".".to_vec()
        } else {
            dir.to_vec()
        };
        full.push(b'/');
        full.extend_from_slice(name);
        full
    };
    path.split(|&b| b == b':').map(full).collect()
}

/// Starts `argv` as a child in a new process group; with `foreground`, that
/// group takes over the terminal on stdin. Returns once the exec succeeded.
pub fn spawn(argv: &[Vec<u8>], foreground: bool) -> Result<Pid, SpawnError> {
    let exec = sys::Exec {
        paths: candidates(&argv[0])?,
        argv: c_strings(argv)?,
        foreground,
        // Only SIG_IGN survives exec, so only the ignored signals need a
        // reset in the child: a handful of syscalls instead of one per signal.
        reset: sys::ignored_signals(),
        fd3: None,
    };
    start(&exec)
}

fn start(exec: &sys::Exec) -> Result<Pid, SpawnError> {
    match sys::spawn(exec) {
        Ok(Ok(pid)) => Ok(pid),
        Ok(Err(e)) if matches!(e.raw_os_error(), Some(libc::ENOENT | libc::ENOTDIR)) => {
            Err(SpawnError::NotFound)
        }
        Ok(Err(e)) => Err(SpawnError::CannotRun(e)),
        Err(e) => Err(SpawnError::Usher("fork", e)),
    }
}

/// Starts an HTTP hook: usher itself, run again as `usher --check` in a
/// process group of its own, makes the request (every wait bounded) and
/// writes the outcome into the returned pipe, which usher reads once it has
/// reaped the child: the bytes are there by then, or never will be. A fresh
/// usher rather than a forked copy: between fork and exec nothing but
/// async-signal-safe calls (see [`sys::spawn`]).
pub fn request(req: &Request, me: &[CString]) -> Result<(Pid, OwnedFd), SpawnError> {
    let (answer_in, answer_out) = sys::pipe(true).map_err(|e| SpawnError::Usher("pipe", e))?;
    let mut argv = vec!["usher".to_string(), "--answer-fd".into(), "3".into()];
    for h in &req.headers {
        argv.extend(["--http-header".into(), h.clone()]);
    }
    argv.extend(["--check".into(), req.show()]);
    let argv: Vec<Vec<u8>> = argv.into_iter().map(String::into_bytes).collect();
    let exec = sys::Exec {
        paths: me.to_vec(),
        argv: c_strings(&argv)?,
        foreground: false,
        reset: sys::ignored_signals(),
        fd3: Some(answer_out),
    };
    let pid = start(&exec)?;
    drop(exec);
    Ok((pid, answer_in))
}

/// Where usher's own binary is, for [`request`]: /proc/self/exe (the very
/// file, even if replaced since), else how it was started (`argv[0]`,
/// searched in PATH like a command).
pub fn own_binary(arg0: Option<&[u8]>) -> Vec<CString> {
    let mut paths = vec![CString::from(c"/proc/self/exe")];
    if let Some(arg0) = arg0 {
        paths.extend(candidates(arg0).unwrap_or_default());
    }
    paths
}

/// What an HTTP hook's child wrote before it ended, if anything.
pub fn answer(pipe: OwnedFd) -> Option<Outcome> {
    let mut buf = [0u8; 512];
    let got = pipe.read(&mut buf).ok()?;
    Outcome::decode(&buf[..got])
}

fn c_strings(argv: &[Vec<u8>]) -> Result<Vec<CString>, SpawnError> {
    argv.iter()
        .map(|a| {
            CString::new(a.as_slice())
                .map_err(|_| SpawnError::CannotRun(io::Error::from_raw_os_error(libc::EINVAL)))
        })
        .collect()
}

/// The paths to try for `name`: itself if it has a slash, else each PATH entry.
fn candidates(name: &[u8]) -> Result<Vec<CString>, SpawnError> {
    let bad = |_| SpawnError::CannotRun(io::Error::from_raw_os_error(libc::EINVAL));
    if name.contains(&b'/') {
        return Ok(vec![CString::new(name).map_err(bad)?]);
    }
    in_path(name)
        .into_iter()
        .map(|p| CString::new(p).map_err(bad))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidates_follow_path_rules() {
        let c = candidates(b"./app").unwrap();
        assert_eq!(c, [CString::new("./app").unwrap()]);
        let c = candidates(b"sh").unwrap();
        assert!(c.iter().all(|p| p.to_bytes().ends_with(b"/sh")));
    }

    #[test]
    fn messages_name_command_and_reason() {
        let cmd = b"nope";
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
