//! A global allocator that wipes every block before it is freed, and every block a reallocation
//! moves away from.
//!
//! Our own secret types zeroize themselves, but reqwest, hyper, serde_json and `std::process::Command`
//! make copies we cannot reach (request heads, read buffers, the child's `envp`). Wiping at the
//! allocator covers every library's buffers at once: once a buffer is freed, its bytes are gone. The
//! cost is a `memset` per free, which for a short fetch is a few microseconds (docs/performance.md).

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, Ordering};

pub struct WipingAllocator;

/// On unless a debug build is asked to leave it off, as the negative control of the memory-scan test
/// (`tests/cli/hygiene.rs`). Release builds cannot turn it off.
static ENABLED: AtomicBool = AtomicBool::new(true);

/// Debug builds only: `R4_RUN_TEST_NO_WIPE=1` turns wiping off, so the memory-scan test can show that
/// without it secrets do remain (the test could fail). Call first thing in `main`.
pub fn configure_from_env() {
    #[cfg(debug_assertions)]
    if std::env::var_os("R4_RUN_TEST_NO_WIPE").is_some_and(|v| v == "1") {
        ENABLED.store(false, Ordering::Relaxed);
    }
}

/// Overwrites `len` bytes at `ptr` with zeros in a way the optimiser may not drop, even though the
/// memory is about to be freed (a plain memset before free is a dead store it is allowed to remove):
/// `platform::zero_memory`.
///
/// # Safety
/// `ptr` must be valid for writes of `len` bytes.
pub unsafe fn wipe(ptr: *mut u8, len: usize) {
    // SAFETY: the caller's guarantee, passed on.
    unsafe { crate::platform::zero_memory(ptr, len) };
}

// SAFETY: every method forwards to `System` with the same layouts; the only addition is writing zeros
// into memory that the caller owns and is giving back, before `System` gets it.
unsafe impl GlobalAlloc for WipingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: same contract as ours.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        if ENABLED.load(Ordering::Relaxed) {
            // SAFETY: the block at `ptr` is `layout.size()` bytes and still ours until dealloc.
            unsafe { wipe(ptr, layout.size()) };
        }
        // SAFETY: same contract as ours.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        if !ENABLED.load(Ordering::Relaxed) {
            // SAFETY: same contract as ours.
            return unsafe { System.realloc(ptr, layout, new_size) };
        }
        // The system realloc may move the block and free the old one unwiped, so move it ourselves:
        // allocate, copy, wipe and free the old block.
        // SAFETY: the caller guarantees `new_size` with `layout.align()` is a valid layout.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        // SAFETY: `new_layout` has a non-zero size (GlobalAlloc::realloc's contract).
        let new_ptr = unsafe { System.alloc(new_layout) };
        if !new_ptr.is_null() {
            // SAFETY: both blocks are valid for the copied length and do not overlap.
            unsafe { std::ptr::copy_nonoverlapping(ptr, new_ptr, layout.size().min(new_size)) };
            // SAFETY: the old block is ours until freed here.
            unsafe { self.dealloc(ptr, layout) };
        }
        new_ptr
    }
}
