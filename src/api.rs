//! The Machine API client: an authenticated `GET {base}/vault/env/{projectId}`, tried again while the
//! failure is transient, everything inside one deadline (`--timeout`). See docs/network.md.
//!
//! - `retry`: the backoff schedule with jitter and `Retry-After`;
//! - `body`: reading an answer with a size cap;
//! - `explain`: the message for each way a try can fail, and which failures are transient;
//! - `answer`: parsing the JSON answer straight into secret types;
//! - `dns`: host name lookups on detached threads, so nothing waits for a resolver that hangs;
//! - `proxy`: which proxy, if any, an `https://` request goes through.
//!
//! tokio is used only here: a current-thread runtime is built for the fetch and shut down after it
//! without waiting for anything, so the run ends at the deadline or an ending signal whatever is in
//! flight. The one thread that can outlive the fetch is a DNS lookup the deadline gave up on: it
//! holds nothing but a host name, and ends when getaddrinfo returns (or with the process).

mod answer;
mod body;
mod dns;
mod explain;
mod proxy;
mod retry;
mod trust;

pub use answer::parse_env_answer;
pub use body::{MAX_BODY_BYTES, MAX_ERROR_BODY_BYTES};
pub use retry::{BACKOFF_BASE, BACKOFF_CAP, MAX_TRIES};

use crate::error::{Error, Result};
use crate::secret::ApiKey;
use crate::vars::Fetched;
use crate::verbose;
use body::BodyError;
use reqwest::header::{HeaderValue, CONTENT_TYPE, LOCATION, RETRY_AFTER};
use reqwest::{StatusCode, Url};
use std::net::IpAddr;
use std::time::{Duration, Instant, SystemTime};

/// Loopback as r4-run defines it: 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The fetch of each of `projects`, in order.
pub fn requests<'a>(
    base: &Url,
    key: &'a ApiKey,
    projects: &'a [String],
    timeout: Duration,
) -> Vec<Request<'a>> {
    projects
        .iter()
        .map(|project| Request {
            url: env_url(base, project),
            key,
            project,
            timeout,
            give_up_when_unreachable: false,
        })
        .collect()
}

/// `{base}/vault/env/{projectId}`, the project id encoded as one path segment.
pub fn env_url(base: &Url, project: &str) -> Url {
    let mut url = base.clone();
    url.path_segments_mut()
        .expect("an http(s) base URL always has path segments")
        .pop_if_empty()
        .extend(["vault", "env", project]);
    url
}

/// Same-origin redirects followed before giving up (each re-checked: same scheme, host and port,
/// plain http only to loopback). A redirect to any other origin is never followed.
pub const MAX_REDIRECTS: usize = 5;
const USER_AGENT: &str = concat!("r4-run/", env!("CARGO_PKG_VERSION"));

/// What the fetch needs to know.
pub struct Request<'a> {
    pub url: Url,
    pub key: &'a ApiKey,
    pub project: &'a str,
    /// The deadline for the whole fetch, retries and their waits included.
    pub timeout: Duration,
    /// Give up at the first try that reaches no server (refused, no route, DNS) instead of retrying:
    /// set when a `--fallback` file can stand in, so a fleet whose API is down starts at once.
    pub give_up_when_unreachable: bool,
}

impl Request<'_> {
    fn origin(&self) -> String {
        self.url.origin().ascii_serialization()
    }
}

/// How far the fetch got, kept outside the deadline so its message can say what the tries saw.
#[derive(Default)]
struct Progress {
    tries: u32,
    last: Option<Error>,
}

/// Refuses a project id that cannot name a project in the URL: the URL library reads `.` and `..`
/// as path steps (`/vault/env/..` becomes `/vault/`), so the request would go to another path.
/// Checked before any request, and before a `--fallback-only` run, whose file is keyed by the id.
pub fn check_project_id(project: &str) -> Result<()> {
    if matches!(project, "" | "." | "..") {
        return Err(
            Error::new(format!("the project id {project:?} is not a project id"))
                .hint("pass the project's id as shown in R4 with --project / R4_PROJECT_ID"),
        );
    }
    Ok(())
}

