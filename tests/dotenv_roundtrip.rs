//! Every `--format` is read back by the programs it is written for, and compared byte for byte.
//!
//! python-dotenv and node `dotenv` are external: the tests look for `python3 -c 'import dotenv'` and for
//! `node` with a `dotenv` package under `$R4_TEST_NODE_MODULES` (default `tests/node/node_modules`).
//! When one is missing the test fails if `CI` is set, and otherwise prints a loud skip notice.

mod corpus;

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use r4_run::dotenv::{render, Format, RenderError};

fn render_bytes(vars: &[(&str, &str)], format: Format) -> Vec<u8> {
    let r = render(vars, format).expect("render");
    assert!(r.skipped.is_empty(), "unexpected skips: {:?}", r.skipped);
    r.bytes.to_vec()
}

fn write_temp(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).unwrap();
    path
}

/// Compares what a parser read with what was written; returns the names that differ.
fn mismatches(expected: &[(&str, &str)], got: &BTreeMap<String, String>) -> BTreeSet<String> {
    let mut bad = BTreeSet::new();
    for (name, value) in expected {
        if got.get(*name).map(String::as_str) != Some(*value) {
            bad.insert(name.to_string());
        }
    }
    bad
}

fn show(names: &BTreeSet<String>, vars: &[(&str, &str)], got: &BTreeMap<String, String>) -> String {
    let mut s = String::new();
    for n in names.iter().take(20) {
        let want = vars.iter().find(|(k, _)| k == n).map(|(_, v)| *v);
        s += &format!("  {n}: wrote {want:?}, read {:?}\n", got.get(n));
    }
    s
}

/// What the external parser cannot express: `None` when it should read the value exactly.
type Limits = fn(&str) -> Option<&'static str>;

/// Checks a parser against the whole corpus: every mismatch must be one its syntax cannot express,
/// and, for the named corpus, exactly the documented list.
fn check_parser(
    parser: &str,
    read: impl Fn(&Path) -> BTreeMap<String, String>,
    cannot: Limits,
    documented_named: &[&str],
) {
    let dir = tempfile::tempdir().unwrap();
    let all = corpus::all();
    let vars = corpus::as_refs(&all);
    let path = write_temp(dir.path(), ".env", &render_bytes(&vars, Format::Dotenv));
    let got = read(&path);
    let bad = mismatches(&vars, &got);

    let unexpected: BTreeSet<String> = bad
        .iter()
        .filter(|n| {
            let v = vars.iter().find(|(k, _)| k == n).unwrap().1;
            cannot(v).is_none()
        })
        .cloned()
        .collect();
    assert!(
        unexpected.is_empty(),
        "{parser}: {} values read back wrong that it should read exactly:\n{}",
        unexpected.len(),
        show(&unexpected, &vars, &got)
    );
    let named_bad: Vec<&str> = corpus::NAMED
        .iter()
        .map(|(n, _)| *n)
        .filter(|n| bad.contains(*n))
        .collect();
    assert_eq!(
        named_bad,
        documented_named,
        "{parser}: the named values it cannot read back changed:\n{}",
        show(&bad, &vars, &got)
    );
    let named29 = corpus::NAMED[..29]
        .iter()
        .filter(|(n, _)| !bad.contains(*n))
        .count();
    eprintln!(
        "{parser}: {named29}/29 of the reference values, {}/{} of all values read back exactly",
        vars.len() - bad.len(),
        vars.len()
    );
}

fn missing_tool(what: &str, how: &str) {
    if std::env::var_os("CI").is_some() {
        panic!("{what} is not installed, and CI must test against it: {how}");
    }
    eprintln!();
    eprintln!(
        "!!!!!!!! SKIPPED: {what} is not installed; the round trip through it was NOT tested."
    );
    eprintln!("!!!!!!!! Install it with: {how}");
    eprintln!();
}

// ---------------------------------------------------------------------------------------------
// dotenvy (the reference parser): everything, exactly.

fn read_dotenvy(bytes: &[u8]) -> BTreeMap<String, String> {
    dotenvy::from_read_iter(bytes)
        .map(|r| r.expect("dotenvy parse error"))
        .collect()
}

