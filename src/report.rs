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

/// Text that came from outside (a variable name, an id a server sent) made safe to print: control
/// characters, and the invisible characters that reorder, hide or break text (bidi overrides, zero
/// widths, line separators), are written as escapes (`\u{1b}`, `\n`). A server-chosen name such as
/// `ESC[1A ESC[2K CR` then cannot move the cursor, clear the user's screen or forge a line.
pub fn shown(text: &str) -> Shown<'_> {
    Shown(text)
}

/// See [`shown`].
pub struct Shown<'a>(&'a str);

impl std::fmt::Display for Shown<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        use std::fmt::Write as _;
        for c in self.0.chars() {
            if c.is_control() {
                write!(f, "{}", c.escape_default())?;
            } else if is_invisible_format(c) {
                write!(f, "{}", c.escape_unicode())?;
            } else {
                f.write_char(c)?;
            }
        }
        Ok(())
    }
}

/// Unicode format and separator characters that change how the text around them is shown.
fn is_invisible_format(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{061C}' | '\u{180E}'
        | '\u{200B}'..='\u{200F}'
        | '\u{2028}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}'
        | '\u{FEFF}'
        | '\u{FFF9}'..='\u{FFFB}')
}

#[cfg(test)]
mod tests {
    use super::shown;

    #[test]
    fn outside_text_cannot_drive_the_terminal() {
        assert_eq!(shown("DATABASE_URL").to_string(), "DATABASE_URL");
        assert_eq!(
            shown("A\u{1b}[1A\u{1b}[2K\rB").to_string(),
            "A\\u{1b}[1A\\u{1b}[2K\\rB"
        );
        assert_eq!(shown("N\0\n\t").to_string(), "N\\u{0}\\n\\t");
        assert_eq!(
            shown("evil\u{202E}txt.exe\u{200B}").to_string(),
            "evil\\u{202e}txt.exe\\u{200b}"
        );
        assert_eq!(shown("ünïcode ✓").to_string(), "ünïcode ✓");
        assert_eq!(shown("\u{9b}31m").to_string(), "\\u{9b}31m");
    }
}
