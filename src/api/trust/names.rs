//! Just enough DER to find a certificate's issuer and subject names, as webpki reads them: the
//! contents of the 4th and 6th fields of the `TBSCertificate` (the 3rd and 5th in a v1
//! certificate, which has no version field). webpki builds a chain only through a trusted
//! certificate whose subject is, byte for byte, the issuer of a certificate the server sent; these
//! names let the store decode in full only the certificates that pass that test (see `pem_roots`).
//!
//! Lengths are read as webpki reads them (definite, canonical, at most four bytes), so a name found
//! here is the name webpki finds; anything else is [`Unreadable::Bad`], and the caller then keeps the
//! certificate, never drops it.

use std::ops::Range;

/// Where the two names are, as byte ranges of the DER they were read from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Names {
    pub issuer: Range<usize>,
    pub subject: Range<usize>,
}

/// Why the names were not found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Unreadable {
    /// The DER ends before the subject does: only a prefix of the certificate was given.
    Short,
    /// Not the start of a certificate that webpki could read.
    Bad,
}

const SEQUENCE: u8 = 0x30;
const INTEGER: u8 = 0x02;
/// `[0] EXPLICIT`: the version field.
const VERSION: u8 = 0xa0;

/// The issuer and subject names of the certificate `der` starts with. `der` may be a prefix of the
/// certificate: only the bytes up to the end of the subject are needed.
pub fn names(der: &[u8]) -> Result<Names, Unreadable> {
    let mut at = 0;
    // Certificate ::= SEQUENCE { tbsCertificate, ... }: into both, without needing their ends.
    at = enter(der, at, SEQUENCE)?;
    at = enter(der, at, SEQUENCE)?;
    if der.get(at).ok_or(Unreadable::Short)? == &VERSION {
        at = field(der, at, VERSION)?.end;
    }
    at = field(der, at, INTEGER)?.end; // serialNumber
    at = field(der, at, SEQUENCE)?.end; // signature
    let issuer = field(der, at, SEQUENCE)?;
    let validity = field(der, issuer.end, SEQUENCE)?;
    let subject = field(der, validity.end, SEQUENCE)?;
    Ok(Names {
        issuer: issuer.contents,
        subject: subject.contents,
    })
}

/// One whole field: its contents, and where the next field starts.
struct Field {
    contents: Range<usize>,
    end: usize,
}

/// The field at `at`, which must have the tag `tag` and end within `der`.
fn field(der: &[u8], at: usize, tag: u8) -> Result<Field, Unreadable> {
    let (start, len) = header(der, at, tag)?;
    let end = start.checked_add(len).ok_or(Unreadable::Bad)?;
    if end > der.len() {
        return Err(Unreadable::Short);
    }
    Ok(Field {
        contents: start..end,
        end,
    })
}

/// Steps into the field at `at`: where its contents start (they may go on past `der`).
fn enter(der: &[u8], at: usize, tag: u8) -> Result<usize, Unreadable> {
    header(der, at, tag).map(|(start, _)| start)
}

/// The tag and length at `at`: where the contents start, and their length.
fn header(der: &[u8], at: usize, tag: u8) -> Result<(usize, usize), Unreadable> {
    let byte = |i: usize| der.get(at + i).copied().ok_or(Unreadable::Short);
    if byte(0)? != tag {
        return Err(Unreadable::Bad);
    }
    let first = byte(1)?;
    if first < 0x80 {
        return Ok((at + 2, usize::from(first)));
    }
    // Long form: 1 to 4 length bytes, never a length the short (or a shorter) form could hold.
    let count = usize::from(first & 0x7f);
    if !(1..=4).contains(&count) {
        return Err(Unreadable::Bad);
    }
    let mut len = 0usize;
    for i in 0..count {
        len = (len << 8) | usize::from(byte(2 + i)?);
    }
    let shortest = if count == 1 {
        0x80
    } else {
        1 << (8 * (count - 1))
    };
    if len < shortest {
        return Err(Unreadable::Bad);
    }
    Ok((at + 2 + count, len))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustls::pki_types::pem::PemObject;
    use rustls::pki_types::CertificateDer;

    /// Every certificate of the system's bundle: the subject found here is the one webpki's trust
    /// anchor holds; a self-signed root's issuer is its subject.
    #[test]
    fn the_names_are_the_ones_webpki_reads() {
        let Ok(pem) = std::fs::read("/etc/ssl/certs/ca-certificates.crt") else {
            eprintln!("SKIPPED: no /etc/ssl/certs/ca-certificates.crt here");
            return;
        };
        let mut checked = 0;
        for der in CertificateDer::pem_slice_iter(&pem).filter_map(|c| c.ok()) {
            let mut store = rustls::RootCertStore::empty();
            if store.add(der.clone()).is_err() {
                continue;
            }
            let found = names(&der).expect("a readable certificate");
            assert_eq!(&der[found.subject.clone()], store.roots[0].subject.as_ref());
            // Every prefix that ends before the subject does is short, never bad or wrong.
            for cut in [0, 1, 5, found.subject.end - 1] {
                assert_eq!(names(&der[..cut]), Err(Unreadable::Short), "cut at {cut}");
            }
            assert_eq!(names(&der[..found.subject.end]), Ok(found));
            checked += 1;
        }
        assert!(checked > 100, "{checked}");
    }

    #[test]
    fn lengths_webpki_refuses_are_bad() {
        // A SEQUENCE of indefinite length, a non-canonical long form, five length bytes, another tag.
        for der in [
            &[0x30, 0x80, 0x30][..],
            &[0x30, 0x81, 0x10, 0x30],
            &[0x30, 0x82, 0x00, 0xff, 0x30],
            &[0x30, 0x85, 1, 0, 0, 0, 0, 0x30],
            &[0x31, 0x03, 0x30, 0x01, 0x00],
        ] {
            assert_eq!(names(der), Err(Unreadable::Bad), "{der:02x?}");
        }
    }
}
