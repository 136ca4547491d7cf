//! HTTPS: what the server presents (a certificate chain and its key), read from PEM files or made at
//! start under a CA of the emulator's own; and a blocking TLS stream, for a test that needs an HTTPS
//! server of its own which misbehaves in ways the emulator never does (a redirect, a cut body).
//!
//! rustls with the `ring` provider, as r4-run's reqwest uses it.

use std::fmt;
use std::io::{self, Read, Write};
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use rcgen::{
    BasicConstraints, CertificateParams, CertifiedIssuer, DnType, ExtendedKeyUsagePurpose, IsCa,
    KeyPair, KeyUsagePurpose,
};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer, ServerName};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

/// The names a self-signed server certificate always covers: every way to say loopback.
pub const LOOPBACK_NAMES: [&str; 3] = ["localhost", "127.0.0.1", "::1"];

/// What an HTTPS server presents, ready to serve: a certificate chain and its private key, and, when
/// the emulator made them ([`TlsIdentity::self_signed`]), the certificate of the CA that signed them.
#[derive(Clone)]
pub struct TlsIdentity {
    config: Arc<ServerConfig>,
    chain: Vec<CertificateDer<'static>>,
    ca_pem: Option<String>,
}

impl TlsIdentity {
    /// A new CA (its key lives only in this process) and a server certificate signed by it, for
    /// [`LOOPBACK_NAMES`] and `extra_names` (DNS names or IP addresses). Each call makes a new CA, so
    /// two identities never trust each other's certificates.
    pub fn self_signed(extra_names: &[&str]) -> Result<TlsIdentity, String> {
        let mut names: Vec<String> = LOOPBACK_NAMES.iter().map(|n| n.to_string()).collect();
        for name in extra_names {
            check_name(name)?;
            if !names.iter().any(|known| known == name) {
                names.push(name.to_string());
            }
        }
        let failed = |e: rcgen::Error| format!("cannot make the TLS certificates: {e}");

        let mut ca_params = CertificateParams::default();
        // A name of its own for each CA, as two real CAs have: a client that trusts another
        // emulator's CA then finds no issuer at all, rather than one by the same name whose
        // signature does not match.
        let ca_name = format!(
            "r4-emulator test CA {:016x} (not for real secrets)",
            unique()
        );
        ca_params
            .distinguished_name
            .push(DnType::CommonName, ca_name);
        ca_params.is_ca = IsCa::Ca(BasicConstraints::Constrained(0));
        ca_params.key_usages = vec![KeyUsagePurpose::KeyCertSign, KeyUsagePurpose::CrlSign];
        let ca = CertifiedIssuer::self_signed(ca_params, KeyPair::generate().map_err(failed)?)
            .map_err(failed)?;

        let mut params = CertificateParams::new(names).map_err(failed)?;
        params
            .distinguished_name
            .push(DnType::CommonName, "r4-emulator");
        params.key_usages = vec![KeyUsagePurpose::DigitalSignature];
        params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
        let key = KeyPair::generate().map_err(failed)?;
        let cert = params.signed_by(&key, &ca).map_err(failed)?;

        let key = PrivateKeyDer::Pkcs8(key.serialize_der().into());
        TlsIdentity::new(vec![cert.der().clone()], key, Some(ca.pem()))
    }

    /// A certificate chain (the server's certificate first) and its private key (PKCS#8, PKCS#1 or
    /// SEC1), in PEM.
    pub fn from_pem(chain_pem: &[u8], key_pem: &[u8]) -> Result<TlsIdentity, String> {
        let chain = CertificateDer::pem_slice_iter(chain_pem)
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| format!("bad certificate PEM: {e}"))?;
        if chain.is_empty() {
            return Err("no CERTIFICATE block in the certificate PEM".to_owned());
        }
        let key = PrivateKeyDer::from_pem_slice(key_pem)
            .map_err(|e| format!("bad private key PEM: {e}"))?;
        TlsIdentity::new(chain, key, None)
    }

    /// [`TlsIdentity::from_pem`] from files (`--tls-cert`, `--tls-key`).
    pub fn from_pem_files(chain: &Path, key: &Path) -> Result<TlsIdentity, String> {
        let read = |path: &Path| {
            std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))
        };
        TlsIdentity::from_pem(&read(chain)?, &read(key)?).map_err(|e| {
            format!(
                "{e} (--tls-cert {}, --tls-key {})",
                chain.display(),
                key.display()
            )
        })
    }

    fn new(
        chain: Vec<CertificateDer<'static>>,
        key: PrivateKeyDer<'static>,
        ca_pem: Option<String>,
    ) -> Result<TlsIdentity, String> {
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let mut config = ServerConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .map_err(|e| format!("cannot set up TLS: {e}"))?
            .with_no_client_auth()
            .with_single_cert(chain.clone(), key)
            .map_err(|e| format!("the certificate and key cannot serve: {e}"))?;
        // The server speaks HTTP/1.1 only; saying so lets a client that offers h2 settle at once.
        config.alpn_protocols = vec![b"http/1.1".to_vec()];
        Ok(TlsIdentity {
            config: Arc::new(config),
            chain,
            ca_pem,
        })
    }

    /// The certificate (PEM) of the CA that signed the server's certificate, for a client's trust
    /// store (`SSL_CERT_FILE`); `None` for a certificate read from files.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }

    pub(crate) fn server_config(&self) -> Arc<ServerConfig> {
        Arc::clone(&self.config)
    }

    /// The server's side of a TLS session on an accepted connection, the handshake done: for a
    /// test's own HTTPS server, written in blocking code. Fails as the handshake fails (the client
    /// refused the certificate, closed or reset the connection).
    pub fn accept(&self, tcp: TcpStream) -> io::Result<TlsStream> {
        let connection = ServerConnection::new(self.server_config()).map_err(io::Error::other)?;
        let mut stream = StreamOwned::new(connection, tcp);
        while stream.conn.is_handshaking() {
            stream.conn.complete_io(&mut stream.sock)?;
        }
        Ok(TlsStream(stream))
    }
}

