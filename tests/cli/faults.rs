//! Faults and bad answers: retries, the one deadline, the size cap, redirects and proxies, against
//! real servers on 127.0.0.1 (wiremock, and a raw TCP listener where wiremock cannot misbehave enough).

use crate::support::{env_answer, r4_run, server_with, KEY, KEY_SECRET_PART, PROJECT};
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};
use wiremock::matchers::{header, method, path};
use wiremock::{Mock, MockServer, ResponseTemplate};

fn env_path() -> String {
    format!("/api/v1/machine/vault/env/{PROJECT}")
}

async fn requests(server: &MockServer) -> usize {
    server.received_requests().await.unwrap().len()
}

/// Mounts `response` for the env endpoint, for the first `times` requests only (mount in order).
async fn first(server: &MockServer, times: u64, response: ResponseTemplate) {
    Mock::given(method("GET"))
        .and(path(env_path()))
        .and(header("X-API-Key", KEY))
        .respond_with(response)
        .up_to_n_times(times)
        .mount(server)
        .await;
}

async fn then_answer(server: &MockServer, vars: &[(&str, &str)]) {
    Mock::given(method("GET"))
        .and(path(env_path()))
        .and(header("X-API-Key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(env_answer(vars)))
        .mount(server)
        .await;
}

fn assert_no_secret(stderr: &str) {
    assert!(
        !stderr.contains(KEY_SECRET_PART),
        "the key leaked:\n{stderr}"
    );
}

// ---------------------------------------------------------------------------------------------
// A raw HTTP/1.1 server: each connection gets the next act of a script (the last act repeats).

#[derive(Clone)]
enum Act {
    /// Read the request, then close with a TCP reset.
    Reset,
    /// Read the request, write these bytes, close.
    Write(Vec<u8>),
    /// Read the request and never answer (the socket stays open).
    Hang,
    /// A 200 JSON answer of 400 MiB, generated as it is sent: chunked, or with a Content-Length.
    Huge { chunked: bool },
}

struct RawServer {
    addr: SocketAddr,
    /// The head of each request received, in order.
    heads: Arc<Mutex<Vec<String>>>,
}

impl RawServer {
    fn uri(&self) -> String {
        format!("http://{}", self.addr)
    }

    fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn raw_server(script: Vec<Act>) -> RawServer {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let heads = Arc::new(Mutex::new(Vec::new()));
    let seen = heads.clone();
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for (i, conn) in listener.incoming().enumerate() {
            let Ok(mut conn) = conn else { continue };
            let act = script[i.min(script.len() - 1)].clone();
            let head = read_head(&mut conn);
            seen.lock().unwrap().push(head);
            match act {
                Act::Reset => reset(conn),
                Act::Write(bytes) => {
                    let _ = conn.write_all(&bytes);
                    let _ = conn.shutdown(std::net::Shutdown::Write);
                    // Let the client read before the socket goes.
                    let _ = conn.read(&mut [0; 1]);
                }
                Act::Hang => held.push(conn),
                Act::Huge { chunked } => {
                    std::thread::spawn(move || send_huge(conn, chunked));
                }
            }
        }
    });
    RawServer { addr, heads }
}

fn read_head(conn: &mut TcpStream) -> String {
    conn.set_read_timeout(Some(Duration::from_secs(10)))
        .unwrap();
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match conn.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

fn reset(conn: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is open (owned by `conn`, alive for the call); `linger` is a valid
    // `struct linger` and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            conn.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(conn); // SO_LINGER 0: close sends RST
}

const HUGE: u64 = 400 * 1024 * 1024;

/// Streams a 400 MiB `{"env":{"A":"xxxx…` without ever holding more than one 64 KiB chunk.
fn send_huge(mut conn: TcpStream, chunked: bool) {
    let framing = if chunked {
        "Transfer-Encoding: chunked".to_owned()
    } else {
        format!("Content-Length: {HUGE}")
    };
    let head = format!("HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n{framing}\r\n\r\n");
    if conn.write_all(head.as_bytes()).is_err() {
        return;
    }
    const PREFIX: &[u8] = br#"{"env":{"A":""#;
    let mut chunk = vec![b'x'; 64 * 1024];
    chunk[..PREFIX.len()].copy_from_slice(PREFIX);
    let mut sent = 0u64;
    while sent < HUGE {
        let ok = if chunked {
            conn.write_all(format!("{:x}\r\n", chunk.len()).as_bytes())
                .and_then(|()| conn.write_all(&chunk))
                .and_then(|()| conn.write_all(b"\r\n"))
        } else {
            conn.write_all(&chunk)
        };
        if ok.is_err() {
            return; // the client stopped reading: good
        }
        chunk[..PREFIX.len()].fill(b'x');
        sent += chunk.len() as u64;
    }
}

fn ok_answer(vars: &[(&str, &str)]) -> Vec<u8> {
    let body = env_answer(vars).to_string();
    format!(
        "HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

// ---------------------------------------------------------------------------------------------
// Transient failures are retried.

#[tokio::test]
async fn a_429_with_retry_after_is_waited_out_then_succeeds() {
    let server = MockServer::start().await;
    let limited = ResponseTemplate::new(429)
        .insert_header("Retry-After", "2")
        .set_body_json(serde_json::json!({"error": {"code": "rate_limit_exceeded",
            "message": "Rate limit exceeded. Please wait before making additional requests."}}));
    first(&server, 1, limited).await;
    then_answer(&server, &[("A", "1")]).await;

    let started = Instant::now();
    let ran = r4_run()
        .against(&server.uri())
        .arg("-v")
        .probe()
        .run_async()
        .await;
    let took = started.elapsed();
    ran.assert_code(0);
    assert_eq!(ran.child_env()["A"], "1");
    assert!(took >= Duration::from_secs(2), "waited only {took:?}");
    assert_eq!(requests(&server).await, 2);
    let err = ran.stderr();
    assert!(
        err.contains("try 1: 429 Too Many Requests") && err.contains("(Retry-After: 2 s"),
        "{err}"
    );
    assert_no_secret(&err);
}

#[tokio::test]
async fn a_429s_retry_is_drawn_past_its_retry_after_to_spread_a_fleet_and_a_503s_is_not() {
    for (status, spread) in [(429, Some("drawn below 2000 ms")), (503, None)] {
        let server = MockServer::start().await;
        first(
            &server,
            1,
            ResponseTemplate::new(status).insert_header("Retry-After", "1"),
        )
        .await;
        then_answer(&server, &[("A", "1")]).await;
        let started = Instant::now();
        let ran = r4_run()
            .against(&server.uri())
            .arg("-v")
            .probe()
            .run_async()
            .await;
        let took = started.elapsed();
        ran.assert_code(0);
        assert_eq!(ran.child_env()["A"], "1");
        assert!(
            took >= Duration::from_secs(1),
            "{status}: waited only {took:?}"
        );
        assert_eq!(requests(&server).await, 2);
        let err = ran.stderr();
        assert!(err.contains("(Retry-After: 1 s, plus "), "{status}: {err}");
        match spread {
            // A rate limit's window admits a few: the retry is drawn from the next two windows.
            Some(spread) => assert!(err.contains(spread), "{status}: {err}"),
            // The end of an outage: a little jitter only.
            None => assert!(err.contains(" ms of jitter)"), "{status}: {err}"),
        }
    }
}

#[tokio::test]
async fn a_retry_after_past_the_deadline_fails_at_once_and_says_when() {
    let in_an_hour =
        httpdate::fmt_http_date(std::time::SystemTime::now() + Duration::from_secs(3600));
    for retry_after in ["120".to_owned(), in_an_hour] {
        let server = MockServer::start().await;
        first(
            &server,
            u64::MAX,
            ResponseTemplate::new(429).insert_header("Retry-After", retry_after.as_str()),
        )
        .await;
        let started = Instant::now();
        let ran = r4_run()
            .against(&server.uri())
            .args(["--timeout", "10"])
            .probe()
            .run_async()
            .await;
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "did not fail at once"
        );
        ran.assert_failed_with("before trying again, more than the");
        let err = ran.stderr();
        assert!(err.contains("429 Too Many Requests"), "{err}");
        assert!(err.contains("hint: try again after "), "{err}");
        assert_eq!(requests(&server).await, 1, "{retry_after}");
    }
}

#[tokio::test]
async fn a_retry_after_of_zero_or_in_the_past_does_not_make_a_tight_loop() {
    // A date an hour ago: what a server whose clock lags sends.
    let an_hour_ago =
        httpdate::fmt_http_date(std::time::SystemTime::now() - Duration::from_secs(3600));
    for retry_after in ["0".to_owned(), an_hour_ago] {
        let server = MockServer::start().await;
        first(
            &server,
            u64::MAX,
            ResponseTemplate::new(429).insert_header("Retry-After", retry_after.as_str()),
        )
        .await;
        let ran = r4_run()
            .against(&server.uri())
            .args(["--timeout", "2"])
            .probe()
            .run_async()
            .await;
        ran.assert_failed_with("429 Too Many Requests");
        let sent = requests(&server).await;
        eprintln!("Retry-After {retry_after}: {sent} requests in 2 s");
        assert!(
            (2..=r4_run::api::MAX_TRIES as usize).contains(&sent),
            "Retry-After {retry_after}: {sent} requests in 2 s:\n{}",
            ran.stderr()
        );
    }
}

#[tokio::test]
async fn a_500_then_a_503_then_success_takes_three_tries() {
    let server = MockServer::start().await;
    first(
        &server,
        1,
        ResponseTemplate::new(500).set_body_json(
            serde_json::json!({"error": {"code": "internal_error", "message": "boom"}}),
        ),
    )
    .await;
    first(
        &server,
        1,
        ResponseTemplate::new(503).set_body_raw("upstream down", "text/plain"),
    )
    .await;
    then_answer(&server, &[("THIRD", "time")]).await;

    let ran = r4_run()
        .against(&server.uri())
        .arg("-v")
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["THIRD"], "time");
    assert_eq!(requests(&server).await, 3);
    let err = ran.stderr();
    for line in [
        "try 1: 500 Internal Server Error after",
        "try 2: 503 Service Unavailable after",
        "try 3: 200 OK after",
        "retrying in ",
    ] {
        assert!(err.contains(line), "-v lacks {line:?}:\n{err}");
    }
    assert_no_secret(&err);
}

#[tokio::test]
async fn a_reset_connection_then_success() {
    let raw = raw_server(vec![
        Act::Reset,
        Act::Write(ok_answer(&[("AFTER", "reset")])),
    ]);
    let ran = r4_run()
        .against(&raw.uri())
        .arg("-v")
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["AFTER"], "reset");
    assert_eq!(raw.heads().len(), 2);
}

#[tokio::test]
async fn a_truncated_body_then_success() {
    let cut = b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nContent-Length: 1000\r\n\r\n{\"env\":{\"A\":\"sec".to_vec();
    let raw = raw_server(vec![
        Act::Write(cut),
        Act::Write(ok_answer(&[("A", "whole")])),
    ]);
    let ran = r4_run()
        .against(&raw.uri())
        .arg("-v")
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["A"], "whole");
    assert_eq!(raw.heads().len(), 2);
    assert!(
        ran.stderr().contains("body broke off after"),
        "{}",
        ran.stderr()
    );
}

#[tokio::test]
async fn a_connection_refused_is_retried_until_the_deadline() {
    // Bind then drop: nothing listens on this port.
    let port = TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port();
    let started = Instant::now();
    let ran = r4_run()
        .against(&format!("http://127.0.0.1:{port}"))
        .args(["--timeout", "2"])
        .probe()
        .run_async()
        .await;
    assert!(started.elapsed() < Duration::from_secs(5));
    ran.assert_failed_with("cannot connect to http://127.0.0.1");
    assert!(ran.stderr().contains("(gave up after "), "{}", ran.stderr());
}

// ---------------------------------------------------------------------------------------------
// What is not transient fails at once.

#[tokio::test]
async fn client_errors_fail_after_exactly_one_request() {
    let envelope =
        |code: &str, msg: &str| serde_json::json!({"error": {"code": code, "message": msg}});
    for (status, code, needle) in [
        (400, "bad_request", "answered 400 Bad Request"),
        (401, "unauthorized", "was refused (401"),
        (403, "forbidden", "has no access to project"),
        (404, "project_not_found", "was not found (404"),
    ] {
        let server = MockServer::start().await;
        first(
            &server,
            u64::MAX,
            ResponseTemplate::new(status).set_body_json(envelope(code, "nope")),
        )
        .await;
        r4_run()
            .against(&server.uri())
            .probe()
            .run_async()
            .await
            .assert_failed_with(needle);
        assert_eq!(requests(&server).await, 1, "{status}");
    }
}

#[tokio::test]
async fn a_2xx_that_is_not_the_apis_json_says_what_came_back_without_quoting_it() {
    for (body, content_type, needle) in [
        (
            r#"{"env": {"A": "s3cr3tvalue", nope"#,
            "application/json",
            "is not valid JSON",
        ),
        (
            "\u{0}\u{1}garbage s3cr3tvalue",
            "application/octet-stream",
            "is not valid JSON",
        ),
        (
            "<html><body>Sign in s3cr3tvalue</body></html>",
            "text/html; charset=utf-8",
            "text/html",
        ),
        (
            r#"{"env": "s3cr3tvalue"}"#,
            "application/json",
            "does not have the shape",
        ),
    ] {
        let server = MockServer::start().await;
        first(
            &server,
            u64::MAX,
            ResponseTemplate::new(200).set_body_raw(body, content_type),
        )
        .await;
        let ran = r4_run().against(&server.uri()).probe().run_async().await;
        ran.assert_failed_with(needle);
        let err = ran.stderr();
        assert!(err.contains("200 OK"), "{err}");
        assert!(
            !err.contains("s3cr3tvalue"),
            "a 2xx body was quoted:\n{err}"
        );
        assert_eq!(requests(&server).await, 1);
    }
}

// ---------------------------------------------------------------------------------------------
// The one deadline.

#[tokio::test]
async fn a_server_that_never_answers_fails_within_the_deadline() {
    let raw = raw_server(vec![Act::Hang]);
    let started = Instant::now();
    let ran = r4_run()
        .against(&raw.uri())
        .args(["--timeout", "2"])
        .probe()
        .run_async()
        .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    ran.assert_failed_with("within the 2 s deadline");
    assert!(ran.stderr().contains("--timeout"), "{}", ran.stderr());
}

#[tokio::test]
async fn a_steady_stream_of_html_502s_fails_within_the_deadline_and_says_502() {
    let server = MockServer::start().await;
    first(
        &server,
        u64::MAX,
        ResponseTemplate::new(502).set_body_raw(
            "<html><head><title>502 Bad Gateway</title></head><body>nginx</body></html>",
            "text/html",
        ),
    )
    .await;
    let started = Instant::now();
    let ran = r4_run()
        .against(&server.uri())
        .args(["--timeout", "2"])
        .probe()
        .run_async()
        .await;
    let took = started.elapsed();
    assert!(took < Duration::from_secs(5), "took {took:?}");
    ran.assert_failed_with("502 Bad Gateway");
    assert!(ran.stderr().contains("text/html"), "{}", ran.stderr());
    assert!(requests(&server).await >= 2, "502 was not retried");
}

// ---------------------------------------------------------------------------------------------
// The size cap.

#[tokio::test]
async fn a_400_mib_chunked_answer_stops_at_the_cap_with_bounded_memory() {
    let raw = raw_server(vec![Act::Huge { chunked: true }]);
    let started = Instant::now();
    let run = r4_run()
        .against(&raw.uri())
        .args(["--timeout", "60"])
        .probe();
    let (ran, peak_kib) = tokio::task::spawn_blocking(move || run.run_measuring_memory())
        .await
        .unwrap();
    eprintln!(
        "400 MiB chunked answer: peak RSS {} MiB, {:?}",
        peak_kib / 1024,
        started.elapsed()
    );
    ran.assert_failed_with("is larger than 32 MiB");
    assert!(peak_kib > 0, "no rusage");
    assert!(peak_kib < 128 * 1024, "peak RSS {peak_kib} KiB");
    assert_eq!(raw.heads().len(), 1, "the cap is not retried");
}

#[tokio::test]
async fn a_content_length_over_the_cap_fails_before_reading() {
    let raw = raw_server(vec![Act::Huge { chunked: false }]);
    let run = r4_run().against(&raw.uri()).probe();
    let (ran, peak_kib) = tokio::task::spawn_blocking(move || run.run_measuring_memory())
        .await
        .unwrap();
    eprintln!("400 MiB declared answer: peak RSS {} MiB", peak_kib / 1024);
    ran.assert_failed_with("declares 400 MiB (Content-Length)");
    assert!(peak_kib < 64 * 1024, "peak RSS {peak_kib} KiB");
}

// ---------------------------------------------------------------------------------------------
// Redirects and proxies: the key stays on its origin (proxies for https: proxy.rs).

#[tokio::test]
async fn a_redirect_to_another_port_does_not_carry_the_key() {
    let elsewhere = server_with(&[("STOLEN", "yes")]).await;
    let origin = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(
            ResponseTemplate::new(302)
                .insert_header("Location", format!("{}{}", elsewhere.uri(), env_path())),
        )
        .mount(&origin)
        .await;
    let ran = r4_run().against(&origin.uri()).probe().run_async().await;
    ran.assert_failed_with(&format!("redirected (302 Found) to {}", elsewhere.uri()));
    let err = ran.stderr();
    assert!(
        err.contains("does not follow redirects to another origin"),
        "{err}"
    );
    assert!(
        err.contains(&format!(
            "--base-url / R4_BASE_URL to {}/api/v1/machine",
            elsewhere.uri()
        )),
        "{err}"
    );
    assert_eq!(requests(&origin).await, 1);
    assert_eq!(
        requests(&elsewhere).await,
        0,
        "the other origin was contacted"
    );
}

#[tokio::test]
async fn a_same_origin_redirect_is_followed_with_the_key() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .and(path(env_path()))
        .respond_with(
            ResponseTemplate::new(301).insert_header("Location", format!("/moved{}", env_path())),
        )
        .mount(&server)
        .await;
    Mock::given(method("GET"))
        .and(path(format!("/moved{}", env_path())))
        .and(header("X-API-Key", KEY))
        .respond_with(ResponseTemplate::new(200).set_body_json(env_answer(&[("MOVED", "ok")])))
        .mount(&server)
        .await;
    let ran = r4_run().against(&server.uri()).probe().run_async().await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["MOVED"], "ok");
}

