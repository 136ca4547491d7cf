//! Trusted certificates from PEM files, made ready while the connection is being set up, and the
//! certificate verifier that uses them.
//!
//! Decoding a system-sized bundle (~150 certificates) and turning each into a trust anchor costs
//! about a millisecond at every start, and all but one or two of them are never used. So:
//!
//! - before any request, only what an error needs: the files are read, and sections are decoded in
//!   order until one makes a trust anchor (usually the first), so a file that trusts nothing is
//!   still refused up front;
//! - while the TCP connection and the first TLS flight are under way, [`finish_loading`] (a task on
//!   the fetch's own runtime, never a thread: as PID 1 every thread would take a PID) finds the
//!   other sections and decodes only the first few hundred bytes of each, up to its subject name;
//! - when the server's certificates arrive, the verifier finishes whatever is left right there, then
//!   decodes in full only the certificates whose subject is the issuer of a certificate the server
//!   sent, and hands the check to rustls' own `WebPkiServerVerifier` built from them.
//!
//! Why that decides exactly as the whole store would: webpki builds a chain only through a trust
//! anchor whose subject equals, byte for byte, the issuer of the certificate at the head of the path
//! (the server's certificate, or one of the intermediates it sent); any other anchor is passed over
//! at once with `UnknownIssuer`, the least specific error, which never replaces another and counts
//! against no budget. The certificates kept are in file order, and one whose names cannot be read
//! here is always kept, as is the first trust anchor (so the store is never empty). Name checks,
//! expiry, key usage and chain building are all rustls' and webpki's, unchanged.

use super::names::{self, Unreadable};
use super::pem::{self, Scanner};
use super::pem_file::PemFile;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::WebPkiServerVerifier;
use rustls::crypto::CryptoProvider;
use rustls::pki_types::{CertificateDer, ServerName, TrustAnchor, UnixTime};
use rustls::{DigitallySignedStruct, RootCertStore, SignatureScheme};
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};

/// Bytes of a certificate decoded first to find its subject, then more at a time until it is found:
/// in Debian's bundle the subjects end 148 to 489 bytes in, 257 at the median.
const NAMES_FIRST: usize = 320;
const NAMES_MORE: usize = 192;

/// Sections looked at between two returns to the runtime, so the connection is never kept waiting
/// for more than some tens of microseconds.
const BATCH: usize = 12;

/// The trusted certificates of one or more PEM files.
pub struct PemStore {
    loading: Mutex<Loading>,
    /// What `-v` calls them.
    shown_as: String,
}

struct Loading {
    files: Vec<PemFile>,
    /// The file being scanned, and where in it.
    file: usize,
    scanner: Scanner,
    sections: Vec<Found>,
    /// The subject names of `sections`, end to end.
    subjects: Vec<u8>,
    /// The start of a certificate, decoded to find its names (kept from one to the next).
    names_buffer: Vec<u8>,
    /// The first section that makes a trust anchor, and that anchor (found by `PemStore::new`).
    first: Option<(usize, TrustAnchor<'static>)>,
    /// Every section found.
    done: bool,
    /// The verifier built for the last choice of sections, for the next connection.
    last: Option<(Vec<usize>, Arc<WebPkiServerVerifier>)>,
}

/// A CERTIFICATE section.
struct Found {
    file: usize,
    /// Where in its file rustls' PEM reader decodes it from (`pem::Section::text`).
    text: Range<usize>,
    /// Its subject name in `Loading::subjects`; `None` when it could not be read here (the section
    /// is then always kept).
    subject: Option<Range<usize>>,
}

/// Why the files make no store.
#[derive(Debug, PartialEq, Eq)]
pub enum Unusable {
    /// The first file holds no certificate at all (when it was required to).
    NoCertificateInFirstFile,
    /// No certificate of any file can be a trust anchor.
    NoTrustAnchor,
}

impl PemStore {
    /// The store of `files`, or why there is none. Finds and decodes sections in order until one
    /// makes a trust anchor, the rest being left for [`finish_loading`] and the verifier. With
    /// `first_must_hold_certificate`, a first file in which no certificate decodes is refused even
    /// when another file holds some (`SSL_CERT_FILE` beside `SSL_CERT_DIR`).
    pub fn new(
        files: Vec<PemFile>,
        first_must_hold_certificate: bool,
        shown_as: String,
    ) -> Result<Self, Unusable> {
        let mut first_holds_certificate = false;
        let mut loading = Loading {
            files,
            file: 0,
            scanner: Scanner::default(),
            sections: Vec::new(),
            subjects: Vec::new(),
            names_buffer: Vec::new(),
            first: None,
            done: false,
            last: None,
        };
        loop {
            let found = loading.find_next();
            let past_first_file = found.is_none_or(|i| loading.sections[i].file > 0);
            if first_must_hold_certificate && past_first_file && !first_holds_certificate {
                return Err(Unusable::NoCertificateInFirstFile);
            }
            let Some(index) = found else {
                return Err(Unusable::NoTrustAnchor);
            };
            let Some(der) = loading.decode(index) else {
                continue;
            };
            first_holds_certificate |= loading.sections[index].file == 0;
            if let Some(anchor) = anchor_of(der) {
                loading.first = Some((index, anchor));
                break;
            }
        }
        // From here on the work is done while connecting (pem.rs says why not before).
        loading.scanner.vectorized = true;
        Ok(PemStore {
            loading: Mutex::new(loading),
            shown_as,
        })
    }

