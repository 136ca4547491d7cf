//! The real r4-run over HTTPS: to the emulator under a CA of its own (trusted through
//! `SSL_CERT_FILE`, as a private CA would be), and to TLS servers of the tests' own that redirect,
//! reset the handshake or cut the body short.

use crate::support::tls::{
    http_answer, identity, pem_file, resets_in_the_handshake, serving, system_sized_bundle, Answer,
    HttpsEmulator, TestCa, TlsServer,
};
use crate::support::{corpus, env_answer, r4_run, KEY, PROJECT};
use std::time::{Duration, Instant};

/// Well above what any case here takes, far below the 20 s of a hang the tests would wait out.
const NEVER_HANGS: Duration = Duration::from_secs(15);

fn env_path() -> String {
    format!("/api/v1/machine/vault/env/{PROJECT}")
}

#[test]
fn the_hostile_corpus_arrives_byte_exact_over_https() {
    let vars = corpus::hostile();
    let api = HttpsEmulator::with_project(&vars, &identity(&[]));
    assert!(api.url.starts_with("https://127.0.0.1:"), "{}", api.url);
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(dir.path(), "ca.pem", &api.ca_pem);

    let ran = r4_run()
        .against(&api.url)
        .env("SSL_CERT_FILE", &ca)
        .probe()
        .run();
    ran.assert_code(0);
    let child = ran.child_env();
    for (name, value) in &vars {
        assert_eq!(child.get(*name).map(String::as_str), Some(*value), "{name}");
    }
    assert!(!child.contains_key("R4_API_KEY"));
    assert!(ran.stderr().is_empty(), "{}", ran.stderr());
}

