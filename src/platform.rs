//! What differs between the operating systems r4-run runs on, behind a small surface: the callers
//! above see plain values and never a `cfg`.

/// The most bytes one argument or environment string (its NUL included) may have in an exec.
/// Linux: `MAX_ARG_STRLEN`, 32 pages. Elsewhere only the total counts.
pub fn max_exec_string() -> Option<usize> {
    #[cfg(any(target_os = "linux", target_os = "android"))]
    {
        // SAFETY: sysconf takes a plain integer and has no preconditions.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
        usize::try_from(page).ok().map(|page| page * 32)
    }
    #[cfg(not(any(target_os = "linux", target_os = "android")))]
    {
        None
    }
}

/// The most bytes of all argument and environment strings of one exec, pointers included
/// (`ARG_MAX`).
pub fn max_exec_total() -> Option<usize> {
    // SAFETY: sysconf takes a plain integer and has no preconditions.
    let arg_max = unsafe { libc::sysconf(libc::_SC_ARG_MAX) };
    let arg_max = usize::try_from(arg_max).ok().filter(|&n| n > 0)?;
    // Linux gives a quarter of the stack limit, but never more than 3/4 of 8 MiB (`_STK_LIM`),
    // which glibc's sysconf does not apply under a large or unlimited stack limit.
    #[cfg(any(target_os = "linux", target_os = "android"))]
    let arg_max = arg_max.min(6 * 1024 * 1024);
    Some(arg_max)
}