#[test]
fn dotenvy_reads_back_every_value() {
    let all = corpus::all();
    let vars = corpus::as_refs(&all);
    let bytes = render_bytes(&vars, Format::Dotenv);
    let got = read_dotenvy(&bytes);
    let bad = mismatches(&vars, &got);
    assert!(bad.is_empty(), "dotenvy:\n{}", show(&bad, &vars, &got));
    assert_eq!(got.len(), vars.len(), "dotenvy read extra variables");
    eprintln!(
        "dotenvy: {}/{} values read back exactly",
        vars.len(),
        vars.len()
    );
}

#[test]
fn dotenvy_reads_each_value_alone_and_between_others() {
    // One at a time, and each one followed by every named value, so a value cannot swallow the next
    // line (dotenvy's StrongOpenEscape bug) without this noticing.
    for (name, value) in corpus::NAMED {
        let one = [(*name, *value)];
        assert_eq!(
            read_dotenvy(&render_bytes(&one, Format::Dotenv))[*name],
            *value,
            "{name}"
        );
        for (n2, v2) in corpus::NAMED.iter().filter(|(n2, _)| n2 != name) {
            let two = [(*name, *value), (*n2, *v2)];
            let got = read_dotenvy(&render_bytes(&two, Format::Dotenv));
            assert_eq!(
                got.get(*name).map(String::as_str),
                Some(*value),
                "{name} then {n2}"
            );
            assert_eq!(
                got.get(*n2).map(String::as_str),
                Some(*v2),
                "{name} then {n2}"
            );
        }
    }
}

// ---------------------------------------------------------------------------------------------
// python-dotenv: what its syntax can express.

/// python-dotenv expands `${NAME}` in every quoting style (interpolation is on by default) and cannot
/// escape it; its newline handling turns CR into LF; inside double quotes `\$` keeps its backslash.
fn python_cannot(v: &str) -> Option<&'static str> {
    if v.contains('\r') {
        Some("CR")
    } else if ends_in_backslash(v) {
        Some("a final \\\" is taken for an escaped quote")
    } else if v.contains("${") {
        Some("${ is expanded")
    } else if dotenv_double_quoted(v) && v.contains('$') {
        Some("\\$ keeps its backslash")
    } else {
        None
    }
}

/// Whether the `dotenv` writer puts this value in double quotes (smart2: a `'`, a CR, a `\\`, or a
/// final `\`).
fn dotenv_double_quoted(v: &str) -> bool {
    v.contains(['\'', '\r']) || v.contains("\\\\") || v.ends_with('\\')
}

fn python_has_dotenv() -> bool {
    Command::new("python3")
        .args(["-c", "import dotenv"])
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success())
}

const PY_DUMP: &str = r#"
import json, sys
from dotenv import dotenv_values
sys.stdout.write(json.dumps(dotenv_values(sys.argv[1])))
"#;

fn read_python(path: &Path) -> BTreeMap<String, String> {
    let out = Command::new("python3")
        .args(["-c", PY_DUMP])
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "python-dotenv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let map: BTreeMap<String, Option<String>> = serde_json::from_slice(&out.stdout).unwrap();
    map.into_iter().filter_map(|(k, v)| Some((k, v?))).collect()
}

#[test]
fn python_dotenv_reads_back_what_it_can_express() {
    if !python_has_dotenv() {
        return missing_tool("python-dotenv", "pip install python-dotenv");
    }
    check_parser(
        "python-dotenv",
        read_python,
        python_cannot,
        &[
            "V08_DOLLAR_BRACE",
            "V16_TRAILING_BACKSLASH",
            "V20_CRLF",
            "X01_CR_ONLY",
            "X02_TRAILING_CR",
            "X03_QUOTE_AND_DOLLAR",
            "X14_SQ_DQ_CRLF",
        ],
    );
}

/// A value ending in `\` is written `"…\\"`. python-dotenv and node take that final `\"` for an
/// escaped quote (their regex is `"((?:\\"|[^"])*)"`) and read on; dotenvy reads it right, and no
/// quoting serves all three (single quotes hit dotenvy's StrongOpenEscape bug). The writer fences such
/// a value off with a comment line ending in `"`, so that only the value itself is lost.
fn ends_in_backslash(v: &str) -> bool {
    v.ends_with('\\')
}

