//! The merge policy, pure and unit-tested: which fetched variables are passed, under what names, and
//! how they combine with the inherited environment.
//!
//! Values are borrowed from `Fetched`, never copied, so the only copies r4-run makes of a secret are
//! the ones the operating system interface forces (see docs/security.md).

use crate::report::shown;
use crate::secret::SecretString;
use crate::vars::Fetched;
use std::collections::btree_map::{BTreeMap, Entry};
use std::ffi::{OsStr, OsString};
use std::fmt;

/// How fetched variables are filtered, renamed and combined with the inherited environment.
#[derive(Debug, Clone, Default)]
pub struct MergePolicy {
    /// `--preserve-env`: an inherited variable keeps its value.
    pub preserve_env: bool,
    /// `--pristine`: nothing inherited.
    pub pristine: bool,
    /// `--only`: these names alone.
    pub only: Option<Vec<String>>,
    /// `--prefix`: each name as `PREFIX_NAME`.
    pub prefix: Option<String>,
}

/// Variables that configure r4-run itself and must never reach the child.
pub const OWN_VARIABLES: [&str; 2] = ["R4_API_KEY", "R4_API_KEY_FILE"];

/// A fetched variable that passed the filters, under the name the child will see.
#[derive(Debug)]
pub struct Selected<'a> {
    pub name: String,
    pub value: &'a SecretString,
}

/// Something the user should hear about; names only, never a value.
#[derive(Debug, PartialEq, Eq)]
pub enum Notice {
    /// The name cannot be passed to a process (empty, holds `=` or NUL).
    BadName(String),
    /// The value holds a NUL byte, which no environment can carry.
    NulInValue(String),
    /// The value is still an end-to-end-encrypted envelope, not plaintext.
    Encrypted(String),
    /// `--only` names a variable that the project does not have.
    NotInProject(String),
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Names come from the server (or the user): always shown escaped.
        match self {
            Self::BadName(n) => {
                write!(f, "skipping the variable \"{}\": a name that is empty or holds '=' or NUL cannot be passed to a process", shown(n))
            }
            Self::NulInValue(n) => {
                write!(f, "skipping the variable {}: its value holds a NUL byte, which an environment cannot carry", shown(n))
            }
            Self::Encrypted(n) => write!(
                f,
                "the value of {} is an end-to-end-encrypted envelope, not plaintext: the command gets ciphertext (read it with the R4 SDK or `r4 project env`)",
                shown(n)
            ),
            Self::NotInProject(n) => write!(
                f,
                "--only names {}, which the project does not have",
                shown(n)
            ),
        }
    }
}

/// Applies `--only` and `--prefix`, and drops what cannot be passed to a process.
pub fn select<'a>(fetched: &'a Fetched, policy: &MergePolicy) -> (Vec<Selected<'a>>, Vec<Notice>) {
    let mut notices = Vec::new();
    let mut selected = Vec::with_capacity(fetched.len());
    for (name, value) in &fetched.vars {
        if let Some(only) = &policy.only {
            if !only.iter().any(|o| o == name) {
                continue;
            }
        }
        let name = match &policy.prefix {
            Some(prefix) => format!("{prefix}_{name}"),
            None => name.clone(),
        };
        if name.is_empty() || name.contains(['=', '\0']) {
            notices.push(Notice::BadName(name));
            continue;
        }
        if value.expose().contains('\0') {
            notices.push(Notice::NulInValue(name));
            continue;
        }
        if looks_encrypted(value.expose()) {
            notices.push(Notice::Encrypted(name.clone()));
        }
        selected.push(Selected { name, value });
    }
    if let Some(only) = &policy.only {
        for wanted in only {
            if fetched
                .vars
                .binary_search_by(|(n, _)| n.as_str().cmp(wanted))
                .is_err()
            {
                notices.push(Notice::NotInProject(wanted.clone()));
            }
        }
    }
    (selected, notices)
}

