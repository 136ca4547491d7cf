//! Starting the command and supervising it, the tini way: PATH look-up as `execvp` does it, exec
//! failures mapped to 126/127, then one synchronous loop that relays signals, reaps every child that
//! ends, and turns the main child's end into an `Outcome` (see docs/signals.md).

use crate::env::ChildEnv;
use crate::error::Error;
use crate::exit::Outcome;
use crate::platform::{self, Origin};
use crate::{hardening, signals};
use crate::{verbose, warn};
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The command to run: the program (looked up on PATH as `execvp` does) and its arguments.
#[derive(Debug, Clone)]
pub struct CommandLine {
    pub program: OsString,
    pub args: Vec<OsString>,
}
/// `execvp`'s search path when PATH is unset.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// How the child is placed and which signals it already gets without us. Decided once, before
/// spawn (see docs/signals.md for the reasons in full).
#[derive(Debug, Clone, Copy)]
pub struct Mode {
    /// r4-run is PID 1 (a container's ENTRYPOINT): every orphan in the namespace is ours to reap.
    pub pid1: bool,
    /// A terminal is involved (stdin is a TTY, or r4-run is in the foreground process group of its
    /// controlling terminal). The child then stays in r4-run's process group, which is (or will be,
    /// after `fg`) the terminal's foreground group: Ctrl-C, Ctrl-Z and window-size changes reach it
    /// straight from the kernel, and it can read the terminal without SIGTTIN.
    /// Otherwise the child gets its own process group, so that a signal sent to r4-run's group
    /// (a process manager killing the group, Ctrl-C in a shell with stdin redirected) reaches the
    /// child once, through us, and not also directly.
    pub shares_group: bool,
    /// r4-run leads its session (`setsid`, `ssh -t host r4-run`, a tmux command, `docker run -t`):
    /// when its terminal hangs up, the kernel sends SIGHUP and SIGCONT to r4-run alone.
    pub leads_session: bool,
    /// Make r4-run a child subreaper (`--subreaper`): orphans of the child's descendants are
    /// re-parented to r4-run and reaped by it, as if it were PID 1.
    pub subreaper: bool,
    /// Take signals with the portable `sigwait`, which gives no origin, as on macOS, even where the
    /// platform says who sent them. Debug builds only, for the tests (`R4_RUN_TEST_PORTABLE_WAIT=1`),
    /// so that Linux runs the path Macs take.
    pub portable_wait: bool,
}

impl Mode {
    pub fn detect(subreaper: bool) -> Self {
        // SAFETY: getpid has no preconditions.
        let pid1 = unsafe { libc::getpid() } == 1;
        Self {
            pid1,
            shares_group: terminal_involved(),
            // SAFETY: getsid(0) and getpid have no preconditions.
            leads_session: unsafe { libc::getsid(0) == libc::getpid() },
            subreaper,
            portable_wait: cfg!(debug_assertions)
                && std::env::var_os("R4_RUN_TEST_PORTABLE_WAIT").is_some_and(|v| v == "1"),
        }
    }

    /// Where things are as a signal with this origin is taken: the foreground is looked up only
    /// when the origin is unknown (the only case that reads it).
    fn placement(&self, origin: Origin) -> signals::Placement {
        signals::Placement {
            shares_group: self.shares_group,
            leads_session: self.leads_session,
            in_foreground: origin == Origin::Unknown && self.shares_group && in_foreground(),
        }
    }

    /// Job control is ours to follow: a terminal is involved and r4-run can be stopped (PID 1 in a
    /// namespace cannot be: the kernel drops SIGSTOP sent to it from inside).
    fn follows_job_control(&self) -> bool {
        self.shares_group && !self.pid1
    }
}

fn terminal_involved() -> bool {
    // SAFETY: isatty only inspects the descriptor.
    if unsafe { libc::isatty(libc::STDIN_FILENO) } == 1 {
        return true;
    }
    // stdin redirected, but started from an interactive shell as a foreground job: the terminal's
    // keys still signal our group, and the child may open /dev/tty (a password prompt).
    in_foreground()
}