/// Fetches several projects' variables at once, over one client and within one deadline (the
/// first request's), in the order asked; the first failure fails them all.
pub fn fetch_all(reqs: &[Request<'_>]) -> Result<Vec<Fetched>> {
    let Some(first) = reqs.first() else {
        return Ok(Vec::new());
    };
    for req in reqs {
        check_project_id(req.project)?;
    }
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| Error::new(format!("cannot start the network runtime: {e}")))?;
    let resolver = dns::Resolver::default();
    let (client, loading_roots) = build_client(first, &resolver, |name| std::env::var_os(name))?;
    if let Some(loading) = loading_roots {
        // The rest of the trusted certificates are made ready on this runtime while the connection
        // and the first TLS flight are under way (block_on polls the fetch first): a task, not a
        // thread, so that as PID 1 the command still gets PID 2.
        runtime.spawn(loading);
    }
    for req in reqs {
        verbose!(
            1,
            "GET {} (access key {}, deadline {} s)",
            req.url,
            req.key.access_key_id(),
            first.timeout.as_secs_f64()
        );
    }
    let started = Instant::now();
    let mut progress: Vec<Progress> = reqs.iter().map(|_| Progress::default()).collect();
    let finished: Vec<std::cell::Cell<bool>> = reqs.iter().map(|_| Default::default()).collect();
    let outcome = runtime.block_on(async {
        let deadline = tokio::time::Instant::now() + first.timeout;
        let fetches = reqs
            .iter()
            .zip(progress.iter_mut())
            .zip(&finished)
            .map(|((req, progress), finished)| {
                let client = &client;
                Box::pin(async move {
                    let result = fetch_with_retries(req, client, deadline, progress).await;
                    finished.set(true);
                    result
                })
                    as std::pin::Pin<Box<dyn std::future::Future<Output = Result<Fetched>> + '_>>
            })
            .collect();
        let fetch = tokio::time::timeout_at(deadline, all_or_first_error(fetches));
        until_first(fetch, until_ending_signal()).await
    });
    let outcome = match outcome {
        Some(Ok(result)) => result,
        Some(Err(_elapsed)) => {
            // Blame the first fetch that had not finished.
            let late = finished.iter().position(|f| !f.get()).unwrap_or(0);
            Err(deadline_error(
                &reqs[late],
                &progress[late],
                resolver.unanswered(),
            ))
        }
        None => Err(Error::new("stopped by a signal before the command started")),
    };
    drop(client);
    // Not a plain drop: that would wait for the runtime's blocking threads, and nothing may keep
    // the run past its deadline or an ending signal.
    runtime.shutdown_background();
    let tries: u32 = progress.iter().map(|p| p.tries).sum();
    verbose!(
        1,
        "fetch took {} ms over {} {}",
        started.elapsed().as_millis(),
        tries,
        if tries == 1 { "try" } else { "tries" }
    );
    outcome
}

/// Runs `work` together: every output, in order, or the first error (the rest are dropped).
async fn all_or_first_error<'a, T>(
    work: Vec<std::pin::Pin<Box<dyn std::future::Future<Output = Result<T>> + 'a>>>,
) -> Result<Vec<T>> {
    let mut work: Vec<_> = work.into_iter().map(Some).collect();
    let mut done: Vec<Option<T>> = work.iter().map(|_| None).collect();
    std::future::poll_fn(|cx| {
        for (slot, out) in work.iter_mut().zip(done.iter_mut()) {
            if let Some(future) = slot {
                if let std::task::Poll::Ready(result) = future.as_mut().poll(cx) {
                    *slot = None;
                    match result {
                        Ok(value) => *out = Some(value),
                        Err(e) => return std::task::Poll::Ready(Err(e)),
                    }
                }
            }
        }
        if work.iter().all(Option::is_none) {
            std::task::Poll::Ready(Ok(done.iter_mut().filter_map(Option::take).collect()))
        } else {
            std::task::Poll::Pending
        }
    })
    .await
}

