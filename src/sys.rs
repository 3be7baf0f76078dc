//! The syscall boundary: every `unsafe` in usher lives here, each behind a safe function.
//!
//! usher is built without std (docs/design.md, "Size"), so this module also
//! gives the rest what std would: owned file descriptors, errors named as
//! std names them, reading files and directories, the environment, the
//! allocator. It reports in the vocabulary of [`crate::process`] and
//! [`crate::signals`] and depends on nothing above it.
#![allow(unsafe_code)]

use alloc::ffi::CString;
use alloc::format;
use alloc::vec::Vec;
use core::ffi::CStr;
use core::time::Duration;

use crate::process::{Pid, Status};
use crate::signals::{SigSet, Signal};

// Without std, nothing else links the C library; a static glibc also needs
// gcc's unwinding support, which its own objects name (std links it too).
#[link(name = "c")]
extern "C" {}
#[cfg_attr(
    all(target_env = "gnu", target_feature = "crt-static"),
    link(name = "gcc_eh")
)]
#[cfg_attr(
    all(target_env = "gnu", target_feature = "crt-static"),
    link(name = "gcc")
)]
extern "C" {}

/// A file descriptor as the C library numbers it.
pub type RawFd = libc::c_int;

/// The errors of system calls, with std's names and std's words.
pub mod io {
    use core::fmt;

    /// An errno.
    #[derive(Clone, Copy, PartialEq, Eq)]
    pub struct Error(i32);

    pub type Result<T> = core::result::Result<T, Error>;

    /// The few kinds usher tells apart.
    #[derive(Clone, Copy, PartialEq, Eq, Debug)]
    pub enum ErrorKind {
        NotFound,
        Interrupted,
        WouldBlock,
        Other,
    }

    impl Error {
        /// The errno of the system call that just failed.
        pub fn last_os_error() -> Error {
            Error(super::errno())
        }

        pub fn from_raw_os_error(n: i32) -> Error {
            Error(n)
        }

        pub fn raw_os_error(&self) -> Option<i32> {
            Some(self.0)
        }

        pub fn kind(&self) -> ErrorKind {
            match self.0 {
                libc::ENOENT => ErrorKind::NotFound,
                libc::EINTR => ErrorKind::Interrupted,
                libc::EAGAIN => ErrorKind::WouldBlock,
                _ => ErrorKind::Other,
            }
        }
    }

    /// `No such file or directory (os error 2)`, as std words it.
    impl fmt::Display for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            write!(f, "{} (os error {})", super::strerror(self.0), self.0)
        }
    }

    impl fmt::Debug for Error {
        fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
            fmt::Display::fmt(self, f)
        }
    }
}

fn errno() -> i32 {
    // SAFETY: the C library's errno is a thread-local int it always provides.
    unsafe { *libc::__errno_location() }
}

/// The C library's words for `n`.
fn strerror(n: i32) -> &'static str {
    // SAFETY: strerror returns a NUL-terminated string that stays valid
    // until the next call; usher has one thread and copies it at once.
    let text = unsafe { CStr::from_ptr(libc::strerror(n)) };
    text.to_str().unwrap_or("unknown error")
}

/// A file descriptor usher owns: closed when dropped.
#[derive(Debug)]
pub struct OwnedFd(RawFd);

impl OwnedFd {
    /// Takes ownership of what a system call just returned.
    fn new(fd: libc::c_int) -> io::Result<OwnedFd> {
        check(fd).map(OwnedFd)
    }

    pub fn as_raw_fd(&self) -> RawFd {
        self.0
    }

    /// One `read`, again after an interrupting signal; 0 at end of file.
    pub fn read(&self, buf: &mut [u8]) -> io::Result<usize> {
        loop {
            // SAFETY: `buf` is valid for writing buf.len() bytes.
            let n = unsafe { libc::read(self.0, buf.as_mut_ptr().cast(), buf.len()) };
            match n {
                -1 if errno() == libc::EINTR => continue,
                -1 => return Err(io::Error::last_os_error()),
                n => return Ok(n as usize),
            }
        }
    }

    /// One `write`.
    pub fn write(&self, bytes: &[u8]) -> io::Result<usize> {
        write_fd(self.0, bytes)
    }

    /// Every byte, however many writes it takes.
    pub fn write_all(&self, bytes: &[u8]) -> io::Result<()> {
        write_all_fd(self.0, bytes)
    }

    /// Keeps the fd open for the rest of usher's life, as a plain number.
    pub fn into_raw(self) -> RawFd {
        let fd = self.0;
        core::mem::forget(self);
        fd
    }
}

