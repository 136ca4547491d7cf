//! What r4-run does to its own process so that, once the child runs, no secret is left in it:
//! scrubbing the API key from our own environment block, wiping the stack the fetch used, and keeping
//! debuggers and core dumps out (tracing and the core-size soft limit from the start, the hard limit
//! once the child is started). See docs/security.md for the threat model, what each system allows
//! and what cannot be covered.

use crate::platform;
use crate::wipe_alloc::wipe;
use std::ffi::CStr;
use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// Variables whose value is scrubbed in place in r4-run's own environment block.
const SCRUBBED: [&str; 1] = ["R4_API_KEY"];

/// Overwrites the value of `R4_API_KEY` in the process's environment block with zeros, in place.
///
/// The block was put on the initial stack by the kernel and is what `/proc/PID/environ` shows, so a
/// copy there would outlive every wipe of our own. Call after the key has been read and before any
/// other thread exists (nothing else reads the environment concurrently).
pub fn scrub_own_environment() {
    // r4-run is single-threaded here and never calls setenv, so the array and its strings are
    // stable while we walk them.
    let mut entry = platform::environ();
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

/// The core-size limit r4-run was started with, which the child gets back.
static INHERITED_CORE_LIMIT: OnceLock<libc::rlimit> = OnceLock::new();

/// Keeps r4-run's memory to itself from before it reads the key until the child runs, even if it
/// aborts during the fetch (release builds abort on panic): `platform::forbid_tracing` (Linux:
/// non-dumpable; FreeBSD: no tracing; macOS: nothing), and on every system the core-size soft limit
/// to 0. The hard limit stays, so the child gets the soft limit back (`restore_core_limit_in_child`);
/// the tracing setting ends with exec by itself. Failure is harmless and ignored.
pub fn forbid_dumping() {
    platform::forbid_tracing();
    let mut limit = MaybeUninit::<libc::rlimit>::zeroed();
    // SAFETY: getrlimit fills the struct we pass.
    if unsafe { libc::getrlimit(libc::RLIMIT_CORE, limit.as_mut_ptr()) } != 0 {
        return;
    }
    // SAFETY: getrlimit succeeded and filled `limit`.
    let inherited = unsafe { limit.assume_init() };
    if INHERITED_CORE_LIMIT.set(inherited).is_err() {
        return; // lowered already: the recorded value is the inherited one
    }
    let lowered = libc::rlimit {
        rlim_cur: 0,
        rlim_max: inherited.rlim_max,
    };
    // SAFETY: setrlimit reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &lowered) };
}

/// Between fork and exec, in the child: the core-size soft limit back to what r4-run was started
/// with (its hard limit was never lowered before the spawn, so this cannot be refused). Only a
/// lock-free read and one system call: safe after fork.
pub fn restore_core_limit_in_child() {
    if let Some(inherited) = INHERITED_CORE_LIMIT.get() {
        // SAFETY: setrlimit reads the struct we pass.
        unsafe { libc::setrlimit(libc::RLIMIT_CORE, inherited) };
    }
}

/// The core-size limit, the hard one too, to 0 for r4-run itself once the child is started: the
/// child inherits resource limits (unlike dumpability), so lowering the hard limit earlier would
/// take the child's core dumps away for good. Failure is harmless and ignored.
pub fn forbid_core_dumps() {
    let zero = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: setrlimit reads the struct we pass.
    unsafe { libc::setrlimit(libc::RLIMIT_CORE, &zero) };
}
