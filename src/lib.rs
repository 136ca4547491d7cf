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
pub mod hardening;
pub mod report;
pub mod secret;
pub mod signals;
pub mod supervise;
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
    let config = match Config::from_args(args, |name| std::env::var_os(name)) {
        Ok(config) => config,
        Err(e) => return Outcome::Failed(e),
    };
    report::set_verbosity(config.verbosity);
    // The key is in `config` now; the copy the kernel put in our environment block goes.
    hardening::scrub_own_environment();
    match run_config(config) {
        Ok(outcome) | Err(outcome) => outcome,
    }
}

fn run_config(config: Config) -> Result<Outcome, Outcome> {
    let fetched = match fetch_or_fall_back(&config) {
        Ok(fetched) => fetched,
        // A TERM, INT, HUP or QUIT during the fetch ends the run as that signal would have.
        Err(e) => match signals::block().take_pending_before_spawn() {
            Some(signal) => return Err(Outcome::ChildKilled(signal)),
            None => return Err(Outcome::Failed(e)),
        },
    };
    verbose!(
        1,
        "project {} has {} variables",
        config.project,
        fetched.len()
    );
    if report::verbosity() >= 2 {
        let names: Vec<&str> = fetched.vars.iter().map(|(n, _)| n.as_str()).collect();
        verbose!(2, "names: {}", names.join(", "));
    }

    let (selected, notices) = env::select(&fetched, &config.merge);
    for notice in &notices {
        warn!("{notice}");
    }
    if let Some(target) = &config.dotenv {
        write_dotenv(target, &selected)?;
    }
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
    let child_env = env::merge(std::env::vars_os(), selected, &config.merge);
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

/// The project's variables from the API; with `--fallback`, saved after a good fetch, and used
/// instead when the API cannot be reached (never when it answered that the key or project is wrong).
fn fetch_or_fall_back(config: &Config) -> Result<api::Fetched, Error> {
    let load = |fb: &config::FallbackFile| {
        fallback::load(
            &fb.path,
            &config.key,
            &config.project,
            fb.max_age,
            std::time::SystemTime::now(),
        )
    };
    let fb = match &config.fallback {
        Some(fb) if fb.only => {
            let loaded = load(fb)?;
            verbose!(
                1,
                "using the fallback file {} ({} old; --fallback-only)",
                fb.path.display(),
                fallback::human(loaded.age)
            );
            return Ok(loaded.fetched);
        }
        other => other,
    };
    let fetched = api::fetch_env(&api::Request {
        url: config.env_url(),
        key: &config.key,
        project: &config.project,
        timeout: config.timeout,
        give_up_when_unreachable: fb.as_ref().is_some_and(|fb| fb.path.exists()),
    });
    match (fetched, fb) {
        (Ok(fetched), Some(fb)) => {
            match fallback::save(
                &fb.path,
                &config.key,
                &config.project,
                &fetched,
                std::time::SystemTime::now(),
            ) {
                Ok(()) => verbose!(1, "saved the fallback file {}", fb.path.display()),
                Err(e) => warn!("{e}; the run goes on without refreshing it"),
            }
            Ok(fetched)
        }
        (Err(e), Some(fb)) if e.is_transient() => match load(fb) {
            Ok(loaded) => {
                warn!(
                    "{}; using the fallback file {}, written {} ago",
                    e.what(),
                    fb.path.display(),
                    fallback::human(loaded.age)
                );
                Ok(loaded.fetched)
            }
            Err(fe) => Err(Error::new(format!(
                "{} (and no usable fallback: {})",
                e.what(),
                fe.what()
            ))
            .hint(e.hint_text().unwrap_or("try again later").to_owned())),
        },
        (result, _) => result,
    }
}

/// `--dotenv`: renders the selected variables and writes them to stdout or, atomically, to a file.
fn write_dotenv(
    target: &config::DotenvTarget,
    selected: &[env::Selected<'_>],
) -> Result<(), Outcome> {
    use std::io::Write;
    let format = target.format;
    let pairs: Vec<(&str, &str)> = selected
        .iter()
        .map(|s| (s.name.as_str(), s.value.expose()))
        .collect();
    let rendered =
        dotenv::render(&pairs, format).map_err(|e| Error::new(e.to_string()).hint(e.hint()))?;
    drop(pairs);
    for skipped in &rendered.skipped {
        warn!(
            "leaving {:?} out of the {format} output: {}",
            skipped.name, skipped.reason
        );
    }
    let written = selected.len() - rendered.skipped.len();
    match &target.dest {
        config::DotenvDest::Stdout => {
            // Straight to the file descriptor: std's stdout buffer is never freed, so a value
            // copied into it would stay in our memory for the whole life of a child started next.
            let stdout = std::io::stdout();
            let _lock = stdout.lock();
            let fd = std::os::fd::AsFd::as_fd(&stdout).try_clone_to_owned();
            fd.and_then(|fd| std::fs::File::from(fd).write_all(&rendered.bytes))
                .map_err(|e| {
                    Error::new(format!("cannot write the {format} output to stdout: {e}"))
                        .hint("check where stdout goes (a closed pipe, a full disk)")
                })?;
            verbose!(1, "wrote {written} variables to stdout as {format}");
        }
        config::DotenvDest::File(path) => {
            dotenv::write_atomic(path, &rendered.bytes).map_err(|e| {
                Error::new(format!("cannot write {}: {e}", path.display()))
                    .hint("check that the directory exists and is writable; an earlier file there is unchanged")
            })?;
            verbose!(
                1,
                "wrote {written} variables to {} as {format} (mode 0600)",
                path.display()
            );
            if let Some(warning) = dotenv::git_ignore_warning(path) {
                warn!("{warning}");
            }
        }
    }
    Ok(())
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
