//! The HTTP server (one current-thread runtime, one task per connection), and [`Emulator`]: the
//! same server on a thread of its own, for tests that serve from their own process.

use std::convert::Infallible;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::Duration;

use clap::Parser;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};
use tokio::sync::oneshot;

use crate::auth::Limit;
use crate::cli::Cli;
use crate::data::Data;
use crate::routes::State;

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

/// Accepts and serves connections until the task is dropped.
pub(crate) async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
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
        tokio::spawn(async move {
            let service =
                service_fn(move |req| std::future::ready(Ok::<_, Infallible>(state.handle(&req))));
            let _ = http1::Builder::new()
                .timer(TokioTimer::new())
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

/// How an [`Emulator`] serves: the command line's limits and request log.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Options {
    /// Requests allowed per key in each window (`--rate-limit`); `None` is `off`.
    pub rate_limit: Option<Limit>,
    /// Requests allowed per key per day (`--daily-limit`); `None` is `off`.
    pub daily_limit: Option<Limit>,
    /// One line per request on stderr (`--log`).
    pub log: bool,
}

/// The command line's flags that mean something for a server in a test's process.
const IN_PROCESS_FLAGS: [&str; 3] = ["--rate-limit", "--daily-limit", "--log"];

impl Options {
    /// From the command line's own flags, as a test would pass them to the binary:
    /// `--rate-limit`, `--daily-limit` and `--log`. Any other flag is an error rather than ignored:
    /// an [`Emulator`] always listens on 127.0.0.1 and a free port, and serves the data it is given.
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
    /// Dropped to stop the server.
    stop: Option<oneshot::Sender<()>>,
    thread: Option<JoinHandle<()>>,
}

impl Emulator {
    /// Serves `data`, the JSON of a data file (docs/emulator.md). The socket is listening when this
    /// returns, so a client may connect at once.
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
        let (stop, stopped) = oneshot::channel::<()>();
        let thread = std::thread::Builder::new()
            .name("r4-emulator".to_owned())
            .spawn(move || {
                runtime.block_on(async move {
                    tokio::spawn(serve(listener, state));
                    // Err once the handle drops its sender: that is the signal to stop.
                    let _ = stopped.await;
                });
                // Dropping the runtime drops the server task, its listener and every connection.
                drop(runtime);
            })
            .map_err(|e| format!("cannot start the server thread: {e}"))?;
        Ok(Emulator {
            url: format!("http://{addr}"),
            stop: Some(stop),
            thread: Some(thread),
        })
    }

    /// `http://127.0.0.1:PORT`: the origin to give r4-run's `--base-url`.
    pub fn url(&self) -> &str {
        &self.url
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

    #[test]
    fn bad_data_is_an_error() {
        let error = Emulator::start(br#"{"keys":[{"key":"no-dot"}]}"#, Options::default())
            .err()
            .unwrap();
        assert!(error.starts_with("bad data: "), "{error}");
    }
}
