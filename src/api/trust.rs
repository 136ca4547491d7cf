//! Which certificate authorities r4-run trusts for https, and where they came from (docs/network.md).
//!
//! In order, the first that gives any certificate:
//! 1. `SSL_CERT_FILE` and/or `SSL_CERT_DIR`, when set: they replace the system's store, as for OpenSSL
//!    and curl. Set but unusable (unreadable, no certificate in it) is an error, not an empty store.
//! 2. The system's store: its bundle file, read once (the hashed directory beside it holds the same
//!    certificates, one file each, and reading hundreds of small files costs milliseconds at every start);
//!    the directory only where there is no bundle; the keychain on macOS.
//! 3. Mozilla's roots compiled into r4-run (`webpki-roots`), for images with no store at all
//!    (`FROM scratch`, distroless), so r4-run reaches r4.dev there with no set-up.
//!
//! A PEM store is checked before any request only as far as an error needs (it holds a usable
//! certificate); the rest is read while connecting, and only the certificates that can have issued
//! the server's chain are decoded in full (`pem_store.rs`).

mod names;
mod pem;
mod pem_file;
mod pem_store;

use crate::error::{Error, Result};
use pem_file::PemFile;
use pem_store::{PemStore, Unusable};
use rustls::client::danger::ServerCertVerifier;
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::RootCertStore;
use std::ffi::OsString;
use std::fmt;
use std::future::Future;
use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

/// Where the trusted certificates came from, for `-v` and messages.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Source {
    /// `SSL_CERT_FILE` / `SSL_CERT_DIR`: what they named.
    Environment(String),
    /// The system's store, at this place.
    System(String),
    /// Mozilla's roots built into r4-run.
    Bundled,
}

impl fmt::Display for Source {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment(what) => write!(f, "{what}"),
            Self::System(place) => write!(f, "the system's store ({place})"),
            Self::Bundled => f.write_str(
                "Mozilla's roots built into r4-run (this system has no certificate store)",
            ),
        }
    }
}

/// The trusted certificates.
pub struct Roots {
    pub store: Store,
    pub source: Source,
}

/// The trusted certificates, ready or still to be made ready.
pub enum Store {
    /// Trust anchors ready to use (Mozilla's, the keychain's).
    Anchors(RootCertStore),
    /// PEM files, read and known to hold a trust anchor; the rest of the work is done while
    /// connecting (`pem_store.rs`).
    Pem(Arc<PemStore>),
}

/// Work the fetch's runtime runs while the connection is set up: the rest of the store's loading.
pub type Loading = Pin<Box<dyn Future<Output = ()> + Send>>;

impl Roots {
    /// rustls' certificate check over these roots with `provider`'s algorithms and, when some of
    /// the loading is left, the work that finishes it (to spawn on the fetch's runtime before the
    /// request starts; the check finishes it itself if the server's certificate comes first).
    pub fn verifier(
        self,
        provider: &Arc<CryptoProvider>,
    ) -> Result<(Arc<dyn ServerCertVerifier>, Option<Loading>)> {
        match self.store {
            Store::Anchors(store) => {
                let verifier = WebPkiServerVerifier::builder_with_provider(
                    Arc::new(store),
                    Arc::clone(provider),
                )
                .build()
                .map_err(|e| Error::new(format!("cannot set up TLS: {e}")))?;
                Ok((verifier, None))
            }
            Store::Pem(store) => {
                let verifier = pem_store::Verifier::new(Arc::clone(&store), Arc::clone(provider));
                Ok((
                    Arc::new(verifier),
                    Some(Box::pin(pem_store::finish_loading(store))),
                ))
            }
        }
    }
}

/// Bundle files of the systems r4-run runs on, most common first: Debian, Ubuntu, Alpine, Arch,
/// Gentoo; Fedora, RHEL; openSUSE; FreeBSD; the BSDs and others.
#[cfg(not(target_os = "macos"))]
const SYSTEM_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/ca-trust/extracted/pem/tls-ca-bundle.pem",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/ca-bundle.pem",
    "/usr/local/share/certs/ca-root-nss.crt",
    "/etc/ssl/cert.pem",
];

/// Directories of one-certificate files, where a system has no bundle.
#[cfg(not(target_os = "macos"))]
const SYSTEM_DIRS: &[&str] = &[
    "/etc/ssl/certs",
    "/etc/pki/tls/certs",
    "/system/etc/security/cacerts",
];

/// The certificates to trust, looked up in `env` (r4-run's environment) and the file system.
pub fn load(env: impl Fn(&str) -> Option<OsString>) -> Result<Roots> {
    let named = |var: &str| env(var).filter(|v| !v.is_empty());
    let file = named("SSL_CERT_FILE").map(PathBuf::from);
    let dirs = named("SSL_CERT_DIR");
    if file.is_some() || dirs.is_some() {
        return from_environment(file.as_deref(), dirs.as_deref());
    }
    if let Some(roots) = from_system() {
        return Ok(roots);
    }
    Ok(bundled())
}

