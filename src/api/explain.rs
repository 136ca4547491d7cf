//! Turning what went wrong into one clear message: transport failures, non-2xx answers, redirects,
//! oversized answers. Messages name origins, statuses, content types and (for non-2xx answers only)
//! a short excerpt; never a 2xx body, a value or the key's secret part.

use super::Request;
use crate::error::Error;
use reqwest::{StatusCode, Url};

/// Whether a transport failure is worth another try: the connection was refused, reset, aborted or
/// closed before the answer was complete, or the kernel timed the connection out. TLS, DNS and proxy-set-up failures are not (another try
/// would fail the same way).
pub fn is_transient(e: &reqwest::Error) -> bool {
    use std::io::ErrorKind::*;
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        if let Some(io) = s.downcast_ref::<std::io::Error>() {
            if matches!(
                io.kind(),
                ConnectionRefused
                    | ConnectionReset
                    | ConnectionAborted
                    | NotConnected
                    | BrokenPipe
                    | UnexpectedEof
                    | TimedOut
            ) {
                return true;
            }
        }
        if let Some(h) = s.downcast_ref::<hyper::Error>() {
            if h.is_incomplete_message() || h.is_closed() {
                return true;
            }
        }
        source = s.source();
    }
    false
}

/// What actually failed, from the error's source chain (reqwest's own Display names the URL).
pub fn cause(e: &reqwest::Error) -> String {
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
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
pub fn transport_error(req: &Request<'_>, e: &reqwest::Error) -> Error {
    let error = describe_transport_error(req, e);
    let cause = cause(e);
    if cause.starts_with("tunnel error") || cause.contains("certificate") {
        error
    } else {
        error.transient()
    }
}

fn describe_transport_error(req: &Request<'_>, e: &reqwest::Error) -> Error {
    let origin = req.origin();
    let cause = cause(e);
    let host = req.url.host_str().unwrap_or_default();
    if cause.starts_with("tunnel error") {
        Error::new(format!(
            "the proxy refused to open a tunnel to {host} ({cause})"
        ))
        .hint(
            "check HTTPS_PROXY / ALL_PROXY and the proxy's rules, or exempt the host with NO_PROXY",
        )
    } else if cause.contains("failed to lookup address") {
        Error::new(format!("cannot find the host {host} (DNS: {cause})"))
            .hint("check the spelling of --base-url / R4_BASE_URL and this machine's DNS")
    } else if cause.contains("certificate") {
        Error::new(format!("cannot connect to {origin}: its TLS certificate was not accepted ({cause})"))
            .hint("if a private CA or an intercepting proxy signs it, point SSL_CERT_FILE at that CA's PEM bundle\n(SSL_CERT_FILE / SSL_CERT_DIR replace the system's trust store); see docs/network.md")
    } else if e.is_connect() {
        Error::new(format!("cannot connect to {origin}: {cause}")).hint(
            "check the network, any proxy (HTTPS_PROXY, NO_PROXY), and --base-url / R4_BASE_URL",
        )
    } else if e.is_timeout() {
        Error::new(format!("{origin} did not answer in time: {cause}"))
            .hint("allow more time with --timeout / R4_TIMEOUT")
    } else {
        Error::new(format!("the request to {origin} failed: {cause}"))
            .hint("check the network and --base-url; retry later if the service is having trouble")
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
    if base.scheme() == "http" && !crate::config::is_loopback(&base) {
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