#[tokio::test]
async fn a_redirect_loop_on_the_same_origin_ends() {
    let server = MockServer::start().await;
    Mock::given(method("GET"))
        .respond_with(ResponseTemplate::new(302).insert_header("Location", env_path()))
        .mount(&server)
        .await;
    r4_run()
        .against(&server.uri())
        .probe()
        .run_async()
        .await
        .assert_failed_with("redirected more than 5 times");
}

#[tokio::test]
async fn a_loopback_http_base_never_goes_through_a_proxy() {
    let proxy = raw_server(vec![Act::Write(ok_answer(&[("FROM", "proxy")]))]);
    let server = server_with(&[("FROM", "direct")]).await;
    let ran = r4_run()
        .env("HTTP_PROXY", proxy.uri())
        .env("ALL_PROXY", proxy.uri())
        .against(&server.uri())
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["FROM"], "direct");
    assert!(
        proxy.heads().is_empty(),
        "the proxy saw {:?}",
        proxy.heads()
    );
}

#[tokio::test]
async fn plain_http_to_a_non_loopback_host_is_refused_before_any_connection() {
    // 192.0.2.1 (TEST-NET-1) routes nowhere: a connection attempt would hang until the deadline.
    let started = Instant::now();
    r4_run()
        .against("http://192.0.2.1:8080")
        .args(["--timeout", "20"])
        .probe()
        .run_async()
        .await
        .assert_failed_with("plain http to a host that is not loopback");
    assert!(started.elapsed() < Duration::from_secs(5));
}

