//! Raw flags → a validated, typed `Config`: the base URL rules, where the key comes from, the mode.
//!
//! Everything a user can get wrong on the command line is caught here, before any network or process
//! work, and reported with what to do.

use crate::api;
use crate::cli::{Args, FormatArg};
use crate::dotenv::{self, Format};
use crate::env::MergePolicy;
use crate::error::{Error, Result};
use crate::fallback;
use crate::platform;
use crate::secret::{ApiKey, SecretString};
use crate::supervise;
use reqwest::Url;
use std::ffi::OsString;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::time::Duration;

pub const DEFAULT_BASE_URL: &str = "https://r4.dev";
pub const MACHINE_API_PATH: &str = "/api/v1/machine";
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(30);
/// A key file is one short line; a bigger file is a wrong path, not a key.
const KEY_FILE_MAX_BYTES: u64 = 64 * 1024;

/// `--watch`, `--watch-interval`, `--restart-signal`, `--restart-grace`.
#[derive(Debug, Clone, Copy)]
pub struct WatchOptions {
    pub interval: Duration,
    pub restart_signal: libc::c_int,
    pub grace: Duration,
}

pub const DEFAULT_WATCH_INTERVAL: Duration = Duration::from_secs(60);
pub const DEFAULT_RESTART_GRACE: Duration = Duration::from_secs(10);

#[derive(Debug)]
pub struct Config {
    /// The projects whose variables are fetched, in order (a later one wins a name clash).
    pub projects: Vec<String>,
    /// The Machine API base, without a trailing slash (`https://r4.dev/api/v1/machine`).
    pub base: Url,
    pub key: ApiKey,
    /// Where the key came from, for messages (`R4_API_KEY` or the key file's path).
    pub key_source: String,
    pub timeout: Duration,
    pub merge: MergePolicy,
    pub dotenv: Option<dotenv::Target>,
    /// `--mask`: the command's output goes through r4-run, every value masked.
    pub mask: bool,
    /// `--watch` and its companions: restart the command when the variables change.
    pub watch: Option<WatchOptions>,
    /// `--mount`: the variables go to this file instead of the environment.
    pub mount: Option<dotenv::Mount>,
    pub fallback: Option<fallback::Options>,
    pub command: Option<supervise::CommandLine>,
    pub verbosity: i8,
    /// `--subreaper`: reap orphaned descendants as PID 1 would.
    pub subreaper: bool,
    /// `--exec`: replace r4-run by the command instead of supervising it.
    pub exec: bool,
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
        let command = match args.shell_command {
            // `--command STRING`: the shell POSIX guarantees, at the path it guarantees.
            Some(script) if script.is_empty() => {
                return Err(Error::new("--command is an empty string").hint(
                    "give the shell command to run: --command 'npm run migrate && npm start'",
                ))
            }
            Some(script) => Some(supervise::CommandLine {
                program: OsString::from("/bin/sh"),
                args: vec![OsString::from("-c"), script],
            }),
            None => {
                let mut words = args.command.into_iter();
                words.next().map(|program| supervise::CommandLine {
                    program,
                    args: words.collect(),
                })
            }
        };
        let dotenv = args.dotenv.map(|path| dotenv::Target {
            dest: if path.as_os_str() == "-" {
                dotenv::Dest::Stdout
            } else {
                dotenv::Dest::File(path)
            },
            format: match args.format.unwrap_or(FormatArg::Dotenv) {
                FormatArg::Dotenv => Format::Dotenv,
                FormatArg::Shell => Format::Shell,
                FormatArg::Json => Format::Json,
                FormatArg::Docker => Format::Docker,
            },
        });
        let mount = match args.mount {
            None => None,
            Some(path) => Some(dotenv::Mount {
                // The command gets the path in R4_SECRETS_PATH and may change directory.
                path: std::path::absolute(&path).map_err(|e| {
                    Error::new(format!("--mount {}: {e}", path.display()))
                        .hint("give --mount a file path")
                })?,
                format: match args.mount_format {
                    None | Some(crate::cli::MountFormatArg::Json) => Format::Json,
                    Some(crate::cli::MountFormatArg::Dotenv) => Format::Dotenv,
                },
            }),
        };
        let mask = args.mask || env_flag("R4_MASK", &env)?;
        if mask && args.exec {
            return Err(Error::new("--mask (R4_MASK) cannot be used with --exec")
                .hint("masking passes the command's output through r4-run, so r4-run must stay: leave out --exec"));
        }
        let watching = args.watch || env_flag("R4_WATCH", &env)?;
        if mask && watching {
            return Err(Error::new("--mask cannot be used with --watch yet")
                .hint("a restart brings new values to mask; use one of the two"));
        }
        let watch = if watching {
            if args.exec {
                return Err(Error::new("--watch (R4_WATCH) cannot be used with --exec")
                    .hint("--watch restarts the command, so r4-run must stay: leave out --exec"));
            }
            if command.is_none() {
                return Err(Error::new("--watch needs a command to run").hint(
                    "r4-run --watch -p ID -- COMMAND restarts COMMAND when the variables change",
                ));
            }
            let interval = match setting(args.watch_interval, "R4_WATCH_INTERVAL", &env)? {
                None => DEFAULT_WATCH_INTERVAL,
                Some((text, source)) => parse_seconds(&text, source, "--watch-interval", 1.0)?,
            };
            let grace = match args.restart_grace.filter(|t| !t.trim().is_empty()) {
                None => DEFAULT_RESTART_GRACE,
                Some(text) => parse_seconds(&text, "the command line", "--restart-grace", 0.0)?,
            };
            let restart_signal = match args.restart_signal.filter(|t| !t.trim().is_empty()) {
                None => libc::SIGTERM,
                Some(text) => parse_signal(&text)?,
            };
            Some(WatchOptions {
                interval,
                restart_signal,
                grace,
            })
        } else {
            if args.watch_interval.is_some()
                || args.restart_signal.is_some()
                || args.restart_grace.is_some()
            {
                crate::warn!("--watch-interval, --restart-signal and --restart-grace only count with --watch");
            }
            None
        };
        if mount.is_some() && command.is_none() {
            return Err(Error::new("--mount needs a command to run").hint(
                "the file exists while the command runs: r4-run --mount PATH -p ID -- COMMAND",
            ));
        }
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