/// Whether r4-run's process group is the foreground group of its controlling terminal.
fn in_foreground() -> bool {
    // SAFETY: a constant NUL-terminated path; O_NOCTTY so opening cannot acquire a terminal.
    let fd = unsafe {
        libc::open(
            c"/dev/tty".as_ptr(),
            libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
        )
    };
    if fd < 0 {
        return false;
    }
    // SAFETY: `fd` is the descriptor just opened; it is closed right after and used nowhere else.
    let (foreground, ours) = unsafe {
        let fg = libc::tcgetpgrp(fd);
        libc::close(fd);
        (fg, libc::getpgrp())
    };
    foreground > 0 && foreground == ours
}

/// Builds the `Command` for `cmd` with exactly `env`, its signal state restored before exec.
fn command(cmd: &CommandLine, env: &ChildEnv<'_>) -> Result<Command, Outcome> {
    let path = std::env::var_os("PATH");
    let program = resolve(&cmd.program, path.as_deref())?;
    let mut command = Command::new(&program);
    command
        .arg0(&cmd.program)
        .args(&cmd.args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())));
    let mask = *signals::block();
    // SAFETY: the closure runs between fork and exec and makes only async-signal-safe calls
    // (pthread_sigmask, signal, setrlimit); it allocates nothing and takes no lock.
    unsafe {
        command.pre_exec(move || {
            hardening::restore_core_limit_in_child();
            mask.restore_in_child()
        });
    }
    Ok(command)
}

/// The command, built and ready to start. It holds the only copies of the values left in r4-run
/// (std's `Command` copies the environment), so the caller can drop everything else that held a
/// secret, and wipe the stack, before the child exists.
pub struct Prepared {
    command: Command,
    program: OsString,
    mode: Mode,
}

/// Builds the command with exactly `env`; `env` (which borrows the fetched values) is dropped here.
pub fn prepare(cmd: &CommandLine, env: ChildEnv<'_>, mode: Mode) -> Result<Prepared, Outcome> {
    let mut command = command(cmd, &env)?;
    drop(env);
    if !mode.shares_group {
        command.process_group(0);
    }
    Ok(Prepared {
        command,
        program: cmd.program.clone(),
        mode,
    })
}

impl Prepared {
    /// Sends the command's stdout and stderr into pipes instead of r4-run's own (`--mask`), and
    /// returns their read ends.
    pub fn pipe_output(&mut self) -> io::Result<(OwnedFd, OwnedFd)> {
        let (out_read, out_write) = io::pipe()?;
        let (err_read, err_write) = io::pipe()?;
        self.command
            .stdout(std::process::Stdio::from(out_write))
            .stderr(std::process::Stdio::from(err_write));
        Ok((OwnedFd::from(out_read), OwnedFd::from(err_read)))
    }

    /// Starts the command and returns its pid. The `Command`, and with it the last copies of the
    /// values, is dropped as soon as the child has exec'd.
    pub fn spawn(self) -> Result<libc::pid_t, Outcome> {
        let Prepared {
            mut command,
            program,
            mode,
        } = self;
        if mode.subreaper && !mode.pid1 {
            if let Err(e) = platform::become_subreaper() {
                warn!("cannot become a child subreaper: {e}");
            }
        }
        let spawned = command.spawn();
        drop(command);
        // The `Child` handle is dropped at once (that neither waits nor kills): the supervise loop
        // owns waitpid, and `Child::wait` would race it for the status.
        let child = spawned.map_err(|e| exec_failure(&program, &e))?;
        Ok(child.id() as libc::pid_t)
    }
}

/// `--exec`: replaces r4-run by the command (execve, no supervisor left). Returns only if that failed.
pub fn exec(cmd: &CommandLine, env: ChildEnv<'_>) -> Outcome {
    let mut command = match command(cmd, &env) {
        Ok(command) => command,
        Err(outcome) => return outcome,
    };
    let e = command.exec();
    drop(command);
    drop(env);
    exec_failure(&cmd.program, &e)
}