#[tokio::test]
async fn a_server_that_echoes_the_key_does_not_make_us_print_it() {
    let echo = serde_json::json!({"error": {"code": "unauthorized", "message": format!("key {KEY} is invalid")}});
    let server =
        crate::support::server_answering(ResponseTemplate::new(401).set_body_json(echo)).await;
    let ran = r4_run().against(&server.uri()).probe().run_async().await;
    ran.assert_failed_with("refused (401");
    assert!(ran.stderr().contains("rk_test123"), "{}", ran.stderr());
    let html = format!("<html>bad key {KEY}</html>");
    let server = crate::support::server_answering(
        ResponseTemplate::new(502).set_body_raw(html, "text/html"),
    )
    .await;
    r4_run()
        .against(&server.uri())
        .args(["--timeout", "1"])
        .probe()
        .run_async()
        .await
        .assert_failed_with("502");
}

/// No piece of 6 bytes or more of the key's secret part is in `stderr`: a key cut by an excerpt
/// must not survive in part.
#[track_caller]
fn assert_no_secret_piece(stderr: &str) {
    let secret = KEY_SECRET_PART.as_bytes();
    for piece in secret.windows(6) {
        let piece = std::str::from_utf8(piece).unwrap();
        assert!(
            !stderr.contains(piece),
            "{piece:?} of the key's secret part leaked:\n{stderr}"
        );
    }
}

