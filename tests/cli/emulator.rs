//! The run path against the project's own emulator: a real Machine API answer end to end.

use crate::support::emulator::Emulator;
use crate::support::{corpus, r4_run, KEY, PROJECT};

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
