//! Starts the built `r4-emulator` binary and talks raw HTTP/1.1 to it over `std::net::TcpStream`
//! (and over rustls for HTTPS). Every test waits for events (the listening line, the answer), never
//! for time.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::process::{Child, Command, Stdio};

const DEMO_KEY: &str = "rk_demo.demo-secret-do-not-use";

/// A running emulator; killed when dropped (and, with `--exit-on-stdin-eof`, gone with the test
/// process anyway, since its stdin closes).
struct Emulator {
    child: Child,
    /// `http` or `https`, from the listening line.
    scheme: String,
    addr: String,
}

impl Emulator {
    fn start(args: &[&str]) -> Emulator {
        let mut child = Command::new(emulator_bin())
            .args(args)
            .arg("--exit-on-stdin-eof")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("start r4-emulator");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .expect("read the listening line");
        let (scheme, addr) = line
            .strip_prefix("listening on ")
            .and_then(|rest| rest.strip_suffix('\n'))
            .and_then(|url| url.split_once("://"))
            .filter(|(scheme, _)| ["http", "https"].contains(scheme))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        Emulator {
            scheme: scheme.to_owned(),
            addr: addr.to_owned(),
            child,
        }
    }

    fn demo(extra: &[&str]) -> Emulator {
        let mut args = vec!["--demo"];
        args.extend_from_slice(extra);
        Emulator::start(&args)
    }

    /// One request on a fresh connection (`Connection: close`); the answer read to EOF.
    fn request(&self, method: &str, path: &str, headers: &[(&str, &str)]) -> Answer {
        let mut stream = TcpStream::connect(&self.addr).expect("connect");
        let mut request = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n", self.addr);
        for (name, value) in headers {
            request.push_str(&format!("{name}: {value}\r\n"));
        }
        request.push_str("Connection: close\r\n\r\n");
        stream.write_all(request.as_bytes()).unwrap();
        let mut raw = Vec::new();
        stream.read_to_end(&mut raw).unwrap();
        Answer::parse(&raw)
    }

    fn get(&self, path: &str, key: Option<&str>) -> Answer {
        match key {
            Some(key) => self.request("GET", path, &[("X-API-Key", key)]),
            None => self.request("GET", path, &[]),
        }
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[derive(Debug)]
struct Answer {
    status: u16,
    headers: Vec<(String, String)>,
    body: String,
}

impl Answer {
    fn parse(raw: &[u8]) -> Answer {
        let text = String::from_utf8(raw.to_vec()).expect("UTF-8 answer");
        let (head, body) = text.split_once("\r\n\r\n").expect("end of headers");
        let mut lines = head.split("\r\n");
        let status_line = lines.next().unwrap();
        let status = status_line
            .split(' ')
            .nth(1)
            .and_then(|s| s.parse().ok())
            .unwrap_or_else(|| panic!("bad status line {status_line:?}"));
        let headers = lines
            .map(|l| {
                let (n, v) = l.split_once(':').unwrap();
                (n.trim().to_ascii_lowercase(), v.trim().to_string())
            })
            .collect();
        Answer {
            status,
            headers,
            body: body.to_string(),
        }
    }

    fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n == name)
            .map(|(_, v)| v.as_str())
    }

    fn json(&self) -> serde_json::Value {
        assert_eq!(self.header("content-type"), Some("application/json"));
        serde_json::from_str(&self.body).unwrap_or_else(|e| panic!("{e}: {:?}", self.body))
    }

    fn error_code(&self) -> String {
        self.json()["error"]["code"].as_str().unwrap().to_string()
    }
}

#[test]
fn demo_env_answer() {
    let emu = Emulator::demo(&[]);
    let answer = emu.get("/api/v1/machine/vault/env/demo", Some(DEMO_KEY));
    assert_eq!(answer.status, 200, "{answer:?}");
    let v = answer.json();
    assert_eq!(v["projectId"], "demo");
    let env = v["env"].as_object().unwrap();
    assert_eq!(v["count"], env.len());
    assert!(env["DATABASE_URL"]
        .as_str()
        .unwrap()
        .starts_with("postgres://"));
    assert!(env["TLS_KEY"].as_str().unwrap().contains('\n'));
}

