//! What r4-run does to its own process so that, once the child runs, no secret is left in it:
//! scrubbing the API key from our own environment block, wiping the stack the fetch used, and turning
//! core dumps off (dumpability from the start, the core-size limit once the child is started). See
//! docs/security.md for the threat model and what cannot be covered.

use crate::wipe_alloc::wipe;
use std::ffi::CStr;

/// Variables whose value is scrubbed in place in r4-run's own environment block.
const SCRUBBED: [&str; 1] = ["R4_API_KEY"];

/// Overwrites the value of `R4_API_KEY` in the process's environment block with zeros, in place.
///
/// The block was put on the initial stack by the kernel and is what `/proc/PID/environ` shows, so a
/// copy there would outlive every wipe of our own. Call after the key has been read and before any
/// other thread exists (nothing else reads the environment concurrently).
pub fn scrub_own_environment() {
    extern "C" {
        static mut environ: *mut *mut libc::c_char;
    }
    // SAFETY: reading the `environ` pointer; r4-run is single-threaded here and never calls setenv,
    // so the array and its strings are stable while we walk them.
    let mut entry = unsafe { environ };
    if entry.is_null() {
        return;
    }
    loop {
        // SAFETY: `environ` is a NULL-terminated array of valid C strings.
        let ptr = unsafe { *entry };
        if ptr.is_null() {
            break;
        }
        // SAFETY: `ptr` is a valid NUL-terminated string owned by the process.
        let bytes = unsafe { CStr::from_ptr(ptr) }.to_bytes();
        for name in SCRUBBED {
            if bytes.len() > name.len()
                && bytes.starts_with(name.as_bytes())
                && bytes[name.len()] == b'='
            {
                let value_len = bytes.len() - name.len() - 1;
                // SAFETY: the value bytes lie inside the string (before its NUL) and are writable:
                // the environment block is ordinary process memory.
                unsafe { wipe(ptr.add(name.len() + 1).cast(), value_len) };
            }
        }
        // SAFETY: still inside the NULL-terminated array.
        entry = unsafe { entry.add(1) };
    }
}

/// How much of the stack below the caller is overwritten: more than the fetch (tokio, hyper, serde)
/// and the spawn ever use, far less than the 8 MiB default limit.
const STACK_WIPE_BYTES: usize = 256 * 1024;

/// Overwrites the stack region that the fetch and spawn used, once they have returned: their frames
/// may have held a request head or a decoded value.
#[inline(never)]
pub fn wipe_used_stack() {
    let mut region = [0u8; STACK_WIPE_BYTES];
    // SAFETY: `region` is a local array of exactly that size.
    unsafe { wipe(region.as_mut_ptr(), region.len()) };
    std::hint::black_box(&mut region);
}

/// Makes r4-run non-dumpable (`PR_SET_DUMPABLE` 0) before it reads the key: no core dump, and no
/// `/proc/PID/mem` or ptrace attach without `CAP_SYS_PTRACE`, even if it aborts during the fetch
/// (release builds abort on panic). The child is unaffected: exec makes a process dumpable again.
/// Failure is harmless and ignored.
pub fn forbid_dumping() {
    // SAFETY: prctl(PR_SET_DUMPABLE, 0) takes plain integers.
    unsafe { libc::prctl(libc::PR_SET_DUMPABLE, 0, 0, 0, 0) };
}

/// The core-size limit to 0 for r4-run itself, once the child is started: the child inherits
/// resource limits (unlike dumpability), so setting it earlier would take its core dumps away.
/// Failure is harmless and ignored.
pub fn forbid_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
}
