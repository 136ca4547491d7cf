//! Any other Unix: the portable fallbacks. Not checked in CI (README "Platforms").

use super::Origin;
use std::io;

pub const NAME: &str = "this system";

pub fn max_exec_string() -> Option<usize> {
    None
}

pub fn cap_exec_total(arg_max: usize) -> usize {
    arg_max
}

pub fn forbid_tracing() {}

pub const HAS_SUBREAPER: bool = false;

pub fn become_subreaper() -> io::Result<()> {
    Err(io::Error::new(
        io::ErrorKind::Unsupported,
        "no child subreaper on this system",
    ))
}

/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub unsafe fn zero_memory(ptr: *mut u8, len: usize) {
    for i in 0..len {
        // SAFETY: the caller guarantees `ptr..ptr+len` is writable; volatile writes are never
        // elided.
        unsafe { std::ptr::write_volatile(ptr.add(i), 0) };
    }
    // Keeps the compiler from moving the free that follows before the writes.
    std::sync::atomic::compiler_fence(std::sync::atomic::Ordering::SeqCst);
}

pub fn environ() -> *mut *mut libc::c_char {
    extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    // SAFETY: reading the pointer's value (not through a reference); r4-run never calls setenv, so
    // nothing writes it concurrently.
    unsafe { environ }
}

pub const TELLS_SIGNAL_ORIGIN: bool = false;

pub fn take_signal(set: &libc::sigset_t) -> io::Result<(libc::c_int, Origin)> {
    super::sigwait(set)
}
