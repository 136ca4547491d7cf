//! What Linux and FreeBSD do alike: `sigwaitinfo` (which says who sent a signal), `explicit_bzero`
//! and a plain `environ` symbol. Each system's file keeps what differs: how `si_code` names a sender.

use std::io;
use std::mem::MaybeUninit;

/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub unsafe fn zero_memory(ptr: *mut u8, len: usize) {
    // SAFETY: the caller guarantees `ptr..ptr+len` is writable; explicit_bzero is a memset that is
    // never elided.
    unsafe { libc::explicit_bzero(ptr.cast(), len) };
}

pub fn environ() -> *mut *mut libc::c_char {
    extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    // SAFETY: reading the pointer's value (not through a reference); r4-run never calls setenv, so
    // nothing writes it concurrently.
    unsafe { environ }
}

/// Waits for a signal of `set`; returns it and its `si_code`.
pub fn wait_with_code(set: &libc::sigset_t) -> io::Result<(libc::c_int, libc::c_int)> {
    let mut info = MaybeUninit::<libc::siginfo_t>::zeroed();
    // SAFETY: `set` is an initialised sigset_t, `info` writable storage for one siginfo_t.
    let signal = unsafe { libc::sigwaitinfo(set, info.as_mut_ptr()) };
    if signal < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: sigwaitinfo returned a signal, so it filled `info`.
    let info = unsafe { info.assume_init() };
    Ok((signal, info.si_code))
}