/// Checks the fence: without it, python-dotenv loses the next lines too (and node, when a later line
/// ends in a quote).
fn check_trailing_backslash_is_fenced(
    parser: &str,
    read: impl Fn(&Path) -> BTreeMap<String, String>,
) {
    let dir = tempfile::tempdir().unwrap();
    let vars = [
        ("A", "abc\\"),
        ("B", "plain"),
        ("C", "c d"),
        ("D", "x\"\ny"),
        ("E", "it's"),
    ];
    let bytes = render_bytes(&vars, Format::Dotenv);
    let got = read(&write_temp(dir.path(), "fenced.env", &bytes));
    assert_eq!(
        mismatches(&vars, &got).into_iter().collect::<Vec<_>>(),
        ["A"],
        "{parser}: {got:?}"
    );

    let fence = bytes.iter().position(|&b| b == b'#').unwrap();
    let end = fence + bytes[fence..].iter().position(|&b| b == b'\n').unwrap() + 1;
    let unfenced = [&bytes[..fence], &bytes[end..]].concat();
    let got = read(&write_temp(dir.path(), "unfenced.env", &unfenced));
    let bad = mismatches(&vars, &got);
    assert!(
        bad.len() > 1,
        "{parser} now reads a final backslash without harm to the next lines: the fence could go ({got:?})"
    );
    eprintln!("{parser}: a final backslash without the fence loses {bad:?}; with it, only A");
}

#[test]
fn python_dotenv_loses_only_a_fenced_trailing_backslash_value() {
    if !python_has_dotenv() {
        return missing_tool("python-dotenv", "pip install python-dotenv");
    }
    check_trailing_backslash_is_fenced("python-dotenv", read_python);
}

// ---------------------------------------------------------------------------------------------
// node dotenv: what its syntax can express.

/// node `dotenv` turns every CRLF (and CR) into LF before parsing; inside double quotes it decodes only
/// `\n` and `\r`, so the `\\`, `\"` and `\$` escapes that dotenvy needs keep their backslash.
fn node_cannot(v: &str) -> Option<&'static str> {
    if v.contains('\r') {
        Some("CR")
    } else if ends_in_backslash(v) {
        Some("a final \\\" is taken for an escaped quote")
    } else if dotenv_double_quoted(v) && v.contains(['\\', '"', '$']) {
        Some("double-quote escapes keep their backslash")
    } else {
        None
    }
}

fn node_modules() -> PathBuf {
    match std::env::var_os("R4_TEST_NODE_MODULES") {
        Some(dir) => PathBuf::from(dir),
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/node/node_modules"),
    }
}

fn node_has_dotenv() -> bool {
    node_modules().join("dotenv/package.json").is_file()
        && Command::new("node")
            .arg("--version")
            .stdout(Stdio::null())
            .status()
            .is_ok_and(|s| s.success())
}

const NODE_DUMP: &str = r#"
const fs = require('fs'), path = require('path');
const dotenv = require(path.join(process.argv[1], 'dotenv'));
process.stdout.write(JSON.stringify(dotenv.parse(fs.readFileSync(process.argv[2]))));
"#;

fn read_node(path: &Path) -> BTreeMap<String, String> {
    let out = Command::new("node")
        .args(["-e", NODE_DUMP])
        .arg(node_modules())
        .arg(path)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "node dotenv: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).unwrap()
}

#[test]
fn node_dotenv_loses_only_a_fenced_trailing_backslash_value() {
    if !node_has_dotenv() {
        return missing_tool(
            "node and the node `dotenv` package",
            "cd tests/node && npm ci",
        );
    }
    check_trailing_backslash_is_fenced("node dotenv", read_node);
}

#[test]
fn node_dotenv_reads_back_what_it_can_express() {
    if !node_has_dotenv() {
        return missing_tool(
            "node and the node `dotenv` package",
            "cd tests/node && npm ci (or set R4_TEST_NODE_MODULES to a node_modules holding dotenv)",
        );
    }
    check_parser(
        "node dotenv",
        read_node,
        node_cannot,
        &[
            "V13_BOTH_QUOTES",
            "V16_TRAILING_BACKSLASH",
            "V17_DOUBLE_BACKSLASH",
            "V20_CRLF",
            "X01_CR_ONLY",
            "X02_TRAILING_CR",
            "X03_QUOTE_AND_DOLLAR",
            "X06_BACKSLASH_QUOTE_END",
            "X14_SQ_DQ_CRLF",
        ],
    );
}

