//! Supervision: real signals at r4-run, a probe child that logs each one it gets, reaping as a
//! subreaper and as PID 1, a pseudo-terminal (keys, a hang-up, an inherited timer), `--exec`, the
//! signal dispositions the child inherits, and a signal during the fetch.
//!
//! Every wait is for an event: a line from the probe, a `-vvv` diagnostic of r4-run's, a request
//! reaching the server, an exit. None decides anything by how long something took; the one clock
//! is the inherited timer's, which is the stimulus itself.
//!
//! The core tests run twice: with the wait the platform allows (Linux: `sigwaitinfo`, which says who
//! sent a signal) and with the portable `sigwait` that macOS has (no origin), which a debug build
//! takes when `R4_RUN_TEST_PORTABLE_WAIT=1`. So Linux runs the path Macs take.

use crate::support::{
    children_of, env_answer, python, r4_run, send, server_noticing, server_with, Pty, R4Run,
    Spawned, DEADLINE,
};
use std::ffi::OsStr;
use std::process::Stdio;
use std::time::Instant;

/// How r4-run takes its signals in a test.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Wait {
    /// As the platform allows (Linux: with the origin).
    Native,
    /// The portable `sigwait`, as on macOS: no origin.
    Portable,
}

impl Wait {
    /// `run` set up to wait this way. Call before the command (`signal_probe`, `--`).
    fn set(self, run: R4Run) -> R4Run {
        match self {
            Wait::Native => run,
            Wait::Portable => run.env("R4_RUN_TEST_PORTABLE_WAIT", "1").arg("-vv"),
        }
    }

    /// Waits until r4-run says it supervises, and checks that it takes its signals this way: the
    /// portable tests would prove nothing if the switch did not switch.
    #[track_caller]
    fn confirm(self, r4: &mut Spawned) {
        if self == Wait::Portable {
            let line = r4.await_stderr_line(|l| l.contains("supervising pid"));
            assert!(
                line.contains("with sigwait (portable: origin unknown)"),
                "r4-run did not take the portable wait: {line}"
            );
        }
    }
}

/// Every relayed signal but TERM, which ends the probe; sent in this order.
const RELAYED_BUT_TERM: &[(i32, &str)] = &[
    (libc::SIGHUP, "SIGHUP"),
    (libc::SIGINT, "SIGINT"),
    (libc::SIGQUIT, "SIGQUIT"),
    (libc::SIGUSR1, "SIGUSR1"),
    (libc::SIGUSR2, "SIGUSR2"),
    (libc::SIGWINCH, "SIGWINCH"),
    (libc::SIGALRM, "SIGALRM"),
    (libc::SIGCONT, "SIGCONT"),
    (libc::SIGTSTP, "SIGTSTP"),
    (libc::SIGTTIN, "SIGTTIN"),
    (libc::SIGTTOU, "SIGTTOU"),
];

#[track_caller]
fn assert_each_once(log: &[String], names: &[&str]) {
    for name in names {
        let n = log.iter().filter(|l| l == name).count();
        assert_eq!(n, 1, "{name} arrived {n} times; log: {log:?}");
    }
    assert_eq!(log.len(), names.len(), "unexpected signals; log: {log:?}");
}

#[tokio::test]
async fn each_relayed_signal_reaches_the_child_exactly_once() {
    each_relayed_signal_once(Wait::Native).await;
}

#[tokio::test]
async fn each_relayed_signal_reaches_the_child_exactly_once_with_the_portable_wait() {
    each_relayed_signal_once(Wait::Portable).await;
}

async fn each_relayed_signal_once(wait: Wait) {
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = wait
        .set(r4_run().against(&server.uri()))
        // Each relay on stderr: should a line fail to come, the failure shows whether r4-run relayed.
        .arg("-vvv")
        .signal_probe(&[])
        .spawn();
    wait.confirm(&mut r4);
    r4.await_ready();
    for &(signal, name) in RELAYED_BUT_TERM {
        r4.signal(signal);
        r4.await_line(&format!("got {name}"));
    }
    // The probe exits 0 on TERM, and so does r4-run.
    r4.signal(libc::SIGTERM);
    r4.assert_exit(0);
    let mut names: Vec<&str> = RELAYED_BUT_TERM.iter().map(|(_, n)| *n).collect();
    names.push("SIGTERM");
    assert_each_once(&r4.signal_log(), &names);
}

