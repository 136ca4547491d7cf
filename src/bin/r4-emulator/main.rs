//! `r4-emulator`: a local emulator of the R4 Machine API, for r4-run's tests, benchmarks and demo.
//!
//! ```text
//! r4-emulator (--data FILE | --demo) [--listen ADDR] [--allow-remote] [--rate-limit N/SECS|off]
//!             [--daily-limit N|off] [--log] [--exit-on-stdin-eof]
//! ```
//!
//! After binding it prints exactly one line on stdout, `listening on http://IP:PORT`, and serves
//! until it is killed (SIGTERM, SIGINT), or until stdin reaches end of file with
//! `--exit-on-stdin-eof`. Single-threaded; every success answer is serialized once at load time.
//!
//! Modules: [`cli`] the command line, [`data`] the data file (its schema is documented there),
//! [`auth`] keys and rate limits, [`routes`] routing and handlers, [`errors`] the error envelope.
//! See docs/emulator.md.

mod auth;
mod cli;
mod data;
mod errors;
mod routes;

use std::convert::Infallible;
use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;
use std::time::Duration;

use clap::Parser;
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper_util::rt::{TokioIo, TokioTimer};

use crate::cli::Cli;
use crate::data::Data;
use crate::routes::State;

fn main() -> ExitCode {
    let cli = Cli::parse();
    match run(cli) {
        Ok(()) => ExitCode::SUCCESS,
        Err(message) => {
            eprintln!("r4-emulator: error: {message}");
            ExitCode::from(2)
        }
    }
}

fn run(cli: Cli) -> Result<(), String> {
    cli.check()?;
    let data = match &cli.data {
        Some(path) => {
            let text =
                std::fs::read(path).map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            Data::from_json(&text).map_err(|e| format!("bad data file {}: {e}", path.display()))?
        }
        None => Data::demo(),
    };

    let listener = std::net::TcpListener::bind(cli.listen)
        .map_err(|e| format!("cannot listen on {}: {e}", cli.listen))?;
    listener
        .set_nonblocking(true)
        .map_err(|e| format!("cannot set up the listening socket: {e}"))?;
    let addr = listener
        .local_addr()
        .map_err(|e| format!("cannot read the listening address: {e}"))?;

    if cli.demo {
        eprintln!("r4-emulator: demo mode (not for real secrets)");
        eprintln!("  API key:    {}", data::DEMO_KEY);
        eprintln!("  project id: {}", data::DEMO_PROJECT);
        eprintln!(
            "  try: R4_API_KEY={} r4-run --base-url http://{addr} -p {} -- env",
            data::DEMO_KEY,
            data::DEMO_PROJECT
        );
    }

    if cli.exit_on_stdin_eof {
        std::thread::spawn(|| {
            let _ = std::io::copy(&mut std::io::stdin().lock(), &mut std::io::sink());
            std::process::exit(0);
        });
    }

    let state = Arc::new(State::new(
        data,
        cli.rate_limit.0,
        cli.daily_limit.0,
        cli.log,
    ));

    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_io()
        .enable_time()
        .build()
        .map_err(|e| format!("cannot start the runtime: {e}"))?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot set up the listening socket: {e}"))?;

        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on http://{addr}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
        drop(stdout);

        serve(listener, state).await;
        Ok(())
    })
}

async fn serve(listener: tokio::net::TcpListener, state: Arc<State>) {
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
