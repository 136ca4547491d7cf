//! The harness: a builder that reads like a user's session, a probe child, and a hostile corpus.
#![allow(dead_code)]

pub mod corpus;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::path::Path;
use std::process::{Command, Output};

pub const KEY: &str = "rk_test123.s3cretKeyPart-9f8e7d";
pub const KEY_SECRET_PART: &str = "s3cretKeyPart-9f8e7d";
pub const PROJECT: &str = "507f1f77bcf86cd799439014";

pub fn bin() -> &'static str {
    env!("CARGO_BIN_EXE_r4-run")
}

/// An r4-run invocation under construction. Starts from an empty environment plus PATH, so each
/// test says exactly what r4-run inherits.
#[must_use]
pub struct R4Run {
    cmd: Command,
    dir: tempfile::TempDir,
    probe: bool,
}

pub fn r4_run() -> R4Run {
    let mut cmd = Command::new(bin());
    cmd.env_clear();
    cmd.env(
        "PATH",
        std::env::var_os("PATH").unwrap_or_else(|| "/usr/bin:/bin".into()),
    );
    R4Run {
        cmd,
        dir: tempfile::tempdir().unwrap(),
        probe: false,
    }
}

impl R4Run {
    pub fn arg(mut self, a: impl Into<OsString>) -> Self {
        self.cmd.arg(a.into());
        self
    }

    pub fn args<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, args: I) -> Self {
        for a in args {
            self.cmd.arg(a.into());
        }
        self
    }

    pub fn env(mut self, k: &str, v: impl Into<OsString>) -> Self {
        self.cmd.env(k, v.into());
        self
    }

    /// The usual set-up: key in R4_API_KEY, project and base URL on the command line.
    pub fn against(self, base: &str) -> Self {
        self.env("R4_API_KEY", KEY)
            .args(["--project", PROJECT, "--base-url", base])
    }

    /// Runs `env -0` as the command: it prints exactly the environment it was given, and
    /// `Ran::child_env` reads it back.
    pub fn probe(mut self) -> Self {
        self.cmd.args(["--", "env", "-0"]);
        self.probe = true;
        self
    }

    pub fn tempdir(&self) -> &Path {
        self.dir.path()
    }

    pub fn run(mut self) -> Ran {
        let output = self.cmd.output().expect("r4-run starts");
        let ran_child = self.probe && output.status.code() == Some(0);
        let child_env = ran_child.then(|| parse_env0(&output.stdout));
        Ran {
            output,
            child_env,
            _dir: self.dir,
        }
    }

    /// Runs r4-run and also returns its peak resident memory in KiB, from the `ru_maxrss` that
    /// `wait4` reports for exactly this child.
    #[allow(clippy::zombie_processes)] // reaped by wait4 below, which std cannot see
    pub fn run_measuring_memory(mut self) -> (Ran, u64) {
        use std::io::Read;
        use std::os::unix::process::ExitStatusExt;
        use std::process::Stdio;
        self.cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        let mut child = self.cmd.spawn().expect("r4-run starts");
        let drain = |mut pipe: Box<dyn Read + Send>| {
            std::thread::spawn(move || {
                let mut bytes = Vec::new();
                let _ = pipe.read_to_end(&mut bytes);
                bytes
            })
        };
        let stdout = drain(Box::new(child.stdout.take().unwrap()));
        let stderr = drain(Box::new(child.stderr.take().unwrap()));
        let pid = child.id() as libc::pid_t;
        let mut status = 0;
        // SAFETY: rusage is a plain C struct of integers, for which all zeroes is a valid value.
        let mut usage: libc::rusage = unsafe { std::mem::zeroed() };
        // SAFETY: `pid` is our own unreaped child (std has not waited for it); `status` and `usage`
        // are valid, writable and live for the call.
        let reaped = unsafe { libc::wait4(pid, &mut status, 0, &mut usage) };
        assert_eq!(reaped, pid, "wait4: {}", std::io::Error::last_os_error());
        let output = Output {
            status: std::process::ExitStatus::from_raw(status),
            stdout: stdout.join().unwrap(),
            stderr: stderr.join().unwrap(),
        };
        let ran_child = self.probe && output.status.code() == Some(0);
        let child_env = ran_child.then(|| parse_env0(&output.stdout));
        let peak_kib = u64::try_from(usage.ru_maxrss).unwrap_or(0);
        (
            Ran {
                output,
                child_env,
                _dir: self.dir,
            },
            peak_kib,
        )
    }

    /// For async tests whose mock server runs on the same runtime.
    pub async fn run_async(self) -> Ran {
        tokio::task::spawn_blocking(move || self.run())
            .await
            .unwrap()
    }
}

