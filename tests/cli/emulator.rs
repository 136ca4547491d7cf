//! The run path against the project's own emulator: a real Machine API answer end to end.

use crate::support::emulator::Emulator;
use crate::support::{corpus, r4_run, KEY, PROJECT};
use std::process::Stdio;

#[test]
fn the_child_gets_the_project_from_the_emulator() {
    let vars = corpus::hostile();
    let api = Emulator::with_project(&vars, &[]);
    let ran = r4_run().against(&api.url).probe().run();
    ran.assert_code(0);
    for (name, value) in &vars {
        assert_eq!(
            ran.child_env().get(*name).map(String::as_str),
            Some(*value),
            "{name}"
        );
    }
    assert!(!ran.child_env().contains_key("R4_API_KEY"));
}

#[test]
fn the_emulators_errors_become_clear_failures() {
    let api = Emulator::with_project(&[("A", "1")], &[]);
    // A key the API does not know.
    r4_run()
        .env("R4_API_KEY", "rk_test123.wrong")
        .args(["--project", PROJECT, "--base-url", &api.url])
        .probe()
        .run()
        .assert_failed_with("was refused (401");
    // A project the key cannot see, and one that does not exist.
    for project in ["other", "nope"] {
        let ran = r4_run()
            .env("R4_API_KEY", KEY)
            .args(["--project", project, "--base-url", &api.url])
            .probe()
            .run();
        ran.assert_failed_with(&format!("project {project} was not found"));
    }
}

#[test]
fn a_non_string_value_from_the_emulator_is_refused() {
    let api = Emulator::start(
        &serde_json::json!({
            "keys": [{"key": KEY}],
            "projects": [{"id": PROJECT, "env": {"OK": "x", "PORT": 5432, "FLAG": true}}]
        }),
        &[],
    );
    let ran = r4_run().against(&api.url).probe().run();
    ran.assert_failed_with("instead of a string");
}

#[test]
fn a_rate_limited_fleet_spreads_its_retries_instead_of_coming_back_whole_each_window() {
    // 40 starts at once against 10 requests per 2 s. A fleet whose refused starts all come back
    // when the window ends asks each window again with everyone still waiting: 40 + 30 + 20 + 10 =
    // 100 requests. Spread over the next windows: about 82 (88 at most in a model of 1000 such fleets).
    const STARTS: usize = 40;
    let api = Emulator::with_project(&[("A", "1")], &["--rate-limit", "10/2"]);
    let fleet: Vec<_> = (0..STARTS)
        .map(|_| {
            r4_run()
                .against(&api.url)
                .arg("-v")
                .args(["--", "sh", "-c", r#"test "$A" = 1"#])
                .command_to_start()
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(Stdio::piped())
                .spawn()
                .expect("r4-run starts")
        })
        .collect();
    let mut requests = 0;
    for start in fleet {
        let out = start.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        // `-v` says each try: "try N: 429 Too Many Requests after …", "try N: 200 OK after …".
        requests += stderr.lines().filter(|l| l.contains(": try ")).count();
    }
    eprintln!("{STARTS} starts took {requests} requests");
    assert!(requests <= 92, "{STARTS} starts took {requests} requests");
}