#[tokio::test]
async fn the_childs_status_on_term_is_r4_runs() {
    childs_status_on_term(Wait::Native).await;
}

#[tokio::test]
async fn the_childs_status_on_term_is_r4_runs_with_the_portable_wait() {
    childs_status_on_term(Wait::Portable).await;
}

async fn childs_status_on_term(wait: Wait) {
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = wait
        .set(r4_run().against(&server.uri()))
        .signal_probe(&["--term", "exit:3"])
        .spawn();
    wait.confirm(&mut r4);
    r4.await_ready();
    r4.signal(libc::SIGTERM);
    r4.assert_exit(3);
    assert_each_once(&r4.signal_log(), &["SIGTERM"]);
}

#[tokio::test]
async fn a_child_killed_by_the_relayed_term_gives_143() {
    killed_by_the_relayed_term(Wait::Native).await;
}

#[tokio::test]
async fn a_child_killed_by_the_relayed_term_gives_143_with_the_portable_wait() {
    killed_by_the_relayed_term(Wait::Portable).await;
}

async fn killed_by_the_relayed_term(wait: Wait) {
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = wait
        .set(r4_run().against(&server.uri()))
        .signal_probe(&["--term", "default"])
        .spawn();
    wait.confirm(&mut r4);
    r4.await_ready();
    // The answer would take a minute and the deadline is two: only the signal can end this soon
    // (assert_exit gives up after DEADLINE, 20 s).
    r4.signal(libc::SIGTERM);
    r4.assert_exit(143);
}

#[tokio::test]
async fn a_sigkilled_child_gives_137() {
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = r4_run().against(&server.uri()).signal_probe(&[]).spawn();
    let probe = r4.await_ready();
    send(probe, libc::SIGKILL);
    r4.assert_exit(137);
}

/// The SigBlk and SigIgn lines of a `cat /proc/self/status` output.
fn mask_lines(status: &str) -> Vec<String> {
    status
        .lines()
        .filter(|l| l.starts_with("SigBlk") || l.starts_with("SigIgn"))
        .map(str::to_owned)
        .collect()
}

#[tokio::test]
async fn the_child_starts_with_the_mask_and_dispositions_r4_run_inherited() {
    // What a child of the test process gets without r4-run in between...
    let direct = std::process::Command::new("cat")
        .arg("/proc/self/status")
        .output()
        .unwrap();
    let want = mask_lines(&String::from_utf8_lossy(&direct.stdout));
    assert_eq!(want.len(), 2, "{want:?}");
    // ...is what it gets through r4-run: r4-run's blocked set does not leak through exec, and
    // nothing is ignored that was not already.
    let server = server_with(&[("A", "1")]).await;
    let ran = r4_run()
        .against(&server.uri())
        .args(["--", "cat", "/proc/self/status"])
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(mask_lines(&ran.stdout()), want);
}

#[tokio::test]
async fn a_subreaper_reaps_orphans_and_exits_with_the_main_childs_status() {
    subreaper_reaps_orphans(Wait::Native).await;
}

#[tokio::test]
async fn a_subreaper_reaps_orphans_and_exits_with_the_main_childs_status_with_the_portable_wait() {
    subreaper_reaps_orphans(Wait::Portable).await;
}