/// A value in the child's environment: inherited (not secret to us) or fetched (borrowed secret).
#[derive(Debug)]
pub enum EnvValue<'a> {
    Inherited(OsString),
    Fetched(&'a SecretString),
}

impl EnvValue<'_> {
    pub fn as_os_str(&self) -> &OsStr {
        match self {
            Self::Inherited(v) => v,
            Self::Fetched(v) => OsStr::new(v.expose()),
        }
    }
}

/// The complete environment of the child, by name.
pub type ChildEnv<'a> = BTreeMap<OsString, EnvValue<'a>>;

/// Builds the child's environment: the inherited one without r4-run's own variables (or nothing
/// with `--pristine`), then the selected variables, which win a clash unless `--preserve-env`.
///
/// The selected variables arrive sorted by name, so they are collected in one bulk build (linear for
/// sorted input) and the few inherited variables are inserted into that, rather than thousands of
/// fetched names each searched for in turn (docs/performance.md).
pub fn merge<'a>(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    selected: Vec<Selected<'a>>,
    policy: &MergePolicy,
) -> ChildEnv<'a> {
    let mut env: ChildEnv<'a> = selected
        .into_iter()
        .map(|Selected { name, value }| (OsString::from(name), EnvValue::Fetched(value)))
        .collect();
    if policy.pristine {
        return env;
    }
    let inherited = inherited
        .into_iter()
        .filter(|(name, _)| !OWN_VARIABLES.iter().any(|own| name == own));
    for (name, value) in inherited {
        match env.entry(name) {
            Entry::Vacant(slot) => {
                slot.insert(EnvValue::Inherited(value));
            }
            Entry::Occupied(mut slot) if policy.preserve_env => {
                crate::verbose!(
                    2,
                    "keeping the inherited {} (--preserve-env)",
                    shown(&slot.key().to_string_lossy())
                );
                slot.insert(EnvValue::Inherited(value));
            }
            Entry::Occupied(_) => {}
        }
    }
    env
}

/// What one exec may carry, as the kernel counts it (see `platform`).
#[derive(Debug, Clone, Copy, Default)]
pub struct ExecLimits {
    /// The most bytes of one `NAME=value` string, its NUL included (Linux: `MAX_ARG_STRLEN`,
    /// 32 pages). `None` where the system has no such limit of its own.
    pub per_string: Option<usize>,
    /// The most bytes of every argument and environment string, NULs and pointers included
    /// (`ARG_MAX`).
    pub total: Option<usize>,
}

/// Why the command could not be started with this environment.
#[derive(Debug, PartialEq, Eq)]
pub enum TooBig {
    Variable {
        name: String,
        bytes: usize,
        limit: usize,
    },
    Total {
        bytes: usize,
        limit: usize,
    },
}

impl fmt::Display for TooBig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Variable { name, bytes, limit } => write!(
                f,
                "the variable {} is {bytes} bytes, more than the {limit} bytes ({} KiB) this system can pass in one environment variable",
                shown(name),
                limit / 1024
            ),
            Self::Total { bytes, limit } => write!(
                f,
                "the command's environment and arguments come to {bytes} bytes, more than the {limit} bytes ({} KiB) this system can pass to a program (ARG_MAX)",
                limit / 1024
            ),
        }
    }
}

impl TooBig {
    pub fn hint(&self) -> &'static str {
        match self {
            Self::Variable { .. } => "the command cannot be started with it: leave it out with --only NAMES,\nor hand it over in a file instead (--dotenv PATH)",
            Self::Total { .. } => "pass fewer variables (--only NAMES), start from nothing inherited (--pristine),\nor hand them over in a file instead (--dotenv PATH)",
        }
    }
}

