//! FreeBSD: the same signal origins as Linux (with other numbers), `procctl` for what Linux does
//! with `prctl`.

use super::Origin;
use std::io;

pub const NAME: &str = "FreeBSD";

/// FreeBSD has no per-string limit; only the total (`ARG_MAX`) counts.
pub fn max_exec_string() -> Option<usize> {
    None
}

pub fn cap_exec_total(arg_max: usize) -> usize {
    arg_max
}

pub fn forbid_tracing() {
    // Re-enabled by exec: the child can be traced and dump core as usual.
    let mut disable: libc::c_int = libc::PROC_TRACE_CTL_DISABLE;
    // SAFETY: procctl on our own pid, with a pointer to an int that outlives the call.
    unsafe {
        libc::procctl(
            libc::P_PID,
            libc::getpid().into(),
            libc::PROC_TRACE_CTL,
            (&mut disable as *mut libc::c_int).cast(),
        )
    };
}

pub const HAS_SUBREAPER: bool = true;

pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: procctl on our own pid; PROC_REAP_ACQUIRE takes no data.
    let rc = unsafe {
        libc::procctl(
            libc::P_PID,
            libc::getpid().into(),
            libc::PROC_REAP_ACQUIRE,
            std::ptr::null_mut(),
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

pub use super::sigwaitinfo::{environ, zero_memory};

pub const TELLS_SIGNAL_ORIGIN: bool = true;

/// `sigwaitinfo`: the signal and, from its `si_code`, who sent it.
pub fn take_signal(set: &libc::sigset_t) -> io::Result<(libc::c_int, Origin)> {
    let (signal, code) = super::sigwaitinfo::wait_with_code(set)?;
    Ok((signal, origin(code)))
}

/// `si_code` values of FreeBSD's `<sys/signal.h>` (the libc crate has none for FreeBSD).
const SI_NOINFO: libc::c_int = 0;
const SI_KERNEL: libc::c_int = 0x10006;

/// FreeBSD marks what the kernel generates `SI_KERNEL` as Linux does (the terminal's signals,
/// `kern_psignal`: hang-ups, `alarm()`), and what processes send `SI_USER`, `SI_QUEUE`, `SI_LWP`
/// (positive numbers here, unlike Linux). `SI_NOINFO` says nothing.
fn origin(si_code: libc::c_int) -> Origin {
    match si_code {
        SI_KERNEL => Origin::Kernel,
        SI_NOINFO => Origin::Unknown,
        _ => Origin::Process,
    }
}
