//! Which signals r4-run relays to the child, and the signal mask that holds them for the supervise
//! loop (see docs/signals.md).
//!
//! r4-run never installs a signal handler. It blocks every relayed signal (and SIGCHLD) in the main
//! thread before anything else runs, so that
//! - every later thread (the fetch's runtime, resolver threads) inherits the mask and none of them
//!   can take a signal meant for the loop;
//! - a signal that arrives between start and spawn waits, pending, instead of killing r4-run with a
//!   default action or being lost;
//! - as PID 1 the kernel still queues TERM and INT: it drops a signal to a namespace's init only when
//!   the disposition is SIG_DFL *and* the signal is not blocked.
//!
//! The supervise loop then takes them one at a time with `sigtimedwait`.

use std::mem::MaybeUninit;
use std::sync::OnceLock;

/// Every signal relayed to the child, with its name for messages. TSTP, TTIN and TTOU are the
/// job-control stops: blocked here, r4-run itself never stops on them; it relays them (or, when the
/// terminal already sent them to the child, leaves them) and follows the child's stop instead.
pub const RELAYED: &[(libc::c_int, &str)] = &[
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGTERM, "SIGTERM"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGWINCH, "SIGWINCH"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGCONT, "SIGCONT"),
    (libc::SIGTSTP, "SIGTSTP"),
    (libc::SIGTTIN, "SIGTTIN"),
    (libc::SIGTTOU, "SIGTTOU"),
];

/// Signals that ask a process to end. One of these that arrives before the child exists ends r4-run
/// instead of starting the child (see `take_pending_before_spawn`).
pub const ENDING: &[libc::c_int] = &[libc::SIGHUP, libc::SIGINT, libc::SIGQUIT, libc::SIGTERM];

/// Whether an ending signal (TERM, INT, HUP, QUIT) waits pending. It is left pending: the caller
/// stops what it is doing and `take_pending_before_spawn` then ends the run with it.
pub fn ending_signal_pending() -> bool {
    let mut pending = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `pending` is writable storage for one sigset_t that sigpending fills in.
    if unsafe { libc::sigpending(pending.as_mut_ptr()) } != 0 {
        return false;
    }
    // SAFETY: sigpending succeeded and filled `pending`.
    let pending = unsafe { pending.assume_init() };
    // SAFETY: `pending` is an initialised set and each signal is valid.
    ENDING
        .iter()
        .any(|&s| unsafe { libc::sigismember(&pending, s) } == 1)
}

/// The name of a signal, for messages.
pub fn name(signal: libc::c_int) -> String {
    RELAYED
        .iter()
        .find(|(s, _)| *s == signal)
        .map(|(_, n)| (*n).to_owned())
        .unwrap_or_else(|| format!("signal {signal}"))
}

/// The mask set up by `block`, and what r4-run inherited, to give back to the child.
#[derive(Clone, Copy)]
pub struct Mask {
    /// The relayed signals plus SIGCHLD: what the supervise loop waits on.
    pub waited: libc::sigset_t,
    /// The mask r4-run was started with; the child gets it back before exec.
    pub inherited: libc::sigset_t,
    /// Whether SIGCHLD was inherited as SIG_IGN (then the kernel would reap for us and `waitpid`
    /// would never see the child's status). r4-run sets it back to SIG_DFL for itself and ignores
    /// it again in the child, so the child sees what it would have without r4-run.
    pub chld_was_ignored: bool,
}

static MASK: OnceLock<Mask> = OnceLock::new();

/// Blocks the relayed signals and SIGCHLD in the calling thread; idempotent. Call it first thing in
/// the main thread, before any other thread exists.
pub fn block() -> &'static Mask {
    MASK.get_or_init(|| {
        let waited = waited_set();
        let mut inherited = MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: both pointers are valid for the call: `waited` is an initialised set, `inherited`
        // is writable storage for one sigset_t that the call fills in.
        let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &waited, inherited.as_mut_ptr()) };
        assert_eq!(rc, 0, "pthread_sigmask(SIG_BLOCK) failed");
        // SAFETY: pthread_sigmask succeeded, so it wrote the previous mask into `inherited`.
        let inherited = unsafe { inherited.assume_init() };
        Mask {
            waited,
            inherited,
            chld_was_ignored: reset_sigchld(),
        }
    })
}

