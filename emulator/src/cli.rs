//! The command line.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::path::PathBuf;

use clap::Parser;

use crate::auth::Limit;

/// A local emulator of the R4 Machine API (GET /vault/env/{projectId} and GET /project), for tests,
/// benchmarks and trying r4-run without an account. See docs/emulator.md.
#[derive(Parser, Debug)]
#[command(name = "r4-emulator", version)]
pub struct Cli {
    /// JSON data file with the keys and projects to serve (schema in docs/emulator.md)
    #[arg(
        long,
        value_name = "FILE",
        conflicts_with = "demo",
        required_unless_present = "demo"
    )]
    pub data: Option<PathBuf>,

    /// Serve built-in demo data (the key and project id are printed on stderr)
    #[arg(long)]
    pub demo: bool,

    /// Address to listen on (port 0 picks a free port)
    #[arg(long, value_name = "ADDR", default_value = "127.0.0.1:0", value_parser = parse_listen)]
    pub listen: SocketAddr,

    /// Allow a --listen address that is not loopback (the emulator serves secrets, unencrypted)
    #[arg(long)]
    pub allow_remote: bool,

    /// Serve HTTPS with this certificate chain (PEM, the server's certificate first)
    #[arg(
        long,
        value_name = "FILE",
        requires = "tls_key",
        conflicts_with = "tls_self_signed"
    )]
    pub tls_cert: Option<PathBuf>,

    /// The private key of --tls-cert (PEM: PKCS#8, PKCS#1 or SEC1)
    #[arg(long, value_name = "FILE", requires = "tls_cert")]
    pub tls_key: Option<PathBuf>,

    /// Serve HTTPS under a CA of its own, made at start, with a certificate for localhost,
    /// 127.0.0.1 and ::1; write the CA's certificate (PEM) to CA_OUT_FILE for the clients
    #[arg(long, value_name = "CA_OUT_FILE")]
    pub tls_self_signed: Option<PathBuf>,

    /// Another name (DNS name or IP address) for the --tls-self-signed certificate; repeatable
    #[arg(long = "tls-name", value_name = "NAME", requires = "tls_self_signed",
          value_parser = |s: &str| crate::tls::check_name(s).map(|()| s.to_owned()))]
    pub tls_names: Vec<String>,

    /// Requests allowed per key in each window, N/SECS, or `off`
    #[arg(long, value_name = "N/SECS", default_value = "100/60", value_parser = |s: &str| Limit::parse_rate(s).map(MaybeLimit))]
    pub rate_limit: MaybeLimit,

    /// Requests allowed per key per day (86400 s window), or `off`
    #[arg(long, value_name = "N", default_value = "10000", value_parser = |s: &str| Limit::parse_daily(s).map(MaybeLimit))]
    pub daily_limit: MaybeLimit,

    /// Log one line per request on stderr: method, path, status, key access id
    #[arg(long)]
    pub log: bool,

    /// Exit when standard input reaches end of file (so a test's emulator dies with the test)
    #[arg(long)]
    pub exit_on_stdin_eof: bool,
}

/// A limit, or none (`off`).
#[derive(Clone, Copy, Debug)]
pub struct MaybeLimit(pub Option<Limit>);

/// `IP:PORT`, `[IPv6]:PORT`, or `localhost:PORT` (taken as 127.0.0.1; never resolved otherwise).
fn parse_listen(text: &str) -> Result<SocketAddr, String> {
    if let Ok(addr) = text.parse::<SocketAddr>() {
        return Ok(addr);
    }
    if let Some(port) = text.strip_prefix("localhost:") {
        let port: u16 = port.parse().map_err(|_| format!("bad port in {text:?}"))?;
        return Ok(SocketAddr::new(IpAddr::V4(Ipv4Addr::LOCALHOST), port));
    }
    // Host names are refused: the loopback check must be about the address actually bound.
    Err(format!(
        "expected IP:PORT (e.g. 127.0.0.1:8080), got {text:?}"
    ))
}

impl Cli {
    /// Refuse a non-loopback listen address unless `--allow-remote`.
    pub fn check(&self) -> Result<(), String> {
        if !self.listen.ip().is_loopback() && !self.allow_remote {
            let how = if self.tls() {
                "with a test certificate"
            } else {
                "over plain HTTP"
            };
            return Err(format!(
                "refusing to listen on {}, which is not a loopback address: the emulator serves \
                 secrets {how}; add --allow-remote if you really mean it",
                self.listen
            ));
        }
        Ok(())
    }

    /// Whether it serves HTTPS.
    pub fn tls(&self) -> bool {
        self.tls_cert.is_some() || self.tls_self_signed.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
        Cli::try_parse_from(std::iter::once("r4-emulator").chain(args.iter().copied()))
    }

    #[test]
    fn defaults() {
        let cli = parse(&["--demo"]).unwrap();
        assert_eq!(cli.listen, "127.0.0.1:0".parse().unwrap());
        assert_eq!(cli.rate_limit.0.unwrap().limit, 100);
        assert_eq!(cli.rate_limit.0.unwrap().period.as_secs(), 60);
        assert_eq!(cli.daily_limit.0.unwrap().limit, 10_000);
        assert!(cli.check().is_ok());
    }

    #[test]
    fn data_or_demo() {
        assert!(parse(&[]).is_err());
        assert!(parse(&["--demo", "--data", "x.json"]).is_err());
        assert!(parse(&["--data", "x.json"]).is_ok());
    }

    #[test]
    fn listen_addresses() {
        assert!(parse(&["--demo", "--listen", "[::1]:0"])
            .unwrap()
            .check()
            .is_ok());
        assert_eq!(
            parse(&["--demo", "--listen", "localhost:9"])
                .unwrap()
                .listen,
            "127.0.0.1:9".parse().unwrap()
        );
        let remote = parse(&["--demo", "--listen", "0.0.0.0:0"]).unwrap();
        assert!(remote.check().is_err());
        let remote = parse(&["--demo", "--listen", "0.0.0.0:0", "--allow-remote"]).unwrap();
        assert!(remote.check().is_ok());
        assert!(parse(&["--demo", "--listen", "example.com:80"]).is_err());
    }

    #[test]
    fn tls_flags() {
        let cli = parse(&[
            "--demo",
            "--tls-self-signed",
            "ca.pem",
            "--tls-name",
            "r4.test",
        ])
        .unwrap();
        assert!(cli.tls());
        assert_eq!(cli.tls_names, ["r4.test"]);
        let cli = parse(&["--demo", "--tls-cert", "c.pem", "--tls-key", "k.pem"]).unwrap();
        assert!(cli.tls() && cli.tls_self_signed.is_none());
        assert!(!parse(&["--demo"]).unwrap().tls());
        for refused in [
            &["--tls-cert", "c.pem"][..],
            &["--tls-key", "k.pem"],
            &[
                "--tls-cert",
                "c.pem",
                "--tls-key",
                "k.pem",
                "--tls-self-signed",
                "ca.pem",
            ],
            &["--tls-name", "r4.test"],
            &["--tls-self-signed", "ca.pem", "--tls-name", "two words"],
        ] {
            let args: Vec<&str> = ["--demo"].iter().chain(refused).copied().collect();
            assert!(parse(&args).is_err(), "{refused:?}");
        }
    }

    #[test]
    fn limits_off() {
        let cli = parse(&["--demo", "--rate-limit", "off", "--daily-limit", "off"]).unwrap();
        assert!(cli.rate_limit.0.is_none() && cli.daily_limit.0.is_none());
        assert!(parse(&["--demo", "--rate-limit", "0/60"]).is_err());
    }
}
