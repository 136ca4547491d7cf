//! Supervision: real signals at r4-run, a probe child that logs each one it gets, reaping as a
//! subreaper and as PID 1, a pseudo-terminal, `--exec`, and a
//! signal during the fetch.

use crate::support::{
    await_line, children_of, env_answer, line_reader, r4_run, send, server_answering, server_with,
    DEADLINE,
};
use std::process::Stdio;

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
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = r4_run().against(&server.uri()).signal_probe(&[]).spawn();
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
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = r4_run()
        .against(&server.uri())
        .signal_probe(&["--term", "exit:3"])
        .spawn();
    r4.await_ready();
    r4.signal(libc::SIGTERM);
    r4.assert_exit(3);
    assert_each_once(&r4.signal_log(), &["SIGTERM"]);
}

#[tokio::test]
async fn a_child_killed_by_the_relayed_term_gives_143() {
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = r4_run()
        .against(&server.uri())
        .signal_probe(&["--term", "default"])
        .spawn();
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
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = r4_run()
        .against(&server.uri())
        .arg("--subreaper")
        .signal_probe(&["--orphan", "--term", "exit:7"])
        .spawn();
    // The probe makes an orphan and watches it: re-parented to r4-run, then reaped (gone from /proc).
    let line = r4.await_line("orphan ");
    assert_eq!(
        line,
        format!("orphan {} reaped", r4.pid()),
        "the orphan was not re-parented to r4-run and reaped"
    );
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
        .signal_probe(&["--orphan"])
        .spawn();
    let line = r4.await_line("orphan ");
    assert_eq!(line, format!("orphan {} reaped", r4.pid()));
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
    if let Some(why) = pid_namespace_refused() {
        eprintln!("SKIPPED: cannot create a PID namespace: {why}");
        return;
    }
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = r4_run()
        .against(&server.uri())
        // --kill-child: should the test fail, killing unshare takes the whole namespace down.
        .wrapped_in(["unshare", "--fork", "--pid", "--mount-proc", "--kill-child"])
        .signal_probe(&["--orphan"])
        .spawn();
    // Inside the namespace the orphan's new parent is PID 1: r4-run.
    let line = r4.await_line("orphan ");
    assert_eq!(line, "orphan 1 reaped");
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

#[tokio::test]
async fn ctrl_c_in_a_terminal_reaches_the_child_once() {
    use std::os::fd::{FromRawFd, OwnedFd};
    use std::os::unix::process::CommandExt;

    let server = server_with(&[("A", "1")]).await;
    let run = r4_run()
        .against(&server.uri())
        .arg("-vvv")
        .signal_probe(&[]);
    let log = run.signal_log();
    let mut cmd = run.command_to_start();

    let (mut master, mut slave) = (-1, -1);
    // SAFETY: openpty writes two descriptors into the given ints; the other arguments may be null.
    let rc = unsafe {
        libc::openpty(
            &mut master,
            &mut slave,
            std::ptr::null_mut(),
            std::ptr::null(),
            std::ptr::null(),
        )
    };
    assert_eq!(rc, 0, "openpty: {}", std::io::Error::last_os_error());
    // SAFETY: openpty just opened both; each is owned once from here on.
    let (master, slave) = unsafe { (OwnedFd::from_raw_fd(master), OwnedFd::from_raw_fd(slave)) };
    cmd.stdin(slave.try_clone().unwrap())
        .stdout(slave.try_clone().unwrap())
        .stderr(slave.try_clone().unwrap());
    // SAFETY: between fork and exec, only async-signal-safe calls: a new session whose controlling
    // terminal is the pty (stdin), so r4-run's group is the terminal's foreground group, as in a shell.
    unsafe {
        cmd.pre_exec(|| {
            if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let mut child = cmd.spawn().expect("r4-run starts");
    // Only r4-run and the probe may hold the terminal now: the master reads EOF once they are gone.
    drop(cmd);
    drop(slave);
    let mut writer = std::fs::File::from(master.try_clone().unwrap());
    let lines = line_reader(std::fs::File::from(master));
    let mut seen = Vec::new();
    let ready = await_line(&lines, "ready ", &mut seen);
    let probe: i32 = ready.rsplit(' ').next().unwrap().parse().unwrap();

    // Ctrl-C: the terminal sends SIGINT to the foreground group, child and r4-run alike. r4-run
    // must not relay its copy.
    use std::io::Write;
    writer.write_all(b"\x03").unwrap();
    await_line(&lines, "got SIGINT", &mut seen);
    // TERM from a process is relayed; INT would be handled first if r4-run were relaying it.
    send(child.id() as i32, libc::SIGTERM);
    await_line(&lines, "got SIGTERM", &mut seen);
    let (tx, rx) = std::sync::mpsc::channel();
    let pid = child.id() as i32;
    std::thread::spawn(move || {
        let _ = tx.send(child.wait());
    });
    let Ok(status) = rx.recv_timeout(DEADLINE) else {
        send(probe, libc::SIGKILL);
        send(pid, libc::SIGKILL);
        panic!("r4-run did not exit in time; saw {seen:?}");
    };
    assert_eq!(status.unwrap().code(), Some(0), "saw {seen:?}");
    // The rest of the terminal's output, r4-run's -vvv diagnostics among it.
    while let Ok(line) = lines.recv_timeout(DEADLINE) {
        seen.push(line);
    }
    // Two SIGINTs close together can merge into one pending signal in the child, so the log alone
    // cannot always tell a relayed duplicate; r4-run's own account can.
    assert!(
        seen.iter()
            .any(|l| l.contains("SIGINT from the terminal") && l.contains("not relayed")),
        "r4-run did not see the terminal's SIGINT; saw {seen:?}"
    );
    assert!(
        !seen.iter().any(|l| l.contains("relaying SIGINT")),
        "r4-run relayed the terminal's SIGINT; saw {seen:?}"
    );
    let logged = std::fs::read_to_string(&log).unwrap();
    let logged: Vec<String> = logged.lines().map(str::to_owned).collect();
    assert_each_once(&logged, &["SIGINT", "SIGTERM"]);
}

#[tokio::test]
async fn term_during_the_fetch_ends_r4_run_without_starting_the_command() {
    let answer = wiremock::ResponseTemplate::new(200)
        .set_body_json(env_answer(&[("A", "1")]))
        .set_delay(std::time::Duration::from_secs(60));
    let server = server_answering(answer).await;
    let mut r4 = r4_run()
        .against(&server.uri())
        .args(["--timeout", "120"])
        .signal_probe(&[])
        .spawn();
    // No event tells that the request arrived; poll the mock server, bounded.
    let deadline = std::time::Instant::now() + DEADLINE;
    while server
        .received_requests()
        .await
        .unwrap_or_default()
        .is_empty()
    {
        assert!(std::time::Instant::now() < deadline, "r4-run never fetched");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // The answer would take a minute and the deadline is two: only the signal can end this soon
    // (assert_exit gives up after DEADLINE, 20 s).
    r4.signal(libc::SIGTERM);
    r4.assert_exit(143);
    assert!(
        r4.signal_log().is_empty() && r4.lines.try_recv().is_err(),
        "the command was started"
    );
}
