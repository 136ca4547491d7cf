//! The harness: a builder that reads like a user's session, a probe child, and a hostile corpus.
#![allow(dead_code)]

pub mod corpus;
pub mod emulator;
pub mod tls;

use std::collections::BTreeMap;
use std::ffi::OsString;
use std::io::{BufRead, BufReader, Read};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Output, Stdio};
use std::sync::mpsc::{Receiver, RecvTimeoutError};
use std::sync::OnceLock;
use std::time::{Duration, Instant};

/// How long any one awaited event may take before a test fails.
pub const DEADLINE: Duration = Duration::from_secs(20);

pub const KEY: &str = "rk_test123.s3cretKeyPart-9f8e7d";
pub const KEY_SECRET_PART: &str = "s3cretKeyPart-9f8e7d";
pub const PROJECT: &str = "507f1f77bcf86cd799439014";

/// The r4-run binary under test. Cargo names it at compile time and, for the test run, in the
/// environment; the compile-time name is missing when a POSIX `sh` rustc wrapper (.cargo/config.toml)
/// dropped `CARGO_BIN_EXE_r4-run` (a '-' makes it no shell variable), hence the fallbacks.
pub fn bin() -> &'static Path {
    static BIN: OnceLock<PathBuf> = OnceLock::new();
    BIN.get_or_init(|| {
        option_env!("CARGO_BIN_EXE_r4-run")
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("CARGO_BIN_EXE_r4-run").map(PathBuf::from))
            .unwrap_or_else(|| {
                // target/debug/deps/cli-HASH → target/debug/r4-run
                let exe = std::env::current_exe().expect("the test binary's path");
                exe.parent().and_then(Path::parent).unwrap().join("r4-run")
            })
    })
}

/// An r4-run invocation under construction. Starts from an empty environment plus PATH, so each
/// test says exactly what r4-run inherits.
#[must_use]
pub struct R4Run {
    cmd: Command,
    dir: tempfile::TempDir,
    probe: bool,
    wrapper: Vec<OsString>,
    /// The wrapper execs r4-run (so r4-run's pid is the wrapper's, and the probe is our grandchild).
    wrapper_execs: bool,
    /// Run r4-run as this uid and gid.
    user: Option<(u32, u32)>,
    /// Signals r4-run is started with ignored (SIG_IGN), as a caller like systemd would start it.
    ignored: Vec<libc::c_int>,
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
        wrapper: Vec::new(),
        wrapper_execs: false,
        user: None,
        ignored: Vec::new(),
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

    /// Starts r4-run as this user and group (setgid, then setuid, before exec).
    pub fn user(mut self, uid: u32, gid: u32) -> Self {
        self.user = Some((uid, gid));
        self
    }

    /// Starts r4-run with `signal` ignored (std resets SIGPIPE to the default in every child it
    /// starts: this sets it to SIG_IGN again, after that, as a caller's `trap '' PIPE` would).
    pub fn ignoring(mut self, signal: libc::c_int) -> Self {
        self.ignored.push(signal);
        self
    }

    /// Applies `user` and `ignoring` to a command that starts r4-run (or its wrapper).
    fn set_up_start(&self, cmd: &mut Command) {
        if let Some((uid, gid)) = self.user {
            cmd.uid(uid).gid(gid);
        }
        let ignored = self.ignored.clone();
        if !ignored.is_empty() {
            // SAFETY: between fork and exec, only signal(), which is async-signal-safe; the
            // vector was allocated before the fork and is only read.
            unsafe {
                cmd.pre_exec(move || {
                    for &signal in &ignored {
                        if libc::signal(signal, libc::SIG_IGN) == libc::SIG_ERR {
                            return Err(std::io::Error::last_os_error());
                        }
                    }
                    Ok(())
                });
            }
        }
    }

    pub fn run(mut self) -> Ran {
        let mut cmd = if self.wrapper.is_empty() {
            std::mem::replace(&mut self.cmd, Command::new(bin()))
        } else {
            self.command_to_start()
        };
        self.set_up_start(&mut cmd);
        let output = cmd.output().expect("r4-run starts");
        let ran_child = self.probe && output.status.code() == Some(0);
        let child_env = ran_child.then(|| parse_env0(&output.stdout));
        Ran {
            output,
            child_env,
            _dir: self.dir,
        }
    }