/// A number that differs between calls and between processes (std's per-process random hash keys,
/// advanced at each call), to tell CAs apart; not a secret.
fn unique() -> u64 {
    use std::hash::{BuildHasher, Hasher};
    std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish()
}

/// A name the client will be able to check the certificate against: a DNS name or an IP address.
pub(crate) fn check_name(name: &str) -> Result<(), String> {
    match ServerName::try_from(name) {
        Ok(_) if !name.is_empty() => Ok(()),
        _ => Err(format!(
            "{name:?} is neither a DNS name nor an IP address, so no client could match it"
        )),
    }
}

impl fmt::Debug for TlsIdentity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("TlsIdentity")
            .field("certificates", &self.chain.len())
            .field("own_ca", &self.ca_pem.is_some())
            .finish_non_exhaustive()
    }
}

/// Two identities are the same when they present the same certificates (the key goes with them).
impl PartialEq for TlsIdentity {
    fn eq(&self, other: &TlsIdentity) -> bool {
        self.chain == other.chain && self.ca_pem == other.ca_pem
    }
}

/// A server's TLS session over a blocking TCP stream ([`TlsIdentity::accept`]).
pub struct TlsStream(StreamOwned<ServerConnection, TcpStream>);

impl TlsStream {
    /// Ends the session cleanly: a TLS close_notify, then the end of the TCP stream's sending side.
    /// (Dropping the stream instead ends the TCP connection with no close_notify.)
    pub fn close(mut self) -> io::Result<()> {
        self.0.conn.send_close_notify();
        while self.0.conn.wants_write() {
            self.0.conn.write_tls(&mut self.0.sock)?;
        }
        self.0.sock.shutdown(std::net::Shutdown::Write)
    }

    /// The TCP connection underneath, e.g. to reset it.
    pub fn tcp(&self) -> &TcpStream {
        &self.0.sock
    }
}

impl Read for TlsStream {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        self.0.read(buf)
    }
}

impl Write for TlsStream {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        self.0.write(buf)
    }

    fn flush(&mut self) -> io::Result<()> {
        self.0.flush()
    }
}

/// A blocking TLS client that trusts only a given CA, for the emulator's own tests.
#[cfg(test)]
pub(crate) mod test_client {
    use super::*;
    use rustls::{ClientConfig, ClientConnection, RootCertStore};

    pub type Client = StreamOwned<ClientConnection, TcpStream>;

    /// Connects to `addr` and checks the server's certificate against `ca_pem` for `name`. The
    /// handshake happens on the first read or write.
    pub fn connect(addr: &str, ca_pem: &str, name: &str) -> Client {
        let mut roots = RootCertStore::empty();
        for cert in CertificateDer::pem_slice_iter(ca_pem.as_bytes()) {
            roots.add(cert.unwrap()).unwrap();
        }
        let provider = Arc::new(rustls::crypto::ring::default_provider());
        let config = ClientConfig::builder_with_provider(provider)
            .with_safe_default_protocol_versions()
            .unwrap()
            .with_root_certificates(roots)
            .with_no_client_auth();
        let name = ServerName::try_from(name.to_owned()).unwrap();
        let connection = ClientConnection::new(Arc::new(config), name).unwrap();
        StreamOwned::new(connection, TcpStream::connect(addr).unwrap())
    }

    /// Whether a failed TLS read or write was the client refusing the server's certificate.
    pub fn is_refused_certificate(e: &io::Error) -> bool {
        matches!(
            e.get_ref()
                .and_then(|inner| inner.downcast_ref::<rustls::Error>()),
            Some(rustls::Error::InvalidCertificate(_))
        )
    }
}

#[cfg(test)]
mod tests {
    use super::test_client::{connect, is_refused_certificate};
    use super::*;

