//! HTTPS for the tests: the emulator under a CA of its own, its CA in a file for `SSL_CERT_FILE`,
//! and small servers of the tests' own that misbehave where the emulator never does (a redirect,
//! a reset in the handshake, a body cut short).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::Duration;

pub use r4_emulator::TlsIdentity;

/// The emulator serving HTTPS from the test's own process.
pub struct HttpsEmulator {
    /// `https://127.0.0.1:PORT`
    pub url: String,
    pub port: u16,
    /// The CA that signed its certificate, for `SSL_CERT_FILE`.
    pub ca_pem: String,
    // Stops the server when dropped.
    _server: r4_emulator::Emulator,
}

impl HttpsEmulator {
    /// One key (`support::KEY`) that sees one project (`support::PROJECT`) holding `vars`, served
    /// under `identity` (its certificate names the loopback names and whatever else it was made for).
    pub fn with_project(vars: &[(&str, &str)], identity: &TlsIdentity) -> Self {
        let env: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        let data = serde_json::json!({
            "keys": [{"key": super::KEY, "projects": [super::PROJECT]}],
            "projects": [{"id": super::PROJECT, "env": env}]
        });
        let options = r4_emulator::Options {
            tls: Some(identity.clone()),
            ..r4_emulator::Options::from_flags(&["--rate-limit", "off"]).unwrap()
        };
        let server = r4_emulator::Emulator::start(&serde_json::to_vec(&data).unwrap(), options)
            .expect("the emulator starts");
        HttpsEmulator {
            url: server.url().to_owned(),
            port: server.addr().port(),
            ca_pem: identity
                .ca_pem()
                .expect("a self-signed identity")
                .to_owned(),
            _server: server,
        }
    }
}

/// A CA of its own and a certificate for the loopback names and `extra_names`.
pub fn identity(extra_names: &[&str]) -> TlsIdentity {
    TlsIdentity::self_signed(extra_names).expect("certificates are made")
}

/// A CA of the test's own, and the certificates it signs, made to order (the emulator's identities
/// always name loopback and are never expired).
pub struct TestCa {
    issuer: rcgen::CertifiedIssuer<'static, rcgen::KeyPair>,
    /// Its certificate, for a trust store.
    pub pem: String,
}

impl TestCa {
    /// A root CA with a name no other has.
    pub fn root() -> TestCa {
        let issuer = rcgen::CertifiedIssuer::self_signed(ca_params("root"), key()).unwrap();
        TestCa {
            pem: issuer.pem(),
            issuer,
        }
    }

    /// A CA that this one signs.
    pub fn intermediate(&self) -> TestCa {
        let issuer =
            rcgen::CertifiedIssuer::signed_by(ca_params("intermediate"), key(), &self.issuer)
                .unwrap();
        TestCa {
            pem: issuer.pem(),
            issuer,
        }
    }

    /// What a server presents: a certificate for `names` that this CA signs, followed by
    /// `chain` (the intermediates it sends), valid now or long expired.
    pub fn server(&self, names: &[&str], chain: &[&TestCa], expired: bool) -> TlsIdentity {
        let names: Vec<String> = names.iter().map(|n| n.to_string()).collect();
        let mut params = rcgen::CertificateParams::new(names).unwrap();
        params
            .distinguished_name
            .push(rcgen::DnType::CommonName, "r4-run test server");
        params.key_usages = vec![rcgen::KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![rcgen::ExtendedKeyUsagePurpose::ServerAuth];
        if expired {
            params.not_before = rcgen::date_time_ymd(2001, 1, 1);
            params.not_after = rcgen::date_time_ymd(2002, 1, 1);
        }
        let key = key();
        let mut pem = params.signed_by(&key, &self.issuer).unwrap().pem();
        for ca in chain {
            pem.push_str(&ca.pem);
        }
        TlsIdentity::from_pem(pem.as_bytes(), key.serialize_pem().as_bytes()).unwrap()
    }
}

fn key() -> rcgen::KeyPair {
    rcgen::KeyPair::generate().unwrap()
}

fn ca_params(kind: &str) -> rcgen::CertificateParams {
    static MADE: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let n = MADE.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    let mut params = rcgen::CertificateParams::default();
    params.distinguished_name.push(
        rcgen::DnType::CommonName,
        format!("r4-run test {kind} CA {} {n}", std::process::id()),
    );
    params.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
    params.key_usages = vec![
        rcgen::KeyUsagePurpose::KeyCertSign,
        rcgen::KeyUsagePurpose::CrlSign,
    ];
    params
}

/// A trust store of a real system's size with `pem` in it: the system's bundle when this machine
/// has one (else 40 CAs of our own), then `pem`.
pub fn system_sized_bundle(pem: &str) -> String {
    let mut bundle = std::fs::read_to_string("/etc/ssl/certs/ca-certificates.crt")
        .unwrap_or_else(|_| (0..40).map(|_| TestCa::root().pem).collect());
    bundle.push_str(pem);
    bundle
}

/// A server that answers every request with the variables `vars`.
pub fn serving(identity: &TlsIdentity, vars: &[(&str, &str)]) -> TlsServer {
    let body = super::env_answer(vars).to_string();
    TlsServer::start(identity, move |_| {
        Answer::Send(http_answer(
            "200 OK",
            &[("Content-Type", "application/json")],
            body.as_bytes(),
        ))
    })
}

/// Writes `pem` to `dir/name` and returns the path (for `SSL_CERT_FILE`).
pub fn pem_file(dir: &Path, name: &str, pem: &str) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, pem).unwrap();
    path
}

