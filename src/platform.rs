//! What differs between the operating systems r4-run runs on, behind a small surface: the callers
//! above see plain values and functions, and never a `cfg`.
//!
//! One file per system, each with the same private functions: `linux.rs` (Linux, Android),
//! `freebsd.rs`, `macos.rs` (Apple) and `other.rs` (any other Unix, with the portable fallbacks);
//! what Linux and FreeBSD share is in `sigwaitinfo.rs`. What
//! each item does on each system is written next to it below, and in README "Platforms",
//! docs/signals.md and docs/security.md. Everything else in r4-run is the same code everywhere, so
//! Linux CI runs what Macs run; `scripts/check-platforms` type-checks the other systems.

#[cfg(target_os = "freebsd")]
mod freebsd;
#[cfg(any(target_os = "linux", target_os = "android"))]
mod linux;
#[cfg(target_vendor = "apple")]
mod macos;
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_vendor = "apple"
)))]
mod other;
#[cfg(any(target_os = "linux", target_os = "android", target_os = "freebsd"))]
mod sigwaitinfo;

#[cfg(target_os = "freebsd")]
use freebsd as os;
#[cfg(any(target_os = "linux", target_os = "android"))]
use linux as os;
#[cfg(target_vendor = "apple")]
use macos as os;
#[cfg(not(any(
    target_os = "linux",
    target_os = "android",
    target_os = "freebsd",
    target_vendor = "apple"
)))]
use other as os;

use std::io;

/// The system's name, for messages ("Linux", "macOS", "FreeBSD").
pub const NAME: &str = os::NAME;

/// The most bytes one argument or environment string (its NUL included) may have in an exec.
/// Linux: `MAX_ARG_STRLEN`, 32 pages. Elsewhere only the total counts.
pub fn max_exec_string() -> Option<usize> {
    os::max_exec_string()
}

/// The most bytes of all argument and environment strings of one exec, pointers included
/// (`ARG_MAX`).
pub fn max_exec_total() -> Option<usize> {
    // SAFETY: sysconf takes a plain integer and has no preconditions.
    let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    let arg_max = usize::try_from(arg_max).ok().filter(|&n| n > 0)?;
    Some(os::cap_exec_total(arg_max))
}

/// Keeps debuggers and other processes of the same user out of r4-run's memory, and its core out of
/// the file system, until exec. The child is unaffected: the setting ends with exec.
/// - Linux: `prctl(PR_SET_DUMPABLE, 0)`: no core dump (whatever `core_pattern` says), and
///   `/proc/PID/mem`, `/proc/PID/environ` and ptrace need `CAP_SYS_PTRACE`.
/// - FreeBSD: `procctl(PROC_TRACE_CTL, PROC_TRACE_CTL_DISABLE)`: no ptrace, ktrace, procfs memory
///   reads or core dump until exec, unless privileged (`PRIV_DEBUG_DENIED`: root).
/// - macOS: nothing here. `ptrace(PT_DENY_ATTACH)` is not the same: it refuses ptrace only (a
///   process holding the task port still reads the memory), it cannot be undone, and a process that
///   is already being debugged is killed by it. Attaching to another process needs root, or the
///   debugger entitlement and Developer Tools access, and is refused by binaries signed with the
///   hardened runtime.
///
/// Core dumps are kept off everywhere by the core-size limit as well (`hardening`). Failure is
/// harmless and ignored.
pub fn forbid_tracing() {
    os::forbid_tracing();
}

/// Whether r4-run can become a child subreaper here (`--subreaper`).
pub const HAS_SUBREAPER: bool = os::HAS_SUBREAPER;

/// Makes r4-run a child subreaper: orphaned descendants are re-parented to it, not to init.
/// - Linux: `prctl(PR_SET_CHILD_SUBREAPER, 1)`.
/// - FreeBSD: `procctl(P_PID, getpid(), PROC_REAP_ACQUIRE)`.
/// - macOS: none exists (an `Unsupported` error; `--subreaper` is refused before anything runs).
pub fn become_subreaper() -> io::Result<()> {
    os::become_subreaper()
}

/// Overwrites `len` bytes at `ptr` with zeros in a way the optimiser may not drop, even when the
/// memory is about to be freed (a plain memset before free is a dead store it may remove).
/// Linux and FreeBSD: `explicit_bzero`; macOS: `memset_s`; elsewhere: volatile writes and a
/// compiler fence. Allocates nothing: the global allocator calls it.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub unsafe fn zero_memory(ptr: *mut u8, len: usize) {
    if len > 0 {
        // SAFETY: the caller's guarantee, passed on.
        unsafe { os::zero_memory(ptr, len) };
    }
}

/// The process's environment block (the NULL-terminated array of `NAME=value` strings), or null.
/// The `environ` symbol everywhere but on Apple platforms, whose executables reach it through
/// `_NSGetEnviron()`.
pub fn environ() -> *mut *mut libc::c_char {
    os::environ()
}

/// Who sent a signal, as far as the platform says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Origin {
    /// The kernel generated it as such (`SI_KERNEL`): the terminal's keys and hang-ups, a window
    /// resize, a background read or write, `alarm()` and `setitimer` timers.
    Kernel,
    /// Anything else the siginfo names: a process (`kill`, `sigqueue`, `tgkill`), a POSIX timer, a
    /// kernel facility with a code of its own.
    Process,
    /// Not known: the wait gave no siginfo (`sigwait`: macOS, or the portable wait elsewhere).
    Unknown,
}

/// Whether `take_signal` can say who sent a signal here (Linux, FreeBSD: `sigwaitinfo`).
pub const TELLS_SIGNAL_ORIGIN: bool = os::TELLS_SIGNAL_ORIGIN;

/// Waits, with no timeout, for one of the signals in `set` (which the caller has blocked in every
/// thread), takes it and returns it with its origin. With `want_origin`, Linux and FreeBSD use
/// `sigwaitinfo` and read the origin from the siginfo; macOS has only `sigwait`, which gives none,
/// and so does every system without `want_origin` (the portable wait, which Linux tests run too).
/// Fails with `Interrupted` when r4-run was stopped and continued: the caller waits again.
pub fn take_signal(set: &libc::sigset_t, want_origin: bool) -> io::Result<(libc::c_int, Origin)> {
    if want_origin {
        os::take_signal(set)
    } else {
        sigwait(set)
    }
}

/// The portable wait: POSIX `sigwait`, on every Unix; it gives no siginfo.
fn sigwait(set: &libc::sigset_t) -> io::Result<(libc::c_int, Origin)> {
    let mut signal = 0;
    // SAFETY: `set` is an initialised sigset_t and `signal` a writable int.
    let rc = unsafe { libc::sigwait(set, &mut signal) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok((signal, Origin::Unknown))
}