    /// Runs r4-run under another program, e.g. `unshare --fork --pid --mount-proc`.
    pub fn wrapped_in<I: IntoIterator<Item = S>, S: Into<OsString>>(mut self, wrapper: I) -> Self {
        self.wrapper = wrapper.into_iter().map(Into::into).collect();
        self
    }

    /// Runs r4-run through a wrapper that sets something up and then execs r4-run in its place
    /// (`sh -c '...; exec "$@"'`): r4-run keeps the wrapper's pid.
    pub fn exec_wrapped_in<I: IntoIterator<Item = S>, S: Into<OsString>>(self, wrapper: I) -> Self {
        let mut run = self.wrapped_in(wrapper);
        run.wrapper_execs = true;
        run
    }

    /// Runs the signal probe (probe.py) as the command, logging to `signals.log` in the tempdir,
    /// with these extra probe arguments.
    pub fn signal_probe(mut self, probe_args: &[&str]) -> Self {
        let log = self.dir.path().join("signals.log");
        self.cmd
            .arg("--")
            .arg(python())
            .arg(probe_script())
            .arg(log);
        self.cmd.args(probe_args);
        self
    }

    /// Starts r4-run in its own process group (so a terminal the tests run in plays no part), stdin
    /// from /dev/null, stdout read line by line, stderr kept.
    pub fn spawn(self) -> Spawned {
        let mut cmd = self.command_to_start();
        cmd.process_group(0);
        cmd.stdin(Stdio::null());
        self.start(cmd)
    }

    /// Starts r4-run as a session leader whose controlling terminal is `pty` (stdin), as
    /// `ssh -t host r4-run …`, `setsid` or a tmux command would; stdout and stderr are pipes, read
    /// as for `spawn` (so nothing the test waits for passes through the terminal, whose Ctrl-C
    /// flushes what is not yet read).
    pub fn spawn_on_terminal(self, pty: &Pty) -> Spawned {
        let mut cmd = self.command_to_start();
        cmd.stdin(pty.slave.try_clone().unwrap());
        // SAFETY: between fork and exec, only async-signal-safe calls: a new session whose
        // controlling terminal is the pty (stdin), so r4-run's group is the terminal's foreground
        // group, as in a shell.
        unsafe {
            cmd.pre_exec(|| {
                if libc::setsid() < 0 || libc::ioctl(0, libc::TIOCSCTTY, 0) < 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            });
        }
        self.start(cmd)
    }

