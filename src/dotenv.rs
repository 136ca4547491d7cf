//! Writing variables to a file for other programs: `--dotenv PATH --format FMT`.
//!
//! * [`render`] turns `(name, value)` pairs into the bytes of one of the [`Format`]s. It is pure and
//!   builds its output into one exactly pre-sized [`Zeroizing`] buffer, so no copy of a value is left
//!   behind in freed memory.
//! * [`write_atomic`] puts those bytes into a file: a fresh 0600 temporary file beside the target,
//!   `fsync`, then a `rename` over the target.
//! * [`git_ignore_warning`] tells whether the file lands, unignored, inside a git work tree.
//!
//! The quoting rules and what each parser reads back are described in `docs/dotenv.md`.

use std::fmt;
use std::fs::{self, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

use zeroize::Zeroizing;

use crate::env::Selected;
use crate::{verbose, warn};

/// `--dotenv PATH|-` with its `--format`.
#[derive(Debug)]
pub struct Target {
    pub dest: Dest,
    pub format: Format,
}

/// `--mount PATH` with its format: the variables as a file, for the command's lifetime.
#[derive(Debug, Clone)]
pub struct Mount {
    /// Absolute: the command finds it in `R4_SECRETS_PATH`.
    pub path: PathBuf,
    pub format: Format,
}

/// The `--mount` file while it exists: removed when this is dropped, which `lib` does once the
/// command has ended, whatever the way (its own exit, a signal, r4-run's own failure after writing).
#[must_use]
pub struct Mounted {
    path: PathBuf,
}

impl Mounted {
    pub fn path(&self) -> &Path {
        &self.path
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        match fs::remove_file(&self.path) {
            Ok(()) => verbose!(1, "removed {}", self.path.display()),
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => warn!(
                "cannot remove the --mount file {}: {e}",
                self.path.display()
            ),
        }
    }
}

/// Writes the `--mount` file (as `--dotenv` writes a file: atomically, mode 0600) and returns the
/// guard that removes it.
pub fn mount(mount: &Mount, selected: &[Selected<'_>]) -> Result<Mounted, crate::error::Error> {
    let target = Target {
        dest: Dest::File(mount.path.clone()),
        format: mount.format,
    };
    write_selected(&target, selected)?;
    Ok(Mounted {
        path: mount.path.clone(),
    })
}

/// Where `--dotenv` writes.
#[derive(Debug, PartialEq, Eq)]
pub enum Dest {
    Stdout,
    File(PathBuf),
}

/// An output format for `--dotenv`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// `NAME=value` lines, quoted so that dotenvy (and, where their syntax allows, python-dotenv and
    /// node `dotenv`) read every value back exactly.
    Dotenv,
    /// `export NAME='value'` lines for any POSIX shell (`.`/`source`/`eval`).
    Shell,
    /// One JSON object `{"NAME":"value",…}` and a newline.
    Json,
    /// `NAME=value` lines for `docker run --env-file`: nothing is quoted, so no value may hold a newline.
    Docker,
}

impl Format {
    /// Every format, in the order they are listed to users.
    pub const ALL: [Format; 4] = [Format::Dotenv, Format::Shell, Format::Json, Format::Docker];

    /// The format called `s` (as given to `--format`), if any.
    pub fn parse(s: &str) -> Option<Format> {
        Format::ALL.into_iter().find(|f| f.name() == s)
    }

    /// The name users give to `--format`.
    pub fn name(&self) -> &'static str {
        match self {
            Format::Dotenv => "dotenv",
            Format::Shell => "shell",
            Format::Json => "json",
            Format::Docker => "docker",
        }
    }
}

impl fmt::Display for Format {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Format {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Format::parse(s)
            .ok_or_else(|| format!("unknown format '{s}' (expected dotenv, shell, json or docker)"))
    }
}

/// The rendered file, and the variables that the format could not carry.
pub struct Rendered {
    /// The whole file. Holds secret values: zeroized when dropped.
    pub bytes: Zeroizing<Vec<u8>>,
    /// Variables left out because the format cannot carry their name, in input order.
    pub skipped: Vec<Skipped>,
}

impl fmt::Debug for Rendered {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Never print the bytes: they hold the values.
        f.debug_struct("Rendered")
            .field("bytes", &format_args!("<{} bytes>", self.bytes.len()))
            .field("skipped", &self.skipped)
            .finish()
    }
}

