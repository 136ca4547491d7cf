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

use crate::error::{Error, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use rustls::RootCertStore;
use std::ffi::OsString;
use std::fmt;
use std::path::{Path, PathBuf};

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
    pub store: RootCertStore,
    pub source: Source,
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

/// Mozilla's roots compiled in.
pub fn bundled() -> Roots {
    Roots {
        store: RootCertStore {
            roots: webpki_roots::TLS_SERVER_ROOTS.to_vec(),
        },
        source: Source::Bundled,
    }
}

fn from_environment(file: Option<&Path>, dirs: Option<&std::ffi::OsStr>) -> Result<Roots> {
    let mut store = RootCertStore::empty();
    let mut named = Vec::new();
    if let Some(file) = file {
        let certs = read_pem_file(file).map_err(|why| {
            Error::new(format!(
                "SSL_CERT_FILE names {}, which {why}",
                file.display()
            ))
            .hint("point SSL_CERT_FILE at a PEM bundle of the certificate authorities to trust, or unset it\n(it replaces the system's store)")
        })?;
        store.add_parsable_certificates(certs);
        named.push(format!("SSL_CERT_FILE {}", file.display()));
    }
    if let Some(dirs) = dirs {
        for dir in std::env::split_paths(dirs) {
            store.add_parsable_certificates(read_pem_dir(&dir));
            named.push(format!("SSL_CERT_DIR {}", dir.display()));
        }
    }
    if store.is_empty() {
        return Err(Error::new(format!(
            "{} holds no certificate that r4-run can use",
            named.join(" and ")
        ))
        .hint("point SSL_CERT_FILE at a PEM bundle of the certificate authorities to trust, or unset SSL_CERT_FILE and SSL_CERT_DIR\n(they replace the system's store)"));
    }
    Ok(Roots {
        store,
        source: Source::Environment(named.join(" and ")),
    })
}

#[cfg(not(target_os = "macos"))]
fn from_system() -> Option<Roots> {
    for bundle in SYSTEM_BUNDLES {
        let Ok(certs) = read_pem_file(Path::new(bundle)) else {
            continue;
        };
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(certs);
        if !store.is_empty() {
            return Some(Roots {
                store,
                source: Source::System((*bundle).to_owned()),
            });
        }
    }
    for dir in SYSTEM_DIRS {
        let mut store = RootCertStore::empty();
        store.add_parsable_certificates(read_pem_dir(Path::new(dir)));
        if !store.is_empty() {
            return Some(Roots {
                store,
                source: Source::System((*dir).to_owned()),
            });
        }
    }
    None
}

/// macOS keeps its trust settings in the keychain, which only the Security framework reads.
#[cfg(target_os = "macos")]
fn from_system() -> Option<Roots> {
    let found = rustls_native_certs::load_native_certs();
    let mut store = RootCertStore::empty();
    store.add_parsable_certificates(found.certs);
    (!store.is_empty()).then(|| Roots {
        store,
        source: Source::System("the keychain".to_owned()),
    })
}

/// Every certificate in a PEM file, or why there is none.
fn read_pem_file(path: &Path) -> std::result::Result<Vec<CertificateDer<'static>>, String> {
    let bytes = std::fs::read(path).map_err(|e| format!("cannot be read ({e})"))?;
    let certs: Vec<_> = CertificateDer::pem_slice_iter(&bytes)
        .filter_map(|c| c.ok())
        .collect();
    if certs.is_empty() {
        return Err("holds no PEM certificate".to_owned());
    }
    Ok(certs)
}

/// Every certificate in the PEM files of a directory (files that are not PEM are passed over, as
/// OpenSSL does with the other files of a hashed directory).
fn read_pem_dir(dir: &Path) -> Vec<CertificateDer<'static>> {
    let Ok(entries) = std::fs::read_dir(dir) else {
        return Vec::new();
    };
    let mut certs = Vec::new();
    for entry in entries.flatten() {
        if let Ok(found) = read_pem_file(&entry.path()) {
            certs.extend(found);
        }
    }
    certs
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A self-signed CA certificate made for these tests (no key is kept anywhere).
    const CA: &str = "-----BEGIN CERTIFICATE-----
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
        assert_eq!(roots.store.len(), 1);
        assert!(matches!(roots.source, Source::Environment(ref s) if s.contains("ca.pem")));
        // A directory of PEM files, too, with files that are not PEM passed over.
        std::fs::write(dir.path().join("README"), "not a certificate").unwrap();
        let vars = [("SSL_CERT_DIR", dir.path().as_os_str().to_owned())];
        let roots = load(env_of(&vars)).unwrap_or_else(|e| panic!("{e}"));
        assert_eq!(roots.store.len(), 1);
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

    #[test]
    fn the_bundled_roots_are_mozillas() {
        let roots = bundled();
        assert!(roots.store.len() > 100, "{}", roots.store.len());
        assert_eq!(roots.source, Source::Bundled);
    }
}
