//! The command line as the user types it: flags, help and examples.
//!
//! This layer only describes and parses argv; `config` turns the raw values into a validated `Config`
//! and reads the `R4_*` environment fallbacks itself (so that an empty variable means unset, and an
//! environment value never counts as a flag given on the command line, e.g. in a conflict).
//! The API key has no flag on purpose: a key on argv is visible to every user of the machine.

use clap::{ArgAction, Parser, ValueEnum};
use std::ffi::OsString;
use std::path::PathBuf;

const EXAMPLES: &str = "\
Examples:
  R4_API_KEY=rk_xxx.yyy r4-run --project 507f1f77bcf86cd799439014 -- npm start
  r4-run -p my-project --api-key-file /run/secrets/r4_api_key -- ./server --port 8080
  r4-run -p my-project --only DATABASE_URL,REDIS_URL -- python manage.py migrate
  r4-run -p my-project --dotenv .env                     write a .env file and exit
  eval \"$(r4-run -p my-project --dotenv - --format shell)\"
  r4-run -p my-project --command 'psql \"$DATABASE_URL\" < schema.sql'

The API key is read from R4_API_KEY or from --api-key-file / R4_API_KEY_FILE, never from argv.
Neither reaches the command. Exit status: the command's own; 128+N if signal N killed it;
125 if r4-run failed (nothing was started); 126 if COMMAND cannot be executed; 127 if not found.";

#[derive(Debug, Parser)]
#[command(
    name = "r4-run",
    version,
    about = "Run a command with the variables of an R4 project in its environment.",
    after_help = EXAMPLES,
    max_term_width = 100
)]
pub struct Args {
    /// Project whose variables are fetched; repeat (or separate with commas) for several, merged in
    /// order, a later project winning a name clash [env: R4_PROJECT_ID]
    #[arg(short = 'p', long, value_name = "ID", value_delimiter = ',')]
    pub project: Vec<String>,

    /// R4 origin (https://r4.dev) or the full Machine API base URL [default: https://r4.dev] [env: R4_BASE_URL]
    #[arg(long, value_name = "URL")]
    pub base_url: Option<String>,

    /// Read the API key from the first line of this file (Docker and Kubernetes secrets) [env: R4_API_KEY_FILE]
    #[arg(long, value_name = "PATH")]
    pub api_key_file: Option<PathBuf>,

    /// Keep the value of a variable that is already set in the inherited environment
    #[arg(long, conflicts_with = "pristine")]
    pub preserve_env: bool,

    /// Give the command only the fetched variables, nothing inherited
    #[arg(long)]
    pub pristine: bool,

    /// Inject only these variables (comma-separated names)
    #[arg(long, value_name = "NAMES", value_delimiter = ',')]
    pub only: Option<Vec<String>>,

    /// Inject each variable as P_NAME
    #[arg(long, value_name = "P")]
    pub prefix: Option<String>,

    /// Deadline in seconds for fetching, retries included [default: 30] [env: R4_TIMEOUT]
    #[arg(long, value_name = "SECONDS")]
    pub timeout: Option<String>,

    /// Write the variables to PATH ('-' for stdout); exit unless a COMMAND follows
    #[arg(long, value_name = "PATH")]
    pub dotenv: Option<PathBuf>,

    /// Format for --dotenv
    #[arg(long, value_name = "FMT", requires = "dotenv", value_enum)]
    pub format: Option<FormatArg>,

    /// Pass the command's stdout and stderr through r4-run and replace every fetched value (6 bytes or more) in them by a marker naming it; the command's output is then no terminal [env: R4_MASK=1]
    #[arg(long, conflicts_with = "exec")]
    pub mask: bool,

    /// Keep fetching while the command runs; when the variables change, restart it with the new ones [env: R4_WATCH=1]
    #[arg(long, conflicts_with = "exec")]
    pub watch: bool,

    /// Seconds between fetches while watching [default: 60] [env: R4_WATCH_INTERVAL]
    #[arg(long, value_name = "SECONDS")]
    pub watch_interval: Option<String>,

    /// The signal that asks the command to stop before a restart (TERM, SIGINT, HUP, 15, ...) [default: TERM]
    #[arg(long, value_name = "SIG")]
    pub restart_signal: Option<String>,

    /// Seconds the command may take to stop before a restart, then SIGKILL [default: 10]
    #[arg(long, value_name = "SECONDS")]
    pub restart_grace: Option<String>,

    /// Write the variables to PATH (mode 0600) instead of the environment; the command finds the path in R4_SECRETS_PATH; PATH is removed when r4-run exits
    #[arg(long, value_name = "PATH", conflicts_with = "exec")]
    pub mount: Option<PathBuf>,

    /// Format of the --mount file
    #[arg(long, value_name = "FMT", requires = "mount", value_enum)]
    pub mount_format: Option<MountFormatArg>,