async fn subreaper_reaps_orphans(wait: Wait) {
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = wait
        .set(r4_run().against(&server.uri()))
        .args(["-vvv", "--subreaper"])
        .signal_probe(&["--orphan", "--term", "exit:7"])
        .spawn();
    wait.confirm(&mut r4);
    // The probe makes an orphan: re-parented to r4-run, which reaps it when it exits.
    let (orphan, parent) = r4.await_orphan();
    assert_eq!(parent, r4.pid(), "the orphan was not re-parented to r4-run");
    r4.await_stderr_line(|l| l.ends_with(&format!("reaped orphan pid {orphan}")));
    r4.await_ready();
    let zombies: Vec<_> = children_of(r4.pid())
        .into_iter()
        .filter(|(_, state)| *state == 'Z')
        .collect();
    assert!(zombies.is_empty(), "zombies left under r4-run: {zombies:?}");
    r4.signal(libc::SIGTERM);
    r4.assert_exit(7);
}

#[tokio::test]
async fn the_subreaper_flag_also_comes_from_the_environment() {
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = r4_run()
        .against(&server.uri())
        .env("R4_RUN_SUBREAPER", "1")
        .arg("-vvv")
        .signal_probe(&["--orphan"])
        .spawn();
    let (orphan, parent) = r4.await_orphan();
    assert_eq!(parent, r4.pid(), "the orphan was not re-parented to r4-run");
    r4.await_stderr_line(|l| l.ends_with(&format!("reaped orphan pid {orphan}")));
    r4.signal(libc::SIGTERM);
    r4.assert_exit(0);
}

