//! The HTTP server (one current-thread runtime, one task per connection; HTTPS when given a
//! [`TlsIdentity`]), and [`Emulator`]: the same server on a thread of its own, for tests that serve
//! from their own process.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use clap::Parser;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::oneshot;
use tokio_rustls::TlsAcceptor;

use crate::auth::Limit;
use crate::cli::Cli;
use crate::data::Data;
use crate::routes::State;
use crate::tls::TlsIdentity;

/// Binds `addr` for the runtime (non-blocking); returns the socket and the address actually bound.
pub(crate) fn bind(addr: SocketAddr) -> Result<(std::net::TcpListener, SocketAddr), String> {
    let listener =
        std::net::TcpListener::bind(addr).map_err(|e| format!("cannot listen on {addr}: {e}"))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot set up the listening socket: {e}"))?;
    let bound = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;
    Ok((listener, bound))
}

pub(crate) fn runtime() -> Result<tokio::runtime::Runtime, String> {
    tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))
}

/// How long a client may take over the TLS handshake before its connection is dropped, so that one
/// that stalls holds no task for ever.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Accepts and serves connections until the task is dropped: HTTPS with `tls`, else plain HTTP.
pub(crate) async fn serve(
    listener: tokio::net::TcpListener,
    state: Arc<State>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => stream,
            Err(e) => {
                // Typically EMFILE under load: wait a little instead of spinning.
                if state.log {
                    eprintln!("r4-emulator: accept failed: {e}");
                }
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
        };
        let _ = stream.set_nodelay(true);
        let state = Arc::clone(&state);
        let Some(tls) = tls.clone() else {
            tokio::spawn(serve_connection(stream, state));
            continue;
        };
        tokio::spawn(async move {
            match tokio::time::timeout(HANDSHAKE_TIMEOUT, tls.accept(stream)).await {
                Ok(Ok(stream)) => serve_connection(stream, state).await,
                Ok(Err(e)) if state.log => eprintln!("r4-emulator: TLS handshake failed: {e}"),
                Err(_) if state.log => eprintln!("r4-emulator: TLS handshake timed out"),
                _ => {}
            }
        });
    }
}

/// Serves HTTP/1.1 on one connection, plain or TLS, until it closes.
async fn serve_connection<Io>(io: Io, state: Arc<State>)
where
    Io: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let service =
        service_fn(move |req| std::future::ready(Ok::<_, Infallible>(state.handle(&req))));
    let _ = http1::Builder::new()
        .timer(TokioTimer::new())
        .serve_connection(TokioIo::new(io), service)
        .await;
}

/// How an [`Emulator`] serves: the command line's limits and request log, and HTTPS.
#[derive(Clone, Debug, PartialEq)]
pub struct Options {
    /// Requests allowed per key in each window (`--rate-limit`); `None` is `off`.
    pub rate_limit: Option<Limit>,
    /// Requests allowed per key per day (`--daily-limit`); `None` is `off`.
    pub daily_limit: Option<Limit>,
    /// One line per request on stderr (`--log`).
    pub log: bool,
    /// Serve HTTPS, presenting this (`--tls-self-signed`, `--tls-cert`); `None` is plain HTTP.
    /// [`TlsIdentity::self_signed`] makes a CA and a certificate for 127.0.0.1 (and other names).
    pub tls: Option<TlsIdentity>,
}

/// The command line's flags that mean something for a server in a test's process.
const IN_PROCESS_FLAGS: [&str; 3] = ["--rate-limit", "--daily-limit", "--log"];

impl Options {
    /// From the command line's own flags, as a test would pass them to the binary:
    /// `--rate-limit`, `--daily-limit` and `--log`. Any other flag is an error rather than ignored:
    /// an [`Emulator`] always listens on 127.0.0.1 and a free port, and serves the data it is given.
    /// (For HTTPS, set [`Options::tls`].)
    pub fn from_flags(flags: &[&str]) -> Result<Options, String> {
        for flag in flags.iter().filter(|arg| arg.starts_with('-')) {
            let name = flag.split_once('=').map_or(*flag, |(name, _)| name);
            if !IN_PROCESS_FLAGS.contains(&name) {
                return Err(format!(
                    "{flag} does not apply to an emulator in a test's process (only {})",
                    IN_PROCESS_FLAGS.join(", ")
                ));
            }
        }
        let args = ["r4-emulator", "--demo"]
            .into_iter()
            .chain(flags.iter().copied());
        let cli = Cli::try_parse_from(args).map_err(|e| e.to_string())?;
        Ok(Options {
            rate_limit: cli.rate_limit.0,
            daily_limit: cli.daily_limit.0,
            log: cli.log,
            tls: None,
        })
    }
}