// ---------------------------------------------------------------------------------------------
// shell: bash and dash, sourced with `set -a` and eval'd.

fn shell_read(shell: &str, script: &str, file: &Path) -> Option<BTreeMap<String, String>> {
    let out = match Command::new("env")
        .args(["-i", "PATH=/usr/local/bin:/usr/bin:/bin"])
        .arg(shell)
        .args(["-c", script, "sh"])
        .arg(file)
        .stdin(Stdio::null())
        .output()
    {
        Ok(out) => out,
        Err(_) => return None,
    };
    if out.status.code() == Some(127) {
        return None;
    }
    assert!(
        out.status.success(),
        "{shell}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let mut map = BTreeMap::new();
    for entry in out.stdout.split(|&b| b == 0).filter(|e| !e.is_empty()) {
        let entry = String::from_utf8(entry.to_vec()).unwrap();
        let (k, v) = entry.split_once('=').unwrap();
        map.insert(k.to_string(), v.to_string());
    }
    Some(map)
}

#[test]
fn shells_read_back_every_value() {
    let dir = tempfile::tempdir().unwrap();
    let all = corpus::all();
    let vars = corpus::as_refs(&all);
    let file = write_temp(dir.path(), "env.sh", &render_bytes(&vars, Format::Shell));
    let mut tested = 0;
    for shell in ["bash", "dash", "sh"] {
        for (how, script) in [
            ("set -a; .", r#"set -a; . "$1"; exec env -0"#),
            ("eval", r#"eval "$(cat "$1")"; exec env -0"#),
        ] {
            let Some(got) = shell_read(shell, script, &file) else {
                eprintln!("{shell} not found: not tested");
                continue;
            };
            let bad = mismatches(&vars, &got);
            assert!(
                bad.is_empty(),
                "{shell} ({how}):\n{}",
                show(&bad, &vars, &got)
            );
            eprintln!(
                "{shell} ({how}): {}/{} values read back exactly",
                vars.len(),
                vars.len()
            );
            tested += 1;
        }
    }
    assert!(tested >= 2, "no POSIX shell found");
}

#[test]
fn shell_skips_names_it_cannot_carry() {
    let r = render(
        &[("A-B", "x"), ("1A", "x"), ("A.B", "x"), ("OK", "it's")],
        Format::Shell,
    )
    .unwrap();
    let names: Vec<&str> = r.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["A-B", "1A", "A.B"]);
    assert_eq!(&**r.bytes, b"export OK='it'\\''s'\n");
}

// ---------------------------------------------------------------------------------------------
// json

#[test]
fn json_reads_back_every_value_and_any_name() {
    let mut all = corpus::all();
    for name in ["", "A-B", "1A", "a b", "é\"\\\n\u{1}", "=x", "#c"] {
        all.push((name.to_string(), format!("value of {name:?}")));
    }
    let vars = corpus::as_refs(&all);
    let bytes = render_bytes(&vars, Format::Json);
    assert_eq!(bytes.last(), Some(&b'\n'));
    let got: BTreeMap<String, String> = serde_json::from_slice(&bytes).unwrap();
    let bad = mismatches(&vars, &got);
    assert!(bad.is_empty(), "serde_json:\n{}", show(&bad, &vars, &got));
    assert_eq!(got.len(), vars.len());
    // Valid JSON for stricter readers too: no raw control characters.
    assert!(!bytes[..bytes.len() - 1].iter().any(|&b| b < 0x20));
}

// ---------------------------------------------------------------------------------------------
// docker --env-file

/// docker's `pkg/kvfile` rules: lines split at LF (a trailing CR dropped, as bufio.ScanLines does),
/// BOM removed from the first line, leading whitespace trimmed, whole-line `#` comments and empty
/// lines skipped, the name is what precedes the first `=` (no whitespace allowed), the value is
/// the rest, verbatim.
fn read_docker(bytes: &[u8]) -> Result<BTreeMap<String, String>, String> {
    let text = std::str::from_utf8(bytes).map_err(|e| e.to_string())?;
    let mut map = BTreeMap::new();
    let mut lines: Vec<&str> = text.split('\n').collect();
    if text.ends_with('\n') {
        lines.pop();
    }
    for (i, line) in lines.into_iter().enumerate() {
        let mut line = line.strip_suffix('\r').unwrap_or(line);
        if line.len() > 64 * 1024 {
            return Err(format!("line {} too long", i + 1));
        }
        if i == 0 {
            line = line.strip_prefix('\u{feff}').unwrap_or(line);
        }
        let line = line.trim_start();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let Some((name, value)) = line.split_once('=') else {
            return Err(format!(
                "line {}: no '=' (would be looked up in docker's env)",
                i + 1
            ));
        };
        let name = name.trim_start_matches([' ', '\t']);
        if name.is_empty() || name.contains([' ', '\t']) {
            return Err(format!("line {}: bad variable name {name:?}", i + 1));
        }
        map.insert(name.to_string(), value.to_string());
    }
    Ok(map)
}

#[test]
fn docker_reads_back_every_single_line_value() {
    let all: Vec<(String, String)> = corpus::all()
        .into_iter()
        .filter(|(_, v)| !v.contains(['\n', '\r']))
        .collect();
    let vars = corpus::as_refs(&all);
    let bytes = render_bytes(&vars, Format::Docker);
    let got = read_docker(&bytes).unwrap();
    let bad = mismatches(&vars, &got);
    assert!(bad.is_empty(), "docker:\n{}", show(&bad, &vars, &got));
    assert_eq!(got.len(), vars.len());
    eprintln!(
        "docker: {}/{} single-line values read back exactly",
        vars.len(),
        vars.len()
    );
}

#[test]
fn docker_refuses_every_multiline_value_and_writes_nothing() {
    let all = corpus::all();
    let vars = corpus::as_refs(&all);
    let want: Vec<String> = vars
        .iter()
        .filter(|(_, v)| v.contains(['\n', '\r']))
        .map(|(n, _)| n.to_string())
        .collect();
    assert!(want.len() > 10);
    match render(&vars, Format::Docker) {
        Err(RenderError::DockerMultiline { names }) => assert_eq!(names, want),
        other => panic!("expected DockerMultiline, got {other:?}"),
    }
}

#[test]
fn docker_skips_names_it_cannot_carry_and_keeps_others() {
    let vars = [
        ("A B", "x"),
        ("A=B", "x"),
        ("", "x"),
        ("#C", "x"),
        ("\u{feff}D", "x"),
        ("a.b-c", " v'\"#"),
    ];
    let r = render(&vars, Format::Docker).unwrap();
    let names: Vec<&str> = r.skipped.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(names, ["A B", "A=B", "", "#C", "\u{feff}D"]);
    assert_eq!(read_docker(&r.bytes).unwrap()["a.b-c"], " v'\"#");
}

// ---------------------------------------------------------------------------------------------
// Things common to all formats.

#[test]
fn nul_is_refused_by_every_format() {
    for f in [Format::Dotenv, Format::Shell, Format::Json, Format::Docker] {
        match render(&[("A", "x"), ("B", "a\0b"), ("C\0", "x")], f) {
            Err(RenderError::NulInValue { names }) => assert_eq!(names, ["B", "C\0"]),
            other => panic!("{f:?}: expected NulInValue, got {other:?}"),
        }
    }
}

#[test]
fn messages_never_show_values() {
    let secret = "hunter2-s3cr3t";
    let e = render(&[("K", &format!("{secret}\n"))], Format::Docker).unwrap_err();
    let shown = format!("{e} {e:?} {}", e.hint());
    // The Debug form of the error holds names only, too.
    assert!(!shown.contains(secret), "{shown}");
    let r = render(&[("K", secret)], Format::Dotenv).unwrap();
    assert!(!format!("{r:?}").contains(secret));
}

#[test]
fn dotenv_empty_value_reads_back_empty_everywhere() {
    let bytes = render_bytes(&[("EMPTY", ""), ("NEXT", "x")], Format::Dotenv);
    assert_eq!(bytes, b"EMPTY=''\nNEXT=x\n");
    let mut f = tempfile::NamedTempFile::new().unwrap();
    f.write_all(&bytes).unwrap();
    assert_eq!(read_dotenvy(&bytes)["EMPTY"], "");
    if python_has_dotenv() {
        assert_eq!(read_python(f.path())["EMPTY"], "");
    }
    if node_has_dotenv() {
        assert_eq!(read_node(f.path())["EMPTY"], "");
    }
}
