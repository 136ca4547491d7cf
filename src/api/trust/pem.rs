//! The CERTIFICATE sections of a PEM text, found without decoding them, and the first bytes of one
//! decoded on their own: enough to read a certificate's names without decoding the whole bundle.
//!
//! Which sections there are is decided exactly as rustls' PEM reader (`rustls-pki-types`) decides
//! it, line by line, with its quirks (a BEGIN line inside a section starts it again but keeps the
//! lines read so far; a BEGIN line without its five closing dashes is an error that ends the section).
//! Each section comes with the part of the text that reader decodes it from on its own, so decoding
//! a section later gives what reading the whole text at once would have given for it (the tests
//! check that on awkward texts).

use rustls::pki_types::pem::PemObject;
use rustls::pki_types::CertificateDer;
use std::ops::Range;

/// One CERTIFICATE section.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Section {
    /// What rustls' PEM reader, given only `text[self.text]`, decodes this section from: its first
    /// item is this section's certificate (or its error).
    pub text: Range<usize>,
    /// The base64 between the BEGIN and END lines, when the section is only that (one BEGIN line, no
    /// other line starting with five dashes): the bytes [`decode_prefix`] can read the start of.
    pub body: Option<Range<usize>>,
}

/// Finds the sections of a text one at a time, so the work can be spread out and resumed.
#[derive(Debug, Default)]
pub struct Scanner {
    /// Search with memchr's vector code rather than byte by byte. Its first use detects the CPU's
    /// features, and `cpuid` traps to the hypervisor in a VM (~35 µs here): the HTTP parser needs
    /// that detection later anyway, so it is left for while the network is busy, and the few
    /// kilobytes searched before the request starts are searched byte by byte.
    pub vectorized: bool,
    /// Where to look for the next line that starts with five dashes.
    at: usize,
    /// Where rustls' reader would start afresh: after the last section's END line or an error.
    fresh: usize,
    open: Option<Open>,
}

#[derive(Debug)]
struct Open {
    label: Range<usize>,
    body_start: usize,
    /// One BEGIN line so far, and no other line starting with dashes.
    plain: bool,
}

const DASHES: &[u8] = b"-----";

impl Scanner {
    /// The next CERTIFICATE section of `text`, or `None` at its end. `text` is the same at every
    /// call, or longer: when `complete` is false it is only the start of the file, and `None` means
    /// that more is needed (nothing is taken from a line that may go on past its end).
    pub fn next(&mut self, text: &[u8], complete: bool) -> Option<Section> {
        loop {
            let found = self.at + self.find_dashes(text.get(self.at..)?)?;
            let line_end = match self.find_line_end(&text[found..]) {
                Some(i) => found + i,
                None if complete => text.len(),
                None => return None,
            };
            let next_line = (line_end + 1).min(text.len());
            self.at = next_line;
            // Only lines that start with dashes change anything: any other line is either base64 in
            // a section or ignored between sections.
            if found > 0 && !matches!(text[found - 1], b'\n' | b'\r') {
                continue;
            }
            let line = &text[found..line_end];
            if line.starts_with(b"-----BEGIN ") {
                match begin_label(line) {
                    Some(label) => {
                        let plain = self.open.is_none();
                        self.open = Some(Open {
                            label: found + label.start..found + label.end,
                            body_start: next_line,
                            plain,
                        });
                    }
                    // rustls' reader reports an error and starts afresh on the next line.
                    None => {
                        self.open = None;
                        self.fresh = next_line;
                    }
                }
                continue;
            }
            let Some(open) = &mut self.open else {
                continue;
            };
            if !is_end(line, &text[open.label.clone()]) {
                open.plain = false;
                continue;
            }
            let section = (&text[open.label.clone()] == b"CERTIFICATE").then(|| Section {
                text: self.fresh..line_end,
                body: open.plain.then_some(open.body_start..found),
            });
            self.open = None;
            self.fresh = next_line;
            if section.is_some() {
                return section;
            }
        }
    }
}