#[test]
fn authorization_apikey_header_and_project_list() {
    let emu = Emulator::demo(&[]);
    let answer = emu.request(
        "GET",
        "/api/v1/machine/project",
        &[("Authorization", &format!("ApiKey {DEMO_KEY}"))],
    );
    assert_eq!(answer.status, 200, "{answer:?}");
    let v = answer.json();
    let projects = v["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1);
    assert_eq!(projects[0]["id"], "demo");
    assert_eq!(projects[0]["archivedAt"], serde_json::Value::Null);
}

#[test]
fn unauthorized() {
    let emu = Emulator::demo(&[]);
    for key in [None, Some("rk_demo.wrong"), Some("nonsense")] {
        let answer = emu.get("/api/v1/machine/vault/env/demo", key);
        assert_eq!(answer.status, 401, "{key:?}");
        let v = answer.json();
        assert_eq!(v["error"]["code"], "unauthorized");
        assert_eq!(
            v["error"]["message"],
            "Invalid or missing API key. Please provide your API key in the X-API-Key header."
        );
    }
    let bearer = emu.request(
        "GET",
        "/api/v1/machine/project",
        &[("Authorization", &format!("Bearer {DEMO_KEY}"))],
    );
    assert_eq!(bearer.status, 401);
}

#[test]
fn project_not_found_and_not_found() {
    let emu = Emulator::demo(&[]);
    for id in ["nope", "demo-archived"] {
        let answer = emu.get(&format!("/api/v1/machine/vault/env/{id}"), Some(DEMO_KEY));
        assert_eq!(answer.status, 404);
        let v = answer.json();
        assert_eq!(v["error"]["code"], "project_not_found");
        assert_eq!(
            v["error"]["message"],
            format!("The project with ID \"{id}\" was not found or you do not have access to it.")
        );
    }
    for path in [
        "/api/v1/machine/vault/env/%zz",
        "/api/v1/machine/nothing",
        "/vault/env/demo",
    ] {
        let answer = emu.get(path, Some(DEMO_KEY));
        assert_eq!(
            (answer.status, answer.error_code()),
            (404, "not_found".into())
        );
    }
    let answer = emu.request(
        "POST",
        "/api/v1/machine/project",
        &[("X-API-Key", DEMO_KEY)],
    );
    assert_eq!(answer.status, 405);
    assert_eq!(answer.error_code(), "method_not_allowed");
}

#[test]
fn rate_limit_gives_429_with_retry_after() {
    let emu = Emulator::demo(&["--rate-limit", "2/60"]);
    for _ in 0..2 {
        assert_eq!(
            emu.get("/api/v1/machine/project", Some(DEMO_KEY)).status,
            200
        );
    }
    let answer = emu.get("/api/v1/machine/vault/env/demo", Some(DEMO_KEY));
    assert_eq!(answer.status, 429);
    assert_eq!(answer.error_code(), "rate_limit_exceeded");
    let retry: u64 = answer.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=60).contains(&retry), "{retry}");
}

#[test]
fn data_file_serves_any_env_value_and_keeps_alive() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.json");
    std::fs::write(
        &path,
        r#"{ "keys": [ {"key": "rk_t.s", "projects": ["p 1", "odd"]} ],
             "projects": [ {"id": "p 1", "name": "One", "env": {"A": "x\u0000y", "N": 5}},
                           {"id": "odd", "env": [1, 2]} ] }"#,
    )
    .unwrap();
    let emu = Emulator::start(&["--data", path.to_str().unwrap()]);
    let answer = emu.get("/api/v1/machine/vault/env/p%201", Some("rk_t.s"));
    assert_eq!(answer.status, 200);
    assert_eq!(
        answer.body,
        r#"{"env":{"A":"x\u0000y","N":5},"projectId":"p 1","count":2}"#
    );
    let answer = emu.get("/api/v1/machine/vault/env/odd", Some("rk_t.s"));
    assert_eq!(answer.body, r#"{"env":[1,2],"projectId":"odd","count":0}"#);

    // Two requests on one kept-alive connection.
    let mut stream = TcpStream::connect(&emu.addr).unwrap();
    let one = "GET /api/v1/machine/project HTTP/1.1\r\nHost: x\r\nX-API-Key: rk_t.s\r\n\r\n";
    let two = "GET /api/v1/machine/project HTTP/1.1\r\nHost: x\r\nX-API-Key: rk_t.s\r\n\
               Connection: close\r\n\r\n";
    stream.write_all(one.as_bytes()).unwrap();
    stream.write_all(two.as_bytes()).unwrap();
    let mut raw = String::new();
    stream.read_to_string(&mut raw).unwrap();
    assert_eq!(raw.matches("HTTP/1.1 200 OK").count(), 2, "{raw}");
}

