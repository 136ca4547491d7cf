//! Turning what went wrong into one clear message: transport failures, non-2xx answers, redirects,
//! oversized answers. Messages name origins, statuses, content types and (for non-2xx answers only)
//! a short excerpt; never a 2xx body, a value or the key's secret part.

use super::dns::DnsError;
use super::proxy::Proxy;
use super::Request;
use crate::error::Error;
use reqwest::{StatusCode, Url};
use std::error::Error as StdError;

/// What a failed request ran into, told by the types in its source chain: never by a library's
/// message text, which is only ever shown to the user.
#[derive(Debug, PartialEq)]
pub enum Failure {
    /// A host name did not resolve (the API's, or the proxy's).
    Dns {
        host: String,
    },
    /// The server's TLS certificate was not accepted.
    TlsCertificate,
    /// Any other TLS failure (e.g. the server does not speak TLS at all).
    Tls,
    /// The connection to the proxy was refused or had no route.
    ProxyUnreachable,
    /// Connected to the proxy, but no tunnel came of it (a refusal, a 407, the proxy hanging up).
    ProxyRefused,
    /// The connection to the server was refused or had no route.
    Refused,
    /// The connection was reset, aborted or closed before the answer was complete.
    Cut,
    /// The kernel gave up on the connection.
    TimedOut,
    Other,
}

impl Failure {
    /// Whether another try may work: the failure was on the way, not in the set-up. DNS and TLS are
    /// not retried (another try would fail the same way), nor a proxy's refusal.
    pub fn is_transient(&self) -> bool {
        matches!(
            self,
            Self::ProxyUnreachable | Self::Refused | Self::Cut | Self::TimedOut
        )
    }

    /// Whether the failure says something is set up wrong here (a certificate, a proxy's rules), so
    /// a `--fallback` file must not hide it. Everything else means the API could not be reached.
    fn is_set_up_problem(&self) -> bool {
        matches!(self, Self::TlsCertificate | Self::ProxyRefused)
    }
}

/// Classifies a failed request. `is_connect`: it failed while connecting (reqwest's own predicate);
/// `proxied`: it went through a proxy, so a connect failure is the proxy's unless shown otherwise.
pub fn classify(error: &(dyn StdError + 'static), is_connect: bool, proxied: bool) -> Failure {
    use std::io::ErrorKind;
    let mut dns = None;
    let mut tls = None;
    let mut refused = false;
    let mut cut = false;
    let mut timed_out = false;
    each_cause(error, &mut |cause| {
        if let Some(e) = cause.downcast_ref::<DnsError>() {
            dns.get_or_insert_with(|| e.host.clone());
        }
        if let Some(e) = cause.downcast_ref::<rustls::Error>() {
            let certificate = matches!(
                e,
                rustls::Error::InvalidCertificate(_)
                    | rustls::Error::NoCertificatesPresented
                    | rustls::Error::UnsupportedNameType
                    | rustls::Error::InvalidCertRevocationList(_)
            );
            tls.get_or_insert(certificate);
        }
        if let Some(io) = cause.downcast_ref::<std::io::Error>() {
            // Unreachability by errno: its ErrorKinds are newer than the Rust this builds with.
            let unreachable = matches!(
                io.raw_os_error(),
                Some(libc::EHOSTUNREACH | libc::ENETUNREACH | libc::EADDRNOTAVAIL)
            );
            match io.kind() {
                ErrorKind::ConnectionRefused => refused = true,
                ErrorKind::ConnectionReset
                | ErrorKind::ConnectionAborted
                | ErrorKind::NotConnected
                | ErrorKind::BrokenPipe
                | ErrorKind::UnexpectedEof => cut = true,
                ErrorKind::TimedOut => timed_out = true,
                _ if unreachable => refused = true,
                _ => {}
            }
        }
        if let Some(h) = cause.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() {
                cut = true;
            }
        }
    });
    if let Some(host) = dns {
        Failure::Dns { host }
    } else if let Some(certificate) = tls {
        if certificate {
            Failure::TlsCertificate
        } else {
            Failure::Tls
        }
    } else if refused && proxied && is_connect {
        Failure::ProxyUnreachable
    } else if refused {
        Failure::Refused
    } else if cut {
        Failure::Cut
    } else if timed_out {
        Failure::TimedOut
    } else if proxied && is_connect {
        Failure::ProxyRefused
    } else {
        Failure::Other
    }
}