impl Scanner {
    /// Where in the text the first byte still needed is: the start of the text of the section
    /// being read. What comes before can be let go of (then say so with [`Scanner::moved`]).
    pub fn needs_from(&self) -> usize {
        self.fresh
    }

    /// The text now starts `by` bytes further on (what came before was let go of).
    pub fn moved(&mut self, by: usize) {
        self.at -= by;
        self.fresh -= by;
        if let Some(open) = &mut self.open {
            open.label = open.label.start - by..open.label.end - by;
            open.body_start -= by;
        }
    }

    /// Ready for another text, searching as before.
    pub fn start_again(&mut self) {
        *self = Scanner {
            vectorized: self.vectorized,
            ..Scanner::default()
        };
    }

    fn find_dashes(&self, haystack: &[u8]) -> Option<usize> {
        if self.vectorized {
            memchr::memmem::find(haystack, DASHES)
        } else {
            haystack.windows(DASHES.len()).position(|w| w == DASHES)
        }
    }

    fn find_line_end(&self, haystack: &[u8]) -> Option<usize> {
        if self.vectorized {
            memchr::memchr2(b'\n', b'\r', haystack)
        } else {
            haystack.iter().position(|&b| b == b'\n' || b == b'\r')
        }
    }
}

/// The certificate of a section, decoded in full by rustls' PEM reader from `text[section]`
/// (`Section::text`); `None` when its base64 does not decode.
pub fn decode(text: &[u8], section: Range<usize>) -> Option<CertificateDer<'static>> {
    CertificateDer::pem_slice_iter(text.get(section)?)
        .next()?
        .ok()
}

/// The label of a BEGIN line, as rustls' reader takes it (five dashes at the end, spaces allowed
/// among them), or `None` where that reader sees an illegal section start.
fn begin_label(line: &[u8]) -> Option<Range<usize>> {
    let (mut trailer, mut pos) = (0, line.len());
    for (i, &b) in line.iter().enumerate().rev() {
        match b {
            b'-' => {
                trailer += 1;
                pos = i;
            }
            b'\n' | b'\r' | b' ' => continue,
            _ => break,
        }
    }
    (trailer == 5 && pos >= 11).then_some(11..pos)
}

/// Whether `line` ends the section labelled `label`, as rustls' reader decides it.
fn is_end(line: &[u8], label: &[u8]) -> bool {
    line.strip_prefix(b"-----END ")
        .and_then(|rest| rest.strip_prefix(label))
        .is_some_and(|rest| rest.starts_with(DASHES))
}

/// Appends to `out` the bytes the base64 `body` starts with, whole groups of three until `want`
/// more are out or the body ends (padding ends it too), skipping whitespace as rustls' reader does.
/// Returns how much of `body` was read, to go on from there with more wanted; `None` if the body
/// holds anything but base64 and whitespace before that point.
pub fn decode_prefix(body: &[u8], want: usize, out: &mut Vec<u8>) -> Option<usize> {
    let goal = out.len().saturating_add(want);
    out.reserve(want.min(body.len() / 4 * 3 + 3));
    let value = |c: u8| u32::from(BASE64[usize::from(c)]);
    let mut group = 0u32;
    let mut filled = 0;
    let mut i = 0;
    while i < body.len() {
        // Four characters of base64 at once, the usual case: one test for all four.
        if let (0, Some(&[a, b, c, d])) = (filled, body.get(i..i + 4)) {
            let (a, b, c, d) = (value(a), value(b), value(c), value(d));
            if (a | b | c | d) < 64 {
                out.extend_from_slice(&((a << 18) | (b << 12) | (c << 6) | d).to_be_bytes()[1..]);
                i += 4;
                if out.len() >= goal {
                    return Some(i);
                }
                continue;
            }
        }
        let sextet = value(body[i]);
        i += 1;
        match sextet as u8 {
            0..=63 => {}
            SPACE => continue,
            PAD => break,
            _ => return None,
        }
        group = (group << 6) | sextet;
        filled += 1;
        if filled == 4 {
            out.extend_from_slice(&group.to_be_bytes()[1..]);
            group = 0;
            filled = 0;
            if out.len() >= goal {
                return Some(i);
            }
        }
    }
    // A last, short group: 2 or 3 characters give 1 or 2 bytes.
    match filled {
        2 => out.push((group >> 4) as u8),
        3 => out.extend_from_slice(&((group >> 2) as u16).to_be_bytes()),
        _ => {}
    }
    Some(body.len())
}