/// Every byte of `bytes` to `fd` (stdout, stderr), however many writes it takes.
pub fn write_all_fd(fd: RawFd, mut bytes: &[u8]) -> io::Result<()> {
    while !bytes.is_empty() {
        match write_fd(fd, bytes) {
            Ok(0) => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Ok(n) => bytes = &bytes[n..],
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

impl Drop for OwnedFd {
    fn drop(&mut self) {
        // SAFETY: the fd is ours alone (see `new`); nothing uses it after.
        unsafe { libc::close(self.0) };
    }
}

/// A path for the C library: the bytes and a NUL (none inside, or EINVAL).
fn c_path(path: &[u8]) -> io::Result<CString> {
    CString::new(path).map_err(|_| io::Error::from_raw_os_error(libc::EINVAL))
}

/// Opens `path` close-on-exec, with `flags` and `mode` (for O_CREAT).
pub fn open(path: &[u8], flags: libc::c_int, mode: libc::mode_t) -> io::Result<OwnedFd> {
    let path = c_path(path)?;
    // SAFETY: `path` is NUL-terminated; the mode is only read with O_CREAT.
    OwnedFd::new(unsafe {
        libc::open(path.as_ptr(), flags | libc::O_CLOEXEC, mode as libc::c_uint)
    })
}

/// The whole of a (small) file: /proc and /sys files, read until their end.
pub fn read_file(path: &[u8]) -> io::Result<Vec<u8>> {
    let fd = open(path, libc::O_RDONLY, 0)?;
    let mut out = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        match fd.read(&mut buf)? {
            0 => return Ok(out),
            n => out.extend_from_slice(&buf[..n]),
        }
    }
}

/// A small text file, `None` when it cannot be read (bytes that are not
/// UTF-8 are replaced: /proc and /sys files are ASCII).
pub fn read_text(path: &str) -> Option<alloc::string::String> {
    let bytes = read_file(path.as_bytes()).ok()?;
    Some(alloc::string::String::from_utf8_lossy(&bytes).into_owned())
}

/// Where the symbolic link at `path` points.
pub fn read_link(path: &[u8]) -> io::Result<Vec<u8>> {
    let path = c_path(path)?;
    let mut buf = [0u8; 256];
    // SAFETY: `path` is NUL-terminated; the kernel writes at most buf.len() bytes.
    let n = unsafe { libc::readlink(path.as_ptr(), buf.as_mut_ptr().cast(), buf.len()) };
    match n {
        n if n < 0 => Err(io::Error::last_os_error()),
        n => Ok(buf[..n as usize].to_vec()),
    }
}

/// Calls `each` with the name of every entry of the directory at `path`
/// (`.` and `..` left out), read with getdents64 into one buffer.
pub fn list_dir(path: &[u8], mut each: impl FnMut(&[u8])) -> io::Result<()> {
    let dir = open(path, libc::O_RDONLY | libc::O_DIRECTORY, 0)?;
    // 8-byte aligned, as linux_dirent64 wants.
    let mut buf = [0u64; 1024];
    loop {
        // SAFETY: the kernel writes at most the buffer's size into it.
        let n = unsafe {
            libc::syscall(
                libc::SYS_getdents64,
                dir.0,
                buf.as_mut_ptr(),
                core::mem::size_of_val(&buf),
            )
        };
        if n < 0 {
            return Err(io::Error::last_os_error());
        }
        if n == 0 {
            return Ok(());
        }
        // SAFETY: the kernel wrote `n` bytes of records at the buffer's start.
        let bytes = unsafe { core::slice::from_raw_parts(buf.as_ptr().cast::<u8>(), n as usize) };
        let mut at = 0;
        // Each record: inode (8), offset (8), length (2), type (1), then the
        // NUL-terminated name.
        while at + 19 <= bytes.len() {
            let len = usize::from(u16::from_ne_bytes([bytes[at + 16], bytes[at + 17]]));
            let Some(record) = bytes.get(at..at + len).filter(|_| len > 19) else {
                return Err(io::Error::from_raw_os_error(libc::EIO));
            };
            let name = &record[19..];
            let name = &name[..name.iter().position(|&b| b == 0).unwrap_or(name.len())];
            if name != b"." && name != b".." {
                each(name);
            }
            at += len;
        }
    }
}

/// What is at `path`: a directory, a regular file, something else; `None`
/// when nothing (or it cannot be seen).
pub fn file_kind(path: &[u8]) -> Option<FileKind> {
    let path = c_path(path).ok()?;
    // SAFETY: `st` is plain data for stat to fill; `path` is NUL-terminated.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: as above.
    if unsafe { libc::stat(path.as_ptr(), &mut st) } != 0 {
        return None;
    }
    Some(match st.st_mode & libc::S_IFMT {
        libc::S_IFDIR => FileKind::Dir,
        libc::S_IFREG => FileKind::File,
        _ => FileKind::Other,
    })
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub enum FileKind {
    Dir,
    File,
    Other,
}

/// usher's command line, from the C runtime's `argc`/`argv`.
///
/// # Safety
/// `argv` must hold `argc` valid NUL-terminated strings: the ones the C
/// runtime passes to `main`.
pub unsafe fn args(argc: libc::c_int, argv: *const *const libc::c_char) -> Vec<Vec<u8>> {
    (0..argc.max(0) as usize)
        // SAFETY: the caller's promise.
        .map(|i| unsafe { CStr::from_ptr(*argv.add(i)) }.to_bytes().to_vec())
        .collect()
}

/// The environment, as `NAME=value` entries.
fn environment() -> impl Iterator<Item = &'static [u8]> {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY: `environ` is the C library's NULL-terminated list of
    // NUL-terminated strings; usher never changes its environment, so they
    // stay valid and unchanged for the life of the process.
    let mut at = unsafe { environ };
    core::iter::from_fn(move || {
        // SAFETY: as above; `at` walks the list up to its NULL end.
        unsafe {
            if at.is_null() || (*at).is_null() {
                return None;
            }
            let entry = CStr::from_ptr(*at).to_bytes();
            at = at.add(1);
            Some(entry)
        }
    })
}

/// The value of environment variable `name`, if it is set.
pub fn env_var(name: &str) -> Option<Vec<u8>> {
    environment().find_map(|e| {
        Some(
            e.strip_prefix(name.as_bytes())?
                .strip_prefix(b"=")?
                .to_vec(),
        )
    })
}

/// The names of every environment variable.
pub fn env_names() -> Vec<Vec<u8>> {
    environment()
        .map(|e| e.split(|&b| b == b'=').next().unwrap_or(e).to_vec())
        .collect()
}

/// Sleeps `d` (only in `usher --check`, never in PID 1's loop).
pub fn sleep(d: Duration) {
    let mut ts = libc::timespec {
        tv_sec: d.as_secs() as _,
        tv_nsec: d.subsec_nanos() as _,
    };
    // SAFETY: `ts` is a valid timespec, also for the time left.
    while unsafe { libc::nanosleep(&ts, &mut ts) } != 0 && errno() == libc::EINTR {}
}

/// The allocator: the C library's malloc (as std's own on Linux).
pub struct Malloc;

/// What malloc's pointers are always aligned to.
const MALLOC_ALIGN: usize = 2 * core::mem::size_of::<usize>();

// SAFETY: every method hands the C library's allocator what it documents:
// sizes and alignments from a valid Layout, pointers it gave out.
unsafe impl core::alloc::GlobalAlloc for Malloc {
    unsafe fn alloc(&self, layout: core::alloc::Layout) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= layout.size() {
            // SAFETY: see the impl.
            unsafe { libc::malloc(layout.size()) as *mut u8 }
        } else {
            let align = layout.align().max(core::mem::size_of::<usize>());
            let mut out = core::ptr::null_mut();
            // SAFETY: see the impl; `align` is a power of two and a multiple of the pointer size.
            let ret = unsafe { libc::posix_memalign(&mut out, align, layout.size()) };
            if ret == 0 {
                out as *mut u8
            } else {
                core::ptr::null_mut()
            }
        }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, _: core::alloc::Layout) {
        // SAFETY: see the impl.
        unsafe { libc::free(ptr.cast()) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: core::alloc::Layout, size: usize) -> *mut u8 {
        if layout.align() <= MALLOC_ALIGN && layout.align() <= size {
            // SAFETY: see the impl.
            return unsafe { libc::realloc(ptr.cast(), size) as *mut u8 };
        }
        // SAFETY: see the impl: a new block, the old bytes, the old block freed.
        unsafe {
            let new = self.alloc(core::alloc::Layout::from_size_align_unchecked(
                size,
                layout.align(),
            ));
            if !new.is_null() {
                core::ptr::copy_nonoverlapping(ptr, new, layout.size().min(size));
                self.dealloc(ptr, layout);
            }
            new
        }
    }
}

/// Where an unwinding would start (it never does: panic = "abort").
pub fn panicked_unwinding() -> ! {
    let _ = write_fd(
        libc::STDERR_FILENO,
        b"usher: panic: unwinding in a build that aborts\n",
    );
    // SAFETY: abort never returns.
    unsafe { libc::abort() }
}

/// What usher does if it ever panics (it must not): one line on stderr,
/// then abort, so the crash is loud and the engine sees a signal death.
pub fn panicked(info: &core::panic::PanicInfo<'_>) -> ! {
    use core::fmt::Write;
    struct Stderr;
    impl Write for Stderr {
        fn write_str(&mut self, s: &str) -> core::fmt::Result {
            let _ = write_fd(libc::STDERR_FILENO, s.as_bytes());
            Ok(())
        }
    }
    let _ = writeln!(Stderr, "usher: panic: {info}");
    // SAFETY: abort never returns.
    unsafe { libc::abort() }
}

fn check(ret: libc::c_int) -> io::Result<libc::c_int> {
    if ret < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(ret)
    }
}

/// The kernel's signal set is 64 bits, bit n-1 for signal n: exactly
/// [`SigSet`]'s layout. usher passes it to the raw system calls because the
/// C library's `sigaddset` and `sigprocmask` refuse the real-time signals it
/// reserves for itself (32 and 33 in glibc, 32 to 34 in musl), and usher must
/// block and forward those like any other: one thread, no cancellation.
const KERNEL_SIGSET_SIZE: libc::size_t = 8;

/// Sets the calling thread's signal mask to exactly `set`.
pub fn set_sigmask(set: SigSet) -> io::Result<()> {
    let mask = set.bits();
    // SAFETY: the kernel reads KERNEL_SIGSET_SIZE bytes from `mask`, a live
    // u64; a null old-mask pointer asks for nothing back.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_rt_sigprocmask,
            libc::SIG_SETMASK,
            &mask as *const u64,
            core::ptr::null_mut::<u64>(),
            KERNEL_SIGSET_SIZE,
        )
    };
    check(ret as libc::c_int).map(drop)
}