/// Checks, before anything is started, that the kernel will take `env` and `argv` in one exec:
/// past its limits exec fails with E2BIG, which would otherwise surface as a confusing 126.
pub fn check_exec_limits<'s>(
    env: &ChildEnv<'_>,
    argv: impl IntoIterator<Item = &'s OsStr>,
    limits: ExecLimits,
) -> Result<(), TooBig> {
    let pointer = std::mem::size_of::<usize>();
    let mut total = 0usize;
    for (name, value) in env {
        // `NAME=value` and its NUL.
        let bytes = name.len() + 1 + value.as_os_str().len() + 1;
        if let Some(limit) = limits.per_string {
            if bytes > limit {
                return Err(TooBig::Variable {
                    name: name.to_string_lossy().into_owned(),
                    bytes,
                    limit,
                });
            }
        }
        total += bytes + pointer;
    }
    for arg in argv {
        total += arg.len() + 1 + pointer;
    }
    // The two NULL pointers that end argv and envp.
    total += 2 * pointer;
    match limits.total {
        Some(limit) if total > limit => Err(TooBig::Total {
            bytes: total,
            limit,
        }),
        _ => Ok(()),
    }
}

/// The variable that tells a `--mount` command where its variables are.
pub const SECRETS_PATH: &str = "R4_SECRETS_PATH";

/// The child's environment under `--mount`: as `merge` builds it with no fetched variable, plus
/// `R4_SECRETS_PATH`, which always wins (an inherited one would point somewhere else).
pub fn merge_with_secrets_path<'a>(
    inherited: impl IntoIterator<Item = (OsString, OsString)>,
    path: &std::path::Path,
    policy: &MergePolicy,
) -> ChildEnv<'a> {
    let mut env = merge(inherited, Vec::new(), policy);
    env.insert(
        OsString::from(SECRETS_PATH),
        EnvValue::Inherited(path.as_os_str().to_owned()),
    );
    env
}

