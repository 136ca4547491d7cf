//! `write_atomic` and `git_ignore_warning`. A test binary of its own: the tests change the umask and
//! the working directory, which are process-wide, so they also hold one lock. (The file-size limit
//! is set in a child process: see `a_failed_write_leaves_the_old_file_and_no_temporary_file`.)

use std::fs;
use std::os::unix::fs::{symlink, PermissionsExt};
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::{Mutex, MutexGuard};

use r4_run::dotenv::{git_ignore_warning, write_atomic};

static PROCESS_WIDE: Mutex<()> = Mutex::new(());

fn lock() -> MutexGuard<'static, ()> {
    PROCESS_WIDE.lock().unwrap_or_else(|e| e.into_inner())
}

fn set_umask(mask: libc::mode_t) -> libc::mode_t {
    // SAFETY: umask only swaps the process's file mode creation mask; it cannot fail.
    unsafe { libc::umask(mask) }
}

fn mode(path: &Path) -> u32 {
    fs::symlink_metadata(path).unwrap().permissions().mode() & 0o7777
}

/// The names in `dir`, sorted.
fn listing(dir: &Path) -> Vec<String> {
    let mut names: Vec<String> = fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    names
}

#[test]
fn mode_is_0600_whatever_the_umask() {
    let _g = lock();
    let before = set_umask(0o022);
    for mask in [0o022, 0o077, 0o000, 0o777] {
        set_umask(mask);
        let dir = tempfile::tempdir().unwrap();
        let new = dir.path().join(".env");
        write_atomic(&new, b"A=1\n").unwrap();
        assert_eq!(mode(&new), 0o600, "new file, umask {mask:03o}");
        assert_eq!(fs::read(&new).unwrap(), b"A=1\n");

        let old = dir.path().join("old.env");
        fs::write(&old, b"old").unwrap();
        fs::set_permissions(&old, fs::Permissions::from_mode(0o644)).unwrap();
        write_atomic(&old, b"A=2\n").unwrap();
        assert_eq!(mode(&old), 0o600, "replaced file, umask {mask:03o}");
        assert_eq!(fs::read(&old).unwrap(), b"A=2\n");
        assert_eq!(
            listing(dir.path()),
            [".env", "old.env"],
            "a temporary file was left"
        );
    }
    set_umask(before);
}

/// Set in the child process that `a_failed_write_leaves_the_old_file_and_no_temporary_file` starts:
/// the path to write to.
const FAILED_WRITE_TARGET: &str = "R4_RUN_TEST_FAILED_WRITE_TARGET";

/// The write is made to fail with EFBIG through a file-size limit of 8 bytes. A resource limit is
/// process-wide, so it is set in a child process (this test binary again, running only this test):
/// in the test process it would also fail libtest's own output to a stdout that is a file, and kill
/// the run without a word.
#[test]
fn a_failed_write_leaves_the_old_file_and_no_temporary_file() {
    if let Some(target) = std::env::var_os(FAILED_WRITE_TARGET) {
        // The child: the limit and SIGXFSZ ignored (so that EFBIG comes back instead of the
        // signal's kill) were set before exec.
        let err = write_atomic(Path::new(&target), &[b'x'; 4096])
            .expect_err("the write should have failed");
        assert_eq!(err.raw_os_error(), Some(libc::EFBIG), "{err}");
        return;
    }
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(".env");
    fs::write(&target, b"OLD=contents\n").unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap());
    child
        .args([
            "--exact",
            "a_failed_write_leaves_the_old_file_and_no_temporary_file",
            "--test-threads=1",
        ])
        .env(FAILED_WRITE_TARGET, &target);
    // SAFETY: between fork and exec, only signal() and setrlimit(), which are async-signal-safe.
    unsafe {
        std::os::unix::process::CommandExt::pre_exec(&mut child, || {
            let mut limit = libc::rlimit {
                rlim_cur: 0,
                rlim_max: 0,
            };
            libc::signal(libc::SIGXFSZ, libc::SIG_IGN);
            if libc::getrlimit(libc::RLIMIT_FSIZE, &mut limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            limit.rlim_cur = 8;
            if libc::setrlimit(libc::RLIMIT_FSIZE, &limit) != 0 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = child.output().unwrap();
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{out:?}");
    assert!(said.contains("1 passed"), "the child ran no test: {said}");
    assert_eq!(fs::read(&target).unwrap(), b"OLD=contents\n");
    assert_eq!(listing(dir.path()), [".env"], "a temporary file was left");
}

#[test]
fn a_parent_that_is_a_file_fails_cleanly() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    fs::write(dir.path().join("file"), b"x").unwrap();
    let err = write_atomic(&dir.path().join("file/.env"), b"A=1\n").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOTDIR), "{err}");
    assert_eq!(listing(dir.path()), ["file"]);
}