/// Calls `visit` with `top` and every error under it. `io::Error::source()` skips the error it
/// wraps (it returns that error's source), so the wrapped one is visited through `get_ref`.
fn each_cause(top: &(dyn StdError + 'static), visit: &mut dyn FnMut(&(dyn StdError + 'static))) {
    let mut next = Some(top);
    while let Some(e) = next {
        visit(e);
        if let Some(inner) = e
            .downcast_ref::<std::io::Error>()
            .and_then(std::io::Error::get_ref)
        {
            each_cause(inner, visit);
        }
        next = e.source();
    }
}

/// What actually failed, from the error's source chain (reqwest's own Display names the URL). For
/// the user's eyes only: nothing decides on this text.
pub fn cause(e: &reqwest::Error) -> String {
    let mut cause = String::new();
    let mut source = StdError::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        cause = e.to_string();
    }
    printable(&cause)
}

/// The message for a failed request. All but a refused TLS certificate or proxy tunnel (which are
/// set-up problems here) are marked transient: the API could not be reached, so a `--fallback` file
/// may stand in, even when another try would not help (DNS down on a laptop that is offline).
pub fn transport_error(
    req: &Request<'_>,
    proxy: Option<&Proxy>,
    failure: &Failure,
    e: &reqwest::Error,
) -> Error {
    let error = describe_transport_error(req, proxy, failure, e);
    if failure.is_set_up_problem() {
        error
    } else {
        error.transient()
    }
}

fn describe_transport_error(
    req: &Request<'_>,
    proxy: Option<&Proxy>,
    failure: &Failure,
    e: &reqwest::Error,
) -> Error {
    let origin = req.origin();
    let cause = cause(e);
    let host = req.url.host_str().unwrap_or_default();
    let proxy_hint = |p: &Proxy| {
        format!(
            "check {} (the proxy r4-run was given), or exempt {host} with NO_PROXY",
            p.from
        )
    };
    match (failure, proxy) {
        (Failure::Dns { host: unresolved }, Some(p)) if unresolved != host => Error::new(format!(
            "cannot find the host of the proxy {} (DNS: {cause})",
            p.shown
        ))
        .hint(proxy_hint(p)),
        (Failure::Dns { host: unresolved }, _) => {
            Error::new(format!("cannot find the host {unresolved} (DNS: {cause})"))
                .hint("check the spelling of --base-url / R4_BASE_URL and this machine's DNS")
        }
        (Failure::TlsCertificate, _) => Error::new(format!("cannot connect to {origin}: its TLS certificate was not accepted ({cause})"))
            .hint("if a private CA or an intercepting proxy signs it, point SSL_CERT_FILE at that CA's PEM bundle\n(SSL_CERT_FILE / SSL_CERT_DIR replace the system's trust store); see docs/network.md"),
        (Failure::Tls, _) => Error::new(format!(
            "cannot connect to {origin}: the TLS handshake failed ({cause})"
        ))
        .hint("check that --base-url / R4_BASE_URL names an https server (a plain http server spoken to with https:// fails\nthis way), and any proxy or firewall on the way"),
        (Failure::ProxyUnreachable, Some(p)) => {
            Error::new(format!("cannot reach the proxy {} ({cause})", p.shown)).hint(proxy_hint(p))
        }
        (Failure::ProxyRefused, Some(p)) => Error::new(format!(
            "the proxy {} refused to open a tunnel to {host} ({cause})",
            p.shown
        ))
        .hint(format!(
            "check the proxy's rules and any credentials in {} (http://USER:PASSWORD@HOST:PORT),\nor exempt {host} with NO_PROXY",
            p.from
        )),
        (Failure::Cut, _) if !e.is_connect() => Error::new(format!(
            "the connection to {origin} broke off before the answer was complete ({cause})"
        ))
        .hint("check any proxy between here and R4; retry later if the service is having trouble"),
        (Failure::TimedOut, _) => Error::new(format!("{origin} did not answer in time: {cause}"))
            .hint("check the network and any firewall, or allow more time with --timeout / R4_TIMEOUT"),
        _ if e.is_connect() => Error::new(format!("cannot connect to {origin}: {cause}")).hint(
            "check the network, any proxy (HTTPS_PROXY, NO_PROXY), and --base-url / R4_BASE_URL",
        ),
        _ if e.is_timeout() => Error::new(format!("{origin} did not answer in time: {cause}"))
            .hint("allow more time with --timeout / R4_TIMEOUT"),
        _ => Error::new(format!("the request to {origin} failed: {cause}"))
            .hint("check the network and --base-url; retry later if the service is having trouble"),
    }
}

