//! What r4-run trusts for https: SSL_CERT_FILE / SSL_CERT_DIR, else the system's store, else Mozilla's
//! roots built in (an image with no store at all). `-v` says which.

use crate::support::{r4_run, PROJECT};

/// A run to an https base that nothing listens on: enough to make r4-run choose its roots.
fn https_run() -> crate::support::R4Run {
    r4_run()
        .env("R4_API_KEY", crate::support::KEY)
        .args(["-v", "--timeout", "0.2", "--project", PROJECT])
        .args(["--base-url", "https://127.0.0.1:9"])
        .args(["--", "true"])
}

/// Why a private mount namespace cannot be made here, or None if it can.
fn mount_namespace_refused() -> Option<String> {
    match std::process::Command::new("unshare")
        .args(["--mount", "true"])
        .output()
    {
        Ok(out) if out.status.success() => None,
        Ok(out) => Some(String::from_utf8_lossy(&out.stderr).trim().to_owned()),
        Err(e) => Some(e.to_string()),
    }
}

#[test]
fn with_no_certificate_store_the_built_in_roots_are_used() {
    if let Some(why) = mount_namespace_refused() {
        eprintln!("SKIPPED: cannot make a private mount namespace: {why}");
        return;
    }
    // Every place a system keeps its store, hidden under an empty tmpfs, as in a scratch image.
    let ran = https_run()
        .wrapped_in([
            "unshare",
            "--mount",
            "sh",
            "-c",
            "for d in /etc/ssl /etc/pki /usr/local/share/certs /system/etc/security; do \
             [ -d $d ] && mount -t tmpfs none $d; done; exec \"$0\" \"$@\"",
        ])
        .run();
    ran.assert_code(125);
    let err = ran.stderr();
    assert!(
        err.contains("certificate authorities from Mozilla's roots built into r4-run"),
        "{err}"
    );
}

#[test]
fn the_system_store_is_used_when_nothing_is_named() {
    let ran = https_run().run();
    ran.assert_code(125);
    let err = ran.stderr();
    // Wherever this machine keeps it; on a machine with none, the built-in roots.
    assert!(
        err.contains("certificate authorities from the system's store (")
            || err.contains("from Mozilla's roots built into r4-run"),
        "{err}"
    );
}

#[test]
fn an_unusable_ssl_cert_file_fails_before_any_request() {
    let run = https_run();
    let junk = run.tempdir().join("ca.pem");
    std::fs::write(&junk, "not a certificate\n").unwrap();
    let ran = run.env("SSL_CERT_FILE", &junk).run();
    ran.assert_failed_with("holds no PEM certificate");
    assert!(
        ran.stderr().contains("SSL_CERT_FILE names"),
        "{}",
        ran.stderr()
    );
    let ran = https_run()
        .env("SSL_CERT_FILE", "/nonexistent/ca.pem")
        .run();
    ran.assert_failed_with("SSL_CERT_FILE names /nonexistent/ca.pem, which cannot be read");
    // Not a word of it reached the network: no try was made.
    assert!(!ran.stderr().contains("try 1"), "{}", ran.stderr());
}
