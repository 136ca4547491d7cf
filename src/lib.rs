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
pub mod pump;
pub mod report;
pub mod secret;
pub mod signals;
pub mod supervise;
pub mod vars;
pub mod watch;
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
    let limits = env::ExecLimits {
        per_string: platform::max_exec_string(),
        total: platform::max_exec_total(),
    };
    // --watch remembers what the command was started with as a fingerprint (no value).
    let fingerprint = match &config.watch {
        Some(_) => {
            let key = watch::FingerprintKey::random()?;
            let print = key.of(selected
                .iter()
                .map(|s| (s.name.as_str(), s.value.expose().as_bytes())));
            Some((key, print))
        }
        None => None,
    };
    let child_env = child_env(
        command,
        selected,
        mounted.as_ref().map(dotenv::Mounted::path),
        &config.merge,
        limits,
    )?;
    if config.exec {
        // Returns only if exec failed; on success this image, secrets and all, is gone.
        return Err(supervise::exec(command, child_env));
    }
    let mode = supervise::Mode::detect(config.subreaper);
    let mut prepared = supervise::prepare(command, child_env, mode)?;
    // --mask: every fetched value, held by the mask in a form that is not the value itself.
    let masking = if config.mask {
        let masker = mask::Masker::new(
            fetched
                .vars
                .iter()
                .map(|(name, value)| (name.as_str(), value.expose().as_bytes())),
        );
        let pipes = prepared.pipe_output().map_err(|e| {
            Outcome::Failed(Error::new(format!(
                "cannot set up the pipes for --mask: {e}"
            )))
        })?;
        verbose!(1, "masking {} values in the command's output", masker.len());
        Some((masker, pipes))
    } else {
        None
    };
    // What the next fetches of --watch need, the key among it, moves out of the configuration; the
    // rest of it holds no secret.
    let watch_plan = match (config.watch, fingerprint) {
        (Some(options), Some((fingerprint_key, fingerprint))) => Some(WatchPlan {
            options,
            source: WatchSource {
                key: config.key,
                base: config.base.clone(),
                projects: config.projects.clone(),
                timeout: config.timeout,
                merge: config.merge.clone(),
                fallback: config.fallback.clone(),
                fingerprint_key,
            },
            fingerprint,
            command: command.clone(),
            merge: config.merge.clone(),
            mount: config.mount.clone(),
            limits,
        }),
        _ => {
            drop(config.key);
            None
        }
    };
    // Our copies go before the child exists, so that none is left by the time it runs: our types
    // zeroize themselves, the allocator wipes every library buffer freed with them, and the stack the
    // fetch used is overwritten. Only the prepared command's copy remains, until the child has exec'd.
    drop(fetched);
    hardening::wipe_used_stack();
    let child = prepared.spawn()?;
    // After the spawn, so the child's own core-dump limit stays as it was.
    hardening::forbid_core_dumps();
    // After the spawn, so the command is still PID 2 in a container.
    let pumps = match masking {
        Some((masker, (out, err))) => Some(start_pumps(&masker, out, err)?),
        None => None,
    };
    let outcome = match watch_plan {
        None => supervise::supervise(child, mode),
        // The worker thread starts after the first command, which is then PID 2 in a container.
        Some(plan) => plan.supervise(child, mode)?,
    };
    for pump in pumps.into_iter().flatten() {
        pump.finish();
    }
    drop(mounted);
    Ok(outcome)
}

/// The two `--mask` threads: the command's stdout to ours, its stderr to ours.
fn start_pumps(
    masker: &mask::Masker,
    out: std::os::fd::OwnedFd,
    err: std::os::fd::OwnedFd,
) -> Result<[pump::Pump; 2], Outcome> {
    let failed =
        |e: std::io::Error| Outcome::Failed(Error::new(format!("cannot start masking: {e}")));
    let stdout = std::io::stdout();
    let stderr = std::io::stderr();
    let to_out = std::os::fd::AsFd::as_fd(&stdout);
    let to_err = std::os::fd::AsFd::as_fd(&stderr);
    Ok([
        pump::start(out, to_out, masker.stream()).map_err(failed)?,
        pump::start(err, to_err, masker.stream()).map_err(failed)?,
    ])
}

/// The command's environment: the selected variables merged into what r4-run inherited (or, with
/// `--mount`, only the file's path), checked against what the system can pass to a program.
fn child_env<'a>(
    command: &supervise::CommandLine,
    selected: Vec<env::Selected<'a>>,
    mounted: Option<&std::path::Path>,
    merge: &env::MergePolicy,
    limits: env::ExecLimits,
) -> Result<env::ChildEnv<'a>, Outcome> {
    let child_env = match mounted {
        // The values are in the file: the environment gets only where it is.
        Some(path) => env::merge_with_secrets_path(std::env::vars_os(), path, merge),
        None => env::merge(std::env::vars_os(), selected, merge),
    };
    let argv = std::iter::once(command.program.as_os_str())
        .chain(command.args.iter().map(|a| a.as_os_str()));
    if let Err(too_big) = env::check_exec_limits(&child_env, argv, limits) {
        return Err(Outcome::Failed(
            Error::new(too_big.to_string()).hint(too_big.hint()),
        ));
    }
    Ok(child_env)
}

