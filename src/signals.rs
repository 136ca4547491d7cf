//! Which signals r4-run relays to the child, and the signal mask that holds them for the supervise
//! loop (see docs/signals.md).
//!
//! r4-run runs no signal handler. It blocks every relayed signal (and SIGCHLD) in the main thread
//! before anything else runs, so that
//! - every later thread (the fetch's runtime, resolver threads) inherits the mask and none of them
//!   can take a signal meant for the loop;
//! - a signal that arrives between start and spawn waits, pending, instead of killing r4-run with a
//!   default action or being lost;
//! - as PID 1 the kernel still queues TERM and INT: it drops a signal to a namespace's init only when
//!   the disposition is SIG_DFL *and* the signal is not blocked.
//!
//! The supervise loop then takes them one at a time (`platform::take_signal`: `sigwaitinfo`, or
//! `sigwait` where the platform has nothing else).
//!
//! It installs one handler, which does nothing and never runs (its signals stay blocked): on SIGCHLD
//! and SIGWINCH, because BSD kernels (macOS, FreeBSD) discard a signal whose default action is to
//! ignore it while the disposition is the default, blocked or not, so `sigwait` would never see it.

use crate::platform::Origin;
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
    /// r4-run's group is its terminal's foreground group as the signal is taken. Read only when
    /// the origin is unknown.
    pub in_foreground: bool,
}

