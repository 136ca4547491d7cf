//! Raw flags → a validated, typed `Config`: the base URL rules, where the key comes from, the mode.
//!
//! Everything a user can get wrong on the command line is caught here, before any network or process
//! work, and reported with what to do.

use crate::cli::{Args, FormatArg};
use crate::dotenv::Format;
use crate::error::{Error, Result};
use crate::secret::{ApiKey, SecretString};
use reqwest::Url;
use std::ffi::OsString;
use std::io::Read;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "https://r4.dev";
pub const MACHINE_API_PATH: &str = "/api/v1/machine";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A key file is one short line; a bigger file is a wrong path, not a key.
const KEY_FILE_MAX_BYTES: u64 = 64 * 1024;

#[derive(Debug)]
pub struct Config {
    pub project: String,
    /// The Machine API base, without a trailing slash (`https://r4.dev/api/v1/machine`).
    pub base: Url,
    pub key: ApiKey,
    /// Where the key came from, for messages (`R4_API_KEY` or the key file's path).
    pub key_source: String,
    pub timeout: Duration,
    pub merge: MergePolicy,
    pub dotenv: Option<DotenvTarget>,
    pub fallback: Option<FallbackFile>,
    pub command: Option<CommandLine>,
    pub verbosity: i8,
    /// `--subreaper`: reap orphaned descendants as PID 1 would.
    pub subreaper: bool,
    /// `--exec`: replace r4-run by the command instead of supervising it.
    pub exec: bool,
}

/// How fetched variables are filtered, renamed and combined with the inherited environment.
#[derive(Debug, Clone, Default)]
pub struct MergePolicy {
    pub preserve_env: bool,
    pub pristine: bool,
    pub only: Option<Vec<String>>,
    pub prefix: Option<String>,
}

#[derive(Debug)]
pub struct DotenvTarget {
    pub dest: DotenvDest,
    pub format: Format,
}

#[derive(Debug, PartialEq, Eq)]
pub enum DotenvDest {
    Stdout,
    File(PathBuf),
}

/// `--fallback PATH` and its companions.
#[derive(Debug)]
pub struct FallbackFile {
    pub path: PathBuf,
    pub max_age: Option<Duration>,
    /// `--fallback-only`: never contact the API.
    pub only: bool,
}

#[derive(Debug)]
pub struct CommandLine {
    pub program: OsString,
    pub args: Vec<OsString>,
}

impl Config {
    /// Validates `args`. `env` looks up r4-run's own environment (a parameter, so tests need not
    /// touch the process environment).
    pub fn from_args(args: Args, env: impl Fn(&str) -> Option<OsString>) -> Result<Self> {
        let verbosity = if args.quiet {
            -1
        } else {
            args.verbose.min(3) as i8
        };
        let mut command = args.command.into_iter();
        let command = command.next().map(|program| CommandLine {
            program,
            args: command.collect(),
        });
        let dotenv = args.dotenv.map(|path| DotenvTarget {
            dest: if path.as_os_str() == "-" {
                DotenvDest::Stdout
            } else {
                DotenvDest::File(path)
            },
            format: match args.format.unwrap_or(FormatArg::Dotenv) {
                FormatArg::Dotenv => Format::Dotenv,
                FormatArg::Shell => Format::Shell,
                FormatArg::Json => Format::Json,
                FormatArg::Docker => Format::Docker,
            },
        });
        if command.is_none() && dotenv.is_none() {
            return Err(Error::new("no command to run")
                .hint("put the command after '--': r4-run --project ID -- npm start\nor write a file with --dotenv PATH; see r4-run --help"));
        }
        if args.exec && command.is_none() {
            return Err(Error::new("--exec needs a command to run")
                .hint("put the command after '--': r4-run --exec --project ID -- npm start"));
        }
        if let Some(cmd) = &command {
            if cmd.program.is_empty() {
                return Err(Error::new("the command to run is an empty string"));
            }
        }

        let project = match args.project {
            Some(p) if !p.trim().is_empty() => p,
            _ => {
                return Err(Error::new("no project given").hint(
                    "pass --project ID or set R4_PROJECT_ID (the project's id as shown in R4)",
                ))
            }
        };
        if project.chars().any(char::is_control) {
            return Err(Error::new("the project id holds a control character")
                .hint("check --project / R4_PROJECT_ID"));
        }

        // An empty value (`ENV R4_BASE_URL=` in a Dockerfile, an empty CI variable) means "not set".
        let given = |v: Option<String>| v.filter(|v| !v.trim().is_empty());
        let base = parse_base_url(given(args.base_url).as_deref().unwrap_or(DEFAULT_BASE_URL))?;
        let timeout = match given(args.timeout).as_deref() {
            None => DEFAULT_TIMEOUT,
            Some(t) => parse_timeout(t)?,
        };
        let merge = MergePolicy {
            preserve_env: args.preserve_env,
            pristine: args.pristine,
            only: args
                .only
                .map(|names| names.into_iter().filter(|n| !n.is_empty()).collect()),
            prefix: args.prefix,
        };
        if let Some(p) = &merge.prefix {
            if p.is_empty() || p.contains(['=', '\0']) {
                return Err(
                    Error::new(format!("--prefix {p:?} cannot start a variable name"))
                        .hint("use letters, digits and '_', e.g. --prefix APP"),
                );
            }
        }

        let fallback = match args.fallback {
            Some(path) => Some(FallbackFile {
                path,
                max_age: args
                    .fallback_max_age
                    .as_deref()
                    .map(crate::fallback::parse_max_age)
                    .transpose()?,
                only: args.fallback_only,
            }),
            None => None,
        };

        let key_file = args.api_key_file.filter(|p| !p.as_os_str().is_empty());
        let (key, key_source) = read_key(key_file.as_deref(), &env)?;
        Ok(Self {
            project,
            base,
            key,
            key_source,
            timeout,
            merge,
            dotenv,
            fallback,
            command,
            verbosity,
            subreaper: args.subreaper,
            exec: args.exec,
        })
    }