        let from_flags: Vec<String> = args
            .project
            .into_iter()
            .filter(|p| !p.trim().is_empty())
            .collect();
        let named = if from_flags.is_empty() {
            setting(None, "R4_PROJECT_ID", &env)?
                .map(|(ids, _)| ids.split(',').map(str::to_owned).collect())
                .unwrap_or_default()
        } else {
            from_flags
        };
        let mut projects: Vec<String> = Vec::with_capacity(named.len());
        for id in named {
            if id.trim().is_empty() || projects.contains(&id) {
                continue; // `A,,B` and a repeated id are typing slips, not requests
            }
            if id.chars().any(char::is_control) {
                return Err(Error::new("a project id holds a control character")
                    .hint("check --project / R4_PROJECT_ID"));
            }
            projects.push(id);
        }
        if projects.is_empty() {
            return Err(Error::new("no project given")
                .hint("pass --project ID or set R4_PROJECT_ID (the project's id as shown in R4)"));
        }

        let base = match setting(args.base_url, "R4_BASE_URL", &env)? {
            Some((url, _)) => parse_base_url(&url)?,
            None => parse_base_url(DEFAULT_BASE_URL)?,
        };
        let timeout = match setting(args.timeout, "R4_TIMEOUT", &env)? {
            None => DEFAULT_TIMEOUT,
            Some((t, source)) => parse_timeout(&t, source)?,
        };
        let only = match args.only {
            None => None,
            Some(names) => {
                let names: Vec<String> = names.into_iter().filter(|n| !n.is_empty()).collect();
                if names.is_empty() {
                    return Err(Error::new("--only names no variable").hint(
                        "give the names to inject, comma-separated: --only DATABASE_URL,REDIS_URL\nor leave --only out to inject every variable",
                    ));
                }
                Some(names)
            }
        };
        let merge = MergePolicy {
            preserve_env: args.preserve_env,
            pristine: args.pristine,
            only,
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
            Some(path) => Some(fallback::Options {
                path,
                max_age: args
                    .fallback_max_age
                    .as_deref()
                    .map(fallback::parse_max_age)
                    .transpose()?,
                only: args.fallback_only,
            }),
            None => None,
        };