/// A variable that was not written. Names are not secret; the value is not kept here.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub name: String,
    pub reason: &'static str,
}

/// Why nothing could be rendered. Messages name variables, never show a value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum RenderError {
    /// `docker` format: these values hold a newline (LF or CR), which an env-file cannot carry.
    DockerMultiline { names: Vec<String> },
    /// These variables hold a NUL byte in their name or value, which no format can carry.
    NulInValue { names: Vec<String> },
}

impl RenderError {
    /// What the user can do about it (one line, for `  hint: …`).
    pub fn hint(&self) -> &'static str {
        match self {
            RenderError::DockerMultiline { .. } => {
                "docker --env-file has no quoting, so a value cannot span lines: use --format dotenv, \
                 shell or json, or leave these variables out with --only"
            }
            RenderError::NulInValue { .. } => {
                "a NUL byte cannot be stored in an environment file: fix the value in R4, or leave \
                 these variables out with --only"
            }
        }
    }

    /// The variables concerned.
    pub fn names(&self) -> &[String] {
        match self {
            RenderError::DockerMultiline { names } | RenderError::NulInValue { names } => names,
        }
    }
}

impl fmt::Display for RenderError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let (names, what) = match self {
            RenderError::DockerMultiline { names } => (
                names,
                "holds a line break, which the docker env-file format cannot represent",
            ),
            RenderError::NulInValue { names } => (
                names,
                "holds a NUL byte, which no environment file format can represent",
            ),
        };
        let (noun, verb_what) = if names.len() == 1 {
            ("variable", what.to_string())
        } else {
            // "holds" -> "hold" for the plural.
            ("variables", what.replacen("holds", "hold", 1))
        };
        write!(f, "{noun} ")?;
        for (i, name) in names.iter().enumerate() {
            if i > 0 {
                f.write_str(", ")?;
            }
            write_name(f, name)?;
        }
        write!(f, " {verb_what}")
    }
}

/// Write a variable name for a message: control characters (a name could hold a newline or an escape
/// sequence) are shown escaped so they cannot forge or garble terminal output.
fn write_name(f: &mut fmt::Formatter<'_>, name: &str) -> fmt::Result {
    if name.is_empty() {
        return f.write_str("(empty name)");
    }
    write!(f, "{}", crate::report::shown(name))
}

impl std::error::Error for RenderError {}

const REASON_DOTENV_NAME: &str =
    "not a valid .env variable name (letters, digits and '_', not starting with a digit)";
const REASON_SHELL_NAME: &str = "not a valid shell variable name";
const REASON_SHELL_SPECIAL: &str =
    "a shell keeps this variable read-only or special (bash, zsh, dash or mksh): assigning it would abort the eval or change the shell itself";
/// Names that a POSIX-family shell will not take in `export NAME='…'` (read-only: the eval aborts,
/// at once under `bash --posix`) or that change the shell itself (zsh's `UID`/`GID`/`USERNAME`
/// switch the user when run as root; dash's `OPTIND` must be a number). Measured with bash 5.2
/// (plain and --posix), dash, zsh (plain and sh emulation), ksh93 and mksh.
const SHELL_SPECIAL: &[&str] = &[
    // bash
    "BASHOPTS",
    "BASH_VERSINFO",
    "EUID",
    "PPID",
    "SHELLOPTS",
    "UID",
    // zsh
    "ARGC",
    "EGID",
    "GID",
    "HISTCMD",
    "LINENO",
    "TTYIDLE",
    "USERNAME",
    "ZSH_EVAL_CONTEXT",
    "ZSH_SUBSHELL",
    "pipestatus",
    "status",
    "zsh_eval_context",
    // mksh
    "KSH_VERSION",
    // dash
    "OPTIND",
];
const REASON_DOCKER_NAME: &str =
    "not usable in a docker env-file (the name is empty, holds whitespace or '=', or starts with '#')";

/// `[A-Za-z_][A-Za-z0-9_]*`
fn is_shell_name(name: &str) -> bool {
    let b = name.as_bytes();
    !b.is_empty()
        && (b[0].is_ascii_alphabetic() || b[0] == b'_')
        && b.iter().all(|&c| c.is_ascii_alphanumeric() || c == b'_')
}

