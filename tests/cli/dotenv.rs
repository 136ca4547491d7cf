//! `--dotenv PATH|-`: the files r4-run writes, read back by the parsers people use.

use crate::support::{corpus, r4_run, server_with};
use std::os::unix::fs::PermissionsExt;

#[tokio::test]
async fn a_dotenv_file_reads_back_exactly_with_dotenvy_and_no_child_runs() {
    let vars = corpus::hostile();
    let server = server_with(&vars).await;
    let run = r4_run().against(&server.uri());
    let file = run.tempdir().join(".env");
    let ran = run.arg("--dotenv").arg(&file).run_async().await;
    ran.assert_code(0);
    assert!(ran.stdout().is_empty());
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let read: Vec<(String, String)> = dotenvy::from_path_iter(&file)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(read.len(), vars.len());
    for (name, value) in &vars {
        let got = read
            .iter()
            .find(|(k, _)| k == name)
            .map(|(_, v)| v.as_str());
        assert_eq!(got, Some(*value), "{name}");
    }
}

#[tokio::test]
async fn stdout_gets_the_file_and_no_file_named_dash_appears() {
    let server = server_with(&[("A", "1"), ("B", "two words")]).await;
    let run = r4_run()
        .against(&server.uri())
        .args(["--dotenv", "-", "--format", "json"]);
    let dir = run.tempdir().to_owned();
    let ran = run.run_async().await;
    ran.assert_code(0);
    let parsed: serde_json::Value = serde_json::from_str(&ran.stdout()).unwrap();
    assert_eq!(parsed, serde_json::json!({"A": "1", "B": "two words"}));
    assert!(!dir.join("-").exists() && !std::path::Path::new("-").exists());
}

#[tokio::test]
async fn the_shell_format_evals_back_exactly() {
    let vars = corpus::hostile();
    let server = server_with(&vars).await;
    let ran = r4_run()
        .against(&server.uri())
        .args(["--dotenv", "-", "--format", "shell"])
        .run_async()
        .await;
    ran.assert_code(0);
    // eval the output in bash, then dump the environment NUL-separated.
    let out = std::process::Command::new("bash")
        .args(["-c", "eval \"$R4_OUT\"; env -0"])
        .env_clear()
        .env("R4_OUT", ran.stdout())
        .output()
        .unwrap();
    let dumped = String::from_utf8(out.stdout).unwrap();
    for (name, value) in &vars {
        let want = format!("{name}={value}");
        assert!(dumped.split('\0').any(|rec| rec == want), "{name}");
    }
}

#[tokio::test]
async fn writes_then_runs_the_command_with_filters_applied_to_both() {
    let server = server_with(&[("A", "1"), ("B", "2")]).await;
    let run = r4_run().against(&server.uri());
    let file = run.tempdir().join("vars.env");
    let ran = run
        .args(["--only", "A", "--prefix", "APP", "--dotenv"])
        .arg(&file)
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "APP_A=1\n");
    assert_eq!(ran.child_env()["APP_A"], "1");
    assert!(!ran.child_env().contains_key("B"));
}

#[tokio::test]
async fn docker_refuses_multiline_values_by_name_and_keeps_the_earlier_file() {
    let server = server_with(&[("OK", "fine"), ("PEM", corpus::PEM), ("CRLF", "a\r\nb")]).await;
    let run = r4_run().against(&server.uri());
    let file = run.tempdir().join("docker.env");
    std::fs::write(&file, "EARLIER=1\n").unwrap();
    let dir = run.tempdir().to_owned();
    let ran = run
        .args(["--format", "docker", "--dotenv"])
        .arg(&file)
        .probe()
        .run_async()
        .await;
    ran.assert_failed_with("PEM");
    assert!(ran.stderr().contains("CRLF"), "{}", ran.stderr());
    assert!(!ran.stderr().contains("BEGIN PRIVATE KEY"));
    assert_eq!(std::fs::read_to_string(&file).unwrap(), "EARLIER=1\n");
    let leftovers: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(
        leftovers,
        [std::ffi::OsString::from("docker.env")],
        "a temporary file was left behind"
    );
}

#[tokio::test]
async fn an_unwritable_target_fails_with_125_and_starts_nothing() {
    let server = server_with(&[("A", "1")]).await;
    let run = r4_run().against(&server.uri());
    let blocker = run.tempdir().join("not-a-dir");
    std::fs::write(&blocker, "").unwrap();
    let ran = run
        .arg("--dotenv")
        .arg(blocker.join(".env"))
        .probe()
        .run_async()
        .await;
    ran.assert_failed_with("cannot write");
}

#[tokio::test]
async fn a_file_git_would_commit_gets_a_warning() {
    if std::process::Command::new("git")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("SKIPPED: git is not installed");
        return;
    }
    let server = server_with(&[("A", "1")]).await;
    let run = r4_run().against(&server.uri());
    let repo = run.tempdir().to_owned();
    assert!(std::process::Command::new("git")
        .arg("init")
        .arg("-q")
        .arg(&repo)
        .status()
        .unwrap()
        .success());
    let ran = run.arg("--dotenv").arg(repo.join(".env")).run_async().await;
    ran.assert_code(0);
    assert!(
        ran.stderr().contains("r4-run: warning: "),
        "{}",
        ran.stderr()
    );
    assert!(
        ran.stderr().contains("not ignored by git"),
        "{}",
        ran.stderr()
    );

    std::fs::write(repo.join(".gitignore"), ".env\n").unwrap();
    let ran = r4_run()
        .against(&server.uri())
        .arg("--dotenv")
        .arg(repo.join(".env"))
        .run_async()
        .await;
    assert!(!ran.stderr().contains("not ignored"), "{}", ran.stderr());
}