/// Why a PID namespace cannot be made here, or None if it can.
fn pid_namespace_refused() -> Option<String> {
    match std::process::Command::new("unshare")
        .args(["--fork", "--pid", "--mount-proc", "true"])
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(format!(
            "unshare {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )),
        Err(e) => Some(format!("cannot run unshare: {e}")),
    }
}

#[tokio::test]
async fn as_pid_1_it_reaps_orphans_and_relays_term_and_int() {
    as_pid_1(Wait::Native).await;
}

#[tokio::test]
async fn as_pid_1_it_reaps_orphans_and_relays_term_and_int_with_the_portable_wait() {
    as_pid_1(Wait::Portable).await;
}

async fn as_pid_1(wait: Wait) {
    if let Some(why) = pid_namespace_refused() {
        eprintln!("SKIPPED: cannot create a PID namespace: {why}");
        return;
    }
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = wait
        .set(r4_run().against(&server.uri()))
        // --kill-child: should the test fail, killing unshare takes the whole namespace down.
        .wrapped_in(["unshare", "--fork", "--pid", "--mount-proc", "--kill-child"])
        .arg("-vvv")
        .signal_probe(&["--orphan"])
        .spawn();
    wait.confirm(&mut r4);
    // Inside the namespace the orphan's new parent is PID 1: r4-run, which reaps it.
    let (orphan, parent) = r4.await_orphan();
    assert_eq!(parent, 1, "the orphan was not re-parented to PID 1");
    r4.await_stderr_line(|l| l.ends_with(&format!("reaped orphan pid {orphan}")));
    r4.await_ready();
    // r4-run as seen from outside: unshare's only child.
    let inner = children_of(r4.pid());
    assert_eq!(inner.len(), 1, "unshare's children: {inner:?}");
    let pid1 = inner[0].0;
    for (signal, name) in [(libc::SIGINT, "SIGINT"), (libc::SIGTERM, "SIGTERM")] {
        send(pid1, signal);
        r4.await_line(&format!("got {name}"));
    }
    r4.assert_exit(0);
    assert_each_once(&r4.signal_log(), &["SIGINT", "SIGTERM"]);
}

#[tokio::test]
async fn exec_replaces_r4_run_by_the_command() {
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = r4_run()
        .against(&server.uri())
        .arg("--exec")
        .signal_probe(&["--term", "exit:5"])
        .spawn();
    let probe = r4.await_ready();
    assert_eq!(probe, r4.pid(), "--exec must not leave a supervisor");
    // The exec'd command got r4-run's inherited (empty) mask back, so signals reach it.
    let status = std::fs::read_to_string(format!("/proc/{probe}/status")).unwrap();
    let blocked = status.lines().find(|l| l.starts_with("SigBlk")).unwrap();
    assert!(blocked.ends_with("0000000000000000"), "{blocked}");
    r4.signal(libc::SIGUSR1);
    r4.await_line("got SIGUSR1");
    r4.signal(libc::SIGTERM);
    r4.assert_exit(5);
    assert_each_once(&r4.signal_log(), &["SIGUSR1", "SIGTERM"]);
}

/// The diagnostic r4-run gives at `-vvv` about what it did with `name`: "relaying NAME to pid N",
/// or "NAME …; not relayed". Each is an event: the wait ends as soon as r4-run has decided.
#[track_caller]
fn relay_decision_of(r4: &mut crate::support::Spawned, name: &str) -> String {
    r4.await_stderr_line(|l| l.contains(name) && l.contains("relay"))
}

/// r4-run, `-vvv`, as the session leader on `pty` with the signal probe as its command, taking its
/// signals the `wait` way.
fn probe_on_terminal(wait: Wait, base: &str, pty: &Pty) -> Spawned {
    let mut r4 = wait
        .set(r4_run().against(base))
        .arg("-vvv")
        .signal_probe(&[])
        .spawn_on_terminal(pty);
    wait.confirm(&mut r4);
    r4
}

#[tokio::test]
async fn ctrl_c_in_a_terminal_reaches_the_child_once() {
    ctrl_c_in_a_terminal(Wait::Native).await;
}

/// With no origin, r4-run in the terminal's foreground takes the SIGINT for the terminal's.
#[tokio::test]
async fn ctrl_c_in_a_terminal_reaches_the_child_once_with_the_portable_wait() {
    ctrl_c_in_a_terminal(Wait::Portable).await;
}

async fn ctrl_c_in_a_terminal(wait: Wait) {
    let server = server_with(&[("A", "1")]).await;
    let pty = Pty::open();
    let mut r4 = probe_on_terminal(wait, &server.uri(), &pty);
    r4.await_ready();
    // Ctrl-C: the terminal sends SIGINT to the foreground group, child and r4-run alike. r4-run
    // must not relay its copy.
    pty.type_keys(b"\x03");
    r4.await_line("got SIGINT");
    // Two SIGINTs close together can merge into one pending signal in the child, so the log alone
    // cannot always tell a relayed duplicate; r4-run's own account can.
    let decided = relay_decision_of(&mut r4, "SIGINT");
    assert!(
        decided.contains("SIGINT from the terminal") && decided.contains("not relayed"),
        "r4-run relayed the terminal's SIGINT: {decided}"
    );
    // TERM from a process is relayed.
    r4.signal(libc::SIGTERM);
    r4.await_line("got SIGTERM");
    let (status, stderr) = r4.wait();
    assert_eq!(status.code(), Some(0), "{status}; stderr:\n{stderr}");
    assert!(
        !stderr.contains("relaying SIGINT"),
        "r4-run relayed the terminal's SIGINT:\n{stderr}"
    );
    assert_each_once(&r4.signal_log(), &["SIGINT", "SIGTERM"]);
}

#[tokio::test]
async fn a_hang_up_reaches_the_child_of_a_session_leader_once() {
    hang_up_of_a_session_leader(Wait::Native).await;
}

#[tokio::test]
async fn a_hang_up_reaches_the_child_of_a_session_leader_once_with_the_portable_wait() {
    hang_up_of_a_session_leader(Wait::Portable).await;
}

async fn hang_up_of_a_session_leader(wait: Wait) {
    let server = server_with(&[("A", "1")]).await;
    let pty = Pty::open();
    let mut r4 = probe_on_terminal(wait, &server.uri(), &pty);
    r4.await_ready();
    // The terminal goes away (the ssh connection drops, the window closes): the kernel sends
    // SIGHUP and SIGCONT to the session leader alone, r4-run here, and not to the child.
    pty.hang_up();
    let decided = relay_decision_of(&mut r4, "SIGHUP");
    assert!(
        decided.contains("relaying SIGHUP"),
        "r4-run, leading the session, kept the terminal's hang-up from the child: {decided}"
    );
    r4.await_line("got SIGHUP");
    // The SIGCONT that came with it finds the child running and is not relayed.
    let decided = relay_decision_of(&mut r4, "SIGCONT");
    assert!(decided.contains("not relayed"), "{decided}");
    r4.signal(libc::SIGTERM);
    r4.await_line("got SIGTERM");
    r4.assert_exit(0);
    assert_each_once(&r4.signal_log(), &["SIGHUP", "SIGTERM"]);
}

/// The state letter of process `pid` (`T` when stopped), from `/proc/PID/stat`.
fn state_of(pid: i32) -> char {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap();
    // "pid (comm) S ...": the state follows the last ')'.
    let (_, rest) = stat.rsplit_once(')').unwrap();
    rest.trim_start().chars().next().unwrap()
}

/// Waits until `pid` is stopped. No event tells this; bounded polling of the state does.
#[track_caller]
fn await_stopped(pid: i32) {
    let deadline = Instant::now() + DEADLINE;
    while state_of(pid) != 'T' {
        assert!(Instant::now() < deadline, "pid {pid} never stopped");
        std::thread::yield_now();
    }
}

#[tokio::test]
async fn job_control_in_a_terminal_continues_the_child_once() {
    job_control_in_a_terminal(Wait::Native).await;
}

#[tokio::test]
async fn job_control_in_a_terminal_continues_the_child_once_with_the_portable_wait() {
    job_control_in_a_terminal(Wait::Portable).await;
}

/// The child stops; r4-run, sharing its terminal's group, stops too. A SIGCONT to r4-run alone
/// finds the child still stopped and is relayed; a SIGCONT to the whole group (a shell's `fg`)
/// continues both, and r4-run leaves the child the group's copy.
async fn job_control_in_a_terminal(wait: Wait) {
    let server = server_with(&[("A", "1")]).await;
    let pty = Pty::open();
    let mut r4 = probe_on_terminal(wait, &server.uri(), &pty);
    let probe = r4.await_ready();

    send(probe, libc::SIGSTOP);
    await_stopped(r4.pid());
    r4.signal(libc::SIGCONT);
    let decided = relay_decision_of(&mut r4, "SIGCONT");
    assert!(
        decided.contains("relaying SIGCONT"),
        "r4-run, continued alone, left its stopped child stopped: {decided}"
    );
    r4.await_line("got SIGCONT");

    send(probe, libc::SIGSTOP);
    await_stopped(r4.pid());
    // r4-run leads its process group, which the child shares: `fg`.
    send(-r4.pid(), libc::SIGCONT);
    let decided = relay_decision_of(&mut r4, "SIGCONT");
    assert!(
        decided.contains("already running") && decided.contains("not relayed"),
        "r4-run relayed the group's SIGCONT to a child that had it: {decided}"
    );
    r4.await_line("got SIGCONT");

    r4.signal(libc::SIGTERM);
    r4.await_line("got SIGTERM");
    r4.assert_exit(0);
    let log = r4.signal_log();
    let conts = log.iter().filter(|l| *l == "SIGCONT").count();
    assert_eq!(
        conts, 2,
        "SIGCONT arrived {conts} times, not 2; log: {log:?}"
    );
    assert_each_once(
        &log.into_iter()
            .filter(|l| l != "SIGCONT")
            .collect::<Vec<_>>(),
        &["SIGTERM"],
    );
}

/// Arms a one-shot real-time timer (`alarm`'s, or `setitimer(ITIMER_REAL)`) of argv[1] seconds
/// with SIGALRM blocked, then execs the rest of argv: timers and the mask survive exec. r4-run
/// hands the blocked mask on, so a SIGALRM relayed before the probe has its handlers waits for them.
const ALARM_THEN_EXEC: &str = "import os, signal, sys
signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGALRM])
signal.setitimer(signal.ITIMER_REAL, float(sys.argv[1]))
os.execv(sys.argv[2], sys.argv[2:])
";

