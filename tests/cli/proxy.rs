//! Proxies and TLS, against listeners on 127.0.0.1 written here: a CONNECT proxy that records what it
//! is asked, a plain-TCP "server" that records who connected, and (where openssl is installed) a real
//! TLS server with a certificate made for the test.

use crate::support::{r4_run, DEADLINE, KEY_SECRET_PART, PROJECT};
use std::io::{Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Stdio};
use std::sync::{Arc, Mutex};

/// A listener that records each connection: the request head it read (or the first bytes, for a
/// client that speaks TLS), then answers `reply` and closes.
struct Recorder {
    port: u16,
    seen: Arc<Mutex<Vec<String>>>,
}

impl Recorder {
    fn start(reply: &'static [u8]) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let seen = Arc::new(Mutex::new(Vec::new()));
        let log = seen.clone();
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut conn) = conn else { continue };
                let head = read_head(&mut conn);
                log.lock().unwrap().push(head);
                let _ = conn.write_all(reply);
                let _ = conn.shutdown(std::net::Shutdown::Write);
                // Until the client hangs up, so it reads the reply rather than a reset.
                let _ = conn.read_to_end(&mut Vec::new());
            }
        });
        Self { port, seen }
    }

    fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    fn seen(&self) -> Vec<String> {
        self.seen.lock().unwrap().clone()
    }
}

