//! Linux (and Android): the platform r4-run is developed and tested on.

use super::Origin;
use std::io;

pub const NAME: &str = "Linux";

/// `MAX_ARG_STRLEN`: 32 pages per argument or environment string.
pub fn max_exec_string() -> Option<usize> {
    // SAFETY: sysconf takes a plain integer and has no preconditions.
    let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(page).ok().map(|page| page * 32)
}

/// Linux gives a quarter of the stack limit, but never more than 3/4 of 8 MiB (`_STK_LIM`), which
/// glibc's sysconf does not apply under a large or unlimited stack limit.
pub fn cap_exec_total(arg_max: usize) -> usize {
    arg_max.min(6 * 1024 * 1024)
}

pub fn forbid_tracing() {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

pub const HAS_SUBREAPER: bool = true;

pub fn become_subreaper() -> io::Result<()> {
    // SAFETY: prctl with PR_SET_CHILD_SUBREAPER takes a plain integer argument.
    if unsafe { libc::prctl(libc::PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) } != 0 {
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

/// `SI_KERNEL` (0x80) when the kernel generated the signal; a process or its POSIX timer gives
/// `SI_USER`, `SI_QUEUE`, `SI_TKILL` or `SI_TIMER` (all <= 0); other positive codes belong to a
/// kernel facility of their own (SIGCHLD's `CLD_*`, SIGIO's `POLL_*`), never the terminal's.
fn origin(si_code: libc::c_int) -> Origin {
    if si_code == libc::SI_KERNEL {
        Origin::Kernel
    } else {
        Origin::Process
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_si_kernel_is_the_kernels() {
        assert_eq!(origin(libc::SI_KERNEL), Origin::Kernel);
        for code in [
            libc::SI_USER,
            libc::SI_QUEUE,
            libc::SI_TKILL,
            libc::SI_TIMER,
            1,
        ] {
            assert_eq!(origin(code), Origin::Process, "si_code {code}");
        }
    }
}