/// The signals this process ignores (SIG_IGN survives exec; handlers do
/// not), from /proc/self/status; without /proc, every catchable one.
pub fn ignored_signals() -> SigSet {
    let every = SigSet::from_bits(!0);
    // One read of a buffer large enough for the whole file (about 1.5 KiB).
    let mut buf = [0u8; 8192];
    let read = open(b"/proc/self/status", libc::O_RDONLY, 0).and_then(|f| f.read(&mut buf));
    let Ok(n) = read else {
        return every;
    };
    alloc::string::String::from_utf8_lossy(&buf[..n])
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .and_then(|hex| u64::from_str_radix(hex.trim(), 16).ok())
        .map_or(every, SigSet::from_bits)
}

/// Puts the signals in `set` back to their default action, undoing a
/// SIG_IGN inherited across exec (an ignored SIGCHLD would make the kernel
/// reap children itself and lose their exit codes).
pub fn reset_dispositions(set: SigSet) {
    for n in set.iter().map(Signal::number) {
        if n == libc::SIGKILL || n == libc::SIGSTOP {
            continue;
        }
        // SAFETY: SIG_DFL is always a valid disposition; numbers the C library
        // reserves for itself fail with EINVAL and are handled below.
        if unsafe { libc::signal(n, libc::SIG_DFL) } == libc::SIG_ERR {
            reset_reserved(n);
        }
    }
}

