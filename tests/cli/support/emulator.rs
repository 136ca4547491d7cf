//! The project's own emulator of the Machine API (the `r4-emulator` package of this workspace),
//! serving from a thread of the test's own process: nothing to build or start first, and nothing
//! left behind when a test ends, however it ends.

pub struct Emulator {
    /// `http://127.0.0.1:PORT`
    pub url: String,
    // Stops the server when dropped.
    server: r4_emulator::Emulator,
}

impl Emulator {
    /// Serves `data` (the emulator's JSON schema, see docs/emulator.md) with `extra` flags of the
    /// emulator's command line (`--rate-limit`, `--daily-limit`, `--log`).
    pub fn start(data: &serde_json::Value, extra: &[&str]) -> Self {
        let options = r4_emulator::Options::from_flags(extra).expect("valid emulator flags");
        let server = r4_emulator::Emulator::start(&serde_json::to_vec(data).unwrap(), options)
            .expect("the emulator starts");
        Emulator {
            url: server.url().to_owned(),
            server,
        }
    }

    /// Gives `support::PROJECT` these variables from the next request on, as an edit in R4 would.
    pub fn set_vars(&self, vars: &[(&str, &str)]) {
        let env: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        self.server
            .set_project_env(super::PROJECT, &serde_json::Value::Object(env))
            .expect("the project exists");
    }

    /// One key (`support::KEY`) that sees one project (`support::PROJECT`) holding `vars`.
    pub fn with_project(vars: &[(&str, &str)], extra: &[&str]) -> Self {
        let env: serde_json::Map<String, serde_json::Value> = vars
            .iter()
            .map(|(k, v)| (k.to_string(), serde_json::Value::from(*v)))
            .collect();
        Self::start(
            &serde_json::json!({
                "keys": [{"key": super::KEY, "projects": [super::PROJECT]}],
                "projects": [{"id": super::PROJECT, "env": env}, {"id": "other", "env": {"X": "y"}}]
            }),
            extra,
        )
    }
}