const SPACE: u8 = 64;
const PAD: u8 = 65;
const INVALID: u8 = 255;

/// Each byte's value in base64, or what else it is: a table, as a branch per character class
/// mispredicts on every other character of random-looking text (that made decoding 8x slower).
static BASE64: [u8; 256] = {
    let mut table = [INVALID; 256];
    let alphabet = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut i = 0;
    while i < 64 {
        table[alphabet[i] as usize] = i as u8;
        i += 1;
    }
    // What rustls' reader skips: \t \n \v \f \r and the space.
    let mut c = b'\t';
    while c <= b'\r' {
        table[c as usize] = SPACE;
        c += 1;
    }
    table[b' ' as usize] = SPACE;
    table[b'=' as usize] = PAD;
    table
};

#[cfg(test)]
mod tests {
    use super::*;

    use super::super::TEST_CA as CERT_A;

    /// What rustls' reader gets from the whole text, against what it gets from each section's own
    /// part of it.
    fn check_same_as_rustls(text: &[u8]) -> usize {
        let whole: Vec<_> = CertificateDer::pem_slice_iter(text)
            .map(|c| c.map(|c| c.to_vec()).map_err(|e| format!("{e:?}")))
            .collect();
        let mut scanner = Scanner {
            vectorized: text.len().is_multiple_of(2),
            ..Scanner::default()
        };
        let mut sections = Vec::new();
        // Given a piece at a time, as a file read in parts is, and letting go of what the scanner
        // no longer needs.
        let (mut held_from, mut known) = (0, 0);
        while known < text.len() {
            known = (known + 97).min(text.len());
            let held = &text[held_from..known];
            while let Some(section) = scanner.next(held, known == text.len()) {
                let shifted = |r: Range<usize>| r.start + held_from..r.end + held_from;
                sections.push(Section {
                    text: shifted(section.text),
                    body: section.body.map(shifted),
                });
            }
            let needs_from = scanner.needs_from();
            held_from += needs_from;
            scanner.moved(needs_from);
        }
        let one_by_one: Vec<_> = sections
            .iter()
            .map(|s| {
                CertificateDer::pem_slice_iter(&text[s.text.clone()])
                    .next()
                    .expect("an item")
                    .map(|c| c.to_vec())
                    .map_err(|e| format!("{e:?}"))
            })
            .collect();
        let certs = |items: &[Result<Vec<u8>, String>]| -> Vec<Vec<u8>> {
            items.iter().filter_map(|i| i.clone().ok()).collect()
        };
        assert_eq!(
            certs(&whole),
            certs(&one_by_one),
            "{}",
            String::from_utf8_lossy(text)
        );
        // A plain section's body decodes, from its start, to its certificate.
        for (section, item) in sections.iter().zip(&one_by_one) {
            if let (Some(body), Ok(der)) = (&section.body, item) {
                let body = &text[body.clone()];
                let mut out = Vec::new();
                let read = decode_prefix(body, 40, &mut out).expect("base64");
                assert!(out.len() >= 40 && der.starts_with(&out), "{section:?}");
                // Going on from there gives the rest.
                decode_prefix(&body[read..], usize::MAX, &mut out).expect("base64");
                assert_eq!(&out, der);
            }
        }
        certs(&whole).len()
    }