#[test]
fn exit_statuses_over_https() {
    let api = HttpsEmulator::with_project(&[("A", "1")], &identity(&[]));
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(dir.path(), "ca.pem", &api.ca_pem);

    // The child's own status comes back.
    let ran = r4_run()
        .against(&api.url)
        .env("SSL_CERT_FILE", &ca)
        .args(["--", "sh", "-c", r#"test "$A" = 1 && exit 7"#])
        .run();
    ran.assert_code(7);

    // The API's refusals are r4-run's own failures, 125 and no child.
    r4_run()
        .env("R4_API_KEY", "rk_test123.wrong")
        .env("SSL_CERT_FILE", &ca)
        .args(["--project", PROJECT, "--base-url", &api.url])
        .probe()
        .run()
        .assert_failed_with("was refused (401");
    r4_run()
        .env("R4_API_KEY", KEY)
        .env("SSL_CERT_FILE", &ca)
        .args(["--project", "nope", "--base-url", &api.url])
        .probe()
        .run()
        .assert_failed_with("project nope was not found");
}

#[test]
fn a_certificate_no_trusted_ca_signed_is_refused_with_a_hint_naming_ssl_cert_file() {
    let api = HttpsEmulator::with_project(&[("A", "1")], &identity(&[]));
    let dir = tempfile::tempdir().unwrap();
    let stranger = identity(&[]);
    let other_ca = pem_file(dir.path(), "other.pem", stranger.ca_pem().unwrap());

    // The system's trust store (no SSL_CERT_FILE), and another CA in SSL_CERT_FILE.
    for cert_file in [None, Some(&other_ca)] {
        let mut r4 = r4_run().against(&api.url).args(["--timeout", "10"]);
        if let Some(file) = cert_file {
            r4 = r4.env("SSL_CERT_FILE", file);
        }
        let started = Instant::now();
        let ran = r4.probe().run();
        ran.assert_failed_with("TLS certificate was not accepted");
        let err = ran.stderr();
        assert!(
            err.contains(&format!("cannot connect to {}", api.url)),
            "{err}"
        );
        assert!(err.contains("SSL_CERT_FILE"), "{err}");
        // Refused at once: another try would meet the same certificate.
        assert!(
            started.elapsed() < Duration::from_secs(5),
            "{cert_file:?}: retried until the deadline?\n{err}"
        );
    }
}

#[test]
fn a_redirect_to_another_origin_over_https_is_refused_and_the_key_stays_home() {
    let identity = identity(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(dir.path(), "ca.pem", identity.ca_pem().unwrap());
    // Where the redirect points: it would answer, but must never be asked.
    let elsewhere = TlsServer::start(&identity, |_| {
        let body = env_answer(&[("A", "stolen")]).to_string();
        Answer::Send(http_answer("200 OK", &[], body.as_bytes()))
    });

    for target in [
        format!("{}{}", elsewhere.url(), env_path()),
        // The same host and port over plain http is another origin too.
        format!("http://{}{}", elsewhere.addr, env_path()),
    ] {
        let location = target.clone();
        let redirector = TlsServer::start(&identity, move |_| {
            Answer::Send(http_answer("302 Found", &[("Location", &location)], b""))
        });
        let ran = r4_run()
            .against(&redirector.url())
            .env("SSL_CERT_FILE", &ca)
            .probe()
            .run();
        let origin = target.strip_suffix(&env_path()).unwrap();
        ran.assert_failed_with(&format!("redirected (302 Found) to {origin}"));
        assert!(
            ran.stderr()
                .contains("does not follow redirects to another origin"),
            "{}",
            ran.stderr()
        );
        let heads = redirector.heads();
        assert_eq!(heads.len(), 1, "{heads:?}");
        assert!(heads[0].contains(KEY), "the key went to the base URL");
    }
    assert!(elsewhere.heads().is_empty(), "{:?}", elsewhere.heads());
}

#[test]
fn a_redirect_within_the_origin_over_https_is_followed_with_the_key() {
    let identity = identity(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(dir.path(), "ca.pem", identity.ca_pem().unwrap());
    let server = TlsServer::start(&identity, |head| {
        if head.starts_with("GET /moved/") {
            let body = env_answer(&[("A", "moved")]).to_string();
            Answer::Send(http_answer(
                "200 OK",
                &[("Content-Type", "application/json")],
                body.as_bytes(),
            ))
        } else {
            let to = format!("/moved{}", env_path());
            Answer::Send(http_answer(
                "301 Moved Permanently",
                &[("Location", &to)],
                b"",
            ))
        }
    });
    let ran = r4_run()
        .against(&server.url())
        .env("SSL_CERT_FILE", &ca)
        .probe()
        .run();
    ran.assert_code(0);
    assert_eq!(ran.child_env()["A"], "moved");
    let heads = server.heads();
    assert_eq!(heads.len(), 2, "{heads:?}");
    assert!(heads.iter().all(|head| head.contains(KEY)), "{heads:?}");
}

#[test]
fn a_connection_reset_during_the_tls_handshake_fails_with_125_and_no_child() {
    let (addr, hellos) = resets_in_the_handshake();
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(dir.path(), "ca.pem", identity(&[]).ca_pem().unwrap());
    let base = format!("https://{addr}");
    let started = Instant::now();
    let ran = r4_run()
        .against(&base)
        .env("SSL_CERT_FILE", &ca)
        .args(["--timeout", "1"])
        .probe()
        .run();
    let took = started.elapsed();
    ran.assert_failed_with(&base);
    let err = ran.stderr();
    assert!(err.contains("reset"), "{err}");
    assert!(
        *hellos.lock().unwrap() >= 1,
        "no ClientHello reached the server"
    );
    assert!(took < NEVER_HANGS, "took {took:?}");
}

#[test]
fn a_body_cut_short_over_tls_fails_with_125_and_no_child() {
    let identity = identity(&[]);
    let dir = tempfile::tempdir().unwrap();
    let ca = pem_file(dir.path(), "ca.pem", identity.ca_pem().unwrap());
    let body = env_answer(&[("A", "1"), ("B", "2")]).to_string();
    let sent = body.len() / 2;
    // The head promises the whole body; half of it comes, then the session ends, cleanly (a TLS
    // close_notify: only Content-Length tells it was cut) or not (the TCP connection just ends).
    for clean in [true, false] {
        let answer = http_answer(
            "200 OK",
            &[
                ("Content-Type", "application/json"),
                ("Content-Length", &body.len().to_string()),
            ],
            &body.as_bytes()[..sent],
        );
        let server = TlsServer::start(&identity, move |_| {
            if clean {
                Answer::Send(answer.clone())
            } else {
                Answer::SendAndCut(answer.clone())
            }
        });
        let started = Instant::now();
        let ran = r4_run()
            .against(&server.url())
            .env("SSL_CERT_FILE", &ca)
            .args(["--timeout", "1"])
            .probe()
            .run();
        let took = started.elapsed();
        ran.assert_failed_with(&format!("broke off after {sent} bytes"));
        assert!(!server.heads().is_empty());
        assert!(took < NEVER_HANGS, "clean {clean}: took {took:?}");
    }
}

// The certificate check over a store of a real system's size, which r4-run reads while connecting
// and decodes only in part (api/trust/pem_store.rs): what it accepts and refuses is rustls' own.

/// A run against `server` trusting the PEM `bundle` (through SSL_CERT_FILE).
fn trusting(bundle: &str, server: &str) -> crate::support::Ran {
    let dir = tempfile::tempdir().unwrap();
    let file = pem_file(dir.path(), "bundle.pem", bundle);
    r4_run()
        .against(server)
        .env("SSL_CERT_FILE", &file)
        .args(["--timeout", "10"])
        .probe()
        .run()
}

#[track_caller]
fn assert_accepted(ran: &crate::support::Ran) {
    ran.assert_code(0);
    assert_eq!(ran.child_env()["A"], "1");
}

#[track_caller]
fn assert_refused(ran: &crate::support::Ran, server: &TlsServer) {
    ran.assert_failed_with("TLS certificate was not accepted");
    assert!(server.heads().is_empty(), "a request reached the server");
}

#[test]
fn a_certificate_for_another_name_is_refused_though_its_ca_is_trusted() {
    let ca = TestCa::root();
    let right = serving(&ca.server(&["127.0.0.1"], &[], false), &[("A", "1")]);
    let wrong = serving(&ca.server(&["elsewhere.test"], &[], false), &[("A", "1")]);
    for bundle in [ca.pem.clone(), system_sized_bundle(&ca.pem)] {
        assert_accepted(&trusting(&bundle, &right.url()));
        let ran = trusting(&bundle, &wrong.url());
        assert_refused(&ran, &wrong);
    }
}

#[test]
fn a_certificate_no_ca_of_a_system_sized_store_signed_is_refused() {
    let api = HttpsEmulator::with_project(&[("A", "1")], &identity(&[]));
    let stranger = identity(&[]);
    let ran = trusting(&system_sized_bundle(stranger.ca_pem().unwrap()), &api.url);
    ran.assert_failed_with("TLS certificate was not accepted");
    // Its CA anywhere in the store, first or last, and it is trusted.
    let first = format!("{}{}", api.ca_pem, system_sized_bundle(""));
    for bundle in [first, system_sized_bundle(&api.ca_pem)] {
        assert_accepted(&trusting(&bundle, &api.url));
    }
}

#[test]
fn a_chain_through_an_intermediate_ca_is_checked_as_rustls_checks_it() {
    let root = TestCa::root();
    let intermediate = root.intermediate();
    let sends_chain = serving(
        &intermediate.server(&["127.0.0.1"], &[&intermediate], false),
        &[("A", "1")],
    );
    let sends_leaf_only = serving(
        &intermediate.server(&["127.0.0.1"], &[], false),
        &[("A", "1")],
    );
    // The root trusted: the intermediate the server sends leads to it.
    assert_accepted(&trusting(
        &system_sized_bundle(&root.pem),
        &sends_chain.url(),
    ));
    // The intermediate trusted itself: a trust anchor too, whatever the server sends.
    let trusts_intermediate = system_sized_bundle(&intermediate.pem);
    assert_accepted(&trusting(&trusts_intermediate, &sends_chain.url()));
    assert_accepted(&trusting(&trusts_intermediate, &sends_leaf_only.url()));
    // The root trusted, but no intermediate sent: no chain reaches it.
    let also_leaf_only = serving(
        &intermediate.server(&["127.0.0.1"], &[], false),
        &[("A", "1")],
    );
    let ran = trusting(&system_sized_bundle(&root.pem), &also_leaf_only.url());
    assert_refused(&ran, &also_leaf_only);
}

#[test]
fn an_expired_certificate_is_refused() {
    let ca = TestCa::root();
    let expired = serving(&ca.server(&["127.0.0.1"], &[], true), &[("A", "1")]);
    let ran = trusting(&system_sized_bundle(&ca.pem), &expired.url());
    assert_refused(&ran, &expired);
}

/// Of a system-sized store, only the certificate that issued the server's, and the first one (which
/// was decoded before the request to know the store is usable), are decoded and checked against.
#[test]
fn only_the_trusted_certificates_that_can_have_issued_the_chain_are_decoded() {
    let ca = TestCa::root();
    let server = serving(&ca.server(&["127.0.0.1"], &[], false), &[("A", "1")]);
    let bundle = system_sized_bundle(&ca.pem);
    let certificates = bundle.matches("-----BEGIN CERTIFICATE-----").count();
    let dir = tempfile::tempdir().unwrap();
    let file = pem_file(dir.path(), "bundle.pem", &bundle);
    let ran = r4_run()
        .against(&server.url())
        .env("SSL_CERT_FILE", &file)
        .arg("-vv")
        .probe()
        .run();
    ran.assert_code(0);
    let err = ran.stderr();
    assert!(
        err.contains(&format!(
            "checking the server's certificate against 2 of the {certificates} certificates of SSL_CERT_FILE"
        )),
        "{err}"
    );
    // -v still counts them all, once they are all found.
    assert!(
        err.contains(&format!(
            "{certificates} certificate authorities in SSL_CERT_FILE"
        )),
        "{err}"
    );
}
