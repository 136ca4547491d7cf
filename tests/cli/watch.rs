//! `--watch`: fetching again while the command runs, and restarting it when the variables change.
//! The emulator serves from the test's process, so a test changes a project's variables at will.

use crate::support::emulator::Emulator;
use crate::support::{python, r4_run, server_answering, Spawned, KEY, PROJECT};
use wiremock::matchers::method;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A command that prints `A=<value>` (or the `--mount` file) when it starts, then waits; on TERM it
/// prints `term` and exits 0, unless told to ignore TERM; USR1 ends it (exit 0) in any case.
fn command(ignore_term: bool) -> Vec<String> {
    let script = format!(
        r#"
import os, signal
def term(*_):
    os.write(1, b"term\n")
    {on_term}
signal.signal(signal.SIGTERM, term)
signal.signal(signal.SIGUSR1, lambda *_: os._exit(0))
# Signals are awaited on a wakeup pipe, not in signal.pause(): one caught just before pause() is
# entered would leave it asleep.
wake_r, wake_w = os.pipe()
os.set_blocking(wake_w, False)
signal.set_wakeup_fd(wake_w, warn_on_full_buffer=False)
path = os.environ.get("R4_SECRETS_PATH")
# os.write, not print: a signal handler that prints while print is flushing raises in Python.
os.write(1, ("A=" + (open(path).read().strip() if path else os.environ.get("A", "-")) + "\n").encode())
while True:
    os.read(wake_r, 64)
"#,
        on_term = if ignore_term { "pass" } else { "os._exit(0)" }
    );
    vec![python().display().to_string(), "-c".to_owned(), script]
}

fn watching(url: &str, extra: &[&str], ignore_term: bool) -> Spawned {
    r4_run()
        .env("R4_API_KEY", KEY)
        .args([
            "--project",
            PROJECT,
            "--base-url",
            url,
            "--watch",
            "--watch-interval",
            "1",
        ])
        .args(extra)
        .arg("--")
        .args(command(ignore_term))
        .spawn()
}

#[test]
fn a_change_restarts_the_command_with_the_new_values() {
    let api = Emulator::with_project(&[("A", "first-value")], &[]);
    let mut r4 = watching(&api.url, &[], false);
    r4.await_line("A=first-value");
    api.set_vars(&[("A", "second-value"), ("B", "new")]);
    // The restart signal first, then the command again with the new values.
    r4.await_line("term");
    r4.await_line("A=second-value");
    let said = r4.await_stderr_line(|l| l.contains("the variables changed"));
    assert!(said.contains("(A, B)"), "{said}");
    assert!(!said.contains("second-value"), "{said}");
    // TERM to r4-run reaches the command, which ends, and so does the watch.
    r4.signal(libc::SIGTERM);
    r4.await_line("term");
    r4.assert_exit(0);
}

#[test]
fn a_command_that_ignores_the_restart_signal_is_killed_after_the_grace() {
    let api = Emulator::with_project(&[("A", "first-value")], &[]);
    let mut r4 = watching(&api.url, &["--restart-grace", "0.5"], true);
    r4.await_line("A=first-value");
    api.set_vars(&[("A", "second-value")]);
    r4.await_line("term");
    r4.await_stderr_line(|l| l.contains("sending SIGKILL"));
    r4.await_line("A=second-value");
    // USR1, relayed, ends the new command; its end ends the watch.
    r4.signal(libc::SIGUSR1);
    r4.assert_exit(0);
}

#[test]
fn the_mount_file_is_rewritten_for_the_restart() {
    let api = Emulator::with_project(&[("A", "first-value")], &[]);
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("secrets.env");
    let file_arg = file.to_str().unwrap().to_owned();
    let mut r4 = watching(
        &api.url,
        &[
            "--mount",
            &file_arg,
            "--mount-format",
            "dotenv",
            "--only",
            "A",
        ],
        false,
    );
    r4.await_line("A=A=first-value");
    api.set_vars(&[("A", "second-value")]);
    r4.await_line("A=A=second-value");
    r4.signal(libc::SIGTERM);
    r4.assert_exit(0);
    assert!(!file.exists(), "the --mount file outlived the run");
}

