//! The run path: what the child sees, exit statuses, and every way the fetch can fail.

use crate::support::{corpus, env_answer, r4_run, server_answering, server_with, KEY, PROJECT};
use wiremock::ResponseTemplate;

#[tokio::test]
async fn the_child_sees_every_hostile_value_byte_exact() {
    let vars = corpus::hostile();
    let server = server_with(&vars).await;
    let ran = r4_run().against(&server.uri()).probe().run_async().await;
    ran.assert_code(0);
    let env = ran.child_env();
    for (name, value) in &vars {
        assert_eq!(env.get(*name).map(String::as_str), Some(*value), "{name}");
    }
}

#[tokio::test]
async fn a_project_with_2000_variables() {
    let owned: Vec<(String, String)> = (0..2000)
        .map(|i| {
            (
                format!("VAR_{i:04}"),
                format!("value-{i}-{}", "x".repeat(i % 50)),
            )
        })
        .collect();
    let vars: Vec<(&str, &str)> = owned
        .iter()
        .map(|(k, v)| (k.as_str(), v.as_str()))
        .collect();
    let server = server_with(&vars).await;
    let ran = r4_run().against(&server.uri()).probe().run_async().await;
    ran.assert_code(0);
    let env = ran.child_env();
    for (name, value) in &vars {
        assert_eq!(env.get(*name).map(String::as_str), Some(*value));
    }
}

#[tokio::test]
async fn exit_statuses_are_the_childs_own() {
    let server = server_with(&[("A", "1")]).await;
    for code in [0, 1, 42, 255] {
        r4_run()
            .against(&server.uri())
            .args(["--", "sh", "-c", &format!("exit {code}")])
            .run_async()
            .await
            .assert_code(code);
    }
    // Killed by a signal: 128 + N.
    for (signal, code) in [("KILL", 137), ("TERM", 143)] {
        r4_run()
            .against(&server.uri())
            .args(["--", "sh", "-c", &format!("kill -{signal} $$")])
            .run_async()
            .await
            .assert_code(code);
    }
}

#[tokio::test]
async fn a_missing_command_is_127_and_an_unexecutable_one_126() {
    let server = server_with(&[("A", "1")]).await;
    let ran = r4_run()
        .against(&server.uri())
        .args(["--", "no-such-command-r4"])
        .run_async()
        .await;
    ran.assert_code(127);
    assert!(
        ran.stderr()
            .contains("command not found: no-such-command-r4"),
        "{}",
        ran.stderr()
    );

    let run = r4_run().against(&server.uri());
    let script = run.tempdir().join("not-executable.sh");
    std::fs::write(&script, "#!/bin/sh\necho hi\n").unwrap();
    let ran = run.arg("--").arg(&script).run_async().await;
    ran.assert_code(126);
    assert!(
        ran.stderr().starts_with("r4-run: error: cannot execute"),
        "{}",
        ran.stderr()
    );

    // A directory on PATH with the command's name is found but cannot be executed.
    let run = r4_run().against(&server.uri());
    std::fs::create_dir(run.tempdir().join("mydir")).unwrap();
    let path = run.tempdir().to_owned();
    run.env("PATH", path)
        .args(["--", "mydir"])
        .run_async()
        .await
        .assert_code(126);
}

#[tokio::test]
async fn arguments_reach_the_command_untouched() {
    let server = server_with(&[]).await;
    let ran = r4_run()
        .against(&server.uri())
        .args(["--", "printf", "[%s]", "$HOME", "a b", "--", "-v", "*"])
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.stdout(), "[$HOME][a b][--][-v][*]");
}

#[tokio::test]
async fn the_project_can_come_from_r4_project_id() {
    let server = server_with(&[("FROM_ENV_PROJECT", "yes")]).await;
    let ran = r4_run()
        .env("R4_API_KEY", KEY)
        .env("R4_PROJECT_ID", PROJECT)
        .env("R4_BASE_URL", server.uri())
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["FROM_ENV_PROJECT"], "yes");
    assert!(!ran.child_env().contains_key("R4_API_KEY"));
    // r4-run's other settings are not secret and pass through like any inherited variable.
    assert_eq!(ran.child_env()["R4_PROJECT_ID"], PROJECT);
}

#[tokio::test]
async fn fetched_values_win_unless_preserve_env() {
    let server = server_with(&[("SHARED", "fetched"), ("ONLY_FETCHED", "f")]).await;
    let ran = r4_run()
        .env("SHARED", "inherited")
        .env("MINE", "m")
        .against(&server.uri())
        .probe()
        .run_async()
        .await;
    let env = ran.child_env();
    assert_eq!(
        (
            env["SHARED"].as_str(),
            env["ONLY_FETCHED"].as_str(),
            env["MINE"].as_str()
        ),
        ("fetched", "f", "m")
    );

    let ran = r4_run()
        .env("SHARED", "inherited")
        .against(&server.uri())
        .arg("--preserve-env")
        .probe()
        .run_async()
        .await;
    let env = ran.child_env();
    assert_eq!(
        (env["SHARED"].as_str(), env["ONLY_FETCHED"].as_str()),
        ("inherited", "f")
    );
}