/// What docker's `pkg/kvfile` reads back as this name: non-empty, no whitespace (its lines are
/// left-trimmed and names may not hold spaces), no `=` (the line is split at the first one), not
/// starting with `#` (a comment line) or a byte-order mark (removed from the first line).
fn is_docker_name(name: &str) -> bool {
    !name.is_empty()
        && !name.starts_with('#')
        && !name.starts_with('\u{feff}')
        && !name.chars().any(|c| c == '=' || c.is_whitespace())
}

/// The characters a `dotenv` value may hold to be written unquoted (smart2 rule 1).
fn is_bare_byte(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b"_./:@%+,=-".contains(&b)
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Quoting {
    /// `NAME=value`
    Bare,
    /// `NAME='value'`, nothing escaped.
    Single,
    /// `NAME="value"`, with `\` `"` `$` escaped.
    Double,
}

/// smart2: bare when every byte is safe; else single quotes when the value has no `'`, no CR, no
/// `\\` and does not end in `\`; else double quotes.
///
/// Single quotes are literal in dotenvy, python-dotenv and node, with three exceptions that the
/// conditions avoid: python-dotenv decodes `\\` and `\'` inside them; dotenvy's line gathering takes
/// `\'` for an escaped quote (so `'abc\'` swallows the next line); python and node turn CR into LF.
/// A lone `\` (`C:\path`) is safe, which matters for node, which cannot read `\\` in double quotes.
fn dotenv_quoting(value: &str) -> Quoting {
    let b = value.as_bytes();
    if !b.is_empty() && b.iter().all(|&c| is_bare_byte(c)) {
        Quoting::Bare
    } else if !b.iter().any(|&c| c == b'\'' || c == b'\r')
        && !b.windows(2).any(|w| w == b"\\\\")
        && !value.ends_with('\\')
    {
        Quoting::Single
    } else {
        Quoting::Double
    }
}

/// Where output goes: first counted, then written into a buffer of exactly that size.
trait Out {
    fn put(&mut self, bytes: &[u8]);
    fn byte(&mut self, b: u8) {
        self.put(&[b]);
    }
}

/// Counts the bytes a render would produce.
struct Count(usize);

impl Out for Count {
    fn put(&mut self, bytes: &[u8]) {
        self.0 += bytes.len();
    }
}

impl Out for Vec<u8> {
    fn put(&mut self, bytes: &[u8]) {
        // The buffer was sized by a `Count` pass: this never reallocates (checked in `render`).
        self.extend_from_slice(bytes);
    }
}

/// Whether `format` can carry the name; `Err(reason)` when it cannot.
fn check_name(format: Format, name: &str) -> Result<(), &'static str> {
    match format {
        Format::Dotenv if !is_shell_name(name) => Err(REASON_DOTENV_NAME),
        Format::Shell if !is_shell_name(name) => Err(REASON_SHELL_NAME),
        Format::Shell if SHELL_SPECIAL.contains(&name) => Err(REASON_SHELL_SPECIAL),
        Format::Docker if !is_docker_name(name) => Err(REASON_DOCKER_NAME),
        _ => Ok(()),
    }
}

/// Render `vars` (already filtered, renamed and ordered by the caller) in `format`.
///
/// Variables whose name the format cannot carry are left out and listed in [`Rendered::skipped`].
/// Fails, writing nothing, when a name or value holds NUL, or (`docker`) a value holds LF or CR.
pub fn render(vars: &[(&str, &str)], format: Format) -> Result<Rendered, RenderError> {
    let nul: Vec<String> = vars
        .iter()
        .filter(|(n, v)| n.as_bytes().contains(&0) || v.as_bytes().contains(&0))
        .map(|(n, _)| n.to_string())
        .collect();
    if !nul.is_empty() {
        return Err(RenderError::NulInValue { names: nul });
    }

    let mut skipped = Vec::new();
    let mut kept: Vec<(&str, &str)> = Vec::with_capacity(vars.len());
    for &(name, value) in vars {
        match check_name(format, name) {
            Ok(()) => kept.push((name, value)),
            Err(reason) => skipped.push(Skipped {
                name: name.to_string(),
                reason,
            }),
        }
    }

    if format == Format::Docker {
        let multiline: Vec<String> = kept
            .iter()
            .filter(|(_, v)| v.bytes().any(|b| b == b'\n' || b == b'\r'))
            .map(|(n, _)| n.to_string())
            .collect();
        if !multiline.is_empty() {
            return Err(RenderError::DockerMultiline { names: multiline });
        }
    }

    let mut count = Count(0);
    emit(&mut count, &kept, format);
    let mut bytes = Zeroizing::new(Vec::with_capacity(count.0));
    let capacity = bytes.capacity();
    emit(&mut *bytes, &kept, format);
    // A reallocation would have left a copy of the values in freed memory.
    assert_eq!(
        bytes.len(),
        count.0,
        "render: size pass and write pass disagree"
    );
    assert_eq!(
        bytes.capacity(),
        capacity,
        "render: output buffer was reallocated"
    );

    Ok(Rendered { bytes, skipped })
}