/// An HTTP head (up to the blank line), or whatever came first from a client that does not speak
/// plain HTTP (a TLS ClientHello), lossily as text.
fn read_head(conn: &mut TcpStream) -> String {
    conn.set_read_timeout(Some(DEADLINE)).unwrap();
    let mut head = Vec::new();
    let mut buf = [0u8; 4096];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") {
        match conn.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => head.extend_from_slice(&buf[..n]),
        }
        if head.first() == Some(&0x16) {
            break; // a TLS record: no blank line is coming
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

const REFUSE: &[u8] = b"HTTP/1.1 403 Forbidden\r\nContent-Length: 0\r\n\r\n";
/// What a plain HTTP server says to a TLS ClientHello.
const NOT_TLS: &[u8] =
    b"HTTP/1.1 400 Bad Request\r\nContent-Length: 11\r\nConnection: close\r\n\r\nBad Request";

/// A loopback port where nothing listens.
const PROXY_USER: &str = "r4proxyuser";
const PROXY_PASSWORD: &str = "pr0xy-passw0rd";

#[tokio::test]
async fn a_proxy_that_refuses_the_tunnel_is_named_without_its_credentials() {
    let proxy = Recorder::start(REFUSE);
    let with_credentials = format!(
        "http://{PROXY_USER}:{PROXY_PASSWORD}@127.0.0.1:{}",
        proxy.port
    );
    let ran = r4_run()
        .env("HTTPS_PROXY", &with_credentials)
        .against("https://r4.example.invalid")
        .args(["--timeout", "5"])
        .probe()
        .run_async()
        .await;
    ran.assert_failed_with(&format!(
        "the proxy {} refused to open a tunnel to r4.example.invalid",
        proxy.url()
    ));
    let err = ran.stderr();
    assert!(
        err.contains("HTTPS_PROXY"),
        "the hint names no variable:\n{err}"
    );
    assert!(
        !err.contains(PROXY_PASSWORD) && !err.contains(PROXY_USER),
        "proxy credentials in stderr:\n{err}"
    );
    let seen = proxy.seen();
    assert_eq!(seen.len(), 1, "a refusal is not retried: {seen:?}");
    assert!(
        seen[0].starts_with("CONNECT r4.example.invalid:443 "),
        "{seen:?}"
    );
    // The credentials go to the proxy, as Basic r4proxyuser:pr0xy-passw0rd.
    assert!(
        seen[0].lines().any(|l| l.eq_ignore_ascii_case(
            "proxy-authorization: Basic cjRwcm94eXVzZXI6cHIweHktcGFzc3cwcmQ="
        )),
        "{seen:?}"
    );
    assert!(
        !seen[0].contains(KEY_SECRET_PART),
        "the key was sent to the proxy in clear"
    );

    // -v says which proxy, without its credentials.
    let ran = r4_run()
        .env("HTTPS_PROXY", &with_credentials)
        .against("https://r4.example.invalid")
        .args(["--timeout", "5", "-v"])
        .probe()
        .run_async()
        .await;
    ran.assert_code(125);
    let err = ran.stderr();
    assert!(
        err.contains(&format!(
            "using the proxy {} for r4.example.invalid (from HTTPS_PROXY)",
            proxy.url()
        )),
        "{err}"
    );
    assert!(!err.contains(PROXY_PASSWORD), "{err}");
}

#[tokio::test]
async fn a_proxy_that_is_not_listening_is_named() {
    let refused = crate::support::RefusedPort::new();
    let port = refused.port;
    let ran = r4_run()
        .env("ALL_PROXY", format!("127.0.0.1:{port}"))
        .against("https://r4.example.invalid")
        .args(["--timeout", "1"])
        .probe()
        .run_async()
        .await;
    ran.assert_failed_with(&format!("cannot reach the proxy http://127.0.0.1:{port}"));
    assert!(ran.stderr().contains("ALL_PROXY"), "{}", ran.stderr());
}

#[tokio::test]
async fn no_proxy_sends_exempt_hosts_direct_and_others_through_the_proxy() {
    // (NO_PROXY-ish variable, its value, the host to ask for, whether it goes direct)
    let cases = [
        ("NO_PROXY", "localhost", "localhost", true),
        ("no_proxy", ".localhost", "localhost", true),
        ("NO_PROXY", "example.com, *", "127.0.0.1", true),
        ("NO_PROXY", "127.0.0.0/8", "127.0.0.1", true),
        ("NO_PROXY", "127.0.0.1", "127.0.0.1", true),
        ("NO_PROXY", "example.com,10.0.0.0/8", "localhost", false),
        ("NO_PROXY", "example.com,10.0.0.0/8", "127.0.0.1", false),
        ("NO_PROXY", "alocalhost", "localhost", false),
    ];
    for (var, value, host, direct) in cases {
        let proxy = Recorder::start(REFUSE);
        let server = Recorder::start(NOT_TLS);
        let ran = r4_run()
            .env("https_proxy", proxy.url())
            .env(var, value)
            .against(&format!("https://{host}:{}", server.port))
            .args(["--timeout", "5"])
            .probe()
            .run_async()
            .await;
        let case = format!("{var}={value:?} for {host}");
        let (went, stayed) = if direct {
            ran.assert_failed_with("the TLS handshake failed");
            (server.seen(), proxy.seen())
        } else {
            ran.assert_failed_with("refused to open a tunnel");
            let seen = proxy.seen();
            assert!(
                seen[0].starts_with(&format!("CONNECT {host}:{} ", server.port)),
                "{case}: {seen:?}"
            );
            (seen, server.seen())
        };
        assert_eq!(went.len(), 1, "{case}: {went:?}");
        assert!(stayed.is_empty(), "{case}: {stayed:?}");
    }
}

#[tokio::test]
async fn an_http_server_spoken_to_with_https_is_refused_as_not_tls() {
    let server = Recorder::start(NOT_TLS);
    let ran = r4_run()
        .against(&format!("https://127.0.0.1:{}", server.port))
        .args(["--timeout", "5"])
        .probe()
        .run_async()
        .await;
    ran.assert_failed_with(&format!(
        "cannot connect to https://127.0.0.1:{}: the TLS handshake failed",
        server.port
    ));
    assert!(ran.stderr().contains("https server"), "{}", ran.stderr());
    assert_eq!(server.seen().len(), 1, "a TLS failure is not retried");
}

/// `openssl s_server` with a certificate for 127.0.0.1 made for the test, serving `dir` (`-WWW`:
/// a GET of /PATH answers the file PATH). Killed when dropped.
struct TlsServer {
    child: std::process::Child,
    port: u16,
    cert: std::path::PathBuf,
}

impl TlsServer {
    fn start(dir: &std::path::Path) -> Result<Self, String> {
        let cert = dir.join("cert.pem");
        let key = dir.join("key.pem");
        let made = Command::new("openssl")
            .args(["req", "-x509", "-newkey", "ec", "-pkeyopt"])
            .args(["ec_paramgen_curve:P-256", "-nodes", "-days", "2"])
            .args(["-subj", "/CN=r4-run test", "-addext"])
            .arg("subjectAltName=IP:127.0.0.1")
            // A leaf, not a CA: webpki refuses a CA certificate as a server's own.
            .args(["-addext", "basicConstraints=critical,CA:FALSE"])
            .arg("-keyout")
            .arg(&key)
            .arg("-out")
            .arg(&cert)
            .output()
            .map_err(|e| format!("cannot run openssl: {e}"))?;
        if !made.status.success() {
            return Err(format!(
                "openssl cannot make a certificate: {}",
                String::from_utf8_lossy(&made.stderr).trim()
            ));
        }
        let mut child = Command::new("openssl")
            .args(["s_server", "-accept", "127.0.0.1:0", "-WWW", "-cert"])
            .arg(&cert)
            .arg("-key")
            .arg(&key)
            .current_dir(dir)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .map_err(|e| format!("cannot run openssl s_server: {e}"))?;
        // "ACCEPT 127.0.0.1:PORT" once it listens.
        let lines = crate::support::line_reader(child.stdout.take().unwrap());
        let line = crate::support::await_line(&lines, "ACCEPT", &mut Vec::new());
        let port = line.rsplit(':').next().unwrap().trim().parse().unwrap();
        Ok(Self { child, port, cert })
    }
}

impl Drop for TlsServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[tokio::test]
async fn an_untrusted_certificate_is_refused_and_ssl_cert_file_makes_it_trusted() {
    let dir = tempfile::tempdir().unwrap();
    let answer = crate::support::env_answer(&[("OVER_TLS", "yes")]).to_string();
    let served = dir.path().join("api/v1/machine/vault/env");
    std::fs::create_dir_all(&served).unwrap();
    std::fs::write(served.join(PROJECT), answer).unwrap();
    let server = match TlsServer::start(dir.path()) {
        Ok(server) => server,
        Err(why) => {
            println!("SKIPPED: {why}");
            return;
        }
    };
    let base = format!("https://127.0.0.1:{}", server.port);

    // Self-signed: not in the system's trust store.
    let ran = r4_run()
        .against(&base)
        .args(["--timeout", "5"])
        .probe()
        .run_async()
        .await;
    ran.assert_failed_with(&format!(
        "cannot connect to {base}: its TLS certificate was not accepted"
    ));
    assert!(ran.stderr().contains("SSL_CERT_FILE"), "{}", ran.stderr());

    // Trusted through SSL_CERT_FILE: the whole fetch works over TLS.
    let ran = r4_run()
        .env("SSL_CERT_FILE", &server.cert)
        .against(&base)
        .args(["--timeout", "5"])
        .probe()
        .run_async()
        .await;
    ran.assert_code(0);
    assert_eq!(ran.child_env()["OVER_TLS"], "yes");
}

/// A CONNECT proxy that opens every tunnel to `to` (whatever host it is asked for: the name need not
/// resolve anywhere but here) and records the head it was asked with and every byte that went
/// through the tunnel.
struct TunnelingProxy {
    port: u16,
    heads: Arc<Mutex<Vec<String>>>,
    tunneled: Arc<Mutex<Vec<u8>>>,
}

impl TunnelingProxy {
    fn start(to: std::net::SocketAddr) -> Self {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = listener.local_addr().unwrap().port();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let tunneled = Arc::new(Mutex::new(Vec::new()));
        let (h, t) = (heads.clone(), tunneled.clone());
        std::thread::spawn(move || {
            for conn in listener.incoming() {
                let Ok(mut client) = conn else { continue };
                h.lock().unwrap().push(read_head(&mut client));
                let Ok(server) = TcpStream::connect(to) else {
                    continue;
                };
                let _ = client.write_all(b"HTTP/1.1 200 Connection established\r\n\r\n");
                let pipe = |mut from: TcpStream, mut into: TcpStream, log: Arc<Mutex<Vec<u8>>>| {
                    std::thread::spawn(move || {
                        let mut buf = [0u8; 16 * 1024];
                        while let Ok(n) = from.read(&mut buf) {
                            if n == 0 || into.write_all(&buf[..n]).is_err() {
                                break;
                            }
                            log.lock().unwrap().extend_from_slice(&buf[..n]);
                        }
                        let _ = into.shutdown(std::net::Shutdown::Write);
                    })
                };
                pipe(
                    client.try_clone().unwrap(),
                    server.try_clone().unwrap(),
                    t.clone(),
                );
                pipe(server, client, t.clone());
            }
        });
        Self {
            port,
            heads,
            tunneled,
        }
    }
}

#[test]
fn through_a_connect_proxy_to_a_name_only_the_proxy_knows_the_key_stays_in_the_tunnel() {
    use crate::support::tls::{identity, pem_file, HttpsEmulator};
    let api = HttpsEmulator::with_project(
        &[("VIA_PROXY", "yes")],
        &identity(&["r4.only-the-proxy.test"]),
    );
    let proxy = TunnelingProxy::start(std::net::SocketAddr::from(([127, 0, 0, 1], api.port)));
    let run = r4_run();
    let ca = pem_file(run.tempdir(), "ca.pem", &api.ca_pem);
    let ran = run
        .env("R4_API_KEY", crate::support::KEY)
        .env("HTTPS_PROXY", format!("http://127.0.0.1:{}", proxy.port))
        .env("SSL_CERT_FILE", &ca)
        .args([
            "--project",
            PROJECT,
            "--base-url",
            "https://r4.only-the-proxy.test",
        ])
        .probe()
        .run();
    ran.assert_code(0);
    assert_eq!(ran.child_env()["VIA_PROXY"], "yes");
    let heads = proxy.heads.lock().unwrap().clone();
    assert_eq!(heads.len(), 1, "{heads:?}");
    assert!(
        heads[0].starts_with("CONNECT r4.only-the-proxy.test:443 "),
        "{heads:?}"
    );
    assert!(!heads[0].contains(KEY_SECRET_PART), "{heads:?}");
    // Everything else the proxy carried was TLS: the key is nowhere in it in clear.
    let tunneled = proxy.tunneled.lock().unwrap().clone();
    assert!(!tunneled.is_empty());
    assert!(
        !tunneled
            .windows(KEY_SECRET_PART.len())
            .any(|w| w == KEY_SECRET_PART.as_bytes()),
        "the key crossed the proxy in clear"
    );
}