        if let (
            Some(fb),
            Some(dotenv::Target {
                dest: dotenv::Dest::File(out),
                ..
            }),
        ) = (&fallback, &dotenv)
        {
            if same_file(&fb.path, out) {
                return Err(Error::new(format!(
                    "--dotenv and --fallback name the same file, {}: the plaintext .env would overwrite the encrypted fallback",
                    out.display()
                ))
                .hint("give --fallback its own path, e.g. --fallback .r4-fallback --dotenv .env"));
            }
        }

        if let (Some(m), Some(fb)) = (&mount, &fallback) {
            if same_file(&m.path, &fb.path) {
                return Err(Error::new(format!(
                    "--mount and --fallback name the same file, {}",
                    m.path.display()
                ))
                .hint("give each its own path"));
            }
        }

        let subreaper = args.subreaper || env_flag("R4_RUN_SUBREAPER", &env)?;
        if subreaper && args.exec {
            // Only the environment can get here (the two flags conflict in clap): a container-wide
            // R4_RUN_SUBREAPER=1 should not stop one --exec run.
            crate::warn!("R4_RUN_SUBREAPER is ignored with --exec: no supervisor remains to reap");
        } else if subreaper && !platform::HAS_SUBREAPER {
            return Err(no_subreaper(args.subreaper, platform::NAME));
        }

        let key_file = match args.api_key_file.filter(|p| !p.as_os_str().is_empty()) {
            Some(path) => Some(path),
            None => env("R4_API_KEY_FILE")
                .filter(|v| !v.is_empty())
                .map(PathBuf::from),
        };
        let (key, key_source) = read_key(key_file.as_deref(), &env)?;
        Ok(Self {
            projects,
            base,
            key,
            key_source,
            timeout,
            merge,
            dotenv,
            mount,
            mask,
            watch,
            fallback,
            command,
            verbosity,
            subreaper: subreaper && !args.exec,
            exec: args.exec,
        })
    }

    /// The fetch of each project, as the API client takes it.
    pub fn requests(&self) -> Vec<api::Request<'_>> {
        api::requests(&self.base, &self.key, &self.projects, self.timeout)
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
        "http" if api::is_loopback(&url) => {}
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