    /// Keep the last-known-good variables in PATH, encrypted with the API key; use them when the API cannot be reached
    #[arg(long, value_name = "PATH")]
    pub fallback: Option<PathBuf>,

    /// Refuse a fallback file older than this (90, 15m, 12h, 7d) [default: no limit]
    #[arg(long, value_name = "DURATION", requires = "fallback")]
    pub fallback_max_age: Option<String>,

    /// Do not contact the API: use the fallback file (offline development)
    #[arg(long, requires = "fallback")]
    pub fallback_only: bool,

    /// More diagnostics on stderr (repeat for more: -vvv); never shows a value
    #[arg(short, long, action = ArgAction::Count, conflicts_with = "quiet")]
    pub verbose: u8,

    /// Errors only
    #[arg(short, long)]
    pub quiet: bool,

    /// Reap orphaned descendants of the command as PID 1 would (become a child subreaper) [env: R4_RUN_SUBREAPER=1]
    #[arg(long, conflicts_with = "exec")]
    pub subreaper: bool,

    /// Replace r4-run by the command (exec) instead of supervising it: no signal relay, no reaping
    #[arg(long)]
    pub exec: bool,

    /// Run STRING with /bin/sh -c, instead of COMMAND ARGS after '--'
    #[arg(long = "command", value_name = "STRING", conflicts_with = "command")]
    pub shell_command: Option<OsString>,

    /// Print a man page or a shell completion script to stdout and exit (needs no key)
    #[arg(long, value_name = "KIND", value_enum, exclusive = true)]
    pub generate: Option<GenerateKind>,

    /// The command to run and its arguments, passed untouched (no shell)
    #[arg(value_name = "COMMAND", trailing_var_arg = true)]
    pub command: Vec<OsString>,
}

/// `--mount-format`: the `--format` renderings a program reads as a file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum MountFormatArg {
    /// one JSON object
    Json,
    /// NAME=value lines, quoted for dotenvy, python-dotenv and node dotenv
    Dotenv,
}

/// What `--generate` prints.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum GenerateKind {
    /// a man page (roff): r4-run --generate man > r4-run.1
    Man,
    /// bash completions
    CompleteBash,
    /// zsh completions
    CompleteZsh,
    /// fish completions
    CompleteFish,
    /// PowerShell completions
    CompletePowershell,
}

/// Which of `tokens` (the words after the command's name) are r4-run's own options: a user who
/// writes `r4-run sh -c 'x' -p demo` meant `-p demo` for r4-run, but everything after the command's
/// name is the command's. Only the short `-p` is considered, as the one that carries a setting.
pub fn own_options_in(tokens: &[String]) -> Vec<String> {
    use clap::CommandFactory;
    let command = Args::command();
    let mut found = Vec::new();
    for token in tokens {
        // Only the option's name is ever shown, never a value glued to it (`--base-url=…`, or a
        // `-pVALUE` that is often another program's secret, `mysql -pPASSWORD`).
        let name = if let Some(long) = token.strip_prefix("--") {
            let long = long.split('=').next().unwrap_or_default();
            command
                .get_arguments()
                .any(|a| a.get_long() == Some(long))
                .then(|| format!("--{long}"))
        } else {
            (token == "-p").then(|| token.clone())
        };
        if let Some(name) = name.filter(|n| !found.contains(n)) {
            found.push(name);
        }
    }
    found
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum FormatArg {
    /// NAME=value lines, quoted for dotenvy, python-dotenv and node dotenv
    Dotenv,
    /// export NAME='…' lines for a POSIX shell
    Shell,
    /// one JSON object
    Json,
    /// NAME=value lines for docker run --env-file (no quoting)
    Docker,
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::CommandFactory;

    #[test]
    fn verify_cli() {
        Args::command().debug_assert();
    }

    #[test]
    fn command_and_args_are_taken_untouched() {
        let a = Args::try_parse_from(["r4-run", "-p", "x", "--", "ls", "-la", "--", "--color"])
            .unwrap();
        assert_eq!(a.command, ["ls", "-la", "--", "--color"]);
        let a = Args::try_parse_from(["r4-run", "-p", "x", "env", "-0"]).unwrap();
        assert_eq!(a.command, ["env", "-0"]);
    }

    #[test]
    fn own_options_after_the_command_are_found() {
        let words = |w: &[&str]| w.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(
            own_options_in(&words(&["-c", "x", "-p", "demo", "--timeout=3", "--color"])),
            ["-p", "--timeout"]
        );
        assert!(own_options_in(&words(&["-u", "root", "-phunter2"])).is_empty());
        assert!(own_options_in(&words(&["-c", "-la", "--", "-v"])).is_empty());
    }

    #[test]
    fn only_is_comma_separated() {
        let a =
            Args::try_parse_from(["r4-run", "--only", "A,B", "--only", "C", "--", "x"]).unwrap();
        assert_eq!(a.only.unwrap(), ["A", "B", "C"]);
    }
}