#[test]
fn the_commands_own_exit_ends_the_watch_with_its_status() {
    let api = Emulator::with_project(&[("A", "1")], &[]);
    let ran = r4_run()
        .env("R4_API_KEY", KEY)
        .args(["--project", PROJECT, "--base-url", &api.url, "--watch"])
        .args(["--", "sh", "-c", "exit 7"])
        .run();
    ran.assert_code(7);
}

/// A server that answers the first fetch, then fails every later one with `then`.
async fn first_good_then(then: ResponseTemplate) -> MockServer {
    let server = server_answering(
        ResponseTemplate::new(200)
            .set_body_json(crate::support::env_answer(&[("A", "first-value")])),
    )
    .await;
    // Mounted after: wiremock tries the newest mock first once the first is used up.
    server.reset().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(200)
                .set_body_json(crate::support::env_answer(&[("A", "first-value")])),
        )
        .up_to_n_times(1)
        .with_priority(1)
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .respond_with(then)
        .with_priority(2)
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn failed_fetches_leave_the_command_running_with_a_warning() {
    for (then, said) in [
        (
            ResponseTemplate::new(503).set_body_json(
                serde_json::json!({"error": {"code": "unavailable", "message": "down"}}),
            ),
            "503",
        ),
        (
            ResponseTemplate::new(401).set_body_json(
                serde_json::json!({"error": {"code": "unauthorized", "message": "bad key"}}),
            ),
            "was refused",
        ),
    ] {
        let server = first_good_then(then).await;
        let url = server.uri();
        let (mut r4, warning) = tokio::task::spawn_blocking(move || {
            let mut r4 = watching(&url, &["--timeout", "2"], false);
            r4.await_line("A=first-value");
            let warning = r4.await_stderr_line(|l| l.contains("the command keeps running"));
            (r4, warning)
        })
        .await
        .unwrap();
        assert!(warning.contains(said), "{warning}");
        // Still the first command: nothing restarted it. It ends when r4-run is told to end.
        r4.signal(libc::SIGTERM);
        r4.await_line("term");
        let (status, stderr) = r4.wait();
        assert_eq!(status.code(), Some(0), "{stderr}");
    }
}

#[test]
fn an_api_gone_away_leaves_the_command_running_with_a_warning() {
    let api = Emulator::with_project(&[("A", "first-value")], &[]);
    let mut r4 = watching(&api.url, &["--timeout", "1"], false);
    r4.await_line("A=first-value");
    drop(api);
    let warning = r4.await_stderr_line(|l| l.contains("the command keeps running"));
    assert!(warning.contains("cannot connect"), "{warning}");
    r4.signal(libc::SIGTERM);
    r4.await_line("term");
    r4.assert_exit(0);
}

#[tokio::test]
async fn the_interval_is_kept() {
    let server = first_good_then(
        ResponseTemplate::new(200)
            .set_body_json(crate::support::env_answer(&[("A", "first-value")])),
    )
    .await;
    let url = server.uri();
    let started = std::time::Instant::now();
    let mut r4 = tokio::task::spawn_blocking(move || {
        let mut r4 = watching(&url, &[], false);
        r4.await_line("A=first-value");
        r4
    })
    .await
    .unwrap();
    // Wait for the third request (the start's, then two while watching): at least two intervals
    // of 1 s less their 10% jitter must have passed.
    let deadline = std::time::Instant::now() + crate::support::DEADLINE;
    while server.received_requests().await.unwrap_or_default().len() < 3 {
        assert!(
            std::time::Instant::now() < deadline,
            "fewer than 3 requests in time"
        );
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let elapsed = started.elapsed();
    assert!(
        elapsed >= std::time::Duration::from_millis(1800),
        "3 requests in {elapsed:?}: the interval was not kept"
    );
    r4.signal(libc::SIGTERM);
    r4.await_line("term");
    r4.assert_exit(0);
}