#[tokio::test]
async fn format_without_dotenv_is_a_usage_error() {
    let server = server_with(&[]).await;
    r4_run()
        .against(&server.uri())
        .args(["--format", "json"])
        .probe()
        .run_async()
        .await
        .assert_failed_with("--dotenv");
}

#[tokio::test]
async fn through_a_symlink_to_stdout_the_variables_go_to_stdout() {
    let server = server_with(&[("A", "1"), ("B", "two words")]).await;
    let run = r4_run().against(&server.uri());
    let link = run.tempdir().join("out.env");
    std::os::unix::fs::symlink("/dev/stdout", &link).unwrap();
    let ran = run.arg("--dotenv").arg(&link).run_async().await;
    ran.assert_code(0);
    assert_eq!(ran.stdout(), "A=1\nB='two words'\n");
    // The link is still a link: nothing was renamed over it.
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[tokio::test]
async fn a_descriptor_path_is_written_to_the_descriptor() {
    use std::io::Read;
    use std::os::fd::AsRawFd;
    use std::os::unix::process::CommandExt;
    // As `--dotenv >(cmd)` gives: /dev/fd/N, N a pipe r4-run inherited.
    let server = server_with(&[("A", "1")]).await;
    let mut cmd = r4_run()
        .against(&server.uri())
        .args(["--dotenv", "/dev/fd/3", "--format", "json"])
        .command_to_start();
    let (mut reader, writer) = std::io::pipe().unwrap();
    let raw = writer.as_raw_fd();
    // SAFETY: between fork and exec, only dup2 (async-signal-safe) onto descriptor 3.
    unsafe {
        cmd.pre_exec(move || {
            if libc::dup2(raw, 3) < 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let status = tokio::task::spawn_blocking(move || cmd.output().unwrap())
        .await
        .unwrap();
    drop(writer);
    assert_eq!(
        status.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&status.stderr)
    );
    let mut got = String::new();
    reader.read_to_string(&mut got).unwrap();
    assert_eq!(got, "{\"A\":\"1\"}\n");
}

#[tokio::test]
async fn a_fifo_is_written_in_place() {
    use std::io::Read;
    use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
    let server = server_with(&[("A", "1")]).await;
    let run = r4_run().against(&server.uri());
    let fifo = run.tempdir().join("env.fifo");
    let c_path = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
    // SAFETY: a valid NUL-terminated path and a mode.
    assert_eq!(unsafe { libc::mkfifo(c_path.as_ptr(), 0o600) }, 0);
    // Read and write ends held by the test, non-blocking: opening never waits, and what r4-run
    // writes waits in the pipe until read below.
    let mut end = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(&fifo)
        .unwrap();
    let ran = run.arg("--dotenv").arg(&fifo).run_async().await;
    ran.assert_code(0);
    let mut got = [0u8; 64];
    let n = end.read(&mut got).unwrap_or(0);
    assert_eq!(&got[..n], b"A=1\n");
    assert!(std::fs::symlink_metadata(&fifo)
        .unwrap()
        .file_type()
        .is_fifo());
}

#[tokio::test]
async fn a_link_to_a_device_is_written_through_not_replaced() {
    let server = server_with(&[("A", "1")]).await;
    let run = r4_run().against(&server.uri());
    let link = run.tempdir().join("null.env");
    std::os::unix::fs::symlink("/dev/null", &link).unwrap();
    let ran = run.arg("--dotenv").arg(&link).run_async().await;
    ran.assert_code(0);
    assert!(std::fs::symlink_metadata(&link)
        .unwrap()
        .file_type()
        .is_symlink());
}

#[tokio::test]
async fn the_shell_format_skips_names_a_shell_keeps_read_only() {
    let server = server_with(&[
        ("UID", "1000"),
        ("PPID", "1"),
        ("SHELLOPTS", "x"),
        ("EUID", "0"),
        ("AFTER", "kept"),
    ])
    .await;
    let ran = r4_run()
        .against(&server.uri())
        .args(["--dotenv", "-", "--format", "shell"])
        .run_async()
        .await;
    ran.assert_code(0);
    let err = ran.stderr();
    for name in ["UID", "PPID", "SHELLOPTS", "EUID"] {
        assert!(
            err.contains(&format!("leaving \"{name}\" out of the shell output")),
            "{err}"
        );
    }
    // `bash --posix` aborts the whole eval at a read-only name; every shell reads the rest.
    for shell in [&["bash", "--posix"][..], &["bash"], &["sh"]] {
        let out = std::process::Command::new(shell[0])
            .args(&shell[1..])
            .args(["-c", "eval \"$R4_OUT\"; printf %s \"$AFTER\""])
            .env("R4_OUT", ran.stdout())
            .output()
            .unwrap();
        assert_eq!(String::from_utf8_lossy(&out.stdout), "kept", "{shell:?}");
        assert!(out.stderr.is_empty(), "{shell:?}: {:?}", out.stderr);
    }
}