#[tokio::test]
async fn an_inherited_timers_alarm_reaches_the_child_on_a_terminal() {
    let server = server_with(&[("A", "1")]).await;
    // The timer is the stimulus, and it runs on the clock: when it fires before the command has
    // started, r4-run drops the SIGALRM (by design, see take_pending_before_spawn) and says so, and
    // that attempt tells nothing; the next one gives r4-run a longer head start. Each wait is still
    // for an event: r4-run's account of what it did with the SIGALRM.
    for seconds in ["1", "4", "16"] {
        let pty = Pty::open();
        let mut r4 = r4_run()
            .against(&server.uri())
            .arg("-vvv")
            .exec_wrapped_in([
                python().as_os_str(),
                OsStr::new("-c"),
                OsStr::new(ALARM_THEN_EXEC),
                OsStr::new(seconds),
            ])
            .signal_probe(&["--unblock", "SIGALRM"])
            .spawn_on_terminal(&pty);
        r4.await_ready();
        let decided = r4.await_stderr_line(|l| l.contains("SIGALRM"));
        if decided.contains("before the command started") {
            r4.signal(libc::SIGTERM);
            r4.assert_exit(0);
            continue;
        }
        assert!(
            decided.contains("relaying SIGALRM"),
            "r4-run on a terminal kept the timer's SIGALRM from the child: {decided}"
        );
        r4.await_line("got SIGALRM");
        r4.signal(libc::SIGTERM);
        r4.await_line("got SIGTERM");
        r4.assert_exit(0);
        assert_each_once(&r4.signal_log(), &["SIGALRM", "SIGTERM"]);
        return;
    }
    panic!("the timer fired before the command started every time, even after 16 s");
}