/// A 2xx body that broke off before its end.
pub fn cut_off_error(
    req: &Request<'_>,
    status: StatusCode,
    read: usize,
    e: &reqwest::Error,
) -> Error {
    Error::new(format!(
        "the answer from {} ({status}) broke off after {read} bytes: {}",
        req.origin(),
        cause(e)
    ))
    .hint("the connection was cut; check any proxy between here and R4, and try again")
}

pub fn too_big_error(req: &Request<'_>, declared: Option<u64>, cap: usize) -> Error {
    let cap_mib = cap / (1024 * 1024);
    let what = match declared {
        Some(len) => format!(
            "the answer from {} declares {} MiB (Content-Length), more than the {cap_mib} MiB r4-run reads: it is not an R4 answer",
            req.origin(),
            len.div_ceil(1024 * 1024)
        ),
        None => format!(
            "the answer from {} is larger than {cap_mib} MiB, the most r4-run reads: it is not an R4 answer",
            req.origin()
        ),
    };
    Error::new(what).hint("check --base-url: it must point at the R4 Machine API")
}

/// A 3xx that r4-run did not follow. `to` is where it pointed (already resolved), if anywhere.
pub fn redirect_error(req: &Request<'_>, status: StatusCode, to: Option<&Url>) -> Error {
    let Some(to) = to else {
        return Error::new(format!(
            "the server answered {status} (a redirect) without saying where to"
        ))
        .hint("check --base-url / R4_BASE_URL: it should be https://r4.dev or the full Machine API base");
    };
    let target = to.origin().ascii_serialization();
    if target == req.origin() {
        return Error::new(format!(
            "the server at {target} redirected more than {} times",
            super::MAX_REDIRECTS
        ))
        .hint("check --base-url / R4_BASE_URL: it should be https://r4.dev or the full Machine API base");
    }
    // The base the user would pass: the target without the `/vault/env/{project}` we asked for.
    let mut base = to.clone();
    base.set_query(None);
    base.set_fragment(None);
    let asked = req.url.path();
    let suffix = asked.rfind("/vault/env/").map_or(asked, |i| &asked[i..]);
    match base.path().strip_suffix(suffix) {
        Some(prefix) if !prefix.is_empty() => {
            let prefix = prefix.to_owned();
            base.set_path(&prefix);
        }
        _ => base.set_path("/"),
    }
    let mut hint = format!(
        "if the API really lives there, set --base-url / R4_BASE_URL to {}",
        base.as_str().trim_end_matches('/')
    );
    if base.scheme() == "http" && !super::is_loopback(&base) {
        hint.push_str(" (with https://: plain http is only for loopback)");
    }
    Error::new(format!(
        "the server redirected ({status}) to {target}; r4-run does not follow redirects to another origin, so the API key is not sent there"
    ))
    .hint(hint)
}

#[derive(serde::Deserialize)]
struct Envelope {
    error: EnvelopeError,
}

#[derive(serde::Deserialize)]
struct EnvelopeError {
    code: Option<String>,
    message: Option<String>,
}