    #[test]
    fn sections_are_the_ones_rustls_reads_even_in_awkward_texts() {
        let b = CERT_A.lines().collect::<Vec<_>>();
        let body = b[1..b.len() - 1].join("\n");
        let cases: Vec<(String, usize)> = vec![
            (CERT_A.to_owned(), 1),
            (format!("{CERT_A}{CERT_A}"), 2),
            (CERT_A.replace('\n', "\r\n"), 1),
            (CERT_A.replace('\n', "\r"), 1),
            (CERT_A.trim_end().to_owned(), 1),
            (format!("# a comment ----- with dashes\n{CERT_A}text between\n{CERT_A}"), 2),
            // Other sections around and between, known to rustls or not.
            (format!("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n{CERT_A}"), 1),
            (format!("-----BEGIN TRUSTED CERTIFICATE-----\n{body}\n-----END TRUSTED CERTIFICATE-----\n{CERT_A}"), 1),
            // A BEGIN inside a section: the lines before it are kept.
            (format!("-----BEGIN CERTIFICATE-----\n{body}\n{CERT_A}"), 0),
            (format!("-----BEGIN X509 CRL-----\n-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE-----\n"), 1),
            // An illegal BEGIN line, an END with no section, a missing END, bad base64.
            (format!("-----BEGIN CERTIFICATE----\n{body}\n-----END CERTIFICATE-----\n{CERT_A}"), 1),
            (format!("-----BEGIN CERTIFICATE- - - - -\n{body}\n-----END CERTIFICATE-----\n"), 1),
            (format!("-----END CERTIFICATE-----\n{CERT_A}"), 1),
            (format!("{CERT_A}-----BEGIN CERTIFICATE-----\n{body}\n"), 1),
            (format!("-----BEGIN CERTIFICATE-----\n{body}!\n-----END CERTIFICATE-----\n{CERT_A}"), 1),
            (format!("-----BEGIN CERTIFICATE-----\n{body}\n------ six dashes\n-----END CERTIFICATE-----\n{CERT_A}"), 1),
            (format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE----- and more\n"), 1),
            // Four dashes do not end it: the next BEGIN carries its lines on (and the padding breaks it).
            (format!("-----BEGIN CERTIFICATE-----\n{body}\n-----END CERTIFICATE----\n{CERT_A}"), 0),
            (format!("-----BEGIN CERTIFICATE-----\n  {}\n-----END CERTIFICATE-----\n", body.replace('\n', " \t\n ")), 1),
            (String::new(), 0),
            ("-----".to_owned(), 0),
        ];
        for (text, certs) in cases {
            assert_eq!(check_same_as_rustls(text.as_bytes()), certs, "{text}");
        }
    }

    #[test]
    fn the_system_bundle_scans_as_rustls_reads_it() {
        let Ok(pem) = std::fs::read("/etc/ssl/certs/ca-certificates.crt") else {
            eprintln!("SKIPPED: no /etc/ssl/certs/ca-certificates.crt here");
            return;
        };
        assert!(check_same_as_rustls(&pem) > 100);
    }

    #[test]
    fn a_prefix_stops_at_what_is_wanted_and_refuses_what_is_not_base64() {
        let mut out = Vec::new();
        assert_eq!(decode_prefix(b"TWFu TWFu\nTWFu", 4, &mut out), Some(9));
        assert_eq!(out, b"ManMan");
        out.clear();
        assert_eq!(decode_prefix(b"TWE=", 10, &mut out), Some(4));
        assert_eq!(out, b"Ma");
        out.clear();
        assert_eq!(decode_prefix(b"TQ==", 10, &mut out), Some(4));
        assert_eq!(out, b"M");
        assert_eq!(decode_prefix(b"TW-u", 10, &mut Vec::new()), None);
        assert_eq!(decode_prefix(b"TWFuTW\x00u", 3, &mut Vec::new()), Some(4));
    }
}