/// How often a fetch in flight looks for an ending signal. Signals are blocked (signals.rs), so
/// nothing interrupts the fetch by itself: without this, Ctrl-C or `docker stop` during a hanging
/// fetch would wait for the whole deadline.
const SIGNAL_POLL: Duration = Duration::from_millis(20);

async fn until_ending_signal() {
    while !crate::signals::ending_signal_pending() {
        tokio::time::sleep(SIGNAL_POLL).await;
    }
}

/// The HTTP client, and the proxy it goes through (to tell the proxy's failures from the server's).
struct Client {
    http: reqwest::Client,
    proxy: Option<proxy::Proxy>,
}

/// `Some` with `work`'s output, or `None` if `stop` finished first.
async fn until_first<T>(
    work: impl std::future::Future<Output = T>,
    stop: impl std::future::Future<Output = ()>,
) -> Option<T> {
    let mut work = std::pin::pin!(work);
    let mut stop = std::pin::pin!(stop);
    std::future::poll_fn(|cx| {
        if let std::task::Poll::Ready(out) = work.as_mut().poll(cx) {
            return std::task::Poll::Ready(Some(out));
        }
        stop.as_mut().poll(cx).map(|()| None)
    })
    .await
}

/// The client, and for https the work that finishes loading the trusted certificates (to run on
/// the fetch's runtime).
fn build_client(
    req: &Request<'_>,
    resolver: &dns::Resolver,
    env: impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<(Client, Option<trust::Loading>)> {
    let https = req.url.scheme() == "https";
    let host = req.url.host_str().unwrap_or_default();
    // Plain http is only ever to loopback, and is never proxied (proxy.rs): a proxy could be across
    // the network and would see the key in clear. For https, r4-run decides the proxy itself.
    let proxy = match proxy::decide(&req.url, &env)? {
        proxy::Decision::Direct => None,
        proxy::Decision::Exempted { by } => {
            verbose!(1, "{by} exempts {host}: connecting directly");
            None
        }
        proxy::Decision::Via(p) => {
            verbose!(
                1,
                "using the proxy {} for {host} (from {})",
                p.shown,
                p.from
            );
            Some(p)
        }
    };
    let mut builder = reqwest::Client::builder()
        .user_agent(USER_AGENT)
        .dns_resolver(std::sync::Arc::new(resolver.clone()))
        .redirect(redirect_policy(req.url.origin()))
        .no_proxy();
    // A loopback http base never needs certificates: loading them is work saved.
    let mut loading_roots = None;
    if https {
        let (config, loading) = tls_config(&env)?;
        builder = builder.use_preconfigured_tls(config);
        loading_roots = loading;
    }
    if let Some(p) = &proxy {
        let via = reqwest::Proxy::all(p.url().as_str()).map_err(|_| {
            Error::new(format!("{} is not a usable proxy URL", p.from))
                .hint(format!("set {} to http://HOST:PORT, or unset it", p.from))
        })?;
        builder = builder.proxy(via);
    }
    let http = builder
        .build()
        .map_err(|e| Error::new(format!("cannot set up the HTTP client: {e}")))?;
    Ok((Client { http, proxy }, loading_roots))
}

/// rustls set up with the trusted roots (api/trust.rs), the ring provider, and HTTP/1.1 only; and
/// the work left to make the roots ready, if any.
fn tls_config(
    env: &impl Fn(&str) -> Option<std::ffi::OsString>,
) -> Result<(rustls::ClientConfig, Option<trust::Loading>)> {
    let roots = trust::load(env)?;
    match &roots.store {
        trust::Store::Anchors(store) => verbose!(
            1,
            "trusting {} certificate authorities from {}",
            store.len(),
            roots.source
        ),
        // The count is known once every certificate is found, while connecting.
        trust::Store::Pem(_) => verbose!(
            1,
            "trusting the certificate authorities from {}",
            roots.source
        ),
    }
    let provider = std::sync::Arc::new(rustls::crypto::ring::default_provider());
    let (verifier, loading) = roots.verifier(&provider)?;
    let mut config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .map_err(|e| Error::new(format!("cannot set up TLS: {e}")))?
        // Not a weaker check: the verifier is rustls' own `WebPkiServerVerifier`, over the trust
        // anchors that can have issued the server's chain (api/trust/pem_store.rs).
        .dangerous()
        .with_custom_certificate_verifier(verifier)
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    Ok((config, loading))
}

/// Follows a redirect only within the original origin (scheme, host and port), re-checking the
/// plain-http-only-to-loopback rule on each hop. Anything else is handed back as the 3xx answer,
/// which `try_once` turns into a clear error; reqwest would keep `X-API-Key` (unlike
/// `Authorization`) on a redirect to another host, so this is what keeps the key at home.
fn redirect_policy(origin: url::Origin) -> reqwest::redirect::Policy {
    reqwest::redirect::Policy::custom(move |attempt| {
        let next = attempt.url();
        let same_origin = next.origin() == origin;
        let secure_enough = next.scheme() == "https" || is_loopback(next);
        if same_origin && secure_enough && attempt.previous().len() <= MAX_REDIRECTS {
            verbose!(
                1,
                "following {} to {} (same origin)",
                attempt.status(),
                next.path()
            );
            attempt.follow()
        } else {
            attempt.stop()
        }
    })
}

/// One try's outcome.
enum Try {
    Done(Fetched, StatusCode),
    /// Trying again would not help: the error to report, and a short reason for `-v`.
    Fatal {
        error: Error,
        reason: String,
    },
    /// Worth another try, perhaps after the wait the server asked for.
    Transient {
        error: Error,
        reason: String,
        failure: retry::Failure,
    },
}

async fn fetch_with_retries(
    req: &Request<'_>,
    client: &Client,
    deadline: tokio::time::Instant,
    progress: &mut Progress,
) -> Result<Fetched> {
    let mut policy = retry::Policy::new(deadline.into_std());
    let fetch_started = Instant::now();
    loop {
        progress.tries += 1;
        let n = progress.tries;
        let started = Instant::now();
        let outcome = try_once(req, client).await;
        let took = started.elapsed().as_millis();
        let (error, reason, failure) = match outcome {
            Try::Done(fetched, status) => {
                verbose!(1, "try {n}: {status} after {took} ms");
                return Ok(fetched);
            }
            Try::Fatal { error, reason } => {
                verbose!(1, "try {n}: {reason} after {took} ms; not retried");
                return Err(error);
            }
            Try::Transient {
                error,
                reason,
                failure,
            } => (error, reason, failure),
        };
        let remaining = deadline.saturating_duration_since(tokio::time::Instant::now());
        let (wait, why) = match policy.after_failure(failure) {
            retry::Next::Retry { wait, why } => (wait, why),
            retry::Next::GiveUp(retry::GiveUp::TriesUsed) => {
                verbose!(
                    1,
                    "try {n}: {reason} after {took} ms; that was the last try"
                );
                return Err(gave_up(req, error, n, fetch_started));
            }
            retry::Next::GiveUp(retry::GiveUp::NoTimeForBackoff { wait }) => {
                verbose!(
                    1,
                    "try {n}: {reason} after {took} ms; a {} ms wait does not fit in the {} ms left",
                    wait.as_millis(),
                    remaining.as_millis()
                );
                return Err(gave_up(req, error, n, fetch_started));
            }
            retry::Next::GiveUp(retry::GiveUp::NoTimeForRetryAfter { asked }) => {
                verbose!(
                    1,
                    "try {n}: {reason} after {took} ms; Retry-After {} s does not fit in the {} ms left",
                    asked.as_secs_f64(),
                    remaining.as_millis()
                );
                return Err(retry_after_error(req, error, asked, remaining));
            }
        };
        let why = match why {
            retry::Why::RateLimit {
                asked,
                spread,
                drawn,
            } => format!(
                "Retry-After: {} s, plus {} ms drawn below {} ms to spread the retries over the next windows",
                asked.as_secs_f64(),
                drawn.as_millis(),
                spread.as_millis()
            ),
            retry::Why::RetryAfter { asked, jitter } => format!(
                "Retry-After: {} s, plus {} ms of jitter",
                asked.as_secs_f64(),
                jitter.as_millis()
            ),
            retry::Why::Backoff {
                ceiling,
                shorter_retry_after: None,
            } => format!("backoff, jittered below {} ms", ceiling.as_millis()),
            retry::Why::Backoff {
                ceiling,
                shorter_retry_after: Some(asked),
            } => format!(
                "backoff, jittered below {} ms; the server's Retry-After: {} s is shorter",
                ceiling.as_millis(),
                asked.as_secs_f64()
            ),
        };
        verbose!(
            1,
            "try {n}: {reason} after {took} ms; retrying in {} ms ({why})",
            wait.as_millis()
        );
        progress.last = Some(error);
        tokio::time::sleep(wait).await;
    }
}

async fn try_once(req: &Request<'_>, client: &Client) -> Try {
    let mut key_header = match HeaderValue::from_str(req.key.expose()) {
        Ok(v) => v,
        Err(_) => {
            return Try::Fatal {
                error: Error::new("the API key cannot be sent in an HTTP header"),
                reason: "bad key".to_owned(),
            }
        }
    };
    key_header.set_sensitive(true);
    let sent = client
        .http
        .get(req.url.clone())
        .header("X-API-Key", key_header)
        .header("Accept", "application/json")
        .send()
        .await;
    let mut response = match sent {
        Ok(response) => response,
        Err(e) => {
            let failure = explain::classify(&e, e.is_connect(), client.proxy.is_some());
            let error = explain::transport_error(req, client.proxy.as_ref(), &failure, &e);
            let reason = explain::cause(&e);
            if req.give_up_when_unreachable && e.is_connect() {
                return Try::Fatal { error, reason };
            }
            return if failure.is_transient() {
                Try::Transient {
                    error,
                    reason,
                    failure: retry::Failure {
                        retry_after: None,
                        rate_limited: false,
                    },
                }
            } else {
                Try::Fatal { error, reason }
            };
        }
    };
    let status = response.status();
    let content_type = response
        .headers()
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("")
        .to_owned();

    if status.is_redirection() {
        let to = response
            .headers()
            .get(LOCATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|location| response.url().join(location).ok());
        let reason = match &to {
            Some(to) => format!("{status} to {}", to.origin().ascii_serialization()),
            None => format!("{status} without a Location"),
        };
        return Try::Fatal {
            error: explain::redirect_error(req, status, to.as_ref()),
            reason,
        };
    }

    if status.is_success() {
        return match body::read_capped(&mut response, MAX_BODY_BYTES).await {
            Ok(body) => match parse_env_answer(&body, req.project) {
                Ok(fetched) => Try::Done(fetched, status),
                Err(e) => Try::Fatal {
                    error: unusable_answer(e, status, &content_type),
                    reason: format!("{status} with an unusable body"),
                },
            },
            Err(BodyError::TooBig { declared }) => Try::Fatal {
                error: explain::too_big_error(req, declared, MAX_BODY_BYTES),
                reason: format!("{status} with a body over the cap"),
            },
            Err(BodyError::Broken { error, read }) => Try::Transient {
                error: explain::cut_off_error(req, status, read, &error),
                reason: format!("{status}, body broke off after {read} bytes"),
                failure: retry::Failure {
                    retry_after: None,
                    rate_limited: false,
                },
            },
        };
    }

    let retry_after = response
        .headers()
        .get(RETRY_AFTER)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| retry::parse_retry_after(v, SystemTime::now()));
    let body = body::read_prefix(&mut response, MAX_ERROR_BODY_BYTES).await;
    let error = explain::status_error(req, status, &content_type, &body);
    let reason = status.to_string();
    if matches!(status.as_u16(), 429 | 500 | 502 | 503 | 504) {
        Try::Transient {
            error,
            reason,
            failure: retry::Failure {
                retry_after,
                rate_limited: status == StatusCode::TOO_MANY_REQUESTS,
            },
        }
    } else {
        Try::Fatal { error, reason }
    }
}

