//! The error type for everything that makes r4-run itself fail (exit 125).
//!
//! Each error carries what went wrong and, where one helps, what to do about it. The text is built
//! where the error is made, from names, ids, statuses and paths: never from a secret value or the
//! API key's secret part.

use std::fmt;

#[derive(Debug)]
pub struct Error {
    what: String,
    hint: Option<String>,
    transient: bool,
    /// How long the server asked to wait before asking again (a 429's `Retry-After`), if it did.
    retry_after: Option<std::time::Duration>,
}

impl Error {
    pub fn new(what: impl Into<String>) -> Self {
        Self {
            what: what.into(),
            hint: None,
            transient: false,
            retry_after: None,
        }
    }

    #[must_use]
    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }

    /// Adds a line to the hint (or starts one).
    #[must_use]
    pub fn add_hint(mut self, more: impl Into<String>) -> Self {
        let more = more.into();
        self.hint = Some(match self.hint.take() {
            Some(hint) => format!("{hint}\n{more}"),
            None => more,
        });
        self
    }

    /// Marks a failure that says nothing about the key or the project (unreachable, timed out,
    /// rate-limited, a 5xx): trying again later may work, and a fallback file may stand in.
    #[must_use]
    pub fn transient(mut self) -> Self {
        self.transient = true;
        self
    }

    /// Records the server's `Retry-After`, for a caller that will ask again later (`--watch`).
    #[must_use]
    pub fn with_retry_after(mut self, wait: std::time::Duration) -> Self {
        self.retry_after = Some(wait);
        self
    }

    pub fn retry_after(&self) -> Option<std::time::Duration> {
        self.retry_after
    }

    pub fn is_transient(&self) -> bool {
        self.transient
    }

    pub fn what(&self) -> &str {
        &self.what
    }

    pub fn hint_text(&self) -> Option<&str> {
        self.hint.as_deref()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.what)
    }
}

impl std::error::Error for Error {}

pub type Result<T, E = Error> = std::result::Result<T, E>;
