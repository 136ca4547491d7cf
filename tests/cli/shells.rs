//! Shells and the tools around them: `--command STRING`, the man page and the completion scripts.

use crate::support::{r4_run, server_with};

#[tokio::test]
async fn command_runs_its_string_with_sh_and_passes_the_status() {
    let server = server_with(&[("GREETING", "hello world")]).await;
    let ran = r4_run()
        .against(&server.uri())
        .args(["--command", "printf '%s|' \"$GREETING\" $0; exit 7"])
        .run_async()
        .await;
    ran.assert_code(7);
    assert_eq!(ran.stdout(), "hello world|/bin/sh|");
    let ran = r4_run()
        .against(&server.uri())
        .args(["--command", "kill -TERM $$"])
        .run_async()
        .await;
    ran.assert_code(143);
}

#[tokio::test]
async fn command_and_a_command_after_dashes_conflict() {
    let server = server_with(&[("A", "1")]).await;
    r4_run()
        .against(&server.uri())
        .args(["--command", "true", "--", "echo", "x"])
        .run_async()
        .await
        .assert_failed_with("'--command <STRING>' cannot be used with");
    r4_run()
        .against(&server.uri())
        .args(["--command", ""])
        .run_async()
        .await
        .assert_failed_with("--command is an empty string");
    assert!(server.received_requests().await.unwrap().is_empty());
}

/// `program` as found on PATH, or why a test that needs it is skipped.
fn tool(program: &str) -> Option<()> {
    let found = std::process::Command::new("sh")
        .args(["-c", &format!("command -v {program}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        eprintln!("SKIPPED: {program} is not installed (.ci/run installs it)");
    }
    found.then_some(())
}

#[test]
fn the_bash_completion_loads_in_bash_and_completes_flags() {
    let script = r4_run().args(["--generate", "complete-bash"]).run();
    script.assert_code(0);
    // Load it, then ask it to complete `r4-run --pro`.
    let out = std::process::Command::new("bash")
        .args([
            "-c",
            "eval \"$R4_COMPLETION\"; complete -p r4-run >/dev/null || exit 9; \
             COMP_WORDS=(r4-run --pro); COMP_CWORD=1; COMP_LINE='r4-run --pro'; COMP_POINT=12; \
             _r4__run r4-run --pro r4-run; printf '%s\\n' \"${COMPREPLY[@]}\"",
        ])
        .env("R4_COMPLETION", script.stdout())
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "--project");
}

#[test]
fn every_completion_script_and_the_man_page_are_printed_without_a_key() {
    for kind in [
        "complete-zsh",
        "complete-fish",
        "complete-powershell",
        "man",
    ] {
        let ran = r4_run().args(["--generate", kind]).run();
        ran.assert_code(0);
        assert!(ran.stdout().contains("r4-run"), "{kind}");
    }
}

#[test]
fn the_man_page_renders_with_man() {
    let Some(()) = tool("man") else { return };
    let run = r4_run().args(["--generate", "man"]);
    let page = run.tempdir().join("r4-run.1");
    let ran = run.run();
    ran.assert_code(0);
    std::fs::write(&page, ran.stdout()).unwrap();
    let out = std::process::Command::new("man")
        .arg("-l")
        .arg(&page)
        .env("MANPAGER", "cat")
        .env("MANWIDTH", "100")
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("--api-key-file"), "{text}");
    assert!(text.contains("R4_PROJECT_ID"), "{text}");
}