/// A 2xx answer that is not the API's JSON: say what came back (status, content type), never
/// quoting the body, which may hold secrets.
fn unusable_answer(e: Error, status: StatusCode, content_type: &str) -> Error {
    let what = format!(
        "{} (the server answered {status}, {})",
        e.what(),
        explain::shown_content_type(content_type)
    );
    let hint = if content_type.to_ascii_lowercase().contains("html") {
        "an HTML page comes from a login portal, a proxy or a web site, not the R4 API: check --base-url / R4_BASE_URL and HTTPS_PROXY".to_owned()
    } else {
        e.hint_text().unwrap_or_default().to_owned()
    };
    Error::new(what).hint(hint)
}

fn with_extra_hint(error: &Error, extra: &str) -> String {
    match error.hint_text() {
        Some(h) => format!("{h}\n{extra}"),
        None => extra.to_owned(),
    }
}

fn gave_up(req: &Request<'_>, error: Error, tries: u32, started: Instant) -> Error {
    Error::new(format!(
        "{} (gave up after {tries} tries in {:.1} s)",
        error.what(),
        started.elapsed().as_secs_f64()
    ))
    .hint(with_extra_hint(
        &error,
        &format!(
            "r4-run retries for at most {} tries within --timeout / R4_TIMEOUT (now {} s)",
            retry::MAX_TRIES,
            req.timeout.as_secs_f64()
        ),
    ))
    .transient()
}

