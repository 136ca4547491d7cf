//! The static r4-run as PID 1 in an empty root, as in a `FROM scratch` image: the root holds only
//! r4-run, a static busybox for the child, /etc/hosts and, for HTTPS, the emulator's CA. The
//! network namespace is the host's, so loopback reaches the emulator serving from this process.
//!
//! Needs the static build (`cargo build --release --target x86_64-unknown-linux-gnu`; .ci/run makes
//! it before the tests), Debian's busybox-static at /bin/busybox, and `unshare`; each missing piece
//! is a printed SKIPPED, not a failure. (Run locally, the static build may be older than the
//! sources: rebuild it after changing r4-run.)

use crate::support::emulator::Emulator;
use crate::support::tls::{identity, HttpsEmulator};
use crate::support::{DEADLINE, KEY, PROJECT};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};

const VARS: [(&str, &str); 3] = [
    ("GREETING", "hello from r4"),
    (
        "DATABASE_URL",
        "postgres://app:pw@db.internal:5432/app?sslmode=require",
    ),
    ("QUOTES", r#"it's "quoted" $HOME"#),
];

/// The static r4-run of `cargo build [--release] --target x86_64-unknown-linux-gnu`, beside this
/// test's own target directory; release first.
fn static_r4_run() -> Option<PathBuf> {
    // target/debug/deps/cli-HASH → target
    let exe = std::env::current_exe().ok()?;
    let target = exe.parent()?.parent()?.parent()?;
    ["release", "debug"]
        .iter()
        .map(|profile| {
            target
                .join("x86_64-unknown-linux-gnu")
                .join(profile)
                .join("r4-run")
        })
        .find(|path| path.is_file())
}

/// Whether `path` is an ELF executable with no program interpreter: it runs with nothing else in
/// the root (no ld.so, no libc.so).
fn is_static_elf(path: &Path) -> bool {
    let Ok(elf) = std::fs::read(path) else {
        return false;
    };
    // 64-bit little-endian ELF: e_phoff at 32 (8 bytes), e_phentsize at 54 and e_phnum at 56 (2 each).
    if elf.len() < 64 || &elf[..4] != b"\x7fELF" || elf[4] != 2 || elf[5] != 1 {
        return false;
    }
    let u16_at = |at: usize| u16::from_le_bytes([elf[at], elf[at + 1]]) as usize;
    let phoff = u64::from_le_bytes(elf[32..40].try_into().unwrap()) as usize;
    let (phentsize, phnum) = (u16_at(54), u16_at(56));
    const PT_INTERP: u32 = 3;
    (0..phnum).all(|i| {
        let at = phoff + i * phentsize;
        elf.get(at..at + 4)
            .is_some_and(|p_type| u32::from_le_bytes(p_type.try_into().unwrap()) != PT_INTERP)
    })
}

/// An empty root: r4-run at /r4-run, busybox at /busybox, /etc/hosts naming r4.test, and `ca_pem`
/// at /ca.pem when given.
fn make_root(r4_run: &Path, busybox: &Path, ca_pem: Option<&str>) -> tempfile::TempDir {
    let root = tempfile::tempdir().unwrap();
    std::fs::copy(r4_run, root.path().join("r4-run")).unwrap();
    std::fs::copy(busybox, root.path().join("busybox")).unwrap();
    std::fs::create_dir(root.path().join("etc")).unwrap();
    std::fs::write(
        root.path().join("etc/hosts"),
        "127.0.0.1 localhost r4.test\n::1 localhost\n",
    )
    .unwrap();
    if let Some(pem) = ca_pem {
        std::fs::write(root.path().join("ca.pem"), pem).unwrap();
    }
    root
}

/// `unshare --fork --pid --mount --root=ROOT --kill-child` then `args`, with exactly `env`; waits
/// at most the harness's deadline (then kills it and fails).
fn in_root(root: &Path, env: &[(&str, &str)], args: &[&str]) -> Output {
    let mut cmd = Command::new("unshare");
    cmd.args(["--fork", "--pid", "--mount", "--kill-child"])
        .arg(format!("--root={}", root.display()))
        .args(args)
        .env_clear()
        .envs(env.iter().copied())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let child = cmd.spawn().expect("unshare starts");
    let pid = child.id() as i32;
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        let _ = tx.send(child.wait_with_output());
    });
    match rx.recv_timeout(DEADLINE) {
        Ok(output) => output.expect("unshare's output"),
        Err(_) => {
            // SAFETY: plain integers; unshare has not been reaped (its waiter has not reported), so
            // the pid is still ours; --kill-child takes the namespace down with it.
            unsafe { libc::kill(pid, libc::SIGKILL) };
            panic!("unshare {args:?} did not end in time");
        }
    }
}

/// Everything this test needs, or why it cannot run here.
struct Setting {
    r4_run: PathBuf,
    busybox: PathBuf,
}

fn setting() -> Result<Setting, String> {
    let r4_run = static_r4_run().ok_or(
        "no static r4-run: build it with cargo build --release --target x86_64-unknown-linux-gnu",
    )?;
    if !is_static_elf(&r4_run) {
        // Built, but not static: that is a failure of the static build, not of this machine.
        panic!("{} is not a static executable", r4_run.display());
    }
    let busybox = PathBuf::from("/bin/busybox");
    if !is_static_elf(&busybox) {
        return Err("no static /bin/busybox: apt-get install busybox-static".to_owned());
    }
    // Can this machine make the namespaces at all?
    let root = make_root(&r4_run, &busybox, None);
    let tried = in_root(root.path(), &[], &["/busybox", "true"]);
    if !tried.status.success() {
        return Err(format!(
            "unshare refuses here: {}",
            String::from_utf8_lossy(&tried.stderr).trim()
        ));
    }
    Ok(Setting { r4_run, busybox })
}

