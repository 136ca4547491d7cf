//! Settings as users give them: flags, their `R4_*` variables, empty values, and the mistakes people
//! make on the command line.

use crate::support::{r4_run, server_with, KEY, PROJECT};

#[tokio::test]
async fn an_empty_variable_means_unset() {
    let server = server_with(&[("A", "1")]).await;
    let ran = r4_run()
        .against(&server.uri())
        .env("R4_API_KEY_FILE", "")
        .env("R4_RUN_SUBREAPER", "")
        .env("R4_TIMEOUT", "")
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["A"], "1");
    assert!(ran.stderr().is_empty(), "{}", ran.stderr());
}

#[tokio::test]
async fn a_subreaper_variable_that_says_no_does_not_conflict_with_exec() {
    let server = server_with(&[("A", "1")]).await;
    for off in ["0", "false", ""] {
        let ran = r4_run()
            .against(&server.uri())
            .env("R4_RUN_SUBREAPER", off)
            .arg("--exec")
            .probe()
            .run_async()
            .await;
        ran.assert_code(0);
        assert_eq!(ran.child_env()["A"], "1", "R4_RUN_SUBREAPER={off:?}");
    }
    // Set for a whole container, it is ignored by an --exec run, with a warning.
    let ran = r4_run()
        .against(&server.uri())
        .env("R4_RUN_SUBREAPER", "1")
        .arg("--exec")
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert!(
        ran.stderr()
            .contains("warning: R4_RUN_SUBREAPER is ignored with --exec"),
        "{}",
        ran.stderr()
    );
    // Nonsense is an error that names the variable.
    r4_run()
        .against(&server.uri())
        .env("R4_RUN_SUBREAPER", "sometimes")
        .probe()
        .run_async()
        .await
        .assert_failed_with("R4_RUN_SUBREAPER");
}

#[tokio::test]
async fn only_with_no_name_is_a_usage_error() {
    let server = server_with(&[("A", "1")]).await;
    for only in ["", ","] {
        r4_run()
            .against(&server.uri())
            .args(["--only", only])
            .probe()
            .run_async()
            .await
            .assert_failed_with("--only names no variable");
    }
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn flags_after_the_command_are_pointed_out() {
    let ran = r4_run()
        .env("R4_API_KEY", KEY)
        .args(["sh", "-c", "true", "-p", PROJECT])
        .run_async()
        .await;
    ran.assert_failed_with("no project given");
    let err = ran.stderr();
    assert!(
        err.contains("-p came after the command's name, so it was passed to the command"),
        "{err}"
    );
    // Without such a flag, no such note.
    let ran = r4_run()
        .env("R4_API_KEY", KEY)
        .args(["sh", "-c", "true"])
        .run_async()
        .await;
    ran.assert_failed_with("no project given");
    assert!(!ran.stderr().contains("came after"), "{}", ran.stderr());
}

#[tokio::test]
async fn the_fallback_file_cannot_be_the_dotenv_file() {
    let server = server_with(&[("A", "1")]).await;
    let run = r4_run().against(&server.uri());
    let file = run.tempdir().join("state");
    std::fs::write(&file, b"earlier").unwrap();
    let ran = run
        .arg("--fallback")
        .arg(&file)
        .arg("--dotenv")
        .arg(&file)
        .run_async()
        .await;
    ran.assert_failed_with("--dotenv and --fallback name the same file");
    assert_eq!(std::fs::read(&file).unwrap(), b"earlier");
    assert!(server.received_requests().await.unwrap().is_empty());
}