/// The C library refuses to touch the signals it reserves for itself (32
/// and 33 in glibc, 32 to 34 in musl), yet an ignored one is inherited across
/// exec all the same: reset it with the raw system call.
fn reset_reserved(n: i32) {
    // The kernel's struct sigaction, all zero: SIG_DFL, no flags, empty mask
    // (all-zero reads the same whatever the architecture's field order).
    let act = [0u64; 8];
    // The kernel's sigset_t is 64 bits (elsewhere the call fails, harmlessly).
    let sigset_size: libc::c_long = 8;
    // SAFETY: `act` is readable and larger than the kernel's struct sigaction;
    // a null old-action pointer asks for nothing back.
    unsafe {
        libc::syscall(
            libc::SYS_rt_sigaction,
            libc::c_long::from(n),
            act.as_ptr(),
            core::ptr::null_mut::<u64>(),
            sigset_size,
        )
    };
}

/// A close-on-exec, blocking signalfd reading `set` (which must be blocked).
/// Blocking, so the loop can wait in its read when no timer is armed; it is
/// only read when a signal is known to be pending or nothing else can happen.
pub fn signalfd(set: SigSet) -> io::Result<OwnedFd> {
    let mask = set.bits();
    // SAFETY: -1 asks for a new fd; the kernel reads KERNEL_SIGSET_SIZE bytes
    // from `mask`, a live u64 (see set_sigmask for why not libc's wrapper).
    let fd = unsafe {
        libc::syscall(
            libc::SYS_signalfd4,
            -1,
            &mask as *const u64,
            KERNEL_SIGSET_SIZE,
            libc::SFD_CLOEXEC,
        )
    };
    OwnedFd::new(fd as libc::c_int)
}

/// Reads up to a batch of pending signals from the signalfd (waiting for
/// the first when none is pending), each with the pid of the process that
/// sent it when a process did; the loop comes back for the rest, so a storm
/// of queued real-time signals never needs more memory than one batch. The
/// kernel hands them out lowest number first (standard before real-time),
/// not in arrival order; queued real-time signals come out once per send.
pub fn read_signals(fd: &OwnedFd, out: &mut Vec<(Signal, Option<Pid>)>) -> io::Result<()> {
    const N: usize = 32;
    let size = core::mem::size_of::<libc::signalfd_siginfo>();
    // Not zeroed: the kernel fills what it returns and nothing else is read
    // (zeroing 4 KiB per wake-up was the largest cost on the signal path).
    let mut buf = core::mem::MaybeUninit::<[libc::signalfd_siginfo; N]>::uninit();
    loop {
        // SAFETY: the buffer is valid for N * size writable bytes.
        let got = unsafe { libc::read(fd.as_raw_fd(), buf.as_mut_ptr().cast(), N * size) };
        if got < 0 {
            let err = io::Error::last_os_error();
            return match err.kind() {
                io::ErrorKind::WouldBlock => Ok(()),
                io::ErrorKind::Interrupted => continue,
                _ => Err(err),
            };
        }
        let count = got as usize / size;
        // SAFETY: the kernel wrote `count` whole records at the start of `buf`.
        let records = unsafe {
            core::slice::from_raw_parts(buf.as_ptr().cast::<libc::signalfd_siginfo>(), count)
        };
        out.extend(records.iter().filter_map(|info| {
            let signal = Signal::new(info.ssi_signo as i32)?;
            // Codes up to 0 (SI_USER, SI_QUEUE, SI_TKILL) come from a
            // process, whose pid the kernel fills in; others from the kernel.
            let sender = (info.ssi_code <= 0).then_some(info.ssi_pid as Pid);
            Some((signal, sender))
        }));
        return Ok(());
    }
}

/// A close-on-exec, non-blocking timerfd on the monotonic clock.
pub fn timerfd() -> io::Result<OwnedFd> {
    let flags = libc::TFD_CLOEXEC | libc::TFD_NONBLOCK;
    // SAFETY: plain syscall with constant flags.
    OwnedFd::new(unsafe { libc::timerfd_create(libc::CLOCK_MONOTONIC, flags) })
}

