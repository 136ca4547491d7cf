//! The project's own emulator of the Machine API, started as a process for a test.

use std::io::{BufRead, BufReader};
use std::process::{Child, ChildStdin, Command, Stdio};

pub struct Emulator {
    child: Child,
    // Held open: the emulator exits when its stdin closes, so it never outlives the test.
    _stdin: ChildStdin,
    pub url: String,
}

impl Emulator {
    /// Serves `data` (the emulator's JSON schema, see docs/emulator.md) with `extra` arguments.
    pub fn start(data: &serde_json::Value, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("data.json");
        std::fs::write(&path, serde_json::to_vec(data).unwrap()).unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_r4-emulator"))
            .arg("--data")
            .arg(&path)
            .arg("--exit-on-stdin-eof")
            .args(extra)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .expect("r4-emulator starts");
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let url = line
            .trim()
            .strip_prefix("listening on ")
            .expect("the listening line")
            .to_owned();
        let stdin = child.stdin.take().unwrap();
        Emulator {
            child,
            _stdin: stdin,
            url,
        }
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

impl Drop for Emulator {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
