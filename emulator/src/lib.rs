//! `r4-emulator`: a local emulator of the R4 Machine API, for r4-run's tests, benchmarks and demo.
//!
//! ```text
//! r4-emulator (--data FILE | --demo) [--listen ADDR] [--allow-remote] [--rate-limit N/SECS|off]
//!             [--daily-limit N|off] [--log] [--exit-on-stdin-eof]
//!             [--tls-cert FILE --tls-key FILE | --tls-self-signed CA_OUT_FILE [--tls-name NAME]...]
//! ```
//!
//! After binding it prints exactly one line on stdout, `listening on http://IP:PORT` (`https://`
//! with TLS), and serves
//! until it is killed (SIGTERM, SIGINT), or until stdin reaches end of file with
//! `--exit-on-stdin-eof`. Single-threaded; every success answer is serialized once at load time.
//!
//! A library with a thin binary (`src/main.rs` calls [`main`]), so that a test can also serve from
//! its own process: [`Emulator`] runs the same server on a thread of its own.
//!
//! Modules: [`cli`] the command line, [`data`] the data file (its schema is documented there),
//! [`auth`] keys and rate limits, [`routes`] routing and handlers, [`errors`] the error envelope,
//! [`server`] the HTTP server and [`Emulator`], [`tls`] certificates for HTTPS. See docs/emulator.md.

mod auth;
mod cli;
mod data;
mod errors;
mod routes;
mod server;
pub mod tls;

use std::io::Write;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;

use crate::cli::Cli;
use crate::data::Data;
use crate::routes::State;

pub use crate::auth::Limit;
pub use crate::data::{DEMO_KEY, DEMO_PROJECT};
pub use crate::server::{Emulator, Options};
pub use crate::tls::TlsIdentity;

/// The `r4-emulator` command: exit status 0 when stdin ends (`--exit-on-stdin-eof`), 2 on any error.
pub fn main() -> ExitCode {
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

    let tls = tls_identity(&cli)?;
    let scheme = if tls.is_some() { "https" } else { "http" };

    let (listener, addr) = server::bind(cli.listen)?;

    if cli.demo {
        let trust = match &cli.tls_self_signed {
            Some(ca) => format!("SSL_CERT_FILE={} ", ca.display()),
            None => String::new(),
        };
        eprintln!("r4-emulator: demo mode (not for real secrets)");
        eprintln!("  API key:    {}", data::DEMO_KEY);
        eprintln!("  project id: {}", data::DEMO_PROJECT);
        eprintln!(
            "  try: R4_API_KEY={} {trust}r4-run --base-url {scheme}://{addr} -p {} -- env",
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

    let mut state = State::new(data, cli.rate_limit.0, cli.daily_limit.0, cli.log);
    if let Some(path) = &cli.data {
        // An edited data file is served from the next request on (to try r4-run --watch).
        state = state.reloading_from(path.clone());
    }
    let state = Arc::new(state);

    let runtime = server::runtime()?;
    runtime.block_on(async move {
        let listener = tokio::net::TcpListener::from_std(listener)
            .map_err(|e| format!("cannot set up the listening socket: {e}"))?;

        let mut stdout = std::io::stdout().lock();
        writeln!(stdout, "listening on {scheme}://{addr}")
            .and_then(|()| stdout.flush())
            .map_err(|e| format!("cannot write to stdout: {e}"))?;
        drop(stdout);

        let acceptor = tls.map(|identity| identity.server_config().into());
        server::serve(listener, state, acceptor).await;
        Ok(())
    })
}

/// What to present over HTTPS, if anything. With `--tls-self-signed`, the new CA's certificate is
/// written to its file before anything is bound, so it is there when the listening line is.
fn tls_identity(cli: &Cli) -> Result<Option<TlsIdentity>, String> {
    if let Some(ca_out) = &cli.tls_self_signed {
        let names: Vec<&str> = cli.tls_names.iter().map(String::as_str).collect();
        let identity = TlsIdentity::self_signed(&names)?;
        let ca_pem = identity
            .ca_pem()
            .expect("a self-signed identity has its CA");
        std::fs::write(ca_out, ca_pem).map_err(|e| {
            format!(
                "cannot write the CA certificate to {}: {e}",
                ca_out.display()
            )
        })?;
        return Ok(Some(identity));
    }
    match (&cli.tls_cert, &cli.tls_key) {
        (Some(cert), Some(key)) => TlsIdentity::from_pem_files(cert, key).map(Some),
        _ => Ok(None),
    }
}
