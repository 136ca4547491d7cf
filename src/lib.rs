//! r4-run: fetch an R4 project's variables and run a command with them.
//!
//! The run, in order: parse → config → fetch → select/merge → (write dotenv) → spawn → wait → exit.
//! Each step lives in its own module; this file only strings them together (see docs/architecture.md).

pub mod api;
pub mod cli;
pub mod config;
pub mod dotenv;
pub mod env;
pub mod error;
pub mod exit;
pub mod fallback;
pub mod generate;
pub mod hardening;
pub mod mask;
pub mod platform;
pub mod report;
pub mod secret;
pub mod signals;
pub mod supervise;
pub mod vars;
pub mod wipe_alloc;

use crate::config::Config;
use crate::error::Error;
use crate::exit::Outcome;
use clap::Parser;
use std::ffi::OsString;

/// Runs r4-run with these arguments (the first is the program name) and says how it ended.
pub fn run(args: impl IntoIterator<Item = OsString>) -> Outcome {
    // First of all, while this is the only thread: every later thread inherits the mask, and a
    // signal that arrives before the child exists waits for us (see signals.rs).
    signals::block();
    let args = match cli::Args::try_parse_from(args) {
        Ok(args) => args,
        Err(e) => return usage_outcome(e),
    };
    if let Some(kind) = args.generate {
        return match generate::print(kind) {
            Ok(()) => Outcome::Done,
            Err(e) => Outcome::Failed(
                Error::new(format!("cannot write to stdout: {e}"))
                    .hint("redirect it to a file: r4-run --generate man > r4-run.1"),
            ),
        };
    }
    // Words that look like options after the command's name, for the hint of a config error.
    let after_command: Vec<String> = args
        .command
        .iter()
        .skip(1)
        .filter_map(|a| a.to_str())
        .filter(|a| a.starts_with('-'))
        .map(str::to_owned)
        .collect();
    let config = match Config::from_args(args, |name| std::env::var_os(name)) {
        Ok(config) => config,
        Err(e) => return Outcome::Failed(with_misplaced_options(e, &after_command)),
    };
    report::set_verbosity(config.verbosity);
    // The key is in `config` now; the copy the kernel put in our environment block goes.
    hardening::scrub_own_environment();
    match run_config(config) {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

fn run_config(config: Config) -> Result<Outcome, Outcome> {
    let fetched = match fallback::fetch_or_fall_back(config.requests(), config.fallback.as_ref()) {
        Ok(fetched) => fetched,
        // A TERM, INT, HUP or QUIT during the fetch ends the run as that signal would have.
        Err(e) => match signals::block().take_pending_before_spawn() {
            Some(signal) => return Err(Outcome::ChildKilled(signal)),
            None => return Err(Outcome::Failed(e)),
        },
    };
    verbose!(
        1,
        "{} {} {} {} variables",
        if config.projects.len() == 1 {
            "project"
        } else {
            "projects"
        },
        config.projects.join(", "),
        if config.projects.len() == 1 {
            "has"
        } else {
            "have"
        },
        fetched.len()
    );
    if report::verbosity() >= 2 {
        let names: Vec<String> = fetched
            .vars
            .iter()
            .map(|(n, _)| report::shown(n).to_string())
            .collect();
        verbose!(2, "names: {}", names.join(", "));
    }

    let (selected, notices) = env::select(&fetched, &config.merge);
    for notice in &notices {
        warn!("{notice}");
    }
    if let Some(target) = &config.dotenv {
        dotenv::write_selected(target, &selected)?;
    }
    // Held to the end of the run: dropping it removes the file.
    let mounted = match &config.mount {
        Some(mount) => Some(dotenv::mount(mount, &selected)?),
        None => None,
    };
    let Some(command) = &config.command else {
        return Ok(Outcome::Done);
    };
    verbose!(
        1,
        "passing {} variables to {}",
        selected.len(),
        command.program.to_string_lossy()
    );
    // A TERM, INT, HUP or QUIT that came during the fetch was meant to end this run: honour it
    // instead of starting a child only to stop it.
    if let Some(signal) = signals::block().take_pending_before_spawn() {
        verbose!(
            1,
            "{} arrived before the command started; not starting it",
            signals::name(signal)
        );
        return Err(Outcome::ChildKilled(signal));
    }
    let child_env = match &mounted {
        // The values are in the file: the environment gets only where it is.
        Some(mounted) => {
            env::merge_with_secrets_path(std::env::vars_os(), mounted.path(), &config.merge)
        }
        None => env::merge(std::env::vars_os(), selected, &config.merge),
    };
    let argv = std::iter::once(command.program.as_os_str())
        .chain(command.args.iter().map(|a| a.as_os_str()));
    let limits = env::ExecLimits {
        per_string: platform::max_exec_string(),
        total: platform::max_exec_total(),
    };
    if let Err(too_big) = env::check_exec_limits(&child_env, argv, limits) {
        return Err(Outcome::Failed(
            Error::new(too_big.to_string()).hint(too_big.hint()),
        ));
    }
    if config.exec {
        // Returns only if exec failed; on success this image, secrets and all, is gone.
        return Err(supervise::exec(command, child_env));
    }
    let mode = supervise::Mode::detect(config.subreaper);
    let prepared = supervise::prepare(command, child_env, mode)?;
    // Our copies go before the child exists, so that none is left by the time it runs: our types
    // zeroize themselves, the allocator wipes every library buffer freed with them, and the stack the
    // fetch used is overwritten. Only the prepared command's copy remains, until the child has exec'd.
    drop(fetched);
    drop(config);
    hardening::wipe_used_stack();
    let child = prepared.spawn()?;
    // After the spawn, so the child's own core-dump limit stays as it was.
    hardening::forbid_core_dumps();
    Ok(supervise::supervise(child, mode))
}

/// A configuration error, with a note when some of r4-run's own options came after the command's
/// name (and so went to the command).
fn with_misplaced_options(e: Error, after_command: &[String]) -> Error {
    let misplaced = cli::own_options_in(after_command);
    if misplaced.is_empty() {
        return e;
    }
    e.add_hint(format!(
        "note: {} came after the command's name, so it was passed to the command, not to r4-run;\nput r4-run's options first and the command after '--': r4-run -p ID -- COMMAND ARGS",
        misplaced.join(" ")
    ))
}

/// A usage error from clap becomes a 125 in the contract's message format; `--help` and
/// `--version` print as usual and succeed.
fn usage_outcome(e: clap::Error) -> Outcome {
    use clap::error::ErrorKind;
    if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion) {
        let _ = e.print();
        return Outcome::Done;
    }
    let text = e.render().to_string();
    // clap's first paragraph says what is wrong (possibly over several lines); a later "tip:" helps.
    let mut paragraphs = text.split("\n\n");
    let first = paragraphs.next().unwrap_or("invalid arguments");
    let first = first.strip_prefix("error: ").unwrap_or(first);
    let what = first.lines().map(str::trim).collect::<Vec<_>>().join(" ");
    let tip = paragraphs
        .flat_map(str::lines)
        .find_map(|l| l.trim().strip_prefix("tip: "))
        .map(str::to_owned);
    let hint = match tip {
        Some(tip) => format!("{tip}\nsee r4-run --help"),
        None => "see r4-run --help".to_owned(),
    };
    Outcome::Failed(Error::new(what).hint(hint))
}