#[test]
fn a_directory_target_is_refused() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join("sub");
    fs::create_dir(&target).unwrap();
    fs::write(target.join("keep"), b"k").unwrap();
    let err = write_atomic(&target, b"A=1\n").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EISDIR), "{err}");
    assert_eq!(listing(dir.path()), ["sub"]);
    assert_eq!(listing(&target), ["keep"]);
    assert!(write_atomic(Path::new("/"), b"x").is_err());
}

#[test]
fn a_symlink_at_the_target_is_replaced_not_followed() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let elsewhere = dir.path().join("elsewhere");
    fs::write(&elsewhere, b"untouched").unwrap();
    let target = dir.path().join(".env");
    symlink(&elsewhere, &target).unwrap();
    write_atomic(&target, b"A=1\n").unwrap();
    assert!(fs::symlink_metadata(&target).unwrap().file_type().is_file());
    assert_eq!(fs::read(&target).unwrap(), b"A=1\n");
    assert_eq!(fs::read(&elsewhere).unwrap(), b"untouched");
    assert_eq!(mode(&target), 0o600);
}

#[test]
fn a_bare_file_name_is_written_in_the_working_directory() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let cwd = std::env::current_dir().unwrap();
    std::env::set_current_dir(dir.path()).unwrap();
    let result = write_atomic(Path::new("rel.env"), b"A=1\n");
    std::env::set_current_dir(cwd).unwrap();
    result.unwrap();
    assert_eq!(fs::read(dir.path().join("rel.env")).unwrap(), b"A=1\n");
    assert_eq!(listing(dir.path()), ["rel.env"]);
}

#[test]
fn many_writes_to_one_target_leave_one_file() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    let target = dir.path().join(".env");
    std::thread::scope(|s| {
        for i in 0..8 {
            let target = &target;
            s.spawn(move || {
                for j in 0..20 {
                    write_atomic(target, format!("N={i}-{j}\n").as_bytes()).unwrap();
                }
            });
        }
    });
    let contents = fs::read_to_string(&target).unwrap();
    assert!(
        contents.starts_with("N=") && contents.ends_with('\n'),
        "{contents:?}"
    );
    assert_eq!(listing(dir.path()), [".env"]);
}

fn git(dir: &Path, args: &[&str]) -> bool {
    Command::new("git")
        .arg("-C")
        .arg(dir)
        .args(args)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

#[test]
fn git_warning_only_for_unignored_files_in_a_work_tree() {
    let _g = lock();
    let dir = tempfile::tempdir().unwrap();
    if !git(dir.path(), &["--version"]) {
        eprintln!("!!!!!!!! SKIPPED: git is not installed; git_ignore_warning was not tested");
        return;
    }
    // Not a work tree (unless the temp dir itself is inside one, which would make this meaningless).
    if git(dir.path(), &["rev-parse", "--is-inside-work-tree"]) {
        eprintln!("!!!!!!!! SKIPPED: the temporary directory is inside a git work tree");
        return;
    }
    let outside = dir.path().join("outside.env");
    assert_eq!(git_ignore_warning(&outside), None);

    let repo = dir.path().join("repo");
    fs::create_dir_all(repo.join("sub")).unwrap();
    assert!(git(&repo, &["init", "-q"]));
    let env = repo.join("sub/.env");
    fs::write(&env, b"A=1\n").unwrap();
    let warning = git_ignore_warning(&env).expect("an unignored file in a work tree");
    assert!(
        warning.starts_with(&format!(
            "{} is inside a git work tree and is not ignored by git",
            env.display()
        )),
        "{warning}"
    );
    assert!(
        warning.contains("\n  hint: ") && warning.contains("'/.env' >> "),
        "{warning}"
    );
    eprintln!("r4-run: warning: {warning}");

    // The file need not exist yet.
    assert!(git_ignore_warning(&repo.join("new.env")).is_some());

    fs::write(repo.join(".gitignore"), b".env\n").unwrap();
    assert_eq!(git_ignore_warning(&env), None);

    // A directory that does not exist: git fails, no warning.
    assert_eq!(git_ignore_warning(&dir.path().join("nope/x.env")), None);
}