    fn start(self, mut cmd: Command) -> Spawned {
        let wrapped = !self.wrapper.is_empty() && !self.wrapper_execs;
        self.set_up_start(&mut cmd);
        cmd.stdout(Stdio::piped()).stderr(Stdio::piped());
        let mut child = cmd.spawn().expect("r4-run starts");
        let lines = line_reader(child.stdout.take().unwrap());
        let (err_tx, err_lines) = std::sync::mpsc::channel();
        let mut stderr = BufReader::new(child.stderr.take().unwrap());
        let stderr = std::thread::spawn(move || {
            let mut text = String::new();
            let mut line = Vec::new();
            while matches!(stderr.read_until(b'\n', &mut line), Ok(n) if n > 0) {
                let decoded = String::from_utf8_lossy(&line).into_owned();
                text.push_str(&decoded);
                let _ = err_tx.send(decoded.trim_end().to_owned());
                line.clear();
            }
            text
        });
        let pid = child.id() as i32;
        let (tx, exit) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            if let Ok(status) = child.wait() {
                let _ = tx.send(status);
            }
        });
        Spawned {
            pid,
            exit,
            exited: false,
            wrapped,
            lines,
            err_lines,
            stderr: Some(stderr),
            probe_pid: None,
            dir: self.dir,
        }
    }

    /// The command to start: r4-run itself, or the wrapper with r4-run's command line after it.
    pub fn command_to_start(&self) -> Command {
        let Some((program, rest)) = self.wrapper.split_first() else {
            let mut cmd = Command::new(bin());
            cmd.args(self.cmd.get_args());
            cmd.env_clear();
            cmd.envs(self.cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
            return cmd;
        };
        let mut cmd = Command::new(program);
        cmd.args(rest).arg(bin()).args(self.cmd.get_args());
        cmd.env_clear();
        cmd.envs(self.cmd.get_envs().filter_map(|(k, v)| Some((k, v?))));
        cmd
    }

    /// Path of the probe's signal log.
    pub fn signal_log(&self) -> PathBuf {
        self.dir.path().join("signals.log")
    }

    /// Runs r4-run and also returns its peak resident memory in KiB: the `ru_maxrss` of r4-run
    /// alone, measured by `peak_memory.py` (see there why not from this process: Linux would count
    /// the test binary's own peak in). Its floor is the wrapper's size, about 10 MiB.
    pub fn run_measuring_memory(self) -> (Ran, u64) {
        use std::os::unix::process::ExitStatusExt;
        let report = self.dir.path().join("peak-memory");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/support/peak_memory.py");
        let mut ran = self
            .wrapped_in([python().as_os_str(), script.as_os_str(), report.as_os_str()])
            .run();
        let said = std::fs::read_to_string(&report).expect("peak_memory.py wrote its report");
        let (status, peak_kib) = said
            .trim()
            .split_once(' ')
            .and_then(|(s, p)| Some((s.parse::<i32>().ok()?, p.parse::<u64>().ok()?)))
            .unwrap_or_else(|| panic!("peak_memory.py report: {said:?}"));
        // r4-run's own status, not the wrapper's rendering of it.
        ran.output.status = std::process::ExitStatus::from_raw(status);
        (ran, peak_kib)
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

/// A successful run with `--fallback`, leaving the file in a directory that lives as long as the test.
pub async fn warm_fallback(url: &str) -> (tempfile::TempDir, std::path::PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let fb = dir.path().join("r4.fallback");
    r4_run()
        .against(url)
        .arg("--fallback")
        .arg(&fb)
        .args(["--", "true"])
        .run_async()
        .await
        .assert_code(0);
    (dir, fb)
}

/// The real Python interpreter (`python3` may be a pyenv shim, a shell script that would sit
/// between r4-run and the probe), resolved once.
pub fn python() -> &'static Path {
    static PYTHON: OnceLock<PathBuf> = OnceLock::new();
    PYTHON.get_or_init(|| {
        let out = Command::new("python3")
            .args(["-c", "import sys;print(sys.executable)"])
            .output()
            .expect("python3 runs");
        assert!(out.status.success(), "python3 failed: {out:?}");
        PathBuf::from(String::from_utf8(out.stdout).unwrap().trim())
    })
}

pub fn probe_script() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/cli/support/probe.py")
}

/// Reads `from` on a thread and hands over each line (without its line end) through a channel.
pub fn line_reader(from: impl Read + Send + 'static) -> Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        for line in BufReader::new(from).lines() {
            let Ok(line) = line else { break };
            if tx.send(line.trim_end_matches('\r').to_owned()).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line containing `needle`; returns it. Fails the test at the deadline or at EOF.
#[track_caller]
pub fn await_line(lines: &Receiver<String>, needle: &str, seen: &mut Vec<String>) -> String {
    let deadline = Instant::now() + DEADLINE;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match lines.recv_timeout(left) {
            Ok(line) => {
                seen.push(line.clone());
                if line.contains(needle) {
                    return line;
                }
            }
            Err(RecvTimeoutError::Timeout) => {
                panic!("no line with {needle:?} in time; saw {seen:?}")
            }
            Err(RecvTimeoutError::Disconnected) => {
                panic!("output ended before a line with {needle:?}; saw {seen:?}")
            }
        }
    }
}

