//! Several projects in one run: `-p A -p B` or `R4_PROJECT_ID=A,B`, fetched together within one
//! deadline, merged in order (a later project wins), any failure failing the run.

use crate::support::{env_answer, r4_run, KEY};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

const SHARED: &str = "shared-0a1b2c3d4e5f6a7b8c9d0e1f";
const SERVICE: &str = "service-0a1b2c3d4e5f6a7b8c9d0e";

fn answer_for(project: &str, vars: &[(&str, &str)]) -> ResponseTemplate {
    let mut body = env_answer(vars);
    body["projectId"] = project.into();
    ResponseTemplate::new(200).set_body_json(body)
}

/// A server holding the shared project and the service's.
async fn two_projects() -> MockServer {
    let server = MockServer::start().await;
    for (project, vars) in [
        (
            SHARED,
            &[("DATABASE_URL", "postgres://shared"), ("LOG_LEVEL", "info")][..],
        ),
        (
            SERVICE,
            &[("DATABASE_URL", "postgres://service"), ("API_TOKEN", "t0k")][..],
        ),
    ] {
        Mock::given(method("GET"))
            .and(path(format!("/api/v1/machine/vault/env/{project}")))
            .and(header("X-API-Key", KEY))
            .respond_with(answer_for(project, vars))
            .mount(&server)
            .await;
    }
    server
}

fn run_against(server: &MockServer) -> crate::support::R4Run {
    r4_run()
        .env("R4_API_KEY", KEY)
        .args(["--base-url", &server.uri()])
}

#[tokio::test]
async fn projects_merge_in_order_and_a_later_one_wins() {
    let server = two_projects().await;
    let ran = run_against(&server)
        .args(["-v", "-p", SHARED, "-p", SERVICE])
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    let env = ran.child_env();
    assert_eq!(env["DATABASE_URL"], "postgres://service");
    assert_eq!(env["LOG_LEVEL"], "info");
    assert_eq!(env["API_TOKEN"], "t0k");
    let err = ran.stderr();
    assert!(
        err.contains(&format!(
            "DATABASE_URL from project {SERVICE} overrides the one from project {SHARED}"
        )),
        "{err}"
    );
    // The other order, from the environment: the shared project now wins.
    let ran = run_against(&server)
        .env("R4_PROJECT_ID", format!("{SERVICE},{SHARED}"))
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["DATABASE_URL"], "postgres://shared");
}

#[tokio::test]
async fn a_missing_project_fails_the_whole_run() {
    let server = two_projects().await;
    Mock::given(method("GET"))
        .and(path("/api/v1/machine/vault/env/nope"))
        .respond_with(
            ResponseTemplate::new(404)
                .set_body_json(serde_json::json!({"error": {"code": "project_not_found", "message": "Project not found"}})),
        )
        .mount(&server)
        .await;
    run_against(&server)
        .args(["-p", SHARED, "-p", "nope"])
        .probe()
        .run_async()
        .await
        .assert_failed_with("project nope was not found");
}

/// A server that answers only once two requests are in flight together, each on its own
/// connection: a client that fetched one project after the other would never get its first answer.
fn server_answering_pairs(answers: Vec<(&'static str, serde_json::Value)>) -> String {
    use std::io::{BufRead, BufReader, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        let mut waiting = Vec::new();
        while waiting.len() < 2 {
            let Ok((stream, _)) = listener.accept() else {
                return;
            };
            let mut reader = BufReader::new(stream);
            let mut request_line = String::new();
            if reader.read_line(&mut request_line).is_err() {
                return;
            }
            loop {
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() || line == "\r\n" || line.is_empty() {
                    break;
                }
            }
            waiting.push((request_line, reader.into_inner()));
        }
        for (request_line, mut stream) in waiting {
            let body = answers
                .iter()
                .find(|(project, _)| request_line.contains(project))
                .map(|(_, body)| body.to_string())
                .unwrap_or_default();
            let _ = write!(
                stream,
                "HTTP/1.1 200 OK\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
        }
    });
    url
}

#[tokio::test]
async fn projects_are_fetched_together() {
    let answer = |project: &str, vars: &[(&str, &str)]| {
        let mut body = env_answer(vars);
        body["projectId"] = project.into();
        body
    };
    let url = server_answering_pairs(vec![
        (SHARED, answer(SHARED, &[("A", "1")])),
        (SERVICE, answer(SERVICE, &[("B", "2")])),
    ]);
    let ran = r4_run()
        .env("R4_API_KEY", KEY)
        .args([
            "--base-url",
            &url,
            "--timeout",
            "10",
            "-p",
            SHARED,
            "-p",
            SERVICE,
        ])
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["A"], "1");
    assert_eq!(ran.child_env()["B"], "2");
}

#[tokio::test]
async fn one_fallback_file_stands_in_for_the_merged_set() {
    let server = two_projects().await;
    let dir = tempfile::tempdir().unwrap();
    let fb = dir.path().join("r4.fallback");
    let fb_arg = fb.to_str().unwrap().to_owned();
    run_against(&server)
        .args([
            "-p",
            SHARED,
            "-p",
            SERVICE,
            "--fallback",
            &fb_arg,
            "--",
            "true",
        ])
        .run_async()
        .await
        .assert_code(0);
    // The API goes away: the merged set comes from the file.
    let refused = crate::support::RefusedPort::new();
    let down = refused.url();
    let ran = r4_run()
        .env("R4_API_KEY", KEY)
        .args(["--base-url", &down, "-p", SHARED, "-p", SERVICE])
        .args(["--fallback", &fb_arg])
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["DATABASE_URL"], "postgres://service");
    assert_eq!(ran.child_env()["LOG_LEVEL"], "info");
    // The file is bound to that set, in that order: another set cannot use it.
    r4_run()
        .env("R4_API_KEY", KEY)
        .args(["--base-url", &down, "-p", SERVICE, "-p", SHARED])
        .args(["--fallback", &fb_arg])
        .probe()
        .run_async()
        .await
        .assert_failed_with("no usable fallback");
}