#[test]
fn an_edited_data_file_is_served_from_the_next_request() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("data.json");
    let write = |value: &str, bump: u64| {
        let text = format!(
            r#"{{"keys":[{{"key":"rk_w.secret"}}],"projects":[{{"id":"p","env":{{"A":"{value}"}}}}]}}"#
        );
        std::fs::write(&path, text).unwrap();
        // An mtime of its own, whatever the file system's clock granularity.
        let at = std::time::SystemTime::now() + std::time::Duration::from_secs(bump);
        std::fs::File::options()
            .write(true)
            .open(&path)
            .unwrap()
            .set_modified(at)
            .unwrap();
    };
    write("before", 0);
    let emu = Emulator::start(&["--data", path.to_str().unwrap()]);
    let get = || {
        emu.get("/api/v1/machine/vault/env/p", Some("rk_w.secret"))
            .json()
    };
    assert_eq!(get()["env"]["A"], "before");
    write("after", 10);
    assert_eq!(get()["env"]["A"], "after");
    // Nonsense keeps the last good data served.
    std::fs::write(&path, "{").unwrap();
    std::fs::File::options()
        .write(true)
        .open(&path)
        .unwrap()
        .set_modified(std::time::SystemTime::now() + std::time::Duration::from_secs(20))
        .unwrap();
    assert_eq!(get()["env"]["A"], "after");
}

#[test]
fn bad_data_file_and_remote_listen_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("bad.json");
    std::fs::write(&path, r#"{"keys":[{"key":"no-dot"}]}"#).unwrap();
    let exe = &emulator_bin();
    let out = Command::new(exe)
        .args(["--data", path.to_str().unwrap()])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(out.stdout.is_empty());
    let out = Command::new(exe)
        .args(["--demo", "--listen", "0.0.0.0:0"])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(2));
    assert!(String::from_utf8_lossy(&out.stderr).contains("--allow-remote"));
}

/// One GET over HTTPS (`Connection: close`), the certificate checked against `ca_pem` for `name`.
fn https_get(addr: &str, ca_pem: &str, name: &str, path: &str) -> std::io::Result<Answer> {
    use rustls::pki_types::{pem::PemObject, CertificateDer, ServerName};
    let mut roots = rustls::RootCertStore::empty();
    for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
        roots.add(cert.unwrap()).unwrap();
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .unwrap()
        .with_root_certificates(roots)
        .with_no_client_auth();
    let name = ServerName::try_from(name.to_owned()).unwrap();
    let connection = rustls::ClientConnection::new(config.into(), name).unwrap();
    let mut stream = rustls::StreamOwned::new(connection, TcpStream::connect(addr)?);
    write!(
        stream,
        "GET {path} HTTP/1.1\r\nHost: x\r\nX-API-Key: {DEMO_KEY}\r\nConnection: close\r\n\r\n"
    )?;
    let mut raw = Vec::new();
    stream.read_to_end(&mut raw)?;
    Ok(Answer::parse(&raw))
}