/// Sends `signal` to `pid`.
pub fn send(pid: i32, signal: i32) {
    // SAFETY: kill takes plain integers; the pids are of processes these tests started.
    let rc = unsafe { libc::kill(pid, signal) };
    assert_eq!(
        rc,
        0,
        "kill({pid}, {signal}): {}",
        std::io::Error::last_os_error()
    );
}

/// A running r4-run, its stdout as lines.
pub struct Spawned {
    pid: i32,
    /// r4-run's exit status, from a thread that waits for it.
    exit: Receiver<ExitStatus>,
    exited: bool,
    /// r4-run runs under a wrapper (a PID namespace): the probe's pid is not one of ours to signal.
    wrapped: bool,
    pub lines: Receiver<String>,
    /// r4-run's stderr as lines, as they come (also kept whole for `wait`).
    err_lines: Receiver<String>,
    stderr: Option<std::thread::JoinHandle<String>>,
    /// The probe's pid, once it said "ready PID".
    pub probe_pid: Option<i32>,
    dir: tempfile::TempDir,
}

impl Spawned {
    pub fn pid(&self) -> i32 {
        self.pid
    }

    /// Waits for a stdout line containing `needle`. On failure, the message also shows what r4-run
    /// said on stderr so far and the state of r4-run and the probe, to tell a signal never relayed
    /// from a line never read.
    #[track_caller]
    pub fn await_line(&mut self, needle: &str) -> String {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let why = match self.lines.recv_timeout(left) {
                Ok(line) => {
                    seen.push(line.clone());
                    if line.contains(needle) {
                        return line;
                    }
                    continue;
                }
                Err(RecvTimeoutError::Timeout) => "no line in time",
                Err(RecvTimeoutError::Disconnected) => "the output ended",
            };
            panic!("{why} with {needle:?}; saw {seen:?}\n{}", self.diagnosis());
        }
    }

    /// Waits for a line of r4-run's stderr that `matches` (e.g. a `-vvv` diagnostic); returns it.
    #[track_caller]
    pub fn await_stderr_line(&mut self, matches: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + DEADLINE;
        let mut seen = Vec::new();
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            match self.err_lines.recv_timeout(left) {
                Ok(line) if matches(&line) => return line,
                Ok(line) => seen.push(line),
                Err(RecvTimeoutError::Timeout) => {
                    panic!("no such line on r4-run's stderr in time; saw {seen:?}")
                }
                Err(RecvTimeoutError::Disconnected) => {
                    panic!("r4-run's stderr ended before such a line; saw {seen:?}")
                }
            }
        }
    }

    /// For a failure message: what r4-run said on stderr so far, and the state and signal masks of
    /// r4-run and the probe (to tell a signal never relayed from a line never read).
    fn diagnosis(&self) -> String {
        let stderr: Vec<String> = self.err_lines.try_iter().collect();
        let state = |pid: Option<i32>| {
            pid.and_then(|pid| std::fs::read_to_string(format!("/proc/{pid}/status")).ok())
                .map(|s| {
                    s.lines()
                        .filter(|l| l.starts_with("State") || l.starts_with("Sig"))
                        .collect::<Vec<_>>()
                        .join("; ")
                })
                .unwrap_or_else(|| "gone".to_owned())
        };
        format!(
            "r4-run's stderr so far: {stderr:?}\nr4-run: {}\nprobe: {}",
            state(Some(self.pid)),
            state(self.probe_pid)
        )
    }

    /// Waits for the probe's "orphan ORPHAN PARENT" (see probe.py `--orphan`) and returns the
    /// orphan's pid and the pid of the parent it was re-parented to.
    #[track_caller]
    pub fn await_orphan(&mut self) -> (i32, i32) {
        let line = self.await_line("orphan ");
        let mut fields = line.split_whitespace().skip(1).map(|f| f.parse().unwrap());
        (fields.next().unwrap(), fields.next().unwrap())
    }

    /// Waits for the probe's "ready PID" and returns the probe's pid.
    #[track_caller]
    pub fn await_ready(&mut self) -> i32 {
        let line = self.await_line("ready ");
        let pid = line.rsplit(' ').next().unwrap().parse().unwrap();
        self.probe_pid = Some(pid);
        pid
    }

    /// Sends `signal` to r4-run.
    pub fn signal(&self, signal: i32) {
        send(self.pid(), signal);
    }

    /// Waits (bounded) for r4-run to exit; returns its status and stderr.
    #[track_caller]
    pub fn wait(&mut self) -> (ExitStatus, String) {
        let status = match self.exit.recv_timeout(DEADLINE) {
            Ok(status) => status,
            Err(_) => {
                panic!("r4-run did not exit in time\n{}", self.diagnosis())
            }
        };
        self.exited = true;
        let stderr = self.stderr.take().unwrap().join().unwrap();
        (status, stderr)
    }

    /// Waits for r4-run to exit and checks its exit code.
    #[track_caller]
    pub fn assert_exit(&mut self, code: i32) {
        let (status, stderr) = self.wait();
        assert_eq!(status.code(), Some(code), "{status}; stderr:\n{stderr}");
    }

    /// The signals the probe logged, one name a line.
    pub fn signal_log(&self) -> Vec<String> {
        std::fs::read_to_string(self.dir.path().join("signals.log"))
            .unwrap_or_default()
            .lines()
            .map(str::to_owned)
            .collect()
    }
}

