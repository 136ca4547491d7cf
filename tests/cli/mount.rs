//! `--mount PATH`: the variables as a file (mode 0600) instead of the environment, its path in
//! `R4_SECRETS_PATH`, removed when r4-run exits, whatever the way.

use crate::support::{r4_run, server_with};

const TOKEN: &str = "mount-secret-value-5e6f7a8b";

#[tokio::test]
async fn the_file_holds_the_variables_and_the_environment_only_its_path() {
    let server = server_with(&[("API_TOKEN", TOKEN), ("MULTI", "a\nb 'c' \"d\" $e")]).await;
    let run = r4_run().against(&server.uri());
    let file = run.tempdir().join("secrets.json");
    let copy = run.tempdir().join("copy.json");
    let script = format!(
        "stat -c %a \"$R4_SECRETS_PATH\"; cp \"$R4_SECRETS_PATH\" {}; env",
        copy.display()
    );
    let dir = run.tempdir().to_owned();
    let ran = run
        .arg("--mount")
        .arg(&file)
        .args(["--", "sh", "-c", &script])
        .run_async()
        .await;
    ran.assert_code(0);
    let out = ran.stdout();
    assert!(out.starts_with("600\n"), "{out}");
    assert!(
        out.contains(&format!("R4_SECRETS_PATH={}", file.display())),
        "{out}"
    );
    assert!(!out.contains(TOKEN) && !out.contains("API_TOKEN="), "{out}");
    let json: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("copy.json")).unwrap()).unwrap();
    assert_eq!(
        json,
        serde_json::json!({"API_TOKEN": TOKEN, "MULTI": "a\nb 'c' \"d\" $e"})
    );
    assert!(!file.exists(), "the file outlived the run");
}

#[tokio::test]
async fn the_dotenv_format_reads_back_with_dotenvy() {
    let server = server_with(&[("API_TOKEN", TOKEN), ("MULTI", "a\nb 'c' \"d\" $e")]).await;
    let run = r4_run().against(&server.uri());
    let dir = run.tempdir().to_owned();
    let file = dir.join("secrets.env");
    let copy = dir.join("copy.env");
    let ran = run
        .arg("--mount")
        .arg(&file)
        .args(["--mount-format", "dotenv", "--", "sh", "-c"])
        .arg(format!("cp \"$R4_SECRETS_PATH\" {}", copy.display()))
        .run_async()
        .await;
    ran.assert_code(0);
    let read: Vec<(String, String)> = dotenvy::from_path_iter(&copy)
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert_eq!(
        read,
        [
            ("API_TOKEN".to_owned(), TOKEN.to_owned()),
            ("MULTI".to_owned(), "a\nb 'c' \"d\" $e".to_owned())
        ]
    );
    assert!(!file.exists());
}

#[tokio::test]
async fn the_file_is_removed_however_the_command_ends() {
    let server = server_with(&[("API_TOKEN", TOKEN)]).await;
    // Killed by a signal (137), failing (3), not found (127: r4-run's own failure after writing).
    for (command, code) in [
        (
            &["sh", "-c", "test -s \"$R4_SECRETS_PATH\" && kill -KILL $$"][..],
            137,
        ),
        (
            &["sh", "-c", "test -s \"$R4_SECRETS_PATH\" && exit 3"][..],
            3,
        ),
        (&["no-such-command-r4-mount"][..], 127),
    ] {
        let run = r4_run().against(&server.uri());
        let file = run.tempdir().join("secrets.json");
        let dir = run.tempdir().to_owned();
        let ran = run
            .arg("--mount")
            .arg(&file)
            .arg("--")
            .args(command)
            .run_async()
            .await;
        ran.assert_code(code);
        assert!(!file.exists(), "{command:?} left the file");
        assert!(
            std::fs::read_dir(&dir).unwrap().next().is_none(),
            "{command:?} left something in the directory"
        );
    }
}

#[tokio::test]
async fn a_term_relayed_to_the_command_removes_the_file_too() {
    let server = server_with(&[("API_TOKEN", TOKEN)]).await;
    let run = r4_run().against(&server.uri());
    let file = run.tempdir().join("secrets.json");
    let mut r4 = run
        .arg("--mount")
        .arg(&file)
        .signal_probe(&["--term", "default"])
        .spawn();
    r4.await_ready();
    assert!(file.exists(), "no file while the command runs");
    r4.signal(libc::SIGTERM);
    r4.assert_exit(143);
    assert!(!file.exists(), "the file outlived the run");
}

#[tokio::test]
async fn mount_needs_a_command_and_cannot_go_with_exec() {
    let server = server_with(&[("API_TOKEN", TOKEN)]).await;
    r4_run()
        .against(&server.uri())
        .args(["--mount", "/tmp/r4-mount-never", "--dotenv", "-"])
        .run_async()
        .await
        .assert_failed_with("--mount needs a command");
    r4_run()
        .against(&server.uri())
        .args(["--mount", "/tmp/r4-mount-never", "--exec", "--", "true"])
        .run_async()
        .await
        .assert_failed_with("cannot be used with");
    assert!(!std::path::Path::new("/tmp/r4-mount-never").exists());
}