#[tokio::test]
async fn pristine_passes_the_fetched_variables_alone() {
    let server = server_with(&[("A", "1"), ("B", "2")]).await;
    let ran = r4_run()
        .env("MINE", "m")
        .against(&server.uri())
        .arg("--pristine")
        .probe()
        .run_async()
        .await;
    let names: Vec<&str> = ran.child_env().keys().map(String::as_str).collect();
    assert_eq!(names, ["A", "B"]);
}

#[tokio::test]
async fn only_and_prefix_select_and_rename() {
    let server = server_with(&[("A", "1"), ("B", "2"), ("C", "3")]).await;
    let ran = r4_run()
        .against(&server.uri())
        .args(["--only", "A,C,MISSING", "--prefix", "APP"])
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    let env = ran.child_env();
    assert_eq!((env["APP_A"].as_str(), env["APP_C"].as_str()), ("1", "3"));
    for absent in ["A", "B", "C", "APP_B"] {
        assert!(!env.contains_key(absent), "{absent}");
    }
    assert!(
        ran.stderr()
            .contains("r4-run: warning: --only names MISSING"),
        "{}",
        ran.stderr()
    );
}

#[tokio::test]
async fn the_key_never_reaches_the_child_from_either_source() {
    let server = server_with(&[("A", "1")]).await;
    let ran = r4_run()
        .against(&server.uri())
        .env("R4_API_KEY_FILE", "/nonexistent")
        .probe();
    // R4_API_KEY_FILE wins over R4_API_KEY; point it at a real key file.
    let key_file = ran.tempdir().join("key");
    std::fs::write(&key_file, format!("{KEY}\n")).unwrap();
    let ran = ran.env("R4_API_KEY_FILE", &key_file).run_async().await;
    ran.assert_code(0);
    let env = ran.child_env();
    assert!(!env.contains_key("R4_API_KEY") && !env.contains_key("R4_API_KEY_FILE"));
    assert!(!env
        .values()
        .any(|v| v.contains(crate::support::KEY_SECRET_PART)));

    // The flag, with a key file that has no trailing newline, and no R4_API_KEY at all.
    let run = r4_run();
    let key_file = run.tempdir().join("key");
    std::fs::write(&key_file, KEY).unwrap();
    let ran = run
        .args([
            "--project",
            PROJECT,
            "--base-url",
            &server.uri(),
            "--api-key-file",
        ])
        .arg(&key_file)
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["A"], "1");
}

#[tokio::test]
async fn api_errors_fail_with_125_and_say_what_to_do() {
    let envelope =
        |code: &str, msg: &str| serde_json::json!({"error": {"code": code, "message": msg}});
    let cases = [
        (
            ResponseTemplate::new(401)
                .set_body_json(envelope("unauthorized", "Invalid or missing API key.")),
            "was refused (401",
        ),
        (
            ResponseTemplate::new(403).set_body_json(envelope("forbidden", "no")),
            "has no access to project",
        ),
        (
            ResponseTemplate::new(404)
                .set_body_json(envelope("project_not_found", "The project was not found")),
            &format!("project {PROJECT} was not found"),
        ),
        (
            ResponseTemplate::new(500).set_body_json(envelope("internal_error", "boom")),
            "the R4 API failed (500",
        ),
        (
            ResponseTemplate::new(502)
                .set_body_raw("<html><body>Bad Gateway</body></html>", "text/html"),
            "502 Bad Gateway with a body that is not the R4 API's JSON (text/html",
        ),
        (
            ResponseTemplate::new(200).set_body_raw("<html>login</html>", "text/html"),
            "is not valid JSON",
        ),
        (
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"env": {"PORT": 5432}})),
            "\"PORT\" a number",
        ),
        (
            ResponseTemplate::new(200).set_body_json(serde_json::json!({"projects": []})),
            "has no \"env\" object",
        ),
    ];
    for (response, needle) in cases {
        let server = server_answering(response).await;
        // 5xx answers are retried; a short deadline keeps this test quick (tests/cli/faults.rs has the
        // retry cases).
        r4_run()
            .against(&server.uri())
            .args(["--timeout", "1.5"])
            .probe()
            .run_async()
            .await
            .assert_failed_with(needle);
    }
}

#[tokio::test]
async fn a_wrong_key_is_never_sent_and_bad_config_fails_before_the_network() {
    let server = server_with(&[("A", "1")]).await;
    r4_run()
        .env("R4_API_KEY", "no-dot-here")
        .args(["--project", PROJECT, "--base-url", &server.uri()])
        .probe()
        .run_async()
        .await
        .assert_failed_with("no '.'");
    r4_run()
        .args(["--project", PROJECT, "--base-url", &server.uri()])
        .probe()
        .run_async()
        .await
        .assert_failed_with("R4_API_KEY is not set");
    r4_run()
        .env("R4_API_KEY", KEY)
        .probe()
        .run_async()
        .await
        .assert_failed_with("no project given");
    r4_run()
        .against("http://r4.example.com")
        .probe()
        .run_async()
        .await
        .assert_failed_with("plain http to a host that is not loopback");
    r4_run()
        .against(&server.uri())
        .run_async()
        .await
        .assert_failed_with("no command to run");
    r4_run()
        .against(&server.uri())
        .args(["--no-such-flag"])
        .probe()
        .run_async()
        .await
        .assert_failed_with("--no-such-flag");
    assert!(server.received_requests().await.unwrap().is_empty());
}