    #[test]
    fn self_signed_makes_a_ca_and_a_certificate_it_signed() {
        let identity = TlsIdentity::self_signed(&["r4.test", "localhost"]).unwrap();
        let ca = identity.ca_pem().unwrap();
        assert!(ca.starts_with("-----BEGIN CERTIFICATE-----"), "{ca}");
        assert_eq!(CertificateDer::pem_slice_iter(ca.as_bytes()).count(), 1);
        assert_eq!(identity.chain.len(), 1);
        assert_ne!(identity.chain[0].as_ref(), pem_der(ca).as_slice());
        // A new CA each time.
        let other = TlsIdentity::self_signed(&[]).unwrap();
        assert_ne!(other.ca_pem(), identity.ca_pem());
        assert_ne!(other, identity);
        assert_eq!(identity.clone(), identity);
    }

    fn pem_der(pem: &str) -> Vec<u8> {
        CertificateDer::from_pem_slice(pem.as_bytes())
            .unwrap()
            .to_vec()
    }

    #[test]
    fn names_are_checked() {
        for bad in ["", "two words", "a/b", "http://x"] {
            let error = TlsIdentity::self_signed(&[bad]).unwrap_err();
            assert!(error.contains("neither a DNS name"), "{bad:?}: {error}");
        }
        for good in ["r4.test", "10.0.0.1", "fe80::1", "single"] {
            assert!(check_name(good).is_ok(), "{good}");
        }
    }

    #[test]
    fn pem_of_a_chain_and_key() {
        // A certificate and key written as PEM by rcgen, read back as a user's files would be.
        let key = KeyPair::generate().unwrap();
        let cert = CertificateParams::new(vec!["localhost".to_owned()])
            .unwrap()
            .self_signed(&key)
            .unwrap();
        let dir = tempfile::tempdir().unwrap();
        let (cert_file, key_file) = (dir.path().join("cert.pem"), dir.path().join("key.pem"));
        std::fs::write(&cert_file, cert.pem()).unwrap();
        std::fs::write(&key_file, key.serialize_pem()).unwrap();
        let identity = TlsIdentity::from_pem_files(&cert_file, &key_file).unwrap();
        assert_eq!(identity.ca_pem(), None);
        assert_eq!(identity.chain, vec![cert.der().clone()]);

        // A key that is not the certificate's, a key file with no key, a missing file.
        let stranger = KeyPair::generate().unwrap().serialize_pem();
        let error = TlsIdentity::from_pem(cert.pem().as_bytes(), stranger.as_bytes()).unwrap_err();
        assert!(error.contains("cannot serve"), "{error}");
        let error = TlsIdentity::from_pem(cert.pem().as_bytes(), b"nothing").unwrap_err();
        assert!(error.starts_with("bad private key PEM"), "{error}");
        let error = TlsIdentity::from_pem(b"", key.serialize_pem().as_bytes()).unwrap_err();
        assert!(error.contains("no CERTIFICATE"), "{error}");
        let error = TlsIdentity::from_pem_files(&dir.path().join("none"), &key_file).unwrap_err();
        assert!(error.starts_with("cannot read "), "{error}");
    }

    /// A test's own server: accept, then a clean close (close_notify) or a cut one (none); and a
    /// client that trusts another CA is refused in the handshake.
    #[test]
    fn accept_and_close_for_a_tests_own_server() {
        let identity = TlsIdentity::self_signed(&[]).unwrap();
        let ca = identity.ca_pem().unwrap().to_owned();
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let addr = listener.local_addr().unwrap().to_string();
        let server = std::thread::spawn(move || {
            for clean in [true, false] {
                let (tcp, _) = listener.accept().unwrap();
                let mut tls = identity.accept(tcp).unwrap();
                let mut asked = [0u8; 3];
                tls.read_exact(&mut asked).unwrap();
                assert_eq!(&asked, b"ask");
                assert!(tls.tcp().peer_addr().unwrap().ip().is_loopback());
                tls.write_all(b"answer").unwrap();
                if clean {
                    tls.close().unwrap();
                } else {
                    tls.flush().unwrap();
                }
            }
            let (tcp, _) = listener.accept().unwrap();
            identity.accept(tcp).err().expect("the client refuses")
        });

        let mut client = connect(&addr, &ca, "localhost");
        client.write_all(b"ask").unwrap();
        let mut answer = Vec::new();
        client.read_to_end(&mut answer).unwrap();
        assert_eq!(answer, b"answer");

        let mut client = connect(&addr, &ca, "127.0.0.1");
        client.write_all(b"ask").unwrap();
        let mut answer = [0u8; 6];
        client.read_exact(&mut answer).unwrap();
        let cut = client.read(&mut [0u8; 1]).unwrap_err();
        assert_eq!(cut.kind(), io::ErrorKind::UnexpectedEof, "{cut}");

        let stranger = TlsIdentity::self_signed(&[]).unwrap();
        let mut client = connect(&addr, stranger.ca_pem().unwrap(), "localhost");
        let refused = client
            .write_all(b"ask")
            .and_then(|()| client.flush())
            .unwrap_err();
        assert!(is_refused_certificate(&refused), "{refused:?}");
        let server_side = server.join().unwrap();
        assert!(!server_side.to_string().is_empty());
    }
}