fn parse_timeout(text: &str, source: &str) -> Result<Duration> {
    let secs: f64 = text.trim().parse().map_err(|_| {
        Error::new(format!(
            "the timeout {text:?} ({source}) is not a number of seconds"
        ))
        .hint("pass --timeout SECONDS or set R4_TIMEOUT, e.g. 30 or 2.5")
    })?;
    if !(secs.is_finite() && secs > 0.0 && secs <= 86_400.0) {
        return Err(
            Error::new(format!("the timeout {text:?} ({source}) is out of range"))
                .hint("give a number of seconds above 0 and at most 86400"),
        );
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A number of seconds for `flag`, at least `min` and at most a day.
fn parse_seconds(text: &str, source: &str, flag: &str, min: f64) -> Result<Duration> {
    let secs: f64 = text.trim().parse().map_err(|_| {
        Error::new(format!(
            "{flag} {text:?} ({source}) is not a number of seconds"
        ))
        .hint(format!("give {flag} a number of seconds, e.g. 60 or 2.5"))
    })?;
    if !(secs.is_finite() && secs >= min && secs <= 86_400.0) {
        return Err(
            Error::new(format!("{flag} {text:?} ({source}) is out of range")).hint(format!(
                "give {flag} at least {min} and at most 86400 seconds"
            )),
        );
    }
    Ok(Duration::from_secs_f64(secs))
}

/// A signal as people write it: `TERM`, `SIGTERM`, `sigterm` or `15`.
pub fn parse_signal(text: &str) -> Result<libc::c_int> {
    const NAMES: &[(&str, libc::c_int)] = &[
        ("HUP", libc::SIGHUP),
        ("INT", libc::SIGINT),
        ("QUIT", libc::SIGQUIT),
        ("KILL", libc::SIGKILL),
        ("USR1", libc::SIGUSR1),
        ("USR2", libc::SIGUSR2),
        ("ALRM", libc::SIGALRM),
        ("TERM", libc::SIGTERM),
        ("WINCH", libc::SIGWINCH),
    ];
    let trimmed = text.trim();
    if let Ok(number) = trimmed.parse::<libc::c_int>() {
        if NAMES.iter().any(|(_, n)| *n == number) {
            return Ok(number);
        }
    }
    let upper = trimmed.to_ascii_uppercase();
    let name = upper.strip_prefix("SIG").unwrap_or(&upper);
    NAMES
        .iter()
        .find(|(n, _)| *n == name)
        .map(|(_, s)| *s)
        .ok_or_else(|| {
            Error::new(format!(
                "--restart-signal {trimmed:?} is not a signal r4-run can send for a restart"
            ))
            .hint("give one of TERM, INT, HUP, QUIT, USR1, USR2, ALRM, WINCH, KILL (or its number)")
        })
}

/// A setting from its flag, else from its environment variable, with where it came from (for
/// messages). An empty or blank value, at either place, means unset: `ENV R4_BASE_URL=` in a
/// Dockerfile or an empty CI variable is how people unset a setting there.
fn setting(
    flag: Option<String>,
    var: &'static str,
    env: &impl Fn(&str) -> Option<OsString>,
) -> Result<Option<(String, &'static str)>> {
    if let Some(value) = flag.filter(|v| !v.trim().is_empty()) {
        return Ok(Some((value, "the command line")));
    }
    let Some(value) = env(var).filter(|v| !v.to_string_lossy().trim().is_empty()) else {
        return Ok(None);
    };
    match value.into_string() {
        Ok(value) => Ok(Some((value, var))),
        Err(_) => Err(Error::new(format!("{var} is not valid UTF-8"))
            .hint(format!("set {var} to plain text, or unset it"))),
    }
}

/// The error for a subreaper asked for (by the flag, or else `R4_RUN_SUBREAPER`) on a system that
/// has none: reaping was promised, and quietly not doing it would leave zombies behind.
fn no_subreaper(by_flag: bool, system: &str) -> Error {
    let asked = if by_flag {
        "--subreaper"
    } else {
        "R4_RUN_SUBREAPER"
    };
    let drop_it = if by_flag {
        "leave out --subreaper"
    } else {
        "unset R4_RUN_SUBREAPER"
    };
    Error::new(format!(
        "{asked}: {system} has no child subreaper, so r4-run cannot reap the command's orphans"
    ))
    .hint(format!(
        "{drop_it}: orphans then go to the system's init (launchd on macOS), which reaps them"
    ))
}

/// A yes/no environment variable (`R4_RUN_SUBREAPER`): 1/true/yes/on or 0/false/no/off, any case;
/// empty or unset is no.
fn env_flag(var: &str, env: &impl Fn(&str) -> Option<OsString>) -> Result<bool> {
    let Some(value) = env(var) else {
        return Ok(false);
    };
    let text = value.to_string_lossy();
    match text.trim().to_ascii_lowercase().as_str() {
        "" | "0" | "false" | "no" | "off" | "n" | "f" => Ok(false),
        "1" | "true" | "yes" | "on" | "y" | "t" => Ok(true),
        _ => Err(Error::new(format!(
            "{var} is {:?}, which is neither yes nor no",
            crate::report::shown(&text).to_string()
        ))
        .hint(format!(
            "set {var}=1 to turn it on, or {var}=0 (or unset it) to leave it off"
        ))),
    }
}

/// Whether two paths name the same file: the same inode when both exist, else the same absolute
/// path once the (existing) directories are resolved.
fn same_file(a: &Path, b: &Path) -> bool {
    use std::os::unix::fs::MetadataExt;
    if let (Ok(ma), Ok(mb)) = (std::fs::metadata(a), std::fs::metadata(b)) {
        return ma.dev() == mb.dev() && ma.ino() == mb.ino();
    }
    let resolved = |p: &Path| -> Option<PathBuf> {
        let name = p.file_name()?;
        let dir = match p.parent() {
            Some(d) if !d.as_os_str().is_empty() => d,
            _ => Path::new("."),
        };
        Some(std::fs::canonicalize(dir).ok()?.join(name))
    };
    match (resolved(a), resolved(b)) {
        (Some(ra), Some(rb)) => ra == rb,
        _ => a == b,
    }
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
            project: vec!["a/b c?#%".into()],
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
            shell_command: None,
            mount: None,
            mount_format: None,
            mask: false,
            watch: false,
            watch_interval: None,
            restart_signal: None,
            restart_grace: None,
            generate: None,
            command: vec!["true".into()],
        };
        let cfg =
            Config::from_args(args, |k| (k == "R4_API_KEY").then(|| "rk_a.b".into())).unwrap();
        assert_eq!(
            api::env_url(&cfg.base, &cfg.projects[0]).as_str(),
            "http://127.0.0.1:1/api/v1/machine/vault/env/a%2Fb%20c%3F%23%25"
        );
    }

    /// Parses `argv` with the real parser and `vars` as the whole environment.
    fn config_of(argv: &[&str], vars: &[(&str, &str)]) -> Result<Config> {
        use clap::Parser;
        let args = Args::try_parse_from(std::iter::once("r4-run").chain(argv.iter().copied()))
            .expect("clap accepts the command line");
        Config::from_args(args, |name| {
            vars.iter()
                .find(|(k, _)| *k == name)
                .map(|(_, v)| OsString::from(v))
        })
    }

    #[test]
    fn empty_settings_mean_unset() {
        let cfg = config_of(
            &["--", "true"],
            &[
                ("R4_API_KEY", "rk_a.b"),
                ("R4_PROJECT_ID", "p1"),
                ("R4_BASE_URL", ""),
                ("R4_TIMEOUT", " "),
                ("R4_API_KEY_FILE", ""),
                ("R4_RUN_SUBREAPER", ""),
            ],
        )
        .unwrap();
        assert_eq!(cfg.base.as_str(), "https://r4.dev/api/v1/machine");
        assert_eq!(cfg.timeout, DEFAULT_TIMEOUT);
        assert_eq!(cfg.key_source, "R4_API_KEY");
        assert!(!cfg.subreaper);
        // An empty flag is unset too, and then the environment speaks.
        let cfg = config_of(
            &["--project", "", "--base-url", "", "--", "true"],
            &[("R4_API_KEY", "rk_a.b"), ("R4_PROJECT_ID", "p2")],
        )
        .unwrap();
        assert_eq!(cfg.projects, ["p2"]);
        let e = config_of(
            &["--", "true"],
            &[("R4_API_KEY", "rk_a.b"), ("R4_PROJECT_ID", "")],
        )
        .unwrap_err();
        assert_eq!(e.what(), "no project given");
    }

    #[test]
    fn the_environment_never_counts_as_a_flag() {
        let key = ("R4_API_KEY", "rk_a.b");
        for off in ["0", "false", "no", "OFF", ""] {
            let cfg = config_of(
                &["--exec", "-p", "x", "--", "true"],
                &[key, ("R4_RUN_SUBREAPER", off)],
            )
            .unwrap();
            assert!(cfg.exec && !cfg.subreaper, "{off}");
        }
        let got = config_of(
            &["-p", "x", "--", "true"],
            &[key, ("R4_RUN_SUBREAPER", "1")],
        );
        if platform::HAS_SUBREAPER {
            assert!(got.unwrap().subreaper);
        } else {
            assert!(got.unwrap_err().what().starts_with("R4_RUN_SUBREAPER: "));
        }
        // Set for a whole container, it does not stop an --exec run: ignored (with a warning).
        let cfg = config_of(
            &["--exec", "-p", "x", "--", "true"],
            &[key, ("R4_RUN_SUBREAPER", "yes")],
        )
        .unwrap();
        assert!(cfg.exec && !cfg.subreaper);
        let e = config_of(
            &["-p", "x", "--", "true"],
            &[key, ("R4_RUN_SUBREAPER", "maybe")],
        )
        .unwrap_err();
        assert!(e.what().contains("R4_RUN_SUBREAPER"), "{e}");
        // Both on the command line is still a usage error.
        use clap::Parser;
        assert!(Args::try_parse_from(["r4-run", "--exec", "--subreaper", "--", "true"]).is_err());
    }

    #[test]
    fn a_subreaper_where_there_is_none_is_refused_by_name() {
        let flag = no_subreaper(true, "macOS");
        assert_eq!(
            flag.what(),
            "--subreaper: macOS has no child subreaper, so r4-run cannot reap the command's orphans"
        );
        assert!(
            flag.hint_text().unwrap().contains("leave out --subreaper"),
            "{flag:?}"
        );
        let env = no_subreaper(false, "macOS");
        assert!(env.what().starts_with("R4_RUN_SUBREAPER: macOS "), "{env}");
        assert!(
            env.hint_text().unwrap().contains("unset R4_RUN_SUBREAPER"),
            "{env:?}"
        );
        // Where there is one, the flag is taken.
        let got = config_of(
            &["-p", "x", "--subreaper", "--", "true"],
            &[("R4_API_KEY", "rk_a.b")],
        );
        assert_eq!(got.is_ok(), platform::HAS_SUBREAPER);
    }

    #[test]
    fn only_must_name_something() {
        let key = ("R4_API_KEY", "rk_a.b");
        for only in ["", ",", " "] {
            let got = config_of(&["-p", "x", "--only", only, "--", "true"], &[key]);
            if only == " " {
                // A blank name is a name (that no variable has): a warning later, not an error.
                assert!(got.is_ok());
                continue;
            }
            let e = got.unwrap_err();
            assert_eq!(e.what(), "--only names no variable", "{only:?}");
        }
        let cfg = config_of(&["-p", "x", "--only", "A,,B", "--", "true"], &[key]).unwrap();
        assert_eq!(cfg.merge.only.unwrap(), ["A", "B"]);
    }

    #[test]
    fn dotenv_and_fallback_may_not_share_a_file() {
        let dir = tempfile::tempdir().unwrap();
        let key = ("R4_API_KEY", "rk_a.b");
        let f = dir.path().join("state");
        let same = f.to_str().unwrap();
        let e = config_of(&["-p", "x", "--fallback", same, "--dotenv", same], &[key]).unwrap_err();
        assert!(e.what().contains("same file"), "{e}");
        // Spelled differently, still the same file.
        let other = format!("{}/./state", dir.path().display());
        assert!(config_of(&["-p", "x", "--fallback", same, "--dotenv", &other], &[key]).is_err());
        std::fs::write(&f, "x").unwrap();
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&f, &link).unwrap();
        let link = link.to_str().unwrap();
        assert!(config_of(&["-p", "x", "--fallback", same, "--dotenv", link], &[key]).is_err());
        let env_file = dir.path().join(".env");
        assert!(config_of(
            &[
                "-p",
                "x",
                "--fallback",
                same,
                "--dotenv",
                env_file.to_str().unwrap()
            ],
            &[key]
        )
        .is_ok());
    }

    #[test]
    fn watch_settings() {
        let key = ("R4_API_KEY", "rk_a.b");
        let cfg = config_of(&["--watch", "-p", "x", "--", "true"], &[key]).unwrap();
        let w = cfg.watch.unwrap();
        assert_eq!(w.interval, DEFAULT_WATCH_INTERVAL);
        assert_eq!(w.grace, DEFAULT_RESTART_GRACE);
        assert_eq!(w.restart_signal, libc::SIGTERM);
        let cfg = config_of(
            &[
                "-p",
                "x",
                "--restart-signal",
                "sighup",
                "--restart-grace",
                "0.5",
                "--",
                "true",
            ],
            &[key, ("R4_WATCH", "1"), ("R4_WATCH_INTERVAL", "2.5")],
        )
        .unwrap();
        let w = cfg.watch.unwrap();
        assert_eq!(w.interval, Duration::from_millis(2500));
        assert_eq!(w.grace, Duration::from_millis(500));
        assert_eq!(w.restart_signal, libc::SIGHUP);
        assert!(
            config_of(&["-p", "x", "--", "true"], &[key, ("R4_WATCH", "0")])
                .unwrap()
                .watch
                .is_none()
        );
        for bad in [
            &["--watch", "-p", "x", "--dotenv", "-"][..],
            &["--watch", "--watch-interval", "0", "-p", "x", "--", "true"],
            &[
                "--watch",
                "--restart-signal",
                "STOP",
                "-p",
                "x",
                "--",
                "true",
            ],
        ] {
            assert!(config_of(bad, &[key]).is_err(), "{bad:?}");
        }
        for (text, want) in [
            ("TERM", libc::SIGTERM),
            ("SIGINT", libc::SIGINT),
            ("15", 15),
            ("usr1", libc::SIGUSR1),
        ] {
            assert_eq!(parse_signal(text).unwrap(), want, "{text}");
        }
        assert!(parse_signal("99").is_err());
    }

    #[test]
    fn timeouts() {
        assert_eq!(
            parse_timeout("2.5", "R4_TIMEOUT").unwrap(),
            Duration::from_millis(2500)
        );
        for bad in ["0", "-1", "soon", "inf"] {
            assert!(parse_timeout(bad, "R4_TIMEOUT").is_err(), "{bad}");
        }
    }
}