/// Whether SIGPIPE is in the SigIgn line of a `cat /proc/self/status` output.
fn sigpipe_ignored(status: &str) -> bool {
    let ignored = status
        .lines()
        .find_map(|l| l.strip_prefix("SigIgn:"))
        .expect("a SigIgn line");
    let bits = u64::from_str_radix(ignored.trim(), 16).unwrap();
    bits & (1 << (libc::SIGPIPE - 1)) != 0
}

#[tokio::test]
async fn the_child_gets_sigpipe_as_r4_run_got_it() {
    // systemd starts services with SIGPIPE ignored (IgnoreSIGPIPE=yes); the Rust runtime ignores
    // it in r4-run whatever it inherited, and std sets it back to the default in every child: the
    // child must get what r4-run was given, with and without --exec.
    let server = server_with(&[("A", "1")]).await;
    for exec in [false, true] {
        for ignored in [false, true] {
            let mut run = r4_run().against(&server.uri());
            if exec {
                run = run.arg("--exec");
            }
            if ignored {
                run = run.ignoring(libc::SIGPIPE);
            }
            let ran = run
                .args(["--", "cat", "/proc/self/status"])
                .run_async()
                .await;
            ran.assert_code(0);
            assert_eq!(
                sigpipe_ignored(&ran.stdout()),
                ignored,
                "exec {exec}: r4-run started with SIGPIPE ignored {ignored}; the child's status:\n{}",
                ran.stdout()
            );
        }
    }
}

#[tokio::test]
async fn term_during_the_fetch_ends_r4_run_without_starting_the_command() {
    let answer = wiremock::ResponseTemplate::new(200)
        .set_body_json(env_answer(&[("A", "1")]))
        .set_delay(std::time::Duration::from_secs(60));
    let (server, arrived) = server_noticing(answer).await;
    let mut r4 = r4_run()
        .against(&server.uri())
        .args(["--timeout", "120"])
        .signal_probe(&[])
        .spawn();
    arrived
        .recv_timeout(DEADLINE)
        .expect("the request reached the server");
    // The answer would take a minute and the deadline is two: only the signal can end this soon
    // (assert_exit gives up after DEADLINE, 20 s).
    r4.signal(libc::SIGTERM);
    r4.assert_exit(143);
    assert!(
        r4.signal_log().is_empty() && r4.lines.try_recv().is_err(),
        "the command was started"
    );
}
