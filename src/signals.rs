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
use std::sync::atomic::{AtomicU8, Ordering};
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

/// What the supervise loop does with a relayed signal it took.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Relay {
    /// Send it on to the child.
    Send,
    /// The child got it already; why, for `-vvv`.
    Skip(Skipped),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Skipped {
    /// The terminal sent it to the whole foreground process group, the child included.
    SentToTheGroup,
    /// A SIGCONT while the child, in our group, is not stopped: the group's copy continued it.
    ChildRunning,
}

/// Where the child is and where r4-run is, as far as the relay decision goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Placement {
    /// The child is in r4-run's process group (a terminal is involved).
    pub shares_group: bool,
    /// r4-run leads its session (`setsid`, `ssh -t host r4-run`, a tmux command, `docker run -t`).
    pub leads_session: bool,
}

/// Whether a relayed signal, taken with this `si_code`, goes on to the child. `child_stopped` is
/// read for SIGCONT only.
///
/// A signal may be skipped only when the child shares r4-run's group *and* the kernel sent this
/// very signal to that whole group, so the child has its own copy. `si_code` alone cannot tell:
/// the kernel marks everything it generates `SI_KERNEL`, a terminal's Ctrl-C as well as an
/// `alarm()` timer's SIGALRM, which goes to r4-run alone. So it is decided by signal too:
/// - INT, QUIT, TSTP (the keyboard), WINCH (a resize), TTIN, TTOU (a background read or write):
///   the kernel only ever sends these to a process group;
/// - HUP and CONT: when the terminal hangs up the kernel sends them to the session leader alone,
///   and to the foreground group only when that leader exits (or an orphaned group has stopped
///   members). So they are the group's copies unless r4-run leads its session: then they came to
///   r4-run alone and the child has not had them;
/// - anything else (ALRM from a timer, TERM, USR1, USR2) concerns r4-run alone.
///
/// A signal a process sent (`SI_USER`, `SI_QUEUE`, `SI_TKILL`, `SI_TIMER` from a POSIX timer: all
/// <= 0) was aimed at r4-run and is relayed (see docs/signals.md for the one known limit).
pub fn relay_decision(
    signal: libc::c_int,
    si_code: libc::c_int,
    placement: Placement,
    child_stopped: bool,
) -> Relay {
    if !placement.shares_group {
        // Nothing reaches a child in its own group but through us.
        return Relay::Send;
    }
    let sent_to_the_group = si_code == libc::SI_KERNEL
        && match signal {
            libc::SIGINT
            | libc::SIGQUIT
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
            | libc::SIGWINCH => true,
            libc::SIGHUP | libc::SIGCONT => !placement.leads_session,
            _ => false,
        };
    if sent_to_the_group {
        return Relay::Skip(Skipped::SentToTheGroup);
    }
    // A shell's `fg` and `bg` send SIGCONT to the whole job's group (from a process, so it is not
    // caught above), and the child, sharing it, has been continued already. A SIGCONT is relayed
    // in a shared group only while the child is still stopped (someone continued r4-run alone).
    if signal == libc::SIGCONT && !child_stopped {
        return Relay::Skip(Skipped::ChildRunning);
    }
    Relay::Send
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
    /// Whether SIGPIPE was inherited as SIG_IGN (systemd's default for services, `trap '' PIPE`).
    /// The Rust runtime ignores SIGPIPE at start-up whatever it inherited, and std sets it back to
    /// SIG_DFL in every child it starts; the child gets SIG_IGN again if that is what r4-run got.
    pub pipe_was_ignored: bool,
}

static MASK: OnceLock<Mask> = OnceLock::new();

const NOT_RECORDED: u8 = 0;
const DEFAULT: u8 = 1;
const IGNORED: u8 = 2;

/// SIGPIPE's disposition as the process was started, before std's start-up changed it.
static SIGPIPE_AT_START: AtomicU8 = AtomicU8::new(NOT_RECORDED);

/// Records the signal dispositions the process was started with, before std's runtime start-up
/// changes SIGPIPE's. main.rs runs it from an `.init_array` constructor (before `main` and std's
/// start-up); where the platform has none it is never called, and the child gets SIGPIPE at the
/// default, as from any Rust program. Only a sigaction query and an atomic store: sound that early.
pub extern "C" fn record_inherited_dispositions() {
    if let Some(ignored) = is_ignored(libc::SIGPIPE) {
        SIGPIPE_AT_START.store(if ignored { IGNORED } else { DEFAULT }, Ordering::Relaxed);
    }
}