/// What a [`TlsServer`] does with a request, once it has read its head.
pub enum Answer {
    /// Send these bytes, then end the session cleanly (close_notify).
    Send(Vec<u8>),
    /// Send these bytes, then drop the connection with no close_notify.
    SendAndCut(Vec<u8>),
}

/// A blocking HTTPS server on 127.0.0.1: one connection at a time, one request per connection, the
/// answer chosen from the request's head. Runs until the test process ends.
pub struct TlsServer {
    pub addr: SocketAddr,
    /// The head of each request received, in order.
    heads: Arc<Mutex<Vec<String>>>,
}

impl TlsServer {
    pub fn start(
        identity: &TlsIdentity,
        answer: impl Fn(&str) -> Answer + Send + 'static,
    ) -> TlsServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap();
        let heads = Arc::new(Mutex::new(Vec::new()));
        let seen = Arc::clone(&heads);
        let identity = identity.clone();
        std::thread::spawn(move || {
            for tcp in listener.incoming() {
                let Ok(tcp) = tcp else { continue };
                // A client that hangs mid-request must not stall the server for ever.
                let _ = tcp.set_read_timeout(Some(super::DEADLINE));
                // A client that refuses the certificate ends here.
                let Ok(mut tls) = identity.accept(tcp) else {
                    continue;
                };
                let head = read_head(&mut tls);
                let reply = answer(&head);
                seen.lock().unwrap().push(head);
                match reply {
                    Answer::Send(bytes) => {
                        let _ = tls.write_all(&bytes).and_then(|()| tls.flush());
                        let _ = tls.close();
                    }
                    Answer::SendAndCut(bytes) => {
                        let _ = tls.write_all(&bytes).and_then(|()| tls.flush());
                    }
                }
            }
        });
        TlsServer { addr, heads }
    }

    /// `https://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("https://{}", self.addr)
    }

    pub fn heads(&self) -> Vec<String> {
        self.heads.lock().unwrap().clone()
    }
}

fn read_head(from: &mut impl Read) -> String {
    let mut head = Vec::new();
    let mut byte = [0u8; 1];
    while !head.ends_with(b"\r\n\r\n") {
        match from.read(&mut byte) {
            Ok(1) => head.push(byte[0]),
            _ => break,
        }
    }
    String::from_utf8_lossy(&head).into_owned()
}

/// An HTTP/1.1 answer with `Connection: close` (so each request comes on a new connection).
pub fn http_answer(status: &str, headers: &[(&str, &str)], body: &[u8]) -> Vec<u8> {
    let mut head = format!("HTTP/1.1 {status}\r\nConnection: close\r\n");
    for (name, value) in headers {
        head.push_str(&format!("{name}: {value}\r\n"));
    }
    head.push_str("\r\n");
    let mut bytes = head.into_bytes();
    bytes.extend_from_slice(body);
    bytes
}

/// A TCP server on 127.0.0.1 that, on each connection, reads the client's first TLS record (the
/// ClientHello) and then resets the connection. Returns its address and a count of the
/// ClientHellos it cut off.
pub fn resets_in_the_handshake() -> (SocketAddr, Arc<Mutex<usize>>) {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    let hellos = Arc::new(Mutex::new(0));
    let counted = Arc::clone(&hellos);
    std::thread::spawn(move || {
        for tcp in listener.incoming() {
            let Ok(mut tcp) = tcp else { continue };
            let _ = tcp.set_read_timeout(Some(Duration::from_secs(10)));
            if read_tls_record(&mut tcp).is_some_and(|kind| kind == HANDSHAKE) {
                *counted.lock().unwrap() += 1;
            }
            reset(tcp);
        }
    });
    (addr, hellos)
}

/// The content type of a TLS handshake record.
const HANDSHAKE: u8 = 22;

/// Reads one whole TLS record (5-byte header, then its length); returns its content type.
fn read_tls_record(tcp: &mut TcpStream) -> Option<u8> {
    let mut header = [0u8; 5];
    tcp.read_exact(&mut header).ok()?;
    let length = u16::from_be_bytes([header[3], header[4]]);
    let mut body = vec![0u8; usize::from(length)];
    tcp.read_exact(&mut body).ok()?;
    Some(header[0])
}

/// Closes `tcp` with a reset (RST) rather than an orderly end (FIN).
fn reset(tcp: TcpStream) {
    use std::os::fd::AsRawFd;
    let linger = libc::linger {
        l_onoff: 1,
        l_linger: 0,
    };
    // SAFETY: the fd is open (owned by `tcp`, alive for the call); `linger` is a valid
    // `struct linger` and its exact size is passed.
    let rc = unsafe {
        libc::setsockopt(
            tcp.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_LINGER,
            std::ptr::addr_of!(linger).cast(),
            std::mem::size_of::<libc::linger>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    drop(tcp); // SO_LINGER 0: close sends RST
}
