//! Starting the command and waiting for it: PATH look-up as `execvp` does it, exec failures mapped to
//! 126/127, and the child's end turned into an `Outcome`.

use crate::config::CommandLine;
use crate::env::ChildEnv;
use crate::error::Error;
use crate::exit::Outcome;
use std::ffi::{OsStr, OsString};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::{CommandExt, ExitStatusExt};
use std::path::{Path, PathBuf};
use std::process::{Child, Command};

/// `execvp`'s search path when PATH is unset.
const DEFAULT_PATH: &str = "/usr/local/bin:/usr/bin:/bin";

/// Starts the command with exactly `env`. The `Command`, which holds copies of every value, is
/// dropped before this returns.
pub fn spawn(cmd: &CommandLine, env: ChildEnv<'_>) -> Result<Child, Outcome> {
    let path = std::env::var_os("PATH");
    let program = resolve(&cmd.program, path.as_deref())?;
    let mut command = Command::new(&program);
    command
        .arg0(&cmd.program)
        .args(&cmd.args)
        .env_clear()
        .envs(env.iter().map(|(k, v)| (k, v.as_os_str())));
    let spawned = command.spawn();
    drop(command);
    drop(env);
    spawned.map_err(|e| exec_failure(&cmd.program, &e))
}

/// Waits for the child and turns its end into the exit status the contract asks for.
pub fn wait(mut child: Child) -> Outcome {
    loop {
        match child.wait() {
            Ok(status) => {
                return match (status.code(), status.signal()) {
                    (Some(code), _) => Outcome::ChildExited(code),
                    (None, Some(signal)) => Outcome::ChildKilled(signal),
                    (None, None) => Outcome::Failed(Error::new(
                        "the command ended in a way that has no exit status",
                    )),
                }
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => {
                return Outcome::Failed(Error::new(format!("cannot wait for the command: {e}")))
            }
        }
    }
}

/// Finds the program as `execvp` does: a name with a `/` is used as it is; otherwise each PATH entry
/// is tried in turn (an empty entry means the current directory), and if none holds an executable
/// file the answer is "permission denied" when some entry had a non-executable match, else "not found".
pub fn resolve(program: &OsStr, path: Option<&OsStr>) -> Result<PathBuf, Outcome> {
    if program.as_bytes().contains(&b'/') {
        return Ok(PathBuf::from(program));
    }
    let path = path.unwrap_or(OsStr::new(DEFAULT_PATH));
    let mut denied = None;
    for dir in path.as_bytes().split(|&b| b == b':') {
        let dir = if dir.is_empty() {
            Path::new(".")
        } else {
            Path::new(OsStr::from_bytes(dir))
        };
        let candidate = dir.join(program);
        match std::fs::metadata(&candidate) {
            Ok(meta) if meta.is_file() && is_executable(&candidate) => return Ok(candidate),
            Ok(_) => {
                denied.get_or_insert(candidate);
            }
            Err(_) => {}
        }
    }
    let shown = program.to_string_lossy();
    Err(match denied {
        Some(found) => Outcome::CannotExecute(
            Error::new(format!(
                "{shown} was found at {} but cannot be executed",
                found.display()
            ))
            .hint(format!(
                "make it executable (chmod +x {}) or check PATH",
                found.display()
            )),
        ),
        None => Outcome::NotFound(
            Error::new(format!("command not found: {shown}"))
                .hint("check the command's name and that its directory is on PATH"),
        ),
    })
}

fn is_executable(path: &Path) -> bool {
    let Ok(c_path) = std::ffi::CString::new(path.as_os_str().as_bytes()) else {
        return false;
    };
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call; access() only reads it.
    unsafe { libc::access(c_path.as_ptr(), libc::X_OK) == 0 }
}

fn exec_failure(program: &OsString, e: &io::Error) -> Outcome {
    let shown = program.to_string_lossy();
    match e.kind() {
        io::ErrorKind::NotFound => Outcome::NotFound(
            Error::new(format!("cannot run {shown}: {e}"))
                .hint("check the path; for a script, check the interpreter named on its #! line"),
        ),
        _ => {
            Outcome::CannotExecute(Error::new(format!("cannot execute {shown}: {e}")).hint(
                "check that it is an executable program or script (chmod +x, a valid #! line)",
            ))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resolves_like_execvp() {
        assert_eq!(
            resolve(OsStr::new("sh"), Some(OsStr::new("/nonexistent:/bin"))).unwrap(),
            Path::new("/bin/sh")
        );
        assert!(matches!(
            resolve(OsStr::new("no-such-cmd-r4"), Some(OsStr::new("/bin"))),
            Err(Outcome::NotFound(_))
        ));
        assert_eq!(resolve(OsStr::new("./x"), None).unwrap(), Path::new("./x"));
        // A directory of that name is found but cannot be executed.
        assert!(matches!(
            resolve(OsStr::new("bin"), Some(OsStr::new("/"))),
            Err(Outcome::CannotExecute(_))
        ));
    }
}
