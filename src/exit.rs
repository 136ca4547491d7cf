//! The one place where the outcome of a run becomes r4-run's exit status (see docs/architecture.md).

use crate::error::Error;

/// How a run ended.
#[derive(Debug)]
pub enum Outcome {
    /// Nothing to run (`--dotenv` alone) and all went well.
    Done,
    /// The child exited with this status.
    ChildExited(i32),
    /// The child was killed by this signal.
    ChildKilled(i32),
    /// r4-run itself failed before starting a child: configuration, key, network, API, answer.
    Failed(Error),
    /// The command was found but could not be executed (EACCES, ENOEXEC, a directory, ...).
    CannotExecute(Error),
    /// The command was not found on PATH.
    NotFound(Error),
}

pub const FAILED: u8 = 125;
pub const CANNOT_EXECUTE: u8 = 126;
pub const NOT_FOUND: u8 = 127;

impl Outcome {
    pub fn exit_code(&self) -> u8 {
        match self {
            Self::Done => 0,
            // An exit status is 8 bits on every platform we run on; the mask keeps a stray value sane.
            Self::ChildExited(code) => (*code & 0xff) as u8,
            Self::ChildKilled(signal) => (128 + *signal).clamp(0, 255) as u8,
            Self::Failed(_) => FAILED,
            Self::CannotExecute(_) => CANNOT_EXECUTE,
            Self::NotFound(_) => NOT_FOUND,
        }
    }

    /// The error to report, if the outcome is one of r4-run's own failures.
    pub fn error(&self) -> Option<&Error> {
        match self {
            Self::Failed(e) | Self::CannotExecute(e) | Self::NotFound(e) => Some(e),
            _ => None,
        }
    }
}

impl From<Error> for Outcome {
    fn from(e: Error) -> Self {
        Self::Failed(e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_follow_the_contract() {
        assert_eq!(Outcome::Done.exit_code(), 0);
        assert_eq!(Outcome::ChildExited(42).exit_code(), 42);
        assert_eq!(Outcome::ChildExited(255).exit_code(), 255);
        assert_eq!(Outcome::ChildKilled(9).exit_code(), 137);
        assert_eq!(Outcome::ChildKilled(15).exit_code(), 143);
        assert_eq!(Outcome::Failed(Error::new("x")).exit_code(), 125);
        assert_eq!(Outcome::CannotExecute(Error::new("x")).exit_code(), 126);
        assert_eq!(Outcome::NotFound(Error::new("x")).exit_code(), 127);
    }
}
