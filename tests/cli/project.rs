//! Which project is asked for, and whether the answer is for it: ids the URL library would fold into
//! another path are refused before any request, and an answer for another project is never used.

use crate::support::{env_answer, r4_run, KEY};
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