fn emit<O: Out>(out: &mut O, vars: &[(&str, &str)], format: Format) {
    match format {
        Format::Dotenv => {
            for &(name, value) in vars {
                out.put(name.as_bytes());
                out.byte(b'=');
                dotenv_value(out, value);
                out.byte(b'\n');
                if dotenv_quoting(value) == Quoting::Double && value.ends_with('\\') {
                    out.put(BACKSLASH_FENCE);
                }
            }
        }
        Format::Shell => {
            for &(name, value) in vars {
                out.put(b"export ");
                out.put(name.as_bytes());
                out.byte(b'=');
                shell_single_quote(out, value);
                out.byte(b'\n');
            }
        }
        Format::Json => {
            out.byte(b'{');
            for (i, &(name, value)) in vars.iter().enumerate() {
                if i > 0 {
                    out.byte(b',');
                }
                json_string(out, name);
                out.byte(b':');
                json_string(out, value);
            }
            out.put(b"}\n");
        }
        Format::Docker => {
            for &(name, value) in vars {
                out.put(name.as_bytes());
                out.byte(b'=');
                out.put(value.as_bytes());
                out.byte(b'\n');
            }
        }
    }
}

/// Written after a double-quoted value that ends in `\` (`K="abc\\"`). python-dotenv and node
/// `dotenv` take that final `\"` for an escaped quote and read on to the next `"` that ends a line
/// (node) or to the next `"` at all (python), losing every variable in between. The quote at the end
/// of this comment stops them there, so they lose only this value, which they cannot read anyway.
/// dotenvy, the reference, reads the value right and skips the comment.
const BACKSLASH_FENCE: &[u8] =
    b"# (r4-run) the quote at the end of this comment fences off the final backslash above \"\n";

fn dotenv_value<O: Out>(out: &mut O, value: &str) {
    match dotenv_quoting(value) {
        Quoting::Bare => out.put(value.as_bytes()),
        Quoting::Single => {
            out.byte(b'\'');
            out.put(value.as_bytes());
            out.byte(b'\'');
        }
        Quoting::Double => {
            out.byte(b'"');
            let bytes = value.as_bytes();
            let mut start = 0;
            for (i, &b) in bytes.iter().enumerate() {
                // Only what dotenvy must see escaped. Not the backtick: dotenvy rejects `\``, and
                // python/node would keep the backslash. Not CR/TAB/LF: written as themselves
                // (dotenvy rejects `\r`/`\t` escapes and keeps literal ones).
                if matches!(b, b'\\' | b'"' | b'$') {
                    out.put(&bytes[start..i]);
                    out.byte(b'\\');
                    out.byte(b);
                    start = i + 1;
                }
            }
            out.put(&bytes[start..]);
            out.byte(b'"');
        }
    }
}

/// POSIX single quotes: `'…'`, each `'` written as `'\''`.
fn shell_single_quote<O: Out>(out: &mut O, value: &str) {
    out.byte(b'\'');
    let bytes = value.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        if b == b'\'' {
            out.put(&bytes[start..i]);
            out.put(b"'\\''");
            start = i + 1;
        }
    }
    out.put(&bytes[start..]);
    out.byte(b'\'');
}