fn waited_set() -> libc::sigset_t {
    let mut set = MaybeUninit::<libc::sigset_t>::zeroed();
    // SAFETY: `set` is writable storage for one sigset_t; sigemptyset initialises it.
    unsafe { libc::sigemptyset(set.as_mut_ptr()) };
    for &(signal, _) in RELAYED.iter().chain([&(libc::SIGCHLD, "SIGCHLD")]) {
        // SAFETY: `set` was initialised by sigemptyset above; `signal` is a valid signal number.
        unsafe { libc::sigaddset(set.as_mut_ptr(), signal) };
    }
    // SAFETY: initialised by sigemptyset and only added to since.
    unsafe { set.assume_init() }
}

/// Makes sure SIGCHLD is not SIG_IGN for r4-run (returns whether it was). Any other disposition is
/// left as inherited: r4-run installs no handler and sets nothing to SIG_IGN, because ignored
/// dispositions survive exec and the child must get every signal it would get without us.
fn reset_sigchld() -> bool {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is writable storage for one sigaction.
    let rc = unsafe { libc::sigaction(libc::SIGCHLD, std::ptr::null(), old.as_mut_ptr()) };
    if rc != 0 {
        return false;
    }
    // SAFETY: sigaction succeeded and filled `old`.
    let old = unsafe { old.assume_init() };
    if old.sa_sigaction != libc::SIG_IGN {
        return false;
    }
    set_disposition(libc::SIGCHLD, libc::SIG_DFL);
    true
}

fn set_disposition(signal: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: signal() with SIG_DFL or SIG_IGN installs no code of ours; `signal` is valid.
    unsafe { libc::signal(signal, handler) };
}

impl Mask {
    /// Gives the child, between fork and exec, the mask and SIGCHLD disposition r4-run inherited.
    /// std has already emptied the mask and reset SIGPIPE (which the Rust runtime ignores) to
    /// SIG_DFL by then; this runs after that. Only async-signal-safe calls.
    pub fn restore_in_child(&self) -> std::io::Result<()> {
        // SAFETY: `self.inherited` is an initialised sigset_t; a null old-set pointer is allowed.
        let rc = unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.inherited, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
        }
        if self.chld_was_ignored {
            set_disposition(libc::SIGCHLD, libc::SIG_IGN);
        }
        Ok(())
    }

    /// Takes, without waiting, every ending signal that arrived before the child existed, and says
    /// which came first in signal order (the one r4-run ends with). Other relayed signals that wait
    /// pending are taken and dropped: they were meant for a process that did not exist yet, and a
    /// child that has not installed its handlers yet would die of SIGUSR1 or SIGALRM.
    pub fn take_pending_before_spawn(&self) -> Option<libc::c_int> {
        let mut pending = MaybeUninit::<libc::sigset_t>::zeroed();
        // SAFETY: `pending` is writable storage for one sigset_t that sigpending fills in.
        if unsafe { libc::sigpending(pending.as_mut_ptr()) } != 0 {
            return None;
        }
        // SAFETY: sigpending succeeded and filled `pending`.
        let pending = unsafe { pending.assume_init() };
        let mut ending = None;
        for &(signal, name) in RELAYED {
            // SAFETY: `pending` is an initialised set.
            if unsafe { libc::sigismember(&pending, signal) } != 1 {
                continue;
            }
            let mut one = MaybeUninit::<libc::sigset_t>::zeroed();
            // SAFETY: `one` is writable storage; initialised by sigemptyset, then one signal added.
            let one = unsafe {
                libc::sigemptyset(one.as_mut_ptr());
                libc::sigaddset(one.as_mut_ptr(), signal);
                one.assume_init()
            };
            let zero = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: `one` is an initialised set, a null siginfo pointer is allowed, `zero` is a
            // valid timespec; the signal is pending so this returns at once.
            unsafe { libc::sigtimedwait(&one, std::ptr::null_mut(), &zero) };
            if ENDING.contains(&signal) {
                ending.get_or_insert(signal);
            } else {
                crate::verbose!(1, "{name} arrived before the command started; dropped");
            }
        }
        ending
    }
}