    fn lock(&self) -> MutexGuard<'_, Loading> {
        self.loading
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Finds up to `sections` more sections; `true` once every one is found.
    fn step(&self, sections: usize) -> bool {
        let mut loading = self.lock();
        for _ in 0..sections {
            if loading.find_next().is_none() {
                self.finished(&mut loading);
                return true;
            }
        }
        loading.done
    }

    /// Everything is found: says so at `-v`, with the count of certificates the whole store would
    /// have held (decoding every one, which only `-v` pays for).
    fn finished(&self, loading: &mut Loading) {
        if loading.done {
            return;
        }
        loading.done = true;
        if crate::report::verbosity() >= 1 {
            let count = (0..loading.sections.len())
                .filter(|&i| loading.anchor(i).is_some())
                .count();
            crate::verbose!(1, "{count} certificate authorities in {}", self.shown_as);
        }
    }

    /// How many certificates would be trust anchors (all decoded: for tests and `-v`).
    #[cfg(test)]
    pub fn count(&self) -> usize {
        while !self.step(usize::MAX) {}
        let loading = self.lock();
        (0..loading.sections.len())
            .filter(|&i| loading.anchor(i).is_some())
            .count()
    }

    /// rustls' verifier over the certificates that can have issued one of `presented`.
    fn verifier_for(
        &self,
        presented: &[&[u8]],
        provider: &Arc<CryptoProvider>,
    ) -> Result<Arc<WebPkiServerVerifier>, rustls::Error> {
        while !self.step(usize::MAX) {}
        let mut loading = self.lock();
        let chosen = loading.choose(presented);
        if let Some((last, verifier)) = &loading.last {
            if *last == chosen {
                return Ok(Arc::clone(verifier));
            }
        }
        let mut store = RootCertStore::empty();
        for &i in &chosen {
            if let Some(anchor) = loading.anchor(i) {
                store.roots.push(anchor);
            }
        }
        crate::verbose!(
            2,
            "checking the server's certificate against {} of the {} certificates of {} (the others did not issue any certificate it sent)",
            store.roots.len(),
            loading.sections.len(),
            self.shown_as
        );
        let verifier =
            WebPkiServerVerifier::builder_with_provider(Arc::new(store), Arc::clone(provider))
                .build()
                .map_err(|e| {
                    rustls::Error::General(format!("cannot set up the certificate check: {e}"))
                })?;
        loading.last = Some((chosen, Arc::clone(&verifier)));
        Ok(verifier)
    }
}

impl Loading {
    /// Finds the next section and reads its subject; its index, or `None` when all are found.
    fn find_next(&mut self) -> Option<usize> {
        let section = loop {
            let file = self.files.get_mut(self.file)?;
            match self.scanner.next(file.text(), file.complete()) {
                Some(section) => break section,
                None if !file.complete() => {
                    let moved = file.read_more(self.scanner.needs_from());
                    self.scanner.moved(moved);
                }
                None => {
                    self.file += 1;
                    self.scanner.start_again();
                }
            }
        };
        let file = &self.files[self.file];
        let text = file.text();
        let offset = file.offset();
        let start = self.subjects.len();
        let subject = section.body.and_then(|body| {
            let found = subject_of(&text[body], &mut self.names_buffer)?;
            self.subjects.extend_from_slice(&self.names_buffer[found]);
            Some(start..self.subjects.len())
        });
        self.sections.push(Found {
            file: self.file,
            text: section.text.start + offset..section.text.end + offset,
            subject,
        });
        Some(self.sections.len() - 1)
    }