/// What `--watch` asks of the supervise loop: commands to restart with.
pub trait Restarts {
    /// A command with new variables, to start once the running one has ended, if there is one.
    /// Asked after every wake-up while no restart is under way.
    fn next(&mut self) -> Option<Prepared>;
    /// Asks for a wake-up of the loop at `at` (the loop waits with no timeout of its own).
    fn wake_at(&mut self, at: Instant);
}

/// How a restart stops the running command.
#[derive(Debug, Clone, Copy)]
pub struct RestartPolicy {
    /// Sent first (to the command's process group where it has its own).
    pub signal: libc::c_int,
    /// How long the command may take to end before it gets SIGKILL.
    pub grace: Duration,
}

/// A restart under way: the command that replaces the running one once that has ended.
struct Restart {
    next: Prepared,
    kill_at: Instant,
    killed: bool,
}

/// The supervise loop: waits for signals, relays each relayed one to the child, reaps every child
/// that ends (the main one and, as PID 1 or subreaper, orphans), and returns once the main child is
/// reaped: its exit code, or the signal that killed it.
///
/// The wait has no timeout, and needs none: SIGCHLD is blocked in every thread and caught
/// (`signals::block`), so none is delivered elsewhere or discarded; it waits pending until taken
/// here. Several may merge into one, but `reap` collects every change of state there is, and it
/// runs after every wake-up, so a merged SIGCHLD loses nothing: any child that changes state after
/// the SIGCHLD was taken raises a new one, which the next wait returns.
pub fn supervise(child: libc::pid_t, mode: Mode) -> Outcome {
    supervise_restarting(child, mode, None)
}

/// `supervise`, and with `restarts` (`--watch`) a restart whenever it offers a new command: the
/// restart signal to the running command, SIGKILL after the grace period, and the new command
/// started as soon as the old one is reaped, so two never run at once. The command's own end (not a
/// restart's) ends the run as always, and so does a TERM or INT to r4-run, which is relayed and
/// lets no restart begin or finish after it.
pub fn supervise_restarting(
    mut child: libc::pid_t,
    mode: Mode,
    mut restarts: Option<(&mut dyn Restarts, RestartPolicy)>,
) -> Outcome {
    let mask = signals::block();
    verbose!(
        2,
        "supervising pid {child}: {}{}{}; signals taken {}",
        if mode.shares_group {
            "in r4-run's process group (terminal)"
        } else {
            "in its own process group"
        },
        if mode.leads_session {
            ", r4-run leads its session"
        } else {
            ""
        },
        if mode.pid1 { ", r4-run is PID 1" } else { "" },
        if mode.portable_wait || !platform::TELLS_SIGNAL_ORIGIN {
            "with sigwait (portable: origin unknown)"
        } else {
            "with sigwaitinfo (origin known)"
        }
    );
    // The main child's last reported state: stopped or running (WUNTRACED, WCONTINUED).
    let mut child_stopped = false;
    let mut restart: Option<Restart> = None;
    // TERM or INT reached r4-run: the watch is over.
    let mut ending = false;
    // The main child's end, when a reap in the middle of the loop collected it.
    let mut ended: Option<Outcome> = None;
    loop {
        // Reap first: the child may have ended before the loop started (its SIGCHLD then waits
        // pending too, and costs one more, empty, reap).
        let outcome = match ended.take() {
            Some(outcome) => Some(outcome),
            None => match reap(child, mode, &mut child_stopped) {
                Reaped::Ended(outcome) => Some(outcome),
                Reaped::Running => None,
            },
        };
        if let Some(outcome) = outcome {
            match restart.take() {
                Some(r) if !ending => {
                    child = match r.next.spawn() {
                        Ok(pid) => pid,
                        Err(outcome) => return outcome,
                    };
                    child_stopped = false;
                    verbose!(1, "restarted the command: pid {child}");
                    continue;
                }
                _ => return outcome,
            }
        }
        if let (Some((restarts, policy)), false) = (restarts.as_mut(), ending) {
            match &mut restart {
                None => {
                    if let Some(next) = restarts.next() {
                        let kill_at = Instant::now() + policy.grace;
                        restarts.wake_at(kill_at);
                        signal_command(child, policy.signal, mode);
                        restart = Some(Restart {
                            next,
                            kill_at,
                            killed: false,
                        });
                    }
                }
                Some(r) if !r.killed && Instant::now() >= r.kill_at => {
                    warn!(
                        "the command did not end within {} s of {}: sending SIGKILL",
                        policy.grace.as_secs_f64(),
                        signals::name(policy.signal)
                    );
                    signal_command(child, libc::SIGKILL, mode);
                    r.killed = true;
                }
                Some(_) => {}
            }
        }
        let (signal, origin) = match platform::take_signal(&mask.waited, !mode.portable_wait) {
            Ok(taken) => taken,
            // EINTR (the only failure with a valid set): r4-run was stopped and continued; reap
            // and wait again.
            Err(_) => continue,
        };
        if signal == libc::SIGCHLD {
            continue;
        }
        if restarts.is_some() && matches!(signal, libc::SIGTERM | libc::SIGINT) && !ending {
            verbose!(
                1,
                "{}: the watch ends with the command",
                signals::name(signal)
            );
            ending = true;
        }
        // Reap before deciding, so that a SIGCONT finds the child's state as it is now. A child
        // that ended here is dealt with at the top of the loop.
        if let Reaped::Ended(outcome) = reap(child, mode, &mut child_stopped) {
            ended = Some(outcome);
            continue;
        }
        relay(child, signal, origin, child_stopped, mode);
    }
}

