//! Messages on stderr: errors, warnings and `-v` diagnostics, in the contract's format.
//!
//! Nothing here ever receives a secret value: callers pass names, counts, statuses and timings.
//! Writes to stderr ignore failures (a closed stderr must not turn into a panic or a lost exit status).

use crate::error::Error;
use std::fmt::Arguments;
use std::io::Write;
use std::sync::atomic::{AtomicI8, Ordering};

/// -1 quiet (errors only), 0 default (warnings and errors), 1..=3 for -v, -vv, -vvv.
static VERBOSITY: AtomicI8 = AtomicI8::new(0);

pub fn set_verbosity(level: i8) {
    VERBOSITY.store(level, Ordering::Relaxed);
}

pub fn verbosity() -> i8 {
    VERBOSITY.load(Ordering::Relaxed)
}

pub fn error(e: &Error) {
    let mut err = std::io::stderr().lock();
    let _ = writeln!(err, "r4-run: error: {}", e.what());
    if let Some(hint) = e.hint_text() {
        for (i, line) in hint.lines().enumerate() {
            let lead = if i == 0 { "  hint: " } else { "        " };
            let _ = writeln!(err, "{lead}{line}");
        }
    }
}

pub fn warning(args: Arguments<'_>) {
    if verbosity() >= 0 {
        let _ = writeln!(std::io::stderr().lock(), "r4-run: warning: {args}");
    }
}

pub fn diagnostic(level: i8, args: Arguments<'_>) {
    if verbosity() >= level {
        let _ = writeln!(std::io::stderr().lock(), "r4-run: {args}");
    }
}

/// `warn!("…", …)`: a warning, shown unless `-q`.
#[macro_export]
macro_rules! warn {
    ($($arg:tt)*) => { $crate::report::warning(format_args!($($arg)*)) };
}

/// `verbose!(level, "…", …)`: a diagnostic shown at `-v` (1), `-vv` (2) or `-vvv` (3).
#[macro_export]
macro_rules! verbose {
    ($level:expr, $($arg:tt)*) => { $crate::report::diagnostic($level, format_args!($($arg)*)) };
}