/// What the child printed: its pid (from `echo pid=$$`) and its environment (`env`, one per line:
/// the values here hold no newline).
fn child_saw(output: &Output) -> (u32, BTreeMap<String, String>) {
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(
        output.status.code(),
        Some(0),
        "stdout:\n{stdout}\nstderr:\n{stderr}"
    );
    let mut lines = stdout.lines();
    let pid = lines
        .next()
        .and_then(|line| line.strip_prefix("pid="))
        .and_then(|pid| pid.parse().ok())
        .unwrap_or_else(|| panic!("no pid line:\n{stdout}"));
    let env = lines
        .filter_map(|line| line.split_once('='))
        .map(|(name, value)| (name.to_owned(), value.to_owned()))
        .collect();
    (pid, env)
}

fn assert_vars_arrived(env: &BTreeMap<String, String>, base: &str) {
    for (name, value) in VARS {
        assert_eq!(
            env.get(name).map(String::as_str),
            Some(value),
            "{base}: {name}"
        );
    }
    assert!(
        !env.contains_key("R4_API_KEY"),
        "{base}: the key reached the child"
    );
}

/// Runs r4-run as PID 1 in `root` against `base`; returns the child's pid and environment.
fn run_as_pid_1(
    root: &Path,
    base: &str,
    ssl_cert_file: Option<&str>,
) -> (u32, BTreeMap<String, String>) {
    let mut env = vec![("R4_API_KEY", KEY)];
    if let Some(file) = ssl_cert_file {
        env.push(("SSL_CERT_FILE", file));
    }
    let output = in_root(
        root,
        &env,
        &[
            "/r4-run",
            "--base-url",
            base,
            "--project",
            PROJECT,
            "--timeout",
            "10",
            "--",
            "/busybox",
            "sh",
            "-c",
            "echo pid=$$; env",
        ],
    );
    child_saw(&output)
}

#[test]
fn the_static_binary_runs_as_pid_1_in_an_empty_root_over_http() {
    let setting = match setting() {
        Ok(setting) => setting,
        Err(why) => return println!("SKIPPED: {why}"),
    };
    let api = Emulator::with_project(&VARS, &[]);
    let port = api.url.rsplit(':').next().unwrap();
    let root = make_root(&setting.r4_run, &setting.busybox, None);

    // An IP literal: no name to look up, so nothing but r4-run and its child in the namespace.
    let base = format!("http://127.0.0.1:{port}");
    let (pid, env) = run_as_pid_1(root.path(), &base, None);
    assert_vars_arrived(&env, &base);
    assert_eq!(pid, 2, "{base}: the child's pid in the namespace");

    // A name: localhost is loopback without a lookup, and a name in /etc/hosts is read from the file
    // without a lookup thread (which would take a pid number in the namespace): still pid 2.
    let base = format!("http://localhost:{port}");
    let (pid, env) = run_as_pid_1(root.path(), &base, None);
    assert_vars_arrived(&env, &base);
    assert_eq!(pid, 2, "{base}: the child's pid in the namespace");
}

#[test]
fn the_static_binary_runs_as_pid_1_in_an_empty_root_over_https() {
    let setting = match setting() {
        Ok(setting) => setting,
        Err(why) => return println!("SKIPPED: {why}"),
    };
    let api = HttpsEmulator::with_project(&VARS, &identity(&["r4.test"]));
    let root = make_root(&setting.r4_run, &setting.busybox, Some(&api.ca_pem));

    let base = format!("https://127.0.0.1:{}", api.port);
    let (pid, env) = run_as_pid_1(root.path(), &base, Some("/ca.pem"));
    assert_vars_arrived(&env, &base);
    assert_eq!(pid, 2, "{base}: the child's pid in the namespace");

    // The certificate's name, resolved from /etc/hosts in the root (see the http test on the pid).
    let base = format!("https://r4.test:{}", api.port);
    let (pid, env) = run_as_pid_1(root.path(), &base, Some("/ca.pem"));
    assert_vars_arrived(&env, &base);
    assert_eq!(pid, 2, "{base}: the child's pid in the namespace");

    // Without SSL_CERT_FILE r4-run looks for the system's store, which the root has none of: the
    // same certificate is refused, so the trust above came from /ca.pem.
    let output = in_root(
        root.path(),
        &[("R4_API_KEY", KEY)],
        &[
            "/r4-run",
            "-v",
            "--base-url",
            &base,
            "-p",
            PROJECT,
            "--",
            "/busybox",
            "true",
        ],
    );
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(125), "{stderr}");
    assert!(stderr.contains("SSL_CERT_FILE"), "{stderr}");
    // With no store at all, r4-run trusts Mozilla's roots built into it (which do not hold the
    // emulator's CA), and -v says so.
    assert!(
        stderr.contains("certificate authorities from Mozilla's roots built into r4-run"),
        "{stderr}"
    );

    // An image that carries a bundle where Debian keeps it needs no SSL_CERT_FILE.
    let certs = root.path().join("etc/ssl/certs");
    std::fs::create_dir_all(&certs).unwrap();
    std::fs::write(certs.join("ca-certificates.crt"), &api.ca_pem).unwrap();
    let (_, env) = run_as_pid_1(root.path(), &base, None);
    assert_vars_arrived(&env, &format!("{base}, /etc/ssl/certs/ca-certificates.crt"));
}