/// A v3 end-to-end envelope is a JSON object like `{"v":3,"iv":…,"t":…,"d":…}`. The cheap textual
/// test runs first, so ordinary values never reach the JSON parser.
pub fn looks_encrypted(value: &str) -> bool {
    let trimmed = value.trim();
    if !(trimmed.starts_with('{') && trimmed.ends_with('}') && trimmed.contains("\"v\"")) {
        return false;
    }
    #[derive(serde::Deserialize)]
    struct Envelope {
        v: serde_json::Number,
        iv: Option<serde::de::IgnoredAny>,
        d: Option<serde::de::IgnoredAny>,
    }
    match serde_json::from_str::<Envelope>(trimmed) {
        Ok(e) => e.v.is_u64() && (e.iv.is_some() || e.d.is_some()),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn fetched(vars: &[(&str, &str)]) -> Fetched {
        let mut vars: Vec<_> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), SecretString::new(v.to_string())))
            .collect();
        vars.sort_by(|a, b| a.0.cmp(&b.0));
        Fetched { vars }
    }

    fn inherited() -> Vec<(OsString, OsString)> {
        [
            ("PATH", "/bin"),
            ("A", "old"),
            ("R4_API_KEY", "rk_x.y"),
            ("R4_API_KEY_FILE", "/k"),
        ]
        .iter()
        .map(|(k, v)| (k.into(), v.into()))
        .collect()
    }

    fn run(f: &Fetched, policy: &MergePolicy) -> (Vec<(String, String)>, Vec<Notice>) {
        let (sel, notices) = select(f, policy);
        let env = merge(inherited(), sel, policy);
        let flat = env
            .iter()
            .map(|(k, v)| {
                (
                    k.to_string_lossy().into_owned(),
                    v.as_os_str().to_string_lossy().into_owned(),
                )
            })
            .collect();
        (flat, notices)
    }

    fn pairs(p: &[(&str, &str)]) -> Vec<(String, String)> {
        p.iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn fetched_wins_and_own_variables_are_dropped() {
        let f = fetched(&[("A", "new"), ("B", "b")]);
        let (env, notices) = run(&f, &MergePolicy::default());
        assert_eq!(env, pairs(&[("A", "new"), ("B", "b"), ("PATH", "/bin")]));
        assert!(notices.is_empty());
    }

    #[test]
    fn preserve_env_keeps_inherited() {
        let f = fetched(&[("A", "new"), ("B", "b")]);
        let policy = MergePolicy {
            preserve_env: true,
            ..Default::default()
        };
        assert_eq!(
            run(&f, &policy).0,
            pairs(&[("A", "old"), ("B", "b"), ("PATH", "/bin")])
        );
    }

    #[test]
    fn pristine_gives_only_fetched() {
        let f = fetched(&[("A", "new")]);
        let policy = MergePolicy {
            pristine: true,
            ..Default::default()
        };
        assert_eq!(run(&f, &policy).0, pairs(&[("A", "new")]));
    }

    #[test]
    fn only_and_prefix() {
        let f = fetched(&[("A", "1"), ("B", "2"), ("C", "3")]);
        let policy = MergePolicy {
            only: Some(vec!["A".into(), "C".into(), "Z".into()]),
            prefix: Some("APP".into()),
            pristine: true,
            ..Default::default()
        };
        let (env, notices) = run(&f, &policy);
        assert_eq!(env, pairs(&[("APP_A", "1"), ("APP_C", "3")]));
        assert_eq!(notices, [Notice::NotInProject("Z".into())]);
    }

    #[test]
    fn unpassable_names_and_values_are_skipped_by_name() {
        let f = fetched(&[
            ("", "x"),
            ("A=B", "x"),
            ("N\0", "x"),
            ("V", "a\0b"),
            ("OK", "fine"),
        ]);
        let policy = MergePolicy {
            pristine: true,
            ..Default::default()
        };
        let (env, notices) = run(&f, &policy);
        assert_eq!(env, pairs(&[("OK", "fine")]));
        assert_eq!(
            notices,
            [
                Notice::BadName("".into()),
                Notice::BadName("A=B".into()),
                Notice::BadName("N\0".into()),
                Notice::NulInValue("V".into())
            ]
        );
        for n in &notices {
            assert!(!n.to_string().contains("a\0b"));
        }
    }

    #[test]
    fn envelopes_are_flagged_but_plain_json_is_not() {
        assert!(looks_encrypted(r#"{"v":3,"iv":"abc","t":"x","d":"zz"}"#));
        assert!(!looks_encrypted(r#"{"v":"x"}"#));
        assert!(!looks_encrypted(r#"{"version":3}"#));
        assert!(!looks_encrypted("plain"));
        let f = fetched(&[("E", r#" {"v":3,"iv":"a","t":"b","d":"c"} "#)]);
        let (_, notices) = select(&f, &MergePolicy::default());
        assert_eq!(notices, [Notice::Encrypted("E".into())]);
    }

    #[test]
    fn exec_limits_name_the_variable_that_does_not_fit() {
        let big = "x".repeat(200);
        let f = fetched(&[("BIG", &big), ("SMALL", "1")]);
        let policy = MergePolicy {
            pristine: true,
            ..Default::default()
        };
        let (sel, _) = select(&f, &policy);
        let env = merge(inherited(), sel, &policy);
        let argv = [OsStr::new("true")];
        let fits = ExecLimits {
            // "BIG=" + 200 bytes + NUL
            per_string: Some(205),
            total: Some(1000),
        };
        assert_eq!(check_exec_limits(&env, argv, fits), Ok(()));
        let tight = ExecLimits {
            per_string: Some(204),
            total: None,
        };
        let e = check_exec_limits(&env, argv, tight).unwrap_err();
        assert_eq!(
            e,
            TooBig::Variable {
                name: "BIG".into(),
                bytes: 205,
                limit: 204
            }
        );
        assert!(!e.to_string().contains(&big));
        let small_total = ExecLimits {
            per_string: None,
            total: Some(200),
        };
        assert!(matches!(
            check_exec_limits(&env, argv, small_total),
            Err(TooBig::Total { .. })
        ));
        assert_eq!(check_exec_limits(&env, argv, ExecLimits::default()), Ok(()));
    }
}
