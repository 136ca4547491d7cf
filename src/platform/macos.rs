//! macOS (and the other Apple systems): no `sigwaitinfo`, no child subreaper, `environ` through
//! `_NSGetEnviron`, `memset_s` for wiping.

use super::Origin;
use std::io;

pub const NAME: &str = "macOS";

/// macOS has no per-string limit; only the total (`ARG_MAX`) counts.
pub fn max_exec_string() -> Option<usize> {
    None
}

pub fn cap_exec_total(arg_max: usize) -> usize {
    arg_max
}

/// Nothing: see `platform::forbid_tracing` for why not `ptrace(PT_DENY_ATTACH)`.
pub fn forbid_tracing() {}

pub const HAS_SUBREAPER: bool = false;

pub fn become_subreaper() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "macOS has no child subreaper",
    ))
}

/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub unsafe fn zero_memory(ptr: *mut u8, len: usize) {
    // SAFETY: the caller guarantees `ptr..ptr+len` is writable (so `smax` = `len` is its size);
    // memset_s is specified (C11 Annex K) never to be elided.
    unsafe { libc::memset_s(ptr.cast(), len, 0, len) };
}

pub fn environ() -> *mut *mut libc::c_char {
    // SAFETY: _NSGetEnviron has no preconditions and returns the address of the process's
    // `environ` pointer, valid for the life of the process.
    unsafe { *libc::_NSGetEnviron() }
}

pub const TELLS_SIGNAL_ORIGIN: bool = false;

/// macOS has `sigwait` only (no `sigwaitinfo`, no `sigtimedwait`): the origin is unknown.
pub fn take_signal(set: &libc::sigset_t) -> io::Result<(libc::c_int, Origin)> {
    super::sigwait(set)
}