/// Arms the timer to fire once at monotonic time `at`, or disarms it.
pub fn timer_set(fd: &OwnedFd, at: Option<Duration>) -> io::Result<()> {
    // An all-zero it_value disarms, so a deadline at exactly 0 becomes 1ns;
    // one past what the clock can hold is as good as never.
    let far = Duration::from_secs(i64::MAX as u64 / 2);
    let at = at.map(|t| t.clamp(Duration::from_nanos(1), far));
    let value = at.map_or(
        libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        |t| libc::timespec {
            // Both fit: tv_sec is 64-bit and the value was clamped above.
            tv_sec: t.as_secs() as _,
            tv_nsec: t.subsec_nanos() as _,
        },
    );
    let spec = libc::itimerspec {
        it_interval: libc::timespec {
            tv_sec: 0,
            tv_nsec: 0,
        },
        it_value: value,
    };
    // SAFETY: `spec` is initialised; the old value is not wanted.
    let ret = unsafe {
        libc::timerfd_settime(
            fd.as_raw_fd(),
            libc::TFD_TIMER_ABSTIME,
            &spec,
            core::ptr::null_mut(),
        )
    };
    check(ret).map(drop)
}

/// Drains a timerfd's expiry count; false when it had not fired.
pub fn timer_fired(fd: &OwnedFd) -> io::Result<bool> {
    let mut count = 0u64;
    // SAFETY: reads at most 8 bytes into a u64.
    let got = unsafe { libc::read(fd.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
    if got < 0 {
        let err = io::Error::last_os_error();
        return match err.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(false),
            _ => Err(err),
        };
    }
    Ok(count > 0)
}

/// Blocks until one of `fds` is readable; returns which are. No timeout:
/// while nothing happens usher makes no system call at all.
pub fn wait_readable<const N: usize>(fds: [&OwnedFd; N]) -> io::Result<[bool; N]> {
    let mut polls = fds.map(|fd| libc::pollfd {
        fd: fd.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    });
    loop {
        // SAFETY: `polls` is an array of N initialised pollfd structs.
        let ret = unsafe { libc::poll(polls.as_mut_ptr(), N as libc::nfds_t, -1) };
        match check(ret) {
            Ok(_) => return Ok(polls.map(|p| p.revents != 0)),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        }
    }
}

/// Waits up to `timeout` for `fd` to be ready for `events` (POLLIN or
/// POLLOUT); false when the time ran out. Only for an HTTP hook's child:
/// usher's own loop never waits on anything but its two fds.
pub fn wait_ready(fd: &OwnedFd, events: libc::c_short, timeout: Duration) -> io::Result<bool> {
    let mut poll = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
    // SAFETY: one initialised pollfd.
    let ret = check(unsafe { libc::poll(&mut poll, 1, ms) })?;
    Ok(ret > 0)
}

/// Starts a non-blocking TCP connection to `addr`: the fd, writable once
/// connected (then ask [`socket_error`] how it went).
pub fn tcp_connect(addr: core::net::SocketAddr) -> io::Result<OwnedFd> {
    use core::net::SocketAddr;
    let family = match addr {
        SocketAddr::V4(_) => libc::AF_INET,
        SocketAddr::V6(_) => libc::AF_INET6,
    };
    let kind = libc::SOCK_STREAM | libc::SOCK_CLOEXEC | libc::SOCK_NONBLOCK;
    // SAFETY: plain syscall with constant arguments.
    let fd = OwnedFd::new(unsafe { libc::socket(family, kind, 0) })?;
    // SAFETY: sockaddr_storage is plain data; zeroes are a valid value.
    let mut storage: libc::sockaddr_storage = unsafe { core::mem::zeroed() };
    let len = match addr {
        SocketAddr::V4(a) => {
            let sin = libc::sockaddr_in {
                sin_family: libc::AF_INET as libc::sa_family_t,
                sin_port: a.port().to_be(),
                sin_addr: libc::in_addr {
                    s_addr: u32::from_ne_bytes(a.ip().octets()),
                },
                sin_zero: [0; 8],
            };
            // SAFETY: sockaddr_storage is large and aligned enough for any sockaddr.
            unsafe { core::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin) };
            core::mem::size_of::<libc::sockaddr_in>()
        }
        SocketAddr::V6(a) => {
            // SAFETY: sockaddr_in6 is plain data; zeroes are a valid value.
            let mut sin6: libc::sockaddr_in6 = unsafe { core::mem::zeroed() };
            sin6.sin6_family = libc::AF_INET6 as libc::sa_family_t;
            sin6.sin6_port = a.port().to_be();
            sin6.sin6_addr.s6_addr = a.ip().octets();
            // SAFETY: as above.
            unsafe { core::ptr::write((&mut storage as *mut libc::sockaddr_storage).cast(), sin6) };
            core::mem::size_of::<libc::sockaddr_in6>()
        }
    };
    // SAFETY: `storage` holds a valid sockaddr of `len` bytes.
    let ret = unsafe {
        libc::connect(
            fd.as_raw_fd(),
            (&storage as *const libc::sockaddr_storage).cast(),
            len as libc::socklen_t,
        )
    };
    match check(ret) {
        Ok(_) => Ok(fd),
        Err(e) if e.raw_os_error() == Some(libc::EINPROGRESS) => Ok(fd),
        Err(e) => Err(e),
    }
}

/// The pending error of a socket (how a non-blocking connect ended).
pub fn socket_error(fd: &OwnedFd) -> io::Result<()> {
    let mut err: libc::c_int = 0;
    let mut len = core::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `err` and `len` are valid for getsockopt to write.
    check(unsafe {
        libc::getsockopt(
            fd.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_ERROR,
            (&mut err as *mut libc::c_int).cast(),
            &mut len,
        )
    })?;
    match err {
        0 => Ok(()),
        e => Err(io::Error::from_raw_os_error(e)),
    }
}