/// Mozilla's roots compiled in: trust anchors already, nothing to decode.
pub fn bundled() -> Roots {
    Roots {
        store: Store::Anchors(RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        }),
        source: Source::Bundled,
    }
}

fn from_environment(file: Option<&Path>, dirs: Option<&std::ffi::OsStr>) -> Result<Roots> {
    let file_unusable = |file: &Path, why: String| {
        Error::new(format!(
            "SSL_CERT_FILE names {}, which {why}",
            file.display()
        ))
        .hint("point SSL_CERT_FILE at a PEM bundle of the certificate authorities to trust, or unset it\n(it replaces the system's store)")
    };
    let mut files = Vec::new();
    let mut named = Vec::new();
    if let Some(file) = file {
        files.push(
            PemFile::open(file)
                .map_err(|e| file_unusable(file, format!("cannot be read ({e})")))?,
        );
        named.push(format!("SSL_CERT_FILE {}", file.display()));
    }
    if let Some(dirs) = dirs {
        for dir in std::env::split_paths(dirs) {
            files.extend(read_pem_dir(&dir));
            named.push(format!("SSL_CERT_DIR {}", dir.display()));
        }
    }
    let source = Source::Environment(named.join(" and "));
    let store = PemStore::new(files, file.is_some(), source.to_string()).map_err(|e| match (e, file) {
        (Unusable::NoCertificateInFirstFile, Some(file)) => {
            file_unusable(file, "holds no PEM certificate".to_owned())
        }
        _ => Error::new(format!(
            "{} holds no certificate that r4-run can use",
            named.join(" and ")
        ))
        .hint("point SSL_CERT_FILE at a PEM bundle of the certificate authorities to trust, or unset SSL_CERT_FILE and SSL_CERT_DIR\n(they replace the system's store)"),
    })?;
    Ok(Roots {
        store: Store::Pem(Arc::new(store)),
        source,
    })
}

/// The first of the system's bundles, else of its directories, that holds a trust anchor.
#[cfg(not(target_os = "macos"))]
fn from_system() -> Option<Roots> {
    let bundles = SYSTEM_BUNDLES
        .iter()
        .filter_map(|bundle| Some((*bundle, vec![PemFile::open(Path::new(bundle)).ok()?])));
    let dirs = SYSTEM_DIRS
        .iter()
        .map(|dir| (*dir, read_pem_dir(Path::new(dir))));
    bundles.chain(dirs).find_map(|(place, files)| {
        let source = Source::System(place.to_owned());
        let store = PemStore::new(files, false, source.to_string()).ok()?;
        Some(Roots {
            store: Store::Pem(Arc::new(store)),
            source,
        })
    })
}

/// macOS keeps its trust settings in the keychain, which only the Security framework reads.
#[cfg(target_os = "macos")]
fn from_system() -> Option<Roots> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    (!store.is_empty()).then(|| Roots {
        store: Store::Anchors(store),
        source: Source::System("the keychain".to_owned()),
    })
}

/// The text of each file of a directory that may hold PEM (others are passed over, as OpenSSL does
/// with the other files of a hashed directory).
fn read_pem_dir(dir: &Path) -> Vec<PemFile> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    entries
        .flatten()
        .filter_map(|entry| std::fs::read(entry.path()).ok())
        .filter(|text| memchr::memmem::find(text, b"-----BEGIN ").is_some())
        .map(PemFile::whole)
        .collect()
}

/// A self-signed CA certificate made for the unit tests here and in `pem` (no key is kept anywhere).
#[cfg(test)]
const TEST_CA: &str = "-----BEGIN CERTIFICATE-----
MIIBhzCCAS2gAwIBAgIUbEHfq+S61wLMVIO+I6AOL3fzrGQwCgYIKoZIzj0EAwIw
GTEXMBUGA1UEAwwOcjQtcnVuIHRlc3QgQ0EwHhcNMjYxMjAxMjMwNTUzWhcNMzYx
MTI4MjMwNTUzWjAZMRcwFQYDVQQDDA5yNC1ydW4gdGVzdCBDQTBZMBMGByqGSM49
AgEGCCqGSM49AwEHA0IABBjWeeHIMYLbS4QxdKcqX2mbGIIvFaVAlH7Ly6RgTJ0j
gbY/J/ofOkP08DGCUDdMoA53YY36B7dcz71tHU+sCyWjUzBRMB0GA1UdDgQWBBQo
5L2jP64O16T+Str4YQbj09JtrjAfBgNVHSMEGDAWgBQo5L2jP64O16T+Str4YQbj
09JtrjAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIDITinyLB3d+
55q/j4g6E+l0s1VS9r8qY4Sp00+fIKZgAiEA2QISmjqL6H/kQQO0pCEwno5OpuMI
x0+QNiKTfQRPgXA=
-----END CERTIFICATE-----
";