/// Sends `signal` to the command for a restart: to its process group where it has its own (a
/// shell's children stop with it), else to it alone.
fn signal_command(child: libc::pid_t, signal: libc::c_int, mode: Mode) {
    let target = if mode.shares_group { child } else { -child };
    verbose!(2, "sending {} to {target}", signals::name(signal));
    // SAFETY: kill with a pid (or the group of a pid) we spawned and have not reaped, so it is
    // not reused, and a valid signal number.
    unsafe { libc::kill(target, signal) };
}

enum Reaped {
    Running,
    Ended(Outcome),
}

/// `waitpid(-1, WNOHANG)` until nothing is left to collect. Zombies of orphans are reaped and
/// forgotten; the main child's end is the result. WUNTRACED/WCONTINUED report the main child's
/// stops and continues, kept in `child_stopped`; r4-run follows a stop under a terminal.
fn reap(child: libc::pid_t, mode: Mode, child_stopped: &mut bool) -> Reaped {
    let mut ended = None;
    let mut stopped_now = false;
    loop {
        let mut status = 0;
        // SAFETY: `status` is a valid int to write the status into.
        let pid = unsafe {
            libc::waitpid(
                -1,
                &mut status,
                libc::WNOHANG | libc::WUNTRACED | libc::WCONTINUED,
            )
        };
        if pid == 0 {
            break; // children remain, none changed state
        }
        if pid < 0 {
            if io::Error::last_os_error().kind() == io::ErrorKind::Interrupted {
                continue;
            }
            break; // ECHILD: no children at all
        }
        if pid != child {
            if libc::WIFEXITED(status) || libc::WIFSIGNALED(status) {
                verbose!(3, "reaped orphan pid {pid}");
            }
            continue;
        }
        if libc::WIFEXITED(status) {
            ended = Some(Outcome::ChildExited(libc::WEXITSTATUS(status)));
        } else if libc::WIFSIGNALED(status) {
            ended = Some(Outcome::ChildKilled(libc::WTERMSIG(status)));
        } else if libc::WIFSTOPPED(status) {
            *child_stopped = true;
            stopped_now = true;
        } else if libc::WIFCONTINUED(status) {
            *child_stopped = false;
            stopped_now = false;
        }
    }
    if let Some(outcome) = ended {
        return Reaped::Ended(outcome);
    }
    if stopped_now && mode.follows_job_control() {
        // The child stopped (Ctrl-Z, or a TSTP/TTIN/TTOU/STOP). The shell waits on r4-run, not on
        // the child, so r4-run stops too: the shell sees the job stopped and takes the terminal back.
        // `fg`/`bg` send SIGCONT to our group, which continues both of us. SIGSTOP because the
        // job-control stops are blocked here, and it stops even an orphaned process group.
        verbose!(2, "the command stopped; stopping r4-run too");
        // SAFETY: kill on our own pid with a valid signal.
        unsafe { libc::kill(libc::getpid(), libc::SIGSTOP) };
    }
    Reaped::Running
}