impl Default for Options {
    /// The command line's defaults (`--rate-limit 100/60 --daily-limit 10000`, no log).
    fn default() -> Options {
        Options::from_flags(&[]).expect("the command line's defaults are valid")
    }
}

/// An emulator serving from a thread of its own, on 127.0.0.1 and a free port. Dropping it stops
/// the server: its port is closed when the drop returns.
pub struct Emulator {
    url: String,
    addr: SocketAddr,
    ca_pem: Option<String>,
    /// What it serves, to change while it runs.
    state: Arc<State>,
    /// Dropped to stop the server.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Serves `data`, the JSON of a data file (docs/emulator.md), over HTTPS when `options.tls` is
    /// set. The socket is listening when this returns, so a client may connect at once.
    pub fn start(data: &[u8], options: Options) -> Result<Emulator, String> {
        let data = Data::from_json(data).map_err(|e| format!("bad data: {e}"))?;
        let (listener, addr) = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0)))?;
        let runtime = runtime()?;
        let listener = {
            let _context = runtime.enter();
            tokio::net::TcpListener::from_std(listener)
                .map_err(|e| format!("cannot set up the listening socket: {e}"))?
        };
        let state = Arc::new(State::new(
            data,
            options.rate_limit,
            options.daily_limit,
            options.log,
        ));
        let tls = options.tls.as_ref().map(|identity| {
            let acceptor = TlsAcceptor::from(identity.server_config());
            (acceptor, identity.ca_pem().map(str::to_owned))
        });
        let scheme = if tls.is_some() { "https" } else { "http" };
        let (acceptor, ca_pem) = tls.unzip();
        let (stop, stopped) = oneshot::channel::<()>();
        let served = Arc::clone(&state);
        let thread = std::thread::Builder::new()
            .name("r4-emulator".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(serve(listener, served, acceptor));
                    // Err once the handle drops its sender: that is the signal to stop.
                    let _ = stopped.await;
                });
                // Dropping the runtime drops the server task, its listener and every connection.
                drop(runtime);
            })
            .map_err(|e| format!("cannot start the server thread: {e}"))?;
        Ok(Emulator {
            url: format!("{scheme}://{addr}"),
            addr,
            ca_pem: ca_pem.flatten(),
            state,
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT` (`https://` with TLS): the origin to give r4-run's `--base-url`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The address it listens on (127.0.0.1 and its port), e.g. for a base URL with a host name.
    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// Gives project `id` these variables from the next request on (a JSON object of strings), as
    /// a project whose variables are edited in R4 while a client watches it.
    pub fn set_project_env(&self, id: &str, env: &serde_json::Value) -> Result<(), String> {
        let mut data = (*self.state.data()).clone();
        data.set_env(id, env)?;
        self.state.replace(data);
        Ok(())
    }

    /// With a self-signed [`Options::tls`], the CA certificate (PEM) a client must trust.
    pub fn ca_pem(&self) -> Option<&str> {
        self.ca_pem.as_deref()
    }
}

impl Drop for Emulator {
    fn drop(&mut self) {
        drop(self.stop.take());
        if let Some(thread) = self.thread.take() {
            let _ = thread.join();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::{Read, Write};
    use std::net::TcpStream;

    const DATA: &[u8] =
        br#"{"keys":[{"key":"rk_t.secret"}],"projects":[{"id":"p1","env":{"A":"1"}}]}"#;

    fn get(url: &str, path: &str, key: &str) -> String {
        let addr = url.strip_prefix("http://").unwrap();
        let mut stream = TcpStream::connect(addr).unwrap();
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {addr}\r\nX-API-Key: {key}\r\nConnection: close\r\n\r\n"
        )
        .unwrap();
        let mut answer = String::new();
        stream.read_to_string(&mut answer).unwrap();
        answer
    }

    #[test]
    fn serves_until_dropped() {
        let emulator = Emulator::start(DATA, Options::default()).unwrap();
        let url = emulator.url().to_owned();
        let answer = get(&url, "/api/v1/machine/vault/env/p1", "rk_t.secret");
        assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
        assert!(
            answer.ends_with(r#"{"env":{"A":"1"},"projectId":"p1","count":1}"#),
            "{answer}"
        );

        drop(emulator);
        let refused = TcpStream::connect(url.strip_prefix("http://").unwrap()).unwrap_err();
        assert_eq!(refused.kind(), std::io::ErrorKind::ConnectionRefused);
    }

    #[test]
    fn options_apply() {
        let options =
            Options::from_flags(&["--rate-limit", "1/3600", "--daily-limit=off"]).unwrap();
        assert_eq!(options.daily_limit, None);
        let emulator = Emulator::start(DATA, options).unwrap();
        let path = "/api/v1/machine/vault/env/p1";
        assert!(get(emulator.url(), path, "rk_t.secret").starts_with("HTTP/1.1 200 "));
        assert!(get(emulator.url(), path, "rk_t.secret").starts_with("HTTP/1.1 429 "));
    }

    #[test]
    fn options_are_the_command_lines() {
        let defaults = Options::default();
        assert_eq!(defaults.rate_limit, Limit::parse_rate("100/60").unwrap());
        assert_eq!(defaults.daily_limit, Limit::parse_daily("10000").unwrap());
        assert!(!defaults.log);
        assert!(Options::from_flags(&["--log"]).unwrap().log);
        for refused in [
            &["--listen", "0.0.0.0:0"][..],
            &["--data", "x.json"],
            &["--exit-on-stdin-eof"],
            &["--rate-limit", "0/60"],
        ] {
            assert!(Options::from_flags(refused).is_err(), "{refused:?}");
        }
    }

    /// One GET over HTTPS, the server's certificate checked against `ca_pem` for `name`.
    fn https_get(url: &str, ca_pem: &str, name: &str, path: &str) -> std::io::Result<String> {
        let addr = url.strip_prefix("https://").unwrap();
        let mut stream = crate::tls::test_client::connect(addr, ca_pem, name);
        write!(
            stream,
            "GET {path} HTTP/1.1\r\nHost: {name}\r\nX-API-Key: rk_t.secret\r\nConnection: close\r\n\r\n"
        )?;
        let mut answer = String::new();
        stream.read_to_string(&mut answer)?;
        Ok(answer)
    }

    #[test]
    fn serves_https_under_its_own_ca() {
        let identity = TlsIdentity::self_signed(&["r4.test"]).unwrap();
        let options = Options {
            tls: Some(identity.clone()),
            ..Options::default()
        };
        let emulator = Emulator::start(DATA, options).unwrap();
        let port = emulator.addr().port();
        assert_eq!(emulator.url(), format!("https://127.0.0.1:{port}"));
        let ca = emulator.ca_pem().unwrap();
        assert_eq!(Some(ca), identity.ca_pem());
        // The certificate names every loopback spelling and the extra name.
        for name in ["127.0.0.1", "localhost", "::1", "r4.test"] {
            let answer =
                https_get(emulator.url(), ca, name, "/api/v1/machine/vault/env/p1").unwrap();
            assert!(
                answer.starts_with("HTTP/1.1 200 OK\r\n"),
                "{name}: {answer}"
            );
            assert!(
                answer.ends_with(r#"{"env":{"A":"1"},"projectId":"p1","count":1}"#),
                "{answer}"
            );
        }
        // A name it does not cover, and a CA that did not sign it, are refused by the client;
        // the server goes on serving.
        let stranger = TlsIdentity::self_signed(&[]).unwrap();
        for (ca, name) in [(ca, "r5.test"), (stranger.ca_pem().unwrap(), "127.0.0.1")] {
            let error = https_get(emulator.url(), ca, name, "/").unwrap_err();
            assert!(
                crate::tls::test_client::is_refused_certificate(&error),
                "{name}: {error:?}"
            );
        }
        assert!(https_get(emulator.url(), ca, "localhost", "/")
            .unwrap()
            .starts_with("HTTP/1.1 404 "));
    }

    #[test]
    fn a_plain_http_emulator_has_no_ca() {
        let emulator = Emulator::start(DATA, Options::default()).unwrap();
        assert!(emulator.url().starts_with("http://"));
        assert_eq!(emulator.ca_pem(), None);
        assert_eq!(Options::default().tls, None);
    }

    #[test]
    fn a_projects_variables_change_while_it_serves() {
        let emulator = Emulator::start(DATA, Options::default()).unwrap();
        let get = || {
            let mut stream = TcpStream::connect(emulator.addr()).unwrap();
            write!(
                stream,
                "GET /api/v1/machine/vault/env/p1 HTTP/1.1\r\nhost: x\r\nx-api-key: rk_t.secret\r\nconnection: close\r\n\r\n"
            )
            .unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        };
        assert!(get().contains(r#""env":{"A":"1"}"#));
        emulator
            .set_project_env("p1", &serde_json::json!({"A": "2", "B": "x"}))
            .unwrap();
        assert!(get().contains(r#""env":{"A":"2","B":"x"}"#));
        assert!(emulator
            .set_project_env("nope", &serde_json::json!({}))
            .is_err());
    }

    #[test]
    fn bad_data_is_an_error() {
        let error = Emulator::start(br#"{"keys":[{"key":"no-dot"}]}"#, Options::default())
            .err()
            .unwrap();
        assert!(error.starts_with("bad data: "), "{error}");
    }
}