/// A JSON string: `"` and `\` escaped, control characters as `\n`-style or `\u00XX` escapes,
/// everything else (non-ASCII included) as its UTF-8 bytes.
fn json_string<O: Out>(out: &mut O, s: &str) {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    out.byte(b'"');
    let bytes = s.as_bytes();
    let mut start = 0;
    for (i, &b) in bytes.iter().enumerate() {
        let short: &[u8] = match b {
            b'"' => b"\\\"",
            b'\\' => b"\\\\",
            b'\n' => b"\\n",
            b'\r' => b"\\r",
            b'\t' => b"\\t",
            0x08 => b"\\b",
            0x0c => b"\\f",
            0x00..=0x1f => b"",
            _ => continue,
        };
        out.put(&bytes[start..i]);
        if short.is_empty() {
            out.put(b"\\u00");
            out.byte(HEX[usize::from(b >> 4)]);
            out.byte(HEX[usize::from(b & 0xf)]);
        } else {
            out.put(short);
        }
        start = i + 1;
    }
    out.put(&bytes[start..]);
    out.byte(b'"');
}

/// Removes the temporary file unless disarmed.
struct TempGuard {
    path: Option<PathBuf>,
}

impl Drop for TempGuard {
    fn drop(&mut self) {
        if let Some(path) = self.path.take() {
            let _ = fs::remove_file(path);
        }
    }
}

/// A temporary name beside `file_name`, unique enough that a clash is rare (and `O_EXCL` catches it).
fn temp_name(file_name: &std::ffi::OsStr, attempt: u32) -> std::ffi::OsString {
    static COUNTER: AtomicU64 = AtomicU64::new(0);
    let n = COUNTER.fetch_add(1, Ordering::Relaxed);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let mut name = std::ffi::OsString::from(".");
    name.push(file_name);
    name.push(format!(
        ".r4-run-{}-{n}-{nanos:08x}-{attempt}.tmp",
        std::process::id()
    ));
    name
}

/// Write `contents` to `path` atomically, with mode 0600 whatever the umask.
///
/// A new temporary file is created beside `path` (`O_CREAT|O_EXCL|O_NOFOLLOW`, mode 0600, then an
/// explicit `fchmod` 0600), written, `fsync`ed and renamed over `path`; then the directory is
/// `fsync`ed (best effort: the data itself is already on disk). On any error the temporary file is
/// removed and an existing `path` is left untouched. A symlink at `path` is replaced, not followed.
pub fn write_atomic(path: &Path, contents: &[u8]) -> io::Result<()> {
    let file_name = match path.file_name() {
        Some(name) => name,
        None => {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("{} does not name a file", path.display()),
            ))
        }
    };
    match fs::metadata(path) {
        Ok(meta) if meta.is_dir() => return Err(io::Error::from_raw_os_error(libc::EISDIR)),
        _ => {}
    }
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };

    let mut attempt = 0;
    let (mut file, temp_path) = loop {
        let candidate = dir.join(temp_name(file_name, attempt));
        match OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .custom_flags(libc::O_NOFOLLOW | libc::O_CLOEXEC)
            .open(&candidate)
        {
            Ok(file) => break (file, candidate),
            Err(e) if e.kind() == io::ErrorKind::AlreadyExists && attempt < 16 => attempt += 1,
            Err(e) => return Err(e),
        }
    };
    let mut guard = TempGuard {
        path: Some(temp_path.clone()),
    };

    // fchmod: the mode given to open() is masked by the umask; this is not.
    file.set_permissions(fs::Permissions::from_mode(0o600))?;
    file.write_all(contents)?;
    file.sync_all()?;
    drop(file);
    fs::rename(&temp_path, path)?;
    guard.path = None;

    // Make the rename itself durable. Some filesystems refuse to fsync a directory; the file's data
    // is already synced and the rename done, so this is not reported as a failure.
    if let Ok(d) = File::open(dir) {
        let _ = d.sync_all();
    }
    Ok(())
}