/// The monotonic clock, as timerfd counts it.
pub fn now() -> Duration {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec to write; CLOCK_MONOTONIC always exists.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
}

/// Sends `sig` to `pid` (negative: a process group; -1: everything we may signal).
pub fn kill(pid: Pid, sig: Signal) -> io::Result<()> {
    // SAFETY: kill has no memory-safety preconditions.
    check(unsafe { libc::kill(pid, sig.number()) }).map(drop)
}

/// Whether `pid` (negative: a group; -1: anything usher may signal) names a
/// live or zombie process, probed with signal 0.
pub fn exists(pid: Pid) -> bool {
    // SAFETY: kill has no memory-safety preconditions; signal 0 sends nothing.
    let ret = unsafe { libc::kill(pid, 0) };
    ret == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// What a non-blocking reap found.
pub enum Reap {
    Child(Pid, Status),
    /// A child stopped (SIGSTOP, SIGTSTP, ...).
    Stopped(Pid),
    /// A stopped child was resumed by SIGCONT.
    Continued(Pid),
    /// Children exist, none has ended yet.
    Running,
    /// usher has no child at all.
    None,
}

/// Reaps one ended child of any kind, without blocking; also reports a
/// child that stopped or was resumed, so that usher knows when a stop
/// signal needs a SIGCONT behind it.
pub fn reap_one() -> io::Result<Reap> {
    let flags = libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED;
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int to write.
        let pid = unsafe { libc::waitpid(-1, &mut status, flags) };
        if pid > 0 && libc::WIFSTOPPED(status) {
            return Ok(Reap::Stopped(pid));
        }
        if pid > 0 && libc::WIFCONTINUED(status) {
            return Ok(Reap::Continued(pid));
        }
        if pid > 0 {
            return Ok(Reap::Child(pid, decode_status(status)));
        }
        if pid == 0 {
            return Ok(Reap::Running);
        }
        let err = io::Error::last_os_error();
        match err.raw_os_error() {
            Some(libc::ECHILD) => return Ok(Reap::None),
            Some(libc::EINTR) => continue,
            _ => return Err(err),
        }
    }
}

/// Blocks until `pid` ends and reaps it (used only for a child that failed to exec).
pub fn reap_pid(pid: Pid) -> io::Result<Status> {
    let mut status = 0;
    loop {
        // SAFETY: `status` is a valid int to write.
        let ret = unsafe { libc::waitpid(pid, &mut status, 0) };
        if ret == pid {
            return Ok(decode_status(status));
        }
        let err = io::Error::last_os_error();
        if err.kind() != io::ErrorKind::Interrupted {
            return Err(err);
        }
    }
}

fn decode_status(status: libc::c_int) -> Status {
    if libc::WIFSIGNALED(status) {
        match Signal::new(libc::WTERMSIG(status)) {
            Some(s) => Status::Signaled(s),
            None => Status::Exited(128 + libc::WTERMSIG(status)),
        }
    } else {
        Status::Exited(libc::WEXITSTATUS(status))
    }
}

pub fn getpid() -> Pid {
    // SAFETY: getpid cannot fail.
    unsafe { libc::getpid() }
}

pub fn getppid() -> Pid {
    // SAFETY: getppid cannot fail.
    unsafe { libc::getppid() }
}

/// Whether usher is already a child subreaper (the flag survives exec, so
/// the process that started usher may have set it).
pub fn is_subreaper() -> bool {
    let mut flag: libc::c_int = 0;
    // SAFETY: PR_GET_CHILD_SUBREAPER writes one int through the pointer.
    let ret = unsafe {
        libc::prctl(
            libc::PR_GET_CHILD_SUBREAPER,
            &mut flag as *mut libc::c_int as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    ret == 0 && flag != 0
}

/// Makes usher a child subreaper: orphaned descendants are reparented to it.
pub fn set_subreaper() -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1 as libc::c_ulong, 0, 0, 0) })
        .map(drop)
}

/// Asks the kernel to send `sig` to usher when its parent dies.
pub fn set_pdeathsig(sig: Signal) -> io::Result<()> {
    // SAFETY: prctl with integer arguments only.
    check(unsafe {
        libc::prctl(
            libc::PR_SET_PDEATHSIG,
            sig.number() as libc::c_ulong,
            0,
            0,
            0,
        )
    })
    .map(drop)
}

/// Whether standard input is a terminal.
pub fn stdin_is_terminal() -> bool {
    // SAFETY: isatty only inspects the fd; a closed one is simply not a terminal.
    unsafe { libc::isatty(libc::STDIN_FILENO) == 1 }
}

/// Whether the terminal on `fd` has usher's process group in the foreground.
pub fn in_foreground(fd: RawFd) -> bool {
    // SAFETY: plain syscalls on an fd and on the calling process.
    unsafe { libc::tcgetpgrp(fd) == libc::getpgrp() }
}

/// Makes `pgid` the foreground group of the terminal on `fd` (SIGTTOU is blocked).
pub fn give_terminal(fd: RawFd, pgid: Pid) -> io::Result<()> {
    // SAFETY: plain syscall on an fd; usher blocks SIGTTOU, so it is not stopped.
    check(unsafe { libc::tcsetpgrp(fd, pgid) }).map(drop)
}