pub struct Ran {
    pub output: Output,
    /// What the probe child saw, if it ran.
    pub child_env: Option<BTreeMap<String, String>>,
    _dir: tempfile::TempDir,
}

impl Ran {
    pub fn code(&self) -> i32 {
        self.output.status.code().expect("r4-run exited normally")
    }

    pub fn stderr(&self) -> String {
        String::from_utf8_lossy(&self.output.stderr).into_owned()
    }

    pub fn stdout(&self) -> String {
        String::from_utf8_lossy(&self.output.stdout).into_owned()
    }

    /// The environment the child saw; panics (with r4-run's stderr) if no child ran.
    pub fn child_env(&self) -> &BTreeMap<String, String> {
        self.child_env
            .as_ref()
            .unwrap_or_else(|| panic!("no child ran; stderr:\n{}", self.stderr()))
    }

    #[track_caller]
    pub fn assert_code(&self, want: i32) -> &Self {
        assert_eq!(self.code(), want, "exit status; stderr:\n{}", self.stderr());
        self
    }

    /// r4-run failed on its own: 125, no child, an error line and a hint, and no secret in stderr.
    #[track_caller]
    pub fn assert_failed_with(&self, needle: &str) -> &Self {
        self.assert_code(125);
        assert!(
            self.child_env.is_none() && self.output.stdout.is_empty(),
            "a child was started"
        );
        let err = self.stderr();
        assert!(err.starts_with("r4-run: error: "), "stderr:\n{err}");
        assert!(err.contains(needle), "stderr lacks {needle:?}:\n{err}");
        assert!(err.contains("  hint: "), "no hint:\n{err}");
        assert!(
            !err.contains(KEY_SECRET_PART),
            "the key's secret part leaked:\n{err}"
        );
        self
    }
}

/// Parses `env -0` output: NAME=value records, each ended by NUL.
fn parse_env0(bytes: &[u8]) -> BTreeMap<String, String> {
    bytes
        .split(|&b| b == 0)
        .filter(|r| !r.is_empty())
        .map(|record| {
            let text = String::from_utf8(record.to_vec()).expect("UTF-8 environment");
            let (k, v) = text.split_once('=').expect("NAME=value");
            (k.to_owned(), v.to_owned())
        })
        .collect()
}

/// A JSON answer of the documented shape.
pub fn env_answer(vars: &[(&str, &str)]) -> serde_json::Value {
    let env: serde_json::Map<String, serde_json::Value> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
        .collect();
    serde_json::json!({ "env": env, "projectId": PROJECT, "count": vars.len() })
}

/// A wiremock server answering the env endpoint for `PROJECT` with `vars`.
pub async fn server_with(vars: &[(&str, &str)]) -> wiremock::MockServer {
    server_answering(wiremock::ResponseTemplate::new(200).set_body_json(env_answer(vars))).await
}

pub async fn server_answering(response: wiremock::ResponseTemplate) -> wiremock::MockServer {
    use wiremock::matchers::{header, method, path};
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("GET"))
        .and(path(format!("/api/v1/machine/vault/env/{PROJECT}")))
        .and(header("X-API-Key", KEY))
        .respond_with(response)
        .mount(&server)
        .await;
    server
}
