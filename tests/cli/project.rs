//! Which project is asked for, and whether the answer is for it: ids the URL library would fold into
//! another path are refused before any request, and an answer for another project is never used.

use crate::support::{env_answer, r4_run, server_with, warm_fallback, KEY, PROJECT};
use wiremock::matchers::any;
use wiremock::{Mock, MockServer, ResponseTemplate};

/// A server that answers every request (so a request to any path would be seen and counted).
async fn answering_anything() -> MockServer {
    let server = MockServer::start().await;
    Mock::given(any())
        .respond_with(ResponseTemplate::new(200).set_body_json(env_answer(&[("A", "1")])))
        .mount(&server)
        .await;
    server
}

#[tokio::test]
async fn dot_and_dot_dot_are_refused_before_any_request() {
    let server = answering_anything().await;
    for id in [".", ".."] {
        let ran = r4_run()
            .env("R4_API_KEY", KEY)
            .args(["--project", id, "--base-url", &server.uri()])
            .probe()
            .run_async()
            .await;
        ran.assert_failed_with(&format!("the project id {id:?} is not a project id"));
        assert!(ran.stderr().contains("--project"), "{}", ran.stderr());
        let seen = server.received_requests().await.unwrap();
        assert!(
            seen.is_empty(),
            "{id:?}: requests reached the server: {:?}",
            seen.iter()
                .map(|r| r.url.path().to_owned())
                .collect::<Vec<_>>()
        );
    }
}

#[tokio::test]
async fn dot_dot_is_refused_with_fallback_only_too() {
    let dir = tempfile::tempdir().unwrap();
    let ran = r4_run()
        .env("R4_API_KEY", KEY)
        .args(["--project", "..", "--fallback-only", "--fallback"])
        .arg(dir.path().join("fb"))
        .probe()
        .run_async()
        .await;
    ran.assert_failed_with("the project id \"..\" is not a project id");
}

#[tokio::test]
async fn an_answer_for_another_project_is_refused_and_not_saved() {
    // Hostile: an escape sequence in the id must reach the terminal escaped.
    let other = "65aa00000000000000000000\u{1b}[31m";
    let mut answer = env_answer(&[("DB_PASSWORD", "from-the-wrong-project")]);
    answer["projectId"] = other.into();
    let wrong =
        crate::support::server_answering(ResponseTemplate::new(200).set_body_json(answer)).await;

    // No fallback file yet: none is written.
    let dir = tempfile::tempdir().unwrap();
    let fb = dir.path().join("r4.fallback");
    let ran = r4_run()
        .against(&wrong.uri())
        .arg("--fallback")
        .arg(&fb)
        .probe()
        .run_async()
        .await;
    ran.assert_failed_with(&format!("not of project {PROJECT}"));
    let err = ran.stderr();
    assert!(
        err.contains(r"65aa00000000000000000000\u{1b}[31m"),
        "the server's id is not shown escaped:\n{err}"
    );
    assert!(
        !err.contains('\u{1b}'),
        "a raw escape reached stderr:\n{err}"
    );
    assert!(!err.contains("from-the-wrong-project"), "{err}");
    assert!(!fb.exists(), "the wrong project's answer was saved");

    // A fallback file from a good run stays as it was.
    let good = server_with(&[("DB_PASSWORD", "right")]).await;
    let (_dir, fb) = warm_fallback(&good.uri()).await;
    let before = std::fs::read(&fb).unwrap();
    let ran = r4_run()
        .against(&wrong.uri())
        .arg("--fallback")
        .arg(&fb)
        .probe()
        .run_async()
        .await;
    ran.assert_failed_with(&format!("not of project {PROJECT}"));
    assert_eq!(
        std::fs::read(&fb).unwrap(),
        before,
        "the fallback file changed"
    );
}

#[tokio::test]
async fn a_missing_project_id_is_accepted_and_a_non_string_one_is_unusable() {
    let server = crate::support::server_answering(
        ResponseTemplate::new(200).set_body_json(serde_json::json!({"env": {"A": "1"}})),
    )
    .await;
    let ran = r4_run().against(&server.uri()).probe().run_async().await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["A"], "1");

    let server = crate::support::server_answering(
        ResponseTemplate::new(200)
            .set_body_json(serde_json::json!({"env": {"A": "1"}, "projectId": 42})),
    )
    .await;
    r4_run()
        .against(&server.uri())
        .probe()
        .run_async()
        .await
        .assert_failed_with("is not usable: it gives \"projectId\" as a number");
}