    /// `{base}/vault/env/{projectId}`, the project id encoded as one path segment.
    pub fn env_url(&self) -> Url {
        let mut url = self.base.clone();
        url.path_segments_mut()
            .expect("an http(s) base URL always has path segments")
            .pop_if_empty()
            .extend(["vault", "env", self.project.as_str()]);
        url
    }
}

/// An origin gets `/api/v1/machine` appended; a URL with a path is taken as the full base.
/// Plain http is accepted only for a loopback host, so a key never crosses a network in clear.
pub fn parse_base_url(text: &str) -> Result<Url> {
    let bad = |why: &str| {
        Error::new(format!("the base URL {text:?} {why}"))
            .hint("pass --base-url or set R4_BASE_URL to an origin like https://r4.dev")
    };
    let mut url = Url::parse(text.trim()).map_err(|e| bad(&format!("is not a URL ({e})")))?;
    match url.scheme() {
        "https" => {}
        "http" if is_loopback(&url) => {}
        "http" => {
            return Err(Error::new(format!(
                "the base URL {text:?} uses plain http to a host that is not loopback: the API key would cross the network unencrypted"
            ))
            .hint("use https:// (plain http is accepted only for 127.0.0.1, ::1 and localhost)"))
        }
        other => return Err(bad(&format!("has the scheme {other:?}; use https://"))),
    }
    if url.host().is_none() {
        return Err(bad("has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(bad("holds a user name or password; remove them"));
    }
    if url.query().is_some() || url.fragment().is_some() {
        return Err(bad("has a query or fragment; remove it"));
    }
    if url.path() == "/" || url.path().is_empty() {
        url.set_path(MACHINE_API_PATH);
    } else {
        let trimmed = url.path().trim_end_matches('/').to_owned();
        url.set_path(&trimmed);
    }
    Ok(url)
}

/// Loopback as the contract defines it: 127.0.0.0/8, ::1 and `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(url::Host::Ipv4(ip)) => IpAddr::V4(ip).is_loopback(),
        Some(url::Host::Ipv6(ip)) => IpAddr::V6(ip).is_loopback(),
        Some(url::Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

fn parse_timeout(text: &str) -> Result<Duration> {
    let secs: f64 = text.trim().parse().map_err(|_| {
        Error::new(format!("the timeout {text:?} is not a number of seconds"))
            .hint("pass --timeout SECONDS or set R4_TIMEOUT, e.g. 30 or 2.5")
    })?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(Error::new(format!("the timeout {text:?} is out of range"))
            .hint("give a number of seconds above 0 and at most 86400"));
    }
    Ok(Duration::from_secs_f64(secs))
}

/// The key comes from a file when one is named (flag or `R4_API_KEY_FILE`), else from `R4_API_KEY`.
fn read_key(
    file: Option<&Path>,
    env: &impl Fn(&str) -> Option<OsString>,
) -> Result<(ApiKey, String)> {
    let (secret, source) = match file {
        Some(path) => (
            read_key_file(path)?,
            format!("the key file {}", path.display()),
        ),
        None => {
            let value = env("R4_API_KEY").filter(|v| !v.is_empty()).ok_or_else(|| {
                Error::new("no API key: R4_API_KEY is not set").hint(
                    "set R4_API_KEY to the key ({accessKey}.{secret}) from R4 → Settings → API Keys,\nor point --api-key-file / R4_API_KEY_FILE at a file that holds it",
                )
            })?;
            let value = value.into_string().map_err(|_| {
                Error::new("R4_API_KEY is not valid UTF-8")
                    .hint("set it to the key exactly as R4 shows it")
            })?;
            (
                SecretString::new(value.trim().to_owned()),
                "R4_API_KEY".to_owned(),
            )
        }
    };
    let key = ApiKey::parse(secret).map_err(|e| {
        Error::new(format!("{e} (read from {source})"))
            .hint("an R4 API key looks like rk_abc123.secretpart; copy it again from R4 → Settings → API Keys")
    })?;
    Ok((key, source))
}

fn read_key_file(path: &Path) -> Result<SecretString> {
    let shown = path.display();
    let file = std::fs::File::open(path).map_err(|e| {
        Error::new(format!("cannot open the API key file {shown}: {e}"))
            .hint("check --api-key-file / R4_API_KEY_FILE and that this user may read it")
    })?;
    let mut bytes = zeroize::Zeroizing::new(Vec::with_capacity(256));
    file.take(KEY_FILE_MAX_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|e| {
            Error::new(format!("cannot read the API key file {shown}: {e}"))
                .hint("check that --api-key-file names a regular, readable file")
        })?;
    if bytes.len() as u64 > KEY_FILE_MAX_BYTES {
        return Err(Error::new(format!(
            "the API key file {shown} is larger than 64 KiB: it is not a key"
        ))
        .hint("point --api-key-file at the file that holds only the key"));
    }
    let first_line = bytes.split(|&b| b == b'\n').next().unwrap_or_default();
    let text = std::str::from_utf8(first_line).map_err(|_| {
        Error::new(format!("the API key file {shown} is not text"))
            .hint("the file must hold the key ({accessKey}.{secret}) on its first line")
    })?;
    let text = text.trim();
    if text.is_empty() {
        return Err(Error::new(format!("the API key file {shown} is empty"))
            .hint("the file must hold the key ({accessKey}.{secret}) on its first line"));
    }
    Ok(SecretString::new(text.to_owned()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_origin_gets_the_machine_path() {
        for (given, want) in [
            ("https://r4.dev", "https://r4.dev/api/v1/machine"),
            ("https://r4.dev/", "https://r4.dev/api/v1/machine"),
            (
                "https://r4.dev/api/v1/machine/",
                "https://r4.dev/api/v1/machine",
            ),
            (
                "https://proxy.example/r4/machine",
                "https://proxy.example/r4/machine",
            ),
            (
                "http://127.0.0.1:8080",
                "http://127.0.0.1:8080/api/v1/machine",
            ),
            ("http://127.9.9.9:1/x", "http://127.9.9.9:1/x"),
            ("http://[::1]:9", "http://[::1]:9/api/v1/machine"),
            ("http://LocalHost:9", "http://localhost:9/api/v1/machine"),
        ] {
            assert_eq!(parse_base_url(given).unwrap().as_str(), want, "{given}");
        }
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for bad in [
            "http://r4.dev",
            "http://10.0.0.1",
            "http://localhost.evil.com",
            "http://[::2]",
        ] {
            let e = parse_base_url(bad).unwrap_err();
            assert!(e.hint_text().unwrap().contains("https://"), "{bad}");
        }
        assert!(parse_base_url("ftp://r4.dev").is_err());
        assert!(parse_base_url("r4.dev").is_err());
        assert!(parse_base_url("https://u:p@r4.dev").is_err());
    }

    #[test]
    fn the_project_id_is_one_encoded_segment() {
        let args = Args {
            project: Some("a/b c?#%".into()),
            base_url: Some("http://127.0.0.1:1".into()),
            api_key_file: None,
            preserve_env: false,
            pristine: false,
            only: None,
            prefix: None,
            timeout: None,
            dotenv: None,
            format: None,
            fallback: None,
            fallback_max_age: None,
            fallback_only: false,
            verbose: 0,
            quiet: false,
            subreaper: false,
            exec: false,
            command: vec!["true".into()],
        };
        let cfg =
            Config::from_args(args, |k| (k == "R4_API_KEY").then(|| "rk_a.b".into())).unwrap();
        assert_eq!(
            cfg.env_url().as_str(),
            "http://127.0.0.1:1/api/v1/machine/vault/env/a%2Fb%20c%3F%23%25"
        );
    }

    #[test]
    fn empty_settings_mean_unset() {
        use clap::Parser;
        let mut args = Args::try_parse_from(["r4-run", "-p", "x", "--", "true"]).unwrap();
        args.base_url = Some(String::new());
        args.timeout = Some(" ".into());
        args.api_key_file = Some(PathBuf::new());
        let cfg =
            Config::from_args(args, |k| (k == "R4_API_KEY").then(|| "rk_a.b".into())).unwrap();
        assert_eq!(cfg.base.as_str(), "https://r4.dev/api/v1/machine");
        assert_eq!(cfg.timeout, DEFAULT_TIMEOUT);
        assert_eq!(cfg.key_source, "R4_API_KEY");
    }

    #[test]
    fn timeouts() {
        assert_eq!(parse_timeout("2.5").unwrap(), Duration::from_millis(2500));
        assert!(parse_timeout("0").is_err());
        assert!(parse_timeout("-1").is_err());
        assert!(parse_timeout("soon").is_err());
        assert!(parse_timeout("inf").is_err());
    }
}
