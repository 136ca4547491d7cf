//! `--fallback PATH`: the last-known-good variables, encrypted, used only when the API cannot be reached.

use crate::support::{r4_run, server_answering, server_with, warm_fallback, RefusedPort, PROJECT};
use std::os::unix::fs::PermissionsExt;
use wiremock::ResponseTemplate;

const SECRET: &str = "fallback-secret-value-77f1";

#[tokio::test]
async fn written_after_success_encrypted_and_used_when_the_api_is_down() {
    let server = server_with(&[("DB_PASSWORD", SECRET), ("PORT", "8080")]).await;
    let before_writing = std::time::Instant::now();
    let (_dir, fb) = warm_fallback(&server.uri()).await;
    let raw = std::fs::read(&fb).expect("the fallback file was written");
    assert_eq!(
        std::fs::metadata(&fb).unwrap().permissions().mode() & 0o777,
        0o600
    );
    assert!(
        !raw.windows(SECRET.len()).any(|w| w == SECRET.as_bytes()),
        "the value is in the file in clear"
    );
    assert!(
        !raw.windows(11).any(|w| w == b"DB_PASSWORD"),
        "the name is in the file in clear"
    );

    let ran = r4_run()
        .against(&RefusedPort::new().url())
        .arg("--fallback")
        .arg(&fb)
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["DB_PASSWORD"], SECRET);
    let err = ran.stderr();
    assert!(err.contains("r4-run: warning: cannot connect"), "{err}");
    assert!(err.contains("using the fallback file"), "{err}");
    // The age is in whole seconds of the wall clock: at most what has passed since the write began,
    // rounded up (a loaded machine can take over a second between the two runs).
    let age: u64 = err
        .split_once("written ")
        .and_then(|(_, rest)| rest.split_once("s ago"))
        .and_then(|(n, _)| n.parse().ok())
        .unwrap_or_else(|| panic!("no age in: {err}"));
    let most = before_writing.elapsed().as_secs() + 1;
    assert!(
        age <= most,
        "written {age}s ago, but only {most}s at most have passed: {err}"
    );

    // Offline development: no request at all.
    let ran = r4_run()
        .against(&RefusedPort::new().url())
        .arg("--fallback")
        .arg(&fb)
        .arg("--fallback-only")
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["PORT"], "8080");
}

#[tokio::test]
async fn never_used_when_the_api_says_no() {
    let server = server_with(&[("A", "1")]).await;
    let (_dir, fb) = warm_fallback(&server.uri()).await;
    let envelope = |code: &str| serde_json::json!({"error": {"code": code, "message": "no"}});
    for (status, code, needle) in [
        (401, "unauthorized", "refused (401"),
        (403, "forbidden", "(403"),
        (404, "project_not_found", "not found (404"),
    ] {
        let server =
            server_answering(ResponseTemplate::new(status).set_body_json(envelope(code))).await;
        let ran = r4_run()
            .against(&server.uri())
            .arg("--fallback")
            .arg(&fb)
            .probe()
            .run_async()
            .await;
        ran.assert_failed_with(needle);
        assert!(!ran.stderr().contains("fallback"), "{}", ran.stderr());
    }
}

#[tokio::test]
async fn a_tampered_truncated_foreign_or_old_file_is_refused_whole() {
    let server = server_with(&[("A", "1")]).await;
    let (_dir, fb) = warm_fallback(&server.uri()).await;
    let good = std::fs::read(&fb).unwrap();

    let refused = RefusedPort::new();
    let down = refused.url();
    let try_it = |extra: Vec<&'static str>| {
        let fb = fb.clone();
        let down = down.clone();
        async move {
            r4_run()
                .against(&down)
                .arg("--fallback")
                .arg(&fb)
                .args(extra)
                .probe()
                .run_async()
                .await
        }
    };
    let mut tampered = good.clone();
    let middle = tampered.len() / 2;
    tampered[middle] ^= 0x20;
    std::fs::write(&fb, &tampered).unwrap();
    try_it(vec![]).await.assert_failed_with("cannot be opened");
    std::fs::write(&fb, &good[..good.len() - 3]).unwrap();
    try_it(vec![]).await.assert_failed_with("cannot be opened");

    // Another key cannot open it.
    std::fs::write(&fb, &good).unwrap();
    r4_run()
        .env("R4_API_KEY", "rk_test123.another-secret")
        .args(["--project", PROJECT, "--base-url", &down, "--fallback"])
        .arg(&fb)
        .probe()
        .run_async()
        .await
        .assert_failed_with("cannot be opened");

    // Too old: the write time is authenticated, so the file cannot be back-dated; it has to age.
    let written = std::time::Instant::now();
    while written.elapsed() < std::time::Duration::from_millis(2100) {
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    try_it(vec!["--fallback-max-age", "1s"])
        .await
        .assert_failed_with("more than --fallback-max-age");
    assert_eq!(try_it(vec!["--fallback-max-age", "1h"]).await.code(), 0);
}
