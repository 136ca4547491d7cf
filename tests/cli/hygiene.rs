//! Secret hygiene: once the child runs, no byte of a secret is left in the supervising r4-run: not in
//! its heap (live or freed), stack, argv or environ, and never in its messages.

use crate::support::emulator::Emulator;
use crate::support::{
    bin, corpus, env_answer, r4_run, send, server_noticing, server_with, DEADLINE, KEY,
    KEY_SECRET_PART, PROJECT,
};
use std::io::{BufRead, BufReader, Read};
use std::os::unix::fs::FileExt;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const PEM_SECRET: &str = "-----BEGIN PRIVATE KEY-----\nMIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjHygieneQ9zX7wPq\nc2VjcmV0IGtleSBtYXRlcmlhbCBmb3IgdGhlIHNjYW4gdGVzdA==\n-----END PRIVATE KEY-----\n";
const QUOTED_SECRET: &str = "it's \"quoted\" $HOME `zq81-hygiene-marker`";
const PLAIN_SECRET: &str = "sk_live_hygiene_4242424242424242";

/// What the scan looks for: each secret value, and the API key's secret part.
fn needles() -> Vec<(&'static str, Vec<u8>)> {
    vec![
        ("PEM block", PEM_SECRET.as_bytes().to_vec()),
        (
            "PEM body line",
            b"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjHygieneQ9zX7wPq".to_vec(),
        ),
        ("quoted value", QUOTED_SECRET.as_bytes().to_vec()),
        ("plain value", PLAIN_SECRET.as_bytes().to_vec()),
        ("key secret part", KEY_SECRET_PART.as_bytes().to_vec()),
    ]
}

/// Starts r4-run supervising a child that says "ready" and then sleeps, and returns once r4-run is
/// asleep in its wait for the child (all its clean-up done).
fn start_supervising(api: &Emulator, extra_env: &[(&str, &str)]) -> (Child, u32) {
    let (r4, child_pid) = spawn_supervising(api, &[], extra_env);
    wait_until_blocked(r4.id());
    (r4, child_pid)
}