#[test]
fn tls_self_signed_serves_https_and_writes_its_ca() {
    let dir = tempfile::tempdir().unwrap();
    let ca_file = dir.path().join("ca.pem");
    let emu = Emulator::demo(&[
        "--tls-self-signed",
        ca_file.to_str().unwrap(),
        "--tls-name",
        "r4.test",
    ]);
    assert_eq!(emu.scheme, "https");
    assert!(emu.addr.starts_with("127.0.0.1:"), "{}", emu.addr);
    // Written before the listening line.
    let ca = std::fs::read_to_string(&ca_file).unwrap();
    assert!(ca.starts_with("-----BEGIN CERTIFICATE-----\n"), "{ca}");
    for name in ["r4.test", "127.0.0.1", "localhost"] {
        let answer = https_get(&emu.addr, &ca, name, "/api/v1/machine/vault/env/demo").unwrap();
        assert_eq!(answer.status, 200, "{name}: {answer:?}");
        assert_eq!(answer.json()["projectId"], "demo");
    }
    // Plain HTTP to the HTTPS port gets no answer from the API.
    let mut plain = TcpStream::connect(&emu.addr).unwrap();
    plain
        .write_all(b"GET /api/v1/machine/project HTTP/1.1\r\nHost: x\r\n\r\n")
        .unwrap();
    let mut raw = Vec::new();
    let _ = plain.read_to_end(&mut raw);
    assert!(!raw.starts_with(b"HTTP/1.1 200"), "{raw:?}");
}

#[test]
fn tls_cert_and_key_files() {
    // A CA and a server certificate it signed, as a user would bring them.
    use rcgen::{BasicConstraints, CertificateParams, CertifiedIssuer, IsCa, KeyPair};
    let mut ca_params = CertificateParams::default();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().unwrap()).unwrap();
    let key = KeyPair::generate().unwrap();
    let cert = CertificateParams::new(vec!["api.test".to_owned()])
        .unwrap()
        .signed_by(&key, &ca)
        .unwrap();
    let dir = tempfile::tempdir().unwrap();
    let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
    std::fs::write(&cert_file, cert.pem()).unwrap();
    std::fs::write(&key_file, key.serialize_pem()).unwrap();

    let emu = Emulator::demo(&[
        "--tls-cert",
        cert_file.to_str().unwrap(),
        "--tls-key",
        key_file.to_str().unwrap(),
    ]);
    assert_eq!(emu.scheme, "https");
    let answer = https_get(&emu.addr, &ca.pem(), "api.test", "/api/v1/machine/project").unwrap();
    assert_eq!(answer.status, 200, "{answer:?}");
    // The certificate names api.test only: the client refuses it for localhost.
    assert!(https_get(&emu.addr, &ca.pem(), "localhost", "/").is_err());
}

#[test]
fn tls_set_up_errors_exit_2_before_listening() {
    let dir = tempfile::tempdir().unwrap();
    let garbage = dir.path().join("garbage.pem");
    std::fs::write(&garbage, "not PEM").unwrap();
    let garbage = garbage.to_str().unwrap();
    let unwritable = dir.path().join("no/such/dir/ca.pem");
    for (args, needle) in [
        (
            vec!["--tls-cert", garbage, "--tls-key", garbage],
            "no CERTIFICATE block",
        ),
        (
            vec!["--tls-self-signed", unwritable.to_str().unwrap()],
            "cannot write the CA certificate",
        ),
        (vec!["--tls-name", "r4.test"], "--tls-self-signed"),
        (vec!["--tls-cert", garbage], "--tls-key"),
    ] {
        let out = Command::new(emulator_bin())
            .arg("--demo")
            .args(&args)
            .stdin(Stdio::null())
            .output()
            .unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {stderr}");
        assert!(out.stdout.is_empty(), "{args:?}");
        assert!(stderr.contains(needle), "{args:?}: {stderr}");
    }
}

#[test]
fn exits_on_stdin_eof() {
    let mut emu = Emulator::demo(&[]);
    drop(emu.child.stdin.take());
    let status = emu.child.wait().unwrap();
    assert!(status.success());
}

/// The emulator binary under test (see the root package's tests/cli/support/mod.rs `bin` for why
/// the compile-time name may be missing).
fn emulator_bin() -> std::path::PathBuf {
    option_env!("CARGO_BIN_EXE_r4-emulator")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("CARGO_BIN_EXE_r4-emulator").map(Into::into))
        .unwrap_or_else(|| {
            let exe = std::env::current_exe().expect("the test binary's path");
            exe.parent()
                .and_then(std::path::Path::parent)
                .unwrap()
                .join("r4-emulator")
        })
}