/// Suspends usher itself with SIGSTOP, as a shell's job is (it cannot be blocked).
pub fn suspend_self() {
    // SAFETY: kill has no memory-safety preconditions.
    unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
}

/// A second, non-blocking, close-on-exec open file description of `fd` when
/// it is a pipe or a terminal: writes to it can no longer block usher, while
/// the app keeps its own blocking stderr (O_NONBLOCK belongs to the
/// description, and this one is usher's alone). Regular files never block
/// and would get a second file offset, so they, sockets (which cannot be
/// reopened) and a missing /proc give `None`.
pub fn nonblocking_twin(fd: RawFd) -> Option<OwnedFd> {
    // SAFETY: `st` is plain data for fstat to fill.
    let mut st: libc::stat = unsafe { core::mem::zeroed() };
    // SAFETY: `st` is a valid, writable stat buffer.
    if unsafe { libc::fstat(fd, &mut st) } != 0 {
        return None;
    }
    let kind = st.st_mode & libc::S_IFMT;
    if kind != libc::S_IFIFO && kind != libc::S_IFCHR {
        return None;
    }
    let path = format!("/proc/self/fd/{fd}");
    // O_NOCTTY keeps a session leader from acquiring the terminal as its
    // controlling one.
    open(
        path.as_bytes(),
        libc::O_WRONLY | libc::O_NONBLOCK | libc::O_NOCTTY,
        0,
    )
    .ok()
}

/// A close-on-exec pipe: (read end, write end).
/// With `nonblocking`, neither end ever blocks.
pub fn pipe(nonblocking: bool) -> io::Result<(OwnedFd, OwnedFd)> {
    let mut fds = [0; 2];
    let flags = libc::O_CLOEXEC | if nonblocking { libc::O_NONBLOCK } else { 0 };
    // SAFETY: `fds` has room for the two fds pipe2 writes.
    check(unsafe { libc::pipe2(fds.as_mut_ptr(), flags) })?;
    Ok((OwnedFd(fds[0]), OwnedFd(fds[1])))
}

/// A command to start, with everything its child needs prepared before the
/// fork, so that between fork and exec the child only makes
/// async-signal-safe system calls on memory nobody else writes: [`spawn`]
/// is sound in any process, with one thread or many.
pub struct Exec {
    /// The files to try, in order (like execvp over PATH).
    pub paths: Vec<CString>,
    pub argv: Vec<CString>,
    /// Make the child's new process group the foreground of the terminal on stdin.
    pub foreground: bool,
    /// Signals to put back to their default action (the ignored ones: only
    /// SIG_IGN survives exec).
    pub reset: SigSet,
    /// Becomes the child's fd 3 (an HTTP hook's answer pipe).
    pub fd3: Option<OwnedFd>,
}

/// Starts `exec` in a new process group with default dispositions and an
/// empty signal mask. `Ok(Ok(pid))` once the exec succeeded; `Ok(Err(e))`
/// with the error that stopped every exec attempt (the child is reaped);
/// `Err` when usher itself failed (pipe, fork).
pub fn spawn(exec: &Exec) -> io::Result<Result<Pid, io::Error>> {
    let mut argv: Vec<*const libc::c_char> = exec.argv.iter().map(|a| a.as_ptr()).collect();
    argv.push(core::ptr::null());
    let (status_in, status_out) = pipe(false)?;
    // SAFETY: the child only runs `become_exec`, which makes async-signal-safe
    // system calls on data prepared above and never returns; nothing it
    // touches can be locked or half-written by another thread.
    let pid = check(unsafe { libc::fork() })?;
    if pid == 0 {
        become_exec(exec, &argv, status_out.as_raw_fd());
    }
    drop(status_out);
    let mut errno = [0u8; 4];
    let got = loop {
        // SAFETY: reads at most 4 bytes into `errno`.
        let n = unsafe { libc::read(status_in.as_raw_fd(), errno.as_mut_ptr().cast(), 4) };
        match n {
            -1 if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted => continue,
            n => break n,
        }
    };
    if got <= 0 {
        return Ok(Ok(pid)); // the pipe closed on exec: the command runs
    }
    // The child could not exec; collect it so no zombie is left behind.
    let _ = reap_pid(pid);
    Ok(Err(io::Error::from_raw_os_error(i32::from_ne_bytes(errno))))
}

