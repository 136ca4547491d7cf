//! The Machine API client: one authenticated `GET {base}/vault/env/{projectId}`.
//!
//! tokio is used only here: a current-thread runtime is built for the fetch and dropped after it,
//! so no thread outlives the fetch and the supervisor that follows is single-threaded.

mod answer;

pub use answer::{parse_env_answer, Fetched};

use crate::error::{Error, Result};
use crate::secret::ApiKey;
use crate::verbose;
use reqwest::header::{HeaderValue, CONTENT_TYPE};
use reqwest::{StatusCode, Url};
use std::time::{Duration, Instant};
use zeroize::Zeroizing;

/// The largest answer read. At ~100 bytes a variable this is room for well over 100,000
/// variables; anything bigger is not an R4 answer and reading it would only cost memory.
pub const MAX_BODY_BYTES: usize = 32 * 1024 * 1024;
const USER_AGENT: &str = concat!("r4-run/", env!("CARGO_PKG_VERSION"));

/// What the fetch needs to know.
pub struct Request<'a> {
    pub url: Url,
    pub key: &'a ApiKey,
    pub project: &'a str,
    pub timeout: Duration,
}

/// Fetches the project's variables, or says why not.
pub fn fetch_env(req: &Request<'_>) -> Result<Fetched> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::new(format!("cannot start the network runtime: {e}")))?;
    let started = Instant::now();
    let outcome = runtime.block_on(async {
        match tokio::time::timeout(req.timeout, fetch_once(req)).await {
            Ok(result) => result,
            Err(_) => Err(Error::new(format!(
                "no answer from {} within the {} s deadline",
                req.url.origin().ascii_serialization(),
                req.timeout.as_secs_f64()
            ))
            .hint(
                "check the network and --base-url, or allow more time with --timeout / R4_TIMEOUT",
            )),
        }
    });
    drop(runtime);
    verbose!(1, "fetch took {} ms", started.elapsed().as_millis());
    outcome
}

async fn fetch_once(req: &Request<'_>) -> Result<Fetched> {
    let https = req.url.scheme() == "https";
    let client = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        // Follow nothing: a redirect could carry X-API-Key to another origin.
        .redirect(reqwest::redirect::Policy::none())
        // Loading the system's CA roots costs time; a loopback http base never needs them.
        .tls_built_in_root_certs(https)
        .build()
        .map_err(|e| Error::new(format!("cannot set up the HTTP client: {e}")))?;

    let mut key_header = HeaderValue::from_str(req.key.expose())
        .map_err(|_| Error::new("the API key cannot be sent in an HTTP header"))?;
    key_header.set_sensitive(true);

    verbose!(
        1,
        "GET {} (access key {})",
        req.url,
        req.key.access_key_id()
    );
    let started = Instant::now();
    let response = req
        .client_request(&client)
        .header("X-API-Key", key_header)
        .header("Accept", "application/json")
        .send()
        .await
        .map_err(|e| transport_error(req, &e))?;
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();
    verbose!(
        1,
        "answer {status} after {} ms",
        started.elapsed().as_millis()
    );

    let body = read_body(response, req).await?;
    if status.is_success() {
        parse_env_answer(&body, req.project)
    } else {
        Err(status_error(req, status, &content_type, &body))
    }
}

impl Request<'_> {
    fn client_request(&self, client: &reqwest::Client) -> reqwest::RequestBuilder {
        client.get(self.url.clone())
    }
}

/// Reads the body into a buffer that is wiped on drop, stopping at `MAX_BODY_BYTES`.
async fn read_body(
    mut response: reqwest::Response,
    req: &Request<'_>,
) -> Result<Zeroizing<Vec<u8>>> {
    let too_big = || {
        Error::new(format!(
            "the answer from {} is larger than {} MiB: it is not an R4 answer",
            req.url.origin().ascii_serialization(),
            MAX_BODY_BYTES / (1024 * 1024)
        ))
        .hint("check --base-url: it must point at the R4 Machine API")
    };
    let expected = response.content_length().unwrap_or(0);
    if expected > MAX_BODY_BYTES as u64 {
        return Err(too_big());
    }
    let mut body = Zeroizing::new(Vec::with_capacity(expected as usize));
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| transport_error(req, &e))?
    {
        if body.len() + chunk.len() > MAX_BODY_BYTES {
            return Err(too_big());
        }
        // Grow by doubling ourselves so a reallocation never leaves an unwiped copy behind.
        if body.capacity() < body.len() + chunk.len() {
            let mut bigger = Zeroizing::new(Vec::with_capacity(
                (body.len() + chunk.len()).max(body.capacity() * 2),
            ));
            bigger.extend_from_slice(&body);
            body = bigger;
        }
        body.extend_from_slice(&chunk);
    }
    Ok(body)
}

fn transport_error(req: &Request<'_>, e: &reqwest::Error) -> Error {
    let origin = req.url.origin().ascii_serialization();
    // reqwest's Display names the URL; its source chain says what actually failed.
    let mut cause = String::new();
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        cause = s.to_string();
        source = s.source();
    }
    if cause.is_empty() {
        cause = e.to_string();
    }
    let e = if e.is_connect() {
        Error::new(format!("cannot connect to {origin}: {cause}"))
            .hint("check the network, any proxy (HTTPS_PROXY), and --base-url / R4_BASE_URL")
    } else if e.is_timeout() {
        Error::new(format!("{origin} did not answer in time: {cause}"))
            .hint("allow more time with --timeout / R4_TIMEOUT")
    } else {
        Error::new(format!("the request to {origin} failed: {cause}"))
            .hint("check the network and --base-url; retry later if the service is having trouble")
    };
    e.transient()
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

/// One clear message for a non-2xx answer.
fn status_error(req: &Request<'_>, status: StatusCode, content_type: &str, body: &[u8]) -> Error {
    let Ok(Envelope { error }) = serde_json::from_slice::<Envelope>(body) else {
        return Error::new(format!(
            "the server answered {status} with a body that is not the R4 API's JSON ({}{})",
            if content_type.is_empty() {
                "no content type"
            } else {
                content_type
            },
            excerpt(body)
        ))
        .hint("check --base-url / R4_BASE_URL and any proxy between here and R4");
    };
    let code = error.code.as_deref().map(printable).unwrap_or_default();
    let message = error.message.as_deref().map(printable).unwrap_or_default();
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
            .hint("a key allows 100 requests a minute and 10,000 a day; wait and try again")
            .transient(),
        s if s >= 500 => Error::new(format!("the R4 API failed ({status}: {said})"))
            .hint("this is on the server's side; try again shortly")
            .transient(),
        _ => Error::new(format!("the R4 API answered {status} ({said})"))
            .hint("check --project and --base-url"),
    }
}

/// The first bytes of an error body, made safe to print: control characters dropped, at most 80
/// characters. Only ever used for non-2xx answers, which carry no secret values.
fn excerpt(body: &[u8]) -> String {
    if body.is_empty() {
        return ", empty body".to_owned();
    }
    let text = String::from_utf8_lossy(&body[..body.len().min(400)]);
    let shown: String = printable(&text).chars().take(80).collect();
    format!(", starting {shown:?}")
}

fn printable(text: &str) -> String {
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