#[cfg(test)]
mod tests {
    use super::*;

    use super::TEST_CA as CA;

    fn count(roots: &Roots) -> usize {
        match &roots.store {
            Store::Anchors(store) => store.len(),
            Store::Pem(store) => store.count(),
        }
    }

    fn env_of<'a>(vars: &'a [(&'static str, OsString)]) -> impl Fn(&str) -> Option<OsString> + 'a {
        move |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| v.clone())
        }
    }

    #[test]
    fn ssl_cert_file_replaces_the_system_store() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("ca.pem");
        std::fs::write(&file, CA).unwrap();
        let vars = [("SSL_CERT_FILE", file.clone().into_os_string())];
        let roots = load(env_of(&vars)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count(&roots), 1);
        assert!(matches!(roots.source, Source::Environment(ref s) if s.contains("ca.pem")));
        // A directory of PEM files, too, with files that are not PEM passed over.
        std::fs::write(dir.path().join("README"), "not a certificate").unwrap();
        let vars = [("SSL_CERT_DIR", dir.path().as_os_str().to_owned())];
        let roots = load(env_of(&vars)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count(&roots), 1);
    }

    #[test]
    fn an_unusable_ssl_cert_file_is_an_error_not_an_empty_store() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("nope.pem");
        let vars = [("SSL_CERT_FILE", missing.into_os_string())];
        let e = load(env_of(&vars)).err().expect("an error");
        assert!(
            e.what().contains("SSL_CERT_FILE names") && e.what().contains("cannot be read"),
            "{e}"
        );
        let junk = dir.path().join("junk.pem");
        std::fs::write(&junk, "not a certificate").unwrap();
        let vars = [("SSL_CERT_FILE", junk.into_os_string())];
        let e = load(env_of(&vars)).err().expect("an error");
        assert!(e.what().contains("holds no PEM certificate"), "{e}");
        let vars = [("SSL_CERT_DIR", dir.path().as_os_str().to_owned())];
        let e = load(env_of(&vars)).err().expect("an error");
        assert!(e.what().contains("SSL_CERT_DIR"), "{e}");
    }

    /// What makes a store usable is decided as when every certificate was decoded up front.
    #[test]
    fn a_store_is_usable_as_before_whatever_comes_first_in_it() {
        let dir = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| {
            let path = dir.path().join(name);
            std::fs::write(&path, text).unwrap();
            path.into_os_string()
        };
        // Base64 that decodes, but to no certificate.
        let not_a_certificate =
            "-----BEGIN CERTIFICATE-----\nTm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n";
        // Past the first read (16 KiB), after text that is not PEM and a certificate that is not
        // one: the CA is found, and it is the only one.
        let padding = "# not PEM\n".repeat(3000);
        let late = write("late.pem", &format!("{padding}{not_a_certificate}{CA}"));
        let vars = [("SSL_CERT_FILE", late)];
        let roots = load(env_of(&vars)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count(&roots), 1);

        // Only certificates that are not: nothing r4-run can use.
        let useless = write("useless.pem", not_a_certificate);
        let vars = [("SSL_CERT_FILE", useless.clone())];
        let e = load(env_of(&vars)).err().expect("an error");
        assert!(
            e.what()
                .contains("holds no certificate that r4-run can use"),
            "{e}"
        );

        // SSL_CERT_FILE with no certificate at all is refused even beside a usable SSL_CERT_DIR;
        // one with certificates r4-run cannot use is not.
        let certs = tempfile::tempdir().unwrap();
        std::fs::write(certs.path().join("ca.pem"), CA).unwrap();
        let junk = write("junk.pem", "not a certificate\n");
        let vars = [
            ("SSL_CERT_FILE", junk),
            ("SSL_CERT_DIR", certs.path().as_os_str().to_owned()),
        ];
        let e = load(env_of(&vars)).err().expect("an error");
        assert!(e.what().contains("holds no PEM certificate"), "{e}");
        let vars = [
            ("SSL_CERT_FILE", useless),
            ("SSL_CERT_DIR", certs.path().as_os_str().to_owned()),
        ];
        let roots = load(env_of(&vars)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(count(&roots), 1);
    }

    #[test]
    fn the_bundled_roots_are_mozillas() {
        let roots = bundled();
        assert!(count(&roots) > 100, "{}", count(&roots));
        assert_eq!(roots.source, Source::Bundled);
    }
}