/// One clear message for a non-2xx answer. `body` is (a prefix of) an error body: never a 2xx one.
pub fn status_error(
    req: &Request<'_>,
    status: StatusCode,
    content_type: &str,
    body: &[u8],
) -> Error {
    debug_assert!(!status.is_success());
    // Server text is shown, but a server (or a proxy) that echoes the key must not make us print it:
    // the key comes out of the whole text before anything is cut, so no cut can leave a piece of it.
    let secret = req.key.expose_secret_part();
    let cut = body.len() >= super::MAX_ERROR_BODY_BYTES;
    let safe = |text: &str| printable(&redact_secret(text, secret, false));
    let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) else {
        return Error::new(format!(
            "the server answered {status} with a body that is not the R4 API's JSON ({}{})",
            shown_content_type(content_type),
            excerpt(body, secret, cut)
        ))
        .hint("check --base-url / R4_BASE_URL and any proxy between here and R4");
    };
    let code = error.code.as_deref().map(safe).unwrap_or_default();
    let message = error.message.as_deref().map(safe).unwrap_or_default();
    let said = match (code.is_empty(), message.is_empty()) {
        (false, false) => format!("{code}: {message}"),
        (false, true) => code.clone(),
        (true, false) => message,
        (true, true) => "no details".to_owned(),
    };
    let access = req.key.access_key_id();
    let project = req.project;
    match status.as_u16() {
        401 => Error::new(format!("the API key {access}.… was refused (401 {said})")).hint(
            "the key is invalid, archived or missing: check R4_API_KEY (or the key file) against R4 → Settings → API Keys",
        ),
        403 => Error::new(format!("the API key {access}.… has no access to project {project} (403 {said})"))
            .hint("grant the key access to this project in R4, or use a key that has it"),
        404 if code == "project_not_found" => {
            Error::new(format!("project {project} was not found (404 {said})"))
                .hint("check --project / R4_PROJECT_ID: it takes the project's id, and the key must be able to see it")
        }
        404 => Error::new(format!("{} was not found (404 {said})", req.url))
            .hint("check --base-url / R4_BASE_URL: it should be https://r4.dev or the full Machine API base"),
        429 => Error::new(format!("the R4 API's rate limit was reached (429 {said})"))
            .hint("a key allows 100 requests a minute and 10,000 a day; wait and try again"),
        s if s >= 500 => Error::new(format!("the R4 API failed ({status}: {said})"))
            .hint("this is on the server's side; try again shortly"),
        _ => Error::new(format!("the R4 API answered {status} ({said})"))
            .hint("check --project and --base-url"),
    }
}

/// `text` with every occurrence of `secret` replaced by `…`. When `cut` (the text is a prefix of
/// something longer), a trailing beginning of `secret` goes too: the cut may have fallen inside it.
fn redact_secret(text: &str, secret: &str, cut: bool) -> String {
    if secret.is_empty() {
        return text.to_owned();
    }
    let mut out = text.replace(secret, "…");
    if cut {
        if let Some(len) = (1..secret.len())
            .rev()
            .find(|&len| out.ends_with(&secret[..len]))
        {
            out.truncate(out.len() - len);
            out.push('…');
        }
    }
    out
}

pub fn shown_content_type(content_type: &str) -> String {
    if content_type.is_empty() {
        "no content type".to_owned()
    } else {
        printable(content_type).chars().take(80).collect()
    }
}

/// The first characters of an error body, made safe to print: the key's secret part taken out of
/// the whole body first, then control characters dropped, at most 80 characters. Only ever used for
/// non-2xx answers, which carry no secret values. `cut`: the body is a prefix of a longer one.
fn excerpt(body: &[u8], secret: &str, cut: bool) -> String {
    if body.is_empty() {
        return ", empty body".to_owned();
    }
    let text = redact_secret(&String::from_utf8_lossy(body), secret, cut);
    let shown: String = printable(&text).chars().take(80).collect();
    format!(", starting {shown:?}")
}