/// Whether a relayed signal, taken with this origin, goes on to the child. `child_stopped` is read
/// for SIGCONT only.
///
/// A signal may be skipped only when the child shares r4-run's group *and* the kernel sent this
/// very signal to that whole group, so the child has its own copy. The origin alone cannot tell:
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
/// A signal a process sent (or a POSIX timer) was aimed at r4-run and is relayed (see
/// docs/signals.md for the one known limit).
///
/// With the origin unknown (macOS's `sigwait`) the same facts decide, plus where r4-run's group is
/// at that moment: the keys and a resize reach the terminal's foreground group only, so INT, QUIT,
/// TSTP and WINCH are taken for the terminal's while r4-run is in the foreground and for a
/// process's otherwise; TTIN and TTOU reach a background group only, so the other way round. HUP
/// is decided by session as above, and CONT by whether the child is still stopped (a group's
/// SIGCONT would have continued it). The price: a process's `kill -INT <r4-run>` while r4-run runs
/// in the terminal's foreground is taken for Ctrl-C and not relayed.
pub fn relay_decision(
    signal: libc::c_int,
    origin: Origin,
    placement: Placement,
    child_stopped: bool,
) -> Relay {
    if !placement.shares_group {
        // Nothing reaches a child in its own group but through us.
        return Relay::Send;
    }
    let sent_to_the_group = match origin {
        Origin::Kernel => match signal {
            libc::SIGINT
            | libc::SIGQUIT
            | libc::SIGTSTP
            | libc::SIGTTIN
            | libc::SIGTTOU
            | libc::SIGWINCH => true,
            libc::SIGHUP | libc::SIGCONT => !placement.leads_session,
            _ => false,
        },
        Origin::Process => false,
        Origin::Unknown => match signal {
            libc::SIGINT | libc::SIGQUIT | libc::SIGTSTP | libc::SIGWINCH => {
                placement.in_foreground
            }
            libc::SIGTTIN | libc::SIGTTOU => !placement.in_foreground,
            libc::SIGHUP => !placement.leads_session,
            _ => false,
        },
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
            chld_was_ignored: catch_default_ignored(),
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

/// Gives SIGCHLD, and SIGWINCH at its default, a handler that does nothing (returns whether SIGCHLD
/// was SIG_IGN).
///
/// SIGCHLD: SIG_IGN would have the kernel reap the children itself, and `waitpid` would never see
/// the child's status. SIG_DFL, whose action is to ignore, is as bad on BSD kernels (macOS,
/// FreeBSD): they discard such a signal when it is generated, blocked or not, so `sigwait` would
/// never return for it. Caught, it stays pending while blocked on every system. The handler never
/// runs (the signals stay blocked in every thread) and exec resets it to the default: the child
/// sees the default, or SIG_IGN again where r4-run inherited that (`restore_in_child`). SIGWINCH
/// inherited as SIG_IGN stays so: the child inherits that through exec and ignores it anyway.
/// Nothing else is changed: ignored dispositions survive exec, and the child must get every signal
/// it would get without us.
fn catch_default_ignored() -> bool {
    let chld_was_ignored = is_ignored(libc::SIGCHLD) == Some(true);
    catch(libc::SIGCHLD);
    if is_ignored(libc::SIGWINCH) == Some(false) {
        catch(libc::SIGWINCH);
    }
    chld_was_ignored
}

/// The handler of `catch`: never runs, since its signals stay blocked.
extern "C" fn do_nothing(_: libc::c_int) {}

fn catch(signal: libc::c_int) {
    let mut action = MaybeUninit::<libc::sigaction>::zeroed();
    // SAFETY: `action` is zeroed storage for one sigaction; its mask is initialised by
    // sigemptyset and the handler is a function that does nothing (async-signal-safe).
    let action = unsafe {
        let ptr = action.as_mut_ptr();
        libc::sigemptyset(&mut (*ptr).sa_mask);
        (*ptr).sa_sigaction = do_nothing as extern "C" fn(libc::c_int) as libc::sighandler_t;
        (*ptr).sa_flags = libc::SA_RESTART;
        action.assume_init()
    };
    // SAFETY: `action` is a valid sigaction; a null old-action pointer is allowed.
    unsafe { libc::sigaction(signal, &action, std::ptr::null_mut()) };
}

fn set_disposition(signal: libc::c_int, handler: libc::sighandler_t) {
    // SAFETY: signal() with SIG_DFL or SIG_IGN installs no code of ours; `signal` is valid.
    unsafe { libc::signal(signal, handler) };
}

impl Mask {
    /// Gives the child, between fork and exec, the mask and the SIGCHLD and SIGPIPE dispositions
    /// r4-run inherited. std has already emptied the mask and reset SIGPIPE (which the Rust runtime
    /// ignores) to SIG_DFL by then; this runs after that. The handler of `catch_default_ignored`
    /// is reset by exec itself. Only async-signal-safe calls.
    pub fn restore_in_child(&self) -> std::io::Result<()> {
        if self.chld_was_ignored {
            set_disposition(libc::SIGCHLD, libc::SIG_IGN);
        }
        if self.pipe_was_ignored {
            set_disposition(libc::SIGPIPE, libc::SIG_IGN);
        }
        // SAFETY: `self.inherited` is an initialised sigset_t; a null old-set pointer is allowed.
        let rc = unsafe {
            libc::pthread_sigmask(libc::SIG_SETMASK, &self.inherited, std::ptr::null_mut())
        };
        if rc != 0 {
            return Err(std::io::Error::from_raw_os_error(rc));
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
    use libc::{SIGUSR1, SIGUSR2, SIGWINCH};

    const SEND: Relay = Relay::Send;
    const GROUP: Relay = Relay::Skip(Skipped::SentToTheGroup);
    const RUNNING: Relay = Relay::Skip(Skipped::ChildRunning);
    const KERNEL: Origin = Origin::Kernel;
    const PROCESS: Origin = Origin::Process;
    const UNKNOWN: Origin = Origin::Unknown;

    /// (signal, origin, shares_group, leads_session, in_foreground, child_stopped) -> decision.
    #[rustfmt::skip]
    const TABLE: &[(libc::c_int, Origin, bool, bool, bool, bool, Relay)] = &[
        // The terminal's keys, a resize, a background read or write: to the whole foreground group.
        (SIGINT,   KERNEL,  true,  false, true,  false, GROUP),
        (SIGINT,   KERNEL,  true,  true,  true,  false, GROUP),
        (SIGQUIT,  KERNEL,  true,  true,  true,  false, GROUP),
        (SIGTSTP,  KERNEL,  true,  false, true,  false, GROUP),
        (SIGTTIN,  KERNEL,  true,  false, false, false, GROUP),
        (SIGTTOU,  KERNEL,  true,  true,  false, false, GROUP),
        (SIGWINCH, KERNEL,  true,  true,  true,  false, GROUP),
        // A known origin decides alone: where the group is does not matter.
        (SIGINT,   KERNEL,  true,  false, false, false, GROUP),
        (SIGTTIN,  KERNEL,  true,  false, true,  false, GROUP),
        // A hang-up: to the session leader alone, to the foreground group only when the leader exits.
        (SIGHUP,   KERNEL,  true,  false, true,  false, GROUP),
        (SIGHUP,   KERNEL,  true,  true,  true,  false, SEND),
        (SIGCONT,  KERNEL,  true,  false, true,  true,  GROUP),
        (SIGCONT,  KERNEL,  true,  true,  true,  true,  SEND),
        (SIGCONT,  KERNEL,  true,  true,  true,  false, RUNNING),
        // alarm() and setitimer(ITIMER_REAL): the kernel's too, but to r4-run alone.
        (SIGALRM,  KERNEL,  true,  false, true,  false, SEND),
        (SIGALRM,  KERNEL,  true,  true,  true,  false, SEND),
        // Never sent by the kernel to a group; relayed whatever the origin.
        (SIGTERM,  KERNEL,  true,  false, true,  false, SEND),
        (SIGUSR1,  KERNEL,  true,  false, true,  false, SEND),
        (SIGUSR2,  KERNEL,  true,  false, true,  false, SEND),
        // Sent by a process (or a POSIX timer): aimed at r4-run.
        (SIGINT,   PROCESS, true,  false, true,  false, SEND),
        (SIGWINCH, PROCESS, true,  false, true,  false, SEND),
        (SIGHUP,   PROCESS, true,  false, true,  false, SEND),
        (SIGALRM,  PROCESS, true,  true,  true,  false, SEND),
        // A shell's fg/bg: SIGCONT from a process to the group, the child already running.
        (SIGCONT,  PROCESS, true,  false, true,  false, RUNNING),
        (SIGCONT,  PROCESS, true,  false, true,  true,  SEND),
        // The origin unknown (macOS): the keys and a resize reach the foreground group only...
        (SIGINT,   UNKNOWN, true,  false, true,  false, GROUP),
        (SIGQUIT,  UNKNOWN, true,  true,  true,  false, GROUP),
        (SIGTSTP,  UNKNOWN, true,  false, true,  false, GROUP),
        (SIGWINCH, UNKNOWN, true,  false, true,  false, GROUP),
        // ...so in the background they came from a process;
        (SIGINT,   UNKNOWN, true,  false, false, false, SEND),
        (SIGTSTP,  UNKNOWN, true,  false, false, false, SEND),
        (SIGWINCH, UNKNOWN, true,  true,  false, false, SEND),
        // a background read or write signals a background group only;
        (SIGTTIN,  UNKNOWN, true,  false, false, false, GROUP),
        (SIGTTOU,  UNKNOWN, true,  false, false, false, GROUP),
        (SIGTTIN,  UNKNOWN, true,  false, true,  false, SEND),
        (SIGTTOU,  UNKNOWN, true,  true,  true,  false, SEND),
        // a hang-up goes by session; a SIGCONT by whether the child is still stopped;
        (SIGHUP,   UNKNOWN, true,  false, true,  false, GROUP),
        (SIGHUP,   UNKNOWN, true,  false, false, false, GROUP),
        (SIGHUP,   UNKNOWN, true,  true,  true,  false, SEND),
        (SIGCONT,  UNKNOWN, true,  false, true,  false, RUNNING),
        (SIGCONT,  UNKNOWN, true,  false, true,  true,  SEND),
        (SIGCONT,  UNKNOWN, true,  true,  true,  true,  SEND),
        // and the rest concerns r4-run alone.
        (SIGALRM,  UNKNOWN, true,  false, true,  false, SEND),
        (SIGTERM,  UNKNOWN, true,  false, true,  false, SEND),
        (SIGUSR1,  UNKNOWN, true,  true,  true,  false, SEND),
        // The child in its own group: everything goes through r4-run.
        (SIGINT,   KERNEL,  false, false, true,  false, SEND),
        (SIGHUP,   KERNEL,  false, false, true,  false, SEND),
        (SIGCONT,  PROCESS, false, false, true,  false, SEND),
        (SIGWINCH, KERNEL,  false, true,  true,  false, SEND),
        (SIGINT,   UNKNOWN, false, false, true,  false, SEND),
        (SIGTTOU,  UNKNOWN, false, false, false, false, SEND),
    ];

    #[test]
    fn skips_only_what_the_kernel_sent_to_the_childs_group() {
        for &(signal, origin, shares_group, leads_session, in_foreground, child_stopped, want) in
            TABLE
        {
            let placement = Placement {
                shares_group,
                leads_session,
                in_foreground,
            };
            assert_eq!(
                relay_decision(signal, origin, placement, child_stopped),
                want,
                "{} {origin:?} {placement:?} child_stopped {child_stopped}",
                name(signal)
            );
        }
    }
}