/// Starts r4-run, with `extra_args` before its own, supervising a child that prints its pid and
/// then sleeps; returns once the child has printed its pid.
fn spawn_supervising(
    api: &Emulator,
    extra_args: &[&str],
    extra_env: &[(&str, &str)],
) -> (Child, u32) {
    let mut cmd = Command::new(bin());
    cmd.env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("R4_API_KEY", KEY)
        .args(extra_args)
        .args([
            "--project",
            PROJECT,
            "--base-url",
            &api.url,
            "--",
            "sh",
            "-c",
            "echo $$; exec sleep 120",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    for (k, v) in extra_env {
        cmd.env(k, v);
    }
    let mut r4 = cmd.spawn().unwrap();
    let mut line = String::new();
    BufReader::new(r4.stdout.take().unwrap())
        .read_line(&mut line)
        .unwrap();
    let child_pid: u32 = line.trim().parse().expect("the child's pid");
    (r4, child_pid)
}

/// Waits until r4-run's main thread is blocked in the supervise loop's wait for a signal (the
/// `rt_sigtimedwait` system call, under glibc's `sigwaitinfo` and `sigwait` alike), which it
/// enters only after every drop and wipe. (Merely asleep is not enough: it may sleep elsewhere on
/// the way, in a lock or a write.) No event tells this; bounded polling of the state does.
fn wait_until_blocked(pid: u32) {
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        // "NR args… sp pc" while blocked in syscall NR, "running" while running.
        let syscall = std::fs::read_to_string(format!("/proc/{pid}/syscall")).unwrap();
        let nr = syscall.split_whitespace().next().unwrap_or("");
        if nr.parse::<libc::c_long>() == Ok(libc::SYS_rt_sigtimedwait) {
            return;
        }
        assert!(
            Instant::now() < deadline,
            "r4-run never reached its supervise loop (/proc/{pid}/syscall: {syscall})"
        );
        std::thread::yield_now();
    }
}

/// Counts each needle in every readable mapping of `pid`, and in its argv and environ.
fn scan(pid: u32) -> Vec<(&'static str, usize)> {
    let maps = std::fs::read_to_string(format!("/proc/{pid}/maps")).unwrap();
    let mem = std::fs::File::open(format!("/proc/{pid}/mem")).unwrap();
    let mut images = Vec::new();
    for line in maps.lines() {
        let mut fields = line.split_whitespace();
        let (range, perms) = (fields.next().unwrap(), fields.next().unwrap());
        if !perms.starts_with('r') {
            continue;
        }
        let (start, end) = range.split_once('-').unwrap();
        let (start, end) = (
            u64::from_str_radix(start, 16).unwrap(),
            u64::from_str_radix(end, 16).unwrap(),
        );
        let mut buf = vec![0u8; (end - start) as usize];
        // [vvar] and similar special mappings refuse reads; they hold no data of ours.
        if mem.read_exact_at(&mut buf, start).is_ok() {
            images.push(buf);
        }
    }
    for file in ["cmdline", "environ"] {
        let mut buf = Vec::new();
        std::fs::File::open(format!("/proc/{pid}/{file}"))
            .unwrap()
            .read_to_end(&mut buf)
            .unwrap();
        images.push(buf);
    }
    assert!(
        images.len() > 3,
        "the scan read too little to mean anything"
    );
    needles()
        .into_iter()
        .map(|(what, needle)| (what, images.iter().map(|img| count(img, &needle)).sum()))
        .collect()
}

fn count(haystack: &[u8], needle: &[u8]) -> usize {
    let first = needle[0];
    let mut n = 0;
    let mut i = 0;
    while let Some(pos) = haystack[i..].iter().position(|&b| b == first) {
        let at = i + pos;
        if haystack[at..].starts_with(needle) {
            n += 1;
        }
        i = at + 1;
    }
    n
}

fn finish(mut r4: Child, child_pid: u32) {
    // SAFETY: sending a signal to the sleeping grandchild we just read the pid of.
    unsafe { libc::kill(child_pid as i32, libc::SIGKILL) };
    let _ = r4.wait();
}

fn project_api() -> Emulator {
    let mut vars = corpus::hostile();
    vars.extend([
        ("PEM_SECRET", PEM_SECRET),
        ("QUOTED_SECRET", QUOTED_SECRET),
        ("PLAIN_SECRET", PLAIN_SECRET),
    ]);
    Emulator::with_project(&vars, &[])
}

#[test]
fn no_secret_byte_is_left_in_the_supervisor_once_the_child_runs() {
    let api = project_api();
    let (r4, child_pid) = start_supervising(&api, &[]);
    let found = scan(r4.id());
    finish(r4, child_pid);
    assert!(
        found.iter().all(|(_, n)| *n == 0),
        "secrets left in r4-run's memory: {found:?}"
    );
}

/// The negative control: the same scan of a build that does not wipe freed memory finds copies, so
/// the test above is able to fail.
#[test]
fn without_the_wiping_allocator_the_scan_finds_copies() {
    if !cfg!(debug_assertions) {
        eprintln!("SKIPPED: the no-wipe switch exists in debug builds only");
        return;
    }
    let api = project_api();
    let (r4, child_pid) = start_supervising(&api, &[("R4_RUN_TEST_NO_WIPE", "1")]);
    let found = scan(r4.id());
    finish(r4, child_pid);
    let total: usize = found.iter().map(|(_, n)| n).sum();
    assert!(
        total > 0,
        "the scan found nothing even without wiping: it cannot see copies ({found:?})"
    );
}

#[test]
fn the_most_verbose_output_names_no_value_and_no_key() {
    let vars = corpus::hostile();
    let api = Emulator::with_project(&vars, &[]);
    let ran = r4_run().against(&api.url).arg("-vvv").probe().run();
    ran.assert_code(0);
    let err = ran.stderr();
    assert!(
        err.contains("GET ") && err.contains("200"),
        "-vvv says what it did:\n{err}"
    );
    assert!(
        err.contains("PEM_BLOCK"),
        "-vvv names the variables:\n{err}"
    );
    for (name, value) in vars.iter().filter(|(_, v)| v.len() >= 6) {
        assert!(
            !err.contains(value),
            "-vvv shows the value of {name}:\n{err}"
        );
    }
    assert!(!err.contains(KEY_SECRET_PART));
}

/// The owner of `/proc/PID/status`: root when the process is not dumpable, else the process's
/// effective uid. (Not `/proc/PID` itself: the kernel keeps world-readable directories owned by the
/// effective uid whatever the dumpability.)
fn proc_owner(pid: i32) -> u32 {
    use std::os::unix::fs::MetadataExt;
    std::fs::metadata(format!("/proc/{pid}/status"))
        .unwrap()
        .uid()
}

/// The soft and hard "Max core file size" of a process, from `/proc/PID/limits`.
fn core_limit(pid: &str) -> String {
    let limits = std::fs::read_to_string(format!("/proc/{pid}/limits")).unwrap();
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max core file size"))
        .expect("a core size line");
    line.split_whitespace()
        .take(2)
        .collect::<Vec<_>>()
        .join(" ")
}

/// Who r4-run runs as in the dumpability test: dumpability shows in `/proc/PID`'s owner only for
/// a process that is not root's. As root that is uid/gid 65534, if it can read and run the
/// binary (a binary it cannot read is started non-dumpable whatever r4-run does, and the test
/// could not fail); otherwise the test's own user. Err: why it cannot be done here.
fn unprivileged_user() -> Result<(u32, u32), String> {
    use std::os::unix::process::CommandExt;
    // SAFETY: getuid and getgid have no preconditions.
    let (uid, gid) = unsafe { (libc::getuid(), libc::getgid()) };
    if uid != 0 {
        return Ok((uid, gid));
    }
    let reachable = Command::new("sh")
        .args(["-c", r#"test -r "$0" && test -x "$0""#])
        .arg(bin())
        .uid(65534)
        .gid(65534)
        .status();
    match reachable {
        Ok(status) if status.success() => Ok((65534, 65534)),
        Ok(_) => Err(format!("uid 65534 cannot read and run {}", bin().display())),
        Err(e) => Err(format!("cannot start a process as uid 65534: {e}")),
    }
}

#[tokio::test]
async fn r4_run_is_never_dumpable_and_its_child_is() {
    let (uid, gid) = match unprivileged_user() {
        Ok(user) => user,
        Err(why) => {
            eprintln!("SKIPPED: {why}");
            return;
        }
    };
    // During the fetch, with the key in memory: the answer is held back for a minute.
    let answer = wiremock::ResponseTemplate::new(200)
        .set_body_json(env_answer(&[("A", "1")]))
        .set_delay(Duration::from_secs(60));
    let (server, arrived) = server_noticing(answer).await;
    let mut r4 = r4_run()
        .against(&server.uri())
        .user(uid, gid)
        .args(["--timeout", "120", "--", "true"])
        .spawn();
    arrived
        .recv_timeout(DEADLINE)
        .expect("the request reached the server");
    assert_eq!(
        proc_owner(r4.pid()),
        0,
        "r4-run (uid {uid}) is dumpable while it fetches"
    );
    r4.signal(libc::SIGTERM);
    r4.assert_exit(143);

    // Supervising: r4-run still is not dumpable and has a core-size limit of 0; the child is
    // dumpable, with the limit r4-run was started with.
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = r4_run()
        .against(&server.uri())
        .user(uid, gid)
        .args(["-vv", "--", "sh", "-c", "echo $$; exec sleep 120"])
        .spawn();
    let child: i32 = r4.await_line("").trim().parse().expect("the child's pid");
    r4.probe_pid = Some(child);
    // Said once r4-run has done everything it does after the spawn.
    r4.await_stderr_line(|l| l.contains("supervising pid"));
    assert_eq!(
        proc_owner(r4.pid()),
        0,
        "r4-run is dumpable while it supervises"
    );
    assert_eq!(core_limit(&r4.pid().to_string()), "0 0");
    assert_eq!(proc_owner(child), uid, "the child is not dumpable");
    assert_eq!(core_limit(&child.to_string()), core_limit("self"));
    send(child, libc::SIGKILL);
    r4.assert_exit(137);
}

/// Sets the core-size soft limit to argv[1] bytes (the hard limit kept), then execs the rest of
/// argv: resource limits survive exec.
const CORE_LIMIT_THEN_EXEC: &str = "import os, resource, sys
hard = resource.getrlimit(resource.RLIMIT_CORE)[1]
resource.setrlimit(resource.RLIMIT_CORE, (int(sys.argv[1]), hard))
os.execv(sys.argv[2], sys.argv[2:])
";

#[tokio::test]
async fn no_core_from_the_start_and_the_child_gets_the_core_limit_r4_run_got() {
    // A soft limit that is not 0, so that a child left with r4-run's 0 would show.
    const SOFT: &str = "1048576";
    let hard = core_limit("self").split(' ').nth(1).unwrap().to_owned();
    if hard != "unlimited" && hard.parse::<u64>().unwrap() < 1048576 {
        eprintln!("SKIPPED: the core-size hard limit is {hard}, under the {SOFT} bytes needed");
        return;
    }
    let started = |base: &str| {
        r4_run().against(base).exec_wrapped_in([
            crate::support::python().as_os_str(),
            std::ffi::OsStr::new("-c"),
            std::ffi::OsStr::new(CORE_LIMIT_THEN_EXEC),
            std::ffi::OsStr::new(SOFT),
        ])
    };
    // During the fetch, with the key in memory (the answer is held back for a minute): no core,
    // on every system, whatever dumpability or tracing settings the system has besides.
    let answer = wiremock::ResponseTemplate::new(200)
        .set_body_json(env_answer(&[("A", "1")]))
        .set_delay(Duration::from_secs(60));
    let (server, arrived) = server_noticing(answer).await;
    let mut r4 = started(&server.uri())
        .args(["--timeout", "120", "--", "true"])
        .spawn();
    arrived
        .recv_timeout(DEADLINE)
        .expect("the request reached the server");
    assert_eq!(core_limit(&r4.pid().to_string()), format!("0 {hard}"));
    r4.signal(libc::SIGTERM);
    r4.assert_exit(143);

    // Supervising: 0 for r4-run, hard limit too; the child has the soft limit r4-run got, with
    // and without --exec.
    let server = server_with(&[("A", "1")]).await;
    let mut r4 = started(&server.uri())
        .args(["-vv", "--", "sh", "-c", "echo $$; exec sleep 120"])
        .spawn();
    let child: i32 = r4.await_line("").trim().parse().expect("the child's pid");
    r4.probe_pid = Some(child);
    r4.await_stderr_line(|l| l.contains("supervising pid"));
    assert_eq!(core_limit(&r4.pid().to_string()), "0 0");
    assert_eq!(core_limit(&child.to_string()), format!("{SOFT} {hard}"));
    send(child, libc::SIGKILL);
    r4.assert_exit(137);
    let mut r4 = started(&server.uri())
        .args(["--exec", "--", "sh", "-c", "echo $$; exec sleep 120"])
        .spawn();
    let child: i32 = r4.await_line("").trim().parse().expect("the child's pid");
    assert_eq!(child, r4.pid());
    assert_eq!(core_limit(&child.to_string()), format!("{SOFT} {hard}"));
    r4.signal(libc::SIGKILL);
    let (status, stderr) = r4.wait();
    use std::os::unix::process::ExitStatusExt;
    assert_eq!(status.signal(), Some(libc::SIGKILL), "{status}; {stderr}");
}

/// `--watch` keeps the key (it fetches again) but no value: between fetches only a keyed digest of
/// each variable remains. The scan is taken between two watch fetches; a fetch that started while
/// it ran (a `GET` line on stderr) makes it start over.
#[test]
fn a_watching_r4_run_keeps_no_value_between_fetches() {
    let api = project_api();
    let (mut r4, child_pid) =
        spawn_supervising(&api, &["-v", "--watch", "--watch-interval", "1"], &[]);
    let err = crate::support::line_reader(r4.stderr.take().unwrap());
    let values: Vec<_> = needles()
        .into_iter()
        .filter(|(what, _)| *what != "key secret part")
        .collect();
    let mut fetches_done = 0;
    let mut verdict = None;
    for _attempt in 0..10 {
        // A watch fetch (the second "fetch took" of the run, or any later one) has just ended.
        let mut seen = Vec::new();
        while fetches_done < 2 {
            let line = crate::support::await_line(&err, "fetch took", &mut seen);
            let _ = line;
            fetches_done += 1;
        }
        wait_until_blocked(r4.id());
        let started_before = err.try_iter().any(|l| l.contains("GET "));
        let found = scan(r4.id());
        let started_during = err.try_iter().any(|l| l.contains("GET "));
        if started_before || started_during {
            fetches_done = 1; // wait for that fetch to end, then scan again
            continue;
        }
        verdict = Some(found);
        break;
    }
    finish(r4, child_pid);
    let found = verdict.expect("no quiet moment between watch fetches to scan in");
    let left: Vec<_> = found
        .into_iter()
        .filter(|(what, n)| *n > 0 && values.iter().any(|(v, _)| v == what))
        .collect();
    assert!(
        left.is_empty(),
        "values left in a watching r4-run's memory: {left:?}"
    );
}

/// `--mask` holds the values to find them, but never as they are: a scan of a masking r4-run, after
/// the command printed every value (masked on the way), finds none of them, nor the key.
#[test]
fn a_masking_r4_run_holds_no_value_as_it_is() {
    let api = project_api();
    let mut r4 = Command::new(bin())
        .env_clear()
        .env("PATH", std::env::var_os("PATH").unwrap())
        .env("R4_API_KEY", KEY)
        .args(["--mask", "--project", PROJECT, "--base-url", &api.url, "--"])
        .args([
            "sh",
            "-c",
            "printf '%s\\n' \"$PEM_SECRET\" \"$QUOTED_SECRET\" \"$PLAIN_SECRET\"; echo \"pid $$\"; exec sleep 120",
        ])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let lines = crate::support::line_reader(r4.stdout.take().unwrap());
    let mut seen = Vec::new();
    let pid_line = crate::support::await_line(&lines, "pid ", &mut seen);
    let child_pid: u32 = pid_line.trim_start_matches("pid ").parse().unwrap();
    assert!(
        seen.iter()
            .any(|l| l.contains("<PLAIN_SECRET masked by r4-run>")),
        "{seen:?}"
    );
    wait_until_blocked(r4.id());
    let found = scan(r4.id());
    finish(r4, child_pid);
    assert!(
        found.iter().all(|(_, n)| *n == 0),
        "secrets left in a masking r4-run's memory: {found:?}"
    );
}
