//! `--mask`: copying the command's stdout and stderr to r4-run's own, through the mask.
//!
//! One thread per stream, so each keeps its order and neither waits for the other. A thread reads
//! what the command wrote, passes it through its `mask::Stream`, and writes what the mask lets out at
//! once (only the beginning of a value can be held back). The bytes read are zeroed as soon as they
//! are passed on: they may hold a value. If r4-run's own stream is closed, the thread stops reading,
//! so the command meets the closed pipe as it would have without r4-run.
//!
//! The command's end does not close the pipes if something it started still holds them (a daemon,
//! a background job): after the command is reaped, a stream is drained until it has been idle for
//! `IDLE_AFTER_END`, then closed, so r4-run never waits on a descendant to exit with the command's
//! status.

use crate::mask;
use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{mpsc, Arc};
use std::time::{Duration, Instant};

/// How long a stream must stay quiet, once the command has ended, before it is closed.
pub const IDLE_AFTER_END: Duration = Duration::from_millis(300);
/// How often a quiet stream looks whether the command has ended.
const POLL: Duration = Duration::from_millis(50);
/// What is read at once.
const CHUNK: usize = 64 * 1024;

/// A stream being copied.
pub struct Pump {
    command_ended: Arc<AtomicBool>,
    done: mpsc::Receiver<()>,
}

/// Copies `from` (the read end of the command's stream) to r4-run's descriptor `to` (1 or 2)
/// through `mask`.
pub fn start(from: OwnedFd, to: BorrowedFd<'_>, mut mask: mask::Stream) -> std::io::Result<Pump> {
    let mut to = File::from(to.try_clone_to_owned()?);
    let command_ended = Arc::new(AtomicBool::new(false));
    let ended = Arc::clone(&command_ended);
    let (finished, done) = mpsc::channel();
    std::thread::Builder::new()
        .name("r4-run mask".to_owned())
        .spawn(move || {
            let mut from = File::from(from);
            let mut buf = zeroize::Zeroizing::new(vec![0u8; CHUNK]);
            let mut out = Vec::with_capacity(CHUNK + 256);
            let mut quiet_since: Option<Instant> = None;
            loop {
                if !readable(&from, POLL) {
                    if ended.load(Ordering::Acquire) {
                        let since = *quiet_since.get_or_insert_with(Instant::now);
                        if since.elapsed() >= IDLE_AFTER_END {
                            break;
                        }
                    }
                    continue;
                }
                quiet_since = None;
                let n = match from.read(&mut buf[..]) {
                    Ok(0) => break,
                    Ok(n) => n,
                    Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
                    Err(_) => break,
                };
                mask.feed(&buf[..n], &mut out);
                zeroize::Zeroize::zeroize(&mut buf[..n]);
                let written = to.write_all(&out);
                out.clear();
                if written.is_err() {
                    // Our own stream is closed: the command finds its pipe closed too.
                    let _ = finished.send(());
                    return;
                }
            }
            mask.finish(&mut out);
            let _ = to.write_all(&out);
            let _ = finished.send(());
        })?;
    Ok(Pump {
        command_ended,
        done,
    })
}

impl Pump {
    /// Called once the command has been reaped: waits until the stream is drained (its end, or
    /// `IDLE_AFTER_END` of quiet).
    pub fn finish(self) {
        self.command_ended.store(true, Ordering::Release);
        // Bounded in any case: a stream that keeps talking after the command's end is cut there.
        let _ = self.done.recv_timeout(Duration::from_secs(5));
    }
}

/// Whether `file` has something to read (or is at its end) within `wait`.
fn readable(file: &File, wait: Duration) -> bool {
    let mut poll = libc::pollfd {
        fd: file.as_raw_fd(),
        events: libc::POLLIN,
        revents: 0,
    };
    // SAFETY: one valid pollfd for a descriptor we own, for the call's duration.
    let n = unsafe { libc::poll(&mut poll, 1, wait.as_millis() as libc::c_int) };
    n > 0
}