    /// The trust anchor section `index` makes.
    fn anchor(&self, index: usize) -> Option<TrustAnchor<'static>> {
        if let Some((first, anchor)) = &self.first {
            if *first == index {
                return Some(anchor.clone());
            }
        }
        anchor_of(self.decode(index)?)
    }

    /// The certificate of section `index`, decoded in full as rustls' PEM reader decodes it.
    fn decode(&self, index: usize) -> Option<CertificateDer<'static>> {
        let found = &self.sections[index];
        let text = self.files[found.file].bytes_at(found.text.clone())?;
        pem::decode(&text, 0..text.len())
    }

    /// The sections to trust for a server that sent `presented`: those whose subject is the issuer
    /// of one of them, those whose subject could not be read here, and the first trust anchor; all
    /// of them when a presented certificate cannot be read here.
    fn choose(&self, presented: &[&[u8]]) -> Vec<usize> {
        let mut issuers = Vec::with_capacity(presented.len());
        for der in presented {
            match names::names(der) {
                Ok(found) => issuers.push(&der[found.issuer]),
                Err(_) => return (0..self.sections.len()).collect(),
            }
        }
        (0..self.sections.len())
            .filter(|&i| {
                self.first.as_ref().is_some_and(|(first, _)| *first == i)
                    || self.sections[i]
                        .subject
                        .as_ref()
                        .is_none_or(|subject| issuers.contains(&&self.subjects[subject.clone()]))
            })
            .collect()
    }
}

/// The trust anchor a certificate makes, as `RootCertStore::add_parsable_certificates` makes it.
fn anchor_of(der: CertificateDer<'_>) -> Option<TrustAnchor<'static>> {
    let mut store = RootCertStore::empty();
    store.add(der).ok()?;
    store.roots.pop()
}

/// Where the subject name of the certificate in base64 `body` is, in `der` (which is left holding
/// the start of the certificate): as little of it decoded as that takes. `None` if not readable here.
fn subject_of(body: &[u8], der: &mut Vec<u8>) -> Option<Range<usize>> {
    der.clear();
    let mut read = pem::decode_prefix(body, NAMES_FIRST, der)?;
    loop {
        match names::names(der) {
            Ok(found) => return Some(found.subject),
            Err(Unreadable::Short) if read < body.len() => {
                read += pem::decode_prefix(&body[read..], NAMES_MORE, der)?;
            }
            Err(_) => return None,
        }
    }
}

/// Finds the rest of the store's certificates a few at a time, giving the runtime back between
/// them so the connection goes on: spawned on the fetch's runtime before the request starts.
pub async fn finish_loading(store: Arc<PemStore>) {
    // Spawned before the request starts, this runs first when the fetch waits for its connection
    // to open; the runtime then sees it open, sends the ClientHello, and only then comes back here.
    tokio::task::yield_now().await;
    while !store.step(BATCH) {
        tokio::task::yield_now().await;
    }
}

/// The certificate check for [`PemStore`]: the store's trust anchors for the chain, rustls' own
/// verifier for the rest; signatures with the provider's algorithms, as rustls' verifier does.
#[derive(Debug)]
pub struct Verifier {
    store: Arc<PemStore>,
    provider: Arc<CryptoProvider>,
}

impl std::fmt::Debug for PemStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PemStore({})", self.shown_as)
    }
}

impl Verifier {
    pub fn new(store: Arc<PemStore>, provider: Arc<CryptoProvider>) -> Self {
        Verifier { store, provider }
    }
}

impl ServerCertVerifier for Verifier {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        let presented: Vec<&[u8]> = std::iter::once(end_entity)
            .chain(intermediates)
            .map(|c| c.as_ref())
            .collect();
        self.store
            .verifier_for(&presented, &self.provider)?
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls12_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        rustls::crypto::verify_tls13_signature(
            message,
            cert,
            dss,
            &self.provider.signature_verification_algorithms,
        )
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.provider
            .signature_verification_algorithms
            .supported_schemes()
    }
}