impl Drop for Spawned {
    /// A failed test leaves nothing running.
    fn drop(&mut self) {
        if self.exited || self.exit.try_recv().is_ok() {
            return;
        }
        if let (Some(pid), false) = (self.probe_pid, self.wrapped) {
            // SAFETY: plain integers. r4-run is alive, so it has not reaped the probe and the pid
            // is still the probe's. (Under a wrapper the pid is a namespace's, not ours: the
            // wrapper must take its children down itself, as `unshare --kill-child` does.)
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        // SAFETY: plain integers; r4-run is not reaped yet (its waiter has not reported), so the
        // pid is still ours.
        unsafe { libc::kill(self.pid, libc::SIGKILL) };
        let _ = self.exit.recv_timeout(DEADLINE);
    }
}

/// Processes whose parent is `parent`, with their state letter, read from /proc.
pub fn children_of(parent: i32) -> Vec<(i32, char)> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
            continue;
        };
        let Ok(stat) = std::fs::read_to_string(format!("/proc/{pid}/stat")) else {
            continue;
        };
        let Some((_, rest)) = stat.rsplit_once(')') else {
            continue;
        };
        let mut fields = rest.split_whitespace();
        let state = fields.next().and_then(|s| s.chars().next()).unwrap_or('?');
        let ppid: i32 = fields.next().and_then(|p| p.parse().ok()).unwrap_or(0);
        if ppid == parent {
            found.push((pid, state));
        }
    }
    found
}

/// A pseudo-terminal: the test holds the master (the terminal's "keyboard and screen"), r4-run
/// gets the slave. Both are close-on-exec, so no process that another test starts meanwhile keeps
/// either open (a leaked master would keep the terminal from ever hanging up).
pub struct Pty {
    master: std::fs::File,
    slave: std::os::fd::OwnedFd,
}