fn retry_after_error(req: &Request<'_>, error: Error, wait: Duration, left: Duration) -> Error {
    Error::new(format!(
        "{}; the server asks to wait {} s before trying again, more than the {:.1} s left of the {} s deadline",
        error.what(),
        wait.as_secs(),
        left.as_secs_f64(),
        req.timeout.as_secs_f64()
    ))
    .hint(format!(
        "try again after {}, or allow more time with --timeout / R4_TIMEOUT",
        retry::http_date_after(wait)
    ))
    .transient()
    .with_retry_after(wait)
}

/// Every way of running out of time or tries is transient: the API said nothing against the key or
/// the project, so a `--fallback` file may stand in.
fn deadline_error(req: &Request<'_>, progress: &Progress, unresolved: Option<String>) -> Error {
    let origin = req.origin();
    let secs = req.timeout.as_secs_f64();
    let error = match (&progress.last, unresolved) {
        (_, Some(host)) => Error::new(format!(
            "cannot find the host {host}: DNS did not answer within the {secs} s deadline"
        ))
        .hint("check this machine's DNS servers (/etc/resolv.conf) and the spelling of --base-url / R4_BASE_URL,\nor allow more time with --timeout / R4_TIMEOUT"),
        (None, None) => Error::new(format!("no answer from {origin} within the {secs} s deadline")).hint(
            "the server (or a proxy or firewall on the way) did not answer: check the network and --base-url,\nor allow more time with --timeout / R4_TIMEOUT",
        ),
        (Some(last), None) => Error::new(format!(
            "no usable answer from {origin} within the {secs} s deadline ({} tries; the last failure: {})",
            progress.tries,
            last.what()
        ))
        .hint(with_extra_hint(
            last,
            "or allow more time with --timeout / R4_TIMEOUT",
        )),
    };
    error.transient()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_the_url_would_fold_away_are_refused() {
        for bad in ["", ".", ".."] {
            let e = check_project_id(bad).unwrap_err();
            assert!(e.what().contains("is not a project id"), "{bad:?}: {e}");
            assert!(e.hint_text().is_some());
        }
        for good in ["507f1f77bcf86cd799439014", "...", ".a", "a..", "%2e%2e"] {
            assert!(check_project_id(good).is_ok(), "{good:?}");
        }
    }
}