#[tokio::test]
async fn a_key_echoed_across_the_cut_of_an_excerpt_leaves_no_piece_of_its_secret() {
    // Where the secret part starts inside KEY: after "rk_test123.".
    let secret_at = KEY.len() - KEY_SECRET_PART.len();
    // The API's envelope: a message is cut at 300 characters; put the cut 9 bytes into the secret.
    let message = format!(
        "{}{KEY} is not a valid key",
        "m".repeat(300 - secret_at - 9)
    );
    for status in [401, 500] {
        let body = serde_json::json!({"error": {"code": "unauthorized", "message": message}});
        let server =
            crate::support::server_answering(ResponseTemplate::new(status).set_body_json(body))
                .await;
        let ran = r4_run()
            .against(&server.uri())
            .args(["--timeout", "1"])
            .probe()
            .run_async()
            .await;
        ran.assert_code(125);
        let err = ran.stderr();
        assert!(err.contains("mmmm"), "the message was not shown:\n{err}");
        assert_no_secret_piece(&err);
    }
    // Not the API's JSON: an excerpt of 80 characters; put the cut 10 bytes into the secret.
    let page = format!("{}{KEY} rejected</html>", "p".repeat(80 - secret_at - 10));
    let server = crate::support::server_answering(
        ResponseTemplate::new(403).set_body_raw(page, "text/html"),
    )
    .await;
    let ran = r4_run().against(&server.uri()).probe().run_async().await;
    ran.assert_failed_with("403 Forbidden");
    let err = ran.stderr();
    assert!(err.contains("pppp"), "no excerpt shown:\n{err}");
    assert_no_secret_piece(&err);
    // A body cut at the 64 KiB r4-run reads of an error, the cut inside the secret.
    let cap = r4_run::api::MAX_ERROR_BODY_BYTES;
    let head = r#"{"error":{"code":"unauthorized","message":""#;
    let pad = "l".repeat(cap - head.len() - secret_at - 8);
    let long = format!(r#"{head}{pad}{KEY}"}}}}"#);
    let server = crate::support::server_answering(
        ResponseTemplate::new(401).set_body_raw(long, "application/json"),
    )
    .await;
    let ran = r4_run().against(&server.uri()).probe().run_async().await;
    ran.assert_code(125);
    assert_no_secret_piece(&ran.stderr());
}