/// A warning when `path` (a file about to be, or just, written) lies inside a git work tree and git
/// does not ignore it, so that secrets are not committed by accident.
///
/// Runs one `git check-ignore -q` in the file's directory. `None` when the file is ignored, when the
/// directory is not in a work tree, or when git is not installed or fails. The message has two lines:
/// `PATH is inside a git work tree and is not ignored by git` and `  hint: …`.
pub fn git_ignore_warning(path: &Path) -> Option<String> {
    let file_name = path.file_name()?;
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let status = Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(["check-ignore", "-q", "--"])
        // git needs none of r4-run's own settings, least of all the key.
        .env_remove("R4_API_KEY")
        .env_remove("R4_API_KEY_FILE")
        .arg(file_name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .ok()?;
    // 0: ignored; 1: not ignored; 128: not a work tree, or another fatal error.
    if status.code() != Some(1) {
        return None;
    }
    let mut quoted = Vec::new();
    shell_single_quote(&mut quoted, &format!("/{}", file_name.to_string_lossy()));
    let quoted = String::from_utf8_lossy(&quoted);
    let gitignore = if dir == Path::new(".") {
        ".gitignore".to_string()
    } else {
        let mut q = Vec::new();
        shell_single_quote(&mut q, &dir.join(".gitignore").to_string_lossy());
        String::from_utf8_lossy(&q).into_owned()
    };
    Some(format!(
        "{} is inside a git work tree and is not ignored by git\n  hint: keep it out of commits: echo {quoted} >> {gitignore}",
        path.display()
    ))
}

/// Where `--dotenv PATH` really goes, which decides how it is written.
#[derive(Debug, PartialEq, Eq)]
enum Destination {
    /// One of r4-run's own open descriptors, named through `/dev/stdout`, `/dev/fd/N` or
    /// `/proc/self/fd/N` (possibly behind a symlink), as `--dotenv >(cmd)` or `--dotenv /dev/stdout`
    /// give: written to that descriptor, as a shell redirection would, at its offset and with its
    /// flags (a `>>` file is appended to).
    Descriptor(std::os::fd::RawFd),
    /// Something that exists and is not a regular file or a directory: a FIFO, a character device
    /// (`/dev/null`, a terminal), a socket. There is no file to replace: it is opened and written.
    Special,
    /// A regular file, or nothing yet: written atomically (a temporary file, then a rename), 0600.
    RegularFile,
}

/// Decides how `path` is written. A temporary file and a rename make sense only for a regular file:
/// renaming over `/dev/stdout` (a symlink) would replace the link itself (as root, for the whole
/// machine) and write nothing where the user looks.
fn destination(path: &Path) -> Destination {
    let mut hop = path.to_path_buf();
    // Follow the chain of symlinks one link at a time, looking for a descriptor's name on the way
    // (the last link, `/proc/self/fd/1`, points at the descriptor's file, which would lose its
    // offset and flags if opened anew).
    for _ in 0..40 {
        if let Some(fd) = descriptor_named(&hop) {
            if descriptor_writable(fd) {
                return Destination::Descriptor(fd);
            }
        }
        match fs::read_link(&hop) {
            Ok(target) => {
                hop = match hop.parent() {
                    Some(dir) if target.is_relative() => dir.join(target),
                    _ => target,
                };
            }
            Err(_) => break,
        }
    }
    match fs::metadata(path) {
        Ok(meta) if !meta.is_file() && !meta.is_dir() => Destination::Special,
        _ => Destination::RegularFile,
    }
}

/// The descriptor that `path` names, if it is one of `/dev/stdin|stdout|stderr`, `/dev/fd/N`,
/// `/proc/self/fd/N` or `/proc/<our pid>/fd/N`.
fn descriptor_named(path: &Path) -> Option<std::os::fd::RawFd> {
    let text = path.to_str()?;
    match text {
        "/dev/stdin" => return Some(0),
        "/dev/stdout" => return Some(1),
        "/dev/stderr" => return Some(2),
        _ => {}
    }
    let own = format!("/proc/{}/fd/", std::process::id());
    let number = text
        .strip_prefix("/dev/fd/")
        .or_else(|| text.strip_prefix("/proc/self/fd/"))
        .or_else(|| text.strip_prefix("/proc/thread-self/fd/"))
        .or_else(|| text.strip_prefix(own.as_str()))?;
    number.parse().ok()
}

/// Whether `fd` is open in r4-run for writing.
fn descriptor_writable(fd: std::os::fd::RawFd) -> bool {
    // SAFETY: F_GETFL only reads the descriptor's flags; an fd that is not open gives -1 (EBADF).
    let flags = unsafe { libc::fcntl(fd, libc::F_GETFL) };
    flags >= 0 && matches!(flags & libc::O_ACCMODE, libc::O_WRONLY | libc::O_RDWR)
}

/// Writes `bytes` to r4-run's open descriptor `fd`, through a duplicate so that nothing of ours
/// closes it. Straight to the descriptor: std's stdout buffer is never freed, so a value copied into
/// it would stay in our memory for the whole life of a child started next.
fn write_to_descriptor(fd: std::os::fd::RawFd, bytes: &[u8]) -> io::Result<()> {
    use std::os::fd::BorrowedFd;
    let _stdout = (fd == libc::STDOUT_FILENO).then(|| io::stdout().lock());
    // SAFETY: `fd` is open (checked by the caller, or stdout), and the borrow ends before this
    // function returns, while r4-run keeps the descriptor open.
    let borrowed = unsafe { BorrowedFd::borrow_raw(fd) };
    File::from(borrowed.try_clone_to_owned()?).write_all(bytes)
}

/// Opens a FIFO, device or socket that already exists and writes `bytes` to it.
fn write_in_place(path: &Path, bytes: &[u8]) -> io::Result<()> {
    OpenOptions::new()
        .write(true)
        .custom_flags(libc::O_NOCTTY | libc::O_CLOEXEC)
        .open(path)?
        .write_all(bytes)
}

/// `--dotenv`: renders the selected variables and writes them to stdout or, atomically, to a file.
pub fn write_selected(
    target: &Target,
    selected: &[Selected<'_>],
) -> Result<(), crate::error::Error> {
    use crate::error::Error;
    let format = target.format;
    let pairs: Vec<(&str, &str)> = selected
        .iter()
        .map(|s| (s.name.as_str(), s.value.expose()))
        .collect();
    let rendered = render(&pairs, format).map_err(|e| Error::new(e.to_string()).hint(e.hint()))?;
    drop(pairs);
    for skipped in &rendered.skipped {
        warn!(
            "leaving \"{}\" out of the {format} output: {}",
            crate::report::shown(&skipped.name),
            skipped.reason
        );
    }
    let written = selected.len() - rendered.skipped.len();
    match &target.dest {
        Dest::Stdout => {
            write_to_descriptor(libc::STDOUT_FILENO, &rendered.bytes).map_err(|e| {
                Error::new(format!("cannot write the {format} output to stdout: {e}"))
                    .hint("check where stdout goes (a closed pipe, a full disk)")
            })?;
            verbose!(1, "wrote {written} variables to stdout as {format}");
        }
        Dest::File(path) => match destination(path) {
            Destination::Descriptor(fd) => {
                write_to_descriptor(fd, &rendered.bytes).map_err(|e| {
                    Error::new(format!(
                        "cannot write to {} (descriptor {fd}): {e}",
                        path.display()
                    ))
                    .hint("check where that descriptor goes (a closed pipe, a full disk)")
                })?;
                verbose!(
                    1,
                    "wrote {written} variables to {} (descriptor {fd}) as {format}",
                    path.display()
                );
            }
            Destination::Special => {
                write_in_place(path, &rendered.bytes).map_err(|e| {
                    Error::new(format!("cannot write to {}: {e}", path.display()))
                        .hint("check that it can be opened for writing (a FIFO needs a reader)")
                })?;
                verbose!(
                    1,
                    "wrote {written} variables to {} (not a regular file: written in place) as {format}",
                    path.display()
                );
            }
            Destination::RegularFile => {
                write_atomic(path, &rendered.bytes).map_err(|e| {
                    Error::new(format!("cannot write {}: {e}", path.display()))
                        .hint("check that the directory exists and is writable; an earlier file there is unchanged")
                })?;
                verbose!(
                    1,
                    "wrote {written} variables to {} as {format} (mode 0600)",
                    path.display()
                );
                if let Some(warning) = git_ignore_warning(path) {
                    warn!("{warning}");
                }
            }
        },
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn out(vars: &[(&str, &str)], format: Format) -> String {
        String::from_utf8(render(vars, format).unwrap().bytes.to_vec()).unwrap()
    }

    #[test]
    fn format_names_round_trip() {
        for f in Format::ALL {
            assert_eq!(Format::parse(f.name()), Some(f));
            assert_eq!(f.name().parse::<Format>(), Ok(f));
        }
        assert_eq!(Format::parse("env"), None);
    }

    #[test]
    fn dotenv_quoting_rules() {
        assert_eq!(
            out(&[("A", "abc-1.2:3@x%+,=/_")], Format::Dotenv),
            "A=abc-1.2:3@x%+,=/_\n"
        );
        assert_eq!(out(&[("A", "")], Format::Dotenv), "A=''\n");
        assert_eq!(
            out(&[("A", "a b $HOME `x` \"q\"\n#")], Format::Dotenv),
            "A='a b $HOME `x` \"q\"\n#'\n"
        );
        assert_eq!(
            out(&[("A", "it's $x `y` \"z\" \\ ")], Format::Dotenv),
            "A=\"it's \\$x `y` \\\"z\\\" \\\\ \"\n"
        );
        assert_eq!(
            out(&[("A", "a\r\nb\tc")], Format::Dotenv),
            "A=\"a\r\nb\tc\"\n"
        );
    }

    #[test]
    fn shell_quoting() {
        assert_eq!(
            out(&[("A", "it's"), ("B", "")], Format::Shell),
            "export A='it'\\''s'\nexport B=''\n"
        );
    }

    #[test]
    fn json_escapes() {
        assert_eq!(
            out(
                &[("a\"b", "\u{1}\u{8}\u{c}\n\r\t\\\"é\u{7f}")],
                Format::Json
            ),
            "{\"a\\\"b\":\"\\u0001\\b\\f\\n\\r\\t\\\\\\\"é\u{7f}\"}\n"
        );
        assert_eq!(out(&[], Format::Json), "{}\n");
    }

    #[test]
    fn names_are_skipped_per_format() {
        let vars = [
            ("1A", "x"),
            ("A-B", "x"),
            ("A B", "x"),
            ("", "x"),
            ("#A", "x"),
            ("A=B", "x"),
            ("OK", "x"),
        ];
        let r = render(&vars, Format::Dotenv).unwrap();
        let names: Vec<_> = r.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["1A", "A-B", "A B", "", "#A", "A=B"]);
        assert_eq!(&**r.bytes, b"OK=x\n");
        let r = render(&vars, Format::Docker).unwrap();
        let names: Vec<_> = r.skipped.iter().map(|s| s.name.as_str()).collect();
        assert_eq!(names, ["A B", "", "#A", "A=B"]);
        assert!(render(&vars, Format::Json).unwrap().skipped.is_empty());
    }

    #[test]
    fn refusals_name_variables_not_values() {
        let e = render(
            &[("A", "x\ny"), ("B", "ok"), ("C", "s3cr3t\r")],
            Format::Docker,
        )
        .unwrap_err();
        assert_eq!(
            e,
            RenderError::DockerMultiline {
                names: vec!["A".into(), "C".into()]
            }
        );
        let msg = e.to_string();
        assert!(msg.contains("A, C") && !msg.contains("s3cr3t"), "{msg}");
        for f in Format::ALL {
            let e = render(&[("A", "s3cr3t\0"), ("B\0\n", "x"), ("C", "y")], f).unwrap_err();
            assert_eq!(e.names(), ["A", "B\0\n"]);
            let msg = e.to_string();
            assert!(
                msg.contains("A, B\\u{0}\\n") && !msg.contains("s3cr3t"),
                "{msg}"
            );
            assert!(!e.hint().is_empty());
        }
    }

    #[test]
    fn descriptors_are_recognised_by_name() {
        assert_eq!(descriptor_named(Path::new("/dev/stdout")), Some(1));
        assert_eq!(descriptor_named(Path::new("/dev/fd/63")), Some(63));
        assert_eq!(descriptor_named(Path::new("/proc/self/fd/3")), Some(3));
        let own = format!("/proc/{}/fd/7", std::process::id());
        assert_eq!(descriptor_named(Path::new(&own)), Some(7));
        assert_eq!(descriptor_named(Path::new("/proc/1/fd/7")), None);
        assert_eq!(descriptor_named(Path::new("/dev/fd/x")), None);
        assert_eq!(descriptor_named(Path::new(".env")), None);
    }

    #[test]
    fn only_regular_files_are_written_atomically() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join(".env");
        assert_eq!(destination(&file), Destination::RegularFile);
        std::fs::write(&file, "x").unwrap();
        assert_eq!(destination(&file), Destination::RegularFile);
        assert_eq!(destination(Path::new("/dev/null")), Destination::Special);
        let link = dir.path().join("null-link");
        std::os::unix::fs::symlink("/dev/null", &link).unwrap();
        assert_eq!(destination(&link), Destination::Special);
    }
}