impl Pty {
    pub fn open() -> Pty {
        use std::os::fd::{FromRawFd, OwnedFd};
        // SAFETY: posix_openpt takes flags only; the descriptor it returns is owned once, here.
        let master = unsafe { libc::posix_openpt(libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC) };
        assert!(
            master >= 0,
            "posix_openpt: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: `master` was just opened and is not owned elsewhere.
        let master = unsafe { OwnedFd::from_raw_fd(master) };
        let mut name = [0 as libc::c_char; 128];
        use std::os::fd::AsRawFd;
        // SAFETY: `master` is an open pty master; `name` is writable for its full length.
        let rc = unsafe {
            if libc::grantpt(master.as_raw_fd()) != 0 || libc::unlockpt(master.as_raw_fd()) != 0 {
                -1
            } else {
                libc::ptsname_r(master.as_raw_fd(), name.as_mut_ptr(), name.len())
            }
        };
        assert_eq!(
            rc,
            0,
            "grantpt/unlockpt/ptsname_r: {}",
            std::io::Error::last_os_error()
        );
        // SAFETY: ptsname_r wrote a NUL-terminated path into `name`; O_NOCTTY so opening it does
        // not make it the test process's controlling terminal.
        let slave = unsafe {
            libc::open(
                name.as_ptr(),
                libc::O_RDWR | libc::O_NOCTTY | libc::O_CLOEXEC,
            )
        };
        assert!(
            slave >= 0,
            "open pty slave: {}",
            std::io::Error::last_os_error()
        );
        Pty {
            master: master.into(),
            // SAFETY: `slave` was just opened and is not owned elsewhere.
            slave: unsafe { OwnedFd::from_raw_fd(slave) },
        }
    }

    /// Types `keys` on the terminal (Ctrl-C is b"\x03").
    pub fn type_keys(&self, keys: &[u8]) {
        use std::io::Write;
        (&self.master).write_all(keys).unwrap();
    }

    /// Closes the terminal's master side, as `ssh` does when the connection drops or a terminal
    /// emulator does when its window closes: the kernel hangs the terminal up.
    pub fn hang_up(self) {
        drop(self);
    }
}

/// A wiremock server answering the env endpoint with `response`, and a channel that receives one
/// message per request as soon as it has arrived (before any delay of the answer).
pub async fn server_noticing(
    response: wiremock::ResponseTemplate,
) -> (wiremock::MockServer, Receiver<()>) {
    use wiremock::matchers::{header, method, path};
    let (tx, arrived) = std::sync::mpsc::channel();
    let tx = std::sync::Mutex::new(tx);
    let server = wiremock::MockServer::start().await;
    wiremock::Mock::given(method("GET"))
        .and(path(format!("/api/v1/machine/vault/env/{PROJECT}")))
        .and(header("X-API-Key", KEY))
        .respond_with(move |_: &wiremock::Request| {
            let _ = tx.lock().unwrap().send(());
            response.clone()
        })
        .mount(&server)
        .await;
    (server, arrived)
}

/// A loopback port where every connection is refused, for as long as this lives: a TCP socket bound
/// to it but never listening. Binding and dropping a listener instead would free the port for any
/// other test to take meanwhile, and r4-run would then reach that test's server.
pub struct RefusedPort {
    _socket: std::os::fd::OwnedFd,
    pub port: u16,
}

impl RefusedPort {
    pub fn new() -> RefusedPort {
        use std::os::fd::FromRawFd;
        // SAFETY: plain integers; the returned descriptor is checked and owned below.
        let fd = unsafe { libc::socket(libc::AF_INET, libc::SOCK_STREAM | libc::SOCK_CLOEXEC, 0) };
        assert!(fd >= 0, "socket: {}", std::io::Error::last_os_error());
        // SAFETY: `fd` was just opened and is owned by nothing else.
        let socket = unsafe { std::os::fd::OwnedFd::from_raw_fd(fd) };
        // SAFETY: sockaddr_in is plain data, for which all zeroes is a valid value.
        let mut addr: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        addr.sin_family = libc::AF_INET as libc::sa_family_t;
        addr.sin_addr.s_addr = u32::from(std::net::Ipv4Addr::LOCALHOST).to_be();
        let len = std::mem::size_of::<libc::sockaddr_in>() as libc::socklen_t;
        // SAFETY: `addr` is a valid sockaddr_in of `len` bytes, `fd` an open socket.
        let rc = unsafe { libc::bind(fd, std::ptr::addr_of!(addr).cast(), len) };
        assert_eq!(rc, 0, "bind: {}", std::io::Error::last_os_error());
        let mut bound_len = len;
        // SAFETY: `addr` is writable storage of `bound_len` bytes.
        let rc =
            unsafe { libc::getsockname(fd, std::ptr::addr_of_mut!(addr).cast(), &mut bound_len) };
        assert_eq!(rc, 0, "getsockname: {}", std::io::Error::last_os_error());
        RefusedPort {
            _socket: socket,
            port: u16::from_be(addr.sin_port),
        }
    }

    /// `http://127.0.0.1:PORT`
    pub fn url(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }
}