pub fn printable(text: &str) -> String {
    let collapsed: String = text
        .chars()
        .map(|c| if c.is_control() { ' ' } else { c })
        .collect::<String>();
    let mut out = collapsed.split_whitespace().collect::<Vec<_>>().join(" ");
    if out.len() > 300 {
        let cut = (0..=300)
            .rev()
            .find(|&i| out.is_char_boundary(i))
            .unwrap_or(0);
        out.truncate(cut);
        out.push('…');
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::api::dns::DnsErrorKind;
    use std::io::{self, ErrorKind};

    /// A layer of a library's error chain: a message and what it wraps.
    #[derive(Debug)]
    struct Layer(&'static str, Option<Box<dyn StdError + Send + Sync>>);

    impl std::fmt::Display for Layer {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }

    impl StdError for Layer {
        fn source(&self) -> Option<&(dyn StdError + 'static)> {
            self.1.as_deref().map(|e| e as _)
        }
    }

    /// `inner` under two layers, as reqwest and hyper-util wrap what failed.
    fn wrapped(inner: impl StdError + Send + Sync + 'static) -> Layer {
        Layer(
            "error sending request",
            Some(Box::new(Layer(
                "client error (Connect)",
                Some(Box::new(inner)),
            ))),
        )
    }

    fn tls(e: rustls::Error) -> io::Error {
        // As tokio-rustls reports it: the rustls error inside an io::Error, where source() skips it.
        io::Error::new(ErrorKind::InvalidData, e)
    }

    #[test]
    fn failures_are_told_by_type_not_text() {
        let dns = DnsError {
            host: "r4.example".into(),
            kind: DnsErrorKind::Lookup(io::Error::other("some text")),
        };
        let cert = tls(rustls::Error::InvalidCertificate(
            rustls::CertificateError::UnknownIssuer,
        ));
        let not_tls = tls(rustls::Error::InvalidMessage(
            rustls::InvalidMessage::InvalidContentType,
        ));
        let cases: Vec<(Layer, bool, bool, Failure)> = vec![
            (
                wrapped(dns),
                true,
                false,
                Failure::Dns {
                    host: "r4.example".into(),
                },
            ),
            (wrapped(cert), true, true, Failure::TlsCertificate),
            (wrapped(not_tls), true, false, Failure::Tls),
            (
                wrapped(io::Error::from(ErrorKind::ConnectionRefused)),
                true,
                true,
                Failure::ProxyUnreachable,
            ),
            (
                wrapped(io::Error::from(ErrorKind::ConnectionRefused)),
                true,
                false,
                Failure::Refused,
            ),
            (
                wrapped(io::Error::from_raw_os_error(libc::EHOSTUNREACH)),
                true,
                true,
                Failure::ProxyUnreachable,
            ),
            (
                wrapped(io::Error::from_raw_os_error(libc::ENETUNREACH)),
                true,
                false,
                Failure::Refused,
            ),
            // A proxy's refusal carries no type r4-run can name: connected through a proxy and
            // failed for no reason above, it is the proxy's.
            (
                wrapped(Layer("tunnel error: unsuccessful", None)),
                true,
                true,
                Failure::ProxyRefused,
            ),
            (
                wrapped(Layer("tunnel error: unsuccessful", None)),
                true,
                false,
                Failure::Other,
            ),
            // Text that looks like a DNS or certificate failure decides nothing.
            (
                wrapped(Layer(
                    "failed to lookup address information: certificate",
                    None,
                )),
                false,
                false,
                Failure::Other,
            ),
            (
                wrapped(io::Error::from(ErrorKind::ConnectionReset)),
                false,
                true,
                Failure::Cut,
            ),
            (
                wrapped(io::Error::from(ErrorKind::UnexpectedEof)),
                false,
                false,
                Failure::Cut,
            ),
            (
                wrapped(io::Error::from(ErrorKind::TimedOut)),
                true,
                false,
                Failure::TimedOut,
            ),
        ];
        for (error, is_connect, proxied, want) in cases {
            let shown = format!("{:?}", error);
            assert_eq!(
                classify(&error, is_connect, proxied),
                want,
                "{shown} (connect {is_connect}, proxied {proxied})"
            );
        }
    }

    #[test]
    fn what_is_retried_and_what_a_fallback_may_stand_in_for() {
        let retried = [
            Failure::ProxyUnreachable,
            Failure::Refused,
            Failure::Cut,
            Failure::TimedOut,
        ];
        for f in &retried {
            assert!(f.is_transient() && !f.is_set_up_problem(), "{f:?}");
        }
        for f in [Failure::TlsCertificate, Failure::ProxyRefused] {
            assert!(!f.is_transient() && f.is_set_up_problem(), "{f:?}");
        }
        for f in [
            Failure::Dns { host: "h".into() },
            Failure::Tls,
            Failure::Other,
        ] {
            assert!(!f.is_transient() && !f.is_set_up_problem(), "{f:?}");
        }
    }

    #[test]
    fn redaction_takes_the_whole_secret_and_a_piece_at_a_cut() {
        let secret = "s3cretKeyPart";
        assert_eq!(
            redact_secret("a s3cretKeyPart b s3cretKeyPart", secret, false),
            "a … b …"
        );
        assert_eq!(redact_secret("ends s3cretK", secret, true), "ends …");
        // Not cut: a word that happens to end like the secret begins stays.
        assert_eq!(redact_secret("ends s3", secret, false), "ends s3");
        assert_eq!(redact_secret("nothing here", secret, true), "nothing here");
        assert_eq!(redact_secret("x", "", true), "x");
    }

    #[test]
    fn an_excerpt_is_cut_after_redaction() {
        let secret = "s3cretKeyPart";
        let body = format!("{}rk_a.{secret} trailing", "p".repeat(70));
        let shown = excerpt(body.as_bytes(), secret, false);
        assert!(!shown.contains("s3cret"), "{shown}");
        assert!(shown.contains("rk_a.…"), "{shown}");
    }
}