/// Whether `signal` is SIG_IGN right now (None if the query failed).
fn is_ignored(signal: libc::c_int) -> Option<bool> {
    let mut old = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: a null new action only queries; `old` is writable storage for one sigaction.
    if unsafe { libc::sigaction(signal, std::ptr::null(), old.as_mut_ptr()) } != 0 {
        return None;
    }
    // SAFETY: sigaction succeeded and filled `old`.
    let old = unsafe { old.assume_init() };
    Some(old.sa_sigaction == libc::SIG_IGN)
}

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
            pipe_was_ignored: SIGPIPE_AT_START.load(Ordering::Relaxed) == IGNORED,
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
    if is_ignored(libc::SIGCHLD) != Some(true) {
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
    /// Gives the child, between fork and exec, the mask and the SIGCHLD and SIGPIPE dispositions
    /// r4-run inherited. std has already emptied the mask and reset SIGPIPE (which the Rust runtime
    /// ignores) to SIG_DFL by then; this runs after that. Only async-signal-safe calls.
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
        if self.pipe_was_ignored {
            set_disposition(libc::SIGPIPE, libc::SIG_IGN);
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
            // Pending, so this returns at once.
            let _ = crate::platform::take_signal(&one, false);
            if ENDING.contains(&signal) {
                ending.get_or_insert(signal);
            } else {
                crate::verbose!(1, "{name} arrived before the command started; dropped");
            }
        }
        ending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use libc::{SIGALRM, SIGCONT, SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGTSTP, SIGTTIN, SIGTTOU};
    use libc::{SIGUSR1, SIGUSR2, SIGWINCH, SI_KERNEL, SI_QUEUE, SI_TIMER, SI_TKILL, SI_USER};

    const SEND: Relay = Relay::Send;
    const GROUP: Relay = Relay::Skip(Skipped::SentToTheGroup);
    const RUNNING: Relay = Relay::Skip(Skipped::ChildRunning);

    /// (signal, si_code, shares_group, leads_session, child_stopped) -> decision.
    #[rustfmt::skip]
    const TABLE: &[(libc::c_int, libc::c_int, bool, bool, bool, Relay)] = &[
        // The terminal's keys, a resize, a background read or write: to the whole foreground group.
        (SIGINT,   SI_KERNEL, true,  false, false, GROUP),
        (SIGINT,   SI_KERNEL, true,  true,  false, GROUP),
        (SIGQUIT,  SI_KERNEL, true,  true,  false, GROUP),
        (SIGTSTP,  SI_KERNEL, true,  false, false, GROUP),
        (SIGTTIN,  SI_KERNEL, true,  false, false, GROUP),
        (SIGTTOU,  SI_KERNEL, true,  true,  false, GROUP),
        (SIGWINCH, SI_KERNEL, true,  true,  false, GROUP),
        // A hang-up: to the session leader alone, to the foreground group only when the leader exits.
        (SIGHUP,   SI_KERNEL, true,  false, false, GROUP),
        (SIGHUP,   SI_KERNEL, true,  true,  false, SEND),
        (SIGCONT,  SI_KERNEL, true,  false, true,  GROUP),
        (SIGCONT,  SI_KERNEL, true,  true,  true,  SEND),
        (SIGCONT,  SI_KERNEL, true,  true,  false, RUNNING),
        // alarm() and setitimer(ITIMER_REAL): SI_KERNEL too, but to r4-run alone.
        (SIGALRM,  SI_KERNEL, true,  false, false, SEND),
        (SIGALRM,  SI_KERNEL, true,  true,  false, SEND),
        (SIGALRM,  SI_TIMER,  true,  true,  false, SEND),
        // Never sent by the kernel to a group; relayed whatever the origin.
        (SIGTERM,  SI_KERNEL, true,  false, false, SEND),
        (SIGUSR1,  SI_KERNEL, true,  false, false, SEND),
        (SIGUSR2,  SI_KERNEL, true,  false, false, SEND),
        // Sent by a process: aimed at r4-run.
        (SIGINT,   SI_USER,   true,  false, false, SEND),
        (SIGINT,   SI_QUEUE,  true,  false, false, SEND),
        (SIGWINCH, SI_TKILL,  true,  false, false, SEND),
        (SIGHUP,   SI_USER,   true,  false, false, SEND),
        // A shell's fg/bg: SIGCONT from a process to the group, the child already running.
        (SIGCONT,  SI_USER,   true,  false, false, RUNNING),
        (SIGCONT,  SI_USER,   true,  false, true,  SEND),
        // Some other kernel code than SI_KERNEL is not the terminal's.
        (SIGINT,   1,         true,  false, false, SEND),
        // The child in its own group: everything goes through r4-run.
        (SIGINT,   SI_KERNEL, false, false, false, SEND),
        (SIGHUP,   SI_KERNEL, false, false, false, SEND),
        (SIGCONT,  SI_USER,   false, false, false, SEND),
        (SIGWINCH, SI_KERNEL, false, true,  false, SEND),
    ];

    #[test]
    fn skips_only_what_the_kernel_sent_to_the_childs_group() {
        for &(signal, si_code, shares_group, leads_session, child_stopped, want) in TABLE {
            let placement = Placement {
                shares_group,
                leads_session,
            };
            assert_eq!(
                relay_decision(signal, si_code, placement, child_stopped),
                want,
                "{} si_code {si_code} {placement:?} child_stopped {child_stopped}",
                name(signal)
            );
        }
    }
}