/// Sends a relayed signal on to the child, unless it already got it (`signals::relay_decision`).
fn relay(child: libc::pid_t, signal: libc::c_int, origin: Origin, child_stopped: bool, mode: Mode) {
    let name = signals::name(signal);
    match signals::relay_decision(signal, origin, mode.placement(origin), child_stopped) {
        signals::Relay::Skip(signals::Skipped::SentToTheGroup) => {
            verbose!(
                3,
                "{name} from the terminal reached the command directly; not relayed"
            );
        }
        signals::Relay::Skip(signals::Skipped::ChildRunning) => {
            verbose!(3, "{name}: the command is already running; not relayed");
        }
        signals::Relay::Send => {
            // To the child alone, not its group (tini's default): a child that manages its own
            // children (a shell with jobs, a process manager) passes signals on as it sees fit, and
            // its children get each signal once, from it. A `sh -c` wrapper should `exec` its
            // command.
            verbose!(3, "relaying {name} to pid {child}");
            // SAFETY: kill with a pid we spawned (not reaped yet, so not reused) and a valid
            // signal number.
            unsafe { libc::kill(child, signal) };
        }
    }
}

/// Finds the program as `execvp` does: a name with a `/` is used as it is; otherwise each PATH entry
/// is tried in turn (an empty entry means the current directory), and if none holds an executable
/// file the answer is "permission denied" when some entry had a non-executable match, else "not found".
pub fn resolve(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, Outcome> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut denied = None;
    for dir in path.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        match std::fs::metadata(&candidate) {
            Ok(meta) if meta.is_file() && is_executable(&candidate) => return Ok(candidate),
            Ok(_) => {
                denied.get_or_insert(candidate);
            }
            Err(_) => {}
        }
    }
    let shown = program.to_string_lossy();
    Err(match denied {
        Some(found) => Outcome::CannotExecute(
            Error::new(format!(
                "{shown} was found at {} but cannot be executed",
                found.display()
            ))
            .hint(format!(
                "make it executable (chmod +x {}) or check PATH",
                found.display()
            )),
        ),
        None => Outcome::NotFound(
            Error::new(format!("command not found: {shown}"))
                .hint("check the command's name and that its directory is on PATH"),
        ),
    })
}

fn is_executable(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call; access() only reads it.
    unsafe { libc::access(c_path.as_ptr(), libc::X_OK) == 0 }
}

fn exec_failure(program: &OsString, e: &io::Error) -> Outcome {
    let shown = program.to_string_lossy();
    match e.kind() {
        io::ErrorKind::NotFound => Outcome::NotFound(
            Error::new(format!("cannot run {shown}: {e}"))
                .hint("check the path; for a script, check the interpreter named on its #! line"),
        ),
        _ => {
            Outcome::CannotExecute(Error::new(format!("cannot execute {shown}: {e}")).hint(
                "check that it is an executable program or script (chmod +x, a valid #! line)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        assert_eq!(
            resolve(OsStr::new("sh"), Some(OsStr::new("/nonexistent:/bin"))).unwrap(),
            Path::new("/bin/sh")
        );
        assert!(matches!(
            resolve(OsStr::new("no-such-cmd-r4"), Some(OsStr::new("/bin"))),
            Err(Outcome::NotFound(_))
        ));
        assert_eq!(resolve(OsStr::new("./x"), None).unwrap(), Path::new("./x"));
        // A directory of that name is found but cannot be executed.
        assert!(matches!(
            resolve(OsStr::new("bin"), Some(OsStr::new("/"))),
            Err(Outcome::CannotExecute(_))
        ));
    }
}