/// What `--watch` fetches with, moved into its worker thread.
struct WatchSource {
    key: secret::ApiKey,
    base: reqwest::Url,
    projects: Vec<String>,
    timeout: std::time::Duration,
    merge: env::MergePolicy,
    fallback: Option<fallback::Options>,
    fingerprint_key: watch::FingerprintKey,
}

impl WatchSource {
    /// One fetch while watching: the merged variables and the fingerprint of the selected ones. A
    /// good fetch refreshes the fallback file; a failed one never falls back to it (the command
    /// keeps running with what it has).
    fn fetch(&self) -> watch::Fetch {
        let requests = api::requests(&self.base, &self.key, &self.projects, self.timeout);
        let sets = match api::fetch_all(&requests) {
            Ok(sets) => sets,
            Err(e) => {
                let retry_after = e.retry_after();
                return watch::Fetch::Failed(e, retry_after);
            }
        };
        let (fetched, _) = vars::Fetched::merge_in_order(sets);
        if let Some(fb) = &self.fallback {
            let label = self.projects.join(",");
            if let Err(e) = fallback::save(
                &fb.path,
                &self.key,
                &label,
                &fetched,
                std::time::SystemTime::now(),
            ) {
                warn!("{e}; the fallback file was not refreshed");
            }
        }
        let (selected, _) = env::select(&fetched, &self.merge);
        let print = self.fingerprint_key.of(selected
            .iter()
            .map(|s| (s.name.as_str(), s.value.expose().as_bytes())));
        drop(selected);
        watch::Fetch::Got(fetched, print)
    }
}

/// Everything `--watch` needs once the first command runs.
struct WatchPlan {
    options: config::WatchOptions,
    source: WatchSource,
    fingerprint: watch::Fingerprint,
    command: supervise::CommandLine,
    merge: env::MergePolicy,
    mount: Option<dotenv::Mount>,
    limits: env::ExecLimits,
}

impl WatchPlan {
    /// Starts the worker and supervises, restarting the command when its variables change.
    fn supervise(self, child: libc::pid_t, mode: supervise::Mode) -> Result<Outcome, Outcome> {
        let WatchPlan {
            options,
            source,
            fingerprint,
            command,
            merge,
            mount,
            limits,
        } = self;
        verbose!(
            1,
            "watching: a fetch every {} s (with 10% jitter); a change restarts the command with {}",
            options.interval.as_secs_f64(),
            signals::name(options.restart_signal)
        );
        let watcher = watch::Watcher::start(
            watch::Timing {
                interval: options.interval,
            },
            fingerprint,
            move || source.fetch(),
            // The loop waits for SIGCHLD anyway, and takes one with no child changed as "look".
            // SAFETY: kill on our own pid with a valid signal; SIGCHLD is blocked in every thread
            // and caught, so it waits pending for the loop.
            || unsafe {
                libc::kill(libc::getpid(), libc::SIGCHLD);
            },
            watch::random_u64,
        )
        .map_err(|e| {
            Outcome::Failed(Error::new(format!("cannot start the --watch thread: {e}")))
        })?;
        let mut restarts = WatchRestarts {
            watcher,
            command,
            merge,
            mount,
            limits,
            mode,
        };
        let policy = supervise::RestartPolicy {
            signal: options.restart_signal,
            grace: options.grace,
        };
        Ok(supervise::supervise_restarting(
            child,
            mode,
            Some((&mut restarts, policy)),
        ))
    }
}

/// The supervise loop's view of `--watch`.
struct WatchRestarts {
    watcher: watch::Watcher,
    command: supervise::CommandLine,
    merge: env::MergePolicy,
    mount: Option<dotenv::Mount>,
    limits: env::ExecLimits,
    mode: supervise::Mode,
}

impl supervise::Restarts for WatchRestarts {
    fn next(&mut self) -> Option<supervise::Prepared> {
        let change = self.watcher.take_change()?;
        let names: Vec<String> = change
            .names
            .iter()
            .map(|n| report::shown(n).to_string())
            .collect();
        let (selected, notices) = env::select(&change.fetched, &self.merge);
        for notice in &notices {
            warn!("{notice}");
        }
        let prepared = (|| {
            let mounted_path = match &self.mount {
                Some(mount) => {
                    // Rewritten (atomically) for the new command; removed at the end of the run.
                    let target = dotenv::Target {
                        dest: dotenv::Dest::File(mount.path.clone()),
                        format: mount.format,
                    };
                    dotenv::write_selected(&target, &selected)?;
                    Some(mount.path.clone())
                }
                None => None,
            };
            let child_env = child_env(
                &self.command,
                selected,
                mounted_path.as_deref(),
                &self.merge,
                self.limits,
            )?;
            supervise::prepare(&self.command, child_env, self.mode)
        })();
        match prepared {
            Ok(prepared) => {
                warn!(
                    "the variables changed ({}): restarting the command",
                    names.join(", ")
                );
                Some(prepared)
            }
            Err(outcome) => {
                if let Some(e) = outcome.error() {
                    warn!(
                        "{}; the command keeps running with the variables it has",
                        e.what()
                    );
                }
                None
            }
        }
    }

    fn wake_at(&mut self, at: std::time::Instant) {
        self.watcher.wake_at(at);
    }
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
