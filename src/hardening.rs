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

/// How far below the caller the stack is looked at, and wiped at most: more than the fetch (tokio,
/// hyper, serde) and the spawn ever use, far less than the 8 MiB default limit.
const STACK_WIPE_MAX: usize = 256 * 1024;

/// The stack wiped by each frame of `wipe_stack_frames`.
const STACK_WIPE_FRAME: usize = 8 * 1024;

/// Overwrites the stack region that the fetch and spawn used, once they have returned: their frames
/// may have held a request head or a decoded value.
///
/// Only as deep as the stack was ever used: the lowest page within `STACK_WIPE_MAX` below this frame
/// that is resident. A page never touched holds nothing, and wiping it would only fault it in: the
/// whole 256 KiB was ~60 page faults, ~0.2 ms on the way to the spawn. (A page the fetch used and the
/// kernel swapped out within the run's few milliseconds, below every resident one, would be missed.)
#[inline(never)]
pub fn wipe_used_stack() {
    let here = 0u8;
    let top = std::ptr::addr_of!(here) as usize;
    let depth = used_stack_below(top, STACK_WIPE_MAX);
    wipe_stack_frames(depth);
}

/// Wipes `depth` bytes of stack below the caller, `STACK_WIPE_FRAME` at a time, in frames of its own.
#[inline(never)]
fn wipe_stack_frames(depth: usize) {
    let mut region = [0u8; STACK_WIPE_FRAME];
    // SAFETY: `region` is a local array of exactly that size.
    unsafe { wipe(region.as_mut_ptr(), region.len()) };
    if depth > STACK_WIPE_FRAME {
        wipe_stack_frames(depth - STACK_WIPE_FRAME);
    }
    // After the call, so that this frame stays below the caller's while the next one is wiped (no
    // tail call reusing it).
    std::hint::black_box(&mut region);
}

/// How many bytes below `top` the stack has been used: down to the lowest resident page among the
/// mapped ones within `max` bytes, as `mincore` reports. `max` if `mincore` cannot say.
fn used_stack_below(top: usize, max: usize) -> usize {
    const MOST_PAGES: usize = 64;
    let page = page_size();
    let top_page = top & !(page - 1);
    let pages = (max / page).clamp(1, MOST_PAGES);
    // Page k is the k-th below `top_page`. The stack's mapping is one range ending above `top`, so
    // the mapped pages are 0..=m for some m: found by bisection, a few calls instead of one a page.
    let mut residency = [0u8; MOST_PAGES];
    let mut ask = |first: usize, count: usize| -> Result<(), i32> {
        let start = top_page - (first + count - 1) * page;
        // SAFETY: `start` is page-aligned, `residency` has room for `count` <= MOST_PAGES entries,
        // and mincore only reads the page tables.
        let rc = unsafe {
            libc::mincore(
                start as *mut libc::c_void,
                count * page,
                residency.as_mut_ptr().cast(),
            )
        };
        if rc == 0 {
            return Ok(());
        }
        Err(std::io::Error::last_os_error().raw_os_error().unwrap_or(0))
    };
    let mapped = |k: usize, ask: &mut dyn FnMut(usize, usize) -> Result<(), i32>| match ask(k, 1) {
        Ok(()) => Some(true),
        Err(libc::ENOMEM) => Some(false),
        Err(_) => None,
    };
    let lowest_mapped = match mapped(pages - 1, &mut ask) {
        Some(true) => pages - 1,
        Some(false) => {
            let (mut lo, mut hi) = (0, pages - 1); // page lo is mapped (it holds `top`), hi is not
            while hi - lo > 1 {
                let mid = (lo + hi) / 2;
                match mapped(mid, &mut ask) {
                    Some(true) => lo = mid,
                    Some(false) => hi = mid,
                    None => return max,
                }
            }
            lo
        }
        None => return max,
    };
    let count = lowest_mapped + 1;
    if ask(0, count).is_err() {
        return max;
    }
    // residency[i] is the page at `top_page - (count - 1 - i) * page`: the first resident one is the
    // lowest.
    match residency[..count].iter().position(|r| r & 1 != 0) {
        Some(i) => top - (top_page - (count - 1 - i) * page),
        None => 0,
    }
}

fn page_size() -> usize {
    // SAFETY: sysconf has no preconditions.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size)
        .ok()
        .filter(|s| s.is_power_of_two())
        .unwrap_or(4096)
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

#[cfg(test)]
mod tests {
    use super::*;

    /// Uses `bytes` of stack below the caller: frames of 4 KiB, each written.
    #[inline(never)]
    fn use_stack(bytes: usize) {
        let mut frame = [1u8; 4096];
        std::hint::black_box(&mut frame);
        if bytes > frame.len() {
            use_stack(bytes - frame.len());
        }
        std::hint::black_box(&mut frame);
    }

    #[test]
    fn the_used_stack_is_found_down_to_the_deepest_frame() {
        // On a thread of its own, whose stack nothing else has used.
        std::thread::spawn(|| {
            let here = 0u8;
            let top = std::ptr::addr_of!(here) as usize;
            use_stack(96 * 1024);
            let used = used_stack_below(top, STACK_WIPE_MAX);
            assert!(used >= 96 * 1024, "found {used} bytes used");
            assert!(used <= STACK_WIPE_MAX, "found {used} bytes used");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn the_search_never_goes_past_its_limit() {
        std::thread::spawn(|| {
            let here = 0u8;
            let top = std::ptr::addr_of!(here) as usize;
            use_stack(96 * 1024);
            let used = used_stack_below(top, 32 * 1024);
            assert!(used <= 32 * 1024, "found {used} bytes used");
            assert!(used >= 28 * 1024, "found {used} bytes used");
        })
        .join()
        .unwrap();
    }

    #[test]
    fn wiping_the_used_stack_leaves_the_caller_working() {
        std::thread::spawn(|| {
            use_stack(64 * 1024);
            let kept = std::hint::black_box([7u8; 64]);
            wipe_used_stack();
            assert_eq!(kept, [7u8; 64]);
        })
        .join()
        .unwrap();
    }
}