/// The child's side of [`spawn`]: set up the process, try each path; on
/// failure write the errno into `status` (four bytes into an empty pipe: one
/// write, whole) and exit 127.
fn become_exec(exec: &Exec, argv: &[*const libc::c_char], status: RawFd) -> ! {
    extern "C" {
        static environ: *const *const libc::c_char;
    }
    // SAFETY (the whole block): setpgid, tcsetpgrp, getpgrp, sigaction
    // (through `reset_dispositions`), rt_sigprocmask, fcntl, dup2, execve,
    // write and _exit are async-signal-safe; `argv` is NULL-terminated and
    // its strings, like `exec.paths`, outlive the calls; `environ` is the C
    // library's environment, which usher never modifies.
    unsafe {
        // Errors here are not fatal: a child in usher's group still runs.
        libc::setpgid(0, 0);
        if exec.foreground {
            libc::tcsetpgrp(libc::STDIN_FILENO, libc::getpgrp());
        }
        reset_dispositions(exec.reset);
        let mut err = set_sigmask(SigSet::EMPTY)
            .err()
            .and_then(|e| e.raw_os_error());
        if let (None, Some(fd)) = (err, &exec.fd3) {
            let fd = fd.as_raw_fd();
            let ok = match fd {
                3 => libc::fcntl(3, libc::F_SETFD, 0) == 0,
                _ => libc::dup2(fd, 3) == 3,
            };
            if !ok {
                err = Some(*libc::__errno_location());
            }
        }
        // Like execvp: try each path; EACCES is remembered but the search
        // goes on; any error other than "not here" ends it. Unlike glibc's
        // execvp, a file without a #! line is an error, not a shell script.
        let mut denied = false;
        for path in &exec.paths {
            if err.is_some() {
                break;
            }
            libc::execve(path.as_ptr(), argv.as_ptr(), environ);
            match *libc::__errno_location() {
                libc::ENOENT | libc::ENOTDIR | libc::ESTALE | libc::ENODEV | libc::ETIMEDOUT => {}
                libc::EACCES => denied = true,
                e => err = Some(e),
            }
        }
        let errno = err.unwrap_or(if denied { libc::EACCES } else { libc::ENOENT });
        libc::write(status, errno.to_ne_bytes().as_ptr().cast(), 4);
        libc::_exit(127)
    }
}

/// Names usher's own thread (`/proc/PID/comm`, at most 15 bytes): how a
/// process that cannot talk to usher (a `docker exec` probe) sees its state.
pub fn set_name(name: &CStr) {
    // SAFETY: PR_SET_NAME reads a NUL-terminated string of at most 16 bytes;
    // longer names are cut by the kernel.
    unsafe { libc::prctl(libc::PR_SET_NAME, name.as_ptr() as libc::c_ulong, 0, 0, 0) };
}

/// One `write` of `bytes` to descriptor `fd`, which this process inherited
/// (the answer pipe of an HTTP hook's child, named on its command line).
pub fn write_fd(fd: RawFd, bytes: &[u8]) -> io::Result<usize> {
    // SAFETY: the kernel reads `bytes.len()` bytes from a live slice; a bad
    // fd is an error (EBADF), not a memory access.
    let n = unsafe { libc::write(fd, bytes.as_ptr().cast(), bytes.len()) };
    if n < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(n as usize)
}

// ---- sock_diag: the app's TCP sockets, for the adaptive drain (traffic.rs). ----

/// A close-on-exec NETLINK_SOCK_DIAG socket. Dumping the namespace's TCP
/// sockets, with their tcp_info, needs no privilege.
pub fn sock_diag() -> io::Result<OwnedFd> {
    let kind = libc::SOCK_DGRAM | libc::SOCK_CLOEXEC;
    // SAFETY: plain syscall with constant arguments.
    OwnedFd::new(unsafe { libc::socket(libc::AF_NETLINK, kind, libc::NETLINK_SOCK_DIAG) })
}

/// A close-on-exec NETLINK_SOCK_DIAG socket subscribed to the multicast
/// `groups` (a bit mask): the kernel's broadcasts of destroyed sockets.
/// Needs no privilege either.
pub fn sock_diag_events(groups: u32) -> io::Result<OwnedFd> {
    let fd = sock_diag()?;
    // SAFETY: sockaddr_nl is plain data; zeroes are a valid value.
    let mut addr: libc::sockaddr_nl = unsafe { core::mem::zeroed() };
    addr.nl_family = libc::AF_NETLINK as libc::sa_family_t;
    addr.nl_groups = groups;
    let len = core::mem::size_of::<libc::sockaddr_nl>() as libc::socklen_t;
    // SAFETY: `addr` is a valid sockaddr_nl of `len` bytes.
    check(unsafe {
        libc::bind(
            fd.as_raw_fd(),
            (&addr as *const libc::sockaddr_nl).cast(),
            len,
        )
    })?;
    Ok(fd)
}

/// Sends one netlink message to the kernel (an unconnected netlink socket's
/// default destination), without waiting.
pub fn netlink_send(fd: &OwnedFd, msg: &[u8]) -> io::Result<()> {
    // SAFETY: `msg` is valid for reading msg.len() bytes.
    let sent = unsafe {
        libc::send(
            fd.as_raw_fd(),
            msg.as_ptr().cast(),
            msg.len(),
            libc::MSG_DONTWAIT,
        )
    };
    match sent {
        n if n < 0 => Err(io::Error::last_os_error()),
        n if n as usize == msg.len() => Ok(()),
        _ => Err(io::Error::from_raw_os_error(libc::EIO)),
    }
}

/// Receives one netlink datagram into `buf` without waiting: WouldBlock
/// when none is queued; one larger than `buf` is an error, not a silent cut.
pub fn netlink_recv(fd: &OwnedFd, buf: &mut [u8]) -> io::Result<usize> {
    let flags = libc::MSG_DONTWAIT | libc::MSG_TRUNC;
    // SAFETY: `buf` is valid for writing buf.len() bytes; with MSG_TRUNC the
    // kernel still writes at most that, and returns the datagram's real length.
    let got = unsafe { libc::recv(fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len(), flags) };
    match got {
        n if n < 0 => Err(io::Error::last_os_error()),
        n if n as usize <= buf.len() => Ok(n as usize),
        _ => Err(io::Error::from_raw_os_error(libc::EMSGSIZE)),
    }
}