#[tokio::test]
async fn the_request_is_the_documented_one() {
    let server = server_with(&[]).await;
    r4_run()
        .against(&server.uri())
        .args(["--", "true"])
        .run_async()
        .await
        .assert_code(0);
    let requests = server.received_requests().await.unwrap();
    assert_eq!(requests.len(), 1);
    let ua = requests[0]
        .headers
        .get("user-agent")
        .unwrap()
        .to_str()
        .unwrap();
    assert!(ua.starts_with("r4-run/"), "{ua}");
}

#[tokio::test]
async fn an_odd_project_id_is_one_encoded_path_segment() {
    use wiremock::matchers::{method, path};
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("GET"))
        .and(path("/api/v1/machine/vault/env/a%2Fb%20c%3F"))
        .respond_with(ResponseTemplate::new(200).set_body_json({
            let mut answer = env_answer(&[("ODD", "ok")]);
            answer["projectId"] = "a/b c?".into();
            answer
        }))
        .mount(&server)
        .await;
    let ran = r4_run()
        .env("R4_API_KEY", KEY)
        .args(["--project", "a/b c?", "--base-url", &server.uri()])
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["ODD"], "ok");
}

#[tokio::test]
async fn unpassable_variables_are_skipped_by_name_and_envelopes_flagged() {
    let envelope = r#"{"v":3,"iv":"AAAA","t":"BBBB","d":"CCCC"}"#;
    let server = server_with(&[
        ("GOOD", "ok"),
        ("BAD=NAME", "x"),
        ("NUL_VALUE", "a\0b"),
        ("SEALED", envelope),
    ])
    .await;
    let ran = r4_run().against(&server.uri()).probe().run_async().await;
    ran.assert_code(0);
    let env = ran.child_env();
    assert_eq!(env["GOOD"], "ok");
    assert!(!env.contains_key("NUL_VALUE") && !env.keys().any(|k| k.starts_with("BAD")));
    let err = ran.stderr();
    assert!(
        err.contains("r4-run: warning: skipping the variable \"BAD=NAME\""),
        "{err}"
    );
    assert!(
        err.contains("r4-run: warning: skipping the variable NUL_VALUE"),
        "{err}"
    );
    assert!(
        err.contains("r4-run: warning: the value of SEALED is an end-to-end-encrypted envelope"),
        "{err}"
    );
}

#[tokio::test]
async fn a_value_too_big_for_exec_is_refused_by_name_before_starting() {
    // Linux takes at most 32 pages (128 KiB with 4 KiB pages) in one environment string.
    let big = "v".repeat(200 * 1024);
    let server = server_with(&[("HUGE_CERT", &big), ("SMALL", "1")]).await;
    let ran = r4_run().against(&server.uri()).probe().run_async().await;
    ran.assert_failed_with("the variable HUGE_CERT is 204811 bytes, more than the");
    assert!(!ran.stderr().contains("vvvvvvvv"));
    // --only leaves it out, and then the command starts.
    let ran = r4_run()
        .against(&server.uri())
        .args(["--only", "SMALL"])
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["SMALL"], "1");
}

#[tokio::test]
async fn too_much_in_total_for_exec_is_refused_before_starting() {
    // 100 values of 100 KiB each fit one by one, but not together (ARG_MAX is at most 6 MiB).
    let value = "w".repeat(100 * 1024);
    let owned: Vec<(String, &str)> = (0..100)
        .map(|i| (format!("PART_{i:03}"), value.as_str()))
        .collect();
    let vars: Vec<(&str, &str)> = owned.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    let server = server_with(&vars).await;
    r4_run()
        .against(&server.uri())
        .probe()
        .run_async()
        .await
        .assert_failed_with("more than the");
}

#[tokio::test]
async fn names_from_the_server_cannot_drive_the_terminal() {
    // A name holding "cursor up, erase line, carriage return" would rewrite the user's screen.
    let evil = "EVIL\u{1b}[1A\u{1b}[2K\rX=";
    let server = server_with(&[(evil, "1"), ("OK", "2")]).await;
    let ran = r4_run()
        .against(&server.uri())
        .args(["-vv", "--only", "OK,MISSING\u{1b}[2J"])
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    let err = ran.stderr();
    assert!(!err.contains('\u{1b}') && !err.contains('\r'), "{err:?}");
    assert!(err.contains("EVIL\\u{1b}[1A\\u{1b}[2K\\rX="), "{err}");
    assert!(err.contains("MISSING\\u{1b}[2J"), "{err}");
    let ran = r4_run().against(&server.uri()).probe().run_async().await;
    let err = ran.stderr();
    assert!(
        err.contains("skipping the variable \"EVIL\\u{1b}[1A\\u{1b}[2K\\rX=\""),
        "{err}"
    );
    assert!(!err.contains('\u{1b}'), "{err:?}");
}
